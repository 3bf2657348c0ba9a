//! End to end: `cache warm` reports real progress. `POST /api/v1/cache/warm` with `Accept:
//! application/x-ndjson` streams the bytes done of a multi-blob image as they arrive from a slow
//! upstream (CNCF Distribution behind the fault proxy), never going back, and ends with the
//! same result as the plain JSON answer; refusals stay plain errors. The CLI draws a bar from it
//! on a terminal and prints what it always printed elsewhere.

mod support;

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::fault::{Fault, FaultProxy, PathKind};
use support::*;

const HOST: &str = "upstream.test";
const ADMIN: (&str, &str) = ("cache-admin", "cache-admin-password");
/// Upstream blob rate: the warm-ups below take about a second.
const RATE: u64 = 8 * 1024 * 1024;

/// A caching Wharf whose one upstream is `url`, with an administrator.
fn caching_wharf(url: &str) -> AuthWharf {
    let cfg = format!(
        "[auth]\nanonymous_pull = [\"upstream.test/*\"]\n\n\
         [[cache.upstream]]\nhost = \"{HOST}\"\nurl = \"{url}\"\n"
    );
    let mut w = AuthWharf::new(&cfg);
    w.must_cli(
        &["user", "add", ADMIN.0, "--admin"],
        &format!("{}\n", ADMIN.1),
    );
    w.start();
    w
}

/// Pushes an image of a config and three layers (3, 2 and 1 MiB) to the upstream; returns its
/// manifest digest and the sum of its blob sizes.
fn push_big_image(http: &Http, repo: &str, tag: &str, seed: u64) -> (String, u64) {
    let mut layers = Vec::new();
    let mut total = 0u64;
    for (i, mib) in [3usize, 2, 1].into_iter().enumerate() {
        let data = pattern(seed * 10 + i as u64, mib << 20);
        total += data.len() as u64;
        let d = http.must_push_blob(repo, &data);
        layers.push(
            serde_json::json!({"mediaType": OCI_LAYER_GZIP, "digest": d, "size": data.len()}),
        );
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Labels": {"seed": seed.to_string()}}
    }))
    .unwrap();
    total += config.len() as u64;
    let config_d = http.must_push_blob(repo, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_d, "size": config.len()},
        "layers": layers
    }))
    .unwrap();
    http.push_manifest(repo, tag, OCI_MANIFEST, &manifest)
        .unwrap()
        .expect(201);
    (sha256_digest(&manifest), total)
}

/// `POST /api/v1/cache/warm` with curl (which decodes the chunked answer as it comes), the
/// lines of the answer with the time each arrived, and the content type.
fn warm_ndjson(w: &AuthWharf, image: &str) -> (Vec<(Duration, Value)>, String) {
    let t0 = Instant::now();
    let mut child = Command::new("curl")
        .args(["-sS", "-N", "-D", "/dev/stderr", "-X", "POST"])
        .args(["-u", &format!("{}:{}", ADMIN.0, ADMIN.1)])
        .args(["-H", "Accept: application/x-ndjson"])
        .args(["-H", "Content-Type: application/json"])
        .args([
            "--data-binary",
            &serde_json::json!({"images": [image]}).to_string(),
        ])
        .arg(format!("http://{}/api/v1/cache/warm", w.addr))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl");
    let mut lines = Vec::new();
    for l in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let l = l.unwrap();
        let v: Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
        lines.push((t0.elapsed(), v));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let head = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let ctype = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type:"))
        .unwrap_or("")
        .trim()
        .to_owned();
    (lines, ctype)
}

