//! Image sources, named as skopeo names them, resolved to one image manifest whose config and
//! layers can be read, every byte verified against its digest.
//!
//! - [`SourceRef::parse`]: `oci:DIR[:TAG|@DIGEST]`, `oci-archive:FILE[:TAG]`,
//!   `docker-archive:FILE[:REPO:TAG]`, `docker://HOST/REPO:TAG|@DIGEST` or a bare
//!   `HOST/REPO[:TAG][@DIGEST]` (references are `oci`'s [`ImageRef`]).
//! - [`LocalImage::open`] for the three local kinds (synchronous, `std::io::Read`);
//!   [`RegistryImage::open`] for registries (async, through the project's `client` crate, with
//!   a blocking `Read` adapter for a layer walker running on a blocking thread).
//! - Both expose an [`ImageMeta`]: the manifest digest, the config (bytes and the parsed
//!   [`ImageConfig`]) and the layers ([`Layer`]), and open blobs as streams
//!   ([`BlobReader`]): nothing is held whole in memory except manifests and configs, which are
//!   capped ([`MAX_MANIFEST_BYTES`], [`MAX_CONFIG_BYTES`]).
//!
//! Verification: a manifest's and a config's bytes are checked against their digests when read;
//! a layer is hashed while it streams and a mismatch (or a wrong length) is an error at the end
//! of the stream, so a reader that consumes a layer to its end has read exactly the bytes the
//! manifest names.
//!
//! An index (or Docker manifest list) is resolved to one image manifest by platform:
//! `linux/amd64` unless [`OpenOptions::platform`] says otherwise.

mod archive;
mod docker_archive;
mod layout;
mod registry;

use std::fmt;
use std::io::{self, Read};
use std::path::PathBuf;
use std::str::FromStr;

use oci::{Descriptor, Digest, Hasher, ImageRef, Manifest, ManifestKind};
use serde::{Deserialize, Serialize};

pub use layout::LocalImage;
pub use registry::{RegistryBlob, RegistryImage};

/// Largest manifest, index or `index.json`/`manifest.json` read (the Distribution spec's
/// recommended manifest limit).
pub const MAX_MANIFEST_BYTES: u64 = oci::manifest::MAX_MANIFEST_BYTES as u64;

/// Largest image config read (configs with a long history run to tens of KiB; 8 MiB is far
/// beyond any real one).
pub const MAX_CONFIG_BYTES: u64 = 8 * 1024 * 1024;

/// How deep indexes may nest (an `index.json` naming an index naming a manifest is 2).
const MAX_INDEX_DEPTH: usize = 4;

/// Why an image source could not be parsed, opened or read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source string names no known transport or a malformed reference.
    #[error("invalid image source {source_text:?}: {reason}")]
    Parse {
        /// The source as given.
        source_text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A skopeo transport this scanner does not read (`containers-storage:`, `dir:`, ...).
    #[error("unsupported image source transport {0:?}")]
    UnsupportedTransport(String),
    /// Reading a file of the source failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being read.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A file or blob the source must hold is not there.
    #[error("{0} not found")]
    NotFound(String),
    /// A file of the source is not in the format it should be.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being read (`index.json`, `manifest sha256:...`).
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// Bytes read do not hash to the digest that names them.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was read.
        what: String,
        /// The digest that names it.
        expected: Digest,
        /// The digest of what was read.
        actual: Digest,
    },
    /// A manifest, index or config larger than its cap.
    #[error("{what} is larger than {limit} bytes")]
    TooLarge {
        /// What was being read.
        what: String,
        /// The cap.
        limit: u64,
    },
    /// A gzip- or zstd-compressed archive: only plain tar archives are indexed (skopeo and
    /// `docker save` write plain tar; decompress first).
    #[error("{0} is compressed; only uncompressed tar archives can be read (decompress it first)")]
    CompressedArchive(String),
    /// The reference matches nothing, or several images when one is needed.
    #[error("{0}")]
    Selection(String),
    /// No manifest in an index matches the requested platform.
    #[error("no image for platform {wanted} (available: {available})")]
    NoPlatform {
        /// The platform asked for.
        wanted: String,
        /// The platforms the index lists.
        available: String,
    },
    /// A registry blob was opened outside a tokio runtime.
    #[error("reading from a registry needs a tokio runtime: {0}")]
    NoRuntime(String),
    /// The registry client failed (transport, authentication, registry error, its own digest
    /// checks).
    #[error("registry: {0}")]
    Registry(#[from] client::Error),
}

