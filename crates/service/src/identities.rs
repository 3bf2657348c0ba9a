//! Typed persistence of identities, rules and audit events over the metadata store's opaque
//! records. Shared by the server and by the CLI working on a data directory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use auth::{Group, Robot, Rule, User};
use serde::{Serialize, de::DeserializeOwned};
use store::{MetaStore, Page, StoreError};

const USERS: &str = "auth.user";
const ROBOTS: &str = "auth.robot";
const GROUPS: &str = "auth.group";
const RULES: &str = "auth.rule";
const AUDIT: &str = "audit";
/// Access-control state of the data directory (see [`Identities::seal`]).
const STATE: &str = "auth.state";
const SEALED: &str = "enforced";

/// Why an identity change was refused.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The change is malformed: an invalid or reserved name, a group member that does not exist.
    #[error("{0}")]
    Invalid(String),
    /// The change clashes with what exists: a name taken (without regard to case), or the last
    /// administrator going away.
    #[error("{0}")]
    Conflict(String),
}

/// One audited event (the management API's view of it, defined in `api`).
pub use api::audit::AuditEvent;

/// Filter for reading the audit log (the management API's query, defined in `api`).
pub use api::audit::AuditQuery;

/// Identities, rules and audit events on top of a [`MetaStore`].
#[derive(Clone)]
pub struct Identities {
    meta: Arc<dyn MetaStore>,
    seq: Arc<AtomicU64>,
    /// Serializes identity changes of this process, so two concurrent deletions cannot each see
    /// the other administrator and together remove both (the CLI on a data directory is the
    /// only other writer, and the metadata database admits one process at a time).
    changes: Arc<tokio::sync::Mutex<()>>,
}

fn active_admin(u: &User) -> bool {
    u.admin && !u.disabled
}

fn decode<T: DeserializeOwned>(v: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Db(format!("corrupt identity record: {e}")))
}

/// Refuses a change that takes `name` out of the active administrators when no other remains:
/// the management API would be out of reach for everyone.
fn keeps_an_admin(users: &[User], name: &str, what: &str) -> Result<(), IdentityError> {
    if users.iter().any(|u| u.name != name && active_admin(u)) {
        return Ok(());
    }
    Err(IdentityError::Conflict(format!(
        "{name} is the last active administrator: {what} would leave nobody able to manage \
         the registry; add another administrator first (wharf user add NAME --admin)"
    )))
}

impl Identities {
    /// Wraps a metadata store.
    pub fn new(meta: Arc<dyn MetaStore>) -> Self {
        Identities {
            meta,
            seq: Arc::new(AtomicU64::new(0)),
            changes: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    async fn all<T: DeserializeOwned>(&self, ns: &str) -> Result<Vec<T>, StoreError> {
        self.meta
            .record_list(ns, Page::default(), false)
            .await?
            .iter()
            .map(|(_, v)| decode(v))
            .collect()
    }

    async fn one<T: DeserializeOwned>(&self, ns: &str, key: &str) -> Result<Option<T>, StoreError> {
        self.meta
            .record_get(ns, key)
            .await?
            .map(|v| decode(&v))
            .transpose()
    }

    async fn put<T: Serialize>(&self, ns: &str, key: &str, v: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(v).expect("identity records serialize");
        self.meta.record_put(ns, key, bytes).await
    }

    /// All users.
    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        self.all(USERS).await
    }
    /// One user.
    pub async fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.one(USERS, name).await
    }
    /// Creates or replaces a user. A new user's name must be valid, not reserved
    /// ([`auth::identity::RESERVED_USER_NAMES`]) and unlike every other user's without regard to
    /// case (`Alice` beside `alice` would be two accounts that read as one in every record); a
    /// replacement may not leave the registry without an active administrator. Seals access
    /// control (see [`Identities::seal`]).
    pub async fn put_user(&self, u: &User) -> Result<(), IdentityError> {
        let _serial = self.changes.lock().await;
        let users = self.users().await?;
        match users.iter().find(|x| x.name == u.name) {
            None => {
                auth::identity::validate_user_name(&u.name).map_err(IdentityError::Invalid)?;
                if let Some(other) = users.iter().find(|x| x.name.eq_ignore_ascii_case(&u.name)) {
                    return Err(IdentityError::Conflict(format!(
                        "user {} already exists (names are unique without regard to case)",
                        other.name
                    )));
                }
            }
            Some(old) if active_admin(old) && !active_admin(u) => {
                keeps_an_admin(&users, &u.name, "disabling it or taking its rights")?;
            }
            Some(_) => {}
        }
        self.seal().await?;
        Ok(self.put(USERS, &u.name, u).await?)
    }
    /// Deletes a user; refused for the last active administrator. Returns whether it existed.
    pub async fn delete_user(&self, name: &str) -> Result<bool, IdentityError> {
        let _serial = self.changes.lock().await;
        let users = self.users().await?;
        match users.iter().find(|x| x.name == name) {
            None => return Ok(false),
            Some(u) if active_admin(u) => keeps_an_admin(&users, name, "deleting it")?,
            Some(_) => {}
        }
        Ok(self.meta.record_delete(USERS, name).await?)
    }

