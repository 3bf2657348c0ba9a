//! The metadata side of online garbage collection (see docs/gc.md for the safety argument).
//!
//! The registry's collector drives these: [`GcMeta::gc_begin`] opens a collection generation,
//! [`GcMeta::gc_mark`] scans one consistent snapshot (every manifest of every repository, every
//! blob link) and proposes what is unreferenced, and [`GcMeta::gc_sweep`] deletes proposals in one
//! transaction that re-checks each of them against writes made since the snapshot:
//!
//! - `put_manifest` records the blobs it references with the current generation, so a manifest
//!   pushed after the snapshot vetoes the deletion of its blobs;
//! - every blob link carries its creation time, so young links and links made after the snapshot
//!   veto it.
//!
//! [`super::redb`] implements this in the embedded database; docs/gc.md gives the same operations
//! as SQL queries for a shared database.

use async_trait::async_trait;
use oci::Digest;
use serde::Serialize;

use super::UploadRecord;
use crate::Result;

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

pub(crate) fn hex_key(hex: &str) -> u128 {
    hex.get(..32)
        .and_then(|h| u128::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}
