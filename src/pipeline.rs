//! The life of one file, from a settled path to its one final place:
//! read → hash → validate → claim (dedup/resume) → provider (with retries) →
//! output → audit → dispose of the input. Also crash recovery, which
//! finishes jobs that were decided but not completed.
//!
//! Owns: the order of durable steps that makes "nothing lost, nothing paid
//! twice" true: the output is durable before the decision is committed, the
//! decision before the audit line, the audit line before the input moves;
//! and the `queue.concurrency` engine slots, held only around the provider
//! call.
//!
//! Must not: watch folders or schedule work (the queue does), or know any
//! provider's wire format.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::audit::{now_rfc3339, Audit, Record};
use crate::config::{AfterSuccess, Config, Inbox};
use crate::fsutil;
use crate::output::{self, ReasonFile};
use crate::provider::{Disposition, JobJournal, Provider, ProviderError, Request};
use crate::store::{Claim, Job, Known, Naming, Outcome, Store};
use crate::validate::{self, Rejection, Validated};

/// Everything a worker needs, shared read-only.
pub struct Ctx {
    pub cfg: Arc<Config>,
    pub store: Store,
    pub audit: Arc<Audit>,
    pub providers: std::collections::BTreeMap<String, Arc<dyn Provider>>,
    pub dry_run: bool,
    /// Flips to true when the process is asked to stop.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// `queue.concurrency` permits: pictures at the engine at once.
    pub engine_slots: Arc<tokio::sync::Semaphore>,
}

impl Ctx {
    /// The engine slots for a `queue.concurrency`.
    pub fn engine_slots(concurrency: usize) -> Arc<tokio::sync::Semaphore> {
        Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)))
    }

    /// Workers the queue runs at once: the pictures at the engine plus as
    /// many again being read, checked and finished around them (each holds
    /// at most one picture's bytes).
    pub fn worker_limit(&self) -> usize {
        2 * self.cfg.queue.concurrency.max(1)
    }

    /// Pictures holding an engine slot right now.
    pub fn at_engine(&self) -> usize {
        self.cfg
            .queue
            .concurrency
            .max(1)
            .saturating_sub(self.engine_slots.available_permits())
    }
}

/// What became of one file, for the queue and the batch summary.
#[derive(Debug, Clone, PartialEq)]
pub enum FileResult {
    Succeeded,
    Duplicate,
    Rejected(String),
    Failed(String),
    /// Dry run: would be submitted.
    Valid,
    /// Already done earlier and kept in place.
    AlreadyDone,
    /// Not ready (changing, or the same picture is in flight elsewhere):
    /// look again after the delay.
    Later(Duration),
    /// The file is gone.
    Vanished,
    /// Stopped by shutdown; stays queued for the next start.
    Interrupted,
    /// Could not be processed now for a reason outside the file (state
    /// database, full disk, unwritable folder): look again later.
    Trouble(String),
}

#[derive(Debug, Clone, Copy)]
struct FileStat {
    size: u64,
    mtime_ns: i64,
}

fn stat_of(m: &std::fs::Metadata) -> FileStat {
    FileStat {
        size: m.len(),
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
    }
}

fn lossy(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Run a blocking closure on the blocking pool, mapping a lost task into an
/// error string.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
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
    .map_err(|e| format!("{what}: worker thread failed: {e}"))
}

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
        let (store, job, remote) = (self.store.clone(), self.id, id.to_string());
        blocking("remember remote job", move || {
            store.set_remote_job(job, &remote)
        })
        .await?
        .map_err(|e| e.to_string())?;
        if let Ok(mut g) = self.remote.lock() {
            *g = Some((id.to_string(), Some(crate::store::now_ms())));
        }
        Ok(())
    }
}

/// How soon a file of a paused provider is looked at again (the queue holds
/// it anyway while the provider stays paused).
const PAUSED_LATER: Duration = Duration::from_secs(1);
/// 429 answers one file may take in a row before it goes back to the queue.
const MAX_FREE_RETRIES: u32 = 20;

