//! Hardening of the pull-through cache and of text outputs, end to end:
//!
//! - an upstream that answers 200 to every blob HEAD (a "lying" upstream, written here as a tiny
//!   HTTP server) must not open a private blob stored by this Wharf to anonymous callers of a
//!   cached repository, in path mode or mirror mode (`?ns=`), by GET or HEAD;
//! - a blob fill in progress for one cached repository is not joined by a request through
//!   another (an anonymous caller cannot ride an administrator's fill of a private layer);
//! - a user name carrying newlines and terminal escapes, sent to `/token`, must not forge lines
//!   or write raw escape codes into the text log or into `wharf audit`'s output.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

/// The upstream's name in paths and in the `ns` parameter.
const HOST: &str = "upstream.test";
const ADMIN: (&str, &str) = ("hardening-admin", "hardening-admin-password");
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A registry that claims to have every blob: `HEAD /v2/<name>/blobs/<digest>` is always 200
/// with the digest header and a made-up length. It serves one manifest (by tag `v1` and by
/// digest) and the bytes of the blobs it really has; other blob GETs get 404, or, once
/// [`LyingUpstream::garbage`] is set, 200 with wrong bytes.
struct LyingUpstream {
    addr: SocketAddr,
    state: Arc<UpstreamState>,
}

struct UpstreamState {
    manifest: Vec<u8>,
    manifest_digest: String,
    /// Blobs it really has.
    blobs: HashMap<String, Vec<u8>>,
    /// Answer blob GETs of unknown blobs with this many wrong bytes instead of 404.
    garbage: AtomicBool,
    /// Every request: (method, path).
    log: Mutex<Vec<(String, String)>>,
    /// A blob served only at this one path (`/v2/<repo>/blobs/<digest>`), slowly: its bytes in
    /// eight parts a quarter of a second apart, so that a fill of it stays in progress.
    slow: Mutex<Option<(String, Vec<u8>)>>,
}

/// Length claimed in blob HEAD answers.
const CLAIMED_LEN: usize = 777;

impl LyingUpstream {
    fn start(manifest: Vec<u8>, blobs: HashMap<String, Vec<u8>>) -> LyingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(UpstreamState {
            manifest_digest: sha256_digest(&manifest),
            manifest,
            blobs,
            garbage: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
            slow: Mutex::new(None),
        });
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = serve_conn(conn, &st);
                });
            }
        });
        LyingUpstream { addr, state }
    }

    fn requests(&self, method: &str, digest: &str) -> usize {
        let log = self.state.log.lock().unwrap();
        log.iter()
            .filter(|(m, p)| m == method && p.ends_with(&format!("/blobs/{digest}")))
            .count()
    }
}

