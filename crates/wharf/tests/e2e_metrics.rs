//! Operability of a real `wharf serve`: `/metrics` in both exposition formats (the Prometheus
//! text format linted by the real `promtool check metrics`, OpenMetrics on request), the
//! `process_*` and `wharf_build_info` metrics, the access log (JSON and text), and readiness
//! during a SIGTERM drain while a slow download is still in flight.
//!
//! Needs `promtool` (Debian package `prometheus`, scripts/install-test-deps.sh): without it the
//! test fails.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use support::*;

const ALICE: (&str, &str) = ("alice", "alice-password-1");

fn promtool() -> std::path::PathBuf {
    which("promtool").expect(
        "promtool is not installed (Debian package `prometheus`): run scripts/install-test-deps.sh",
    )
}

/// Pushes a blob (POST then PUT) with these extra headers; returns its digest.
fn push_blob(http: &Http, headers: &[(&str, &str)], repo: &str, data: &[u8]) -> String {
    let d = sha256_digest(data);
    let r = http
        .must("POST", &format!("/v2/{repo}/blobs/uploads/"), headers, &[])
        .expect(202);
    let put = with_query(&r.location(), &format!("digest={d}"));
    let mut h = headers.to_vec();
    h.push(("Content-Type", "application/octet-stream"));
    http.must("PUT", &put, &h, data).expect(201);
    d
}

/// Pushes a one-layer image as `repo:tag`; returns (manifest digest, manifest bytes).
fn push_image(
    http: &Http,
    headers: &[(&str, &str)],
    repo: &str,
    tag: &str,
    seed: u64,
) -> (String, Vec<u8>) {
    let layer = pattern(seed, 8192);
    let layer_d = push_blob(http, headers, repo, &layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_d]},
    }))
    .unwrap();
    let config_d = push_blob(http, headers, repo, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_d, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_d, "size": layer.len()}],
    }))
    .unwrap();
    let mut h = headers.to_vec();
    h.push(("Content-Type", OCI_MANIFEST));
    http.must("PUT", &format!("/v2/{repo}/manifests/{tag}"), &h, &manifest)
        .expect(201);
    (sha256_digest(&manifest), manifest)
}

/// GET `path` on `addr` with an `Accept` header: (content type, body).
fn scrape(addr: SocketAddr, accept: &str) -> (String, String) {
    let r = Http::new(addr)
        .must("GET", "/metrics", &[("Accept", accept)], &[])
        .expect(200);
    (r.must_header("Content-Type").to_owned(), r.text())
}

/// Runs `promtool check metrics` on `text`: (exit success, stdout + stderr).
fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The value of the one sample of `name` (no labels, or any labels when `name` has `{`).
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (n, v) = l.rsplit_once(' ')?;
            (n == name || (n.starts_with(name) && n[name.len()..].starts_with('{')))
                .then(|| v.parse::<f64>().ok())
                .flatten()
        })
        .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
}

/// The access log lines (JSON) of the server's log.
fn access_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "wharf::access")
        .collect()
}

