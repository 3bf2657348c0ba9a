//! Metadata: repositories, tags, manifests, blob links, referrers and upload sessions.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use oci::{Descriptor, Digest, Reference};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::{Result, StoreError};

// Garbage collection primitives: a child module, so it can use the tables below.
#[path = "gc.rs"]
pub mod gc;

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

const REPOS: TableDefinition<&str, u64> = TableDefinition::new("repos");
const BLOBS: TableDefinition<&str, u64> = TableDefinition::new("blobs");
const LINKS: TableDefinition<&str, u64> = TableDefinition::new("blob_links");
const MANIFESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("manifests");
const TAGS: TableDefinition<&str, &str> = TableDefinition::new("tags");
const REFERRERS: TableDefinition<&str, &[u8]> = TableDefinition::new("referrers");
const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// Tag changes: key repo, tag, time-ordered sequence.
const TAG_HISTORY: TableDefinition<&str, &[u8]> = TableDefinition::new("tag_history");
/// Index -> child links, keyed child first: "which indexes in this repository list this manifest".
const PARENTS: TableDefinition<&str, u64> = TableDefinition::new("manifest_parents");
/// Last pull of a manifest (unix seconds), key repo, digest; written in batches by the registry.
const PULLS: TableDefinition<&str, u64> = TableDefinition::new("manifest_pulls");

/// Keys join parts with NUL, which no name, tag or digest may contain, so prefixes never collide.
fn key(parts: &[&str]) -> String {
    parts.join("\0")
}

/// The half-open key range holding every key that starts with `prefix` and a NUL.
fn prefix_range(prefix: &str, after: Option<&str>) -> (Bound<String>, Bound<String>) {
    let lo = match after {
        Some(a) => Bound::Excluded(format!("{prefix}\0{a}")),
        None => Bound::Included(format!("{prefix}\0")),
    };
    (lo, Bound::Excluded(format!("{prefix}\u{1}")))
}

#[derive(Serialize, Deserialize)]
struct ManifestMeta {
    media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<Digest>,
    /// Index children, so their parent links can be removed with the index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    children: Vec<Digest>,
    /// When it was first pushed (unix seconds); absent in records written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pushed: Option<u64>,
}

/// Stored value of a manifest: a length-prefixed JSON header, then the body bytes verbatim.
fn encode_manifest(meta: &ManifestMeta, body: &[u8]) -> Vec<u8> {
    let head = serde_json::to_vec(meta).expect("manifest meta serializes");
    let mut v = Vec::with_capacity(4 + head.len() + body.len());
    v.extend_from_slice(&(head.len() as u32).to_le_bytes());
    v.extend_from_slice(&head);
    v.extend_from_slice(body);
    v
}

fn decode_meta(v: &[u8]) -> Result<ManifestMeta> {
    let corrupt = || StoreError::Db("corrupt manifest record".into());
    let len = u32::from_le_bytes(v.get(..4).ok_or_else(corrupt)?.try_into().expect("4 bytes"));
    let head = v.get(4..4 + len as usize).ok_or_else(corrupt)?;
    serde_json::from_slice(head).map_err(|_| corrupt())
}