impl SourceError {
    fn io(what: impl Into<String>, source: io::Error) -> Self {
        SourceError::Io {
            what: what.into(),
            source,
        }
    }

    fn malformed(what: impl Into<String>, reason: impl fmt::Display) -> Self {
        SourceError::Malformed {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

/// Result of source operations.
pub type Result<T, E = SourceError> = std::result::Result<T, E>;

/// An image source as written on the command line, skopeo's way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceRef {
    /// `oci:DIR[:TAG|@DIGEST]`: an OCI image layout directory.
    OciDir {
        /// The layout directory.
        path: PathBuf,
        /// Which of its images (`None`: the only one).
        select: LayoutSelect,
    },
    /// `oci-archive:FILE[:TAG]`: a tar of an OCI image layout.
    OciArchive {
        /// The archive.
        path: PathBuf,
        /// Which of its images (`None`: the only one).
        select: LayoutSelect,
    },
    /// `docker-archive:FILE[:REPO:TAG]`: what `docker save` and `skopeo copy ...
    /// docker-archive:` write.
    DockerArchive {
        /// The archive.
        path: PathBuf,
        /// Which image, by one of its `RepoTags` (`None`: the only one).
        tag: Option<String>,
    },
    /// `docker://REF` or a bare reference: an image in a registry.
    Registry(ImageRef),
}

/// Which image of an OCI layout (its `index.json` entries).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LayoutSelect {
    /// The layout's only image (an error when it holds several).
    #[default]
    Only,
    /// The entry whose `org.opencontainers.image.ref.name` annotation is this tag.
    Tag(String),
    /// The entry with this digest.
    Digest(Digest),
}

/// Transports skopeo knows that are not read here: refused by name rather than mistaken for
/// a Docker Hub reference.
const OTHER_TRANSPORTS: &[&str] = &[
    "containers-storage",
    "dir",
    "docker-daemon",
    "ostree",
    "sif",
    "tarball",
];

impl SourceRef {
    /// Parses a source string (see the module documentation for the forms).
    pub fn parse(s: &str) -> Result<SourceRef> {
        let err = |reason: &str| SourceError::Parse {
            source_text: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(err("empty"));
        }
        if let Some(rest) = s.strip_prefix("docker://") {
            let r = ImageRef::parse(rest).map_err(|e| err(&e.to_string()))?;
            return Ok(SourceRef::Registry(r));
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (path, select) = split_layout(rest).map_err(|r| err(&r))?;
            return Ok(SourceRef::OciArchive { path, select });
        }
        if let Some(rest) = s.strip_prefix("oci:") {
            let (path, select) = split_layout(rest).map_err(|r| err(&r))?;
            return Ok(SourceRef::OciDir { path, select });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            // skopeo: docker-archive:path[:docker-reference]; the path holds no ':'.
            let (path, tag) = match rest.split_once(':') {
                Some((p, t)) if !t.is_empty() => (p, Some(t.to_string())),
                Some((p, _)) => (p, None),
                None => (rest, None),
            };
            if path.is_empty() {
                return Err(err("no archive path"));
            }
            return Ok(SourceRef::DockerArchive {
                path: PathBuf::from(path),
                tag,
            });
        }
        if let Some((transport, _)) = s.split_once(':')
            && OTHER_TRANSPORTS.contains(&transport)
        {
            return Err(SourceError::UnsupportedTransport(transport.to_string()));
        }
        let r = ImageRef::parse(s).map_err(|e| err(&e.to_string()))?;
        Ok(SourceRef::Registry(r))
    }

    /// Whether the source is read from a registry (needs a client and a runtime).
    pub fn is_registry(&self) -> bool {
        matches!(self, SourceRef::Registry(_))
    }
}

impl FromStr for SourceRef {
    type Err = SourceError;
    fn from_str(s: &str) -> Result<Self> {
        SourceRef::parse(s)
    }
}

impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sel = |s: &LayoutSelect| match s {
            LayoutSelect::Only => String::new(),
            LayoutSelect::Tag(t) => format!(":{t}"),
            LayoutSelect::Digest(d) => format!("@{d}"),
        };
        match self {
            SourceRef::OciDir { path, select } => {
                write!(f, "oci:{}{}", path.display(), sel(select))
            }
            SourceRef::OciArchive { path, select } => {
                write!(f, "oci-archive:{}{}", path.display(), sel(select))
            }
            SourceRef::DockerArchive { path, tag } => match tag {
                Some(t) => write!(f, "docker-archive:{}:{t}", path.display()),
                None => write!(f, "docker-archive:{}", path.display()),
            },
            SourceRef::Registry(r) => write!(f, "docker://{r}"),
        }
    }
}

