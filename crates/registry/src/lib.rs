//! Wharf's HTTP API: the OCI Distribution Specification v1.1 under `/v2/`, plus `/healthz` and
//! `/readyz`; Prometheus `/metrics` is a router of its own, for a separate listener.
//!
//! Handlers parse and validate requests (with the pure rules in `oci`), call the storage
//! interfaces, and map every failure to the spec's error codes. No storage detail leaks here and
//! no HTTP detail leaks into storage.

pub mod access;
mod api;
mod conn_guard;
pub mod error;
pub mod gc;
pub mod identities;
pub mod metrics;
mod mgmt;
mod mirror;
pub mod pulls;
pub mod retention;
pub mod server;
pub mod signatures;
pub mod tagrules;
pub mod tls;
mod token;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use store::{BlobStore, MetaStore};

pub use error::{ApiError, Code};
pub use metrics::Metrics;
pub use server::{ServeOptions, serve};
pub use tls::{ClientIdentity, ReloadingTls, TlsSettings};

/// Limits and knobs of the HTTP API.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest manifest accepted, in bytes.
    pub max_manifest_bytes: usize,
    /// Largest `n` honoured in paginated listings.
    pub max_page: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_bytes: oci::manifest::MAX_MANIFEST_BYTES,
            max_page: 10_000,
        }
    }
}

/// The registry service: storage plus metrics, cheap to clone into handlers.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    access: Option<Arc<access::AccessControl>>,
    signing: Option<Arc<signatures::SigningPolicy>>,
    /// The pull-through cache, when upstreams are configured.
    cache: Option<cache::Cache>,
    tag_rules: tagrules::TagRules,
    blobs: Arc<dyn BlobStore>,
    meta: Arc<dyn MetaStore>,
    metrics: Arc<Metrics>,
    /// Garbage collection, storage use, and the per-digest locks and touches it relies on.
    gc: Arc<gc::Collector>,
    limits: Limits,
    ready: AtomicBool,
    /// Manifest pulls noted since the last flush (pulls.rs).
    pulls: pulls::PullTracker,
    /// Retention policies and their schedule (retention.rs).
    retention: retention::RetentionRules,
    /// One retention run at a time.
    retention_lock: tokio::sync::Mutex<()>,
}

