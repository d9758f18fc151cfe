//! Duplicate: the same picture (SHA-256) succeeded before, so its cut-out
//! is reused and nothing is sent to a provider again.
//!
//! Where this input's results come from, best first:
//! 1. an earlier job's outputs, copied byte for byte, when its inbox has
//!    the same `[[inbox.output]]` tables (or both have none; of the latest
//!    successes of the picture, one with the same tables is preferred);
//! 2. the stored cut-out (`<state_dir>/cutouts/<sha256>`, kept for every
//!    hosted result of an inbox with `[[inbox.output]]` tables), or the
//!    earlier plain cut-out of an inbox without tables, finished again
//!    locally into this inbox's outputs;
//! 3. neither: the picture is run again — only when that pays no provider
//!    twice (a local engine, or another provider than the earlier job's);
//!    otherwise the file fails with `duplicate-cutout-gone`.
//!
//! Must not: call a provider (a re-run goes back to the attempt stage), or
//! write the audit line or move the input itself (finish does).

use std::path::{Path, PathBuf};

use super::ctx::{blocking, lossy, state_trouble, store_failed, Picture};
use super::decide::{archive_target, base_record, decide_and_finish, fail, output_naming};
use super::outputs;
use super::stored::stored_cutout;
use crate::fsutil;
use crate::job::{Code, Event, FileResult, Reason};
use crate::output;
use crate::provider::{Cutout, ProviderError};
use crate::store::Job;
use crate::validate::{self, Validated};

/// What became of a duplicate.
pub(super) enum Dup {
    /// Decided (or trouble): the worker reports this.
    Done(FileResult),
    /// No earlier result fits and running it again pays no provider twice:
    /// the job (its output name reserved) goes to the attempt stage.
    Run(Box<Job>),
}

/// Where the earlier job's result can be taken from.
enum Source {
    /// The earlier outputs, made by the same tables: copied.
    Outputs(Vec<PathBuf>),
    /// A plain cut-out (the earlier plain output, or the stored one).
    Cutout(PathBuf),
    /// Nothing usable.
    Gone,
}

/// The same picture succeeded before as `earlier`: give this input its
/// results without paying again.
pub(super) async fn duplicate(pic: &Picture<'_>, job: Job, earlier: Job, v: &Validated) -> Dup {
    let earlier = same_tables(pic, &job, earlier).await;
    let Some(earlier_out) = earlier.output.clone() else {
        return Dup::Done(state_trouble("duplicate without an earlier output"));
    };
    let earlier_inbox = pic.ctx.cfg.inboxes.iter().find(|i| i.name == earlier.inbox);
    let earlier_tables = earlier_inbox.map(|i| i.outputs.as_slice());
    if earlier_tables == Some(&[]) && pic.inbox.outputs.is_empty() {
        return Dup::Done(plain_from_plain(pic, job, earlier, earlier_out, v).await);
    }
    let stored = job
        .sha256
        .as_deref()
        .map(|sha| stored_cutout(&pic.ctx.cfg.state_dir, sha))
        .filter(|p| p.is_file());
    let source = match (earlier_inbox, stored) {
        (Some(i), _) if !i.outputs.is_empty() && i.outputs == pic.inbox.outputs => {
            Source::Outputs(outputs::paths(i, &earlier.rel_path, &earlier_out))
        }
        (_, Some(stored)) => Source::Cutout(stored),
        (Some(i), None) if i.outputs.is_empty() => Source::Cutout(earlier_out),
        _ => Source::Gone,
    };
    match source {
        Source::Gone => run_again(pic, job, earlier, v).await,
        Source::Cutout(src) if pic.inbox.outputs.is_empty() => {
            Dup::Done(plain_from_cutout(pic, job, earlier, src, v).await)
        }
        source => Dup::Done(finished(pic, job, earlier, source, v).await),
    }
}

