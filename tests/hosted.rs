//! The hosted providers (rembg.com, verging.ai) end to end: the real
//! `cutout` binary against the fake provider server on 127.0.0.1:0, checked
//! through the files it leaves, its audit lines, and the fake's own request
//! log (what was sent, when, and what was charged).
//!
//! Must not: hard-code results the fake computes (expected bytes are asked
//! from the fake itself), or turn timing goals into timed assertions (only
//! lower bounds the client guarantees — gaps after a 429 — are asserted).

mod support;

use std::time::Duration;

use fake_provider::{
    Api, Config, Endpoint, FakeProvider, Fault, FaultRule, LogEntry, Opaque, RateLimit, RetryAfter,
};
use support::*;

const LONG: Duration = Duration::from_secs(60);
const RKEY: &str = "test-rembg-key";
const VKEY: &str = "test-verging-key";

// ---------------------------------------------------------------------------
// Set-up helpers.

/// A site whose only inbox uses provider `r` (rembg-com) or `v` (verging).
/// `provider` adds keys to the provider table, `inbox` to the inbox.
fn rembg_site(fake: &FakeProvider, provider: &str, inbox: &str) -> Site {
    let site = Site::new(&format!(
        "[[inbox]]\npath = \"inbox\"\nsettle = \"100ms\"\nprovider = \"r\"\n{inbox}\n\
         [providers.r]\nkind = \"rembg-com\"\nbase_url = \"{}\"\nusage_url = \"{}\"\n\
         api_key_file = \"rembg.key\"\n{}",
        fake.base_url_rembg(),
        fake.usage_url_rembg(),
        with_defaults(provider, &[]),
    ));
    std::fs::write(site.root().join("rembg.key"), format!("{RKEY}\n")).expect("key file");
    site
}

fn verging_site(fake: &FakeProvider, provider: &str, inbox: &str) -> Site {
    let site = Site::new(&format!(
        "[[inbox]]\npath = \"inbox\"\nsettle = \"100ms\"\nprovider = \"v\"\n{inbox}\n\
         [providers.v]\nkind = \"verging\"\nbase_url = \"{}\"\napi_key_file = \"verging.key\"\n{}",
        fake.base_url_verging(),
        with_defaults(provider, &[("poll_interval", "\"100ms\"")]),
    ));
    std::fs::write(site.root().join("verging.key"), format!("{VKEY}\n")).expect("key file");
    site
}

/// `extra` plus the test defaults for the keys it does not set.
fn with_defaults(extra: &str, more: &[(&str, &str)]) -> String {
    let mut out = format!("{extra}\n");
    let base = [
        ("requests_per_second", "50"),
        ("concurrency", "4"),
        ("timeout", "\"10s\""),
        ("recheck_interval", "\"200ms\""),
    ];
    for (k, v) in base.iter().chain(more) {
        let set = extra.lines().any(|l| {
            l.trim_start().starts_with(&format!("{k} "))
                || l.trim_start().starts_with(&format!("{k}="))
        });
        if !set {
            out.push_str(&format!("{k} = {v}\n"));
        }
    }
    out
}

/// Pictures sent to rembg (`POST /rmbg`; a paused provider's key-less
/// reachability probe is a `GET`).
fn uploads(fake: &FakeProvider) -> usize {
    fake.count(|e| e.endpoint == Endpoint::RembgRemove && e.method == "POST")
}

/// Ask the fake for the cut-out of `input` directly (what cutout must have
/// written untouched).
fn rembg_direct(fake: &FakeProvider, input: &[u8], name: &str, format: &str) -> Vec<u8> {
    // reqwest's TLS is rustls with the `ring` provider, installed by hand.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let part = reqwest::multipart::Part::bytes(input.to_vec())
            .file_name(name.to_string())
            .mime_str("image/jpeg")
            .expect("mime");
        let form = reqwest::multipart::Form::new()
            .part("image", part)
            .text("format", format.to_string());
        let resp = reqwest::Client::new()
            .post(format!("{}/rmbg", fake.base_url_rembg()))
            .header("x-api-key", RKEY)
            .multipart(form)
            .send()
            .await
            .expect("direct call");
        assert!(resp.status().is_success(), "{}", resp.status());
        resp.bytes().await.expect("body").to_vec()
    })
}

// ---------------------------------------------------------------------------
// Success, formats, options.

#[test]
fn rembg_result_is_written_untouched_when_the_format_matches() {
    let fake = FakeProvider::start(Config::default());
    let site = rembg_site(&fake, "", "");
    let a = jpeg(160, 120, 1);
    let b = jpeg(140, 100, 2);
    site.drop_file("a.jpg", &a);
    site.drop_file("sub/b.jpg", &b);
    run_ok(&site);

    let expect_a = rembg_direct(&fake, &a, "a.jpg", "png");
    let got_a = std::fs::read(site.outbox().join("a.png")).expect("a.png");
    assert_eq!(
        got_a, expect_a,
        "the provider's PNG must be written byte for byte"
    );
    assert_cutout(&site.outbox().join("sub/b.png"));
    assert_eq!(site.files(&site.archive()), vec!["a.jpg", "sub/b.jpg"]);

    let ok = site.audit_events("succeeded");
    assert_eq!(ok.len(), 2);
    assert!(ok
        .iter()
        .all(|r| r["provider"] == "r" && r["attempts"] == 1));
    // Exactly one charged request per picture.
    assert_eq!(fake.charged_count(Api::Rembg), 3); // two + the direct call above
    assert!(uploads(&fake) >= 2);
}

