//! The one glob matcher of Wharf, for every pattern a user writes: repository patterns of access
//! rules and `anonymous_pull`, immutable-tag rules (`repos`, `tags`), retention (`repos`,
//! `keep_tags`) and cache pins.
//!
//! The rules, anchored at both ends:
//!
//! - `*` matches any run of characters, **slashes included** (`team-a/*` covers `team-a/x/y`,
//!   as docs/access-control.md promises); `**` is the same as `*`;
//! - `?` matches exactly one character (a `/` too);
//! - every other character matches itself; there is no escape and no character class.
//!
//! A pattern is compiled once into literal segments between the stars. Matching places the first
//! segment at the start, the last at the end, and each middle one at its leftmost occurrence in
//! between, which is optimal for star-only wildcards: no backtracking, so no blow-up whatever the
//! pattern. Segments without `?` are found with the standard library's linear substring search,
//! so such patterns match in time linear in the text; with `?` the bound is
//! O(text × pattern).

use std::fmt;

/// One piece of a segment: literal text, or `?`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    /// Text that must appear as is.
    Literal(String),
    /// `?`: any one character.
    AnyChar,
}

/// The pieces between two stars (or an end of the pattern and a star).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Segment {
    pieces: Vec<Piece>,
    /// Characters the segment matches (each literal character and each `?` is one).
    chars: usize,
}

impl Segment {
    /// A segment made only of literal text (or empty), found by substring search.
    fn as_literal(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [] => Some(""),
            [Piece::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// Where the segment ends when it starts at byte `at` of `text` (a character boundary).
    fn match_at(&self, text: &str, mut at: usize) -> Option<usize> {
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => {
                    if !text[at..].starts_with(s.as_str()) {
                        return None;
                    }
                    at += s.len();
                }
                Piece::AnyChar => at += text[at..].chars().next()?.len_utf8(),
            }
        }
        Some(at)
    }

    /// The leftmost occurrence in `text[from..]`: (start, end).
    fn find(&self, text: &str, from: usize) -> Option<(usize, usize)> {
        if let Some(lit) = self.as_literal() {
            let start = from + text[from..].find(lit)?;
            return Some((start, start + lit.len()));
        }
        text[from..]
            .char_indices()
            .map(|(i, _)| from + i)
            .find_map(|start| Some((start, self.match_at(text, start)?)))
    }
}

/// A compiled glob pattern (see the module documentation for the rules).
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    /// The segments between stars: one when the pattern has no star.
    segments: Vec<Segment>,
}

impl Glob {
    /// Compiles a pattern. Every string is a valid pattern; callers that restrict the characters
    /// a pattern may hold (access rules do) check that first.
    pub fn new(pattern: &str) -> Glob {
        let segments = pattern
            .split('*')
            .map(|part| {
                let mut seg = Segment::default();
                for c in part.chars() {
                    seg.chars += 1;
                    match (c, seg.pieces.last_mut()) {
                        ('?', _) => seg.pieces.push(Piece::AnyChar),
                        (c, Some(Piece::Literal(s))) => s.push(c),
                        (c, _) => seg.pieces.push(Piece::Literal(c.to_string())),
                    }
                }
                seg
            })
            .collect();
        Glob {
            text: pattern.to_owned(),
            segments,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern has no wildcard (it then matches only its own text).
    pub fn is_literal(&self) -> bool {
        !self.text.contains(['*', '?'])
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let (first, rest) = self
            .segments
            .split_first()
            .expect("split yields at least one segment");
        let Some(after_first) = first.match_at(text, 0) else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            // No star: the one segment must cover the whole text.
            return after_first == text.len();
        };
        // The last segment is anchored at the end: it starts `last.chars` characters before it.
        let Some(tail_start) = nth_char_from_end(text, last.chars) else {
            return false;
        };
        if tail_start < after_first || last.match_at(text, tail_start) != Some(text.len()) {
            return false;
        }
        let mut at = after_first;
        for seg in middle {
            match seg.find(&text[..tail_start], at) {
                Some((_, end)) => at = end,
                None => return false,
            }
        }
        true
    }
}

/// The byte index `n` characters before the end of `text`, if it has that many.
fn nth_char_from_end(text: &str, n: usize) -> Option<usize> {
    if n == 0 {
        return Some(text.len());
    }
    text.char_indices().rev().nth(n - 1).map(|(i, _)| i)
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.text)
    }
}

impl From<&str> for Glob {
    fn from(pattern: &str) -> Glob {
        Glob::new(pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: the rules written as plainly as possible (exponential, so small inputs).
    fn naive(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => naive(&p[1..], t) || (!t.is_empty() && naive(p, &t[1..])),
            (Some('?'), Some(_)) => naive(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => naive(&p[1..], &t[1..]),
            _ => false,
        }
    }

    fn m(p: &str, t: &str) -> bool {
        Glob::new(p).matches(t)
    }

    #[test]
    fn repository_patterns() {
        // From docs/access-control.md: `*` crosses slashes.
        assert!(m("team-a/*", "team-a/app"));
        assert!(m("team-a/*", "team-a/x/y"));
        assert!(!m("team-a/*", "team-a"));
        assert!(!m("team-a/*", "team-b/app"));
        assert!(m("*", "anything/at/all"));
        assert!(m("*/prod/*", "x/prod/y"));
        assert!(!m("*/prod/*", "x/dev/y"));
        assert!(m("docker.io/lib*", "docker.io/library/alpine"));
        assert!(m("a?c", "abc"));
        assert!(m("a?c", "a/c"));
    }

    #[test]
    fn tag_patterns() {
        assert!(m("v*", "v1.2.3"));
        assert!(m("*", ""));
        assert!(m("", ""));
        assert!(!m("", "x"));
        assert!(m("release-?", "release-1"));
        assert!(!m("release-?", "release-10"));
        assert!(m("*-stable", "2024-stable"));
        assert!(!m("*-stable", "2024-stable-x"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("latest", "latest"));
        assert!(!m("latest", "latest2"));
        assert!(m("**x", "abcx"));
        assert!(m("3.*", "3.20"));
        // The first and last segments must not overlap.
        assert!(!m("ab*ba", "aba"));
        assert!(m("ab*ba", "abba"));
        assert!(m("é?", "éà"));
        assert!(Glob::new("latest").is_literal());
        assert!(!Glob::new("v*").is_literal());
        assert_eq!(Glob::new("v*").to_string(), "v*");
    }

    #[test]
    fn no_blowup() {
        let text = "a".repeat(100_000);
        let started = std::time::Instant::now();
        assert!(!m("*a*a*a*a*a*a*a*a*a*a*a*b", &text));
        assert!(!m("*a?a*a?a*a?a*a?a*b", &text[..10_000]));
        assert!(m("*a*a*a*a*a*a*a*a*a*a*a*a", &text));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference(p in "[ab*?/é]{0,10}", t in "[ab/é]{0,12}") {
            let (pc, tc): (Vec<char>, Vec<char>) = (p.chars().collect(), t.chars().collect());
            prop_assert_eq!(m(&p, &t), naive(&pc, &tc), "pattern {:?} text {:?}", p, t);
        }

        #[test]
        fn a_literal_matches_itself(t in "\\PC{0,20}") {
            let lit: String = t.chars().filter(|c| !matches!(c, '*' | '?')).collect();
            prop_assert!(m(&lit, &lit));
            prop_assert!(m("*", &t));
        }
    }
}
