//! End-to-end tests: the real `wharf` binary driven by real clients (skopeo, podman, containerd's
//! ctr) and compared with CNCF Distribution as a peer. Every test builds its images offline
//! (busybox-static + umoci), runs its own server on a free loopback port with a temp data dir, and
//! can run in parallel with the others.
//!
//! `WHARF_E2E_REGISTRY=distribution cargo test -p wharf --release --test e2e_clients` runs the same
//! flows against Distribution, to tell a harness bug from a Wharf bug.

mod support;

use std::fs;
use std::path::Path;

use serde_json::Value;
use support::*;

/// Tools every test here needs, plus the registry under test's own.
fn tools_ok(test: &str, extra: &[&str]) -> bool {
    let mut tools = vec!["umoci", "busybox", "skopeo"];
    tools.extend_from_slice(extra);
    tools.extend_from_slice(Kind::under_test().tools());
    have_tools(test, &tools)
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}):\n{s}"))
}

/// Digests of a manifest's layers.
fn layer_digests(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// Pushes an image from the shared layout with skopeo, digests preserved.
fn skopeo_push(tmp: &Path, tag: &str, dest: &str, all: bool) {
    let mut c = skopeo(tmp);
    c.args([
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--preserve-digests",
    ]);
    if all {
        c.arg("--all");
    }
    run(c
        .arg(test_images().oci_ref(tag))
        .arg(format!("docker://{dest}")));
}

/// The manifest digest the registry reports for `repo:reference` (HEAD, Docker-Content-Digest),
/// checked against the body a GET returns.
fn registry_digest(http: &Http, repo: &str, reference: &str) -> String {
    let head = http
        .must(
            "HEAD",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", ACCEPT_ALL)],
            &[],
        )
        .expect(200);
    let d = head.must_header("Docker-Content-Digest").to_string();
    let get = http.get_manifest(repo, reference).unwrap().expect(200);
    assert_eq!(
        sha256_digest(&get.body),
        d,
        "HEAD digest != sha256(GET body)\n{}",
        get.dump()
    );
    assert_eq!(
        get.header("Docker-Content-Digest"),
        Some(d.as_str()),
        "GET and HEAD disagree on the digest\n{}",
        get.dump()
    );
    d
}

/// Checks through the HTTP API that every blob reachable from `digest` (as pushed from the test
/// layout) is served with the exact bytes of the layout.
fn assert_served_identically(http: &Http, repo: &str, digest: &str) {
    let imgs = test_images();
    for d in imgs.closure(digest) {
        let want = imgs.blob(&d);
        let v: Value = serde_json::from_slice(&want).unwrap_or(Value::Null);
        let is_manifest = v.get("manifests").is_some() || v.get("layers").is_some();
        let r = if is_manifest {
            http.get_manifest(repo, &d).unwrap()
        } else {
            http.get_blob(repo, &d).unwrap()
        };
        let r = r.expect(200);
        assert_eq!(
            r.body.len(),
            want.len(),
            "length of {d} in {repo}\n{}",
            r.dump()
        );
        assert!(
            r.body == want,
            "content of {d} in {repo} differs from what was pushed"
        );
    }
}

// -----------------------------------------------------------------------------------------------
// 1. skopeo
// -----------------------------------------------------------------------------------------------

#[test]
fn skopeo_copy_inspect_list_delete_roundtrip() {
    if !tools_ok("skopeo_copy_inspect_list_delete_roundtrip", &[]) {
        return;
    }
    let imgs = test_images();
    let srv = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let host = srv.host();
    let http = srv.http();
    let repo = "e2e/skopeo";
    let src = imgs.image(TAG_MULTI);
    let src_manifest = imgs.manifest_json(&src.digest);
    let src_layers = layer_digests(&src_manifest);
    assert_eq!(src_layers.len(), 3, "test image should have 3 layers");

    // --- push in OCI format, digests preserved --------------------------------------------------
    skopeo_push(tmp, TAG_MULTI, &format!("{host}/{repo}:oci"), false);

    // inspect --raw is the exact manifest that was pushed.
    let raw = run(skopeo(tmp)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{host}/{repo}:oci")));
    assert_eq!(
        raw.as_bytes(),
        imgs.blob(&src.digest).as_slice(),
        "skopeo inspect --raw != pushed manifest"
    );

    // inspect: digest, layers, platform and labels come back.
    let info = json(&run(skopeo(tmp)
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{host}/{repo}:oci"))));
    assert_eq!(
        info["Digest"],
        src.digest.as_str(),
        "skopeo inspect Digest\n{info:#}"
    );
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Os"], "linux");
    assert_eq!(info["Labels"]["org.example.layers"], "3");
    let layers: Vec<String> = info["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(layers, src_layers);

    // inspect --config --raw is the exact config blob.
    let cfg = run(skopeo(tmp)
        .args(["inspect", "--config", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{host}/{repo}:oci")));
    let cfg_digest = src_manifest["config"]["digest"].as_str().unwrap();
    assert_eq!(
        cfg.as_bytes(),
        imgs.blob(cfg_digest).as_slice(),
        "config blob differs"
    );

    // HTTP view of the same: HEAD gives digest, type and length; every blob is byte-identical.
    let head = http
        .must(
            "HEAD",
            &format!("/v2/{repo}/manifests/oci"),
            &[("Accept", ACCEPT_ALL)],
            &[],
        )
        .expect(200);
    assert_eq!(
        head.header("Docker-Content-Digest"),
        Some(src.digest.as_str()),
        "{}",
        head.dump()
    );
    assert_eq!(
        head.header("Content-Type"),
        Some(OCI_MANIFEST),
        "{}",
        head.dump()
    );
    assert_eq!(
        head.header("Content-Length"),
        Some(src.size.to_string().as_str()),
        "{}",
        head.dump()
    );
    assert_served_identically(&http, repo, &src.digest);

    // --- push the same image as Docker v2s2 --------------------------------------------------
    run(skopeo(tmp)
        .args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--format",
            "v2s2",
        ])
        .arg(imgs.oci_ref(TAG_MULTI))
        .arg(format!("docker://{host}/{repo}:v2s2")));
    let raw2 = run(skopeo(tmp)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{host}/{repo}:v2s2")));
    let m2 = json(&raw2);
    assert_eq!(
        m2["mediaType"], DOCKER_MANIFEST,
        "v2s2 manifest media type\n{m2:#}"
    );
    assert_eq!(
        layer_digests(&m2),
        src_layers,
        "v2s2 conversion must keep the layer blobs"
    );
    let v2_digest = registry_digest(&http, repo, "v2s2");
    assert_eq!(v2_digest, sha256_digest(raw2.as_bytes()));
    assert_ne!(v2_digest, src.digest);
    let head2 = http
        .must(
            "HEAD",
            &format!("/v2/{repo}/manifests/v2s2"),
            &[("Accept", ACCEPT_ALL)],
            &[],
        )
        .expect(200);
    assert_eq!(
        head2.header("Content-Type"),
        Some(DOCKER_MANIFEST),
        "{}",
        head2.dump()
    );
    // Its config blob is served and hashes to its digest.
    let c2 = m2["config"]["digest"].as_str().unwrap();
    let cb = http.get_blob(repo, c2).unwrap().expect(200);
    assert_eq!(sha256_digest(&cb.body), c2);

    // The v2s2 image read through the dir: transport keeps exact bytes: layers identical.
    let dir_out = tmp.join("dir-v2s2");
    run(skopeo(tmp)
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{host}/{repo}:v2s2"))
        .arg(format!("dir:{}", dir_out.display())));
    assert_eq!(
        fs::read(dir_out.join("manifest.json")).unwrap(),
        raw2.as_bytes()
    );
    for l in &src_layers {
        let hex = l.strip_prefix("sha256:").unwrap();
        assert!(
            fs::read(dir_out.join(hex)).unwrap() == imgs.blob(l),
            "layer {l} differs after v2s2 round trip"
        );
    }

    // --- list-tags -----------------------------------------------------------------------------
    let tags = json(&run(skopeo(tmp)
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{host}/{repo}"))));
    let mut names: Vec<&str> = tags["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["oci", "v2s2"], "list-tags\n{tags:#}");

    // --- copy back (by digest) into a fresh OCI layout: byte-identical blobs ------------------
    let out = Layout::empty_temp();
    run(skopeo(tmp)
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--preserve-digests",
        ])
        .arg(format!("docker://{host}/{repo}@{}", src.digest))
        .arg(out.oci_ref("back")));
    assert_eq!(
        out.image("back").digest,
        src.digest,
        "manifest digest changed in the round trip"
    );
    let n = assert_blobs_subset(&out, imgs);
    assert_eq!(n, 1 + 1 + 3, "manifest + config + 3 layers expected back");
    for d in imgs.closure(&src.digest) {
        assert!(
            out.blob_path(&d).is_file(),
            "blob {d} missing after round trip"
        );
    }

    // --- delete ----------------------------------------------------------------------------------
    run(skopeo(tmp)
        .args(["delete", "--tls-verify=false"])
        .arg(format!("docker://{host}/{repo}:oci")));
    run_fail(
        skopeo(tmp)
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{host}/{repo}:oci")),
    );
    let gone = http.get_manifest(repo, &src.digest).unwrap();
    assert_eq!(
        gone.status,
        404,
        "deleted manifest still served by digest\n{}",
        gone.dump()
    );
    let gone = http.get_manifest(repo, "oci").unwrap();
    assert_eq!(
        gone.status,
        404,
        "tag of a deleted manifest still resolves\n{}",
        gone.dump()
    );
    // The other tag, a different manifest, is untouched.
    assert_eq!(registry_digest(&http, repo, "v2s2"), v2_digest);
    let tags = json(&run(skopeo(tmp)
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{host}/{repo}"))));
    assert_eq!(
        tags["Tags"],
        serde_json::json!(["v2s2"]),
        "list-tags after delete\n{tags:#}"
    );
}

#[test]
fn skopeo_multi_platform_index_roundtrip() {
    if !tools_ok("skopeo_multi_platform_index_roundtrip", &[]) {
        return;
    }
    let imgs = test_images();
    let srv = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let host = srv.host();
    let http = srv.http();
    let repo = "e2e/multi";
    let idx = imgs.image(TAG_INDEX);

    skopeo_push(tmp, TAG_INDEX, &format!("{host}/{repo}:multi"), true);

    let raw = run(skopeo(tmp)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{host}/{repo}:multi")));
    assert_eq!(
        raw.as_bytes(),
        imgs.blob(&idx.digest).as_slice(),
        "index bytes differ"
    );
    assert_eq!(registry_digest(&http, repo, "multi"), idx.digest);
    let head = http
        .must(
            "HEAD",
            &format!("/v2/{repo}/manifests/multi"),
            &[("Accept", ACCEPT_ALL)],
            &[],
        )
        .expect(200);
    assert_eq!(
        head.header("Content-Type"),
        Some(OCI_INDEX),
        "{}",
        head.dump()
    );
    assert_served_identically(&http, repo, &idx.digest);

    // Platform selection by the client: arm64 resolves to the arm64 manifest.
    let arm = json(&run(skopeo(tmp)
        .args(["--override-arch", "arm64", "inspect", "--tls-verify=false"])
        .arg(format!("docker://{host}/{repo}:multi"))));
    // skopeo reports the digest of what the tag points to (the index) and the chosen image's
    // config: the arm64 one.
    assert_eq!(arm["Digest"], idx.digest.as_str(), "{arm:#}");
    assert_eq!(arm["Architecture"], "arm64", "{arm:#}");
    assert_eq!(arm["Labels"]["org.example.arch"], "arm64", "{arm:#}");
    let amd = json(&run(skopeo(tmp)
        .args(["--override-arch", "amd64", "inspect", "--tls-verify=false"])
        .arg(format!("docker://{host}/{repo}:multi"))));
    assert_eq!(amd["Architecture"], "amd64", "{amd:#}");
    assert!(amd["Labels"].get("org.example.arch").is_none(), "{amd:#}");

    // Back into a layout, every platform, byte-identical.
    let out = Layout::empty_temp();
    run(skopeo(tmp)
        .args([
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
        ])
        .arg(format!("docker://{host}/{repo}:multi"))
        .arg(out.oci_ref("back")));
    assert_eq!(out.image("back").digest, idx.digest);
    let n = assert_blobs_subset(&out, imgs);
    assert_eq!(
        n,
        imgs.closure(&idx.digest).len(),
        "every blob of the index should come back"
    );
}

// -----------------------------------------------------------------------------------------------
// 2. podman
// -----------------------------------------------------------------------------------------------

#[test]
fn podman_push_pull() {
    if !tools_ok("podman_push_pull", &["podman"]) {
        return;
    }
    let imgs = test_images();
    let srv = Server::start();
    let host = srv.host();
    let http = srv.http();
    let src = imgs.image(TAG_MULTI);
    let src_config = imgs.manifest_json(&src.digest)["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();

    // Load the image into a private podman storage from the OCI layout.
    let pusher = Podman::new();
    let id = pusher.load(imgs, TAG_MULTI);
    assert_eq!(
        format!("sha256:{id}"),
        src_config,
        "podman image ID should be the config digest"
    );

    // Push in the source's format (OCI) and as Docker v2s2.
    let mut pushed = Vec::new();
    for (tag, format) in [("v1", "oci"), ("v2s2", "v2s2")] {
        let digest_file = pusher.root.join(format!("digest-{tag}"));
        let mut c = pusher.cmd();
        c.args([
            "push",
            "--quiet",
            "--tls-verify=false",
            "--format",
            format,
            "--digestfile",
        ])
        .arg(&digest_file)
        .arg(&id)
        .arg(format!("docker://{host}/e2e/podman:{tag}"));
        run(&mut c);
        let d = fs::read_to_string(&digest_file).unwrap().trim().to_string();
        assert!(d.starts_with("sha256:"), "digestfile: {d:?}");
        assert_eq!(
            registry_digest(&http, "e2e/podman", tag),
            d,
            "registry digest of {tag} != podman's"
        );
        let m = http.get_manifest("e2e/podman", tag).unwrap().expect(200);
        let want_type = if format == "oci" {
            OCI_MANIFEST
        } else {
            DOCKER_MANIFEST
        };
        assert_eq!(
            m.json()["mediaType"].as_str().unwrap_or(OCI_MANIFEST),
            want_type
        );
        assert_eq!(m.header("Content-Type"), Some(want_type), "{}", m.dump());
        pushed.push((tag, d));
    }

    // Pull back into an empty storage: same image ID, and the pushed manifest digest recorded.
    let puller = Podman::new();
    for (tag, digest) in &pushed {
        let reference = format!("{host}/e2e/podman:{tag}");
        run(puller
            .cmd()
            .args(["pull", "--quiet", "--tls-verify=false"])
            .arg(&reference));
        let got = run(puller
            .cmd()
            .args(["image", "inspect", "--format", "{{.Id}}"])
            .arg(&reference));
        assert_eq!(got.trim(), id, "image ID of pulled {reference}");
        let repo_digests = run(puller
            .cmd()
            .args(["image", "inspect", "--format", "{{json .RepoDigests}}"])
            .arg(&reference));
        let want = format!("{host}/e2e/podman@{digest}");
        assert!(
            json(&repo_digests)
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d == want.as_str()),
            "pulled {reference}: RepoDigests {repo_digests} lack {want}"
        );
        // And by digest, into a third storage so nothing is cached.
        let fresh = Podman::new();
        run(fresh
            .cmd()
            .args(["pull", "--quiet", "--tls-verify=false"])
            .arg(&want));
        let got = run(fresh
            .cmd()
            .args(["image", "inspect", "--format", "{{.Id}} {{.Digest}}"])
            .arg(&want));
        assert_eq!(
            got.split_whitespace().collect::<Vec<_>>(),
            [id.as_str(), digest.as_str()],
            "pulled {want}"
        );
    }

    // The config blob (whose digest is the image ID, and which lists the uncompressed layer
    // digests) went through podman and the registry unchanged.
    let cfg = http
        .get_blob("e2e/podman", &format!("sha256:{id}"))
        .unwrap()
        .expect(200);
    let want_cfg = imgs.blob(&src_config);
    assert!(cfg.body == want_cfg, "config blob changed through podman");
}

// -----------------------------------------------------------------------------------------------
// 3. containerd
// -----------------------------------------------------------------------------------------------

/// Parses `ctr images ls` into (ref, digest).
fn ctr_images(c: &Containerd) -> Vec<(String, String)> {
    let out = run(c.ctr().args(["images", "ls"]));
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() >= 3).then(|| (cols[0].to_string(), cols[2].to_string()))
        })
        .collect()
}

#[test]
fn containerd_pull_and_push() {
    if !tools_ok("containerd_pull_and_push", &["containerd", "ctr"]) {
        return;
    }
    let imgs = test_images();
    let srv = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let host = srv.host();
    let http = srv.http();
    let single = imgs.image(TAG_MULTI);
    let index = imgs.image(TAG_INDEX);
    skopeo_push(tmp, TAG_MULTI, &format!("{host}/e2e/ctr:v1"), false);
    skopeo_push(tmp, TAG_INDEX, &format!("{host}/e2e/ctr:multi"), true);

    let ctrd = Containerd::start();

    // Single-platform image: pulled and unpacked (native snapshotter: no overlay mounts needed).
    let r1 = format!("{host}/e2e/ctr:v1");
    run(ctrd
        .ctr()
        .args(["images", "pull", "--plain-http", "--snapshotter", "native"])
        .arg(&r1));
    // Multi-platform index: every platform's content.
    let r2 = format!("{host}/e2e/ctr:multi");
    run(ctrd
        .ctr()
        .args([
            "images",
            "pull",
            "--plain-http",
            "--all-platforms",
            "--snapshotter",
            "native",
        ])
        .arg(&r2));
    // By digest too.
    let r3 = format!("{host}/e2e/ctr@{}", single.digest);
    run(ctrd
        .ctr()
        .args(["images", "pull", "--plain-http", "--snapshotter", "native"])
        .arg(&r3));

    let listed = ctr_images(&ctrd);
    let digest_of = |r: &str| {
        listed
            .iter()
            .find(|(n, _)| n == r)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("{r} not in ctr images ls: {listed:?}"))
    };
    assert_eq!(
        digest_of(&r1),
        single.digest,
        "containerd resolved {r1} to another manifest"
    );
    assert_eq!(
        digest_of(&r2),
        index.digest,
        "containerd resolved {r2} to another index"
    );
    assert_eq!(digest_of(&r3), single.digest);

    // The content store has every blob of the index, byte-identical.
    for d in imgs.closure(&index.digest) {
        let got = run_any(ctrd.ctr().args(["content", "get"]).arg(&d));
        assert!(
            got.status.success(),
            "ctr content get {d}: {}",
            String::from_utf8_lossy(&got.stderr)
        );
        assert!(
            got.stdout == imgs.blob(&d),
            "containerd's copy of {d} differs"
        );
    }

    // The unpacked snapshot chain exists (the layers were valid gzip tars).
    let chain = run(ctrd.ctr().args(["images", "check"]));
    assert!(
        chain
            .lines()
            .any(|l| l.starts_with(&r1) && l.contains("complete")),
        "ctr images check:\n{chain}"
    );

    // containerd pushes back to another repository: same manifest digest, served by the registry.
    let r4 = format!("{host}/e2e/ctr-pushed:v1");
    run(ctrd.ctr().args(["images", "tag"]).arg(&r1).arg(&r4));
    run(ctrd.ctr().args(["images", "push", "--plain-http"]).arg(&r4));
    assert_eq!(
        registry_digest(&http, "e2e/ctr-pushed", "v1"),
        single.digest
    );
    assert_served_identically(&http, "e2e/ctr-pushed", &single.digest);
}

// -----------------------------------------------------------------------------------------------
// 4. Peer: CNCF Distribution <-> Wharf
// -----------------------------------------------------------------------------------------------

#[test]
fn peer_distribution_copy_both_ways() {
    if !tools_ok("peer_distribution_copy_both_ways", &["docker-registry"]) {
        return;
    }
    let imgs = test_images();
    let dist = Server::start_kind(Kind::Distribution);
    let wharf = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let (dh, wh) = (dist.host(), wharf.host());
    let copy = |src: String, dst: String, extra: &[&str]| {
        let mut c = skopeo(tmp);
        c.args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--preserve-digests",
        ]);
        c.args(extra);
        run(c.arg(src).arg(dst));
    };

    // Seed Distribution with an index (OCI) and a Docker v2s2 image.
    let index = imgs.image(TAG_INDEX);
    skopeo_push(tmp, TAG_INDEX, &format!("{dh}/peer/app:multi"), true);
    run(skopeo(tmp)
        .args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--format",
            "v2s2",
        ])
        .arg(imgs.oci_ref(TAG_BASE))
        .arg(format!("docker://{dh}/peer/app:docker")));
    let docker_digest = registry_digest(&dist.http(), "peer/app", "docker");

    // Distribution -> Wharf.
    copy(
        format!("docker://{dh}/peer/app:multi"),
        format!("docker://{wh}/mirror/app:multi"),
        &["--all"],
    );
    copy(
        format!("docker://{dh}/peer/app:docker"),
        format!("docker://{wh}/mirror/app:docker"),
        &[],
    );
    assert_eq!(
        registry_digest(&wharf.http(), "mirror/app", "multi"),
        index.digest
    );
    assert_eq!(
        registry_digest(&wharf.http(), "mirror/app", "docker"),
        docker_digest
    );
    assert_served_identically(&wharf.http(), "mirror/app", &index.digest);
    let dm = wharf
        .http()
        .get_manifest("mirror/app", "docker")
        .unwrap()
        .expect(200);
    assert_eq!(
        dm.header("Content-Type"),
        Some(DOCKER_MANIFEST),
        "{}",
        dm.dump()
    );
    for l in layer_digests(&dm.json()) {
        let b = wharf.http().get_blob("mirror/app", &l).unwrap().expect(200);
        assert_eq!(sha256_digest(&b.body), l);
    }

    // Wharf -> Distribution (a new repository): digests still preserved.
    copy(
        format!("docker://{wh}/mirror/app:multi"),
        format!("docker://{dh}/back/app:multi"),
        &["--all"],
    );
    copy(
        format!("docker://{wh}/mirror/app:docker"),
        format!("docker://{dh}/back/app:docker"),
        &[],
    );
    assert_eq!(
        registry_digest(&dist.http(), "back/app", "multi"),
        index.digest
    );
    assert_eq!(
        registry_digest(&dist.http(), "back/app", "docker"),
        docker_digest
    );
    assert_served_identically(&dist.http(), "back/app", &index.digest);

    // Both registries list the same tags for the copied repositories.
    for (srv, repo) in [(&wharf, "mirror/app"), (&dist, "back/app")] {
        let t = srv
            .http()
            .get(&format!("/v2/{repo}/tags/list"))
            .unwrap()
            .expect(200)
            .json();
        assert_eq!(t["name"], repo, "{t}");
        let mut tags: Vec<&str> = t["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        tags.sort();
        assert_eq!(tags, ["docker", "multi"], "{:?} {repo} tags", srv.kind);
    }
}

// -----------------------------------------------------------------------------------------------
// Concurrency: many clients pushing the same blobs at once
// -----------------------------------------------------------------------------------------------

#[test]
fn concurrent_skopeo_pushes_of_shared_blobs() {
    if !tools_ok("concurrent_skopeo_pushes_of_shared_blobs", &[]) {
        return;
    }
    let imgs = test_images();
    let srv = Server::start();
    let host = srv.host();
    let http = srv.http();
    let idx = imgs.image(TAG_INDEX);
    // Six pushes of the same multi-platform image at once: three into one repository (same
    // blobs committed concurrently in one place), three into repositories of their own.
    let targets: Vec<(String, String)> = (0..6)
        .map(|i| {
            let repo = if i < 3 {
                "conc/shared".to_string()
            } else {
                format!("conc/own{i}")
            };
            (repo, format!("t{i}"))
        })
        .collect();
    std::thread::scope(|s| {
        for (repo, tag) in &targets {
            let host = &host;
            s.spawn(move || {
                let tmp = tempfile::tempdir().unwrap();
                skopeo_push(tmp.path(), TAG_INDEX, &format!("{host}/{repo}:{tag}"), true);
            });
        }
    });
    for (repo, tag) in &targets {
        assert_eq!(
            registry_digest(&http, repo, tag),
            idx.digest,
            "{repo}:{tag}"
        );
        assert_served_identically(&http, repo, &idx.digest);
    }
    let t = http
        .get("/v2/conc/shared/tags/list")
        .unwrap()
        .expect(200)
        .json();
    let mut tags: Vec<&str> = t["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["t0", "t1", "t2"], "{t}");
}
