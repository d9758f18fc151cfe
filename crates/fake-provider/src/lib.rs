//! Test-only fake of the background-removal APIs `cutout` talks to —
//! rembg.com and verging.ai, and the peers remove.bg and rembg's own
//! server (`rembg s`) — served over real HTTP/1.1 on loopback,
//! with switches to make them slow, rate-limited, out of credits, broken or
//! rude, and a log of every request. This file owns the public handle,
//! [`FakeProvider`]; the rest of the crate is re-exported from here.
//!
//! # One server, both APIs
//!
//! [`FakeProvider::start`] binds `127.0.0.1:0`, runs its own thread and tokio
//! runtime, and returns once it is listening (usable from sync and async
//! tests alike). One port serves:
//!
//! | API | endpoint | notes |
//! |---|---|---|
//! | rembg | `POST /rmbg` | header `x-api-key`; multipart `image` (+ `format`, `w`, `h`, `exact_resize`, `mask`, `bg_color`, `angle`, `expand`); 200 with a WebP/PNG cut-out; 1 credit |
//! | rembg | `GET /api/membership-usage` | `?expand=billing_cycle` adds `billingCycle` |
//! | verging | `GET /api/v1/auth/me` | `Authorization: ApiKey <key>` on every `/api/v1` call |
//! | verging | `POST /api/v1/background-removal/create-job` | multipart `image` + `file_name` + `job_type=background-removal`; 1 credit |
//! | verging | `GET /api/v1/background-removal/jobs[?job_ids=1,2]` | bare JSON array |
//! | verging | `POST /api/v1/upload-video` | presigned upload: `video_file_name` + `job_type` |
//! | verging storage | `PUT /upload/<token>` | raw bytes, **no** `Authorization` (else 400) |
//! | verging storage | `GET /files/<id>.png`, `/files/input-<id>.<ext>`, `/files/uploads/<token>` | no auth |
//! | remove.bg | `POST /v1.0/removebg` | header `X-Api-Key`; multipart `image_file` + options; PNG, `X-Credits-Charged`, `X-RateLimit-*` (see `remove_bg.rs`) |
//! | remove.bg | `GET /v1.0/account` | credits total and free calls |
//! | rembg server | `POST /api/remove` | multipart `file` + `model`, `a`, `af`, `ab`, `ae`, `om`, `ppm`; query `bgc`, `extras` (see `rembg_server.rs`) |
//! | rembg server | `GET /openapi.json` | reachability |
//!
//! Use [`FakeProvider::base_url_rembg`], [`FakeProvider::usage_url_rembg`]
//! and [`FakeProvider::base_url_verging`] for the client's configuration.
//!
//! # Strictness
//!
//! Requests are validated as the vendors document, and refused with their
//! status and JSON error shapes: rembg `{"error": msg, "status": n}` (with
//! `details: [{field, message}]` for a bad parameter), verging
//! `{"error_code": n, "message": msg, "upstream_error": null}` (402 →
//! 40001, otherwise status × 100). Where the docs are silent the fake is
//! strict too: unknown or repeated multipart parts, unknown query
//! parameters, a missing rembg key (no anonymous use), booleans other than
//! `true`/`false`, an `image` part without filename, and (rembg) a file
//! whose signature does not match its extension are all 400/401.
//! The order of checks is: rate limit → latency → read body →
//! injected "before" faults → key → validation → credits → work → charge →
//! injected "after" faults.
//!
//! # Cut-outs
//!
//! Results are computed from the upload: pixels close to the top-left
//! corner colour get alpha 0, the rest keep alpha 255. rembg honours
//! `w`/`h`/`exact_resize`, `angle`/`expand` (counter-clockwise),
//! `mask=true` (a greyscale mask) and `bg_color` (composited fill).
//! verging results are RGBA PNGs.
//!
//! # verging jobs and the presigned flow
//!
//! A job is `PENDING` for the first fifth of [`Config::job_processing`],
//! then `PROCESSING` with a rising `progress`, then `COMPLETED` with
//! `result_url = http://127.0.0.1:PORT/files/<id>.png` (or `FAILED`, or
//! forever `PROCESSING`, by fault). Ids are numbers in the job list and
//! strings in the create-job answer, as the vendor does. Unknown ids are
//! left out of the job list (an empty array for a single unknown id).
//!
//! The presigned flow comes before create-job and does not replace its
//! documented form: `POST /api/v1/upload-video` answers `{"result": {"url":
//! ".../upload/<token>", "public_url": ".../files/uploads/<token>"}}`; the
//! client `PUT`s the raw bytes to `url` (no `Authorization`; served again
//! at `public_url`), then calls create-job as usual. create-job is strict:
//! the file part `image` is required (400 "File part 'image' is required"
//! without it), and any field besides `image`, `file_name`, `job_type`
//! (e.g. an undocumented `image_url`) is a 400. Nothing is charged before
//! create-job.
//!
//! # Switches
//!
//! Everything in [`Config`] can be set at start and changed while running
//! ([`FakeProvider::update`] and the `set_*` helpers): per-API key, latency
//! (+ jitter) and [`RateLimit`] (token bucket, 429 with no / seconds /
//! HTTP-date `Retry-After`), credits, verging job processing time, and a
//! list of [`FaultRule`]s — each a [`Fault`] for the next N or all matching
//! requests, optionally only one API, one [`Endpoint`], or uploads whose
//! file name contains a substring (a fraction of them, with
//! [`FaultRule::probability`]). Faults: extra delay, any status (5xx
//! bursts), 429, 401, quota exhausted, 400 validation error, dropped
//! connection (before or after the charge), body cut short of its
//! `Content-Length`, HTML or random bytes instead of the image, an opaque
//! JPEG/PNG instead of the cut-out, and verging jobs that fail or never
//! finish.
//!
//! Rate limits count rembg's `POST /rmbg` and every verging `/api/v1`
//! request (polls included); storage URLs and rembg's usage endpoint are
//! not limited. A 429 from the limiter does not wait for the latency.
//!
//! # Example
//!
//! ```no_run
//! use fake_provider::{Api, Config, Fault, FaultRule, FakeProvider};
//! let fake = FakeProvider::start(Config::default().with_key("k"));
//! fake.inject(FaultRule::next(2, Fault::Status(503)).api(Api::Rembg));
//! fake.fail_file("broken", "Image is corrupt");
//! // … point the client at fake.base_url_rembg() / fake.base_url_verging() …
//! assert_eq!(fake.count_status(503), 2);
//! assert!(fake.doubly_charged().is_empty());
//! ```

