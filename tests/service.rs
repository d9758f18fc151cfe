//! Running as a service, with real parts only: the real `cutout` binary as a
//! process, a Unix datagram socket standing in for systemd's
//! `NOTIFY_SOCKET`, real signals (SIGHUP, SIGTERM), real HTTP to `/healthz`
//! and `/metrics`, the fake hosted provider for keys from
//! `$CREDENTIALS_DIRECTORY`, and `systemd-analyze` on the shipped unit when
//! it is installed (skipped, saying why, when it is not).
//!
//! Must not: assert on timings (every wait is a generous upper bound that
//! only stops a hung test), or hard-code outcomes that the daemon's own
//! audit log can tell.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use support::{jpeg, png, wait_until, Daemon, Site};

const LONG: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// A fake service manager: the NOTIFY_SOCKET end.

/// Receives sd_notify datagrams; every line becomes one message, in order.
struct Notify {
    path: PathBuf,
    rx: mpsc::Receiver<String>,
    all: Vec<String>,
    cursor: usize,
}

impl Notify {
    fn bind(dir: &Path) -> Notify {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = sock.recv(&mut buf) {
                for line in String::from_utf8_lossy(&buf[..n]).lines() {
                    if tx.send(line.to_string()).is_err() {
                        return;
                    }
                }
            }
        });
        Notify {
            path,
            rx,
            all: Vec::new(),
            cursor: 0,
        }
    }

    /// Wait for the next message (after the last one matched) satisfying
    /// `pred`; returns it.
    fn next(&mut self, d: &Daemon, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + LONG;
        loop {
            if let Some(i) = (self.cursor..self.all.len()).find(|i| pred(&self.all[*i])) {
                self.cursor = i + 1;
                return self.all[i].clone();
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(m) => self.all.push(m),
                Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {}
                Err(_) => panic!(
                    "no sd_notify message {what} within {LONG:?}; got: {:#?}\ndaemon log:\n{}",
                    self.all,
                    d.log_text()
                ),
            }
        }
    }

    fn env(&self) -> (&'static str, &std::ffi::OsStr) {
        ("NOTIFY_SOCKET", self.path.as_os_str())
    }
}

// ---------------------------------------------------------------------------
// Plain HTTP/1.1 over TCP.

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to /healthz or /metrics");
    s.set_read_timeout(Some(LONG)).expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read answer");
    let text = String::from_utf8(raw).expect("utf-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, body.to_string())
}

/// Parse the Prometheus text format: every line must be a HELP/TYPE comment
/// or `name{labels} value`. Returns sample → value.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    let mut typed = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (name, kind) = (it.next().expect("name"), it.next().expect("kind"));
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "bad TYPE line {line:?}"
            );
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let name = key.split('{').next().unwrap_or(key);
        let family = name
            .strip_suffix("_bucket")
            .or_else(|| name.strip_suffix("_sum"))
            .or_else(|| name.strip_suffix("_count"))
            .filter(|f| typed.contains(*f))
            .unwrap_or(name);
        assert!(typed.contains(family), "sample without a TYPE: {line:?}");
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        assert!(
            m.insert(key.to_string(), v).is_none(),
            "sample twice: {key}"
        );
    }
    m
}

