//! The identities Wharf knows and the rules that grant them access, as stored records.

use serde::{Deserialize, Serialize};

use crate::scope::Actions;

/// Login names of robot accounts start with this prefix (as Harbor's do), so a robot can never
/// be mistaken for a user of the same name.
pub const ROBOT_PREFIX: &str = "robot$";

/// A person with a password.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Argon2id PHC string (or a bcrypt hash imported from htpasswd).
    pub password_hash: String,
    /// Administrators may do everything, including managing identities.
    #[serde(default)]
    pub admin: bool,
    /// A disabled user cannot log in, and its tokens stop working.
    #[serde(default)]
    pub disabled: bool,
    /// Unix seconds.
    pub created: u64,
    /// Where the user comes from: absent for local users, `htpasswd` for users imported from
    /// the configured htpasswd file (removed again when they leave it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A machine account for CI or a cluster: its own repositories and actions, a secret shown once.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Robot {
    /// Name without the `robot$` prefix.
    pub name: String,
    /// SHA-256 (hex) of the secret; the secret itself is never stored.
    pub secret_hash: String,
    /// Repository patterns the robot may act on.
    pub repos: Vec<String>,
    /// What it may do there.
    pub actions: Actions,
    /// Unix seconds after which the robot is refused.
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// Revoked robots are refused, and so are their tokens.
    #[serde(default)]
    pub revoked: bool,
    /// Unix seconds.
    pub created: u64,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

impl Robot {
    /// Whether the robot may log in at `now`.
    pub fn active(&self, now: u64) -> bool {
        !self.revoked && self.expires_at.is_none_or(|e| now < e)
    }
}

/// A team: permissions are given to groups, not to people one by one.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// Login names of members (users, or `robot$name`).
    pub members: Vec<String>,
}

/// Who a rule applies to.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(tag = "type", content = "name", rename_all = "lowercase")]
pub enum Subject {
    /// A user by login name.
    User(String),
    /// A robot by name (without prefix).
    Robot(String),
    /// Every member of a group.
    Group(String),
    /// Everyone, signed in or not.
    Anonymous,
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::User(n) => write!(f, "user:{n}"),
            Subject::Robot(n) => write!(f, "robot:{n}"),
            Subject::Group(n) => write!(f, "group:{n}"),
            Subject::Anonymous => f.write_str("anonymous"),
        }
    }
}

impl Subject {
    /// Parses `user:NAME`, `robot:NAME`, `group:NAME` or `anonymous`.
    pub fn parse(s: &str) -> Option<Subject> {
        if s == "anonymous" {
            return Some(Subject::Anonymous);
        }
        let (kind, name) = s.split_once(':')?;
        validate_name(name).ok()?;
        match kind {
            "user" => Some(Subject::User(name.to_owned())),
            "robot" => Some(Subject::Robot(name.to_owned())),
            "group" => Some(Subject::Group(name.to_owned())),
            _ => None,
        }
    }
}

/// A grant: `subject` may do `actions` on repositories matching `repos`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rule {
    /// Stable identifier (for deletion).
    pub id: String,
    /// Who.
    pub subject: Subject,
    /// Repository pattern (see [`crate::Pattern`]).
    pub repos: String,
    /// What.
    pub actions: Actions,
}

/// Validates a user, robot or group name: `[a-z0-9][a-z0-9._-]{0,63}`, case-insensitive for
/// letters (email-like user names with `@` are allowed too).
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok_first = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    let ok_rest = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if name.len() > 64 || !ok_first || !ok_rest {
        return Err(format!(
            "invalid name {name:?}: 1 to 64 characters of [A-Za-z0-9._@-], starting with a letter or digit"
        ));
    }
    Ok(())
}

/// User names the registry already uses for something else: `anonymous` is how unauthenticated
/// callers appear in rules, audit events and tag history, `retention` and `pull-through-cache`
/// are the actors of retention's deletions and of cached manifests. A user of such a name would
/// be indistinguishable from them in every record.
pub const RESERVED_USER_NAMES: &[&str] = &["anonymous", "retention", "pull-through-cache"];

/// Shortest password a user may set.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password a user may set (argon2 hashes it whole; a bound keeps requests small).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Validates a password a user is given or sets, by the one rule every front door applies (the
/// management API, `wharf user add|passwd` on a data directory and through `--server`).
pub fn validate_password(password: &str) -> Result<(), String> {
    if (MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&password.len()) {
        Ok(())
    } else {
        Err(format!(
            "password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"
        ))
    }
}

/// Validates a new user's login name: the grammar of [`validate_name`], and none of
/// [`RESERVED_USER_NAMES`] (compared without regard to case).
pub fn validate_user_name(name: &str) -> Result<(), String> {
    validate_name(name)?;
    if RESERVED_USER_NAMES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
    {
        return Err(format!(
            "user name {name:?} is reserved: the registry records anonymous callers, retention \
             and the pull-through cache under the names {}",
            RESERVED_USER_NAMES.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_user_names() {
        assert!(validate_user_name("alice").is_ok());
        assert!(validate_user_name("anonymous").is_err());
        assert!(validate_user_name("Anonymous").is_err());
        assert!(validate_user_name("RETENTION").is_err());
        assert!(validate_user_name("pull-through-cache").is_err());
        assert!(validate_user_name("anonymous2").is_ok());
        assert!(
            validate_user_name("robot$x").is_err(),
            "the robot prefix is not a user name"
        );
        // Robots and groups may use these names: robots log in as robot$NAME, and group names
        // never appear as actors.
        assert!(validate_name("anonymous").is_ok());
    }

    #[test]
    fn subjects() {
        assert_eq!(
            Subject::parse("user:alice"),
            Some(Subject::User("alice".into()))
        );
        assert_eq!(
            Subject::parse("group:team-a"),
            Some(Subject::Group("team-a".into()))
        );
        assert_eq!(Subject::parse("anonymous"), Some(Subject::Anonymous));
        assert_eq!(Subject::parse("user:"), None);
        assert_eq!(Subject::parse("pet:rex"), None);
        let j = serde_json::to_string(&Subject::Robot("ci".into())).unwrap();
        assert_eq!(j, r#"{"type":"robot","name":"ci"}"#);
    }

    #[test]
    fn robot_activity() {
        let mut r = Robot {
            name: "ci".into(),
            secret_hash: String::new(),
            repos: vec![],
            actions: Actions::NONE,
            expires_at: Some(100),
            revoked: false,
            created: 0,
            description: String::new(),
        };
        assert!(r.active(99));
        assert!(!r.active(100));
        r.expires_at = None;
        r.revoked = true;
        assert!(!r.active(0));
    }
}
