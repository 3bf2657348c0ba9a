//! `wharf sign-blob` and `wharf verify-blob`: cosign's blob signatures (base64 DER ECDSA over the
//! SHA-256 of the file), and Sigstore bundles (`--bundle`) made by `cosign sign-blob --bundle`.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use trust::Bundle;

use crate::key;

/// `wharf sign-blob`
#[derive(Args, Debug)]
pub struct SignBlobArgs {
    /// Private key (cosign's encrypted PEM, or unencrypted PKCS#8 / SEC1).
    #[arg(long)]
    key: PathBuf,
    /// Also write the signature to this file.
    #[arg(long)]
    output_signature: Option<PathBuf>,
    #[command(flatten)]
    password: key::PasswordArg,
    /// The file to sign.
    file: PathBuf,
}

/// `wharf verify-blob`
#[derive(Args, Debug)]
pub struct VerifyBlobArgs {
    /// Public key (PKIX PEM), or several to accept any of them.
    #[arg(long, required = true)]
    key: Vec<PathBuf>,
    /// The signature: a file holding the base64 signature, or the base64 itself.
    #[arg(long, conflicts_with = "bundle", required_unless_present = "bundle")]
    signature: Option<String>,
    /// A Sigstore bundle (`cosign sign-blob --bundle`, message signature or DSSE).
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// The signed file.
    file: PathBuf,
}

/// Runs `wharf sign-blob`: prints the base64 signature.
pub fn sign(args: SignBlobArgs) -> anyhow::Result<()> {
    let key = key::load_private(&args.key, args.password)?;
    let data = fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let sig = key.sign_base64(&data);
    if let Some(out) = &args.output_signature {
        fs::write(out, &sig).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("Signature written to {}", out.display());
    }
    println!("{sig}");
    Ok(())
}

/// Runs `wharf verify-blob`: exit status 0 only when the signature verifies.
pub fn verify(args: VerifyBlobArgs) -> anyhow::Result<()> {
    let keys = args
        .key
        .iter()
        .map(|k| key::load_public(k))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let data = fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    if let Some(b) = &args.bundle {
        let raw = fs::read(b).with_context(|| format!("reading {}", b.display()))?;
        let bundle = Bundle::parse(&raw).with_context(|| format!("reading {}", b.display()))?;
        let i = bundle
            .verify_blob(&data, &keys)
            .with_context(|| format!("{}: verification failed", args.file.display()))?;
        eprintln!("Verified OK (bundle, key {})", keys[i].key_id());
        return Ok(());
    }
    let sig = args.signature.as_deref().unwrap_or_default();
    let sig_text = match fs::read_to_string(sig) {
        Ok(t) => t,
        Err(_) if !sig.contains('/') && !sig.ends_with(".sig") => sig.to_owned(),
        Err(e) => bail!("reading the signature {sig}: {e}"),
    };
    let mut last = None;
    for k in &keys {
        match k.verify_base64(&data, &sig_text) {
            Ok(()) => {
                eprintln!("Verified OK (key {})", k.key_id());
                return Ok(());
            }
            Err(e) => last = Some(e),
        }
    }
    let e = last.expect("at least one key");
    bail!("{}: verification failed: {e}", args.file.display())
}
