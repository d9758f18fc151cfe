//! The life of one file, from a settled path to its one final place, one
//! file per stage:
//!
//! ```text
//!  intake   state lookup, file kind and size, read + sha256 (unchanged while read)
//!  check    sniff, caps, decode (crate::validate) → Validated, or a rejection
//!  claim    store::claim: new / resume / duplicate (duplicate: reuse) / busy / already done
//!  attempt  engine slot → Provider::remove_background, retries and backoff
//!  decide   write the cut-out or every [[inbox.output]] (outputs); commit succeeded / duplicate / rejected / failed
//!  finish   reason file → audit line → input moved or deleted → done
//! ```
//!
//! Also crash recovery (`finish::recover`), which finishes jobs that were
//! decided but not completed, and on the shared state the takeover sweep
//! (`orphans`), which does the same for a dead instance's jobs and hands
//! its inputs still waiting back to the queue, first.
//!
//! Owns: the order of durable steps that makes "nothing lost, nothing paid
//! twice" true: the output is durable before the decision is committed, the
//! decision before the audit line, the audit line before the input moves;
//! and the `queue.concurrency` engine slots, held only around the provider
//! call.
//!
//! On the shared (PostgreSQL) state, fencing: every job write is refused
//! once another instance has taken the job over (`StoreError::Fenced`), and
//! the steps that are not database writes ask first (`Store::check_held`):
//! right before an output is renamed into place (outputs land before the
//! decision) and before the reason file, audit line and move. A fenced
//! worker stops at once, writes nothing more, logs one INFO line ("another
//! instance took this job over") and reports `FileResult::Elsewhere`
//! (skipped; neither trouble nor retried soon). A move that finds the input
//! gone asks the database whether someone else finished it (`Elsewhere`
//! too) before calling it vanished.
//!
//! Must not: watch folders or schedule work (the queue does), or know any
//! provider's wire format.

mod attempt;
mod check;
mod claim;
mod ctx;
mod decide;
mod duplicate;
mod finish;
mod intake;
pub mod orphans;
pub mod outputs;
mod stored;

use std::path::Path;
use std::time::Instant;

use crate::config::Inbox;
use crate::job::FileResult;
use ctx::Picture;

pub use ctx::Ctx;
pub use finish::{finish_job, recover, Decided, FinishError};

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
        return ctx::internal_trouble(msg);
    };
    let validated = match check::validate(&pic, &mut read, provider.wants_pixels()).await {
        Ok(v) => v,
        Err(done) => return done,
    };
    if ctx.dry_run {
        let base = crate::output::output_base(inbox, &pic.rel);
        let planned = outputs::paths(inbox, &pic.rel, &base);
        outputs::print_plan(path, &planned);
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
