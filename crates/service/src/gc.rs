//! Online garbage collection and per-repository storage use (docs/gc.md has the safety argument).
//!
//! The [`Collector`] reclaims blobs no manifest references, blob links nothing references, and
//! expired uploads, while clients keep pushing. Three mechanisms make that safe:
//!
//! - a per-digest lock ([`store::DigestLocks`], taken through [`Collector::hold`]) taken by
//!   "commit an upload and link it", by the pull-through cache's "commit a fetched blob and link
//!   it",
//!   by blob HEAD/GET/mount, and by the collector around "re-check and delete": a blob can never
//!   vanish between an upload's rename and its link, nor between a HEAD that found it and the
//!   touch that protects it;
//! - a grace period: links younger than it are never collected, and blob HEAD/GET/mount touch
//!   the digest in a bounded in-memory map the collector consults, so a client that saw a blob
//!   may reference it in a manifest within the grace period;
//! - the metadata side of each deletion is one transaction that re-checks that no manifest stored
//!   since the snapshot references the blob (`store::gc`), serialized with `put_manifest`.
//!
//! Storage use is computed by the same scan and exported as JSON and Prometheus gauges.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oci::Digest;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as PromRegistry;
use store::gc::{Doomed, StorageUsage, digest_key};
use store::{BlobStore, DigestGuard, DigestLocks, MetaStore, StoreError};

/// Digests remembered as recently touched; past this the collector keeps everything for a while.
const MAX_TOUCHES: usize = 100_000;
/// Proposals handled per run (bounds memory); the next run continues.
const MAX_DOOMED: usize = 100_000;
/// Proposals re-checked and deleted per metadata transaction.
const SWEEP_BATCH: usize = 64;
/// Blob files listed per page when looking for files without metadata.
const LIST_PAGE: usize = 512;
/// Uploads listed per page (the filesystem lists its whole upload directory for each page).
const UPLOAD_PAGE: usize = 4096;
/// Upload sessions and files looked at per run.
const MAX_UPLOADS: usize = 100_000;
/// Repositories given their own `wharf_repository_bytes` series (the largest); the rest are
/// summed under `repository="(other)"`, so label cardinality stays bounded.
const TOP_REPOS: usize = 50;
/// A cached storage report younger than this answers `GET /api/v1/storage`.
pub const USAGE_MAX_AGE: Duration = Duration::from_secs(60);

/// What a collection does.
#[derive(Clone, Debug)]
pub struct GcOptions {
    /// Report only; delete nothing.
    pub dry_run: bool,
    /// Links and blob files younger than this, and blobs touched within it, are kept.
    pub grace: Duration,
    /// Uploads idle for longer than this are deleted (with or without a session record).
    pub upload_expiry: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            grace: Duration::from_secs(3600),
            upload_expiry: Duration::from_secs(24 * 3600),
        }
    }
}

/// What a collection did (or, dry, would do): the management API's report, defined in `api`.
pub use api::gc::GcReport;

/// A phase of a collection, in the order they run (see [`GcProgress`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GcPhase {
    /// Reading every manifest for the blobs it references (one snapshot): `done` is 0 until it
    /// ends, then the manifests read, with no total before.
    Mark,
    /// Re-checking and deleting what the mark found unreferenced (links and blobs): of the
    /// proposals.
    Sweep,
    /// Listing blob files for those no metadata knows: files looked at, of the blob records
    /// the mark counted (an estimate, raised when more files exist; exact at the phase's end).
    Files,
    /// Expired and abandoned uploads: uploads looked at, of those listed.
    Uploads,
}

impl GcPhase {
    /// The phase's name as the streamed answer spells it (`mark`, `sweep`, `files`, `uploads`).
    pub fn as_str(self) -> &'static str {
        match self {
            GcPhase::Mark => "mark",
            GcPhase::Sweep => "sweep",
            GcPhase::Files => "files",
            GcPhase::Uploads => "uploads",
        }
    }
}

/// Where a collection stands, as [`Collector::collect_with_progress`] reports it. Within a
/// phase `done` never decreases and never exceeds `total`; every phase is reported at least
/// at its start and at its end (`done == total` then).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GcProgress {
    /// The phase running.
    pub phase: GcPhase,
    /// Items of the phase done.
    pub done: u64,
    /// Items of the phase in all, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// A receiver of a collection's progress: called synchronously from the collection, so it
