//! Semantic Versioning 2.0.0: the grammar (`MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]`, no
//! leading zeros in numbers or numeric pre-release identifiers, identifiers of
//! `[0-9A-Za-z-]`, none empty) and precedence (spec item 11): numbers numerically, a
//! pre-release before its release, pre-release identifiers one by one (numeric ones
//! numerically and before alphanumeric ones, alphanumeric ones in ASCII order, more
//! identifiers win when all before are equal); build metadata is ignored.
//!
//! This is the one semantic version of Wharf. Every user is a thin layer that decides only
//! what it accepts around this core, never the precedence:
//!
//! - `vuln`'s npm, Cargo and Go orderings and its OSV `SEMVER` ranges (a leading `v`, Go's
//!   `v1.2` shorthand, each tool's number limits);
//! - `versions::Version`, semantic versions in tags (a leading `v`, no build metadata since
//!   `+` is not a tag character, numbers that fit 64 bits), which tag rules and retention ask.
//!
//! Numbers are digit strings, compared by length then digits, so any size compares exactly;
//! nothing is allocated.

use std::cmp::Ordering;

/// Why a string is not a semantic version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not `MAJOR.MINOR.PATCH` with numbers without leading zeros.
    #[error("invalid version core in {0:?} (want MAJOR.MINOR.PATCH, no leading zeros)")]
    Core(String),
    /// A bad pre-release identifier (empty, bad character, numeric with a leading zero).
    #[error("invalid pre-release in {0:?}")]
    Prerelease(String),
    /// A bad build identifier (empty or bad character).
    #[error("invalid build metadata in {0:?}")]
    Build(String),
}

/// A semantic version, borrowing from the input string.
#[derive(Debug, Clone, Copy)]
pub struct SemVer<'a> {
    /// Major number's digits (`""` stands for 0, as in Go's `v1` shorthand).
    pub major: &'a str,
    /// Minor number's digits.
    pub minor: &'a str,
    /// Patch number's digits.
    pub patch: &'a str,
    /// Pre-release identifiers joined by `.` (empty for a release).
    pub pre: &'a str,
    /// Build metadata (empty when absent); ignored by precedence.
    pub build: &'a str,
}

/// A non-empty run of digits without a leading zero (or `0` itself).
pub fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

fn ident_ok(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl<'a> SemVer<'a> {
    /// Parses exactly SemVer 2.0.0 (no prefix, no whitespace).
    pub fn parse(s: &'a str) -> Result<Self, ParseError> {
        let (rest, build) = match s.split_once('+') {
            Some((r, b)) => (r, b),
            None => (s, ""),
        };
        let (core, pre) = match rest.split_once('-') {
            Some((c, p)) => (c, p),
            None => (rest, ""),
        };
        let mut parts = core.split('.');
        let (Some(major), Some(minor), Some(patch), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ParseError::Core(s.to_owned()));
        };
        if !(is_number(major) && is_number(minor) && is_number(patch)) {
            return Err(ParseError::Core(s.to_owned()));
        }
        if rest.len() != core.len()
            && !pre.split('.').all(|id| {
                ident_ok(id) && (!id.bytes().all(|b| b.is_ascii_digit()) || is_number(id))
            })
        {
            return Err(ParseError::Prerelease(s.to_owned()));
        }
        if s.len() != rest.len() && !build.split('.').all(ident_ok) {
            return Err(ParseError::Build(s.to_owned()));
        }
        Ok(SemVer {
            major,
            minor,
            patch,
            pre,
            build,
        })
    }
}

/// Digit strings compared as numbers (leading zeros ignored; `""` is zero).
pub fn num_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Pre-release precedence over dot-joined identifier lists (`""` = a release, which is last).
pub fn pre_cmp(a: &str, b: &str) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    let (mut ia, mut ib) = (a.split('.'), b.split('.'));
    loop {
        match (ia.next(), ib.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let numeric = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
                let o = match (numeric(x), numeric(y)) {
                    (true, true) => num_cmp(x, y),
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) => x.cmp(y),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

impl Ord for SemVer<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        num_cmp(self.major, other.major)
            .then_with(|| num_cmp(self.minor, other.minor))
            .then_with(|| num_cmp(self.patch, other.patch))
            .then_with(|| pre_cmp(self.pre, other.pre))
    }
}

impl PartialOrd for SemVer<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for SemVer<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for SemVer<'_> {}

/// The precedence example of semver.org, item 11, in ascending order: the reference every type
/// ordered by this one (tags, package versions) is tested against.
pub const PRECEDENCE_EXAMPLE: [&str; 8] = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example() {
        for w in PRECEDENCE_EXAMPLE.windows(2) {
            let (a, b) = (SemVer::parse(w[0]).unwrap(), SemVer::parse(w[1]).unwrap());
            assert!(a < b, "{} < {}", w[0], w[1]);
        }
        assert_eq!(
            SemVer::parse("1.0.0+a").unwrap(),
            SemVer::parse("1.0.0+b").unwrap()
        );
        for bad in [
            "1.0",
            "01.0.0",
            "1.0.0-",
            "1.0.0-01",
            "1.0.0+",
            "1.0.0-a..b",
            "1.0.0-é",
        ] {
            assert!(SemVer::parse(bad).is_err(), "{bad}");
        }
    }
}
