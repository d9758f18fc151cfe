//! The CLI verbs (`run`, `process`, `check`, `status`): load and check the
//! config, set up logging, the state store, the audit log and the providers,
//! then hand over to the queue. Maps every outcome to a documented exit code.
//!
//! Must not: contain pipeline logic (stages live in their own modules).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::audit::Audit;
use crate::cli::{Cli, Command, ConfigArg};
use crate::config::{self, Config};
use crate::job::FileResult;
use crate::pipeline::{self, Ctx};
use crate::provider::{self, Provider};
use crate::queue::{self, Mode, Progress, ProgressFn, Tally};
use crate::service::Heartbeat;
use crate::store::Store;

/// Exit statuses (documented in README.md and `cutout process --help`).
pub mod exit {
    pub const OK: i32 = 0;
    pub const FILES_NOT_OK: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const CONFIG: i32 = 3;
    pub const RUNTIME: i32 = 4;
}

/// Run one parsed command; returns the exit status.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Run { config } => {
            with_config(&config, |cfg, loaded| run_daemon(cfg, loaded, &config))
        }
        Command::Process {
            config,
            dry_run,
            paths,
        } => with_config(&config, |cfg, _| run_batch(cfg, &config, dry_run, &paths)),
        Command::Check { config } => with_config(&config, |cfg, _| check(cfg, &config)),
        Command::Status { config, errors } => with_config(&config, |cfg, _| status(cfg, errors)),
        Command::Models(args) => crate::models::command::main(args),
    }
}

/// Where the running config came from, for reloads.
struct Loaded {
    /// The file (None: built-in defaults).
    path: Option<PathBuf>,
    /// Its text, as read.
    text: String,
}

fn with_config(arg: &ConfigArg, f: impl FnOnce(Config, Loaded) -> i32) -> i32 {
    let located = config::locate(arg.config.as_deref());
    match config::load_with_text(located.as_deref()) {
        Ok((cfg, text)) => f(
            cfg,
            Loaded {
                path: located,
                text,
            },
        ),
        Err(e) => {
            eprintln!("error: {e}");
            if located.is_none() {
                eprintln!("hint: no config file given (--config, $CUTOUT_CONFIG or $CONFIGURATION_DIRECTORY/cutout.toml); see config.example.toml");
            }
            exit::CONFIG
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, std::io::Error> {
    limit_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cutout-worker")
        // Blocking work (reads, hashing, decoding, SQLite, fsync) is short;
        // a bounded pool keeps thread stacks and allocator arenas in check
        // when thousands of files arrive at once.
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
}

/// Upper bound of the blocking thread pool.
const BLOCKING_THREADS: usize = 32;

/// glibc gives every thread that allocates its own arena (up to 8 per core)
/// and each keeps freed picture buffers: resident memory then grows with the
/// number of files seen. Two arenas are plenty for this workload.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before the
    // runtime's threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Everything `run` and `process` share: folders, store, audit, providers.
struct Setup {
    store: Store,
    audit: Arc<Audit>,
    providers: std::collections::BTreeMap<String, Arc<dyn Provider>>,
}

fn setup(cfg: &Config) -> Result<Setup, (i32, String)> {
    match config::prepare_folders(cfg) {
        Ok(created) => {
            for line in created {
                tracing::info!("{line}");
            }
        }
        Err(e) => return Err((exit::CONFIG, e.to_string())),
    }
    let providers = provider::build::build_all(cfg, |_| None).map_err(|m| (exit::CONFIG, m))?;
    let store = Store::open(&cfg.state_dir).map_err(|e| (exit::RUNTIME, e.to_string()))?;
    let audit = Audit::open(&cfg.state_dir).map_err(|e| (exit::RUNTIME, e.to_string()))?;
    Ok(Setup {
        store,
        audit: Arc::new(audit),
        providers,
    })
}

fn origin(cfg: &Config) -> String {
    cfg.source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "built-in defaults".into())
}

fn recover(cfg: &Config, s: &Setup) {
    for ib in &cfg.inboxes {
        for dir in [&ib.outbox, &ib.archive, &ib.rejected, &ib.failed] {
            let n = crate::fsutil::sweep_temps(dir);
            if n > 0 {
                tracing::info!("removed {n} unfinished temp file(s) from {}", dir.display());
            }
        }
    }
    match pipeline::recover(cfg, &s.store, &s.audit) {
        Ok((0, 0)) => {}
        Ok((f, a)) => tracing::info!(finished = f, dropped = a, "recovered interrupted jobs"),
        Err(e) => tracing::error!("recovery: {e}"),
    }
}

fn describe_inboxes(cfg: &Config) {
    for ib in &cfg.inboxes {
        tracing::info!(
            "inbox {} → {} ({}, provider {}, settle {}, after success: {:?})",
            ib.path.display(),
            ib.outbox.display(),
            ib.output_format.extension(),
            ib.provider,
            humantime::format_duration(ib.settle),
            ib.after_success
        );
    }
}

fn shutdown_on_signals(tx: tokio::sync::watch::Sender<bool>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping (press Ctrl-C again to stop at once)"),
        }
        let _ = tx.send(true);
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second signal: stopping now; unfinished work is resumed at the next start");
        std::process::exit(130);
    });
}

