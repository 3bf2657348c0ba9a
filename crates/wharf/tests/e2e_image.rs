//! Wharf's own image, end to end: `scripts/build-image.sh` packs this test's `wharf` binary
//! (umoci, no daemon), and the test checks the image config and annotations, that the root
//! filesystem holds no shell and every library the binary needs (the binary runs with the
//! unpacked rootfs as its root, `unshare --user --map-root-user`, so the rootfs' own dynamic
//! loader and libraries are the only ones it can find: `--version`, and `serve` on a read-only
//! root with a data volume and a tmpfs /tmp, as the pod runs it), that the
//! build is reproducible from SOURCE_DATE_EPOCH, that the image's own CLI creates the first
//! administrator through the loopback management API of the server running from the image (as
//! docs/kubernetes.md does with `kubectl exec`), and then the push to a real `wharf serve`:
//! the SBOM referrer the script attaches, `wharf verify` of the signature `wharf sign` made
//! (and a refusal with another key), and a pull back with podman (vfs storage) with the same
//! digest. Missing tools fail the test (scripts/install-test-deps.sh installs them). The script
//! runs as root (the layer records /var/lib/wharf as owned by 65532), as CI does here.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// A fixed build time: 2023-11-14T22:13:20Z.
const EPOCH: &str = "1700000000";
const CREATED: &str = "2023-11-14T22:13:20Z";
const SOURCE: &str = "https://example.invalid/wharf";
const CYCLONEDX: &str = "application/vnd.cyclonedx+json";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn require_tools(tools: &[&str]) {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "e2e_image needs {}: run scripts/install-test-deps.sh",
        missing.join(", ")
    );
}

/// The wharf binary's version, as the script reads it.
fn version() -> String {
    let out = run(Command::new(env!("CARGO_BIN_EXE_wharf")).arg("--version"));
    out.split_whitespace().nth(1).unwrap().to_owned()
}

/// `scripts/build-image.sh ARGS` with a hermetic environment (no credentials from the host).
fn build_image(home: &Path, epoch: &str, args: &[&str]) -> Command {
    let mut c = Command::new(repo().join("scripts/build-image.sh"));
    c.arg("--binary")
        .arg(env!("CARGO_BIN_EXE_wharf"))
        .arg("--source")
        .arg(SOURCE)
        .args(args)
        .env("SOURCE_DATE_EPOCH", epoch)
        .env("HOME", home)
        .env("DOCKER_CONFIG", home.join("docker"))
        .env("REGISTRY_AUTH_FILE", home.join("auth.json"))
        .env("XDG_RUNTIME_DIR", home)
        .env("COSIGN_PASSWORD", "image-test-password")
        .env("RUST_BACKTRACE", "0")
        .env_remove("WHARF_CONFIG");
    c
}

fn wharf(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wharf"));
    c.env("HOME", home)
        .env("DOCKER_CONFIG", home.join("docker"))
        .env("REGISTRY_AUTH_FILE", home.join("auth.json"))
        .env("COSIGN_PASSWORD", "image-test-password")
        .env("RUST_BACKTRACE", "0");
    c
}

fn blob_json(layout: &Layout, digest: &str) -> Value {
    serde_json::from_slice(&layout.blob(digest)).unwrap()
}

/// Every path of the unpacked root filesystem, relative, with `/` separators.
fn walk(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
            out.insert(rel);
        }
    }
    out
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    use std::io::Read as _;
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// Runs a program of the unpacked rootfs with the rootfs as `/` (a user namespace maps us to
/// root inside, so no privilege is needed), with an empty environment but PATH.
fn in_rootfs(rootfs: &Path) -> Command {
    let mut c = in_rootfs_namespaces();
    c.arg(format!("--root={}", rootfs.display()));
    c
}

