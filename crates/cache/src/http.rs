//! The cache plugged into the registry: [`CachedSource`] decorates the registry's source of
//! pulls (cached repositories are read from upstreams, read-only, and reached by mirror mode's
//! `ns` parameter or a namespace alias), and [`CacheCapability`] brings the management routes
//! (`/api/v1/cache*`), the cache's metrics and size-limit eviction.

use std::sync::Arc;

use api::cache::{CacheListing, EvictRequest, PinRequest, Pins, UpstreamView, WarmRequest};
use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use oci::{Digest, Reference};
use registry::mgmt::{
    AdminActor, JsonBody, admin_actor, bad, body_json, body_json_or_default, json, query,
};
use registry::{ApiError, Capability, Code, Registry};
use service::Service;
use service::manage::{Change, Done, Privilege};
use service::source::{BlobRead, ContentSource, SourceError};
use store::StoredManifest;

use crate::{BlobAnswer, Cache, EvictReport, UpstreamError};

/// The registry's source of pulls with the cache in front of it: a cached repository's
/// manifests and blobs are brought from the upstream when needed, then read from the inner
/// source; other repositories go straight to the inner source.
pub struct CachedSource {
    cache: Cache,
    inner: Arc<dyn ContentSource>,
}

impl CachedSource {
    /// Decorates `inner` (the service's store source) with `cache` (built over the same stores
    /// and the same per-digest lock table as the service, so its commits and the collector's
    /// deletions exclude each other).
    pub fn new(cache: Cache, inner: Arc<dyn ContentSource>) -> Self {
        CachedSource { cache, inner }
    }
}

/// An upstream failure in the registry's terms.
fn source_error(e: UpstreamError) -> SourceError {
    match e {
        UpstreamError::NotFound => SourceError::NotFound,
        UpstreamError::RateLimited { retry_after } => SourceError::RateLimited { retry_after },
        UpstreamError::Denied { .. } => SourceError::Denied,
        UpstreamError::Busy => SourceError::Busy(e.to_string()),
        UpstreamError::Disabled => SourceError::Disabled,
        UpstreamError::Storage(m) => SourceError::Store(m),
        e => SourceError::Unavailable(e.to_string()),
    }
}

impl ContentSource for CachedSource {
    /// Mirror mode: `/v2/library/alpine/...` with `ns=docker.io` (containerd) and path mode's
    /// `/v2/docker.io/alpine/...` both address `docker.io/library/alpine`. An `ns` naming no
    /// upstream is refused: serving a local repository of the same name would hand out the
    /// wrong image.
    fn resolve(&self, name: &str, ns: Option<&str>) -> Result<Option<String>, SourceError> {
        if let Some(ns) = ns.filter(|n| !n.is_empty()) {
            return match self.cache.mirror_name(ns, name) {
                Some(local) => Ok(Some(local)),
                None => Err(SourceError::NotServed(format!(
                    "{ns} is not an upstream registry of this cache"
                ))),
            };
        }
        Ok(self.cache.canonical_name(name).filter(|c| c != name))
    }

    fn refuses_writes(&self, repo: &str) -> Option<String> {
        let host = self.cache.upstream_of(repo)?;
        Some(format!(
            "{repo} is a read-only pull-through cache of {host}; push to a repository outside \
             {host}/"
        ))
    }

    fn manifest<'a>(
        &'a self,
        repo: &'a str,
        r: &'a Reference,
    ) -> BoxFuture<'a, Result<Option<StoredManifest>, SourceError>> {
        Box::pin(async move {
            if self.cache.is_cached(repo) {
                // Brings the cached copy up to date (or keeps a stale one when the upstream
                // is unavailable); the inner source then reads it.
                self.cache.manifest(repo, r).await.map_err(source_error)?;
            }
            self.inner.manifest(repo, r).await
        })
    }

    fn blob<'a>(
        &'a self,
        repo: &'a str,
        d: &'a Digest,
        head: bool,
    ) -> BoxFuture<'a, Result<Option<BlobRead>, SourceError>> {
        Box::pin(async move {
            let found = self.inner.blob(repo, d, head).await?;
            if found.is_some() || !self.cache.is_cached(repo) {
                return Ok(found);
            }
            match self.cache.blob(repo, d, head).await.map_err(source_error)? {
                // Linked now: read as any stored blob.
                BlobAnswer::Local => self.inner.blob(repo, d, head).await,
                BlobAnswer::Size(size) => Ok(Some(BlobRead::Arriving { size, open: None })),
                BlobAnswer::Incoming(i) => Ok(Some(BlobRead::Arriving {
                    size: i.size,
                    open: Some(Box::new(move |start, end| i.stream(start, end))),
                })),
            }
        })
    }

    /// A cached repository lists the upstream's tags (what can be pulled); what the cache
    /// holds is listed by the inner source when the upstream cannot be asked.
    fn tags<'a>(
        &'a self,
        repo: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, SourceError>> {
        Box::pin(async move {
            if self.cache.is_cached(repo)
                && let Ok(tags) = self.cache.tags(repo).await
            {
                return Ok(Some(tags));
            }
            self.inner.tags(repo).await
        })
    }

    fn served(&self, repo: &str, bytes: u64) {
        if self.cache.is_cached(repo) {
            self.cache.note_hit(bytes);
        }
        self.inner.served(repo, bytes);
    }
}

