//! Re-matching 10,000 stored images against the full shared advisory data set (issue 12:
//! "under 10 s"). Run with an optimised profile:
//!
//! ```text
//! cargo run -p wharf-scan --profile ci --example db_match_10k [-- IMAGES] [--all-old | --all-current]
//! ```
//!
//! How the images are built (deterministic, seeded), each by `ImageInventory::combine` of
//! layer inventories, as stored inventories would be combined:
//! - 20 Debian bookworm base layers from `debian/bookworm-target-binaries.tsv` (real binary →
//!   source name and version map): the 80 `required`/`important`/`standard` binaries plus
//!   3×k `optional` ones (base k). Bases 0-9 are old: each source package at a real bookworm
//!   version taken from the advisories' own `Debian:12` lists of affected versions (base k
//!   the k-th oldest known, or the newest listed), so every such package has findings; bases
//!   10-19 are current (the TSV's bookworm 12.15 / security versions). `--all-old` makes all
//!   20 old (the worst case: every package of every Debian image vulnerable), `--all-current`
//!   all 20 current;
//! - 4 Alpine base layers (v3.18-v3.21), 100 `main` packages each, each at one of its own
//!   secdb fix versions;
//! - a pool of 300 language layers, each 5-40 packages drawn from the PyPI, npm, Go and
//!   crates.io advisories' package names, at versions the advisories name (introduced,
//!   fixed, listed), so some are vulnerable and some not;
//! - image i = base (i mod 24) + 1 to 3 pooled language layers.
//!
//! The database is the whole of `shared/vulndata` (beside the repository) imported into a fresh redb file; the
//! index is loaded from it. Matching is single-threaded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use scan::db::{VulnDb, match_image};
use scan::{FileFinding, ImageInventory, LayerInventory, OsRelease, Package, PackageKind};
use vuln::Ecosystem;

/// `shared/vulndata` beside the repository (see its README).
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/vulndata");

/// Package names with the versions advisories name for them.
type NamesVersions<'a> = Vec<(&'a String, Vec<&'a String>)>;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn pkg(
    kind: PackageKind,
    name: &str,
    version: &str,
    src: Option<(&str, &str)>,
    path: &str,
) -> Package {
    Package {
        kind,
        name: name.into(),
        version: version.into(),
        source_name: src.map(|s| s.0.into()),
        source_version: src.map(|s| s.1.into()),
        arch: None,
        licenses: vec![],
        path: path.into(),
        layer: String::new(),
    }
}

