//! Shared harness for the end-to-end tests: runs the real `wharf` binary (or CNCF Distribution as a
//! peer) on loopback, drives real clients (skopeo, podman, ctr) against it, builds small real images
//! offline with umoci, and speaks plain HTTP/1.1 over `std::net::TcpStream` for the protocol-level
//! checks. Nothing here depends on the registry's own crates.
//!
//! Environment knobs:
//! - `WHARF_E2E_REGISTRY=distribution` runs every "registry under test" against CNCF Distribution
//!   (`docker-registry`) instead of Wharf: a baseline to tell a test bug from a Wharf bug.
//! - `CI` (set by `.ci/run`): a missing external tool is a test failure, never a skip.
//! - `WHARF_E2E_KEEP=1` keeps a failed test's server data dir and log for inspection.
#![allow(dead_code)]

pub mod kube;

pub mod fault;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// What a client that understands every manifest kind sends in `Accept`.
pub const ACCEPT_ALL: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

// ---------------------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------------------

/// True when running under CI (`.ci/run` sets `CI=true`): missing tools fail instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// `sha256:<hex>` of a file's content, streamed.
pub fn file_digest(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// Looks a program up on `PATH`.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Returns true when every tool is installed. When one is missing: under CI this panics (CI
/// installs them, so a missing tool is a broken CI, not a reason to pass); elsewhere it prints a
/// loud SKIP banner and returns false so the caller can `return`.
pub fn have_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{test}: required tool(s) not installed: {} (install with scripts/install-test-deps.sh)",
        missing.join(", ")
    );
    if in_ci() {
        panic!("{msg}; CI must install every e2e tool");
    }
    // Straight to fd 2, past the test harness's output capture, so the skip is always seen.
    let _ = writeln!(
        io::stderr(),
        "\n{}\n!!! SKIPPED {msg}\n{}\n",
        "!".repeat(100),
        "!".repeat(100)
    );
    false
}

static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();

/// A free loopback TCP port, never handed out twice by this process (tests run in parallel).
///
/// Ports come from below the kernel's ephemeral range (`ip_local_port_range`), so that the
/// thousands of client connections the tests open can never take a server's port while it
/// restarts after a kill.
pub fn free_port() -> u16 {
    let used = PORTS.get_or_init(|| Mutex::new(HashSet::new()));
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| {
            r.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok())
        })
        .unwrap_or(32768);
    let (lo, hi) = if ephemeral_low > 12_000 {
        (10_000u16, ephemeral_low - 1)
    } else {
        (ephemeral_low.max(1024), u16::MAX) // unusual setup: anywhere
    };
    let mut x = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
    for _ in 0..10_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = lo + (x % u64::from(hi - lo)) as u16;
        if used.lock().unwrap().contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            used.lock().unwrap().insert(port);
            return port;
        }
    }
    panic!("no free port found in {lo}..{hi}");
}

/// Renders a command line for error messages.
pub fn cmdline(cmd: &Command) -> String {
    let mut s = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            let _ = write!(s, "{}={} ", k.to_string_lossy(), v.to_string_lossy());
        }
    }
    s.push_str(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.contains(' ') || a.is_empty() {
            let _ = write!(s, " '{a}'");
        } else {
            let _ = write!(s, " {a}");
        }
    }
    s
}

/// Runs a command to completion (stdin closed) and returns its output whatever the status.
pub fn run_any(cmd: &mut Command) -> Output {
    let line = cmdline(cmd);
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("failed to spawn `{line}`: {e}"));
    eprintln!(
        "[e2e] {line} -> {} in {:.2}s",
        out.status,
        start.elapsed().as_secs_f64()
    );
    out
}

/// Runs a command and panics with its full stdout and stderr unless it exits 0. Returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let line = cmdline(cmd);
    let out = run_any(cmd);
    if !out.status.success() {
        panic!(
            "command failed ({}):\n  {line}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An `Authorization: Basic` header value for `user` and `password`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Runs `wharf ARGS` on a pseudo-terminal (python's pty), with `env` and without the caller's
/// WHARF_PASSWORD/SERVER/USER/CONFIG; what the terminal showed and the exit status. For the
/// progress bars, which are drawn only on a terminal.
pub fn wharf_on_terminal(args: &[&str], env: &[(&str, &str)]) -> (String, i32) {
    let script = r#"
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
out = b""
while True:
    try:
        c = os.read(fd, 4096)
    except OSError:
        break
    if not c:
        break
    out += c
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .env_remove("WHARF_PASSWORD")
        .env_remove("WHARF_SERVER")
        .env_remove("WHARF_USER")
        .env_remove("WHARF_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running python3 for a pseudo-terminal");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// Runs a command that is expected to fail; panics (with its output) if it succeeds.
pub fn run_fail(cmd: &mut Command) -> Output {
    let line = cmdline(cmd);
    let out = run_any(cmd);
    if out.status.success() {
        panic!(
            "command unexpectedly succeeded:\n  {line}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Sends a signal with kill(1) (no libc dependency in the tests).
/// Where `scripts/install-test-deps.sh` put the test venv `name`: `$ENV` when set, else
/// `$XDG_CACHE_HOME` (or `~/.cache`) `/wharf-test-deps/NAME`.
pub fn test_venv(env: &str, name: &str) -> PathBuf {
    std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
            })
            .join("wharf-test-deps")
            .join(name)
    })
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits for a child to exit, up to `timeout`. Returns None if it is still running.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Last `n` lines of a log file, for failure messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Deterministic pseudo-random bytes (splitmix64 of the 8-byte word index), so that any range of a
/// big blob can be regenerated without keeping it in memory.
pub fn fill_pattern(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut i = 0usize;
    while i < buf.len() {
        let pos = offset + i as u64;
        let word = pos / 8;
        let mut z = seed ^ word.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let bytes = z.to_le_bytes();
        let start = (pos % 8) as usize;
        let take = (8 - start).min(buf.len() - i);
        buf[i..i + take].copy_from_slice(&bytes[start..start + take]);
        i += take;
    }
}

/// Convenience: `len` pattern bytes from offset 0.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fill_pattern(seed, 0, &mut v);
    v
}

// ---------------------------------------------------------------------------------------------
// Registries
// ---------------------------------------------------------------------------------------------

/// Which server implementation to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The `wharf` binary built by this crate.
    Wharf,
    /// CNCF Distribution 2.8 (`docker-registry` from Debian).
    Distribution,
}

impl Kind {
    /// The registry the tests are about: Wharf, unless `WHARF_E2E_REGISTRY=distribution`.
    pub fn under_test() -> Kind {
        match std::env::var("WHARF_E2E_REGISTRY").as_deref() {
            Ok("distribution") | Ok("docker-registry") => Kind::Distribution,
            _ => Kind::Wharf,
        }
    }

    /// The tools this kind needs on the machine.
    pub fn tools(self) -> &'static [&'static str] {
        match self {
            Kind::Wharf => &[],
            Kind::Distribution => &["docker-registry"],
        }
    }
}