/// Splits `DIR[:TAG]`, `DIR@DIGEST` or `DIR:@DIGEST` (skopeo: the path holds no `:`).
fn split_layout(rest: &str) -> std::result::Result<(PathBuf, LayoutSelect), String> {
    let (path, select) = if let Some((p, d)) = rest
        .split_once('@')
        .filter(|(_, d)| d.contains(':') && Digest::parse(d).is_ok())
    {
        let p = p.strip_suffix(':').unwrap_or(p);
        let d = Digest::parse(d).map_err(|e| e.to_string())?;
        (p, LayoutSelect::Digest(d))
    } else {
        match rest.split_once(':') {
            Some((p, "")) => (p, LayoutSelect::Only),
            Some((p, t)) => {
                oci::validate_tag(t).map_err(|e| format!("tag {t:?}: {e}"))?;
                (p, LayoutSelect::Tag(t.to_string()))
            }
            None => (rest, LayoutSelect::Only),
        }
    };
    if path.is_empty() {
        return Err("no path".into());
    }
    Ok((PathBuf::from(path), select))
}

/// A platform, `os/arch[/variant]` (`linux/amd64`, `linux/arm64/v8`, `linux/arm/v7`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `linux`, `windows`, ...
    pub os: String,
    /// GOARCH names: `amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`, `riscv64`.
    pub architecture: String,
    /// `v7`, `v8`, ... when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || SourceError::Parse {
            source_text: s.to_string(),
            reason: "a platform is os/arch[/variant]".into(),
        };
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }

    /// The platform of an index entry (`None` when the entry has none).
    fn of_descriptor(d: &Descriptor) -> Option<Platform> {
        let p = d.platform.as_ref()?;
        Some(Platform {
            os: p.get("os")?.as_str()?.to_string(),
            architecture: p.get("architecture")?.as_str()?.to_string(),
            variant: p
                .get("variant")
                .and_then(|v| v.as_str())
                .map(str::to_string),
        })
    }

    /// Whether an image of platform `have` serves a request for `self`: os and architecture
    /// equal; a requested variant must match (arm64's `v8` is its default).
    fn accepts(&self, have: &Platform) -> bool {
        if self.os != have.os || self.architecture != have.architecture {
            return false;
        }
        let norm = |v: Option<&str>, arch: &str| match (v, arch) {
            (None, "arm64") => Some("v8".to_string()),
            (v, _) => v.map(str::to_string),
        };
        match &self.variant {
            None => true,
            Some(v) => {
                norm(Some(v), &self.architecture)
                    == norm(have.variant.as_deref(), &have.architecture)
            }
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// How to open a source.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// The platform to choose from an index (default `linux/amd64`).
    pub platform: Option<Platform>,
}

/// One entry of a config's `history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HistoryEntry {
    /// When the step ran (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The command that made it (`/bin/sh -c #(nop) ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step made no layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// What a scanner wants from an image config (the OCI image spec's `config` JSON, which
/// Docker's v2 config shares).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ImageConfig {
    /// `os`.
    #[serde(default)]
    pub os: String,
    /// `architecture`.
    #[serde(default)]
    pub architecture: String,
    /// `variant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// `created` (RFC 3339), when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// `history`.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    /// `rootfs.diff_ids`: the digests of the uncompressed layers, lowest first.
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    history: Option<Vec<HistoryEntry>>,
    #[serde(default)]
    rootfs: Option<RawRootfs>,
}

#[derive(Deserialize)]
struct RawRootfs {
    #[serde(default)]
    diff_ids: Vec<Digest>,
}

