//! Redo a cut-out with another provider (or engine), and confirm a redo.
//!
//! Redo reads the original (the archived input, or the input kept in its
//! inbox; refused when it was deleted), checks it is the picture the job
//! judged (SHA-256), and calls the provider. Only with a result in hand
//! does anything on disk change: the intent (outputs and the names they
//! are kept under) is committed, each current output is renamed to
//! `<stem>.before-redo-<n>.<ext>` beside it, the new outputs are written
//! durably at the old names, the `review-redo` line (provider, credits) is
//! appended, then the action is done. `confirm` deletes the kept copies.
//!
//! Must not: write outside the job's output names and their kept copies,
//! or hold an engine slot longer than the provider call.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::actions_log::{ActionEvent, ActionLine};
use super::actions_ops::{lossy, ActionError, Actions};
use super::auth::Who;
use crate::config::{AfterSuccess, Inbox, InboxOptions};
use crate::fsutil;
use crate::job::Outcome;
use crate::pipeline::outputs;
use crate::provider::{JobJournal, Request, Response};
use crate::store::{ActionKind, ActionState, Job};

/// What a redo keeps in the action log: each output and its kept copy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RedoDetail {
    pub outputs: Vec<PathBuf>,
    pub kept: Vec<PathBuf>,
    pub previous_provider: Option<String>,
    pub credits: Option<f64>,
}

/// What a redo did.
#[derive(Debug, Serialize)]
pub struct Redone {
    pub action: i64,
    pub provider: String,
    pub outputs: Vec<String>,
    pub kept: Vec<String>,
    pub credits: Option<f64>,
}

/// A redo's provider call remembers nothing across restarts.
struct NoJournal;

#[async_trait::async_trait]
impl JobJournal for NoJournal {
    fn remote_job(&self) -> Option<String> {
        None
    }
    async fn set_remote_job(&self, _id: &str) -> Result<(), String> {
        Ok(())
    }
}

/// `dir/name.ext` → `dir/name.before-redo-<n>.ext`.
pub fn kept_name(output: &Path, n: u32) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match output.extension() {
        Some(ext) => format!("{stem}.before-redo-{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}.before-redo-{n}"),
    };
    output.with_file_name(name)
}

/// Every output file of a job: the audit record's `outputs`, else `output`.
fn job_outputs(job: &Job) -> Vec<PathBuf> {
    let listed: Vec<PathBuf> = job
        .record
        .as_deref()
        .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
        .and_then(|v| v.get("outputs").and_then(|o| o.as_array()).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|o| o.as_str().map(PathBuf::from))
        .collect();
    if listed.is_empty() {
        job.output.iter().cloned().collect()
    } else {
        listed
    }
}

/// Where the original of a successful job is, or why it is not there.
fn original(inbox: &Inbox, job: &Job) -> Result<PathBuf, String> {
    if let Some(archived) = &job.move_to {
        if archived.is_file() {
            return Ok(archived.clone());
        }
        return Err(format!(
            "is no longer in the archive ({})",
            archived.display()
        ));
    }
    let here = inbox.path.join(&job.rel_path);
    match inbox.after_success {
        AfterSuccess::Delete => Err(
            "was deleted after it succeeded (after_success = \"delete\"); set after_success = \"archive\" to keep originals for redo".into(),
        ),
        _ if here.is_file() => Ok(here),
        _ => Err(format!("is no longer at {}", here.display())),
    }
}

