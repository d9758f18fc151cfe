//! Server time of the review page with 100,000 indexed outcomes (issue 15;
//! goal ≤ 300 ms). Writes an audit file of `REVIEW_BENCH_LINES` outcome
//! lines (default 100,000) into a temp site, starts the real `cutout run`
//! (the binary beside this example: `cargo build --release` first) with
//! `[http] listen` on 127.0.0.1, waits until the index holds every line,
//! then times GETs over loopback: the first page, filtered pages, a deep
//! keyset page, a picture page. Prints median and p95 per page.
//! Run: `BENCH_ONLY=review scripts/bench.sh`, or
//! `cargo build --release && cargo run --release --example review_bench`.
//!
//! Must not: leave the daemon running (it is stopped on every path).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Requests per page timed.
const ROUNDS: usize = 40;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn get(addr: &str, path: &str) -> Result<(u16, String), Box<dyn std::error::Error>> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, raw))
}

fn line(job: u64) -> String {
    let event = match job % 20 {
        0 => "failed",
        1 => "rejected",
        2 => "duplicate",
        _ => "succeeded",
    };
    let day = 1 + job % 28;
    let (code, reason) = match event {
        "failed" => (
            "\"provider-timeout\"",
            "\"the provider did not answer in 60 s\"",
        ),
        "rejected" => ("\"not-an-image\"", "\"the file is not a picture\""),
        _ => ("null", "null"),
    };
    format!(
        concat!(
            r#"{{"ts":"2026-02-{:02}T{:02}:{:02}:{:02}.000Z","event":"{}","job":{},"inbox":"inbox-{}","#,
            r#""input":"batch-{}/item-{}.jpg","sha256":"{:064x}","bytes":{},"format":"jpeg","width":2000,"#,
            r#""height":2000,"provider":"{}","attempts":1,"duration_ms":900,"output":"/srv/out/item-{}.png","#,
            r#""outputs":["/srv/out/item-{}.png"],"moved_to":null,"reason":{},"code":{},"remote_job":null,"#,
            r#""credits":null,"duplicate_of":null}}"#
        ),
        day,
        job / 3600 % 24,
        job / 60 % 60,
        job % 60,
        event,
        job,
        job % 3,
        job / 1000,
        job,
        job,
        200_000 + job,
        if job % 2 == 0 { "local" } else { "remove-bg" },
        job,
        job,
        reason,
        code,
    )
}

fn stats(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    (p(0.5), p(0.95))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lines: u64 = std::env::var("REVIEW_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let bin: PathBuf = match std::env::var_os("CUTOUT_BIN") {
        Some(b) => b.into(),
        None => std::env::current_exe()?
            .parent()
            .and_then(|p| p.parent())
            .ok_or("no folder above the example")?
            .join("cutout"),
    };
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    std::fs::create_dir_all(root.join("state"))?;
    std::fs::create_dir_all(root.join("inbox"))?;
    let mut audit = std::io::BufWriter::new(std::fs::File::create(root.join("state/audit.jsonl"))?);
    for job in 1..=lines {
        writeln!(audit, "{}", line(job))?;
    }
    audit.flush()?;
    drop(audit);
    std::fs::write(
        root.join("cutout.toml"),
        "state_dir = \"state\"\n[[inbox]]\npath = \"inbox\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
    )?;
    let log = root.join("daemon.log");
    let started = Instant::now();
    let d = Daemon(
        Command::new(&bin)
            .args(["run", "--config"])
            .arg(root.join("cutout.toml"))
            .current_dir(root)
            .env("CUTOUT_MODELS_DIR", root.join("models"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .map_err(|e| {
                format!(
                    "{}: {e} (build it first: cargo build --release)",
                    bin.display()
                )
            })?,
    );
    let addr = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(a) = text
            .lines()
            .find_map(|l| l.split("listening on http://").nth(1))
        {
            break a.trim().to_string();
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("the daemon did not listen: {text}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Wait until the newest line is indexed (the first page shows job N).
    let newest = format!("item-{lines}.jpg");
    loop {
        let (_, body) = get(&addr, "/")?;
        if body.contains(&newest) {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err("the index did not catch up within 10 minutes".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let indexed = started.elapsed();
    let deep = lines / 2;
    let pages = [
        ("/ (first page, newest first)", "/".to_string()),
        ("/?outcome=failed", "/?outcome=failed".to_string()),
        (
            "/?inbox=inbox-1&provider=local",
            "/?inbox=inbox-1&provider=local".to_string(),
        ),
        ("/?q=item-4242 (name search)", "/?q=item-4242".to_string()),
        (
            "/?from=2026-02-03&to=2026-02-03",
            "/?from=2026-02-03&to=2026-02-03".to_string(),
        ),
        (
            "/?before=N/2 (deep keyset page)",
            format!("/?before={deep}"),
        ),
        ("/p/{id} (picture page)", format!("/p/{deep}")),
    ];
    println!(
        "review page, {lines} indexed outcomes (index caught up {:.1} s after start), {ROUNDS} GETs each over loopback:",
        indexed.as_secs_f64()
    );
    println!("{:<40} {:>10} {:>10}", "page", "median ms", "p95 ms");
    let mut worst: f64 = 0.0;
    for (name, path) in pages {
        let mut ms = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let (code, body) = get(&addr, &path)?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            if code != 200 {
                return Err(format!("{path}: {code}: {body}").into());
            }
        }
        let (med, p95) = stats(ms);
        worst = worst.max(p95);
        println!("{name:<40} {med:>10.1} {p95:>10.1}");
    }
    println!(
        "goal ≤ 300 ms: {} (worst p95 {worst:.1} ms)",
        if worst <= 300.0 { "met" } else { "NOT met" }
    );
    drop(d);
    Ok(())
}
