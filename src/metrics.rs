//! Metrics: the process's counters and gauges, read by `GET /metrics`
//! (Prometheus text format), `/healthz` and the systemd `STATUS=` line.
//!
//! Owns: one [`Metrics`] value per process ([`global`]): file outcomes,
//! queue depth, in-flight work, reloads, and per-provider figures (retries,
//! 429s, latency histogram, credits left, paused-with-why). The queue feeds
//! outcomes and queue shape, and once a second copies each running
//! provider's `Provider::status()` (pause, credits, 429s) in with
//! [`Metrics::sync_providers`]; the pipeline feeds retries and latency.
//! The metric types, the registry and the text exposition are the
//! Prometheus project's client (`prometheus-client`); this file only names
//! the metrics and keeps the few figures the status line needs.
//!
//! Must not: block (atomics and short-held locks), use file paths or
//! anything unbounded as labels (provider names only), or hold secrets.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{LazyLock, Mutex};

use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::job::FileResult;

/// The `Content-Type` of what [`render`] returns (text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the provider latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The one label of the per-provider metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: String,
}

/// The one label of `cutout_reloads_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabel {
    result: &'static str,
}

/// The one label of `cutout_outputs_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FormatLabel {
    format: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// What the status line knows about one provider.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProviderFigures {
    /// `Some(why)` while the provider is paused (quota, key refused…).
    pub paused: Option<String>,
    /// Why, typed (the review page's RECHARGE / FIX THE KEY / unreachable).
    pub pause_reason: Option<crate::provider::PauseReason>,
}

/// A consistent copy of the figures the status line and `/healthz` show.
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
    pub providers: BTreeMap<String, ProviderFigures>,
}

impl Snapshot {
    /// Files finished with a final outcome since start.
    pub fn done(&self) -> u64 {
        self.succeeded + self.duplicates + self.rejected + self.failed
    }
}

/// What the metrics keep about a provider beyond the registry: why it is
/// paused, and its own 429 count when last synced (so a rebuilt provider's
/// count starting again keeps `cutout_provider_rate_limited_total` growing).
#[derive(Debug, Default)]
struct ProviderState {
    paused: Option<String>,
    pause_reason: Option<crate::provider::PauseReason>,
    rate_limited_seen: u64,
}

/// The counters. Cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    files_seen: Counter,
    succeeded: Counter,
    duplicates: Counter,
    rejected: Counter,
    failed: Counter,
    skipped: Counter,
    trouble: Counter,
    queue_depth: Gauge,
    queue_ready: Gauge,
    in_flight: Gauge,
    at_engine: Gauge,
    inboxes: Gauge,
    reloads: Family<ReloadLabel, Counter>,
    outputs: Family<FormatLabel, Counter>,
    retries: Family<ProviderLabel, Counter>,
    rate_limited: Family<ProviderLabel, Counter>,
    paused: Family<ProviderLabel, Gauge>,
    credits: Family<ProviderLabel, Gauge<f64, AtomicU64>>,
    rate: Family<ProviderLabel, Gauge<f64, AtomicU64>>,
    latency: Family<ProviderLabel, Histogram, fn() -> Histogram>,
    providers: Mutex<BTreeMap<String, ProviderState>>,
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics (what `/metrics` serves).
pub fn global() -> &'static Metrics {
    &GLOBAL
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `registry.register` adds the final full stop to the help text itself.
fn register(
    r: &mut Registry,
    name: &str,
    help: &str,
    metric: impl prometheus_client::registry::Metric,
) {
    r.register(name, help.trim_end_matches('.'), metric);
}

