//! Content-addressed blob storage and in-progress uploads: the [`BlobStore`] interface and its
//! filesystem implementation ([`FsBlobStore`], in `fs`).

use std::io;
use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use oci::{Algorithm, Digest};

use crate::Result;

mod fs;

pub use fs::FsBlobStore;

/// A stream of blob bytes, as served to clients or received from them.
pub type BlobStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Blobs at or under this size are read in one piece rather than streamed (the HTTP layer then
/// answers them with the whole body in hand).
pub const SMALL_BLOB: u64 = 64 * 1024;

/// What an upload holds so far.
///
/// Only the total: it is all a client is told (the `Range` of an upload) and all a caller needs
/// to address the next part. A backend that stages parts separately keeps their list in its own
/// bookkeeping (S3's ListParts, a row per part in SQL), where `upload_commit` needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadState {
    /// Bytes held: the sum of the parts appended, in order.
    pub size: u64,
}

/// A blob, as [`BlobStore::list_blobs`] lists it: what an object store's listing returns.
#[derive(Clone, Debug)]
pub struct BlobEntry {
    /// Its digest (from its key).
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// When it was written.
    pub modified: SystemTime,
}

/// An upload, as [`BlobStore::list_uploads`] lists it.
#[derive(Clone, Debug)]
pub struct UploadEntry {
    /// Upload id.
    pub id: String,
    /// Bytes held.
    pub size: u64,
    /// When its last part was written.
    pub modified: SystemTime,
}

/// Content-addressed bytes plus the uploads that become them.
///
/// Kept small on purpose (Distribution's driver interface is the model) so that object storage
/// can implement it. Nothing here assumes local files: blobs are read as streams, uploads are
/// written as a sequence of parts and read back through [`UploadReader`], and garbage
/// collection only lists (in key order, a page at a time) and deletes.
///
/// # Uploads are sequences of parts
///
/// An upload starts empty ([`BlobStore::upload_create`]); each [`BlobStore::upload_append`] adds
/// one part, addressed by its offset (the upload's size before it: parts are contiguous and in
/// order, so the offset numbers them). A backend guarantees:
///
/// - **A part with `exact_len` is all or nothing**: unless exactly that many bytes arrive, the
///   upload is left as it was before the part. Without it, a backend may keep the bytes that
///   arrived before a body error (the client resumes after them) or drop the part; either way
///   [`BlobStore::upload_state`] then reports what it kept.
/// - **The state never runs ahead of the data**: what `upload_state` reports (after a restart
///   too) is exactly what the upload holds and what `upload_commit` will hash. The filesystem
///   backend gets this by deriving the size from the file itself after a restart (a part becomes
///   durable at the latest when the upload is committed); an object store gets it because an
///   uploaded part is durable when its PUT returns.
/// - **Commit verifies, then publishes atomically**: [`BlobStore::upload_commit`] hashes the parts
///   in order, refuses with [`crate::StoreError::DigestMismatch`] (leaving the upload as it was)
///   unless they hash to the expected digest, and makes the blob visible in one step (a rename,
///   S3's CompleteMultipartUpload, a copy to the final key) only once it is complete and
///   durable. Committing a blob that is already stored keeps the stored one.
///
/// A backend whose parts have a minimum size (S3: 5 MiB except the last) stages a short part
/// itself until the next one or the commit fills it, as Distribution's S3 driver does.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Size of a stored blob, or `None`.
    async fn size(&self, digest: &Digest) -> Result<Option<u64>>;
    /// Streams `len` bytes of a blob starting at `start`.
    async fn get(&self, digest: &Digest, start: u64, len: u64) -> Result<BlobStream>;
    /// Removes a blob (garbage collection). Returns whether it existed.
    async fn delete(&self, digest: &Digest) -> Result<bool>;
    /// Starts an empty upload.
    async fn upload_create(&self, id: &str) -> Result<()>;
    /// What an upload holds, or `None` if there is no such upload.
    async fn upload_state(&self, id: &str) -> Result<Option<UploadState>>;
    /// Appends one part (see the trait's documentation). `start`, when given, must equal the
    /// current size ([`crate::StoreError::OutOfOrder`] otherwise). With `exact_len` the part is
    /// all or nothing ([`crate::StoreError::SizeMismatch`] when another length arrives). Without
    /// it, bytes that arrived before a body error may be kept and the error returned.
    async fn upload_append(
        &self,
        id: &str,
        start: Option<u64>,
        exact_len: Option<u64>,
        body: BlobStream,
    ) -> Result<UploadState>;
    /// The digest (in `algorithm`) of the parts an upload holds so far. Lets a caller know the
    /// bytes are right before it pays for the commit's durability (the pull-through cache
    /// releases a blob's last byte then); the commit verifies again from the same hash state,
    /// without reading the bytes a second time.
    async fn upload_digest(&self, id: &str, algorithm: Algorithm) -> Result<Digest>;
    /// Verifies the parts, in order, against `expected` and publishes them as that blob.
    /// Returns its size.
    async fn upload_commit(&self, id: &str, expected: &Digest) -> Result<u64>;
    /// Discards an upload and its parts.
    async fn upload_delete(&self, id: &str) -> Result<()>;
    /// Opens an upload for reading while it is still being appended to: the pull-through cache
    /// serves a blob to its clients as it arrives from upstream. The reader sees every byte an
    /// `upload_append` has written so far (possibly some of the part in progress), and stays
    /// valid after the upload is committed or deleted: it keeps reading the same bytes, so a
    /// client that started on the upload finishes on it. An object store backend reads the parts
    /// it has staged; after commit, the committed blob.
    async fn upload_open(&self, id: &str) -> Result<Box<dyn UploadReader>>;
    /// Bytes held by committed blobs.
    fn used_bytes(&self) -> u64;
    /// Space on the volume the blobs live on, when the backend has one (a local filesystem);
    /// an object store has no such limit and answers `None`. Read at each metrics scrape, so an
    /// operator is warned before a full disk refuses pushes.
    fn space(&self) -> Option<Space> {
        None
    }
    /// Garbage collection: stored blobs in digest order strictly after `after`, at most `limit`
    /// (fewer only at the end). One call is one page of an object store's ListObjectsV2 under
    /// the blobs prefix (`start-after`, `max-keys`), or
    /// `SELECT digest, size, modified FROM blobs WHERE digest > $1 ORDER BY digest LIMIT $2`.
    async fn list_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<BlobEntry>>;
    /// Garbage collection: uploads (finished, abandoned or in progress) in id order strictly
    /// after `after`, at most `limit` (fewer only at the end): ListObjectsV2 under the uploads
    /// prefix (or ListMultipartUploads with its key marker), or the same keyset query on an
    /// uploads table.
    async fn list_uploads(&self, after: Option<&str>, limit: usize) -> Result<Vec<UploadEntry>>;
}

/// Space on the volume under a blob store ([`BlobStore::space`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes an unprivileged writer may still use.
    pub available: u64,
    /// The volume's size in bytes.
    pub capacity: u64,
}

/// Reads an upload that another task may still be appending to (see [`BlobStore::upload_open`]).
#[async_trait]
pub trait UploadReader: Send + Sync {
    /// Up to `max` bytes from `offset`, as many as are written by now: fewer than `max` (or none)
    /// when the upload does not hold more yet. Never blocks an async worker on I/O.
    async fn read_at(&self, offset: u64, max: usize) -> io::Result<Bytes>;
}
