//! [`FsBlobStore`]: blobs and uploads as files on a local filesystem.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use oci::{Algorithm, Digest, Hasher};

use super::{
    BlobEntry, BlobStore, BlobStream, SMALL_BLOB, Space, UploadEntry, UploadReader, UploadState,
};
use crate::small::{DEFAULT_SMALL_BLOB_CACHE_BYTES, SmallBlobCache};
use crate::{Result, StoreError};

/// Window mapped at a time when streaming large blobs.
const READ_CHUNK: usize = 4 * 1024 * 1024;
/// Chunks read ahead of the socket per download.
const READ_AHEAD: usize = 4;
/// Chunks in flight between the network and the disk writer: bounds upload memory.
const WRITE_QUEUE: usize = 8;
/// Hash states kept in memory for idle uploads; evicted ones are rebuilt from disk.
const MAX_IDLE_UPLOAD_STATES: usize = 4096;

/// Hash state of one upload; `None` when it must be rebuilt from the file (after a restart).
type Slot = Arc<tokio::sync::Mutex<Option<(u64, Hasher)>>>;

/// A [`BlobStore`] on a local filesystem.
///
/// Layout: `blobs/<alg>/<hex[..2]>/<hex>` for blobs, `uploads/<id>` for uploads in progress.
/// Blobs are written to the upload file, fsynced, verified and renamed into place, so a crash
/// leaves either nothing or a complete, correct blob.
pub struct FsBlobStore {
    root: PathBuf,
    slots: Mutex<HashMap<String, Slot>>,
    used: Arc<AtomicU64>,
    small: SmallBlobCache,
}

fn check_upload_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(StoreError::UploadUnknown);
    }
    Ok(())
}

/// Adapts a channel receiver to a stream.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn hash_file(path: &Path, algorithm: Algorithm) -> io::Result<(u64, Hasher)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Hasher::new(algorithm);
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf)?;
        if r == 0 {
            return Ok((n, h));
        }
        h.update(&buf[..r]);
        n += r as u64;
    }
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

