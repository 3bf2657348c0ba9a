//! Garbage collection in the embedded database (the interface and its contract are in
//! [`crate::meta::gc`]).
//!
//! - `put_manifest` records the blobs it references in `gc_refs` with the current generation, so
//!   a manifest pushed after the snapshot vetoes the deletion of its blobs;
//! - every blob link carries its creation time in `blob_link_times` (keyed digest first, so all
//!   links of one blob are one range), so young links and links made after the snapshot veto it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;

use async_trait::async_trait;
use oci::{Digest, Manifest};
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use super::store::RedbMetaStore;
use super::tables::*;
use crate::meta::UploadRecord;
use crate::meta::gc::{
    Doomed, GcMeta, Mark, RepoUsage, StorageUsage, UsageTotals, digest_key, hex_key,
};
use crate::{Result, StoreError};

const GENERATION: &str = "generation";

/// Stamps a blob link with its creation time (called wherever a link is written).
pub(super) fn note_link(txn: &WriteTransaction, repo: &str, digest: &str) -> Result<()> {
    txn.open_table(LINK_TIMES)?
        .insert(key(&[digest, repo]).as_str(), now())?;
    Ok(())
}

/// Records that a manifest referencing `blobs` is being stored in this transaction, so a
/// collection whose snapshot predates it keeps those blobs.
pub(super) fn note_refs(txn: &WriteTransaction, blobs: &[Digest]) -> Result<()> {
    let generation = txn
        .open_table(GC_STATE)?
        .get(GENERATION)?
        .map_or(0, |v| v.value());
    let mut t = txn.open_table(GC_REFS)?;
    for b in blobs {
        t.insert(b.to_string().as_str(), generation)?;
    }
    Ok(())
}

struct Ref {
    size: u64,
    repos: u32,
    sole: u32,
}

