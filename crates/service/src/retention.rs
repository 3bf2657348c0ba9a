//! Retention policies carried out: gathers a repository's tags, manifests, push and pull times
//! from storage, asks the pure planner (`versions::retention`) what goes, and deletes it with
//! guarded operations (a tag only if it still points where planned, a manifest only if nothing
//! tags or lists it by then), recording every deletion in tag history (actor `retention`) and
//! the audit log. Also the `versions` listing. Blobs are left to garbage collection.
//!
//! Management API: `GET /api/v1/versions?repo=`, `POST /api/v1/retention/plan`,
//! `POST /api/v1/retention/apply` (see docs/retention.md).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use auth::Pattern;
use oci::{Digest, Reference};
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use store::{GuardedDelete, MetaStore, Page, StoreError};
pub use versions;
pub use versions::Policy;

use crate::Service;
use crate::identities::{AuditEvent, Identities};
use crate::pulls::PullTracker;
use crate::tagrules::TagRules;

/// The actor recorded in tag history for retention's deletions.
pub const ACTOR: &str = "retention";

/// A policy and the repositories it covers.
#[derive(Clone, Debug)]
pub struct RetentionRule {
    /// Repository pattern.
    pub repos: Pattern,
    /// The policy.
    pub policy: Policy,
}

/// The configured retention rules; the first whose pattern matches a repository applies to it.
#[derive(Clone, Debug, Default)]
pub struct RetentionRules {
    rules: Vec<RetentionRule>,
    interval: Option<Duration>,
    metrics: RetentionMetrics,
}

/// Counters of what retention did, exported on `/metrics`.
#[derive(Clone, Debug, Default)]
struct RetentionMetrics {
    runs: Counter,
    tags: Counter,
    manifests: Counter,
}

impl RetentionRules {
    /// Rules, run by the server every `interval` (never when `None`).
    pub fn new(rules: Vec<RetentionRule>, interval: Option<Duration>) -> Self {
        RetentionRules {
            rules,
            interval,
            metrics: RetentionMetrics::default(),
        }
    }

    /// The policy for `repo`, if any rule covers it.
    pub fn policy_for(&self, repo: &str) -> Option<&Policy> {
        self.rules
            .iter()
            .find(|r| r.repos.matches(repo))
            .map(|r| &r.policy)
    }

    /// Whether no rule is configured.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Registers retention's counters into `prom`, for `/metrics`.
    pub(crate) fn register_metrics(&self, prom: &mut prometheus_client::registry::Registry) {
        let m = &self.metrics;
        prom.register(
            "retention_runs",
            "Retention runs (scheduled or requested)",
            m.runs.clone(),
        );
        prom.register(
            "retention_deleted_tags",
            "Tags deleted by retention",
            m.tags.clone(),
        );
        prom.register(
            "retention_deleted_manifests",
            "Manifests deleted by retention",
            m.manifests.clone(),
        );
    }
}

/// One line of `wharf versions`: the management API's type, named here too for the CLI.
pub use api::retention::VersionRow;

/// The plan for one repository.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RepoPlan {
    /// The repository.
    pub repo: String,
    /// The policy that applies.
    pub policy: Policy,
    /// What goes and what stays.
    #[serde(flatten)]
    pub plan: versions::Plan,
}

/// What applying a plan did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Applied {
    /// The repository.
    pub repo: String,
    /// Tags deleted.
    pub tags_deleted: Vec<String>,
    /// Manifests deleted.
    pub manifests_deleted: Vec<String>,
    /// Planned deletions not carried out, and why (changed since planned).
    pub skipped: Vec<String>,
}

/// A phase of applying retention (see [`RetentionProgress`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionPhase {
    /// Planning: repositories planned, of those listed (covered by a rule or not).
    Plan,
    /// Deleting: planned deletions (tags and manifests) carried out or skipped, of all planned.
    Delete,
}

impl RetentionPhase {
    /// The phase's name as the streamed answer spells it (`plan`, `delete`).
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionPhase::Plan => "plan",
            RetentionPhase::Delete => "delete",
        }
    }
}

