//! The server's shared state: the live [`Config`], the request log, the
//! rate-limit buckets, credit charging, verging jobs and presigned uploads.
//! One `Arc<Shared>` is held by the handle and by every request.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::config::{Api, Config, RateLimit};
use crate::imaging::Kind;
use crate::log::RequestLog;

/// How a verging job ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JobOutcome {
    Completes,
    Fails,
    Never,
}

/// One verging job.
pub(crate) struct Job {
    pub id: u64,
    pub file_name: String,
    pub created: Instant,
    pub created_sys: SystemTime,
    pub processing: Duration,
    pub outcome: JobOutcome,
    pub input: Bytes,
    pub input_kind: Kind,
    /// Where the input can be fetched (`image_url` in the job list).
    pub image_url: String,
    pub result: Bytes,
}

/// What a job looks like at some moment.
pub(crate) struct JobView {
    pub status: &'static str,
    pub progress: u32,
    pub updated: SystemTime,
}

impl Job {
    pub(crate) fn view(&self, now: Instant) -> JobView {
        let elapsed = now.saturating_duration_since(self.created);
        let p = self.processing;
        let pending_for = p / 5;
        let done = elapsed >= p && self.outcome != JobOutcome::Never;
        if done {
            let (status, progress) = match self.outcome {
                JobOutcome::Fails => ("FAILED", 0),
                _ => ("COMPLETED", 100),
            };
            return JobView {
                status,
                progress,
                updated: self.created_sys + p,
            };
        }
        if p > Duration::ZERO && elapsed < pending_for {
            return JobView {
                status: "PENDING",
                progress: 0,
                updated: self.created_sys,
            };
        }
        let progress = if p <= pending_for {
            50
        } else {
            let f = (elapsed - pending_for).as_secs_f64() / (p - pending_for).as_secs_f64();
            (1.0 + 98.0 * f).clamp(1.0, 99.0) as u32
        };
        JobView {
            status: "PROCESSING",
            progress,
            updated: SystemTime::now(),
        }
    }

    pub(crate) fn is_completed(&self, now: Instant) -> bool {
        self.view(now).status == "COMPLETED"
    }
}

/// A presigned upload slot (verging `upload-video`).
pub(crate) struct Upload {
    pub file_name: String,
    pub data: Option<Bytes>,
}

struct Bucket {
    per_second: u32,
    tokens: f64,
    last: Instant,
}

pub(crate) struct Shared {
    pub cfg: Mutex<Config>,
    pub log: RequestLog,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub started_sys: SystemTime,
    buckets: Mutex<HashMap<Api, Bucket>>,
    pub jobs: Mutex<BTreeMap<u64, Job>>,
    pub next_job: AtomicU64,
    pub uploads: Mutex<HashMap<String, Upload>>,
    /// rembg pictures charged so far (`api_usage`).
    pub rembg_used: AtomicU64,
    /// remove.bg's rate window and the rembg server's calls.
    pub peers: crate::peers::PeerState,
}

impl Shared {
    pub(crate) fn new(cfg: Config, log: RequestLog, base: String) -> Self {
        Shared {
            cfg: Mutex::new(cfg),
            log,
            base,
            started_sys: SystemTime::now(),
            buckets: Mutex::new(HashMap::new()),
            jobs: Mutex::new(BTreeMap::new()),
            next_job: AtomicU64::new(456),
            uploads: Mutex::new(HashMap::new()),
            rembg_used: AtomicU64::new(0),
            peers: Default::default(),
        }
    }

    pub(crate) fn cfg<R>(&self, f: impl FnOnce(&mut Config) -> R) -> R {
        f(&mut self.cfg.lock().unwrap())
    }

    /// Takes a token for `api`; `Err((limit, wait))` when the bucket is empty.
    pub(crate) fn take_token(&self, api: Api) -> Result<(), (RateLimit, Duration)> {
        let Some(limit) = self.cfg(|c| c.api(api).rate_limit) else {
            return Ok(());
        };
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap();
        let cap = limit.per_second as f64;
        let b = buckets.entry(api).or_insert(Bucket {
            per_second: limit.per_second,
            tokens: cap,
            last: now,
        });
        if b.per_second != limit.per_second {
            *b = Bucket {
                per_second: limit.per_second,
                tokens: cap,
                last: now,
            };
        }
        let dt = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + dt * cap).min(cap);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else if cap <= 0.0 {
            Err((limit, Duration::from_secs(1)))
        } else {
            Err((limit, Duration::from_secs_f64((1.0 - b.tokens) / cap)))
        }
    }

    /// Forgets the rate-limit buckets (full again).
    pub(crate) fn reset_buckets(&self) {
        self.buckets.lock().unwrap().clear();
    }

    pub(crate) fn rembg_available(&self) -> u64 {
        self.cfg(|c| c.rembg_credits.available())
    }

    /// Takes one rembg credit (included first, then prepaid).
    pub(crate) fn charge_rembg(&self) -> bool {
        let ok = self.cfg(|c| {
            let cr = &mut c.rembg_credits;
            if cr.remaining_included > 0 {
                cr.remaining_included -= 1;
                true
            } else if cr.prepaid > 0 {
                cr.prepaid -= 1;
                true
            } else {
                false
            }
        });
        if ok {
            self.rembg_used.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Takes one verging credit.
    pub(crate) fn charge_verging(&self) -> bool {
        self.cfg(|c| {
            if c.verging_credits >= 1 {
                c.verging_credits -= 1;
                true
            } else {
                false
            }
        })
    }
}