// ---------------------------------------------------------------------------------------------
// Management API: what the cache holds, pins, warming, eviction.

/// The cache's routes, metrics and eviction, for [`registry::RegistryBuilder::capability`].
pub struct CacheCapability {
    cache: Cache,
    service: Arc<Service>,
}

impl CacheCapability {
    /// The capability of `cache` over `service` (whose pulls and garbage collection eviction
    /// uses).
    pub fn new(cache: Cache, service: Arc<Service>) -> Self {
        CacheCapability { cache, service }
    }

    /// The cache it serves.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Evicts least recently pulled cached images beyond the cache's size limit, then collects
    /// the blobs no longer needed.
    pub async fn evict(
        &self,
        dry_run: bool,
    ) -> Result<(EvictReport, Option<service::gc::GcReport>), ApiError> {
        evict(&self.cache, &self.service, dry_run).await
    }

    /// Enforces the cache's size limit every `every` (when a limit is set).
    pub fn spawn_eviction(&self, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let (cache, service) = (self.cache.clone(), self.service.clone());
        tokio::spawn(async move {
            let every = every.max(std::time::Duration::from_secs(1));
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = evict(&cache, &service, false).await {
                    tracing::warn!(error = %e.message, "cache eviction failed");
                }
            }
        })
    }
}

impl Capability for CacheCapability {
    /// `/api/v1/cache/...` routes (administrators only).
    fn routes(&self) -> axum::Router<Registry> {
        use axum::routing::{get, post};
        axum::Router::new()
            .route("/api/v1/cache", get(list))
            .route("/api/v1/cache/warm", post(warm))
            .route(
                "/api/v1/cache/pins",
                get(list_pins).post(add_pin).delete(remove_pin),
            )
            .route("/api/v1/cache/evict", post(evict_route))
            .layer(Extension(Handles {
                cache: self.cache.clone(),
                service: self.service.clone(),
            }))
    }

    fn register_metrics(&self, prom: &mut prometheus_client::registry::Registry) {
        self.cache.metrics().register(prom);
    }
}

/// The cache's routes on a server without a pull-through cache: `/api/v1/cache*` answers 404
/// saying so, rather than the registry's "no such endpoint" (which reads like a wrong URL).
pub struct NoCache;

/// The message of every `/api/v1/cache*` answer of a server without a cache.
pub const NO_CACHE: &str = "no pull-through cache is configured on this server (add [[cache.upstream]] to its configuration)";

impl Capability for NoCache {
    fn routes(&self) -> axum::Router<Registry> {
        use axum::routing::any;
        async fn absent() -> ApiError {
            ApiError::new(Code::NameUnknown, NO_CACHE)
        }
        axum::Router::new()
            .route("/api/v1/cache", any(absent))
            .route("/api/v1/cache/{*rest}", any(absent))
    }

    fn register_metrics(&self, _prom: &mut prometheus_client::registry::Registry) {}
}

/// What the management handlers reach, beside the registry.
#[derive(Clone)]
struct Handles {
    cache: Cache,
    service: Arc<Service>,
}

async fn evict(
    cache: &Cache,
    service: &Service,
    dry_run: bool,
) -> Result<(EvictReport, Option<service::gc::GcReport>), ApiError> {
    // Pull times reach storage in batches: write the pending ones so the order is current.
    if let Err(e) = service.flush_pulls().await {
        tracing::warn!(error = %e, "flushing pull times before eviction");
    }
    let report = cache.evict(dry_run).await?;
    let gc = if !dry_run && !report.evicted.is_empty() {
        let opts = service.collector().defaults();
        Some(
            service
                .collect_garbage(&opts)
                .await
                .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?,
        )
    } else {
        None
    };
    Ok((report, gc))
}

