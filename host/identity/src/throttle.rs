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
        let Some(entries) = map.get_mut(key) else {
            return ThrottleDecision::Allow;
        };
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

    pub fn record_failure(&self, key: &str) {
        self.record_failure_at(key, Instant::now());
    }

    fn record_failure_at(&self, key: &str, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.max_keys && !map.contains_key(key) {
            let window = self.window;
            map.retain(|_, v| v.back().is_some_and(|t| now.duration_since(*t) < window));
            if map.len() >= self.max_keys {
                return;
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
}