impl ImageConfig {
    /// Parses a config's JSON.
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig> {
        let raw: RawConfig =
            serde_json::from_slice(bytes).map_err(|e| SourceError::malformed("image config", e))?;
        Ok(ImageConfig {
            os: raw.os,
            architecture: raw.architecture,
            variant: raw.variant,
            created: raw.created,
            history: raw.history.unwrap_or_default(),
            diff_ids: raw.rootfs.map(|r| r.diff_ids).unwrap_or_default(),
        })
    }
}

/// One layer of the chosen image, as its manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// The digest of the blob as stored (compressed, for compressed layers): the key layer
    /// inventories are kept under.
    pub digest: Digest,
    /// Its media type (`application/vnd.oci.image.layer.v1.tar+gzip`, ...), which says how it
    /// is compressed.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// The uncompressed digest from the config's `rootfs.diff_ids`, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<Digest>,
}

impl Layer {
    /// A descriptor of the layer, for [`LocalImage::open_blob`] and friends.
    pub fn descriptor(&self) -> Descriptor {
        descriptor(&self.media_type, &self.digest, self.size)
    }
}

fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest: digest.clone(),
        size: size as i64,
        urls: None,
        annotations: None,
        artifact_type: None,
        platform: None,
    }
}

/// What is known about the chosen image once its manifest and config are read.
#[derive(Debug, Clone)]
pub struct ImageMeta {
    /// The image manifest's digest (for docker-archives, which hold no manifest: the digest
    /// of the Docker v2 manifest Wharf derives from `manifest.json`, see
    /// [`LocalImage::open`]).
    pub manifest_digest: Digest,
    /// The image manifest's media type.
    pub manifest_media_type: String,
    /// The image manifest's bytes.
    pub manifest_bytes: Vec<u8>,
    /// The index the manifest was chosen from, when there was one (its digest).
    pub index_digest: Option<Digest>,
    /// The config blob's descriptor.
    pub config_descriptor: Descriptor,
    /// The config's bytes, verified.
    pub config_bytes: Vec<u8>,
    /// The parsed config.
    pub config: ImageConfig,
    /// The layers, lowest first.
    pub layers: Vec<Layer>,
}

impl ImageMeta {
    /// Builds the metadata from a verified manifest and its verified config bytes.
    fn new(
        manifest_digest: Digest,
        manifest: &Manifest,
        manifest_bytes: Vec<u8>,
        index_digest: Option<Digest>,
        config_bytes: Vec<u8>,
    ) -> Result<ImageMeta> {
        let config_descriptor = manifest
            .config
            .clone()
            .ok_or_else(|| SourceError::malformed("manifest", "no config"))?;
        let config = ImageConfig::parse(&config_bytes)?;
        let layers = manifest
            .layers
            .iter()
            .enumerate()
            .map(|(i, d)| Layer {
                digest: d.digest.clone(),
                media_type: d.media_type.clone(),
                size: d.size.max(0) as u64,
                diff_id: config.diff_ids.get(i).cloned(),
            })
            .collect();
        Ok(ImageMeta {
            manifest_digest,
            manifest_media_type: manifest.media_type.clone(),
            manifest_bytes,
            index_digest,
            config_descriptor,
            config_bytes,
            config,
            layers,
        })
    }

    /// The config's platform.
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.config.os.clone(),
            architecture: self.config.architecture.clone(),
            variant: self.config.variant.clone(),
        }
    }
}

/// Chooses the entry of an index for `platform`: the first image entry whose platform
/// accepts it; an index with a single entry and no platforms is that entry.
fn choose_from_index(index: &Manifest, platform: &Platform, what: &str) -> Result<Descriptor> {
    // Attestation manifests (buildx) are listed with platform unknown/unknown: skipped.
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| {
            Platform::of_descriptor(d).is_none_or(|p| p.os != "unknown")
                && d.media_type != oci::media_types::OCI_EMPTY
        })
        .collect();
    if let Some(d) = candidates
        .iter()
        .find(|d| Platform::of_descriptor(d).is_some_and(|p| platform.accepts(&p)))
    {
        return Ok((*d).clone());
    }
    if candidates.len() == 1 && Platform::of_descriptor(candidates[0]).is_none() {
        return Ok(candidates[0].clone());
    }
    let available: Vec<String> = candidates
        .iter()
        .map(|d| {
            Platform::of_descriptor(d)
                .map(|p| p.to_string())
                .unwrap_or_else(|| format!("{} (no platform)", d.digest))
        })
        .collect();
    if available.is_empty() {
        return Err(SourceError::Selection(format!("{what} lists no images")));
    }
    Err(SourceError::NoPlatform {
        wanted: platform.to_string(),
        available: available.join(", "),
    })
}