// Handlers return `Result<_, Response>` (the axum idiom); a boxed error
// would only add noise in a test fake.
#![allow(clippy::result_large_err)]

mod config;
mod http;
mod imaging;
mod log;
mod peers;
mod rembg;
mod rembg_server;
mod remove_bg;
mod server;
mod state;
mod verging;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use config::{
    Api, ApiConfig, Config, Endpoint, Fault, FaultRule, Opaque, RateLimit, RembgCredits, RetryAfter,
};
pub use log::LogEntry;
pub use peers::{MegapixelWindow, PeerConfig, RembgServerCall};

use state::Shared;

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Inner {
    fn stop(&self) {
        if let Some(tx) = self.stop.lock().unwrap().take() {
            let _ = tx.send(());
        }
        let handle = self.thread.lock().unwrap().take();
        if let Some(h) = handle {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Handle on a running fake. Cheap to clone; the server stops when
/// [`FakeProvider::stop`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct FakeProvider {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeProvider")
            .field("addr", &self.inner.addr)
            .finish()
    }
}

fn bind(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(4096)
}

impl FakeProvider {
    /// Starts on `127.0.0.1:<free port>`. Panics if that fails.
    pub fn start(cfg: Config) -> FakeProvider {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), cfg)
    }

    /// Starts on `addr`. Panics if that fails.
    pub fn start_on(addr: SocketAddr, cfg: Config) -> FakeProvider {
        Self::try_start_on(addr, cfg)
            .unwrap_or_else(|e| panic!("fake provider could not start on {addr}: {e}"))
    }

    /// Starts on `addr`; returns once the socket is listening.
    pub fn try_start_on(addr: SocketAddr, cfg: Config) -> io::Result<FakeProvider> {
        let sink = match &cfg.log_file {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            None => None,
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<Arc<Shared>>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fake-provider".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .max_blocking_threads(8)
                    .thread_name("fake-provider-rt")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match bind(addr) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let local = match listener.local_addr() {
                        Ok(a) => a,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let host = if local.ip().is_unspecified() {
                        SocketAddr::from((Ipv4Addr::LOCALHOST, local.port()))
                    } else {
                        local
                    };
                    let shared = Arc::new(Shared::new(
                        cfg,
                        log::RequestLog::new(sink),
                        format!("http://{host}"),
                    ));
                    let _ = ready_tx.send(Ok(shared.clone()));
                    server::run(shared, listener, stop_rx).await;
                });
                rt.shutdown_timeout(Duration::from_millis(500));
            })?;
        let shared = match ready_rx.recv() {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(io::Error::other("fake provider thread died"));
            }
        };
        let addr = shared
            .base
            .trim_start_matches("http://")
            .parse()
            .map_err(io::Error::other)?;
        Ok(FakeProvider {
            inner: Arc::new(Inner {
                shared,
                addr,
                stop: Mutex::new(Some(stop_tx)),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Stops accepting and closes every connection (idempotent; also done
    /// when the last handle is dropped).
    pub fn stop(&self) {
        self.inner.stop();
    }

    // ---- addresses ----

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        self.shared().base.clone()
    }

    /// rembg `base_url`: `http://127.0.0.1:PORT` (`POST {base}/rmbg`).
    pub fn base_url_rembg(&self) -> String {
        self.base_url()
    }

    /// rembg `usage_url`: `http://127.0.0.1:PORT/api/membership-usage`.
    pub fn usage_url_rembg(&self) -> String {
        format!("{}/api/membership-usage", self.base_url())
    }

    /// verging base: `http://127.0.0.1:PORT/api/v1`.
    pub fn base_url_verging(&self) -> String {
        format!("{}/api/v1", self.base_url())
    }

    // ---- switches ----

    /// A copy of the live configuration (fault counters included).
    pub fn config(&self) -> Config {
        self.shared().cfg(|c| c.clone())
    }

    /// Changes the live configuration atomically; later requests see it.
    pub fn update<R>(&self, f: impl FnOnce(&mut Config) -> R) -> R {
        self.shared().cfg(f)
    }

    /// Sets the one valid key of `api`.
    pub fn set_key(&self, api: Api, key: &str) {
        self.update(|c| c.api_mut(api).key = key.to_string());
    }

    /// Sets the per-request latency of `api`.
    pub fn set_latency(&self, api: Api, latency: Duration) {
        self.update(|c| c.api_mut(api).latency = latency);
    }

    /// Sets how long verging jobs created from now on take.
    pub fn set_job_processing(&self, d: Duration) {
        self.update(|c| c.job_processing = d);
    }

    /// Sets (or removes) the rate limit of `api`; its bucket starts full.
    pub fn set_rate_limit(&self, api: Api, limit: Option<RateLimit>) {
        self.update(|c| c.api_mut(api).rate_limit = limit);
        self.shared().reset_buckets();
    }

    /// Sets rembg's remaining included and prepaid credits.
    pub fn set_rembg_credits(&self, remaining_included: u64, prepaid: u64) {
        self.update(|c| {
            let cr = &mut c.rembg_credits;
            cr.remaining_included = remaining_included;
            cr.included = cr.included.max(remaining_included);
            cr.prepaid = prepaid;
        });
    }

    /// rembg's credit counters now.
    pub fn rembg_credits(&self) -> RembgCredits {
        self.update(|c| c.rembg_credits)
    }

    /// Sets verging's credits.
    pub fn set_verging_credits(&self, credits: u64) {
        self.update(|c| c.verging_credits = credits);
    }

    /// verging's credits now.
    pub fn verging_credits(&self) -> u64 {
        self.update(|c| c.verging_credits)
    }

    /// Adds a fault rule (checked after the ones already there).
    pub fn inject(&self, rule: FaultRule) {
        self.update(|c| c.faults.push(rule));
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.update(|c| c.faults.clear());
    }

    /// The fault rules still in force (with their remaining counts).
    pub fn faults(&self) -> Vec<FaultRule> {
        self.update(|c| c.faults.clone())
    }

    /// Every upload (either API) whose file name contains `substring` is
    /// refused with a 400 carrying `message`, for good.
    pub fn fail_file(&self, substring: &str, message: &str) {
        self.inject(
            FaultRule::always(Fault::Invalid(message.to_string())).file_contains(substring),
        );
    }

    /// The next `n` requests to `api` answer `status` (e.g. 500/502/503).
    pub fn fail_next(&self, api: Api, n: u64, status: u16) {
        self.inject(FaultRule::next(n, Fault::Status(status)).api(api));
    }

    // ---- log ----

    /// Every request so far, in completion order.
    pub fn log(&self) -> Vec<LogEntry> {
        self.shared().log.snapshot()
    }

    /// Forgets the log (the sequence numbers keep counting).
    pub fn clear_log(&self) {
        self.shared().log.clear();
    }

    /// SHA-256 of every charged picture, in order (a hash appears once per
    /// charge: duplicates mean a picture was paid twice).
    pub fn charged_hashes(&self) -> Vec<String> {
        self.shared().log.with(|l| {
            l.iter()
                .filter(|e| e.charged)
                .filter_map(|e| e.image_sha256.clone())
                .collect()
        })
    }

    /// Hashes charged more than once (empty when no picture was paid twice).
    pub fn doubly_charged(&self) -> Vec<String> {
        let mut seen = std::collections::HashMap::<String, usize>::new();
        for h in self.charged_hashes() {
            *seen.entry(h).or_default() += 1;
        }
        let mut out: Vec<String> = seen
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(h, _)| h)
            .collect();
        out.sort();
        out
    }

    /// Charged requests of `api`.
    pub fn charged_count(&self, api: Api) -> usize {
        self.count(|e| e.charged && e.api == Some(api))
    }

    /// Requests answered with `status`.
    pub fn count_status(&self, status: u16) -> usize {
        self.count(|e| e.status == Some(status))
    }

    /// Requests answered 429 (rate limit, monthly quota or injected).
    pub fn count_429(&self) -> usize {
        self.count_status(429)
    }

    /// Requests whose connection was closed without an answer.
    pub fn count_dropped(&self) -> usize {
        self.count(|e| e.status.is_none())
    }

    /// Requests to `endpoint`.
    pub fn count_requests(&self, endpoint: Endpoint) -> usize {
        self.count(|e| e.endpoint == endpoint)
    }

    /// Requests matching `pred`.
    pub fn count(&self, pred: impl Fn(&LogEntry) -> bool) -> usize {
        self.shared()
            .log
            .with(|l| l.iter().filter(|e| pred(e)).count())
    }

    // ---- the peer APIs (remove.bg, rembg's server) ----

    /// remove.bg `base_url`: `http://127.0.0.1:PORT` (`POST {base}/v1.0/removebg`).
    pub fn base_url_remove_bg(&self) -> String {
        self.base_url()
    }

    /// rembg server `base_url`: `http://127.0.0.1:PORT` (`POST {base}/api/remove`).
    pub fn base_url_rembg_server(&self) -> String {
        self.base_url()
    }

    /// Sets remove.bg's credits and free calls.
    pub fn set_remove_bg_credits(&self, credits: f64, free_calls: u64) {
        self.update(|c| {
            c.peers.remove_bg_credits = credits;
            c.peers.remove_bg_free_calls = free_calls;
        });
    }

    /// remove.bg's credits and free calls now.
    pub fn remove_bg_credits(&self) -> (f64, u64) {
        self.update(|c| (c.peers.remove_bg_credits, c.peers.remove_bg_free_calls))
    }

    /// Sets (or removes) remove.bg's megapixel-image rate window; the
    /// window starts afresh.
    pub fn set_remove_bg_window(&self, w: Option<MegapixelWindow>) {
        self.update(|c| c.peers.remove_bg_window = w);
        self.shared().peers.reset_window();
    }

    /// Every rembg-server call the fake accepted (model, fields, query).
    pub fn rembg_server_calls(&self) -> Vec<RembgServerCall> {
        self.shared().peers.calls.lock().unwrap().clone()
    }

    /// Ids of every verging job created so far.
    pub fn job_ids(&self) -> Vec<u64> {
        self.shared().jobs.lock().unwrap().keys().copied().collect()
    }
}
