//! Recording: what the stages call to move the figures — file outcomes and
//! the queue's shape from the queue, retries and latency from the
//! pipeline, and each running provider's own status copied in once a
//! second ([`Metrics::sync_providers`]).
//!
//! Must not: block (atomics and short-held locks) or label by anything
//! unbounded (provider names only).

use super::families::{label, FormatLabel, ReloadLabel};
use super::Metrics;
use crate::job::FileResult;

/// Clamp a count into a gauge's `i64`.
fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    /// Make a provider appear (with zeros) before anything happened to it.
    pub fn register_provider(&self, provider: &str) {
        self.providers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(provider.to_string())
            .or_default();
        let l = label(provider);
        drop(self.retries.get_or_create(&l));
        drop(self.rate_limited.get_or_create(&l));
        drop(self.paused.get_or_create(&l));
        drop(self.latency.get_or_create(&l));
    }

    /// A file was noticed in an inbox (not one already waiting or in work).
    pub fn file_seen(&self) {
        self.files_seen.inc();
    }

    /// A worker finished with a file.
    pub fn record_result(&self, r: &FileResult) {
        let c = match r {
            FileResult::Succeeded => &self.succeeded,
            FileResult::Duplicate => &self.duplicates,
            FileResult::Rejected(_) => &self.rejected,
            FileResult::Failed(_) => &self.failed,
            FileResult::AlreadyDone | FileResult::Vanished | FileResult::Elsewhere => &self.skipped,
            FileResult::Trouble(_) => &self.trouble,
            FileResult::Valid | FileResult::Later(_) | FileResult::Interrupted => return,
        };
        c.inc();
    }

    /// The queue's current shape: files settling (waiting to be quiet),
    /// queued (ready, waiting for a worker), in flight (with a worker), and
    /// of those, at the engine (holding one of `queue.concurrency` slots).
    pub fn set_queue(&self, settling: usize, queued: usize, in_flight: usize, at_engine: usize) {
        self.queue_depth
            .set(gauge_value(settling.saturating_add(queued)));
        self.queue_ready.set(gauge_value(queued));
        self.in_flight.set(gauge_value(in_flight));
        self.at_engine.set(gauge_value(at_engine));
    }

    /// How many inboxes are being watched now.
    pub fn set_inboxes(&self, n: usize) {
        self.inboxes.set(gauge_value(n));
    }

    /// A SIGHUP reload was applied (`true`) or rejected (`false`).
    pub fn record_reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "rejected" };
        self.reloads.get_or_create(&ReloadLabel { result }).inc();
    }

    /// A finished output file (`[[inbox.output]]`) was written durably.
    pub fn record_output(&self, format: &'static str) {
        self.outputs.get_or_create(&FormatLabel { format }).inc();
    }

    /// The pipeline scheduled another attempt for a picture at `provider`.
    pub fn record_retry(&self, provider: &str) {
        self.register_provider(provider);
        self.retries.get_or_create(&label(provider)).inc();
    }

    /// Copy the running providers' own status in: pause (with why),
    /// credits left, and their 429 count (as a counter that keeps growing
    /// when a reload rebuilds a provider). Providers no longer running are
    /// shown as not paused.
    pub fn sync_providers<'a>(
        &self,
        running: impl IntoIterator<Item = (&'a str, crate::provider::ProviderStatus)>,
    ) {
        let mut map = self.providers.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = std::collections::BTreeSet::new();
        for (name, st) in running {
            seen.insert(name.to_string());
            let l = label(name);
            let p = map.entry(name.to_string()).or_default();
            p.paused = st.paused.as_ref().map(pause_text);
            p.pause_reason = st.paused.as_ref().map(|i| i.reason);
            self.paused
                .get_or_create(&l)
                .set(i64::from(p.paused.is_some()));
            if let Some(c) = st.credits_left {
                self.credits.get_or_create(&l).set(c);
            }
            if st.requests_per_second > 0.0 {
                self.rate.get_or_create(&l).set(st.requests_per_second);
            }
            let raw = st.rate_limited;
            let delta = if raw >= p.rate_limited_seen {
                raw - p.rate_limited_seen
            } else {
                raw // a new provider object: its count started again
            };
            self.rate_limited.get_or_create(&l).inc_by(delta);
            p.rate_limited_seen = raw;
        }
        for (name, p) in map.iter_mut() {
            if !seen.contains(name) {
                p.paused = None;
                p.pause_reason = None;
                p.rate_limited_seen = 0;
                self.paused.get_or_create(&label(name)).set(0);
            }
        }
    }

    /// One call to `provider` took `secs` (successful or not).
    pub fn observe_latency(&self, provider: &str, secs: f64) {
        if !secs.is_finite() || secs < 0.0 {
            return;
        }
        self.register_provider(provider);
        self.latency.get_or_create(&label(provider)).observe(secs);
    }
}

/// The pause reason as the status line shows it: the provider's message
/// (control characters blanked, at most 160 characters) and the reason code.
fn pause_text(i: &crate::provider::PauseInfo) -> String {
    let msg: String = i
        .message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(160)
        .collect();
    if msg.trim().is_empty() {
        i.reason.as_str().to_string()
    } else {
        format!("{} ({})", msg.trim(), i.reason.as_str())
    }
}