fn run_daemon(cfg: Config, loaded: Loaded, arg: &ConfigArg) -> i32 {
    let _log = crate::logging::init(arg.log.as_deref(), cfg.log_dir.as_deref());
    let s = match setup(&cfg) {
        Ok(s) => s,
        Err((code, msg)) => {
            tracing::error!("{msg}");
            return code;
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return exit::RUNTIME;
        }
    };
    recover(&cfg, &s);
    describe_inboxes(&cfg);
    for name in s.providers.keys() {
        crate::metrics::global().register_provider(name);
    }
    let cfg = Arc::new(cfg);
    let code = rt.block_on(async move {
        let (tx, rx) = tokio::sync::watch::channel(false);
        shutdown_on_signals(tx);
        let heartbeat = Arc::new(Heartbeat::new());
        let grace_ms = Arc::new(std::sync::atomic::AtomicU64::new(
            cfg.shutdown_grace.as_millis() as u64,
        ));
        tell_manager_when_stopping(rx.clone(), heartbeat.clone(), grace_ms.clone());
        let (stop_heartbeat, stop_grace) = (heartbeat.clone(), grace_ms.clone());

        // The HTTP endpoint binds before READY=1: a bad address fails the start.
        let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let http_task = match cfg.http.listen {
            None => None,
            Some(addr) => match crate::http::bind(addr).await {
                Ok(listener) => {
                    let at = listener
                        .local_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_else(|_| addr.to_string());
                    tracing::info!("http: /healthz and /metrics listening on http://{at}");
                    let state = crate::http::HttpState {
                        heartbeat: heartbeat.clone(),
                    };
                    Some(tokio::spawn(crate::http::serve(listener, state, async move {
                        let _ = http_stopped.await;
                    })))
                }
                Err(e) => {
                    // Not exit::CONFIG: a busy port may free up, so the
                    // service manager should try again.
                    tracing::error!("{}: {e}", origin(&cfg));
                    return exit::RUNTIME;
                }
            },
        };

        let ctx = Arc::new(Ctx {
            cfg: cfg.clone(),
            store: s.store.clone(),
            audit: s.audit.clone(),
            providers: s.providers.clone(),
            dry_run: false,
            shutdown: rx.clone(),
            engine_slots: Ctx::engine_slots(cfg.queue.concurrency),
        });
        let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel();
        let reloader = crate::reload::Reloader {
            path: loaded.path,
            digests: config::provider_digests(&loaded.text),
            current: ctx.clone(),
            queue: reload_tx,
            grace_ms,
        };
        if let Err(e) = crate::reload::spawn_on_sighup(reloader, rx.clone()) {
            tracing::error!("cannot listen for SIGHUP ({e}); config reloads need a restart");
        }
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let supervisor = tokio::spawn(crate::service::supervise(heartbeat.clone(), ready_rx));
        tracing::info!(state = %cfg.state_dir.display(), concurrency = cfg.queue.concurrency, "cutout is running; stop with Ctrl-C or SIGTERM, reload the config with SIGHUP");
        let hooks = queue::Hooks {
            reloads: Some(reload_rx),
            heartbeat: Some(heartbeat),
            ready: Some(ready_tx),
        };
        let t = queue::run_with(ctx, Mode::Daemon, None, hooks).await;
        // The queue can be done before the task above got to run.
        announce_stopping(&stop_heartbeat, &stop_grace);
        supervisor.abort();
        if let Some(task) = http_task {
            let _ = http_stop.send(());
            match tokio::time::timeout(Duration::from_secs(2), task).await {
                Ok(Ok(Err(e))) => tracing::warn!("{e}"),
                Ok(_) => {}
                Err(_) => tracing::warn!("http: open connections did not close; stopping anyway"),
            }
        }
        tracing::info!(
            succeeded = t.succeeded,
            duplicates = t.duplicates,
            rejected = t.rejected,
            failed = t.failed,
            left_queued = t.interrupted,
            "stopped"
        );
        exit::OK
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    code
}

/// `/healthz` turns 503 and the service manager gets `STOPPING=1`, with its
/// stop timeout extended to cover the grace period; once only.
fn announce_stopping(heartbeat: &Heartbeat, grace_ms: &std::sync::atomic::AtomicU64) {
    if heartbeat.set_stopping() {
        let grace = Duration::from_millis(grace_ms.load(Ordering::Relaxed));
        crate::service::stopping(grace);
    }
}

/// Announce the stop as soon as shutdown begins (the queue may still be
/// finishing in-flight work for a while).
fn tell_manager_when_stopping(
    mut rx: tokio::sync::watch::Receiver<bool>,
    heartbeat: Arc<Heartbeat>,
    grace_ms: Arc<std::sync::atomic::AtomicU64>,
) {
    tokio::spawn(async move {
        if rx.wait_for(|s| *s).await.is_ok() {
            announce_stopping(&heartbeat, &grace_ms);
        }
    });
}

/// Map PATH arguments to (inbox, path) roots; every path must be inside an
/// inbox.
fn batch_roots(cfg: &Config, paths: &[PathBuf]) -> Result<Vec<(usize, PathBuf)>, String> {
    let mut roots = Vec::new();
    for p in paths {
        let abs = config::normalize(&std::path::absolute(p).unwrap_or_else(|_| p.clone()));
        if std::fs::symlink_metadata(&abs).is_err() {
            return Err(format!("{}: no such file or folder", p.display()));
        }
        match cfg.inboxes.iter().position(|ib| abs.starts_with(&ib.path)) {
            Some(i) => roots.push((i, abs)),
            None => {
                let list: Vec<String> = cfg
                    .inboxes
                    .iter()
                    .map(|i| i.path.display().to_string())
                    .collect();
                return Err(format!(
                    "{} is not inside a configured inbox ({}); copy the files into an inbox, or add an [[inbox]] for that folder",
                    p.display(),
                    list.join(", ")
                ));
            }
        }
    }
    Ok(roots)
}

fn run_batch(cfg: Config, arg: &ConfigArg, dry_run: bool, paths: &[PathBuf]) -> i32 {
    let tty = std::io::stderr().is_terminal();
    let _log = crate::logging::init(
        Some(
            arg.log
                .as_deref()
                .unwrap_or(if tty { "warn" } else { "info" }),
        ),
        cfg.log_dir.as_deref(),
    );
    let roots = match batch_roots(&cfg, paths) {
        Ok(r) => r,
        Err(msg) => {
            eprintln!("error: {msg}");
            return exit::USAGE;
        }
    };
    let s = match setup(&cfg) {
        Ok(s) => s,
        Err((code, msg)) => {
            eprintln!("error: {msg}");
            return code;
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::RUNTIME;
        }
    };
    if !dry_run {
        recover(&cfg, &s);
    }
    let started = Instant::now();
    let cfg = Arc::new(cfg);
    let (progress, bar) = progress_reporter(tty, dry_run);
    let tally = rt.block_on(async move {
        let (tx, rx) = tokio::sync::watch::channel(false);
        shutdown_on_signals(tx);
        let ctx = Arc::new(Ctx {
            cfg: cfg.clone(),
            store: s.store.clone(),
            audit: s.audit.clone(),
            providers: s.providers.clone(),
            dry_run,
            shutdown: rx,
            engine_slots: Ctx::engine_slots(cfg.queue.concurrency),
        });
        queue::run(ctx, Mode::Batch { roots }, Some(progress)).await
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    rt.shutdown_timeout(Duration::from_secs(2));
    print_summary(&tally, dry_run, started.elapsed());
    if tally.rejected + tally.failed + tally.troubled > 0 {
        exit::FILES_NOT_OK
    } else {
        exit::OK
    }
}

fn print_summary(t: &Tally, dry_run: bool, took: Duration) {
    let secs = took.as_secs_f64();
    if dry_run {
        println!(
            "dry run: {} valid, {} would be rejected, {} skipped ({:.1}s); nothing was submitted or moved",
            t.valid, t.rejected, t.skipped, secs
        );
        return;
    }
    let done = t.succeeded + t.duplicates;
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    println!(
        "{} succeeded, {} duplicates, {} rejected, {} failed, {} skipped{}{} in {:.1}s ({:.1}/s)",
        t.succeeded,
        t.duplicates,
        t.rejected,
        t.failed,
        t.skipped,
        if t.troubled > 0 {
            format!(", {} left in the inbox after errors", t.troubled)
        } else {
            String::new()
        },
        if t.interrupted > 0 {
            format!(", {} left queued", t.interrupted)
        } else {
            String::new()
        },
        secs,
        rate
    );
}

/// A progress bar on a terminal, periodic log lines otherwise.
fn progress_reporter(tty: bool, dry_run: bool) -> (ProgressFn, Option<indicatif::ProgressBar>) {
    let done = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    if tty {
        let bar = indicatif::ProgressBar::new(0);
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} ({per_sec}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        let b = bar.clone();
        let f: ProgressFn = Arc::new(move |p: &Progress| match p {
            Progress::Found(n) => b.inc_length(*n as u64),
            Progress::Finished { path, result } => {
                if counts_as_done(result) {
                    b.inc(1);
                }
                match result {
                    FileResult::Rejected(why) | FileResult::Failed(why) => {
                        b.println(format!("{}: {why}", path.display()));
                    }
                    _ => {}
                }
            }
        });
        (f, Some(bar))
    } else {
        let last = Arc::new(Mutex::new(Instant::now()));
        let f: ProgressFn = Arc::new(move |p: &Progress| match p {
            Progress::Found(n) => {
                total.fetch_add(*n, Ordering::Relaxed);
            }
            Progress::Finished { result, .. } => {
                if counts_as_done(result) {
                    let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                    let t = total.load(Ordering::Relaxed);
                    let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
                    if l.elapsed() >= Duration::from_secs(5) || d == t {
                        *l = Instant::now();
                        tracing::info!(
                            "{} {d}/{t} files",
                            if dry_run { "checked" } else { "processed" }
                        );
                    }
                }
            }
        });
        (f, None)
    }
}

fn counts_as_done(r: &FileResult) -> bool {
    !matches!(r, FileResult::Later(_) | FileResult::Trouble(_))
}

fn check(cfg: Config, arg: &ConfigArg) -> i32 {
    let _log = crate::logging::init(Some(arg.log.as_deref().unwrap_or("warn")), None);
    println!(
        "config: {}",
        cfg.source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "built-in defaults (no file)".into())
    );
    match config::prepare_folders(&cfg) {
        Ok(created) => {
            for l in created {
                println!("  {l}");
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            return exit::CONFIG;
        }
    }
    println!("state_dir: {}", cfg.state_dir.display());
    println!(
        "log_dir: {}",
        cfg.log_dir
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(stderr only)".into())
    );
    println!(
        "limits: max_file_size {} bytes, max {}x{}, max_pixels {}",
        cfg.limits.max_file_size,
        cfg.limits.max_width,
        cfg.limits.max_height,
        cfg.limits.max_pixels
    );
    println!(
        "queue: concurrency {}; retry: max_attempts {}, initial_delay {}, max_delay {}",
        cfg.queue.concurrency,
        cfg.retry.max_attempts,
        humantime::format_duration(cfg.retry.initial_delay),
        humantime::format_duration(cfg.retry.max_delay)
    );
    println!(
        "rescan_interval {}, shutdown_grace {}",
        humantime::format_duration(cfg.rescan_interval),
        humantime::format_duration(cfg.shutdown_grace)
    );
    match cfg.http.listen {
        Some(a) => println!("http: /healthz and /metrics on http://{a}"),
        None => println!("http: off (set [http] listen to serve /healthz and /metrics)"),
    }
    for (i, ib) in cfg.inboxes.iter().enumerate() {
        println!("inbox[{i}] {:?}:", ib.name);
        for (key, dir) in ib.managed_folders() {
            println!("  {key:<9} {} (ok, writable)", dir.display());
        }
        println!(
            "  provider {}, output {} (webp_quality {}), settle {}, recursive {}, after_success {:?}, watch {:?}",
            ib.provider,
            ib.output_format.extension(),
            ib.webp_quality,
            humantime::format_duration(ib.settle),
            ib.recursive,
            ib.after_success,
            ib.watch
        );
        if !ib.ignore.is_empty() {
            println!("  ignore {:?}", ib.ignore);
        }
        for (j, spec) in ib.outputs.iter().enumerate() {
            println!("  output[{j}] {} = {spec}", spec.name_pattern());
        }
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::RUNTIME;
        }
    };
    let mut ok = true;
    for (name, pc) in &cfg.providers {
        match provider::build::build(name, pc) {
            Ok(p) => {
                let h = rt.block_on(p.health());
                println!(
                    "provider {name} ({}): {}",
                    p.kind(),
                    if h.ok { "ok" } else { "NOT OK" }
                );
                for l in h.lines {
                    println!("  {l}");
                }
                let users: Vec<String> = (cfg.inboxes.iter().enumerate())
                    .filter(|(_, ib)| &ib.provider == name)
                    .map(|(i, ib)| format!("inbox[{i}] {:?}", ib.name))
                    .collect();
                if !users.is_empty() {
                    println!("  engine of {}", users.join(", "));
                }
                ok &= h.ok;
            }
            Err(e) => {
                println!("provider {name}: NOT OK: {e}");
                ok = false;
            }
        }
    }
    if ok {
        println!("config ok");
        exit::OK
    } else {
        exit::CONFIG
    }
}

fn count_waiting(cfg: &Config) -> Vec<(String, usize)> {
    cfg.inboxes
        .iter()
        .enumerate()
        .map(|(i, ib)| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let n = if ib.path.is_dir() {
                crate::watch::scan(i, ib, &ib.path, &tx)
            } else {
                0
            };
            rx.close();
            (ib.name.clone(), n)
        })
        .collect()
}

fn status(cfg: Config, errors: usize) -> i32 {
    println!("state_dir: {}", cfg.state_dir.display());
    let store = match Store::open_read_only(&cfg.state_dir) {
        Ok(Some(s)) => s,
        Ok(None) => {
            println!("no state yet: cutout has not processed anything with this state_dir");
            for (name, n) in count_waiting(&cfg) {
                println!("waiting in inbox {name}: {n} file(s)");
            }
            return exit::OK;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return exit::RUNTIME;
        }
    };
    let running = daemon_pid(&cfg.state_dir);
    match running {
        Some(pid) => println!("daemon: running (pid {pid})"),
        None => println!("daemon: not running"),
    }
    match store.counts() {
        Ok(c) => {
            println!("outcomes:");
            for (k, n) in c {
                println!("  {k:<12} {n}");
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            return exit::RUNTIME;
        }
    }
    for (name, n) in count_waiting(&cfg) {
        println!("waiting in inbox {name}: {n} file(s)");
    }
    match store.undecided() {
        Ok(jobs) if !jobs.is_empty() => {
            println!("in progress ({}):", jobs.len());
            for j in jobs.iter().take(20) {
                println!(
                    "  {} ({} attempt(s){})",
                    j.rel_path.display(),
                    j.attempts,
                    j.remote_job
                        .as_ref()
                        .map(|r| format!(", remote job {r}"))
                        .unwrap_or_default()
                );
            }
        }
        _ => {}
    }
    if let Ok(errs) = store.last_errors(errors) {
        if !errs.is_empty() {
            println!("last errors:");
            for j in errs {
                println!(
                    "  {} {}: {} ({})",
                    j.outcome.map(|o| o.as_str()).unwrap_or("?"),
                    j.rel_path.display(),
                    j.reason.as_deref().unwrap_or(""),
                    j.reason_code.map_or("", crate::job::Code::as_str)
                );
            }
        }
    }
    exit::OK
}

/// The pid in the state folder's lock file, if that process holds the lock.
fn daemon_pid(state_dir: &Path) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let lock = state_dir.join("cutout.lock");
    let f = std::fs::File::open(&lock).ok()?;
    // SAFETY: valid fd while `f` lives.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    if rc == 0 {
        // SAFETY: as above.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        return None;
    }
    std::fs::read_to_string(&lock).ok()?.trim().parse().ok()
}
