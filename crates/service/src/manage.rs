//! One service API for every front door: the management handlers (`registry`, the cache
//! capability), the CLI on a data directory and the CLI with `--server` (through the handlers)
//! call these operations, which take and return the management API's types (crate `api`).
//!
//! Every operation goes through [`Manage::run`], the one place that authorizes an [`Actor`],
//! runs the call, and audits what it changed. A refused actor runs nothing and leaves no audit
//! event (access control logs failed logins on its own); a call that fails is not audited
//! either: the audit log records what was done, and a refused change did nothing (identity
//! rules check before they write).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use api::audit::{AuditEvent, AuditQuery};
use api::gc::{GcReport, GcRequest};
use api::retention::{RetentionRequest, VersionRow};
use api::robots::{CreateRobot, RobotSecret, RobotView};
use api::rules::{CreateRule, SetGroup};
use api::signing::{RejectedView, SignatureReport, TrustedKey, VerifiedView};
use api::tags::{Rollback, RolledBack};
use api::users::{CreateUser, SetDisabled, SetPassword, UserView};
use auth::{Action, Actions, Group, Robot, Rule, Subject, User};
use store::gc::StorageUsage;
use store::{StoreError, TagEvent};

use crate::Service;
use crate::access::Caller;
use crate::gc::{GcError, GcOptions, GcProgressFn, USAGE_MAX_AGE};
use crate::identities::IdentityError;
use crate::retention::{Applied, RepoPlan, RetentionProgressFn};

/// The audit action of every change to users, robots, groups and rules.
pub const IDENTITY_CHANGE: &str = "identity.change";

/// Longest grace period or expiry a collection accepts (ten years): keeps time arithmetic far
/// from overflow.
pub const MAX_GC_SECONDS: u64 = 10 * 365 * 86_400;

/// Who asks for a management operation.
#[derive(Clone, Debug)]
pub enum Actor {
    /// A caller access control identified (the HTTP front door).
    Caller(Caller),
    /// A caller on loopback of a server without access control: allowed administration, and
    /// nobody to name in an audit event.
    Loopback,
    /// The operator of the CLI on a data directory (`cli:USER`): whoever may open the files
    /// is in charge of them.
    Operator(String),
}

impl Actor {
    /// The local operator, named after `$USER` (`cli:alice`).
    pub fn operator() -> Actor {
        Actor::Operator(format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into())
        ))
    }

    /// The name recorded for the actor's changes (tag history, audit log).
    pub fn name(&self) -> &str {
        match self {
            Actor::Caller(c) => c.principal.display(),
            Actor::Loopback => "anonymous",
            Actor::Operator(n) => n,
        }
    }
}

/// What an operation needs of its actor.
#[derive(Clone, Copy, Debug)]
pub enum Privilege<'a> {
    /// Administration of the registry.
    Admin,
    /// An action on one repository.
    Repo(&'a str, Action),
    /// Any caller the front door identified (an anonymous token counts, as for `/v2/`): reads
    /// about the registry as a whole that are not administration (the trusted keys).
    Identified,
}

/// Why a management operation failed. The HTTP layer maps each to a status and error code in
/// one place (`registry::error`); the CLI prints the message.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The actor may not do this (403).
    #[error("{0}")]
    Denied(String),
    /// The request is malformed or breaks a rule (400).
    #[error("{0}")]
    Invalid(String),
    /// A repository name is invalid (400 NAME_INVALID).
    #[error("{0}")]
    NameInvalid(String),
    /// A digest is invalid (400 DIGEST_INVALID).
    #[error("{0}")]
    DigestInvalid(String),
    /// What it names does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// It clashes with what exists (409): a name taken, the last administrator.
    #[error("{0}")]
    Conflict(String),
    /// Storage failed, or refused (an immutable tag).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something on the server's side failed (500).
    #[error("{0}")]
    Internal(String),
}

impl From<IdentityError> for ManageError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Store(e) => ManageError::Store(e),
            IdentityError::Invalid(m) => ManageError::Invalid(m),
            IdentityError::Conflict(m) => ManageError::Conflict(m),
        }
    }
}

impl From<GcError> for ManageError {
    fn from(e: GcError) -> Self {
        ManageError::Internal(e.to_string())
    }
}

/// What a change is recorded as in the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// `identity.change`, `gc.run`, `rollback`, `cache.pin`, ...
    pub action: String,
    /// Repository, when there is one.
    pub repo: Option<String>,
    /// Digest or reference, when there is one.
    pub target: Option<String>,
    /// Free text.
    pub detail: String,
}

impl Change {
    /// A change of action `action` described by `detail`.
    pub fn new(action: &str, detail: impl Into<String>) -> Change {
        Change {
            action: action.to_owned(),
            repo: None,
            target: None,
            detail: detail.into(),
        }
    }

    /// A change of users, robots, groups or rules (access control reloads them).
    pub fn identity(detail: impl Into<String>) -> Change {
        Change::new(IDENTITY_CHANGE, detail)
    }

    /// The same change, about `target`.
    pub fn target(mut self, target: impl Into<String>) -> Change {
        self.target = Some(target.into());
        self
    }

