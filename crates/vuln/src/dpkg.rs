//! Debian package versions (`[epoch:]upstream[-revision]`), ordered exactly as dpkg orders them
//! (`lib/dpkg/version.c`: `dpkg_version_compare` and `verrevcmp`), and parsed with the checks of
//! dpkg's `parseversion` (`lib/dpkg/parsehelp.c`): what dpkg warns about or rejects is an error
//! here, so a version that parses is one dpkg accepts silently.
//!
//! Ordering, in dpkg's words: epochs compare numerically; then the upstream part and then the
//! revision compare with `verrevcmp`, which alternates between a non-digit run (compared
//! character by character, letters before non-letters, `~` before everything including the
//! end of the string) and a digit run (compared numerically). A missing revision is the empty
//! string, which equals `0`.
//!
//! Parsing borrows from the input: no allocation, here or in comparisons.

use std::cmp::Ordering;

/// Why a string is not a version dpkg accepts without complaint. The messages are dpkg's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Empty or only blanks.
    #[error("version string is empty")]
    Empty,
    /// Blanks inside the version.
    #[error("version string has embedded spaces")]
    EmbeddedSpaces,
    /// `:` first.
    #[error("epoch in version is empty")]
    EpochEmpty,
    /// Something other than digits before the `:`.
    #[error("epoch in version is not number")]
    EpochNotNumber,
    /// A negative epoch.
    #[error("epoch in version is negative")]
    EpochNegative,
    /// An epoch above `i32::MAX`.
    #[error("epoch in version is too big")]
    EpochTooBig,
    /// Nothing after the epoch's `:`.
    #[error("nothing after colon in version number")]
    NothingAfterColon,
    /// A trailing `-`.
    #[error("revision number is empty")]
    RevisionEmpty,
    /// Nothing before the revision.
    #[error("version number is empty")]
    UpstreamEmpty,
    /// The upstream part starts with something other than a digit.
    #[error("version number does not start with digit")]
    UpstreamNotDigit,
    /// A character other than alphanumerics and `.+~-:` in the upstream part.
    #[error("invalid character in version number")]
    UpstreamInvalidChar,
    /// A character other than alphanumerics and `.+~` in the revision.
    #[error("invalid character in revision number")]
    RevisionInvalidChar,
}

/// A parsed Debian version, borrowing its parts from the input string.
#[derive(Debug, Clone, Copy)]
pub struct Version<'a> {
    /// The epoch (0 when absent).
    pub epoch: u32,
    /// The upstream version: between the epoch's `:` and the last `-`.
    pub upstream: &'a str,
    /// The Debian revision after the last `-`; empty when absent.
    pub revision: &'a str,
}

impl<'a> Version<'a> {
    /// Parses a version as dpkg's `parseversion` does (leading and trailing blanks ignored).
    pub fn parse(s: &'a str) -> Result<Self, ParseError> {
        let s = s.trim_start_matches([' ', '\t']);
        let s = s.trim_end_matches(|c: char| c.is_ascii_whitespace());
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        if s.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(ParseError::EmbeddedSpaces);
        }
        let (epoch, rest) = match s.find(':') {
            Some(colon) => (parse_epoch(&s[..colon])?, &s[colon + 1..]),
            None => (0, s),
        };
        if rest.is_empty() {
            // Only reachable with an epoch: `s` itself is not empty.
            return Err(ParseError::NothingAfterColon);
        }
        let (upstream, revision) = match rest.rfind('-') {
            Some(h) => {
                let rev = &rest[h + 1..];
                if rev.is_empty() {
                    return Err(ParseError::RevisionEmpty);
                }
                (&rest[..h], rev)
            }
            None => (rest, ""),
        };
        let first = *upstream
            .as_bytes()
            .first()
            .ok_or(ParseError::UpstreamEmpty)?;
        if !first.is_ascii_digit() {
            return Err(ParseError::UpstreamNotDigit);
        }
        if !upstream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-+~:".contains(&b))
        {
            return Err(ParseError::UpstreamInvalidChar);
        }
        if !revision
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+~".contains(&b))
        {
            return Err(ParseError::RevisionInvalidChar);
        }
        Ok(Version {
            epoch,
            upstream,
            revision,
        })
    }
}

