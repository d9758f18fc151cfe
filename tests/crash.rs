//! Whole-run crash and outage invariants against the hosted `rembg-com`
//! provider (the fake provider server on 127.0.0.1): `kill -9` at random
//! moments during a batch, restart, repeat; the provider going away and
//! coming back on the same port; 5xx bursts, cut bodies and dropped
//! connections sprinkled over a run. After every run:
//!
//! - every input ends in exactly one place (archive/ with its cut-out in
//!   outbox/, rejected/ or failed/ with a reason file), and the one its kind
//!   calls for; nothing is left in the inbox, no temp files, no extra
//!   outputs;
//! - every input has exactly one outcome line in the audit log, and every
//!   picture (SHA-256) exactly one `succeeded` line — a copy is a
//!   `duplicate`, never processed again;
//! - the provider's own request log shows no picture charged twice, except
//!   pictures whose paid answer was in flight at a kill or at an outage, or
//!   was cut off by the provider itself (those are counted and printed).
//!
//! The per-fault behaviour of the provider client (one 5xx is retried, a
//! cut body is retried, …) is tests/hosted.rs's; this file checks runs.
//!
//! The quick versions run in the default `cargo test`; the full 300-file,
//! 10-kill run is `#[ignore]`d and run by `scripts/bench.sh` (sizes from
//! `CRASH_FILES`, `CRASH_KILLS`; `CRASH_SEED` replays a run's inputs and
//! choices; `CRASH_KEEP=DIR` keeps each kill run's site for a post-mortem).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fake_provider::{Config, Endpoint, FakeProvider, Fault, FaultRule, LogEntry};
use support::*;

const LONG: Duration = Duration::from_secs(180);
const KEY: &str = "test-rembg-key";

// ---------------------------------------------------------------------------
// The inputs and what each must become.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A good picture: cut-out in outbox/, original in archive/.
    Good,
    /// Same bytes as an earlier good picture: archive/, reused cut-out.
    Dup,
    /// Not a usable picture: rejected/ + reason file.
    Bad,
    /// The provider refuses it for good (400): failed/ + reason file.
    Doomed,
}

struct Input {
    rel: String,
    kind: Kind,
}

/// `n` inputs: mostly good JPEGs and PNGs (some in subfolders, some with
/// spaces and non-ASCII letters in their names), plus a few duplicates, bad
/// files and pictures the provider refuses. Returns them with their bytes.
fn corpus(n: usize, seed: u64) -> Vec<(Input, Vec<u8>)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out: Vec<(Input, Vec<u8>)> = Vec::with_capacity(n);
    for i in 0..n {
        let kind = match i % 20 {
            7 => Kind::Bad,
            13 if i > 20 => Kind::Dup,
            17 => Kind::Doomed,
            _ => Kind::Good,
        };
        let dir = match i % 5 {
            0 => "",
            1 => "shop a/",
            2 => "shop a/summer/",
            3 => "böcker/",
            _ => "b/",
        };
        let (w, h) = (48 + rng.u32(0..64), 40 + rng.u32(0..48));
        let seed32 = seed as u32 ^ (i as u32).wrapping_mul(2_654_435_761);
        let (name, bytes) = match kind {
            Kind::Good if i % 3 == 0 => (format!("p{i:04} é.png"), png(w, h, seed32)),
            Kind::Good => (format!("p{i:04}.jpg"), jpeg(w, h, seed32)),
            Kind::Dup => {
                // The bytes of an earlier good picture, under a new name.
                let earlier = out
                    .iter()
                    .filter(|(x, _)| x.kind == Kind::Good)
                    .nth(rng.usize(0..i / 2))
                    .map(|(x, b)| (x.rel.clone(), b.clone()))
                    .expect("an earlier good picture");
                let ext = if earlier.0.ends_with(".png") {
                    "png"
                } else {
                    "jpg"
                };
                (format!("copy{i:04}.{ext}"), earlier.1)
            }
            Kind::Bad => match (i / 20) % 3 {
                0 => (
                    format!("notes{i:04}.jpg"),
                    b"not a picture at all\n".to_vec(),
                ),
                1 => (format!("empty{i:04}.jpg"), Vec::new()),
                _ => {
                    let mut b = jpeg(w, h, seed32);
                    b.truncate(b.len() / 2);
                    (format!("cut{i:04}.jpg"), b)
                }
            },
            Kind::Doomed => (format!("doomed{i:04}.jpg"), jpeg(w, h, seed32)),
        };
        out.push((
            Input {
                rel: format!("{dir}{name}"),
                kind,
            },
            bytes,
        ));
    }
    out
}

