//! Metadata: repositories, tags, manifests, blob links, referrers and upload sessions.
//!
//! This module is the interface: the [`MetaStore`] and [`gc::GcMeta`] traits and the types they
//! exchange. [`redb`] implements them in one embedded database, split by concern (manifests and
//! tags, retention reads and guarded deletes, uploads, records, garbage collection); a shared
//! database implements the same traits (docs/gc.md shows the collector's queries in SQL).

use async_trait::async_trait;
use bytes::Bytes;
use oci::{Descriptor, Digest, Reference};
use serde::{Deserialize, Serialize};

use crate::Result;

pub mod gc;
pub mod redb;

/// A manifest as the registry hands it to storage, already parsed and validated.
#[derive(Clone, Debug)]
pub struct ManifestRecord {
    /// Digest of `body`.
    pub digest: Digest,
    /// Effective media type.
    pub media_type: String,
    /// The exact bytes the client sent.
    pub body: Bytes,
    /// Blobs that must be linked in the repository (config and layers).
    pub blobs: Vec<Digest>,
    /// Manifests that must exist in the repository (index children).
    pub children: Vec<Digest>,
    /// The subject, when this manifest is a referrer.
    pub subject: Option<Digest>,
    /// The descriptor to list in the subject's referrers index.
    pub referrer: Option<Descriptor>,
    /// Tags (among those being set) that are immutable: they may be created, or set again to
    /// the same digest, but never moved to another one.
    pub frozen_tags: Vec<String>,
    /// Who pushed it, for the tag history.
    pub actor: String,
}

impl ManifestRecord {
    /// The record of manifest `m`, parsed from `body` (whose digest is `digest`), pushed by
    /// `actor`: the blobs and index children it needs, its subject and the descriptor to list
    /// among the subject's referrers. No tag is frozen; the caller sets `frozen_tags`.
    pub fn from_manifest(digest: Digest, body: Bytes, m: &oci::Manifest, actor: &str) -> Self {
        let referrer = m.subject.as_ref().map(|_| Descriptor {
            media_type: m.media_type.clone(),
            digest: digest.clone(),
            size: body.len() as i64,
            urls: None,
            annotations: m.annotations.clone(),
            artifact_type: m.effective_artifact_type().map(str::to_owned),
            platform: None,
        });
        ManifestRecord {
            digest,
            media_type: m.media_type.clone(),
            blobs: m.required_blobs().map(|d| d.digest.clone()).collect(),
            children: m.manifests.iter().map(|d| d.digest.clone()).collect(),
            subject: m.subject.as_ref().map(|s| s.digest.clone()),
            referrer,
            body,
            frozen_tags: Vec::new(),
            actor: actor.to_owned(),
        }
    }
}

/// One change of a tag: created (`previous` empty), moved, or deleted (`new` empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagEvent {
    /// Unix seconds.
    pub time: u64,
    /// Who changed it.
    pub actor: String,
    /// The digest it pointed at before.
    pub previous: Option<String>,
    /// The digest it points at after.
    pub new: Option<String>,
}

/// A tag with the digest it points at and when it was last set (from its history).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagEntry {
    /// The tag.
    pub tag: String,
    /// The manifest it points at.
    pub digest: Digest,
    /// Unix seconds of the change that set it, when the history holds it.
    pub set_at: Option<u64>,
}

/// A manifest's metadata, without its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestSummary {
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Length of its bytes.
    pub size: u64,
    /// Its subject, when it is a referrer.
    pub subject: Option<Digest>,
    /// The manifests it lists, when it is an index.
    pub children: Vec<Digest>,
    /// Unix seconds of its first push; `None` for manifests stored before push times were kept.
    pub pushed: Option<u64>,
}

/// A repository's tags and manifests, read in one transaction (retention plans from it).
#[derive(Clone, Debug, Default)]
pub struct RepoSnapshot {
    /// Every tag, in lexical order.
    pub tags: Vec<TagEntry>,
    /// Every manifest, by digest.
    pub manifests: Vec<ManifestSummary>,
}