/// Answers the requests of one connection (keep-alive) until the client closes it.
fn serve_conn(conn: TcpStream, st: &UpstreamState) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("").to_owned();
        let mut body_len = 0usize;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                body_len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut sink = vec![0u8; body_len];
        reader.read_exact(&mut sink)?;
        st.log
            .lock()
            .unwrap()
            .push((method.clone(), target.clone()));
        let path = target.split('?').next().unwrap_or("");
        let (status, headers, body): (u16, Vec<(&str, String)>, Vec<u8>) = if path == "/v2/" {
            (200, vec![], b"{}".to_vec())
        } else if let Some((_, reference)) = path.rsplit_once("/manifests/") {
            if reference == "v1" || reference == st.manifest_digest {
                (
                    200,
                    vec![
                        ("Content-Type", MANIFEST_TYPE.to_owned()),
                        ("Docker-Content-Digest", st.manifest_digest.clone()),
                    ],
                    st.manifest.clone(),
                )
            } else {
                (
                    404,
                    vec![],
                    br#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#.to_vec(),
                )
            }
        } else if let Some((_, digest)) = path.rsplit_once("/blobs/") {
            let digest = digest.to_owned();
            let slow = st.slow.lock().unwrap().clone();
            if let Some((slow_path, bytes)) = slow
                && method == "GET"
                && path == slow_path
            {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\
                     Content-Type: application/octet-stream\r\nDocker-Content-Digest: {digest}\r\n\r\n",
                    bytes.len()
                );
                out.write_all(head.as_bytes())?;
                for part in bytes.chunks(bytes.len().div_ceil(8)) {
                    out.write_all(part)?;
                    out.flush()?;
                    std::thread::sleep(Duration::from_millis(250));
                }
                continue;
            }
            if method == "HEAD" {
                // The lie: every blob "exists".
                let mut head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {CLAIMED_LEN}\r\n\
                     Content-Type: application/octet-stream\r\nDocker-Content-Digest: {digest}\r\n\r\n"
                );
                out.write_all(std::mem::take(&mut head).as_bytes())?;
                continue;
            }
            match st.blobs.get(&digest) {
                Some(b) => (
                    200,
                    vec![("Docker-Content-Digest", digest.clone())],
                    b.clone(),
                ),
                None if st.garbage.load(Ordering::SeqCst) => (
                    200,
                    vec![("Docker-Content-Digest", digest.clone())],
                    vec![b'x'; 4096],
                ),
                None => (
                    404,
                    vec![],
                    br#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#.to_vec(),
                ),
            }
        } else {
            (404, vec![], b"{}".to_vec())
        };
        let mut resp = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str("\r\n");
        out.write_all(resp.as_bytes())?;
        if method != "HEAD" {
            out.write_all(&body)?;
        }
        out.flush()?;
    }
}

/// A Wharf with access control on (anonymous pulls only in the cached namespace), an
/// administrator, and one cache upstream at `url`.
fn caching_wharf(url: &str) -> AuthWharf {
    let cfg = format!(
        "[auth]\nanonymous_pull = [\"{HOST}/*\"]\n\n\
         [[cache.upstream]]\nhost = \"{HOST}\"\nurl = \"{url}\"\n\
         response_timeout_seconds = 5\nread_timeout_seconds = 5\n"
    );
    let mut w = AuthWharf::new(&cfg);
    w.must_cli(
        &["user", "add", ADMIN.0, "--admin"],
        &format!("{}\n", ADMIN.1),
    );
    w.start();
    w
}

/// Pushes `data` as a blob into the private repository `repo` as the administrator.
fn push_private(w: &AuthWharf, repo: &str, data: &[u8]) -> String {
    let digest = sha256_digest(data);
    let r = w
        .http()
        .request(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            &[("Authorization", &basic(ADMIN.0, ADMIN.1))],
            data,
        )
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.dump());
    digest
}

