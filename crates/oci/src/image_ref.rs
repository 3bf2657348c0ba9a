//! Image references, `[host[:port]/]repository[:tag][@digest]`: the one parser of Wharf, used
//! by the client, `wharf pin`, the pull-through cache and the CLI.
//!
//! Grammar (from the reference implementation in CNCF Distribution):
//!
//! ```text
//! reference := name [ ":" tag ] [ "@" digest ]
//! name      := [ domain "/" ] path-component ( "/" path-component )*
//! domain    := host [ ":" port ]          host: DNS labels, or an IPv6 literal in brackets
//! ```
//!
//! The first `/`-separated component is a registry host when it contains a `.` or a `:`, is
//! `localhost`, starts with `[`, or has an upper-case letter; otherwise the reference is on
//! Docker Hub. Docker Hub aliasing is done here and only here: `index.docker.io`,
//! `registry-1.docker.io` and `registry.hub.docker.com` are `docker.io`, and a one-component
//! Docker Hub path gets the `library/` prefix (`nginx` is `docker.io/library/nginx`). Registry
//! names are compared in lower case. The text as written is kept, for messages and for `wharf
//! pin`, which extends it in place.

use std::fmt;
use std::net::IpAddr;

use crate::digest::Digest;

/// The registry name Docker Hub images carry in canonical references.
pub const DOCKER_HUB: &str = "docker.io";

/// The host that actually serves Docker Hub's Distribution API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Docker Hub's registry as go-containerregistry (and so cosign) spells it in references it
/// writes, such as a signature's `docker-reference`.
pub const DOCKER_HUB_GGCR: &str = "index.docker.io";

/// The tag that container runtimes pull when a reference names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";

/// Longest name (registry and path) that the reference grammar accepts.
const MAX_NAME_LEN: usize = 255;

/// Why an image string is not a valid reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    /// Empty (or `null`) image.
    #[error("the image is empty")]
    Empty,
    /// A URL (`https://...`) where a reference was expected.
    #[error("a reference has no URL scheme")]
    Scheme,
    /// White space, quotes or other characters no reference may contain.
    #[error("invalid character {0:?} in image reference")]
    InvalidCharacter(char),
    /// The registry host (and port) is malformed.
    #[error("invalid registry host {0:?}")]
    Domain(String),
    /// The repository path breaks the grammar (for example upper-case letters).
    #[error("invalid repository {path:?}: {reason}")]
    Repository {
        /// The path as written.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The tag breaks the grammar.
    #[error("invalid tag {0:?}: must match [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}")]
    Tag(String),
    /// The part after `@` is not a supported digest.
    #[error("invalid digest {digest:?}: {reason}")]
    Digest {
        /// The digest as written.
        digest: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Registry and path together are longer than 255 characters.
    #[error("image name is longer than 255 characters")]
    TooLong,
}

/// A parsed image reference that remembers how it was written.
///
/// [`ImageRef::registry`] and [`ImageRef::repository`] are normalised (`docker.io`, `library/`);
/// [`ImageRef::as_str`] is the text exactly as written (for references derived with
/// [`ImageRef::new`], [`ImageRef::with_tag`] or [`ImageRef::with_digest`], their normalised
/// form). `Display` prints the normalised form, `registry/repository[:tag][@digest]`.
/// `localhost:5000/team/app:1.0@sha256:...` keeps both its tag and its digest (the digest wins
/// when fetching). Equality compares the normalised parts, not the spelling.
#[derive(Clone)]
pub struct ImageRef {
    written: String,
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl PartialEq for ImageRef {
    fn eq(&self, other: &Self) -> bool {
        (&self.registry, &self.repository, &self.tag, &self.digest)
            == (
                &other.registry,
                &other.repository,
                &other.tag,
                &other.digest,
            )
    }
}

impl Eq for ImageRef {}

impl std::hash::Hash for ImageRef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (&self.registry, &self.repository, &self.tag, &self.digest).hash(state);
    }
}

impl ImageRef {
    /// Parses an image reference as written (in a manifest, on a command line).
    pub fn parse(s: &str) -> Result<Self, ImageRefError> {
        Self::parse_with(s, None)
    }

    /// Parses a reference to a repository of a known registry, written without it (`team/app:v1`
    /// or `app:v1` naming a repository of this server): no host detection, `registry` is the
    /// registry, and `library/` is added only if that is Docker Hub.
    pub fn parse_in(registry: &str, s: &str) -> Result<Self, ImageRefError> {
        Self::parse_with(s, Some(registry))
    }