fn metric(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no metric {key}; have {:#?}", m.keys()))
}

/// The address the daemon's HTTP endpoint listens on, from its log.
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

fn scrape(addr: &str) -> BTreeMap<String, f64> {
    let (code, body) = http_get(addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    parse_metrics(&body)
}

/// Audit events that end a file: succeeded, duplicate, rejected, failed.
fn finished(site: &Site) -> usize {
    site.audit()
        .iter()
        .filter(|r| {
            ["succeeded", "duplicate", "rejected", "failed"]
                .contains(&r["event"].as_str().unwrap_or(""))
        })
        .count()
}

fn config_text(site: &Site) -> String {
    std::fs::read_to_string(site.config()).expect("read config")
}

// ---------------------------------------------------------------------------

#[test]
fn notify_socket_gets_ready_status_watchdog_reloading_and_stopping() {
    let site = Site::new("");
    let mut n = Notify::bind(site.root());
    let mut d =
        site.spawn_daemon_env(&[n.env(), ("WATCHDOG_USEC", std::ffi::OsStr::new("400000"))]);

    n.next(&d, "READY=1", |m| m == "READY=1");
    let status = n.next(&d, "a STATUS= line", |m| m.starts_with("STATUS="));
    assert!(
        status.starts_with("STATUS=watching 1 inbox;") && status.contains(" queued"),
        "{status}"
    );
    // The watchdog is pinged from a task that checks the heartbeat, and only
    // after READY=1.
    n.next(&d, "WATCHDOG=1", |m| m == "WATCHDOG=1");
    n.next(&d, "a second WATCHDOG=1", |m| m == "WATCHDOG=1");

    // The status line follows the work.
    site.drop_file("shoe.jpg", &jpeg(400, 300, 1));
    wait_until(LONG, "shoe.jpg to be processed", || finished(&site) == 1);
    let done = site.audit_events("succeeded").len();
    n.next(&d, "a STATUS= line counting the finished file", |m| {
        m.starts_with("STATUS=") && m.contains(&format!("; {done} done"))
    });

    // SIGHUP: RELOADING=1, then READY=1 again.
    d.signal(libc::SIGHUP);
    n.next(&d, "RELOADING=1", |m| m == "RELOADING=1");
    n.next(&d, "READY=1 after the reload", |m| m == "READY=1");

    // SIGTERM: STOPPING=1, and a clean exit.
    d.term();
    n.next(&d, "STOPPING=1", |m| m == "STOPPING=1");
    let st = d.wait(LONG);
    assert!(st.success(), "exit {st:?}; log:\n{}", d.log_text());
    let first_ready = n.all.iter().position(|m| m == "READY=1");
    let first_dog = n.all.iter().position(|m| m == "WATCHDOG=1");
    assert!(first_ready < first_dog, "{:#?}", n.all);
}

#[test]
fn sighup_adds_and_removes_inboxes_without_dropping_work_in_flight() {
    // One inbox to start with, one picture at a time, and the HTTP
    // endpoint to see what is in flight.
    let site = Site::new("[queue]\nconcurrency = 1\n[http]\nlisten = \"127.0.0.1:0\"\n");
    let base = config_text(&site);
    let mut n = Notify::bind(site.root());
    let d = site.spawn_daemon_env(&[n.env()]);
    n.next(&d, "READY=1", |m| m == "READY=1");
    let addr = http_addr(&d);

    // 1. Add a second inbox.
    let second = "[[inbox]]\nname = \"second\"\npath = \"in2\"\noutbox = \"out2\"\narchive = \"archive2\"\nrejected = \"rejected2\"\nfailed = \"failed2\"\nsettle = \"300ms\"\n";
    site.write_config(&format!("{base}{second}"));
    d.signal(libc::SIGHUP);
    n.next(&d, "RELOADING=1", |m| m == "RELOADING=1");
    n.next(&d, "READY=1 after adding an inbox", |m| m == "READY=1");
    assert!(
        d.log_text().contains("inboxes added: second;"),
        "{}",
        d.log_text()
    );
    let in2 = site.root().join("in2");
    assert!(in2.is_dir(), "the new inbox folder is created");
    std::fs::write(in2.join("bag.png"), png(500, 400, 7)).expect("drop into the new inbox");
    wait_until(LONG, "the new inbox's picture in out2/", || {
        site.root().join("out2/bag.png").is_file()
    });
    support::assert_cutout(&site.root().join("out2/bag.png"));
    // The output is durable before the decision and its audit line (that
    // order is the crash-safety rule), so wait for the line, do not race it.
    wait_until(LONG, "the new inbox's succeeded audit line", || {
        site.audit_events("succeeded")
            .iter()
            .any(|r| r["inbox"] == "second")
    });

    // 2. Remove the first inbox while its pictures are being processed.
    let names: Vec<String> = (0..6).map(|i| format!("big{i}.jpg")).collect();
    for (i, name) in names.iter().enumerate() {
        site.drop_file(name, &jpeg(1600, 1200, 100 + i as u32));
    }
    wait_until(LONG, "a picture in flight", || {
        metric(&scrape(&addr), "cutout_in_flight") >= 1.0
    });
    site.write_config(&format!(
        "{}{second}",
        base.replace("[[inbox]]\npath = \"inbox\"\nsettle = \"300ms\"\n", "")
    ));
    d.signal(libc::SIGHUP);
    n.next(&d, "READY=1 after removing an inbox", |m| m == "READY=1");
    let log = d.log_text();
    let line = log
        .lines()
        .rfind(|l| l.contains("config reloaded from"))
        .expect("a reload line")
        .to_string();
    assert!(line.contains("removed: "), "{line}");
    let in_flight: usize = line
        .split(" picture(s) in flight")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("in-flight count in the reload line");
    assert!(in_flight >= 1, "{line}");

    // What was in flight finishes with the old settings; nothing is lost:
    // every picture is either done (archived, with its cut-out) or still
    // untouched in the removed inbox.
    wait_until(LONG, "work in flight to finish", || {
        metric(&scrape(&addr), "cutout_in_flight") == 0.0
    });
    let archived = site.files(&site.archive());
    assert!(archived.len() >= in_flight, "{archived:?}");
    for name in &names {
        let stem = name.trim_end_matches(".jpg");
        let done = archived.contains(name);
        let waiting = site.inbox().join(name).is_file();
        assert!(
            done ^ waiting,
            "{name}: archived {done}, in inbox {waiting}"
        );
        if done {
            support::assert_cutout(&site.outbox().join(format!("{stem}.png")));
        }
    }
    assert!(site.files(&site.failed()).is_empty());
    assert!(site.files(&site.rejected()).is_empty());

    // The removed inbox is no longer watched; the kept one still is.
    site.drop_file("late.jpg", &jpeg(400, 300, 9));
    std::fs::write(in2.join("late2.jpg"), jpeg(400, 300, 10)).expect("drop");
    wait_until(LONG, "late2.jpg in out2/", || {
        site.root().join("out2/late2.png").is_file()
    });
    let before = site.files(&site.archive());
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        site.inbox().join("late.jpg").is_file(),
        "removed inbox must be left alone"
    );
    assert_eq!(site.files(&site.archive()), before);
    drop(d);
}

#[test]
fn sighup_with_a_broken_config_keeps_the_running_one() {
    let site = Site::new("[http]\nlisten = \"127.0.0.1:0\"\n");
    let good = config_text(&site);
    let mut n = Notify::bind(site.root());
    let mut d = site.spawn_daemon_env(&[n.env()]);
    n.next(&d, "READY=1", |m| m == "READY=1");
    let addr = http_addr(&d);

    // A bad value: the log names the file and the key.
    site.write_config(&format!("{good}[queue]\nconcurrency = 0\n"));
    d.signal(libc::SIGHUP);
    n.next(&d, "RELOADING=1", |m| m == "RELOADING=1");
    n.next(&d, "READY=1 (still running)", |m| m == "READY=1");
    let config = site.config().display().to_string();
    wait_until(LONG, "the rejection to be logged", || {
        d.log_text().contains("reload rejected")
    });
    let log = d.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("reload rejected"))
        .expect("rejection line");
    assert!(
        line.contains("still running with the previous config"),
        "{line}"
    );
    assert!(line.contains("`queue.concurrency`"), "{line}");
    assert!(line.contains(&config), "{line}");

    // Not TOML at all, and an inbox naming a provider that does not exist.
    site.write_config(&format!("{good}[[inbox]\n"));
    d.signal(libc::SIGHUP);
    n.next(&d, "READY=1 after the second bad reload", |m| {
        m == "READY=1"
    });
    site.write_config(&format!(
        "{good}[[inbox]]\npath = \"in2\"\nprovider = \"nowhere\"\n"
    ));
    d.signal(libc::SIGHUP);
    n.next(&d, "READY=1 after the third bad reload", |m| m == "READY=1");
    wait_until(LONG, "three rejections", || {
        d.log_text().matches("reload rejected").count() == 3
    });
    assert!(
        d.log_text().contains("`inbox[1].provider`"),
        "{}",
        d.log_text()
    );
    assert!(
        !site.root().join("in2").exists(),
        "a rejected config creates no folders"
    );
    let m = scrape(&addr);
    assert_eq!(metric(&m, "cutout_reloads_total{result=\"rejected\"}"), 3.0);
    assert_eq!(metric(&m, "cutout_reloads_total{result=\"applied\"}"), 0.0);

    // The old config keeps working.
    site.drop_file("still.jpg", &jpeg(400, 300, 3));
    wait_until(LONG, "still.jpg to be processed", || {
        site.outbox().join("still.png").is_file()
    });
    let (code, _) = http_get(&addr, "/healthz");
    assert_eq!(code, 200);
    d.term();
    assert!(d.wait(LONG).success(), "{}", d.log_text());
}

