//! Metrics: the process's counters and gauges, read by `GET /metrics`
//! (Prometheus text format), `/healthz` and the systemd `STATUS=` line.
//!
//! Owns: one [`Metrics`] value per process ([`global`]): file outcomes,
//! queue depth, in-flight work, reloads, and per-provider figures (retries,
//! 429s, latency histogram, credits left, paused-with-why). The queue feeds
//! outcomes and queue shape, and once a second copies each running
//! provider's `Provider::status()` (pause, credits, 429s) in with
//! [`Metrics::sync_providers`]; the pipeline feeds retries and latency.
//! Also rendering it all as Prometheus text.
//!
//! Must not: block (atomics and one short-held mutex), use file paths or
//! anything unbounded as labels (provider names only), or hold secrets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::job::FileResult;

/// Upper bounds (seconds) of the provider latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// A Prometheus-style cumulative histogram.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations ≤ each bound of [`LATENCY_BUCKETS`] (not cumulative here;
    /// rendering makes them cumulative).
    pub buckets: [u64; LATENCY_BUCKETS.len()],
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        if !v.is_finite() || v < 0.0 {
            return;
        }
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| v <= *b) {
            self.buckets[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }
}

/// What is known about one provider.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProviderFigures {
    pub retries: u64,
    /// 429s since start (kept counting across provider rebuilds).
    pub rate_limited: u64,
    /// The provider object's own 429 count when last synced.
    pub(crate) rate_limited_seen: u64,
    pub credits: Option<f64>,
    /// `Some(why)` while the provider is paused (quota, key refused…).
    pub paused: Option<String>,
    pub latency: Histogram,
}

/// A consistent copy of everything, for rendering and the status line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub files_seen: u64,
    pub succeeded: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub failed: u64,
    pub skipped: u64,
    pub trouble: u64,
    pub settling: u64,
    pub queued: u64,
    pub in_flight: u64,
    pub at_engine: u64,
    pub inboxes: u64,
    pub reloads_ok: u64,
    pub reloads_rejected: u64,
    pub providers: BTreeMap<String, ProviderFigures>,
}

impl Snapshot {
    /// Files finished with a final outcome since start.
    pub fn done(&self) -> u64 {
        self.succeeded + self.duplicates + self.rejected + self.failed
    }
}

/// The counters. Cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    files_seen: AtomicU64,
    succeeded: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    trouble: AtomicU64,
    settling: AtomicU64,
    queued: AtomicU64,
    in_flight: AtomicU64,
    at_engine: AtomicU64,
    inboxes: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_rejected: AtomicU64,
    providers: Mutex<BTreeMap<String, ProviderFigures>>,
}

static GLOBAL: Metrics = Metrics::new();

