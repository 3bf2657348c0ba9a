//! End-to-end tests of garbage collection (docs/gc.md): collections racing concurrent pushes that
//! share, re-use and mount layers (a lost blob fails the test), a kill -9 in the middle of a big
//! collection, dry runs, upload expiry, storage use, and the `wharf gc` command.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use support::*;

/// Runs a collection through the API and returns its report.
fn gc(http: &Http, body: &str) -> Value {
    let r = http.must(
        "POST",
        "/api/v1/gc",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "POST /api/v1/gc {body}\n{}", r.dump());
    r.json()
}

fn n(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing in {v}"))
}

/// The blob files in a data dir, as digests.
fn blob_files(data: &Path) -> HashSet<String> {
    let mut out = HashSet::new();
    let root = data.join("blobs/sha256");
    let Ok(shards) = std::fs::read_dir(&root) else {
        return out;
    };
    for s in shards.flatten() {
        for f in std::fs::read_dir(s.path()).unwrap().flatten() {
            out.insert(format!("sha256:{}", f.file_name().to_string_lossy()));
        }
    }
    out
}

fn manifest_body(config: &str, config_len: usize, layers: &[(String, usize)]) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|(d, len)| serde_json::json!({"mediaType": OCI_LAYER_GZIP, "digest": d, "size": len}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": config_len},
        "layers": layers,
    }))
    .unwrap()
}

/// An image that was acknowledged by the registry.
#[derive(Clone, Debug)]
struct Pushed {
    repo: String,
    digest: String,
    body: Vec<u8>,
    blobs: Vec<String>,
}

/// Checks that an image pulls completely: the manifest by digest, and every blob's bytes.
fn assert_pulls(http: &Http, p: &Pushed) {
    let r = http.get_manifest(&p.repo, &p.digest).unwrap();
    assert_eq!(
        r.status,
        200,
        "manifest {}@{} lost\n{}",
        p.repo,
        p.digest,
        r.dump()
    );
    assert_eq!(r.body, p.body, "manifest {}@{} changed", p.repo, p.digest);
    for b in &p.blobs {
        let (r, _len, got) = http.get_blob_hashed(&p.repo, b).unwrap();
        assert_eq!(
            r.status,
            200,
            "blob {b} of {}@{} is not pullable (lost by GC?)\n{}",
            p.repo,
            p.digest,
            r.dump()
        );
        assert_eq!(
            &got, b,
            "blob {b} of {}@{} has wrong content",
            p.repo, p.digest
        );
    }
}

/// Uploads `data` to `repo` in one request (POST ?digest=).
fn upload(http: &Http, repo: &str, data: &[u8]) -> u16 {
    let d = sha256_digest(data);
    http.must(
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
        &[("Content-Type", "application/octet-stream")],
        data,
    )
    .status
}

const GRACE: Duration = Duration::from_secs(2);
const REPOS: [&str; 3] = ["gc/alpha", "gc/beta", "gc/gamma"];

