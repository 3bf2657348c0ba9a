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
    /// HTTPS; plain HTTP when no certificate is set.
    pub tls: TlsConfig,
    /// Access control.
    pub auth: AuthConfig,
    /// Trusted signing keys and signed-pull rules.
    pub signing: SigningConfig,
    /// Tag rules.
    pub tags: TagsConfig,
    /// Garbage collection and storage use (docs/gc.md).
    pub gc: GcConfig,
    /// Pull-through cache of upstream registries (docs/cache.md).
    pub cache: cache::CacheConfig,
    /// `[[retention]]` policies by repository pattern (docs/retention.md).
    pub retention: Vec<RetentionConfig>,
    /// When the server applies the retention policies.
    pub retention_schedule: RetentionScheduleConfig,
    /// The Prometheus metrics listener.
    pub metrics: MetricsConfig,
    /// Vulnerability scanning: scan on push, findings API, pull rules (docs/scanning.md).
    /// Off unless the section is present.
    pub scan: Option<scan::capability::ScanConfig>,
    /// The admission webhook on the registry's listener (docs/admission.md). Off unless the
    /// section is present.
    pub admission: Option<AdmissionConfig>,
}

/// `[admission]`: `wharf serve` also answers `POST /admission/v1/validate` and `/mutate`, with
/// images on this Wharf looked up in-process.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionConfig {
    /// The policy file (TOML; reloaded when it changes).
    pub policy: std::path::PathBuf,
    /// Registry hosts by which image references name this Wharf (`wharf.example.com`,
    /// `wharf.wharf.svc:5000`; the listen address counts too unless it is 0.0.0.0 or ::):
    /// those images are looked up in-process (through the pull-through cache, with the
    /// scanner's results); others over HTTP.
    #[serde(default)]
    pub names: Vec<String>,
    /// All registry lookups of one review end within this many milliseconds.
    #[serde(default = "AdmissionConfig::default_deadline")]
    pub lookup_deadline_ms: u64,
    /// Most registry lookups in flight at once.
    #[serde(default = "AdmissionConfig::default_lookups")]
    pub max_lookups: usize,
    /// Most reviews answered at once (more: 503).
    #[serde(default = "AdmissionConfig::default_reviews")]
    pub max_reviews: usize,
    /// Seconds a tag's digest (and an unverified signature verdict) is reused.
    #[serde(default = "AdmissionConfig::default_tag_ttl")]
    pub tag_ttl_seconds: u64,
    /// Seconds a verified signature verdict is reused.
    #[serde(default = "AdmissionConfig::default_verdict_ttl")]
    pub verdict_ttl_seconds: u64,
    /// Registries (`host[:port]`) reached over plain HTTP for lookups.
    #[serde(default)]
    pub insecure_registries: Vec<String>,
}

impl AdmissionConfig {
    fn default_deadline() -> u64 {
        2000
    }
    fn default_lookups() -> usize {
        32
    }
    fn default_reviews() -> usize {
        512
    }
    fn default_tag_ttl() -> u64 {
        30
    }
    fn default_verdict_ttl() -> u64 {
        300
    }
}

/// `[metrics]`: Prometheus `/metrics` is served on a listener of its own (metrics name every
/// repository and its size), never on the registry's listener.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the plain-HTTP, unauthenticated metrics listener, e.g. `127.0.0.1:5001`; no
    /// metrics are served when unset.
    pub listen: Option<SocketAddr>,
}

/// One `[[retention]]` policy; the first whose `repos` matches a repository applies to it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Repository pattern.
    pub repos: String,
    /// Retain the N most recently pushed tags.
    #[serde(default)]
    pub keep_last: Option<usize>,
    /// Retain the N highest semantic-version tags.
    #[serde(default)]
    pub keep_semver: Option<usize>,
    /// Count `keep_semver` per major version.
    #[serde(default)]
    pub per_major: bool,
    /// Tag globs always kept.
    #[serde(default)]
    pub keep_tags: Vec<String>,
    /// Delete untagged manifests older than this (seconds, or "30d", "12h", ...).
    #[serde(default)]
    pub untagged_older_than: Option<DurationValue>,
    /// Retain tags pulled within this long (seconds, or "90d", ...).
    #[serde(default)]
    pub unpulled_for: Option<DurationValue>,
}

