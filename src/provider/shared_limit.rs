//! Provider limits shared by every cutout instance that uses the same
//! PostgreSQL state database (scale-out): the request pacing (token bucket
//! of size one), the 429 cool-down with its slow-down factor, and the pause
//! (no credits, key refused, outage) of a provider NAME are one row in the
//! database, so one instance's 429 slows them all and one instance's
//! "no credits" holds every queue.
//!
//! How it plugs in: the daemon calls [`install`] with the state URL when
//! `state` is a PostgreSQL URL; every hosted provider built afterwards gets
//! its [`Gate`] through [`gate`], which attaches a [`SharedLimit`] and
//! starts a watcher task that mirrors a pause set or lifted elsewhere into
//! the local gate (one log line each). Without [`install`] nothing changes.
//!
//! When the database cannot be reached the gate falls back to its local
//! pacing (one warning line; the next request tries the database again):
//! a database outage must not stop the line.
//!
//! Owns: the policy glue between [`Gate`] and `store::pg_limits`. Must not:
//! hold SQL (the store file does), make provider requests, or log the
//! state URL (it may hold a password).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, UNIX_EPOCH};

use super::gate::{Feedback, Gate, Limits, SharedPacing, MIN_FACTOR, RECOVERY_HOLD, RECOVERY_STEP};
use super::{PauseInfo, PauseReason};
use crate::store::pg_limits::{LimitRow, LimitsError, PgLimits};

/// How often a watcher looks at the shared row for pauses set elsewhere.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);
/// A shared pause not confirmed for this many re-check intervals is taken
/// as left behind by a dead instance: this one then tries for itself.
const STALE_RECHECKS: u32 = 3;

/// The one connection of this process to the limits table.
struct Db {
    url: String,
    password: Option<String>,
    conn: tokio::sync::Mutex<Option<Arc<PgLimits>>>,
}

static DB: OnceLock<Arc<Db>> = OnceLock::new();

/// Share the limits of every provider built from now on through the
/// PostgreSQL database at `url` (its password, read by the config, apart;
/// connected on first use). Only the first call counts (one state
/// database per process).
pub fn install(url: &str, password: Option<&str>) {
    let _ = DB.set(Arc::new(Db {
        url: url.to_string(),
        password: password.map(str::to_string),
        conn: tokio::sync::Mutex::new(None),
    }));
}

impl Db {
    async fn get(&self) -> Result<Arc<PgLimits>, LimitsError> {
        let mut g = self.conn.lock().await;
        if let Some(c) = g.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = Arc::new(PgLimits::connect(&self.url, self.password.as_deref()).await?);
        *g = Some(c.clone());
        Ok(c)
    }
}

/// One provider's view of its shared row.
pub struct SharedLimit {
    provider: String,
    db: Arc<Db>,
    limits: Limits,
    /// Mirror of the shared factor (f64 bits).
    factor: AtomicU64,
    /// Mirror of the shared epoch.
    epoch: AtomicI64,
    /// The local pause came from the shared row (not from an own answer).
    mirrored_pause: AtomicBool,
    /// A database failure was logged (cleared when it works again).
    failing: AtomicBool,
    stale_after: Duration,
    /// The gate this belongs to, for the watcher.
    gate: OnceLock<Weak<Gate>>,
    /// The watcher task runs.
    watching: AtomicBool,
}

