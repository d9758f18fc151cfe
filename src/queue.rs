//! Queue: the dispatcher between watching and processing. It feeds watcher
//! and scan messages to the settler, hands ready paths to at most
//! 2 × `queue.concurrency` workers (half of them at the engine at a time,
//! the rest reading, checking and finishing pictures around them: see
//! `Ctx::worker_limit`), puts back what must wait, and runs the
//! two-stage shutdown (stop taking work → let in-flight work finish within
//! the grace period → leave the rest queued for the next start).
//!
//! Owns: the worker set, rescans and watcher restarts, the tallies, and
//! switching the inbox set when the config is reloaded (SIGHUP) without
//! disturbing work in flight.
//!
//! Must not: hold image bytes (only paths wait here), or do per-file work
//! itself (the pipeline does, on worker tasks).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::config::Inbox;
use crate::job::FileResult;
use crate::pipeline::{self, Ctx};
use crate::service::Heartbeat;
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

/// Housekeeping: rescans, folder checks, provider status, heartbeat.
/// Settle deadlines do not wait for it: the loop wakes at the earliest one
/// (`Settler::next_due`), so an idle daemon sleeps instead of polling.
const TICK: Duration = Duration::from_millis(250);
/// Wake no sooner than this after the last settle pass (a file whose
/// stat keeps changing must not turn the loop into a spin).
const SETTLE_MIN_GAP: Duration = Duration::from_millis(2);
/// How often the providers' status (pause, credits, 429s) is copied into
/// the metrics.
const PROVIDER_SYNC: Duration = Duration::from_secs(1);
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

/// Optional hooks for the daemon under a service manager.
#[derive(Default)]
pub struct Hooks {
    /// Config reloads to switch to (SIGHUP); daemon mode only.
    pub reloads: Option<mpsc::UnboundedReceiver<Reload>>,
    /// Ticked on every turn of the dispatcher loop: proof of life for the
    /// watchdog and `/healthz`.
    pub heartbeat: Option<Arc<Heartbeat>>,
    /// Fired once every inbox is watched and its first scan is started.
    pub ready: Option<oneshot::Sender<()>>,
}

/// A new configuration to switch to, with everything already built and
/// checked for it (providers, folders).
pub struct Reload {
    /// The new context. The store, audit log and shutdown signal must be the
    /// running ones; in-flight work keeps the context it started with.
    pub ctx: Arc<Ctx>,
    /// Told what changed once the dispatcher has switched.
    pub done: oneshot::Sender<ReloadReport>,
}

/// What a reload changed, by inbox name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Same name, but a new folder or watch setting: watched afresh.
    pub rewatched: Vec<String>,
    /// Pictures still being processed with the previous settings.
    pub in_flight: usize,
}

/// One inbox as the dispatcher knows it. Settler entries, watcher and scan
/// messages, and worker results carry the slot id; ids are never reused, so
/// nothing from an inbox removed by a reload is mistaken for another's.
struct Slot {
    inbox: Arc<Inbox>,
    watcher: Option<notify::RecommendedWatcher>,
    identity: Option<(u64, u64, u128)>,
    last_rescan: Instant,
}

impl Slot {
    fn new(inbox: &Inbox) -> Slot {
        Slot {
            inbox: Arc::new(inbox.clone()),
            watcher: None,
            identity: watch::folder_identity(&inbox.path),
            last_rescan: Instant::now(),
        }
    }
}

type Slots = BTreeMap<usize, Slot>;

/// Run the queue until the batch is done or shutdown is requested.
pub async fn run(ctx: Arc<Ctx>, mode: Mode, progress: Option<ProgressFn>) -> Tally {
    run_with(ctx, mode, progress, Hooks::default()).await
}

