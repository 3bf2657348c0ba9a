//! The management API of retention: `GET /api/v1/versions?repo=`, `POST /api/v1/retention/plan`,
//! `POST /api/v1/retention/apply` (see docs/retention.md). Listing, planning and applying are
//! `service::manage::Manage::{versions, retention_plan, retention_apply}`.

use api::retention::RetentionRequest;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use crate::error::ApiError;
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
    let actor = mgmt::repo_caller_checked(&reg, &parts, &q.repo, None, auth::Action::Pull).await?;
    let rows = reg.service().manage().versions(&actor, &q.repo).await?;
    Ok(mgmt::json(StatusCode::OK, &rows))
}

/// `POST /api/v1/retention/plan {repo?}`: what the policies would delete and why (admin).
async fn plan_handler(State(reg): State<Registry>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let actor = mgmt::admin_actor(&reg, &parts).await?;
    let r: RetentionRequest = mgmt::body_json_or_default(body).await?;
    let plans = reg.service().manage().retention_plan(&actor, &r).await?;
    Ok(mgmt::json(StatusCode::OK, &plans))
}

/// `POST /api/v1/retention/apply {repo?}`: deletes what the policies say (admin). The answer is
/// one entry per repository; with `Accept: application/x-ndjson` it is streamed instead, one
/// JSON object a line: `{"phase","repo"?,"done","total"}` progress lines (see
/// `service::retention::RetentionProgress`), then `{"result": [...]}` (the same array), or
/// `{"errors": [...]}` when applying failed after the answer began. A refused request is
/// refused before streaming, as without the header.
async fn apply_handler(State(reg): State<Registry>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let actor = mgmt::admin_actor(&reg, &parts).await?;
    let r: RetentionRequest = mgmt::body_json_or_default(body).await?;
    if !crate::gc_api::wants_ndjson(&parts) {
        let applied = reg.service().manage().retention_apply(&actor, &r).await?;
        return Ok(mgmt::json(StatusCode::OK, &applied));
    }
    reg.service()
        .manage()
        .retention_apply_check(&actor, &r)
        .await?;
    let (mut lines, resp) = crate::gc_api::ndjson_answer();
    tokio::spawn(async move {
        let result = reg
            .service()
            .manage()
            .retention_apply_with_progress(&actor, &r, &mut |p| {
                lines.progress(p.phase.as_str(), p.done == p.total, &p)
            })
            .await
            .map_err(ApiError::from);
        lines.end(result).await;
    });
    Ok(resp)
}
