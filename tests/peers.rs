//! The peer provider remove.bg (`kind = "remove-bg"`) end to end, with the
//! `cutout check` line of both peers (rembg's own server has
//! tests/rembg_server.rs): the real `cutout` binary against the fake
//! provider server on 127.0.0.1:0, checked through the files it leaves, its
//! audit lines and log, and the fake's request log (what was sent, what was
//! charged). Every error class, pause and resume, and kill -9 + restart.
//!
//! Must not: assert timings (only orderings the client guarantees: no 429
//! once remove.bg's first window has told the budget).

mod support;

use std::time::Duration;

use fake_provider::{Api, Config, Endpoint, FakeProvider, Fault, FaultRule, MegapixelWindow};
use support::*;

const LONG: Duration = Duration::from_secs(60);
const KEY: &str = "test-remove-bg-key";

fn remove_bg_site(fake: &FakeProvider, provider: &str, inbox: &str) -> Site {
    let site = Site::new(&format!(
        "[[inbox]]\npath = \"inbox\"\nsettle = \"100ms\"\nprovider = \"bg\"\n{inbox}\n\
         [providers.bg]\nkind = \"remove-bg\"\nbase_url = \"{}\"\napi_key_file = \"bg.key\"\n\
         recheck_interval = \"200ms\"\ntimeout = \"10s\"\n{provider}\n",
        fake.base_url_remove_bg(),
    ));
    std::fs::write(site.root().join("bg.key"), format!("{KEY}\n")).expect("key file");
    site
}

// ---------------------------------------------------------------------------
// remove.bg

#[test]
fn remove_bg_cutouts_carry_the_charged_credits_and_the_account_is_read_first() {
    let fake = FakeProvider::start(Config::default());
    fake.set_remove_bg_credits(10.0, 0);
    let site = remove_bg_site(&fake, "", "");
    site.drop_file("a.jpg", &jpeg(160, 120, 1));
    site.drop_file("sub/b.jpg", &jpeg(140, 100, 2));
    run_ok(&site);
    assert_cutout(&site.outbox().join("a.png"));
    assert_cutout(&site.outbox().join("sub/b.png"));
    let ok = site.audit_events("succeeded");
    assert_eq!(ok.len(), 2);
    assert!(
        ok.iter()
            .all(|r| r["credits"] == 1.0 && r["provider"] == "bg"),
        "{ok:?}"
    );
    assert_eq!(fake.remove_bg_credits().0, 8.0);
    assert_eq!(fake.charged_count(Api::RemoveBg), 2);
    // The account is read before the first picture.
    let first = fake
        .log()
        .into_iter()
        .min_by_key(|e| e.seq)
        .expect("requests");
    assert_eq!(first.endpoint, Endpoint::RemoveBgAccount);
}

#[test]
fn remove_bg_options_are_sent_and_preview_sizes_use_free_calls() {
    let fake = FakeProvider::start(Config::default());
    fake.set_remove_bg_credits(5.0, 1);
    let site = remove_bg_site(
        &fake,
        "",
        "options = { size = \"preview\", bg_color = \"ffffff\", type = \"product\", crop = false }",
    );
    site.drop_file("a.jpg", &jpeg(200, 150, 3));
    site.drop_file("b.jpg", &jpeg(200, 150, 4));
    run_ok(&site);
    for f in ["a.png", "b.png"] {
        let img = image::open(site.outbox().join(f))
            .expect("png")
            .into_rgba8();
        let corner = img.get_pixel(1, 1);
        assert_eq!(corner[3], 255, "bg_color filled the background");
        assert!(
            corner[0] > 240 && corner[1] > 240 && corner[2] > 240,
            "{corner:?}"
        );
    }
    // One free call, then a quarter credit.
    let mut credits: Vec<f64> = site
        .audit_events("succeeded")
        .iter()
        .map(|r| r["credits"].as_f64().expect("credits"))
        .collect();
    credits.sort_by(f64::total_cmp);
    assert_eq!(credits, vec![0.0, 0.25]);
    assert_eq!(fake.remove_bg_credits(), (4.75, 0));
}

