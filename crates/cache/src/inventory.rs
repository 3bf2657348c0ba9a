//! What the cache holds, pins, and eviction of the least recently pulled images when the cache
//! is over its size limit. Pushed repositories are never looked at: only cached ones.

use std::collections::{HashMap, HashSet};

use oci::{Digest, Glob, Manifest, Reference};
use serde::Serialize;
use store::{MetaStore, Page, StoreError};

use crate::Cache;

/// Metadata namespace of pins made at run time (`wharf cache pin`).
const PINS: &str = "cache_pins";
/// Who evictions are recorded as, in tag history.
const EVICTOR: &str = "cache-eviction";

/// One cached image: a manifest or index that no other cached manifest lists, with its tags.
#[derive(Clone, Debug, Serialize)]
pub struct CachedImage {
    /// The cached repository (`docker.io/library/alpine`).
    pub repo: String,
    /// The top manifest's digest.
    pub digest: String,
    /// Tags pointing at it.
    pub tags: Vec<String>,
    /// The top manifest's media type.
    pub media_type: String,
    /// Bytes of its manifests and of the blobs held for it (shared blobs count in each image).
    pub bytes: u64,
    /// Platform manifests held (an index's children that clients asked for).
    pub manifests: usize,
    /// When it (or one of its manifests) was last pulled, unix seconds.
    pub last_pull: Option<u64>,
    /// When it was cached, unix seconds.
    pub cached_at: Option<u64>,
    /// Whether a pin keeps it whatever the size limit.
    pub pinned: bool,
    /// Blobs held for it, with sizes (for eviction; not listed).
    #[serde(skip)]
    blobs: Vec<(Digest, u64)>,
    /// Every manifest digest of the image: top, children, referrers.
    #[serde(skip)]
    members: Vec<Digest>,
}

/// What an eviction pass did (or, dry, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct EvictReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// The size limit (0: none).
    pub max_bytes: u64,
    /// Bytes held before.
    pub cached_bytes: u64,
    /// Images evicted, as `repo@digest`.
    pub evicted: Vec<String>,
    /// Bytes of blobs no remaining cached image needs (freed once garbage collection runs).
    pub bytes_released: u64,
}

/// A pin pattern, compiled: `host/repo:tag`, `host/repo@digest`, `host/repo` (every image of
/// it), where the repository and tag parts are [`Glob`]s (`*` matches any run of characters,
/// slashes included, so `ghcr.io/org/*` covers every repository below `ghcr.io/org/`).
struct Pin {
    repo: Glob,
    want: Option<Want>,
}

/// What a pin asks of an image beyond its repository.
enum Want {
    /// A tag matching this glob.
    Tag(Glob),
    /// Exactly this digest.
    Digest(String),
}

impl Pin {
    fn new(pattern: &str) -> Pin {
        let (repo, want) = match pattern.split_once('@') {
            Some((r, d)) => (r, Some(Want::Digest(d.to_owned()))),
            None => match pattern.rsplit_once(':') {
                Some((r, t)) if !t.contains('/') => (r, Some(Want::Tag(Glob::new(t)))),
                _ => (pattern, None),
            },
        };
        Pin {
            repo: Glob::new(repo),
            want,
        }
    }

    fn matches(&self, repo: &str, tags: &[String], digest: &str) -> bool {
        self.repo.matches(repo)
            && match &self.want {
                None => true,
                Some(Want::Tag(tag)) => tags.iter().any(|t| tag.matches(t)),
                Some(Want::Digest(d)) => d == digest,
            }
    }
}

impl Cache {
    /// Repositories holding cached content.
    async fn cached_repos(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut last = None;
        loop {
            let batch = self
                .inner
                .meta
                .repositories(Page {
                    n: Some(1000),
                    last: last.clone(),
                })
                .await?;
            let done = batch.len() < 1000;
            last = batch.last().cloned();
            out.extend(batch.into_iter().filter(|r| self.is_cached(r)));
            if done {
                return Ok(out);
            }
        }
    }

    /// Pins made at run time.
    pub async fn runtime_pins(&self) -> Result<Vec<String>, StoreError> {
        let list = self
            .inner
            .meta
            .record_list(PINS, Page::default(), false)
            .await?;
        Ok(list.into_iter().map(|(k, _)| k).collect())
    }

