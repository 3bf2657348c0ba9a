//! Online backup and restore (docs/operations.md, "Backups"), end to end with the real binary:
//! `wharf backup --server` while clients keep pushing and deleting and a garbage collection is
//! asked for, `wharf restore` into a fresh data directory, a second server on it, and every
//! image acknowledged before the backup began pulled back byte for byte (with skopeo too).
//! Also: a backup with a flipped byte is refused, a used directory is refused, a data directory
//! held by a running server is refused with a hint, and a stopped server's data directory is
//! backed up locally (hard links).

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::*;

/// An image pushed and acknowledged: where, and its exact manifest bytes and blobs.
#[derive(Clone, Debug)]
struct Pushed {
    repo: String,
    tag: String,
    digest: String,
    manifest: Vec<u8>,
    blobs: Vec<String>,
}

/// Pushes a one-layer image (config varies with `seed`); `None` when the registry refuses any
/// step (the churning pusher tolerates the collector removing its unreferenced blobs).
fn try_push(http: &Http, repo: &str, tag: &str, layer: &[u8], seed: u64) -> Option<Pushed> {
    let ok = |r: std::io::Result<Response>| r.ok().filter(|r| r.status == 201);
    let layer_d = sha256_digest(layer);
    ok(http.push_blob(repo, layer))?;
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_d]},
        "config": {"Labels": {"seed": seed.to_string()}}
    }))
    .unwrap();
    let config_d = sha256_digest(&config);
    ok(http.push_blob(repo, &config))?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_d, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_d, "size": layer.len()}]
    }))
    .unwrap();
    ok(http.push_manifest(repo, tag, OCI_MANIFEST, &manifest))?;
    Some(Pushed {
        repo: repo.into(),
        tag: tag.into(),
        digest: sha256_digest(&manifest),
        manifest,
        blobs: vec![config_d, layer_d],
    })
}

fn wharf() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wharf"));
    c.env_remove("WHARF_CONFIG")
        .env_remove("WHARF_DATA_DIR")
        .env_remove("WHARF_SERVER");
    c
}

/// Checks that `http` serves `p` exactly: the manifest by digest and by tag (unless
/// `by_tag` is false), and every blob hashing to its digest.
fn check_served(http: &Http, p: &Pushed, by_tag: bool) {
    let r = http.get_manifest(&p.repo, &p.digest).unwrap().expect(200);
    assert_eq!(r.body, p.manifest, "manifest {}@{}", p.repo, p.digest);
    if by_tag {
        let r = http.get_manifest(&p.repo, &p.tag).unwrap().expect(200);
        assert_eq!(
            r.header("Docker-Content-Digest"),
            Some(p.digest.as_str()),
            "{}:{}",
            p.repo,
            p.tag
        );
    }
    for b in &p.blobs {
        let (r, _, got) = http.get_blob_hashed(&p.repo, b).unwrap();
        assert_eq!(r.status, 200, "blob {b} of {}", p.repo);
        assert_eq!(&got, b, "blob {b} of {} byte for byte", p.repo);
    }
}

