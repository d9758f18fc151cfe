//! Configuration: the one place where TOML and defaults become checked,
//! ready-to-use types.
//!
//! Owns: the raw serde shapes of the file (unknown keys rejected), parsing of
//! human sizes and durations, defaults, resolving relative paths against the
//! config file's folder, and every error that names a key and a file.
//!
//! Must not: create folders or touch the disk beyond reading the file (see
//! [`prepare_folders`], called explicitly by commands that want it), or hold
//! secrets in `Debug` output.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

/// The environment variable naming a config file when `--config` is absent.
pub const CONFIG_ENV: &str = "CUTOUT_CONFIG";
/// systemd's `ConfigurationDirectory=`: `cutout.toml` there is the config
/// when neither `--config` nor `$CUTOUT_CONFIG` names one.
pub const CONFIGURATION_DIRECTORY_ENV: &str = "CONFIGURATION_DIRECTORY";
/// systemd's `StateDirectory=`: the default `state_dir`.
pub const STATE_DIRECTORY_ENV: &str = "STATE_DIRECTORY";
/// systemd's `LogsDirectory=`: the default `log_dir`.
pub const LOGS_DIRECTORY_ENV: &str = "LOGS_DIRECTORY";
/// The config file name looked for in `$CONFIGURATION_DIRECTORY`.
pub const CONFIG_FILE_NAME: &str = "cutout.toml";

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

// ---------------------------------------------------------------------------
// Checked types handed to the pipeline.

/// The whole checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (None: built-in defaults).
    pub source: Option<PathBuf>,
    /// Where relative paths were resolved from.
    pub base_dir: PathBuf,
    pub state_dir: PathBuf,
    pub log_dir: Option<PathBuf>,
    pub rescan_interval: Duration,
    pub shutdown_grace: Duration,
    pub limits: Limits,
    pub queue: QueueConfig,
    pub retry: RetryConfig,
    pub inboxes: Vec<Inbox>,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub http: HttpConfig,
}

/// `[http]`: the optional health and metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpConfig {
    /// Where to serve `/healthz` and `/metrics` (None: no HTTP endpoint).
    pub listen: Option<std::net::SocketAddr>,
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
    pub recursive: bool,
    pub after_success: AfterSuccess,
    pub watch: WatchMode,
    pub poll_interval: Duration,
    pub ignore: Vec<String>,
    pub ignore_set: GlobSet,
    /// Provider options (`options = { … }`), checked by the provider.
    pub options: toml::Table,
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
}

impl ProviderKind {
    pub fn name(&self) -> &'static str {
        match self {
            ProviderKind::Local(_) => "local",
            ProviderKind::RembgCom(_) => "rembg-com",
            ProviderKind::Verging(_) => "verging",
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
    /// Requests per second to this provider's API (token bucket).
    pub requests_per_second: f64,
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
    #[default]
    Builtin,
    /// An ONNX model through ONNX Runtime (U²-Net, IS-Net, BiRefNet…).
    Onnx,
    /// The model when its file and the runtime are there, else built-in.
    Auto,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocal {
    #[allow(dead_code)]
    kind: String,
    engine: Option<String>,
    model: Option<PathBuf>,
    model_kind: Option<String>,
    onnxruntime: Option<PathBuf>,
    threads: Option<i64>,
    parallel: Option<i64>,
    memory_arena: Option<bool>,
    remove_specks: Option<bool>,
    fill_holes: Option<bool>,
    feather: Option<f64>,
    decontaminate: Option<bool>,
}

pub const DEFAULT_ONNX_THREADS: usize = 2;
pub const DEFAULT_ONNX_PARALLEL: usize = 1;

// ---------------------------------------------------------------------------
// Defaults (also documented in config.example.toml; keep them in step).

pub const DEFAULT_MAX_FILE_SIZE: u64 = 10 * 1024 * 1024;
pub const DEFAULT_MAX_SIDE: u32 = 10_000;
pub const DEFAULT_MAX_PIXELS: u64 = 50_000_000;
pub const DEFAULT_CONCURRENCY: usize = 4;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
pub const DEFAULT_INITIAL_DELAY: Duration = Duration::from_secs(1);
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(120);
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(2);
pub const DEFAULT_RESCAN: Duration = Duration::from_secs(300);
pub const DEFAULT_POLL: Duration = Duration::from_secs(10);
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
pub const DEFAULT_WEBP_QUALITY: u8 = 90;
pub const DEFAULT_STATE_DIR: &str = ".cutout";
pub const DEFAULT_PROVIDER: &str = "local";
pub const DEFAULT_REMBG_URL: &str = "https://api.rembg.com";
pub const DEFAULT_REMBG_USAGE_URL: &str = "https://www.rembg.com/api/membership-usage";
pub const DEFAULT_REMBG_KEY_ENV: &str = "REMBG_API_KEY";
pub const DEFAULT_VERGING_URL: &str = "https://verging.ai/api/v1";
pub const DEFAULT_VERGING_KEY_ENV: &str = "VERGING_API_KEY";
/// Overrides the default verging base URL (as the vendor's own tools do).
pub const VERGING_URL_ENV: &str = "VERGING_API_URL";
/// systemd's folder of `LoadCredential=` files.
pub const CREDENTIALS_DIR_ENV: &str = "CREDENTIALS_DIRECTORY";
pub const DEFAULT_HOSTED_CONCURRENCY: usize = 2;
pub const DEFAULT_HOSTED_RPS: f64 = 2.0;
pub const DEFAULT_HOSTED_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_RESULT_SIZE: u64 = 100 * 1024 * 1024;
pub const DEFAULT_RECHECK_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_VERGING_POLL: Duration = Duration::from_secs(5);
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(600);
const KNOWN_KINDS: &str = "\"local\", \"rembg-com\", \"verging\"";

// ---------------------------------------------------------------------------
// Raw serde shapes.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    rescan_interval: Option<HumanValue>,
    shutdown_grace: Option<HumanValue>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    queue: RawQueue,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    inbox: Vec<RawInbox>,
    #[serde(default)]
    providers: BTreeMap<String, toml::Table>,
    #[serde(default)]
    http: RawHttp,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_file_size: Option<HumanValue>,
    max_width: Option<i64>,
    max_height: Option<i64>,
    max_pixels: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    concurrency: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_attempts: Option<i64>,
    initial_delay: Option<HumanValue>,
    max_delay: Option<HumanValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInbox {
    name: Option<String>,
    path: Option<PathBuf>,
    outbox: Option<PathBuf>,
    archive: Option<PathBuf>,
    rejected: Option<PathBuf>,
    failed: Option<PathBuf>,
    provider: Option<String>,
    output_format: Option<String>,
    webp_quality: Option<i64>,
    settle: Option<HumanValue>,
    recursive: Option<bool>,
    after_success: Option<String>,
    watch: Option<String>,
    poll_interval: Option<HumanValue>,
    #[serde(default)]
    ignore: Vec<String>,
    #[serde(default)]
    options: toml::Table,
}

/// `[providers.NAME]` with `kind = "rembg-com"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRembg {
    #[allow(dead_code)]
    kind: String,
    base_url: Option<String>,
    usage_url: Option<String>,
    api_key_env: Option<String>,
    api_key_file: Option<PathBuf>,
    api_key: Option<String>,
    concurrency: Option<i64>,
    requests_per_second: Option<f64>,
    timeout: Option<HumanValue>,
    max_result_size: Option<HumanValue>,
    recheck_interval: Option<HumanValue>,
}

/// `[providers.NAME]` with `kind = "verging"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerging {
    #[allow(dead_code)]
    kind: String,
    base_url: Option<String>,
    api_key_env: Option<String>,
    api_key_file: Option<PathBuf>,
    api_key: Option<String>,
    concurrency: Option<i64>,
    requests_per_second: Option<f64>,
    timeout: Option<HumanValue>,
    max_result_size: Option<HumanValue>,
    recheck_interval: Option<HumanValue>,
    poll_interval: Option<HumanValue>,
    job_timeout: Option<HumanValue>,
    presigned_upload: Option<bool>,
}

