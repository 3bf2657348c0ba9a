//! The `wharf-client` crate against real registries on loopback: the `wharf` binary and CNCF
//! Distribution 2.8 (`docker-registry`). Every operation of the client, the same test body for
//! both servers; the referrers API is expected on Wharf and expected to be missing (`None`) on
//! Distribution.

mod support;

use bytes::Bytes;
use client::{Client, ClientConfig, Digest, ErrorCode, ImageRef};
use serde_json::json;
use support::*;

const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

fn client() -> Client {
    Client::new(ClientConfig::default()).expect("client")
}

fn image(server: &Server, repo: &str) -> ImageRef {
    ImageRef::parse(&format!("{}/{repo}", server.host())).expect("reference")
}

/// Pushes a one-layer image with the client; returns (manifest bytes, digest).
async fn push_small_image(c: &Client, img: &ImageRef, tag: &str, seed: u64) -> (Vec<u8>, Digest) {
    let layer = pattern(seed, 5_000);
    let l = c.push_blob(img, Bytes::from(layer.clone())).await.unwrap();
    assert!(!l.already_present);
    assert_eq!(l.size, 5_000);
    let again = c.push_blob(img, Bytes::from(layer)).await.unwrap();
    assert!(
        again.already_present,
        "second push of the same blob is skipped"
    );
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [l.digest.to_string()]},
        "config": {"Labels": {"seed": seed.to_string()}}
    }))
    .unwrap();
    let cfg = c.push_blob(img, Bytes::from(config.clone())).await.unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": cfg.digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": l.digest.to_string(), "size": 5_000}]
    }))
    .unwrap();
    let pushed = c
        .push_manifest(
            &img.with_tag(tag).unwrap(),
            OCI_MANIFEST,
            Bytes::from(manifest.clone()),
        )
        .await
        .unwrap();
    assert_eq!(pushed.digest, Digest::sha256(&manifest));
    (manifest, pushed.digest)
}

async fn exercise_every_operation(kind: Kind) {
    if !have_tools("client_registry", kind.tools()) {
        return;
    }
    let server = Server::start_kind(kind);
    let c = client();
    let img = image(&server, "team/client-app");

    // Push, resolve (HEAD), fetch by tag and by digest.
    let (manifest, digest) = push_small_image(&c, &img, "v1", 1).await;
    let tagged = img.with_tag("v1").unwrap();
    let r = c.resolve(&tagged).await.unwrap();
    assert_eq!(r.digest, digest);
    assert_eq!(r.media_type, OCI_MANIFEST);
    assert_eq!(r.size, manifest.len() as u64);
    let m = c.get_manifest(&tagged).await.unwrap();
    assert_eq!(&m.bytes[..], &manifest[..]);
    assert_eq!(m.digest, digest);
    assert_eq!(m.media_type, OCI_MANIFEST);
    let by_digest = img.with_digest(digest.clone());
    assert_eq!(c.resolve(&by_digest).await.unwrap(), r);
    assert_eq!(
        &c.get_manifest(&by_digest).await.unwrap().bytes[..],
        &manifest[..]
    );

    // Blobs: bounded, streamed, from a file.
    let layer_digest = Digest::sha256(&pattern(1, 5_000));
    let blob = c.get_blob(&img, &layer_digest, 1 << 20).await.unwrap();
    assert_eq!(&blob[..], &pattern(1, 5_000)[..]);
    let err = c.get_blob(&img, &layer_digest, 100).await.unwrap_err();
    assert!(matches!(err, client::Error::TooLarge { .. }), "{err}");
    let mut sink = Vec::new();
    let n = c.get_blob_to(&img, &layer_digest, &mut sink).await.unwrap();
    assert_eq!(n, 5_000);
    assert_eq!(sink, pattern(1, 5_000));
    assert_eq!(c.blob_size(&img, &layer_digest).await.unwrap(), Some(5_000));
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    std::fs::write(&big, pattern(7, 3 << 20)).unwrap();
    let pushed = c.push_blob_file(&img, &big).await.unwrap();
    assert_eq!(pushed.digest, Digest::sha256(&pattern(7, 3 << 20)));
    assert!(!pushed.already_present);
    assert!(c.push_blob_file(&img, &big).await.unwrap().already_present);
    assert_eq!(
        c.blob_size(&img, &pushed.digest).await.unwrap(),
        Some(3 << 20)
    );

    // Errors carry the registry's codes.
    let err = c
        .get_manifest(&img.with_tag("nope").unwrap())
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(err.code(), Some(&ErrorCode::ManifestUnknown), "{err}");
    let err = c.resolve(&img.with_tag("nope").unwrap()).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::ManifestUnknown), "{err}");
    let unknown = Digest::sha256(b"never pushed");
    let err = c.get_blob(&img, &unknown, 1 << 20).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::BlobUnknown), "{err}");
    assert_eq!(c.blob_size(&img, &unknown).await.unwrap(), None);

    // Tags, with and without pagination.
    for t in ["v2", "v3", "v4", "v5"] {
        c.push_manifest(
            &img.with_tag(t).unwrap(),
            OCI_MANIFEST,
            Bytes::from(manifest.clone()),
        )
        .await
        .unwrap();
    }
    let want = ["v1", "v2", "v3", "v4", "v5"];
    let mut tags = c.list_tags(&img).await.unwrap();
    tags.sort();
    assert_eq!(tags, want);
    let mut paged = c.list_tags_paged(&img, Some(2)).await.unwrap();
    paged.sort();
    assert_eq!(paged, want, "Link pagination");

    // An artifact with a subject: the referrers API on Wharf, none on Distribution.
    let empty = c.push_blob(&img, Bytes::from_static(b"{}")).await.unwrap();
    let artifact = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": OCI_EMPTY, "digest": empty.digest.to_string(), "size": 2},
        "layers": [{"mediaType": OCI_EMPTY, "digest": empty.digest.to_string(), "size": 2}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": digest.to_string(), "size": manifest.len()}
    }))
    .unwrap();
    let art_digest = Digest::sha256(&artifact);
    let pushed = c
        .push_manifest(
            &img.with_digest(art_digest.clone()),
            OCI_MANIFEST,
            Bytes::from(artifact),
        )
        .await
        .unwrap();
    assert_eq!(pushed.digest, art_digest);
    let refs = c.referrers(&img, &digest, None).await.unwrap();
    let filtered = c
        .referrers(&img, &digest, Some("application/vnd.example.sbom"))
        .await
        .unwrap();
    let other = c
        .referrers(&img, &digest, Some("application/vnd.example.other"))
        .await
        .unwrap();
    match kind {
        Kind::Wharf => {
            assert!(pushed.subject_processed, "Wharf answers OCI-Subject");
            let refs = refs.expect("Wharf has the referrers API");
            assert_eq!(refs.len(), 1, "{refs:?}");
            assert_eq!(refs[0].digest, art_digest);
            assert_eq!(
                refs[0].artifact_type.as_deref(),
                Some("application/vnd.example.sbom")
            );
            assert_eq!(filtered.unwrap().len(), 1);
            assert!(other.unwrap().is_empty());
            // A digest nobody refers to: an empty list, not "unsupported".
            assert_eq!(
                c.referrers(&img, &unknown, None).await.unwrap(),
                Some(vec![])
            );
        }
        Kind::Distribution => {
            assert!(!pushed.subject_processed);
            assert_eq!(refs, None, "Distribution 2.8 has no referrers API");
            assert_eq!(filtered, None);
        }
    }

    // Delete by digest.
    c.delete_manifest(&img.with_digest(art_digest.clone()))
        .await
        .unwrap();
    let err = c
        .get_manifest(&img.with_digest(art_digest))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn client_every_operation_against_wharf() {
    exercise_every_operation(Kind::Wharf).await;
}

