//! The distribution spec's error codes and JSON error bodies.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use store::StoreError;

/// The distribution spec's error codes, defined once in `oci` (shared with the client). Only
/// the spec's codes are sent to clients, since the spec requires a JSON error body's `code` to be
/// one of them; `Internal` (`UNKNOWN`) appears only on server failures, `Other` never.
pub use oci::ErrorCode as Code;

/// The HTTP status that usually goes with `code` (500 for a code Wharf never sends).
fn usual_status(code: &Code) -> StatusCode {
    code.status()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
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
            status: usual_status(&code),
            code,
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

/// The one mapping of a management operation's failure to its status and code.
impl From<service::manage::ManageError> for ApiError {
    fn from(e: service::manage::ManageError) -> Self {
        use service::manage::ManageError as E;
        match e {
            E::Denied(m) => ApiError::new(Code::Denied, m),
            E::Invalid(m) => {
                ApiError::new(Code::Unsupported, m).with_status(StatusCode::BAD_REQUEST)
            }
            E::NameInvalid(m) => ApiError::new(Code::NameInvalid, m),
            E::DigestInvalid(m) => ApiError::new(Code::DigestInvalid, m),
            E::NotFound(m) => ApiError::new(Code::NameUnknown, m),
            E::Conflict(m) => ApiError::new(Code::Unsupported, m).with_status(StatusCode::CONFLICT),
            E::Store(e) => e.into(),
            E::Internal(m) => ApiError::new(Code::Internal, m),
        }
    }
}