/// Where applying retention stands, as [`Service::retention_apply_with_progress`] reports it:
/// within a phase `done` never decreases and never exceeds `total`; each phase is reported at
/// its start and at its end (`done == total` then).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RetentionProgress {
    /// The phase running.
    pub phase: RetentionPhase,
    /// The repository being planned or applied (none at a phase's start).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Repositories planned, or planned deletions done.
    pub done: u64,
    /// Repositories listed, or deletions planned.
    pub total: u64,
}

/// A receiver of retention's progress: called synchronously, so it must be cheap.
pub type RetentionProgressFn<'a> = dyn FnMut(RetentionProgress) + Send + 'a;

/// Last-pull times of `repo`: stored, merged with those not yet flushed.
async fn pulls_of(
    meta: &dyn MetaStore,
    pending: Option<&PullTracker>,
    repo: &str,
) -> Result<HashMap<Digest, u64>, StoreError> {
    let mut out: HashMap<Digest, u64> = meta.last_pulls(repo).await?.into_iter().collect();
    for (d, t) in pending.map(|p| p.pending(repo)).unwrap_or_default() {
        let e = out.entry(d).or_insert(t);
        *e = (*e).max(t);
    }
    Ok(out)
}

/// Bytes of a manifest and what it references (see [`VersionRow::size`]); `seen` deduplicates
/// blobs and children across an index.
async fn manifest_size(
    meta: &dyn MetaStore,
    repo: &str,
    digest: &Digest,
    seen: &mut HashSet<Digest>,
    depth: u8,
) -> Result<u64, StoreError> {
    if !seen.insert(digest.clone()) {
        return Ok(0);
    }
    let Some(m) = meta
        .get_manifest(repo, &Reference::Digest(digest.clone()))
        .await?
    else {
        return Ok(0);
    };
    let mut size = m.body.len() as u64;
    let Ok(parsed) = oci::Manifest::parse(Some(&m.media_type), &m.body) else {
        return Ok(size);
    };
    drop(m);
    for d in parsed.required_blobs() {
        if seen.insert(d.digest.clone()) {
            size += d.size.max(0) as u64;
        }
    }
    // Indexes of indexes are rare; two levels cover every real image.
    if depth < 2 {
        for c in &parsed.manifests {
            size += Box::pin(manifest_size(meta, repo, &c.digest, seen, depth + 1)).await?;
        }
    }
    Ok(size)
}

/// The tags of `repo` in version order (see `versions::sort_versions`) with digest, size, push
/// and last-pull time. `None` when the repository does not exist.
pub async fn list_versions(
    meta: &dyn MetaStore,
    pulls: &HashMap<Digest, u64>,
    repo: &str,
) -> Result<Option<Vec<VersionRow>>, StoreError> {
    if meta
        .tags(
            repo,
            Page {
                n: Some(0),
                last: None,
            },
        )
        .await?
        .is_none()
    {
        return Ok(None);
    }
    let snap = meta.snapshot(repo).await?;
    let manifests: HashMap<&Digest, &store::ManifestSummary> =
        snap.manifests.iter().map(|m| (&m.digest, m)).collect();
    let mut sizes: HashMap<Digest, u64> = HashMap::new();
    let mut rows = Vec::with_capacity(snap.tags.len());
    for t in &snap.tags {
        let size = match sizes.get(&t.digest) {
            Some(s) => *s,
            None => {
                let s = manifest_size(meta, repo, &t.digest, &mut HashSet::new(), 0).await?;
                sizes.insert(t.digest.clone(), s);
                s
            }
        };
        let m = manifests.get(&t.digest);
        rows.push(VersionRow {
            tag: t.tag.clone(),
            digest: t.digest.to_string(),
            media_type: m.map(|m| m.media_type.clone()).unwrap_or_default(),
            size,
            pushed: t.set_at.or(m.and_then(|m| m.pushed)),
            last_pull: pulls.get(&t.digest).copied(),
        });
    }
    versions::sort_versions(&mut rows, |r| &r.tag, |r| r.pushed);
    Ok(Some(rows))
}