/// Full-jitter exponential backoff: a random delay in [0, min(max, initial·2ⁿ)].
pub fn backoff_delay(retry: u32, initial: Duration, max: Duration) -> Duration {
    let cap = initial
        .checked_mul(1u32 << retry.min(20))
        .unwrap_or(max)
        .min(max);
    let ms = cap.as_millis() as u64;
    Duration::from_millis(fastrand::u64(0..=ms.max(1)))
}

/// Process one settled file of `inbox`.
pub async fn process_file(ctx: &Ctx, inbox: &Inbox, path: &Path) -> FileResult {
    let started = Instant::now();
    let rel = match path.strip_prefix(&inbox.path) {
        Ok(r) => r.to_path_buf(),
        Err(_) => return FileResult::Vanished,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(_) => return FileResult::Vanished,
    };
    let ft = meta.file_type();
    let st = stat_of(&meta);
    // A decision made earlier whose finishing steps failed (e.g. the target
    // folder was full or read-only) is finished now, never decided again:
    // one outcome, one audit line. A file finished earlier and kept in
    // place unchanged is not read again.
    if !ctx.dry_run {
        let (store, name, r) = (ctx.store.clone(), inbox.name.clone(), rel.clone());
        let stat = ft.is_file().then_some((st.size, st.mtime_ns));
        match blocking("state lookup", move || store.lookup(&name, &r, stat)).await {
            Ok(Ok(Known::Decided(job))) => return finish_decided(ctx, *job).await,
            Ok(Ok(Known::DoneUnchanged)) => return FileResult::AlreadyDone,
            Ok(Ok(Known::Unknown)) => {}
            Ok(Err(e)) => return FileResult::Trouble(e.to_string()),
            Err(e) => return FileResult::Trouble(e),
        }
    }
    if !ft.is_file() {
        let what = if ft.is_symlink() {
            "a symbolic link".to_string()
        } else if ft.is_dir() {
            return FileResult::Vanished;
        } else {
            "a pipe, socket or device".to_string()
        };
        return reject(
            ctx,
            inbox,
            &rel,
            None,
            None,
            Rejection::NotRegular { what },
            started,
        )
        .await;
    }
    let limits = ctx.cfg.limits;
    if st.size == 0 {
        return reject(ctx, inbox, &rel, None, Some(st), Rejection::Empty, started).await;
    }
    if st.size > limits.max_file_size {
        let r = Rejection::TooLarge {
            size: st.size,
            max: limits.max_file_size,
        };
        return reject(ctx, inbox, &rel, None, Some(st), r, started).await;
    }

    // Read (bounded by max_file_size), hash, and make sure it did not change
    // while we read it.
    let p = path.to_path_buf();
    let read = blocking(
        "read input",
        move || -> std::io::Result<Option<(Vec<u8>, String)>> {
            use std::io::Read;
            let f = std::fs::File::open(&p)?;
            let mut buf = Vec::with_capacity(st.size as usize);
            f.take(limits.max_file_size + 1).read_to_end(&mut buf)?;
            let after = stat_of(&std::fs::symlink_metadata(&p)?);
            if after.size != st.size || after.mtime_ns != st.mtime_ns || buf.len() as u64 != st.size
            {
                return Ok(None);
            }
            let sha = hex::encode(Sha256::digest(&buf));
            Ok(Some((buf, sha)))
        },
    )
    .await;
    let (buf, sha) = match read {
        Ok(Ok(Some(v))) => v,
        Ok(Ok(None)) => return FileResult::Later(inbox.settle.max(Duration::from_millis(200))),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return FileResult::Vanished,
        Ok(Err(e)) => return FileResult::Trouble(format!("cannot read {}: {e}", path.display())),
        Err(e) => return FileResult::Trouble(e),
    };

    let provider = match ctx.providers.get(&inbox.provider) {
        Some(p) => p.clone(),
        None => {
            return FileResult::Trouble(format!("provider {:?} is not available", inbox.provider))
        }
    };
    let want_pixels = provider.wants_pixels();
    let bytes = bytes::Bytes::from(buf);
    let validated = match blocking("validate", move || {
        validate::validate(bytes, &limits, want_pixels)
    })
    .await
    {
        Ok(Ok(v)) => v,
        Ok(Err(r)) => return reject(ctx, inbox, &rel, Some(&sha), Some(st), r, started).await,
        Err(e) => return FileResult::Trouble(e),
    };
    if ctx.dry_run {
        return FileResult::Valid;
    }

    let claim = {
        let (store, name, r, s, pname) = (
            ctx.store.clone(),
            inbox.name.clone(),
            rel.clone(),
            sha.clone(),
            inbox.provider.clone(),
        );
        let keep = inbox.after_success == AfterSuccess::Keep;
        let base = output::output_base(inbox, &rel);
        match blocking("claim", move || {
            store.claim(
                &name,
                &r,
                &s,
                st.size,
                st.mtime_ns,
                &pname,
                keep,
                Some(output_naming(base)),
            )
        })
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return FileResult::Trouble(e.to_string()),
            Err(e) => return FileResult::Trouble(e),
        }
    };
    let (job, first_counted) = match claim {
        Claim::AlreadyDone => return FileResult::AlreadyDone,
        Claim::Busy => return FileResult::Later(inbox.settle.max(Duration::from_secs(1))),
        Claim::Duplicate { job, earlier } => {
            return duplicate(ctx, inbox, &rel, job, *earlier, &validated, started).await
        }
        Claim::New(job) => (job, true),
        Claim::Resume(job) => (job, false),
    };
    run_job(
        ctx,
        inbox,
        &rel,
        job,
        first_counted,
        provider,
        &validated,
        started,
    )
    .await
}

