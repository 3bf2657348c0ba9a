//! The registry client: transport, authentication and the Distribution API operations.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use oci::{Algorithm, Descriptor, Digest, Hasher};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, LOCATION};
use reqwest::{Method, StatusCode, Url};
use tokio::io::{AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::auth::{BasicCredentials, Challenge, CredentialStore, parse_challenges};
use crate::error::{Error, ErrorCode, Result};
use oci::image_ref::{ImageRef, host_without_port, is_loopback, normalize_registry};

/// The `Accept` header for manifests: OCI and Docker image manifests and indexes.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// Largest manifest read by default (the spec's recommended limit).
pub const MAX_MANIFEST_BYTES: u64 = oci::manifest::MAX_MANIFEST_BYTES as u64;

/// How the client is set up. `Default` is anonymous, HTTPS except for loopback hosts.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Registries (`host` or `host:port`) reached over plain HTTP even though they are not
    /// loopback. Loopback registries (`localhost`, `127.0.0.0/8`, `::1`) always use plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Credentials per registry.
    pub credentials: CredentialStore,
    /// Extra trusted root certificates (PEM), on top of the system's.
    pub extra_root_certificates: Vec<Vec<u8>>,
    /// `User-Agent` header.
    pub user_agent: String,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Longest wait for any single read from the network.
    pub read_timeout: Duration,
    /// Longest wait for a response's headers (each request, token requests included); `None`
    /// waits as long as the connection stays up.
    pub response_timeout: Option<Duration>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            insecure_registries: Vec::new(),
            credentials: CredentialStore::new(),
            extra_root_certificates: Vec::new(),
            user_agent: concat!("wharf-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(300),
            response_timeout: None,
        }
    }
}

impl ClientConfig {
    /// Default configuration with credentials from the environment's files
    /// (see [`CredentialStore::from_env`]).
    pub fn from_env() -> Result<Self> {
        Ok(ClientConfig {
            credentials: CredentialStore::from_env()?,
            ..ClientConfig::default()
        })
    }

    /// Adds a registry reached over plain HTTP.
    pub fn insecure_registry(mut self, registry: impl Into<String>) -> Self {
        self.insecure_registries.push(registry.into());
        self
    }

    /// Replaces the credentials.
    pub fn with_credentials(mut self, credentials: CredentialStore) -> Self {
        self.credentials = credentials;
        self
    }
}

/// What a reference resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The manifest digest.
    pub digest: Digest,
    /// The manifest media type.
    pub media_type: String,
    /// The manifest size in bytes.
    pub size: u64,
}

impl Resolved {
    /// A descriptor of the manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size as i64,
            urls: None,
            annotations: None,
            artifact_type: None,
            platform: None,
        }
    }
}

/// A fetched manifest, its digest verified.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    /// The digest of `bytes` (with the algorithm of the reference's digest, else SHA-256).
    pub digest: Digest,
    /// The media type (`Content-Type`, else the body's `mediaType`).
    pub media_type: String,
    /// The exact bytes.
    pub bytes: Bytes,
}

impl FetchedManifest {
    /// Digest, media type and size.
    pub fn resolved(&self) -> Resolved {
        Resolved {
            digest: self.digest.clone(),
            media_type: self.media_type.clone(),
            size: self.bytes.len() as u64,
        }
    }
}

/// The outcome of a blob push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedBlob {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// True when the registry already had it (nothing was uploaded).
    pub already_present: bool,
}

/// The outcome of a manifest push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedManifest {
    /// The manifest's digest.
    pub digest: Digest,
    /// True when the registry answered with `OCI-Subject`, i.e. it processed the manifest's
    /// `subject` for its referrers API (OCI 1.1). False for registries without referrers
    /// support, where clients maintain the fallback tag themselves.
    pub subject_processed: bool,
}

/// What a request does to a repository: the actions of the token scope it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read (`pull`).
    Pull,
    /// Write (`pull,push`).
    Push,
    /// Delete (`delete`).
    Delete,
}

impl Action {
    /// The token scope for this action on `repository` (`repository:team/app:pull`).
    pub fn scope(self, repository: &str) -> String {
        match self {
            Action::Pull => format!("repository:{repository}:pull"),
            Action::Push => format!("repository:{repository}:pull,push"),
            Action::Delete => format!("repository:{repository}:delete"),
        }
    }
}

struct CachedToken {
    token: String,
    expires: Instant,
}

struct Inner {
    http: reqwest::Client,
    insecure: Vec<String>,
    credentials: CredentialStore,
    response_timeout: Option<Duration>,
    /// Bearer tokens by (endpoint, scope).
    tokens: TokenCache,
    /// Endpoints (base URLs) that asked for Basic auth: credentials are sent up front afterwards.
    basic: Mutex<HashSet<String>>,
    /// Registries whose missing-credentials helper warning was already logged.
    warned: Mutex<HashSet<String>>,
}

/// An OCI Distribution client. Cheap to clone (shared connection pool and token cache).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("insecure", &self.inner.insecure)
            .field("credentials", &self.inner.credentials)
            .finish()
    }
}

