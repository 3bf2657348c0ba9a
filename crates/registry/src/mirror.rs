//! The HTTP side of the pull-through cache: which requests go to a cached repository (mirror
//! mode's `ns` parameter, path mode's host prefix), refusing writes there, and turning the
//! cache's answers and upstream failures into distribution-spec responses.

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cache::{BlobAnswer, Cache, UpstreamError};
use oci::{Digest, Reference};

use crate::Registry;
use crate::error::{ApiError, ApiResult, Code};

/// Rewrites a `/v2/` path to the cached repository it addresses: `/v2/library/alpine/...` with
/// `ns=docker.io` (containerd's mirror mode) and `/v2/docker.io/alpine/...` (path mode) both
/// become `/v2/docker.io/library/alpine/...`. `Err` for an `ns` that names no upstream: serving
/// a local repository of the same name instead would hand out the wrong image.
pub(crate) fn rewrite(
    cache: &Cache,
    path: &str,
    name: Option<&str>,
    ns: Option<&str>,
) -> ApiResult<Option<String>> {
    let Some(name) = name else {
        return Ok(None);
    };
    // The route's name is a slice of `path` right after "/v2/".
    let suffix = &path["/v2/".len() + name.len()..];
    if let Some(ns) = ns.filter(|n| !n.is_empty()) {
        return match cache.mirror_name(ns, name) {
            Some(local) => Ok(Some(format!("/v2/{local}{suffix}"))),
            None => Err(ApiError::new(
                Code::NameUnknown,
                format!("{ns} is not an upstream registry of this cache"),
            )),
        };
    }
    Ok(cache
        .canonical_name(name)
        .filter(|c| c != name)
        .map(|c| format!("/v2/{c}{suffix}")))
}

/// Refuses writes into a cached repository.
pub(crate) fn refuse_write(reg: &Registry, name: &str) -> ApiResult<()> {
    match reg.inner.cache.as_ref().and_then(|c| c.upstream_of(name)) {
        Some(host) => Err(ApiError::new(
            Code::Denied,
            format!(
                "{name} is a read-only pull-through cache of {host}; push to a repository \
                 outside {host}/"
            ),
        )),
        None => Ok(()),
    }
}

/// The cache when `name` is one of its repositories.
pub(crate) fn cache_for<'a>(reg: &'a Registry, name: &str) -> Option<&'a Cache> {
    reg.inner.cache.as_ref().filter(|c| c.is_cached(name))
}

/// Brings a cached manifest up to date before the registry serves it.
pub(crate) async fn ensure_manifest(cache: &Cache, name: &str, r: &Reference) -> ApiResult<()> {
    cache
        .manifest(name, r)
        .await
        .map(drop)
        .map_err(|e| upstream_error(e, Code::ManifestUnknown, "manifest"))
}

/// Answers a GET or HEAD of a blob not linked in the cached repository `name`; `None` when
/// the cache linked it and the registry's own blob path should serve it.
pub(crate) async fn blob(
    reg: &Registry,
    cache: &Cache,
    name: &str,
    d: &Digest,
    headers: &axum::http::HeaderMap,
    method: &Method,
) -> ApiResult<Option<Response>> {
    let head = method == Method::HEAD;
    let answer = cache
        .blob(name, d, head)
        .await
        .map_err(|e| upstream_error(e, Code::BlobUnknown, "blob"))?;
    let (size, incoming) = match answer {
        BlobAnswer::Local => return Ok(None),
        BlobAnswer::Size(size) => (size, None),
        BlobAnswer::Incoming(i) => (i.size, Some(i)),
    };
    let range = match crate::api::requested_range(headers, size) {
        Ok(r) => r,
        Err(unsatisfiable) => return Ok(Some(*unsatisfiable)),
    };
    let (start, len) = range.as_ref().map_or((0, size), |r| (r.start, r.len()));
    let body = match incoming {
        Some(i) if !head => crate::api::counted_body(reg, i.stream(start, start + len)),
        _ => Body::empty(),
    };
    Ok(Some(crate::api::blob_response(d, size, range, body)))
}

