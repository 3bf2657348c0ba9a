//! The OCI manifests cosign stores signatures in, byte for byte as cosign writes them.
//!
//! - Tag form (cosign's default): an image at tag `sha256-<hex>.sig` in the signed image's
//!   repository, one layer per signature (the simple-signing payload, media type
//!   [`SIMPLE_SIGNING_MEDIA_TYPE`], annotation [`SIGNATURE_ANNOTATION`] = base64 signature), and a
//!   config blob listing the layers as `diff_ids`. New signatures are appended.
//! - OCI 1.1 referrer form (`cosign sign --registry-referrers-mode=oci-1-1`): the same with config
//!   media type [`SIG_ARTIFACT_TYPE`] and a `subject` pointing at the image, pushed by digest.
//! - cosign v3 bundles: a manifest with `artifactType` [`SIGSTORE_BUNDLE_MEDIA_TYPE`] whose
//!   layer is a Sigstore bundle (read by [`crate::bundle`]).
//!
//! Field order and spelling follow go-containerregistry's structs (`schemaVersion`, `mediaType`,
//! `config`, `layers`, `subject`; descriptors `mediaType`, `size`, `digest`, `annotations`), JSON
//! is compact, and annotation maps are sorted, so Wharf's manifests hash like cosign's.

use std::collections::BTreeMap;

use oci::{Descriptor, Digest};
use serde::{Deserialize, Serialize};

use crate::error::VerifyError;
use crate::payload::{SIMPLE_SIGNING_MEDIA_TYPE, go_escape_json};

/// Layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Layer annotation holding a Rekor bundle (SignedEntryTimestamp and entry) as JSON.
pub const REKOR_BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// Layer annotation holding a signing certificate (keyless).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// Layer annotation holding the certificate chain (keyless).
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// Config media type (and so artifact type) of a signature in the OCI 1.1 referrer form.
pub const SIG_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// Media type and artifact type of a Sigstore bundle v0.3 (cosign v3).
pub const SIGSTORE_BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// Config media type of a tag-form signature image.
pub const OCI_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// OCI image manifest media type.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The OCI empty descriptor's media type and content.
pub const OCI_EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// The tag cosign stores signatures of `digest` under: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("{}-{}.sig", digest.algorithm().as_str(), digest.hex())
}

/// The referrers tag schema's fallback tag for `digest`: `sha256-<hex>` (for registries without
/// the referrers API).
pub fn referrers_tag(digest: &Digest) -> String {
    format!("{}-{}", digest.algorithm().as_str(), digest.hex())
}

/// One signature to store: the signed payload, its base64 signature, and any other layer
/// annotations (certificate, Rekor bundle, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureLayer {
    /// The simple-signing payload bytes.
    pub payload: Vec<u8>,
    /// The base64 signature over `payload`.
    pub signature: String,
    /// Extra layer annotations.
    pub annotations: BTreeMap<String, String>,
}

/// A signature manifest ready to push: the blobs first (they may already exist), then the
/// manifest.
#[derive(Clone, Debug)]
pub struct SignatureImage {
    /// Manifest bytes.
    pub manifest: Vec<u8>,
    /// Its media type (OCI image manifest).
    pub media_type: &'static str,
    /// Blobs the manifest needs that may not be in the registry yet: the config blob and the new
    /// payload.
    pub blobs: Vec<Vec<u8>>,
    /// False when the signature was already in the existing manifest (nothing to push).
    pub changed: bool,
}

impl SignatureImage {
    /// The manifest's digest.
    pub fn digest(&self) -> Digest {
        Digest::sha256(&self.manifest)
    }

