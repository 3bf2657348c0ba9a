//! Sigstore bundles (v0.1 to v0.3): DSSE envelopes with in-toto statements (cosign v3 image
//! signatures and attestations) and message signatures (`cosign sign-blob --bundle`).
//!
//! Verification here is key-based: the signature must verify with a trusted public key. A bundle
//! that carries a certificate (keyless) exposes the certificate's key through
//! [`Bundle::certificate_key`], so a Fulcio chain check can be added in front of the same code.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use oci::Digest;
use pkcs8::der::{Decode as _, Encode as _};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::error::VerifyError;
use crate::keys::PublicKey;
use crate::payload::check_annotations;
use crate::rekor::{TlogEntry, verify_set};

/// The DSSE payload type of in-toto statements.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The predicate type of a cosign v3 image signature.
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    media_type: String,
    #[serde(default)]
    verification_material: Material,
    #[serde(default)]
    dsse_envelope: Option<Envelope>,
    #[serde(default)]
    message_signature: Option<MessageSignature>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Material {
    #[serde(default)]
    public_key: Option<Hint>,
    #[serde(default)]
    certificate: Option<RawBytes>,
    #[serde(default)]
    x509_certificate_chain: Option<Chain>,
    #[serde(default)]
    tlog_entries: Vec<TlogRaw>,
}

#[derive(Clone, Debug, Deserialize)]
struct Hint {
    #[serde(default)]
    hint: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: String,
}