impl Registry {
    /// Builds a registry over the given stores; `locks` are the stores' per-digest locks (the
    /// same table goes to the pull-through cache, when there is one).
    pub fn new(
        blobs: Arc<dyn BlobStore>,
        meta: Arc<dyn MetaStore>,
        locks: Arc<store::DigestLocks>,
        limits: Limits,
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        let gc = Arc::new(gc::Collector::new(
            blobs.clone(),
            meta.clone(),
            metrics.clone(),
            locks,
        ));
        Registry {
            inner: Arc::new(Inner {
                access: None,
                signing: None,
                cache: None,
                tag_rules: tagrules::TagRules::default(),
                blobs,
                meta,
                metrics,
                gc,
                limits,
                ready: AtomicBool::new(true),
                pulls: pulls::PullTracker::new(pulls::DEFAULT_CAPACITY),
                retention: retention::RetentionRules::default(),
                retention_lock: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Adds access control (users, robots, tokens, permissions). Without it everyone may do
    /// everything.
    pub fn with_access(self, ac: Arc<access::AccessControl>) -> Self {
        let inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| panic!("with_access must be called before the registry is shared"));
        let mut prom = prometheus_client::registry::Registry::with_prefix("wharf");
        ac.register_metrics(&mut prom);
        inner.metrics.attach(prom);
        Registry {
            inner: Arc::new(Inner {
                access: Some(ac),
                ..inner
            }),
        }
    }

    /// Adds trusted signing keys and the rules that require verified signatures for pulls.
    pub fn with_signing(self, policy: Arc<signatures::SigningPolicy>) -> Self {
        let inner = Arc::try_unwrap(self.inner).unwrap_or_else(|_| {
            panic!("with_signing must be called before the registry is shared")
        });
        Registry {
            inner: Arc::new(Inner {
                signing: Some(policy),
                ..inner
            }),
        }
    }

    /// Adds a pull-through cache: its repositories are served from upstream registries.
    pub fn with_cache(self, cache: cache::Cache) -> Self {
        let inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| panic!("with_cache must be called before the registry is shared"));
        let mut prom = prometheus_client::registry::Registry::with_prefix("wharf");
        cache.metrics().register(&mut prom);
        inner.metrics.attach(prom);
        Registry {
            inner: Arc::new(Inner {
                cache: Some(cache),
                ..inner
            }),
        }
    }

    /// The pull-through cache, if one is configured.
    pub fn cache(&self) -> Option<&cache::Cache> {
        self.inner.cache.as_ref()
    }

    /// Adds immutable-tag rules.
    pub fn with_tag_rules(self, rules: tagrules::TagRules) -> Self {
        let inner = Arc::try_unwrap(self.inner).unwrap_or_else(|_| {
            panic!("with_tag_rules must be called before the registry is shared")
        });
        Registry {
            inner: Arc::new(Inner {
                tag_rules: rules,
                ..inner
            }),
        }
    }

    /// Marks the registry as not ready (during shutdown) so load balancers drain it.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether `caller` may take `action` on `repo`.
    pub(crate) fn can(&self, caller: &access::Caller, repo: &str, action: auth::Action) -> bool {
        match &self.inner.access {
            Some(ac) if !caller.open => ac.allowed(caller, repo).contains(action),
            _ => true,
        }
    }

    /// Records an audit event when access control is configured.
    pub(crate) async fn audit(
        &self,
        caller: &access::Caller,
        action: &str,
        repo: &str,
        target: String,
        detail: String,
    ) {
        if let Some(ac) = &self.inner.access {
            ac.audit(caller, action, Some(repo), Some(target), detail)
                .await;
        }
    }

    /// The garbage collector (storage use, scheduled and on-demand collections; docs/gc.md).
    pub fn collector(&self) -> &Arc<gc::Collector> {
        &self.inner.gc
    }

    /// Runs one garbage collection now (after any running one) and returns its report. For
    /// other modules, e.g. the pull-through cache after it evicts manifests.
    pub async fn collect_garbage(&self, opts: &gc::GcOptions) -> Result<gc::GcReport, gc::GcError> {
        self.inner.gc.collect(opts).await
    }

    /// The metrics this registry records.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The axum router serving the whole API. It has no `/metrics`: metrics name repositories
    /// and their sizes, so they are served by [`Registry::metrics_router`] on a listener of
    /// their own, for the operator's scraper only.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/token", get(token::get_token).post(token::post_token))
            .merge(mgmt::routes())
            .merge(mirror::routes())
            .merge(retention::routes())
            .merge(gc::routes())
            .fallback(api::dispatch)
            .layer(middleware::from_fn_with_state(self.clone(), observe))
            .with_state(self.clone())
    }

    /// The router of the metrics listener: Prometheus `/metrics` (and `/healthz`), without
    /// authentication, for a listener that only the operator's scraper can reach.
    pub fn metrics_router(&self) -> Router {
        Router::new()
            .route("/metrics", get(metrics_text))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(self.clone())
    }
}

async fn readyz(State(reg): State<Registry>) -> Response {
    if reg.inner.ready.load(Ordering::Relaxed) {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    }
}

async fn metrics_text(State(reg): State<Registry>) -> Response {
    let m = &reg.inner.metrics;
    m.storage_used.set(reg.inner.blobs.used_bytes());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response()
}

/// Which route answered, for metrics labels; set by the dispatcher on its responses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RouteLabel(pub &'static str);

/// Records metrics and logs for every request and adds the API version header.
async fn observe(State(reg): State<Registry>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    // Behind a trusted proxy, the client is named by X-Forwarded-For.
    if let Some(ac) = &reg.inner.access {
        ac.resolve_client(&mut req);
    }
    let method = req.method().clone();
    let path_label = match req.uri().path() {
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/token" => "token",
        p if p.starts_with("/api/") => "api",
        _ => "other",
    };
    let mut resp = next.run(req).await;
    let route = resp
        .extensions()
        .get::<RouteLabel>()
        .map_or(path_label, |r| r.0);
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    let m = &reg.inner.metrics;
    m.requests
        .get_or_create(&metrics::RequestLabels {
            route,
            method: method.as_str().to_owned(),
            status,
        })
        .inc();
    m.latency
        .get_or_create(&metrics::RouteLabels {
            route,
            method: method.as_str().to_owned(),
        })
        .observe(elapsed.as_secs_f64());
    tracing::debug!(%method, route, status, micros = elapsed.as_micros() as u64, "request");
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}
