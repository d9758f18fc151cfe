//! What the verbs share: loading the config for a verb, the runtime, the
//! state store and audit log set-up, crash recovery at start, and the
//! shutdown signal. A leaf of `commands` (imports only `error`), so every
//! verb's file can use it without an import cycle.
//!
//! Must not: implement a verb (each has its own file) or print errors.

use std::path::PathBuf;
use std::sync::Arc;

use crate::audit::Audit;
use crate::cli::ConfigArg;
use crate::config::{self, Config};
use crate::pipeline;
use crate::provider::{self, Provider};
use crate::store::{PgOptions, Store};

use super::error::{CommandError, CommandResult};

/// Where the running config came from, for reloads.
pub(super) struct Loaded {
    /// The file (None: built-in defaults).
    pub(super) path: Option<PathBuf>,
    /// Its text, as read.
    pub(super) text: String,
}

pub(super) fn with_config(
    arg: &ConfigArg,
    f: impl FnOnce(Config, Loaded) -> CommandResult,
) -> CommandResult {
    let located = config::locate(arg.config.as_deref());
    match config::load_with_text(located.as_deref()) {
        Ok((cfg, text)) => f(
            cfg,
            Loaded {
                path: located,
                text,
            },
        ),
        Err(e) => {
            let err = CommandError::config(e.to_string());
            Err(if located.is_none() {
                err.with_hint("no config file given (--config, $CUTOUT_CONFIG or $CONFIGURATION_DIRECTORY/cutout.toml); see config.example.toml")
            } else {
                err
            })
        }
    }
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime, std::io::Error> {
    limit_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cutout-worker")
        // Blocking work (reads, hashing, decoding, SQLite, fsync) is short;
        // a bounded pool keeps thread stacks and allocator arenas in check
        // when thousands of files arrive at once.
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
}

/// Upper bound of the blocking thread pool.
const BLOCKING_THREADS: usize = 32;

/// glibc gives every thread that allocates its own arena (up to 8 per core)
/// and each keeps freed picture buffers: resident memory then grows with the
/// number of files seen. Two arenas are plenty for this workload.
pub(super) fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before the
    // runtime's threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Everything `run` and `process` share: folders, store, audit, providers.
pub(super) struct Setup {
    pub(super) store: Store,
    pub(super) audit: Arc<Audit>,
    pub(super) providers: std::collections::BTreeMap<String, Arc<dyn Provider>>,
}

pub(super) fn setup(cfg: &Config) -> Result<Setup, CommandError> {
    let created = config::prepare_folders(cfg).map_err(|e| CommandError::config(e.to_string()))?;
    for line in created {
        tracing::info!("{line}");
    }
    open_state(cfg)
}

/// Providers, store and audit log, for folders already prepared.
pub(super) fn open_state(cfg: &Config) -> Result<Setup, CommandError> {
    if let Some(shared) = &cfg.shared_state {
        // Every instance on this database shares its providers' limits
        // (provider/shared_limit.rs); before the providers are built.
        let o = pg_options(shared)?;
        provider::shared_limit::install(&o.url, o.password.as_deref());
    }
    let providers = provider::build::build_all(cfg, |_| None).map_err(CommandError::config)?;
    let store = open_store(cfg)?;
    let audit = Audit::open_named(&cfg.state_dir, store.instance())
        .map_err(|e| CommandError::runtime(e.to_string()))?;
    Ok(Setup {
        store,
        audit: Arc::new(audit),
        providers,
    })
}

/// The state store: SQLite in `state_dir`, or the shared PostgreSQL state
/// (`[state]`) as this instance.
pub(super) fn open_store(cfg: &Config) -> Result<Store, CommandError> {
    let Some(shared) = &cfg.shared_state else {
        return Store::open(&cfg.state_dir).map_err(|e| CommandError::runtime(e.to_string()));
    };
    Store::open_postgres(&pg_options(shared)?).map_err(|e| CommandError::runtime(e.to_string()))
}

/// How to reach the shared state (the password read now).
pub(super) fn pg_options(shared: &crate::config::SharedState) -> Result<PgOptions, CommandError> {
    Ok(PgOptions {
        url: shared.url.clone(),
        password: shared.password().map_err(CommandError::runtime)?,
        instance: shared.instance.clone(),
        lease: shared.lease,
        connections: shared.connections,
    })
}

pub(super) fn origin(cfg: &Config) -> String {
    cfg.source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "built-in defaults".into())
}

pub(super) fn recover(cfg: &Config, s: &Setup) {
    for ib in &cfg.inboxes {
        for dir in [&ib.outbox, &ib.archive, &ib.rejected, &ib.failed] {
            let n = crate::fsutil::sweep_temps(dir);
            if n > 0 {
                tracing::info!("removed {n} unfinished temp file(s) from {}", dir.display());
            }
        }
    }
    match pipeline::recover(cfg, &s.store, &s.audit) {
        Ok((0, 0)) => {}
        Ok((f, a)) => tracing::info!(finished = f, dropped = a, "recovered interrupted jobs"),
        Err(e) => tracing::error!("recovery: {e}"),
    }
}

pub(super) fn shutdown_on_signals(tx: tokio::sync::watch::Sender<bool>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping (press Ctrl-C again to stop at once)"),
        }
        let _ = tx.send(true);
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second signal: stopping now; unfinished work is resumed at the next start");
        std::process::exit(130);
    });
}
