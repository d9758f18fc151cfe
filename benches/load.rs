//! The load benchmark of issue 6: the real release `cutout` binary as a
//! process against the fake provider server on 127.0.0.1 (rembg-com API,
//! 200 ms per picture), measured from outside — the fake's own request log,
//! the files that appear, and /proc of the daemon. Prints one Markdown
//! report (and writes it to `$BENCH_OUT`); BENCHMARKS.md holds the figures.
//!
//! Owns: the scenarios (throughput by concurrency, the rate-limited run,
//! the naive `curl` loop side by side, the 10,000-file burst, drop→cut-out
//! latency, per-picture CPU by picture size) and how each is measured.
//! Timing goals are reported against their targets here, never asserted.
//!
//! Run it with `scripts/bench.sh` (release build, then
//! `cargo test --release --bench load -- --ignored --nocapture`). It is a
//! libtest harness with one ignored test so that no Cargo.toml entry is
//! needed and the default `cargo test` never builds or runs it.
//!
//! Sizes come from the environment (see `Knobs::from_env`); `BENCH_QUICK=1`
//! shrinks everything to a smoke run of about a minute.

#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use fake_provider::{Config, Endpoint, FakeProvider, LogEntry, RateLimit};

#[path = "load/autorate.rs"]
mod autorate;

const KEY: &str = "bench-rembg-key";

// ---------------------------------------------------------------------------
// Knobs.

/// Every size of the run, from the environment.
#[derive(Debug, Clone)]
struct Knobs {
    /// Sections to run (`BENCH_ONLY=throughput,verging,ratelimit,autorate,naive,burst,latency,cpu`).
    only: Vec<String>,
    /// Provider latency per picture (`BENCH_LATENCY_MS`, 200).
    latency: Duration,
    /// Throughput: largest batch (`BENCH_FILES`, 2000) …
    files: usize,
    /// … and pictures per unit of concurrency (`BENCH_PER_SLOT`, 100): a
    /// level runs min(files, per_slot × concurrency) pictures, so every
    /// level lasts about per_slot × latency (20 s) and concurrency 1 does
    /// not take 400 s.
    per_slot: usize,
    /// Throughput again at concurrency 64 with an audit log already this
    /// big (`BENCH_WARM_AUDIT_MB`, 8; 0 skips it).
    warm_audit_mb: u64,
    /// Concurrency levels (`BENCH_CONCURRENCY`, "1,4,16,64,128,256": the
    /// issue's four, then higher to find where the machine is the limit).
    levels: Vec<usize>,
    /// Rate-limit run: pictures (`BENCH_RATE_FILES`, 300), the provider's
    /// limit (`BENCH_RATE_LIMIT`, 10/s), and the client's configured
    /// `requests_per_second` values (`BENCH_RATE_CLIENT`, "10,20").
    rate_files: usize,
    rate_limit: u32,
    rate_client: Vec<f64>,
    /// Naive client side by side: pictures (`BENCH_NAIVE_FILES`, 100).
    naive_files: usize,
    /// Burst sizes (`BENCH_BURST`, "2000,10000").
    burst: Vec<usize>,
    /// Latency run: pictures dropped one by one (`BENCH_DROPS`, 80), every
    /// `BENCH_DROP_EVERY_MS` (300) plus a random 0–99 ms, settle
    /// (`BENCH_SETTLE_MS`, 100).
    drops: usize,
    drop_every: Duration,
    settle: Duration,
    /// CPU run: "MP:count" pairs (`BENCH_CPU`, "1:30,4:15,12:8").
    cpu: Vec<(u32, usize)>,
    /// verging run: concurrency levels (`BENCH_VERGING_CONCURRENCY`,
    /// "16,64"), at most this many pictures per level
    /// (`BENCH_VERGING_FILES`, 2000; a level runs 25 per unit of
    /// concurrency, about 8 s, so the ramp-down at the end weighs little), the
    /// fake's time per request (`BENCH_VERGING_REQUEST_MS`, 20) and
    /// cutout's `poll_interval` (`BENCH_VERGING_POLL_MS`, 100); the job's
    /// processing time is `BENCH_LATENCY_MS`.
    verging_levels: Vec<usize>,
    verging_files: usize,
    verging_request: Duration,
    verging_poll: Duration,
    /// Where temp sites go (`BENCH_DIR`, the system temp folder).
    dir: Option<PathBuf>,
}

