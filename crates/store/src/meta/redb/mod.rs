//! [`RedbMetaStore`]: the metadata store in one embedded redb file.
//!
//! Split by concern: `tables` is the layout (tables, keys, the stored manifest format), `store`
//! the database and its single group-committing writer; `manifests`, `retention`, `uploads`,
//! `records` and `gc` each implement their part of [`MetaStore`] and
//! [`GcMeta`](crate::meta::gc::GcMeta) as functions over the store. This file only routes each
//! trait method to its concern.

use async_trait::async_trait;
use oci::{Descriptor, Digest, Reference};

use crate::Result;
use crate::meta::{
    GuardedDelete, ManifestRecord, MetaStore, Page, RepoSnapshot, StoredManifest, TagEvent,
    UploadRecord,
};

pub(crate) mod backup;
mod gc;
mod manifests;
mod records;
mod retention;
mod store;
mod tables;
mod uploads;

pub use store::RedbMetaStore;

#[async_trait]
impl MetaStore for RedbMetaStore {
    async fn backup_snapshot(&self) -> Result<crate::backup::SnapshotFile> {
        backup::snapshot(self).await
    }

    fn generation(&self, repo: &str) -> u64 {
        self.generations.get(repo)
    }

    async fn blob_linked(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        manifests::blob_linked(self, repo, digest).await
    }

