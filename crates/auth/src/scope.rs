//! Actions and the Docker token protocol's scopes (`repository:NAME:pull,push`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// One thing a principal may do to a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Read manifests, blobs, tags and referrers.
    Pull,
    /// Upload blobs and manifests, move tags.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
    /// Everything, and the repository's settings.
    Admin,
}

impl Action {
    const ALL: [Action; 4] = [Action::Pull, Action::Push, Action::Delete, Action::Admin];

    fn bit(self) -> u8 {
        match self {
            Action::Pull => 1,
            Action::Push => 2,
            Action::Delete => 4,
            Action::Admin => 8,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Admin => "admin",
        }
    }

    /// Parses a wire name; `*` is not an action (see [`Actions::parse_list`]).
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of actions. `Admin` implies all the others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Actions(u8);

impl Actions {
    /// No action.
    pub const NONE: Actions = Actions(0);

    /// A set of one action.
    pub fn of(a: Action) -> Self {
        Actions(a.bit())
    }

    /// Adds an action.
    pub fn with(self, a: Action) -> Self {
        Actions(self.0 | a.bit())
    }

    /// Union.
    pub fn union(self, other: Actions) -> Self {
        Actions(self.0 | other.0)
    }

    /// Intersection, treating `Admin` as every action.
    pub fn intersect(self, other: Actions) -> Self {
        Actions(self.expand().0 & other.expand().0)
    }

    fn expand(self) -> Self {
        if self.0 & Action::Admin.bit() != 0 {
            Actions(0b1111)
        } else {
            self
        }
    }

    /// Whether `a` is in the set (directly or through `Admin`).
    pub fn contains(self, a: Action) -> bool {
        self.expand().0 & a.bit() != 0
    }

    /// Whether every action of `other` is in the set.
    pub fn covers(self, other: Actions) -> bool {
        let mine = self.expand().0;
        other.0 & !mine == 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The actions, in a fixed order.
    pub fn iter(self) -> impl Iterator<Item = Action> {
        let e = self.expand();
        Action::ALL.into_iter().filter(move |a| e.0 & a.bit() != 0)
    }

    /// What of `self` is missing from `have`.
    pub fn missing_from(self, have: Actions) -> Actions {
        Actions(self.0 & !have.expand().0)
    }

    /// Parses `pull,push`; `*` means every action. Unknown names are errors.
    pub fn parse_list(s: &str) -> Result<Actions, String> {
        let mut out = Actions::NONE;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "*" {
                out = out.with(Action::Admin);
            } else {
                out = out
                    .with(Action::parse(part).ok_or_else(|| format!("unknown action {part:?}"))?);
            }
        }
        Ok(out)
    }
}

impl FromIterator<Action> for Actions {
    fn from_iter<I: IntoIterator<Item = Action>>(iter: I) -> Self {
        iter.into_iter().fold(Actions::NONE, Actions::with)
    }
}

impl fmt::Display for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Action::ALL
            .into_iter()
            .filter(|a| self.0 & a.bit() != 0)
            .map(Action::as_str)
            .collect();
        f.write_str(&names.join(","))
    }
}

impl Serialize for Actions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(Action::ALL.into_iter().filter(|a| self.0 & a.bit() != 0))
    }
}

impl<'de> Deserialize<'de> for Actions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<Action>::deserialize(d)?.into_iter().collect())
    }
}

/// A requested or granted scope of the token protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// Resource type: `repository` or `registry`.
    pub kind: String,
    /// Resource name: a repository, or `catalog`.
    pub name: String,
    /// Actions.
    pub actions: Actions,
}

impl Scope {
    /// Parses `repository:team/app:pull,push` (the name may contain `:` only for a registry
    /// host with a port, so the actions are what follows the last colon).
    pub fn parse(s: &str) -> Option<Scope> {
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        // Unknown action names in a request are dropped, not fatal: clients ask for what they
        // might need, and the token grants what is allowed.
        let actions = actions
            .split(',')
            .filter_map(|a| match a.trim() {
                "*" => Some(Action::Admin),
                other => Action::parse(other),
            })
            .collect();
        Some(Scope {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions,
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.kind, self.name, self.actions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions() {
        let a = Actions::parse_list("pull,push").unwrap();
        assert!(
            a.contains(Action::Pull) && a.contains(Action::Push) && !a.contains(Action::Delete)
        );
        assert_eq!(a.to_string(), "pull,push");
        let admin = Actions::parse_list("*").unwrap();
        assert!(admin.covers(a) && admin.contains(Action::Delete));
        assert!(Actions::parse_list("pull,fly").is_err());
        assert_eq!(
            Actions::parse_list("pull,push,delete")
                .unwrap()
                .missing_from(a),
            Actions::of(Action::Delete)
        );
        assert_eq!(
            a.intersect(Actions::of(Action::Pull)),
            Actions::of(Action::Pull)
        );
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"["pull","push"]"#);
        assert_eq!(serde_json::from_str::<Actions>(&json).unwrap(), a);
    }

    #[test]
    fn scopes() {
        let s = Scope::parse("repository:team/app:pull,push").unwrap();
        assert_eq!(s.name, "team/app");
        assert_eq!(s.actions, Actions::parse_list("pull,push").unwrap());
        let c = Scope::parse("registry:catalog:*").unwrap();
        assert_eq!(c.kind, "registry");
        assert!(c.actions.contains(Action::Pull));
        assert!(Scope::parse("nonsense").is_none());
        assert!(Scope::parse("repository::pull").is_none());
        assert_eq!(
            Scope::parse("repository:a:bogus").unwrap().actions,
            Actions::NONE
        );
    }
}
