//! What can go wrong between Wharf and an upstream, by kind (the kinds label the metrics).

/// A failed upstream exchange. Cloneable: one failure is handed to every client that waited
/// for the same shared fetch.
#[derive(Clone, Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection (refused, DNS, TLS).
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    /// No answer within the response timeout, or a transfer stalled.
    #[error("upstream timed out")]
    Timeout,
    /// The upstream is rate limiting (429).
    #[error("upstream is rate limiting requests (429)")]
    RateLimited {
        /// Seconds it asked us to wait, if it said.
        retry_after: Option<u64>,
    },
    /// Any other error status (5xx mostly).
    #[error("upstream answered {status}")]
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// The upstream does not have it.
    #[error("not found upstream")]
    NotFound,
    /// The upstream refused our credentials (or wants some).
    #[error("upstream refused access ({status}); check the cache's upstream credentials")]
    Denied {
        /// The HTTP status.
        status: u16,
    },
    /// The upstream sent bytes that do not hash to the digest asked for.
    #[error("upstream sent content that does not match its digest")]
    DigestMismatch,
    /// The upstream sent something unusable (a malformed manifest, a missing header).
    #[error("upstream sent an invalid response: {0}")]
    Invalid(String),
    /// A transfer broke off midway.
    #[error("upstream transfer broke off: {0}")]
    Broken(String),
    /// The upstream is disabled in the configuration.
    #[error("upstream is disabled in the configuration")]
    Disabled,
    /// Too many blob transfers are running already.
    #[error("too many blobs are being fetched from upstreams; retry shortly")]
    Busy,
    /// Local storage failed while caching.
    #[error("cache storage failed: {0}")]
    Storage(String),
}

impl UpstreamError {
    /// Classifies a reqwest error.
    pub(crate) fn from_reqwest(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            UpstreamError::Timeout
        } else if e.is_connect() {
            UpstreamError::Unreachable(root_cause(e))
        } else if e.is_body() || e.is_decode() {
            UpstreamError::Broken(root_cause(e))
        } else {
            UpstreamError::Unreachable(root_cause(e))
        }
    }

    /// Classifies a failure of the registry client before a response arrived: transport
    /// errors as [`UpstreamError::from_reqwest`] does, a refused token as [`UpstreamError::Denied`],
    /// a malformed challenge or token answer as [`UpstreamError::Invalid`].
    pub(crate) fn from_client(e: client::Error) -> Self {
        match e {
            client::Error::Transport { source, .. } => UpstreamError::from_reqwest(&source),
            client::Error::Timeout { .. } => UpstreamError::Timeout,
            client::Error::Auth {
                status: Some(status),
                ..
            } => UpstreamError::Denied { status },
            e => UpstreamError::Invalid(e.to_string()),
        }
    }

    /// The metrics label of this kind of failure.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Unreachable(_) => "unreachable",
            UpstreamError::Timeout => "timeout",
            UpstreamError::RateLimited { .. } => "rate_limited",
            UpstreamError::Status { .. } => "status",
            UpstreamError::NotFound => "not_found",
            UpstreamError::Denied { .. } => "denied",
            UpstreamError::DigestMismatch => "digest_mismatch",
            UpstreamError::Invalid(_) => "invalid",
            UpstreamError::Broken(_) => "broken",
            UpstreamError::Disabled => "disabled",
            UpstreamError::Busy => "busy",
            UpstreamError::Storage(_) => "storage",
        }
    }

    /// Whether a cached copy should be served instead: the upstream is unavailable, not saying
    /// the content is gone.
    pub fn serve_stale(&self) -> bool {
        !matches!(self, UpstreamError::NotFound)
    }
}

impl From<store::StoreError> for UpstreamError {
    fn from(e: store::StoreError) -> Self {
        UpstreamError::Storage(e.to_string())
    }
}

/// The innermost message of an error chain (reqwest's own message is generic).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