/// A request body that can be sent again after an authentication round trip.
#[derive(Clone)]
enum Payload {
    None,
    Bytes(Bytes),
}

impl Client {
    /// Builds a client. Installs rustls' `ring` crypto provider as the process default if none
    /// is installed yet.
    pub fn new(config: ClientConfig) -> Result<Self> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Err means another thread installed one first: fine either way.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .redirect(reqwest::redirect::Policy::limited(10))
            .no_proxy();
        for pem in &config.extra_root_certificates {
            let cert = reqwest::Certificate::from_pem(pem).map_err(Error::Build)?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(Error::Build)?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                insecure: config.insecure_registries,
                credentials: config.credentials,
                response_timeout: config.response_timeout,
                tokens: TokenCache::default(),
                basic: Mutex::new(HashSet::new()),
                warned: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// A client with the default configuration and credentials from the environment's files.
    pub fn from_env() -> Result<Self> {
        Client::new(ClientConfig::from_env()?)
    }

    /// `http` or `https` for a registry.
    pub fn scheme(&self, registry: &str) -> &'static str {
        let insecure = is_loopback(registry)
            || self
                .inner
                .insecure
                .iter()
                .any(|h| h == registry || host_without_port(registry) == h.as_str());
        if insecure { "http" } else { "https" }
    }

    /// `scheme://api-host` of the image's registry.
    pub fn base_url(&self, image: &ImageRef) -> String {
        format!("{}://{}", self.scheme(image.registry()), image.api_host())
    }

    fn url(&self, image: &ImageRef, tail: &str) -> Result<Url> {
        let s = format!("{}/v2/{}/{tail}", self.base_url(image), image.repository());
        Url::parse(&s).map_err(|e| Error::InvalidReference {
            reference: image.to_string(),
            reason: format!("cannot form URL {s}: {e}"),
        })
    }

    // -----------------------------------------------------------------------------------------
    // Operations
    // -----------------------------------------------------------------------------------------

    /// Resolves the image's reference (tag or digest) to the manifest's digest, media type and
    /// size, with `HEAD` (falling back to `GET` when `HEAD` fails or lacks the digest header).
    pub async fn resolve(&self, image: &ImageRef) -> Result<Resolved> {
        let url = self.url(image, &format!("manifests/{}", image.reference()))?;
        let resp = self
            .send(
                image,
                Action::Pull,
                Method::HEAD,
                url,
                accept_manifests(),
                Payload::None,
            )
            .await?;
        if resp.status().is_success() {
            let h = resp.headers();
            let digest = header_str(h, "docker-content-digest")
                .and_then(|d| Digest::parse(d).ok())
                .or_else(|| image.digest().cloned());
            let media_type = header_str(h, CONTENT_TYPE.as_str()).map(essence);
            let size = header_str(h, CONTENT_LENGTH.as_str()).and_then(|s| s.parse::<u64>().ok());
            if let (Some(digest), Some(media_type), Some(size)) = (digest, media_type, size)
                && !media_type.is_empty()
                && size > 0
            {
                if let Some(want) = image.digest()
                    && *want != digest
                {
                    return Err(Error::DigestMismatch {
                        what: format!("HEAD {image}"),
                        expected: want.clone(),
                        actual: digest,
                    });
                }
                return Ok(Resolved {
                    digest,
                    media_type,
                    size,
                });
            }
        }
        Ok(self.get_manifest(image).await?.resolved())
    }

    /// Fetches the manifest the image's reference names (at most [`MAX_MANIFEST_BYTES`]), and
    /// verifies its digest: against the reference's digest, and against `Docker-Content-Digest`
    /// when the registry sends one.
    pub async fn get_manifest(&self, image: &ImageRef) -> Result<FetchedManifest> {
        self.get_manifest_limited(image, MAX_MANIFEST_BYTES).await
    }

    /// [`Client::get_manifest`] with an explicit size limit.
    pub async fn get_manifest_limited(
        &self,
        image: &ImageRef,
        limit: u64,
    ) -> Result<FetchedManifest> {
        let url = self.url(image, &format!("manifests/{}", image.reference()))?;
        let resp = self
            .send_ok(
                image,
                Action::Pull,
                Method::GET,
                url,
                accept_manifests(),
                Payload::None,
            )
            .await?;
        let announced =
            header_str(resp.headers(), "docker-content-digest").and_then(|d| Digest::parse(d).ok());
        let content_type = header_str(resp.headers(), CONTENT_TYPE.as_str()).map(essence);
        let what = format!("manifest {image}");
        let bytes = read_limited(resp, limit, &what).await?;
        let algorithm = image
            .digest()
            .map(Digest::algorithm)
            .unwrap_or(Algorithm::Sha256);
        let digest = Digest::of(algorithm, &bytes);
        if let Some(want) = image.digest()
            && *want != digest
        {
            return Err(Error::DigestMismatch {
                what,
                expected: want.clone(),
                actual: digest,
            });
        }
        if let Some(announced) = announced {
            let actual = Digest::of(announced.algorithm(), &bytes);
            if actual != announced {
                return Err(Error::DigestMismatch {
                    what: format!("{what} (Docker-Content-Digest)"),
                    expected: announced,
                    actual,
                });
            }
        }
        let media_type = match content_type.filter(|c| !c.is_empty() && c != "application/json") {
            Some(c) => c,
            None => body_media_type(&bytes).unwrap_or_default(),
        };
        Ok(FetchedManifest {
            digest,
            media_type,
            bytes,
        })
    }