/// The cut-out of `rel`: outbox/<dir>/<stem>.png.
fn output_of(rel: &str) -> String {
    let p = std::path::Path::new(rel);
    p.with_extension("png").to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------
// The site.

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A site whose inbox uses a `rembg-com` provider at `base`.
fn site_for(base: &str, concurrency: usize, max_attempts: u32) -> Site {
    let site = Site::new("");
    site.write_config(&format!(
        "state_dir = \"state\"\nshutdown_grace = \"10s\"\n\
         [queue]\nconcurrency = {concurrency}\n\
         [retry]\nmax_attempts = {max_attempts}\ninitial_delay = \"50ms\"\nmax_delay = \"400ms\"\n\
         [[inbox]]\npath = \"inbox\"\nsettle = \"100ms\"\nprovider = \"r\"\n\
         empty_grace = \"0s\"\n\
         [providers.r]\nkind = \"rembg-com\"\nbase_url = \"{base}\"\n\
         usage_url = \"{base}/api/membership-usage\"\napi_key_file = \"rembg.key\"\n\
         concurrency = {concurrency}\nrequests_per_second = 500\ntimeout = \"10s\"\n\
         recheck_interval = \"200ms\"\n"
    ));
    std::fs::write(site.root().join("rembg.key"), KEY).expect("key file");
    site
}

/// Doomed pictures are refused by the provider with a 400, for good.
fn fake_with(cfg: Config) -> FakeProvider {
    let fake = FakeProvider::start(cfg);
    fake.fail_file("doomed", "Image is corrupt: bad huffman table");
    fake
}

/// Files in the inbox that cutout would take (hidden files are ignored by
/// cutout and left in place).
fn waiting(site: &Site) -> usize {
    visible(site.files(&site.inbox())).len()
}

fn visible(files: Vec<String>) -> Vec<String> {
    files
        .into_iter()
        .filter(|f| !f.rsplit('/').next().unwrap_or("").starts_with('.'))
        .collect()
}

// ---------------------------------------------------------------------------
// The invariants.

/// What the charge accounting found.
#[derive(Debug, Default)]
struct Charges {
    /// Charged requests in all.
    charged: usize,
    /// Pictures charged more than once.
    doubly: usize,
    /// … of which explained by a kill or outage while the paid answer was on
    /// its way or not yet written.
    at_a_kill: usize,
    /// … of which explained by the provider cutting its own answer
    /// (truncated body, connection dropped after charging).
    cut_by_provider: usize,
}

/// A moment the daemon lost its work: a `kill -9`, or the provider going
/// away. Both clocks: the fake logs `Instant`s, the audit log wall time.
#[derive(Debug, Clone, Copy)]
struct Cut {
    at: Instant,
    wall: std::time::SystemTime,
}

impl Cut {
    fn now() -> Cut {
        Cut {
            at: Instant::now(),
            wall: std::time::SystemTime::now(),
        }
    }
}

/// When each picture's outcome (`succeeded` or `duplicate`) was first
/// recorded in the audit log, by SHA-256.
fn recorded_at(site: &Site) -> HashMap<String, std::time::SystemTime> {
    let mut m: HashMap<String, std::time::SystemTime> = HashMap::new();
    for r in site.audit() {
        if !matches!(r["event"].as_str(), Some("succeeded" | "duplicate")) {
            continue;
        }
        let (Some(h), Some(ts)) = (r["sha256"].as_str(), r["ts"].as_str()) else {
            continue;
        };
        if let Ok(t) = humantime::parse_rfc3339(ts) {
            let e = m.entry(h.to_string()).or_insert(t);
            *e = (*e).min(t);
        }
    }
    m
}

/// Charges per picture from the provider's log. A second charge is
/// explained only by
/// - a kill (or outage) after the first request arrived and before the
///   second, at a moment when the first answer's result was not yet
///   recorded (no audit outcome for that picture before the kill) — the
///   paid answer was in flight; or
/// - the provider cutting its own paid answer (truncated body, connection
///   dropped after charging), which no client can tell from a lost one.
///
/// Anything else is a picture paid twice: the test fails.
fn account(
    log: &[LogEntry],
    cuts: &[Cut],
    recorded: &HashMap<String, std::time::SystemTime>,
) -> Charges {
    let mut by_hash: HashMap<&str, Vec<&LogEntry>> = HashMap::new();
    let mut c = Charges::default();
    for e in log.iter().filter(|e| e.charged) {
        c.charged += 1;
        if let Some(h) = e.image_sha256.as_deref() {
            by_hash.entry(h).or_default().push(e);
        }
    }
    let mut unexplained = Vec::new();
    for (hash, mut charges) in by_hash {
        if charges.len() < 2 {
            continue;
        }
        c.doubly += 1;
        charges.sort_by_key(|e| e.at);
        let done_at = recorded.get(hash).copied();
        let (mut by_kill, mut by_cut) = (false, false);
        for pair in charges.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let cut = matches!(a.fault.as_deref(), Some("truncate" | "drop-after-charge"));
            let killed = cuts
                .iter()
                .any(|k| k.at >= a.at && k.at <= b.at && done_at.is_none_or(|d| d > k.wall));
            by_kill |= killed;
            by_cut |= cut && !killed;
            if !(killed || cut) {
                unexplained.push(format!(
                    "picture {hash} charged again (request {} after {}; outcome recorded {:?}) with no kill, outage or cut answer while its result was in flight",
                    b.seq,
                    a.seq,
                    done_at.map(humantime::format_rfc3339_millis)
                ));
            }
        }
        if by_kill {
            c.at_a_kill += 1;
        } else if by_cut {
            c.cut_by_provider += 1;
        }
    }
    assert!(
        unexplained.is_empty(),
        "pictures paid for twice:\n{}",
        unexplained.join("\n")
    );
    c
}

