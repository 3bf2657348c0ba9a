//! Invariants of trust's signature readers on arbitrary bytes from a registry: Sigstore bundles,
//! simple-signing payloads, signature manifests and Rekor bundle annotations give `Ok` or `Err`,
//! never a panic, through every verification entry point; nothing verifies without a trusted
//! signature over it; and a payload that parses is rebuilt by `payload::build` into one that
//! parses the same.
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/trust_sig.rs`) and the seed-corpus test of the
//! crate (`crates/trust/tests/fuzz_corpus.rs`).

use std::collections::BTreeMap;

use trust::payload::{self, SimpleSigning};
use trust::{
    Bundle, Digest, PublicKey, Requirements, SignatureArtifact, SignatureManifest, rekor,
    verify_image,
};

/// A real cosign key (containers/image's fixture) and Rekor's public-good key, from the seeds of
/// the key target.
const COSIGN_PUB: &str = include_str!("../corpus/trust_keys/cosign.pub");
const REKOR_PUB: &str = include_str!("../corpus/trust_keys/rekor.pub");

/// Runs every invariant on one input; panics when one does not hold.
pub fn check(data: &[u8]) {
    let key = PublicKey::from_pem(COSIGN_PUB).unwrap();
    let rekor_key = PublicKey::from_pem(REKOR_PUB).unwrap();
    let subject = Digest::sha256(b"wharf fuzz subject");
    let mut required = BTreeMap::new();
    required.insert("env".to_owned(), "prod".to_owned());

    if let Ok(b) = Bundle::parse(data) {
        assert!(
            b.media_type()
                .starts_with("application/vnd.dev.sigstore.bundle")
        );
        let _ = (b.content(), b.key_hint(), b.has_certificate());
        if let Ok(k) = b.certificate_key() {
            let _ = b.verify_dsse(&[k]);
        }
        for keys in [&[][..], std::slice::from_ref(&key)] {
            let _ = b.verify_dsse(keys);
            let _ = b.verify_image(&subject, keys, &required);
            let _ = b.verify_blob(data, keys);
        }
        let _ = b.verify_tlog(std::slice::from_ref(&rekor_key));
        let _ = b.verify_tlog(&[]);
    }

    if let Ok(p) = SimpleSigning::parse(data) {
        let _ = p.check(&subject, &required);
        let strings: Option<BTreeMap<String, String>> = p
            .optional
            .iter()
            .map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
            .collect();
        if let (Ok(d), Some(strings)) = (Digest::parse(&p.manifest_digest), strings) {
            let rebuilt = SimpleSigning::parse(&payload::build(&p.docker_reference, &d, &strings))
                .expect("a built payload parses");
            assert_eq!(rebuilt, p);
        }
    }

    if let Ok(m) = SignatureManifest::parse(data) {
        // No blobs, untrusted bytes: nothing can verify, whatever the manifest says.
        let artifacts = [SignatureArtifact {
            source: "fuzz".into(),
            manifest: data.to_vec(),
            blobs: BTreeMap::new(),
        }];
        let requirements = Requirements {
            annotations: required.clone(),
            rekor_keys: vec![rekor_key.clone()],
            require_tlog: true,
        };
        let verdict = verify_image(
            &subject,
            &artifacts,
            std::slice::from_ref(&key),
            &requirements,
        );
        assert!(!verdict.is_verified() && verdict.verified.is_empty());
        if matches!(m, SignatureManifest::Other) {
            assert!(verdict.rejected.is_empty());
        }
    }

    if let Ok(text) = std::str::from_utf8(data) {
        let _ = rekor::verify_cosign_bundle_annotation(
            text,
            b"payload",
            "c2ln",
            std::slice::from_ref(&rekor_key),
        );
        let _ = rekor::check_hashedrekord_body(text.trim(), data, "c2ln");
        assert!(key.verify_base64(data, text).is_err());
    }
}
