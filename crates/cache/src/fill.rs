//! Blob fills: one upstream transfer per blob, written into an upload of the blob store while
//! every client that asked for the blob reads the upload as it grows.
//!
//! The transfer runs in its own task, so a client that goes away does not abort it for the
//! others. Bytes are streamed to clients unverified as they arrive, except the last one: clients
//! never see the last byte of a blob before the whole blob has been verified against its digest
//! (the blob store hashes them on their way in; the fill asks it for the digest), so a corrupt or truncated transfer ends every
//! client's response early (a clean failure they retry) and leaves nothing in the cache. The last
//! byte goes out as soon as the digest is verified, before the blob store's commit (fsync, then
//! rename into place): a crash in between loses the cache entry (the upload is left for the
//! collector), never correctness, since a blob becomes visible in the store only by its commit.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use oci::Digest;
use store::{BlobStore, BlobStream, MetaStore, StoreError, UploadReader};
use tokio::sync::watch;

use crate::error::UpstreamError;
use crate::metrics::CacheMetrics;
use crate::upstream::Upstream;

/// Most bytes read from the growing upload per step.
const READ_STEP: usize = 1024 * 1024;
/// Fewest bytes a reader waits for before reading again while the transfer runs (its first read
/// and a stalled transfer excepted), so that a fast transfer is followed in large reads, not one
/// small read per network chunk.
const MIN_STEP: u64 = 256 * 1024;
/// How long a reader waits for news before looking at the file again: writes reach the file a
/// moment after the transfer reports them, and the next report may be a while.
const POLL: Duration = Duration::from_millis(5);

/// Where a fill stands.
#[derive(Clone, Debug)]
pub(crate) enum Stage {
    /// Waiting for the upstream's response headers.
    Connecting,
    /// Bytes are arriving (or, once [`Progress::verified`], being committed); the blob has
    /// `size` bytes.
    Streaming { size: u64 },
    /// Verified and committed.
    Done { size: u64 },
    /// Abandoned; nothing was kept.
    Failed(UpstreamError),
}

/// What readers watch.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    pub stage: Stage,
    /// Bytes handed to the store so far.
    pub received: u64,
    /// Every byte is in the upload and matches the digest: readers may deliver the last byte.
    /// Set before the store's commit (fsync, rename, link), and kept if that commit fails: the
    /// bytes are right, only the cache entry is lost.
    pub verified: bool,
}

/// A fill in progress, as the registry of fills holds it.
#[derive(Clone)]
pub(crate) struct FillHandle {
    pub id: String,
    pub digest: Digest,
    pub rx: watch::Receiver<Progress>,
}

impl FillHandle {
    /// Waits until the blob's size is known (the upstream answered), or the fill failed.
    pub(crate) async fn started(&mut self) -> Result<u64, UpstreamError> {
        loop {
            match &self.rx.borrow_and_update().stage {
                Stage::Connecting => {}
                Stage::Streaming { size } | Stage::Done { size } => return Ok(*size),
                Stage::Failed(e) => return Err(e.clone()),
            }
            if self.rx.changed().await.is_err() {
                if let Stage::Failed(e) = &self.rx.borrow().stage {
                    return Err(e.clone());
                }
                return Err(UpstreamError::Storage(
                    "cache fill ended unexpectedly".into(),
                ));
            }
        }
    }
}

/// Everything a fill task needs.
pub(crate) struct FillJob {
    pub blobs: Arc<dyn BlobStore>,
    pub meta: Arc<dyn MetaStore>,
    pub upstream: Arc<Upstream>,
    pub metrics: Arc<CacheMetrics>,
    pub local_repo: String,
    pub remote_repo: String,
    pub digest: Digest,
    pub id: String,
    pub locks: Arc<store::DigestLocks>,
}