fn mark(db: &redb::Database, cutoff: u64, max_doomed: usize) -> Result<Mark> {
    let txn = db.begin_read()?;
    let repos_t = txn.open_table(REPOS)?;
    let manifests_t = txn.open_table(MANIFESTS)?;
    let links_t = txn.open_table(LINKS)?;
    let times_t = txn.open_table(LINK_TIMES)?;
    let blobs_t = txn.open_table(BLOBS)?;

    let mut out = Mark::default();
    let mut global: HashMap<u128, Ref> = HashMap::new();
    let mut protected: HashSet<u128> = HashSet::new();
    // Old unreferenced links: (repository index, digest).
    let mut old_links: Vec<(u32, Digest)> = Vec::new();
    let mut repo_names: Vec<String> = Vec::new();
    let mut usage: Vec<RepoUsage> = Vec::new();
    let link_cap = max_doomed.saturating_mul(4);

    for entry in repos_t.range::<&str>(..)? {
        let (k, _) = entry?;
        let repo = k.value().to_owned();
        let idx = repo_names.len() as u32;
        let mut u = RepoUsage {
            repository: repo.clone(),
            ..RepoUsage::default()
        };
        // Blobs this repository's manifests reference, with their sizes.
        let mut refs: HashMap<String, u64> = HashMap::new();
        let mut protect_all = false;
        let (lo, hi) = prefix_range(&repo, None);
        for e in manifests_t.range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))? {
            let (k, v) = e?;
            u.manifests += 1;
            let digest = Digest::parse(&k.value()[repo.len() + 1..])
                .map_err(|_| StoreError::Db("corrupt manifest key".into()))?;
            let m = decode_manifest(digest, v.value())?;
            u.manifest_bytes += m.body.len() as u64;
            match Manifest::parse(Some(&m.media_type), &m.body) {
                Ok(parsed) => {
                    for d in parsed.config.iter().chain(&parsed.layers) {
                        refs.entry(d.digest.to_string())
                            .or_insert(d.size.max(0) as u64);
                    }
                }
                Err(e) => {
                    tracing::warn!(repo = %repo, digest = %m.digest, error = %e, "stored manifest does not parse; keeping every blob its repository links");
                    out.unparsable_manifests += 1;
                    protect_all = true;
                }
            }
        }
        for e in links_t.range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))? {
            let (k, v) = e?;
            let d = &k.value()[repo.len() + 1..];
            if let Some(size) = refs.get_mut(d) {
                *size = v.value(); // the link's size is what was really stored
                continue;
            }
            if protect_all {
                refs.insert(d.to_owned(), v.value());
                continue;
            }
            let digest =
                Digest::parse(d).map_err(|_| StoreError::Db("corrupt blob link key".into()))?;
            match times_t.get(key(&[d, &repo]).as_str())?.map(|t| t.value()) {
                Some(t) if t < cutoff => {
                    if old_links.len() < link_cap {
                        old_links.push((idx, digest));
                    } else {
                        out.truncated = true;
                        protected.insert(digest_key(&digest));
                    }
                }
                Some(_) => {
                    out.young_links += 1;
                    protected.insert(digest_key(&digest));
                }
                None => {
                    protected.insert(digest_key(&digest));
                    if out.unstamped.len() < link_cap {
                        out.unstamped.push((repo.clone(), digest));
                    }
                }
            }
        }
        for (d, size) in &refs {
            u.blobs += 1;
            u.logical_bytes += size;
            let r = global
                .entry(hex_key(d.split_once(':').map_or("", |x| x.1)))
                .or_insert(Ref {
                    size: *size,
                    repos: 0,
                    sole: idx,
                });
            r.repos += 1;
        }
        repo_names.push(repo);
        usage.push(u);
    }

    // Blob candidates: unreferenced and unprotected, with the repositories linking them.
    let mut blob_links: BTreeMap<String, (Digest, Vec<String>)> = BTreeMap::new();
    for (idx, digest) in old_links {
        let dk = digest_key(&digest);
        if global.contains_key(&dk) || protected.contains(&dk) {
            if out.doomed.len() < max_doomed {
                out.doomed.push(Doomed::Link {
                    repo: repo_names[idx as usize].clone(),
                    digest,
                });
            } else {
                out.truncated = true;
            }
        } else {
            blob_links
                .entry(digest.to_string())
                .or_insert_with(|| (digest.clone(), Vec::new()))
                .1
                .push(repo_names[idx as usize].clone());
        }
    }
    let mut unreferenced = (0u64, 0u64);
    for e in blobs_t.range::<&str>(..)? {
        let (k, v) = e?;
        let Ok(digest) = Digest::parse(k.value()) else {
            continue;
        };
        let dk = digest_key(&digest);
        if global.contains_key(&dk) {
            continue;
        }
        unreferenced.0 += 1;
        unreferenced.1 += v.value();
        if protected.contains(&dk) {
            continue;
        }
        let repos = blob_links
            .remove(k.value())
            .map(|(_, r)| r)
            .unwrap_or_default();
        if out.doomed.len() < max_doomed {
            out.doomed.push(Doomed::Blob {
                digest,
                size: v.value(),
                repos,
            });
        } else {
            out.truncated = true;
        }
    }
    // Links to a blob without a record (not written by this code, but harmless to clear).
    for (_, (digest, repos)) in blob_links {
        if out.doomed.len() < max_doomed {
            out.doomed.push(Doomed::Blob {
                digest,
                size: 0,
                repos,
            });
        } else {
            out.truncated = true;
        }
    }

    // Exclusive bytes: blobs referenced by exactly one repository.
    for r in global.values() {
        if r.repos == 1 {
            usage[r.sole as usize].exclusive_bytes += r.size;
        }
    }
    let mut total = UsageTotals {
        repositories: usage.len() as u64,
        referenced_blobs: global.len() as u64,
        referenced_bytes: global.values().map(|r| r.size).sum(),
        unreferenced_blobs: unreferenced.0,
        unreferenced_bytes: unreferenced.1,
        ..UsageTotals::default()
    };
    for u in &mut usage {
        u.shared_bytes = u.logical_bytes - u.exclusive_bytes;
        total.manifests += u.manifests;
        total.logical_bytes += u.logical_bytes;
    }
    out.usage = StorageUsage {
        computed_at: now(),
        repositories: usage,
        total,
    };
    Ok(out)
}

