//! The whole of `shared/vulndata` (beside the repository) (real advisories, see its README) through the readers
//! and the matcher: every OSV record, every Alpine secdb file, and a Debian tracker JSON
//! generated from `debian/debian-advisories-summary.tsv` (derived data: the tracker's own JSON
//! is not in the data set; the TSV is itself derived from the same CVE records, so the
//! comparison checks the two readers and the matcher agree, not two independent sources).
//! Known answers from the README; every dpkg ordering an answer depends on is checked with
//! `dpkg --compare-versions`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use vuln::{Advisory, Index, Severity, parse_osv, parse_secdb, parse_tracker};

/// `shared/vulndata` beside the repository (see its README).
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/vulndata");

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
}

fn json_files(rel: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    walk(&Path::new(DATA).join(rel), &mut v);
    v
}

/// The OSV groups the README lists, with their file counts.
const OSV_GROUPS: [(&str, usize); 8] = [
    ("pypi/pysec-osv-json", 346),
    ("ghsa/pypi", 434),
    ("ghsa/npm", 88),
    ("debian/osv/DSA", 15),
    ("debian/osv/DLA", 272),
    ("debian/osv/CVE-debian-only", 1358),
    ("go/vulndb-osv", 319),
    ("rust/rustsec-osv-json", 83),
];

struct Data {
    osv: Vec<Advisory>,
    alpine: Vec<Advisory>,
    index: Index,
}

fn data() -> &'static Data {
    static D: OnceLock<Data> = OnceLock::new();
    D.get_or_init(|| {
        let mut osv = Vec::new();
        let mut errors = Vec::new();
        for (group, count) in OSV_GROUPS {
            let files = json_files(group);
            assert_eq!(files.len(), count, "{group}");
            for f in files {
                let bytes = std::fs::read(&f).unwrap();
                match parse_osv(&f.display().to_string(), &bytes) {
                    Ok(a) => osv.push(a),
                    Err(e) => errors.push(e.to_string()),
                }
            }
        }
        assert!(errors.is_empty(), "parse errors: {errors:#?}");
        let mut alpine = Vec::new();
        for v in ["v3.18", "v3.19", "v3.20", "v3.21"] {
            for repo in ["main", "community"] {
                let p = format!("{DATA}/alpine/secdb/{v}/{repo}.json");
                let f = std::fs::File::open(&p).unwrap();
                alpine.extend(parse_secdb(&p, std::io::BufReader::new(f)).unwrap());
            }
        }
        let index = Index::build(osv.iter().chain(alpine.iter()).cloned());
        Data { osv, alpine, index }
    })
}

fn dpkg_lt(a: &str, b: &str) -> bool {
    let st = Command::new("dpkg")
        .args(["--compare-versions", a, "lt", b])
        .status()
        .expect("dpkg must be installed");
    st.success()
}

fn ids(f: &[vuln::Finding]) -> BTreeSet<String> {
    f.iter().map(|f| f.id.clone()).collect()
}

#[test]
fn every_record_parses_and_indexes() {
    let d = data();
    assert_eq!(d.osv.len(), 346 + 434 + 88 + 15 + 272 + 1358 + 319 + 83);
    let stats = d.index.stats();
    eprintln!(
        "advisories {} entries {} withdrawn {} unknown ecosystems {:?}",
        stats.advisories, stats.entries, stats.withdrawn, stats.unknown_ecosystems
    );
    // The only problems: Alpine secfixes keys that are not apk versions (typos upstream:
    // `6.6.2p1` for `6.6.2_p1`, `4.8.0.` with a trailing dot, a date, a missing `r`). Each
    // makes that package's entry for that id unmatchable, and is reported.
    let bad_keys = [
        "4.8.0.-r1",
        "6.6.2p1-r0",
        "1.9.5p2-r0",
        "2021-03-27-r5",
        "10.0.11-0",
    ];
    assert_eq!(stats.problems.len(), 21, "{:#?}", stats.problems);
    for p in &stats.problems {
        assert!(p.ecosystem.starts_with("Alpine:"), "{p:?}");
        assert!(bad_keys.iter().any(|k| p.error.contains(k)), "{p:?}");
    }
    assert!(stats.unknown_ecosystems.is_empty());
    // Alpine: README counts 2,562 CVE references in v3.18/main alone; every (id, package,
    // branch) is one entry.
    assert!(d.alpine.iter().map(|a| a.affected.len()).sum::<usize>() > 30_000);
    for eco in [
        "Debian:11",
        "Debian:12",
        "Debian:13",
        "Alpine:v3.20",
        "PyPI",
        "npm",
        "Go",
        "crates.io",
    ] {
        assert!(d.index.ecosystems().any(|e| e == eco), "{eco}");
    }
}

