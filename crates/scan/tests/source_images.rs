//! Image sources against real images: a busybox-static rootfs packed by umoci, copied by skopeo
//! into an OCI layout, an oci-archive and a docker-archive; a multi-platform index copied by
//! skopeo; the same pushed by skopeo to CNCF Distribution (`docker-registry`) and read back
//! through the project's client. Corrupted blobs must fail with a digest error.
//!
//! Needs umoci, skopeo, busybox-static and docker-registry (scripts/install-test-deps.sh);
//! fails when one is missing.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use oci::Digest;
use scan::source::{
    Image, LayoutSelect, LocalImage, OpenOptions, Platform, RegistryImage, SourceError, SourceRef,
};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?} (install scripts/install-test-deps.sh): {e}")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn umoci(args: &[&str]) {
    run(Command::new("umoci").args(args));
}

fn skopeo(args: &[&str]) {
    run(Command::new("skopeo").arg("--insecure-policy").args(args));
}

/// The images every test reads, built once.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// skopeo-written OCI layout with tag `v1` (busybox, two layers, linux/amd64).
    layout: PathBuf,
    /// The same as an oci-archive (tag `v1`) and a docker-archive (`scan/busybox:v1`).
    oci_archive: PathBuf,
    docker_archive: PathBuf,
    /// skopeo-written layout holding an index (`multi`) over amd64 and arm64 manifests.
    multi: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(build_fixture)
}

