//! The request-rate controller of one hosted provider: a fixed rate, or
//! `requests_per_second = "auto"`, a rate found from the provider's
//! answers (slow start, then AIMD).
//!
//! Auto mode:
//! - starts at the configured start rate;
//! - slow start: until the first 429, each success adds
//!   [`SLOW_START_STEP`] requests/s, so the rate grows in proportion to
//!   itself (it doubles about every `ln 2 / SLOW_START_STEP` ≈ 0.35 s of
//!   traffic): a 100-picture batch reaches a 20/s limit in about a second;
//! - a 429 (the first of a cool-down epoch; the gate decides) halves the
//!   rate, remembers the rate it happened at and ends the slow start;
//! - additive increase after that: each success adds `probe / rate`, i.e.
//!   the rate grows by `probe` requests/s per second of traffic (`probe` =
//!   [`PROBE_SHARE`] of the last 429 rate, at least [`MIN_PROBE`]);
//! - never above `max`, never below [`MIN_RATE`].
//!
//! [`RateController::hint`] is the interface for providers that state
//! their limit (remove.bg's `X-RateLimit-Limit/Remaining/Reset`): a stated
//! limit becomes the ceiling, a stated "remaining N until T" caps the rate
//! to what fits.
//!
//! Must not: sleep, lock, or know about HTTP; it is plain arithmetic on
//! the moments it is given (so tests run it on paused time).

use std::time::{Duration, Instant};

/// The rate never drops below this (requests per second).
pub const MIN_RATE: f64 = 1.0 / 60.0;
/// Added per success during the slow start (requests/s).
pub const SLOW_START_STEP: f64 = 2.0;
/// Probe growth per second of traffic, as a share of the last 429 rate.
pub const PROBE_SHARE: f64 = 0.05;
/// Smallest probe growth (requests/s per second).
pub const MIN_PROBE: f64 = 0.1;

/// How the rate of a provider is chosen (checked configuration).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateMode {
    /// A fixed `requests_per_second` (slowed down on 429, see the gate).
    Fixed(f64),
    /// Found from the answers: start at `start`, never above `max`.
    Auto { start: f64, max: f64 },
}

/// What a provider may learn from an answer's headers and hand over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateHint {
    /// The provider states its sustained limit (requests/s).
    Limit { per_second: f64 },
    /// `remaining` more requests are allowed until `reset`.
    Remaining { remaining: f64, reset: Instant },
}

/// The learned rate (auto) or the configured one (fixed).
#[derive(Debug, Clone)]
pub struct RateController {
    mode: RateMode,
    rate: f64,
    /// The rate at the last 429 (None: none seen yet).
    last_limited: Option<f64>,
    /// A ceiling stated by the provider itself.
    stated: Option<f64>,
    /// Until this moment a header asked for at most `held_rate`.
    held: Option<(Instant, f64)>,
}

impl RateController {
    pub fn new(mode: RateMode) -> RateController {
        let rate = match mode {
            RateMode::Fixed(r) => r,
            RateMode::Auto { start, max } => start.min(max),
        };
        RateController {
            mode,
            rate,
            last_limited: None,
            stated: None,
            held: None,
        }
    }

    pub fn is_auto(&self) -> bool {
        matches!(self.mode, RateMode::Auto { .. })
    }

    /// The configured (fixed) or learned (auto) rate, before the gate's
    /// slow-down factor (fixed mode only) is applied.
    pub fn rate(&self, now: Instant) -> f64 {
        let mut r = self.rate;
        if let Some(s) = self.stated {
            r = r.min(s);
        }
        if let Some((until, h)) = self.held {
            if now < until {
                r = r.min(h);
            }
        }
        r.max(MIN_RATE.min(self.floor()))
    }

    /// When a held rate (see [`RateHint::Remaining`]) ends, if it holds
    /// now: a request waiting at the held rate looks again then.
    pub fn held_until(&self, now: Instant) -> Option<Instant> {
        self.held.map(|(until, _)| until).filter(|u| now < *u)
    }

