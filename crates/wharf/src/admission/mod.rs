//! `wharf admission`: the validating and mutating admission webhook (see docs/admission.md,
//! "Webhook").
//!
//! `POST /admission/v1/validate` and `POST /admission/v1/mutate` take an `admission.k8s.io/v1`
//! `AdmissionReview` and answer it with the policy engine ([`policy::admission::Request`]), after
//! finding out what its rules need to know about images ([`facts::FactFinder`]: digests of
//! tags, signatures); `GET /healthz` answers `ok`. HTTPS with the registry's TLS (certificate
//! and key reloaded when they change); the policy file is reloaded when it changes.

pub mod facts;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use policy::Mode;
use policy::Policy;
use policy::admission::Request;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use self::facts::{FactConfig, FactFinder, FactMetrics, LocalRegistry};

/// Largest review body accepted (the API server's own request limit is 3 MiB).
pub const MAX_BODY: usize = 3 << 20;

/// How often the policy file's modification time is checked.
const POLICY_POLL: Duration = Duration::from_secs(5);

/// Flags of `wharf admission`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Serves POST /admission/v1/validate and POST /admission/v1/mutate \
(AdmissionReview admission.k8s.io/v1) and GET /healthz. The API server only calls webhooks over \
HTTPS: give --tls-cert and --tls-key (reloaded when the files change). The policy file is \
reloaded when it changes (a policy that does not parse is logged and the old one kept). \
Registry credentials come from the docker / containers auth files. See docs/admission.md."
)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AdmissionArgs {
    /// `certs`: make the webhook's CA and serving certificate.
    #[command(subcommand)]
    pub cmd: Option<AdmissionCmd>,
    /// The policy file (TOML, see docs/admission.md).
    #[arg(long, value_name = "FILE", required = true)]
    pub policy: Option<PathBuf>,
    /// Address to listen on (loopback unless set).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// PEM certificate chain to serve HTTPS with (leaf first).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve Prometheus /metrics (plain HTTP, no authentication) on this address.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// All registry lookups of one review (digests, signatures) end within this many
    /// milliseconds; keep it well under the webhook configuration's timeoutSeconds.
    #[arg(long, value_name = "MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..=25_000))]
    pub lookup_deadline_ms: u64,
    /// Most registry lookups in flight at once.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub max_lookups: u64,
    /// Most reviews answered at once; more are refused with 503 (the API server then applies
    /// the webhook's failurePolicy).
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub max_reviews: u64,
    /// Seconds a tag's digest (and an unverified signature verdict) is reused.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub tag_ttl_seconds: u64,
    /// Seconds a verified signature verdict is reused.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub verdict_ttl_seconds: u64,
    /// Reach this registry (`host[:port]`) over plain HTTP. Loopback registries always are.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
}

/// `wharf admission` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum AdmissionCmd {
    /// Makes a CA and a serving certificate signed by it for the webhook's Service: writes
    /// ca.crt, ca.key, tls.crt and tls.key (keys mode 0600) into --out and prints the CA as
    /// base64, the `caBundle` of the webhook configuration.
    Certs(CertsArgs),
}

/// Flags of `wharf admission certs`.
#[derive(clap::Args, Debug)]
pub struct CertsArgs {
    /// Directory to write the files into (created if missing).
    #[arg(long, value_name = "DIR", default_value = "wharf-admission-certs")]
    pub out: PathBuf,
    /// DNS names the certificate is for (repeatable): the Service's
    /// `NAME.NAMESPACE.svc`, which the API server calls.
    #[arg(
        long = "dns",
        value_name = "NAME",
        default_value = "wharf-admission.wharf.svc"
    )]
    pub dns: Vec<String>,
    /// IP addresses the certificate is for (repeatable).
    #[arg(long = "ip", value_name = "ADDR")]
    pub ips: Vec<std::net::IpAddr>,
    /// Days the certificates are valid.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

/// Runs `wharf admission`: the webhook until SIGTERM or SIGINT, or a subcommand.
pub fn run(args: AdmissionArgs) -> anyhow::Result<()> {
    if let Some(AdmissionCmd::Certs(c)) = args.cmd {
        return certs(c);
    }
    let _log = init_logging();
    let policy_path = args.policy.clone().context("--policy FILE is required")?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(
            registry::ReloadingTls::load(registry::TlsSettings::new(c, k))
                .context("loading the TLS certificate")?,
        ),
        _ => None,
    };
    let config = crate::config::AdmissionConfig {
        policy: policy_path,
        names: Vec::new(),
        lookup_deadline_ms: args.lookup_deadline_ms,
        max_lookups: args.max_lookups as usize,
        max_reviews: args.max_reviews as usize,
        tag_ttl_seconds: args.tag_ttl_seconds,
        verdict_ttl_seconds: args.verdict_ttl_seconds,
        insecure_registries: args.insecure_registry.clone(),
    };
    let webhook = Arc::new(Webhook::from_config(&config, None)?);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wharf-admission")
        .build()
        .context("starting the async runtime")?
        .block_on(serve(args.listen, args.metrics_listen, webhook, tls))
}