fn decode_manifest(digest: Digest, v: &[u8]) -> Result<StoredManifest> {
    let meta = decode_meta(v)?;
    // decode_meta checked that the length prefix and header are in bounds.
    let len = u32::from_le_bytes(v[..4].try_into().expect("4 bytes")) as usize;
    Ok(StoredManifest {
        digest,
        media_type: meta.media_type,
        body: Bytes::copy_from_slice(&v[4 + len..]),
        subject: meta.subject,
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

type Reply = Box<dyn FnOnce(Result<()>) + Send>;
/// One queued operation: runs in the batch's transaction, records the repositories it wrote in
/// `touched`, and says whether it poisoned the batch.
type Job = Box<dyn FnOnce(&WriteTransaction, &mut Vec<String>) -> (bool, Reply) + Send>;

/// Page cache of the metadata database.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Bound on queued write operations; callers wait when it is full.
const WRITE_QUEUE: usize = 1024;
/// Most operations folded into one commit.
const MAX_BATCH: usize = 256;

/// A [`MetaStore`] in one embedded redb file.
///
/// Writes go through a single writer thread that folds concurrent operations into one
/// transaction and one fsync (group commit); each caller is answered only after the commit that
/// holds its operation is durable. Operations do all their checks before their first write, so
/// a refused operation leaves nothing in the shared transaction.
pub struct RedbMetaStore {
    db: Arc<Database>,
    /// Per-repository write generations, bumped by the writer thread after each commit.
    generations: Arc<crate::Generations>,
    writer: Option<tokio::sync::mpsc::Sender<Job>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for RedbMetaStore {
    /// Stops the writer after its queued operations and waits, so the database file is closed
    /// (and can be reopened) when the store is gone.
    fn drop(&mut self) {
        self.writer.take();
        if let Some(t) = self.writer_thread.take() {
            let _ = t.join();
        }
    }
}

impl RedbMetaStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        // redb's page cache would otherwise grow toward its 1 GiB default as metadata is
        // written: bound it so memory stays flat (hot manifests still fit many times over).
        // Password hashes and the audit log live here: owner only, whatever the umask (redb
        // would create the file with the process's default mode; an empty file it initializes).
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)?;
            crate::restrict(path);
        }
        let db = Arc::new(
            Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(path)?,
        );
        {
            let txn = db.begin_write()?;
            txn.open_table(REPOS)?;
            txn.open_table(BLOBS)?;
            txn.open_table(LINKS)?;
            txn.open_table(MANIFESTS)?;
            txn.open_table(TAGS)?;
            txn.open_table(REFERRERS)?;
            txn.open_table(UPLOADS)?;
            txn.open_table(RECORDS)?;
            txn.open_table(PARENTS)?;
            txn.open_table(TAG_HISTORY)?;
            txn.open_table(PULLS)?;
            gc::create_tables(&txn)?;
            txn.commit()?;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(WRITE_QUEUE);
        let wdb = db.clone();
        let generations = Arc::new(crate::Generations::new());
        let wgen = generations.clone();
        let thread = std::thread::Builder::new()
            .name("wharf-meta-writer".into())
            .spawn(move || writer_loop(wdb, wgen, rx))?;
        Ok(RedbMetaStore {
            db,
            generations,
            writer: Some(tx),
            writer_thread: Some(thread),
        })
    }

    /// Runs `op` in the next group commit and returns its result once that commit is durable.
    /// For operations that touch no repository's manifests, tags, links or referrers (uploads,
    /// records, pull times, collector bookkeeping); the others use [`RedbMetaStore::write_repo`]
    /// or [`RedbMetaStore::write_touching`].
    async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T> + Send + 'static,
    {
        self.write_touching(move |txn, _| op(txn)).await
    }

    /// [`RedbMetaStore::write`] for an operation on `repo`: its generation is bumped after the
    /// commit.
    async fn write_repo<T, F>(&self, repo: &str, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T> + Send + 'static,
    {
        let repo = repo.to_owned();
        self.write_touching(move |txn, touched| {
            touched.push(repo);
            op(txn)
        })
        .await
    }

    /// [`RedbMetaStore::write`] for an operation that finds out inside the transaction which
    /// repositories it writes: it pushes them to its second argument, and their generations are
    /// bumped after the commit, in the writer thread, before any caller is answered (so a caller
    /// that goes away cannot skip the bump).
    async fn write_touching<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction, &mut Vec<String>) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |txn, touched| {
            let r = op(txn, touched);
            // A database error may have left partial writes: the whole batch must not commit.
            let poisoned = matches!(r, Err(StoreError::Db(_) | StoreError::Io(_)));
            let reply: Reply = Box::new(move |commit| {
                let _ = tx.send(commit.and(r));
            });
            (poisoned, reply)
        });
        self.writer
            .as_ref()
            .ok_or_else(|| StoreError::Db("metadata writer stopped".into()))?
            .send(job)
            .await
            .map_err(|_| StoreError::Db("metadata writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Db("metadata writer stopped".into()))?
    }

    fn read<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<T>) -> Result<T> {
        let txn = self.db.begin_read()?;
        f(&txn)
    }

    /// Runs a read that may visit many records (a repository's snapshot, a key listing, an
    /// audit query, a tag's history) on the blocking pool, so a large scan never stalls the
    /// async workers serving small requests. Point reads stay on [`Self::read`]: they take
    /// microseconds, less than the trip to another thread.
    async fn scan<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read()?;
            f(&txn)
        })
        .await
        .map_err(|e| StoreError::Db(format!("read task failed: {e}")))?
    }
}