    /// The same change, to `repo`.
    pub fn repo(mut self, repo: impl Into<String>) -> Change {
        self.repo = Some(repo.into());
        self
    }
}

/// What an operation returns to [`Manage::run`]: its answer, and what it changed (nothing for a
/// read).
#[derive(Debug)]
pub struct Done<T> {
    value: T,
    change: Option<Change>,
}

impl<T> Done<T> {
    /// A read: nothing to audit.
    pub fn read(value: T) -> Self {
        Done {
            value,
            change: None,
        }
    }

    /// A change, audited as `change`.
    pub fn changed(value: T, change: Change) -> Self {
        Done {
            value,
            change: Some(change),
        }
    }
}

/// The management operations over one [`Service`] (see [`Service::manage`]).
pub struct Manage<'a> {
    svc: &'a Service,
}

fn internal(e: impl std::fmt::Display) -> ManageError {
    ManageError::Internal(e.to_string())
}

/// Hashes a password on a blocking thread (argon2 is deliberately slow).
async fn hash_password(pw: String) -> Result<String, ManageError> {
    tokio::task::spawn_blocking(move || auth::secret::hash_password(&pw))
        .await
        .map_err(internal)?
        .map_err(internal)
}

/// Checks a repository name, and a tag when there is one (front doors check before they
/// authenticate, so a bad name is refused the same whoever asks).
pub fn check_repo_tag(repo: &str, tag: Option<&str>) -> Result<(), ManageError> {
    oci::validate_repository(repo).map_err(|e| ManageError::NameInvalid(e.to_string()))?;
    match tag {
        Some(tag) => oci::validate_tag(tag).map_err(|e| ManageError::Invalid(e.to_string())),
        None => Ok(()),
    }
}

impl<'a> Manage<'a> {
    /// The operations of `svc`.
    pub fn new(svc: &'a Service) -> Self {
        Manage { svc }
    }

    /// The one authorize -> call -> audit of every management operation: refuses an `actor`
    /// without `need` (nothing runs, nothing is audited), runs `op`, and records the change it
    /// reports (after reloading access control when identities changed). A failed `op` is not
    /// audited. Generic over the error so that a capability's own operations (the cache's)
    /// go through it with their own error type.
    pub async fn run<T, E: From<ManageError>>(
        &self,
        actor: &Actor,
        need: Privilege<'_>,
        op: impl Future<Output = Result<Done<T>, E>>,
    ) -> Result<T, E> {
        self.authorize(actor, need)?;
        let done = op.await?;
        if let Some(change) = done.change {
            self.record(actor, change).await?;
        }
        Ok(done.value)
    }

    fn authorize(&self, actor: &Actor, need: Privilege<'_>) -> Result<(), ManageError> {
        let Actor::Caller(caller) = actor else {
            // The local operator owns the data directory; a loopback caller of a server
            // without access control is let in by the HTTP layer for administration only.
            return match (actor, need) {
                (Actor::Loopback, Privilege::Repo(..)) => Err(ManageError::Denied(
                    "repository operations need access control or a caller it admits".into(),
                )),
                _ => Ok(()),
            };
        };
        match need {
            // Identification is the front door's (access control's `authorize`).
            Privilege::Identified => Ok(()),
            Privilege::Admin if caller.is_admin() => Ok(()),
            Privilege::Admin => Err(ManageError::Denied(format!(
                "{} is not an administrator",
                caller.principal.display()
            ))),
            Privilege::Repo(repo, action) => {
                let allowed = match self.svc.access() {
                    Some(ac) => ac.allowed(caller, repo),
                    None => Actions::of(Action::Admin),
                };
                if allowed.covers(Actions::of(action)) {
                    Ok(())
                } else {
                    Err(ManageError::Denied(format!(
                        "{} may not {} {repo}",
                        caller.principal.display(),
                        Actions::of(action)
                    )))
                }
            }
        }
    }

