//! Fuzzes trust's key readers (PEM, DER, cosign's encrypted envelope).
//! The invariants are in `fuzz/checks/trust_keys.rs`,
//! shared with the crate's seed-corpus test.
#![no_main]

#[path = "../checks/trust_keys.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
