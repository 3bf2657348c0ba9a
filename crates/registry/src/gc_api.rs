//! The management API of garbage collection: `POST /api/v1/gc` runs one, `GET /api/v1/storage`
//! reports storage use (administrators; see docs/gc.md). The operations are
//! `service::manage::Manage::{gc, storage}`.

use api::gc::GcRequest;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

use crate::Registry;
use crate::error::ApiError;
use crate::mgmt::{admin_or_loopback_actor, body_json_or_default, json, query};

pub(crate) fn routes() -> Router<Registry> {
    Router::new()
        .route("/api/v1/gc", post(run_gc))
        .route("/api/v1/storage", get(storage))
}

/// Whether the request asks for the streamed answer of a long operation
/// (`Accept: application/x-ndjson`, [`api::NDJSON`]); the cache's warm-up asks it too.
pub fn wants_ndjson(parts: &axum::http::request::Parts) -> bool {
    parts
        .headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(api::NDJSON)
        })
}

/// How often a streamed answer reports progress at most within one phase (a phase's start and
/// end are always reported).
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Progress lines a slow reader may leave unread before further ones are dropped (the result
/// line never is).
const PROGRESS_BACKLOG: usize = 64;

/// The writing end of a streamed answer (see [`ndjson_answer`]).
pub(crate) struct Lines {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    /// When the last progress line was sent, and of which phase.
    last: Option<(Instant, &'static str)>,
}

impl Lines {
    /// Sends `p` as a progress line of `phase` if it is due: the first of its phase, `last` of
    /// it, or [`PROGRESS_EVERY`] after the previous line. Dropped when the reader is behind.
    pub(crate) fn progress<P: Serialize>(&mut self, phase: &'static str, last: bool, p: &P) {
        let due = match self.last {
            None => true,
            Some((at, ph)) => ph != phase || last || at.elapsed() >= PROGRESS_EVERY,
        };
        if !due {
            return;
        }
        self.last = Some((Instant::now(), phase));
        if let Ok(mut line) = serde_json::to_vec(p) {
            line.push(b'\n');
            let _ = self.tx.try_send(line.into());
        }
    }

    /// Sends the last line: `{"result": ...}`, or `{"errors": [...]}` when the operation failed
    /// after the answer began.
    pub(crate) async fn end<T: Serialize>(self, r: Result<T, ApiError>) {
        let end = match r {
            Ok(v) => serde_json::json!({ "result": v }),
            Err(e) => serde_json::json!({
                "errors": [{"code": e.code.as_str(), "message": e.message, "detail": null}]
            }),
        };
        let mut line = end.to_string().into_bytes();
        line.push(b'\n');
        let _ = self.tx.send(line.into()).await;
    }
}

/// A streamed `200` answer (`application/x-ndjson`) and the [`Lines`] that write it. The
/// caller runs the operation in a task of its own (a client that goes away does not stop it)
/// and ends with [`Lines::end`].
pub(crate) fn ndjson_answer() -> (Lines, Response) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(PROGRESS_BACKLOG);
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    let resp = (
        StatusCode::OK,
        [
            (axum::http::header::CONTENT_TYPE, api::NDJSON),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        axum::body::Body::from_stream(lines),
    )
        .into_response();
    (Lines { tx, last: None }, resp)
}

/// `POST /api/v1/gc {dry_run?, grace_seconds?, upload_expiry_seconds?}` (an empty body: the
/// configured defaults). The answer is the report; with `Accept: application/x-ndjson` it is
/// streamed instead, one JSON object a line: `{"phase","done","total"?}` progress lines (see
/// `service::gc::GcProgress`), then `{"result": REPORT}`, or `{"errors": [...]}` when the
/// collection failed after the answer began. A refused request (not an administrator, a bad
/// option) is refused before streaming, as without the header.
async fn run_gc(State(reg): State<Registry>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let actor = admin_or_loopback_actor(&reg, &parts).await?;
    let r: GcRequest = body_json_or_default(body).await?;
    if !wants_ndjson(&parts) {
        let report = reg.service().manage().gc(&actor, r).await?;
        return Ok(json(StatusCode::OK, &report));
    }
    reg.service().manage().gc_check(&actor, &r).await?;
    let (mut lines, resp) = ndjson_answer();
    tokio::spawn(async move {
        let result = reg
            .service()
            .manage()
            .gc_with_progress(&actor, r, &mut |p| {
                lines.progress(p.phase.as_str(), p.total == Some(p.done), &p)
            })
            .await
            .map_err(ApiError::from);
        lines.end(result).await;
    });
    Ok(resp)
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
