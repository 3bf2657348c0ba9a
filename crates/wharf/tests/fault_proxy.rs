//! Tests of the fault-injecting proxy (`support::fault`) itself, against real registries: CNCF
//! Distribution (`docker-registry`) as a plain upstream, and Wharf with access control for the
//! Bearer token flow. Every fault mode is shown to do exactly what the pull-through cache tests
//! will rely on: a refused connection, a request that is never answered, a body cut after N bytes,
//! an error status with a registry error body, a body of the right length with the wrong digest,
//! a throttled body, a late first byte, and counters that say what the upstream served.

mod support;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::fault::{CORRUPT_STRIDE, Fault, FaultProxy, PathKind, Rule};
use support::*;

/// Size of the test layer: several corruption strides, several 64 KiB copy pieces.
const LAYER_LEN: usize = 200 * 1024 + 123;
const REPO: &str = "fault/app";

/// An image pushed straight to the upstream.
struct Image {
    layer: Vec<u8>,
    layer_digest: String,
    manifest: Vec<u8>,
    manifest_digest: String,
}

fn push_image(http: &Http, repo: &str) -> Image {
    let layer = pattern(7, LAYER_LEN);
    let layer_digest = http.must_push_blob(repo, &layer);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = http.must_push_blob(repo, config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap();
    http.push_manifest(repo, "v1", OCI_MANIFEST, &manifest)
        .expect("push manifest")
        .expect(201);
    Image {
        manifest_digest: sha256_digest(&manifest),
        layer,
        layer_digest,
        manifest,
    }
}

/// Distribution with one image, and a proxy in front of it; None when docker-registry is missing.
fn setup(test: &str) -> Option<(Server, Image, FaultProxy)> {
    if !have_tools(test, &["docker-registry"]) {
        return None;
    }
    let upstream = Server::start_kind(Kind::Distribution);
    let image = push_image(&upstream.http(), REPO);
    let proxy = FaultProxy::start(upstream.addr);
    Some((upstream, image, proxy))
}

/// A raw exchange: what came back before the server closed the connection (or the read timed
/// out), split at the end of the head.
struct Raw {
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn status(&self) -> u16 {
        self.head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {:?}", self.head))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Sends a GET with `Connection: close` and reads until the server closes the connection.
fn raw_get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<Raw> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {ACCEPT_ALL}\r\nConnection: close\r\n\r\n"
    )?;
    let mut all = Vec::new();
    s.read_to_end(&mut all)?;
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no complete head"))?;
    Ok(Raw {
        head: String::from_utf8_lossy(&all[..end]).into_owned(),
        body: all[end..].to_vec(),
    })
}

/// Sends `GET /v2/` without `Connection: close` and reads exactly one 200 response, leaving the
/// connection open (panics if the server closes it or answers something else).
fn keep_alive_get_base(s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /v2/ HTTP/1.1\r\nHost: wharf-e2e\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the server closed a kept-alive connection");
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            assert!(got.len() <= end + 4 + len, "bytes beyond the response");
            if got.len() == end + 4 + len {
                return;
            }
        }
    }
}

fn blob_path(image: &Image) -> String {
    format!("/v2/{REPO}/blobs/{}", image.layer_digest)
}

fn manifest_path() -> String {
    format!("/v2/{REPO}/manifests/v1")
}

