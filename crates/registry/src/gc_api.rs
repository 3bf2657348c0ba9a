//! The management API of garbage collection: `POST /api/v1/gc` runs one, `GET /api/v1/storage`
//! reports storage use (administrators; see docs/gc.md). The operations are
//! `service::manage::Manage::{gc, storage}`.

use api::gc::GcRequest;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use crate::Registry;
use crate::error::ApiError;
use crate::mgmt::{admin_or_loopback_actor, body_json_or_default, json, query};

pub(crate) fn routes() -> Router<Registry> {
    Router::new()
        .route("/api/v1/gc", post(run_gc))
        .route("/api/v1/storage", get(storage))
}

/// `POST /api/v1/gc {dry_run?, grace_seconds?, upload_expiry_seconds?}` (an empty body: the
/// configured defaults).
async fn run_gc(State(reg): State<Registry>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let actor = admin_or_loopback_actor(&reg, &parts).await?;
    let r: GcRequest = body_json_or_default(body).await?;
    let report = reg.service().manage().gc(&actor, r).await?;
    Ok(json(StatusCode::OK, &report))
}

#[derive(Deserialize)]
struct StorageQuery {
    #[serde(default)]
    refresh: bool,
}

async fn storage(
    State(reg): State<Registry>,
    q: Result<Query<StorageQuery>, QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let actor = admin_or_loopback_actor(&reg, &parts).await?;
    let q = query(q)?;
    let usage = reg.service().manage().storage(&actor, q.refresh).await?;
    Ok(json(StatusCode::OK, &*usage))
}