fn init_logging() -> crate::logging::LogGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Names from reviews are untrusted: the text format escapes them.
    crate::logging::init(filter, crate::config::LogFormat::Text)
}

/// The policy in force and the lookups its rules need; replaced whole on reload.
struct Loaded {
    policy: Policy,
    facts: FactFinder,
}

/// `wharf_admission_reviews_total` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ReviewLabels {
    webhook: &'static str,
    outcome: &'static str,
}

/// `wharf_admission_findings_total` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct FindingLabels {
    rule: String,
    mode: &'static str,
}

/// The webhook: its policy (reloaded), lookups, limits and metrics.
pub struct Webhook {
    /// This Wharf, inside `wharf serve`.
    local: Option<Arc<LocalRegistry>>,
    path: PathBuf,
    client_cfg: client::ClientConfig,
    fact_cfg: FactConfig,
    fact_metrics: FactMetrics,
    /// Modification time of the policy file last read (or tried).
    seen: std::sync::Mutex<Option<SystemTime>>,
    loaded: RwLock<Arc<Loaded>>,
    in_flight: tokio::sync::Semaphore,
    reviews: Family<ReviewLabels, Counter>,
    findings: Family<FindingLabels, Counter>,
    seconds: Family<ReviewLabels, Histogram>,
    reloads: Family<ReloadLabels, Counter>,
}

/// `wharf_admission_policy_reloads_total` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ReloadLabels {
    outcome: &'static str,
}

impl Webhook {
    /// The webhook `config` describes (`[admission]` of `wharf serve`, or the flags of `wharf
    /// admission`), with `local` lookups inside `wharf serve`.
    pub fn from_config(
        config: &crate::config::AdmissionConfig,
        local: Option<Arc<LocalRegistry>>,
    ) -> anyhow::Result<Webhook> {
        if !(10..=25_000).contains(&config.lookup_deadline_ms) {
            anyhow::bail!(
                "admission lookup_deadline_ms must be 10..=25000 (it is {})",
                config.lookup_deadline_ms
            );
        }
        let fact_cfg = FactConfig {
            deadline: Duration::from_millis(config.lookup_deadline_ms),
            max_lookups: config.max_lookups.max(1),
            tag_ttl: Duration::from_secs(config.tag_ttl_seconds),
            verdict_ttl: Duration::from_secs(config.verdict_ttl_seconds),
            ..FactConfig::default()
        };
        let credentials =
            client::CredentialStore::from_env().context("reading registry credentials")?;
        for w in credentials.warnings() {
            tracing::warn!("{w}");
        }
        let mut client_cfg = client::ClientConfig::default().with_credentials(credentials);
        for r in &config.insecure_registries {
            client_cfg = client_cfg.insecure_registry(r.clone());
        }
        // The review's deadline ends every lookup; the client's own timeouts, a little longer,
        // only make sure no connection outlives it.
        let net = fact_cfg.deadline + Duration::from_secs(1);
        client_cfg.connect_timeout = net;
        client_cfg.read_timeout = net;
        client_cfg.response_timeout = Some(net);
        Webhook::load(
            config.policy.clone(),
            client_cfg,
            fact_cfg,
            config.max_reviews.max(1),
            local,
        )
    }

