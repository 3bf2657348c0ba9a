//! Store-level primitives of online garbage collection (see docs/gc.md for the safety argument).
//!
//! The registry's collector drives these: [`GcMeta::gc_begin`] opens a collection generation,
//! [`GcMeta::gc_mark`] scans one consistent snapshot (every manifest of every repository, every
//! blob link) and proposes what is unreferenced, and [`GcMeta::gc_sweep`] deletes proposals in one
//! transaction that re-checks each of them against writes made since the snapshot:
//!
//! - `put_manifest` records the blobs it references in `gc_refs` with the current generation, so a
//!   manifest pushed after the snapshot vetoes the deletion of its blobs;
//! - every blob link carries its creation time in `blob_link_times` (keyed digest first, so all
//!   links of one blob are one range), so young links and links made after the snapshot veto it.
//!
//! This module is a child of `meta` (declared there) so it can use the metadata tables directly.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::Path;
use std::time::SystemTime;

use async_trait::async_trait;
use oci::{Algorithm, Digest, Manifest};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::Serialize;

use super::{
    BLOBS, LINKS, MANIFESTS, REPOS, RedbMetaStore, UPLOADS, UploadRecord, as_ref_bound,
    decode_manifest, key, now, prefix_range,
};
use crate::{Result, StoreError};

/// Creation time (unix seconds) of each blob link, keyed digest, repository.
pub(super) const LINK_TIMES: TableDefinition<&str, u64> = TableDefinition::new("blob_link_times");
/// Blobs referenced by manifests pushed since the current collection began: digest -> generation.
pub(super) const GC_REFS: TableDefinition<&str, u64> = TableDefinition::new("gc_refs");
/// Collector state: `generation` -> the current collection generation.
pub(super) const GC_STATE: TableDefinition<&str, u64> = TableDefinition::new("gc_state");

const GENERATION: &str = "generation";

/// Creates the collector's tables (called when the database is opened).
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(LINK_TIMES)?;
    txn.open_table(GC_REFS)?;
    txn.open_table(GC_STATE)?;
    Ok(())
}

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

/// Storage use of one repository, deduplication-aware.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RepoUsage {
    /// Repository name.
    pub repository: String,
    /// Manifests stored (tagged or not).
    pub manifests: u64,
    /// Bytes of those manifests.
    pub manifest_bytes: u64,
    /// Distinct blobs its manifests reference.
    pub blobs: u64,
    /// Bytes of those blobs: what the repository would take alone.
    pub logical_bytes: u64,
    /// Bytes of the blobs no other repository references: what deleting it would free.
    pub exclusive_bytes: u64,
    /// Bytes of the blobs it shares with at least one other repository.
    pub shared_bytes: u64,
}

/// Totals over the whole store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UsageTotals {
    /// Repositories.
    pub repositories: u64,
    /// Manifests in all repositories.
    pub manifests: u64,
    /// Distinct blobs referenced by at least one manifest.
    pub referenced_blobs: u64,
    /// Bytes of those blobs, each counted once: what the store really holds for them.
    pub referenced_bytes: u64,
    /// Sum of the repositories' logical bytes (shared blobs counted once per repository).
    pub logical_bytes: u64,
    /// Blob records no manifest references (garbage, or pushes not yet finished).
    pub unreferenced_blobs: u64,
    /// Bytes of those blobs.
    pub unreferenced_bytes: u64,
}

/// Storage use of every repository plus totals, as of one snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StorageUsage {
    /// Unix seconds of the snapshot.
    pub computed_at: u64,
    /// Per repository, in name order.
    pub repositories: Vec<RepoUsage>,
    /// Over the whole store.
    pub total: UsageTotals,
}

/// Something the mark found unreferenced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Doomed {
    /// A link no manifest of its repository references, to a blob that stays (referenced
    /// elsewhere or still protected).
    Link {
        /// Repository.
        repo: String,
        /// Blob.
        digest: Digest,
    },
    /// A blob no manifest references, with the repositories that link it.
    Blob {
        /// Blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// Repositories linking it at the snapshot.
        repos: Vec<String>,
    },
}

impl Doomed {
    /// The blob concerned.
    pub fn digest(&self) -> &Digest {
        match self {
            Doomed::Link { digest, .. } | Doomed::Blob { digest, .. } => digest,
        }
    }
}

/// Result of a mark scan.
#[derive(Clone, Debug, Default)]
pub struct Mark {
    /// Storage use at the snapshot.
    pub usage: StorageUsage,
    /// Proposed deletions (links first grouped by nothing in particular; blobs in digest order).
    pub doomed: Vec<Doomed>,
    /// Unreferenced links kept because they are younger than the grace period.
    pub young_links: u64,
    /// Links without a creation time (written before the collector existed): stamped now and
    /// collected on a later run, once the grace period has passed.
    pub unstamped: Vec<(String, Digest)>,
    /// Stored manifests that could not be parsed; their repositories' links were all kept.
    pub unparsable_manifests: u64,
    /// More was unreferenced than one run handles; the next run continues.
    pub truncated: bool,
}

/// A blob file in the blob store.
#[derive(Clone, Debug)]
pub struct BlobFile {
    /// Its digest (from its path).
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Last modification.
    pub modified: SystemTime,
}