/// What [`MetaStore::delete_manifest_if_unused`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuardedDelete {
    /// Deleted.
    Deleted,
    /// It was not there.
    Gone,
    /// Kept: these tags point at it.
    Tagged(Vec<String>),
    /// Kept: these indexes list it.
    Listed(Vec<Digest>),
}

/// A manifest as read back.
#[derive(Clone, Debug)]
pub struct StoredManifest {
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its exact bytes.
    pub body: Bytes,
    /// Its subject, if any.
    pub subject: Option<Digest>,
}

/// An upload session.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UploadRecord {
    /// The session id (also the blob store's upload id).
    pub id: String,
    /// Repository it uploads into.
    pub repo: String,
    /// Unix seconds when it started.
    pub started: u64,
    /// Who started it, when access control was enforced: only they may continue it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Pagination for listings: at most `n` entries after `last`.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// Maximum entries; `None` for all.
    pub n: Option<usize>,
    /// Resume strictly after this entry.
    pub last: Option<String>,
}

/// Metadata storage. Every method is one transaction: callers never see half an operation.
#[async_trait]
pub trait MetaStore: gc::GcMeta + Send + Sync + 'static {
    /// The write generation of `repo`: it changes after every committed write that touches the
    /// repository's manifests, tags, blob links or referrers (pushes, deletes, cached manifests,
    /// guarded deletes, collection and eviction alike), so a value derived from those (a
    /// signature verdict) can be cached under it and is stale once it differs. Cheap (no I/O);
    /// repositories may share a counter, which only costs extra recomputation.
    fn generation(&self, repo: &str) -> u64;
    /// Backups: writes a consistent copy of the whole metadata (one read snapshot; upload
    /// sessions left out) to a new file beside the store's own, in the backup format
    /// ([`crate::backup`]), and returns it; the file is deleted when the returned value is
    /// dropped. Writes made meanwhile are not in it and are not slowed. Every blob the copy
    /// names (its `blobs` table, which lists every linked blob) must then be copied by the
    /// caller while nothing deletes blob files (the service pauses garbage collection).
    /// A backend that cannot take backups refuses.
    async fn backup_snapshot(&self) -> Result<crate::backup::SnapshotFile> {
        Err(crate::StoreError::Db(
            "this metadata store cannot take backups".into(),
        ))
    }
    /// Size of `digest` if it is linked in `repo`.
    async fn blob_linked(&self, repo: &str, digest: &Digest) -> Result<Option<u64>>;
    /// Links an already stored blob into `repo` (cross-repository mount).
    async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<()>;
    /// Unlinks a blob from `repo`. Returns whether it was linked.
    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool>;
    /// Stores a manifest, checking its blobs and children in the same transaction, and
    /// points each of `tags` at it.
    async fn put_manifest(&self, repo: &str, m: ManifestRecord, tags: Vec<String>) -> Result<()>;
    /// Stores a manifest fetched from an upstream registry by the pull-through cache: as
    /// [`MetaStore::put_manifest`], except that its blobs and index children need not be present
    /// yet (they are fetched when a client asks for them).
    async fn put_cached_manifest(
        &self,
        repo: &str,
        m: ManifestRecord,
        tags: Vec<String>,
    ) -> Result<()>;
    /// Reads a manifest by tag or digest.
    async fn get_manifest(&self, repo: &str, r: &Reference) -> Result<Option<StoredManifest>>;
    /// Deletes a manifest and the tags that point at it (recorded in their history as `actor`).
    async fn delete_manifest(&self, repo: &str, digest: &Digest, actor: &str) -> Result<bool>;
    /// Deletes one tag, leaving the manifest.
    async fn delete_tag(&self, repo: &str, tag: &str, actor: &str) -> Result<bool>;
    /// Points `tag` at a manifest already in `repo` (rollback). `frozen` refuses moving a tag
    /// that exists and points elsewhere.
    async fn set_tag(
        &self,
        repo: &str,
        tag: &str,
        digest: &Digest,
        actor: &str,
        frozen: bool,
    ) -> Result<()>;
    /// The changes of a tag, newest first.
    async fn tag_history(&self, repo: &str, tag: &str, limit: usize) -> Result<Vec<TagEvent>>;
    /// Tags in lexical order, or `None` when the repository does not exist.
    async fn tags(&self, repo: &str, page: Page) -> Result<Option<Vec<String>>>;
    /// Repository names in lexical order.
    async fn repositories(&self, page: Page) -> Result<Vec<String>>;
    /// Tags of `repo` that point at `digest`.
    async fn tags_of(&self, repo: &str, digest: &Digest) -> Result<Vec<String>>;
    /// Digests of the indexes in `repo` that list `child`.
    async fn parents(&self, repo: &str, child: &Digest) -> Result<Vec<Digest>>;
    /// Descriptors of the manifests whose subject is `subject`.
    async fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Descriptor>>;
    /// Records a new upload session.
    async fn upload_create(&self, rec: UploadRecord) -> Result<()>;
    /// Reads an upload session.
    async fn upload_get(&self, id: &str) -> Result<Option<UploadRecord>>;
    /// Ends an upload session, linking its blob into the session's repository.
    async fn upload_complete(&self, id: &str, digest: &Digest, size: u64) -> Result<()>;
    /// Ends an upload session without a blob.
    async fn upload_delete(&self, id: &str) -> Result<bool>;
    /// Whether an image manifest stored in `repo` lists `digest` as its config or a layer (the
    /// pull-through cache links a blob stored for another repository only then). Visits every
    /// manifest of the repository: implementations run it off the async workers.
    async fn manifest_lists_blob(&self, repo: &str, digest: &Digest) -> Result<bool>;
    /// Tags (with digests and when each was last set) and manifests (without their bytes) of
    /// `repo`, in one read transaction.
    async fn snapshot(&self, repo: &str) -> Result<RepoSnapshot>;
    /// Records last-pull times `(repo, digest, unix seconds)` in one transaction, keeping the
    /// later of the stored and the given time and skipping manifests no longer stored.
    async fn note_pulls(&self, pulls: Vec<(String, Digest, u64)>) -> Result<()>;
    /// Last-pull times of the manifests of `repo` that were ever pulled (since tracking began).
    async fn last_pulls(&self, repo: &str) -> Result<Vec<(Digest, u64)>>;
    /// Deletes `tag` only if it still points at `digest` (recorded in its history as `actor`).
    /// Returns whether it did.
    async fn delete_tag_if(
        &self,
        repo: &str,
        tag: &str,
        digest: &Digest,
        actor: &str,
    ) -> Result<bool>;
    /// Deletes a manifest only if no tag points at it and no index lists it, checked in the
    /// same transaction: a manifest tagged or listed since it was planned away stays.
    async fn delete_manifest_if_unused(
        &self,
        repo: &str,
        digest: &Digest,
        actor: &str,
    ) -> Result<GuardedDelete>;
    /// Reads a record of namespace `ns` (users, robots, rules, audit events, ...): values are
    /// opaque bytes to storage, serialized by their owner.
    async fn record_get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>>;
    /// Writes (creates or replaces) a record.
    async fn record_put(&self, ns: &str, key: &str, value: Vec<u8>) -> Result<()>;
    /// Deletes a record. Returns whether it existed.
    async fn record_delete(&self, ns: &str, key: &str) -> Result<bool>;
    /// Lists records of a namespace in key order (or reverse), paginated.
    async fn record_list(
        &self,
        ns: &str,
        page: Page,
        newest_first: bool,
    ) -> Result<Vec<(String, Vec<u8>)>>;
}
