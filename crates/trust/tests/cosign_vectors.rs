//! Every vector of `shared/interop/cosign/` (real cosign, containers/image, sigstore-rs,
//! sigstore-go, sigstore-conformance and Harbor data; see its README): the positive ones verify,
//! the tampered and wrong-key ones fail, and the manifests Wharf writes are byte-identical to
//! cosign's.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use oci::Descriptor;
use sha2::{Digest as _, Sha256};
use trust::manifest::{self, REKOR_BUNDLE_ANNOTATION, SIGNATURE_ANNOTATION, SignatureLayer};
use trust::payload::SimpleSigning;
use trust::{
    Bundle, Digest, KeyError, PrivateKey, PublicKey, Requirements, SignatureArtifact,
    SignatureFormat, VerifyError, verify_image,
};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/interop/cosign")
}

fn read(rel: &str) -> Vec<u8> {
    let p = dir().join(rel);
    fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn text(rel: &str) -> String {
    String::from_utf8(read(rel)).unwrap()
}

fn key(rel: &str) -> PublicKey {
    PublicKey::from_pem(&text(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

const S01: &str = "01-containers-image-simple-signing";
const DIRS_01: [(&str, &str, &str); 3] = [
    ("dir-img-cosign-valid", "cosign.pub", "cosign2.pub"),
    ("dir-img-cosign-valid-with-tag", "cosign.pub", "cosign2.pub"),
    (
        "dir-img-cosign-key-rekor-valid",
        "cosign2.pub",
        "cosign.pub",
    ),
];

#[test]
fn vectors_are_intact() {
    let sums = text("SHA256SUMS.txt");
    let mut n = 0;
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (sum, path) = line.split_once("  ").expect("sha256sum line");
        let got = hex::encode(Sha256::digest(read(path.trim_start_matches("./"))));
        assert_eq!(got, sum, "{path} changed");
        n += 1;
    }
    assert!(n >= 60, "only {n} files listed");
}

#[test]
fn simple_signing_signatures_verify_and_negatives_fail() {
    for (d, good, other) in DIRS_01 {
        let payload = read(&format!("{S01}/{d}/payload.json"));
        let sig = text(&format!("{S01}/{d}/signature.b64"));
        let good = key(&format!("{S01}/{good}"));
        let other = key(&format!("{S01}/{other}"));
        good.verify_base64(&payload, &sig)
            .unwrap_or_else(|e| panic!("{d}: {e}"));
        assert_eq!(
            other.verify_base64(&payload, &sig),
            Err(VerifyError::BadSignature),
            "{d}: wrong key"
        );
        let tampered = String::from_utf8(payload.clone()).unwrap().replace(
            "cosign container image signature",
            "cosign container image signaturE",
        );
        assert_eq!(
            good.verify_base64(tampered.as_bytes(), &sig),
            Err(VerifyError::BadSignature),
            "{d}: tampered payload"
        );
        // The payload names the image manifest's digest.
        let image = read(&format!("{S01}/{d}/image-manifest.json"));
        let digest = Digest::sha256(&image);
        assert_eq!(
            digest.to_string(),
            text(&format!("{S01}/{d}/image-manifest.digest.txt"))
        );
        let parsed = SimpleSigning::parse(&payload).unwrap();
        parsed.check(&digest, &BTreeMap::new()).unwrap();
        let mut tampered_image = image.clone();
        tampered_image[10] ^= 1;
        assert!(matches!(
            parsed.check(&Digest::sha256(&tampered_image), &BTreeMap::new()),
            Err(VerifyError::DigestMismatch { .. })
        ));
    }
    // The c/image-made signature carries optional creator/timestamp: annotation checks see them.
    let p = SimpleSigning::parse(&read(&format!(
        "{S01}/dir-img-cosign-valid-with-tag/payload.json"
    )))
    .unwrap();
    assert_eq!(p.optional["creator"], "containers/image 5.21.2-dev");
    assert_eq!(p.docker_reference, "192.168.64.2:5000/skopeo-signed:tag");
}

/// The signature layers c/image copied out of registries, put back into the tag-form manifest
/// and verified through the same pure function the CLI and the registry use, with the Rekor SET
/// checked offline for the one that was logged.
#[test]
fn signature_layers_verify_through_verify_image() {
    let rekor = key(&format!("{S01}/rekor.pub"));
    for (d, good, other) in DIRS_01 {
        let sig_json: serde_json::Value = serde_json::from_slice(&read(&format!(
            "{S01}/{d}/containers-image-signature-1.json"
        )))
        .unwrap();
        let payload = STANDARD
            .decode(sig_json["payload"].as_str().unwrap())
            .unwrap();
        assert_eq!(payload, read(&format!("{S01}/{d}/payload.json")));
        let annotations: BTreeMap<String, String> =
            serde_json::from_value(sig_json["annotations"].clone()).unwrap();
        let layer = SignatureLayer {
            signature: annotations[SIGNATURE_ANNOTATION].clone(),
            annotations: annotations.clone(),
            payload: payload.clone(),
        };
        let image = manifest::tag_signature_image(None, &layer).unwrap();
        let subject = Digest::sha256(&read(&format!("{S01}/{d}/image-manifest.json")));
        let artifact = SignatureArtifact {
            source: format!("tag {}", manifest::signature_tag(&subject)),
            manifest: image.manifest.clone(),
            blobs: [(Digest::sha256(&payload), payload.clone())].into(),
        };
        let keys = [key(&format!("{S01}/{good}"))];
        let with_rekor = Requirements {
            rekor_keys: vec![rekor.clone()],
            ..Requirements::default()
        };
        let v = verify_image(
            &subject,
            std::slice::from_ref(&artifact),
            &keys,
            &with_rekor,
        );
        assert!(v.is_verified(), "{d}: {v:#?}");
        assert_eq!(v.verified[0].format, SignatureFormat::SimpleSigning);
        let logged = annotations.contains_key(REKOR_BUNDLE_ANNOTATION);
        assert_eq!(v.verified[0].tlog.len(), usize::from(logged), "{d}");
        if logged {
            assert_eq!(v.verified[0].tlog[0].log_index, 11608800);
            // A Rekor key that is not the log's: the SET cannot be checked, so it is refused.
            let wrong_rekor = Requirements {
                rekor_keys: vec![key(&format!("{S01}/cosign.pub"))],
                ..Requirements::default()
            };
            let v = verify_image(
                &subject,
                std::slice::from_ref(&artifact),
                &keys,
                &wrong_rekor,
            );
            assert!(!v.is_verified());
            assert!(matches!(v.rejected[0].reason, VerifyError::Tlog(_)));
        } else {
            let required = Requirements {
                require_tlog: true,
                rekor_keys: vec![rekor.clone()],
                ..Requirements::default()
            };
            let v = verify_image(&subject, std::slice::from_ref(&artifact), &keys, &required);
            assert!(!v.is_verified(), "{d}: no tlog entry but one required");
        }

        // Wrong key.
        let v = verify_image(
            &subject,
            std::slice::from_ref(&artifact),
            &[key(&format!("{S01}/{other}"))],
            &Requirements::default(),
        );
        assert!(!v.is_verified());
        assert_eq!(v.rejected[0].reason, VerifyError::BadSignature);
        // Another image (a tampered manifest has another digest).
        let v = verify_image(
            &Digest::sha256(b"another manifest"),
            std::slice::from_ref(&artifact),
            &keys,
            &Requirements::default(),
        );
        assert!(matches!(
            v.rejected[0].reason,
            VerifyError::DigestMismatch { .. }
        ));
        // A payload blob that was swapped for another.
        let mut swapped = artifact.clone();
        swapped
            .blobs
            .insert(Digest::sha256(&payload), b"{}".to_vec());
        let v = verify_image(&subject, &[swapped], &keys, &Requirements::default());
        assert!(matches!(v.rejected[0].reason, VerifyError::Blob { .. }));
        // A corrupt signature annotation.
        let mut corrupt = layer.clone();
        corrupt.signature = format!("AAAA{}", &layer.signature[4..]);
        corrupt
            .annotations
            .insert(SIGNATURE_ANNOTATION.into(), corrupt.signature.clone());
        let bad = manifest::tag_signature_image(None, &corrupt).unwrap();
        let v = verify_image(
            &subject,
            &[SignatureArtifact {
                manifest: bad.manifest,
                ..artifact.clone()
            }],
            &keys,
            &Requirements::default(),
        );
        assert!(!v.is_verified());
        assert!(matches!(
            v.rejected[0].reason,
            VerifyError::BadSignature | VerifyError::MalformedSignature(_)
        ));
        // Required annotations.
        let need = Requirements {
            annotations: [("team".to_owned(), "a".to_owned())].into(),
            ..Requirements::default()
        };
        let v = verify_image(&subject, std::slice::from_ref(&artifact), &keys, &need);
        assert!(matches!(
            v.rejected[0].reason,
            VerifyError::AnnotationMismatch { .. }
        ));
    }
}

/// The tag-form manifest Wharf writes for the `dir-img-cosign-valid` signature is byte-identical
/// to the one derived from cosign's template (config blob, tag name included).
#[test]
fn tag_form_manifest_is_byte_identical_to_cosign() {
    let d = format!("{S01}/dir-img-cosign-valid");
    let layer = SignatureLayer {
        payload: read(&format!("{d}/payload.json")),
        signature: text(&format!("{d}/signature.b64")),
        annotations: BTreeMap::new(),
    };
    let image = manifest::tag_signature_image(None, &layer).unwrap();
    assert_eq!(
        String::from_utf8(image.manifest.clone()).unwrap(),
        text(&format!("{d}/sig-manifest.DERIVED.json"))
    );
    assert_eq!(
        image.blobs[0],
        read(&format!("{d}/sig-config-blob.DERIVED.json"))
    );
    let subject = Digest::parse(&text(&format!("{d}/image-manifest.digest.txt"))).unwrap();
    assert_eq!(
        manifest::signature_tag(&subject),
        text(&format!("{d}/sig-manifest.DERIVED.tag.txt"))
    );
}

/// Harbor's published copy of a manifest cosign pushed (OCI 1.1 referrer form, with a Rekor
/// bundle): rebuilt from its parts, Wharf's serialisation hashes to the published digest; its
/// config blob is the template; its Rekor SET verifies offline and the logged entry is this
/// signature over this payload digest.
#[test]
fn referrer_form_manifest_is_byte_identical_to_cosign() {
    let raw = read("01b-harbor-real-sig-manifest/sig-manifest.oci11.json");
    assert_eq!(
        Digest::sha256(&raw).to_string(),
        "sha256:aabea2bdd5a6fb79c13837b88c7b158f4aa57a621194ee21959d0b520eda412f"
    );
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let subject: Descriptor = serde_json::from_value(v["subject"].clone()).unwrap();
    let layers = match trust::SignatureManifest::parse(&raw).unwrap() {
        trust::SignatureManifest::SimpleSigning { layers, subject: s } => {
            assert_eq!(s.as_ref(), Some(&subject.digest));
            layers
        }
        other => panic!("{other:?}"),
    };
    let (manifest, config) = manifest::referrer_manifest(&subject, &layers);
    assert_eq!(
        String::from_utf8(manifest).unwrap(),
        String::from_utf8(raw).unwrap()
    );
    assert_eq!(
        config,
        read("01b-harbor-real-sig-manifest/config-blob.DERIVED.json")
    );
    assert_eq!(v["config"]["mediaType"], manifest::SIG_ARTIFACT_TYPE);

    // The Rekor SET inside, offline.
    let rekor = key("01b-harbor-real-sig-manifest/rekor.pub");
    let bundle: serde_json::Value =
        serde_json::from_str(&layers[0].annotations[REKOR_BUNDLE_ANNOTATION]).unwrap();
    let p = &bundle["Payload"];
    let entry = trust::rekor::verify_set(
        p["body"].as_str().unwrap(),
        p["integratedTime"].as_i64().unwrap(),
        p["logID"].as_str().unwrap(),
        p["logIndex"].as_i64().unwrap(),
        bundle["SignedEntryTimestamp"].as_str().unwrap(),
        &[rekor],
    )
    .unwrap();
    assert_eq!(entry.log_index, 84313668);
    let body: serde_json::Value =
        serde_json::from_slice(&STANDARD.decode(p["body"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(
        format!(
            "sha256:{}",
            body["spec"]["data"]["hash"]["value"].as_str().unwrap()
        ),
        layers[0].digest.to_string()
    );
    assert_eq!(
        body["spec"]["signature"]["content"].as_str(),
        layers[0].signature.as_deref()
    );
    // The signer's key, as logged, is a key Wharf reads.
    key("01b-harbor-real-sig-manifest/signer-key.from-rekor-body.pub");

    // A layer as Wharf builds it for a new referrer-form signature has the same shape.
    let k = PrivateKey::generate(trust::KeyAlgorithm::EcdsaP256).unwrap();
    let sig = trust::sign_image(&k, "r.example/x", &subject.digest, &BTreeMap::new());
    let ours = manifest::referrer_signature_image(&subject, &sig);
    let ours: serde_json::Value = serde_json::from_slice(&ours.manifest).unwrap();
    let keys_of =
        |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys_of(&ours), keys_of(&v));
    assert_eq!(ours["config"]["mediaType"], v["config"]["mediaType"]);
    assert_eq!(ours["layers"][0]["mediaType"], v["layers"][0]["mediaType"]);
    assert_eq!(ours["subject"], v["subject"]);
}

const S02: &str = "02-sigstore-rs-simple-signing";

#[test]
fn sigstore_rs_vector() {
    let payload = read(&format!("{S02}/payload.json"));
    let sig = text(&format!("{S02}/signature.b64"));
    let k = key(&format!("{S02}/cosign.pub"));
    k.verify_base64(&payload, &sig).unwrap();
    assert_eq!(
        key(&format!("{S02}/wrong-key.pub")).verify_base64(&payload, &sig),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(
        k.verify_base64(&read(&format!("{S02}/payload.tampered.json")), &sig),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(
        k.verify_base64(b"hello world", &sig),
        Err(VerifyError::BadSignature)
    );
    let p = SimpleSigning::parse(&payload).unwrap();
    assert_eq!(p.docker_reference, "registry-testing.svc.lan/busybox");
    p.check(
        &Digest::parse("sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b")
            .unwrap(),
        &BTreeMap::new(),
    )
    .unwrap();
}

const S03: &str = "03-encrypted-keys";

#[test]
fn encrypted_keys_load_with_their_passwords_and_sign() {
    let cases: [(&str, &[u8]); 4] = [
        ("sigstore-rs_cosign_generated_encrypted_empty_private", b""),
        ("sigstore-rs_ecdsa_encrypted_private", b"123"),
        ("sigstore-rs_ed25519_encrypted_private", b"123"),
        (
            "sigstore-rs-example_ECDSA_P256_ASN1_ENCRYPTED_PRIVATE_PEM",
            b"password",
        ),
    ];
    for (name, password) in cases {
        let pem = read(&format!("{S03}/{name}.key"));
        let k =
            PrivateKey::from_pem(&pem, Some(password)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let published = key(&format!("{S03}/{name}.DERIVED.pub"));
        assert_eq!(k.public_key(), published, "{name}");
        assert_eq!(
            k.public_key().to_pem(),
            text(&format!("{S03}/{name}.DERIVED.pub"))
        );
        let sig = k.sign(b"interop roundtrip");
        published.verify(b"interop roundtrip", &sig).unwrap();
        if name == "sigstore-rs_ecdsa_encrypted_private" {
            // (one wrong-password check: each costs a full scrypt)
            assert!(
                matches!(
                    PrivateKey::from_pem(&pem, Some(b"123x")),
                    Err(KeyError::WrongPassword)
                ),
                "{name}: wrong password must fail"
            );
        }
        assert!(matches!(
            PrivateKey::from_pem(&pem, None),
            Err(KeyError::PasswordRequired)
        ));
    }
    // RSA: decrypts (right password) but the key type is refused with a clear message.
    let e = PrivateKey::from_pem(
        &read(&format!("{S03}/sigstore-rs_rsa_encrypted_private.key")),
        Some(b"123"),
    )
    .unwrap_err();
    assert!(matches!(e, KeyError::Unsupported(_)), "{e}");
    assert!(matches!(
        PublicKey::from_pem(&text(&format!(
            "{S03}/sigstore-rs_rsa_encrypted_private.DERIVED.pub"
        ))),
        Err(KeyError::Unsupported(_))
    ));
    // The unencrypted PKCS#8 keys next to them (ECDSA and Ed25519, PKCS#8 v1 and v2) load.
    for name in [
        "sigstore-rs_ecdsa_private.key",
        "sigstore-rs_ed25519_private.key",
        "sigstore-rs-example_ECDSA_P256_ASN1_PRIVATE_PEM.key",
    ] {
        let k = PrivateKey::from_pem(&read(&format!("{S03}/{name}")), None)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        k.public_key().verify(b"m", &k.sign(b"m")).unwrap();
    }
    key(&format!(
        "{S03}/sigstore-rs-example_ECDSA_P256_ASN1_PUBLIC_PEM.pub"
    ));
}

#[test]
fn written_encrypted_keys_have_cosigns_envelope() {
    let k = PrivateKey::generate(trust::KeyAlgorithm::EcdsaP256).unwrap();
    let pem = k.to_encrypted_pem(b"s3cret").unwrap();
    assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .inspect(|l| assert!(l.len() <= 64))
        .collect();
    let json = String::from_utf8(STANDARD.decode(body).unwrap()).unwrap();
    assert!(
        json.starts_with(r#"{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":""#),
        "{json}"
    );
    assert!(json.contains(r#""cipher":{"name":"nacl/secretbox","nonce":""#));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        STANDARD
            .decode(v["kdf"]["salt"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    assert_eq!(
        STANDARD
            .decode(v["cipher"]["nonce"].as_str().unwrap())
            .unwrap()
            .len(),
        24
    );
    let back = PrivateKey::from_pem(pem.as_bytes(), Some(b"s3cret")).unwrap();
    assert_eq!(back.public_key(), k.public_key());
    // Every algorithm round-trips (at a low scrypt cost, to keep the test fast).
    for alg in [
        trust::KeyAlgorithm::EcdsaP256,
        trust::KeyAlgorithm::EcdsaP384,
        trust::KeyAlgorithm::Ed25519,
    ] {
        let k = PrivateKey::generate(alg).unwrap();
        let pem = k.to_encrypted_pem_with_cost(b"pw", 10).unwrap();
        let back = PrivateKey::from_pem(pem.as_bytes(), Some(b"pw")).unwrap();
        assert_eq!(back.public_key(), k.public_key());
        assert!(matches!(
            PrivateKey::from_pem(pem.as_bytes(), Some(b"pW")),
            Err(KeyError::WrongPassword)
        ));
    }
}

const S04: &str = "04-bundles";

fn bundle(rel: &str) -> Bundle {
    Bundle::parse(&read(&format!("{S04}/{rel}"))).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn key_based_message_signature_bundle() {
    let b = bundle("conformance-managed-key-happy-path/bundle.sigstore.json");
    let k = key(&format!("{S04}/conformance-managed-key-happy-path/key.pub"));
    assert_eq!(b.key_hint(), Some(k.hint().as_str()));
    let artifact = read(&format!("{S04}/conformance-managed-key-happy-path/a.txt"));
    assert_eq!(
        b.verify_blob(&artifact, std::slice::from_ref(&k)).unwrap(),
        0
    );
    let mut tampered = artifact.clone();
    tampered.push(b'x');
    assert!(b.verify_blob(&tampered, std::slice::from_ref(&k)).is_err());
    let other = key(&format!("{S01}/cosign.pub"));
    assert_eq!(
        b.verify_blob(&artifact, &[other]),
        Err(VerifyError::BadSignature)
    );
    // The "wrong key" vector's key.pub is corrupt: it must not even parse.
    assert!(
        PublicKey::from_pem(&text(&format!(
            "{S04}/conformance-managed-key-wrong-key_fail/key.pub"
        )))
        .is_err()
    );
}

#[test]
fn dsse_bundles_verify_and_the_invalid_one_fails() {
    // Key-based DSSE (npm publish attestation, bundle v0.1).
    let b = bundle("sigstore-go-npm-publish-keyed-dsse-v0.1/bundle-publish.json");
    let k = key(&format!(
        "{S04}/sigstore-go-npm-publish-keyed-dsse-v0.1/publish_key.pub"
    ));
    let (_, payload) = b.verify_dsse(std::slice::from_ref(&k)).unwrap();
    assert!(
        String::from_utf8(payload)
            .unwrap()
            .contains("pkg:npm/sigstore@1.3.0")
    );
    assert!(b.verify_dsse(&[key(&format!("{S01}/cosign.pub"))]).is_err());

    // Bundles v0.3 with DSSE (certificate-based: the signature computation is checked with the
    // certificate's key; checking the certificate itself is keyless verification).
    let cases = [
        (
            "sigstore-rs-cert-dsse-v0.3/bundle_v03.json",
            "sha256:c811d58de79c92f03214e63aa339484e488d694ae8a6283b5f3f17a9faf50172",
            "https://sigstore.dev/cosign/sign/v1",
        ),
        (
            "cosign-oci-attestation-cert-dsse-v0.3/oci-attestation.sigstore.json",
            "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4",
            "https://cosign.sigstore.dev/attestation/v1",
        ),
        (
            "conformance-happy-path-intoto-in-dsse-v3/bundle.sigstore.json",
            "sha256:a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf",
            "https://slsa.dev/provenance/v1",
        ),
    ];
    for (rel, subject, predicate) in cases {
        let b = bundle(rel);
        assert!(b.has_certificate());
        let ck = b.certificate_key().unwrap();
        let subject = Digest::parse(subject).unwrap();
        let (_, st) = b
            .verify_image(&subject, std::slice::from_ref(&ck), &BTreeMap::new())
            .unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(st.predicate_type, predicate);
        assert!(matches!(
            b.verify_image(
                &Digest::sha256(b"other"),
                std::slice::from_ref(&ck),
                &BTreeMap::new()
            ),
            Err(VerifyError::DigestMismatch { .. })
        ));
        assert!(
            b.verify_image(
                &subject,
                &[key(&format!("{S01}/cosign.pub"))],
                &BTreeMap::new()
            )
            .is_err()
        );
    }
    // a.txt's DSSE provenance also verifies as a blob bundle.
    let b = bundle("conformance-happy-path-intoto-in-dsse-v3/bundle.sigstore.json");
    let ck = b.certificate_key().unwrap();
    b.verify_blob(
        &read(&format!("{S04}/conformance-managed-key-happy-path/a.txt")),
        &[ck],
    )
    .unwrap();

    let bad = bundle("conformance-dsse-invalid-sig_fail/bundle.sigstore.json");
    let ck = bad.certificate_key().unwrap();
    assert_eq!(
        bad.verify_dsse(&[ck]).unwrap_err(),
        VerifyError::BadSignature
    );
}

/// Rekor inclusion promises of the bundles logged in the public-good instance verify offline
/// with its key (the same key as `01/rekor.pub`).
#[test]
fn bundle_tlog_promises_verify_offline() {
    let rekor = key(&format!("{S01}/rekor.pub"));
    let rekor_id = hex::encode(Sha256::digest(rekor.to_spki_der()));
    let mut checked = 0;
    for rel in [
        "sigstore-rs-cert-dsse-v0.3/bundle_v03.json",
        "cosign-oci-attestation-cert-dsse-v0.3/oci-attestation.sigstore.json",
        "conformance-happy-path-intoto-in-dsse-v3/bundle.sigstore.json",
        "conformance-managed-key-happy-path/bundle.sigstore.json",
        "sigstore-go-npm-publish-keyed-dsse-v0.1/bundle-publish.json",
    ] {
        let raw: serde_json::Value =
            serde_json::from_slice(&read(&format!("{S04}/{rel}"))).unwrap();
        let log_id = raw["verificationMaterial"]["tlogEntries"][0]["logId"]["keyId"]
            .as_str()
            .map(|k| hex::encode(STANDARD.decode(k).unwrap()))
            .unwrap_or_default();
        let b = bundle(rel);
        let result = b.verify_tlog(std::slice::from_ref(&rekor));
        if log_id == rekor_id {
            let entries = result.unwrap_or_else(|e| panic!("{rel}: {e}"));
            assert_eq!(entries.len(), 1);
            checked += 1;
        } else {
            // Logged by another instance (staging): not trusted, so refused.
            assert!(matches!(result, Err(VerifyError::Tlog(_))), "{rel}");
        }
    }
    assert!(
        checked >= 2,
        "only {checked} bundles from the public-good log"
    );
}

/// A cosign v3 image signature bundle, stored as cosign stores it (referrer manifest with
/// `artifactType` bundle v0.3), verifies through `verify_image`.
#[test]
fn bundle_referrer_verifies_through_verify_image() {
    let raw = read(&format!("{S04}/sigstore-rs-cert-dsse-v0.3/bundle_v03.json"));
    let b = Bundle::parse(&raw).unwrap();
    let ck = b.certificate_key().unwrap();
    let subject =
        Digest::parse("sha256:c811d58de79c92f03214e63aa339484e488d694ae8a6283b5f3f17a9faf50172")
            .unwrap();
    let bundle_digest = Digest::sha256(&raw);
    let m = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "schemaVersion": 2,
        "artifactType": manifest::SIGSTORE_BUNDLE_MEDIA_TYPE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2},
        "layers": [{"mediaType": manifest::SIGSTORE_BUNDLE_MEDIA_TYPE, "digest": bundle_digest.to_string(), "size": raw.len()}],
        "subject": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": subject.to_string(), "size": 1}
    });
    let artifact = SignatureArtifact {
        source: "referrer".into(),
        manifest: serde_json::to_vec(&m).unwrap(),
        blobs: [(bundle_digest, raw.clone())].into(),
    };
    let v = verify_image(
        &subject,
        std::slice::from_ref(&artifact),
        std::slice::from_ref(&ck),
        &Requirements {
            rekor_keys: vec![key(&format!("{S01}/rekor.pub"))],
            ..Requirements::default()
        },
    );
    assert!(v.is_verified(), "{v:#?}");
    assert_eq!(v.verified[0].format, SignatureFormat::SigstoreBundle);
    assert_eq!(v.verified[0].tlog.len(), 1);
    // The referrer of another image is refused, even with a valid bundle.
    let v = verify_image(
        &Digest::sha256(b"x"),
        &[artifact],
        &[ck],
        &Requirements::default(),
    );
    assert!(!v.is_verified());
}
