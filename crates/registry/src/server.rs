//! The connection loop: accepts TCP connections and serves HTTP/1.1 and HTTP/2 on them, plain or
//! over TLS, with the limits a public-facing server needs (TLS handshake timeout, first-byte,
//! header, idle and request-body deadlines, a connection cap overall and per source address,
//! graceful drain; see conn_guard.rs).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::conn_guard::{ConnState, Deadlines, GuardedIo, PerAddress, TimedBody, TrackedBody};
use crate::tls::{ClientIdentity, ReloadingTls};

/// Connection-level limits, and TLS. A zero duration turns that deadline off.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// A client must send a request's headers within this time (HTTP/1.1; slowloris guard).
    pub header_read_timeout: Duration,
    /// A new connection (after its TLS handshake) must send its first byte within this time.
    pub first_byte_timeout: Duration,
    /// A connection with no request in progress is closed after this time (HTTP/2 included;
    /// HTTP/1.1 keep-alive connections are closed by `header_read_timeout` first when shorter).
    pub idle_timeout: Duration,
    /// Longest wait for request-body data; with `body_min_rate`, the allowance a slow body spends
    /// (see conn_guard.rs). A body that runs out is cut and its connection closed.
    pub body_read_timeout: Duration,
    /// Body bytes per second that keep an upload within `body_read_timeout`; 0: any data does.
    pub body_min_rate: u64,
    /// A connection whose client takes no byte of a response for this long is closed (a client
    /// that asks for a blob and never reads it would otherwise hold its slot for good).
    pub write_stall_timeout: Duration,
    /// Most connections served at once; further ones wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Most connections open at once from one source address (IPv6: one /64); a connection
    /// over it is closed at once without taking a slot of `max_connections`. 0: no limit.
    pub max_connections_per_address: usize,
    /// How long in-flight requests may run after shutdown begins.
    pub shutdown_grace: Duration,
    /// Serve HTTPS with this certificate (checked for changes while serving, see
    /// [`ReloadingTls::watch`]); plain HTTP when `None`.
    pub tls: Option<ReloadingTls>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_read_timeout: Duration::from_secs(30),
            first_byte_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
            body_min_rate: 1024,
            write_stall_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_connections_per_address: 256,
            shutdown_grace: Duration::from_secs(30),
            tls: None,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets in-flight
/// requests finish for up to `shutdown_grace`, and returns.
///
/// With TLS, each connection gets the certificate current when it is accepted, must finish its
/// handshake within the handshake timeout (holding a connection slot meanwhile), and, when the
/// client presented a verified certificate, every request on it carries a [`ClientIdentity`]
/// extension. The certificate files are checked for changes while this runs.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(60)));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(opts.max_connections.max(1)));
    let per_address = PerAddress::new(opts.max_connections_per_address);
    let deadlines = Deadlines {
        first_byte: opts.first_byte_timeout,
        idle: opts.idle_timeout,
        body: opts.body_read_timeout,
        body_min_rate: opts.body_min_rate,
        write_stall: opts.write_stall_timeout,
    };
    let reloader = opts
        .tls
        .clone()
        .map(|tls| AbortOnDrop(tokio::spawn(tls.watch())));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Over its address's limit: closed at once, and its global slot goes back.
        let Some(address_slot) = per_address.acquire(peer.ip()) else {
            tracing::debug!(%peer, limit = opts.max_connections_per_address, "too many connections from this address; closed");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Subscribed before shutdown can begin, so a connection still in its handshake when
        // shutdown starts is told to finish as soon as it is up.
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let app = app.clone();
        match &opts.tls {
            None => {
                tokio::spawn(async move {
                    serve_connection(&builder, stream, app, None, watcher, peer, deadlines).await;
                    drop((permit, address_slot));
                });
            }
            Some(tls) => {
                let config = tls.server_config();
                let timeout = tls.settings().handshake_timeout;
                tokio::spawn(async move {
                    if let Some((stream, identity)) = handshake(stream, config, timeout, peer).await
                    {
                        serve_connection(&builder, stream, app, identity, watcher, peer, deadlines)
                            .await;
                    }
                    drop((permit, address_slot));
                });
            }
        }
    }
    drop(listener);
    drop(reloader);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(opts.shutdown_grace) => {
            tracing::warn!(grace = ?opts.shutdown_grace, "requests still running after the grace period; closing them");
        }
    }
    Ok(())
}

/// Serves HTTP/1.1 or HTTP/2 (by the connection preface) on one connection until it closes,
/// until one of its deadlines passes while no request is in progress, or, after shutdown begins,
/// until its in-flight requests are done.
async fn serve_connection<I>(
    builder: &Builder<TokioExecutor>,
    io: I,
    app: Router,
    identity: Option<ClientIdentity>,
    watcher: Watcher,
    peer: SocketAddr,
    deadlines: Deadlines,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = ConnState::new();
    let service = TowerToHyperService::new(WithIdentity {
        app,
        identity,
        peer,
        state: state.clone(),
        deadlines,
    });
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(GuardedIo::new(io, state.clone())), service)
        .into_owned();
    // Dropping the connection future closes the socket.
    tokio::select! {
        r = watcher.watch(conn) => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        why = state.expired(deadlines) => {
            tracing::debug!(%peer, reason = why.as_str(), "connection closed");
        }
    }
}