impl Actions {
    /// Redo job `id` with provider `name` (see the module docs).
    pub async fn redo(&self, id: i64, name: &str, who: &Who) -> Result<Redone, ActionError> {
        self.not_shared("redo")?;
        let started = Instant::now();
        let job = self.job(id).await?;
        if job.active || !matches!(job.outcome, Some(Outcome::Succeeded | Outcome::Duplicate)) {
            return Err(ActionError::WrongOutcome {
                job: id,
                what: "only a finished cut-out (succeeded or duplicate) is redone",
            });
        }
        let provider = self.provider(name).await?;
        let inbox = self.inbox(&job.inbox)?.clone();
        let outs = job_outputs(&job);
        let (j, ib, limits) = (job.clone(), inbox.clone(), self.ctx.cfg.limits);
        let (wants, outs2) = (provider.wants_pixels(), outs.clone());
        let (validated, n) = crate::blocking::run("review: read original", move || {
            read_original(&ib, &j, &outs2, &limits, wants)
        })
        .await??;
        let opts = if inbox.provider == name {
            inbox.options.clone()
        } else {
            InboxOptions::None
        };
        let file_name = job
            .rel_path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let response = {
            let _slot = self.ctx.engine_slots.acquire().await;
            provider
                .remove_background(Request {
                    input: &validated,
                    file_name: &file_name,
                    output_format: inbox.output_format,
                    options: &opts,
                    journal: &NoJournal,
                })
                .await
                .map_err(|e| ActionError::Provider {
                    code: e.code(),
                    message: e.to_string(),
                })?
        };
        let detail = RedoDetail {
            kept: outs.iter().map(|o| kept_name(o, n)).collect(),
            outputs: outs,
            previous_provider: job.provider.clone(),
            credits: response.credits_used,
        };
        let text = serde_json::to_string(&detail).map_err(|e| ActionError::Files(e.to_string()))?;
        let store = &self.ctx.store;
        let aid = store
            .begin_action(
                ActionKind::Redo,
                id,
                &who.0,
                Some(name.to_string()),
                None,
                None,
                Some(text),
                false,
            )
            .await?
            .ok_or(ActionError::AlreadyRetried(id))?;
        let (ctx, by, prov) = (self.ctx.clone(), who.0.clone(), name.to_string());
        let d = detail.clone();
        let icc = validated.decoded.as_ref().map(|d| d.icc.clone());
        let input = validated.bytes.clone();
        crate::blocking::run("review: redo outputs", move || {
            let ms = started.elapsed().as_millis() as u64;
            replace_outputs(
                &inbox,
                &d,
                response,
                icc.unwrap_or_else(|| outputs::input_icc(&input)),
            )
            .and_then(|()| finish_redo(&ctx, aid, &job, &by, &prov, &d, Some(ms)))
            .inspect_err(|_| undo_redo(&ctx, aid, &d))
        })
        .await??;
        Ok(Redone {
            action: aid,
            provider: name.to_string(),
            outputs: detail.outputs.iter().map(|p| lossy(p)).collect(),
            kept: detail.kept.iter().map(|p| lossy(p)).collect(),
            credits: detail.credits,
        })
    }

    /// Delete the copies every earlier redo of job `id` kept.
    pub async fn confirm(&self, id: i64, who: &Who) -> Result<Vec<String>, ActionError> {
        self.not_shared("confirm")?;
        let job = self.job(id).await?;
        let store = self.ctx.store.clone();
        let kept: Vec<PathBuf> = crate::blocking::run("review: kept copies", move || {
            store.actions_of(id).map(|v| {
                v.into_iter()
                    .filter(|a| a.kind == ActionKind::Redo && a.state == ActionState::Done)
                    .filter_map(|a| serde_json::from_str::<RedoDetail>(a.detail.as_deref()?).ok())
                    .flat_map(|d| d.kept)
                    .filter(|k| std::fs::symlink_metadata(k).is_ok())
                    .collect()
            })
        })
        .await??;
        let detail = RedoDetail {
            kept: kept.clone(),
            ..RedoDetail::default()
        };
        let text = serde_json::to_string(&detail).map_err(|e| ActionError::Files(e.to_string()))?;
        let aid = self
            .ctx
            .store
            .begin_action(
                ActionKind::Confirm,
                id,
                &who.0,
                None,
                None,
                None,
                Some(text),
                false,
            )
            .await?
            .ok_or(ActionError::AlreadyRetried(id))?;
        let (ctx, by) = (self.ctx.clone(), who.0.clone());
        crate::blocking::run("review: confirm redo", move || {
            complete_confirm(&ctx, aid, &job, &by, &kept)
        })
        .await??;
        Ok(detail.kept.iter().map(|p| lossy(p)).collect())
    }
}

/// Read the original, check it is the judged picture, validate it, and
/// pick the redo number whose kept names are all free. Blocking.
fn read_original(
    inbox: &Inbox,
    job: &Job,
    outs: &[PathBuf],
    limits: &crate::config::Limits,
    wants_pixels: bool,
) -> Result<(crate::validate::Validated, u32), ActionError> {
    let input = lossy(&job.rel_path);
    let gone = |why: String| ActionError::OriginalGone {
        input: input.clone(),
        why,
    };
    let path = original(inbox, job).map_err(&gone)?;
    let bytes = std::fs::read(&path).map_err(|e| gone(format!("cannot be read: {e}")))?;
    let sha = hex::encode(Sha256::digest(&bytes));
    if job.sha256.as_deref().is_some_and(|s| s != sha) {
        return Err(gone(format!(
            "at {} holds other content now",
            path.display()
        )));
    }
    if let Some(missing) = outs.iter().find(|o| !o.is_file()) {
        return Err(ActionError::OutputsGone(missing.clone()));
    }
    if outs.is_empty() {
        return Err(ActionError::OutputsGone(inbox.outbox.join(&job.rel_path)));
    }
    let validated = crate::validate::validate(bytes.into(), limits, wants_pixels)
        .map_err(|r| gone(format!("is not a usable picture now: {r}")))?;
    let n = (1..10_000u32)
        .find(|&n| {
            outs.iter()
                .all(|o| std::fs::symlink_metadata(kept_name(o, n)).is_err())
        })
        .unwrap_or(10_000);
    Ok((validated, n))
}

