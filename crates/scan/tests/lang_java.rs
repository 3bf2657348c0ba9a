//! The Java analyser on real jars: Debian's /usr/share/java (Maven-built jars with
//! pom.properties, OSGi bundles, shaded jars, jars with only a manifest), a Spring Boot style
//! fat jar and a war made of them (nested one level), and a truncated jar; checked against
//! syft. (trivy's jar analyser needs its Java DB, a download, even in offline mode: not used.)

mod lang_common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use lang_common::{compare, target_dir, tools_venv, walk};
use scan::analyze::java::JavaArchiveAnalyzer;
use scan::analyze::{AnalyzeError, Analyzer, FileInfo};
use scan::inventory::PackageKind;

type Set = BTreeSet<(String, String)>;

/// Debian's jars (regular files only: /usr/share/java also holds version-less symlinks),
/// copied into one directory that both we and syft read. Made once per test process: two tests
/// use it, and running in parallel, one emptied the directory while the other copied into it.
fn debian_jars() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(copy_debian_jars).clone()
}

fn copy_debian_jars() -> PathBuf {
    let dir = target_dir().join("lang-java/debian");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let mut n = 0;
    for e in fs::read_dir("/usr/share/java").unwrap() {
        let e = e.unwrap();
        let meta = fs::symlink_metadata(e.path()).unwrap();
        if meta.is_file() && e.file_name().to_string_lossy().ends_with(".jar") {
            fs::copy(e.path(), dir.join(e.file_name())).unwrap();
            n += 1;
        }
    }
    assert!(
        n >= 20,
        "Debian's Java libraries (run scripts/install-test-deps.sh): {n} jars"
    );
    dir
}

#[test]
fn debian_jars_name_their_maven_coordinates() {
    let dir = debian_jars();
    let w = walk(&dir, &JavaArchiveAnalyzer);
    assert!(w.errors.is_empty(), "{:?}", w.errors);
    let set = w.set(|n| n.to_string());
    for (n, v) in [
        ("org.apache.commons:commons-lang3", "3.12.0"),
        ("commons-io:commons-io", "2.11.0"),
        ("com.google.guava:guava", "31.1-jre"),
    ] {
        assert!(set.contains(&(n.into(), v.into())), "{n} {v} in {set:?}");
    }
    for p in w.packages() {
        assert_eq!(p.kind, PackageKind::Maven);
        assert!(p.path.ends_with(".jar"), "{}", p.path);
    }
    let lang3 = w
        .packages()
        .into_iter()
        .find(|p| p.name == "org.apache.commons:commons-lang3")
        .unwrap()
        .purl(None);
    assert_eq!(lang3, "pkg:maven/org.apache.commons/commons-lang3@3.12.0");
}

/// syft's java archives: (groupId:artifactId, version) from pom.properties, the jar they
/// were found in; and (name, version) of those syft named from the manifest or file name.
fn syft_java(dir: &Path) -> (Set, Set) {
    let out = Command::new(tools_venv().join("bin/syft"))
        .arg(format!("dir:{}", dir.display()))
        .args(["-q", "-o", "syft-json"])
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
        .output()
        .expect("syft (run scripts/install-test-deps.sh)");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut pom = Set::new();
    let mut other = Set::new();
    for a in v["artifacts"].as_array().unwrap() {
        if a["type"] != "java-archive" {
            continue;
        }
        let version = a["version"].as_str().unwrap().to_string();
        match a["metadata"]["pomProperties"].as_object() {
            Some(p) => {
                let g = p["groupId"].as_str().unwrap();
                let art = p["artifactId"].as_str().unwrap();
                pom.insert((format!("{g}:{art}"), version));
            }
            None => {
                other.insert((a["name"].as_str().unwrap().to_string(), version));
            }
        }
    }
    (pom, other)
}

#[test]
fn debian_jars_as_syft_reads_them() {
    let dir = debian_jars();
    let w = walk(&dir, &JavaArchiveAnalyzer);
    // Ours from pom.properties are the ones with a `group:artifact` name whose jar has one.
    let has_pom = |jar: &str| {
        let f = fs::File::open(dir.join(jar.trim_start_matches('/'))).unwrap();
        let z = zip::ZipArchive::new(f).unwrap();
        z.file_names()
            .any(|n| n.is_ok_and(|n| n.ends_with("/pom.properties")))
    };
    let mut ours_pom = Set::new();
    let mut ours_manifest = Set::new();
    for p in w.packages() {
        if has_pom(&p.path) {
            ours_pom.insert((p.name.clone(), p.version.clone()));
        } else {
            ours_manifest.insert((p.name.clone(), p.version.clone()));
        }
    }
    let (syft_pom, syft_other) = syft_java(&dir);
    compare("syft (pom.properties)", &ours_pom, &syft_pom, &[]);
    eprintln!("manifest-only jars: ours {ours_manifest:?}\nsyft {syft_other:?}");
    // Jars without pom.properties: syft names them by its own heuristics (file name,
    // Implementation-Title); we name them by Bundle-SymbolicName or the manifest's title. The
    // versions must agree, or differ only by OSGi's normalisation: a manifest with only a
    // `Bundle-Version: 1.0.0` (we report it) where syft takes the file name's `1.0`.
    let v_syft: BTreeSet<&String> = syft_other.iter().map(|(_, v)| v).collect();
    for (name, v) in &ours_manifest {
        let osgi = v
            .strip_suffix(".0")
            .is_some_and(|short| v_syft.contains(&short.to_string()));
        assert!(v_syft.contains(v) || osgi, "{name} {v} vs syft {v_syft:?}");
    }
    assert!(!ours_manifest.is_empty());
}

