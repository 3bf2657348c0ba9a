//! Wharf's HTTP API: the OCI Distribution Specification v1.1 under `/v2/`, plus `/healthz` and
//! `/readyz`; Prometheus `/metrics` is a router of its own, for a separate listener.
//!
//! Handlers parse and validate requests (with the pure rules in `oci`), call the storage
//! interfaces, and map every failure to the spec's error codes. No storage detail leaks here and
//! no HTTP detail leaks into storage.

pub mod access_log;
mod api;
mod backup_api;
mod conn_guard;
pub mod error;
mod gc_api;
pub mod http_access;
pub mod metrics;
pub mod mgmt;
mod retention_api;
pub mod server;
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
use service::Service;
use service::source::{ContentSource, StoreSource};

pub use error::{ApiError, Code};
pub use gc_api::wants_ndjson;
pub use metrics::Metrics;
pub use server::{ServeOptions, serve};
pub use service::Limits;
pub use tls::{ClientIdentity, ReloadingTls, TlsSettings};

/// The HTTP front door of a [`Service`]: cheap to clone into handlers.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    service: Arc<Service>,
    /// The plain source of pulls, called directly (no boxed future) when nothing decorates it.
    plain: StoreSource,
    /// A decorator of the plain source (the pull-through cache), when a capability adds one.
    source: Option<Arc<dyn ContentSource>>,
    capabilities: Vec<Arc<dyn Capability>>,
    /// The capabilities that may refuse pulls (asked on every manifest GET).
    gates: Vec<Arc<dyn Capability>>,
    metrics: Arc<Metrics>,
    ready: AtomicBool,
    /// Write the access log (one info line per request, target `wharf::access`).
    access_log: bool,
}

/// An optional capability (the pull-through cache now; scanning and admission next) plugged
/// into the HTTP layer: it brings its own management routes and metrics, and the core never
/// imports it.
pub trait Capability: Send + Sync + 'static {
    /// Its routes (management API under `/api/v1/...`), merged into the registry's router.
    fn routes(&self) -> Router<Registry>;

    /// Registers its metrics, served on `/metrics` with the registry's.
    fn register_metrics(&self, prom: &mut prometheus_client::registry::Registry);

    /// Hears of each manifest pushed, once it is stored and before the client is answered
    /// (scanning queues it). Must return at once: hand the work to a bounded queue.
    fn pushed(&self, repo: &str, digest: &oci::Digest, media_type: &str) {
        let _ = (repo, digest, media_type);
    }

    /// Whether this capability may refuse pulls; only those that say so are asked
    /// [`Capability::check_pull`], so the others cost a manifest GET nothing.
    fn gates_pulls(&self) -> bool {
        false
    }

    /// Why a GET of manifest `digest` of `repo` is refused, when it is (a `DENIED` error
    /// carries the reason); HEAD is never refused, as with the signed-pull rule.
    fn check_pull<'a>(
        &'a self,
        repo: &'a str,
        digest: &'a oci::Digest,
    ) -> futures_util::future::BoxFuture<'a, Result<(), String>> {
        let _ = (repo, digest);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Collects the HTTP layer's optional parts around a [`Service`]; see [`Registry::builder`].
pub struct RegistryBuilder {
    service: Arc<Service>,
    source: Option<Arc<dyn ContentSource>>,
    capabilities: Vec<Arc<dyn Capability>>,
    access_log: bool,
    build_info: (String, String),
    tls: Option<ReloadingTls>,
}

impl RegistryBuilder {
    /// Reads pulls through `source`, a decorator of the service's plain
    /// [`Service::store_source`] (e.g. a pull-through cache). The last one given counts.
    pub fn source(mut self, source: Arc<dyn ContentSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// Adds a capability's routes and metrics.
    pub fn capability(mut self, capability: Arc<dyn Capability>) -> Self {
        self.capabilities.push(capability);
        self
    }

    /// Writes the access log or not (on by default).
    pub fn access_log(mut self, on: bool) -> Self {
        self.access_log = on;
        self
    }

    /// The version and source revision `wharf_build_info` names (by default this crate's
    /// version and `unknown`).
    pub fn build_info(mut self, version: &str, revision: &str) -> Self {
        self.build_info = (version.to_owned(), revision.to_owned());
        self
    }

    /// Reports the served certificate (`wharf_tls_certificate_expiry_timestamp_seconds`, its
    /// notAfter, following reloads), so one alert covers any source of certificates.
    pub fn tls(mut self, tls: &ReloadingTls) -> Self {
        self.tls = Some(tls.clone());
        self
    }

    /// Builds the registry, with every part's metrics on `/metrics`, and the process's.
    pub fn build(self) -> Registry {
        let metrics = Arc::new(Metrics::new());
        let mut prom = prometheus_client::registry::Registry::with_prefix("wharf");
        metrics::register_build_info(&mut prom, &self.build_info.0, &self.build_info.1);
        self.service.register_metrics(&mut prom);
        if self.service.blobs().space().is_some() {
            metrics::register_storage_space(&mut prom, self.service.blobs().clone());
        }
        if let Some(tls) = self.tls {
            metrics::register_tls_expiry(&mut prom, tls);
        }
        for c in &self.capabilities {
            c.register_metrics(&mut prom);
        }
        metrics.attach(prom);
        metrics.attach(metrics::process_registry());
        Registry {
            inner: Arc::new(Inner {
                plain: self.service.store_source(),
                service: self.service,
                source: self.source,
                gates: self
                    .capabilities
                    .iter()
                    .filter(|c| c.gates_pulls())
                    .cloned()
                    .collect(),
                capabilities: self.capabilities,
                metrics,
                ready: AtomicBool::new(true),
                access_log: self.access_log,
            }),
        }
    }
}

impl Registry {
    /// A registry serving `service`, without decorators or capabilities.
    pub fn new(service: Arc<Service>) -> Self {
        Self::builder(service).build()
    }

