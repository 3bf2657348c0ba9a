//! Typed errors, including the registry's own JSON error codes.

use std::fmt;

use oci::Digest;

/// The error codes of the OCI Distribution spec (and the extras registries commonly send).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `BLOB_UNKNOWN`
    BlobUnknown,
    /// `BLOB_UPLOAD_INVALID`
    BlobUploadInvalid,
    /// `BLOB_UPLOAD_UNKNOWN`
    BlobUploadUnknown,
    /// `DIGEST_INVALID`
    DigestInvalid,
    /// `MANIFEST_BLOB_UNKNOWN`
    ManifestBlobUnknown,
    /// `MANIFEST_INVALID`
    ManifestInvalid,
    /// `MANIFEST_UNKNOWN`
    ManifestUnknown,
    /// `NAME_INVALID`
    NameInvalid,
    /// `NAME_UNKNOWN`
    NameUnknown,
    /// `SIZE_INVALID`
    SizeInvalid,
    /// `UNAUTHORIZED`
    Unauthorized,
    /// `DENIED`
    Denied,
    /// `UNSUPPORTED`
    Unsupported,
    /// `TOOMANYREQUESTS`
    TooManyRequests,
    /// Any other code, as sent.
    Other(String),
}

impl ErrorCode {
    /// Maps a code string from an error body.
    pub fn parse(s: &str) -> ErrorCode {
        match s {
            "BLOB_UNKNOWN" => ErrorCode::BlobUnknown,
            "BLOB_UPLOAD_INVALID" => ErrorCode::BlobUploadInvalid,
            "BLOB_UPLOAD_UNKNOWN" => ErrorCode::BlobUploadUnknown,
            "DIGEST_INVALID" => ErrorCode::DigestInvalid,
            "MANIFEST_BLOB_UNKNOWN" => ErrorCode::ManifestBlobUnknown,
            "MANIFEST_INVALID" => ErrorCode::ManifestInvalid,
            "MANIFEST_UNKNOWN" => ErrorCode::ManifestUnknown,
            "NAME_INVALID" => ErrorCode::NameInvalid,
            "NAME_UNKNOWN" => ErrorCode::NameUnknown,
            "SIZE_INVALID" => ErrorCode::SizeInvalid,
            "UNAUTHORIZED" => ErrorCode::Unauthorized,
            "DENIED" => ErrorCode::Denied,
            "UNSUPPORTED" => ErrorCode::Unsupported,
            "TOOMANYREQUESTS" => ErrorCode::TooManyRequests,
            other => ErrorCode::Other(other.to_owned()),
        }
    }

    /// The code as the spec spells it.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Other(s) => s,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
