//! The `Provider` trait: the one seam between the queue and an engine that
//! removes backgrounds (the built-in `local` engine, hosted APIs).
//!
//! Owns: the request/response types that cross that seam, and the typed
//! error that tells the pipeline whether to retry, pause the provider or
//! fail the file. Building providers from the config is `build`'s.
//!
//! Must not: touch the inbox/outbox (the output stage does), retry a file on
//! its own (the pipeline's engine attempt owns retries and backoff; a hosted
//! provider's `gate` only paces requests and cools down after 429s), or log
//! secrets.

pub mod build;
pub mod gate;
pub mod hosted;
pub mod http;
pub mod key;
pub mod local;
pub mod pacer;
pub mod rate;
pub mod rembg_com;
pub mod rembg_server;
pub mod remove_bg;
pub mod shared_limit;
pub mod upload;
pub mod url_guard;
pub mod verging;
mod verging_answers;
pub mod verify;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::config::{InboxOptions, OutputFormat};
use crate::job::Code;
use crate::validate::{ImageKind, Validated};

/// What a provider is given for one picture.
pub struct Request<'a> {
    /// The validated input: original bytes, sniffed type, dimensions and
    /// (for engines that want pixels) the decoded, EXIF-oriented image.
    pub input: &'a Validated,
    /// File name of the input (no folders), for providers that want one.
    pub file_name: &'a str,
    /// The output format the inbox wants; a provider may return another one
    /// and the output stage converts.
    pub output_format: OutputFormat,
    /// Per-inbox provider options (`options = { … }` in the `[[inbox]]`),
    /// checked for this provider's kind when the config was read.
    pub options: &'a InboxOptions,
    /// Durable per-job memory (e.g. a remote job id) that survives restarts.
    pub journal: &'a dyn JobJournal,
}

/// Durable memory of one job, kept in the state database by the queue.
#[async_trait]
pub trait JobJournal: Send + Sync {
    /// The remote job id remembered from an earlier attempt or run, if any.
    fn remote_job(&self) -> Option<String>;
    /// How long ago the remembered remote job was created, if known (its
    /// time limit counts from then, across restarts).
    fn remote_job_age(&self) -> Option<std::time::Duration> {
        None
    }
    /// Remember a remote job id durably *before* waiting on it, so that a
    /// restart resumes it instead of paying again. (Async: the commit is
    /// waited for off the runtime's threads.)
    async fn set_remote_job(&self, id: &str) -> Result<(), String>;
}

/// A cut-out as a provider hands it back.
#[derive(Debug)]
pub enum Cutout {
    /// Encoded bytes exactly as received (written untouched when the format
    /// matches the inbox's `output_format`).
    Encoded { bytes: Bytes, format: ImageKind },
    /// Pixels to be encoded by the output stage (ICC profile carried along).
    Pixels {
        image: image::RgbaImage,
        icc: Option<Vec<u8>>,
    },
}

/// The answer to one successful call.
#[derive(Debug)]
pub struct Response {
    pub cutout: Cutout,
    /// The provider's job id, where its API has one (for the audit line).
    pub remote_job: Option<String>,
    /// Credits this picture cost, when known.
    pub credits_used: Option<f64>,
}

/// What went wrong, classified by what the queue should do about it.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Worth another attempt later (5xx, timeout, reset, truncated body).
    #[error("{message}")]
    Transient {
        code: Code,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The provider asked us to slow down (a short-term 429/503).
    #[error("rate limited: {message}")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Out of credits or at a daily/monthly limit: pause the provider, keep
    /// its files queued.
    #[error("quota exhausted: {message}")]
    QuotaExhausted { message: String },
    /// The key was refused: pause the provider, keep files queued.
    #[error("authentication failed: {message}")]
    Auth { message: String },
    /// The provider cannot be reached at all (connection refused, name not
    /// resolved, connect timeout, TLS handshake failed): an outage, not the
    /// file's fault. Pause the provider, keep files queued.
    #[error("provider unreachable: {message}")]
    Unavailable { message: String },
    /// This file can never succeed with this provider (e.g. 400 validation).
    #[error("{message}")]
    Permanent { code: Code, message: String },
    /// The provider said "success" but sent something that is not the
    /// asked-for picture (an HTML page, bytes that do not decode, an opaque
    /// picture where transparency was asked for). Retried, since it may be
    /// a glitch, but only once: a retry may be charged again.
    #[error("{message}")]
    BadResult { message: String },
}