fn env_str(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    env_str(name)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn env_list<T: std::str::FromStr>(name: &str, default: &str) -> Vec<T> {
    env_str(name)
        .unwrap_or_else(|| default.to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

impl Knobs {
    fn from_env() -> Knobs {
        let quick = env_str("BENCH_QUICK").is_some_and(|v| v != "0");
        let d = |full: &'static str, small: &'static str| if quick { small } else { full };
        Knobs {
            only: env_list(
                "BENCH_ONLY",
                "throughput,verging,ratelimit,autorate,naive,burst,latency,cpu",
            ),
            latency: Duration::from_millis(env_num("BENCH_LATENCY_MS", 200)),
            files: env_num("BENCH_FILES", d("2000", "200").parse().unwrap_or(2000)),
            per_slot: env_num("BENCH_PER_SLOT", d("100", "15").parse().unwrap_or(100)),
            warm_audit_mb: env_num("BENCH_WARM_AUDIT_MB", 8),
            levels: env_list("BENCH_CONCURRENCY", "1,4,16,64,128,256"),
            rate_files: env_num("BENCH_RATE_FILES", d("300", "60").parse().unwrap_or(300)),
            rate_limit: env_num("BENCH_RATE_LIMIT", 10),
            rate_client: env_list("BENCH_RATE_CLIENT", "10,20"),
            naive_files: env_num("BENCH_NAIVE_FILES", d("100", "20").parse().unwrap_or(100)),
            burst: env_list("BENCH_BURST", d("2000,10000", "200,1000")),
            drops: env_num("BENCH_DROPS", d("80", "20").parse().unwrap_or(80)),
            drop_every: Duration::from_millis(env_num("BENCH_DROP_EVERY_MS", 300)),
            settle: Duration::from_millis(env_num("BENCH_SETTLE_MS", 100)),
            cpu: env_str("BENCH_CPU")
                .unwrap_or_else(|| d("1:30,4:15,12:8", "1:6,4:3,12:2").to_string())
                .split(',')
                .filter_map(|p| {
                    let (mp, n) = p.split_once(':')?;
                    Some((mp.trim().parse().ok()?, n.trim().parse().ok()?))
                })
                .collect(),
            verging_levels: env_list("BENCH_VERGING_CONCURRENCY", "16,64"),
            verging_files: env_num(
                "BENCH_VERGING_FILES",
                d("2000", "100").parse().unwrap_or(2000),
            ),
            verging_request: Duration::from_millis(env_num("BENCH_VERGING_REQUEST_MS", 20)),
            verging_poll: Duration::from_millis(env_num("BENCH_VERGING_POLL_MS", 100)),
            dir: env_str("BENCH_DIR").map(PathBuf::from),
        }
    }

    fn wants(&self, section: &str) -> bool {
        self.only.iter().any(|s| s == section)
    }
}

// ---------------------------------------------------------------------------
// Inputs: a few generated packshots, made unique by a JPEG comment segment
// (distinct bytes and SHA-256, identical pixels: every copy costs the same).

struct Pool {
    dir: PathBuf,
    files: Vec<PathBuf>,
}

/// `base` with a COM segment carrying `n` right after SOI.
fn with_comment(base: &[u8], n: usize) -> Vec<u8> {
    let text = format!("cutout bench picture {n}");
    let mut out = Vec::with_capacity(base.len() + text.len() + 4);
    out.extend_from_slice(&base[..2]);
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&((text.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&base[2..]);
    out
}

/// `n` distinct JPEGs of `w`×`h` in `dir` (named `p000000.jpg`, …).
fn make_pool(dir: &Path, n: usize, w: u32, h: u32, tag: &str) -> Pool {
    std::fs::create_dir_all(dir).expect("pool dir");
    let bases: Vec<Vec<u8>> = (0..8.min(n.max(1)))
        .map(|s| support::jpeg(w, h, 1000 + s as u32))
        .collect();
    let files = (0..n)
        .map(|i| {
            let p = dir.join(format!("{tag}{i:06}.jpg"));
            std::fs::write(&p, with_comment(&bases[i % bases.len()], i)).expect("write input");
            p
        })
        .collect();
    Pool {
        dir: dir.to_path_buf(),
        files,
    }
}

/// Put the first `n` pool pictures into `to` (hard links: instant, and the
/// pool keeps its copy when cutout moves the input to archive/).
fn link_into(pool: &Pool, n: usize, to: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(to).expect("mkdir");
    pool.files[..n.min(pool.files.len())]
        .iter()
        .map(|src| {
            let dst = to.join(src.file_name().expect("name"));
            if std::fs::hard_link(src, &dst).is_err() {
                std::fs::copy(src, &dst).expect("copy input");
            }
            dst
        })
        .collect()
}

// ---------------------------------------------------------------------------
// A site: folders, config, key file.

struct Bench {
    root: PathBuf,
    _tmp: tempfile::TempDir,
}

struct SiteCfg {
    concurrency: usize,
    rps: f64,
    settle: Duration,
}

impl Bench {
    fn new(parent: &Option<PathBuf>, fake: &FakeProvider, c: &SiteCfg) -> Bench {
        let tmp = match parent {
            Some(p) => tempfile::tempdir_in(p),
            None => tempfile::tempdir(),
        }
        .expect("tempdir");
        let root = tmp.path().to_path_buf();
        let base = fake.base_url_rembg();
        std::fs::write(root.join("rembg.key"), KEY).expect("key");
        std::fs::write(
            root.join("cutout.toml"),
            format!(
                "# written by benches/load.rs\nstate_dir = \"state\"\n\
                 [queue]\nconcurrency = {}\n\
                 [[inbox]]\npath = \"inbox\"\nsettle = \"{}ms\"\nprovider = \"r\"\n\
                 [providers.r]\nkind = \"rembg-com\"\nbase_url = \"{base}\"\n\
                 usage_url = \"{}\"\napi_key_file = \"rembg.key\"\n\
                 concurrency = {}\nrequests_per_second = {}\ntimeout = \"60s\"\n",
                c.concurrency,
                c.settle.as_millis(),
                fake.usage_url_rembg(),
                c.concurrency.min(256),
                c.rps,
            ),
        )
        .expect("config");
        std::fs::create_dir_all(root.join("inbox")).expect("inbox");
        std::fs::create_dir_all(root.join("outbox")).expect("outbox");
        Bench { root, _tmp: tmp }
    }

    /// The site of the rate-limit and side-by-side runs: concurrency 16,
    /// settle 250 ms, `requests_per_second = rps`.
    fn at16(k: &Knobs, fake: &FakeProvider, rps: f64) -> Bench {
        let c = SiteCfg {
            concurrency: 16,
            rps,
            settle: Duration::from_millis(250),
        };
        Bench::new(&k.dir, fake, &c)
    }

    fn inbox(&self) -> PathBuf {
        self.root.join("inbox")
    }
    fn outbox(&self) -> PathBuf {
        self.root.join("outbox")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        // `BENCH_WRAP="perf record -g -o FILE --"` (or strace …) runs every
        // cutout under a profiler; its CPU and RSS figures are then the
        // wrapper's, so use it for profiles only.
        let mut c = match env_str("BENCH_WRAP") {
            Some(w) => {
                let mut parts = w.split_whitespace();
                let mut c = Command::new(parts.next().expect("BENCH_WRAP command"));
                c.args(parts).arg(cutout_bin());
                c
            }
            None => Command::new(cutout_bin()),
        };
        c.args(args)
            .arg("--config")
            .arg(self.root.join("cutout.toml"))
            .current_dir(&self.root)
            .env_remove("CUTOUT_CONFIG")
            // The default log level (info): one line per picture, as users run it.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        c
    }

    fn log_file(&self, name: &str) -> std::fs::File {
        std::fs::File::create(self.root.join(name)).expect("log file")
    }

    /// `cutout process [extra]` to completion: exit status, wall time and
    /// the process's own CPU time (from wait4's rusage).
    fn process(&self, extra: &[&str]) -> Finished {
        let mut args = vec!["process"];
        args.extend_from_slice(extra);
        let t = Instant::now();
        // Reaped by wait4 below (std's wait would not give the rusage).
        #[allow(clippy::zombie_processes)]
        let child = self
            .cmd(&args)
            .stderr(self.log_file("process.log"))
            .spawn()
            .expect("spawn cutout process");
        let (status, cpu, max_rss_kb) = wait4_rss(child.id() as i32);
        Finished {
            status,
            wall: t.elapsed(),
            cpu,
            max_rss_kb,
        }
    }

    fn count(&self, dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .count()
            })
            .unwrap_or(0)
    }
}

/// The `cutout` under test: this build's, or `BENCH_CUTOUT_BIN` (to
/// measure a patched build with the same harness).
fn cutout_bin() -> PathBuf {
    env_str("BENCH_CUTOUT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(support::bin)
}

struct Finished {
    status: ExitStatus,
    wall: Duration,
    cpu: Duration,
    /// Peak resident set size (ru_maxrss), kB.
    max_rss_kb: u64,
}

/// Reap `pid`, returning its exit status and user+system CPU time.
fn wait4(pid: i32) -> (ExitStatus, Duration) {
    let (s, c, _) = wait4_rss(pid);
    (s, c)
}

/// Reap `pid`: exit status, user+system CPU time, peak RSS in kB.
fn wait4_rss(pid: i32) -> (ExitStatus, Duration, u64) {
    let mut status = 0;
    // SAFETY: rusage is plain old data, filled by the kernel.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (
        ExitStatus::from_raw(status),
        tv(ru.ru_utime) + tv(ru.ru_stime),
        ru.ru_maxrss.max(0) as u64,
    )
}

/// user+system CPU of a live process, from /proc/<pid>/stat.
fn proc_cpu(pid: &str) -> Duration {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = text.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_secs_f64(ticks as f64 / hz)
}

/// A `/proc/<pid>/status` field in kB (VmHWM, VmRSS).
fn proc_kb(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time of this process: the in-process fake provider, mostly.
fn self_cpu() -> Duration {
    proc_cpu("self")
}

fn spawn_daemon(b: &Bench) -> std::process::Child {
    b.cmd(&["run"])
        .stderr(b.log_file("daemon.log"))
        .spawn()
        .expect("spawn cutout run")
}

fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_daemon_ready(b: &Bench, child: &mut std::process::Child) {
    wait_for(Duration::from_secs(60), "the daemon to start", || {
        if let Ok(Some(s)) = child.try_wait() {
            panic!(
                "daemon exited at start ({s}): {}",
                read(&b.root.join("daemon.log"))
            );
        }
        read(&b.root.join("daemon.log")).contains("cutout is running")
    });
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn term_and_reap(child: std::process::Child) -> ExitStatus {
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    wait4(child.id() as i32).0
}

// ---------------------------------------------------------------------------
// Reading the fake's log.

fn removals(log: &[LogEntry]) -> Vec<&LogEntry> {
    let mut v: Vec<&LogEntry> = log
        .iter()
        .filter(|e| e.endpoint == Endpoint::RembgRemove)
        .collect();
    v.sort_by_key(|e| e.at);
    v
}

/// First request arrival → last answer; and how many were charged.
fn window(log: &[LogEntry]) -> (Duration, usize) {
    let r = removals(log);
    let (Some(first), Some(last)) = (
        r.first().map(|e| e.at),
        r.iter().map(|e| e.at + e.duration).max(),
    ) else {
        return (Duration::ZERO, 0);
    };
    (
        last.duration_since(first),
        r.iter().filter(|e| e.charged).count(),
    )
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[idx.min(v.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------
// The report.

struct Report {
    text: String,
}

impl Report {
    fn line(&mut self, s: impl AsRef<str>) {
        println!("{}", s.as_ref());
        let _ = writeln!(self.text, "{}", s.as_ref());
    }
}

fn machine() -> String {
    let cpuinfo = read(Path::new("/proc/cpuinfo"));
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_kb: u64 = read(Path::new("/proc/meminfo"))
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    format!(
        "{cores} cores ({model}), {:.0} GiB RAM, Linux {}",
        mem_kb as f64 / 1048576.0,
        read(Path::new("/proc/sys/kernel/osrelease")).trim()
    )
}

fn loadavg() -> String {
    read(Path::new("/proc/loadavg"))
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------
// Scenarios.

/// An audit log of about `bytes` made of earlier runs' outcome lines (job
/// ids far above anything this run uses).
fn prefill_audit(path: &Path, bytes: u64) {
    use std::io::Write;
    std::fs::create_dir_all(path.parent().expect("state dir")).expect("mkdir state");
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("audit.jsonl"));
    let mut written = 0u64;
    let mut job = 50_000_000u64;
    while written < bytes {
        let line = format!(
            "{{\"ts\":\"2026-01-01T00:00:00.000Z\",\"event\":\"succeeded\",\"job\":{job},\"inbox\":\"/srv/shop/inbox\",\"input\":\"earlier/picture-{job}.jpg\",\"sha256\":\"{:064x}\",\"bytes\":48213,\"format\":\"jpeg\",\"width\":1200,\"height\":900,\"provider\":\"r\",\"attempts\":1,\"duration_ms\":231,\"output\":\"/srv/shop/outbox/earlier/picture-{job}.png\",\"moved_to\":\"/srv/shop/archive/earlier/picture-{job}.jpg\",\"reason\":null,\"code\":null,\"remote_job\":null,\"credits\":null,\"duplicate_of\":null}}\n",
            job as u128 * 0x9E37_79B9_7F4A_7C15
        );
        f.write_all(line.as_bytes()).expect("write audit");
        written += line.len() as u64;
        job += 1;
    }
    f.flush().expect("flush audit");
}

fn throughput(k: &Knobs, r: &mut Report, pool: &Pool) {
    r.line(format!(
        "\n## Throughput (provider unlimited, {} ms per picture)\n",
        k.latency.as_millis()
    ));
    r.line("`cutout process` on a backlog of small JPEGs (400×300). *Steady* is pictures / (first request → last answer) at the provider; *end to end* includes start-up, scan and exit. Ideal = concurrency / latency. CPU = share of both cores used by the daemon and the fake provider together.\n");
    r.line("*At provider* = average number of requests the provider was working on (sum of its own times ÷ steady window); *provider ms* = its median own time per request (latency + its work). When *at provider* falls short of the concurrency, the daemon is the one not keeping the slots busy.\n");
    r.line("| concurrency | pictures | ideal /s | steady /s | ratio | end to end /s | ratio | at provider | provider ms | daemon CPU s | fake CPU s | CPU use | daemon peak RSS MB | charged twice |");
    r.line("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // The levels on a fresh state folder, then concurrency 64 again with an
    // audit log that already holds `warm_audit_mb` MiB (a daemon that has
    // run for a while: ~14,000 pictures make 8 MiB).
    let mut runs: Vec<(usize, u64)> = k.levels.iter().map(|&c| (c, 0)).collect();
    if k.warm_audit_mb > 0 {
        runs.push((64, k.warm_audit_mb));
    }
    for (c, warm) in runs {
        let n = k.files.min(k.per_slot * c).min(pool.files.len()).max(1);
        let fake = FakeProvider::start(Config::default().with_key(KEY).with_latency(k.latency));
        let b = Bench::new(
            &k.dir,
            &fake,
            &SiteCfg {
                concurrency: c,
                rps: 1000.0,
                settle: Duration::from_millis(250),
            },
        );
        if warm > 0 {
            prefill_audit(&b.root.join("state/audit.jsonl"), warm << 20);
        }
        let label = if warm > 0 {
            format!("{c}, audit log {warm} MiB")
        } else {
            c.to_string()
        };
        link_into(pool, n, &b.inbox());
        let fake_cpu0 = self_cpu();
        let run = b.process(&[]);
        let fake_cpu = self_cpu().saturating_sub(fake_cpu0);
        let log = fake.log();
        let (win, charged) = window(&log);
        let done = b.count(&b.outbox());
        let ideal = c as f64 / k.latency.as_secs_f64();
        let steady = charged as f64 / win.as_secs_f64().max(1e-9);
        let e2e = done as f64 / run.wall.as_secs_f64();
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as f64;
        let use_ = (run.cpu + fake_cpu).as_secs_f64() / run.wall.as_secs_f64() / cores;
        let ok = if run.status.success() && done == n {
            ""
        } else {
            " (INCOMPLETE)"
        };
        let reqs = removals(&log);
        let busy: f64 = reqs.iter().map(|e| e.duration.as_secs_f64()).sum::<f64>()
            / win.as_secs_f64().max(1e-9);
        let mut own: Vec<f64> = reqs.iter().map(|e| ms(e.duration)).collect();
        r.line(format!(
            "| {label} | {n}{ok} | {ideal:.0} | {steady:.1} | {:.2} | {e2e:.1} | {:.2} | {busy:.1} | {:.0} | {:.1} | {:.1} | {:.0}% | {:.0} | {} |",
            steady / ideal,
            e2e / ideal,
            pct(&mut own, 50.0),
            run.cpu.as_secs_f64(),
            fake_cpu.as_secs_f64(),
            use_ * 100.0,
            run.max_rss_kb as f64 / 1024.0,
            fake.doubly_charged().len()
        ));
    }
}

/// The verging kind: create-job → poll → download for every picture. The
/// fake takes `verging_request` per request and finishes a job
/// `latency` after creating it; cutout polls every `verging_poll`.
fn verging(k: &Knobs, r: &mut Report, pool: &Pool) {
    r.line(format!(
        "\n## Throughput, verging (job processing {} ms, {} ms per request, poll every {} ms)\n",
        k.latency.as_millis(),
        k.verging_request.as_millis(),
        k.verging_poll.as_millis()
    ));
    r.line("`cutout process` on a backlog of small JPEGs with `kind = \"verging\"`. Every picture is one create-job, polls until the job is done, and one download. *Job span* is, per job, create-job arrival → end of its result download, at the provider: the least a slot can spend on a picture with this poll interval. *Ideal* = concurrency ÷ median job span; *ratio* = steady ÷ ideal, i.e. how well cutout keeps its slots busy. *Floor* = concurrency ÷ (processing + 2 requests), what instant polling would give.\n");
    r.line("| concurrency | pictures | steady /s | job span p50 ms | ideal /s | ratio | floor /s | requests per picture | polls per picture | daemon CPU s | daemon peak RSS MB | charged twice |");
    r.line("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &c in &k.verging_levels {
        let n = k.verging_files.min(25 * c).min(pool.files.len()).max(1);
        let fake = FakeProvider::start(
            Config::default()
                .with_key(KEY)
                .with_latency(k.verging_request),
        );
        fake.set_job_processing(k.latency);
        let tmp = match &k.dir {
            Some(p) => tempfile::tempdir_in(p),
            None => tempfile::tempdir(),
        }
        .expect("tempdir");
        let root = tmp.path().to_path_buf();
        std::fs::write(root.join("verging.key"), KEY).expect("key");
        std::fs::write(
            root.join("cutout.toml"),
            format!(
                "# written by benches/load.rs\nstate_dir = \"state\"\n\
                 [queue]\nconcurrency = {c}\n\
                 [[inbox]]\npath = \"inbox\"\nsettle = \"250ms\"\nprovider = \"v\"\n\
                 [providers.v]\nkind = \"verging\"\nbase_url = \"{}\"\n\
                 api_key_file = \"verging.key\"\nconcurrency = {c}\n\
                 requests_per_second = 1000\ntimeout = \"60s\"\n\
                 poll_interval = \"{}ms\"\njob_timeout = \"5m\"\n",
                fake.base_url_verging(),
                k.verging_poll.as_millis()
            ),
        )
        .expect("config");
        std::fs::create_dir_all(root.join("outbox")).expect("outbox");
        let b = Bench { root, _tmp: tmp };
        link_into(pool, n, &b.inbox());
        let run = b.process(&[]);
        let log = fake.log();
        let done = b.count(&b.outbox());
        let ok = if run.status.success() && done == n {
            ""
        } else {
            " (INCOMPLETE)"
        };
        // Per job: create-job arrival → end of the `/files/<id>.png` download.
        let mut created: std::collections::HashMap<u64, Instant> = Default::default();
        for e in &log {
            if e.endpoint == Endpoint::VergingCreateJob {
                if let Some(id) = e.job_id {
                    created.insert(id, e.at);
                }
            }
        }
        let mut spans = Vec::new();
        let (mut first, mut last) = (None::<Instant>, None::<Instant>);
        for e in &log {
            if e.endpoint != Endpoint::VergingFile {
                continue;
            }
            let id = e
                .path
                .rsplit('/')
                .next()
                .and_then(|f| f.strip_suffix(".png"))
                .and_then(|i| i.parse::<u64>().ok());
            if let Some(start) = id.and_then(|id| created.get(&id)) {
                let end = e.at + e.duration;
                spans.push(ms(end.duration_since(*start)));
                last = Some(last.map_or(end, |l| l.max(end)));
            }
        }
        for t in created.values() {
            first = Some(first.map_or(*t, |f| f.min(*t)));
        }
        let win = match (first, last) {
            (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
            _ => f64::NAN,
        };
        let charged = log.iter().filter(|e| e.charged).count();
        let steady = charged as f64 / win.max(1e-9);
        let span = pct(&mut spans, 50.0);
        let ideal = c as f64 / (span / 1000.0);
        let floor = c as f64 / (k.latency + 2 * k.verging_request).as_secs_f64();
        let polls = log
            .iter()
            .filter(|e| e.endpoint == Endpoint::VergingJobs)
            .count();
        r.line(format!(
            "| {c} | {n}{ok} | {steady:.1} | {span:.0} | {ideal:.1} | {:.2} | {floor:.1} | {:.2} | {:.2} | {:.1} | {:.0} | {} |",
            steady / ideal,
            log.len() as f64 / done.max(1) as f64,
            polls as f64 / done.max(1) as f64,
            run.cpu.as_secs_f64(),
            run.max_rss_kb as f64 / 1024.0,
            fake.doubly_charged().len()
        ));
    }
}

/// The provider allows `limit`/s and answers 429 beyond (no Retry-After,
/// as rembg documents none).
fn rate_limited(k: &Knobs, r: &mut Report, pool: &Pool) {
    r.line(format!(
        "\n## Rate limit (provider allows {}/s, 429 beyond, no Retry-After; {} ms per picture)\n",
        k.rate_limit,
        k.latency.as_millis()
    ));
    r.line("*Achieved* = charged pictures / (first request → last answer). *429 after the first* = share of the requests sent after the first 429 that were answered 429.\n");
    r.line("| client requests_per_second | concurrency | pictures | achieved /s | goal | requests | 429s | 429 after the first | goal | wall s | charged twice |");
    r.line("|---:|---:|---:|---:|---|---:|---:|---:|---|---:|---:|");
    let n = k.rate_files.min(pool.files.len());
    for &rps in &k.rate_client {
        let fake = FakeProvider::start(
            Config::default()
                .with_key(KEY)
                .with_latency(k.latency)
                .with_rate_limit(Some(RateLimit::per_second(k.rate_limit))),
        );
        let b = Bench::at16(k, &fake, rps);
        link_into(pool, n, &b.inbox());
        let run = b.process(&[]);
        let log = fake.log();
        let (win, charged) = window(&log);
        let reqs = removals(&log);
        let first429 = reqs.iter().position(|e| e.status == Some(429));
        let (after, after429) = match first429 {
            Some(i) => (
                reqs.len() - i - 1,
                reqs[i + 1..]
                    .iter()
                    .filter(|e| e.status == Some(429))
                    .count(),
            ),
            None => (reqs.len(), 0),
        };
        let achieved = charged as f64 / win.as_secs_f64().max(1e-9);
        let share = if after == 0 {
            0.0
        } else {
            after429 as f64 / after as f64
        };
        let goal_rate = 0.9 * k.rate_limit as f64;
        let ok = if run.status.success() && b.count(&b.outbox()) == n {
            ""
        } else {
            " (INCOMPLETE)"
        };
        r.line(format!(
            "| {rps} | 16 | {n}{ok} | {achieved:.2} | {} ≥ {goal_rate:.0} | {} | {} | {:.1}% | {} ≤ 5% | {:.1} | {} |",
            if achieved >= goal_rate { "met" } else { "MISSED" },
            reqs.len(),
            reqs.iter().filter(|e| e.status == Some(429)).count(),
            share * 100.0,
            if share <= 0.05 { "met" } else { "MISSED" },
            run.wall.as_secs_f64(),
            fake.doubly_charged().len(),
        ));
    }
}

/// The client a user would otherwise write: one `curl` per picture, one
/// after the other, as the vendor's examples do.
fn naive_loop(fake: &FakeProvider, inputs: &Path, out: &Path) -> (Duration, usize, usize) {
    std::fs::create_dir_all(out).expect("mkdir");
    let script = r#"
set -u
for f in "$IN"/*.jpg; do
  b=$(basename "$f" .jpg)
  curl -s -o "$OUT/$b.png" -w '%{http_code}\n' \
    -H "x-api-key: $KEY" -F "image=@$f" -F "format=png" "$URL/rmbg"
done
"#;
    let t = Instant::now();
    let o = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("IN", inputs)
        .env("OUT", out)
        .env("KEY", KEY)
        .env("URL", fake.base_url_rembg())
        .stderr(Stdio::inherit())
        .output()
        .expect("bash + curl");
    let wall = t.elapsed();
    let codes = String::from_utf8_lossy(&o.stdout);
    let ok = codes.lines().filter(|l| l.trim() == "200").count();
    let r429 = codes.lines().filter(|l| l.trim() == "429").count();
    (wall, ok, r429)
}

fn naive(k: &Knobs, r: &mut Report, pool: &Pool) {
    if Command::new("curl").arg("--version").output().is_err() {
        r.line("\n## Naive client\n\nskipped: `curl` is not installed");
        return;
    }
    let n = k.naive_files.min(pool.files.len());
    r.line(format!(
        "\n## Side by side: cutout vs. a naive `curl` loop ({n} pictures, {} ms per picture)\n",
        k.latency.as_millis()
    ));
    r.line("The naive client is `for f in *.jpg; do curl -H \"x-api-key: …\" -F image=@$f -F format=png -o …; done` (the vendor's example in a loop). Both get exactly the same inputs; wall time from start to the last file written.\n");
    r.line("| provider | client | wall s | pictures/s | done | 429s | cutout ÷ naive |");
    r.line("|---|---|---:|---:|---:|---:|---:|");
    let cases = [
        ("unlimited".to_string(), None, 1000.0),
        (
            format!("{}/s limit", k.rate_limit),
            Some(k.rate_limit),
            k.rate_limit as f64,
        ),
    ];
    for (label, limit, rps) in cases {
        let cfg = Config::default()
            .with_key(KEY)
            .with_latency(k.latency)
            .with_rate_limit(limit.map(RateLimit::per_second));
        // cutout, concurrency 16.
        let fake = FakeProvider::start(cfg.clone());
        let b = Bench::at16(k, &fake, rps);
        link_into(pool, n, &b.inbox());
        let run = b.process(&[]);
        let c_done = b.count(&b.outbox());
        let c_rate = c_done as f64 / run.wall.as_secs_f64();
        let c429 = fake.count_429();
        // naive, same inputs, a fresh provider.
        let fake2 = FakeProvider::start(cfg);
        let staged = b.root.join("naive-in");
        link_into(pool, n, &staged);
        let (wall, ok, n429) = naive_loop(&fake2, &staged, &b.root.join("naive-out"));
        let n_rate = ok as f64 / wall.as_secs_f64();
        r.line(format!(
            "| {label} | cutout (concurrency 16, requests_per_second {rps}) | {:.1} | {c_rate:.1} | {c_done}/{n} | {c429} | {:.1}× |",
            run.wall.as_secs_f64(),
            c_rate / n_rate.max(1e-9)
        ));
        r.line(format!(
            "| {label} | naive curl loop | {:.1} | {n_rate:.1} | {ok}/{n} | {n429} | |",
            wall.as_secs_f64()
        ));
    }
}

/// Many files dropped at once into a running daemon (renamed in from a
/// folder on the same filesystem), and the same backlog waiting at start.
fn burst(k: &Knobs, r: &mut Report, pool: &Pool) {
    r.line(format!(
        "\n## Burst (provider unlimited, {} ms per picture; queue and provider concurrency 64; settle 250 ms)\n",
        k.latency.as_millis()
    ));
    r.line("*Dropped*: renamed into the inbox of a running, idle daemon as fast as the harness can (time 0 = the first rename). *At start*: already in the inbox when `cutout run` starts (time 0 = spawn). First picture = first request arriving at the provider. Peak RSS = VmHWM of the daemon after the drain; idle RSS = VmHWM before the drop.\n");
    r.line("*RSS as it drains* = VmRSS when a quarter, half, three quarters and all of the pictures were done: it tells memory held for the waiting files (high early, falling) from memory that grows with the pictures done. The last row repeats the smallest burst on a state folder whose audit log already holds the given size (a daemon that has run for a while).\n");
    r.line("| files | how | drop took s | first picture s | goal < 1 s | drained s | pictures/s | idle RSS MB | RSS as it drains MB | peak RSS MB | goal < 150 MB | daemon CPU s |");
    r.line("|---:|---|---:|---:|---|---:|---:|---:|---|---:|---|---:|");
    let settle = Duration::from_millis(250);
    let mut cases: Vec<(usize, bool, u64)> = k.burst.iter().map(|&n| (n, true, 0)).collect();
    if let Some(&max) = k.burst.iter().max() {
        cases.push((max, false, 0));
    }
    if let (Some(&min), true) = (k.burst.iter().min(), k.warm_audit_mb > 0) {
        cases.push((min, true, k.warm_audit_mb));
    }
    for (n, dropped, warm) in cases {
        let n = n.min(pool.files.len());
        let fake = FakeProvider::start(Config::default().with_key(KEY).with_latency(k.latency));
        let b = Bench::new(
            &k.dir,
            &fake,
            &SiteCfg {
                concurrency: 64,
                rps: 1000.0,
                settle,
            },
        );
        if warm > 0 {
            prefill_audit(&b.root.join("state/audit.jsonl"), warm << 20);
        }
        let staging = b.root.join("staging");
        let (child, t0, drop_took, idle_kb) = if dropped {
            let staged = link_into(pool, n, &staging);
            let mut child = spawn_daemon(&b);
            wait_daemon_ready(&b, &mut child);
            let idle = proc_kb(child.id() as i32, "VmHWM");
            let t0 = Instant::now();
            for p in &staged {
                std::fs::rename(p, b.inbox().join(p.file_name().expect("name"))).expect("rename");
            }
            (child, t0, t0.elapsed(), idle)
        } else {
            link_into(pool, n, &b.inbox());
            let t0 = Instant::now();
            let child = spawn_daemon(&b);
            (child, t0, Duration::ZERO, 0)
        };
        let pid = child.id() as i32;
        let mut first: Option<Duration> = None;
        let mut rss_at: Vec<u64> = Vec::new();
        let limit = Duration::from_secs(60) + k.latency * (n as u32) / 8;
        loop {
            if first.is_none() {
                first = fake
                    .log()
                    .iter()
                    .filter(|e| e.endpoint == Endpoint::RembgRemove)
                    .map(|e| e.at)
                    .min()
                    .map(|a| a.saturating_duration_since(t0));
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            let c = b.count(&b.outbox());
            while rss_at.len() < 3 && c * 4 >= n * (rss_at.len() + 1) {
                rss_at.push(proc_kb(pid, "VmRSS"));
            }
            if c >= n {
                rss_at.push(proc_kb(pid, "VmRSS"));
                break;
            }
            if t0.elapsed() > limit {
                eprintln!("burst of {n}: gave up after {limit:?} with {c} done");
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let drained = t0.elapsed();
        let peak = proc_kb(pid, "VmHWM");
        let cpu = proc_cpu(&pid.to_string());
        let st = term_and_reap(child);
        let done = b.count(&b.outbox());
        let first_s = first.map(|d| d.as_secs_f64()).unwrap_or(f64::NAN);
        r.line(format!(
            "| {n} | {}{} | {:.2} | {first_s:.2} | {} | {:.1} | {:.1} | {} | {} | {:.1} | {} | {:.1} |{}",
            if dropped { "dropped" } else { "at start" },
            if warm > 0 { format!(", audit log {warm} MiB") } else { String::new() },
            drop_took.as_secs_f64(),
            if first_s < 1.0 { "met" } else { "MISSED" },
            drained.as_secs_f64(),
            done as f64 / drained.as_secs_f64(),
            if idle_kb > 0 {
                format!("{:.1}", idle_kb as f64 / 1024.0)
            } else {
                "–".into()
            },
            rss_at
                .iter()
                .map(|kb| format!("{:.0}", *kb as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(" / "),
            peak as f64 / 1024.0,
            if (peak as f64 / 1024.0) < 150.0 {
                "met"
            } else {
                "MISSED"
            },
            cpu.as_secs_f64(),
            if done == n && st.success() {
                String::new()
            } else {
                format!(" INCOMPLETE: {done}/{n}, exit {st}")
            },
        ));
    }
}

/// Pictures dropped one at a time into a running daemon, well below its
/// capacity: drop → cut-out visible in the outbox, minus settle and minus
/// the provider's own time.
fn latency(k: &Knobs, r: &mut Report, pool: &Pool) {
    use notify::Watcher;
    let n = k.drops.min(pool.files.len());
    r.line(format!(
        "\n## Latency: drop → cut-out ({n} pictures dropped one every {}–{} ms; settle {} ms; provider {} ms)\n",
        k.drop_every.as_millis(),
        k.drop_every.as_millis() + 99,
        k.settle.as_millis(),
        k.latency.as_millis()
    ));
    r.line("Drop = the rename into the inbox; cut-out = the inotify event of its final name in the outbox. Provider = the fake's own time for that request (arrival → answer). Overhead = drop→cut-out − settle − provider. Split: *pick-up* = drop → request arrives (includes settle); *finish* = answer → cut-out visible.\n");
    let fake = FakeProvider::start(Config::default().with_key(KEY).with_latency(k.latency));
    let b = Bench::new(
        &k.dir,
        &fake,
        &SiteCfg {
            concurrency: 4,
            rps: 1000.0,
            settle: k.settle,
        },
    );
    let staging = b.root.join("staging");
    let staged = link_into(pool, n, &staging);
    let (tx, rx) = std::sync::mpsc::channel::<(PathBuf, Instant)>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            let now = Instant::now();
            for p in ev.paths {
                let _ = tx.send((p, now));
            }
        }
    })
    .expect("watcher");
    watcher
        .watch(&b.outbox(), notify::RecursiveMode::NonRecursive)
        .expect("watch outbox");
    let mut child = spawn_daemon(&b);
    wait_daemon_ready(&b, &mut child);
    let mut dropped = Vec::with_capacity(n);
    for p in &staged {
        let name = p.file_name().expect("name").to_os_string();
        let t = Instant::now();
        std::fs::rename(p, b.inbox().join(&name)).expect("rename");
        dropped.push((name.to_string_lossy().into_owned(), t));
        // A random extra 0–99 ms so drops do not lock to the daemon's timers.
        std::thread::sleep(k.drop_every + Duration::from_millis(fastrand::u64(0..100)));
    }
    let mut seen: std::collections::HashMap<String, Instant> = Default::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < n && Instant::now() < deadline {
        if let Ok((p, t)) = rx.recv_timeout(Duration::from_millis(200)) {
            let name = p
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.ends_with(".png") && !name.starts_with('.') && p.exists() {
                seen.entry(name).or_insert(t);
            }
        }
    }
    let _ = term_and_reap(child);
    drop(watcher);
    let log = fake.log();
    let (mut e2e, mut prov, mut over, mut pick, mut fin) = (vec![], vec![], vec![], vec![], vec![]);
    for (name, t_drop) in &dropped {
        let out = name.replace(".jpg", ".png");
        let Some(t_out) = seen.get(&out) else {
            continue;
        };
        let Some(req) = log.iter().find(|e| {
            e.endpoint == Endpoint::RembgRemove && e.file_name.as_deref() == Some(name.as_str())
        }) else {
            continue;
        };
        let total = t_out.duration_since(*t_drop);
        e2e.push(ms(total));
        prov.push(ms(req.duration));
        over.push(ms(total) - ms(k.settle) - ms(req.duration));
        pick.push(ms(req.at.saturating_duration_since(*t_drop)));
        fin.push(ms(t_out.saturating_duration_since(req.at + req.duration)));
    }
    r.line("| measured | pictures | p50 ms | p95 ms | max ms |");
    r.line("|---|---:|---:|---:|---:|");
    for (label, v) in [
        ("drop → cut-out", &mut e2e),
        ("provider's own time", &mut prov),
        ("pick-up (drop → request; settle included)", &mut pick),
        ("finish (answer → cut-out visible)", &mut fin),
        ("**overhead beyond settle** (goal p95 < 50 ms)", &mut over),
    ] {
        let max = v.iter().cloned().fold(f64::NAN, f64::max);
        r.line(format!(
            "| {label} | {} | {:.1} | {:.1} | {max:.1} |",
            v.len(),
            pct(v, 50.0),
            pct(v, 95.0)
        ));
    }
    let p95 = pct(&mut over, 95.0);
    r.line(format!(
        "\nOverhead p95 {p95:.1} ms: goal {}.",
        if p95 < 50.0 { "met" } else { "MISSED" }
    ));
}

/// The daemon's own CPU per picture (read, hash, validate = full decode,
/// upload, check the answer = full decode, write + fsync, state, audit),
/// against a provider with no latency. `--dry-run` (read, hash, validate
/// only) alongside; a run on an empty inbox is subtracted from both.
fn cpu(k: &Knobs, r: &mut Report) {
    r.line("\n## CPU per picture (the daemon's own user+system time; provider without latency)\n");
    r.line("`cutout process` with concurrency 2 over N distinct JPEGs of each size; CPU from wait4() of the process, minus an empty run's start-up cost. *Dry run* = read, hash and validate only (`--dry-run`). The full run adds the upload, checking the returned PNG (a full decode), writing and fsyncing it, the state database and the audit line.\n");
    r.line("| picture | JPEG KB | N | full run ms/picture | dry run ms/picture | full ms per MP |");
    r.line("|---|---:|---:|---:|---:|---:|");
    let parent = &k.dir;
    for &(mp, n) in &k.cpu {
        let (w, h) = match mp {
            1 => (1155, 866),
            4 => (2310, 1732),
            12 => (4000, 3000),
            m => {
                let side = ((m as f64 * 1e6 / 12.0).sqrt()) as u32;
                (side * 4, side * 3)
            }
        };
        let fake = FakeProvider::start(Config::default().with_key(KEY));
        let b = Bench::new(
            parent,
            &fake,
            &SiteCfg {
                concurrency: 2,
                rps: 1000.0,
                settle: Duration::from_millis(250),
            },
        );
        let pool = make_pool(&b.root.join("pool"), n, w, h, &format!("mp{mp}-"));
        let kb = std::fs::metadata(&pool.files[0])
            .map(|m| m.len())
            .unwrap_or(0) as f64
            / 1024.0;
        let empty = b.process(&[]);
        link_into(&pool, n, &b.inbox());
        let dry = b.process(&["--dry-run"]);
        let full = b.process(&[]);
        let done = b.count(&b.outbox());
        let per = |f: &Finished| ms(f.cpu.saturating_sub(empty.cpu)) / n as f64;
        let mpx = (w * h) as f64 / 1e6;
        r.line(format!(
            "| {w}×{h} ({mpx:.1} MP) | {kb:.0} | {n} | {:.1} | {:.1} | {:.1} |{}",
            per(&full),
            per(&dry),
            per(&full) / mpx,
            if done == n && full.status.success() {
                String::new()
            } else {
                format!(" INCOMPLETE {done}/{n}")
            }
        ));
        let _ = std::fs::remove_dir_all(&pool.dir);
    }
}

#[test]
#[ignore = "benchmark: run scripts/bench.sh"]
fn load() {
    let k = Knobs::from_env();
    let mut r = Report {
        text: String::new(),
    };
    let started = Instant::now();
    r.line("# cutout load benchmark");
    r.line(format!(
        "\nMachine: {}. Load average at start: {}.",
        machine(),
        loadavg()
    ));
    if let Some(rev) = env_str("BENCH_REV") {
        r.line(format!("Code: {rev}."));
    }
    r.line(format!(
        "Binary: {} (release). Knobs: {k:?}",
        cutout_bin().display()
    ));

    let work = match &k.dir {
        Some(p) => tempfile::tempdir_in(p),
        None => tempfile::tempdir(),
    }
    .expect("tempdir");
    let need = [
        if k.wants("throughput") { k.files } else { 0 },
        if k.wants("verging") {
            k.verging_files
        } else {
            0
        },
        if k.wants("ratelimit") {
            k.rate_files
        } else {
            0
        },
        if k.wants("autorate") {
            autorate::runs().iter().map(|r| r.1).max().unwrap_or(0)
        } else {
            0
        },
        if k.wants("naive") { k.naive_files } else { 0 },
        if k.wants("burst") {
            k.burst.iter().copied().max().unwrap_or(0)
        } else {
            0
        },
        if k.wants("latency") { k.drops } else { 0 },
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    let t = Instant::now();
    let pool = make_pool(&work.path().join("pool"), need, 400, 300, "p");
    eprintln!(
        "generated {need} inputs in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    if k.wants("throughput") {
        throughput(&k, &mut r, &pool);
    }
    if k.wants("verging") {
        verging(&k, &mut r, &pool);
    }
    if k.wants("ratelimit") {
        rate_limited(&k, &mut r, &pool);
    }
    if k.wants("autorate") {
        autorate::autorate(&k, &mut r, &pool);
    }
    if k.wants("naive") {
        naive(&k, &mut r, &pool);
    }
    if k.wants("burst") {
        burst(&k, &mut r, &pool);
    }
    if k.wants("latency") {
        latency(&k, &mut r, &pool);
    }
    if k.wants("cpu") {
        cpu(&k, &mut r);
    }
    r.line(format!(
        "\nTotal {:.0} s. Load average at the end: {}.",
        started.elapsed().as_secs_f64(),
        loadavg()
    ));
    if let Some(out) = env_str("BENCH_OUT") {
        if let Some(dir) = Path::new(&out).parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(&out, &r.text).expect("write BENCH_OUT");
        eprintln!("report written to {out}");
    }
}
