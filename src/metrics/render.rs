//! Reading the figures back: the Prometheus text exposition `/metrics`
//! serves (the registry, then the liveness figures of this scrape) and the
//! [`Snapshot`] the status line and `/healthz` show.
//!
//! Must not: change a figure, or fail a scrape because one metric refused
//! to encode (that is logged and the rest is served).

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use super::families::register;
use super::{Liveness, Metrics, ProviderFigures, Snapshot};

/// The `Content-Type` of what [`Metrics::render`] returns (text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

impl Metrics {
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
