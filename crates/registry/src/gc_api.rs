//! The management API of garbage collection: `POST /api/v1/gc` runs one, `GET /api/v1/storage`
//! reports storage use (administrators; see docs/gc.md). The collector is `service::gc`.

use std::time::Duration;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use service::gc::{GcError, USAGE_MAX_AGE};

use crate::Registry;
use crate::error::{ApiError, Code};
use crate::mgmt::admin_or_loopback;

pub(crate) fn routes() -> Router<Registry> {
    Router::new()
        .route("/api/v1/gc", post(run_gc))
        .route("/api/v1/storage", get(storage))
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(Code::Unsupported, msg).with_status(StatusCode::BAD_REQUEST)
}

/// Longest grace period or expiry accepted (ten years): keeps time arithmetic far from overflow.
const MAX_SECONDS: u64 = 10 * 365 * 86_400;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GcRequest {
    #[serde(default)]
    dry_run: bool,
    grace_seconds: Option<u64>,
    upload_expiry_seconds: Option<u64>,
}

async fn run_gc(State(reg): State<Registry>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let admin = admin_or_loopback(&reg, &parts).await?;
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| bad("request body too large or interrupted"))?;
    let body: GcRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        GcRequest::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid JSON body: {e}")))?
    };
    let c = reg.service().collector();
    let mut opts = c.defaults();
    opts.dry_run = body.dry_run;
    for (v, field, name) in [
        (body.grace_seconds, &mut opts.grace, "grace_seconds"),
        (
            body.upload_expiry_seconds,
            &mut opts.upload_expiry,
            "upload_expiry_seconds",
        ),
    ] {
        if let Some(s) = v {
            if s > MAX_SECONDS {
                return Err(bad(format!("{name} must be at most {MAX_SECONDS}")));
            }
            *field = Duration::from_secs(s);
        }
    }
    let report = c.collect(&opts).await.map_err(|GcError::Store(e)| {
        ApiError::new(Code::Internal, format!("garbage collection failed: {e}"))
    })?;
    if let Some((ac, caller)) = admin {
        ac.audit(
            &caller,
            "gc.run",
            None,
            None,
            format!(
                "dry_run: {}, blobs deleted: {}, bytes freed: {}, links deleted: {}, uploads expired: {}",
                report.dry_run,
                report.blobs_deleted,
                report.bytes_freed,
                report.links_deleted,
                report.uploads_expired
            ),
        )
        .await;
    }
    Ok((StatusCode::OK, axum::Json(report)).into_response())
}

#[derive(Deserialize)]
struct StorageQuery {
    #[serde(default)]
    refresh: bool,
}

async fn storage(
    State(reg): State<Registry>,
    q: Result<Query<StorageQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    admin_or_loopback(&reg, &parts).await?;
    let Query(q) = q.map_err(|e| bad(format!("invalid query: {e}")))?;
    let max_age = if q.refresh {
        Duration::ZERO
    } else {
        USAGE_MAX_AGE
    };
    let usage = reg
        .service()
        .collector()
        .storage_usage(max_age)
        .await
        .map_err(|GcError::Store(e)| ApiError::from(e))?;
    Ok((StatusCode::OK, axum::Json(&*usage)).into_response())
}
