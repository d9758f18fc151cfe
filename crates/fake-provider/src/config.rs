//! The fake's settings and its fault switches: [`Config`] (keys, latency, rate
//! limits, credits, verging job processing time) and [`FaultRule`] /
//! [`Fault`] (what to break, for which API/endpoint/file, how many times).
//!
//! Everything here is plain data. The running server keeps one `Config`
//! behind a mutex; the handle's `update`/`set_*` methods change it while the
//! server runs, and every request reads the current value.

use std::path::PathBuf;
use std::time::Duration;

use crate::peers::PeerConfig;

/// Which vendor API a request belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// rembg.com: `POST /rmbg`, `GET /api/membership-usage`.
    Rembg,
    /// verging.ai: `/api/v1/...`, plus its storage (`PUT /upload/..`, `GET /files/..`).
    Verging,
    /// remove.bg: `POST /v1.0/removebg`, `GET /v1.0/account`.
    #[serde(rename = "remove-bg")]
    RemoveBg,
    /// rembg's own server (`rembg s`): `POST /api/remove`, `GET /openapi.json`.
    #[serde(rename = "rembg-server")]
    RembgServer,
}

/// One endpoint of the fake (used to target faults and in the request log).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// rembg `POST /rmbg` (charged).
    RembgRemove,
    /// rembg `GET /api/membership-usage`.
    RembgUsage,
    /// verging `GET /api/v1/auth/me`.
    VergingMe,
    /// verging `POST /api/v1/background-removal/create-job` (charged).
    VergingCreateJob,
    /// verging `GET /api/v1/background-removal/jobs`.
    VergingJobs,
    /// verging `POST /api/v1/upload-video` (asks for a presigned upload URL).
    VergingUploadUrl,
    /// verging storage `PUT /upload/<token>` (no auth).
    VergingUploadPut,
    /// verging storage `GET /files/<name>` (results, inputs; no auth).
    VergingFile,
    /// remove.bg `POST /v1.0/removebg` (charged).
    RemoveBgRemove,
    /// remove.bg `GET /v1.0/account`.
    RemoveBgAccount,
    /// rembg server `POST /api/remove` (counted as charged: work done).
    RembgServerRemove,
    /// rembg server `GET /openapi.json`.
    RembgServerOpenapi,
    /// Anything else (answered 404/405).
    Unknown,
}

impl Endpoint {
    /// The API this endpoint belongs to (`None` for [`Endpoint::Unknown`]).
    pub fn api(self) -> Option<Api> {
        match self {
            Endpoint::RembgRemove | Endpoint::RembgUsage => Some(Api::Rembg),
            Endpoint::RemoveBgRemove | Endpoint::RemoveBgAccount => Some(Api::RemoveBg),
            Endpoint::RembgServerRemove | Endpoint::RembgServerOpenapi => Some(Api::RembgServer),
            Endpoint::Unknown => None,
            _ => Some(Api::Verging),
        }
    }

    /// Whether this endpoint charges a credit on success.
    pub fn is_charging(self) -> bool {
        matches!(
            self,
            Endpoint::RembgRemove
                | Endpoint::VergingCreateJob
                | Endpoint::RemoveBgRemove
                | Endpoint::RembgServerRemove
        )
    }

    /// Whether a success answer of this endpoint is an image.
    pub fn returns_image(self) -> bool {
        matches!(
            self,
            Endpoint::RembgRemove
                | Endpoint::VergingFile
                | Endpoint::RemoveBgRemove
                | Endpoint::RembgServerRemove
        )
    }

    /// Whether the endpoint checks the API key.
    pub fn is_authenticated(self) -> bool {
        !matches!(
            self,
            Endpoint::VergingUploadPut | Endpoint::VergingFile | Endpoint::Unknown
        )
    }

