//! Invariants of the `/v2/` route grammar and percent-decoding (`oci::route`) on arbitrary
//! text: no panic; a parsed route spells its path back; names are never empty where the grammar
//! splits on a keyword; decoding never grows the text, leaves text without escapes alone, and
//! undoes a full percent-encoding.
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/route.rs`) and the seed-corpus test of the
//! crate (`crates/oci/tests/fuzz_corpus.rs`).

use oci::route::{Route, parse_route, percent_decode};

/// Runs every invariant on one input; panics when one does not hold.
pub fn check(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(route) = parse_route(path) {
        let spelled = match route {
            Route::Base => vec!["/v2".to_owned(), "/v2/".to_owned()],
            Route::Catalog => vec!["/v2/_catalog".to_owned()],
            Route::Tags(n) => vec![format!("/v2/{n}/tags/list")],
            Route::Manifest(n, r) => vec![format!("/v2/{n}/manifests/{r}")],
            Route::Blob(n, d) => vec![format!("/v2/{n}/blobs/{d}")],
            Route::UploadStart(n) => vec![
                format!("/v2/{n}/blobs/uploads"),
                format!("/v2/{n}/blobs/uploads/"),
            ],
            Route::Upload(n, id) => vec![format!("/v2/{n}/blobs/uploads/{id}")],
            Route::Referrers(n, d) => vec![format!("/v2/{n}/referrers/{d}")],
        };
        assert!(spelled.iter().any(|s| s == path), "{route:?} from {path:?}");
        assert_eq!(
            route.name().is_none(),
            matches!(route, Route::Base | Route::Catalog)
        );
        match route {
            Route::Manifest(n, last)
            | Route::Blob(n, last)
            | Route::Upload(n, last)
            | Route::Referrers(n, last) => {
                assert!(!n.is_empty());
                assert!(!last.contains('/'));
            }
            _ => {}
        }
        assert!(!route.label().is_empty());
    }

    let decoded = percent_decode(path);
    assert!(decoded.len() <= path.len());
    if !path.contains(['%', '+']) {
        assert_eq!(decoded, path);
    }
    let encoded: String = path.bytes().map(|b| format!("%{b:02X}")).collect();
    assert_eq!(percent_decode(&encoded), path);
    let lower: String = path.bytes().map(|b| format!("%{b:02x}")).collect();
    assert_eq!(percent_decode(&lower), path);
}
