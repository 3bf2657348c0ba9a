//! Wharf's pull-through cache: public registries (Docker Hub, ghcr.io, quay.io, ...) served
//! through Wharf, from local storage once fetched.
//!
//! Cached content lives in ordinary local repositories named `<upstream prefix>/<repository>`
//! (`docker.io/library/alpine`), so the registry serves hits through its normal read path and
//! access rules apply to them as to any repository. This crate decides when to ask the upstream
//! (manifests by digest once, tags again after their time-to-live), shares one upstream fetch
//! among all the clients that want the same thing, streams blobs to clients while they are
//! written and verified, and falls back to the cached copy when the upstream is down or rate
//! limiting. It plugs into the registry through the seams the core defines (`http.rs`): a
//! decorator of the registry's source of pulls, and a capability bringing its management routes
//! and metrics. The registry never imports it.

mod config;
mod error;
mod fill;
pub mod http;
mod inventory;
mod metrics;
pub mod nodeconfig;
mod upstream;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, Shared};
use futures_util::{FutureExt, StreamExt};
use oci::{Descriptor, Digest, Manifest, Reference};
use reqwest::Method;
use store::{BlobStore, BlobStream, DigestLocks, ManifestRecord, MetaStore};

pub use config::{CacheConfig, DOCKER_HUB, UpstreamConfig, validate};
pub use error::UpstreamError;
pub use http::{CacheCapability, CachedSource};
pub use inventory::{CachedImage, EvictReport};
pub use metrics::CacheMetrics;

use client::MANIFEST_ACCEPT;
use fill::{FillHandle, FillJob, Progress, Stage};
use upstream::{Upstream, read_limited};

/// Tag freshness records kept; beyond it they are forgotten (each costs one HEAD to relearn).
const MAX_CHECKED_TAGS: usize = 100_000;
/// Most tags read from an upstream's tag list, and pages followed.
const MAX_TAGS: usize = 100_000;
const MAX_TAG_PAGES: usize = 100;
/// Blob transfers from upstreams running at once; more requests for uncached blobs get 503.
const MAX_FILLS: usize = 64;
/// Who cached content is recorded as having pushed, in tag history.
const ACTOR: &str = "pull-through-cache";

/// How a manifest lookup was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// From the cache, within its time-to-live (or by digest, which never changes).
    Hit,
    /// From the cache, after the upstream confirmed it is current.
    Revalidated,
    /// Fetched from the upstream now.
    Miss,
    /// From the cache although it could not be checked: the upstream is unavailable.
    Stale,
}

/// How to answer a blob request in a cached repository.
pub enum BlobAnswer {
    /// The blob is stored and linked in the repository: serve it as any local blob.
    Local,
    /// A HEAD answered from the upstream without fetching: the blob's size.
    Size(u64),
    /// The blob is arriving; [`Incoming::stream`] yields it as it comes.
    Incoming(Incoming),
}

/// A blob on its way from the upstream.
pub struct Incoming {
    blobs: Arc<dyn BlobStore>,
    fill: FillHandle,
    /// Its size.
    pub size: u64,
}

impl Incoming {
    /// Bytes `start..end` of the blob, delivered as they arrive. The stream fails (and the client
    /// sees a short response) if the transfer breaks or the content does not match its digest.
    pub fn stream(self, start: u64, end: u64) -> BlobStream {
        fill::follow(self.blobs, self.fill, self.size, start, end)
    }
}

/// What [`Cache::warm`] did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct WarmReport {
    /// The image as given.
    pub image: String,
    /// The cached repository it went into.
    pub repo: String,
    /// Its (top) manifest digest.
    pub digest: String,
    /// Manifests now cached for it.
    pub manifests: usize,
    /// Blobs it needs.
    pub blobs: usize,
    /// Bytes fetched from the upstream now (0 when everything was cached already).
    pub bytes_fetched: u64,
}

/// Where a warm-up stands, as [`Cache::warm_with_progress`] reports it: the bytes of the
/// image's blobs done so far (fetched now, or found cached) out of all of them.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WarmProgress<'a> {
    /// The image as given.
    pub image: &'a str,
    /// The blob being fetched (or just found cached).
    pub blob: &'a Digest,
    /// Bytes of the image's blobs done: never decreases.
    pub done: u64,
    /// Bytes of all the image's blobs, from its manifests (corrected when an upstream's blob
    /// is not the size its manifest says).
    pub total: u64,
}