/// A free name for a cut-out: `base`, else `base-2`, `base-3`, …
fn output_naming(base: PathBuf) -> Naming {
    Naming {
        base,
        candidate: fsutil::numbered,
        also_free: |_| true,
    }
}

/// Run the finishing steps of a job decided earlier.
async fn finish_decided(ctx: &Ctx, job: Job) -> FileResult {
    let (store, audit, cfg, id) = (
        ctx.store.clone(),
        ctx.audit.clone(),
        ctx.cfg.clone(),
        job.id,
    );
    match blocking("finish job", move || {
        finish_job(&cfg, &store, &audit, id, None, false)
    })
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return FileResult::Trouble(e.to_string()),
        Err(e) => return FileResult::Trouble(e),
    }
    let why = || job.reason.clone().unwrap_or_default();
    match job.outcome {
        Some(Outcome::Succeeded) => FileResult::Succeeded,
        Some(Outcome::Duplicate) => FileResult::Duplicate,
        Some(Outcome::Rejected) => FileResult::Rejected(why()),
        Some(Outcome::Failed) => FileResult::Failed(why()),
        Some(Outcome::Vanished) | None => FileResult::Vanished,
    }
}

fn base_record(inbox: &Inbox, rel: &Path, job: &Job, v: Option<&Validated>) -> Record {
    Record {
        ts: now_rfc3339(),
        job: job.id,
        inbox: inbox.name.clone(),
        input: lossy(rel),
        sha256: job.sha256.clone(),
        bytes: job.size,
        format: v.map(|v| v.kind.name().to_string()),
        width: v.map(|v| v.width),
        height: v.map(|v| v.height),
        provider: Some(inbox.provider.clone()),
        attempts: job.attempts,
        ..Record::default()
    }
}

