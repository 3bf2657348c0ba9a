//! The layer walker on real layers: whiteouts and opaque directories across layers, zstd,
//! corrupt and truncated gzip, unsafe paths, paths written twice, hard links.

mod os_common;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Cursor, Read};

use os_common::{check, differences, fixtures, layers, ours, scan, syft, trivy, walk};
use scan::analyze::{AnalyzeError, Analyzer, FileInfo, Found, os_analyzers};
use scan::layer::{LayerError, analyze_layer};
use scan::{ImageInventory, OsRelease};

/// syft's one extra deb package once the dpkg database is hidden.
fn syft_elf_note() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([(
        "systemd",
        "syft's elf-binary-package-cataloger reads the ELF `.note.package` section \
         (systemd.io/ELF_PACKAGE_METADATA) that Debian's libsystemd0.so carries, and reports \
         it when no package database owns the file; our analysers read package databases only",
    )])
}

#[test]
fn a_whiteout_of_the_dpkg_database_hides_every_package() {
    let layout = fixtures().join("debian-whiteout-oci");
    let layers = walk(&layout);
    assert_eq!(layers.len(), 2);
    assert_eq!(
        layers[1].whiteouts,
        vec!["/var/lib/dpkg/status".to_string()]
    );
    assert!(layers[1].files.is_empty());
    let inv = ImageInventory::combine(&layers);
    assert!(inv.packages.is_empty(), "{:?}", inv.packages);
    assert_eq!(inv.os.as_ref().unwrap().version_id.as_deref(), Some("12"));
    // Without the top layer, the base's packages are all there.
    assert!(ImageInventory::combine(&layers[..1]).packages.len() > 80);
    // trivy agrees: no deb package. syft too, but for one, which it finds elsewhere.
    assert_eq!(trivy(&layout), Default::default());
    check(
        "syft",
        &differences(&ours(&inv), &syft(&layout, "deb")),
        &syft_elf_note(),
    );
}

#[test]
fn distroless_status_d_files_then_an_opaque_directory() {
    // statusd: the base plus /var/lib/dpkg/status.d/{libc6,zlib1g} (dpkg's own stanzas).
    let statusd = walk(&fixtures().join("debian-statusd-oci"));
    assert_eq!(statusd.len(), 2);
    let top: Vec<_> = statusd[1].files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        top,
        [
            "/var/lib/dpkg/status.d/libc6",
            "/var/lib/dpkg/status.d/zlib1g"
        ]
    );
    let inv = ImageInventory::combine(&statusd);
    let libc: Vec<_> = inv.packages.iter().filter(|p| p.name == "libc6").collect();
    assert_eq!(libc.len(), 2, "listed by status and by status.d/libc6");
    assert_eq!(libc[1].path, "/var/lib/dpkg/status.d/libc6");
    assert_eq!(libc[1].source_name.as_deref(), Some("glibc"));
    assert_eq!(libc[1].layer, statusd[1].digest);
    assert_eq!(
        (libc[0].version.as_str(), libc[0].layer.as_str()),
        (libc[1].version.as_str(), statusd[0].digest.as_str())
    );

    // opaque: a third layer makes /var/lib/dpkg opaque and writes a status with two packages:
    // the base's status and the second layer's status.d files are all hidden.
    let layout = fixtures().join("debian-opaque-oci");
    let opaque = walk(&layout);
    assert_eq!(opaque.len(), 3);
    assert_eq!(opaque[2].opaque, vec!["/var/lib/dpkg".to_string()]);
    let inv = ImageInventory::combine(&opaque);
    let names: Vec<_> = inv.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["base-files", "libc6"]);
    assert!(
        inv.packages
            .iter()
            .all(|p| p.layer == opaque[2].digest && p.path == "/var/lib/dpkg/status")
    );
    // trivy sees the same two packages, with the same versions and sources; syft too, plus
    // one it finds elsewhere.
    let mine = ours(&inv);
    assert_eq!(differences(&mine, &trivy(&layout)), Default::default());
    check(
        "syft",
        &differences(&mine, &syft(&layout, "deb")),
        &syft_elf_note(),
    );
}

