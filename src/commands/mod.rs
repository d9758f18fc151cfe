//! The CLI verbs (`run`, `process`, `check`, `status`, `models`): load and
//! check the config, set up logging, the state store, the audit log and the
//! providers, then hand over to the queue. Every verb returns its exit
//! status or a typed [`CommandError`] that carries one; `main.rs` prints it.
//!
//! One file per verb: `daemon` (run), `process` (inbox batches), `oneshot`
//! (`process SRC… --out DIR` / `-o FILE`), `check`, `status`; `progress`
//! holds the progress display and summary; `shared` what they share; this
//! file only dispatches.
//!
//! Must not: contain pipeline logic (stages live in their own modules), or
//! print errors (the binary does, once).

mod check;
mod daemon;
mod error;
mod oneshot;
mod process;
mod progress;
mod shared;
mod status;

use crate::cli::{Cli, Command};

pub use error::{exit, CommandError, CommandResult, ErrorKind};
use shared::with_config;

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
            } else if oneshot.state.is_some()
                || oneshot.provider.is_some()
                || oneshot.preset.is_some()
                || oneshot.format.is_some()
            {
                Err(CommandError::usage(
                    "--state, --provider, --preset and --format go with --out DIR or -o FILE (configured inboxes take [[inbox.output]] tables instead)",
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
