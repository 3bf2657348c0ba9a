//! The management API of retention: `GET /api/v1/versions?repo=`, `POST /api/v1/retention/plan`,
//! `POST /api/v1/retention/apply` (see docs/retention.md). Planning and applying are
//! `service::retention`.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use service::retention::list_versions;

use crate::error::{ApiError, Code};
use crate::{Registry, mgmt};

pub(crate) fn routes() -> Router<Registry> {
    Router::new()
        .route("/api/v1/versions", get(versions_handler))
        .route("/api/v1/retention/plan", post(plan_handler))
        .route("/api/v1/retention/apply", post(apply_handler))
}

#[derive(Deserialize)]
struct VersionsQuery {
    repo: String,
}

/// `GET /api/v1/versions?repo=R`: the tags in version order (needs pull).
async fn versions_handler(
    State(reg): State<Registry>,
    q: Result<Query<VersionsQuery>, QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let q = mgmt::query(q)?;
    oci::validate_repository(&q.repo)
        .map_err(|e| ApiError::new(Code::NameInvalid, e.to_string()))?;
    mgmt::reader(&reg, &parts, &q.repo).await?;
    let pulls = reg.service().last_pulls(&q.repo).await?;
    let rows = list_versions(reg.service().meta().as_ref(), &pulls, &q.repo)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                Code::NameUnknown,
                format!("repository {} not known", q.repo),
            )
        })?;
    Ok(mgmt::json(StatusCode::OK, &rows))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RetentionBody {
    /// Only this repository.
    #[serde(default)]
    repo: Option<String>,
}

async fn retention_body(body: axum::body::Body) -> Result<RetentionBody, ApiError> {
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| mgmt::bad("request body too large or interrupted"))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(RetentionBody::default());
    }
    let b: RetentionBody =
        serde_json::from_slice(&bytes).map_err(|e| mgmt::bad(format!("invalid JSON body: {e}")))?;
    if let Some(r) = &b.repo {
        oci::validate_repository(r).map_err(|e| ApiError::new(Code::NameInvalid, e.to_string()))?;
    }
    Ok(b)
}

/// `POST /api/v1/retention/plan {repo?}`: what the policies would delete and why (admin).
async fn plan_handler(State(reg): State<Registry>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    mgmt::admin(&reg, &parts).await?;
    let b = retention_body(body).await?;
    let plans = reg.service().retention_plan(b.repo.as_deref()).await?;
    Ok(mgmt::json(StatusCode::OK, &plans))
}

/// `POST /api/v1/retention/apply {repo?}`: deletes what the policies say (admin).
async fn apply_handler(State(reg): State<Registry>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let (_, caller) = mgmt::admin(&reg, &parts).await?;
    let b = retention_body(body).await?;
    let applied = reg
        .service()
        .retention_apply(b.repo.as_deref(), caller.principal.display())
        .await?;
    Ok(mgmt::json(StatusCode::OK, &applied))
}
