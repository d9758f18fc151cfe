//! The checked configuration types handed to the rest of the program, and
//! [`ConfigError`].
//!
//! Owns: the shapes every other module reads (`Config`, `Inbox`, the
//! provider configs), and keeping secrets out of their `Debug` output.
//!
//! Must not: parse or check anything (that is `check`), read files or the
//! environment.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::GlobSet;

use super::peer_options::{RembgServerOptions, RemoveBgOptions};
use super::shared_state::SharedState;

/// A config that cannot be used. Always names the file and, where there is
/// one, the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", origin)]
    Parse { origin: String, message: String },
    #[error("{origin}: `{key}`: {message}")]
    Key {
        origin: String,
        key: String,
        message: String,
    },
    #[error("{origin}: folder `{key}` = {}: {message}", path.display())]
    Folder {
        origin: String,
        key: String,
        path: PathBuf,
        message: String,
    },
}

/// The whole checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (None: built-in defaults).
    pub source: Option<PathBuf>,
    /// Where relative paths were resolved from.
    pub base_dir: PathBuf,
    pub state_dir: PathBuf,
    /// `state = "postgres://…"` / `[state]`: the shared PostgreSQL state
    /// (None: SQLite in `state_dir`).
    pub shared_state: Option<SharedState>,
    pub log_dir: Option<PathBuf>,
    pub rescan_interval: Duration,
    pub shutdown_grace: Duration,
    pub limits: Limits,
    pub queue: QueueConfig,
    pub retry: RetryConfig,
    pub inboxes: Vec<Inbox>,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub http: HttpConfig,
    /// Where `cutout models` installs models and `engine = "auto"` looks
    /// (`models_dir`; default: see [`crate::models::default_dir`]).
    pub models_dir: PathBuf,
}

/// `[http]`: the optional health and metrics endpoint and review page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpConfig {
    /// Where to serve `/healthz` and `/metrics` (None: no HTTP endpoint).
    pub listen: Option<std::net::SocketAddr>,
    /// Serve the review page (`/`, `/p/{id}`…) beside them (`review`,
    /// default true).
    pub review: bool,
    /// Bytes the review page's thumbnail cache in `state_dir` may hold
    /// (`thumbnail_cache`, default 256 MiB; the oldest go first).
    pub thumbnail_cache: u64,
    /// `actions`: the review page may change things (retry, redo,
    /// approve, flag). Off by default: read-only.
    pub actions: bool,
    /// `token_file`: the file holding the token actions require (read at
    /// start by `review::auth`, never here). Required with actions on a
    /// listen address that is not loopback.
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_file_size: u64,
    pub max_width: u32,
    pub max_height: u32,
    pub max_pixels: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// Pictures at the engine at once (the queue runs up to twice as many
    /// workers: see `pipeline::Ctx::worker_limit`).
    pub concurrency: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct RetryConfig {
    pub max_attempts: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Png,
    Webp,
}

impl OutputFormat {
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Png => "png",
            OutputFormat::Webp => "webp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterSuccess {
    Archive,
    Delete,
    Keep,
    /// One-shot `cutout process SRC… --out DIR`: every input stays where it
    /// is whatever its outcome (rejected and failed ones too; their reason
    /// files go under the state folder). Not settable in a config file.
    KeepSources,
}

