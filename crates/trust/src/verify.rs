//! Image signature verification as a pure function: (image digest, signature manifests and their
//! blobs, trusted keys, requirements) -> [`Verdict`]. No I/O: the CLI fetches the artifacts with
//! the registry client, the registry reads them from its own store, and both get the same answer.

use std::collections::BTreeMap;

use oci::Digest;

use crate::bundle::Bundle;
use crate::error::VerifyError;
use crate::keys::{PrivateKey, PublicKey, decode_base64};
use crate::manifest::{REKOR_BUNDLE_ANNOTATION, SignatureLayer, SignatureManifest, SignedLayer};
use crate::payload::{self, SimpleSigning};
use crate::rekor::{TlogEntry, verify_cosign_bundle_annotation};

/// A signature manifest found for an image, with the blobs it lists.
#[derive(Clone, Debug, Default)]
pub struct SignatureArtifact {
    /// Where it was found, for reports (`tag sha256-<hex>.sig`, `referrer sha256:...`).
    pub source: String,
    /// The manifest bytes.
    pub manifest: Vec<u8>,
    /// Blobs by digest: the payloads or bundles its layers point to (others are ignored). Each
    /// is re-hashed before use.
    pub blobs: BTreeMap<Digest, Vec<u8>>,
}

/// What a signature must satisfy beyond verifying with a trusted key.
#[derive(Clone, Debug, Default)]
pub struct Requirements {
    /// Annotations the signed payload must carry with these values (`verify -a key=value`).
    pub annotations: BTreeMap<String, String>,
    /// Rekor public keys: when given, transparency-log promises (SETs) attached to signatures are
    /// verified, and a bad one rejects the signature.
    pub rekor_keys: Vec<PublicKey>,
    /// Reject signatures without a verified transparency-log promise.
    pub require_tlog: bool,
}

/// How a verified signature was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureFormat {
    /// cosign's simple-signing payload with a detached signature (tag or referrer form).
    SimpleSigning,
    /// A Sigstore bundle with a DSSE in-toto statement (cosign v3).
    SigstoreBundle,
}

impl std::fmt::Display for SignatureFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignatureFormat::SimpleSigning => "cosign simple-signing",
            SignatureFormat::SigstoreBundle => "Sigstore bundle",
        })
    }
}

/// A signature that verified.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct VerifiedSignature {
    /// Where it was found.
    pub source: String,
    /// Its format.
    pub format: SignatureFormat,
    /// Index of the trusted key that verified it.
    pub key_index: usize,
    /// That key's id (`sha256:` of its SPKI DER).
    pub key_id: String,
    /// The signed `docker-reference` (simple signing) or subject name (bundle), if any.
    pub identity: Option<String>,
    /// The signed annotations.
    pub annotations: BTreeMap<String, serde_json::Value>,
    /// Transparency-log entries whose promises verified.
    pub tlog: Vec<TlogEntry>,
}

/// A signature (or a whole manifest) that was looked at and refused.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rejection {
    /// Where it was found.
    pub source: String,
    /// Why it was refused.
    #[serde(serialize_with = "display")]
    pub reason: VerifyError,
}

fn display<S: serde::Serializer>(e: &VerifyError, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(e)
}

/// The outcome for one image.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Verdict {
    /// The image digest.
    pub subject: Digest,
    /// Signatures that verified with a trusted key and satisfy the requirements.
    pub verified: Vec<VerifiedSignature>,
    /// Signatures and manifests that did not.
    pub rejected: Vec<Rejection>,
}

impl Verdict {
    /// True when at least one signature verified.
    pub fn is_verified(&self) -> bool {
        !self.verified.is_empty()
    }
}

