//! The rpm analyser on a real SQLite rpmdb: three rpms built here with rpmbuild and installed
//! with Debian's rpm (scripts/scan-fixtures.sh), checked against `rpm -qa`, syft and trivy.

mod os_common;

use std::collections::BTreeMap;
use std::process::Command;

use os_common::{PackageList, check, differences, fixtures, ours, scan, syft, trivy};
use scan::PackageKind;
use scan::analyze::rpm::RpmAnalyzer;
use scan::analyze::{AnalyzeError, Analyzer, FileInfo};

/// What rpm itself says: name -> (`[epoch:]version-release`, source package name).
fn rpm_truth() -> PackageList {
    let root = fixtures().join("rpm-rootfs");
    let out = Command::new("rpm")
        .arg("--root")
        .arg(&root)
        .args(["--dbpath", "/var/lib/rpm", "-qa", "--qf"])
        .arg("%{NAME} %|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE} %{SOURCERPM}\n")
        .output()
        .expect("rpm");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let (src, _) = scan::analyze::rpm::split_source_rpm(f[2]).expect(f[2]);
            (f[0].to_string(), (f[1].to_string(), src.to_string()))
        })
        .collect()
}

#[test]
fn a_real_sqlite_rpmdb() {
    let layout = fixtures().join("rpm-oci");
    let inv = scan(&layout);
    let truth = rpm_truth();
    assert_eq!(truth.len(), 3);
    assert_eq!(ours(&inv), truth);
    let by_name: BTreeMap<_, _> = inv.packages.iter().map(|p| (p.name.as_str(), p)).collect();
    let lib = by_name["libwharf-demo"];
    assert_eq!(lib.kind, PackageKind::Rpm);
    assert_eq!(lib.version, "2:1.4.2-3.wharf1");
    assert_eq!(lib.source_name.as_deref(), Some("wharf-demo"));
    assert_eq!(lib.source_version, None);
    assert_eq!(lib.arch.as_deref(), Some("noarch"));
    assert_eq!(lib.licenses, ["MIT"]);
    assert_eq!(lib.path, "/var/lib/rpm/rpmdb.sqlite");
    assert_eq!(by_name["wharf-demo"].licenses, ["MIT AND Apache-2.0"]);
    assert_eq!(by_name["wharf-demo"].source_name, None);
    assert_eq!(by_name["wharf-other"].version, "0.9-1");

    // syft and trivy agree on every name, version and source package.
    check(
        "syft",
        &differences(&ours(&inv), &syft(&layout, "rpm")),
        &BTreeMap::new(),
    );
    check(
        "trivy",
        &differences(&ours(&inv), &trivy(&layout)),
        &BTreeMap::new(),
    );
}

#[test]
fn a_corrupt_rpmdb_is_malformed_not_a_panic() {
    let db = std::fs::read(fixtures().join("rpm-rootfs/var/lib/rpm/rpmdb.sqlite")).unwrap();
    let info = |size: usize| FileInfo {
        path: "/usr/lib/sysimage/rpm/rpmdb.sqlite",
        size: size as u64,
        mode: 0o644,
    };
    assert!(RpmAnalyzer.wants(&info(db.len())));
    // Intact, at the other path rpm uses.
    let found = RpmAnalyzer
        .analyze(&info(db.len()), &mut &db[..])
        .unwrap()
        .unwrap();
    assert_eq!(found.packages.len(), 3);
    assert!(
        found
            .packages
            .iter()
            .all(|p| p.path == "/usr/lib/sysimage/rpm/rpmdb.sqlite")
    );
    // Truncated, garbage, and every page after the first overwritten.
    let mut scrambled = db.clone();
    for (i, b) in scrambled.iter_mut().enumerate().skip(4096) {
        *b = (i * 7 % 251) as u8;
    }
    for bad in [
        &db[..db.len() / 3],
        &b"not a database at all"[..],
        &scrambled[..],
    ] {
        match RpmAnalyzer.analyze(&info(bad.len()), &mut &bad[..]) {
            Err(AnalyzeError::Malformed { .. }) => {}
            other => panic!("expected Malformed, got {other:?}"),
        }
    }
}