/// Keep each current output under its kept name, then write the new ones
/// (every output from the cut-out, as the pipeline does). Blocking.
fn replace_outputs(
    inbox: &Inbox,
    d: &RedoDetail,
    response: Response,
    icc: Option<Vec<u8>>,
) -> Result<(), ActionError> {
    let files = |e: fsutil::FsError| ActionError::Files(e.to_string());
    // Encode first: a result that cannot be encoded changes nothing.
    let single = if inbox.outputs.is_empty() {
        Some(
            crate::output::encode(response.cutout, inbox.output_format, inbox.webp_quality)
                .map_err(|e| ActionError::Files(e.to_string()))?,
        )
    } else {
        let (img, icc) =
            outputs::cutout_pixels(response.cutout, icc).map_err(ActionError::Files)?;
        for (o, k) in d.outputs.iter().zip(&d.kept) {
            fsutil::rename_noreplace(o, k).map_err(files)?;
        }
        outputs::write_all(&inbox.outputs, &d.outputs, &img, icc.as_deref())
            .map_err(|e| ActionError::Files(e.to_string()))?;
        return Ok(());
    };
    let (Some(bytes), Some(out), Some(kept)) = (single, d.outputs.first(), d.kept.first()) else {
        return Err(ActionError::Files("no output to replace".into()));
    };
    fsutil::rename_noreplace(out, kept).map_err(files)?;
    if let Some(dir) = out.parent() {
        fsutil::sync_dir(dir).map_err(files)?;
    }
    fsutil::write_atomic(out, &bytes, false).map_err(files)
}

/// Audit and close a redo whose outputs are written. Blocking.
pub(super) fn finish_redo(
    ctx: &crate::pipeline::Ctx,
    aid: i64,
    job: &Job,
    by: &str,
    provider: &str,
    d: &RedoDetail,
    duration_ms: Option<u64>,
) -> Result<(), ActionError> {
    let event = ActionEvent::ReviewRedo;
    if !super::actions_log::has_action_line(&ctx.cfg.state_dir, aid, event) {
        let mut line = ActionLine::new(event, job.id, &job.inbox, &lossy(&job.rel_path), by);
        line.action = Some(aid);
        line.provider = Some(provider.to_string());
        line.previous_provider = d.previous_provider.clone();
        line.outputs = d.outputs.iter().map(|p| lossy(p)).collect();
        line.kept = d.kept.iter().map(|p| lossy(p)).collect();
        line.credits = d.credits;
        line.duration_ms = duration_ms;
        line.append(&ctx.audit)
            .map_err(|e| ActionError::Files(e.to_string()))?;
    }
    ctx.store.end_action(aid, ActionState::Done, None)?;
    Ok(())
}

/// Put the kept outputs back (the redo did not complete) and abandon it.
/// Blocking; best effort on each file, the kept copy is never deleted.
pub(super) fn undo_redo(ctx: &crate::pipeline::Ctx, aid: i64, d: &RedoDetail) {
    for (o, k) in d.outputs.iter().zip(&d.kept) {
        if std::fs::symlink_metadata(k).is_ok() {
            let _ = std::fs::remove_file(o);
            if let Err(e) = fsutil::rename_noreplace(k, o) {
                tracing::error!(action = aid, "cannot put {} back: {e}", k.display());
            }
        }
    }
    if let Err(e) = ctx.store.end_action(aid, ActionState::Abandoned, None) {
        tracing::error!(action = aid, "cannot abandon the redo: {e}");
    }
}

/// Delete the kept copies, audit, done. Idempotent. Blocking.
pub(super) fn complete_confirm(
    ctx: &crate::pipeline::Ctx,
    aid: i64,
    job: &Job,
    by: &str,
    kept: &[PathBuf],
) -> Result<(), ActionError> {
    for k in kept {
        if std::fs::symlink_metadata(k).is_ok() {
            fsutil::remove_durably(k).map_err(|e| ActionError::Files(e.to_string()))?;
        }
    }
    let event = ActionEvent::ReviewConfirm;
    if !super::actions_log::has_action_line(&ctx.cfg.state_dir, aid, event) {
        let mut line = ActionLine::new(event, job.id, &job.inbox, &lossy(&job.rel_path), by);
        line.action = Some(aid);
        line.deleted = kept.iter().map(|p| lossy(p)).collect();
        line.append(&ctx.audit)
            .map_err(|e| ActionError::Files(e.to_string()))?;
    }
    ctx.store.end_action(aid, ActionState::Done, None)?;
    Ok(())
}
