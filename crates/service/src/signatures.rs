//! Signatures in the registry: which signatures an image has and which trusted keys verified
//! them, and the rule that makes pulls of matching repositories require a verified signature.
//!
//! Verification itself is `trust::verify_image` (pure); this module gathers the artifacts from
//! storage (the cosign `.sig` tag and the OCI 1.1 referrers), caches verdicts, and decides pulls.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use auth::Pattern;
use oci::{Digest, Manifest, Reference};
use store::{BlobStore, MetaStore, StoreError};
use trust::{PublicKey, SignatureArtifact, Verdict};

/// Largest signature payload or bundle blob read (they are a few KiB).
const MAX_SIGNATURE_BLOB: u64 = 1 << 20;
/// Most referrers looked at per image.
const MAX_REFERRERS: usize = 64;
/// Verdicts kept in memory.
const CACHE_CAP: usize = 8192;

/// A trusted key with the name an operator gave it.
pub struct TrustedKey {
    /// Name in configuration and reports.
    pub name: String,
    /// The key.
    pub key: PublicKey,
}

/// Pulls of repositories matching `repos` need a signature verified by one of `keys` (all
/// trusted keys when empty).
pub struct RequireRule {
    /// Repository pattern.
    pub repos: Pattern,
    /// Names of the trusted keys that count.
    pub keys: Vec<String>,
}

/// A cached verdict's key: repository, image digest, indices of the keys checked.
type VerdictKey = (String, Digest, Vec<usize>);

/// Trusted keys, rules, and a cache of verdicts.
pub struct SigningPolicy {
    keys: Vec<TrustedKey>,
    rules: Vec<RequireRule>,
    /// Verdicts with the repository's write generation ([`MetaStore::generation`]) they were
    /// computed at: any later write to the repository, by whatever path, makes them stale.
    cache: Mutex<HashMap<VerdictKey, (u64, std::sync::Arc<Verdict>)>>,
}

/// Whether a manifest is itself a signature or attestation, which stays pullable so that
/// clients can verify images.
fn is_signature_artifact(tag: Option<&str>, m: &Manifest) -> bool {
    if tag.is_some_and(|t| t.ends_with(".sig") || t.ends_with(".att") || t.ends_with(".sbom")) {
        return true;
    }
    m.subject.is_some()
        || m.layers.iter().any(|l| {
            l.media_type.starts_with("application/vnd.dev.cosign")
                || l.media_type.starts_with("application/vnd.dev.sigstore")
        })
        || m.artifact_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/vnd.dev.sigstore"))
}

