//! What `cutout process` shows while it works: a progress bar on a terminal
//! (rejections and failures printed above it), periodic log lines otherwise,
//! and the one-line summary at the end.
//!
//! Must not: decide exit statuses or outcomes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::job::FileResult;
use crate::queue::{Progress, ProgressFn, Tally};

/// The summary line (stdout, or stderr when stdout carries a picture).
pub(super) fn summary(t: &Tally, dry_run: bool, took: Duration) -> String {
    let secs = took.as_secs_f64();
    if dry_run {
        return format!(
            "dry run: {} valid, {} would be rejected, {} skipped ({:.1}s); nothing was submitted or moved",
            t.valid, t.rejected, t.skipped, secs
        );
    }
    let done = t.succeeded + t.duplicates;
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    format!(
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
    )
}

/// A progress bar on a terminal, periodic log lines otherwise.
pub(super) fn reporter(tty: bool, dry_run: bool) -> (ProgressFn, Option<indicatif::ProgressBar>) {
    if tty {
        let (f, bar) = bar();
        (f, Some(bar))
    } else {
        (log_lines(dry_run), None)
    }
}

fn bar() -> (ProgressFn, indicatif::ProgressBar) {
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
    (f, bar)
}

fn log_lines(dry_run: bool) -> ProgressFn {
    let done = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    let last = Arc::new(Mutex::new(Instant::now()));
    Arc::new(move |p: &Progress| match p {
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
    })
}

fn counts_as_done(r: &FileResult) -> bool {
    !matches!(r, FileResult::Later(_) | FileResult::Trouble(_))
}