fn build_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .expect("busybox-static is not installed");
    let src = root.join("umoci");
    let img = |t: &str| format!("{}:{t}", src.display());
    umoci(&["init", "--layout", src.to_str().unwrap()]);
    umoci(&["new", "--image", &img("base")]);
    let b1 = root.join("b1");
    umoci(&[
        "unpack",
        "--rootless",
        "--image",
        &img("base"),
        b1.to_str().unwrap(),
    ]);
    let rootfs = b1.join("rootfs");
    for d in ["bin", "etc"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    fs::write(
        rootfs.join("etc/os-release"),
        "ID=busybox\nNAME=\"BusyBox\"\nVERSION_ID=1\n",
    )
    .unwrap();
    umoci(&["repack", "--image", &img("base"), b1.to_str().unwrap()]);
    let b2 = root.join("b2");
    umoci(&[
        "unpack",
        "--rootless",
        "--image",
        &img("base"),
        b2.to_str().unwrap(),
    ]);
    fs::write(b2.join("rootfs/etc/motd"), "second layer\n").unwrap();
    umoci(&["repack", "--image", &img("base"), b2.to_str().unwrap()]);
    umoci(&[
        "config",
        "--image",
        &img("base"),
        "--os",
        "linux",
        "--architecture",
        "amd64",
        "--config.cmd",
        "/bin/sh",
    ]);
    // An arm64 sibling (same layers, config claiming arm64) and an index over both.
    umoci(&["tag", "--image", &img("base"), "arm"]);
    umoci(&["config", "--image", &img("arm"), "--architecture", "arm64"]);
    let index_json: serde_json::Value =
        serde_json::from_slice(&fs::read(src.join("index.json")).unwrap()).unwrap();
    let by_tag = |t: &str| {
        index_json["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == t)
            .unwrap()
            .clone()
    };
    let entry = |t: &str, arch: &str, variant: Option<&str>| {
        let mut d = by_tag(t);
        d.as_object_mut().unwrap().remove("annotations");
        let mut p = serde_json::json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            p["variant"] = v.into();
        }
        d["platform"] = p;
        d
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry("arm", "arm64", Some("v8")), entry("base", "amd64", None)],
    });
    let bytes = serde_json::to_vec(&index).unwrap();
    let d = Digest::sha256(&bytes);
    fs::write(src.join("blobs/sha256").join(d.hex()), &bytes).unwrap();
    let mut top = index_json.clone();
    top["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": d.to_string(),
            "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }));
    fs::write(src.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();

    let layout = root.join("layout");
    let oci_archive = root.join("image.oci.tar");
    let docker_archive = root.join("image.docker.tar");
    let multi = root.join("multi");
    let p = |p: &Path| p.display().to_string();
    let img = |t: &str| format!("oci:{}:{t}", src.display());
    skopeo(&["copy", &img("base"), &format!("oci:{}:v1", p(&layout))]);
    skopeo(&[
        "copy",
        &img("base"),
        &format!("oci-archive:{}:v1", p(&oci_archive)),
    ]);
    skopeo(&[
        "copy",
        &img("base"),
        &format!("docker-archive:{}:scan/busybox:v1", p(&docker_archive)),
    ]);
    skopeo(&[
        "copy",
        "--all",
        &img("multi"),
        &format!("oci:{}:multi", p(&multi)),
    ]);
    Fixture {
        _dir: dir,
        root,
        layout,
        oci_archive,
        docker_archive,
        multi,
    }
}

/// Reads every layer of a local image to its end; returns (digest, bytes read) per layer.
fn read_layers(img: &LocalImage) -> Vec<(Digest, u64)> {
    img.meta()
        .layers
        .iter()
        .map(|l| {
            let mut r = img.open_blob(&l.descriptor()).unwrap();
            let n = std::io::copy(&mut r, &mut std::io::sink()).unwrap();
            (l.digest.clone(), n)
        })
        .collect()
}

fn open(s: &str) -> Result<LocalImage, SourceError> {
    LocalImage::open(&SourceRef::parse(s).unwrap(), &OpenOptions::default())
}

#[test]
fn an_oci_layout_written_by_skopeo_resolves_and_streams_verified_layers() {
    let f = fixture();
    let img = open(&format!("oci:{}:v1", f.layout.display())).unwrap();
    let meta = img.meta();
    assert_eq!(meta.config.os, "linux");
    assert_eq!(meta.config.architecture, "amd64");
    assert_eq!(meta.layers.len(), 2);
    assert_eq!(meta.config.diff_ids.len(), 2);
    assert!(meta.config.created.is_some());
    assert!(
        meta.layers
            .iter()
            .all(|l| l.media_type.ends_with("tar+gzip"))
    );
    assert_eq!(Digest::sha256(&meta.manifest_bytes), meta.manifest_digest);
    assert_eq!(
        Digest::sha256(&meta.config_bytes),
        meta.config_descriptor.digest
    );
    // The manifest digest is the one index.json names.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(f.layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        meta.manifest_digest.to_string()
    );
    // The only image without a tag, and by digest.
    let only = open(&format!("oci:{}", f.layout.display())).unwrap();
    assert_eq!(only.meta().manifest_digest, meta.manifest_digest);
    let by_digest = open(&format!(
        "oci:{}@{}",
        f.layout.display(),
        meta.manifest_digest
    ))
    .unwrap();
    assert_eq!(by_digest.meta().manifest_digest, meta.manifest_digest);
    for (d, n) in read_layers(&img) {
        let on_disk = fs::metadata(f.layout.join("blobs/sha256").join(d.hex()))
            .unwrap()
            .len();
        assert_eq!(n, on_disk);
    }
    // What an SBOM says about it.
    let src = SourceRef::parse(&format!("oci:{}:v1", f.layout.display())).unwrap();
    let info = scan::sbom::ImageInfo::from_source(&src, meta);
    assert_eq!(info.name, format!("oci:{}:v1", f.layout.display()));
    assert_eq!(info.manifest_digest, Some(meta.manifest_digest.to_string()));
    assert_eq!(info.created, meta.config.created);
    assert_eq!(
        info.purl().unwrap(),
        format!(
            "pkg:oci/layout@sha256%3A{}?arch=amd64",
            meta.manifest_digest.hex()
        )
    );
    // The config is a blob like any other.
    let mut cfg = Vec::new();
    img.open_blob(&meta.config_descriptor)
        .unwrap()
        .read_to_end(&mut cfg)
        .unwrap();
    assert_eq!(cfg, meta.config_bytes);
    // An unknown tag is NotFound.
    assert!(matches!(
        open(&format!("oci:{}:nope", f.layout.display())),
        Err(SourceError::NotFound(_))
    ));
}

