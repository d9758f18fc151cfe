//! The `Provider` trait: the one seam between the queue and an engine that
//! removes backgrounds (the built-in `local` engine, hosted APIs).
//!
//! Owns: the request/response types that cross that seam, the typed error
//! that tells the queue whether to retry, pause the provider or fail the file,
//! and building providers from the validated config.
//!
//! Must not: touch the inbox/outbox (the output stage does), retry on its own
//! (the queue owns retries and backoff), or log secrets.

pub mod local;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::config::{OutputFormat, ProviderConfig, ProviderKind};
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
    /// Per-inbox provider options (`options = { … }` in the `[[inbox]]`).
    pub options: &'a toml::Table,
    /// Durable per-job memory (e.g. a remote job id) that survives restarts.
    pub journal: &'a dyn JobJournal,
}

/// Durable memory of one job, kept in the state database by the queue.
pub trait JobJournal: Send + Sync {
    /// The remote job id remembered from an earlier attempt or run, if any.
    fn remote_job(&self) -> Option<String>;
    /// Remember a remote job id durably *before* waiting on it, so that a
    /// restart resumes it instead of paying again.
    fn set_remote_job(&self, id: &str) -> Result<(), String>;
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

/// The result of one successful call.
#[derive(Debug)]
pub struct Outcome {
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
        code: &'static str,
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
    /// This file can never succeed with this provider (e.g. 400 validation).
    #[error("{message}")]
    Permanent { code: &'static str, message: String },
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
    pub fn code(&self) -> &'static str {
        match self {
            ProviderError::Transient { code, .. } => code,
            ProviderError::RateLimited { .. } => "provider-rate-limited",
            ProviderError::QuotaExhausted { .. } => "provider-quota-exhausted",
            ProviderError::Auth { .. } => "provider-auth-failed",
            ProviderError::Permanent { code, .. } => code,
        }
    }

    pub fn disposition(&self) -> Disposition {
        match self {
            ProviderError::Transient { .. } | ProviderError::RateLimited { .. } => {
                Disposition::Retry
            }
            ProviderError::QuotaExhausted { .. } | ProviderError::Auth { .. } => {
                Disposition::PauseProvider
            }
            ProviderError::Permanent { .. } => Disposition::Fail,
        }
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
    async fn remove_background(&self, req: Request<'_>) -> Result<Outcome, ProviderError>;
    /// Check reachability, key and credits (for `cutout check`).
    async fn health(&self) -> Health;
    /// Check that per-inbox `options` are ones this provider accepts.
    fn check_options(&self, options: &toml::Table) -> Result<(), String> {
        match options.keys().next() {
            None => Ok(()),
            Some(k) => Err(format!(
                "provider kind `{}` takes no options, but `{k}` was given",
                self.kind()
            )),
        }
    }
}

/// Build the provider for one `[providers.NAME]` entry.
pub fn build(name: &str, cfg: &ProviderConfig) -> Result<Arc<dyn Provider>, BuildError> {
    match &cfg.kind {
        ProviderKind::Local(local) => Ok(Arc::new(local::LocalProvider::new(name, local)?)),
    }
}

/// A provider that cannot be built from its config.
#[derive(Debug, thiserror::Error)]
#[error("provider `{provider}`: {message}")]
pub struct BuildError {
    pub provider: String,
    pub message: String,
}