#[test]
fn debian_known_answers() {
    let idx = &data().index;
    assert!(dpkg_lt("2.36-9+deb12u2", "2.36-9+deb12u3"));
    let f = idx.matches("Debian:12", "glibc", "2.36-9+deb12u2").unwrap();
    let looney = f
        .iter()
        .find(|f| f.id == "CVE-2023-4911")
        .expect("CVE-2023-4911");
    assert_eq!(looney.fixed.as_deref(), Some("2.36-9+deb12u3"));
    assert!(
        looney.aliases.contains(&"DSA-5514-1".to_string()),
        "{looney:?}"
    );
    assert_eq!(
        looney.severity,
        Severity::High,
        "NVD 7.8, urgency not assigned"
    );
    assert_eq!(looney.cvss.as_ref().unwrap().score, 7.8);
    assert!(
        !f.iter().any(|f| f.id == "DSA-5514-1"),
        "the DSA is folded into its CVE"
    );
    let f = idx.matches("Debian:12", "glibc", "2.36-9+deb12u3").unwrap();
    assert!(!ids(&f).contains("CVE-2023-4911"));

    assert!(dpkg_lt("3.0.14-1~deb12u1", "3.0.14-1~deb12u2"));
    assert!(dpkg_lt("3.0.14-1~deb12u2", "3.0.14-1"));
    let f = idx
        .matches("Debian:12", "openssl", "3.0.14-1~deb12u1")
        .unwrap();
    let c = f
        .iter()
        .find(|f| f.id == "CVE-2024-6119")
        .expect("CVE-2024-6119");
    assert_eq!(c.fixed.as_deref(), Some("3.0.14-1~deb12u2"));
    let f = idx
        .matches("Debian:12", "openssl", "3.0.14-1~deb12u2")
        .unwrap();
    assert!(!ids(&f).contains("CVE-2024-6119"));

    let f = idx.matches("Debian:12", "apt", "2.6.1").unwrap();
    let c = f
        .iter()
        .find(|f| f.id == "CVE-2011-3374")
        .expect("CVE-2011-3374");
    assert_eq!(c.fixed, None);
    assert_eq!(c.severity, Severity::Negligible);
    assert_eq!(
        c.cvss.as_ref().unwrap().score,
        3.7,
        "the vector is still shown"
    );
    // Unfixed: every later bookworm version too.
    let f = idx.matches("Debian:12", "apt", "2.6.1+deb12u9").unwrap();
    assert!(ids(&f).contains("CVE-2011-3374"));
}

#[test]
fn a_backport_is_judged_by_its_own_release_only() {
    let d = data();
    let v = "2.36-9+deb12u4";
    let found = ids(&d.index.matches("Debian:12", "glibc", v).unwrap());
    // Every finding must come from a Debian:12 glibc entry that (per dpkg) affects v; in
    // particular none from Debian:13's "fixed 2.37-x" entries.
    let mut expected = BTreeSet::new();
    for a in &d.osv {
        if !a.id.starts_with("CVE-") {
            continue;
        }
        for e in &a.affected {
            if e.ecosystem == "Debian:12" && e.name == "glibc" {
                let affected = match e.fixed.first() {
                    None => true,
                    Some(fx) => dpkg_lt(v, fx),
                };
                if affected {
                    expected.insert(a.id.clone());
                }
            }
        }
    }
    assert_eq!(found, expected);
    assert!(!found.contains("CVE-2023-4911"));
    // The same version against trixie's entries would match 2.37-12's fix: the key matters.
    assert!(dpkg_lt(v, "2.37-12"));
    let trixie = ids(&d.index.matches("Debian:13", "glibc", v).unwrap());
    assert!(trixie.contains("CVE-2023-4911"));
    // Nothing for a release the data has no advisories for, and nothing across distros.
    assert!(d.index.matches("Debian:14", "glibc", v).unwrap().is_empty());
    assert!(
        d.index
            .matches("Alpine:v3.20", "glibc", v)
            .unwrap()
            .is_empty()
    );
}