/// A duration: seconds, or a number with a unit (`s`, `m`, `h`, `d`, `w`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    /// Seconds.
    Seconds(u64),
    /// `30d`, `12h`, ...
    Text(String),
}

/// `[retention_schedule]`
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionScheduleConfig {
    /// Apply the policies on a schedule.
    pub enabled: bool,
    /// Seconds between runs (the first one after one interval).
    pub interval_seconds: u64,
}

impl Default for RetentionScheduleConfig {
    fn default() -> Self {
        RetentionScheduleConfig {
            enabled: true,
            interval_seconds: 24 * 3600,
        }
    }
}

/// `[gc]`: scheduled garbage collection.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcConfig {
    /// Run collections on a schedule.
    pub enabled: bool,
    /// Seconds between collections.
    pub interval_seconds: u64,
    /// Links, blob files and touched blobs younger than this are kept (seconds).
    pub grace_seconds: u64,
    /// Uploads idle for longer than this are deleted (seconds).
    pub upload_expiry_seconds: u64,
    /// Seconds between refreshes of the storage-use gauges.
    pub usage_interval_seconds: u64,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            enabled: true,
            interval_seconds: 24 * 3600,
            grace_seconds: 3600,
            upload_expiry_seconds: 24 * 3600,
            usage_interval_seconds: 900,
        }
    }
}

impl GcConfig {
    /// The collector's options for scheduled and API-triggered runs.
    pub fn options(&self) -> anyhow::Result<service::gc::GcOptions> {
        anyhow::ensure!(
            self.grace_seconds >= 60,
            "gc.grace_seconds must be at least 60: clients need time between pushing blobs and their manifest"
        );
        anyhow::ensure!(
            self.interval_seconds >= 60,
            "gc.interval_seconds must be at least 60"
        );
        anyhow::ensure!(
            self.upload_expiry_seconds >= self.grace_seconds,
            "gc.upload_expiry_seconds must be at least gc.grace_seconds"
        );
        Ok(service::gc::GcOptions {
            dry_run: false,
            grace: std::time::Duration::from_secs(self.grace_seconds),
            upload_expiry: std::time::Duration::from_secs(self.upload_expiry_seconds),
        })
    }
}

/// `[tags]`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TagsConfig {
    /// `[[tags.immutable]]` rules.
    pub immutable: Vec<ImmutableTagConfig>,
}

/// One `[[tags.immutable]]` rule: give `tags` (a glob) or `semver = true`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImmutableTagConfig {
    /// Repository pattern.
    pub repos: String,
    /// Tag glob (`*`, `?`).
    #[serde(default)]
    pub tags: Option<String>,
    /// Every semantic-version tag.
    #[serde(default)]
    pub semver: bool,
}

impl TagsConfig {
    /// The registry's immutable-tag rules.
    pub fn rules(&self) -> anyhow::Result<service::tagrules::TagRules> {
        use service::tagrules::{ImmutableRule, TagMatch};
        let mut out = Vec::new();
        for r in &self.immutable {
            let repos = auth::Pattern::new(&r.repos).map_err(anyhow::Error::msg)?;
            let tags = match (&r.tags, r.semver) {
                (Some(g), false) => TagMatch::Glob(oci::Glob::new(g)),
                (None, true) => TagMatch::Semver,
                _ => anyhow::bail!(
                    "immutable tag rule for {}: give exactly one of `tags = \"GLOB\"` or `semver = true`",
                    r.repos
                ),
            };
            out.push(ImmutableRule { repos, tags });
        }
        Ok(service::tagrules::TagRules::new(out))
    }
}

/// `[signing]`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SigningConfig {
    /// Trusted public keys (cosign `.pub` PEM files) by name.
    pub trusted_keys: std::collections::BTreeMap<String, PathBuf>,
    /// Repositories whose images must carry a verified signature to be pulled.
    pub require: Vec<RequireSignature>,
}

/// One `[[signing.require]]` rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequireSignature {
    /// Repository pattern (`*` and `?` wildcards).
    pub repos: String,
    /// Names of trusted keys that count; all of them when empty.
    #[serde(default)]
    pub keys: Vec<String>,
}

