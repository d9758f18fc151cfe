//! The takeover sweep (shared PostgreSQL state only): the jobs a dead
//! instance left (its lease ran out). Those whose input is still in one of
//! this instance's inboxes are handed back to the queue to go first: a
//! worker's claim (or lookup, for a decided job) takes each over at a new
//! epoch and resumes it, remote job and all, through the ordinary steps.
//! Those whose input is gone are taken over here and finished or dropped
//! exactly as start-up recovery does ([`super::recover`]).
//!
//! Without the sweep a dead instance's job waits until a survivor happens
//! to look at its file again, which behind a long queue is minutes.
//!
//! Must not: call a provider, or take over a job a live instance holds (the
//! store's `adopt` only takes a dead owner's job, in one statement).

use std::path::PathBuf;

use super::ctx::{blocking, Ctx};
use super::finish::finish_interrupted;
use crate::store::{Job, StoreError};

/// One sweep: the inputs (inbox name, absolute path) of dead instances'
/// jobs that should go first in this instance's queue. At most `limit`
/// orphans are looked at.
pub async fn sweep(ctx: &Ctx, limit: usize) -> Vec<(String, PathBuf)> {
    let names: Vec<String> = ctx.cfg.inboxes.iter().map(|i| i.name.clone()).collect();
    let orphans = match ctx.store.orphans(&names, limit).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!("takeover sweep: cannot list a dead instance's jobs: {e}");
            return Vec::new();
        }
    };
    if !orphans.is_empty() {
        tracing::debug!(
            jobs = orphans.len(),
            "takeover sweep: a dead instance's jobs"
        );
    }
    // Where each input is, and whether it is still there: one blocking
    // call for the whole list.
    let inputs: Vec<(Job, PathBuf)> = orphans
        .into_iter()
        .filter_map(|job| {
            let inbox = ctx.cfg.inboxes.iter().find(|i| i.name == job.inbox)?;
            let input = inbox.path.join(&job.rel_path);
            Some((job, input))
        })
        .collect();
    let here = blocking("takeover sweep: stat", move || {
        inputs
            .into_iter()
            .map(|(job, input)| {
                let here = std::fs::symlink_metadata(&input).is_ok();
                (job, input, here)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let mut first = Vec::new();
    for (job, input, here) in here {
        if here {
            first.push((job.inbox.clone(), input));
        } else {
            input_gone(ctx, job).await;
        }
    }
    first
}

/// A dead instance's job whose input is no longer in the inbox: take it
/// over and finish it (decided: audit line, done) or drop it (undecided).
async fn input_gone(ctx: &Ctx, job: Job) {
    let job = match ctx.store.adopt(job.id).await {
        Ok(Some(job)) => job,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(job = job.id, input = %job.rel_path.display(), "takeover sweep: cannot take the job over: {e}");
            return;
        }
    };
    let (cfg, store, audit) = (ctx.cfg.clone(), ctx.store.clone(), ctx.audit.clone());
    let (id, rel) = (job.id, job.rel_path.clone());
    let done = blocking("takeover sweep: finish", move || {
        if job.outcome.is_some() {
            if finish_interrupted(&cfg, &store, &audit, &job) {
                tracing::info!(job = job.id, input = %job.rel_path.display(), "took over a dead instance's decided job and finished it");
            }
            return Ok(());
        }
        store.abandon(job.id, "the input disappeared before it was finished")?;
        tracing::warn!(job = job.id, input = %job.rel_path.display(), "a dead instance's unfinished job lost its input; dropping the job");
        Ok::<(), StoreError>(())
    })
    .await;
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(job = id, input = %rel.display(), "takeover sweep: cannot drop the job: {e}")
        }
        Err(e) => {
            tracing::error!(job = id, input = %rel.display(), "takeover sweep: {}", e.message)
        }
    }
}