    /// Classifies a method + path the way the router does (for requests the
    /// router rejected before a handler ran).
    pub fn classify(path: &str) -> Endpoint {
        match path {
            "/rmbg" => Endpoint::RembgRemove,
            "/api/membership-usage" => Endpoint::RembgUsage,
            "/api/v1/auth/me" => Endpoint::VergingMe,
            "/api/v1/background-removal/create-job" => Endpoint::VergingCreateJob,
            "/api/v1/background-removal/jobs" => Endpoint::VergingJobs,
            "/api/v1/upload-video" => Endpoint::VergingUploadUrl,
            "/v1.0/removebg" => Endpoint::RemoveBgRemove,
            "/v1.0/account" => Endpoint::RemoveBgAccount,
            "/api/remove" => Endpoint::RembgServerRemove,
            "/openapi.json" => Endpoint::RembgServerOpenapi,
            p if p.starts_with("/upload/") => Endpoint::VergingUploadPut,
            p if p.starts_with("/files/") => Endpoint::VergingFile,
            _ => Endpoint::Unknown,
        }
    }
}

/// How a 429 tells the client when to come back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RetryAfter {
    /// No `Retry-After` header (the rembg docs mention none).
    #[default]
    None,
    /// `Retry-After: <seconds>`, computed from the token bucket (at least 1).
    Seconds,
    /// `Retry-After: <HTTP-date>`, computed from the token bucket.
    HttpDate,
    /// `Retry-After: <n>` with a fixed value.
    FixedSeconds(u64),
}

/// A token-bucket rate limit: `per_second` tokens per second, bucket size
/// `per_second` (so a burst of `per_second` requests passes at once).
///
/// rembg counts only `POST /rmbg`; verging counts every `/api/v1/*` request
/// (auth/me, create-job, job polls, upload-video). Storage URLs are not
/// limited. A rejected request does not take a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second (0 = every request is refused).
    pub per_second: u32,
    /// Which `Retry-After` header the 429 carries.
    pub retry_after: RetryAfter,
}

impl RateLimit {
    /// `per_second` requests/s, no `Retry-After` header.
    pub fn per_second(per_second: u32) -> Self {
        RateLimit {
            per_second,
            retry_after: RetryAfter::None,
        }
    }

    /// Same limit, with the given `Retry-After` form.
    pub fn with_retry_after(mut self, retry_after: RetryAfter) -> Self {
        self.retry_after = retry_after;
        self
    }
}

/// Per-API switches.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// The one valid key (rembg: `x-api-key`; verging: `Authorization: ApiKey <key>`).
    pub key: String,
    /// Added before answering every request of this API (not 429s of the limiter).
    pub latency: Duration,
    /// Extra uniformly random latency in `0..=latency_jitter`.
    pub latency_jitter: Duration,
    /// Optional rate limit (429 beyond it).
    pub rate_limit: Option<RateLimit>,
}

/// rembg.com credit counters, as reported by `GET /api/membership-usage`.
///
/// Each successful `POST /rmbg` takes one credit: first from the included
/// credits, then from the prepaid ones. With none left, `/rmbg` answers 429
/// "You've reached your monthly limit…".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RembgCredits {
    /// The plan's included credits per billing cycle (`credits`, `includedCredits`).
    pub included: u64,
    /// Included credits still left (`remainingIncludedCredits`).
    pub remaining_included: u64,
    /// Prepaid credits left (`prepaidCredits`).
    pub prepaid: u64,
}

impl RembgCredits {
    /// Credits still available (`remainingIncludedCredits + prepaidCredits`).
    pub fn available(&self) -> u64 {
        self.remaining_included + self.prepaid
    }
}

