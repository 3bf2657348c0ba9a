//! A bounded in-memory copy of small blobs, so the hottest small GETs (configs, small layers,
//! signatures, attestations) skip opening a file.
//!
//! Content addressing makes it safe without invalidation protocols: the bytes of a digest can
//! only ever be those bytes, so an entry is never wrong, only possibly present after its file
//! was deleted (deletion removes it too; a read racing a deletion may re-add it, which serves
//! the same correct bytes until it is evicted). Whether a repository may read a blob is decided
//! by the metadata store before the blob store is asked, so the cache grants nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use oci::Digest;

/// Default memory budget of the small-blob cache.
pub const DEFAULT_SMALL_BLOB_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Small blobs held in memory under a byte budget, evicted by CLOCK (second chance).
pub struct SmallBlobCache {
    budget: u64,
    inner: Mutex<Inner>,
}

struct Entry {
    bytes: Bytes,
    referenced: bool,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Digest, Entry>,
    /// Eviction order; may hold keys already removed (skipped when reached, compacted when
    /// they outnumber the live ones).
    ring: VecDeque<Digest>,
    bytes: u64,
}

impl SmallBlobCache {
    /// A cache holding at most `budget` bytes of blob content (0 disables it).
    pub fn new(budget: u64) -> Self {
        SmallBlobCache {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The whole blob `d`, if held.
    pub fn get(&self, d: &Digest) -> Option<Bytes> {
        if self.budget == 0 {
            return None;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let e = inner.map.get_mut(d)?;
        e.referenced = true;
        Some(e.bytes.clone())
    }

    /// Holds the whole blob `d`, evicting others as the budget requires. A blob larger than
    /// an eighth of the budget is not held (one entry must not flush the rest).
    pub fn insert(&self, d: &Digest, bytes: Bytes) {
        let size = bytes.len() as u64;
        if size == 0 || size > self.budget / 8 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.map.contains_key(d) {
            return;
        }
        while inner.bytes + size > self.budget {
            let Some(k) = inner.ring.pop_front() else {
                break;
            };
            let Some(e) = inner.map.get_mut(&k) else {
                continue; // removed earlier
            };
            if e.referenced {
                e.referenced = false;
                inner.ring.push_back(k);
            } else if let Some(e) = inner.map.remove(&k) {
                inner.bytes -= e.bytes.len() as u64;
            }
        }
        inner.bytes += size;
        inner.map.insert(
            d.clone(),
            Entry {
                bytes,
                referenced: false,
            },
        );
        inner.ring.push_back(d.clone());
    }

    /// Forgets blob `d` (it was deleted).
    pub fn remove(&self, d: &Digest) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = inner.map.remove(d) {
            inner.bytes -= e.bytes.len() as u64;
        }
        // Keys of removed entries stay in the ring until reached; keep them from piling up
        // when deletions outpace evictions (a GC sweep over many small blobs).
        if inner.ring.len() > 2 * inner.map.len() + 64 {
            let Inner { map, ring, .. } = &mut *inner;
            let mut seen = std::collections::HashSet::with_capacity(map.len());
            ring.retain(|k| map.contains_key(k) && seen.insert(k.clone()));
        }
    }

    /// Bytes held now.
    pub fn held_bytes(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u32) -> Digest {
        Digest::parse(&format!("sha256:{n:064x}")).unwrap()
    }

    #[test]
    fn holds_within_its_budget_and_keeps_what_is_read() {
        let c = SmallBlobCache::new(8 * 100);
        for n in 0..8 {
            c.insert(&digest(n), Bytes::from(vec![n as u8; 100]));
        }
        assert_eq!(c.held_bytes(), 800);
        // Read blob 0 so it gets a second chance, then overflow by one.
        assert_eq!(c.get(&digest(0)).unwrap(), vec![0u8; 100]);
        c.insert(&digest(8), Bytes::from(vec![8u8; 100]));
        assert!(c.held_bytes() <= 800);
        assert!(c.get(&digest(0)).is_some(), "a referenced entry is kept");
        assert!(
            c.get(&digest(1)).is_none(),
            "the oldest unreferenced entry goes"
        );
        assert!(c.get(&digest(8)).is_some());
    }

    #[test]
    fn refuses_blobs_too_large_for_its_budget_and_does_nothing_when_disabled() {
        let c = SmallBlobCache::new(800);
        c.insert(&digest(1), Bytes::from(vec![1u8; 101]));
        assert!(c.get(&digest(1)).is_none());
        let off = SmallBlobCache::new(0);
        off.insert(&digest(1), Bytes::from_static(b"x"));
        assert!(off.get(&digest(1)).is_none());
        assert_eq!(off.held_bytes(), 0);
    }

    #[test]
    fn removal_forgets_and_the_ring_stays_bounded() {
        let c = SmallBlobCache::new(1 << 20);
        for round in 0..50u32 {
            for n in 0..100 {
                c.insert(&digest(n), Bytes::from(vec![round as u8; 10]));
            }
            for n in 0..100 {
                c.remove(&digest(n));
            }
        }
        assert_eq!(c.held_bytes(), 0);
        assert!(c.get(&digest(3)).is_none());
        let ring = c.inner.lock().unwrap().ring.len();
        assert!(ring <= 64 + 1, "ring holds {ring} stale keys");
    }
}
