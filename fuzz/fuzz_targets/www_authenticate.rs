//! Fuzzes client's `WWW-Authenticate` challenge parser.
//! The invariants are in `fuzz/checks/www_authenticate.rs`,
//! shared with the crate's seed-corpus test.
#![no_main]

#[path = "../checks/www_authenticate.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
