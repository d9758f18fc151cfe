//! Queue: the dispatcher between watching and processing. It feeds watcher
//! and scan messages to the settler, hands ready paths to at most
//! `queue.concurrency` workers, puts back what must wait, and runs the
//! two-stage shutdown (stop taking work → let in-flight work finish within
//! the grace period → leave the rest queued for the next start).
//!
//! Owns: the worker set, rescans and watcher restarts, and the tallies.
//!
//! Must not: hold image bytes (only paths wait here), or do per-file work
//! itself (the pipeline does, on worker tasks).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::pipeline::{self, Ctx, FileResult};
use crate::settle::{Seen, Settler};
use crate::watch::{self, Found};

/// How the queue runs.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Watch forever.
    Daemon,
    /// One pass over what is there now (`roots`: folders or files to scan,
    /// each with its inbox index; empty = every inbox), then stop.
    Batch { roots: Vec<(usize, PathBuf)> },
}

/// Counts for the summary and status lines.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub found: usize,
    pub succeeded: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub failed: usize,
    pub valid: usize,
    pub skipped: usize,
    /// Left in the inbox because of trouble outside the file (disk, state).
    pub troubled: usize,
    pub interrupted: usize,
}

/// What the queue reports as it goes (progress bars, logs, metrics).
#[derive(Debug, Clone)]
pub enum Progress {
    Found(usize),
    Finished { path: PathBuf, result: FileResult },
}

pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

const TICK: Duration = Duration::from_millis(100);
/// How often inbox folders are checked for having been replaced.
const FOLDER_CHECK: Duration = Duration::from_secs(5);
/// In batch mode, how many times trouble outside the file is retried.
const BATCH_TROUBLE_TRIES: u32 = 3;
/// The longest wait before a file that hit trouble is looked at again.
const TROUBLE_MAX_DELAY: Duration = Duration::from_secs(30);

struct Worked {
    inbox: usize,
    path: PathBuf,
    result: FileResult,
}

