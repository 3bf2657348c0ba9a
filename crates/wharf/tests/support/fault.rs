//! A fault-injecting HTTP/1.1 proxy in front of a real registry, for testing clients of an
//! upstream (the pull-through cache above all) against an upstream that misbehaves.
//!
//! [`FaultProxy::start`] listens on `127.0.0.1:0` and forwards every request to the upstream over
//! a kept-alive connection, rewriting `Host` to the upstream and every upstream address in
//! `Location`, `WWW-Authenticate` (the token realm), `Content-Location` and `Link` back to the
//! proxy, so the Bearer token flow and upload sessions go through it too. The HTTP handling is
//! written by hand on raw tokio sockets so that a fault can act at the byte level: stop listening,
//! hang, cut a body after N bytes, flip bytes, trickle, delay, or answer with an error status.
//!
//! Faults come as [`Rule`]s (a [`Fault`], an optional filter on the request, an optional number of
//! uses); the first rule that matches a request decides its fate, and a request no rule matches
//! passes through. Counters ([`FaultProxy::requests`], [`FaultProxy::blob_bytes`],
//! [`FaultProxy::blob_gets`], [`FaultProxy::log`]) let a test assert what the upstream really
//! served, e.g. "this blob was fetched exactly once".
//!
//! The proxy runs on its own Tokio runtime in a background thread, so blocking tests and async
//! tests use it alike; dropping the [`FaultProxy`] closes the listener and every connection.
//! Memory is bounded: bodies are streamed in 64 KiB pieces, request heads are capped at 64 KiB,
//! and the request log keeps the last [`LOG_CAPACITY`] entries.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Largest request or response head the proxy accepts (bytes).
const MAX_HEAD: usize = 64 * 1024;
/// Largest chunk-size or trailer line of a chunked body (bytes).
const MAX_LINE: usize = 4096;
/// Size of the pieces bodies are copied in.
const PIECE: usize = 64 * 1024;
/// How many requests [`FaultProxy::log`] remembers (the oldest are forgotten first).
pub const LOG_CAPACITY: usize = 10_000;
/// How many distinct blob digests [`FaultProxy::blob_gets`] tracks.
const MAX_TRACKED_BLOBS: usize = 100_000;
/// Corrupted responses have the byte at every multiple of this offset (0 included) flipped.
pub const CORRUPT_STRIDE: u64 = 64 * 1024;

/// What the proxy does to a request that a [`Rule`] matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Pass the request through untouched (useful as a rule that shields some requests from a
    /// later, broader rule).
    None,
    /// The upstream is down. Set for every request and without a use limit (as [`FaultProxy::set`]
    /// does), the proxy stops listening: new connections are refused (`ECONNREFUSED`) until the
    /// fault is lifted, when it listens again on the same address. Requests that arrive on
    /// connections already open, and requests matched by a filtered or counted `Refuse` rule, get
    /// their connection closed without an answer.
    Refuse,
    /// Accept and read the request, never answer; the connection stays open until the client
    /// gives up (or the proxy is dropped). The upstream is not contacted.
    Stall,
    /// Forward the request, send the response head and the first `after` bytes of the body, then
    /// close the connection (in a chunked body the cut falls inside a chunk). A body no longer
    /// than `after` goes out whole, and the connection is closed after it.
    DropMidBody {
        /// Body bytes sent before the connection is closed.
        after: u64,
    },
    /// Answer with this status and a registry-style JSON error body without contacting the
    /// upstream; 429 and 503 carry `Retry-After: 1`.
    Status(u16),
    /// Forward, but flip the bits of the body byte at every multiple of [`CORRUPT_STRIDE`] in
    /// successful (2xx) responses: same length and headers, different digest.
    Corrupt,
    /// Forward, sending the response body at this rate (the head goes out at once).
    SlowBody {
        /// Body bytes per second.
        bytes_per_sec: u64,
    },
    /// Wait this long before forwarding the request, so the client's first response byte comes
    /// that much later than the upstream's.
    FirstByteDelay(Duration),
}

/// The kind of registry endpoint a request path names, for filters and counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathKind {
    /// `/v2/` (the API version check).
    Base,
    /// `/v2/<name>/manifests/<reference>`.
    Manifest,
    /// `/v2/<name>/blobs/<digest>` (not uploads).
    Blob,
    /// `/v2/<name>/blobs/uploads/...`.
    Upload,
    /// A token endpoint: a path ending in `/token`.
    Token,
    /// Anything else (tag lists, referrers, the catalog, health checks...).
    Other,
}