/// The process's metrics (what `/metrics` serves).
pub fn global() -> &'static Metrics {
    &GLOBAL
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub const fn new() -> Metrics {
        Metrics {
            files_seen: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            trouble: AtomicU64::new(0),
            settling: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            at_engine: AtomicU64::new(0),
            inboxes: AtomicU64::new(0),
            reloads_ok: AtomicU64::new(0),
            reloads_rejected: AtomicU64::new(0),
            providers: Mutex::new(BTreeMap::new()),
        }
    }

    fn with_provider(&self, provider: &str, f: impl FnOnce(&mut ProviderFigures)) {
        let mut map = self.providers.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(provider) {
            Some(p) => f(p),
            None => {
                let mut p = ProviderFigures::default();
                f(&mut p);
                map.insert(provider.to_string(), p);
            }
        }
    }

    /// Make a provider appear (with zeros) before anything happened to it.
    pub fn register_provider(&self, provider: &str) {
        self.with_provider(provider, |_| {});
    }

    /// A file was noticed in an inbox (not one already waiting or in work).
    pub fn file_seen(&self) {
        self.files_seen.fetch_add(1, Ordering::Relaxed);
    }

    /// A worker finished with a file.
    pub fn record_result(&self, r: &FileResult) {
        let c = match r {
            FileResult::Succeeded => &self.succeeded,
            FileResult::Duplicate => &self.duplicates,
            FileResult::Rejected(_) => &self.rejected,
            FileResult::Failed(_) => &self.failed,
            FileResult::AlreadyDone | FileResult::Vanished => &self.skipped,
            FileResult::Trouble(_) => &self.trouble,
            FileResult::Valid | FileResult::Later(_) | FileResult::Interrupted => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The queue's current shape: files settling (waiting to be quiet),
    /// queued (ready, waiting for a worker), in flight (with a worker), and
    /// of those, at the engine (holding one of `queue.concurrency` slots).
    pub fn set_queue(&self, settling: usize, queued: usize, in_flight: usize, at_engine: usize) {
        self.settling.store(settling as u64, Ordering::Relaxed);
        self.queued.store(queued as u64, Ordering::Relaxed);
        self.in_flight.store(in_flight as u64, Ordering::Relaxed);
        self.at_engine.store(at_engine as u64, Ordering::Relaxed);
    }

    /// How many inboxes are being watched now.
    pub fn set_inboxes(&self, n: usize) {
        self.inboxes.store(n as u64, Ordering::Relaxed);
    }

    /// A SIGHUP reload was applied (`true`) or rejected (`false`).
    pub fn record_reload(&self, applied: bool) {
        let c = if applied {
            &self.reloads_ok
        } else {
            &self.reloads_rejected
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The pipeline scheduled another attempt for a picture at `provider`.
    pub fn record_retry(&self, provider: &str) {
        self.with_provider(provider, |p| p.retries += 1);
    }

    /// `provider` answered 429 (too many requests). Only for providers
    /// whose `status().rate_limited` stays 0; [`Metrics::sync_providers`]
    /// counts the others.
    pub fn record_429(&self, provider: &str) {
        self.with_provider(provider, |p| p.rate_limited += 1);
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
            let p = map.entry(name.to_string()).or_default();
            p.paused = st.paused.as_ref().map(|i| {
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
            });
            if st.credits_left.is_some() {
                p.credits = st.credits_left;
            }
            let raw = st.rate_limited;
            let delta = if raw >= p.rate_limited_seen {
                raw - p.rate_limited_seen
            } else {
                raw // a new provider object: its count started again
            };
            p.rate_limited += delta;
            p.rate_limited_seen = raw;
        }
        for (name, p) in map.iter_mut() {
            if !seen.contains(name) {
                p.paused = None;
                p.rate_limited_seen = 0;
            }
        }
    }

    /// Credits left at `provider`, as last reported by it.
    pub fn set_credits(&self, provider: &str, credits: f64) {
        self.with_provider(provider, |p| p.credits = Some(credits));
    }

    /// `Some(why)`: `provider` is paused (its files stay queued); `None`: it
    /// works again.
    pub fn set_paused(&self, provider: &str, why: Option<String>) {
        self.with_provider(provider, |p| p.paused = why);
    }

    /// One call to `provider` took `secs` (successful or not).
    pub fn observe_latency(&self, provider: &str, secs: f64) {
        self.with_provider(provider, |p| p.latency.observe(secs));
    }

    pub fn snapshot(&self) -> Snapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            files_seen: g(&self.files_seen),
            succeeded: g(&self.succeeded),
            duplicates: g(&self.duplicates),
            rejected: g(&self.rejected),
            failed: g(&self.failed),
            skipped: g(&self.skipped),
            trouble: g(&self.trouble),
            settling: g(&self.settling),
            queued: g(&self.queued),
            in_flight: g(&self.in_flight),
            at_engine: g(&self.at_engine),
            inboxes: g(&self.inboxes),
            reloads_ok: g(&self.reloads_ok),
            reloads_rejected: g(&self.reloads_rejected),
            providers: self
                .providers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// Escape a label value for the text format.
fn label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Extra liveness figures rendered with the counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Liveness {
    /// 1 when the pipeline is alive (what `/healthz` answers 200 for).
    pub up: bool,
    /// Seconds since the dispatcher last ticked (None: not started yet).
    pub heartbeat_age: Option<f64>,
}

/// Render a snapshot in the Prometheus text exposition format (0.0.4).
pub fn render(s: &Snapshot, live: Liveness) -> String {
    let mut o = String::new();
    let head = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} {kind}");
    };
    let counters: [(&str, u64, &str); 7] = [
        (
            "cutout_files_seen_total",
            s.files_seen,
            "Files noticed in an inbox (a file looked at again by a later scan counts again).",
        ),
        (
            "cutout_files_succeeded_total",
            s.succeeded,
            "Pictures cut out and written to the outbox.",
        ),
        (
            "cutout_files_duplicates_total",
            s.duplicates,
            "Pictures identical to an earlier one; its cut-out was reused, nothing was paid.",
        ),
        (
            "cutout_files_rejected_total",
            s.rejected,
            "Files moved to rejected/ (not a usable picture).",
        ),
        (
            "cutout_files_failed_total",
            s.failed,
            "Pictures moved to failed/ (the provider could not process them).",
        ),
        (
            "cutout_files_skipped_total",
            s.skipped,
            "Files already done earlier, or gone before they were processed.",
        ),
        (
            "cutout_trouble_total",
            s.trouble,
            "Times a file was left in its inbox for trouble outside it (disk, state); looked at again later.",
        ),
    ];
    for (name, v, help) in counters {
        head(&mut o, name, "counter", help);
        let _ = writeln!(o, "{name} {v}");
    }
    let gauges: [(&str, u64, &str); 5] = [
        (
            "cutout_queue_depth",
            s.settling + s.queued,
            "Files waiting: settling (still being written) plus queued for a worker.",
        ),
        (
            "cutout_queue_ready",
            s.queued,
            "Files settled and waiting for a worker.",
        ),
        (
            "cutout_in_flight",
            s.in_flight,
            "Pictures being processed now (read, checked, at the engine or being filed).",
        ),
        (
            "cutout_at_engine",
            s.at_engine,
            "Pictures at the engine now (at most queue.concurrency).",
        ),
        ("cutout_inboxes", s.inboxes, "Inboxes being watched."),
    ];
    for (name, v, help) in gauges {
        head(&mut o, name, "gauge", help);
        let _ = writeln!(o, "{name} {v}");
    }
    head(
        &mut o,
        "cutout_reloads_total",
        "counter",
        "Config reloads (SIGHUP) by result.",
    );
    let _ = writeln!(
        o,
        "cutout_reloads_total{{result=\"applied\"}} {}",
        s.reloads_ok
    );
    let _ = writeln!(
        o,
        "cutout_reloads_total{{result=\"rejected\"}} {}",
        s.reloads_rejected
    );

    head(
        &mut o,
        "cutout_provider_retries_total",
        "counter",
        "Attempts scheduled again after a transient provider error.",
    );
    for (name, p) in &s.providers {
        let _ = writeln!(
            o,
            "cutout_provider_retries_total{{provider=\"{}\"}} {}",
            label(name),
            p.retries
        );
    }
    head(
        &mut o,
        "cutout_provider_rate_limited_total",
        "counter",
        "HTTP 429 (too many requests) answers by provider.",
    );
    for (name, p) in &s.providers {
        let _ = writeln!(
            o,
            "cutout_provider_rate_limited_total{{provider=\"{}\"}} {}",
            label(name),
            p.rate_limited
        );
    }
    head(
        &mut o,
        "cutout_provider_paused",
        "gauge",
        "1 while the provider is paused (quota, key refused); its files stay queued.",
    );
    for (name, p) in &s.providers {
        let _ = writeln!(
            o,
            "cutout_provider_paused{{provider=\"{}\"}} {}",
            label(name),
            u8::from(p.paused.is_some())
        );
    }
    head(
        &mut o,
        "cutout_provider_credits",
        "gauge",
        "Credits left at the provider, as it last reported them.",
    );
    for (name, p) in &s.providers {
        if let Some(c) = p.credits {
            let _ = writeln!(
                o,
                "cutout_provider_credits{{provider=\"{}\"}} {}",
                label(name),
                num(c)
            );
        }
    }
    head(
        &mut o,
        "cutout_provider_latency_seconds",
        "histogram",
        "Duration of provider calls.",
    );
    for (name, p) in &s.providers {
        let l = label(name);
        let mut cum = 0;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cum += p.latency.buckets[i];
            let _ = writeln!(
                o,
                "cutout_provider_latency_seconds_bucket{{provider=\"{l}\",le=\"{}\"}} {cum}",
                num(*b)
            );
        }
        let _ = writeln!(
            o,
            "cutout_provider_latency_seconds_bucket{{provider=\"{l}\",le=\"+Inf\"}} {}",
            p.latency.count
        );
        let _ = writeln!(
            o,
            "cutout_provider_latency_seconds_sum{{provider=\"{l}\"}} {}",
            num(p.latency.sum)
        );
        let _ = writeln!(
            o,
            "cutout_provider_latency_seconds_count{{provider=\"{l}\"}} {}",
            p.latency.count
        );
    }
    head(
        &mut o,
        "cutout_up",
        "gauge",
        "1 while the pipeline is alive (its dispatcher ticks), else 0.",
    );
    let _ = writeln!(o, "cutout_up {}", u8::from(live.up));
    if let Some(age) = live.heartbeat_age {
        head(
            &mut o,
            "cutout_heartbeat_age_seconds",
            "gauge",
            "Seconds since the dispatcher last ticked.",
        );
        let _ = writeln!(o, "cutout_heartbeat_age_seconds {}", num(age));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parse the text format back into (name{labels} → value), checking
    /// every line is a comment or a well-formed sample.
    fn parse(text: &str) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
                continue;
            }
            let (key, val) = line.rsplit_once(' ').expect("sample has a value");
            let v: f64 = match val {
                "+Inf" => f64::INFINITY,
                v => v.parse().expect("numeric value"),
            };
            assert!(m.insert(key.to_string(), v).is_none(), "duplicate {key}");
        }
        m
    }

    #[test]
    fn counts_render_and_parse_back() {
        let m = Metrics::new();
        m.register_provider("local");
        for r in [
            FileResult::Succeeded,
            FileResult::Succeeded,
            FileResult::Duplicate,
            FileResult::Rejected(crate::job::Reason::new(crate::job::Code::NotAnImage, "x")),
            FileResult::Failed(crate::job::Reason::new(crate::job::Code::EngineFailed, "y")),
            FileResult::AlreadyDone,
            FileResult::Later(std::time::Duration::from_secs(1)),
        ] {
            m.file_seen();
            m.record_result(&r);
        }
        m.set_queue(3, 2, 1, 1);
        m.record_429("rembg");
        m.record_429("rembg");
        m.record_retry("rembg");
        m.set_credits("rembg", 41.5);
        m.set_paused("rembg", Some("monthly limit".into()));
        for v in [0.01, 0.3, 0.3, 7.0, 1000.0] {
            m.observe_latency("local", v);
        }
        let text = render(
            &m.snapshot(),
            Liveness {
                up: true,
                heartbeat_age: Some(0.1),
            },
        );
        let p = parse(&text);
        assert_eq!(p["cutout_files_seen_total"], 7.0);
        assert_eq!(p["cutout_files_succeeded_total"], 2.0);
        assert_eq!(p["cutout_files_duplicates_total"], 1.0);
        assert_eq!(p["cutout_files_rejected_total"], 1.0);
        assert_eq!(p["cutout_files_failed_total"], 1.0);
        assert_eq!(p["cutout_files_skipped_total"], 1.0);
        assert_eq!(p["cutout_queue_depth"], 5.0);
        assert_eq!(p["cutout_in_flight"], 1.0);
        assert_eq!(p["cutout_at_engine"], 1.0);
        assert_eq!(
            p["cutout_provider_rate_limited_total{provider=\"rembg\"}"],
            2.0
        );
        assert_eq!(
            p["cutout_provider_rate_limited_total{provider=\"local\"}"],
            0.0
        );
        assert_eq!(p["cutout_provider_retries_total{provider=\"rembg\"}"], 1.0);
        assert_eq!(p["cutout_provider_credits{provider=\"rembg\"}"], 41.5);
        assert!(!p.contains_key("cutout_provider_credits{provider=\"local\"}"));
        assert_eq!(p["cutout_provider_paused{provider=\"rembg\"}"], 1.0);
        assert_eq!(p["cutout_provider_paused{provider=\"local\"}"], 0.0);
        // cumulative buckets
        assert_eq!(
            p["cutout_provider_latency_seconds_bucket{provider=\"local\",le=\"0.05\"}"],
            1.0
        );
        assert_eq!(
            p["cutout_provider_latency_seconds_bucket{provider=\"local\",le=\"0.5\"}"],
            3.0
        );
        assert_eq!(
            p["cutout_provider_latency_seconds_bucket{provider=\"local\",le=\"300\"}"],
            4.0
        );
        assert_eq!(
            p["cutout_provider_latency_seconds_bucket{provider=\"local\",le=\"+Inf\"}"],
            5.0
        );
        assert_eq!(
            p["cutout_provider_latency_seconds_count{provider=\"local\"}"],
            5.0
        );
        let sum = p["cutout_provider_latency_seconds_sum{provider=\"local\"}"];
        assert!((sum - 1007.61).abs() < 1e-9, "{sum}");
        assert_eq!(p["cutout_up"], 1.0);
    }

    #[test]
    fn provider_status_is_synced_as_counters() {
        use crate::provider::{PauseInfo, PauseReason, ProviderStatus};
        let m = Metrics::new();
        let st = |n: u64, paused: bool| ProviderStatus {
            rate_limited: n,
            credits_left: Some(10.0),
            paused: paused.then(|| PauseInfo {
                reason: PauseReason::Quota,
                message: "monthly limit\nreached".into(),
                since: std::time::SystemTime::now(),
            }),
            ..ProviderStatus::default()
        };
        m.sync_providers([("rembg", st(3, false))]);
        m.sync_providers([("rembg", st(5, true))]);
        let s = m.snapshot();
        assert_eq!(s.providers["rembg"].rate_limited, 5);
        assert_eq!(
            s.providers["rembg"].paused.as_deref(),
            Some("monthly limit reached (out-of-credits)")
        );
        // rebuilt by a reload: its own count starts again, ours keeps going
        m.sync_providers([("rembg", st(2, false))]);
        assert_eq!(m.snapshot().providers["rembg"].rate_limited, 7);
        // removed by a reload: no longer shown as paused
        m.sync_providers([("rembg", st(2, true))]);
        m.sync_providers(std::iter::empty());
        assert_eq!(m.snapshot().providers["rembg"].paused, None);
        assert_eq!(m.snapshot().providers["rembg"].credits, Some(10.0));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.register_provider("we\"ird\\name");
        let text = render(&m.snapshot(), Liveness::default());
        assert!(text.contains("provider=\"we\\\"ird\\\\name\""), "{text}");
    }
}
