//! OCI primitives shared by every Wharf crate.
//!
//! Everything here is pure: parsing and validation of digests, repository names, tags, image
//! references, globs, semantic versions (SemVer 2.0.0), UTC times as RFC 3339, the spec's error codes, HTTP byte ranges and manifests, with no I/O, so the rules are easy to test and fuzz.

pub mod digest;
pub mod error_code;
pub mod glob;
pub mod image_ref;
pub mod manifest;
pub mod name;
pub mod range;
pub mod route;
pub mod semver;
pub mod time;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use error_code::ErrorCode;
pub use glob::Glob;
pub use image_ref::{ImageRef, ImageRefError};
pub use manifest::{Descriptor, Manifest, ManifestError, ManifestKind, media_types};
pub use name::{NameError, Reference, validate_repository, validate_tag};
pub use range::{ByteRange, RangeError, parse_content_range, parse_range};
pub use route::{Route, parse_route, percent_decode};
pub use semver::SemVer;