/// Builds a zip with Python's zipfile (the entries `(name, source file, compress)`).
fn make_zip(out: &Path, entries: &[(&str, &Path, bool)]) {
    let mut script = String::from("import zipfile,sys\nz=zipfile.ZipFile(sys.argv[1],'w')\n");
    for (name, src, deflate) in entries {
        let c = if *deflate {
            "zipfile.ZIP_DEFLATED"
        } else {
            "zipfile.ZIP_STORED"
        };
        script.push_str(&format!(
            "z.write({:?},{:?},{c})\n",
            src.to_str().unwrap(),
            name
        ));
    }
    script.push_str("z.close()\n");
    let st = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .arg(out)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn fat_jars_and_wars_nest_one_level() {
    let dir = target_dir().join("lang-java/nested");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let j = Path::new("/usr/share/java");
    let lang3 = j.join("commons-lang3-3.12.0.jar");
    let io = j.join("commons-io-2.11.0.jar");
    let guava = j.join("guava-31.1-jre.jar");
    let manifest = dir.join("MANIFEST.MF");
    fs::write(&manifest, "Manifest-Version: 1.0\r\nImplementation-Title: demo\r\nImplementation-Vendor-Id: org.example\r\nImplementation-Version: 0.1.0\r\n\r\n").unwrap();
    // Spring Boot stores nested jars uncompressed; a war usually deflates them.
    make_zip(
        &dir.join("app.jar"),
        &[
            ("META-INF/MANIFEST.MF", &manifest, true),
            ("BOOT-INF/lib/commons-lang3-3.12.0.jar", &lang3, false),
            ("BOOT-INF/lib/commons-io-2.11.0.jar", &io, false),
        ],
    );
    make_zip(
        &dir.join("site.war"),
        &[("WEB-INF/lib/guava-31.1-jre.jar", &guava, true)],
    );
    // An ear holding the war: the war is read, the jar inside the war (two levels) is not.
    make_zip(
        &dir.join("big.ear"),
        &[("site.war", &dir.join("site.war"), true)],
    );
    fs::remove_file(&manifest).unwrap();
    let w = walk(&dir, &JavaArchiveAnalyzer);
    assert!(w.errors.is_empty(), "{:?}", w.errors);
    let got: BTreeSet<(String, String, String)> = w
        .packages()
        .into_iter()
        .map(|p| (p.path.clone(), p.name.clone(), p.version.clone()))
        .collect();
    let want: BTreeSet<(String, String, String)> = [
        ("/app.jar", "org.example:demo", "0.1.0"),
        (
            "/app.jar!/BOOT-INF/lib/commons-lang3-3.12.0.jar",
            "org.apache.commons:commons-lang3",
            "3.12.0",
        ),
        (
            "/app.jar!/BOOT-INF/lib/commons-io-2.11.0.jar",
            "commons-io:commons-io",
            "2.11.0",
        ),
        (
            "/site.war!/WEB-INF/lib/guava-31.1-jre.jar",
            "com.google.guava:guava",
            "31.1-jre",
        ),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(got, want);
    // The ear's finding exists and is empty (the war in it has no coordinates of its own).
    assert!(
        w.findings
            .iter()
            .any(|f| f.path == "/big.ear" && f.packages.is_empty())
    );
}

#[test]
fn a_truncated_jar_is_an_error() {
    let bytes = fs::read("/usr/share/java/commons-lang3-3.12.0.jar").unwrap();
    for cut in [0, 10, bytes.len() / 2, bytes.len() - 30] {
        let part = &bytes[..cut];
        let info = FileInfo {
            path: "/x.jar",
            size: part.len() as u64,
            mode: 0o644,
        };
        match JavaArchiveAnalyzer.analyze(&info, &mut &part[..]) {
            Err(AnalyzeError::Malformed { .. }) => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}
