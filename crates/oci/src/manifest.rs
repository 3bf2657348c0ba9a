//! Manifest parsing and validation for OCI image manifests and indexes and Docker schema 2
//! manifests and manifest lists.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// Media types Wharf knows by name.
pub mod media_types {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// Docker image manifest, schema 2.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// The OCI empty descriptor's media type (`{}`).
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
}

/// Largest manifest body accepted, as the distribution spec recommends.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Whether a manifest points at blobs or at other manifests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestKind {
    /// Image manifest: config and layers are blobs.
    Image,
    /// Index or manifest list: children are manifests.
    Index,
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("manifest is not valid JSON of its media type: {0}")]
    Json(#[from] serde_json::Error),
    /// `schemaVersion` missing or not 2.
    #[error("schemaVersion must be 2")]
    SchemaVersion,
    /// Content-Type and the body's `mediaType` disagree.
    #[error("Content-Type {header:?} does not match the manifest's mediaType {body:?}")]
    MediaTypeMismatch {
        /// The request header.
        header: String,
        /// The body field.
        body: String,
    },
    /// A media type Wharf does not accept as a manifest.
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    /// A required field is missing for this media type.
    #[error("manifest of type {media_type} lacks required field {field}")]
    MissingField {
        /// The manifest's media type.
        media_type: String,
        /// The missing field.
        field: &'static str,
    },
    /// A descriptor is malformed.
    #[error("invalid descriptor: {0}")]
    Descriptor(&'static str),
}

/// A content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes.
    pub size: i64,
    /// Alternative locations (foreign layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Artifact type, for descriptors in referrers indexes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Platform, for index children.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// A parsed, validated manifest: what the registry needs to know about it.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The effective media type (body field, else Content-Type).
    pub media_type: String,
    /// Image or index.
    pub kind: ManifestKind,
    /// Config blob (image manifests).
    pub config: Option<Descriptor>,
    /// Layer blobs (image manifests).
    pub layers: Vec<Descriptor>,
    /// Child manifests (indexes).
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to (OCI 1.1 referrers).
    pub subject: Option<Descriptor>,
    /// Declared artifact type.
    pub artifact_type: Option<String>,
    /// Top-level annotations.
    pub annotations: Option<BTreeMap<String, String>>,
}

fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

fn check_descriptor(d: &Descriptor) -> Result<(), ManifestError> {
    if d.size < 0 {
        return Err(ManifestError::Descriptor("size must not be negative"));
    }
    if d.media_type.is_empty() || !d.media_type.contains('/') {
        return Err(ManifestError::Descriptor("mediaType must be type/subtype"));
    }
    Ok(())
}

impl Manifest {
    /// Parses `body`, sent with the `Content-Type` header `content_type` (if any).
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Self, ManifestError> {
        let raw: Raw = serde_json::from_slice(body)?;
        if raw.schema_version != Some(2) {
            return Err(ManifestError::SchemaVersion);
        }
        let header = content_type.map(essence).filter(|h| !h.is_empty());
        let media_type = match (&raw.media_type, header) {
            (Some(b), Some(h)) if b != h => {
                return Err(ManifestError::MediaTypeMismatch {
                    header: h.to_owned(),
                    body: b.clone(),
                });
            }
            (Some(b), _) => b.clone(),
            (None, Some(h)) => h.to_owned(),
            (None, None) if raw.manifests.is_some() => media_types::OCI_INDEX.to_owned(),
            (None, None) => media_types::OCI_MANIFEST.to_owned(),
        };
        let kind = match media_type.as_str() {
            media_types::OCI_MANIFEST | media_types::DOCKER_MANIFEST => ManifestKind::Image,
            media_types::OCI_INDEX | media_types::DOCKER_LIST => ManifestKind::Index,
            _ => return Err(ManifestError::UnsupportedMediaType(media_type)),
        };
        let missing = |field| ManifestError::MissingField {
            media_type: media_type.clone(),
            field,
        };
        let m = match kind {
            ManifestKind::Image => {
                let config = raw.config.ok_or_else(|| missing("config"))?;
                let layers = match (raw.layers, media_type.as_str()) {
                    (Some(l), _) => l,
                    (None, media_types::OCI_MANIFEST) if raw.artifact_type.is_some() => Vec::new(),
                    (None, _) => return Err(missing("layers")),
                };
                Manifest {
                    media_type,
                    kind,
                    config: Some(config),
                    layers,
                    manifests: Vec::new(),
                    subject: raw.subject,
                    artifact_type: raw.artifact_type,
                    annotations: raw.annotations,
                }
            }
            ManifestKind::Index => Manifest {
                manifests: raw.manifests.ok_or_else(|| missing("manifests"))?,
                media_type,
                kind,
                config: None,
                layers: Vec::new(),
                subject: raw.subject,
                artifact_type: raw.artifact_type,
                annotations: raw.annotations,
            },
        };
        m.config
            .iter()
            .chain(&m.layers)
            .chain(&m.manifests)
            .chain(&m.subject)
            .try_for_each(check_descriptor)?;
        Ok(m)
    }