/// Whether an index entry is for `platform` (`os/arch[/variant]`), or any when `None`.
fn platform_matches(d: &Descriptor, platform: Option<&str>) -> bool {
    let Some(want) = platform else {
        return true;
    };
    let Some(p) = &d.platform else {
        return false;
    };
    let field = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("");
    let mut parts = want.split('/');
    let (os, arch, variant) = (parts.next(), parts.next(), parts.next());
    os == Some(field("os"))
        && arch.is_none_or(|a| a == field("architecture"))
        && variant.is_none_or(|v| v == field("variant"))
}

/// A cached repository resolved to its upstream.
struct Target {
    upstream: Arc<Upstream>,
    /// The repository's name upstream.
    remote: String,
}

type Flight = Shared<BoxFuture<'static, Result<Freshness, UpstreamError>>>;

struct Inner {
    upstreams: Vec<Arc<Upstream>>,
    blobs: Arc<dyn BlobStore>,
    meta: Arc<dyn MetaStore>,
    metrics: Arc<CacheMetrics>,
    /// When each cached tag was last confirmed upstream: `repo\0tag`.
    checked: Mutex<HashMap<String, Instant>>,
    /// Manifest fetches in flight, by `repo@reference`, with an id so a finished fetch removes
    /// its own entry and not a newer one.
    flights: Mutex<HashMap<String, (u64, Flight)>>,
    next_flight: AtomicU64,
    /// Bounds the blob transfers running at once.
    fill_slots: Arc<tokio::sync::Semaphore>,
    /// Blob fills in flight, by cached repository and digest. An async lock: the check "in
    /// flight already?" and the start of a fill happen under it, so one blob is never fetched
    /// twice at once for a repository. A fill is joined only by requests for the repository it
    /// was started for: its bytes are that repository's upstream's, and a request for another
    /// repository (another upstream, other access rules) must prove its own upstream has them.
    fills: tokio::sync::Mutex<HashMap<(String, Digest), FillHandle>>,
    config: CacheConfig,
    /// The store's per-digest locks: fetched blobs are committed and linked under them, which
    /// serialises that with garbage collection (the collector re-checks and deletes under them).
    locks: Arc<DigestLocks>,
}

