//! Semantic versions in tags: `[v]MAJOR.MINOR.PATCH[-PRERELEASE]` (build metadata cannot appear
//! in a tag, since `+` is not a tag character), ordered by semver precedence. A thin layer on
//! [`oci::semver`], Wharf's one SemVer 2.0.0: see [`Version::parse`] for what a tag adds.

use std::cmp::Ordering;

use oci::semver::{SemVer, pre_cmp};

/// A semantic version written in a tag. Ordering is semver precedence: numerically by major,
/// minor, patch; a pre-release sorts before its release; pre-releases compare identifier by
/// identifier ([`oci::semver::pre_cmp`], the one SemVer 2.0.0 of Wharf).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// Incompatible changes.
    pub major: u64,
    /// Compatible features.
    pub minor: u64,
    /// Fixes.
    pub patch: u64,
    /// Pre-release identifiers joined by `.` (`rc.1`); empty for a release. Canonical (no
    /// leading zeros), so equal versions have equal strings.
    pub pre: String,
}

/// True for a numeric identifier that does not fit 64 bits.
fn overflows(digits: &str) -> bool {
    digits.bytes().all(|b| b.is_ascii_digit()) && digits.parse::<u64>().is_err()
}

impl Version {
    /// Parses a tag as a semantic version; `None` when the tag is not one. This is the one
    /// semver question of Wharf's tags: tag rules (`semver = true`), retention and `wharf
    /// versions` ask it, so they always agree.
    ///
    /// The grammar and precedence are [`oci::semver::SemVer`]'s; a tag differs from it only in
    /// what it accepts around the core, each for a reason:
    /// - an optional leading `v` (`v1.2.3`), because that is how most images tag releases;
    /// - no build metadata, because `+` is not a tag character;
    /// - numbers (major, minor, patch and numeric pre-release identifiers) must fit 64 bits,
    ///   as the `semver` crate requires: retention groups tags by their major number and
    ///   reports it as a number, and tag rules have always refused bigger ones.
    pub fn parse(tag: &str) -> Option<Version> {
        let t = tag.strip_prefix('v').unwrap_or(tag);
        if t.contains('+') {
            return None;
        }
        let v = SemVer::parse(t).ok()?;
        if !v.pre.is_empty() && v.pre.split('.').any(overflows) {
            return None;
        }
        Some(Version {
            major: v.major.parse().ok()?,
            minor: v.minor.parse().ok()?,
            patch: v.patch.parse().ok()?,
            pre: v.pre.to_owned(),
        })
    }

    /// Whether this is a pre-release.
    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        // The numbers fit 64 bits here, so comparing them as integers is the core's digit-string
        // comparison; the pre-release precedence is the core's own function.
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| pre_cmp(&self.pre, &other.pre))
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
            "1.0.0+build",
            "1.0.0-rc.01",
            "",
        ] {
            assert!(Version::parse(bad).is_none(), "{bad}");
        }
        let v = Version::parse("v1.2.3-rc.10").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 2, 3));
        assert_eq!(v.pre, "rc.10");
        assert!(v.is_prerelease());
    }

    #[test]
    fn precedence_follows_the_semver_spec() {
        // The example chain from semver.org, section 11, plus numeric (not lexical) ordering.
        let chain: Vec<&str> = oci::semver::PRECEDENCE_EXAMPLE
            .into_iter()
            .chain(["v1.0.1", "1.2.0", "1.10.0", "2.0.0", "10.0.0"])
            .collect();
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

    /// Tags and the shared core agree: what a tag accepts, the core accepts after the `v`, in
    /// the same order. The differences are only the documented ones around the core. Before
    /// the two were one, `1.0.0-01` and `1.0.0-rc.01` were semver tags here (a numeric
    /// identifier was read as a number, leading zero or not) and not SemVer in the core.
    #[test]
    fn tags_agree_with_the_shared_core() {
        fn core(s: &str) -> Option<SemVer<'_>> {
            SemVer::parse(s).ok()
        }
        // Agreement on what is not a version at all.
        for bad in ["1.2", "1.0.0-01", "1.0.0-rc.01", "01.0.0", "1.0.0-"] {
            assert!(
                Version::parse(bad).is_none() && core(bad).is_none(),
                "{bad}"
            );
        }
        // The documented differences: a `v`, build metadata, numbers beyond 64 bits.
        assert!(Version::parse("v1.0.0").is_some() && core("v1.0.0").is_none());
        assert!(Version::parse("1.0.0+b").is_none() && core("1.0.0+b").is_some());
        let big = "99999999999999999999999.0.0";
        assert!(Version::parse(big).is_none() && core(big).is_some());
        // Pre-release ordering, the spec's subtle case, is the same.
        let (a, b) = ("1.0.0-alpha.1", "1.0.0-alpha.beta");
        assert!(Version::parse(a).unwrap() < Version::parse(b).unwrap());
        assert!(core(a).unwrap() < core(b).unwrap());
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
            pre in "[a-z]{1,5}(\\.(0|[1-9][0-9]{0,2}))?",
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

        /// Whatever two tags are, the tag order is the shared core's order of the tags without
        /// their `v`, and a tag is a version only if the core says so.
        #[test]
        fn order_is_the_cores(
            a in "v?(0|[1-9][0-9]{0,2})\\.(0|[1-9])\\.(0|[1-9])(-([0-9]{1,2}|[a-z]{1,3}|rc\\.0?[0-9]|[a-z]\\.[0-9a-z]{1,2}))?",
            b in "v?(0|[1-9][0-9]{0,2})\\.(0|[1-9])\\.(0|[1-9])(-([0-9]{1,2}|[a-z]{1,3}|rc\\.0?[0-9]|[a-z]\\.[0-9a-z]{1,2}))?",
        ) {
            let strip = |s: &str| s.strip_prefix('v').unwrap_or(s).to_owned();
            let (sa, sb) = (strip(&a), strip(&b));
            let (ca, cb) = (SemVer::parse(&sa).ok(), SemVer::parse(&sb).ok());
            let (ta, tb) = (Version::parse(&a), Version::parse(&b));
            proptest::prop_assert_eq!(ta.is_some(), ca.is_some());
            proptest::prop_assert_eq!(tb.is_some(), cb.is_some());
            if let (Some(ta), Some(tb), Some(ca), Some(cb)) = (ta, tb, ca, cb) {
                proptest::prop_assert_eq!(ta.cmp(&tb), ca.cmp(&cb));
                proptest::prop_assert_eq!(ta == tb, ca == cb);
            }
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