impl FillJob {
    /// Runs the transfer to its end and publishes each stage. Returns the final stage.
    pub(crate) async fn run(self, tx: watch::Sender<Progress>) -> Stage {
        let tx = Arc::new(tx);
        let result = self.transfer(tx.clone()).await;
        self.upstream.note(result.as_ref().err());
        let stage = match result {
            Ok(size) => {
                tracing::info!(
                    upstream = %self.upstream.cfg.host, repo = %self.local_repo,
                    digest = %self.digest, size, "blob cached"
                );
                Stage::Done { size }
            }
            Err(e) => {
                // Nothing partial stays behind; the upload may not exist yet (NotFound is fine).
                let _ = self.blobs.upload_delete(&self.id).await;
                self.metrics.upstream_error(&self.upstream.cfg.host, &e);
                tracing::warn!(
                    upstream = %self.upstream.cfg.host, repo = %self.local_repo,
                    digest = %self.digest, error = %e, "blob fill failed"
                );
                Stage::Failed(e)
            }
        };
        tx.send_modify(|p| p.stage = stage.clone());
        stage
    }

    async fn transfer(&self, tx: Arc<watch::Sender<Progress>>) -> Result<u64, UpstreamError> {
        let resp = self
            .upstream
            .request(
                reqwest::Method::GET,
                &self.remote_repo,
                &format!("blobs/{}", self.digest),
                None,
            )
            .await?;
        let size = resp.content_length().ok_or_else(|| {
            UpstreamError::Invalid("blob response without a Content-Length".into())
        })?;
        self.blobs.upload_create(&self.id).await?;
        tx.send_modify(|p| p.stage = Stage::Streaming { size });
        // The store sees an io::Error; the real cause is kept here for the metrics.
        let cause: Arc<Mutex<Option<UpstreamError>>> = Arc::default();
        let (progress, why, metrics) = (tx.clone(), cause.clone(), self.metrics.clone());
        let body: BlobStream = Box::pin(resp.bytes_stream().map(move |r| match r {
            Ok(chunk) => {
                metrics.upstream_bytes.inc_by(chunk.len() as u64);
                // Readers wake for every chunk of the first `MIN_STEP` (the time to first byte
                // waits on it), then once per `MIN_STEP`, the least they read while the transfer
                // runs: a wake-up per network chunk cost more than the reads. The count itself is
                // always current.
                progress.send_if_modified(|p| {
                    let before = p.received;
                    p.received += chunk.len() as u64;
                    before < MIN_STEP || before / MIN_STEP != p.received / MIN_STEP
                });
                Ok(chunk)
            }
            Err(e) => {
                let e = UpstreamError::from_reqwest(&e);
                let msg = e.to_string();
                *why.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                Err(io::Error::other(msg))
            }
        }));
        let appended = self
            .blobs
            .upload_append(&self.id, Some(0), Some(size), body)
            .await;
        if let Err(e) = appended {
            if let Some(c) = cause.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return Err(c);
            }
            return Err(match e {
                StoreError::SizeMismatch { declared, received } => {
                    UpstreamError::Broken(format!("{received} of {declared} bytes arrived"))
                }
                StoreError::Body(m) => UpstreamError::Broken(m),
                e => e.into(),
            });
        }
        // Exactly `size` bytes arrived (the append checks that). The store hashed them on their
        // way in: ask it for the digest, so the last byte can go out now, before the commit's
        // fsync, and the commit verifies from the same state without hashing twice.
        let hashed = self
            .blobs
            .upload_digest(&self.id, self.digest.algorithm())
            .await?;
        if hashed != self.digest {
            return Err(UpstreamError::DigestMismatch);
        }
        tx.send_modify(|p| p.verified = true);
        // Commit and link under the store's per-digest lock (the collector deletes under it), so
        // the blob cannot go in between; the fresh link then protects it from collection. The
        // blob may be stored already (pushed into another repository): the upstream has now
        // proved it holds these bytes, so linking is safe, and the commit keeps the stored file.
        let _held = self.locks.hold(&self.digest).await;
        match self.blobs.upload_commit(&self.id, &self.digest).await {
            Ok(_) => {}
            Err(StoreError::DigestMismatch { .. }) => return Err(UpstreamError::DigestMismatch),
            Err(e) => return Err(e.into()),
        }
        self.meta
            .link_blob(&self.local_repo, &self.digest, size)
            .await?;
        Ok(size)
    }
}

