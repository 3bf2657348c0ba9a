//! The npm analyser on a real `npm install` of old releases (scripts/scan-fixtures-lang.sh):
//! the installed `node_modules` tree, its lockfile in npm's three formats, and the yarn.lock
//! yarn 1 makes of it; checked against each other and against syft and trivy.

mod lang_common;

use std::collections::BTreeSet;

use lang_common::{compare, fixtures, syft, trivy, walk};
use scan::analyze::npm::NpmAnalyzer;
use scan::inventory::PackageKind;

type Set = BTreeSet<(String, String)>;

fn same(n: &str) -> String {
    n.to_string()
}

fn installed_and_lockfile() -> (Set, Set) {
    let w = walk(&fixtures().join("npm"), &NpmAnalyzer);
    assert!(w.errors.is_empty(), "{:?}", w.errors);
    let mut installed = Set::new();
    let mut lock = Set::new();
    for f in &w.findings {
        for p in &f.packages {
            assert_eq!(p.kind, PackageKind::Npm);
            assert_eq!(p.path, f.path);
            let set = if f.path == "/package-lock.json" {
                &mut lock
            } else {
                assert!(f.path.starts_with("/node_modules/"), "{}", f.path);
                assert!(f.path.ends_with("/package.json"), "{}", f.path);
                &mut installed
            };
            set.insert((p.name.clone(), p.version.clone()));
        }
    }
    // Neither the app's own package.json nor npm's hidden lockfile is a finding.
    assert!(
        !w.findings
            .iter()
            .any(|f| f.path == "/package.json" || f.path == "/node_modules/.package-lock.json")
    );
    (installed, lock)
}

#[test]
fn installed_packages_and_the_lockfile_agree_on_the_pinned_releases() {
    let (installed, lock) = installed_and_lockfile();
    for (n, v) in [
        ("lodash", "4.17.15"),
        ("minimist", "1.2.0"),
        ("express", "4.16.0"),
        ("@babel/code-frame", "7.0.0"),
    ] {
        assert!(installed.contains(&(n.into(), v.into())), "{n}@{v}");
    }
    // What express 4.16.0 pulls in, at the versions npm resolved.
    assert!(installed.len() > 50, "{}", installed.len());
    // The development dependency is installed, and skipped in the lockfile (`dev: true`):
    // the lockfile lists what `npm ci --omit=dev` installs.
    let dev: Set = [("semver".to_string(), "5.7.0".to_string())].into();
    assert!(installed.contains(&dev.first().unwrap().clone()));
    assert_eq!(installed.difference(&lock).cloned().collect::<Set>(), dev);
    assert!(lock.is_subset(&installed));
    let w = walk(&fixtures().join("npm"), &NpmAnalyzer);
    let lodash = w
        .packages()
        .into_iter()
        .find(|p| p.name == "lodash" && p.path.starts_with("/node_modules"))
        .unwrap()
        .clone();
    assert_eq!(lodash.licenses, vec!["MIT"]);
    assert_eq!(lodash.path, "/node_modules/lodash/package.json");
}

#[test]
fn lockfile_versions_1_2_and_3_list_the_same_packages() {
    let (_, v3) = installed_and_lockfile();
    for v in ["npm-lock-v1", "npm-lock-v2"] {
        let w = walk(&fixtures().join(v), &NpmAnalyzer);
        assert!(w.errors.is_empty(), "{:?}", w.errors);
        assert_eq!(w.findings.len(), 1);
        let text = std::fs::read_to_string(fixtures().join(v).join("package-lock.json")).unwrap();
        assert!(text.contains(&format!("\"lockfileVersion\": {}", &v[v.len() - 1..])));
        assert_eq!(w.set(same), v3, "{v}");
    }
}

#[test]
fn yarn_lock_lists_the_same_packages() {
    let (installed, _) = installed_and_lockfile();
    let w = walk(&fixtures().join("yarn"), &NpmAnalyzer);
    assert!(w.errors.is_empty(), "{:?}", w.errors);
    let lockfiles: Vec<&str> = w.findings.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(lockfiles, ["/yarn.lock"]);
    assert_eq!(w.set(same), installed);
}

