//! End to end: `gc` and `retention apply` report real progress. `POST /api/v1/gc` and
//! `POST /api/v1/retention/apply` with `Accept: application/x-ndjson` stream progress lines
//! (phases in order, `done` never decreasing nor above `total` within a phase, each phase
//! ending complete) and end with the same result as the plain JSON answer; refusals stay plain
//! errors. The CLI prints what it always printed off a terminal, draws a bar of the phases on
//! one (through `--server` from the stream, on a data directory from the service's hook), and
//! none with `--quiet`.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

const ADMIN: (&str, &str) = ("progress-admin", "progress-admin-password");

/// Images per repository of the retention test (keep 2: the rest go, tags and manifests).
const VERSIONS: usize = 40;

const RETENTION: &str = r#"
[[retention]]
repos = "app/*"
keep_semver = 2

[retention_schedule]
enabled = false
"#;

/// A Wharf with `config`, started, without identities (so tests push anonymously).
fn wharf(config: &str) -> AuthWharf {
    let mut w = AuthWharf::new(config);
    w.start();
    w
}

/// Restarts `w` with an administrator.
fn add_admin(w: &mut AuthWharf) {
    w.stop();
    w.must_cli(
        &["user", "add", ADMIN.0, "--admin"],
        &format!("{}\n", ADMIN.1),
    );
    w.start();
}

/// `POST path` with `body` as `login` (none: a loopback caller of a server without
/// identities), streamed (`Accept: application/x-ndjson`) or not; the answer.
fn post(
    w: &AuthWharf,
    path: &str,
    body: &Value,
    streamed: bool,
    login: Option<(&str, &str)>,
) -> Response {
    let auth = login.map(|(u, p)| basic(u, p));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    if streamed {
        headers.push(("Accept", "application/x-ndjson"));
    }
    w.http()
        .request("POST", path, &headers, body.to_string().as_bytes())
        .unwrap()
}

/// The plain JSON answer of `POST path` (as the administrator once there is one).
fn plain(w: &AuthWharf, path: &str, body: &Value, login: Option<(&str, &str)>) -> Value {
    let r = post(w, path, body, false, login).expect(200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.json()
}

/// The streamed answer of `POST path`: its progress lines, checked (each phase of `phases`
/// in turn, none skipped; within one `done` never decreases, never exceeds `total`, and ends
/// equal to it) and the last line. Returns the progress lines and the last line.
fn streamed(
    w: &AuthWharf,
    path: &str,
    body: &Value,
    phases: &[&str],
    login: Option<(&str, &str)>,
) -> (Vec<Value>, Value) {
    let r = post(w, path, body, true, login).expect(200);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let text = r.text();
    assert!(text.ends_with('\n'), "{text}");
    let mut lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let last = lines.pop().expect("no lines");
    let mut seen: Vec<&str> = Vec::new();
    let mut prev: Option<&Value> = None;
    for p in &lines {
        let phase = p["phase"].as_str().unwrap_or_else(|| panic!("{p}"));
        let done = p["done"].as_u64().unwrap_or_else(|| panic!("{p}"));
        if let Some(t) = p["total"].as_u64() {
            assert!(done <= t, "{p}");
        }
        match prev {
            Some(q) if q["phase"] == phase => {
                assert!(done >= q["done"].as_u64().unwrap(), "{q} then {p}");
            }
            _ => {
                assert_eq!(done, 0, "a phase starts at 0: {p}");
                if let Some(q) = prev {
                    assert_eq!(q["done"], q["total"], "a phase ends complete: {q}");
                }
                seen.push(phase);
            }
        }
        prev = Some(p);
    }
    let q = prev.expect("no progress lines");
    assert_eq!(q["done"], q["total"], "the last phase ends complete: {q}");
    assert_eq!(seen, phases, "{text}");
    (lines, last)
}

/// The last progress line of `phase`.
fn end_of<'a>(lines: &'a [Value], phase: &str) -> &'a Value {
    lines.iter().rev().find(|p| p["phase"] == phase).unwrap()
}

/// A report without what differs between two runs over the same content.
fn timeless(mut report: Value) -> Value {
    let o = report.as_object_mut().unwrap();
    o.remove("duration_seconds");
    o.remove("started_at");
    report
}

/// `wharf ARGS` on a pseudo-terminal with the administrator's password in the environment.
fn on_terminal(args: &[&str]) -> (String, i32) {
    wharf_on_terminal(args, &[("WHARF_PASSWORD", ADMIN.1)])
}

/// Runs `wharf ARGS` off a terminal (pipes) with the administrator's password in the
/// environment; standard output, and standard error.
fn piped(args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .env_remove("WHARF_SERVER")
        .env_remove("WHARF_USER")
        .env_remove("WHARF_CONFIG")
        .env("WHARF_PASSWORD", ADMIN.1)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "wharf {args:?}: {e}");
    (o, e)
}