/// Whether `hay` contains `needle`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// An upstream that answers 200 to every blob HEAD (and serves wrong bytes on GET) does not open
/// a private blob of this Wharf through a cached repository: not by GET or HEAD, not in path
/// mode or mirror mode, not afterwards either. A stored blob that a manifest cached there lists,
/// or that the upstream served whole and verified, is served.
#[test]
fn lying_upstream_does_not_open_stored_blobs() {
    // Blobs this Wharf stores in private repositories.
    let secret = pattern(501, 4096);
    let base = pattern(502, 3000);
    let shared = pattern(503, 5000);
    let (base_d, shared_d) = (sha256_digest(&base), sha256_digest(&shared));
    // The upstream's one manifest lists `base` (a shared base layer); it really has `shared`.
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256_digest(b"{}"), "size": 2
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": base_d, "size": base.len()
        }]
    }))
    .unwrap();
    let up = LyingUpstream::start(
        manifest,
        HashMap::from([(shared_d.clone(), shared.clone())]),
    );
    let w = caching_wharf(&format!("http://{}", up.addr));
    let secret_d = push_private(&w, "private/app", &secret);
    push_private(&w, "private/base", &base);
    push_private(&w, "private/shared", &shared);
    let http = w.http();

    // The private repository is closed to anonymous callers.
    let direct = http
        .get(&format!("/v2/private/app/blobs/{secret_d}"))
        .unwrap();
    assert_eq!(direct.status, 401, "{}", direct.dump());

    let path_mode = format!("/v2/{HOST}/team/app/blobs/{secret_d}");
    let mirror_mode = format!("/v2/team/app/blobs/{secret_d}?ns={HOST}");
    let check = |when: &str| {
        for path in [&path_mode, &mirror_mode] {
            // A HEAD may repeat the upstream's answer (its claimed size), never the store's.
            let head = http.head(path).unwrap();
            assert!(
                head.status != 200
                    || head.header("content-length") == Some(CLAIMED_LEN.to_string().as_str()),
                "{when}: HEAD {path} must not reveal the stored blob: {}",
                head.dump()
            );
            // A transfer that fails its digest check ends the response early: an I/O error
            // here is a refusal too.
            if let Ok(get) = http.get(path) {
                assert!(
                    !contains(&get.body, &secret[..1024]),
                    "{when}: GET {path} returned the private blob: {}",
                    get.dump()
                );
                assert_ne!(get.status, 200, "{when}: GET {path}: {}", get.dump());
            }
        }
    };
    // Blob GETs answered 404 upstream; then with wrong bytes (the fill fails its digest check).
    check("upstream 404");
    up.state.garbage.store(true, Ordering::SeqCst);
    check("upstream garbage");
    up.state.garbage.store(false, Ordering::SeqCst);
    check("again");
    assert!(
        up.requests("HEAD", &secret_d) >= 2,
        "the lying upstream was asked"
    );
    assert!(
        up.requests("GET", &secret_d) >= 2,
        "the upstream was asked for the bytes"
    );

    // Positive control (a): a stored blob listed by a manifest cached in the repository is
    // served from the store, although the upstream never serves its bytes.
    let m = http
        .request(
            "GET",
            &format!("/v2/{HOST}/team/app/manifests/v1"),
            &[("Accept", MANIFEST_TYPE)],
            &[],
        )
        .unwrap();
    assert_eq!(m.status, 200, "{}", m.dump());
    let listed = format!("/v2/team/app/blobs/{base_d}?ns={HOST}");
    let head = http.head(&listed).unwrap();
    assert_eq!(head.status, 200, "{}", head.dump());
    assert_eq!(
        head.header("content-length"),
        Some(base.len().to_string().as_str())
    );
    let got = http.get(&listed).unwrap();
    assert_eq!(got.status, 200, "{}", got.dump());
    assert_eq!(got.body, base, "the listed blob, from the store");
    assert_eq!(up.requests("GET", &base_d), 0, "not fetched upstream");

    // Positive control (b): a stored blob the upstream serves whole and verified is served, and
    // linked: the next GET does not ask the upstream.
    let path = format!("/v2/{HOST}/team/app/blobs/{shared_d}");
    let got = http.get(&path).unwrap();
    assert_eq!(got.status, 200, "{}", got.dump());
    assert_eq!(got.body, shared);
    assert_eq!(up.requests("GET", &shared_d), 1);
    let again = http.get(&path).unwrap();
    assert_eq!((again.status, again.body == shared), (200, true));
    assert_eq!(up.requests("GET", &shared_d), 1, "served from the store");
}

