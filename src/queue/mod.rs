//! Queue: the dispatcher between watching and processing. It feeds watcher
//! and scan messages to the settler, hands ready paths to at most
//! 2 × `queue.concurrency` workers (half of them at the engine at a time,
//! the rest reading, checking and finishing pictures around them: see
//! `Ctx::worker_limit`), puts back what must wait (holding a paused
//! provider's files, except paid jobs to collect during a pause for
//! credits: `collect.rs`), and runs the
//! two-stage shutdown (stop taking work → let in-flight work finish within
//! the grace period → leave the rest queued for the next start).
//!
//! Owns: the worker set, rescans and watcher restarts, the tallies, and
//! switching the inbox set when the config is reloaded (SIGHUP) without
//! disturbing work in flight. `dispatcher.rs` holds the loop (one method per
//! event it reacts to), `inboxes.rs` the watched inboxes, `switch.rs` the
//! config switch, `report.rs` what the queue is told and tells.
//!
//! Must not: hold image bytes (only paths wait here), or do per-file work
//! itself (the pipeline does, on worker tasks).

use std::sync::Arc;

mod collect;
mod dispatcher;
mod inboxes;
mod report;
mod switch;

use crate::pipeline::Ctx;
use dispatcher::Dispatcher;

pub use report::{Hooks, Mode, Progress, ProgressFn, Tally};
pub use switch::{Reload, ReloadReport};

/// Run the queue until the batch is done or shutdown is requested.
pub async fn run(ctx: Arc<Ctx>, mode: Mode, progress: Option<ProgressFn>) -> Tally {
    run_with(ctx, mode, progress, Hooks::default()).await
}

/// [`run`] with service hooks (reloads, heartbeat, readiness).
pub async fn run_with(
    ctx: Arc<Ctx>,
    mode: Mode,
    progress: Option<ProgressFn>,
    mut hooks: Hooks,
) -> Tally {
    let mut dispatcher = Dispatcher::new(ctx, &mode, progress, &mut hooks);
    dispatcher.start(&mode);
    if let Some(ready) = hooks.ready.take() {
        let _ = ready.send(());
    }
    dispatcher.run().await;
    dispatcher.drain().await
}