/// Pushes a one-layer OCI image at `repo:tag` (its layer and config vary with `seed`); returns
/// its manifest digest.
pub fn push_image(http: &Http, repo: &str, tag: &str, seed: u64) -> String {
    let layer = pattern(seed, 4096);
    let layer_d = http.must_push_blob(repo, &layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_d]},
        "config": {"Labels": {"seed": seed.to_string()}}
    }))
    .unwrap();
    let config_d = http.must_push_blob(repo, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_d, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_d, "size": layer.len()}]
    }))
    .unwrap();
    http.push_manifest(repo, tag, OCI_MANIFEST, &manifest)
        .unwrap()
        .expect(201);
    sha256_digest(&manifest)
}

/// A running registry on 127.0.0.1. The child is SIGKILLed on drop; its data dir lives as long as
/// this value (so it survives `kill9` + `restart`). On a panicking test the server log is printed.
pub struct Server {
    pub kind: Kind,
    pub addr: SocketAddr,
    child: Option<Child>,
    data: Option<TempDir>,
    base: PathBuf,
    log_path: PathBuf,
    starts: u32,
}

impl Server {
    /// Starts the registry under test (see [`Kind::under_test`]).
    pub fn start() -> Server {
        Server::start_kind(Kind::under_test())
    }

    /// Starts a registry of the given kind on a fresh port with a fresh data dir.
    pub fn start_kind(kind: Kind) -> Server {
        let data = tempfile::Builder::new()
            .prefix(match kind {
                Kind::Wharf => "wharf-e2e-",
                Kind::Distribution => "distribution-e2e-",
            })
            .tempdir()
            .expect("tempdir");
        let log_path = data.path().join("server.log");
        let port = free_port();
        let mut s = Server {
            kind,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child: None,
            base: data.path().to_path_buf(),
            data: Some(data),
            log_path,
            starts: 0,
        };
        s.spawn();
        s
    }

    /// `127.0.0.1:PORT`, as used in image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The directory given to the server as its data dir.
    pub fn data_dir(&self) -> PathBuf {
        self.base.join("data")
    }

