//! The vulnerability database on disk: advisories from every imported feed, in one redb file
//! (`DIR/vulndb.redb`), loaded into a [`vuln::Index`] for matching.
//!
//! Layout. A `feeds` table maps each feed name to its [`FeedStatus`] (kind, source, import
//! time, SHA-256 of the content, record count); each feed's advisories live in a table of their
//! own, `advisories/<feed name>`, keyed by advisory id (and first package), each value one advisory as compact JSON
//! ([`vuln::Advisory`]). Loading the index is one read transaction scanning those tables.
//!
//! Import is atomic per feed: one write transaction deletes the feed's table, fills it again
//! as the source is read (records are streamed in, never all held), and writes the feed's
//! status; an error or a crash before the commit leaves the previous import as it was.
//!
//! Sources ([`VulnDb::import_path`], detected by content): a directory of OSV JSON files
//! (recursive), an OSV zip (osv.dev's per-ecosystem `all.zip`), one OSV JSON file, the Debian
//! security tracker's JSON, an Alpine secdb JSON. [`VulnDb::update`] downloads configured feeds
//! over HTTP(S) ([`update`]) and imports them the same way. [`match_image`] joins an image
//! inventory with an index.

mod import;
mod matching;
pub mod update;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
};
use serde::{Deserialize, Serialize};

pub use import::FeedKind;
pub use matching::{apply_ignores, match_image};
pub use update::{FeedSource, UpdateConfig, UpdateOutcome, default_sources};

/// The file name of the database inside its directory.
pub const DB_FILE: &str = "vulndb.redb";

const FEEDS: TableDefinition<&str, &[u8]> = TableDefinition::new("feeds");
const ADVISORY_PREFIX: &str = "advisories/";

/// Largest single OSV record (one JSON file or zip member) read into memory.
pub const MAX_RECORD_BYTES: u64 = 16 << 20;

/// What went wrong with the database or a feed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The redb store failed.
    #[error("vulnerability database: {0}")]
    Store(#[from] redb::Error),
    /// A feed's content is not valid in its format.
    #[error(transparent)]
    Parse(#[from] vuln::ParseError),
    /// A zip archive is damaged.
    #[error("{origin}: zip: {message}")]
    Zip {
        /// The archive.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A file is none of the formats the database reads.
    #[error(
        "{origin}: not an OSV record, OSV zip or directory, Debian tracker JSON or Alpine secdb"
    )]
    UnknownFormat {
        /// The file.
        origin: String,
    },
    /// A record is larger than [`MAX_RECORD_BYTES`].
    #[error("{origin}: record larger than {limit} bytes")]
    TooLarge {
        /// The file or archive member.
        origin: String,
        /// The cap.
        limit: u64,
    },
    /// A download failed.
    #[error("{url}: {message}")]
    Http {
        /// The URL.
        url: String,
        /// What happened.
        message: String,
    },
    /// A download's content does not have the configured SHA-256.
    #[error("{url}: sha256 {actual}, expected {expected}")]
    Checksum {
        /// The URL.
        url: String,
        /// The configured digest.
        expected: String,
        /// The content's digest.
        actual: String,
    },
    /// A stored value does not decode (the file was written by something else).
    #[error("vulnerability database: stored {key}: {message}")]
    Corrupt {
        /// The table and key.
        key: String,
        /// Why.
        message: String,
    },
    /// A blocking import task failed to run.
    #[error("import task: {0}")]
    Task(String),
}

impl DbError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DbError::Io {
            path: path.into(),
            source,
        }
    }
}

fn st<E: Into<redb::Error>>(e: E) -> DbError {
    DbError::Store(e.into())
}

/// One imported feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedStatus {
    /// Its name (the configured source name, or the path it was imported from).
    pub name: String,
    /// Its format.
    pub kind: FeedKind,
    /// The path or URL it was read from.
    pub source: String,
    /// When it was imported (Unix seconds).
    pub imported_at: u64,
    /// SHA-256 of the content (of a directory: of its files' relative paths and contents, in
    /// path order), hex.
    pub sha256: String,
    /// Advisories stored.
    pub records: u64,
}

