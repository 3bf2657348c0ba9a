//! Signing and verification in cosign's formats, byte for byte. Pure: no I/O, no network.
//!
//! # API summary
//!
//! - Keys ([`keys`]): [`PrivateKey::generate`] (ECDSA P-256, P-384, Ed25519),
//!   [`PrivateKey::from_pem`] reads cosign's encrypted keys (`ENCRYPTED SIGSTORE PRIVATE KEY`,
//!   and the older `ENCRYPTED COSIGN PRIVATE KEY`) as well as unencrypted PKCS#8 and SEC1 keys;
//!   [`PrivateKey::to_encrypted_pem`] writes cosign's envelope (scrypt + NaCl secretbox, see
//!   [`encrypted`]); [`PublicKey::from_pem`] / [`PublicKey::to_pem`] read and write PKIX
//!   `PUBLIC KEY` PEM. Signatures are cosign's: DER ECDSA over SHA-256, or Ed25519.
//!   Key material is zeroized on drop and never printed.
//! - Blobs: [`PrivateKey::sign_base64`] and [`PublicKey::verify_base64`] are `cosign sign-blob`
//!   and `cosign verify-blob`; [`Bundle::verify_blob`] checks `--bundle` files.
//! - Image signatures: [`sign_image`] builds the simple-signing payload ([`payload`]) and signs
//!   it; [`manifest::tag_signature_image`] appends it to the `sha256-<hex>.sig` manifest;
//!   [`manifest::referrer_signature_image`] makes the OCI 1.1 referrer form;
//!   [`manifest::add_to_referrers_index`] maintains the referrers tag schema for registries
//!   without the referrers API.
//! - Verification: [`verify_image`] is a pure function from (image digest, signature manifests
//!   with their blobs, trusted keys, [`Requirements`]) to a [`Verdict`] listing the signatures
//!   that verified and why the others were rejected. It reads every layout cosign writes: the
//!   `.sig` tag, the OCI 1.1 referrer form, and cosign v3 Sigstore bundles (DSSE, in-toto), and
//!   checks Rekor signed entry timestamps offline when given Rekor's key ([`rekor`]).

pub mod bundle;
pub mod encrypted;
mod error;
pub mod keys;
pub mod manifest;
pub mod payload;
mod pem;
pub mod rekor;
mod verify;

pub use bundle::{Bundle, BundleContent, Statement};
pub use error::{KeyError, VerifyError};
pub use keys::{KeyAlgorithm, PrivateKey, PublicKey};
pub use manifest::{SignatureImage, SignatureLayer, SignatureManifest};
pub use oci::Digest;
pub use verify::{
    Rejection, Requirements, SignatureArtifact, SignatureFormat, Verdict, VerifiedSignature,
    sign_image, verify_image,
};
