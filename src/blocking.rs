//! The one way blocking work leaves the async executor: [`run`] moves a
//! closure to tokio's blocking pool inside a `blocking` tracing span named
//! after the work, and logs (at trace level) how long it waited and ran.
//!
//! Owns: nothing but that hand-off. Must not: import other modules of this
//! crate (every stage uses it), or swallow a panic silently (a lost task
//! comes back as an error naming the work).

use std::time::Instant;

/// A blocking task that did not come back (it panicked or was cancelled).
#[derive(Debug, thiserror::Error)]
#[error("{what}: worker thread failed: {detail}")]
pub struct Lost {
    pub what: &'static str,
    pub detail: String,
}

/// Run `f` on the blocking pool; `what` names it in spans and errors.
pub async fn run<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Lost> {
    let span = tracing::debug_span!("blocking", what);
    let queued = Instant::now();
    tokio::task::spawn_blocking(move || {
        let _g = span.enter();
        let waited = queued.elapsed();
        let t = Instant::now();
        let r = f();
        tracing::trace!(
            what,
            wait_us = waited.as_micros() as u64,
            run_us = t.elapsed().as_micros() as u64,
            "blocking step"
        );
        r
    })
    .await
    .map_err(|e| Lost {
        what,
        detail: e.to_string(),
    })
}