/// Signs an image digest as `cosign sign --key` does: the simple-signing payload for
/// `docker_reference` (what [`oci::ImageRef::ggcr_name`] gives: Docker Hub is spelled
/// `index.docker.io`) and `digest`, with `annotations`, and its base64 signature, ready for
/// [`crate::manifest::tag_signature_image`] or [`crate::manifest::referrer_signature_image`].
pub fn sign_image(
    key: &PrivateKey,
    docker_reference: &str,
    digest: &Digest,
    annotations: &BTreeMap<String, String>,
) -> SignatureLayer {
    let payload = payload::build(docker_reference, digest, annotations);
    let signature = key.sign_base64(&payload);
    SignatureLayer {
        payload,
        signature,
        annotations: BTreeMap::new(),
    }
}

/// Verifies every signature in `artifacts` for the image `subject` against `keys`.
///
/// A simple-signing signature verifies when its payload blob is intact, its signature verifies
/// with one of `keys` over the exact payload bytes, the payload names `subject`, and it carries
/// the required annotations. A bundle verifies when its DSSE signature verifies with one of
/// `keys`, its in-toto statement has `subject` among its subjects, and that subject carries the
/// required annotations. In the referrer forms the manifest's `subject` must be the image too.
/// Manifests that are not signatures (SBOMs, other artifacts) are ignored.
pub fn verify_image(
    subject: &Digest,
    artifacts: &[SignatureArtifact],
    keys: &[PublicKey],
    requirements: &Requirements,
) -> Verdict {
    let mut verdict = Verdict {
        subject: subject.clone(),
        verified: Vec::new(),
        rejected: Vec::new(),
    };
    for a in artifacts {
        let reject = |verdict: &mut Verdict, source: String, reason: VerifyError| {
            verdict.rejected.push(Rejection { source, reason });
        };
        let parsed = match SignatureManifest::parse(&a.manifest) {
            Ok(p) => p,
            Err(e) => {
                reject(&mut verdict, a.source.clone(), e);
                continue;
            }
        };
        match parsed {
            SignatureManifest::Other => {}
            SignatureManifest::SimpleSigning {
                layers,
                subject: manifest_subject,
            } => {
                if let Some(s) = manifest_subject.filter(|s| s != subject) {
                    reject(
                        &mut verdict,
                        a.source.clone(),
                        VerifyError::MalformedManifest(format!(
                            "referrer of {s}, not of {subject}"
                        )),
                    );
                    continue;
                }
                for (i, layer) in layers.iter().enumerate() {
                    let source = if layers.len() > 1 {
                        format!("{} (signature {})", a.source, i + 1)
                    } else {
                        a.source.clone()
                    };
                    match verify_simple_layer(subject, layer, &a.blobs, keys, requirements) {
                        Ok(v) => verdict.verified.push(VerifiedSignature { source, ..v }),
                        Err(e) => reject(&mut verdict, source, e),
                    }
                }
            }
            SignatureManifest::Bundle {
                layer,
                subject: manifest_subject,
            } => {
                if let Some(s) = manifest_subject.filter(|s| s != subject) {
                    reject(
                        &mut verdict,
                        a.source.clone(),
                        VerifyError::MalformedManifest(format!(
                            "referrer of {s}, not of {subject}"
                        )),
                    );
                    continue;
                }
                let result = blob(&a.blobs, &layer.digest, layer.size)
                    .and_then(Bundle::parse)
                    .and_then(|b| verify_bundle(subject, &b, keys, requirements));
                match result {
                    Ok(v) => verdict.verified.push(VerifiedSignature {
                        source: a.source.clone(),
                        ..v
                    }),
                    Err(e) => reject(&mut verdict, a.source.clone(), e),
                }
            }
        }
    }
    verdict
}

