//! Connection hardening end to end with the real binary: thousands of silent sockets from one
//! address do not starve other clients (per-address limit), silent sockets (plain and TLS after
//! the handshake) are closed at the first-byte deadline, a trickled request body is cut, and
//! `/metrics` (which names repositories) is served only on the metrics listener.

mod support;

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use serde_json::json;
use support::*;
use tempfile::TempDir;

/// `wharf serve` with a configuration file, started and watched by this file (the TLS test needs
/// readiness without a plain-HTTP probe). SIGKILLed on drop; the log is printed on a panic.
struct Wharf {
    addr: SocketAddr,
    child: Child,
    dir: TempDir,
}

impl Wharf {
    fn start(config: &str) -> Wharf {
        let dir = tempfile::Builder::new()
            .prefix("wharf-conn-e2e-")
            .tempdir()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let cfg = dir.path().join("wharf.toml");
        fs::write(&cfg, config).unwrap();
        let log = fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .arg("serve")
            .arg("--init")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&cfg)
            .env_remove("WHARF_CONFIG")
            .env_remove("WHARF_METRICS_LISTEN")
            .env("WHARF_LOG", "info,registry=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn wharf");
        let mut w = Wharf { addr, child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !w.log().contains("wharf registry listening") {
            if let Some(st) = w.child.try_wait().unwrap() {
                panic!("wharf exited ({st}):\n{}", w.log());
            }
            assert!(Instant::now() < deadline, "not ready in 30 s:\n{}", w.log());
            std::thread::sleep(Duration::from_millis(25));
        }
        w
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Open file descriptors of the server process (its sockets, mostly).
    fn open_fds(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Wharf {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- wharf log ---\n{}\n--- end ---",
                tail_text(&self.log(), 60)
            );
        }
    }
}

fn tail_text(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A TCP connection to `dst` from the loopback address `src` (Linux routes all of 127/8 to the
/// loopback interface, so 127.0.0.2 is "another client" of a server on 127.0.0.1).
fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> io::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.bind(SocketAddr::from((src, 0)))?;
        tokio::time::timeout(Duration::from_secs(5), sock.connect(dst))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
    })?;
    let s = s.into_std()?;
    s.set_nonblocking(false)?;
    Ok(s)
}

/// One `GET` with `Connection: close` from `src`; the status and body, or the I/O error (a
/// 5 s read timeout counts as an error).
fn get_from(src: Ipv4Addr, dst: SocketAddr, path: &str, accept: &str) -> io::Result<(u16, String)> {
    let mut s = connect_from(src, dst)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {dst}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no HTTP answer: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

/// How long until the server closes `s` (EOF or reset), reading and discarding what it sends;
/// `None` if it is still open after `limit`.
fn time_to_close(s: &mut TcpStream, since: Instant, limit: Duration) -> Option<Duration> {
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(since.elapsed())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(since.elapsed()),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(_) => return Some(since.elapsed()),
        }
    }
}

/// Pushes config + one layer under `repo:tag`; returns the manifest digest.
fn push_image(http: &Http, repo: &str, tag: &str) -> String {
    let layer = pattern(7, 20_000);
    let layer_d = http.must_push_blob(repo, &layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_d]}
    }))
    .unwrap();
    let config_d = http.must_push_blob(repo, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_d, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_d, "size": layer.len()}]
    }))
    .unwrap();
    http.push_manifest(repo, tag, OCI_MANIFEST, &manifest)
        .unwrap()
        .expect(201);
    sha256_digest(&manifest)
}

/// The soft limit on open files of this process (the server inherits it).
fn open_files_limit() -> usize {
    fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(1024)
}

/// The attack with the shipped defaults (4,096 connections in all): 4,100 sockets from
/// 127.0.0.1 that send nothing. Another client (127.0.0.2) must still get `/healthz` and a
/// manifest within a second each.
#[test]
fn silent_sockets_from_one_address_do_not_starve_other_clients() {
    let w = Wharf::start("");
    let http = Http::new(w.addr);
    let digest = push_image(&http, "team/app", "v1");

    let wanted = 4100usize;
    let limit = open_files_limit();
    let count = if limit >= wanted + 300 {
        wanted
    } else {
        let n = limit.saturating_sub(300);
        eprintln!(
            "open-files limit is {limit}: opening {n} silent sockets instead of {wanted} \
             (fewer than the 4,096 connection slots, so the test cannot fail before the fix)"
        );
        n
    };
    let started = Instant::now();
    let mut silent = Vec::with_capacity(count);
    for i in 0..count {
        match TcpStream::connect_timeout(&w.addr, Duration::from_secs(5)) {
            Ok(s) => silent.push(s),
            Err(e) => panic!("silent socket {i}: {e}"),
        }
    }
    // Let the server accept what it will.
    std::thread::sleep(Duration::from_millis(500));
    let fds = w.open_fds();
    eprintln!(
        "{count} silent sockets opened in {:.2}s; the server holds {fds} open files",
        started.elapsed().as_secs_f64()
    );

    let other = Ipv4Addr::new(127, 0, 0, 2);
    let t = Instant::now();
    let (status, body) =
        get_from(other, w.addr, "/healthz", "*/*").expect("/healthz from another client");
    let healthz = t.elapsed();
    assert_eq!((status, body.as_str()), (200, "ok"));
    let t = Instant::now();
    let (status, _) = get_from(
        other,
        w.addr,
        &format!("/v2/team/app/manifests/{digest}"),
        OCI_MANIFEST,
    )
    .expect("manifest from another client");
    let manifest = t.elapsed();
    assert_eq!(status, 200);
    eprintln!(
        "with {count} silent sockets open: /healthz in {healthz:?}, manifest GET in {manifest:?}"
    );
    assert!(healthz < Duration::from_secs(1), "{healthz:?}");
    assert!(manifest < Duration::from_secs(1), "{manifest:?}");
    drop(silent);
}