    fn parse_with(s: &str, known_registry: Option<&str>) -> Result<Self, ImageRefError> {
        if s.is_empty() {
            return Err(ImageRefError::Empty);
        }
        if s.contains("://") {
            return Err(ImageRefError::Scheme);
        }
        if let Some(c) = s.chars().find(|c| {
            !(c.is_ascii_alphanumeric()
                || matches!(c, '.' | '_' | '-' | '/' | ':' | '@' | '[' | ']'))
        }) {
            return Err(ImageRefError::InvalidCharacter(c));
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                let digest = Digest::parse(d).map_err(|e| ImageRefError::Digest {
                    digest: d.to_owned(),
                    reason: e.to_string(),
                })?;
                (n, Some(digest))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/' (a ':' before a '/' is a port).
        let last_slash = name_tag.rfind('/');
        let (name, tag) = match name_tag.rfind(':') {
            Some(colon) if last_slash.is_none_or(|sl| colon > sl) => {
                let tag = &name_tag[colon + 1..];
                crate::validate_tag(tag).map_err(|_| ImageRefError::Tag(tag.to_owned()))?;
                (&name_tag[..colon], Some(tag.to_owned()))
            }
            _ => (name_tag, None),
        };
        if name.is_empty() {
            return Err(ImageRefError::Repository {
                path: String::new(),
                reason: "empty".into(),
            });
        }
        if name.len() > MAX_NAME_LEN {
            return Err(ImageRefError::TooLong);
        }
        let (registry, path) = match known_registry {
            Some(r) => (normalize_registry(r), name),
            None => split_domain(name)?,
        };
        let repository = normalize_repository(&registry, path);
        crate::validate_repository(&repository).map_err(|e| ImageRefError::Repository {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(ImageRef {
            written: s.to_owned(),
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// A reference to a repository (no tag, no digest). The registry is normalised
    /// (`index.docker.io` is `docker.io`), and single-component Docker Hub names get `library/`.
    pub fn new(registry: &str, repository: &str) -> Result<Self, ImageRefError> {
        let registry = normalize_registry(registry);
        if registry.is_empty() {
            return Err(ImageRefError::Domain(String::new()));
        }
        let repository = normalize_repository(&registry, repository);
        crate::validate_repository(&repository).map_err(|e| ImageRefError::Repository {
            path: repository.clone(),
            reason: e.to_string(),
        })?;
        Ok(ImageRef {
            written: format!("{registry}/{repository}"),
            registry,
            repository,
            tag: None,
            digest: None,
        })
    }

    /// The reference exactly as written.
    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// The registry host (and port), normalised: `docker.io` when none is written and for
    /// Docker Hub's aliases, lower case (`localhost:5000`, `[::1]:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path within the registry, normalised (`library/nginx` for `nginx`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag as written, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The tag a container runtime pulls when there is no digest: the written one, or `latest`.
    pub fn effective_tag(&self) -> &str {
        self.tag.as_deref().unwrap_or(DEFAULT_TAG)
    }

    /// The digest as written, if any.
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

    /// `registry/repository`, the repository's full name (`docker.io/library/busybox`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The host (and port) that serves the registry's API: `registry-1.docker.io` for Docker Hub,
    /// the registry itself otherwise.
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }

    /// The registry as go-containerregistry (cosign, crane) spells it: [`DOCKER_HUB_GGCR`] for
    /// Docker Hub, the registry itself otherwise.
    pub fn ggcr_registry(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_GGCR
        } else {
            &self.registry
        }
    }

    /// `registry/repository` in go-containerregistry's spelling (see [`ImageRef::ggcr_registry`]):
    /// the `docker-reference` cosign writes into a signature's payload
    /// (`index.docker.io/library/busybox`).
    pub fn ggcr_name(&self) -> String {
        format!("{}/{}", self.ggcr_registry(), self.repository)
    }

    /// The fully qualified form, `registry/repository[:tag][@digest]`, with `:latest` when there
    /// is neither tag nor digest, as docker prints it.
    pub fn canonical(&self) -> String {
        let mut s = self.name();
        match (&self.tag, &self.digest) {
            (Some(t), _) => {
                s.push(':');
                s.push_str(t);
            }
            (None, None) => {
                s.push(':');
                s.push_str(DEFAULT_TAG);
            }
            (None, Some(_)) => {}
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }

    /// The same repository with this tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ImageRefError> {
        crate::validate_tag(tag).map_err(|_| ImageRefError::Tag(tag.to_owned()))?;
        Ok(ImageRef {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
        .rewritten())
    }

    /// The same reference pinned to this digest (the tag, if any, is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Self {
        ImageRef {
            digest: Some(digest),
            ..self.clone()
        }
        .rewritten()
    }

    /// The same repository with neither tag nor digest.
    pub fn repo_only(&self) -> Self {
        ImageRef {
            tag: None,
            digest: None,
            ..self.clone()
        }
        .rewritten()
    }

    /// A derived reference is "written" in its normalised form.
    fn rewritten(mut self) -> Self {
        self.written = self.to_string();
        self
    }

    /// The text that pins this reference to `digest`, built from the written text so that the
    /// registry and repository stay as the author wrote them:
    ///
    /// - `repo:tag` becomes `repo:tag@digest` (the tag stays for the reader; runtimes pull by
    ///   digest and ignore it);
    /// - `repo` (no tag) becomes `repo:latest@digest`, writing out the tag that was resolved;
    /// - a reference that already has a digest gets the new digest in place of the old one.
    pub fn pinned_text(&self, digest: &Digest) -> String {
        let base = match self.written.split_once('@') {
            Some((n, _)) => n.to_owned(),
            None if self.tag.is_none() => format!("{}:{DEFAULT_TAG}", self.written),
            None => self.written.clone(),
        };
        format!("{base}@{digest}")
    }
}

impl fmt::Display for ImageRef {
    /// The normalised form: `registry/repository[:tag][@digest]`.
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

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageRef({:?} = {})", self.written, self.canonical())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = ImageRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

/// Splits `name` into (normalised registry, path) as docker does.
fn split_domain(name: &str) -> Result<(String, &str), ImageRefError> {
    let Some((first, rest)) = name.split_once('/') else {
        return Ok((DOCKER_HUB.to_owned(), name));
    };
    let is_domain = first.contains(['.', ':'])
        || first == "localhost"
        || first.starts_with('[')
        || first.bytes().any(|b| b.is_ascii_uppercase());
    if !is_domain {
        return Ok((DOCKER_HUB.to_owned(), name));
    }
    validate_domain(first)?;
    Ok((normalize_registry(first), rest))
}

/// `host[:port]` where host is dot-separated labels of `[A-Za-z0-9-]` not starting or ending
/// with `-`, or an IPv6 literal in brackets (`[::1]`).
fn validate_domain(d: &str) -> Result<(), ImageRefError> {
    let bad = || ImageRefError::Domain(d.to_owned());
    let (host, port) = if let Some(inner) = d.strip_prefix('[') {
        let (ip, after) = inner.split_once(']').ok_or_else(bad)?;
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad());
        }
        match after {
            "" => ("", None),
            p => (ip, Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    if d.starts_with('[') {
        return Ok(());
    }
    if host.is_empty() {
        return Err(bad());
    }
    for label in host.split('.') {
        let b = label.as_bytes();
        if b.is_empty()
            || !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            || b[0] == b'-'
            || b[b.len() - 1] == b'-'
        {
            return Err(bad());
        }
    }
    Ok(())
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

/// The repository path as the registry knows it: on Docker Hub (any alias), a one-component
/// path gets the `library/` prefix (`alpine` is `library/alpine`); elsewhere it is unchanged.
pub fn normalize_repository(registry: &str, path: &str) -> String {
    if normalize_registry(registry) == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_owned()
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
    use proptest::prelude::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn r(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_normalisation() {
        let n = r("nginx");
        assert_eq!(n.registry(), "docker.io");
        assert_eq!(n.repository(), "library/nginx");
        assert_eq!(n.tag(), None);
        assert_eq!(n.effective_tag(), "latest");
        assert_eq!(n.canonical(), "docker.io/library/nginx:latest");

        let p = r("docker.io/library/python:latest");
        assert_eq!(p.canonical(), "docker.io/library/python:latest");
        let b = r("busybox:1.36");
        assert_eq!(b.repository(), "library/busybox");
        assert_eq!(b.tag(), Some("1.36"));
        let m = r("my-registry/my-app:v1.0");
        assert_eq!(m.registry(), "docker.io");
        assert_eq!(m.repository(), "my-registry/my-app");
        assert_eq!(r("index.docker.io/nginx").repository(), "library/nginx");
        assert_eq!(r("index.docker.io/nginx").registry(), "docker.io");
        assert_eq!(r("docker.io/nginx").repository(), "library/nginx");
    }

    #[test]
    fn registries_and_ports() {
        let a = r("127.0.0.1:5000/team/app:1.0");
        assert_eq!(a.registry(), "127.0.0.1:5000");
        assert_eq!(a.repository(), "team/app");
        assert_eq!(a.tag(), Some("1.0"));
        let l = r("localhost/app");
        assert_eq!(l.registry(), "localhost");
        assert_eq!(l.repository(), "app");
        let g = r("ghcr.io/org/app");
        assert_eq!(g.registry(), "ghcr.io");
        let p = r("localhost:5000/app");
        assert_eq!(p.registry(), "localhost:5000");
        assert_eq!(p.tag(), None);
        // Registry names are compared in lower case; the written text keeps the spelling.
        let u = r("Registry/app");
        assert_eq!(u.registry(), "registry");
        assert_eq!(u.as_str(), "Registry/app");
    }

    #[test]
    fn digests() {
        let x = r(&format!("nginx:1.25@{D}"));
        assert_eq!(x.tag(), Some("1.25"));
        assert_eq!(x.digest().unwrap().to_string(), D);
        let y = r(&format!("ghcr.io/a/b@{D}"));
        assert_eq!(y.tag(), None);
        assert_eq!(y.canonical(), format!("ghcr.io/a/b@{D}"));
        assert!(matches!(
            ImageRef::parse("nginx@sha256:abc"),
            Err(ImageRefError::Digest { .. })
        ));
        assert!(matches!(
            ImageRef::parse(&format!("nginx@md5:{}", "0".repeat(32))),
            Err(ImageRefError::Digest { .. })
        ));
    }

    #[test]
    fn pinned_text_keeps_the_written_form() {
        let d = Digest::parse(D).unwrap();
        assert_eq!(r("nginx").pinned_text(&d), format!("nginx:latest@{D}"));
        assert_eq!(r("nginx:1.25").pinned_text(&d), format!("nginx:1.25@{D}"));
        assert_eq!(
            r("localhost:5000/app").pinned_text(&d),
            format!("localhost:5000/app:latest@{D}")
        );
        let other = format!("sha256:{}", "f".repeat(64));
        assert_eq!(
            r(&format!("a/b:1@{other}")).pinned_text(&d),
            format!("a/b:1@{D}")
        );
        assert_eq!(
            r(&format!("a/b@{other}")).pinned_text(&d),
            format!("a/b@{D}")
        );
    }

    #[test]
    fn invalid() {
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "nginx:-x",
            "nginx bad",
            "ngi\"nx",
            "a//b",
            "/a",
            "a/",
            "reg.io:/a",
            "reg.io:99999999/a",
            "-reg.io/a",
            "reg..io/a",
            "[::1/a",
            "[zz]:5000/a",
            "[::1]x/a",
            "{{ .Values.image }}",
            "a@b@c",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            ImageRef::parse(&"a".repeat(256)).unwrap_err(),
            ImageRefError::TooLong
        );
    }

    // From the client's reference parser, now this one.
    const E: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn client_docker_hub_normalisation() {
        let x = r("busybox");
        assert_eq!(x.registry(), "docker.io");
        assert_eq!(x.repository(), "library/busybox");
        assert_eq!(x.tag(), None);
        assert_eq!(x.reference(), "latest");
        assert_eq!(x.api_host(), "registry-1.docker.io");
        assert_eq!(x.to_string(), "docker.io/library/busybox");

        let x = r("user/app:1.2");
        assert_eq!(x.registry(), "docker.io");
        assert_eq!(x.repository(), "user/app");
        assert_eq!(x.tag(), Some("1.2"));

        for s in [
            "docker.io/library/busybox:1",
            "index.docker.io/library/busybox:1",
            "registry-1.docker.io/library/busybox:1",
            "docker.io/busybox:1",
            "index.docker.io/busybox:1",
            "busybox:1",
        ] {
            assert_eq!(r(s).to_string(), "docker.io/library/busybox:1", "{s}");
        }
    }

    #[test]
    fn client_hosts_ports_tags_digests() {
        let x = r("localhost:5000/team/app:1.0");
        assert_eq!(x.registry(), "localhost:5000");
        assert_eq!(x.repository(), "team/app");
        assert_eq!(x.tag(), Some("1.0"));
        assert!(is_loopback(x.registry()));

        let x = r(&format!("127.0.0.1:5000/app@{E}"));
        assert_eq!(x.registry(), "127.0.0.1:5000");
        assert_eq!(x.tag(), None);
        assert_eq!(x.reference(), E);

        let x = r(&format!("ghcr.io/o/r:v1@{E}"));
        assert_eq!(x.registry(), "ghcr.io");
        assert_eq!(x.tag(), Some("v1"));
        assert_eq!(x.reference(), E, "the digest wins");
        assert_eq!(x.to_string(), format!("ghcr.io/o/r:v1@{E}"));
        assert_eq!(x.with_tag("x").unwrap().reference(), "x");
        assert_eq!(x.repo_only().to_string(), "ghcr.io/o/r");

        let x = r("localhost/app");
        assert_eq!(x.registry(), "localhost");
        assert_eq!(x.repository(), "app", "no library/ outside Docker Hub");

        let x = r("[::1]:5000/app:t");
        assert_eq!(x.registry(), "[::1]:5000");
        assert!(is_loopback(x.registry()));
        assert!(!is_loopback("example.com:5000"));
        assert!(!is_loopback("10.0.0.1"));
        assert!(is_loopback("127.0.0.2"));

        let x = ImageRef::new("index.docker.io", "alpine").unwrap();
        assert_eq!(x.to_string(), "docker.io/library/alpine");
        assert_eq!(x, r("alpine"), "equality ignores the spelling");
        assert_eq!(x.ggcr_name(), "index.docker.io/library/alpine");
        assert_eq!(
            r("registry-1.docker.io/a/b:1").ggcr_registry(),
            "index.docker.io"
        );
        assert_eq!(r("ghcr.io/o/r:v1").ggcr_name(), "ghcr.io/o/r");
        assert_eq!(r("localhost:5000/app").ggcr_name(), "localhost:5000/app");
    }

    #[test]
    fn client_rejects_bad_references() {
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
    fn relative_to_a_known_registry() {
        let x = ImageRef::parse_in("localhost:5000", "app:v1").unwrap();
        assert_eq!(
            (x.registry(), x.repository(), x.tag()),
            ("localhost:5000", "app", Some("v1"))
        );
        let x = ImageRef::parse_in("localhost:5000", "ghcr.io/app:v1").unwrap();
        assert_eq!(x.repository(), "ghcr.io/app", "no host detection");
        assert!(ImageRef::parse_in("localhost:5000", "team/App:v1").is_err());
        assert_eq!(
            ImageRef::parse_in("docker.io", "app").unwrap().repository(),
            "library/app"
        );
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
        assert_eq!(
            normalize_repository("index.docker.io", "alpine"),
            "library/alpine"
        );
        assert_eq!(normalize_repository("ghcr.io", "alpine"), "alpine");
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = ImageRef::parse(&s);
        }

        #[test]
        fn generated_references_round_trip(
            reg in proptest::option::of("[a-z][a-z0-9-]{0,8}[a-z0-9]\\.[a-z]{2,4}(:[0-9]{2,5})?"),
            path in "[a-z0-9]{1,6}(/[a-z0-9]{1,6}){0,2}",
            tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}"),
        ) {
            let mut s = String::new();
            if let Some(r) = &reg { s.push_str(r); s.push('/'); }
            s.push_str(&path);
            if let Some(t) = &tag { s.push(':'); s.push_str(t); }
            let parsed = ImageRef::parse(&s).unwrap();
            prop_assert_eq!(parsed.as_str(), s.as_str());
            prop_assert_eq!(parsed.tag(), tag.as_deref());
            let d = Digest::parse(D).unwrap();
            let pinned = ImageRef::parse(&parsed.pinned_text(&d)).unwrap();
            prop_assert_eq!(pinned.digest(), Some(&d));
            prop_assert_eq!(pinned.registry(), parsed.registry());
            prop_assert_eq!(pinned.repository(), parsed.repository());
            prop_assert_eq!(pinned.effective_tag(), parsed.effective_tag());
            // Pinning a pinned reference again is the identity.
            prop_assert_eq!(pinned.pinned_text(&d), pinned.as_str());
        }
    }
}