/// must be cheap (a caller that forwards it somewhere throttles it itself).
pub type GcProgressFn<'a> = dyn FnMut(GcProgress) + Send + 'a;

/// Failures of a collection.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// Storage failed; what was deleted so far stays deleted and the store is consistent.
    #[error("garbage collection failed: {0}")]
    Store(#[from] StoreError),
}

/// Labels of a repository's storage gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepoBytesLabels {
    /// Repository, or `(other)` for those beyond the largest few.
    pub repository: String,
    /// `logical` (bytes of the blobs it references) or `exclusive` (of those, not shared).
    pub kind: &'static str,
}

/// Labels of a collection run counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    /// `collect` or `dry_run`.
    pub mode: &'static str,
    /// `ok` or `error`.
    pub outcome: &'static str,
}

/// Garbage collection and storage metrics.
pub struct GcMetrics {
    /// Collections run.
    pub runs: Family<RunLabels, Counter>,
    /// Bytes freed (blob and upload files).
    pub freed_bytes: Counter,
    /// Blobs deleted (including files without metadata).
    pub deleted_blobs: Counter,
    /// Links deleted.
    pub deleted_links: Counter,
    /// Uploads deleted (expired sessions and files without one).
    pub expired_uploads: Counter,
    /// Duration of the last collection.
    pub last_duration: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Unix time the last collection finished.
    pub last_run: Gauge,
    /// Storage per repository (largest few, plus the rest summed).
    pub repository_bytes: Family<RepoBytesLabels, Gauge>,
    /// Referenced blob bytes, each blob counted once.
    pub referenced_bytes: Gauge,
    /// Sum of the repositories' logical bytes (what the store would take without deduplication).
    pub logical_bytes: Gauge,
    /// Bytes of blob records no manifest references.
    pub unreferenced_bytes: Gauge,
}

impl Default for GcMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl GcMetrics {
    /// Creates the metrics (unregistered: see [`GcMetrics::register`]).
    pub fn new() -> Self {
        GcMetrics {
            runs: Family::default(),
            freed_bytes: Counter::default(),
            deleted_blobs: Counter::default(),
            deleted_links: Counter::default(),
            expired_uploads: Counter::default(),
            last_duration: Gauge::default(),
            last_run: Gauge::default(),
            repository_bytes: Family::default(),
            referenced_bytes: Gauge::default(),
            logical_bytes: Gauge::default(),
            unreferenced_bytes: Gauge::default(),
        }
    }

    /// Registers the metrics into `r` (they stay shared with this collector).
    pub fn register(&self, r: &mut PromRegistry) {
        let m = self;
        r.register("gc_runs", "Garbage collections run", m.runs.clone());
        r.register(
            "gc_freed_bytes",
            "Bytes freed by garbage collection",
            m.freed_bytes.clone(),
        );
        r.register(
            "gc_deleted_blobs",
            "Blobs deleted by garbage collection",
            m.deleted_blobs.clone(),
        );
        r.register(
            "gc_deleted_links",
            "Unreferenced blob links deleted by garbage collection",
            m.deleted_links.clone(),
        );
        r.register(
            "gc_expired_uploads",
            "Expired or abandoned uploads deleted by garbage collection",
            m.expired_uploads.clone(),
        );
        r.register(
            "gc_last_duration_seconds",
            "Duration of the last garbage collection",
            m.last_duration.clone(),
        );
        r.register(
            "gc_last_run_timestamp_seconds",
            "Unix time the last garbage collection finished",
            m.last_run.clone(),
        );
        r.register(
            "repository_bytes",
            "Bytes of the blobs a repository references (logical) and of those no other repository references (exclusive); the largest repositories, the rest summed as (other)",
            m.repository_bytes.clone(),
        );
        r.register(
            "storage_referenced_bytes",
            "Bytes of referenced blobs, each counted once",
            m.referenced_bytes.clone(),
        );
        r.register(
            "storage_logical_bytes",
            "Sum of every repository's logical bytes (before deduplication)",
            m.logical_bytes.clone(),
        );
        r.register(
            "storage_unreferenced_bytes",
            "Bytes of blobs no manifest references (garbage or pushes in progress)",
            m.unreferenced_bytes.clone(),
        );
    }