/// A socket that sends nothing is closed at the first-byte deadline (not before); one that sends
/// its request in time is served.
#[test]
fn a_silent_socket_is_closed_at_the_first_byte_deadline() {
    let w = Wharf::start("[server]\nfirst_byte_timeout_seconds = 2\n");
    let start = Instant::now();
    let mut silent = TcpStream::connect(w.addr).unwrap();
    let mut late = TcpStream::connect(w.addr).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    write!(
        late,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    late.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    late.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let closed = time_to_close(&mut silent, start, Duration::from_secs(10));
    eprintln!("silent socket closed after {closed:?} (first_byte_timeout_seconds = 2)");
    let closed = closed.expect("the silent socket is still open after 10 s");
    assert!(
        closed >= Duration::from_millis(1900) && closed < Duration::from_secs(4),
        "{closed:?}"
    );
}

/// An anonymous `POST /token` whose body comes at one byte every 2 s is cut after about the body
/// timeout (3 s here), however long it would take to send.
#[test]
fn a_trickled_request_body_is_cut_off() {
    let w = Wharf::start("[server]\nbody_read_timeout_seconds = 3\n");
    let mut s = TcpStream::connect(w.addr).unwrap();
    write!(
        s,
        "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: 100\r\n\r\n"
    )
    .unwrap();
    let start = Instant::now();
    let writer = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut sent = 0;
            for _ in 0..100 {
                if s.write_all(b"g").is_err() {
                    break;
                }
                sent += 1;
                std::thread::sleep(Duration::from_secs(2));
                if start.elapsed() > Duration::from_secs(20) {
                    break;
                }
            }
            sent
        })
    };
    let closed = time_to_close(&mut s, start, Duration::from_secs(15));
    let _ = s.shutdown(std::net::Shutdown::Both);
    let sent = writer.join().unwrap();
    eprintln!(
        "trickled body cut after {closed:?}, {sent} byte(s) sent (body_read_timeout_seconds = 3)"
    );
    let closed = closed.expect("the trickling connection is still open after 15 s");
    assert!(
        closed >= Duration::from_millis(2500) && closed < Duration::from_secs(6),
        "{closed:?}"
    );
    assert!(w.log().contains("request body too slow"), "{}", w.log());
}

/// A TLS connection that completes its handshake and then sends nothing is closed at the
/// first-byte deadline; a TLS request in time is served.
#[test]
fn a_tls_connection_idle_after_the_handshake_is_closed() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("tls.crt"), cert.pem()).unwrap();
    fs::write(dir.path().join("tls.key"), key.serialize_pem()).unwrap();
    let w = Wharf::start(&format!(
        "[server]\nfirst_byte_timeout_seconds = 2\n[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        dir.path().join("tls.crt").display(),
        dir.path().join("tls.key").display()
    ));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let handshake = || {
        let mut sock = TcpStream::connect(w.addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut conn = rustls::ClientConnection::new(
            config.clone(),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).unwrap();
        }
        rustls::StreamOwned::new(conn, sock)
    };

    // Served when it asks in time.
    let mut ok = handshake();
    write!(
        ok,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = ok.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Silent after the handshake: closed at the deadline.
    let silent = handshake();
    let start = Instant::now();
    let mut sock = silent.sock;
    let closed = time_to_close(&mut sock, start, Duration::from_secs(10));
    eprintln!(
        "TLS connection idle after its handshake closed after {closed:?} (first_byte_timeout_seconds = 2)"
    );
    let closed = closed.expect("the idle TLS connection is still open after 10 s");
    assert!(
        closed >= Duration::from_millis(1900) && closed < Duration::from_secs(4),
        "{closed:?}"
    );
}