/// Runs a program of the unpacked rootfs as the pod does: the rootfs as `/`, read-only
/// (`readOnlyRootFilesystem`), `data` mounted at /var/lib/wharf (the volume) and a tmpfs at
/// /tmp (the emptyDir), in user and mount namespaces of its own (no privilege needed). The
/// host's mount, chroot and sh set it up before the chroot; the image has no shell.
fn in_pod(rootfs: &Path, data: &Path) -> Command {
    const SETUP: &str = r#"set -e
root="$1"; data="$2"; mount="$3"; chroot="$4"; shift 4
"$mount" --rbind "$root" "$root"
"$mount" -o remount,bind,ro "$root"
"$mount" --bind "$data" "$root/var/lib/wharf"
"$mount" -t tmpfs -o mode=1777 tmpfs "$root/tmp"
exec "$chroot" "$root" "$@""#;
    let mut c = in_rootfs_namespaces();
    c.arg("--mount")
        .arg(which("sh").expect("sh"))
        .arg("-c")
        .arg(SETUP)
        .arg("pod")
        .arg(rootfs)
        .arg(data)
        .arg(which("mount").expect("mount"))
        .arg(which("chroot").expect("chroot"));
    c
}

/// `unshare --user --map-root-user` with an empty environment but PATH.
fn in_rootfs_namespaces() -> Command {
    let mut c = Command::new(which("unshare").expect("unshare"));
    c.env_clear()
        .env("PATH", "/usr/local/bin")
        .arg("--user")
        .arg("--map-root-user");
    c
}

