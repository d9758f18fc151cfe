//! The review page through the real daemon: real pictures through the
//! built-in engine, an audit file from "before the upgrade" indexed at
//! start, HTTP over real TCP. Checks the grid, filters, keyset pages,
//! counts against `/metrics`, the picture page, files and thumbnails by
//! id, traversal refusals, and that a long poll sees a new outcome.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use fake_provider::{Config, FakeProvider};
use support::*;

const LONG: Duration = Duration::from_secs(120);

/// (status, headers, body) of one GET over a fresh connection.
fn get(addr: &str, path: &str) -> (u16, String, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(LONG)).expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head and body");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (code, head, raw[split + 4..].to_vec())
}

fn page(addr: &str, path: &str) -> String {
    let (code, _, body) = get(addr, path);
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(code, 200, "{path}: {text}");
    text
}

/// The ids of the cards on a grid page, in page order.
fn card_ids(html: &str) -> Vec<i64> {
    html.split("<article class=\"card")
        .skip(1)
        .filter_map(|c| c.split("data-id=\"").nth(1))
        .filter_map(|c| c.split('"').next())
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// `data-count` of the element with `id`.
fn count_of(html: &str, id: &str) -> Option<u64> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let rest = &html[at..];
    rest.split("data-count=\"")
        .nth(1)?
        .split('"')
        .next()?
        .parse()
        .ok()
}

