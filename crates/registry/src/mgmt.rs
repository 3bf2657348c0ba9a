//! The management API under `/api/v1/` (a prefix that cannot clash with `/v2/`): users, robots,
//! groups, permission rules and the audit log, for administrators; a tag's history and an
//! image's signatures, for readers of its repository; the trusted keys, for any identified
//! caller. Described by the OpenAPI document at `/api/v1/openapi.json`.
//!
//! The handlers are thin: parse the request, turn the caller into an actor, call one
//! `service::manage::Manage` operation (which authorizes, runs and audits), answer JSON. Their
//! extractors (`AdminActor`, `JsonBody`) and helpers (`admin_actor`, `bad`, `json`, `query`,
//! `body_json`) are public so that capabilities' management routes answer as these do.

use std::sync::Arc;

use api::audit::AuditQuery;
use api::robots::CreateRobot;
use api::rules::{CreateRule, SetGroup};
use api::tags::{HistoryQuery, Rollback};
use api::users::{CreateUser, SetDisabled, SetPassword};
use auth::Actions;
use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;

use crate::Registry;
use crate::error::{ApiError, Code};
use crate::http_access::request_origin;
use service::access::{AccessControl, Caller, Need};
use service::manage::Actor;

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
        None => Err(ApiError::new(
            Code::NameUnknown,
            "access control is not configured",
        )),
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

/// The caller of an administrators' route as the management operations' actor (see
/// [`admin`]).
pub async fn admin_actor(reg: &Registry, parts: &Parts) -> Result<Actor, ApiError> {
    admin(reg, parts)
        .await
        .map(|(_, caller)| Actor::Caller(caller))
}

/// The caller of a route open to loopback without access control (see
/// [`admin_or_loopback`]) as the management operations' actor.
pub async fn admin_or_loopback_actor(reg: &Registry, parts: &Parts) -> Result<Actor, ApiError> {
    Ok(match admin_or_loopback(reg, parts).await? {
        Some((_, caller)) => Actor::Caller(caller),
        None => Actor::Loopback,
    })
}

/// The caller of an administrators' route as the management operations' actor: the extractor
/// form of [`admin_actor`], so a handler's first act is the 401/403 (before its body is read).
pub struct AdminActor(pub Actor);

impl FromRequestParts<Registry> for AdminActor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, reg: &Registry) -> Result<Self, ApiError> {
        admin_actor(reg, parts).await.map(AdminActor)
    }
}

/// A JSON request body of at most 64 KiB: the extractor form of [`body_json`] (a bad body is a
/// 400 with the parser's words).
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequest<Registry> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &Registry) -> Result<Self, ApiError> {
        body_json(req.into_body()).await.map(JsonBody)
    }
}

/// A JSON answer with `status`.
pub fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response {
    (status, Json(v)).into_response()
}

/// Reads a JSON request body of at most 64 KiB.
pub async fn body_json<T: serde::de::DeserializeOwned>(
    body: axum::body::Body,
) -> Result<T, ApiError> {
    let bytes = body_bytes(body).await?;
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

/// Reads a JSON request body of at most 64 KiB; an empty one (or only whitespace) is `T`'s
/// default, for requests whose every field is optional.
pub async fn body_json_or_default<T: serde::de::DeserializeOwned + Default>(
    body: axum::body::Body,
) -> Result<T, ApiError> {
    let bytes = body_bytes(body).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

async fn body_bytes(body: axum::body::Body) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| bad("request body too large or interrupted"))
}

async fn list_users(State(reg): State<Registry>, AdminActor(actor): AdminActor) -> MResult {
    let users = reg.service().manage().users(&actor).await?;
    Ok(json(StatusCode::OK, &users))
}

async fn create_user(
    State(reg): State<Registry>,
    AdminActor(actor): AdminActor,
    JsonBody(n): JsonBody<CreateUser>,
) -> MResult {
    let u = reg.service().manage().create_user(&actor, n).await?;
    Ok(json(StatusCode::CREATED, &u))
}