    /// True when the repository has the blob; its size if so.
    pub async fn blob_size(&self, image: &ImageRef, digest: &Digest) -> Result<Option<u64>> {
        let url = self.url(image, &format!("blobs/{digest}"))?;
        let resp = self
            .send(
                image,
                Action::Pull,
                Method::HEAD,
                url.clone(),
                HeaderMap::new(),
                Payload::None,
            )
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(
                header_str(resp.headers(), CONTENT_LENGTH.as_str())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
            )),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(registry_error("HEAD", &url, resp).await),
        }
    }

    /// Fetches a blob into memory, refusing more than `limit` bytes, and verifies its digest.
    pub async fn get_blob(&self, image: &ImageRef, digest: &Digest, limit: u64) -> Result<Bytes> {
        let url = self.url(image, &format!("blobs/{digest}"))?;
        let resp = self
            .send_ok(
                image,
                Action::Pull,
                Method::GET,
                url,
                HeaderMap::new(),
                Payload::None,
            )
            .await?;
        let what = format!("blob {digest}");
        let bytes = read_limited(resp, limit, &what).await?;
        let actual = Digest::of(digest.algorithm(), &bytes);
        if actual != *digest {
            return Err(Error::DigestMismatch {
                what,
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Streams a blob into `out`, hashing as it goes; returns the number of bytes. On
    /// [`Error::DigestMismatch`] the bytes already written are not the blob and must be
    /// discarded by the caller (write to a temporary file and rename on success).
    pub async fn get_blob_to<W: AsyncWrite + Unpin>(
        &self,
        image: &ImageRef,
        digest: &Digest,
        out: &mut W,
    ) -> Result<u64> {
        let url = self.url(image, &format!("blobs/{digest}"))?;
        let mut resp = self
            .send_ok(
                image,
                Action::Pull,
                Method::GET,
                url.clone(),
                HeaderMap::new(),
                Payload::None,
            )
            .await?;
        let mut hasher = Hasher::new(digest.algorithm());
        let mut n = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport("GET", &url, e))? {
            hasher.update(&chunk);
            n += chunk.len() as u64;
            out.write_all(&chunk).await.map_err(|e| Error::Io {
                what: format!("writing blob {digest}"),
                source: e,
            })?;
        }
        out.flush().await.map_err(|e| Error::Io {
            what: format!("writing blob {digest}"),
            source: e,
        })?;
        let actual = hasher.finish();
        if actual != *digest {
            return Err(Error::DigestMismatch {
                what: format!("blob {digest}"),
                expected: digest.clone(),
                actual,
            });
        }
        Ok(n)
    }

    /// Pushes a blob held in memory (monolithic `POST` + `PUT`), unless `HEAD` says the
    /// repository already has it.
    pub async fn push_blob(&self, image: &ImageRef, data: Bytes) -> Result<PushedBlob> {
        let digest = Digest::sha256(&data);
        let size = data.len() as u64;
        if self.blob_size(image, &digest).await?.is_some() {
            return Ok(PushedBlob {
                digest,
                size,
                already_present: true,
            });
        }
        let location = self.start_upload(image).await?;
        let url = with_digest_query(location, &digest);
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            "application/octet-stream".parse().expect("static"),
        );
        let resp = self
            .send(
                image,
                Action::Push,
                Method::PUT,
                url.clone(),
                headers,
                Payload::Bytes(data),
            )
            .await?;
        self.finish_upload(&url, resp, &digest).await?;
        Ok(PushedBlob {
            digest,
            size,
            already_present: false,
        })
    }

    /// Pushes a file as a blob, streaming it (hashed first, then uploaded in one `PUT`), unless
    /// the repository already has it.
    pub async fn push_blob_file(&self, image: &ImageRef, path: &Path) -> Result<PushedBlob> {
        let io_err = |e| Error::Io {
            what: format!("reading {}", path.display()),
            source: e,
        };
        let mut f = tokio::fs::File::open(path).await.map_err(io_err)?;
        let mut hasher = Hasher::new(Algorithm::Sha256);
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf).await.map_err(io_err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        let digest = hasher.finish();
        if self.blob_size(image, &digest).await?.is_some() {
            return Ok(PushedBlob {
                digest,
                size,
                already_present: true,
            });
        }
        // The POST settles authentication, so the streamed PUT (which cannot be replayed) goes
        // out with a valid token.
        let location = self.start_upload(image).await?;
        let url = with_digest_query(location, &digest);
        let file = tokio::fs::File::open(path).await.map_err(io_err)?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let mut req = self
            .inner
            .http
            .put(url.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size)
            .body(body);
        if let Some(auth) = self.cached_auth(&self.target(image), Action::Push) {
            req = req.header(AUTHORIZATION, auth);
        }
        let resp = req.send().await.map_err(|e| transport("PUT", &url, e))?;
        self.finish_upload(&url, resp, &digest).await?;
        Ok(PushedBlob {
            digest,
            size,
            already_present: false,
        })
    }

    async fn start_upload(&self, image: &ImageRef) -> Result<Url> {
        let url = self.url(image, "blobs/uploads/")?;
        let resp = self
            .send_ok(
                image,
                Action::Push,
                Method::POST,
                url.clone(),
                HeaderMap::new(),
                Payload::Bytes(Bytes::new()),
            )
            .await?;
        let loc = header_str(resp.headers(), LOCATION.as_str()).ok_or_else(|| {
            Error::InvalidResponse {
                url: url.to_string(),
                reason: "upload started without a Location header".into(),
            }
        })?;
        url.join(loc).map_err(|e| Error::InvalidResponse {
            url: url.to_string(),
            reason: format!("bad Location {loc:?}: {e}"),
        })
    }

    async fn finish_upload(
        &self,
        url: &Url,
        resp: reqwest::Response,
        digest: &Digest,
    ) -> Result<()> {
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(registry_error("PUT", url, resp).await);
        }
        if let Some(d) = header_str(resp.headers(), "docker-content-digest")
            && let Ok(d) = Digest::parse(d)
            && d != *digest
        {
            return Err(Error::DigestMismatch {
                what: "pushed blob (Docker-Content-Digest)".into(),
                expected: digest.clone(),
                actual: d,
            });
        }
        Ok(())
    }

    /// Pushes a manifest under the image's reference (its digest if it has one, else its tag,
    /// else `latest`). Returns the digest and whether the registry processed a `subject`.
    pub async fn push_manifest(
        &self,
        image: &ImageRef,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<PushedManifest> {
        let algorithm = image
            .digest()
            .map(Digest::algorithm)
            .unwrap_or(Algorithm::Sha256);
        let digest = Digest::of(algorithm, &bytes);
        if let Some(want) = image.digest()
            && *want != digest
        {
            return Err(Error::DigestMismatch {
                what: format!("manifest to push to {image}"),
                expected: want.clone(),
                actual: digest,
            });
        }
        let url = self.url(image, &format!("manifests/{}", image.reference()))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            media_type.parse().map_err(|_| Error::InvalidReference {
                reference: image.to_string(),
                reason: format!("media type {media_type:?} is not a valid header value"),
            })?,
        );
        let resp = self
            .send_ok(
                image,
                Action::Push,
                Method::PUT,
                url,
                headers,
                Payload::Bytes(bytes),
            )
            .await?;
        if let Some(d) = header_str(resp.headers(), "docker-content-digest")
            && let Ok(d) = Digest::parse(d)
            && d.algorithm() == digest.algorithm()
            && d != digest
        {
            return Err(Error::DigestMismatch {
                what: format!("pushed manifest {image} (Docker-Content-Digest)"),
                expected: digest,
                actual: d,
            });
        }
        Ok(PushedManifest {
            digest,
            subject_processed: resp.headers().contains_key("oci-subject"),
        })
    }

    /// Every tag of the repository, following `Link` pagination.
    pub async fn list_tags(&self, image: &ImageRef) -> Result<Vec<String>> {
        self.list_tags_paged(image, None).await
    }

    /// [`Client::list_tags`] asking for pages of `page_size` tags (`?n=`).
    pub async fn list_tags_paged(
        &self,
        image: &ImageRef,
        page_size: Option<usize>,
    ) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut url = self.url(image, "tags/list")?;
        if let Some(n) = page_size {
            url.query_pairs_mut().append_pair("n", &n.to_string());
        }
        let mut tags = Vec::new();
        for _ in 0..10_000 {
            let resp = self
                .send_ok(
                    image,
                    Action::Pull,
                    Method::GET,
                    url.clone(),
                    HeaderMap::new(),
                    Payload::None,
                )
                .await?;
            let next = next_link(&url, resp.headers());
            let body = read_limited(resp, 64 << 20, "tag list").await?;
            let page: TagList =
                serde_json::from_slice(&body).map_err(|e| Error::InvalidResponse {
                    url: url.to_string(),
                    reason: format!("tag list is not JSON: {e}"),
                })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(n) => url = n,
                None => return Ok(tags),
            }
        }
        Err(Error::InvalidResponse {
            url: url.to_string(),
            reason: "more than 10000 pages of tags".into(),
        })
    }

    /// The referrers of `subject` in the image's repository (OCI 1.1 referrers API), optionally
    /// filtered by artifact type (on the server when it supports the filter, else here).
    /// `Ok(None)` when the registry does not support the API (404), so the caller can fall back
    /// to the referrers tag schema (`sha256-<hex>`).
    pub async fn referrers(
        &self,
        image: &ImageRef,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<Descriptor>>> {
        #[derive(serde::Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<Descriptor>,
        }
        let mut url = self.url(image, &format!("referrers/{subject}"))?;
        if let Some(t) = artifact_type {
            url.query_pairs_mut().append_pair("artifactType", t);
        }
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, oci::media_types::OCI_INDEX.parse().expect("static"));
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let resp = self
                .send(
                    image,
                    Action::Pull,
                    Method::GET,
                    url.clone(),
                    headers.clone(),
                    Payload::None,
                )
                .await?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !resp.status().is_success() {
                return Err(registry_error("GET", &url, resp).await);
            }
            let filtered = header_str(resp.headers(), "oci-filters-applied")
                .is_some_and(|f| f.split(',').any(|x| x.trim() == "artifactType"));
            let next = next_link(&url, resp.headers());
            let body = read_limited(resp, MAX_MANIFEST_BYTES, "referrers index").await?;
            let index: Index =
                serde_json::from_slice(&body).map_err(|e| Error::InvalidResponse {
                    url: url.to_string(),
                    reason: format!("referrers response is not an image index: {e}"),
                })?;
            out.extend(index.manifests.into_iter().filter(|d| {
                filtered || artifact_type.is_none() || d.artifact_type.as_deref() == artifact_type
            }));
            match next {
                Some(n) => url = n,
                None => return Ok(Some(out)),
            }
        }
        Err(Error::InvalidResponse {
            url: url.to_string(),
            reason: "more than 10000 pages of referrers".into(),
        })
    }

    /// Deletes the manifest the image's reference names (by digest; by tag where the registry
    /// allows deleting tags).
    pub async fn delete_manifest(&self, image: &ImageRef) -> Result<()> {
        let url = self.url(image, &format!("manifests/{}", image.reference()))?;
        self.send_ok(
            image,
            Action::Delete,
            Method::DELETE,
            url,
            HeaderMap::new(),
            Payload::None,
        )
        .await?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Transport and authentication
    // -----------------------------------------------------------------------------------------

    /// Like `send`, but any non-2xx status becomes an error.
    async fn send_ok(
        &self,
        image: &ImageRef,
        action: Action,
        method: Method,
        url: Url,
        headers: HeaderMap,
        payload: Payload,
    ) -> Result<reqwest::Response> {
        let m = method.to_string();
        let resp = self
            .send(image, action, method, url.clone(), headers, payload)
            .await?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(registry_error(&m, &url, resp).await)
        }
    }

    /// Where requests about `image` go.
    fn target(&self, image: &ImageRef) -> Target {
        Target {
            registry: image.registry().to_owned(),
            base: self.base_url(image),
            repository: image.repository().to_owned(),
        }
    }

    /// [`Client::send_to`] for the image's registry.
    async fn send(
        &self,
        image: &ImageRef,
        action: Action,
        method: Method,
        url: Url,
        headers: HeaderMap,
        payload: Payload,
    ) -> Result<reqwest::Response> {
        self.send_to(&self.target(image), action, method, url, headers, payload)
            .await
    }

    /// Sends `method` to `<base>/v2/<repository>/<path>` of a registry reached at an explicit
    /// URL (a pull-through cache's upstream, a mirror), authenticating as the registry asks, and
    /// returns the response as soon as its headers are in, whatever its status: the body is
    /// left to stream.
    ///
    /// Authentication is the client's own: a cached token for (endpoint, scope) or Basic
    /// credentials for a registry that asked for Basic are sent up front; a 401 is answered once
    /// (a fresh token from the challenge's realm, or Basic) and the request retried. Credentials
    /// are looked up by [`Endpoint::registry`]; tokens are only ever sent to the endpoint they
    /// were obtained for.
    pub async fn request(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        action: Action,
        method: Method,
        path: &str,
        headers: HeaderMap,
    ) -> Result<reqwest::Response> {
        let target = Target {
            registry: endpoint.registry.clone(),
            base: endpoint.base.clone(),
            repository: repository.to_owned(),
        };
        let s = format!("{}/v2/{repository}/{path}", endpoint.base);
        let url = Url::parse(&s).map_err(|e| Error::InvalidReference {
            reference: format!("{}/{repository}", endpoint.registry),
            reason: format!("cannot form URL {s}: {e}"),
        })?;
        self.send_to(&target, action, method, url, headers, Payload::None)
            .await
    }

    /// Sends a request with whatever authorization is cached; on 401 answers the challenge
    /// (Basic with stored credentials, or a Bearer token from the realm) and retries once.
    async fn send_to(
        &self,
        target: &Target,
        action: Action,
        method: Method,
        url: Url,
        headers: HeaderMap,
        payload: Payload,
    ) -> Result<reqwest::Response> {
        let auth = self.cached_auth(target, action);
        let resp = self
            .send_raw(
                method.clone(),
                url.clone(),
                &headers,
                &payload,
                auth.as_deref(),
            )
            .await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        let Some(auth) = self.answer(target, action, &challenges, &url).await? else {
            return Ok(resp);
        };
        self.send_raw(method, url, &headers, &payload, Some(&auth))
            .await
    }

    async fn send_raw(
        &self,
        method: Method,
        url: Url,
        headers: &HeaderMap,
        payload: &Payload,
        auth: Option<&str>,
    ) -> Result<reqwest::Response> {
        let m = method.to_string();
        let mut req = self
            .inner
            .http
            .request(method, url.clone())
            .headers(headers.clone());
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a);
        }
        req = match payload {
            Payload::None => req,
            Payload::Bytes(b) => req.header(CONTENT_LENGTH, b.len()).body(b.clone()),
        };
        self.timed(&m, &url, req.send()).await
    }

    /// Waits for a response's headers, no longer than [`ClientConfig::response_timeout`].
    async fn timed(
        &self,
        method: &str,
        url: &Url,
        send: impl Future<Output = reqwest::Result<reqwest::Response>>,
    ) -> Result<reqwest::Response> {
        let sent = match self.inner.response_timeout {
            Some(limit) => tokio::time::timeout(limit, send)
                .await
                .map_err(|_| Error::Timeout {
                    method: method.to_owned(),
                    url: url.to_string(),
                })?,
            None => send.await,
        };
        sent.map_err(|e| transport(method, url, e))
    }

    /// The `Authorization` value to send before any challenge: a cached, unexpired token for
    /// this endpoint and scope, or Basic credentials for an endpoint that asked for Basic before.
    fn cached_auth(&self, target: &Target, action: Action) -> Option<String> {
        let scope = action.scope(&target.repository);
        if let Some(token) = self.inner.tokens.get(&target.base, &scope) {
            return Some(format!("Bearer {token}"));
        }
        if self
            .inner
            .basic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&target.base)
        {
            return self.creds(&target.registry).map(|c| c.header_value());
        }
        None
    }

    fn creds(&self, registry: &str) -> Option<&BasicCredentials> {
        let c = self.inner.credentials.get(registry);
        if c.is_none()
            && let Some(helper) = self.inner.credentials.helper_for(registry)
            && self
                .inner
                .warned
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(registry.to_owned())
        {
            tracing::warn!(
                registry,
                helper,
                "credentials for this registry are kept by the docker credential helper \
                 `docker-credential-{helper}`, which Wharf does not run; continuing anonymously \
                 (put them in a config.json `auths` entry or in $REGISTRY_AUTH_FILE)"
            );
        }
        c
    }

    /// Answers a 401's challenges: the `Authorization` value to retry with, or None when there
    /// is nothing better to send (the 401 then goes back to the caller as an error).
    async fn answer(
        &self,
        target: &Target,
        action: Action,
        challenges: &[Challenge],
        url: &Url,
    ) -> Result<Option<String>> {
        let registry = target.registry.as_str();
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let realm = bearer.param("realm").ok_or_else(|| Error::Auth {
                registry: registry.to_owned(),
                status: None,
                reason: "Bearer challenge without a realm".into(),
            })?;
            let ours = action.scope(&target.repository);
            let mut scopes = vec![ours.clone()];
            if let Some(s) = bearer.param("scope")
                && !s.is_empty()
                && s != ours
            {
                scopes.push(s.to_owned());
            }
            let (token, ttl) = self
                .fetch_token(target, realm, bearer.param("service"), &scopes)
                .await?;
            self.inner
                .tokens
                .insert(&target.base, &ours, token.clone(), ttl);
            return Ok(Some(format!("Bearer {token}")));
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            let Some(creds) = self.creds(registry) else {
                return Ok(None);
            };
            let newly = self
                .inner
                .basic
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(target.base.clone());
            if !newly {
                // We already sent these credentials and they were refused.
                return Ok(None);
            }
            return Ok(Some(creds.header_value()));
        }
        tracing::debug!(%url, ?challenges, "401 without a usable challenge");
        Ok(None)
    }

    /// GETs a Bearer token from the realm, with Basic credentials when there are some and the
    /// realm may see them: over HTTPS, or over plain HTTP only when the registry itself is
    /// reached over plain HTTP (a loopback or configured-insecure registry, whose Basic
    /// credentials cross that network in the clear anyway). Otherwise the token is asked for
    /// anonymously. Returns the token and how long it may be used.
    async fn fetch_token(
        &self,
        target: &Target,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<(String, Duration)> {
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let registry = target.registry.as_str();
        let auth_err = |status: Option<u16>, reason: String| Error::Auth {
            registry: registry.to_owned(),
            status,
            reason,
        };
        let mut url =
            Url::parse(realm).map_err(|e| auth_err(None, format!("bad realm {realm:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(auth_err(
                None,
                format!("token realm {realm} is not HTTP(S)"),
            ));
        }
        let plain_realm = url.scheme() == "http" && !target.base.starts_with("http://");
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        let mut req = self.inner.http.get(url.clone());
        match self.creds(registry) {
            Some(_) if plain_realm => tracing::warn!(
                registry,
                realm,
                "the registry's token service is plain HTTP: asking for an anonymous token \
                 instead of sending credentials over it"
            ),
            Some(c) => req = req.header(AUTHORIZATION, c.header_value()),
            None => {}
        }
        let resp = self.timed("GET", &url, req.send()).await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let err = registry_error("GET", &url, resp).await;
            return Err(auth_err(
                Some(status.as_u16()),
                format!("token request answered {status}: {err}"),
            ));
        }
        let body = read_limited(resp, 1 << 20, "token response").await?;
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| auth_err(None, format!("token response is not JSON: {e}")))?;
        let token = t
            .token
            .filter(|t| !t.is_empty())
            .or(t.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| auth_err(None, "token response has no token".into()))?;
        Ok((token, token_lifetime(t.expires_in)))
    }
}