/// The whole configuration of a running fake. Every field can be changed at
/// runtime through [`crate::FakeProvider::update`] (except `log_file`,
/// which is opened once at start).
#[derive(Clone, Debug)]
pub struct Config {
    /// rembg.com switches (default key `test-rembg-key`).
    pub rembg: ApiConfig,
    /// verging.ai switches (default key `test-verging-key`).
    pub verging: ApiConfig,
    /// remove.bg switches (default key `test-remove-bg-key`, `X-Api-Key`).
    pub remove_bg: ApiConfig,
    /// rembg server switches. An empty key (the default) means no auth, as
    /// the real server; a key stands for a proxy in front of it that wants
    /// `Authorization: Bearer <key>`.
    pub rembg_server: ApiConfig,
    /// remove.bg credits and rate window.
    pub peers: PeerConfig,
    /// rembg.com credits (default 100 000 included, 0 prepaid).
    pub rembg_credits: RembgCredits,
    /// Plan label in the rembg usage answer (`membership`).
    pub rembg_membership: String,
    /// verging.ai credits (`credits` in `/auth/me`; default 100 000).
    pub verging_credits: u64,
    /// `email` in verging `/auth/me`.
    pub verging_email: String,
    /// `name` in verging `/auth/me`.
    pub verging_name: String,
    /// How long a verging job takes from creation to `COMPLETED` (the first
    /// fifth of it `PENDING`, then `PROCESSING` with a rising progress).
    /// Captured per job when it is created. Default 0 (done at once).
    pub job_processing: Duration,
    /// Injected faults, checked in order; `Next(n)` rules count down and are
    /// removed when spent.
    pub faults: Vec<FaultRule>,
    /// Append every request-log entry as one JSON line to this file (opened
    /// at start, written and flushed per line).
    pub log_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rembg: ApiConfig {
                key: "test-rembg-key".into(),
                latency: Duration::ZERO,
                latency_jitter: Duration::ZERO,
                rate_limit: None,
            },
            verging: ApiConfig {
                key: "test-verging-key".into(),
                latency: Duration::ZERO,
                latency_jitter: Duration::ZERO,
                rate_limit: None,
            },
            remove_bg: ApiConfig {
                key: "test-remove-bg-key".into(),
                latency: Duration::ZERO,
                latency_jitter: Duration::ZERO,
                rate_limit: None,
            },
            rembg_server: ApiConfig {
                key: String::new(),
                latency: Duration::ZERO,
                latency_jitter: Duration::ZERO,
                rate_limit: None,
            },
            peers: PeerConfig::default(),
            rembg_credits: RembgCredits {
                included: 100_000,
                remaining_included: 100_000,
                prepaid: 0,
            },
            rembg_membership: "Pro".into(),
            verging_credits: 100_000,
            verging_email: "fake@example.test".into(),
            verging_name: "Fake Provider".into(),
            job_processing: Duration::ZERO,
            faults: Vec::new(),
            log_file: None,
        }
    }
}

impl Config {
    /// The switches of one API.
    pub fn api(&self, api: Api) -> &ApiConfig {
        match api {
            Api::Rembg => &self.rembg,
            Api::Verging => &self.verging,
            Api::RemoveBg => &self.remove_bg,
            Api::RembgServer => &self.rembg_server,
        }
    }

    /// The switches of one API, mutable.
    pub fn api_mut(&mut self, api: Api) -> &mut ApiConfig {
        match api {
            Api::Rembg => &mut self.rembg,
            Api::Verging => &mut self.verging,
            Api::RemoveBg => &mut self.remove_bg,
            Api::RembgServer => &mut self.rembg_server,
        }
    }

    /// Sets the same valid key for the keyed APIs (not the rembg server,
    /// which has none unless set on its own).
    pub fn with_key(mut self, key: &str) -> Self {
        self.rembg.key = key.into();
        self.verging.key = key.into();
        self.remove_bg.key = key.into();
        self
    }

    /// Sets the same per-request latency for both APIs.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.rembg.latency = latency;
        self.verging.latency = latency;
        self.remove_bg.latency = latency;
        self.rembg_server.latency = latency;
        self
    }

    /// Sets the same rate limit for both APIs.
    pub fn with_rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.rembg.rate_limit = limit;
        self.verging.rate_limit = limit;
        self.remove_bg.rate_limit = limit;
        self.rembg_server.rate_limit = limit;
        self
    }

    /// Sets the verging job processing time.
    pub fn with_job_processing(mut self, d: Duration) -> Self {
        self.job_processing = d;
        self
    }

    /// Adds a fault rule.
    pub fn with_fault(mut self, rule: FaultRule) -> Self {
        self.faults.push(rule);
        self
    }
}

/// Which encoding an opaque ("no alpha") result uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opaque {
    /// RGB JPEG (`image/jpeg`).
    Jpeg,
    /// RGB PNG without alpha channel (`image/png`).
    Png,
}