#[test]
fn rembg_result_is_converted_when_the_format_differs() {
    let fake = FakeProvider::start(Config::default());
    // Ask rembg for WebP while the inbox wants PNG.
    let site = rembg_site(&fake, "", "options = { format = \"webp\" }");
    site.drop_file("a.jpg", &jpeg(160, 120, 3));
    run_ok(&site);
    let out = site.outbox().join("a.png");
    let bytes = std::fs::read(&out).expect("a.png");
    assert!(bytes.starts_with(b"\x89PNG"), "converted to PNG");
    assert_cutout(&out);
}

#[test]
fn rembg_options_are_sent() {
    let fake = FakeProvider::start(Config::default());
    let site = rembg_site(&fake, "", "options = { w = 64, bg_color = \"#ffffff\" }");
    site.drop_file("a.jpg", &jpeg(200, 150, 4));
    run_ok(&site);
    let img = image::open(site.outbox().join("a.png"))
        .expect("png")
        .into_rgba8();
    assert_eq!(img.width(), 64, "w was sent");
    let corner = img.get_pixel(1, 1);
    assert_eq!(corner[3], 255, "bg_color filled the background");
    assert!(
        corner[0] > 240 && corner[1] > 240 && corner[2] > 240,
        "white: {corner:?}"
    );
}

#[test]
fn a_bad_option_is_refused_at_start_naming_the_key() {
    let fake = FakeProvider::start(Config::default());
    let site = rembg_site(&fake, "", "options = { w = \"big\" }");
    site.drop_file("a.jpg", &jpeg(100, 80, 5));
    let o = site.process(&[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("inbox[0].options") && err.contains("`w`"),
        "{err}"
    );
    assert!(fake.log().is_empty(), "nothing may be sent");
    // `cutout check` refuses it as a config error: key, option and file.
    let o = site.cmd(&["check"]).output().expect("check");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("`inbox[0].options`") && err.contains("`w`") && err.contains("cutout.toml"),
        "{err}"
    );
    assert!(
        fake.log().is_empty(),
        "check sends nothing for a bad config"
    );
}

#[test]
fn inbox_options_are_checked_for_the_provider_kind_by_check() {
    let fake = FakeProvider::start(Config::default());
    // verging takes no options at all.
    let site = verging_site(&fake, "", "options = { w = 64 }");
    let o = site.cmd(&["check"]).output().expect("check");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("`inbox[0].options`")
            && err.contains("`verging` takes no options")
            && err.contains("`w`")
            && err.contains("cutout.toml"),
        "{err}"
    );
    // rembg-com: a rule between two options, and an unknown option.
    for (options, want) in [
        ("{ mask = true, bg_color = \"red\" }", "bg_color"),
        ("{ exact_resize = true }", "exact_resize"),
        ("{ colour = \"red\" }", "unknown option `colour`"),
    ] {
        let site = rembg_site(&fake, "", &format!("options = {options}"));
        let o = site.cmd(&["check"]).output().expect("check");
        assert_eq!(o.status.code(), Some(3), "{options}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("`inbox[0].options`") && err.contains(want) && err.contains("cutout.toml"),
            "{options}: {err}"
        );
    }
    assert!(fake.log().is_empty(), "nothing may be sent");
}

#[test]
fn verging_presigned_upload_converts_to_webp_and_audits_the_job() {
    let fake = FakeProvider::start(Config::default());
    let site = verging_site(&fake, "presigned_upload = true", "output_format = \"webp\"");
    site.drop_file("a.jpg", &jpeg(160, 120, 6));
    run_ok(&site);
    let out = site.outbox().join("a.webp");
    assert!(std::fs::read(&out).expect("a.webp").starts_with(b"RIFF"));
    assert_cutout(&out);
    assert_eq!(fake.count_requests(Endpoint::VergingUploadPut), 1);
    assert_eq!(fake.charged_count(Api::Verging), 1);
    // The presigned PUT comes first; create-job still carries the picture
    // as its documented `image` part (the fake refuses it otherwise).
    let put = requests(&fake, Endpoint::VergingUploadPut);
    let created = requests(&fake, Endpoint::VergingCreateJob);
    assert_eq!(created.len(), 1);
    assert!(put[0].at < created[0].at);
    assert!(created[0].image_sha256.is_some());
    assert_eq!(created[0].image_sha256, put[0].image_sha256);
    let ok = site.audit_events("succeeded");
    assert_eq!(ok.len(), 1);
    let job = fake.job_ids()[0].to_string();
    assert_eq!(ok[0]["remote_job"], job.as_str());
    assert_eq!(ok[0]["credits"], 1.0);
}

#[test]
fn verging_png_result_is_written_untouched() {
    let fake = FakeProvider::start(Config::default());
    let site = verging_site(&fake, "", "");
    site.drop_file("a.jpg", &jpeg(120, 90, 7));
    run_ok(&site);
    let got = std::fs::read(site.outbox().join("a.png")).expect("a.png");
    // Fetch the same result from the fake's storage.
    let id = fake.job_ids()[0];
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let want = rt.block_on(async {
        reqwest::get(format!("{}/files/{id}.png", fake.base_url()))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body")
    });
    assert_eq!(got, want.to_vec());
    // The documented flow: credits check, create, poll, download.
    assert!(fake.count_requests(Endpoint::VergingMe) >= 1);
    assert_eq!(fake.count_requests(Endpoint::VergingCreateJob), 1);
    assert!(fake.count_requests(Endpoint::VergingJobs) >= 1);
}