/// A reader of a fill, for [`follow`].
struct Follower {
    blobs: Arc<dyn BlobStore>,
    fill: FillHandle,
    size: u64,
    start: u64,
    pos: u64,
    end: u64,
    reader: Option<Box<dyn UploadReader>>,
    committed: Option<BlobStream>,
    finished: bool,
    /// The fill reported the blob verified (see [`Progress::verified`]).
    verified: bool,
    /// The last wait for news timed out: read whatever has arrived, however little.
    stalled: bool,
}

/// Streams bytes `start..end` of a blob being filled, as they arrive. The final byte is held back
/// until the fill is verified, so a bad transfer never delivers a complete wrong blob.
pub(crate) fn follow(
    blobs: Arc<dyn BlobStore>,
    fill: FillHandle,
    size: u64,
    start: u64,
    end: u64,
) -> BlobStream {
    let st = Follower {
        blobs,
        fill,
        size,
        start,
        pos: start,
        end: end.min(size),
        reader: None,
        committed: None,
        finished: false,
        verified: false,
        stalled: false,
    };
    Box::pin(futures_util::stream::unfold(st, |mut st| async move {
        if st.finished {
            return None;
        }
        match next_chunk(&mut st).await {
            Ok(Some(b)) => Some((Ok(b), st)),
            Ok(None) => None,
            Err(e) => {
                st.finished = true;
                Some((Err(e), st))
            }
        }
    }))
}

