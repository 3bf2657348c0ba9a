//! Alpine package versions, ordered as apk-tools orders them (`src/version.c`, the tokenizer
//! of apk-tools 2.14 and 3): `digit{.digit}...{letter}{_suffix{number}}...{~hash}{-rN}`.
//!
//! - Numbers compare numerically, except that a dotted component (not the first) with a
//!   leading zero on either side compares as a string (Gentoo's rule: `1.02 < 1.1`).
//! - One lowercase letter may follow the numbers (`1.0a`).
//! - Suffixes order `_alpha < _beta < _pre < _rc < (none) < _cvs < _svn < _git < _hg < _p`,
//!   each with an optional number.
//! - `~hash` compares as a string; `-rN` is the package revision.
//! - When one version runs out first, it is older, unless the other continues with a
//!   pre-release suffix (`1.0_rc1 < 1.0`).
//!
//! apk itself also compares strings that break these rules, token by token until the first
//! bad one. [`compare_lenient`] does the same; [`Version::parse`] and [`compare`] refuse them,
//! with an error naming the offending position.
//!
//! No allocation, in parsing or comparing.

use std::cmp::Ordering;

/// Why a string is not a valid Alpine version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The string is not `digit{.digit}...{letter}{_suf{#}}...{~hash}{-r#}`.
    #[error("invalid apk version {version:?} at byte {at}")]
    Invalid {
        /// The whole version.
        version: String,
        /// Where the tokenizer stopped.
        at: usize,
    },
}

/// A valid Alpine version (checked as `apk_version_validate` checks it).
#[derive(Debug, Clone, Copy)]
pub struct Version<'a>(&'a str);

impl<'a> Version<'a> {
    /// Accepts only what apk's validator accepts.
    pub fn parse(s: &'a str) -> Result<Self, ParseError> {
        let mut rest = s.as_bytes();
        let mut t = Tok::first(&mut rest);
        while t.kind < Kind::End {
            t.next(&mut rest);
        }
        if t.kind == Kind::End {
            Ok(Version(s))
        } else {
            Err(ParseError::Invalid {
                version: s.to_owned(),
                at: s.len() - rest.len(),
            })
        }
    }

    /// The version as written.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

impl Ord for Version<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_lenient(self.0, other.0)
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

/// Validates both and compares them in apk order.
pub fn compare(a: &str, b: &str) -> Result<Ordering, ParseError> {
    Ok(Version::parse(a)?.cmp(&Version::parse(b)?))
}

/// Token kinds, in apk's order (the order matters: it decides which token may follow which,
/// and which version is older when they run out at different places).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    InitialDigit,
    Digit,
    Letter,
    Suffix,
    SuffixNo,
    CommitHash,
    RevisionNo,
    End,
    Invalid,
}

/// Suffix values, in apk's order; `NONE` (5) separates pre-releases from post-releases.
const SUFFIX_NONE: u8 = 5;

fn suffix_value(s: &[u8]) -> Option<u8> {
    Some(match s {
        b"alpha" => 1,
        b"beta" => 2,
        b"pre" => 3,
        b"rc" => 4,
        b"cvs" => 6,
        b"svn" => 7,
        b"git" => 8,
        b"hg" => 9,
        b"p" => 10,
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy)]
struct Tok<'a> {
    kind: Kind,
    suffix: u8,
    value: &'a [u8],
}

impl<'a> Tok<'a> {
    fn first(b: &mut &'a [u8]) -> Self {
        let mut t = Tok {
            kind: Kind::InitialDigit,
            suffix: 0,
            value: &[],
        };
        t.digits(b);
        t
    }

    fn digits(&mut self, b: &mut &'a [u8]) {
        let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
        self.value = &b[..n];
        *b = &b[n..];
        if n == 0 {
            self.kind = Kind::Invalid;
        }
    }

