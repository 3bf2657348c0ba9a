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
