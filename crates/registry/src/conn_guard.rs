//! Per-connection deadlines and per-address connection counts: the guards that keep sockets which
//! send nothing, or trickle, from holding the server's connection slots.
//!
//! A connection is *busy* while at least one request on it is in progress (from the moment its
//! head is parsed until its response body is sent or dropped) and *idle* otherwise. Only idle
//! connections have a deadline here: the first byte must arrive within `first_byte_timeout` of
//! the connection's start (after the TLS handshake), and an idle connection is closed after
//! `idle_timeout` (HTTP/2 pings and other frames do not count as activity; requests do). A busy
//! connection is bounded by the request-body rule instead ([`TimedBody`]), and by the write
//! stall rule: a connection whose socket has accepted no byte for `write_stall` while the server
//! has a response to send is closed (a client that asks for a blob and never reads would hold
//! its slot forever). A slow reader makes progress and is never cut; the server never times out
//! a response it is computing, so slow handlers are safe.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The deadlines of one connection (a zero duration turns a deadline off).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadlines {
    /// From the connection's start to its first byte.
    pub first_byte: Duration,
    /// Longest stay without a request in progress.
    pub idle: Duration,
    /// Longest wait for request-body data when nothing has been credited (see [`TimedBody`]).
    pub body: Duration,
    /// Body bytes per second that earn a second of waiting; 0: any data refills the allowance.
    pub body_min_rate: u64,
    /// Longest time the socket may accept no byte of a response the server is writing.
    pub write_stall: Duration,
}

/// Why the watchdog closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expired {
    /// Nothing at all arrived within the first-byte timeout.
    FirstByte,
    /// No request in progress for the idle timeout.
    Idle,
    /// A request body came too slowly; closed once its request was answered.
    SlowBody,
    /// The client stopped reading a response (nothing written for the write-stall timeout).
    WriteStall,
}

impl Expired {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Expired::FirstByte => "no request within the first-byte timeout",
            Expired::Idle => "idle for the idle timeout",
            Expired::SlowBody => "request body sent too slowly",
            Expired::WriteStall => "client stopped reading the response",
        }
    }
}

/// What the watchdog needs to know about one connection, shared by its IO, its service and the
/// bodies of its requests.
pub(crate) struct ConnState {
    read_any: AtomicBool,
    /// When writes started to block: milliseconds since `born`, plus one (0: not blocked).
    write_blocked: AtomicU64,
    born: Instant,
    activity: Mutex<Activity>,
    changed: Notify,
}

struct Activity {
    in_flight: usize,
    idle_since: Instant,
    slow_body: bool,
}

impl ConnState {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ConnState {
            read_any: AtomicBool::new(false),
            write_blocked: AtomicU64::new(0),
            born: Instant::now(),
            activity: Mutex::new(Activity {
                in_flight: 0,
                idle_since: Instant::now(),
                slow_body: false,
            }),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Activity> {
        self.activity.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks a request as in progress until the returned guard is dropped.
    pub(crate) fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.lock().in_flight += 1;
        RequestGuard(self.clone())
    }

    /// Notes that a write found the socket full (the first of a run of such writes starts the
    /// stall clock) or that one went through (which stops it).
    fn note_write(&self, blocked: bool) {
        let was = self.write_blocked.load(Ordering::Relaxed);
        if blocked && was == 0 {
            let since = self.born.elapsed().as_millis() as u64 + 1;
            self.write_blocked.store(since, Ordering::Relaxed);
        } else if !blocked && was != 0 {
            self.write_blocked.store(0, Ordering::Relaxed);
        }
    }

    /// When the current write stall passes its limit, if writes are blocked.
    fn write_stall_due(&self, d: &Deadlines) -> Option<Instant> {
        let since = self.write_blocked.load(Ordering::Relaxed);
        (since != 0 && !d.write_stall.is_zero())
            .then(|| self.born + Duration::from_millis(since - 1) + d.write_stall)
    }

    fn note_slow_body(&self) {
        self.lock().slow_body = true;
        self.changed.notify_one();
    }