#[test]
fn healthz_and_metrics_report_what_was_processed() {
    let site = Site::new("[http]\nlisten = \"127.0.0.1:0\"\n");
    let mut d = site.spawn_daemon();
    let addr = http_addr(&d);
    wait_until(LONG, "/healthz to answer 200", || {
        http_get(&addr, "/healthz").0 == 200
    });
    let (_, body) = http_get(&addr, "/healthz");
    assert!(body.starts_with("ok\n"), "{body}");

    let a = jpeg(500, 400, 21);
    site.drop_file("a.jpg", &a);
    site.drop_file("b.png", &png(450, 350, 22));
    site.drop_file("sub/a-again.jpg", &a); // the same picture: a duplicate
    site.drop_file("notes.jpg", b"this is not a picture");
    wait_until(LONG, "four files to finish", || finished(&site) == 4);

    let count = |event: &str| site.audit_events(event).len() as f64;
    let mut m = BTreeMap::new();
    wait_until(LONG, "metrics to match the audit log", || {
        m = scrape(&addr);
        metric(&m, "cutout_files_succeeded_total") == count("succeeded")
            && metric(&m, "cutout_files_duplicates_total") == count("duplicate")
            && metric(&m, "cutout_files_rejected_total") == count("rejected")
            && metric(&m, "cutout_files_failed_total") == count("failed")
            && metric(&m, "cutout_in_flight") == 0.0
            && metric(&m, "cutout_queue_depth") == 0.0
    });
    assert!(metric(&m, "cutout_files_seen_total") >= 4.0);
    assert_eq!(metric(&m, "cutout_inboxes"), 1.0);
    assert_eq!(metric(&m, "cutout_up"), 1.0);
    // Every picture that reached the engine was timed; duplicates and
    // rejected files never reach it.
    let calls = count("succeeded") + count("failed");
    let p = "provider=\"local\"";
    assert_eq!(
        metric(&m, &format!("cutout_provider_latency_seconds_count{{{p}}}")),
        calls
    );
    let mut last = 0.0;
    for le in [
        "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "120", "300", "+Inf",
    ] {
        let v = metric(
            &m,
            &format!("cutout_provider_latency_seconds_bucket{{{p},le=\"{le}\"}}"),
        );
        assert!(v >= last, "buckets must be cumulative");
        last = v;
    }
    assert_eq!(last, calls);
    assert!(metric(&m, &format!("cutout_provider_latency_seconds_sum{{{p}}}")) > 0.0);
    assert_eq!(
        metric(&m, &format!("cutout_provider_rate_limited_total{{{p}}}")),
        0.0
    );
    assert_eq!(
        metric(&m, &format!("cutout_provider_retries_total{{{p}}}")),
        0.0
    );
    assert_eq!(metric(&m, &format!("cutout_provider_paused{{{p}}}")), 0.0);

    let (code, _) = http_get(&addr, "/nothing-here");
    assert_eq!(code, 404);
    d.term();
    assert!(d.wait(LONG).success(), "{}", d.log_text());
}

