//! `wharf verify IMAGE --key KEY`: finds the image's signatures in every layout cosign writes
//! (the `sha256-<hex>.sig` tag, OCI 1.1 referrers in the simple-signing form, cosign v3 Sigstore
//! bundle referrers; the referrers tag schema where the registry has no referrers API) and
//! verifies them with `trust::verify_image`. Exit status 0 only when one verifies.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use client::{Client, Descriptor, Digest, ImageRef};
use trust::manifest::{self, SignatureManifest};
use trust::{Requirements, SignatureArtifact, Verdict};

use crate::key;
use crate::sign::{RegistryArgs, fetch_optional, parse_annotation, require_keys};

/// Largest signature payload or bundle read.
const MAX_SIGNATURE_BLOB: u64 = 4 << 20;
/// Most referrers, and most layers of one signature manifest, looked at (a registry cannot make
/// verification fetch without end).
const MAX_CANDIDATES: usize = 256;

use crate::output::Output;

/// `wharf verify`
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The image: `host[:port]/repository[:tag][@digest]`.
    image: String,
    /// Trusted public key (PKIX PEM); repeat to accept any of several.
    #[arg(long, required = true)]
    key: Vec<PathBuf>,
    /// Annotation the signature must carry (repeatable).
    #[arg(short = 'a', long = "annotation", value_name = "KEY=VALUE", value_parser = parse_annotation)]
    annotations: Vec<(String, String)>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Rekor public key: verify the transparency-log promises (SETs) attached to signatures.
    #[arg(long)]
    rekor_key: Vec<PathBuf>,
    /// Refuse signatures without a verified transparency-log promise (needs --rekor-key).
    #[arg(long, requires = "rekor_key")]
    require_tlog: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Runs `wharf verify`.
pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    require_keys(&args.key)?;
    let keys = args
        .key
        .iter()
        .map(|k| key::load_public(k))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let rekor_keys = args
        .rekor_key
        .iter()
        .map(|k| key::load_public(k))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let requirements = Requirements {
        annotations: args.annotations.iter().cloned().collect(),
        rekor_keys,
        require_tlog: args.require_tlog,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (image, verdict, looked) = rt.block_on(async {
        let client = args.registry.client()?;
        let image = ImageRef::parse(&args.image)?;
        let digest = image_digest(&client, &image).await?;
        let (artifacts, looked) = collect(&client, &image, &digest).await?;
        let verdict = trust::verify_image(&digest, &artifacts, &keys, &requirements);
        anyhow::Ok((image, verdict, looked))
    })?;
    report(&image, &verdict, &looked, args.output)?;
    if verdict.is_verified() {
        return Ok(());
    }
    let image = format!("{}@{}", image.name(), verdict.subject);
    match verdict.rejected.first() {
        None => bail!(
            "no signatures found for {image} (looked in: {})",
            looked.join(", ")
        ),
        Some(r) if verdict.rejected.len() == 1 => {
            bail!("no valid signature for {image}: {}: {}", r.source, r.reason)
        }
        Some(_) => bail!(
            "no valid signature for {image}: {} signature(s) rejected (see above)",
            verdict.rejected.len()
        ),
    }
}

/// The digest of the image's manifest, computed from the bytes the registry serves (so a registry
/// that lies in `Docker-Content-Digest` cannot substitute a manifest). For a reference by digest
/// whose manifest is absent, the digest as given (signatures can be checked without the image,
/// as cosign does).
async fn image_digest(client: &Client, image: &ImageRef) -> anyhow::Result<Digest> {
    match client.get_manifest(image).await {
        Ok(m) => Ok(m.digest),
        Err(e) if e.is_not_found() && image.digest().is_some() => {
            eprintln!("note: {image} is not in the registry; verifying signatures for its digest");
            Ok(image.digest().cloned().expect("checked"))
        }
        Err(e) => Err(e).with_context(|| format!("fetching {image}")),
    }
}

