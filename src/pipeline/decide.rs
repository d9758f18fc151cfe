//! Decide: make a job's outcome durable. A success first writes the cut-out
//! (or every `[[inbox.output]]`) at its reserved name (temp file → fsync →
//! rename; a duplicate's results are placed by `duplicate`); then the
//! decision is committed in one
//! transaction with the audit record to write and the name the input moves
//! to, and the finish stage runs.
//!
//! Fencing (shared state): the outputs land before the decision is
//! committed, so the decision's own fence comes too late for them; the
//! writers ask `Store::check_held` after encoding, right before the temp
//! file is written and renamed into place, and a job another instance took
//! over gets no output from this one. What is left is the few
//! milliseconds of that write: a pause longer than the lease exactly there
//! lands an output the new holder finds at the reserved name (renames never
//! replace) and takes as the job's result.
//!
//! Must not: call a provider, or write the audit line or move the input
//! itself (finish does, also after a crash).

use std::path::{Path, PathBuf};

use super::ctx::{blocking, lossy, state_trouble, store_failed, Picture};
use super::finish::{self, finish_job, Decided};
use super::outputs;
use super::stored;
use crate::audit::{now_rfc3339, Record};
use crate::config::AfterSuccess;
use crate::fsutil;
use crate::job::{Code, Event, FileResult, FileStat, Outcome, Reason};
use crate::output;
use crate::provider::{Cutout, ProviderError, Response};
use crate::store::{Job, Naming};
use crate::validate::{Rejection, Validated};

/// What the engine stage hands on to the decision.
pub(super) enum Done {
    /// The cut-out was written at the reserved name before a restart: it is
    /// this job's finished result and is not paid for again.
    AlreadyWritten,
    /// A fresh cut-out after `attempts` attempts.
    Fresh { response: Response, attempts: u32 },
}

/// A free name for a cut-out: `base`, else `base-2`, `base-3`, … With
/// `[[inbox.output]]` tables every output's name must be free for a number
/// to be taken (never overwrite a file cutout did not write).
pub(super) fn output_naming(pic: &Picture<'_>) -> Naming {
    Naming {
        base: output::output_base(pic.inbox, &pic.rel),
        candidate: fsutil::numbered,
        also_free: |_| true,
        all_names: (!pic.inbox.outputs.is_empty()).then(|| outputs::all_names(pic.ctx.cfg.clone())),
    }
}

/// The audit record every outcome of `job` starts from.
pub(super) fn base_record(pic: &Picture<'_>, job: &Job, v: Option<&Validated>) -> Record {
    Record {
        ts: now_rfc3339(),
        job: job.id,
        inbox: pic.inbox.name.clone(),
        input: lossy(&pic.rel),
        sha256: job.sha256.clone(),
        bytes: job.size,
        format: v.map(|v| v.kind.name().to_string()),
        width: v.map(|v| v.width),
        height: v.map(|v| v.height),
        provider: Some(pic.inbox.provider.clone()),
        attempts: job.attempts,
        ..Record::default()
    }
}

/// Where a successful input goes: archive/, or nowhere (kept or deleted).
pub(super) fn archive_target(pic: &Picture<'_>) -> Option<PathBuf> {
    (pic.inbox.after_success == AfterSuccess::Archive).then(|| pic.inbox.archive.join(&pic.rel))
}

/// Write the cut-out (unless a restart found it written) and decide success.
pub(super) async fn succeed(pic: &Picture<'_>, job: &Job, done: Done, v: &Validated) -> FileResult {
    let mut rec = base_record(pic, job, Some(v));
    let Some(output_path) = job.output.clone() else {
        return state_trouble(format_args!("job {} has no reserved output name", job.id));
    };
    match done {
        Done::AlreadyWritten => rec.remote_job = job.remote_job.clone(),
        Done::Fresh { response, attempts } => {
            rec.attempts = attempts;
            rec.remote_job = response.remote_job.clone();
            rec.credits = response.credits_used;
            if let Err(done) =
                write_cutout(pic, job, &output_path, response.cutout, attempts, v).await
            {
                return done;
            }
        }
    }
    rec.output = Some(lossy(&output_path));
    rec.outputs = all_outputs(pic, &output_path);
    rec.event = Event::Succeeded;
    rec.ts = now_rfc3339();
    rec.duration_ms = pic.started.elapsed().as_millis() as u64;
    let (output, ms) = (rec.output.clone().unwrap_or_default(), rec.duration_ms);
    let archive = archive_target(pic);
    if let Err(e) = decide_and_finish(pic, job.id, Outcome::Succeeded, rec, archive, None).await {
        return e;
    }
    tracing::info!(input = %pic.rel.display(), output, ms, "succeeded");
    FileResult::Succeeded
}

