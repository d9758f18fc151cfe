//! Section `autorate` of the load benchmark (issue 14): `requests_per_second
//! = "auto"` against the fake with an undeclared per-second limit (429 with
//! `Retry-After` beyond it, no rate headers). Reports the achieved rate
//! overall and the share of 429 answers.
//!
//! Must not: assert (figures go to the report; BENCHMARKS.md holds them).

use std::time::Duration;

use fake_provider::{Config, FakeProvider, RateLimit, RetryAfter};

use super::{link_into, removals, window, Bench, Knobs, Pool, Report, SiteCfg, KEY};

/// `BENCH_AUTORATE` = "limit:files,…" (default "5:100,20:100").
pub(super) fn runs() -> Vec<(u32, usize)> {
    super::env_str("BENCH_AUTORATE")
        .unwrap_or_else(|| "5:100,20:100".to_string())
        .split(',')
        .filter_map(|p| {
            let (l, n) = p.split_once(':')?;
            Some((l.trim().parse().ok()?, n.trim().parse().ok()?))
        })
        .collect()
}

pub(super) fn autorate(k: &Knobs, r: &mut Report, pool: &Pool) {
    r.line(format!(
        "\n## Learned rate (`requests_per_second = \"auto\"`, default concurrency and max; provider allows N/s without saying so, 429 + `Retry-After` beyond; {} ms per picture)\n",
        k.latency.as_millis()
    ));
    r.line("*Achieved* = charged pictures / (first request → last answer); *429 share* = 429 answers / all requests.\n");
    r.line("| undeclared limit /s | pictures | achieved /s | goal | requests | 429s | 429 share | goal | wall s | charged twice |");
    r.line("|---:|---:|---:|---|---:|---:|---:|---|---:|---:|");
    for (limit, files) in runs() {
        let n = files.min(pool.files.len());
        let fake = FakeProvider::start(
            Config::default()
                .with_key(KEY)
                .with_latency(k.latency)
                .with_rate_limit(Some(
                    RateLimit::per_second(limit).with_retry_after(RetryAfter::Seconds),
                )),
        );
        let c = SiteCfg {
            concurrency: 16,
            rps: 1.0,
            settle: Duration::from_millis(250),
        };
        let b = Bench::new(&k.dir, &fake, &c);
        // Auto mode with its default concurrency and max_requests_per_second.
        let cfg_path = b.root.join("cutout.toml");
        let text = super::read(&cfg_path)
            .replace("concurrency = 16\nrequests_per_second = 1\n", "")
            .replace("requests_per_second = 1\n", "");
        std::fs::write(&cfg_path, text).expect("config");
        link_into(pool, n, &b.inbox());
        let run = b.process(&[]);
        let log = fake.log();
        let (win, charged) = window(&log);
        let reqs = removals(&log);
        let limited = reqs.iter().filter(|e| e.status == Some(429)).count();
        let achieved = charged as f64 / win.as_secs_f64().max(1e-9);
        let share = limited as f64 / reqs.len().max(1) as f64;
        let goal_rate = 0.9 * limit as f64;
        let ok = if run.status.success() && b.count(&b.outbox()) == n {
            ""
        } else {
            " (INCOMPLETE)"
        };
        r.line(format!(
            "| {limit} | {n}{ok} | {achieved:.2} | {} ≥ {goal_rate:.1} | {} | {limited} | {:.1}% | {} ≤ 5% | {:.1} | {} |",
            if achieved >= goal_rate { "met" } else { "MISSED" },
            reqs.len(),
            share * 100.0,
            if share <= 0.05 { "met" } else { "MISSED" },
            run.wall.as_secs_f64(),
            fake.doubly_charged().len(),
        ));
    }
}