#[test]
fn a_busy_http_address_fails_the_start_naming_the_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let site = Site::new(&format!("[http]\nlisten = \"{addr}\"\n"));
    let mut n = Notify::bind(site.root());
    let mut d = site.spawn_daemon_env(&[n.env()]);
    let st = d.wait(LONG);
    assert_eq!(
        st.code(),
        Some(cutout::commands::exit::RUNTIME),
        "{}",
        d.log_text()
    );
    assert!(d.log_text().contains("`http.listen`"), "{}", d.log_text());
    // It never said it was ready.
    while let Ok(m) = n.rx.try_recv() {
        n.all.push(m);
    }
    assert!(!n.all.iter().any(|m| m == "READY=1"), "{:#?}", n.all);
}

#[test]
fn systemd_directories_are_the_defaults() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (conf, state, logs, elsewhere) = (
        tmp.path().join("etc"),
        tmp.path().join("var-lib"),
        tmp.path().join("var-log"),
        tmp.path().join("cwd"),
    );
    for d in [&conf, &state, &logs, &elsewhere] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let drop = tmp.path().join("srv");
    std::fs::write(
        conf.join("cutout.toml"),
        format!(
            "shutdown_grace = \"20s\"\n[[inbox]]\npath = \"{}\"\nsettle = \"300ms\"\n",
            drop.join("inbox").display()
        ),
    )
    .expect("write config");
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new(support::bin());
        c.args(args)
            .current_dir(&elsewhere)
            .env_remove("CUTOUT_CONFIG")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env("CONFIGURATION_DIRECTORY", &conf)
            .env("STATE_DIRECTORY", &state)
            .env("LOGS_DIRECTORY", &logs)
            .env("RUST_LOG", "info");
        c
    };
    let out = run(&["check"]).output().expect("run cutout check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("config: {}", conf.join("cutout.toml").display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("state_dir: {}", state.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("log_dir: {}", logs.display())),
        "{stdout}"
    );

    // The daemon keeps its state and its log files there.
    let log = tmp.path().join("stderr.log");
    let mut child = run(&["run"])
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn cutout run");
    std::fs::create_dir_all(drop.join("inbox")).expect("mkdir");
    std::fs::write(drop.join("inbox/x.jpg"), jpeg(400, 300, 5)).expect("drop");
    wait_until(LONG, "x.jpg to be processed", || {
        drop.join("outbox/x.png").is_file()
    });
    assert!(state.join("audit.jsonl").is_file());
    let files = support::list_files(&logs);
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("cutout") && f.ends_with(".log")),
        "{files:?}"
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().expect("wait").success());
    assert!(
        !elsewhere.join(".cutout").exists(),
        "no state in the working folder"
    );
}

