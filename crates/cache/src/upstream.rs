//! Requests to one upstream registry, through the registry client (`client`), whose
//! authentication this reuses: anonymous, Basic, or Bearer tokens from the registry's challenge,
//! cached per scope until they expire. What is the cache's own stays here: the upstream's
//! endpoint and credentials from the configuration, the response timeout, health tracking and
//! statuses turned into [`UpstreamError`]s.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use client::{Action, BasicCredentials, Client, ClientConfig, CredentialStore, Endpoint};
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};

use crate::config::UpstreamConfig;
use crate::error::UpstreamError;

/// How long an upstream that failed is left alone (when it did not say, for a 429).
const DOWN_PAUSE: Duration = Duration::from_secs(30);

/// One configured upstream registry and its client.
pub(crate) struct Upstream {
    /// Its configuration.
    pub cfg: UpstreamConfig,
    /// Local repository prefix (see [`UpstreamConfig::prefix`]).
    pub prefix: String,
    endpoint: Endpoint,
    client: Client,
    /// After a failure, cached copies are served without asking until then.
    down_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials or tokens.
        f.debug_struct("Upstream")
            .field("host", &self.cfg.host)
            .field("base", &self.endpoint.base_url())
            .finish()
    }
}

impl Upstream {
    pub(crate) fn new(cfg: UpstreamConfig) -> Result<Self, String> {
        let endpoint = Endpoint::new(&cfg.host, &cfg.endpoint())
            .map_err(|e| format!("cache upstream {}: {e}", cfg.host))?;
        let mut credentials = CredentialStore::new();
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            credentials.insert(endpoint.registry(), BasicCredentials::new(u, p));
        }
        let client = Client::new(ClientConfig {
            credentials,
            user_agent: concat!("wharf-cache/", env!("CARGO_PKG_VERSION")).to_owned(),
            connect_timeout: Duration::from_secs(cfg.connect_timeout_seconds),
            read_timeout: Duration::from_secs(cfg.read_timeout_seconds),
            response_timeout: Some(Duration::from_secs(cfg.response_timeout_seconds)),
            ..ClientConfig::default()
        })
        .map_err(|e| format!("building the HTTP client for {}: {e}", cfg.host))?;
        Ok(Upstream {
            prefix: cfg.prefix(),
            endpoint,
            client,
            down_until: Mutex::new(None),
            cfg,
        })
    }

    /// The upstream's name for a repository given in the client's form: Docker Hub's official
    /// images live under `library/`.
    pub(crate) fn normalize(&self, repo: &str) -> String {
        oci::image_ref::normalize_repository(&self.cfg.host, repo)
    }

    /// Whether the upstream failed recently: cached copies are then served without asking, so
    /// an outage or a stall costs one slow request, not one per pull.
    pub(crate) fn is_down(&self) -> bool {
        let d = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        d.is_some_and(|t| Instant::now() < t)
    }

    /// Records the outcome of an exchange for [`Upstream::is_down`].
    pub(crate) fn note(&self, e: Option<&UpstreamError>) {
        let pause = match e {
            None => None,
            Some(UpstreamError::RateLimited { retry_after }) => Some(Duration::from_secs(
                retry_after.unwrap_or(DOWN_PAUSE.as_secs()).clamp(1, 3600),
            )),
            Some(
                UpstreamError::Unreachable(_)
                | UpstreamError::Timeout
                | UpstreamError::Status { .. }
                | UpstreamError::Broken(_),
            ) => Some(DOWN_PAUSE),
            Some(_) => return,
        };
        *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) =
            pause.map(|p| Instant::now() + p);
    }

    /// How long a cached tag is served before it is checked again.
    pub(crate) fn tag_ttl(&self) -> Duration {
        Duration::from_secs(self.cfg.tag_ttl_seconds)
    }

    /// Sends `method` to `/v2/<repo>/<suffix>`, authenticating as the upstream asks (see
    /// [`Client::request`]), and returns the response once its headers are in. Statuses other
    /// than 2xx become errors.
    pub(crate) async fn request(
        &self,
        method: Method,
        repo: &str,
        suffix: &str,
        accept: Option<&'static str>,
    ) -> Result<Response, UpstreamError> {
        let mut headers = HeaderMap::new();
        if let Some(a) = accept {
            headers.insert(ACCEPT, HeaderValue::from_static(a));
        }
        let resp = self
            .client
            .request(&self.endpoint, repo, Action::Pull, method, suffix, headers)
            .await
            .map_err(UpstreamError::from_client)?;
        self.check(resp).await
    }

    /// Turns error statuses into errors.
    async fn check(&self, resp: Response) -> Result<Response, UpstreamError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        Err(match status {
            StatusCode::NOT_FOUND => UpstreamError::NotFound,
            StatusCode::TOO_MANY_REQUESTS => UpstreamError::RateLimited {
                retry_after: resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok()),
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => UpstreamError::Denied {
                status: status.as_u16(),
            },
            s => UpstreamError::Status { status: s.as_u16() },
        })
    }
}

/// Reads a response body, refusing more than `max` bytes.
pub(crate) async fn read_limited(resp: Response, max: usize) -> Result<Vec<u8>, UpstreamError> {
    use futures_util::StreamExt;
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(UpstreamError::Invalid(format!(
            "response larger than {max} bytes"
        )));
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| UpstreamError::from_reqwest(&e))?;
        if body.len() + chunk.len() > max {
            return Err(UpstreamError::Invalid(format!(
                "response larger than {max} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