/// What an injected fault does.
///
/// Faults act in one of three phases, and a rule only counts (and is only
/// used up) where its phase and endpoint apply:
/// - before processing (after the rate limiter and reading the body, before
///   the key check): `Delay` (then goes on), and one of `Status`,
///   `RateLimited`, `Unauthorized`, `QuotaExhausted`, `Invalid`,
///   `DropConnection` — nothing is charged;
/// - when a verging job is created: `JobFails`, `JobNeverFinishes`;
/// - on a 2xx answer, after charging: `DropAfterCharge`, `Truncate`,
///   `GarbageHtml`, `GarbageBytes`, `NoAlpha`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Wait this long before going on as usual (on top of the latency):
    /// a slow answer for one file or endpoint. Does not stop another
    /// "before" fault from acting on the same request.
    Delay(Duration),
    /// Answer this status (e.g. 500/502/503) with the API's JSON error shape.
    Status(u16),
    /// Answer 429 "too many requests" (rembg: "You're making requests too
    /// quickly…"; verging: error_code 42900).
    RateLimited(RetryAfter),
    /// Answer 401 as for a bad key (authenticated endpoints only).
    Unauthorized,
    /// Answer as if out of credits: rembg 429 "You've reached your monthly
    /// limit…", verging 402 with error_code 40001 (charging endpoints only).
    QuotaExhausted,
    /// Answer 400 with this validation message (charging endpoints and
    /// verging upload-video only).
    Invalid(String),
    /// Close the connection without any answer, before processing.
    DropConnection,
    /// Process and charge, then close the connection without any answer
    /// (charging endpoints only): the picture is paid for but the client
    /// never learns the result / job id.
    DropAfterCharge,
    /// Send the head with the full `Content-Length`, half the body, then
    /// close the connection.
    Truncate,
    /// 200 `text/html` page instead of the image (image endpoints only).
    GarbageHtml,
    /// 200 with the image content type but random bytes (image endpoints only).
    GarbageBytes,
    /// 200 with an opaque RGB image (no alpha channel) made from the input
    /// (image endpoints only).
    NoAlpha(Opaque),
    /// The verging job created by this request ends `FAILED` after its
    /// processing time (create-job only).
    JobFails,
    /// The verging job created by this request stays `PROCESSING` forever
    /// (create-job only).
    JobNeverFinishes,
}

/// When in the life of a request a fault acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Pre,
    Job,
    Post,
}

impl Fault {
    pub(crate) fn phase(&self) -> Phase {
        match self {
            Fault::Delay(_)
            | Fault::Status(_)
            | Fault::RateLimited(_)
            | Fault::Unauthorized
            | Fault::QuotaExhausted
            | Fault::Invalid(_)
            | Fault::DropConnection => Phase::Pre,
            Fault::JobFails | Fault::JobNeverFinishes => Phase::Job,
            Fault::DropAfterCharge
            | Fault::Truncate
            | Fault::GarbageHtml
            | Fault::GarbageBytes
            | Fault::NoAlpha(_) => Phase::Post,
        }
    }

    /// Whether this fault can act on that endpoint at all.
    pub(crate) fn applies_to(&self, ep: Endpoint) -> bool {
        match self {
            Fault::Delay(_) | Fault::Status(_) | Fault::DropConnection | Fault::Truncate => {
                ep != Endpoint::Unknown
            }
            Fault::RateLimited(_) | Fault::Unauthorized => ep.is_authenticated(),
            Fault::QuotaExhausted => ep.is_charging() && ep != Endpoint::RembgServerRemove,
            Fault::DropAfterCharge => ep.is_charging(),
            Fault::Invalid(_) => ep.is_charging() || ep == Endpoint::VergingUploadUrl,
            Fault::GarbageHtml | Fault::GarbageBytes | Fault::NoAlpha(_) => ep.returns_image(),
            Fault::JobFails | Fault::JobNeverFinishes => ep == Endpoint::VergingCreateJob,
        }
    }

    /// Short label for the request log.
    pub fn label(&self) -> String {
        match self {
            Fault::Delay(_) => "delay".into(),
            Fault::Status(s) => format!("status-{s}"),
            Fault::RateLimited(_) => "rate-limited".into(),
            Fault::Unauthorized => "unauthorized".into(),
            Fault::QuotaExhausted => "quota-exhausted".into(),
            Fault::Invalid(_) => "invalid".into(),
            Fault::DropConnection => "drop-connection".into(),
            Fault::DropAfterCharge => "drop-after-charge".into(),
            Fault::Truncate => "truncate".into(),
            Fault::GarbageHtml => "garbage-html".into(),
            Fault::GarbageBytes => "garbage-bytes".into(),
            Fault::NoAlpha(Opaque::Jpeg) => "no-alpha-jpeg".into(),
            Fault::NoAlpha(Opaque::Png) => "no-alpha-png".into(),
            Fault::JobFails => "job-fails".into(),
            Fault::JobNeverFinishes => "job-never-finishes".into(),
        }
    }
}

