//! Backups of the embedded database: one read transaction copied, table by table, into a fresh
//! redb file (the backup's `meta.redb`, itself a database this store opens), and the reading of
//! such a copy (its blob list, its counts).
//!
//! A redb read transaction sees one committed state however long it lives, and the single
//! writer keeps committing meanwhile: the copy is consistent without stopping anything. Copying
//! rows (rather than the file's pages) also compacts it. Upload sessions are left out: their
//! files are not part of a backup, and a restored registry has no uploads in progress.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableHandle,
};

use super::store::RedbMetaStore;
use super::tables::*;
use crate::backup::{SnapshotCounts, SnapshotFile};
use crate::{Result, StoreError};

/// Rows written per transaction of the copy, at most (bounds the copy's uncommitted state).
const COPY_BATCH: usize = 10_000;
/// Bytes (keys and values) written per transaction of the copy, about (manifests may be MiBs).
const COPY_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// Prefix of the snapshot files written beside the database.
const SNAPSHOT_PREFIX: &str = ".backup-snapshot-";

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Every table the store keeps. A table the database holds that is not here makes a backup
/// fail rather than silently leave it out (a new table must be added here).
const KNOWN: [&str; 14] = [
    "repos",
    "blobs",
    "blob_links",
    "manifests",
    "tags",
    "referrers",
    "uploads",
    "records",
    "tag_history",
    "manifest_parents",
    "manifest_pulls",
    "blob_link_times",
    "gc_refs",
    "gc_state",
];

/// Takes the snapshot on the blocking pool.
pub(super) async fn snapshot(s: &RedbMetaStore) -> Result<SnapshotFile> {
    let db = s.db.clone();
    let dir = s
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    tokio::task::spawn_blocking(move || {
        // Backups run one at a time (the service serializes them with collections): older
        // snapshot files are leftovers of a process that died during one.
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(SNAPSHOT_PREFIX) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let path = dir.join(format!(
            "{SNAPSHOT_PREFIX}{}-{}.redb",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let txn = db.begin_read()?;
        let file = SnapshotFile::new(path.clone(), SnapshotCounts::default());
        let counts = copy_all(&txn, &path)?;
        Ok(file.with_counts(counts))
    })
    .await
    .map_err(|e| StoreError::Db(format!("snapshot task failed: {e}")))?
}

fn copy_all(src: &ReadTransaction, dest: &Path) -> Result<SnapshotCounts> {
    for t in src.list_tables()? {
        if !KNOWN.contains(&t.name()) {
            return Err(StoreError::Db(format!(
                "table {} is unknown to backups: refusing an incomplete backup",
                t.name()
            )));
        }
    }
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest)?;
    }
    let out = Database::create(dest)?;
    {
        let txn = out.begin_write()?;
        create_all(&txn)?;
        txn.commit()?;
    }
    copy(src, &out, REPOS)?;
    copy(src, &out, BLOBS)?;
    copy(src, &out, LINKS)?;
    copy(src, &out, MANIFESTS)?;
    copy(src, &out, TAGS)?;
    copy(src, &out, REFERRERS)?;
    copy(src, &out, RECORDS)?;
    copy(src, &out, TAG_HISTORY)?;
    copy(src, &out, PARENTS)?;
    copy(src, &out, PULLS)?;
    copy(src, &out, LINK_TIMES)?;
    copy(src, &out, GC_REFS)?;
    copy(src, &out, GC_STATE)?;
    // Every linked blob has a record (links write both); should one lack it, the copy gets one,
    // so the copy's `blobs` table is the whole list of blobs a restore needs.
    {
        let links = src.open_table(LINKS)?;
        let blobs = src.open_table(BLOBS)?;
        let txn = out.begin_write()?;
        {
            let mut t = txn.open_table(BLOBS)?;
            for item in links.iter()? {
                let (k, v) = item?;
                let Some((_, digest)) = k.value().split_once('\0') else {
                    continue;
                };
                if blobs.get(digest)?.is_none() {
                    t.insert(digest, v.value())?;
                }
            }
        }
        txn.commit()?;
    }
    let counts = counts_of(&out.begin_read()?)?;
    drop(out);
    std::fs::File::open(dest)?.sync_all()?;
    Ok(counts)
}

/// Copies one table, [`COPY_BATCH`] rows per transaction; the last commit is durable.
fn copy<K: redb::Key + 'static, V: redb::Value + 'static>(
    src: &ReadTransaction,
    out: &Database,
    def: TableDefinition<K, V>,
) -> Result<()> {
    let table = src.open_table(def)?;
    let mut rows = table.iter()?;
    loop {
        let mut txn = out.begin_write()?;
        let mut done = false;
        {
            let mut t = txn.open_table(def)?;
            let mut bytes = 0usize;
            for _ in 0..COPY_BATCH {
                match rows.next() {
                    Some(item) => {
                        let (k, v) = item?;
                        let (kv, vv) = (k.value(), v.value());
                        bytes += K::as_bytes(&kv).as_ref().len() + V::as_bytes(&vv).as_ref().len();
                        t.insert(&kv, &vv)?;
                        if bytes >= COPY_BATCH_BYTES {
                            break;
                        }
                    }
                    None => {
                        done = true;
                        break;
                    }
                }
            }
        }
        if !done {
            txn.set_durability(Durability::None)
                .map_err(|e| StoreError::Db(e.to_string()))?;
        }
        txn.commit()?;
        if done {
            return Ok(());
        }
    }
}