#[tokio::test]
async fn client_every_operation_against_distribution() {
    exercise_every_operation(Kind::Distribution).await;
}

/// Copies a real multi-platform image (an OCI index over two manifests, built with umoci) into
/// the registry with the client alone, then resolves and walks it back.
async fn copy_index(kind: Kind) {
    let mut tools = vec!["umoci"];
    tools.extend(kind.tools());
    if !have_tools("client_copy_index", &tools) {
        return;
    }
    let layout = test_images();
    let index = layout.image(TAG_INDEX);
    let server = Server::start_kind(kind);
    let c = client();
    let img = image(&server, "mirror/busybox");
    let index_json = layout.manifest_json(&index.digest);
    for child in index_json["manifests"].as_array().unwrap() {
        let child_digest = child["digest"].as_str().unwrap();
        let m = layout.manifest_json(child_digest);
        let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_string()];
        for l in m["layers"].as_array().unwrap() {
            blobs.push(l["digest"].as_str().unwrap().to_string());
        }
        for b in blobs {
            let p = c.push_blob_file(&img, &layout.blob_path(&b)).await.unwrap();
            assert_eq!(p.digest.to_string(), b);
        }
        let d: Digest = child_digest.parse().unwrap();
        c.push_manifest(
            &img.with_digest(d),
            child["mediaType"].as_str().unwrap(),
            Bytes::from(layout.blob(child_digest)),
        )
        .await
        .unwrap();
    }
    let tagged = img.with_tag("multi").unwrap();
    c.push_manifest(&tagged, OCI_INDEX, Bytes::from(layout.blob(&index.digest)))
        .await
        .unwrap();

    let r = c.resolve(&tagged).await.unwrap();
    assert_eq!(r.digest.to_string(), index.digest);
    assert_eq!(r.media_type, OCI_INDEX);
    assert_eq!(r.size, index.size);
    let fetched = c.get_manifest(&tagged).await.unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&fetched.bytes).unwrap();
    for child in parsed["manifests"].as_array().unwrap() {
        let d: Digest = child["digest"].as_str().unwrap().parse().unwrap();
        let m = c.get_manifest(&img.with_digest(d.clone())).await.unwrap();
        assert_eq!(m.digest, d);
        let mj: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap();
        for l in mj["layers"].as_array().unwrap() {
            let ld: Digest = l["digest"].as_str().unwrap().parse().unwrap();
            let bytes = c.get_blob(&img, &ld, 64 << 20).await.unwrap();
            assert_eq!(bytes.len() as u64, l["size"].as_u64().unwrap());
        }
    }
}

#[tokio::test]
async fn client_copies_a_multi_platform_image_into_wharf() {
    copy_index(Kind::Wharf).await;
}

#[tokio::test]
async fn client_copies_a_multi_platform_image_into_distribution() {
    copy_index(Kind::Distribution).await;
}