    fn ceiling(&self) -> f64 {
        match self.mode {
            RateMode::Fixed(r) => r,
            RateMode::Auto { max, .. } => self.stated.map_or(max, |s| s.min(max)),
        }
    }

    fn floor(&self) -> f64 {
        match self.mode {
            RateMode::Fixed(r) => r,
            RateMode::Auto { .. } => MIN_RATE,
        }
    }

    /// A 2xx answer.
    pub fn success(&mut self) {
        let RateMode::Auto { .. } = self.mode else {
            return;
        };
        let step = match self.last_limited {
            None => SLOW_START_STEP,
            Some(l) => (PROBE_SHARE * l).max(MIN_PROBE) / self.rate.max(1e-3),
        };
        self.rate = (self.rate + step).min(self.ceiling());
    }

    /// The first 429 of a cool-down epoch: halve, remember where.
    pub fn limited(&mut self) {
        let RateMode::Auto { .. } = self.mode else {
            return;
        };
        self.last_limited = Some(self.rate);
        self.rate = (self.rate / 2.0).max(MIN_RATE);
    }

    /// What the provider stated about its limit (see [`RateHint`]).
    pub fn hint(&mut self, hint: RateHint, now: Instant) {
        match hint {
            RateHint::Limit { per_second } if per_second > 0.0 => {
                self.stated = Some(per_second);
            }
            RateHint::Limit { .. } => {}
            RateHint::Remaining { remaining, reset } => {
                let left = reset.saturating_duration_since(now);
                if left > Duration::ZERO {
                    let fits = (remaining.max(0.0) / left.as_secs_f64()).max(MIN_RATE);
                    self.held = Some((reset, fits));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto(start: f64, max: f64) -> RateController {
        RateController::new(RateMode::Auto { start, max })
    }

    #[test]
    fn slow_start_then_halving_then_additive_probing() {
        let now = Instant::now();
        let mut c = auto(2.0, 50.0);
        assert_eq!(c.rate(now), 2.0);
        for _ in 0..4 {
            c.success();
        }
        assert!((c.rate(now) - 10.0).abs() < 1e-9, "{}", c.rate(now));
        c.limited();
        assert!((c.rate(now) - 5.0).abs() < 1e-9);
        // Additive from here: 5 % of the 429 rate (0.5/s) per second of
        // traffic, i.e. 0.5 / 5 per success at 5/s.
        c.success();
        let grown = c.rate(now) - 5.0;
        assert!((grown - 0.5 / 5.0).abs() < 1e-9, "{grown}");
    }

    #[test]
    fn never_above_max_nor_below_the_floor() {
        let now = Instant::now();
        let mut c = auto(2.0, 4.0);
        for _ in 0..100 {
            c.success();
        }
        assert_eq!(c.rate(now), 4.0);
        for _ in 0..100 {
            c.limited();
        }
        assert_eq!(c.rate(now), MIN_RATE);
    }

    #[test]
    fn fixed_mode_does_not_learn() {
        let now = Instant::now();
        let mut c = RateController::new(RateMode::Fixed(2.0));
        c.success();
        c.limited();
        assert_eq!(c.rate(now), 2.0);
        assert!(!c.is_auto());
    }

    #[test]
    fn stated_limits_cap_the_rate() {
        let now = Instant::now();
        let mut c = auto(10.0, 50.0);
        c.hint(RateHint::Limit { per_second: 4.0 }, now);
        assert_eq!(c.rate(now), 4.0);
        let reset = now + Duration::from_secs(10);
        c.hint(
            RateHint::Remaining {
                remaining: 5.0,
                reset,
            },
            now,
        );
        assert!((c.rate(now) - 0.5).abs() < 1e-9);
        assert_eq!(c.held_until(now), Some(reset));
        assert_eq!(c.rate(now + Duration::from_secs(11)), 4.0);
        assert_eq!(c.held_until(now + Duration::from_secs(11)), None);
    }
}