/// Pushes `n` blobs that no manifest references into `repo` (garbage, once the grace period
/// is past); returns their total size.
fn push_garbage(http: &Http, repo: &str, seed: u64, n: usize) -> u64 {
    let mut bytes = 0;
    for i in 0..n {
        let data = pattern(seed * 100_000 + i as u64, 600 + i % 50);
        bytes += data.len() as u64;
        http.must_push_blob(repo, &data);
    }
    bytes
}

/// The table line `wharf gc` prints for `r` (all but the duration, which ends it).
fn gc_line_without_duration(r: &Value) -> String {
    let n = |f: &str| r[f].as_u64().unwrap();
    format!(
        "{} {} in {} blobs ({} without metadata), {} links, {} uploads ({} bytes); scanned {} manifests in {} repositories in ",
        if r["dry_run"] == true {
            "would free"
        } else {
            "freed"
        },
        human(n("bytes_freed")),
        n("blobs_deleted") + n("orphan_files_deleted"),
        n("orphan_files_deleted"),
        n("links_deleted"),
        n("uploads_expired") + n("orphan_uploads_deleted"),
        n("upload_bytes_freed"),
        n("manifests"),
        n("repositories"),
    )
}

/// The arguments as `&str`s.
fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Whether `shown` holds a bar's `] DONE/TOTAL`.
fn has_count(shown: &str) -> bool {
    shown.split("] ").skip(1).any(|rest| {
        let (done, after) = rest.split_at(rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(0));
        !done.is_empty()
            && after
                .strip_prefix('/')
                .is_some_and(|t| t.starts_with(|c: char| c.is_ascii_digit()))
    })
}

/// Sizes as the CLI prints them (KiB and up with one decimal).
fn human(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

#[test]
fn gc_streams_its_phases_and_the_plain_report_and_the_cli_draws_them() {
    assert!(have_tools(
        "gc_streams_its_phases_and_the_plain_report_and_the_cli_draws_them",
        &["python3"],
    ));
    let mut w = wharf("");
    let http = w.http();
    // 120 images in 4 repositories, and 300 blobs nothing references.
    for i in 0..120u64 {
        push_image(&http, &format!("team/r{}", i % 4), &format!("v{i}"), i);
    }
    let garbage = push_garbage(&http, "team/junk", 1, 300);
    std::thread::sleep(Duration::from_millis(1100));
    const PATH: &str = "/api/v1/gc";
    const PHASES: [&str; 4] = ["mark", "sweep", "files", "uploads"];
    let dry = json!({"dry_run": true, "grace_seconds": 0});

    // Streamed and plain, the same dry run: the same report; the phases count what it says.
    let (lines, last) = streamed(&w, PATH, &dry, &PHASES, None);
    let report = plain(&w, PATH, &dry, None);
    assert_eq!(
        timeless(last["result"].clone()),
        timeless(report.clone()),
        "{last}"
    );
    assert_eq!(report["blobs_deleted"], 300);
    assert_eq!(report["bytes_freed"].as_u64(), Some(garbage));
    assert_eq!(end_of(&lines, "mark")["done"], report["manifests"]);
    assert_eq!(report["manifests"], 120);
    let sweep = end_of(&lines, "sweep");
    assert_eq!(
        sweep["done"].as_u64(),
        Some(report["blobs_deleted"].as_u64().unwrap() + report["links_deleted"].as_u64().unwrap())
    );
    // 120 images of two blobs each, and the garbage: every file looked at.
    assert_eq!(end_of(&lines, "files")["done"], 540);
    assert!(
        lines.iter().filter(|p| p["phase"] == "sweep").count() >= 2,
        "{lines:?}"
    );

    // A refusal is a plain error, streamed or not: a bad option.
    let r = post(&w, PATH, &json!({"grace_seconds": 1u64 << 40}), true, None);
    r.expect_error(400, "grace_seconds must be at most");

    // The CLI off a terminal: what it always printed, and nothing on standard error.
    let server = w.host();
    let cli = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["gc", "--server", &server, "--grace", "0s"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let args = cli(&["--dry-run"]);
    let (out, err) = piped(&strs(&args));
    assert_eq!(err, "");
    let want = gc_line_without_duration(&report);
    assert!(out.starts_with(&want), "{out:?}\nwant {want:?}...");
    let rest = &out[want.len()..];
    assert!(
        rest.ends_with("s\n") && rest.lines().count() == 1,
        "only the duration follows: {out:?}"
    );
    let args = cli(&["--dry-run", "-o", "json"]);
    let (out, err) = piped(&strs(&args));
    assert_eq!(err, "");
    let printed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(timeless(printed), timeless(report.clone()));
    assert!(
        out.starts_with("{\n  \"dry_run\": true,\n  \"grace_seconds\": 0,\n")
            && out.ends_with("\n}\n"),
        "one pretty JSON document, fields in the report's order: {out}"
    );

    // On a terminal with --quiet: no bar, the same line.
    let args = cli(&["--dry-run", "--quiet"]);
    let (shown, code) = on_terminal(&strs(&args));
    assert_eq!(code, 0, "{shown}");
    assert!(!shown.contains("gc (dry run):"), "{shown}");
    assert!(shown.contains(&want), "{shown}");
    // On a terminal: a bar of the phases from the server's stream, then the report.
    let args = cli(&[]);
    let (shown, code) = on_terminal(&strs(&args));
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("gc: "), "no bar: {shown}");
    assert!(has_count(&shown), "no done/total: {shown}");
    let freed = format!("freed {} in 300 blobs (0 without metadata)", human(garbage));
    assert!(shown.contains(&freed), "{shown}");
    let again = plain(&w, PATH, &json!({"grace_seconds": 0}), None);
    assert_eq!(
        again["blobs_deleted"], 0,
        "the bar's run collected: {again}"
    );

    // On a data directory: the bar from the collector's own hook.
    let garbage = push_garbage(&http, "team/junk", 2, 200);
    std::thread::sleep(Duration::from_millis(1100));
    w.stop();
    let data = w.data_dir();
    let data = data.to_str().unwrap();
    let (shown, code) = on_terminal(&["gc", "--data-dir", data, "--grace", "0s"]);
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("gc: "), "no bar: {shown}");
    assert!(has_count(&shown), "no done/total: {shown}");
    assert!(
        shown.contains(&format!(
            "freed {} in 200 blobs (0 without metadata)",
            human(garbage)
        )),
        "{shown}"
    );
    let (shown, code) = on_terminal(&["gc", "--data-dir", data, "--grace", "0s", "-q"]);
    assert_eq!(code, 0, "{shown}");
    assert!(!shown.contains("gc: "), "{shown}");
    assert!(shown.contains("freed 0 B in 0 blobs"), "{shown}");

    // With identities, a wrong login is refused plainly before anything streams.
    w.start();
    add_admin(&mut w);
    let r = post(&w, PATH, &dry, true, Some((ADMIN.0, "wrong-password")));
    assert_eq!(r.status, 401, "{}", r.dump());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let (_, last) = streamed(&w, PATH, &dry, &PHASES, Some(ADMIN));
    assert_eq!(last["result"]["blobs_deleted"], 0, "{last}");
}