/// The summary TSV's rows for one release, with their rows' CVE, package, fixed version.
struct Row {
    id: String,
    package: String,
    release: String,
    fixed: Option<String>,
    urgency: String,
}

fn tsv_rows() -> Vec<Row> {
    let text =
        std::fs::read_to_string(format!("{DATA}/debian/debian-advisories-summary.tsv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            Row {
                id: c[0].into(),
                package: c[1].into(),
                release: c[2].into(),
                fixed: (c[3] == "fixed").then(|| c[4].to_string()),
                urgency: c[6].into(),
            }
        })
        .collect()
}

fn codename(release: &str) -> Option<&'static str> {
    Some(match release {
        "Debian:10" => "buster",
        "Debian:11" => "bullseye",
        "Debian:12" => "bookworm",
        "Debian:13" => "trixie",
        _ => return None,
    })
}

/// Builds a tracker JSON document from the TSV (fixed → resolved, unfixed → open).
fn tracker_json(rows: &[Row]) -> String {
    let mut doc: BTreeMap<&str, BTreeMap<&str, serde_json::Map<String, serde_json::Value>>> =
        BTreeMap::new();
    for r in rows {
        // The tracker is keyed by CVE; the TSV's DSA/DLA rows come from the OSV DSA/DLA files.
        let Some(code) = codename(&r.release).filter(|_| r.id.starts_with("CVE-")) else {
            continue;
        };
        let cve = doc
            .entry(&r.package)
            .or_default()
            .entry(&r.id)
            .or_insert_with(|| {
                let mut m = serde_json::Map::new();
                m.insert("description".into(), "from the TSV".into());
                m.insert("releases".into(), serde_json::json!({}));
                m
            });
        let mut rel = serde_json::json!({
            "status": if r.fixed.is_some() { "resolved" } else { "open" },
            "repositories": {code: "x"},
            "urgency": r.urgency,
        });
        if let Some(f) = &r.fixed {
            rel["fixed_version"] = f.as_str().into();
        }
        cve["releases"][code] = rel;
    }
    serde_json::to_string(&doc).unwrap()
}

#[test]
fn tracker_and_osv_give_the_same_bookworm_findings() {
    let d = data();
    let rows = tsv_rows();
    let json = tracker_json(&rows);
    let tracker = parse_tracker("generated-tracker.json", json.as_bytes()).unwrap();
    let tindex = Index::build(tracker);
    assert!(tindex.stats().problems.is_empty());
    // The OSV side: the CVE records only (the tracker has no DSAs).
    let oindex = Index::build(d.osv.iter().filter(|a| a.id.starts_with("CVE-")).cloned());
    // Versions: each bookworm source package at its current version (bookworm 12.15 and
    // security), every fixed version, and just below each fixed version.
    let bins =
        std::fs::read_to_string(format!("{DATA}/debian/bookworm-target-binaries.tsv")).unwrap();
    let mut queries: BTreeSet<(String, String)> = BTreeSet::new();
    for l in bins.lines().skip(1) {
        let c: Vec<&str> = l.split('\t').collect();
        queries.insert((c[3].to_string(), c[4].to_string()));
    }
    for r in rows.iter().filter(|r| r.release == "Debian:12") {
        if let Some(f) = &r.fixed {
            queries.insert((r.package.clone(), f.clone()));
            queries.insert((r.package.clone(), format!("{f}~")));
        }
    }
    let mut compared = 0;
    let mut with_findings = 0;
    for (pkg, ver) in &queries {
        let t = tindex.matches("Debian:12", pkg, ver).unwrap();
        let o = oindex.matches("Debian:12", pkg, ver).unwrap();
        assert_eq!(ids(&t), ids(&o), "{pkg} {ver}");
        for (a, b) in t.iter().zip(&o) {
            assert_eq!(a.fixed, b.fixed, "{pkg} {ver} {}", a.id);
            // The tracker carries no CVSS vector: equal severity when the urgency decides.
            if a.severity != Severity::Unknown {
                assert_eq!(a.severity, b.severity, "{pkg} {ver} {}", a.id);
            }
        }
        compared += 1;
        with_findings += usize::from(!t.is_empty());
    }
    eprintln!("{compared} package versions compared, {with_findings} with findings");
    assert!(compared > 1500 && with_findings > 500);
}

