//! RPM versions (`[epoch:]version[-release]`), ordered as rpm 4.18 orders them: `rpmvercmp`
//! (`rpmio/rpmvercmp.c`) on each part, with `~` sorting before everything (pre-releases) and `^`
//! after the end of a version but before any further segment (post-release snapshots), and
//! `rpmverCmp` for the whole EVR: epoch (missing = 0), then version, then release when
//! present (a version with a release, even an empty one, is newer than the same version
//! without; this is `rpm.vercmp`'s answer, which the tests check).
//!
//! `rpmvercmp` splits a string into alphabetic and numeric segments; every other character
//! only separates. Numeric segments compare as numbers (leading zeros ignored, any length) and
//! are newer than alphabetic ones; alphabetic ones compare as bytes.
//!
//! Parsing borrows from the input: no allocation, here or in comparisons.

use std::cmp::Ordering;

/// Why a string is not an RPM version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The empty string (rpm's parser refuses it).
    #[error("empty rpm version")]
    Empty,
    /// Nothing between the epoch and the release.
    #[error("rpm version {0:?} has an empty version part")]
    EmptyVersion(String),
}

/// An RPM epoch-version-release, borrowing its parts from the input string.
#[derive(Debug, Clone, Copy)]
pub struct Evr<'a> {
    /// The epoch's digits (`None` when absent; an empty epoch before `:` counts as `0`).
    pub epoch: Option<&'a str>,
    /// The version.
    pub version: &'a str,
    /// The release after the last `-`, if any.
    pub release: Option<&'a str>,
}

impl<'a> Evr<'a> {
    /// Splits as rpm's `parseEVR` does: leading digits followed by `:` are the epoch, the part
    /// after the last `-` is the release.
    pub fn parse(s: &'a str) -> Result<Self, ParseError> {
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let (epoch, rest) = if s.as_bytes().get(digits) == Some(&b':') {
            (Some(&s[..digits]), &s[digits + 1..])
        } else {
            (None, s)
        };
        let (version, release) = match rest.rfind('-') {
            Some(h) => (&rest[..h], Some(&rest[h + 1..])),
            None => (rest, None),
        };
        if version.is_empty() {
            return Err(ParseError::EmptyVersion(s.to_owned()));
        }
        Ok(Evr {
            epoch,
            version,
            release,
        })
    }
}

/// A missing or empty epoch is `0`.
fn epoch(e: Option<&str>) -> &str {
    match e {
        Some(e) if !e.is_empty() => e,
        _ => "0",
    }
}

impl Ord for Evr<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        rpmvercmp(epoch(self.epoch), epoch(other.epoch))
            .then_with(|| rpmvercmp(self.version, other.version))
            .then_with(|| match (self.release, other.release) {
                (Some(a), Some(b)) => rpmvercmp(a, b),
                // As `rpm.vercmp` answers: a release, even an empty one, is newer than none.
                (Some(_), None) => Ordering::Greater,
                (None, Some(_)) => Ordering::Less,
                (None, None) => Ordering::Equal,
            })
    }
}

impl PartialOrd for Evr<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Evr<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Evr<'_> {}

/// Parses both as EVRs and compares them as rpm does.
pub fn compare(a: &str, b: &str) -> Result<Ordering, ParseError> {
    Ok(Evr::parse(a)?.cmp(&Evr::parse(b)?))
}

/// rpm's `rpmvercmp` on one part (a version or a release).
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    while i < a.len() || j < b.len() {
        while i < a.len() && sep(a[i]) {
            i += 1;
        }
        while j < b.len() && sep(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        // `~` sorts before anything, even the end.
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        // `^` sorts after the end, but before anything else.
        if ca == Some(b'^') || cb == Some(b'^') {
            match (ca, cb) {
                (None, _) => return Ordering::Less,
                (_, None) => return Ordering::Greater,
                (Some(x), _) if x != b'^' => return Ordering::Greater,
                (_, Some(y)) if y != b'^' => return Ordering::Less,
                _ => {}
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca.is_none() || cb.is_none() {
            break;
        }
        let (si, sj) = (i, j);
        let numeric = a[i].is_ascii_digit();
        if numeric {
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
        } else {
            while i < a.len() && a[i].is_ascii_alphabetic() {
                i += 1;
            }
            while j < b.len() && b[j].is_ascii_alphabetic() {
                j += 1;
            }
        }
        // Segments of different kinds: numeric is newer.
        if sj == j {
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (mut x, mut y) = (&a[si..i], &b[sj..j]);
        if numeric {
            while x.first() == Some(&b'0') {
                x = &x[1..];
            }
            while y.first() == Some(&b'0') {
                y = &y[1..];
            }
            match x.len().cmp(&y.len()) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        match x.cmp(y) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    match (i < a.len(), j < b.len()) {
        (false, false) => Ordering::Equal,
        (false, true) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evr_parts() {
        let e = Evr::parse("1:2.0-3.el9").unwrap();
        assert_eq!(
            (e.epoch, e.version, e.release),
            (Some("1"), "2.0", Some("3.el9"))
        );
        let e = Evr::parse("2.0").unwrap();
        assert_eq!((e.epoch, e.version, e.release), (None, "2.0", None));
        assert_eq!(Evr::parse("").unwrap_err(), ParseError::Empty);
        assert!(matches!(
            Evr::parse("1:-1"),
            Err(ParseError::EmptyVersion(_))
        ));
    }
}
