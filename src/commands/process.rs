//! `cutout process` over configured inboxes: what is in them now (or the
//! given paths inside them), processed once, then a summary and the exit
//! status. Also the batch runner the one-shot mode (`oneshot`) shares.
//!
//! Must not: contain pipeline logic, or accept paths outside an inbox (the
//! one-shot mode handles those).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{exit, CommandError, CommandResult};
use super::progress;
use super::shared::{open_state, recover, runtime, setup, shutdown_on_signals};
use crate::cli::ConfigArg;
use crate::config::{self, Config};
use crate::pipeline::Ctx;
use crate::queue::{self, Mode, Tally};

/// Where the summary line goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum SummaryTo {
    Stdout,
    /// stdout carries a picture (`-o -`).
    Stderr,
}

/// Whether the config's folders still need creating and checking.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Folders {
    /// Create missing ones, check each is writable (inboxes included).
    Prepare,
    /// Made by the caller (one-shot: the sources are never written to).
    Ready,
}

/// Start logging for a batch: warnings only under a progress bar.
pub(super) fn init_logging(cfg: &Config, arg: &ConfigArg) -> crate::logging::LogGuard {
    let tty = std::io::stderr().is_terminal();
    crate::logging::init(
        Some(
            arg.log
                .as_deref()
                .unwrap_or(if tty { "warn" } else { "info" }),
        ),
        cfg.log_dir.as_deref(),
    )
}

pub(super) fn run_batch(
    cfg: Config,
    arg: &ConfigArg,
    dry_run: bool,
    paths: &[PathBuf],
) -> CommandResult {
    let _log = init_logging(&cfg, arg);
    let roots = batch_roots(&cfg, paths).map_err(CommandError::usage)?;
    let tally = run_roots(cfg, roots, dry_run, SummaryTo::Stdout, Folders::Prepare)?;
    Ok(exit_status(&tally))
}

/// 0 when every file is done, 1 when some were rejected or failed.
pub(super) fn exit_status(t: &Tally) -> i32 {
    if t.rejected + t.failed + t.troubled > 0 {
        exit::FILES_NOT_OK
    } else {
        exit::OK
    }
}

/// Process `roots` (inbox index, path) once with a progress display, then
/// print the summary.
pub(super) fn run_roots(
    cfg: Config,
    roots: Vec<(usize, PathBuf)>,
    dry_run: bool,
    summary_to: SummaryTo,
    folders: Folders,
) -> Result<Tally, CommandError> {
    let s = match folders {
        Folders::Prepare => setup(&cfg)?,
        Folders::Ready => open_state(&cfg)?,
    };
    let rt = runtime()
        .map_err(|e| CommandError::runtime(format!("cannot start the async runtime: {e}")))?;
    if !dry_run {
        recover(&cfg, &s);
    }
    let started = Instant::now();
    let cfg = Arc::new(cfg);
    let tty = std::io::stderr().is_terminal();
    let (report, bar) = progress::reporter(tty, dry_run);
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
        queue::run(ctx, Mode::Batch { roots }, Some(report)).await
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    rt.shutdown_timeout(Duration::from_secs(2));
    let line = progress::summary(&tally, dry_run, started.elapsed());
    match summary_to {
        SummaryTo::Stdout => println!("{line}"),
        SummaryTo::Stderr => eprintln!("{line}"),
    }
    Ok(tally)
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
