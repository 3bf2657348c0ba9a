//! Online backups (docs/operations.md, "Backups"): the consistent start of one, taken by
//! [`crate::manage::Manage::backup`] for every front door.
//!
//! [`BackupStart::take`] first pauses garbage collection (waiting for a running collection to
//! finish), then has the metadata store write its snapshot. While the returned value lives no
//! blob file is deleted, so every blob the snapshot names can be copied, however long that
//! takes; pushes go on (what they add is not in the snapshot, and blobs are content addressed,
//! so a blob written meanwhile is harmless). Dropping it deletes the snapshot file and lets
//! collections run again.

use std::time::{SystemTime, UNIX_EPOCH};

use store::backup::{SnapshotCounts, SnapshotFile};
use store::{MetaStore, StoreError};

use crate::gc::{Collector, GcPause};

/// A backup under way: the metadata snapshot, with garbage collection paused.
pub struct BackupStart {
    snapshot: SnapshotFile,
    created: u64,
    _pause: GcPause,
}

impl BackupStart {
    /// Pauses `collector`, then snapshots `meta`.
    pub async fn take(collector: &Collector, meta: &dyn MetaStore) -> Result<Self, StoreError> {
        let pause = collector.pause().await;
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let snapshot = meta.backup_snapshot().await?;
        Ok(BackupStart {
            snapshot,
            created,
            _pause: pause,
        })
    }

    /// The snapshot file (`meta.redb` of the backup).
    pub fn snapshot(&self) -> &SnapshotFile {
        &self.snapshot
    }

    /// What it holds.
    pub fn counts(&self) -> SnapshotCounts {
        self.snapshot.counts()
    }

    /// Unix seconds when it was taken.
    pub fn created(&self) -> u64 {
        self.created
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::gc::GcOptions;

    /// A collection asked for while a backup runs waits until the backup is dropped; the
    /// snapshot file goes with it.
    #[tokio::test]
    async fn a_collection_waits_for_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(store::RedbMetaStore::open(&dir.path().join("meta.redb")).unwrap());
        let blobs = Arc::new(store::FsBlobStore::open(dir.path()).unwrap());
        let d = oci::Digest::sha256(b"x");
        meta.link_blob("a", &d, 1).await.unwrap();
        let svc = Arc::new(
            crate::Service::builder(blobs, meta.clone())
                .build()
                .unwrap(),
        );
        let b = BackupStart::take(svc.collector(), &*meta).await.unwrap();
        assert_eq!(b.counts().blobs, 1);
        let path = b.snapshot().path().to_owned();
        assert!(path.exists());
        let s2 = svc.clone();
        let gc = tokio::spawn(async move { s2.collector().collect(&GcOptions::default()).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !gc.is_finished(),
            "the collection waits while the backup runs"
        );
        drop(b);
        tokio::time::timeout(Duration::from_secs(10), gc)
            .await
            .expect("the collection runs once the backup is over")
            .unwrap()
            .unwrap();
        assert!(!path.exists());
    }
}