impl SigningPolicy {
    /// Builds a policy.
    pub fn new(keys: Vec<TrustedKey>, rules: Vec<RequireRule>) -> Self {
        SigningPolicy {
            keys,
            rules,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The trusted keys.
    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// Indices of the keys that count for `repo`, or `None` when pulls there are not restricted.
    fn required_keys(&self, repo: &str) -> Option<Vec<usize>> {
        let rule = self.rules.iter().find(|r| r.repos.matches(repo))?;
        Some(
            self.keys
                .iter()
                .enumerate()
                .filter(|(_, k)| rule.keys.is_empty() || rule.keys.contains(&k.name))
                .map(|(i, _)| i)
                .collect(),
        )
    }

    /// Gathers the signature artifacts of `digest` in `repo` as stored: the `.sig` tag and the
    /// referrers (the admission webhook verifies them with its own keys).
    pub async fn artifacts(
        meta: &dyn MetaStore,
        blobs: &dyn BlobStore,
        repo: &str,
        digest: &Digest,
    ) -> Result<Vec<SignatureArtifact>, StoreError> {
        let mut manifests = Vec::new();
        let tag = Reference::Tag(trust::manifest::signature_tag(digest));
        if let Some(m) = meta.get_manifest(repo, &tag).await? {
            manifests.push((
                format!("tag {}", trust::manifest::signature_tag(digest)),
                m.body,
            ));
        }
        for d in meta
            .referrers(repo, digest)
            .await?
            .into_iter()
            .take(MAX_REFERRERS)
        {
            if let Some(m) = meta
                .get_manifest(repo, &Reference::Digest(d.digest.clone()))
                .await?
            {
                manifests.push((format!("referrer {}", d.digest), m.body));
            }
        }
        let mut out = Vec::new();
        for (source, body) in manifests {
            let Ok(parsed) = Manifest::parse(None, &body) else {
                continue;
            };
            let mut found = BTreeMap::new();
            for l in &parsed.layers {
                let size = u64::try_from(l.size).unwrap_or(u64::MAX);
                if size > MAX_SIGNATURE_BLOB || meta.blob_linked(repo, &l.digest).await?.is_none() {
                    continue;
                }
                let mut stream = blobs.get(&l.digest, 0, size).await?;
                let mut bytes = Vec::with_capacity(size as usize);
                while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
                    bytes.extend_from_slice(&chunk?);
                }
                found.insert(l.digest.clone(), bytes);
            }
            out.push(SignatureArtifact {
                source,
                manifest: body.to_vec(),
                blobs: found,
            });
        }
        Ok(out)
    }

    /// The verdict for `digest` in `repo` against the keys at `key_indices` (cached).
    pub async fn verdict(
        &self,
        meta: &dyn MetaStore,
        blobs: &dyn BlobStore,
        repo: &str,
        digest: &Digest,
        key_indices: &[usize],
    ) -> Result<std::sync::Arc<Verdict>, StoreError> {
        // Read before the artifacts: a write committed meanwhile moves the generation past it.
        let generation = meta.generation(repo);
        let cache_key = (repo.to_owned(), digest.clone(), key_indices.to_vec());
        if let Some((g, v)) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cache_key)
            && *g == generation
        {
            return Ok(v.clone());
        }
        let artifacts = Self::artifacts(meta, blobs, repo, digest).await?;
        let keys: Vec<PublicKey> = key_indices
            .iter()
            .map(|&i| self.keys[i].key.clone())
            .collect();
        let mut verdict =
            trust::verify_image(digest, &artifacts, &keys, &trust::Requirements::default());
        // Report key positions in the policy's own list, not in the subset.
        for v in &mut verdict.verified {
            v.key_index = key_indices[v.key_index];
        }
        let verdict = std::sync::Arc::new(verdict);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CAP {
            cache.clear();
        }
        cache.insert(cache_key, (generation, verdict.clone()));
        Ok(verdict)
    }

    /// The verdict against every trusted key (for reports).
    pub async fn report(
        &self,
        meta: &dyn MetaStore,
        blobs: &dyn BlobStore,
        repo: &str,
        digest: &Digest,
    ) -> Result<std::sync::Arc<Verdict>, StoreError> {
        let all: Vec<usize> = (0..self.keys.len()).collect();
        self.verdict(meta, blobs, repo, digest, &all).await
    }

