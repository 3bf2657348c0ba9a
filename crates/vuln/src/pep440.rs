//! Python package versions (PEP 440), parsed and ordered as `packaging.version.Version` does:
//! the permissive grammar with its normalisations (case-insensitive; an optional `v`;
//! `alpha`/`a`, `beta`/`b`, `c`/`pre`/`preview`/`rc`; `post`/`rev`/`r` and `-N`; `.`, `-` or `_`
//! as optional separators; implicit `0` numbers) and the sort key of `packaging`'s `_cmpkey`:
//!
//! epoch; release with trailing zeros ignored; pre-release (a dev release with neither pre nor
//! post sorts before every pre-release; no pre-release sorts after all of them); post-release
//! (none first); dev release (none last); local version (none first; numeric segments after
//! text segments, numbers numerically, text case-insensitively; more segments win).
//!
//! Numbers are compared as digit strings, so any size compares exactly, as in Python. Parsing
//! borrows from the input: no allocation, here or in comparisons.

use std::cmp::Ordering;

/// Why a string is not a PEP 440 version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The string does not match PEP 440's grammar (as `packaging` reads it).
    #[error("invalid PEP 440 version {version:?} (stopped at byte {at})")]
    Invalid {
        /// The whole input.
        version: String,
        /// Where the grammar stopped matching.
        at: usize,
    },
}

/// A number as its significant digits (no leading zeros; `""` is zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Num<'a>(&'a [u8]);

impl<'a> Num<'a> {
    fn new(d: &'a [u8]) -> Self {
        let z = d.iter().take_while(|&&c| c == b'0').count();
        Num(&d[z..])
    }
}

impl Ord for Num<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(other.0))
    }
}

impl PartialOrd for Num<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Pre-release kinds, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pre {
    /// `a`, `alpha`.
    Alpha,
    /// `b`, `beta`.
    Beta,
    /// `rc`, `c`, `pre`, `preview`.
    Rc,
}

/// A parsed PEP 440 version, borrowing from the input string.
#[derive(Debug, Clone, Copy)]
pub struct Version<'a> {
    epoch: Num<'a>,
    /// The release numbers as written (`1.2.3`), dot-separated.
    release: &'a [u8],
    pre: Option<(Pre, Num<'a>)>,
    post: Option<Num<'a>>,
    dev: Option<Num<'a>>,
    /// The local segments as written (after `+`), separated by `.`, `-` or `_`.
    local: Option<&'a [u8]>,
}

/// A cursor over the input with the small matchers the grammar needs.
struct Cur<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn digits(&mut self) -> Option<&'a [u8]> {
        let n = self.s[self.i..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if n == 0 {
            return None;
        }
        self.i += n;
        Some(&self.s[self.i - n..self.i])
    }
    fn sep(&mut self) -> bool {
        if matches!(self.peek(), Some(b'.' | b'-' | b'_')) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    /// Matches the first of `words` (case-insensitively) at the cursor.
    fn word(&mut self, words: &[&str]) -> Option<usize> {
        let rest = &self.s[self.i..];
        for (k, w) in words.iter().enumerate() {
            if rest.len() >= w.len() && rest[..w.len()].eq_ignore_ascii_case(w.as_bytes()) {
                self.i += w.len();
                return Some(k);
            }
        }
        None
    }
    /// `[-_.]?(words)[-_.]?([0-9]+)?`, all or nothing; returns the word's index and number.
    fn labelled(&mut self, words: &[&str]) -> Option<(usize, Num<'a>)> {
        let start = self.i;
        self.sep();
        let Some(k) = self.word(words) else {
            self.i = start;
            return None;
        };
        // The separator before the number stays consumed even without a number, as the
        // greedy regex leaves it (`1.0a-` is valid, `a0`).
        self.sep();
        Some((k, self.digits().map_or(Num(&[]), Num::new)))
    }
}

impl<'a> Version<'a> {
    /// Parses as `packaging.version.Version(s)` does (surrounding whitespace ignored).
    pub fn parse(input: &'a str) -> Result<Self, ParseError> {
        let s = input.trim();
        let offset = input.len() - input.trim_start().len();
        let err = |at: usize| ParseError::Invalid {
            version: input.to_owned(),
            at: offset + at,
        };
        let mut c = Cur {
            s: s.as_bytes(),
            i: 0,
        };
        if matches!(c.peek(), Some(b'v' | b'V')) {
            c.i += 1;
        }
        let first = c.digits().ok_or_else(|| err(c.i))?;
        let (epoch, release_start) = if c.peek() == Some(b'!') {
            c.i += 1;
            let at = c.i;
            c.digits().ok_or_else(|| err(c.i))?;
            (Num::new(first), at)
        } else {
            (Num(&[]), c.i - first.len())
        };
        // More release segments: `.` followed by digits.
        while c.peek() == Some(b'.') && c.s.get(c.i + 1).is_some_and(u8::is_ascii_digit) {
            c.i += 1;
            c.digits();
        }
        let release = &c.s[release_start..c.i];
        let pre = c
            .labelled(&["alpha", "a", "beta", "b", "preview", "pre", "c", "rc"])
            .map(|(k, n)| {
                (
                    match k {
                        0 | 1 => Pre::Alpha,
                        2 | 3 => Pre::Beta,
                        _ => Pre::Rc,
                    },
                    n,
                )
            });
        // Post: `-N`, or the labelled form.
        let post = {
            let start = c.i;
            if c.peek() == Some(b'-') {
                c.i += 1;
                match c.digits() {
                    Some(d) => Some(Num::new(d)),
                    None => {
                        c.i = start;
                        c.labelled(&["post", "rev", "r"]).map(|(_, n)| n)
                    }
                }
            } else {
                c.labelled(&["post", "rev", "r"]).map(|(_, n)| n)
            }
        };
        let dev = c.labelled(&["dev"]).map(|(_, n)| n);
        let local = if c.peek() == Some(b'+') {
            c.i += 1;
            let start = c.i;
            loop {
                let n = c.s[c.i..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric())
                    .count();
                if n == 0 {
                    return Err(err(c.i));
                }
                c.i += n;
                if matches!(c.peek(), Some(b'.' | b'-' | b'_'))
                    && c.s.get(c.i + 1).is_some_and(u8::is_ascii_alphanumeric)
                {
                    c.i += 1;
                } else {
                    break;
                }
            }
            Some(&c.s[start..c.i])
        } else {
            None
        };
        if c.i != c.s.len() {
            return Err(err(c.i));
        }
        Ok(Version {
            epoch,
            release,
            pre,
            post,
            dev,
            local,
        })
    }

