//! `wharf serve`: the registry server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::{Config, LogFormat};

/// Flags of `wharf serve`; each also has an environment variable and a config-file key.
#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:5000).
    #[arg(long, env = "WHARF_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory holding blobs and metadata (default ./wharf-data).
    #[arg(long, env = "WHARF_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, env = "WHARF_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, env = "WHARF_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    cfg.apply_overrides(args.listen, args.data_dir, args.log_format);
    init_logging(&cfg);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wharf")
        .build()
        .context("starting the async runtime")?
        .block_on(serve(cfg))
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cfg.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let data = &cfg.storage.data_dir;
    std::fs::create_dir_all(data)
        .with_context(|| format!("creating data directory {}", data.display()))?;
    let blobs = store::FsBlobStore::open(data)
        .with_context(|| format!("opening blob store in {}", data.display()))?;
    let meta = store::RedbMetaStore::open(&data.join("meta.redb"))
        .with_context(|| format!("opening metadata database in {}", data.display()))?;
    let limits = cfg.limits();
    let reg = registry::Registry::new(Arc::new(blobs), Arc::new(meta), limits);

    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .with_context(|| format!("binding {}", cfg.server.listen))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "listening beyond loopback without TLS or authentication: anyone who can reach this address can push, pull and delete"
        );
    }
    tracing::info!(%addr, data_dir = %data.display(), "wharf registry listening");

    let opts = registry::ServeOptions {
        header_read_timeout: Duration::from_secs(cfg.server.header_read_timeout_seconds),
        max_connections: cfg.server.max_connections,
        shutdown_grace: Duration::from_secs(cfg.server.shutdown_grace_seconds),
    };
    let shutdown_reg = reg.clone();
    registry::serve(listener, reg.router(), opts, async move {
        shutdown_signal().await;
        shutdown_reg.set_ready(false);
        tracing::info!("shutting down: finishing in-flight requests");
    })
    .await
    .context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