    pub fn http(&self) -> Http {
        Http::new(self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server not running").id()
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let data_dir = self.data_dir();
        fs::create_dir_all(&data_dir).unwrap();
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        self.starts += 1;
        writeln!(
            log,
            "===== start #{} of {:?} on {} =====",
            self.starts, self.kind, self.addr
        )
        .unwrap();
        let mut cmd = match self.kind {
            Kind::Wharf => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_wharf"));
                c.arg("serve")
                    .arg("--listen")
                    .arg(self.addr.to_string())
                    .arg("--data-dir")
                    .arg(&data_dir);
                // Hermetic: no config file from the environment.
                c.env_remove("WHARF_CONFIG");
                c
            }
            Kind::Distribution => {
                // Our own config: filesystem storage in the temp dir, no auth, deletes enabled,
                // a fixed secret so upload state tokens stay valid across restarts, no upload
                // purging (it would race the resume tests), and a drain timeout so SIGTERM is
                // graceful as Wharf's is.
                let cfg = format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
                     http:\n  addr: {}\n  secret: wharf-e2e-fixed-secret\n  draintimeout: 10s\n",
                    data_dir.join("storage").display(),
                    self.addr
                );
                let cfg_path = self.base.join("config.yml");
                fs::write(&cfg_path, cfg).unwrap();
                let mut c = Command::new("docker-registry");
                c.arg("serve").arg(&cfg_path);
                c
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let line = cmdline(&cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start `{line}`: {e}"));
        self.child = Some(child);
        self.wait_ready(&line);
    }

    fn wait_ready(&mut self, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = self.http();
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "registry exited before answering /v2/ ({st}):\n  {line}\n--- log ---\n{}",
                    tail(&self.log_path, 100)
                );
            }
            if let Ok(r) = http.get("/v2/") {
                if r.status == 200 {
                    return;
                }
                if Instant::now() >= deadline {
                    panic!(
                        "GET /v2/ answered {} instead of 200 ({line})\n{}",
                        r.status,
                        r.dump()
                    );
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "registry did not answer /v2/ within 30s:\n  {line}\n--- log ---\n{}",
                    tail(&self.log_path, 100)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGKILL the server (a crash), keeping its data dir.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM the server and wait up to `timeout` for it to exit. Returns its exit status, or
    /// None if it had to be SIGKILLed after the timeout.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take().expect("server not running");
        signal(c.id(), "TERM");
        match wait_timeout(&mut c, timeout) {
            Some(st) => Some(st),
            None => {
                let _ = c.kill();
                let _ = c.wait();
                None
            }
        }
    }

    /// Starts the server again on the same address and data dir (after `kill9`/`terminate`).
    pub fn restart(&mut self) {
        self.kill9();
        // The port may linger briefly in the kernel after a crash; retry binding for a while.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpListener::bind(self.addr).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.spawn();
    }

    /// The server's combined stdout/stderr so far.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of the {:?} log ({}) ---\n{}\n--- end of log ---",
                self.kind,
                self.addr,
                tail(&self.log_path, 60)
            );
            if std::env::var_os("WHARF_E2E_KEEP").is_some()
                && let Some(d) = self.data.take()
            {
                eprintln!(
                    "WHARF_E2E_KEEP: data dir and log kept in {}",
                    d.keep().display()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 client (one connection per request, `Connection: close`)
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The request line, for failure messages.
    pub request: String,
}

impl Response {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Header that must be present.
    pub fn must_header(&self, name: &str) -> &str {
        self.header(name)
            .unwrap_or_else(|| panic!("response has no {name} header:\n{}", self.dump()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}):\n{}", self.dump()))
    }

    /// The first error's message of a JSON error body (the registry's and the management API's
    /// shape), empty when there is none.
    pub fn error_message(&self) -> String {
        self.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Panics with the full exchange unless this is a JSON error answer with status `want` whose
    /// first message contains `needle`.
    pub fn expect_error(&self, want: u16, needle: &str) {
        assert_eq!(self.status, want, "{}", self.dump());
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert!(self.error_message().contains(needle), "{}", self.dump());
    }

    /// Request line, status, headers and (the start of) the body: for bug reports.
    pub fn dump(&self) -> String {
        let mut s = format!("> {}\n< {} {}\n", self.request, self.status, self.reason);
        for (k, v) in &self.headers {
            let _ = writeln!(s, "< {k}: {v}");
        }
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(2048)]).into_owned();
        if !body.is_empty() {
            let _ = writeln!(
                s,
                "<\n{body}{}",
                if self.body.len() > 2048 { "..." } else { "" }
            );
        }
        s
    }

    /// Panics with the full exchange unless the status is `want`.
    pub fn expect(self, want: u16) -> Response {
        if self.status != want {
            panic!("expected HTTP {want}, got:\n{}", self.dump());
        }
        self
    }

    /// The path (and query) of the Location header, whether absolute or relative.
    pub fn location(&self) -> String {
        path_of(self.must_header("Location"))
    }
}

/// `http://host:port/p?q` or `/p?q` -> `/p?q`.
pub fn path_of(location: &str) -> String {
    if let Some(rest) = location
        .strip_prefix("http://")
        .or_else(|| location.strip_prefix("https://"))
    {
        match rest.find('/') {
            Some(i) => rest[i..].to_string(),
            None => "/".to_string(),
        }
    } else {
        location.to_string()
    }
}

/// Appends a query parameter to a path that may already have a query.
pub fn with_query(path: &str, kv: &str) -> String {
    if path.contains('?') {
        format!("{path}&{kv}")
    } else {
        format!("{path}?{kv}")
    }
}

/// Plain HTTP/1.1 client bound to one server address.
#[derive(Clone, Debug)]
pub struct Http {
    pub addr: SocketAddr,
    pub timeout: Duration,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Http {
        Http {
            addr,
            timeout: Duration::from_secs(120),
        }
    }

    fn connect(&self) -> io::Result<TcpStream> {
        let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(10))?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    fn head_block(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        len: Option<u64>,
    ) -> String {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: wharf-e2e\r\nConnection: close\r\n",
            self.addr
        );
        for (k, v) in headers {
            let _ = write!(req, "{k}: {v}\r\n");
        }
        if let Some(len) = len {
            let _ = write!(req, "Content-Length: {len}\r\n");
        }
        req.push_str("\r\n");
        req
    }

    /// Sends one request with a body held in memory.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let mut s = self.connect()?;
        let needs_len = !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH");
        let head = self.head_block(
            method,
            path,
            headers,
            needs_len.then_some(body.len() as u64),
        );
        s.write_all(head.as_bytes())?;
        if !body.is_empty() {
            s.write_all(body)?;
        }
        s.flush()?;
        read_response(
            s,
            method,
            format!("{method} {path} {headers:?} ({} body bytes)", body.len()),
            None,
        )
    }

    /// Sends a body-less request and streams the response body into `sink` instead of memory
    /// (the returned `Response` has an empty body).
    pub fn request_sink(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        sink: &mut dyn FnMut(&[u8]),
    ) -> io::Result<Response> {
        let mut s = self.connect()?;
        let head = self.head_block(method, path, headers, None);
        s.write_all(head.as_bytes())?;
        s.flush()?;
        read_response(
            s,
            method,
            format!("{method} {path} {headers:?}"),
            Some(sink),
        )
    }

    /// GET a blob, hashing it as it streams: (response without body, length, sha256 digest).
    pub fn get_blob_hashed(&self, repo: &str, digest: &str) -> io::Result<(Response, u64, String)> {
        let mut h = Sha256::new();
        let mut n = 0u64;
        let r = self.request_sink(
            "GET",
            &format!("/v2/{repo}/blobs/{digest}"),
            &[],
            &mut |b| {
                h.update(b);
                n += b.len() as u64;
            },
        )?;
        Ok((r, n, format!("sha256:{}", hex::encode(h.finalize()))))
    }

    /// Sends one request whose `len`-byte body is produced by `fill(offset, buf)` in 1 MiB pieces;
    /// `sent` counts bytes written to the socket (so another thread can act mid-upload).
    pub fn request_streaming(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        len: u64,
        mut fill: impl FnMut(u64, &mut [u8]),
        sent: Option<&AtomicU64>,
    ) -> io::Result<Response> {
        let mut s = self.connect()?;
        let head = self.head_block(method, path, headers, Some(len));
        s.write_all(head.as_bytes())?;
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        while off < len {
            let n = ((len - off) as usize).min(buf.len());
            fill(off, &mut buf[..n]);
            s.write_all(&buf[..n])?;
            off += n as u64;
            if let Some(c) = sent {
                c.fetch_add(n as u64, Ordering::SeqCst);
            }
        }
        s.flush()?;
        read_response(
            s,
            method,
            format!("{method} {path} {headers:?} ({len} streamed body bytes)"),
            None,
        )
    }

