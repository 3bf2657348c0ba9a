//! Invariants of trust's key readers on arbitrary bytes: PEM (public, PKCS#8, SEC1, cosign's
//! encrypted envelope) and DER (SPKI, PKCS#8, SEC1) give `Ok` or `Err`, never a panic; a key that
//! is read writes back to a key that reads as the same key, and signs what it verifies; an
//! envelope is checked before its scrypt cost is paid (only cheap ones are decrypted here), and
//! encrypting any bytes decrypts to the same bytes with the password and to `WrongPassword`
//! without it.
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/trust_keys.rs`) and the seed-corpus test of the
//! crate (`crates/trust/tests/fuzz_corpus.rs`).

use trust::encrypted::{self, Envelope};
use trust::{KeyError, PrivateKey, PublicKey};

/// Envelopes dearer than this (128 * r * N bytes of scrypt) are parsed but not decrypted: the
/// real cost (64 MiB at cosign's N = 2^16) would turn the fuzzer into a scrypt benchmark.
const CHEAP_SCRYPT: u64 = 1 << 20;

/// The password of the seed corpus' cheap encrypted keys (and of sigstore-rs' example key).
const PASSWORD: &[u8] = b"password";

fn public_round_trip(k: &PublicKey, data: &[u8]) {
    assert_eq!(&PublicKey::from_pem(&k.to_pem()).unwrap(), k);
    assert_eq!(&PublicKey::from_spki_der(&k.to_spki_der()).unwrap(), k);
    assert!(k.key_id().starts_with("sha256:"));
    // Arbitrary bytes as a signature: refused, never a panic.
    assert!(k.verify(b"message", data).is_err());
    let _ = k.verify_base64(b"message", &String::from_utf8_lossy(data));
}

fn private_round_trip(k: &PrivateKey, data: &[u8]) {
    let public = k.public_key();
    let again = PrivateKey::from_pkcs8_der(&k.to_pkcs8_der()).unwrap();
    assert_eq!(again.public_key(), public);
    assert_eq!(again.algorithm(), k.algorithm());
    let sig = k.sign(data);
    public.verify(data, &sig).unwrap();
    public_round_trip(&public, data);
}

/// Runs every invariant on one input; panics when one does not hold.
pub fn check(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(k) = PublicKey::from_pem(text)
    {
        public_round_trip(&k, data);
    }
    if let Ok(k) = PublicKey::from_spki_der(data) {
        public_round_trip(&k, data);
    }
    for k in [
        PrivateKey::from_pkcs8_der(data),
        PrivateKey::from_sec1_der(data),
        PrivateKey::from_pem(data, None),
    ]
    .into_iter()
    .flatten()
    {
        private_round_trip(&k, data);
    }

    // The envelope, as a PEM and as a bare JSON body; decrypted only when cheap.
    let pem = Envelope::from_pem(data);
    for env in [&pem, &Envelope::parse(data)].into_iter().flatten() {
        if env.scrypt_memory() <= CHEAP_SCRYPT {
            match env.decrypt(PASSWORD) {
                Ok(der) => {
                    if let Ok(k) = PrivateKey::from_pkcs8_der(&der) {
                        private_round_trip(&k, data);
                    }
                }
                Err(e) => assert!(matches!(e, KeyError::WrongPassword | KeyError::Envelope(_))),
            }
        }
    }
    match &pem {
        Ok(env) if env.scrypt_memory() > CHEAP_SCRYPT => {}
        Err(KeyError::Pem(_)) => {}
        _ => {
            if let Ok(k) = PrivateKey::from_pem(data, Some(PASSWORD)) {
                private_round_trip(&k, data);
            }
        }
    }

    // Any bytes through the envelope and back (N = 2, the cheapest scrypt).
    let sealed = encrypted::encrypt_pem(data, PASSWORD, 1).unwrap();
    let env = Envelope::from_pem(sealed.as_bytes()).unwrap();
    assert_eq!(env.scrypt_memory(), 128 * 8 * 2);
    assert_eq!(&env.decrypt(PASSWORD).unwrap()[..], data);
    assert!(matches!(env.decrypt(data), Err(KeyError::WrongPassword)) || data == PASSWORD);
}
