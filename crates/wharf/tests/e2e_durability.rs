//! End-to-end durability tests of the real `wharf` binary, speaking plain HTTP/1.1 over
//! `std::net::TcpStream`: chunked uploads resumed across a crash, graceful shutdown on SIGTERM,
//! and a kill -9 in the middle of concurrent big-blob and manifest pushes followed by a full
//! consistency check.
//!
//! `WHARF_E2E_REGISTRY=distribution cargo test -p wharf --release --test e2e_durability` runs the
//! same checks against CNCF Distribution.

mod support;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const MIB: u64 = 1 << 20;

fn tools_ok(test: &str) -> bool {
    have_tools(test, Kind::under_test().tools())
}

/// Parses a `Range: 0-N` upload-status header into the next offset (N+1); `0-0` on an empty
/// upload is ambiguous in the spec, callers pass what they expect.
fn range_end(r: &Response) -> u64 {
    let v = r.must_header("Range");
    let v = v.strip_prefix("bytes=").unwrap_or(v);
    let (a, b) = v
        .split_once('-')
        .unwrap_or_else(|| panic!("bad Range header {v:?}\n{}", r.dump()));
    assert_eq!(a, "0", "upload Range must start at 0\n{}", r.dump());
    b.parse::<u64>()
        .unwrap_or_else(|_| panic!("bad Range header {v:?}\n{}", r.dump()))
        + 1
}

fn patch_chunk(
    http: &Http,
    loc: &str,
    seed: u64,
    start: u64,
    len: u64,
    sent: Option<&AtomicU64>,
) -> std::io::Result<Response> {
    let cr = format!("{}-{}", start, start + len - 1);
    http.request_streaming(
        "PATCH",
        loc,
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Range", &cr),
        ],
        len,
        |off, buf| fill_pattern(seed, start + off, buf),
        sent,
    )
}

/// sha256 digest of `len` pattern bytes, computed without holding them.
fn pattern_digest(seed: u64, len: u64) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; MIB as usize];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(MIB) as usize;
        fill_pattern(seed, off, &mut buf[..n]);
        h.update(&buf[..n]);
        off += n as u64;
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

// -----------------------------------------------------------------------------------------------
// 5. Chunked upload resumed across a crash
// -----------------------------------------------------------------------------------------------