impl PathKind {
    /// Classifies a request target (the query, if any, is ignored).
    pub fn of(target: &str) -> PathKind {
        let path = target.split(['?', '#']).next().unwrap_or("");
        if path == "/v2" || path == "/v2/" {
            PathKind::Base
        } else if path.starts_with("/v2/") && path.contains("/manifests/") {
            PathKind::Manifest
        } else if path.starts_with("/v2/") && path.contains("/blobs/uploads") {
            PathKind::Upload
        } else if path.starts_with("/v2/") && path.contains("/blobs/") {
            PathKind::Blob
        } else if path.ends_with("/token") {
            PathKind::Token
        } else {
            PathKind::Other
        }
    }
}

/// What a rule's filter sees of a request.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// The kind of endpoint the path names.
    pub kind: PathKind,
}

type Predicate = Arc<dyn Fn(&RequestInfo) -> bool + Send + Sync>;

/// A fault, the requests it applies to, and how many times it may apply.
#[derive(Clone)]
pub struct Rule {
    fault: Fault,
    kind: Option<PathKind>,
    method: Option<String>,
    pred: Option<Predicate>,
    times: Option<u64>,
}

impl Rule {
    /// A rule applying `fault` to every request, with no use limit.
    pub fn new(fault: Fault) -> Rule {
        Rule {
            fault,
            kind: None,
            method: None,
            pred: None,
            times: None,
        }
    }

    /// Only requests whose path is of this kind.
    pub fn kind(mut self, kind: PathKind) -> Rule {
        self.kind = Some(kind);
        self
    }

    /// Only requests with this method (e.g. `"GET"`, so HEAD checks pass).
    pub fn method(mut self, method: &str) -> Rule {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Only requests this predicate accepts (on top of `kind` and `method`).
    pub fn when(mut self, pred: impl Fn(&RequestInfo) -> bool + Send + Sync + 'static) -> Rule {
        self.pred = Some(Arc::new(pred));
        self
    }

    /// Applies to the first `n` matching requests only, then stops matching.
    pub fn times(mut self, n: u64) -> Rule {
        self.times = Some(n);
        self
    }

    fn matches(&self, req: &RequestInfo) -> bool {
        self.times != Some(0)
            && self.kind.is_none_or(|k| k == req.kind)
            && self.method.as_deref().is_none_or(|m| m == req.method)
            && self.pred.as_ref().is_none_or(|p| p(req))
    }

    /// An unfiltered, unlimited `Refuse`: the proxy stops listening.
    fn is_global_refuse(&self) -> bool {
        self.fault == Fault::Refuse
            && self.kind.is_none()
            && self.method.is_none()
            && self.pred.is_none()
            && self.times.is_none()
    }
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("fault", &self.fault)
            .field("kind", &self.kind)
            .field("method", &self.method)
            .field("pred", &self.pred.as_ref().map(|_| "<fn>"))
            .field("times", &self.times)
            .finish()
    }
}

/// One request as the proxy saw and handled it.
#[derive(Clone, Debug)]
pub struct Record {
    /// The method.
    pub method: String,
    /// The request target (path and query).
    pub target: String,
    /// The kind of endpoint.
    pub kind: PathKind,
    /// The fault applied, if a rule matched.
    pub fault: Option<Fault>,
    /// Whether the request reached the upstream.
    pub forwarded: bool,
    /// The status the client was sent (None: it got no response head).
    pub status: Option<u16>,
    /// Response body bytes written to the client.
    pub body_bytes: u64,
}

/// State shared between the handle and the proxy's tasks.
struct Shared {
    addr: SocketAddr,
    upstream: SocketAddr,
    rules: Mutex<Vec<Rule>>,
    /// Whether the listener should be up (false while a global `Refuse` is set).
    want_listen: watch::Sender<bool>,
    /// Whether it is up, as the accept loop last left it.
    listening: AtomicBool,
    counts: Mutex<HashMap<(String, PathKind), u64>>,
    blob_gets: Mutex<HashMap<String, u64>>,
    /// The request log: (request id, record), oldest first.
    log: Mutex<VecDeque<(u64, Record)>>,
    next_id: AtomicU64,
    blob_bytes: AtomicU64,
    forwarded: AtomicU64,
    upstream_connections: AtomicU64,
    client_connections: AtomicU64,
}

