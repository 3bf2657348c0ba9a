//! Invariants of the `WWW-Authenticate` parser (`client::parse_challenges`) on arbitrary text:
//! no panic; schemes and parameter names are non-empty and lower-cased; and writing the
//! challenges back as a header (every value quoted and escaped) parses to the same challenges.
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/www_authenticate.rs`) and the seed-corpus test
//! of the crate (`crates/client/tests/fuzz_corpus.rs`).

use client::{Challenge, parse_challenges};

/// Writes challenges as one header value, every parameter value quoted.
fn write(challenges: &[Challenge]) -> String {
    let mut out = Vec::new();
    for c in challenges {
        let mut s = c.scheme.clone();
        let params: Vec<String> = c
            .params
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        if !params.is_empty() {
            s.push(' ');
            s.push_str(&params.join(", "));
        }
        out.push(s);
    }
    out.join(", ")
}

/// Runs every invariant on one input; panics when one does not hold.
pub fn check(data: &[u8]) {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let challenges = parse_challenges(header);
    for c in &challenges {
        assert!(!c.scheme.is_empty());
        assert_eq!(c.scheme, c.scheme.to_ascii_lowercase());
        for (k, v) in &c.params {
            assert!(!k.is_empty());
            assert_eq!(*k, k.to_ascii_lowercase());
            assert_eq!(c.param(k), Some(v.as_str()));
        }
    }
    let written = write(&challenges);
    assert_eq!(parse_challenges(&written), challenges, "header {written:?}");
}
