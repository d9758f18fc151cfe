//! Attempt: hand a claimed picture to its provider, as often as the retry
//! policy allows. Each attempt waits for one of the `queue.concurrency`
//! engine slots (held only around the call), is counted in the state
//! database before it starts, and ends in one of: a cut-out, another
//! attempt after a backoff (with a `retry` audit line), the provider paused
//! (the file stays queued), or a failure.
//!
//! Must not: write the cut-out or move the input (the decide and finish
//! stages do), or know any provider's wire format.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::claim::FirstAttempt;
use super::ctx::{blocking, internal_trouble, state_trouble, store_failed, taken_over, Picture};
use super::decide;
use super::decide::Done;
use crate::job::{Backoff, Event, FileResult};
use crate::provider::{Disposition, JobJournal, Provider, ProviderError, Request, Response};
use crate::store::{Job, Store};
use crate::validate::Validated;

/// How soon a file of a paused provider is looked at again (the queue holds
/// it anyway while the provider stays paused).
const PAUSED_LATER: Duration = Duration::from_secs(1);
/// 429 answers one file may take in a row before it goes back to the queue.
const MAX_FREE_RETRIES: u32 = 20;

/// Attempts so far, as the state database counts them.
struct Attempts {
    count: u32,
    first: FirstAttempt,
    /// 429s in a row that were given back.
    free_retries: u32,
}

/// Run the engine attempts of a claimed job.
pub(super) async fn run(
    pic: &Picture<'_>,
    job: &Job,
    first: FirstAttempt,
    provider: Arc<dyn Provider>,
    v: &Validated,
) -> Result<Done, FileResult> {
    // The claim reserved the output name: after a crash, a file at the
    // reserved name is this job's finished result.
    let Some(output_path) = job.output.clone() else {
        return Err(state_trouble(format_args!(
            "job {} has no reserved output name (state database changed underneath?)",
            job.id
        )));
    };
    let p = output_path.clone();
    if blocking("stat output", move || p.exists()).await == Ok(true) {
        tracing::info!(input = %pic.rel.display(), output = %output_path.display(), "result was already written before a restart; not submitting again");
        return Ok(Done::AlreadyWritten);
    }
    let journal = Journal {
        store: pic.ctx.store.clone(),
        id: job.id,
        remote: std::sync::Mutex::new(job.remote_job.clone().map(|r| (r, job.remote_since_ms))),
    };
    let mut n = Attempts {
        count: job.attempts,
        first,
        free_retries: 0,
    };
    loop {
        let err = match attempt(pic, job, &mut n, &*provider, v, &journal).await? {
            Ok(response) => {
                return Ok(Done::Fresh {
                    response,
                    attempts: n.count,
                })
            }
            Err(err) => err,
        };
        if let ControlFlow::Break(done) = after_error(pic, job, &mut n, &*provider, v, err).await {
            return Err(done);
        }
    }
}

/// One attempt: wait for an engine slot, count the attempt, call the
/// provider. The outer error ends the job's work for now.
async fn attempt(
    pic: &Picture<'_>,
    job: &Job,
    n: &mut Attempts,
    provider: &dyn Provider,
    v: &Validated,
    journal: &Journal,
) -> Result<Result<Response, ProviderError>, FileResult> {
    // Wait for one of the `queue.concurrency` engine slots; the queue keeps
    // as many pictures again read, checked and written around the ones at
    // the engine, so the engine never waits for them.
    let ctx = pic.ctx;
    let mut shutdown = ctx.shutdown.clone();
    let slot = tokio::select! {
        s = ctx.engine_slots.acquire() => Some(s),
        _ = shutdown.wait_for(|s| *s) => None,
    };
    let Some(slot) = slot else {
        if n.first == FirstAttempt::CountedByClaim {
            // Counted by the claim but never sent: give it back.
            set_attempts(&ctx.store, job.id, n.count.saturating_sub(1)).await;
        }
        return Err(FileResult::Interrupted);
    };
    let Ok(slot) = slot else {
        return Err(internal_trouble("the engine slots were closed"));
    };
    if n.first == FirstAttempt::CountedByClaim {
        n.first = FirstAttempt::CountWhenStarted;
    } else {
        n.count += 1;
        if let Err(e) = ctx.store.set_attempts(job.id, n.count).await {
            return Err(store_failed(&pic.rel, e));
        }
    }
    let file_name = pic
        .rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let req = Request {
        input: v,
        file_name: &file_name,
        output_format: pic.inbox.output_format,
        options: &pic.inbox.options,
        journal,
    };
    let t0 = Instant::now();
    let res = provider.remove_background(req).await;
    drop(slot);
    crate::metrics::global().observe_latency(provider.name(), t0.elapsed().as_secs_f64());
    tracing::debug!(input = %pic.rel.display(), ms = t0.elapsed().as_millis() as u64, ok = res.is_ok(), "provider call");
    Ok(res)
}