// ---------------------------------------------------------------------------
// Rate limits: one 429 slows the whole provider down.

/// Check the client's promises in the fake's log: after every 429, nothing
/// more for at least `gap` (`Retry-After`, or the halved rate).
fn assert_cooldowns(fake: &FakeProvider, gap: Duration) {
    let reqs = requests(fake, Endpoint::RembgRemove);
    let t0 = reqs.first().map(|e| e.at);
    for e in &reqs {
        let ms = t0.map(|t| e.at.duration_since(t).as_millis()).unwrap_or(0);
        eprintln!("{ms:>6} ms  {:?} {:?}", e.status, e.file_name);
    }
    let first = reqs
        .iter()
        .position(|e| e.status == Some(429))
        .expect("a 429 happened");
    for (i, e) in reqs.iter().enumerate().skip(first) {
        if e.status != Some(429) {
            continue;
        }
        if let Some(next) = reqs.get(i + 1) {
            let d = next.at.duration_since(e.at);
            assert!(
                d + Duration::from_millis(10) >= gap,
                "request {} went out {d:?} after a 429 (cool-down {gap:?})",
                next.seq
            );
        }
    }
}

#[test]
fn rate_limited_with_retry_after_everyone_waits() {
    let fake = FakeProvider::start(Config::default());
    fake.set_rate_limit(
        Api::Rembg,
        Some(RateLimit::per_second(2).with_retry_after(RetryAfter::Seconds)),
    );
    let site = rembg_site(&fake, "requests_per_second = 8", "");
    let n = 8;
    for i in 0..n {
        site.drop_file(&format!("p{i}.jpg"), &jpeg(64, 48, 100 + i));
    }
    run_ok(&site);
    assert_eq!(site.files(&site.outbox()).len(), n as usize);
    assert!(site.files(&site.failed()).is_empty());
    // The fake's Retry-After is at least 1 s.
    assert_cooldowns(&fake, Duration::from_secs(1));
    let n429 = fake.count_429();
    assert!((1..=3).contains(&n429), "{n429} 429s: a retry storm");
    // 429s cost no attempts.
    assert!(site
        .audit_events("succeeded")
        .iter()
        .all(|r| r["attempts"] == 1));
}

#[test]
fn rate_limited_without_retry_after_backs_off_and_slows_down() {
    // Behaviour only (the spacing at the fake is a timing figure: the
    // `ratelimit` benchmark section measures it): a 429 slows the gate down
    // (its rate gauge drops below the configured 8/s) and most requests
    // after the first 429 are not refused again.
    let fake = FakeProvider::start(Config::default());
    fake.set_rate_limit(Api::Rembg, Some(RateLimit::per_second(2)));
    let site = rembg_site(&fake, "requests_per_second = 8", "");
    metrics::listen_on_any_port(&site);
    let mut d = site.spawn_daemon();
    let addr = metrics::listen_addr(&d, LONG);
    let n = 8;
    for i in 0..n {
        site.drop_file(&format!("p{i}.jpg"), &jpeg(64, 48, 200 + i));
    }
    let gauge = "cutout_provider_rate_per_second{provider=\"r\"}";
    let seen = metrics::sample_until(&addr, gauge, LONG, "all pictures done", || {
        site.files(&site.outbox()).len() == n as usize
    });
    let lowest = seen.iter().copied().fold(f64::INFINITY, f64::min);
    d.term();
    d.wait(LONG);
    let reqs = requests(&fake, Endpoint::RembgRemove);
    let first = reqs
        .iter()
        .position(|e| e.status == Some(429))
        .expect("429");
    assert!(
        lowest < 8.0,
        "the gate never slowed down below the configured 8/s (lowest {lowest})"
    );
    let after = reqs.len() - first;
    let n429 = fake.count_429();
    assert!(
        n429 <= after / 2 + 1,
        "{n429} of {after} requests after the first 429 were refused"
    );
}

#[test]
fn verging_honours_an_http_date_retry_after_across_all_its_calls() {
    let fake = FakeProvider::start(Config::default());
    fake.set_rate_limit(
        Api::Verging,
        Some(RateLimit::per_second(3).with_retry_after(RetryAfter::HttpDate)),
    );
    let site = verging_site(&fake, "requests_per_second = 12", "");
    for i in 0..4 {
        site.drop_file(&format!("p{i}.jpg"), &jpeg(64, 48, 250 + i));
    }
    run_ok(&site);
    assert_eq!(site.files(&site.outbox()).len(), 4);
    // Credits checks, job creation and polls share one limit and one
    // cool-down: after a 429 (an HTTP date at least 1 s ahead), no API call
    // at all for that long.
    let mut api: Vec<LogEntry> = fake
        .log()
        .into_iter()
        .filter(|e| {
            matches!(
                e.endpoint,
                Endpoint::VergingMe | Endpoint::VergingCreateJob | Endpoint::VergingJobs
            )
        })
        .collect();
    api.sort_by_key(|e| e.at);
    assert!(
        api.iter().any(|e| e.status == Some(429)),
        "the limit was hit"
    );
    for (i, e) in api.iter().enumerate() {
        if e.status == Some(429) {
            if let Some(next) = api.get(i + 1) {
                let d = next.at.duration_since(e.at);
                assert!(
                    d + Duration::from_millis(50) >= Duration::from_secs(1),
                    "{d:?}"
                );
            }
        }
    }
    assert!(fake.doubly_charged().is_empty());
}

