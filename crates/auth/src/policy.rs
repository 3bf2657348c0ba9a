//! Permission evaluation: from a principal and a repository to the actions allowed there.

use std::collections::HashMap;

use crate::identity::{Group, Robot, Rule, Subject};
use crate::scope::{Action, Actions};

/// A repository pattern: an [`oci::Glob`] (`*` matches any run of characters, slashes included,
/// `?` one character; anything else matches itself) restricted to the characters of repository
/// names. `team-a/*` covers every repository under `team-a/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern(oci::Glob);

impl Pattern {
    /// Longest pattern accepted.
    pub const MAX_LEN: usize = 256;

    /// Validates a pattern.
    pub fn new(p: &str) -> Result<Self, String> {
        if p.is_empty() || p.len() > Self::MAX_LEN {
            return Err("repository pattern must be 1 to 256 characters".into());
        }
        if !p
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/*?".contains(&b))
        {
            return Err(format!(
                "invalid repository pattern {p:?}: use [a-z0-9._-/] with * and ? wildcards"
            ));
        }
        Ok(Pattern(oci::Glob::new(p)))
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        self.0.matches(name)
    }
}

/// What kind of caller a principal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    /// Nobody signed in.
    Anonymous,
    /// A user.
    User,
    /// A robot account.
    Robot,
}

/// An authenticated (or anonymous) caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Kind.
    pub kind: PrincipalKind,
    /// Login name (`robot$name` for robots, empty for anonymous).
    pub name: String,
    /// Administrator (users only).
    pub admin: bool,
}

impl Principal {
    /// The anonymous caller.
    pub fn anonymous() -> Self {
        Principal {
            kind: PrincipalKind::Anonymous,
            name: String::new(),
            admin: false,
        }
    }

    /// Name for logs and audit records.
    pub fn display(&self) -> &str {
        if self.kind == PrincipalKind::Anonymous {
            "anonymous"
        } else {
            &self.name
        }
    }
}

/// Everything needed to decide: rules, group membership, robots' own grants, public patterns.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    rules: Vec<(Subject, Pattern, Actions)>,
    groups_of: HashMap<String, Vec<String>>,
    robots: HashMap<String, (Vec<Pattern>, Actions)>,
    anonymous_pull: Vec<Pattern>,
}

impl Policy {
    /// Builds a policy. Invalid stored patterns are skipped (they can grant nothing).
    pub fn new(
        rules: &[Rule],
        groups: &[Group],
        robots: &[Robot],
        anonymous_pull: &[String],
    ) -> Self {
        let mut groups_of: HashMap<String, Vec<String>> = HashMap::new();
        for g in groups {
            for m in &g.members {
                groups_of.entry(m.clone()).or_default().push(g.name.clone());
            }
        }
        Policy {
            rules: rules
                .iter()
                .filter_map(|r| Some((r.subject.clone(), Pattern::new(&r.repos).ok()?, r.actions)))
                .collect(),
            groups_of,
            robots: robots
                .iter()
                .map(|r| {
                    let pats = r
                        .repos
                        .iter()
                        .filter_map(|p| Pattern::new(p).ok())
                        .collect();
                    (
                        format!("{}{}", crate::identity::ROBOT_PREFIX, r.name),
                        (pats, r.actions),
                    )
                })
                .collect(),
            anonymous_pull: anonymous_pull
                .iter()
                .filter_map(|p| Pattern::new(p).ok())
                .collect(),
        }
    }

    /// The actions `p` may take on repository `repo`.
    pub fn allowed(&self, p: &Principal, repo: &str) -> Actions {
        if p.admin {
            return Actions::of(Action::Admin);
        }
        let mut out = if self.anonymous_pull.iter().any(|pat| pat.matches(repo)) {
            Actions::of(Action::Pull)
        } else {
            Actions::NONE
        };
        let groups = self
            .groups_of
            .get(&p.name)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let robot_name = p.name.strip_prefix(crate::identity::ROBOT_PREFIX);
        for (subject, pat, actions) in &self.rules {
            let applies = match subject {
                Subject::Anonymous => true,
                Subject::User(u) => p.kind == PrincipalKind::User && *u == p.name,
                Subject::Robot(r) => {
                    p.kind == PrincipalKind::Robot && Some(r.as_str()) == robot_name
                }
                Subject::Group(g) => p.kind != PrincipalKind::Anonymous && groups.contains(g),
            };
            if applies && pat.matches(repo) {
                out = out.union(*actions);
            }
        }
        if p.kind == PrincipalKind::Robot
            && let Some((pats, actions)) = self.robots.get(&p.name)
            && pats.iter().any(|pat| pat.matches(repo))
        {
            out = out.union(*actions);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn user(name: &str) -> Principal {
        Principal {
            kind: PrincipalKind::User,
            name: name.into(),
            admin: false,
        }
    }

    #[test]
    fn patterns() {
        let p = Pattern::new("team-a/*").unwrap();
        assert!(p.matches("team-a/app"));
        assert!(p.matches("team-a/x/y"));
        assert!(!p.matches("team-a"));
        assert!(!p.matches("team-b/app"));
        assert!(Pattern::new("*").unwrap().matches("anything/at/all"));
        assert!(Pattern::new("a?c").unwrap().matches("abc"));
        assert!(Pattern::new("*/prod/*").unwrap().matches("x/prod/y"));
        assert!(!Pattern::new("*/prod/*").unwrap().matches("x/dev/y"));
        assert!(Pattern::new("Team").is_err());
        assert!(Pattern::new("").is_err());
    }

    #[test]
    fn evaluation() {
        let rules = vec![
            Rule {
                id: "1".into(),
                subject: Subject::Group("devs".into()),
                repos: "team-a/*".into(),
                actions: Actions::parse_list("pull,push").unwrap(),
            },
            Rule {
                id: "2".into(),
                subject: Subject::User("bob".into()),
                repos: "team-a/app".into(),
                actions: Actions::parse_list("delete").unwrap(),
            },
        ];
        let groups = vec![Group {
            name: "devs".into(),
            members: vec!["alice".into(), "bob".into()],
        }];
        let robots = vec![Robot {
            name: "ci".into(),
            secret_hash: String::new(),
            repos: vec!["team-b/*".into()],
            actions: Actions::of(Action::Push),
            expires_at: None,
            revoked: false,
            created: 0,
            description: String::new(),
        }];
        let pol = Policy::new(&rules, &groups, &robots, &["public/*".into()]);
        let pp = Actions::parse_list("pull,push").unwrap();
        assert_eq!(pol.allowed(&user("alice"), "team-a/app"), pp);
        assert_eq!(
            pol.allowed(&user("bob"), "team-a/app"),
            pp.with(Action::Delete)
        );
        assert_eq!(pol.allowed(&user("carol"), "team-a/app"), Actions::NONE);
        assert_eq!(
            pol.allowed(&Principal::anonymous(), "public/x"),
            Actions::of(Action::Pull)
        );
        assert_eq!(
            pol.allowed(&Principal::anonymous(), "team-a/app"),
            Actions::NONE
        );
        let robot = Principal {
            kind: PrincipalKind::Robot,
            name: "robot$ci".into(),
            admin: false,
        };
        assert_eq!(pol.allowed(&robot, "team-b/x"), Actions::of(Action::Push));
        assert_eq!(pol.allowed(&robot, "team-a/app"), Actions::NONE);
        // A user called like the robot gets nothing of the robot's.
        assert_eq!(pol.allowed(&user("robot$ci"), "team-b/x"), Actions::NONE);
        let admin = Principal {
            admin: true,
            ..user("root")
        };
        assert!(pol.allowed(&admin, "any/thing").contains(Action::Delete));
    }

    fn naive(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => naive(&p[1..], n) || (!n.is_empty() && naive(p, &n[1..])),
            (Some(b'?'), Some(_)) => naive(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => naive(&p[1..], &n[1..]),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn glob_matches_reference(p in "[ab*?/]{1,8}", n in "[ab/]{0,8}") {
            let pat = Pattern::new(&p).unwrap();
            prop_assert_eq!(pat.matches(&n), naive(p.as_bytes(), n.as_bytes()));
        }
    }
}
