//! The CLI verbs (`run`, `process`, `check`, `status`, `models`): load and
//! check the config, set up logging, the state store, the audit log and the
//! providers, then hand over to the queue. Every verb returns its exit
//! status or a typed [`CommandError`] that carries one; `main.rs` prints it.
//!
//! One file per verb: `daemon` (run), `process` (inbox batches), `oneshot`
//! (`process SRC… --out DIR` / `-o FILE`), `check`, `status`; `progress`
//! holds the progress display and summary; this file what they share.
//!
//! Must not: contain pipeline logic (stages live in their own modules), or
//! print errors (the binary does, once).

mod check;
mod daemon;
mod error;
mod oneshot;
mod process;
mod progress;
mod status;

use std::path::PathBuf;
use std::sync::Arc;

use crate::audit::Audit;
use crate::cli::{Cli, Command, ConfigArg};
use crate::config::{self, Config};
use crate::pipeline;
use crate::provider::{self, Provider};
use crate::store::Store;

pub use error::{exit, CommandError, CommandResult, ErrorKind};

/// Run one parsed command; returns its exit status, or why it could not run.
pub fn run(cli: Cli) -> CommandResult {
    match cli.command {
        Command::Run { config } => with_config(&config, |cfg, loaded| {
            daemon::run_daemon(cfg, loaded, &config)
        }),
        Command::Process {
            config,
            dry_run,
            paths,
            oneshot,
        } => with_config(&config, |cfg, _| {
            if oneshot.active() {
                oneshot::run(cfg, &config, dry_run, &paths, &oneshot)
            } else if oneshot.state.is_some() || oneshot.provider.is_some() {
                Err(CommandError::usage(
                    "--state and --provider go with --out DIR or -o FILE",
                ))
            } else {
                process::run_batch(cfg, &config, dry_run, &paths)
            }
        }),
        Command::Check { config } => with_config(&config, |cfg, _| check::check(cfg, &config)),
        Command::Status { config, errors } => {
            with_config(&config, |cfg, _| status::status(cfg, errors))
        }
        Command::Models(args) => Ok(crate::models::command::main(args)),
    }
}

/// Where the running config came from, for reloads.
struct Loaded {
    /// The file (None: built-in defaults).
    path: Option<PathBuf>,
    /// Its text, as read.
    text: String,
}

fn with_config(arg: &ConfigArg, f: impl FnOnce(Config, Loaded) -> CommandResult) -> CommandResult {
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

fn runtime() -> Result<tokio::runtime::Runtime, std::io::Error> {
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
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before the
    // runtime's threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Everything `run` and `process` share: folders, store, audit, providers.
struct Setup {
    store: Store,
    audit: Arc<Audit>,
    providers: std::collections::BTreeMap<String, Arc<dyn Provider>>,
}

fn setup(cfg: &Config) -> Result<Setup, CommandError> {
    let created = config::prepare_folders(cfg).map_err(|e| CommandError::config(e.to_string()))?;
    for line in created {
        tracing::info!("{line}");
    }
    open_state(cfg)
}

/// Providers, store and audit log, for folders already prepared.
fn open_state(cfg: &Config) -> Result<Setup, CommandError> {
    let providers = provider::build::build_all(cfg, |_| None).map_err(CommandError::config)?;
    let store = Store::open(&cfg.state_dir).map_err(|e| CommandError::runtime(e.to_string()))?;
    let audit = Audit::open(&cfg.state_dir).map_err(|e| CommandError::runtime(e.to_string()))?;
    Ok(Setup {
        store,
        audit: Arc::new(audit),
        providers,
    })
}

fn origin(cfg: &Config) -> String {
    cfg.source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "built-in defaults".into())
}

fn recover(cfg: &Config, s: &Setup) {
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

fn shutdown_on_signals(tx: tokio::sync::watch::Sender<bool>) {
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
