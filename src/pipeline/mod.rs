//! The life of one file, from a settled path to its one final place, one
//! file per stage:
//!
//! ```text
//!  intake   state lookup, file kind and size, read + sha256 (unchanged while read)
//!  check    sniff, caps, decode (crate::validate) → Validated, or a rejection
//!  claim    store::claim: new / resume / duplicate / busy / already done
//!  attempt  engine slot → Provider::remove_background, retries and backoff
//!  decide   write the cut-out; commit succeeded / duplicate / rejected / failed
//!  finish   reason file → audit line → input moved or deleted → done
//! ```
//!
//! Also crash recovery (`finish::recover`), which finishes jobs that were
//! decided but not completed.
//!
//! Owns: the order of durable steps that makes "nothing lost, nothing paid
//! twice" true: the output is durable before the decision is committed, the
//! decision before the audit line, the audit line before the input moves;
//! and the `queue.concurrency` engine slots, held only around the provider
//! call.
//!
//! Must not: watch folders or schedule work (the queue does), or know any
//! provider's wire format.

mod attempt;
mod check;
mod claim;
mod decide;
mod finish;
mod intake;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::audit::Audit;
use crate::config::{Config, Inbox};
use crate::job::FileResult;
use crate::provider::Provider;
use crate::store::Store;

pub use finish::{finish_job, recover, Decided, FinishError};

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
struct Picture<'a> {
    ctx: &'a Ctx,
    inbox: &'a Inbox,
    /// The input's path relative to its inbox.
    rel: PathBuf,
    /// When work on it began (for `duration_ms`).
    started: Instant,
}

/// Process one settled file of `inbox`.
pub async fn process_file(ctx: &Ctx, inbox: &Inbox, path: &Path) -> FileResult {
    let Ok(rel) = path.strip_prefix(&inbox.path) else {
        return FileResult::Vanished;
    };
    let pic = Picture {
        ctx,
        inbox,
        rel: rel.to_path_buf(),
        started: Instant::now(),
    };
    let mut read = match intake::read(&pic, path).await {
        Ok(read) => read,
        Err(done) => return done,
    };
    let Some(provider) = ctx.providers.get(&inbox.provider).cloned() else {
        let msg = format!("provider {:?} is not available", inbox.provider);
        return FileResult::Trouble(msg);
    };
    let validated = match check::validate(&pic, &mut read, provider.wants_pixels()).await {
        Ok(v) => v,
        Err(done) => return done,
    };
    if ctx.dry_run {
        return FileResult::Valid;
    }
    let (job, first) = match claim::claim(&pic, &read, &validated).await {
        Ok(claimed) => claimed,
        Err(done) => return done,
    };
    match attempt::run(&pic, &job, first, provider, &validated).await {
        Ok(done) => decide::succeed(&pic, &job, done, &validated).await,
        Err(done) => done,
    }
}

fn lossy(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Blocking work of the pipeline, through the crate's one helper
/// ([`crate::blocking::run`]); a lost task becomes a message.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    crate::blocking::run(what, f)
        .await
        .map_err(|e| e.to_string())
}