#[test]
fn current_bookworm_versions_match_what_dpkg_says() {
    // For each target package at its current bookworm version, the findings are exactly the
    // TSV rows for Debian:12 that are unfixed or whose fix dpkg orders above the version.
    let d = data();
    let rows = tsv_rows();
    let bins =
        std::fs::read_to_string(format!("{DATA}/debian/bookworm-target-binaries.tsv")).unwrap();
    let mut current: BTreeMap<String, String> = BTreeMap::new();
    for l in bins.lines().skip(1) {
        let c: Vec<&str> = l.split('\t').collect();
        // The highest of the suites' versions (security may be newer than the point release).
        let e = current
            .entry(c[3].to_string())
            .or_insert_with(|| c[4].to_string());
        if dpkg_lt(e, c[4]) {
            *e = c[4].to_string();
        }
    }
    let mut total = 0;
    for (pkg, ver) in &current {
        let expected: BTreeSet<String> = rows
            .iter()
            .filter(|r| r.release == "Debian:12" && &r.package == pkg)
            .filter(|r| r.fixed.as_deref().is_none_or(|f| dpkg_lt(ver, f)))
            .map(|r| r.id.clone())
            .collect();
        let found: BTreeSet<String> = d
            .index
            .matches("Debian:12", pkg, ver)
            .unwrap()
            .into_iter()
            .map(|f| f.id)
            .filter(|id| id.starts_with("CVE-"))
            .collect();
        assert_eq!(found, expected, "{pkg} {ver}");
        total += found.len();
    }
    eprintln!(
        "{} packages, {total} findings at current versions",
        current.len()
    );
    assert!(total > 50, "the unfixed ones at least");
}

#[test]
fn alpine_known_answers() {
    let idx = &data().index;
    let f = idx.matches("Alpine:v3.20", "openssl", "3.3.1-r3").unwrap();
    let c = f
        .iter()
        .find(|f| f.id == "CVE-2024-6119")
        .expect("CVE-2024-6119");
    assert_eq!(c.fixed.as_deref(), Some("3.3.2-r0"));
    assert!(ids(&f).contains("CVE-2024-9143"));
    let f = idx.matches("Alpine:v3.20", "openssl", "3.3.2-r0").unwrap();
    assert!(!ids(&f).contains("CVE-2024-6119"));
    assert!(ids(&f).contains("CVE-2024-9143"));
    // v3.18 fixed it in 3.1.7-r0: its own branch's fix decides.
    let f = idx.matches("Alpine:v3.18", "openssl", "3.1.6-r2").unwrap();
    assert_eq!(
        f.iter()
            .find(|f| f.id == "CVE-2024-6119")
            .unwrap()
            .fixed
            .as_deref(),
        Some("3.1.7-r0")
    );
    assert!(
        !ids(&idx.matches("Alpine:v3.18", "openssl", "3.1.7-r0").unwrap())
            .contains("CVE-2024-6119")
    );
    // "0": never affected in the branch.
    assert!(
        !ids(&idx.matches("Alpine:v3.20", "zlib", "1.3.1-r0").unwrap()).contains("CVE-2023-45853")
    );
    // Several ids in one string: the first is the id, the rest aliases.
    let f = idx.matches("Alpine:v3.18", "busybox", "1.35.0-r1").unwrap();
    let c = f
        .iter()
        .find(|f| f.id == "ALPINE-13661")
        .expect("ALPINE-13661");
    assert_eq!(c.fixed.as_deref(), Some("1.35.0-r7"));
}