    /// A descriptor of the manifest (for a referrers index).
    pub fn descriptor(&self, artifact_type: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: self.media_type.to_owned(),
            digest: self.digest(),
            size: self.manifest.len() as i64,
            urls: None,
            annotations: None,
            artifact_type: artifact_type.map(str::to_owned),
            platform: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Desc {
    media_type: String,
    size: i64,
    digest: Digest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Image {
    schema_version: u32,
    media_type: String,
    config: Desc,
    layers: Vec<Desc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<Desc>,
}

fn to_go_json<T: Serialize>(v: &T) -> Vec<u8> {
    go_escape_json(serde_json::to_string(v).expect("serializing a manifest cannot fail"))
        .into_bytes()
}

/// The config blob of a cosign signature image with these layers: go-containerregistry's empty
/// image plus one history entry and one diff ID per layer.
pub fn config_blob(layers: &[Digest]) -> Vec<u8> {
    let mut s =
        String::from("{\"architecture\":\"\",\"created\":\"0001-01-01T00:00:00Z\",\"history\":[");
    for i in 0..layers.len() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("{\"created\":\"0001-01-01T00:00:00Z\"}");
    }
    s.push_str("],\"os\":\"\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[");
    for (i, d) in layers.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        s.push_str(&d.to_string());
        s.push('"');
    }
    s.push_str("]},\"config\":{}}");
    s.into_bytes()
}

fn layer_desc(layer: &SignatureLayer) -> Desc {
    let mut annotations = layer.annotations.clone();
    annotations.insert(SIGNATURE_ANNOTATION.to_owned(), layer.signature.clone());
    Desc {
        media_type: SIMPLE_SIGNING_MEDIA_TYPE.to_owned(),
        size: layer.payload.len() as i64,
        digest: Digest::sha256(&layer.payload),
        annotations: Some(annotations),
        artifact_type: None,
    }
}

fn build(config_media_type: &str, layers: Vec<Desc>, subject: Option<Desc>) -> (Vec<u8>, Vec<u8>) {
    let digests: Vec<Digest> = layers.iter().map(|l| l.digest.clone()).collect();
    let config = config_blob(&digests);
    let image = Image {
        schema_version: 2,
        media_type: OCI_MANIFEST_MEDIA_TYPE.to_owned(),
        config: Desc {
            media_type: config_media_type.to_owned(),
            size: config.len() as i64,
            digest: Digest::sha256(&config),
            annotations: None,
            artifact_type: None,
        },
        layers,
        subject,
    };
    (to_go_json(&image), config)
}

fn signed_desc(l: &SignedLayer) -> Desc {
    Desc {
        media_type: SIMPLE_SIGNING_MEDIA_TYPE.to_owned(),
        size: l.size,
        digest: l.digest.clone(),
        annotations: Some(l.annotations.clone()),
        artifact_type: None,
    }
}

/// The manifest and config blob of a tag-form signature image with these layers (in order),
/// exactly as cosign writes them.
pub fn tag_manifest(layers: &[SignedLayer]) -> (Vec<u8>, Vec<u8>) {
    build(
        OCI_CONFIG_MEDIA_TYPE,
        layers.iter().map(signed_desc).collect(),
        None,
    )
}

/// The manifest and config blob of an OCI 1.1 referrer-form signature with these layers and this
/// subject, exactly as cosign writes them.
pub fn referrer_manifest(subject: &Descriptor, layers: &[SignedLayer]) -> (Vec<u8>, Vec<u8>) {
    let subject = Desc {
        media_type: subject.media_type.clone(),
        size: subject.size,
        digest: subject.digest.clone(),
        annotations: None,
        artifact_type: None,
    };
    build(
        SIG_ARTIFACT_TYPE,
        layers.iter().map(signed_desc).collect(),
        Some(subject),
    )
}

/// The tag-form signature manifest (`sha256-<hex>.sig`) with `layer` appended to the existing
/// manifest's signatures (`existing` = the bytes at that tag, if any). A layer with the same
/// payload and signature as one already there is not added twice (`changed` is false).
pub fn tag_signature_image(
    existing: Option<&[u8]>,
    layer: &SignatureLayer,
) -> Result<SignatureImage, VerifyError> {
    let mut layers = match existing {
        Some(bytes) => {
            let image: Image = serde_json::from_slice(bytes).map_err(|e| {
                VerifyError::MalformedManifest(format!("existing signature manifest: {e}"))
            })?;
            image.layers
        }
        None => Vec::new(),
    };
    let new = layer_desc(layer);
    let duplicate = layers.iter().any(|l| {
        l.digest == new.digest
            && l.annotations
                .as_ref()
                .and_then(|a| a.get(SIGNATURE_ANNOTATION))
                == Some(&layer.signature)
    });
    let changed = !duplicate;
    if changed {
        layers.push(new);
    }
    let (manifest, config) = build(OCI_CONFIG_MEDIA_TYPE, layers, None);
    Ok(SignatureImage {
        manifest,
        media_type: OCI_MANIFEST_MEDIA_TYPE,
        blobs: vec![config, layer.payload.clone()],
        changed,
    })
}

/// The OCI 1.1 referrer-form signature manifest for `layer`, whose `subject` is the signed image.
pub fn referrer_signature_image(subject: &Descriptor, layer: &SignatureLayer) -> SignatureImage {
    let subject = Desc {
        media_type: subject.media_type.clone(),
        size: subject.size,
        digest: subject.digest.clone(),
        annotations: None,
        artifact_type: None,
    };
    let (manifest, config) = build(SIG_ARTIFACT_TYPE, vec![layer_desc(layer)], Some(subject));
    SignatureImage {
        manifest,
        media_type: OCI_MANIFEST_MEDIA_TYPE,
        blobs: vec![config, layer.payload.clone()],
        changed: true,
    }
}

/// The referrers tag schema's index (for registries without the referrers API) with `entry`
/// added to `existing` (the bytes at the `sha256-<hex>` tag, if any).
pub fn add_to_referrers_index(
    existing: Option<&[u8]>,
    entry: &Descriptor,
) -> Result<Vec<u8>, VerifyError> {
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Index {
        schema_version: u32,
        media_type: String,
        manifests: Vec<Descriptor>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        annotations: Option<BTreeMap<String, String>>,
    }
    let mut index = match existing {
        Some(b) => serde_json::from_slice::<Index>(b).map_err(|e| {
            VerifyError::MalformedManifest(format!("existing referrers index: {e}"))
        })?,
        None => Index {
            schema_version: 2,
            media_type: OCI_INDEX_MEDIA_TYPE.to_owned(),
            manifests: Vec::new(),
            annotations: None,
        },
    };
    if !index.manifests.iter().any(|m| m.digest == entry.digest) {
        index.manifests.push(entry.clone());
    }
    Ok(to_go_json(&index))
}

/// What a manifest found next to an image holds, as far as signatures go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureManifest {
    /// Simple-signing layers (tag form or referrer form); `subject` is set in the referrer form.
    SimpleSigning {
        /// The signature layers: payload digest and size, signature and other annotations.
        layers: Vec<SignedLayer>,
        /// The manifest's `subject`, if any.
        subject: Option<Digest>,
    },
    /// A Sigstore bundle (cosign v3).
    Bundle {
        /// The bundle blob.
        layer: Descriptor,
        /// The manifest's `subject`, if any.
        subject: Option<Digest>,
    },
    /// Something else (an SBOM, an attestation in another format, ...): not a signature.
    Other,
}