    fn next(&mut self, b: &mut &'a [u8]) {
        let Some(&c) = b.first() else {
            self.kind = Kind::End;
            return;
        };
        match c {
            b'a'..=b'z' if self.kind <= Kind::Digit => {
                self.value = &b[..1];
                self.kind = Kind::Letter;
                *b = &b[1..];
            }
            b'.' | b'0'..=b'9' if c != b'.' || self.kind <= Kind::Digit => {
                if c == b'.' {
                    *b = &b[1..];
                }
                self.kind = match self.kind {
                    Kind::InitialDigit | Kind::Digit => Kind::Digit,
                    Kind::Suffix => Kind::SuffixNo,
                    _ => {
                        self.kind = Kind::Invalid;
                        return;
                    }
                };
                self.digits(b);
            }
            b'_' if self.kind <= Kind::SuffixNo => {
                *b = &b[1..];
                let n = b.iter().take_while(|c| c.is_ascii_lowercase()).count();
                self.value = &b[..n];
                *b = &b[n..];
                match suffix_value(self.value) {
                    Some(v) => {
                        self.suffix = v;
                        self.kind = Kind::Suffix;
                    }
                    None => self.kind = Kind::Invalid,
                }
            }
            b'~' if self.kind < Kind::CommitHash => {
                *b = &b[1..];
                let n = b.iter().take_while(|c| c.is_ascii_hexdigit()).count();
                self.value = &b[..n];
                *b = &b[n..];
                self.kind = if n == 0 {
                    Kind::Invalid
                } else {
                    Kind::CommitHash
                };
            }
            b'-' if self.kind < Kind::RevisionNo && b.get(1) == Some(&b'r') => {
                *b = &b[2..];
                self.kind = Kind::RevisionNo;
                self.digits(b);
            }
            _ => self.kind = Kind::Invalid,
        }
    }
}

/// apk's `token_cmp` for two tokens of the same kind.
fn token_cmp(a: &Tok<'_>, b: &Tok<'_>) -> Ordering {
    match a.kind {
        Kind::Digit if a.value.first() == Some(&b'0') || b.value.first() == Some(&b'0') => {
            a.value.cmp(b.value)
        }
        Kind::InitialDigit | Kind::Digit | Kind::SuffixNo | Kind::RevisionNo => {
            num_cmp(a.value, b.value)
        }
        Kind::Letter => a.value.cmp(b.value),
        Kind::Suffix => a.suffix.cmp(&b.suffix),
        _ => a.value.cmp(b.value),
    }
}

/// Digit strings compared as numbers of any size.
fn num_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let strip = |s: &[u8]| -> usize { s.iter().take_while(|&&c| c == b'0').count() };
    let (a, b) = (&a[strip(a)..], &b[strip(b)..]);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// apk's `apk_version_compare` on any two strings, valid or not: token by token; when the
/// kinds first differ (one ended, or broke the grammar), the rules above decide.
pub fn compare_lenient(a: &str, b: &str) -> Ordering {
    let (mut ra, mut rb) = (a.as_bytes(), b.as_bytes());
    let (mut ta, mut tb) = (Tok::first(&mut ra), Tok::first(&mut rb));
    while ta.kind == tb.kind && ta.kind < Kind::End {
        match token_cmp(&ta, &tb) {
            Ordering::Equal => {}
            o => return o,
        }
        ta.next(&mut ra);
        tb.next(&mut rb);
    }
    if ta.kind == tb.kind {
        return Ordering::Equal;
    }
    if ta.kind == Kind::Suffix && ta.suffix < SUFFIX_NONE {
        return Ordering::Less;
    }
    if tb.kind == Kind::Suffix && tb.suffix < SUFFIX_NONE {
        return Ordering::Greater;
    }
    // The version whose next token kind is later ran out (or broke) sooner: it is older.
    tb.kind.cmp(&ta.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        for ok in [
            "1",
            "1.2.3",
            "1.0a",
            "1.0_alpha1_p2",
            "1.0~abc1-r3",
            "006",
            "1.0-r0",
        ] {
            assert!(Version::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "1.0bc",
            "1.0_foo",
            "1.0-",
            "1.0-x",
            "1.0-r",
            "1.0~",
            "1..0",
            "1.0-r1-r2",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
    }
}