#[test]
fn the_same_image_as_oci_archive_and_docker_archive() {
    let f = fixture();
    let dir = open(&format!("oci:{}:v1", f.layout.display())).unwrap();
    let arch = open(&format!("oci-archive:{}:v1", f.oci_archive.display())).unwrap();
    // skopeo copied the same blobs: same manifest, config and layers.
    assert_eq!(arch.meta().manifest_digest, dir.meta().manifest_digest);
    assert_eq!(arch.meta().config_bytes, dir.meta().config_bytes);
    assert_eq!(read_layers(&arch), read_layers(&dir));
    let only = open(&format!("oci-archive:{}", f.oci_archive.display())).unwrap();
    assert_eq!(only.meta().manifest_digest, dir.meta().manifest_digest);

    // docker-archive: skopeo decompresses layers, so their digests are the diff IDs.
    for s in [
        format!("docker-archive:{}", f.docker_archive.display()),
        format!(
            "docker-archive:{}:scan/busybox:v1",
            f.docker_archive.display()
        ),
    ] {
        let dock = open(&s).unwrap();
        let m = dock.meta();
        assert_eq!(m.config.diff_ids, dir.meta().config.diff_ids);
        let digests: Vec<Digest> = m.layers.iter().map(|l| l.digest.clone()).collect();
        assert_eq!(digests, dir.meta().config.diff_ids, "{s}");
        assert!(
            m.layers
                .iter()
                .all(|l| l.media_type == "application/vnd.docker.image.rootfs.diff.tar")
        );
        assert_eq!(Digest::sha256(&m.config_bytes), m.config_descriptor.digest);
        assert_eq!(Digest::sha256(&m.manifest_bytes), m.manifest_digest);
        assert_eq!(m.config.architecture, "amd64");
        for (l, (_, n)) in m.layers.iter().zip(read_layers(&dock)) {
            assert_eq!(l.size, n);
        }
    }
    assert!(matches!(
        open(&format!(
            "docker-archive:{}:other:v2",
            f.docker_archive.display()
        )),
        Err(SourceError::NotFound(_))
    ));
}

#[test]
fn a_multi_platform_index_resolves_by_platform() {
    let f = fixture();
    let src = SourceRef::parse(&format!("oci:{}:multi", f.multi.display())).unwrap();
    let amd = LocalImage::open(&src, &OpenOptions::default()).unwrap();
    assert_eq!(amd.meta().config.architecture, "amd64");
    assert!(amd.meta().index_digest.is_some());
    let opts = |p: &str| OpenOptions {
        platform: Some(Platform::parse(p).unwrap()),
    };
    let arm = LocalImage::open(&src, &opts("linux/arm64")).unwrap();
    assert_eq!(arm.meta().config.architecture, "arm64");
    assert_ne!(arm.meta().manifest_digest, amd.meta().manifest_digest);
    // Same layers in both.
    assert_eq!(arm.meta().layers, amd.meta().layers);
    read_layers(&arm);
    match LocalImage::open(&src, &opts("linux/s390x")) {
        Err(SourceError::NoPlatform { available, .. }) => {
            assert!(available.contains("linux/arm64/v8") && available.contains("linux/amd64"))
        }
        other => panic!("{other:?}"),
    }
    // A single image with an explicit other platform is refused too.
    let single = SourceRef::parse(&format!("oci:{}:v1", f.layout.display())).unwrap();
    assert!(matches!(
        LocalImage::open(&single, &opts("linux/arm64")),
        Err(SourceError::NoPlatform { .. })
    ));
}

fn copy_dir(from: &Path, to: &Path) {
    run(Command::new("cp").arg("-a").arg(from).arg(to));
}

fn flip_byte(path: &Path, at: u64) {
    let mut b = fs::read(path).unwrap();
    let i = (at as usize).min(b.len() - 1);
    b[i] ^= 0x55;
    fs::write(path, b).unwrap();
}

