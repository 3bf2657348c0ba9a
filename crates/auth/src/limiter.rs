//! A brake on password guessing that cannot be turned against other accounts.
//!
//! Failures are counted per (account, source address) pair. A pair gets `free_failures` attempts;
//! after that each further attempt must wait an exponentially growing delay since the pair's
//! last failure (2 s, 4 s, 8 s, ... up to `max_delay`), so a guesser slows down to a trickle
//! while the same account from any other address, and every other account from this address,
//! is untouched. Attempts are *reserved* before the password is checked, so a burst of parallel
//! guesses cannot run more checks than the pair allows; a success forgets the pair.
//!
//! A source address with many failures across accounts (`address_failures` within the window,
//! each account counting for at most its free failures) becomes suspect: from then on, every pair of that address with a failure is delayed from its
//! first failure instead of after `free_failures`. Accounts without failures from that address
//! (the administrator behind the same NAT) are never refused. Memory is bounded by `capacity`
//! entries in each map; entries are fixed-size (pairs are keyed by a hash).

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// How throttling behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Failures a pair may have before its attempts are delayed.
    pub free_failures: u32,
    /// Failures are forgotten after this long without a new one (milliseconds).
    pub window_ms: u64,
    /// Longest delay between two attempts of one pair (milliseconds).
    pub max_delay_ms: u64,
    /// Failures from one address (any accounts) within the window that make it suspect.
    pub address_failures: u32,
    /// Most pairs, and most addresses, remembered.
    pub capacity: usize,
}

/// The first delay once a pair has used its free failures; each further failure doubles it.
pub const BASE_DELAY_MS: u64 = 2_000;

