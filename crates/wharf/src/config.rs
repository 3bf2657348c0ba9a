//! Configuration: defaults, overlaid by a TOML file, overlaid by environment variables and flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// The whole configuration file. Every key is optional; see docs/configuration.md.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Network settings.
    pub server: ServerConfig,
    /// Where data lives.
    pub storage: StorageConfig,
    /// Request limits.
    pub limits: LimitsConfig,
    /// Logging.
    pub log: LogConfig,
}

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Seconds to let in-flight requests finish after SIGTERM.
    pub shutdown_grace_seconds: u64,
    /// Seconds a client has to send a request's headers.
    pub header_read_timeout_seconds: u64,
    /// Most connections served at once.
    pub max_connections: usize,
}

/// `[storage]`
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory for blobs (`blobs/`), uploads (`uploads/`) and metadata (`meta.redb`).
    pub data_dir: PathBuf,
}

/// `[limits]`
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest manifest accepted, in bytes.
    pub max_manifest_bytes: usize,
    /// Largest page size for `_catalog` and `tags/list`.
    pub max_page: usize,
}

/// `[log]`
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `wharf=debug,info`; `WHARF_LOG` overrides it.
    pub level: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, Deserialize, clap::ValueEnum, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            shutdown_grace_seconds: 30,
            header_read_timeout_seconds: 30,
            max_connections: 4096,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("wharf-data"),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = registry::Limits::default();
        LimitsConfig {
            max_manifest_bytes: l.max_manifest_bytes,
            max_page: l.max_page,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl Config {
    /// Reads a TOML file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }

    /// Applies values given as flags or environment variables, which win over the file.
    pub fn apply_overrides(
        &mut self,
        listen: Option<SocketAddr>,
        data_dir: Option<PathBuf>,
        log_format: Option<LogFormat>,
    ) {
        if let Some(l) = listen {
            self.server.listen = l;
        }
        if let Some(d) = data_dir {
            self.storage.data_dir = d;
        }
        if let Some(f) = log_format {
            self.log.format = f;
        }
    }

    /// The HTTP API's limits.
    pub fn limits(&self) -> registry::Limits {
        registry::Limits {
            max_manifest_bytes: self.limits.max_manifest_bytes,
            max_page: self.limits.max_page,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_overrides() {
        let cfg: Config = toml::from_str(
            "[server]\nlisten = \"127.0.0.1:6000\"\n[storage]\ndata_dir = \"/tmp/x\"\n[log]\nformat = \"json\"\n",
        )
        .unwrap();
        assert_eq!(cfg.server.listen.port(), 6000);
        assert_eq!(cfg.log.format, LogFormat::Json);
        let mut cfg = cfg;
        cfg.apply_overrides(Some("127.0.0.1:7000".parse().unwrap()), None, None);
        assert_eq!(cfg.server.listen.port(), 7000);
        assert_eq!(cfg.storage.data_dir, PathBuf::from("/tmp/x"));
        assert!(toml::from_str::<Config>("[server]\nbogus = 1\n").is_err());
    }

    #[test]
    fn defaults_are_loopback() {
        assert!(Config::default().server.listen.ip().is_loopback());
    }
}
