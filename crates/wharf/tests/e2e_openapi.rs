//! Property-based test of the management API against its own OpenAPI document with schemathesis
//! (PyPI; `scripts/install-test-deps.sh` installs a pinned version into a venv): a real `wharf
//! serve` with access control on, an administrator, and some content for every listing to show.
//! schemathesis generates requests from the document served at `/api/v1/openapi.json` (so
//! endpoints added later are covered as soon as they are documented) and checks that the server
//! never answers 5xx, and that every status code, content type and response body is one the
//! document declares. Any failure fails this test, with schemathesis's report printed.
//!
//! Knobs: `WHARF_SCHEMATHESIS` (the executable; default: the venv the install script makes, then
//! `PATH`), `WHARF_SCHEMATHESIS_EXAMPLES` (examples per operation, default 40),
//! `WHARF_SCHEMATHESIS_SEED` (default fixed, so a CI failure reproduces locally),
//! `WHARF_SCHEMATHESIS_ARGS` (extra arguments, split at spaces: e.g. `--include-path-regex
//! /api/v1/users` to focus a local run; CI sets none).

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// The administrator schemathesis authenticates as. Its stateful phase follows links from
/// `GET /api/v1/users` to `DELETE /api/v1/users/{name}` and `PUT .../password`, so left alone it
/// deletes this account or changes its password, after which every request is a (documented)
/// 401 and the run tests nothing. [`HOOKS`] steers those two operations away from this one
/// account; every other user, the ones the run creates included, stays fair game.
const ADMIN: (&str, &str) = ("st-admin-4c1f9e", "st-admin-password-7d2b");

/// A schemathesis hooks file (`SCHEMATHESIS_HOOKS`): before each call, a path naming [`ADMIN`]
/// under `/api/v1/users/` is pointed at a user that does not exist (so the call still happens and
/// is checked: it gets a 404).
const HOOKS: &str = r#"
import schemathesis

PROTECTED = "st-admin-4c1f9e"


@schemathesis.hook
def before_call(context, case, kwargs):
    params = case.path_parameters
    if case.path.startswith("/api/v1/users/") and params.get("name") == PROTECTED:
        params["name"] = PROTECTED + "-not"
"#;

/// Wall-clock bound of the schemathesis run, whatever it is doing.
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// Where `scripts/install-test-deps.sh` puts schemathesis.
fn venv_schemathesis() -> PathBuf {
    let venv = support::test_venv("WHARF_TEST_VENV", "schemathesis");
    venv.join("bin/schemathesis")
}

/// The schemathesis executable, or None (after a loud skip notice; a panic under CI).
fn schemathesis() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WHARF_SCHEMATHESIS") {
        return Some(PathBuf::from(p));
    }
    let venv = venv_schemathesis();
    if venv.is_file() {
        return Some(venv);
    }
    if let Some(p) = which("schemathesis") {
        return Some(p);
    }
    // Reports the missing tool the harness's way: a panic under CI, a SKIP banner elsewhere.
    have_tools(
        "management_api_conforms_to_its_openapi_document",
        &["schemathesis"],
    );
    None
}

/// Pushes a one-layer image to `repo:tag` and returns its manifest digest.
fn push_image(http: &Http, auth: &str, repo: &str, tag: &str, seed: u64) -> String {
    let h = [("Authorization", auth)];
    let blob = |data: &[u8]| -> String {
        let digest = sha256_digest(data);
        let r = http
            .must("POST", &format!("/v2/{repo}/blobs/uploads/"), &h, &[])
            .expect(202);
        let put = with_query(&r.location(), &format!("digest={digest}"));
        http.must(
            "PUT",
            &put,
            &[
                ("Authorization", auth),
                ("Content-Type", "application/octet-stream"),
            ],
            data,
        )
        .expect(201);
        digest
    };
    let layer = pattern(seed, 4096);
    let layer_digest = blob(&layer);
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#);
    let config_digest = blob(config.as_bytes());
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap();
    http.must(
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Authorization", auth), ("Content-Type", OCI_MANIFEST)],
        &manifest,
    )
    .expect(201);
    sha256_digest(&manifest)
}

