//! The review page's actions through the real binary: `cutout run` with
//! `[http] listen` on 127.0.0.1:0, the fake provider server for pictures
//! that fail and succeed on demand, plain HTTP/1.1 requests over TCP, and
//! checks on the files, the audit lines, `cutout status` and the exports.
//! Token checks, cross-site POSTs refused, the refusal to start, retry,
//! redo + confirm, approve/flag, and an interrupted retry finished by the
//! next start.
//!
//! Must not: assert timings.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use fake_provider::{Config, FakeProvider};
use support::*;

const LONG: Duration = Duration::from_secs(60);
const TOKEN: &str = "s3cret-review-token-0123456789";

/// A site whose inbox uses the fake rembg server `rs` (the built-in
/// `local` provider is there too, for redo).
fn site(fake: &FakeProvider, http: &str, inbox: &str) -> Site {
    Site::new(&format!(
        "[[inbox]]\npath = \"inbox\"\nsettle = \"100ms\"\nprovider = \"rs\"\n{inbox}\n\
         [providers.rs]\nkind = \"rembg-server\"\nbase_url = \"{}\"\n\
         recheck_interval = \"200ms\"\ntimeout = \"10s\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n{http}\n",
        fake.base_url_rembg_server()
    ))
}

/// The address the daemon listens on, from its log.
fn http_addr(d: &Daemon) -> String {
    let mut addr = String::new();
    wait_until(LONG, "the http endpoint to listen", || {
        let log = d.log_text();
        match log
            .lines()
            .find_map(|l| l.split("listening on http://").nth(1))
        {
            Some(a) => {
                addr = a.trim().to_string();
                true
            }
            None => false,
        }
    });
    addr
}

/// An answer: status, head (lower-cased names), body.
struct Answer {
    code: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.code, self.body))
    }
}

/// One HTTP/1.1 request over a fresh TCP connection.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(LONG)).expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    Answer {
        code,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

fn get(addr: &str, path: &str) -> Answer {
    request(addr, "GET", path, &[], "")
}

/// The CSRF value of token-less (loopback) use.
fn open_csrf(addr: &str) -> String {
    let s = get(addr, "/api/session").json();
    s["csrf"]
        .as_str()
        .expect("csrf in /api/session")
        .to_string()
}

/// POST an action the way the page does without a token.
fn act(addr: &str, csrf: &str, path: &str, user: &str) -> Answer {
    request(
        addr,
        "POST",
        path,
        &[("X-Cutout-Csrf", csrf), ("X-Cutout-User", user)],
        "",
    )
}

/// The job id of the latest `event` line for `input`.
/// Wait until job `job` is finished in the state: its audit line is
/// written just before its last commit, and until that commit a redo
/// answers 409 (not finished yet). The probe names no provider that
/// exists, so it changes nothing.
fn wait_job_finished(addr: &str, csrf: &str, job: i64) {
    wait_until(LONG, "the job's last commit", || {
        act(
            addr,
            csrf,
            &format!("/api/jobs/{job}/redo?provider=nope"),
            "probe",
        )
        .code
            != 409
    });
}

fn job_of(site: &Site, event: &str, input: &str) -> i64 {
    site.audit_events(event)
        .iter()
        .rev()
        .find(|l| l["input"] == input)
        .and_then(|l| l["job"].as_i64())
        .unwrap_or_else(|| panic!("no {event} line for {input}: {:#?}", site.audit()))
}

fn stop(d: &mut Daemon) {
    d.term();
    let st = d.wait(LONG);
    assert!(st.success(), "daemon exit {st:?}\n{}", d.log_text());
}

#[test]
fn actions_on_a_public_address_without_a_token_refuse_to_start() {
    let site = Site::new("[http]\nlisten = \"0.0.0.0:0\"\nactions = true\n");
    let o = site.cmd(&["run"]).output().expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("http.token_file"), "{err}");
    assert!(err.contains("cutout.toml"), "names the config file: {err}");

    // A token file that cannot be read is named too, and so is the key.
    let site = Site::new(
        "[http]\nlisten = \"127.0.0.1:0\"\nactions = true\ntoken_file = \"missing.token\"\n",
    );
    let o = site.cmd(&["run"]).output().expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("http.token_file") && err.contains("missing.token"),
        "{err}"
    );
}

