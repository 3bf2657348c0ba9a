//! End-to-end tests of HTTPS: the real `wharf` binary serving TLS from certificates issued by a
//! test CA generated here (rcgen), driven by skopeo, curl and a small rustls client.
//!
//! - push and pull with skopeo verifying the certificate (cert dir with `ca.crt`), curl over
//!   HTTP/1.1 and HTTP/2, plain HTTP on the HTTPS port refused with a readable answer;
//! - certificate rotation the Kubernetes way (a new timestamped directory, `..data` symlink
//!   swapped atomically) while skopeo keeps pulling and a keep-alive connection stays open;
//! - a broken new certificate (key mismatch, garbage) keeps the old one serving;
//! - client certificates, required and optional, and RSA / SEC1 / PKCS#8 keys (openssl).

mod support;

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::*;
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Test PKI
// ---------------------------------------------------------------------------------------------

struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A certificate and its key, as PEM, and the certificate's DER.
#[derive(Clone)]
struct Issued {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        }
    }

    /// A server certificate for localhost and 127.0.0.1 with the given serial number.
    fn server(&self, serial: u64) -> Issued {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "wharf e2e server");
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate with the given common name.
    fn client(&self, cn: &str) -> Issued {
        let mut params = CertificateParams::new(vec![format!("{cn}.example.com")]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A directory for skopeo's `--*-cert-dir`: `ca.crt`, and a client pair if given.
    fn cert_dir(&self, parent: &Path, name: &str, client: Option<&Issued>) -> PathBuf {
        let dir = parent.join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("ca.crt"), &self.pem).unwrap();
        if let Some(c) = client {
            fs::write(dir.join("client.cert"), &c.cert_pem).unwrap();
            fs::write(dir.join("client.key"), &c.key_pem).unwrap();
        }
        dir
    }
}

/// A directory laid out as the kubelet lays out a Secret volume: `tls.crt` -> `..data/tls.crt`,
/// `..data` -> `..<timestamp>/`, updated by writing a new timestamped directory and renaming a
/// new `..data` symlink over the old one (atomic), then deleting the old directory.
struct SecretDir {
    dir: PathBuf,
    generation: u32,
}

impl SecretDir {
    fn new(dir: PathBuf, files: &[(&str, &[u8])]) -> SecretDir {
        fs::create_dir_all(&dir).unwrap();
        let mut s = SecretDir { dir, generation: 0 };
        s.update(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), s.dir.join(name)).unwrap();
        }
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn update(&mut self, files: &[(&str, &[u8])]) {
        self.generation += 1;
        let stamp = format!("..2026_11_26_18_{:02}_00.{}", self.generation, 123_456_789);
        let new = self.dir.join(&stamp);
        fs::create_dir(&new).unwrap();
        for (name, bytes) in files {
            fs::write(new.join(name), bytes).unwrap();
        }
        let old = fs::read_link(self.dir.join("..data")).ok();
        std::os::unix::fs::symlink(&stamp, self.dir.join("..data_tmp")).unwrap();
        fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).unwrap();
        if let Some(old) = old {
            fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }

    fn serve(&mut self, pair: &Issued, ca: Option<&TestCa>) {
        let mut files: Vec<(&str, &[u8])> = vec![
            ("tls.crt", pair.cert_pem.as_bytes()),
            ("tls.key", pair.key_pem.as_bytes()),
        ];
        if let Some(ca) = ca {
            files.push(("ca.crt", ca.pem.as_bytes()));
        }
        self.update(&files);
    }
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// `wharf serve` on a free loopback port; killed on drop (its log printed if the test failed).
struct TlsServer {
    port: u16,
    child: Option<Child>,
    log_path: PathBuf,
    dir: TempDir,
}

