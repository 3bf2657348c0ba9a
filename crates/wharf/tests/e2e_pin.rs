//! End-to-end tests of `wharf pin`: the real binary pinning Kubernetes YAML against a real
//! `wharf serve` (images pushed with skopeo, single-platform and a multi-platform index), and
//! against CNCF Distribution with htpasswd authentication using a docker `config.json`.

mod support;

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use support::*;

fn tools_ok(test: &str, extra: &[&str]) -> bool {
    let mut tools = vec!["umoci", "busybox", "skopeo"];
    tools.extend_from_slice(extra);
    tools.extend_from_slice(Kind::under_test().tools());
    have_tools(test, &tools)
}

/// `wharf pin` with a private, empty credentials environment under `home` (no docker or
/// containers auth file of the machine is read).
fn wharf_pin(home: &Path) -> Command {
    let docker = home.join("docker");
    fs::create_dir_all(&docker).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_wharf"));
    c.arg("pin")
        .env("HOME", home)
        .env("DOCKER_CONFIG", &docker)
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("REGISTRY_AUTH_FILE");
    c
}

/// Runs a command and checks its exit code; returns (stdout, stderr).
fn expect_exit(cmd: &mut Command, code: i32) -> (String, String) {
    let line = cmdline(cmd);
    let out = run_any(cmd);
    check_exit(&line, &out, code)
}

fn check_exit(line: &str, out: &Output, code: i32) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit status of `{line}`\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    (stdout, stderr)
}

/// Runs a command with `input` on its standard input.
fn run_with_stdin(cmd: &mut Command, input: &[u8], code: i32) -> (String, String) {
    let line = cmdline(cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn `{line}`: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    eprintln!("[e2e] {line} < {} bytes -> {}", input.len(), out.status);
    check_exit(&line, &out, code)
}

/// Pushes a tag of the shared test layout (with `--all` for an index), digests preserved, and
/// returns the digest the registry now serves for it.
fn push(tmp: &Path, tag: &str, dest: &str, creds: Option<&str>) -> String {
    let imgs = test_images();
    let mut c = skopeo(tmp);
    c.args([
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--preserve-digests",
    ]);
    if let Some(cr) = creds {
        c.arg("--dest-creds").arg(cr);
    }
    if tag == TAG_INDEX {
        c.arg("--all");
    }
    run(c.arg(imgs.oci_ref(tag)).arg(format!("docker://{dest}")));
    imgs.image(tag).digest
}

fn examples_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/examples");
    assert!(
        dir.is_dir(),
        "{} is missing: the shared/ folder must sit beside the repository",
        dir.display()
    );
    dir
}

fn example(name: &str) -> String {
    fs::read_to_string(examples_dir().join(name)).unwrap()
}

