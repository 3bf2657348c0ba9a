//! `match_image` over image inventories built from layers, against an index loaded from the
//! database holding real advisories: OS packages by source package in their own release,
//! language packages in their ecosystem, ignore rules marking findings suppressed.

#[path = "db_common.rs"]
mod common;

use std::path::Path;
use std::sync::OnceLock;

use common::DATA;
use scan::db::{VulnDb, apply_ignores, match_image};
use scan::{FileFinding, ImageInventory, LayerInventory, OsRelease, Package, PackageKind};
use vuln::{IgnoreRules, Index, Severity};

fn index() -> &'static Index {
    static I: OnceLock<Index> = OnceLock::new();
    I.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let db = VulnDb::open(tmp.path()).unwrap();
        for rel in [
            "debian/osv/CVE-debian-only",
            "debian/osv/DSA",
            "pypi/pysec-osv-json",
            "ghsa/pypi",
            "ghsa/npm",
            "alpine/secdb/v3.20/main.json",
        ] {
            db.import_path(Path::new(DATA).join(rel)).unwrap();
        }
        db.index().unwrap()
    })
}

fn deb(name: &str, version: &str, source: Option<(&str, &str)>) -> Package {
    Package {
        kind: PackageKind::Deb,
        name: name.into(),
        version: version.into(),
        source_name: source.map(|s| s.0.into()),
        source_version: source.map(|s| s.1.into()),
        arch: Some("amd64".into()),
        licenses: vec![],
        path: "/var/lib/dpkg/status".into(),
        layer: String::new(),
    }
}

fn lang(kind: PackageKind, name: &str, version: &str, path: &str) -> Package {
    Package {
        kind,
        name: name.into(),
        version: version.into(),
        source_name: None,
        source_version: None,
        arch: None,
        licenses: vec![],
        path: path.into(),
        layer: String::new(),
    }
}

fn os(id: &str, v: &str) -> FileFinding {
    FileFinding {
        path: "/etc/os-release".into(),
        analyzer: "os-release".into(),
        packages: vec![],
        os: Some(OsRelease {
            id: id.into(),
            version_id: Some(v.into()),
            codename: None,
            pretty_name: None,
        }),
    }
}

fn file(path: &str, packages: Vec<Package>) -> FileFinding {
    FileFinding {
        path: path.into(),
        analyzer: "test".into(),
        packages,
        os: None,
    }
}

fn debian_image(glibc: &str) -> ImageInventory {
    let base = LayerInventory {
        digest: "sha256:base".into(),
        files: vec![
            os("debian", "12"),
            file(
                "/var/lib/dpkg/status",
                vec![
                    deb("libc6", glibc, Some(("glibc", glibc))),
                    deb("libc-bin", glibc, Some(("glibc", glibc))),
                    deb("apt", "2.6.1", None),
                    // binNMU: the source version decides.
                    deb(
                        "zlib1g",
                        "1:1.2.13.dfsg-1+b1",
                        Some(("zlib", "1:1.2.13.dfsg-1")),
                    ),
                ],
            ),
        ],
        ..Default::default()
    };
    let app = LayerInventory {
        digest: "sha256:app".into(),
        files: vec![file(
            "/app/site-packages/requests-2.19.0.dist-info/METADATA",
            vec![lang(
                PackageKind::Python,
                "Requests",
                "2.19.0",
                "/app/site-packages/requests-2.19.0.dist-info/METADATA",
            )],
        )],
        ..Default::default()
    };
    ImageInventory::combine([&base, &app])
}

#[test]
fn a_debian_image_with_python() {
    let inv = debian_image("2.36-9+deb12u2");
    let findings = match_image(index(), &inv);
    let looney: Vec<_> = findings
        .iter()
        .filter(|f| f.finding.id == "CVE-2023-4911")
        .collect();
    // Once per installed binary package of glibc.
    assert_eq!(looney.len(), 2);
    let names: Vec<&str> = looney.iter().map(|f| f.installed.name.as_str()).collect();
    assert_eq!(names, ["libc-bin", "libc6"]);
    assert_eq!(looney[0].finding.package, "glibc");
    assert_eq!(looney[0].finding.ecosystem, "Debian:12");
    assert_eq!(looney[0].finding.fixed.as_deref(), Some("2.36-9+deb12u3"));
    assert_eq!(looney[0].installed.layer, "sha256:base");
    let apt = findings
        .iter()
        .find(|f| f.finding.id == "CVE-2011-3374")
        .unwrap();
    assert_eq!(apt.finding.severity, Severity::Negligible);
    // zlib's unfixed CVE-2023-45853 through the source package name.
    assert!(
        findings
            .iter()
            .any(|f| f.finding.id == "CVE-2023-45853" && f.installed.name == "zlib1g")
    );
    let req = findings
        .iter()
        .find(|f| f.finding.id == "CVE-2018-18074")
        .unwrap();
    assert_eq!(req.installed.name, "Requests");
    assert_eq!(req.installed.layer, "sha256:app");
    assert_eq!(req.finding.fixed.as_deref(), Some("2.20.0"));

    // The fixed glibc: no CVE-2023-4911, the rest unchanged.
    let fixed = match_image(index(), &debian_image("2.36-9+deb12u3"));
    assert!(!fixed.iter().any(|f| f.finding.id == "CVE-2023-4911"));
    assert!(fixed.iter().any(|f| f.finding.id == "CVE-2018-18074"));
}