impl AfterSuccess {
    /// Whether successful inputs stay where they are.
    pub fn keeps_input(self) -> bool {
        matches!(self, AfterSuccess::Keep | AfterSuccess::KeepSources)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// inotify (or the platform's equivalent) plus periodic rescans.
    Notify,
    /// Rescans only, every `poll_interval` (network mounts).
    Poll,
}

/// One `[[inbox]]`.
#[derive(Debug, Clone)]
pub struct Inbox {
    /// Stable name used in the audit log and the state database.
    pub name: String,
    pub path: PathBuf,
    pub outbox: PathBuf,
    pub archive: PathBuf,
    pub rejected: PathBuf,
    pub failed: PathBuf,
    pub provider: String,
    pub output_format: OutputFormat,
    pub webp_quality: u8,
    pub settle: Duration,
    /// An empty file is rejected only after no change for this long (it may
    /// be an upload that has not started writing yet).
    pub empty_grace: Duration,
    pub recursive: bool,
    pub after_success: AfterSuccess,
    pub watch: WatchMode,
    pub poll_interval: Duration,
    pub ignore: Vec<String>,
    pub ignore_set: GlobSet,
    /// Provider options (`options = { … }`), checked for the inbox's
    /// provider kind when the config was read.
    pub options: InboxOptions,
    /// `[[inbox.output]]`, checked, in config order. Empty: one cut-out per
    /// input in `output_format` (as before finishing existed).
    pub outputs: Vec<crate::finish::OutputSpec>,
}

impl Inbox {
    /// The four folders the pipeline writes into, with their key names.
    pub fn managed_folders(&self) -> [(&'static str, &Path); 5] {
        [
            ("path", &self.path),
            ("outbox", &self.outbox),
            ("archive", &self.archive),
            ("rejected", &self.rejected),
            ("failed", &self.failed),
        ]
    }
}

/// One `[providers.NAME]`.
#[derive(Clone)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Provider configs may hold secrets in later kinds: never derive Debug.
        write!(f, "ProviderConfig({})", self.kind.name())
    }
}

#[derive(Clone, Debug)]
pub enum ProviderKind {
    Local(LocalConfig),
    RembgCom(RembgConfig),
    Verging(VergingConfig),
    RemoveBg(RemoveBgConfig),
    RembgServer(RembgServerConfig),
}

impl ProviderKind {
    pub fn name(&self) -> &'static str {
        match self {
            ProviderKind::Local(_) => "local",
            ProviderKind::RembgCom(_) => "rembg-com",
            ProviderKind::Verging(_) => "verging",
            ProviderKind::RemoveBg(_) => "remove-bg",
            ProviderKind::RembgServer(_) => "rembg-server",
        }
    }
}

/// A secret (an API key). Its `Debug` never shows the value and it has no
/// `Display`: the only way to the text is [`Secret::expose`], called where
/// the key goes into a request header.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where a hosted provider's API key comes from. Files and environment
/// variables are read when the provider is built (`provider::build`), not
/// here: the config stays free of side effects.
#[derive(Clone, Debug)]
pub enum ApiKeySource {
    /// `api_key = "…"` written in the config file `file`.
    Inline { key: Secret, file: Option<PathBuf> },
    /// `api_key_file`. `path` is resolved against the config folder; when
    /// the value was a bare name (no `/`), `credential` holds it and
    /// `$CREDENTIALS_DIRECTORY/<name>` (systemd `LoadCredential=`) is
    /// tried first.
    File {
        path: PathBuf,
        credential: Option<String>,
    },
    /// `api_key_env` (or the kind's default variable when `explicit` is false).
    Env { var: String, explicit: bool },
}

/// The keys every hosted provider kind shares (checked types).
#[derive(Clone, Debug)]
pub struct HostedConfig {
    /// API base URL, without a trailing `/`. https, or plain http on a
    /// loopback address only.
    pub base_url: String,
    pub key: ApiKeySource,
    /// Pictures this provider works on at once (on top of `queue.concurrency`).
    pub concurrency: usize,
    /// Requests per second to this provider's API (token bucket): fixed,
    /// or `"auto"` (learned between a start rate and
    /// `max_requests_per_second`).
    pub requests_per_second: crate::provider::rate::RateMode,
    /// Time limit of one HTTP request (upload, download, poll).
    pub timeout: Duration,
    /// Largest result (or error body) read from the provider.
    pub max_result_size: u64,
    /// While paused (no credits, key refused): how often to check again.
    pub recheck_interval: Duration,
    /// A copy of `[retry]`: the provider-wide cool-down after a 429 without
    /// `Retry-After` uses the same backoff.
    pub retry: RetryConfig,
}

/// `kind = "rembg-com"`.
#[derive(Clone, Debug)]
pub struct RembgConfig {
    pub hosted: HostedConfig,
    /// Full URL of the membership-usage (credits) endpoint.
    pub usage_url: String,
}

/// `kind = "verging"`.
#[derive(Clone, Debug)]
pub struct VergingConfig {
    pub hosted: HostedConfig,
    /// Time between two polls of a job.
    pub poll_interval: Duration,
    /// How long one job may take (counted from its creation, also across
    /// restarts) before the file fails with `provider-job-timeout`.
    pub job_timeout: Duration,
    /// Upload through a presigned URL (`upload-video` + `PUT`) first.
    pub presigned_upload: bool,
}

