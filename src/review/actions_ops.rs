//! What each review action does, crash-safe like the pipeline: the intent
//! is committed to the state database's action log first, then files move,
//! then the audit line is appended, then the action is marked done
//! (`actions_recover` completes or undoes what a crash left pending).
//!
//! - retry: a failed or rejected input goes back from failed/ or rejected/
//!   into its inbox (a free name there) and its reason file is removed; the
//!   daemon picks it up as a new job. One retry per job (a new failure is a
//!   new job and may be retried again).
//! - approve / flag / unmark: the job's mark in the state database (also
//!   on the shared PostgreSQL state, where retry, redo and confirm are
//!   refused: `shared-state`).
//!
//! Redo and confirm are in `actions_redo`.
//!
//! Must not: run blocking file work on the executor (everything goes
//! through `crate::blocking::run`), or move a file other than the one the
//! job recorded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::actions_log::{ActionEvent, ActionLine};
use super::auth::{Auth, Who};
use crate::config::Inbox;
use crate::fsutil;
use crate::job::Outcome;
use crate::pipeline::Ctx;
use crate::provider::Provider;
use crate::store::{ActionKind, ActionState, Job, Mark};

/// The actions' shared state: the gate and the daemon's pipeline context.
pub struct Actions {
    pub auth: Auth,
    pub ctx: Arc<Ctx>,
    /// Providers no inbox uses, built on a redo's first use of them.
    extra: tokio::sync::Mutex<BTreeMap<String, Arc<dyn Provider>>>,
}

/// Stable kebab-case codes of refused or failed actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionCode {
    JobNotFound,
    WrongOutcome,
    InputGone,
    AlreadyRetried,
    OriginalGone,
    UnknownProvider,
    OutputsGone,
    ProviderFailed,
    InboxNotConfigured,
    FileError,
    StateError,
    SharedState,
}