/// One client: pushes images made of shared layers, each blob by one of three paths (HEAD finds
/// it and skips the upload; cross-repository mount; upload), deletes some of its images again.
fn client(
    http: Http,
    seed: u64,
    layers: Arc<Vec<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Pushed>>>,
    deleted: Arc<Mutex<Vec<Pushed>>>,
    stats: Arc<[AtomicU64; 5]>,
) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let mut mine: Vec<Pushed> = Vec::new();
    let mut pushed_at: HashMap<String, Instant> = HashMap::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        // Delete an image whose blob links are older than the grace period, then at once HEAD
        // its blobs (found) and push it again a little later: its config is unreferenced with an
        // old link in between, and only the touch of the HEAD protects it.
        if rnd(4) == 0
            && let Some(pos) = mine
                .iter()
                .position(|p| pushed_at[&p.digest].elapsed() > GRACE + Duration::from_millis(1200))
        {
            let p = mine.remove(pos);
            http.must(
                "DELETE",
                &format!("/v2/{}/manifests/{}", p.repo, p.digest),
                &[],
                &[],
            )
            .expect(202);
            acked.lock().unwrap().retain(|a| a.digest != p.digest);
            let start = Instant::now();
            let all_there = p.blobs.iter().all(|b| {
                http.must("HEAD", &format!("/v2/{}/blobs/{b}", p.repo), &[], &[])
                    .status
                    == 200
            });
            if !all_there {
                // Collected between the DELETE and the HEAD: fine, nothing protected it.
                deleted.lock().unwrap().push(p);
                continue;
            }
            // Give the collector time to run between the HEAD and the PUT.
            std::thread::sleep(Duration::from_millis(300));
            let r = http
                .push_manifest(&p.repo, &p.digest, OCI_MANIFEST, &p.body)
                .unwrap();
            let elapsed = start.elapsed();
            if r.status == 201 {
                stats[4].fetch_add(1, Ordering::Relaxed);
                acked.lock().unwrap().push(p.clone());
                mine.push(p);
            } else {
                assert!(
                    elapsed >= GRACE,
                    "manifest PUT {elapsed:?} after HEAD found all its blobs was refused: GC deleted a blob seen within the grace period\n{}",
                    r.dump()
                );
                deleted.lock().unwrap().push(p);
            }
            continue;
        }
        let repo = REPOS[rnd(REPOS.len() as u64) as usize];
        let config = format!("{{\"client\":{seed},\"image\":{i}}}").into_bytes();
        let picks: Vec<usize> = (0..1 + rnd(3))
            .map(|_| rnd(layers.len() as u64) as usize)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let start = Instant::now();
        let mut blobs = vec![(sha256_digest(&config), config.clone())];
        blobs.extend(
            picks
                .iter()
                .map(|&p| (sha256_digest(&layers[p]), layers[p].clone())),
        );
        for (d, data) in &blobs {
            let head = http
                .must("HEAD", &format!("/v2/{repo}/blobs/{d}"), &[], &[])
                .status;
            if head == 200 {
                stats[0].fetch_add(1, Ordering::Relaxed); // HEAD-exists: no upload
                continue;
            }
            let from = REPOS[rnd(REPOS.len() as u64) as usize];
            if from != repo {
                let r = http.must(
                    "POST",
                    &format!("/v2/{repo}/blobs/uploads/?mount={d}&from={from}"),
                    &[],
                    &[],
                );
                if r.status == 201 {
                    stats[1].fetch_add(1, Ordering::Relaxed); // mounted
                    continue;
                }
                assert_eq!(r.status, 202, "mount fallback\n{}", r.dump());
            }
            assert_eq!(upload(&http, repo, data), 201, "upload to {repo}");
            stats[2].fetch_add(1, Ordering::Relaxed);
        }
        let layer_refs: Vec<(String, usize)> = picks
            .iter()
            .map(|&p| (sha256_digest(&layers[p]), layers[p].len()))
            .collect();
        let body = manifest_body(&blobs[0].0, config.len(), &layer_refs);
        let r = http
            .push_manifest(repo, &format!("c{seed}-{i}"), OCI_MANIFEST, &body)
            .unwrap();
        if r.status != 201 {
            // Refusing a manifest whose blobs went is allowed only after the grace period.
            let elapsed = start.elapsed();
            assert!(
                r.text().contains("MANIFEST_BLOB_UNKNOWN") && elapsed >= GRACE,
                "manifest push refused {elapsed:?} after its first blob check (grace {GRACE:?}): a blob seen or pushed within the grace period was collected\n{}",
                r.dump()
            );
            stats[3].fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let p = Pushed {
            repo: repo.to_string(),
            digest: sha256_digest(&body),
            body,
            blobs: blobs.into_iter().map(|(d, _)| d).collect(),
        };
        pushed_at.insert(p.digest.clone(), start);
        mine.push(p.clone());
        acked.lock().unwrap().push(p);
        // Now and then delete one of this client's images: its config becomes garbage.
        if mine.len() > 2 && rnd(3) == 0 {
            let victim = mine.remove(rnd(mine.len() as u64) as usize);
            http.must(
                "DELETE",
                &format!("/v2/{}/manifests/{}", victim.repo, victim.digest),
                &[],
                &[],
            )
            .expect(202);
            acked.lock().unwrap().retain(|a| a.digest != victim.digest);
            deleted.lock().unwrap().push(victim);
        }
    }
}