impl Shared {
    /// The fault for this request, if a rule matches (using up one of a counted rule's uses).
    fn pick(&self, req: &RequestInfo) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap();
        let rule = rules.iter_mut().find(|r| r.matches(req))?;
        if let Some(n) = rule.times.as_mut() {
            *n -= 1;
        }
        Some(rule.fault.clone())
    }

    fn count(&self, req: &RequestInfo) {
        *self
            .counts
            .lock()
            .unwrap()
            .entry((req.method.clone(), req.kind))
            .or_default() += 1;
    }

    /// Counts a blob GET the upstream answered with 2xx (called before the client sees any
    /// of the response, so a client that has its answer can rely on the count).
    fn served_blob(&self, target: &str) {
        let digest = blob_digest(target);
        let mut gets = self.blob_gets.lock().unwrap();
        if gets.len() < MAX_TRACKED_BLOBS || gets.contains_key(digest) {
            *gets.entry(digest.to_string()).or_default() += 1;
        }
    }

    /// Inserts or updates request `id` in the log. Called when the request arrives, before its
    /// response head goes out, and when it is finished, so the log is never behind what a
    /// client has seen.
    fn record(&self, id: u64, rec: &Record) {
        let mut log = self.log.lock().unwrap();
        if let Some((_, r)) = log.iter_mut().rev().find(|(i, _)| *i == id) {
            *r = rec.clone();
            return;
        }
        if log.len() == LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back((id, rec.clone()));
    }
}

/// The digest at the end of a blob path (`/v2/<name>/blobs/<digest>?...`).
fn blob_digest(target: &str) -> &str {
    let path = target.split('?').next().unwrap_or("");
    path.rsplit('/').next().unwrap_or("")
}