#[test]
fn management_api_conforms_to_its_openapi_document() {
    let Some(st) = schemathesis() else {
        return;
    };

    // A server with access control, an administrator, and one of every identity kind, so that
    // every listing has entries whose shape the document must describe. schemathesis also sends
    // requests with wrong credentials (to see that authentication is enforced); with the default
    // failed-login limit those would lock 127.0.0.1 out and leave every later request a 429,
    // testing nothing. The limiter itself is tested in e2e_auth.
    let mut s = AuthWharf::new(
        // A pull-through cache whose upstream refuses connections, so /api/v1/cache/* answer
        // (warming fails cleanly with 502); scanning on, so /api/v1/scan/* answer for real.
        "[auth]\nmode = \"on\"\nanonymous_pull = [\"public/*\"]\nmax_failed_logins = 1000000\n\n\
         [[cache.upstream]]\nhost = \"upstream.invalid\"\nurl = \"http://127.0.0.1:9\"\n\n\
         [scan]\n",
    );
    s.must_cli(
        &["user", "add", ADMIN.0, "--admin"],
        &format!("{}\n", ADMIN.1),
    );
    s.must_cli(&["user", "add", "dev"], "dev-password-1\n");
    s.must_cli(
        &[
            "robot",
            "create",
            "ci",
            "--repo",
            "team/*",
            "--actions",
            "pull,push",
        ],
        "",
    );
    s.must_cli(&["group", "set", "team", "--member", "dev"], "");
    s.must_cli(
        &[
            "rule",
            "add",
            "group:team",
            "--repo",
            "team/*",
            "--actions",
            "pull",
        ],
        "",
    );
    s.start();

    // Content: a tag moved once (tag history with a previous digest), audit events.
    let http = s.http();
    let auth = basic(ADMIN.0, ADMIN.1);
    push_image(&http, &auth, "team/app", "v1", 1);
    push_image(&http, &auth, "team/app", "v1", 2);
    push_image(&http, &auth, "public/base", "latest", 3);
    let r = http.must(
        "GET",
        "/api/v1/tags/history?repo=team/app&tag=v1",
        &[("Authorization", &auth)],
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.dump());
    assert_eq!(r.json().as_array().map(Vec::len), Some(2), "{}", r.dump());

    let examples = std::env::var("WHARF_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "40".into());
    let seed = std::env::var("WHARF_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261126".into());
    let report = s.scratch().join("schemathesis");
    let hooks = s.scratch().join("wharf_hooks.py");
    std::fs::write(&hooks, HOOKS).unwrap();
    assert!(HOOKS.contains(ADMIN.0), "HOOKS protects ADMIN");
    let mut cmd = Command::new(&st);
    cmd.arg("run")
        .arg(format!("http://{}/api/v1/openapi.json", s.host()))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance",
            "--auth",
            &format!("{}:{}", ADMIN.0, ADMIN.1),
            "--max-examples",
            &examples,
            "--seed",
            &seed,
            // One worker: with two, CPython 3.11's `ast.parse` (hypothesis describes its filter
            // lambdas with it) crashed once in the tool itself ("AST constructor recursion
            // depth mismatch"), a runtime error of schemathesis, not a finding about the server.
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--request-timeout",
            "20",
            "--suppress-health-check",
            "too_slow",
            "--continue-on-failure",
            "--output-truncate",
            "false",
            "--no-color",
            "--generation-database",
            "none",
            "--report",
            "junit",
            "--report-dir",
        ])
        .arg(&report)
        .args(
            std::env::var("WHARF_SCHEMATHESIS_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .current_dir(s.scratch())
        .env("SCHEMATHESIS_HOOKS", &hooks)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let line = cmdline(&cmd);
    let start = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("failed to start `{line}`: {e}"));
    let pid = child.id();
    // The output is collected on another thread so that the wall-clock bound can be enforced.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(RUN_LIMIT) {
        Ok(out) => out.unwrap_or_else(|e| panic!("waiting for `{line}`: {e}")),
        Err(_) => {
            signal(pid, "KILL");
            panic!("schemathesis did not finish within {RUN_LIMIT:?}:\n  {line}");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "[e2e] {line} -> {} in {:.1}s\n--- schemathesis stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status,
        start.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success(),
        "schemathesis found failures (exit {}); its report is above. Fix the handler \
         (crates/registry/src/*.rs) or the document (crates/registry/src/openapi.json), never the \
         checks.",
        out.status
    );
    // Guard against a run that tested nothing: the document was loaded and its operations
    // run, and the administrator could still log in at the end (so the run was authenticated
    // throughout, not a stream of 401s).
    assert!(
        stdout.contains("Loaded specification") && stdout.contains("Tested:"),
        "schemathesis output does not look like a run over the management API"
    );
    let r = http.must("GET", "/api/v1/users", &[("Authorization", &auth)], &[]);
    assert_eq!(
        r.status,
        200,
        "the administrator lost access during the run\n{}",
        r.dump()
    );
    assert!(
        r.json().as_array().is_some_and(|users| users
            .iter()
            .any(|u| u["name"] == ADMIN.0 && u["admin"] == true)),
        "the administrator is gone: {}",
        r.dump()
    );
}