/// Every input in exactly one place, the one its kind calls for; one
/// outcome line each; nothing left over.
fn assert_all_in_place(site: &Site, inputs: &[Input]) {
    let left = visible(site.files(&site.inbox()));
    assert!(left.is_empty(), "left in the inbox: {left:?}");
    let archive = site.files(&site.archive());
    let rejected = site.files(&site.rejected());
    let failed = site.files(&site.failed());
    let outbox = site.files(&site.outbox());
    let audit = site.audit();
    let mut outcomes: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in &audit {
        let ev = r["event"].as_str().unwrap_or("");
        if ev != "retry" {
            let input = r["input"].as_str().unwrap_or("");
            outcomes.entry(input).or_default().push(ev);
        }
    }
    let mut problems = Vec::new();
    for inp in inputs {
        let rel = inp.rel.as_str();
        let has = |l: &[String], p: &str| l.iter().any(|f| f == p);
        let places: Vec<&str> = [
            ("archive", has(&archive, rel)),
            ("rejected", has(&rejected, rel)),
            ("failed", has(&failed, rel)),
        ]
        .iter()
        .filter(|(_, here)| *here)
        .map(|(n, _)| *n)
        .collect();
        let (want_place, want_events): (&str, &[&str]) = match inp.kind {
            // Of two inputs with the same bytes, whichever is taken first
            // succeeds and the other is its duplicate.
            Kind::Good | Kind::Dup => ("archive", &["succeeded", "duplicate"]),
            Kind::Bad => ("rejected", &["rejected"]),
            Kind::Doomed => ("failed", &["failed"]),
        };
        if places != [want_place] {
            let why = places
                .iter()
                .filter(|p| **p != "archive")
                .map(|p| read_text(&site.root().join(p).join(format!("{rel}.reason.json"))))
                .collect::<Vec<_>>()
                .join(" ");
            problems.push(format!(
                "{rel}: in {places:?}, expected [{want_place}] {why}"
            ));
        }
        let evs = outcomes.get(rel).cloned().unwrap_or_default();
        if evs.len() != 1 || !want_events.contains(&evs[0]) {
            problems.push(format!(
                "{rel}: audit outcomes {evs:?}, expected one of {want_events:?}"
            ));
        }
        match inp.kind {
            Kind::Good | Kind::Dup => {
                let out = output_of(rel);
                if !has(&outbox, &out) {
                    problems.push(format!("{rel}: no cut-out {out}"));
                }
            }
            Kind::Bad | Kind::Doomed => {
                let list = if inp.kind == Kind::Bad {
                    &rejected
                } else {
                    &failed
                };
                if !has(list, &format!("{rel}.reason.json")) {
                    problems.push(format!("{rel}: no reason file"));
                }
            }
        }
    }
    let winners = inputs
        .iter()
        .filter(|i| matches!(i.kind, Kind::Good | Kind::Dup))
        .count();
    // A kill during start-up can leave the folder check's empty probe file
    // (`.cutout-probe-…`) behind; it is never swept (reported as a bug; see
    // BENCHMARKS.md). Counted and printed, not failed on.
    let probes: Vec<String> = [
        site.outbox(),
        site.archive(),
        site.rejected(),
        site.failed(),
        site.inbox(),
    ]
    .iter()
    .flat_map(|d| site.files(d).into_iter().map(move |f| d.join(f)))
    .filter(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".cutout-probe-"))
    })
    .map(|p| p.display().to_string())
    .collect();
    if !probes.is_empty() {
        eprintln!(
            "LITTER: {} probe file(s) left by a kill at start-up: {probes:?}",
            probes.len()
        );
    }
    let outbox: Vec<String> = outbox
        .into_iter()
        .filter(|f| {
            !f.rsplit('/')
                .next()
                .unwrap_or("")
                .starts_with(".cutout-probe-")
        })
        .collect();
    if outbox.len() != winners {
        problems.push(format!(
            "outbox has {} files for {winners} successes (extra or numbered outputs?)",
            outbox.len()
        ));
    }
    for dir in [
        site.outbox(),
        site.archive(),
        site.rejected(),
        site.failed(),
        site.inbox(),
    ] {
        for f in site.files(&dir) {
            if f.ends_with(".cutout-tmp") {
                problems.push(format!("temp file left: {}", dir.join(f).display()));
            }
        }
    }
    // Per picture (SHA-256) exactly one success: a copy is never processed
    // (nor paid) again.
    let mut per_hash: HashMap<&str, (usize, usize)> = HashMap::new();
    for r in &audit {
        let h = r["sha256"].as_str().unwrap_or("");
        match r["event"].as_str() {
            Some("succeeded") => per_hash.entry(h).or_default().0 += 1,
            Some("duplicate") => per_hash.entry(h).or_default().1 += 1,
            _ => {}
        }
    }
    for (h, (ok, _dup)) in &per_hash {
        if *ok != 1 {
            let lines: Vec<String> = audit
                .iter()
                .filter(|r| r["sha256"] == *h)
                .map(|r| r.to_string())
                .collect();
            problems.push(format!(
                "picture {h}: {ok} `succeeded` lines, expected 1:\n  {}",
                lines.join("\n  ")
            ));
        }
    }
    // Outcome lines with an input we never dropped would be a mix-up.
    for input in outcomes.keys() {
        if !inputs.iter().any(|i| i.rel == *input) {
            problems.push(format!("audit outcome for an unknown input {input:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    // A few cut-outs, opened: real transparency.
    for inp in inputs.iter().filter(|i| i.kind == Kind::Good).take(3) {
        assert_cutout(&site.outbox().join(output_of(&inp.rel)));
    }
}

/// `CRASH_KEEP=DIR`: copy the site (folders, state database, audit log,
/// daemon logs) to DIR/<seed> for a post-mortem.
fn keep_for_inspection(site: &Site, seed: u64) {
    if let Ok(dir) = std::env::var("CRASH_KEEP") {
        let to = std::path::Path::new(&dir).join(seed.to_string());
        let _ = std::fs::create_dir_all(&to);
        let _ = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", site.root().display()))
            .arg(&to)
            .status();
    }
}

fn read_text(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn wait_drained(site: &Site, d: &Daemon, inputs: usize) {
    let t = Instant::now();
    loop {
        let outcomes = site
            .audit()
            .iter()
            .filter(|r| r["event"] != "retry")
            .count();
        if waiting(site) == 0 && outcomes >= inputs {
            return;
        }
        if t.elapsed() > LONG {
            panic!(
                "not drained after {LONG:?}: {} waiting, {outcomes} outcomes of {inputs}; log:\n{}",
                waiting(site),
                d.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(mut d: Daemon) -> String {
    d.term();
    let st = d.wait(LONG);
    let log = d.log_text();
    assert!(st.success(), "daemon exit {st:?}; log:\n{log}");
    log
}

// ---------------------------------------------------------------------------
// kill -9 at random moments, restart, repeat.

struct KillRun {
    files: usize,
    kills: usize,
    /// Kills that came while pictures were still waiting in the inbox.
    kills_mid_work: usize,
    charges: Charges,
    seed: u64,
    elapsed: Duration,
}

fn kill_run(files: usize, kills: usize, latency: Duration, concurrency: usize) -> KillRun {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("kill run: {files} files, {kills} kills, seed {seed} (CRASH_SEED={seed} replays the inputs and kill choices; timing still varies)");
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(seed);
    let fake = fake_with(Config::default().with_latency(latency));
    let site = site_for(&fake.base_url_rembg(), concurrency, 5);
    let all = corpus(files, seed);
    // Two thirds are waiting at the first start; the rest arrive while the
    // second daemon runs.
    let first = files * 2 / 3;
    for (inp, bytes) in &all[..first] {
        site.drop_file(&inp.rel, bytes);
    }
    let per_kill = (files / (kills + 1)).max(1) as u64;
    let mut kill_times = Vec::new();
    let mut kills_mid_work = 0;
    for k in 0..kills {
        let mut d = site.spawn_daemon();
        if k == 1 {
            for (inp, bytes) in &all[first..] {
                site.drop_file(&inp.rel, bytes);
            }
        }
        if rng.u8(0..4) == 0 {
            // Early: during start-up, recovery or the first scan.
            std::thread::sleep(Duration::from_millis(rng.u64(0..400)));
        } else {
            // Mid-work: after a random number of further requests.
            let target = fake.log().len() as u64 + rng.u64(1..=per_kill);
            let t = Instant::now();
            while (fake.log().len() as u64) < target && t.elapsed() < Duration::from_secs(20) {
                if waiting(&site) == 0 && k >= 1 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(rng.u64(0..40)));
        }
        if waiting(&site) > 0 {
            kills_mid_work += 1;
        }
        kill_times.push(Cut::now());
        d.kill9();
    }
    if kills < 2 {
        for (inp, bytes) in &all[first..] {
            site.drop_file(&inp.rel, bytes);
        }
    }
    let d = site.spawn_daemon();
    wait_drained(&site, &d, files);
    stop(d);
    let inputs: Vec<Input> = all.into_iter().map(|(i, _)| i).collect();
    keep_for_inspection(&site, seed);
    assert_all_in_place(&site, &inputs);
    let charges = account(&fake.log(), &kill_times, &recorded_at(&site));
    // Every picture the provider worked on was charged at least once, and
    // pictures never reach it twice more than the kills can explain.
    let sent_hashes: std::collections::HashSet<String> =
        fake.charged_hashes().into_iter().collect();
    let goods: std::collections::HashSet<String> = site
        .audit_events("succeeded")
        .iter()
        .filter_map(|r| r["sha256"].as_str().map(str::to_string))
        .collect();
    assert!(
        goods.is_subset(&sent_hashes),
        "a success the provider never charged for"
    );
    KillRun {
        files,
        kills,
        kills_mid_work,
        charges,
        seed,
        elapsed: started.elapsed(),
    }
}

fn report(r: &KillRun) {
    // One line the bench script greps into its report.
    println!(
        "CRASH-RESULT files={} kills={} kills_mid_work={} charged={} doubly_charged={} at_a_kill={} cut_by_provider={} seed={} seconds={:.1}",
        r.files,
        r.kills,
        r.kills_mid_work,
        r.charges.charged,
        r.charges.doubly,
        r.charges.at_a_kill,
        r.charges.cut_by_provider,
        r.seed,
        r.elapsed.as_secs_f64()
    );
}

#[test]
fn kill_9_at_random_moments_loses_nothing_and_pays_once() {
    let r = kill_run(60, 3, Duration::from_millis(40), 4);
    report(&r);
}

/// The full run: 300 files, 10 kills (`CRASH_FILES`, `CRASH_KILLS`).
#[test]
#[ignore = "long: run by scripts/bench.sh"]
fn kill_9_at_random_moments_full() {
    let files = env_or("CRASH_FILES", 300) as usize;
    let kills = env_or("CRASH_KILLS", 10) as usize;
    let r = kill_run(files, kills, Duration::from_millis(200), 16);
    report(&r);
}

// ---------------------------------------------------------------------------
// The provider goes away and comes back; bursts of 5xx; cut answers.

/// The provider stops (connections refused) for longer than the whole retry
/// budget of one picture, then a new one starts on the same port: the
/// daemon stays up, nothing moves to failed/, and the rest goes through by
/// itself.
#[test]
fn provider_outage_then_back_resumes_by_itself() {
    let cfg = Config::default().with_latency(Duration::from_millis(30));
    let fake = fake_with(cfg.clone());
    let addr: SocketAddr = fake.addr();
    let site = site_for(&fake.base_url_rembg(), 4, 5);
    let all: Vec<(Input, Vec<u8>)> = corpus(40, 7)
        .into_iter()
        .filter(|(i, _)| i.kind != Kind::Doomed)
        .collect();
    for (inp, bytes) in &all {
        site.drop_file(&inp.rel, bytes);
    }
    let mut d = site.spawn_daemon();
    wait_until(LONG, "some pictures done", || {
        fake.charged_count(fake_provider::Api::Rembg) >= 8
    });
    let down_at = Cut::now();
    fake.stop();
    let before = fake.log();
    // Down for longer than 5 attempts with backoff up to 400 ms take.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        d.child.try_wait().ok().flatten().is_none() && site.files(&site.failed()).is_empty(),
        "nothing may fail while the provider is away: failed/ has {:?}; log:\n{}",
        site.files(&site.failed()),
        d.log_text()
    );
    let back = FakeProvider::start_on(addr, cfg);
    wait_drained(&site, &d, all.len());
    let log = stop(d);
    let inputs: Vec<Input> = all.into_iter().map(|(i, _)| i).collect();
    assert_all_in_place(&site, &inputs);
    let mut full = before;
    full.extend(back.log());
    let c = account(&full, &[down_at], &recorded_at(&site));
    println!(
        "OUTAGE-RESULT charged={} doubly_charged={} at_the_outage={}",
        c.charged, c.doubly, c.at_a_kill
    );
    assert!(
        back.charged_count(fake_provider::Api::Rembg) > 0,
        "resumed:\n{log}"
    );
}

/// Bursts of 500/502/503, bodies cut short, connections dropped before and
/// after the charge, all through a run with two kills: the daemon stays
/// up, nothing is lost, and only answers the provider itself cut (or a kill
/// interrupted) are paid twice.
#[test]
fn bursts_of_5xx_and_cut_answers_through_kills() {
    let fake = fake_with(Config::default().with_latency(Duration::from_millis(20)));
    fake.inject(
        FaultRule::always(Fault::Truncate)
            .endpoint(Endpoint::RembgRemove)
            .probability(0.08),
    );
    fake.inject(
        FaultRule::always(Fault::DropConnection)
            .endpoint(Endpoint::RembgRemove)
            .probability(0.05),
    );
    fake.inject(
        FaultRule::always(Fault::DropAfterCharge)
            .endpoint(Endpoint::RembgRemove)
            .probability(0.03),
    );
    // Bursts of five 5xx answers land on the same few pictures when they
    // retry quickly, so give each picture plenty of attempts: this test is
    // about nothing being lost or paid twice, not about max_attempts.
    let site = site_for(&fake.base_url_rembg(), 4, 30);
    let all = corpus(60, 11);
    for (inp, bytes) in &all {
        site.drop_file(&inp.rel, bytes);
    }
    let stop_bursts = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Six bursts of five 5xx answers, one after every 15 requests (tied to
    // traffic, not time: a burst must not outlast a picture's retries just
    // because few pictures are left).
    let bursts = {
        let (fake, stop) = (fake.clone(), stop_bursts.clone());
        std::thread::spawn(move || {
            let mut mark = 15;
            for i in 0..6u64 {
                while fake.log().len() < mark {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                let status = [500, 502, 503][(i % 3) as usize];
                fake.inject(
                    FaultRule::next(5, Fault::Status(status)).endpoint(Endpoint::RembgRemove),
                );
                mark = fake.log().len() + 15;
            }
        })
    };
    let mut kills = Vec::new();
    for _ in 0..2 {
        let mut d = site.spawn_daemon();
        let target = fake.log().len() + 15;
        wait_until(LONG, "some requests", || {
            fake.log().len() >= target || waiting(&site) == 0
        });
        kills.push(Cut::now());
        d.kill9();
    }
    let d = site.spawn_daemon();
    wait_drained(&site, &d, all.len());
    stop_bursts.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = bursts.join();
    stop(d);
    let inputs: Vec<Input> = all.into_iter().map(|(i, _)| i).collect();
    assert_all_in_place(&site, &inputs);
    let statuses = |s: u16| fake.count_status(s);
    assert!(
        statuses(500) + statuses(502) + statuses(503) > 0,
        "the bursts happened"
    );
    let c = account(&fake.log(), &kills, &recorded_at(&site));
    println!(
        "FAULTS-RESULT requests={} 5xx={} truncated={} dropped={} charged={} doubly_charged={} at_a_kill={} cut_by_provider={}",
        fake.log().len(),
        statuses(500) + statuses(502) + statuses(503),
        fake.count(|e| e.fault.as_deref() == Some("truncate")),
        fake.count_dropped(),
        c.charged,
        c.doubly,
        c.at_a_kill,
        c.cut_by_provider
    );
}
