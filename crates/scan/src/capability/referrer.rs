//! An image's SBOM attached to it as an OCI 1.1 referrer: a CycloneDX JSON blob in an artifact
//! manifest whose `subject` is the image, stored straight into the registry's storage (so the
//! referrers API lists it, and `oras discover` / `cosign download sbom`-style tools find it).
//! The document is deterministic for an image (its timestamp is the image's creation time, its
//! serial number derived from the image digest), so scanning an image again stores nothing new.

use bytes::Bytes;
use oci::{Digest, Manifest};
use service::Service;
use store::ManifestRecord;

use crate::inventory::ImageInventory;
use crate::sbom::{ImageInfo, SbomOptions, cyclonedx};

/// The artifact type of the SBOM referrers Wharf attaches.
pub const SBOM_ARTIFACT_TYPE: &str = "application/vnd.cyclonedx+json";
/// OCI's empty descriptor content (`{}`), the config of artifact manifests.
const EMPTY_JSON: &[u8] = b"{}";

/// Stores `bytes` as a blob linked into `repo`, under the collector's per-digest lock so a
/// concurrent garbage collection cannot take it between commit and link.
async fn put_blob(svc: &Service, repo: &str, bytes: Bytes) -> Result<(Digest, u64), String> {
    let d = Digest::sha256(&bytes);
    let size = bytes.len() as u64;
    let _held = svc.collector().hold(&d).await;
    if svc
        .blobs()
        .size(&d)
        .await
        .map_err(|e| e.to_string())?
        .is_none()
    {
        let id = format!("scan-sbom-{}", uuid::Uuid::new_v4().simple());
        svc.blobs()
            .upload_create(&id)
            .await
            .map_err(|e| e.to_string())?;
        let stream = Box::pin(futures_util::stream::once(async move { Ok(bytes) }));
        let appended = svc
            .blobs()
            .upload_append(&id, None, Some(size), stream)
            .await;
        let committed = match appended {
            Ok(_) => svc.blobs().upload_commit(&id, &d).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = committed {
            let _ = svc.blobs().upload_delete(&id).await;
            return Err(e.to_string());
        }
    }
    svc.meta()
        .link_blob(repo, &d, size)
        .await
        .map_err(|e| e.to_string())?;
    Ok((d, size))
}

/// A UUID (version 4 layout) made from the image digest, so the same image always gets the
/// same SBOM serial number.
fn uuid_of(digest: &Digest) -> uuid::Uuid {
    let mut b = [0u8; 16];
    let raw = Digest::sha256(digest.to_string().as_bytes());
    if let Ok(v) = hex::decode(&raw.hex()[..32]) {
        b.copy_from_slice(&v);
    }
    uuid::Builder::from_random_bytes(b).into_uuid()
}

/// Attaches the SBOM of image `digest` of `repo` (whose manifest `m` is `manifest_body`) as a
/// referrer; returns the referrer manifest's digest.
pub(super) async fn attach(
    svc: &Service,
    repo: &str,
    digest: &Digest,
    media_type: &str,
    manifest_body: &[u8],
    m: &Manifest,
    inv: &ImageInventory,
) -> Result<Digest, String> {
    // The config's creation time, OS and architecture describe the image in the SBOM.
    let mut info = ImageInfo {
        name: format!("{repo}@{digest}"),
        manifest_digest: Some(digest.to_string()),
        repository: Some(repo.to_string()),
        created: None,
        os: None,
        architecture: None,
    };
    if let Some(c) = &m.config {
        let size = u64::try_from(c.size).unwrap_or(0);
        if size <= 1 << 20 {
            let mut body = Vec::new();
            let mut stream = svc
                .blobs()
                .get(&c.digest, 0, size)
                .await
                .map_err(|e| e.to_string())?;
            use futures_util::StreamExt as _;
            while let Some(chunk) = stream.next().await {
                body.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
            }
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
                info.created = s("created");
                info.os = s("os");
                info.architecture = s("architecture");
            }
        }
    }
    let options = SbomOptions {
        timestamp: Some(
            info.created
                .clone()
                .unwrap_or_else(|| "1970-01-01T00:00:00Z".into()),
        ),
        uuid: Some(uuid_of(digest)),
        tool: Some(("wharf".into(), env!("CARGO_PKG_VERSION").into())),
    };
    let doc = cyclonedx(&info, inv, &options);
    let sbom = Bytes::from(serde_json::to_vec(&doc).map_err(|e| e.to_string())?);
    let (empty, empty_size) = put_blob(svc, repo, Bytes::from_static(EMPTY_JSON)).await?;
    let (layer, layer_size) = put_blob(svc, repo, sbom).await?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::media_types::OCI_MANIFEST,
        "artifactType": SBOM_ARTIFACT_TYPE,
        "config": {
            "mediaType": oci::media_types::OCI_EMPTY,
            "digest": empty.to_string(),
            "size": empty_size,
            "data": "e30=",
        },
        "layers": [{
            "mediaType": SBOM_ARTIFACT_TYPE,
            "digest": layer.to_string(),
            "size": layer_size,
            "annotations": {"org.opencontainers.image.title": "sbom.cdx.json"},
        }],
        "subject": {
            "mediaType": media_type,
            "digest": digest.to_string(),
            "size": manifest_body.len(),
        },
        "annotations": {
            "org.opencontainers.image.created": options.timestamp,
            "dev.wharf.sbom.generator": format!("wharf {}", env!("CARGO_PKG_VERSION")),
        },
    });
    let body = Bytes::from(serde_json::to_vec(&manifest).map_err(|e| e.to_string())?);
    let parsed = Manifest::parse(Some(oci::media_types::OCI_MANIFEST), &body)
        .map_err(|e| format!("the SBOM manifest does not validate: {e}"))?;
    let d = Digest::sha256(&body);
    let record = ManifestRecord::from_manifest(d.clone(), body, &parsed, "wharf-scan");
    svc.meta()
        .put_manifest(repo, record, Vec::new())
        .await
        .map_err(|e| e.to_string())?;
    Ok(d)
}