    /// Resolves when the connection should be closed: an idle deadline passed, a request body
    /// timed out and no request is in progress any more, or the client has not taken a byte of
    /// a response for the write-stall timeout. Otherwise never resolves while a request runs.
    ///
    /// Only a timed-out body wakes it. Requests starting and ending, the first byte and blocked
    /// writes are not announced (that would wake this task twice per request, a tenth of the
    /// cost of a small GET): it looks at the state at each deadline, and at least every quarter
    /// of the shorter of the idle and write-stall timeouts.
    pub(crate) async fn expired(&self, d: Deadlines) -> Expired {
        let tick = [d.idle, d.write_stall]
            .into_iter()
            .filter(|t| !t.is_zero())
            .min()
            .map(|t| t / 4);
        loop {
            // Registered before reading the state: a change after the read wakes us.
            let changed = self.changed.notified();
            let due = {
                let a = self.lock();
                if a.in_flight > 0 {
                    None
                } else if a.slow_body {
                    return Expired::SlowBody;
                } else if !self.read_any.load(Ordering::Relaxed) {
                    (!d.first_byte.is_zero())
                        .then(|| (a.idle_since + d.first_byte, Expired::FirstByte))
                } else {
                    (!d.idle.is_zero()).then(|| (a.idle_since + d.idle, Expired::Idle))
                }
            };
            let stall = self.write_stall_due(&d).map(|at| (at, Expired::WriteStall));
            let due = match (due, stall) {
                (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
                (a, b) => a.or(b),
            };
            let now = Instant::now();
            if let Some((at, why)) = due
                && now >= at
            {
                return why;
            }
            // When to look again: at the due time, and after a tick at the latest (a request's
            // start and end and a write stall are not announced).
            let mut wake = due.map(|(at, _)| at);
            if let Some(t) = tick {
                wake = Some(wake.map_or(now + t, |w| w.min(now + t)));
            }
            match wake {
                None => changed.await,
                Some(at) => {
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
            }
        }
    }
}

/// A request in progress; dropping it (with the response body) makes the connection idle again.
pub(crate) struct RequestGuard(Arc<ConnState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let close = {
            let mut a = self.0.lock();
            a.in_flight -= 1;
            if a.in_flight == 0 {
                a.idle_since = Instant::now();
            }
            a.in_flight == 0 && a.slow_body
        };
        // A connection whose body timed out goes as soon as its answer is out.
        if close {
            self.0.changed.notify_one();
        }
    }
}

/// The connection's byte stream (above TLS, so it sees what HTTP sees), noting the first byte
/// read for the first-byte deadline.
pub(crate) struct GuardedIo<I> {
    io: I,
    state: Arc<ConnState>,
}

impl<I> GuardedIo<I> {
    pub(crate) fn new(io: I, state: Arc<ConnState>) -> Self {
        GuardedIo { io, state }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for GuardedIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before && !self.state.read_any.load(Ordering::Relaxed) {
            self.state.read_any.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for GuardedIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.state.note_write(r.is_pending());
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.state.note_write(r.is_pending());
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A response body that keeps its request counted as in progress until it is sent or dropped.
pub(crate) struct TrackedBody<B> {
    inner: B,
    _guard: RequestGuard,
}

impl<B> TrackedBody<B> {
    pub(crate) fn new(inner: B, guard: RequestGuard) -> Self {
        TrackedBody {
            inner,
            _guard: guard,
        }
    }
}

impl<B: HttpBody + Unpin> HttpBody for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that must keep coming: the handler waits for data at most `allowance`, which
/// starts at the body timeout, shrinks by the time spent waiting, and grows by one second per
/// `min_rate` bytes received (never beyond the body timeout). A steady upload at or above the
/// minimum rate never runs out, a pause of up to the body timeout is fine after a good stretch,
/// and a trickle (1 byte every few seconds) is cut after about one body timeout. Time the handler
/// spends not asking for data (writing to disk, waiting on a full queue) is not counted.
///
/// When it runs out, the handler reads an error and the connection is closed once the request is
/// answered.
pub(crate) struct TimedBody<B> {
    inner: B,
    state: Arc<ConnState>,
    limit: Duration,
    min_rate: u64,
    allowance: Duration,
    waiting_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    failed: bool,
}

impl<B> TimedBody<B> {
    pub(crate) fn new(inner: B, state: Arc<ConnState>, d: &Deadlines) -> Self {
        TimedBody {
            inner,
            state,
            limit: d.body,
            min_rate: d.body_min_rate,
            allowance: d.body,
            waiting_since: None,
            timer: None,
            failed: false,
        }
    }

    fn timeout_error(&self) -> BoxError {
        Box::new(BodyTimeout {
            limit: self.limit,
            min_rate: self.min_rate,
        })
    }
}

/// The error a handler reads from a request body that came too slowly.
#[derive(Debug, thiserror::Error)]
#[error("request body too slow: no data for {limit:?} at a rate of at least {min_rate} bytes/s")]
pub(crate) struct BodyTimeout {
    limit: Duration,
    min_rate: u64,
}

impl<B> HttpBody for TimedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(Some(Err(this.timeout_error())));
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if this.limit.is_zero() {
            return polled.map_err(Into::into);
        }
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                let now = Instant::now();
                if let Some(since) = this.waiting_since.take() {
                    this.allowance = this.allowance.saturating_sub(now - since);
                }
                let n = frame.data_ref().map_or(0, |d| d.len());
                let credit = if this.min_rate == 0 {
                    this.limit
                } else {
                    Duration::from_secs_f64(n as f64 / this.min_rate as f64)
                };
                this.allowance = (this.allowance + credit).min(this.limit);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => {
                this.waiting_since = None;
                Poll::Ready(other.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                let now = Instant::now();
                let since = *this.waiting_since.get_or_insert(now);
                let due = since + this.allowance;
                let timer = match &mut this.timer {
                    Some(t) => {
                        if t.deadline() != due {
                            t.as_mut().reset(due);
                        }
                        t
                    }
                    None => this.timer.insert(Box::pin(tokio::time::sleep_until(due))),
                };
                if now >= due || timer.as_mut().poll(cx).is_ready() {
                    this.failed = true;
                    this.state.note_slow_body();
                    tracing::debug!(limit = ?this.limit, min_rate = this.min_rate, "request body too slow");
                    return Poll::Ready(Some(Err(this.timeout_error())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.failed && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Connections open per source address (IPv6 by /64, which one host usually holds whole), so
/// that one client cannot take every connection slot.
pub(crate) struct PerAddress {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    /// `limit` 0 means no limit.
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(PerAddress {
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a connection from `ip`; `None` if that address is at its limit already.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        if self.limit == 0 {
            return Some(AddressSlot(None));
        }
        let key = address_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(AddressSlot(Some((self.clone(), key))))
    }
}

/// The key connections are counted under: the address itself for IPv4 (also when mapped into
/// IPv6), the /64 network for IPv6.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// One counted connection of an address; released on drop.
pub(crate) struct AddressSlot(Option<(Arc<PerAddress>, IpAddr)>);

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Some((per, key)) = self.0.take() {
            let mut open = per.open.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = open.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    #[test]
    fn per_address_limit_counts_and_releases() {
        let per = PerAddress::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = per.acquire(a).unwrap();
        let _s2 = per.acquire(a).unwrap();
        assert!(per.acquire(a).is_none(), "third connection of one address");
        assert!(per.acquire(b).is_some(), "another address is not affected");
        // The IPv4-mapped form is the same client.
        assert!(per.acquire("::ffff:10.0.0.1".parse().unwrap()).is_none());
        drop(s1);
        assert!(
            per.acquire(a).is_some(),
            "a closed connection frees its slot"
        );
        // One IPv6 /64 counts as one address.
        let _x = per.acquire("2001:db8::1".parse().unwrap()).unwrap();
        let _y = per.acquire("2001:db8::ffff:2".parse().unwrap()).unwrap();
        assert!(per.acquire("2001:db8::3".parse().unwrap()).is_none());
        assert!(per.acquire("2001:db8:0:1::3".parse().unwrap()).is_some());
        // 0: no limit.
        let open = PerAddress::new(0);
        let all: Vec<_> = (0..1000).map(|_| open.acquire(a).unwrap()).collect();
        assert_eq!(all.len(), 1000);
        assert!(open.open.lock().unwrap().is_empty());
    }

    fn deadlines(body: Duration, rate: u64) -> Deadlines {
        Deadlines {
            first_byte: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            body,
            body_min_rate: rate,
            write_stall: Duration::from_secs(60),
        }
    }

    /// A body delivering `chunk` bytes every `every`, `count` times.
    fn trickle(
        chunk: usize,
        every: Duration,
        count: usize,
    ) -> impl HttpBody<Data = Bytes, Error = std::convert::Infallible> + Unpin {
        let s = futures_util::stream::unfold(0usize, move |i| async move {
            if i == count {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((
                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b'x'; chunk]))),
                i + 1,
            ))
        });
        StreamBody::new(Box::pin(s))
    }

    #[tokio::test]
    async fn a_trickled_body_is_cut_after_about_the_body_timeout() {
        let state = ConnState::new();
        let _req = state.request_started();
        // 1 byte every 100 ms against a 400 ms allowance at 1 KiB/s.
        let body = TimedBody::new(
            trickle(1, Duration::from_millis(100), 100),
            state.clone(),
            &deadlines(Duration::from_millis(400), 1024),
        );
        let start = Instant::now();
        let err = body.collect().await.expect_err("cut off");
        assert!(err.to_string().contains("too slow"), "{err}");
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(390) && took <= Duration::from_millis(1500),
            "{took:?}"
        );
        assert!(state.lock().slow_body);
    }

    #[tokio::test]
    async fn a_steady_or_paused_upload_is_not_cut() {
        // 64 KiB every 20 ms for a while, then a pause shorter than the body timeout, then more.
        let state = ConnState::new();
        let fast = trickle(64 * 1024, Duration::from_millis(20), 30);
        let pause = trickle(1, Duration::from_millis(300), 1);
        let more = trickle(64 * 1024, Duration::from_millis(10), 3);
        let chained = StreamBody::new(Box::pin(
            fast.into_data_stream()
                .chain(pause.into_data_stream())
                .chain(more.into_data_stream())
                .map(|r| r.map(Frame::data)),
        ));
        let body = TimedBody::new(
            chained,
            state.clone(),
            &deadlines(Duration::from_millis(500), 1024),
        );
        let got = body.collect().await.expect("not cut").to_bytes();
        assert_eq!(got.len(), 33 * 64 * 1024 + 1);
        assert!(!state.lock().slow_body);
    }

    #[tokio::test]
    async fn the_watchdog_closes_idle_connections_but_never_busy_ones() {
        let d = Deadlines {
            first_byte: Duration::from_millis(200),
            idle: Duration::from_millis(300),
            body: Duration::from_secs(30),
            body_min_rate: 0,
            write_stall: Duration::from_millis(400),
        };
        // Silent: closed at the first-byte deadline.
        let silent = ConnState::new();
        let start = Instant::now();
        assert_eq!(silent.expired(d).await, Expired::FirstByte);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_millis(600),
            "{took:?}"
        );

        // A long request is never cut; the idle clock starts when it ends.
        let busy = ConnState::new();
        busy.read_any.store(true, Ordering::Relaxed);
        let req = busy.request_started();
        let start = Instant::now();
        let waiter = {
            let busy = busy.clone();
            tokio::spawn(async move { busy.expired(d).await })
        };
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(!waiter.is_finished());
        drop(req);
        assert_eq!(waiter.await.unwrap(), Expired::Idle);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1300) && took < Duration::from_millis(1800),
            "{took:?}"
        );

        // A body that timed out closes the connection once its request is answered.
        let slow = ConnState::new();
        let req = slow.request_started();
        slow.note_slow_body();
        let waiter = {
            let slow = slow.clone();
            tokio::spawn(async move { slow.expired(d).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "not while the answer is on its way");
        drop(req);
        assert_eq!(waiter.await.unwrap(), Expired::SlowBody);

        // A client that stops reading a response: closed at the write-stall deadline, although
        // its request is in progress; writes that go through stop the clock.
        let stalled = ConnState::new();
        stalled.read_any.store(true, Ordering::Relaxed);
        let _req = stalled.request_started();
        let waiter = {
            let stalled = stalled.clone();
            tokio::spawn(async move { stalled.expired(d).await })
        };
        stalled.note_write(true);
        tokio::time::sleep(Duration::from_millis(300)).await;
        stalled.note_write(false);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !waiter.is_finished(),
            "a write went through within the limit"
        );
        let start = Instant::now();
        stalled.note_write(true);
        stalled.note_write(true);
        assert_eq!(waiter.await.unwrap(), Expired::WriteStall);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(390) && took < Duration::from_millis(900),
            "{took:?}"
        );
    }

    use futures_util::StreamExt;
}