/// Run the queue until the batch is done or shutdown is requested.
pub async fn run(ctx: Arc<Ctx>, mode: Mode, progress: Option<ProgressFn>) -> Tally {
    let cfg = ctx.cfg.clone();
    let (tx, mut rx) = mpsc::unbounded_channel::<Found>();
    let mut settler = Settler::new();
    let mut workers: JoinSet<Worked> = JoinSet::new();
    let mut tally = Tally::default();
    let mut shutdown = ctx.shutdown.clone();
    let batch = matches!(mode, Mode::Batch { .. });
    let settle_of = |i: usize| cfg.inboxes.get(i).map(|b| b.settle).unwrap_or_default();
    let mut trouble_counts: std::collections::HashMap<PathBuf, u32> = Default::default();

    // Watchers (daemon only) and the initial scans.
    let mut watchers: Vec<Option<notify::RecommendedWatcher>> = Vec::new();
    let mut identities = Vec::new();
    let mut scans_pending = 0usize;
    match &mode {
        Mode::Daemon => {
            for (i, ib) in cfg.inboxes.iter().enumerate() {
                watchers.push(start_watcher(i, ib, &tx));
                identities.push(watch::folder_identity(&ib.path));
                spawn_scan(&ctx, i, ib.path.clone(), tx.clone(), true);
                scans_pending += 1;
            }
        }
        Mode::Batch { roots } => {
            if roots.is_empty() {
                for (i, ib) in cfg.inboxes.iter().enumerate() {
                    spawn_scan(&ctx, i, ib.path.clone(), tx.clone(), true);
                    scans_pending += 1;
                }
            } else {
                for (i, root) in roots {
                    if root.is_dir() {
                        spawn_scan(&ctx, *i, root.clone(), tx.clone(), true);
                        scans_pending += 1;
                    } else {
                        let _ = tx.send(Found::File {
                            inbox: *i,
                            path: root.clone(),
                            how: Seen::Scan,
                        });
                    }
                }
            }
        }
    }

    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_rescan: Vec<Instant> = vec![Instant::now(); cfg.inboxes.len()];
    let mut last_folder_check = Instant::now();
    let concurrency = cfg.queue.concurrency;

    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break,
            Some(done) = workers.join_next(), if !workers.is_empty() => {
                let Ok(w) = done else { continue };
                settler.done(&w.path);
                let mut res = w.result;
                let troubles = if let FileResult::Trouble(_) = &res {
                    let n = trouble_counts.entry(w.path.clone()).or_default();
                    *n += 1;
                    *n
                } else {
                    trouble_counts.remove(&w.path);
                    0
                };
                if batch && troubles >= BATCH_TROUBLE_TRIES {
                    if let FileResult::Trouble(msg) = &res {
                        tracing::error!(input = %w.path.display(), "giving up for this batch: {msg}; the file stays in the inbox");
                    }
                    trouble_counts.remove(&w.path);
                    tally.troubled += 1;
                    report(&progress, &w.path, &res);
                    continue;
                }
                match &res {
                    FileResult::Later(d) => settler.later(w.inbox, w.path.clone(), Instant::now(), *d),
                    FileResult::Trouble(msg) => {
                        let delay = trouble_delay(troubles);
                        tracing::warn!(input = %w.path.display(), "{msg}; will look again in {}", humantime::format_duration(delay));
                        settler.later(w.inbox, w.path.clone(), Instant::now(), delay);
                    }
                    _ => {}
                }
                count(&mut tally, &mut res);
                report(&progress, &w.path, &res);
            }
            Some(msg) = rx.recv() => {
                let now = Instant::now();
                handle_found(&ctx, msg, &mut settler, &mut tally, &progress, &tx, &mut scans_pending, now, &settle_of);
                // Drain what else is waiting, without starving the loop.
                for _ in 0..4096 {
                    match rx.try_recv() {
                        Ok(m) => handle_found(&ctx, m, &mut settler, &mut tally, &progress, &tx, &mut scans_pending, now, &settle_of),
                        Err(_) => break,
                    }
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                settler.tick(now, settle_of);
                if !batch {
                    for (i, ib) in cfg.inboxes.iter().enumerate() {
                        let every = match ib.watch {
                            crate::config::WatchMode::Notify => cfg.rescan_interval,
                            crate::config::WatchMode::Poll => ib.poll_interval,
                        };
                        if now.duration_since(last_rescan[i]) >= every {
                            last_rescan[i] = now;
                            spawn_scan(&ctx, i, ib.path.clone(), tx.clone(), false);
                        }
                    }
                    if now.duration_since(last_folder_check) >= FOLDER_CHECK {
                        last_folder_check = now;
                        check_folders(&ctx, &mut watchers, &mut identities, &tx);
                    }
                }
            }
        }

        // Hand ready files to workers.
        while workers.len() < concurrency {
            let Some(r) = settler.next(|_| false) else {
                break;
            };
            let ctx2 = ctx.clone();
            workers.spawn(async move {
                let Some(inbox) = ctx2.cfg.inboxes.get(r.inbox) else {
                    return Worked {
                        inbox: r.inbox,
                        path: r.path,
                        result: FileResult::Vanished,
                    };
                };
                let result = pipeline::process_file(&ctx2, inbox, &r.path).await;
                Worked {
                    inbox: r.inbox,
                    path: r.path,
                    result,
                }
            });
        }

        if batch && scans_pending == 0 && settler.is_idle() && workers.is_empty() {
            break;
        }
    }

    // Shutdown: stop watching, let in-flight work finish within the grace.
    drop(watchers);
    if !workers.is_empty() {
        let grace = cfg.shutdown_grace;
        tracing::info!(
            in_flight = workers.len(),
            "stopping: letting in-flight work finish (up to {})",
            humantime::format_duration(grace)
        );
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            match tokio::time::timeout_at(deadline, workers.join_next()).await {
                Ok(Some(Ok(mut w))) => {
                    count(&mut tally, &mut w.result);
                    report(&progress, &w.path, &w.result);
                }
                Ok(Some(Err(_))) => {}
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        left = workers.len(),
                        "grace period over: leaving the rest queued for the next start"
                    );
                    tally.interrupted += workers.len();
                    workers.abort_all();
                    while workers.join_next().await.is_some() {}
                    break;
                }
            }
        }
    }
    let left = settler.pending_len() + settler.ready_len();
    if left > 0 {
        tracing::info!(left, "files left queued for the next start");
        tally.interrupted += left;
    }
    tally
}

/// Trouble outside the file (full disk, unwritable folder, state errors):
/// look again after 2 s, 4 s, 8 s … up to 30 s.
fn trouble_delay(times: u32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(times.clamp(1, 5))).min(TROUBLE_MAX_DELAY)
}