#[test]
fn chunked_upload_resumes_after_kill9_restart() {
    if !tools_ok("chunked_upload_resumes_after_kill9_restart") {
        return;
    }
    let mut srv = Server::start();
    let http = srv.http();
    let repo = "e2e/resume";
    let seed = 0x5eed;
    let total: u64 = 8 * MIB + 12_345;
    let half: u64 = total / 2 + 7;
    let data = pattern(seed, total as usize);
    let digest = sha256_digest(&data);

    let r = http
        .must("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], &[])
        .expect(202);
    let uuid = r.header("Docker-Upload-UUID").map(str::to_string);
    let loc = r.location();

    // A chunk that does not start at the current offset is refused with 416 and changes nothing.
    // (Distribution 2.8 ignores Content-Range and appends: a known spec deviation, not checked.)
    if srv.kind != Kind::Distribution {
        let bad = patch_chunk(&http, &loc, seed, 100, 100, None).unwrap();
        assert_eq!(
            bad.status,
            416,
            "out-of-order chunk must be refused with 416\n{}",
            bad.dump()
        );
    }

    // First half.
    let r = patch_chunk(&http, &loc, seed, 0, half, None)
        .unwrap()
        .expect(202);
    assert_eq!(
        range_end(&r),
        half,
        "Range after the first chunk\n{}",
        r.dump()
    );
    let loc = r.location();

    // Crash and restart on the same data dir.
    srv.kill9();
    srv.restart();
    let http = srv.http();

    // The upload is still there, at the same offset.
    let st = http.must("GET", &loc, &[], &[]);
    assert_eq!(st.status, 204, "upload status after restart\n{}", st.dump());
    assert_eq!(
        range_end(&st),
        half,
        "upload offset after restart\n{}",
        st.dump()
    );
    if let Some(u) = &uuid {
        assert_eq!(
            st.header("Docker-Upload-UUID"),
            Some(u.as_str()),
            "{}",
            st.dump()
        );
    }
    let loc = st.header("Location").map(path_of).unwrap_or(loc);

    // Second half, then close with the digest.
    let r = patch_chunk(&http, &loc, seed, half, total - half, None)
        .unwrap()
        .expect(202);
    assert_eq!(
        range_end(&r),
        total,
        "Range after the last chunk\n{}",
        r.dump()
    );
    let loc = r.location();
    let r = http
        .must(
            "PUT",
            &with_query(&loc, &format!("digest={digest}")),
            &[],
            &[],
        )
        .expect(201);
    assert_eq!(
        r.header("Docker-Content-Digest"),
        Some(digest.as_str()),
        "{}",
        r.dump()
    );
    assert_eq!(
        path_of(r.must_header("Location")),
        format!("/v2/{repo}/blobs/{digest}"),
        "{}",
        r.dump()
    );

    // The blob is served whole, and by range.
    let head = http
        .must("HEAD", &format!("/v2/{repo}/blobs/{digest}"), &[], &[])
        .expect(200);
    assert_eq!(
        head.header("Content-Length"),
        Some(total.to_string().as_str()),
        "{}",
        head.dump()
    );
    assert_eq!(
        head.header("Docker-Content-Digest"),
        Some(digest.as_str()),
        "{}",
        head.dump()
    );
    let got = http.get_blob(repo, &digest).unwrap().expect(200);
    assert!(
        got.body == data,
        "resumed blob content differs ({} bytes back)",
        got.body.len()
    );
    let part = http
        .must(
            "GET",
            &format!("/v2/{repo}/blobs/{digest}"),
            &[("Range", "bytes=1000-1999")],
            &[],
        )
        .expect(206);
    assert!(
        part.body == data[1000..2000],
        "ranged GET content differs\n{}",
        part.dump()
    );

    // The finished upload session is gone.
    let st = http.must("GET", &loc, &[], &[]);
    assert_eq!(
        st.status,
        404,
        "a completed upload must not stay open\n{}",
        st.dump()
    );
}

// -----------------------------------------------------------------------------------------------
// Graceful shutdown
// -----------------------------------------------------------------------------------------------

#[test]
fn sigterm_finishes_in_flight_requests_and_keeps_data() {
    if !tools_ok("sigterm_finishes_in_flight_requests_and_keeps_data") {
        return;
    }
    let mut srv = Server::start();
    let http = srv.http();
    let repo = "e2e/term";

    // Committed state before the signal: a blob, an image, and an open upload with one chunk.
    let layer = pattern(7, 300_000);
    let layer_d = http.must_push_blob(repo, &layer);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_d = http.must_push_blob(repo, config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_d, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_d, "size": layer.len()}]
    }))
    .unwrap();
    let manifest_d = sha256_digest(&manifest);
    http.push_manifest(repo, "v1", OCI_MANIFEST, &manifest)
        .unwrap()
        .expect(201);
    let up = http
        .must("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], &[])
        .expect(202);
    let total = 3 * MIB;
    let r = patch_chunk(&http, &up.location(), 9, 0, MIB, None)
        .unwrap()
        .expect(202);
    let up_loc = r.location();

    // An upload in flight when SIGTERM arrives: body sent slowly, half before the signal.
    let slow_data = pattern(11, 4 * MIB as usize);
    let slow_d = sha256_digest(&slow_data);
    let post = http
        .must("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], &[])
        .expect(202);
    let slow_path = with_query(&post.location(), &format!("digest={slow_d}"));
    let sent = AtomicU64::new(0);
    let signalled = AtomicBool::new(false);
    let pid = srv.pid();
    let (slow_result, status) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            http.request_streaming(
                "PUT",
                &slow_path,
                &[("Content-Type", "application/octet-stream")],
                slow_data.len() as u64,
                |off, buf| {
                    if off >= 2 * MIB {
                        // Wait for the signal before sending the second half.
                        let t = Instant::now();
                        while !signalled.load(Ordering::SeqCst)
                            && t.elapsed() < Duration::from_secs(10)
                        {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    buf.copy_from_slice(&slow_data[off as usize..off as usize + buf.len()]);
                },
                Some(&sent),
            )
        });
        let t = Instant::now();
        while sent.load(Ordering::SeqCst) < 2 * MIB && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        let started = Instant::now();
        signal(pid, "TERM");
        signalled.store(true, Ordering::SeqCst);
        let r = h.join().unwrap();
        let status = srv.terminate(Duration::from_secs(15));
        eprintln!(
            "[e2e] server exited {:?} {:.2}s after SIGTERM",
            status,
            started.elapsed().as_secs_f64()
        );
        (r, status)
    });

    let st = status.unwrap_or_else(|| panic!("{:?} did not exit within 15 s of SIGTERM", srv.kind));
    if srv.kind == Kind::Wharf {
        assert!(
            st.success(),
            "wharf should exit 0 after SIGTERM, got {st}\n{}",
            tail_log(&srv)
        );
    }
    let r = slow_result.unwrap_or_else(|e| panic!("in-flight upload cut off by SIGTERM: {e}"));
    assert_eq!(
        r.status,
        201,
        "in-flight upload during graceful shutdown\n{}",
        r.dump()
    );

    srv.restart();
    let http = srv.http();
    let m = http.get_manifest(repo, "v1").unwrap().expect(200);
    assert!(
        m.body == manifest,
        "manifest changed across restart\n{}",
        m.dump()
    );
    assert_eq!(m.header("Docker-Content-Digest"), Some(manifest_d.as_str()));
    let (r, n, d) = http.get_blob_hashed(repo, &layer_d).unwrap();
    assert_eq!((r.status, n, d), (200, layer.len() as u64, layer_d.clone()));
    let (r, n, d) = http.get_blob_hashed(repo, &slow_d).unwrap();
    assert_eq!(
        (r.status, n, d),
        (200, slow_data.len() as u64, slow_d.clone()),
        "upload finished during shutdown lost"
    );

    // The open upload continues where it was; the last chunk rides on the closing PUT.
    let st = http.must("GET", &up_loc, &[], &[]);
    assert_eq!(
        st.status,
        204,
        "open upload after graceful restart\n{}",
        st.dump()
    );
    assert_eq!(range_end(&st), MIB, "{}", st.dump());
    let loc = st.header("Location").map(path_of).unwrap_or(up_loc);
    let r = patch_chunk(&http, &loc, 9, MIB, MIB, None)
        .unwrap()
        .expect(202);
    let full_d = pattern_digest(9, total);
    let rest = {
        let mut v = vec![0u8; MIB as usize];
        fill_pattern(9, 2 * MIB, &mut v);
        v
    };
    let r = http
        .must(
            "PUT",
            &with_query(&r.location(), &format!("digest={full_d}")),
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", &format!("{}-{}", 2 * MIB, 3 * MIB - 1)),
            ],
            &rest,
        )
        .expect(201);
    assert_eq!(
        r.header("Docker-Content-Digest"),
        Some(full_d.as_str()),
        "{}",
        r.dump()
    );
    let (r, n, d) = http.get_blob_hashed(repo, &full_d).unwrap();
    assert_eq!((r.status, n, d), (200, total, full_d));
}