impl FsBlobStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        // Owner only: blobs may be private images, uploads hold them on their way in.
        crate::private_dir(&root)?;
        crate::private_dir(&root.join("blobs"))?;
        crate::private_dir(&root.join("uploads"))?;
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            crate::restrict(&root.join("blobs").join(alg.as_str()));
        }
        let used = Arc::new(AtomicU64::new(0));
        // Measuring a large store takes a while: do it off the start-up path.
        let (blobs, counter) = (root.join("blobs"), used.clone());
        std::thread::spawn(move || {
            counter.fetch_add(dir_size(&blobs), Ordering::Relaxed);
        });
        Ok(FsBlobStore {
            root,
            slots: Mutex::new(HashMap::new()),
            used,
            small: SmallBlobCache::new(DEFAULT_SMALL_BLOB_CACHE_BYTES),
        })
    }

    /// Sets the memory budget of the small-blob cache (0 turns it off).
    pub fn small_blob_cache(mut self, budget_bytes: u64) -> Self {
        self.small = SmallBlobCache::new(budget_bytes);
        self
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    fn upload_path(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    fn slot(&self, id: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.len() >= MAX_IDLE_UPLOAD_STATES && !slots.contains_key(id) {
            slots.retain(|_, s| Arc::strong_count(s) > 1);
        }
        slots.entry(id.to_owned()).or_default().clone()
    }

    fn forget(&self, id: &str) {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Loads the hash state of an upload, rebuilding it from disk when it is not in memory.
    async fn load(&self, id: &str, state: &mut Option<(u64, Hasher)>) -> Result<(u64, Hasher)> {
        if let Some(s) = state.take() {
            return Ok(s);
        }
        let path = self.upload_path(id);
        tokio::task::spawn_blocking(move || hash_file(&path, Algorithm::Sha256))
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))?
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => StoreError::UploadUnknown,
                _ => StoreError::Io(e),
            })
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn size(&self, digest: &Digest) -> Result<Option<u64>> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn get(&self, digest: &Digest, start: u64, len: u64) -> Result<BlobStream> {
        let path = self.blob_path(digest);
        let short = || {
            StoreError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "blob shorter than recorded",
            ))
        };
        let once =
            |b: Bytes| -> BlobStream { Box::pin(futures_util::stream::once(async move { Ok(b) })) };
        let not_found = |e: io::Error| match e.kind() {
            io::ErrorKind::NotFound => StoreError::BlobUnknown(digest.clone()),
            _ => StoreError::Io(e),
        };
        if len <= SMALL_BLOB {
            let whole = match self.small.get(digest) {
                Some(b) => b,
                // A page-cached read of a few KiB costs less than a trip to the blocking pool.
                None => {
                    let mut f = std::fs::File::open(&path).map_err(not_found)?;
                    let file_len = f.metadata()?.len();
                    if file_len <= SMALL_BLOB {
                        let mut buf = Vec::with_capacity(file_len as usize);
                        (&mut f).take(file_len).read_to_end(&mut buf)?;
                        let b = Bytes::from(buf);
                        self.small.insert(digest, b.clone());
                        b
                    } else {
                        // A small range of a large blob: read just that.
                        f.seek(SeekFrom::Start(start))?;
                        let mut buf = Vec::with_capacity(len as usize);
                        f.take(len).read_to_end(&mut buf)?;
                        if (buf.len() as u64) != len {
                            return Err(short());
                        }
                        return Ok(once(Bytes::from(buf)));
                    }
                }
            };
            let end = start.checked_add(len).filter(|&e| e <= whole.len() as u64);
            let Some(end) = end else {
                return Err(short());
            };
            return Ok(once(whole.slice(start as usize..end as usize)));
        }
        let f = std::fs::File::open(&path).map_err(not_found)?;
        let file_len = f.metadata()?.len();
        if start.checked_add(len).is_none_or(|end| end > file_len) {
            return Err(StoreError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "blob shorter than recorded",
            )));
        }
        // A reader thread maps the blob window by window (pre-faulted from the page cache, no
        // copy into user memory) a few windows ahead of the socket, so disk reads and network
        // writes overlap; the bounded channel caps what one download holds. Mapping is safe
        // because blob files are immutable: they appear by rename and go by unlink, never
        // truncated or rewritten in place (a truncation would fault a mapped reader).
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(READ_AHEAD);
        tokio::task::spawn_blocking(move || {
            let mut offset = start;
            let end = start + len;
            while offset < end {
                let want = (end - offset).min(READ_CHUNK as u64) as usize;
                // SAFETY: the file is never modified after it is published (see above).
                #[allow(unsafe_code)]
                let map = unsafe {
                    memmap2::MmapOptions::new()
                        .offset(offset)
                        .len(want)
                        .populate()
                        .map(&f)
                };
                let r = map.map(Bytes::from_owner);
                let failed = r.is_err();
                if tx.blocking_send(r).is_err() || failed {
                    return; // client went away, or the error has been passed on
                }
                offset += want as u64;
            }
        });
        Ok(Box::pin(tokio_stream_from(rx)))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let path = self.blob_path(digest);
        let size = match tokio::fs::metadata(&path).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        self.small.remove(digest);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {
                self.used.fetch_sub(size, Ordering::Relaxed);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn upload_create(&self, id: &str) -> Result<()> {
        check_upload_id(id)?;
        let path = self.upload_path(id);
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            use std::os::unix::fs::OpenOptionsExt;
            // The upload becomes the blob file by rename: private from its first byte.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(crate::private::FILE_MODE)
                .open(&path)?
                .sync_all()?;
            fsync_dir(path.parent().expect("upload path has a parent"))
        })
        .await
        .map_err(|e| StoreError::Io(io::Error::other(e)))??;
        *self.slot(id).lock().await = Some((0, Hasher::new(Algorithm::Sha256)));
        Ok(())
    }

    async fn upload_state(&self, id: &str) -> Result<Option<UploadState>> {
        check_upload_id(id)?;
        let slot = self.slot(id);
        let guard = slot.lock().await;
        if let Some((size, _)) = guard.as_ref() {
            return Ok(Some(UploadState { size: *size }));
        }
        drop(guard);
        match tokio::fs::metadata(self.upload_path(id)).await {
            Ok(m) => Ok(Some(UploadState { size: m.len() })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.forget(id);
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn upload_append(
        &self,
        id: &str,
        start: Option<u64>,
        exact_len: Option<u64>,
        mut body: BlobStream,
    ) -> Result<UploadState> {
        check_upload_id(id)?;
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        let (size, hasher) = self.load(id, &mut guard).await?;
        if let Some(got) = start
            && got != size
        {
            *guard = Some((size, hasher));
            return Err(StoreError::OutOfOrder { have: size, got });
        }
        let path = self.upload_path(id);
        let rollback = exact_len.map(|_| (size, hasher.clone(), path.clone()));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(WRITE_QUEUE);
        // The writer thread owns the file and the hash state; the network side only forwards.
        let writer = tokio::task::spawn_blocking(move || {
            let mut state = (size, hasher);
            let result = (|| -> io::Result<()> {
                let mut f = std::fs::OpenOptions::new().append(true).open(&path)?;
                let on_disk = f.metadata()?.len();
                if on_disk != size {
                    // Bytes past the hashed size were never acknowledged: drop them.
                    f.set_len(size)?;
                }
                while let Some(chunk) = rx.blocking_recv() {
                    if let Err(e) = f.write_all(&chunk) {
                        let _ = f.set_len(state.0);
                        return Err(e);
                    }
                    state.1.update(&chunk);
                    state.0 += chunk.len() as u64;
                }
                // No fsync here: a chunk becomes durable when the upload is committed. A crash
                // before that loses at most unacknowledged-by-commit bytes, and the size the
                // client reads back after a restart is what the file really holds.
                Ok(())
            })();
            (state, result)
        });
        let mut body_err = None;
        let mut received = 0u64;
        while let Some(item) = body.next().await {
            match item {
                Ok(chunk) if chunk.is_empty() => {}
                Ok(chunk) => {
                    received += chunk.len() as u64;
                    if exact_len.is_some_and(|n| received > n) {
                        break; // longer than declared: refused below, nothing more written
                    }
                    if tx.send(chunk).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    body_err = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let (state, result) = writer
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))?;
        let new_size = state.0;
        *guard = Some(state);
        let failure = match (result, body_err, exact_len) {
            (Err(e), _, _) => Some(StoreError::Io(e)),
            (Ok(()), Some(e), _) => Some(StoreError::Body(e.to_string())),
            (Ok(()), None, Some(n)) if received != n => Some(StoreError::SizeMismatch {
                declared: n,
                received,
            }),
            _ => None,
        };
        let Some(failure) = failure else {
            return Ok(UploadState { size: new_size });
        };
        if let Some((size, hasher, path)) = rollback {
            // All or nothing: put the file and the hash back as they were before this chunk.
            tokio::task::spawn_blocking(move || {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(size)
            })
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))??;
            *guard = Some((size, hasher));
        }
        Err(failure)
    }

    async fn upload_digest(&self, id: &str, algorithm: Algorithm) -> Result<Digest> {
        check_upload_id(id)?;
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        let (size, h) = match guard.take() {
            Some((size, h)) if h.algorithm() == algorithm => (size, h),
            // Not in memory (a restart) or another algorithm: hash the file once and keep the
            // state for the commit.
            _ => {
                let path = self.upload_path(id);
                tokio::task::spawn_blocking(move || hash_file(&path, algorithm))
                    .await
                    .map_err(|e| StoreError::Io(io::Error::other(e)))?
                    .map_err(|e| match e.kind() {
                        io::ErrorKind::NotFound => StoreError::UploadUnknown,
                        _ => StoreError::Io(e),
                    })?
            }
        };
        let digest = h.clone().finish();
        *guard = Some((size, h));
        Ok(digest)
    }

    async fn upload_commit(&self, id: &str, expected: &Digest) -> Result<u64> {
        check_upload_id(id)?;
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        let path = self.upload_path(id);
        let (size, actual) = match guard.take() {
            Some((size, h)) if h.algorithm() == expected.algorithm() => (size, h.finish()),
            _ => {
                let (p, alg) = (path.clone(), expected.algorithm());
                let (size, h) = tokio::task::spawn_blocking(move || hash_file(&p, alg))
                    .await
                    .map_err(|e| StoreError::Io(io::Error::other(e)))?
                    .map_err(|e| match e.kind() {
                        io::ErrorKind::NotFound => StoreError::UploadUnknown,
                        _ => StoreError::Io(e),
                    })?;
                (size, h.finish())
            }
        };
        if &actual != expected {
            // Leave the state rebuildable: the client may still cancel or inspect the upload.
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let target = self.blob_path(expected);
        let used = self.used.clone();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            let dir = target.parent().expect("blob path has a parent");
            if std::fs::metadata(&target).is_ok_and(|m| m.len() == size) {
                // Already stored: content addressing makes the copy redundant.
                return std::fs::remove_file(&path);
            }
            crate::private_dir(dir)?;
            // Durable first, then published whole by the rename.
            std::fs::File::open(&path)?.sync_data()?;
            std::fs::rename(&path, &target)?;
            fsync_dir(dir)?;
            used.fetch_add(size, Ordering::Relaxed);
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Io(io::Error::other(e)))??;
        drop(guard);
        self.forget(id);
        Ok(size)
    }

    async fn upload_delete(&self, id: &str) -> Result<()> {
        check_upload_id(id)?;
        let slot = self.slot(id);
        let _guard = slot.lock().await;
        let r = tokio::fs::remove_file(self.upload_path(id)).await;
        self.forget(id);
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::UploadUnknown),
            Err(e) => Err(e.into()),
        }
    }

    async fn upload_open(&self, id: &str) -> Result<Box<dyn UploadReader>> {
        check_upload_id(id)?;
        // The open file keeps reading the same inode after the commit renames it into place (or
        // a delete unlinks it): blob files are never rewritten.
        match tokio::fs::File::open(self.upload_path(id)).await {
            Ok(f) => Ok(Box::new(FileReader(Arc::new(f.into_std().await)))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::UploadUnknown),
            Err(e) => Err(e.into()),
        }
    }

    fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn space(&self) -> Option<Space> {
        // statvfs is one quick system call on the (already mounted) data volume.
        let st = rustix::fs::statvfs(&self.root).ok()?;
        let unit = st.f_frsize;
        Some(Space {
            available: st.f_bavail.saturating_mul(unit),
            capacity: st.f_blocks.saturating_mul(unit),
        })
    }

    async fn list_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<BlobEntry>> {
        let (root, after) = (self.root.clone(), after.cloned());
        tokio::task::spawn_blocking(move || list_blob_files(&root, after.as_ref(), limit))
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))?
            .map_err(StoreError::Io)
    }

    async fn list_uploads(&self, after: Option<&str>, limit: usize) -> Result<Vec<UploadEntry>> {
        let (root, after) = (self.root.clone(), after.map(str::to_owned));
        tokio::task::spawn_blocking(move || list_upload_files(&root, after.as_deref(), limit))
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))?
            .map_err(StoreError::Io)
    }
}