/// How loading the index went.
#[derive(Debug, Clone)]
pub struct LoadStats {
    /// Advisories read from the store.
    pub advisories: usize,
    /// Time to read and decode them.
    pub read: Duration,
    /// Time to build the index.
    pub build: Duration,
}

/// The vulnerability database (cheap to clone; one redb file).
#[derive(Clone)]
pub struct VulnDb {
    db: Arc<Database>,
    dir: PathBuf,
}

impl std::fmt::Debug for VulnDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VulnDb").field("dir", &self.dir).finish()
    }
}

/// The current time in Unix seconds.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A record's key in its feed's table: its id, and the first package it names (the Debian
/// tracker has one record per CVE and source package).
fn record_key(adv: &vuln::Advisory) -> String {
    match adv.affected.first() {
        Some(a) => format!("{}\u{0}{}\u{0}{}", adv.id, a.ecosystem, a.name),
        None => adv.id.clone(),
    }
}

fn table_name(feed: &str) -> String {
    format!("{ADVISORY_PREFIX}{feed}")
}

impl VulnDb {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<VulnDb, DbError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| DbError::io(&dir, e))?;
        let db = Database::create(dir.join(DB_FILE)).map_err(st)?;
        let tx = db.begin_write().map_err(st)?;
        tx.open_table(FEEDS).map_err(st)?;
        tx.commit().map_err(st)?;
        Ok(VulnDb {
            db: Arc::new(db),
            dir,
        })
    }

    /// The directory the database lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Imports `path` as the feed named by its canonical path (re-importing the same path
    /// replaces it).
    pub fn import_path(&self, path: impl AsRef<Path>) -> Result<FeedStatus, DbError> {
        let path = path.as_ref();
        let canon = std::fs::canonicalize(path).map_err(|e| DbError::io(path, e))?;
        let name = canon.display().to_string();
        self.import_named(&name, &canon, &name, None)
    }

    /// Imports `path` as the feed `name`, recording `source` as where it came from. A known
    /// content hash (from a download) saves hashing the file again.
    pub fn import_named(
        &self,
        name: &str,
        path: &Path,
        source: &str,
        sha256: Option<String>,
    ) -> Result<FeedStatus, DbError> {
        let kind = import::detect(path)?;
        let sha256 = match sha256 {
            Some(h) => h,
            None => import::hash_source(path, kind)?,
        };
        let started = Instant::now();
        let tx = self.db.begin_write().map_err(st)?;
        let table = table_name(name);
        let def: TableDefinition<&str, &[u8]> = TableDefinition::new(&table);
        tx.delete_table(def).map_err(st)?;
        let mut records = 0u64;
        {
            let mut t = tx.open_table(def).map_err(st)?;
            let mut sink = |adv: vuln::Advisory| -> Result<(), DbError> {
                let bytes = serde_json::to_vec(&adv).map_err(|e| DbError::Corrupt {
                    key: adv.id.clone(),
                    message: e.to_string(),
                })?;
                // Two records with one id in a feed (the shared data's DLA directory holds
                // DLA-1931-2 twice): the most recently modified one is kept.
                let key = record_key(&adv);
                let previous = t
                    .insert(key.as_str(), bytes.as_slice())
                    .map_err(st)?
                    .map(|old| old.value().to_vec());
                match previous {
                    None => records += 1,
                    Some(old) => {
                        let old: Option<vuln::Advisory> = serde_json::from_slice(&old).ok();
                        if let Some(old) = old
                            && old.modified > adv.modified
                        {
                            let bytes = serde_json::to_vec(&old).map_err(|e| DbError::Corrupt {
                                key: old.id.clone(),
                                message: e.to_string(),
                            })?;
                            t.insert(key.as_str(), bytes.as_slice()).map_err(st)?;
                        }
                    }
                }
                Ok(())
            };
            import::read_source(path, kind, &mut sink)?;
        }
        let status = FeedStatus {
            name: name.to_string(),
            kind,
            source: source.to_string(),
            imported_at: now_secs(),
            sha256,
            records,
        };
        {
            let mut feeds = tx.open_table(FEEDS).map_err(st)?;
            let bytes = serde_json::to_vec(&status).map_err(|e| DbError::Corrupt {
                key: name.to_string(),
                message: e.to_string(),
            })?;
            feeds.insert(name, bytes.as_slice()).map_err(st)?;
        }
        tx.commit().map_err(st)?;
        tracing::info!(
            feed = name,
            kind = ?kind,
            records,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "vulnerability feed imported"
        );
        Ok(status)
    }

    /// Removes a feed and its advisories. True when it existed.
    pub fn remove_feed(&self, name: &str) -> Result<bool, DbError> {
        let tx = self.db.begin_write().map_err(st)?;
        let table = table_name(name);
        let def: TableDefinition<&str, &[u8]> = TableDefinition::new(&table);
        tx.delete_table(def).map_err(st)?;
        let existed = tx
            .open_table(FEEDS)
            .map_err(st)?
            .remove(name)
            .map_err(st)?
            .is_some();
        tx.commit().map_err(st)?;
        Ok(existed)
    }

    /// Every imported feed, by name.
    pub fn status(&self) -> Result<Vec<FeedStatus>, DbError> {
        let tx = self.db.begin_read().map_err(st)?;
        let feeds = tx.open_table(FEEDS).map_err(st)?;
        let mut out = Vec::new();
        for row in feeds.iter().map_err(st)? {
            let (k, v) = row.map_err(st)?;
            let status: FeedStatus =
                serde_json::from_slice(v.value()).map_err(|e| DbError::Corrupt {
                    key: format!("feeds/{}", k.value()),
                    message: e.to_string(),
                })?;
            out.push(status);
        }
        Ok(out)
    }

    /// True when there is no feed, or the oldest import is older than `max_age`.
    pub fn is_stale(&self, max_age: Duration) -> Result<bool, DbError> {
        let feeds = self.status()?;
        let now = now_secs();
        Ok(feeds.is_empty()
            || feeds
                .iter()
                .any(|f| now.saturating_sub(f.imported_at) > max_age.as_secs()))
    }

    /// Reads every stored advisory, feed by feed.
    pub fn advisories(&self) -> Result<Vec<vuln::Advisory>, DbError> {
        let tx = self.db.begin_read().map_err(st)?;
        let mut out = Vec::new();
        for handle in tx.list_tables().map_err(st)? {
            let name = handle.name().to_string();
            if !name.starts_with(ADVISORY_PREFIX) {
                continue;
            }
            let def: TableDefinition<&str, &[u8]> = TableDefinition::new(&name);
            let t = tx.open_table(def).map_err(st)?;
            out.reserve(t.len().map_err(st)? as usize);
            for row in t.iter().map_err(st)? {
                let (k, v) = row.map_err(st)?;
                let adv: vuln::Advisory =
                    serde_json::from_slice(v.value()).map_err(|e| DbError::Corrupt {
                        key: format!("{name}/{}", k.value()),
                        message: e.to_string(),
                    })?;
                out.push(adv);
            }
        }
        Ok(out)
    }

    /// Loads every advisory into a matching index.
    pub fn index(&self) -> Result<vuln::Index, DbError> {
        self.index_with_stats().map(|(i, _)| i)
    }

    /// [`VulnDb::index`], with how long reading and building took.
    pub fn index_with_stats(&self) -> Result<(vuln::Index, LoadStats), DbError> {
        let t0 = Instant::now();
        let advs = self.advisories()?;
        let read = t0.elapsed();
        let n = advs.len();
        let t1 = Instant::now();
        let index = vuln::Index::build(advs);
        let build = t1.elapsed();
        let stats = index.stats();
        if !stats.problems.is_empty() {
            tracing::warn!(
                problems = stats.problems.len(),
                "advisory entries that cannot be matched (see IndexStats::problems)"
            );
        }
        Ok((
            index,
            LoadStats {
                advisories: n,
                read,
                build,
            },
        ))
    }
}
