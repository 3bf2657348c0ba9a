//! Retention and `wharf versions` end to end with the real binary: a generated history (semantic
//! and other tags, an immutable tag, untagged manifests, referrers, a real multi-platform index
//! pushed with skopeo, an index that goes with its children) is planned (reasons checked),
//! applied (what is left, pulls of kept images with skopeo, tag history, audit), listed in
//! version order with pull times (which survive a restart), and finally run by the schedule.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const REPO: &str = "prod/app";

const CONFIG: &str = r#"
[[tags.immutable]]
repos = "prod/*"
tags = "v0.*"

[[retention]]
repos = "prod/*"
keep_semver = 2
keep_tags = ["stable"]
untagged_older_than = "1s"

[retention_schedule]
enabled = false
"#;

/// Pushes a one-layer image manifest under `reference` (a tag, or its digest for an untagged
/// push); returns its digest.
fn image(http: &Http, reference: Option<&str>, seed: u64) -> String {
    let layer = pattern(seed, 512 + seed as usize);
    let layer_d = http.must_push_blob(REPO, &layer);
    let config =
        serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "seed": seed})).unwrap();
    let config_d = http.must_push_blob(REPO, &config);
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_d, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_d, "size": layer.len()}]
    }))
    .unwrap();
    let d = sha256_digest(&m);
    http.push_manifest(REPO, reference.unwrap_or(&d), OCI_MANIFEST, &m)
        .unwrap()
        .expect(201);
    d
}

/// Pushes a signature-like referrer of `subject` (by digest, untagged); returns its digest.
fn referrer(http: &Http, subject: &str, seed: u64) -> String {
    let empty = http.must_push_blob(REPO, b"{}");
    let payload = pattern(seed, 64);
    let payload_d = http.must_push_blob(REPO, &payload);
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": payload_d, "size": 64}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1}
    }))
    .unwrap();
    let d = sha256_digest(&m);
    http.push_manifest(REPO, &d, OCI_MANIFEST, &m)
        .unwrap()
        .expect(201);
    d
}

/// Pushes an index over `children` under `tag`; returns its digest.
fn index(http: &Http, tag: &str, children: &[&str]) -> String {
    let manifests: Vec<Value> = children
        .iter()
        .map(|c| {
            let r = http
                .head(&format!("/v2/{REPO}/manifests/{c}"))
                .unwrap()
                .expect(200);
            let size: u64 = r.must_header("content-length").parse().unwrap();
            json!({"mediaType": OCI_MANIFEST, "digest": c, "size": size,
                   "platform": {"architecture": "amd64", "os": "linux"}})
        })
        .collect();
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests
    }))
    .unwrap();
    http.push_manifest(REPO, tag, OCI_INDEX, &m)
        .unwrap()
        .expect(201);
    sha256_digest(&m)
}

fn status(http: &Http, reference: &str) -> u16 {
    http.head(&format!("/v2/{REPO}/manifests/{reference}"))
        .unwrap()
        .status
}

