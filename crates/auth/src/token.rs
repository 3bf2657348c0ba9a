//! Registry tokens: compact JWTs signed with ECDSA P-256 (ES256), as the Docker token protocol
//! hands them to clients. Only ES256 is accepted when verifying, so `alg: none` or an HMAC
//! algorithm confusion cannot pass.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::scope::{Actions, Scope};

/// Clock skew tolerated when checking `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url parts of JSON.
    #[error("malformed token")]
    Malformed,
    /// The header names another algorithm than ES256.
    #[error("token algorithm {0:?} is not accepted (ES256 only)")]
    Algorithm(String),
    /// No key with that id, or the signature does not verify.
    #[error("token signature is invalid")]
    Signature,
    /// Expired, or not yet valid.
    #[error("token expired or not yet valid")]
    Expired,
    /// Issued by someone else, or for another service.
    #[error("token was issued for another issuer or service")]
    Audience,
    /// A key could not be read or made.
    #[error("token key error: {0}")]
    Key(String),
}

/// One entry of the `access` claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Repository name, or `catalog`.
    pub name: String,
    /// Granted actions.
    pub actions: Vec<String>,
}

impl Access {
    /// From a granted scope.
    pub fn from_scope(s: &Scope) -> Self {
        Access {
            kind: s.kind.clone(),
            name: s.name.clone(),
            actions: s.actions.iter().map(|a| a.as_str().to_owned()).collect(),
        }
    }

    /// The granted actions as a set (unknown names ignored).
    pub fn actions(&self) -> Actions {
        Actions::parse_list(
            &self
                .actions
                .iter()
                .filter(|a| a.as_str() == "*" || crate::Action::parse(a).is_some())
                .cloned()
                .collect::<Vec<_>>()
                .join(","),
        )
        .unwrap_or_default()
    }
}

/// What a token asserts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: the login name, empty for anonymous.
    pub sub: String,
    /// Audience: the registry service name.
    pub aud: String,
    /// Expiry (Unix seconds).
    pub exp: u64,
    /// Not before.
    pub nbf: u64,
    /// Issued at.
    pub iat: u64,
    /// Unique id.
    pub jti: String,
    /// Granted access.
    #[serde(default)]
    pub access: Vec<Access>,
    /// `refresh` for refresh tokens, absent for access tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_use: Option<String>,
    /// Refresh tokens: a fingerprint of the credential they were issued against, so a password
    /// change or secret rotation retires them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cred: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    #[serde(default)]
    kid: String,
}

/// Key id: the first 16 hex digits of the SHA-256 of the public key's SEC1 encoding.
fn kid_of(k: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(k.to_sec1_point(false).as_bytes())[..8])
}

/// Signing key plus older keys still accepted for verification (rotation).
pub struct KeyRing {
    current: (String, SigningKey),
    verifiers: Vec<(String, VerifyingKey)>,
}

impl KeyRing {
    /// A new random P-256 key, as PKCS#8 PEM.
    pub fn generate_pem() -> Result<String, TokenError> {
        loop {
            let bytes =
                crate::secret::random_bytes::<32>().map_err(|e| TokenError::Key(e.to_string()))?;
            // Out-of-range scalars are astronomically rare; draw again if one comes up.
            if let Ok(k) = SigningKey::from_slice(&bytes) {
                return k
                    .to_pkcs8_pem(LineEnding::LF)
                    .map(|p| p.to_string())
                    .map_err(|e| TokenError::Key(e.to_string()));
            }
        }
    }

    /// Builds a ring from the current key's PEM and older PEMs still trusted.
    pub fn from_pems(current: &str, older: &[String]) -> Result<Self, TokenError> {
        let parse =
            |pem: &str| SigningKey::from_pkcs8_pem(pem).map_err(|e| TokenError::Key(e.to_string()));
        let cur = parse(current)?;
        let cur_kid = kid_of(cur.verifying_key());
        let mut verifiers = vec![(cur_kid.clone(), *cur.verifying_key())];
        for pem in older {
            let k = parse(pem)?;
            verifiers.push((kid_of(k.verifying_key()), *k.verifying_key()));
        }
        Ok(KeyRing {
            current: (cur_kid, cur),
            verifiers,
        })
    }