    /// Reads the policy at `path` (and the keys it names).
    pub fn load(
        path: PathBuf,
        client_cfg: client::ClientConfig,
        fact_cfg: FactConfig,
        max_reviews: usize,
        local: Option<Arc<LocalRegistry>>,
    ) -> anyhow::Result<Webhook> {
        let seen = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let fact_metrics = FactMetrics::default();
        let loaded = Self::read(&path, &client_cfg, &fact_cfg, &fact_metrics, &local)?;
        Ok(Webhook {
            local,
            path,
            client_cfg,
            fact_cfg,
            fact_metrics,
            seen: std::sync::Mutex::new(seen),
            loaded: RwLock::new(Arc::new(loaded)),
            in_flight: tokio::sync::Semaphore::new(max_reviews.max(1)),
            reviews: Family::default(),
            findings: Family::default(),
            seconds: Family::new_with_constructor(|| {
                Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5])
            }),
            reloads: Family::default(),
        })
    }

    fn read(
        path: &std::path::Path,
        client_cfg: &client::ClientConfig,
        fact_cfg: &FactConfig,
        metrics: &FactMetrics,
        local: &Option<Arc<LocalRegistry>>,
    ) -> anyhow::Result<Loaded> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the policy {}", path.display()))?;
        let policy = Policy::from_toml(&text).with_context(|| format!("{}", path.display()))?;
        let client =
            client::Client::new(client_cfg.clone()).context("setting up the registry client")?;
        let facts = FactFinder::new(
            &policy,
            client,
            fact_cfg.clone(),
            metrics.clone(),
            local.clone(),
        )?;
        Ok(Loaded { policy, facts })
    }

    fn current(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the policy when its file changed; a policy that fails to load is logged (once
    /// per change of the file) and the one in force kept.
    pub fn reload_if_changed(&self) {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if modified.is_none() || modified == *seen {
                return;
            }
            *seen = modified;
        }
        let outcome = match Self::read(
            &self.path,
            &self.client_cfg,
            &self.fact_cfg,
            &self.fact_metrics,
            &self.local,
        ) {
            Ok(l) => {
                *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(l);
                tracing::info!(path = %self.path.display(), "policy reloaded");
                "ok"
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %format!("{e:#}"), "policy not reloaded; the previous one stays in force");
                "error"
            }
        };
        self.reloads.get_or_create(&ReloadLabels { outcome }).inc();
    }

    /// Registers the webhook's metrics (`admission_*`, under the caller's `wharf` prefix).
    pub fn register_metrics(&self, prom: &mut prometheus_client::registry::Registry) {
        let p = prom.sub_registry_with_prefix("admission");
        p.register(
            "reviews",
            "Admission reviews answered, by webhook (validate, mutate) and outcome (allowed, denied, patched, refused)",
            self.reviews.clone(),
        );
        p.register(
            "findings",
            "Policy findings in admission reviews, by rule and mode",
            self.findings.clone(),
        );
        p.register(
            "review_seconds",
            "Time to answer an admission review, lookups included",
            self.seconds.clone(),
        );
        p.register(
            "policy_reloads",
            "Policy file reloads, by outcome",
            self.reloads.clone(),
        );
        p.register(
            "lookups_cached",
            "Image lookups answered from the webhook's caches, by kind",
            self.fact_metrics.cached.clone(),
        );
        p.register(
            "lookups",
            "Image lookups sent to registries, by kind and outcome",
            self.fact_metrics.fetched.clone(),
        );
    }
}

async fn serve(
    listen: SocketAddr,
    metrics_listen: Option<SocketAddr>,
    webhook: Arc<Webhook>,
    tls: Option<registry::ReloadingTls>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let https = tls.is_some();
    if !https {
        tracing::warn!(
            "serving plain HTTP: the API server only calls webhooks over HTTPS (--tls-cert, --tls-key)"
        );
    }
    let _metrics = match metrics_listen {
        Some(at) => {
            let l = tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("binding the metrics listener {at}"))?;
            let mut prom = prometheus_client::registry::Registry::with_prefix("wharf");
            registry::metrics::register_build_info(
                &mut prom,
                crate::serve::VERSION,
                crate::serve::REVISION,
            );
            webhook.register_metrics(&mut prom);
            let registries = Arc::new([prom, registry::metrics::process_registry()]);
            let router = Router::new()
                .route(
                    "/metrics",
                    get(move |headers: axum::http::HeaderMap| {
                        let registries = registries.clone();
                        async move {
                            let [prom, process] = &*registries;
                            registry::metrics::exposition(&headers, &[prom, process])
                        }
                    }),
                )
                .route("/healthz", get(|| async { "ok" }));
            tracing::info!(%at, "metrics listening (plain HTTP, no authentication)");
            Some(crate::serve::AbortOnDrop(tokio::spawn(async move {
                if let Err(e) =
                    registry::serve(l, router, Default::default(), std::future::pending()).await
                {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            })))
        }
        None => None,
    };
    let _reload = spawn_policy_reloader(webhook.clone());
    tracing::info!(
        address = %listener.local_addr()?,
        https,
        "admission webhook listening"
    );
    let opts = registry::ServeOptions {
        tls,
        ..Default::default()
    };
    registry::serve(listener, router(webhook), opts, async {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight reviews");
    })
    .await
    .context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

/// The standalone webhook's routes, with the access log (request id, one `wharf::access` line
/// per review, as the registry writes; in `serve` the registry's own log covers the same routes).
pub fn router(webhook: Arc<Webhook>) -> Router {
    review_routes(webhook)
        .route("/healthz", get(|| async { "ok" }))
        .layer(axum::middleware::from_fn(registry::access_log::middleware))
}

/// The two review routes, for any router state.
fn review_routes<S: Clone + Send + Sync + 'static>(webhook: Arc<Webhook>) -> Router<S> {
    Router::new()
        .route("/admission/v1/validate", post(validate))
        .route("/admission/v1/mutate", post(mutate))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(refuse_large_bodies))
        .with_state(webhook)
}