    /// All robots.
    pub async fn robots(&self) -> Result<Vec<Robot>, StoreError> {
        self.all(ROBOTS).await
    }
    /// One robot.
    pub async fn robot(&self, name: &str) -> Result<Option<Robot>, StoreError> {
        self.one(ROBOTS, name).await
    }
    /// Creates or replaces a robot. A new robot's name must be valid and unlike every other
    /// robot's without regard to case. Seals access control (see [`Identities::seal`]).
    pub async fn put_robot(&self, r: &Robot) -> Result<(), IdentityError> {
        let _serial = self.changes.lock().await;
        if self.robot(&r.name).await?.is_none() {
            auth::identity::validate_name(&r.name).map_err(IdentityError::Invalid)?;
            if let Some(other) = self
                .robots()
                .await?
                .iter()
                .find(|x| x.name.eq_ignore_ascii_case(&r.name))
            {
                return Err(IdentityError::Conflict(format!(
                    "robot {} already exists (names are unique without regard to case)",
                    other.name
                )));
            }
        }
        self.seal().await?;
        Ok(self.put(ROBOTS, &r.name, r).await?)
    }
    /// Deletes a robot record entirely.
    pub async fn delete_robot(&self, name: &str) -> Result<bool, StoreError> {
        self.meta.record_delete(ROBOTS, name).await
    }

    /// All groups.
    pub async fn groups(&self) -> Result<Vec<Group>, StoreError> {
        self.all(GROUPS).await
    }
    /// Creates or replaces a group. Its name must be valid and unlike every other group's
    /// without regard to case, and every member must exist (a user by login name, a robot as
    /// `robot$NAME`): a misspelt member would grant nothing today, and everything to whoever is
    /// later created under that name.
    pub async fn put_group(&self, g: &Group) -> Result<(), IdentityError> {
        let _serial = self.changes.lock().await;
        auth::identity::validate_name(&g.name).map_err(IdentityError::Invalid)?;
        if let Some(other) = self
            .groups()
            .await?
            .iter()
            .find(|x| x.name != g.name && x.name.eq_ignore_ascii_case(&g.name))
        {
            return Err(IdentityError::Conflict(format!(
                "group {} already exists (names are unique without regard to case)",
                other.name
            )));
        }
        let mut unknown = Vec::new();
        for m in &g.members {
            let exists = match m.strip_prefix(auth::identity::ROBOT_PREFIX) {
                Some(r) => self.robot(r).await?.is_some(),
                None => self.user(m).await?.is_some(),
            };
            if !exists {
                unknown.push(m.as_str());
            }
        }
        if !unknown.is_empty() {
            return Err(IdentityError::Invalid(format!(
                "no such user or robot: {} (robots are members as {}NAME)",
                unknown.join(", "),
                auth::identity::ROBOT_PREFIX
            )));
        }
        Ok(self.put(GROUPS, &g.name, g).await?)
    }
    /// Deletes a group.
    pub async fn delete_group(&self, name: &str) -> Result<bool, StoreError> {
        self.meta.record_delete(GROUPS, name).await
    }

