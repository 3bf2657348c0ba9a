//! Helpers shared by the `db_*` tests (included with `#[path]`; as its own test target it
//! holds no tests).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use scan::db::{FeedStatus, VulnDb};

/// The shared advisory data (see its README).
pub const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/vulndata");

/// The OSV directories and their record counts (the README's file counts, except DLA: the
/// upstream mirror holds DLA-1931-2 twice, under 2019/ and 2020/, so 272 files are 271
/// records).
pub const OSV_DIRS: [(&str, u64); 8] = [
    ("pypi/pysec-osv-json", 346),
    ("ghsa/pypi", 434),
    ("ghsa/npm", 88),
    ("debian/osv/DSA", 15),
    ("debian/osv/DLA", 271),
    ("debian/osv/CVE-debian-only", 1358),
    ("go/vulndb-osv", 319),
    ("rust/rustsec-osv-json", 83),
];

/// The Alpine secdb files.
pub fn secdb_files() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for rel in ["v3.18", "v3.19", "v3.20", "v3.21"] {
        for repo in ["main", "community"] {
            v.push(PathBuf::from(format!(
                "{DATA}/alpine/secdb/{rel}/{repo}.json"
            )));
        }
    }
    v
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

/// A Debian security tracker JSON document generated from
/// `debian/debian-advisories-summary.tsv` (derived data: the data set has no tracker JSON).
/// CVE rows only; fixed → `resolved` with `fixed_version`, unfixed → `open`.
pub fn tracker_json() -> String {
    let text =
        std::fs::read_to_string(format!("{DATA}/debian/debian-advisories-summary.tsv")).unwrap();
    let mut doc: BTreeMap<String, BTreeMap<String, serde_json::Value>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let c: Vec<&str> = line.split('\t').collect();
        let Some(code) = codename(c[2]).filter(|_| c[0].starts_with("CVE-")) else {
            continue;
        };
        let cve = doc
            .entry(c[1].to_string())
            .or_default()
            .entry(c[0].to_string())
            .or_insert_with(|| serde_json::json!({"description": "", "releases": {}}));
        let mut rel = serde_json::json!({
            "status": if c[3] == "fixed" { "resolved" } else { "open" },
            "urgency": c[6],
        });
        if c[3] == "fixed" {
            rel["fixed_version"] = c[4].into();
        }
        cve["releases"][code] = rel;
    }
    serde_json::to_string(&doc).unwrap()
}

/// Zips every `.json` file below `src` (relative names) into `dst`, as osv.dev's `all.zip`
/// holds one record per member.
pub fn zip_dir(src: &Path, dst: &Path) {
    let mut files = Vec::new();
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    walk(src, &mut files);
    files.sort();
    let mut w = zip::ZipWriter::new(std::fs::File::create(dst).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        w.start_file(name, opts).unwrap();
        w.write_all(&std::fs::read(&f).unwrap()).unwrap();
    }
    w.finish().unwrap();
}

/// Imports the whole shared data set: the OSV directories, the Alpine secdb files and the
/// generated tracker JSON (written into `scratch`).
pub fn import_all(db: &VulnDb, scratch: &Path) -> Vec<FeedStatus> {
    let mut out = Vec::new();
    for (rel, count) in OSV_DIRS {
        let st = db.import_path(Path::new(DATA).join(rel)).unwrap();
        assert_eq!(st.records, count, "{rel}");
        out.push(st);
    }
    for f in secdb_files() {
        out.push(db.import_path(&f).unwrap());
    }
    let tracker = scratch.join("tracker.json");
    std::fs::write(&tracker, tracker_json()).unwrap();
    out.push(db.import_path(&tracker).unwrap());
    out
}
