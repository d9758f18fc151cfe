//! The per-provider client discipline of a hosted provider: how many
//! pictures may be at the provider at once, how fast requests may go out,
//! what one 429 does to everyone, and the pause (no credits, key refused)
//! with its periodic re-check.
//!
//! - Picture slots: at most `concurrency` pictures at once (on top of
//!   `queue.concurrency`); the allowed number shrinks and grows adaptively.
//! - Request pacing: a token bucket of size one, i.e. requests are spaced at
//!   least `1 / rate` apart. Waiters queue in a fair (FIFO) lane; only the
//!   one at its head waits for the moment, computed from the rate *now*
//!   (so a rate learned while it waits applies at once, not only to the
//!   requests after it), and it wakes early when the rate goes up.
//! - Adaptive (AIMD): the first 429 of an "epoch" halves the rate (a fixed
//!   rate: and the allowed concurrency, never below 1/64 of the configured
//!   values and one slot; `"auto"`: the learned rate, see `rate.rs`) and
//!   starts a provider-wide cool-down: `Retry-After` when the provider sent
//!   one, otherwise full-jitter exponential backoff between `[retry]
//!   initial_delay` and `max_delay` over the 429s in a row. Nothing goes
//!   out before the cool-down ends (the lane's head looks again), and then
//!   only at the reduced rate. 429s of requests that were already on their
//!   way count but do not halve again. After [`RECOVERY_HOLD`] without a
//!   429, each success adds back [`RECOVERY_STEP`] of the configured values
//!   (fixed rate only).
//! - Rate hints: an answer's `X-RateLimit-Remaining/Reset` (see
//!   `Hosted::send_wire`) hold the rate until the reset; a waiting request
//!   looks again when the hold ends.
//! - Pause: set by the provider on quota/auth answers and outages (no
//!   connection at all), with ONE log line for the operator; a background
//!   task re-checks every `recheck_interval` (outages: backing off from
//!   `[retry] initial_delay`) and resumes by itself. While paused the queue
//!   holds the provider's files (see `Provider::is_paused`).
//!
//! - Shared (scale-out on PostgreSQL): with a [`SharedLimit`] attached,
//!   pacing, cool-down, the slow-down factor and the pause live in the
//!   state database and every instance follows them (see `shared_limit`);
//!   picture slots stay per instance.
//!
//! Must not: make HTTP requests itself (the re-check is a closure the
//! provider hands over), sleep while holding its lock, or log secrets.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

pub use super::rate::MIN_RATE;
use super::rate::{RateController, RateHint, RateMode};
use super::{PauseInfo, PauseReason, ProviderStatus};
use crate::job::Backoff;

/// How long after the last slow-down before recovery starts.
pub const RECOVERY_HOLD: Duration = Duration::from_secs(5);
/// Share of the configured rate/concurrency given back per success.
pub const RECOVERY_STEP: f64 = 0.05;
/// The adaptive factor never drops below this.
pub const MIN_FACTOR: f64 = 1.0 / 64.0;

/// The fixed limits of one provider.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub concurrency: usize,
    /// Fixed or learned (`"auto"`) request rate.
    pub rate: RateMode,
    /// Cool-down backoff bounds (from `[retry]`).
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

#[derive(Debug)]
struct State {
    /// Adaptive share of the configured limits, in [MIN_FACTOR, 1].
    factor: f64,
    /// The request rate (fixed, or learned in auto mode).
    ctl: RateController,
    in_use: usize,
    /// Bumped at every cool-down: 429s of requests sent before it do not
    /// slow down again.
    epoch: u64,
    /// When the last request went out (None: none yet).
    last_sent: Option<Instant>,
    /// No request before this (cool-down).
    not_before: Instant,
    last_decrease: Option<Instant>,
    /// 429s in a row (reset by a success), for the backoff.
    in_a_row: u32,
    pause: Option<PauseInfo>,
    credits: Option<(f64, Instant)>,
}

/// One provider's gate. Shared (`Arc`) by its calls and its re-check task.
#[derive(Debug)]
pub struct Gate {
    limits: Limits,
    state: Mutex<State>,
    changed: Notify,
    /// The pacing lane: the waiter holding it is the next to go out.
    lane: tokio::sync::Mutex<()>,
    /// Told when the rate may have gone up (wakes the lane's head).
    faster: Notify,
    paused: AtomicBool,
    rate_limited: AtomicU64,
    rechecking: AtomicBool,
    shared: Option<Arc<dyn SharedPacing>>,
}

