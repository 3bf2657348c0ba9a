//! Immutable tags: rules by repository pattern and tag pattern under which a tag, once pushed,
//! never moves and is never deleted. Pure: the registry asks, storage enforces atomically.

use auth::Pattern;
use auth::policy::glob_match;

/// Which tags a rule covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagMatch {
    /// A glob with `*` and `?`, e.g. `v*`.
    Glob(String),
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

/// Whether `tag` is a semantic version (`v` prefix allowed; build metadata cannot appear in a
/// tag, since `+` is not a tag character).
pub fn is_semver(tag: &str) -> bool {
    let t = tag.strip_prefix('v').unwrap_or(tag);
    let (core, pre) = match t.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (t, None),
    };
    let numeric = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| numeric(p))
        && pre.is_none_or(|p| {
            !p.is_empty()
                && p.split('.').all(|id| {
                    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        })
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
                    TagMatch::Glob(g) => glob_match(g, tag),
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
        ] {
            assert!(!is_semver(bad), "{bad}");
        }
    }

    #[test]
    fn rules() {
        let r = TagRules::new(vec![
            ImmutableRule {
                repos: Pattern::new("prod/*").unwrap(),
                tags: TagMatch::Glob("v*".into()),
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