    /// Keeps images matching `pattern` whatever the size limit.
    pub async fn pin(&self, pattern: &str) -> Result<(), String> {
        let repo = pattern.split(['@', ':']).next().unwrap_or(pattern);
        let repo = repo.strip_suffix("/*").unwrap_or(repo);
        if !self.is_cached(&format!("{repo}/x")) && !self.is_cached(repo) {
            return Err(format!(
                "{pattern} is not in a cached namespace (one of: {})",
                self.inner
                    .upstreams
                    .iter()
                    .map(|u| u.prefix.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        self.inner
            .meta
            .record_put(PINS, pattern, Vec::new())
            .await
            .map_err(|e| e.to_string())
    }

    /// Removes a run-time pin. Returns whether it existed.
    pub async fn unpin(&self, pattern: &str) -> Result<bool, StoreError> {
        self.inner.meta.record_delete(PINS, pattern).await
    }

    /// Every cached image, least recently pulled first.
    pub async fn images(&self) -> Result<Vec<CachedImage>, StoreError> {
        let mut pins: Vec<Pin> = self
            .inner
            .config
            .pinned
            .iter()
            .map(|p| Pin::new(p))
            .collect();
        pins.extend(self.runtime_pins().await?.iter().map(|p| Pin::new(p)));
        let meta = &self.inner.meta;
        let mut out = Vec::new();
        for repo in self.cached_repos().await? {
            let snap = meta.snapshot(&repo).await?;
            let pulls: HashMap<Digest, u64> = meta.last_pulls(&repo).await?.into_iter().collect();
            let listed: HashSet<&Digest> = snap
                .manifests
                .iter()
                .flat_map(|m| m.children.iter())
                .collect();
            let by_digest: HashMap<&Digest, &store::ManifestSummary> =
                snap.manifests.iter().map(|m| (&m.digest, m)).collect();
            for top in snap
                .manifests
                .iter()
                .filter(|m| !listed.contains(&m.digest) && m.subject.is_none())
            {
                // The image: the top manifest, the children held, and referrers of any of them.
                let mut members = vec![top.digest.clone()];
                members.extend(
                    top.children
                        .iter()
                        .filter(|c| by_digest.contains_key(c))
                        .cloned(),
                );
                let referrers: Vec<Digest> = snap
                    .manifests
                    .iter()
                    .filter(|m| m.subject.as_ref().is_some_and(|s| members.contains(s)))
                    .map(|m| m.digest.clone())
                    .collect();
                members.extend(referrers);
                let mut bytes = 0;
                let mut blobs = Vec::new();
                let mut seen = HashSet::new();
                for d in &members {
                    let Some(m) = by_digest.get(d) else { continue };
                    bytes += m.size;
                    let Some(stored) = meta
                        .get_manifest(&repo, &Reference::Digest(d.clone()))
                        .await?
                    else {
                        continue;
                    };
                    let Ok(parsed) = Manifest::parse(Some(&stored.media_type), &stored.body) else {
                        continue;
                    };
                    for b in parsed.required_blobs() {
                        if seen.insert(b.digest.clone())
                            && let Some(size) = meta.blob_linked(&repo, &b.digest).await?
                        {
                            bytes += size;
                            blobs.push((b.digest.clone(), size));
                        }
                    }
                }
                let tags: Vec<String> = snap
                    .tags
                    .iter()
                    .filter(|t| t.digest == top.digest)
                    .map(|t| t.tag.clone())
                    .collect();
                let digest = top.digest.to_string();
                let pinned = pins.iter().any(|p| p.matches(&repo, &tags, &digest));
                out.push(CachedImage {
                    repo: repo.clone(),
                    digest,
                    media_type: top.media_type.clone(),
                    bytes,
                    manifests: members.len(),
                    last_pull: members.iter().filter_map(|d| pulls.get(d)).max().copied(),
                    cached_at: top.pushed,
                    pinned,
                    tags,
                    blobs,
                    members,
                });
            }
        }
        out.sort_by_key(|i| i.last_pull.or(i.cached_at).unwrap_or(0));
        Ok(out)
    }

    /// Brings the cache under its size limit by deleting the least recently pulled unpinned
    /// images (tags, manifests no remaining image needs, blob links); their blobs go at the next
    /// garbage collection.
    pub async fn evict(&self, dry_run: bool) -> Result<EvictReport, StoreError> {
        let max = self.inner.config.max_bytes;
        let images = self.images().await?;
        // Blobs are counted once on disk, whichever cached repositories link them; links are
        // removed per repository when no image of that repository needs them any more.
        let mut on_disk: HashMap<Digest, (u64, usize)> = HashMap::new();
        let mut in_repo: HashMap<(String, Digest), usize> = HashMap::new();
        // Manifests may be shared by images (an index re-pushed upstream lists the same
        // platform manifests): a member goes with the last image that has it.
        let mut members: HashMap<(String, Digest), usize> = HashMap::new();
        for i in &images {
            for (d, size) in &i.blobs {
                on_disk.entry(d.clone()).or_insert((*size, 0)).1 += 1;
                *in_repo.entry((i.repo.clone(), d.clone())).or_insert(0) += 1;
            }
            for m in &i.members {
                *members.entry((i.repo.clone(), m.clone())).or_insert(0) += 1;
            }
        }
        let manifest_bytes =
            |i: &CachedImage| i.bytes - i.blobs.iter().map(|(_, s)| s).sum::<u64>();
        let mut held: u64 = on_disk.values().map(|(s, _)| s).sum::<u64>()
            + images.iter().map(manifest_bytes).sum::<u64>();
        self.inner.metrics.cached_bytes.set(held);
        let mut report = EvictReport {
            dry_run,
            max_bytes: max,
            cached_bytes: held,
            ..Default::default()
        };
        if max == 0 || held <= max {
            return Ok(report);
        }
        for img in images.iter().filter(|i| !i.pinned) {
            if held <= max {
                break;
            }
            let mut released = manifest_bytes(img);
            let mut unlink = Vec::new();
            for (d, size) in &img.blobs {
                let users = in_repo
                    .get_mut(&(img.repo.clone(), d.clone()))
                    .expect("counted above");
                *users -= 1;
                if *users == 0 {
                    unlink.push(d.clone());
                }
                let disk = on_disk.get_mut(d).expect("counted above");
                disk.1 -= 1;
                if disk.1 == 0 {
                    released += size;
                }
            }
            let mut drop_members = Vec::new();
            for m in &img.members {
                let users = members
                    .get_mut(&(img.repo.clone(), m.clone()))
                    .expect("counted above");
                *users -= 1;
                if *users == 0 {
                    drop_members.push(m.clone());
                }
            }
            if !dry_run {
                self.remove_image(img, &drop_members, &unlink).await?;
                self.inner.metrics.evictions.inc();
            }
            tracing::info!(
                repo = %img.repo, digest = %img.digest, bytes = released, dry_run,
                "cached image evicted"
            );
            held = held.saturating_sub(released);
            report.bytes_released += released;
            report.evicted.push(format!("{}@{}", img.repo, img.digest));
        }
        if !dry_run {
            self.inner.metrics.cached_bytes.set(held);
        }
        Ok(report)
    }

    /// Deletes an image's tags, the manifests of it no other image has (top first, then the
    /// platform manifests it listed, then referrers whose subject is gone), and blob links.
    async fn remove_image(
        &self,
        img: &CachedImage,
        manifests: &[Digest],
        unlink: &[Digest],
    ) -> Result<(), StoreError> {
        let meta: &dyn MetaStore = self.inner.meta.as_ref();
        for t in &img.tags {
            meta.delete_tag(&img.repo, t, EVICTOR).await?;
        }
        let top = img.digest.parse::<Digest>().ok();
        let mut referrers = Vec::new();
        for d in manifests {
            let m = meta
                .get_manifest(&img.repo, &Reference::Digest(d.clone()))
                .await?;
            if m.as_ref().is_some_and(|m| m.subject.is_some()) {
                referrers.push(d.clone());
                continue;
            }
            // Checked in the deleting transaction: still tagged or listed elsewhere, it stays.
            if Some(d) == top.as_ref() {
                meta.delete_manifest_if_unused(&img.repo, d, EVICTOR)
                    .await?;
            }
        }
        for d in manifests
            .iter()
            .filter(|d| Some(*d) != top.as_ref() && !referrers.contains(d))
        {
            meta.delete_manifest_if_unused(&img.repo, d, EVICTOR)
                .await?;
        }
        for d in &referrers {
            let subject = meta
                .get_manifest(&img.repo, &Reference::Digest(d.clone()))
                .await?
                .and_then(|m| m.subject);
            let subject_gone = match subject {
                Some(s) => meta
                    .get_manifest(&img.repo, &Reference::Digest(s))
                    .await?
                    .is_none(),
                None => true,
            };
            if subject_gone {
                meta.delete_manifest_if_unused(&img.repo, d, EVICTOR)
                    .await?;
            }
        }
        for d in unlink {
            meta.unlink_blob(&img.repo, d).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin_matches(pattern: &str, repo: &str, tags: &[String], digest: &str) -> bool {
        Pin::new(pattern).matches(repo, tags, digest)
    }

    #[test]
    fn pins() {
        let tags = vec!["3.20".to_owned(), "latest".to_owned()];
        let r = "docker.io/library/alpine";
        assert!(pin_matches(
            "docker.io/library/alpine:3.20",
            r,
            &tags,
            "sha256:x"
        ));
        assert!(pin_matches(
            "docker.io/library/alpine:3.*",
            r,
            &tags,
            "sha256:x"
        ));
        assert!(!pin_matches(
            "docker.io/library/alpine:3.19",
            r,
            &tags,
            "sha256:x"
        ));
        assert!(pin_matches(
            "docker.io/library/alpine",
            r,
            &tags,
            "sha256:x"
        ));
        assert!(pin_matches("docker.io/library/*", r, &tags, "sha256:x"));
        assert!(pin_matches("docker.io/*", r, &tags, "sha256:x"));
        // One glob rule everywhere (oci::Glob): `*` crosses slashes, as in access rules.
        assert!(pin_matches("docker.io/lib*", r, &tags, "sha256:x"));
        assert!(!pin_matches(
            "docker.io/lib*",
            "docker.io/other/x",
            &tags,
            "sha256:x"
        ));
        assert!(pin_matches(
            "docker.io/library/alpine@sha256:x",
            r,
            &tags,
            "sha256:x"
        ));
        assert!(!pin_matches(
            "docker.io/library/alpine@sha256:y",
            r,
            &tags,
            "sha256:x"
        ));
        assert!(!pin_matches("ghcr.io/*", r, &tags, "sha256:x"));
        assert!(pin_matches(
            "localhost-5001/team/app:v1",
            "localhost-5001/team/app",
            &["v1".into()],
            "d"
        ));
    }
}