fn counts_of(txn: &ReadTransaction) -> Result<SnapshotCounts> {
    let mut c = SnapshotCounts {
        repositories: txn.open_table(REPOS)?.len()?,
        manifests: txn.open_table(MANIFESTS)?.len()?,
        tags: txn.open_table(TAGS)?.len()?,
        records: txn.open_table(RECORDS)?.len()?,
        ..SnapshotCounts::default()
    };
    for item in txn.open_table(BLOBS)?.iter()? {
        let (_, size) = item?;
        c.blobs += 1;
        c.blob_bytes += size.value();
    }
    Ok(c)
}

/// A backup's metadata copy, opened read-only: what it holds and the blobs it names.
pub struct SnapshotReader {
    db: redb::ReadOnlyDatabase,
}

impl SnapshotReader {
    /// Opens the copy at `path` (refusing a file that is not a database of this store).
    pub fn open(path: &Path) -> Result<Self> {
        let db = redb::ReadOnlyDatabase::open(path)?;
        {
            let txn = db.begin_read()?;
            txn.open_table(BLOBS)?;
            txn.open_table(MANIFESTS)?;
        }
        Ok(SnapshotReader { db })
    }

    /// Its counts (repositories, manifests, tags, records, blobs and their bytes).
    pub fn counts(&self) -> Result<SnapshotCounts> {
        counts_of(&self.db.begin_read()?)
    }

    /// Blobs it names, in key order strictly after `after`, at most `limit`, with their sizes.
    /// A key that is not a digest is an error (a damaged copy).
    pub fn blobs(&self, after: Option<&str>, limit: usize) -> Result<Vec<(oci::Digest, u64)>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(BLOBS)?;
        let range = match after {
            Some(a) => {
                t.range::<&str>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))?
            }
            None => t.range::<&str>(..)?,
        };
        let mut out = Vec::new();
        for item in range.take(limit) {
            let (k, v) = item?;
            let d = oci::Digest::parse(k.value()).map_err(|e| {
                StoreError::Db(format!("blob record {:?} is not a digest: {e}", k.value()))
            })?;
            out.push((d, v.value()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MetaStore;

    /// A table the copy does not know fails the backup rather than being left out; upload
    /// sessions are left out on purpose.
    #[tokio::test]
    async fn an_unknown_table_fails_the_backup_and_uploads_stay_out() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbMetaStore::open(&dir.path().join("meta.redb")).unwrap();
        s.upload_create(crate::UploadRecord {
            id: "u1".into(),
            repo: "a".into(),
            started: 0,
            owner: None,
        })
        .await
        .unwrap();
        let snap = s.backup_snapshot().await.unwrap();
        let copy = redb::ReadOnlyDatabase::open(snap.path()).unwrap();
        assert!(
            copy.begin_read()
                .unwrap()
                .open_table(UPLOADS)
                .unwrap()
                .is_empty()
                .unwrap()
        );
        drop(copy);
        drop(snap);

        const EXTRA: TableDefinition<&str, u64> = TableDefinition::new("something_new");
        let txn = s.db.begin_write().unwrap();
        txn.open_table(EXTRA).unwrap().insert("k", 1).unwrap();
        txn.commit().unwrap();
        let e = s.backup_snapshot().await.unwrap_err();
        assert!(e.to_string().contains("something_new"), "{e}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(SNAPSHOT_PREFIX))
            .collect();
        assert!(leftovers.is_empty(), "a failed snapshot leaves no file");
    }

    /// Tables larger than one copy transaction arrive whole.
    #[tokio::test]
    async fn large_tables_are_copied_in_several_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbMetaStore::open(&dir.path().join("meta.redb")).unwrap();
        let n = COPY_BATCH * 2 + 7;
        s.write(move |txn| {
            let mut t = txn.open_table(RECORDS)?;
            for i in 0..n {
                t.insert(
                    key(&["ns", &format!("{i:08}")]).as_str(),
                    format!("v{i}").as_bytes(),
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
        let snap = s.backup_snapshot().await.unwrap();
        assert_eq!(snap.counts().records, n as u64);
        let copy = redb::ReadOnlyDatabase::open(snap.path()).unwrap();
        let txn = copy.begin_read().unwrap();
        let t = txn.open_table(RECORDS).unwrap();
        let last = key(&["ns", &format!("{:08}", n - 1)]);
        assert_eq!(
            t.get(last.as_str()).unwrap().unwrap().value(),
            format!("v{}", n - 1).as_bytes()
        );
    }
}
