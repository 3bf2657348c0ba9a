//! Semantic versions in tags: `[v]MAJOR.MINOR.PATCH[-PRERELEASE]` (build metadata cannot appear
//! in a tag, since `+` is not a tag character), ordered by semver precedence.

use std::cmp::Ordering;

/// One dot-separated pre-release identifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ident {
    /// Digits only: compared numerically.
    Numeric(u64),
    /// Anything else: compared as ASCII text, and after every numeric identifier.
    Alpha(String),
}

impl Ord for Ident {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Ident::Numeric(a), Ident::Numeric(b)) => a.cmp(b),
            (Ident::Numeric(_), Ident::Alpha(_)) => Ordering::Less,
            (Ident::Alpha(_), Ident::Numeric(_)) => Ordering::Greater,
            (Ident::Alpha(a), Ident::Alpha(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for Ident {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A semantic version. Ordering is semver precedence: numerically by major, minor, patch; a
/// pre-release sorts before its release; pre-releases compare identifier by identifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// Incompatible changes.
    pub major: u64,
    /// Compatible features.
    pub minor: u64,
    /// Fixes.
    pub patch: u64,
    /// Pre-release identifiers (`rc.1` is `[Alpha("rc"), Numeric(1)]`); empty for a release.
    pub pre: Vec<Ident>,
}

impl Version {
    /// Parses a tag as a semantic version (an optional leading `v` is accepted); `None` when the
    /// tag is not one. Numbers that do not fit 64 bits (in the core or a numeric pre-release
    /// identifier) are not treated as versions. This is the one semver parser of Wharf: tag
    /// rules (`semver = true`) and retention ask it, so they always agree.
    pub fn parse(tag: &str) -> Option<Version> {
        let t = tag.strip_prefix('v').unwrap_or(tag);
        let (core, pre) = match t.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (t, None),
        };
        let number = |s: &str| -> Option<u64> {
            let ok = !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s == "0" || !s.starts_with('0'));
            if ok { s.parse().ok() } else { None }
        };
        let mut parts = core.split('.');
        let major = number(parts.next()?)?;
        let minor = number(parts.next()?)?;
        let patch = number(parts.next()?)?;
        if parts.next().is_some() {
            return None;
        }
        let pre = match pre {
            None => Vec::new(),
            Some(p) => p
                .split('.')
                .map(|id| {
                    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    {
                        None
                    } else if id.bytes().all(|b| b.is_ascii_digit()) {
                        id.parse().ok().map(Ident::Numeric)
                    } else {
                        Some(Ident::Alpha(id.to_owned()))
                    }
                })
                .collect::<Option<Vec<_>>>()?,
        };
        Some(Version {
            major,
            minor,
            patch,
            pre,
        })
    }

    /// Whether this is a pre-release.
    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Sorts items (tags) in version order, as `wharf versions` lists them: semantic versions first,
/// highest first; then every other tag by push time, newest first (unknown push times last).
/// Ties (`v1.0.0` and `1.0.0`, equal push times) go by name, so the order is deterministic.
pub fn sort_versions<T>(
    items: &mut [T],
    name: impl Fn(&T) -> &str,
    pushed: impl Fn(&T) -> Option<u64>,
) {
    items.sort_by_cached_key(|it| {
        let n = name(it).to_owned();
        match Version::parse(&n) {
            Some(v) => (
                0u8,
                Some(std::cmp::Reverse(v)),
                std::cmp::Reverse(0u64),
                false,
                n,
            ),
            None => {
                let p = pushed(it);
                (1u8, None, std::cmp::Reverse(p.unwrap_or(0)), p.is_none(), n)
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_matches_the_tag_grammar() {
        for ok in [
            "1.2.3",
            "v1.2.3",
            "0.0.0",
            "1.2.3-rc.1",
            "v10.20.30-alpha-1",
        ] {
            assert!(Version::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "1.2",
            "v1",
            "01.2.3",
            "1.2.3-",
            "1.2.3-a..b",
            "latest",
            "1.2.3.4",
            "v1.2.x",
            "vv1.2.3",
            "99999999999999999999999.0.0",
            "1.0.0-99999999999999999999999",
            "",
        ] {
            assert!(Version::parse(bad).is_none(), "{bad}");
        }
        let v = Version::parse("v1.2.3-rc.10").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 2, 3));
        assert_eq!(v.pre, vec![Ident::Alpha("rc".into()), Ident::Numeric(10)]);
        assert!(v.is_prerelease());
    }

    #[test]
    fn precedence_follows_the_semver_spec() {
        // The example chain from semver.org, section 11, plus numeric (not lexical) ordering.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "v1.0.1",
            "1.2.0",
            "1.10.0",
            "2.0.0",
            "10.0.0",
        ];
        for w in chain.windows(2) {
            let (a, b) = (Version::parse(w[0]).unwrap(), Version::parse(w[1]).unwrap());
            assert!(a < b, "{} < {}", w[0], w[1]);
        }
        assert_eq!(
            Version::parse("v1.0.0")
                .unwrap()
                .cmp(&Version::parse("1.0.0").unwrap()),
            Ordering::Equal
        );
    }

    #[test]
    fn listing_order() {
        let mut tags = vec![
            ("latest", Some(50)),
            ("1.0.0", Some(10)),
            ("v2.0.0-rc.1", Some(30)),
            ("main", Some(60)),
            ("v1.10.0", Some(20)),
            ("old", None),
            ("v2.0.0", Some(5)),
            ("1.9.0", Some(40)),
            ("nightly", Some(50)),
        ];
        sort_versions(&mut tags, |t| t.0, |t| t.1);
        let names: Vec<&str> = tags.iter().map(|t| t.0).collect();
        assert_eq!(
            names,
            [
                "v2.0.0",
                "v2.0.0-rc.1",
                "v1.10.0",
                "1.9.0",
                "1.0.0",
                "main",
                "latest",
                "nightly",
                "old"
            ]
        );
    }

    proptest::proptest! {
        /// Releases order as their numeric triples; a pre-release sorts right below its release
        /// and above the previous patch; a leading `v` changes nothing; parsing round-trips.
        #[test]
        fn order_is_numeric_and_prereleases_precede(
            a in (0u64..30, 0u64..30, 0u64..30),
            b in (0u64..30, 0u64..30, 0u64..30),
            pre in "[a-z]{1,5}(\\.[0-9]{1,3})?",
        ) {
            let v = |t: (u64, u64, u64)| Version::parse(&format!("{}.{}.{}", t.0, t.1, t.2)).unwrap();
            proptest::prop_assert_eq!(v(a).cmp(&v(b)), a.cmp(&b));
            let with_pre = Version::parse(&format!("v{}.{}.{}-{pre}", a.0, a.1, a.2)).unwrap();
            proptest::prop_assert!(with_pre < v(a));
            if a.2 > 0 {
                proptest::prop_assert!(with_pre > v((a.0, a.1, a.2 - 1)));
            }
            proptest::prop_assert_eq!(
                Version::parse(&format!("v{}.{}.{}", a.0, a.1, a.2)).unwrap(),
                v(a)
            );
        }

        /// Sorting is deterministic whatever the input order.
        #[test]
        fn sorting_ignores_input_order(
            mut tags in proptest::collection::vec(
                ("(v?[0-3]\\.[0-3]\\.[0-3](-rc\\.[0-2])?)|[a-z]{1,4}", proptest::option::of(0u64..5)),
                0..20,
            ),
        ) {
            tags.sort();
            tags.dedup_by(|a, b| a.0 == b.0);
            let mut fwd = tags.clone();
            let mut rev: Vec<_> = tags.into_iter().rev().collect();
            sort_versions(&mut fwd, |t| &t.0, |t| t.1);
            sort_versions(&mut rev, |t| &t.0, |t| t.1);
            proptest::prop_assert_eq!(&fwd, &rev);
            // Semantic versions come first, in non-increasing order.
            let vs: Vec<Option<Version>> = fwd.iter().map(|t| Version::parse(&t.0)).collect();
            let first_other = vs.iter().position(Option::is_none).unwrap_or(vs.len());
            proptest::prop_assert!(vs[first_other..].iter().all(Option::is_none));
            for w in vs[..first_other].windows(2) {
                proptest::prop_assert!(w[0] >= w[1]);
            }
        }
    }
}