#[test]
fn a_bad_remove_bg_option_is_a_start_error_naming_the_key() {
    let fake = FakeProvider::start(Config::default());
    for (options, want) in [
        ("{ size = \"huge\" }", "`size`"),
        ("{ format = \"zip\" }", "`format`"),
        ("{ crop_margin = \"80%\" }", "`crop_margin`"),
        ("{ shadow = true }", "unknown option `shadow`"),
    ] {
        let site = remove_bg_site(&fake, "", &format!("options = {options}"));
        site.drop_file("a.jpg", &jpeg(64, 48, 5));
        let o = site.process(&[]);
        assert_eq!(o.status.code(), Some(3), "{options}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("inbox[0].options") && err.contains(want),
            "{options}: {err}"
        );
    }
    assert!(fake.log().is_empty(), "nothing may be sent");
}

#[test]
fn a_remove_bg_400_fails_that_file_with_the_title() {
    let fake = FakeProvider::start(Config::default());
    fake.fail_file("bad", "Could not identify foreground in image");
    let site = remove_bg_site(&fake, "", "");
    site.drop_file("bad.jpg", &jpeg(64, 48, 10));
    site.drop_file("good.jpg", &jpeg(64, 48, 11));
    let o = site.process(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(site.files(&site.outbox()), vec!["good.png"]);
    let r = reason(&site, "bad.jpg");
    assert_eq!(r["code"], "provider-rejected-file");
    assert!(
        r["reason"]
            .as_str()
            .unwrap_or("")
            .contains("Could not identify foreground"),
        "{r}"
    );
    assert_eq!(r["attempts"], 1, "a 400 is not retried");
    assert_eq!(for_file(&fake, Endpoint::RemoveBgRemove, "bad"), 1);
    assert_eq!(
        fake.charged_count(Api::RemoveBg),
        1,
        "a refused call costs nothing"
    );
}

#[test]
fn remove_bg_5xx_and_cut_answers_are_retried() {
    let fake = FakeProvider::start(Config::default());
    fake.inject(FaultRule::next(2, Fault::Status(503)).endpoint(Endpoint::RemoveBgRemove));
    fake.inject(FaultRule::next(1, Fault::Status(500)).endpoint(Endpoint::RemoveBgRemove));
    fake.inject(FaultRule::next(1, Fault::Truncate).endpoint(Endpoint::RemoveBgRemove));
    let site = remove_bg_site(&fake, "concurrency = 1", "");
    site.drop_file("a.jpg", &jpeg(64, 48, 20));
    run_ok(&site);
    assert_cutout(&site.outbox().join("a.png"));
    let codes: Vec<String> = site
        .audit_events("retry")
        .iter()
        .map(|r| r["code"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        codes
            .iter()
            .filter(|c| *c == "provider-server-error")
            .count(),
        3,
        "{codes:?}"
    );
    assert!(codes.iter().any(|c| c == "provider-truncated"), "{codes:?}");
}

#[test]
fn remove_bg_402_pauses_with_one_recharge_line_and_resumes() {
    let fake = FakeProvider::start(Config::default());
    fake.set_remove_bg_credits(2.0, 0);
    let site = remove_bg_site(&fake, "concurrency = 1", "");
    for i in 0..4 {
        site.drop_file(&format!("p{i}.jpg"), &jpeg(64, 48, 30 + i));
    }
    let mut d = site.spawn_daemon();
    wait_until(LONG, "two done and the 402", || {
        site.files(&site.outbox()).len() == 2 && fake.count_status(402) >= 1
    });
    let sent = requests(&fake, Endpoint::RemoveBgRemove).len();
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        site.files(&site.failed()).is_empty(),
        "nothing fails in a pause"
    );
    assert_eq!(site.files(&site.inbox()).len(), 2, "still queued");
    assert_eq!(
        requests(&fake, Endpoint::RemoveBgRemove).len(),
        sent,
        "nothing sent while paused"
    );
    assert!(
        fake.count_requests(Endpoint::RemoveBgAccount) >= 2,
        "credits are re-checked"
    );
    let log = d.log_text();
    assert_eq!(log.matches("out of credits").count(), 1, "{log}");
    assert!(log.contains("RECHARGE"), "{log}");

    fake.set_remove_bg_credits(50.0, 0);
    wait_until(LONG, "all four after the recharge", || {
        site.files(&site.outbox()).len() == 4
    });
    d.term();
    d.wait(LONG);
    assert!(d.log_text().contains("resuming"));
    assert!(site
        .audit_events("succeeded")
        .iter()
        .all(|r| r["attempts"] == 1));
}

#[test]
fn remove_bg_403_pauses_until_the_key_file_is_fixed() {
    let fake = FakeProvider::start(Config::default());
    let site = remove_bg_site(&fake, "", "");
    let wrong = "sk-wrong-remove-bg-key-42";
    std::fs::write(site.root().join("bg.key"), wrong).expect("key");
    for i in 0..3 {
        site.drop_file(&format!("p{i}.jpg"), &jpeg(64, 48, 40 + i));
    }
    let mut d = site.spawn_daemon();
    wait_until(LONG, "the key refused", || fake.count_status(403) >= 1);
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        site.files(&site.failed()).is_empty(),
        "a bad key fails nothing"
    );
    assert_eq!(site.files(&site.inbox()).len(), 3);
    let log = d.log_text();
    assert_eq!(log.matches("refused the API key").count(), 1, "{log}");
    assert!(log.contains("FIX THE KEY"), "{log}");
    // The account check refused it: no picture was sent with a bad key.
    assert_eq!(requests(&fake, Endpoint::RemoveBgRemove).len(), 0);

    std::fs::write(site.root().join("bg.key"), KEY).expect("key");
    wait_until(LONG, "done after the fix", || {
        site.files(&site.outbox()).len() == 3
    });
    d.term();
    d.wait(LONG);
    no_secret_in(&site, wrong, &[&d.log_text()]);
}