/// How long a token is used: its `expires_in` (60 seconds when absent, the spec's default;
/// at most a day), less a margin so that it is renewed before the registry refuses it.
fn token_lifetime(expires_in: Option<u64>) -> Duration {
    let secs = expires_in.unwrap_or(60).clamp(1, 24 * 3600);
    Duration::from_secs(if secs > 30 { secs - 10 } else { secs / 2 + 1 })
}

/// Where a request goes: the registry's name (credentials are found by it), the URL its API is
/// served at (tokens are kept for it), and the repository.
struct Target {
    registry: String,
    base: String,
    repository: String,
}

/// A registry reached at an explicit URL, for [`Client::request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    registry: String,
    base: String,
}

impl Endpoint {
    /// The registry `registry` (its name, by which credentials are looked up: `docker.io`,
    /// `ghcr.io`, `host:port`) served at `base_url` (`https://registry-1.docker.io`,
    /// `http://10.0.0.5:5000`; a path prefix is kept, a trailing `/` dropped).
    pub fn new(registry: &str, base_url: &str) -> Result<Self> {
        let base = base_url.trim_end_matches('/');
        let bad = |reason: String| Error::InvalidReference {
            reference: base_url.to_owned(),
            reason,
        };
        let url = Url::parse(base).map_err(|e| bad(format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad("the registry URL must be http(s)://host[:port]".into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("the registry URL must not have a query".into()));
        }
        Ok(Endpoint {
            registry: normalize_registry(registry),
            base: base.to_owned(),
        })
    }

    /// The registry's name, normalised (`docker.io` for any Docker Hub alias).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The URL its API is served at, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }
}

/// Tokens kept by one client; past it, expired ones are dropped, then the soonest to expire.
const MAX_TOKENS: usize = 1024;

/// Bearer tokens by (endpoint base URL, scope), each until its lifetime ends. Bounded by
/// [`MAX_TOKENS`].
#[derive(Default)]
struct TokenCache {
    tokens: Mutex<HashMap<(String, String), CachedToken>>,
}

impl TokenCache {
    /// The unexpired token for `scope` at `base`, if one is cached.
    fn get(&self, base: &str, scope: &str) -> Option<String> {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let key = (base.to_owned(), scope.to_owned());
        match tokens.get(&key) {
            Some(t) if t.expires > Instant::now() => Some(t.token.clone()),
            Some(_) => {
                tokens.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Keeps `token` for `scope` at `base` for `ttl`.
    fn insert(&self, base: &str, scope: &str, token: String, ttl: Duration) {
        let now = Instant::now();
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let key = (base.to_owned(), scope.to_owned());
        if tokens.len() >= MAX_TOKENS && !tokens.contains_key(&key) {
            tokens.retain(|_, t| t.expires > now);
            while tokens.len() >= MAX_TOKENS {
                let Some(soonest) = tokens
                    .iter()
                    .min_by_key(|(_, t)| t.expires)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                tokens.remove(&soonest);
            }
        }
        tokens.insert(
            key,
            CachedToken {
                token,
                expires: now + ttl,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn accept_manifests() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(ACCEPT, MANIFEST_ACCEPT.parse().expect("static"));
    h
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_owned()
}

fn body_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct M {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<M>(bytes).ok()?.media_type
}

fn transport(method: &str, url: &Url, e: reqwest::Error) -> Error {
    Error::Transport {
        method: method.to_owned(),
        url: url.to_string(),
        source: e,
    }
}

fn with_digest_query(mut url: Url, digest: &Digest) -> Url {
    url.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    url
}

/// The `rel="next"` target of a `Link` header, resolved against the request URL.
fn next_link(base: &Url, headers: &HeaderMap) -> Option<Url> {
    for v in headers
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for part in v.split(',') {
            let part = part.trim();
            let Some(end) = part.find('>') else { continue };
            let target = part.strip_prefix('<').map(|p| &p[..end - 1])?;
            let params = &part[end + 1..];
            if params.split(';').any(|p| {
                matches!(
                    p.trim().replace(' ', "").as_str(),
                    "rel=\"next\"" | "rel=next"
                )
            }) {
                return base.join(target).ok();
            }
        }
    }
    None
}

/// Reads a whole body, refusing more than `limit` bytes.
async fn read_limited(mut resp: reqwest::Response, limit: u64, what: &str) -> Result<Bytes> {
    let url = resp.url().clone();
    let too_large = || Error::TooLarge {
        what: what.to_owned(),
        limit,
    };
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buf = BytesMut::with_capacity(resp.content_length().unwrap_or(0).min(limit) as usize);
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport("GET", &url, e))? {
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Turns an error response into [`Error::Registry`] with the first code of its JSON body.
async fn registry_error(method: &str, url: &Url, resp: reqwest::Response) -> Error {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let status = resp.status().as_u16();
    let body = read_limited(resp, 64 << 10, "error body")
        .await
        .unwrap_or_default();
    let (code, message) = match serde_json::from_slice::<Body>(&body) {
        Ok(b) if !b.errors.is_empty() => {
            let e = &b.errors[0];
            (
                (!e.code.is_empty()).then(|| ErrorCode::parse(&e.code)),
                e.message.clone(),
            )
        }
        _ => {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_owned();
            let code = match status {
                401 => Some(ErrorCode::Unauthorized),
                403 => Some(ErrorCode::Denied),
                429 => Some(ErrorCode::TooManyRequests),
                _ => None,
            };
            (code, text)
        }
    };
    Error::Registry {
        method: method.to_owned(),
        url: url.to_string(),
        status,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        let base = Url::parse("http://h:5000/v2/a/tags/list?n=2").unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            r#"</v2/a/tags/list?n=2&last=b>; rel="next""#.parse().unwrap(),
        );
        assert_eq!(
            next_link(&base, &h).unwrap().as_str(),
            "http://h:5000/v2/a/tags/list?n=2&last=b"
        );
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            r#"<https://other/v2/a/tags/list?last=b>; rel=next"#
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&base, &h).unwrap().as_str(),
            "https://other/v2/a/tags/list?last=b"
        );
        let mut h = HeaderMap::new();
        h.insert("link", r#"</x>; rel="prev""#.parse().unwrap());
        assert!(next_link(&base, &h).is_none());
    }

    #[test]
    fn token_cache_expires_and_stays_bounded() {
        let c = TokenCache::default();
        let base = "https://r.example";
        c.insert(
            base,
            "repository:a:pull",
            "t1".into(),
            Duration::from_secs(60),
        );
        assert_eq!(c.get(base, "repository:a:pull").as_deref(), Some("t1"));
        assert_eq!(c.get(base, "repository:a:pull,push"), None, "per scope");
        assert_eq!(
            c.get("https://other.example", "repository:a:pull"),
            None,
            "per endpoint"
        );
        c.insert(base, "repository:b:pull", "t2".into(), Duration::ZERO);
        assert_eq!(c.get(base, "repository:b:pull"), None, "expired");
        assert_eq!(c.len(), 1, "an expired token is dropped when looked up");
        for i in 0..MAX_TOKENS + 10 {
            let ttl = Duration::from_secs(100 + i as u64);
            c.insert(base, &format!("repository:r{i}:pull"), format!("x{i}"), ttl);
        }
        assert_eq!(c.len(), MAX_TOKENS);
        assert_eq!(
            c.get(base, "repository:a:pull"),
            None,
            "soonest to expire went first"
        );
        let last = format!("repository:r{}:pull", MAX_TOKENS + 9);
        assert!(c.get(base, &last).is_some());
    }

    #[test]
    fn token_lifetimes() {
        assert_eq!(token_lifetime(None), Duration::from_secs(50));
        assert_eq!(token_lifetime(Some(300)), Duration::from_secs(290));
        assert_eq!(token_lifetime(Some(2)), Duration::from_secs(2));
        assert_eq!(token_lifetime(Some(0)), Duration::from_secs(1));
        assert_eq!(
            token_lifetime(Some(u64::MAX)),
            Duration::from_secs(24 * 3600 - 10)
        );
    }

    #[test]
    fn endpoints() {
        let e = Endpoint::new("index.docker.io", "https://registry-1.docker.io/").unwrap();
        assert_eq!(e.registry(), "docker.io");
        assert_eq!(e.base_url(), "https://registry-1.docker.io");
        assert!(Endpoint::new("x", "ftp://x").is_err());
        assert!(Endpoint::new("x", "not a url").is_err());
        assert!(Endpoint::new("x", "http://x/?q=1").is_err());
    }

    #[test]
    fn scheme_choice() {
        let c =
            Client::new(ClientConfig::default().insecure_registry("reg.internal:5000")).unwrap();
        assert_eq!(c.scheme("localhost:5000"), "http");
        assert_eq!(c.scheme("127.0.0.1:1234"), "http");
        assert_eq!(c.scheme("[::1]:5000"), "http");
        assert_eq!(c.scheme("reg.internal:5000"), "http");
        assert_eq!(c.scheme("reg.internal:6000"), "https");
        assert_eq!(c.scheme("ghcr.io"), "https");
        let hub = ImageRef::parse("busybox").unwrap();
        assert_eq!(c.base_url(&hub), "https://registry-1.docker.io");
    }
}