#[test]
fn passes_through_with_keep_alive_counts_and_rewritten_locations() {
    let Some((upstream, image, proxy)) = setup("passes_through") else {
        return;
    };
    let http = Http::new(proxy.addr());

    // Pull through the proxy.
    let m = http.get_manifest(REPO, "v1").unwrap().expect(200);
    assert_eq!(m.body, image.manifest);
    assert_eq!(
        m.header("Docker-Content-Digest"),
        Some(&*image.manifest_digest)
    );
    let (r, n, digest) = http.get_blob_hashed(REPO, &image.layer_digest).unwrap();
    assert_eq!(r.status, 200, "{}", r.dump());
    assert_eq!(
        (n, digest.as_str()),
        (LAYER_LEN as u64, &*image.layer_digest)
    );
    assert_eq!(proxy.requests("GET", PathKind::Manifest), 1);
    assert_eq!(proxy.requests("GET", PathKind::Blob), 1);
    assert_eq!(proxy.blob_gets(&image.layer_digest), 1);
    assert_eq!(proxy.blob_bytes(), LAYER_LEN as u64);
    assert_eq!(proxy.forwarded(), 2);

    // Push through the proxy: Distribution's absolute upload URLs point at the proxy.
    let r = http
        .must("POST", "/v2/fault/pushed/blobs/uploads/", &[], &[])
        .expect(202);
    let loc = r.must_header("Location");
    assert!(
        loc.starts_with(&format!("http://{}/", proxy.addr())),
        "upload Location not rewritten to the proxy: {loc}"
    );
    assert!(!loc.contains(&upstream.addr.to_string()), "{loc}");
    let data = pattern(9, 5000);
    let r = http
        .must(
            "PUT",
            &with_query(&r.location(), &format!("digest={}", sha256_digest(&data))),
            &[("Content-Type", "application/octet-stream")],
            &data,
        )
        .expect(201);
    assert!(
        r.must_header("Location")
            .contains(&proxy.addr().to_string())
    );
    assert_eq!(proxy.requests("POST", PathKind::Upload), 1);
    assert_eq!(proxy.requests("PUT", PathKind::Upload), 1);
    let direct = upstream
        .http()
        .get_blob("fault/pushed", &sha256_digest(&data))
        .unwrap()
        .expect(200);
    assert_eq!(
        direct.body, data,
        "the pushed blob reached the upstream intact"
    );

    // Keep-alive: two requests on one client connection use one upstream connection.
    proxy.reset_counters();
    let mut s = TcpStream::connect(proxy.addr()).unwrap();
    let host = proxy.addr();
    keep_alive_get_base(&mut s);
    write!(
        s,
        "GET {} HTTP/1.1\r\nHost: {host}\r\nAccept: {ACCEPT_ALL}\r\nConnection: close\r\n\r\n",
        manifest_path()
    )
    .unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let text = String::from_utf8_lossy(&rest);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(rest.ends_with(&image.manifest), "{text}");
    assert_eq!(proxy.client_connections(), 1);
    assert_eq!(
        proxy.upstream_connections(),
        1,
        "upstream connection reused"
    );
    assert_eq!(proxy.requests("GET", PathKind::Base), 1);
    assert_eq!(proxy.requests("GET", PathKind::Manifest), 1);
    let log = proxy.log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(
        log.iter().all(|r| r.forwarded && r.status == Some(200)),
        "{log:?}"
    );
}

