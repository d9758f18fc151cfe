//! The peer provider `kind = "rembg-server"` (open-source rembg's own
//! server, `rembg s`) end to end: the real `cutout` binary against the fake
//! provider server on 127.0.0.1:0 (the real server is tests/real_rembg.rs,
//! opt-in), checked through the files it leaves, its audit lines and log,
//! and the fake's request log. Every error class, the outage pause and its
//! end, a proxy header, and kill -9 + restart.
//!
//! Must not: assert timings.

mod support;

use std::time::Duration;

use fake_provider::{Api, Config, Endpoint, FakeProvider, Fault, FaultRule};
use support::*;

const LONG: Duration = Duration::from_secs(60);

fn server_site(base: &str, provider: &str, inbox: &str) -> Site {
    Site::new(&format!(
        "[[inbox]]\npath = \"inbox\"\nsettle = \"100ms\"\nprovider = \"rs\"\n{inbox}\n\
         [providers.rs]\nkind = \"rembg-server\"\nbase_url = \"{base}\"\n\
         recheck_interval = \"200ms\"\ntimeout = \"10s\"\n{provider}\n",
    ))
}

#[test]
fn rembg_server_sends_model_fields_and_query_and_writes_the_png() {
    let fake = FakeProvider::start(Config::default());
    let site = server_site(
        &fake.base_url_rembg_server(),
        "",
        "options = { model = \"u2netp\", ppm = true, af = 200, bgc = [255, 255, 255, 255], extras = { x = 1 } }",
    );
    site.drop_file("a.jpg", &jpeg(160, 120, 300));
    run_ok(&site);
    let img = image::open(site.outbox().join("a.png"))
        .expect("png")
        .into_rgba8();
    assert_eq!(img.get_pixel(1, 1).0, [255, 255, 255, 255], "bgc filled");
    let calls = fake.rembg_server_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].model.as_deref(), Some("u2netp"));
    assert!(
        calls[0].fields.contains(&("ppm".into(), "true".into())),
        "{calls:?}"
    );
    assert!(
        calls[0].fields.contains(&("af".into(), "200".into())),
        "{calls:?}"
    );
    assert!(calls[0]
        .query
        .contains(&("bgc".into(), "255,255,255,255".into())));
    assert!(calls[0]
        .query
        .contains(&("extras".into(), "{\"x\":1}".into())));
    let ok = site.audit_events("succeeded");
    assert_eq!(ok[0]["provider"], "rs");
    assert!(ok[0]["credits"].is_null(), "no credits at a rembg server");
}

#[test]
fn rembg_server_default_model_is_u2net_and_a_plain_cutout_has_alpha() {
    let fake = FakeProvider::start(Config::default());
    let site = server_site(&fake.base_url_rembg_server(), "", "");
    site.drop_file("a.jpg", &jpeg(96, 64, 301));
    run_ok(&site);
    assert_cutout(&site.outbox().join("a.png"));
    assert_eq!(fake.rembg_server_calls()[0].model.as_deref(), Some("u2net"));
}

#[test]
fn rembg_server_422_fails_the_file_and_500_is_retried() {
    let fake = FakeProvider::start(Config::default());
    fake.fail_file("bad", "Value error, the picture is unusable");
    fake.inject(FaultRule::next(2, Fault::Status(500)).endpoint(Endpoint::RembgServerRemove));
    let site = server_site(&fake.base_url_rembg_server(), "", "");
    site.drop_file("bad.jpg", &jpeg(64, 48, 310));
    site.drop_file("good.jpg", &jpeg(64, 48, 311));
    let o = site.process(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(site.files(&site.outbox()), vec!["good.png"]);
    let r = reason(&site, "bad.jpg");
    assert_eq!(r["code"], "provider-rejected-file");
    assert!(
        r["reason"]
            .as_str()
            .unwrap_or("")
            .contains("the picture is unusable"),
        "{r}"
    );
    assert_eq!(r["attempts"], 1);
    assert!(site
        .audit_events("retry")
        .iter()
        .any(|e| e["code"] == "provider-server-error"));
}

#[test]
fn a_bad_rembg_server_option_is_a_start_error() {
    let site = server_site("http://127.0.0.1:9", "", "options = { af = 300 }");
    let o = site.cmd(&["check"]).output().expect("check");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("inbox[0].options") && err.contains("`af`"),
        "{err}"
    );
    // A key without auth_header says what it is for.
    let site = server_site("http://127.0.0.1:9", "api_key = \"x\"", "");
    let o = site.cmd(&["check"]).output().expect("check");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("auth_header"));
}

