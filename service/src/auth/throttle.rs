//! Limits on sign-in and sign-up, the two endpoints anybody may call and that each cost an
//! argon2id hash (19 MiB and a core for tens of milliseconds): per-IP and per-account rate
//! limits (GCRA, the `governor` crate), a progressive lockout after failed sign-ins, and a
//! bound on the hashes computed at once (OWASP Authentication Cheat Sheet: "account lockout",
//! "login throttling"; NIST SP 800-63B §5.2.2 rate limiting).
//!
//! The state is in memory, per replica: with N replicas a client gets N times the budget,
//! still far from what online guessing needs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use lethe_core::config::AuthSettings;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// Most e-mail addresses whose failures are remembered; past it, the entries not locked are
/// forgotten first (bounds memory under a spray of random addresses).
const MAX_TRACKED_ACCOUNTS: usize = 100_000;
/// Most keys a rate limiter keeps before forgetting those back at full budget.
const MAX_LIMITER_KEYS: usize = 100_000;
/// How long a sign-in or sign-up waits for a free hashing slot before 503.
const HASH_WAIT: Duration = Duration::from_millis(500);

/// Failed sign-ins of one e-mail address.
#[derive(Debug, Clone, Copy)]
struct Failures {
    /// Consecutive failures.
    count: u32,
    /// Locked until then, if locked.
    locked_until: Option<Instant>,
    /// When the last failure happened (entries idle for a day are forgotten).
    last: Instant,
}

/// Rate limits, lockouts and the hashing bound of the auth endpoints; one per process.
pub struct AuthThrottle {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_account: DefaultKeyedRateLimiter<String>,
    failures: Mutex<HashMap<String, Failures>>,
    hashes: Arc<Semaphore>,
    max_hashes: usize,
    lockout_after: u32,
    lockout_base: Duration,
    lockout_max: Duration,
}

/// A slot to compute one password hash in; dropped when the hash is done.
pub struct HashPermit(#[allow(dead_code)] OwnedSemaphorePermit);

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).expect("at least 1"))
}

fn limited(wait: Duration, what: &str) -> ApiError {
    let retry_after_s = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::TooManyRequests {
        retry_after_s: retry_after_s.max(1),
        detail: format!("too many sign-in or sign-up attempts {what}; try again later"),
    }
}