#[test]
fn a_slow_answer_times_out_and_is_retried() {
    let fake = FakeProvider::start(Config::default());
    fake.inject(
        FaultRule::next(1, Fault::Delay(Duration::from_secs(3))).endpoint(Endpoint::RembgRemove),
    );
    let site = rembg_site(&fake, "timeout = \"400ms\"", "");
    site.drop_file("a.jpg", &jpeg(64, 48, 260));
    run_ok(&site);
    assert_cutout(&site.outbox().join("a.png"));
    let retries = site.audit_events("retry");
    assert_eq!(retries.len(), 1);
    assert_eq!(retries[0]["code"], "provider-timeout");
}

// ---------------------------------------------------------------------------
// Quota and keys: pause, keep queued, resume by itself.

#[test]
fn a_402_at_job_creation_pauses_until_credits_show_again() {
    let fake = FakeProvider::start(Config::default());
    fake.inject(FaultRule::next(1, Fault::QuotaExhausted).endpoint(Endpoint::VergingCreateJob));
    let site = verging_site(&fake, "", "");
    site.drop_file("a.jpg", &jpeg(64, 48, 270));
    let mut d = site.spawn_daemon();
    wait_until(LONG, "the picture done", || {
        site.files(&site.outbox()).len() == 1
    });
    d.term();
    d.wait(LONG);
    assert!(site.files(&site.failed()).is_empty());
    assert_eq!(fake.count_status(402), 1);
    assert_eq!(fake.charged_count(Api::Verging), 1);
    let log = d.log_text();
    assert_eq!(log.matches("out of credits").count(), 1, "{log}");
    assert!(log.contains("resuming"), "{log}");
    let ok = site.audit_events("succeeded");
    assert_eq!(ok[0]["attempts"], 1, "the paused attempt was given back");
}

#[test]
fn verging_jobs_already_paid_are_collected_while_paused() {
    // 3 credits, 4 pictures at once, jobs take 3 s: three jobs are created
    // and charged, the fourth submission finds no credits and the provider
    // pauses while the three are still running. A pause stops new
    // submissions only: the three paid jobs are polled and downloaded
    // while the account stays empty; the fourth waits for the recharge.
    let fake = FakeProvider::start(Config::default().with_job_processing(Duration::from_secs(3)));
    fake.set_verging_credits(3);
    let site = verging_site(&fake, "", "");
    for i in 0..4 {
        site.drop_file(&format!("p{i}.jpg"), &jpeg(64, 48, 480 + i));
    }
    let mut d = site.spawn_daemon();
    wait_until(LONG, "the pause for credits", || {
        d.log_text().contains("out of credits")
    });
    assert_eq!(
        fake.count_requests(Endpoint::VergingFile),
        0,
        "the paid jobs were still running when the provider paused"
    );
    // Output written, then the input archived: wait for both.
    wait_until(LONG, "the three paid jobs collected while paused", || {
        site.files(&site.outbox()).len() == 3 && site.files(&site.archive()).len() == 3
    });
    assert_eq!(fake.verging_credits(), 0, "still no credits");
    assert_eq!(fake.charged_count(Api::Verging), 3);
    assert_eq!(
        site.files(&site.inbox()).len(),
        1,
        "the fourth stays queued"
    );
    assert!(site.files(&site.failed()).is_empty());

    fake.set_verging_credits(5);
    wait_until(LONG, "the fourth done after the recharge", || {
        site.files(&site.outbox()).len() == 4
    });
    d.term();
    d.wait(LONG);
    assert_eq!(fake.charged_count(Api::Verging), 4);
    assert!(fake.doubly_charged().is_empty());
    assert!(site.files(&site.failed()).is_empty());
}

#[test]
fn quota_exhaustion_pauses_and_resumes_by_itself() {
    let fake = FakeProvider::start(Config::default());
    fake.set_rembg_credits(2, 0);
    let site = rembg_site(&fake, "concurrency = 1", "");
    for i in 0..5 {
        site.drop_file(&format!("p{i}.jpg"), &jpeg(64, 48, 300 + i));
    }
    let mut d = site.spawn_daemon();
    wait_until(LONG, "two done and the quota answer", || {
        site.files(&site.outbox()).len() == 2
            && fake.count(|e| e.fault.as_deref() == Some("quota")) >= 1
    });
    let sent = uploads(&fake);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        site.files(&site.failed()).is_empty(),
        "nothing fails during a pause"
    );
    assert_eq!(site.files(&site.inbox()).len(), 3, "still queued");
    assert_eq!(uploads(&fake), sent, "no pictures are sent while paused");
    assert!(
        fake.count_requests(Endpoint::RembgUsage) >= 2,
        "credits are re-checked"
    );
    let log = d.log_text();
    assert_eq!(
        log.matches("out of credits").count(),
        1,
        "one clear line:\n{log}"
    );
    assert!(log.contains("RECHARGE"), "{log}");

    fake.set_rembg_credits(100, 0);
    wait_until(LONG, "all five done after the recharge", || {
        site.files(&site.outbox()).len() == 5
    });
    assert!(d.log_text().contains("resuming"));
    d.term();
    d.wait(LONG);
    assert!(site.files(&site.failed()).is_empty());
    assert!(site
        .audit_events("succeeded")
        .iter()
        .all(|r| r["attempts"] == 1));
}

