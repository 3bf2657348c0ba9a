//! `wharf admission`: the validating admission webhook (see docs/admission.md, "Webhook").
//!
//! `POST /admission/v1/validate` takes an `admission.k8s.io/v1` `AdmissionReview` and answers
//! it with the policy engine ([`policy::admission::review`]); `GET /healthz` answers `ok`.
//! HTTPS with the registry's TLS (certificate and key reloaded when they change).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use policy::Mode;
use policy::Policy;

/// Largest review body accepted (the API server's own request limit is 3 MiB).
pub const MAX_BODY: usize = 3 << 20;

/// Flags of `wharf admission`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Serves POST /admission/v1/validate (AdmissionReview admission.k8s.io/v1) and \
GET /healthz. The API server only calls webhooks over HTTPS: give --tls-cert and --tls-key \
(reloaded when the files change). See docs/admission.md."
)]
pub struct AdmissionArgs {
    /// The policy file (TOML, see docs/admission.md).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// Address to listen on (loopback unless set).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// PEM certificate chain to serve HTTPS with (leaf first).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Runs the webhook until SIGTERM or SIGINT.
pub fn run(args: AdmissionArgs) -> anyhow::Result<()> {
    init_logging();
    let text = std::fs::read_to_string(&args.policy)
        .with_context(|| format!("reading the policy {}", args.policy.display()))?;
    let policy = Policy::from_toml(&text).with_context(|| format!("{}", args.policy.display()))?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(
            registry::ReloadingTls::load(registry::TlsSettings::new(c, k))
                .context("loading the TLS certificate")?,
        ),
        _ => None,
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wharf-admission")
        .build()
        .context("starting the async runtime")?
        .block_on(serve(args.listen, policy, tls))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // Names from reviews are untrusted: no forged lines, no terminal escapes.
        .fmt_fields(crate::escape::EscapedFields::default())
        .init();
}

async fn serve(
    listen: SocketAddr,
    policy: Policy,
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
    tracing::info!(
        address = %listener.local_addr()?,
        https,
        "admission webhook listening"
    );
    let opts = registry::ServeOptions {
        tls,
        ..Default::default()
    };
    registry::serve(listener, router(Arc::new(policy)), opts, async {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight reviews");
    })
    .await
    .context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

/// The webhook's routes.
pub fn router(policy: Arc<Policy>) -> Router {
    Router::new()
        .route("/admission/v1/validate", post(validate))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(policy)
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

async fn validate(State(policy): State<Arc<Policy>>, headers: HeaderMap, body: Bytes) -> Response {
    if !is_json(&headers) {
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json".into(),
        );
    }
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return problem(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
    };
    let reviewed = match policy::admission::review(&policy, &value) {
        Ok(r) => r,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let d = &reviewed.decision;
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
        "admission decision"
    );
    axum::Json(reviewed.response).into_response()
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