#[test]
fn corrupt_blobs_are_digest_errors() {
    let f = fixture();
    let bad = f.root.join("corrupt-layout");
    let _ = fs::remove_dir_all(&bad);
    copy_dir(&f.layout, &bad);
    let img = open(&format!("oci:{}:v1", bad.display())).unwrap();
    let layer = img.meta().layers[0].clone();
    // Same size, one byte changed in the middle: only the digest can tell.
    flip_byte(
        &bad.join("blobs/sha256").join(layer.digest.hex()),
        layer.size / 2,
    );
    let mut r = img.open_blob(&layer.descriptor()).unwrap();
    let e = std::io::copy(&mut r, &mut std::io::sink()).unwrap_err();
    assert!(e.to_string().contains("digest mismatch"), "{e}");
    // A truncated layer: a length error.
    let l2 = img.meta().layers[1].clone();
    let p2 = bad.join("blobs/sha256").join(l2.digest.hex());
    let b = fs::read(&p2).unwrap();
    fs::write(&p2, &b[..b.len() / 2]).unwrap();
    let e = std::io::copy(
        &mut img.open_blob(&l2.descriptor()).unwrap(),
        &mut std::io::sink(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("expected"), "{e}");
    // A corrupt config fails the open.
    let cfg = img.meta().config_descriptor.digest.clone();
    flip_byte(&bad.join("blobs/sha256").join(cfg.hex()), 1);
    assert!(matches!(
        open(&format!("oci:{}:v1", bad.display())),
        Err(SourceError::DigestMismatch { .. })
    ));
    // A docker-archive whose layer bytes were changed in place.
    let dbad = f.root.join("corrupt.docker.tar");
    fs::copy(&f.docker_archive, &dbad).unwrap();
    let dock = open(&format!("docker-archive:{}", dbad.display())).unwrap();
    let l = dock.meta().layers[0].clone();
    // Find the layer's data inside the archive by searching for its first 512 bytes.
    let mut head = vec![0u8; 512];
    dock.open_blob(&l.descriptor())
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    let all = fs::read(&dbad).unwrap();
    let pos = all.windows(512).position(|w| w == head).unwrap();
    flip_byte(&dbad, (pos + 700) as u64);
    let e = std::io::copy(
        &mut dock.open_blob(&l.descriptor()).unwrap(),
        &mut std::io::sink(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("digest mismatch"), "{e}");
}

#[test]
fn bad_input_is_a_typed_error() {
    let f = fixture();
    let t = f.root.join("bad");
    fs::create_dir_all(&t).unwrap();
    // A gzip-compressed oci-archive is refused by name.
    let gz = t.join("image.oci.tar.gz");
    let bytes = Command::new("gzip")
        .arg("-c")
        .arg(&f.oci_archive)
        .output()
        .unwrap()
        .stdout;
    fs::write(&gz, bytes).unwrap();
    assert!(matches!(
        open(&format!("oci-archive:{}", gz.display())),
        Err(SourceError::CompressedArchive(_))
    ));
    // A truncated archive, garbage, an empty file, a missing file.
    let all = fs::read(&f.oci_archive).unwrap();
    for (name, bytes) in [
        ("trunc.tar", all[..all.len() / 3].to_vec()),
        (
            "garbage.tar",
            b"this is not a tar archive at all".repeat(40),
        ),
        ("empty.tar", Vec::new()),
    ] {
        let p = t.join(name);
        fs::write(&p, bytes).unwrap();
        for s in [
            format!("oci-archive:{}", p.display()),
            format!("docker-archive:{}", p.display()),
        ] {
            match open(&s) {
                Err(
                    SourceError::Malformed { .. }
                    | SourceError::NotFound(_)
                    | SourceError::Io { .. },
                ) => {}
                other => panic!("{s}: {other:?}"),
            }
        }
    }
    assert!(matches!(
        open(&format!("oci-archive:{}", t.join("missing.tar").display())),
        Err(SourceError::NotFound(_))
    ));
    // A layout with a broken index.json, or none.
    let lay = t.join("layout");
    copy_dir(&f.layout, &lay);
    fs::write(
        lay.join("index.json"),
        b"{\"schemaVersion\": 2, \"manifests\": 7}",
    )
    .unwrap();
    assert!(matches!(
        open(&format!("oci:{}", lay.display())),
        Err(SourceError::Malformed { .. })
    ));
    fs::remove_file(lay.join("index.json")).unwrap();
    assert!(matches!(
        open(&format!("oci:{}", lay.display())),
        Err(SourceError::NotFound(_))
    ));
    assert!(matches!(
        open(&format!("oci:{}", t.join("nothing").display())),
        Err(SourceError::NotFound(_))
    ));
    // A docker-archive read as an oci-archive has no `oci-layout`.
    assert!(matches!(
        open(&format!("oci-archive:{}", f.docker_archive.display())),
        Err(SourceError::NotFound(_))
    ));
    // Display round-trips through parse.
    let s = SourceRef::OciArchive {
        path: "x.tar".into(),
        select: LayoutSelect::Tag("v1".into()),
    };
    assert_eq!(SourceRef::parse(&s.to_string()).unwrap(), s);
}

/// CNCF Distribution on a loopback port, storage in `dir`.
struct Registry {
    child: Child,
    addr: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(dir: &Path) -> Registry {
    start_registry_with(dir, "")
}

/// [`start_registry`] with extra configuration (an `auth:` section).
fn start_registry_with(dir: &Path, extra: &str) -> Registry {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
         http:\n  addr: {addr}\n  secret: scan-test\n{extra}",
        dir.join("storage").display()
    );
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("config.yml"), cfg).unwrap();
    let log = fs::File::create(dir.join("registry.log")).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("docker-registry is not installed (scripts/install-test-deps.sh)");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
            let mut b = [0u8; 12];
            if s.read_exact(&mut b).is_ok() && b.starts_with(b"HTTP/1.") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "docker-registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Registry { child, addr }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_source_reads_what_skopeo_pushed() {
    let f = fixture();
    let reg = start_registry(&f.root.join("registry"));
    let dest = |t: &str| format!("docker://{}/scan/busybox:{t}", reg.addr);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", f.layout.display()),
        &dest("v1"),
    ]);
    skopeo(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", f.multi.display()),
        &dest("multi"),
    ]);
    let local = open(&format!("oci:{}:v1", f.layout.display())).unwrap();
    let client = client::Client::new(client::ClientConfig::default()).unwrap();

    // Bare reference and docker:// both; the registry holds the very same manifest.
    for s in [format!("{}/scan/busybox:v1", reg.addr), dest("v1")] {
        let src = SourceRef::parse(&s).unwrap();
        let SourceRef::Registry(r) = &src else {
            panic!("{s}")
        };
        let img = RegistryImage::open(client.clone(), r, &OpenOptions::default())
            .await
            .unwrap();
        assert_eq!(img.meta().manifest_digest, local.meta().manifest_digest);
        assert_eq!(img.meta().config_bytes, local.meta().config_bytes);
        assert_eq!(img.image().digest(), Some(&local.meta().manifest_digest));
        let info = scan::sbom::ImageInfo::from_source(&src, img.meta());
        assert_eq!(info.name, format!("{}/scan/busybox:v1", reg.addr));
        assert_eq!(info.repository, Some(format!("{}/scan/busybox", reg.addr)));
        // Async stream of each layer, hashed here too.
        for l in &img.meta().layers {
            let mut r = img.open_blob(&l.descriptor()).unwrap();
            let mut buf = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut r, &mut buf)
                .await
                .unwrap();
            assert_eq!(Digest::sha256(&buf), l.digest);
        }
        // And the blocking adapter on a blocking thread, through the Image enum.
        let any = Image::open(&src, &OpenOptions::default(), Some(client.clone()))
            .await
            .unwrap();
        let layers = any.meta().layers.clone();
        let any = std::sync::Arc::new(any);
        let sizes = tokio::task::spawn_blocking(move || {
            layers
                .iter()
                .map(|l| {
                    let mut r = any.open_blob_blocking(&l.descriptor()).unwrap();
                    std::io::copy(&mut r, &mut std::io::sink()).unwrap()
                })
                .collect::<Vec<u64>>()
        })
        .await
        .unwrap();
        let want: Vec<u64> = local.meta().layers.iter().map(|l| l.size).collect();
        assert_eq!(sizes, want);
    }

    // Outside any runtime, opening a registry blob is an error, not a panic.
    let SourceRef::Registry(r1) = SourceRef::parse(&dest("v1")).unwrap() else {
        panic!()
    };
    let img = RegistryImage::open(client.clone(), &r1, &OpenOptions::default())
        .await
        .unwrap();
    let d = img.meta().layers[0].descriptor();
    let outside = std::thread::spawn(move || {
        (
            matches!(img.open_blob(&d), Err(SourceError::NoRuntime(_))),
            matches!(img.open_blob_blocking(&d), Err(SourceError::NoRuntime(_))),
        )
    })
    .join()
    .unwrap();
    assert_eq!(outside, (true, true));

    // The multi-platform index, default and arm64.
    let SourceRef::Registry(r) = SourceRef::parse(&dest("multi")).unwrap() else {
        panic!()
    };
    let amd = RegistryImage::open(client.clone(), &r, &OpenOptions::default())
        .await
        .unwrap();
    assert_eq!(amd.meta().config.architecture, "amd64");
    assert!(amd.meta().index_digest.is_some());
    let arm = RegistryImage::open(
        client.clone(),
        &r,
        &OpenOptions {
            platform: Some(Platform::parse("linux/arm64/v8").unwrap()),
        },
    )
    .await
    .unwrap();
    assert_eq!(arm.meta().config.architecture, "arm64");

    // An unknown tag is a registry error (manifest unknown), not a panic.
    let SourceRef::Registry(r404) = SourceRef::parse(&dest("nope")).unwrap() else {
        panic!()
    };
    match RegistryImage::open(client.clone(), &r404, &OpenOptions::default()).await {
        Err(SourceError::Registry(e)) => assert!(e.is_not_found(), "{e}"),
        other => panic!("{other:?}"),
    }

    // Corrupt a layer in the registry's storage: the stream ends with a digest error.
    let l = amd.meta().layers[0].clone();
    let data = f
        .root
        .join("registry/storage/docker/registry/v2/blobs/sha256")
        .join(&l.digest.hex()[..2])
        .join(l.digest.hex())
        .join("data");
    flip_byte(&data, l.size / 2);
    let mut r = amd.open_blob(&l.descriptor()).unwrap();
    let mut buf = Vec::new();
    let e = tokio::io::AsyncReadExt::read_to_end(&mut r, &mut buf)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("digest"), "{e}");
}