fn tail_log(srv: &Server) -> String {
    let log = srv.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

// -----------------------------------------------------------------------------------------------
// 6. kill -9 during concurrent pushes, then a consistency check
// -----------------------------------------------------------------------------------------------

/// An image whose manifest PUT was acknowledged with 201.
#[derive(Clone, Debug)]
struct Acked {
    repo: String,
    tag: String,
    digest: String,
    body: Vec<u8>,
}

/// What a manifest writer did: acknowledged images, and for its moving tag the digests it
/// last saw acknowledged and attempted.
#[derive(Default, Debug)]
struct WriterLog {
    acked: Vec<Acked>,
    moving_acked: Option<String>,
    moving_attempted: Vec<String>,
    unexpected: Vec<String>,
}

const WRITERS: usize = 4;
const SHARED_SEED: u64 = 0xC0FFEE;
const SHARED_LEN: usize = 100 * 1024;

/// One manifest writer: unique layer + config + manifest per iteration, pushed to a unique tag
/// and to a moving tag, until `stop`. Every 201 is recorded.
fn manifest_writer(
    http: &Http,
    round: usize,
    w: usize,
    stop: &AtomicBool,
    killed: &AtomicBool,
    log: &Mutex<WriterLog>,
) {
    let repo = format!("crash/w{w}");
    let shared = pattern(SHARED_SEED, SHARED_LEN);
    let shared_d = sha256_digest(&shared);
    let fail = |what: String| {
        if !killed.load(Ordering::SeqCst) {
            log.lock().unwrap().unexpected.push(what);
        }
    };
    for i in 0..5000usize {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let seed = ((round as u64) << 40) | ((w as u64) << 32) | i as u64;
        let layer = pattern(seed, 1024 + (i * 997) % 31_000);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Labels": {"round": round.to_string(), "writer": w.to_string(), "i": i.to_string()}},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&layer), sha256_digest(&shared)]}
        }))
        .unwrap();
        let mut blobs = Vec::new();
        // The shared layer: pushed by every writer again and again (concurrent commits of one
        // digest), otherwise checked with HEAD as clients do.
        let need_shared = i % 8 == 0
            || http
                .head(&format!("/v2/{repo}/blobs/{shared_d}"))
                .map(|r| r.status != 200)
                .unwrap_or(true);
        let items: Vec<&[u8]> = if need_shared {
            vec![&layer, &config, &shared]
        } else {
            vec![&layer, &config]
        };
        for b in items {
            match http.push_blob(&repo, b) {
                Ok(r) if r.status == 201 => {}
                Ok(r) => return fail(format!("blob push answered {}:\n{}", r.status, r.dump())),
                Err(_) => return fail("blob push I/O error before the kill".to_string()),
            }
        }
        blobs.push((sha256_digest(&config), config.len() as u64));
        blobs.push((sha256_digest(&layer), layer.len() as u64));
        blobs.push((shared_d.clone(), SHARED_LEN as u64));
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": blobs[0].0, "size": blobs[0].1},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": blobs[1].0, "size": blobs[1].1},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": blobs[2].0, "size": blobs[2].1}
            ]
        }))
        .unwrap();
        let digest = sha256_digest(&manifest);
        let tag = format!("r{round}-{i}");
        match http.push_manifest(&repo, &tag, OCI_MANIFEST, &manifest) {
            Ok(r) if r.status == 201 => {
                if let Some(d) = r.header("Docker-Content-Digest")
                    && d != digest
                {
                    fail(format!("manifest PUT returned digest {d}, want {digest}"));
                }
                log.lock().unwrap().acked.push(Acked {
                    repo: repo.clone(),
                    tag,
                    digest: digest.clone(),
                    body: manifest.clone(),
                });
            }
            Ok(r) => return fail(format!("manifest PUT answered {}:\n{}", r.status, r.dump())),
            Err(_) => return fail("manifest PUT I/O error before the kill".to_string()),
        }
        log.lock().unwrap().moving_attempted.push(digest.clone());
        match http.push_manifest(&repo, "latest", OCI_MANIFEST, &manifest) {
            Ok(r) if r.status == 201 => log.lock().unwrap().moving_acked = Some(digest),
            Ok(r) => {
                return fail(format!(
                    "moving-tag PUT answered {}:\n{}",
                    r.status,
                    r.dump()
                ));
            }
            Err(_) => return fail("moving-tag PUT I/O error before the kill".to_string()),
        }
    }
}