#[test]
fn verging_without_credits_submits_nothing_and_a_batch_leaves_files_queued() {
    let fake = FakeProvider::start(Config::default());
    fake.set_verging_credits(0);
    let site = verging_site(&fake, "", "");
    site.drop_file("a.jpg", &jpeg(64, 48, 400));
    site.drop_file("b.jpg", &jpeg(64, 48, 401));
    let o = site.process(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(fake.count_requests(Endpoint::VergingCreateJob), 0);
    assert!(site.files(&site.failed()).is_empty());
    assert_eq!(site.files(&site.inbox()), vec!["a.jpg", "b.jpg"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("recharge")
            || String::from_utf8_lossy(&o.stderr).contains("RECHARGE")
    );

    fake.set_verging_credits(10);
    run_ok(&site);
    assert_eq!(site.files(&site.outbox()), vec!["a.png", "b.png"]);
    assert_eq!(fake.verging_credits(), 8);
}

#[test]
fn a_bad_key_pauses_and_a_fixed_key_file_resumes() {
    let fake = FakeProvider::start(Config::default());
    let site = rembg_site(&fake, "", "");
    let wrong = "sk-wrong-key-0123456789";
    std::fs::write(site.root().join("rembg.key"), wrong).expect("key");
    for i in 0..3 {
        site.drop_file(&format!("p{i}.jpg"), &jpeg(64, 48, 500 + i));
    }
    let mut d = site.spawn_daemon();
    wait_until(LONG, "the key refused", || fake.count_status(401) >= 1);
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        site.files(&site.failed()).is_empty(),
        "a bad key fails nothing"
    );
    assert_eq!(site.files(&site.inbox()).len(), 3);
    let log = d.log_text();
    assert_eq!(log.matches("refused the API key").count(), 1, "{log}");
    assert!(log.contains("FIX THE KEY"), "{log}");
    let refused = fake.count(|e| e.endpoint == Endpoint::RembgRemove && e.status == Some(401));
    assert!(refused <= 4, "{refused} pictures sent with a refused key");

    std::fs::write(site.root().join("rembg.key"), RKEY).expect("key");
    wait_until(LONG, "done after the key was fixed", || {
        site.files(&site.outbox()).len() == 3
    });
    d.term();
    d.wait(LONG);
    no_secret_in(&site, wrong, &[&d.log_text()]);
}

#[test]
fn an_unreachable_provider_pauses_and_resumes_when_it_is_back() {
    let fake = FakeProvider::start(Config::default());
    let addr = fake.addr();
    let site = verging_site(&fake, "", "");
    fake.stop();
    for i in 0..3 {
        site.drop_file(&format!("p{i}.jpg"), &jpeg(64, 48, 550 + i));
    }
    let mut d = site.spawn_daemon();
    wait_until(LONG, "the outage noticed", || {
        d.log_text().contains("cannot be reached")
    });
    // Longer than the whole retry budget of one picture.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        site.files(&site.failed()).is_empty(),
        "an outage fails nothing"
    );
    assert_eq!(site.files(&site.inbox()).len(), 3);
    let log = d.log_text();
    assert_eq!(log.matches("cannot be reached").count(), 1, "{log}");

    let back = FakeProvider::start_on(addr, Config::default());
    wait_until(LONG, "all done once the provider is back", || {
        site.files(&site.outbox()).len() == 3
    });
    d.term();
    d.wait(LONG);
    assert!(d.log_text().contains("reachable again"));
    assert_eq!(back.charged_count(Api::Verging), 3);
    assert!(site
        .audit_events("succeeded")
        .iter()
        .all(|r| r["attempts"] == 1));
}

#[test]
fn a_missing_key_is_a_start_error_naming_provider_and_variable() {
    let fake = FakeProvider::start(Config::default());
    let site = Site::new(&format!(
        "[[inbox]]\npath = \"inbox\"\nprovider = \"shop\"\n[providers.shop]\nkind = \"rembg-com\"\nbase_url = \"{}\"\n",
        fake.base_url_rembg()
    ));
    let o = site
        .cmd(&["process"])
        .env_remove("REMBG_API_KEY")
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("shop") && err.contains("REMBG_API_KEY"),
        "{err}"
    );
    // The same key from the environment works.
    site.drop_file("a.jpg", &jpeg(64, 48, 600));
    let o = site
        .cmd(&["process"])
        .env("REMBG_API_KEY", RKEY)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    no_secret_in(&site, RKEY, &[&text(&o)]);
}

#[test]
fn a_bare_key_file_name_is_read_from_the_credentials_directory() {
    let fake = FakeProvider::start(Config::default());
    let site = verging_site(&fake, "", "");
    std::fs::remove_file(site.root().join("verging.key")).expect("rm");
    let creds = tempfile::tempdir().expect("creds");
    std::fs::write(creds.path().join("verging.key"), VKEY).expect("cred");
    site.drop_file("a.jpg", &jpeg(64, 48, 700));
    let o = site
        .cmd(&["process"])
        .env("CREDENTIALS_DIRECTORY", creds.path())
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(site.files(&site.outbox()), vec!["a.png"]);
}