impl SigningConfig {
    /// Loads the keys and checks the rules; `None` when nothing is configured.
    pub fn policy(&self) -> anyhow::Result<Option<service::signatures::SigningPolicy>> {
        if self.trusted_keys.is_empty() && self.require.is_empty() {
            return Ok(None);
        }
        let mut keys = Vec::new();
        for (name, path) in &self.trusted_keys {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading trusted key {name} from {}", path.display()))?;
            let key = trust::PublicKey::from_pem(&pem)
                .map_err(|e| anyhow::anyhow!("trusted key {name} ({}): {e}", path.display()))?;
            keys.push(service::signatures::TrustedKey {
                name: name.clone(),
                key,
            });
        }
        let mut rules = Vec::new();
        for r in &self.require {
            let repos = auth::Pattern::new(&r.repos).map_err(anyhow::Error::msg)?;
            for k in &r.keys {
                anyhow::ensure!(
                    self.trusted_keys.contains_key(k),
                    "signing rule for {} names unknown key {k}",
                    r.repos
                );
            }
            rules.push(service::signatures::RequireRule {
                repos,
                keys: r.keys.clone(),
            });
        }
        Ok(Some(service::signatures::SigningPolicy::new(keys, rules)))
    }
}

/// `[auth]`
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `auto` (on as soon as a user or robot exists), `on`, or `off`.
    pub mode: AuthModeConfig,
    /// Token service name (`aud`, and `service` in challenges).
    pub service: String,
    /// Token endpoint URL announced in challenges; derived from the request's Host when unset.
    pub realm: Option<String>,
    /// Access token lifetime in seconds.
    pub token_ttl_seconds: u64,
    /// Refresh token lifetime in seconds.
    pub refresh_ttl_seconds: u64,
    /// Repository patterns anyone may pull, e.g. `["public/*"]`.
    pub anonymous_pull: Vec<String>,
    /// An htpasswd file (bcrypt entries) whose users are imported at start.
    pub htpasswd: Option<PathBuf>,
    /// Failed logins of one account from one address before further attempts are delayed
    /// (2 s, doubling up to `lockout_seconds`); an address with 5 times as many failures across
    /// accounts is delayed from each account's first failure.
    pub max_failed_logins: u32,
    /// Failed logins are forgotten after this many seconds without a new one.
    pub failed_login_window_seconds: u64,
    /// Longest delay in seconds between two attempts of one account from one address.
    pub lockout_seconds: u64,
    /// Reverse proxies (CIDRs or addresses) whose `X-Forwarded-For` names the client, e.g.
    /// `["10.0.0.0/8"]`. From any other peer the header is ignored.
    pub trusted_proxies: Vec<String>,
}

/// When access control applies.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthModeConfig {
    /// On as soon as one user or robot exists.
    #[default]
    Auto,
    /// Always on.
    On,
    /// Always off.
    Off,
}

