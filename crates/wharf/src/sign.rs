//! `wharf sign IMAGE --key KEY`: signs an image as `cosign sign --key` does and stores the
//! signature where cosign does (the `sha256-<hex>.sig` tag, appending), or as an OCI 1.1 referrer
//! (`--referrer`, with the referrers tag schema on registries without the referrers API).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Args;
use client::{Client, ClientConfig, CredentialStore, ImageRef};
use trust::manifest::{self, SIG_ARTIFACT_TYPE, SignatureImage};

use crate::key;

/// Registry access options shared by `sign` and `verify`.
#[derive(Args, Debug, Clone, Default)]
pub struct RegistryArgs {
    /// Reach this registry (`host[:port]`) over plain HTTP. Loopback registries always are.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
}

impl RegistryArgs {
    /// A client with credentials from the docker / containers auth files.
    pub fn client(&self) -> anyhow::Result<Client> {
        let credentials = CredentialStore::from_env().context("reading registry credentials")?;
        for w in credentials.warnings() {
            eprintln!("warning: {w}");
        }
        let mut config = ClientConfig::default().with_credentials(credentials);
        for r in &self.insecure_registry {
            config = config.insecure_registry(r.clone());
        }
        Client::new(config).context("setting up the registry client")
    }
}

/// Parses `key=value`.
pub fn parse_annotation(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not key=value")),
    }
}

/// `wharf sign`
#[derive(Args, Debug)]
pub struct SignArgs {
    /// The image: `host[:port]/repository[:tag][@digest]` (a tag is resolved to its digest first).
    image: String,
    /// Private key (cosign's encrypted PEM, or unencrypted PKCS#8 / SEC1).
    #[arg(long)]
    key: PathBuf,
    /// Annotation to sign into the payload's `optional` section (repeatable).
    #[arg(short = 'a', long = "annotation", value_name = "KEY=VALUE", value_parser = parse_annotation)]
    annotations: Vec<(String, String)>,
    /// Store the signature as an OCI 1.1 referrer of the image instead of at the `.sig` tag.
    #[arg(long)]
    referrer: bool,
    #[command(flatten)]
    password: key::PasswordArg,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Runs `wharf sign`.
pub fn run(args: SignArgs) -> anyhow::Result<()> {
    let key = key::load_private(&args.key, args.password)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(sign(args, key))
}

async fn sign(args: SignArgs, key: trust::PrivateKey) -> anyhow::Result<()> {
    let client = args.registry.client()?;
    let image = ImageRef::parse(&args.image)?;
    let resolved = client
        .resolve(&image)
        .await
        .with_context(|| format!("resolving {image}"))?;
    let digest = resolved.digest.clone();
    let annotations: BTreeMap<String, String> = args.annotations.into_iter().collect();
    let docker_reference = image.ggcr_name();
    let layer = trust::sign_image(&key, &docker_reference, &digest, &annotations);
    let repo = image.repo_only();

    if args.referrer {
        let sig = manifest::referrer_signature_image(&resolved.descriptor(), &layer);
        push_blobs(&client, &repo, &sig).await?;
        let target = repo.with_digest(sig.digest());
        let pushed = client
            .push_manifest(&target, sig.media_type, Bytes::from(sig.manifest.clone()))
            .await
            .with_context(|| format!("pushing the signature {target}"))?;
        if !pushed.subject_processed {
            // No referrers API: maintain the referrers tag schema (sha256-<hex> index).
            let index_ref = repo.with_tag(&manifest::referrers_tag(&digest))?;
            let existing = fetch_optional(&client, &index_ref).await?;
            let index = manifest::add_to_referrers_index(
                existing.as_deref(),
                &sig.descriptor(Some(SIG_ARTIFACT_TYPE)),
            )?;
            client
                .push_manifest(
                    &index_ref,
                    manifest::OCI_INDEX_MEDIA_TYPE,
                    Bytes::from(index),
                )
                .await
                .with_context(|| format!("updating the referrers index {index_ref}"))?;
            eprintln!(
                "The registry has no referrers API: listed the signature in {index_ref} \
                 (OCI referrers tag schema)"
            );
        }
        eprintln!("Signed {}@{digest} as a referrer: {}", image.name(), target);
        println!("{}", sig.digest());
        return Ok(());
    }

    let sig_ref = repo.with_tag(&manifest::signature_tag(&digest))?;
    let existing = fetch_optional(&client, &sig_ref).await?;
    let sig = manifest::tag_signature_image(existing.as_deref(), &layer)
        .with_context(|| format!("reading the existing signatures at {sig_ref}"))?;
    if !sig.changed {
        eprintln!(
            "{}@{digest} already has this signature at {sig_ref}",
            image.name()
        );
        println!("{}", sig.digest());
        return Ok(());
    }
    push_blobs(&client, &repo, &sig).await?;
    client
        .push_manifest(&sig_ref, sig.media_type, Bytes::from(sig.manifest.clone()))
        .await
        .with_context(|| format!("pushing the signature to {sig_ref}"))?;
    eprintln!(
        "Signed {}@{digest}: signature pushed to {sig_ref}",
        image.name()
    );
    println!("{}", sig.digest());
    Ok(())
}

async fn push_blobs(client: &Client, repo: &ImageRef, sig: &SignatureImage) -> anyhow::Result<()> {
    for b in &sig.blobs {
        client
            .push_blob(repo, Bytes::from(b.clone()))
            .await
            .with_context(|| format!("pushing a signature blob to {}", repo.name()))?;
    }
    Ok(())
}

/// The manifest at `image`, or None when there is none.
pub async fn fetch_optional(client: &Client, image: &ImageRef) -> anyhow::Result<Option<Vec<u8>>> {
    match client.get_manifest(image).await {
        Ok(m) => Ok(Some(m.bytes.to_vec())),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {image}")),
    }
}

/// Refuses an empty key list with a clear message.
pub fn require_keys<T>(keys: &[T]) -> anyhow::Result<()> {
    if keys.is_empty() {
        bail!("no --key given");
    }
    Ok(())
}