#[test]
fn hosted_key_from_the_credentials_directory_and_provider_figures_in_metrics() {
    use fake_provider::{Endpoint, Fault, FaultRule, RetryAfter};
    let key = "cred-key-3f9a1c";
    let fake = fake_provider::FakeProvider::start(fake_provider::Config::default().with_key(key));
    // Two server errors and one 429 before the picture goes through.
    fake.inject(FaultRule::next(2, Fault::Status(503)).endpoint(Endpoint::RembgRemove));
    fake.inject(
        FaultRule::next(1, Fault::RateLimited(RetryAfter::None)).endpoint(Endpoint::RembgRemove),
    );
    let site = Site::new(&format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\
         [[inbox]]\npath = \"inbox\"\nsettle = \"300ms\"\nprovider = \"rembg\"\n\
         [providers.rembg]\nkind = \"rembg-com\"\nbase_url = \"{}\"\nusage_url = \"{}\"\napi_key_file = \"rembg.key\"\n",
        fake.base_url_rembg(),
        fake.usage_url_rembg()
    ));
    let creds = site.root().join("credentials");
    std::fs::create_dir_all(&creds).expect("mkdir");
    std::fs::write(creds.join("rembg.key"), format!("{key}\n")).expect("write key");
    let mut d = site.spawn_daemon_env(&[("CREDENTIALS_DIRECTORY", creds.as_os_str())]);
    let addr = http_addr(&d);
    site.drop_file("shoe.jpg", &jpeg(400, 300, 11));
    wait_until(LONG, "shoe.jpg to be processed", || finished(&site) == 1);
    assert_eq!(
        site.audit_events("succeeded").len(),
        1,
        "{:#?}\n{}",
        site.audit(),
        d.log_text()
    );

    // Retries, 429s and call latencies show up per provider, matching the
    // audit log and what the provider saw.
    let retries = site.audit_events("retry").len() as f64;
    let n429 = fake.count_status(429) as f64;
    assert!(retries >= 1.0 && n429 >= 1.0, "{:#?}", site.audit());
    let p = "provider=\"rembg\"";
    let mut m = BTreeMap::new();
    wait_until(LONG, "provider figures in /metrics", || {
        m = scrape(&addr);
        metric(&m, &format!("cutout_provider_rate_limited_total{{{p}}}")) == n429
    });
    assert_eq!(
        metric(&m, &format!("cutout_provider_retries_total{{{p}}}")),
        retries
    );
    assert_eq!(
        metric(&m, &format!("cutout_provider_latency_seconds_count{{{p}}}")),
        retries + 1.0,
        "one timed call per attempt"
    );
    assert_eq!(metric(&m, &format!("cutout_provider_paused{{{p}}}")), 0.0);

    d.term();
    assert!(d.wait(LONG).success());
    assert!(!d.log_text().contains(key), "the key must never be logged");
    assert!(
        !site.root().join("rembg.key").exists(),
        "the key came from the credentials folder, not the config folder"
    );
}

