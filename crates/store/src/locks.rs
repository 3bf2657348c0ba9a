//! Per-digest locks: "commit a blob and link it" and "re-check a blob and delete it" exclude each
//! other, whoever does them (an upload, the pull-through cache, the garbage collector). Reads
//! ("is it linked? touch it") only need to exclude the collector's delete, not each other: they
//! share the lock, so concurrent pulls of one popular blob never queue behind each other.

use std::sync::Arc;

use oci::Digest;

use crate::gc::digest_key;

/// Stripes: enough that unrelated digests rarely share one, few enough to stay small (a few
/// tens of KiB) whatever the number of blobs.
const STRIPES: usize = 1024;

/// A striped table of async per-digest locks, created once per store and shared by everything
/// that commits, links or deletes blobs. Two digests may share a stripe: that only serializes
/// them, never lets two holders of one digest in at once.
pub struct DigestLocks {
    stripes: Box<[Arc<tokio::sync::RwLock<()>>]>,
}

/// A held per-digest lock, released on drop. Owned, so it can move into a spawned task.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct DigestGuard {
    _guard: Held,
}

/// Exclusive for writers and the collector, shared for readers.
enum Held {
    Exclusive(#[allow(dead_code)] tokio::sync::OwnedRwLockWriteGuard<()>),
    Shared(#[allow(dead_code)] tokio::sync::OwnedRwLockReadGuard<()>),
}

impl Default for DigestLocks {
    fn default() -> Self {
        Self::new()
    }
}

impl DigestLocks {
    /// A table with every lock free.
    pub fn new() -> Self {
        DigestLocks {
            stripes: (0..STRIPES)
                .map(|_| Arc::new(tokio::sync::RwLock::new(())))
                .collect(),
        }
    }

    fn stripe(d: &Digest) -> usize {
        (digest_key(d) % STRIPES as u128) as usize
    }

    /// Waits for and takes the lock of `d`, alone (to commit, link or delete it).
    pub async fn hold(&self, d: &Digest) -> DigestGuard {
        DigestGuard {
            _guard: Held::Exclusive(self.stripes[Self::stripe(d)].clone().write_owned().await),
        }
    }

    /// Waits for and takes the lock of `d` shared with other readers (to check and read it):
    /// it excludes [`DigestLocks::hold`]ers only.
    pub async fn share(&self, d: &Digest) -> DigestGuard {
        DigestGuard {
            _guard: Held::Shared(self.stripes[Self::stripe(d)].clone().read_owned().await),
        }
    }

    /// Takes the locks of several digests, in stripe order, so that two callers never wait on
    /// each other (single holders take one stripe only).
    pub async fn hold_many<'a>(&self, ds: impl Iterator<Item = &'a Digest>) -> Vec<DigestGuard> {
        let mut idx: Vec<usize> = ds.map(Self::stripe).collect();
        idx.sort_unstable();
        idx.dedup();
        let mut out = Vec::with_capacity(idx.len());
        for i in idx {
            out.push(DigestGuard {
                _guard: Held::Exclusive(self.stripes[i].clone().write_owned().await),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_held_digest_waits_and_others_do_not() {
        let locks = Arc::new(DigestLocks::new());
        let (a, b) = (Digest::sha256(b"a"), Digest::sha256(b"b"));
        let held = locks.hold(&a).await;
        let l2 = locks.clone();
        let a2 = a.clone();
        let waiter = tokio::spawn(async move { l2.hold(&a2).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "a second holder of the same digest waits"
        );
        if DigestLocks::stripe(&a) != DigestLocks::stripe(&b) {
            let _b = tokio::time::timeout(Duration::from_secs(5), locks.hold(&b))
                .await
                .expect("another digest is not blocked");
        }
        drop(held);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("released on drop")
            .unwrap();
        drop(got);
        let many = locks.hold_many([&a, &b, &a].into_iter()).await;
        assert!(many.len() <= 2);
    }

    #[tokio::test]
    async fn readers_share_and_exclude_holders() {
        let locks = Arc::new(DigestLocks::new());
        let a = Digest::sha256(b"a");
        let r1 = locks.share(&a).await;
        let r2 = tokio::time::timeout(Duration::from_secs(5), locks.share(&a))
            .await
            .expect("a second reader does not wait for the first");
        let l2 = locks.clone();
        let a2 = a.clone();
        let writer = tokio::spawn(async move { l2.hold(&a2).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!writer.is_finished(), "a holder waits for the readers");
        drop(r1);
        drop(r2);
        let w = tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .expect("the holder gets in once the readers leave")
            .unwrap();
        let l3 = locks.clone();
        let a3 = a.clone();
        let reader = tokio::spawn(async move { l3.share(&a3).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!reader.is_finished(), "a reader waits for the holder");
        drop(w);
        let _r = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("the reader gets in once the holder leaves")
            .unwrap();
    }
}