/// State of the big chunked upload when the server died.
#[derive(Debug, Default, Clone)]
struct BigUpload {
    location: Option<String>,
    acked: u64,
    error: Option<String>,
}

/// Verifies one manifest and all its blobs through the API.
fn check_image(
    http: &Http,
    repo: &str,
    reference: &str,
    want_body: Option<&[u8]>,
    problems: &mut Vec<String>,
) {
    let m = match http.get_manifest(repo, reference) {
        Ok(m) => m,
        Err(e) => return problems.push(format!("GET {repo}:{reference}: {e}")),
    };
    if m.status != 200 {
        return problems.push(format!(
            "{repo}:{reference} does not resolve:\n{}",
            m.dump()
        ));
    }
    if let Some(want) = want_body
        && m.body != want
    {
        return problems.push(format!(
            "{repo}:{reference}: manifest bytes differ from the acknowledged push"
        ));
    }
    let digest = sha256_digest(&m.body);
    if m.header("Docker-Content-Digest")
        .is_some_and(|d| d != digest)
    {
        problems.push(format!(
            "{repo}:{reference}: Docker-Content-Digest != sha256(body)\n{}",
            m.dump()
        ));
    }
    let v: serde_json::Value = match serde_json::from_slice(&m.body) {
        Ok(v) => v,
        Err(e) => {
            return problems.push(format!(
                "{repo}:{reference}: manifest is not JSON ({e}): {}",
                m.text()
            ));
        }
    };
    let mut descs = vec![v["config"].clone()];
    descs.extend(v["layers"].as_array().cloned().unwrap_or_default());
    for d in descs {
        let (bd, size) = (
            d["digest"].as_str().unwrap_or_default().to_string(),
            d["size"].as_u64().unwrap_or(0),
        );
        match http.get_blob_hashed(repo, &bd) {
            Ok((r, n, h)) if r.status == 200 && n == size && h == bd => {}
            Ok((r, n, h)) => problems.push(format!(
                "{repo}:{reference} -> blob {bd}: status {}, {n} bytes (want {size}), hash {h}\n{}",
                r.status,
                r.dump()
            )),
            Err(e) => problems.push(format!("{repo}:{reference} -> blob {bd}: {e}")),
        }
    }
}