    /// True for pre-releases and dev releases (what `packaging` calls `is_prerelease`).
    pub fn is_prerelease(&self) -> bool {
        self.pre.is_some() || self.dev.is_some()
    }
}

/// Release numbers compared with the shorter one padded with zeros.
fn release_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let mut ia = a.split(|&c| c == b'.');
    let mut ib = b.split(|&c| c == b'.');
    loop {
        match (ia.next(), ib.next()) {
            (None, None) => return Ordering::Equal,
            (x, y) => {
                let x = Num::new(x.unwrap_or(b"0"));
                let y = Num::new(y.unwrap_or(b"0"));
                match x.cmp(&y) {
                    Ordering::Equal => {}
                    o => return o,
                }
            }
        }
    }
}

/// One local segment: numbers sort after text; numbers numerically, text case-insensitively.
fn local_segment_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let num = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    match (num(a), num(b)) {
        (true, true) => Num::new(a).cmp(&Num::new(b)),
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a
            .iter()
            .map(u8::to_ascii_lowercase)
            .cmp(b.iter().map(u8::to_ascii_lowercase)),
    }
}

fn local_cmp(a: Option<&[u8]>, b: Option<&[u8]>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => {
            let split = |c: &u8| matches!(c, b'.' | b'-' | b'_');
            let (mut ia, mut ib) = (a.split(split), b.split(split));
            loop {
                match (ia.next(), ib.next()) {
                    (None, None) => return Ordering::Equal,
                    (None, Some(_)) => return Ordering::Less,
                    (Some(_), None) => return Ordering::Greater,
                    (Some(x), Some(y)) => match local_segment_cmp(x, y) {
                        Ordering::Equal => {}
                        o => return o,
                    },
                }
            }
        }
    }
}

/// The pre-release part of packaging's `_cmpkey`: a bare dev release (no pre, no post) sorts
/// before every pre-release (`-inf`), a version without pre-release after all of them (`+inf`).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum PreKey<'a> {
    BareDev,
    Pre(Pre, Num<'a>),
    Final,
}

fn pre_key<'a>(v: &Version<'a>) -> PreKey<'a> {
    match (v.pre, v.post, v.dev) {
        (None, None, Some(_)) => PreKey::BareDev,
        (None, _, _) => PreKey::Final,
        (Some((p, n)), _, _) => PreKey::Pre(p, n),
    }
}

/// Dev releases: none sorts last.
fn dev_key(d: Option<Num<'_>>) -> (u8, Num<'_>) {
    match d {
        Some(n) => (0, n),
        None => (1, Num(&[])),
    }
}

impl Ord for Version<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Post: none sorts first. Dev: none sorts last.
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| release_cmp(self.release, other.release))
            .then_with(|| pre_key(self).cmp(&pre_key(other)))
            .then_with(|| self.post.cmp(&other.post))
            .then_with(|| dev_key(self.dev).cmp(&dev_key(other.dev)))
            .then_with(|| local_cmp(self.local, other.local))
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

/// Parses both and compares them in PEP 440 order.
pub fn compare(a: &str, b: &str) -> Result<Ordering, ParseError> {
    Ok(Version::parse(a)?.cmp(&Version::parse(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalised_forms_are_equal() {
        for (a, b) in [
            ("1.0", "1.0.0"),
            ("1.0alpha1", "1.0a1"),
            ("1.0-pre.2", "1.0rc2"),
            ("1.0-1", "1.0.post1"),
            ("1.0.r", "1.0.post0"),
            ("v1!2.0-dev", "1!2.0.dev0"),
            ("1.0+Ubuntu.1", "1.0+ubuntu-1"),
        ] {
            assert_eq!(compare(a, b), Ok(Ordering::Equal), "{a} = {b}");
        }
    }

    #[test]
    fn order() {
        let ordered = [
            "1.0.dev1",
            "1.0a1.dev1",
            "1.0a1",
            "1.0b1",
            "1.0rc1",
            "1.0",
            "1.0+local",
            "1.0.post1.dev1",
            "1.0.post1",
            "1.1",
        ];
        for w in ordered.windows(2) {
            assert_eq!(
                compare(w[0], w[1]),
                Ok(Ordering::Less),
                "{} < {}",
                w[0],
                w[1]
            );
        }
        assert!(Version::parse("1.0-").is_err());
        assert!(Version::parse("french toast").is_err());
    }
}