fn report(progress: &Option<ProgressFn>, path: &std::path::Path, res: &FileResult) {
    if let Some(p) = progress {
        p(&Progress::Finished {
            path: path.to_path_buf(),
            result: res.clone(),
        });
    }
}

fn count(t: &mut Tally, res: &mut FileResult) {
    match res {
        FileResult::Succeeded => t.succeeded += 1,
        FileResult::Duplicate => t.duplicates += 1,
        FileResult::Rejected(_) => t.rejected += 1,
        FileResult::Failed(_) => t.failed += 1,
        FileResult::Valid => t.valid += 1,
        FileResult::AlreadyDone | FileResult::Vanished => t.skipped += 1,
        FileResult::Interrupted => t.interrupted += 1,
        FileResult::Later(_) | FileResult::Trouble(_) => {}
    }
}

#[allow(clippy::too_many_arguments)]
fn handle_found(
    ctx: &Arc<Ctx>,
    msg: Found,
    settler: &mut Settler,
    tally: &mut Tally,
    progress: &Option<ProgressFn>,
    tx: &mpsc::UnboundedSender<Found>,
    scans_pending: &mut usize,
    now: Instant,
    settle_of: &impl Fn(usize) -> Duration,
) {
    match msg {
        Found::File { inbox, path, how } => {
            settler.observe(inbox, path, how, now, settle_of(inbox))
        }
        Found::Folder { inbox, path } => spawn_scan(ctx, inbox, path, tx.clone(), false),
        Found::ScanDone { inbox, files } => {
            *scans_pending = scans_pending.saturating_sub(1);
            tally.found += files;
            if let Some(p) = progress {
                p(&Progress::Found(files));
            }
            tracing::debug!(inbox, files, "scan finished");
        }
        Found::WatchError { inbox, message } => {
            tracing::warn!(
                inbox = ctx
                    .cfg
                    .inboxes
                    .get(inbox)
                    .map(|i| i.name.as_str())
                    .unwrap_or("?"),
                "watcher: {message}; rescans continue"
            );
        }
    }
}

fn spawn_scan(
    ctx: &Arc<Ctx>,
    idx: usize,
    root: PathBuf,
    tx: mpsc::UnboundedSender<Found>,
    report_done: bool,
) {
    let ctx = ctx.clone();
    tokio::task::spawn_blocking(move || {
        let Some(inbox) = ctx.cfg.inboxes.get(idx) else {
            return;
        };
        let n = watch::scan(idx, inbox, &root, &tx);
        if report_done {
            let _ = tx.send(Found::ScanDone {
                inbox: idx,
                files: n,
            });
        }
    });
}

fn start_watcher(
    i: usize,
    ib: &crate::config::Inbox,
    tx: &mpsc::UnboundedSender<Found>,
) -> Option<notify::RecommendedWatcher> {
    if ib.watch != crate::config::WatchMode::Notify {
        return None;
    }
    match watch::watch(i, ib, tx.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(inbox = %ib.name, "cannot watch {}: {e}; relying on rescans every few minutes (set watch = \"poll\" to scan more often)", ib.path.display());
            None
        }
    }
}

/// Notice inbox folders that were deleted (re-create them) or replaced
/// (re-watch and rescan them).
fn check_folders(
    ctx: &Arc<Ctx>,
    watchers: &mut [Option<notify::RecommendedWatcher>],
    identities: &mut [Option<(u64, u64, u128)>],
    tx: &mpsc::UnboundedSender<Found>,
) {
    for (i, ib) in ctx.cfg.inboxes.iter().enumerate() {
        let mut id = watch::folder_identity(&ib.path);
        if id.is_none() {
            match std::fs::create_dir_all(&ib.path) {
                Ok(()) => {
                    tracing::warn!(inbox = %ib.name, "inbox folder {} was missing; created it again", ib.path.display());
                    id = watch::folder_identity(&ib.path);
                }
                Err(e) => {
                    tracing::error!(inbox = %ib.name, "inbox folder {} is missing and cannot be created: {e}", ib.path.display());
                    continue;
                }
            }
        }
        if id != identities[i] {
            tracing::info!(inbox = %ib.name, "inbox folder {} was replaced; watching it again", ib.path.display());
            identities[i] = id;
            watchers[i] = start_watcher(i, ib, tx);
            spawn_scan(ctx, i, ib.path.clone(), tx.clone(), false);
        }
    }
}
