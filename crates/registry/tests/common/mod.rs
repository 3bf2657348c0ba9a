//! Shared harness for the in-process conformance tests: a registry over real stores in a temporary
//! directory, driven through `tower::ServiceExt::oneshot`, plus builders for blobs and manifests.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use oci::{Algorithm, Digest};
use registry::{Limits, Registry};
use serde_json::{Value, json};
use store::{FsBlobStore, RedbMetaStore};
use tempfile::TempDir;
use tower::ServiceExt;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCTET: &str = "application/octet-stream";

/// The only error codes the spec allows in a JSON error body ("The `code` field MUST be one of
/// the following", spec.md, Error Codes).
pub const SPEC_CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

/// A registry over real stores in a temporary directory.
pub struct Env {
    dir: TempDir,
    pub reg: Registry,
    router: Router,
}

fn open(dir: &Path, limits: Limits) -> Result<Registry, String> {
    let blobs = FsBlobStore::open(dir).map_err(|e| format!("blob store: {e}"))?;
    let meta = RedbMetaStore::open(&dir.join("meta.redb")).map_err(|e| format!("meta: {e}"))?;
    let svc = service::Service::builder(Arc::new(blobs), Arc::new(meta))
        .limits(limits)
        .build()
        .map_err(|e| format!("service: {e}"))?;
    Ok(Registry::new(Arc::new(svc)))
}

impl Env {
    /// A fresh registry in a new temporary directory.
    pub fn start() -> Self {
        Self::start_with(Limits::default())
    }

    /// A fresh registry with the given limits.
    pub fn start_with(limits: Limits) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let reg = open(dir.path(), limits).expect("open stores");
        let router = reg.router();
        Env { dir, reg, router }
    }

    /// A fresh registry built by `build` from the service (decorators, capabilities).
    pub fn start_built(
        build: impl FnOnce(Arc<service::Service>) -> registry::RegistryBuilder,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = FsBlobStore::open(dir.path()).expect("blob store");
        let meta = RedbMetaStore::open(&dir.path().join("meta.redb")).expect("meta store");
        let svc = service::Service::builder(Arc::new(blobs), Arc::new(meta))
            .build()
            .expect("service");
        let reg = build(Arc::new(svc)).build();
        let router = reg.router();
        Env { dir, reg, router }
    }

    /// Drops the registry and both stores, then reopens them on the same directory, as a process
    /// restart would. Returns the new environment and how many opens the metadata store took (the
    /// old store's writer thread lets go of the database file asynchronously).
    pub fn restart(self) -> (Self, u32) {
        let Env { dir, reg, router } = self;
        drop(router);
        drop(reg);
        let mut attempts = 0;
        loop {
            attempts += 1;
            match open(dir.path(), Limits::default()) {
                Ok(reg) => {
                    let router = reg.router();
                    return (Env { dir, reg, router }, attempts);
                }
                // Today the first attempt fails with "Database already open": the old store's
                // writer thread still holds the redb file for a few milliseconds after the drop.
                Err(_) if attempts < 250 => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("stores did not reopen after {attempts} attempts: {e}"),
            }
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn req(&self, method: Method, uri: impl Into<String>) -> Req<'_> {
        Req {
            env: self,
            method,
            uri: uri.into(),
            headers: Vec::new(),
            body: Body::empty(),
        }
    }

    pub async fn get(&self, uri: impl Into<String>) -> Resp {
        self.req(Method::GET, uri).send().await
    }

    pub async fn head(&self, uri: impl Into<String>) -> Resp {
        self.req(Method::HEAD, uri).send().await
    }

    pub async fn delete(&self, uri: impl Into<String>) -> Resp {
        self.req(Method::DELETE, uri).send().await
    }

    pub async fn post(&self, uri: impl Into<String>) -> Resp {
        self.req(Method::POST, uri).send().await
    }

    /// Starts an upload session and returns its Location.
    pub async fn start_upload(&self, repo: &str) -> String {
        let r = self
            .req(Method::POST, format!("/v2/{repo}/blobs/uploads/"))
            .header("Content-Length", "0")
            .send()
            .await;
        r.expect(StatusCode::ACCEPTED);
        r.location()
    }

    /// Pushes a blob with POST then PUT (the flow every registry must support).
    pub async fn push_blob(&self, repo: &str, b: &Blob) {
        let loc = self.start_upload(repo).await;
        let r = self
            .req(
                Method::PUT,
                with_query(&loc, &format!("digest={}", b.digest)),
            )
            .header("Content-Type", OCTET)
            .body(b.data.clone())
            .send()
            .await;
        r.expect(StatusCode::CREATED);
    }

    /// PUTs a manifest without checking the answer.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Resp {
        self.req(Method::PUT, format!("/v2/{repo}/manifests/{reference}"))
            .header("Content-Type", media_type)
            .body(body.to_vec())
            .send()
            .await
    }

    /// PUTs a manifest and requires 201.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Resp {
        let r = self.put_manifest(repo, reference, media_type, body).await;
        r.expect(StatusCode::CREATED);
        r
    }

    /// Pushes a small OCI image (config + one layer) and its manifest under `reference`.
    pub async fn push_image(&self, repo: &str, reference: &str, seed: u64) -> Image {
        let img = Image::new(seed);
        self.push_blob(repo, &img.config).await;
        self.push_blob(repo, &img.layer).await;
        let reference = if reference.is_empty() {
            img.digest.to_string()
        } else {
            reference.to_owned()
        };
        self.push_manifest(repo, &reference, OCI_MANIFEST, &img.body)
            .await;
        img
    }
}

