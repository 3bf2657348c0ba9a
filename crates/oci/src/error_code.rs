//! The error codes of the OCI Distribution spec, as registries send them in JSON error bodies
//! (`{"errors": [{"code": "MANIFEST_UNKNOWN", ...}]}`).
//!
//! One enum for both sides: the registry answers with these codes, and the client parses them
//! from whatever registry it talks to (keeping codes it does not know as [`ErrorCode::Other`]).

use std::fmt;

/// An error code of the distribution spec, plus the two extras registries commonly send
/// (`UNAVAILABLE`, `UNKNOWN`) and a fallback for anything else a client receives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `BLOB_UNKNOWN`: blob unknown to registry.
    BlobUnknown,
    /// `BLOB_UPLOAD_INVALID`: blob upload invalid.
    BlobUploadInvalid,
    /// `BLOB_UPLOAD_UNKNOWN`: blob upload unknown to registry.
    BlobUploadUnknown,
    /// `DIGEST_INVALID`: provided digest did not match uploaded content.
    DigestInvalid,
    /// `MANIFEST_BLOB_UNKNOWN`: manifest references a manifest or blob unknown to registry.
    ManifestBlobUnknown,
    /// `MANIFEST_INVALID`: manifest invalid.
    ManifestInvalid,
    /// `MANIFEST_UNKNOWN`: manifest unknown to registry.
    ManifestUnknown,
    /// `NAME_INVALID`: invalid repository name.
    NameInvalid,
    /// `NAME_UNKNOWN`: repository name not known to registry.
    NameUnknown,
    /// `SIZE_INVALID`: provided length did not match content length.
    SizeInvalid,
    /// `UNAUTHORIZED`: authentication required.
    Unauthorized,
    /// `DENIED`: requested access to the resource is denied.
    Denied,
    /// `UNSUPPORTED`: the operation is unsupported.
    Unsupported,
    /// `TOOMANYREQUESTS`: too many requests.
    TooManyRequests,
    /// `UNAVAILABLE`: a service the request depends on (a pull-through cache's upstream) is
    /// unavailable. Not in the spec's table; CNCF Distribution sends it.
    Unavailable,
    /// `UNKNOWN`: the server failed, not the client. Not in the spec's table; CNCF Distribution
    /// sends it for internal errors, and so does Wharf.
    Internal,
    /// Any other code, as received (never sent by Wharf).
    Other(String),
}

/// Every named code with its wire name, in one table so parsing and printing cannot disagree.
const NAMES: [(ErrorCode, &str); 16] = [
    (ErrorCode::BlobUnknown, "BLOB_UNKNOWN"),
    (ErrorCode::BlobUploadInvalid, "BLOB_UPLOAD_INVALID"),
    (ErrorCode::BlobUploadUnknown, "BLOB_UPLOAD_UNKNOWN"),
    (ErrorCode::DigestInvalid, "DIGEST_INVALID"),
    (ErrorCode::ManifestBlobUnknown, "MANIFEST_BLOB_UNKNOWN"),
    (ErrorCode::ManifestInvalid, "MANIFEST_INVALID"),
    (ErrorCode::ManifestUnknown, "MANIFEST_UNKNOWN"),
    (ErrorCode::NameInvalid, "NAME_INVALID"),
    (ErrorCode::NameUnknown, "NAME_UNKNOWN"),
    (ErrorCode::SizeInvalid, "SIZE_INVALID"),
    (ErrorCode::Unauthorized, "UNAUTHORIZED"),
    (ErrorCode::Denied, "DENIED"),
    (ErrorCode::Unsupported, "UNSUPPORTED"),
    (ErrorCode::TooManyRequests, "TOOMANYREQUESTS"),
    (ErrorCode::Unavailable, "UNAVAILABLE"),
    (ErrorCode::Internal, "UNKNOWN"),
];

impl ErrorCode {
    /// Maps a wire name from an error body; unknown names are kept as [`ErrorCode::Other`].
    pub fn parse(s: &str) -> ErrorCode {
        NAMES
            .iter()
            .find(|(_, name)| *name == s)
            .map_or_else(|| ErrorCode::Other(s.to_owned()), |(c, _)| c.clone())
    }

    /// The code as it appears on the wire (`MANIFEST_UNKNOWN`).
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Other(s) => s,
            named => NAMES
                .iter()
                .find(|(c, _)| c == named)
                .map(|(_, name)| *name)
                .unwrap_or_default(),
        }
    }

    /// The HTTP status the spec (or, for the extras, CNCF Distribution) pairs with the code;
    /// `None` for a code this enum does not know.
    pub fn status(&self) -> Option<u16> {
        Some(match self {
            ErrorCode::BlobUnknown
            | ErrorCode::BlobUploadUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown => 404,
            ErrorCode::BlobUploadInvalid
            | ErrorCode::DigestInvalid
            | ErrorCode::ManifestBlobUnknown
            | ErrorCode::ManifestInvalid
            | ErrorCode::NameInvalid
            | ErrorCode::SizeInvalid => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Denied => 403,
            ErrorCode::Unsupported => 405,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
            ErrorCode::Other(_) => return None,
        })
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_round_trip() {
        for (code, name) in &NAMES {
            assert_eq!(code.as_str(), *name);
            assert_eq!(&ErrorCode::parse(name), code);
            assert!(code.status().is_some(), "{name}");
        }
        assert_eq!(ErrorCode::ManifestUnknown.status(), Some(404));
        assert_eq!(ErrorCode::Internal.as_str(), "UNKNOWN");
        let other = ErrorCode::parse("QUOTA_EXCEEDED");
        assert_eq!(other, ErrorCode::Other("QUOTA_EXCEEDED".into()));
        assert_eq!(other.to_string(), "QUOTA_EXCEEDED");
        assert_eq!(other.status(), None);
    }

    proptest! {
        /// Whatever a registry sends, parsing keeps its spelling.
        #[test]
        fn parse_keeps_the_wire_name(s in "[A-Z_]{0,24}") {
            let code = ErrorCode::parse(&s);
            prop_assert_eq!(code.as_str(), s.as_str());
        }
    }
}
