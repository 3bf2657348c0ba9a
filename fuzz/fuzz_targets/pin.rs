//! Fuzzes pin's YAML reader and rewriter.
//! The invariants are in `fuzz/checks/pin.rs`,
//! shared with the crate's seed-corpus test.
#![no_main]

#[path = "../checks/pin.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
