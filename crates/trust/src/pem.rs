//! Reading PEM blocks, shared by the key readers ([`crate::keys`]) and the encrypted-key envelope
//! ([`crate::encrypted`]); it depends on neither, so the modules import it one way.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::error::KeyError;

/// Decodes the first PEM block of `text` as Go's `encoding/pem` does: any line length, blank
/// lines and surrounding text tolerated (RFC 7468's strict 64-column rule is not required, as
/// keys written by other tools often break it). PEM headers (`Proc-Type: ...`) are refused.
pub(crate) fn pem_decode(text: &[u8]) -> Result<(String, Vec<u8>), KeyError> {
    let text = std::str::from_utf8(text).map_err(|_| KeyError::Pem("not UTF-8 text".into()))?;
    let start = text
        .find("-----BEGIN ")
        .ok_or_else(|| KeyError::Pem("no -----BEGIN line".into()))?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let end_label = rest
        .find("-----")
        .ok_or_else(|| KeyError::Pem("unterminated BEGIN line".into()))?;
    let label = rest[..end_label].to_owned();
    let body_and_end = &rest[end_label + 5..];
    let end_marker = format!("-----END {label}-----");
    let body_end = body_and_end
        .find(&end_marker)
        .ok_or_else(|| KeyError::Pem(format!("no {end_marker} line")))?;
    let body = &body_and_end[..body_end];
    if body.lines().any(|l| l.contains(':')) {
        return Err(KeyError::Pem(
            "PEM headers (legacy OpenSSL encryption) are not supported".into(),
        ));
    }
    let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| KeyError::Pem(format!("PEM body is not base64: {e}")))?;
    Ok((label, der))
}
