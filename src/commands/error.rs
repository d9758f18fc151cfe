//! The one error type of the CLI verbs: what went wrong, the exit status it
//! maps to, and an optional hint. The binary (`main.rs`) adds context and
//! prints it.
//!
//! Must not: print anything itself or compare messages (the kind decides
//! the exit status).

/// Exit statuses (documented in README.md and `cutout process --help`).
pub mod exit {
    pub const OK: i32 = 0;
    pub const FILES_NOT_OK: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const CONFIG: i32 = 3;
    pub const RUNTIME: i32 = 4;
}

/// What kind of failure stopped a command; decides the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad command line (exit 2).
    Usage,
    /// Bad config, or a folder or provider it names (exit 3).
    Config,
    /// Anything else: state folder locked or unreadable, runtime (exit 4).
    Runtime,
}

impl ErrorKind {
    /// Stable kebab-case name, for the last line `main` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Usage => "usage-error",
            ErrorKind::Config => "config-error",
            ErrorKind::Runtime => "runtime-error",
        }
    }
}

/// A command that could not do its work.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub kind: ErrorKind,
    pub message: String,
    /// One more line telling what to do, when that helps.
    pub hint: Option<String>,
}

impl CommandError {
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, message)
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    pub fn runtime(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Runtime, message)
    }
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            hint: None,
        }
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    /// The exit status this error maps to.
    pub fn code(&self) -> i32 {
        match self.kind {
            ErrorKind::Usage => exit::USAGE,
            ErrorKind::Config => exit::CONFIG,
            ErrorKind::Runtime => exit::RUNTIME,
        }
    }
}

/// What a command returns: its exit status when it ran (0, or 1 when some
/// files were not ok), or why it could not.
pub type CommandResult = Result<i32, CommandError>;
