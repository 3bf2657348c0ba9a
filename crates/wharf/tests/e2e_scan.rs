//! End-to-end tests of vulnerability scanning: `wharf scan`, `wharf sbom` and `wharf vulndb` on
//! a real Debian bookworm minbase image (debootstrap, built by scripts/scan-fixtures.sh) against
//! the real Debian advisories of ../shared/vulndata; and a registry with `[scan]`: images
//! pushed with skopeo are scanned in the background, their findings served by the management
//! API, pulls refused by a pull rule, and a database imported while the server runs re-matches
//! the stored images without reading a layer again.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use support::*;

const ADMIN: (&str, &str) = ("scan-admin", "scan-admin-password");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The advisory data shipped beside the project (../shared/vulndata).
fn vulndata() -> PathBuf {
    let d = workspace().join("../shared/vulndata");
    assert!(d.is_dir(), "{} is missing", d.display());
    d
}

/// The Debian OSV feeds: CVE records (Debian entries only), DSAs and DLAs.
fn debian_feeds() -> Vec<PathBuf> {
    let osv = vulndata().join("debian/osv");
    vec![
        osv.join("CVE-debian-only"),
        osv.join("DSA"),
        osv.join("DLA"),
    ]
}

/// The OCI layout of `debootstrap --variant=minbase bookworm` (tag `latest`), built once per
/// target directory by scripts/scan-fixtures.sh (the scan crate's tests share it).
fn debian_layout() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("WHARF_SCAN_FIXTURES")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_TARGET_TMPDIR"))
                    .parent()
                    .expect("target dir")
                    .join("scan-fixtures")
            });
        let status = Command::new("bash")
            .arg(workspace().join("scripts/scan-fixtures.sh"))
            .arg(&dir)
            .status()
            .expect("running scripts/scan-fixtures.sh");
        assert!(status.success(), "scripts/scan-fixtures.sh {dir:?} failed");
        dir.join("debian-oci")
    })
    .as_path()
}