/// Lists blob files under `root/blobs` in digest order (sha256 first), strictly after `after`,
/// at most `limit`. Blocking: reads one shard directory at a time.
fn list_blob_files(
    root: &Path,
    after: Option<&Digest>,
    limit: usize,
) -> io::Result<Vec<BlobEntry>> {
    let algs = [Algorithm::Sha256, Algorithm::Sha512];
    let pos = |a: Algorithm| algs.iter().position(|x| *x == a).unwrap_or(0);
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
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
                out.push(BlobEntry {
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

/// Lists upload files under `root/uploads` in id order, strictly after `after`, at most `limit`.
/// Blocking.
fn list_upload_files(
    root: &Path,
    after: Option<&str>,
    limit: usize,
) -> io::Result<Vec<UploadEntry>> {
    let dir = root.join("uploads");
    let mut out = Vec::new();
    for id in sorted_names(&dir)? {
        if out.len() >= limit {
            break;
        }
        if after.is_some_and(|a| id.as_str() <= a) {
            continue;
        }
        let Ok(meta) = std::fs::metadata(dir.join(&id)) else {
            continue; // committed or deleted meanwhile
        };
        if !meta.is_file() {
            continue;
        }
        out.push(UploadEntry {
            id,
            size: meta.len(),
            modified: meta.modified()?,
        });
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

/// An [`UploadReader`] over an open upload file: positioned reads on the blocking pool.
struct FileReader(Arc<std::fs::File>);

#[async_trait]
impl UploadReader for FileReader {
    async fn read_at(&self, offset: u64, max: usize) -> io::Result<Bytes> {
        let f = self.0.clone();
        tokio::task::spawn_blocking(move || pread(&f, offset, max))
            .await
            .map_err(io::Error::other)?
    }
}

/// Size of the reusable read buffers of upload readers: the cache's fill followers read at most
/// this much per step.
const READ_BUF: usize = 1 << 20;
/// Free read buffers kept for reuse (at most this many megabytes stay allocated). A fresh buffer
/// per read, faulted in and zeroed page by page, cost a cold pull through the cache a fifth of
/// its CPU.
const READ_BUFS_KEPT: usize = 8;
static READ_BUFS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// The bytes read into a reusable buffer; the buffer goes back to [`READ_BUFS`] when the last
/// `Bytes` over it is dropped (a larger one-off buffer is freed).
struct PooledRead {
    buf: Vec<u8>,
    len: usize,
}

impl AsRef<[u8]> for PooledRead {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for PooledRead {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let mut kept = READ_BUFS.lock().unwrap_or_else(|p| p.into_inner());
        if buf.len() == READ_BUF && kept.len() < READ_BUFS_KEPT {
            kept.push(buf);
        }
    }
}

/// Up to `max` bytes of `f` from `offset`, fewer at its current end. Reads of up to [`READ_BUF`]
/// go into a reused buffer (zeroed once, when first made); larger ones into one of their own.
fn pread(f: &std::fs::File, offset: u64, max: usize) -> io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let kept = if max <= READ_BUF {
        READ_BUFS.lock().unwrap_or_else(|p| p.into_inner()).pop()
    } else {
        None
    };
    let mut read = PooledRead {
        buf: kept.unwrap_or_else(|| vec![0; max.max(READ_BUF)]),
        len: 0,
    };
    while read.len < max {
        match FileExt::read_at(f, &mut read.buf[read.len..max], offset + read.len as u64) {
            Ok(0) => break,
            Ok(n) => read.len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Bytes::from_owner(read))
}

#[cfg(test)]
mod tests;