impl AuthThrottle {
    /// Limits as configured in `auth` (see [`AuthSettings`]).
    pub fn new(auth: &AuthSettings) -> Self {
        let max_hashes = match auth.max_concurrent_hashes {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        Self {
            per_ip: DefaultKeyedRateLimiter::hashmap(per_minute(auth.attempts_per_ip_per_minute)),
            per_account: DefaultKeyedRateLimiter::hashmap(per_minute(
                auth.attempts_per_account_per_minute,
            )),
            failures: Mutex::new(HashMap::new()),
            hashes: Arc::new(Semaphore::new(max_hashes)),
            max_hashes,
            lockout_after: auth.lockout_after_failures.max(1),
            lockout_base: Duration::from_secs(auth.lockout_base_s.max(1)),
            lockout_max: Duration::from_secs(auth.lockout_max_s.max(auth.lockout_base_s)),
        }
    }

    /// Password hashes computed at the same time at most.
    pub fn max_concurrent_hashes(&self) -> usize {
        self.max_hashes
    }

    /// Spends one attempt of `ip` and of `account` (a normalised e-mail address, or the raw
    /// text when it is not one), and refuses an account under lockout.
    ///
    /// # Errors
    /// [`ApiError::TooManyRequests`] with the seconds to wait.
    pub fn attempt(&self, ip: IpAddr, account: &str) -> Result<(), ApiError> {
        let now = DefaultClock::default().now();
        if let Err(not_until) = self.per_ip.check_key(&ip) {
            return Err(limited(not_until.wait_time_from(now), "from this address"));
        }
        if let Some(until) = self.locked_until(account) {
            return Err(limited(
                until.saturating_duration_since(Instant::now()),
                "for this account: it is locked after repeated failed sign-ins",
            ));
        }
        let key = account_key(account);
        if let Err(not_until) = self.per_account.check_key(&key) {
            return Err(limited(not_until.wait_time_from(now), "for this account"));
        }
        if self.per_ip.len() > MAX_LIMITER_KEYS {
            self.per_ip.retain_recent();
        }
        if self.per_account.len() > MAX_LIMITER_KEYS {
            self.per_account.retain_recent();
        }
        Ok(())
    }

    /// Spends one attempt of `ip` only, for calls that name no account (a token refresh);
    /// they share the address's budget with sign-ins and sign-ups.
    ///
    /// # Errors
    /// [`ApiError::TooManyRequests`] with the seconds to wait.
    pub fn attempt_from(&self, ip: IpAddr) -> Result<(), ApiError> {
        let now = DefaultClock::default().now();
        if let Err(not_until) = self.per_ip.check_key(&ip) {
            return Err(limited(not_until.wait_time_from(now), "from this address"));
        }
        if self.per_ip.len() > MAX_LIMITER_KEYS {
            self.per_ip.retain_recent();
        }
        Ok(())
    }

    fn locked_until(&self, account: &str) -> Option<Instant> {
        let failures = self.failures.lock().expect("lockout map");
        failures
            .get(&account_key(account))
            .and_then(|f| f.locked_until)
            .filter(|until| *until > Instant::now())
    }

    /// Records a failed sign-in on `account`; from the `lockout_after_failures`-th on, locks
    /// it for `lockout_base_s`, doubled at each further failure up to `lockout_max_s`.
    pub fn failed(&self, account: &str) {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("lockout map");
        if failures.len() >= MAX_TRACKED_ACCOUNTS {
            failures.retain(|_, f| {
                f.locked_until.is_some_and(|u| u > now)
                    || now.duration_since(f.last) < Duration::from_secs(60)
            });
        }
        let entry = failures.entry(account_key(account)).or_insert(Failures {
            count: 0,
            locked_until: None,
            last: now,
        });
        if now.duration_since(entry.last) > Duration::from_secs(86_400) {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        if entry.count >= self.lockout_after {
            let doublings = (entry.count - self.lockout_after).min(20);
            let lock = self
                .lockout_base
                .saturating_mul(1 << doublings)
                .min(self.lockout_max);
            entry.locked_until = Some(now + lock);
            tracing::warn!(
                failures = entry.count,
                locked_s = lock.as_secs(),
                "sign-ins locked after repeated failures"
            );
        }
    }

    /// Forgets the failures of `account` after a successful sign-in.
    pub fn succeeded(&self, account: &str) {
        self.failures
            .lock()
            .expect("lockout map")
            .remove(&account_key(account));
    }

    /// A slot to compute one password hash in, waiting at most 500 ms for one.
    ///
    /// # Errors
    /// [`ApiError::Unavailable`] (503, `Retry-After: 1`) when every slot stays busy.
    pub async fn hash_permit(&self) -> Result<HashPermit, ApiError> {
        match tokio::time::timeout(HASH_WAIT, self.hashes.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(HashPermit(permit)),
            _ => Err(ApiError::Unavailable(
                "too many sign-ins and sign-ups at once; try again in a second".into(),
            )),
        }
    }
}

/// The key an account's limits are kept under: the e-mail address, lowercased, cut to 320
/// bytes (RFC 5321's longest address) so a huge body cannot grow the maps.
fn account_key(account: &str) -> String {
    let lower = account.trim().to_lowercase();
    match lower.char_indices().nth(320) {
        Some((cut, _)) => lower[..cut].to_string(),
        None => lower,
    }
}

/// The client's IP address: the TCP peer, or the `Forwarded` / `X-Forwarded-For` address
/// when `trust_forwarded_for` (`server.trust_forwarded_for`) is set (behind a reverse proxy that overwrites them).
pub fn client_ip(req: &actix_web::HttpRequest, trust_forwarded_for: bool) -> IpAddr {
    let peer = req
        .peer_addr()
        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    if !trust_forwarded_for {
        return peer;
    }
    let info = req.connection_info();
    info.realip_remote_addr()
        .and_then(|text| {
            text.parse::<IpAddr>()
                .ok()
                .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        })
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(per_ip: u32, per_account: u32) -> AuthThrottle {
        let mut settings = lethe_core::config::Settings::load_from(None).unwrap().auth;
        settings.attempts_per_ip_per_minute = per_ip;
        settings.attempts_per_account_per_minute = per_account;
        settings.lockout_after_failures = 3;
        settings.lockout_base_s = 30;
        settings.lockout_max_s = 100;
        settings.max_concurrent_hashes = 1;
        AuthThrottle::new(&settings)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn an_address_gets_its_burst_then_429() {
        let t = throttle(3, 100);
        for i in 0..3 {
            t.attempt(ip(1), &format!("a{i}@example.com")).unwrap();
        }
        let e = t.attempt(ip(1), "b@example.com").unwrap_err();
        assert!(matches!(e, ApiError::TooManyRequests { retry_after_s, .. } if retry_after_s >= 1));
        t.attempt(ip(2), "b@example.com").unwrap();
    }

    #[test]
    fn an_account_is_limited_from_every_address_whatever_the_case() {
        let t = throttle(100, 2);
        t.attempt(ip(1), "ana@example.com").unwrap();
        t.attempt(ip(2), "ANA@example.com").unwrap();
        assert!(t.attempt(ip(3), "Ana@Example.com").is_err());
    }

    #[test]
    fn failures_lock_progressively_and_success_forgets_them() {
        let t = throttle(100, 100);
        t.failed("ana@example.com");
        t.failed("ana@example.com");
        assert!(t.locked_until("ana@example.com").is_none());
        t.failed("ana@example.com");
        let first = t.locked_until("ana@example.com").unwrap();
        assert!(first > Instant::now() + Duration::from_secs(25));
        assert!(t.attempt(ip(1), "ana@example.com").is_err());
        t.failed("ana@example.com");
        let second = t.locked_until("ana@example.com").unwrap();
        assert!(second > first + Duration::from_secs(25), "doubled");
        for _ in 0..10 {
            t.failed("ana@example.com");
        }
        let capped = t.locked_until("ana@example.com").unwrap();
        assert!(capped <= Instant::now() + Duration::from_secs(100));
        t.succeeded("ana@example.com");
        assert!(t.locked_until("ana@example.com").is_none());
    }

    #[tokio::test]
    async fn hashes_beyond_the_bound_wait_then_get_503() {
        let t = throttle(100, 100);
        let held = t.hash_permit().await.unwrap();
        assert!(matches!(
            t.hash_permit().await,
            Err(ApiError::Unavailable(_))
        ));
        drop(held);
        t.hash_permit().await.unwrap();
    }
}