/// [`run`] with service hooks (reloads, heartbeat, readiness).
pub async fn run_with(
    mut ctx: Arc<Ctx>,
    mode: Mode,
    progress: Option<ProgressFn>,
    mut hooks: Hooks,
) -> Tally {
    let (tx, mut rx) = mpsc::unbounded_channel::<Found>();
    let mut settler = Settler::new();
    let mut workers: JoinSet<Worked> = JoinSet::new();
    let mut tally = Tally::default();
    let mut shutdown = ctx.shutdown.clone();
    let batch = matches!(mode, Mode::Batch { .. });
    let mut trouble_counts: std::collections::HashMap<PathBuf, u32> = Default::default();
    let metrics = crate::metrics::global();
    let beat = |h: &Option<Arc<Heartbeat>>| {
        if let Some(h) = h {
            h.beat();
        }
    };

    // Slot ids start as the config's inbox indices (batch roots use them).
    let mut slots: Slots = ctx
        .cfg
        .inboxes
        .iter()
        .enumerate()
        .map(|(i, ib)| (i, Slot::new(ib)))
        .collect();
    let mut next_slot = slots.len();

    // Watchers (daemon only) and the initial scans.
    let mut scans_pending = 0usize;
    match &mode {
        Mode::Daemon => {
            for (id, s) in slots.iter_mut() {
                s.watcher = start_watcher(*id, &s.inbox, &tx);
                spawn_scan(*id, &s.inbox, s.inbox.path.clone(), tx.clone(), true);
                scans_pending += 1;
            }
        }
        Mode::Batch { roots } => {
            if roots.is_empty() {
                for (id, s) in &slots {
                    spawn_scan(*id, &s.inbox, s.inbox.path.clone(), tx.clone(), true);
                    scans_pending += 1;
                }
            } else {
                for (i, root) in roots {
                    let Some(s) = slots.get(i) else { continue };
                    if root.is_dir() {
                        spawn_scan(*i, &s.inbox, root.clone(), tx.clone(), true);
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
    metrics.set_inboxes(slots.len());
    beat(&hooks.heartbeat);
    if let Some(ready) = hooks.ready.take() {
        let _ = ready.send(());
    }
    let mut reloads = if batch { None } else { hooks.reloads.take() };

    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_settle_pass = Instant::now();
    let mut last_folder_check = Instant::now();
    let mut last_provider_sync: Option<Instant> = None;

    loop {
        beat(&hooks.heartbeat);
        let settle_due = settler
            .next_due()
            .map(|t| t.max(last_settle_pass + SETTLE_MIN_GAP));
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
                metrics.record_result(&res);
                if batch && troubles >= BATCH_TROUBLE_TRIES {
                    if let FileResult::Trouble(msg) = &res {
                        tracing::error!(input = %w.path.display(), "giving up for this batch: {msg}; the file stays in the inbox");
                    }
                    trouble_counts.remove(&w.path);
                    tally.troubled += 1;
                    report(&progress, &w.path, &res);
                    continue;
                }
                // The inbox may have been removed or re-watched by a reload
                // while the file was in work: put it back under the inbox
                // that holds it now, if any (else a later scan finds it).
                let slot = current_slot(&slots, w.inbox, &w.path);
                match (&res, slot) {
                    (FileResult::Later(d), Some(id)) => settler.later(id, w.path.clone(), Instant::now(), *d),
                    (FileResult::Trouble(msg), Some(id)) => {
                        let delay = trouble_delay(troubles);
                        tracing::warn!(input = %w.path.display(), "{msg}; will look again in {}", humantime::format_duration(delay));
                        settler.later(id, w.path.clone(), Instant::now(), delay);
                    }
                    _ => {}
                }
                count(&mut tally, &mut res);
                report(&progress, &w.path, &res);
            }
            Some(msg) = rx.recv() => {
                let now = Instant::now();
                handle_found(&slots, msg, &mut settler, &mut tally, &progress, &tx, &mut scans_pending, now);
                // Drain what else is waiting, without starving the loop.
                for _ in 0..4096 {
                    match rx.try_recv() {
                        Ok(m) => handle_found(&slots, m, &mut settler, &mut tally, &progress, &tx, &mut scans_pending, now),
                        Err(_) => break,
                    }
                }
            }
            Some(reload) = next_reload(&mut reloads) => {
                let mut rep = switch_config(&reload.ctx, &mut slots, &mut next_slot, &mut settler, &tx);
                settler.recheck_all(Instant::now());
                rep.in_flight = workers.len();
                trouble_counts.retain(|p, _| slots.values().any(|s| p.starts_with(&s.inbox.path)));
                ctx = reload.ctx;
                metrics.set_inboxes(slots.len());
                let _ = reload.done.send(rep);
            }
            _ = sleep_until_due(settle_due), if settle_due.is_some() => {
                let now = Instant::now();
                last_settle_pass = now;
                settler.tick(now, |i| slots.get(&i).map(|s| s.inbox.settle).unwrap_or_default());
            }
            _ = tick.tick() => {
                let now = Instant::now();
                last_settle_pass = now;
                settler.tick(now, |i| slots.get(&i).map(|s| s.inbox.settle).unwrap_or_default());
                if last_provider_sync.is_none_or(|t| now.duration_since(t) >= PROVIDER_SYNC) {
                    last_provider_sync = Some(now);
                    metrics.sync_providers(
                        ctx.providers.iter().map(|(name, p)| (name.as_str(), p.status())),
                    );
                }
                if !batch {
                    for (id, s) in slots.iter_mut() {
                        let every = match s.inbox.watch {
                            crate::config::WatchMode::Notify => ctx.cfg.rescan_interval,
                            crate::config::WatchMode::Poll => s.inbox.poll_interval,
                        };
                        if now.duration_since(s.last_rescan) >= every {
                            s.last_rescan = now;
                            spawn_scan(*id, &s.inbox, s.inbox.path.clone(), tx.clone(), false);
                        }
                    }
                    if now.duration_since(last_folder_check) >= FOLDER_CHECK {
                        last_folder_check = now;
                        check_folders(&mut slots, &tx);
                    }
                }
            }
        }

        // Hand ready files to workers (with the inbox settings and context
        // of now: a reload changes what new work uses, never running work).
        // Files of a paused provider (no credits, key refused) stay queued
        // without taking a worker; they go out once it resumes by itself.
        let held = |r: &crate::settle::Ready| {
            slots
                .get(&r.inbox)
                .and_then(|s| ctx.providers.get(&s.inbox.provider))
                .is_some_and(|p| p.is_paused())
        };
        while workers.len() < ctx.worker_limit() {
            let Some(r) = settler.next(held) else {
                break;
            };
            let Some(slot) = slots.get(&r.inbox) else {
                settler.done(&r.path);
                continue;
            };
            let (ctx2, inbox) = (ctx.clone(), slot.inbox.clone());
            workers.spawn(async move {
                let result = pipeline::process_file(&ctx2, &inbox, &r.path).await;
                Worked {
                    inbox: r.inbox,
                    path: r.path,
                    result,
                }
            });
        }
        metrics.set_queue(
            settler.pending_len(),
            settler.ready_len(),
            workers.len(),
            ctx.at_engine(),
        );

        if batch && scans_pending == 0 && settler.is_idle() && workers.is_empty() {
            break;
        }
        if batch
            && scans_pending == 0
            && workers.is_empty()
            && settler.pending_len() == 0
            && settler.ready_len() > 0
        {
            // Everything left waits for a paused provider: a batch does not
            // wait for a recharge. The files stay in the inbox.
            let mut left = 0;
            while let Some(r) = settler.next(|_| false) {
                settler.done(&r.path);
                let why = slots
                    .get(&r.inbox)
                    .and_then(|s| ctx.providers.get(&s.inbox.provider))
                    .and_then(|p| p.status().paused.map(|x| (p.name().to_string(), x)));
                let msg = match why {
                    Some((name, p)) => format!(
                        "provider `{name}` is paused ({}): {}",
                        p.reason.as_str(),
                        p.message
                    ),
                    None => "its provider is paused".to_string(),
                };
                tracing::warn!(input = %r.path.display(), "left in the inbox: {msg}");
                let res = FileResult::Trouble(msg);
                tally.troubled += 1;
                report(&progress, &r.path, &res);
                left += 1;
            }
            tracing::error!("{left} file(s) stay in the inbox because their provider is paused; run again once it works");
            break;
        }
    }

    // Shutdown: stop watching, let in-flight work finish within the grace.
    for s in slots.values_mut() {
        s.watcher = None;
    }
    if !workers.is_empty() {
        let grace = ctx.cfg.shutdown_grace;
        tracing::info!(
            in_flight = workers.len(),
            "stopping: letting in-flight work finish (up to {})",
            humantime::format_duration(grace)
        );
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            // Keep the heartbeat going: finishing work is being alive.
            beat(&hooks.heartbeat);
            let wake = deadline.min(tokio::time::Instant::now() + Duration::from_secs(1));
            match tokio::time::timeout_at(wake, workers.join_next()).await {
                Ok(Some(Ok(mut w))) => {
                    metrics.record_result(&w.result);
                    count(&mut tally, &mut w.result);
                    report(&progress, &w.path, &w.result);
                }
                Ok(Some(Err(_))) => {}
                Ok(None) => break,
                Err(_) if tokio::time::Instant::now() < deadline => {}
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
            metrics.set_queue(
                settler.pending_len(),
                settler.ready_len(),
                workers.len(),
                ctx.at_engine(),
            );
        }
    }
    metrics.set_queue(settler.pending_len(), settler.ready_len(), 0, 0);
    let left = settler.pending_len() + settler.ready_len();
    if left > 0 {
        tracing::info!(left, "files left queued for the next start");
        tally.interrupted += left;
    }
    tally
}

async fn next_reload(r: &mut Option<mpsc::UnboundedReceiver<Reload>>) -> Option<Reload> {
    match r {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The slot a finished file belongs to now: its own, if the inbox is still
/// there, else the current inbox whose folder holds it.
fn current_slot(slots: &Slots, id: usize, path: &Path) -> Option<usize> {
    if slots.contains_key(&id) {
        return Some(id);
    }
    slots
        .iter()
        .find(|(_, s)| path.starts_with(&s.inbox.path))
        .map(|(id, _)| *id)
}

/// Sleep until `t` (a std Instant); `None` never wakes.
async fn sleep_until_due(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

/// Whether two versions of an inbox can share a watcher and settle state.
fn same_watch(a: &Inbox, b: &Inbox) -> bool {
    a.path == b.path && a.recursive == b.recursive && a.watch == b.watch && a.ignore == b.ignore
}

/// Switch the inbox set to `new`'s, by inbox name: removed inboxes stop
/// being watched and their waiting files are forgotten (they stay in the
/// folder, untouched); added ones are watched and scanned; kept ones take
/// the new settings for work not yet started.
fn switch_config(
    new: &Arc<Ctx>,
    slots: &mut Slots,
    next_slot: &mut usize,
    settler: &mut Settler,
    tx: &mpsc::UnboundedSender<Found>,
) -> ReloadReport {
    let mut rep = ReloadReport::default();
    let ids: Vec<usize> = slots.keys().copied().collect();
    for id in ids {
        let Some(slot) = slots.get_mut(&id) else {
            continue;
        };
        match new.cfg.inboxes.iter().find(|n| n.name == slot.inbox.name) {
            Some(n) if same_watch(&slot.inbox, n) => slot.inbox = Arc::new(n.clone()),
            found => {
                let name = slot.inbox.name.clone();
                slots.remove(&id); // drops its watcher
                settler.drop_inbox(id);
                if found.is_some() {
                    rep.rewatched.push(name);
                } else {
                    rep.removed.push(name);
                }
            }
        }
    }
    for ib in &new.cfg.inboxes {
        if slots.values().any(|s| s.inbox.name == ib.name) {
            continue;
        }
        let id = *next_slot;
        *next_slot += 1;
        let mut s = Slot::new(ib);
        s.watcher = start_watcher(id, &s.inbox, tx);
        spawn_scan(id, &s.inbox, s.inbox.path.clone(), tx.clone(), false);
        if !rep.rewatched.contains(&ib.name) {
            rep.added.push(ib.name.clone());
        }
        slots.insert(id, s);
    }
    rep
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
    slots: &Slots,
    msg: Found,
    settler: &mut Settler,
    tally: &mut Tally,
    progress: &Option<ProgressFn>,
    tx: &mpsc::UnboundedSender<Found>,
    scans_pending: &mut usize,
    now: Instant,
) {
    match msg {
        Found::File { inbox, path, how } => {
            // Messages from an inbox a reload removed are dropped.
            let Some(s) = slots.get(&inbox) else { return };
            let before = settler.pending_len();
            settler.observe(inbox, path, how, now, s.inbox.settle);
            if settler.pending_len() > before {
                crate::metrics::global().file_seen();
            }
        }
        Found::Folder { inbox, path } => {
            if let Some(s) = slots.get(&inbox) {
                spawn_scan(inbox, &s.inbox, path, tx.clone(), false);
            }
        }
        Found::ScanDone { inbox, files } => {
            *scans_pending = scans_pending.saturating_sub(1);
            tally.found += files;
            if let Some(p) = progress {
                p(&Progress::Found(files));
            }
            tracing::debug!(inbox, files, "scan finished");
        }
        Found::WatchError { inbox, message } => {
            if let Some(s) = slots.get(&inbox) {
                tracing::warn!(inbox = %s.inbox.name, "watcher: {message}; rescans continue");
            }
        }
    }
}

fn spawn_scan(
    idx: usize,
    inbox: &Arc<Inbox>,
    root: PathBuf,
    tx: mpsc::UnboundedSender<Found>,
    report_done: bool,
) {
    let inbox = inbox.clone();
    tokio::spawn(crate::blocking::run("scan inbox", move || {
        let n = watch::scan(idx, &inbox, &root, &tx);
        if report_done {
            let _ = tx.send(Found::ScanDone {
                inbox: idx,
                files: n,
            });
        }
    }));
}

fn start_watcher(
    i: usize,
    ib: &Inbox,
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
fn check_folders(slots: &mut Slots, tx: &mpsc::UnboundedSender<Found>) {
    for (i, s) in slots.iter_mut() {
        let ib = s.inbox.clone();
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
        if id != s.identity {
            tracing::info!(inbox = %ib.name, "inbox folder {} was replaced; watching it again", ib.path.display());
            s.identity = id;
            s.watcher = start_watcher(*i, &ib, tx);
            spawn_scan(*i, &ib, ib.path.clone(), tx.clone(), false);
        }
    }
}
