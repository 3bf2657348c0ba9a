//! The Python analyser on real installs: `pip install --target` of old releases (wheels from
//! PyPI, made by scripts/scan-fixtures-lang.sh) and Debian's own `dist-packages`, checked
//! against the pinned list and against syft and trivy.

mod lang_common;

use std::collections::BTreeSet;
use std::path::Path;

use lang_common::{compare, fixtures, syft, trivy, walk};
use scan::analyze::python::PythonAnalyzer;
use scan::inventory::{PackageKind, pep503};

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

#[test]
fn pip_installed_distributions_are_read_as_pip_installed_them() {
    let dir = fixtures().join("python");
    let w = walk(&dir, &PythonAnalyzer);
    assert!(w.errors.is_empty(), "{:?}", w.errors);
    // Names as the distributions write them, versions as pip installed them (Django's
    // metadata says `3.2`, the release it installed for `==3.2.0`).
    let want: BTreeSet<_> = [
        ("requests", "2.19.0"),
        ("urllib3", "1.24.1"),
        ("Django", "3.2"),
        ("Jinja2", "2.10"),
        ("Flask", "0.12.2"),
        ("Werkzeug", "0.15.0"),
        ("idna", "2.7"),
        ("certifi", "2018.4.16"),
        ("PyJWT", "1.5.0"),
        ("sqlparse", "0.4.1"),
    ]
    .into_iter()
    .map(|(a, b)| pair(a, b))
    .collect();
    assert_eq!(w.set(|n| n.to_string()), want);
    for f in &w.findings {
        assert_eq!(f.packages.len(), 1, "one distribution per file");
        let p = &f.packages[0];
        assert_eq!(p.kind, PackageKind::Python);
        assert_eq!(p.path, f.path);
        assert!(p.path.ends_with(".dist-info/METADATA"), "{}", p.path);
    }
    let lic = |name: &str| {
        w.packages()
            .into_iter()
            .find(|p| p.name == name)
            .unwrap()
            .licenses
            .clone()
    };
    assert_eq!(lic("requests"), vec!["Apache 2.0"]);
    assert_eq!(lic("Django"), vec!["BSD-3-Clause"]);
    assert_eq!(lic("urllib3"), vec!["MIT"]);
    let purl = w
        .packages()
        .into_iter()
        .find(|p| p.name == "PyJWT")
        .unwrap()
        .purl(None);
    assert_eq!(purl, "pkg:pypi/pyjwt@1.5.0");
}

#[test]
fn the_same_distributions_as_syft_and_trivy() {
    let dir = fixtures().join("python");
    let ours = walk(&dir, &PythonAnalyzer).set(pep503);
    let norm = |s: BTreeSet<(String, String)>| -> BTreeSet<(String, String)> {
        s.into_iter().map(|(n, v)| (pep503(&n), v)).collect()
    };
    compare("syft", &ours, &norm(syft(&dir, "python", None)), &[]);
    compare("trivy", &ours, &norm(trivy("rootfs", &dir, "/")), &[]);
}

#[test]
fn debian_dist_packages_egg_info_and_dist_info() {
    // Debian's python3-* packages install `egg-info` directories, `egg-info` files and
    // `dist-info` directories side by side: all three layouts, real.
    let dir = Path::new("/usr/lib/python3/dist-packages");
    let w = walk(dir, &PythonAnalyzer);
    assert!(w.errors.is_empty(), "{:?}", w.errors);
    let paths: Vec<&str> = w.findings.iter().map(|f| f.path.as_str()).collect();
    assert!(
        paths.iter().any(|p| p.ends_with(".egg-info/PKG-INFO")),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.ends_with(".dist-info/METADATA")),
        "{paths:?}"
    );
    // Every metadata directory or file in the tree was read.
    let on_disk = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            (n.ends_with(".dist-info") && e.path().join("METADATA").exists())
                || (n.ends_with(".egg-info")
                    && (e.path().is_file() || e.path().join("PKG-INFO").exists()))
        })
        .count();
    assert_eq!(w.findings.len(), on_disk);
    let ours = w.set(pep503);
    let theirs: BTreeSet<(String, String)> = syft(dir, "python", None)
        .into_iter()
        .map(|(n, v)| (pep503(&n), v))
        .collect();
    compare("syft", &ours, &theirs, &[]);
}