impl std::fmt::Debug for SharedLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimit")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// The gate of hosted provider `name`: shared through the database when
/// [`install`] was called, otherwise a plain local gate.
pub fn gate(name: &str, limits: Limits, recheck_every: Duration) -> Arc<Gate> {
    let Some(db) = DB.get() else {
        return Arc::new(Gate::new(limits));
    };
    let shared = Arc::new(SharedLimit {
        provider: name.to_string(),
        db: db.clone(),
        limits,
        factor: AtomicU64::new(1f64.to_bits()),
        epoch: AtomicI64::new(0),
        mirrored_pause: AtomicBool::new(false),
        failing: AtomicBool::new(false),
        stale_after: recheck_every.saturating_mul(STALE_RECHECKS),
        gate: OnceLock::new(),
        watching: AtomicBool::new(false),
    });
    let gate = Arc::new(Gate::new(limits).with_shared(Arc::new(Attached(shared.clone()))));
    let _ = shared.gate.set(Arc::downgrade(&gate));
    // Providers may be built before the runtime starts: then the watcher
    // starts with the first request.
    shared.start_watching();
    gate
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl SharedLimit {
    /// The shared slow-down factor, as last seen.
    pub fn factor(&self) -> f64 {
        f64::from_bits(self.factor.load(Ordering::Relaxed))
    }

    /// The shared epoch, as last seen.
    pub fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::Relaxed)
    }

    fn saw(&self, row: &LimitRow) {
        self.factor.store(
            row.factor.clamp(MIN_FACTOR, 1.0).to_bits(),
            Ordering::Relaxed,
        );
        self.epoch.store(row.epoch, Ordering::Relaxed);
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!(provider = %self.provider, "provider `{}`: shared limits reachable again", self.provider);
        }
    }

    fn failed(&self, e: &LimitsError) {
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                provider = %self.provider,
                "provider `{}`: {e}; pacing this instance alone until the database answers",
                self.provider
            );
        }
    }

    /// Start the watcher task once, when a runtime is there.
    fn start_watching(self: &Arc<Self>) {
        let Some(gate) = self.gate.get().cloned() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.watching.swap(true, Ordering::AcqRel) {
            rt.spawn(watch(gate, self.clone()));
        }
    }

    /// Wait for the shared go-ahead of one request at `rate` requests/s
    /// (`scaled`: times the shared factor; never below `floor`). Returns
    /// the epoch to hand back with the feedback, or None when the database
    /// failed (the caller paces locally).
    pub async fn ticket(
        self: &Arc<Self>,
        gate: &Gate,
        rate: f64,
        floor: f64,
        scaled: bool,
    ) -> Option<i64> {
        self.start_watching();
        loop {
            let db = match self.db.get().await {
                Ok(db) => db,
                Err(e) => return self.fail(&e),
            };
            let r = match db.reserve(&self.provider, rate, floor, scaled).await {
                Ok(r) => r,
                Err(e) => return self.fail(&e),
            };
            self.saw(&r.row);
            // A pause set elsewhere holds this request too (the caller
            // looks at the pause after its ticket).
            self.mirror(gate, r.row.clone());
            if r.wait_s <= 0.0 {
                return Some(r.row.epoch);
            }
            tokio::time::sleep(Duration::from_secs_f64(r.wait_s.min(3600.0))).await;
            // A cool-down may have begun elsewhere while we waited.
            match db.look(&self.provider).await {
                Ok(Some(now)) => {
                    self.saw(&now);
                    if now.epoch == r.row.epoch && now.cooling_s <= 0.0 {
                        return Some(now.epoch);
                    }
                }
                Ok(None) => return Some(r.row.epoch),
                Err(e) => return self.fail(&e),
            }
        }
    }

    fn fail(&self, e: &LimitsError) -> Option<i64> {
        self.failed(e);
        None
    }

    /// Report an answer of a request made with a ticket of `epoch` (runs
    /// the statement in the background: feedback must not block).
    pub fn feedback(self: &Arc<Self>, epoch: i64, fb: Feedback, rate: f64) {
        let me = self.clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let db = match me.db.get().await {
                Ok(db) => db,
                Err(e) => return me.failed(&e),
            };
            let l = &me.limits;
            let done = match fb {
                Feedback::Ok if me.factor() < 1.0 => {
                    db.succeeded(&me.provider, secs(RECOVERY_HOLD), RECOVERY_STEP)
                        .await
                }
                Feedback::Ok => return,
                Feedback::RateLimited { retry_after } => {
                    db.limited(
                        &me.provider,
                        epoch,
                        retry_after.map(secs),
                        secs(l.initial_delay),
                        secs(l.max_delay),
                        MIN_FACTOR,
                        secs(super::http::MAX_RETRY_AFTER),
                        rate,
                    )
                    .await
                }
                Feedback::Busy {
                    retry_after: Some(cool),
                } => {
                    let cool = cool.min(super::http::MAX_RETRY_AFTER);
                    db.busy(&me.provider, secs(cool), rate).await
                }
                Feedback::Busy { retry_after: None } | Feedback::Other => return,
            };
            match done {
                Ok(row) => me.saw(&row),
                Err(e) => me.failed(&e),
            }
        });
    }

    /// This instance paused (or confirmed its pause): tell the others.
    pub fn pause(self: &Arc<Self>, reason: PauseReason, message: &str) {
        self.mirrored_pause.store(false, Ordering::Relaxed);
        let me = self.clone();
        let message = message.to_string();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let r = match me.db.get().await {
                Ok(db) => db.pause(&me.provider, reason.as_str(), &message).await,
                Err(e) => Err(e),
            };
            match r {
                Ok(row) => me.saw(&row),
                Err(e) => me.failed(&e),
            }
        });
    }

    /// This instance found the provider ready again: lift it for all.
    pub fn resume(self: &Arc<Self>) {
        self.mirrored_pause.store(false, Ordering::Relaxed);
        let me = self.clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let r = match me.db.get().await {
                Ok(db) => db.resume(&me.provider).await,
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                me.failed(&e);
            }
        });
    }

    /// One look at the row: mirror a pause set or lifted by another
    /// instance into `gate`.
    async fn look(&self, gate: &Gate) {
        let db = match self.db.get().await {
            Ok(db) => db,
            Err(e) => return self.failed(&e),
        };
        let row = match db.look(&self.provider).await {
            Ok(Some(row)) => row,
            Ok(None) => return,
            Err(e) => return self.failed(&e),
        };
        self.saw(&row);
        self.mirror(gate, row);
    }

    /// Take over a pause set or lifted elsewhere.
    fn mirror(&self, gate: &Gate, row: LimitRow) {
        let fresh = row
            .pause_age_s
            .is_some_and(|age| age <= secs(self.stale_after));
        match row.pause.filter(|_| fresh) {
            Some((reason, message, since)) if !gate.is_paused() => {
                let Some(reason) = parse_reason(&reason) else {
                    return;
                };
                tracing::warn!(
                    provider = %self.provider,
                    reason = reason.as_str(),
                    "provider `{}` paused by another instance: {message}",
                    self.provider
                );
                self.mirrored_pause.store(true, Ordering::Relaxed);
                gate.mirror_pause(Some(PauseInfo {
                    reason,
                    message,
                    since: UNIX_EPOCH + Duration::from_secs_f64(since.max(0.0)),
                }));
            }
            None if gate.is_paused() && self.mirrored_pause.swap(false, Ordering::Relaxed) => {
                tracing::info!(
                    provider = %self.provider,
                    "provider `{}`: resumed (the pause was lifted by another instance or went stale)",
                    self.provider
                );
                gate.mirror_pause(None);
            }
            _ => {}
        }
    }
}