    fn set_usage(&self, u: &StorageUsage) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.referenced_bytes.set(gauge(u.total.referenced_bytes));
        self.logical_bytes.set(gauge(u.total.logical_bytes));
        self.unreferenced_bytes
            .set(gauge(u.total.unreferenced_bytes));
        let mut repos: Vec<_> = u.repositories.iter().collect();
        repos.sort_by_key(|r| std::cmp::Reverse(r.logical_bytes));
        self.repository_bytes.clear();
        let (mut other_logical, mut other_exclusive, mut others) = (0u64, 0u64, 0usize);
        for (i, r) in repos.iter().enumerate() {
            if i < TOP_REPOS {
                for (kind, v) in [
                    ("logical", r.logical_bytes),
                    ("exclusive", r.exclusive_bytes),
                ] {
                    self.repository_bytes
                        .get_or_create(&RepoBytesLabels {
                            repository: r.repository.clone(),
                            kind,
                        })
                        .set(gauge(v));
                }
            } else {
                others += 1;
                other_logical += r.logical_bytes;
                other_exclusive += r.exclusive_bytes;
            }
        }
        if others > 0 {
            for (kind, v) in [("logical", other_logical), ("exclusive", other_exclusive)] {
                self.repository_bytes
                    .get_or_create(&RepoBytesLabels {
                        repository: "(other)".into(),
                        kind,
                    })
                    .set(gauge(v));
            }
        }
    }
}

/// Digests touched by blob HEAD/GET/mount recently, bounded. When full of recent entries it
/// forgets them all and, for one retention period, reports every digest as touched: memory stays
/// bounded and the collector errs on the side of keeping.
struct Touches {
    state: Mutex<TouchState>,
    retention: Mutex<Duration>,
}

struct TouchState {
    map: HashMap<u128, Instant>,
    overflow_until: Option<Instant>,
}

impl Touches {
    fn new() -> Self {
        Touches {
            state: Mutex::new(TouchState {
                map: HashMap::new(),
                overflow_until: None,
            }),
            retention: Mutex::new(GcOptions::default().grace),
        }
    }