/// The access line of the request with this id; waits a little, as the line is written when
/// the response body is done.
fn access_line(srv: &AuthWharf, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = access_lines(&srv.log())
            .into_iter()
            .find(|v| v["fields"]["request_id"] == id)
        {
            return v["fields"].clone();
        }
        if Instant::now() > deadline {
            panic!("no access line with request_id {id}:\n{}", srv.log());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_are_promtool_clean_and_every_request_is_in_the_access_log() {
    promtool();
    let metrics_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut srv = AuthWharf::new(&format!(
        "[auth]\nanonymous_pull = [\"public/*\"]\ntrusted_proxies = [\"127.0.0.0/8\"]\n\
         [metrics]\nlisten = \"{metrics_addr}\"\n\
         [log]\nformat = \"json\"\n"
    ));
    srv.must_cli(
        &["user", "add", ALICE.0, "--admin"],
        &format!("{}\n", ALICE.1),
    );
    srv.start();
    let http = srv.http();
    let alice = basic(ALICE.0, ALICE.1);

    // An authenticated push (Basic credentials on /v2/), named by the client's request ids.
    let (digest, manifest) = push_image(
        &http,
        &[("Authorization", &alice), ("X-Request-ID", "e2e-push")],
        "public/app",
        "v1",
        7,
    );
    // An anonymous pull of the manifest and a blob.
    let r = http
        .must(
            "GET",
            "/v2/public/app/manifests/v1",
            &[("Accept", OCI_MANIFEST), ("X-Request-ID", "e2e-pull-1")],
            &[],
        )
        .expect(200);
    assert_eq!(r.header("X-Request-ID"), Some("e2e-pull-1"), "{}", r.dump());
    assert_eq!(r.body, manifest);
    let layer_d = serde_json::from_slice::<Value>(&manifest).unwrap()["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    http.must(
        "GET",
        &format!("/v2/public/app/blobs/{layer_d}"),
        &[("X-Request-ID", "e2e-blob")],
        &[],
    )
    .expect(200);
    // A token for alice (the secret-bearing query parameter is redacted in the log), then a
    // pull with it.
    let t = http
        .must(
            "GET",
            "/token?service=wharf&scope=repository:public/app:pull&refresh_token=not-a-secret-to-log",
            &[("Authorization", &alice), ("X-Request-ID", "e2e-token")],
            &[],
        )
        .expect(200);
    let token = t.json()["token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");
    http.must(
        "HEAD",
        &format!("/v2/public/app/manifests/{digest}"),
        &[("Authorization", &bearer), ("X-Request-ID", "e2e-bearer")],
        &[],
    )
    .expect(200);
    // Refused: no credentials for a private repository.
    http.must(
        "GET",
        "/v2/private/app/tags/list",
        &[("X-Request-ID", "e2e-denied")],
        &[],
    )
    .expect(401);
    // Ids that are not sane are replaced, and a request without one gets one.
    let long = "x".repeat(200);
    let mut generated = Vec::new();
    for hdrs in [
        vec![("X-Request-ID", "has space")],
        vec![("X-Request-ID", long.as_str())],
        vec![],
    ] {
        let r = http.must("GET", "/v2/", &hdrs, &[]);
        let id = r.must_header("X-Request-ID").to_owned();
        assert!(
            id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "generated id {id:?} for {hdrs:?}"
        );
        generated.push(id);
    }
    generated.sort();
    generated.dedup();
    assert_eq!(generated.len(), 3, "ids are unique: {generated:?}");
    // Through a trusted proxy (loopback is one here), the client X-Forwarded-For names.
    http.must(
        "GET",
        "/v2/",
        &[
            ("X-Forwarded-For", "198.51.100.4, 203.0.113.9"),
            ("X-Request-ID", "e2e-proxied"),
        ],
        &[],
    );
    // Every answer carries an id, the 404 of an unknown route too.
    let r = http.must("GET", "/nowhere", &[], &[]);
    assert!(r.header("X-Request-ID").is_some(), "{}", r.dump());

    // The access log.
    let push = access_lines(&srv.log())
        .into_iter()
        .map(|v| v["fields"].clone())
        .find(|f| f["request_id"] == "e2e-push" && f["path"] == "/v2/public/app/manifests/v1")
        .unwrap_or_else(|| panic!("no access line for the manifest push:\n{}", srv.log()));
    assert_eq!(push["method"], "PUT", "{push}");
    assert_eq!(push["status"], 201, "{push}");
    assert_eq!(push["repo"], "public/app", "{push}");
    assert_eq!(push["user"], "alice", "{push}");
    assert_eq!(push["client"], "127.0.0.1", "{push}");

    // The push's own lines carry its id.
    let pushed = srv
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "manifest pushed")
        .unwrap_or_else(|| panic!("no `manifest pushed` line:\n{}", srv.log()));
    assert_eq!(pushed["span"]["id"], "e2e-push", "{pushed}");

    let pull = access_line(&srv, "e2e-pull-1");
    assert_eq!(pull["method"], "GET", "{pull}");
    assert_eq!(pull["path"], "/v2/public/app/manifests/v1", "{pull}");
    assert_eq!(pull["repo"], "public/app", "{pull}");
    assert_eq!(pull["status"], 200, "{pull}");
    assert_eq!(pull["bytes"], manifest.len() as u64, "{pull}");
    assert_eq!(pull["user"], "anonymous", "{pull}");
    assert_eq!(pull["client"], "127.0.0.1", "{pull}");
    let ms: f64 = pull["latency_ms"].as_str().unwrap().parse().unwrap();
    assert!((0.0..10_000.0).contains(&ms), "{pull}");

    let blob = access_line(&srv, "e2e-blob");
    assert_eq!(blob["bytes"], 8192, "{blob}");
    assert_eq!(blob["status"], 200, "{blob}");

    let tok = access_line(&srv, "e2e-token");
    assert_eq!(tok["user"], "alice", "{tok}");
    assert_eq!(tok["repo"], "-", "{tok}");
    assert_eq!(
        tok["path"], "/token?service=wharf&scope=repository:public/app:pull&refresh_token=REDACTED",
        "{tok}"
    );
    let bearer_line = access_line(&srv, "e2e-bearer");
    assert_eq!(bearer_line["user"], "alice", "{bearer_line}");
    assert_eq!(bearer_line["method"], "HEAD", "{bearer_line}");
    assert_eq!(bearer_line["bytes"], 0, "HEAD sends no body: {bearer_line}");
    let proxied = access_line(&srv, "e2e-proxied");
    assert_eq!(proxied["client"], "203.0.113.9", "{proxied}");
    let denied = access_line(&srv, "e2e-denied");
    assert_eq!(denied["status"], 401, "{denied}");
    assert_eq!(denied["user"], "-", "{denied}");
    assert_eq!(denied["repo"], "private/app", "{denied}");
    for id in &generated {
        access_line(&srv, id);
    }
    // A client that goes away mid-download: its line says so, with the bytes actually sent.
    const BIG: usize = 64 << 20;
    let big_d = push_blob(
        &http,
        &[("Authorization", &alice)],
        "public/big",
        &pattern(3, BIG),
    );
    {
        let mut c = TcpStream::connect(srv.addr).unwrap();
        write!(
            c,
            "GET /v2/public/big/blobs/{big_d} HTTP/1.1\r\nHost: x\r\nX-Request-ID: e2e-abort\r\n\r\n"
        )
        .unwrap();
        let mut r = BufReader::new(c);
        assert_eq!(read_head(&mut r), (200, BIG as u64));
        let mut first = [0u8; 4096];
        r.read_exact(&mut first).unwrap();
    }
    let abort = access_line(&srv, "e2e-abort");
    assert_eq!(abort["incomplete"], true, "{abort}");
    assert!(abort["bytes"].as_u64().unwrap() < BIG as u64, "{abort}");
    let log = srv.log();
    for secret in [ALICE.1, "not-a-secret-to-log", token.as_str()] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }

    // The Prometheus text format: what promtool reads, lint-clean.
    let (ct, text) = scrape(metrics_addr, "text/plain;version=0.0.4");
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    let (ok, out) = promtool_check(&text);
    assert!(
        ok && out.trim().is_empty(),
        "promtool check metrics:\n{out}\n--- metrics ---\n{text}"
    );
    // Without an Accept header too.
    let (ct_default, _) = scrape(metrics_addr, "*/*");
    assert_eq!(ct_default, ct);
    for line in [
        "# TYPE wharf_http_requests_total counter",
        "# TYPE wharf_http_request_duration_seconds histogram",
        "# TYPE wharf_build_info gauge",
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_virtual_memory_bytes gauge",
        "# TYPE process_open_fds gauge",
        "# TYPE process_max_fds gauge",
        "# TYPE process_start_time_seconds gauge",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    assert!(
        !text.contains("# EOF") && !text.contains("# UNIT"),
        "{text}"
    );
    // Plausible process figures.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = sample(&text, "process_start_time_seconds");
    assert!(
        started <= now + 1.0 && started > now - 600.0,
        "start {started}, now {now}"
    );
    let rss = sample(&text, "process_resident_memory_bytes");
    let vsz = sample(&text, "process_virtual_memory_bytes");
    assert!(rss > 1e6 && rss < 4e9 && vsz >= rss, "rss {rss} vsz {vsz}");
    let (fds, max_fds) = (
        sample(&text, "process_open_fds"),
        sample(&text, "process_max_fds"),
    );
    assert!(fds >= 5.0 && fds < max_fds, "fds {fds} of {max_fds}");
    // An argon2 password check ran (alice's login): some CPU was spent.
    let cpu = sample(&text, "process_cpu_seconds_total");
    assert!(cpu > 0.0 && cpu < 3600.0, "cpu {cpu}");
    let revision = env!("WHARF_REVISION");
    let build = format!(
        "wharf_build_info{{version=\"{}\",revision=\"{revision}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.lines().any(|l| l == build), "no {build:?} in\n{text}");
    if let Ok(out) = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        && out.status.success()
    {
        assert_eq!(revision, String::from_utf8_lossy(&out.stdout).trim());
    }
    // The requests above, counted.
    assert!(
        sample(
            &text,
            "wharf_http_requests_total{route=\"manifest\",method=\"PUT\",status=\"201\"}"
        ) >= 1.0
    );

    // OpenMetrics when asked for (as Prometheus 2 asks), with the same samples.
    let (ct, om) = scrape(
        metrics_addr,
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    );
    assert_eq!(
        ct,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    for line in [
        "# TYPE wharf_http_requests counter",
        "# TYPE wharf_build info",
        "# TYPE process_cpu_seconds counter",
        build.as_str(),
    ] {
        assert!(om.lines().any(|l| l == line), "no {line:?} in\n{om}");
    }
    let requests = |t: &str| -> Vec<String> {
        let mut v: Vec<String> = t
            .lines()
            .filter(|l| l.starts_with("wharf_http_requests_total{"))
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    assert_eq!(requests(&text), requests(&om));
    // Every OpenMetrics sample belongs to a family with a TYPE and a HELP.
    let families: Vec<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    for l in om.lines().filter(|l| !l.starts_with('#')) {
        let name = l.split(['{', ' ']).next().unwrap();
        assert!(
            families.iter().any(|f| name == *f
                || ["_total", "_bucket", "_sum", "_count", "_info", "_created"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(f))),
            "sample {name} has no family in\n{om}"
        );
    }
    assert_eq!(
        om.lines().filter(|l| l.starts_with("# TYPE ")).count(),
        om.lines().filter(|l| l.starts_with("# HELP ")).count()
    );
    srv.stop();
}

/// Reads an HTTP/1.1 response head from `r`: (status, content length).
fn read_head(r: &mut impl BufRead) -> (u16, u64) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut len = 0;
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap();
        }
    }
    (status, len)
}

/// GET /readyz on a new connection: the status, or None when the connection is refused.
fn readyz(addr: SocketAddr) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    line.split(' ').nth(1)?.parse().ok()
}