/// What a provider error means for this file: another attempt (Continue,
/// after the backoff) or an end for now (Break).
async fn after_error(
    pic: &Picture<'_>,
    job: &Job,
    n: &mut Attempts,
    provider: &dyn Provider,
    v: &Validated,
    err: ProviderError,
) -> ControlFlow<FileResult> {
    let retry = pic.ctx.cfg.retry;
    let rel = pic.rel.display();
    match err.disposition() {
        Disposition::Fail => {
            return ControlFlow::Break(decide::fail(pic, job, n.count, &err, v).await);
        }
        Disposition::PauseProvider => {
            // Not the file's fault: give the attempt back and keep it
            // queued. The provider has logged its one line for the
            // operator; while it stays paused the queue holds its files
            // (`Provider::is_paused`), so a short delay costs nothing.
            set_attempts(&pic.ctx.store, job.id, n.count - 1).await;
            tracing::debug!(provider = provider.name(), code = %err.code(), "{err}; keeping {rel} queued");
            return ControlFlow::Break(FileResult::Later(PAUSED_LATER));
        }
        Disposition::Retry => {}
    }
    if err.is_free_retry() {
        // 429: the provider's gate slows every request down and cools off;
        // the attempt says nothing about the file and is given back. Only a
        // long run of them hands the file back to the queue (never to
        // failed/).
        n.count -= 1;
        set_attempts(&pic.ctx.store, job.id, n.count).await;
        n.free_retries += 1;
        if n.free_retries > MAX_FREE_RETRIES {
            tracing::warn!(input = %rel, code = %err.code(), "{err}; still rate limited after {MAX_FREE_RETRIES} tries, putting it back in the queue");
            let later = retry.max_delay.max(Duration::from_secs(1));
            return ControlFlow::Break(FileResult::Later(later));
        }
    } else if n.count >= err.attempt_cap(retry.max_attempts) {
        return ControlFlow::Break(decide::fail(pic, job, n.count, &err, v).await);
    }
    let cap = retry.max_delay.max(Duration::from_secs(1)) * 4;
    if let Some(ra) = err.retry_after().filter(|ra| *ra > cap) {
        // Asked to come back much later: free the worker.
        tracing::warn!(input = %rel, code = %err.code(), "{err}; the provider asked for {}; putting it back in the queue", humantime::format_duration(round_ms(ra)));
        return ControlFlow::Break(FileResult::Later(ra));
    }
    let backoff = Backoff {
        initial: retry.initial_delay,
        max: retry.max_delay,
    };
    let delay = err
        .retry_after()
        .unwrap_or_else(|| backoff.delay(n.count.saturating_sub(1)))
        .min(cap);
    // No retry line for a job another instance took over meanwhile (the
    // next attempt's count would be refused anyway).
    if let Err(crate::store::StoreError::Fenced { id, holder }) =
        pic.ctx.store.still_held(job.id).await
    {
        return ControlFlow::Break(taken_over(&pic.rel, id, &holder));
    }
    audit_retry(pic, job, n.count, &err, v, delay).await;
    crate::metrics::global().record_retry(provider.name());
    tracing::warn!(input = %rel, attempt = n.count, code = %err.code(), "{err}; retrying in {}", humantime::format_duration(round_ms(delay)));
    let mut shutdown = pic.ctx.shutdown.clone();
    tokio::select! {
        _ = tokio::time::sleep(delay) => ControlFlow::Continue(()),
        _ = shutdown.wait_for(|s| *s) => ControlFlow::Break(FileResult::Interrupted),
    }
}

/// The `retry` audit line (durable: appended and fdatasynced off the
/// executor). A failure to write it is logged, not fatal.
async fn audit_retry(
    pic: &Picture<'_>,
    job: &Job,
    attempts: u32,
    err: &ProviderError,
    v: &Validated,
    delay: Duration,
) {
    let mut r = decide::base_record(pic, job, Some(v));
    r.event = Event::Retry;
    r.attempts = attempts;
    r.code = Some(err.code());
    r.reason = Some(format!(
        "{err}; next attempt in {}",
        humantime::format_duration(round_ms(delay))
    ));
    r.duration_ms = pic.started.elapsed().as_millis() as u64;
    let audit = pic.ctx.audit.clone();
    match blocking("audit retry", move || audit.append(&r)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("{e}"),
        Err(e) => tracing::error!("{e}"),
    }
}

/// Write the attempt count (best effort: it only steers `max_attempts`).
async fn set_attempts(store: &Store, id: i64, attempts: u32) {
    let _ = store.set_attempts(id, attempts).await;
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// The provider's durable per-job memory, kept in the state database.
struct Journal {
    store: Store,
    id: i64,
    /// The remote job id and when it was created (ms since the epoch).
    remote: std::sync::Mutex<Option<(String, Option<i64>)>>,
}

#[async_trait::async_trait]
impl JobJournal for Journal {
    fn remote_job(&self) -> Option<String> {
        self.remote
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|(id, _)| id.clone()))
    }
    fn remote_job_age(&self) -> Option<Duration> {
        let since = self.remote.lock().ok()?.as_ref()?.1?;
        let ms = crate::store::now_ms().saturating_sub(since).max(0);
        Some(Duration::from_millis(ms as u64))
    }
    async fn set_remote_job(&self, id: &str) -> Result<(), String> {
        self.store
            .set_remote_job(self.id, id)
            .await
            .map_err(|e| e.to_string())?;
        if let Ok(mut g) = self.remote.lock() {
            *g = Some((id.to_string(), Some(crate::store::now_ms())));
        }
        Ok(())
    }
}
