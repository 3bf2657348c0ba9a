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
    init_logging();
    let policy_path = args.policy.context("--policy FILE is required")?;
    let text = std::fs::read_to_string(&policy_path)
        .with_context(|| format!("reading the policy {}", policy_path.display()))?;
    let policy = Policy::from_toml(&text).with_context(|| format!("{}", policy_path.display()))?;
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