/// Appends a query parameter to a URL that may already carry one.
pub fn with_query(url: &str, param: &str) -> String {
    if url.contains('?') {
        format!("{url}&{param}")
    } else {
        format!("{url}?{param}")
    }
}

/// A request under construction.
pub struct Req<'a> {
    env: &'a Env,
    method: Method,
    uri: String,
    headers: Vec<(String, String)>,
    body: Body,
}

impl Req<'_> {
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }

    /// A body with a matching `Content-Length`, as an HTTP/1.1 client sends it.
    pub fn body(self, b: impl Into<Vec<u8>>) -> Self {
        let b = b.into();
        let len = b.len().to_string();
        let mut r = self.header("Content-Length", &len);
        r.body = Body::from(b);
        r
    }

    /// A body with no `Content-Length` header (HTTP/2 or chunked framing, or a test that sets
    /// the header itself).
    pub fn raw_body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    pub async fn send(self) -> Resp {
        let mut b = Request::builder()
            .method(self.method.clone())
            .uri(&self.uri);
        for (k, v) in &self.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let req = b.body(self.body).expect("request builds");
        let resp = self
            .env
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("router is infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("response body")
            .to_bytes();
        Resp {
            what: format!("{} {}", self.method, self.uri),
            status,
            headers,
            body,
        }
    }
}

/// A collected response.
pub struct Resp {
    pub what: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of a header, comma-separated lists split (RFC 9110 field semantics).
    pub fn header_list(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    }

    #[track_caller]
    pub fn must_header(&self, name: &str) -> &str {
        match self.header(name) {
            Some(v) => v,
            None => panic!("missing header {name}\n{}", self.dump()),
        }
    }

