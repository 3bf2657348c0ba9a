//! The distribution spec's endpoints. Repository names contain slashes, so routing is done by
//! hand on the path's fixed suffixes rather than by a path pattern.

use std::io;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use oci::route::{Route, parse_route};
use oci::{ByteRange, Digest, Manifest, NameError, RangeError, Reference, media_types};
use store::{BlobStream, ManifestRecord, Page, StoreError, UploadRecord};

use crate::error::{ApiError, ApiResult, Code};
use crate::http_access::request_origin;
use crate::{Registry, RouteLabel};
use auth::{Action, Actions};
use service::access::{Caller, Need};
use service::source::{BlobRead, SourceError};

// The route grammar and decoding live in `oci::route` (pure, fuzzed); re-exported for the
// token endpoint.
pub(crate) use oci::percent_decode;

/// Query parameters, decoded, in order.
fn query(parts: &Parts) -> Vec<(String, String)> {
    parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn check_name(name: &str) -> ApiResult<()> {
    oci::validate_repository(name).map_err(|e| ApiError::new(Code::NameInvalid, e.to_string()))
}

fn parse_digest(s: &str) -> ApiResult<Digest> {
    Digest::parse(&percent_decode(s)).map_err(|e| ApiError::new(Code::DigestInvalid, e.to_string()))
}

fn parse_reference(s: &str) -> ApiResult<Reference> {
    Reference::parse(&percent_decode(s)).map_err(|e| match e {
        NameError::Digest(d) => ApiError::new(Code::DigestInvalid, d.to_string()),
        e => ApiError::new(Code::ManifestInvalid, e.to_string()),
    })
}

/// Entry point for every request not served by a fixed route.
pub(crate) async fn dispatch(State(reg): State<Registry>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    // Declared before the route, which may borrow it.
    let resolved: Option<String>;
    let Some(mut route) = parse_route(&path) else {
        return ApiError::new(Code::NameUnknown, "no such endpoint")
            .with_status(StatusCode::NOT_FOUND)
            .into_response();
    };
    // A decorated source may serve the name as another repository (a cache's mirror mode
    // `ns` parameter, or a cached namespace's alias): the route is parsed once and renamed.
    if let (Some(source), Some(name)) = (&reg.inner.source, route.name()) {
        let ns = req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|p| p.strip_prefix("ns="))
                .map(percent_decode)
        });
        resolved = match source.resolve(name, ns.as_deref()) {
            Ok(r) => r,
            Err(e) => return source_error(e, Code::NameUnknown, "repository").into_response(),
        };
        if let Some(name) = &resolved {
            route = route.renamed(name);
        }
    }
    let label = route.label();
    if let Some(name) = route.name() {
        crate::access_log::note_repo(name);
    }
    let caller = match reg.access() {
        None => Caller::open(),
        Some(ac) => {
            let need = need_of(&route, req.method());
            let (source, cert) = request_origin(req.extensions());
            match crate::http_access::authorize(ac, req.headers(), source, cert, &need).await {
                Ok(c) => c,
                Err(e) => {
                    let mut resp = e.into_response();
                    resp.extensions_mut().insert(RouteLabel(label));
                    return resp;
                }
            }
        }
    };
    let mut resp = match handle(&reg, route, req, &caller).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    resp.extensions_mut().insert(RouteLabel(label));
    resp
}

/// What a route needs of the caller.
fn need_of(route: &Route<'_>, method: &Method) -> Need {
    let pull = Actions::of(Action::Pull);
    let (name, actions, scope) = match route {
        Route::Base => return Need::default(),
        Route::Catalog => {
            return Need {
                catalog: true,
                ..Need::default()
            };
        }
        Route::Tags(n) | Route::Referrers(n, _) => (n, pull, pull),
        Route::Manifest(n, _) | Route::Blob(n, _) => match *method {
            Method::PUT => (n, Actions::of(Action::Push), pull.with(Action::Push)),
            Method::DELETE => (n, Actions::of(Action::Delete), Actions::of(Action::Delete)),
            _ => (n, pull, pull),
        },
        Route::UploadStart(n) | Route::Upload(n, _) => {
            (n, Actions::of(Action::Push), pull.with(Action::Push))
        }
    };
    if oci::validate_repository(name).is_err() {
        // Refused as NAME_INVALID by the handler; needs no more than a signed-in caller.
        return Need::default();
    }
    Need {
        repo: Some(((*name).to_owned(), actions)),
        scope_actions: scope,
        ..Need::default()
    }
}