#[derive(Clone, Debug, Deserialize)]
struct Chain {
    #[serde(default)]
    certificates: Vec<RawBytes>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TlogRaw {
    log_index: NumOrString,
    log_id: LogId,
    integrated_time: NumOrString,
    #[serde(default)]
    inclusion_promise: Option<Promise>,
    canonicalized_body: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum NumOrString {
    Num(i64),
    Str(String),
}

impl NumOrString {
    fn value(&self) -> Result<i64, VerifyError> {
        match self {
            NumOrString::Num(n) => Ok(*n),
            NumOrString::Str(s) => s
                .parse()
                .map_err(|_| VerifyError::MalformedBundle(format!("{s:?} is not an integer"))),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogId {
    key_id: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Promise {
    signed_entry_timestamp: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    signatures: Vec<EnvSig>,
}

#[derive(Clone, Debug, Deserialize)]
struct EnvSig {
    sig: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageSignature {
    #[serde(default)]
    message_digest: Option<MessageDigest>,
    signature: String,
}

#[derive(Clone, Debug, Deserialize)]
struct MessageDigest {
    algorithm: String,
    digest: String,
}

/// What a bundle signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleContent {
    /// A DSSE envelope (in-toto statement).
    Dsse,
    /// A signature over an artifact's bytes.
    MessageSignature,
}

/// A parsed Sigstore bundle.
#[derive(Clone, Debug)]
pub struct Bundle {
    raw: Raw,
}

/// An in-toto statement whose DSSE signature verified.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Statement {
    /// `predicateType`.
    pub predicate_type: String,
    /// The subjects' digests (`algorithm` -> hex) and annotations.
    pub subjects: Vec<Subject>,
    /// The whole statement, as signed.
    #[serde(skip)]
    pub json: serde_json::Value,
}

/// One subject of an in-toto statement.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Subject {
    /// `name` (may be empty: cosign v3 image signatures omit it).
    pub name: String,
    /// `digest`: algorithm -> hex.
    pub digest: BTreeMap<String, String>,
    /// `annotations` (cosign v3 puts `sign -a` annotations here).
    pub annotations: BTreeMap<String, serde_json::Value>,
}

/// `PAE(type, body)` of DSSE: `"DSSEv1" SP len(type) SP type SP len(body) SP body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

fn b64(what: &str, s: &str) -> Result<Vec<u8>, VerifyError> {
    STANDARD
        .decode(s.trim())
        .map_err(|e| VerifyError::MalformedBundle(format!("{what} is not base64: {e}")))
}

impl Bundle {
    /// Parses a bundle (JSON, protobuf field names).
    pub fn parse(bytes: &[u8]) -> Result<Self, VerifyError> {
        let raw: Raw = serde_json::from_slice(bytes)
            .map_err(|e| VerifyError::MalformedBundle(format!("not a Sigstore bundle: {e}")))?;
        if !raw
            .media_type
            .starts_with("application/vnd.dev.sigstore.bundle")
        {
            return Err(VerifyError::MalformedBundle(format!(
                "media type {:?} is not a Sigstore bundle",
                raw.media_type
            )));
        }
        match (&raw.dsse_envelope, &raw.message_signature) {
            (Some(_), None) | (None, Some(_)) => Ok(Bundle { raw }),
            _ => Err(VerifyError::MalformedBundle(
                "a bundle holds exactly one of dsseEnvelope and messageSignature".into(),
            )),
        }
    }

    /// The bundle's media type (its version).
    pub fn media_type(&self) -> &str {
        &self.raw.media_type
    }

    /// DSSE envelope or message signature.
    pub fn content(&self) -> BundleContent {
        if self.raw.dsse_envelope.is_some() {
            BundleContent::Dsse
        } else {
            BundleContent::MessageSignature
        }
    }

    /// The `verificationMaterial.publicKey.hint`, when the bundle was made with a key.
    pub fn key_hint(&self) -> Option<&str> {
        self.raw
            .verification_material
            .public_key
            .as_ref()
            .and_then(|h| h.hint.as_deref())
    }

    /// True when the bundle carries a signing certificate (keyless signing).
    pub fn has_certificate(&self) -> bool {
        self.leaf_certificate().is_some()
    }

    fn leaf_certificate(&self) -> Option<&str> {
        let m = &self.raw.verification_material;
        m.certificate
            .as_ref()
            .map(|c| c.raw_bytes.as_str())
            .or_else(|| {
                m.x509_certificate_chain
                    .as_ref()
                    .and_then(|c| c.certificates.first())
                    .map(|c| c.raw_bytes.as_str())
            })
    }

    /// The public key of the signing certificate, *without* any check of the certificate itself
    /// (no Fulcio chain, validity or identity check): for keyless verification to build on, or to
    /// test the signature computation of certificate-based bundles.
    pub fn certificate_key(&self) -> Result<PublicKey, VerifyError> {
        let raw = self
            .leaf_certificate()
            .ok_or_else(|| VerifyError::MalformedBundle("no certificate in the bundle".into()))?;
        let der = b64("certificate", raw)?;
        let cert = x509_cert::Certificate::from_der(&der)
            .map_err(|e| VerifyError::MalformedBundle(format!("certificate: {e}")))?;
        let spki = cert
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(|e| VerifyError::MalformedBundle(format!("certificate key: {e}")))?;
        PublicKey::from_spki_der(&spki)
            .map_err(|e| VerifyError::MalformedBundle(format!("certificate key: {e}")))
    }

    /// Verifies the DSSE envelope's signature over `PAE(payloadType, payload)` with one of `keys`;
    /// returns the index of the key and the payload.
    pub fn verify_dsse(&self, keys: &[PublicKey]) -> Result<(usize, Vec<u8>), VerifyError> {
        let env = self.raw.dsse_envelope.as_ref().ok_or_else(|| {
            VerifyError::MalformedBundle("the bundle holds a message signature, not DSSE".into())
        })?;
        let payload = b64("DSSE payload", &env.payload)?;
        let message = pae(&env.payload_type, &payload);
        let mut last = VerifyError::MalformedBundle("DSSE envelope has no signatures".into());
        for s in &env.signatures {
            let sig = b64("DSSE signature", &s.sig)?;
            for (i, k) in keys.iter().enumerate() {
                match k.verify(&message, &sig) {
                    Ok(()) => return Ok((i, payload)),
                    Err(e) => last = e,
                }
            }
        }
        Err(match last {
            VerifyError::BadSignature if keys.len() != 1 => VerifyError::NoKeyMatched(keys.len()),
            other => other,
        })
    }

    /// Verifies an image signature or attestation bundle: the DSSE signature with one of `keys`,
    /// an in-toto statement, a subject whose digest is `subject`, and (on that subject) the
    /// required annotations. Returns the key index and the statement.
    pub fn verify_image(
        &self,
        subject: &Digest,
        keys: &[PublicKey],
        required: &BTreeMap<String, String>,
    ) -> Result<(usize, Statement), VerifyError> {
        let env = self.raw.dsse_envelope.as_ref().ok_or_else(|| {
            VerifyError::MalformedBundle(
                "a message-signature bundle signs a blob, not an image".into(),
            )
        })?;
        if env.payload_type != IN_TOTO_PAYLOAD_TYPE {
            return Err(VerifyError::MalformedBundle(format!(
                "DSSE payload type {:?} is not an in-toto statement",
                env.payload_type
            )));
        }
        let (key, payload) = self.verify_dsse(keys)?;
        let statement = parse_statement(&payload)?;
        let alg = subject.algorithm().as_str();
        let matching = statement
            .subjects
            .iter()
            .find(|s| s.digest.get(alg).map(String::as_str) == Some(subject.hex()));
        let Some(matching) = matching else {
            let found: Vec<String> = statement
                .subjects
                .iter()
                .flat_map(|s| s.digest.iter().map(|(a, h)| format!("{a}:{h}")))
                .collect();
            return Err(VerifyError::DigestMismatch {
                expected: subject.to_string(),
                found: found.join(", "),
            });
        };
        check_annotations(&matching.annotations, required)?;
        Ok((key, statement))
    }

    /// Verifies a blob bundle against the artifact's bytes: a message signature (its digest must
    /// be the artifact's SHA-256) or a DSSE statement naming the artifact's SHA-256.
    pub fn verify_blob(&self, artifact: &[u8], keys: &[PublicKey]) -> Result<usize, VerifyError> {
        match &self.raw.message_signature {
            Some(ms) => {
                if let Some(md) = &ms.message_digest {
                    if md.algorithm != "SHA2_256" {
                        return Err(VerifyError::MalformedBundle(format!(
                            "message digest algorithm {} is not supported",
                            md.algorithm
                        )));
                    }
                    if b64("message digest", &md.digest)? != Sha256::digest(artifact).as_slice() {
                        return Err(VerifyError::DigestMismatch {
                            expected: Digest::sha256(artifact).to_string(),
                            found: format!("sha256:{}", hex::encode(b64("digest", &md.digest)?)),
                        });
                    }
                }
                let sig = b64("signature", &ms.signature)?;
                let mut last = VerifyError::NoKeyMatched(keys.len());
                for (i, k) in keys.iter().enumerate() {
                    match k.verify(artifact, &sig) {
                        Ok(()) => return Ok(i),
                        Err(e) => last = e,
                    }
                }
                Err(match last {
                    VerifyError::BadSignature if keys.len() != 1 => {
                        VerifyError::NoKeyMatched(keys.len())
                    }
                    other => other,
                })
            }
            None => {
                let d = Digest::sha256(artifact);
                self.verify_image(&d, keys, &BTreeMap::new())
                    .map(|(i, _)| i)
            }
        }
    }

    /// Verifies the transparency-log promises (SETs) of every entry with the given Rekor keys.
    /// An empty result means the bundle has no log entry.
    pub fn verify_tlog(&self, rekor_keys: &[PublicKey]) -> Result<Vec<TlogEntry>, VerifyError> {
        let mut out = Vec::new();
        for e in &self.raw.verification_material.tlog_entries {
            let promise = e.inclusion_promise.as_ref().ok_or_else(|| {
                VerifyError::Tlog("log entry without an inclusion promise (SET)".into())
            })?;
            let log_id = hex::encode(b64("logId.keyId", &e.log_id.key_id)?);
            out.push(verify_set(
                &e.canonicalized_body,
                e.integrated_time.value()?,
                &log_id,
                e.log_index.value()?,
                &promise.signed_entry_timestamp,
                rekor_keys,
            )?);
        }
        Ok(out)
    }
}

fn parse_statement(payload: &[u8]) -> Result<Statement, VerifyError> {
    let json: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| VerifyError::MalformedBundle(format!("in-toto statement is not JSON: {e}")))?;
    let ty = json["_type"].as_str().unwrap_or("");
    if !ty.starts_with("https://in-toto.io/Statement/") {
        return Err(VerifyError::MalformedBundle(format!(
            "payload _type {ty:?} is not an in-toto statement"
        )));
    }
    let predicate_type = json["predicateType"].as_str().unwrap_or("").to_owned();
    let mut subjects = Vec::new();
    for s in json["subject"].as_array().into_iter().flatten() {
        let digest = s["digest"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|h| (k.clone(), h.to_ascii_lowercase())))
                    .collect()
            })
            .unwrap_or_default();
        let annotations = s["annotations"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        subjects.push(Subject {
            name: s["name"].as_str().unwrap_or("").to_owned(),
            digest,
            annotations,
        });
    }
    if subjects.is_empty() {
        return Err(VerifyError::MalformedBundle(
            "in-toto statement without subjects".into(),
        ));
    }
    Ok(Statement {
        predicate_type,
        subjects,
        json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_layout() {
        assert_eq!(
            pae("application/vnd.in-toto+json", b"{}"),
            b"DSSEv1 28 application/vnd.in-toto+json 2 {}"
        );
    }
}