    async fn record(&self, actor: &Actor, c: Change) -> Result<(), ManageError> {
        let ac = self.svc.access();
        if c.action == IDENTITY_CHANGE
            && let Some(ac) = ac
        {
            ac.reload().await?;
        }
        match (actor, ac) {
            (Actor::Caller(caller), Some(ac)) => {
                ac.audit(caller, &c.action, c.repo.as_deref(), c.target, c.detail)
                    .await;
            }
            // Without access control there is no caller to name.
            (Actor::Caller(_), None) | (Actor::Loopback, _) => {}
            (Actor::Operator(name), _) => {
                let e = AuditEvent {
                    time: auth::now(),
                    action: c.action,
                    actor: name.clone(),
                    repo: c.repo,
                    target: c.target,
                    source: None,
                    detail: c.detail,
                };
                if let Err(err) = self.svc.identities().audit(&e).await {
                    tracing::error!(error = %err, "writing audit event failed");
                }
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Users

    /// All users.
    pub async fn users(&self, actor: &Actor) -> Result<Vec<UserView>, ManageError> {
        self.run(actor, Privilege::Admin, async {
            let users = self.svc.identities().users().await?;
            Ok(Done::read(users.iter().map(UserView::from).collect()))
        })
        .await
    }

    /// Adds a user (the name and password rules of `auth::identity`).
    pub async fn create_user(&self, actor: &Actor, n: CreateUser) -> Result<UserView, ManageError> {
        self.run(actor, Privilege::Admin, async {
            auth::identity::validate_user_name(&n.name).map_err(ManageError::Invalid)?;
            auth::identity::validate_password(&n.password).map_err(ManageError::Invalid)?;
            let ids = self.svc.identities();
            if ids.user(&n.name).await?.is_some() {
                return Err(ManageError::Conflict(format!(
                    "user {} already exists",
                    n.name
                )));
            }
            let u = User {
                name: n.name,
                password_hash: hash_password(n.password).await?,
                admin: n.admin,
                disabled: false,
                created: auth::now(),
                source: None,
            };
            ids.put_user(&u).await?;
            let detail = format!("user {} added (admin: {})", u.name, u.admin);
            Ok(Done::changed(UserView::from(&u), Change::identity(detail)))
        })
        .await
    }

    /// Deletes a user (not the last active administrator).
    pub async fn delete_user(&self, actor: &Actor, name: &str) -> Result<(), ManageError> {
        self.run(actor, Privilege::Admin, async {
            if !self.svc.identities().delete_user(name).await? {
                return Err(ManageError::NotFound(format!("no user {name}")));
            }
            Ok(Done::changed(
                (),
                Change::identity(format!("user {name} deleted")),
            ))
        })
        .await
    }

    /// Sets a user's password.
    pub async fn set_password(
        &self,
        actor: &Actor,
        name: &str,
        p: SetPassword,
    ) -> Result<(), ManageError> {
        self.run(actor, Privilege::Admin, async {
            auth::identity::validate_password(&p.password).map_err(ManageError::Invalid)?;
            let hash = hash_password(p.password).await?;
            self.update_user(name, |u| u.password_hash = hash, "password changed")
                .await
                .map(|(_, change)| Done::changed((), change))
        })
        .await
    }

    /// Disables or re-enables a user (not the last active administrator).
    pub async fn set_disabled(
        &self,
        actor: &Actor,
        name: &str,
        d: SetDisabled,
    ) -> Result<UserView, ManageError> {
        self.run(actor, Privilege::Admin, async {
            let what = if d.disabled { "disabled" } else { "enabled" };
            let (u, change) = self
                .update_user(name, |u| u.disabled = d.disabled, what)
                .await?;
            Ok(Done::changed(UserView::from(&u), change))
        })
        .await
    }

    /// Changes the stored user `name` (not found when there is none; the identity rules refuse
    /// with their own errors); the change is described as `what`.
    async fn update_user(
        &self,
        name: &str,
        change: impl FnOnce(&mut User),
        what: &str,
    ) -> Result<(User, Change), ManageError> {
        let ids = self.svc.identities();
        let mut u = ids
            .user(name)
            .await?
            .ok_or_else(|| ManageError::NotFound(format!("no user {name}")))?;
        change(&mut u);
        ids.put_user(&u).await?;
        Ok((u, Change::identity(format!("user {name} {what}"))))
    }

    // -----------------------------------------------------------------------------------------
    // Robots

    /// All robots.
    pub async fn robots(&self, actor: &Actor) -> Result<Vec<RobotView>, ManageError> {
        self.run(actor, Privilege::Admin, async {
            let robots = self.svc.identities().robots().await?;
            Ok(Done::read(robots.iter().map(RobotView::from).collect()))
        })
        .await
    }

    /// Creates a robot; its secret is returned once and only its hash is kept.
    pub async fn create_robot(
        &self,
        actor: &Actor,
        n: CreateRobot,
    ) -> Result<RobotSecret, ManageError> {
        self.run(actor, Privilege::Admin, async {
            auth::identity::validate_name(&n.name).map_err(ManageError::Invalid)?;
            if n.repos.is_empty() {
                return Err(ManageError::Invalid(
                    "a robot needs at least one repository pattern".into(),
                ));
            }
            for p in &n.repos {
                auth::Pattern::new(p).map_err(ManageError::Invalid)?;
            }
            let ids = self.svc.identities();
            if ids.robot(&n.name).await?.is_some() {
                return Err(ManageError::Conflict(format!(
                    "robot {} already exists",
                    n.name
                )));
            }
            let secret = auth::secret::generate_secret().map_err(internal)?;
            let r = Robot {
                name: n.name,
                secret_hash: auth::secret::hash_secret(&secret),
                repos: n.repos,
                actions: n.actions,
                expires_at: n.expires_in_seconds.map(|s| auth::now().saturating_add(s)),
                revoked: false,
                created: auth::now(),
                description: n.description,
            };
            ids.put_robot(&r).await?;
            let detail = format!(
                "robot {} created for {} ({})",
                r.name,
                r.repos.join(" "),
                r.actions
            );
            Ok(Done::changed(
                RobotSecret {
                    login: RobotView::from(&r).login,
                    secret,
                },
                Change::identity(detail),
            ))
        })
        .await
    }

    /// Revokes a robot: it can no longer log in and its tokens stop working.
    pub async fn revoke_robot(&self, actor: &Actor, name: &str) -> Result<(), ManageError> {
        self.run(actor, Privilege::Admin, async {
            let mut r = self.robot(name).await?;
            r.revoked = true;
            self.svc.identities().put_robot(&r).await?;
            Ok(Done::changed(
                (),
                Change::identity(format!("robot {name} revoked")),
            ))
        })
        .await
    }

    /// Replaces a robot's secret (and lifts a revocation); the new one is returned once.
    pub async fn rotate_robot(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<RobotSecret, ManageError> {
        self.run(actor, Privilege::Admin, async {
            let mut r = self.robot(name).await?;
            let secret = auth::secret::generate_secret().map_err(internal)?;
            r.secret_hash = auth::secret::hash_secret(&secret);
            r.revoked = false;
            self.svc.identities().put_robot(&r).await?;
            Ok(Done::changed(
                RobotSecret {
                    login: RobotView::from(&r).login,
                    secret,
                },
                Change::identity(format!("robot {name} secret rotated")),
            ))
        })
        .await
    }

    async fn robot(&self, name: &str) -> Result<Robot, ManageError> {
        self.svc
            .identities()
            .robot(name)
            .await?
            .ok_or_else(|| ManageError::NotFound(format!("no robot {name}")))
    }

    // -----------------------------------------------------------------------------------------
    // Groups and rules

    /// All groups.
    pub async fn groups(&self, actor: &Actor) -> Result<Vec<Group>, ManageError> {
        self.run(actor, Privilege::Admin, async {
            Ok(Done::read(self.svc.identities().groups().await?))
        })
        .await
    }

    /// Creates or replaces group `name` (every member must exist).
    pub async fn set_group(
        &self,
        actor: &Actor,
        name: &str,
        s: SetGroup,
    ) -> Result<Group, ManageError> {
        self.run(actor, Privilege::Admin, async {
            auth::identity::validate_name(name).map_err(ManageError::Invalid)?;
            let g = Group {
                name: name.to_owned(),
                members: s.members,
            };
            self.svc.identities().put_group(&g).await?;
            let detail = format!("group {name} set to [{}]", g.members.join(", "));
            Ok(Done::changed(g, Change::identity(detail)))
        })
        .await
    }

    /// Deletes a group.
    pub async fn delete_group(&self, actor: &Actor, name: &str) -> Result<(), ManageError> {
        self.run(actor, Privilege::Admin, async {
            if !self.svc.identities().delete_group(name).await? {
                return Err(ManageError::NotFound(format!("no group {name}")));
            }
            Ok(Done::changed(
                (),
                Change::identity(format!("group {name} deleted")),
            ))
        })
        .await
    }

    /// All rules.
    pub async fn rules(&self, actor: &Actor) -> Result<Vec<Rule>, ManageError> {
        self.run(actor, Privilege::Admin, async {
            Ok(Done::read(self.svc.identities().rules().await?))
        })
        .await
    }

    /// Adds a rule (with a new random id).
    pub async fn create_rule(&self, actor: &Actor, n: CreateRule) -> Result<Rule, ManageError> {
        self.run(actor, Privilege::Admin, async {
            let subject = Subject::parse(&n.subject).ok_or_else(|| {
                ManageError::Invalid(format!(
                    "invalid subject {:?}: use user:NAME, group:NAME, robot:NAME or anonymous",
                    n.subject
                ))
            })?;
            // A rule for an identity that does not exist grants nothing today, and everything
            // to whoever is later created under that name.
            let ids = self.svc.identities();
            let exists = match &subject {
                Subject::User(u) => ids.user(u).await?.is_some(),
                Subject::Robot(r) => ids.robot(r).await?.is_some(),
                Subject::Group(g) => ids.groups().await?.iter().any(|x| &x.name == g),
                Subject::Anonymous => true,
            };
            if !exists {
                return Err(ManageError::Invalid(format!(
                    "no such {}: create it before a rule names it",
                    n.subject.trim()
                )));
            }
            auth::Pattern::new(&n.repos).map_err(ManageError::Invalid)?;
            if n.actions.is_empty() {
                return Err(ManageError::Invalid(
                    "a rule needs at least one action".into(),
                ));
            }
            let id = hex::encode(auth::secret::random_bytes::<6>().map_err(internal)?);
            let rule = Rule {
                id,
                subject,
                repos: n.repos,
                actions: n.actions,
            };
            self.svc.identities().put_rule(&rule).await?;
            let detail = format!(
                "rule {}: {} may {} {}",
                rule.id, rule.subject, rule.actions, rule.repos
            );
            Ok(Done::changed(rule, Change::identity(detail)))
        })
        .await
    }

    /// Deletes a rule by id.
    pub async fn delete_rule(&self, actor: &Actor, id: &str) -> Result<(), ManageError> {
        self.run(actor, Privilege::Admin, async {
            if !self.svc.identities().delete_rule(id).await? {
                return Err(ManageError::NotFound(format!("no rule {id}")));
            }
            Ok(Done::changed(
                (),
                Change::identity(format!("rule {id} deleted")),
            ))
        })
        .await
    }

    /// Audit events matching `q`, newest first.
    pub async fn audit(
        &self,
        actor: &Actor,
        q: &AuditQuery,
    ) -> Result<Vec<AuditEvent>, ManageError> {
        self.run(actor, Privilege::Admin, async {
            Ok(Done::read(self.svc.identities().audit_query(q).await?))
        })
        .await
    }

    // -----------------------------------------------------------------------------------------
    // Garbage collection and retention

    /// Runs one garbage collection now (the collector's defaults for what `r` leaves out).
    pub async fn gc(&self, actor: &Actor, r: GcRequest) -> Result<GcReport, ManageError> {
        self.gc_with_progress(actor, r, &mut |_| {}).await
    }

    /// The collection options `r` asks for (the collector's defaults for what it leaves out),
    /// or why they are refused.
    fn gc_options(&self, r: &GcRequest) -> Result<GcOptions, ManageError> {
        let mut opts = self.svc.collector().defaults();
        opts.dry_run = r.dry_run;
        for (v, field, name) in [
            (r.grace_seconds, &mut opts.grace, "grace_seconds"),
            (
                r.upload_expiry_seconds,
                &mut opts.upload_expiry,
                "upload_expiry_seconds",
            ),
        ] {
            if let Some(s) = v {
                if s > MAX_GC_SECONDS {
                    return Err(ManageError::Invalid(format!(
                        "{name} must be at most {MAX_GC_SECONDS}"
                    )));
                }
                *field = Duration::from_secs(s);
            }
        }
        Ok(opts)
    }

    /// Whether [`Manage::gc`] would refuse `r` from `actor` (not an administrator, a bad
    /// option) without running anything or auditing: for a caller that must refuse before it
    /// starts answering (a streamed answer).
    pub async fn gc_check(&self, actor: &Actor, r: &GcRequest) -> Result<(), ManageError> {
        self.run(actor, Privilege::Admin, async {
            self.gc_options(r)?;
            Ok(Done::read(()))
        })
        .await
    }

    /// [`Manage::gc`], passing the collection's progress to `progress` (see
    /// [`crate::gc::GcProgress`]). Authorized and audited as [`Manage::gc`].
    pub async fn gc_with_progress(
        &self,
        actor: &Actor,
        r: GcRequest,
        progress: &mut GcProgressFn<'_>,
    ) -> Result<GcReport, ManageError> {
        self.run(actor, Privilege::Admin, async {
            let opts = self.gc_options(&r)?;
            let report = self
                .svc
                .collector()
                .collect_with_progress(&opts, progress)
                .await?;
            let detail = format!(
                "dry_run: {}, blobs deleted: {}, bytes freed: {}, links deleted: {}, uploads expired: {}",
                report.dry_run,
                report.blobs_deleted,
                report.bytes_freed,
                report.links_deleted,
                report.uploads_expired
            );
            Ok(Done::changed(report, Change::new("gc.run", detail)))
        })
        .await
    }

    /// Starts a backup (administrators): pauses garbage collection and snapshots the metadata;
    /// the caller copies the blobs the snapshot names and drops the value when done. Audited
    /// as `backup` with the snapshot's counts.
    pub async fn backup(&self, actor: &Actor) -> Result<crate::backup::BackupStart, ManageError> {
        self.run(actor, Privilege::Admin, async {
            let b =
                crate::backup::BackupStart::take(self.svc.collector(), &**self.svc.meta()).await?;
            let c = b.counts();
            let detail = format!(
                "repositories: {}, manifests: {}, blobs: {}, bytes: {}",
                c.repositories, c.manifests, c.blobs, c.blob_bytes
            );
            Ok(Done::changed(b, Change::new("backup", detail)))
        })
        .await
    }

    /// Storage use (recomputed when `refresh`, else at most a minute old).
    pub async fn storage(
        &self,
        actor: &Actor,
        refresh: bool,
    ) -> Result<Arc<StorageUsage>, ManageError> {
        self.run(actor, Privilege::Admin, async {
            let max_age = if refresh {
                Duration::ZERO
            } else {
                USAGE_MAX_AGE
            };
            let usage = self
                .svc
                .collector()
                .storage_usage(max_age)
                .await
                .map_err(|GcError::Store(e)| ManageError::Store(e))?;
            Ok(Done::read(usage))
        })
        .await
    }

    /// What the retention policies would delete, and why.
    pub async fn retention_plan(
        &self,
        actor: &Actor,
        r: &RetentionRequest,
    ) -> Result<Vec<RepoPlan>, ManageError> {
        self.run(actor, Privilege::Admin, async {
            if let Some(repo) = &r.repo {
                check_repo_tag(repo, None)?;
            }
            Ok(Done::read(
                self.svc.retention_plan(r.repo.as_deref()).await?,
            ))
        })
        .await
    }

    /// Deletes what the retention policies say. Each deletion is audited by retention itself
    /// (action `retention.delete`, requested by the actor), as scheduled runs are.
    pub async fn retention_apply(
        &self,
        actor: &Actor,
        r: &RetentionRequest,
    ) -> Result<Vec<Applied>, ManageError> {
        self.retention_apply_with_progress(actor, r, &mut |_| {})
            .await
    }

    /// Whether [`Manage::retention_apply`] would refuse `r` from `actor` (not an
    /// administrator, a bad repository name) without running anything: for a caller that must
    /// refuse before it starts answering (a streamed answer).
    pub async fn retention_apply_check(
        &self,
        actor: &Actor,
        r: &RetentionRequest,
    ) -> Result<(), ManageError> {
        self.run(actor, Privilege::Admin, async {
            if let Some(repo) = &r.repo {
                check_repo_tag(repo, None)?;
            }
            Ok(Done::read(()))
        })
        .await
    }

    /// [`Manage::retention_apply`], passing its progress to `progress` (see
    /// [`crate::retention::RetentionProgress`]). Authorized and audited as
    /// [`Manage::retention_apply`].
    pub async fn retention_apply_with_progress(
        &self,
        actor: &Actor,
        r: &RetentionRequest,
        progress: &mut RetentionProgressFn<'_>,
    ) -> Result<Vec<Applied>, ManageError> {
        self.run(actor, Privilege::Admin, async {
            if let Some(repo) = &r.repo {
                check_repo_tag(repo, None)?;
            }
            let applied = self
                .svc
                .retention_apply_with_progress(r.repo.as_deref(), actor.name(), progress)
                .await?;
            Ok(Done::read(applied))
        })
        .await
    }

    /// A repository's tags in version order (semantic versions highest first, then other
    /// tags newest first) with digest, size, push and last-pull time (needs pull).
    pub async fn versions(
        &self,
        actor: &Actor,
        repo: &str,
    ) -> Result<Vec<VersionRow>, ManageError> {
        check_repo_tag(repo, None)?;
        self.run(actor, Privilege::Repo(repo, Action::Pull), async {
            let pulls = self.svc.last_pulls(repo).await?;
            crate::retention::list_versions(self.svc.meta().as_ref(), &pulls, repo)
                .await?
                .map(Done::read)
                .ok_or_else(|| ManageError::NotFound(format!("repository {repo} not known")))
        })
        .await
    }

    // -----------------------------------------------------------------------------------------
    // Signatures

    /// The signatures of the image `reference` (a tag or digest) names in `repo`, and which
    /// trusted keys verified them (needs pull: a reader of a repository may read its
    /// signatures). Without a signing policy the report is empty but names the digest.
    pub async fn signatures(
        &self,
        actor: &Actor,
        repo: &str,
        reference: &str,
    ) -> Result<SignatureReport, ManageError> {
        check_repo_tag(repo, None)?;
        self.run(actor, Privilege::Repo(repo, Action::Pull), async {
            let r = oci::Reference::parse(reference)
                .map_err(|e| ManageError::Invalid(e.to_string()))?;
            let meta = self.svc.meta();
            let m = meta
                .get_manifest(repo, &r)
                .await?
                .ok_or(StoreError::ManifestUnknown)?;
            let Some(policy) = self.svc.signing() else {
                return Ok(Done::read(SignatureReport {
                    digest: m.digest.to_string(),
                    trusted_keys: Vec::new(),
                    verified: Vec::new(),
                    rejected: Vec::new(),
                }));
            };
            let v = policy
                .report(meta.as_ref(), self.svc.blobs().as_ref(), repo, &m.digest)
                .await?;
            let verified = v
                .verified
                .iter()
                .map(|s| VerifiedView {
                    source: s.source.clone(),
                    // The format's serde name (`simple-signing`), as the verdict writes it.
                    format: serde_json::to_value(s.format)
                        .ok()
                        .and_then(|f| f.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    key: policy.keys()[s.key_index].name.clone(),
                    key_id: s.key_id.clone(),
                    identity: s.identity.clone(),
                    annotations: s.annotations.clone(),
                })
                .collect();
            let rejected = v
                .rejected
                .iter()
                .map(|r| RejectedView {
                    source: r.source.clone(),
                    reason: r.reason.to_string(),
                })
                .collect();
            Ok(Done::read(SignatureReport {
                digest: m.digest.to_string(),
                trusted_keys: policy.keys().iter().map(|k| k.name.clone()).collect(),
                verified,
                rejected,
            }))
        })
        .await
    }

    /// The names, ids and algorithms of the keys the registry trusts (any identified caller;
    /// none without a signing policy).
    pub async fn trusted_keys(&self, actor: &Actor) -> Result<Vec<TrustedKey>, ManageError> {
        self.run(actor, Privilege::Identified, async {
            let keys = self
                .svc
                .signing()
                .iter()
                .flat_map(|p| p.keys())
                .map(|k| TrustedKey {
                    name: k.name.clone(),
                    key_id: k.key.key_id(),
                    algorithm: k.key.algorithm().to_string(),
                })
                .collect();
            Ok(Done::read(keys))
        })
        .await
    }

    // -----------------------------------------------------------------------------------------
    // Tags

    /// Every change of a tag, newest first (needs pull on the repository).
    pub async fn tag_history(
        &self,
        actor: &Actor,
        repo: &str,
        tag: &str,
        limit: Option<usize>,
    ) -> Result<Vec<TagEvent>, ManageError> {
        check_repo_tag(repo, Some(tag))?;
        self.run(actor, Privilege::Repo(repo, Action::Pull), async {
            let limit = limit.unwrap_or(100).clamp(1, 10_000);
            Ok(Done::read(
                self.svc.meta().tag_history(repo, tag, limit).await?,
            ))
        })
        .await
    }

    /// Moves a tag back (needs push; the move is recorded in the tag's history and audited;
    /// immutable tags refuse it). `read_only` is why the repository takes no writes, when the
    /// source of pulls says so (a pull-through cache's repository).
    pub async fn rollback(
        &self,
        actor: &Actor,
        r: Rollback,
        read_only: Option<String>,
    ) -> Result<RolledBack, ManageError> {
        check_repo_tag(&r.repo, Some(&r.tag))?;
        self.run(actor, Privilege::Repo(&r.repo, Action::Push), async {
            if let Some(why) = read_only {
                return Err(ManageError::Denied(why));
            }
            let meta = self.svc.meta();
            let target = match (&r.to, r.steps) {
                (Some(d), None) => {
                    oci::Digest::parse(d).map_err(|e| ManageError::DigestInvalid(e.to_string()))?
                }
                (None, Some(n)) if n >= 1 => {
                    let history = meta.tag_history(&r.repo, &r.tag, n + 1).await?;
                    let prev = history
                        .get(n - 1)
                        .and_then(|e| e.previous.clone())
                        .ok_or_else(|| {
                            ManageError::Invalid(format!(
                                "{}:{} has fewer than {n} earlier positions",
                                r.repo, r.tag
                            ))
                        })?;
                    oci::Digest::parse(&prev).map_err(internal)?
                }
                _ => {
                    return Err(ManageError::Invalid(
                        "give exactly one of `to` (a digest) or `steps` (1 or more)".into(),
                    ));
                }
            };
            let frozen = self.svc.tag_rules().immutable(&r.repo, &r.tag).is_some();
            meta.set_tag(&r.repo, &r.tag, &target, actor.name(), frozen)
                .await?;
            let change = Change::new("rollback", format!("tag {}", r.tag))
                .repo(r.repo.clone())
                .target(target.to_string());
            Ok(Done::changed(
                RolledBack {
                    repo: r.repo.clone(),
                    tag: r.tag.clone(),
                    digest: target.to_string(),
                },
                change,
            ))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{AccessControl, AuthSettings, Credential, Need};
    use crate::identities::Identities;

    struct Fixture {
        _dir: tempfile::TempDir,
        svc: Service,
        ac: Arc<AccessControl>,
    }

    /// A service with access control, an administrator `root` and a user `dev`.
    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn store::MetaStore> =
            Arc::new(store::RedbMetaStore::open(&dir.path().join("meta.redb")).unwrap());
        let blobs = Arc::new(store::FsBlobStore::open(dir.path()).unwrap());
        let ids = Identities::new(meta.clone());
        for (name, admin) in [("root", true), ("dev", false)] {
            ids.put_user(&User {
                name: name.into(),
                password_hash: auth::secret::hash_password("password-1").unwrap(),
                admin,
                disabled: false,
                created: 0,
                source: None,
            })
            .await
            .unwrap();
        }
        let pem = auth::token::KeyRing::generate_pem().unwrap();
        let keys = auth::token::KeyRing::from_pems(&pem, &[]).unwrap();
        let ac = Arc::new(
            AccessControl::new(AuthSettings::default(), keys, ids)
                .await
                .unwrap(),
        );
        let svc = Service::builder(blobs, meta)
            .access(ac.clone())
            .build()
            .unwrap();
        Fixture { _dir: dir, svc, ac }
    }

    async fn caller(ac: &AccessControl, user: &str) -> Actor {
        let c = ac
            .authorize(
                &Credential::Basic {
                    user: user.into(),
                    password: "password-1".into(),
                },
                None,
                None,
                &Need::default(),
            )
            .await
            .unwrap();
        Actor::Caller(c)
    }

    async fn events(svc: &Service, ac: &AccessControl) -> Vec<AuditEvent> {
        ac.flush_audit(Duration::from_secs(5)).await;
        svc.identities()
            .audit_query(&AuditQuery::default())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_refused_actor_runs_nothing_and_leaves_no_audit() {
        let f = fixture().await;
        let dev = caller(&f.ac, "dev").await;
        let m = f.svc.manage();
        let e = m.delete_group(&dev, "nobody").await.unwrap_err();
        assert!(
            matches!(&e, ManageError::Denied(msg) if msg.contains("dev is not an administrator")),
            "{e}"
        );
        // The wrapper refuses before the operation runs: it never sees its future polled.
        let ran = std::sync::atomic::AtomicBool::new(false);
        let r: Result<(), ManageError> = m
            .run(&dev, Privilege::Admin, async {
                ran.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(Done::changed((), Change::new("test.change", "x")))
            })
            .await;
        assert!(matches!(r, Err(ManageError::Denied(_))));
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
        let e = m
            .create_user(
                &dev,
                CreateUser {
                    name: "eve".into(),
                    password: "password-2".into(),
                    admin: true,
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(e, ManageError::Denied(_)), "{e}");
        assert!(f.svc.identities().user("eve").await.unwrap().is_none());
        assert!(events(&f.svc, &f.ac).await.is_empty());
    }

    #[tokio::test]
    async fn changes_are_audited_once_and_failures_not_at_all() {
        let f = fixture().await;
        let root = caller(&f.ac, "root").await;
        let m = f.svc.manage();
        // A failed call (too short a password, then a clash) is not audited.
        for (name, pw) in [("eve", "short"), ("dev", "password-2")] {
            assert!(
                m.create_user(
                    &root,
                    CreateUser {
                        name: name.into(),
                        password: pw.into(),
                        admin: false,
                    },
                )
                .await
                .is_err()
            );
        }
        assert!(events(&f.svc, &f.ac).await.is_empty());
        // A change is audited once, by the caller, and access control sees it at once.
        m.create_user(
            &root,
            CreateUser {
                name: "eve".into(),
                password: "password-2".into(),
                admin: false,
            },
        )
        .await
        .unwrap();
        let ev = events(&f.svc, &f.ac).await;
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(
            (ev[0].action.as_str(), ev[0].actor.as_str()),
            (IDENTITY_CHANGE, "root")
        );
        assert_eq!(ev[0].detail, "user eve added (admin: false)");
        f.ac.authorize(
            &Credential::Basic {
                user: "eve".into(),
                password: "password-2".into(),
            },
            None,
            None,
            &Need::default(),
        )
        .await
        .expect("the new user logs in: access control reloaded");
        // Reads are not audited; the local operator's changes are, under its name.
        m.users(&root).await.unwrap();
        let op = Actor::Operator("cli:tester".into());
        m.delete_user(&op, "eve").await.unwrap();
        let ev = events(&f.svc, &f.ac).await;
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert_eq!(ev[0].actor, "cli:tester");
        assert_eq!(ev[0].detail, "user eve deleted");
        // A loopback caller (no access control) may administer, not act on repositories.
        assert!(matches!(
            m.tag_history(&Actor::Loopback, "app", "v1", None).await,
            Err(ManageError::Denied(_))
        ));
    }

    /// The read-only views (versions, signatures, trusted keys) authorize as their routes
    /// always did: a reader of a repository reads its versions and signatures, nobody else
    /// does; a bad name is refused before anyone is asked; reads are not audited.
    #[tokio::test]
    async fn read_only_views_admit_readers_of_the_repository() {
        let f = fixture().await;
        let (root, dev) = (caller(&f.ac, "root").await, caller(&f.ac, "dev").await);
        let m = f.svc.manage();
        m.create_rule(
            &root,
            CreateRule {
                subject: "user:dev".into(),
                repos: "app".into(),
                actions: Actions::of(Action::Pull),
            },
        )
        .await
        .unwrap();
        let put = crate::testing::put_image;
        let app = put(f.svc.meta().as_ref(), "app", 1, &["v1.0.0"]).await;
        put(f.svc.meta().as_ref(), "secret", 2, &["v1.0.0"]).await;

        let rows = m.versions(&dev, "app").await.unwrap();
        assert_eq!(
            rows.iter()
                .map(|r| (r.tag.as_str(), r.digest.clone()))
                .collect::<Vec<_>>(),
            [("v1.0.0", app.to_string())]
        );
        let report = m.signatures(&dev, "app", "v1.0.0").await.unwrap();
        assert_eq!(report.digest, app.to_string());
        assert!(report.trusted_keys.is_empty() && report.verified.is_empty());
        assert!(m.trusted_keys(&dev).await.unwrap().is_empty());

        for e in [
            m.versions(&dev, "secret").await.unwrap_err(),
            m.signatures(&dev, "secret", "v1.0.0").await.unwrap_err(),
            m.signatures(&Actor::Loopback, "app", "v1.0.0")
                .await
                .unwrap_err(),
        ] {
            assert!(matches!(e, ManageError::Denied(_)), "{e}");
        }
        assert!(matches!(
            m.versions(&dev, "Bad").await,
            Err(ManageError::NameInvalid(_))
        ));
        assert!(matches!(
            m.versions(&root, "nothing").await,
            Err(ManageError::NotFound(_))
        ));
        assert!(matches!(
            m.signatures(&dev, "app", "v9").await,
            Err(ManageError::Store(StoreError::ManifestUnknown))
        ));
        assert!(matches!(
            m.signatures(&dev, "app", "no tag!").await,
            Err(ManageError::Invalid(_))
        ));
        let ev = events(&f.svc, &f.ac).await;
        assert_eq!(ev.len(), 1, "only the rule is audited: {ev:?}");
    }
}