/// A keep-alive HTTP/1.1 GET /v2/ (no `Connection: close`): the response head, lowercased.
fn keepalive_head(addr: SocketAddr) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(c);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line.trim_end().is_empty() {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    head
}

#[test]
fn sigterm_answers_503_on_readyz_while_a_slow_download_finishes() {
    const DELAY: u64 = 3;
    const SIZE: usize = 48 << 20;
    let mut srv = AuthWharf::new(&format!(
        "[server]\nshutdown_delay_seconds = {DELAY}\nshutdown_grace_seconds = 60\n\
         write_stall_timeout_seconds = 60\n"
    ));
    srv.start();
    let http = srv.http();
    let data = pattern(42, SIZE);
    let digest = push_blob(&http, &[], "drain/app", &data);
    drop(data);
    assert_eq!(readyz(srv.addr), Some(200));
    assert!(!keepalive_head(srv.addr).contains("connection: close"));

    // A client that downloads the blob at about 6 MiB/s: some 8 s, longer than the delay.
    let received = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let addr = srv.addr;
    let pid = srv.pid().unwrap();
    std::thread::scope(|s| {
        let download = s.spawn(|| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            write!(
                c,
                "GET /v2/drain/app/blobs/{digest} HTTP/1.1\r\nHost: x\r\nX-Request-ID: e2e-slow\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut r = BufReader::with_capacity(64 << 10, c);
            let (status, len) = read_head(&mut r);
            assert_eq!((status, len), (200, SIZE as u64));
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 64 << 10];
            let mut got = 0u64;
            let started = Instant::now();
            while got < len {
                let n = r.read(&mut buf).expect("the download is not cut off");
                assert!(n > 0, "connection closed after {got} of {len} bytes");
                h.update(&buf[..n]);
                got += n as u64;
                received.store(got, Ordering::SeqCst);
                // Throttle to ~6 MiB/s.
                let due = Duration::from_secs_f64(got as f64 / (6.0 * 1048576.0));
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            done.store(true, Ordering::SeqCst);
            format!("sha256:{}", hex::encode(h.finalize()))
        });
        while received.load(Ordering::SeqCst) < 4 << 20 {
            assert!(!download.is_finished(), "the download ended early");
            std::thread::sleep(Duration::from_millis(10));
        }
        let signalled = Instant::now();
        signal(pid, "TERM");
        // Readiness: 503 from (almost) the moment the signal arrives, on new connections, for
        // the whole delay; then the port closes while the download still runs.
        let mut seen = Vec::new();
        let mut closed_at = None;
        let mut drain_head = None;
        while signalled.elapsed() < Duration::from_secs(20) {
            let st = readyz(addr);
            let t = signalled.elapsed();
            if st.is_none() {
                closed_at = Some(t);
                break;
            }
            seen.push((t, st));
            if st == Some(503) && drain_head.is_none() {
                // A keep-alive client is told to reconnect during the drain.
                drain_head = Some(keepalive_head(addr));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let drain_head = drain_head.unwrap_or_default();
        assert!(drain_head.starts_with("http/1.1 200"), "{drain_head}");
        assert!(drain_head.contains("connection: close"), "{drain_head}");
        let first_503 = seen.iter().find(|(_, s)| *s == Some(503)).map(|(t, _)| *t);
        let first_503 = first_503.unwrap_or_else(|| panic!("no 503 from /readyz: {seen:?}"));
        assert!(first_503 < Duration::from_secs(1), "{seen:?}");
        assert!(
            seen.iter()
                .filter(|(t, _)| *t >= first_503)
                .all(|(_, s)| *s == Some(503)),
            "readiness came back: {seen:?}"
        );
        assert!(
            seen.iter().filter(|(_, s)| *s == Some(503)).count() >= (DELAY as usize) * 5,
            "served 503 through the delay: {seen:?}"
        );
        let closed_at = closed_at.unwrap_or_else(|| panic!("the port never closed: {seen:?}"));
        assert!(
            closed_at >= Duration::from_secs(DELAY) - Duration::from_millis(200)
                && closed_at < Duration::from_secs(DELAY + 3),
            "port closed {closed_at:?} after SIGTERM (delay {DELAY} s)"
        );
        assert!(
            !done.load(Ordering::SeqCst),
            "the download should still be running when the port closes"
        );
        let got = download.join().unwrap();
        assert_eq!(got, digest, "the in-flight download completed intact");
        eprintln!(
            "[e2e] 503 from {first_503:?}, port closed at {closed_at:?}, download done at {:?}",
            signalled.elapsed()
        );
    });
    // The server exits on its own once the download is done (no second signal).
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(
            Instant::now() < deadline,
            "wharf did not exit after the drain:\n{}",
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = srv.log();
    // The text access log: the slow download's line, with every byte.
    let line = log
        .lines()
        .find(|l| l.contains("wharf::access") && l.contains("request_id=e2e-slow"))
        .unwrap_or_else(|| panic!("no access line for the download:\n{log}"));
    for field in [
        "method=GET".to_owned(),
        format!("path=/v2/drain/app/blobs/{digest}"),
        "repo=drain/app".to_owned(),
        "status=200".to_owned(),
        format!("bytes={SIZE}"),
        "client=127.0.0.1".to_owned(),
    ] {
        assert!(line.contains(&field), "{field} not in {line}");
    }
    assert!(!line.contains("incomplete"), "{line}");
    assert!(
        log.lines()
            .any(|l| l.contains("path=/readyz") && l.contains("status=503")),
        "{log}"
    );
    srv.stop();
}

/// The admission webhook's own metrics listener negotiates the same way (one shared function).
#[test]
fn admission_webhook_metrics_are_promtool_clean_too() {
    promtool();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[pss]\nlevel = \"restricted\"\n").unwrap();
    let metrics_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let log_path = dir.path().join("admission.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("admission")
        .arg("--policy")
        .arg(&policy)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--metrics-listen", &metrics_addr.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        if let Ok(r) = Http::new(metrics_addr).request(
            "GET",
            "/metrics",
            &[("Accept", "text/plain;version=0.0.4")],
            &[],
        ) && r.status == 200
        {
            assert_eq!(
                r.header("Content-Type"),
                Some("text/plain; version=0.0.4; charset=utf-8")
            );
            break r.text();
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "wharf admission exited ({st}):\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "no metrics listener");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (om_ct, om) = scrape(metrics_addr, "application/openmetrics-text");
    let _ = child.kill();
    let _ = child.wait();
    let (ok, out) = promtool_check(&text);
    assert!(
        ok && out.trim().is_empty(),
        "promtool check metrics:\n{out}\n--- metrics ---\n{text}"
    );
    // (The webhook's own families appear once a review has been answered: empty families are
    // not encoded.)
    for needle in [
        "# TYPE wharf_build_info gauge",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_start_time_seconds gauge",
    ] {
        assert!(text.contains(needle), "no {needle} in\n{text}");
    }
    assert_eq!(
        om_ct,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(
        om.ends_with("# EOF\n") && om.contains("# TYPE wharf_build info"),
        "{om}"
    );
}
