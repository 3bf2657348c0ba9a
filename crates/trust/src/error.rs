//! Typed errors: one enum for keys, one for verification.

/// Why a key could not be read, written or generated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not PEM, or a PEM label this crate does not read.
    #[error("not a key file this tool reads: {0}")]
    Pem(String),
    /// A key type other than ECDSA P-256, ECDSA P-384 and Ed25519 (for example RSA).
    #[error("unsupported key type: {0} (supported: ECDSA P-256, ECDSA P-384, Ed25519)")]
    Unsupported(String),
    /// The DER structure is malformed.
    #[error("malformed key: {0}")]
    Malformed(String),
    /// The key is encrypted and no password was given.
    #[error("the private key is encrypted: a password is required")]
    PasswordRequired,
    /// The password does not open the key (the secretbox MAC failed).
    #[error("wrong password for the encrypted private key (decryption failed)")]
    WrongPassword,
    /// The encrypted key's JSON envelope is malformed or uses an unknown KDF or cipher.
    #[error("malformed encrypted key envelope: {0}")]
    Envelope(String),
    /// The operating system's random number generator failed.
    #[error("random number generator failed: {0}")]
    Random(String),
}

/// Why a signature did not verify. Every variant is a refusal: nothing here ever means "passed".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The signature is not base64, or not a DER / raw signature of the key's type.
    #[error("signature is malformed: {0}")]
    MalformedSignature(String),
    /// The signature does not verify with the key over the signed bytes.
    #[error(
        "signature does not verify with the given key (wrong key, or the signed bytes were modified)"
    )]
    BadSignature,
    /// The signature does not verify with any of the trusted keys.
    #[error("signature does not verify with any of the {0} trusted key(s)")]
    NoKeyMatched(usize),
    /// The simple-signing payload is not what cosign writes.
    #[error("payload is not a cosign simple-signing payload: {0}")]
    MalformedPayload(String),
    /// The signed payload names another image.
    #[error("the signature is for {found}, not for {expected}")]
    DigestMismatch {
        /// The digest being verified.
        expected: String,
        /// The digest the signed payload names.
        found: String,
    },
    /// A required annotation is missing or different in the signed payload.
    #[error("annotation {key:?}: required {expected:?}, signed payload has {found}")]
    AnnotationMismatch {
        /// Annotation key.
        key: String,
        /// Required value.
        expected: String,
        /// What the payload has (`none` when absent).
        found: String,
    },
    /// A signature manifest is malformed or refers to something else.
    #[error("signature manifest: {0}")]
    MalformedManifest(String),
    /// A blob the signature manifest lists is missing or does not match its descriptor.
    #[error("blob {digest}: {reason}")]
    Blob {
        /// The blob's digest.
        digest: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A Sigstore bundle is malformed or of a kind this verifier does not handle.
    #[error("Sigstore bundle: {0}")]
    MalformedBundle(String),
    /// A transparency-log entry (Rekor SET) does not verify.
    #[error("transparency log entry: {0}")]
    Tlog(String),
}