/// One injected fault: what, where, and how often.
///
/// ```
/// use fake_provider::{Api, Fault, FaultRule};
/// // the next 3 requests to verging answer 503
/// let r = FaultRule::next(3, Fault::Status(503)).api(Api::Verging);
/// // every upload whose file name contains "broken" gets a 400
/// let r2 = FaultRule::always(Fault::Invalid("bad picture".into())).file_contains("broken");
/// # let _ = (r, r2);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRule {
    /// What happens.
    pub fault: Fault,
    /// Only requests of this API (`None`: both).
    pub api: Option<Api>,
    /// Only this endpoint (`None`: every endpoint the fault applies to).
    pub endpoint: Option<Endpoint>,
    /// Only requests whose file name contains this substring. The file name
    /// is: rembg `/rmbg` the `image` part's filename; verging create-job the
    /// `file_name` part (or the `image` part's filename); upload-video the
    /// `video_file_name`; for `PUT /upload/..`, job polls with one id and
    /// `/files/<id>.png` the file name of the upload/job they belong to.
    /// Requests without a file name never match a rule that has this set.
    pub file_contains: Option<String>,
    /// `Some(n)`: the next `n` matching requests, then the rule is removed;
    /// `None`: every matching request.
    pub remaining: Option<u64>,
    /// Chance (0.0..=1.0) that a matching request is hit (default 1.0).
    /// A request spared by chance does not use up a count.
    pub probability: f64,
}

impl FaultRule {
    /// The next `n` matching requests get `fault`.
    pub fn next(n: u64, fault: Fault) -> Self {
        FaultRule {
            fault,
            api: None,
            endpoint: None,
            file_contains: None,
            remaining: Some(n),
            probability: 1.0,
        }
    }

    /// Every matching request gets `fault`.
    pub fn always(fault: Fault) -> Self {
        FaultRule {
            remaining: None,
            ..FaultRule::next(0, fault)
        }
    }

    /// Only this API.
    pub fn api(mut self, api: Api) -> Self {
        self.api = Some(api);
        self
    }

    /// Only this endpoint.
    pub fn endpoint(mut self, ep: Endpoint) -> Self {
        self.endpoint = Some(ep);
        self
    }

    /// Only requests whose file name contains `s`.
    pub fn file_contains(mut self, s: &str) -> Self {
        self.file_contains = Some(s.to_string());
        self
    }

    /// Hit a matching request only with this probability.
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = p.clamp(0.0, 1.0);
        self
    }

    pub(crate) fn matches(&self, ep: Endpoint, file: Option<&str>) -> bool {
        if self.remaining == Some(0) || !self.fault.applies_to(ep) {
            return false;
        }
        if self.api.is_some() && self.api != ep.api() {
            return false;
        }
        if self.endpoint.is_some_and(|e| e != ep) {
            return false;
        }
        if let Some(sub) = &self.file_contains {
            match file {
                Some(f) if f.contains(sub.as_str()) => {}
                _ => return false,
            }
        }
        true
    }
}

/// Takes the first rule of `phase` matching the request, counting it down.
pub(crate) fn take_fault(
    rules: &mut Vec<FaultRule>,
    phase: Phase,
    ep: Endpoint,
    file: Option<&str>,
    allow: &dyn Fn(&Fault) -> bool,
) -> Option<Fault> {
    let idx = rules.iter().position(|r| {
        r.fault.phase() == phase
            && allow(&r.fault)
            && r.matches(ep, file)
            && (r.probability >= 1.0 || fastrand::f64() < r.probability)
    })?;
    let fault = rules[idx].fault.clone();
    if let Some(n) = rules[idx].remaining.as_mut() {
        *n -= 1;
        if *n == 0 {
            rules.remove(idx);
        }
    }
    Some(fault)
}