/// The pull-through cache. Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl Cache {
    /// A cache of the configured upstreams over the registry's stores, committing and linking
    /// blobs under `locks` (the per-digest locks the registry's collector uses on these stores).
    pub fn new(
        config: CacheConfig,
        blobs: Arc<dyn BlobStore>,
        meta: Arc<dyn MetaStore>,
        locks: Arc<DigestLocks>,
    ) -> Result<Self, String> {
        validate(&config)?;
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| Upstream::new(u.clone()).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Cache {
            inner: Arc::new(Inner {
                upstreams,
                blobs,
                meta,
                metrics: Arc::new(CacheMetrics::default()),
                checked: Mutex::new(HashMap::new()),
                flights: Mutex::new(HashMap::new()),
                next_flight: AtomicU64::new(0),
                fill_slots: Arc::new(tokio::sync::Semaphore::new(MAX_FILLS)),
                fills: tokio::sync::Mutex::new(HashMap::new()),
                config,
                locks,
            }),
        })
    }

    /// The cache's metrics, to register with the server's.
    pub fn metrics(&self) -> &CacheMetrics {
        &self.inner.metrics
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// Mirror mode (containerd's `ns` query parameter): the local repository that caches
    /// `name` of the upstream `ns`, or `None` when `ns` is not a configured upstream.
    pub fn mirror_name(&self, ns: &str, name: &str) -> Option<String> {
        let host = config::canonical_host(ns);
        let up = self
            .inner
            .upstreams
            .iter()
            .find(|u| config::canonical_host(&u.cfg.host) == host)?;
        Some(format!("{}/{}", up.prefix, up.normalize(name)))
    }

    /// Path mode (`/v2/docker.io/alpine/...`): when `name` is in a cached namespace, its
    /// canonical local name (`docker.io/library/alpine`); `None` for local repositories.
    pub fn canonical_name(&self, name: &str) -> Option<String> {
        let t = self.target(name)?;
        Some(format!("{}/{}", t.upstream.prefix, t.remote))
    }

    /// Whether `name` is a cached repository (read-only to clients).
    pub fn is_cached(&self, name: &str) -> bool {
        self.target(name).is_some()
    }

    /// The upstream host that repository `name` caches, if it is a cached repository.
    pub fn upstream_of(&self, name: &str) -> Option<&str> {
        let (prefix, _) = name.split_once('/')?;
        self.inner
            .upstreams
            .iter()
            .find(|u| u.prefix == prefix)
            .map(|u| u.cfg.host.as_str())
    }

    fn target(&self, name: &str) -> Option<Target> {
        let (prefix, rest) = name.split_once('/')?;
        let up = self.inner.upstreams.iter().find(|u| u.prefix == prefix)?;
        Some(Target {
            remote: up.normalize(rest),
            upstream: up.clone(),
        })
    }

    fn enabled_target(&self, name: &str) -> Result<Target, UpstreamError> {
        let t = self.target(name).ok_or(UpstreamError::NotFound)?;
        if !t.upstream.cfg.enabled {
            return Err(UpstreamError::Disabled);
        }
        Ok(t)
    }

    /// Makes sure the cached repository `name` holds a current copy of manifest `r`, fetching
    /// it when needed; the caller then serves it from the metadata store. Errors only when
    /// there is no copy to serve.
    pub async fn manifest(&self, name: &str, r: &Reference) -> Result<Freshness, UpstreamError> {
        let t = self.enabled_target(name)?;
        let local = self.inner.meta.get_manifest(name, r).await?;
        let key = match r {
            Reference::Digest(d) => {
                if local.is_some() {
                    self.inner.metrics.lookup("manifest", "hit");
                    return Ok(Freshness::Hit);
                }
                format!("{name}@{d}")
            }
            Reference::Tag(tag) => {
                if local.is_some() && self.fresh(name, tag, t.upstream.tag_ttl()) {
                    self.inner.metrics.lookup("manifest", "hit");
                    return Ok(Freshness::Hit);
                }
                format!("{name}:{tag}")
            }
        };
        if local.is_some() && t.upstream.is_down() {
            let e = UpstreamError::Unreachable("it failed moments ago".into());
            return Ok(self.stale(&t, name, r, &e));
        }
        let known = local.map(|m| m.digest);
        let inner = self.inner.clone();
        let (name2, r2, up) = (name.to_owned(), r.clone(), t.upstream.clone());
        let remote = t.remote.clone();
        let result = self
            .flight(key, move || {
                async move { inner.fetch_manifest(up, name2, remote, r2, known).await }.boxed()
            })
            .await;
        match result {
            Ok(f) => {
                let label = if f == Freshness::Revalidated {
                    "revalidated"
                } else {
                    "miss"
                };
                self.inner.metrics.lookup("manifest", label);
                Ok(f)
            }
            Err(e) => {
                let have = self.inner.meta.get_manifest(name, r).await?.is_some();
                if have && e.serve_stale() {
                    return Ok(self.stale(&t, name, r, &e));
                }
                self.inner.metrics.lookup("manifest", "error");
                Err(e)
            }
        }
    }

    /// Counts and logs serving a cached manifest that could not be checked.
    fn stale(&self, t: &Target, name: &str, r: &Reference, e: &UpstreamError) -> Freshness {
        let host = t.upstream.cfg.host.clone();
        tracing::warn!(
            upstream = %host, repo = name, reference = %ref_str(r), error = %e,
            "upstream unavailable: serving the cached manifest"
        );
        self.inner
            .metrics
            .served_stale
            .get_or_create(&metrics::UpstreamLabels { upstream: host })
            .inc();
        self.inner.metrics.lookup("manifest", "stale");
        Freshness::Stale
    }

    /// The upstream's tags of the cached repository `name` (following `Link` pages, at most
    /// [`MAX_TAGS`]). Errors when the upstream cannot be asked; the caller then lists what the
    /// cache holds.
    pub async fn tags(&self, name: &str) -> Result<Vec<String>, UpstreamError> {
        let t = self.enabled_target(name)?;
        if t.upstream.is_down() {
            return Err(UpstreamError::Unreachable("it failed moments ago".into()));
        }
        let mut tags = Vec::new();
        let mut suffix = "tags/list".to_owned();
        for _ in 0..MAX_TAG_PAGES {
            let r = t
                .upstream
                .request(Method::GET, &t.remote, &suffix, None)
                .await;
            t.upstream.note(r.as_ref().err());
            let resp =
                r.inspect_err(|e| self.inner.metrics.upstream_error(&t.upstream.cfg.host, e))?;
            let next = resp
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link)
                .map(str::to_owned);
            let body = read_limited(resp, 4 * 1024 * 1024).await?;
            #[derive(serde::Deserialize)]
            struct TagList {
                tags: Option<Vec<String>>,
            }
            let list: TagList = serde_json::from_slice(&body)
                .map_err(|e| UpstreamError::Invalid(format!("tag list: {e}")))?;
            tags.extend(
                list.tags
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|t| oci::validate_tag(t).is_ok()),
            );
            // The next page's query, kept on the upstream's repository path.
            match next.and_then(|n| n.split_once('?').map(|(_, q)| q.to_owned())) {
                Some(q) if tags.len() < MAX_TAGS => suffix = format!("tags/list?{q}"),
                _ => break,
            }
        }
        tags.truncate(MAX_TAGS);
        Ok(tags)
    }

    /// Answers a blob request in the cached repository `name` whose blob is not linked there.
    pub async fn blob(
        &self,
        name: &str,
        digest: &Digest,
        head: bool,
    ) -> Result<BlobAnswer, UpstreamError> {
        let t = self.enabled_target(name)?;
        let inner = &self.inner;
        if inner.blobs.size(digest).await?.is_some() && self.listed(name, digest).await? {
            // Stored already (pushed, or cached for another repository) and a manifest cached
            // here lists it: link it, under the per-digest lock so it cannot go in between.
            let _held = self.inner.locks.hold(digest).await;
            if let Some(size) = inner.blobs.size(digest).await? {
                inner.meta.link_blob(name, digest, size).await?;
                // Counted as a hit (with its bytes) when the registry serves it from the
                // store: see `CachedSource::served`.
                return Ok(BlobAnswer::Local);
            }
        }
        // Otherwise the upstream must serve the whole blob, verified, before it is linked here
        // (the fill's commit keeps the stored file when there is one). What the store holds is
        // never an answer: not even a HEAD's size, which the upstream gives instead.
        let key = (name.to_owned(), digest.clone());
        let mut fills = inner.fills.lock().await;
        let handle = match fills.get(&key) {
            Some(h) => h.clone(),
            None if head => {
                drop(fills);
                return self.head_blob(&t, digest).await.map(BlobAnswer::Size);
            }
            None => {
                let Ok(permit) = inner.fill_slots.clone().try_acquire_owned() else {
                    inner.metrics.lookup("blob", "error");
                    return Err(UpstreamError::Busy);
                };
                let handle = self.start_fill(&t, name, digest, permit);
                fills.insert(key, handle.clone());
                handle
            }
        };
        drop(fills);
        let mut h = handle;
        let size = match h.started().await {
            Ok(s) => s,
            Err(e) => {
                inner.metrics.lookup("blob", "error");
                return Err(e);
            }
        };
        inner.metrics.lookup("blob", "miss");
        if head {
            return Ok(BlobAnswer::Size(size));
        }
        Ok(BlobAnswer::Incoming(Incoming {
            blobs: inner.blobs.clone(),
            fill: h,
            size,
        }))
    }

    /// Whether a manifest cached in the repository `name` lists `digest` as its config or a
    /// layer: then a blob stored for another repository may be linked here without fetching it.
    /// Nothing weaker counts: an upstream's HEAD can be wrong (or lie), and a digest alone would
    /// hand out any stored blob, pushed private layers included, to whoever can pull from a
    /// cache. (Index children are manifests, fetched through [`Cache::manifest`].)
    async fn listed(&self, name: &str, digest: &Digest) -> Result<bool, UpstreamError> {
        Ok(self.inner.meta.manifest_lists_blob(name, digest).await?)
    }

    /// Resolves an image reference in the cache's terms (`docker.io/library/alpine:3.20`,
    /// `docker.io/alpine`, `localhost:5001/team/app@sha256:...`): the local repository and the
    /// reference (`latest` when none is given).
    pub fn parse_image(&self, image: &str) -> Result<(String, Reference), String> {
        let parsed = oci::ImageRef::parse(image).map_err(|e| format!("{image}: {e}"))?;
        let r = match parsed.digest() {
            Some(d) => Reference::Digest(d.clone()),
            None => Reference::Tag(parsed.effective_tag().to_owned()),
        };
        // A local cached name whose first component is a cache prefix (`localhost-5001/team/app`,
        // which Docker's rule reads as a Docker Hub path), else an upstream's host
        // (`docker.io/alpine`, `localhost:5001/team/app`).
        let by_prefix = || {
            (parsed.registry() == config::DOCKER_HUB)
                .then(|| self.canonical_name(parsed.repository()))
                .flatten()
        };
        let local = by_prefix()
            .or_else(|| self.mirror_name(parsed.registry(), parsed.repository()))
            .ok_or_else(|| format!("{image} is not from an upstream registry of this cache"))?;
        oci::validate_repository(&local).map_err(|e| format!("{image}: {e}"))?;
        Ok((local, r))
    }

    /// Fetches an image into the cache ahead of its first pull: the manifest, and for an index
    /// the platform manifests matching `platform` (`os/arch[/variant]`; all when `None`), and
    /// every blob they need.
    pub async fn warm(&self, image: &str, platform: Option<&str>) -> Result<WarmReport, String> {
        self.warm_with_progress(image, platform, &mut |_| {}).await
    }

    /// [`Cache::warm`], calling `progress` as bytes arrive (after every chunk of a fetched
    /// blob, and for every blob found cached): for a progress bar. It must be cheap; a caller
    /// that forwards it somewhere throttles it itself.
    pub async fn warm_with_progress(
        &self,
        image: &str,
        platform: Option<&str>,
        progress: &mut (dyn FnMut(WarmProgress<'_>) + Send),
    ) -> Result<WarmReport, String> {
        let (name, r) = self.parse_image(image)?;
        let fail = |e: UpstreamError| format!("{image}: {e}");
        self.manifest(&name, &r).await.map_err(fail)?;
        let meta = &self.inner.meta;
        let top = meta
            .get_manifest(&name, &r)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{image}: manifest vanished while warming"))?;
        let parsed = Manifest::parse(Some(&top.media_type), &top.body)
            .map_err(|e| format!("{image}: {e}"))?;
        let mut images = Vec::new();
        let is_index = !parsed.manifests.is_empty();
        if !is_index {
            images.push(parsed);
        } else {
            for child in parsed
                .manifests
                .iter()
                .filter(|c| platform_matches(c, platform))
            {
                let cr = Reference::Digest(child.digest.clone());
                self.manifest(&name, &cr).await.map_err(fail)?;
                let m = meta
                    .get_manifest(&name, &cr)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("{image}: manifest {} vanished", child.digest))?;
                images.push(
                    Manifest::parse(Some(&m.media_type), &m.body)
                        .map_err(|e| format!("{image}: {e}"))?,
                );
            }
        }
        let mut report = WarmReport {
            image: image.to_owned(),
            repo: name.clone(),
            digest: top.digest.to_string(),
            manifests: if is_index { 1 + images.len() } else { 1 },
            ..Default::default()
        };
        let mut seen = HashSet::new();
        let blobs: Vec<&Descriptor> = images
            .iter()
            .flat_map(|m| m.required_blobs())
            .filter(|b| seen.insert(b.digest.clone()))
            .collect();
        let declared = |b: &Descriptor| u64::try_from(b.size).unwrap_or(0);
        let mut total: u64 = blobs.iter().map(|b| declared(b)).sum();
        let mut done = 0u64;
        for b in blobs {
            report.blobs += 1;
            let mut blob_done = declared(b);
            if meta
                .blob_linked(&name, &b.digest)
                .await
                .map_err(|e| e.to_string())?
                .is_none()
                && let BlobAnswer::Incoming(i) =
                    self.blob(&name, &b.digest, false).await.map_err(fail)?
            {
                let size = i.size;
                // The bytes that arrive are what counts: correct the total by what the
                // manifest said.
                total = total.saturating_sub(declared(b)).saturating_add(size);
                blob_done = size;
                let start = done;
                let mut s = i.stream(0, size);
                while let Some(chunk) = s.next().await {
                    let chunk = chunk.map_err(|e| format!("{image}: blob {}: {e}", b.digest))?;
                    done = (done + chunk.len() as u64).min(start + size);
                    progress(WarmProgress {
                        image,
                        blob: &b.digest,
                        done,
                        total,
                    });
                }
                report.bytes_fetched += size;
                done = start;
            }
            done += blob_done;
            progress(WarmProgress {
                image,
                blob: &b.digest,
                done,
                total,
            });
        }
        Ok(report)
    }

    /// Counts a blob served from the cache's storage (`bytes` sent; 0 for a HEAD).
    pub fn note_hit(&self, bytes: u64) {
        self.inner.metrics.lookup("blob", "hit");
        self.inner.metrics.bytes_saved.inc_by(bytes);
    }

    async fn head_blob(&self, t: &Target, digest: &Digest) -> Result<u64, UpstreamError> {
        let r = t
            .upstream
            .request(Method::HEAD, &t.remote, &format!("blobs/{digest}"), None)
            .await;
        let resp = r.inspect_err(|e| self.inner.metrics.upstream_error(&t.upstream.cfg.host, e))?;
        // The header itself: the response to a HEAD has no body, so its size hint is 0.
        resp.headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| UpstreamError::Invalid("blob HEAD without a Content-Length".into()))
    }

    /// Starts the upstream transfer of a blob in its own task.
    fn start_fill(
        &self,
        t: &Target,
        name: &str,
        digest: &Digest,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> FillHandle {
        let id = format!("cache-{}", uuid::Uuid::new_v4().simple());
        let (tx, rx) = tokio::sync::watch::channel(Progress {
            stage: Stage::Connecting,
            received: 0,
            verified: false,
        });
        let job = FillJob {
            blobs: self.inner.blobs.clone(),
            meta: self.inner.meta.clone(),
            upstream: t.upstream.clone(),
            metrics: self.inner.metrics.clone(),
            local_repo: name.to_owned(),
            remote_repo: t.remote.clone(),
            digest: digest.clone(),
            id: id.clone(),
            locks: self.inner.locks.clone(),
        };
        let inner = self.inner.clone();
        let key = (name.to_owned(), digest.clone());
        let fill_id = id.clone();
        tokio::spawn(async move {
            // Even if the transfer panicked, the fill is forgotten below (its readers end with
            // an error when the sender drops), so the digest is not stuck.
            let _ = std::panic::AssertUnwindSafe(job.run(tx))
                .catch_unwind()
                .await;
            drop(permit);
            // Forget the fill once it is linked (or failed): later requests read the stored blob
            // (or start again).
            let mut fills = inner.fills.lock().await;
            if fills.get(&key).is_some_and(|h| h.id == fill_id) {
                fills.remove(&key);
            }
        });
        FillHandle {
            id,
            digest: digest.clone(),
            rx,
        }
    }

    /// Runs `make`'s future once for every concurrent caller with the same key, in its own
    /// task so a caller going away does not cancel it for the others.
    async fn flight(
        &self,
        key: String,
        make: impl FnOnce() -> BoxFuture<'static, Result<Freshness, UpstreamError>>,
    ) -> Result<Freshness, UpstreamError> {
        let (id, f) = {
            let mut flights = self.inner.flights.lock().unwrap_or_else(|e| e.into_inner());
            match flights.get(&key) {
                Some(entry) => entry.clone(),
                None => {
                    let id = self.inner.next_flight.fetch_add(1, Ordering::Relaxed);
                    let (inner, k, fut) = (self.inner.clone(), key.clone(), make());
                    // The task forgets its entry when done, whether or not anyone still waits.
                    let task = tokio::spawn(async move {
                        let r = fut.await;
                        inner.forget_flight(&k, id);
                        r
                    });
                    let shared = async move {
                        task.await.unwrap_or_else(|e| {
                            Err(UpstreamError::Storage(format!("cache task failed: {e}")))
                        })
                    }
                    .boxed()
                    .shared();
                    flights.insert(key.clone(), (id, shared.clone()));
                    (id, shared)
                }
            }
        };
        let r = f.await;
        // A task that panicked did not forget its entry.
        self.inner.forget_flight(&key, id);
        r
    }

    fn fresh(&self, name: &str, tag: &str, ttl: Duration) -> bool {
        let checked = self.inner.checked.lock().unwrap_or_else(|e| e.into_inner());
        checked
            .get(&format!("{name}\0{tag}"))
            .is_some_and(|t| t.elapsed() < ttl)
    }
}

