//! The scanning routes of the management API (administrators, like the rest of `/api/v1`):
//!
//! - `GET /api/v1/scan/images?repository=R&reference=TAG|DIGEST`: scan state and findings;
//! - `POST /api/v1/scan/images` `{"repository": R, "reference": TAG|DIGEST}`: (re)scan now;
//! - `GET /api/v1/scan/status`: the queue, the loaded feeds and the database's warnings.

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use oci::{Digest, Reference};
use registry::mgmt::{admin_actor, bad, body_json, json, query};
use registry::{ApiError, Code, Registry};
use serde::{Deserialize, Serialize};
use service::manage::{Change, Done, Privilege};

use super::ScanCapability;

type MResult = Result<Response, ApiError>;

pub(super) fn routes(cap: ScanCapability) -> axum::Router<Registry> {
    use axum::routing::get;
    axum::Router::new()
        .route("/api/v1/scan/images", get(image).post(rescan))
        .route("/api/v1/scan/status", get(status))
        .layer(Extension(cap))
}

/// Which manifest: a repository and a tag or digest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageQuery {
    repository: String,
    reference: String,
}

/// The answer to a rescan.
#[derive(Debug, Serialize)]
struct Queued {
    repository: String,
    digest: String,
    queued: bool,
}

/// The scanner's state.
#[derive(Debug, Serialize)]
struct Status {
    queue_depth: usize,
    warnings: Vec<String>,
    feeds: Vec<FeedView>,
}

/// One loaded feed.
#[derive(Debug, Serialize)]
struct FeedView {
    name: String,
    source: String,
    imported_at: u64,
    sha256: String,
    records: u64,
}

/// Resolves `q` to a manifest digest of the repository, or a 404 saying which part is unknown.
async fn resolve(reg: &Registry, q: &ImageQuery) -> Result<Digest, ApiError> {
    oci::validate_repository(&q.repository).map_err(|e| bad(e.to_string()))?;
    let r = match Digest::parse(&q.reference) {
        Ok(d) => Reference::Digest(d),
        Err(_) => {
            oci::validate_tag(&q.reference)
                .map_err(|e| bad(format!("reference must be a tag or a digest: {e}")))?;
            Reference::Tag(q.reference.clone())
        }
    };
    let m = reg
        .service()
        .meta()
        .get_manifest(&q.repository, &r)
        .await
        .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?
        .ok_or_else(|| {
            ApiError::new(
                Code::ManifestUnknown,
                format!("{}:{} is not in this registry", q.repository, q.reference),
            )
        })?;
    Ok(m.digest)
}

/// `GET /api/v1/scan/images`.
async fn image(
    State(reg): State<Registry>,
    Extension(cap): Extension<ScanCapability>,
    q: Result<Query<ImageQuery>, QueryRejection>,
    req: Request,
) -> MResult {
    let (parts, _) = req.into_parts();
    let actor = admin_actor(&reg, &parts).await?;
    let q = query(q)?;
    let scan = reg
        .service()
        .manage()
        .run(&actor, Privilege::Admin, async {
            let digest = resolve(&reg, &q).await?;
            let scan = cap
                .image(&q.repository, &digest)
                .await
                .map_err(|e| ApiError::new(Code::Internal, e))?;
            Ok::<_, ApiError>(Done::read(scan))
        })
        .await?;
    Ok(json(StatusCode::OK, &scan))
}

/// `POST /api/v1/scan/images`: queues a scan (a 503 when the queue is full).
async fn rescan(
    State(reg): State<Registry>,
    Extension(cap): Extension<ScanCapability>,
    req: Request,
) -> MResult {
    let (parts, body) = req.into_parts();
    let actor = admin_actor(&reg, &parts).await?;
    let q: ImageQuery = body_json(body).await?;
    let queued = reg
        .service()
        .manage()
        .run(&actor, Privilege::Admin, async {
            let digest = resolve(&reg, &q).await?;
            if !cap.enqueue(&q.repository, &digest) {
                return Err(ApiError::new(
                    Code::TooManyRequests,
                    "the scan queue is full; retry later",
                )
                .with_status(StatusCode::SERVICE_UNAVAILABLE));
            }
            let answer = Queued {
                repository: q.repository.clone(),
                digest: digest.to_string(),
                queued: true,
            };
            let mut change = Change::new("scan.queue", String::new());
            change.repo = Some(q.repository.clone());
            change.target = Some(digest.to_string());
            Ok(Done::changed(answer, change))
        })
        .await?;
    Ok(json(StatusCode::ACCEPTED, &queued))
}

/// `GET /api/v1/scan/status`.
async fn status(
    State(reg): State<Registry>,
    Extension(cap): Extension<ScanCapability>,
    req: Request,
) -> MResult {
    let (parts, _) = req.into_parts();
    let actor = admin_actor(&reg, &parts).await?;
    let status = reg
        .service()
        .manage()
        .run(&actor, Privilege::Admin, async {
            let warnings = cap.shared.warnings();
            let feeds = cap
                .shared
                .feeds()
                .into_iter()
                .map(|f| FeedView {
                    name: f.name,
                    source: f.source,
                    imported_at: f.imported_at,
                    sha256: f.sha256,
                    records: f.records,
                })
                .collect();
            Ok::<_, ApiError>(Done::read(Status {
                queue_depth: cap.queue_depth(),
                warnings,
                feeds,
            }))
        })
        .await?;
    Ok(json(StatusCode::OK, &status))
}