/// A running fault-injecting proxy (see the module documentation). Dropping it stops it.
pub struct FaultProxy {
    shared: Arc<Shared>,
    shutdown: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream`, passing everything
    /// through until a fault is set.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let std_listener =
            std::net::TcpListener::bind(("127.0.0.1", 0)).expect("fault proxy: bind 127.0.0.1:0");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (want_tx, want_rx) = watch::channel(true);
        let shared = Arc::new(Shared {
            addr,
            upstream,
            rules: Mutex::new(Vec::new()),
            want_listen: want_tx,
            listening: AtomicBool::new(true),
            counts: Mutex::new(HashMap::new()),
            blob_gets: Mutex::new(HashMap::new()),
            log: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(0),
            blob_bytes: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            upstream_connections: AtomicU64::new(0),
            client_connections: AtomicU64::new(0),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("fault proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("tokio listener");
                    accept_loop(sh, listener, want_rx, stop_rx).await;
                });
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .expect("spawn fault proxy thread");
        FaultProxy {
            shared,
            shutdown: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The address clients should use instead of the upstream's.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `127.0.0.1:PORT`, as used in image references and configuration.
    pub fn host(&self) -> String {
        self.shared.addr.to_string()
    }

    /// The upstream it forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Applies `fault` to every request from now on (replacing all rules).
    pub fn set(&self, fault: Fault) {
        self.set_rules(vec![Rule::new(fault)]);
    }

    /// Applies `fault` to requests of one kind only (replacing all rules); others pass.
    pub fn set_for(&self, kind: PathKind, fault: Fault) {
        self.set_rules(vec![Rule::new(fault).kind(kind)]);
    }

    /// Replaces all rules with one.
    pub fn set_rule(&self, rule: Rule) {
        self.set_rules(vec![rule]);
    }

    /// Replaces all rules; the first one matching a request applies. Returns once the listener
    /// is in the state the rules ask for (closed under a global `Refuse`, open otherwise).
    pub fn set_rules(&self, rules: Vec<Rule>) {
        let listen = !rules.iter().any(Rule::is_global_refuse);
        *self.shared.rules.lock().unwrap() = rules;
        self.shared.want_listen.send_replace(listen);
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.shared.listening.load(Ordering::SeqCst) != listen {
            assert!(
                Instant::now() < deadline,
                "fault proxy on {} could not {} its listener",
                self.shared.addr,
                if listen { "reopen" } else { "close" }
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Removes every rule: everything passes through again.
    pub fn clear(&self) {
        self.set_rules(Vec::new());
    }

    /// Requests received with this method on this kind of path (faulted or not).
    pub fn requests(&self, method: &str, kind: PathKind) -> u64 {
        self.shared
            .counts
            .lock()
            .unwrap()
            .get(&(method.to_ascii_uppercase(), kind))
            .copied()
            .unwrap_or(0)
    }

    /// Requests received on this kind of path, all methods together.
    pub fn requests_of(&self, kind: PathKind) -> u64 {
        self.shared
            .counts
            .lock()
            .unwrap()
            .iter()
            .filter(|((_, k), _)| *k == kind)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests forwarded to the upstream.
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }

    /// Body bytes of successful (2xx) blob responses written to clients: what the upstream
    /// served of blob content (error bodies do not count).
    pub fn blob_bytes(&self) -> u64 {
        self.shared.blob_bytes.load(Ordering::SeqCst)
    }

    /// GET requests for the blob with this digest that the upstream answered with 2xx (a 401
    /// challenge or a 404 does not count; a transfer cut by a fault does).
    pub fn blob_gets(&self, digest: &str) -> u64 {
        self.shared
            .blob_gets
            .lock()
            .unwrap()
            .get(digest)
            .copied()
            .unwrap_or(0)
    }

    /// Connections the proxy opened to the upstream.
    pub fn upstream_connections(&self) -> u64 {
        self.shared.upstream_connections.load(Ordering::SeqCst)
    }

    /// Client connections the proxy accepted.
    pub fn client_connections(&self) -> u64 {
        self.shared.client_connections.load(Ordering::SeqCst)
    }

    /// The requests received so far (the last [`LOG_CAPACITY`]), oldest first. A request
    /// appears when it arrives; its status is set before the client sees the response head, and
    /// `body_bytes` once the body is finished.
    pub fn log(&self) -> Vec<Record> {
        self.shared
            .log
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Zeroes every counter and empties the log.
    pub fn reset_counters(&self) {
        self.shared.counts.lock().unwrap().clear();
        self.shared.blob_gets.lock().unwrap().clear();
        self.shared.log.lock().unwrap().clear();
        self.shared.blob_bytes.store(0, Ordering::SeqCst);
        self.shared.forwarded.store(0, Ordering::SeqCst);
        self.shared.upstream_connections.store(0, Ordering::SeqCst);
        self.shared.client_connections.store(0, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Accepting
// ---------------------------------------------------------------------------------------------

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut want: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut listener = Some(listener);
    loop {
        let wanted = *want.borrow_and_update();
        if !wanted && listener.is_some() {
            listener = None;
        }
        if wanted && listener.is_none() {
            match TcpListener::bind(shared.addr).await {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    eprintln!(
                        "fault proxy: rebinding {} failed: {e}; retrying",
                        shared.addr
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                        _ = stop.changed() => return,
                    }
                }
            }
        }
        shared.listening.store(listener.is_some(), Ordering::SeqCst);
        let accept = async {
            match &listener {
                Some(l) => l.accept().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.changed() => return,
            _ = want.changed() => {}
            r = accept => match r {
                Ok((sock, _)) => {
                    shared.client_connections.fetch_add(1, Ordering::SeqCst);
                    let _ = sock.set_nodelay(true);
                    tokio::spawn(serve_client(shared.clone(), sock));
                }
                Err(e) => {
                    eprintln!("fault proxy: accept on {}: {e}", shared.addr);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 heads
// ---------------------------------------------------------------------------------------------

/// A parsed request or response head: the first line split in three, and the header fields.
struct Head {
    first: [String; 3],
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(raw: &[u8]) -> io::Result<Head> {
        let text = std::str::from_utf8(raw).map_err(|_| bad("head is not UTF-8"))?;
        let mut lines = text.split("\r\n");
        let first_line = lines.next().unwrap_or("");
        let mut parts = first_line.splitn(3, ' ');
        let first = [
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        ];
        if first[0].is_empty() || first[1].is_empty() {
            return Err(bad("malformed first line"));
        }
        let mut headers = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| bad("malformed header"))?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        Ok(Head { first, headers })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// How the body that follows this head is delimited (`no_body`: a HEAD response, 1xx, 204,
    /// 304; a request without length fields).
    fn framing(&self, no_body: bool, is_request: bool) -> io::Result<Framing> {
        if no_body {
            return Ok(Framing::Length(0));
        }
        if self.has_token("Transfer-Encoding", "chunked") {
            return Ok(Framing::Chunked);
        }
        match self.get("Content-Length") {
            Some(v) => v
                .parse::<u64>()
                .map(Framing::Length)
                .map_err(|_| bad("bad Content-Length")),
            None if is_request => Ok(Framing::Length(0)),
            None => Ok(Framing::UntilClose),
        }
    }

    /// The wire form, CRLF-terminated.
    fn encode(&self) -> Vec<u8> {
        let mut s = format!("{} {} {}\r\n", self.first[0], self.first[1], self.first[2]);
        for (k, v) in &self.headers {
            s.push_str(k);
            s.push_str(": ");
            s.push_str(v);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }
}

/// How a body is delimited.
#[derive(Clone, Copy, Debug)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads a head up to and including the blank line; None on a clean EOF before any byte.
async fn read_head<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a head",
                ))
            };
        }
        let search_from = head.len().saturating_sub(3);
        let n = buf.len().min(MAX_HEAD + 4 - head.len());
        head.extend_from_slice(&buf[..n]);
        if let Some(pos) = head[search_from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        {
            let end = search_from + pos + 4;
            let extra = head.len() - end;
            r.consume(n - extra);
            head.truncate(end);
            return Ok(Some(head));
        }
        r.consume(n);
        if head.len() > MAX_HEAD {
            return Err(bad("head too large"));
        }
    }
}

/// Reads one CRLF-terminated line (at most [`MAX_LINE`] bytes), CRLF included.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside a chunked body",
            ));
        }
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&buf[..=i]);
            r.consume(i + 1);
            return Ok(line);
        }
        let n = buf.len();
        line.extend_from_slice(buf);
        r.consume(n);
        if line.len() > MAX_LINE {
            return Err(bad("chunk line too long"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Body shaping
// ---------------------------------------------------------------------------------------------

/// What happens to response body bytes on their way to the client.
#[derive(Default)]
struct Shaper<'a> {
    /// Counts body bytes just before they are written (so the count is never behind what a
    /// client has received).
    counter: Option<&'a AtomicU64>,
    /// Close after this many body bytes.
    limit: Option<u64>,
    corrupt: bool,
    bytes_per_sec: Option<u64>,
    /// Body bytes written so far.
    sent: u64,
    started: Option<Instant>,
}

/// How a body copy ended.
#[derive(PartialEq, Eq, Debug)]
enum BodyEnd {
    /// The whole body went through.
    Complete,
    /// The shaper's limit was reached: the connection must be closed.
    Cut,
}

impl Shaper<'_> {
    fn passthrough() -> Self {
        Shaper::default()
    }

    /// Writes body payload bytes to the client, applying limit, corruption and pace. Returns
    /// false once the limit is reached.
    async fn write<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        data: &mut [u8],
    ) -> io::Result<bool> {
        let allowed = match self.limit {
            Some(l) => (l.saturating_sub(self.sent)).min(data.len() as u64) as usize,
            None => data.len(),
        };
        let data = &mut data[..allowed];
        if self.corrupt {
            let start = self.sent;
            let mut off = start.div_ceil(CORRUPT_STRIDE) * CORRUPT_STRIDE;
            while off < start + data.len() as u64 {
                data[(off - start) as usize] ^= 0xFF;
                off += CORRUPT_STRIDE;
            }
        }
        match self.bytes_per_sec {
            None => {
                if let Some(c) = self.counter {
                    c.fetch_add(data.len() as u64, Ordering::SeqCst);
                }
                w.write_all(data).await?;
                self.sent += data.len() as u64;
            }
            Some(rate) => {
                let rate = rate.max(1);
                let started = *self.started.get_or_insert_with(Instant::now);
                // Pieces of about 1/20 s, so the pace is smooth.
                let step = (rate / 20).clamp(1, PIECE as u64) as usize;
                for piece in data.chunks(step) {
                    if let Some(c) = self.counter {
                        c.fetch_add(piece.len() as u64, Ordering::SeqCst);
                    }
                    w.write_all(piece).await?;
                    w.flush().await?;
                    self.sent += piece.len() as u64;
                    let due = started + Duration::from_secs_f64(self.sent as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
            }
        }
        Ok(self.limit.is_none_or(|l| self.sent < l))
    }
}

/// Copies a body from `src` to `dst` with the given framing, re-emitting chunked framing as is.
/// Payload bytes go through `shaper` (request bodies use a pass-through one).
async fn copy_body<R, W>(
    src: &mut R,
    dst: &mut W,
    framing: Framing,
    shaper: &mut Shaper<'_>,
) -> io::Result<BodyEnd>
where
    R: AsyncBufRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; PIECE];
    if shaper.limit == Some(0) {
        return Ok(BodyEnd::Cut);
    }
    match framing {
        Framing::Length(mut left) => {
            while left > 0 {
                let want = (left as usize).min(PIECE);
                let n = src.read(&mut buf[..want]).await?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "peer closed inside a body",
                    ));
                }
                left -= n as u64;
                if !shaper.write(dst, &mut buf[..n]).await? {
                    return Ok(BodyEnd::Cut);
                }
            }
        }
        Framing::UntilClose => loop {
            let n = src.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            if !shaper.write(dst, &mut buf[..n]).await? {
                return Ok(BodyEnd::Cut);
            }
        },
        Framing::Chunked => loop {
            let line = read_line(src).await?;
            let text = std::str::from_utf8(&line).map_err(|_| bad("bad chunk size"))?;
            let size_text = text.trim().split(';').next().unwrap_or("").trim();
            let mut left = u64::from_str_radix(size_text, 16).map_err(|_| bad("bad chunk size"))?;
            dst.write_all(&line).await?;
            if left == 0 {
                // Trailers, then the blank line.
                loop {
                    let t = read_line(src).await?;
                    dst.write_all(&t).await?;
                    if t == b"\r\n" || t == b"\n" {
                        break;
                    }
                }
                break;
            }
            while left > 0 {
                let want = (left as usize).min(PIECE);
                let n = src.read(&mut buf[..want]).await?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "peer closed inside a chunk",
                    ));
                }
                left -= n as u64;
                if !shaper.write(dst, &mut buf[..n]).await? {
                    return Ok(BodyEnd::Cut);
                }
            }
            let crlf = read_line(src).await?;
            dst.write_all(&crlf).await?;
        },
    }
    dst.flush().await?;
    Ok(BodyEnd::Complete)
}

// ---------------------------------------------------------------------------------------------
// Serving one client connection
// ---------------------------------------------------------------------------------------------

/// What to do with the client connection after a request.
enum Next {
    KeepAlive,
    Close,
}

/// The proxy's connection to the upstream for one client connection.
struct Upstream {
    conn: Option<BufReader<TcpStream>>,
    /// Whether `conn` has carried a request already (a stale kept-alive connection may have been
    /// closed by the upstream: such a failure is retried once on a fresh connection).
    reused: bool,
}

async fn serve_client(shared: Arc<Shared>, sock: TcpStream) {
    let mut client = BufReader::new(sock);
    let mut upstream = Upstream {
        conn: None,
        reused: false,
    };
    loop {
        let raw = match read_head(&mut client).await {
            Ok(Some(h)) => h,
            Ok(None) | Err(_) => return,
        };
        let req = match Head::parse(&raw) {
            Ok(h) => h,
            Err(_) => {
                let _ = client
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
                return;
            }
        };
        match handle(&shared, &mut client, &mut upstream, req).await {
            Next::KeepAlive => {}
            Next::Close => return,
        }
    }
}

async fn handle(
    shared: &Shared,
    client: &mut BufReader<TcpStream>,
    upstream: &mut Upstream,
    mut req: Head,
) -> Next {
    let info = RequestInfo {
        method: req.first[0].to_ascii_uppercase(),
        target: req.first[1].clone(),
        kind: PathKind::of(&req.first[1]),
    };
    shared.count(&info);
    let fault = shared.pick(&info);
    let mut rec = Record {
        method: info.method.clone(),
        target: info.target.clone(),
        kind: info.kind,
        fault: fault.clone(),
        forwarded: false,
        status: None,
        body_bytes: 0,
    };
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    shared.record(id, &rec);
    let client_close = req.has_token("Connection", "close") || req.first[2] == "HTTP/1.0";
    let req_framing = match req.framing(false, true) {
        Ok(f) => f,
        Err(_) => {
            shared.record(id, &rec);
            return Next::Close;
        }
    };

    let mut shaper = Shaper::passthrough();
    match &fault {
        Some(Fault::Refuse) => {
            shared.record(id, &rec);
            return Next::Close;
        }
        Some(Fault::Stall) => {
            // Read (and discard) whatever the client sends until it hangs up.
            let mut buf = vec![0u8; PIECE];
            while let Ok(n) = client.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            shared.record(id, &rec);
            return Next::Close;
        }
        Some(Fault::Status(code)) => {
            let mut sink = tokio::io::sink();
            if copy_body(client, &mut sink, req_framing, &mut Shaper::passthrough())
                .await
                .is_err()
            {
                shared.record(id, &rec);
                return Next::Close;
            }
            let resp = status_response(*code, info.method == "HEAD", client_close);
            let ok = client.write_all(&resp).await.is_ok() && client.flush().await.is_ok();
            rec.status = Some(*code);
            shared.record(id, &rec);
            return if ok && !client_close {
                Next::KeepAlive
            } else {
                Next::Close
            };
        }
        Some(Fault::FirstByteDelay(d)) => tokio::time::sleep(*d).await,
        Some(Fault::DropMidBody { after }) => shaper.limit = Some(*after),
        Some(Fault::Corrupt) => shaper.corrupt = true,
        Some(Fault::SlowBody { bytes_per_sec }) => shaper.bytes_per_sec = Some(*bytes_per_sec),
        Some(Fault::None) | None => {}
    }

    // Forward the request.
    let upstream_authority = shared.upstream.to_string();
    match req
        .headers
        .iter_mut()
        .find(|(k, _)| k.eq_ignore_ascii_case("Host"))
    {
        Some((_, v)) => *v = upstream_authority.clone(),
        None => req
            .headers
            .push(("Host".to_string(), upstream_authority.clone())),
    }
    let req_bytes = req.encode();
    let has_body = !matches!(req_framing, Framing::Length(0));
    let mut attempt = 0;
    let (mut up, resp) = loop {
        attempt += 1;
        let mut up = match upstream.conn.take() {
            Some(c) => c,
            None => match TcpStream::connect(shared.upstream).await {
                Ok(s) => {
                    shared.upstream_connections.fetch_add(1, Ordering::SeqCst);
                    let _ = s.set_nodelay(true);
                    upstream.reused = false;
                    BufReader::new(s)
                }
                Err(e) => {
                    let resp = bad_gateway(&format!("upstream {}: {e}", shared.upstream));
                    let _ = client.write_all(&resp).await;
                    rec.status = Some(502);
                    shared.record(id, &rec);
                    return Next::Close;
                }
            },
        };
        let was_reused = upstream.reused;
        upstream.reused = true;
        let sent = async {
            up.write_all(&req_bytes).await?;
            if has_body {
                copy_body(client, &mut up, req_framing, &mut Shaper::passthrough()).await?;
            }
            up.flush().await
        }
        .await;
        if let Err(e) = sent {
            if was_reused && !has_body && attempt == 1 {
                continue;
            }
            let resp = bad_gateway(&format!("sending to upstream {}: {e}", shared.upstream));
            let _ = client.write_all(&resp).await;
            rec.status = Some(502);
            shared.record(id, &rec);
            return Next::Close;
        }
        rec.forwarded = true;
        // The response head, forwarding interim (1xx) responses as they come.
        let resp = loop {
            match read_head(&mut up).await {
                Ok(Some(raw)) => match Head::parse(&raw) {
                    Ok(h) => {
                        let code: u16 = h.first[1].parse().unwrap_or(0);
                        if (100..200).contains(&code) && code != 101 {
                            if client.write_all(&raw).await.is_err() {
                                shared.record(id, &rec);
                                return Next::Close;
                            }
                            continue;
                        }
                        break Ok(h);
                    }
                    Err(e) => break Err(e),
                },
                Ok(None) => {
                    break Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "upstream closed the connection",
                    ));
                }
                Err(e) => break Err(e),
            }
        };
        match resp {
            Ok(h) => break (up, h),
            Err(_) if was_reused && !has_body && attempt == 1 => {
                rec.forwarded = false;
                continue;
            }
            Err(e) => {
                let resp = bad_gateway(&format!("upstream {}: {e}", shared.upstream));
                let _ = client.write_all(&resp).await;
                rec.status = Some(502);
                shared.record(id, &rec);
                return Next::Close;
            }
        }
    };
    shared.forwarded.fetch_add(1, Ordering::SeqCst);

    let mut resp = resp;
    let code: u16 = resp.first[1].parse().unwrap_or(0);
    rec.status = Some(code);
    let no_body = info.method == "HEAD" || code == 204 || code == 304 || (100..200).contains(&code);
    let framing = match resp.framing(no_body, false) {
        Ok(f) => f,
        Err(_) => {
            let _ = client.write_all(&bad_gateway("bad upstream framing")).await;
            shared.record(id, &rec);
            return Next::Close;
        }
    };
    let upstream_close = resp.has_token("Connection", "close")
        || resp.first[0] == "HTTP/1.0"
        || matches!(framing, Framing::UntilClose);
    if !(200..300).contains(&code) {
        shaper.corrupt = false;
    }
    rewrite_addresses(&mut resp, &upstream_authority, &shared.addr.to_string());
    let blob_ok = info.kind == PathKind::Blob && (200..300).contains(&code);
    if blob_ok && info.method == "GET" {
        shared.served_blob(&info.target);
    }
    if blob_ok {
        shaper.counter = Some(&shared.blob_bytes);
    }
    shared.record(id, &rec);
    if client.write_all(&resp.encode()).await.is_err() {
        shared.record(id, &rec);
        return Next::Close;
    }
    let end = copy_body(&mut up, client, framing, &mut shaper).await;
    let _ = client.flush().await;
    rec.body_bytes = shaper.sent;
    shared.record(id, &rec);
    match end {
        Ok(BodyEnd::Complete) => {}
        Ok(BodyEnd::Cut) | Err(_) => return Next::Close,
    }
    if shaper.limit.is_some() {
        // DropMidBody on a body no longer than the limit: it went out whole; close anyway.
        return Next::Close;
    }
    if !upstream_close {
        upstream.conn = Some(up);
    }
    if client_close || upstream_close {
        Next::Close
    } else {
        Next::KeepAlive
    }
}

/// Points every URL at the upstream in the headers that carry URLs back at the proxy.
fn rewrite_addresses(resp: &mut Head, upstream: &str, proxy: &str) {
    for (k, v) in &mut resp.headers {
        if ["Location", "Content-Location", "WWW-Authenticate", "Link"]
            .iter()
            .any(|h| k.eq_ignore_ascii_case(h))
        {
            *v = v.replace(&format!("//{upstream}"), &format!("//{proxy}"));
        }
    }
}

/// The registry error code that goes with an injected status.
fn error_code(code: u16) -> &'static str {
    match code {
        400 => "UNSUPPORTED",
        401 => "UNAUTHORIZED",
        403 => "DENIED",
        404 => "NAME_UNKNOWN",
        429 => "TOOMANYREQUESTS",
        _ => "UNAVAILABLE",
    }
}

/// A complete response for [`Fault::Status`].
fn status_response(code: u16, head_only: bool, close: bool) -> Vec<u8> {
    let body = format!(
        "{{\"errors\":[{{\"code\":\"{}\",\"message\":\"fault injected by the test proxy: HTTP {code}\"}}]}}",
        error_code(code)
    );
    let mut s = format!(
        "HTTP/1.1 {code} Fault\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Docker-Distribution-API-Version: registry/2.0\r\n",
        body.len()
    );
    if code == 429 || code == 503 {
        s.push_str("Retry-After: 1\r\n");
    }
    if close {
        s.push_str("Connection: close\r\n");
    }
    s.push_str("\r\n");
    if !head_only {
        s.push_str(&body);
    }
    s.into_bytes()
}

/// A 502 for an upstream the proxy could not reach or understand (the connection closes after).
fn bad_gateway(msg: &str) -> Vec<u8> {
    let body = serde_json::json!({"errors": [{"code": "UNAVAILABLE", "message": msg}]}).to_string();
    format!(
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
