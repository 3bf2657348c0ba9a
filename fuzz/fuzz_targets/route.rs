//! Fuzzes the `/v2/` route grammar and percent-decoding (`oci::route`).
//! The invariants are in `fuzz/checks/route.rs`,
//! shared with the crate's seed-corpus test.
#![no_main]

#[path = "../checks/route.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
