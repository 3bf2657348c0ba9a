//! Keys: ECDSA P-256 (cosign's default), ECDSA P-384 and Ed25519, in the encodings cosign reads
//! and writes: PKIX `PUBLIC KEY` PEM, PKCS#8 `PRIVATE KEY`, SEC1 `EC PRIVATE KEY`, and cosign's
//! `ENCRYPTED SIGSTORE PRIVATE KEY` (see [`crate::encrypted`]).
//!
//! Signatures are what cosign makes: ECDSA over the SHA-256 of the message (for P-384 too, as
//! cosign's signer is created with SHA-256 whatever the curve), ASN.1 DER encoded; Ed25519
//! over the message itself (64 raw bytes).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use p256::ecdsa::signature::hazmat::{PrehashSigner as _, PrehashVerifier as _};
use p256::elliptic_curve::Generate as _;
use pkcs8::der::Decode as _;
use pkcs8::der::pem::LineEnding;
use pkcs8::{ObjectIdentifier, PrivateKeyInfoRef};
use sha2::{Digest as _, Sha256};
use spki::{DecodePublicKey as _, EncodePublicKey as _, SubjectPublicKeyInfoRef};
use zeroize::Zeroizing;

use crate::encrypted;
use crate::error::{KeyError, VerifyError};
use crate::pem::pem_decode;

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// PEM label of a PKIX public key.
pub const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";

/// A signature algorithm (the key type decides it, as in cosign).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256 (cosign's default).
    EcdsaP256,
    /// ECDSA on NIST P-384 with SHA-256.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

impl KeyAlgorithm {
    /// A short name: `ecdsa-p256`, `ecdsa-p384`, `ed25519`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::EcdsaP384 => "ecdsa-p384",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }

    /// Parses [`KeyAlgorithm::as_str`] names.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "ecdsa-p256" | "p256" | "p-256" => Some(KeyAlgorithm::EcdsaP256),
            "ecdsa-p384" | "p384" | "p-384" => Some(KeyAlgorithm::EcdsaP384),
            "ed25519" => Some(KeyAlgorithm::Ed25519),
            _ => None,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, PartialEq, Eq)]
enum Public {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// A public key that verifies signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    inner: Public,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.algorithm(), self.key_id())
    }
}