    /// Sends a request whose body goes out with `Transfer-Encoding: chunked` (no Content-Length),
    /// one HTTP chunk per slice, as Docker and containerd do for streamed blob uploads.
    pub fn request_chunked(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        chunks: &[&[u8]],
    ) -> io::Result<Response> {
        let mut s = self.connect()?;
        let mut hs: Vec<(&str, &str)> = headers.to_vec();
        hs.push(("Transfer-Encoding", "chunked"));
        let head = self.head_block(method, path, &hs, None);
        s.write_all(head.as_bytes())?;
        let mut total = 0;
        for c in chunks.iter().filter(|c| !c.is_empty()) {
            s.write_all(format!("{:x}\r\n", c.len()).as_bytes())?;
            s.write_all(c)?;
            s.write_all(b"\r\n")?;
            total += c.len();
        }
        s.write_all(b"0\r\n\r\n")?;
        s.flush()?;
        read_response(
            s,
            method,
            format!("{method} {path} {headers:?} ({total} body bytes, chunked)"),
            None,
        )
    }

    pub fn get(&self, path: &str) -> io::Result<Response> {
        self.request("GET", path, &[], &[])
    }

    pub fn head(&self, path: &str) -> io::Result<Response> {
        self.request("HEAD", path, &[], &[])
    }

    /// Like `request` but panics on I/O errors, naming the request.
    pub fn must(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path} on {}: I/O error {e}", self.addr))
    }

    // --- Distribution API helpers ------------------------------------------------------------

    /// POST + PUT monolithic blob upload. Returns the final response (201 expected).
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> io::Result<Response> {
        let digest = sha256_digest(data);
        let r = self.request("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], &[])?;
        if r.status != 202 {
            return Ok(r);
        }
        let loc = with_query(&r.location(), &format!("digest={digest}"));
        self.request(
            "PUT",
            &loc,
            &[("Content-Type", "application/octet-stream")],
            data,
        )
    }

    /// Pushes a blob and panics unless the registry answers 201 with the right digest.
    pub fn must_push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256_digest(data);
        let r = self
            .push_blob(repo, data)
            .unwrap_or_else(|e| panic!("blob push to {repo}: {e}"))
            .expect(201);
        if let Some(d) = r.header("Docker-Content-Digest") {
            assert_eq!(
                d,
                digest,
                "Docker-Content-Digest of pushed blob\n{}",
                r.dump()
            );
        }
        digest
    }

    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> io::Result<Response> {
        self.request(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            body,
        )
    }

    pub fn get_manifest(&self, repo: &str, reference: &str) -> io::Result<Response> {
        self.request(
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", ACCEPT_ALL)],
            &[],
        )
    }

    pub fn get_blob(&self, repo: &str, digest: &str) -> io::Result<Response> {
        self.request("GET", &format!("/v2/{repo}/blobs/{digest}"), &[], &[])
    }
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    let n = r.read_line(&mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before response",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Where a streamed response body goes.
pub type BodySink<'a> = dyn FnMut(&[u8]) + 'a;

fn read_response(
    s: TcpStream,
    method: &str,
    request: String,
    mut sink: Option<&mut BodySink<'_>>,
) -> io::Result<Response> {
    let mut r = BufReader::with_capacity(1 << 16, s);
    let (status, reason, headers) = loop {
        let status_line = read_line(&mut r)?;
        let mut parts = status_line.splitn(3, ' ');
        let _version = parts.next();
        let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
        let reason = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let line = read_line(&mut r)?;
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        if status != 100 {
            break (status, reason, headers);
        }
    };
    let hdr = |name: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    // Copies exactly `n` bytes (or to EOF when None) from the stream to the sink or the body.
    let mut copy = |r: &mut BufReader<TcpStream>, n: Option<u64>| -> io::Result<()> {
        let mut left = n;
        loop {
            if left == Some(0) {
                return Ok(());
            }
            let buf = r.fill_buf()?;
            if buf.is_empty() {
                return match left {
                    None => Ok(()),
                    Some(l) => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("connection closed with {l} body bytes still expected"),
                    )),
                };
            }
            let take = left.map_or(buf.len(), |l| (l as usize).min(buf.len()));
            match sink.as_mut() {
                Some(f) => f(&buf[..take]),
                None => body.extend_from_slice(&buf[..take]),
            }
            r.consume(take);
            if let Some(l) = left.as_mut() {
                *l -= take as u64;
            }
        }
    };
    if method != "HEAD" && status != 204 && status != 304 && !(100..200).contains(&status) {
        if hdr("Transfer-Encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            loop {
                let size_line = read_line(&mut r)?;
                let size = u64::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                    .map_err(|e| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("chunk size {size_line:?}: {e}"),
                        )
                    })?;
                if size == 0 {
                    // trailers
                    while !read_line(&mut r)?.is_empty() {}
                    break;
                }
                copy(&mut r, Some(size))?;
                read_line(&mut r)?;
            }
        } else if let Some(len) = hdr("Content-Length") {
            let len: u64 = len.parse().map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("Content-Length {len:?}: {e}"),
                )
            })?;
            copy(&mut r, Some(len))?;
        } else {
            copy(&mut r, None)?;
        }
    }
    Ok(Response {
        status,
        reason,
        headers,
        body,
        request,
    })
}

// ---------------------------------------------------------------------------------------------
// OCI image layouts built offline with umoci and busybox-static
// ---------------------------------------------------------------------------------------------

/// An OCI image layout directory on disk.
pub struct Layout {
    pub dir: PathBuf,
    _tmp: Option<TempDir>,
}

