//! Orderings with no real implementation installable here (apk-tools is not packaged for
//! Debian bookworm; Go is not installed), checked against the upstream projects' own test
//! data, copied unchanged.

use std::cmp::Ordering;

use vuln::{apk, golang};

/// apk-tools' `test/version.data` (github.com/alpinelinux/apk-tools, commit
/// 50ab589e9a5a84592ee4c0ac5a49506bb6c552fc), byte for byte: lines `A OP B [# comment]`,
/// which upstream's `test/version.sh` checks with `apk version -t A B`.
const APK_VERSION_DATA: &str = include_str!("data/apk-version.data");

#[test]
fn apk_agrees_with_apk_tools_version_data() {
    let (mut valid, mut lenient, mut bad) = (0, 0, Vec::new());
    for line in APK_VERSION_DATA.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.split_whitespace();
        let (Some(a), Some(op), Some(b)) = (f.next(), f.next(), f.next()) else {
            panic!("bad line {line:?}");
        };
        let want = match op {
            "<" => Ordering::Less,
            "=" => Ordering::Equal,
            ">" => Ordering::Greater,
            _ => panic!("bad op in {line:?}"),
        };
        // apk compares invalid versions too (`1.0 < 1.0bc`, "invalid. do string sort"): the
        // strict API refuses them, the lenient one follows apk.
        let got = match apk::compare(a, b) {
            Ok(o) => {
                valid += 1;
                o
            }
            Err(_) => {
                lenient += 1;
                apk::compare_lenient(a, b)
            }
        };
        if got != want
            || apk::compare_lenient(a, b) != want
            || apk::compare_lenient(b, a) != want.reverse()
        {
            bad.push(format!("{line}: got {got:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "apk-tools version.data disagreements:\n{}",
        bad.join("\n")
    );
    assert!(valid > 700, "{valid}");
    println!(
        "apk: {valid} pairs of valid versions and {lenient} with an invalid side agree with version.data"
    );
}

/// `golang.org/x/mod/semver`'s `semver_test.go` (github.com/golang/mod, commit
/// 8b446299501e373f4d7a7d8869d5646e9bfb2e96): versions in increasing order, `""` marking an
/// invalid one; equal canonical forms compare equal. `TestCompare` checks every pair.
const GO_SEMVER_TESTS: &[(&str, &str)] = &[
    ("bad", ""),
    ("v1-alpha.beta.gamma", ""),
    ("v1-pre", ""),
    ("v1+meta", ""),
    ("v1-pre+meta", ""),
    ("v1.2-pre", ""),
    ("v1.2+meta", ""),
    ("v1.2-pre+meta", ""),
    ("v1.0.0-alpha", "v1.0.0-alpha"),
    ("v1.0.0-alpha.1", "v1.0.0-alpha.1"),
    ("v1.0.0-alpha.beta", "v1.0.0-alpha.beta"),
    ("v1.0.0-beta", "v1.0.0-beta"),
    ("v1.0.0-beta.2", "v1.0.0-beta.2"),
    ("v1.0.0-beta.11", "v1.0.0-beta.11"),
    ("v1.0.0-rc.1", "v1.0.0-rc.1"),
    ("v1", "v1.0.0"),
    ("v1.0", "v1.0.0"),
    ("v1.0.0", "v1.0.0"),
    ("v1.2", "v1.2.0"),
    ("v1.2.0", "v1.2.0"),
    ("v1.2.3-456", "v1.2.3-456"),
    ("v1.2.3-456.789", "v1.2.3-456.789"),
    ("v1.2.3-456-789", "v1.2.3-456-789"),
    ("v1.2.3-456a", "v1.2.3-456a"),
    ("v1.2.3-pre", "v1.2.3-pre"),
    ("v1.2.3-pre+meta", "v1.2.3-pre"),
    ("v1.2.3-pre.1", "v1.2.3-pre.1"),
    ("v1.2.3-zzz", "v1.2.3-zzz"),
    ("v1.2.3", "v1.2.3"),
    ("v1.2.3+meta", "v1.2.3"),
    ("v1.2.3+meta-pre", "v1.2.3"),
    ("v1.2.3+meta-pre.sha.256a", "v1.2.3"),
];

#[test]
fn go_agrees_with_x_mod_semver_tests() {
    let mut pairs = 0;
    for (i, (vi, ci)) in GO_SEMVER_TESTS.iter().enumerate() {
        assert_eq!(golang::parse(vi).is_ok(), !ci.is_empty(), "IsValid({vi:?})");
        for (j, (vj, cj)) in GO_SEMVER_TESTS.iter().enumerate() {
            if ci.is_empty() || cj.is_empty() {
                continue; // x/mod orders invalid versions first; this crate refuses them.
            }
            let want = if ci == cj { Ordering::Equal } else { i.cmp(&j) };
            assert_eq!(golang::compare(vi, vj), Ok(want), "Compare({vi:?}, {vj:?})");
            pairs += 1;
        }
    }
    // TestCompare's explicit extra cases.
    for (v, w, want) in [
        ("v1", "v1", Ordering::Equal),
        ("v2", "v1", Ordering::Greater),
        ("v1", "v2", Ordering::Less),
        ("v1.19", "v1.2", Ordering::Greater),
    ] {
        assert_eq!(golang::compare(v, w), Ok(want), "Compare({v:?}, {w:?})");
        pairs += 1;
    }
    println!("go: {pairs} pairs agree with x/mod semver_test.go");
}

/// `cmd/go/internal/modfetch/pseudo_test.go` (github.com/golang/go): every version of
/// `pseudoTests` is a pseudo-version (`TestIsPseudoVersion`).
#[test]
fn go_pseudo_versions_from_modfetch_tests() {
    for v in [
        "v0.0.0-20060102150405-hash",
        "v1.0.0-20060102150405-hash",
        "v2.0.0-20060102150405-hash",
        "v0.0.1-0.20060102150405-hash",
        "v1.2.4-0.20060102150405-hash",
        "v1.2.100000000000000000-0.20060102150405-hash",
        "v1.2.3-pre.0.20060102150405-hash",
        "v1.3.0-pre.0.20060102150405-hash",
        "v0.0.0--.0.20060102150405-hash",
        "v1.0.1-0.20060102150405-hash+metadata",
        "v2.0.1-0.20060102150405-hash+incompatible",
        "v2.3.0-pre.0.20060102150405-hash+incompatible",
    ] {
        assert!(golang::is_pseudo_version(v), "IsPseudoVersion({v:?})");
        assert!(golang::parse(v).is_ok(), "{v}");
    }
}

/// Every fixed version in Alpine's secdb (`shared/vulndata/alpine/secdb`, v3.18 to v3.21) is a
/// valid apk version (`"0"` means "never affected" there and is a version too), except a known
/// handful that break apk's grammar (a digit after a letter, `-0`, dates with dashes): apk
/// itself still orders those, token by token ([`apk::compare_lenient`]); the strict parse
/// names them, so an importer can choose.
#[test]
fn alpine_secdb_versions_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vulndata/alpine/secdb");
    let Ok(branches) = std::fs::read_dir(&dir) else {
        println!("SKIP: {} not found", dir.display());
        return;
    };
    let (mut n, mut bad) = (0, Vec::new());
    for b in branches.flatten() {
        for f in std::fs::read_dir(b.path()).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(f.path()).unwrap_or_default();
            let db: serde_json::Value = serde_json::from_str(&text).expect("secdb json");
            for p in db["packages"].as_array().into_iter().flatten() {
                for v in p["pkg"]["secfixes"]
                    .as_object()
                    .into_iter()
                    .flat_map(|m| m.keys())
                {
                    n += 1;
                    const KNOWN_INVALID: &[&str] = &[
                        "10.0.11-0",
                        "6.6.2p1-r0",
                        "2021-03-27-r5",
                        "4.8.0.-r1",
                        "1.9.5p2-r0",
                    ];
                    let refused = apk::Version::parse(v).is_err();
                    if refused != KNOWN_INVALID.contains(&v.as_str()) {
                        bad.push(format!("{}: {v:?} refused: {refused}", f.path().display()));
                    }
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} secdb versions judged unlike expected:\n{}",
        bad.len(),
        bad[..bad.len().min(20)].join("\n")
    );
    assert!(n > 1000, "{n}");
    println!("apk: {n} secdb fixed versions parse");
}
