//! The distribution spec's error codes and JSON error bodies.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use store::StoreError;

/// An error code from the distribution spec. Only the spec's codes are sent to clients, since the
/// spec requires a JSON error body's `code` to be one of them; `Internal` (`UNKNOWN`) appears only
/// on server failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Blob unknown to registry.
    BlobUnknown,
    /// Blob upload invalid.
    BlobUploadInvalid,
    /// Blob upload unknown to registry.
    BlobUploadUnknown,
    /// Provided digest did not match uploaded content.
    DigestInvalid,
    /// Manifest references a manifest or blob unknown to registry.
    ManifestBlobUnknown,
    /// Manifest invalid.
    ManifestInvalid,
    /// Manifest unknown to registry.
    ManifestUnknown,
    /// Invalid repository name.
    NameInvalid,
    /// Repository name not known to registry.
    NameUnknown,
    /// Provided length did not match content length.
    SizeInvalid,
    /// Authentication required.
    Unauthorized,
    /// Requested access to the resource is denied.
    Denied,
    /// The operation is unsupported.
    Unsupported,
    /// Too many requests.
    TooManyRequests,
    /// A service the request depends on (a pull-through cache's upstream) is unavailable.
    Unavailable,
    /// The server failed; not the client's fault.
    Internal,
}

impl Code {
    /// The code's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            Code::Unavailable => "UNAVAILABLE",
            Code::Internal => "UNKNOWN",
        }
    }

    /// The status that usually goes with the code.
    pub fn status(self) -> StatusCode {
        match self {
            Code::BlobUnknown
            | Code::BlobUploadUnknown
            | Code::ManifestUnknown
            | Code::NameUnknown => StatusCode::NOT_FOUND,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Denied => StatusCode::FORBIDDEN,
            Code::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Code::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An error answered to the client as the spec's JSON body.
#[derive(Debug)]
pub struct ApiError {
    /// The spec code.
    pub code: Code,
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
    /// Extra headers (for example `Content-Range` on a 416).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with the code's usual status.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            status: code.status(),
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// Overrides the status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code.as_str(), message = %self.message, "request failed");
        }
        let body = serde_json::json!({
            "errors": [{"code": self.code.as_str(), "message": self.message, "detail": null}]
        });
        let mut resp = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body.to_string(),
        )
            .into_response();
        for (k, v) in self.headers {
            resp.headers_mut().insert(k, v);
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BlobUnknown(d) => {
                ApiError::new(Code::BlobUnknown, format!("blob {d} unknown"))
            }
            StoreError::ManifestUnknown => ApiError::new(Code::ManifestUnknown, "manifest unknown"),
            StoreError::ManifestBlobUnknown(d) => ApiError::new(
                Code::ManifestBlobUnknown,
                format!("manifest references {d}, which is not in this repository"),
            ),
            StoreError::UploadUnknown => ApiError::new(Code::BlobUploadUnknown, "upload unknown"),
            StoreError::TagImmutable { tag, current } => ApiError::new(
                Code::Denied,
                format!(
                    "tag {tag} is immutable: it points at {current} and cannot be moved (pushing that same manifest again is fine)"
                ),
            ),
            e @ StoreError::DigestMismatch { .. } => {
                ApiError::new(Code::DigestInvalid, e.to_string())
            }
            e @ StoreError::OutOfOrder { .. } => {
                ApiError::new(Code::BlobUploadInvalid, e.to_string())
                    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
            }
            e @ StoreError::SizeMismatch { .. } => ApiError::new(Code::SizeInvalid, e.to_string()),
            e @ StoreError::Body(_) => ApiError::new(Code::BlobUploadInvalid, e.to_string()),
            e @ (StoreError::Io(_) | StoreError::Db(_)) => {
                ApiError::new(Code::Internal, e.to_string())
            }
        }
    }
}

/// Result alias for handlers.
pub type ApiResult<T = Response> = Result<T, ApiError>;