/// An upload file in the blob store.
#[derive(Clone, Debug)]
pub struct UploadFile {
    /// Upload id.
    pub id: String,
    /// Bytes held.
    pub size: u64,
    /// Last modification (the last chunk written).
    pub modified: SystemTime,
}

/// The metadata side of garbage collection. Every method is one transaction.
#[async_trait]
pub trait GcMeta: Send + Sync + 'static {
    /// Starts a collection: bumps the generation and forgets references recorded for earlier
    /// ones (the coming snapshot sees those manifests). Returns the new generation.
    async fn gc_begin(&self) -> Result<u64>;
    /// Scans one snapshot: storage use and what is unreferenced. Links created at or after
    /// `cutoff` (unix seconds) are young and protect their blob. At most `max_doomed` proposals.
    async fn gc_mark(&self, cutoff: u64, max_doomed: usize) -> Result<Mark>;
    /// Gives links without a creation time the time now.
    async fn gc_stamp(&self, links: Vec<(String, Digest)>) -> Result<()>;
    /// Deletes the metadata of `items` that are still garbage, re-checked inside the
    /// transaction: no manifest recorded since `generation` began references the blob, and no
    /// link of it is younger than `cutoff` or unknown to the proposal. Returns, per item,
    /// whether it was deleted. The caller deletes a blob's file after this returns `true`.
    async fn gc_sweep(&self, generation: u64, cutoff: u64, items: Vec<Doomed>)
    -> Result<Vec<bool>>;
    /// Per digest: whether the metadata knows the blob (a blob record or any link).
    async fn gc_blobs_known(&self, digests: Vec<Digest>) -> Result<Vec<bool>>;
    /// Upload sessions, at most `limit`.
    async fn gc_uploads(&self, limit: usize) -> Result<Vec<UploadRecord>>;
}

/// A compact key for a digest in the collector's in-memory sets: the first 128 bits. A collision
/// between two different digests can only make a blob look referenced, never the reverse, and
/// with SHA-2 it does not happen in practice.
pub fn digest_key(d: &Digest) -> u128 {
    hex_key(d.hex())
}

fn hex_key(hex: &str) -> u128 {
    hex.get(..32)
        .and_then(|h| u128::from_str_radix(h, 16).ok())
        .unwrap_or(0)
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

/// Lists blob files under `root/blobs` in digest order (sha256 first), strictly after `after`,
/// at most `limit`. Blocking: reads one shard directory at a time.
pub(crate) fn list_blob_files(
    root: &Path,
    after: Option<&Digest>,
    limit: usize,
) -> io::Result<Vec<BlobFile>> {
    let algs = [Algorithm::Sha256, Algorithm::Sha512];
    let pos = |a: Algorithm| algs.iter().position(|x| *x == a).unwrap_or(0);
    let mut out = Vec::new();
    for alg in algs {
        if let Some(a) = after
            && pos(a.algorithm()) > pos(alg)
        {
            continue;
        }
        let dir = root.join("blobs").join(alg.as_str());
        let mut shards = match sorted_names(&dir) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let floor = after.filter(|a| a.algorithm() == alg).map(|a| a.hex());
        if let Some(f) = floor {
            shards.retain(|s| s.as_str() >= &f[..2.min(f.len())]);
        }
        for shard in shards {
            for name in sorted_names(&dir.join(&shard))? {
                if floor.is_some_and(|f| name.as_str() <= f) {
                    continue;
                }
                let Ok(digest) = Digest::parse(&format!("{}:{name}", alg.as_str())) else {
                    continue; // not a blob (nothing else is written here, but be tolerant)
                };
                let Ok(meta) = std::fs::metadata(dir.join(&shard).join(&name)) else {
                    continue; // deleted meanwhile
                };
                out.push(BlobFile {
                    digest,
                    size: meta.len(),
                    modified: meta.modified()?,
                });
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

/// Lists upload files under `root/uploads`, at most `limit`. Blocking.
pub(crate) fn list_upload_files(root: &Path, limit: usize) -> io::Result<Vec<UploadFile>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root.join("uploads"))? {
        let e = e?;
        let Ok(id) = e.file_name().into_string() else {
            continue;
        };
        let Ok(meta) = e.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        out.push(UploadFile {
            id,
            size: meta.len(),
            modified: meta.modified()?,
        });
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

fn sorted_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort_unstable();
    Ok(v)
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

    #[test]
    fn blob_files_are_listed_in_pages() {
        let dir = tempfile::tempdir().unwrap();
        let mut want = Vec::new();
        for n in 0..20u8 {
            let d = blob(n);
            let p = dir.path().join("blobs/sha256").join(&d.hex()[..2]);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join(d.hex()), [n; 3]).unwrap();
            want.push(d.hex().to_owned());
        }
        want.sort();
        let mut got = Vec::new();
        let mut after: Option<Digest> = None;
        loop {
            let page = list_blob_files(dir.path(), after.as_ref(), 3).unwrap();
            let Some(last) = page.last() else { break };
            assert!(page.len() <= 3);
            after = Some(last.digest.clone());
            got.extend(page.iter().map(|f| f.digest.hex().to_owned()));
        }
        assert_eq!(got, want);
    }
}