/// Of the latest successes of this picture, one whose inbox has this
/// inbox's tables (its outputs can be copied), else `earlier`.
async fn same_tables(pic: &Picture<'_>, job: &Job, earlier: Job) -> Job {
    let tables = |inbox: &str| {
        let ib = pic.ctx.cfg.inboxes.iter().find(|i| i.name == inbox);
        ib.map(|i| &i.outputs)
    };
    let mine = Some(&pic.inbox.outputs);
    let Some(sha) = job.sha256.as_deref() else {
        return earlier;
    };
    if tables(&earlier.inbox) == mine {
        return earlier;
    }
    match pic.ctx.store.successes(sha, 16).await {
        Ok(all) => all
            .into_iter()
            .find(|j| tables(&j.inbox) == mine)
            .unwrap_or(earlier),
        Err(_) => earlier,
    }
}

/// This job's reserved output name (reserved now when it has none), once
/// this instance is known to still hold the job (fencing: the outputs are
/// written right after; a job another instance took over gets none here).
async fn reserved(pic: &Picture<'_>, job: &Job) -> Result<PathBuf, FileResult> {
    let store = &pic.ctx.store;
    let fenced = |e| store_failed(&pic.rel, e);
    match job.output.clone() {
        Some(p) => {
            store.still_held(job.id).await.map_err(fenced)?;
            Ok(p)
        }
        None => store
            .reserve_output(job.id, output_naming(pic))
            .await
            .map_err(fenced),
    }
}

/// No earlier result fits: run the picture again when that pays no
/// provider twice, else fail it with `duplicate-cutout-gone`.
async fn run_again(pic: &Picture<'_>, mut job: Job, earlier: Job, v: &Validated) -> Dup {
    let local = pic
        .ctx
        .providers
        .get(&pic.inbox.provider)
        .is_some_and(|p| p.kind() == "local");
    if local || earlier.provider.as_deref() != Some(pic.inbox.provider.as_str()) {
        match reserved(pic, &job).await {
            Ok(p) => job.output = Some(p),
            Err(done) => return Dup::Done(done),
        }
        tracing::info!(input = %pic.rel.display(), earlier = earlier.id, "same picture as an earlier job whose results do not fit this inbox's outputs: made again (no provider pays twice)");
        return Dup::Run(Box::new(job));
    }
    let err = ProviderError::Permanent {
        code: Code::DuplicateCutoutGone,
        message: format!(
            "same picture (sha256) as job {} ({}) in inbox {:?}, whose outputs differ from this inbox's and whose stored cut-out is gone; cutout does not pay provider {:?} twice for one picture (restore {} or drop the file into an inbox with the same [[inbox.output]] tables)",
            earlier.id,
            earlier.rel_path.display(),
            earlier.inbox,
            pic.inbox.provider,
            job.sha256.as_deref().map(|s| lossy(&stored_cutout(&pic.ctx.cfg.state_dir, s))).unwrap_or_default(),
        ),
    };
    Dup::Done(fail(pic, &job, 0, &err, v).await)
}

/// Every `[[inbox.output]]` of this input, copied from the earlier outputs
/// or finished from a plain cut-out; then the duplicate is decided.
async fn finished(
    pic: &Picture<'_>,
    job: Job,
    earlier: Job,
    source: Source,
    v: &Validated,
) -> FileResult {
    let first = match reserved(pic, &job).await {
        Ok(p) => p,
        Err(done) => return done,
    };
    let to = outputs::paths(pic.inbox, &pic.rel, &first);
    let (dst, specs) = (to.clone(), pic.inbox.outputs.clone());
    let done = blocking("duplicate outputs", move || match source {
        Source::Outputs(from) => outputs::copy_all(&from, &dst),
        Source::Cutout(src) => {
            let bytes = std::fs::read(&src).map_err(|e| read_earlier(&src, e))?;
            let (img, icc) =
                outputs::decode(&bytes, None).map_err(|e| Reason::new(Code::InternalError, e))?;
            outputs::write_all(&specs, &dst, &img, icc.as_deref())
                .map_err(|e| Reason::new(e.code(), e))
        }
        Source::Gone => Err(Reason::new(Code::InternalError, "no earlier result")),
    })
    .await;
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) | Err(e) => return FileResult::Trouble(e),
    }
    let outs = to.iter().map(|p| lossy(p)).collect();
    decide_duplicate(pic, &job, &earlier, first, outs, v).await
}

