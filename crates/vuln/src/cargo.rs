//! Cargo (crates.io) versions: exactly SemVer 2.0.0 as the `semver` crate parses it (no
//! prefix, no whitespace, numbers that fit 64 bits), ordered by SemVer precedence. Build
//! metadata does not take part, as in RustSec's and OSV's matching (the `semver` crate's
//! own `Ord` breaks ties on it, which matters for sorting but not for "is this version
//! affected").

use std::cmp::Ordering;

use oci::semver::{self, SemVer};

/// Why a string is not a Cargo version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not SemVer 2.0.0.
    #[error(transparent)]
    Syntax(#[from] semver::ParseError),
    /// A major, minor or patch number above `u64::MAX`.
    #[error("cargo version {0:?} has a number that does not fit 64 bits")]
    TooBig(String),
}

/// Parses a Cargo version.
pub fn parse(s: &str) -> Result<SemVer<'_>, ParseError> {
    let v = SemVer::parse(s)?;
    for n in [v.major, v.minor, v.patch] {
        if n.parse::<u64>().is_err() {
            return Err(ParseError::TooBig(s.to_owned()));
        }
    }
    Ok(v)
}

/// Parses both and compares them by SemVer precedence.
pub fn compare(a: &str, b: &str) -> Result<Ordering, ParseError> {
    Ok(parse(a)?.cmp(&parse(b)?))
}
