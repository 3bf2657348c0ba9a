//! Per-repository write generations: a cheap "has anything changed in this repository?" for
//! caches of values derived from its metadata (signature verdicts).

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters in the table: 32 KiB, whatever the number of repositories.
const SLOTS: usize = 4096;

/// A fixed table of counters indexed by a hash of the repository name. A metadata store bumps a
/// repository's counter after every committed write to its manifests, tags, links or referrers;
/// readers compare values. Repositories sharing a slot only cause extra invalidation, never a
/// missed one, and memory stays bounded.
pub struct Generations {
    slots: Box<[AtomicU64]>,
}

impl Default for Generations {
    fn default() -> Self {
        Self::new()
    }
}

impl Generations {
    /// A table with every counter at zero.
    pub fn new() -> Self {
        Generations {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn slot(&self, repo: &str) -> &AtomicU64 {
        let mut h = std::hash::DefaultHasher::new();
        repo.hash(&mut h);
        &self.slots[(h.finish() % SLOTS as u64) as usize]
    }

    /// The current generation of `repo`.
    pub fn get(&self, repo: &str) -> u64 {
        // Acquire pairs with the Release in `bump`: a reader that sees the new value also sees
        // the commit that preceded the bump.
        self.slot(repo).load(Ordering::Acquire)
    }

    /// Marks `repo` changed: call after the write is committed.
    pub fn bump(&self, repo: &str) {
        self.slot(repo).fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::Generations;

    #[test]
    fn bumping_one_repository_changes_its_generation() {
        let g = Generations::new();
        let (a0, b0) = (g.get("a"), g.get("b"));
        g.bump("a");
        assert_ne!(g.get("a"), a0);
        g.bump("b");
        assert_ne!(g.get("b"), b0);
    }
}
