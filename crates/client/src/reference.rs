//! Image references: `[host[:port]/]repository[:tag][@digest]`, normalised as Docker does.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use oci::Digest;

use crate::error::Error;

/// The registry name Docker Hub images carry in canonical references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's Distribution API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// The tag used when a reference names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";

/// A parsed, normalised image reference.
///
/// `busybox` becomes `docker.io/library/busybox` (tag `latest` implied), `index.docker.io/x/y`
/// becomes `docker.io/x/y`, and `localhost:5000/team/app:1.0@sha256:...` keeps both its tag and
/// its digest (the digest wins when fetching). The registry keeps its port, and IPv6 literals
/// keep their brackets.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageRef {
    /// Parses `[host[:port]/]repository[:tag][@digest]` with Docker Hub normalisation.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let bad = |reason: String| Error::InvalidReference {
            reference: s.to_owned(),
            reason,
        };
        if s.is_empty() {
            return Err(bad("empty reference".into()));
        }
        if s.contains("://") {
            return Err(bad("a reference has no URL scheme".into()));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (
                rest,
                Some(Digest::parse(d).map_err(|e| bad(format!("digest: {e}")))?),
            ),
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&rest[..i], Some(rest[i + 1..].to_owned()))
            }
            None => (rest, None),
        };
        let (registry, repository) = split_registry(name);
        if registry.is_empty() {
            return Err(bad("empty registry host".into()));
        }
        let image = ImageRef::new(&registry, &repository)
            .map_err(|e| bad(error_reason(e)))?
            .with_optional_tag(tag)
            .map_err(|e| bad(error_reason(e)))?;
        Ok(ImageRef { digest, ..image })
    }

    /// A reference to a repository (no tag, no digest). The registry is normalised
    /// (`index.docker.io` is `docker.io`), and single-component Docker Hub names get `library/`.
    pub fn new(registry: &str, repository: &str) -> Result<Self, Error> {
        let registry = normalize_registry(registry);
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_owned()
        };
        oci::validate_repository(&repository).map_err(|e| Error::InvalidReference {
            reference: format!("{registry}/{repository}"),
            reason: e.to_string(),
        })?;
        Ok(ImageRef {
            registry,
            repository,
            tag: None,
            digest: None,
        })
    }

    fn with_optional_tag(self, tag: Option<String>) -> Result<Self, Error> {
        match tag {
            Some(t) => self.with_tag(&t),
            None => Ok(self),
        }
    }

    /// The registry as written in references (`docker.io`, `localhost:5000`, `[::1]:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, when one was given.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, when one was given.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What goes after `/manifests/`: the digest if any, else the tag, else `latest`.
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }

    /// The same repository with this tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, Error> {
        oci::validate_tag(tag).map_err(|e| Error::InvalidReference {
            reference: format!("{}:{tag}", self.name()),
            reason: e.to_string(),
        })?;
        Ok(ImageRef {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same reference pinned to this digest (the tag, if any, is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Self {
        ImageRef {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository with neither tag nor digest.
    pub fn repo_only(&self) -> Self {
        ImageRef {
            tag: None,
            digest: None,
            ..self.clone()
        }
    }

    /// `registry/repository`, the repository's full name (`docker.io/library/busybox`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The host (and port) that serves the registry's API: `registry-1.docker.io` for Docker Hub,
    /// the registry itself otherwise.
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }
}

impl fmt::Display for ImageRef {
    /// The canonical form: `registry/repository[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        ImageRef::parse(s)
    }
}

fn error_reason(e: Error) -> String {
    match e {
        Error::InvalidReference { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// Splits `name` into (registry, repository) by Docker's rule: the first component is a host
/// when it contains `.` or `:`, is `localhost`, or has upper-case letters.
fn split_registry(name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.starts_with('[')
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first.to_owned(), rest.to_owned())
        }
        _ => (DOCKER_HUB.to_owned(), name.to_owned()),
    }
}

/// Normalises a registry name: Docker Hub's aliases become `docker.io`; a scheme and a path (as
/// found in Docker config keys like `https://index.docker.io/v1/`) are dropped; lower case.
pub fn normalize_registry(registry: &str) -> String {
    let r = registry
        .strip_prefix("https://")
        .or_else(|| registry.strip_prefix("http://"))
        .unwrap_or(registry);
    let r = r.split('/').next().unwrap_or("").to_ascii_lowercase();
    match r.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_owned()
        }
        _ => r,
    }
}

/// The API host of a (normalised) registry name.
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        registry
    }
}

/// The host part of `host[:port]` (IPv6 brackets removed).
pub fn host_without_port(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    }
}

/// True for `localhost` and loopback IP addresses, with or without a port.
pub fn is_loopback(registry: &str) -> bool {
    let host = host_without_port(registry);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn p(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_normalisation() {
        let r = p("busybox");
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/busybox");
        assert_eq!(r.tag(), None);
        assert_eq!(r.reference(), "latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.to_string(), "docker.io/library/busybox");

        let r = p("user/app:1.2");
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "user/app");
        assert_eq!(r.tag(), Some("1.2"));

        for s in [
            "docker.io/library/busybox:1",
            "index.docker.io/library/busybox:1",
            "docker.io/busybox:1",
            "index.docker.io/busybox:1",
            "busybox:1",
        ] {
            assert_eq!(p(s).to_string(), "docker.io/library/busybox:1", "{s}");
        }
    }

    #[test]
    fn hosts_ports_tags_digests() {
        let r = p("localhost:5000/team/app:1.0");
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "team/app");
        assert_eq!(r.tag(), Some("1.0"));
        assert!(is_loopback(r.registry()));

        let r = p(&format!("127.0.0.1:5000/app@{D}"));
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.tag(), None);
        assert_eq!(r.reference(), D);

        let r = p(&format!("ghcr.io/o/r:v1@{D}"));
        assert_eq!(r.registry(), "ghcr.io");
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.reference(), D, "the digest wins");
        assert_eq!(r.to_string(), format!("ghcr.io/o/r:v1@{D}"));
        assert_eq!(r.with_tag("x").unwrap().reference(), "x");

        let r = p("localhost/app");
        assert_eq!(r.registry(), "localhost");
        assert_eq!(r.repository(), "app", "no library/ outside Docker Hub");

        let r = p("[::1]:5000/app:t");
        assert_eq!(r.registry(), "[::1]:5000");
        assert!(is_loopback(r.registry()));
        assert!(!is_loopback("example.com:5000"));
        assert!(!is_loopback("10.0.0.1"));
        assert!(is_loopback("127.0.0.2"));
    }

    #[test]
    fn rejects_bad_references() {
        for s in [
            "",
            "UPPER",
            "https://ghcr.io/a/b",
            "ghcr.io/a/b:bad tag",
            "ghcr.io/a/b@sha256:abc",
            "ghcr.io/A/b",
            "ghcr.io/",
            "a//b",
        ] {
            assert!(ImageRef::parse(s).is_err(), "{s:?} should be refused");
        }
    }

    #[test]
    fn registry_aliases() {
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(normalize_registry("registry-1.docker.io"), "docker.io");
        assert_eq!(normalize_registry("https://ghcr.io"), "ghcr.io");
        assert_eq!(normalize_registry("Quay.IO"), "quay.io");
        assert_eq!(host_without_port("h:5000"), "h");
        assert_eq!(host_without_port("[::1]:5000"), "::1");
    }
}
