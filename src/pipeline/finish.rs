//! Finish: the idempotent steps after a decision — the reason file beside
//! a rejected or failed input, the audit line (exactly once), the input
//! moved to its one place or deleted, the job marked done. Run right after
//! deciding, again for a decision whose steps failed earlier (full disk,
//! read-only folder), and at start-up for what a crash left unfinished
//! ([`recover`]).
//!
//! Shared state: the steps begin with a fence check, made with the read of
//! the job (`Store::get_held`, one round trip): a job another instance
//! took over is left to it (no reason file, audit line or move here). A
//! takeover after the check needs a freeze of exactly that moment (a few
//! milliseconds) longer than the lease, and then the move finds the input
//! gone. A move
//! or delete that finds the input gone (ENOENT, by its typed code) asks
//! the database whether the job is still ours and whether another job for
//! the same path finished since: then someone else finished it
//! (`FinishError::Elsewhere`, one INFO line), else it vanished as before.
//!
//! Must not: decide an outcome, or write the audit line before the decision
//! is committed (the record it writes is the one the decision prepared).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ctx::{blocking, lossy, taken_over, Ctx};
use crate::audit::{now_rfc3339, Audit};
use crate::config::{AfterSuccess, Config, Inbox};
use crate::fsutil;
use crate::job::{Code, FileResult, FileStat, Outcome, Reason};
use crate::output::{self, ReasonFile};
use crate::store::{Elsewhere, Job, Store, StoreError};

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
        Ok(Err(e)) => return after_error(inbox_named(ctx, &job.inbox), &job.rel_path, e),
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
        Some(Outcome::Vanished | Outcome::Withdrawn) | None => FileResult::Vanished,
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
    /// The input changed after it was judged: the decision is withdrawn
    /// and the new version is looked at again.
    #[error("{} changed after it was judged; its new version is looked at again", .0.display())]
    Changed(PathBuf),
    /// The input was gone when it was to be moved or deleted because
    /// someone else has it (see [`Elsewhere`]): nothing left to do here.
    #[error("job {id}: its input is someone else's now ({what:?})")]
    Elsewhere { id: i64, what: Elsewhere },
}

impl FinishError {
    /// The reason code of this trouble (`state-error`, `disk-full`, …).
    pub fn code(&self) -> Code {
        match self {
            FinishError::Store(_) | FinishError::NoRecord(_) => Code::StateError,
            FinishError::Audit(e) => crate::fsutil::io_code(&e.source),
            FinishError::Output(e) => e.code(),
            FinishError::Fs(e) => e.code(),
            FinishError::Changed(_) | FinishError::Elsewhere { .. } => Code::FileVanished,
        }
    }
}

/// What a worker reports when the finishing steps of the input at `rel`
/// stopped with `e`: `Later` for a withdrawn decision (the new version
/// settles and is looked at again), `Elsewhere` (one INFO line) when
/// another instance took the job over or finished the input, trouble
/// otherwise.
pub(super) fn after_error(inbox: Option<&Inbox>, rel: &Path, e: FinishError) -> FileResult {
    match e {
        FinishError::Changed(_) => {
            let settle = inbox.map(|i| i.settle).unwrap_or_default();
            FileResult::Later(settle.max(Duration::from_millis(200)))
        }
        FinishError::Store(StoreError::Fenced { id, holder })
        | FinishError::Elsewhere {
            id,
            what: Elsewhere::TakenOver { holder },
        } => taken_over(rel, id, &holder),
        FinishError::Elsewhere {
            id,
            what: Elsewhere::FinishedBy { job },
        } => {
            tracing::info!(input = %rel.display(), job = id, by = job, "the input was moved away by the job that finished it (another instance); nothing left to do here");
            FileResult::Elsewhere
        }
        e => FileResult::Trouble(Reason::new(e.code(), &e)),
    }
}