/// Runs the TLS handshake within `timeout`. Returns the stream and, if the client presented a
/// certificate (verified by rustls against the client CA), its identity; `None` when the
/// handshake failed or timed out (logged).
async fn handshake(
    mut stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    timeout: Duration,
    peer: SocketAddr,
) -> Option<(
    tokio_rustls::server::TlsStream<TcpStream>,
    Option<ClientIdentity>,
)> {
    let deadline = Instant::now() + timeout;
    // A plain HTTP request on the HTTPS port gets an answer that says so, instead of a TLS alert
    // a person cannot read. A TLS record starts with 0x16 (handshake); HTTP with a method name.
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0].is_ascii_uppercase() => {
            tracing::debug!(%peer, "plain HTTP request on the TLS port");
            let _ = tokio::time::timeout_at(
                deadline,
                stream.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n\
                      This server speaks HTTPS only: use https:// to reach it.\n",
                ),
            )
            .await;
            let _ = tokio::time::timeout_at(deadline, stream.shutdown()).await;
            return None;
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "connection failed before the TLS handshake");
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, ?timeout, "TLS handshake timed out (nothing received)");
            return None;
        }
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let stream = match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            log_handshake_error(peer, &e);
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, ?timeout, "TLS handshake timed out");
            return None;
        }
    };
    let identity = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(ClientIdentity::from_der);
    if let Some(id) = &identity {
        tracing::debug!(%peer, subject = %id.subject(), serial = %id.serial(), "TLS client certificate verified");
    }
    Some((stream, identity))
}

/// Client certificate refusals are worth an info line (who tried); other handshake failures
/// (scanners, clients that do not trust the certificate) stay at debug.
fn log_handshake_error(peer: SocketAddr, e: &io::Error) {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(
            err @ (rustls::Error::NoCertificatesPresented
            | rustls::Error::InvalidCertificate(_)
            | rustls::Error::InvalidCertRevocationList(_)),
        ) => {
            tracing::info!(%peer, error = %err, "TLS client certificate refused");
        }
        _ => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
    }
}

/// The router, with the connection's verified client certificate (if any) and source address
/// added to every request's extensions; each request counts as in progress on its connection
/// until its response body is done, and its body must keep coming ([`TimedBody`]).
#[derive(Clone)]
struct WithIdentity {
    app: Router,
    identity: Option<ClientIdentity>,
    /// The connection's source address, for rate limiting and audit records.
    peer: SocketAddr,
    state: Arc<ConnState>,
    deadlines: Deadlines,
}

impl<B> tower::Service<Request<B>> for WithIdentity
where
    B: hyper::body::Body<Data = axum::body::Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::<Request<axum::body::Body>>::poll_ready(&mut self.app, cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let guard = self.state.request_started();
        let mut req = req
            .map(|b| axum::body::Body::new(TimedBody::new(b, self.state.clone(), &self.deadlines)));
        if let Some(id) = &self.identity {
            req.extensions_mut().insert(id.clone());
        }
        req.extensions_mut()
            .insert(crate::http_access::PeerAddr(self.peer));
        let fut = self.app.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            Ok(resp.map(|b| axum::body::Body::new(TrackedBody::new(b, guard))))
        })
    }
}

