//! Paid jobs to collect while a provider is paused: the inputs whose job
//! remembers a remote job id (created and paid for, result not collected
//! yet). A pause for credits stops new submissions only, so these files go
//! to workers while the other files of that provider stay held.
//!
//! Owns: the set of those paths (refreshed from the state database while a
//! provider is paused, empty otherwise: bounded by the paid jobs in flight)
//! and the hold rule of `Dispatcher::dispatch`.
//!
//! Must not: submit anything, or hold a file of a provider paused for a
//! refused key or an outage (collecting needs the key and the API).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::inboxes::WatchedInboxes;
use crate::pipeline::Ctx;
use crate::provider::PauseReason;
use crate::settle::Ready;

/// How often the set is read again while a provider is paused.
const REFRESH: Duration = Duration::from_secs(1);

/// Inputs with a remembered remote job, as of the last refresh.
#[derive(Default)]
pub(super) struct Collect {
    paths: HashSet<PathBuf>,
    refreshed: Option<Instant>,
}

impl Collect {
    /// Read the set again when some provider is paused (at most every
    /// `REFRESH`); forget it when none is.
    pub(super) async fn refresh(&mut self, ctx: &Ctx, inboxes: &WatchedInboxes, now: Instant) {
        if !ctx.providers.values().any(|p| p.is_paused()) {
            self.paths.clear();
            self.refreshed = None;
            return;
        }
        if self
            .refreshed
            .is_some_and(|t| now.duration_since(t) < REFRESH)
        {
            return;
        }
        self.refreshed = Some(now);
        match ctx.store.remote_jobs_open().await {
            Ok(rows) => {
                self.paths = rows
                    .into_iter()
                    .filter_map(|(name, rel)| {
                        let s = inboxes.values().find(|s| s.inbox.name == name)?;
                        Some(s.inbox.path.join(rel))
                    })
                    .collect();
            }
            Err(e) => tracing::warn!("cannot list the paid jobs to collect: {e}"),
        }
    }

    /// Whether `r` waits: its provider is paused, unless the pause is for
    /// credits and `r`'s paid job only needs collecting.
    pub(super) fn held(&self, ctx: &Ctx, inboxes: &WatchedInboxes, r: &Ready) -> bool {
        let Some(p) = inboxes
            .get(&r.inbox)
            .and_then(|s| ctx.providers.get(&s.inbox.provider))
        else {
            return false;
        };
        if !p.is_paused() {
            return false;
        }
        let for_credits = || {
            p.status()
                .paused
                .is_some_and(|x| x.reason == PauseReason::Quota)
        };
        !(self.paths.contains(&r.path) && for_credits())
    }
}
