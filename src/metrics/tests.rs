//! Tests of the metrics: names, types and values as `/metrics` shows them.

use super::*;
use crate::job::{Code, FileResult, Reason};
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
    assert!(text
        .contains("# HELP cutout_inboxes Inboxes being watched.\n# TYPE cutout_inboxes gauge\n"));
    assert!(!text.contains(".."), "{text}");
    // No heartbeat yet: no heartbeat age.
    let text = m.render(Liveness::default());
    assert!(!text.contains("cutout_heartbeat_age_seconds"), "{text}");
    assert!(text.ends_with("\ncutout_up 0\n"), "{text}");
}

/// Metrics after a few of everything: 7 files seen (2 succeeded, 1
/// duplicate, 1 rejected, 1 failed, 1 skipped, 1 later), a queue of 3
/// settling + 2 queued, provider `rembg` paused with 2 429s and one retry,
/// and seven latencies at `local` (two of them invalid).
fn fed() -> Metrics {
    let m = Metrics::new();
    m.register_provider("local");
    for r in [
        FileResult::Succeeded,
        FileResult::Succeeded,
        FileResult::Duplicate,
        FileResult::Rejected(Reason::new(Code::NotAnImage, "x")),
        FileResult::Failed(Reason::new(Code::EngineFailed, "y")),
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
    m
}

fn rendered(m: &Metrics) -> BTreeMap<String, f64> {
    parse(&m.render(Liveness {
        up: true,
        heartbeat_age: Some(0.1),
    }))
}

#[test]
fn counts_render_and_parse_back() {
    let m = fed();
    let p = rendered(&m);
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
    assert_eq!(p["cutout_up"], 1.0);
    assert_eq!(p["cutout_heartbeat_age_seconds"], 0.1);

    let s = m.snapshot();
    assert_eq!((s.settling, s.queued, s.in_flight, s.inboxes), (3, 2, 1, 2));
    assert_eq!(s.done(), 5);
}

#[test]
fn provider_figures_render_and_parse_back() {
    let p = rendered(&fed());
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
