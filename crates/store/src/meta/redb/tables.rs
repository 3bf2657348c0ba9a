//! The database layout: tables, key encoding and the stored manifest format, shared by every
//! concern of the embedded metadata store.

use std::ops::Bound;

use bytes::Bytes;
use oci::Digest;
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::meta::{Page, StoredManifest};
use crate::{Result, StoreError};

pub(super) const REPOS: TableDefinition<&str, u64> = TableDefinition::new("repos");
pub(super) const BLOBS: TableDefinition<&str, u64> = TableDefinition::new("blobs");
pub(super) const LINKS: TableDefinition<&str, u64> = TableDefinition::new("blob_links");
pub(super) const MANIFESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("manifests");
pub(super) const TAGS: TableDefinition<&str, &str> = TableDefinition::new("tags");
pub(super) const REFERRERS: TableDefinition<&str, &[u8]> = TableDefinition::new("referrers");
pub(super) const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
pub(super) const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// Tag changes: key repo, tag, time-ordered sequence.
pub(super) const TAG_HISTORY: TableDefinition<&str, &[u8]> = TableDefinition::new("tag_history");
/// Index -> child links, keyed child first: "which indexes in this repository list this manifest".
pub(super) const PARENTS: TableDefinition<&str, u64> = TableDefinition::new("manifest_parents");
/// Last pull of a manifest (unix seconds), key repo, digest; written in batches by the registry.
pub(super) const PULLS: TableDefinition<&str, u64> = TableDefinition::new("manifest_pulls");
/// Creation time (unix seconds) of each blob link, keyed digest, repository.
pub(super) const LINK_TIMES: TableDefinition<&str, u64> = TableDefinition::new("blob_link_times");
/// Blobs referenced by manifests pushed since the current collection began: digest -> generation.
pub(super) const GC_REFS: TableDefinition<&str, u64> = TableDefinition::new("gc_refs");
/// Collector state: `generation` -> the current collection generation.
pub(super) const GC_STATE: TableDefinition<&str, u64> = TableDefinition::new("gc_state");

/// Creates every table (called when the database is opened), so reads never meet a missing one.
pub(super) fn create_all(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(REPOS)?;
    txn.open_table(BLOBS)?;
    txn.open_table(LINKS)?;
    txn.open_table(MANIFESTS)?;
    txn.open_table(TAGS)?;
    txn.open_table(REFERRERS)?;
    txn.open_table(UPLOADS)?;
    txn.open_table(RECORDS)?;
    txn.open_table(PARENTS)?;
    txn.open_table(TAG_HISTORY)?;
    txn.open_table(PULLS)?;
    txn.open_table(LINK_TIMES)?;
    txn.open_table(GC_REFS)?;
    txn.open_table(GC_STATE)?;
    Ok(())
}

/// Keys join parts with NUL, which no name, tag or digest may contain, so prefixes never collide.
pub(super) fn key(parts: &[&str]) -> String {
    parts.join("\0")
}

/// The half-open key range holding every key that starts with `prefix` and a NUL.
pub(super) fn prefix_range(prefix: &str, after: Option<&str>) -> (Bound<String>, Bound<String>) {
    let lo = match after {
        Some(a) => Bound::Excluded(format!("{prefix}\0{a}")),
        None => Bound::Included(format!("{prefix}\0")),
    };
    (lo, Bound::Excluded(format!("{prefix}\u{1}")))
}

/// A manifest's stored header (its metadata; the body follows it).
#[derive(Serialize, Deserialize)]
pub(super) struct ManifestMeta {
    pub(super) media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) subject: Option<Digest>,
    /// Index children, so their parent links can be removed with the index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) children: Vec<Digest>,
    /// When it was first pushed (unix seconds); absent in records written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) pushed: Option<u64>,
}

/// Stored value of a manifest: a length-prefixed JSON header, then the body bytes verbatim.
pub(super) fn encode_manifest(meta: &ManifestMeta, body: &[u8]) -> Vec<u8> {
    let head = serde_json::to_vec(meta).expect("manifest meta serializes");
    let mut v = Vec::with_capacity(4 + head.len() + body.len());
    v.extend_from_slice(&(head.len() as u32).to_le_bytes());
    v.extend_from_slice(&head);
    v.extend_from_slice(body);
    v
}

pub(super) fn decode_meta(v: &[u8]) -> Result<ManifestMeta> {
    let corrupt = || StoreError::Db("corrupt manifest record".into());
    let len = u32::from_le_bytes(v.get(..4).ok_or_else(corrupt)?.try_into().expect("4 bytes"));
    let head = v.get(4..4 + len as usize).ok_or_else(corrupt)?;
    serde_json::from_slice(head).map_err(|_| corrupt())
}

pub(super) fn decode_manifest(digest: Digest, v: &[u8]) -> Result<StoredManifest> {
    let meta = decode_meta(v)?;
    // decode_meta checked that the length prefix and header are in bounds.
    let len = u32::from_le_bytes(v[..4].try_into().expect("4 bytes")) as usize;
    Ok(StoredManifest {
        digest,
        media_type: meta.media_type,
        body: Bytes::copy_from_slice(&v[4 + len..]),
        subject: meta.subject,
    })
}

pub(super) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(super) fn list_keys<V: redb::Value + 'static>(
    table: &impl ReadableTable<&'static str, V>,
    prefix: Option<&str>,
    page: &Page,
) -> Result<Vec<String>> {
    let n = page.n.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    if n == 0 {
        return Ok(out);
    }
    let strip = |k: &str| match prefix {
        Some(p) => k[p.len() + 1..].to_owned(),
        None => k.to_owned(),
    };
    let range = match prefix {
        Some(p) => table.range::<&str>((
            as_ref_bound(&prefix_range(p, page.last.as_deref()).0),
            as_ref_bound(&prefix_range(p, None).1),
        ))?,
        None => match &page.last {
            Some(l) => table.range::<&str>((Bound::Excluded(l.as_str()), Bound::Unbounded))?,
            None => table.range::<&str>(..)?,
        },
    };
    for item in range {
        let (k, _) = item?;
        out.push(strip(k.value()));
        if out.len() >= n {
            break;
        }
    }
    Ok(out)
}

pub(super) fn as_ref_bound(b: &Bound<String>) -> Bound<&str> {
    match b {
        Bound::Included(s) => Bound::Included(s.as_str()),
        Bound::Excluded(s) => Bound::Excluded(s.as_str()),
        Bound::Unbounded => Bound::Unbounded,
    }
}
