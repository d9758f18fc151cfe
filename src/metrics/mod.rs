//! Metrics: the process's counters and gauges, read by `GET /metrics`
//! (Prometheus text format), `/healthz` and the systemd `STATUS=` line.
//!
//! Owns: one [`Metrics`] value per process ([`global`]): file outcomes,
//! queue depth, in-flight work, reloads, and per-provider figures (retries,
//! 429s, latency histogram, credits left, paused-with-why). The metric
//! types, the registry and the text exposition are the Prometheus
//! project's client (`prometheus-client`); this folder only names the
//! metrics and keeps the few figures the status line needs:
//!
//! - `mod.rs`: the [`Metrics`] value, [`Snapshot`] and [`Liveness`];
//! - `families.rs`: the label sets and every metric's name and help text,
//!   registered in the order `/metrics` shows them;
//! - `record.rs`: what the stages call — the queue feeds outcomes and
//!   queue shape, and once a second copies each running provider's
//!   `Provider::status()` (pause, credits, 429s) in with
//!   [`Metrics::sync_providers`]; the pipeline feeds retries and latency;
//! - `render.rs`: the text exposition and the status-line snapshot.
//!
//! Must not: block (atomics and short-held locks), use file paths or
//! anything unbounded as labels (provider names only), or hold secrets.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{LazyLock, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

mod families;
mod record;
mod render;
#[cfg(test)]
mod tests;

use families::{FormatLabel, ProviderLabel, ReloadLabel};

pub use families::LATENCY_BUCKETS;
pub use render::CONTENT_TYPE;

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

/// Extra liveness figures rendered with the counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Liveness {
    /// 1 when the pipeline is alive (what `/healthz` answers 200 for).
    pub up: bool,
    /// Seconds since the dispatcher last ticked (None: not started yet).
    pub heartbeat_age: Option<f64>,
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
            latency: Family::new_with_constructor(families::latency_histogram),
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
}
