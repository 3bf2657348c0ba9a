//! OSV range evaluation on the real advisory data in `shared/vulndata/`: the known answer of
//! issue 12 (glibc CVE-2023-4911), and, for every record that carries both `ranges` and the
//! `versions` list osv.dev expanded from them, agreement between the two: every listed version
//! lies in the ranges, and every `fixed` version does not. Plus the schema's own examples for
//! `last_affected`, multiple intervals and `limit`.
//!
//! The data tests skip, with a note, when `shared/` is not beside the checkout.

use std::path::{Path, PathBuf};

use serde_json::Value;
use vuln::{Affected, Ecosystem, Event, Range, RangeKind};

fn vulndata() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vulndata");
    if d.is_dir() {
        Some(d)
    } else {
        println!("SKIP: {} not found", d.display());
        None
    }
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            json_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
}

fn events(range: &Value) -> Vec<Event> {
    let mut out = Vec::new();
    for e in range["events"].as_array().into_iter().flatten() {
        let Some((k, v)) = e.as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        let v = v.as_str().unwrap_or_default().to_owned();
        out.push(match k.as_str() {
            "introduced" => Event::Introduced(v),
            "fixed" => Event::Fixed(v),
            "last_affected" => Event::LastAffected(v),
            "limit" => Event::Limit(v),
            other => panic!("unknown event {other}"),
        });
    }
    out
}

/// One `affected[]` entry built into ranges (skipping GIT ranges), with its fixed versions.
fn build(eco: Ecosystem, affected: &Value) -> Result<(Vec<Range>, Vec<String>), String> {
    let (mut ranges, mut fixed) = (Vec::new(), Vec::new());
    for r in affected["ranges"].as_array().into_iter().flatten() {
        let kind = RangeKind::from_osv(r["type"].as_str().unwrap_or_default())
            .ok_or("unknown range type")?;
        if kind == RangeKind::Git {
            continue;
        }
        let evs = events(r);
        fixed.extend(evs.iter().filter_map(|e| match e {
            Event::Fixed(v) => Some(v.clone()),
            _ => None,
        }));
        ranges.push(Range::new(eco, kind, evs).map_err(|e| e.to_string())?);
    }
    Ok((ranges, fixed))
}

#[test]
fn glibc_cve_2023_4911_known_answer() {
    let Some(d) = vulndata() else { return };
    let text =
        std::fs::read_to_string(d.join("debian/osv/CVE-debian-only/2023/CVE-2023-4911.json"))
            .unwrap();
    let rec: Value = serde_json::from_str(&text).unwrap();
    let entry = rec["affected"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["package"]["ecosystem"] == "Debian:12" && a["package"]["name"] == "glibc")
        .expect("Debian:12 glibc entry");
    let eco = Ecosystem::from_osv("Debian:12").unwrap();
    let (ranges, _) = build(eco, entry).unwrap();
    let affected = Affected::new(eco, ranges.clone(), Vec::new());
    assert_eq!(affected.affects("2.36-9+deb12u2"), Ok(true));
    assert_eq!(affected.affects("2.36-9+deb12u3"), Ok(false));
    assert_eq!(affected.affects("2.36-9+deb12u4"), Ok(false));
    assert_eq!(affected.affects("2.36-9"), Ok(true));
    assert!(affected.affects("not a version").is_err());
}

/// Every record's ranges against its own `versions` list and `fixed` events.
fn check_corpus(
    dir: &Path,
    want_ecosystem: impl Fn(&str) -> bool,
) -> (usize, usize, usize, Vec<String>) {
    let mut files = Vec::new();
    json_files(dir, &mut files);
    let (mut records, mut listed, mut fixed_checked, mut bad) = (0, 0, 0, Vec::new());
    for f in files {
        let Ok(rec) =
            serde_json::from_str::<Value>(&std::fs::read_to_string(&f).unwrap_or_default())
        else {
            continue;
        };
        let id = rec["id"].as_str().unwrap_or("?").to_owned();
        for a in rec["affected"].as_array().into_iter().flatten() {
            let name = a["package"]["ecosystem"].as_str().unwrap_or_default();
            if !want_ecosystem(name) {
                continue;
            }
            let Some(eco) = Ecosystem::from_osv(name) else {
                continue;
            };
            let (ranges, fixed) = match build(eco, a) {
                Ok(x) => x,
                Err(e) => {
                    bad.push(format!("{id}: range refused: {e}"));
                    continue;
                }
            };
            if ranges.is_empty() {
                continue;
            }
            records += 1;
            let only_ranges = Affected::new(eco, ranges, Vec::new());
            for v in a["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if vuln::validate(eco, v).is_err() {
                    continue; // a legacy version the ecosystem's grammar refuses
                }
                listed += 1;
                if only_ranges.affects(v) != Ok(true) {
                    bad.push(format!("{id}: listed version {v} not in the ranges"));
                }
            }
            for v in &fixed {
                fixed_checked += 1;
                if only_ranges.affects(v) != Ok(false) {
                    bad.push(format!("{id}: fixed version {v} reported affected"));
                }
            }
        }
    }
    (records, listed, fixed_checked, bad)
}

#[test]
fn debian_records_ranges_agree_with_their_versions_lists() {
    let Some(d) = vulndata() else { return };
    let (records, listed, fixed, bad) = check_corpus(&d.join("debian/osv/CVE-debian-only"), |e| {
        e.starts_with("Debian:")
    });
    assert!(
        bad.is_empty(),
        "{} disagreements:\n{}",
        bad.len(),
        bad[..bad.len().min(30)].join("\n")
    );
    assert!(
        records > 1000 && listed > 1000,
        "{records} records, {listed} versions"
    );
    println!(
        "debian: {records} affected entries, {listed} listed versions in range, {fixed} fixed versions out of range"
    );
}