#[test]
fn remove_bg_paces_by_its_rate_headers_so_only_the_first_window_sees_429s() {
    let fake = FakeProvider::start(Config::default());
    let window = Duration::from_secs(2);
    fake.set_remove_bg_window(Some(MegapixelWindow { limit: 5, window }));
    let site = remove_bg_site(&fake, "concurrency = 4\nrequests_per_second = 100", "");
    let n = 14;
    for i in 0..n {
        site.drop_file(&format!("p{i:02}.jpg"), &jpeg(64, 48, 100 + i));
    }
    run_ok(&site);
    assert_eq!(site.files(&site.outbox()).len(), n as usize);
    let reqs = requests(&fake, Endpoint::RemoveBgRemove);
    let t0 = reqs[0].at;
    for e in &reqs {
        eprintln!(
            "{:>6} ms {:?}",
            e.at.duration_since(t0).as_millis(),
            e.status
        );
    }
    // 14 pictures at 5 per 2-s window need at least three windows; every
    // 429 came in the first one, before the budget was known.
    for e in reqs.iter().filter(|e| e.status == Some(429)) {
        assert!(
            e.at.duration_since(t0) < window,
            "a 429 {:?} after the first request",
            e.at.duration_since(t0)
        );
    }
    assert!(fake.count_429() <= 4, "{} 429s", fake.count_429());
    assert!(site
        .audit_events("succeeded")
        .iter()
        .all(|r| r["attempts"] == 1));
}

#[test]
fn check_shows_remove_bg_credits_and_the_rembg_server() {
    let fake = FakeProvider::start(Config::default());
    fake.set_remove_bg_credits(42.0, 7);
    let site = remove_bg_site(
        &fake,
        &format!(
            "[providers.rs]\nkind = \"rembg-server\"\nbase_url = \"{}\"\n",
            fake.base_url_rembg_server()
        ),
        "",
    );
    let o = site.cmd(&["check"]).output().expect("check");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(out.contains("42 credits left, 7 free API calls"), "{out}");
    assert!(out.contains("GET /openapi.json"), "{out}");
    no_secret_in(&site, KEY, &[&text(&o)]);
}