fn writer_loop(
    db: Arc<Database>,
    generations: Arc<crate::Generations>,
    mut rx: tokio::sync::mpsc::Receiver<Job>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let txn = match db.begin_write() {
            Ok(t) => t,
            Err(e) => {
                // Without a transaction the operations cannot run: dropping them answers each
                // caller with an error.
                tracing::error!(error = %e, batch = jobs.len(), "metadata write transaction failed to start");
                continue;
            }
        };
        let mut poisoned = false;
        let mut touched = Vec::new();
        let replies: Vec<Reply> = jobs
            .into_iter()
            .filter_map(|j| {
                // A panicking operation must not take the writer thread (and every later write)
                // down with it: its caller gets an error (the reply is dropped) and the batch,
                // which may hold its partial writes, is aborted.
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    j(&txn, &mut touched)
                })) {
                    Ok((p, r)) => {
                        poisoned |= p;
                        Some(r)
                    }
                    Err(_) => {
                        tracing::error!("a metadata operation panicked; aborting its batch");
                        poisoned = true;
                        None
                    }
                }
            })
            .collect();
        let outcome: Result<()> = if poisoned {
            let _ = txn.abort();
            Err(StoreError::Db(
                "transaction aborted after a storage error".into(),
            ))
        } else {
            txn.commit().map_err(StoreError::from)
        };
        if let Err(e) = &outcome {
            tracing::error!(error = %e, batch = replies.len(), "metadata commit failed");
        }
        // After the commit and before any reply: a reader that saw the old generation may have
        // read the old data; one that sees the new generation reads the committed data. (Bumped
        // on failure too: extra invalidation is harmless.)
        for repo in &touched {
            generations.bump(repo);
        }
        for r in replies {
            r(match &outcome {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Db(e.to_string())),
            });
        }
    }
}

static TAG_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Records a tag change in the same transaction as the change itself.
fn record_tag_change(
    txn: &WriteTransaction,
    repo: &str,
    tag: &str,
    actor: &str,
    previous: Option<String>,
    new: Option<String>,
) -> Result<()> {
    if previous == new {
        return Ok(());
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seq = TAG_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1_000_000;
    let k = key(&[repo, tag, &format!("{nanos:024}{seq:06}")]);
    let e = TagEvent {
        time: now(),
        actor: actor.to_owned(),
        previous,
        new,
    };
    let v = serde_json::to_vec(&e).expect("tag event serializes");
    txn.open_table(TAG_HISTORY)?
        .insert(k.as_str(), v.as_slice())?;
    Ok(())
}

/// Deletes a manifest and the tags that point at it (recorded in their history as `actor`),
/// its parent links, its referrer entry and its last-pull time. Returns whether it existed.
fn remove_manifest(
    txn: &WriteTransaction,
    repo: &str,
    digest: &Digest,
    actor: &str,
) -> Result<bool> {
    let d = digest.to_string();
    let mk = key(&[repo, &d]);
    let (subject, children) = {
        let t = txn.open_table(MANIFESTS)?;
        let Some(v) = t.get(mk.as_str())? else {
            return Ok(false);
        };
        let meta = decode_meta(v.value())?;
        (meta.subject, meta.children)
    };
    {
        let mut parents = txn.open_table(PARENTS)?;
        for c in &children {
            parents.remove(key(&[repo, &c.to_string(), &d]).as_str())?;
        }
    }
    txn.open_table(MANIFESTS)?.remove(mk.as_str())?;
    let mut tags = txn.open_table(TAGS)?;
    let (lo, hi) = prefix_range(repo, None);
    let doomed: Vec<String> = tags
        .range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))?
        .filter_map(|e| e.ok())
        .filter(|(_, v)| v.value() == d)
        .map(|(k, _)| k.value().to_owned())
        .collect();
    for k in &doomed {
        tags.remove(k.as_str())?;
    }
    drop(tags);
    for k in doomed {
        let tag = &k[repo.len() + 1..];
        record_tag_change(txn, repo, tag, actor, Some(d.clone()), None)?;
    }
    if let Some(s) = subject {
        txn.open_table(REFERRERS)?
            .remove(key(&[repo, &s.to_string(), &d]).as_str())?;
    }
    txn.open_table(PULLS)?.remove(mk.as_str())?;
    Ok(true)
}