type MResult = Result<Response, ApiError>;

/// `GET /api/v1/cache`: cached images, least recently pulled first.
async fn list(
    State(reg): State<Registry>,
    Extension(h): Extension<Handles>,
    AdminActor(actor): AdminActor,
) -> MResult {
    let cache = &h.cache;
    let listing = reg
        .service()
        .manage()
        .run(&actor, Privilege::Admin, async {
            let images = cache.images().await?;
            let upstreams = cache
                .config()
                .upstreams
                .iter()
                .map(|u| UpstreamView {
                    host: u.host.clone(),
                    endpoint: u.endpoint(),
                    prefix: u.prefix(),
                    enabled: u.enabled,
                    tag_ttl_seconds: u.tag_ttl_seconds,
                })
                .collect();
            Ok::<_, ApiError>(Done::read(CacheListing {
                max_bytes: cache.config().max_bytes,
                image_bytes: images.iter().map(|i| i.bytes).sum(),
                upstreams,
                images,
            }))
        })
        .await?;
    Ok(json(StatusCode::OK, &listing))
}

/// Checks a warm request before anything is fetched: a reference that is no image of a cached
/// upstream, or a malformed platform, is the caller's mistake.
fn check_warm(cache: &Cache, w: &WarmRequest) -> Result<(), ApiError> {
    if w.images.is_empty() || w.images.len() > 100 {
        return Err(bad("give between 1 and 100 images"));
    }
    for image in &w.images {
        cache.parse_image(image).map_err(bad)?;
    }
    if let Some(p) = &w.platform
        && (p.is_empty() || p.split('/').count() > 3 || p.len() > 64)
    {
        return Err(bad("platform must be os/arch[/variant]"));
    }
    Ok(())
}

