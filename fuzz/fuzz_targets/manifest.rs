//! Manifest validation: arbitrary bodies and content types never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (ct, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (std::str::from_utf8(&data[..i]).ok(), &data[i + 1..]),
        None => (None, data),
    };
    if let Ok(m) = oci::Manifest::parse(ct, body) {
        let _ = m.required_blobs().count();
        let _ = m.effective_artifact_type();
    }
});
