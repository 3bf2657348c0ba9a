//! `wharf serve`: the registry server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::{Config, LogFormat, TlsClientAuth};

/// Flags of `wharf serve`; each also has an environment variable and a config-file key.
#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:5000).
    #[arg(long, env = "WHARF_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Serve Prometheus /metrics (unauthenticated, plain HTTP) on this address; none by default.
    #[arg(long, env = "WHARF_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Directory holding blobs and metadata (default ./wharf-data). It must exist (an empty
    /// directory will do, such as a freshly mounted volume) unless --init is given.
    #[arg(long, env = "WHARF_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Create the data directory when it does not exist (a first start). Without it a missing
    /// data directory is an error: a mistyped path must not start a new, empty registry.
    #[arg(long)]
    pub init: bool,
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, env = "WHARF_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, env = "WHARF_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Serve HTTPS with this PEM certificate chain (leaf first); reloaded when the file changes.
    #[arg(long, env = "WHARF_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, SEC1 or RSA).
    #[arg(long, env = "WHARF_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Request client certificates verified against the CA certificate(s) in this PEM file.
    #[arg(long, env = "WHARF_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// With --tls-client-ca: refuse clients without a certificate (required, the default) or
    /// let them in without an identity (optional).
    #[arg(long, env = "WHARF_TLS_CLIENT_AUTH")]
    pub tls_client_auth: Option<TlsClientAuth>,
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    cfg.apply_overrides(args.listen, args.data_dir, args.log_format);
    if args.metrics_listen.is_some() {
        cfg.metrics.listen = args.metrics_listen;
    }
    cfg.apply_tls_overrides(
        args.tls_cert,
        args.tls_key,
        args.tls_client_ca,
        args.tls_client_auth,
    );
    let _log = init_logging(&cfg)?;
    return_large_allocations();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wharf")
        .build()
        .context("starting the async runtime")?
        .block_on(serve(cfg, args.init))
}

/// Checks the data directory before anything is written into it: an existing directory (empty
/// or not) is used; a missing one is created only with `init`; anything else is an error.
fn check_data_dir(data: &Path, init: bool) -> anyhow::Result<()> {
    match std::fs::metadata(data) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => anyhow::bail!("the data directory {} is not a directory", data.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if init {
                Ok(())
            } else {
                anyhow::bail!(
                    "no data directory at {} (a mistyped --data-dir or storage.data_dir? give \
                     `wharf serve --init` to create a new registry there)",
                    data.display()
                )
            }
        }
        Err(e) => {
            Err(anyhow::Error::new(e)
                .context(format!("reading the data directory {}", data.display())))
        }
    }
}

/// Allocations at or above this size get their own mapping, returned to the system when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 4 << 20;

/// glibc raises its mmap threshold to the size of the largest freed mapping (up to 32 MiB); after
/// one argon2 check (19 MiB) such buffers come from per-thread arenas and their memory stays in
/// the process. A fixed threshold keeps large buffers in mappings of their own: a login flood
/// measured 144 MiB RSS retained afterwards with the dynamic threshold, 30 MiB with this one.
fn return_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only changes allocator parameters; it is called before any other thread
    // exists.
    if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) } != 1 {
        tracing::warn!("setting the allocator's mmap threshold failed");
    }
}

/// Wharf's version, as `wharf_build_info` names it.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git revision the binary was built from (build.rs), or `unknown`.
pub(crate) const REVISION: &str = env!("WHARF_REVISION");

/// Logs to stderr: Wharf's crates at `[log] level` (info), the libraries at `[log] libraries`
/// (warn), unless `WHARF_LOG` gives a whole filter.
fn init_logging(cfg: &Config) -> anyhow::Result<crate::logging::LogGuard> {
    let filter = match std::env::var("WHARF_LOG") {
        Ok(f) if !f.trim().is_empty() => tracing_subscriber::EnvFilter::try_new(&f)
            .with_context(|| format!("WHARF_LOG={f:?} is not a valid log filter"))?,
        _ => {
            let f = cfg.log.filter();
            tracing_subscriber::EnvFilter::try_new(&f)
                .with_context(|| format!("[log] level: {f:?} is not a valid log filter"))?
        }
    };
    Ok(crate::logging::init(filter, cfg.log.format))
}