/// `kind = "local"`: an engine on this machine, no network, no key.
#[derive(Clone, Debug, Default)]
pub struct LocalConfig {
    pub engine: LocalEngine,
    /// The ONNX model and its pre/post-processing (engine onnx/auto).
    pub model: Option<PathBuf>,
    pub model_kind: Option<String>,
    /// `libonnxruntime.so.1.xx`; else `$ORT_DYLIB_PATH`, else the model's folder.
    pub onnxruntime: Option<PathBuf>,
    /// The config's `models_dir`: where `engine = "auto"` finds a model
    /// when `model` is not set.
    pub models_dir: PathBuf,
    /// ONNX Runtime threads per inference.
    pub threads: usize,
    /// Inferences at the same time (each on its own blocking thread).
    pub parallel: usize,
    /// ONNX Runtime's memory arena (faster reuse, about twice the memory).
    pub memory_arena: bool,
    pub remove_specks: bool,
    pub fill_holes: bool,
    pub feather: f32,
    pub decontaminate: bool,
}

/// Which local engine runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LocalEngine {
    /// The built-in backdrop segmenter (packshots on plain backdrops).
    Builtin,
    /// An ONNX model through ONNX Runtime (U²-Net, IS-Net, BiRefNet…).
    Onnx,
    /// The default: `model` if set, else the best model installed in
    /// `models_dir`, when it and the runtime load; else built-in.
    #[default]
    Auto,
}

/// The checked options of one inbox, by the kind of its provider.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum InboxOptions {
    /// The provider kind takes no options (local, verging).
    #[default]
    None,
    /// `kind = "rembg-com"`.
    RembgCom(RembgOptions),
    /// `kind = "remove-bg"`.
    RemoveBg(RemoveBgOptions),
    /// `kind = "rembg-server"`.
    RembgServer(RembgServerOptions),
}

impl InboxOptions {
    /// The rembg.com options (None for other kinds).
    pub fn rembg(&self) -> Option<&RembgOptions> {
        match self {
            InboxOptions::RembgCom(o) => Some(o),
            _ => None,
        }
    }

    /// The remove.bg options (None for other kinds).
    pub fn remove_bg(&self) -> Option<&RemoveBgOptions> {
        match self {
            InboxOptions::RemoveBg(o) => Some(o),
            _ => None,
        }
    }

    /// The rembg-server options (None for other kinds).
    pub fn rembg_server(&self) -> Option<&RembgServerOptions> {
        match self {
            InboxOptions::RembgServer(o) => Some(o),
            _ => None,
        }
    }
}

/// rembg.com's per-inbox options, checked. `None`: not sent (the API's
/// default), except `format`, which defaults to the inbox's `output_format`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RembgOptions {
    pub format: Option<OutputFormat>,
    pub w: Option<i64>,
    pub h: Option<i64>,
    pub exact_resize: Option<bool>,
    pub mask: Option<bool>,
    /// `#RGB`, `#RGBA`, `#RRGGBB`, `#RRGGBBAA` or a CSS colour name.
    pub bg_color: Option<String>,
    pub angle: Option<f64>,
    pub expand: Option<bool>,
}

/// `kind = "remove-bg"`.
#[derive(Clone, Debug)]
pub struct RemoveBgConfig {
    /// `base_url` (default `https://api.remove.bg`): `POST
    /// {base_url}/v1.0/removebg`, `GET {base_url}/v1.0/account`.
    pub hosted: HostedConfig,
}

/// `kind = "rembg-server"`.
#[derive(Clone, Debug)]
pub struct RembgServerConfig {
    /// `base_url` (default `http://127.0.0.1:7000`). `hosted.key` is only
    /// read when `auth` is set (the server itself has no key).
    pub hosted: HostedConfig,
    /// A header for a reverse proxy in front of the server.
    pub auth: Option<ServerAuth>,
}

/// `auth_header` (+ `auth_scheme`): the proxy's header; its value (the
/// secret) comes from `api_key_env` / `api_key_file` / `api_key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAuth {
    /// Header name, e.g. `Authorization` or `X-Proxy-Key`.
    pub header: String,
    /// Sent before the secret with one space, e.g. `Bearer`.
    pub scheme: Option<String>,
}