#[test]
fn check_shows_reachability_key_and_credits() {
    let fake = FakeProvider::start(Config::default());
    fake.set_rembg_credits(40, 2);
    fake.set_verging_credits(17);
    let site = Site::new(&format!(
        "[[inbox]]\npath = \"inbox\"\nprovider = \"r\"\n\
         [providers.r]\nkind = \"rembg-com\"\nbase_url = \"{}\"\nusage_url = \"{}\"\napi_key = \"{RKEY}\"\n\
         [providers.v]\nkind = \"verging\"\nbase_url = \"{}\"\napi_key_file = \"v.key\"\n",
        fake.base_url_rembg(),
        fake.usage_url_rembg(),
        fake.base_url_verging()
    ));
    std::fs::write(site.root().join("v.key"), VKEY).expect("key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(site.config(), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let o = site.cmd(&["check"]).output().expect("check");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(out.contains("reachable"), "{out}");
    assert!(out.contains("key accepted"), "{out}");
    assert!(out.contains("42 credits left"), "{out}");
    assert!(out.contains("17 credits left"), "{out}");
    assert!(out.contains("readable by other users"), "{out}");
    no_secret_in(&site, VKEY, &[&text(&o)]);
    assert!(!text(&o).contains(RKEY));

    // A refused key and an unreachable provider are both NOT OK.
    std::fs::write(site.root().join("v.key"), "nope-nope").expect("key");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let cfg = std::fs::read_to_string(site.config()).expect("cfg");
    site.write_config(&cfg.replacen(&fake.base_url_rembg(), &dead, 1).replace(
        &fake.usage_url_rembg(),
        &format!("{dead}/api/membership-usage"),
    ));
    let o = site.cmd(&["check"]).output().expect("check");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(out.contains("REFUSED"), "{out}");
    assert!(out.contains("NOT reachable"), "{out}");
}

// ---------------------------------------------------------------------------
// Faults: transient ones are retried, permanent ones fail one file only.

/// The most requests the fake was working on at one moment.
fn peak_at_provider(entries: &[LogEntry]) -> usize {
    let mut edges: Vec<(std::time::Instant, i32)> = Vec::new();
    for e in entries {
        edges.push((e.at, 1));
        edges.push((e.at + e.duration, -1));
    }
    // Ends before starts at the same instant: touching is not overlapping.
    edges.sort_by_key(|&(t, d)| (t, d));
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    peak as usize
}

#[test]
fn queue_concurrency_bounds_the_pictures_at_the_provider() {
    // The queue prepares and finishes pictures around the ones at the
    // engine (2 × concurrency workers), but the provider never sees more
    // than `[queue] concurrency` at once, even when its own limit is higher.
    let fake = FakeProvider::start(Config::default().with_latency(Duration::from_millis(150)));
    let site = Site::new(&format!(
        "[queue]\nconcurrency = 3\n\
         [[inbox]]\npath = \"inbox\"\nsettle = \"100ms\"\nprovider = \"r\"\n\
         [providers.r]\nkind = \"rembg-com\"\nbase_url = \"{}\"\nusage_url = \"{}\"\n\
         api_key_file = \"rembg.key\"\n{}",
        fake.base_url_rembg(),
        fake.usage_url_rembg(),
        with_defaults("concurrency = 16\nrequests_per_second = 1000", &[]),
    ));
    std::fs::write(site.root().join("rembg.key"), format!("{RKEY}\n")).expect("key file");
    for i in 0..12 {
        site.drop_file(&format!("p{i:02}.jpg"), &jpeg(64, 48, 900 + i));
    }
    run_ok(&site);
    assert_eq!(site.files(&site.outbox()).len(), 12);
    let sent = requests(&fake, Endpoint::RembgRemove);
    assert_eq!(sent.len(), 12);
    let peak = peak_at_provider(&sent);
    // Never more than 3; and all 3 slots were used (12 pictures, all ready
    // at once, 150 ms each).
    assert_eq!(peak, 3, "peak requests at the provider: {peak}");
}

#[test]
fn a_5xx_burst_is_retried() {
    let fake = FakeProvider::start(Config::default());
    fake.fail_next(Api::Rembg, 2, 503);
    fake.fail_next(Api::Rembg, 1, 500);
    let site = rembg_site(&fake, "concurrency = 1", "");
    site.drop_file("a.jpg", &jpeg(64, 48, 800));
    site.drop_file("b.jpg", &jpeg(64, 48, 801));
    run_ok(&site);
    assert_eq!(site.files(&site.outbox()), vec!["a.png", "b.png"]);
    let retries = site.audit_events("retry");
    assert_eq!(retries.len(), 3, "{retries:?}");
    assert!(retries.iter().all(|r| r["code"] == "provider-server-error"));
}

#[test]
fn dropped_connections_and_cut_bodies_are_retried() {
    let fake = FakeProvider::start(Config::default());
    fake.inject(FaultRule::next(2, Fault::DropConnection).api(Api::Rembg));
    fake.inject(FaultRule::next(1, Fault::Truncate).endpoint(Endpoint::RembgRemove));
    let site = rembg_site(&fake, "concurrency = 1", "");
    site.drop_file("a.jpg", &jpeg(96, 64, 900));
    run_ok(&site);
    assert_cutout(&site.outbox().join("a.png"));
    assert_eq!(fake.count_dropped(), 2);
    let codes: Vec<String> = site
        .audit_events("retry")
        .iter()
        .map(|r| r["code"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        codes.iter().any(|c| c == "provider-connection-lost"),
        "{codes:?}"
    );
    assert!(codes.iter().any(|c| c == "provider-truncated"), "{codes:?}");
}

#[test]
fn a_400_fails_that_file_only_with_the_providers_message() {
    let fake = FakeProvider::start(Config::default());
    fake.fail_file("bad", "Image is corrupt: bad huffman table");
    let site = rembg_site(&fake, "", "");
    site.drop_file("bad.jpg", &jpeg(64, 48, 1000));
    site.drop_file("good.jpg", &jpeg(64, 48, 1001));
    let o = site.process(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(site.files(&site.outbox()), vec!["good.png"]);
    let r = reason(&site, "bad.jpg");
    assert_eq!(r["code"], "provider-rejected-file");
    assert!(
        r["reason"]
            .as_str()
            .unwrap_or("")
            .contains("bad huffman table"),
        "{r}"
    );
    assert_eq!(r["attempts"], 1, "a 400 is not retried");
    assert_eq!(for_file(&fake, Endpoint::RembgRemove, "bad"), 1);
}

#[test]
fn garbage_is_retried_once_then_fails_as_a_bad_result() {
    let fake = FakeProvider::start(Config::default());
    fake.inject(FaultRule::next(1, Fault::GarbageHtml).file_contains("glitch"));
    fake.inject(FaultRule::always(Fault::GarbageBytes).file_contains("junk"));
    fake.inject(FaultRule::always(Fault::NoAlpha(Opaque::Jpeg)).file_contains("flat"));
    let site = rembg_site(&fake, "", "");
    site.drop_file("glitch.jpg", &jpeg(64, 48, 1100));
    site.drop_file("junk.jpg", &jpeg(64, 48, 1101));
    site.drop_file("flat.jpg", &jpeg(64, 48, 1102));
    let o = site.process(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(site.files(&site.outbox()), vec!["glitch.png"]);
    for f in ["junk.jpg", "flat.jpg"] {
        let r = reason(&site, f);
        assert_eq!(r["code"], "provider-bad-result", "{r}");
        assert_eq!(r["attempts"], 2, "{r}");
    }
    assert!(reason(&site, "flat.jpg")["reason"]
        .as_str()
        .unwrap_or("")
        .contains("no alpha"));
    assert_eq!(for_file(&fake, Endpoint::RembgRemove, "junk"), 2);
}

#[test]
fn a_failed_verging_job_is_not_paid_for_twice() {
    let fake = FakeProvider::start(Config::default());
    fake.inject(FaultRule::always(Fault::JobFails).file_contains("doomed"));
    let site = verging_site(&fake, "", "");
    site.drop_file("doomed.jpg", &jpeg(64, 48, 1200));
    site.drop_file("fine.jpg", &jpeg(64, 48, 1201));
    let o = site.process(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(site.files(&site.outbox()), vec!["fine.png"]);
    let r = reason(&site, "doomed.jpg");
    assert_eq!(r["code"], "provider-job-failed");
    assert!(
        r["reason"].as_str().unwrap_or("").contains("charged"),
        "{r}"
    );
    assert_eq!(for_file(&fake, Endpoint::VergingCreateJob, "doomed"), 1);
    assert!(fake.doubly_charged().is_empty());
}

#[test]
fn a_verging_job_that_never_finishes_times_out() {
    let fake = FakeProvider::start(Config::default());
    fake.inject(FaultRule::always(Fault::JobNeverFinishes).file_contains("stuck"));
    let site = verging_site(&fake, "job_timeout = \"1s\"", "");
    site.drop_file("stuck.jpg", &jpeg(64, 48, 1300));
    site.drop_file("fine.jpg", &jpeg(64, 48, 1301));
    let o = site.process(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(site.files(&site.outbox()), vec!["fine.png"]);
    let r = reason(&site, "stuck.jpg");
    assert_eq!(r["code"], "provider-job-timeout");
    assert_eq!(for_file(&fake, Endpoint::VergingCreateJob, "stuck"), 1);
    assert!(
        for_file(&fake, Endpoint::VergingJobs, "stuck") >= 3,
        "it was polled"
    );
}

#[test]
fn a_verging_job_timeout_counts_from_its_creation_across_a_restart() {
    // job_timeout 3 s, polled every 100 ms. The daemon is killed once the
    // job is being polled and started again after the 3 s are over: the
    // job gets one last look, not a fresh 3 s (≈ 30 more polls).
    let fake = FakeProvider::start(Config::default());
    fake.inject(FaultRule::always(Fault::JobNeverFinishes).file_contains("stuck"));
    let site = verging_site(&fake, "job_timeout = \"3s\"", "");
    site.drop_file("stuck.jpg", &jpeg(64, 48, 1350));
    let mut d = site.spawn_daemon();
    wait_until(LONG, "the job created and polled", || {
        for_file(&fake, Endpoint::VergingJobs, "stuck") >= 1
    });
    d.kill9();
    let created = requests(&fake, Endpoint::VergingCreateJob);
    assert_eq!(created.len(), 1);
    wait_until(LONG, "job_timeout to pass while cutout is down", || {
        created[0].at.elapsed() > Duration::from_millis(3500)
    });
    let polls_before = for_file(&fake, Endpoint::VergingJobs, "stuck");
    let mut d = site.spawn_daemon();
    wait_until(LONG, "stuck.jpg in failed/", || {
        site.failed().join("stuck.jpg").is_file()
    });
    d.term();
    d.wait(LONG);
    assert_eq!(reason(&site, "stuck.jpg")["code"], "provider-job-timeout");
    assert_eq!(
        fake.count_requests(Endpoint::VergingCreateJob),
        1,
        "never paid twice"
    );
    let after = for_file(&fake, Endpoint::VergingJobs, "stuck") - polls_before;
    assert!(
        (1..=3).contains(&after),
        "{after} polls after the restart: the time limit started again"
    );
}

#[test]
fn verging_garbage_download_is_retried_without_a_new_job() {
    let fake = FakeProvider::start(Config::default());
    fake.inject(
        FaultRule::next(1, Fault::GarbageBytes)
            .endpoint(Endpoint::VergingFile)
            .file_contains("a"),
    );
    let site = verging_site(&fake, "", "");
    site.drop_file("a.jpg", &jpeg(64, 48, 1400));
    run_ok(&site);
    assert_cutout(&site.outbox().join("a.png"));
    assert_eq!(fake.count_requests(Endpoint::VergingCreateJob), 1);
    assert_eq!(fake.count_requests(Endpoint::VergingFile), 2);
}

// ---------------------------------------------------------------------------
// Crash safety: kill -9 while polling, restart, no second payment.

#[test]
fn kill_9_while_polling_then_restart_pays_once() {
    let fake = FakeProvider::start(Config::default().with_job_processing(Duration::from_secs(3)));
    let site = verging_site(&fake, "", "");
    let n = 3;
    for i in 0..n {
        site.drop_file(&format!("p{i}.jpg"), &jpeg(64, 48, 1500 + i));
    }
    let mut d = site.spawn_daemon();
    wait_until(LONG, "every job created and polled", || {
        let jobs = fake.job_ids();
        jobs.len() == n as usize
            && jobs.iter().all(|id| {
                fake.count(|e| e.endpoint == Endpoint::VergingJobs && e.job_id == Some(*id)) >= 1
            })
    });
    d.kill9();
    assert!(site.files(&site.outbox()).is_empty(), "killed mid-poll");
    let mut d = site.spawn_daemon();
    wait_until(LONG, "all done after the restart", || {
        site.files(&site.outbox()).len() == n as usize
    });
    d.term();
    d.wait(LONG);
    assert!(
        fake.doubly_charged().is_empty(),
        "{:?}",
        fake.doubly_charged()
    );
    assert_eq!(fake.count_requests(Endpoint::VergingCreateJob), n as usize);
    assert_eq!(fake.charged_count(Api::Verging), n as usize);
    let ok = site.audit_events("succeeded");
    assert_eq!(ok.len(), n as usize);
    assert!(ok.iter().all(|r| r["remote_job"].is_string()));
    assert!(d.log_text().contains("resuming the remembered verging job"));
}

#[test]
fn a_remembered_paid_job_is_collected_while_paused_for_credits() {
    // A job is created and paid for, then the daemon is killed mid-poll.
    // It starts again with the account empty: a new picture (at rest, so
    // taken first) finds no credits and pauses the provider before the
    // remembered one has settled. A pause stops new submissions only: the
    // paid job is collected during the pause; the new picture waits for
    // the recharge.
    let fake = FakeProvider::start(Config::default().with_job_processing(Duration::from_secs(3)));
    let site = verging_site(&fake, "", "");
    let cfg = std::fs::read_to_string(site.config()).expect("config");
    site.write_config(&cfg.replace("settle = \"100ms\"", "settle = \"2s\""));
    let paid = site.drop_file("paid.jpg", &jpeg(64, 48, 1600));
    let mut d = site.spawn_daemon();
    wait_until(LONG, "the job created and polled", || {
        let jobs = fake.job_ids();
        jobs.len() == 1
            && fake.count(|e| e.endpoint == Endpoint::VergingJobs && e.job_id == Some(jobs[0])) >= 1
    });
    d.kill9();
    assert!(site.files(&site.outbox()).is_empty(), "killed mid-poll");
    fake.set_verging_credits(0);
    let now = std::time::SystemTime::now();
    let f = std::fs::File::options()
        .write(true)
        .open(&paid)
        .expect("open");
    f.set_modified(now)
        .expect("touch: settles for the full 2 s");
    let new = site.drop_file("new.jpg", &jpeg(64, 48, 1601));
    let f = std::fs::File::options()
        .write(true)
        .open(&new)
        .expect("open");
    f.set_modified(now - Duration::from_secs(3600))
        .expect("at rest");

    let mut d = site.spawn_daemon();
    wait_until(LONG, "the pause for credits", || {
        d.log_text().contains("out of credits")
    });
    wait_until(LONG, "the paid job collected while paused", || {
        site.files(&site.outbox()) == ["paid.png"] && site.files(&site.archive()) == ["paid.jpg"]
    });
    assert_eq!(fake.verging_credits(), 0, "still no credits");
    assert_eq!(site.files(&site.inbox()), ["new.jpg"], "the new one waits");
    assert!(d.log_text().contains("resuming the remembered verging job"));

    fake.set_verging_credits(5);
    wait_until(LONG, "the new one done after the recharge", || {
        site.files(&site.outbox()).len() == 2
    });
    d.term();
    d.wait(LONG);
    assert!(
        fake.doubly_charged().is_empty(),
        "{:?}",
        fake.doubly_charged()
    );
    assert_eq!(fake.charged_count(Api::Verging), 2);
    assert!(site.files(&site.failed()).is_empty());
}