async fn next_chunk(st: &mut Follower) -> io::Result<Option<Bytes>> {
    loop {
        if let Some(s) = &mut st.committed {
            return s.next().await.transpose();
        }
        let (stage, received) = {
            let p = st.fill.rx.borrow_and_update();
            st.verified |= p.verified;
            (p.stage.clone(), p.received)
        };
        let done = matches!(stage, Stage::Done { .. });
        st.verified |= done;
        match stage {
            // Verified bytes stay deliverable from an open reader even if the commit failed
            // afterwards: the file stays readable through it.
            Stage::Failed(_) if st.verified && st.reader.is_some() => {}
            Stage::Failed(e) => return Err(io::Error::other(e.to_string())),
            _ => {}
        }
        let limit = if st.verified {
            st.end
        } else {
            // What arrived so far, and never the last byte before the digest is verified.
            st.end.min(st.size.saturating_sub(1)).min(received)
        };
        // A range that holds the blob's last byte ends only once the blob is verified.
        if st.pos >= st.end && (st.verified || st.end < st.size) {
            return Ok(None);
        }
        if st.reader.is_none() {
            match st.blobs.upload_open(&st.fill.id).await {
                Ok(r) => st.reader = Some(r),
                // Committed and moved before this reader opened it: read the stored blob.
                Err(StoreError::UploadUnknown) if done => {
                    let s = st
                        .blobs
                        .get(&st.fill.digest, st.pos, st.end - st.pos)
                        .await
                        .map_err(io::Error::other)?;
                    st.committed = Some(s);
                    continue;
                }
                Err(StoreError::UploadUnknown) => {}
                Err(e) => return Err(io::Error::other(e)),
            }
        }
        // Read in large steps while the transfer runs: the first read (time to first byte), the
        // rest of the range, or whatever is there after a stall go out at once.
        let worth = st.verified
            || st.stalled
            || st.pos == st.start
            || limit >= st.end.min(st.size.saturating_sub(1))
            || limit.saturating_sub(st.pos) >= MIN_STEP;
        if let (Some(r), true, true) = (&st.reader, st.pos < limit, worth) {
            let want = (limit - st.pos).min(READ_STEP as u64) as usize;
            let chunk = r.read_at(st.pos, want).await?;
            if !chunk.is_empty() {
                st.pos += chunk.len() as u64;
                st.stalled = false;
                return Ok(Some(chunk));
            }
            if st.verified {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "cached blob shorter than its size",
                ));
            }
        }
        match tokio::time::timeout(POLL, st.fill.rx.changed()).await {
            Err(_) => st.stalled = true,
            Ok(Err(_))
                if !matches!(
                    st.fill.rx.borrow().stage,
                    Stage::Done { .. } | Stage::Failed(_)
                ) =>
            {
                return Err(io::Error::other("cache fill ended unexpectedly"));
            }
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upload holding `data`, as a fill leaves it once every byte arrived, and a fill handle
    /// whose stage the test drives.
    async fn arrived(
        dir: &std::path::Path,
        data: &[u8],
    ) -> (Arc<dyn BlobStore>, watch::Sender<Progress>, FillHandle) {
        let blobs: Arc<dyn BlobStore> = Arc::new(store::FsBlobStore::open(dir).unwrap());
        blobs.upload_create("cache-t").await.unwrap();
        let body: BlobStream = Box::pin(futures_util::stream::iter([Ok(Bytes::copy_from_slice(
            data,
        ))]));
        blobs
            .upload_append("cache-t", Some(0), None, body)
            .await
            .unwrap();
        let size = data.len() as u64;
        let (tx, rx) = watch::channel(Progress {
            stage: Stage::Streaming { size },
            received: size,
            verified: false,
        });
        let fill = FillHandle {
            id: "cache-t".into(),
            digest: Digest::sha256(data),
            rx,
        };
        (blobs, tx, fill)
    }

    /// Reads until `n` bytes came, failing if they do not within a second.
    async fn read_n(s: &mut BlobStream, n: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < n {
            let c = tokio::time::timeout(Duration::from_secs(1), s.next())
                .await
                .expect("bytes that arrived go out")
                .expect("stream open")
                .unwrap();
            got.extend_from_slice(&c);
        }
        got
    }

    #[tokio::test]
    async fn last_byte_goes_out_once_verified_before_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        let (blobs, tx, fill) = arrived(dir.path(), &data).await;
        let size = data.len() as u64;
        let mut s = follow(blobs, fill, size, 0, size);
        let head = read_n(&mut s, data.len() - 1).await;
        assert_eq!(head, data[..data.len() - 1]);
        // Streaming: the last byte is held back.
        let wait = tokio::time::timeout(Duration::from_millis(100), s.next()).await;
        assert!(wait.is_err(), "the last byte went out unverified");
        // Verified (the commit has not happened): it goes out, and the stream ends.
        tx.send_modify(|p| p.verified = true);
        assert_eq!(read_n(&mut s, 1).await, data[data.len() - 1..]);
        let end = tokio::time::timeout(Duration::from_secs(1), s.next()).await;
        assert!(end.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_failed_fill_ends_short_and_verified_bytes_survive_a_failed_commit() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![9u8; 300_000];
        let size = data.len() as u64;
        let (blobs, tx, fill) = arrived(dir.path(), &data).await;
        // Fails before verification: every byte but the last, then an error.
        let mut s = follow(blobs.clone(), fill.clone(), size, 0, size);
        read_n(&mut s, data.len() - 1).await;
        tx.send_modify(|p| p.stage = Stage::Failed(UpstreamError::DigestMismatch));
        let e = tokio::time::timeout(Duration::from_secs(1), s.next()).await;
        assert!(matches!(e, Ok(Some(Err(_)))), "{e:?}");

        // Verified, then the commit fails (disk full, say): a reader that has the upload open
        // still delivers the whole, verified blob, even if it only looks after the failure.
        tx.send_modify(|p| p.stage = Stage::Streaming { size });
        let mut s = follow(blobs.clone(), fill, size, 0, size);
        let head = read_n(&mut s, 1000).await;
        tx.send_modify(|p| p.verified = true);
        tx.send_modify(|p| p.stage = Stage::Failed(UpstreamError::Storage("x".into())));
        blobs.upload_delete("cache-t").await.unwrap();
        let rest = read_n(&mut s, data.len() - head.len()).await;
        assert_eq!(head.len() + rest.len(), data.len());
        let end = tokio::time::timeout(Duration::from_secs(1), s.next()).await;
        assert!(end.unwrap().is_none());
    }
}
