//! `requests_per_second = "auto"` end to end (issue 14): the real `cutout`
//! binary against the fake provider with an undeclared per-second limit,
//! checked through the fake's request log (arrival times) and the daemon's
//! `/metrics` (the learned-rate gauge).
//!
//! Must not: assert durations of the run (timing goals are in the
//! `autorate` benchmark section); only spacing the client guarantees or
//! counts are asserted.

mod support;

use std::time::Duration;

use fake_provider::{Api, Config, Endpoint, FakeProvider, LogEntry, RateLimit, RetryAfter};
use support::*;

const LONG: Duration = Duration::from_secs(90);
const KEY: &str = "test-rembg-key";

fn site(fake: &FakeProvider, provider: &str, head: &str) -> Site {
    let site = Site::new(&format!(
        "{head}\n[queue]\nconcurrency = 8\n\
         [[inbox]]\npath = \"inbox\"\nsettle = \"100ms\"\nprovider = \"r\"\n\
         [providers.r]\nkind = \"rembg-com\"\nbase_url = \"{}\"\nusage_url = \"{}\"\n\
         api_key_file = \"rembg.key\"\nrequests_per_second = \"auto\"\n{provider}\n",
        fake.base_url_rembg(),
        fake.usage_url_rembg(),
    ));
    std::fs::write(site.root().join("rembg.key"), format!("{KEY}\n")).expect("key file");
    site
}

fn drop_n(site: &Site, n: u32, seed: u32) {
    for i in 0..n {
        site.drop_file(&format!("p{i}.jpg"), &jpeg(64, 48, seed + i));
    }
}

fn uploads(fake: &FakeProvider) -> Vec<LogEntry> {
    let mut v: Vec<LogEntry> = fake
        .log()
        .into_iter()
        .filter(|e| e.endpoint == Endpoint::RembgRemove && e.method == "POST")
        .collect();
    v.sort_by_key(|e| e.at);
    v
}

fn run_ok(site: &Site) {
    let o = site.process(&[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn auto_mode_goes_faster_than_its_start_rate_when_nothing_refuses() {
    let fake = FakeProvider::start(Config::default().with_key(KEY));
    let site = site(&fake, "max_requests_per_second = 50", "");
    let n = 40;
    drop_n(&site, n, 100);
    run_ok(&site);
    assert_eq!(site.files(&site.outbox()).len(), n as usize);
    let reqs = uploads(&fake);
    // The start rate is 2/s: requests 500 ms apart. Once it has learned,
    // the last 20 requests need less than 19 × 500 ms.
    let last = &reqs[reqs.len() - 20..];
    let span = last[19].at.duration_since(last[0].at);
    assert!(
        span < Duration::from_millis(19 * 500),
        "the last 20 requests took {span:?}: still at the start rate"
    );
    assert_eq!(fake.count_429(), 0);
}

#[test]
fn auto_mode_never_exceeds_max_requests_per_second() {
    let fake = FakeProvider::start(Config::default().with_key(KEY));
    let site = site(&fake, "max_requests_per_second = 4", "");
    drop_n(&site, 16, 200);
    run_ok(&site);
    let reqs = uploads(&fake);
    assert_eq!(reqs.len(), 16);
    for w in reqs.windows(2) {
        let d = w[1].at.duration_since(w[0].at);
        assert!(
            d + Duration::from_millis(10) >= Duration::from_millis(250),
            "two requests {d:?} apart: above 4/s"
        );
    }
}

#[test]
fn a_429_halves_the_learned_rate_and_retry_after_is_honoured() {
    let fake = FakeProvider::start(Config::default().with_key(KEY));
    // Undeclared 3/s (no rate headers), Retry-After in seconds on a 429.
    fake.set_rate_limit(
        Api::Rembg,
        Some(RateLimit::per_second(3).with_retry_after(RetryAfter::Seconds)),
    );
    let site = site(
        &fake,
        "max_requests_per_second = 50",
        "[http]\nlisten = \"127.0.0.1:0\"\n",
    );
    let mut d = site.spawn_daemon();
    let addr = metrics::listen_addr(&d, LONG);
    let n = 40;
    drop_n(&site, n, 300);
    let gauge = "cutout_provider_rate_per_second{provider=\"r\"}";
    let seen = metrics::sample_until(&addr, gauge, LONG, "all pictures done", || {
        site.files(&site.outbox()).len() == n as usize
    });
    // In auto mode only a 429 lowers the learned rate (the exact halving
    // is unit-tested in provider::rate; the gauge is synced once a second,
    // so growth between samples blurs it).
    let halved = seen.windows(2).any(|w| w[1] < w[0]);
    d.term();
    d.wait(LONG);
    assert!(fake.count_429() >= 1, "the limit was never met");
    assert!(halved, "the learned-rate gauge never dropped: {seen:?}");
    // After each 429 (Retry-After ≥ 1 s), nothing reached the fake before it expired.
    let reqs = uploads(&fake);
    for (i, e) in reqs.iter().enumerate() {
        if e.status != Some(429) {
            continue;
        }
        if let Some(next) = reqs.get(i + 1) {
            let gap = next.at.duration_since(e.at);
            assert!(
                gap + Duration::from_millis(10) >= Duration::from_secs(1),
                "request {} went out {gap:?} after a 429 with Retry-After: 1",
                next.seq
            );
        }
    }
}
