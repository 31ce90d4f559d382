//! Login throttling: after `max_failures` failed attempts within `window`, a key (an account or a
//! client address) is refused until the oldest failure leaves the window.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleDecision {
    Allow,
    Deny { retry_after: Duration },
}

/// An in-memory sliding-window failure counter, bounded in size.
pub struct LoginThrottle {
    max_failures: usize,
    window: Duration,
    max_keys: usize,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginThrottle {
    pub fn new(max_failures: usize, window: Duration) -> LoginThrottle {
        LoginThrottle {
            max_failures: max_failures.max(1),
            window,
            max_keys: 100_000,
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn check(&self, key: &str) -> ThrottleDecision {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> ThrottleDecision {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(key) {
            Some(entries) => self.decide(entries, now),
            None => ThrottleDecision::Allow,
        }
    }

    /// Drops the failures that left the window and decides on what is left.
    fn decide(&self, entries: &mut VecDeque<Instant>, now: Instant) -> ThrottleDecision {
        while entries
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            entries.pop_front();
        }
        if entries.len() >= self.max_failures {
            let oldest = entries[entries.len() - self.max_failures];
            let retry_after = self.window.saturating_sub(now.duration_since(oldest));
            return ThrottleDecision::Deny {
                retry_after: retry_after.max(Duration::from_secs(1)),
            };
        }
        ThrottleDecision::Allow
    }

    /// Checks the key and, when allowed, counts this attempt at once — before the slow check it
    /// guards runs, so parallel attempts cannot all slip under the limit. A successful attempt
    /// takes its count back with [`LoginThrottle::forgive_one`] or [`LoginThrottle::record_success`].
    pub fn try_attempt(&self, key: &str) -> ThrottleDecision {
        self.try_attempt_at(key, Instant::now())
    }

    fn try_attempt_at(&self, key: &str, now: Instant) -> ThrottleDecision {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entries) = map.get_mut(key)
            && let deny @ ThrottleDecision::Deny { .. } = self.decide(entries, now)
        {
            return deny;
        }
        self.push(&mut map, key, now);
        ThrottleDecision::Allow
    }

    /// Takes back the newest counted attempt of `key` (it succeeded).
    pub fn forgive_one(&self, key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entries) = map.get_mut(key) {
            entries.pop_back();
            if entries.is_empty() {
                map.remove(key);
            }
        }
    }

    /// Failures of `key` within the window.
    pub fn failures(&self, key: &str) -> usize {
        let now = Instant::now();
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).map_or(0, |entries| {
            entries
                .iter()
                .filter(|t| now.duration_since(**t) < self.window)
                .count()
        })
    }

    pub fn record_failure(&self, key: &str) {
        self.record_failure_at(key, Instant::now());
    }

    fn record_failure_at(&self, key: &str, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        self.push(&mut map, key, now);
    }

    /// Records `now` for `key`. At capacity, expired keys go first, then the keys whose newest
    /// failure is oldest: the map never refuses to record (an attacker filling it with fresh
    /// addresses must not switch the throttle off for the key under attack).
    fn push(&self, map: &mut HashMap<String, VecDeque<Instant>>, key: &str, now: Instant) {
        if map.len() >= self.max_keys && !map.contains_key(key) {
            let window = self.window;
            map.retain(|_, v| v.back().is_some_and(|t| now.duration_since(*t) < window));
            if map.len() >= self.max_keys {
                let mut by_age: Vec<(Instant, String)> = map
                    .iter()
                    .map(|(k, v)| (v.back().copied().unwrap_or(now), k.clone()))
                    .collect();
                by_age.sort();
                let evict = map.len() + 1 - self.max_keys + self.max_keys / 10;
                for (_, k) in by_age.into_iter().take(evict) {
                    map.remove(&k);
                }
            }
        }
        let entries = map.entry(key.to_owned()).or_default();
        entries.push_back(now);
        while entries.len() > self.max_failures {
            entries.pop_front();
        }
    }

    pub fn record_success(&self, key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
    }

    /// A throttle holding at most `max_keys` keys (tests of eviction).
    pub fn with_capacity(max_failures: usize, window: Duration, max_keys: usize) -> LoginThrottle {
        LoginThrottle {
            max_keys: max_keys.max(1),
            ..LoginThrottle::new(max_failures, window)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_failures_and_recovers() {
        let t = LoginThrottle::new(3, Duration::from_secs(60));
        let start = Instant::now();
        for i in 0..3 {
            assert_eq!(
                t.check_at("a", start),
                ThrottleDecision::Allow,
                "attempt {i}"
            );
            t.record_failure_at("a", start);
        }
        assert!(matches!(
            t.check_at("a", start),
            ThrottleDecision::Deny { .. }
        ));
        assert_eq!(
            t.check_at("b", start),
            ThrottleDecision::Allow,
            "other keys unaffected"
        );
        assert_eq!(
            t.check_at("a", start + Duration::from_secs(61)),
            ThrottleDecision::Allow,
            "window passed"
        );
        t.record_success("a");
        assert_eq!(t.check_at("a", start), ThrottleDecision::Allow);
    }

    #[test]
    fn attempts_count_before_the_check_runs() {
        let t = LoginThrottle::new(5, Duration::from_secs(60));
        let allowed = (0..40)
            .filter(|_| t.try_attempt("a") == ThrottleDecision::Allow)
            .count();
        assert_eq!(allowed, 5, "only the limit gets through, however many race");
        t.forgive_one("a");
        assert_eq!(t.try_attempt("a"), ThrottleDecision::Allow);
    }

    #[test]
    fn a_full_map_evicts_instead_of_refusing() {
        let t = LoginThrottle::with_capacity(2, Duration::from_secs(60), 100);
        t.record_failure("victim");
        t.record_failure("victim");
        for i in 0..1000 {
            t.record_failure(&format!("filler-{i}"));
        }
        // The newest keys are kept and recorded: a fresh key at capacity is still counted.
        t.record_failure("late");
        t.record_failure("late");
        assert!(matches!(t.check("late"), ThrottleDecision::Deny { .. }));
        assert!(t.failures.lock().unwrap().len() <= 100);
    }
}
