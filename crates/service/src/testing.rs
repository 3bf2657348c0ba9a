//! Helpers of this crate's unit tests.

use bytes::Bytes;
use oci::Digest;
use store::{ManifestRecord, MetaStore};

/// Stores a config-only image manifest in `repo` tagged `tags` (its config a 1-byte blob
/// `seed` names, linked); returns its digest.
pub(crate) async fn put_image(meta: &dyn MetaStore, repo: &str, seed: u8, tags: &[&str]) -> Digest {
    let config = Digest::sha256(&[seed]);
    meta.link_blob(repo, &config, 1).await.unwrap();
    let body = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":1}},"layers":[]}}"#,
        oci::media_types::OCI_MANIFEST
    ));
    let digest = Digest::sha256(&body);
    let rec = ManifestRecord {
        digest: digest.clone(),
        media_type: oci::media_types::OCI_MANIFEST.into(),
        body,
        blobs: vec![config],
        children: vec![],
        subject: None,
        referrer: None,
        frozen_tags: vec![],
        actor: "test".into(),
    };
    meta.put_manifest(repo, rec, tags.iter().map(|t| (*t).to_owned()).collect())
        .await
        .unwrap();
    digest
}
