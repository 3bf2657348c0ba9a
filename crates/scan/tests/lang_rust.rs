//! The cargo-auditable analyser on a real binary: crates/scan/tests/fixtures-lang/rust/app
//! built here by `cargo auditable build` (the real tool, installed by
//! scripts/install-test-deps.sh; offline, from the local registry cache), checked against the
//! fixture's Cargo.lock and against syft; the same program built without cargo-auditable, and
//! with its section replaced by garbage (binutils' objcopy), for the negative cases.

mod lang_common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use lang_common::{compare, syft, target_dir, walk, workspace};
use scan::analyze::rustbin::RustBinaryAnalyzer;
use scan::analyze::{AnalyzeError, Analyzer, FileInfo};
use scan::inventory::PackageKind;

fn cargo_auditable_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    cache.join("wharf-test-deps/cargo-auditable/bin")
}

/// Builds the fixture (`auditable`: with `cargo auditable build`) into its own directory.
fn build(auditable: bool) -> PathBuf {
    let src = workspace().join("crates/scan/tests/fixtures-lang/rust/app");
    let t = target_dir().join(if auditable {
        "lang-rust/auditable"
    } else {
        "lang-rust/plain"
    });
    let path = format!(
        "{}:{}",
        cargo_auditable_dir().display(),
        std::env::var("PATH").unwrap()
    );
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    if auditable {
        cmd.arg("auditable");
    }
    let st = cmd
        .current_dir(&src)
        .args(["build", "--offline", "--locked", "--target-dir"])
        .arg(&t)
        .env("PATH", path)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .status()
        .unwrap();
    assert!(
        st.success(),
        "cargo {}build (run scripts/install-test-deps.sh)",
        if auditable { "auditable " } else { "" }
    );
    t.join("debug/auditable-fixture")
}

fn binaries() -> &'static (PathBuf, PathBuf) {
    static B: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    B.get_or_init(|| (build(true), build(false)))
}

fn analyze(bin: &Path) -> Result<Option<scan::analyze::Found>, AnalyzeError> {
    let meta = fs::metadata(bin).unwrap();
    let info = FileInfo {
        path: "/usr/local/bin/app",
        size: meta.len(),
        mode: meta.permissions().mode() & 0o7777,
    };
    assert!(RustBinaryAnalyzer.wants(&info));
    RustBinaryAnalyzer.analyze(&info, &mut fs::File::open(bin).unwrap())
}

#[test]
fn runtime_dependencies_of_an_auditable_binary() {
    let (bin, _) = binaries();
    let found = analyze(bin).unwrap().expect("a .dep-v0 section");
    let got: BTreeSet<(String, String)> = found
        .packages
        .iter()
        .map(|p| {
            assert_eq!(p.kind, PackageKind::Cargo);
            assert_eq!(p.path, "/usr/local/bin/app");
            (p.name.clone(), p.version.clone())
        })
        .collect();
    // The fixture's runtime dependencies at the Cargo.lock's versions; not autocfg (a build
    // dependency) and not the fixture itself (the root, a local crate).
    let lock =
        fs::read_to_string(workspace().join("crates/scan/tests/fixtures-lang/rust/app/Cargo.lock"))
            .unwrap();
    for (n, v) in [
        ("itoa", "1.0.19"),
        ("memchr", "2.8.3"),
        ("autocfg", "1.5.1"),
    ] {
        assert!(
            lock.contains(&format!("name = \"{n}\"\nversion = \"{v}\"")),
            "{n}"
        );
    }
    // The section itself lists all four: the root (local) and autocfg (kind build) too.
    let json = section_json(bin);
    let kinds: BTreeSet<(String, String, String)> = json["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["source"].as_str().unwrap().to_string(),
                p["kind"].as_str().unwrap_or("runtime").to_string(),
            )
        })
        .collect();
    assert!(kinds.contains(&("autocfg".into(), "crates.io".into(), "build".into())));
    assert!(kinds.contains(&("auditable-fixture".into(), "local".into(), "runtime".into())));
    assert_eq!(kinds.len(), 4);
    let want: BTreeSet<(String, String)> = [("itoa", "1.0.19"), ("memchr", "2.8.3")]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn the_same_crates_as_syft() {
    let (bin, _) = binaries();
    let dir = target_dir().join("lang-rust/syft-input");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    fs::copy(bin, dir.join("app")).unwrap();
    let ours = walk(&dir, &RustBinaryAnalyzer).set(|n| n.to_string());
    let theirs = syft(&dir, "rust-crate", Some("cargo-auditable-binary-cataloger"));
    // syft reports the root package (a local crate) too; we report only non-local ones
    // (see rustbin.rs). Both leave out the build dependency.
    let root = |item: &(String, String), only_ours: bool| {
        !only_ours && item.0 == "auditable-fixture" && item.1 == "0.1.0"
    };
    compare(
        "syft",
        &ours,
        &theirs,
        &[(
            "the binary's own crate (source local) is not reported",
            &root,
        )],
    );
}

