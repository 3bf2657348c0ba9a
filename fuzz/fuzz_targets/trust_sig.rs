//! Fuzzes trust's signature readers (Sigstore bundles, payloads, signature manifests, Rekor annotations).
//! The invariants are in `fuzz/checks/trust_sig.rs`,
//! shared with the crate's seed-corpus test.
#![no_main]

#[path = "../checks/trust_sig.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
