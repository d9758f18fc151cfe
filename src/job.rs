//! Job: the small plain types every stage shares — what became of one file
//! ([`FileResult`]), how a job ended ([`Outcome`]), the audit line's
//! [`Event`], the typed reason [`Code`] users see in reason files, audit
//! lines and logs, a file's [`FileStat`], and the retry / cool-down
//! schedule ([`Backoff`]).
//!
//! Owns: the kebab-case spelling of every reason code and event name (the
//! strings users see).
//!
//! Must not: import anything else from this crate (it is the leaf every
//! stage depends on), do I/O, or hold policy (when to retry is the
//! pipeline's and the gate's call; this only computes delays).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A stable reason code, serialised kebab-case (`provider-timeout`), shared
/// by validation, the output stage, the providers and file-system trouble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    // validation: the file itself
    EmptyFile,
    FileTooLarge,
    NotARegularFile,
    UnsupportedFormat,
    NotAnImage,
    ImageTooWide,
    ImageTooTall,
    TooManyPixels,
    TruncatedImage,
    CorruptImage,
    AnimatedImage,
    // output stage
    EncodeFailed,
    /// A duplicate needs outputs the earlier job's files cannot give, its
    /// stored cut-out is gone, and making it again would pay the same
    /// provider twice.
    DuplicateCutoutGone,
    // providers: the conversation
    ProviderBadResult,
    ProviderBadAnswer,
    ProviderInsecureUrl,
    ProviderResultTooLarge,
    ProviderTruncated,
    ProviderRejectedFile,
    ProviderTimeout,
    ProviderServerError,
    ProviderUnexpectedAnswer,
    ProviderConnectionLost,
    ProviderUnreachable,
    ProviderRateLimited,
    ProviderQuotaExhausted,
    ProviderAuthFailed,
    ProviderInputTooLarge,
    ProviderUploadFailed,
    ProviderJobFailed,
    ProviderJobTimeout,
    ProviderDownloadFailed,
    /// The inbox's provider is paused (quota, key refused): its files wait.
    ProviderPaused,
    // the local engine
    EngineInferenceFailed,
    EngineFailed,
    EngineStopped,
    EngineCrashed,
    ImageTooSmall,
    NoObjectFound,
    // this program
    InternalError,
    InternalNoPixels,
    // trouble outside the file
    StateError,
    DiskFull,
    FolderNotWritable,
    FileVanished,
    IoError,
}

impl Code {
    /// Every code, in declaration order.
    pub const ALL: [Code; 46] = [
        Code::EmptyFile,
        Code::FileTooLarge,
        Code::NotARegularFile,
        Code::UnsupportedFormat,
        Code::NotAnImage,
        Code::ImageTooWide,
        Code::ImageTooTall,
        Code::TooManyPixels,
        Code::TruncatedImage,
        Code::CorruptImage,
        Code::AnimatedImage,
        Code::EncodeFailed,
        Code::DuplicateCutoutGone,
        Code::ProviderBadResult,
        Code::ProviderBadAnswer,
        Code::ProviderInsecureUrl,
        Code::ProviderResultTooLarge,
        Code::ProviderTruncated,
        Code::ProviderRejectedFile,
        Code::ProviderTimeout,
        Code::ProviderServerError,
        Code::ProviderUnexpectedAnswer,
        Code::ProviderConnectionLost,
        Code::ProviderUnreachable,
        Code::ProviderRateLimited,
        Code::ProviderQuotaExhausted,
        Code::ProviderAuthFailed,
        Code::ProviderInputTooLarge,
        Code::ProviderUploadFailed,
        Code::ProviderJobFailed,
        Code::ProviderJobTimeout,
        Code::ProviderDownloadFailed,
        Code::ProviderPaused,
        Code::EngineInferenceFailed,
        Code::EngineFailed,
        Code::EngineStopped,
        Code::EngineCrashed,
        Code::ImageTooSmall,
        Code::NoObjectFound,
        Code::InternalError,
        Code::InternalNoPixels,
        Code::StateError,
        Code::DiskFull,
        Code::FolderNotWritable,
        Code::FileVanished,
        Code::IoError,
    ];

    /// The kebab-case name (what reason files, audit lines and logs show).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::EmptyFile => "empty-file",
            Code::FileTooLarge => "file-too-large",
            Code::NotARegularFile => "not-a-regular-file",
            Code::UnsupportedFormat => "unsupported-format",
            Code::NotAnImage => "not-an-image",
            Code::ImageTooWide => "image-too-wide",
            Code::ImageTooTall => "image-too-tall",
            Code::TooManyPixels => "too-many-pixels",
            Code::TruncatedImage => "truncated-image",
            Code::CorruptImage => "corrupt-image",
            Code::AnimatedImage => "animated-image",
            Code::EncodeFailed => "encode-failed",
            Code::DuplicateCutoutGone => "duplicate-cutout-gone",
            Code::ProviderBadResult => "provider-bad-result",
            Code::ProviderBadAnswer => "provider-bad-answer",
            Code::ProviderInsecureUrl => "provider-insecure-url",
            Code::ProviderResultTooLarge => "provider-result-too-large",
            Code::ProviderTruncated => "provider-truncated",
            Code::ProviderRejectedFile => "provider-rejected-file",
            Code::ProviderTimeout => "provider-timeout",
            Code::ProviderServerError => "provider-server-error",
            Code::ProviderUnexpectedAnswer => "provider-unexpected-answer",
            Code::ProviderConnectionLost => "provider-connection-lost",
            Code::ProviderUnreachable => "provider-unreachable",
            Code::ProviderRateLimited => "provider-rate-limited",
            Code::ProviderQuotaExhausted => "provider-quota-exhausted",
            Code::ProviderAuthFailed => "provider-auth-failed",
            Code::ProviderInputTooLarge => "provider-input-too-large",
            Code::ProviderUploadFailed => "provider-upload-failed",
            Code::ProviderJobFailed => "provider-job-failed",
            Code::ProviderJobTimeout => "provider-job-timeout",
            Code::ProviderDownloadFailed => "provider-download-failed",
            Code::ProviderPaused => "provider-paused",
            Code::EngineInferenceFailed => "engine-inference-failed",
            Code::EngineFailed => "engine-failed",
            Code::EngineStopped => "engine-stopped",
            Code::EngineCrashed => "engine-crashed",
            Code::ImageTooSmall => "image-too-small",
            Code::NoObjectFound => "no-object-found",
            Code::InternalError => "internal-error",
            Code::InternalNoPixels => "internal-no-pixels",
            Code::StateError => "state-error",
            Code::DiskFull => "disk-full",
            Code::FolderNotWritable => "folder-not-writable",
            Code::FileVanished => "file-vanished",
            Code::IoError => "io-error",
        }
    }

    /// The code with this kebab-case name (as stored in the state database).
    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a file was rejected or failed: its code and the message for people.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    pub code: Code,
    pub message: String,
}

