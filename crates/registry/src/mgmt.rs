//! The management API under `/api/v1/` (a prefix that cannot clash with `/v2/`): users, robots,
//! groups, permission rules and the audit log, for administrators. Described by the OpenAPI
//! document at `/api/v1/openapi.json`.
//!
//! Its helpers (`admin`, `bad`, `json`, `query`, `body_json`) are public so that capabilities'
//! management routes answer as these do.

use std::sync::Arc;

use auth::{Actions, Group, Robot, Rule, Subject, User};
use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;

use crate::Registry;
use crate::error::{ApiError, Code};
use crate::http_access::request_origin;
use service::access::{AccessControl, Caller, Need};
use service::identities::{AuditQuery, IdentityError};

/// The OpenAPI document, kept beside the handlers it describes.
const OPENAPI: &str = include_str!("openapi.json");

pub(crate) fn routes() -> Router<Registry> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/users", get(list_users).post(create_user))
        .route("/api/v1/users/{name}", axum::routing::delete(delete_user))
        .route("/api/v1/users/{name}/password", put(set_password))
        .route("/api/v1/users/{name}/disabled", put(set_disabled))
        .route("/api/v1/robots", get(list_robots).post(create_robot))
        .route("/api/v1/robots/{name}/revoke", post(revoke_robot))
        .route("/api/v1/robots/{name}/rotate", post(rotate_robot))
        .route("/api/v1/groups", get(list_groups))
        .route("/api/v1/groups/{name}", put(set_group).delete(delete_group))
        .route("/api/v1/rules", get(list_rules).post(create_rule))
        .route("/api/v1/rules/{id}", axum::routing::delete(delete_rule))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/signatures", get(signatures))
        .route("/api/v1/tags/history", get(tag_history))
        .route("/api/v1/tags/rollback", post(tag_rollback))
        .route("/api/v1/trusted-keys", get(trusted_keys))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

type MResult = Result<Response, ApiError>;

/// A 400 answer with the registry's JSON error body.
pub fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(Code::Unsupported, msg).with_status(StatusCode::BAD_REQUEST)
}

fn not_found(msg: impl Into<String>) -> ApiError {
    ApiError::new(Code::NameUnknown, msg)
}

fn internal(e: store::StoreError) -> ApiError {
    ApiError::from(e)
}

/// A refused identity change: 400 for a malformed one, 409 for a clash with what exists.
fn refused(e: IdentityError) -> ApiError {
    match e {
        IdentityError::Store(e) => internal(e),
        IdentityError::Invalid(m) => bad(m),
        IdentityError::Conflict(m) => bad(m).with_status(StatusCode::CONFLICT),
    }
}

/// The query string parsed as `T`, or a 400 with the registry's JSON error body (axum's own
/// rejection is a plain-text body, which the OpenAPI document does not describe).
pub fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| bad(format!("invalid query string: {}", e.body_text())))
}

/// Admits administrators; with access control not yet enforced, only loopback callers (so the
/// first administrator can be created locally, never from the network).
pub async fn admin(
    reg: &Registry,
    parts: &Parts,
) -> Result<(Arc<AccessControl>, Caller), ApiError> {
    match admin_or_loopback(reg, parts).await? {
        Some(found) => Ok(found),
        None => Err(not_found("access control is not configured")),
    }
}

/// The one authorization of every management route: an administrator (or, until a user or
/// robot exists, a caller on loopback). Without access control configured at all, only callers
/// on loopback pass, and there is no caller to audit (`None`).
pub async fn admin_or_loopback(
    reg: &Registry,
    parts: &Parts,
) -> Result<Option<(Arc<AccessControl>, Caller)>, ApiError> {
    let (source, cert) = request_origin(&parts.extensions);
    let loopback = source.is_some_and(|ip| ip.is_loopback());
    let Some(ac) = reg.access().cloned() else {
        return if loopback {
            Ok(None)
        } else {
            Err(ApiError::new(
                Code::Denied,
                "the management API is open only on loopback without access control",
            ))
        };
    };
    let need = Need {
        admin: true,
        ..Need::default()
    };
    let caller = crate::http_access::authorize(&ac, &parts.headers, source, cert, &need).await?;
    if caller.open && !loopback {
        return Err(ApiError::new(
            Code::Denied,
            "the management API is open only on loopback until a user or robot exists",
        ));
    }
    Ok(Some((ac, caller)))
}

async fn changed(ac: &AccessControl, caller: &Caller, detail: String) -> Result<(), ApiError> {
    ac.reload().await.map_err(internal)?;
    ac.audit(caller, "identity.change", None, None, detail)
        .await;
    Ok(())
}