/// A body whose Content-Length is over [`MAX_BODY`] is refused (413) before a byte of it is
/// read: a client that asked `Expect: 100-continue` is told at once and never sends it (reading
/// it first sent `100 Continue`, and the refusal then raced the upload: a broken pipe instead of
/// the status). A body of unknown length is still cut at the limit as it is read.
async fn refuse_large_bodies(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > MAX_BODY as u64 => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body ({n} bytes) is larger than the {} MiB an AdmissionReview may be",
                MAX_BODY >> 20
            ),
        )
            .into_response(),
        _ => next.run(req).await,
    }
}

/// The webhook as a capability of `wharf serve` (`[admission]`): its routes on the registry's
/// listener (unauthenticated, as the API server calls them; a review reveals only the
/// policy's verdict on the object sent), its metrics on the registry's `/metrics`.
pub struct AdmissionCapability(pub Arc<Webhook>);

impl registry::Capability for AdmissionCapability {
    fn routes(&self) -> Router<registry::Registry> {
        review_routes(self.0.clone())
    }

    fn register_metrics(&self, prom: &mut prometheus_client::registry::Registry) {
        self.0.register_metrics(prom);
    }
}

/// Polls the policy file for changes (every few seconds) until the task is dropped.
pub fn spawn_policy_reloader(webhook: Arc<Webhook>) -> crate::serve::AbortOnDrop {
    crate::serve::AbortOnDrop(tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLICY_POLL);
        tick.tick().await;
        loop {
            tick.tick().await;
            let w = webhook.clone();
            let _ = tokio::task::spawn_blocking(move || w.reload_if_changed()).await;
        }
    }))
}

fn problem(code: StatusCode, message: String) -> Response {
    tracing::warn!(status = code.as_u16(), %message, "admission request refused");
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message + "\n",
    )
        .into_response()
}

