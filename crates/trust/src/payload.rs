//! cosign's simple-signing payload (the bytes an image signature signs), byte for byte.
//!
//! ```json
//! {"critical":{"identity":{"docker-reference":"registry/repo"},
//!   "image":{"docker-manifest-digest":"sha256:..."},
//!   "type":"cosign container image signature"},"optional":null}
//! ```
//!
//! compact, no trailing newline, `optional` is `null` without annotations and otherwise an object
//! with its keys sorted, strings escaped as Go's `encoding/json` escapes them (`<`, `>`, `&`,
//! U+2028 and U+2029 as `\u` escapes).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use oci::Digest;

use crate::error::VerifyError;

/// The media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// `critical.type` of a cosign image signature.
pub const COSIGN_SIGNATURE_TYPE: &str = "cosign container image signature";

/// Builds the payload cosign signs for `digest` in `docker_reference`, with optional string
/// annotations (`cosign sign -a key=value`).
pub fn build(
    docker_reference: &str,
    digest: &Digest,
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let mut s = String::with_capacity(256);
    s.push_str("{\"critical\":{\"identity\":{\"docker-reference\":");
    go_string(&mut s, docker_reference);
    s.push_str("},\"image\":{\"docker-manifest-digest\":");
    go_string(&mut s, &digest.to_string());
    s.push_str("},\"type\":");
    go_string(&mut s, COSIGN_SIGNATURE_TYPE);
    s.push_str("},\"optional\":");
    if annotations.is_empty() {
        s.push_str("null");
    } else {
        s.push('{');
        for (i, (k, v)) in annotations.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            go_string(&mut s, k);
            s.push(':');
            go_string(&mut s, v);
        }
        s.push('}');
    }
    s.push('}');
    s.into_bytes()
}

/// Appends `v` as a JSON string the way Go's `encoding/json` writes it.
pub(crate) fn go_string(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Re-escapes serde_json output as Go's `encoding/json` would (`<`, `>`, `&`, U+2028, U+2029
/// inside strings; these characters cannot appear outside strings in JSON).
pub(crate) fn go_escape_json(json: String) -> String {
    if !json.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A parsed simple-signing payload.
#[derive(Clone, Debug, PartialEq)]
pub struct SimpleSigning {
    /// `critical.identity.docker-reference`.
    pub docker_reference: String,
    /// `critical.image.docker-manifest-digest`.
    pub manifest_digest: String,
    /// `optional` (empty when `null` or absent).
    pub optional: BTreeMap<String, serde_json::Value>,
}

impl SimpleSigning {
    /// Parses a payload and checks `critical.type`. Field names are matched without regard to
    /// case, as cosign (Go's `encoding/json`) does.
    pub fn parse(bytes: &[u8]) -> Result<Self, VerifyError> {
        let bad = |m: &str| VerifyError::MalformedPayload(m.to_owned());
        let v: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| VerifyError::MalformedPayload(format!("not JSON: {e}")))?;
        let critical = field(&v, "critical").ok_or_else(|| bad("no `critical` object"))?;
        let ty = field(critical, "type")
            .and_then(|t| t.as_str())
            .ok_or_else(|| bad("no `critical.type`"))?;
        if ty != COSIGN_SIGNATURE_TYPE {
            return Err(VerifyError::MalformedPayload(format!(
                "critical.type is {ty:?}, not {COSIGN_SIGNATURE_TYPE:?}"
            )));
        }
        let manifest_digest = field(critical, "image")
            .and_then(|i| field(i, "docker-manifest-digest"))
            .and_then(|d| d.as_str())
            .ok_or_else(|| bad("no `critical.image.docker-manifest-digest`"))?
            .to_owned();
        let docker_reference = field(critical, "identity")
            .and_then(|i| field(i, "docker-reference"))
            .and_then(|d| d.as_str())
            .unwrap_or_default()
            .to_owned();
        let optional = match field(&v, "optional") {
            None | Some(serde_json::Value::Null) => BTreeMap::new(),
            Some(serde_json::Value::Object(m)) => {
                m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            }
            Some(_) => return Err(bad("`optional` is neither null nor an object")),
        };
        Ok(SimpleSigning {
            docker_reference,
            manifest_digest,
            optional,
        })
    }

    /// Checks that the payload names `digest` and carries every required annotation.
    pub fn check(
        &self,
        digest: &Digest,
        required: &BTreeMap<String, String>,
    ) -> Result<(), VerifyError> {
        if self.manifest_digest != digest.to_string() {
            return Err(VerifyError::DigestMismatch {
                expected: digest.to_string(),
                found: self.manifest_digest.clone(),
            });
        }
        check_annotations(&self.optional, required)
    }
}

/// Checks required `key=value` annotations against a signed annotation map (string values
/// compare as strings, other JSON values by their JSON text).
pub(crate) fn check_annotations(
    signed: &BTreeMap<String, serde_json::Value>,
    required: &BTreeMap<String, String>,
) -> Result<(), VerifyError> {
    for (k, want) in required {
        let found = match signed.get(k) {
            None => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        if found.as_deref() != Some(want.as_str()) {
            return Err(VerifyError::AnnotationMismatch {
                key: k.clone(),
                expected: want.clone(),
                found: found.map_or_else(|| "none".to_owned(), |f| format!("{f:?}")),
            });
        }
    }
    Ok(())
}

/// An object member by name, exact match first, then ASCII case-insensitive.
fn field<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    let o = v.as_object()?;
    o.get(name).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_cosign() {
        let d = Digest::parse(
            "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00",
        )
        .unwrap();
        let p = build(
            "192.168.64.2:5000/cosign-signed-single-sample",
            &d,
            &BTreeMap::new(),
        );
        assert_eq!(
            String::from_utf8(p).unwrap(),
            r#"{"critical":{"identity":{"docker-reference":"192.168.64.2:5000/cosign-signed-single-sample"},"image":{"docker-manifest-digest":"sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00"},"type":"cosign container image signature"},"optional":null}"#
        );
        let mut a = BTreeMap::new();
        a.insert("z".to_owned(), "last".to_owned());
        a.insert("a<b".to_owned(), "x&y\n\"q\"".to_owned());
        let p = String::from_utf8(build("r/x", &d, &a)).unwrap();
        assert!(
            p.ends_with(r#""optional":{"a\u003cb":"x\u0026y\n\"q\"","z":"last"}}"#),
            "{p}"
        );
        let parsed = SimpleSigning::parse(p.as_bytes()).unwrap();
        assert_eq!(parsed.optional["a<b"], "x&y\n\"q\"");
    }

    #[test]
    fn checks() {
        let d = Digest::sha256(b"x");
        let other = Digest::sha256(b"y");
        let mut a = BTreeMap::new();
        a.insert("env".to_owned(), "prod".to_owned());
        let p = SimpleSigning::parse(&build("r/x", &d, &a)).unwrap();
        p.check(&d, &a).unwrap();
        assert!(matches!(
            p.check(&other, &a),
            Err(VerifyError::DigestMismatch { .. })
        ));
        let mut want = BTreeMap::new();
        want.insert("env".to_owned(), "dev".to_owned());
        assert!(matches!(
            p.check(&d, &want),
            Err(VerifyError::AnnotationMismatch { .. })
        ));
        assert!(SimpleSigning::parse(br#"{"critical":{"type":"other"}}"#).is_err());
        assert!(SimpleSigning::parse(b"[]").is_err());
    }
}