fn ensure_repo(txn: &WriteTransaction, repo: &str) -> Result<()> {
    let mut t = txn.open_table(REPOS)?;
    if t.get(repo)?.is_none() {
        t.insert(repo, now())?;
    }
    Ok(())
}

fn link(txn: &WriteTransaction, repo: &str, digest: &Digest, size: u64) -> Result<()> {
    ensure_repo(txn, repo)?;
    let d = digest.to_string();
    txn.open_table(BLOBS)?.insert(d.as_str(), size)?;
    txn.open_table(LINKS)?
        .insert(key(&[repo, &d]).as_str(), size)?;
    gc::note_link(txn, repo, &d)?;
    Ok(())
}

fn list_keys<V: redb::Value + 'static>(
    table: &impl ReadableTable<&'static str, V>,
    prefix: Option<&str>,
    page: &Page,
) -> Result<Vec<String>> {
    let n = page.n.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    if n == 0 {
        return Ok(out);
    }
    let strip = |k: &str| match prefix {
        Some(p) => k[p.len() + 1..].to_owned(),
        None => k.to_owned(),
    };
    let range = match prefix {
        Some(p) => table.range::<&str>((
            as_ref_bound(&prefix_range(p, page.last.as_deref()).0),
            as_ref_bound(&prefix_range(p, None).1),
        ))?,
        None => match &page.last {
            Some(l) => table.range::<&str>((Bound::Excluded(l.as_str()), Bound::Unbounded))?,
            None => table.range::<&str>(..)?,
        },
    };
    for item in range {
        let (k, _) = item?;
        out.push(strip(k.value()));
        if out.len() >= n {
            break;
        }
    }
    Ok(out)
}

