//! What scanning keeps between runs (`scans.redb` beside the vulnerability database): each
//! layer's inventory by layer digest, and each scanned manifest's record (its layers, status
//! and time). Findings are not stored: they are a join of these inventories with the current
//! advisories, recomputed in milliseconds, so a database import re-matches every stored image
//! without reading a layer again.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::inventory::{ImageInventory, LayerInventory};

/// Layer digest -> [`LayerInventory`] (JSON).
const LAYERS: TableDefinition<&str, &[u8]> = TableDefinition::new("layer_inventories");
/// Manifest digest -> [`ImageRecord`] (JSON).
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");

/// The analysers' generation: a stored layer inventory from another generation is analysed
/// again (an analyser learnt a new file format or fixed a parser).
pub const ANALYZER_GENERATION: u32 = 1;

/// A failure of the scan results store.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// The database could not be opened, read or written.
    #[error("scan results database: {0}")]
    Db(String),
    /// A stored record does not decode (written by an incompatible version).
    #[error("scan results database: stored record {key} does not decode: {reason}")]
    Decode {
        /// The record's key.
        key: String,
        /// Why.
        reason: String,
    },
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for ResultsError {
            fn from(e: $t) -> Self {
                ResultsError::Db(e.to_string())
            }
        }
    )*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Where a manifest's scan stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "detail")]
pub enum ScanState {
    /// Queued, not yet analysed.
    Queued,
    /// Analysed: its inventory is stored.
    Done,
    /// Not analysed, and why (an unreadable layer, a manifest that is not an image).
    Failed(String),
    /// Not analysed because the queue was full when it was pushed (a rescan picks it up).
    Skipped(String),
}

/// One scanned manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The manifest's digest.
    pub digest: String,
    /// The repository it was first scanned in (ignore rules match image names).
    pub repo: String,
    /// Its layers' digests, lowest first (an image manifest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
    /// Its children's digests (an index): each is scanned as an image of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
    /// Where the scan stands.
    pub state: ScanState,
    /// When the state last changed (unix seconds).
    pub updated: u64,
    /// How long the analysis took, in milliseconds (0 until done).
    #[serde(default)]
    pub millis: u64,
}

/// The scan results database.
#[derive(Clone)]
pub struct ScanResults {
    db: Arc<Database>,
}

#[derive(Serialize, Deserialize)]
struct StoredLayer {
    generation: u32,
    inventory: LayerInventory,
}

impl ScanResults {
    /// Opens (creating if needed) `dir/scans.redb`.
    pub fn open(dir: &Path) -> Result<ScanResults, ResultsError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| ResultsError::Db(format!("creating {}: {e}", dir.display())))?;
        let db = Database::create(dir.join("scans.redb"))?;
        let txn = db.begin_write()?;
        txn.open_table(LAYERS)?;
        txn.open_table(IMAGES)?;
        txn.commit()?;
        Ok(ScanResults { db: Arc::new(db) })
    }

    /// The stored inventory of layer `digest`, if it was analysed by this generation of the
    /// analysers.
    pub fn layer(&self, digest: &str) -> Result<Option<LayerInventory>, ResultsError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(LAYERS)?;
        let Some(v) = t.get(digest)? else {
            return Ok(None);
        };
        let stored: StoredLayer = decode(digest, v.value())?;
        Ok((stored.generation == ANALYZER_GENERATION).then_some(stored.inventory))
    }

    /// Keeps layer `inv.digest`'s inventory.
    pub fn put_layer(&self, inv: &LayerInventory) -> Result<(), ResultsError> {
        let bytes = serde_json::to_vec(&StoredLayer {
            generation: ANALYZER_GENERATION,
            inventory: inv.clone(),
        })
        .map_err(|e| ResultsError::Db(e.to_string()))?;
        let txn = self.db.begin_write()?;
        txn.open_table(LAYERS)?
            .insert(inv.digest.as_str(), bytes.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// The record of manifest `digest`, if it was ever queued.
    pub fn image(&self, digest: &str) -> Result<Option<ImageRecord>, ResultsError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(IMAGES)?;
        match t.get(digest)? {
            Some(v) => Ok(Some(decode(digest, v.value())?)),
            None => Ok(None),
        }
    }

    /// Writes manifest `rec.digest`'s record.
    pub fn put_image(&self, rec: &ImageRecord) -> Result<(), ResultsError> {
        let bytes = serde_json::to_vec(rec).map_err(|e| ResultsError::Db(e.to_string()))?;
        let txn = self.db.begin_write()?;
        txn.open_table(IMAGES)?
            .insert(rec.digest.as_str(), bytes.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// The combined inventory of an analysed image manifest, from its stored layers; `None`
    /// when it is not analysed (or a layer's inventory is missing).
    pub fn inventory(&self, rec: &ImageRecord) -> Result<Option<ImageInventory>, ResultsError> {
        if rec.state != ScanState::Done || !rec.children.is_empty() {
            return Ok(None);
        }
        let mut layers = Vec::with_capacity(rec.layers.len());
        for d in &rec.layers {
            match self.layer(d)? {
                Some(l) => layers.push(l),
                None => return Ok(None),
            }
        }
        Ok(Some(ImageInventory::combine(&layers)))
    }

    /// Every image record, in digest order (for re-matching the whole registry).
    pub fn images(&self) -> Result<Vec<ImageRecord>, ResultsError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(IMAGES)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, ResultsError> {
    serde_json::from_slice(bytes).map_err(|e| ResultsError::Decode {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{FileFinding, Package, PackageKind};

    #[test]
    fn layers_and_images_survive_a_reopen_and_combine() {
        let dir = tempfile::tempdir().unwrap();
        let r = ScanResults::open(dir.path()).unwrap();
        let layer = LayerInventory {
            digest: "sha256:aa".into(),
            files: vec![FileFinding {
                path: "/var/lib/dpkg/status".into(),
                analyzer: "dpkg".into(),
                packages: vec![Package {
                    kind: PackageKind::Deb,
                    name: "libc6".into(),
                    version: "2.36-9+deb12u3".into(),
                    source_name: Some("glibc".into()),
                    source_version: None,
                    arch: Some("amd64".into()),
                    licenses: vec![],
                    path: "/var/lib/dpkg/status".into(),
                    layer: String::new(),
                }],
                os: None,
            }],
            ..Default::default()
        };
        r.put_layer(&layer).unwrap();
        let rec = ImageRecord {
            digest: "sha256:m".into(),
            repo: "team/app".into(),
            layers: vec!["sha256:aa".into()],
            children: vec![],
            state: ScanState::Done,
            updated: 1,
            millis: 3,
        };
        r.put_image(&rec).unwrap();
        drop(r);
        let r = ScanResults::open(dir.path()).unwrap();
        assert_eq!(r.layer("sha256:aa").unwrap().unwrap(), layer);
        assert_eq!(r.image("sha256:m").unwrap().unwrap(), rec);
        let inv = r.inventory(&rec).unwrap().unwrap();
        assert_eq!(inv.packages.len(), 1);
        assert_eq!(inv.packages[0].layer, "sha256:aa");
        assert!(r.layer("sha256:bb").unwrap().is_none());
        assert_eq!(r.images().unwrap().len(), 1);
    }
}
