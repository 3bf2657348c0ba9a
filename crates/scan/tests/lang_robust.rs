//! Damaged inputs: real files of each kind (from the fixtures, Debian, the Go and Rust
//! toolchains) truncated and with bytes flipped, many times over, offered to the analyser
//! that owns them. Every outcome is allowed but a panic (or an I/O error, which would fail a
//! whole layer): a damaged file is a warning, never a crash.

mod lang_common;

use std::fs;
use std::path::Path;
use std::process::Command;

use lang_common::{fixtures, target_dir, workspace};
use scan::analyze::golang::{GoBinaryAnalyzer, MAGIC};
use scan::analyze::java::JavaArchiveAnalyzer;
use scan::analyze::npm::NpmAnalyzer;
use scan::analyze::python::PythonAnalyzer;
use scan::analyze::{AnalyzeError, Analyzer, FileInfo};

/// xorshift64*: deterministic, so a failure is reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Runs `rounds` damaged copies of `original` through `a`; damage lands in `hot` (a byte
/// range) half of the time, anywhere otherwise.
fn damage(
    a: &dyn Analyzer,
    path: &str,
    original: &[u8],
    hot: std::ops::Range<usize>,
    rounds: usize,
) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ original.len() as u64);
    let (mut ok, mut err) = (0, 0);
    for round in 0..rounds {
        let mut bytes = original.to_vec();
        let flips = 1 + rng.below(8);
        for _ in 0..flips {
            let at = if rng.below(2) == 0 && !hot.is_empty() {
                hot.start + rng.below(hot.len())
            } else {
                rng.below(bytes.len())
            };
            if at < bytes.len() {
                bytes[at] = rng.next() as u8;
            }
        }
        if rng.below(3) == 0 {
            let cut = rng.below(bytes.len());
            bytes.truncate(cut);
        }
        let info = FileInfo {
            path,
            size: bytes.len() as u64,
            mode: 0o755,
        };
        match a.analyze(&info, &mut bytes.as_slice()) {
            Ok(_) => ok += 1,
            Err(AnalyzeError::Malformed { .. }) => err += 1,
            Err(e) => panic!("{path} round {round}: an I/O error from memory: {e}"),
        }
    }
    eprintln!("{path}: {rounds} damaged copies: {ok} read, {err} malformed");
}

#[test]
fn damaged_metadata_and_lockfiles() {
    let f = fixtures();
    let meta = fs::read(f.join("python/requests-2.19.0.dist-info/METADATA")).unwrap();
    damage(
        &PythonAnalyzer,
        "/x/requests-2.19.0.dist-info/METADATA",
        &meta,
        0..400,
        500,
    );
    for (file, as_path) in [
        ("npm/package-lock.json", "/app/package-lock.json"),
        ("npm-lock-v1/package-lock.json", "/app/package-lock.json"),
        ("yarn/yarn.lock", "/app/yarn.lock"),
        ("yarn-berry/yarn.lock", "/app/yarn.lock"),
        (
            "npm/node_modules/express/package.json",
            "/app/node_modules/express/package.json",
        ),
    ] {
        let bytes = fs::read(f.join(file)).unwrap();
        damage(&NpmAnalyzer, as_path, &bytes, 0..bytes.len().min(2000), 300);
    }
}

#[test]
fn damaged_jars() {
    let bytes = fs::read("/usr/share/java/commons-io-2.11.0.jar").unwrap();
    // The central directory (the end of the file) is what a zip reader trusts most.
    let n = bytes.len();
    damage(&JavaArchiveAnalyzer, "/app.jar", &bytes, n - 8000..n, 300);
}

#[test]
fn damaged_go_binary() {
    let out = target_dir().join("lang-robust/hello");
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    let t = target_dir().join("lang-go");
    let st = Command::new("go")
        .current_dir(workspace().join("crates/scan/tests/fixtures-lang/go/hello"))
        .args(["build", "-buildvcs=false", "-o"])
        .arg(&out)
        .arg("main.go")
        .env("GOPROXY", "off")
        .env("GOCACHE", t.join("cache"))
        .env("GOPATH", t.join("gopath"))
        .status()
        .expect("go (golang-go; run scripts/install-test-deps.sh)");
    assert!(st.success());
    let bytes = fs::read(&out).unwrap();
    let at = bytes
        .windows(MAGIC.len())
        .enumerate()
        .find(|(i, w)| i % 16 == 0 && *w == MAGIC)
        .map(|(i, _)| i)
        .unwrap();
    damage(
        &GoBinaryAnalyzer,
        "/usr/bin/hello",
        &bytes,
        at..at + 300,
        150,
    );
    let _ = Path::new(&out);
}
