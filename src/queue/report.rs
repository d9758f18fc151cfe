//! What the queue is told (its [`Mode`], service [`Hooks`]) and what it
//! tells (the [`Tally`], [`Progress`] as it goes).
//!
//! Must not: hold state of the loop (the dispatcher does).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::switch::Reload;
use crate::job::FileResult;
use crate::service::Heartbeat;

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

pub(super) fn report(progress: &Option<ProgressFn>, path: &std::path::Path, res: &FileResult) {
    if let Some(p) = progress {
        p(&Progress::Finished {
            path: path.to_path_buf(),
            result: res.clone(),
        });
    }
}

pub(super) fn count(t: &mut Tally, res: &mut FileResult) {
    match res {
        FileResult::Succeeded => t.succeeded += 1,
        FileResult::Duplicate => t.duplicates += 1,
        FileResult::Rejected(_) => t.rejected += 1,
        FileResult::Failed(_) => t.failed += 1,
        FileResult::Valid => t.valid += 1,
        FileResult::AlreadyDone | FileResult::Vanished | FileResult::Elsewhere => t.skipped += 1,
        FileResult::Interrupted => t.interrupted += 1,
        FileResult::Later(_) | FileResult::Trouble(_) => {}
    }
}
