//! What a pull reads: manifests, blobs and tag lists of a repository, behind a trait that an
//! optional capability can decorate (the pull-through cache wraps the store-backed source, as
//! Distribution's proxy wraps its storage). The core defines the seam and never imports the
//! decorators.
//!
//! The plain [`StoreSource`] has inherent `async fn`s so that a registry without decorators
//! calls it statically, without boxing a future per request; the [`ContentSource`] trait (boxed
//! futures, object safe) is what decorators implement and wrap.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use oci::{Digest, Reference};
use store::{BlobStream, MetaStore, StoreError, StoredManifest};

use crate::gc::Collector;

/// Streams bytes `start..end` of a blob that is still arriving (from an upstream).
pub type BlobOpener = Box<dyn FnOnce(u64, u64) -> BlobStream + Send>;

/// How a source holds a blob that a repository may serve.
pub enum BlobRead {
    /// Stored in the blob store and linked to the repository; its size. The caller streams
    /// it from the store.
    Stored(u64),
    /// Not in the store (yet): its size and, for a GET, how to stream it as it arrives
    /// (`None` for a HEAD answered without fetching).
    Arriving {
        /// The blob's size in bytes.
        size: u64,
        /// Streams a range of it.
        open: Option<BlobOpener>,
    },
}

/// Why a source could not answer. Everything beyond [`SourceError::Store`] comes from a
/// decorator that reads elsewhere (an upstream registry).
#[derive(Clone, Debug, thiserror::Error)]
pub enum SourceError {
    /// Local storage failed.
    #[error("storage: {0}")]
    Store(String),
    /// The content is not where the source reads it from (the upstream does not have it).
    #[error("not found upstream")]
    NotFound,
    /// The upstream refused access (or does not know the repository).
    #[error("the upstream refused access")]
    Denied,
    /// The upstream is rate limiting and nothing is held locally.
    #[error("the upstream is rate limiting")]
    RateLimited {
        /// Seconds it asked to wait, if it said.
        retry_after: Option<u64>,
    },
    /// Too many transfers are running; retry shortly.
    #[error("{0}")]
    Busy(String),
    /// The upstream is disabled in the configuration.
    #[error("the upstream is disabled in the configuration")]
    Disabled,
    /// The upstream failed (unreachable, timed out, invalid answer).
    #[error("{0}")]
    Unavailable(String),
    /// The request names a namespace this source does not serve (a mirror's `ns`).
    #[error("{0}")]
    NotServed(String),
}

impl From<StoreError> for SourceError {
    fn from(e: StoreError) -> Self {
        SourceError::Store(e.to_string())
    }
}

/// The reads of a pull, by repository: what a decorator implements around an inner source.
pub trait ContentSource: Send + Sync + 'static {
    /// The repository a request for `name` addresses, when it is another one (a mirror's `ns`
    /// query parameter, or an alias of a cached namespace); `Ok(None)` for `name` itself.
    fn resolve(&self, name: &str, ns: Option<&str>) -> Result<Option<String>, SourceError>;

    /// Why writes (pushes, deletions, uploads) to `repo` are refused, when they are: a cached
    /// repository is read-only.
    fn refuses_writes(&self, repo: &str) -> Option<String>;

    /// Manifest `r` of `repo`, `None` when unknown.
    fn manifest<'a>(
        &'a self,
        repo: &'a str,
        r: &'a Reference,
    ) -> BoxFuture<'a, Result<Option<StoredManifest>, SourceError>>;

    /// Blob `d` as `repo` may serve it, `None` when unknown there; `head` when only its size
    /// is wanted.
    fn blob<'a>(
        &'a self,
        repo: &'a str,
        d: &'a Digest,
        head: bool,
    ) -> BoxFuture<'a, Result<Option<BlobRead>, SourceError>>;

    /// The complete tag list of `repo` when the source answers it itself; `None` lets the
    /// store list (and page) the repository's tags.
    fn tags<'a>(&'a self, repo: &'a str)
    -> BoxFuture<'a, Result<Option<Vec<String>>, SourceError>>;

    /// Notes that a [`BlobRead::Stored`] blob of `repo` was answered (`bytes` sent; 0 for a
    /// HEAD), so a decorator can count what it saved.
    fn served(&self, repo: &str, bytes: u64) {
        let _ = (repo, bytes);
    }
}

/// The plain source: manifests and blobs as the metadata and blob stores hold them.
#[derive(Clone)]
pub struct StoreSource {
    meta: Arc<dyn MetaStore>,
    gc: Arc<Collector>,
}

impl StoreSource {
    /// A source over `meta`, reading blob links under `gc`'s per-digest locks.
    pub fn new(meta: Arc<dyn MetaStore>, gc: Arc<Collector>) -> Self {
        StoreSource { meta, gc }
    }

    /// Manifest `r` of `repo`, `None` when unknown.
    pub async fn manifest(
        &self,
        repo: &str,
        r: &Reference,
    ) -> Result<Option<StoredManifest>, StoreError> {
        self.meta.get_manifest(repo, r).await
    }

    /// The size of blob `d` when it is linked to `repo`. The link is read under the digest's
    /// GC lock and touched, so a blob found here stays for the grace period (a client may
    /// reference it in a manifest next).
    pub async fn blob(&self, repo: &str, d: &Digest) -> Result<Option<u64>, StoreError> {
        let _held = self.gc.hold_shared(d).await;
        self.meta.blob_linked(repo, d).await
    }
}

impl ContentSource for StoreSource {
    fn resolve(&self, _name: &str, _ns: Option<&str>) -> Result<Option<String>, SourceError> {
        Ok(None)
    }

    fn refuses_writes(&self, _repo: &str) -> Option<String> {
        None
    }

    fn manifest<'a>(
        &'a self,
        repo: &'a str,
        r: &'a Reference,
    ) -> BoxFuture<'a, Result<Option<StoredManifest>, SourceError>> {
        Box::pin(async move { Ok(StoreSource::manifest(self, repo, r).await?) })
    }

    fn blob<'a>(
        &'a self,
        repo: &'a str,
        d: &'a Digest,
        _head: bool,
    ) -> BoxFuture<'a, Result<Option<BlobRead>, SourceError>> {
        Box::pin(async move {
            Ok(StoreSource::blob(self, repo, d)
                .await?
                .map(BlobRead::Stored))
        })
    }

    fn tags<'a>(
        &'a self,
        _repo: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, SourceError>> {
        Box::pin(async { Ok(None) })
    }
}