/// The keys both hosted kinds share, borrowed from either raw shape.
struct RawHosted<'a> {
    api_key_env: &'a Option<String>,
    api_key_file: &'a Option<PathBuf>,
    api_key: &'a Option<String>,
    concurrency: Option<i64>,
    requests_per_second: Option<f64>,
    timeout: &'a Option<HumanValue>,
    max_result_size: &'a Option<HumanValue>,
    recheck_interval: &'a Option<HumanValue>,
}

/// The [`RawHosted`] view of a raw hosted-provider table (the kinds keep
/// their own structs: serde's `flatten` does not work with
/// `deny_unknown_fields`).
macro_rules! raw_hosted {
    ($raw:expr) => {
        RawHosted {
            api_key_env: &$raw.api_key_env,
            api_key_file: &$raw.api_key_file,
            api_key: &$raw.api_key,
            concurrency: $raw.concurrency,
            requests_per_second: $raw.requests_per_second,
            timeout: &$raw.timeout,
            max_result_size: &$raw.max_result_size,
            recheck_interval: &$raw.recheck_interval,
        }
    };
}

/// A size or duration: a human string ("10 MiB", "2s") or a bare number
/// (bytes, seconds).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum HumanValue {
    Int(i64),
    Float(f64),
    Text(String),
}

// ---------------------------------------------------------------------------
// Loading.

/// Where the config comes from, in precedence order: `--config`,
/// `$CUTOUT_CONFIG`, `$CONFIGURATION_DIRECTORY/cutout.toml` (systemd's
/// `ConfigurationDirectory=`); None: built-in defaults.
pub fn locate(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    match std::env::var_os(CONFIG_ENV) {
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => env_dir(CONFIGURATION_DIRECTORY_ENV).map(|d| d.join(CONFIG_FILE_NAME)),
    }
}

/// The first folder of a systemd directory variable (they may list several,
/// separated by `:`); relative or empty values are ignored.
fn env_dir(var: &str) -> Option<PathBuf> {
    let v = std::env::var_os(var)?;
    let first = std::env::split_paths(&v).next()?;
    first.is_absolute().then_some(first)
}

/// Defaults that systemd hands over in the environment: `$STATE_DIRECTORY`
/// (`StateDirectory=`) and `$LOGS_DIRECTORY` (`LogsDirectory=`) are the
/// defaults for `state_dir` and `log_dir` when the file does not set them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemdDirs {
    pub state: Option<PathBuf>,
    pub logs: Option<PathBuf>,
}

impl SystemdDirs {
    pub fn from_env() -> SystemdDirs {
        SystemdDirs {
            state: env_dir(STATE_DIRECTORY_ENV),
            logs: env_dir(LOGS_DIRECTORY_ENV),
        }
    }
}

/// Load from a file, or the built-in defaults (current directory) when `path`
/// is None.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    load_with_text(path).map(|(c, _)| c)
}

/// [`load`], also returning the text it was read from (empty for the
/// built-in defaults), so a reload can tell what changed.
pub fn load_with_text(path: Option<&Path>) -> Result<(Config, String), ConfigError> {
    let dirs = SystemdDirs::from_env();
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?;
            let base = p
                .parent()
                .map(|d| {
                    if d.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        d
                    }
                })
                .unwrap_or(Path::new("."));
            let base = absolute(base);
            let cfg = from_str_with(&text, Some(p), &base, &dirs)?;
            Ok((cfg, text))
        }
        None => {
            let cwd = std::env::current_dir().map_err(|source| ConfigError::Read {
                path: PathBuf::from("."),
                source,
            })?;
            Ok((from_str_with("", None, &cwd, &dirs)?, String::new()))
        }
    }
}

/// A digest of each `[providers.NAME]` table as written in `text`, so a
/// reload rebuilds only the providers whose settings changed (and keeps the
/// state — pauses, rate limits — of the others). Never logged.
pub fn provider_digests(text: &str) -> BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return BTreeMap::new();
    };
    let Some(toml::Value::Table(providers)) = table.get("providers") else {
        return BTreeMap::new();
    };
    providers
        .iter()
        .map(|(name, v)| {
            let canonical = toml::to_string(v).unwrap_or_else(|_| format!("{v:?}"));
            (name.clone(), hex::encode(Sha256::digest(canonical)))
        })
        .collect()
}