/// Parses manifest bytes, naming what they are in errors.
fn parse_manifest(media_type: Option<&str>, bytes: &[u8], what: &str) -> Result<Manifest> {
    // Docker schema 1 and other types are refused by the parser with a clear reason.
    let m = Manifest::parse(media_type, bytes).map_err(|e| SourceError::malformed(what, e))?;
    if m.kind == ManifestKind::Image && m.config.is_none() {
        return Err(SourceError::malformed(
            what,
            "image manifest without config",
        ));
    }
    Ok(m)
}

/// Checks that `bytes` hash to `digest`.
fn verify(what: &str, bytes: &[u8], digest: &Digest) -> Result<()> {
    let actual = Digest::of(digest.algorithm(), bytes);
    if actual != *digest {
        return Err(SourceError::DigestMismatch {
            what: what.to_string(),
            expected: digest.clone(),
            actual,
        });
    }
    Ok(())
}

/// Reads all of `r`, refusing more than `limit` bytes.
fn read_capped(r: impl Read, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| SourceError::io(format!("reading {what}"), e))?;
    if out.len() as u64 > limit {
        return Err(SourceError::TooLarge {
            what: what.to_string(),
            limit,
        });
    }
    Ok(out)
}

/// A blob being read: the bytes as stored, hashed as they pass. At the end of the stream the
/// length and digest are checked against the descriptor's; a mismatch is returned as an
/// [`io::ErrorKind::InvalidData`] error from that last `read` (carrying a
/// [`SourceError::DigestMismatch`]), so a consumer that reads to the end cannot miss it.
pub struct BlobReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    expected: Digest,
    expected_size: Option<u64>,
    read: u64,
    what: String,
}

impl<R: Read> BlobReader<R> {
    /// Wraps `inner`, which yields the blob `digest` (of `expected_size` bytes when known).
    pub fn new(inner: R, digest: &Digest, expected_size: Option<u64>, what: String) -> Self {
        BlobReader {
            inner,
            hasher: Some(Hasher::new(digest.algorithm())),
            expected: digest.clone(),
            expected_size,
            read: 0,
            what,
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    fn finish(&mut self) -> io::Result<()> {
        let Some(hasher) = self.hasher.take() else {
            return Ok(());
        };
        if let Some(size) = self.expected_size
            && size != self.read
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                SourceError::malformed(
                    self.what.clone(),
                    format!("{} bytes read, {size} expected", self.read),
                ),
            ));
        }
        let actual = hasher.finish();
        if actual != self.expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                SourceError::DigestMismatch {
                    what: self.what.clone(),
                    expected: self.expected.clone(),
                    actual,
                },
            ));
        }
        Ok(())
    }
}

impl<R: Read> Read for BlobReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.finish()?;
            return Ok(0);
        }
        self.read += n as u64;
        if let Some(size) = self.expected_size
            && self.read > size
        {
            self.hasher = None;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                SourceError::malformed(self.what.clone(), format!("more than {size} bytes")),
            ));
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

impl<R> fmt::Debug for BlobReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobReader")
            .field("what", &self.what)
            .field("read", &self.read)
            .finish()
    }
}

/// Either kind of image, for callers that take any source (the CLI).
#[derive(Debug)]
pub enum Image {
    /// An OCI layout, oci-archive or docker-archive.
    Local(LocalImage),
    /// An image in a registry.
    Registry(RegistryImage),
}

impl Image {
    /// Opens any source: local ones on a blocking thread, registry ones with `client` (an
    /// error when it is `None`).
    pub async fn open(
        source: &SourceRef,
        options: &OpenOptions,
        client: Option<client::Client>,
    ) -> Result<Image> {
        match source {
            SourceRef::Registry(r) => {
                let client = client.ok_or_else(|| {
                    SourceError::Selection(format!("{r} is in a registry, and no client was given"))
                })?;
                Ok(Image::Registry(
                    RegistryImage::open(client, r, options).await?,
                ))
            }
            local => {
                let (local, options) = (local.clone(), options.clone());
                tokio::task::spawn_blocking(move || LocalImage::open(&local, &options))
                    .await
                    .map_err(|e| SourceError::io("opening the image", io::Error::other(e)))?
                    .map(Image::Local)
            }
        }
    }

