//! The OS analysers and the layer walker on a real Debian bookworm minbase image
//! (scripts/scan-fixtures.sh), checked against dpkg's own view of the root filesystem and
//! against syft's and trivy's SBOMs of the same OCI layout.

mod os_common;

use std::collections::BTreeMap;
use std::process::Command;

use os_common::{PackageList, check, differences, fixtures, ours, scan, syft, trivy};
use scan::PackageKind;

/// What dpkg itself says is installed in the root filesystem the image was made from:
/// name -> (version, source name).
fn dpkg_truth() -> PackageList {
    let admindir = fixtures().join("debian-rootfs/var/lib/dpkg");
    let out = Command::new("dpkg-query")
        .arg(format!("--admindir={}", admindir.display()))
        .args([
            "-W",
            "-f",
            "${db:Status-Status} ${Package} ${Version} ${source:Package}\n",
        ])
        .output()
        .expect("dpkg-query");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0] == "installed").then(|| (f[1].to_string(), (f[2].to_string(), f[3].to_string())))
        })
        .collect()
}

#[test]
fn debian_minbase_packages_and_os() {
    let inv = scan(&fixtures().join("debian-oci"));
    let os = inv.os.as_ref().expect("os-release found");
    assert_eq!(os.id, "debian");
    assert_eq!(os.version_id.as_deref(), Some("12"));
    assert_eq!(os.codename.as_deref(), Some("bookworm"));
    assert_eq!(
        os.pretty_name.as_deref(),
        Some("Debian GNU/Linux 12 (bookworm)")
    );
    assert_eq!(os.osv_ecosystem().as_deref(), Some("Debian:12"));
    let n = inv.packages.len();
    assert!((80..=100).contains(&n), "{n} packages");
    assert!(inv.packages.iter().all(|p| p.kind == PackageKind::Deb
        && p.path == "/var/lib/dpkg/status"
        && p.layer.starts_with("sha256:")
        && p.arch.is_some()));
    let libc = inv.packages.iter().find(|p| p.name == "libc6").unwrap();
    assert_eq!(libc.source_name.as_deref(), Some("glibc"));
    assert_eq!(libc.match_name(), "glibc");
    assert!(
        libc.version.starts_with("2.36-9+deb12u"),
        "{}",
        libc.version
    );
    // Source versions that differ from the binary's, as dpkg reports them.
    let with_src_version: Vec<_> = inv
        .packages
        .iter()
        .filter(|p| p.source_version.is_some())
        .map(|p| &p.name)
        .collect();
    eprintln!("packages with their own source version: {with_src_version:?}");
    // Exactly what dpkg-query says, no more, no less.
    assert_eq!(ours(&inv), dpkg_truth());
}

/// syft's and trivy's package lists of the same layout, compared on name, version and source
/// package; every difference must be one of the named, explained exceptions below.
#[test]
fn debian_minbase_agrees_with_syft_and_trivy() {
    let layout = fixtures().join("debian-oci");
    let mine = ours(&scan(&layout));

    // syft 1.18: no differences are expected at all.
    let syft_exceptions: BTreeMap<&str, &str> = BTreeMap::new();
    let d = differences(&mine, &syft(&layout, "deb"));
    check("syft", &d, &syft_exceptions);

    // trivy 0.59: none expected either.
    let trivy_exceptions: BTreeMap<&str, &str> = BTreeMap::new();
    let d = differences(&mine, &trivy(&layout));
    check("trivy", &d, &trivy_exceptions);
}

/// Percent-decodes a purl, so that two purls compare on what they say rather than on which
/// characters each tool escapes (ours escapes an epoch's `:`, syft leaves it).
fn decode(purl: &str) -> String {
    let b = purl.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// Every package's purl (with the image's OS) says what syft's says: type, vendor, name,
/// version, arch, distro and upstream source with its version.
#[test]
fn debian_purls_agree_with_syft() {
    let layout = fixtures().join("debian-oci");
    let inv = scan(&layout);
    let out = Command::new(os_common::syft_bin())
        .arg(format!("oci-dir:{}", layout.display()))
        .args(["-o", "syft-json", "-q"])
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
        .output()
        .expect("syft");
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let theirs: BTreeMap<String, String> = doc["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"] == "deb")
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_string(),
                decode(a["purl"].as_str().unwrap()),
            )
        })
        .collect();
    let mine: BTreeMap<String, String> = inv
        .packages
        .iter()
        .map(|p| (p.name.clone(), decode(&p.purl(inv.os.as_ref()))))
        .collect();
    assert_eq!(mine.len(), theirs.len());
    let diffs: Vec<_> = mine
        .iter()
        .filter(|(n, p)| theirs.get(*n) != Some(*p))
        .map(|(n, p)| format!("{n}: ours {p}, syft {:?}", theirs.get(n)))
        .collect();
    assert!(diffs.is_empty(), "{diffs:#?}");
}