/// A JSON answer with `status`.
pub fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response {
    (status, Json(v)).into_response()
}

/// Reads a JSON request body of at most 64 KiB.
pub async fn body_json<T: serde::de::DeserializeOwned>(
    body: axum::body::Body,
) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| bad("request body too large or interrupted"))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

fn user_view(u: &User) -> serde_json::Value {
    serde_json::json!({"name": u.name, "admin": u.admin, "disabled": u.disabled, "created": u.created})
}

async fn list_users(State(reg): State<Registry>, req: Request) -> MResult {
    let (parts, _) = req.into_parts();
    let (ac, _) = admin(&reg, &parts).await?;
    let users = ac.identities().users().await.map_err(internal)?;
    Ok(json(
        StatusCode::OK,
        &users.iter().map(user_view).collect::<Vec<_>>(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

fn check_password(pw: &str) -> Result<(), ApiError> {
    auth::identity::validate_password(pw).map_err(bad)
}

async fn hash(pw: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || auth::secret::hash_password(&pw))
        .await
        .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?
        .map_err(|e| ApiError::new(Code::Internal, e.to_string()))
}

async fn create_user(State(reg): State<Registry>, req: Request) -> MResult {
    let (parts, body) = req.into_parts();
    let (ac, caller) = admin(&reg, &parts).await?;
    let n: NewUser = body_json(body).await?;
    auth::identity::validate_user_name(&n.name).map_err(bad)?;
    check_password(&n.password)?;
    let ids = ac.identities();
    if ids.user(&n.name).await.map_err(internal)?.is_some() {
        return Err(
            bad(format!("user {} already exists", n.name)).with_status(StatusCode::CONFLICT)
        );
    }
    let u = User {
        name: n.name.clone(),
        password_hash: hash(n.password).await?,
        admin: n.admin,
        disabled: false,
        created: auth::now(),
        source: None,
    };
    ids.put_user(&u).await.map_err(refused)?;
    changed(
        &ac,
        &caller,
        format!("user {} added (admin: {})", u.name, u.admin),
    )
    .await?;
    Ok(json(StatusCode::CREATED, &user_view(&u)))
}

async fn delete_user(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    req: Request,
) -> MResult {
    let (parts, _) = req.into_parts();
    let (ac, caller) = admin(&reg, &parts).await?;
    if !ac.identities().delete_user(&name).await.map_err(refused)? {
        return Err(not_found(format!("no user {name}")));
    }
    changed(&ac, &caller, format!("user {name} deleted")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Password {
    password: String,
}

async fn set_password(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    req: Request,
) -> MResult {
    let (parts, body) = req.into_parts();
    let (ac, caller) = admin(&reg, &parts).await?;
    let p: Password = body_json(body).await?;
    check_password(&p.password)?;
    let password_hash = hash(p.password).await?;
    update_user(
        &ac,
        &caller,
        &name,
        |u| u.password_hash = password_hash,
        "password changed",
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Changes the stored user `name` (404 when there is none; the identity rules, such as keeping
/// an active administrator, refuse with their own codes), then reloads and audits `what`.
async fn update_user(
    ac: &AccessControl,
    caller: &Caller,
    name: &str,
    change: impl FnOnce(&mut User),
    what: &str,
) -> Result<User, ApiError> {
    let ids = ac.identities();
    let mut u = ids
        .user(name)
        .await
        .map_err(internal)?
        .ok_or_else(|| not_found(format!("no user {name}")))?;
    change(&mut u);
    ids.put_user(&u).await.map_err(refused)?;
    changed(ac, caller, format!("user {name} {what}")).await?;
    Ok(u)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Disabled {
    disabled: bool,
}

/// `PUT /api/v1/users/{name}/disabled {"disabled": bool}`: disables or re-enables a user (the
/// last active administrator cannot be disabled: 409).
async fn set_disabled(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    req: Request,
) -> MResult {
    let (parts, body) = req.into_parts();
    let (ac, caller) = admin(&reg, &parts).await?;
    let d: Disabled = body_json(body).await?;
    let what = if d.disabled { "disabled" } else { "enabled" };
    let u = update_user(&ac, &caller, &name, |u| u.disabled = d.disabled, what).await?;
    Ok(json(StatusCode::OK, &user_view(&u)))
}

fn robot_view(r: &Robot) -> serde_json::Value {
    serde_json::json!({
        "name": r.name, "login": format!("{}{}", auth::identity::ROBOT_PREFIX, r.name),
        "repos": r.repos, "actions": r.actions, "expires_at": r.expires_at,
        "revoked": r.revoked, "created": r.created, "description": r.description,
    })
}

async fn list_robots(State(reg): State<Registry>, req: Request) -> MResult {
    let (parts, _) = req.into_parts();
    let (ac, _) = admin(&reg, &parts).await?;
    let robots = ac.identities().robots().await.map_err(internal)?;
    Ok(json(
        StatusCode::OK,
        &robots.iter().map(robot_view).collect::<Vec<_>>(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRobot {
    name: String,
    repos: Vec<String>,
    actions: Actions,
    #[serde(default)]
    expires_in_seconds: Option<u64>,
    #[serde(default)]
    description: String,
}

fn secret_view(r: &Robot, secret: &str) -> serde_json::Value {
    serde_json::json!({"login": format!("{}{}", auth::identity::ROBOT_PREFIX, r.name), "secret": secret})
}

async fn create_robot(State(reg): State<Registry>, req: Request) -> MResult {
    let (parts, body) = req.into_parts();
    let (ac, caller) = admin(&reg, &parts).await?;
    let n: NewRobot = body_json(body).await?;
    auth::identity::validate_name(&n.name).map_err(bad)?;
    if n.repos.is_empty() {
        return Err(bad("a robot needs at least one repository pattern"));
    }
    for p in &n.repos {
        auth::Pattern::new(p).map_err(bad)?;
    }
    let ids = ac.identities();
    if ids.robot(&n.name).await.map_err(internal)?.is_some() {
        return Err(
            bad(format!("robot {} already exists", n.name)).with_status(StatusCode::CONFLICT)
        );
    }
    let secret = auth::secret::generate_secret()
        .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?;
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
    ids.put_robot(&r).await.map_err(refused)?;
    changed(
        &ac,
        &caller,
        format!(
            "robot {} created for {} ({})",
            r.name,
            r.repos.join(" "),
            r.actions
        ),
    )
    .await?;
    Ok(json(StatusCode::CREATED, &secret_view(&r, &secret)))
}

async fn robot_update(reg: &Registry, parts: &Parts, name: &str, rotate: bool) -> MResult {
    let (ac, caller) = admin(reg, parts).await?;
    let ids = ac.identities();
    let mut r = ids
        .robot(name)
        .await
        .map_err(internal)?
        .ok_or_else(|| not_found(format!("no robot {name}")))?;
    if !rotate {
        r.revoked = true;
        ids.put_robot(&r).await.map_err(refused)?;
        changed(&ac, &caller, format!("robot {name} revoked")).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let secret = auth::secret::generate_secret()
        .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?;
    r.secret_hash = auth::secret::hash_secret(&secret);
    r.revoked = false;
    ids.put_robot(&r).await.map_err(refused)?;
    changed(&ac, &caller, format!("robot {name} secret rotated")).await?;
    Ok(json(StatusCode::OK, &secret_view(&r, &secret)))
}

async fn revoke_robot(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    req: Request,
) -> MResult {
    let (parts, _) = req.into_parts();
    robot_update(&reg, &parts, &name, false).await
}

async fn rotate_robot(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    req: Request,
) -> MResult {
    let (parts, _) = req.into_parts();
    robot_update(&reg, &parts, &name, true).await
}

async fn list_groups(State(reg): State<Registry>, req: Request) -> MResult {
    let (parts, _) = req.into_parts();
    let (ac, _) = admin(&reg, &parts).await?;
    Ok(json(
        StatusCode::OK,
        &ac.identities().groups().await.map_err(internal)?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Members {
    members: Vec<String>,
}

async fn set_group(State(reg): State<Registry>, Path(name): Path<String>, req: Request) -> MResult {
    let (parts, body) = req.into_parts();
    let (ac, caller) = admin(&reg, &parts).await?;
    auth::identity::validate_name(&name).map_err(bad)?;
    let m: Members = body_json(body).await?;
    let g = Group {
        name: name.clone(),
        members: m.members,
    };
    ac.identities().put_group(&g).await.map_err(refused)?;
    changed(
        &ac,
        &caller,
        format!("group {name} set to [{}]", g.members.join(", ")),
    )
    .await?;
    Ok(json(StatusCode::OK, &g))
}

async fn delete_group(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    req: Request,
) -> MResult {
    let (parts, _) = req.into_parts();
    let (ac, caller) = admin(&reg, &parts).await?;
    if !ac
        .identities()
        .delete_group(&name)
        .await
        .map_err(internal)?
    {
        return Err(not_found(format!("no group {name}")));
    }
    changed(&ac, &caller, format!("group {name} deleted")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_rules(State(reg): State<Registry>, req: Request) -> MResult {
    let (parts, _) = req.into_parts();
    let (ac, _) = admin(&reg, &parts).await?;
    Ok(json(
        StatusCode::OK,
        &ac.identities().rules().await.map_err(internal)?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRule {
    subject: String,
    repos: String,
    actions: Actions,
}

async fn create_rule(State(reg): State<Registry>, req: Request) -> MResult {
    let (parts, body) = req.into_parts();
    let (ac, caller) = admin(&reg, &parts).await?;
    let n: NewRule = body_json(body).await?;
    let subject = Subject::parse(&n.subject)
        .ok_or_else(|| bad("subject must be user:NAME, group:NAME, robot:NAME or anonymous"))?;
    auth::Pattern::new(&n.repos).map_err(bad)?;
    if n.actions.is_empty() {
        return Err(bad("a rule needs at least one action"));
    }
    let id = hex::encode(
        auth::secret::random_bytes::<6>()
            .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?,
    );
    let rule = Rule {
        id,
        subject,
        repos: n.repos,
        actions: n.actions,
    };
    ac.identities().put_rule(&rule).await.map_err(internal)?;
    changed(
        &ac,
        &caller,
        format!(
            "rule {}: {} may {} {}",
            rule.id, rule.subject, rule.actions, rule.repos
        ),
    )
    .await?;
    Ok(json(StatusCode::CREATED, &rule))
}

async fn delete_rule(State(reg): State<Registry>, Path(id): Path<String>, req: Request) -> MResult {
    let (parts, _) = req.into_parts();
    let (ac, caller) = admin(&reg, &parts).await?;
    if !ac.identities().delete_rule(&id).await.map_err(internal)? {
        return Err(not_found(format!("no rule {id}")));
    }
    changed(&ac, &caller, format!("rule {id} deleted")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct AuditParams {
    actor: Option<String>,
    repo: Option<String>,
    action: Option<String>,
    since: Option<u64>,
    limit: Option<usize>,
}

async fn audit(
    State(reg): State<Registry>,
    q: Result<Query<AuditParams>, QueryRejection>,
    req: Request,
) -> MResult {
    let (parts, _) = req.into_parts();
    let q = query(q)?;
    let (ac, _) = admin(&reg, &parts).await?;
    let events = ac
        .identities()
        .audit_query(&AuditQuery {
            actor: q.actor,
            repo: q.repo,
            action: q.action,
            since: q.since,
            limit: q.limit.unwrap_or(100),
        })
        .await
        .map_err(internal)?;
    Ok(json(StatusCode::OK, &events))
}

#[derive(Deserialize)]
struct SignatureQuery {
    repo: String,
    reference: String,
}

/// Admits callers who may pull `repo` (signature reports are read access, not administration).
pub(crate) async fn reader(reg: &Registry, parts: &Parts, repo: &str) -> Result<(), ApiError> {
    repo_caller(reg, parts, repo, auth::Action::Pull)
        .await
        .map(|_| ())
}

/// Admits callers who may take `action` on `repo`; returns the caller.
async fn repo_caller(
    reg: &Registry,
    parts: &Parts,
    repo: &str,
    action: auth::Action,
) -> Result<Caller, ApiError> {
    let Some(ac) = reg.access() else {
        return Ok(Caller::open());
    };
    let (source, cert) = request_origin(&parts.extensions);
    let need = Need {
        repo: Some((repo.to_owned(), Actions::of(action))),
        scope_actions: Actions::of(action),
        ..Need::default()
    };
    crate::http_access::authorize(ac, &parts.headers, source, cert, &need).await
}

/// `GET /api/v1/signatures?repo=R&reference=TAG|DIGEST`: the image's signatures and which
/// trusted keys verified them.
async fn signatures(
    State(reg): State<Registry>,
    q: Result<Query<SignatureQuery>, QueryRejection>,
    req: Request,
) -> MResult {
    let (parts, _) = req.into_parts();
    let q = query(q)?;
    oci::validate_repository(&q.repo)
        .map_err(|e| ApiError::new(Code::NameInvalid, e.to_string()))?;
    reader(&reg, &parts, &q.repo).await?;
    let r = oci::Reference::parse(&q.reference).map_err(|e| bad(e.to_string()))?;
    let m = reg
        .service()
        .meta()
        .get_manifest(&q.repo, &r)
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::new(Code::ManifestUnknown, "manifest unknown"))?;
    let Some(policy) = reg.service().signing() else {
        return Ok(json(
            StatusCode::OK,
            &serde_json::json!({"digest": m.digest, "trusted_keys": [], "verified": [], "rejected": []}),
        ));
    };
    let v = policy
        .report(
            reg.service().meta().as_ref(),
            reg.service().blobs().as_ref(),
            &q.repo,
            &m.digest,
        )
        .await
        .map_err(internal)?;
    let verified: Vec<serde_json::Value> = v
        .verified
        .iter()
        .map(|s| {
            serde_json::json!({
                "source": s.source, "format": s.format, "key": policy.keys()[s.key_index].name,
                "key_id": s.key_id, "identity": s.identity, "annotations": s.annotations,
            })
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "digest": m.digest,
            "trusted_keys": policy.keys().iter().map(|k| &k.name).collect::<Vec<_>>(),
            "verified": verified,
            "rejected": v.rejected,
        }),
    ))
}

/// `GET /api/v1/trusted-keys`: names and ids of the keys the server trusts.
async fn trusted_keys(State(reg): State<Registry>, req: Request) -> MResult {
    let (parts, _) = req.into_parts();
    if let Some(ac) = reg.access() {
        let (source, cert) = request_origin(&parts.extensions);
        crate::http_access::authorize(ac, &parts.headers, source, cert, &Need::default()).await?;
    }
    let keys: Vec<serde_json::Value> = reg
        .service()
        .signing()
        .iter()
        .flat_map(|p| p.keys())
        .map(|k| serde_json::json!({"name": k.name, "key_id": k.key.key_id(), "algorithm": k.key.algorithm().to_string()}))
        .collect();
    Ok(json(StatusCode::OK, &keys))
}

#[derive(Deserialize)]
struct HistoryQuery {
    repo: String,
    tag: String,
    limit: Option<usize>,
}

fn check_repo_tag(repo: &str, tag: &str) -> Result<(), ApiError> {
    oci::validate_repository(repo).map_err(|e| ApiError::new(Code::NameInvalid, e.to_string()))?;
    oci::validate_tag(tag).map_err(|e| bad(e.to_string()))
}

/// `GET /api/v1/tags/history?repo=R&tag=T`: every change of the tag, newest first.
async fn tag_history(
    State(reg): State<Registry>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
    req: Request,
) -> MResult {
    let (parts, _) = req.into_parts();
    let q = query(q)?;
    check_repo_tag(&q.repo, &q.tag)?;
    reader(&reg, &parts, &q.repo).await?;
    let events = reg
        .service()
        .meta()
        .tag_history(&q.repo, &q.tag, q.limit.unwrap_or(100).clamp(1, 10_000))
        .await
        .map_err(internal)?;
    Ok(json(StatusCode::OK, &events))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rollback {
    repo: String,
    tag: String,
    /// Move the tag to this digest...
    #[serde(default)]
    to: Option<String>,
    /// ...or to where it pointed this many changes ago.
    #[serde(default)]
    steps: Option<usize>,
}

/// `POST /api/v1/tags/rollback {repo, tag, to | steps}`: moves a tag back (needs push; the move
/// is itself recorded; immutable tags and read-only cached repositories refuse it).
async fn tag_rollback(State(reg): State<Registry>, req: Request) -> MResult {
    let (parts, body) = req.into_parts();
    let r: Rollback = body_json(body).await?;
    check_repo_tag(&r.repo, &r.tag)?;
    let caller = repo_caller(&reg, &parts, &r.repo, auth::Action::Push).await?;
    reg.refuse_write(&r.repo)?;
    let target = match (&r.to, r.steps) {
        (Some(d), None) => {
            oci::Digest::parse(d).map_err(|e| ApiError::new(Code::DigestInvalid, e.to_string()))?
        }
        (None, Some(n)) if n >= 1 => {
            let history = reg
                .service()
                .meta()
                .tag_history(&r.repo, &r.tag, n + 1)
                .await
                .map_err(internal)?;
            let prev = history
                .get(n - 1)
                .and_then(|e| e.previous.clone())
                .ok_or_else(|| {
                    bad(format!(
                        "{}:{} has fewer than {n} earlier positions",
                        r.repo, r.tag
                    ))
                })?;
            oci::Digest::parse(&prev).map_err(|e| ApiError::new(Code::Internal, e.to_string()))?
        }
        _ => {
            return Err(bad(
                "give exactly one of `to` (a digest) or `steps` (1 or more)",
            ));
        }
    };
    let frozen = reg
        .service()
        .tag_rules()
        .immutable(&r.repo, &r.tag)
        .is_some();
    reg.service()
        .meta()
        .set_tag(&r.repo, &r.tag, &target, caller.principal.display(), frozen)
        .await?;
    reg.audit(
        &caller,
        "rollback",
        &r.repo,
        target.to_string(),
        format!("tag {}", r.tag),
    )
    .await;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"repo": r.repo, "tag": r.tag, "digest": target}),
    ))
}