/// Submit a claimed job and write its result. `first_counted`: the claim
/// already counted the first attempt (a new job), so it is not written
/// again.
#[allow(clippy::too_many_arguments)]
async fn run_job(
    ctx: &Ctx,
    inbox: &Inbox,
    rel: &Path,
    job: Job,
    mut first_counted: bool,
    provider: Arc<dyn Provider>,
    v: &Validated,
    started: Instant,
) -> FileResult {
    // The claim reserved the output name: after a crash, a file at the
    // reserved name is this job's finished result, and is not paid for
    // again.
    let Some(output_path) = job.output.clone() else {
        return FileResult::Trouble(format!(
            "job {} has no reserved output name (state database changed underneath?)",
            job.id
        ));
    };
    let mut rec = base_record(inbox, rel, &job, Some(v));
    if output_path.exists() {
        tracing::info!(input = %rel.display(), output = %output_path.display(), "result was already written before a restart; not submitting again");
        rec.output = Some(lossy(&output_path));
        rec.remote_job = job.remote_job.clone();
        return succeed(ctx, inbox, rel, &job, rec, started).await;
    }

    let file_name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let journal = Journal {
        store: ctx.store.clone(),
        id: job.id,
        remote: std::sync::Mutex::new(job.remote_job.clone().map(|r| (r, job.remote_since_ms))),
    };
    let retry = ctx.cfg.retry;
    let mut attempts = job.attempts;
    let mut free_retries = 0u32;
    let mut shutdown = ctx.shutdown.clone();
    let outcome = loop {
        // Wait for one of the `queue.concurrency` engine slots; the queue
        // keeps as many pictures again read, checked and written around
        // the ones at the engine, so the engine never waits for them.
        let slot = tokio::select! {
            s = ctx.engine_slots.acquire() => Some(s),
            _ = shutdown.wait_for(|s| *s) => None,
        };
        let Some(slot) = slot else {
            if first_counted {
                // Counted by the claim but never sent: give it back.
                let (store, id) = (ctx.store.clone(), job.id);
                let _ = blocking("count attempt", move || {
                    store.set_attempts(id, attempts.saturating_sub(1))
                })
                .await;
            }
            return FileResult::Interrupted;
        };
        let Ok(slot) = slot else {
            return FileResult::Trouble("the engine slots were closed".into());
        };
        if first_counted {
            first_counted = false;
        } else {
            attempts += 1;
            let (store, id) = (ctx.store.clone(), job.id);
            if let Ok(Err(e)) =
                blocking("count attempt", move || store.set_attempts(id, attempts)).await
            {
                return FileResult::Trouble(e.to_string());
            }
        }
        let req = Request {
            input: v,
            file_name: &file_name,
            output_format: inbox.output_format,
            options: &inbox.options,
            journal: &journal,
        };
        let t0 = Instant::now();
        let res = provider.remove_background(req).await;
        drop(slot);
        crate::metrics::global().observe_latency(provider.name(), t0.elapsed().as_secs_f64());
        tracing::debug!(input = %rel.display(), ms = t0.elapsed().as_millis() as u64, ok = res.is_ok(), "provider call");
        let err = match res {
            Ok(o) => break o,
            Err(e) => e,
        };
        match err.disposition() {
            Disposition::Fail => {
                return fail(ctx, inbox, rel, &job, attempts, &err, v, started).await;
            }
            Disposition::PauseProvider => {
                // Not the file's fault: give the attempt back and keep it
                // queued. The provider has logged its one line for the
                // operator; while it stays paused the queue holds its files
                // (`Provider::is_paused`), so a short delay costs nothing.
                let (store, id) = (ctx.store.clone(), job.id);
                let _ = blocking("count attempt", move || {
                    store.set_attempts(id, attempts - 1)
                })
                .await;
                tracing::debug!(
                    provider = provider.name(),
                    code = err.code(),
                    "{err}; keeping {} queued",
                    rel.display()
                );
                return FileResult::Later(PAUSED_LATER);
            }
            Disposition::Retry => {
                if err.is_free_retry() {
                    // 429: the provider's gate slows every request down and
                    // cools off; the attempt says nothing about the file and
                    // is given back. Only a long run of them hands the file
                    // back to the queue (never to failed/).
                    attempts -= 1;
                    let (store, id) = (ctx.store.clone(), job.id);
                    let _ =
                        blocking("count attempt", move || store.set_attempts(id, attempts)).await;
                    free_retries += 1;
                    if free_retries > MAX_FREE_RETRIES {
                        tracing::warn!(input = %rel.display(), code = err.code(), "{err}; still rate limited after {MAX_FREE_RETRIES} tries, putting it back in the queue");
                        return FileResult::Later(retry.max_delay.max(Duration::from_secs(1)));
                    }
                } else if attempts >= err.attempt_cap(retry.max_attempts) {
                    return fail(ctx, inbox, rel, &job, attempts, &err, v, started).await;
                }
                let cap = retry.max_delay.max(Duration::from_secs(1)) * 4;
                if let Some(ra) = err.retry_after().filter(|ra| *ra > cap) {
                    // Asked to come back much later: free the worker.
                    tracing::warn!(input = %rel.display(), code = err.code(), "{err}; the provider asked for {}; putting it back in the queue", humantime::format_duration(round_ms(ra)));
                    return FileResult::Later(ra);
                }
                let delay = err
                    .retry_after()
                    .unwrap_or_else(|| {
                        backoff_delay(
                            attempts.saturating_sub(1),
                            retry.initial_delay,
                            retry.max_delay,
                        )
                    })
                    .min(cap);
                let mut r = base_record(inbox, rel, &job, Some(v));
                r.event = "retry".into();
                r.attempts = attempts;
                r.code = Some(err.code().into());
                r.reason = Some(format!(
                    "{err}; next attempt in {}",
                    humantime::format_duration(round_ms(delay))
                ));
                r.duration_ms = started.elapsed().as_millis() as u64;
                if let Err(e) = ctx.audit.append(&r) {
                    tracing::error!("{e}");
                }
                crate::metrics::global().record_retry(provider.name());
                tracing::warn!(input = %rel.display(), attempt = attempts, code = err.code(), "{err}; retrying in {}", humantime::format_duration(round_ms(delay)));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait_for(|s| *s) => return FileResult::Interrupted,
                }
            }
        }
    };

    // Encode and write the result durably at the reserved name.
    let format = inbox.output_format;
    let quality = inbox.webp_quality;
    let remote_job = outcome.remote_job.clone();
    let credits = outcome.credits_used;
    let cutout = outcome.cutout;
    let out = output_path.clone();
    let written = blocking(
        "write output",
        move || -> Result<(), output::OutputError> {
            let t = Instant::now();
            let bytes = output::encode(cutout, format, quality)?;
            let encode_us = t.elapsed().as_micros() as u64;
            let t = Instant::now();
            output::write_output(&out, &bytes)?;
            let write_us = t.elapsed().as_micros() as u64;
            tracing::debug!(encode_us, write_us, bytes = bytes.len(), "output written");
            Ok(())
        },
    )
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.code() == "provider-bad-result" || e.code() == "encode-failed" => {
            let err = ProviderError::Permanent {
                code: e.code(),
                message: e.to_string(),
            };
            return fail(ctx, inbox, rel, &job, attempts, &err, v, started).await;
        }
        Ok(Err(e)) => {
            tracing::error!(input = %rel.display(), code = e.code(), "cannot write the cut-out: {e}; the input stays in the inbox and is tried again later");
            return FileResult::Trouble(e.to_string());
        }
        Err(e) => return FileResult::Trouble(e),
    }
    rec.attempts = attempts;
    rec.output = Some(lossy(&output_path));
    rec.remote_job = remote_job;
    rec.credits = credits;
    succeed(ctx, inbox, rel, &job, rec, started).await
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