/// The section as cargo-auditable wrote it, read with objcopy and flate2.
fn section_json(bin: &Path) -> serde_json::Value {
    use std::io::Read;
    let dump = target_dir().join("lang-rust/dep-v0.bin");
    let st = Command::new("objcopy")
        .arg("--dump-section")
        .arg(format!(".dep-v0={}", dump.display()))
        .arg(bin)
        .arg(target_dir().join("lang-rust/discard"))
        .status()
        .expect("objcopy (binutils)");
    assert!(st.success());
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(fs::File::open(&dump).unwrap())
        .read_to_end(&mut json)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}

#[test]
fn without_the_section_or_with_a_broken_one() {
    let (_, plain) = binaries();
    assert!(analyze(plain).unwrap().is_none());
    let (bin, _) = binaries();
    let garbage = target_dir().join("lang-rust/garbage.bin");
    fs::write(&garbage, b"this is not zlib at all").unwrap();
    let broken = target_dir().join("lang-rust/broken");
    let st = Command::new("objcopy")
        .arg("--update-section")
        .arg(format!(".dep-v0={}", garbage.display()))
        .arg(bin)
        .arg(&broken)
        .status()
        .expect("objcopy (binutils)");
    assert!(st.success());
    assert!(matches!(
        analyze(&broken),
        Err(AnalyzeError::Malformed { .. })
    ));
    // Truncated: the section headers (at the end) are gone.
    let bytes = fs::read(bin).unwrap();
    let cut = target_dir().join("lang-rust/cut");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    fs::set_permissions(&cut, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(matches!(analyze(&cut), Err(AnalyzeError::Malformed { .. })));
}

#[test]
fn damaged_auditable_binaries_are_errors_or_nothing_never_panics() {
    let (bin, _) = binaries();
    let bytes = fs::read(bin).unwrap();
    // Where the section's bytes are (objcopy dumps them; found again in the file).
    let dump = target_dir().join("lang-rust/dep-v0-damaged.bin");
    let st = Command::new("objcopy")
        .arg("--dump-section")
        .arg(format!(".dep-v0={}", dump.display()))
        .arg(bin)
        .arg(target_dir().join("lang-rust/discard-damaged"))
        .status()
        .unwrap();
    assert!(st.success());
    let section = fs::read(&dump).unwrap();
    let at = bytes
        .windows(section.len())
        .position(|w| w == section.as_slice())
        .unwrap();
    let n = bytes.len();
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rnd = |m: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % m as u64) as usize
    };
    let (mut ok, mut bad) = (0, 0);
    for round in 0..120 {
        let mut b = bytes.clone();
        for _ in 0..1 + rnd(6) {
            // The section, the section header table and names (the file's end), the header.
            let i = match rnd(3) {
                0 => at + rnd(section.len()),
                1 => n - 1 - rnd(8192),
                _ => rnd(64),
            };
            b[i] = rnd(256) as u8;
        }
        let info = FileInfo {
            path: "/usr/local/bin/app",
            size: b.len() as u64,
            mode: 0o755,
        };
        match RustBinaryAnalyzer.analyze(&info, &mut b.as_slice()) {
            Ok(_) => ok += 1,
            Err(AnalyzeError::Malformed { .. }) => bad += 1,
            Err(e) => panic!("round {round}: {e}"),
        }
    }
    eprintln!("120 damaged binaries: {ok} read, {bad} malformed");
    assert!(bad > 0);
}
