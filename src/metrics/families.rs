//! Metric families: the label sets, and every metric's exported name and
//! help text, registered in the order `/metrics` shows them (dashboards read
//! these names: they do not change).
//!
//! Must not: record values (`record.rs` does) or encode text (`render.rs`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

use super::Metrics;

/// Upper bounds (seconds) of the provider latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The one label of the per-provider metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ProviderLabel {
    pub provider: String,
}

/// The one label of `cutout_reloads_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReloadLabel {
    pub result: &'static str,
}

/// The one label of `cutout_outputs_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct FormatLabel {
    pub format: &'static str,
}

pub(super) fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

pub(super) fn label(provider: &str) -> ProviderLabel {
    ProviderLabel {
        provider: provider.to_string(),
    }
}

/// `registry.register` adds the final full stop to the help text itself.
pub(super) fn register(r: &mut Registry, name: &str, help: &str, metric: impl Metric) {
    r.register(name, help.trim_end_matches('.'), metric);
}

impl Metrics {
    /// Register every metric, in the order `/metrics` shows them.
    pub(super) fn registered(mut self) -> Metrics {
        let mut r = std::mem::take(&mut self.registry);
        self.register_files(&mut r);
        self.register_queue(&mut r);
        self.register_providers(&mut r);
        self.registry = r;
        self
    }

    /// The file outcome counters.
    fn register_files(&self, r: &mut Registry) {
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
                "Files already done earlier, gone before they were processed, or left to another instance that took their job over (shared state).",
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
    }

    /// The queue's shape, then reloads and finished outputs.
    fn register_queue(&self, r: &mut Registry) {
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
    }

    /// The per-provider families (label `provider`).
    fn register_providers(&self, r: &mut Registry) {
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
    }
}
