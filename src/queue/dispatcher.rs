//! The dispatcher: one loop that waits for the next event and hands it to
//! the method that reacts to it — a worker finished ([`Dispatcher::on_finished`]),
//! a watcher or scan found something ([`Dispatcher::on_found`]), a reload
//! arrived ([`Dispatcher::on_reload`]), a settle deadline passed
//! ([`Dispatcher::on_settle_due`]), the housekeeping tick
//! ([`Dispatcher::on_tick`]); after each, ready files go to workers
//! ([`Dispatcher::dispatch`]). Shutdown drains in-flight work within the
//! grace period ([`Dispatcher::drain`]).
//!
//! Must not: hold image bytes (only paths wait here), or do per-file work
//! itself (the pipeline does, on worker tasks).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::collect::Collect;
use super::inboxes::{check_folders, current_inbox, spawn_scan, start_watcher};
use super::inboxes::{Watched, WatchedInboxes};
use super::report::{count, report, Hooks, Mode, Progress, ProgressFn, Tally};
use super::switch::{switch_config, Reload};
use crate::job::{Code, FileResult, Reason};
use crate::metrics::{self, Metrics};
use crate::pipeline::{self, Ctx};
use crate::service::Heartbeat;
use crate::settle::{Seen, Settler};
use crate::watch::Found;

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
/// Dead instances' jobs looked at per takeover sweep (shared state).
const SWEEP_LIMIT: usize = 256;

/// A worker's answer.
struct Worked {
    inbox: usize,
    path: PathBuf,
    result: FileResult,
}

/// What woke the loop.
enum Event {
    Finished(Worked),
    Found(Found),
    Reload(Reload),
    SettleDue,
    Tick,
    /// A takeover sweep's inputs to put first (inbox name, path).
    Orphans(Vec<(String, PathBuf)>),
}

pub(super) struct Dispatcher {
    /// The context new work starts with (a reload replaces it).
    ctx: Arc<Ctx>,
    batch: bool,
    progress: Option<ProgressFn>,
    heartbeat: Option<Arc<Heartbeat>>,
    metrics: &'static Metrics,
    tx: mpsc::UnboundedSender<Found>,
    rx: mpsc::UnboundedReceiver<Found>,
    reloads: Option<mpsc::UnboundedReceiver<Reload>>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    settler: Settler,
    workers: JoinSet<Worked>,
    tally: Tally,
    /// Trouble outside the file, in a row, per path.
    trouble_counts: HashMap<PathBuf, u32>,
    inboxes: WatchedInboxes,
    /// The id the next inbox added by a reload gets (ids are never reused).
    next_id: usize,
    scans_pending: usize,
    last_settle_pass: Instant,
    last_folder_check: Instant,
    last_provider_sync: Option<Instant>,
    /// Paid jobs collected while their provider is paused for credits.
    collect: Collect,
    /// The takeover sweep (shared state only): its answers, whether one
    /// runs, and when the last began.
    orphans_tx: mpsc::UnboundedSender<Vec<(String, PathBuf)>>,
    orphans_rx: mpsc::UnboundedReceiver<Vec<(String, PathBuf)>>,
    sweeping: bool,
    last_sweep: Instant,
}

impl Dispatcher {
    pub(super) fn new(
        ctx: Arc<Ctx>,
        mode: &Mode,
        progress: Option<ProgressFn>,
        hooks: &mut Hooks,
    ) -> Dispatcher {
        let (tx, rx) = mpsc::unbounded_channel::<Found>();
        let (orphans_tx, orphans_rx) = mpsc::unbounded_channel();
        let batch = matches!(mode, Mode::Batch { .. });
        // Inbox ids start as the config's inbox indices (batch roots use them).
        let inboxes: WatchedInboxes = ctx
            .cfg
            .inboxes
            .iter()
            .enumerate()
            .map(|(i, ib)| (i, Watched::new(ib)))
            .collect();
        Dispatcher {
            shutdown: ctx.shutdown.clone(),
            next_id: inboxes.len(),
            ctx,
            batch,
            progress,
            heartbeat: hooks.heartbeat.clone(),
            metrics: metrics::global(),
            tx,
            rx,
            reloads: if batch { None } else { hooks.reloads.take() },
            settler: Settler::new(),
            workers: JoinSet::new(),
            tally: Tally::default(),
            trouble_counts: HashMap::new(),
            inboxes,
            scans_pending: 0,
            last_settle_pass: Instant::now(),
            last_folder_check: Instant::now(),
            last_provider_sync: None,
            collect: Collect::default(),
            orphans_tx,
            orphans_rx,
            sweeping: false,
            last_sweep: Instant::now(),
        }
    }

