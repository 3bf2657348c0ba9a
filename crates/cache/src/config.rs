//! What the operator configures: the upstream registries and the cache's limits.

use serde::Deserialize;

/// The `[cache]` section: upstream registries served through Wharf, and the cache's size.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Upper bound on the bytes of cached blobs (0: no bound). Least recently pulled images are
    /// evicted beyond it; pushed content is never evicted.
    pub max_bytes: u64,
    /// How often the size bound is enforced, in seconds.
    pub eviction_interval_seconds: Option<u64>,
    /// Images that stay cached whatever the size bound: `docker.io/library/alpine:3.20`,
    /// `ghcr.io/org/*` (every image of matching repositories), `quay.io/x/y@sha256:...`.
    pub pinned: Vec<String>,
    /// The upstream registries.
    #[serde(rename = "upstream")]
    pub upstreams: Vec<UpstreamConfig>,
}

/// One upstream registry. (`Debug` leaves the password out.)
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The registry's host as image references and containerd's `ns` parameter name it:
    /// `docker.io`, `ghcr.io`, `quay.io`, `registry.k8s.io`, `localhost:5001`.
    pub host: String,
    /// Where to reach it, when not `https://<host>` (docker.io: `https://registry-1.docker.io`).
    #[serde(default)]
    pub url: Option<String>,
    /// Username for the upstream (Basic, or exchanged for Bearer tokens).
    #[serde(default)]
    pub username: Option<String>,
    /// Password or access token for the upstream.
    #[serde(default)]
    pub password: Option<String>,
    /// A file holding the password (a mounted Kubernetes Secret), instead of `password`.
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    /// Seconds a cached tag is served before it is checked again upstream (a HEAD request).
    #[serde(default = "default_tag_ttl")]
    pub tag_ttl_seconds: u64,
    /// Seconds to wait for a TCP (and TLS) connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: u64,
    /// Seconds to wait for the upstream's response headers; slower is treated as down.
    #[serde(default = "default_response_timeout")]
    pub response_timeout_seconds: u64,
    /// Seconds a blob transfer may stall between two reads before it is abandoned.
    #[serde(default = "default_read_timeout")]
    pub read_timeout_seconds: u64,
    /// Whether the upstream may be used at all (false keeps the configuration but refuses it).
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("host", &self.host)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .field("tag_ttl_seconds", &self.tag_ttl_seconds)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

fn default_tag_ttl() -> u64 {
    300
}
fn default_connect_timeout() -> u64 {
    5
}
fn default_response_timeout() -> u64 {
    15
}
fn default_read_timeout() -> u64 {
    30
}
fn yes() -> bool {
    true
}

impl UpstreamConfig {
    /// An upstream with the defaults, for `host`.
    pub fn new(host: &str) -> Self {
        UpstreamConfig {
            host: host.to_owned(),
            url: None,
            username: None,
            password: None,
            password_file: None,
            tag_ttl_seconds: default_tag_ttl(),
            connect_timeout_seconds: default_connect_timeout(),
            response_timeout_seconds: default_response_timeout(),
            read_timeout_seconds: default_read_timeout(),
            enabled: true,
        }
    }

    /// The base URL requests go to (no trailing slash).
    pub fn endpoint(&self) -> String {
        match &self.url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None if self.host == DOCKER_HUB => {
                format!("https://{}", oci::image_ref::DOCKER_HUB_API)
            }
            None => format!("https://{}", self.host),
        }
    }

    /// The first path component of the local repositories that cache this upstream: the host,
    /// with a port's `:` turned into `-` so the name stays a valid repository name.
    pub fn prefix(&self) -> String {
        self.host.to_ascii_lowercase().replace(':', "-")
    }
}

/// Docker Hub's canonical host name (the one definition is `oci`'s).
pub use oci::image_ref::DOCKER_HUB;

/// Names that containerd and others use for Docker Hub map to `docker.io`; hosts compare in
/// lower case. The aliasing is `oci`'s, done once for every reference in Wharf.
pub(crate) use oci::image_ref::normalize_registry as canonical_host;

/// Problems in the configuration, found at start-up.
pub fn validate(cfg: &CacheConfig) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for u in &cfg.upstreams {
        if u.host.is_empty() || u.host.contains('/') {
            return Err(format!(
                "cache upstream host {:?} is not a host name",
                u.host
            ));
        }
        let prefix = u.prefix();
        oci::validate_repository(&format!("{prefix}/x"))
            .map_err(|e| format!("cache upstream host {:?}: {e}", u.host))?;
        if !seen.insert(canonical_host(&u.host)) {
            return Err(format!("cache upstream {:?} is configured twice", u.host));
        }
        let url = u.endpoint();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!(
                "cache upstream {:?}: url {url:?} must start with https:// or http://",
                u.host
            ));
        }
        if u.password.is_some() && u.password_file.is_some() {
            return Err(format!(
                "cache upstream {:?}: set password or password_file, not both",
                u.host
            ));
        }
        if u.username.is_some() != (u.password.is_some() || u.password_file.is_some()) {
            return Err(format!(
                "cache upstream {:?}: set both username and password (or password_file), or neither",
                u.host
            ));
        }
        if u.response_timeout_seconds == 0 || u.read_timeout_seconds == 0 {
            return Err(format!(
                "cache upstream {:?}: timeouts must be positive",
                u.host
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_prefixes() {
        let hub = UpstreamConfig::new("docker.io");
        assert_eq!(hub.endpoint(), "https://registry-1.docker.io");
        assert_eq!(hub.prefix(), "docker.io");
        let mut local = UpstreamConfig::new("localhost:5001");
        local.url = Some("http://127.0.0.1:5001/".into());
        assert_eq!(local.endpoint(), "http://127.0.0.1:5001");
        assert_eq!(local.prefix(), "localhost-5001");
        assert_eq!(canonical_host("Registry-1.Docker.IO"), "docker.io");
    }

    #[test]
    fn validation() {
        let ok = CacheConfig {
            upstreams: vec![
                UpstreamConfig::new("ghcr.io"),
                UpstreamConfig::new("docker.io"),
            ],
            ..Default::default()
        };
        assert!(validate(&ok).is_ok());
        let dup = CacheConfig {
            upstreams: vec![
                UpstreamConfig::new("docker.io"),
                UpstreamConfig::new("docker.io"),
            ],
            ..Default::default()
        };
        assert!(validate(&dup).unwrap_err().contains("twice"));
        let mut bad = UpstreamConfig::new("ghcr.io");
        bad.username = Some("u".into());
        let half = CacheConfig {
            upstreams: vec![bad],
            ..Default::default()
        };
        assert!(validate(&half).unwrap_err().contains("both"));
        let path = CacheConfig {
            upstreams: vec![UpstreamConfig::new("ghcr.io/x")],
            ..Default::default()
        };
        assert!(validate(&path).is_err());
    }
}
