//! Offline checks of Rekor transparency-log promises (signed entry timestamps, SETs).
//!
//! A SET is Rekor's ECDSA signature over the canonical JSON (sorted keys, compact)
//! `{"body":"<base64 entry>","integratedTime":<unix>,"logID":"<hex>","logIndex":<n>}`, where
//! `logID` is the SHA-256 of Rekor's public key (SPKI DER). cosign stores it in the
//! `dev.sigstore.cosign/bundle` layer annotation; Sigstore bundles carry it as
//! `tlogEntries[].inclusionPromise`. Verifying it needs only Rekor's public key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};

use crate::error::VerifyError;
use crate::keys::PublicKey;
use crate::payload::go_string;

/// A log entry whose promise verified.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TlogEntry {
    /// Index in the log.
    pub log_index: i64,
    /// When the log integrated the entry (unix seconds).
    pub integrated_time: i64,
    /// Hex SHA-256 of the log's public key.
    pub log_id: String,
}

/// The message a SET signs.
pub fn set_message(
    body_b64: &str,
    integrated_time: i64,
    log_id_hex: &str,
    log_index: i64,
) -> Vec<u8> {
    let mut s = String::from("{\"body\":");
    go_string(&mut s, body_b64);
    s.push_str(&format!(",\"integratedTime\":{integrated_time},\"logID\":"));
    go_string(&mut s, log_id_hex);
    s.push_str(&format!(",\"logIndex\":{log_index}}}"));
    s.into_bytes()
}

/// Verifies a SET with one of the given Rekor keys (the one whose SHA-256 is `log_id_hex`).
pub fn verify_set(
    body_b64: &str,
    integrated_time: i64,
    log_id_hex: &str,
    log_index: i64,
    set_b64: &str,
    rekor_keys: &[PublicKey],
) -> Result<TlogEntry, VerifyError> {
    let key = rekor_keys
        .iter()
        .find(|k| hex::encode(Sha256::digest(k.to_spki_der())) == log_id_hex)
        .ok_or_else(|| {
            VerifyError::Tlog(format!(
                "entry logged by {log_id_hex}, which is not one of the trusted Rekor keys"
            ))
        })?;
    let sig = STANDARD
        .decode(set_b64.trim())
        .map_err(|e| VerifyError::Tlog(format!("SET is not base64: {e}")))?;
    key.verify(
        &set_message(body_b64, integrated_time, log_id_hex, log_index),
        &sig,
    )
    .map_err(|e| VerifyError::Tlog(format!("signed entry timestamp does not verify: {e}")))?;
    Ok(TlogEntry {
        log_index,
        integrated_time,
        log_id: log_id_hex.to_owned(),
    })
}

/// Verifies cosign's `dev.sigstore.cosign/bundle` annotation for a simple-signing layer: the SET,
/// and that the logged `hashedrekord` entry is this payload's hash and this signature.
pub fn verify_cosign_bundle_annotation(
    annotation: &str,
    payload: &[u8],
    signature_b64: &str,
    rekor_keys: &[PublicKey],
) -> Result<TlogEntry, VerifyError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct RekorBundle {
        signed_entry_timestamp: String,
        payload: Entry,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Entry {
        body: String,
        integrated_time: i64,
        log_index: i64,
        #[serde(rename = "logID")]
        log_id: String,
    }
    let b: RekorBundle = serde_json::from_str(annotation)
        .map_err(|e| VerifyError::Tlog(format!("Rekor bundle annotation: {e}")))?;
    let entry = verify_set(
        &b.payload.body,
        b.payload.integrated_time,
        &b.payload.log_id,
        b.payload.log_index,
        &b.signed_entry_timestamp,
        rekor_keys,
    )?;
    check_hashedrekord_body(&b.payload.body, payload, signature_b64)?;
    Ok(entry)
}

/// Checks that a base64 `hashedrekord` entry body logs `sha256(payload)` and `signature_b64`.
pub fn check_hashedrekord_body(
    body_b64: &str,
    payload: &[u8],
    signature_b64: &str,
) -> Result<(), VerifyError> {
    let body = STANDARD
        .decode(body_b64)
        .map_err(|e| VerifyError::Tlog(format!("entry body is not base64: {e}")))?;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| VerifyError::Tlog(format!("entry body is not JSON: {e}")))?;
    if v["kind"] != "hashedrekord" {
        return Err(VerifyError::Tlog(format!(
            "entry kind {} is not hashedrekord",
            v["kind"]
        )));
    }
    let logged_hash = v["spec"]["data"]["hash"]["value"].as_str().unwrap_or("");
    if logged_hash != hex::encode(Sha256::digest(payload)) {
        return Err(VerifyError::Tlog(
            "the log entry is for other content than this payload".into(),
        ));
    }
    let logged_sig = v["spec"]["signature"]["content"].as_str().unwrap_or("");
    if logged_sig.trim() != signature_b64.trim() {
        return Err(VerifyError::Tlog(
            "the log entry holds another signature than this one".into(),
        ));
    }
    Ok(())
}