/// Writes `manifest.json` into `dir` and tars the directory (entries named `./...`, as GNU tar
/// writes them).
fn tar_dir(dir: &Path, manifest: serde_json::Value, out: &Path) {
    fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    run(Command::new("tar")
        .arg("-cf")
        .arg(out)
        .arg("-C")
        .arg(dir)
        .arg("."));
}

#[test]
fn docker_save_layouts_old_and_new() {
    let f = fixture();
    let oci = open(&format!("oci:{}:v1", f.layout.display())).unwrap();
    let om = oci.meta();
    let work = f.root.join("docker-save");
    let _ = fs::remove_dir_all(&work);

    // `docker save` before 25: `<id>/layer.tar` (uncompressed, the id no digest), one of
    // them reached through a symbolic link; digests come from the config's diff_ids.
    let old = work.join("old");
    fs::create_dir_all(&old).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&f.docker_archive)
        .arg("-C")
        .arg(&old));
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(old.join("manifest.json")).unwrap()).unwrap();
    let mut layers = Vec::new();
    for (i, l) in m[0]["Layers"].as_array().unwrap().iter().enumerate() {
        let id = format!("{:064x}", i + 0xabc);
        fs::create_dir_all(old.join(&id)).unwrap();
        fs::rename(
            old.join(l.as_str().unwrap()),
            old.join(&id).join("layer.tar"),
        )
        .unwrap();
        layers.push(format!("{id}/layer.tar"));
    }
    // The second layer listed through a link directory, as old `docker save` did for
    // layers shared between images.
    fs::create_dir_all(old.join("link")).unwrap();
    std::os::unix::fs::symlink(format!("../{}", layers[1]), old.join("link/layer.tar")).unwrap();
    layers[1] = "link/layer.tar".into();
    let mut m2 = m.clone();
    m2[0]["Layers"] = serde_json::json!(layers);
    let old_tar = work.join("old.tar");
    tar_dir(&old, m2, &old_tar);
    let img = open(&format!("docker-archive:{}", old_tar.display())).unwrap();
    let digests: Vec<Digest> = img.meta().layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(digests, om.config.diff_ids);
    read_layers(&img);

    // The same, but the link points at the wrong layer: its diff_id does not match.
    let wrong = work.join("wrong");
    fs::rename(&old, &wrong).unwrap();
    fs::remove_file(wrong.join("link/layer.tar")).unwrap();
    let first = layers[0].clone();
    std::os::unix::fs::symlink(format!("../{first}"), wrong.join("link/layer.tar")).unwrap();
    let wrong_tar = work.join("wrong.tar");
    let mut m3 = m.clone();
    m3[0]["Layers"] = serde_json::json!(layers);
    tar_dir(&wrong, m3, &wrong_tar);
    let img = open(&format!("docker-archive:{}", wrong_tar.display())).unwrap();
    let l = img.meta().layers[1].clone();
    let e = std::io::copy(
        &mut img.open_blob(&l.descriptor()).unwrap(),
        &mut std::io::sink(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("mismatch") || e.to_string().contains("expected"),
        "{e}"
    );

    // `docker save` 25+: an OCI layout whose manifest.json points into blobs/sha256 (gzip
    // layers, named by digest); also readable as an oci-archive. A config and a layer under
    // names that carry no digest are hashed.
    let new = work.join("new");
    copy_dir(&f.layout, &new);
    let blob = |d: &Digest| format!("blobs/sha256/{}", d.hex());
    fs::create_dir_all(new.join("odd")).unwrap();
    fs::copy(
        new.join(blob(&om.layers[1].digest)),
        new.join("odd/two.tgz"),
    )
    .unwrap();
    let new_tar = work.join("new.tar");
    tar_dir(
        &new,
        serde_json::json!([{
            "Config": blob(&om.config_descriptor.digest),
            "RepoTags": ["scan/busybox:v1"],
            "Layers": [blob(&om.layers[0].digest), "odd/two.tgz"],
        }]),
        &new_tar,
    );
    for s in [
        format!("docker-archive:{}", new_tar.display()),
        format!(
            "docker-archive:{}:docker.io/scan/busybox:v1",
            new_tar.display()
        ),
    ] {
        let img = open(&s).unwrap();
        let m = img.meta();
        assert_eq!(m.config_bytes, om.config_bytes);
        assert_eq!(m.layers.len(), 2);
        for (a, b) in m.layers.iter().zip(&om.layers) {
            assert_eq!((&a.digest, a.size), (&b.digest, b.size), "{s}");
            assert_eq!(
                a.media_type,
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            );
        }
        read_layers(&img);
    }
    let as_oci = open(&format!("oci-archive:{}:v1", new_tar.display())).unwrap();
    assert_eq!(as_oci.meta().manifest_digest, om.manifest_digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_wants_credentials_and_docker_media_types() {
    let f = fixture();
    let dir = f.root.join("registry-auth");
    fs::create_dir_all(&dir).unwrap();
    let htpasswd = run(Command::new("htpasswd").args(["-Bbn", "scanner", "s3cret-pass"]));
    fs::write(dir.join("htpasswd"), htpasswd).unwrap();
    let reg = start_registry_with(
        &dir,
        &format!(
            "auth:\n  htpasswd:\n    realm: scan-test\n    path: {}\n",
            dir.join("htpasswd").display()
        ),
    );
    // Docker media types (v2s2, and a Docker manifest list for the index).
    let dest = format!("docker://{}/scan/busybox:multi-v2", reg.addr);
    skopeo(&[
        "copy",
        "--all",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        "--dest-creds",
        "scanner:s3cret-pass",
        &format!("oci:{}:multi", f.multi.display()),
        &dest,
    ]);
    let SourceRef::Registry(r) = SourceRef::parse(&dest).unwrap() else {
        panic!()
    };
    // Without credentials: an authentication error, typed.
    let anon = client::Client::new(client::ClientConfig::default()).unwrap();
    match RegistryImage::open(anon, &r, &OpenOptions::default()).await {
        Err(SourceError::Registry(e)) => assert_eq!(e.status(), Some(401), "{e}"),
        other => panic!("{other:?}"),
    }
    // With them, as the CLI passes them (a credential store in the client's configuration).
    let mut creds = client::CredentialStore::new();
    creds.insert(
        &reg.addr,
        client::BasicCredentials::new("scanner", "s3cret-pass"),
    );
    let client =
        client::Client::new(client::ClientConfig::default().with_credentials(creds)).unwrap();
    let arm = RegistryImage::open(
        client.clone(),
        &r,
        &OpenOptions {
            platform: Some(Platform::parse("linux/arm64").unwrap()),
        },
    )
    .await
    .unwrap();
    assert_eq!(arm.meta().config.architecture, "arm64");
    assert_eq!(
        arm.meta().manifest_media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let index = arm.meta().index_digest.clone().unwrap();
    let list = client.get_manifest(&r.with_digest(index)).await.unwrap();
    assert_eq!(
        list.media_type,
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    for l in &arm.meta().layers {
        assert_eq!(
            l.media_type,
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        let mut r = arm.open_blob(&l.descriptor()).unwrap();
        let mut buf = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut r, &mut buf)
            .await
            .unwrap();
        assert_eq!(Digest::sha256(&buf), l.digest);
    }
}

/// Flips bytes in tar headers and the small files after them (index.json, manifests,
/// configs, manifest.json) of both archives, many times over: every open and read must end in
/// a result, never a panic.
#[test]
fn mutated_archives_never_panic() {
    let f = fixture();
    let work = f.root.join("mutations");
    fs::create_dir_all(&work).unwrap();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut outcomes = [0usize; 2];
    for (k, (archive, transport)) in [
        (&f.oci_archive, "oci-archive"),
        (&f.docker_archive, "docker-archive"),
    ]
    .into_iter()
    .enumerate()
    {
        let bytes = fs::read(archive).unwrap();
        // Tar headers: 512-byte blocks with "ustar" at 257.
        let headers: Vec<usize> = (0..bytes.len() / 512)
            .map(|b| b * 512)
            .filter(|&o| bytes.get(o + 257..o + 262) == Some(b"ustar"))
            .collect();
        assert!(headers.len() >= 4);
        for i in 0..150 {
            let mut m = bytes.clone();
            for _ in 0..1 + next() % 4 {
                let h = headers[(next() % headers.len() as u64) as usize];
                let at = (h + (next() % 1536) as usize).min(m.len() - 1);
                m[at] = (next() & 0xff) as u8;
            }
            let p = work.join(format!("{transport}-{i}.tar"));
            fs::write(&p, &m).unwrap();
            let s = format!("{transport}:{}", p.display());
            let result = std::panic::catch_unwind(|| match open(&s) {
                Ok(img) => {
                    for l in &img.meta().layers {
                        if let Ok(mut r) = img.open_blob(&l.descriptor()) {
                            let _ = std::io::copy(&mut r, &mut std::io::sink());
                        }
                    }
                    true
                }
                Err(_) => false,
            });
            match result {
                Ok(true) => outcomes[k] += 1,
                Ok(false) => {}
                Err(_) => panic!("{s} panicked"),
            }
            fs::remove_file(&p).unwrap();
        }
    }
    println!(
        "opened despite mutation: oci-archive {}, docker-archive {} of 150",
        outcomes[0], outcomes[1]
    );
}
