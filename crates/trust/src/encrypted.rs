//! cosign's encrypted private keys.
//!
//! A PEM block labelled `ENCRYPTED SIGSTORE PRIVATE KEY` (current cosign) or
//! `ENCRYPTED COSIGN PRIVATE KEY` (older releases) whose body is a JSON envelope, written compactly
//! with its fields in this order (byte-for-byte what cosign writes, `[]byte` values as padded
//! standard base64):
//!
//! ```json
//! {"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"<32 bytes>"},
//!  "cipher":{"name":"nacl/secretbox","nonce":"<24 bytes>"},"ciphertext":"<...>"}
//! ```
//!
//! The 32-byte key is `scrypt(password, salt, N, r, p)`; the ciphertext is NaCl `secretbox`
//! (XSalsa20-Poly1305: 16-byte tag, then the encrypted bytes) of the PKCS#8 DER private key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pkcs8::der::pem::LineEnding;
use poly1305::Poly1305;
use poly1305::universal_hash::KeyInit as _;
use salsa20::XSalsa20;
use salsa20::cipher::{KeyIvInit as _, StreamCipher as _};
use subtle::ConstantTimeEq as _;
use zeroize::{Zeroize as _, Zeroizing};

use crate::error::KeyError;

/// The PEM label current cosign writes.
pub const LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The PEM label older cosign releases wrote (still read).
pub const LEGACY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// Both labels.
pub const LABELS: [&str; 2] = [LABEL, LEGACY_LABEL];
/// scrypt cost written by default: N = 2^16 = 65536 (r = 8, p = 1), as current cosign.
pub const DEFAULT_LOG_N: u8 = 16;
/// Highest scrypt cost accepted when reading (N = 2^20, 1 GiB of memory): refuses files that
/// would exhaust memory.
pub const MAX_LOG_N: u8 = 20;

/// The envelope as JSON (field order is cosign's).
#[derive(serde::Serialize, serde::Deserialize)]
struct Json {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Kdf {
    name: String,
    params: Params,
    salt: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[allow(non_snake_case)]
struct Params {
    N: u64,
    r: u32,
    p: u32,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// Most memory scrypt may use when reading a key: `128 * r * N` bytes, 1 GiB (N = 2^20 at
/// cosign's r = 8). Refuses files that would exhaust memory whatever the split between N and r.
pub const MAX_SCRYPT_MEMORY: u64 = 1 << 30;

/// A parsed and checked envelope: everything short of the (deliberately slow) key derivation, so
/// that its cost is known before paying it ([`Envelope::scrypt_memory`]).
pub struct Envelope {
    log_n: u8,
    r: u32,
    salt: Vec<u8>,
    nonce: [u8; 24],
    /// Tag ‖ encrypted bytes (at least 16 bytes).
    sealed: Vec<u8>,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("log_n", &self.log_n)
            .field("r", &self.r)
            .field("ciphertext_len", &self.sealed.len())
            .finish_non_exhaustive()
    }
}

impl Envelope {
    /// Reads an encrypted cosign key PEM (either label) into its envelope.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let (label, body) = crate::pem::pem_decode(pem)?;
        if !LABELS.contains(&label.as_str()) {
            return Err(KeyError::Pem(format!(
                "expected \"{LABEL}\", found \"{label}\""
            )));
        }
        Self::parse(&body)
    }

    /// Parses the JSON envelope (the PEM body) and checks its algorithms, scrypt parameters and
    /// field sizes.
    pub fn parse(body: &[u8]) -> Result<Self, KeyError> {
        let env: Json = serde_json::from_slice(body)
            .map_err(|e| KeyError::Envelope(format!("not the JSON cosign writes: {e}")))?;
        if env.kdf.name != "scrypt" {
            return Err(KeyError::Envelope(format!(
                "unsupported KDF {:?}",
                env.kdf.name
            )));
        }
        if env.cipher.name != "nacl/secretbox" {
            return Err(KeyError::Envelope(format!(
                "unsupported cipher {:?}",
                env.cipher.name
            )));
        }
        let n = env.kdf.params.N;
        if !n.is_power_of_two() || n < 2 {
            return Err(KeyError::Envelope(format!(
                "scrypt N={n} is not a power of two"
            )));
        }
        let log_n = n.trailing_zeros() as u8;
        let (r, p) = (env.kdf.params.r, env.kdf.params.p);
        if log_n > MAX_LOG_N
            || r == 0
            || r > 32
            || p != 1
            || scrypt_memory(log_n, r) > MAX_SCRYPT_MEMORY
        {
            return Err(KeyError::Envelope(format!(
                "scrypt parameters N={n} r={r} p={p} are outside what this tool accepts"
            )));
        }
        let b64 = |what: &str, s: &str| {
            STANDARD
                .decode(s)
                .map_err(|e| KeyError::Envelope(format!("{what} is not base64: {e}")))
        };
        let salt = b64("salt", &env.kdf.salt)?;
        let nonce = b64("nonce", &env.cipher.nonce)?;
        let nonce: [u8; 24] = nonce
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Envelope(format!("nonce is {} bytes, not 24", nonce.len())))?;
        let sealed = b64("ciphertext", &env.ciphertext)?;
        if sealed.len() < 16 {
            return Err(KeyError::Envelope("ciphertext shorter than its tag".into()));
        }
        Ok(Envelope {
            log_n,
            r,
            salt,
            nonce,
            sealed,
        })
    }

