//! The fuzz targets' seed corpora (`fuzz/corpus/TARGET`) through the targets' own invariants
//! (`fuzz/checks/TARGET.rs`), so `cargo test` catches a regression (and replays every crash
//! the fuzzer found, whose input is added to the seeds) without running the fuzzer.

#[path = "../../../fuzz/checks/pin.rs"]
mod pin;

/// Every file of `fuzz/corpus/<target>`, in name order.
fn seeds(target: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no seeds in {}", dir.display());
    paths
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect()
}

#[test]
fn pin_seeds_hold_the_fuzz_invariants() {
    for (path, data) in seeds("pin") {
        eprintln!("{}", path.display());
        pin::check(&data);
    }
}