    /// All rules.
    pub async fn rules(&self) -> Result<Vec<Rule>, StoreError> {
        self.all(RULES).await
    }
    /// Adds or replaces a rule.
    pub async fn put_rule(&self, r: &Rule) -> Result<(), StoreError> {
        self.put(RULES, &r.id, r).await
    }
    /// Deletes a rule.
    pub async fn delete_rule(&self, id: &str) -> Result<bool, StoreError> {
        self.meta.record_delete(RULES, id).await
    }

    /// Records that access control has been on for this data: from then on `auto` mode keeps
    /// enforcing it even when no identity is left, so deleting the last user (or an htpasswd
    /// file that comes up empty) locks the registry instead of opening it. Written before the
    /// first user or robot, and by the server whenever it enforces access control.
    pub async fn seal(&self) -> Result<(), StoreError> {
        if self.sealed().await? {
            return Ok(());
        }
        tracing::info!("access control sealed: it stays on in auto mode even with no identities");
        self.meta.record_put(STATE, SEALED, b"true".to_vec()).await
    }

    /// Whether access control has been on for this data (see [`Identities::seal`]).
    pub async fn sealed(&self) -> Result<bool, StoreError> {
        Ok(self.meta.record_get(STATE, SEALED).await?.is_some())
    }

    /// Whether any user or robot exists (access control then switches on in `auto` mode).
    pub async fn any_identity(&self) -> Result<bool, StoreError> {
        let one = Page {
            n: Some(1),
            last: None,
        };
        Ok(!self
            .meta
            .record_list(USERS, one.clone(), false)
            .await?
            .is_empty()
            || !self.meta.record_list(ROBOTS, one, false).await?.is_empty())
    }