fn parse_reason(s: &str) -> Option<PauseReason> {
    [
        PauseReason::Quota,
        PauseReason::Auth,
        PauseReason::Unreachable,
    ]
    .into_iter()
    .find(|r| r.as_str() == s)
}

/// The watcher of one gate: ends when the gate is dropped (config reload).
async fn watch(gate: Weak<Gate>, shared: Arc<SharedLimit>) {
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let Some(g) = gate.upgrade() else {
            return;
        };
        shared.look(&g).await;
    }
}

/// A [`SharedLimit`] as the gate sees it.
#[derive(Debug)]
struct Attached(Arc<SharedLimit>);

#[async_trait::async_trait]
impl SharedPacing for Attached {
    fn factor(&self) -> f64 {
        self.0.factor()
    }
    fn epoch(&self) -> i64 {
        self.0.epoch()
    }
    async fn ticket(&self, gate: &Gate, rate: f64, floor: f64, scaled: bool) -> Option<i64> {
        self.0.ticket(gate, rate, floor, scaled).await
    }
    fn feedback(&self, epoch: i64, fb: Feedback, rate: f64) {
        self.0.feedback(epoch, fb, rate);
    }
    fn pause(&self, reason: PauseReason, message: &str) {
        self.0.pause(reason, message);
    }
    fn resume(&self) {
        self.0.resume();
    }
}
