//! Pacing by a vendor's announced budget: remove.bg answers every request
//! with `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
//! `X-RateLimit-Reset` (unix seconds) for a window counted in
//! megapixel-images, and a 429 with `Retry-After`. The [`Pacer`] spends
//! that budget locally (each picture reserves its estimated cost before it
//! is sent) and waits for the window's reset when it is spent, so a batch
//! meets no 429 once the first answer has told the budget.
//!
//! Owns: the budget arithmetic. Must not: send requests or sleep while
//! holding its lock.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

/// Waiting a little past the announced reset absorbs clock skew.
const MARGIN: Duration = Duration::from_millis(150);
/// With no reset time known, look again after this long.
const UNKNOWN_RESET_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Budget {
    limit: Option<f64>,
    /// Left in this window, after the local reservations.
    remaining: Option<f64>,
    /// When the window ends (the vendor's clock, whole seconds).
    reset_at: Option<SystemTime>,
    /// Reserved by requests sent and not yet answered.
    in_flight: f64,
}

/// One provider's budget, shared by its requests.
#[derive(Debug, Default)]
pub struct Pacer {
    budget: Mutex<Budget>,
}

/// A reservation of `cost`; hand the answer's headers to
/// [`Pacer::observe`]. Dropping it ends the reservation.
#[derive(Debug)]
pub struct Permit<'a> {
    pacer: &'a Pacer,
    cost: f64,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut b = self.pacer.lock();
        b.in_flight = (b.in_flight - self.cost).max(0.0);
    }
}

/// The three rate-limit headers, when all are there and readable.
pub fn read_headers(h: &HeaderMap) -> Option<(f64, f64, SystemTime)> {
    let num = |name: &str| -> Option<f64> {
        h.get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
    };
    let reset = num("x-ratelimit-reset")?;
    Some((
        num("x-ratelimit-limit")?,
        num("x-ratelimit-remaining")?,
        UNIX_EPOCH + Duration::from_secs_f64(reset),
    ))
}

impl Pacer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Budget> {
        self.budget.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until `cost` fits the budget, then reserve it.
    pub async fn acquire(&self, cost: f64) -> Permit<'_> {
        loop {
            match self.try_reserve(cost, SystemTime::now()) {
                Ok(()) => return Permit { pacer: self, cost },
                Err(wait) => {
                    tracing::debug!(
                        wait_ms = wait.as_millis() as u64,
                        "rate budget spent; waiting for the window's reset"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Reserve `cost` now, or say how long to wait.
    fn try_reserve(&self, cost: f64, now: SystemTime) -> Result<(), Duration> {
        let mut b = self.lock();
        if let Some(at) = b.reset_at {
            if now >= at + MARGIN {
                // A new window: the full budget, less what is on its way.
                b.remaining = b.limit.map(|l| l - b.in_flight);
                b.reset_at = None;
            }
        }
        match b.remaining {
            // Nothing known yet, or enough left. A picture dearer than a
            // whole window goes alone into a fresh one.
            None => {}
            Some(r) if r >= cost => {}
            Some(r) if b.limit.is_some_and(|l| cost > l && r >= l) => {}
            Some(_) => {
                return Err(match b.reset_at {
                    Some(at) => at.duration_since(now).unwrap_or_default() + MARGIN,
                    None => UNKNOWN_RESET_WAIT,
                })
            }
        }
        if let Some(r) = b.remaining.as_mut() {
            *r -= cost;
        }
        b.in_flight += cost;
        Ok(())
    }

    /// An answer's headers (the permit's request still counted in flight).
    pub fn observe(&self, permit: &Permit<'_>, headers: &HeaderMap) {
        if let Some((limit, remaining, reset)) = read_headers(headers) {
            self.update(permit.cost, limit, remaining, reset);
        }
    }

    fn update(&self, own: f64, limit: f64, remaining: f64, reset: SystemTime) {
        let mut b = self.lock();
        // Others still on their way may not be counted in `remaining` yet.
        let told = remaining - (b.in_flight - own).max(0.0);
        let same_window = b.reset_at == Some(reset);
        b.remaining = Some(match b.remaining {
            Some(local) if same_window => local.min(told),
            _ => told,
        });
        b.limit = Some(limit);
        b.reset_at = Some(reset);
    }

    /// A 429: nothing more until `retry_after` (or the known reset).
    pub fn refused(&self, retry_after: Option<Duration>) {
        let mut b = self.lock();
        b.remaining = Some(0.0);
        if let Some(d) = retry_after {
            let at = SystemTime::now() + d;
            b.reset_at = Some(b.reset_at.map_or(at, |r| r.max(at)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_spent_then_waits_for_the_reset() {
        let p = Pacer::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000);
        // Unknown budget: go.
        assert!(p.try_reserve(1.0, t0).is_ok());
        // The answer says 2 left until t0 + 10 s (own request counted).
        p.update(1.0, 3.0, 2.0, t0 + Duration::from_secs(10));
        {
            let mut b = p.lock();
            b.in_flight = 0.0;
        }
        assert!(p.try_reserve(1.0, t0).is_ok());
        assert!(p.try_reserve(1.0, t0).is_ok());
        let wait = p.try_reserve(1.0, t0).expect_err("spent");
        assert_eq!(wait, Duration::from_secs(10) + MARGIN);
        // After the reset: the full limit less what is in flight (2).
        let later = t0 + Duration::from_secs(11);
        assert!(p.try_reserve(1.0, later).is_ok());
        assert!(p.try_reserve(1.0, later).is_err());
    }

    #[test]
    fn requests_in_flight_are_taken_off_what_the_vendor_says() {
        let p = Pacer::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000);
        for _ in 0..4 {
            assert!(p.try_reserve(1.0, t0).is_ok());
        }
        // The first answer: 9 left, but three others are still on their way.
        p.update(1.0, 10.0, 9.0, t0 + Duration::from_secs(60));
        assert_eq!(p.lock().remaining, Some(6.0));
        // A 429 stops everything until Retry-After.
        p.refused(Some(Duration::from_secs(2)));
        assert!(p.try_reserve(1.0, SystemTime::now()).is_err());
    }

    #[test]
    fn headers_are_read_only_when_complete() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-limit", "500".parse().expect("v"));
        h.insert("x-ratelimit-remaining", "499".parse().expect("v"));
        assert!(read_headers(&h).is_none());
        h.insert("x-ratelimit-reset", "1700000000".parse().expect("v"));
        let (l, r, at) = read_headers(&h).expect("all three");
        assert_eq!((l, r), (500.0, 499.0));
        assert_eq!(at, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    }
}