/// Pacing shared with other instances (scale-out on PostgreSQL): what the
/// gate asks of it. `shared_limit` implements it; the gate knows only this.
#[async_trait::async_trait]
pub trait SharedPacing: Send + Sync + std::fmt::Debug {
    /// The shared slow-down factor, as last seen.
    fn factor(&self) -> f64;
    /// The shared epoch, as last seen.
    fn epoch(&self) -> i64;
    /// Wait for the shared next free moment; the epoch it was taken in, or
    /// None when the database failed (the gate then paces alone).
    async fn ticket(&self, gate: &Gate, rate: f64, floor: f64, scaled: bool) -> Option<i64>;
    /// What became of a request sent under `epoch`.
    fn feedback(&self, epoch: i64, fb: Feedback, rate: f64);
    /// Pause every instance using this provider.
    fn pause(&self, reason: PauseReason, message: &str);
    /// Lift the shared pause.
    fn resume(&self);
}

/// Permission for one request, from [`Gate::ticket`]; hand it back with
/// the answer through [`Gate::feedback`].
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    epoch: u64,
    /// The shared epoch, when the shared limit gave the go-ahead.
    shared: Option<i64>,
}

/// What became of a request, for the adaptive limits.
#[derive(Debug, Clone, Copy)]
pub enum Feedback {
    /// A 2xx answer.
    Ok,
    /// 429 "too many requests" (not a quota answer).
    RateLimited { retry_after: Option<Duration> },
    /// 503 or another answer that asked to come back later.
    Busy { retry_after: Option<Duration> },
    /// Anything else (errors that say nothing about load).
    Other,
}

/// A picture slot; freed on drop.
#[derive(Debug)]
pub struct Slot<'a> {
    gate: &'a Gate,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut st = self.gate.lock();
        st.in_use = st.in_use.saturating_sub(1);
        drop(st);
        self.gate.changed.notify_waiters();
    }
}

/// What a pause re-check found.
#[derive(Debug, Clone)]
pub enum Recheck {
    /// Key accepted and credits available (or not reported).
    Ready { credits: Option<f64> },
    /// Key accepted but no credits.
    NoCredits { credits: f64, message: String },
    /// The key is still refused.
    KeyRefused { message: String },
    /// Still no connection.
    Down { message: String },
    /// The check itself failed (network, 5xx): try again later.
    Unknown { message: String },
    /// The provider no longer exists (replaced by a config reload): stop.
    Gone,
}

impl Gate {
    pub fn new(limits: Limits) -> Gate {
        let now = Instant::now();
        Gate {
            limits,
            state: Mutex::new(State {
                factor: 1.0,
                ctl: RateController::new(limits.rate),
                in_use: 0,
                epoch: 0,
                last_sent: None,
                not_before: now,
                last_decrease: None,
                in_a_row: 0,
                pause: None,
                credits: None,
            }),
            changed: Notify::new(),
            lane: tokio::sync::Mutex::new(()),
            faster: Notify::new(),
            paused: AtomicBool::new(false),
            rate_limited: AtomicU64::new(0),
            rechecking: AtomicBool::new(false),
            shared: None,
        }
    }

    /// Follow the limits shared with other instances (scale-out).
    pub fn with_shared(mut self, shared: Arc<dyn SharedPacing>) -> Gate {
        self.shared = Some(shared);
        self
    }

    /// The slow-down factor: the shared one when shared.
    fn factor(&self, st: &State) -> f64 {
        self.shared.as_ref().map_or(st.factor, |s| s.factor())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain numbers
        // behind: keep going with them.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn allowed(&self, st: &State) -> usize {
        ((self.limits.concurrency as f64 * self.factor(st)).floor() as usize).max(1)
    }

    fn rate(&self, st: &State) -> f64 {
        let rps = st.ctl.rate(Instant::now());
        if st.ctl.is_auto() {
            // The controller halves and grows the rate itself.
            return rps.max(1e-3);
        }
        // Slowed down, but never below one request a minute (unless the
        // configuration itself asks for less).
        (rps * self.factor(st)).max(rps.min(MIN_RATE)).max(1e-3)
    }

    /// What the provider stated about its limit (answer headers such as
    /// `X-RateLimit-*`); see [`RateHint`].
    pub fn hint(&self, hint: RateHint) {
        self.lock().ctl.hint(hint, Instant::now());
        self.faster.notify_waiters();
    }

