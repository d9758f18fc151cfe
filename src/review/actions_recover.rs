//! At start-up, before the queue runs: complete or undo the review actions
//! a crash left `pending`. A retry whose input already moved (or can move
//! now) is completed; a redo whose audit line is written is completed,
//! any other pending redo has its kept outputs put back (the old result
//! stands, nothing is lost); a confirm deletes what is left and is done.
//!
//! Must not: start new actions.

use super::actions_log::{has_action_line, ActionEvent};
use super::actions_redo::{complete_confirm, finish_redo, undo_redo, RedoDetail};
use crate::pipeline::Ctx;
use crate::store::{ActionKind, ActionState};

/// Recover every pending action; returns how many were looked at.
/// Blocking (runs before the daemon serves anything).
pub fn recover(ctx: &Ctx) -> usize {
    let pending = match ctx.store.pending_actions() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("review: cannot read pending actions: {e}");
            return 0;
        }
    };
    for a in &pending {
        let job = match ctx.store.get(a.job) {
            Ok(Some(j)) => j,
            _ => {
                let _ = ctx.store.end_action(a.id, ActionState::Abandoned, None);
                continue;
            }
        };
        let detail: RedoDetail = a
            .detail
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or_default();
        let r = match (a.kind, &a.src, &a.dst) {
            (ActionKind::Retry, Some(src), Some(dst)) => {
                super::actions_ops::complete_retry(ctx, a.id, &job, &a.by, src, dst)
            }
            (ActionKind::Redo, _, _) => {
                if has_action_line(&ctx.cfg.state_dir, a.id, ActionEvent::ReviewRedo) {
                    let provider = a.provider.clone().unwrap_or_default();
                    finish_redo(ctx, a.id, &job, &a.by, &provider, &detail, None)
                } else {
                    undo_redo(ctx, a.id, &detail);
                    Ok(())
                }
            }
            (ActionKind::Confirm, _, _) => complete_confirm(ctx, a.id, &job, &a.by, &detail.kept),
            _ => ctx
                .store
                .end_action(a.id, ActionState::Abandoned, None)
                .map_err(Into::into),
        };
        match r {
            Ok(()) => tracing::info!(
                action = a.id,
                job = a.job,
                kind = a.kind.as_str(),
                "review: an interrupted action was recovered"
            ),
            Err(e) => tracing::error!(
                action = a.id,
                job = a.job,
                "review: cannot recover an interrupted action yet: {e}"
            ),
        }
    }
    pending.len()
}
