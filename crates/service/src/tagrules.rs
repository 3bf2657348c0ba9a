//! Immutable tags: rules by repository pattern and tag pattern under which a tag, once pushed,
//! never moves and is never deleted. Pure: the registry asks, storage enforces atomically.

use auth::Pattern;
use oci::Glob;

/// Which tags a rule covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagMatch {
    /// A glob with `*` and `?`, e.g. `v*` (the one [`oci::Glob`] matcher).
    Glob(Glob),
    /// Any semantic version: `[v]MAJOR.MINOR.PATCH[-PRERELEASE]`.
    Semver,
}

/// Tags matching `tags` in repositories matching `repos` are immutable.
#[derive(Clone, Debug)]
pub struct ImmutableRule {
    /// Repository pattern.
    pub repos: Pattern,
    /// Tag pattern.
    pub tags: TagMatch,
}

impl std::fmt::Display for ImmutableRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tags {
            TagMatch::Glob(g) => write!(f, "repos {} tags {g}", self.repos.as_str()),
            TagMatch::Semver => write!(f, "repos {} semantic-version tags", self.repos.as_str()),
        }
    }
}

/// The immutability rules of a registry.
#[derive(Clone, Debug, Default)]
pub struct TagRules {
    rules: Vec<ImmutableRule>,
}

/// Whether `tag` is a semantic version, by the one parser the retention planner and
/// `wharf versions` use ([`versions::Version::parse`]): `[v]MAJOR.MINOR.PATCH[-PRERELEASE]`,
/// numbers within 64 bits (build metadata cannot appear in a tag, since `+` is not a tag
/// character).
pub fn is_semver(tag: &str) -> bool {
    versions::Version::parse(tag).is_some()
}

impl TagRules {
    /// Builds the rule set.
    pub fn new(rules: Vec<ImmutableRule>) -> Self {
        TagRules { rules }
    }

    /// The rule that makes `repo:tag` immutable, if any.
    pub fn immutable(&self, repo: &str, tag: &str) -> Option<&ImmutableRule> {
        self.rules.iter().find(|r| {
            r.repos.matches(repo)
                && match &r.tags {
                    TagMatch::Glob(g) => g.matches(tag),
                    TagMatch::Semver => is_semver(tag),
                }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver() {
        for ok in [
            "1.2.3",
            "v1.2.3",
            "0.0.0",
            "1.2.3-rc.1",
            "v10.20.30-alpha-1",
        ] {
            assert!(is_semver(ok), "{ok}");
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
            // Too big for the version parser, so not a version to tag rules either.
            "99999999999999999999999.0.0",
            "1.0.0-99999999999999999999999",
        ] {
            assert!(!is_semver(bad), "{bad}");
        }
    }

    #[test]
    fn rules() {
        let r = TagRules::new(vec![
            ImmutableRule {
                repos: Pattern::new("prod/*").unwrap(),
                tags: TagMatch::Glob(Glob::new("v*")),
            },
            ImmutableRule {
                repos: Pattern::new("lib/*").unwrap(),
                tags: TagMatch::Semver,
            },
        ]);
        assert!(r.immutable("prod/app", "v1.0").is_some());
        assert!(r.immutable("prod/app", "latest").is_none());
        assert!(r.immutable("dev/app", "v1.0").is_none());
        assert!(r.immutable("lib/x", "2.0.1").is_some());
        assert!(r.immutable("lib/x", "2.0").is_none());
    }
}