    fn retention(&self) -> Duration {
        *self.retention.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn touch(&self, d: &Digest) {
        let k = digest_key(d);
        let keep = self.retention();
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.map.len() >= MAX_TOUCHES && !s.map.contains_key(&k) {
            s.map.retain(|_, t| now.duration_since(*t) < keep);
            if s.map.len() >= MAX_TOUCHES {
                s.map.clear();
                s.overflow_until = Some(now + keep);
                tracing::warn!(
                    entries = MAX_TOUCHES,
                    "too many blobs touched within the grace period to track: garbage collection keeps every blob for one grace period"
                );
            }
        }
        s.map.insert(k, now);
    }

    fn recent(&self, d: &Digest, grace: Duration) -> bool {
        let now = Instant::now();
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.overflow_until.is_some_and(|u| now < u)
            || s.map
                .get(&digest_key(d))
                .is_some_and(|t| now.duration_since(*t) < grace)
    }
}

/// Collections wait while this lives (see [`Collector::pause`]).
pub struct GcPause {
    _held: tokio::sync::OwnedMutexGuard<()>,
}

/// Runs collections and computes storage use over a blob store and a metadata store.
pub struct Collector {
    blobs: Arc<dyn BlobStore>,
    meta: Arc<dyn MetaStore>,
    metrics: GcMetrics,
    /// The store's per-digest locks, shared with everything else that commits or links blobs.
    locks: Arc<DigestLocks>,
    touches: Touches,
    /// One collection at a time (the generation bookkeeping in the store assumes it); a
    /// backup holds it too ([`Collector::pause`]).
    running: Arc<tokio::sync::Mutex<()>>,
    /// Serializes storage scans requested through the API.
    usage_scan: tokio::sync::Mutex<()>,
    usage: Mutex<Option<(Instant, Arc<StorageUsage>)>>,
    defaults: Mutex<GcOptions>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Collector {
    /// A collector over these stores, deleting under `locks` (the same table every blob commit
    /// and link of these stores takes); its metrics are registered with [`GcMetrics::register`]
    /// on [`Collector::metrics`].
    pub fn new(
        blobs: Arc<dyn BlobStore>,
        meta: Arc<dyn MetaStore>,
        locks: Arc<DigestLocks>,
    ) -> Self {
        Collector {
            blobs,
            meta,
            metrics: GcMetrics::new(),
            locks,
            touches: Touches::new(),
            running: Arc::new(tokio::sync::Mutex::new(())),
            usage_scan: tokio::sync::Mutex::new(()),
            usage: Mutex::new(None),
            defaults: Mutex::new(GcOptions::default()),
        }
    }

    /// Holds off collections for as long as the returned guard lives, once a running one has
    /// finished: a backup holds it from before its metadata snapshot until its last blob is
    /// copied, so no blob the snapshot names is deleted meanwhile (collections are the only
    /// deleters of blob files). Collections asked for meanwhile (the schedule's too) wait.
    pub async fn pause(&self) -> GcPause {
        GcPause {
            _held: self.running.clone().lock_owned().await,
        }
    }

    /// Sets the options used when a caller gives none (the server's `[gc]` configuration); the
    /// touch map remembers digests for at least this grace period.
    pub fn set_defaults(&self, opts: GcOptions) {
        *self
            .touches
            .retention
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = opts.grace.max(Duration::from_secs(60));
        *self.defaults.lock().unwrap_or_else(|e| e.into_inner()) = opts;
    }

    /// Garbage collection and storage metrics (register them to export them).
    pub fn metrics(&self) -> &GcMetrics {
        &self.metrics
    }

    /// The options used when a caller gives none.
    pub fn defaults(&self) -> GcOptions {
        self.defaults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes the per-digest lock of `d` alone and marks it touched. Held by upload commit + link,
    /// by mount while it reads and writes the link, and by the collector while it re-checks and
    /// deletes (blob HEAD/GET take it shared: [`Collector::hold_shared`]): so a blob seen (or
    /// just linked) is protected for the grace period.
    pub async fn hold(&self, d: &Digest) -> DigestGuard {
        let g = self.locks.hold(d).await;
        self.touches.touch(d);
        g
    }

    /// [`Collector::hold`] for a reader (a pull checking the blob's link): the lock is shared
    /// with other readers, so only the collector's re-check-and-delete is excluded, and the
    /// digest is touched.
    pub async fn hold_shared(&self, d: &Digest) -> DigestGuard {
        let g = self.locks.share(d).await;
        self.touches.touch(d);
        g
    }

    /// Locks several digests (see [`DigestLocks::hold_many`]), without touching them.
    async fn hold_many<'a>(&self, ds: impl Iterator<Item = &'a Digest>) -> Vec<DigestGuard> {
        self.locks.hold_many(ds).await
    }

    /// The last storage report, if one is younger than `max_age`.
    fn cached_usage(&self, max_age: Duration) -> Option<Arc<StorageUsage>> {
        self.usage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|(t, _)| t.elapsed() < max_age)
            .map(|(_, u)| u.clone())
    }