/// `/metrics` names repositories and their sizes: the registry's listener does not serve it to
/// anyone; the metrics listener does, with the per-repository gauges.
#[test]
fn metrics_are_only_on_the_metrics_listener() {
    let metrics_port = free_port();
    let w = Wharf::start(&format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
    ));
    let http = Http::new(w.addr);
    push_image(&http, "secret/project-x", "v1");
    // Refresh the storage-use gauges.
    http.get("/api/v1/storage?refresh=true")
        .unwrap()
        .expect(200);

    let public = http.get("/metrics").unwrap();
    assert_eq!(public.status, 404, "{}", public.dump());
    let text = public.text();
    assert!(!text.contains("secret/project-x"), "{text}");
    assert!(!text.contains("repository="), "{text}");

    let scraped = Http::new(SocketAddr::from(([127, 0, 0, 1], metrics_port)))
        .get("/metrics")
        .unwrap()
        .expect(200)
        .text();
    assert!(
        scraped.contains("wharf_repository_bytes{repository=\"secret/project-x\""),
        "{scraped}"
    );
    assert!(scraped.contains("wharf_http_requests_total"), "{scraped}");
}

/// The deadlines leave legitimate slow traffic alone: with one-second first-byte and idle
/// deadlines and a two-second body timeout, an upload that keeps sending for 5 s (64 KiB every
/// 0.4 s) is accepted, and a client that reads an 8 MiB blob slowly over about 4 s gets all of it.
#[test]
fn slow_but_steady_uploads_and_pulls_are_not_cut() {
    // The write-stall deadline is 3 s, still shorter than the 4 s pull: a reader that keeps
    // reading is never cut, however long the whole transfer. (At 1 s the pull was cut twice on
    // a machine at load 10, never in CI. The likely cause: once the socket buffers are full, the
    // kernel sends a window update only when the reader has freed a good part of its buffer, so
    // the server's writes can wait a second or more while the client reads steadily.)
    let w = Wharf::start(
        "[server]\nfirst_byte_timeout_seconds = 1\nidle_timeout_seconds = 1\n\
         body_read_timeout_seconds = 2\nwrite_stall_timeout_seconds = 3\n",
    );
    let http = Http::new(w.addr);
    let data = pattern(21, 8 * 1024 * 1024);
    let digest = sha256_digest(&data);

    // Upload: a monolithic PUT whose body comes in 64 KiB pieces for about 5 s.
    let upload: Vec<u8> = data[..13 * 64 * 1024].to_vec();
    let upload_digest = sha256_digest(&upload);
    let loc = http
        .request("POST", "/v2/team/slow/blobs/uploads/", &[], &[])
        .unwrap()
        .expect(202)
        .location();
    let mut s = TcpStream::connect(w.addr).unwrap();
    write!(
        s,
        "PUT {} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        with_query(&loc, &format!("digest={upload_digest}")),
        upload.len()
    )
    .unwrap();
    let start = Instant::now();
    for piece in upload.chunks(64 * 1024) {
        std::thread::sleep(Duration::from_millis(400));
        s.write_all(piece).unwrap();
    }
    let mut answer = String::new();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.read_to_string(&mut answer).unwrap();
    eprintln!("slow upload answered after {:?}", start.elapsed());
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");

    // Pull: read 8 MiB at about 2 MiB/s.
    http.must_push_blob("team/slow", &data);
    let mut s = TcpStream::connect(w.addr).unwrap();
    write!(
        s,
        "GET /v2/team/slow/blobs/{digest} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(30));
    }
    let took = start.elapsed();
    let body = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| &got[i + 4..])
        .expect("an HTTP answer");
    eprintln!("slow pull of {} bytes took {took:?}", body.len());
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert_eq!(sha256_digest(body), digest, "the whole blob arrived");
    assert!(
        took > Duration::from_secs(2),
        "{took:?}: not slow enough to test anything"
    );
}

/// A client that asks for a large blob and then stops reading: the server's writes block, and
/// the connection is closed at the write-stall deadline (before, it stayed open for good, and the
/// client could read the whole blob whenever it came back).
#[test]
fn a_client_that_stops_reading_is_disconnected() {
    let w = Wharf::start("[server]\nwrite_stall_timeout_seconds = 2\n");
    let http = Http::new(w.addr);
    // Far more than the socket buffers on both sides can hold.
    let data = pattern(33, 64 * 1024 * 1024);
    let digest = http.must_push_blob("team/stall", &data);
    let mut s = TcpStream::connect(w.addr).unwrap();
    write!(
        s,
        "GET /v2/team/stall/blobs/{digest} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // Not reading for well past the deadline.
    std::thread::sleep(Duration::from_secs(5));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    let mut got = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    let ended = loop {
        match s.read(&mut buf) {
            Ok(0) => break "closed",
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break "reset",
            Err(e) => panic!("read failed after {got} bytes, {:?}: {e}", start.elapsed()),
        }
    };
    eprintln!(
        "stalled reader: {ended} after reading {got} of {} bytes",
        data.len()
    );
    assert!(
        got < data.len(),
        "the whole blob ({got} bytes with headers) was still there after the stall: the \
         connection was not closed"
    );
    // The server is fine and serves the blob to a client that reads.
    let (r, n, d) = http.get_blob_hashed("team/stall", &digest).unwrap();
    assert_eq!((r.status, n as usize, d), (200, data.len(), digest));
}