async fn serve(cfg: Config, init: bool) -> anyhow::Result<()> {
    // First, so a bad certificate stops the start before anything is created.
    let tls = match cfg.tls_settings()? {
        Some(s) => Some(registry::ReloadingTls::load(s).context("loading the TLS certificate")?),
        None => None,
    };
    // Then the rest of the settings that can be wrong, before anything is written.
    let auth_settings = cfg.auth.settings(tls.is_some())?;
    let tag_rules = cfg.tags.rules()?;
    let retention_rules = crate::retention::rules(&cfg)?;
    let signing_policy = cfg.signing.policy()?;
    let gc_options = cfg.gc.options()?;
    // And the port: a busy one stops the start before the data directory or a key is made.
    // Bound, not yet listening: until everything below has loaded (identities, the htpasswd
    // file), a connection is refused, never queued to a registry that may not start.
    let socket = if cfg.server.listen.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .context("creating the listening socket")?;
    socket
        .set_reuseaddr(true)
        .context("creating the listening socket")?;
    socket
        .bind(cfg.server.listen)
        .with_context(|| format!("binding {}", cfg.server.listen))?;
    let data = &cfg.storage.data_dir;
    check_data_dir(data, init)?;
    // Owner only (0700): password hashes, the audit log, token keys and private images.
    store::private_dir(data)
        .with_context(|| format!("creating data directory {}", data.display()))?;
    let blobs = store::FsBlobStore::open(data)
        .with_context(|| format!("opening blob store in {}", data.display()))?
        .small_blob_cache(cfg.storage.small_blob_cache_bytes);
    let meta = store::RedbMetaStore::open(&data.join("meta.redb"))
        .with_context(|| format!("opening metadata database in {}", data.display()))?;
    let limits = cfg.limits();
    let meta: Arc<dyn store::MetaStore> = Arc::new(meta);
    let ids = service::identities::Identities::new(meta.clone());
    if let Some(path) = &cfg.auth.htpasswd {
        crate::admin::import_htpasswd(&ids, path).await?;
    }
    let keys = crate::keys::load_or_create(data)?;
    let tls_configured = tls.is_some();
    let access = service::access::AccessControl::new(auth_settings.clone(), keys, ids)
        .await
        .context("loading identities")?;
    let auth_enforced = access.enforced();
    let access = Arc::new(access);
    let blobs: Arc<dyn store::BlobStore> = Arc::new(blobs);
    // One table of per-digest locks for everything that commits, links or deletes blobs.
    let locks = Arc::new(store::DigestLocks::new());
    let mut svc = service::Service::builder(blobs.clone(), meta.clone())
        .locks(locks.clone())
        .access(access.clone())
        .limits(limits)
        .tag_rules(tag_rules)
        .retention(retention_rules);
    if let Some(policy) = signing_policy {
        tracing::info!(keys = policy.keys().len(), "signature policy loaded");
        svc = svc.signing(Arc::new(policy));
    }
    let svc = Arc::new(svc.build().context("configuring the registry")?);
    let mut reg = registry::Registry::builder(svc.clone())
        .access_log(cfg.log.access)
        .build_info(VERSION, REVISION);
    if let Some(t) = &tls {
        reg = reg.tls(t);
    }
    // The pull-through cache, when upstreams are configured: a decorator of the registry's
    // source of pulls, plus its management routes, metrics and eviction.
    let mut cache_capability = None;
    // What pulls read: the store, or the cache's decorator of it (admission lookups too).
    let pull_source: Arc<dyn service::source::ContentSource>;
    if let Some(c) = crate::cache::build(&cfg.cache, blobs, meta, locks)? {
        let capability = Arc::new(cache::CacheCapability::new(c.clone(), svc.clone()));
        let source: Arc<dyn service::source::ContentSource> =
            Arc::new(cache::CachedSource::new(c, Arc::new(svc.store_source())));
        pull_source = source.clone();
        reg = reg.source(source).capability(capability.clone());
        cache_capability = Some(capability);
    } else {
        pull_source = Arc::new(svc.store_source());
        reg = reg.capability(Arc::new(cache::http::NoCache));
    }
    // Vulnerability scanning, when `[scan]` is configured (docs/scanning.md).
    let mut scanner = None;
    match &cfg.scan {
        Some(sc) => {
            let cap = crate::scan::capability(sc, svc.clone(), data)?;
            scanner = Some(cap.clone());
            reg = reg.capability(cap);
        }
        None => reg = reg.capability(Arc::new(scan::capability::NoScan)),
    }
    // The admission webhook, when `[admission]` is configured (docs/admission.md).
    let mut admission_reloader = None;
    if let Some(ac) = &cfg.admission {
        let mut names: Vec<String> = ac
            .names
            .iter()
            .map(|n| oci::image_ref::normalize_registry(n))
            .collect();
        // The address the registry listens on names it too (`127.0.0.1:5000/team/app`).
        if !cfg.server.listen.ip().is_unspecified() && cfg.server.listen.port() != 0 {
            names.push(cfg.server.listen.to_string());
        }
        let local = crate::admission::facts::LocalRegistry {
            names,
            source: pull_source,
            service: svc.clone(),
            scan: scanner,
        };
        let webhook = Arc::new(
            crate::admission::Webhook::from_config(ac, Some(Arc::new(local)))
                .context("[admission]")?,
        );
        tracing::info!(policy = %ac.policy.display(), names = ?ac.names, "admission webhook on /admission/v1/validate and /admission/v1/mutate");
        admission_reloader = Some(webhook.clone());
        reg = reg.capability(Arc::new(crate::admission::AdmissionCapability(webhook)));
    }
    let reg = reg.build();
    let _admission_reloader = admission_reloader.map(crate::admission::spawn_policy_reloader);

    svc.collector().set_defaults(gc_options);
    if cfg.gc.enabled {
        svc.collector().clone().spawn_schedule(
            Duration::from_secs(cfg.gc.interval_seconds),
            Duration::from_secs(cfg.gc.usage_interval_seconds),
        );
    }

    let listener = socket
        .listen(1024)
        .with_context(|| format!("listening on {}", cfg.server.listen))?;
    let addr = listener.local_addr()?;
    if let Some(w) = auth_settings.realm_warning(addr) {
        tracing::warn!(%addr, "{w}");
    }
    if !addr.ip().is_loopback() && !auth_enforced {
        tracing::warn!(
            %addr,
            "listening beyond loopback WITHOUT AUTHENTICATION: anyone who can reach this address can push, pull and delete; create a user (wharf user add) or set auth.mode = \"on\""
        );
    }
    if !addr.ip().is_loopback() && !tls_configured {
        tracing::warn!(
            %addr,
            auth = auth_enforced,
            "listening beyond loopback WITHOUT TLS (plain HTTP): passwords, tokens and image content cross the network in clear text and can be read or altered in transit, and every client must be configured to treat this registry as insecure; set --tls-cert and --tls-key (WHARF_TLS_CERT, WHARF_TLS_KEY or [tls] in the config file)"
        );
    }
    tracing::info!(%addr, data_dir = %data.display(), auth = auth_enforced, tls = tls_configured, "wharf registry listening");

    let opts = registry::ServeOptions {
        tls,
        ..cfg.server.serve_options()
    };
    // Metrics name every repository and its size: they get a listener of their own, which
    // only the operator's scraper should be able to reach.
    let metrics_task = match cfg.metrics.listen {
        Some(at) => {
            let l = tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("binding the metrics listener {at}"))?;
            let at = l.local_addr()?;
            tracing::info!(%at, "metrics listening (plain HTTP, no authentication)");
            let metrics_opts = registry::ServeOptions {
                max_connections: 64,
                ..cfg.server.serve_options()
            };
            let router = reg.metrics_router();
            Some(AbortOnDrop(tokio::spawn(async move {
                if let Err(e) =
                    registry::serve(l, router, metrics_opts, std::future::pending()).await
                {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            })))
        }
        None => {
            tracing::info!(
                "no metrics listener: set [metrics] listen (or --metrics-listen) to serve /metrics"
            );
            None
        }
    };
    // Last-pull times and retention policies (docs/retention.md).
    svc.spawn_pull_flusher(service::pulls::FLUSH_INTERVAL);
    if let Some(c) = &cache_capability
        && c.cache().config().max_bytes > 0
    {
        let every = cfg.cache.eviction_interval_seconds.unwrap_or(60);
        c.spawn_eviction(Duration::from_secs(every));
    }
    svc.spawn_retention();
    let shutdown_reg = reg.clone();
    let delay = Duration::from_secs(cfg.server.shutdown_delay_seconds);
    let mut signals = Signals::new()?;
    registry::serve(listener, reg.router(), opts, async move {
        let first = signals.next().await;
        shutdown_reg.set_ready(false);
        // SIGTERM is how an orchestrator stops a server that load balancers still route to:
        // keep serving (readiness 503) until they have noticed. Ctrl-C is a person at a
        // terminal, who does not want to wait.
        if first == Stop::Term && !delay.is_zero() {
            tracing::info!(
                delay_seconds = delay.as_secs(),
                "SIGTERM: /readyz answers 503; still serving until the delay passes ([server] shutdown_delay_seconds; a second signal skips it)"
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = signals.next() => tracing::info!("second signal: not waiting any longer"),
            }
        }
        tracing::info!("shutting down: no new connections; finishing in-flight requests");
    })
    .await
    .context("serving")?;
    drop(metrics_task);
    if let Err(e) = svc.flush_pulls().await {
        tracing::warn!(error = %e, "flushing pull times on shutdown failed");
    }
    access.flush_audit(Duration::from_secs(5)).await;
    tracing::info!("stopped");
    Ok(())
}

/// Aborts a background task when dropped (the metrics listener, when the server stops).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Which signal asked the server to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// SIGTERM (an orchestrator, systemd, kill).
    Term,
    /// SIGINT (Ctrl-C).
    Interrupt,
}

/// SIGTERM and SIGINT, installed once so that a second signal is heard too.
struct Signals {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn next(&mut self) -> Stop {
        tokio::select! {
            _ = self.term.recv() => Stop::Term,
            _ = self.interrupt.recv() => Stop::Interrupt,
        }
    }
}