/// Lets the manifest writers get going (some acknowledged pushes, or 3 s) before the big uploads
/// start eating the CPU, so that every round has manifests to check.
fn warm_up(logs: &[Mutex<WriterLog>], t0: Instant) {
    while t0.elapsed() < Duration::from_secs(3) {
        let n: usize = logs.iter().map(|l| l.lock().unwrap().acked.len()).sum();
        if n >= 12 * WRITERS {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn kill9_during_concurrent_pushes_leaves_consistent_state() {
    if !tools_ok("kill9_during_concurrent_pushes_leaves_consistent_state") {
        return;
    }
    let mut srv = Server::start();
    let big_repo = "crash/big";
    let big_size: u64 = 200 * MIB;
    let mut all_acked: Vec<Acked> = Vec::new();
    let mut problems: Vec<String> = Vec::new();

    for (round, kill_mib) in [80u64, 125, 6].into_iter().enumerate() {
        let http = srv.http();
        let stop = AtomicBool::new(false);
        let killed = AtomicBool::new(false);
        let big_sent = AtomicU64::new(0);
        let mono_sent = AtomicU64::new(0);
        let logs: Vec<Mutex<WriterLog>> = (0..WRITERS)
            .map(|_| Mutex::new(WriterLog::default()))
            .collect();
        let big = Mutex::new(BigUpload::default());
        let big_seed = 0xB16 + round as u64;
        let mono_seed = 0x3030 + round as u64;
        let mono_size: u64 = 200 * MIB;
        let mono_d = pattern_digest(mono_seed, mono_size);
        // Kill somewhere in the middle of the big uploads, at a different point each round.
        let kill_at = kill_mib * MIB;
        let pid = srv.pid();
        let t0 = Instant::now();

        std::thread::scope(|s| {
            // A 200 MiB chunked upload, 32 MiB per PATCH.
            s.spawn(|| {
                warm_up(&logs, t0);
                let r =
                    match http.request("POST", &format!("/v2/{big_repo}/blobs/uploads/"), &[], &[])
                    {
                        Ok(r) if r.status == 202 => r,
                        other => {
                            big.lock().unwrap().error = Some(format!("POST: {other:?}"));
                            return;
                        }
                    };
                big.lock().unwrap().location = Some(r.location());
                let mut off = 0;
                while off < big_size && !stop.load(Ordering::SeqCst) {
                    let loc = big.lock().unwrap().location.clone().unwrap();
                    let n = (big_size - off).min(32 * MIB);
                    match patch_chunk(&http, &loc, big_seed, off, n, Some(&big_sent)) {
                        Ok(r) if r.status == 202 => {
                            off += n;
                            let mut b = big.lock().unwrap();
                            b.acked = off;
                            b.location = Some(r.location());
                        }
                        Ok(r) => {
                            if !killed.load(Ordering::SeqCst) {
                                big.lock().unwrap().error = Some(r.dump());
                            }
                            return;
                        }
                        Err(_) => return,
                    }
                }
            });
            // A 200 MiB monolithic upload (POST, then PUT ?digest= with the whole body).
            s.spawn(|| {
                warm_up(&logs, t0);
                if let Ok(r) =
                    http.request("POST", &format!("/v2/{big_repo}/blobs/uploads/"), &[], &[])
                    && r.status == 202
                {
                    let path = with_query(&r.location(), &format!("digest={mono_d}"));
                    let _ = http.request_streaming(
                        "PUT",
                        &path,
                        &[("Content-Type", "application/octet-stream")],
                        mono_size,
                        |off, buf| fill_pattern(mono_seed, off, buf),
                        Some(&mono_sent),
                    );
                }
            });
            for (w, log) in logs.iter().enumerate() {
                let (http, stop, killed) = (&http, &stop, &killed);
                s.spawn(move || manifest_writer(http, round, w, stop, killed, log));
            }
            // The killer.
            while big_sent.load(Ordering::SeqCst) < kill_at
                && t0.elapsed() < Duration::from_secs(60)
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            killed.store(true, Ordering::SeqCst);
            signal(pid, "KILL");
            stop.store(true, Ordering::SeqCst);
        });
        srv.kill9(); // reap
        let big = big.into_inner().unwrap();
        let acked_now: usize = logs.iter().map(|l| l.lock().unwrap().acked.len()).sum();
        eprintln!(
            "[e2e] round {round}: killed after {:.2}s; chunked upload sent {} MiB (acked {} MiB), monolithic sent {} MiB, {acked_now} manifests acked",
            t0.elapsed().as_secs_f64(),
            big_sent.load(Ordering::SeqCst) / MIB,
            big.acked / MIB,
            mono_sent.load(Ordering::SeqCst) / MIB,
        );
        if let Some(e) = &big.error {
            problems.push(format!(
                "round {round}: chunked upload failed before the kill: {e}"
            ));
        }
        assert!(
            acked_now >= WRITERS,
            "round {round}: too few manifests pushed before the kill to test anything"
        );

        srv.restart();
        let http = srv.http();

        // 1. Every acknowledged manifest, this round and earlier rounds, is intact with its blobs.
        let mut moving: Vec<(String, Option<String>, Vec<String>)> = Vec::new();
        for (w, log) in logs.into_iter().enumerate() {
            let log = log.into_inner().unwrap();
            for u in &log.unexpected {
                problems.push(format!("round {round} writer {w}: {u}"));
            }
            all_acked.extend(log.acked);
            moving.push((
                format!("crash/w{w}"),
                log.moving_acked,
                log.moving_attempted,
            ));
        }
        for a in &all_acked {
            check_image(&http, &a.repo, &a.tag, Some(&a.body), &mut problems);
            let by_digest = http
                .get_manifest(&a.repo, &a.digest)
                .map(|r| r.status)
                .unwrap_or(0);
            if by_digest != 200 {
                problems.push(format!(
                    "{}@{}: acknowledged manifest not served by digest ({by_digest})",
                    a.repo, a.digest
                ));
            }
        }

        // 2. Every listed tag resolves to a complete image (in-flight pushes included).
        for w in 0..WRITERS {
            let repo = format!("crash/w{w}");
            let r = http.get(&format!("/v2/{repo}/tags/list?n=100000")).unwrap();
            if r.status != 200 {
                problems.push(format!("tags/list of {repo}:\n{}", r.dump()));
                continue;
            }
            let tags: BTreeSet<String> = r.json()["tags"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect();
            let acked_tags: BTreeSet<String> = all_acked
                .iter()
                .filter(|a| a.repo == repo)
                .map(|a| a.tag.clone())
                .collect();
            for t in acked_tags.difference(&tags) {
                problems.push(format!(
                    "{repo}: acknowledged tag {t} missing from tags/list"
                ));
            }
            for t in tags.difference(&acked_tags) {
                if t == "latest" {
                    continue;
                }
                // Listed but never acknowledged: an in-flight push. It must be complete or absent.
                let status = http.get_manifest(&repo, t).map(|r| r.status).unwrap_or(0);
                if status != 200 {
                    problems.push(format!("{repo}: tags/list lists {t} (not acknowledged, in flight at the crash) but it does not resolve ({status})"));
                    continue;
                }
                check_image(&http, &repo, t, None, &mut problems);
            }
        }

        // 3. The moving tag points at the last acknowledged push or at the one in flight.
        for (repo, acked, attempted) in &moving {
            let Some(acked) = acked else { continue };
            let pos = attempted.iter().position(|d| d == acked).unwrap();
            let allowed: Vec<&String> = attempted[pos..].iter().take(2).collect();
            match http.get_manifest(repo, "latest") {
                Ok(r) if r.status == 200 && allowed.contains(&&sha256_digest(&r.body)) => {
                    check_image(&http, repo, "latest", None, &mut problems);
                }
                Ok(r) => problems.push(format!(
                    "{repo}:latest should be {acked} (or the next push {:?}), got status {} digest {}",
                    allowed.get(1),
                    r.status,
                    sha256_digest(&r.body)
                )),
                Err(e) => problems.push(format!("{repo}:latest: {e}")),
            }
        }

        // 4. The killed monolithic upload never completed: its digest must not be served, or if
        //    it is, with the right content.
        match http.head(&format!("/v2/{big_repo}/blobs/{mono_d}")) {
            Ok(r) if r.status == 404 => {}
            Ok(r) if r.status == 200 => {
                let (g, n, h) = http.get_blob_hashed(big_repo, &mono_d).unwrap();
                if (g.status, n, h.as_str()) != (200, mono_size, mono_d.as_str()) {
                    problems.push(format!(
                        "round {round}: interrupted monolithic blob is served with wrong content"
                    ));
                }
            }
            Ok(r) => problems.push(format!(
                "HEAD of interrupted monolithic blob:\n{}",
                r.dump()
            )),
            Err(e) => problems.push(format!("HEAD of interrupted monolithic blob: {e}")),
        }

        // 5. The chunked upload resumes from at least the acknowledged offset and completes.
        if let Some(loc) = &big.location {
            let big_d = pattern_digest(big_seed, big_size);
            let st = http.must("GET", loc, &[], &[]);
            if st.status != 204 {
                problems.push(format!(
                    "round {round}: chunked upload with {} MiB acknowledged is gone after the crash:\n{}",
                    big.acked / MIB,
                    st.dump()
                ));
            } else {
                let off = range_end(&st);
                if off < big.acked {
                    problems.push(format!(
                        "round {round}: upload offset went back from {} to {off} after the crash",
                        big.acked
                    ));
                }
                let mut loc = st.header("Location").map(path_of).unwrap_or(loc.clone());
                let mut off = off;
                while off < big_size {
                    let n = (big_size - off).min(64 * MIB);
                    let r = patch_chunk(&http, &loc, big_seed, off, n, None).unwrap();
                    if r.status != 202 {
                        problems.push(format!(
                            "round {round}: resuming the chunked upload at {off}:\n{}",
                            r.dump()
                        ));
                        break;
                    }
                    loc = r.location();
                    off += n;
                }
                if off >= big_size {
                    let r = http.must(
                        "PUT",
                        &with_query(&loc, &format!("digest={big_d}")),
                        &[],
                        &[],
                    );
                    if r.status != 201 {
                        problems.push(format!(
                            "round {round}: closing the resumed upload:\n{}",
                            r.dump()
                        ));
                    } else {
                        let (g, n, h) = http.get_blob_hashed(big_repo, &big_d).unwrap();
                        if (g.status, n, h.as_str()) != (200, big_size, big_d.as_str()) {
                            problems.push(format!(
                                "round {round}: resumed big blob served as status {} / {n} bytes / {h}",
                                g.status
                            ));
                        }
                    }
                }
            }
        }
        eprintln!(
            "[e2e] round {round}: checked {} acknowledged images in {:.2}s total",
            all_acked.len(),
            t0.elapsed().as_secs_f64()
        );
    }

    // After three crashes the registry still takes and serves new pushes.
    let http = srv.http();
    let layer = pattern(0xAF7E2, 40_000);
    let layer_d = http.must_push_blob("crash/after", &layer);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_d = http.must_push_blob("crash/after", config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_d, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_d, "size": layer.len()}]
    }))
    .unwrap();
    match http.push_manifest("crash/after", "ok", OCI_MANIFEST, &manifest) {
        Ok(r) if r.status == 201 => {
            check_image(&http, "crash/after", "ok", Some(&manifest), &mut problems)
        }
        Ok(r) => problems.push(format!("push after the crashes:\n{}", r.dump())),
        Err(e) => problems.push(format!("push after the crashes: {e}")),
    }

    if !problems.is_empty() && srv.kind == Kind::Distribution {
        // The baseline is not crash-safe: it lists tag directories cut mid-write, truncates a
        // manifest's revision link when the same manifest is re-pushed and the write is killed
        // (HTTP 500 "invalid checksum digest format" afterwards), and cannot resume an upload
        // whose PATCH was interrupted. Report, don't fail: this mode only validates the harness.
        eprintln!(
            "[e2e] Distribution is not crash-consistent ({} problems, expected):\n{}",
            problems.len(),
            problems
                .iter()
                .map(|p| p.lines().next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        );
    } else if !problems.is_empty() {
        panic!(
            "{} consistency problem(s) after kill -9 ({:?}); first 20:\n{}",
            problems.len(),
            srv.kind,
            problems
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
    }
}
