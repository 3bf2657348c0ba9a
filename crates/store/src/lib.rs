//! Wharf's storage layer, behind two small interfaces:
//!
//! - [`BlobStore`]: content-addressed bytes and in-progress uploads ([`FsBlobStore`] on a local
//!   filesystem today; object storage later).
//! - [`MetaStore`]: repositories, tags, manifests, blob links, referrers and upload sessions
//!   ([`RedbMetaStore`], embedded and transactional, today; a shared database later).
//!
//! Beside them, [`DigestLocks`]: the per-digest locks that make "commit and link a blob" and
//! "re-check and delete a blob" exclude each other, shared by uploads, the cache and the
//! garbage collector.
//!
//! Nothing here knows about HTTP: errors are typed and the registry maps them to protocol codes.

pub mod backup;
pub mod blob;
mod generation;
mod locks;
pub mod meta;
mod private;
mod small;

pub use private::{private_dir, restrict};

pub use generation::Generations;
pub use locks::{DigestGuard, DigestLocks};
pub use small::{DEFAULT_SMALL_BLOB_CACHE_BYTES, SmallBlobCache};

pub use blob::{
    BlobEntry, BlobStore, BlobStream, FsBlobStore, SMALL_BLOB, Space, UploadEntry, UploadReader,
    UploadState,
};
pub use meta::gc;
pub use meta::gc::{GcMeta, StorageUsage};
pub use meta::redb::RedbMetaStore;
pub use meta::{GuardedDelete, ManifestSummary, RepoSnapshot, TagEntry};
pub use meta::{ManifestRecord, MetaStore, Page, StoredManifest, TagEvent, UploadRecord};

/// Everything that can go wrong in storage, typed so callers can map it to protocol errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such blob in the store (or not linked in the repository).
    #[error("blob unknown: {0}")]
    BlobUnknown(oci::Digest),
    /// No such manifest.
    #[error("manifest unknown")]
    ManifestUnknown,
    /// A manifest refers to a blob the repository does not hold.
    #[error("manifest references blob {0} which is not in the repository")]
    ManifestBlobUnknown(oci::Digest),
    /// An immutable tag would move to another digest.
    #[error("tag {tag} is immutable and points at {current}")]
    TagImmutable {
        /// The tag.
        tag: String,
        /// The digest it keeps.
        current: String,
    },
    /// No such upload session.
    #[error("upload unknown")]
    UploadUnknown,
    /// The uploaded bytes do not hash to the digest the client gave.
    #[error("uploaded content has digest {actual}, not {expected}")]
    DigestMismatch {
        /// What the client claimed.
        expected: oci::Digest,
        /// What the bytes hash to.
        actual: oci::Digest,
    },
    /// A chunk does not start where the upload ends.
    #[error("chunk starts at {got} but the upload holds {have} bytes")]
    OutOfOrder {
        /// Bytes the upload holds.
        have: u64,
        /// Where the chunk claimed to start.
        got: u64,
    },
    /// A chunk's length differs from the length its request declared.
    #[error("chunk declared {declared} bytes but {received} arrived")]
    SizeMismatch {
        /// Bytes declared by Content-Range.
        declared: u64,
        /// Bytes received (counting stops just past the declared length).
        received: u64,
    },
    /// The request body ended or failed before it was complete.
    #[error("request body interrupted: {0}")]
    Body(String),
    /// The filesystem failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The metadata database failed.
    #[error("metadata database error: {0}")]
    Db(String),
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

macro_rules! db_error {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.to_string()) }
        }
    )*};
}
db_error!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Result alias for storage operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