impl Default for AuthConfig {
    fn default() -> Self {
        let d = service::access::AuthSettings::default();
        AuthConfig {
            mode: AuthModeConfig::Auto,
            service: d.service,
            realm: None,
            token_ttl_seconds: d.token_ttl_secs,
            refresh_ttl_seconds: d.refresh_ttl_secs,
            anonymous_pull: Vec::new(),
            htpasswd: None,
            max_failed_logins: d.max_failures,
            failed_login_window_seconds: d.failure_window_secs,
            lockout_seconds: d.lockout_secs,
            trusted_proxies: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// The registry's access-control settings.
    pub fn settings(&self, tls: bool) -> anyhow::Result<service::access::AuthSettings> {
        use service::access::AuthMode;
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .map(|c| service::access::Cidr::parse(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("[auth] trusted_proxies: {e}"))?;
        Ok(service::access::AuthSettings {
            mode: match self.mode {
                AuthModeConfig::Auto => AuthMode::Auto,
                AuthModeConfig::On => AuthMode::On,
                AuthModeConfig::Off => AuthMode::Off,
            },
            service: self.service.clone(),
            issuer: self.service.clone(),
            realm: self.realm.clone(),
            scheme: if tls { "https" } else { "http" },
            token_ttl_secs: self.token_ttl_seconds,
            refresh_ttl_secs: self.refresh_ttl_seconds,
            anonymous_pull: self.anonymous_pull.clone(),
            max_failures: self.max_failed_logins,
            failure_window_secs: self.failed_login_window_seconds,
            lockout_secs: self.lockout_seconds,
            trusted_proxies,
        })
    }
}

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Seconds to let in-flight requests finish after SIGTERM.
    pub shutdown_grace_seconds: u64,
    /// Seconds a client has to send a request's headers (HTTP/1.1).
    pub header_read_timeout_seconds: u64,
    /// Seconds a new connection (after its TLS handshake) has to send its first byte; 0: no limit.
    pub first_byte_timeout_seconds: u64,
    /// Seconds a connection may stay open with no request in progress; 0: no limit.
    pub idle_timeout_seconds: u64,
    /// Longest wait, in seconds, for request-body data (the allowance a slow body spends, see
    /// `body_min_rate_bytes_per_second`); 0: no limit.
    pub body_read_timeout_seconds: u64,
    /// Body bytes per second that keep an upload within `body_read_timeout_seconds`: each
    /// `body_min_rate_bytes_per_second` bytes earn one second of waiting; 0: any data does.
    pub body_min_rate_bytes_per_second: u64,
    /// Seconds a client may take no byte of a response before its connection is closed; 0: no
    /// limit.
    pub write_stall_timeout_seconds: u64,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Most connections open at once from one source address (IPv6: one /64); 0: no limit.
    pub max_connections_per_address: usize,
    /// Seconds the server keeps accepting and serving after SIGTERM, with `/readyz` answering
    /// 503, so load balancers and Kubernetes endpoints stop sending it requests before it stops
    /// listening; then in-flight requests get `shutdown_grace_seconds`. 0: stop listening at
    /// once. SIGINT (Ctrl-C) and a second signal skip the delay.
    pub shutdown_delay_seconds: u64,
}

impl ServerConfig {
    /// The connection loop's limits (TLS is added by the caller).
    pub fn serve_options(&self) -> registry::ServeOptions {
        use std::time::Duration;
        registry::ServeOptions {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_seconds),
            first_byte_timeout: Duration::from_secs(self.first_byte_timeout_seconds),
            idle_timeout: Duration::from_secs(self.idle_timeout_seconds),
            body_read_timeout: Duration::from_secs(self.body_read_timeout_seconds),
            body_min_rate: self.body_min_rate_bytes_per_second,
            write_stall_timeout: Duration::from_secs(self.write_stall_timeout_seconds),
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
            tls: None,
        }
    }
}

/// `[storage]`
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory for blobs (`blobs/`), uploads (`uploads/`) and metadata (`meta.redb`).
    pub data_dir: PathBuf,
    /// Memory budget for holding small blobs (64 KiB or less) in memory; 0 turns it off.
    pub small_blob_cache_bytes: u64,
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
    /// The level of Wharf's own crates (`info`, `debug`, ...), or a whole tracing filter such as
    /// `wharf=debug,hyper=info,warn` when it names targets; `WHARF_LOG` overrides it.
    pub level: String,
    /// The level of the libraries (rustls, hyper, h2, reqwest, redb, ...) when `level` is a
    /// bare level.
    pub libraries: String,
    /// Write the access log: one info line per request, target `wharf::access`.
    pub access: bool,
}

impl LogConfig {
    /// The tracing filter this section asks for (when `WHARF_LOG` is unset).
    pub fn filter(&self) -> String {
        let level = self.level.trim();
        if level.contains('=') || level.contains(',') {
            return level.to_owned();
        }
        let mut f = self.libraries.trim().to_owned();
        for c in WHARF_CRATES {
            f.push(',');
            f.push_str(c);
            f.push('=');
            f.push_str(level);
        }
        f
    }
}

/// The tracing targets of Wharf's own crates (their library names), and `audit`, the target
/// of the audit events (logins, identity changes), which must never be filtered as a library.
pub const WHARF_CRATES: &[&str] = &[
    "wharf", "api", "auth", "cache", "client", "oci", "pin", "policy", "registry", "scan",
    "service", "store", "trust", "versions", "vuln", "audit",
];

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
            first_byte_timeout_seconds: 10,
            idle_timeout_seconds: 60,
            body_read_timeout_seconds: 30,
            body_min_rate_bytes_per_second: 1024,
            write_stall_timeout_seconds: 60,
            max_connections: 4096,
            max_connections_per_address: 256,
            shutdown_delay_seconds: 5,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("wharf-data"),
            small_blob_cache_bytes: store::DEFAULT_SMALL_BLOB_CACHE_BYTES,
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
            libraries: "warn".into(),
            access: true,
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