#[test]
fn kill_9_mid_batch_then_restart_charges_at_most_the_pictures_in_flight() {
    let fake = FakeProvider::start(Config::default().with_latency(Duration::from_millis(150)));
    let site = remove_bg_site(&fake, "concurrency = 2\nrequests_per_second = 100", "");
    let n = 10;
    for i in 0..n {
        site.drop_file(&format!("p{i:02}.jpg"), &jpeg(64, 48, 200 + i));
    }
    let mut d = site.spawn_daemon();
    wait_until(LONG, "some pictures done", || {
        site.files(&site.outbox()).len() >= 3
    });
    d.kill9();
    let d = site.spawn_daemon();
    wait_until(LONG, "all done after the restart", || {
        site.files(&site.outbox()).len() == n as usize
    });
    d.term();
    let mut d = d;
    d.wait(LONG);
    assert_eq!(site.files(&site.archive()).len(), n as usize);
    let doubly = fake.doubly_charged();
    // Only pictures whose paid answer was on its way at the kill (≤ 2).
    assert!(doubly.len() <= 2, "charged twice: {doubly:?}");
    assert!(fake.charged_count(Api::RemoveBg) <= n as usize + 2);
    assert_eq!(site.audit_events("succeeded").len(), n as usize);
}

#[test]
fn remove_bg_pictures_sent_before_the_first_answer_are_the_only_429s() {
    // Four pictures go out before the first answer tells the budget (3 per
    // second): one of them meets a 429; after that the budget is known and
    // no later window sees one.
    let fake = FakeProvider::start(Config::default().with_latency(Duration::from_millis(100)));
    let window = Duration::from_secs(1);
    fake.set_remove_bg_window(Some(MegapixelWindow { limit: 3, window }));
    let site = remove_bg_site(&fake, "concurrency = 4\nrequests_per_second = 100", "");
    let n = 10;
    for i in 0..n {
        site.drop_file(&format!("q{i:02}.jpg"), &jpeg(64, 48, 500 + i));
    }
    run_ok(&site);
    assert_eq!(site.files(&site.outbox()).len(), n as usize);
    let reqs = requests(&fake, Endpoint::RemoveBgRemove);
    let t0 = reqs[0].at;
    for e in &reqs {
        eprintln!(
            "{:>6} ms {:?}",
            e.at.duration_since(t0).as_millis(),
            e.status
        );
    }
    let late: Vec<u128> = reqs
        .iter()
        .filter(|e| e.status == Some(429) && e.at.duration_since(t0) >= window)
        .map(|e| e.at.duration_since(t0).as_millis())
        .collect();
    assert!(
        late.is_empty(),
        "429s after the first window at {late:?} ms"
    );
    assert!(fake.count_429() <= 1, "{} 429s", fake.count_429());
    assert!(site
        .audit_events("succeeded")
        .iter()
        .all(|r| r["attempts"] == 1));
}

#[test]
fn remove_bg_rate_headers_hold_the_gates_rate_to_what_is_left_of_the_window() {
    // cutout is set to a fixed 100/s; the window allows 3 pictures per 3 s.
    // Every answer's X-RateLimit-Remaining/Reset holds the gate's rate (the
    // gauge) to what is left until the reset, far below 100/s. Nothing else
    // could lower it that far: one picture at a time meets no 429 (the
    // budget is known from the first answer), and a 429 only halves.
    let fake = FakeProvider::start(Config::default());
    let window = Duration::from_secs(3);
    fake.set_remove_bg_window(Some(MegapixelWindow { limit: 3, window }));
    let site = remove_bg_site(&fake, "concurrency = 1\nrequests_per_second = 100", "");
    metrics::listen_on_any_port(&site);
    let mut d = site.spawn_daemon();
    let addr = metrics::listen_addr(&d, LONG);
    let n = 6;
    for i in 0..n {
        site.drop_file(&format!("h{i:02}.jpg"), &jpeg(64, 48, 700 + i));
    }
    let gauge = "cutout_provider_rate_per_second{provider=\"bg\"}";
    let seen = metrics::sample_until(&addr, gauge, LONG, "all pictures done", || {
        site.files(&site.outbox()).len() == n as usize
    });
    d.term();
    d.wait(LONG);
    assert!(fake.count_429() <= 1, "{} 429s", fake.count_429());
    let lowest = seen.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(
        lowest < 10.0,
        "the gate's rate never followed the rate headers: {seen:?}"
    );
}