/// Plans `policy` for `repo` at `now`.
pub async fn plan_repo(
    meta: &dyn MetaStore,
    pulls: &HashMap<Digest, u64>,
    tag_rules: &TagRules,
    policy: &Policy,
    repo: &str,
    now: u64,
) -> Result<RepoPlan, StoreError> {
    let snap = meta.snapshot(repo).await?;
    let pushed: HashMap<&Digest, Option<u64>> = snap
        .manifests
        .iter()
        .map(|m| (&m.digest, m.pushed))
        .collect();
    let input = versions::Repo {
        tags: snap
            .tags
            .iter()
            .map(|t| versions::retention::Tag {
                name: t.tag.clone(),
                digest: t.digest.to_string(),
                pushed: t.set_at.or(pushed.get(&t.digest).copied().flatten()),
                frozen: tag_rules.immutable(repo, &t.tag).map(|r| r.to_string()),
            })
            .collect(),
        manifests: snap
            .manifests
            .iter()
            .map(|m| versions::retention::Manifest {
                digest: m.digest.to_string(),
                pushed: m.pushed,
                last_pull: pulls.get(&m.digest).copied(),
                subject: m.subject.as_ref().map(|s| s.to_string()),
                children: m.children.iter().map(|c| c.to_string()).collect(),
            })
            .collect(),
    };
    Ok(RepoPlan {
        repo: repo.to_owned(),
        policy: policy.clone(),
        plan: versions::plan(policy, &input, now),
    })
}

/// Plans every repository a rule covers (or only `only`), with `pending` pulls merged in.
async fn plan_with(
    meta: &dyn MetaStore,
    pending: Option<&PullTracker>,
    tag_rules: &TagRules,
    rules: &RetentionRules,
    only: Option<&str>,
    progress: &mut RetentionProgressFn<'_>,
) -> Result<Vec<RepoPlan>, StoreError> {
    let mut out = Vec::new();
    let repos = match only {
        Some(r) => vec![r.to_owned()],
        None => {
            let mut all = Vec::new();
            let mut last = None;
            loop {
                let page = meta
                    .repositories(Page {
                        n: Some(1000),
                        last: last.clone(),
                    })
                    .await?;
                let done = page.len() < 1000;
                last = page.last().cloned();
                all.extend(page);
                if done {
                    break;
                }
            }
            all
        }
    };
    let total = repos.len() as u64;
    let mut tell = |repo: Option<&str>, done: u64| {
        progress(RetentionProgress {
            phase: RetentionPhase::Plan,
            repo: repo.map(str::to_owned),
            done,
            total,
        });
    };
    tell(None, 0);
    for (i, repo) in repos.iter().enumerate() {
        if let Some(policy) = rules.policy_for(repo) {
            let pulls = pulls_of(meta, pending, repo).await?;
            out.push(plan_repo(meta, &pulls, tag_rules, policy, repo, auth::now()).await?);
        }
        tell(Some(repo), i as u64 + 1);
    }
    Ok(out)
}

/// Plans every repository a rule covers (or only `only`) from the metadata store alone (the
/// CLI on a data directory; pull times are those flushed by the server).
pub async fn plan_all(
    meta: &dyn MetaStore,
    tag_rules: &TagRules,
    rules: &RetentionRules,
    only: Option<&str>,
) -> Result<Vec<RepoPlan>, StoreError> {
    plan_with(meta, None, tag_rules, rules, only, &mut |_| {}).await
}

/// Carries a plan out: tags first, each only if it still points where planned and is not
/// immutable; then manifests in the plan's order, each only if no tag points at it and no index
/// lists it by then. Every deletion is in tag history as [`ACTOR`] and, when `audit` is given,
/// in the audit log (detail: the reason, and who asked).
pub async fn apply_plan(
    meta: &dyn MetaStore,
    tag_rules: &TagRules,
    plan: &RepoPlan,
    audit: Option<&Identities>,
    requested_by: &str,
) -> Result<Applied, StoreError> {
    apply_plan_with_progress(meta, tag_rules, plan, audit, requested_by, &mut || {}).await
}