#[test]
fn actions_are_off_by_default_and_the_exports_still_answer() {
    let fake = FakeProvider::start(Config::default());
    let site = site(&fake, "", "");
    site.drop_file("a.jpg", &jpeg(64, 48, 501));
    let mut d = site.spawn_daemon();
    let addr = http_addr(&d);
    wait_until(LONG, "a.jpg to succeed", || {
        !site.audit_events("succeeded").is_empty()
    });
    let job = job_of(&site, "succeeded", "a.jpg");
    let a = request(&addr, "POST", &format!("/api/jobs/{job}/approve"), &[], "");
    assert_eq!(a.code, 404, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "actions-off");
    assert_eq!(get(&addr, "/api/session").json()["actions"], false);
    let csv = get(&addr, "/export.csv");
    assert_eq!(csv.code, 200);
    assert_eq!(csv.body, "job,mark,by,at,inbox,input,outcome,output\n");
    stop(&mut d);
}

#[test]
fn a_token_is_required_and_cross_site_posts_are_refused() {
    let fake = FakeProvider::start(Config::default());
    let site = site(&fake, "actions = true\ntoken_file = \"review.token\"\n", "");
    std::fs::write(site.root().join("review.token"), format!("{TOKEN}\n")).expect("token");
    site.drop_file("a.jpg", &jpeg(64, 48, 502));
    let mut d = site.spawn_daemon();
    let addr = http_addr(&d);
    wait_until(LONG, "a.jpg to succeed", || {
        !site.audit_events("succeeded").is_empty()
    });
    let path = format!("/api/jobs/{}/approve", job_of(&site, "succeeded", "a.jpg"));
    let bearer = format!("Bearer {TOKEN}");

    let a = request(&addr, "POST", &path, &[], "");
    assert_eq!(
        (a.code, a.json()["error"]["code"].clone()),
        (401, "token-required".into())
    );
    let a = request(
        &addr,
        "POST",
        &path,
        &[("Authorization", "Bearer wrong-token-000000000")],
        "",
    );
    assert_eq!(
        (a.code, a.json()["error"]["code"].clone()),
        (401, "bad-token".into())
    );
    // The right token from another site's page: refused.
    let evil = [
        ("Authorization", bearer.as_str()),
        ("Origin", "http://evil.example"),
    ];
    let a = request(&addr, "POST", &path, &evil, "");
    assert_eq!(
        (a.code, a.json()["error"]["code"].clone()),
        (403, "cross-site".into())
    );
    let evil = [
        ("Authorization", bearer.as_str()),
        ("Sec-Fetch-Site", "cross-site"),
    ];
    assert_eq!(request(&addr, "POST", &path, &evil, "").code, 403);
    assert!(
        site.audit_events("review-approve").is_empty(),
        "nothing refused was done"
    );

    // The token as a header works.
    let a = request(&addr, "POST", &path, &[("Authorization", &bearer)], "");
    assert_eq!(a.code, 200, "{}", a.body);

    // The login form: a wrong token, then the right one for a cookie.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let a = request(&addr, "POST", "/login", &form, "token=nope&name=ann");
    assert_eq!(a.code, 401);
    let a = request(
        &addr,
        "POST",
        "/login",
        &form,
        &format!("token={TOKEN}&name=ann"),
    );
    assert_eq!(a.code, 303, "{}", a.body);
    let cookie = a
        .head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    assert!(
        a.head.contains("httponly") && a.head.contains("samesite=strict"),
        "{}",
        a.head
    );
    // A cookie alone (what a cross-site form would send) is not enough.
    let a = request(&addr, "POST", &path, &[("Cookie", &cookie)], "");
    assert_eq!(
        (a.code, a.json()["error"]["code"].clone()),
        (403, "csrf".into())
    );
    let s = request(&addr, "GET", "/api/session", &[("Cookie", &cookie)], "").json();
    assert_eq!(s["who"], "ann");
    let csrf = s["csrf"].as_str().expect("csrf").to_string();
    let flag = path.replace("approve", "flag");
    let a = request(
        &addr,
        "POST",
        &flag,
        &[("Cookie", &cookie), ("X-Cutout-Csrf", &csrf)],
        "",
    );
    assert_eq!(a.code, 200, "{}", a.body);
    let flags = site.audit_events("review-flag");
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0]["by"], "ann");
    stop(&mut d);

    // The token is nowhere but in its file.
    for f in walkdir::WalkDir::new(site.root()).into_iter().flatten() {
        if f.file_type().is_file() && !f.path().ends_with("review.token") {
            let t = std::fs::read(f.path()).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&t).contains(TOKEN),
                "{} holds the token",
                f.path().display()
            );
        }
    }
}