    /// Appends an audit event (also logged as a structured line with target `audit`).
    pub async fn audit(&self, e: &AuditEvent) -> Result<(), StoreError> {
        tracing::info!(
            target: "audit",
            action = %e.action,
            actor = %e.actor,
            repo = e.repo.as_deref().unwrap_or(""),
            target_ref = e.target.as_deref().unwrap_or(""),
            source = e.source.as_deref().unwrap_or(""),
            detail = %e.detail,
            "audit"
        );
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) % 1_000_000;
        // Time-ordered keys: listing newest-first is a reverse range scan.
        let key = format!("{nanos:024}{seq:06}");
        self.put(AUDIT, &key, e).await
    }

    /// Reads audit events, newest first.
    pub async fn audit_query(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
        let mut out = Vec::new();
        let mut last: Option<String> = None;
        // Scan newest-first in pages until enough events pass the filter or history ends.
        loop {
            let page = Page {
                n: Some(1000),
                last: last.clone(),
            };
            let batch = self.meta.record_list(AUDIT, page, true).await?;
            let Some((k, _)) = batch.last() else { break };
            last = Some(k.clone());
            for (_, v) in &batch {
                let e: AuditEvent = decode(v)?;
                if q.since.is_some_and(|s| e.time < s) {
                    return Ok(out);
                }
                let keep = q.actor.as_ref().is_none_or(|a| *a == e.actor)
                    && q.repo.as_ref().is_none_or(|r| Some(r) == e.repo.as_ref())
                    && q.action.as_ref().is_none_or(|a| *a == e.action);
                if keep {
                    out.push(e);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if batch.len() < 1000 {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, admin: bool) -> User {
        User {
            name: name.into(),
            password_hash: "x".into(),
            admin,
            disabled: false,
            created: 0,
            source: None,
        }
    }

    fn robot(name: &str) -> Robot {
        Robot {
            name: name.into(),
            secret_hash: "x".into(),
            repos: vec!["*".into()],
            actions: auth::Actions::NONE,
            expires_at: None,
            revoked: false,
            created: 0,
            description: String::new(),
        }
    }

    fn ids(dir: &tempfile::TempDir) -> Identities {
        let meta = store::RedbMetaStore::open(&dir.path().join("meta.redb")).unwrap();
        Identities::new(Arc::new(meta))
    }

    #[tokio::test]
    async fn the_last_administrator_stays() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ids(&dir);
        ids.put_user(&user("root", true)).await.unwrap();
        ids.put_user(&user("dev", false)).await.unwrap();
        let e = ids.delete_user("root").await.unwrap_err();
        assert!(
            matches!(&e, IdentityError::Conflict(m) if m.contains("last active administrator")),
            "{e}"
        );
        let mut disabled = user("root", true);
        disabled.disabled = true;
        assert!(matches!(
            ids.put_user(&disabled).await,
            Err(IdentityError::Conflict(_))
        ));
        assert!(matches!(
            ids.put_user(&user("root", false)).await,
            Err(IdentityError::Conflict(_))
        ));
        assert!(ids.user("root").await.unwrap().unwrap().admin);
        // Non-administrators go freely; with a second administrator, so does the first.
        assert!(ids.delete_user("dev").await.unwrap());
        assert!(!ids.delete_user("dev").await.unwrap());
        ids.put_user(&user("root2", true)).await.unwrap();
        ids.put_user(&disabled).await.unwrap();
        // A disabled administrator does not count.
        assert!(matches!(
            ids.delete_user("root2").await,
            Err(IdentityError::Conflict(_))
        ));
        assert!(ids.delete_user("root").await.unwrap());
    }

    #[tokio::test]
    async fn names_are_checked_for_new_identities() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ids(&dir);
        ids.put_user(&user("alice", false)).await.unwrap();
        for name in ["anonymous", "Anonymous", "retention"] {
            assert!(
                matches!(
                    ids.put_user(&user(name, false)).await,
                    Err(IdentityError::Invalid(_))
                ),
                "{name}"
            );
        }
        let e = ids.put_user(&user("Alice", true)).await.unwrap_err();
        assert!(
            matches!(&e, IdentityError::Conflict(m) if m.contains("alice")),
            "{e}"
        );
        // Replacing the existing record is no clash.
        ids.put_user(&user("alice", true)).await.unwrap();
        ids.put_robot(&robot("ci")).await.unwrap();
        assert!(matches!(
            ids.put_robot(&robot("CI")).await,
            Err(IdentityError::Conflict(_))
        ));
        ids.put_robot(&robot("ci")).await.unwrap();
        assert_eq!(ids.users().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn group_members_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ids(&dir);
        ids.put_user(&user("alice", true)).await.unwrap();
        ids.put_robot(&robot("ci")).await.unwrap();
        let g = |name: &str, members: &[&str]| Group {
            name: name.into(),
            members: members.iter().map(|m| (*m).to_owned()).collect(),
        };
        let e = ids
            .put_group(&g("team", &["alice", "ghost", "robot$nobody", "ci"]))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, IdentityError::Invalid(m) if m.contains("ghost, robot$nobody, ci")),
            "{e}"
        );
        assert!(ids.groups().await.unwrap().is_empty());
        ids.put_group(&g("team", &["alice", "robot$ci"]))
            .await
            .unwrap();
        ids.put_group(&g("team", &["alice"])).await.unwrap();
        assert!(matches!(
            ids.put_group(&g("Team", &[])).await,
            Err(IdentityError::Conflict(_))
        ));
    }

    #[tokio::test]
    async fn the_first_identity_seals_access_control() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ids(&dir);
        assert!(!ids.sealed().await.unwrap());
        // A refused change seals nothing.
        assert!(ids.put_user(&user("anonymous", false)).await.is_err());
        assert!(!ids.sealed().await.unwrap());
        ids.put_user(&user("dev", false)).await.unwrap();
        assert!(ids.delete_user("dev").await.unwrap());
        assert!(!ids.any_identity().await.unwrap());
        assert!(
            ids.sealed().await.unwrap(),
            "the seal outlives the identities"
        );
    }
}