#[test]
fn pypi_records_ranges_agree_with_their_versions_lists() {
    let Some(d) = vulndata() else { return };
    let (records, listed, fixed, mut bad) =
        check_corpus(&d.join("pypi/pysec-osv-json"), |e| e == "PyPI");
    // Known, explained: PYSEC-2023-61 (django) lists the pre-releases of each `introduced`
    // version (3.2a1 < 3.2 in PEP 440, as `packaging` agrees) although its ranges start at
    // the release. The record's answer is the union, which `Affected` gives (checked below).
    let known: Vec<String> = ["3.2a1", "3.2b1", "3.2rc1", "4.2a1", "4.2b1", "4.2rc1"]
        .iter()
        .map(|v| format!("PYSEC-2023-61: listed version {v} not in the ranges"))
        .collect();
    let before = bad.len();
    bad.retain(|b| !known.contains(b));
    assert_eq!(
        before - bad.len(),
        known.len(),
        "the known PYSEC-2023-61 difference changed"
    );
    let django = Affected::new(
        Ecosystem::PyPI,
        vec![
            Range::new(
                Ecosystem::PyPI,
                RangeKind::Ecosystem,
                vec![
                    Event::Introduced("3.2".into()),
                    Event::Fixed("3.2.19".into()),
                ],
            )
            .unwrap(),
        ],
        vec!["3.2a1".into()],
    );
    assert_eq!(
        (
            django.affects("3.2a1"),
            django.affects("3.2b1"),
            django.affects("3.2.18")
        ),
        (Ok(true), Ok(false), Ok(true))
    );
    assert!(
        bad.is_empty(),
        "{} disagreements:\n{}",
        bad.len(),
        bad[..bad.len().min(30)].join("\n")
    );
    assert!(
        records > 300 && listed > 1000,
        "{records} records, {listed} versions"
    );
    println!(
        "pypi (PYSEC): {records} affected entries, {listed} listed versions in range, {fixed} fixed versions out of range"
    );
}

#[test]
fn ghsa_go_and_rustsec_ranges_exclude_their_fixed_versions() {
    let Some(d) = vulndata() else { return };
    for (dir, eco) in [
        ("ghsa/pypi", "PyPI"),
        ("ghsa/npm", "npm"),
        ("go", "Go"),
        ("rust/rustsec-osv-json", "crates.io"),
    ] {
        let (records, listed, fixed, bad) = check_corpus(&d.join(dir), |e| e == eco);
        assert!(
            bad.is_empty(),
            "{dir}: {} disagreements:\n{}",
            bad.len(),
            bad[..bad.len().min(30)].join("\n")
        );
        assert!(records > 50, "{dir}: {records}");
        println!(
            "{dir}: {records} affected entries, {listed} listed versions in range, {fixed} fixed versions out of range"
        );
    }
}

/// The OSV schema's examples ("Examples" in docs/schema.md of ossf/osv-schema).
#[test]
fn schema_examples() {
    let semver = |evs: Vec<Event>| Range::new(Ecosystem::Npm, RangeKind::Semver, evs).unwrap();
    use Event::*;
    // "everything before 1.0.2".
    let r = semver(vec![Introduced("0".into()), Fixed("1.0.2".into())]);
    assert_eq!(
        (r.affects("1.0.1"), r.affects("1.0.2")),
        (Ok(true), Ok(false))
    );
    // [1.0.0, 1.0.2) or [3.0.0, 3.2.5), events given out of order.
    let r = semver(vec![
        Fixed("3.2.5".into()),
        Introduced("1.0.0".into()),
        Introduced("3.0.0".into()),
        Fixed("1.0.2".into()),
    ]);
    let got: Vec<bool> = [
        "0.9.0", "1.0.0", "1.0.1", "1.0.2", "2.0.0", "3.0.0", "3.2.4", "3.2.5",
    ]
    .iter()
    .map(|v| r.affects(v).unwrap())
    .collect();
    assert_eq!(got, [false, true, true, false, false, true, true, false]);
    // last_affected 2.1.214 is itself affected, above it is not.
    let r = Range::new(
        Ecosystem::Maven,
        RangeKind::Ecosystem,
        vec![Introduced("0".into()), LastAffected("2.1.214".into())],
    )
    .unwrap();
    assert_eq!(
        (r.affects("2.1.214"), r.affects("2.1.215")),
        (Ok(true), Ok(false))
    );
    // limit: only versions below a limit are in the range; "*" is no limit.
    let r = semver(vec![Introduced("1.0.0".into()), Limit("2.0.0".into())]);
    assert_eq!(
        (r.affects("1.5.0"), r.affects("2.0.0"), r.affects("0.5.0")),
        (Ok(true), Ok(false), Ok(false))
    );
    let r = semver(vec![Introduced("1.0.0".into()), Limit("*".into())]);
    assert_eq!(r.affects("99.0.0"), Ok(true));
    // Refusals: no introduced, a bad bound, GIT.
    assert!(
        Range::new(
            Ecosystem::Npm,
            RangeKind::Semver,
            vec![Fixed("1.0.0".into())]
        )
        .is_err()
    );
    assert!(
        Range::new(
            Ecosystem::Dpkg,
            RangeKind::Ecosystem,
            vec![Introduced("0".into()), Fixed("x1".into())]
        )
        .is_err()
    );
    assert!(
        Range::new(
            Ecosystem::Go,
            RangeKind::Git,
            vec![Introduced("abc".into())]
        )
        .is_err()
    );
}