#[test]
fn metrics_show_pictures_at_the_engine_up_to_the_concurrency() {
    // Slow provider, concurrency 2, eight pictures: the queue has up to
    // four workers, but /metrics never shows more than two at the engine,
    // and shows two while the backlog lasts.
    let fake = fake_provider::FakeProvider::start(
        fake_provider::Config::default().with_latency(Duration::from_millis(400)),
    );
    let site = Site::new(&format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[queue]\nconcurrency = 2\n\
         [[inbox]]\npath = \"inbox\"\nsettle = \"100ms\"\nprovider = \"rembg\"\n\
         [providers.rembg]\nkind = \"rembg-com\"\nbase_url = \"{}\"\nusage_url = \"{}\"\n\
         api_key_file = \"rembg.key\"\nconcurrency = 8\nrequests_per_second = 100\n",
        fake.base_url_rembg(),
        fake.usage_url_rembg()
    ));
    std::fs::write(site.root().join("rembg.key"), "test-rembg-key\n").expect("key");
    let mut d = site.spawn_daemon();
    let addr = http_addr(&d);
    for i in 0..8 {
        site.drop_file(&format!("p{i}.jpg"), &jpeg(200, 150, 300 + i));
    }
    let mut most = 0.0f64;
    wait_until(LONG, "two pictures at the engine", || {
        let m = scrape(&addr);
        most = most.max(metric(&m, "cutout_at_engine"));
        metric(&m, "cutout_at_engine") == 2.0
    });
    wait_until(LONG, "all eight done", || {
        let m = scrape(&addr);
        most = most.max(metric(&m, "cutout_at_engine"));
        finished(&site) == 8
    });
    assert_eq!(most, 2.0, "at most queue.concurrency at the engine");
    wait_until(LONG, "nothing at the engine", || {
        metric(&scrape(&addr), "cutout_at_engine") == 0.0
    });
    d.term();
    assert!(d.wait(LONG).success());
}

#[test]
fn a_paused_provider_shows_in_status_healthz_and_metrics() {
    use fake_provider::{Endpoint, Fault, FaultRule};
    let fake = fake_provider::FakeProvider::start(fake_provider::Config::default().with_key("k"));
    fake.inject(FaultRule::always(Fault::QuotaExhausted).endpoint(Endpoint::RembgRemove));
    let site = Site::new(&format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\
         [[inbox]]\npath = \"inbox\"\nsettle = \"300ms\"\nprovider = \"rembg\"\n\
         [providers.rembg]\nkind = \"rembg-com\"\nbase_url = \"{}\"\nusage_url = \"{}\"\napi_key = \"k\"\n",
        fake.base_url_rembg(),
        fake.usage_url_rembg()
    ));
    // An inline key must not be readable by others.
    std::fs::set_permissions(
        site.config(),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let mut n = Notify::bind(site.root());
    let mut d = site.spawn_daemon_env(&[n.env()]);
    n.next(&d, "READY=1", |m| m == "READY=1");
    let addr = http_addr(&d);
    site.drop_file("shoe.jpg", &jpeg(400, 300, 12));

    let status = n.next(&d, "a STATUS= line naming the paused provider", |m| {
        m.starts_with("STATUS=") && m.contains("rembg paused: ")
    });
    assert!(
        status.contains("1 queued")
            || status.contains("1 settling")
            || status.contains("1 in flight"),
        "{status}"
    );
    let m = scrape(&addr);
    assert_eq!(
        metric(&m, "cutout_provider_paused{provider=\"rembg\"}"),
        1.0
    );
    // Paused is not dead: the pipeline is alive, and says what it waits on.
    let (code, body) = http_get(&addr, "/healthz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("rembg paused: "), "{body}");
    // Nothing lost: the picture waits in the inbox.
    assert!(site.inbox().join("shoe.jpg").is_file());
    assert!(site.files(&site.failed()).is_empty());
    d.term();
    assert!(d.wait(LONG).success(), "{}", d.log_text());
}

// ---------------------------------------------------------------------------
// The unit file.

fn unit_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/cutout.service"))
        .expect("read systemd/cutout.service")
}