    /// Signs claims into a compact JWT.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = Header {
            alg: "ES256".into(),
            typ: Some("JWT".into()),
            kid: self.current.0.clone(),
        };
        let h = B64.encode(serde_json::to_vec(&header).expect("header serializes"));
        let c = B64.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let input = format!("{h}.{c}");
        let sig: Signature = self.current.1.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(sig.to_bytes()))
    }

    /// Verifies signature, algorithm, issuer, audience and validity window.
    pub fn verify(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
        now: u64,
    ) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if header.alg != "ES256" {
            return Err(TokenError::Algorithm(header.alg));
        }
        let sig_bytes = B64.decode(s).map_err(|_| TokenError::Malformed)?;
        let sig = Signature::from_slice(&sig_bytes).map_err(|_| TokenError::Signature)?;
        let input_len = h.len() + 1 + c.len();
        let input = &token.as_bytes()[..input_len];
        let key = self
            .verifiers
            .iter()
            .find(|(kid, _)| *kid == header.kid)
            .map(|(_, k)| k)
            .ok_or(TokenError::Signature)?;
        key.verify(input, &sig).map_err(|_| TokenError::Signature)?;
        let claims: Claims = B64
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.exp + LEEWAY_SECS <= now || claims.nbf > now + LEEWAY_SECS {
            return Err(TokenError::Expired);
        }
        if claims.iss != issuer || claims.aud != audience {
            return Err(TokenError::Audience);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: u64) -> Claims {
        Claims {
            iss: "wharf".into(),
            sub: "alice".into(),
            aud: "registry".into(),
            exp: now + 300,
            nbf: now,
            iat: now,
            jti: "1".into(),
            access: vec![Access {
                kind: "repository".into(),
                name: "a/b".into(),
                actions: vec!["pull".into()],
            }],
            token_use: None,
            cred: None,
        }
    }

    #[test]
    fn sign_verify_and_refusals() {
        let pem = KeyRing::generate_pem().unwrap();
        let ring = KeyRing::from_pems(&pem, &[]).unwrap();
        let now = 1_000_000;
        let t = ring.sign(&claims(now));
        assert_eq!(
            ring.verify(&t, "wharf", "registry", now).unwrap(),
            claims(now)
        );
        assert_eq!(
            ring.verify(&t, "wharf", "other", now),
            Err(TokenError::Audience)
        );
        assert_eq!(
            ring.verify(&t, "evil", "registry", now),
            Err(TokenError::Audience)
        );
        assert_eq!(
            ring.verify(&t, "wharf", "registry", now + 400),
            Err(TokenError::Expired)
        );
        // Tampered claims.
        let parts: Vec<&str> = t.split('.').collect();
        let mut c = claims(now);
        c.access[0].actions.push("push".into());
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(serde_json::to_vec(&c).unwrap()),
            parts[2]
        );
        assert_eq!(
            ring.verify(&forged, "wharf", "registry", now),
            Err(TokenError::Signature)
        );
        // alg: none.
        let none = format!(
            "{}.{}.",
            B64.encode(br#"{"alg":"none","kid":""}"#),
            parts[1]
        );
        assert_eq!(
            ring.verify(&none, "wharf", "registry", now),
            Err(TokenError::Algorithm("none".into()))
        );
        // Another key.
        let other = KeyRing::from_pems(&KeyRing::generate_pem().unwrap(), &[]).unwrap();
        assert_eq!(
            other.verify(&t, "wharf", "registry", now),
            Err(TokenError::Signature)
        );
        assert_eq!(
            ring.verify("a.b", "wharf", "registry", now),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn rotation_keeps_old_tokens_valid() {
        let old = KeyRing::generate_pem().unwrap();
        let t = KeyRing::from_pems(&old, &[]).unwrap().sign(&claims(10));
        let rotated = KeyRing::from_pems(&KeyRing::generate_pem().unwrap(), &[old]).unwrap();
        assert!(rotated.verify(&t, "wharf", "registry", 10).is_ok());
    }
}