/// Clamp a count into a gauge's `i64`.
fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    /// Fresh metrics, all zero, registered under their exported names
    /// (counters get `_total` from the client library).
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            files_seen: Counter::default(),
            succeeded: Counter::default(),
            duplicates: Counter::default(),
            rejected: Counter::default(),
            failed: Counter::default(),
            skipped: Counter::default(),
            trouble: Counter::default(),
            queue_depth: Gauge::default(),
            queue_ready: Gauge::default(),
            in_flight: Gauge::default(),
            at_engine: Gauge::default(),
            inboxes: Gauge::default(),
            reloads: Family::default(),
            outputs: Family::default(),
            retries: Family::default(),
            rate_limited: Family::default(),
            paused: Family::default(),
            credits: Family::default(),
            rate: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            providers: Mutex::new(BTreeMap::new()),
        };
        for result in ["applied", "rejected"] {
            drop(m.reloads.get_or_create(&ReloadLabel { result }));
        }
        for format in ["png", "webp", "jpeg"] {
            drop(m.outputs.get_or_create(&FormatLabel { format }));
        }
        m.registered()
    }

    /// Register every metric, in the order `/metrics` shows them.
    fn registered(mut self) -> Metrics {
        let r = &mut self.registry;
        let counters = [
            (
                "cutout_files_seen",
                &self.files_seen,
                "Files noticed in an inbox (a file looked at again by a later scan counts again).",
            ),
            (
                "cutout_files_succeeded",
                &self.succeeded,
                "Pictures cut out and written to the outbox.",
            ),
            (
                "cutout_files_duplicates",
                &self.duplicates,
                "Pictures identical to an earlier one; its cut-out was reused, nothing was paid.",
            ),
            (
                "cutout_files_rejected",
                &self.rejected,
                "Files moved to rejected/ (not a usable picture).",
            ),
            (
                "cutout_files_failed",
                &self.failed,
                "Pictures moved to failed/ (the provider could not process them).",
            ),
            (
                "cutout_files_skipped",
                &self.skipped,
                "Files already done earlier, or gone before they were processed.",
            ),
            (
                "cutout_trouble",
                &self.trouble,
                "Times a file was left in its inbox for trouble outside it (disk, state); looked at again later.",
            ),
        ];
        for (name, c, help) in counters {
            register(r, name, help, c.clone());
        }
        let gauges = [
            (
                "cutout_queue_depth",
                &self.queue_depth,
                "Files waiting: settling (still being written) plus queued for a worker.",
            ),
            (
                "cutout_queue_ready",
                &self.queue_ready,
                "Files settled and waiting for a worker.",
            ),
            (
                "cutout_in_flight",
                &self.in_flight,
                "Pictures being processed now (read, checked, at the engine or being filed).",
            ),
            (
                "cutout_at_engine",
                &self.at_engine,
                "Pictures at the engine now (at most queue.concurrency).",
            ),
            ("cutout_inboxes", &self.inboxes, "Inboxes being watched."),
        ];
        for (name, g, help) in gauges {
            register(r, name, help, g.clone());
        }
        register(
            r,
            "cutout_reloads",
            "Config reloads (SIGHUP) by result.",
            self.reloads.clone(),
        );
        register(
            r,
            "cutout_outputs",
            "Files written by [[inbox.output]] tables (finishing), by format.",
            self.outputs.clone(),
        );
        register(
            r,
            "cutout_provider_retries",
            "Attempts scheduled again after a transient provider error.",
            self.retries.clone(),
        );
        register(
            r,
            "cutout_provider_rate_limited",
            "HTTP 429 (too many requests) answers by provider.",
            self.rate_limited.clone(),
        );
        register(
            r,
            "cutout_provider_paused",
            "1 while the provider is paused (quota, key refused); its files stay queued.",
            self.paused.clone(),
        );
        register(
            r,
            "cutout_provider_credits",
            "Credits left at the provider, as it last reported them.",
            self.credits.clone(),
        );
        register(
            r,
            "cutout_provider_rate_per_second",
            "Requests per second the provider's gate allows right now (learned with requests_per_second = \"auto\").",
            self.rate.clone(),
        );
        register(
            r,
            "cutout_provider_latency_seconds",
            "Duration of provider calls.",
            self.latency.clone(),
        );
        self
    }

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
            FileResult::AlreadyDone | FileResult::Vanished => &self.skipped,
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

    pub fn snapshot(&self) -> Snapshot {
        let depth = u64::try_from(self.queue_depth.get()).unwrap_or(0);
        let queued = u64::try_from(self.queue_ready.get()).unwrap_or(0);
        let gauge = |g: &Gauge| u64::try_from(g.get()).unwrap_or(0);
        let providers = self.providers.lock().unwrap_or_else(|p| p.into_inner());
        Snapshot {
            files_seen: self.files_seen.get(),
            succeeded: self.succeeded.get(),
            duplicates: self.duplicates.get(),
            rejected: self.rejected.get(),
            failed: self.failed.get(),
            skipped: self.skipped.get(),
            trouble: self.trouble.get(),
            settling: depth.saturating_sub(queued),
            queued,
            in_flight: gauge(&self.in_flight),
            at_engine: gauge(&self.at_engine),
            inboxes: gauge(&self.inboxes),
            providers: providers
                .iter()
                .map(|(name, p)| {
                    let (paused, pause_reason) = (p.paused.clone(), p.pause_reason);
                    (
                        name.clone(),
                        ProviderFigures {
                            paused,
                            pause_reason,
                        },
                    )
                })
                .collect(),
        }
    }

    /// Everything in the Prometheus text exposition format (0.0.4), the
    /// liveness figures last.
    pub fn render(&self, live: Liveness) -> String {
        let mut scrape = Registry::default();
        register(
            &mut scrape,
            "cutout_up",
            "1 while the pipeline is alive (its dispatcher ticks), else 0.",
            ConstGauge::new(i64::from(live.up)),
        );
        if let Some(age) = live.heartbeat_age {
            register(
                &mut scrape,
                "cutout_heartbeat_age_seconds",
                "Seconds since the dispatcher last ticked.",
                ConstGauge::new(age),
            );
        }
        let mut text = String::new();
        // Writing into a String cannot fail; an encoder error would only
        // mean a metric refused to encode, and the rest is still served.
        for r in [&self.registry, &scrape] {
            if let Err(e) = prometheus_text::encode(&mut text, r) {
                tracing::warn!("encoding /metrics: {e}");
            }
        }
        text
    }
}