#[test]
fn language_ecosystem_known_answers() {
    let idx = &data().index;
    // PyPI: PYSEC-2018-28 and GHSA-x84v-xcm2-53pg are one finding, under the CVE.
    let f = idx.matches("PyPI", "requests", "2.19.0").unwrap();
    let c = f
        .iter()
        .find(|f| f.id == "CVE-2018-18074")
        .expect("CVE-2018-18074");
    assert_eq!(c.fixed.as_deref(), Some("2.20.0"));
    assert!(c.aliases.contains(&"PYSEC-2018-28".to_string()));
    assert!(c.aliases.contains(&"GHSA-x84v-xcm2-53pg".to_string()));
    assert_eq!(
        f.iter()
            .filter(|f| f.aliases.contains(&"PYSEC-2018-28".into()))
            .count(),
        1
    );
    assert!(!ids(&idx.matches("PyPI", "requests", "2.20.0").unwrap()).contains("CVE-2018-18074"));
    // GHSA writes "Django"; PEP 503 on both sides.
    assert!(!idx.matches("PyPI", "django", "2.2.3").unwrap().is_empty());
    assert!(ids(&idx.matches("PyPI", "Django", "2.2.3").unwrap()).contains("CVE-2019-14233"));
    // npm: lodash 4.17.15 prototype pollution (CVE-2020-8203, fixed 4.17.19).
    let f = idx.matches("npm", "lodash", "4.17.15").unwrap();
    let c = f
        .iter()
        .find(|f| f.id == "CVE-2020-8203")
        .expect("CVE-2020-8203");
    assert!(c.aliases.contains(&"GHSA-p6mc-m468-83gw".to_string()));
    assert_eq!(c.fixed.as_deref(), Some("4.17.19"));
    assert_eq!(c.severity, Severity::High, "CVSS 3.1 7.4");
    assert_eq!(c.cvss.as_ref().unwrap().score, 7.4);
    assert!(!ids(&idx.matches("npm", "lodash", "4.17.21").unwrap()).contains("CVE-2020-8203"));
    // Go stdlib (GO-2023-2102, HTTP/2 rapid reset): 1.21.1 affected, fixed 1.21.3.
    for v in ["1.21.1", "v1.21.1"] {
        let f = idx.matches("Go", "stdlib", v).unwrap();
        let c = f.iter().find(|f| f.id == "CVE-2023-39325").expect(v);
        assert!(c.aliases.contains(&"GO-2023-2102".to_string()));
        assert_eq!(c.fixed.as_deref(), Some("1.21.3"));
    }
    assert!(!ids(&idx.matches("Go", "stdlib", "1.21.3").unwrap()).contains("CVE-2023-39325"));
    // crates.io: smallvec (RUSTSEC-2021-0003) 1.6.0 affected, 1.6.1 fixed; 0.6.2 before
    // its introduced 0.6.3.
    let f = idx.matches("crates.io", "smallvec", "1.6.0").unwrap();
    let c = f
        .iter()
        .find(|f| f.id == "CVE-2021-25900")
        .expect("smallvec");
    assert_eq!(c.fixed.as_deref(), Some("1.6.1"));
    assert!(
        !ids(&idx.matches("crates.io", "smallvec", "1.6.1").unwrap()).contains("CVE-2021-25900")
    );
    assert!(
        !ids(&idx.matches("crates.io", "smallvec", "0.6.2").unwrap()).contains("CVE-2021-25900")
    );
    // time 0.1.43 (RUSTSEC-2020-0071): many introduced/fixed pairs.
    let f = idx.matches("crates.io", "time", "0.1.43").unwrap();
    assert_eq!(
        f.iter()
            .find(|f| f.id == "CVE-2020-26235")
            .unwrap()
            .fixed
            .as_deref(),
        Some("0.2.0")
    );
    // Case matters outside PyPI.
    assert!(idx.matches("npm", "Lodash", "4.17.15").unwrap().is_empty());
}