fn os_file(id: &str, v: &str) -> FileFinding {
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

fn import_everything(db: &VulnDb) -> usize {
    let mut feeds = 0;
    for rel in [
        "pypi/pysec-osv-json",
        "ghsa/pypi",
        "ghsa/npm",
        "debian/osv/DSA",
        "debian/osv/DLA",
        "debian/osv/CVE-debian-only",
        "go/vulndb-osv",
        "rust/rustsec-osv-json",
    ] {
        db.import_path(Path::new(DATA).join(rel)).expect(rel);
        feeds += 1;
    }
    for v in ["v3.18", "v3.19", "v3.20", "v3.21"] {
        for repo in ["main", "community"] {
            db.import_path(format!("{DATA}/alpine/secdb/{v}/{repo}.json"))
                .expect("secdb");
            feeds += 1;
        }
    }
    feeds
}

/// This process's user + system CPU time (Linux `/proc/self/stat`, 100 ticks a second), so
/// that a run on a busy shared machine still reports the work done.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat(5) are the 12th and 13th after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let all_old = args.iter().any(|a| a == "--all-old");
    let all_current = args.iter().any(|a| a == "--all-current");
    let images: usize = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(|s| s.parse().expect("IMAGES"))
        .unwrap_or(10_000);
    let tmp = tempfile::tempdir().unwrap();
    let db = VulnDb::open(tmp.path()).unwrap();
    let t = Instant::now();
    let feeds = import_everything(&db);
    println!("import: {feeds} feeds in {:.2?}", t.elapsed());
    let (index, load) = db.index_with_stats().unwrap();
    println!(
        "index load: {} advisories, read {:.2?} + build {:.2?} = {:.2?}",
        load.advisories,
        load.read,
        load.build,
        load.read + load.build
    );
    let advisories = db.advisories().unwrap();

    // Known Debian:12 versions per source package, dpkg-ordered.
    let mut deb_versions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Language package names and versions the advisories mention.
    let mut lang: BTreeMap<&'static str, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for a in &advisories {
        for e in &a.affected {
            if e.ecosystem == "Debian:12" {
                deb_versions
                    .entry(e.name.clone())
                    .or_default()
                    .extend(e.versions.iter().cloned());
            }
            let eco: &'static str = match e.ecosystem.as_str() {
                "PyPI" => "PyPI",
                "npm" => "npm",
                "Go" => "Go",
                "crates.io" => "crates.io",
                _ => continue,
            };
            let set = lang
                .entry(eco)
                .or_default()
                .entry(e.name.clone())
                .or_default();
            for r in &e.ranges {
                for ev in &r.events {
                    let v = match ev {
                        vuln::advisory::EventSpec::Introduced(v)
                        | vuln::advisory::EventSpec::Fixed(v)
                        | vuln::advisory::EventSpec::LastAffected(v) => v,
                        vuln::advisory::EventSpec::Limit(_) => continue,
                    };
                    if v != "0" && !v.starts_with("0.0.0-") {
                        set.insert(v.clone());
                    }
                }
            }
            set.extend(e.versions.iter().take(20).cloned());
        }
    }
    let sorted_deb: BTreeMap<String, Vec<String>> = deb_versions
        .into_iter()
        .map(|(k, v)| {
            let mut v: Vec<String> = v.into_iter().collect();
            v.sort_by(|a, b| vuln::compare(Ecosystem::Dpkg, a, b).unwrap_or(a.cmp(b)));
            (k, v)
        })
        .collect();

    let t_build = Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Debian bases.
    let tsv =
        std::fs::read_to_string(format!("{DATA}/debian/bookworm-target-binaries.tsv")).unwrap();
    let rows: Vec<Vec<&str>> = tsv
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .filter(|c: &Vec<&str>| c[0] == "bookworm")
        .collect();
    let core: Vec<&Vec<&str>> = rows
        .iter()
        .filter(|c| matches!(c[5], "required" | "important" | "standard"))
        .collect();
    let optional: Vec<&Vec<&str>> = rows.iter().filter(|c| c[5] == "optional").collect();
    let mut bases: Vec<LayerInventory> = Vec::new();
    for k in 0..20 {
        let mut chosen: Vec<&Vec<&str>> = core.clone();
        for _ in 0..3 * k {
            chosen.push(optional[rng.below(optional.len())]);
        }
        let mut packages = Vec::new();
        let mut seen = BTreeSet::new();
        for c in chosen {
            if !seen.insert(c[1]) {
                continue;
            }
            let (src, cur) = (c[3], c[4]);
            // Old bases: a version the advisories list as affected; current bases: the
            // bookworm point-release or security version of the TSV.
            let src_version = match sorted_deb.get(src) {
                Some(v) if !v.is_empty() && !all_current && (all_old || k < 10) => {
                    v[k.min(v.len() - 1)].as_str()
                }
                _ => cur,
            };
            packages.push(pkg(
                PackageKind::Deb,
                c[1],
                src_version,
                Some((src, src_version)),
                "/var/lib/dpkg/status",
            ));
        }
        bases.push(LayerInventory {
            digest: format!("sha256:debian-base-{k}"),
            files: vec![
                os_file("debian", "12"),
                FileFinding {
                    path: "/var/lib/dpkg/status".into(),
                    analyzer: "dpkg".into(),
                    packages,
                    os: None,
                },
            ],
            ..Default::default()
        });
    }
    // Alpine bases.
    for (i, v) in ["v3.18", "v3.19", "v3.20", "v3.21"].iter().enumerate() {
        let text = std::fs::read_to_string(format!("{DATA}/alpine/secdb/{v}/main.json")).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut packages = Vec::new();
        for p in doc["packages"].as_array().unwrap().iter().take(100) {
            let name = p["pkg"]["name"].as_str().unwrap();
            let keys: Vec<&String> = p["pkg"]["secfixes"]
                .as_object()
                .map(|m| m.keys().filter(|k| *k != "0").collect())
                .unwrap_or_default();
            if keys.is_empty() {
                continue;
            }
            let ver = keys[rng.below(keys.len())];
            packages.push(pkg(
                PackageKind::Apk,
                name,
                ver,
                Some((name, ver)),
                "/lib/apk/db/installed",
            ));
        }
        bases.push(LayerInventory {
            digest: format!("sha256:alpine-base-{i}"),
            files: vec![
                os_file("alpine", &format!("{}.0", &v[1..])),
                FileFinding {
                    path: "/lib/apk/db/installed".into(),
                    analyzer: "apk".into(),
                    packages,
                    os: None,
                },
            ],
            ..Default::default()
        });
    }
    // Language layers.
    let ecos: Vec<(&str, PackageKind, NamesVersions)> = lang
        .iter()
        .map(|(eco, names)| {
            let kind = match *eco {
                "PyPI" => PackageKind::Python,
                "npm" => PackageKind::Npm,
                "Go" => PackageKind::Go,
                _ => PackageKind::Cargo,
            };
            let list = names
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(n, v)| (n, v.iter().collect()))
                .collect();
            (*eco, kind, list)
        })
        .collect();
    let mut pool: Vec<LayerInventory> = Vec::new();
    for l in 0..300 {
        let (_, kind, names) = &ecos[rng.below(ecos.len())];
        let n = 5 + rng.below(36);
        let mut files = Vec::new();
        for j in 0..n {
            let (name, versions) = &names[rng.below(names.len())];
            let v = versions[rng.below(versions.len())];
            let path = format!("/app{l}/{j}/{name}");
            files.push(FileFinding {
                path: path.clone(),
                analyzer: kind.name().into(),
                packages: vec![pkg(*kind, name, v, None, &path)],
                os: None,
            });
        }
        pool.push(LayerInventory {
            digest: format!("sha256:lang-{l}"),
            files,
            ..Default::default()
        });
    }
    let mut inventories: Vec<ImageInventory> = Vec::with_capacity(images);
    for i in 0..images {
        let base = &bases[i % bases.len()];
        let mut layers = vec![base];
        for _ in 0..1 + rng.below(3) {
            layers.push(&pool[rng.below(pool.len())]);
        }
        inventories.push(ImageInventory::combine(layers));
    }
    let total_packages: usize = inventories.iter().map(|i| i.packages.len()).sum();
    println!(
        "built {images} images ({} layers: 20 debian + 4 alpine bases, 300 language) in {:.2?}: \
         {total_packages} packages, {:.1} per image",
        bases.len() + pool.len(),
        t_build.elapsed(),
        total_packages as f64 / images as f64
    );

    // Lookups alone (the join without building ImageFindings): every package of every image
    // through Index::matches, no memo.
    let (t, cpu) = (Instant::now(), cpu_seconds());
    let mut raw = 0usize;
    for inv in &inventories {
        let os_eco = inv.os.as_ref().and_then(|o| o.osv_ecosystem());
        for p in &inv.packages {
            let eco = match p.kind {
                PackageKind::Deb | PackageKind::Apk => match &os_eco {
                    Some(e) => e.as_str(),
                    None => continue,
                },
                PackageKind::Python => "PyPI",
                PackageKind::Npm => "npm",
                PackageKind::Go => "Go",
                PackageKind::Cargo => "crates.io",
                _ => continue,
            };
            raw += index
                .matches(eco, p.match_name(), p.match_version())
                .map_or(0, |f| f.len());
        }
    }
    println!(
        "lookups only: {total_packages} Index::matches calls in {:.2?} (cpu {:.2} s): {raw} findings",
        t.elapsed(),
        cpu_seconds() - cpu
    );

    let (t, cpu) = (Instant::now(), cpu_seconds());
    let mut findings = 0usize;
    let mut vulnerable_images = 0usize;
    let mut by_kind: BTreeMap<&'static str, usize> = BTreeMap::new();
    for inv in &inventories {
        let f = match_image(&index, inv);
        for x in &f {
            *by_kind.entry(x.installed.kind.name()).or_default() += 1;
        }
        findings += f.len();
        vulnerable_images += usize::from(!f.is_empty());
    }
    let elapsed = t.elapsed();
    let cpu_single = cpu_seconds() - cpu;
    println!(
        "match_image: {images} images in {:.2?} (cpu {:.2} s; {:.1} µs per image, {:.2} µs per \
         package): {findings} findings, {vulnerable_images} images with findings",
        elapsed,
        cpu_single,
        elapsed.as_secs_f64() * 1e6 / images as f64,
        elapsed.as_secs_f64() * 1e6 / total_packages as f64
    );
    println!("findings by package kind: {by_kind:?}");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (t_par, cpu) = (Instant::now(), cpu_seconds());
    let par_findings: usize = std::thread::scope(|s| {
        let chunk = inventories.len().div_ceil(threads).max(1);
        let handles: Vec<_> = inventories
            .chunks(chunk)
            .map(|part| {
                let index = &index;
                s.spawn(move || {
                    part.iter()
                        .map(|inv| match_image(index, inv).len())
                        .sum::<usize>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(par_findings, findings);
    println!(
        "match_image on {threads} threads: {images} images in {:.2?} (cpu {:.2} s)",
        t_par.elapsed(),
        cpu_seconds() - cpu
    );
}
