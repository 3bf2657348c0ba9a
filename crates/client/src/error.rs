//! Typed errors, including the registry's own JSON error codes.

use oci::Digest;

/// The error codes of the OCI Distribution spec, defined once in `oci` (the registry answers
/// with the same enum); codes a registry sends that it does not know are kept as `Other`.
pub use oci::ErrorCode;

/// Everything that can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The image reference does not parse.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// Why it was refused.
        reason: String,
    },
    /// An image reference given as text does not parse (see [`oci::ImageRef::parse`]).
    #[error("invalid image reference: {0}")]
    ImageRef(#[from] oci::ImageRefError),
    /// The HTTP client could not be built (TLS setup, bad CA certificate).
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
    /// Connection, TLS or protocol failure before a response arrived (or while reading one).
    #[error("{method} {url}: {source}")]
    Transport {
        /// HTTP method.
        method: String,
        /// Request URL.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// No response headers within [`crate::ClientConfig::response_timeout`].
    #[error("{method} {url}: no response in time")]
    Timeout {
        /// HTTP method.
        method: String,
        /// Request URL.
        url: String,
    },
    /// The registry answered with an error status.
    #[error("{method} {url}: HTTP {status}{}", fmt_code(code.as_ref(), message))]
    Registry {
        /// HTTP method.
        method: String,
        /// Request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The first error code of the body, when the body had one.
        code: Option<ErrorCode>,
        /// Its message (or the start of a non-JSON body).
        message: String,
    },
    /// Authentication failed or was refused.
    #[error("authentication to {registry} failed: {reason}")]
    Auth {
        /// The registry host.
        registry: String,
        /// The token service's HTTP status, when it answered with an error.
        status: Option<u16>,
        /// What went wrong.
        reason: String,
    },
    /// Content did not hash to the digest it was fetched or pushed by.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was being checked.
        what: String,
        /// The digest asked for or announced.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// A body exceeded the limit the caller set.
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// What was being read.
        what: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A response was well formed HTTP but not what the protocol says.
    #[error("unexpected response from {url}: {reason}")]
    InvalidResponse {
        /// Request URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// A credentials file (docker `config.json`, containers `auth.json`) is unreadable or invalid.
    #[error("credentials file {path}: {reason}")]
    Credentials {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// Local I/O (reading a file to push, writing a blob being pulled).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn fmt_code(code: Option<&ErrorCode>, message: &str) -> String {
    match (code, message.is_empty()) {
        (Some(c), false) => format!(" {c}: {message}"),
        (Some(c), true) => format!(" {c}"),
        (None, false) => format!(": {message}"),
        (None, true) => String::new(),
    }
}

impl Error {
    /// The HTTP status of a registry error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Registry { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The registry's error code, when it sent one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Error::Registry { code, .. } => code.as_ref(),
            _ => None,
        }
    }

    /// True when the thing asked for does not exist (HTTP 404 or an `*_UNKNOWN` code).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
            || matches!(
                self.code(),
                Some(ErrorCode::ManifestUnknown | ErrorCode::BlobUnknown | ErrorCode::NameUnknown)
            )
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
