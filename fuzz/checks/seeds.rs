//! Reading a fuzz target's seed corpus (`fuzz/corpus/<target>`), shared by the crates' plain
//! tests that replay the seeds through the targets' checks (`crates/*/tests/fuzz_corpus.rs`).

/// Every file of `fuzz/corpus/<target>`, in name order; `manifest_dir` is the calling crate's
/// `CARGO_MANIFEST_DIR` (two levels below the workspace root).
pub fn seeds(manifest_dir: &str, target: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let dir = std::path::Path::new(manifest_dir)
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
