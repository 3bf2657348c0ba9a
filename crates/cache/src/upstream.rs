//! Requests to one upstream registry: anonymous, Basic, or Bearer tokens from the registry's
//! challenge, cached per scope until they expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use client::{BasicCredentials, parse_challenges};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};

use crate::config::UpstreamConfig;
use crate::error::UpstreamError;

/// Media types asked for when fetching manifests: every image and index format.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Tokens kept per upstream; beyond it expired ones are dropped, then all.
const MAX_TOKENS: usize = 1024;
/// Tokens are renewed this long before they expire.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);
/// How long an upstream that failed is left alone (when it did not say, for a 429).
const DOWN_PAUSE: Duration = Duration::from_secs(30);
/// Largest token response read.
const MAX_TOKEN_BODY: usize = 64 * 1024;

/// How to authenticate to an upstream, learned from its first challenge.
#[derive(Clone, Debug)]
enum Scheme {
    Bearer {
        realm: String,
        service: Option<String>,
    },
    Basic,
}

/// One configured upstream registry and its HTTP client.
pub(crate) struct Upstream {
    /// Its configuration.
    pub cfg: UpstreamConfig,
    /// Local repository prefix (see [`UpstreamConfig::prefix`]).
    pub prefix: String,
    base: String,
    http: reqwest::Client,
    creds: Option<BasicCredentials>,
    scheme: Mutex<Option<Scheme>>,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// After a failure, cached copies are served without asking until then.
    down_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials or tokens.
        f.debug_struct("Upstream")
            .field("host", &self.cfg.host)
            .field("base", &self.base)
            .finish()
    }
}

impl Upstream {
    pub(crate) fn new(cfg: UpstreamConfig) -> Result<Self, String> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Err means another thread installed one first: fine either way.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("wharf-cache/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(cfg.connect_timeout_seconds))
            .read_timeout(Duration::from_secs(cfg.read_timeout_seconds))
            .redirect(reqwest::redirect::Policy::limited(10))
            .no_proxy()
            .build()
            .map_err(|e| format!("building the HTTP client for {}: {e}", cfg.host))?;
        let creds = match (&cfg.username, &cfg.password) {
            (Some(u), Some(p)) => Some(BasicCredentials::new(u.clone(), p.clone())),
            _ => None,
        };
        Ok(Upstream {
            prefix: cfg.prefix(),
            base: cfg.endpoint(),
            http,
            creds,
            scheme: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
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

    /// Sends `method` to `/v2/<repo>/<suffix>`, authenticating as the upstream asks, and returns
    /// the response once its headers are in. Statuses other than 2xx become errors.
    pub(crate) async fn request(
        &self,
        method: Method,
        repo: &str,
        suffix: &str,
        accept: Option<&str>,
    ) -> Result<Response, UpstreamError> {
        let url = format!("{}/v2/{repo}/{suffix}", self.base);
        let scope = format!("repository:{repo}:pull");
        let mut retried = false;
        loop {
            let mut req = self.http.request(method.clone(), &url);
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            if let Some(auth) = self.authorization(&scope) {
                req = req.header(AUTHORIZATION, auth);
            }
            let resp = self.timed(req.send()).await?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !retried {
                retried = true;
                if self.learn_challenge(resp.headers(), &scope).await? {
                    continue;
                }
            }
            return self.check(resp).await;
        }
    }

    /// Waits for response headers no longer than the configured response timeout.
    async fn timed(
        &self,
        send: impl Future<Output = reqwest::Result<Response>>,
    ) -> Result<Response, UpstreamError> {
        let limit = Duration::from_secs(self.cfg.response_timeout_seconds);
        match tokio::time::timeout(limit, send).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Err(e)) => Err(UpstreamError::from_reqwest(&e)),
            Ok(Ok(r)) => Ok(r),
        }
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

    /// The Authorization header for a request in `scope`, if one is known.
    fn authorization(&self, scope: &str) -> Option<String> {
        let scheme = self
            .scheme
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match scheme? {
            Scheme::Basic => self.creds.as_ref().map(BasicCredentials::header_value),
            Scheme::Bearer { .. } => {
                let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
                let (token, expires) = tokens.get(scope)?;
                (Instant::now() + TOKEN_MARGIN < *expires).then(|| format!("Bearer {token}"))
            }
        }
    }

    /// Reads a 401's challenge; fetches a token for Bearer. Returns whether a retry can succeed.
    async fn learn_challenge(
        &self,
        headers: &HeaderMap,
        scope: &str,
    ) -> Result<bool, UpstreamError> {
        let challenges: Vec<_> = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        let bearer = challenges.iter().find(|c| c.scheme == "bearer");
        let scheme = match bearer.and_then(|c| c.param("realm")) {
            Some(realm) => Scheme::Bearer {
                realm: realm.to_owned(),
                service: bearer.and_then(|c| c.param("service")).map(str::to_owned),
            },
            None if challenges.iter().any(|c| c.scheme == "basic") && self.creds.is_some() => {
                Scheme::Basic
            }
            None => return Ok(false),
        };
        *self.scheme.lock().unwrap_or_else(|e| e.into_inner()) = Some(scheme.clone());
        if let Scheme::Bearer { realm, service } = scheme {
            self.fetch_token(&realm, service.as_deref(), scope).await?;
        }
        Ok(true)
    }

    /// Gets a token from the upstream's token service (with the credentials, if any) and keeps it.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<(), UpstreamError> {
        let mut query = vec![("scope", scope)];
        if let Some(s) = service {
            query.push(("service", s));
        }
        let url = reqwest::Url::parse_with_params(realm, &query)
            .map_err(|e| UpstreamError::Invalid(format!("token realm {realm:?}: {e}")))?;
        let mut req = self.http.get(url);
        // Credentials go to the token service only over https, unless the registry itself is
        // configured over plain http (a test or in-cluster upstream).
        let plain = realm.starts_with("http://") && !self.base.starts_with("http://");
        if let Some(c) = self.creds.as_ref().filter(|_| !plain) {
            req = req.header(AUTHORIZATION, c.header_value());
        }
        if plain && self.creds.is_some() {
            tracing::warn!(
                upstream = %self.cfg.host, realm,
                "upstream token service is plain http: asking for an anonymous token instead"
            );
        }
        let resp = self.timed(req.send()).await?;
        if !resp.status().is_success() {
            return Err(UpstreamError::Denied {
                status: resp.status().as_u16(),
            });
        }
        let body = read_limited(resp, MAX_TOKEN_BODY).await?;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::Invalid(format!("token response: {e}")))?;
        let token = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| UpstreamError::Invalid("token response without a token".into()))?;
        // The distribution token spec's default lifetime is 60 seconds.
        let ttl = Duration::from_secs(t.expires_in.unwrap_or(60).clamp(1, 24 * 3600));
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if tokens.len() >= MAX_TOKENS {
            let now = Instant::now();
            tokens.retain(|_, (_, exp)| *exp > now);
            if tokens.len() >= MAX_TOKENS {
                tokens.clear();
            }
        }
        tokens.insert(scope.to_owned(), (token, Instant::now() + ttl));
        Ok(())
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
