//! The access log: one `info` line per request, target `wharf::access`, written when the
//! response body is finished (or dropped, when the client went away), with the request id
//! (`X-Request-ID`, honoured when sane and returned on every response), method, path (query
//! parameters that may carry secrets redacted), repository, status, bytes sent, latency, user
//! and client address.
//!
//! The repository and the user are learnt while the request is handled: the dispatcher names
//! the repository and [`crate::http_access::authorize`] (the one authorization of every route)
//! and the token endpoint name the caller, through [`note_repo`] and [`note_user`], which write
//! into a slot scoped to the request's future (a task-local value, so no handler signature
//! carries it).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

/// The `X-Request-ID` header.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest `X-Request-ID` honoured; a longer one is replaced by a generated id.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Longest path (with its query) written to a log line; longer ones are cut and marked `...`.
const MAX_LOGGED_PATH: usize = 2048;

/// The request's id, in its extensions (for handlers that want to name it).
#[derive(Clone, Debug)]
pub struct RequestId(pub Arc<str>);

/// What handlers learn of a request for its log line.
#[derive(Default, Debug)]
pub(crate) struct Notes {
    pub(crate) user: Option<String>,
    pub(crate) repo: Option<String>,
}

tokio::task_local! {
    static NOTES: RefCell<Notes>;
}

/// Names the caller of the request being handled (no effect outside one).
pub(crate) fn note_user(name: &str) {
    let _ = NOTES.try_with(|n| n.borrow_mut().user = Some(name.to_owned()));
}

/// Names the repository of the request being handled (no effect outside one).
pub(crate) fn note_repo(name: &str) {
    let _ = NOTES.try_with(|n| n.borrow_mut().repo = Some(name.to_owned()));
}

/// Runs `fut` (the request's handling) with a fresh slot for [`note_user`] and [`note_repo`],
/// and returns what they noted.
pub(crate) async fn with_notes<F: Future>(fut: F) -> (F::Output, Notes) {
    NOTES
        .scope(RefCell::new(Notes::default()), async move {
            let out = fut.await;
            let notes = NOTES.with(|n| std::mem::take(&mut *n.borrow_mut()));
            (out, notes)
        })
        .await
}

/// The request's id: its `X-Request-ID` when that is 1 to [`MAX_REQUEST_ID_LEN`] visible ASCII
/// characters (no space, no control), else a new one (unique within the process, and across
/// processes with overwhelming probability).
pub fn request_id(headers: &HeaderMap) -> Arc<str> {
    if let Some(v) = headers.get(REQUEST_ID_HEADER)
        && is_sane_id(v.as_bytes())
    {
        // Visible ASCII is UTF-8.
        if let Ok(s) = std::str::from_utf8(v.as_bytes()) {
            return Arc::from(s);
        }
    }
    generate_id()
}

fn is_sane_id(b: &[u8]) -> bool {
    !b.is_empty() && b.len() <= MAX_REQUEST_ID_LEN && b.iter().all(|c| c.is_ascii_graphic())
}

/// A random prefix chosen once per process, then a counter: 24 hex digits.
fn generate_id() -> Arc<str> {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let u = uuid::Uuid::new_v4();
        u.as_u64_pair().0
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut s = String::with_capacity(33);
    let _ = write!(s, "{prefix:016x}{n:08x}");
    Arc::from(s)
}

/// Query parameters whose names contain one of these (case-insensitively) have their values
/// replaced by `REDACTED` in the log.
const SECRET_KEYS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "key",
    "sig",
    "credential",
    "auth",
    "code",
];

/// The request's path and query as logged: the raw (still percent-encoded) path, then the query
/// with the values of parameters that may carry secrets redacted; cut at a bound.
pub fn logged_path(uri: &axum::http::Uri) -> String {
    let mut out = String::with_capacity(uri.path().len() + 16);
    out.push_str(uri.path());
    if let Some(q) = uri.query() {
        out.push('?');
        for (i, pair) in q.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((k, _)) if is_secret_key(k) => {
                    out.push_str(k);
                    out.push_str("=REDACTED");
                }
                _ => out.push_str(pair),
            }
        }
    }
    if out.len() > MAX_LOGGED_PATH {
        let mut cut = MAX_LOGGED_PATH;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|s| k.contains(s))
}