/// Maps an upstream failure (with no cached copy to fall back on) to a spec error.
fn upstream_error(e: UpstreamError, unknown: Code, what: &str) -> ApiError {
    match e {
        UpstreamError::NotFound => ApiError::new(unknown, format!("{what} unknown upstream")),
        UpstreamError::RateLimited { retry_after } => {
            let err = ApiError::new(
                Code::TooManyRequests,
                format!("the upstream registry is rate limiting and this {what} is not cached"),
            );
            match retry_after {
                Some(s) => err.with_header(header::RETRY_AFTER, HeaderValue::from(s)),
                None => err,
            }
        }
        // Docker Hub answers 401 for repositories that do not exist.
        UpstreamError::Denied { .. } => ApiError::new(
            unknown,
            format!(
                "{what} unknown upstream, or the upstream refused access (check the cache's \
                 credentials for it)"
            ),
        ),
        UpstreamError::Busy => ApiError::new(Code::Unavailable, e.to_string())
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")),
        UpstreamError::Disabled => ApiError::new(
            Code::Denied,
            "this upstream registry is disabled in the cache's configuration",
        ),
        UpstreamError::Storage(m) => ApiError::new(Code::Internal, m),
        e => ApiError::new(
            Code::Unavailable,
            format!("{what} not cached and the upstream registry failed: {e}"),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Management API: what the cache holds, pins, warming, eviction.

/// `/api/v1/cache/...` routes (administrators only).
pub(crate) fn routes() -> axum::Router<Registry> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/api/v1/cache", get(list))
        .route("/api/v1/cache/warm", post(warm))
        .route(
            "/api/v1/cache/pins",
            get(list_pins).post(add_pin).delete(remove_pin),
        )
        .route("/api/v1/cache/evict", post(evict))
}

type MResult = Result<Response, ApiError>;

fn configured(reg: &Registry) -> Result<&Cache, ApiError> {
    reg.inner.cache.as_ref().ok_or_else(|| {
        ApiError::new(
            Code::NameUnknown,
            "no pull-through cache is configured ([[cache.upstream]])",
        )
    })
}

async fn json_body<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| crate::mgmt::bad("request body too large or interrupted"))?;
    serde_json::from_slice(&bytes).map_err(|e| crate::mgmt::bad(format!("invalid JSON body: {e}")))
}