fn as_ref_bound(b: &Bound<String>) -> Bound<&str> {
    match b {
        Bound::Included(s) => Bound::Included(s.as_str()),
        Bound::Excluded(s) => Bound::Excluded(s.as_str()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl RedbMetaStore {
    /// Stores a manifest and points `tags` at it; `check_present` requires its blobs to be linked
    /// and its index children stored (a client push), the cache stores without (see
    /// [`MetaStore::put_cached_manifest`]).
    async fn store_manifest(
        &self,
        repo: &str,
        m: ManifestRecord,
        tags: Vec<String>,
        check_present: bool,
    ) -> Result<()> {
        let repo = repo.to_owned();
        self.write_repo(&repo.clone(), move |txn| {
            // Checks first: nothing is written unless everything the manifest needs is here.
            {
                let links = txn.open_table(LINKS)?;
                for b in m.blobs.iter().filter(|_| check_present) {
                    if links.get(key(&[&repo, &b.to_string()]).as_str())?.is_none() {
                        return Err(StoreError::ManifestBlobUnknown(b.clone()));
                    }
                }
                let tags = txn.open_table(TAGS)?;
                let d = m.digest.to_string();
                for t in &m.frozen_tags {
                    if let Some(cur) = tags.get(key(&[&repo, t]).as_str())?
                        && cur.value() != d
                    {
                        return Err(StoreError::TagImmutable {
                            tag: t.clone(),
                            current: cur.value().to_owned(),
                        });
                    }
                }
                let manifests = txn.open_table(MANIFESTS)?;
                for c in m.children.iter().filter(|_| check_present) {
                    if manifests
                        .get(key(&[&repo, &c.to_string()]).as_str())?
                        .is_none()
                    {
                        return Err(StoreError::ManifestBlobUnknown(c.clone()));
                    }
                }
            }
            ensure_repo(txn, &repo)?;
            gc::note_refs(txn, &m.blobs)?;
            let d = m.digest.to_string();
            // Pushing the same manifest again keeps its first push time.
            let pushed = match txn.open_table(MANIFESTS)?.get(key(&[&repo, &d]).as_str())? {
                Some(v) => decode_meta(v.value())?.pushed,
                None => Some(now()),
            };
            let meta = ManifestMeta {
                media_type: m.media_type.clone(),
                subject: m.subject.clone(),
                children: m.children.clone(),
                pushed,
            };
            {
                let mut parents = txn.open_table(PARENTS)?;
                for c in &m.children {
                    parents.insert(
                        key(&[&repo, &c.to_string(), &m.digest.to_string()]).as_str(),
                        0u64,
                    )?;
                }
            }
            txn.open_table(MANIFESTS)?.insert(
                key(&[&repo, &d]).as_str(),
                encode_manifest(&meta, &m.body).as_slice(),
            )?;
            for t in &tags {
                let previous = txn
                    .open_table(TAGS)?
                    .insert(key(&[&repo, t]).as_str(), d.as_str())?
                    .map(|v| v.value().to_owned());
                record_tag_change(txn, &repo, t, &m.actor, previous, Some(d.clone()))?;
            }
            if let (Some(s), Some(desc)) = (&m.subject, &m.referrer) {
                let v = serde_json::to_vec(desc).expect("descriptor serializes");
                txn.open_table(REFERRERS)?
                    .insert(key(&[&repo, &s.to_string(), &d]).as_str(), v.as_slice())?;
            }
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl MetaStore for RedbMetaStore {
    fn generation(&self, repo: &str) -> u64 {
        self.generations.get(repo)
    }

    async fn blob_linked(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        self.read(|txn| {
            let t = txn.open_table(LINKS)?;
            Ok(t.get(key(&[repo, &digest.to_string()]).as_str())?
                .map(|v| v.value()))
        })
    }

    async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<()> {
        let (repo, digest) = (repo.to_owned(), digest.clone());
        self.write_repo(&repo.clone(), move |txn| link(txn, &repo, &digest, size))
            .await
    }

    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let k = key(&[repo, &digest.to_string()]);
        self.write_repo(repo, move |txn| {
            Ok(txn.open_table(LINKS)?.remove(k.as_str())?.is_some())
        })
        .await
    }

    async fn put_manifest(&self, repo: &str, m: ManifestRecord, tags: Vec<String>) -> Result<()> {
        self.store_manifest(repo, m, tags, true).await
    }

    async fn put_cached_manifest(
        &self,
        repo: &str,
        m: ManifestRecord,
        tags: Vec<String>,
    ) -> Result<()> {
        self.store_manifest(repo, m, tags, false).await
    }

    async fn get_manifest(&self, repo: &str, r: &Reference) -> Result<Option<StoredManifest>> {
        self.read(|txn| {
            let digest = match r {
                Reference::Digest(d) => d.clone(),
                Reference::Tag(t) => {
                    let tags = txn.open_table(TAGS)?;
                    let Some(v) = tags.get(key(&[repo, t]).as_str())? else {
                        return Ok(None);
                    };
                    Digest::parse(v.value())
                        .map_err(|_| StoreError::Db("corrupt tag record".into()))?
                }
            };
            let t = txn.open_table(MANIFESTS)?;
            let Some(v) = t.get(key(&[repo, &digest.to_string()]).as_str())? else {
                return Ok(None);
            };
            decode_manifest(digest, v.value()).map(Some)
        })
    }

    async fn delete_manifest(&self, repo: &str, digest: &Digest, actor: &str) -> Result<bool> {
        let (repo, digest, actor) = (repo.to_owned(), digest.clone(), actor.to_owned());
        self.write_repo(&repo.clone(), move |txn| {
            remove_manifest(txn, &repo, &digest, &actor)
        })
        .await
    }

    async fn delete_tag(&self, repo: &str, tag: &str, actor: &str) -> Result<bool> {
        let (repo, tag, actor) = (repo.to_owned(), tag.to_owned(), actor.to_owned());
        self.write_repo(&repo.clone(), move |txn| {
            let previous = txn
                .open_table(TAGS)?
                .remove(key(&[&repo, &tag]).as_str())?
                .map(|v| v.value().to_owned());
            let existed = previous.is_some();
            record_tag_change(txn, &repo, &tag, &actor, previous, None)?;
            Ok(existed)
        })
        .await
    }

    async fn set_tag(
        &self,
        repo: &str,
        tag: &str,
        digest: &Digest,
        actor: &str,
        frozen: bool,
    ) -> Result<()> {
        let (repo, tag, actor, digest) = (
            repo.to_owned(),
            tag.to_owned(),
            actor.to_owned(),
            digest.clone(),
        );
        self.write_repo(&repo.clone(), move |txn| {
            let d = digest.to_string();
            if txn
                .open_table(MANIFESTS)?
                .get(key(&[&repo, &d]).as_str())?
                .is_none()
            {
                return Err(StoreError::ManifestUnknown);
            }
            let k = key(&[&repo, &tag]);
            if frozen
                && let Some(cur) = txn.open_table(TAGS)?.get(k.as_str())?
                && cur.value() != d
            {
                return Err(StoreError::TagImmutable {
                    tag: tag.clone(),
                    current: cur.value().to_owned(),
                });
            }
            let previous = txn
                .open_table(TAGS)?
                .insert(k.as_str(), d.as_str())?
                .map(|v| v.value().to_owned());
            record_tag_change(txn, &repo, &tag, &actor, previous, Some(d))
        })
        .await
    }

    async fn tag_history(&self, repo: &str, tag: &str, limit: usize) -> Result<Vec<TagEvent>> {
        let repo = repo.to_owned();
        let tag = tag.to_owned();
        self.scan(move |txn| {
            let repo = repo.as_str();
            let tag = tag.as_str();
            let t = txn.open_table(TAG_HISTORY)?;
            let p = key(&[repo, tag]);
            let (lo, hi) = prefix_range(&p, None);
            let mut out = Vec::new();
            for e in t
                .range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))?
                .rev()
            {
                let (_, v) = e?;
                out.push(
                    serde_json::from_slice(v.value())
                        .map_err(|_| StoreError::Db("corrupt tag history record".into()))?,
                );
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn tags(&self, repo: &str, page: Page) -> Result<Option<Vec<String>>> {
        let repo = repo.to_owned();
        self.scan(move |txn| {
            let repo = repo.as_str();
            if txn.open_table(REPOS)?.get(repo)?.is_none() {
                return Ok(None);
            }
            list_keys(&txn.open_table(TAGS)?, Some(repo), &page).map(Some)
        })
        .await
    }

    async fn repositories(&self, page: Page) -> Result<Vec<String>> {
        self.scan(move |txn| list_keys(&txn.open_table(REPOS)?, None, &page))
            .await
    }

    async fn tags_of(&self, repo: &str, digest: &Digest) -> Result<Vec<String>> {
        let d = digest.to_string();
        self.read(|txn| {
            let t = txn.open_table(TAGS)?;
            let (lo, hi) = prefix_range(repo, None);
            let mut out = Vec::new();
            for e in t.range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))? {
                let (k, v) = e?;
                if v.value() == d {
                    out.push(k.value()[repo.len() + 1..].to_owned());
                }
            }
            Ok(out)
        })
    }

    async fn parents(&self, repo: &str, child: &Digest) -> Result<Vec<Digest>> {
        self.read(|txn| {
            let t = txn.open_table(PARENTS)?;
            let p = key(&[repo, &child.to_string()]);
            let (lo, hi) = prefix_range(&p, None);
            let mut out = Vec::new();
            for e in t.range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))? {
                let (k, _) = e?;
                if let Ok(d) = Digest::parse(&k.value()[p.len() + 1..]) {
                    out.push(d);
                }
            }
            Ok(out)
        })
    }

    async fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Descriptor>> {
        self.read(|txn| {
            let t = txn.open_table(REFERRERS)?;
            let p = key(&[repo, &subject.to_string()]);
            let (lo, hi) = prefix_range(&p, None);
            let mut out = Vec::new();
            for e in t.range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))? {
                let (_, v) = e?;
                out.push(
                    serde_json::from_slice(v.value())
                        .map_err(|_| StoreError::Db("corrupt referrer record".into()))?,
                );
            }
            Ok(out)
        })
    }

    async fn upload_create(&self, rec: UploadRecord) -> Result<()> {
        self.write(move |txn| {
            let v = serde_json::to_vec(&rec).expect("upload record serializes");
            txn.open_table(UPLOADS)?
                .insert(rec.id.as_str(), v.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn upload_get(&self, id: &str) -> Result<Option<UploadRecord>> {
        self.read(|txn| {
            let t = txn.open_table(UPLOADS)?;
            let Some(v) = t.get(id)? else { return Ok(None) };
            serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|_| StoreError::Db("corrupt upload record".into()))
        })
    }

    async fn upload_complete(&self, id: &str, digest: &Digest, size: u64) -> Result<()> {
        let (id, digest) = (id.to_owned(), digest.clone());
        self.write_touching(move |txn, touched| {
            let rec: UploadRecord = {
                let t = txn.open_table(UPLOADS)?;
                let Some(v) = t.get(id.as_str())? else {
                    return Err(StoreError::UploadUnknown);
                };
                serde_json::from_slice(v.value())
                    .map_err(|_| StoreError::Db("corrupt upload record".into()))?
            };
            txn.open_table(UPLOADS)?.remove(id.as_str())?;
            touched.push(rec.repo.clone());
            link(txn, &rec.repo, &digest, size)
        })
        .await
    }

    async fn upload_delete(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |txn| Ok(txn.open_table(UPLOADS)?.remove(id.as_str())?.is_some()))
            .await
    }

    async fn snapshot(&self, repo: &str) -> Result<RepoSnapshot> {
        let repo = repo.to_owned();
        self.scan(move |txn| {
            let repo = repo.as_str();
            let corrupt = |what: &str| StoreError::Db(format!("corrupt {what} record"));
            let history = txn.open_table(TAG_HISTORY)?;
            let mut out = RepoSnapshot::default();
            let (lo, hi) = prefix_range(repo, None);
            for e in txn
                .open_table(TAGS)?
                .range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))?
            {
                let (k, v) = e?;
                let tag = k.value()[repo.len() + 1..].to_owned();
                let digest = Digest::parse(v.value()).map_err(|_| corrupt("tag"))?;
                let (hlo, hhi) = prefix_range(&key(&[repo, &tag]), None);
                let set_at = match history
                    .range::<&str>((as_ref_bound(&hlo), as_ref_bound(&hhi)))?
                    .next_back()
                {
                    Some(h) => {
                        let ev: TagEvent = serde_json::from_slice(h?.1.value())
                            .map_err(|_| corrupt("tag history"))?;
                        (ev.new.as_deref() == Some(v.value())).then_some(ev.time)
                    }
                    None => None,
                };
                out.tags.push(TagEntry {
                    tag,
                    digest,
                    set_at,
                });
            }
            for e in txn
                .open_table(MANIFESTS)?
                .range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))?
            {
                let (k, v) = e?;
                let digest =
                    Digest::parse(&k.value()[repo.len() + 1..]).map_err(|_| corrupt("manifest"))?;
                let raw = v.value();
                let meta = decode_meta(raw)?;
                let head = u32::from_le_bytes(raw[..4].try_into().expect("4 bytes")) as usize;
                out.manifests.push(ManifestSummary {
                    digest,
                    media_type: meta.media_type,
                    size: (raw.len() - 4 - head) as u64,
                    subject: meta.subject,
                    children: meta.children,
                    pushed: meta.pushed,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn note_pulls(&self, pulls: Vec<(String, Digest, u64)>) -> Result<()> {
        if pulls.is_empty() {
            return Ok(());
        }
        self.write(move |txn| {
            let manifests = txn.open_table(MANIFESTS)?;
            let mut t = txn.open_table(PULLS)?;
            for (repo, digest, time) in &pulls {
                let k = key(&[repo, &digest.to_string()]);
                if manifests.get(k.as_str())?.is_none() {
                    continue;
                }
                let stored = t.get(k.as_str())?.map(|v| v.value());
                if stored.is_none_or(|s| s < *time) {
                    t.insert(k.as_str(), *time)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn last_pulls(&self, repo: &str) -> Result<Vec<(Digest, u64)>> {
        let repo = repo.to_owned();
        self.scan(move |txn| {
            let repo = repo.as_str();
            let (lo, hi) = prefix_range(repo, None);
            let mut out = Vec::new();
            for e in txn
                .open_table(PULLS)?
                .range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))?
            {
                let (k, v) = e?;
                if let Ok(d) = Digest::parse(&k.value()[repo.len() + 1..]) {
                    out.push((d, v.value()));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete_tag_if(
        &self,
        repo: &str,
        tag: &str,
        digest: &Digest,
        actor: &str,
    ) -> Result<bool> {
        let (repo, tag, actor, d) = (
            repo.to_owned(),
            tag.to_owned(),
            actor.to_owned(),
            digest.to_string(),
        );
        self.write_repo(&repo.clone(), move |txn| {
            let k = key(&[&repo, &tag]);
            let current = txn
                .open_table(TAGS)?
                .get(k.as_str())?
                .map(|v| v.value().to_owned());
            if current.as_deref() != Some(d.as_str()) {
                return Ok(false);
            }
            txn.open_table(TAGS)?.remove(k.as_str())?;
            record_tag_change(txn, &repo, &tag, &actor, current, None)?;
            Ok(true)
        })
        .await
    }

    async fn delete_manifest_if_unused(
        &self,
        repo: &str,
        digest: &Digest,
        actor: &str,
    ) -> Result<GuardedDelete> {
        let (repo, digest, actor) = (repo.to_owned(), digest.clone(), actor.to_owned());
        self.write_repo(&repo.clone(), move |txn| {
            let d = digest.to_string();
            if txn
                .open_table(MANIFESTS)?
                .get(key(&[&repo, &d]).as_str())?
                .is_none()
            {
                return Ok(GuardedDelete::Gone);
            }
            let (lo, hi) = prefix_range(&repo, None);
            let mut tagged = Vec::new();
            for e in txn
                .open_table(TAGS)?
                .range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))?
            {
                let (k, v) = e?;
                if v.value() == d {
                    tagged.push(k.value()[repo.len() + 1..].to_owned());
                }
            }
            if !tagged.is_empty() {
                return Ok(GuardedDelete::Tagged(tagged));
            }
            let p = key(&[&repo, &d]);
            let (plo, phi) = prefix_range(&p, None);
            let mut listed = Vec::new();
            for e in txn
                .open_table(PARENTS)?
                .range::<&str>((as_ref_bound(&plo), as_ref_bound(&phi)))?
            {
                let (k, _) = e?;
                if let Ok(parent) = Digest::parse(&k.value()[p.len() + 1..]) {
                    listed.push(parent);
                }
            }
            if !listed.is_empty() {
                return Ok(GuardedDelete::Listed(listed));
            }
            remove_manifest(txn, &repo, &digest, &actor)?;
            Ok(GuardedDelete::Deleted)
        })
        .await
    }

    async fn record_get(&self, ns: &str, key_: &str) -> Result<Option<Vec<u8>>> {
        self.read(|txn| {
            Ok(txn
                .open_table(RECORDS)?
                .get(key(&[ns, key_]).as_str())?
                .map(|v| v.value().to_vec()))
        })
    }

    async fn record_put(&self, ns: &str, key_: &str, value: Vec<u8>) -> Result<()> {
        let k = key(&[ns, key_]);
        self.write(move |txn| {
            txn.open_table(RECORDS)?
                .insert(k.as_str(), value.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn record_delete(&self, ns: &str, key_: &str) -> Result<bool> {
        let k = key(&[ns, key_]);
        self.write(move |txn| Ok(txn.open_table(RECORDS)?.remove(k.as_str())?.is_some()))
            .await
    }

    async fn record_list(
        &self,
        ns: &str,
        page: Page,
        newest_first: bool,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let ns = ns.to_owned();
        self.scan(move |txn| {
            let ns = ns.as_str();
            let t = txn.open_table(RECORDS)?;
            let n = page.n.unwrap_or(usize::MAX);
            if n == 0 {
                return Ok(Vec::new());
            }
            let (lo, hi) = prefix_range(ns, None);
            let (lo, hi) = match (&page.last, newest_first) {
                (Some(l), false) => (Bound::Excluded(format!("{ns}\0{l}")), hi),
                (Some(l), true) => (lo, Bound::Excluded(format!("{ns}\0{l}"))),
                (None, _) => (lo, hi),
            };
            let range = t.range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))?;
            let mut out = Vec::new();
            let mut push = |e: std::result::Result<
                (redb::AccessGuard<'_, &str>, redb::AccessGuard<'_, &[u8]>),
                redb::StorageError,
            >|
             -> Result<bool> {
                let (k, v) = e?;
                out.push((k.value()[ns.len() + 1..].to_owned(), v.value().to_vec()));
                Ok(out.len() < n)
            };
            if newest_first {
                for e in range.rev() {
                    if !push(e)? {
                        break;
                    }
                }
            } else {
                for e in range {
                    if !push(e)? {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GcMeta;

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