    fn store_usage(&self, u: StorageUsage) -> Arc<StorageUsage> {
        self.metrics.set_usage(&u);
        let u = Arc::new(u);
        *self.usage.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), u.clone()));
        u
    }

    /// Storage use per repository and in total: a cached report younger than `max_age`, else a
    /// fresh scan (which also refreshes the gauges).
    pub async fn storage_usage(&self, max_age: Duration) -> Result<Arc<StorageUsage>, GcError> {
        if let Some(u) = self.cached_usage(max_age) {
            return Ok(u);
        }
        let _scan = self.usage_scan.lock().await;
        if let Some(u) = self.cached_usage(max_age) {
            return Ok(u); // computed while we waited
        }
        let mark = self.meta.gc_mark(0, 0).await?;
        Ok(self.store_usage(mark.usage))
    }

    /// Runs one collection (waiting for a running one to finish first) and returns its report.
    pub async fn collect(&self, opts: &GcOptions) -> Result<GcReport, GcError> {
        self.collect_with_progress(opts, &mut |_| {}).await
    }

    /// [`Collector::collect`], calling `progress` as the collection goes (see [`GcProgress`]):
    /// for a progress bar. Reported after each batch of work, never per byte.
    pub async fn collect_with_progress(
        &self,
        opts: &GcOptions,
        progress: &mut GcProgressFn<'_>,
    ) -> Result<GcReport, GcError> {
        let _run = self.running.lock().await;
        let mode = if opts.dry_run { "dry_run" } else { "collect" };
        let t0 = Instant::now();
        let r = self.run(opts, progress).await;
        let outcome = if r.is_ok() { "ok" } else { "error" };
        let m = &self.metrics;
        m.runs.get_or_create(&RunLabels { mode, outcome }).inc();
        m.last_duration.set(t0.elapsed().as_secs_f64());
        m.last_run.set(unix_now() as i64);
        match &r {
            Ok(rep) => {
                if !rep.dry_run {
                    m.freed_bytes
                        .inc_by(rep.bytes_freed + rep.upload_bytes_freed);
                    m.deleted_blobs
                        .inc_by(rep.blobs_deleted + rep.orphan_files_deleted);
                    m.deleted_links.inc_by(rep.links_deleted);
                    m.expired_uploads
                        .inc_by(rep.uploads_expired + rep.orphan_uploads_deleted);
                }
                tracing::info!(
                    dry_run = rep.dry_run,
                    blobs = rep.blobs_deleted,
                    orphan_files = rep.orphan_files_deleted,
                    bytes = rep.bytes_freed,
                    links = rep.links_deleted,
                    uploads = rep.uploads_expired + rep.orphan_uploads_deleted,
                    kept_recent = rep.kept_recent,
                    incomplete = rep.incomplete,
                    seconds = rep.duration_seconds,
                    "garbage collection finished"
                );
            }
            Err(e) => tracing::error!(error = %e, "garbage collection failed"),
        }
        r
    }

    async fn run(
        &self,
        opts: &GcOptions,
        progress: &mut GcProgressFn<'_>,
    ) -> Result<GcReport, GcError> {
        let mut report = |phase, done, total| {
            progress(GcProgress { phase, done, total });
        };
        let t0 = Instant::now();
        let now = SystemTime::now();
        let started_at = unix_now();
        let mut rep = GcReport {
            dry_run: opts.dry_run,
            grace_seconds: opts.grace.as_secs(),
            upload_expiry_seconds: opts.upload_expiry.as_secs(),
            started_at,
            ..GcReport::default()
        };
        let cutoff = started_at.saturating_sub(opts.grace.as_secs());
        let file_cutoff = now.checked_sub(opts.grace).unwrap_or(UNIX_EPOCH);

        // 1. Mark: one snapshot, after the generation is bumped (so every manifest stored after
        //    the snapshot is recorded under this generation and vetoes deletions below).
        report(GcPhase::Mark, 0, None);
        let generation = if opts.dry_run {
            0
        } else {
            self.meta.gc_begin().await?
        };
        let mark = self.meta.gc_mark(cutoff, MAX_DOOMED).await?;
        let manifests = mark.usage.total.manifests;
        report(GcPhase::Mark, manifests, Some(manifests));
        let blob_records = mark.usage.total.referenced_blobs + mark.usage.total.unreferenced_blobs;
        rep.repositories = mark.usage.total.repositories;
        rep.manifests = mark.usage.total.manifests;
        rep.unparsable_manifests = mark.unparsable_manifests;
        rep.incomplete = mark.truncated;
        rep.kept_recent = mark.young_links;
        rep.links_stamped = mark.unstamped.len() as u64;
        self.store_usage(mark.usage);
        if !opts.dry_run {
            self.meta.gc_stamp(mark.unstamped).await?;
        }

        // 2. Sweep the proposals, a batch at a time, under their per-digest locks.
        let proposals = mark.doomed.len() as u64;
        let mut swept = 0u64;
        report(GcPhase::Sweep, 0, Some(proposals));
        for batch in mark.doomed.chunks(SWEEP_BATCH) {
            // Counted at the batch's start: its `continue`s below skip the loop's end.
            if swept > 0 {
                report(GcPhase::Sweep, swept, Some(proposals));
            }
            swept += batch.len() as u64;
            let _held = self.hold_many(batch.iter().map(Doomed::digest)).await;
            let (live, touched): (Vec<&Doomed>, Vec<&Doomed>) = batch
                .iter()
                .partition(|i| !self.touches.recent(i.digest(), opts.grace));
            rep.kept_recent += touched.len() as u64;
            if opts.dry_run {
                for i in live {
                    match i {
                        Doomed::Link { .. } => rep.links_deleted += 1,
                        Doomed::Blob { size, .. } => {
                            rep.blobs_deleted += 1;
                            rep.bytes_freed += size;
                        }
                    }
                }
                continue;
            }
            let items: Vec<Doomed> = live.into_iter().cloned().collect();
            let done = self
                .meta
                .gc_sweep(generation, cutoff, items.clone())
                .await?;
            for (item, deleted) in items.iter().zip(done) {
                if !deleted {
                    rep.kept_recent += 1;
                    continue;
                }
                match item {
                    Doomed::Link { .. } => rep.links_deleted += 1,
                    Doomed::Blob { digest, .. } => {
                        // Metadata first, then the file: a crash in between leaves a file no
                        // metadata knows, which the next run deletes below.
                        let size = self.blobs.size(digest).await?;
                        rep.blobs_deleted += 1;
                        if self.blobs.delete(digest).await? {
                            rep.bytes_freed += size.unwrap_or(0);
                        }
                    }
                }
            }
        }

        report(GcPhase::Sweep, proposals, Some(proposals));

        // 3. Blob files no metadata knows (a crash between the two steps above, or between an
        //    upload's rename and its link), older than the grace period.
        let mut after: Option<Digest> = None;
        let mut files_seen = 0u64;
        report(GcPhase::Files, 0, Some(blob_records));
        loop {
            if files_seen > 0 {
                report(
                    GcPhase::Files,
                    files_seen,
                    Some(blob_records.max(files_seen)),
                );
            }
            let page = self.blobs.list_blobs(after.as_ref(), LIST_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            files_seen += page.len() as u64;
            let old: Vec<_> = page
                .into_iter()
                .filter(|f| f.modified < file_cutoff)
                .collect();
            if old.is_empty() {
                continue;
            }
            let known = self
                .meta
                .gc_blobs_known(old.iter().map(|f| f.digest.clone()).collect())
                .await?;
            let orphans: Vec<_> = old
                .into_iter()
                .zip(known)
                .filter(|(_, k)| !k)
                .map(|(f, _)| f)
                .collect();
            if orphans.is_empty() {
                continue;
            }
            let _held = self.hold_many(orphans.iter().map(|f| &f.digest)).await;
            // Re-check under the locks: an upload commit holds the lock from rename to link.
            let known = self
                .meta
                .gc_blobs_known(orphans.iter().map(|f| f.digest.clone()).collect())
                .await?;
            for (f, k) in orphans.iter().zip(known) {
                if k || self.touches.recent(&f.digest, opts.grace) {
                    rep.kept_recent += 1;
                    continue;
                }
                if opts.dry_run {
                    rep.orphan_files_deleted += 1;
                    rep.bytes_freed += f.size;
                } else if self.blobs.delete(&f.digest).await? {
                    tracing::debug!(digest = %f.digest, "deleted blob file without metadata");
                    rep.orphan_files_deleted += 1;
                    rep.bytes_freed += f.size;
                }
            }
        }

        report(GcPhase::Files, files_seen, Some(files_seen));

        // 4. Uploads idle for longer than the expiry, with a session record or without one.
        let expiry_cutoff = now.checked_sub(opts.upload_expiry).unwrap_or(UNIX_EPOCH);
        let expiry_secs = started_at.saturating_sub(opts.upload_expiry.as_secs());
        let mut files: HashMap<String, store::UploadEntry> = HashMap::new();
        let mut after: Option<String> = None;
        while files.len() < MAX_UPLOADS {
            let want = UPLOAD_PAGE.min(MAX_UPLOADS - files.len());
            let page = self.blobs.list_uploads(after.as_deref(), want).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            let full = page.len() == want;
            files.extend(page.into_iter().map(|f| (f.id.clone(), f)));
            if !full {
                break;
            }
        }
        let records = self.meta.gc_uploads(MAX_UPLOADS).await?;
        let with_file = records.iter().filter(|r| files.contains_key(&r.id)).count();
        let uploads = (records.len() + files.len() - with_file) as u64;
        let mut looked = 0u64;
        report(GcPhase::Uploads, 0, Some(uploads));
        let mut tick = |looked: &mut u64| {
            *looked += 1;
            if looked.is_multiple_of(UPLOAD_PAGE as u64 / 16) {
                report(GcPhase::Uploads, *looked, Some(uploads));
            }
        };
        for rec in records {
            tick(&mut looked);
            let file = files.remove(&rec.id);
            let active_recently = rec.started >= expiry_secs
                || file.as_ref().is_some_and(|f| f.modified >= expiry_cutoff);
            if active_recently {
                continue;
            }
            let size = file.map_or(0, |f| f.size);
            if !opts.dry_run {
                match self.blobs.upload_delete(&rec.id).await {
                    Ok(()) | Err(StoreError::UploadUnknown) => {}
                    Err(e) => return Err(e.into()),
                }
                self.meta.upload_delete(&rec.id).await?;
            }
            rep.uploads_expired += 1;
            rep.upload_bytes_freed += size;
        }
        for f in files.into_values() {
            tick(&mut looked);
            if f.modified >= expiry_cutoff {
                continue; // e.g. a monolithic upload (no session record) in progress
            }
            if !opts.dry_run {
                match self.blobs.upload_delete(&f.id).await {
                    Ok(()) => {}
                    Err(StoreError::UploadUnknown) => continue, // not an upload id, or gone
                    Err(e) => return Err(e.into()),
                }
            }
            rep.orphan_uploads_deleted += 1;
            rep.upload_bytes_freed += f.size;
        }
        report(GcPhase::Uploads, uploads, Some(uploads));
        rep.duration_seconds = t0.elapsed().as_secs_f64();
        Ok(rep)
    }

    /// Runs collections every `interval` and refreshes storage use every `usage_interval`, until
    /// the runtime stops. Crash-safe at any point, so nothing needs stopping on shutdown.
    pub fn spawn_schedule(
        self: Arc<Self>,
        interval: Duration,
        usage_interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let interval = interval.max(Duration::from_secs(1));
            let usage_interval = usage_interval.max(Duration::from_secs(1));
            // Gauges early, so a fresh server exports storage use before the first collection.
            tokio::time::sleep(Duration::from_secs(5).min(usage_interval)).await;
            let mut next_gc = Instant::now() + interval;
            loop {
                if Instant::now() >= next_gc {
                    let opts = self.defaults();
                    let _ = self.collect(&opts).await; // logged and counted inside
                    next_gc = Instant::now() + interval;
                } else if let Err(e) = self.storage_usage(Duration::ZERO).await {
                    tracing::warn!(error = %e, "computing storage use failed");
                }
                let wake = next_gc.min(Instant::now() + usage_interval);
                tokio::time::sleep_until(wake.into()).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use store::{FsBlobStore, RedbMetaStore, UploadRecord};

    /// Checks one run's progress: phases in order, each started and ended (`done == total`),
    /// `done` never decreasing nor above `total` within a phase; returns each phase's end.
    fn ends(events: &[GcProgress]) -> Vec<GcProgress> {
        let order = [
            GcPhase::Mark,
            GcPhase::Sweep,
            GcPhase::Files,
            GcPhase::Uploads,
        ];
        let mut out: Vec<GcProgress> = Vec::new();
        for e in events {
            match out.last_mut() {
                Some(last) if last.phase == e.phase => {
                    assert!(e.done >= last.done, "{e:?} after {last:?}");
                    *last = *e;
                }
                _ => {
                    assert_eq!(e.done, 0, "a phase starts at 0: {e:?}");
                    out.push(*e);
                }
            }
            if let Some(t) = e.total {
                assert!(e.done <= t, "{e:?}");
            }
        }
        assert_eq!(
            out.iter().map(|p| p.phase).collect::<Vec<_>>(),
            order,
            "{events:?}"
        );
        for p in &out {
            assert_eq!(Some(p.done), p.total, "a phase ends complete: {p:?}");
        }
        out
    }

    #[tokio::test]
    async fn progress_counts_each_phase_and_changes_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<RedbMetaStore> =
            Arc::new(RedbMetaStore::open(&dir.path().join("meta.redb")).unwrap());
        let blobs = Arc::new(FsBlobStore::open(dir.path().join("blobs")).unwrap());
        let c = Collector::new(blobs.clone(), meta.clone(), Arc::new(DigestLocks::new()));
        // 150 manifests; 100 unreferenced blob records; 3 blob files no metadata knows; 5
        // abandoned upload sessions.
        for seed in 0..150u8 {
            crate::testing::put_image(meta.as_ref(), "r", seed, &[&format!("t{seed}")]).await;
        }
        for i in 0..100u32 {
            let d = Digest::sha256(format!("junk {i}").as_bytes());
            meta.link_blob("junk", &d, 10).await.unwrap();
        }
        for i in 0..3u32 {
            let id = format!("orphan-{i}");
            let data = Bytes::from(format!("orphan file {i}"));
            let d = Digest::sha256(&data);
            blobs.upload_create(&id).await.unwrap();
            let body: store::BlobStream =
                Box::pin(futures_util::stream::iter([Ok::<_, std::io::Error>(data)]));
            blobs.upload_append(&id, None, None, body).await.unwrap();
            blobs.upload_commit(&id, &d).await.unwrap();
        }
        for i in 0..5 {
            meta.upload_create(UploadRecord {
                id: format!("abandoned-{i}"),
                repo: "r".into(),
                started: 1,
                owner: None,
            })
            .await
            .unwrap();
        }
        // Past the second the links were made in, so none is younger than a zero grace.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let opts = |dry_run| GcOptions {
            dry_run,
            grace: Duration::ZERO,
            upload_expiry: Duration::ZERO,
        };

        // Dry: the same report with or without a listener.
        let plain = c.collect(&opts(true)).await.unwrap();
        let mut events = Vec::new();
        let dry = c
            .collect_with_progress(&opts(true), &mut |p| events.push(p))
            .await
            .unwrap();
        let strip = |mut r: GcReport| {
            r.duration_seconds = 0.0;
            r.started_at = 0;
            r
        };
        assert_eq!(
            serde_json::to_value(strip(plain.clone())).unwrap(),
            serde_json::to_value(strip(dry)).unwrap()
        );
        let e = ends(&events);
        assert_eq!(e[0].done, 150, "manifests marked");
        assert_eq!(e[1].done, 100, "proposals swept");
        assert_eq!(e[2].done, 3, "blob files looked at");
        assert_eq!(e[3].done, 5, "uploads looked at");
        // The sweep reports batch by batch.
        let sweeps = events.iter().filter(|p| p.phase == GcPhase::Sweep).count();
        assert!(sweeps >= 100 / SWEEP_BATCH + 2, "{events:?}");

        // For real: the counts are what the report says was done.
        let mut events = Vec::new();
        let rep = c
            .collect_with_progress(&opts(false), &mut |p| events.push(p))
            .await
            .unwrap();
        let e = ends(&events);
        assert_eq!(rep.blobs_deleted, 100);
        assert_eq!(rep.orphan_files_deleted, 3);
        assert_eq!(rep.uploads_expired, 5);
        assert_eq!(e[1].done, rep.blobs_deleted + rep.links_deleted);
        assert_eq!(e[3].done, rep.uploads_expired + rep.orphan_uploads_deleted);
        // Once more: nothing left, every phase still starts and ends.
        let mut events = Vec::new();
        c.collect_with_progress(&opts(false), &mut |p| events.push(p))
            .await
            .unwrap();
        let e = ends(&events);
        assert_eq!((e[0].done, e[1].done, e[2].done, e[3].done), (150, 0, 0, 0));
    }
}