fn inbox_named<'c>(ctx: &'c Ctx, name: &str) -> Option<&'c Inbox> {
    ctx.cfg.inboxes.iter().find(|i| i.name == name)
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
    // Fencing: nothing here for a job another instance took over (see the
    // module docs for the window after this check).
    let Some(job) = store.get_held(id)? else {
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
        store.finish(id, crate::store::Audit::NotWritten)?;
        return Ok(());
    };
    let mut record_text = job.record.clone().ok_or(FinishError::NoRecord(id))?;
    let input = inbox.path.join(&job.rel_path);
    let input_here = judged_here(&input, &job);
    // A decision is about the version that was judged. When that version
    // is no longer at the input's name and was not moved yet (deleted, or
    // an upload that went on writing, a replacement), no move is claimed:
    // a failure or rejection of a file now changed is withdrawn (no reason
    // file, no audit line) and the new version is looked at again; any
    // other outcome keeps its audit line (and output), naming no move.
    let unmoved = !input_here
        && !job.audited
        && job
            .move_to
            .as_ref()
            .is_none_or(|t| std::fs::symlink_metadata(t).is_err());
    let changed = unmoved && std::fs::symlink_metadata(&input).is_ok();
    let judgement = matches!(outcome, Outcome::Rejected | Outcome::Failed);
    if changed
        && judgement
        && (decided == Decided::JustNow || !contains_outcome(audit, id, outcome)?)
    {
        store.withdraw(id)?;
        return Err(FinishError::Changed(input));
    }
    if unmoved && job.move_to.is_some() {
        record_text = without_moved_to(&record_text);
        // The stored record (the shared state's `audit` table copies it)
        // says what the line says.
        store.set_record(id, &record_text)?;
    }

    // 1. reason file beside where the input goes (rejected/failed).
    if judgement && !unmoved {
        if let Some(target) = &job.move_to {
            write_reason_file(&job, outcome, target, hint)?;
        }
    }
    // 2. the audit line, exactly once. Its "audited" mark is committed
    // with `finish` (one commit less per picture); a crash in between is
    // covered by the search of the audit file on the next finish.
    if !job.audited && (decided == Decided::JustNow || !contains_outcome(audit, id, outcome)?) {
        audit.append_json(&record_text)?;
    }
    // 3. the input goes to its one place.
    if let Err(e) = dispose_input(inbox, &job, outcome, &input, input_here) {
        gone_elsewhere(store, id, &e)?;
        // Finished later (full disk, read-only folder): remember the audit
        // line is written so that retry needs no search.
        if !job.audited {
            let _ = store.mark_audited(id);
        }
        return Err(e.into());
    }
    store.finish(id, crate::store::Audit::Written)?;
    Ok(())
}

/// The input was to be moved or deleted and `e` stopped it: when it was
/// gone (ENOENT, by its typed code) and the database says someone else has
/// it, `Err(Elsewhere)` (a job still ours but finished by another is marked
/// done: its audit line is written); Ok otherwise (it is `e`'s trouble).
fn gone_elsewhere(store: &Store, id: i64, e: &fsutil::FsError) -> Result<(), FinishError> {
    if fsutil::io_code(&e.source) != Code::FileVanished {
        return Ok(());
    }
    match store.finished_elsewhere(id)? {
        None => Ok(()),
        Some(what) => {
            if let Elsewhere::FinishedBy { .. } = what {
                store.finish(id, crate::store::Audit::Written)?;
            }
            Err(FinishError::Elsewhere { id, what })
        }
    }
}

/// Whether the version of the input that was judged is at its name (same
/// size and mtime; any regular file when the job recorded none).
fn judged_here(input: &Path, job: &Job) -> bool {
    std::fs::symlink_metadata(input)
        .ok()
        .map(|m| FileStat::of(&m))
        .is_some_and(|st| match (job.size, job.mtime_ns) {
            (Some(size), Some(mt)) => st.size == size && st.mtime_ns == mt,
            _ => true,
        })
}

/// The reason file beside where a rejected or failed input goes.
fn write_reason_file(
    job: &Job,
    outcome: Outcome,
    target: &Path,
    hint: Option<&str>,
) -> Result<(), output::OutputError> {
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
    )
}

/// The audit record without its `moved_to` (the input was not moved).
fn without_moved_to(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(mut v) => {
            if let Some(o) = v.as_object_mut() {
                o.remove("moved_to");
            }
            v.to_string()
        }
        Err(_) => text.to_string(),
    }
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

/// Finish a decided job whose process stopped before its last step (at
/// start-up, or a dead instance's job taken over), saying what happened;
/// whether it is finished (or withdrawn) now.
pub fn finish_interrupted(cfg: &Config, store: &Store, audit: &Audit, job: &Job) -> bool {
    let input = job.rel_path.display();
    match finish_job(cfg, store, audit, job.id, None, Decided::Earlier) {
        Ok(()) => true,
        Err(FinishError::Changed(_)) => {
            tracing::info!(job = job.id, input = %input, "the input changed after it was judged; that decision is withdrawn and the new version is looked at again");
            true
        }
        Err(FinishError::Store(StoreError::Fenced { .. }) | FinishError::Elsewhere { .. }) => {
            tracing::info!(job = job.id, input = %input, "another instance took this job over or finished its input; leaving it to them");
            false
        }
        Err(e) => {
            tracing::error!(job = job.id, input = %input, "cannot finish an interrupted job yet: {e}");
            false
        }
    }
}

/// At start-up: finish what a crash left decided-but-unfinished, and drop
/// in-progress jobs whose input has gone. Returns (finished, abandoned).
pub fn recover(cfg: &Config, store: &Store, audit: &Audit) -> Result<(usize, usize), FinishError> {
    let mut finished = 0;
    for job in store.decided_unfinished()? {
        if finish_interrupted(cfg, store, audit, &job) {
            finished += 1;
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