    /// Decides a manifest pull: `Ok(())`, or the reason it is refused.
    pub async fn check_pull(
        &self,
        meta: &dyn MetaStore,
        blobs: &dyn BlobStore,
        repo: &str,
        tag: Option<&str>,
        digest: &Digest,
        body: &[u8],
    ) -> Result<Result<(), String>, StoreError> {
        let Some(keys) = self.required_keys(repo) else {
            return Ok(Ok(()));
        };
        if let Ok(m) = Manifest::parse(None, body)
            && is_signature_artifact(tag, &m)
        {
            return Ok(Ok(()));
        }
        if keys.is_empty() {
            return Ok(Err(format!(
                "{repo} requires signed images but no trusted key applies"
            )));
        }
        let own = self.verdict(meta, blobs, repo, digest, &keys).await?;
        if own.is_verified() {
            return Ok(Ok(()));
        }
        // A platform manifest is covered by a signed index that lists it.
        for parent in meta.parents(repo, digest).await? {
            if self
                .verdict(meta, blobs, repo, &parent, &keys)
                .await?
                .is_verified()
            {
                return Ok(Ok(()));
            }
        }
        let names: Vec<&str> = keys.iter().map(|&i| self.keys[i].name.as_str()).collect();
        let why = if own.rejected.is_empty() {
            "it has no signature".to_owned()
        } else {
            own.rejected
                .iter()
                .map(|r| format!("{}: {}", r.source, r.reason))
                .collect::<Vec<_>>()
                .join("; ")
        };
        Ok(Err(format!(
            "{repo}@{digest} has no signature verified by a trusted key ({}): {why}",
            names.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use bytes::Bytes;
    use oci::{Digest, Manifest};
    use store::{BlobStore, FsBlobStore, ManifestRecord, MetaStore, RedbMetaStore};
    use trust::{KeyAlgorithm, PrivateKey};

    use super::{RequireRule, SigningPolicy, TrustedKey};

    const REPO: &str = "prod/app";

    struct Fixture {
        _dir: tempfile::TempDir,
        meta: Arc<RedbMetaStore>,
        blobs: Arc<FsBlobStore>,
        key: PrivateKey,
        policy: SigningPolicy,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(RedbMetaStore::open(&dir.path().join("meta.redb")).unwrap());
        let blobs = Arc::new(FsBlobStore::open(dir.path().join("blobs")).unwrap());
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let policy = SigningPolicy::new(
            vec![TrustedKey {
                name: "release".into(),
                key: key.public_key(),
            }],
            vec![RequireRule {
                repos: auth::Pattern::new("prod/*").unwrap(),
                keys: vec![],
            }],
        );
        Fixture {
            _dir: dir,
            meta,
            blobs,
            key,
            policy,
        }
    }

    /// Stores `bytes` as a blob (not linked anywhere).
    async fn put_blob(blobs: &FsBlobStore, bytes: &[u8]) -> Digest {
        let d = Digest::sha256(bytes);
        let id = uuid::Uuid::new_v4().simple().to_string();
        blobs.upload_create(&id).await.unwrap();
        let body = Bytes::copy_from_slice(bytes);
        let stream = Box::pin(futures_util::stream::once(async move { Ok(body) }));
        blobs.upload_append(&id, None, None, stream).await.unwrap();
        blobs.upload_commit(&id, &d).await.unwrap();
        d
    }

    fn record(body: Vec<u8>) -> ManifestRecord {
        let digest = Digest::sha256(&body);
        let m = Manifest::parse(None, &body).unwrap();
        ManifestRecord::from_manifest(digest, body.into(), &m, "test")
    }

    async fn verified(f: &Fixture, image: &Digest) -> bool {
        f.policy
            .check_pull(&*f.meta, &*f.blobs, REPO, Some("v1"), image, b"{}")
            .await
            .unwrap()
            .is_ok()
    }

    /// The verdict cache must follow metadata writes, whichever path makes them: here the
    /// pull-through cache's path (`put_cached_manifest`, `link_blob`) and direct deletes, none of
    /// which goes through the API handlers.
    #[tokio::test]
    async fn verdicts_follow_writes_that_bypass_the_api() {
        let f = fixture();
        let image = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": oci::media_types::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                       "digest": Digest::sha256(b"{}").to_string(), "size": 2},
            "layers": [],
        }))
        .unwrap();
        let image_rec = record(image);
        let image_digest = image_rec.digest.clone();
        f.meta
            .put_cached_manifest(REPO, image_rec, vec!["v1".into()])
            .await
            .unwrap();
        assert!(!verified(&f, &image_digest).await, "no signature yet");

        // A signature arrives through the cache's write path.
        let layer = trust::sign_image(&f.key, REPO, &image_digest, &BTreeMap::new());
        let sig = trust::manifest::tag_signature_image(None, &layer).unwrap();
        for b in &sig.blobs {
            let d = put_blob(&f.blobs, b).await;
            f.meta.link_blob(REPO, &d, b.len() as u64).await.unwrap();
        }
        let sig_tag = trust::manifest::signature_tag(&image_digest);
        f.meta
            .put_cached_manifest(REPO, record(sig.manifest.clone()), vec![sig_tag.clone()])
            .await
            .unwrap();
        assert!(
            verified(&f, &image_digest).await,
            "a signature stored after the first verdict is seen"
        );

        // The signature's payload is unlinked (as an eviction or a collection does).
        let payload = Digest::sha256(&layer.payload);
        assert!(f.meta.unlink_blob(REPO, &payload).await.unwrap());
        assert!(
            !verified(&f, &image_digest).await,
            "a signature whose payload is gone no longer counts"
        );

        // Linked again, then the signature tag is deleted directly in the store.
        f.meta
            .link_blob(REPO, &payload, layer.payload.len() as u64)
            .await
            .unwrap();
        assert!(verified(&f, &image_digest).await);
        assert!(f.meta.delete_tag(REPO, &sig_tag, "test").await.unwrap());
        assert!(
            !verified(&f, &image_digest).await,
            "a deleted signature no longer counts"
        );
    }
}
