//! Node configuration that points container runtimes at Wharf for each upstream: containerd's
//! `hosts.toml` (mirror mode: containerd adds `?ns=<host>` itself) and CRI-O's
//! `registries.conf` (path mode: the mirror location carries the upstream's prefix).

use crate::config::{CacheConfig, DOCKER_HUB, UpstreamConfig};

/// How nodes reach Wharf.
#[derive(Clone, Debug)]
pub struct NodeTarget {
    /// Wharf's base URL as nodes see it: `https://wharf.example:5000`.
    pub url: String,
    /// A CA certificate file on the nodes that signs Wharf's certificate, if not a public one.
    pub ca_file: Option<String>,
    /// Skip TLS verification (test clusters only).
    pub skip_verify: bool,
}

impl NodeTarget {
    fn host_port(&self) -> &str {
        self.url
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
    }

    fn plain_http(&self) -> bool {
        self.url.starts_with("http://")
    }
}

/// The upstream's own address as a runtime names it (`registry-1.docker.io` for Docker Hub).
fn origin(u: &UpstreamConfig) -> String {
    if u.host == DOCKER_HUB && u.url.is_none() {
        "https://registry-1.docker.io".to_owned()
    } else {
        u.endpoint()
    }
}

fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// containerd's `hosts.toml` for one upstream, to be written to
/// `/etc/containerd/certs.d/<host>/hosts.toml`.
pub fn containerd_hosts_toml(u: &UpstreamConfig, target: &NodeTarget) -> String {
    let base = target.url.trim_end_matches('/');
    let mut s = format!(
        "# /etc/containerd/certs.d/{}/hosts.toml: pull {} through Wharf, falling back to the\n\
         # registry itself when Wharf cannot answer.\nserver = {}\n\n[host.{}]\n  capabilities = [\"pull\", \"resolve\"]\n",
        u.host,
        u.host,
        toml_str(&origin(u)),
        toml_str(base),
    );
    if let Some(ca) = &target.ca_file {
        s.push_str(&format!("  ca = {}\n", toml_str(ca)));
    }
    if target.skip_verify {
        s.push_str("  skip_verify = true\n");
    }
    s
}

/// CRI-O's (containers-registries.conf v2) entries for every enabled upstream.
pub fn crio_registries_conf(cfg: &CacheConfig, target: &NodeTarget) -> String {
    let mut s = String::from(
        "# /etc/containers/registries.conf.d/50-wharf.conf (`wharf mirror config --out-dir\n\
         # /etc/containers/registries.conf.d` writes it there): pull through Wharf (path mode),\n\
         # falling back to each registry itself.\n",
    );
    for u in cfg.upstreams.iter().filter(|u| u.enabled) {
        let location = origin(u)
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .to_owned();
        // The fallback to the upstream itself is insecure exactly when the upstream is plain
        // HTTP; without it CRI-O refuses the fallback when Wharf is down.
        let upstream_insecure = if origin(u).starts_with("http://") {
            "insecure = true\n"
        } else {
            ""
        };
        s.push_str(&format!(
            "\n[[registry]]\nprefix = {}\nlocation = {}\n{upstream_insecure}\n[[registry.mirror]]\nlocation = {}\n",
            toml_str(&u.host),
            toml_str(&location),
            toml_str(&format!("{}/{}", target.host_port(), u.prefix())),
        ));
        if target.plain_http() || target.skip_verify {
            s.push_str("insecure = true\n");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> NodeTarget {
        NodeTarget {
            url: url.into(),
            ca_file: Some("/etc/wharf/ca.crt".into()),
            skip_verify: false,
        }
    }

    #[test]
    fn containerd_points_at_wharf_and_falls_back_to_the_origin() {
        let hub = UpstreamConfig::new("docker.io");
        let t = containerd_hosts_toml(&hub, &target("https://wharf.example:5000/"));
        let v: toml::Table = t.parse().expect("valid TOML");
        assert_eq!(v["server"].as_str(), Some("https://registry-1.docker.io"));
        let host = &v["host"]["https://wharf.example:5000"];
        assert_eq!(host["capabilities"].as_array().map(Vec::len), Some(2));
        assert_eq!(host["ca"].as_str(), Some("/etc/wharf/ca.crt"));
    }

    #[test]
    fn crio_uses_path_mode_prefixes() {
        let mut local = UpstreamConfig::new("localhost:5001");
        local.url = Some("http://127.0.0.1:5001".into());
        let mut off = UpstreamConfig::new("quay.io");
        off.enabled = false;
        let cfg = CacheConfig {
            upstreams: vec![UpstreamConfig::new("ghcr.io"), local, off],
            ..Default::default()
        };
        let t = crio_registries_conf(&cfg, &target("http://10.0.0.5:5000"));
        let v: toml::Table = t.parse().expect("valid TOML");
        assert_eq!(v["registry"].as_array().map(Vec::len), Some(2));
        assert!(t.contains("prefix = \"ghcr.io\"\nlocation = \"ghcr.io\""));
        assert!(t.contains("location = \"10.0.0.5:5000/ghcr.io\"\ninsecure = true"));
        // The plain-HTTP upstream's own entry is insecure too (CRI-O's fallback to it), the
        // HTTPS one's is not.
        let regs = v["registry"].as_array().unwrap();
        assert_eq!(regs[1]["location"].as_str(), Some("127.0.0.1:5001"));
        assert_eq!(regs[1]["insecure"].as_bool(), Some(true));
        assert_eq!(regs[0].get("insecure"), None);
        assert!(t.contains("location = \"10.0.0.5:5000/localhost-5001\""));
        assert!(!t.contains("quay.io"), "disabled upstreams are left out");
    }
}