#[test]
fn a_zstd_layer_reads_like_the_gzip_one() {
    let zstd = fixtures().join("debian-zstd-oci");
    let l = layers(&zstd, "latest");
    assert_eq!(
        l[0].media_type,
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let mut magic = [0u8; 4];
    File::open(&l[0].path)
        .unwrap()
        .read_exact(&mut magic)
        .unwrap();
    assert_eq!(magic, [0x28, 0xb5, 0x2f, 0xfd]);
    let a = scan(&zstd);
    let b = scan(&fixtures().join("debian-oci"));
    assert!(a.packages.len() > 80);
    assert_eq!(ours(&a), ours(&b));
    assert_eq!(a.os, b.os);
    // The media type is only a hint: a wrong one does not matter.
    let f = File::open(&l[0].path).unwrap();
    let inv = analyze_layer(
        &l[0].digest,
        Some("application/vnd.oci.image.layer.v1.tar+gzip"),
        f,
        &os_analyzers(),
    )
    .unwrap();
    assert_eq!(ours(&ImageInventory::combine([&inv])), ours(&a));
}

/// The Debian layer's compressed bytes.
fn debian_layer() -> Vec<u8> {
    let l = layers(&fixtures().join("debian-oci"), "latest");
    std::fs::read(&l[0].path).unwrap()
}

#[test]
fn truncated_and_corrupt_gzip_layers_are_errors() {
    let bytes = debian_layer();
    for cut in [10, 4096, bytes.len() / 2, bytes.len() - 5] {
        let err = analyze_layer("sha256:cut", None, &bytes[..cut], &os_analyzers())
            .expect_err("a truncated layer must fail");
        assert!(
            matches!(err, LayerError::Read { .. }),
            "cut at {cut}: {err}"
        );
    }
    // Bytes flipped in the middle of the deflate stream.
    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid..mid + 64] {
        *b ^= 0x5a;
    }
    let err = analyze_layer("sha256:bad", None, &bad[..], &os_analyzers())
        .expect_err("a corrupt layer must fail");
    assert!(matches!(err, LayerError::Read { .. }), "{err}");
    // Garbage that is neither compressed nor a tar stream.
    let err =
        analyze_layer("sha256:junk", None, &[0x42u8; 4096][..], &os_analyzers()).expect_err("junk");
    assert!(matches!(err, LayerError::Read { .. }), "{err}");
    // A truncated zstd layer.
    let l = layers(&fixtures().join("debian-zstd-oci"), "latest");
    let zstd = std::fs::read(&l[0].path).unwrap();
    let err = analyze_layer(&l[0].digest, None, &zstd[..zstd.len() / 2], &os_analyzers())
        .expect_err("a truncated zstd layer must fail");
    assert!(matches!(err, LayerError::Read { .. }), "{err}");
    // An empty layer is an empty inventory.
    let inv = analyze_layer("sha256:empty", None, &b""[..], &os_analyzers()).unwrap();
    assert!(inv.files.is_empty());
}