/// `[tls]`
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first; setting it (with `key_file`) turns HTTPS on.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the certificate (PKCS#8, SEC1 or RSA).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificate(s) client certificates must chain to; turns client certificates on.
    pub client_ca_file: Option<PathBuf>,
    /// With `client_ca_file`: `required` or `optional`.
    pub client_auth: TlsClientAuth,
    /// Seconds between checks of the files for a new certificate; 0 disables reloading.
    pub reload_interval_seconds: u64,
    /// Seconds a client has to complete the TLS handshake.
    pub handshake_timeout_seconds: u64,
}

/// Whether a client certificate is required when a client CA is set.
#[derive(Debug, Clone, Copy, Default, Deserialize, clap::ValueEnum, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsClientAuth {
    /// Clients without a certificate from the client CA are refused.
    #[default]
    Required,
    /// Clients may connect without a certificate; one that is presented must verify.
    Optional,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            client_auth: TlsClientAuth::Required,
            reload_interval_seconds: 5,
            handshake_timeout_seconds: 10,
        }
    }
}

impl Config {
    /// Applies the TLS flags or environment variables, which win over the file.
    pub fn apply_tls_overrides(
        &mut self,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        client_ca: Option<PathBuf>,
        client_auth: Option<TlsClientAuth>,
    ) {
        if cert.is_some() {
            self.tls.cert_file = cert;
        }
        if key.is_some() {
            self.tls.key_file = key;
        }
        if client_ca.is_some() {
            self.tls.client_ca_file = client_ca;
        }
        if let Some(a) = client_auth {
            self.tls.client_auth = a;
        }
    }