#[test]
fn severity_comes_from_vectors_then_ratings() {
    let idx = &data().index;
    // GHSA-jf85-cpcp-j695 (lodash CVE-2019-10744): CVSS 3.1 9.1, GitHub CRITICAL.
    let f = idx.matches("npm", "lodash", "4.17.11").unwrap();
    let c = f.iter().find(|f| f.id == "CVE-2019-10744").unwrap();
    assert_eq!(c.severity, Severity::Critical);
    assert_eq!(c.cvss.as_ref().unwrap().score, 9.1);
}

/// The index's ranked evaluation against the reference evaluator (`vuln::Affected`, the
/// OSV schema's algorithm on version strings), for every package of the data set, at every
/// version its advisories name (events, fixes, listed versions; at most 40 per package) and
/// just above and below the first few.
#[test]
fn the_index_agrees_with_the_reference_evaluator() {
    use std::collections::HashMap;
    use vuln::{Affected, Ecosystem, Event, Range, RangeKind};
    let d = data();
    let mut buckets: HashMap<(String, String), Vec<(&str, Affected)>> = HashMap::new();
    let mut probes: HashMap<(String, String), BTreeSet<String>> = HashMap::new();
    for a in d.osv.iter().chain(d.alpine.iter()) {
        if a.withdrawn.is_some() {
            continue; // never matched
        }
        for e in &a.affected {
            let Some(eco) = Ecosystem::from_osv(&e.ecosystem) else {
                continue;
            };
            let key = (
                e.ecosystem.clone(),
                vuln::matcher::normalize_name(&e.ecosystem, &e.name).into_owned(),
            );
            let mut ranges = Vec::new();
            let p = probes.entry(key.clone()).or_default();
            for r in &e.ranges {
                let events: Vec<Event> = r.events.iter().map(|x| x.to_event()).collect();
                for ev in &events {
                    let v = ev.version();
                    if v != "0" && !v.contains('*') && vuln::validate(eco, v).is_ok() {
                        p.insert(v.to_string());
                    }
                }
                if let Ok(range) = Range::new(eco, RangeKind::from_osv(&r.kind).unwrap(), events) {
                    ranges.push(range);
                }
            }
            p.extend(
                e.versions
                    .iter()
                    .filter(|v| vuln::validate(eco, v).is_ok())
                    .cloned(),
            );
            buckets
                .entry(key)
                .or_default()
                .push((&a.id, Affected::new(eco, ranges, e.versions.clone())));
        }
    }
    let mut checked = 0usize;
    for ((eco_s, name), entries) in &buckets {
        let eco = Ecosystem::from_osv(eco_s).unwrap();
        let mut vs: Vec<String> = probes[&(eco_s.clone(), name.clone())]
            .iter()
            .take(40)
            .cloned()
            .collect();
        // Neighbours: a dpkg/apk/PEP 440 version just above ("~" sorts first in dpkg, so
        // use "+x"/".1" suffixes that each ordering accepts) where valid.
        for v in vs.clone().iter().take(5) {
            for suffix in ["+x", ".1", "~", "-r9", "a1"] {
                let n = format!("{v}{suffix}");
                if vuln::validate(eco, &n).is_ok() {
                    vs.push(n);
                }
            }
        }
        for v in &vs {
            let expected: BTreeSet<&str> = entries
                .iter()
                .filter(|(_, aff)| aff.affects(v).unwrap_or(false))
                .map(|(id, _)| *id)
                .collect();
            let got: BTreeSet<&str> = d
                .index
                .affected_ids(eco_s, name, v)
                .unwrap()
                .into_iter()
                .collect();
            assert_eq!(got, expected, "{eco_s} {name} {v}");
            checked += 1;
        }
    }
    eprintln!("{checked} (package, version) pairs agree");
    assert!(checked > 20_000);
}