    async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<()> {
        manifests::link_blob(self, repo, digest, size).await
    }

    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        manifests::unlink_blob(self, repo, digest).await
    }

    async fn put_manifest(&self, repo: &str, m: ManifestRecord, tags: Vec<String>) -> Result<()> {
        manifests::put_manifest(self, repo, m, tags).await
    }

    async fn put_cached_manifest(
        &self,
        repo: &str,
        m: ManifestRecord,
        tags: Vec<String>,
    ) -> Result<()> {
        manifests::put_cached_manifest(self, repo, m, tags).await
    }

    async fn get_manifest(&self, repo: &str, r: &Reference) -> Result<Option<StoredManifest>> {
        manifests::get_manifest(self, repo, r).await
    }

    async fn delete_manifest(&self, repo: &str, digest: &Digest, actor: &str) -> Result<bool> {
        manifests::delete_manifest(self, repo, digest, actor).await
    }

    async fn delete_tag(&self, repo: &str, tag: &str, actor: &str) -> Result<bool> {
        manifests::delete_tag(self, repo, tag, actor).await
    }

    async fn set_tag(
        &self,
        repo: &str,
        tag: &str,
        digest: &Digest,
        actor: &str,
        frozen: bool,
    ) -> Result<()> {
        manifests::set_tag(self, repo, tag, digest, actor, frozen).await
    }

    async fn tag_history(&self, repo: &str, tag: &str, limit: usize) -> Result<Vec<TagEvent>> {
        manifests::tag_history(self, repo, tag, limit).await
    }

    async fn tags(&self, repo: &str, page: Page) -> Result<Option<Vec<String>>> {
        manifests::tags(self, repo, page).await
    }

    async fn repositories(&self, page: Page) -> Result<Vec<String>> {
        manifests::repositories(self, page).await
    }

    async fn tags_of(&self, repo: &str, digest: &Digest) -> Result<Vec<String>> {
        manifests::tags_of(self, repo, digest).await
    }

    async fn parents(&self, repo: &str, child: &Digest) -> Result<Vec<Digest>> {
        manifests::parents(self, repo, child).await
    }

    async fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Descriptor>> {
        manifests::referrers(self, repo, subject).await
    }

    async fn upload_create(&self, rec: UploadRecord) -> Result<()> {
        uploads::upload_create(self, rec).await
    }

    async fn upload_get(&self, id: &str) -> Result<Option<UploadRecord>> {
        uploads::upload_get(self, id).await
    }

    async fn upload_complete(&self, id: &str, digest: &Digest, size: u64) -> Result<()> {
        uploads::upload_complete(self, id, digest, size).await
    }

    async fn upload_delete(&self, id: &str) -> Result<bool> {
        uploads::upload_delete(self, id).await
    }

    async fn manifest_lists_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        manifests::manifest_lists_blob(self, repo, digest).await
    }

    async fn snapshot(&self, repo: &str) -> Result<RepoSnapshot> {
        retention::snapshot(self, repo).await
    }

    async fn note_pulls(&self, pulls: Vec<(String, Digest, u64)>) -> Result<()> {
        retention::note_pulls(self, pulls).await
    }

    async fn last_pulls(&self, repo: &str) -> Result<Vec<(Digest, u64)>> {
        retention::last_pulls(self, repo).await
    }

    async fn delete_tag_if(
        &self,
        repo: &str,
        tag: &str,
        digest: &Digest,
        actor: &str,
    ) -> Result<bool> {
        retention::delete_tag_if(self, repo, tag, digest, actor).await
    }

    async fn delete_manifest_if_unused(
        &self,
        repo: &str,
        digest: &Digest,
        actor: &str,
    ) -> Result<GuardedDelete> {
        retention::delete_manifest_if_unused(self, repo, digest, actor).await
    }

    async fn record_get(&self, ns: &str, key_: &str) -> Result<Option<Vec<u8>>> {
        records::record_get(self, ns, key_).await
    }

    async fn record_put(&self, ns: &str, key_: &str, value: Vec<u8>) -> Result<()> {
        records::record_put(self, ns, key_, value).await
    }

    async fn record_delete(&self, ns: &str, key_: &str) -> Result<bool> {
        records::record_delete(self, ns, key_).await
    }

    async fn record_list(
        &self,
        ns: &str,
        page: Page,
        newest_first: bool,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        records::record_list(self, ns, page, newest_first).await
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::tables::now;
    use super::*;
    use crate::{GcMeta, StoreError};

    #[tokio::test]
    async fn a_panicking_operation_does_not_stop_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbMetaStore::open(&dir.path().join("meta.redb")).unwrap();
        let r: Result<()> = store
            .write(|_txn| -> Result<()> { panic!("injected failure") })
            .await;
        assert!(
            r.is_err(),
            "the caller of a panicking operation gets an error"
        );
        store.record_put("t", "k", b"v".to_vec()).await.unwrap();
        assert_eq!(
            store.record_get("t", "k").await.unwrap(),
            Some(b"v".to_vec())
        );
    }

    /// Every write to a repository's manifests, tags, links or referrers moves its generation,
    /// whichever path makes it; other writes leave it.
    #[tokio::test]
    async fn every_repository_write_bumps_its_generation() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbMetaStore::open(&dir.path().join("meta.redb")).unwrap();
        let (r, b) = ("a/b", Digest::sha256(b"blob"));
        let body = Bytes::from_static(b"{}");
        let rec = |body: &Bytes| ManifestRecord {
            digest: Digest::sha256(body),
            media_type: oci::media_types::OCI_MANIFEST.into(),
            body: body.clone(),
            blobs: vec![],
            children: vec![],
            subject: None,
            referrer: None,
            frozen_tags: vec![],
            actor: "test".into(),
        };
        let m = rec(&body).digest;
        async fn moved<F: std::future::Future>(s: &RedbMetaStore, repo: &str, f: F) -> bool {
            let before = s.generation(repo);
            f.await;
            s.generation(repo) != before
        }
        assert!(moved(&s, r, s.link_blob(r, &b, 4)).await);
        assert!(moved(&s, r, s.unlink_blob(r, &b)).await);
        assert!(moved(&s, r, s.put_manifest(r, rec(&body), vec!["t".into()])).await);
        assert!(
            moved(
                &s,
                r,
                s.put_cached_manifest(r, rec(&body), vec!["u".into()])
            )
            .await
        );
        assert!(moved(&s, r, s.set_tag(r, "v", &m, "test", false)).await);
        assert!(moved(&s, r, s.delete_tag(r, "v", "test")).await);
        assert!(moved(&s, r, s.delete_tag_if(r, "u", &m, "test")).await);
        assert!(moved(&s, r, s.delete_manifest_if_unused(r, &m, "test")).await);
        s.put_manifest(r, rec(&body), vec![]).await.unwrap();
        assert!(moved(&s, r, s.delete_manifest(r, &m, "test")).await);
        let up = UploadRecord {
            id: "u1".into(),
            repo: r.into(),
            started: 0,
            owner: None,
        };
        assert!(!moved(&s, r, s.upload_create(up)).await);
        assert!(moved(&s, r, s.upload_complete("u1", &b, 4)).await);
        assert!(!moved(&s, r, s.record_put("ns", "k", vec![1])).await);
        // Collection: an old unreferenced link swept away.
        let g = s.gc_begin().await.unwrap();
        let mark = s.gc_mark(now() + 10, 100).await.unwrap();
        assert!(!mark.doomed.is_empty());
        assert!(moved(&s, r, s.gc_sweep(g, now() + 10, mark.doomed)).await);
    }

    #[tokio::test]
    async fn refused_manifest_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbMetaStore::open(&dir.path().join("meta.redb")).unwrap();
        let body = Bytes::from_static(b"{}");
        let missing = Digest::sha256(b"missing blob");
        let rec = ManifestRecord {
            digest: Digest::sha256(&body),
            media_type: oci::media_types::OCI_MANIFEST.into(),
            body,
            blobs: vec![missing.clone()],
            children: vec![],
            subject: None,
            referrer: None,
            frozen_tags: vec![],
            actor: "test".into(),
        };
        let err = store
            .put_manifest("a/b", rec, vec!["t".into()])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::ManifestBlobUnknown(d) if d == missing));
        assert!(store.tags("a/b", Page::default()).await.unwrap().is_none());
        assert!(
            store
                .repositories(Page::default())
                .await
                .unwrap()
                .is_empty()
        );
    }
}