#[test]
fn refuse_stops_listening_and_recovers_on_the_same_address() {
    let Some((_upstream, image, proxy)) = setup("refuse") else {
        return;
    };
    // A kept-alive connection opened before the outage.
    let mut kept = TcpStream::connect(proxy.addr()).unwrap();
    keep_alive_get_base(&mut kept);

    proxy.set(Fault::Refuse);
    let err = TcpStream::connect(proxy.addr()).expect_err("connection while refusing");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    assert!(Http::new(proxy.addr()).get("/v2/").is_err());
    // The old connection is closed without an answer at its next request.
    write!(kept, "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let _ = kept.read_to_end(&mut got);
    assert!(
        got.is_empty(),
        "answer under Refuse: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(proxy.forwarded(), 1, "only the request before the outage");

    proxy.clear();
    let m = Http::new(proxy.addr())
        .get_manifest(REPO, "v1")
        .expect("the proxy listens again")
        .expect(200);
    assert_eq!(m.body, image.manifest);
    assert_eq!(proxy.forwarded(), 2);
}

#[test]
fn stall_reads_the_request_and_never_answers() {
    let Some((_upstream, image, proxy)) = setup("stall") else {
        return;
    };
    proxy.set_for(PathKind::Blob, Fault::Stall);
    let start = Instant::now();
    let err = raw_get(proxy.addr(), &blob_path(&image), Duration::from_millis(800))
        .err()
        .expect("a stalled request timed out");
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    assert!(start.elapsed() >= Duration::from_millis(750));
    assert_eq!(
        proxy.requests("GET", PathKind::Blob),
        1,
        "the request arrived"
    );
    assert_eq!(proxy.forwarded(), 0, "the upstream was not asked");
    assert_eq!(proxy.blob_gets(&image.layer_digest), 0);
    // Manifests still pass.
    Http::new(proxy.addr())
        .get_manifest(REPO, "v1")
        .unwrap()
        .expect(200);
    proxy.clear();
    let r = raw_get(proxy.addr(), &blob_path(&image), Duration::from_secs(10)).unwrap();
    assert_eq!(r.body, image.layer);
    assert_eq!(proxy.blob_gets(&image.layer_digest), 1);
}

#[test]
fn drop_mid_body_cuts_the_blob_after_n_bytes() {
    let Some((_upstream, image, proxy)) = setup("drop_mid_body") else {
        return;
    };
    // Cut blobs once; manifests are untouched.
    proxy.set_rule(
        Rule::new(Fault::DropMidBody { after: 70_000 })
            .kind(PathKind::Blob)
            .times(1),
    );
    Http::new(proxy.addr())
        .get_manifest(REPO, "v1")
        .unwrap()
        .expect(200);
    let r = raw_get(proxy.addr(), &blob_path(&image), Duration::from_secs(10)).unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.header("Content-Length").as_deref(),
        Some(&*LAYER_LEN.to_string()),
        "the head promises the whole blob"
    );
    assert_eq!(
        r.body.len(),
        70_000,
        "exactly `after` body bytes, then close"
    );
    assert_eq!(r.body, image.layer[..70_000]);
    // The rule was used once: the next request gets the whole blob.
    let r = raw_get(proxy.addr(), &blob_path(&image), Duration::from_secs(10)).unwrap();
    assert_eq!(r.body, image.layer);
    assert_eq!(proxy.blob_gets(&image.layer_digest), 2);
    assert_eq!(proxy.blob_bytes(), 70_000 + LAYER_LEN as u64);

    // Unlimited: every blob GET is cut, and an HTTP client sees a short body.
    proxy.set_for(PathKind::Blob, Fault::DropMidBody { after: 1 });
    let err = Http::new(proxy.addr())
        .get_blob(REPO, &image.layer_digest)
        .expect_err("a cut body is an error");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    // A cut at 0 sends the head only; a body shorter than the cut goes out whole.
    proxy.set_for(PathKind::Blob, Fault::DropMidBody { after: 0 });
    let r = raw_get(proxy.addr(), &blob_path(&image), Duration::from_secs(10)).unwrap();
    assert_eq!((r.status(), r.body.len()), (200, 0));
    proxy.set(Fault::DropMidBody { after: 1 << 30 });
    let r = raw_get(proxy.addr(), &manifest_path(), Duration::from_secs(10)).unwrap();
    assert_eq!(r.body, image.manifest);
}

#[test]
fn status_faults_answer_with_registry_errors_without_asking_the_upstream() {
    let Some((_upstream, image, proxy)) = setup("status") else {
        return;
    };
    let http = Http::new(proxy.addr());
    proxy.set_for(PathKind::Manifest, Fault::Status(429));
    let r = http.get_manifest(REPO, "v1").unwrap().expect(429);
    assert_eq!(r.header("Retry-After"), Some("1"));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.json()["errors"][0]["code"], "TOOMANYREQUESTS");
    let r = http
        .request("HEAD", &manifest_path(), &[("Accept", ACCEPT_ALL)], &[])
        .unwrap()
        .expect(429);
    assert!(r.body.is_empty());
    // Blobs pass while manifests are rate limited.
    let r = http
        .get_blob(REPO, &image.layer_digest)
        .unwrap()
        .expect(200);
    assert_eq!(r.body, image.layer);
    assert_eq!(proxy.forwarded(), 1, "only the blob reached the upstream");
    assert_eq!(proxy.requests("GET", PathKind::Manifest), 1);
    assert_eq!(proxy.requests("HEAD", PathKind::Manifest), 1);

    for code in [500u16, 503] {
        proxy.set(Fault::Status(code));
        let r = http.get("/v2/").unwrap().expect(code);
        assert_eq!(r.json()["errors"][0]["code"], "UNAVAILABLE");
        assert_eq!(
            r.header("Retry-After").is_some(),
            code == 503,
            "{}",
            r.dump()
        );
        // A request body is read and discarded, and the answer is the same.
        http.must("POST", &format!("/v2/{REPO}/blobs/uploads/"), &[], b"xyz")
            .expect(code);
    }
    assert_eq!(proxy.forwarded(), 1);

    // The status applies to GETs only: HEAD passes.
    proxy.set_rule(Rule::new(Fault::Status(500)).method("GET"));
    http.request("HEAD", &manifest_path(), &[("Accept", ACCEPT_ALL)], &[])
        .unwrap()
        .expect(200);
    http.get_manifest(REPO, "v1").unwrap().expect(500);
}