    /// Starts building a registry serving `service`.
    pub fn builder(service: Arc<Service>) -> RegistryBuilder {
        RegistryBuilder {
            service,
            source: None,
            capabilities: Vec::new(),
            access_log: true,
            build_info: (env!("CARGO_PKG_VERSION").to_owned(), "unknown".to_owned()),
            tls: None,
        }
    }

    /// Refuses writes into a repository its source serves read-only (a cached one).
    pub(crate) fn refuse_write(&self, repo: &str) -> Result<(), ApiError> {
        match self
            .inner
            .source
            .as_ref()
            .and_then(|s| s.refuses_writes(repo))
        {
            Some(why) => Err(ApiError::new(Code::Denied, why)),
            None => Ok(()),
        }
    }

    /// The services this registry serves.
    pub fn service(&self) -> &Arc<Service> {
        &self.inner.service
    }

    /// The service's access control, if configured.
    pub fn access(&self) -> Option<&Arc<service::access::AccessControl>> {
        self.inner.service.access()
    }

    /// Marks the registry as not ready (during shutdown) so load balancers drain it.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether `caller` may take `action` on `repo`.
    pub(crate) fn can(
        &self,
        caller: &service::access::Caller,
        repo: &str,
        action: auth::Action,
    ) -> bool {
        match self.access() {
            Some(ac) if !caller.open => ac.allowed(caller, repo).contains(action),
            _ => true,
        }
    }

    /// Records an audit event when access control is configured.
    pub(crate) async fn audit(
        &self,
        caller: &service::access::Caller,
        action: &str,
        repo: &str,
        target: String,
        detail: String,
    ) {
        if let Some(ac) = self.access() {
            ac.audit(caller, action, Some(repo), Some(target), detail)
                .await;
        }
    }

    /// The metrics this registry records.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The axum router serving the whole API. It has no `/metrics`: metrics name repositories
    /// and their sizes, so they are served by [`Registry::metrics_router`] on a listener of
    /// their own, for the operator's scraper only.
    pub fn router(&self) -> Router {
        let mut router = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/token", get(token::get_token).post(token::post_token))
            .merge(backup_api::routes())
            .merge(mgmt::routes())
            .merge(retention_api::routes())
            .merge(gc_api::routes());
        for c in &self.inner.capabilities {
            router = router.merge(c.routes());
        }
        router
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

/// `GET /metrics`: the Prometheus text format, or OpenMetrics when the `Accept` header asks
/// for it ([`metrics::negotiate`]).
async fn metrics_text(State(reg): State<Registry>, headers: axum::http::HeaderMap) -> Response {
    let m = &reg.inner.metrics;
    m.storage_used.set(reg.inner.service.blobs().used_bytes());
    let format = metrics::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    // Off the async workers: the collectors read /proc and statvfs the data volume, which can
    // block (a hung network mount).
    let m = m.clone();
    match tokio::task::spawn_blocking(move || m.encode(format)).await {
        Ok(body) => metrics::text_response(format, body),
        Err(e) => {
            tracing::error!(error = %e, "encoding the metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Which route answered, for metrics labels; set by the dispatcher on its responses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RouteLabel(pub &'static str);

/// Records metrics and the access log line of every request, and adds the API version and
/// `X-Request-ID` headers.
async fn observe(State(reg): State<Registry>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    // Behind a trusted proxy, the client is named by X-Forwarded-For.
    if let Some(ac) = reg.access() {
        http_access::resolve_client(ac, &mut req);
    }
    let method = req.method().clone();
    let version = req.version();
    let path_label = match req.uri().path() {
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/token" => "token",
        p if p.starts_with("/api/") => "api",
        _ => "other",
    };
    let log =
        reg.inner.access_log && tracing::enabled!(target: "wharf::access", tracing::Level::INFO);
    let mut resp = access_log::logged(req, next, log, start).await;
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
    let headers = resp.headers_mut();
    headers.insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    // Draining (shutdown has begun): HTTP/1 clients are told to reconnect, which takes them to
    // another replica, instead of keeping this connection until the listener closes. (HTTP/2
    // connections get a GOAWAY when it does.)
    if version <= axum::http::Version::HTTP_11 && !reg.inner.ready.load(Ordering::Relaxed) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