#[test]
fn an_unreachable_rembg_server_pauses_and_resumes_when_it_is_up() {
    let fake = FakeProvider::start(Config::default());
    let addr = fake.addr();
    let site = server_site(&fake.base_url_rembg_server(), "", "");
    fake.stop();
    for i in 0..3 {
        site.drop_file(&format!("p{i}.jpg"), &jpeg(64, 48, 320 + i));
    }
    let mut d = site.spawn_daemon();
    wait_until(LONG, "the outage noticed", || {
        d.log_text().contains("cannot be reached")
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        site.files(&site.failed()).is_empty(),
        "an outage fails nothing"
    );
    assert_eq!(site.files(&site.inbox()).len(), 3);
    assert_eq!(d.log_text().matches("cannot be reached").count(), 1);

    let back = FakeProvider::start_on(addr, Config::default());
    wait_until(LONG, "all done once the server is up", || {
        site.files(&site.outbox()).len() == 3
    });
    d.term();
    d.wait(LONG);
    assert!(d.log_text().contains("reachable again"));
    assert_eq!(back.charged_count(Api::RembgServer), 3);
    assert!(site
        .audit_events("succeeded")
        .iter()
        .all(|r| r["attempts"] == 1));
}

#[test]
fn rembg_server_behind_a_proxy_sends_the_header_and_pauses_on_401() {
    let secret = "proxy-secret-7f3a9";
    let mut cfg = Config::default();
    cfg.rembg_server.key = secret.into();
    let fake = FakeProvider::start(cfg);
    let site = server_site(
        &fake.base_url_rembg_server(),
        "auth_header = \"Authorization\"\nauth_scheme = \"Bearer\"\napi_key_file = \"proxy.key\"",
        "",
    );
    std::fs::write(site.root().join("proxy.key"), "wrong-secret-000").expect("key");
    site.drop_file("a.jpg", &jpeg(64, 48, 330));
    let mut d = site.spawn_daemon();
    wait_until(LONG, "the header refused", || fake.count_status(401) >= 1);
    std::thread::sleep(Duration::from_millis(600));
    assert!(site.files(&site.failed()).is_empty());
    assert!(d.log_text().contains("FIX THE KEY"), "{}", d.log_text());
    std::fs::write(site.root().join("proxy.key"), secret).expect("key");
    wait_until(LONG, "done after the fix", || {
        site.files(&site.outbox()).len() == 1
    });
    d.term();
    d.wait(LONG);
    no_secret_in(&site, secret, &[&d.log_text()]);
    no_secret_in(&site, "wrong-secret-000", &[&d.log_text()]);
}

#[test]
fn rembg_server_kill_9_then_restart_redoes_at_most_the_pictures_in_flight() {
    let fake = FakeProvider::start(Config::default().with_latency(Duration::from_millis(150)));
    let site = server_site(&fake.base_url_rembg_server(), "", "");
    let n = 8;
    for i in 0..n {
        site.drop_file(&format!("p{i:02}.jpg"), &jpeg(64, 48, 400 + i));
    }
    let mut d = site.spawn_daemon();
    wait_until(LONG, "some pictures done", || {
        site.files(&site.outbox()).len() >= 2
    });
    d.kill9();
    let mut d = site.spawn_daemon();
    wait_until(LONG, "all done after the restart", || {
        site.files(&site.outbox()).len() == n as usize
    });
    d.term();
    d.wait(LONG);
    // Concurrency 1 (the kind's default): at most one picture was at the
    // server when the daemon died.
    let doubly = fake.doubly_charged();
    assert!(doubly.len() <= 1, "done twice: {doubly:?}");
    let peak = {
        let reqs = requests(&fake, Endpoint::RembgServerRemove);
        let mut edges: Vec<(std::time::Instant, i32)> = Vec::new();
        for e in &reqs {
            edges.push((e.at, 1));
            edges.push((e.at + e.duration, -1));
        }
        edges.sort_by_key(|&(t, d)| (t, d));
        let (mut now, mut peak) = (0, 0);
        for (_, x) in edges {
            now += x;
            peak = peak.max(now);
        }
        peak
    };
    assert_eq!(peak, 1, "one picture at a time by default");
    assert_eq!(site.audit_events("succeeded").len(), n as usize);
}

#[test]
fn a_proxy_nobody_told_cutout_about_pauses_and_names_auth_header() {
    let mut cfg = Config::default();
    cfg.rembg_server.key = "proxy-secret-1".into();
    let fake = FakeProvider::start(cfg);
    let site = server_site(&fake.base_url_rembg_server(), "", "");
    site.drop_file("a.jpg", &jpeg(64, 48, 340));
    let mut d = site.spawn_daemon();
    wait_until(LONG, "the pause line", || {
        d.log_text().contains("set auth_header")
    });
    assert!(
        site.files(&site.failed()).is_empty(),
        "nothing fails in a pause"
    );
    assert_eq!(site.files(&site.inbox()), vec!["a.jpg"]);
    d.term();
    d.wait(LONG);
}
