//! A model-based test of watch + settle + queue against the real daemon: a
//! seeded random sequence of the ways files arrive (README "How files
//! arrive"), on several files at once, with random pauses, compared with a
//! simple model of where each file must end: outbox + archive for complete
//! pictures, rejected/ only for files that really were empty or bad at rest.
//!
//! Runs ~20 s of operations by default; `CUTOUT_MODEL_SECS=600` runs longer,
//! `CUTOUT_MODEL_SEED=N` replays a sequence (the seed is printed, and named
//! in every failure). The built-in engine is used; no network.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

const SETTLE: Duration = Duration::from_millis(1000);
const EMPTY_GRACE: Duration = Duration::from_millis(4000);
/// Writers pause at most this long inside one upload (well below `SETTLE`,
/// so a busy machine does not make a half-written file look at rest).
const SHORT: u64 = 100;
/// Threads writing at once.
const WRITERS: u64 = 4;

/// Where a file must end.
#[derive(Debug, Clone)]
enum End {
    /// A complete picture: succeeded, moved to archive/, cut-out in outbox/.
    Processed { sha: String },
    /// Empty at rest: rejected as empty-file.
    Empty,
    /// Not a picture at rest: rejected.
    Bad { sha: String },
    /// Deleted while queued: nothing, or a success if the daemon was first.
    DeletedOrProcessed { sha: String },
    /// Replaced while queued: the new version processed; the old one
    /// processed too or never.
    Replaced { old: String, new: String },
}

#[derive(Debug, Clone, Copy)]
enum Op {
    SlowInPlace,
    EmptyThenWrite,
    TempThenRename,
    Copy,
    TruncateRewrite,
    MoveIn,
    HardLink,
    DeleteWhileQueued,
    ReplaceWhileQueued,
    ReallyEmpty,
    Bad,
}

const OPS: [Op; 11] = [
    Op::SlowInPlace,
    Op::EmptyThenWrite,
    Op::TempThenRename,
    Op::Copy,
    Op::TruncateRewrite,
    Op::MoveIn,
    Op::HardLink,
    Op::DeleteWhileQueued,
    Op::ReplaceWhileQueued,
    Op::ReallyEmpty,
    Op::Bad,
];

fn sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn ms(rng: &mut fastrand::Rng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(rng.u64(lo..=hi))
}

/// Where a writer puts files: the inbox and a staging folder beside it
/// (same file system, for `mv` and `ln`).
struct Dirs {
    inbox: std::path::PathBuf,
    staging: std::path::PathBuf,
}

/// Carry out one operation on `name`; returns where the model says it ends.
/// This one: the operations that write into the inbox.
fn run_op(
    op: Op,
    d: &Dirs,
    name: &str,
    pic: &dyn Fn(u32) -> Vec<u8>,
    rng: &mut fastrand::Rng,
) -> End {
    let (inbox, staging) = (&d.inbox, &d.staging);
    let p = inbox.join(name);
    match op {
        Op::SlowInPlace => {
            let b = pic(0);
            let mut f = std::fs::File::create(&p).expect("create");
            for c in b.chunks(b.len() / 4 + 1) {
                f.write_all(c).expect("write");
                std::thread::sleep(ms(rng, 0, SHORT));
            }
            End::Processed { sha: sha(&b) }
        }
        Op::EmptyThenWrite => {
            let b = pic(0);
            let mut f = std::fs::File::create(&p).expect("create");
            // Longer than settle, shorter than empty_grace.
            std::thread::sleep(ms(rng, 1200, 2500));
            f.write_all(&b).expect("write");
            End::Processed { sha: sha(&b) }
        }
        Op::TempThenRename => {
            let b = pic(0);
            let tmp = match rng.u8(0..3) {
                0 => inbox.join(format!("{name}.part")),
                1 => inbox.join(format!("{name}.tmp")),
                _ => inbox.join(format!(".{name}.{:06x}", rng.u32(..0xFFFFFF))),
            };
            let mut f = std::fs::File::create(&tmp).expect("create temp");
            for c in b.chunks(b.len() / 3 + 1) {
                f.write_all(c).expect("write");
                // Temp names are ignored: pauses may exceed settle.
                std::thread::sleep(ms(rng, 0, 1500));
            }
            drop(f);
            std::fs::rename(&tmp, &p).expect("rename in");
            End::Processed { sha: sha(&b) }
        }
        Op::Copy => {
            let b = pic(0);
            let src = staging.join(name);
            std::fs::write(&src, &b).expect("stage");
            std::fs::copy(&src, &p).expect("cp");
            End::Processed { sha: sha(&b) }
        }
        Op::TruncateRewrite => {
            let (v1, v2) = (pic(0), pic(1));
            std::fs::write(&p, &v1).expect("v1");
            std::thread::sleep(ms(rng, 0, SHORT));
            std::fs::write(&p, &v2).expect("truncate and rewrite");
            End::Replaced {
                old: sha(&v1),
                new: sha(&v2),
            }
        }
        _ => placed(op, d, name, pic, rng),
    }
}