/// What an image in a layout points to.
#[derive(Clone, Debug)]
pub struct ImageRef {
    pub tag: String,
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Layout {
    /// Wraps an existing directory (no cleanup).
    pub fn at(dir: &Path) -> Layout {
        Layout {
            dir: dir.to_path_buf(),
            _tmp: None,
        }
    }

    /// `oci:DIR:tag` for skopeo/podman.
    pub fn oci_ref(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.dir.display())
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let (alg, hex) = digest.split_once(':').expect("digest");
        self.dir.join("blobs").join(alg).join(hex)
    }

    pub fn blob(&self, digest: &str) -> Vec<u8> {
        let p = self.blob_path(digest);
        fs::read(&p).unwrap_or_else(|e| panic!("read blob {}: {e}", p.display()))
    }

    pub fn index(&self) -> serde_json::Value {
        serde_json::from_slice(&fs::read(self.dir.join("index.json")).expect("index.json"))
            .expect("index.json JSON")
    }

    /// The descriptor tagged `tag` in index.json.
    pub fn image(&self, tag: &str) -> ImageRef {
        let idx = self.index();
        for m in idx["manifests"].as_array().expect("manifests") {
            if m["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(tag) {
                return ImageRef {
                    tag: tag.to_string(),
                    media_type: m["mediaType"].as_str().unwrap_or(OCI_MANIFEST).to_string(),
                    digest: m["digest"].as_str().unwrap().to_string(),
                    size: m["size"].as_u64().unwrap(),
                };
            }
        }
        panic!("tag {tag} not in {}/index.json: {idx}", self.dir.display());
    }

    /// All tags in index.json.
    pub fn tags(&self) -> Vec<String> {
        self.index()["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| {
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .map(String::from)
            })
            .collect()
    }

    /// The manifest JSON of an image manifest digest.
    pub fn manifest_json(&self, digest: &str) -> serde_json::Value {
        serde_json::from_slice(&self.blob(digest)).expect("manifest JSON")
    }

    /// Every blob digest reachable from `digest` (itself included): index -> manifests -> config
    /// and layers.
    pub fn closure(&self, digest: &str) -> Vec<String> {
        let mut out = vec![digest.to_string()];
        let v = self.manifest_json(digest);
        if let Some(ms) = v["manifests"].as_array() {
            for m in ms {
                for d in self.closure(m["digest"].as_str().unwrap()) {
                    if !out.contains(&d) {
                        out.push(d);
                    }
                }
            }
        }
        if let Some(c) = v["config"]["digest"].as_str() {
            out.push(c.to_string());
        }
        if let Some(ls) = v["layers"].as_array() {
            for l in ls {
                let d = l["digest"].as_str().unwrap().to_string();
                if !out.contains(&d) {
                    out.push(d);
                }
            }
        }
        out
    }

    /// Copies the whole layout into a fresh temp dir (cheap: the images are ~1 MB).
    pub fn clone_to_temp(&self) -> Layout {
        let tmp = tempfile::Builder::new()
            .prefix("oci-layout-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().join("layout");
        run(Command::new("cp").arg("-a").arg(&self.dir).arg(&dir));
        Layout {
            dir,
            _tmp: Some(tmp),
        }
    }

    /// An empty directory for `skopeo copy ... oci:DIR:tag` to write into.
    pub fn empty_temp() -> Layout {
        let tmp = tempfile::Builder::new()
            .prefix("oci-out-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().join("layout");
        Layout {
            dir,
            _tmp: Some(tmp),
        }
    }
}

/// Tags in the shared test layout.
pub const TAG_BASE: &str = "base"; // busybox, one layer
pub const TAG_MULTI: &str = "layers"; // busybox + 2 more layers (added file, deleted file)
pub const TAG_ARM64: &str = "arm64"; // same content, config says linux/arm64
pub const TAG_INDEX: &str = "index"; // OCI image index over TAG_MULTI (amd64) and TAG_ARM64

static IMAGES: OnceLock<Layout> = OnceLock::new();

/// The shared, read-only test image layout (built once per test binary). Use `clone_to_temp` for
/// a writable copy. Tags: [`TAG_BASE`], [`TAG_MULTI`], [`TAG_ARM64`], [`TAG_INDEX`].
pub fn test_images() -> &'static Layout {
    IMAGES.get_or_init(|| {
        // Lives for the whole test process (statics are never dropped), so it goes under Cargo's
        // per-target scratch dir, named by pid; directories of test processes that are gone are
        // removed here.
        let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
        fs::create_dir_all(scratch).unwrap();
        for e in fs::read_dir(scratch).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("e2e-images-")
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        let root = scratch.join(format!("e2e-images-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        build_images(&root.join("layout"), &root.join("work"));
        Layout::at(&root.join("layout"))
    })
}

fn umoci(args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let mut c = Command::new("umoci");
    for a in args {
        c.arg(a);
    }
    run(&mut c)
}

/// Builds the test images into an OCI layout at `layout` (scratch space in `work`):
/// busybox-static as the root filesystem, then extra layers, an arm64 variant, and an index.
pub fn build_images(layout: &Path, work: &Path) {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .expect("busybox-static is not installed (/bin/busybox)");
    fs::create_dir_all(work).unwrap();
    let img = |tag: &str| format!("{}:{tag}", layout.display());
    umoci(&[&"init", &"--layout", &layout]);
    umoci(&[&"new", &"--image", &img(TAG_BASE)]);

    // Layer 1: busybox and a few applet links.
    let b1 = work.join("b1");
    umoci(&[&"unpack", &"--rootless", &"--image", &img(TAG_BASE), &b1]);
    let rootfs = b1.join("rootfs");
    for d in ["bin", "etc", "tmp"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "ls", "cat", "echo"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    fs::write(rootfs.join("etc/hostname"), "wharf-e2e\n").unwrap();
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    umoci(&[&"repack", &"--image", &img(TAG_BASE), &b1]);
    umoci(&[
        &"config",
        &"--image",
        &img(TAG_BASE),
        &"--config.cmd",
        &"/bin/sh",
        &"--config.env",
        &"PATH=/bin",
        &"--os",
        &"linux",
        &"--architecture",
        &"amd64",
        &"--author",
        &"wharf-e2e",
    ]);

    // TAG_MULTI = base + a layer that adds files + a layer that deletes one (a whiteout).
    umoci(&[&"tag", &"--image", &img(TAG_BASE), &TAG_MULTI]);
    let b2 = work.join("b2");
    umoci(&[&"unpack", &"--rootless", &"--image", &img(TAG_MULTI), &b2]);
    fs::create_dir_all(b2.join("rootfs/srv/data")).unwrap();
    fs::write(b2.join("rootfs/srv/data/hello.txt"), "hello from layer 2\n").unwrap();
    fs::write(b2.join("rootfs/srv/data/random.bin"), pattern(2, 64 * 1024)).unwrap();
    umoci(&[&"repack", &"--image", &img(TAG_MULTI), &b2]);
    let b3 = work.join("b3");
    umoci(&[&"unpack", &"--rootless", &"--image", &img(TAG_MULTI), &b3]);
    fs::remove_file(b3.join("rootfs/etc/hostname")).unwrap();
    fs::write(b3.join("rootfs/srv/data/layer3.txt"), "layer 3\n").unwrap();
    umoci(&[&"repack", &"--image", &img(TAG_MULTI), &b3]);
    umoci(&[
        &"config",
        &"--image",
        &img(TAG_MULTI),
        &"--config.label",
        &"org.example.layers=3",
    ]);

    // TAG_ARM64: same layers, a config that claims linux/arm64 (multi-platform-ish).
    umoci(&[&"tag", &"--image", &img(TAG_MULTI), &TAG_ARM64]);
    umoci(&[
        &"config",
        &"--image",
        &img(TAG_ARM64),
        &"--architecture",
        &"arm64",
        &"--config.label",
        &"org.example.arch=arm64",
    ]);
    umoci(&[&"gc", &"--layout", &layout]);

    // TAG_INDEX: an OCI image index over the two, written by hand.
    let lay = Layout::at(layout);
    let desc = |tag: &str, arch: &str| {
        let i = lay.image(tag);
        serde_json::json!({
            "mediaType": i.media_type,
            "digest": i.digest,
            "size": i.size,
            "platform": {"architecture": arch, "os": "linux"}
        })
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [desc(TAG_MULTI, "amd64"), desc(TAG_ARM64, "arm64")],
        "annotations": {"org.example.built-by": "wharf-e2e"}
    });
    let bytes = serde_json::to_vec(&index).unwrap();
    let digest = sha256_digest(&bytes);
    fs::write(lay.blob_path(&digest), &bytes).unwrap();
    let mut top = lay.index();
    top["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": OCI_INDEX,
            "digest": digest,
            "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": TAG_INDEX}
        }));
    fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    let _ = fs::remove_dir_all(work);
}