/// Aborts a background task when dropped (the certificate watcher, when the server returns).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use axum::Extension;
    use axum::routing::get;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::AsyncReadExt;
    use tokio_rustls::TlsConnector;

    use super::*;
    use crate::tls::testing::{Issued, TestCa};
    use crate::tls::{ClientAuth, TlsSettings};

    async fn whoami(id: Option<Extension<ClientIdentity>>) -> String {
        match id {
            Some(Extension(id)) => format!(
                "cn={} dns={:?} email={:?}",
                id.common_name().unwrap_or("-"),
                id.dns_names(),
                id.email_addresses()
            ),
            None => "anonymous".into(),
        }
    }

    struct Running {
        addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<io::Result<()>>,
        _dir: tempfile::TempDir,
    }

    impl Running {
        async fn stop(mut self) {
            let _ = self.stop.take().unwrap().send(());
            tokio::time::timeout(Duration::from_secs(5), self.task)
                .await
                .expect("server stops within 5s")
                .unwrap()
                .unwrap();
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    async fn start(
        ca: &TestCa,
        server: &Issued,
        client_auth: Option<ClientAuth>,
        tune: impl FnOnce(&mut ServeOptions),
    ) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = TlsSettings::new(
            write(dir.path(), "tls.crt", &server.cert_pem),
            write(dir.path(), "tls.key", &server.key_pem),
        );
        if let Some(mode) = client_auth {
            settings.client_ca_path = Some(write(dir.path(), "ca.crt", &ca.pem));
            settings.client_auth = mode;
        }
        let mut opts = ServeOptions {
            tls: Some(ReloadingTls::load(settings).unwrap()),
            ..ServeOptions::default()
        };
        tune(&mut opts);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/whoami", get(whoami));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, app, opts, async move {
            let _ = rx.await;
        }));
        Running {
            addr,
            stop: Some(tx),
            task,
            _dir: dir,
        }
    }

    fn connector(ca: &TestCa, client: Option<&Issued>, alpn: &[&[u8]]) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
            .unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let mut config = match client {
            Some(c) => builder
                .with_client_auth_cert(
                    vec![c.der.clone()],
                    PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsConnector::from(Arc::new(config))
    }

    /// One HTTP/1.1 GET over TLS; the response as text, or the error.
    async fn get_text(
        addr: SocketAddr,
        connector: &TlsConnector,
        path: &str,
    ) -> io::Result<String> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await?;
        tls.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut out = String::new();
        tls.read_to_string(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn tls_negotiates_h2_and_exposes_the_client_identity() {
        let ca = TestCa::new("server test CA");
        let server = ca.server(7);
        let srv = start(&ca, &server, Some(ClientAuth::Optional), |_| {}).await;

        // ALPN: h2 preferred, http/1.1 offered.
        let tcp = TcpStream::connect(srv.addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = connector(&ca, None, &[b"h2", b"http/1.1"])
            .connect(name.clone(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        assert_eq!(
            tls.get_ref().1.peer_certificates().unwrap()[0],
            server.der,
            "the configured certificate is served"
        );
        drop(tls);

        // Optional mode: no certificate is anonymous, a verified one is an identity.
        let anon = get_text(srv.addr, &connector(&ca, None, &[b"http/1.1"]), "/whoami")
            .await
            .unwrap();
        assert!(anon.starts_with("HTTP/1.1 200"), "{anon}");
        assert!(anon.ends_with("anonymous"), "{anon}");
        let client = ca.client("ci-runner");
        let me = get_text(
            srv.addr,
            &connector(&ca, Some(&client), &[b"http/1.1"]),
            "/whoami",
        )
        .await
        .unwrap();
        assert!(
            me.ends_with(r#"cn=ci-runner dns=["ci.example.com"] email=["ci@example.com"]"#),
            "{me}"
        );

        // A certificate from another CA is refused even in optional mode.
        let other = TestCa::new("other CA").client("intruder");
        let refused = get_text(
            srv.addr,
            &connector(&ca, Some(&other), &[b"http/1.1"]),
            "/whoami",
        )
        .await;
        assert!(refused.is_err(), "{refused:?}");

        // Plain HTTP on the TLS port is told to use https.
        let mut plain = TcpStream::connect(srv.addr).await.unwrap();
        plain
            .write_all(b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        plain.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert!(out.contains("HTTPS only"), "{out}");
        srv.stop().await;
    }

    #[tokio::test]
    async fn tls_required_client_certificate() {
        let ca = TestCa::new("required CA");
        let server = ca.server(8);
        let srv = start(&ca, &server, Some(ClientAuth::Required), |_| {}).await;
        let refused = get_text(srv.addr, &connector(&ca, None, &[]), "/whoami").await;
        assert!(refused.is_err(), "{refused:?}");
        let client = ca.client("deployer");
        let ok = get_text(srv.addr, &connector(&ca, Some(&client), &[]), "/whoami")
            .await
            .unwrap();
        assert!(ok.contains("cn=deployer"), "{ok}");
        srv.stop().await;
    }

    #[tokio::test]
    async fn tls_handshake_timeout_frees_connection_slots() {
        let ca = TestCa::new("timeout CA");
        let server = ca.server(9);
        let srv = start(&ca, &server, None, |o| {
            o.max_connections = 1;
            let tls = o.tls.take().unwrap();
            let mut settings = tls.settings().clone();
            settings.handshake_timeout = Duration::from_millis(300);
            o.tls = Some(ReloadingTls::load(settings).unwrap());
        })
        .await;
        // A silent client takes the only slot, then is disconnected at the handshake timeout.
        let started = std::time::Instant::now();
        let mut silent = TcpStream::connect(srv.addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // A client that sends half a ClientHello is disconnected as well.
        let mut half = TcpStream::connect(srv.addr).await.unwrap();
        half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
            .await
            .expect("the silent connection is closed by the server")
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert!(started.elapsed() >= Duration::from_millis(250));
        // The slot is free again: the half-sent handshake got it, then lost it too, and a real
        // client is served.
        let ok = tokio::time::timeout(
            Duration::from_secs(5),
            get_text(srv.addr, &connector(&ca, None, &[]), "/whoami"),
        )
        .await
        .expect("served once the slots are freed")
        .unwrap();
        assert!(ok.ends_with("anonymous"), "{ok}");
        srv.stop().await;
    }

    #[tokio::test]
    async fn plain_http_still_works_without_tls() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/whoami", get(whoami));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, app, ServeOptions::default(), async move {
            let _ = rx.await;
        }));
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with("anonymous"), "{out}");
        tx.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}