async fn delete_user(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    AdminActor(actor): AdminActor,
) -> MResult {
    reg.service().manage().delete_user(&actor, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_password(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    AdminActor(actor): AdminActor,
    JsonBody(p): JsonBody<SetPassword>,
) -> MResult {
    reg.service()
        .manage()
        .set_password(&actor, &name, p)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /api/v1/users/{name}/disabled {"disabled": bool}`: disables or re-enables a user (the
/// last active administrator cannot be disabled: 409).
async fn set_disabled(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    AdminActor(actor): AdminActor,
    JsonBody(d): JsonBody<SetDisabled>,
) -> MResult {
    let u = reg
        .service()
        .manage()
        .set_disabled(&actor, &name, d)
        .await?;
    Ok(json(StatusCode::OK, &u))
}

async fn list_robots(State(reg): State<Registry>, AdminActor(actor): AdminActor) -> MResult {
    let robots = reg.service().manage().robots(&actor).await?;
    Ok(json(StatusCode::OK, &robots))
}

async fn create_robot(
    State(reg): State<Registry>,
    AdminActor(actor): AdminActor,
    JsonBody(n): JsonBody<CreateRobot>,
) -> MResult {
    let secret = reg.service().manage().create_robot(&actor, n).await?;
    Ok(json(StatusCode::CREATED, &secret))
}

async fn revoke_robot(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    AdminActor(actor): AdminActor,
) -> MResult {
    reg.service().manage().revoke_robot(&actor, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn rotate_robot(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    AdminActor(actor): AdminActor,
) -> MResult {
    let secret = reg.service().manage().rotate_robot(&actor, &name).await?;
    Ok(json(StatusCode::OK, &secret))
}

async fn list_groups(State(reg): State<Registry>, AdminActor(actor): AdminActor) -> MResult {
    Ok(json(
        StatusCode::OK,
        &reg.service().manage().groups(&actor).await?,
    ))
}

async fn set_group(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    AdminActor(actor): AdminActor,
    body: axum::body::Body,
) -> MResult {
    // The name before the body: a bad name is the 400, whatever the body.
    auth::identity::validate_name(&name).map_err(bad)?;
    let m: SetGroup = body_json(body).await?;
    let g = reg.service().manage().set_group(&actor, &name, m).await?;
    Ok(json(StatusCode::OK, &g))
}

async fn delete_group(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    AdminActor(actor): AdminActor,
) -> MResult {
    reg.service().manage().delete_group(&actor, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_rules(State(reg): State<Registry>, AdminActor(actor): AdminActor) -> MResult {
    Ok(json(
        StatusCode::OK,
        &reg.service().manage().rules(&actor).await?,
    ))
}

async fn create_rule(
    State(reg): State<Registry>,
    AdminActor(actor): AdminActor,
    JsonBody(n): JsonBody<CreateRule>,
) -> MResult {
    let rule = reg.service().manage().create_rule(&actor, n).await?;
    Ok(json(StatusCode::CREATED, &rule))
}

async fn delete_rule(
    State(reg): State<Registry>,
    Path(id): Path<String>,
    AdminActor(actor): AdminActor,
) -> MResult {
    reg.service().manage().delete_rule(&actor, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn audit(
    State(reg): State<Registry>,
    q: Result<Query<AuditQuery>, QueryRejection>,
    req: Request,
) -> MResult {
    let (parts, _) = req.into_parts();
    let q = query(q)?;
    let actor = admin_actor(&reg, &parts).await?;
    let events = reg.service().manage().audit(&actor, &q).await?;
    Ok(json(StatusCode::OK, &events))
}

#[derive(Deserialize)]
struct SignatureQuery {
    repo: String,
    reference: String,
}

/// The caller access control admits for `need` (the open caller without access control).
async fn caller(reg: &Registry, parts: &Parts, need: &Need) -> Result<Caller, ApiError> {
    let Some(ac) = reg.access() else {
        return Ok(Caller::open());
    };
    let (source, cert) = request_origin(&parts.extensions);
    crate::http_access::authorize(ac, &parts.headers, source, cert, need).await
}

/// Admits callers who may take `action` on `repo`; returns the caller.
async fn repo_caller(
    reg: &Registry,
    parts: &Parts,
    repo: &str,
    action: auth::Action,
) -> Result<Caller, ApiError> {
    let need = Need {
        repo: Some((repo.to_owned(), Actions::of(action))),
        scope_actions: Actions::of(action),
        ..Need::default()
    };
    caller(reg, parts, &need).await
}

/// `GET /api/v1/signatures?repo=R&reference=TAG|DIGEST`: the image's signatures and which
/// trusted keys verified them (read access to the repository, not administration).
async fn signatures(
    State(reg): State<Registry>,
    q: Result<Query<SignatureQuery>, QueryRejection>,
    req: Request,
) -> MResult {
    let (parts, _) = req.into_parts();
    let q = query(q)?;
    let actor = repo_caller_checked(&reg, &parts, &q.repo, None, auth::Action::Pull).await?;
    let report = reg
        .service()
        .manage()
        .signatures(&actor, &q.repo, &q.reference)
        .await?;
    Ok(json(StatusCode::OK, &report))
}

/// `GET /api/v1/trusted-keys`: names and ids of the keys the server trusts (any identified
/// caller).
async fn trusted_keys(State(reg): State<Registry>, req: Request) -> MResult {
    let (parts, _) = req.into_parts();
    let actor = Actor::Caller(caller(&reg, &parts, &Need::default()).await?);
    let keys = reg.service().manage().trusted_keys(&actor).await?;
    Ok(json(StatusCode::OK, &keys))
}

/// `GET /api/v1/tags/history?repo=R&tag=T`: every change of the tag, newest first.
async fn tag_history(
    State(reg): State<Registry>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
    req: Request,
) -> MResult {
    let (parts, _) = req.into_parts();
    let q = query(q)?;
    let caller =
        repo_caller_checked(&reg, &parts, &q.repo, Some(&q.tag), auth::Action::Pull).await?;
    let events = reg
        .service()
        .manage()
        .tag_history(&caller, &q.repo, &q.tag, q.limit)
        .await?;
    Ok(json(StatusCode::OK, &events))
}

/// The caller of a repository route, once the repository name (and tag) are valid: the
/// name is checked before the caller so that a bad name is a 400 whoever asks.
pub(crate) async fn repo_caller_checked(
    reg: &Registry,
    parts: &Parts,
    repo: &str,
    tag: Option<&str>,
    action: auth::Action,
) -> Result<Actor, ApiError> {
    service::manage::check_repo_tag(repo, tag)?;
    repo_caller(reg, parts, repo, action)
        .await
        .map(Actor::Caller)
}

/// `POST /api/v1/tags/rollback {repo, tag, to | steps}`: moves a tag back (needs push; the move
/// is itself recorded; immutable tags and read-only cached repositories refuse it).
async fn tag_rollback(State(reg): State<Registry>, req: Request) -> MResult {
    let (parts, body) = req.into_parts();
    let r: Rollback = body_json(body).await?;
    let actor =
        repo_caller_checked(&reg, &parts, &r.repo, Some(&r.tag), auth::Action::Push).await?;
    let read_only = reg.refuse_write(&r.repo).err().map(|e| e.message);
    let done = reg
        .service()
        .manage()
        .rollback(&actor, r, read_only)
        .await?;
    Ok(json(StatusCode::OK, &done))
}