/// Re-checks and deletes one proposal inside the sweep transaction. All checks come before the
/// first write.
fn sweep_one(txn: &WriteTransaction, generation: u64, cutoff: u64, item: &Doomed) -> Result<bool> {
    let d = item.digest().to_string();
    if txn
        .open_table(GC_REFS)?
        .get(d.as_str())?
        .is_some_and(|g| g.value() >= generation)
    {
        return Ok(false); // a manifest pushed since the snapshot references it
    }
    match item {
        Doomed::Link { repo, .. } => {
            let tk = key(&[&d, repo]);
            match txn.open_table(LINK_TIMES)?.get(tk.as_str())? {
                Some(t) if t.value() < cutoff => {}
                _ => return Ok(false), // re-linked since, or gone
            }
            txn.open_table(LINKS)?.remove(key(&[repo, &d]).as_str())?;
            txn.open_table(LINK_TIMES)?.remove(tk.as_str())?;
            Ok(true)
        }
        Doomed::Blob { repos, .. } => {
            let mut stale = Vec::new();
            {
                let links = txn.open_table(LINKS)?;
                let times = txn.open_table(LINK_TIMES)?;
                for r in repos {
                    match times.get(key(&[&d, r]).as_str())? {
                        Some(t) if t.value() < cutoff => {}
                        _ => return Ok(false),
                    }
                }
                let (lo, hi) = prefix_range(&d, None);
                for e in times.range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))? {
                    let (k, t) = e?;
                    let repo = &k.value()[d.len() + 1..];
                    if repos.iter().any(|r| r == repo) {
                        continue;
                    }
                    if links.get(key(&[repo, &d]).as_str())?.is_some() || t.value() >= cutoff {
                        return Ok(false); // linked since the snapshot
                    }
                    stale.push(k.value().to_owned());
                }
            }
            let mut links = txn.open_table(LINKS)?;
            let mut times = txn.open_table(LINK_TIMES)?;
            for r in repos {
                links.remove(key(&[r, &d]).as_str())?;
                times.remove(key(&[&d, r]).as_str())?;
            }
            for k in &stale {
                times.remove(k.as_str())?;
            }
            txn.open_table(BLOBS)?.remove(d.as_str())?;
            txn.open_table(GC_REFS)?.remove(d.as_str())?;
            Ok(true)
        }
    }
}

#[async_trait]
impl GcMeta for RedbMetaStore {
    async fn gc_begin(&self) -> Result<u64> {
        self.write(|txn| {
            let mut state = txn.open_table(GC_STATE)?;
            let generation = state.get(GENERATION)?.map_or(0, |v| v.value()) + 1;
            state.insert(GENERATION, generation)?;
            txn.open_table(GC_REFS)?.retain(|_, g| g >= generation)?;
            Ok(generation)
        })
        .await
    }