    /// Wait for a picture slot.
    pub async fn slot(&self) -> Slot<'_> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if st.in_use < self.allowed(&st) {
                    st.in_use += 1;
                    return Slot { gate: self };
                }
            }
            notified.await;
        }
    }

    /// Wait until one request may go out (pacing and cool-down). Waiters
    /// are served in order (cancellation-safe: a dropped waiter leaves the
    /// lane).
    pub async fn ticket(&self) -> Ticket {
        if let Some(sh) = &self.shared {
            let (rps, auto) = {
                let st = self.lock();
                (st.ctl.rate(Instant::now()), st.ctl.is_auto())
            };
            let floor = if auto { 1e-3 } else { rps.min(MIN_RATE) };
            if let Some(e) = sh.ticket(self, rps, floor, !auto).await {
                let epoch = self.lock().epoch;
                return Ticket {
                    epoch,
                    shared: Some(e),
                };
            }
            // The database failed: pace this instance alone.
        }
        let _lane = self.lane.lock().await;
        loop {
            let faster = self.faster.notified();
            tokio::pin!(faster);
            faster.as_mut().enable();
            let at = {
                let mut st = self.lock();
                let now = Instant::now();
                let spaced = st
                    .last_sent
                    .map_or(now, |t| t + Duration::from_secs_f64(1.0 / self.rate(&st)));
                let at = spaced.max(st.not_before);
                if at <= now {
                    st.last_sent = Some(now);
                    return Ticket {
                        epoch: st.epoch,
                        shared: None,
                    };
                }
                // A rate held by a header ends at its reset: look again then.
                st.ctl.held_until(now).map_or(at, |h| at.min(h))
            };
            tokio::select! {
                () = tokio::time::sleep_until(at.into()) => {}
                () = faster => {}
            }
        }
    }

    /// Report what became of the request made with `ticket`.
    pub fn feedback(&self, ticket: Ticket, fb: Feedback) {
        let now = Instant::now();
        let mut st = self.lock();
        if let (Some(sh), Some(epoch)) = (&self.shared, ticket.shared) {
            let limited = matches!(fb, Feedback::RateLimited { .. });
            if limited {
                self.rate_limited.fetch_add(1, Ordering::Relaxed);
                if st.ctl.is_auto() && epoch == sh.epoch() {
                    st.ctl.limited();
                }
            } else if matches!(fb, Feedback::Ok) {
                st.ctl.success();
            }
            let rate = self.rate(&st);
            drop(st);
            sh.feedback(epoch, fb, rate);
            self.changed.notify_waiters();
            return;
        }
        match fb {
            Feedback::Ok => {
                st.in_a_row = 0;
                st.ctl.success();
                self.faster.notify_waiters();
                let quiet = st
                    .last_decrease
                    .is_none_or(|t| now.duration_since(t) >= RECOVERY_HOLD);
                if st.factor < 1.0 && quiet {
                    st.factor = (st.factor + RECOVERY_STEP).min(1.0);
                    drop(st);
                    self.changed.notify_waiters();
                }
            }
            Feedback::RateLimited { retry_after } => {
                self.rate_limited.fetch_add(1, Ordering::Relaxed);
                st.in_a_row = st.in_a_row.saturating_add(1);
                if ticket.epoch == st.epoch {
                    // The first 429 for requests sent at the current pace.
                    if st.ctl.is_auto() {
                        // The learned rate is the control; pictures in
                        // flight stay as configured.
                        st.ctl.limited();
                    } else {
                        st.factor = (st.factor / 2.0).max(MIN_FACTOR);
                    }
                    st.last_decrease = Some(now);
                }
                let cool = retry_after.unwrap_or_else(|| {
                    Backoff {
                        initial: self.limits.initial_delay,
                        max: self.limits.max_delay,
                    }
                    .delay(st.in_a_row - 1)
                });
                self.cool_down(&mut st, now, cool);
            }
            Feedback::Busy {
                retry_after: Some(cool),
            } => self.cool_down(&mut st, now, cool),
            Feedback::Busy { retry_after: None } | Feedback::Other => {}
        }
    }

    /// Nothing goes out before `now + cool`, then only at the current rate
    /// (the lane's head sees the new moment when it wakes).
    fn cool_down(&self, st: &mut State, now: Instant, cool: Duration) {
        let until = now + cool.min(super::http::MAX_RETRY_AFTER);
        st.not_before = st.not_before.max(until);
        st.epoch += 1;
    }

    /// Remaining cool-down, if any.
    pub fn cooling_for(&self) -> Option<Duration> {
        let st = self.lock();
        st.not_before.checked_duration_since(Instant::now())
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    pub fn pause_info(&self) -> Option<PauseInfo> {
        self.lock().pause.clone()
    }

    /// Pause (or change the reason of a pause). Returns true when this is a
    /// new pause or a new reason (the caller logs its one line then).
    pub fn pause(&self, reason: PauseReason, message: &str) -> bool {
        let mut st = self.lock();
        let fresh = st.pause.as_ref().is_none_or(|p| p.reason != reason);
        if fresh {
            st.pause = Some(PauseInfo {
                reason,
                message: message.to_string(),
                since: SystemTime::now(),
            });
        }
        self.paused.store(true, Ordering::Release);
        drop(st);
        if let Some(sh) = &self.shared {
            sh.pause(reason, message);
        }
        fresh
    }

    /// Take over a pause set or lifted by another instance (no write back).
    pub(super) fn mirror_pause(&self, pause: Option<PauseInfo>) {
        let mut st = self.lock();
        self.paused.store(pause.is_some(), Ordering::Release);
        st.pause = pause;
        drop(st);
        self.changed.notify_waiters();
    }

    /// Lift the pause; returns what it was.
    pub fn resume(&self) -> Option<PauseInfo> {
        let mut st = self.lock();
        let was = st.pause.take();
        self.paused.store(false, Ordering::Release);
        drop(st);
        if let Some(sh) = &self.shared {
            sh.resume();
        }
        was
    }

    /// Remember the credits left (from a credits check or a count-down).
    pub fn set_credits(&self, credits: Option<f64>) {
        self.lock().credits = credits.map(|c| (c, Instant::now()));
    }

    /// Credits known from a check no older than `fresh`.
    pub fn credits_within(&self, fresh: Duration) -> Option<f64> {
        let st = self.lock();
        st.credits
            .filter(|(_, at)| at.elapsed() <= fresh)
            .map(|(c, _)| c)
    }

    /// Count one credit spent (keeps the cached figure honest between checks).
    pub fn spend_credit(&self) {
        let mut st = self.lock();
        if let Some((c, _)) = st.credits.as_mut() {
            *c -= 1.0;
        }
    }

    pub fn status(&self) -> ProviderStatus {
        let st = self.lock();
        ProviderStatus {
            paused: st.pause.clone(),
            credits_left: st.credits.map(|(c, _)| c),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            concurrency: self.allowed(&st),
            requests_per_second: self.rate(&st),
        }
    }

    /// Start the background re-check of a pause, unless one runs already.
    /// `check` asks the provider (credits endpoint); `announce` is called
    /// with each new state worth one log line. Checks come every `every`;
    /// while the provider is unreachable they start at `first` and double
    /// up to `every` (an outage is often short).
    pub fn spawn_recheck<C, F>(
        self: &Arc<Self>,
        every: Duration,
        first: Duration,
        check: C,
        announce: Announce,
    ) where
        C: Fn() -> F + Send + Sync + 'static,
        F: Future<Output = Recheck> + Send + 'static,
    {
        if self.rechecking.swap(true, Ordering::AcqRel) {
            return;
        }
        let gate = self.clone();
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.rechecking.store(false, Ordering::Release);
            return;
        };
        handle.spawn(async move {
            let mut down_checks = 0u32;
            loop {
                let outage = gate
                    .pause_info()
                    .is_some_and(|p| p.reason == PauseReason::Unreachable);
                let wait = if outage {
                    let d = first
                        .max(Duration::from_millis(100))
                        .saturating_mul(1u32 << down_checks.min(16));
                    down_checks += 1;
                    d.min(every)
                } else {
                    every
                };
                tokio::time::sleep(wait).await;
                if !gate.is_paused() {
                    break;
                }
                match check().await {
                    Recheck::Ready { credits } => {
                        gate.set_credits(credits);
                        if let Some(was) = gate.resume() {
                            announce(Announced::Resumed {
                                was: was.reason,
                                credits,
                            });
                        }
                        break;
                    }
                    Recheck::NoCredits { credits, message } => {
                        gate.set_credits(Some(credits));
                        if gate.pause(PauseReason::Quota, &message) {
                            announce(Announced::Paused {
                                reason: PauseReason::Quota,
                                message,
                            });
                        }
                    }
                    Recheck::KeyRefused { message } => {
                        if gate.pause(PauseReason::Auth, &message) {
                            announce(Announced::Paused {
                                reason: PauseReason::Auth,
                                message,
                            });
                        }
                    }
                    Recheck::Down { message } => {
                        if gate.pause(PauseReason::Unreachable, &message) {
                            announce(Announced::Paused {
                                reason: PauseReason::Unreachable,
                                message,
                            });
                        }
                    }
                    Recheck::Unknown { message } => {
                        tracing::debug!("pause re-check inconclusive: {message}");
                    }
                    Recheck::Gone => break,
                }
            }
            gate.rechecking.store(false, Ordering::Release);
        });
    }
}