async fn succeed(
    ctx: &Ctx,
    inbox: &Inbox,
    rel: &Path,
    job: &Job,
    mut rec: Record,
    started: Instant,
) -> FileResult {
    rec.event = "succeeded".into();
    rec.ts = now_rfc3339();
    rec.duration_ms = started.elapsed().as_millis() as u64;
    let archive = (inbox.after_success == AfterSuccess::Archive).then(|| inbox.archive.join(rel));
    let (output, ms) = (rec.output.clone().unwrap_or_default(), rec.duration_ms);
    if let Err(e) = decide_and_finish(ctx, job.id, Outcome::Succeeded, rec, archive, None).await {
        return FileResult::Trouble(e);
    }
    tracing::info!(input = %rel.display(), output, ms, "succeeded");
    FileResult::Succeeded
}

async fn duplicate(
    ctx: &Ctx,
    inbox: &Inbox,
    rel: &Path,
    job: Job,
    earlier: Job,
    v: &Validated,
    started: Instant,
) -> FileResult {
    let Some(earlier_out) = earlier.output.clone() else {
        return FileResult::Trouble("duplicate without an earlier output".into());
    };
    let natural = output::output_base(inbox, rel);
    let same_kind = earlier_out.extension() == natural.extension();
    // Reuse: when the earlier cut-out already sits at this input's natural
    // name, nothing is written; otherwise a copy is placed at this input's
    // own name (converted if the format differs).
    let out_path = if same_kind && earlier_out == natural {
        earlier_out.clone()
    } else {
        // A name reserved before a restart is kept (the copy may be there
        // already: writing it again is a no-op).
        let reserved = match job.output.clone() {
            Some(p) => p,
            None => {
                let (store, id) = (ctx.store.clone(), job.id);
                match blocking("reserve output", move || {
                    store.reserve_output(id, output_naming(natural))
                })
                .await
                {
                    Ok(Ok(p)) => p,
                    Ok(Err(e)) => return FileResult::Trouble(e.to_string()),
                    Err(e) => return FileResult::Trouble(e),
                }
            }
        };
        let (src, dst, fmt, q) = (
            earlier_out.clone(),
            reserved.clone(),
            inbox.output_format,
            inbox.webp_quality,
        );
        let copied = blocking("copy output", move || -> Result<(), String> {
            let bytes = std::fs::read(&src)
                .map_err(|e| format!("cannot read earlier cut-out {}: {e}", src.display()))?;
            let kind = validate::sniff(&bytes).map_err(|e| e.to_string())?;
            let cut = crate::provider::Cutout::Encoded {
                bytes: bytes.into(),
                format: kind,
            };
            let enc = output::encode(cut, fmt, q).map_err(|e| e.to_string())?;
            match output::write_output(&dst, &enc) {
                Ok(()) => Ok(()),
                Err(output::OutputError::Fs(e))
                    if e.source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        match copied {
            Ok(Ok(())) => reserved,
            Ok(Err(e)) | Err(e) => return FileResult::Trouble(e),
        }
    };
    let mut rec = base_record(inbox, rel, &job, Some(v));
    rec.event = "duplicate".into();
    rec.output = Some(lossy(&out_path));
    rec.duplicate_of = Some(earlier.id);
    rec.reason = Some(format!(
        "same picture (sha256) as job {} ({}); its cut-out was reused, nothing was submitted",
        earlier.id,
        earlier.rel_path.display()
    ));
    rec.duration_ms = started.elapsed().as_millis() as u64;
    let archive = (inbox.after_success == AfterSuccess::Archive).then(|| inbox.archive.join(rel));
    if let Err(e) = decide_and_finish(ctx, job.id, Outcome::Duplicate, rec, archive, None).await {
        return FileResult::Trouble(e);
    }
    tracing::info!(input = %rel.display(), earlier = earlier.id, "duplicate: reused the earlier cut-out");
    FileResult::Duplicate
}

async fn reject(
    ctx: &Ctx,
    inbox: &Inbox,
    rel: &Path,
    sha: Option<&str>,
    st: Option<FileStat>,
    why: Rejection,
    started: Instant,
) -> FileResult {
    if ctx.dry_run {
        return FileResult::Rejected(format!("{}: {why}", why.code()));
    }
    let (store, name, r, s) = (
        ctx.store.clone(),
        inbox.name.clone(),
        rel.to_path_buf(),
        sha.map(str::to_string),
    );
    let job = match blocking("record rejection", move || {
        store.insert_untracked(
            &name,
            &r,
            s.as_deref(),
            st.map(|s| s.size),
            st.map(|s| s.mtime_ns),
        )
    })
    .await
    {
        Ok(Ok(j)) => j,
        Ok(Err(e)) => return FileResult::Trouble(e.to_string()),
        Err(e) => return FileResult::Trouble(e),
    };
    let mut rec = base_record(inbox, rel, &job, None);
    rec.event = "rejected".into();
    rec.provider = None;
    rec.code = Some(why.code().into());
    rec.reason = Some(format!("{why}; {}", why.hint()));
    rec.duration_ms = started.elapsed().as_millis() as u64;
    let target = Some(inbox.rejected.join(rel));
    if let Err(e) = decide_and_finish(
        ctx,
        job.id,
        Outcome::Rejected,
        rec,
        target,
        Some(why.hint()),
    )
    .await
    {
        return FileResult::Trouble(e);
    }
    tracing::warn!(input = %rel.display(), code = why.code(), "rejected: {why}");
    FileResult::Rejected(format!("{}: {why}", why.code()))
}

#[allow(clippy::too_many_arguments)]
async fn fail(
    ctx: &Ctx,
    inbox: &Inbox,
    rel: &Path,
    job: &Job,
    attempts: u32,
    err: &ProviderError,
    v: &Validated,
    started: Instant,
) -> FileResult {
    let mut rec = base_record(inbox, rel, job, Some(v));
    rec.event = "failed".into();
    rec.attempts = attempts;
    rec.code = Some(err.code().into());
    rec.reason = Some(format!(
        "{err} (after {attempts} attempt{})",
        if attempts == 1 { "" } else { "s" }
    ));
    rec.duration_ms = started.elapsed().as_millis() as u64;
    let hint = "check the reason; drop the file into the inbox again to retry it";
    let target = Some(inbox.failed.join(rel));
    if let Err(e) = decide_and_finish(ctx, job.id, Outcome::Failed, rec, target, Some(hint)).await {
        return FileResult::Trouble(e);
    }
    tracing::error!(input = %rel.display(), code = err.code(), attempts, "failed: {err}");
    FileResult::Failed(format!("{}: {err}", err.code()))
}

/// Commit the decision (reserving where the input goes: `move_base` and
/// its numbered variants, None for delete/keep), then run the finishing
/// steps.
async fn decide_and_finish(
    ctx: &Ctx,
    id: i64,
    outcome: Outcome,
    mut rec: Record,
    move_base: Option<PathBuf>,
    hint: Option<&str>,
) -> Result<(), String> {
    let store = ctx.store.clone();
    blocking("record decision", move || {
        let out = rec.output.clone().map(PathBuf::from);
        let (code, reason) = (rec.code.clone(), rec.reason.clone());
        let naming = move_base.map(|base| Naming {
            base,
            candidate: fsutil::numbered,
            // rejected/ and failed/ hold a reason file beside each input
            also_free: |p| std::fs::symlink_metadata(output::reason_path(p)).is_err(),
        });
        store.decide(id, outcome, out, code, reason, naming, move |moved| {
            if let Some(p) = moved {
                rec.moved_to = Some(lossy(p));
            }
            serde_json::to_string(&rec).map_err(|e| e.to_string())
        })
    })
    .await?
    .map_err(|e| e.to_string())?;
    let (store, audit, cfg) = (ctx.store.clone(), ctx.audit.clone(), ctx.cfg.clone());
    let hint = hint.map(str::to_string);
    blocking("finish job", move || {
        finish_job(&cfg, &store, &audit, id, hint.as_deref(), true)
    })
    .await?
    .map_err(|e| e.to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Output(#[from] output::OutputError),
    #[error(transparent)]
    Fs(#[from] fsutil::FsError),
    #[error("job {0} has no prepared audit record")]
    NoRecord(i64),
}

/// The idempotent finishing steps of a decided job: reason file, audit
/// line, input disposition, done. Safe to run again after a crash at any
/// point. `fresh`: the decision was committed just now by this process, so
/// its audit line cannot be in the file yet (no need to search the file's
/// tail — that search is only for recovery).
pub fn finish_job(
    cfg: &Config,
    store: &Store,
    audit: &Audit,
    id: i64,
    hint: Option<&str>,
    fresh: bool,
) -> Result<(), FinishError> {
    let Some(job) = store.get(id)? else {
        return Ok(());
    };
    let Some(outcome) = job.outcome else {
        return Ok(());
    };
    if !job.active {
        return Ok(());
    }
    let Some(inbox) = cfg.inboxes.iter().find(|i| i.name == job.inbox) else {
        // The inbox was removed from the config: nothing safe to move.
        store.finish(id, false)?;
        return Ok(());
    };
    let record_text = job.record.clone().ok_or(FinishError::NoRecord(id))?;
    let input = inbox.path.join(&job.rel_path);
    let input_here = std::fs::symlink_metadata(&input)
        .ok()
        .map(|m| stat_of(&m))
        .filter(|st| match (job.size, job.mtime_ns) {
            (Some(size), Some(mt)) => st.size == size && st.mtime_ns == mt,
            _ => true,
        });

    // 1. reason file beside where the input goes (rejected/failed).
    if matches!(outcome, Outcome::Rejected | Outcome::Failed) {
        if let Some(target) = &job.move_to {
            let rel = lossy(&job.rel_path);
            let ts = now_rfc3339();
            let reason = job.reason.clone().unwrap_or_default();
            let code = job.reason_code.clone().unwrap_or_default();
            let default_hint = match outcome {
                Outcome::Rejected => "convert or fix the file and drop it into the inbox again",
                _ => "check the reason; drop the file into the inbox again to retry it",
            };
            output::write_reason(
                target,
                &ReasonFile {
                    file: &rel,
                    outcome: outcome.as_str(),
                    code: &code,
                    reason: &reason,
                    hint: hint.unwrap_or(default_hint),
                    ts: &ts,
                    sha256: job.sha256.as_deref(),
                    attempts: job.attempts,
                    provider: job.provider.as_deref(),
                },
            )?;
        }
    }
    // 2. the audit line, exactly once. Its "audited" mark is committed
    // with `finish` (one commit less per picture); a crash in between is
    // covered by the search of the audit file on the next finish.
    if !job.audited && (fresh || !audit.contains_job(id, outcome.as_str())?) {
        audit.append_json(&record_text)?;
    }
    // 3. the input goes to its one place.
    if let Err(e) = dispose_input(inbox, &job, outcome, &input, input_here.is_some()) {
        // Finished later (full disk, read-only folder): remember the audit
        // line is written so that retry needs no search.
        if !job.audited {
            let _ = store.mark_audited(id);
        }
        return Err(e.into());
    }
    store.finish(id, true)?;
    Ok(())
}

/// Move or delete the input as its outcome says (nothing when it is no
/// longer there, or its target already is).
fn dispose_input(
    inbox: &Inbox,
    job: &Job,
    outcome: Outcome,
    input: &Path,
    input_here: bool,
) -> Result<(), fsutil::FsError> {
    if !input_here {
        return Ok(());
    }
    match (outcome, &job.move_to) {
        (_, Some(target)) if std::fs::symlink_metadata(target).is_err() => {
            fsutil::move_durably(input, target)
        }
        (Outcome::Succeeded | Outcome::Duplicate, None)
            if inbox.after_success == AfterSuccess::Delete =>
        {
            fsutil::remove_durably(input)
        }
        _ => Ok(()),
    }
}

/// At start-up: finish what a crash left decided-but-unfinished, and drop
/// in-progress jobs whose input has gone. Returns (finished, abandoned).
pub fn recover(cfg: &Config, store: &Store, audit: &Audit) -> Result<(usize, usize), FinishError> {
    let mut finished = 0;
    for job in store.decided_unfinished()? {
        match finish_job(cfg, store, audit, job.id, None, false) {
            Ok(()) => finished += 1,
            Err(e) => {
                tracing::error!(job = job.id, input = %job.rel_path.display(), "cannot finish an interrupted job yet: {e}")
            }
        }
    }
    let mut abandoned = 0;
    for job in store.undecided()? {
        let gone = match cfg.inboxes.iter().find(|i| i.name == job.inbox) {
            Some(ib) => std::fs::symlink_metadata(ib.path.join(&job.rel_path)).is_err(),
            None => true,
        };
        if gone {
            store.abandon(job.id, "the input disappeared before it was finished")?;
            tracing::warn!(job = job.id, input = %job.rel_path.display(), "an unfinished job's input is gone; dropping the job");
            abandoned += 1;
        }
    }
    Ok((finished, abandoned))
}
