//! Claim: find or create the job for this file and content in the state
//! database (`store::claim`): a new job reserves its output name and counts
//! its first attempt in one commit; an interrupted one is resumed; the same
//! content done before is a duplicate (its cut-out reused, see `duplicate`;
//! made again only where no provider pays twice); the same content
//! in flight under another name waits.
//!
//! On the shared state, a claim made for an input that left while it was
//! read (another instance finished it) is dropped at once.
//!
//! Must not: call a provider or write any file.

use std::time::Duration;

use super::ctx::{blocking, state_trouble, Picture};
use super::decide::output_naming;
use super::duplicate::{self, Dup};
use super::intake::Read;
use crate::job::FileResult;
use crate::store::{Claim, ClaimRequest, Job};
use crate::validate::Validated;

/// Whether the job's first attempt is already counted in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FirstAttempt {
    /// A new job: the claim counted it in the same commit.
    CountedByClaim,
    /// A resumed job: every attempt is counted when it starts.
    CountWhenStarted,
}

/// Claim the job, or say what became of the file instead (a duplicate is
/// decided here).
pub(super) async fn claim(
    pic: &Picture<'_>,
    read: &Read,
    v: &Validated,
) -> Result<(Job, FirstAttempt), FileResult> {
    let req = ClaimRequest {
        inbox: pic.inbox.name.clone(),
        rel: pic.rel.clone(),
        sha256: read.sha256.clone(),
        size: read.stat.size,
        mtime_ns: read.stat.mtime_ns,
        provider: pic.inbox.provider.clone(),
        kept_in_place: pic.inbox.after_success.keeps_input(),
        output: Some(output_naming(pic)),
    };
    let claim = match pic.ctx.store.claim(req).await {
        Ok(c) => c,
        Err(e) => return Err(state_trouble(e)),
    };
    // Only the shared state has another instance to race (one stat per
    // claim there; nothing added to one machine's path).
    if pic.ctx.store.is_shared() {
        if let Claim::New(job) | Claim::Resume(job) | Claim::Duplicate { job, .. } = &claim {
            if let Some(gone) = gone_since_read(pic, job.id).await {
                return Err(gone);
            }
        }
    }
    match claim {
        Claim::AlreadyDone => Err(FileResult::AlreadyDone),
        Claim::Busy => {
            tracing::debug!(input = %pic.rel.display(), "busy: another instance holds it");
            Err(FileResult::Later(
                pic.inbox.settle.max(Duration::from_secs(1)),
            ))
        }
        Claim::Duplicate { job, earlier } => {
            match duplicate::duplicate(pic, job, *earlier, v).await {
                Dup::Done(done) => Err(done),
                Dup::Run(job) => Ok((*job, FirstAttempt::CountWhenStarted)),
            }
        }
        Claim::New(job) => Ok((job, FirstAttempt::CountedByClaim)),
        Claim::Resume(job) => {
            tracing::debug!(input = %pic.rel.display(), job = job.id, "resuming a job");
            Ok((job, FirstAttempt::CountWhenStarted))
        }
    }
}

/// Whether the input left while it was read and claimed (shared state);
/// then the job just claimed is dropped (no provider call, no audit line).
/// Another instance finished it: this claim could only be made once that
/// instance's job had ended, and it moves the input before it ends the
/// job, so the check after the claim cannot miss it.
async fn gone_since_read(pic: &Picture<'_>, id: i64) -> Option<FileResult> {
    let (input, store) = (pic.inbox.path.join(&pic.rel), pic.ctx.store.clone());
    let gone = blocking("claim: is the input still there", move || {
        if std::fs::symlink_metadata(&input).is_ok() {
            return Ok(false);
        }
        store
            .abandon(id, "another instance finished the input while it was read")
            .map(|()| true)
    })
    .await;
    match gone {
        Ok(Ok(false)) => None,
        Ok(Ok(true)) => {
            tracing::info!(input = %pic.rel.display(), "another instance finished this input while it was being read; leaving it to them");
            Some(FileResult::Elsewhere)
        }
        Ok(Err(e)) => Some(state_trouble(e)),
        Err(e) => Some(FileResult::Trouble(e)),
    }
}