    /// Bytes of memory the key derivation takes (`128 * r * N`); its time grows with it.
    pub fn scrypt_memory(&self) -> u64 {
        scrypt_memory(self.log_n, self.r)
    }

    /// Derives the key from `password` and opens the box: the PKCS#8 DER private key. A wrong
    /// password (or tampered bytes) is [`KeyError::WrongPassword`].
    pub fn decrypt(&self, password: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let key = derive_key(password, &self.salt, self.log_n, self.r)?;
        secretbox_open(&key, &self.nonce, &self.sealed)
    }
}

fn scrypt_memory(log_n: u8, r: u32) -> u64 {
    (128 * u64::from(r)) << log_n
}

/// Decrypts an encrypted cosign key PEM to its PKCS#8 DER bytes.
pub fn decrypt_pem(pem: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    Envelope::from_pem(pem)?.decrypt(password)
}

/// Decrypts the JSON envelope (the PEM body) to PKCS#8 DER bytes.
pub fn decrypt_envelope(body: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    Envelope::parse(body)?.decrypt(password)
}

/// Encrypts PKCS#8 DER bytes into cosign's PEM (`N = 2^log_n`, r = 8, p = 1, fresh salt and
/// nonce from the operating system's generator).
pub fn encrypt_pem(
    pkcs8_der: &[u8],
    password: &[u8],
    log_n: u8,
) -> Result<Zeroizing<String>, KeyError> {
    let mut salt = [0u8; 32];
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut salt).map_err(|e| KeyError::Random(e.to_string()))?;
    getrandom::fill(&mut nonce).map_err(|e| KeyError::Random(e.to_string()))?;
    let key = derive_key(password, &salt, log_n, 8)?;
    let ciphertext = secretbox_seal(&key, &nonce, pkcs8_der);
    let env = Json {
        kdf: Kdf {
            name: "scrypt".into(),
            params: Params {
                N: 1u64 << log_n,
                r: 8,
                p: 1,
            },
            salt: STANDARD.encode(salt),
        },
        cipher: Cipher {
            name: "nacl/secretbox".into(),
            nonce: STANDARD.encode(nonce),
        },
        ciphertext: STANDARD.encode(&ciphertext),
    };
    let json = serde_json::to_vec(&env).expect("serializing the envelope cannot fail");
    let pem = pem_rfc7468::encode_string(LABEL, LineEnding::LF, &json)
        .map_err(|e| KeyError::Envelope(format!("PEM encoding: {e}")))?;
    Ok(Zeroizing::new(pem))
}

