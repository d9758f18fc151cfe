//! Service: how the daemon talks to systemd (or any `sd_notify` manager):
//! `READY=1` once the inboxes are watched, `STATUS=` lines saying how big
//! the queue is and what it waits on, `WATCHDOG=1` only while the pipeline's
//! heartbeat is fresh, `RELOADING=1` / `STOPPING=1` around reloads and
//! shutdown. Also the [`Heartbeat`] the dispatcher ticks, which `/healthz`
//! and the watchdog read.
//!
//! Owns: the notify messages and their timing, the heartbeat and the
//! liveness verdict built on it.
//!
//! Must not: do pipeline work, or decide anything about files; without
//! `$NOTIFY_SOCKET` every notification is a no-op.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::metrics::{self, Snapshot};

/// The dispatcher must have ticked this recently for the pipeline to count
/// as alive (it ticks every 100 ms when idle).
pub const STALE_AFTER: Duration = Duration::from_secs(10);
/// How often the `STATUS=` line is recomputed (sent only when it changed).
pub const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Proof of life of the dispatcher loop.
#[derive(Debug)]
pub struct Heartbeat {
    origin: Instant,
    /// Milliseconds since `origin` of the last beat, plus one (0: never).
    last: AtomicU64,
    stopping: AtomicBool,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}

impl Heartbeat {
    pub fn new() -> Heartbeat {
        Heartbeat {
            origin: Instant::now(),
            last: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        }
    }

    /// The dispatcher is alive now.
    pub fn beat(&self) {
        self.beat_at(Instant::now());
    }

    /// Record a beat at `t` (tests use a past instant to fake a stall).
    pub fn beat_at(&self, t: Instant) {
        let ms = t.saturating_duration_since(self.origin).as_millis() as u64;
        self.last.store(ms + 1, Ordering::Relaxed);
    }

    /// Time since the last beat; None before the first.
    pub fn age(&self) -> Option<Duration> {
        match self.last.load(Ordering::Relaxed) {
            0 => None,
            ms => {
                let at = self.origin + Duration::from_millis(ms - 1);
                Some(Instant::now().saturating_duration_since(at))
            }
        }
    }

    /// Shutdown has begun (health turns 503). True the first time only.
    pub fn set_stopping(&self) -> bool {
        !self.stopping.swap(true, Ordering::Relaxed)
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Ok(summary) while the pipeline is alive, Err(reason) otherwise.
    pub fn verdict(&self) -> Result<String, String> {
        if self.stopping() {
            return Err("stopping: finishing in-flight work, taking no new files".into());
        }
        match self.age() {
            None => Err("starting: the inboxes are not watched yet".into()),
            Some(a) if a > STALE_AFTER => Err(format!(
                "pipeline stalled: the dispatcher last ticked {:.1}s ago (limit {}s)",
                a.as_secs_f64(),
                STALE_AFTER.as_secs()
            )),
            Some(a) => Ok(format!(
                "alive: dispatcher ticked {:.2}s ago",
                a.as_secs_f64()
            )),
        }
    }

    /// Whether the watchdog may be pinged now.
    pub fn fresh(&self) -> bool {
        self.age().is_some_and(|a| a <= STALE_AFTER)
    }
}

/// Send one set of notifications; failures are logged once per kind at
/// debug level (a missing or refusing socket must not disturb the daemon).
pub fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify: {e}");
    }
}

/// The last `STATUS=` text sent, so an unchanged line is not sent again.
static LAST_STATUS: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

fn remember_status(status: &str) -> bool {
    let mut last = LAST_STATUS.lock().unwrap_or_else(|p| p.into_inner());
    if *last == status {
        return false;
    }
    status.clone_into(&mut last);
    true
}

/// `STATUS=…`, unless it is the line sent last.
pub fn status(status: &str) {
    if remember_status(status) {
        notify(&[NotifyState::Status(status)]);
    }
}

