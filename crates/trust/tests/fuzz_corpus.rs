//! The fuzz targets' seed corpora (`fuzz/corpus/TARGET`) through the targets' own invariants
//! (`fuzz/checks/TARGET.rs`), so `cargo test` catches a regression (and replays every crash
//! the fuzzer found, whose input is added to the seeds) without running the fuzzer.

#[path = "../../../fuzz/checks/trust_keys.rs"]
mod trust_keys;
#[path = "../../../fuzz/checks/trust_sig.rs"]
mod trust_sig;

#[path = "../../../fuzz/checks/seeds.rs"]
mod seeds;

fn seeds(target: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    seeds::seeds(env!("CARGO_MANIFEST_DIR"), target)
}

#[test]
fn trust_keys_seeds_hold_the_fuzz_invariants() {
    for (path, data) in seeds("trust_keys") {
        eprintln!("{}", path.display());
        trust_keys::check(&data);
    }
}

#[test]
fn trust_sig_seeds_hold_the_fuzz_invariants() {
    for (path, data) in seeds("trust_sig") {
        eprintln!("{}", path.display());
        trust_sig::check(&data);
    }
}