    /// Blobs the registry must hold before accepting this manifest: config and layers,
    /// except foreign layers that carry their own `urls`.
    pub fn required_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(
            self.layers
                .iter()
                .filter(|d| d.urls.as_ref().is_none_or(|u| u.is_empty())),
        )
    }

    /// The artifact type reported in a referrers index: `artifactType`, else the config's media type.
    pub fn effective_artifact_type(&self) -> Option<&str> {
        self.artifact_type
            .as_deref()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn image_manifest() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":10}}],"subject":{{"mediaType":"{}","digest":"{}","size":5}}}}"#,
            media_types::OCI_MANIFEST,
            d(1),
            d(2),
            media_types::OCI_MANIFEST,
            d(3)
        );
        let m = Manifest::parse(Some(media_types::OCI_MANIFEST), body.as_bytes()).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(m.required_blobs().count(), 2);
        assert_eq!(m.subject.as_ref().unwrap().digest.to_string(), d(3));
        assert_eq!(
            m.effective_artifact_type(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn mismatch_and_errors() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#,
            media_types::OCI_INDEX
        );
        assert!(matches!(
            Manifest::parse(Some(media_types::OCI_MANIFEST), body.as_bytes()),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        let m = Manifest::parse(
            Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(m.kind, ManifestKind::Index);
        assert!(Manifest::parse(None, b"{").is_err());
        assert!(Manifest::parse(None, b"[]").is_err());
        assert!(matches!(
            Manifest::parse(None, br#"{"schemaVersion":1}"#),
            Err(ManifestError::SchemaVersion)
        ));
        assert!(matches!(
            Manifest::parse(Some(media_types::OCI_MANIFEST), br#"{"schemaVersion":2}"#),
            Err(ManifestError::MissingField { .. })
        ));
        assert!(matches!(
            Manifest::parse(Some("text/plain"), br#"{"schemaVersion":2}"#),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
        let bad_digest = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"a/b","digest":"sha256:xyz","size":1}]}"#;
        assert!(Manifest::parse(None, bad_digest.as_bytes()).is_err());
        let neg = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"a/b","digest":"{}","size":-1}}]}}"#,
            d(1)
        );
        assert!(matches!(
            Manifest::parse(None, neg.as_bytes()),
            Err(ManifestError::Descriptor(_))
        ));
    }

    #[test]
    fn foreign_layers_not_required() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"a/b","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{}","size":10,"urls":["https://example.com/x"]}}]}}"#,
            media_types::DOCKER_MANIFEST,
            d(1),
            d(2)
        );
        let m = Manifest::parse(Some(media_types::DOCKER_MANIFEST), body.as_bytes()).unwrap();
        assert_eq!(m.required_blobs().count(), 1);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), ct in proptest::option::of(".{0,40}")) {
            let _ = Manifest::parse(ct.as_deref(), &bytes);
        }

        #[test]
        fn json_shapes_never_panic(s in r#"\{"schemaVersion":2(,"(mediaType|config|layers|manifests|subject)":(null|1|"x"|\[\]|\{\}))*\}"#) {
            let _ = Manifest::parse(None, s.as_bytes());
        }
    }
}
