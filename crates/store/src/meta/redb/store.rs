//! The embedded database and its single writer: group commit, repository generations.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, WriteTransaction};

use crate::{Result, StoreError};

type Reply = Box<dyn FnOnce(Result<()>) + Send>;
/// One queued operation: runs in the batch's transaction, records the repositories it wrote in
/// `touched`, and says whether it poisoned the batch.
type Job = Box<dyn FnOnce(&WriteTransaction, &mut Vec<String>) -> (bool, Reply) + Send>;

/// Page cache of the metadata database.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Bound on queued write operations; callers wait when it is full.
const WRITE_QUEUE: usize = 1024;
/// Most operations folded into one commit.
const MAX_BATCH: usize = 256;

/// A [`MetaStore`](crate::MetaStore) in one embedded redb file.
///
/// Writes go through a single writer thread that folds concurrent operations into one
/// transaction and one fsync (group commit); each caller is answered only after the commit that
/// holds its operation is durable. Operations do all their checks before their first write, so
/// a refused operation leaves nothing in the shared transaction.
pub struct RedbMetaStore {
    pub(super) db: Arc<Database>,
    /// The database file (backups write their snapshot beside it).
    pub(super) path: std::path::PathBuf,
    /// Per-repository write generations, bumped by the writer thread after each commit.
    pub(super) generations: Arc<crate::Generations>,
    writer: Option<tokio::sync::mpsc::Sender<Job>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for RedbMetaStore {
    /// Stops the writer after its queued operations and waits, so the database file is closed
    /// (and can be reopened) when the store is gone.
    fn drop(&mut self) {
        self.writer.take();
        if let Some(t) = self.writer_thread.take() {
            let _ = t.join();
        }
    }
}

impl RedbMetaStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        // redb's page cache would otherwise grow toward its 1 GiB default as metadata is
        // written: bound it so memory stays flat (hot manifests still fit many times over).
        // Password hashes and the audit log live here: owner only, whatever the umask (redb
        // would create the file with the process's default mode; an empty file it initializes).
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)?;
            crate::restrict(path);
        }
        let db = Arc::new(
            Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(path)?,
        );
        {
            let txn = db.begin_write()?;
            super::tables::create_all(&txn)?;
            txn.commit()?;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(WRITE_QUEUE);
        let wdb = db.clone();
        let generations = Arc::new(crate::Generations::new());
        let wgen = generations.clone();
        let thread = std::thread::Builder::new()
            .name("wharf-meta-writer".into())
            .spawn(move || writer_loop(wdb, wgen, rx))?;
        Ok(RedbMetaStore {
            db,
            path: path.to_owned(),
            generations,
            writer: Some(tx),
            writer_thread: Some(thread),
        })
    }

    /// Runs `op` in the next group commit and returns its result once that commit is durable.
    /// For operations that touch no repository's manifests, tags, links or referrers (uploads,
    /// records, pull times, collector bookkeeping); the others use [`RedbMetaStore::write_repo`]
    /// or [`RedbMetaStore::write_touching`].
    pub(super) async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T> + Send + 'static,
    {
        self.write_touching(move |txn, _| op(txn)).await
    }

    /// [`RedbMetaStore::write`] for an operation on `repo`: its generation is bumped after the
    /// commit.
    pub(super) async fn write_repo<T, F>(&self, repo: &str, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T> + Send + 'static,
    {
        let repo = repo.to_owned();
        self.write_touching(move |txn, touched| {
            touched.push(repo);
            op(txn)
        })
        .await
    }

    /// [`RedbMetaStore::write`] for an operation that finds out inside the transaction which
    /// repositories it writes: it pushes them to its second argument, and their generations are
    /// bumped after the commit, in the writer thread, before any caller is answered (so a caller
    /// that goes away cannot skip the bump).
    pub(super) async fn write_touching<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction, &mut Vec<String>) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |txn, touched| {
            let r = op(txn, touched);
            // A database error may have left partial writes: the whole batch must not commit.
            let poisoned = matches!(r, Err(StoreError::Db(_) | StoreError::Io(_)));
            let reply: Reply = Box::new(move |commit| {
                let _ = tx.send(commit.and(r));
            });
            (poisoned, reply)
        });
        self.writer
            .as_ref()
            .ok_or_else(|| StoreError::Db("metadata writer stopped".into()))?
            .send(job)
            .await
            .map_err(|_| StoreError::Db("metadata writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Db("metadata writer stopped".into()))?
    }

    pub(super) fn read<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<T>) -> Result<T> {
        let txn = self.db.begin_read()?;
        f(&txn)
    }

    /// Runs a read that may visit many records (a repository's snapshot, a key listing, an
    /// audit query, a tag's history) on the blocking pool, so a large scan never stalls the
    /// async workers serving small requests. Point reads stay on [`Self::read`]: they take
    /// microseconds, less than the trip to another thread.
    pub(super) async fn scan<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read()?;
            f(&txn)
        })
        .await
        .map_err(|e| StoreError::Db(format!("read task failed: {e}")))?
    }
}

fn writer_loop(
    db: Arc<Database>,
    generations: Arc<crate::Generations>,
    mut rx: tokio::sync::mpsc::Receiver<Job>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let txn = match db.begin_write() {
            Ok(t) => t,
            Err(e) => {
                // Without a transaction the operations cannot run: dropping them answers each
                // caller with an error.
                tracing::error!(error = %e, batch = jobs.len(), "metadata write transaction failed to start");
                continue;
            }
        };
        let mut poisoned = false;
        let mut touched = Vec::new();
        let replies: Vec<Reply> = jobs
            .into_iter()
            .filter_map(|j| {
                // A panicking operation must not take the writer thread (and every later write)
                // down with it: its caller gets an error (the reply is dropped) and the batch,
                // which may hold its partial writes, is aborted.
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    j(&txn, &mut touched)
                })) {
                    Ok((p, r)) => {
                        poisoned |= p;
                        Some(r)
                    }
                    Err(_) => {
                        tracing::error!("a metadata operation panicked; aborting its batch");
                        poisoned = true;
                        None
                    }
                }
            })
            .collect();
        let outcome: Result<()> = if poisoned {
            let _ = txn.abort();
            Err(StoreError::Db(
                "transaction aborted after a storage error".into(),
            ))
        } else {
            txn.commit().map_err(StoreError::from)
        };
        if let Err(e) = &outcome {
            tracing::error!(error = %e, batch = replies.len(), "metadata commit failed");
        }
        // After the commit and before any reply: a reader that saw the old generation may have
        // read the old data; one that sees the new generation reads the committed data. (Bumped
        // on failure too: extra invalidation is harmless.)
        for repo in &touched {
            generations.bump(repo);
        }
        for r in replies {
            r(match &outcome {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Db(e.to_string())),
            });
        }
    }
}