/// The operations that place a whole file (or take it away).
fn placed(
    op: Op,
    d: &Dirs,
    name: &str,
    pic: &dyn Fn(u32) -> Vec<u8>,
    rng: &mut fastrand::Rng,
) -> End {
    let staging = &d.staging;
    let p = d.inbox.join(name);
    match op {
        Op::MoveIn | Op::HardLink => {
            let b = pic(0);
            let src = staging.join(name);
            std::fs::write(&src, &b).expect("stage");
            if matches!(op, Op::MoveIn) {
                std::fs::rename(&src, &p).expect("mv");
            } else {
                std::fs::hard_link(&src, &p).expect("ln");
            }
            End::Processed { sha: sha(&b) }
        }
        Op::DeleteWhileQueued => {
            let b = pic(0);
            std::fs::write(&p, &b).expect("write");
            std::thread::sleep(ms(rng, 600, 1400));
            let _ = std::fs::remove_file(&p); // the daemon may have taken it
            End::DeletedOrProcessed { sha: sha(&b) }
        }
        Op::ReplaceWhileQueued => {
            let (v1, v2) = (pic(0), pic(1));
            std::fs::write(&p, &v1).expect("v1");
            std::thread::sleep(ms(rng, 600, 1400));
            let src = staging.join(name);
            std::fs::write(&src, &v2).expect("stage v2");
            std::fs::rename(&src, &p).expect("replace");
            End::Replaced {
                old: sha(&v1),
                new: sha(&v2),
            }
        }
        Op::ReallyEmpty => {
            std::fs::File::create(&p).expect("create");
            End::Empty
        }
        Op::Bad => {
            let b = format!("not a picture {name}\n").into_bytes();
            std::fs::write(&p, &b).expect("write");
            End::Bad { sha: sha(&b) }
        }
        _ => unreachable!("{op:?} is written, not placed"),
    }
}