/// Whether the request says its body is JSON (`application/json`, parameters allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Reads a review body: JSON, parsed; or the HTTP status and message to answer.
fn read_review(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, (StatusCode, String)> {
    if !is_json(headers) {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json".into(),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))
}

impl Webhook {
    fn count(&self, webhook: &'static str, outcome: &'static str, started: Instant) {
        let l = ReviewLabels { webhook, outcome };
        self.reviews.get_or_create(&l).inc();
        self.seconds
            .get_or_create(&l)
            .observe(started.elapsed().as_secs_f64());
    }

    /// Counts a refused review and answers it with `code`.
    fn refuse(
        &self,
        webhook: &'static str,
        started: Instant,
        code: StatusCode,
        message: String,
    ) -> Box<Response> {
        self.count(webhook, "refused", started);
        Box::new(problem(code, message))
    }

    /// The start of both webhooks: a slot among `--max-reviews` (503 without one), then the
    /// body read as JSON.
    fn begin(
        &self,
        webhook: &'static str,
        headers: &HeaderMap,
        body: &[u8],
        started: Instant,
    ) -> Result<(tokio::sync::SemaphorePermit<'_>, serde_json::Value), Box<Response>> {
        let Ok(slot) = self.in_flight.try_acquire() else {
            return Err(self.refuse(
                webhook,
                started,
                StatusCode::SERVICE_UNAVAILABLE,
                "too many admission reviews in flight".into(),
            ));
        };
        let value = read_review(headers, body)
            .map_err(|(code, message)| self.refuse(webhook, started, code, message))?;
        Ok((slot, value))
    }
}

async fn validate(State(w): State<Arc<Webhook>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let (_slot, value) = match w.begin("validate", &headers, &body, started) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let request = match Request::parse(&value) {
        Ok(r) => r,
        Err(e) => return *w.refuse("validate", started, StatusCode::BAD_REQUEST, e.to_string()),
    };
    let loaded = w.current();
    let facts = if loaded.policy.needs_facts() {
        Some(
            loaded
                .facts
                .facts(&request.fact_requests(&loaded.policy))
                .await,
        )
    } else {
        None
    };
    let reviewed = request.validate(&loaded.policy, facts.as_ref());
    let d = &reviewed.decision;
    for f in &d.findings {
        w.findings
            .get_or_create(&FindingLabels {
                rule: f.rule.clone(),
                mode: f.mode.as_str(),
            })
            .inc();
    }
    w.count(
        "validate",
        if d.allowed { "allowed" } else { "denied" },
        started,
    );
    tracing::info!(
        uid = %d.uid,
        kind = %d.kind,
        namespace = d.namespace.as_deref().unwrap_or(""),
        name = %d.name,
        operation = %d.operation,
        user = d.username.as_deref().unwrap_or(""),
        allowed = d.allowed,
        rules = %d.rules().join(","),
        enforce = d.with_mode(Mode::Enforce).count(),
        warn = d.with_mode(Mode::Warn).count(),
        audit = d.with_mode(Mode::Audit).count(),
        exempt = ?d.exempt,
        skipped = d.skipped.map(|s| s.as_str()).unwrap_or(""),
        micros = started.elapsed().as_micros() as u64,
        "admission decision"
    );
    axum::Json(reviewed.response).into_response()
}

async fn mutate(State(w): State<Arc<Webhook>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let (_slot, value) = match w.begin("mutate", &headers, &body, started) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let request = match Request::parse(&value) {
        Ok(r) => r,
        Err(e) => return *w.refuse("mutate", started, StatusCode::BAD_REQUEST, e.to_string()),
    };
    let loaded = w.current();
    let plan = request.mutations(&loaded.policy);
    let facts = loaded
        .facts
        .digests(plan.iter().filter(|m| m.resolve).map(|m| &m.to_reference))
        .await;
    let out = request.mutate(&loaded.policy, &facts);
    let d = &out.decision;
    w.count(
        "mutate",
        if out.changed.is_empty() {
            "allowed"
        } else {
            "patched"
        },
        started,
    );
    tracing::info!(
        uid = %d.uid,
        kind = %d.kind,
        namespace = d.namespace.as_deref().unwrap_or(""),
        name = %d.name,
        operation = %d.operation,
        changed = out.changed.len(),
        unpinned = out.unpinned,
        images = %out.changed.iter().map(|(m, to)| format!("{}={to}", m.from)).collect::<Vec<_>>().join(","),
        micros = started.elapsed().as_micros() as u64,
        "admission mutation"
    );
    axum::Json(out.response).into_response()
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `wharf admission certs`.
fn certs(args: CertsArgs) -> anyhow::Result<()> {
    use base64::Engine as _;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
    };
    let files = ["ca.crt", "ca.key", "tls.crt", "tls.key"].map(|f| args.out.join(f));
    if !args.force
        && let Some(f) = files.iter().find(|f| f.exists())
    {
        anyhow::bail!("{} exists (give --force to replace it)", f.display());
    }
    let now = time::OffsetDateTime::now_utc();
    let not_before = now - time::Duration::hours(1);
    let not_after = now + time::Duration::days(i64::from(args.days));

    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "Wharf admission webhook CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let ca_cert = ca.self_signed(&ca_key).context("signing the CA")?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf = CertificateParams::new(args.dns.clone()).context("the DNS names")?;
    for ip in &args.ips {
        leaf.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    let cn = args
        .dns
        .first()
        .cloned()
        .unwrap_or_else(|| "wharf-admission".into());
    leaf.distinguished_name.push(DnType::CommonName, cn);
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    let key = KeyPair::generate().context("generating the serving key")?;
    let cert = leaf
        .signed_by(&key, &issuer)
        .context("signing the serving certificate")?;

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write_file(&files[0], ca_cert.pem().as_bytes(), 0o644)?;
    write_file(&files[1], ca_key_pem.as_bytes(), 0o600)?;
    write_file(&files[2], cert.pem().as_bytes(), 0o644)?;
    write_file(&files[3], key.serialize_pem().as_bytes(), 0o600)?;
    eprintln!(
        "wrote {} (CA), {} (its key: keep it offline or delete it), {} and {} (the webhook's \
         serving pair, valid {} days for {}); the caBundle of the webhook configuration:",
        files[0].display(),
        files[1].display(),
        files[2].display(),
        files[3].display(),
        args.days,
        args.dns.join(", ")
    );
    println!(
        "{}",
        base64::engine::general_purpose::STANDARD.encode(ca_cert.pem())
    );
    Ok(())
}

/// Writes `path` with `mode` (replacing it), so keys are never readable by others, not even
/// for a moment.
fn write_file(path: &std::path::Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}
