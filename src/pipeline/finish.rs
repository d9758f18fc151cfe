//! Finish: the idempotent steps after a decision — the reason file beside
//! a rejected or failed input, the audit line (exactly once), the input
//! moved to its one place or deleted, the job marked done. Run right after
//! deciding, again for a decision whose steps failed earlier (full disk,
//! read-only folder), and at start-up for what a crash left unfinished
//! ([`recover`]).
//!
//! Must not: decide an outcome, or write the audit line before the decision
//! is committed (the record it writes is the one the decision prepared).

use std::path::Path;

use super::ctx::{blocking, lossy, Ctx};
use crate::audit::{now_rfc3339, Audit};
use crate::config::{AfterSuccess, Config, Inbox};
use crate::fsutil;
use crate::job::{Code, FileResult, FileStat, Outcome, Reason};
use crate::output::{self, ReasonFile};
use crate::store::{Job, Store};

/// Run the finishing steps of a job decided earlier.
pub(super) async fn finish_decided(ctx: &Ctx, job: Job) -> FileResult {
    let (store, audit, cfg, id) = (
        ctx.store.clone(),
        ctx.audit.clone(),
        ctx.cfg.clone(),
        job.id,
    );
    match blocking("finish job", move || {
        finish_job(&cfg, &store, &audit, id, None, Decided::Earlier)
    })
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return FileResult::Trouble(e.to_string()),
        Err(e) => return FileResult::Trouble(e),
    }
    let why = || {
        let code = job.reason_code.unwrap_or(Code::InternalError);
        Reason::new(code, job.reason.clone().unwrap_or_default())
    };
    match job.outcome {
        Some(Outcome::Succeeded) => FileResult::Succeeded,
        Some(Outcome::Duplicate) => FileResult::Duplicate,
        Some(Outcome::Rejected) => FileResult::Rejected(why()),
        Some(Outcome::Failed) => FileResult::Failed(why()),
        Some(Outcome::Vanished) | None => FileResult::Vanished,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Output(#[from] output::OutputError),
    #[error(transparent)]
    Fs(#[from] fsutil::FsError),
    #[error("job {0} has no prepared audit record")]
    NoRecord(i64),
}

/// When a job's decision was committed, which tells whether its audit line
/// may already be in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decided {
    /// Just now, by this process: its audit line cannot be in the file yet
    /// (no need to search the file's tail).
    JustNow,
    /// Earlier (recovery, or finishing steps that failed before): search.
    Earlier,
}

/// The idempotent finishing steps of a decided job: reason file, audit
/// line, input disposition, done. Safe to run again after a crash at any
/// point.
pub fn finish_job(
    cfg: &Config,
    store: &Store,
    audit: &Audit,
    id: i64,
    hint: Option<&str>,
    decided: Decided,
) -> Result<(), FinishError> {
    let Some(job) = store.get(id)? else {
        return Ok(());
    };
    let Some(outcome) = job.outcome else {
        return Ok(());
    };
    if !job.active {
        return Ok(());
    }
    let Some(inbox) = cfg.inboxes.iter().find(|i| i.name == job.inbox) else {
        // The inbox was removed from the config: nothing safe to move.
        store.finish(id, false)?;
        return Ok(());
    };
    let record_text = job.record.clone().ok_or(FinishError::NoRecord(id))?;
    let input = inbox.path.join(&job.rel_path);
    let input_here = std::fs::symlink_metadata(&input)
        .ok()
        .map(|m| FileStat::of(&m))
        .filter(|st| match (job.size, job.mtime_ns) {
            (Some(size), Some(mt)) => st.size == size && st.mtime_ns == mt,
            _ => true,
        });

    // 1. reason file beside where the input goes (rejected/failed).
    if matches!(outcome, Outcome::Rejected | Outcome::Failed) {
        if let Some(target) = &job.move_to {
            let rel = lossy(&job.rel_path);
            let ts = now_rfc3339();
            let reason = job.reason.clone().unwrap_or_default();
            let code = job.reason_code.unwrap_or(Code::InternalError);
            let default_hint = match outcome {
                Outcome::Rejected => "convert or fix the file and drop it into the inbox again",
                _ => "check the reason; drop the file into the inbox again to retry it",
            };
            output::write_reason(
                target,
                &ReasonFile {
                    file: &rel,
                    outcome: outcome.as_str(),
                    code,
                    reason: &reason,
                    hint: hint.unwrap_or(default_hint),
                    ts: &ts,
                    sha256: job.sha256.as_deref(),
                    attempts: job.attempts,
                    provider: job.provider.as_deref(),
                },
            )?;
        }
    }
    // 2. the audit line, exactly once. Its "audited" mark is committed
    // with `finish` (one commit less per picture); a crash in between is
    // covered by the search of the audit file on the next finish.
    if !job.audited && (decided == Decided::JustNow || !contains_outcome(audit, id, outcome)?) {
        audit.append_json(&record_text)?;
    }
    // 3. the input goes to its one place.
    if let Err(e) = dispose_input(inbox, &job, outcome, &input, input_here.is_some()) {
        // Finished later (full disk, read-only folder): remember the audit
        // line is written so that retry needs no search.
        if !job.audited {
            let _ = store.mark_audited(id);
        }
        return Err(e.into());
    }
    store.finish(id, true)?;
    Ok(())
}

/// Whether the audit file's tail already holds `outcome`'s line for job `id`.
fn contains_outcome(audit: &Audit, id: i64, outcome: Outcome) -> Result<bool, FinishError> {
    match outcome.event() {
        Some(event) => Ok(audit.contains_job(id, event)?),
        None => Ok(false),
    }
}

/// Move or delete the input as its outcome says (nothing when it is no
/// longer there, or its target already is).
fn dispose_input(
    inbox: &Inbox,
    job: &Job,
    outcome: Outcome,
    input: &Path,
    input_here: bool,
) -> Result<(), fsutil::FsError> {
    if !input_here || inbox.after_success == AfterSuccess::KeepSources {
        return Ok(());
    }
    match (outcome, &job.move_to) {
        (_, Some(target)) if std::fs::symlink_metadata(target).is_err() => {
            fsutil::move_durably(input, target)
        }
        (Outcome::Succeeded | Outcome::Duplicate, None)
            if inbox.after_success == AfterSuccess::Delete =>
        {
            fsutil::remove_durably(input)
        }
        _ => Ok(()),
    }
}

/// At start-up: finish what a crash left decided-but-unfinished, and drop
/// in-progress jobs whose input has gone. Returns (finished, abandoned).
pub fn recover(cfg: &Config, store: &Store, audit: &Audit) -> Result<(usize, usize), FinishError> {
    let mut finished = 0;
    for job in store.decided_unfinished()? {
        match finish_job(cfg, store, audit, job.id, None, Decided::Earlier) {
            Ok(()) => finished += 1,
            Err(e) => {
                tracing::error!(job = job.id, input = %job.rel_path.display(), "cannot finish an interrupted job yet: {e}")
            }
        }
    }
    let mut abandoned = 0;
    for job in store.undecided()? {
        let gone = match cfg.inboxes.iter().find(|i| i.name == job.inbox) {
            Some(ib) => std::fs::symlink_metadata(ib.path.join(&job.rel_path)).is_err(),
            None => true,
        };
        if gone {
            store.abandon(job.id, "the input disappeared before it was finished")?;
            tracing::warn!(job = job.id, input = %job.rel_path.display(), "an unfinished job's input is gone; dropping the job");
            abandoned += 1;
        }
    }
    Ok((finished, abandoned))
}