/// The request half of a log line, captured before the request is handled.
pub(crate) struct Pending {
    pub(crate) id: Arc<str>,
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) client: Option<IpAddr>,
    pub(crate) start: Instant,
}

/// The access log's part of handling a request: its id (honoured or generated, put in the
/// request's extensions and on the response as `X-Request-ID`), the `request{id=...}` span the
/// handling runs in (so other lines name the request), and, when `log`, the line written once the
/// response body is done. `start` is when the request arrived.
pub(crate) async fn logged(mut req: Request, next: Next, log: bool, start: Instant) -> Response {
    let request_id = request_id(req.headers());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let pending = log.then(|| Pending {
        id: request_id.clone(),
        method: req.method().clone(),
        path: logged_path(req.uri()),
        client: crate::http_access::request_origin(req.extensions()).0,
        start,
    });
    // Lines logged while the request is handled name it: `request{id=...}`.
    let span = tracing::info_span!(target: "wharf::access", "request", id = %request_id);
    let handled = tracing::Instrument::instrument(next.run(req), span);
    let (mut resp, notes) = if pending.is_some() {
        with_notes(handled).await
    } else {
        (handled.await, Default::default())
    };
    // Sane ids are visible ASCII, valid in a header.
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    let Some(p) = pending else {
        return resp;
    };
    let status = resp.status().as_u16();
    let length = resp
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    resp.map(|b| axum::body::Body::new(LoggedBody::new(b, p, status, length, notes)))
}

/// The access log as a middleware of its own, for a router without the registry's (the
/// standalone admission webhook): `axum::middleware::from_fn(access_log::middleware)`. It logs
/// when `wharf::access` is enabled at info.
pub async fn middleware(req: Request, next: Next) -> Response {
    let log = tracing::enabled!(target: "wharf::access", tracing::Level::INFO);
    logged(req, next, log, Instant::now()).await
}

/// Everything one log line says, written when the response body is done.
struct Line {
    pending: Pending,
    status: u16,
    notes: Notes,
}

impl Line {
    fn write(&self, bytes: u64, complete: bool) {
        let p = &self.pending;
        let latency_ms = Millis(p.start.elapsed().as_micros());
        let repo = self.notes.repo.as_deref().unwrap_or("-");
        let user = self.notes.user.as_deref().unwrap_or("-");
        let client = p.client.map(|c| c.to_string());
        let client = client.as_deref().unwrap_or("-");
        if complete {
            tracing::info!(
                target: "wharf::access",
                request_id = %p.id,
                method = %p.method,
                path = %p.path,
                repo = %repo,
                status = self.status,
                bytes,
                latency_ms = %latency_ms,
                user = %user,
                client = %client,
            );
        } else {
            tracing::info!(
                target: "wharf::access",
                request_id = %p.id,
                method = %p.method,
                path = %p.path,
                repo = %repo,
                status = self.status,
                bytes,
                latency_ms = %latency_ms,
                user = %user,
                client = %client,
                incomplete = true,
            );
        }
    }
}

/// Milliseconds with three decimals (`0.535`), from whole microseconds: integer formatting, as
/// exact-precision float formatting showed up on every line's profile.
struct Millis(u128);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// A response body that counts the bytes it yields and writes the request's log line when it
/// ends or is dropped (never buffering anything).
pub(crate) struct LoggedBody<B> {
    inner: B,
    bytes: u64,
    /// The body's length when known (Content-Length): hyper stops polling once it is sent.
    expected: Option<u64>,
    done: bool,
    line: Option<Box<Line>>,
}