#[test]
fn online_backup_under_pushes_and_gc_restores_every_acknowledged_image() {
    assert!(
        which("skopeo").is_some(),
        "skopeo is needed (scripts/install-test-deps.sh installs it)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let s1 = Server::start();
    let http = s1.http();

    // Acknowledged before the backup: small images in several repositories, a few large layers
    // (so the backup takes a while), and "victims" whose manifests are deleted during it.
    let mut before = Vec::new();
    for i in 0..24u64 {
        let repo = format!("team{}/app", i % 4);
        before.push(
            try_push(
                &http,
                &repo,
                &format!("v{i}"),
                &pattern(i, 4096 + i as usize),
                i,
            )
            .unwrap(),
        );
    }
    for i in 0..3u64 {
        let layer = pattern(1000 + i, 24 << 20);
        before.push(try_push(&http, "big/image", &format!("b{i}"), &layer, 1000 + i).unwrap());
    }
    let victims: Vec<Pushed> = (0..4u64)
        .map(|i| {
            try_push(
                &http,
                "doomed/app",
                &format!("d{i}"),
                &pattern(2000 + i, 300_000),
                2000 + i,
            )
            .unwrap()
        })
        .collect();

    // Clients keep pushing (and deleting what they pushed) throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let churned = Arc::new(AtomicU64::new(0));
    let pusher = {
        let (stop, churned, http) = (stop.clone(), churned.clone(), s1.http());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                if let Some(p) = try_push(
                    &http,
                    "churn/app",
                    &format!("c{i}"),
                    &pattern(5000 + i, 20_000),
                    5000 + i,
                ) {
                    churned.fetch_add(1, Ordering::Relaxed);
                    if i.is_multiple_of(3) {
                        let _ = http.request(
                            "DELETE",
                            &format!("/v2/churn/app/manifests/{}", p.digest),
                            &[],
                            &[],
                        );
                    }
                }
            }
        })
    };

    // The backup, through the server's management API (loopback, no access control yet).
    let bk = tmp.path().join("backup");
    let t0 = Instant::now();
    let mut backup = wharf()
        .arg("backup")
        .arg("--server")
        .arg(format!("http://{}", s1.host()))
        .arg("--to")
        .arg(&bk)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The client writes meta.redb first: once it is there, the snapshot was taken.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !bk.join("meta.redb").exists() {
        assert!(Instant::now() < deadline, "no snapshot within 60 s");
        assert!(
            backup.try_wait().unwrap().is_none(),
            "the backup ended before its first entry"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let snapshot_seen = t0.elapsed();
    // After the snapshot: the victims go, and a collection with no grace period is asked for.
    // It must wait for the backup (which still has to copy the victims' blobs).
    for v in &victims {
        http.request(
            "DELETE",
            &format!("/v2/{}/manifests/{}", v.repo, v.digest),
            &[],
            &[],
        )
        .unwrap()
        .expect(202);
    }
    let gc = {
        let http = s1.http();
        std::thread::spawn(move || {
            let r = http
                .request(
                    "POST",
                    "/api/v1/gc",
                    &[("Content-Type", "application/json")],
                    br#"{"grace_seconds":0}"#,
                )
                .unwrap()
                .expect(200);
            r.json()
        })
    };
    let out = backup.wait_with_output().unwrap();
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "wharf backup failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = gc.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    pusher.join().unwrap();
    // The server finished streaming (and released the collector) before the collection ran;
    // the client may still have been writing its last entries then.
    let log = s1.log();
    let streamed = log
        .find("backup streamed")
        .expect("the server logs the backup");
    let collected = log
        .rfind("garbage collection finished")
        .expect("the server logs the collection");
    assert!(
        streamed < collected,
        "the collection waited for the backup to be streamed"
    );
    // The collector works again once the backup ended: the victims' blobs go. (Link times
    // are in whole seconds and a link of the current second counts as younger than a grace of
    // 0: on a fast run the victims were linked in the second the first collection ran, and it
    // kept them. A second collection a second later must take them.)
    let mut deleted = report["blobs_deleted"].as_u64().unwrap();
    if deleted < victims.len() as u64 {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let again = s1
            .http()
            .request(
                "POST",
                "/api/v1/gc",
                &[("Content-Type", "application/json")],
                br#"{"grace_seconds":0}"#,
            )
            .unwrap()
            .expect(200)
            .json();
        deleted += again["blobs_deleted"].as_u64().unwrap();
        assert!(
            deleted >= victims.len() as u64,
            "after the backup, collections reclaimed the victims' blobs: {report} then {again}"
        );
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bk.join("wharf-backup.json")).unwrap()).unwrap();
    let bytes = manifest["counts"]["blob_bytes"].as_u64().unwrap();
    eprintln!(
        "backup: {} blobs, {} bytes in {:.2}s ({:.1} MiB/s; snapshot within {:.3}s) while {} images were pushed\n{summary}",
        manifest["counts"]["blobs"],
        bytes,
        took.as_secs_f64(),
        bytes as f64 / took.as_secs_f64() / 1048576.0,
        snapshot_seen.as_secs_f64(),
        churned.load(Ordering::Relaxed),
    );
    assert!(summary.contains("backed up"), "{summary}");

    // A flipped byte in one blob: restore refuses, naming it, and leaves nothing.
    let big = &before[before.len() - 1];
    let rel = |d: &str| {
        let hex = d.strip_prefix("sha256:").unwrap();
        format!("blobs/sha256/{}/{hex}", &hex[..2])
    };
    let victim_file = bk.join(rel(&big.blobs[1]));
    let mut bytes_of = std::fs::read(&victim_file).unwrap();
    let mid = bytes_of.len() / 2;
    bytes_of[mid] ^= 0x01;
    std::fs::write(&victim_file, &bytes_of).unwrap();
    let bad_target = tmp.path().join("restored-bad");
    let r = run_fail(
        wharf()
            .arg("restore")
            .arg("--from")
            .arg(&bk)
            .arg("--data-dir")
            .arg(&bad_target),
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("corrupt") && err.contains(&big.blobs[1]),
        "{err}"
    );
    assert!(!bad_target.exists(), "a refused restore leaves nothing");
    bytes_of[mid] ^= 0x01;
    std::fs::write(&victim_file, &bytes_of).unwrap();

    // A used directory: refused.
    let used = tmp.path().join("used");
    std::fs::create_dir(&used).unwrap();
    std::fs::write(used.join("keep"), "x").unwrap();
    let r = run_fail(
        wharf()
            .arg("restore")
            .arg("--from")
            .arg(&bk)
            .arg("--data-dir")
            .arg(&used),
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read_to_string(used.join("keep")).unwrap(), "x");

    // A blob damaged in the live store: the backup fails naming it and keeps nothing.
    let live = s1.data_dir().join(rel(&before[before.len() - 2].blobs[1]));
    let mut b = std::fs::read(&live).unwrap();
    b[7] ^= 0x80;
    std::fs::write(&live, &b).unwrap();
    let damaged = tmp.path().join("damaged");
    let r = run_fail(
        wharf()
            .arg("backup")
            .arg("--quiet")
            .arg("--server")
            .arg(format!("http://{}", s1.host()))
            .arg("--to")
            .arg(&damaged),
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("corrupt") && err.contains(&before[before.len() - 2].blobs[1]),
        "{err}"
    );
    assert!(!damaged.exists(), "a failed backup keeps nothing");
    b[7] ^= 0x80;
    std::fs::write(&live, &b).unwrap();

    // A data directory a server holds: refused locally, with the way out.
    let r = run_fail(
        wharf()
            .arg("backup")
            .arg("--data-dir")
            .arg(s1.data_dir())
            .arg("--to")
            .arg(tmp.path().join("local")),
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("--server"), "{err}");
    drop(s1);

    // Restore into a fresh data directory and serve it.
    let mut s2 = Server::start();
    s2.kill9();
    std::fs::remove_dir_all(s2.data_dir()).unwrap();
    let t1 = Instant::now();
    let out = run(wharf()
        .arg("restore")
        .arg("--quiet")
        .arg("--from")
        .arg(&bk)
        .arg("--data-dir")
        .arg(s2.data_dir()));
    eprintln!("restore: {:.2}s\n{out}", t1.elapsed().as_secs_f64());
    assert!(out.contains("every checksum verified"), "{out}");
    s2.restart();
    let http2 = s2.http();
    for p in &before {
        check_served(&http2, p, true);
    }
    // Deleted after the snapshot: still in the backup.
    for v in &victims {
        check_served(&http2, v, false);
    }
    // A real client pulls one back, digests preserved.
    let layout = Layout::empty_temp();
    let p = &before[0];
    run(skopeo(tmp.path())
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--preserve-digests",
        ])
        .arg(format!("docker://{}/{}:{}", s2.host(), p.repo, p.tag))
        .arg(layout.oci_ref("pulled")));
    assert_eq!(layout.image("pulled").digest, p.digest);
    assert_eq!(
        std::fs::read(layout.blob_path(&p.digest)).unwrap(),
        p.manifest
    );
    for b in &p.blobs {
        assert_eq!(file_digest(&layout.blob_path(b)), *b);
    }

    // The stopped server's data directory, backed up locally with hard links, restores the same.
    s2.kill9();
    let local = tmp.path().join("local-backup");
    let out = run(wharf()
        .arg("backup")
        .arg("--quiet")
        .arg("--hard-link")
        .arg("--data-dir")
        .arg(s2.data_dir())
        .arg("--to")
        .arg(&local));
    assert!(out.contains("backed up"), "{out}");
    let m2: serde_json::Value =
        serde_json::from_slice(&std::fs::read(local.join("wharf-backup.json")).unwrap()).unwrap();
    assert_eq!(m2["counts"]["manifests"], manifest["counts"]["manifests"]);
    assert_eq!(m2["counts"]["blobs"], manifest["counts"]["blobs"]);
    assert!(
        run_any(
            wharf()
                .arg("restore")
                .arg("--quiet")
                .arg("--from")
                .arg(&local)
                .arg("--data-dir")
                .arg(tmp.path().join("again"))
        )
        .status
        .success()
    );
    assert!(Path::new(&tmp.path().join("again/meta.redb")).exists());
}