fn unit_value(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

#[test]
fn unit_settings_fit_the_daemon() {
    let unit = unit_text();
    assert_eq!(unit_value(&unit, "Type"), ["notify"]);
    assert_eq!(unit_value(&unit, "ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(unit_value(&unit, "Restart"), ["on-failure"]);
    // Only an unusable config is not restarted.
    assert_eq!(
        unit_value(&unit, "RestartPreventExitStatus"),
        [cutout::commands::exit::CONFIG.to_string()]
    );
    assert_eq!(unit_value(&unit, "CapabilityBoundingSet"), [""]);
    assert_eq!(unit_value(&unit, "StateDirectory"), ["cutout"]);
    assert_eq!(unit_value(&unit, "ConfigurationDirectory"), ["cutout"]);
    let secs = |k: &str| {
        let v = unit_value(&unit, k);
        humantime::parse_duration(v.first().unwrap_or_else(|| panic!("{k} missing")))
            .unwrap_or_else(|e| panic!("{k}: {e}"))
    };
    assert!(!secs("WatchdogSec").is_zero());

    // The shipped example config: it loads, and its grace (and the
    // built-in default) fit inside TimeoutStopSec.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/cutout.toml");
    let text = std::fs::read_to_string(&example).expect("read systemd/cutout.toml");
    let cfg = cutout::config::from_str(&text, Some(&example), Path::new("/etc/cutout"))
        .unwrap_or_else(|e| panic!("{e}"));
    let stop = secs("TimeoutStopSec");
    assert!(
        cfg.shutdown_grace < stop,
        "{:?} vs {stop:?}",
        cfg.shutdown_grace
    );
    assert!(cutout::config::DEFAULT_GRACE < stop);
    for ib in &cfg.inboxes {
        for (key, dir) in ib.managed_folders() {
            assert!(
                unit_value(&unit, "ReadWritePaths")
                    .iter()
                    .any(|rw| dir.starts_with(rw)),
                "{key} {} is not writable under the unit",
                dir.display()
            );
        }
    }
    assert!(cfg.http.listen.is_some_and(|a| a.ip().is_loopback()));
}

/// `systemd-analyze`, when installed; None (with the reason printed) if not.
fn systemd_analyze() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("systemd-analyze"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        println!("skipped: systemd-analyze is not installed (apt-get install systemd)");
    }
    found
}

/// The unit with ExecStart pointing at the binary under test (verify checks
/// that the program exists).
fn unit_for_verify(dir: &Path) -> PathBuf {
    let text = unit_text().replace(
        "ExecStart=/usr/local/bin/cutout",
        &format!("ExecStart={}", support::bin().display()),
    );
    let p = dir.join("cutout.service");
    std::fs::write(&p, text).expect("write unit");
    p
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let Some(sa) = systemd_analyze() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let unit = unit_for_verify(tmp.path());
    let out = std::process::Command::new(sa)
        .arg("verify")
        .arg("--man=no")
        .arg(&unit)
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("cutout")).collect();
    assert!(out.status.success() && ours.is_empty(), "{stderr}");
}

#[test]
fn unit_security_exposure_is_at_most_2() {
    let Some(sa) = systemd_analyze() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let unit = unit_for_verify(tmp.path());
    let out = std::process::Command::new(sa)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze security");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let level: f64 = stdout
        .lines()
        .find_map(|l| l.split("Overall exposure level for cutout.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in:\n{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    println!("systemd-analyze security --offline=yes: exposure {level}");
    assert!(level <= 2.0, "exposure {level} > 2.0:\n{stdout}");
}

#[test]
fn example_config_documents_http_and_loads() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let text = std::fs::read_to_string(&p).expect("read config.example.toml");
    assert!(text.contains("[http]") && text.contains("# listen = \"127.0.0.1:9808\""));
    let with_http = text.replace(
        "# listen = \"127.0.0.1:9808\"",
        "listen = \"127.0.0.1:9808\"",
    );
    let cfg = cutout::config::from_str(&with_http, Some(&p), Path::new("/srv/cutout"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.http.listen,
        Some("127.0.0.1:9808".parse().expect("addr"))
    );
}
