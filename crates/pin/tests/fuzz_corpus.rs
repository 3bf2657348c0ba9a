//! The fuzz targets' seed corpora (`fuzz/corpus/TARGET`) through the targets' own invariants
//! (`fuzz/checks/TARGET.rs`), so `cargo test` catches a regression (and replays every crash
//! the fuzzer found, whose input is added to the seeds) without running the fuzzer.

#[path = "../../../fuzz/checks/pin.rs"]
mod pin;

#[path = "../../../fuzz/checks/seeds.rs"]
mod seeds;

fn seeds(target: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    seeds::seeds(env!("CARGO_MANIFEST_DIR"), target)
}

#[test]
fn pin_seeds_hold_the_fuzz_invariants() {
    for (path, data) in seeds("pin") {
        eprintln!("{}", path.display());
        pin::check(&data);
    }
}