#[test]
fn approve_and_flag_are_audited_listed_by_status_and_exported() {
    let fake = FakeProvider::start(Config::default());
    fake.fail_file("bad", "Value error, the picture is unusable");
    let site = site(&fake, "actions = true\n", "");
    site.drop_file("a.jpg", &jpeg(64, 48, 503));
    site.drop_file("=b,x.jpg", &jpeg(64, 48, 504));
    site.drop_file("bad.jpg", &jpeg(64, 48, 505));
    let mut d = site.spawn_daemon();
    let addr = http_addr(&d);
    wait_until(LONG, "three outcomes", || {
        site.audit()
            .iter()
            .filter(|l| matches!(l["event"].as_str(), Some("succeeded" | "failed")))
            .count()
            == 3
    });
    let csrf = open_csrf(&addr);
    let (a, b) = (
        job_of(&site, "succeeded", "a.jpg"),
        job_of(&site, "succeeded", "=b,x.jpg"),
    );
    let r = act(&addr, &csrf, &format!("/api/jobs/{a}/approve"), "ann");
    assert_eq!(r.code, 200, "{}", r.body);
    let r = act(&addr, &csrf, &format!("/api/jobs/{b}/flag"), "bob");
    assert_eq!(r.code, 200, "{}", r.body);
    // A failure has no cut-out to approve; a wrong CSRF value is refused.
    let bad = job_of(&site, "failed", "bad.jpg");
    let r = act(&addr, &csrf, &format!("/api/jobs/{bad}/approve"), "ann");
    assert_eq!(
        (r.code, r.json()["error"]["code"].clone()),
        (409, "wrong-outcome".into())
    );
    let r = act(
        &addr,
        "not-the-value",
        &format!("/api/jobs/{a}/flag"),
        "eve",
    );
    assert_eq!(r.code, 403);
    assert_eq!(act(&addr, &csrf, "/api/jobs/999999/flag", "ann").code, 404);

    let approve = site.audit_events("review-approve");
    assert_eq!(approve.len(), 1);
    assert_eq!(
        (approve[0]["job"].as_i64(), approve[0]["by"].as_str()),
        (Some(a), Some("ann"))
    );
    assert!(approve[0]["ts"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(site.audit_events("review-flag").len(), 1);

    let csv = get(&addr, "/export.csv").body;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[1].starts_with(&format!("{b},flagged,bob,")), "{csv}");
    assert!(
        lines[1].contains(",\"'=b,x.jpg\","),
        "quoted, formula defused: {csv}"
    );
    assert!(lines[2].starts_with(&format!("{a},approved,ann,")), "{csv}");
    let jsonl: Vec<serde_json::Value> = get(&addr, "/export.jsonl")
        .body
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(jsonl.len(), 2);
    assert_eq!(
        (jsonl[1]["job"].as_i64(), jsonl[1]["mark"].as_str()),
        (Some(a), Some("approved"))
    );
    assert_eq!(jsonl[1]["input"], "a.jpg");

    let st = site.cmd(&["status"]).output().expect("status");
    let out = String::from_utf8_lossy(&st.stdout);
    assert!(out.contains("review marks"), "{out}");
    assert!(out.contains(&format!("/a.jpg (job {a}) by ann")), "{out}");
    assert!(
        out.contains(&format!("/=b,x.jpg (job {b}) by bob")),
        "{out}"
    );
    assert!(
        out.contains("  approved ") && out.contains("  flagged  "),
        "{out}"
    );
    stop(&mut d);
}

#[test]
fn retry_sends_a_failed_picture_back_and_it_succeeds_once() {
    let fake = FakeProvider::start(Config::default());
    fake.fail_file("bad", "Value error, the picture is unusable");
    let site = site(&fake, "actions = true\n", "");
    let bytes = jpeg(64, 48, 506);
    site.drop_file("bad.jpg", &bytes);
    let mut d = site.spawn_daemon();
    let addr = http_addr(&d);
    wait_until(LONG, "bad.jpg to fail", || {
        site.failed().join("bad.jpg").exists()
    });
    wait_until(LONG, "its failed line", || {
        !site.audit_events("failed").is_empty()
    });
    let job = job_of(&site, "failed", "bad.jpg");
    fake.clear_faults();
    let csrf = open_csrf(&addr);
    let r = act(&addr, &csrf, &format!("/api/jobs/{job}/retry"), "ann");
    assert_eq!(r.code, 200, "{}", r.body);
    wait_until(LONG, "the retried picture to succeed", || {
        site.outbox().join("bad.png").exists() && !site.audit_events("succeeded").is_empty()
    });
    assert_cutout(&site.outbox().join("bad.png"));
    // The audit line comes before the input's move: wait for the archive.
    wait_until(LONG, "the retried input to be archived", || {
        site.archive().join("bad.jpg").exists()
    });
    // Exactly one place: archived once, gone from failed/ with its reason.
    assert_eq!(site.files(&site.failed()), Vec::<String>::new());
    assert_eq!(site.files(&site.archive()), vec!["bad.jpg"]);
    assert_eq!(
        std::fs::read(site.archive().join("bad.jpg")).expect("archived"),
        bytes
    );
    let retry = site.audit_events("review-retry");
    assert_eq!(retry.len(), 1, "{:#?}", site.audit());
    assert_eq!(
        (retry[0]["job"].as_i64(), retry[0]["by"].as_str()),
        (Some(job), Some("ann"))
    );
    assert!(retry[0]["from"]
        .as_str()
        .is_some_and(|f| f.ends_with("failed/bad.jpg")));
    assert!(retry[0]["to"]
        .as_str()
        .is_some_and(|f| f.ends_with("inbox/bad.jpg")));
    // Never twice: the same failure cannot be sent back again.
    let r = act(&addr, &csrf, &format!("/api/jobs/{job}/retry"), "ann");
    assert_eq!(
        (r.code, r.json()["error"]["code"].clone()),
        (409, "already-retried".into())
    );
    // A success is not retried.
    let ok = job_of(&site, "succeeded", "bad.jpg");
    let r = act(&addr, &csrf, &format!("/api/jobs/{ok}/retry"), "ann");
    assert_eq!(r.code, 409);
    let hist = get(&addr, &format!("/api/jobs/{job}/history")).json();
    assert_eq!(hist["actions"][0]["kind"], "retry");
    assert_eq!(hist["actions"][0]["state"], "done");
    stop(&mut d);
}

#[test]
fn redo_replaces_the_outputs_and_keeps_the_previous_until_confirmed() {
    let fake = FakeProvider::start(Config::default());
    let site = site(&fake, "actions = true\n", "");
    site.drop_file("a.jpg", &jpeg(96, 64, 507));
    let mut d = site.spawn_daemon();
    let addr = http_addr(&d);
    wait_until(LONG, "a.jpg to succeed", || {
        !site.audit_events("succeeded").is_empty()
    });
    let job = job_of(&site, "succeeded", "a.jpg");
    let before = std::fs::read(site.outbox().join("a.png")).expect("first cut-out");
    let csrf = open_csrf(&addr);
    wait_job_finished(&addr, &csrf, job);
    let r = act(
        &addr,
        &csrf,
        &format!("/api/jobs/{job}/redo?provider=nope"),
        "ann",
    );
    assert_eq!(
        (r.code, r.json()["error"]["code"].clone()),
        (400, "unknown-provider".into())
    );
    let r = act(
        &addr,
        &csrf,
        &format!("/api/jobs/{job}/redo?provider=local"),
        "ann",
    );
    assert_eq!(r.code, 200, "{}", r.body);
    let kept = site.outbox().join("a.before-redo-1.png");
    assert_eq!(std::fs::read(&kept).expect("kept copy"), before);
    let after = std::fs::read(site.outbox().join("a.png")).expect("new cut-out");
    assert_ne!(after, before, "the output was replaced");
    assert_cutout(&site.outbox().join("a.png"));
    let redo = site.audit_events("review-redo");
    assert_eq!(redo.len(), 1);
    assert_eq!(
        (
            redo[0]["provider"].as_str(),
            redo[0]["previous_provider"].as_str()
        ),
        (Some("local"), Some("rs"))
    );
    assert_eq!(redo[0]["by"], "ann");
    assert!(redo[0]["kept"][0]
        .as_str()
        .is_some_and(|k| k.ends_with("a.before-redo-1.png")));

    let r = act(&addr, &csrf, &format!("/api/jobs/{job}/confirm"), "bob");
    assert_eq!(r.code, 200, "{}", r.body);
    assert!(!kept.exists(), "confirm deletes the kept copy");
    assert_eq!(site.files(&site.outbox()), vec!["a.png"]);
    let c = site.audit_events("review-confirm");
    assert_eq!((c.len(), c[0]["by"].as_str()), (1, Some("bob")));
    stop(&mut d);
}

#[test]
fn redo_is_refused_when_the_original_was_deleted() {
    let fake = FakeProvider::start(Config::default());
    let site = site(&fake, "actions = true\n", "after_success = \"delete\"\n");
    site.drop_file("a.jpg", &jpeg(64, 48, 508));
    let mut d = site.spawn_daemon();
    let addr = http_addr(&d);
    wait_until(LONG, "a.jpg to succeed", || {
        !site.audit_events("succeeded").is_empty()
    });
    let job = job_of(&site, "succeeded", "a.jpg");
    let before = std::fs::read(site.outbox().join("a.png")).expect("cut-out");
    let csrf = open_csrf(&addr);
    wait_job_finished(&addr, &csrf, job);
    let r = act(
        &addr,
        &csrf,
        &format!("/api/jobs/{job}/redo?provider=local"),
        "ann",
    );
    assert_eq!(
        (r.code, r.json()["error"]["code"].clone()),
        (409, "original-gone".into())
    );
    let msg = r.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.contains("after_success") && msg.contains("a.jpg"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(site.outbox().join("a.png")).expect("cut-out"),
        before
    );
    assert!(site.audit_events("review-redo").is_empty());
    stop(&mut d);
}

#[test]
fn a_retry_interrupted_after_its_intent_is_finished_by_the_next_start() {
    let fake = FakeProvider::start(Config::default());
    fake.fail_file("bad", "Value error, the picture is unusable");
    let site = site(&fake, "actions = true\n", "");
    site.drop_file("bad.jpg", &jpeg(64, 48, 509));
    let mut d = site.spawn_daemon();
    wait_until(LONG, "bad.jpg to fail", || {
        !site.audit_events("failed").is_empty()
    });
    stop(&mut d);
    let job = job_of(&site, "failed", "bad.jpg");
    // What a crash right after the intent's commit leaves: a pending row,
    // the input still in failed/.
    let db = rusqlite::Connection::open(site.root().join("state/state.sqlite3")).expect("db");
    db.execute(
        "INSERT INTO actions (kind, job, state, by_whom, src, dst, created_ms, updated_ms)
         VALUES ('retry', ?1, 'pending', 'ann', ?2, ?3, 0, 0)",
        rusqlite::params![
            job,
            site.failed().join("bad.jpg").to_string_lossy().as_bytes(),
            site.inbox().join("bad.jpg").to_string_lossy().as_bytes()
        ],
    )
    .expect("pending action");
    drop(db);
    fake.clear_faults();
    let mut d = site.spawn_daemon();
    wait_until(LONG, "the recovered retry to succeed", || {
        !site.audit_events("succeeded").is_empty()
    });
    assert_eq!(site.audit_events("review-retry").len(), 1);
    assert_eq!(site.files(&site.failed()), Vec::<String>::new());
    assert_eq!(site.files(&site.archive()), vec!["bad.jpg"]);
    stop(&mut d);
}