#[test]
fn gc_racing_concurrent_pushes_loses_nothing_and_reclaims_garbage() {
    if !have_tools(
        "gc_racing_concurrent_pushes_loses_nothing_and_reclaims_garbage",
        &["umoci", "busybox", "skopeo"],
    ) {
        return;
    }
    // Metrics are served on their own listener only.
    let metrics_port = free_port();
    let mut server = AuthWharf::new(&format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
    ));
    server.start();
    let http = server.http();
    let host = server.host();
    let layers: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..10u64)
            .map(|s| pattern(1000 + s, 2048 + (s as usize) * 3000))
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let deleted = Arc::new(Mutex::new(Vec::new()));
    let stats: Arc<[AtomicU64; 5]> = Arc::new(Default::default());
    let runs = Arc::new(AtomicU64::new(0));
    let freed = Arc::new(AtomicU64::new(0));

    // The collector, in a loop, with a short grace period.
    let collector = {
        let (http, stop, runs, freed) = (http.clone(), stop.clone(), runs.clone(), freed.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let rep = gc(&http, &format!("{{\"grace_seconds\":{}}}", GRACE.as_secs()));
                runs.fetch_add(1, Ordering::Relaxed);
                freed.fetch_add(n(&rep, "blobs_deleted"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let clients: Vec<_> = (0..4u64)
        .map(|seed| {
            let (http, layers, stop, acked, deleted, stats) = (
                http.clone(),
                layers.clone(),
                stop.clone(),
                acked.clone(),
                deleted.clone(),
                stats.clone(),
            );
            std::thread::spawn(move || client(http, seed + 1, layers, stop, acked, deleted, stats))
        })
        .collect();

    // A real client pushes while the collector runs, and pulls back after.
    let tmp = tempfile::tempdir().unwrap();
    // (A push taking longer than the grace period may be refused, as documented: retry then.)
    let mut pushed = false;
    for _ in 0..3 {
        let out = run_any(skopeo(tmp.path()).args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--preserve-digests",
            &test_images().oci_ref(TAG_MULTI),
            &format!("docker://{host}/gc/skopeo:multi"),
        ]));
        if out.status.success() {
            pushed = true;
            break;
        }
        eprintln!(
            "skopeo push refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(pushed, "skopeo could not push while the collector ran");
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    collector.join().expect("collector thread");

    let acked = acked.lock().unwrap().clone();
    let deleted = deleted.lock().unwrap().clone();
    let [heads, mounts, uploads, refused, revived] =
        [0, 1, 2, 3, 4].map(|i| stats[i].load(Ordering::Relaxed));
    eprintln!(
        "{} images kept, {} deleted; blobs: {heads} found by HEAD, {mounts} mounted, {uploads} uploaded; {refused} manifests refused after the grace period; {revived} deleted images pushed again after HEAD; {} collections freed {} blobs",
        acked.len(),
        deleted.len(),
        runs.load(Ordering::Relaxed),
        freed.load(Ordering::Relaxed)
    );
    assert!(
        runs.load(Ordering::Relaxed) >= 5,
        "the collector hardly ran"
    );
    assert!(
        acked.len() >= 20 && !deleted.is_empty(),
        "too little traffic"
    );
    assert!(
        heads > 0 && mounts > 0 && revived > 0,
        "the HEAD-exists, re-push and mount paths were not all exercised"
    );
    assert!(
        freed.load(Ordering::Relaxed) > 0,
        "the collections racing the pushes reclaimed nothing"
    );
    for p in &acked {
        assert_pulls(&http, p);
    }

    // Once the grace period has passed, everything unreferenced goes; everything else stays.
    std::thread::sleep(GRACE + Duration::from_millis(1100));
    let rep = gc(&http, &format!("{{\"grace_seconds\":{}}}", GRACE.as_secs()));
    eprintln!("final collection: {rep}");
    for p in &acked {
        assert_pulls(&http, p);
    }
    let pull = tempfile::tempdir().unwrap();
    let back = pull.path().join("back");
    run(skopeo(tmp.path()).args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{host}/gc/skopeo:multi"),
        &format!("oci:{}:multi", back.display()),
    ]));
    assert!(assert_blobs_subset(&Layout::at(&back), test_images()) >= 3);

    let skopeo_image = test_images().image(TAG_MULTI);
    let mut referenced: HashSet<String> = acked.iter().flat_map(|p| p.blobs.clone()).collect();
    referenced.extend(
        test_images()
            .closure(&skopeo_image.digest)
            .into_iter()
            .filter(|d| *d != skopeo_image.digest),
    );
    let on_disk = blob_files(&server.data_dir());
    let missing: Vec<_> = referenced.difference(&on_disk).collect();
    assert!(
        missing.is_empty(),
        "referenced blobs missing on disk: {missing:?}"
    );
    let garbage: Vec<_> = on_disk.difference(&referenced).collect();
    assert!(
        garbage.is_empty(),
        "unreferenced blobs survived a collection past the grace period: {garbage:?}"
    );
    for p in &deleted {
        assert!(
            !on_disk.contains(&p.blobs[0]),
            "config of deleted image {} was not reclaimed",
            p.digest
        );
    }

    // Storage use: deduplication-aware, per repository and in total.
    let usage = http
        .get("/api/v1/storage?refresh=true")
        .unwrap()
        .expect(200)
        .json();
    let total = &usage["total"];
    assert_eq!(n(total, "referenced_blobs"), referenced.len() as u64);
    assert!(n(total, "logical_bytes") >= n(total, "referenced_bytes"));
    for r in usage["repositories"].as_array().unwrap() {
        assert_eq!(
            n(r, "logical_bytes"),
            n(r, "exclusive_bytes") + n(r, "shared_bytes"),
            "{r}"
        );
    }
    let metrics = Http::new(([127, 0, 0, 1], metrics_port).into())
        .get("/metrics")
        .unwrap()
        .expect(200)
        .text();
    for want in [
        "wharf_gc_runs_total{",
        "wharf_gc_freed_bytes_total",
        "wharf_gc_deleted_blobs_total",
        "wharf_gc_expired_uploads_total",
        "wharf_gc_last_duration_seconds",
        "wharf_repository_bytes{repository=\"gc/alpha\",kind=\"logical\"}",
    ] {
        assert!(
            metrics.contains(want),
            "{want} missing from /metrics:\n{metrics}"
        );
    }
}

#[test]
fn kill_9_in_the_middle_of_a_big_collection_leaves_a_consistent_store() {
    let mut server = Server::start_kind(Kind::Wharf);
    let http = server.http();
    // One image that must survive, and a few thousand unreferenced blobs.
    let layer = pattern(7, 300_000);
    let config = b"{\"keep\":true}".to_vec();
    let (ld, cd) = (sha256_digest(&layer), sha256_digest(&config));
    assert_eq!(upload(&http, "crash/keep", &layer), 201);
    assert_eq!(upload(&http, "crash/keep", &config), 201);
    let body = manifest_body(&cd, config.len(), &[(ld.clone(), layer.len())]);
    http.push_manifest("crash/keep", "v1", OCI_MANIFEST, &body)
        .unwrap()
        .expect(201);
    let keep = Pushed {
        repo: "crash/keep".into(),
        digest: sha256_digest(&body),
        body,
        blobs: vec![cd, ld],
    };
    const GARBAGE: u64 = 2400;
    let garbage: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6u64)
            .map(|t| {
                let http = http.clone();
                s.spawn(move || {
                    (0..GARBAGE / 6)
                        .map(|i| {
                            let data = format!("garbage {t} {i}").into_bytes();
                            assert_eq!(upload(&http, "crash/junk", &data), 201);
                            sha256_digest(&data)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let before = blob_files(&server.data_dir()).len();
    assert_eq!(before as u64, GARBAGE + 2);
    std::thread::sleep(Duration::from_millis(1100));

    // Collect with a grace of 0 and kill the server as soon as files start to go.
    let gc_thread = {
        let http = http.clone();
        std::thread::spawn(move || {
            http.request(
                "POST",
                "/api/v1/gc",
                &[("Content-Type", "application/json")],
                b"{\"grace_seconds\":0}",
            )
        })
    };
    let data = server.data_dir();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut at_kill = before;
    while Instant::now() < deadline {
        at_kill = blob_files(&data).len();
        if at_kill < before - 50 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    server.kill9();
    let _ = gc_thread.join();
    eprintln!("killed with {at_kill} of {before} blob files left");
    assert!(
        at_kill > 2 + 50,
        "the collection finished before the kill; make the test's garbage bigger"
    );

    server.restart();
    // Consistent: the kept image pulls, and every garbage blob is either gone or whole.
    assert_pulls(&http, &keep);
    let mut still_linked = 0;
    for d in &garbage {
        let (r, _, got) = http.get_blob_hashed("crash/junk", d).unwrap();
        match r.status {
            404 => {}
            200 => {
                assert_eq!(&got, d, "blob {d} linked but damaged after the crash");
                still_linked += 1;
            }
            s => panic!("GET blob {d} after crash answered {s}\n{}", r.dump()),
        }
    }
    assert!(still_linked > 0, "nothing left for the second run");
    // The next run finishes the job (including files whose metadata went before the crash).
    let rep = gc(&http, "{\"grace_seconds\":0}");
    eprintln!("second run: {rep}");
    assert_eq!(n(&rep, "blobs_deleted"), still_linked);
    let left = blob_files(&server.data_dir());
    assert_eq!(
        left,
        keep.blobs.iter().cloned().collect::<HashSet<_>>(),
        "after the second run only the kept image's blobs remain"
    );
    assert_pulls(&http, &keep);
    let again = gc(&http, "{\"grace_seconds\":0}");
    assert_eq!(
        n(&again, "blobs_deleted") + n(&again, "orphan_files_deleted"),
        0
    );
}

#[test]
fn dry_run_deletes_nothing_and_expired_uploads_go_while_live_ones_stay() {
    let mut server = Server::start_kind(Kind::Wharf);
    let http = server.http();
    let junk = pattern(3, 5000);
    let jd = sha256_digest(&junk);
    assert_eq!(upload(&http, "dry/junk", &junk), 201);
    std::thread::sleep(Duration::from_millis(1100));

    let rep = gc(&http, "{\"dry_run\":true,\"grace_seconds\":0}");
    assert_eq!(rep["dry_run"], true);
    assert_eq!(n(&rep, "blobs_deleted"), 1);
    assert_eq!(n(&rep, "bytes_freed"), junk.len() as u64);
    http.head(&format!("/v2/dry/junk/blobs/{jd}"))
        .unwrap()
        .expect(200);
    assert!(blob_files(&server.data_dir()).contains(&jd));
    // The default grace period (1h) protects a blob pushed a moment ago.
    let rep = gc(&http, "");
    assert_eq!(n(&rep, "blobs_deleted"), 0);
    assert!(n(&rep, "kept_recent") >= 1);

    // Uploads: one idle past the expiry, one abandoned file without a session, one live.
    let start = |http: &Http| {
        let r = http
            .must("POST", "/v2/dry/up/blobs/uploads/", &[], &[])
            .expect(202);
        path_of(&r.location())
    };
    let patch = |http: &Http, loc: &str, data: &[u8]| {
        http.must(
            "PATCH",
            loc,
            &[("Content-Type", "application/octet-stream")],
            data,
        )
        .expect(202);
    };
    let idle = start(&http);
    patch(&http, &idle, &[1u8; 1000]);
    let orphan = server
        .data_dir()
        .join("uploads/6f1d0f1e-0000-4000-8000-00000000dead");
    std::fs::write(&orphan, [2u8; 700]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&orphan)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    std::thread::sleep(Duration::from_millis(3100));
    let live = start(&http);
    let first = pattern(9, 4000);
    patch(&http, &live, &first[..2000]);

    // A dry run reports the idle ones and touches nothing.
    let rep = gc(&http, "{\"dry_run\":true,\"upload_expiry_seconds\":2}");
    assert_eq!(
        (
            n(&rep, "uploads_expired"),
            n(&rep, "orphan_uploads_deleted")
        ),
        (1, 1)
    );
    assert!(orphan.exists());
    http.get(&idle).unwrap().expect(204);

    let rep = gc(&http, "{\"upload_expiry_seconds\":2}");
    assert_eq!(
        (
            n(&rep, "uploads_expired"),
            n(&rep, "orphan_uploads_deleted")
        ),
        (1, 1)
    );
    assert_eq!(n(&rep, "upload_bytes_freed"), 1700);
    assert!(!orphan.exists());
    assert_eq!(
        http.get(&idle).unwrap().status,
        404,
        "expired upload still there"
    );
    // The live upload continues and completes.
    patch(&http, &live, &first[2000..]);
    let d = sha256_digest(&first);
    http.must("PUT", &with_query(&live, &format!("digest={d}")), &[], &[])
        .expect(201);
    http.head(&format!("/v2/dry/up/blobs/{d}"))
        .unwrap()
        .expect(200);

    // Storage use and the command line, through the server and on the data directory.
    let usage = http.get("/api/v1/storage").unwrap().expect(200).json();
    assert!(usage["total"]["unreferenced_blobs"].as_u64().unwrap() >= 1);
    std::thread::sleep(Duration::from_millis(1100)); // links are timed to the second
    let bin = env!("CARGO_BIN_EXE_wharf");
    let out = run(std::process::Command::new(bin).args([
        "gc",
        "--server",
        &format!("http://{}", server.host()),
        "--dry-run",
        "--grace",
        "0s",
        "--json",
    ]));
    let rep: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rep["dry_run"], true);
    assert_eq!(n(&rep, "blobs_deleted"), 2, "{rep}");
    assert_eq!(
        server
            .terminate(Duration::from_secs(20))
            .map(|s| s.success()),
        Some(true)
    );
    let data = server.data_dir();
    let out = run(std::process::Command::new(bin).args([
        "gc",
        "--data-dir",
        data.to_str().unwrap(),
        "--grace",
        "0s",
        "--json",
    ]));
    let rep: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(n(&rep, "blobs_deleted"), 2, "{rep}");
    assert!(!blob_files(&data).contains(&jd));
    let human = run(std::process::Command::new(bin).args([
        "gc",
        "--data-dir",
        data.to_str().unwrap(),
        "--dry-run",
    ]));
    assert!(human.contains("would free 0 B in 0 blobs"), "{human}");
    server.restart();
    assert_eq!(
        http.head(&format!("/v2/dry/junk/blobs/{jd}"))
            .unwrap()
            .status,
        404
    );
}