async fn handle(reg: &Registry, route: Route<'_>, req: Request, caller: &Caller) -> ApiResult {
    let (parts, body) = req.into_parts();
    let req = &parts;
    let method = parts.method.clone();
    let allow = match &route {
        Route::Base => "GET, HEAD",
        Route::Catalog | Route::Tags(_) | Route::Referrers(..) => "GET",
        Route::Manifest(..) => "GET, HEAD, PUT, DELETE",
        Route::Blob(..) => "GET, HEAD, DELETE",
        Route::UploadStart(_) => "POST",
        Route::Upload(..) => "GET, PATCH, PUT, DELETE",
    };
    let unsupported = || {
        Err(ApiError::new(
            Code::Unsupported,
            format!("method {method} not allowed here"),
        )
        .with_header(header::ALLOW, HeaderValue::from_static(allow)))
    };
    match route {
        Route::Base => match method {
            Method::GET | Method::HEAD => Ok(json_response(StatusCode::OK, "{}".into())),
            _ => unsupported(),
        },
        Route::Catalog => match method {
            Method::GET => catalog(reg, req, caller).await,
            _ => unsupported(),
        },
        Route::Tags(name) => {
            check_name(name)?;
            match method {
                Method::GET => {
                    // A decorated source may answer the whole list itself (a cached
                    // repository lists the upstream's tags, what can be pulled); otherwise the
                    // store lists and pages.
                    if let Some(source) = &reg.inner.source
                        && let Ok(Some(tags)) = source.tags(name).await
                    {
                        return source_tags(reg, name, req, tags);
                    }
                    tags_list(reg, name, req).await
                }
                _ => unsupported(),
            }
        }
        Route::Manifest(name, r) => {
            check_name(name)?;
            let r = parse_reference(r)?;
            match method {
                Method::GET | Method::HEAD => {
                    get_manifest(reg, name, r, method == Method::HEAD).await
                }
                Method::PUT => {
                    reg.refuse_write(name)?;
                    put_manifest(reg, name, r, req, body, caller).await
                }
                Method::DELETE => {
                    reg.refuse_write(name)?;
                    delete_manifest(reg, name, r, caller).await
                }
                _ => unsupported(),
            }
        }
        Route::Blob(name, d) => {
            check_name(name)?;
            let d = parse_digest(d)?;
            match method {
                Method::GET | Method::HEAD => {
                    get_blob(reg, name, d, req, method == Method::HEAD).await
                }
                Method::DELETE => {
                    reg.refuse_write(name)?;
                    delete_blob(reg, name, d, caller).await
                }
                _ => unsupported(),
            }
        }
        Route::UploadStart(name) => {
            check_name(name)?;
            reg.refuse_write(name)?;
            match method {
                Method::POST => start_upload(reg, name, req, body, caller).await,
                _ => unsupported(),
            }
        }
        Route::Upload(name, id) => {
            check_name(name)?;
            reg.refuse_write(name)?;
            match method {
                Method::GET => upload_status(reg, name, id, caller).await,
                Method::PATCH => patch_upload(reg, name, id, req, body, caller).await,
                Method::PUT => finish_upload(reg, name, id, req, body, caller).await,
                Method::DELETE => cancel_upload(reg, name, id, caller).await,
                _ => unsupported(),
            }
        }
        Route::Referrers(name, d) => {
            check_name(name)?;
            let d = parse_digest(d)?;
            match method {
                Method::GET => referrers(reg, name, d, req).await,
                _ => unsupported(),
            }
        }
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn page(req: &Parts, max: usize) -> ApiResult<Page> {
    let q = query(req);
    let n = match param(&q, "n") {
        None | Some("") => None,
        Some(v) => Some(
            v.parse::<usize>()
                .map_err(|_| {
                    ApiError::new(Code::Unsupported, "n must be a non-negative integer")
                        .with_status(StatusCode::BAD_REQUEST)
                })?
                .min(max),
        ),
    };
    Ok(Page {
        n,
        last: param(&q, "last")
            .filter(|l| !l.is_empty())
            .map(str::to_owned),
    })
}

/// The page to ask storage for: one more entry than the client wants, to learn whether more
/// follow.
fn peek_page(page: &Page) -> Page {
    Page {
        n: page.n.map(|n| n.saturating_add(1)),
        last: page.last.clone(),
    }
}

/// Cuts a peeked listing to the page and adds `Link: <...>; rel="next"` when more entries follow.
fn paged(
    mut items: Vec<String>,
    page: &Page,
    base: &str,
    body: impl FnOnce(&[String]) -> String,
) -> Response {
    let more = page.n.is_some_and(|n| items.len() > n);
    if let Some(n) = page.n {
        items.truncate(n);
    }
    let mut resp = json_response(StatusCode::OK, body(&items));
    if let (true, Some(n), Some(last)) = (more, page.n, items.last()) {
        let link = format!("<{base}?n={n}&last={}>; rel=\"next\"", url_escape(last));
        resp.headers_mut().insert(header::LINK, hv(&link));
    }
    resp
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn catalog(reg: &Registry, req: &Parts, caller: &Caller) -> ApiResult {
    let page = page(req, reg.service().limits().max_page)?;
    let want = page.n.map_or(usize::MAX, |n| n.saturating_add(1));
    let (ac, principal) = match (reg.access(), caller.open) {
        (Some(ac), false) => (Some(ac), &caller.principal),
        _ => (None, &caller.principal),
    };
    // Only repositories the caller may pull are listed: scan in batches until the page is full.
    let mut out = Vec::new();
    let mut last = page.last.clone();
    loop {
        let batch_n = want.clamp(100, 1000);
        let batch = reg
            .service()
            .meta()
            .repositories(Page {
                n: Some(batch_n),
                last: last.clone(),
            })
            .await?;
        let exhausted = batch.len() < batch_n;
        for r in batch {
            last = Some(r.clone());
            if ac.is_none_or(|ac| ac.policy_allows(principal, &r).contains(Action::Pull)) {
                out.push(r);
                if out.len() >= want {
                    break;
                }
            }
        }
        if exhausted || out.len() >= want {
            break;
        }
    }
    Ok(paged(out, &page, "/v2/_catalog", |r| {
        serde_json::json!({ "repositories": r }).to_string()
    }))
}

async fn tags_list(reg: &Registry, name: &str, req: &Parts) -> ApiResult {
    let page = page(req, reg.service().limits().max_page)?;
    let tags = reg
        .service()
        .meta()
        .tags(name, peek_page(&page))
        .await?
        .ok_or_else(|| ApiError::new(Code::NameUnknown, format!("repository {name} not known")))?;
    Ok(paged(tags, &page, &format!("/v2/{name}/tags/list"), |t| {
        serde_json::json!({ "name": name, "tags": t }).to_string()
    }))
}

/// Pages a source's own tag list as the local listing is paged (lexical order, `n`, `last`).
fn source_tags(reg: &Registry, name: &str, req: &Parts, mut tags: Vec<String>) -> ApiResult {
    let page = page(req, reg.service().limits().max_page)?;
    tags.sort();
    tags.dedup();
    if let Some(last) = &page.last {
        tags.retain(|t| t > last);
    }
    if let Some(n) = peek_page(&page).n {
        tags.truncate(n);
    }
    Ok(paged(tags, &page, &format!("/v2/{name}/tags/list"), |t| {
        serde_json::json!({ "name": name, "tags": t }).to_string()
    }))
}

// ---------------------------------------------------------------------------------------------
// Manifests

async fn get_manifest(reg: &Registry, name: &str, r: Reference, head: bool) -> ApiResult {
    let m = match &reg.inner.source {
        None => reg.inner.plain.manifest(name, &r).await?,
        Some(source) => source
            .manifest(name, &r)
            .await
            .map_err(|e| source_error(e, Code::ManifestUnknown, "manifest"))?,
    }
    .ok_or_else(|| ApiError::new(Code::ManifestUnknown, "manifest unknown"))?;
    // HEAD only reveals the digest (signers need it to sign); content needs the signature.
    if let (Some(policy), false) = (reg.service().signing(), head) {
        let tag = match &r {
            Reference::Tag(t) => Some(t.as_str()),
            Reference::Digest(_) => None,
        };
        let decision = policy
            .check_pull(
                reg.service().meta().as_ref(),
                reg.service().blobs().as_ref(),
                name,
                tag,
                &m.digest,
                &m.body,
            )
            .await?;
        if let Err(why) = decision {
            return Err(ApiError::new(Code::Denied, why));
        }
    }
    if !head {
        for gate in &reg.inner.gates {
            if let Err(why) = gate.check_pull(name, &m.digest).await {
                return Err(ApiError::new(Code::Denied, why));
            }
        }
    }
    // Last-pull tracking (in memory, flushed in batches): HEAD counts too (pulls.rs).
    reg.service().note_pull(name, &m.digest);
    let digest = m.digest.to_string();
    let len = m.body.len();
    let mut resp = if head {
        Response::new(Body::empty())
    } else {
        reg.inner.metrics.bytes_out.inc_by(len as u64);
        Response::new(Body::from(m.body))
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, hv(&m.media_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert("docker-content-digest", hv(&digest));
    h.insert(header::ETAG, hv(&format!("\"{digest}\"")));
    Ok(resp)
}

/// Reads a request body into memory, refusing more than `max` bytes.
async fn read_limited(body: Body, max: usize) -> ApiResult<Bytes> {
    let too_big = || {
        ApiError::new(
            Code::ManifestInvalid,
            format!("manifest larger than {max} bytes"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                Code::ManifestInvalid,
                format!("request body interrupted: {e}"),
            )
        })?;
        if buf.len() + chunk.len() > max {
            return Err(too_big());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

async fn put_manifest(
    reg: &Registry,
    name: &str,
    r: Reference,
    req: &Parts,
    body: Body,
    caller: &Caller,
) -> ApiResult {
    let max = reg.service().limits().max_manifest_bytes;
    if let Some(len) =
        header_str(&req.headers, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok())
        && len > max as u64
    {
        return Err(ApiError::new(
            Code::ManifestInvalid,
            format!("manifest of {len} bytes is larger than the {max} byte limit"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE));
    }
    let q = query(req);
    let content_type = header_str(&req.headers, header::CONTENT_TYPE).map(str::to_owned);
    let body = read_limited(body, max).await?;
    reg.inner.metrics.bytes_in.inc_by(body.len() as u64);

    let (digest, mut tags) = match r {
        Reference::Digest(d) => {
            let actual = Digest::of(d.algorithm(), &body);
            if actual != d {
                return Err(ApiError::new(
                    Code::DigestInvalid,
                    format!("manifest body has digest {actual}, not {d}"),
                ));
            }
            (d, Vec::new())
        }
        Reference::Tag(t) => (Digest::sha256(&body), vec![t]),
    };
    for (k, v) in &q {
        if k == "tag" {
            oci::validate_tag(v)
                .map_err(|e| ApiError::new(Code::ManifestInvalid, e.to_string()))?;
            tags.push(v.clone());
        }
    }
    let m = Manifest::parse(content_type.as_deref(), &body)
        .map_err(|e| ApiError::new(Code::ManifestInvalid, e.to_string()))?;
    let mut record =
        ManifestRecord::from_manifest(digest.clone(), body, &m, caller.principal.display());
    record.frozen_tags = tags
        .iter()
        .filter(|t| reg.service().tag_rules().immutable(name, t).is_some())
        .cloned()
        .collect();
    reg.service()
        .meta()
        .put_manifest(name, record, tags.clone())
        .await?;
    tracing::info!(repo = name, %digest, ?tags, "manifest pushed");
    for c in &reg.inner.capabilities {
        c.pushed(name, &digest, m.media_type.as_str());
    }
    reg.audit(caller, "push", name, digest.to_string(), tags.join(","))
        .await;
    let mut resp = StatusCode::CREATED.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::LOCATION,
        hv(&format!("/v2/{name}/manifests/{digest}")),
    );
    h.insert("docker-content-digest", hv(&digest.to_string()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    if let Some(s) = &m.subject {
        h.insert("oci-subject", hv(&s.digest.to_string()));
    }
    for t in &tags {
        h.append("oci-tag", hv(t));
    }
    Ok(resp)
}

async fn delete_manifest(reg: &Registry, name: &str, r: Reference, caller: &Caller) -> ApiResult {
    let protected: Vec<String> = match &r {
        Reference::Tag(t) => vec![t.clone()],
        Reference::Digest(d) => reg.service().meta().tags_of(name, d).await?,
    }
    .into_iter()
    .filter(|t| reg.service().tag_rules().immutable(name, t).is_some())
    .collect();
    if let Some(t) = protected.first() {
        let rule = reg
            .service()
            .tag_rules()
            .immutable(name, t)
            .expect("filtered above");
        return Err(ApiError::new(
            Code::Denied,
            format!("tag {t} of {name} is immutable ({rule}); it cannot be deleted"),
        ));
    }
    let found = match &r {
        Reference::Digest(d) => {
            reg.service()
                .meta()
                .delete_manifest(name, d, caller.principal.display())
                .await?
        }
        Reference::Tag(t) => {
            reg.service()
                .meta()
                .delete_tag(name, t, caller.principal.display())
                .await?
        }
    };
    if !found {
        return Err(ApiError::new(Code::ManifestUnknown, "manifest unknown"));
    }
    tracing::info!(repo = name, reference = ?r, "manifest deleted");
    let target = match &r {
        Reference::Digest(d) => d.to_string(),
        Reference::Tag(t) => t.clone(),
    };
    reg.audit(caller, "delete", name, target, String::new())
        .await;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn referrers(reg: &Registry, name: &str, subject: Digest, req: &Parts) -> ApiResult {
    let q = query(req);
    let filter = param(&q, "artifactType").filter(|s| !s.is_empty());
    let mut list = reg.service().meta().referrers(name, &subject).await?;
    if let Some(f) = filter {
        list.retain(|d| d.artifact_type.as_deref() == Some(f));
    }
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_INDEX,
        "manifests": list,
    });
    let mut resp = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(media_types::OCI_INDEX),
        )],
        body.to_string(),
    )
        .into_response();
    if filter.is_some() {
        resp.headers_mut().insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(resp)
}

// ---------------------------------------------------------------------------------------------
// Blobs

async fn get_blob(reg: &Registry, name: &str, d: Digest, req: &Parts, head: bool) -> ApiResult {
    let unknown = || ApiError::new(Code::BlobUnknown, format!("blob {d} unknown to repository"));
    let read = match &reg.inner.source {
        None => BlobRead::Stored(reg.inner.plain.blob(name, &d).await?.ok_or_else(unknown)?),
        Some(source) => source
            .blob(name, &d, head)
            .await
            .map_err(|e| source_error(e, Code::BlobUnknown, "blob"))?
            .ok_or_else(unknown)?,
    };
    let (size, open) = match read {
        BlobRead::Stored(size) => (size, None),
        BlobRead::Arriving { size, open } => (size, Some(open)),
    };
    let range = match requested_range(&req.headers, size) {
        Ok(r) => r,
        Err(unsatisfiable) => return Ok(*unsatisfiable),
    };
    let (start, len) = range.as_ref().map_or((0, size), |r| (r.start, r.len()));
    let stored = open.is_none();
    let body = match open {
        // Arriving from elsewhere: stream it as it comes.
        Some(Some(open)) if !head => counted_body(reg, open(start, start + len)),
        Some(_) => Body::empty(),
        None if head => Body::empty(),
        None => {
            let stream = reg
                .service()
                .blobs()
                .get(&d, start, len)
                .await
                .map_err(|e| match e {
                    // Linked in metadata but missing on disk: the store is damaged, not the
                    // request.
                    StoreError::BlobUnknown(d) => {
                        ApiError::new(Code::Internal, format!("blob {d} missing from storage"))
                    }
                    e => e.into(),
                })?;
            // Small blobs, which the store reads in one piece anyway, go out with the whole body
            // in hand, so hyper writes headers and body together instead of polling a stream.
            if len <= store::SMALL_BLOB {
                full_body(reg, stream, len).await?
            } else {
                counted_body(reg, stream)
            }
        }
    };
    if let (true, Some(source)) = (stored, &reg.inner.source) {
        source.served(name, if head { 0 } else { len });
    }
    Ok(blob_response(&d, size, range, body))
}

/// Maps a source's failure (an upstream's, with no local copy to fall back on) to a spec error;
/// `unknown` is the code for content that does not exist.
fn source_error(e: SourceError, unknown: Code, what: &str) -> ApiError {
    match e {
        SourceError::NotFound => ApiError::new(unknown, format!("{what} unknown upstream")),
        SourceError::RateLimited { retry_after } => {
            let err = ApiError::new(
                Code::TooManyRequests,
                format!("the upstream registry is rate limiting and this {what} is not cached"),
            );
            match retry_after {
                Some(s) => err.with_header(header::RETRY_AFTER, HeaderValue::from(s)),
                None => err,
            }
        }
        // Docker Hub answers 401 for repositories that do not exist.
        SourceError::Denied => ApiError::new(
            unknown,
            format!(
                "{what} unknown upstream, or the upstream refused access (check the cache's \
                 credentials for it)"
            ),
        ),
        SourceError::Busy(m) => ApiError::new(Code::Unavailable, m)
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")),
        SourceError::Disabled => ApiError::new(
            Code::Denied,
            "this upstream registry is disabled in the cache's configuration",
        ),
        SourceError::Store(m) => ApiError::new(Code::Internal, m),
        SourceError::NotServed(m) => ApiError::new(Code::NameUnknown, m),
        SourceError::Unavailable(m) => ApiError::new(
            Code::Unavailable,
            format!("{what} not cached and the upstream registry failed: {m}"),
        ),
    }
}

/// The part of a blob of `size` bytes that a request's `Range` header asks for (`None`: all of
/// it, also for a malformed header), or the 416 answer for a range outside the blob.
fn requested_range(h: &HeaderMap, size: u64) -> Result<Option<ByteRange>, Box<Response>> {
    match header_str(h, header::RANGE).map(|r| oci::parse_range(r, size)) {
        None | Some(Err(RangeError::Malformed)) => Ok(None),
        Some(Ok(r)) => Ok(Some(r)),
        Some(Err(RangeError::Unsatisfiable)) => {
            // No JSON body: the spec has no error code for an unsatisfiable range.
            let mut resp = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            resp.headers_mut()
                .insert(header::CONTENT_RANGE, hv(&format!("bytes */{size}")));
            Err(Box::new(resp))
        }
    }
}

/// The whole of a small blob's `len` bytes from `stream` as one body, counted in the metrics.
async fn full_body(reg: &Registry, mut stream: BlobStream, len: u64) -> ApiResult<Body> {
    let mut buf = Vec::with_capacity(len as usize);
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::new(Code::Internal, format!("reading blob: {e}")))?;
        if buf.is_empty() && chunk.len() as u64 == len {
            // The usual case: one chunk, no copy.
            reg.inner.metrics.bytes_out.inc_by(len);
            return Ok(Body::from(chunk));
        }
        buf.extend_from_slice(&chunk);
    }
    if buf.len() as u64 != len {
        return Err(ApiError::new(
            Code::Internal,
            format!("blob read {} of {len} bytes", buf.len()),
        ));
    }
    reg.inner.metrics.bytes_out.inc_by(len);
    Ok(Body::from(buf))
}

/// A response body streaming blob bytes, counted in the metrics as they go out.
fn counted_body(reg: &Registry, stream: BlobStream) -> Body {
    let metrics = reg.inner.metrics.clone();
    Body::from_stream(stream.map(move |r| {
        if let Ok(b) = &r {
            metrics.bytes_out.inc_by(b.len() as u64);
        }
        r
    }))
}

/// The answer to a blob GET or HEAD: `body` holds `range` of blob `d` (all of its `size` bytes
/// when `None`, nothing for a HEAD).
fn blob_response(d: &Digest, size: u64, range: Option<ByteRange>, body: Body) -> Response {
    let len = range.as_ref().map_or(size, |r| r.len());
    let mut resp = Response::new(body);
    if let Some(r) = range {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        resp.headers_mut().insert(
            header::CONTENT_RANGE,
            hv(&format!("bytes {}-{}/{size}", r.start, r.end)),
        );
    }
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert("docker-content-digest", hv(&d.to_string()));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, hv(&format!("\"{d}\"")));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=31536000"),
    );
    resp
}

async fn delete_blob(reg: &Registry, name: &str, d: Digest, caller: &Caller) -> ApiResult {
    if !reg.service().meta().unlink_blob(name, &d).await? {
        return Err(ApiError::new(
            Code::BlobUnknown,
            format!("blob {d} unknown to repository"),
        ));
    }
    tracing::info!(repo = name, digest = %d, "blob unlinked");
    reg.audit(caller, "delete", name, d.to_string(), "blob".into())
        .await;
    Ok(StatusCode::ACCEPTED.into_response())
}

fn body_stream(reg: &Registry, body: Body) -> BlobStream {
    let metrics = reg.inner.metrics.clone();
    Box::pin(body.into_data_stream().map(move |r| {
        r.inspect(|b| {
            metrics.bytes_in.inc_by(b.len() as u64);
        })
        .map_err(io::Error::other)
    }))
}

fn blob_created(name: &str, d: &Digest) -> Response {
    let mut resp = StatusCode::CREATED.into_response();
    let h = resp.headers_mut();
    h.insert(header::LOCATION, hv(&format!("/v2/{name}/blobs/{d}")));
    h.insert("docker-content-digest", hv(&d.to_string()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    resp
}

fn upload_response(status: StatusCode, name: &str, id: &str, size: u64) -> Response {
    let mut resp = status.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::LOCATION,
        hv(&format!("/v2/{name}/blobs/uploads/{id}")),
    );
    h.insert(header::RANGE, hv(&format!("0-{}", size.saturating_sub(1))));
    h.insert("docker-upload-uuid", hv(id));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    resp
}

/// A declared `Content-Length`, if any.
fn content_length(h: &HeaderMap) -> ApiResult<Option<u64>> {
    match header_str(h, header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ApiError::new(Code::SizeInvalid, "Content-Length is not a number")),
    }
}

async fn start_upload(
    reg: &Registry,
    name: &str,
    req: &Parts,
    body: Body,
    caller: &Caller,
) -> ApiResult {
    let q = query(req);
    if let (Some(mount), Some(from)) = (param(&q, "mount"), param(&q, "from")) {
        let d = parse_digest(mount)?;
        check_name(from)?;
        // Mounting from a repository the caller cannot read falls back to a plain upload, so
        // it reveals nothing about that repository.
        let readable = reg.can(caller, from, Action::Pull);
        // GC: check and link under the digest's lock (and touch it).
        let _held = reg.service().collector().hold(&d).await;
        if readable
            && let Some(size) = reg.service().meta().blob_linked(from, &d).await?
            && reg.service().blobs().size(&d).await?.is_some()
        {
            reg.service().meta().link_blob(name, &d, size).await?;
            tracing::info!(repo = name, from, digest = %d, "blob mounted");
            reg.audit(caller, "mount", name, d.to_string(), format!("from {from}"))
                .await;
            return Ok(blob_created(name, &d));
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    if let Some(digest) = param(&q, "digest") {
        // Monolithic upload: the whole blob is this request's body.
        let d = parse_digest(digest)?;
        let body = body_stream(reg, body);
        reg.service().blobs().upload_create(&id).await?;
        let result = async {
            reg.service()
                .blobs()
                .upload_append(&id, None, None, body)
                .await?;
            // GC: commit and link under the digest's lock.
            let held = reg.service().collector().hold(&d).await;
            reg.service()
                .blobs()
                .upload_commit(&id, &d)
                .await
                .map(|s| (s, held))
        }
        .await;
        let (size, _held) = match result {
            Ok(done) => done,
            Err(e) => {
                let _ = reg.service().blobs().upload_delete(&id).await;
                return Err(e.into());
            }
        };
        reg.service().meta().link_blob(name, &d, size).await?;
        tracing::info!(repo = name, digest = %d, size, "blob pushed");
        return Ok(blob_created(name, &d));
    }
    reg.service().blobs().upload_create(&id).await?;
    reg.service()
        .meta()
        .upload_create(UploadRecord {
            id: id.clone(),
            repo: name.to_owned(),
            started: auth::now(),
            owner: (!caller.open).then(|| caller.principal.display().to_owned()),
        })
        .await?;
    Ok(upload_response(StatusCode::ACCEPTED, name, &id, 0))
}

/// Finds an upload session of `name` started by this caller (when access control recorded an
/// owner), or answers BLOB_UPLOAD_UNKNOWN: a session id is no bearer token.
async fn session(reg: &Registry, name: &str, id: &str, caller: &Caller) -> ApiResult<UploadRecord> {
    match reg.service().meta().upload_get(id).await? {
        Some(rec)
            if rec.repo == name
                && (caller.open
                    || rec
                        .owner
                        .as_deref()
                        .is_none_or(|o| o == caller.principal.display())) =>
        {
            Ok(rec)
        }
        _ => Err(ApiError::new(Code::BlobUploadUnknown, "upload unknown")),
    }
}

async fn upload_status(reg: &Registry, name: &str, id: &str, caller: &Caller) -> ApiResult {
    session(reg, name, id, caller).await?;
    let state = reg
        .service()
        .blobs()
        .upload_state(id)
        .await?
        .ok_or_else(|| ApiError::new(Code::BlobUploadUnknown, "upload unknown"))?;
    Ok(upload_response(
        StatusCode::NO_CONTENT,
        name,
        id,
        state.size,
    ))
}

/// Appends the request body to an upload, honouring `Content-Range` when present.
async fn append(reg: &Registry, name: &str, id: &str, req: &Parts, body: Body) -> ApiResult<u64> {
    let (start, exact_len) = match header_str(&req.headers, header::CONTENT_RANGE) {
        None => (None, None),
        Some(v) => {
            let r = oci::parse_content_range(v).map_err(|_| {
                ApiError::new(
                    Code::BlobUploadInvalid,
                    format!("malformed Content-Range {v:?}"),
                )
            })?;
            if let Some(len) = content_length(&req.headers)?
                && len != r.len()
            {
                return Err(ApiError::new(
                    Code::SizeInvalid,
                    format!(
                        "Content-Range covers {} bytes but Content-Length is {len}",
                        r.len()
                    ),
                ));
            }
            (Some(r.start), Some(r.len()))
        }
    };
    let body = body_stream(reg, body);
    match reg
        .service()
        .blobs()
        .upload_append(id, start, exact_len, body)
        .await
    {
        Ok(s) => Ok(s.size),
        Err(StoreError::OutOfOrder { have, got }) => {
            let mut e = ApiError::new(
                Code::BlobUploadInvalid,
                format!("chunk starts at {got} but the upload holds {have} bytes"),
            )
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE);
            let r = upload_response(StatusCode::OK, name, id, have);
            for k in [header::LOCATION, header::RANGE] {
                if let Some(v) = r.headers().get(&k) {
                    e = e.with_header(k, v.clone());
                }
            }
            Err(e)
        }
        Err(e) => Err(e.into()),
    }
}

async fn patch_upload(
    reg: &Registry,
    name: &str,
    id: &str,
    req: &Parts,
    body: Body,
    caller: &Caller,
) -> ApiResult {
    session(reg, name, id, caller).await?;
    let size = append(reg, name, id, req, body).await?;
    Ok(upload_response(StatusCode::ACCEPTED, name, id, size))
}

async fn finish_upload(
    reg: &Registry,
    name: &str,
    id: &str,
    req: &Parts,
    body: Body,
    caller: &Caller,
) -> ApiResult {
    let q = query(req);
    let d = parse_digest(
        param(&q, "digest")
            .ok_or_else(|| ApiError::new(Code::DigestInvalid, "digest parameter missing"))?,
    )?;
    session(reg, name, id, caller).await?;
    // Whatever the headers say (HTTP/2 may send neither length nor encoding), a body that
    // carries bytes is the last chunk; an empty one appends nothing.
    append(reg, name, id, req, body).await?;
    // GC: commit and link under the digest's lock, so the blob cannot go in between.
    let _held = reg.service().collector().hold(&d).await;
    let size = reg.service().blobs().upload_commit(id, &d).await?;
    reg.service().meta().upload_complete(id, &d, size).await?;
    tracing::info!(repo = name, digest = %d, size, "blob pushed");
    Ok(blob_created(name, &d))
}

async fn cancel_upload(reg: &Registry, name: &str, id: &str, caller: &Caller) -> ApiResult {
    session(reg, name, id, caller).await?;
    match reg.service().blobs().upload_delete(id).await {
        Ok(()) | Err(StoreError::UploadUnknown) => {}
        Err(e) => return Err(e.into()),
    }
    reg.service().meta().upload_delete(id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
