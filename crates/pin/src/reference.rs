//! Image references as they are written in Kubernetes manifests, parsed and normalised the way
//! docker, containerd and the kubelet read them.
//!
//! Grammar (from the reference implementation in CNCF Distribution):
//!
//! ```text
//! reference := name [ ":" tag ] [ "@" digest ]
//! name      := [ domain "/" ] path-component ( "/" path-component )*
//! domain    := host [ ":" port ]
//! ```
//!
//! The first `/`-separated component is a registry host when it contains a `.` or a `:`, is
//! `localhost`, or has an upper-case letter; otherwise the reference is on Docker Hub
//! (`docker.io`), and a one-component Docker Hub path gets the `library/` prefix:
//! `nginx` is `docker.io/library/nginx:latest`.

use std::fmt;

use oci::Digest;

/// The registry host of references that name none.
pub const DOCKER_HUB: &str = "docker.io";

/// The tag that container runtimes pull when a reference names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";

/// Longest name (registry and path) that the reference grammar accepts.
const MAX_NAME_LEN: usize = 255;

/// Why an image string is not a valid reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Empty (or `null`) image.
    #[error("the image is empty")]
    Empty,
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
/// `registry()` and `repository()` are normalised (`docker.io`, `library/`); [`ImageRef::as_str`]
/// is the text exactly as written, which is what the rewriter extends.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    written: String,
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageRef {
    /// Parses an image reference as written in a manifest.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if let Some(c) = s.chars().find(|c| {
            !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@'))
        }) {
            return Err(ReferenceError::InvalidCharacter(c));
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                let digest = Digest::parse(d).map_err(|e| ReferenceError::Digest {
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
                oci::validate_tag(tag).map_err(|_| ReferenceError::Tag(tag.to_owned()))?;
                (&name_tag[..colon], Some(tag.to_owned()))
            }
            _ => (name_tag, None),
        };
        if name.is_empty() {
            return Err(ReferenceError::Repository {
                path: String::new(),
                reason: "empty".into(),
            });
        }
        if name.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong);
        }
        let (registry, path) = split_domain(name)?;
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        oci::validate_repository(&repository).map_err(|e| ReferenceError::Repository {
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

    /// The reference exactly as written.
    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// The registry host (and port), normalised: `docker.io` when none is written, and for
    /// `index.docker.io`.
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

    /// The fully qualified form, `registry/repository[:tag][@digest]`, with `:latest` when there
    /// is neither tag nor digest, as docker prints it.
    pub fn canonical(&self) -> String {
        let mut s = format!("{}/{}", self.registry, self.repository);
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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageRef({:?} = {})", self.written, self.canonical())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

/// Splits `name` into (normalised registry, path) as docker does.
fn split_domain(name: &str) -> Result<(String, &str), ReferenceError> {
    let Some((first, rest)) = name.split_once('/') else {
        return Ok((DOCKER_HUB.to_owned(), name));
    };
    let is_domain = first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase());
    if !is_domain {
        return Ok((DOCKER_HUB.to_owned(), name));
    }
    validate_domain(first)?;
    let registry = if first == "index.docker.io" {
        DOCKER_HUB.to_owned()
    } else {
        first.to_owned()
    };
    Ok((registry, rest))
}

/// `host[:port]` where host is dot-separated labels of `[A-Za-z0-9-]` not starting or ending
/// with `-` (IPv6 literals are not accepted: the character check above already refuses `[`).
fn validate_domain(d: &str) -> Result<(), ReferenceError> {
    let bad = || ReferenceError::Domain(d.to_owned());
    let (host, port) = match d.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
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
        let u = r("Registry/app");
        assert_eq!(u.registry(), "Registry");
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
            Err(ReferenceError::Digest { .. })
        ));
        assert!(matches!(
            ImageRef::parse(&format!("nginx@md5:{}", "0".repeat(32))),
            Err(ReferenceError::Digest { .. })
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
            "[::1]:5000/a",
            "{{ .Values.image }}",
            "a@b@c",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            ImageRef::parse(&"a".repeat(256)),
            Err(ReferenceError::TooLong)
        );
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