fn wharf(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.args(args)
        .env_remove("WHARF_DATA_DIR")
        .env_remove("WHARF_CONFIG");
    run_any(&mut cmd)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ids(report: &Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["package"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn has(report: &Value, id: &str, package: &str) -> bool {
    ids(report).iter().any(|(i, p)| i == id && p == package)
}

#[test]
fn scan_sbom_and_vulndb_on_a_debian_image() {
    if !have_tools(
        "scan_sbom_and_vulndb_on_a_debian_image",
        &["debootstrap", "umoci", "skopeo"],
    ) {
        return;
    }
    let layout = debian_layout();
    let src = format!("oci:{}:latest", layout.display());
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db_s = db.to_str().unwrap();

    // An empty database: the scan works, says so, and finds nothing.
    let out = wharf(&["scan", &src, "--db", db_s]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("is empty"), "{}", stdout(&out));

    let mut args: Vec<String> = vec!["vulndb".into(), "import".into()];
    args.extend(debian_feeds().iter().map(|p| p.display().to_string()));
    args.extend(["--db".into(), db_s.into()]);
    let out = wharf(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", stderr(&out));
    let status = wharf(&["vulndb", "status", "--db", db_s, "--format", "json"]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    let feeds = status["feeds"].as_array().unwrap();
    assert_eq!(feeds.len(), 3, "{status}");
    assert!(
        feeds.iter().all(
            |f| f["records"].as_u64().unwrap() > 0 && f["sha256"].as_str().unwrap().len() == 64
        )
    );
    assert_eq!(status["stale"], false);

    // JSON report: the OS, its packages' findings by source package, backports respected.
    let out = wharf(&["scan", &src, "--db", db_s, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["distribution"]["id"], "debian");
    assert_eq!(report["distribution"]["version_id"], "12");
    // Unfixed in bookworm at the data's date: apt's CVE-2011-3374 (negligible), zlib's
    // CVE-2023-45853 (no Debian urgency; CVSS 9.8).
    assert!(has(&report, "CVE-2011-3374", "apt"), "{:?}", ids(&report));
    assert!(
        has(&report, "CVE-2023-45853", "zlib1g"),
        "{:?}",
        ids(&report)
    );
    let zlib = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "CVE-2023-45853")
        .unwrap();
    assert_eq!(zlib["severity"], "critical");
    assert_eq!(zlib["matched"]["name"], "zlib", "matched by source package");
    // Fixed by bookworm's own updates (the installed glibc is 2.36-9+deb12u4 or later): a
    // backported fix is a fix, whatever upstream's version says.
    for fixed in ["CVE-2023-4911", "CVE-2023-6246"] {
        assert!(
            !ids(&report).iter().any(|(i, _)| i == fixed),
            "{fixed} reported"
        );
    }
    let apt_findings = ids(&report).iter().filter(|(_, p)| p == "apt").count();
    assert!(apt_findings >= 1);

    // --fail-on: the critical zlib finding fails the scan; an ignore file suppresses it (and
    // every report prints it as suppressed), so the scan passes.
    let out = wharf(&["scan", &src, "--db", db_s, "--fail-on", "critical"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let ignore = tmp.path().join("ignore.toml");
    std::fs::write(
        &ignore,
        "[[ignore]]\nid = \"CVE-2023-45853\"\npackage = \"zlib\"\nreason = \"minizip is not used\"\nexpires = \"2999-01-01\"\n",
    )
    .unwrap();
    let ig = ignore.to_str().unwrap();
    let out = wharf(&[
        "scan",
        &src,
        "--db",
        db_s,
        "--fail-on",
        "critical",
        "--ignore-file",
        ig,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("minizip is not used"),
        "{}",
        stdout(&out)
    );
    let out = wharf(&[
        "scan",
        &src,
        "--db",
        db_s,
        "--ignore-file",
        ig,
        "--format",
        "json",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"]["suppressed"], 1, "{}", report["summary"]);
    // The other formats are JSON documents of their kind.
    for (format, key) in [("sarif", "runs"), ("cyclonedx", "vulnerabilities")] {
        let out = wharf(&["scan", &src, "--db", db_s, "--format", format]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(doc[key].is_array(), "{format}: {doc}");
    }
    // An expired rule suppresses nothing and says so.
    std::fs::write(
        &ignore,
        "[[ignore]]\nid = \"CVE-2023-45853\"\nreason = \"old\"\nexpires = \"2020-01-01\"\n",
    )
    .unwrap();
    let out = wharf(&[
        "scan",
        &src,
        "--db",
        db_s,
        "--fail-on",
        "critical",
        "--ignore-file",
        ig,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("expired"), "{}", stdout(&out));

    // Errors: exit 2 with a plain message.
    let out = wharf(&["scan", "oci:/nonexistent/layout:latest", "--db", db_s]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
    std::fs::write(&ignore, "[[ignore]]\nid = 1\n").unwrap();
    let out = wharf(&["scan", &src, "--db", db_s, "--ignore-file", ig]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // SBOMs: every dpkg package, with purls.
    let dpkg = Command::new("dpkg-query")
        .args(["--admindir"])
        .arg(layout.parent().unwrap().join("debian-rootfs/var/lib/dpkg"))
        .args(["-W", "-f", "${Package}\n"])
        .output()
        .unwrap();
    let installed = String::from_utf8_lossy(&dpkg.stdout).lines().count();
    assert!(installed > 80, "dpkg-query lists {installed}");
    let out = wharf(&["sbom", &src, "--db", db_s, "--format", "spdx"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let spdx: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
    let debs = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["externalRefs"].as_array().is_some_and(|r| {
                r.iter().any(|e| {
                    e["referenceLocator"]
                        .as_str()
                        .is_some_and(|l| l.starts_with("pkg:deb/debian/"))
                })
            })
        })
        .count();
    assert_eq!(debs, installed);
    let out = wharf(&["sbom", &src, "--db", db_s]);
    let cdx: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cdx["specVersion"], "1.6");
    assert!(cdx["components"].as_array().unwrap().len() >= installed);
}

fn admin_get(w: &AuthWharf, path: &str) -> Value {
    w.http()
        .request(
            "GET",
            path,
            &[("Authorization", &basic(ADMIN.0, ADMIN.1))],
            &[],
        )
        .unwrap()
        .expect(200)
        .json()
}

fn scan_of(w: &AuthWharf, repo: &str, reference: &str) -> Value {
    admin_get(
        w,
        &format!("/api/v1/scan/images?repository={repo}&reference={reference}"),
    )
}

/// Polls until the scan of `repo:reference` is `done` (or `limit` passes).
fn wait_done(w: &AuthWharf, repo: &str, reference: &str, limit: Duration) -> (Value, Duration) {
    let start = Instant::now();
    loop {
        let s = scan_of(w, repo, reference);
        if s["state"] == "done" || start.elapsed() > limit {
            return (s, start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metric(port: u16, name: &str) -> f64 {
    let text = Http::new(([127, 0, 0, 1], port).into())
        .get("/metrics")
        .unwrap()
        .expect(200)
        .text();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn registry_scans_on_push_serves_findings_and_refuses_pulls_by_rule() {
    if !have_tools(
        "registry_scans_on_push_serves_findings_and_refuses_pulls_by_rule",
        &["debootstrap", "umoci", "skopeo"],
    ) {
        return;
    }
    let layout = debian_layout();
    let metrics_port = free_port();
    // The admission webhook in the same process: scan results and tags looked up in-process.
    let policy_dir = tempfile::tempdir().unwrap();
    let policy = policy_dir.path().join("admission.toml");
    std::fs::write(
        &policy,
        "[pss]\nmode = \"off\"\n[images]\ndigest = \"enforce\"\n\
         [vulnerabilities]\nmode = \"enforce\"\nseverity = \"critical\"\nunscanned = \"enforce\"\n\
         [mutate]\npin = true\n",
    )
    .unwrap();
    let cfg = format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n\
         [admission]\npolicy = \"{}\"\n\n\
         [scan]\nsbom_referrers = [\"dev/*\"]\non_push = [\"dev/*\", \"prod/*\"]\n\n\
         [[scan.pull_rule]]\nrepositories = \"prod/*\"\nseverity = \"critical\"\n\n\
         [[scan.pull_rule]]\nrepositories = \"legacy/*\"\nseverity = \"critical\"\n",
        policy.display()
    );
    let mut w = AuthWharf::new(&cfg);
    w.must_cli(
        &["user", "add", ADMIN.0, "--admin"],
        &format!("{}\n", ADMIN.1),
    );
    w.start();
    let creds = format!("{}:{}", ADMIN.0, ADMIN.1);
    let push = |dest: &str| {
        let start = Instant::now();
        run(skopeo(&w.scratch())
            .args([
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                "--dest-creds",
                &creds,
            ])
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://{}/{dest}", w.host())));
        start.elapsed()
    };

    // Pushed with no database loaded: analysed on push all the same (findings empty, a warning).
    let took = push("dev/debian:12");
    let (s, waited) = wait_done(&w, "dev/debian", "12", Duration::from_secs(60));
    assert_eq!(s["state"], "done", "{s}");
    eprintln!("[e2e] push {took:?}; scan done {waited:?} after the push returned");
    assert!(s["packages"].as_u64().unwrap() > 80, "{s}");
    assert_eq!(s["findings"].as_array().unwrap().len(), 0);
    assert!(
        s["warnings"][0]
            .as_str()
            .unwrap()
            .contains("no vulnerability database"),
        "{s}"
    );
    assert_eq!(
        metric(metrics_port, "wharf_scan_layers_analysed_total"),
        1.0
    );

    // The CLI reads the same image from the registry (docker://, plain HTTP, credentials from
    // an auth file as podman and skopeo write it).
    let auth_file = w.scratch().join("auth.json");
    std::fs::write(
        &auth_file,
        format!(
            "{{\"auths\":{{\"{}\":{{\"auth\":\"{}\"}}}}}}",
            w.host(),
            base64::engine::general_purpose::STANDARD.encode(&creds)
        ),
    )
    .unwrap();
    let db = w.scratch().join("cli-db");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.args(["scan", "--tls-verify=false", "--format", "json", "--db"])
        .arg(&db)
        .arg(format!("docker://{}/dev/debian:12", w.host()))
        .env("REGISTRY_AUTH_FILE", &auth_file)
        .env_remove("WHARF_DATA_DIR");
    let out = run_any(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["distribution"]["id"], "debian", "{report}");
    assert_eq!(
        report["image"]["manifest_digest"].as_str(),
        s["digest"].as_str(),
        "{report}"
    );

    // Its SBOM is attached as an OCI 1.1 referrer (CycloneDX), listing every package.
    let digest = s["digest"].as_str().unwrap().to_string();
    let auth = basic(ADMIN.0, ADMIN.1);
    let start = Instant::now();
    let referrers = loop {
        let r = w
            .http()
            .request(
                "GET",
                &format!("/v2/dev/debian/referrers/{digest}"),
                &[("Authorization", &auth)],
                &[],
            )
            .unwrap()
            .expect(200)
            .json();
        if !r["manifests"].as_array().unwrap().is_empty()
            || start.elapsed() > Duration::from_secs(10)
        {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let sbom_desc = &referrers["manifests"][0];
    assert_eq!(
        sbom_desc["artifactType"], "application/vnd.cyclonedx+json",
        "{referrers}"
    );
    let sbom_manifest = w
        .http()
        .request(
            "GET",
            &format!(
                "/v2/dev/debian/manifests/{}",
                sbom_desc["digest"].as_str().unwrap()
            ),
            &[
                ("Authorization", &auth),
                ("Accept", "application/vnd.oci.image.manifest.v1+json"),
            ],
            &[],
        )
        .unwrap()
        .expect(200)
        .json();
    assert_eq!(sbom_manifest["subject"]["digest"], digest.as_str());
    let blob = sbom_manifest["layers"][0]["digest"].as_str().unwrap();
    let bom = w
        .http()
        .request(
            "GET",
            &format!("/v2/dev/debian/blobs/{blob}"),
            &[("Authorization", &auth)],
            &[],
        )
        .unwrap()
        .expect(200)
        .json();
    assert_eq!(bom["specVersion"], "1.6");
    assert!(bom["components"].as_array().unwrap().len() > 80);

    // The database imported by the CLI while the server runs: the server picks it up and
    // re-matches the stored image, reading no layer again.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.args(["vulndb", "import"])
        .args(debian_feeds())
        .arg("--data-dir")
        .arg(w.data_dir());
    run(&mut cmd);
    let start = Instant::now();
    let s = loop {
        let s = scan_of(&w, "dev/debian", "12");
        if !s["findings"].as_array().unwrap().is_empty()
            || start.elapsed() > Duration::from_secs(40)
        {
            break s;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let found: Vec<&str> = s["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(found.contains(&"CVE-2023-45853"), "{s}");
    assert!(found.contains(&"CVE-2011-3374"), "{s}");
    assert!(s["summary"]["critical"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(
        metric(metrics_port, "wharf_scan_layers_analysed_total"),
        1.0
    );

    // The same image in a repository with a pull rule (and no SBOM referrers): its layer is
    // reused, not read again.
    push("prod/debian:12");
    let (s, _) = wait_done(&w, "prod/debian", "12", Duration::from_secs(60));
    assert_eq!(s["state"], "done", "{s}");
    assert!(metric(metrics_port, "wharf_scan_layers_reused_total") >= 1.0);
    assert_eq!(
        metric(metrics_port, "wharf_scan_layers_analysed_total"),
        1.0
    );

    // The admission webhook on the registry's own port: the tag is pinned to the digest this
    // Wharf holds (looked up in-process: no credentials, no HTTP), and the image is refused for
    // its critical finding, by name; an image this Wharf does not hold cannot be judged.
    let review = |images: &[String]| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../policy/tests/fixtures/review-hardened-deployment.json");
        let mut rv: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let c = rv["request"]["object"]["spec"]["template"]["spec"]["containers"][0].clone();
        rv["request"]["object"]["spec"]["template"]["spec"]["containers"] = images
            .iter()
            .enumerate()
            .map(|(i, img)| {
                let mut c = c.clone();
                c["name"] = format!("c{i}").into();
                c["image"] = img.as_str().into();
                c
            })
            .collect();
        rv
    };
    let post = |path: &str, rv: &Value| -> Value {
        let r = w
            .http()
            .request(
                "POST",
                path,
                &[("Content-Type", "application/json")],
                &serde_json::to_vec(rv).unwrap(),
            )
            .unwrap()
            .expect(200);
        r.json()["response"].clone()
    };
    let prod = format!("{}/prod/debian:12", w.host());
    let r = post("/admission/v1/mutate", &review(std::slice::from_ref(&prod)));
    let patch: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(
                r["patch"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no patch: {r}")),
            )
            .unwrap(),
    )
    .unwrap();
    let pinned = patch[0]["value"].as_str().unwrap().to_owned();
    assert_eq!(
        pinned,
        format!("{prod}@{}", s["digest"].as_str().unwrap()),
        "{patch}"
    );
    let r = post(
        "/admission/v1/validate",
        &review(std::slice::from_ref(&pinned)),
    );
    assert_eq!(r["allowed"], false, "{r}");
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("[images.vulnerabilities] container \"c0\"")
            && msg.contains("unignored finding")
            && msg.contains("CVE-2023-45853 in zlib1g"),
        "{msg}"
    );
    let absent = format!("{}/nowhere/app:1", w.host());
    let r = post("/admission/v1/validate", &review(&[absent]));
    assert_eq!(r["allowed"], false, "{r}");
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("[images.unscanned]") && msg.contains("is not in this Wharf"),
        "{msg}"
    );
    assert_eq!(metric(metrics_port, "wharf_admission_reviews_total"), 3.0);

    // GET refused with DENIED naming the finding; HEAD allowed; the unruled repository pulls.
    let accept = "application/vnd.oci.image.manifest.v1+json";
    let r = w
        .http()
        .request(
            "GET",
            "/v2/prod/debian/manifests/12",
            &[("Authorization", &auth), ("Accept", accept)],
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.dump());
    assert!(
        r.text().contains("DENIED") && r.text().contains("CVE-2023-45853"),
        "{}",
        r.text()
    );
    let r = w
        .http()
        .request(
            "HEAD",
            "/v2/prod/debian/manifests/12",
            &[("Authorization", &auth), ("Accept", accept)],
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 200);
    w.http()
        .request(
            "GET",
            "/v2/dev/debian/manifests/12",
            &[("Authorization", &auth), ("Accept", accept)],
            &[],
        )
        .unwrap()
        .expect(200);
    // An image no push scanned (legacy/ is not in on_push): its first GET is refused as
    // unscanned and queues it; once scanned, the rule judges its findings.
    // (The zstd copy of the image: another digest, so no earlier scan applies.)
    run(skopeo(&w.scratch())
        .args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
        ])
        .arg(format!(
            "oci:{}:latest",
            layout.parent().unwrap().join("debian-zstd-oci").display()
        ))
        .arg(format!("docker://{}/legacy/debian:12", w.host())));
    assert_eq!(scan_of(&w, "legacy/debian", "12")["state"], "unscanned");
    let r = w
        .http()
        .request(
            "GET",
            "/v2/legacy/debian/manifests/12",
            &[("Authorization", &auth), ("Accept", accept)],
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.dump());
    assert!(r.text().contains("no scan result yet"), "{}", r.text());
    let (s, _) = wait_done(&w, "legacy/debian", "12", Duration::from_secs(60));
    assert_eq!(s["state"], "done", "{s}");
    let r = w
        .http()
        .request(
            "GET",
            "/v2/legacy/debian/manifests/12",
            &[("Authorization", &auth), ("Accept", accept)],
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.dump());
    assert!(r.text().contains("CVE-2023-45853"), "{}", r.text());

    // skopeo sees the refusal too.
    let out = run_any(
        skopeo(&w.scratch())
            .args(["inspect", "--tls-verify=false", "--creds", &creds, "--raw"])
            .arg(format!("docker://{}/prod/debian:12", w.host())),
    );
    assert!(!out.status.success());
    assert!(metric(metrics_port, "wharf_scan_pulls_denied_total") >= 1.0);

    // Rescan through the API (audited), and the scanner's status.
    let r = w
        .http()
        .request(
            "POST",
            "/api/v1/scan/images",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            br#"{"repository":"dev/debian","reference":"12"}"#,
        )
        .unwrap()
        .expect(202);
    assert_eq!(r.json()["queued"], true);
    let st = admin_get(&w, "/api/v1/scan/status");
    assert!(st["queue_depth"].is_u64(), "{st}");
    // Audit events reach storage asynchronously: give them a moment.
    let start = Instant::now();
    let audit = loop {
        let a = admin_get(&w, "/api/v1/audit?action=scan.queue");
        if a.to_string().contains("dev/debian") || start.elapsed() > Duration::from_secs(10) {
            break a;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(audit.to_string().contains("dev/debian"), "{audit}");
    // Unknown manifest: 404; anonymous: 401.
    let r = w
        .http()
        .request(
            "GET",
            "/api/v1/scan/images?repository=dev/nothing&reference=1",
            &[("Authorization", &auth)],
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 404);
    let r = w
        .http()
        .get("/api/v1/scan/images?repository=dev/debian&reference=12")
        .unwrap();
    assert_eq!(r.status, 401);
}

/// Kills a child process when dropped.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_server_downloads_its_feeds_and_loads_them() {
    // The feed: Debian's DSAs as an OSV all.zip (zipped here), served over plain HTTP on
    // loopback by Python's http.server.
    let site = tempfile::tempdir().unwrap();
    let zip = site.path().join("debian-dsa.zip");
    let dsa = vulndata().join("debian/osv/DSA");
    run(Command::new("python3").args([
        "-c",
        "import sys, zipfile, pathlib\n\
         src = pathlib.Path(sys.argv[2])\n\
         with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n\
         \x20   [z.write(p, p.name) for p in sorted(src.rglob('*.json'))]\n",
        zip.to_str().unwrap(),
        dsa.to_str().unwrap(),
    ]));
    let port = free_port();
    let server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(site.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let _server = Reap(server);
    // Serving before the registry starts (its first download runs at start).
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "http.server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let cfg = format!(
        "[scan]\nupdate_interval_seconds = 3600\n\n\
         [[scan.feed]]\nname = \"debian-dsa\"\nurl = \"http://127.0.0.1:{port}/debian-dsa.zip\"\n"
    );
    let mut w = AuthWharf::new(&cfg);
    w.must_cli(
        &["user", "add", ADMIN.0, "--admin"],
        &format!("{}\n", ADMIN.1),
    );
    w.start();
    let start = Instant::now();
    let status = loop {
        let st = admin_get(&w, "/api/v1/scan/status");
        if !st["feeds"].as_array().unwrap().is_empty() || start.elapsed() > Duration::from_secs(60)
        {
            break st;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let feed = &status["feeds"][0];
    assert_eq!(feed["name"], "debian-dsa", "{status}");
    assert_eq!(feed["records"], 15, "{status}");
    assert_eq!(feed["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(status["warnings"].as_array().unwrap().len(), 0, "{status}");
}