    async fn gc_mark(&self, cutoff: u64, max_doomed: usize) -> Result<Mark> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || mark(&db, cutoff, max_doomed))
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))?
    }

    async fn gc_stamp(&self, links: Vec<(String, Digest)>) -> Result<()> {
        if links.is_empty() {
            return Ok(());
        }
        self.write(move |txn| {
            let present = txn.open_table(LINKS)?;
            let mut times = txn.open_table(LINK_TIMES)?;
            let t = now();
            for (repo, d) in &links {
                let d = d.to_string();
                let tk = key(&[&d, repo]);
                if present.get(key(&[repo, &d]).as_str())?.is_some()
                    && times.get(tk.as_str())?.is_none()
                {
                    times.insert(tk.as_str(), t)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn gc_sweep(
        &self,
        generation: u64,
        cutoff: u64,
        items: Vec<Doomed>,
    ) -> Result<Vec<bool>> {
        self.write_touching(move |txn, touched| {
            let done = items
                .iter()
                .map(|i| sweep_one(txn, generation, cutoff, i))
                .collect::<Result<Vec<bool>>>()?;
            // Deleted links change what their repositories serve (and verdicts built on them).
            for (item, deleted) in items.iter().zip(&done) {
                match (item, deleted) {
                    (Doomed::Link { repo, .. }, true) => touched.push(repo.clone()),
                    (Doomed::Blob { repos, .. }, true) => touched.extend(repos.iter().cloned()),
                    _ => {}
                }
            }
            Ok(done)
        })
        .await
    }

    async fn gc_blobs_known(&self, digests: Vec<Digest>) -> Result<Vec<bool>> {
        self.read(|txn| {
            let blobs = txn.open_table(BLOBS)?;
            let times = txn.open_table(LINK_TIMES)?;
            digests
                .iter()
                .map(|d| {
                    let d = d.to_string();
                    if blobs.get(d.as_str())?.is_some() {
                        return Ok(true);
                    }
                    let (lo, hi) = prefix_range(&d, None);
                    Ok(times
                        .range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))?
                        .next()
                        .is_some())
                })
                .collect()
        })
    }

    async fn gc_uploads(&self, limit: usize) -> Result<Vec<UploadRecord>> {
        self.read(|txn| {
            let t = txn.open_table(UPLOADS)?;
            let mut out = Vec::new();
            for e in t.range::<&str>(..)? {
                let (_, v) = e?;
                if let Ok(r) = serde_json::from_slice(v.value()) {
                    out.push(r);
                }
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{ManifestRecord, MetaStore};

    fn blob(n: u8) -> Digest {
        Digest::sha256(&[n; 7])
    }

    fn image(config: &Digest, layers: &[&Digest]) -> ManifestRecord {
        let desc = |d: &Digest, mt: &str| serde_json::json!({"mediaType": mt, "digest": d.to_string(), "size": 7});
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": oci::media_types::OCI_MANIFEST,
            "config": desc(config, "application/vnd.oci.image.config.v1+json"),
            "layers": layers.iter().map(|d| desc(d, "application/vnd.oci.image.layer.v1.tar")).collect::<Vec<_>>(),
        });
        let body = Bytes::from(serde_json::to_vec(&body).unwrap());
        ManifestRecord {
            digest: Digest::sha256(&body),
            media_type: oci::media_types::OCI_MANIFEST.into(),
            body,
            blobs: std::iter::once(config)
                .chain(layers.iter().copied())
                .cloned()
                .collect(),
            children: vec![],
            subject: None,
            referrer: None,
            frozen_tags: vec![],
            actor: "test".into(),
        }
    }

    async fn open() -> (tempfile::TempDir, RedbMetaStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbMetaStore::open(&dir.path().join("meta.redb")).unwrap();
        (dir, store)
    }

    /// A cutoff in the future: every existing link counts as old.
    fn all_old() -> u64 {
        now() + 10
    }

    fn doomed_blobs(m: &Mark) -> Vec<Digest> {
        m.doomed
            .iter()
            .filter_map(|d| match d {
                Doomed::Blob { digest, .. } => Some(digest.clone()),
                Doomed::Link { .. } => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn usage_counts_shared_and_exclusive_bytes() {
        let (_d, s) = open().await;
        for (repo, ds) in [("a", [1u8, 2, 3]), ("b", [1u8, 2, 4])] {
            for n in ds {
                s.link_blob(repo, &blob(n), 100 * u64::from(n))
                    .await
                    .unwrap();
            }
            let m = image(&blob(ds[0]), &[&blob(ds[1]), &blob(ds[2])]);
            s.put_manifest(repo, m, vec!["t".into()]).await.unwrap();
        }
        s.link_blob("a", &blob(9), 900).await.unwrap(); // unreferenced
        let m = s.gc_mark(all_old(), 100).await.unwrap();
        let a = &m.usage.repositories[0];
        assert_eq!(a.repository, "a");
        assert_eq!((a.blobs, a.logical_bytes), (3, 600));
        assert_eq!((a.exclusive_bytes, a.shared_bytes), (300, 300));
        let b = &m.usage.repositories[1];
        assert_eq!((b.logical_bytes, b.exclusive_bytes), (700, 400));
        let t = &m.usage.total;
        assert_eq!((t.referenced_blobs, t.referenced_bytes), (4, 1000));
        assert_eq!(t.logical_bytes, 1300);
        assert_eq!((t.unreferenced_blobs, t.unreferenced_bytes), (1, 900));
        assert_eq!(doomed_blobs(&m), vec![blob(9)]);
    }

    #[tokio::test]
    async fn a_blob_is_listed_only_by_the_manifests_of_its_own_repository() {
        let (_d, s) = open().await;
        for n in [1, 2, 3] {
            s.link_blob("a", &blob(n), 7).await.unwrap();
        }
        s.put_manifest("a", image(&blob(1), &[&blob(2)]), vec!["t".into()])
            .await
            .unwrap();
        assert!(
            s.manifest_lists_blob("a", &blob(1)).await.unwrap(),
            "config"
        );
        assert!(s.manifest_lists_blob("a", &blob(2)).await.unwrap(), "layer");
        assert!(
            !s.manifest_lists_blob("a", &blob(3)).await.unwrap(),
            "linked only"
        );
        assert!(
            !s.manifest_lists_blob("b", &blob(1)).await.unwrap(),
            "other repository"
        );
        // A name that is a prefix of another repository's name sees none of its manifests.
        assert!(!s.manifest_lists_blob("", &blob(1)).await.unwrap());
    }

    #[tokio::test]
    async fn sweep_deletes_garbage_and_keeps_what_is_referenced() {
        let (_d, s) = open().await;
        for n in [1, 2, 3] {
            s.link_blob("a", &blob(n), 7).await.unwrap();
        }
        s.put_manifest("a", image(&blob(1), &[&blob(2)]), vec!["t".into()])
            .await
            .unwrap();
        let g = s.gc_begin().await.unwrap();
        let m = s.gc_mark(all_old(), 100).await.unwrap();
        assert_eq!(doomed_blobs(&m), vec![blob(3)]);
        assert_eq!(
            s.gc_sweep(g, all_old(), m.doomed.clone()).await.unwrap(),
            vec![true]
        );
        assert_eq!(s.blob_linked("a", &blob(3)).await.unwrap(), None);
        assert_eq!(
            s.gc_blobs_known(vec![blob(1), blob(3)]).await.unwrap(),
            vec![true, false]
        );
        // Idempotent: sweeping the same proposal again finds nothing to delete.
        let again = s.gc_sweep(g, all_old(), m.doomed).await.unwrap();
        assert_eq!(again, vec![false]);
        assert_eq!(s.blob_linked("a", &blob(1)).await.unwrap(), Some(7));
        let m = s.gc_mark(all_old(), 100).await.unwrap();
        assert!(m.doomed.is_empty(), "{:?}", m.doomed);
    }

    #[tokio::test]
    async fn a_manifest_stored_after_the_snapshot_vetoes_the_sweep() {
        let (_d, s) = open().await;
        for n in [1, 2] {
            s.link_blob("a", &blob(n), 7).await.unwrap();
        }
        let g = s.gc_begin().await.unwrap();
        let m = s.gc_mark(all_old(), 100).await.unwrap();
        assert_eq!(doomed_blobs(&m).len(), 2);
        // Pushed between the mark and the sweep: its blobs must survive.
        s.put_manifest("a", image(&blob(1), &[&blob(2)]), vec!["t".into()])
            .await
            .unwrap();
        assert_eq!(
            s.gc_sweep(g, all_old(), m.doomed).await.unwrap(),
            vec![false, false]
        );
        assert_eq!(s.blob_linked("a", &blob(2)).await.unwrap(), Some(7));
        // The next collection sees the manifest in its snapshot and proposes nothing.
        s.gc_begin().await.unwrap();
        assert!(s.gc_mark(all_old(), 100).await.unwrap().doomed.is_empty());
    }

    #[tokio::test]
    async fn young_links_and_new_links_protect_a_blob() {
        let (_d, s) = open().await;
        s.link_blob("a", &blob(1), 7).await.unwrap();
        let g = s.gc_begin().await.unwrap();
        // Cutoff in the past: the link is young, nothing is proposed.
        let m = s.gc_mark(now() - 3600, 100).await.unwrap();
        assert!(m.doomed.is_empty());
        assert_eq!(m.young_links, 1);
        // Old by the cutoff, but mounted into another repository after the snapshot.
        let m = s.gc_mark(all_old(), 100).await.unwrap();
        assert_eq!(doomed_blobs(&m), vec![blob(1)]);
        s.link_blob("b", &blob(1), 7).await.unwrap();
        assert_eq!(
            s.gc_sweep(g, now() - 3600, m.doomed.clone()).await.unwrap(),
            vec![false]
        );
        assert_eq!(
            s.gc_sweep(g, all_old(), m.doomed).await.unwrap(),
            vec![false]
        );
        assert_eq!(s.blob_linked("b", &blob(1)).await.unwrap(), Some(7));
    }

    #[tokio::test]
    async fn an_unreferenced_link_goes_while_its_blob_stays_for_another_repository() {
        let (_d, s) = open().await;
        for r in ["a", "b"] {
            s.link_blob(r, &blob(1), 7).await.unwrap();
            s.link_blob(r, &blob(2), 7).await.unwrap();
        }
        s.put_manifest("a", image(&blob(1), &[&blob(2)]), vec!["t".into()])
            .await
            .unwrap();
        let g = s.gc_begin().await.unwrap();
        let m = s.gc_mark(all_old(), 100).await.unwrap();
        assert_eq!(m.doomed.len(), 2);
        assert!(
            m.doomed
                .iter()
                .all(|d| matches!(d, Doomed::Link { repo, .. } if repo == "b"))
        );
        assert_eq!(
            s.gc_sweep(g, all_old(), m.doomed).await.unwrap(),
            vec![true, true]
        );
        assert_eq!(s.blob_linked("b", &blob(1)).await.unwrap(), None);
        assert_eq!(s.blob_linked("a", &blob(1)).await.unwrap(), Some(7));
        assert_eq!(s.gc_blobs_known(vec![blob(1)]).await.unwrap(), vec![true]);
    }

    #[tokio::test]
    async fn links_without_a_time_are_stamped_not_collected() {
        let (_d, s) = open().await;
        s.link_blob("a", &blob(1), 7).await.unwrap();
        // Simulate data written before the collector existed.
        s.write(|txn| {
            txn.open_table(LINK_TIMES)?.retain(|_, _| false)?;
            Ok(())
        })
        .await
        .unwrap();
        let m = s.gc_mark(all_old(), 100).await.unwrap();
        assert!(m.doomed.is_empty());
        assert_eq!(m.unstamped, vec![("a".to_string(), blob(1))]);
        s.gc_stamp(m.unstamped).await.unwrap();
        let m = s.gc_mark(all_old(), 100).await.unwrap();
        assert_eq!(doomed_blobs(&m), vec![blob(1)]);
    }

    #[tokio::test]
    async fn the_number_of_proposals_is_bounded() {
        let (_d, s) = open().await;
        for n in 0..10 {
            s.link_blob("a", &blob(n), 7).await.unwrap();
        }
        let m = s.gc_mark(all_old(), 4).await.unwrap();
        assert_eq!(m.doomed.len(), 4);
        assert!(m.truncated);
    }
}