    /// The server's TLS settings, `None` for plain HTTP; an error for an incomplete setup.
    pub fn tls_settings(&self) -> anyhow::Result<Option<registry::TlsSettings>> {
        let t = &self.tls;
        let (cert, key) = match (&t.cert_file, &t.key_file) {
            (Some(c), Some(k)) => (c, k),
            (None, None) => {
                anyhow::ensure!(
                    t.client_ca_file.is_none(),
                    "a TLS client CA (--tls-client-ca, tls.client_ca_file) needs a server certificate and key (--tls-cert and --tls-key)"
                );
                return Ok(None);
            }
            (Some(_), None) => anyhow::bail!(
                "a TLS certificate is set but no key: give --tls-key (WHARF_TLS_KEY, tls.key_file)"
            ),
            (None, Some(_)) => anyhow::bail!(
                "a TLS key is set but no certificate: give --tls-cert (WHARF_TLS_CERT, tls.cert_file)"
            ),
        };
        let mut s = registry::TlsSettings::new(cert, key);
        s.client_ca_path = t.client_ca_file.clone();
        s.client_auth = match t.client_auth {
            TlsClientAuth::Required => registry::tls::ClientAuth::Required,
            TlsClientAuth::Optional => registry::tls::ClientAuth::Optional,
        };
        s.reload_interval = std::time::Duration::from_secs(t.reload_interval_seconds);
        s.handshake_timeout = std::time::Duration::from_secs(t.handshake_timeout_seconds.max(1));
        Ok(Some(s))
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
    fn tls_from_file_and_flags() {
        assert!(Config::default().tls_settings().unwrap().is_none());
        let mut cfg: Config = toml::from_str(
            "[tls]\ncert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\nreload_interval_seconds = 2\n",
        )
        .unwrap();
        let s = cfg.tls_settings().unwrap().unwrap();
        assert_eq!(s.cert_path, PathBuf::from("/c.pem"));
        assert_eq!(s.reload_interval, std::time::Duration::from_secs(2));
        assert!(s.client_ca_path.is_none());
        cfg.apply_tls_overrides(
            Some("/flag.pem".into()),
            None,
            Some("/ca.pem".into()),
            Some(TlsClientAuth::Optional),
        );
        let s = cfg.tls_settings().unwrap().unwrap();
        assert_eq!(s.cert_path, PathBuf::from("/flag.pem"));
        assert_eq!(s.key_path, PathBuf::from("/k.pem"));
        assert_eq!(s.client_ca_path, Some(PathBuf::from("/ca.pem")));
        assert_eq!(s.client_auth, registry::tls::ClientAuth::Optional);
        cfg.tls.key_file = None;
        assert!(cfg.tls_settings().is_err());
        let mut ca_only = Config::default();
        ca_only.tls.client_ca_file = Some("/ca.pem".into());
        assert!(ca_only.tls_settings().is_err());
        assert!(toml::from_str::<Config>("[tls]\nclient_auth = \"sometimes\"\n").is_err());
    }

    #[test]
    fn log_section() {
        let d = Config::default();
        assert!(d.log.access);
        let f = d.log.filter();
        assert!(f.starts_with("warn,"), "{f}");
        for c in [
            "wharf=info",
            "registry=info",
            "store=info",
            "cache=info",
            "audit=info",
        ] {
            assert!(f.split(',').any(|d| d == c), "{c} not in {f}");
        }
        tracing_subscriber::EnvFilter::try_new(&f).unwrap();
        let cfg: Config = toml::from_str(
            "[log]\naccess = false\nlevel = \"debug\"\nlibraries = \"error\"\nformat = \"json\"\n",
        )
        .unwrap();
        assert!(!cfg.log.access);
        let f = cfg.log.filter();
        assert!(
            f.starts_with("error,") && f.contains(",service=debug"),
            "{f}"
        );
        let cfg: Config = toml::from_str("[log]\nlevel = \"wharf=debug,info\"\n").unwrap();
        assert_eq!(cfg.log.filter(), "wharf=debug,info");
        assert!(toml::from_str::<Config>("[log]\naccess_log = true\n").is_err());
        assert_eq!(d.server.shutdown_delay_seconds, 5);
        let cfg: Config = toml::from_str("[server]\nshutdown_delay_seconds = 0\n").unwrap();
        assert_eq!(cfg.server.shutdown_delay_seconds, 0);
    }

    #[test]
    fn defaults_are_loopback() {
        assert!(Config::default().server.listen.ip().is_loopback());
    }

    #[test]
    fn admission_section() {
        assert!(Config::default().admission.is_none(), "off unless present");
        let cfg: Config =
            toml::from_str("[admission]\npolicy = \"/p.toml\"\nnames = [\"r.example.com\"]\n")
                .unwrap();
        let a = cfg.admission.unwrap();
        assert_eq!(a.policy, std::path::PathBuf::from("/p.toml"));
        assert_eq!(a.names, vec!["r.example.com".to_owned()]);
        assert_eq!(
            (a.lookup_deadline_ms, a.max_lookups, a.max_reviews),
            (2000, 32, 512)
        );
        assert_eq!((a.tag_ttl_seconds, a.verdict_ttl_seconds), (30, 300));
        for bad in [
            "[admission]\n",
            "[admission]\npolicy = \"/p\"\ndeadline = 3\n",
        ] {
            assert!(toml::from_str::<Config>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn connection_limits_and_metrics_listener() {
        let d = Config::default();
        let o = d.server.serve_options();
        assert_eq!(o.first_byte_timeout, std::time::Duration::from_secs(10));
        assert_eq!(o.max_connections, 4096);
        assert_eq!(o.max_connections_per_address, 256);
        assert!(d.metrics.listen.is_none(), "no metrics unless asked for");
        let cfg: Config = toml::from_str(
            "[server]\nfirst_byte_timeout_seconds = 2\nidle_timeout_seconds = 0\n\
             body_read_timeout_seconds = 3\nbody_min_rate_bytes_per_second = 0\n\
             max_connections_per_address = 0\nheader_read_timeout_seconds = 5\n\
             write_stall_timeout_seconds = 7\n\
             [metrics]\nlisten = \"127.0.0.1:5001\"\n",
        )
        .unwrap();
        let o = cfg.server.serve_options();
        assert_eq!(o.first_byte_timeout, std::time::Duration::from_secs(2));
        assert!(o.idle_timeout.is_zero());
        assert_eq!(o.body_read_timeout, std::time::Duration::from_secs(3));
        assert_eq!(o.body_min_rate, 0);
        assert_eq!(o.max_connections_per_address, 0);
        assert_eq!(o.header_read_timeout, std::time::Duration::from_secs(5));
        assert_eq!(o.write_stall_timeout, std::time::Duration::from_secs(7));
        assert_eq!(cfg.metrics.listen.unwrap().port(), 5001);
        assert!(toml::from_str::<Config>("[metrics]\nport = 1\n").is_err());
    }
}