#[test]
fn the_same_packages_as_syft_and_trivy() {
    let (installed, lock) = installed_and_lockfile();
    let dir = fixtures().join("npm");
    // syft reads node_modules with its package cataloger and lockfiles with its lock cataloger.
    let syft_installed = syft(&dir, "npm", Some("javascript-package-cataloger"));
    compare("syft node_modules", &installed, &syft_installed, &[]);
    let syft_lock = syft(&dir, "npm", Some("javascript-lock-cataloger"));
    compare("syft package-lock.json", &lock, &syft_lock, &[]);
    // trivy: `rootfs` reads installed packages, `fs` lockfiles.
    compare("trivy rootfs", &installed, &trivy("rootfs", &dir, "/"), &[]);
    // syft reads only the top level of a v1 lockfile's `dependencies`: the packages npm
    // installed nested (`node_modules/a/node_modules/b`, written as `dependencies` inside an
    // entry) are missing from its list. The exception applies to exactly those: the ones that
    // are not top-level entries of the v1 file.
    let v1: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("npm-lock-v1/package-lock.json")).unwrap(),
    )
    .unwrap();
    let top: Set = v1["dependencies"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, e)| (n.clone(), e["version"].as_str().unwrap().to_string()))
        .collect();
    assert!(top.len() < lock.len(), "the fixture has nested packages");
    let nested_in_v1 = |item: &(String, String), only_ours: bool| only_ours && !top.contains(item);
    for v in ["npm-lock-v1", "npm-lock-v2"] {
        let d = fixtures().join(v);
        compare(&format!("trivy fs {v}"), &lock, &trivy("fs", &d, "/"), &[]);
        let exceptions: &[lang_common::Exception<'_>] = if v == "npm-lock-v1" {
            &[(
                "syft reads only a v1 lockfile's top-level entries",
                &nested_in_v1,
            )]
        } else {
            &[]
        };
        compare(
            &format!("syft {v}"),
            &lock,
            &syft(&d, "npm", Some("javascript-lock-cataloger")),
            exceptions,
        );
    }
    // yarn.lock does not mark development dependencies; trivy drops them using the
    // package.json beside it (its `devDependencies`), a second file that a per-file analyser
    // does not read. The exception covers exactly those.
    let d = fixtures().join("yarn");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("package.json")).unwrap()).unwrap();
    let dev_deps: Set = manifest["devDependencies"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.as_str().unwrap().to_string()))
        .collect();
    assert!(!dev_deps.is_empty());
    let dev = |item: &(String, String), only_ours: bool| only_ours && dev_deps.contains(item);
    compare(
        "trivy fs yarn.lock",
        &installed,
        &trivy("fs", &d, "/"),
        &[(
            "a development dependency, which yarn.lock does not mark",
            &dev,
        )],
    );
}

#[test]
fn yarn_berry_lockfile() {
    let d = fixtures().join("yarn-berry");
    let text = std::fs::read_to_string(d.join("yarn.lock")).unwrap();
    assert!(text.contains("__metadata:") && text.contains("@workspace:."));
    let w = walk(&d, &NpmAnalyzer);
    assert!(w.errors.is_empty(), "{:?}", w.errors);
    let set = w.set(same);
    for (n, v) in [
        ("lodash", "4.17.15"),
        ("minimist", "1.2.0"),
        ("express", "4.16.0"),
        ("@babel/code-frame", "7.0.0"),
        ("semver", "5.7.0"),
    ] {
        assert!(set.contains(&(n.into(), v.into())), "{n}@{v}");
    }
    // The project itself (`…@workspace:.`, version 0.0.0-use.local) is not a package.
    assert!(!set.iter().any(|(_, v)| v.contains("use.local")), "{set:?}");
    let entries = text
        .lines()
        .filter(|l| l.starts_with("  version: "))
        .count();
    // Every entry but the metadata's and the workspace's.
    assert_eq!(set.len(), entries - 2, "{set:?}");
    // trivy drops the development dependency, known from the package.json beside the
    // lockfile (syft keeps it, as we do).
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("package.json")).unwrap()).unwrap();
    let dev_deps: Set = manifest["devDependencies"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let dev = |item: &(String, String), only_ours: bool| only_ours && dev_deps.contains(item);
    let exceptions: &[lang_common::Exception<'_>] = &[(
        "a development dependency, which yarn.lock does not mark",
        &dev,
    )];
    compare(
        "trivy fs yarn.lock (berry)",
        &set,
        &trivy("fs", &d, "/"),
        exceptions,
    );
    // syft lists the project's own workspace entry (`…@workspace:.`, `0.0.0-use.local`).
    let workspace =
        |item: &(String, String), only_ours: bool| !only_ours && item.1.ends_with("-use.local");
    compare(
        "syft yarn.lock (berry)",
        &set,
        &syft(&d, "npm", Some("javascript-lock-cataloger")),
        &[
            exceptions[0],
            ("the project itself, a workspace, not a package", &workspace),
        ],
    );
}

#[test]
fn the_global_node_modules_of_npm_itself() {
    // npm's own tree (`npm root -g`: npm and the ~150 packages it bundles): a large real
    // node_modules, with nested package.json files that are not packages.
    let out = std::process::Command::new("npm")
        .args(["root", "-g"])
        .output()
        .expect("npm");
    let root = std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let w = lang_common::walk_at(&root, "/usr/lib/node_modules", &NpmAnalyzer);
    assert!(w.errors.is_empty(), "{:?}", w.errors);
    let ours = w.set(same);
    assert!(ours.len() > 100, "{}", ours.len());
    assert!(ours.iter().any(|(n, _)| n == "npm"));
    compare(
        "syft",
        &ours,
        &syft(&root, "npm", Some("javascript-package-cataloger")),
        &[],
    );
    compare("trivy rootfs", &ours, &trivy("rootfs", &root, "/"), &[]);
}