/// What the queue does with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Retry,
    PauseProvider,
    Fail,
}

impl ProviderError {
    /// Stable kebab-case code for reason files, audit lines and metrics.
    pub fn code(&self) -> Code {
        match self {
            ProviderError::Transient { code, .. } => *code,
            ProviderError::RateLimited { .. } => Code::ProviderRateLimited,
            ProviderError::QuotaExhausted { .. } => Code::ProviderQuotaExhausted,
            ProviderError::Auth { .. } => Code::ProviderAuthFailed,
            ProviderError::Unavailable { .. } => Code::ProviderUnreachable,
            ProviderError::Permanent { code, .. } => *code,
            ProviderError::BadResult { .. } => Code::ProviderBadResult,
        }
    }

    pub fn disposition(&self) -> Disposition {
        match self {
            ProviderError::Transient { .. }
            | ProviderError::RateLimited { .. }
            | ProviderError::BadResult { .. } => Disposition::Retry,
            ProviderError::QuotaExhausted { .. }
            | ProviderError::Auth { .. }
            | ProviderError::Unavailable { .. } => Disposition::PauseProvider,
            ProviderError::Permanent { .. } => Disposition::Fail,
        }
    }

    /// How many attempts this kind of error may use, given the configured
    /// `retry.max_attempts`: bad results get at most two (each may be paid).
    pub fn attempt_cap(&self, max_attempts: u32) -> u32 {
        match self {
            ProviderError::BadResult { .. } => max_attempts.min(2),
            _ => max_attempts,
        }
    }

    /// Whether this attempt should not count against `max_attempts`: the
    /// provider asked us to slow down, which says nothing about the file.
    pub fn is_free_retry(&self) -> bool {
        matches!(self, ProviderError::RateLimited { .. })
    }

    /// A server-given delay before the next attempt, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Transient { retry_after, .. }
            | ProviderError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// What `cutout check` prints about one provider.
#[derive(Debug, Default, Clone)]
pub struct Health {
    /// One line per fact, e.g. "reachable", "key accepted", "credits: 42".
    pub lines: Vec<String>,
    /// False when the provider cannot work as configured.
    pub ok: bool,
}

/// Why a provider stopped taking work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseReason {
    /// No credits left, or the plan's daily/monthly limit is reached.
    Quota,
    /// The API key was refused.
    Auth,
    /// The provider cannot be reached (an outage).
    Unreachable,
}

impl PauseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::Quota => "out-of-credits",
            PauseReason::Auth => "key-refused",
            PauseReason::Unreachable => "unreachable",
        }
    }
}

/// A provider's pause, as the status shows it.
#[derive(Debug, Clone)]
pub struct PauseInfo {
    pub reason: PauseReason,
    /// What the provider said (no secrets).
    pub message: String,
    pub since: std::time::SystemTime,
}

/// A read-only snapshot of a provider's client state, for status/metrics.
#[derive(Debug, Clone, Default)]
pub struct ProviderStatus {
    /// Set while the provider takes no work (files stay queued).
    pub paused: Option<PauseInfo>,
    /// Credits left at the last check, when known.
    pub credits_left: Option<f64>,
    /// 429 answers seen since start.
    pub rate_limited: u64,
    /// Pictures allowed at once right now (adaptive; ≤ `concurrency`).
    pub concurrency: usize,
    /// Requests per second allowed right now (adaptive; ≤ `requests_per_second`).
    pub requests_per_second: f64,
}

/// A background-removal engine.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The configured name (`[providers.NAME]`).
    fn name(&self) -> &str;
    /// The kind, e.g. `local`.
    fn kind(&self) -> &'static str;
    /// Whether `Request::input.decoded` must hold the pixels.
    fn wants_pixels(&self) -> bool;
    /// Remove the background of one picture.
    async fn remove_background(&self, req: Request<'_>) -> Result<Response, ProviderError>;
    /// Check reachability, key and credits (for `cutout check`).
    async fn health(&self) -> Health;
    /// Whether the provider is paused (out of credits, key refused): the
    /// queue then leaves its files queued instead of starting them. Cheap.
    fn is_paused(&self) -> bool {
        false
    }
    /// A snapshot of the client state (pause, credits, 429s).
    fn status(&self) -> ProviderStatus {
        ProviderStatus::default()
    }
}

/// A provider that cannot be built from its config.
#[derive(Debug, thiserror::Error)]
#[error("provider `{provider}`: {message}")]
pub struct BuildError {
    pub provider: String,
    pub message: String,
}