    fn beat(&self) {
        if let Some(h) = &self.heartbeat {
            h.beat();
        }
    }

    /// Watchers (daemon only) and the initial scans.
    pub(super) fn start(&mut self, mode: &Mode) {
        let tx = &self.tx;
        match mode {
            Mode::Daemon => {
                for (id, s) in self.inboxes.iter_mut() {
                    s.watcher = start_watcher(*id, &s.inbox, tx);
                    spawn_scan(*id, &s.inbox, s.inbox.path.clone(), tx.clone(), true);
                    self.scans_pending += 1;
                }
            }
            Mode::Batch { roots } if roots.is_empty() => {
                for (id, s) in &self.inboxes {
                    spawn_scan(*id, &s.inbox, s.inbox.path.clone(), tx.clone(), true);
                    self.scans_pending += 1;
                }
            }
            Mode::Batch { roots } => {
                for (i, root) in roots {
                    let Some(s) = self.inboxes.get(i) else {
                        continue;
                    };
                    if root.is_dir() {
                        spawn_scan(*i, &s.inbox, root.clone(), tx.clone(), true);
                        self.scans_pending += 1;
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
        self.metrics.set_inboxes(self.inboxes.len());
        self.beat();
    }

    /// The loop: wait for an event, react, hand out ready files; until the
    /// batch is done or shutdown is asked for.
    pub(super) async fn run(&mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.beat();
            let settle_due = self
                .settler
                .next_due()
                .map(|t| t.max(self.last_settle_pass + SETTLE_MIN_GAP));
            let event = tokio::select! {
                biased;
                _ = self.shutdown.wait_for(|s| *s) => break,
                Some(done) = self.workers.join_next(), if !self.workers.is_empty() => {
                    match done {
                        Ok(w) => Event::Finished(w),
                        Err(_) => continue,
                    }
                }
                Some(msg) = self.rx.recv() => Event::Found(msg),
                Some(reload) = next_reload(&mut self.reloads) => Event::Reload(reload),
                Some(first) = self.orphans_rx.recv() => Event::Orphans(first),
                _ = sleep_until_due(settle_due), if settle_due.is_some() => Event::SettleDue,
                _ = tick.tick() => Event::Tick,
            };
            match event {
                Event::Finished(w) => self.on_finished(w),
                Event::Found(msg) => self.on_found(msg).await,
                Event::Reload(reload) => self.on_reload(reload),
                Event::SettleDue => self.on_settle_due().await,
                Event::Tick => self.on_tick().await,
                Event::Orphans(first) => self.on_orphans(first),
            }
            self.dispatch();
            if self.batch_finished() {
                break;
            }
        }
    }

    /// A worker finished a file: count it, and put back what must wait.
    fn on_finished(&mut self, w: Worked) {
        self.settler.done(&w.path);
        let mut res = w.result;
        let troubles = if let FileResult::Trouble(_) = &res {
            let n = self.trouble_counts.entry(w.path.clone()).or_default();
            *n += 1;
            *n
        } else {
            self.trouble_counts.remove(&w.path);
            0
        };
        self.metrics.record_result(&res);
        if self.batch && troubles >= BATCH_TROUBLE_TRIES {
            if let FileResult::Trouble(why) = &res {
                tracing::error!(input = %w.path.display(), code = %why.code, "giving up for this batch: {}; the file stays in the inbox", why.message);
            }
            self.trouble_counts.remove(&w.path);
            self.tally.troubled += 1;
            report(&self.progress, &w.path, &res);
            return;
        }
        // The inbox may have been removed or re-watched by a reload while
        // the file was in work: put it back under the inbox that holds it
        // now, if any (else a later scan finds it).
        let id = current_inbox(&self.inboxes, w.inbox, &w.path);
        match (&res, id) {
            (FileResult::Later(d), Some(id)) => {
                self.settler.later(id, w.path.clone(), Instant::now(), *d)
            }
            (FileResult::Trouble(why), Some(id)) => {
                let delay = trouble_delay(troubles);
                tracing::warn!(input = %w.path.display(), code = %why.code, "{}; will look again in {}", why.message, humantime::format_duration(delay));
                self.settler
                    .later(id, w.path.clone(), Instant::now(), delay);
            }
            _ => {}
        }
        count(&mut self.tally, &mut res);
        report(&self.progress, &w.path, &res);
    }

    /// Watcher and scan messages: this one and what else is waiting
    /// (without starving the loop). New files are stat'ed by the settler on
    /// a blocking thread.
    async fn on_found(&mut self, msg: Found) {
        let now = Instant::now();
        let mut files = Vec::new();
        self.found(msg, &mut files);
        for _ in 0..4096 {
            match self.rx.try_recv() {
                Ok(m) => self.found(m, &mut files),
                Err(_) => break,
            }
        }
        if files.is_empty() {
            return;
        }
        let seen = self
            .with_settler("settle: note files", move |settler| {
                let mut seen = 0;
                for (inbox, path, how, settle) in files {
                    let before = settler.pending_len();
                    settler.observe(inbox, path, how, now, settle);
                    if settler.pending_len() > before {
                        seen += 1;
                    }
                }
                seen
            })
            .await
            .unwrap_or(0);
        for _ in 0..seen {
            self.metrics.file_seen();
        }
    }

    /// One message; files to note are collected in `files`.
    fn found(&mut self, msg: Found, files: &mut Vec<(usize, PathBuf, Seen, Duration)>) {
        match msg {
            Found::File { inbox, path, how } => {
                // Messages from an inbox a reload removed are dropped.
                if let Some(s) = self.inboxes.get(&inbox) {
                    files.push((inbox, path, how, s.inbox.settle));
                }
            }
            Found::Folder { inbox, path } => {
                if let Some(s) = self.inboxes.get(&inbox) {
                    spawn_scan(inbox, &s.inbox, path, self.tx.clone(), false);
                }
            }
            Found::ScanDone { inbox, files } => {
                self.scans_pending = self.scans_pending.saturating_sub(1);
                self.tally.found += files;
                if let Some(p) = &self.progress {
                    p(&Progress::Found(files));
                }
                tracing::debug!(inbox, files, "scan finished");
            }
            Found::WatchError { inbox, message } => {
                if let Some(s) = self.inboxes.get(&inbox) {
                    tracing::warn!(inbox = %s.inbox.name, "watcher: {message}; rescans continue");
                }
            }
        }
    }

    /// Switch to a reloaded config (built and checked already).
    fn on_reload(&mut self, reload: Reload) {
        let mut rep = switch_config(
            &reload.ctx,
            &mut self.inboxes,
            &mut self.next_id,
            &mut self.settler,
            &self.tx,
        );
        self.settler.recheck_all(Instant::now());
        rep.in_flight = self.workers.len();
        let inboxes = &self.inboxes;
        self.trouble_counts
            .retain(|p, _| inboxes.values().any(|s| p.starts_with(&s.inbox.path)));
        self.ctx = reload.ctx;
        self.metrics.set_inboxes(self.inboxes.len());
        let _ = reload.done.send(rep);
    }

    /// Files whose settle time is up are checked (stat'ed on a blocking
    /// thread).
    async fn on_settle_due(&mut self) {
        let now = Instant::now();
        self.last_settle_pass = now;
        if self.settler.next_due().is_none_or(|d| now < d) {
            return;
        }
        let settles: HashMap<usize, Duration> = self
            .inboxes
            .iter()
            .map(|(i, s)| (*i, s.inbox.settle))
            .collect();
        self.with_settler("settle pass", move |settler| {
            settler.tick(now, |i| settles.get(&i).copied().unwrap_or_default())
        })
        .await;
    }

    /// Run `f` on the settler on a blocking thread (it stats files). A lost
    /// task costs only the waiting list: the files stay in the inbox and
    /// the next rescan finds them.
    async fn with_settler<T: Send + 'static>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&mut Settler) -> T + Send + 'static,
    ) -> Option<T> {
        let mut settler = std::mem::take(&mut self.settler);
        let ran = crate::blocking::run(what, move || {
            let r = f(&mut settler);
            (settler, r)
        })
        .await;
        match ran {
            Ok((settler, r)) => {
                self.settler = settler;
                Some(r)
            }
            Err(e) => {
                tracing::error!("{e}; the waiting files are found again by the next rescan");
                None
            }
        }
    }

    /// Housekeeping: settle pass, provider status into the metrics,
    /// rescans and folder checks (daemon).
    async fn on_tick(&mut self) {
        self.on_settle_due().await;
        let now = self.last_settle_pass;
        self.maybe_sweep(now);
        self.collect.refresh(&self.ctx, &self.inboxes, now).await;
        if self
            .last_provider_sync
            .is_none_or(|t| now.duration_since(t) >= PROVIDER_SYNC)
        {
            self.last_provider_sync = Some(now);
            let providers = self.ctx.providers.iter();
            self.metrics
                .sync_providers(providers.map(|(name, p)| (name.as_str(), p.status())));
        }
        if self.batch {
            return;
        }
        for (id, s) in self.inboxes.iter_mut() {
            let every = match s.inbox.watch {
                crate::config::WatchMode::Notify => self.ctx.cfg.rescan_interval,
                crate::config::WatchMode::Poll => s.inbox.poll_interval,
            };
            if now.duration_since(s.last_rescan) >= every {
                s.last_rescan = now;
                spawn_scan(*id, &s.inbox, s.inbox.path.clone(), self.tx.clone(), false);
            }
        }
        if now.duration_since(self.last_folder_check) >= FOLDER_CHECK {
            self.last_folder_check = now;
            check_folders(&mut self.inboxes, &self.tx).await;
        }
    }

    /// Hand ready files to workers (with the inbox settings and context of
    /// now: a reload changes what new work uses, never running work). Files
    /// of a paused provider (no credits, key refused) stay queued without
    /// taking a worker; they go out once it resumes by itself. A paid job
    /// whose result is only to be collected goes out during a pause for
    /// credits.
    /// On the shared state, every quarter lease: look for the jobs of
    /// instances that died and take them over (`pipeline::orphans`).
    fn maybe_sweep(&mut self, now: Instant) {
        let Some(shared) = &self.ctx.cfg.shared_state else {
            return;
        };
        let every = (shared.lease / 4).clamp(TICK, Duration::from_secs(5));
        if self.sweeping || now.duration_since(self.last_sweep) < every {
            return;
        }
        self.sweeping = true;
        self.last_sweep = now;
        let (ctx, tx) = (self.ctx.clone(), self.orphans_tx.clone());
        tokio::spawn(async move {
            let first = pipeline::orphans::sweep(&ctx, SWEEP_LIMIT).await;
            let _ = tx.send(first);
        });
    }

    /// A sweep's answer: a dead instance's inputs still waiting go first
    /// (a worker's claim takes each over and resumes it).
    fn on_orphans(&mut self, first: Vec<(String, PathBuf)>) {
        self.sweeping = false;
        for (name, path) in first {
            let id = self
                .inboxes
                .iter()
                .find(|(_, w)| w.inbox.name == name)
                .map(|(id, _)| *id);
            if let Some(id) = id {
                tracing::debug!(input = %path.display(), "a dead instance's job goes first");
                self.settler.hurry(id, path);
            }
        }
    }

    fn dispatch(&mut self) {
        let (inboxes, ctx, collect) = (&self.inboxes, &self.ctx, &self.collect);
        let held = |r: &crate::settle::Ready| collect.held(ctx, inboxes, r);
        while self.workers.len() < ctx.worker_limit() {
            let Some(r) = self.settler.next(held) else {
                break;
            };
            let Some(watched) = inboxes.get(&r.inbox) else {
                self.settler.done(&r.path);
                continue;
            };
            let (ctx2, inbox) = (ctx.clone(), watched.inbox.clone());
            self.workers.spawn(async move {
                let result = pipeline::process_file(&ctx2, &inbox, &r.path).await;
                Worked {
                    inbox: r.inbox,
                    path: r.path,
                    result,
                }
            });
        }
        self.set_queue_metrics();
    }

    fn set_queue_metrics(&self) {
        self.metrics.set_queue(
            self.settler.pending_len(),
            self.settler.ready_len(),
            self.workers.len(),
            self.ctx.at_engine(),
        );
    }

    /// Batch mode: everything found is done, or all that is left waits for
    /// a paused provider (a batch does not wait for a recharge; those files
    /// stay in the inbox).
    fn batch_finished(&mut self) -> bool {
        if !self.batch || self.scans_pending > 0 || !self.workers.is_empty() {
            return false;
        }
        if self.settler.is_idle() {
            return true;
        }
        if self.settler.pending_len() > 0 || self.settler.ready_len() == 0 {
            return false;
        }
        let mut left = 0;
        while let Some(r) = self.settler.next(|_| false) {
            self.settler.done(&r.path);
            let why = self
                .inboxes
                .get(&r.inbox)
                .and_then(|s| self.ctx.providers.get(&s.inbox.provider))
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
            let res = FileResult::Trouble(Reason::new(Code::ProviderPaused, msg));
            self.tally.troubled += 1;
            report(&self.progress, &r.path, &res);
            left += 1;
        }
        tracing::error!("{left} file(s) stay in the inbox because their provider is paused; run again once it works");
        true
    }

    /// Shutdown: stop watching, let in-flight work finish within the grace
    /// period, leave the rest queued for the next start.
    pub(super) async fn drain(mut self) -> Tally {
        for s in self.inboxes.values_mut() {
            s.watcher = None;
        }
        if !self.workers.is_empty() {
            self.drain_workers().await;
        }
        let settler = &self.settler;
        self.metrics
            .set_queue(settler.pending_len(), settler.ready_len(), 0, 0);
        let left = settler.pending_len() + settler.ready_len();
        if left > 0 {
            tracing::info!(left, "files left queued for the next start");
            self.tally.interrupted += left;
        }
        self.tally
    }

    async fn drain_workers(&mut self) {
        let grace = self.ctx.cfg.shutdown_grace;
        tracing::info!(
            in_flight = self.workers.len(),
            "stopping: letting in-flight work finish (up to {})",
            humantime::format_duration(grace)
        );
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            // Keep the heartbeat going: finishing work is being alive.
            self.beat();
            let wake = deadline.min(tokio::time::Instant::now() + Duration::from_secs(1));
            match tokio::time::timeout_at(wake, self.workers.join_next()).await {
                Ok(Some(Ok(mut w))) => {
                    self.metrics.record_result(&w.result);
                    count(&mut self.tally, &mut w.result);
                    report(&self.progress, &w.path, &w.result);
                }
                Ok(Some(Err(_))) => {}
                Ok(None) => break,
                Err(_) if tokio::time::Instant::now() < deadline => {}
                Err(_) => {
                    tracing::warn!(
                        left = self.workers.len(),
                        "grace period over: leaving the rest queued for the next start"
                    );
                    self.tally.interrupted += self.workers.len();
                    self.workers.abort_all();
                    while self.workers.join_next().await.is_some() {}
                    break;
                }
            }
            self.set_queue_metrics();
        }
    }
}

async fn next_reload(r: &mut Option<mpsc::UnboundedReceiver<Reload>>) -> Option<Reload> {
    match r {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Sleep until `t` (a std Instant); `None` never wakes.
async fn sleep_until_due(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

/// Trouble outside the file (full disk, unwritable folder, state errors):
/// look again after 2 s, 4 s, 8 s … up to 30 s.
fn trouble_delay(times: u32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(times.clamp(1, 5))).min(TROUBLE_MAX_DELAY)
}