/// [`apply_plan`], calling `step` after each planned deletion (tag or manifest), carried out or
/// skipped: `plan.plan.tags.len() + plan.plan.manifests.len()` calls in all.
pub async fn apply_plan_with_progress(
    meta: &dyn MetaStore,
    tag_rules: &TagRules,
    plan: &RepoPlan,
    audit: Option<&Identities>,
    requested_by: &str,
    step: &mut (dyn FnMut() + Send),
) -> Result<Applied, StoreError> {
    let repo = &plan.repo;
    let mut out = Applied {
        repo: repo.clone(),
        ..Applied::default()
    };
    let record = |target: String, reason: String| AuditEvent {
        time: auth::now(),
        action: "retention.delete".into(),
        actor: ACTOR.into(),
        repo: Some(repo.clone()),
        target: Some(target),
        source: None,
        detail: format!("{reason} (requested by {requested_by})"),
    };
    for t in &plan.plan.tags {
        step();
        if let Some(rule) = tag_rules.immutable(repo, &t.tag) {
            out.skipped
                .push(format!("tag {}: immutable ({rule})", t.tag));
            continue;
        }
        let Ok(d) = Digest::parse(&t.digest) else {
            continue;
        };
        if meta.delete_tag_if(repo, &t.tag, &d, ACTOR).await? {
            tracing::info!(repo = %repo, tag = %t.tag, reason = %t.reason, "retention: tag deleted");
            if let Some(ids) = audit {
                let _ = ids
                    .audit(&record(format!("tag {}", t.tag), t.reason.to_string()))
                    .await;
            }
            out.tags_deleted.push(t.tag.clone());
        } else {
            out.skipped
                .push(format!("tag {}: no longer points at {}", t.tag, t.digest));
        }
    }
    for m in &plan.plan.manifests {
        step();
        let Ok(d) = Digest::parse(&m.digest) else {
            continue;
        };
        match meta.delete_manifest_if_unused(repo, &d, ACTOR).await? {
            GuardedDelete::Deleted => {
                tracing::info!(repo = %repo, digest = %d, reason = %m.reason, "retention: manifest deleted");
                if let Some(ids) = audit {
                    let _ = ids
                        .audit(&record(d.to_string(), m.reason.to_string()))
                        .await;
                }
                out.manifests_deleted.push(m.digest.clone());
            }
            GuardedDelete::Gone => {}
            GuardedDelete::Tagged(tags) => out.skipped.push(format!(
                "manifest {d}: tagged since planned ({})",
                tags.join(", ")
            )),
            GuardedDelete::Listed(by) => out.skipped.push(format!(
                "manifest {d}: listed by {}",
                by.iter()
                    .map(|b| b.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
    Ok(out)
}

impl Service {
    /// Plans the configured retention rules (for every covered repository, or only `only`).
    pub async fn retention_plan(&self, only: Option<&str>) -> Result<Vec<RepoPlan>, StoreError> {
        plan_with(
            self.meta.as_ref(),
            Some(&self.pulls),
            &self.tag_rules,
            &self.retention,
            only,
            &mut |_| {},
        )
        .await
    }

    /// Plans and applies the configured retention rules; `requested_by` goes to the audit log.
    pub async fn retention_apply(
        &self,
        only: Option<&str>,
        requested_by: &str,
    ) -> Result<Vec<Applied>, StoreError> {
        self.retention_apply_with_progress(only, requested_by, &mut |_| {})
            .await
    }

    /// [`Service::retention_apply`], calling `progress` as it goes (see [`RetentionProgress`]):
    /// after each repository planned and each planned deletion, for a progress bar.
    pub async fn retention_apply_with_progress(
        &self,
        only: Option<&str>,
        requested_by: &str,
        progress: &mut RetentionProgressFn<'_>,
    ) -> Result<Vec<Applied>, StoreError> {
        let _serial = self.retention_lock.lock().await;
        let plans = plan_with(
            self.meta.as_ref(),
            Some(&self.pulls),
            &self.tag_rules,
            &self.retention,
            only,
            progress,
        )
        .await?;
        let ids = Some(self.identities());
        let total: u64 = plans
            .iter()
            .map(|p| (p.plan.tags.len() + p.plan.manifests.len()) as u64)
            .sum();
        let mut done = 0u64;
        progress(RetentionProgress {
            phase: RetentionPhase::Delete,
            repo: None,
            done,
            total,
        });
        let mut out = Vec::new();
        for p in plans {
            let mut step = || {
                done += 1;
                progress(RetentionProgress {
                    phase: RetentionPhase::Delete,
                    repo: Some(p.repo.clone()),
                    done,
                    total,
                });
            };
            let a = apply_plan_with_progress(
                self.meta.as_ref(),
                &self.tag_rules,
                &p,
                ids,
                requested_by,
                &mut step,
            )
            .await?;
            let m = &self.retention.metrics;
            m.tags.inc_by(a.tags_deleted.len() as u64);
            m.manifests.inc_by(a.manifests_deleted.len() as u64);
            out.push(a);
        }
        self.retention.metrics.runs.inc();
        Ok(out)
    }

    /// Runs the retention rules every configured interval (nothing when no interval or no
    /// rule is configured).
    pub fn spawn_retention(self: &std::sync::Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let every = self.retention.interval?;
        if self.retention.is_empty() {
            return None;
        }
        let reg = self.clone();
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match reg.retention_apply(None, "schedule").await {
                    Ok(applied) => {
                        let (t, m) = applied.iter().fold((0, 0), |(t, m), a| {
                            (t + a.tags_deleted.len(), m + a.manifests_deleted.len())
                        });
                        tracing::info!(
                            repositories = applied.len(),
                            tags = t,
                            manifests = m,
                            "scheduled retention done"
                        );
                    }
                    Err(e) => tracing::error!(error = %e, "scheduled retention failed"),
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::RedbMetaStore;

    async fn put(meta: &RedbMetaStore, seed: u8, tags: &[&str]) -> Digest {
        crate::testing::put_image(meta, "r", seed, tags).await
    }

    #[tokio::test]
    async fn apply_skips_what_changed_since_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        let meta = RedbMetaStore::open(&dir.path().join("meta.redb")).unwrap();
        let a = put(&meta, 1, &["v1.0.0"]).await;
        let b = put(&meta, 2, &["v1.1.0"]).await;
        let c = put(&meta, 3, &["v2.0.0"]).await;
        let policy = Policy {
            keep_semver: Some(1),
            ..Policy::default()
        };
        let rules = TagRules::default();
        let plan = plan_repo(&meta, &HashMap::new(), &rules, &policy, "r", auth::now())
            .await
            .unwrap();
        assert_eq!(plan.plan.tags.len(), 2);
        assert_eq!(plan.plan.manifests.len(), 2);
        // Meanwhile: v1.0.0 moves to c, and b gets another tag.
        meta.set_tag("r", "v1.0.0", &c, "someone", false)
            .await
            .unwrap();
        meta.set_tag("r", "keep-me", &b, "someone", false)
            .await
            .unwrap();
        let done = apply_plan(&meta, &rules, &plan, None, "test")
            .await
            .unwrap();
        assert_eq!(done.tags_deleted, vec!["v1.1.0".to_owned()]);
        // a lost its tag to the move, so it goes as planned; b is tagged again and stays.
        assert_eq!(done.manifests_deleted, vec![a.to_string()]);
        assert_eq!(done.skipped.len(), 2, "{:?}", done.skipped);
        let r = |t: &str| Reference::Tag(t.into());
        assert!(
            meta.get_manifest("r", &r("v1.0.0"))
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            meta.get_manifest("r", &r("keep-me"))
                .await
                .unwrap()
                .is_some()
        );
        let h = meta.tag_history("r", "v1.1.0", 1).await.unwrap();
        assert_eq!(h[0].actor, ACTOR);
        // Pull times: noted, flushed in a batch, merged for the planner; deleted manifests skip.
        meta.note_pulls(vec![
            ("r".into(), c.clone(), 50),
            ("r".into(), a.clone(), 60),
        ])
        .await
        .unwrap();
        meta.note_pulls(vec![("r".into(), c.clone(), 40)])
            .await
            .unwrap();
        assert_eq!(meta.last_pulls("r").await.unwrap(), vec![(c.clone(), 50)]);
        let snap = meta.snapshot("r").await.unwrap();
        assert!(snap.manifests.iter().all(|m| m.pushed.is_some()));
        assert!(snap.tags.iter().all(|t| t.set_at.is_some()));
    }

    #[tokio::test]
    async fn apply_reports_progress_of_the_planned_total() {
        let dir = tempfile::tempdir().unwrap();
        let meta: std::sync::Arc<RedbMetaStore> =
            std::sync::Arc::new(RedbMetaStore::open(&dir.path().join("meta.redb")).unwrap());
        // Two covered repositories of 12 versions each (keep 2: 10 tags and 10 manifests go
        // from each), one repository no rule covers.
        for (repo, base) in [("app/a", 0u8), ("app/b", 50), ("other", 100)] {
            for i in 0..12u8 {
                crate::testing::put_image(meta.as_ref(), repo, base + i, &[&format!("1.{i}.0")])
                    .await;
            }
        }
        let rules = RetentionRules::new(
            vec![RetentionRule {
                repos: Pattern::new("app/*").unwrap(),
                policy: Policy {
                    keep_semver: Some(2),
                    ..Policy::default()
                },
            }],
            None,
        );
        let blobs = std::sync::Arc::new(store::FsBlobStore::open(dir.path()).unwrap());
        let svc = Service::builder(blobs, meta.clone())
            .retention(rules)
            .build()
            .unwrap();
        let mut events = Vec::new();
        let applied = svc
            .retention_apply_with_progress(None, "test", &mut |p| events.push(p))
            .await
            .unwrap();
        let deleted: usize = applied
            .iter()
            .map(|a| a.tags_deleted.len() + a.manifests_deleted.len())
            .sum();
        assert_eq!(deleted, 40);
        let (plan, delete): (Vec<_>, Vec<_>) =
            events.iter().partition(|p| p.phase == RetentionPhase::Plan);
        assert!(
            events
                .iter()
                .position(|p| p.phase == RetentionPhase::Delete)
                > events.iter().rposition(|p| p.phase == RetentionPhase::Plan),
            "planning, then deleting: {events:?}"
        );
        // Planning: each of the three repositories listed, in turn.
        assert_eq!(
            plan.iter().map(|p| (p.done, p.total)).collect::<Vec<_>>(),
            [(0, 3), (1, 3), (2, 3), (3, 3)]
        );
        assert_eq!(plan[3].repo.as_deref(), Some("other"));
        // Deleting: one step per planned deletion, of the planned total, ending complete.
        assert_eq!(delete.len(), 41, "a start and 40 steps");
        for (i, p) in delete.iter().enumerate() {
            assert_eq!((p.done, p.total), (i as u64, 40), "{p:?}");
        }
        assert_eq!(delete[1].repo.as_deref(), Some("app/a"));
        assert_eq!(delete[40].repo.as_deref(), Some("app/b"));
        // Nothing left to do: both phases still start and end.
        let mut events = Vec::new();
        svc.retention_apply_with_progress(Some("app/a"), "test", &mut |p| events.push(p))
            .await
            .unwrap();
        assert_eq!(
            events
                .iter()
                .map(|p| (p.phase, p.done, p.total))
                .collect::<Vec<_>>(),
            [
                (RetentionPhase::Plan, 0, 1),
                (RetentionPhase::Plan, 1, 1),
                (RetentionPhase::Delete, 0, 0)
            ]
        );
    }
}
