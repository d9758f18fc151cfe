//! Logging: human logs to stderr (journald-friendly: no colours or
//! timestamps when stderr is not a terminal or runs under systemd), and
//! daily-rolled files in `log_dir` when set.
//!
//! Must not: log secrets (nothing here formats config values).

use std::io::IsTerminal;
use std::path::Path;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// Keeps the file writer flushing; hold it until exit.
pub struct LogGuard(#[allow(dead_code)] Option<tracing_appender::non_blocking::WorkerGuard>);

pub fn init(filter: Option<&str>, log_dir: Option<&Path>) -> LogGuard {
    let make_filter = || match filter {
        Some(f) => EnvFilter::try_new(f).unwrap_or_else(|_| EnvFilter::new("info")),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let tty = std::io::stderr().is_terminal();
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let stderr_layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(tty)
        .with_target(false);
    let stderr_layer = if journald {
        stderr_layer.without_time().boxed()
    } else {
        stderr_layer.boxed()
    };
    let mut guard = None;
    let file_layer = log_dir.and_then(|dir| {
        let appender = tracing_appender::rolling::Builder::new()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix("cutout")
            .filename_suffix("log")
            .max_log_files(30)
            .build(dir)
            .ok()?;
        let (nb, g) = tracing_appender::non_blocking(appender);
        guard = Some(g);
        Some(
            fmt::layer()
                .with_writer(nb)
                .with_ansi(false)
                .with_filter(make_filter()),
        )
    });
    let _ = tracing_subscriber::registry()
        .with(stderr_layer.with_filter(make_filter()))
        .with(file_layer)
        .try_init();
    LogGuard(guard)
}