/// A tar entry written by hand (the tar crate's builder refuses `..` paths).
fn raw_entry(out: &mut Vec<u8>, path: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    {
        let bytes = h.as_mut_bytes();
        bytes[..path.len()].copy_from_slice(path.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    if !link.is_empty() {
        h.set_link_name(link).unwrap();
    }
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn finish(mut out: Vec<u8>) -> Vec<u8> {
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[test]
fn entries_that_escape_the_root_fail_the_layer() {
    let mut t = Vec::new();
    raw_entry(
        &mut t,
        "./etc/hostname",
        tar::EntryType::Regular,
        "",
        b"x\n",
    );
    raw_entry(
        &mut t,
        "./../../etc/os-release",
        tar::EntryType::Regular,
        "",
        b"ID=evil\n",
    );
    let err = analyze_layer("sha256:x", None, &finish(t)[..], &os_analyzers()).unwrap_err();
    assert!(
        matches!(&err, LayerError::UnsafePath { path, .. } if path == "./../../etc/os-release"),
        "{err}"
    );
}

#[test]
fn the_last_entry_at_a_path_wins_and_hard_links_share_findings() {
    let mut t = Vec::new();
    raw_entry(
        &mut t,
        "etc/os-release",
        tar::EntryType::Regular,
        "",
        b"ID=first\n",
    );
    raw_entry(
        &mut t,
        "./etc/os-release",
        tar::EntryType::Regular,
        "",
        b"ID=second\nVERSION_ID='3.1'\n",
    );
    // Written, then replaced by a symlink: no finding is left for the path.
    raw_entry(
        &mut t,
        "usr/lib/os-release",
        tar::EntryType::Regular,
        "",
        b"ID=gone\n",
    );
    raw_entry(
        &mut t,
        "usr/lib/os-release",
        tar::EntryType::Symlink,
        "../../etc/os-release",
        b"",
    );
    // A dpkg database and a hard link to it under status.d.
    let status = b"Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13.dfsg-1\nSource: zlib\nArchitecture: amd64\n";
    raw_entry(
        &mut t,
        "var/lib/dpkg/status",
        tar::EntryType::Regular,
        "",
        status,
    );
    raw_entry(
        &mut t,
        "var/lib/dpkg/status.d/zlib1g",
        tar::EntryType::Link,
        "var/lib/dpkg/status",
        b"",
    );
    // A hard link to a file no analyser read: nothing.
    raw_entry(&mut t, "etc/hostname", tar::EntryType::Regular, "", b"h\n");
    raw_entry(
        &mut t,
        "var/lib/dpkg/status.d/other",
        tar::EntryType::Link,
        "etc/hostname",
        b"",
    );
    // Whiteouts at the root and below.
    raw_entry(&mut t, ".wh.opt", tar::EntryType::Regular, "", b"");
    raw_entry(&mut t, ".wh..wh.plnk", tar::EntryType::Directory, "", b"");
    raw_entry(
        &mut t,
        "usr/share/.wh..wh..opq",
        tar::EntryType::Regular,
        "",
        b"",
    );
    let inv = analyze_layer(
        "sha256:t",
        Some("application/vnd.oci.image.layer.v1.tar"),
        &finish(t)[..],
        &os_analyzers(),
    )
    .unwrap();
    let paths: Vec<_> = inv
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.analyzer.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            ("/etc/os-release", "os-release"),
            ("/var/lib/dpkg/status", "dpkg"),
            ("/var/lib/dpkg/status.d/zlib1g", "dpkg"),
        ]
    );
    assert_eq!(
        inv.files[0].os,
        Some(OsRelease {
            id: "second".into(),
            version_id: Some("3.1".into()),
            codename: None,
            pretty_name: None
        })
    );
    assert_eq!(
        inv.files[2].packages[0].path,
        "/var/lib/dpkg/status.d/zlib1g"
    );
    assert_eq!(inv.files[2].packages[0].version, "1:1.2.13.dfsg-1");
    assert_eq!(inv.whiteouts, ["/opt"]);
    assert_eq!(inv.opaque, ["/usr/share"]);
}

/// A test analyser that wants one path and reports how many bytes it read (as the version).
struct Counter(&'static str);

impl Analyzer for Counter {
    fn name(&self) -> &'static str {
        self.0
    }
    fn wants(&self, file: &FileInfo<'_>) -> bool {
        file.path == "/data/blob"
    }
    fn analyze(
        &self,
        file: &FileInfo<'_>,
        content: &mut dyn Read,
    ) -> Result<Option<Found>, AnalyzeError> {
        let n =
            std::io::copy(content, &mut std::io::sink()).map_err(|source| AnalyzeError::Io {
                path: file.path.into(),
                source,
            })?;
        if n == 3 {
            return Err(AnalyzeError::Malformed {
                path: file.path.into(),
                reason: "three bytes".into(),
            });
        }
        Ok(Some(Found {
            packages: vec![scan::Package {
                kind: scan::PackageKind::Npm,
                name: self.0.into(),
                version: n.to_string(),
                source_name: None,
                source_version: None,
                arch: None,
                licenses: vec![],
                path: file.path.into(),
                layer: String::new(),
            }],
            os: None,
        }))
    }
}

#[test]
fn a_file_two_analysers_want_is_read_once_for_both() {
    let analyzers: Vec<Box<dyn Analyzer>> = vec![Box::new(Counter("a")), Box::new(Counter("b"))];
    let mut t = Vec::new();
    raw_entry(
        &mut t,
        "data/blob",
        tar::EntryType::Regular,
        "",
        &[7u8; 100_000],
    );
    let inv = analyze_layer("sha256:t", None, Cursor::new(finish(t)), &analyzers).unwrap();
    let got: Vec<_> = inv
        .files
        .iter()
        .map(|f| (f.analyzer.as_str(), f.packages[0].version.as_str()))
        .collect();
    assert_eq!(got, [("a", "100000"), ("b", "100000")]);
    // A malformed file is skipped, the layer goes on.
    let mut t = Vec::new();
    raw_entry(&mut t, "data/blob", tar::EntryType::Regular, "", b"abc");
    raw_entry(
        &mut t,
        "etc/os-release",
        tar::EntryType::Regular,
        "",
        b"ID=x\n",
    );
    let mut all = os_analyzers();
    all.push(Box::new(Counter("c")));
    let inv = analyze_layer("sha256:t", None, Cursor::new(finish(t)), &all).unwrap();
    assert_eq!(inv.files.len(), 1);
    assert_eq!(inv.files[0].path, "/etc/os-release");
}

/// A layer holding a real os-release, dpkg status and rpmdb (from the fixtures) and an apk
/// database, with bytes of the uncompressed tar flipped at random (a fixed seed) 300 times:
/// every run ends in an inventory or a typed error, never a panic.
#[test]
fn mutated_layers_never_panic() {
    let debian = fixtures().join("debian-rootfs");
    let rpm = fixtures().join("rpm-rootfs");
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    };
    add(
        "etc/os-release",
        &std::fs::read(debian.join("usr/lib/os-release")).unwrap(),
    );
    let status = std::fs::read(debian.join("var/lib/dpkg/status")).unwrap();
    add("var/lib/dpkg/status", &status[..status.len().min(64 << 10)]);
    add(
        "lib/apk/db/installed",
        b"P:musl\nV:1.2.5-r0\nA:x86_64\nL:MIT\no:musl\n\nP:busybox\nV:1.36.1-r29\no:busybox\n",
    );
    add(
        "var/lib/rpm/rpmdb.sqlite",
        &std::fs::read(rpm.join("var/lib/rpm/rpmdb.sqlite")).unwrap(),
    );
    let tar = b.into_inner().unwrap();
    let clean = analyze_layer("sha256:clean", None, &tar[..], &os_analyzers()).unwrap();
    assert_eq!(clean.files.len(), 4);

    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..300 {
        let mut bad = tar.clone();
        for _ in 0..(1 + next() % 8) {
            let at = (next() % bad.len() as u64) as usize;
            bad[at] = next() as u8;
        }
        match analyze_layer("sha256:bad", None, &bad[..], &os_analyzers()) {
            Ok(_) => ok += 1,
            Err(_) => failed += 1,
        }
    }
    eprintln!("{ok} mutated layers read, {failed} refused");
    assert_eq!(ok + failed, 300);
}
