//! The built-in defaults of every key (also documented in
//! config.example.toml: keep them in step; a unit test loads the example).
//!
//! Owns: default values only. Must not: hold logic.

use std::time::Duration;

pub const DEFAULT_ONNX_THREADS: usize = 2;
pub const DEFAULT_ONNX_PARALLEL: usize = 1;
pub const DEFAULT_MAX_FILE_SIZE: u64 = 10 * 1024 * 1024;
/// `[http] thumbnail_cache`: the review page's thumbnail cache bound.
pub const DEFAULT_THUMBNAIL_CACHE: u64 = 256 * 1024 * 1024;
pub const DEFAULT_MAX_SIDE: u32 = 10_000;
pub const DEFAULT_MAX_PIXELS: u64 = 50_000_000;
pub const DEFAULT_CONCURRENCY: usize = 4;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
pub const DEFAULT_INITIAL_DELAY: Duration = Duration::from_secs(1);
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(120);
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(2);
pub const DEFAULT_EMPTY_GRACE: Duration = Duration::from_secs(60);
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
/// `requests_per_second = "auto"` starts here (the former fixed default).
pub const DEFAULT_AUTO_START_RPS: f64 = 2.0;
/// `max_requests_per_second`: auto mode never goes above it.
pub const DEFAULT_MAX_RPS: f64 = 25.0;
/// Default `concurrency` in auto mode: high enough that pictures in flight
/// do not cap the learned rate (rate ≤ in flight / answer time).
pub const DEFAULT_AUTO_CONCURRENCY: usize = 8;
pub const DEFAULT_HOSTED_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_RESULT_SIZE: u64 = 100 * 1024 * 1024;
pub const DEFAULT_RECHECK_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_VERGING_POLL: Duration = Duration::from_secs(5);
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(600);
pub(super) const KNOWN_KINDS: &str =
    "\"local\", \"rembg-com\", \"verging\", \"remove-bg\", \"rembg-server\"";