/// The blob `digest`, checked against its digest and declared size.
fn blob<'a>(
    blobs: &'a BTreeMap<Digest, Vec<u8>>,
    digest: &Digest,
    size: i64,
) -> Result<&'a [u8], VerifyError> {
    let b = blobs.get(digest).ok_or_else(|| VerifyError::Blob {
        digest: digest.to_string(),
        reason: "missing".into(),
    })?;
    let actual = Digest::of(digest.algorithm(), b);
    if actual != *digest {
        return Err(VerifyError::Blob {
            digest: digest.to_string(),
            reason: format!("content hashes to {actual}"),
        });
    }
    if size >= 0 && b.len() as i64 != size {
        return Err(VerifyError::Blob {
            digest: digest.to_string(),
            reason: format!("{} bytes, the manifest says {size}", b.len()),
        });
    }
    Ok(b)
}

fn verify_with_any(
    keys: &[PublicKey],
    message: &[u8],
    signature: &[u8],
) -> Result<usize, VerifyError> {
    if keys.is_empty() {
        return Err(VerifyError::NoKeyMatched(0));
    }
    let mut last = VerifyError::BadSignature;
    for (i, k) in keys.iter().enumerate() {
        match k.verify(message, signature) {
            Ok(()) => return Ok(i),
            Err(e) => last = e,
        }
    }
    Err(match last {
        VerifyError::BadSignature if keys.len() > 1 => VerifyError::NoKeyMatched(keys.len()),
        other => other,
    })
}

fn verify_simple_layer(
    subject: &Digest,
    layer: &SignedLayer,
    blobs: &BTreeMap<Digest, Vec<u8>>,
    keys: &[PublicKey],
    req: &Requirements,
) -> Result<VerifiedSignature, VerifyError> {
    let signature_b64 = layer.signature.as_deref().ok_or_else(|| {
        VerifyError::MalformedManifest("layer without a dev.cosignproject.cosign/signature".into())
    })?;
    let payload = blob(blobs, &layer.digest, layer.size)?;
    let signature = decode_base64(signature_b64)?;
    let key_index = verify_with_any(keys, payload, &signature)?;
    let parsed = SimpleSigning::parse(payload)?;
    parsed.check(subject, &req.annotations)?;
    let mut tlog = Vec::new();
    if let Some(bundle) = layer.annotations.get(REKOR_BUNDLE_ANNOTATION)
        && !req.rekor_keys.is_empty()
    {
        tlog.push(verify_cosign_bundle_annotation(
            bundle,
            payload,
            signature_b64,
            &req.rekor_keys,
        )?);
    }
    if req.require_tlog && tlog.is_empty() {
        return Err(VerifyError::Tlog(
            "no verified transparency-log entry, and one is required".into(),
        ));
    }
    Ok(VerifiedSignature {
        source: String::new(),
        format: SignatureFormat::SimpleSigning,
        key_index,
        key_id: keys[key_index].key_id(),
        identity: Some(parsed.docker_reference).filter(|r| !r.is_empty()),
        annotations: parsed.optional,
        tlog,
    })
}

fn verify_bundle(
    subject: &Digest,
    bundle: &Bundle,
    keys: &[PublicKey],
    req: &Requirements,
) -> Result<VerifiedSignature, VerifyError> {
    if keys.is_empty() {
        return Err(VerifyError::NoKeyMatched(0));
    }
    let (key_index, statement) = bundle.verify_image(subject, keys, &req.annotations)?;
    let tlog = if req.rekor_keys.is_empty() {
        Vec::new()
    } else {
        bundle.verify_tlog(&req.rekor_keys)?
    };
    if req.require_tlog && tlog.is_empty() {
        return Err(VerifyError::Tlog(
            "no verified transparency-log entry, and one is required".into(),
        ));
    }
    let alg = subject.algorithm().as_str();
    let matching = statement
        .subjects
        .iter()
        .find(|s| s.digest.get(alg).map(String::as_str) == Some(subject.hex()));
    Ok(VerifiedSignature {
        source: String::new(),
        format: SignatureFormat::SigstoreBundle,
        key_index,
        key_id: keys[key_index].key_id(),
        identity: matching.map(|s| s.name.clone()).filter(|n| !n.is_empty()),
        annotations: matching.map(|s| s.annotations.clone()).unwrap_or_default(),
        tlog,
    })
}