/// The plain JSON answer of `POST /api/v1/cache/warm`.
fn warm_plain(w: &AuthWharf, image: &str) -> Value {
    let auth = basic(ADMIN.0, ADMIN.1);
    let body = serde_json::json!({"images": [image]}).to_string();
    let r = w
        .http()
        .request(
            "POST",
            "/api/v1/cache/warm",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
        .unwrap()
        .expect(200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.json()
}

/// Checks the progress lines before the last: each names the image and a blob; `done` never
/// decreases, `total` is the image's blob bytes, the last progress has `done == total`. Returns
/// the number of progress lines and the result line.
fn check_progress(lines: &[(Duration, Value)], image: &str, total: u64) -> (usize, Value) {
    let (last, progress) = lines.split_last().expect("no lines");
    let mut done = 0;
    for (_, p) in progress {
        assert_eq!(p["image"], image, "{p}");
        assert!(p["blob"].as_str().unwrap().starts_with("sha256:"), "{p}");
        assert_eq!(p["total"].as_u64(), Some(total), "{p}");
        let d = p["done"].as_u64().unwrap();
        assert!(d >= done && d <= total, "done went from {done} to {d}");
        done = d;
    }
    assert_eq!(done, total, "the last progress line is the whole image");
    (progress.len(), last.1.clone())
}

#[test]
fn warm_streams_monotonic_progress_and_the_plain_result() {
    // Installed by scripts/install-test-deps.sh: missing, the test fails.
    assert!(have_tools(
        "warm_streams_monotonic_progress_and_the_plain_result",
        &["docker-registry", "curl", "python3"],
    ));
    let up = Server::start_kind(Kind::Distribution);
    let (digest, total) = push_big_image(&up.http(), "team/big", "v1", 1);
    let (digest2, _) = push_big_image(&up.http(), "team/big", "v2", 2);
    let proxy = FaultProxy::start(up.addr);
    proxy.set_for(
        PathKind::Blob,
        Fault::SlowBody {
            bytes_per_sec: RATE,
        },
    );
    let url = format!("http://{}", proxy.addr());
    let a = caching_wharf(&url);
    let b = caching_wharf(&url);
    let image = format!("{HOST}/team/big:v1");

    // Streamed: progress while the blobs arrive, then the result.
    let (lines, ctype) = warm_ndjson(&a, &image);
    assert_eq!(ctype, "application/x-ndjson");
    let (n, last) = check_progress(&lines, &image, total);
    assert!(n >= 5, "{n} progress lines for a warm-up of about a second");
    let first = lines[0].0;
    let end = lines.last().unwrap().0;
    assert!(
        end - first >= Duration::from_millis(300),
        "the progress came as the bytes did, not all at the end: first line at {first:?}, result at {end:?}"
    );
    // The same result as the plain answer (of another cache, from the same cold start).
    let plain = warm_plain(&b, &image);
    assert_eq!(last, serde_json::json!({ "result": plain }));
    assert_eq!(plain[0]["digest"], digest);
    assert_eq!(plain[0]["blobs"], 4);
    assert_eq!(plain[0]["bytes_fetched"].as_u64(), Some(total));

    // Warm again: everything is cached, the progress still covers the whole image, nothing
    // is fetched, and the result is again the plain answer's.
    let (lines, _) = warm_ndjson(&a, &image);
    let (n, last) = check_progress(&lines, &image, total);
    assert!(n >= 1);
    let plain = warm_plain(&b, &image);
    assert_eq!(plain[0]["bytes_fetched"], 0);
    assert_eq!(last, serde_json::json!({ "result": plain }));

    // Refusals are plain errors, streamed or not: a wrong login, an image of no upstream.
    let body = serde_json::json!({"images": ["ghcr.io/x/y:1"]}).to_string();
    let streamed_as = |password: &str| {
        a.http()
            .request(
                "POST",
                "/api/v1/cache/warm",
                &[
                    ("Accept", "application/x-ndjson"),
                    ("Authorization", &basic(ADMIN.0, password)),
                    ("Content-Type", "application/json"),
                ],
                body.as_bytes(),
            )
            .unwrap()
    };
    let r = streamed_as("wrong-password");
    assert_eq!(r.status, 401, "{}", r.dump());
    let r = streamed_as(ADMIN.1);
    r.expect_error(400, "not from an upstream registry of this cache");

    // The CLI off a terminal: the plain answer, printed as always (the login from standard
    // input here).
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["cache", "warm", &image, "--server", &a.addr.to_string()])
        .args(["--as", ADMIN.0, "--as-password-stdin"])
        .env_remove("WHARF_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut i = child.stdin.take().unwrap();
        i.write_all(format!("{}\n", ADMIN.1).as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{image} -> {digest} (1 manifests, 4 blobs, 0 B fetched)\n")
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // On a terminal: a bar of the bytes done, then the same line.
    let image2 = format!("{HOST}/team/big:v2");
    let server = a.addr.to_string();
    let (shown, code) = wharf_on_terminal(
        &[
            "cache", "warm", &image2, "--server", &server, "--as", ADMIN.0,
        ],
        &[("WHARF_PASSWORD", ADMIN.1)],
    );
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains(&format!("warming {image2} [")), "{shown}");
    assert!(shown.contains("/6.00 MiB"), "no bytes done/total: {shown}");
    assert!(
        shown.contains(&format!(
            "{image2} -> {digest2} (1 manifests, 4 blobs, 6.0 MiB fetched)"
        )),
        "{shown}"
    );
    // --quiet: no bar.
    let (shown, code) = wharf_on_terminal(
        &[
            "cache", "warm", &image2, "--server", &server, "--as", ADMIN.0, "--quiet",
        ],
        &[("WHARF_PASSWORD", ADMIN.1)],
    );
    assert_eq!(code, 0, "{shown}");
    assert!(!shown.contains("warming"), "{shown}");
    assert!(shown.contains(&format!("{image2} -> {digest2}")), "{shown}");
}