/// The epoch before the first `:`, read as C's `strtol` reads it (an optional sign, digits)
/// with dpkg's checks on the result.
fn parse_epoch(e: &str) -> Result<u32, ParseError> {
    let (negative, unsigned) = match e.as_bytes().first() {
        Some(b'-') => (true, &e[1..]),
        Some(b'+') => (false, &e[1..]),
        _ => (false, e),
    };
    let ndigits = unsigned.bytes().take_while(u8::is_ascii_digit).count();
    if ndigits == 0 {
        // strtol read nothing at all.
        return Err(ParseError::EpochEmpty);
    }
    if ndigits != unsigned.len() {
        // strtol stopped before the colon.
        return Err(ParseError::EpochNotNumber);
    }
    let significant = unsigned.trim_start_matches('0');
    if negative && !significant.is_empty() {
        return Err(ParseError::EpochNegative);
    }
    match significant.parse::<u32>() {
        _ if significant.is_empty() => Ok(0),
        Ok(v) if v <= i32::MAX as u32 => Ok(v),
        _ => Err(ParseError::EpochTooBig),
    }
}

impl Ord for Version<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream, other.upstream))
            .then_with(|| verrevcmp(self.revision, other.revision))
    }
}

impl PartialOrd for Version<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version<'_> {}

/// Parses both and compares them in dpkg order.
pub fn compare(a: &str, b: &str) -> Result<Ordering, ParseError> {
    Ok(Version::parse(a)?.cmp(&Version::parse(b)?))
}

/// dpkg's `order()`: the weight of one character of a non-digit run (0 for the end).
#[inline]
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(b'~') => -1,
        Some(c) => c as i32 + 256,
    }
}

/// dpkg's `verrevcmp` over two upstream versions or two revisions.
pub fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(|c| c.is_ascii_digit());
    while i < a.len() || j < b.len() {
        // The non-digit run, character by character.
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        // The digit run, numerically: skip leading zeros, then the longer run wins, else the
        // first differing digit decides.
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // From the advisory data (CVE-2023-4911, DSA-5514-1): the fix is in +deb12u3.
        assert_eq!(
            compare("2.36-9+deb12u2", "2.36-9+deb12u3"),
            Ok(Ordering::Less)
        );
        assert_eq!(compare("1.0~rc1-1", "1.0-1"), Ok(Ordering::Less));
        assert_eq!(compare("1:0.1", "2.0"), Ok(Ordering::Greater));
        assert_eq!(compare("1.0-0", "1.0"), Ok(Ordering::Equal));
        assert_eq!(compare("3.0.14-1~deb12u2", "3.0.14-1"), Ok(Ordering::Less));
    }

    #[test]
    fn bad_versions_are_errors() {
        assert_eq!(Version::parse("").unwrap_err(), ParseError::Empty);
        assert_eq!(
            Version::parse("a1").unwrap_err(),
            ParseError::UpstreamNotDigit
        );
        assert_eq!(
            Version::parse("1.0-").unwrap_err(),
            ParseError::RevisionEmpty
        );
        assert_eq!(Version::parse("x:1").unwrap_err(), ParseError::EpochEmpty);
        assert_eq!(
            Version::parse("1x:1").unwrap_err(),
            ParseError::EpochNotNumber
        );
        assert_eq!(
            Version::parse("1:").unwrap_err(),
            ParseError::NothingAfterColon
        );
        assert_eq!(
            Version::parse("1 2").unwrap_err(),
            ParseError::EmbeddedSpaces
        );
        assert_eq!(
            Version::parse("1_0").unwrap_err(),
            ParseError::UpstreamInvalidChar
        );
    }
}