/// Encode and write the result durably at the reserved name. A result that
/// cannot be encoded fails the file; a folder that cannot take it now is
/// trouble (the input stays and is tried again later).
async fn write_cutout(
    pic: &Picture<'_>,
    job: &Job,
    out: &Path,
    cutout: Cutout,
    attempts: u32,
    v: &Validated,
) -> Result<(), FileResult> {
    if !pic.inbox.outputs.is_empty() {
        return write_outputs(pic, job, out, cutout, attempts, v).await;
    }
    let (format, quality, out) = (
        pic.inbox.output_format,
        pic.inbox.webp_quality,
        out.to_path_buf(),
    );
    let (store, id) = (pic.ctx.store.clone(), job.id);
    let written = blocking("write output", move || -> Written<output::OutputError> {
        let t = std::time::Instant::now();
        let bytes = match output::encode(cutout, format, quality) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        let encode_us = t.elapsed().as_micros() as u64;
        // Fencing: no output lands for a job taken over meanwhile.
        store.check_held(id)?;
        let t = std::time::Instant::now();
        if let Err(e) = output::write_output(&out, &bytes) {
            return Ok(Err(e));
        }
        let write_us = t.elapsed().as_micros() as u64;
        tracing::debug!(encode_us, write_us, bytes = bytes.len(), "output written");
        Ok(Ok(()))
    })
    .await;
    let written = match written {
        Ok(Err(e)) => return Err(store_failed(&pic.rel, e)),
        Ok(Ok(r)) => Ok(r),
        Err(e) => Err(e),
    };
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if matches!(e.code(), Code::ProviderBadResult | Code::EncodeFailed) => {
            let err = ProviderError::Permanent {
                code: e.code(),
                message: e.to_string(),
            };
            Err(fail(pic, job, attempts, &err, v).await)
        }
        Ok(Err(e)) => {
            tracing::error!(input = %pic.rel.display(), code = %e.code(), "cannot write the cut-out: {e}; the input stays in the inbox and is tried again later");
            Err(FileResult::Trouble(Reason::new(e.code(), &e)))
        }
        Err(e) => Err(FileResult::Trouble(e)),
    }
}

/// What a blocking output writer hands back: `Err` when this instance no
/// longer holds the job (fenced: nothing was written), else the write's
/// own result.
type Written<E> = Result<Result<(), E>, crate::store::StoreError>;

/// Every output path of this input (empty without `[[inbox.output]]`).
fn all_outputs(pic: &Picture<'_>, first: &Path) -> Vec<String> {
    if pic.inbox.outputs.is_empty() {
        return Vec::new();
    }
    let paths = outputs::paths(pic.inbox, &pic.rel, first);
    paths.iter().map(|p| lossy(p)).collect()
}

/// Finish the cut-out into every `[[inbox.output]]` and write them all
/// (first output last: see `outputs`). A picture finishing refuses fails
/// the file; a folder that cannot take it now is trouble.
async fn write_outputs(
    pic: &Picture<'_>,
    job: &Job,
    first: &Path,
    cutout: Cutout,
    attempts: u32,
    v: &Validated,
) -> Result<(), FileResult> {
    let specs = pic.inbox.outputs.clone();
    let paths = outputs::paths(pic.inbox, &pic.rel, first);
    let decoded_icc = v.decoded.as_ref().map(|d| d.icc.clone());
    let input = v.bytes.clone();
    let (state_dir, sha) = (pic.ctx.cfg.state_dir.clone(), job.sha256.clone());
    let (store, id) = (pic.ctx.store.clone(), job.id);
    let written = blocking(
        "finish outputs",
        move || -> Written<outputs::OutputsError> {
            let ready = (|| {
                // a paid result is kept for duplicates in inboxes with other outputs
                stored::store_cutout(&state_dir, sha.as_deref(), &cutout)
                    .map_err(|e| outputs::OutputsError::Write(e.into()))?;
                // hosted results may carry no profile: the input's is their colour space
                let input_icc = decoded_icc.unwrap_or_else(|| outputs::input_icc(&input));
                outputs::cutout_pixels(cutout, input_icc)
                    .map_err(|message| outputs::OutputsError::Picture { index: 1, message })
            })();
            let (img, icc) = match ready {
                Ok(p) => p,
                Err(e) => return Ok(Err(e)),
            };
            // Fencing: no output lands for a job taken over meanwhile.
            store.check_held(id)?;
            Ok(outputs::write_all(&specs, &paths, &img, icc.as_deref()))
        },
    )
    .await;
    let written = match written {
        Ok(Err(e)) => return Err(store_failed(&pic.rel, e)),
        Ok(Ok(r)) => Ok(r),
        Err(e) => Err(e),
    };
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e @ outputs::OutputsError::Picture { .. })) => {
            let err = ProviderError::Permanent {
                code: e.code(),
                message: e.to_string(),
            };
            Err(fail(pic, job, attempts, &err, v).await)
        }
        Ok(Err(e)) => {
            tracing::error!(input = %pic.rel.display(), code = %e.code(), "cannot write the outputs: {e}; the input stays in the inbox and is tried again later");
            Err(FileResult::Trouble(Reason::new(e.code(), &e)))
        }
        Err(e) => Err(FileResult::Trouble(e)),
    }
}