/// `READY=1` with a status line.
pub fn ready(status: &str) {
    remember_status(status);
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1` (with `MONOTONIC_USEC`, which `Type=notify-reload` wants).
pub fn reloading() {
    let text = "reloading the config";
    remember_status(text);
    let mut st = vec![NotifyState::Reloading, NotifyState::Status(text)];
    if let Ok(m) = NotifyState::monotonic_usec_now() {
        st.push(m);
    }
    notify(&st);
}

/// `STOPPING=1`, asking the manager to wait at least `grace` plus a margin.
pub fn stopping(grace: Duration) {
    let extend = (grace + Duration::from_secs(10)).as_micros();
    let extend = u32::try_from(extend).unwrap_or(u32::MAX);
    let text = "stopping: finishing in-flight work";
    remember_status(text);
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status(text),
        NotifyState::ExtendTimeoutUsec(extend),
    ]);
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The `STATUS=` text: queue size, then what the daemon waits on.
pub fn status_line(s: &Snapshot) -> String {
    let mut line = format!(
        "{}; {} queued, {} settling, {} in flight; {} done",
        format_args!("watching {}", plural(s.inboxes, "inbox", "inboxes")),
        s.queued,
        s.settling,
        s.in_flight,
        s.done()
    );
    let paused: Vec<String> = s
        .providers
        .iter()
        .filter_map(|(name, p)| p.paused.as_ref().map(|why| format!("{name} paused: {why}")))
        .collect();
    if !paused.is_empty() {
        line.push_str("; ");
        line.push_str(&paused.join("; "));
    } else if s.queued + s.settling + s.in_flight == 0 {
        line.push_str("; idle, waiting for files");
    }
    line
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC`, for this pid).
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// Wait for `ready`, send `READY=1`, then keep the `STATUS=` line current
/// and ping the watchdog at half its interval while the heartbeat is fresh.
/// Runs until the task is dropped.
pub async fn supervise(heartbeat: Arc<Heartbeat>, ready_rx: tokio::sync::oneshot::Receiver<()>) {
    if ready_rx.await.is_err() {
        return; // the queue never got going (start-up failed)
    }
    ready(&status_line(&metrics::global().snapshot()));
    tracing::debug!("sent READY=1");
    let watchdog = watchdog_interval();
    if let Some(w) = watchdog {
        tracing::info!(
            "systemd watchdog: {} (pinging every {} while the pipeline is alive)",
            humantime::format_duration(w),
            humantime::format_duration(w / 2)
        );
    }
    let mut status_tick = tokio::time::interval(STATUS_EVERY);
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dog_tick = tokio::time::interval(watchdog.map(|w| w / 2).unwrap_or(Duration::MAX / 4));
    dog_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = status_tick.tick() => {
                let snap = metrics::global().snapshot();
                if heartbeat.stopping() {
                    status(&format!(
                        "stopping: finishing in-flight work ({} in flight)",
                        snap.in_flight
                    ));
                } else {
                    status(&status_line(&snap));
                }
            }
            _ = dog_tick.tick(), if watchdog.is_some() => {
                if heartbeat.fresh() {
                    notify(&[NotifyState::Watchdog]);
                    warned = false;
                } else if !warned {
                    warned = true;
                    let why = heartbeat.verdict().err().unwrap_or_default();
                    tracing::error!("not pinging the systemd watchdog: {why}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ProviderFigures;

    #[test]
    fn heartbeat_verdicts() {
        let h = Heartbeat::new();
        assert!(h.verdict().unwrap_err().starts_with("starting"));
        assert!(!h.fresh());
        h.beat();
        assert!(h.verdict().is_ok());
        assert!(h.fresh());
        // A heartbeat whose last beat lies well in the past: stalled.
        if let Some(origin) = Instant::now().checked_sub(STALE_AFTER * 3) {
            let old = Heartbeat {
                origin,
                ..Heartbeat::new()
            };
            old.beat_at(origin);
            assert!(old.verdict().unwrap_err().starts_with("pipeline stalled"));
            assert!(!old.fresh());
        }
        h.set_stopping();
        assert!(h.verdict().unwrap_err().starts_with("stopping"));
    }

    #[test]
    fn status_names_queue_and_paused_providers() {
        let mut s = Snapshot {
            inboxes: 2,
            queued: 3,
            in_flight: 1,
            succeeded: 5,
            rejected: 1,
            ..Snapshot::default()
        };
        let line = status_line(&s);
        assert!(line.starts_with("watching 2 inboxes; 3 queued"), "{line}");
        assert!(line.contains("1 in flight; 6 done"), "{line}");
        s.providers.insert(
            "rembg".into(),
            ProviderFigures {
                paused: Some("monthly limit".into()),
                pause_reason: None,
            },
        );
        assert!(status_line(&s).ends_with("rembg paused: monthly limit"));
        let idle = Snapshot {
            inboxes: 1,
            ..Snapshot::default()
        };
        assert!(status_line(&idle).ends_with("idle, waiting for files"));
        assert!(status_line(&idle).starts_with("watching 1 inbox;"));
    }
}
