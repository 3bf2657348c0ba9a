//! Typed persistence of identities, rules and audit events over the metadata store's opaque
//! records. Shared by the server and by the CLI working on a data directory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use auth::{Group, Robot, Rule, User};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use store::{MetaStore, Page, StoreError};

const USERS: &str = "auth.user";
const ROBOTS: &str = "auth.robot";
const GROUPS: &str = "auth.group";
const RULES: &str = "auth.rule";
const AUDIT: &str = "audit";

/// One audited event: who did what to which repository, from where, when.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditEvent {
    /// Unix seconds.
    pub time: u64,
    /// `push`, `delete`, `mount`, `auth.failed`, `identity.change`, ...
    pub action: String,
    /// Login name, or `anonymous`.
    pub actor: String,
    /// Repository, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Digest or reference, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Source address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Filter for reading the audit log.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this repository.
    pub repo: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only events at or after this time.
    pub since: Option<u64>,
    /// At most this many (newest first).
    pub limit: usize,
}

/// Identities, rules and audit events on top of a [`MetaStore`].
#[derive(Clone)]
pub struct Identities {
    meta: Arc<dyn MetaStore>,
    seq: Arc<AtomicU64>,
}

fn decode<T: DeserializeOwned>(v: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Db(format!("corrupt identity record: {e}")))
}

impl Identities {
    /// Wraps a metadata store.
    pub fn new(meta: Arc<dyn MetaStore>) -> Self {
        Identities {
            meta,
            seq: Arc::new(AtomicU64::new(0)),
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
    /// Creates or replaces a user.
    pub async fn put_user(&self, u: &User) -> Result<(), StoreError> {
        self.put(USERS, &u.name, u).await
    }
    /// Deletes a user.
    pub async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        self.meta.record_delete(USERS, name).await
    }

    /// All robots.
    pub async fn robots(&self) -> Result<Vec<Robot>, StoreError> {
        self.all(ROBOTS).await
    }
    /// One robot.
    pub async fn robot(&self, name: &str) -> Result<Option<Robot>, StoreError> {
        self.one(ROBOTS, name).await
    }
    /// Creates or replaces a robot.
    pub async fn put_robot(&self, r: &Robot) -> Result<(), StoreError> {
        self.put(ROBOTS, &r.name, r).await
    }
    /// Deletes a robot record entirely.
    pub async fn delete_robot(&self, name: &str) -> Result<bool, StoreError> {
        self.meta.record_delete(ROBOTS, name).await
    }

    /// All groups.
    pub async fn groups(&self) -> Result<Vec<Group>, StoreError> {
        self.all(GROUPS).await
    }
    /// Creates or replaces a group.
    pub async fn put_group(&self, g: &Group) -> Result<(), StoreError> {
        self.put(GROUPS, &g.name, g).await
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
        let limit = q.limit.clamp(1, 10_000);
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