#[test]
fn wharf_image_builds_runs_pushes_signs_and_pulls_back() {
    require_tools(&[
        "umoci",
        "skopeo",
        "podman",
        "objcopy",
        "readelf",
        "python3",
        "unshare",
        "tar",
        "git",
        "dpkg-query",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    fs::create_dir_all(&home).unwrap();
    let version = version();
    let server = Server::start_kind(Kind::Wharf);
    let repo_ref = format!("{}/wharf/wharf", server.host());
    let push_ref = format!("{repo_ref}:{version}");

    // Keys: the one the script signs with, and another one.
    run(wharf(&home)
        .args(["key", "generate", "--output-prefix"])
        .arg(tmp.path().join("release")));
    run(wharf(&home)
        .args(["key", "generate", "--output-prefix"])
        .arg(tmp.path().join("other")));

    // Build, push, attach the SBOM, sign.
    let out_dir = tmp.path().join("image");
    let key = tmp.path().join("release.key");
    let start = Instant::now();
    let stdout = run(&mut build_image(
        &home,
        EPOCH,
        &[
            "--out",
            out_dir.to_str().unwrap(),
            "--tag",
            "latest",
            "--push",
            &push_ref,
            "--insecure",
            "--sign-key",
            key.to_str().unwrap(),
        ],
    ));
    let build_push_secs = start.elapsed().as_secs_f64();
    let digest = stdout.lines().last().unwrap().trim().to_owned();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{stdout}"
    );

    // --- the layout and the image config ---------------------------------------------------
    let layout = Layout::at(&out_dir);
    let image = layout.image(&version);
    assert_eq!(image.digest, digest);
    assert_eq!(image.media_type, OCI_MANIFEST);
    assert_eq!(layout.image("latest").digest, digest);
    let tags: BTreeSet<String> = layout.tags().into_iter().collect();
    assert_eq!(
        tags,
        BTreeSet::from([
            version.clone(),
            "latest".to_owned(),
            format!("{version}.sbom")
        ])
    );
    let manifest = layout.manifest_json(&digest);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "one layer: {manifest:#}");
    assert_eq!(layers[0]["mediaType"], OCI_LAYER_GZIP);
    let layer_bytes = layers[0]["size"].as_u64().unwrap();
    let ann = &manifest["annotations"];
    let revision = run(Command::new("git")
        .arg("-C")
        .arg(repo())
        .args(["rev-parse", "HEAD"]));
    for (k, v) in [
        ("title", "wharf"),
        ("version", version.as_str()),
        ("revision", revision.trim()),
        ("source", SOURCE),
        ("created", CREATED),
        ("licenses", "Apache-2.0"),
    ] {
        assert_eq!(
            ann[format!("org.opencontainers.image.{k}")],
            v,
            "annotation {k}: {ann:#}"
        );
    }
    let config = blob_json(&layout, manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(config["created"], CREATED);
    assert_eq!(config["os"], "linux");
    let c = &config["config"];
    assert_eq!(c["User"], "65532:65532");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/usr/local/bin/wharf"]));
    assert_eq!(
        c["Cmd"],
        serde_json::json!([
            "serve",
            "--listen",
            "0.0.0.0:5000",
            "--data-dir",
            "/var/lib/wharf"
        ])
    );
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"5000/tcp": {}, "5001/tcp": {}})
    );
    assert_eq!(c["Volumes"], serde_json::json!({"/var/lib/wharf": {}}));
    assert_eq!(c["Labels"], *ann, "config labels repeat the annotations");

    // --- the root filesystem ---------------------------------------------------------------
    // Ownership and modes as the layer records them.
    let listing = run(Command::new("tar")
        .args(["--numeric-owner", "-tvzf"])
        .arg(layout.blob_path(layers[0]["digest"].as_str().unwrap())));
    let wharf_dir = listing
        .lines()
        .find(|l| l.ends_with(" var/lib/wharf/"))
        .unwrap_or_else(|| panic!("no /var/lib/wharf in the layer:\n{listing}"));
    assert!(
        wharf_dir.starts_with("drwx------ 65532/65532 "),
        "{wharf_dir}"
    );
    for l in listing.lines().filter(|l| !l.ends_with(" var/lib/wharf/")) {
        assert!(l.contains(" 0/0 "), "owned by root: {l}");
        assert!(
            l.contains(" 2023-11-14 "),
            "mtime from SOURCE_DATE_EPOCH: {l}"
        );
    }

    let bundle = tmp.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:{version}", out_dir.display()))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    let paths = walk(&rootfs);
    for shell in ["sh", "bash", "dash", "ash", "busybox", "zsh"] {
        assert!(
            !paths
                .iter()
                .any(|p| Path::new(p).file_name().unwrap() == shell),
            "{shell} in the image: {paths:?}"
        );
    }
    let elves: BTreeSet<&str> = paths
        .iter()
        .filter(|p| rootfs.join(p).is_file() && is_elf(&rootfs.join(p)))
        .map(String::as_str)
        .collect();
    assert!(elves.contains("usr/local/bin/wharf"), "{elves:?}");
    // The only executables are wharf and the libraries it links (and their loader).
    for e in &elves {
        assert!(
            *e == "usr/local/bin/wharf" || e.contains(".so"),
            "unexpected executable {e}"
        );
    }
    let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("wharf:x:65532:65532:")),
        "{passwd}"
    );
    assert!(
        !passwd.contains("/bin/sh") && !passwd.contains("/bin/bash"),
        "{passwd}"
    );
    let group = fs::read_to_string(rootfs.join("etc/group")).unwrap();
    assert!(group.lines().any(|l| l == "wharf:x:65532:"), "{group}");
    let ca = fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(ca.matches("BEGIN CERTIFICATE").count() > 50, "CA roots");
    // Debug info stripped (--strip debug, the default); symbols kept for backtraces.
    let sections = run(Command::new("readelf")
        .arg("-S")
        .arg(rootfs.join("usr/local/bin/wharf")));
    assert!(!sections.contains(".debug_info"), "{sections}");
    assert!(sections.contains(".symtab"), "{sections}");

    // Every ELF dependency is in the image: with the rootfs as `/`, the binary can only load
    // the image's loader and libraries.
    let v = run(in_rootfs(&rootfs).args(["/usr/local/bin/wharf", "--version"]));
    assert_eq!(v.trim(), format!("wharf {version}"));
    // And the server starts and answers from the image's files alone, on a read-only root
    // with its data volume and /tmp, as in the pod.
    let volume = tmp.path().join("volume");
    fs::create_dir_all(&volume).unwrap();
    let port = free_port();
    let mut serve = in_pod(&rootfs, &volume)
        .args([
            "/usr/local/bin/wharf",
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            "/var/lib/wharf",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(tmp.path().join("rootfs-serve.log")).unwrap())
        .spawn()
        .unwrap();
    let http = Http::new(([127, 0, 0, 1], port).into());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get("/readyz")
            && r.status == 200
        {
            break;
        }
        if let Some(st) = serve.try_wait().unwrap() {
            panic!(
                "wharf from the image exited ({st}): {}",
                fs::read_to_string(tmp.path().join("rootfs-serve.log")).unwrap()
            );
        }
        assert!(
            Instant::now() < deadline,
            "wharf from the image never got ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    http.get("/v2/").unwrap().expect(200);
    // The first administrator as docs/kubernetes.md creates it (`kubectl exec -i wharf-0 --
    // wharf user add root --admin --server http://127.0.0.1:5000`): the image's own CLI, in
    // the container's environment, through the loopback management API of the running server.
    let mut add = in_pod(&rootfs, &volume)
        .args([
            "/usr/local/bin/wharf",
            "user",
            "add",
            "root",
            "--admin",
            "--server",
            &format!("http://127.0.0.1:{port}"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = add.stdin.take().unwrap();
        stdin.write_all(b"a-long-password\n").unwrap();
    }
    let added = add.wait_with_output().unwrap();
    assert!(
        added.status.success(),
        "user add through the image: {}{}",
        String::from_utf8_lossy(&added.stdout),
        String::from_utf8_lossy(&added.stderr)
    );
    // Access control is on from then on.
    http.get("/v2/").unwrap().expect(401);
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("root:a-long-password");
    http.request(
        "GET",
        "/v2/",
        &[("Authorization", &format!("Basic {basic}"))],
        &[],
    )
    .unwrap()
    .expect(200);
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(
        volume.join("meta.redb").is_file(),
        "the data went into the volume at /var/lib/wharf"
    );
    assert_eq!(
        fs::read_dir(rootfs.join("var/lib/wharf")).unwrap().count(),
        0,
        "nothing was written into the image"
    );

    // --- the SBOM: in the layout, and pushed as a referrer ----------------------------------
    let sbom_ref = layout.image(&format!("{version}.sbom"));
    let sbom_manifest = layout.manifest_json(&sbom_ref.digest);
    assert_eq!(sbom_manifest["artifactType"], CYCLONEDX);
    assert_eq!(sbom_manifest["subject"]["digest"], digest.as_str());
    assert_eq!(sbom_manifest["subject"]["size"], image.size);
    let sbom_layer = &sbom_manifest["layers"][0];
    assert_eq!(sbom_layer["mediaType"], CYCLONEDX);
    let sbom = blob_json(&layout, sbom_layer["digest"].as_str().unwrap());
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    assert_eq!(sbom["metadata"]["timestamp"], CREATED);
    // The packages of the libraries the image carries, at this machine's versions.
    let libc_version = run(Command::new("dpkg-query").args(["-W", "-f=${Version}", "libc6"]));
    let components = sbom["components"].as_array().unwrap();
    assert!(
        components
            .iter()
            .any(|c| c["name"] == "libc6" && c["version"] == libc_version.as_str()),
        "libc6 {libc_version} not in the SBOM: {sbom:#}"
    );
    // The same packages `wharf sbom` finds in the image itself.
    let direct: Value = serde_json::from_str(&run(wharf(&home)
        .args(["sbom", "--format", "cyclonedx"])
        .arg(layout.oci_ref(&version))))
    .unwrap();
    assert_eq!(direct["components"], sbom["components"]);

    let referrers = server
        .http()
        .get(&format!("/v2/wharf/wharf/referrers/{digest}"))
        .unwrap()
        .expect(200)
        .json();
    let listed: Vec<&Value> = referrers["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["artifactType"] == CYCLONEDX)
        .collect();
    assert_eq!(listed.len(), 1, "{referrers:#}");
    assert_eq!(listed[0]["digest"], sbom_ref.digest.as_str());
    let pushed_sbom = server
        .http()
        .get_blob("wharf/wharf", sbom_layer["digest"].as_str().unwrap())
        .unwrap()
        .expect(200);
    assert_eq!(
        pushed_sbom.body,
        layout.blob(sbom_layer["digest"].as_str().unwrap())
    );

    // --- the pushed image and its signature -------------------------------------------------
    let pushed = server
        .http()
        .get_manifest("wharf/wharf", &version)
        .unwrap()
        .expect(200);
    assert_eq!(sha256_digest(&pushed.body), digest);
    assert_eq!(pushed.body, layout.blob(&digest), "pushed byte for byte");
    let verified = run(wharf(&home)
        .arg("verify")
        .arg(&push_ref)
        .arg("--key")
        .arg(tmp.path().join("release.pub")));
    assert!(verified.contains(&digest), "{verified}");
    let refused = run_fail(
        wharf(&home)
            .arg("verify")
            .arg(&push_ref)
            .arg("--key")
            .arg(tmp.path().join("other.pub")),
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no valid signature"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // --- pulled back with podman ------------------------------------------------------------
    let podman = Podman::new();
    let start = Instant::now();
    run(podman
        .cmd()
        .args(["pull", "--quiet", "--tls-verify=false"])
        .arg(&push_ref));
    let pull_secs = start.elapsed().as_secs_f64();
    let inspect: Value =
        serde_json::from_str(&run(podman.cmd().args(["image", "inspect"]).arg(&push_ref))).unwrap();
    let img = &inspect[0];
    assert_eq!(img["Digest"], digest.as_str(), "{img:#}");
    assert!(
        img["RepoDigests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d.as_str() == Some(&format!("{repo_ref}@{digest}"))),
        "{img:#}"
    );
    assert_eq!(img["Config"]["User"], "65532:65532");
    assert_eq!(
        img["Config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/wharf"])
    );
    assert_eq!(img["Labels"]["org.opencontainers.image.version"], version);

    // --- reproducible --------------------------------------------------------------------
    let again = tmp.path().join("again");
    let start = Instant::now();
    let built = run_any(&mut build_image(
        &home,
        EPOCH,
        &["--out", again.to_str().unwrap(), "--tag", "latest"],
    ));
    let build_secs = start.elapsed().as_secs_f64();
    let (stdout2, stderr2) = (
        String::from_utf8_lossy(&built.stdout).into_owned(),
        String::from_utf8_lossy(&built.stderr).into_owned(),
    );
    assert!(built.status.success(), "{stdout2}\n{stderr2}");
    // `cargo test` builds this binary without cargo-auditable: the script says what its SBOM
    // lacks (the Rust crates), and how to get them (--build).
    assert!(
        stderr2.contains("no cargo-auditable dependency record (.dep-v0)")
            && stderr2.contains("--build"),
        "{stderr2}"
    );
    assert_eq!(stdout2.lines().last().unwrap().trim(), digest);
    let again_layout = Layout::at(&again);
    assert_eq!(
        again_layout.image(&format!("{version}.sbom")).digest,
        sbom_ref.digest,
        "the SBOM artifact is reproducible too"
    );
    // ...and SOURCE_DATE_EPOCH is what fixes it.
    let later = tmp.path().join("later");
    let stdout3 = run(&mut build_image(
        &home,
        "1700086400",
        &["--out", later.to_str().unwrap()],
    ));
    assert_ne!(stdout3.lines().last().unwrap().trim(), digest);

    eprintln!(
        "[e2e_image] layer {:.1} MiB compressed (binary {:.1} MiB unstripped); build+push+sign {build_push_secs:.1}s, build alone {build_secs:.1}s, podman pull {pull_secs:.1}s",
        layer_bytes as f64 / 1048576.0,
        fs::metadata(env!("CARGO_BIN_EXE_wharf")).unwrap().len() as f64 / 1048576.0,
    );
}

#[test]
fn bad_arguments_are_refused_before_building() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let out = tmp.path().join("out");
    for (args, message) in [
        (vec!["--strip", "some"], "--strip takes debug, all or none"),
        (vec!["--frobnicate"], "unknown argument: --frobnicate"),
        (
            vec!["--out", out.to_str().unwrap(), "--sign-key", "k.key"],
            "--sign-key signs the pushed image: give --push too",
        ),
        (vec!["--build"], "--build and --binary exclude each other"),
    ] {
        let o = run_fail(&mut build_image(home, EPOCH, &args));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(message), "{args:?}: {err}");
    }
    let o = run_fail(
        Command::new(repo().join("scripts/build-image.sh"))
            .args(["--binary", "/nonexistent/wharf", "--out"])
            .arg(&out),
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/nonexistent/wharf is not an executable"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // An existing directory that is not a layout is never replaced.
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("precious"), "keep").unwrap();
    let o = run_fail(&mut build_image(
        home,
        EPOCH,
        &["--out", out.to_str().unwrap(), "--force"],
    ));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is not an OCI layout"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(fs::read_to_string(out.join("precious")).unwrap(), "keep");
}