impl Inner {
    fn forget_flight(&self, key: &str, id: u64) {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights.get(key).is_some_and(|(i, _)| *i == id) {
            flights.remove(key);
        }
    }

    fn mark_checked(&self, name: &str, tag: &str) {
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        if checked.len() >= MAX_CHECKED_TAGS {
            checked.clear();
        }
        checked.insert(format!("{name}\0{tag}"), Instant::now());
    }

    /// Asks the upstream for manifest `r` and stores it; `known` is the digest cached for a tag.
    async fn fetch_manifest(
        self: Arc<Self>,
        up: Arc<Upstream>,
        name: String,
        remote: String,
        r: Reference,
        known: Option<Digest>,
    ) -> Result<Freshness, UpstreamError> {
        let result = self
            .fetch_manifest_inner(&up, &name, &remote, &r, known)
            .await;
        up.note(result.as_ref().err());
        if let Err(e) = &result {
            self.metrics.upstream_error(&up.cfg.host, e);
        }
        result
    }

    async fn fetch_manifest_inner(
        &self,
        up: &Upstream,
        name: &str,
        remote: &str,
        r: &Reference,
        known: Option<Digest>,
    ) -> Result<Freshness, UpstreamError> {
        let reference = ref_str(r);
        if let (Reference::Tag(tag), Some(known)) = (r, &known) {
            // A HEAD costs nothing against Docker Hub's pull rate limit.
            let resp = up
                .request(
                    Method::HEAD,
                    remote,
                    &format!("manifests/{reference}"),
                    Some(MANIFEST_ACCEPT),
                )
                .await?;
            if header_digest(&resp).as_ref() == Some(known) {
                self.mark_checked(name, tag);
                return Ok(Freshness::Revalidated);
            }
        }
        let resp = up
            .request(
                Method::GET,
                remote,
                &format!("manifests/{reference}"),
                Some(MANIFEST_ACCEPT),
            )
            .await?;
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let claimed = header_digest(&resp);
        let body = read_limited(resp, oci::manifest::MAX_MANIFEST_BYTES).await?;
        let digest = match (r, claimed) {
            (Reference::Digest(d), _) => d.clone(),
            (Reference::Tag(_), Some(c)) => c,
            (Reference::Tag(_), None) => Digest::sha256(&body),
        };
        if Digest::of(digest.algorithm(), &body) != digest {
            return Err(UpstreamError::DigestMismatch);
        }
        let m = Manifest::parse(content_type.as_deref(), &body)
            .map_err(|e| UpstreamError::Invalid(format!("manifest {digest}: {e}")))?;
        let record = ManifestRecord::from_manifest(digest.clone(), body.into(), &m, ACTOR);
        let tags = match r {
            Reference::Tag(t) => vec![t.clone()],
            Reference::Digest(_) => Vec::new(),
        };
        self.meta.put_cached_manifest(name, record, tags).await?;
        if let Reference::Tag(t) = r {
            self.mark_checked(name, t);
        }
        tracing::info!(upstream = %up.cfg.host, repo = name, reference, %digest, "manifest cached");
        Ok(Freshness::Miss)
    }
}

/// The `Docker-Content-Digest` header, when present and well formed.
fn header_digest(resp: &reqwest::Response) -> Option<Digest> {
    resp.headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Digest::parse(v.trim()).ok())
}

/// A reference as it appears in a URL: the tag or the digest.
fn ref_str(r: &Reference) -> String {
    match r {
        Reference::Tag(t) => t.clone(),
        Reference::Digest(d) => d.to_string(),
    }
}

/// The target of a `Link: <...>; rel="next"` header.
fn next_link(header: &str) -> Option<&str> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .contains("rel=\"next\"")
            .then(|| target.trim().trim_start_matches('<').trim_end_matches('>'))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn next_links() {
        assert_eq!(
            super::next_link("</v2/a/tags/list?n=2&last=b>; rel=\"next\""),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(super::next_link("</x>; rel=\"prev\""), None);
    }
}