/// A blob fill in progress for one cached repository is never joined by a request through
/// another: an administrator's pull of a layer that only the upstream's private repository
/// serves must not hand its bytes to an anonymous caller asking a public cached repository for
/// the same digest while the fill runs (fills were once shared by digest alone).
#[test]
fn fill_in_progress_is_not_shared_across_cached_repositories() {
    let secret = pattern(601, 64 * 1024);
    let secret_d = sha256_digest(&secret);
    let up = LyingUpstream::start(b"{}".to_vec(), HashMap::new());
    *up.state.slow.lock().unwrap() =
        Some((format!("/v2/private/app/blobs/{secret_d}"), secret.clone()));
    let cfg = format!(
        "[auth]\nanonymous_pull = [\"{HOST}/public/*\"]\n\n\
         [[cache.upstream]]\nhost = \"{HOST}\"\nurl = \"http://{}\"\n\
         response_timeout_seconds = 5\nread_timeout_seconds = 5\n",
        up.addr
    );
    let mut w = AuthWharf::new(&cfg);
    w.must_cli(
        &["user", "add", ADMIN.0, "--admin"],
        &format!("{}\n", ADMIN.1),
    );
    w.start();
    let http = w.http();

    // The administrator's pull starts the fill (two seconds of transfer).
    let admin = {
        let http = w.http();
        let path = format!("/v2/{HOST}/private/app/blobs/{secret_d}");
        std::thread::spawn(move || {
            http.request(
                "GET",
                &path,
                &[("Authorization", &basic(ADMIN.0, ADMIN.1))],
                &[],
            )
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while up.requests("GET", &secret_d) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the fill never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));

    // Meanwhile an anonymous caller asks a public cached repository for the same digest.
    let public = format!("/v2/{HOST}/public/x/blobs/{secret_d}");
    if let Ok(got) = http.get(&public) {
        assert!(
            !contains(&got.body, &secret[..1024]),
            "GET {public} during the fill returned the private blob: {}",
            got.dump()
        );
        assert_ne!(got.status, 200, "GET {public}: {}", got.dump());
    }
    // The public path was asked of the upstream itself, which does not serve it there.
    assert!(
        up.state
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|(m, p)| m == "GET" && p == &format!("/v2/public/x/blobs/{secret_d}")),
        "the public request made its own fill"
    );

    // Positive control: the administrator got the whole, verified blob.
    let got = admin.join().unwrap().unwrap();
    assert_eq!(got.status, 200, "{}", got.dump());
    assert_eq!(got.body, secret);
    // And after the fill, the public repository still does not get it.
    if let Ok(got) = http.get(&public) {
        assert!(!contains(&got.body, &secret[..1024]), "{}", got.dump());
        assert_ne!(got.status, 200, "{}", got.dump());
    }
}

/// A user name with a newline, a forged log line and terminal escapes, sent to `/token`, shows
/// up escaped in the server's text log and in `wharf audit`: no raw ESC or other control byte,
/// and the forged text never starts a line.
#[test]
fn token_user_name_cannot_forge_log_or_audit_lines() {
    const FORGED: &str = "FORGED-LINE INFO audit: action=login.ok actor=root";
    let mut w = AuthWharf::new("[auth]\nanonymous_pull = [\"public/*\"]\n");
    w.start();
    let evil = format!("mallory\n{FORGED}\r\n{FORGED}\x1b[31m\x1b]0;title\x07\u{202e}\u{85}");
    let form = format!(
        "grant_type=password&service=&username={}&password=wrong",
        urlencode(&evil)
    );
    let r = w
        .http()
        .request(
            "POST",
            "/token",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.dump());
    // Basic credentials on GET /token take the same path.
    let r = w
        .http()
        .request(
            "GET",
            "/token",
            &[("Authorization", &basic(&evil, "wrong"))],
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.dump());
    w.stop();

    let check = |what: &str, text: &[u8]| {
        let s = String::from_utf8_lossy(text);
        assert!(
            s.contains("mallory"),
            "{what}: the failed login is recorded:\n{s}"
        );
        for (i, line) in s.lines().enumerate() {
            assert!(
                !line.trim_start().starts_with("FORGED-LINE"),
                "{what}: line {i} is forged: {line:?}"
            );
            let bad: Vec<char> = line
                .chars()
                .filter(|c| {
                    (c.is_control() && *c != '\t')
                        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
                })
                .collect();
            assert!(
                bad.is_empty(),
                "{what}: raw control characters {bad:?} in {line:?}"
            );
        }
    };
    // The server's log, from the line that started this run on.
    let log = w.log();
    let run = &log[log.rfind("=====").unwrap()..];
    check("server log", run.as_bytes());
    let out = w.cli(&["audit", "--limit", "50"], "");
    assert!(out.status.success(), "{out:?}");
    check("wharf audit", &out.stdout);
    let out = w.cli(&["audit", "--json", "--limit", "50"], "");
    assert!(out.status.success(), "{out:?}");
    check("wharf audit --json", &out.stdout);
}

/// Percent-encodes everything but unreserved characters.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}