/// Failure counting per (account, address) and per address.
#[derive(Debug)]
pub struct LoginThrottle {
    settings: ThrottleSettings,
    pairs: HashMap<[u8; 16], Pair>,
    addresses: HashMap<String, Address>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Pair {
    /// Failures counted so far.
    failures: u32,
    /// Attempts reserved and being checked.
    pending: u32,
    /// Time of the last failure or reservation (ms).
    last_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct Address {
    first_ms: u64,
    failures: u32,
}

/// Why an attempt may not be made now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// Seconds until the next attempt of this pair may be made (at least 1).
    pub retry_after_secs: u64,
}

fn pair_key(account: &str, address: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(account.as_bytes());
    h.update([0]);
    h.update(address.as_bytes());
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

fn ceil_secs(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

impl LoginThrottle {
    /// An empty throttle.
    pub fn new(settings: ThrottleSettings) -> Self {
        LoginThrottle {
            settings: ThrottleSettings {
                free_failures: settings.free_failures.max(1),
                address_failures: settings.address_failures.max(1),
                capacity: settings.capacity.max(2),
                ..settings
            },
            pairs: HashMap::new(),
            addresses: HashMap::new(),
        }
    }

    /// The delay a pair with `failures` failures must leave after its last one, given the number
    /// of free failures it has (0 while it has some left).
    fn delay_ms(&self, failures: u32, free: u32) -> u64 {
        if failures < free {
            return 0;
        }
        let doublings = (failures - free).min(40);
        BASE_DELAY_MS
            .saturating_mul(1u64 << doublings)
            .min(self.settings.max_delay_ms)
    }

    fn suspect(&self, address: &str, now_ms: u64) -> bool {
        self.addresses.get(address).is_some_and(|a| {
            now_ms.saturating_sub(a.first_ms) <= self.settings.window_ms
                && a.failures >= self.settings.address_failures
        })
    }

    /// Reserves one attempt of `account` from `address` (empty when unknown), or says how long
    /// to wait. Every `Ok` must be followed by exactly one of [`fail`](Self::fail),
    /// [`succeed`](Self::succeed) or [`release`](Self::release).
    pub fn reserve(&mut self, account: &str, address: &str, now_ms: u64) -> Result<(), Throttled> {
        let suspect = self.suspect(address, now_ms);
        let key = pair_key(account, address);
        let window = self.settings.window_ms;
        let mut entry = self.pairs.get(&key).copied().unwrap_or_default();
        if entry.pending == 0 && now_ms.saturating_sub(entry.last_ms) > window {
            entry.failures = 0;
        }
        // Attempts in flight count as failures until they are decided.
        let attempts = entry.failures + entry.pending;
        let mut delay = self.delay_ms(attempts, self.settings.free_failures);
        if suspect && attempts > 0 {
            // A suspect address has no free failures left: every account it failed on waits.
            delay = delay.max(BASE_DELAY_MS.min(self.settings.max_delay_ms));
        }
        if delay > 0 {
            let ready_at = entry.last_ms.saturating_add(delay);
            if entry.pending > 0 || now_ms < ready_at {
                let wait = if now_ms < ready_at {
                    ready_at - now_ms
                } else {
                    delay
                };
                return Err(Throttled {
                    retry_after_secs: ceil_secs(wait),
                });
            }
        }
        entry.pending += 1;
        entry.last_ms = entry.last_ms.max(now_ms);
        if !self.pairs.contains_key(&key) && self.pairs.len() >= self.settings.capacity {
            self.evict_pairs(now_ms);
        }
        self.pairs.insert(key, entry);
        Ok(())
    }

    /// Decides a reserved attempt as failed.
    pub fn fail(&mut self, account: &str, address: &str, now_ms: u64) {
        let key = pair_key(account, address);
        let mut failures = 1;
        if let Some(e) = self.pairs.get_mut(&key) {
            e.pending = e.pending.saturating_sub(1);
            e.failures = e.failures.saturating_add(1);
            e.last_ms = now_ms;
            failures = e.failures;
        }
        // The address counts each account's free failures only: one account guessed over and
        // over is the pair's business, many accounts guessed from one address are the address's.
        if !address.is_empty() && failures <= self.settings.free_failures {
            if !self.addresses.contains_key(address)
                && self.addresses.len() >= self.settings.capacity
            {
                self.evict_addresses(now_ms);
            }
            let window = self.settings.window_ms;
            let a = self.addresses.entry(address.to_owned()).or_insert(Address {
                first_ms: now_ms,
                failures: 0,
            });
            if now_ms.saturating_sub(a.first_ms) > window {
                *a = Address {
                    first_ms: now_ms,
                    failures: 0,
                };
            }
            a.failures = a.failures.saturating_add(1);
        }
    }

    /// Decides a reserved attempt as successful: the pair's failures are forgotten.
    pub fn succeed(&mut self, account: &str, address: &str) {
        self.pairs.remove(&pair_key(account, address));
    }

    /// Gives a reserved attempt back undecided (the check could not run).
    pub fn release(&mut self, account: &str, address: &str) {
        let key = pair_key(account, address);
        if let Some(e) = self.pairs.get_mut(&key) {
            e.pending = e.pending.saturating_sub(1);
            if e.pending == 0 && e.failures == 0 {
                self.pairs.remove(&key);
            }
        }
    }

    /// Pairs and addresses remembered (for tests and metrics).
    pub fn len(&self) -> (usize, usize) {
        (self.pairs.len(), self.addresses.len())
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty() && self.addresses.is_empty()
    }

    fn evict_pairs(&mut self, now_ms: u64) {
        let (window, capacity, free) = (
            self.settings.window_ms,
            self.settings.capacity,
            self.settings.free_failures,
        );
        self.pairs
            .retain(|_, e| e.pending > 0 || now_ms.saturating_sub(e.last_ms) <= window);
        if self.pairs.len() >= capacity {
            // Still full: first forget pairs that are not being delayed, oldest first; pairs
            // being delayed are what the throttle is for, so they go last.
            let mut ages: Vec<(bool, u64)> = self
                .pairs
                .values()
                .map(|e| (e.failures >= free || e.pending > 0, e.last_ms))
                .collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            self.pairs
                .retain(|_, e| (e.failures >= free || e.pending > 0, e.last_ms) > cut);
        }
    }

    fn evict_addresses(&mut self, now_ms: u64) {
        let (window, capacity) = (self.settings.window_ms, self.settings.capacity);
        self.addresses
            .retain(|_, a| now_ms.saturating_sub(a.first_ms) <= window);
        if self.addresses.len() >= capacity {
            let mut firsts: Vec<u64> = self.addresses.values().map(|a| a.first_ms).collect();
            firsts.sort_unstable();
            let cut = firsts[firsts.len() / 2];
            self.addresses.retain(|_, a| a.first_ms > cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ThrottleSettings {
        ThrottleSettings {
            free_failures: 3,
            window_ms: 300_000,
            max_delay_ms: 10_000,
            address_failures: 5,
            capacity: 1000,
        }
    }

    fn attempt(t: &mut LoginThrottle, acct: &str, addr: &str, now: u64) -> Result<(), u64> {
        t.reserve(acct, addr, now).map_err(|e| e.retry_after_secs)?;
        t.fail(acct, addr, now);
        Ok(())
    }

    #[test]
    fn free_failures_then_exponential_backoff_capped() {
        let mut t = LoginThrottle::new(ThrottleSettings {
            address_failures: 100,
            ..settings()
        });
        for i in 0..3 {
            assert_eq!(attempt(&mut t, "a", "1.1.1.1", i), Ok(()));
        }
        // 4th attempt: 2 s after the last failure.
        assert_eq!(attempt(&mut t, "a", "1.1.1.1", 100), Err(2));
        assert_eq!(attempt(&mut t, "a", "1.1.1.1", 2_002), Ok(()));
        // Then 4 s, then 8 s, then capped at 10 s.
        assert_eq!(attempt(&mut t, "a", "1.1.1.1", 2_003), Err(4));
        assert_eq!(attempt(&mut t, "a", "1.1.1.1", 6_002), Ok(()));
        assert_eq!(attempt(&mut t, "a", "1.1.1.1", 6_003), Err(8));
        assert_eq!(attempt(&mut t, "a", "1.1.1.1", 14_002), Ok(()));
        assert_eq!(attempt(&mut t, "a", "1.1.1.1", 14_003), Err(10));
        // Other addresses and other accounts are not affected.
        assert_eq!(attempt(&mut t, "a", "2.2.2.2", 14_003), Ok(()));
        assert!(t.reserve("b", "1.1.1.1", 14_003).is_ok());
        t.succeed("b", "1.1.1.1");
        // A success forgets the pair.
        t.reserve("a", "1.1.1.1", 30_000).unwrap();
        t.succeed("a", "1.1.1.1");
        for i in 0..3 {
            assert_eq!(attempt(&mut t, "a", "1.1.1.1", 30_001 + i), Ok(()));
        }
        // Failures are forgotten after the window.
        assert!(attempt(&mut t, "a", "1.1.1.1", 30_010).is_err());
        assert_eq!(attempt(&mut t, "a", "1.1.1.1", 400_000), Ok(()));
    }

    #[test]
    fn reservations_bound_parallel_checks() {
        let mut t = LoginThrottle::new(settings());
        // 300 guesses at once: only the free failures are checked.
        let granted = (0..300)
            .filter(|_| t.reserve("root", "1.1.1.1", 5).is_ok())
            .count();
        assert_eq!(granted, 3);
        // Attempts given back undecided do not count.
        for _ in 0..3 {
            t.release("root", "1.1.1.1");
        }
        assert!(t.reserve("root", "1.1.1.1", 6).is_ok());
        t.succeed("root", "1.1.1.1");
        assert!(t.is_empty());
    }

    #[test]
    fn suspect_address_never_refuses_accounts_without_failures() {
        let mut t = LoginThrottle::new(settings());
        for i in 0..50 {
            assert_eq!(
                attempt(&mut t, &format!("random{i}"), "6.6.6.6", 10),
                Ok(())
            );
        }
        // root has no failure from this address: always checked.
        for now in [11, 12, 13] {
            t.reserve("root", "6.6.6.6", now).unwrap();
            t.succeed("root", "6.6.6.6");
        }
        // A name that failed once from the suspect address is delayed at once.
        assert!(attempt(&mut t, "random3", "6.6.6.6", 20).is_err());
        // Before the address became suspect, a name had its free failures.
        let mut t = LoginThrottle::new(settings());
        assert_eq!(attempt(&mut t, "x", "6.6.6.6", 0), Ok(()));
        assert_eq!(attempt(&mut t, "x", "6.6.6.6", 0), Ok(()));
    }

    #[test]
    fn bounded_and_keeps_delayed_pairs() {
        let mut t = LoginThrottle::new(ThrottleSettings {
            capacity: 10,
            ..settings()
        });
        for i in 0..3 {
            attempt(&mut t, "target", "1.1.1.1", i).unwrap();
        }
        for i in 0..1000u64 {
            let _ = attempt(
                &mut t,
                &format!("k{i}"),
                &format!("10.0.{}.{}", i / 256, i % 256),
                10 + i,
            );
        }
        let (pairs, addresses) = t.len();
        assert!(pairs <= 10 && addresses <= 10, "{pairs} {addresses}");
        // The pair being delayed survived the flood of new keys.
        assert!(t.reserve("target", "1.1.1.1", 1_011).is_err());
    }
}