    /// The image's manifest, config and layers.
    pub fn meta(&self) -> &ImageMeta {
        match self {
            Image::Local(i) => i.meta(),
            Image::Registry(i) => i.meta(),
        }
    }

    /// Opens a blob as a blocking reader, verified at its end. For registry images, call it
    /// on a blocking thread that can see the runtime (`spawn_blocking`).
    pub fn open_blob_blocking(&self, d: &Descriptor) -> Result<Box<dyn Read + Send>> {
        match self {
            Image::Local(i) => Ok(Box::new(i.open_blob(d)?)),
            Image::Registry(i) => Ok(Box::new(i.open_blob_blocking(d)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_as_skopeo_writes_them() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            SourceRef::parse("oci:/tmp/lay:v1").unwrap(),
            SourceRef::OciDir {
                path: "/tmp/lay".into(),
                select: LayoutSelect::Tag("v1".into())
            }
        );
        assert_eq!(
            SourceRef::parse(&format!("oci:/tmp/lay@{d}")).unwrap(),
            SourceRef::OciDir {
                path: "/tmp/lay".into(),
                select: LayoutSelect::Digest(Digest::parse(d).unwrap())
            }
        );
        assert_eq!(
            SourceRef::parse(&format!("oci:lay:@{d}")).unwrap(),
            SourceRef::OciDir {
                path: "lay".into(),
                select: LayoutSelect::Digest(Digest::parse(d).unwrap())
            }
        );
        assert_eq!(
            SourceRef::parse("oci:lay").unwrap(),
            SourceRef::OciDir {
                path: "lay".into(),
                select: LayoutSelect::Only
            }
        );
        assert_eq!(
            SourceRef::parse("oci-archive:a.tar:latest").unwrap(),
            SourceRef::OciArchive {
                path: "a.tar".into(),
                select: LayoutSelect::Tag("latest".into())
            }
        );
        assert_eq!(
            SourceRef::parse("docker-archive:a.tar").unwrap(),
            SourceRef::DockerArchive {
                path: "a.tar".into(),
                tag: None
            }
        );
        assert_eq!(
            SourceRef::parse("docker-archive:a.tar:busybox:1").unwrap(),
            SourceRef::DockerArchive {
                path: "a.tar".into(),
                tag: Some("busybox:1".into())
            }
        );
        let SourceRef::Registry(r) = SourceRef::parse("docker://127.0.0.1:5000/a/b:1").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("127.0.0.1:5000", "a/b", Some("1"))
        );
        let SourceRef::Registry(r) = SourceRef::parse(&format!("localhost:5000/x@{d}")).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.digest().unwrap().to_string(), d);
        assert!(matches!(
            SourceRef::parse("containers-storage:x"),
            Err(SourceError::UnsupportedTransport(_))
        ));
        for bad in [
            "",
            "oci:",
            "oci::tag",
            "docker://",
            "oci:lay:bad tag",
            "Not A Ref!",
        ] {
            assert!(SourceRef::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn platforms_parse_and_match() {
        let p = Platform::parse("linux/arm64").unwrap();
        let v8 = Platform::parse("linux/arm64/v8").unwrap();
        assert!(p.accepts(&v8));
        assert!(v8.accepts(&p));
        assert!(
            !Platform::parse("linux/arm/v7")
                .unwrap()
                .accepts(&Platform::parse("linux/arm/v6").unwrap())
        );
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//v7").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
    }

    #[test]
    fn a_blob_reader_fails_at_the_end_on_a_wrong_digest_or_length() {
        let data = b"hello world".to_vec();
        let good = Digest::sha256(&data);
        let mut out = Vec::new();
        BlobReader::new(&data[..], &good, Some(11), "t".into())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        let bad = Digest::sha256(b"other");
        let e = BlobReader::new(&data[..], &bad, Some(11), "t".into())
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(e.to_string().contains("digest mismatch"), "{e}");
        let e = BlobReader::new(&data[..], &good, Some(12), "t".into())
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(e.to_string().contains("12 expected"), "{e}");
        let e = BlobReader::new(&data[..], &good, Some(5), "t".into())
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(e.to_string().contains("more than 5"), "{e}");
    }
}
