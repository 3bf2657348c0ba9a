//! Digests, names, tags, references and ranges: any input gives Ok or Err, never a panic, and
//! what is accepted obeys the grammar's invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = oci::Digest::parse(s) {
        assert_eq!(d.to_string(), s);
    }
    if oci::validate_repository(s).is_ok() {
        assert!(!s.split('/').any(|c| c.is_empty() || c == "." || c == ".."));
    }
    let _ = oci::validate_tag(s);
    let _ = oci::Reference::parse(s);
    for size in [0u64, 1, 100, u64::MAX] {
        if let Ok(r) = oci::parse_range(s, size) {
            assert!(r.start <= r.end && r.end < size);
        }
    }
    let _ = oci::parse_content_range(s);
});