#[test]
fn corrupt_keeps_the_length_and_changes_the_digest() {
    let Some((_upstream, image, proxy)) = setup("corrupt") else {
        return;
    };
    proxy.set_for(PathKind::Blob, Fault::Corrupt);
    let http = Http::new(proxy.addr());
    let r = http
        .get_blob(REPO, &image.layer_digest)
        .unwrap()
        .expect(200);
    assert_eq!(r.body.len(), LAYER_LEN, "same length");
    assert_eq!(
        r.header("Docker-Content-Digest"),
        Some(&*image.layer_digest)
    );
    assert_ne!(
        sha256_digest(&r.body),
        image.layer_digest,
        "the digest no longer matches"
    );
    let differing: Vec<usize> = (0..LAYER_LEN)
        .filter(|&i| r.body[i] != image.layer[i])
        .collect();
    let want: Vec<usize> = (0..LAYER_LEN as u64)
        .step_by(CORRUPT_STRIDE as usize)
        .map(|i| i as usize)
        .collect();
    assert_eq!(differing, want, "one byte flipped per stride");
    // Manifests pass untouched; a corrupted range is corrupted from its own first byte.
    let m = http.get_manifest(REPO, "v1").unwrap().expect(200);
    assert_eq!(m.body, image.manifest);
    let r = http
        .must("GET", &blob_path(&image), &[("Range", "bytes=10-19")], &[])
        .expect(206);
    assert_eq!(r.body.len(), 10);
    assert_ne!(r.body[0], image.layer[10]);
    assert_eq!(r.body[1..], image.layer[11..20]);
    // Error responses are never corrupted.
    let r = http
        .get_blob(REPO, &sha256_digest(b"absent"))
        .unwrap()
        .expect(404);
    assert_eq!(r.json()["errors"][0]["code"], "BLOB_UNKNOWN");
}

