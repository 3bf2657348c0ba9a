//! A brake on password guessing: too many failures for one key (an account, a source address)
//! within a window lock that key out for a while. Bounded memory.

use std::collections::HashMap;

/// Failure counting per key.
#[derive(Debug)]
pub struct FailureLimiter {
    max_failures: u32,
    window_secs: u64,
    lockout_secs: u64,
    capacity: usize,
    entries: HashMap<String, Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    first: u64,
    failures: u32,
    locked_until: u64,
}

impl FailureLimiter {
    /// `max_failures` within `window_secs` lock a key for `lockout_secs`; at most `capacity`
    /// keys are tracked (the stalest are forgotten first).
    pub fn new(max_failures: u32, window_secs: u64, lockout_secs: u64, capacity: usize) -> Self {
        FailureLimiter {
            max_failures: max_failures.max(1),
            window_secs,
            lockout_secs,
            capacity: capacity.max(1),
            entries: HashMap::new(),
        }
    }

    /// `Err(seconds to wait)` while `key` is locked out.
    pub fn check(&self, key: &str, now: u64) -> Result<(), u64> {
        match self.entries.get(key) {
            Some(e) if e.locked_until > now => Err(e.locked_until - now),
            _ => Ok(()),
        }
    }

    /// Records a failure.
    pub fn fail(&mut self, key: &str, now: u64) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(key) {
            self.evict(now);
        }
        let e = self.entries.entry(key.to_owned()).or_insert(Entry {
            first: now,
            failures: 0,
            locked_until: 0,
        });
        if now.saturating_sub(e.first) > self.window_secs {
            *e = Entry {
                first: now,
                failures: 0,
                locked_until: 0,
            };
        }
        e.failures += 1;
        if e.failures >= self.max_failures {
            e.locked_until = now + self.lockout_secs;
            e.failures = 0;
            e.first = now;
        }
    }

    /// Forgets a key's failures after a success.
    pub fn succeed(&mut self, key: &str) {
        self.entries.remove(key);
    }

    fn evict(&mut self, now: u64) {
        let (window, capacity) = (self.window_secs, self.capacity);
        self.entries
            .retain(|_, e| e.locked_until > now || now.saturating_sub(e.first) <= window);
        if self.entries.len() >= capacity {
            // Still full: drop the oldest half.
            let mut firsts: Vec<u64> = self.entries.values().map(|e| e.first).collect();
            firsts.sort_unstable();
            let cut = firsts[firsts.len() / 2];
            self.entries
                .retain(|_, e| e.first > cut || e.locked_until > now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_and_unlocks() {
        let mut l = FailureLimiter::new(3, 60, 30, 100);
        for _ in 0..2 {
            l.fail("a", 10);
        }
        assert!(l.check("a", 10).is_ok());
        l.fail("a", 11);
        assert_eq!(l.check("a", 11), Err(30));
        assert!(l.check("a", 41).is_ok());
        assert!(l.check("b", 11).is_ok());
        l.fail("c", 0);
        l.succeed("c");
        l.fail("c", 1);
        l.fail("c", 2);
        assert!(l.check("c", 2).is_ok());
    }

    #[test]
    fn bounded() {
        let mut l = FailureLimiter::new(3, 60, 30, 10);
        for i in 0..1000 {
            l.fail(&format!("k{i}"), i);
        }
        assert!(l.entries.len() <= 10);
    }
}