/// Fetches every signature manifest (and its blobs) stored for `digest`.
pub(crate) async fn collect(
    client: &Client,
    image: &ImageRef,
    digest: &Digest,
) -> anyhow::Result<(Vec<SignatureArtifact>, Vec<String>)> {
    let repo = image.repo_only();
    let mut artifacts = Vec::new();
    let mut looked = Vec::new();

    // 1. cosign's tag.
    let sig_tag = manifest::signature_tag(digest);
    looked.push(format!("tag {sig_tag}"));
    if let Some(bytes) = fetch_optional(client, &repo.with_tag(&sig_tag)?).await? {
        artifacts.push(artifact(client, &repo, format!("tag {sig_tag}"), bytes).await?);
    }

    // 2. Referrers: the API, else the referrers tag schema.
    let referrers: Vec<Descriptor> = match client.referrers(&repo, digest, None).await? {
        Some(list) => {
            looked.push("referrers API".into());
            list
        }
        None => {
            let tag = manifest::referrers_tag(digest);
            looked.push(format!("referrers tag {tag}"));
            match fetch_optional(client, &repo.with_tag(&tag)?).await? {
                Some(bytes) => {
                    #[derive(serde::Deserialize)]
                    struct Index {
                        #[serde(default)]
                        manifests: Vec<Descriptor>,
                    }
                    serde_json::from_slice::<Index>(&bytes)
                        .with_context(|| format!("the referrers index at tag {tag}"))?
                        .manifests
                }
                None => Vec::new(),
            }
        }
    };
    if referrers.len() > MAX_CANDIDATES {
        eprintln!(
            "warning: {} referrers; looking at the first {MAX_CANDIDATES}",
            referrers.len()
        );
    }
    for d in referrers.into_iter().take(MAX_CANDIDATES) {
        let wanted = match d.artifact_type.as_deref() {
            Some(t) => {
                t == manifest::SIG_ARTIFACT_TYPE
                    || t.starts_with("application/vnd.dev.sigstore.bundle")
            }
            None => true,
        };
        if !wanted || d.media_type != manifest::OCI_MANIFEST_MEDIA_TYPE {
            continue;
        }
        let m = client
            .get_manifest(&repo.with_digest(d.digest.clone()))
            .await
            .with_context(|| format!("fetching the referrer {}", d.digest))?;
        artifacts.push(
            artifact(
                client,
                &repo,
                format!("referrer {}", d.digest),
                m.bytes.to_vec(),
            )
            .await?,
        );
    }
    Ok((artifacts, looked))
}

/// A signature manifest with the blobs its signature layers point to. A blob that cannot be
/// fetched is left out: verification then rejects that signature with the reason.
async fn artifact(
    client: &Client,
    repo: &ImageRef,
    source: String,
    manifest: Vec<u8>,
) -> anyhow::Result<SignatureArtifact> {
    let wanted: Vec<(Digest, i64)> = match SignatureManifest::parse(&manifest) {
        Ok(SignatureManifest::SimpleSigning { layers, .. }) => {
            layers.into_iter().map(|l| (l.digest, l.size)).collect()
        }
        Ok(SignatureManifest::Bundle { layer, .. }) => vec![(layer.digest, layer.size)],
        _ => Vec::new(),
    };
    let mut blobs = BTreeMap::new();
    for (d, size) in wanted.into_iter().take(MAX_CANDIDATES) {
        if size < 0 || size as u64 > MAX_SIGNATURE_BLOB {
            continue;
        }
        match client.get_blob(repo, &d, MAX_SIGNATURE_BLOB).await {
            Ok(b) => {
                blobs.insert(d, b.to_vec());
            }
            Err(e) => eprintln!("warning: {source}: blob {d}: {e}"),
        }
    }
    Ok(SignatureArtifact {
        source,
        manifest,
        blobs,
    })
}

fn report(image: &ImageRef, v: &Verdict, looked: &[String], output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => {
            let out = serde_json::json!({
                "image": image.to_string(),
                "digest": v.subject.to_string(),
                "verified": v.is_verified(),
                "signatures": v.verified,
                "rejected": v.rejected,
                "searched": looked,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Output::Table => {
            println!("Verification for {}@{}:", image.name(), v.subject);
            for s in &v.verified {
                let mut line = format!(
                    "  OK        {}: {} signature, key {}",
                    s.source, s.format, s.key_id
                );
                if let Some(id) = &s.identity {
                    line.push_str(&format!(", identity {id}"));
                }
                if !s.annotations.is_empty() {
                    let a: Vec<String> = s
                        .annotations
                        .iter()
                        .map(|(k, v)| match v {
                            serde_json::Value::String(s) => format!("{k}={s}"),
                            other => format!("{k}={other}"),
                        })
                        .collect();
                    line.push_str(&format!(", annotations {}", a.join(" ")));
                }
                for t in &s.tlog {
                    line.push_str(&format!(
                        ", logged at index {} ({})",
                        t.log_index, t.integrated_time
                    ));
                }
                println!("{line}");
            }
            for r in &v.rejected {
                println!("  REJECTED  {}: {}", r.source, r.reason);
            }
            if v.verified.is_empty() && v.rejected.is_empty() {
                println!("  no signatures (looked in: {})", looked.join(", "));
            }
        }
    }
    Ok(())
}