impl<B: HttpBody> LoggedBody<B> {
    /// `content_length` is the response's `Content-Length` header.
    pub(crate) fn new(
        inner: B,
        pending: Pending,
        status: u16,
        content_length: Option<u64>,
        notes: Notes,
    ) -> Self {
        // No body goes out for HEAD, 204 and 304, whatever Content-Length says.
        let expected = if pending.method == Method::HEAD || status == 204 || status == 304 {
            Some(0)
        } else {
            content_length.or_else(|| inner.size_hint().exact())
        };
        LoggedBody {
            expected,
            inner,
            bytes: 0,
            done: false,
            line: Some(Box::new(Line {
                pending,
                status,
                notes,
            })),
        }
    }
}

impl<B> LoggedBody<B> {
    fn finish(&mut self) {
        if let Some(line) = self.line.take() {
            let complete = self.done || self.expected == Some(self.bytes);
            line.write(self.bytes, complete);
        }
    }
}

impl<B> Drop for LoggedBody<B> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<B> HttpBody for LoggedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.bytes += d.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.done = true;
                    this.finish();
                }
            }
            Poll::Ready(None) => {
                this.done = true;
                this.finish();
            }
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn request_ids() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID_HEADER, HeaderValue::from_static("abc-123_XYZ:1"));
        assert_eq!(&*request_id(&h), "abc-123_XYZ:1");
        let a = request_id(&HeaderMap::new());
        let b = request_id(&HeaderMap::new());
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        for bad in [
            HeaderValue::from_static(""),
            HeaderValue::from_static("has space"),
            HeaderValue::from_str(&"x".repeat(MAX_REQUEST_ID_LEN + 1)).unwrap(),
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
            HeaderValue::from_bytes(b"tab\there").unwrap(),
        ] {
            let mut h = HeaderMap::new();
            h.insert(REQUEST_ID_HEADER, bad.clone());
            let id = request_id(&h);
            assert_eq!(id.len(), 24, "{bad:?} -> {id}");
            assert_ne!(id.as_bytes(), bad.as_bytes());
        }
        let mut h = HeaderMap::new();
        h.insert(
            REQUEST_ID_HEADER,
            HeaderValue::from_str(&"y".repeat(MAX_REQUEST_ID_LEN)).unwrap(),
        );
        assert_eq!(request_id(&h).len(), MAX_REQUEST_ID_LEN);
    }

    #[test]
    fn paths_redact_secrets() {
        let uri: axum::http::Uri =
            "/token?service=wharf&scope=repository:a/b:pull&access_token=s3cr3t&X-Amz-Signature=abc&n=10&flag"
                .parse()
                .unwrap();
        assert_eq!(
            logged_path(&uri),
            "/token?service=wharf&scope=repository:a/b:pull&access_token=REDACTED&X-Amz-Signature=REDACTED&n=10&flag"
        );
        let uri: axum::http::Uri = "/v2/a%2Fb/blobs/uploads/x?digest=sha256:00"
            .parse()
            .unwrap();
        assert_eq!(
            logged_path(&uri),
            "/v2/a%2Fb/blobs/uploads/x?digest=sha256:00"
        );
        let long: axum::http::Uri = format!("/v2/{}/tags/list", "a".repeat(5000))
            .parse()
            .unwrap();
        let p = logged_path(&long);
        assert_eq!(p.len(), MAX_LOGGED_PATH + 3);
        assert!(p.ends_with("..."));
    }

    #[test]
    fn latency_in_milliseconds() {
        assert_eq!(Millis(535).to_string(), "0.535");
        assert_eq!(Millis(0).to_string(), "0.000");
        assert_eq!(Millis(12_345_678).to_string(), "12345.678");
        assert_eq!(Millis(1_000).to_string(), "1.000");
    }

    #[tokio::test]
    async fn notes_are_scoped_to_the_request() {
        note_user("outside");
        let ((), notes) = with_notes(async {
            note_repo("team/app");
            tokio::task::yield_now().await;
            note_user("alice");
        })
        .await;
        assert_eq!(notes.user.as_deref(), Some("alice"));
        assert_eq!(notes.repo.as_deref(), Some("team/app"));
        let ((), empty) = with_notes(async {}).await;
        assert!(empty.user.is_none() && empty.repo.is_none());
    }
}