/// A state change worth the operator's attention.
#[derive(Debug, Clone)]
pub enum Announced {
    Paused {
        reason: PauseReason,
        message: String,
    },
    Resumed {
        was: PauseReason,
        credits: Option<f64>,
    },
}

/// The provider's one-line announcer.
pub type Announce = Arc<dyn Fn(Announced) + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(conc: usize, rps: f64) -> Gate {
        Gate::new(Limits {
            concurrency: conc,
            rate: RateMode::Fixed(rps),
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
        })
    }

    #[tokio::test]
    async fn requests_are_spaced_by_the_rate() {
        let g = gate(4, 20.0);
        let t0 = Instant::now();
        for _ in 0..5 {
            let t = g.ticket().await;
            g.feedback(t, Feedback::Ok);
        }
        // 5 requests at 20/s: the 5th no sooner than 4 × 50 ms.
        assert!(
            t0.elapsed() >= Duration::from_millis(195),
            "{:?}",
            t0.elapsed()
        );
    }

    #[tokio::test]
    async fn a_429_halves_once_per_epoch_and_cools_down() {
        let g = gate(8, 100.0);
        let a = g.ticket().await;
        let b = g.ticket().await;
        g.feedback(
            a,
            Feedback::RateLimited {
                retry_after: Some(Duration::from_millis(150)),
            },
        );
        // b was sent before the first 429 was known: counts, no second halving.
        g.feedback(b, Feedback::RateLimited { retry_after: None });
        let s = g.status();
        assert_eq!(s.concurrency, 4);
        assert!((s.requests_per_second - 50.0).abs() < 1e-9);
        assert_eq!(s.rate_limited, 2);
        let t0 = Instant::now();
        let c = g.ticket().await;
        assert!(
            t0.elapsed() >= Duration::from_millis(140),
            "went out during the cool-down: {:?}",
            t0.elapsed()
        );
        g.feedback(c, Feedback::RateLimited { retry_after: None });
        assert_eq!(g.status().concurrency, 2);
    }

    #[tokio::test]
    async fn a_rate_learned_while_waiting_applies_to_the_waiting_request() {
        // Regression: requests reserved their moment at the rate of the
        // time they asked, so a batch's first requests stayed at the start
        // rate however fast the rate was learned meanwhile.
        let g = Arc::new(Gate::new(Limits {
            concurrency: 8,
            rate: RateMode::Auto {
                start: 0.1,
                max: 100.0,
            },
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
        }));
        let a = g.ticket().await;
        // At the start rate the next request would wait 10 s.
        let waiting = tokio::spawn({
            let g = g.clone();
            async move { g.ticket().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..5 {
            g.feedback(a, Feedback::Ok);
        }
        let went = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert!(
            went.is_ok(),
            "the waiting request stayed at the start rate (10 s apart)"
        );
    }

    #[tokio::test]
    async fn slots_follow_the_adaptive_limit() {
        let g = gate(2, 1000.0);
        let s1 = g.slot().await;
        let _s2 = g.slot().await;
        let t = g.ticket().await;
        g.feedback(t, Feedback::RateLimited { retry_after: None });
        // Limit is now 1 and two are in use: a third must wait for two drops.
        drop(s1);
        let waited = tokio::time::timeout(Duration::from_millis(50), g.slot())
            .await
            .is_err();
        assert!(waited, "a slot was handed out above the reduced limit");
    }

    #[test]
    fn pause_is_announced_once_per_reason() {
        let g = gate(1, 1.0);
        assert!(g.pause(PauseReason::Quota, "no credits"));
        assert!(!g.pause(PauseReason::Quota, "no credits"));
        assert!(g.is_paused());
        assert!(g.pause(PauseReason::Auth, "bad key"));
        assert_eq!(g.resume().map(|p| p.reason), Some(PauseReason::Auth));
        assert!(!g.is_paused());
    }
}
