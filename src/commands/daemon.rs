//! `cutout run`: the daemon. Binds the HTTP endpoint, wires SIGHUP reloads,
//! the service-manager heartbeat and shutdown signals, then runs the queue
//! until told to stop.
//!
//! Must not: contain pipeline logic (the queue and pipeline own that).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::error::{exit, CommandError, CommandResult};
use super::shared::{origin, recover, runtime, setup, shutdown_on_signals, Loaded, Setup};
use crate::cli::ConfigArg;
use crate::config::{self, Config};
use crate::pipeline::Ctx;
use crate::queue::{self, Mode, Tally};
use crate::service::Heartbeat;

type HttpTask = tokio::task::JoinHandle<Result<(), crate::http::HttpError>>;

pub(super) fn run_daemon(cfg: Config, loaded: Loaded, arg: &ConfigArg) -> CommandResult {
    let _log = crate::logging::init(arg.log.as_deref(), cfg.log_dir.as_deref());
    let s = setup(&cfg)?;
    let rt = runtime()
        .map_err(|e| CommandError::runtime(format!("cannot start the async runtime: {e}")))?;
    recover(&cfg, &s);
    describe_inboxes(&cfg);
    for name in s.providers.keys() {
        crate::metrics::global().register_provider(name);
    }
    let result = rt.block_on(serve(Arc::new(cfg), s, loaded));
    rt.shutdown_timeout(Duration::from_secs(2));
    result
}

async fn serve(cfg: Arc<Config>, s: Setup, loaded: Loaded) -> CommandResult {
    let (tx, rx) = tokio::sync::watch::channel(false);
    shutdown_on_signals(tx);
    let heartbeat = Arc::new(Heartbeat::new());
    let grace_ms = Arc::new(AtomicU64::new(cfg.shutdown_grace.as_millis() as u64));
    tell_manager_when_stopping(rx.clone(), heartbeat.clone(), grace_ms.clone());
    let (stop_heartbeat, stop_grace) = (heartbeat.clone(), grace_ms.clone());
    let ctx = Arc::new(Ctx {
        cfg: cfg.clone(),
        store: s.store.clone(),
        audit: s.audit.clone(),
        providers: s.providers.clone(),
        dry_run: false,
        shutdown: rx.clone(),
        engine_slots: Ctx::engine_slots(cfg.queue.concurrency),
    });
    // The HTTP endpoint binds before READY=1: a bad address fails the start.
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    // On the shared PostgreSQL state the review page shows every
    // instance's outcomes; of its actions only approve and flag work there
    // (docs/scale-out.md).
    let review = match (cfg.http.listen, cfg.http.review) {
        (Some(_), true) => {
            Some(crate::review::start(cfg.clone(), s.store.clone(), &s.audit, rx.clone()).await)
        }
        _ => None,
    };
    let http_task = start_http(&ctx, &heartbeat, review, http_stopped).await?;
    let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel();
    let reloader = crate::reload::Reloader {
        path: loaded.path,
        digests: config::provider_digests(&loaded.text),
        current: ctx.clone(),
        queue: reload_tx,
        grace_ms,
    };
    if let Err(e) = crate::reload::spawn_on_sighup(reloader, rx.clone()) {
        tracing::error!("cannot listen for SIGHUP ({e}); config reloads need a restart");
    }
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let supervisor = tokio::spawn(crate::service::supervise(heartbeat.clone(), ready_rx));
    tracing::info!(state = %cfg.state_dir.display(), concurrency = cfg.queue.concurrency, "cutout is running; stop with Ctrl-C or SIGTERM, reload the config with SIGHUP");
    let hooks = queue::Hooks {
        reloads: Some(reload_rx),
        heartbeat: Some(heartbeat),
        ready: Some(ready_tx),
    };
    let t = queue::run_with(ctx, Mode::Daemon, None, hooks).await;
    // The queue can be done before the task above got to run.
    announce_stopping(&stop_heartbeat, &stop_grace);
    supervisor.abort();
    stop_http(http_task, http_stop).await;
    log_stopped(&t);
    Ok(exit::OK)
}