impl Reason {
    pub fn new(code: Code, message: impl std::fmt::Display) -> Reason {
        Reason {
            code,
            message: message.to_string(),
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// What became of one file, for the queue, the metrics and the batch
/// summary.
#[derive(Debug, Clone, PartialEq)]
pub enum FileResult {
    Succeeded,
    Duplicate,
    Rejected(Reason),
    Failed(Reason),
    /// Dry run: would be submitted.
    Valid,
    /// Already done earlier and kept in place.
    AlreadyDone,
    /// Not ready (changing, or the same picture is in flight elsewhere):
    /// look again after the delay.
    Later(Duration),
    /// The file is gone.
    Vanished,
    /// Another instance has it (shared state): it took this job over after
    /// this instance's lease lapsed (a write of this one was fenced), or it
    /// finished the input this one was about to move. Nothing was written
    /// for it here; not trouble, not looked at again soon (counted as
    /// skipped).
    Elsewhere,
    /// Stopped by shutdown; stays queued for the next start.
    Interrupted,
    /// Could not be processed now for a reason outside the file (state
    /// database, full disk, unwritable folder, paused provider): look
    /// again later. Its code says which (`state-error`, `disk-full`,
    /// `folder-not-writable`, `provider-paused`, `internal-error`, …).
    Trouble(Reason),
}

/// How a job ended (the state database's `outcome` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Duplicate,
    Rejected,
    Failed,
    /// The input disappeared before a decision (not a user-visible outcome).
    Vanished,
    /// A rejection or failure taken back before it took effect: the judged
    /// version of the input changed before its move (never audited; the new
    /// version is judged on its own).
    Withdrawn,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
            Outcome::Vanished => "vanished",
            Outcome::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "succeeded" => Outcome::Succeeded,
            "duplicate" => Outcome::Duplicate,
            "rejected" => Outcome::Rejected,
            "failed" => Outcome::Failed,
            "vanished" => Outcome::Vanished,
            "withdrawn" => Outcome::Withdrawn,
            _ => return None,
        })
    }

    /// The audit event that records this outcome (none for `Vanished` and
    /// `Withdrawn`, which are never audited).
    pub fn event(self) -> Option<Event> {
        match self {
            Outcome::Succeeded => Some(Event::Succeeded),
            Outcome::Duplicate => Some(Event::Duplicate),
            Outcome::Rejected => Some(Event::Rejected),
            Outcome::Failed => Some(Event::Failed),
            Outcome::Vanished | Outcome::Withdrawn => None,
        }
    }
}

/// What an audit line records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    #[default]
    Succeeded,
    Duplicate,
    Rejected,
    Failed,
    /// Another attempt was scheduled (not an outcome).
    Retry,
}

/// Size and modification time of a file, to tell whether it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub size: u64,
    pub mtime_ns: i64,
}

impl FileStat {
    pub fn of(m: &std::fs::Metadata) -> FileStat {
        use std::os::unix::fs::MetadataExt;
        FileStat {
            size: m.len(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        }
    }
}

/// The retry and cool-down schedule: exponential (factor 2) from `initial`,
/// capped at `max`, with full jitter — the n-th delay is drawn uniformly
/// from `[0, min(max, initial·2ⁿ)]`. The exponential part is `backon`'s;
/// the jitter is drawn here, since `backon`'s own jitter only adds to the
/// delay (it never spreads clients below it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `retry` (0 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        use backon::BackoffBuilder;
        let cap = backon::ExponentialBuilder::new()
            .with_min_delay(self.initial)
            .with_max_delay(self.max)
            .without_max_times()
            .build()
            .nth(retry.min(20) as usize)
            .unwrap_or(self.max)
            .min(self.max);
        let ms = cap.as_millis() as u64;
        Duration::from_millis(fastrand::u64(0..=ms.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_as_their_names_and_parse_back() {
        for c in Code::ALL {
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
            assert_eq!(Code::parse(c.as_str()), Some(c));
        }
        assert_eq!(Code::parse("no-such-code"), None);
    }

    #[test]
    fn backoff_stays_under_the_doubling_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        for retry in 0..30 {
            let cap = (100u64 << retry.min(20)).min(1000);
            for _ in 0..50 {
                let d = b.delay(retry).as_millis() as u64;
                assert!(d <= cap.max(1), "retry {retry}: {d} ms > {cap} ms");
            }
        }
        // full jitter: delays spread below the cap, not just above it
        let low = (0..200).any(|_| b.delay(5) < Duration::from_millis(500));
        assert!(low, "never below half the cap: not full jitter");
    }
}