fn metric(addr: &str, name: &str) -> u64 {
    let text = page(addr, "/metrics");
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

fn listening(d: &Daemon) -> String {
    let mut addr = String::new();
    wait_until(LONG, "the http endpoint to listen", || {
        match d
            .log_text()
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

/// An audit line as an older cutout would have written it.
fn old_line(job: i64, event: &str, input: &str, output: Option<&str>) -> String {
    let mut v = serde_json::json!({
        "ts": format!("2025-03-{:02}T10:00:{:02}.000Z", 1 + job % 28, job % 60),
        "event": event, "job": job, "inbox": "inbox", "input": input,
        "sha256": null, "bytes": 1000 + job, "format": "jpeg", "width": 10, "height": 10,
        "provider": "old-provider", "attempts": 1, "duration_ms": 5,
        "output": output, "moved_to": null, "reason": null, "code": null,
        "remote_job": null, "credits": null, "duplicate_of": null
    });
    if event == "failed" {
        v["reason"] = "the provider did not answer".into();
        v["code"] = "provider-timeout".into();
    }
    v.to_string()
}

#[test]
fn the_review_page_shows_indexed_history_and_new_outcomes() {
    let site = Site::new("[http]\nlisten = \"127.0.0.1:0\"\n");
    // History from before the upgrade: 120 lines (every 10th failed, and
    // retry lines the grid leaves out), one whose output is a symlink in
    // the outbox pointing out of the configured folders.
    std::fs::create_dir_all(site.root().join("state")).expect("mkdir state");
    std::fs::create_dir_all(site.outbox()).expect("mkdir outbox");
    let secret = site.root().join("secret.png");
    std::fs::write(&secret, png(8, 8, 1)).expect("secret");
    let link = site.outbox().join("escape.png");
    std::os::unix::fs::symlink(&secret, &link).expect("symlink");
    let mut history = String::new();
    for job in 1..=120 {
        let event = if job % 10 == 0 { "failed" } else { "succeeded" };
        let out = (event == "succeeded").then(|| format!("/nowhere/old-{job}.png"));
        history.push_str(&old_line(job, "retry", &format!("old-{job}.jpg"), None));
        history.push('\n');
        let out = if job == 7 {
            Some(link.to_string_lossy().into_owned())
        } else {
            out
        };
        history.push_str(&old_line(
            job,
            event,
            &format!("old-{job}.jpg"),
            out.as_deref(),
        ));
        history.push('\n');
    }
    std::fs::write(site.audit_path(), history).expect("old audit");

    site.drop_file("good-1.png", &png(320, 240, 3));
    site.drop_file("good-2.jpg", &jpeg(300, 220, 4));
    site.drop_file("broken.png", b"this is not a picture at all, only text");
    let mut d = site.spawn_daemon();
    let addr = listening(&d);
    wait_until(LONG, "three outcomes", || {
        site.audit()
            .iter()
            .filter(|r| {
                r["job"].as_i64().unwrap_or(0) < 1000
                    && r["event"] != "retry"
                    && !r["input"].as_str().unwrap_or("").starts_with("old-")
            })
            .count()
            == 3
    });
    // The index follows the audit file: 120 old outcomes + 3 new.
    wait_until(LONG, "the index to hold every outcome", || {
        let html = page(&addr, "/");
        count_of(&html, "count-succeeded") == Some(108 + 2)
            && count_of(&html, "count-rejected") == Some(1)
    });

    // Counts since start equal /metrics.
    let html = page(&addr, "/");
    for (id, metric_name) in [
        ("since-succeeded", "cutout_files_succeeded_total"),
        ("since-rejected", "cutout_files_rejected_total"),
        ("since-failed", "cutout_files_failed_total"),
        ("since-duplicate", "cutout_files_duplicates_total"),
    ] {
        assert_eq!(
            count_of(&html, id),
            Some(metric(&addr, metric_name)),
            "{id}"
        );
    }
    assert_eq!(count_of(&html, "since-succeeded"), Some(2));
    assert_eq!(count_of(&html, "count-failed"), Some(12));

    // Keyset pages: newest first, 48 a page, every outcome once, no retries.
    let mut seen = Vec::new();
    let mut path = "/".to_string();
    loop {
        let html = page(&addr, &path);
        let ids = card_ids(&html);
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
        seen.extend(ids);
        match html.split("id=\"older\" href=\"").nth(1) {
            Some(rest) => path = rest.split('"').next().expect("href").replace("&amp;", "&"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 123, "every outcome on exactly one page");
    let first = page(&addr, "/");
    assert!(
        first.contains("good-1.png") && first.contains("broken.png"),
        "the new ones on top"
    );

    // Filters: outcome, name, provider, date range.
    let rejected = page(&addr, "/?outcome=rejected");
    assert_eq!(card_ids(&rejected).len(), 1);
    assert!(rejected.contains("broken.png"));
    let reason = std::fs::read_to_string(site.rejected().join("broken.png.reason.json"))
        .expect("reason file");
    let reason: serde_json::Value = serde_json::from_str(&reason).expect("json");
    let code = reason["code"].as_str().expect("code");
    let hint = reason["hint"].as_str().expect("hint");
    assert!(
        rejected.contains(&format!("<code class=\"code\">{code}</code>")),
        "{rejected}"
    );
    assert!(
        rejected.contains(hint),
        "the hint from the reason file: {rejected}"
    );
    let failed = page(&addr, "/?outcome=failed");
    assert_eq!(card_ids(&failed).len(), 12);
    assert!(failed.contains("provider-timeout") && failed.contains("the provider did not answer"));
    assert_eq!(
        card_ids(&page(&addr, "/?q=GOOD-")).len(),
        2,
        "name search ignores case"
    );
    assert_eq!(
        card_ids(&page(&addr, "/?q=old-11")).len(),
        11,
        "old-11, old-110…119"
    );
    assert_eq!(
        card_ids(&page(&addr, "/?provider=old-provider&outcome=failed")).len(),
        12
    );
    let march2 = page(&addr, "/?from=2025-03-02&to=2025-03-02");
    let expected = (1..=120).filter(|j| 1 + j % 28 == 2).count();
    assert_eq!(card_ids(&march2).len(), expected, "one day");
    let (code, _, body) = get(&addr, "/?from=yesterday");
    assert_eq!(code, 400);
    assert!(String::from_utf8_lossy(&body).contains("YYYY-MM-DD"));

    // The picture page, its files and thumbnails, by id.
    let good_id = *card_ids(&page(&addr, "/?q=good-1"))
        .first()
        .expect("good-1 card");
    let p = page(&addr, &format!("/p/{good_id}"));
    assert!(
        p.contains("audit line") && p.contains("&quot;event&quot;: &quot;succeeded&quot;"),
        "{p}"
    );
    assert!(
        p.contains(&format!("/file/{good_id}/out0"))
            && p.contains(&format!("/file/{good_id}/original"))
    );
    let rec = site
        .audit()
        .into_iter()
        .find(|r| r["input"] == "good-1.png" && r["event"] == "succeeded")
        .expect("audit line");
    let out_path = rec["output"].as_str().expect("output");
    let (code, head, body) = get(&addr, &format!("/file/{good_id}/out0"));
    assert_eq!(code, 200);
    assert!(
        head.to_ascii_lowercase().contains("content-type: image/"),
        "{head}"
    );
    assert_eq!(body, std::fs::read(out_path).expect("output file"));
    let moved = rec["moved_to"].as_str().expect("archived");
    let (code, _, body) = get(&addr, &format!("/file/{good_id}/original"));
    assert_eq!(code, 200);
    assert_eq!(body, std::fs::read(moved).expect("archived input"));
    let (code, head, body) = get(&addr, &format!("/thumb/{good_id}/out0"));
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert!(head.contains("image/webp"));
    assert!(body.starts_with(b"RIFF") && &body[8..12] == b"WEBP");
    let cached = list_files(&site.root().join("state/review-thumbs"));
    assert_eq!(cached.len(), 1, "one thumbnail cached: {cached:?}");
    let (_, _, again) = get(&addr, &format!("/thumb/{good_id}/out0"));
    assert_eq!(again, body, "served from the cache");

    // Traversal tries: never a path from the request.
    let escape_id = *card_ids(&page(&addr, "/?q=old-7.jpg"))
        .first()
        .expect("old-7");
    for (path, want) in [
        (format!("/file/{escape_id}/out0"), 403),
        (format!("/thumb/{escape_id}/out0"), 403),
        (format!("/file/{good_id}/..%2f..%2f..%2fetc%2fpasswd"), 400),
        (format!("/file/{good_id}/%2e%2e"), 400),
        (format!("/file/{good_id}/out0%2f..%2f..%2fsecret.png"), 400),
        ("/file/..%2f..%2fsecret.png/out0".to_string(), 400),
        ("/file/%2e%2e/out0".to_string(), 400),
        ("/file/../../secret.png".to_string(), 404),
        ("/p/..%2f..%2fetc".to_string(), 400),
        ("/file/999999/out0".to_string(), 404),
        (format!("/file/{good_id}/out5"), 404),
        ("/file/3/out0".to_string(), 404),
    ] {
        let (code, _, body) = get(&addr, &path);
        assert_eq!(code, want, "{path}: {}", String::from_utf8_lossy(&body));
        assert!(
            !body.starts_with(b"\x89PNG"),
            "{path} must not serve a picture"
        );
    }

    // Live: a long poll answers with an outcome that arrives after it began.
    let newest = page(&addr, "/")
        .split("data-live-after=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse::<i64>().ok())
        .expect("the first page offers live updates");
    let a = addr.clone();
    let poll = std::thread::spawn(move || get(&a, &format!("/live?after={newest}&wait=60")));
    std::thread::sleep(Duration::from_millis(300));
    site.drop_file("late.png", &png(200, 150, 9));
    let (code, _, body) = poll.join().expect("poll thread");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("live json");
    assert!(v["newest"].as_i64().expect("newest") > newest, "{v}");
    assert!(
        v["cards"].as_str().expect("cards").contains("late.png"),
        "{v}"
    );

    d.term();
    assert!(d.wait(LONG).success());
}

#[test]
fn review_false_leaves_only_health_and_metrics() {
    let site = Site::new("[http]\nlisten = \"127.0.0.1:0\"\nreview = false\n");
    let mut d = site.spawn_daemon();
    let addr = listening(&d);
    assert_eq!(get(&addr, "/").0, 404);
    assert_eq!(get(&addr, "/assets/review.js").0, 404);
    assert_eq!(get(&addr, "/metrics").0, 200);
    d.term();
    assert!(d.wait(LONG).success());
}

#[test]
fn a_paused_provider_shows_why_at_the_top_without_its_key() {
    let fake = FakeProvider::start(Config::default());
    let wrong = "sk-wrong-key-0123456789";
    let site = Site::new(&format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\
         [[inbox]]\npath = \"inbox\"\nsettle = \"100ms\"\nprovider = \"r\"\n\
         [providers.r]\nkind = \"rembg-com\"\nbase_url = \"{}\"\nusage_url = \"{}\"\n\
         api_key_file = \"rembg.key\"\n",
        fake.base_url_rembg(),
        fake.usage_url_rembg(),
    ));
    std::fs::write(site.root().join("rembg.key"), wrong).expect("key");
    site.drop_file("p0.jpg", &jpeg(64, 48, 5));
    let mut d = site.spawn_daemon();
    let addr = listening(&d);
    let mut html = String::new();
    wait_until(LONG, "the page to show the pause", || {
        html = page(&addr, "/");
        html.contains("is paused")
    });
    assert!(html.contains("provider r is paused: FIX THE KEY"), "{html}");
    assert!(!html.contains(wrong), "the key never shows");
    d.term();
    assert!(d.wait(LONG).success());
}
