//! Repository names, tags and references, validated by the distribution spec's grammar.
//!
//! Name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`
//! Tag:  `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`

use crate::digest::{Digest, DigestError};

/// Longest repository name accepted (as CNCF Distribution does).
pub const MAX_NAME_LEN: usize = 255;

/// Why a name, tag or reference was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// The repository name breaks the grammar.
    #[error("invalid repository name: {0}")]
    Name(&'static str),
    /// The tag breaks the grammar.
    #[error("invalid tag: must match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    Tag,
    /// A reference that looked like a digest did not parse.
    #[error("invalid digest: {0}")]
    Digest(#[from] DigestError),
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// Checks one path component: alphanumeric runs joined by `.`, `_`, `__` or `-+`.
fn validate_component(c: &[u8]) -> Result<(), NameError> {
    if c.is_empty() {
        return Err(NameError::Name("empty path component"));
    }
    let mut i = 0;
    loop {
        // An alphanumeric run.
        let start = i;
        while i < c.len() && is_alnum(c[i]) {
            i += 1;
        }
        if i == start {
            return Err(NameError::Name(
                "components must start and end with [a-z0-9] and separators must stand between them",
            ));
        }
        if i == c.len() {
            return Ok(());
        }
        // A separator.
        match c[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < c.len() && c[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < c.len() && c[i] == b'-' {
                    i += 1;
                }
            }
            _ => return Err(NameError::Name("only [a-z0-9._-] and / are allowed")),
        }
    }
}

/// Validates a repository name (nested names with `/` allowed).
pub fn validate_repository(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Name("empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::Name("longer than 255 characters"));
    }
    name.as_bytes()
        .split(|&b| b == b'/')
        .try_for_each(validate_component)
}

/// Validates a tag.
pub fn validate_tag(tag: &str) -> Result<(), NameError> {
    let b = tag.as_bytes();
    if b.is_empty() || b.len() > 128 {
        return Err(NameError::Tag);
    }
    let first_ok = b[0].is_ascii_alphanumeric() || b[0] == b'_';
    let rest_ok = b[1..]
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(NameError::Tag)
    }
}

/// What follows `/manifests/` in a URL: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// A mutable tag.
    Tag(String),
    /// An immutable digest.
    Digest(Digest),
}

impl Reference {
    /// Parses a reference: anything with a `:` must be a digest, else it must be a tag.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.contains(':') {
            Ok(Reference::Digest(Digest::parse(s)?))
        } else {
            validate_tag(s)?;
            Ok(Reference::Tag(s.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "library/busybox",
            "a/b/c/d",
            "foo.bar",
            "foo_bar",
            "foo__bar",
            "foo---bar",
            "0ab/c-d.e",
        ] {
            assert_eq!(validate_repository(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "A",
            "foo/",
            "/foo",
            "foo//bar",
            "foo/../bar",
            "..",
            ".",
            "foo___bar",
            "foo_-bar",
            "-foo",
            "foo-",
            "foo..bar",
            "foo bar",
            "foo%2fbar",
            "foo/.hidden",
        ] {
            assert!(validate_repository(bad).is_err(), "{bad}");
        }
        assert!(validate_repository(&"a".repeat(256)).is_err());
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.0.0", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert_eq!(validate_tag(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"a".repeat(129)] {
            assert!(validate_tag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn references() {
        assert_eq!(Reference::parse("v1"), Ok(Reference::Tag("v1".into())));
        assert!(matches!(
            Reference::parse(&format!("sha256:{}", "0".repeat(64))),
            Ok(Reference::Digest(_))
        ));
        assert!(Reference::parse("sha256:zz").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,300}") {
            let _ = validate_repository(&s);
            let _ = validate_tag(&s);
            let _ = Reference::parse(&s);
        }

        #[test]
        fn valid_names_have_no_path_tricks(s in "[a-z0-9._/-]{1,40}") {
            if validate_repository(&s).is_ok() {
                prop_assert!(!s.split('/').any(|c| c == "." || c == ".." || c.is_empty()));
                prop_assert!(!s.starts_with('/') && !s.ends_with('/'));
            }
        }

        #[test]
        fn generated_names_accepted(parts in proptest::collection::vec("[a-z0-9]{1,5}((\\.|_|__|-{1,3})[a-z0-9]{1,5}){0,3}", 1..5)) {
            let name = parts.join("/");
            prop_assume!(name.len() <= MAX_NAME_LEN);
            prop_assert_eq!(validate_repository(&name), Ok(()));
        }
    }
}