fn derive_key(
    password: &[u8],
    salt: &[u8],
    log_n: u8,
    r: u32,
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let params = scrypt::Params::new(log_n, r, 1)
        .map_err(|e| KeyError::Envelope(format!("scrypt parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, salt, &params, key.as_mut())
        .map_err(|e| KeyError::Envelope(format!("scrypt: {e}")))?;
    Ok(key)
}

/// NaCl `crypto_secretbox` (XSalsa20-Poly1305): returns tag ‖ ciphertext.
pub(crate) fn secretbox_seal(key: &[u8; 32], nonce: &[u8; 24], plaintext: &[u8]) -> Vec<u8> {
    // The first 32 bytes of the keystream are the one-time Poly1305 key; the message is
    // encrypted with the keystream that follows.
    let mut buf = Zeroizing::new(vec![0u8; 32 + plaintext.len()]);
    buf[32..].copy_from_slice(plaintext);
    let mut cipher = XSalsa20::new(key.into(), nonce.into());
    cipher.apply_keystream(&mut buf);
    let tag = Poly1305::new_from_slice(&buf[..32])
        .expect("32-byte key")
        .compute_unpadded(&buf[32..]);
    let mut out = Vec::with_capacity(16 + plaintext.len());
    out.extend_from_slice(&tag);
    out.extend_from_slice(&buf[32..]);
    out
}

/// Opens a NaCl `crypto_secretbox`; a bad tag is [`KeyError::WrongPassword`].
pub(crate) fn secretbox_open(
    key: &[u8; 32],
    nonce: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let nonce: &[u8; 24] = nonce
        .try_into()
        .map_err(|_| KeyError::Envelope(format!("nonce is {} bytes, not 24", nonce.len())))?;
    if sealed.len() < 16 {
        return Err(KeyError::Envelope("ciphertext shorter than its tag".into()));
    }
    let (tag, ciphertext) = sealed.split_at(16);
    let mut buf = Zeroizing::new(vec![0u8; 32 + ciphertext.len()]);
    buf[32..].copy_from_slice(ciphertext);
    let mut cipher = XSalsa20::new(key.into(), nonce.into());
    cipher.apply_keystream(&mut buf[..32]);
    let expected = Poly1305::new_from_slice(&buf[..32])
        .expect("32-byte key")
        .compute_unpadded(ciphertext);
    if !bool::from(expected.as_slice().ct_eq(tag)) {
        return Err(KeyError::WrongPassword);
    }
    cipher.apply_keystream(&mut buf[32..]);
    let mut plain = Zeroizing::new(buf[32..].to_vec());
    buf.zeroize();
    plain.shrink_to_fit();
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secretbox_round_trip_and_tamper() {
        let key = [7u8; 32];
        let nonce = [9u8; 24];
        let sealed = secretbox_seal(&key, &nonce, b"attack at dawn");
        assert_eq!(sealed.len(), 16 + 14);
        assert_eq!(
            &secretbox_open(&key, &nonce, &sealed).unwrap()[..],
            b"attack at dawn"
        );
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(matches!(
            secretbox_open(&key, &nonce, &bad),
            Err(KeyError::WrongPassword)
        ));
        assert!(matches!(
            secretbox_open(&[8u8; 32], &nonce, &sealed),
            Err(KeyError::WrongPassword)
        ));
    }

    fn envelope(n: u64, r: u32) -> String {
        format!(
            r#"{{"kdf":{{"name":"scrypt","params":{{"N":{n},"r":{r},"p":1}},"salt":"AAAA"}},"cipher":{{"name":"nacl/secretbox","nonce":"{}"}},"ciphertext":"{}"}}"#,
            STANDARD.encode([0u8; 24]),
            STANDARD.encode([0u8; 16]),
        )
    }

    /// N = 2^20 with r = 32 is 4 GiB of scrypt memory: refused when parsed, before any
    /// derivation (r alone and N alone were bounded, not their product).
    #[test]
    fn refuses_scrypt_memory_above_the_cap() {
        let e = Envelope::parse(envelope(1 << 20, 32).as_bytes()).unwrap_err();
        assert!(matches!(e, KeyError::Envelope(m) if m.contains("r=32")));
        let e = Envelope::parse(envelope(1 << 18, 32).as_bytes()).unwrap();
        assert_eq!(e.scrypt_memory(), MAX_SCRYPT_MEMORY);
        let e = Envelope::parse(envelope(1 << 20, 8).as_bytes()).unwrap();
        assert_eq!(e.scrypt_memory(), MAX_SCRYPT_MEMORY);
    }

    #[test]
    fn envelope_checks_sizes_before_deriving() {
        let bad_nonce = envelope(1 << 20, 8).replace(&STANDARD.encode([0u8; 24]), "AAAA");
        assert!(matches!(
            Envelope::parse(bad_nonce.as_bytes()),
            Err(KeyError::Envelope(m)) if m.contains("nonce is 3 bytes")
        ));
        let short = envelope(1 << 20, 8).replace(&STANDARD.encode([0u8; 16]), "AAAA");
        assert!(matches!(
            Envelope::parse(short.as_bytes()),
            Err(KeyError::Envelope(m)) if m.contains("shorter than its tag")
        ));
    }

    #[test]
    fn cheap_envelope_round_trips() {
        let pem = encrypt_pem(b"not really a key", b"pw", 4).unwrap();
        let env = Envelope::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(env.scrypt_memory(), 128 * 8 * 16);
        assert_eq!(&env.decrypt(b"pw").unwrap()[..], b"not really a key");
        assert!(matches!(env.decrypt(b"pW"), Err(KeyError::WrongPassword)));
    }
}