impl PublicKey {
    /// Reads a PKIX `PUBLIC KEY` PEM (what `cosign generate-key-pair` writes to `cosign.pub`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = pem_decode(pem.as_bytes())?;
        if label != PUBLIC_KEY_LABEL {
            return Err(KeyError::Pem(format!(
                "expected a \"{PUBLIC_KEY_LABEL}\" PEM block, found \"{label}\""
            )));
        }
        Self::from_spki_der(&der)
    }

    /// Reads a DER `SubjectPublicKeyInfo`.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let info = SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| KeyError::Malformed(format!("SubjectPublicKeyInfo: {e}")))?;
        let (alg, params) = info
            .algorithm
            .oids()
            .map_err(|e| KeyError::Malformed(format!("algorithm identifier: {e}")))?;
        let inner = match (alg, params) {
            (OID_EC_PUBLIC_KEY, Some(OID_P256)) => Public::P256(
                p256::ecdsa::VerifyingKey::from_public_key_der(der)
                    .map_err(|e| KeyError::Malformed(format!("P-256 public key: {e}")))?,
            ),
            (OID_EC_PUBLIC_KEY, Some(OID_P384)) => Public::P384(
                p384::ecdsa::VerifyingKey::from_public_key_der(der)
                    .map_err(|e| KeyError::Malformed(format!("P-384 public key: {e}")))?,
            ),
            (OID_ED25519, _) => Public::Ed25519(
                ed25519_dalek::VerifyingKey::from_public_key_der(der)
                    .map_err(|e| KeyError::Malformed(format!("Ed25519 public key: {e}")))?,
            ),
            (OID_EC_PUBLIC_KEY, Some(curve)) => {
                return Err(KeyError::Unsupported(format!("ECDSA on curve {curve}")));
            }
            (OID_RSA, _) => return Err(KeyError::Unsupported("RSA".into())),
            (other, _) => return Err(KeyError::Unsupported(format!("algorithm {other}"))),
        };
        Ok(PublicKey { inner })
    }

    /// The DER `SubjectPublicKeyInfo`.
    pub fn to_spki_der(&self) -> Vec<u8> {
        let doc = match &self.inner {
            Public::P256(k) => k.to_public_key_der(),
            Public::P384(k) => k.to_public_key_der(),
            Public::Ed25519(k) => k.to_public_key_der(),
        };
        doc.expect("encoding a valid public key cannot fail")
            .as_bytes()
            .to_vec()
    }

    /// The PKIX `PUBLIC KEY` PEM, as cosign writes `cosign.pub`.
    pub fn to_pem(&self) -> String {
        pem_rfc7468::encode_string(PUBLIC_KEY_LABEL, LineEnding::LF, &self.to_spki_der())
            .expect("PEM encoding of a small key cannot fail")
    }

    /// The algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.inner {
            Public::P256(_) => KeyAlgorithm::EcdsaP256,
            Public::P384(_) => KeyAlgorithm::EcdsaP384,
            Public::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    /// `sha256:<hex>` of the DER `SubjectPublicKeyInfo`: a stable name for the key.
    pub fn key_id(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(self.to_spki_der())))
    }

    /// The Sigstore bundle `publicKey.hint` of this key: base64 of SHA-256 of the SPKI DER.
    pub fn hint(&self) -> String {
        STANDARD.encode(Sha256::digest(self.to_spki_der()))
    }

    /// Verifies `signature` (DER ECDSA, or raw Ed25519) over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
        let malformed = |e: String| VerifyError::MalformedSignature(e);
        match &self.inner {
            Public::P256(k) => {
                let sig = p256::ecdsa::Signature::from_der(signature)
                    .map_err(|e| malformed(format!("not a DER ECDSA P-256 signature: {e}")))?;
                k.verify_prehash(&Sha256::digest(message), &sig)
                    .map_err(|_| VerifyError::BadSignature)
            }
            Public::P384(k) => {
                let sig = p384::ecdsa::Signature::from_der(signature)
                    .map_err(|e| malformed(format!("not a DER ECDSA P-384 signature: {e}")))?;
                k.verify_prehash(&Sha256::digest(message), &sig)
                    .map_err(|_| VerifyError::BadSignature)
            }
            Public::Ed25519(k) => {
                let sig = ed25519_dalek::Signature::from_slice(signature)
                    .map_err(|e| malformed(format!("not a 64-byte Ed25519 signature: {e}")))?;
                k.verify_strict(message, &sig)
                    .map_err(|_| VerifyError::BadSignature)
            }
        }
    }

    /// Verifies a base64 signature (surrounding whitespace allowed) over `message`.
    pub fn verify_base64(&self, message: &[u8], signature_b64: &str) -> Result<(), VerifyError> {
        let sig = decode_base64(signature_b64)?;
        self.verify(message, &sig)
    }
}

/// Decodes standard base64, ignoring ASCII whitespace (signature files end with a newline).
pub(crate) fn decode_base64(s: &str) -> Result<Vec<u8>, VerifyError> {
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| VerifyError::MalformedSignature(format!("not base64: {e}")))
}

enum Private {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

/// A private key. The key material is zeroized when dropped, and `Debug` never shows it.
pub struct PrivateKey {
    inner: Private,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PrivateKey({} {}, <secret redacted>)",
            self.algorithm(),
            self.public_key().key_id()
        )
    }
}