/// One writer: a sequence of operations until `until`. Returns the model's
/// expectations and a log of what it did.
fn writer(
    site_root: &Path,
    t: u64,
    seed: u64,
    until: Instant,
) -> (Vec<(String, End)>, Vec<String>) {
    let mut rng = fastrand::Rng::with_seed(seed ^ (t.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    let dirs = Dirs {
        inbox: site_root.join("inbox"),
        staging: site_root.join("staging"),
    };
    let mut out = Vec::new();
    let mut log = Vec::new();
    let mut i = 0u32;
    while Instant::now() < until {
        i += 1;
        let name = format!("w{t}-{i}.jpg");
        let pic = |k: u32| jpeg(64, 48, (t as u32) * 1_000_000 + i * 10 + k);
        let op = OPS[rng.usize(..OPS.len())];
        log.push(format!("{name}: {op:?}"));
        let end = run_op(op, &dirs, &name, &pic, &mut rng);
        out.push((name, end));
        // Between files: sometimes longer than settle.
        std::thread::sleep(ms(&mut rng, 0, 2 * SETTLE.as_millis() as u64));
    }
    (out, log)
}

/// Compare the audit log with the model; returns the differences.
fn compare(site: &Site, model: &[(String, End)]) -> Vec<String> {
    let mut by_input: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    for l in site.audit() {
        if l["event"] == "retry" {
            continue;
        }
        let input = l["input"].as_str().unwrap_or_default().to_string();
        by_input.entry(input).or_default().push(l);
    }
    let mut bad = Vec::new();
    let archived = |l: &serde_json::Value| {
        l["event"] == "succeeded"
            && l["output"].is_string()
            && l["moved_to"]
                .as_str()
                .is_some_and(|m| Path::new(m).starts_with(site.archive()))
    };
    for (name, end) in model {
        let lines = by_input.remove(name).unwrap_or_default();
        let events: Vec<String> = lines
            .iter()
            .map(|l| format!("{} {}", l["event"], l["code"]))
            .collect();
        let with = |s: &str| {
            lines
                .iter()
                .filter(|l| l["sha256"] == s)
                .collect::<Vec<_>>()
        };
        let ok = match end {
            End::Processed { sha } => {
                lines.len() == 1 && archived(&lines[0]) && lines[0]["sha256"] == sha.as_str()
            }
            End::Empty => {
                lines.len() == 1
                    && lines[0]["event"] == "rejected"
                    && lines[0]["code"] == "empty-file"
            }
            End::Bad { sha } => {
                lines.len() == 1
                    && lines[0]["event"] == "rejected"
                    && lines[0]["sha256"] == sha.as_str()
            }
            End::DeletedOrProcessed { sha } => {
                lines
                    .iter()
                    .all(|l| l["event"] == "succeeded" && l["sha256"] == sha.as_str())
                    && lines.len() <= 1
            }
            End::Replaced { old, new } => {
                let n = with(new);
                let o = with(old);
                n.len() == 1
                    && archived(n[0])
                    && o.iter().all(|l| l["event"] == "succeeded")
                    && o.len() <= 1
                    && lines.len() == n.len() + o.len()
            }
        };
        if !ok {
            bad.push(format!("{name}: expected {end:?}, audit has {events:?}"));
        }
    }
    for (name, lines) in by_input {
        bad.push(format!(
            "{name}: not in the model, audit has {} lines",
            lines.len()
        ));
    }
    bad
}

#[test]
fn model_watch_settle_queue_against_the_real_daemon() {
    let seed: u64 = std::env::var("CUTOUT_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let secs: u64 = std::env::var("CUTOUT_MODEL_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    eprintln!("model: CUTOUT_MODEL_SEED={seed} CUTOUT_MODEL_SECS={secs}");
    let site = Site::new(&format!(
        "[queue]\nconcurrency = 2\n[[inbox]]\npath = \"inbox\"\nsettle = \"{}ms\"\nempty_grace = \"{}ms\"\n",
        SETTLE.as_millis(),
        EMPTY_GRACE.as_millis()
    ));
    std::fs::create_dir_all(site.root().join("staging")).expect("staging");
    let mut d = site.spawn_daemon();
    wait_until(Duration::from_secs(60), "daemon ready", || {
        d.log_text().contains("cutout is running")
    });
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let root = site.root().to_path_buf();
    let writers: Vec<_> = (0..WRITERS)
        .map(|t| {
            let root = root.clone();
            std::thread::spawn(move || writer(&root, t, seed, until))
        })
        .collect();
    let mut model = Vec::new();
    let mut log = Vec::new();
    for w in writers {
        let (m, l) = w.join().expect("writer thread");
        model.extend(m);
        log.extend(l);
    }
    // Drain: every input leaves the inbox (to archive/ or rejected/).
    let drained = drain(&site, Duration::from_secs(120 + secs / 2));
    // Stopping lets work in flight (say, on a deleted file) finish first.
    d.term();
    let status = d.wait(Duration::from_secs(60));
    let mut problems = Vec::new();
    if !drained {
        problems.push(format!(
            "inbox never emptied: {:?}",
            site.files(&site.inbox())
        ));
    }
    if !status.success() {
        problems.push(format!("daemon exit {status}"));
    }
    problems.extend(compare(&site, &model));
    problems.extend(invariant_violations(&site));
    let mut counts: HashMap<String, usize> = HashMap::new();
    for l in &log {
        *counts
            .entry(l.split(": ").nth(1).unwrap_or("?").to_string())
            .or_default() += 1;
    }
    eprintln!(
        "model: seed {seed}: {} operations in {:.0?} ({counts:?}), {} problems",
        model.len(),
        started.elapsed(),
        problems.len()
    );
    assert!(
        problems.is_empty(),
        "model run failed; replay with CUTOUT_MODEL_SEED={seed} CUTOUT_MODEL_SECS={secs}\n  {}\noperations:\n  {}\ndaemon log (tail):\n{}",
        problems.join("\n  "),
        log.join("\n  "),
        tail(&d.log_text(), 60)
    );
}

/// Wait until every input has left the inbox (false: `limit` passed).
fn drain(site: &Site, limit: Duration) -> bool {
    let t = Instant::now();
    while !site.files(&site.inbox()).is_empty() {
        if t.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
