//! What every stage of the pipeline is handed: the shared [`Ctx`] of a
//! worker, the [`Picture`] on its way, and the pipeline's door to the
//! crate's one blocking helper.
//!
//! Must not: import a stage (every stage imports this).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::audit::Audit;
use crate::config::{Config, Inbox};
use crate::job::{Code, FileResult, Reason};
use crate::provider::Provider;
use crate::store::{Store, StoreError};

/// Everything a worker needs, shared read-only.
pub struct Ctx {
    pub cfg: Arc<Config>,
    pub store: Store,
    pub audit: Arc<Audit>,
    pub providers: std::collections::BTreeMap<String, Arc<dyn Provider>>,
    pub dry_run: bool,
    /// Flips to true when the process is asked to stop.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// `queue.concurrency` permits: pictures at the engine at once.
    pub engine_slots: Arc<tokio::sync::Semaphore>,
}

impl Ctx {
    /// The engine slots for a `queue.concurrency`.
    pub fn engine_slots(concurrency: usize) -> Arc<tokio::sync::Semaphore> {
        Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)))
    }

    /// Workers the queue runs at once: the pictures at the engine plus as
    /// many again being read, checked and finished around them (each holds
    /// at most one picture's bytes).
    pub fn worker_limit(&self) -> usize {
        2 * self.cfg.queue.concurrency.max(1)
    }

    /// Pictures holding an engine slot right now.
    pub fn at_engine(&self) -> usize {
        self.cfg
            .queue
            .concurrency
            .max(1)
            .saturating_sub(self.engine_slots.available_permits())
    }
}

/// One picture on its way through the stages: what every stage is handed.
pub(super) struct Picture<'a> {
    pub ctx: &'a Ctx,
    pub inbox: &'a Inbox,
    /// The input's path relative to its inbox.
    pub rel: PathBuf,
    /// When work on it began (for `duration_ms`).
    pub started: Instant,
}

pub(super) fn lossy(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Blocking work of the pipeline, through the crate's one helper
/// ([`crate::blocking::run`]); a lost task becomes an `internal-error`
/// reason.
pub(super) async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Reason> {
    crate::blocking::run(what, f)
        .await
        .map_err(|e| Reason::new(Code::InternalError, e))
}

/// Trouble with the state database (`state-error`): look again later.
pub(super) fn state_trouble(e: impl std::fmt::Display) -> FileResult {
    FileResult::Trouble(Reason::new(Code::StateError, e))
}

/// What a worker reports when a store call failed: a fenced write (another
/// instance took this job over after this one's lease lapsed) stops the
/// work at once and quietly ([`taken_over`]); anything else is trouble.
pub(super) fn store_failed(rel: &Path, e: StoreError) -> FileResult {
    match e {
        StoreError::Fenced { id, holder } => taken_over(rel, id, &holder),
        e => state_trouble(e),
    }
}

/// The one line for a job another instance took over, and the result that
/// neither counts as trouble nor comes back soon.
pub(super) fn taken_over(rel: &Path, id: i64, holder: &str) -> FileResult {
    tracing::info!(input = %rel.display(), job = id, holder, "another instance took this job over; leaving it to them");
    FileResult::Elsewhere
}

/// Trouble this program caused itself (`internal-error`): look again later.
pub(super) fn internal_trouble(e: impl std::fmt::Display) -> FileResult {
    FileResult::Trouble(Reason::new(Code::InternalError, e))
}