/// `GET /api/v1/cache`: cached images, least recently pulled first.
async fn list(
    axum::extract::State(reg): axum::extract::State<Registry>,
    req: axum::extract::Request,
) -> MResult {
    let (parts, _) = req.into_parts();
    crate::mgmt::admin(&reg, &parts).await?;
    let cache = configured(&reg)?;
    let images = cache.images().await?;
    let upstreams: Vec<_> = cache
        .config()
        .upstreams
        .iter()
        .map(|u| {
            serde_json::json!({
                "host": u.host, "endpoint": u.endpoint(), "prefix": u.prefix(),
                "enabled": u.enabled, "tag_ttl_seconds": u.tag_ttl_seconds,
            })
        })
        .collect();
    let total: u64 = images.iter().map(|i| i.bytes).sum();
    Ok(crate::mgmt::json(
        StatusCode::OK,
        &serde_json::json!({
            "max_bytes": cache.config().max_bytes,
            "image_bytes": total,
            "upstreams": upstreams,
            "images": images,
        }),
    ))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WarmRequest {
    images: Vec<String>,
    #[serde(default)]
    platform: Option<String>,
}

/// `POST /api/v1/cache/warm`: fetches images into the cache now.
async fn warm(
    axum::extract::State(reg): axum::extract::State<Registry>,
    req: axum::extract::Request,
) -> MResult {
    let (parts, body) = req.into_parts();
    let (_, caller) = crate::mgmt::admin(&reg, &parts).await?;
    let cache = configured(&reg)?;
    let w: WarmRequest = json_body(body).await?;
    if w.images.is_empty() || w.images.len() > 100 {
        return Err(crate::mgmt::bad("give between 1 and 100 images"));
    }
    // A reference that is no image of a cached upstream is the caller's mistake: refuse the
    // request before fetching anything.
    for image in &w.images {
        cache.parse_image(image).map_err(crate::mgmt::bad)?;
    }
    if let Some(p) = &w.platform
        && (p.is_empty() || p.split('/').count() > 3 || p.len() > 64)
    {
        return Err(crate::mgmt::bad("platform must be os/arch[/variant]"));
    }
    // Upstream failures are reported per image, with the others' results.
    let mut results = Vec::new();
    for image in &w.images {
        match cache.warm(image, w.platform.as_deref()).await {
            Ok(r) => results.push(serde_json::to_value(&r).unwrap_or_default()),
            Err(e) => results.push(serde_json::json!({"image": image, "error": e})),
        }
    }
    if let Some(ac) = reg.access() {
        ac.audit(&caller, "cache.warm", None, None, w.images.join(","))
            .await;
    }
    Ok(crate::mgmt::json(StatusCode::OK, &results))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PinRequest {
    image: String,
}

/// `GET /api/v1/cache/pins`: configured and run-time pins.
async fn list_pins(
    axum::extract::State(reg): axum::extract::State<Registry>,
    req: axum::extract::Request,
) -> MResult {
    let (parts, _) = req.into_parts();
    crate::mgmt::admin(&reg, &parts).await?;
    let cache = configured(&reg)?;
    Ok(crate::mgmt::json(
        StatusCode::OK,
        &serde_json::json!({
            "configured": cache.config().pinned,
            "runtime": cache.runtime_pins().await?,
        }),
    ))
}

/// `POST /api/v1/cache/pins`: keeps matching images whatever the size limit.
async fn add_pin(
    axum::extract::State(reg): axum::extract::State<Registry>,
    req: axum::extract::Request,
) -> MResult {
    let (parts, body) = req.into_parts();
    let (_, caller) = crate::mgmt::admin(&reg, &parts).await?;
    let cache = configured(&reg)?;
    let p: PinRequest = json_body(body).await?;
    if p.image.is_empty() || p.image.len() > 512 || p.image.contains(['\0', ' ']) {
        return Err(crate::mgmt::bad(
            "image pattern is empty, too long or has spaces",
        ));
    }
    cache.pin(&p.image).await.map_err(crate::mgmt::bad)?;
    if let Some(ac) = reg.access() {
        ac.audit(
            &caller,
            "cache.pin",
            None,
            Some(p.image.clone()),
            String::new(),
        )
        .await;
    }
    Ok(crate::mgmt::json(
        StatusCode::CREATED,
        &serde_json::json!({"image": p.image}),
    ))
}

/// `DELETE /api/v1/cache/pins?image=...`: removes a run-time pin.
async fn remove_pin(
    axum::extract::State(reg): axum::extract::State<Registry>,
    q: Result<axum::extract::Query<PinRequest>, axum::extract::rejection::QueryRejection>,
    req: axum::extract::Request,
) -> MResult {
    let (parts, _) = req.into_parts();
    let (_, caller) = crate::mgmt::admin(&reg, &parts).await?;
    let p = crate::mgmt::query(q)?;
    let cache = configured(&reg)?;
    if !cache.unpin(&p.image).await? {
        return Err(ApiError::new(
            Code::NameUnknown,
            format!("no run-time pin {}", p.image),
        ));
    }
    if let Some(ac) = reg.access() {
        ac.audit(&caller, "cache.unpin", None, Some(p.image), String::new())
            .await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct EvictRequest {
    dry_run: bool,
}

/// `POST /api/v1/cache/evict`: enforces the size limit now.
async fn evict(
    axum::extract::State(reg): axum::extract::State<Registry>,
    req: axum::extract::Request,
) -> MResult {
    let (parts, body) = req.into_parts();
    crate::mgmt::admin(&reg, &parts).await?;
    configured(&reg)?;
    let e: EvictRequest = json_body(body).await?;
    let (report, gc) = reg.evict_cache(e.dry_run).await?;
    Ok(crate::mgmt::json(
        StatusCode::OK,
        &serde_json::json!({"eviction": report, "gc": gc}),
    ))
}

impl Registry {
    /// Evicts least recently pulled cached images beyond the cache's size limit, then collects
    /// the blobs no longer needed.
    pub async fn evict_cache(
        &self,
        dry_run: bool,
    ) -> Result<(cache::EvictReport, Option<service::gc::GcReport>), ApiError> {
        let cache = configured(self)?;
        // Pull times reach storage in batches: write the pending ones so the order is current.
        if let Err(e) = self.service().flush_pulls().await {
            tracing::warn!(error = %e, "flushing pull times before eviction");
        }
        let report = cache.evict(dry_run).await?;
        let gc = if !dry_run && !report.evicted.is_empty() {
            let opts = self.service().collector().defaults();
            Some(
                self.service()
                    .collect_garbage(&opts)
                    .await
                    .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?,
            )
        } else {
            None
        };
        Ok((report, gc))
    }

    /// Enforces the cache's size limit every `every` (when a limit is set).
    pub fn spawn_cache_eviction(&self, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let reg = self.clone();
        tokio::spawn(async move {
            let every = every.max(std::time::Duration::from_secs(1));
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = reg.evict_cache(false).await {
                    tracing::warn!(error = %e.message, "cache eviction failed");
                }
            }
        })
    }
}