impl PrivateKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, KeyError> {
        let rng_err = |e: getrandom::Error| KeyError::Random(e.to_string());
        let inner = match algorithm {
            KeyAlgorithm::EcdsaP256 => Private::P256(
                p256::ecdsa::SigningKey::try_generate_from_rng(&mut getrandom::SysRng)
                    .map_err(rng_err)?,
            ),
            KeyAlgorithm::EcdsaP384 => Private::P384(
                p384::ecdsa::SigningKey::try_generate_from_rng(&mut getrandom::SysRng)
                    .map_err(rng_err)?,
            ),
            KeyAlgorithm::Ed25519 => {
                let mut seed = Zeroizing::new([0u8; 32]);
                getrandom::fill(seed.as_mut()).map_err(rng_err)?;
                Private::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
            }
        };
        Ok(PrivateKey { inner })
    }

    /// Reads a private key PEM: cosign's encrypted format (`ENCRYPTED SIGSTORE PRIVATE KEY`, or
    /// the older `ENCRYPTED COSIGN PRIVATE KEY`; needs `password`), unencrypted PKCS#8
    /// (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
    pub fn from_pem(pem: &[u8], password: Option<&[u8]>) -> Result<Self, KeyError> {
        let (label, der) = pem_decode(pem)?;
        let der = Zeroizing::new(der);
        if encrypted::LABELS.contains(&label.as_str()) {
            let password = password.ok_or(KeyError::PasswordRequired)?;
            let der = encrypted::decrypt_envelope(&der, password)?;
            return Self::from_pkcs8_der(&der);
        }
        match label.as_str() {
            "PRIVATE KEY" => Self::from_pkcs8_der(&der),
            "EC PRIVATE KEY" => Self::from_sec1_der(&der),
            "ENCRYPTED PRIVATE KEY" => Err(KeyError::Unsupported(
                "PKCS#8 encrypted with a password (ENCRYPTED PRIVATE KEY); use cosign's format or an unencrypted key"
                    .into(),
            )),
            "RSA PRIVATE KEY" => Err(KeyError::Unsupported("RSA".into())),
            other => Err(KeyError::Pem(format!(
                "\"{other}\" is not a private key PEM this tool reads"
            ))),
        }
    }

    /// Reads a DER PKCS#8 `PrivateKeyInfo` (v1 or v2).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let info = PrivateKeyInfoRef::from_der(der)
            .map_err(|e| KeyError::Malformed(format!("PKCS#8: {e}")))?;
        let (alg, params) = info
            .algorithm
            .oids()
            .map_err(|e| KeyError::Malformed(format!("algorithm identifier: {e}")))?;
        let bad = |what: &str, e: String| KeyError::Malformed(format!("{what}: {e}"));
        let inner = match (alg, params) {
            (OID_EC_PUBLIC_KEY, Some(OID_P256)) => Private::P256(
                p256::ecdsa::SigningKey::from_pkcs8_der(der)
                    .map_err(|e| bad("P-256 private key", e.to_string()))?,
            ),
            (OID_EC_PUBLIC_KEY, Some(OID_P384)) => Private::P384(
                p384::ecdsa::SigningKey::from_pkcs8_der(der)
                    .map_err(|e| bad("P-384 private key", e.to_string()))?,
            ),
            (OID_ED25519, _) => Private::Ed25519(
                ed25519_dalek::SigningKey::from_pkcs8_der(der)
                    .map_err(|e| bad("Ed25519 private key", e.to_string()))?,
            ),
            (OID_EC_PUBLIC_KEY, Some(curve)) => {
                return Err(KeyError::Unsupported(format!("ECDSA on curve {curve}")));
            }
            (OID_RSA, _) => return Err(KeyError::Unsupported("RSA".into())),
            (other, _) => return Err(KeyError::Unsupported(format!("algorithm {other}"))),
        };
        Ok(PrivateKey { inner })
    }

    /// Reads a DER SEC1 `ECPrivateKey` (OpenSSL's `EC PRIVATE KEY`).
    pub fn from_sec1_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = sec1::EcPrivateKey::try_from(der)
            .map_err(|e| KeyError::Malformed(format!("SEC1: {e}")))?;
        let curve = key.parameters.and_then(|p| p.named_curve());
        let scalar_len = key.private_key.len();
        let inner = match (curve, scalar_len) {
            (Some(OID_P256), _) | (None, 32) => Private::P256(
                p256::SecretKey::from_sec1_der(der)
                    .map_err(|e| KeyError::Malformed(format!("P-256 SEC1 key: {e}")))?
                    .into(),
            ),
            (Some(OID_P384), _) | (None, 48) => Private::P384(
                p384::SecretKey::from_sec1_der(der)
                    .map_err(|e| KeyError::Malformed(format!("P-384 SEC1 key: {e}")))?
                    .into(),
            ),
            (Some(other), _) => {
                return Err(KeyError::Unsupported(format!("ECDSA on curve {other}")));
            }
            (None, n) => {
                return Err(KeyError::Malformed(format!(
                    "SEC1 key without curve parameters and a {n}-byte scalar"
                )));
            }
        };
        Ok(PrivateKey { inner })
    }

    /// The DER PKCS#8 encoding (zeroized when dropped).
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        let doc = match &self.inner {
            Private::P256(k) => k.to_pkcs8_der(),
            Private::P384(k) => k.to_pkcs8_der(),
            Private::Ed25519(k) => k.to_pkcs8_der(),
        }
        .expect("encoding a valid private key cannot fail");
        Zeroizing::new(doc.as_bytes().to_vec())
    }

    /// cosign's encrypted PEM (`ENCRYPTED SIGSTORE PRIVATE KEY`, scrypt N=65536, r=8, p=1, as
    /// current cosign writes).
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<Zeroizing<String>, KeyError> {
        encrypted::encrypt_pem(&self.to_pkcs8_der(), password, encrypted::DEFAULT_LOG_N)
    }

    /// [`PrivateKey::to_encrypted_pem`] with another scrypt cost (`N = 2^log_n`): lower costs are
    /// for tests only.
    pub fn to_encrypted_pem_with_cost(
        &self,
        password: &[u8],
        log_n: u8,
    ) -> Result<Zeroizing<String>, KeyError> {
        encrypted::encrypt_pem(&self.to_pkcs8_der(), password, log_n)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.inner {
            Private::P256(_) => KeyAlgorithm::EcdsaP256,
            Private::P384(_) => KeyAlgorithm::EcdsaP384,
            Private::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        let inner = match &self.inner {
            Private::P256(k) => Public::P256(*k.verifying_key()),
            Private::P384(k) => Public::P384(*k.verifying_key()),
            Private::Ed25519(k) => Public::Ed25519(k.verifying_key()),
        };
        PublicKey { inner }
    }

    /// Signs `message` as cosign does: DER ECDSA over SHA-256(message), or Ed25519.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.inner {
            Private::P256(k) => {
                let sig: p256::ecdsa::Signature = k
                    .sign_prehash(&Sha256::digest(message))
                    .expect("a 32-byte prehash is always accepted");
                sig.to_der().as_bytes().to_vec()
            }
            Private::P384(k) => {
                let sig: p384::ecdsa::Signature = k
                    .sign_prehash(&Sha256::digest(message))
                    .expect("a 32-byte prehash is always accepted");
                sig.to_der().as_bytes().to_vec()
            }
            Private::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                k.sign(message).to_bytes().to_vec()
            }
        }
    }

    /// [`PrivateKey::sign`], base64 encoded (what cosign stores and prints).
    pub fn sign_base64(&self, message: &[u8]) -> String {
        STANDARD.encode(self.sign(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_round_trips() {
        for alg in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Ed25519,
        ] {
            let k = PrivateKey::generate(alg).unwrap();
            assert_eq!(k.algorithm(), alg);
            let sig = k.sign(b"hello");
            let pubkey = k.public_key();
            pubkey.verify(b"hello", &sig).unwrap();
            assert_eq!(
                pubkey.verify(b"hellO", &sig),
                Err(VerifyError::BadSignature),
                "{alg}"
            );
            let again = PublicKey::from_pem(&pubkey.to_pem()).unwrap();
            assert_eq!(again, pubkey);
            let der = k.to_pkcs8_der();
            let back = PrivateKey::from_pkcs8_der(&der).unwrap();
            assert_eq!(back.public_key(), pubkey);
            let pem = pem_rfc7468::encode_string("PRIVATE KEY", LineEnding::LF, &der).unwrap();
            let back = PrivateKey::from_pem(pem.as_bytes(), None).unwrap();
            assert_eq!(back.public_key(), pubkey);
            assert!(!format!("{k:?}").contains(&hex::encode(&der[der.len() - 16..])));
        }
    }

    #[test]
    fn sec1_import() {
        let k = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let Private::P256(sk) = &k.inner else {
            unreachable!()
        };
        let secret = p256::SecretKey::from(sk);
        let sec1 = secret.to_sec1_der().unwrap();
        let pem = pem_rfc7468::encode_string("EC PRIVATE KEY", LineEnding::LF, &sec1).unwrap();
        let back = PrivateKey::from_pem(pem.as_bytes(), None).unwrap();
        assert_eq!(back.public_key(), k.public_key());
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(matches!(
            PublicKey::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(KeyError::Pem(_))
        ));
        assert!(PublicKey::from_pem("not pem").is_err());
        assert!(PrivateKey::from_pem(b"garbage", None).is_err());
    }
}