/// Applies (old, new) replacements, each of which must occur exactly once.
fn replaced(src: &str, changes: &[(&str, String)]) -> String {
    let mut s = src.to_owned();
    for (old, new) in changes {
        assert_eq!(s.matches(old).count(), 1, "{old:?} not unique in\n{s}");
        s = s.replacen(old, new, 1);
    }
    s
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The shared examples pinned against Wharf standing in for Docker Hub (`--mirror`): the files
/// name `my-registry/...`, `nginx`, `busybox` and `docker.io/library/python`, all Docker Hub
/// references, and come out with exactly the image scalars changed.
#[test]
fn pin_examples_against_wharf_through_a_mirror() {
    if !tools_ok("pin_examples_against_wharf_through_a_mirror", &[]) {
        return;
    }
    let server = Server::start();
    let host = server.host();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();

    let app = push(
        t,
        TAG_BASE,
        &format!("{host}/my-registry/my-app:v1.0"),
        None,
    );
    let migrate = push(
        t,
        TAG_BASE,
        &format!("{host}/my-registry/tools/migrate:1.4.2"),
        None,
    );
    let api231 = push(
        t,
        TAG_MULTI,
        &format!("{host}/my-registry/platform/api:2.3.1"),
        None,
    );
    let api220 = push(
        t,
        TAG_BASE,
        &format!("{host}/my-registry/platform/api:2.2.0"),
        None,
    );
    let nginx = push(t, TAG_INDEX, &format!("{host}/library/nginx:latest"), None);
    let python = push(t, TAG_MULTI, &format!("{host}/library/python:latest"), None);
    let busybox = push(t, TAG_INDEX, &format!("{host}/library/busybox:1.36"), None);
    assert_ne!(nginx, test_images().image(TAG_MULTI).digest);

    // The examples in a tree: a sub-directory, a .yml, a hidden directory and a non-YAML file
    // (both left alone), one file with restrictive permissions.
    let dir = t.join("manifests");
    fs::create_dir_all(dir.join("apps")).unwrap();
    fs::create_dir_all(dir.join(".git")).unwrap();
    let my_app = dir.join("my-app-deployment.yaml");
    let drift = dir.join("apps/drift-and-latest.yml");
    let pod = dir.join("apps/privileged-pod.yaml");
    fs::write(&my_app, example("my-app-deployment.yaml")).unwrap();
    fs::write(&drift, example("drift-and-latest.yaml")).unwrap();
    fs::write(&pod, example("privileged-pod.yaml")).unwrap();
    fs::set_permissions(&my_app, fs::Permissions::from_mode(0o640)).unwrap();
    let readme = "containers:\n  - image: nginx\n";
    fs::write(dir.join("README.md"), readme).unwrap();
    fs::write(
        dir.join(".git/ignored.yaml"),
        example("privileged-pod.yaml"),
    )
    .unwrap();
    let unpinned = t.join("unpinned");
    fs::create_dir_all(&unpinned).unwrap();
    fs::write(
        unpinned.join("my-app.yaml"),
        example("my-app-deployment.yaml"),
    )
    .unwrap();

    let mirror = format!("docker.io={host}");

    // --check on unpinned files: exit 1, each offender with file:line:column.
    let (_, err) = expect_exit(
        wharf_pin(t)
            .args(["--check", "--mirror", &mirror])
            .arg(&unpinned),
        1,
    );
    assert!(
        err.contains("my-app.yaml:21:18: my-registry/my-app:v1.0 (Deployment/my-app containers[0] (my-app)): not pinned to a digest"),
        "{err}"
    );

    // Pin the tree.
    let (out, err) = expect_exit(wharf_pin(t).args(["--mirror", &mirror]).arg(&dir), 0);
    assert_eq!(out, "", "pinning files prints nothing on stdout");
    assert!(err.contains("pinned 7 images in 3 files"), "{err}");
    assert_eq!(
        read(&my_app),
        replaced(
            &example("my-app-deployment.yaml"),
            &[(
                "image: my-registry/my-app:v1.0\n",
                format!("image: my-registry/my-app:v1.0@{app}\n")
            )]
        )
    );
    assert_eq!(
        read(&drift),
        replaced(
            &example("drift-and-latest.yaml"),
            &[
                (
                    "migrate:1.4.2   # keep",
                    format!("migrate:1.4.2@{migrate}   # keep")
                ),
                ("api:2.3.1\n", format!("api:2.3.1@{api231}\n")),
                ("api:2.2.0\n", format!("api:2.2.0@{api220}\n")),
                ("image: nginx\n", format!("image: nginx:latest@{nginx}\n")),
                ("python:latest\n", format!("python:latest@{python}\n")),
            ]
        )
    );
    assert_eq!(
        read(&pod),
        replaced(
            &example("privileged-pod.yaml"),
            &[("busybox:1.36\n", format!("busybox:1.36@{busybox}\n"))]
        )
    );
    assert_eq!(
        fs::metadata(&my_app).unwrap().permissions().mode() & 0o7777,
        0o640,
        "permissions kept"
    );
    assert_eq!(read(&dir.join("README.md")), readme);
    assert_eq!(
        read(&dir.join(".git/ignored.yaml")),
        example("privileged-pod.yaml")
    );
    let leftovers: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .chain(fs::read_dir(dir.join("apps")).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("wharf-pin"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // Pinned: --check passes, and pinning again changes nothing.
    let (_, err) = expect_exit(
        wharf_pin(t)
            .args(["--check", "--mirror", &mirror])
            .arg(&dir),
        0,
    );
    assert!(err.contains("7 pinned and verified, 0 problems"), "{err}");
    let before = [read(&my_app), read(&drift), read(&pod)];
    let (_, err) = expect_exit(wharf_pin(t).args(["--mirror", &mirror]).arg(&dir), 0);
    assert!(
        err.contains("pinned 0 images in 0 files, 7 already pinned"),
        "{err}"
    );
    assert_eq!([read(&my_app), read(&drift), read(&pod)], before);

    // A pinned digest that the registry no longer has fails --check, with file:line.
    server
        .http()
        .request(
            "DELETE",
            &format!("/v2/my-registry/my-app/manifests/{app}"),
            &[],
            &[],
        )
        .unwrap()
        .expect(202);
    let (_, err) = expect_exit(
        wharf_pin(t)
            .args(["--check", "--mirror", &mirror])
            .arg(&dir),
        1,
    );
    assert!(
        err.contains(&format!(
            "my-app-deployment.yaml:21:18: error: my-registry/my-app:v1.0@{app} (Deployment/my-app containers[0] (my-app)): pinned to {app}, which the registry no longer has"
        )),
        "{err}"
    );
    assert!(err.contains("6 pinned and verified, 1 problem"), "{err}");
}

/// Standard input to standard output, `--dry-run`, partial failures and bad input, against
/// images named by the registry's own address.
#[test]
fn pin_stdin_dry_run_and_errors() {
    if !tools_ok("pin_stdin_dry_run_and_errors", &[]) {
        return;
    }
    let server = Server::start();
    let host = server.host();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let app = push(t, TAG_BASE, &format!("{host}/team/app:1.0"), None);
    let multi = push(t, TAG_INDEX, &format!("{host}/team/multi:2"), None);

    // stdin -> stdout: CRLF, a comment, quotes and a flow mapping survive.
    let src = format!(
        "# Source: chart/templates/job.yaml\r\napiVersion: batch/v1\r\nkind: Job\r\nmetadata: {{name: j}}\r\nspec:\r\n  template:\r\n    spec:\r\n      containers:\r\n        - {{name: a, image: \"{host}/team/app:1.0\"}}  # quoted\r\n      initContainers:\r\n        - name: i\r\n          image: '{host}/team/multi:2'\r\n"
    );
    let (out, err) = run_with_stdin(wharf_pin(t).arg("-"), src.as_bytes(), 0);
    let want = replaced(
        &src,
        &[
            ("app:1.0\"}", format!("app:1.0@{app}\"}}")),
            ("multi:2'", format!("multi:2@{multi}'")),
        ],
    );
    assert_eq!(out, want);
    assert!(err.contains("<stdin>:9:28: "), "{err}");

    // --check on stdin prints nothing on stdout.
    let (out, _) = run_with_stdin(wharf_pin(t).args(["--check", "-"]), want.as_bytes(), 0);
    assert_eq!(out, "");
    let (_, err) = run_with_stdin(wharf_pin(t).args(["--check", "-"]), src.as_bytes(), 1);
    assert!(err.contains("<stdin>:12:18: "), "{err}");

    // --dry-run prints a diff and writes nothing.
    let file = t.join("pod.yaml");
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: {host}/team/app:1.0\n"
    );
    fs::write(&file, &pod).unwrap();
    let (diff, _) = expect_exit(wharf_pin(t).arg("--dry-run").arg(&file), 0);
    let name = file.display();
    assert_eq!(
        diff,
        format!(
            "--- {name}\n+++ {name}\n@@ -8,1 +8,1 @@\n-    image: {host}/team/app:1.0\n+    image: {host}/team/app:1.0@{app}\n"
        )
    );
    assert_eq!(read(&file), pod);
    // The diff applies with patch(1) when it is installed (its exact text is checked above
    // either way).
    if which("patch").is_none() {
        eprintln!("pin_stdin_dry_run_and_errors: patch(1) not installed, diff not applied");
    } else {
        let copy = t.join("patched.yaml");
        fs::write(&copy, &pod).unwrap();
        let mut p = Command::new("patch")
            .arg(&copy)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        p.stdin.take().unwrap().write_all(diff.as_bytes()).unwrap();
        assert!(p.wait().unwrap().success());
        assert_eq!(
            read(&copy),
            pod.replace("app:1.0\n", &format!("app:1.0@{app}\n"))
        );
    }

    // An unknown tag: exit 1 with file:line:column, and the other image is still pinned.
    let partial = t.join("partial.yaml");
    fs::write(
        &partial,
        format!("kind: Pod\nspec:\n  containers:\n  - image: {host}/team/app:1.0\n  - image: {host}/team/app:nope\n"),
    )
    .unwrap();
    let (_, err) = expect_exit(wharf_pin(t).arg(&partial), 1);
    assert!(
        err.contains(&format!(
            "partial.yaml:5:12: error: {host}/team/app:nope (Pod/ containers[1]): not found"
        )),
        "{err}"
    );
    assert_eq!(
        read(&partial),
        format!(
            "kind: Pod\nspec:\n  containers:\n  - image: {host}/team/app:1.0@{app}\n  - image: {host}/team/app:nope\n"
        )
    );

    // A symbolic link: its target is rewritten, the link stays a link.
    let target = t.join("target.yaml");
    fs::write(&target, &pod).unwrap();
    let link = t.join("link.yaml");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    expect_exit(wharf_pin(t).arg(&link), 0);
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        read(&target),
        pod.replace("app:1.0\n", &format!("app:1.0@{app}\n"))
    );

    // Invalid YAML and a missing path: exit 2, other files still processed.
    let bad = t.join("bad.yaml");
    fs::write(&bad, "kind: Pod\nspec: [\n").unwrap();
    let ok = t.join("ok.yaml");
    fs::write(&ok, &pod).unwrap();
    let (_, err) = expect_exit(wharf_pin(t).arg(&bad).arg(&ok), 2);
    assert!(err.contains("bad.yaml: error: line 3"), "{err}");
    assert!(read(&ok).contains(&app), "the good file was pinned");
    let (_, err) = expect_exit(wharf_pin(t).arg(t.join("nope.yaml")), 2);
    assert!(err.contains("nope.yaml"), "{err}");
}

/// Pinning against a registry that requires authentication (CNCF Distribution with htpasswd),
/// with credentials from a docker `config.json` written here.
#[test]
fn pin_against_distribution_with_htpasswd() {
    if !tools_ok(
        "pin_against_distribution_with_htpasswd",
        &["docker-registry"],
    ) {
        return;
    }
    let reg = AuthDistribution::start();
    let host = reg.host();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let creds = format!("{AUTH_USER}:{AUTH_PASSWORD}");
    let index = push(
        t,
        TAG_INDEX,
        &format!("{host}/secure/app:1.0"),
        Some(&creds),
    );
    let single = push(t, TAG_BASE, &format!("{host}/secure/base:1"), Some(&creds));

    let file = t.join("deploy.yaml");
    let src = format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: s\nspec:\n  template:\n    spec:\n      containers:\n        - name: app   # main\n          image: {host}/secure/app:1.0\n        - name: base\n          image: \"{host}/secure/base:1\"\n"
    );
    fs::write(&file, &src).unwrap();
    let pinned = replaced(
        &src,
        &[
            ("app:1.0\n", format!("app:1.0@{index}\n")),
            ("base:1\"", format!("base:1@{single}\"")),
        ],
    );

    // No credentials: refused, file untouched.
    let (_, err) = expect_exit(wharf_pin(t).arg(&file), 1);
    assert!(
        err.contains("deploy.yaml:10:18: error:") && err.contains("not authorized"),
        "{err}"
    );
    assert_eq!(read(&file), src);

    let config = |user: &str, password: &str| {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("{{\"auths\": {{\"{host}\": {{\"auth\": \"{auth}\"}}}}}}\n")
    };

    // A wrong password is refused too.
    let wrong = t.join("wrong.json");
    fs::write(&wrong, config(AUTH_USER, "not-the-password")).unwrap();
    let (_, err) = expect_exit(wharf_pin(t).arg("--authfile").arg(&wrong).arg(&file), 1);
    assert!(err.contains("not authorized"), "{err}");
    assert_eq!(read(&file), src);

    // --authfile with the right credentials: pinned (the index digest for the multi-platform image).
    let good = t.join("config.json");
    fs::write(&good, config(AUTH_USER, AUTH_PASSWORD)).unwrap();
    expect_exit(wharf_pin(t).arg("--authfile").arg(&good).arg(&file), 0);
    assert_eq!(read(&file), pinned);

    // The default location, $DOCKER_CONFIG/config.json: --check verifies the pinned digests.
    fs::copy(&good, t.join("docker/config.json")).unwrap();
    let (_, err) = expect_exit(wharf_pin(t).arg("--check").arg(&file), 0);
    assert!(err.contains("2 pinned and verified, 0 problems"), "{err}");
}