/// Parse config text; `file` only names the origin in errors. Ignores the
/// systemd directory variables (see [`from_str_with`]).
pub fn from_str(text: &str, file: Option<&Path>, base_dir: &Path) -> Result<Config, ConfigError> {
    from_str_with(text, file, base_dir, &SystemdDirs::default())
}

/// [`from_str`] with systemd's directories as defaults.
pub fn from_str_with(
    text: &str,
    file: Option<&Path>,
    base_dir: &Path,
    dirs: &SystemdDirs,
) -> Result<Config, ConfigError> {
    let origin = match file {
        Some(f) => f.display().to_string(),
        None => "built-in defaults".to_string(),
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
        origin: origin.clone(),
        message: tidy_toml_error(&e),
    })?;
    let c = Checker {
        origin: origin.clone(),
        base: base_dir.to_path_buf(),
        dirs: dirs.clone(),
    };
    c.build(raw, file)
}

fn tidy_toml_error(e: &toml::de::Error) -> String {
    // toml's message is multi-line with a source excerpt; keep it, but make
    // the first line lead with the key when serde names one.
    e.to_string().trim_end().to_string()
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

struct Checker {
    origin: String,
    base: PathBuf,
    dirs: SystemdDirs,
}

impl Checker {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Key {
            origin: self.origin.clone(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn path(&self, p: &Path) -> PathBuf {
        let expanded = expand_home(p);
        if expanded.is_absolute() {
            normalize(&expanded)
        } else {
            normalize(&self.base.join(expanded))
        }
    }

    fn size(&self, key: &str, v: Option<&HumanValue>, default: u64) -> Result<u64, ConfigError> {
        match v {
            None => Ok(default),
            Some(HumanValue::Int(n)) if *n > 0 => Ok(*n as u64),
            Some(HumanValue::Text(s)) => parse_size(s).map_err(|m| self.err(key, m)),
            Some(other) => Err(self.err(
                key,
                format!("expected a size such as \"10 MiB\" or a positive number of bytes, got {other:?}"),
            )),
        }
    }

    fn duration(
        &self,
        key: &str,
        v: Option<&HumanValue>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match v {
            None => Ok(default),
            Some(HumanValue::Int(n)) if *n >= 0 => Ok(Duration::from_secs(*n as u64)),
            Some(HumanValue::Float(f)) if *f >= 0.0 && f.is_finite() => {
                Ok(Duration::from_secs_f64(*f))
            }
            Some(HumanValue::Text(s)) => parse_duration(s).map_err(|m| self.err(key, m)),
            Some(other) => Err(self.err(
                key,
                format!("expected a duration such as \"2s\" or \"5m\", got {other:?}"),
            )),
        }
    }

    fn int(
        &self,
        key: &str,
        v: Option<i64>,
        default: i64,
        min: i64,
        max: i64,
    ) -> Result<i64, ConfigError> {
        let n = v.unwrap_or(default);
        if n < min || n > max {
            return Err(self.err(key, format!("must be between {min} and {max}, got {n}")));
        }
        Ok(n)
    }

    fn build(&self, raw: RawConfig, file: Option<&Path>) -> Result<Config, ConfigError> {
        let state_dir = match (&raw.state_dir, &self.dirs.state) {
            (Some(p), _) => self.path(p),
            (None, Some(systemd)) => normalize(systemd),
            (None, None) => self.path(Path::new(DEFAULT_STATE_DIR)),
        };
        let log_dir = match (&raw.log_dir, &self.dirs.logs) {
            (Some(p), _) => Some(self.path(p)),
            (None, Some(systemd)) => Some(normalize(systemd)),
            (None, None) => None,
        };
        let http = self.http(&raw.http)?;
        let limits = Limits {
            max_file_size: self.size(
                "limits.max_file_size",
                raw.limits.max_file_size.as_ref(),
                DEFAULT_MAX_FILE_SIZE,
            )?,
            max_width: self.int(
                "limits.max_width",
                raw.limits.max_width,
                DEFAULT_MAX_SIDE as i64,
                1,
                u32::MAX as i64,
            )? as u32,
            max_height: self.int(
                "limits.max_height",
                raw.limits.max_height,
                DEFAULT_MAX_SIDE as i64,
                1,
                u32::MAX as i64,
            )? as u32,
            max_pixels: self.int(
                "limits.max_pixels",
                raw.limits.max_pixels,
                DEFAULT_MAX_PIXELS as i64,
                1,
                i64::MAX,
            )? as u64,
        };
        let queue = QueueConfig {
            concurrency: self.int(
                "queue.concurrency",
                raw.queue.concurrency,
                DEFAULT_CONCURRENCY as i64,
                1,
                1024,
            )? as usize,
        };
        let retry = RetryConfig {
            max_attempts: self.int(
                "retry.max_attempts",
                raw.retry.max_attempts,
                DEFAULT_MAX_ATTEMPTS as i64,
                1,
                1000,
            )? as u32,
            initial_delay: self.duration(
                "retry.initial_delay",
                raw.retry.initial_delay.as_ref(),
                DEFAULT_INITIAL_DELAY,
            )?,
            max_delay: self.duration(
                "retry.max_delay",
                raw.retry.max_delay.as_ref(),
                DEFAULT_MAX_DELAY,
            )?,
        };
        if retry.max_delay < retry.initial_delay {
            return Err(self.err(
                "retry.max_delay",
                format!(
                    "must not be shorter than retry.initial_delay ({})",
                    humantime::format_duration(retry.initial_delay)
                ),
            ));
        }
        let rescan_interval = self.duration(
            "rescan_interval",
            raw.rescan_interval.as_ref(),
            DEFAULT_RESCAN,
        )?;
        if rescan_interval < Duration::from_secs(1) {
            return Err(self.err("rescan_interval", "must be at least 1s"));
        }
        let shutdown_grace =
            self.duration("shutdown_grace", raw.shutdown_grace.as_ref(), DEFAULT_GRACE)?;

        // Providers: a `local` one always exists unless the file defines one
        // under that name.
        let mut providers = BTreeMap::new();
        for (name, table) in &raw.providers {
            providers.insert(name.clone(), self.provider(name, table, file, retry)?);
        }
        providers
            .entry(DEFAULT_PROVIDER.to_string())
            .or_insert_with(|| ProviderConfig {
                kind: ProviderKind::Local(LocalConfig::default()),
            });

        let raw_inboxes = if raw.inbox.is_empty() {
            vec![RawInbox {
                path: Some(PathBuf::from("inbox")),
                ..RawInbox::default()
            }]
        } else {
            raw.inbox
        };
        let mut inboxes = Vec::new();
        for (i, ri) in raw_inboxes.into_iter().enumerate() {
            inboxes.push(self.inbox(i, ri, &providers)?);
        }
        self.check_overlaps(&inboxes)?;
        let _ = file;
        Ok(Config {
            source: file.map(absolute),
            base_dir: self.base.clone(),
            state_dir,
            log_dir,
            rescan_interval,
            shutdown_grace,
            limits,
            queue,
            retry,
            inboxes,
            providers,
            http,
        })
    }

    fn http(&self, raw: &RawHttp) -> Result<HttpConfig, ConfigError> {
        let listen = match raw.listen.as_deref() {
            None => None,
            Some(s) => Some(s.trim().parse::<std::net::SocketAddr>().map_err(|_| {
                self.err(
                    "http.listen",
                    format!(
                        "cannot read {s:?} as an address; write an IP address and a port, e.g. \"127.0.0.1:9808\" (\"[::1]:9808\" for IPv6)"
                    ),
                )
            })?),
        };
        Ok(HttpConfig { listen })
    }

    fn provider(
        &self,
        name: &str,
        table: &toml::Table,
        file: Option<&Path>,
        retry: RetryConfig,
    ) -> Result<ProviderConfig, ConfigError> {
        let key = format!("providers.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(self.err(
                &key,
                "provider names may use only letters, digits, `-` and `_`",
            ));
        }
        let kind = match table.get("kind") {
            Some(toml::Value::String(k)) => k.as_str(),
            Some(_) => return Err(self.err(format!("{key}.kind"), "must be a string")),
            None => {
                return Err(self.err(
                    format!("{key}.kind"),
                    format!("is missing; known kinds: {KNOWN_KINDS}"),
                ))
            }
        };
        let value = toml::Value::Table(table.clone());
        let shape = |e: toml::de::Error| self.err(&key, e.message().to_string());
        let kind = match kind {
            "local" => {
                let raw: RawLocal = value.try_into().map_err(shape)?;
                ProviderKind::Local(self.local(&key, raw)?)
            }
            "rembg-com" => {
                let raw: RawRembg = value.try_into().map_err(shape)?;
                let hosted = self.hosted(
                    &key,
                    raw_hosted!(raw),
                    (raw.base_url.as_deref(), "", DEFAULT_REMBG_URL),
                    DEFAULT_REMBG_KEY_ENV,
                    file,
                    retry,
                )?;
                let usage_url = self.url(
                    &format!("{key}.usage_url"),
                    raw.usage_url.as_deref().unwrap_or(DEFAULT_REMBG_USAGE_URL),
                )?;
                ProviderKind::RembgCom(RembgConfig { hosted, usage_url })
            }
            "verging" => {
                let raw: RawVerging = value.try_into().map_err(shape)?;
                let env_url = std::env::var(VERGING_URL_ENV)
                    .ok()
                    .filter(|v| !v.trim().is_empty());
                let (url, via) = match (&raw.base_url, &env_url) {
                    (Some(u), _) => (u.as_str(), ""),
                    (None, Some(u)) => (u.as_str(), VERGING_URL_ENV),
                    (None, None) => (DEFAULT_VERGING_URL, ""),
                };
                let hosted = self.hosted(
                    &key,
                    raw_hosted!(raw),
                    (Some(url), via, DEFAULT_VERGING_URL),
                    DEFAULT_VERGING_KEY_ENV,
                    file,
                    retry,
                )?;
                let poll_interval = self.duration(
                    &format!("{key}.poll_interval"),
                    raw.poll_interval.as_ref(),
                    DEFAULT_VERGING_POLL,
                )?;
                if poll_interval < Duration::from_millis(50) {
                    return Err(self.err(format!("{key}.poll_interval"), "must be at least 50ms"));
                }
                let job_timeout = self.duration(
                    &format!("{key}.job_timeout"),
                    raw.job_timeout.as_ref(),
                    DEFAULT_JOB_TIMEOUT,
                )?;
                if job_timeout < poll_interval {
                    return Err(self.err(
                        format!("{key}.job_timeout"),
                        format!(
                            "must not be shorter than poll_interval ({})",
                            humantime::format_duration(poll_interval)
                        ),
                    ));
                }
                ProviderKind::Verging(VergingConfig {
                    hosted,
                    poll_interval,
                    job_timeout,
                    presigned_upload: raw.presigned_upload.unwrap_or(false),
                })
            }
            other => {
                return Err(self.err(
                    format!("{key}.kind"),
                    format!("unknown provider kind {other:?}; known kinds: {KNOWN_KINDS}"),
                ))
            }
        };
        Ok(ProviderConfig { kind })
    }

    /// A provider URL: http(s), and plain http only on a loopback address
    /// (the API key would otherwise cross the network in the clear).
    fn url(&self, key: &str, text: &str) -> Result<String, ConfigError> {
        let url = reqwest::Url::parse(text.trim())
            .map_err(|e| self.err(key, format!("{text:?} is not a URL ({e})")))?;
        match url.scheme() {
            "https" => {}
            "http" if crate::provider::http::is_loopback(&url) => {}
            "http" => {
                return Err(self.err(
                    key,
                    format!(
                        "{text:?} is plain http: only https is allowed (plain http only on a loopback address such as 127.0.0.1), so the API key never crosses the network in the clear"
                    ),
                ))
            }
            other => {
                return Err(self.err(
                    key,
                    format!("{text:?} has the scheme {other:?}; use an https:// URL"),
                ))
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.err(
                key,
                "must not carry a user name or password; put the key in api_key_env, api_key_file or api_key",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(self.err(key, "must not have a query (`?…`) or fragment (`#…`)"));
        }
        Ok(url.as_str().trim_end_matches('/').to_string())
    }

    #[allow(clippy::too_many_arguments)]
    fn hosted(
        &self,
        key: &str,
        raw: RawHosted<'_>,
        (base, base_via, base_default): (Option<&str>, &str, &str),
        default_env: &str,
        file: Option<&Path>,
        retry: RetryConfig,
    ) -> Result<HostedConfig, ConfigError> {
        let k = |name: &str| format!("{key}.{name}");
        let base_key = if base_via.is_empty() {
            k("base_url")
        } else {
            format!("{} (from ${base_via})", k("base_url"))
        };
        let base_url = self.url(&base_key, base.unwrap_or(base_default))?;
        let given = [
            raw.api_key.is_some(),
            raw.api_key_file.is_some(),
            raw.api_key_env.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(self.err(key, "set only one of api_key_env, api_key_file and api_key"));
        }
        let source = if let Some(v) = raw.api_key {
            let v = v.trim();
            if v.is_empty() {
                return Err(self.err(k("api_key"), "is empty"));
            }
            ApiKeySource::Inline {
                key: Secret::new(v),
                file: file.map(absolute),
            }
        } else if let Some(p) = raw.api_key_file {
            if p.as_os_str().is_empty() {
                return Err(self.err(k("api_key_file"), "is empty"));
            }
            let text = p.to_string_lossy();
            let bare = !text.contains('/') && !text.starts_with('~');
            ApiKeySource::File {
                path: self.path(p),
                credential: bare.then(|| text.into_owned()),
            }
        } else if let Some(v) = raw.api_key_env {
            if v.is_empty() || v.contains('=') || v.contains('\0') {
                return Err(self.err(
                    k("api_key_env"),
                    format!("{v:?} is not a usable environment variable name"),
                ));
            }
            ApiKeySource::Env {
                var: v.clone(),
                explicit: true,
            }
        } else {
            ApiKeySource::Env {
                var: default_env.to_string(),
                explicit: false,
            }
        };
        let concurrency = self.int(
            &k("concurrency"),
            raw.concurrency,
            DEFAULT_HOSTED_CONCURRENCY as i64,
            1,
            256,
        )? as usize;
        let rps = raw.requests_per_second.unwrap_or(DEFAULT_HOSTED_RPS);
        if !(rps.is_finite() && (0.01..=1000.0).contains(&rps)) {
            return Err(self.err(
                k("requests_per_second"),
                format!("must be between 0.01 and 1000, got {rps}"),
            ));
        }
        let timeout = self.duration(&k("timeout"), raw.timeout.as_ref(), DEFAULT_HOSTED_TIMEOUT)?;
        if timeout < Duration::from_millis(100) {
            return Err(self.err(k("timeout"), "must be at least 100ms"));
        }
        let max_result_size = self.size(
            &k("max_result_size"),
            raw.max_result_size.as_ref(),
            DEFAULT_MAX_RESULT_SIZE,
        )?;
        let recheck_interval = self.duration(
            &k("recheck_interval"),
            raw.recheck_interval.as_ref(),
            DEFAULT_RECHECK_INTERVAL,
        )?;
        if recheck_interval < Duration::from_millis(100) {
            return Err(self.err(k("recheck_interval"), "must be at least 100ms"));
        }
        Ok(HostedConfig {
            base_url,
            key: source,
            concurrency,
            requests_per_second: rps,
            timeout,
            max_result_size,
            recheck_interval,
            retry,
        })
    }

    fn local(&self, key: &str, raw: RawLocal) -> Result<LocalConfig, ConfigError> {
        let engine = match raw.engine.as_deref() {
            None | Some("builtin") => LocalEngine::Builtin,
            Some("onnx") => LocalEngine::Onnx,
            Some("auto") => LocalEngine::Auto,
            Some(other) => {
                return Err(self.err(
                    format!("{key}.engine"),
                    format!("must be \"builtin\", \"onnx\" or \"auto\", got {other:?}"),
                ))
            }
        };
        if engine == LocalEngine::Onnx && raw.model.is_none() {
            return Err(self.err(
                format!("{key}.model"),
                "is missing: engine = \"onnx\" needs the path of an .onnx model (get one with `scripts/fetch-model.sh isnet-general-use models`)",
            ));
        }
        if let Some(k) = &raw.model_kind {
            if let Err(e) = k.parse::<crate::engine::onnx::ModelKind>() {
                return Err(self.err(format!("{key}.model_kind"), e.to_string()));
            }
        }
        let feather = raw.feather.unwrap_or(0.0);
        if !(0.0..=50.0).contains(&feather) {
            return Err(self.err(
                format!("{key}.feather"),
                "must be between 0 and 50 (pixels)",
            ));
        }
        Ok(LocalConfig {
            engine,
            model: raw.model.as_deref().map(|p| self.path(p)),
            model_kind: raw.model_kind,
            onnxruntime: raw.onnxruntime.as_deref().map(|p| self.path(p)),
            threads: self.int(
                &format!("{key}.threads"),
                raw.threads,
                DEFAULT_ONNX_THREADS as i64,
                1,
                256,
            )? as usize,
            parallel: self.int(
                &format!("{key}.parallel"),
                raw.parallel,
                DEFAULT_ONNX_PARALLEL as i64,
                1,
                64,
            )? as usize,
            memory_arena: raw.memory_arena.unwrap_or(false),
            remove_specks: raw.remove_specks.unwrap_or(false),
            fill_holes: raw.fill_holes.unwrap_or(false),
            feather: feather as f32,
            decontaminate: raw.decontaminate.unwrap_or(false),
        })
    }

    fn inbox(
        &self,
        i: usize,
        ri: RawInbox,
        providers: &BTreeMap<String, ProviderConfig>,
    ) -> Result<Inbox, ConfigError> {
        let k = |name: &str| format!("inbox[{i}].{name}");
        let path = match &ri.path {
            Some(p) => self.path(p),
            None => return Err(self.err(k("path"), "is missing: every [[inbox]] needs a path")),
        };
        let parent = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| path.clone());
        let sibling = |v: &Option<PathBuf>, default: &str| match v {
            Some(p) => self.path(p),
            None => parent.join(default),
        };
        let outbox = sibling(&ri.outbox, "outbox");
        let archive = sibling(&ri.archive, "archive");
        let rejected = sibling(&ri.rejected, "rejected");
        let failed = sibling(&ri.failed, "failed");
        let provider = ri.provider.unwrap_or_else(|| DEFAULT_PROVIDER.to_string());
        if !providers.contains_key(&provider) {
            let known: Vec<&str> = providers.keys().map(String::as_str).collect();
            return Err(self.err(
                k("provider"),
                format!(
                    "no provider named {provider:?}; add a [providers.{provider}] table or use one of: {}",
                    known.join(", ")
                ),
            ));
        }
        let output_format = match ri.output_format.as_deref() {
            None | Some("png") => OutputFormat::Png,
            Some("webp") => OutputFormat::Webp,
            Some(other) => {
                return Err(self.err(
                    k("output_format"),
                    format!("must be \"png\" or \"webp\", got {other:?}"),
                ))
            }
        };
        let webp_quality = self.int(
            &k("webp_quality"),
            ri.webp_quality,
            DEFAULT_WEBP_QUALITY as i64,
            1,
            100,
        )? as u8;
        let settle = self.duration(&k("settle"), ri.settle.as_ref(), DEFAULT_SETTLE)?;
        let after_success = match ri.after_success.as_deref() {
            None | Some("archive") => AfterSuccess::Archive,
            Some("delete") => AfterSuccess::Delete,
            Some("keep") => AfterSuccess::Keep,
            Some(other) => {
                return Err(self.err(
                    k("after_success"),
                    format!("must be \"archive\", \"delete\" or \"keep\", got {other:?}"),
                ))
            }
        };
        let watch = match ri.watch.as_deref() {
            None | Some("notify") => WatchMode::Notify,
            Some("poll") => WatchMode::Poll,
            Some(other) => {
                return Err(self.err(
                    k("watch"),
                    format!("must be \"notify\" or \"poll\", got {other:?}"),
                ))
            }
        };
        let poll_interval =
            self.duration(&k("poll_interval"), ri.poll_interval.as_ref(), DEFAULT_POLL)?;
        if poll_interval < Duration::from_millis(100) {
            return Err(self.err(k("poll_interval"), "must be at least 100ms"));
        }
        let mut gs = GlobSetBuilder::new();
        for (j, pat) in ri.ignore.iter().enumerate() {
            let g = Glob::new(pat)
                .map_err(|e| self.err(format!("{}[{j}]", k("ignore")), e.kind().to_string()))?;
            gs.add(g);
        }
        let ignore_set = gs
            .build()
            .map_err(|e| self.err(k("ignore"), e.to_string()))?;
        let name = match ri.name {
            Some(n) if !n.trim().is_empty() => n,
            Some(_) => return Err(self.err(k("name"), "must not be empty")),
            None => path.display().to_string(),
        };
        Ok(Inbox {
            name,
            path,
            outbox,
            archive,
            rejected,
            failed,
            provider,
            output_format,
            webp_quality,
            settle,
            recursive: ri.recursive.unwrap_or(true),
            after_success,
            watch,
            poll_interval,
            ignore: ri.ignore,
            ignore_set,
            options: ri.options,
        })
    }

    /// Folders must not nest in ways that loop (an outbox inside a watched
    /// inbox would be re-processed forever) or collide between inboxes.
    fn check_overlaps(&self, inboxes: &[Inbox]) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for (i, a) in inboxes.iter().enumerate() {
            if !names.insert(a.name.clone()) {
                return Err(self.err(
                    format!("inbox[{i}].name"),
                    format!("{:?} is used twice", a.name),
                ));
            }
            for (key, dir) in a.managed_folders().iter().skip(1) {
                if *dir == a.path {
                    return Err(self.err(
                        format!("inbox[{i}].{key}"),
                        "must not be the inbox folder itself",
                    ));
                }
                if dir.starts_with(&a.path) {
                    return Err(self.err(
                        format!("inbox[{i}].{key}"),
                        format!(
                            "{} lies inside the inbox {}; it would be picked up again. Put it beside the inbox instead",
                            dir.display(),
                            a.path.display()
                        ),
                    ));
                }
                if a.path.starts_with(dir) {
                    return Err(self.err(
                        format!("inbox[{i}].{key}"),
                        format!("the inbox {} lies inside it", a.path.display()),
                    ));
                }
            }
            for (j, b) in inboxes.iter().enumerate() {
                if i != j && (a.path.starts_with(&b.path)) {
                    return Err(self.err(
                        format!("inbox[{i}].path"),
                        format!(
                            "{} lies inside inbox[{j}] ({})",
                            a.path.display(),
                            b.path.display()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn expand_home(p: &Path) -> PathBuf {
    if let Ok(rest) = p.strip_prefix("~") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    p.to_path_buf()
}

/// Lexical normalisation (`a/./b/../c` → `a/c`) without touching the disk.
pub fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Parse "10 MiB", "500KB", "2.5 GB", "1048576".
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| {
        format!(
            "cannot read {s:?} as a size; write e.g. \"10 MiB\", \"500 KB\" or a number of bytes"
        )
    })?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?}; use B, KB, KiB, MB, MiB, GB or GiB"
            ))
        }
    };
    let v = n * mult;
    if !(v >= 1.0 && v.is_finite() && v < 1e18) {
        return Err(format!(
            "{s:?} is not a usable size (must be at least 1 byte)"
        ));
    }
    Ok(v.round() as u64)
}

/// Parse "2s", "500ms", "5m", "1h 30m".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("cannot read {s:?} as a duration ({e}); write e.g. \"500ms\", \"2s\" or \"5m\"")
    })
}