/// With access control, only administrators back up (and the backup is audited); identities
/// come back with a restore, and the restored server makes its own token key.
#[test]
fn backup_through_the_api_is_for_administrators_and_restores_identities() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start();
    let http = s.http();
    let json = [("Content-Type", "application/json")];
    http.request(
        "POST",
        "/api/v1/users",
        &json,
        br#"{"name":"root","password":"root-password-1","admin":true}"#,
    )
    .unwrap()
    .expect(201);
    let root = basic("root", "root-password-1");
    let as_root = [
        ("Content-Type", "application/json"),
        ("Authorization", root.as_str()),
    ];
    http.request(
        "POST",
        "/api/v1/users",
        &as_root,
        br#"{"name":"dev","password":"dev-password-1"}"#,
    )
    .unwrap()
    .expect(201);
    let backup = |who: Option<(&str, &str)>, to: &Path| {
        let mut c = wharf();
        c.arg("backup")
            .arg("--quiet")
            .arg("--server")
            .arg(format!("http://{}", s.host()))
            .arg("--to")
            .arg(to);
        if let Some((u, p)) = who {
            c.arg("--as").arg(u).env("WHARF_PASSWORD", p);
        }
        run_any(&mut c)
    };
    let to = tmp.path().join("bk");
    let r = backup(None, &to);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && err.contains("401"), "{err}");
    assert!(!to.exists(), "a refused backup leaves nothing");
    let r = backup(Some(("dev", "dev-password-1")), &to);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains("403") && err.contains("not an administrator"),
        "{err}"
    );
    let r = backup(Some(("root", "root-password-1")), &to);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let audit = http
        .request("GET", "/api/v1/audit?action=backup", &as_root, &[])
        .unwrap()
        .expect(200)
        .json();
    assert_eq!(audit[0]["actor"], "root", "{audit}");
    assert!(
        audit[0]["detail"].as_str().unwrap().contains("manifests"),
        "{audit}"
    );
    drop(s);

    let data = tmp.path().join("restored");
    run(wharf()
        .arg("restore")
        .arg("--quiet")
        .arg("--from")
        .arg(&to)
        .arg("--data-dir")
        .arg(&data));
    assert!(!data.join("auth").exists(), "no token key in a backup");
    // Access control is on in the restored data: /v2/ answers 401, so no `Server` here.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let child = wharf()
        .arg("serve")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(child);
    let http2 = Http::new(addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    while http2.get("/v2/").is_err() {
        assert!(
            Instant::now() < deadline,
            "the restored server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let users = http2
        .request("GET", "/api/v1/users", &as_root, &[])
        .unwrap()
        .expect(200)
        .json();
    assert_eq!(users.as_array().map(Vec::len), Some(2), "{users}");
    assert!(data.join("auth/token-signing-key.pem").exists());
}