/// Bind `/healthz` and `/metrics` when `[http] listen` is set.
async fn start_http(
    ctx: &Arc<Ctx>,
    heartbeat: &Arc<Heartbeat>,
    review: Option<Arc<crate::review::Review>>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> Result<Option<HttpTask>, CommandError> {
    let cfg = &ctx.cfg;
    let Some(addr) = cfg.http.listen else {
        return Ok(None);
    };
    if ctx.store.is_shared() && cfg.http.actions {
        tracing::warn!("{}: `[http] actions` on the shared PostgreSQL state: approve and flag work; retry, redo and confirm are refused (they move files another instance may be handling; docs/scale-out.md)", origin(cfg));
    }
    let actions = Some(review_actions(ctx).await?);
    match crate::http::bind(addr).await {
        Ok(listener) => {
            let at = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| addr.to_string());
            let page = if review.is_some() {
                ", the review page at /"
            } else {
                ""
            };
            tracing::info!("http: /healthz and /metrics{page} listening on http://{at}");
            let state = crate::http::HttpState {
                heartbeat: heartbeat.clone(),
                review,
                actions,
            };
            Ok(Some(tokio::spawn(crate::http::serve(
                listener,
                state,
                async move {
                    let _ = stopped.await;
                },
            ))))
        }
        // Not a config error: a busy port may free up, so the service
        // manager should try again.
        Err(e) => Err(CommandError::runtime(format!("{}: {e}", origin(cfg)))),
    }
}

/// The review page's actions: the token read (a bad `token_file` stops
/// the start, exit 3), and what a crash left half-done finished first.
async fn review_actions(
    ctx: &Arc<Ctx>,
) -> Result<Arc<crate::review::actions_ops::Actions>, CommandError> {
    let auth = crate::review::auth::Auth::load(&ctx.cfg.http)
        .map_err(|e| CommandError::config(format!("{}: {e}", origin(&ctx.cfg))))?;
    if auth.enabled {
        let c = ctx.clone();
        let recover = move || crate::review::actions_recover::recover(&c);
        if let Err(e) = crate::blocking::run("review: recover actions", recover).await {
            tracing::error!("{e}");
        }
        let how = if auth.needs_token() {
            "token or login required"
        } else {
            "loopback, no token"
        };
        tracing::info!("http: review actions are on ({how})");
    }
    Ok(Arc::new(crate::review::actions_ops::Actions::new(
        auth,
        ctx.clone(),
    )))
}

async fn stop_http(task: Option<HttpTask>, stop: tokio::sync::oneshot::Sender<()>) {
    let Some(task) = task else {
        return;
    };
    let _ = stop.send(());
    match tokio::time::timeout(Duration::from_secs(2), task).await {
        Ok(Ok(Err(e))) => tracing::warn!("{e}"),
        Ok(_) => {}
        Err(_) => tracing::warn!("http: open connections did not close; stopping anyway"),
    }
}

fn log_stopped(t: &Tally) {
    tracing::info!(
        succeeded = t.succeeded,
        duplicates = t.duplicates,
        rejected = t.rejected,
        failed = t.failed,
        left_queued = t.interrupted,
        "stopped"
    );
}

fn describe_inboxes(cfg: &Config) {
    for ib in &cfg.inboxes {
        tracing::info!(
            "inbox {} → {} ({}, provider {}, settle {}, after success: {:?})",
            ib.path.display(),
            ib.outbox.display(),
            ib.output_format.extension(),
            ib.provider,
            humantime::format_duration(ib.settle),
            ib.after_success
        );
    }
}

/// `/healthz` turns 503 and the service manager gets `STOPPING=1`, with its
/// stop timeout extended to cover the grace period; once only.
fn announce_stopping(heartbeat: &Heartbeat, grace_ms: &AtomicU64) {
    if heartbeat.set_stopping() {
        let grace = Duration::from_millis(grace_ms.load(Ordering::Relaxed));
        crate::service::stopping(grace);
    }
}

/// Announce the stop as soon as shutdown begins (the queue may still be
/// finishing in-flight work for a while).
fn tell_manager_when_stopping(
    mut rx: tokio::sync::watch::Receiver<bool>,
    heartbeat: Arc<Heartbeat>,
    grace_ms: Arc<AtomicU64>,
) {
    tokio::spawn(async move {
        if rx.wait_for(|s| *s).await.is_ok() {
            announce_stopping(&heartbeat, &grace_ms);
        }
    });
}