/// Why an action was refused or did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("job {0} is not in the state database")]
    NoJob(i64),
    #[error("job {job}: {what}")]
    WrongOutcome { job: i64, what: &'static str },
    #[error("the input is no longer at {}: nothing to retry", .0.display())]
    InputGone(PathBuf),
    #[error("job {0} was already retried; its new run is a job of its own (retry that one if it failed again)")]
    AlreadyRetried(i64),
    #[error("redo needs the original picture, but {input} {why}")]
    OriginalGone { input: String, why: String },
    #[error("no provider named {name:?} (configured: {known})")]
    UnknownProvider { name: String, known: String },
    #[error("output {} is missing: redo replaces the outputs that are there", .0.display())]
    OutputsGone(PathBuf),
    #[error("the provider failed ({code}): {message}; the previous outputs are unchanged")]
    Provider {
        code: crate::job::Code,
        message: String,
    },
    #[error("inbox {0:?} is no longer in the config")]
    InboxGone(String),
    #[error("{0} is not available on the shared PostgreSQL state (it moves files another instance may be handling); approve and flag are, or use the files on the shared folders (docs/scale-out.md)")]
    SharedState(&'static str),
    #[error("{0}")]
    Files(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl ActionError {
    pub fn code(&self) -> ActionCode {
        match self {
            ActionError::NoJob(_) => ActionCode::JobNotFound,
            ActionError::WrongOutcome { .. } => ActionCode::WrongOutcome,
            ActionError::InputGone(_) => ActionCode::InputGone,
            ActionError::AlreadyRetried(_) => ActionCode::AlreadyRetried,
            ActionError::OriginalGone { .. } => ActionCode::OriginalGone,
            ActionError::UnknownProvider { .. } => ActionCode::UnknownProvider,
            ActionError::OutputsGone(_) => ActionCode::OutputsGone,
            ActionError::Provider { .. } => ActionCode::ProviderFailed,
            ActionError::InboxGone(_) => ActionCode::InboxNotConfigured,
            ActionError::SharedState(_) => ActionCode::SharedState,
            ActionError::Files(_) => ActionCode::FileError,
            ActionError::Store(_) => ActionCode::StateError,
        }
    }
    pub fn status(&self) -> u16 {
        match self.code() {
            ActionCode::JobNotFound => 404,
            ActionCode::UnknownProvider => 400,
            ActionCode::ProviderFailed => 502,
            ActionCode::FileError | ActionCode::StateError => 500,
            _ => 409,
        }
    }
}

impl From<crate::blocking::Lost> for ActionError {
    fn from(e: crate::blocking::Lost) -> Self {
        ActionError::Files(e.to_string())
    }
}

/// What a retry did.
#[derive(Debug, Serialize)]
pub struct Retried {
    pub action: i64,
    pub from: String,
    pub to: String,
}

pub(super) fn lossy(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

impl Actions {
    pub fn new(auth: Auth, ctx: Arc<Ctx>) -> Actions {
        Actions {
            auth,
            ctx,
            extra: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// The running provider `name`: an inbox's, or one from the config
    /// built now (once) for a redo.
    pub(super) async fn provider(&self, name: &str) -> Result<Arc<dyn Provider>, ActionError> {
        if let Some(p) = self.ctx.providers.get(name) {
            return Ok(p.clone());
        }
        let mut extra = self.extra.lock().await;
        if let Some(p) = extra.get(name) {
            return Ok(p.clone());
        }
        let Some(pc) = self.ctx.cfg.providers.get(name).cloned() else {
            return Err(ActionError::UnknownProvider {
                name: name.to_string(),
                known: self
                    .ctx
                    .cfg
                    .providers
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let n = name.to_string();
        let built = crate::blocking::run("review: build provider", move || {
            crate::provider::build::build(&n, &pc)
        })
        .await?
        .map_err(|e| ActionError::Provider {
            code: crate::job::Code::InternalError,
            message: e.to_string(),
        })?;
        extra.insert(name.to_string(), built.clone());
        Ok(built)
    }

    pub(super) async fn job(&self, id: i64) -> Result<Job, ActionError> {
        let store = self.ctx.store.clone();
        crate::blocking::run("review: read job", move || store.get(id))
            .await??
            .ok_or(ActionError::NoJob(id))
    }

    pub(super) fn inbox(&self, name: &str) -> Result<&Inbox, ActionError> {
        self.ctx
            .cfg
            .inboxes
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| ActionError::InboxGone(name.to_string()))
    }

    /// Refuse `action` on the shared PostgreSQL state (retry, redo and
    /// confirm move files and keep an action log that has no port there).
    pub(super) fn not_shared(&self, action: &'static str) -> Result<(), ActionError> {
        match self.ctx.store.is_shared() {
            true => Err(ActionError::SharedState(action)),
            false => Ok(()),
        }
    }

    /// Approve, flag (or with None clear the mark of) job `id`.
    pub async fn mark(&self, id: i64, mark: Option<Mark>, who: &Who) -> Result<(), ActionError> {
        let job = self.job(id).await?;
        if !matches!(job.outcome, Some(Outcome::Succeeded | Outcome::Duplicate)) {
            return Err(ActionError::WrongOutcome {
                job: id,
                what: "only a cut-out (succeeded or duplicate) is approved or flagged",
            });
        }
        self.ctx.store.set_mark(id, mark, &who.0).await?;
        let event = match mark {
            Some(Mark::Approved) => ActionEvent::ReviewApprove,
            Some(Mark::Flagged) => ActionEvent::ReviewFlag,
            None => ActionEvent::ReviewUnmark,
        };
        let line = ActionLine::new(event, id, &job.inbox, &lossy(&job.rel_path), &who.0);
        let audit = self.ctx.audit.clone();
        crate::blocking::run("review: audit mark", move || line.append(&audit))
            .await?
            .map_err(|e| ActionError::Files(e.to_string()))
    }

    /// Send a failed or rejected input back into its inbox (see the module
    /// docs).
    pub async fn retry(&self, id: i64, who: &Who) -> Result<Retried, ActionError> {
        self.not_shared("retry")?;
        let job = self.job(id).await?;
        if job.active || !matches!(job.outcome, Some(Outcome::Failed | Outcome::Rejected)) {
            return Err(ActionError::WrongOutcome {
                job: id,
                what: "only a finished failure or rejection is retried",
            });
        }
        let inbox = self.inbox(&job.inbox)?;
        let first = inbox.path.join(&job.rel_path);
        let src = job
            .move_to
            .clone()
            .ok_or(ActionError::InputGone(first.clone()))?;
        let (s, f, store) = (src.clone(), first.clone(), self.ctx.store.clone());
        let dst = crate::blocking::run("review: retry names", move || {
            let done = store
                .actions_of(id)?
                .iter()
                .any(|a| a.kind == ActionKind::Retry && a.state != ActionState::Abandoned);
            if done {
                return Err(ActionError::AlreadyRetried(id));
            }
            let is_file = std::fs::symlink_metadata(&s).is_ok_and(|m| m.is_file());
            Ok(is_file.then(|| free_name(&f)))
        })
        .await??
        .ok_or_else(|| ActionError::InputGone(src.clone()))?;
        let aid = self
            .ctx
            .store
            .begin_action(
                ActionKind::Retry,
                id,
                &who.0,
                None,
                Some(src.clone()),
                Some(dst.clone()),
                None,
                true,
            )
            .await?
            .ok_or(ActionError::AlreadyRetried(id))?;
        let (ctx, job2, by) = (self.ctx.clone(), job.clone(), who.0.clone());
        crate::blocking::run("review: retry", move || {
            complete_retry(&ctx, aid, &job2, &by, &src, &dst)
        })
        .await??;
        tracing::info!(
            job = id,
            action = aid,
            "review: input sent back to its inbox"
        );
        Ok(Retried {
            action: aid,
            from: lossy(&job.move_to.unwrap_or_default()),
            to: lossy(&first),
        })
    }
}

/// The first free name for `first` (itself, then `name-2.ext`, …).
fn free_name(first: &Path) -> PathBuf {
    (1..=10_000u32)
        .map(|n| fsutil::numbered(first, n))
        .find(|p| std::fs::symlink_metadata(p).is_err())
        .unwrap_or_else(|| first.to_path_buf())
}

/// The steps of a retry after its intent is committed; idempotent (recovery
/// runs it again). Blocking.
pub(super) fn complete_retry(
    ctx: &Ctx,
    aid: i64,
    job: &Job,
    by: &str,
    src: &Path,
    dst: &Path,
) -> Result<(), ActionError> {
    let files = |e: fsutil::FsError| ActionError::Files(e.to_string());
    let src_here = std::fs::symlink_metadata(src).is_ok();
    if src_here {
        if let Err(e) = fsutil::move_durably(src, dst) {
            // Nothing moved: the action did not happen.
            ctx.store.end_action(aid, ActionState::Abandoned, None)?;
            return Err(files(e));
        }
    }
    let reason = crate::output::reason_path(src);
    if std::fs::symlink_metadata(&reason).is_ok() {
        fsutil::remove_durably(&reason).map_err(files)?;
    }
    let event = ActionEvent::ReviewRetry;
    if !super::actions_log::has_action_line(&ctx.cfg.state_dir, aid, event) {
        let mut line = ActionLine::new(event, job.id, &job.inbox, &lossy(&job.rel_path), by);
        line.action = Some(aid);
        line.from = Some(lossy(src));
        line.to = Some(lossy(dst));
        line.append(&ctx.audit)
            .map_err(|e| ActionError::Files(e.to_string()))?;
    }
    ctx.store.end_action(aid, ActionState::Done, None)?;
    Ok(())
}
