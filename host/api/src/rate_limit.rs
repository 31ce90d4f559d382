//! Request rate limits per organisation and per credential (API token or session), applied after
//! authentication: a caller over either answers 429 with `Retry-After`, and what one organisation
//! or token spends never slows another. GCRA buckets from `governor`, in memory per process (with
//! several replicas each counts on its own, like the sign-in throttles).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::auth::{Authenticated, Credential};
use crate::error::ApiError;

/// Requests a minute; `None` leaves that limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub per_organisation: Option<u32>,
    pub per_credential: Option<u32>,
    /// Single sign-on logins one client address may start (a public route that runs a plugin).
    pub sso_starts_per_address: Option<u32>,
}

impl Default for RateLimits {
    fn default() -> RateLimits {
        RateLimits {
            per_organisation: Some(6000),
            per_credential: Some(1200),
            sso_starts_per_address: Some(30),
        }
    }
}

pub struct RequestLimiter {
    organisations: Option<DefaultKeyedRateLimiter<String>>,
    credentials: Option<DefaultKeyedRateLimiter<String>>,
    sso_starts: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
    checks: std::sync::atomic::AtomicU64,
}

/// Every this many checks, buckets that are full again are forgotten.
const FORGET_EVERY: u64 = 10_000;

fn per_minute(n: Option<u32>) -> Option<DefaultKeyedRateLimiter<String>> {
    let n = NonZeroU32::new(n?)?;
    Some(RateLimiter::keyed(Quota::per_minute(n)))
}

impl RequestLimiter {
    pub fn new(limits: RateLimits) -> RequestLimiter {
        RequestLimiter {
            organisations: per_minute(limits.per_organisation),
            credentials: per_minute(limits.per_credential),
            sso_starts: per_minute(limits.sso_starts_per_address),
            clock: DefaultClock::default(),
            checks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Counts one single sign-on start from `address`; false when it is over its limit.
    pub fn allow_sso_start(&self, address: &str) -> bool {
        self.sso_starts
            .as_ref()
            .is_none_or(|limiter| limiter.check_key(&address.to_owned()).is_ok())
    }

    /// Counts one request of the caller; 429 naming the limit when its credential or the
    /// organisation it acts in is over (a person acting in none counts on the credential only).
    pub fn check(&self, caller: &Authenticated) -> Result<(), ApiError> {
        let n = self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % FORGET_EVERY == FORGET_EVERY - 1 {
            self.forget_idle();
        }
        let credential = match &caller.person.credential {
            Credential::Session(id) => format!("session:{id}"),
            Credential::ApiToken(id) => format!("token:{id}"),
        };
        if let Some(limiter) = &self.credentials
            && let Err(not_until) = limiter.check_key(&credential)
        {
            return Err(over(
                "credential",
                not_until.wait_time_from(self.clock.now()),
            ));
        }
        if let Some(limiter) = &self.organisations
            && let Some((org, _)) = &caller.org
            && let Err(not_until) = limiter.check_key(&org.to_string())
        {
            return Err(over(
                "organisation",
                not_until.wait_time_from(self.clock.now()),
            ));
        }
        Ok(())
    }

    /// Forgets the buckets that are full again (called now and then, so keys do not pile up).
    pub fn forget_idle(&self) {
        for limiter in [&self.organisations, &self.credentials]
            .into_iter()
            .flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

fn over(what: &str, wait: Duration) -> ApiError {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut e = ApiError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!(
            "too many requests for this {what}; try again in {} s",
            seconds.max(1)
        ),
    );
    e.retry_after_secs = Some(seconds.max(1));
    e
}
