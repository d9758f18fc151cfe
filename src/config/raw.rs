//! The raw serde shapes of the config file, exactly as written: unknown
//! keys are rejected here, everything else is checked in `check`.
//!
//! Owns: field names and TOML types. Must not: hold defaults, resolve
//! paths or judge values.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// `[providers.NAME]` with `kind = "local"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLocal {
    #[allow(dead_code)]
    pub(super) kind: String,
    pub(super) engine: Option<String>,
    pub(super) model: Option<PathBuf>,
    pub(super) model_kind: Option<String>,
    pub(super) onnxruntime: Option<PathBuf>,
    pub(super) threads: Option<i64>,
    pub(super) parallel: Option<i64>,
    pub(super) memory_arena: Option<bool>,
    pub(super) remove_specks: Option<bool>,
    pub(super) fill_holes: Option<bool>,
    pub(super) feather: Option<f64>,
    pub(super) decontaminate: Option<bool>,
}
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) state_dir: Option<PathBuf>,
    /// `state = "postgres://…"` or `[state]` (checked in `state`).
    pub(super) state: Option<toml::Value>,
    pub(super) models_dir: Option<PathBuf>,
    pub(super) log_dir: Option<PathBuf>,
    pub(super) rescan_interval: Option<HumanValue>,
    pub(super) shutdown_grace: Option<HumanValue>,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) queue: RawQueue,
    #[serde(default)]
    pub(super) retry: RawRetry,
    #[serde(default)]
    pub(super) inbox: Vec<RawInbox>,
    #[serde(default)]
    pub(super) providers: BTreeMap<String, toml::Table>,
    #[serde(default)]
    pub(super) http: RawHttp,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub(super) listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_file_size: Option<HumanValue>,
    pub(super) max_width: Option<i64>,
    pub(super) max_height: Option<i64>,
    pub(super) max_pixels: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    pub(super) concurrency: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    pub(super) max_attempts: Option<i64>,
    pub(super) initial_delay: Option<HumanValue>,
    pub(super) max_delay: Option<HumanValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInbox {
    pub(super) name: Option<String>,
    pub(super) path: Option<PathBuf>,
    pub(super) outbox: Option<PathBuf>,
    pub(super) archive: Option<PathBuf>,
    pub(super) rejected: Option<PathBuf>,
    pub(super) failed: Option<PathBuf>,
    pub(super) provider: Option<String>,
    pub(super) output_format: Option<String>,
    pub(super) webp_quality: Option<i64>,
    pub(super) settle: Option<HumanValue>,
    pub(super) empty_grace: Option<HumanValue>,
    pub(super) recursive: Option<bool>,
    pub(super) after_success: Option<String>,
    pub(super) watch: Option<String>,
    pub(super) poll_interval: Option<HumanValue>,
    #[serde(default)]
    pub(super) ignore: Vec<String>,
    #[serde(default)]
    pub(super) options: toml::Table,
    /// `[[inbox.output]]` tables (checked by `finish::check_outputs`).
    #[serde(default)]
    pub(super) output: Vec<crate::finish::RawOutput>,
}

/// `[providers.NAME]` with `kind = "rembg-com"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRembg {
    #[allow(dead_code)]
    pub(super) kind: String,
    pub(super) base_url: Option<String>,
    pub(super) usage_url: Option<String>,
    pub(super) api_key_env: Option<String>,
    pub(super) api_key_file: Option<PathBuf>,
    pub(super) api_key: Option<String>,
    pub(super) concurrency: Option<i64>,
    pub(super) requests_per_second: Option<RawRate>,
    pub(super) max_requests_per_second: Option<f64>,
    pub(super) timeout: Option<HumanValue>,
    pub(super) max_result_size: Option<HumanValue>,
    pub(super) recheck_interval: Option<HumanValue>,
}

/// `[providers.NAME]` with `kind = "verging"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVerging {
    #[allow(dead_code)]
    pub(super) kind: String,
    pub(super) base_url: Option<String>,
    pub(super) api_key_env: Option<String>,
    pub(super) api_key_file: Option<PathBuf>,
    pub(super) api_key: Option<String>,
    pub(super) concurrency: Option<i64>,
    pub(super) requests_per_second: Option<RawRate>,
    pub(super) max_requests_per_second: Option<f64>,
    pub(super) timeout: Option<HumanValue>,
    pub(super) max_result_size: Option<HumanValue>,
    pub(super) recheck_interval: Option<HumanValue>,
    pub(super) poll_interval: Option<HumanValue>,
    pub(super) job_timeout: Option<HumanValue>,
    pub(super) presigned_upload: Option<bool>,
}

/// The keys both hosted kinds share, borrowed from either raw shape.
pub(super) struct RawHosted<'a> {
    pub(super) api_key_env: &'a Option<String>,
    pub(super) api_key_file: &'a Option<PathBuf>,
    pub(super) api_key: &'a Option<String>,
    pub(super) concurrency: Option<i64>,
    pub(super) requests_per_second: &'a Option<RawRate>,
    pub(super) max_requests_per_second: Option<f64>,
    pub(super) timeout: &'a Option<HumanValue>,
    pub(super) max_result_size: &'a Option<HumanValue>,
    pub(super) recheck_interval: &'a Option<HumanValue>,
}

/// The [`RawHosted`] view of a raw hosted-provider table (the kinds keep
/// their own structs: serde's `flatten` does not work with
/// `deny_unknown_fields`).
macro_rules! hosted_view {
    ($($raw:ty),*) => {$(
        impl $raw {
            pub(super) fn hosted(&self) -> RawHosted<'_> {
                RawHosted {
                    api_key_env: &self.api_key_env,
                    api_key_file: &self.api_key_file,
                    api_key: &self.api_key,
                    concurrency: self.concurrency,
                    requests_per_second: &self.requests_per_second,
                    max_requests_per_second: self.max_requests_per_second,
                    timeout: &self.timeout,
                    max_result_size: &self.max_result_size,
                    recheck_interval: &self.recheck_interval,
                }
            }
        }
    )*};
}
hosted_view!(RawRembg, RawVerging);

/// `requests_per_second`: a number or the word `"auto"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum RawRate {
    Number(f64),
    Text(String),
}

/// A size or duration: a human string ("10 MiB", "2s") or a bare number
/// (bytes, seconds).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum HumanValue {
    Int(i64),
    Float(f64),
    Text(String),
}

// ---------------------------------------------------------------------------
// Loading.