    /// The Location header as a path (absolute URLs are reduced to their path and query).
    #[track_caller]
    pub fn location(&self) -> String {
        let loc = self.must_header("Location");
        match loc.split_once("://") {
            Some((_, rest)) => rest
                .find('/')
                .map_or("/".to_owned(), |i| rest[i..].to_owned()),
            None => loc.to_owned(),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        match serde_json::from_slice(&self.body) {
            Ok(v) => v,
            Err(e) => panic!("body is not JSON ({e})\n{}", self.dump()),
        }
    }

    pub fn dump(&self) -> String {
        let mut s = format!("--- {} -> {}\n", self.what, self.status);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("<binary>")));
        }
        match std::str::from_utf8(&self.body) {
            Ok(text) => {
                let cut: String = text.chars().take(1500).collect();
                s.push_str(&cut);
                if text.len() > cut.len() {
                    s.push_str(&format!("... ({} bytes)", self.body.len()));
                }
            }
            Err(_) => s.push_str(&format!("<{} bytes of binary body>", self.body.len())),
        }
        s
    }

    #[track_caller]
    pub fn expect(&self, status: StatusCode) -> &Self {
        assert_eq!(self.status, status, "unexpected status\n{}", self.dump());
        self
    }

    #[track_caller]
    pub fn expect_header(&self, name: &str, value: &str) -> &Self {
        assert_eq!(
            self.header(name),
            Some(value),
            "header {name}\n{}",
            self.dump()
        );
        self
    }

    /// The codes of a JSON error body, checked against the spec's shape: an `errors` array of
    /// objects whose `code` is one of the spec's codes and whose `message`, if present, is a
    /// string.
    #[track_caller]
    pub fn error_codes(&self) -> Vec<String> {
        let v = self.json();
        let Some(errors) = v.get("errors").and_then(Value::as_array) else {
            panic!("error body has no `errors` array\n{}", self.dump());
        };
        assert!(!errors.is_empty(), "empty `errors` array\n{}", self.dump());
        let mut codes = Vec::new();
        for e in errors {
            let Some(code) = e.get("code").and_then(Value::as_str) else {
                panic!("error without a string code\n{}", self.dump());
            };
            assert!(
                SPEC_CODES.contains(&code),
                "error code {code:?} is not one of the spec's codes {SPEC_CODES:?}\n{}",
                self.dump()
            );
            if let Some(m) = e.get("message") {
                assert!(m.is_string(), "message must be a string\n{}", self.dump());
            }
            codes.push(code.to_owned());
        }
        codes
    }

    /// Requires `status` and a spec-shaped JSON error body whose first code is `code`.
    #[track_caller]
    pub fn expect_error(&self, status: StatusCode, code: &str) -> &Self {
        self.expect(status);
        let codes = self.error_codes();
        assert_eq!(codes[0], code, "error code\n{}", self.dump());
        self
    }

    /// Requires `status` and a spec-shaped JSON error body whose first code is one of `codes`.
    #[track_caller]
    pub fn expect_error_any(&self, status: StatusCode, codes: &[&str]) -> &Self {
        self.expect(status);
        let got = self.error_codes();
        assert!(
            codes.contains(&got[0].as_str()),
            "error code {} is not one of {codes:?}\n{}",
            got[0],
            self.dump()
        );
        self
    }

    /// Requires `status`; a body, if it is JSON, must be a spec-shaped error body.
    #[track_caller]
    pub fn expect_status_spec_body(&self, status: StatusCode) -> &Self {
        self.expect(status);
        self.check_spec_body();
        self
    }

    /// A JSON body on a 4xx must use the spec's error format and codes.
    #[track_caller]
    pub fn check_spec_body(&self) {
        let is_json = self
            .header("Content-Type")
            .is_some_and(|c| c.contains("json"))
            || serde_json::from_slice::<Value>(&self.body).is_ok();
        if self.status.is_client_error() && is_json && !self.body.is_empty() {
            self.error_codes();
        }
    }
}

/// Deterministic pseudo-random bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Blob content with its digest.
#[derive(Clone, Debug)]
pub struct Blob {
    pub data: Vec<u8>,
    pub digest: Digest,
}

impl Blob {
    pub fn new(data: impl Into<Vec<u8>>) -> Self {
        let data = data.into();
        Blob {
            digest: Digest::of(Algorithm::Sha256, &data),
            data,
        }
    }

    pub fn sha512(data: impl Into<Vec<u8>>) -> Self {
        let data = data.into();
        Blob {
            digest: Digest::of(Algorithm::Sha512, &data),
            data,
        }
    }

    pub fn random(seed: u64, len: usize) -> Self {
        Blob::new(pattern(seed, len))
    }

    pub fn d(&self) -> String {
        self.digest.to_string()
    }

    pub fn desc(&self, media_type: &str) -> Value {
        json!({"mediaType": media_type, "digest": self.d(), "size": self.data.len()})
    }
}

pub fn sha256(b: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, b)
}

pub fn sha512(b: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha512, b)
}

pub fn to_vec(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json serializes")
}

/// A descriptor for a manifest body.
pub fn manifest_desc(body: &[u8], media_type: &str) -> Value {
    json!({"mediaType": media_type, "digest": sha256(body).to_string(), "size": body.len()})
}

/// An OCI image manifest over `config` and `layers`.
pub fn oci_image(config: &Blob, layers: &[&Blob]) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.desc(OCI_CONFIG),
        "layers": layers.iter().map(|l| l.desc(OCI_LAYER)).collect::<Vec<_>>(),
    })
}

/// An OCI index over manifest descriptors.
pub fn oci_index(children: Vec<Value>) -> Value {
    json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})
}

/// A small image: config, one layer, and its manifest.
pub struct Image {
    pub config: Blob,
    pub layer: Blob,
    pub body: Vec<u8>,
    pub digest: Digest,
}

impl Image {
    pub fn new(seed: u64) -> Self {
        let config = Blob::new(format!(
            r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#
        ));
        let layer = Blob::random(seed ^ 0xABCD, 300 + (seed as usize % 50));
        let body = to_vec(&oci_image(&config, &[&layer]));
        Image {
            digest: sha256(&body),
            config,
            layer,
            body,
        }
    }

    pub fn desc(&self) -> Value {
        manifest_desc(&self.body, OCI_MANIFEST)
    }
}