fn label(provider: &str) -> ProviderLabel {
    ProviderLabel {
        provider: provider.to_string(),
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

/// Extra liveness figures rendered with the counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Liveness {
    /// 1 when the pipeline is alive (what `/healthz` answers 200 for).
    pub up: bool,
    /// Seconds since the dispatcher last ticked (None: not started yet).
    pub heartbeat_age: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{PauseInfo, PauseReason, ProviderStatus};

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

    fn status(rate_limited: u64, credits: Option<f64>, paused: bool) -> ProviderStatus {
        ProviderStatus {
            rate_limited,
            credits_left: credits,
            paused: paused.then(|| PauseInfo {
                reason: PauseReason::Quota,
                message: "monthly limit\nreached".into(),
                since: std::time::SystemTime::now(),
            }),
            ..ProviderStatus::default()
        }
    }

    #[test]
    fn names_and_types_stay_what_dashboards_read() {
        let m = Metrics::new();
        m.register_provider("local");
        m.sync_providers([("local", status(0, Some(3.0), false))]);
        let text = m.render(Liveness {
            up: true,
            heartbeat_age: Some(0.5),
        });
        let types: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        assert_eq!(
            types,
            [
                "cutout_files_seen_total counter",
                "cutout_files_succeeded_total counter",
                "cutout_files_duplicates_total counter",
                "cutout_files_rejected_total counter",
                "cutout_files_failed_total counter",
                "cutout_files_skipped_total counter",
                "cutout_trouble_total counter",
                "cutout_queue_depth gauge",
                "cutout_queue_ready gauge",
                "cutout_in_flight gauge",
                "cutout_at_engine gauge",
                "cutout_inboxes gauge",
                "cutout_reloads_total counter",
                "cutout_outputs_total counter",
                "cutout_provider_retries_total counter",
                "cutout_provider_rate_limited_total counter",
                "cutout_provider_paused gauge",
                "cutout_provider_credits gauge",
                "cutout_provider_latency_seconds histogram",
                "cutout_up gauge",
                "cutout_heartbeat_age_seconds gauge",
            ]
        );
        assert!(text.contains("cutout_outputs_total{format=\"jpeg\"} 0\n"));
        // Help texts end with exactly one full stop.
        assert!(text.contains(
            "# HELP cutout_inboxes Inboxes being watched.\n# TYPE cutout_inboxes gauge\n"
        ));
        assert!(!text.contains(".."), "{text}");
        // No heartbeat yet: no heartbeat age.
        let text = m.render(Liveness::default());
        assert!(!text.contains("cutout_heartbeat_age_seconds"), "{text}");
        assert!(text.ends_with("\ncutout_up 0\n"), "{text}");
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
        m.set_inboxes(2);
        m.record_reload(true);
        m.record_retry("rembg");
        m.sync_providers([
            ("local", status(0, None, false)),
            ("rembg", status(2, Some(41.5), true)),
        ]);
        for v in [0.01, 0.3, 0.3, 7.0, 1000.0, f64::NAN, -1.0] {
            m.observe_latency("local", v);
        }
        let text = m.render(Liveness {
            up: true,
            heartbeat_age: Some(0.1),
        });
        let p = parse(&text);
        assert_eq!(p["cutout_files_seen_total"], 7.0);
        assert_eq!(p["cutout_files_succeeded_total"], 2.0);
        assert_eq!(p["cutout_files_duplicates_total"], 1.0);
        assert_eq!(p["cutout_files_rejected_total"], 1.0);
        assert_eq!(p["cutout_files_failed_total"], 1.0);
        assert_eq!(p["cutout_files_skipped_total"], 1.0);
        assert_eq!(p["cutout_trouble_total"], 0.0);
        assert_eq!(p["cutout_queue_depth"], 5.0);
        assert_eq!(p["cutout_queue_ready"], 2.0);
        assert_eq!(p["cutout_in_flight"], 1.0);
        assert_eq!(p["cutout_at_engine"], 1.0);
        assert_eq!(p["cutout_inboxes"], 2.0);
        assert_eq!(p["cutout_reloads_total{result=\"applied\"}"], 1.0);
        assert_eq!(p["cutout_reloads_total{result=\"rejected\"}"], 0.0);
        assert_eq!(
            p["cutout_provider_rate_limited_total{provider=\"rembg\"}"],
            2.0
        );
        assert_eq!(
            p["cutout_provider_rate_limited_total{provider=\"local\"}"],
            0.0
        );
        assert_eq!(p["cutout_provider_retries_total{provider=\"rembg\"}"], 1.0);
        assert_eq!(p["cutout_provider_retries_total{provider=\"local\"}"], 0.0);
        assert_eq!(p["cutout_provider_credits{provider=\"rembg\"}"], 41.5);
        assert!(!p.contains_key("cutout_provider_credits{provider=\"local\"}"));
        assert_eq!(p["cutout_provider_paused{provider=\"rembg\"}"], 1.0);
        assert_eq!(p["cutout_provider_paused{provider=\"local\"}"], 0.0);
        // cumulative buckets, `le` written as before ("1", not "1.0")
        let bucket = |le: &str| {
            p[&format!("cutout_provider_latency_seconds_bucket{{provider=\"local\",le=\"{le}\"}}")]
        };
        assert_eq!(bucket("0.05"), 1.0);
        assert_eq!(bucket("0.5"), 3.0);
        assert_eq!(bucket("1"), 3.0);
        assert_eq!(bucket("10"), 4.0);
        assert_eq!(bucket("300"), 4.0);
        assert_eq!(bucket("+Inf"), 5.0);
        assert_eq!(
            p["cutout_provider_latency_seconds_count{provider=\"local\"}"],
            5.0
        );
        let sum = p["cutout_provider_latency_seconds_sum{provider=\"local\"}"];
        assert!((sum - 1007.61).abs() < 1e-9, "{sum}");
        assert_eq!(
            p["cutout_provider_latency_seconds_count{provider=\"rembg\"}"],
            0.0
        );
        assert_eq!(p["cutout_up"], 1.0);
        assert_eq!(p["cutout_heartbeat_age_seconds"], 0.1);

        let s = m.snapshot();
        assert_eq!((s.settling, s.queued, s.in_flight, s.inboxes), (3, 2, 1, 2));
        assert_eq!(s.done(), 5);
    }

    #[test]
    fn provider_status_is_synced_as_counters() {
        let m = Metrics::new();
        let rate_limited = |m: &Metrics| {
            parse(&m.render(Liveness::default()))
                ["cutout_provider_rate_limited_total{provider=\"rembg\"}"]
        };
        m.sync_providers([("rembg", status(3, Some(10.0), false))]);
        m.sync_providers([("rembg", status(5, Some(10.0), true))]);
        assert_eq!(rate_limited(&m), 5.0);
        assert_eq!(
            m.snapshot().providers["rembg"].paused.as_deref(),
            Some("monthly limit reached (out-of-credits)")
        );
        // rebuilt by a reload: its own count starts again, ours keeps going
        m.sync_providers([("rembg", status(2, Some(10.0), false))]);
        assert_eq!(rate_limited(&m), 7.0);
        // removed by a reload: no longer shown as paused
        m.sync_providers([("rembg", status(2, Some(10.0), true))]);
        m.sync_providers(std::iter::empty());
        assert_eq!(m.snapshot().providers["rembg"].paused, None);
        let p = parse(&m.render(Liveness::default()));
        assert_eq!(p["cutout_provider_paused{provider=\"rembg\"}"], 0.0);
        assert_eq!(p["cutout_provider_credits{provider=\"rembg\"}"], 10.0);
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.register_provider("we\"ird\\name");
        let text = m.render(Liveness::default());
        assert!(text.contains("provider=\"we\\\"ird\\\\name\""), "{text}");
    }
}