#[test]
fn os_packages_need_their_own_release() {
    let pkgs = vec![deb(
        "libc6",
        "2.36-9+deb12u2",
        Some(("glibc", "2.36-9+deb12u2")),
    )];
    for (id, v, expect) in [
        ("debian", "12", true),
        ("debian", "11", false), // bullseye's entries have a different fix; 2.36 is above it
        ("alpine", "3.20.3", false), // a dpkg database in an Alpine image: not matched
        ("ubuntu", "22.04", false),
    ] {
        let layer = LayerInventory {
            digest: "sha256:x".into(),
            files: vec![os(id, v), file("/var/lib/dpkg/status", pkgs.clone())],
            ..Default::default()
        };
        let inv = ImageInventory::combine([&layer]);
        let has = match_image(index(), &inv)
            .iter()
            .any(|f| f.finding.id == "CVE-2023-4911");
        assert_eq!(has, expect, "{id} {v}");
    }
    // No os-release: OS packages cannot be placed, language packages still match.
    let layer = LayerInventory {
        digest: "sha256:x".into(),
        files: vec![
            file("/var/lib/dpkg/status", pkgs),
            file(
                "/app/node_modules/lodash/package.json",
                vec![lang(
                    PackageKind::Npm,
                    "lodash",
                    "4.17.15",
                    "/app/node_modules/lodash/package.json",
                )],
            ),
        ],
        ..Default::default()
    };
    let f = match_image(index(), &ImageInventory::combine([&layer]));
    assert!(f.iter().all(|f| f.installed.kind == PackageKind::Npm));
    assert!(f.iter().any(|f| f.finding.id == "CVE-2020-8203"));
}

#[test]
fn an_alpine_image() {
    let apk = |name: &str, v: &str, origin: &str| Package {
        kind: PackageKind::Apk,
        name: name.into(),
        version: v.into(),
        source_name: Some(origin.into()),
        source_version: None,
        arch: Some("x86_64".into()),
        licenses: vec![],
        path: "/lib/apk/db/installed".into(),
        layer: String::new(),
    };
    let layer = LayerInventory {
        digest: "sha256:alpine".into(),
        files: vec![
            os("alpine", "3.20.3"),
            file(
                "/lib/apk/db/installed",
                vec![
                    apk("libcrypto3", "3.3.1-r3", "openssl"),
                    apk("libssl3", "3.3.2-r1", "openssl"),
                ],
            ),
        ],
        ..Default::default()
    };
    let f = match_image(index(), &ImageInventory::combine([&layer]));
    let ids = |name: &str| -> Vec<&str> {
        f.iter()
            .filter(|x| x.installed.name == name)
            .map(|x| x.finding.id.as_str())
            .collect()
    };
    assert!(ids("libcrypto3").contains(&"CVE-2024-6119"));
    assert!(!ids("libssl3").contains(&"CVE-2024-6119"));
}

#[test]
fn ignore_rules_mark_findings_suppressed() {
    let mut findings = match_image(index(), &debian_image("2.36-9+deb12u2"));
    let rules = IgnoreRules::parse(
        r#"
[[ignore]]
id = "CVE-2011-3374"
reason = "apt-key is not used"

[[ignore]]
id = "CVE-2023-4911"
package = "libc6"
image = "team-a/*"
reason = "no setuid binaries in this image"
expires = "2030-01-01"

[[ignore]]
id = "GHSA-x84v-xcm2-53pg"
package = "requests"
reason = "redirects not followed"
expires = "2020-01-01"
"#,
    )
    .unwrap();
    let n = apply_ignores(&mut findings, &rules, "team-a/web:1.0", "2026-12-07");
    fn get_in(findings: &[scan::ImageFinding], id: &str, pkg: &str) -> Option<String> {
        findings
            .iter()
            .find(|f| f.finding.id == id && f.installed.name == pkg)
            .unwrap()
            .suppressed
            .clone()
    }
    macro_rules! get {
        ($id:expr, $pkg:expr) => {
            get_in(&findings, $id, $pkg)
        };
    }
    assert_eq!(
        get!("CVE-2011-3374", "apt").as_deref(),
        Some("apt-key is not used")
    );
    assert_eq!(
        get!("CVE-2023-4911", "libc6").as_deref(),
        Some("no setuid binaries in this image")
    );
    assert_eq!(
        get!("CVE-2023-4911", "libc-bin"),
        None,
        "the rule names libc6 only"
    );
    // Expired: the GHSA alias would match, but the rule no longer holds.
    assert_eq!(get!("CVE-2018-18074", "Requests"), None);
    assert_eq!(rules.expired("2026-12-07").count(), 1);
    assert_eq!(
        n,
        findings.iter().filter(|f| f.suppressed.is_some()).count()
    );
    // Another image: the image-scoped rule does not apply.
    apply_ignores(&mut findings, &rules, "team-b/web:1.0", "2026-12-07");
    assert_eq!(get!("CVE-2023-4911", "libc6"), None);
    // Before expiry, the alias matches.
    apply_ignores(&mut findings, &rules, "team-b/web:1.0", "2019-06-01");
    assert_eq!(
        get!("CVE-2018-18074", "Requests").as_deref(),
        Some("redirects not followed")
    );
}
