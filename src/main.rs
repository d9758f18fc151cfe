//! The `cutout` binary: parse the command line, run one command, map the
//! outcome to an exit status (documented in README.md). The only place that
//! uses `anyhow`: a command's typed error gets the command's name as
//! context, is printed once, and its kind picks the exit status.

use anyhow::Context;
use clap::Parser;
use cutout::commands::{exit, CommandError};

fn main() {
    let cli = cutout::cli::Cli::parse();
    let verb = cli.command.verb();
    let code = match cutout::commands::run(cli).with_context(|| format!("cutout {verb}")) {
        Ok(code) => code,
        Err(e) => report(&e),
    };
    std::process::exit(code);
}

/// Print the error (its own message first, unchanged, then the hint and
/// which command stopped) and return its exit status.
fn report(e: &anyhow::Error) -> i32 {
    let Some(cause) = e.downcast_ref::<CommandError>() else {
        eprintln!("error: {e:#}");
        return exit::RUNTIME;
    };
    eprintln!("error: {cause}");
    if let Some(hint) = &cause.hint {
        eprintln!("hint: {hint}");
    }
    eprintln!(
        "{e} stopped ({}, exit status {})",
        cause.kind.as_str(),
        cause.code()
    );
    cause.code()
}