/// Pushes `VERSIONS` tagged images (`1.I.0`) into `repo`: one config and one layer blob shared
/// by manifests that differ by an annotation.
fn push_versions(http: &Http, repo: &str) {
    let layer = pattern(7, 1000);
    let layer_d = http.must_push_blob(repo, &layer);
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_d = http.must_push_blob(repo, config);
    for i in 0..VERSIONS {
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_d, "size": config.len()},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_d, "size": layer.len()}],
            "annotations": {"version": i.to_string()}
        }))
        .unwrap();
        http.push_manifest(repo, &format!("1.{i}.0"), OCI_MANIFEST, &m)
            .unwrap()
            .expect(201);
    }
}

/// The table `wharf retention apply` prints for `applied` (the plain answer).
fn applied_table(applied: &Value) -> String {
    let mut out = String::new();
    for a in applied.as_array().unwrap() {
        let list = |f: &str| -> Vec<String> {
            a[f].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        out += &format!(
            "repository {}: {} tag(s) and {} manifest(s) deleted\n",
            a["repo"].as_str().unwrap(),
            list("tags_deleted").len(),
            list("manifests_deleted").len()
        );
        for t in list("tags_deleted") {
            out += &format!("  deleted tag       {t}\n");
        }
        for m in list("manifests_deleted") {
            out += &format!("  deleted manifest  {m}\n");
        }
        for s in list("skipped") {
            out += &format!("  skipped           {s}\n");
        }
    }
    out
}

#[test]
fn retention_apply_streams_its_phases_and_the_plain_result_and_the_cli_draws_them() {
    assert!(have_tools(
        "retention_apply_streams_its_phases_and_the_plain_result_and_the_cli_draws_them",
        &["python3"],
    ));
    // Two servers with the same content: one answers streamed, the other plainly.
    let repos = ["app/a", "app/b", "app/c", "app/d", "app/e", "app/f"];
    let mut a = wharf(RETENTION);
    let mut b = wharf(RETENTION);
    for w in [&mut a, &mut b] {
        let http = w.http();
        for r in repos {
            push_versions(&http, r);
        }
        push_versions(&http, "other/x"); // no rule covers it
        add_admin(w);
    }
    let admin = Some(ADMIN);
    const PATH: &str = "/api/v1/retention/apply";
    const PHASES: [&str; 2] = ["plan", "delete"];
    let planned = 2 * (VERSIONS as u64 - 2);

    // One repository, streamed and plain: the same result; the phases count it.
    let only = json!({"repo": "app/a"});
    let (lines, last) = streamed(&a, PATH, &only, &PHASES, admin);
    let applied = plain(&b, PATH, &only, admin);
    assert_eq!(last, json!({ "result": applied }));
    assert_eq!(applied[0]["tags_deleted"].as_array().unwrap().len(), 38);
    assert_eq!(
        applied[0]["manifests_deleted"].as_array().unwrap().len(),
        38
    );
    assert_eq!(end_of(&lines, "plan")["total"], 1);
    let del = end_of(&lines, "delete");
    assert_eq!(del["total"].as_u64(), Some(planned));
    assert_eq!(del["repo"], "app/a");

    // Refusals are plain errors: a wrong login, a bad repository name.
    let r = post(&a, PATH, &only, true, Some((ADMIN.0, "wrong-password")));
    assert_eq!(r.status, 401, "{}", r.dump());
    let r = post(&a, PATH, &json!({"repo": "Bad Name"}), true, admin);
    assert_eq!(r.status, 400, "{}", r.dump());
    assert_eq!(r.header("content-type"), Some("application/json"));

    // The CLI off a terminal: the table and the JSON it always printed (the plain answer's).
    let server = a.host();
    let cli = |repo: &str, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "retention",
            "apply",
            "--server",
            &server,
            "--as",
            ADMIN.0,
            "--repo",
            repo,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let args = cli("app/b", &[]);
    let (out, err) = piped(&strs(&args));
    assert_eq!(err, "");
    let want = plain(&b, PATH, &json!({"repo": "app/b"}), admin);
    assert_eq!(out, applied_table(&want));
    let args = cli("app/c", &["-o", "json"]);
    let (out, err) = piped(&strs(&args));
    assert_eq!(err, "");
    let want = plain(&b, PATH, &json!({"repo": "app/c"}), admin);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), want);
    assert!(
        out.starts_with("[\n  {\n    \"repo\": \"app/c\",\n    \"tags_deleted\": [\n")
            && out.ends_with("\n  }\n]\n"),
        "one pretty JSON document, fields in the record's order: {out}"
    );

    // On a terminal: a bar of planning and deleting, then the table; none with --quiet.
    let args = cli("app/d", &[]);
    let (shown, code) = on_terminal(&strs(&args));
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("retention: "), "no bar: {shown}");
    assert!(has_count(&shown), "no done/total: {shown}");
    assert!(
        shown.contains("repository app/d: 38 tag(s) and 38 manifest(s) deleted"),
        "{shown}"
    );
    let args = cli("app/e", &["--quiet"]);
    let (shown, code) = on_terminal(&strs(&args));
    assert_eq!(code, 0, "{shown}");
    assert!(!shown.contains("retention: "), "{shown}");
    assert!(
        shown.contains("repository app/e: 38 tag(s) and 38 manifest(s) deleted"),
        "{shown}"
    );

    // Every covered repository at once, streamed (on the other server, where app/d, app/e and
    // app/f are still to do): planning counts every repository listed.
    let (lines, last) = streamed(&b, PATH, &json!({}), &PHASES, admin);
    assert_eq!(end_of(&lines, "plan")["total"], 7);
    assert_eq!(
        end_of(&lines, "delete")["total"].as_u64(),
        Some(3 * planned)
    );
    assert_eq!(last["result"].as_array().unwrap().len(), 6, "{last}");

    // On a data directory: the bar from the service's own hook (app/f is still to do here).
    a.stop();
    let cfg = a.scratch().join("retention.toml");
    std::fs::write(&cfg, RETENTION).unwrap();
    let data = a.data_dir();
    let local = |quiet: bool, repo: &str| {
        let mut args = vec![
            "retention",
            "apply",
            "--data-dir",
            data.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--repo",
            repo,
        ];
        if quiet {
            args.push("--quiet");
        }
        on_terminal(&args)
    };
    let (shown, code) = local(false, "app/f");
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("retention: "), "no bar: {shown}");
    assert!(has_count(&shown), "no done/total: {shown}");
    assert!(
        shown.contains("repository app/f: 38 tag(s) and 38 manifest(s) deleted"),
        "{shown}"
    );
    let (shown, code) = local(true, "app/f");
    assert_eq!(code, 0, "{shown}");
    assert!(!shown.contains("retention: "), "{shown}");
    assert!(
        shown.contains("repository app/f: 0 tag(s) and 0 manifest(s) deleted"),
        "{shown}"
    );
}
