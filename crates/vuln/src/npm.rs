//! npm package versions, as the `semver` package (node-semver 7, non-loose) accepts them in
//! `semver.valid` and orders them in `semver.compare`: SemVer 2.0.0 with one optional `v`, at
//! most 256 characters, major, minor and patch at most `Number.MAX_SAFE_INTEGER`; build
//! metadata is ignored by the ordering. (Surrounding whitespace is refused, as `valid` does.)

use std::cmp::Ordering;

use oci::semver::{self, SemVer};

/// node-semver's limits.
const MAX_LENGTH: usize = 256;
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a string is not an npm version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Longer than node-semver accepts.
    #[error("npm version longer than {MAX_LENGTH} characters")]
    TooLong,
    /// Not SemVer 2.0.0.
    #[error(transparent)]
    Syntax(#[from] semver::ParseError),
    /// A number above `Number.MAX_SAFE_INTEGER`.
    #[error("npm version {0:?} has a number above 2^53-1")]
    TooBig(String),
}

/// Parses an npm version.
pub fn parse(s: &str) -> Result<SemVer<'_>, ParseError> {
    if s.len() > MAX_LENGTH {
        return Err(ParseError::TooLong);
    }
    let t = s.strip_prefix('v').unwrap_or(s);
    let v = SemVer::parse(t)?;
    for n in [v.major, v.minor, v.patch] {
        if n.len() > 16 || n.parse::<u64>().map_or(true, |n| n > MAX_SAFE_INTEGER) {
            return Err(ParseError::TooBig(s.to_owned()));
        }
    }
    Ok(v)
}

/// Parses both and compares them as node-semver's `compare` does.
pub fn compare(a: &str, b: &str) -> Result<Ordering, ParseError> {
    Ok(parse(a)?.cmp(&parse(b)?))
}