/// One simple-signing layer of a signature manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedLayer {
    /// Digest of the payload blob.
    pub digest: Digest,
    /// Its declared size.
    pub size: i64,
    /// The base64 signature (the [`SIGNATURE_ANNOTATION`]); `None` when absent.
    pub signature: Option<String>,
    /// All layer annotations.
    pub annotations: BTreeMap<String, String>,
}

impl SignatureManifest {
    /// Classifies a manifest found at a `.sig` tag or in the referrers of an image.
    pub fn parse(bytes: &[u8]) -> Result<Self, VerifyError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Loose {
            #[serde(default)]
            artifact_type: Option<String>,
            #[serde(default)]
            config: Option<Descriptor>,
            #[serde(default)]
            layers: Vec<Descriptor>,
            #[serde(default)]
            subject: Option<Descriptor>,
        }
        let m: Loose = serde_json::from_slice(bytes)
            .map_err(|e| VerifyError::MalformedManifest(format!("not an image manifest: {e}")))?;
        let subject = m.subject.map(|s| s.digest);
        let artifact_type = m
            .artifact_type
            .as_deref()
            .or(m.config.as_ref().map(|c| c.media_type.as_str()));
        let is_bundle = |t: &str| t.starts_with("application/vnd.dev.sigstore.bundle");
        if artifact_type.is_some_and(is_bundle) || m.layers.iter().any(|l| is_bundle(&l.media_type))
        {
            let layer = m
                .layers
                .into_iter()
                .find(|l| is_bundle(&l.media_type))
                .ok_or_else(|| {
                    VerifyError::MalformedManifest("bundle manifest without a bundle layer".into())
                })?;
            return Ok(SignatureManifest::Bundle { layer, subject });
        }
        let layers: Vec<SignedLayer> = m
            .layers
            .into_iter()
            .filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
            .map(|l| {
                let annotations = l.annotations.unwrap_or_default();
                SignedLayer {
                    signature: annotations.get(SIGNATURE_ANNOTATION).cloned(),
                    digest: l.digest,
                    size: l.size,
                    annotations,
                }
            })
            .collect();
        if layers.is_empty() {
            return Ok(SignatureManifest::Other);
        }
        Ok(SignatureManifest::SimpleSigning { layers, subject })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        let d = Digest::parse(
            "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00",
        )
        .unwrap();
        assert_eq!(
            signature_tag(&d),
            "sha256-634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00.sig"
        );
        assert_eq!(
            referrers_tag(&d),
            "sha256-634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00"
        );
    }

    #[test]
    fn appends_and_dedupes() {
        let l1 = SignatureLayer {
            payload: b"one".to_vec(),
            signature: "c2ln".into(),
            annotations: BTreeMap::new(),
        };
        let l2 = SignatureLayer {
            payload: b"two".to_vec(),
            signature: "c2lnMg==".into(),
            annotations: BTreeMap::new(),
        };
        let a = tag_signature_image(None, &l1).unwrap();
        assert!(a.changed);
        let b = tag_signature_image(Some(&a.manifest), &l2).unwrap();
        assert!(b.changed);
        let c = tag_signature_image(Some(&b.manifest), &l1).unwrap();
        assert!(!c.changed);
        assert_eq!(c.manifest, b.manifest);
        match SignatureManifest::parse(&b.manifest).unwrap() {
            SignatureManifest::SimpleSigning { layers, subject } => {
                assert_eq!(layers.len(), 2);
                assert_eq!(layers[1].signature.as_deref(), Some("c2lnMg=="));
                assert!(subject.is_none());
            }
            other => panic!("{other:?}"),
        }
        let v: serde_json::Value = serde_json::from_slice(&b.blobs[0]).unwrap();
        assert_eq!(v["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        assert_eq!(v["history"].as_array().unwrap().len(), 2);
    }
}
