//! Last-pull tracking: every manifest GET or HEAD (by tag or digest) notes the manifest in a
//! bounded in-memory map; a background task flushes the map into the metadata store in one
//! transaction every so often (and on shutdown). Manifest GETs never wait for a metadata write.
//!
//! HEAD counts as a pull because containerd (and so the kubelet) resolves a tag with HEAD and
//! skips the GET when it already holds the digest: for such clients HEAD is the only sign of use.
//! A tag's last pull is its manifest's: pulling `app@sha256:X` also counts for every tag on X.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci::Digest;
use store::StoreError;

use crate::Service;

/// Shards of the map, so concurrent pulls of different manifests rarely share a lock.
const SHARDS: usize = 16;
/// Most (repository, manifest) pairs held between flushes; pulls of further manifests are
/// dropped (and counted) until the next flush, which a full map brings forward.
pub const DEFAULT_CAPACITY: usize = 65_536;
/// How often the server flushes pulls to the metadata store.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(30);

/// Pulls noted since the last flush: repository -> digest -> unix seconds.
pub(crate) struct PullTracker {
    shards: Vec<Mutex<HashMap<String, HashMap<Digest, u64>>>>,
    len: AtomicUsize,
    capacity: usize,
    /// Pulls not tracked because the map was full (exported as `wharf_pulls_untracked_total`).
    pub(crate) dropped: prometheus_client::metrics::counter::Counter,
    full: tokio::sync::Notify,
}

impl PullTracker {
    /// An empty tracker holding at most `capacity` entries.
    pub(crate) fn new(capacity: usize) -> Self {
        PullTracker {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            len: AtomicUsize::new(0),
            capacity,
            dropped: Default::default(),
            full: tokio::sync::Notify::new(),
        }
    }

    fn shard(&self, digest: &Digest) -> &Mutex<HashMap<String, HashMap<Digest, u64>>> {
        // Digests are uniformly distributed: their first hex digit picks the shard.
        let b = digest.hex().as_bytes().first().copied().unwrap_or(0);
        &self.shards[(b as usize) % SHARDS]
    }

    /// Notes a pull at `now`. Allocates only for a manifest not yet noted since the last flush.
    pub(crate) fn note(&self, repo: &str, digest: &Digest, now: u64) {
        let mut map = self.shard(digest).lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = map.get_mut(repo).and_then(|m| m.get_mut(digest)) {
            *t = (*t).max(now);
            return;
        }
        if self.len.load(Ordering::Relaxed) >= self.capacity {
            drop(map);
            self.dropped.inc();
            self.full.notify_one();
            return;
        }
        self.len.fetch_add(1, Ordering::Relaxed);
        map.entry(repo.to_owned())
            .or_default()
            .insert(digest.clone(), now);
    }

    /// Takes everything noted so far, leaving the tracker empty.
    pub(crate) fn drain(&self) -> Vec<(String, Digest, u64)> {
        let mut out = Vec::new();
        for s in &self.shards {
            let taken = std::mem::take(&mut *s.lock().unwrap_or_else(|e| e.into_inner()));
            for (repo, m) in taken {
                self.len.fetch_sub(m.len(), Ordering::Relaxed);
                out.extend(m.into_iter().map(|(d, t)| (repo.clone(), d, t)));
            }
        }
        out
    }

    /// Puts entries back after a failed flush (those that still fit).
    fn restore(&self, entries: Vec<(String, Digest, u64)>) {
        for (repo, d, t) in entries {
            self.note(&repo, &d, t);
        }
    }

    /// Pulls of `repo` noted since the last flush.
    pub(crate) fn pending(&self, repo: &str) -> Vec<(Digest, u64)> {
        let mut out = Vec::new();
        for s in &self.shards {
            let map = s.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(m) = map.get(repo) {
                out.extend(m.iter().map(|(d, t)| (d.clone(), *t)));
            }
        }
        out
    }

    /// Pulls not tracked because the map was full, since start.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

impl Service {
    /// Notes a pull of manifest `digest` of `repo` (called on every manifest GET and HEAD).
    pub fn note_pull(&self, repo: &str, digest: &Digest) {
        self.pulls.note(repo, digest, auth::now());
    }

    /// When each manifest of `repo` was last pulled (unix seconds): the flushed times merged
    /// with those noted since. Manifests never pulled since tracking began are absent. For
    /// retention (`unpulled_for`) and for the pull-through cache's least-recently-used eviction.
    pub async fn last_pulls(&self, repo: &str) -> Result<HashMap<Digest, u64>, StoreError> {
        let mut out: HashMap<Digest, u64> = self.meta.last_pulls(repo).await?.into_iter().collect();
        for (d, t) in self.pulls.pending(repo) {
            let e = out.entry(d).or_insert(t);
            *e = (*e).max(t);
        }
        Ok(out)
    }

    /// Writes the pulls noted so far to the metadata store in one transaction; returns how
    /// many manifests it covered. On failure the entries are kept for the next flush.
    pub async fn flush_pulls(&self) -> Result<usize, StoreError> {
        let entries = self.pulls.drain();
        let n = entries.len();
        if n == 0 {
            return Ok(0);
        }
        if let Err(e) = self.meta.note_pulls(entries.clone()).await {
            self.pulls.restore(entries);
            return Err(e);
        }
        tracing::debug!(manifests = n, "pull times flushed");
        Ok(n)
    }

    /// Flushes pulls every `every` (sooner when the map fills up) until the runtime stops;
    /// call [`Service::flush_pulls`] once more on shutdown.
    pub fn spawn_pull_flusher(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let reg = self.clone();
        tokio::spawn(async move {
            let mut reported = 0;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = reg.pulls.full.notified() => {}
                }
                if let Err(e) = reg.flush_pulls().await {
                    tracing::warn!(error = %e, "flushing pull times failed; retrying later");
                }
                let dropped = reg.pulls.dropped();
                if dropped > reported {
                    tracing::warn!(
                        dropped = dropped - reported,
                        "pull tracking map was full: some pulls were not recorded"
                    );
                    reported = dropped;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_keep_the_latest_time_and_stay_bounded() {
        let t = PullTracker::new(3);
        let (a, b, c, d) = (
            Digest::sha256(b"a"),
            Digest::sha256(b"b"),
            Digest::sha256(b"c"),
            Digest::sha256(b"d"),
        );
        t.note("r", &a, 10);
        t.note("r", &a, 5);
        t.note("r", &a, 12);
        t.note("r", &b, 7);
        t.note("s", &a, 9);
        // Full: a new entry is dropped, an existing one still updates.
        t.note("r", &c, 1);
        t.note("r", &b, 8);
        assert_eq!(t.dropped(), 1);
        let mut p = t.pending("r");
        p.sort_by_key(|(_, time)| *time);
        assert_eq!(p, vec![(b.clone(), 8), (a.clone(), 12)]);
        let mut all = t.drain();
        all.sort();
        assert_eq!(all.len(), 3);
        assert!(t.pending("r").is_empty());
        // Room again after the drain.
        t.note("r", &d, 20);
        assert_eq!(t.pending("r"), vec![(d, 20)]);
    }
}