// ---------------------------------------------------------------------------
// Folders.

/// Create missing folders and check that every configured folder is a
/// writable directory. Returns one line per folder created.
pub fn prepare_folders(cfg: &Config) -> Result<Vec<String>, ConfigError> {
    let origin = cfg
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "built-in defaults".into());
    let mut created = Vec::new();
    let mut all: Vec<(String, PathBuf)> = vec![("state_dir".into(), cfg.state_dir.clone())];
    if let Some(l) = &cfg.log_dir {
        all.push(("log_dir".into(), l.clone()));
    }
    for (i, ib) in cfg.inboxes.iter().enumerate() {
        for (key, dir) in ib.managed_folders() {
            all.push((format!("inbox[{i}].{key}"), dir.to_path_buf()));
        }
    }
    for (key, dir) in all {
        let folder_err = |message: String| ConfigError::Folder {
            origin: origin.clone(),
            key: key.clone(),
            path: dir.clone(),
            message,
        };
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => match std::fs::metadata(&dir) {
                Ok(t) if t.is_dir() => {}
                _ => {
                    return Err(folder_err(
                        "is a symlink that does not lead to a folder".into(),
                    ))
                }
            },
            Ok(_) => return Err(folder_err("exists but is not a folder".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| folder_err(format!("cannot create it: {e}")))?;
                created.push(format!("created folder {} ({key})", dir.display()));
            }
            Err(e) => return Err(folder_err(format!("cannot read it: {e}"))),
        }
        crate::fsutil::check_writable(&dir).map_err(|e| {
            folder_err(format!(
                "is not writable by this user ({e}); fix its permissions or point `{key}` elsewhere"
            ))
        })?;
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        from_str(
            text,
            Some(Path::new("/etc/cutout/cutout.toml")),
            Path::new("/srv/cutout"),
        )
    }

    #[test]
    fn defaults_without_a_file() {
        let c = from_str("", None, Path::new("/work")).expect("defaults load");
        assert_eq!(c.inboxes.len(), 1);
        let ib = &c.inboxes[0];
        assert_eq!(ib.path, Path::new("/work/inbox"));
        assert_eq!(ib.outbox, Path::new("/work/outbox"));
        assert_eq!(ib.archive, Path::new("/work/archive"));
        assert_eq!(ib.rejected, Path::new("/work/rejected"));
        assert_eq!(ib.failed, Path::new("/work/failed"));
        assert_eq!(c.state_dir, Path::new("/work/.cutout"));
        assert_eq!(c.limits.max_file_size, 10 * 1024 * 1024);
        assert_eq!(ib.after_success, AfterSuccess::Archive);
        assert_eq!(ib.provider, "local");
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let c = parse("[[inbox]]\npath = \"drop/in\"\noutbox = \"../out\"\n").expect("loads");
        assert_eq!(c.inboxes[0].path, Path::new("/srv/cutout/drop/in"));
        assert_eq!(c.inboxes[0].outbox, Path::new("/srv/out"));
        assert_eq!(
            c.inboxes[0].rejected,
            Path::new("/srv/cutout/drop/rejected")
        );
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let e = parse("[limits]\nmax_fil_size = \"1 MiB\"\n").expect_err("must fail");
        let s = e.to_string();
        assert!(s.contains("/etc/cutout/cutout.toml"), "{s}");
        assert!(s.contains("max_fil_size"), "{s}");
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key) in [
            (
                "[limits]\nmax_file_size = \"10 MiBs\"\n",
                "limits.max_file_size",
            ),
            ("[retry]\ninitial_delay = \"soon\"\n", "retry.initial_delay"),
            ("[queue]\nconcurrency = 0\n", "queue.concurrency"),
            (
                "[[inbox]]\npath = \"in\"\nwebp_quality = 101\n",
                "inbox[0].webp_quality",
            ),
            (
                "[[inbox]]\npath = \"in\"\noutput_format = \"gif\"\n",
                "inbox[0].output_format",
            ),
            (
                "[[inbox]]\npath = \"in\"\nprovider = \"nope\"\n",
                "inbox[0].provider",
            ),
            (
                "[[inbox]]\npath = \"in\"\noutbox = \"in/out\"\n",
                "inbox[0].outbox",
            ),
            ("[providers.x]\nkind = \"magic\"\n", "providers.x.kind"),
        ] {
            let s = parse(text).expect_err(text).to_string();
            assert!(s.contains(key), "{text:?} → {s}");
            assert!(s.contains("cutout.toml"), "{s}");
        }
    }

    #[test]
    fn http_listen_is_checked() {
        let c = parse("[http]\nlisten = \"127.0.0.1:9808\"\n").expect("loads");
        assert_eq!(c.http.listen, Some("127.0.0.1:9808".parse().expect("addr")));
        assert_eq!(parse("").expect("loads").http.listen, None);
        for bad in [
            "[http]\nlisten = \"localhost\"\n",
            "[http]\nlisten = \"127.0.0.1:99999\"\n",
        ] {
            let s = parse(bad).expect_err(bad).to_string();
            assert!(s.contains("`http.listen`"), "{s}");
            assert!(s.contains("cutout.toml"), "{s}");
        }
        let s = parse("[http]\nlistn = \"127.0.0.1:1\"\n")
            .expect_err("unknown key")
            .to_string();
        assert!(s.contains("listn"), "{s}");
    }

    #[test]
    fn systemd_directories_are_defaults_only() {
        let dirs = SystemdDirs {
            state: Some(PathBuf::from("/var/lib/cutout")),
            logs: Some(PathBuf::from("/var/log/cutout")),
        };
        let f = Some(Path::new("/etc/cutout/cutout.toml"));
        let c = from_str_with("", f, Path::new("/etc/cutout"), &dirs).expect("loads");
        assert_eq!(c.state_dir, Path::new("/var/lib/cutout"));
        assert_eq!(c.log_dir.as_deref(), Some(Path::new("/var/log/cutout")));
        let c = from_str_with(
            "state_dir = \"/srv/state\"\nlog_dir = \"logs\"\n",
            f,
            Path::new("/etc/cutout"),
            &dirs,
        )
        .expect("loads");
        assert_eq!(c.state_dir, Path::new("/srv/state"));
        assert_eq!(c.log_dir.as_deref(), Some(Path::new("/etc/cutout/logs")));
        let c = from_str("", f, Path::new("/etc/cutout")).expect("loads");
        assert_eq!(c.state_dir, Path::new("/etc/cutout/.cutout"));
        assert_eq!(c.log_dir, None);
    }

    #[test]
    fn provider_digests_change_only_with_the_table() {
        let a = provider_digests(
            "[providers.local]\nkind = \"local\"\n[providers.x]\nkind = \"local\"\n",
        );
        let b = provider_digests(
            "# comment\n[providers.x]\nkind = \"local\"\n\n[providers.local]\nkind=\"local\"\n",
        );
        assert_eq!(a, b, "formatting and order do not matter");
        assert_eq!(a.len(), 2);
        let c = provider_digests("[providers.x]\nkind = \"other\"\n");
        assert_ne!(a.get("x"), c.get("x"));
        assert!(provider_digests("not toml [").is_empty());
    }

    #[test]
    fn hosted_providers_with_their_defaults() {
        let c = parse(
            "[providers.r]\nkind = \"rembg-com\"\n[providers.v]\nkind = \"verging\"\napi_key_file = \"vkey\"\npresigned_upload = true\n",
        )
        .expect("loads");
        match &c.providers["r"].kind {
            ProviderKind::RembgCom(r) => {
                assert_eq!(r.hosted.base_url, DEFAULT_REMBG_URL);
                assert_eq!(r.usage_url, DEFAULT_REMBG_USAGE_URL);
                assert_eq!(r.hosted.concurrency, DEFAULT_HOSTED_CONCURRENCY);
                assert!(matches!(
                    &r.hosted.key,
                    ApiKeySource::Env { var, explicit: false } if var == DEFAULT_REMBG_KEY_ENV
                ));
            }
            other => panic!("{other:?}"),
        }
        match &c.providers["v"].kind {
            ProviderKind::Verging(v) => {
                assert_eq!(v.poll_interval, DEFAULT_VERGING_POLL);
                assert!(v.presigned_upload);
                assert!(matches!(
                    &v.hosted.key,
                    ApiKeySource::File { path, credential: Some(n) }
                        if path == Path::new("/srv/cutout/vkey") && n == "vkey"
                ));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hosted_provider_mistakes_name_the_key() {
        for (text, key) in [
            (
                "[providers.r]\nkind = \"rembg-com\"\napi_kye = \"x\"\n",
                "api_kye",
            ),
            (
                "[providers.r]\nkind = \"rembg-com\"\nbase_url = \"http://api.example.com\"\n",
                "providers.r.base_url",
            ),
            (
                "[providers.r]\nkind = \"rembg-com\"\nusage_url = \"ftp://x\"\n",
                "providers.r.usage_url",
            ),
            (
                "[providers.r]\nkind = \"rembg-com\"\nconcurrency = 0\n",
                "providers.r.concurrency",
            ),
            (
                "[providers.r]\nkind = \"rembg-com\"\nrequests_per_second = 0\n",
                "providers.r.requests_per_second",
            ),
            (
                "[providers.r]\nkind = \"rembg-com\"\npoll_interval = \"1s\"\n",
                "poll_interval",
            ),
            (
                "[providers.v]\nkind = \"verging\"\njob_timeout = \"1ms\"\n",
                "providers.v.job_timeout",
            ),
            (
                "[providers.v]\nkind = \"verging\"\napi_key = \"a\"\napi_key_env = \"B\"\n",
                "providers.v",
            ),
        ] {
            let s = parse(text).expect_err(text).to_string();
            assert!(s.contains(key), "{text:?} → {s}");
            assert!(s.contains("cutout.toml"), "{s}");
        }
        // Plain http is fine on loopback (tests, local proxies).
        assert!(parse(
            "[providers.r]\nkind = \"rembg-com\"\nbase_url = \"http://127.0.0.1:8080/\"\n"
        )
        .is_ok());
    }

    #[test]
    fn example_config_documents_the_hosted_defaults() {
        // Uncomment the two provider examples and load them: the documented
        // values must be the defaults.
        let text = include_str!("../config.example.toml");
        let mut out = String::new();
        let mut in_block = false;
        for line in text.lines() {
            if line == "# [providers.rembg]" || line == "# [providers.verging]" {
                in_block = true;
            } else if line.is_empty() {
                in_block = false;
            }
            match line.strip_prefix("# ") {
                Some(rest) if in_block && !rest.starts_with('#') => out.push_str(rest),
                _ => out.push_str(line),
            }
            out.push('\n');
        }
        let c = parse(&out).unwrap_or_else(|e| panic!("{e}"));
        let ProviderKind::RembgCom(r) = &c.providers["rembg"].kind else {
            panic!("rembg example missing");
        };
        let ProviderKind::Verging(v) = &c.providers["verging"].kind else {
            panic!("verging example missing");
        };
        assert_eq!(r.hosted.base_url, DEFAULT_REMBG_URL);
        assert_eq!(r.usage_url, DEFAULT_REMBG_USAGE_URL);
        assert_eq!(v.hosted.base_url, DEFAULT_VERGING_URL);
        for h in [&r.hosted, &v.hosted] {
            assert_eq!(h.concurrency, DEFAULT_HOSTED_CONCURRENCY);
            assert_eq!(h.requests_per_second, DEFAULT_HOSTED_RPS);
            assert_eq!(h.timeout, DEFAULT_HOSTED_TIMEOUT);
            assert_eq!(h.max_result_size, DEFAULT_MAX_RESULT_SIZE);
            assert_eq!(h.recheck_interval, DEFAULT_RECHECK_INTERVAL);
        }
        assert_eq!(v.poll_interval, DEFAULT_VERGING_POLL);
        assert_eq!(v.job_timeout, DEFAULT_JOB_TIMEOUT);
        assert!(!v.presigned_upload);
    }

    #[test]
    fn inline_keys_never_show_in_debug() {
        let c = parse("[providers.r]\nkind = \"rembg-com\"\napi_key = \"sk-very-secret\"\n")
            .expect("loads");
        let dbg = format!("{:?} {:?}", c, c.providers["r"].kind);
        assert!(!dbg.contains("sk-very-secret"), "{dbg}");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("10 MiB"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("500KB"), Ok(500_000));
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("0").is_err());
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("soon").is_err());
    }
}