#[test]
fn slow_body_and_first_byte_delay_take_their_time() {
    let Some((_upstream, image, proxy)) = setup("slow") else {
        return;
    };
    let http = Http::new(proxy.addr());
    // 200 KiB at 400 KiB/s: about half a second, and intact.
    proxy.set_for(
        PathKind::Blob,
        Fault::SlowBody {
            bytes_per_sec: 400 * 1024,
        },
    );
    let start = Instant::now();
    let r = http
        .get_blob(REPO, &image.layer_digest)
        .unwrap()
        .expect(200);
    let slow = start.elapsed();
    assert_eq!(r.body, image.layer);
    assert!(slow >= Duration::from_millis(450), "took {slow:?}");
    assert!(slow < Duration::from_secs(5), "took {slow:?}");

    proxy.set_for(
        PathKind::Manifest,
        Fault::FirstByteDelay(Duration::from_millis(400)),
    );
    let start = Instant::now();
    let m = http.get_manifest(REPO, "v1").unwrap().expect(200);
    let delayed = start.elapsed();
    assert_eq!(m.body, image.manifest);
    assert!(delayed >= Duration::from_millis(400), "took {delayed:?}");
    // Blobs are no longer slowed (the rules were replaced) nor delayed (not a manifest).
    let r = http
        .get_blob(REPO, &image.layer_digest)
        .unwrap()
        .expect(200);
    assert_eq!(r.body, image.layer);
    let faults: Vec<_> = proxy.log().into_iter().map(|r| (r.kind, r.fault)).collect();
    assert_eq!(
        faults,
        vec![
            (
                PathKind::Blob,
                Some(Fault::SlowBody {
                    bytes_per_sec: 400 * 1024
                })
            ),
            (
                PathKind::Manifest,
                Some(Fault::FirstByteDelay(Duration::from_millis(400)))
            ),
            (PathKind::Blob, None),
        ]
    );
}

#[test]
fn bearer_token_flow_through_the_proxy() {
    let mut wharf = AuthWharf::new("[auth]\nmode = \"on\"\n");
    wharf.must_cli(&["user", "add", "ferry", "--admin"], "ferry-password-1\n");
    wharf.start();
    let proxy = FaultProxy::start(wharf.addr);
    let http = Http::new(proxy.addr());

    let r = http.get("/v2/").unwrap().expect(401);
    let challenge = r.must_header("WWW-Authenticate").to_string();
    let realm = format!("Bearer realm=\"http://{}/token\"", proxy.addr());
    assert!(
        challenge.starts_with(&realm),
        "realm not rewritten: {challenge}"
    );

    let basic = basic("ferry", "ferry-password-1");
    let repo = "proxied/app";
    let r = http
        .must(
            "GET",
            &format!("/token?service=wharf&scope=repository:{repo}:push,pull"),
            &[("Authorization", &basic)],
            &[],
        )
        .expect(200);
    let token = r.json()["token"].as_str().expect("token").to_string();
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];

    // Push a blob and read it back, all through the proxy with the token.
    let data = pattern(11, 3 * CORRUPT_STRIDE as usize + 5);
    let digest = sha256_digest(&data);
    let r = http
        .must("POST", &format!("/v2/{repo}/blobs/uploads/"), &auth, &[])
        .expect(202);
    let put = with_query(&r.location(), &format!("digest={digest}"));
    let mut hs = auth.to_vec();
    hs.push(("Content-Type", "application/octet-stream"));
    http.must("PUT", &put, &hs, &data).expect(201);
    let r = http
        .must("GET", &format!("/v2/{repo}/blobs/{digest}"), &auth, &[])
        .expect(200);
    assert_eq!(r.body, data);
    // Without the token: a challenge for the repository, pointing at the proxy.
    let r = http
        .get(&format!("/v2/{repo}/blobs/{digest}"))
        .unwrap()
        .expect(401);
    let ch = r.must_header("WWW-Authenticate");
    assert!(ch.starts_with(&realm) && ch.contains(repo), "{ch}");
    assert_eq!(proxy.requests("GET", PathKind::Token), 1);
    assert_eq!(proxy.requests_of(PathKind::Upload), 2);
    assert_eq!(proxy.requests("GET", PathKind::Blob), 2);
    assert_eq!(proxy.blob_gets(&digest), 1, "the 401 is not a served blob");
    assert_eq!(
        proxy.blob_bytes(),
        data.len() as u64,
        "the 401 has no blob body"
    );

    // A faulted token endpoint: the client sees the error, the upstream is not asked.
    proxy.set_for(PathKind::Token, Fault::Status(503));
    http.must(
        "GET",
        "/token?service=wharf",
        &[("Authorization", &basic)],
        &[],
    )
    .expect(503);
    assert_eq!(proxy.requests("GET", PathKind::Token), 2);
}
