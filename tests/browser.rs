//! The review page in a real headless Chromium, driven through
//! chromedriver's WebDriver HTTP API (plain JSON over TCP, no client
//! crate): 50 processed pictures in the grid, the filter to failed, a
//! retry clicked on the page, and the retried picture succeeding.
//! Screenshots go to `target/review-browser/` (printed with the test
//! output). Skipped, with the reason, when Debian's `chromium` and
//! `chromium-driver` are not installed (scripts/test.sh installs them).
//!
//! Must not: assert timings.

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fake_provider::{Config, FakeProvider};
use serde_json::{json, Value};
use support::*;

const LONG: Duration = Duration::from_secs(90);
const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";

/// One HTTP/1.1 request; the JSON answer.
fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(LONG)).expect("timeout");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    // chromedriver may keep the connection open: read the head, then
    // exactly Content-Length bytes.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).expect("read head");
        assert!(n > 0, "{method} {path}: connection closed before the head");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    while raw.len() < head_end + len {
        let n = s.read(&mut buf).expect("read body");
        assert!(n > 0, "{method} {path}: connection closed mid-body");
        raw.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&raw[head_end..head_end + len]).into_owned();
    serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body}"))
}

/// A chromedriver process and one browser session.
struct Browser {
    driver: Child,
    addr: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::net::TcpStream::connect(&self.addr).map(|_| {
            http(
                &self.addr,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            )
        });
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut driver = Command::new(DRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr = format!("127.0.0.1:{port}");
        wait_until(LONG, "chromedriver to listen", || {
            std::net::TcpStream::connect(&addr).is_ok()
        });
        let profile = tempfile::tempdir().expect("profile dir");
        let args = json!([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
            format!("--user-data-dir={}", profile.path().display()),
        ]);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args}
        }}});
        let v = std::panic::catch_unwind(|| http(&addr, "POST", "/session", Some(&caps)));
        let session = v
            .as_ref()
            .ok()
            .and_then(|v| v["value"]["sessionId"].as_str());
        let Some(session) = session.map(String::from) else {
            let _ = driver.kill();
            let _ = driver.wait();
            panic!("no browser session: {v:?}");
        };
        Browser {
            driver,
            addr,
            session,
            _profile: profile,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let p = format!("/session/{}{path}", self.session);
        http(&self.addr, method, &p, body)["value"].clone()
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", Some(&json!({ "url": url })));
    }

    fn script(&self, js: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(&json!({"script": js, "args": []})),
        )
    }

    /// How many elements match `css` on the page.
    fn count(&self, css: &str) -> usize {
        let js = format!("return document.querySelectorAll({}).length;", json!(css));
        self.script(&js).as_u64().unwrap_or(0) as usize
    }

    /// Open `url` again until `css` matches `n` elements (the page's
    /// index may still be catching up with the audit file).
    fn open_until(&self, url: &str, css: &str, n: usize) {
        let mut seen = 0;
        let t = std::time::Instant::now();
        while t.elapsed() < LONG {
            self.open(url);
            seen = self.count(css);
            if seen == n {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let text = self.script("return document.body.innerText;");
        panic!("{url}: {seen} elements match {css}, expected {n}; page text:\n{text}");
    }

    /// Click the first element matching `css`, as a user would.
    fn click(&self, css: &str) {
        let js = format!(
            "document.querySelector({}).click(); return true;",
            json!(css)
        );
        assert_eq!(self.script(&js), json!(true), "clicked {css}");
    }

    /// Save a PNG screenshot; returns its path.
    fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.call("GET", "/screenshot", None);
        let png = base64_decode(b64.as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/review-browser");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let p = dir.join(name);
        std::fs::write(&p, png).expect("write screenshot");
        println!("screenshot: {}", p.display());
        p
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let digits: Vec<u8> = s.bytes().filter_map(val).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &d)| acc | (d as u32) << (18 - 6 * i));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    out
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

fn outcomes(site: &Site) -> usize {
    site.audit()
        .iter()
        .filter(|l| matches!(l["event"].as_str(), Some("succeeded" | "failed")))
        .count()
}

#[test]
fn the_review_page_in_headless_chromium_retries_a_failed_picture() {
    if !Path::new(CHROMIUM).exists() || !Path::new(DRIVER).exists() {
        eprintln!("skipped: {CHROMIUM} or {DRIVER} is missing (Debian packages `chromium` and `chromium-driver`; scripts/test.sh installs them when it runs as root)");
        return;
    }
    let fake = FakeProvider::start(Config::default());
    fake.fail_file("bad", "Value error, the picture is unusable");
    let site = Site::new(&format!(
        "[[inbox]]\npath = \"inbox\"\nsettle = \"100ms\"\nprovider = \"rs\"\n\
         [providers.rs]\nkind = \"rembg-server\"\nbase_url = \"{}\"\ntimeout = \"10s\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\nactions = true\n",
        fake.base_url_rembg_server()
    ));
    for i in 0..47 {
        site.drop_file(&format!("shoe-{i:02}.jpg"), &jpeg(120, 90, 600 + i));
    }
    for i in 0..3 {
        site.drop_file(&format!("bad-{i}.jpg"), &jpeg(120, 90, 700 + i));
    }
    let mut d = site.spawn_daemon();
    let addr = http_addr(&d);
    wait_until(LONG, "50 outcomes", || outcomes(&site) == 50);
    let b = Browser::start();

    // The grid shows them: a full first page (48 cards) and the counts.
    b.open_until(&format!("http://{addr}/"), "[data-job]", 48);
    wait_until(LONG, "action buttons on the cards", || {
        b.count("[data-job] [data-action=approve]") > 0
    });
    let text = b.script("return document.body.innerText;");
    let text = text.as_str().unwrap_or_default();
    assert!(
        text.contains("47") && text.contains("3"),
        "counts on the page: {text}"
    );
    b.screenshot("review-grid.png");

    // Filter to failed: the three failures, each with a retry button.
    b.open_until(&format!("http://{addr}/?outcome=failed"), "[data-job]", 3);
    wait_until(LONG, "retry buttons", || {
        b.count("[data-action=retry]") == 3
    });
    let outcomes_shown = b.script(
        "return Array.from(document.querySelectorAll('[data-job]')).map(e => e.dataset.outcome);",
    );
    assert_eq!(outcomes_shown, json!(["failed", "failed", "failed"]));
    b.screenshot("review-failed.png");

    // Retry one (the provider now takes it): it goes back and succeeds.
    fake.clear_faults();
    let first = b.script("return document.querySelector('[data-job]').dataset.job;");
    let job: i64 = first
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("a job id");
    let input = site
        .audit_events("failed")
        .into_iter()
        .find(|l| l["job"] == job)
        .and_then(|l| l["input"].as_str().map(String::from))
        .expect("the failed card's audit line");
    b.click("[data-job] [data-action=retry]");
    wait_until(LONG, "the retried picture to succeed", || {
        site.audit_events("succeeded")
            .iter()
            .any(|l| l["input"] == input.as_str())
    });
    let retry = site.audit_events("review-retry");
    assert_eq!(retry.len(), 1, "one retry audited");
    assert_eq!(retry[0]["job"], job);
    assert_eq!(retry[0]["by"], "local");
    let stem = input.trim_end_matches(".jpg");
    assert!(site.outbox().join(format!("{stem}.png")).exists());

    // The page shows it succeeded.
    let url = format!("http://{addr}/?outcome=succeeded&q={stem}");
    b.open_until(&url, "[data-outcome=succeeded]", 1);
    b.screenshot("review-retried.png");
    drop(b);
    d.term();
    assert!(d.wait(LONG).success(), "{}", d.log_text());
}