/// Asserts that every blob file in `got` exists in `want` with identical bytes, and returns how
/// many blobs were compared.
pub fn assert_blobs_subset(got: &Layout, want: &Layout) -> usize {
    let dir = got.dir.join("blobs/sha256");
    let mut n = 0;
    for e in fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let digest = format!("sha256:{name}");
        assert_eq!(
            file_digest(&e.path()),
            digest,
            "blob {} in {} does not hash to its name",
            name,
            got.dir.display()
        );
        let theirs = want.blob_path(&digest);
        assert!(
            theirs.is_file(),
            "blob {digest} came back from the registry but was never pushed"
        );
        assert_eq!(
            fs::read(e.path()).unwrap(),
            fs::read(&theirs).unwrap(),
            "blob {digest} differs"
        );
        n += 1;
    }
    n
}

// ---------------------------------------------------------------------------------------------
// skopeo
// ---------------------------------------------------------------------------------------------

/// `skopeo` with a private, empty policy/registries setup (accept anything, no host config).
pub fn skopeo(tmp: &Path) -> Command {
    let policy = tmp.join("policy.json");
    if !policy.exists() {
        fs::write(
            &policy,
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
    }
    let regs = tmp.join("registries.conf");
    if !regs.exists() {
        fs::write(&regs, "unqualified-search-registries = []\n").unwrap();
    }
    let mut c = Command::new("skopeo");
    c.env("CONTAINERS_REGISTRIES_CONF", &regs)
        .arg("--policy")
        .arg(&policy)
        .arg("--registries.d")
        .arg(tmp);
    c
}

// ---------------------------------------------------------------------------------------------
// podman (vfs storage in a temp dir)
// ---------------------------------------------------------------------------------------------

/// A podman with its own storage, run root, config and temp dir, nothing on the host touched
/// beyond containers/image's shared blob-info cache. Its directory is all lowercase, because
/// `podman pull oci:DIR:tag` names the image after DIR.
pub struct Podman {
    pub root: PathBuf,
}

static PODMAN_SEQ: AtomicU64 = AtomicU64::new(0);

impl Podman {
    pub fn new() -> Podman {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let root = std::env::temp_dir().join(format!(
            "podman-e2e-{}-{}-{nanos}",
            std::process::id(),
            PODMAN_SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let p = root.as_path();
        for d in ["root", "run", "tmp", "cfg"] {
            fs::create_dir_all(p.join(d)).unwrap();
        }
        fs::write(
            p.join("cfg/registries.conf"),
            "unqualified-search-registries = []\nshort-name-mode = \"disabled\"\n",
        )
        .unwrap();
        fs::write(
            p.join("cfg/storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
                p.join("run").display(),
                p.join("root").display()
            ),
        )
        .unwrap();
        fs::write(
            p.join("cfg/containers.conf"),
            "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .unwrap();
        Podman { root }
    }

    pub fn cmd(&self) -> Command {
        let p = self.root.as_path();
        let mut c = Command::new("podman");
        c.env("CONTAINERS_REGISTRIES_CONF", p.join("cfg/registries.conf"))
            .env("CONTAINERS_STORAGE_CONF", p.join("cfg/storage.conf"))
            .env("CONTAINERS_CONF", p.join("cfg/containers.conf"))
            .env("TMPDIR", p.join("tmp"))
            .arg("--storage-driver")
            .arg("vfs")
            .arg("--root")
            .arg(p.join("root"))
            .arg("--runroot")
            .arg(p.join("run"))
            .arg("--tmpdir")
            .arg(p.join("tmp"))
            .arg("--cgroup-manager")
            .arg("cgroupfs")
            .arg("--events-backend")
            .arg("file");
        c
    }

    /// `podman pull oci:...` of one image of a layout; returns the image ID (hex, no prefix).
    pub fn load(&self, layout: &Layout, tag: &str) -> String {
        let copy = self.root.join("src");
        if !copy.exists() {
            run(Command::new("cp").arg("-a").arg(&layout.dir).arg(&copy));
        }
        let id = run(self
            .cmd()
            .args(["pull", "--quiet"])
            .arg(Layout::at(&copy).oci_ref(tag)));
        id.trim().trim_start_matches("sha256:").to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

// ---------------------------------------------------------------------------------------------
// containerd (own root, state and socket; killed on drop)
// ---------------------------------------------------------------------------------------------

pub struct Containerd {
    pub dir: TempDir,
    pub sock: PathBuf,
    child: Option<Child>,
}

impl Containerd {
    pub fn start() -> Containerd {
        // Short path: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("ctrd-")
            .tempdir_in("/tmp")
            .unwrap();
        let p = dir.path();
        let sock = p.join("c.sock");
        let cfg = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.btrfs\", \
             \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.devmapper\", \
             \"io.containerd.snapshotter.v1.aufs\", \"io.containerd.internal.v1.tracing\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n\
             [debug]\n  address = \"\"\n  level = \"info\"\n[metrics]\n  address = \"\"\n",
            root = p.join("root").display(),
            state = p.join("state").display(),
            sock = sock.display()
        );
        fs::write(p.join("config.toml"), cfg).unwrap();
        let log = fs::File::create(p.join("containerd.log")).unwrap();
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(p.join("config.toml"));
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let line = cmdline(&cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start `{line}`: {e}"));
        let mut c = Containerd {
            dir,
            sock,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = c.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "containerd exited ({st}):\n{}",
                    tail(&c.dir.path().join("containerd.log"), 60)
                );
            }
            if c.sock.exists() {
                let out = run_any(c.ctr().arg("version"));
                if out.status.success() {
                    break;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "containerd did not come up:\n{}",
                    tail(&c.dir.path().join("containerd.log"), 60)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    /// `ctr --address SOCK --namespace wharf-e2e ...`
    pub fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.sock)
            .arg("--namespace")
            .arg("wharf-e2e");
        c
    }

    pub fn log(&self) -> String {
        tail(&self.dir.path().join("containerd.log"), 80)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "TERM");
            if wait_timeout(&mut c, Duration::from_secs(5)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("--- containerd log ---\n{}\n--- end ---", self.log());
        }
        // containerd may leave mounts behind with the native/overlay snapshotters: none are
        // created by pulls alone, but be defensive so TempDir cleanup works.
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.path())
            .stderr(Stdio::null())
            .status();
    }
}

// ---------------------------------------------------------------------------------------------
// CNCF Distribution behind htpasswd authentication
// ---------------------------------------------------------------------------------------------

/// The user that [`AuthDistribution`] accepts.
pub const AUTH_USER: &str = "pin-e2e";
/// Its password.
pub const AUTH_PASSWORD: &str = "pin-e2e-password";
/// bcrypt (cost 5) of [`AUTH_PASSWORD`], the only hash Distribution's htpasswd accepts. Made once
/// with Python's `bcrypt.hashpw`; `htpasswd -nbB -C 5 USER PASSWORD` (apache2-utils) makes the
/// same kind of line. That Distribution accepts it is checked by every test that logs in.
pub const AUTH_BCRYPT: &str = "$2b$05$QLH9Jibf5zAitnxGKRHgj.HEt.JI/K7ksWOlY104hKVfmmpu63ID2";

/// CNCF Distribution on a free loopback port, with filesystem storage in a temp dir and htpasswd
/// authentication: every request without [`AUTH_USER`]'s credentials gets 401. Killed on drop;
/// its log is printed when the test panics.
pub struct AuthDistribution {
    pub addr: SocketAddr,
    child: Option<Child>,
    dir: TempDir,
}

impl AuthDistribution {
    /// Starts it and waits until `/v2/` answers (401: authentication required).
    pub fn start() -> AuthDistribution {
        let dir = tempfile::Builder::new()
            .prefix("distribution-auth-e2e-")
            .tempdir()
            .expect("tempdir");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let htpasswd = dir.path().join("htpasswd");
        fs::write(&htpasswd, format!("{AUTH_USER}:{AUTH_BCRYPT}\n")).unwrap();
        let cfg = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             \x20 delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: wharf-e2e-fixed-secret\n\
             auth:\n  htpasswd:\n    realm: wharf-e2e\n    path: {}\n",
            dir.path().join("storage").display(),
            htpasswd.display()
        );
        let cfg_path = dir.path().join("config.yml");
        fs::write(&cfg_path, cfg).unwrap();
        let log = fs::File::create(dir.path().join("server.log")).unwrap();
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let line = cmdline(&cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start `{line}`: {e}"));
        let mut s = AuthDistribution {
            addr,
            child: Some(child),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = Http::new(addr);
        loop {
            if let Some(st) = s.child.as_mut().unwrap().try_wait().unwrap() {
                s.child = None;
                panic!("{line} exited ({st}):\n{}", s.log());
            }
            if let Ok(r) = http.get("/v2/") {
                assert_eq!(r.status, 401, "GET /v2/ without credentials\n{}", r.dump());
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{line} did not answer within 30s:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `127.0.0.1:PORT`, as used in image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The last lines of the server's log.
    pub fn log(&self) -> String {
        tail(&self.dir.path().join("server.log"), 60)
    }
}

impl Drop for AuthDistribution {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of the htpasswd Distribution log ({}) ---\n{}\n--- end of log ---",
                self.addr,
                self.log()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wharf with a configuration file (access control), managed with its CLI between runs
// ---------------------------------------------------------------------------------------------

/// `wharf serve` with a TOML configuration file (typically an `[auth]` section) on a free
/// loopback port and a temp data dir, plus the `wharf` CLI (`user`, `robot`, `group`, `rule`,
/// `audit`, `token-key`) on the same data dir. The CLI needs the server stopped (the metadata
/// database admits one process at a time), so a test sets identities up with [`AuthWharf::cli`],
/// then [`AuthWharf::start`]s, and [`AuthWharf::stop`]s again to change them. Readiness is
/// `/readyz`, because with access control on `/v2/` answers 401. SIGKILLed on drop; the log is
/// printed when the test panics (`WHARF_E2E_KEEP=1` keeps the directory).
pub struct AuthWharf {
    pub addr: SocketAddr,
    config: String,
    child: Option<Child>,
    dir: Option<TempDir>,
    base: PathBuf,
    starts: u32,
}

impl AuthWharf {
    /// A server-to-be with this configuration file content; not started yet, so identities can
    /// be created first.
    pub fn new(config: &str) -> AuthWharf {
        let dir = tempfile::Builder::new()
            .prefix("wharf-auth-e2e-")
            .tempdir()
            .expect("tempdir");
        let base = dir.path().to_path_buf();
        fs::create_dir_all(base.join("data")).unwrap();
        AuthWharf {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            config: config.to_owned(),
            child: None,
            dir: Some(dir),
            base,
            starts: 0,
        }
    }

    /// The data directory given to `serve` and to every CLI command.
    pub fn data_dir(&self) -> PathBuf {
        self.base.join("data")
    }

    /// A scratch directory that lives as long as this value (htpasswd files, auth files...).
    pub fn scratch(&self) -> PathBuf {
        self.base.clone()
    }

    /// Replaces the configuration file content; used by the next `start`.
    pub fn set_config(&mut self, config: &str) {
        self.config = config.to_owned();
    }

    /// `127.0.0.1:PORT`, as used in image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn http(&self) -> Http {
        Http::new(self.addr)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Runs `wharf ARGS --data-dir DIR` with `stdin` as its standard input (the server must be
    /// stopped). `USER` is set to `wharf-e2e`, so CLI audit events name `cli:wharf-e2e`.
    pub fn cli(&self, args: &[&str], stdin: &str) -> Output {
        assert!(
            self.child.is_none(),
            "stop the server before running the CLI on its data dir"
        );
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .env_remove("WHARF_CONFIG")
            .env_remove("WHARF_DATA_DIR")
            .env("USER", "wharf-e2e")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let line = cmdline(&cmd);
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("failed to spawn `{line}`: {e}"));
        if let Some(mut input) = child.stdin.take() {
            // The command may exit without reading (a usage error): ignore a broken pipe.
            let _ = input.write_all(stdin.as_bytes());
        }
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for `{line}`: {e}"));
        eprintln!(
            "[e2e] {line} -> {} in {:.2}s",
            out.status,
            start.elapsed().as_secs_f64()
        );
        out
    }

    /// [`AuthWharf::cli`] that must succeed; returns its standard output.
    pub fn must_cli(&self, args: &[&str], stdin: &str) -> String {
        let out = self.cli(args, stdin);
        if !out.status.success() {
            panic!(
                "wharf {} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes the configuration file and starts `wharf serve`; returns once `/readyz` is 200.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let cfg_path = self.base.join("wharf.toml");
        fs::write(&cfg_path, &self.config).unwrap();
        let log_path = self.base.join("server.log");
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        self.starts += 1;
        writeln!(
            log,
            "===== start #{} on {} with config =====\n{}\n=====",
            self.starts, self.addr, self.config
        )
        .unwrap();
        // The port may linger briefly after a previous run; wait until it can be bound.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpListener::bind(self.addr).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--config")
            .arg(&cfg_path)
            .env_remove("WHARF_CONFIG")
            .env_remove("WHARF_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let line = cmdline(&cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start `{line}`: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = self.http();
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "wharf exited before answering /readyz ({st}):\n  {line}\n--- log ---\n{}",
                    tail(&log_path, 100)
                );
            }
            if let Ok(r) = http.get("/readyz")
                && r.status == 200
            {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "wharf did not become ready within 30s:\n  {line}\n--- log ---\n{}",
                    tail(&log_path, 100)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGTERM and wait for the server to exit (it releases the metadata database), so that the
    /// CLI can work on the data dir. Panics if it has not exited within 30 s.
    pub fn stop(&mut self) {
        let mut c = self.child.take().expect("server not running");
        signal(c.id(), "TERM");
        // A second signal skips the readiness drain delay ([server] shutdown_delay_seconds):
        // these stops only free the data dir; e2e_metrics tests the drain itself.
        std::thread::sleep(Duration::from_millis(50));
        signal(c.id(), "TERM");
        if wait_timeout(&mut c, Duration::from_secs(30)).is_none() {
            let _ = c.kill();
            let _ = c.wait();
            panic!("wharf did not stop within 30 s of SIGTERM:\n{}", self.log());
        }
    }

    /// Stops (if running) and starts again on the same address, data dir and key.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.start();
    }

    /// The server's combined output so far (every start).
    pub fn log(&self) -> String {
        fs::read(self.base.join("server.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for AuthWharf {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of the wharf log ({}) ---\n{}\n--- end of log ---",
                self.addr,
                tail(&self.base.join("server.log"), 60)
            );
            if std::env::var_os("WHARF_E2E_KEEP").is_some()
                && let Some(d) = self.dir.take()
            {
                eprintln!(
                    "WHARF_E2E_KEEP: data dir and log kept in {}",
                    d.keep().display()
                );
            }
        }
    }
}

impl AuthWharf {
    /// The server's process id while it runs (for /proc/PID/status measurements).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}