/// Warms each image of `w` in turn, as `actor` (authorized and audited as one change), passing
/// progress to `progress`. Upstream failures are reported per image, with the others' results.
async fn warm_images(
    reg: &Registry,
    cache: &Cache,
    actor: &service::manage::Actor,
    w: &WarmRequest,
    progress: &mut (dyn FnMut(crate::WarmProgress<'_>) + Send),
) -> Result<Vec<serde_json::Value>, ApiError> {
    reg.service()
        .manage()
        .run(actor, Privilege::Admin, async {
            check_warm(cache, w)?;
            let mut results = Vec::new();
            for image in &w.images {
                match cache
                    .warm_with_progress(image, w.platform.as_deref(), progress)
                    .await
                {
                    Ok(r) => results.push(serde_json::to_value(&r).unwrap_or_default()),
                    Err(e) => results.push(serde_json::json!({"image": image, "error": e})),
                }
            }
            Ok(Done::changed(
                results,
                Change::new("cache.warm", w.images.join(",")),
            ))
        })
        .await
}

/// How often a streamed warm-up reports progress at most (the last bytes of each blob are
/// always reported).
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// `POST /api/v1/cache/warm`: fetches images into the cache now. The answer is a JSON array,
/// one result per image; with `Accept: application/x-ndjson` it is streamed instead, one JSON
/// object a line: `{"image","blob","done","total"}` progress lines (bytes of the image's blobs
/// done, never decreasing: at each new blob, at most every 100 ms within one, and at the end),
/// then
/// `{"result": [...]}` (the same array), or `{"errors": [...]}` when the warm-up failed after
/// the answer began. A refused request (not an administrator, a bad image) is refused before
/// streaming, as without the header.
async fn warm(
    State(reg): State<Registry>,
    Extension(h): Extension<Handles>,
    req: Request,
) -> MResult {
    let (parts, body) = req.into_parts();
    let actor = admin_actor(&reg, &parts).await?;
    let w: WarmRequest = body_json(body).await?;
    if !registry::wants_ndjson(&parts) {
        let results = warm_images(&reg, &h.cache, &actor, &w, &mut |_| {}).await?;
        return Ok(json(StatusCode::OK, &results));
    }
    // Refusals first, as a plain error answer: authorize (nothing runs, nothing is audited)
    // and check the request.
    reg.service()
        .manage()
        .run(&actor, Privilege::Admin, async {
            Ok::<_, ApiError>(Done::read(()))
        })
        .await?;
    check_warm(&h.cache, &w)?;
    // Progress lines may be dropped when the client reads slowly (the channel is bounded);
    // the result line never is. A client that goes away does not stop the warm-up.
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
    tokio::spawn(async move {
        let mut last: Option<(std::time::Instant, Digest)> = None;
        let mut report = |p: crate::WarmProgress<'_>| {
            let due = match &last {
                None => true,
                Some((at, blob)) => {
                    blob != p.blob || p.done == p.total || at.elapsed() >= PROGRESS_EVERY
                }
            };
            if due {
                last = Some((std::time::Instant::now(), p.blob.clone()));
                if let Ok(mut line) = serde_json::to_vec(&p) {
                    line.push(b'\n');
                    let _ = tx.try_send(line.into());
                }
            }
        };
        let end = match warm_images(&reg, &h.cache, &actor, &w, &mut report).await {
            Ok(results) => serde_json::json!({ "result": results }),
            Err(e) => serde_json::json!({
                "errors": [{"code": e.code.as_str(), "message": e.message, "detail": null}]
            }),
        };
        let mut line = end.to_string().into_bytes();
        line.push(b'\n');
        let _ = tx.send(line.into()).await;
    });
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    Ok((
        StatusCode::OK,
        [
            (axum::http::header::CONTENT_TYPE, api::NDJSON),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        axum::body::Body::from_stream(lines),
    )
        .into_response())
}

/// `GET /api/v1/cache/pins`: configured and run-time pins.
async fn list_pins(
    State(reg): State<Registry>,
    Extension(h): Extension<Handles>,
    AdminActor(actor): AdminActor,
) -> MResult {
    let pins = reg
        .service()
        .manage()
        .run(&actor, Privilege::Admin, async {
            Ok::<_, ApiError>(Done::read(Pins {
                configured: h.cache.config().pinned.clone(),
                runtime: h.cache.runtime_pins().await?,
            }))
        })
        .await?;
    Ok(json(StatusCode::OK, &pins))
}

/// `POST /api/v1/cache/pins`: keeps matching images whatever the size limit.
async fn add_pin(
    State(reg): State<Registry>,
    Extension(h): Extension<Handles>,
    AdminActor(actor): AdminActor,
    JsonBody(p): JsonBody<PinRequest>,
) -> MResult {
    let pinned = reg
        .service()
        .manage()
        .run(&actor, Privilege::Admin, async {
            if p.image.is_empty() || p.image.len() > 512 || p.image.contains(['\0', ' ']) {
                return Err(bad("image pattern is empty, too long or has spaces"));
            }
            h.cache.pin(&p.image).await.map_err(bad)?;
            let change = Change::new("cache.pin", "").target(p.image.clone());
            Ok(Done::changed(
                PinRequest {
                    image: p.image.clone(),
                },
                change,
            ))
        })
        .await?;
    Ok(json(StatusCode::CREATED, &pinned))
}

/// `DELETE /api/v1/cache/pins?image=...`: removes a run-time pin.
async fn remove_pin(
    State(reg): State<Registry>,
    Extension(h): Extension<Handles>,
    AdminActor(actor): AdminActor,
    q: Result<Query<PinRequest>, QueryRejection>,
) -> MResult {
    let p = query(q)?;
    reg.service()
        .manage()
        .run(&actor, Privilege::Admin, async {
            if !h.cache.unpin(&p.image).await? {
                return Err(ApiError::new(
                    Code::NameUnknown,
                    format!("no run-time pin {}", p.image),
                ));
            }
            Ok(Done::changed(
                (),
                Change::new("cache.unpin", "").target(p.image.clone()),
            ))
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/cache/evict {dry_run?}`: enforces the size limit now (an empty body: not dry).
async fn evict_route(
    State(reg): State<Registry>,
    Extension(h): Extension<Handles>,
    AdminActor(actor): AdminActor,
    body: axum::body::Body,
) -> MResult {
    let e: EvictRequest = body_json_or_default(body).await?;
    let (report, gc) = reg
        .service()
        .manage()
        .run(&actor, Privilege::Admin, async {
            let (report, gc) = evict(&h.cache, &h.service, e.dry_run).await?;
            let detail = format!(
                "dry_run: {}, images evicted: {}, bytes released: {}",
                report.dry_run,
                report.evicted.len(),
                report.bytes_released
            );
            Ok::<_, ApiError>(Done::changed(
                (report, gc),
                Change::new("cache.evict", detail),
            ))
        })
        .await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"eviction": report, "gc": gc}),
    ))
}