/// Reject the file (dry run: only say so).
pub(super) async fn reject(
    pic: &Picture<'_>,
    sha: Option<&str>,
    st: Option<FileStat>,
    why: Rejection,
) -> FileResult {
    if pic.ctx.dry_run {
        return FileResult::Rejected(Reason::new(why.code(), &why));
    }
    let (store, inbox) = (&pic.ctx.store, &pic.inbox.name);
    let (size, mtime_ns) = (st.map(|s| s.size), st.map(|s| s.mtime_ns));
    let job = match store
        .insert_untracked(inbox, &pic.rel, sha, size, mtime_ns)
        .await
    {
        Ok(j) => j,
        Err(e) => return state_trouble(e),
    };
    let mut rec = base_record(pic, &job, None);
    rec.event = Event::Rejected;
    rec.provider = None;
    rec.code = Some(why.code());
    rec.reason = Some(format!("{why}; {}", why.hint()));
    rec.duration_ms = pic.started.elapsed().as_millis() as u64;
    let target = Some(pic.inbox.rejected.join(&pic.rel));
    let hint = Some(why.hint());
    if let Err(e) = decide_and_finish(pic, job.id, Outcome::Rejected, rec, target, hint).await {
        return e;
    }
    tracing::warn!(input = %pic.rel.display(), code = %why.code(), "rejected: {why}");
    FileResult::Rejected(Reason::new(why.code(), &why))
}

/// Fail the file after `attempts` attempts.
pub(super) async fn fail(
    pic: &Picture<'_>,
    job: &Job,
    attempts: u32,
    err: &ProviderError,
    v: &Validated,
) -> FileResult {
    let mut rec = base_record(pic, job, Some(v));
    rec.event = Event::Failed;
    rec.attempts = attempts;
    rec.code = Some(err.code());
    rec.reason = Some(format!(
        "{err} (after {attempts} attempt{})",
        if attempts == 1 { "" } else { "s" }
    ));
    rec.duration_ms = pic.started.elapsed().as_millis() as u64;
    let hint = "check the reason; drop the file into the inbox again to retry it";
    let target = Some(pic.inbox.failed.join(&pic.rel));
    if let Err(e) = decide_and_finish(pic, job.id, Outcome::Failed, rec, target, Some(hint)).await {
        return e;
    }
    tracing::error!(input = %pic.rel.display(), code = %err.code(), attempts, "failed: {err}");
    FileResult::Failed(Reason::new(err.code(), err))
}

/// Commit the decision (reserving where the input goes: `move_base` and
/// its numbered variants, None for delete/keep), then run the finishing
/// steps. Err: what the worker reports instead (trouble, or `Later` when
/// the input changed after it was judged and the decision was withdrawn).
pub(super) async fn decide_and_finish(
    pic: &Picture<'_>,
    id: i64,
    outcome: Outcome,
    mut rec: Record,
    move_base: Option<PathBuf>,
    hint: Option<&str>,
) -> Result<(), FileResult> {
    let ctx = pic.ctx;
    let keeps_sources = pic.inbox.after_success == AfterSuccess::KeepSources;
    let out = rec.output.clone().map(PathBuf::from);
    let (code, reason) = (rec.code, rec.reason.clone());
    let naming = move_base.map(|base| Naming {
        base,
        candidate: fsutil::numbered,
        // rejected/ and failed/ hold a reason file beside each input
        also_free: |p| std::fs::symlink_metadata(output::reason_path(p)).is_err(),
        all_names: None,
    });
    ctx.store
        .decide(id, outcome, out, code, reason, naming, move |moved| {
            // One-shot sources stay in place: the audit line says so.
            if let (Some(p), false) = (moved, keeps_sources) {
                rec.moved_to = Some(lossy(p));
            }
            serde_json::to_string(&rec).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| store_failed(&pic.rel, e))?;
    let (store, audit, cfg) = (ctx.store.clone(), ctx.audit.clone(), ctx.cfg.clone());
    let hint = hint.map(str::to_string);
    blocking("finish job", move || {
        finish_job(&cfg, &store, &audit, id, hint.as_deref(), Decided::JustNow)
    })
    .await
    .map_err(FileResult::Trouble)?
    .map_err(|e| finish::after_error(Some(pic.inbox), &pic.rel, e))
}