/// Both inboxes plain: reuse the earlier cut-out where it already sits at
/// this input's natural name, else place a converted copy.
async fn plain_from_plain(
    pic: &Picture<'_>,
    job: Job,
    earlier: Job,
    earlier_out: PathBuf,
    v: &Validated,
) -> FileResult {
    let natural = output::output_base(pic.inbox, &pic.rel);
    if earlier_out.extension() == natural.extension() && earlier_out == natural {
        return decide_duplicate(pic, &job, &earlier, earlier_out, Vec::new(), v).await;
    }
    plain_from_cutout(pic, job, earlier, earlier_out, v).await
}

/// A plain inbox: a copy of the cut-out at `src` in this inbox's format.
async fn plain_from_cutout(
    pic: &Picture<'_>,
    job: Job,
    earlier: Job,
    src: PathBuf,
    v: &Validated,
) -> FileResult {
    let dst = match reserved(pic, &job).await {
        Ok(p) => p,
        Err(done) => return done,
    };
    let (to, fmt, q) = (dst.clone(), pic.inbox.output_format, pic.inbox.webp_quality);
    let copied = blocking("copy output", move || -> Result<(), Reason> {
        let bytes = std::fs::read(&src).map_err(|e| read_earlier(&src, e))?;
        let kind = validate::sniff(&bytes).map_err(|e| Reason::new(Code::InternalError, e))?;
        let cut = Cutout::Encoded {
            bytes: bytes.into(),
            format: kind,
        };
        let enc = output::encode(cut, fmt, q).map_err(|e| Reason::new(e.code(), e))?;
        // A copy written before a restart is already this job's.
        match output::write_output(&to, &enc) {
            Ok(()) => Ok(()),
            Err(output::OutputError::Fs(e))
                if e.source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                Ok(())
            }
            Err(e) => Err(Reason::new(e.code(), e)),
        }
    })
    .await;
    match copied {
        Ok(Ok(())) => decide_duplicate(pic, &job, &earlier, dst, Vec::new(), v).await,
        Ok(Err(e)) | Err(e) => FileResult::Trouble(e),
    }
}

/// Commit the duplicate with its outputs, then finish it.
async fn decide_duplicate(
    pic: &Picture<'_>,
    job: &Job,
    earlier: &Job,
    first: PathBuf,
    outs: Vec<String>,
    v: &Validated,
) -> FileResult {
    let mut rec = base_record(pic, job, Some(v));
    rec.event = Event::Duplicate;
    rec.output = Some(lossy(&first));
    rec.outputs = outs;
    rec.duplicate_of = Some(earlier.id);
    rec.reason = Some(format!(
        "same picture (sha256) as job {} ({}); its cut-out was reused, nothing was submitted",
        earlier.id,
        earlier.rel_path.display()
    ));
    rec.duration_ms = pic.started.elapsed().as_millis() as u64;
    let archive = archive_target(pic);
    let outcome = crate::job::Outcome::Duplicate;
    if let Err(e) = decide_and_finish(pic, job.id, outcome, rec, archive, None).await {
        return e;
    }
    tracing::info!(input = %pic.rel.display(), earlier = earlier.id, "duplicate: reused the earlier cut-out");
    FileResult::Duplicate
}

fn read_earlier(src: &Path, e: std::io::Error) -> Reason {
    let code = fsutil::io_code(&e);
    Reason::new(
        code,
        format_args!("cannot read earlier cut-out {}: {e}", src.display()),
    )
}