impl TlsServer {
    /// Starts `wharf serve` with extra arguments and environment; waits until it listens.
    fn start(args: &[OsString], envs: &[(&str, OsString)]) -> TlsServer {
        let dir = tempfile::Builder::new()
            .prefix("wharf-e2e-tls-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let log_path = dir.path().join("server.log");
        let log = fs::File::create(&log_path).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.arg("serve")
            .arg("--init")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(args);
        for var in [
            "WHARF_CONFIG",
            "WHARF_TLS_CERT",
            "WHARF_TLS_KEY",
            "WHARF_TLS_CLIENT_CA",
            "WHARF_TLS_CLIENT_AUTH",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let line = cmdline(&cmd);
        eprintln!("[e2e] starting {line}");
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {line}: {e}"));
        let mut s = TlsServer {
            port,
            child: Some(child),
            log_path,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !s.log().contains("wharf registry listening") {
            if let Some(st) = s.child.as_mut().unwrap().try_wait().unwrap() {
                s.child = None;
                panic!("wharf exited ({st}) before listening:\n{}", s.log());
            }
            assert!(Instant::now() < deadline, "not listening after 30s");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `localhost:PORT`, the name in image references (the certificate has both names).
    fn host(&self) -> String {
        format!("localhost:{}", self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until `needle` appears `count` times in the log.
    fn wait_log(&self, needle: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.log().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "{needle:?} not logged {count} time(s) within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, and the exit status within `timeout`.
    fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take().unwrap();
        signal(c.id(), "TERM");
        let st = wait_timeout(&mut c, timeout);
        if st.is_none() {
            let _ = c.kill();
            let _ = c.wait();
        }
        st
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- wharf log ({}) ---\n{}\n--- end of log ---",
                self.dir.path().display(),
                tail(&self.log_path, 80)
            );
        }
    }
}

fn os(s: impl AsRef<std::ffi::OsStr>) -> OsString {
    s.as_ref().to_os_string()
}

/// `--tls-cert DIR/tls.crt --tls-key DIR/tls.key` plus extra arguments.
fn tls_args(secret: &SecretDir, extra: &[OsString]) -> Vec<OsString> {
    let mut v = vec![
        os("--tls-cert"),
        os(secret.path("tls.crt")),
        os("--tls-key"),
        os(secret.path("tls.key")),
    ];
    v.extend_from_slice(extra);
    v
}

/// A config file setting the reload interval, as `--config FILE` arguments.
fn config_args(dir: &Path, toml: &str) -> Vec<OsString> {
    let p = dir.join("wharf.toml");
    fs::write(&p, toml).unwrap();
    vec![os("--config"), os(p)]
}

// ---------------------------------------------------------------------------------------------
// A small rustls client
// ---------------------------------------------------------------------------------------------

fn client_config(ca: &TestCa, client: Option<&Issued>) -> Arc<rustls::ClientConfig> {
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
    let config = match client {
        Some(c) => builder
            .with_client_auth_cert(
                vec![c.der.clone()],
                PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to `localhost` at `addr`, handshake done.
fn connect(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> io::Result<Tls> {
    let mut sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut conn =
        rustls::ClientConnection::new(config.clone(), ServerName::try_from("localhost").unwrap())
            .map_err(io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    Ok(rustls::StreamOwned::new(conn, sock))
}

/// The certificate a new connection is served.
fn served_cert(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> CertificateDer<'static> {
    let tls = connect(addr, config).expect("TLS connection");
    tls.conn.peer_certificates().expect("server certificate")[0].clone()
}

/// Sends a GET on an open connection (kept alive) and reads the response: status and body.
fn get_on(tls: &mut Tls, path: &str) -> io::Result<(u16, Vec<u8>)> {
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())?;
    tls.flush()?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if tls.read(&mut byte)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in the response head",
            ));
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line: {head}")))?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    tls.read_exact(&mut body)?;
    Ok((status, body))
}

/// One GET on a new connection.
fn https_get(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    path: &str,
) -> io::Result<(u16, Vec<u8>)> {
    let mut tls = connect(addr, config)?;
    get_on(&mut tls, path)
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

fn tools_ok(test: &str, extra: &[&str]) -> bool {
    let mut tools = vec!["umoci", "busybox", "skopeo", "curl"];
    tools.extend_from_slice(extra);
    have_tools(test, &tools)
}

/// skopeo copy of the shared base image to `dest` (verifying TLS with `cert_dir`).
fn skopeo_push(tmp: &Path, cert_dir: &Path, dest: &str) -> std::process::Output {
    run_any(
        skopeo(tmp)
            .args(["copy", "--quiet", "--preserve-digests", "--dest-cert-dir"])
            .arg(cert_dir)
            .arg(test_images().oci_ref(TAG_BASE))
            .arg(format!("docker://{dest}")),
    )
}

/// skopeo copy from `src` into a fresh OCI layout; the layout on success.
fn skopeo_pull(tmp: &Path, cert_dir: &Path, src: &str) -> Result<Layout, String> {
    let out = Layout::empty_temp();
    let o = run_any(
        skopeo(tmp)
            .args(["copy", "--quiet", "--src-cert-dir"])
            .arg(cert_dir)
            .arg(format!("docker://{src}"))
            .arg(out.oci_ref("pulled")),
    );
    if o.status.success() {
        Ok(out)
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

/// curl with the test CA; returns (exit success, stdout, stderr).
fn curl(ca_file: &Path, args: &[&str]) -> (bool, String, String) {
    let o = run_any(
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(ca_file)
            .args(args),
    );
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn tls_skopeo_push_pull_curl_h2_and_graceful_shutdown() {
    if !tools_ok("tls_skopeo_push_pull_curl_h2_and_graceful_shutdown", &[]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new("wharf e2e CA");
    let pair = ca.server(1);
    let mut secret = SecretDir::new(work.path().join("secret"), &[]);
    secret.serve(&pair, None);
    for name in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(format!("..data/{name}"), secret.path(name)).unwrap();
    }
    let mut srv = TlsServer::start(&tls_args(&secret, &[]), &[]);
    assert!(
        srv.log().contains("TLS certificate loaded"),
        "{}",
        srv.log()
    );
    let ca_file = work.path().join("ca.crt");
    fs::write(&ca_file, &ca.pem).unwrap();
    let certs = ca.cert_dir(work.path(), "certs", None);

    // skopeo push and pull, verifying the server certificate against the test CA.
    let o = skopeo_push(work.path(), &certs, &format!("{}/tls/app:1", srv.host()));
    assert!(
        o.status.success(),
        "push: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let pulled = skopeo_pull(work.path(), &certs, &format!("{}/tls/app:1", srv.host()))
        .unwrap_or_else(|e| panic!("pull: {e}"));
    assert_eq!(
        pulled.image("pulled").digest,
        test_images().image(TAG_BASE).digest
    );
    assert!(assert_blobs_subset(&pulled, test_images()) >= 3);
    // Without the CA, skopeo refuses the certificate.
    let o = skopeo_push(
        work.path(),
        &work.path().join("no-such-certs"),
        &format!("{}/tls/app:2", srv.host()),
    );
    assert!(!o.status.success(), "push without the CA must fail");

    // curl: HTTP/2 negotiated by ALPN, HTTP/1.1 when asked, the API answers.
    let (ok, out, err) = curl(
        &ca_file,
        &[
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            &srv.url("/v2/"),
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "2 200");
    let (ok, out, err) = curl(
        &ca_file,
        &[
            "--http1.1",
            "-w",
            " %{http_version} %{http_code}",
            &srv.url("/v2/tls/app/tags/list"),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains(r#""tags":["1"]"#), "{out}");
    assert!(out.ends_with(" 1.1 200"), "{out}");
    // By IP address too (the certificate has an IP SAN).
    let (ok, out, err) = curl(
        &ca_file,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("https://127.0.0.1:{}/v2/", srv.port),
        ],
    );
    assert!(ok && out == "200", "{out} {err}");
    // Without the CA: refused by curl.
    let o = run_any(Command::new("curl").args(["-sS", "--max-time", "10", &srv.url("/v2/")]));
    assert!(!o.status.success());
    // Plain HTTP on the HTTPS port: a readable 400.
    let o = run_any(Command::new("curl").args([
        "-sS",
        "--max-time",
        "10",
        "-w",
        " %{http_code}",
        &format!("http://localhost:{}/v2/", srv.port),
    ]));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("HTTPS only") && text.ends_with(" 400"),
        "{text}"
    );

    // The rustls client sees exactly the configured certificate.
    assert_eq!(served_cert(srv.addr(), &client_config(&ca, None)), pair.der);

    // SIGTERM with an idle keep-alive TLS connection open: clean exit, quickly.
    let mut idle = connect(srv.addr(), &client_config(&ca, None)).unwrap();
    assert_eq!(get_on(&mut idle, "/v2/").unwrap().0, 200);
    let st = srv.terminate(Duration::from_secs(10));
    assert!(
        st.is_some_and(|s| s.success()),
        "exit {st:?}\n{}",
        srv.log()
    );
}

#[test]
fn tls_certificate_rotation_while_clients_keep_pulling() {
    if !tools_ok("tls_certificate_rotation_while_clients_keep_pulling", &[]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new("rotation CA");
    let (a, b) = (ca.server(0xa), ca.server(0xb));
    let mut secret = SecretDir::new(
        work.path().join("secret"),
        &[
            ("tls.crt", a.cert_pem.as_bytes()),
            ("tls.key", a.key_pem.as_bytes()),
        ],
    );
    let args = [
        tls_args(&secret, &[]),
        config_args(work.path(), "[tls]\nreload_interval_seconds = 1\n"),
    ]
    .concat();
    let srv = TlsServer::start(&args, &[]);
    let cfg = client_config(&ca, None);
    assert_eq!(served_cert(srv.addr(), &cfg), a.der);
    let certs = ca.cert_dir(work.path(), "certs", None);
    let image = format!("{}/rotate/app:1", srv.host());
    let o = skopeo_push(work.path(), &certs, &image);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A keep-alive connection opened before the rotation.
    let mut kept = connect(srv.addr(), &cfg).unwrap();
    assert_eq!(get_on(&mut kept, "/v2/").unwrap().0, 200);

    // Clients that keep pulling: skopeo (full pulls), and new TLS connections as fast as they go.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let pulls = Arc::new(AtomicUsize::new(0));
    let skopeo_loop = {
        let (stop, failures, pulls) = (stop.clone(), failures.clone(), pulls.clone());
        let (tmp, certs, image) = (work.path().to_path_buf(), certs.clone(), image.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                match skopeo_pull(&tmp, &certs, &image) {
                    Ok(_) => {
                        pulls.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.lock().unwrap().push(format!("skopeo: {e}")),
                }
            }
        })
    };
    let seen_b = Arc::new(AtomicUsize::new(0));
    let gets = Arc::new(AtomicUsize::new(0));
    let get_loop = {
        let (stop, failures, gets, seen_b) =
            (stop.clone(), failures.clone(), gets.clone(), seen_b.clone());
        let (addr, cfg, b_der) = (srv.addr(), cfg.clone(), b.der.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let r = connect(addr, &cfg).and_then(|mut tls| {
                    let served = tls.conn.peer_certificates().unwrap()[0].clone();
                    let (status, _) = get_on(&mut tls, "/v2/rotate/app/manifests/1")?;
                    Ok((served, status))
                });
                match r {
                    Ok((served, 200)) => {
                        gets.fetch_add(1, Ordering::Relaxed);
                        if served == b_der {
                            seen_b.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok((_, status)) => failures.lock().unwrap().push(format!("GET: {status}")),
                    Err(e) => failures.lock().unwrap().push(format!("GET: {e}")),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // Let the pulls run on the old certificate, then rotate the Kubernetes way.
    let wait_pulls = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while pulls.load(Ordering::Relaxed) < n {
            assert!(Instant::now() < deadline, "pull loop stalled");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_pulls(2);
    secret.serve(&b, None);
    let rotated_at = Instant::now();
    srv.wait_log("TLS certificate reloaded", 1, Duration::from_secs(15));
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_cert(srv.addr(), &cfg) != b.der {
        assert!(Instant::now() < deadline, "new certificate not served");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "[e2e] new certificate served {:?} after the swap",
        rotated_at.elapsed()
    );
    // Pulls go on after the rotation too.
    let after = pulls.load(Ordering::Relaxed);
    wait_pulls(after + 2);
    stop.store(true, Ordering::Relaxed);
    skopeo_loop.join().unwrap();
    get_loop.join().unwrap();

    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failure(s) during rotation:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        seen_b.load(Ordering::Relaxed) > 0,
        "the GET loop never saw the new certificate"
    );
    eprintln!(
        "[e2e] {} skopeo pulls and {} TLS GETs during rotation, none failed",
        pulls.load(Ordering::Relaxed),
        gets.load(Ordering::Relaxed)
    );
    // The connection opened before the rotation was not dropped, and still has the old one.
    assert_eq!(get_on(&mut kept, "/v2/").unwrap().0, 200);
    assert_eq!(kept.conn.peer_certificates().unwrap()[0], a.der);
    assert!(srv.log().contains("previous_serial"), "{}", srv.log());
}

#[test]
fn tls_broken_new_certificate_keeps_the_old_one_serving() {
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new("broken rotation CA");
    let (a, b, c) = (ca.server(0xa1), ca.server(0xb2), ca.server(0xc3));
    let mut secret = SecretDir::new(
        work.path().join("secret"),
        &[
            ("tls.crt", a.cert_pem.as_bytes()),
            ("tls.key", a.key_pem.as_bytes()),
        ],
    );
    let args = [
        tls_args(&secret, &[]),
        config_args(work.path(), "[tls]\nreload_interval_seconds = 1\n"),
    ]
    .concat();
    let srv = TlsServer::start(&args, &[]);
    let cfg = client_config(&ca, None);
    assert_eq!(served_cert(srv.addr(), &cfg), a.der);

    // B's certificate with A's key: rejected loudly, A still served.
    secret.update(&[
        ("tls.crt", b.cert_pem.as_bytes()),
        ("tls.key", a.key_pem.as_bytes()),
    ]);
    srv.wait_log(
        "TLS certificate change REJECTED",
        1,
        Duration::from_secs(15),
    );
    assert!(srv.log().contains("ERROR"), "{}", srv.log());
    assert!(
        srv.log().contains("still_serving_serial=a1"),
        "{}",
        srv.log()
    );
    assert_eq!(served_cert(srv.addr(), &cfg), a.der);
    assert_eq!(https_get(srv.addr(), &cfg, "/v2/").unwrap().0, 200);

    // Garbage: rejected (logged again: it is a different problem), A still served.
    secret.update(&[
        (
            "tls.crt",
            b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        ),
        ("tls.key", b"nothing"),
    ]);
    srv.wait_log(
        "TLS certificate change REJECTED",
        2,
        Duration::from_secs(15),
    );
    // The same bad files are not logged again on every check.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        srv.log().matches("TLS certificate change REJECTED").count(),
        2,
        "{}",
        srv.log()
    );
    assert_eq!(served_cert(srv.addr(), &cfg), a.der);

    // A good pair again: served.
    secret.serve(&c, None);
    srv.wait_log("TLS certificate reloaded", 1, Duration::from_secs(15));
    assert_eq!(served_cert(srv.addr(), &cfg), c.der);
    assert_eq!(https_get(srv.addr(), &cfg, "/v2/").unwrap().0, 200);
}

#[test]
fn tls_client_certificates_required_and_optional() {
    if !tools_ok("tls_client_certificates_required_and_optional", &[]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new("mTLS CA");
    let pair = ca.server(0x51);
    let client = ca.client("ci-runner");
    let intruder = TestCa::new("some other CA").client("intruder");
    let mut secret = SecretDir::new(work.path().join("secret"), &[]);
    secret.serve(&pair, Some(&ca));
    for name in ["tls.crt", "tls.key", "ca.crt"] {
        std::os::unix::fs::symlink(format!("..data/{name}"), secret.path(name)).unwrap();
    }
    let write = |name: &str, text: &str| {
        let p = work.path().join(name);
        fs::write(&p, text).unwrap();
        p
    };
    let ca_file = write("ca.crt", &ca.pem);
    let client_crt = write("client.crt", &client.cert_pem);
    let client_key = write("client.key", &client.key_pem);
    let intruder_crt = write("intruder.crt", &intruder.cert_pem);
    let intruder_key = write("intruder.key", &intruder.key_pem);
    let with = |crt: &Path, key: &Path| -> Vec<String> {
        vec![
            "--cert".into(),
            crt.display().to_string(),
            "--key".into(),
            key.display().to_string(),
        ]
    };
    let curl_code = |srv: &TlsServer, extra: &[String]| -> (bool, String) {
        let mut args: Vec<&str> = extra.iter().map(String::as_str).collect();
        let url = srv.url("/v2/");
        args.extend(["-o", "/dev/null", "-w", "%{http_code}", &url]);
        let (ok, out, err) = curl(&ca_file, &args);
        (ok, format!("{out} {err}"))
    };

    // Required (the default with a client CA), from flags.
    let srv = TlsServer::start(
        &tls_args(&secret, &[os("--tls-client-ca"), os(secret.path("ca.crt"))]),
        &[],
    );
    let (ok, out) = curl_code(&srv, &[]);
    assert!(!ok, "no client certificate must be refused: {out}");
    let (ok, out) = curl_code(&srv, &with(&client_crt, &client_key));
    assert!(ok && out.starts_with("200"), "{out}");
    let (ok, out) = curl_code(&srv, &with(&intruder_crt, &intruder_key));
    assert!(!ok, "a certificate from another CA must be refused: {out}");
    assert!(
        https_get(srv.addr(), &client_config(&ca, None), "/v2/").is_err(),
        "rustls client without a certificate must be refused"
    );
    assert_eq!(
        https_get(srv.addr(), &client_config(&ca, Some(&client)), "/v2/")
            .unwrap()
            .0,
        200
    );
    // skopeo with the client pair in its cert dir pushes; without it, it cannot.
    let with_pair = ca.cert_dir(work.path(), "certs-client", Some(&client));
    let without = ca.cert_dir(work.path(), "certs-anon", None);
    let o = skopeo_push(
        work.path(),
        &with_pair,
        &format!("{}/mtls/app:1", srv.host()),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = skopeo_push(work.path(), &without, &format!("{}/mtls/app:2", srv.host()));
    assert!(!o.status.success(), "skopeo without a client certificate");
    srv.wait_log("TLS client certificate refused", 1, Duration::from_secs(5));
    drop(srv);

    // Optional, from environment variables.
    let envs = [
        ("WHARF_TLS_CERT", os(secret.path("tls.crt"))),
        ("WHARF_TLS_KEY", os(secret.path("tls.key"))),
        ("WHARF_TLS_CLIENT_CA", os(secret.path("ca.crt"))),
        ("WHARF_TLS_CLIENT_AUTH", os("optional")),
    ];
    let srv = TlsServer::start(&[], &envs);
    let (ok, out) = curl_code(&srv, &[]);
    assert!(
        ok && out.starts_with("200"),
        "anonymous in optional mode: {out}"
    );
    let (ok, out) = curl_code(&srv, &with(&client_crt, &client_key));
    assert!(ok && out.starts_with("200"), "{out}");
    let (ok, out) = curl_code(&srv, &with(&intruder_crt, &intruder_key));
    assert!(
        !ok,
        "a bad certificate is refused even in optional mode: {out}"
    );
}

#[test]
fn tls_serves_rsa_sec1_and_pkcs8_keys() {
    if !have_tools("tls_serves_rsa_sec1_and_pkcs8_keys", &["openssl", "curl"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let keys: [(&str, &[&str], &str); 3] = [
        (
            "rsa-pkcs1",
            &["genrsa", "-out", "{out}", "-traditional", "2048"],
            "BEGIN RSA PRIVATE KEY",
        ),
        (
            "ec-sec1",
            &["ecparam", "-out", "{out}", "-name", "prime256v1", "-genkey"],
            "BEGIN EC PRIVATE KEY",
        ),
        (
            "rsa-pkcs8",
            &[
                "genpkey",
                "-out",
                "{out}",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            "BEGIN PRIVATE KEY",
        ),
    ];
    for (name, genkey, marker) in keys {
        let key = work.path().join(format!("{name}.key"));
        let crt = work.path().join(format!("{name}.crt"));
        let key_path = key.display().to_string();
        run(Command::new("openssl").args(genkey.iter().map(|a| a.replace("{out}", &key_path))));
        let key_text = fs::read_to_string(&key).unwrap();
        assert!(key_text.contains(marker), "{name}: {key_text}");
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-new",
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
            ])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .arg("-key")
            .arg(&key)
            .arg("-out")
            .arg(&crt));
        let srv = TlsServer::start(
            &[os("--tls-cert"), os(&crt), os("--tls-key"), os(&key)],
            &[],
        );
        let (ok, out, err) = curl(
            &crt,
            &["-o", "/dev/null", "-w", "%{http_code}", &srv.url("/v2/")],
        );
        assert!(ok && out == "200", "{name}: {out} {err}\n{}", srv.log());
    }
}

#[test]
fn tls_bad_startup_configuration_fails_fast_with_a_clear_message() {
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new("startup CA");
    let (a, b) = (ca.server(1), ca.server(2));
    let write = |name: &str, text: &str| {
        let p = work.path().join(name);
        fs::write(&p, text).unwrap();
        os(p)
    };
    let (a_crt, b_key) = (write("a.crt", &a.cert_pem), write("b.key", &b.key_pem));
    let a_key = write("a.key", &a.key_pem);
    let cases: Vec<(Vec<OsString>, &str)> = vec![
        (
            vec![os("--tls-cert"), a_crt.clone()],
            "no key: give --tls-key",
        ),
        (
            vec![os("--tls-client-ca"), a_crt.clone()],
            "needs a server certificate and key",
        ),
        (
            vec![os("--tls-cert"), a_crt.clone(), os("--tls-key"), b_key],
            "cannot be served together",
        ),
        (
            vec![
                os("--tls-cert"),
                a_crt.clone(),
                os("--tls-key"),
                os(work.path().join("missing.key")),
            ],
            "missing.key",
        ),
        (
            vec![
                os("--tls-cert"),
                a_crt.clone(),
                os("--tls-key"),
                a_key,
                os("--tls-client-ca"),
                write("empty-ca.crt", ""),
            ],
            "no PEM CERTIFICATE block found",
        ),
    ];
    for (args, want) in cases {
        let data = work.path().join("data");
        let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg("--data-dir")
            .arg(&data)
            .args(&args)
            .env_remove("WHARF_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let st = wait_timeout(&mut child, Duration::from_secs(20));
        if st.is_none() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            st.is_some_and(|s| !s.success()),
            "{args:?}: expected a failed start, got {st:?}\n{stderr}"
        );
        assert!(
            stderr.contains(want),
            "{args:?}: want {want:?} in:\n{stderr}"
        );
    }
}