fn post(http: &Http, path: &str) -> Value {
    http.request(
        "POST",
        path,
        &[("Content-Type", "application/json")],
        format!(r#"{{"repo":"{REPO}"}}"#).as_bytes(),
    )
    .unwrap()
    .expect(200)
    .json()
}

#[test]
fn retention_plans_applies_and_keeps_what_is_needed() {
    let with_skopeo = have_tools(
        "retention_plans_applies_and_keeps_what_is_needed",
        &["umoci", "busybox", "skopeo"],
    );
    // Metrics are served on their own listener only.
    let metrics_port = free_port();
    let mut s = AuthWharf::new(&format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n{CONFIG}"
    ));
    s.start();
    let http = s.http();

    // The history, oldest first.
    let v090 = image(&http, Some("v0.9.0"), 1); // immutable
    let v100 = image(&http, Some("v1.0.0"), 2);
    let sig100 = referrer(&http, &v100, 20); // goes with v1.0.0
    let v110 = image(&http, Some("v1.1.0"), 3);
    let rc_a = image(&http, None, 4);
    let rc_b = image(&http, None, 5);
    let rc = index(&http, "v1.0.0-rc.1", &[&rc_a, &rc_b]); // goes with its children
    let stable = image(&http, Some("stable"), 6);
    http.push_manifest(
        REPO,
        &format!("{stable}?tag=v1.0.1"),
        OCI_MANIFEST,
        &http.get_manifest(REPO, &stable).unwrap().expect(200).body,
    )
    .unwrap()
    .expect(201); // v1.0.1 goes, but stable keeps the manifest
    let orphan = image(&http, None, 7); // untagged, old: goes
    let v200 = image(&http, Some("v2.0.0"), 8);
    let sig200 = referrer(&http, &v200, 21); // stays with v2.0.0
    std::thread::sleep(Duration::from_millis(1100));
    let nightly = image(&http, Some("nightly"), 9); // no rule applies to it
    // A real multi-platform image: its platform manifests are untagged but the index needs them.
    let tmp = tempfile::tempdir().unwrap();
    let mut v120 = None;
    if with_skopeo {
        let idx = test_images().image(TAG_INDEX);
        run(skopeo(tmp.path())
            .args([
                "copy",
                "--quiet",
                "--all",
                "--preserve-digests",
                "--dest-tls-verify=false",
            ])
            .arg(test_images().oci_ref(TAG_INDEX))
            .arg(format!("docker://{}/{REPO}:v1.2.0", s.host())));
        assert_eq!(status(&http, "v1.2.0"), 200);
        v120 = Some(idx.digest);
    }
    // Pulls are tracked (GET by tag here) and show up at once, before any flush.
    http.get_manifest(REPO, "v2.0.0").unwrap().expect(200);
    // Untagged manifests must be older than the policy's second.
    std::thread::sleep(Duration::from_millis(1100));

    // `versions`: semantic versions highest first (pre-release before its release), then the
    // others newest first; sizes count manifest, config and layers; pull times.
    let rows = http
        .get(&format!("/api/v1/versions?repo={REPO}"))
        .unwrap()
        .expect(200)
        .json();
    let order: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tag"].as_str().unwrap())
        .collect();
    let mut want = vec![
        "v2.0.0",
        "v1.2.0",
        "v1.1.0",
        "v1.0.1",
        "v1.0.0",
        "v1.0.0-rc.1",
        "v0.9.0",
        "nightly",
        "stable",
    ];
    if !with_skopeo {
        want.retain(|t| *t != "v1.2.0");
    }
    assert_eq!(order, want, "{rows:#}");
    let row = |t: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["tag"] == t)
            .unwrap()
    };
    assert!(row("v2.0.0")["last_pull"].as_u64().is_some(), "{rows:#}");
    assert!(row("v1.1.0")["last_pull"].is_null());
    assert!(row("v1.1.0")["size"].as_u64().unwrap() > 512 + 3);
    assert!(row("v1.0.0-rc.1")["size"].as_u64().unwrap() > 2 * 512);
    assert_eq!(row("v1.0.0")["digest"], v100.as_str());
    assert!(row("v0.9.0")["pushed"].as_u64().is_some());

    // Plan: what goes and why.
    let plan = post(&http, "/api/v1/retention/plan");
    let p = &plan[0];
    assert_eq!(p["repo"], REPO, "{plan:#}");
    let tags: BTreeSet<&str> = p["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    assert_eq!(
        tags,
        BTreeSet::from(["v1.0.0", "v1.0.0-rc.1", "v1.0.1", "v1.1.0"]),
        "{plan:#}"
    );
    for t in p["tags"].as_array().unwrap() {
        assert_eq!(t["reason"]["kind"], "not_retained", "{t}");
        assert!(
            t["reason"]["failed"][0]
                .as_str()
                .unwrap()
                .contains("not among the 2 highest semantic versions"),
            "{t}"
        );
    }
    let manifests: Vec<(&str, &str)> = p["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["digest"].as_str().unwrap(),
                m["reason"]["kind"].as_str().unwrap(),
            )
        })
        .collect();
    let kind_of = |d: &str| manifests.iter().find(|m| m.0 == d).map(|m| m.1);
    assert_eq!(kind_of(&v100), Some("tags_removed"), "{plan:#}");
    assert_eq!(kind_of(&v110), Some("tags_removed"));
    assert_eq!(kind_of(&rc), Some("tags_removed"));
    assert_eq!(kind_of(&sig100), Some("subject_deleted"));
    assert_eq!(kind_of(&rc_a), Some("parent_deleted"));
    assert_eq!(kind_of(&rc_b), Some("parent_deleted"));
    assert_eq!(kind_of(&orphan), Some("untagged"));
    assert_eq!(manifests.len(), 7, "{plan:#}");
    for kept in [&v090, &stable, &v200, &sig200, &nightly] {
        assert_eq!(kind_of(kept), None, "{kept} must stay: {plan:#}");
    }
    if let Some(i) = &v120 {
        assert_eq!(kind_of(i), None);
    }
    let pos = |d: &str| manifests.iter().position(|m| m.0 == d).unwrap();
    assert!(
        pos(&rc) < pos(&rc_a) && pos(&rc) < pos(&rc_b),
        "index before children"
    );
    assert!(pos(&v100) < pos(&sig100), "subject before its referrer");
    let kept = |t: &str| {
        p["kept"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["tag"] == t)
            .unwrap_or_else(|| panic!("{t} not kept: {plan:#}"))["reason"]["kind"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(kept("v0.9.0"), "immutable");
    assert_eq!(kept("stable"), "keep_tags");
    assert_eq!(kept("v2.0.0"), "keep_semver");
    assert_eq!(kept("nightly"), "no_rule");
    // Planning deleted nothing.
    assert_eq!(status(&http, "v1.0.0"), 200);

    // Apply.
    let applied = post(&http, "/api/v1/retention/apply");
    assert_eq!(
        applied[0]["tags_deleted"].as_array().unwrap().len(),
        4,
        "{applied:#}"
    );
    assert_eq!(
        applied[0]["manifests_deleted"].as_array().unwrap().len(),
        7,
        "{applied:#}"
    );
    assert!(
        applied[0]["skipped"].as_array().unwrap().is_empty(),
        "{applied:#}"
    );
    for gone in ["v1.0.0", "v1.1.0", "v1.0.1", "v1.0.0-rc.1"] {
        assert_eq!(status(&http, gone), 404, "{gone}");
    }
    for gone in [&v100, &v110, &rc, &rc_a, &rc_b, &sig100, &orphan] {
        assert_eq!(status(&http, gone), 404, "{gone}");
    }
    for kept in ["v0.9.0", "v2.0.0", "stable", "nightly"] {
        assert_eq!(status(&http, kept), 200, "{kept}");
    }
    assert_eq!(status(&http, &sig200), 200);
    let refs = http
        .get(&format!("/v2/{REPO}/referrers/{v200}"))
        .unwrap()
        .expect(200)
        .json();
    assert_eq!(refs["manifests"][0]["digest"], sig200.as_str());
    // The immutable tag still cannot be deleted by hand either.
    assert_eq!(
        http.request("DELETE", &format!("/v2/{REPO}/manifests/v0.9.0"), &[], &[])
            .unwrap()
            .status,
        403
    );
    // Kept images still pull, the multi-platform one with every platform.
    if let Some(i) = &v120 {
        let out = Layout::empty_temp();
        run(skopeo(tmp.path())
            .args(["copy", "--quiet", "--all", "--src-tls-verify=false"])
            .arg(format!("docker://{}/{REPO}:v1.2.0", s.host()))
            .arg(out.oci_ref("got")));
        assert_eq!(out.image("got").digest, *i);
        assert!(assert_blobs_subset(&out, test_images()) > 0);
    }
    let b = http
        .get_manifest(REPO, "stable")
        .unwrap()
        .expect(200)
        .json();
    http.get_blob(REPO, b["layers"][0]["digest"].as_str().unwrap())
        .unwrap()
        .expect(200);

    // History and audit record the deletions.
    let h = http
        .get(&format!("/api/v1/tags/history?repo={REPO}&tag=v1.0.0"))
        .unwrap()
        .expect(200)
        .json();
    assert_eq!(h[0]["actor"], "retention", "{h:#}");
    assert_eq!(h[0]["previous"], v100.as_str());
    assert!(h[0]["new"].is_null());
    let audit = http
        .get("/api/v1/audit?action=retention.delete&limit=100")
        .unwrap()
        .expect(200)
        .json();
    assert_eq!(audit.as_array().unwrap().len(), 11, "{audit:#}");

    let metrics = Http::new(([127, 0, 0, 1], metrics_port).into())
        .get("/metrics")
        .unwrap()
        .expect(200)
        .text();
    assert!(
        metrics.contains("wharf_retention_deleted_manifests_total 7"),
        "{metrics}"
    );
    assert!(metrics.contains("wharf_retention_deleted_tags_total 4"));

    // A second plan finds nothing more.
    let again = post(&http, "/api/v1/retention/plan");
    assert!(again[0]["tags"].as_array().unwrap().is_empty(), "{again:#}");
    assert!(
        again[0]["manifests"].as_array().unwrap().is_empty(),
        "{again:#}"
    );

    // On the data directory: pull times were flushed on shutdown; the CLI lists and plans.
    s.stop();
    let out = s.must_cli(&["versions", REPO, "--output", "json"], "");
    let rows: Value = serde_json::from_str(&out).unwrap();
    let order: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tag"].as_str().unwrap())
        .collect();
    let mut want = vec!["v2.0.0", "v1.2.0", "v0.9.0", "nightly", "stable"];
    if !with_skopeo {
        want.retain(|t| *t != "v1.2.0");
    }
    assert_eq!(order, want);
    assert!(rows[0]["last_pull"].as_u64().is_some(), "{out}");
    let text = s.must_cli(&["versions", REPO], "");
    assert!(text.lines().next().unwrap().starts_with("TAG"), "{text}");
    let cfg = s.scratch().join("wharf.toml");
    let plan = s.must_cli(
        &["retention", "plan", "--config", cfg.to_str().unwrap()],
        "",
    );
    assert!(!plan.contains("delete"), "{plan}");
    assert!(plan.contains("immutable"), "{plan}");

    // The schedule: keep only the highest version now; it runs within seconds.
    s.set_config(
        &CONFIG
            .replace("keep_semver = 2", "keep_semver = 1")
            .replace("enabled = false", "enabled = true\ninterval_seconds = 1"),
    );
    s.start();
    let http = s.http();
    let deadline = Instant::now() + Duration::from_secs(20);
    // With the multi-platform image, v1.2.0 is the one to go; else wait for a run's log line.
    while if with_skopeo {
        status(&http, "v1.2.0") == 200
    } else {
        !s.log().contains("scheduled retention done")
    } {
        assert!(
            Instant::now() < deadline,
            "scheduled retention did not run:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status(&http, "v2.0.0"), 200);
    assert_eq!(
        status(&http, "v0.9.0"),
        200,
        "immutable tags survive retention"
    );
    assert_eq!(status(&http, "stable"), 200);
}
