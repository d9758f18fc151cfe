//! `kind = "verging"`: the verging.ai hosted API, an asynchronous job flow:
//! credits check (`GET /auth/me`) → `POST /background-removal/create-job`
//! (optionally after a presigned upload: `POST /upload-video`, `PUT <url>`)
//! → poll `GET /background-removal/jobs?job_ids=<id>` every
//! `poll_interval` → download `result_url`. Every API call carries
//! `Authorization: ApiKey <key>`; handed-back URLs get no key.
//!
//! Owns: the flow, tolerant parsing of verging's inconsistent answers (ids
//! as strings or numbers, objects bare or wrapped in `result`), and the
//! "a job id is money already spent" rule: the id is written to the job
//! journal before the first poll, and a remembered id is polled again
//! instead of creating a new job (after a retry or a restart).
//!
//! Decisions (documented in docs/providers.md):
//! - A job that ends `FAILED` was charged; the file goes to `failed/`
//!   (`provider-job-failed`) and is not resubmitted automatically — that
//!   would pay again. Dropping the file in again submits a new job.
//! - A job still unfinished after `job_timeout` (counted from its creation,
//!   also across restarts) fails the same way (`provider-job-timeout`).
//! - A create-job answer that is 2xx but unreadable (no job id) means a job
//!   was probably created and charged: `provider-bad-answer`, no resubmit.
//! - Poll errors do not end the job: polling goes on (through the gate)
//!   until the job ends or `job_timeout`; a refused key pauses the provider
//!   and keeps the job remembered.
//! - A pause stops new submissions only (credits check, presigned upload,
//!   create-job). Polling and downloading a job already paid for cost
//!   nothing and go on while the provider is paused (e.g. another file's
//!   create-job answered 402).
//!
//! Must not: retry create-job on its own, send the key to a handed-back
//! URL, or follow such a URL over plain http or to a non-public address
//! (see `http.rs`, `url_guard.rs`).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::AUTHORIZATION;
use reqwest::multipart::Form;
use serde_json::Value;

use super::gate::Recheck;
use super::hosted::{Credits, Hosted, HostedApi, HostedProvider, Spend};
use super::http::{self, Refusal};
use super::upload::{self, upload_name};
use super::verging_answers::{created_job_id, find_job, parse_me, presigned};
use super::verify::{self, Expect};
use super::{key, BuildError, Health, ProviderError, Request, Response};
use crate::config::VergingConfig;
use crate::job::Code;

const JOB_TYPE: &str = "background-removal";
/// Largest input verging accepts.
const MAX_UPLOAD: usize = 10 * 1024 * 1024;
/// A cached credits figure is trusted this long before `/auth/me` is asked
/// again (each picture costs one credit; the figure is counted down).
const CREDITS_FRESH: Duration = Duration::from_secs(30);
/// Largest JSON answer read.
const MAX_JSON: u64 = 4 * 1024 * 1024;

/// The verging.ai provider.
pub type Verging = HostedProvider<VergingApi>;

/// verging.ai's wire format on the shared hosted core.
pub struct VergingApi {
    core: Hosted,
    poll_interval: Duration,
    job_timeout: Duration,
    presigned_upload: bool,
}

/// 402 or verging's `error_code` 40001: out of credits.
fn is_quota(r: &Refusal) -> bool {
    r.status.as_u16() == 402 || r.error_code == Some(40001)
}

impl Verging {
    pub fn build(name: &str, cfg: &VergingConfig) -> Result<Verging, BuildError> {
        Ok(HostedProvider::new(VergingApi {
            core: Hosted::new(name, "verging", &cfg.hosted)?,
            poll_interval: cfg.poll_interval,
            job_timeout: cfg.job_timeout,
            presigned_upload: cfg.presigned_upload,
        }))
    }
}

async fn json_of(resp: reqwest::Response, what: &str) -> Result<Value, ProviderError> {
    let body = http::read_capped(resp, MAX_JSON)
        .await
        .map_err(|e| e.into_provider_error(what))?;
    serde_json::from_slice(&body).map_err(|_| ProviderError::Transient {
        code: Code::ProviderBadAnswer,
        message: format!("{what}: the answer is not JSON"),
        retry_after: None,
    })
}

impl VergingApi {
    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.core.cfg.base_url)
    }

    fn what(&self, call: &str) -> String {
        format!("provider `{}`: {call}", self.core.name)
    }

    /// The documented first step: do not submit with fewer than 1 credit.
    /// A recent figure (counted down per job) saves a request; a failed
    /// check that says nothing about key or credits does not stop the
    /// submission (create-job answers 402 itself when credits are out).
    async fn ensure_credits(&self) -> Result<(), ProviderError> {
        if self
            .core
            .gate
            .credits_within(CREDITS_FRESH)
            .is_some_and(|c| c >= 1.0 + self.core.cfg.concurrency as f64)
        {
            return Ok(());
        }
        let what = self.what("GET /auth/me");
        let rb = self
            .core
            .http
            .api
            .get(self.url("auth/me"))
            .header(AUTHORIZATION, self.core.key_header("ApiKey ")?);
        let resp = match self.core.send(&what, rb, is_quota, Spend::Submit).await {
            Ok(r) => r,
            Err(
                e @ (ProviderError::Auth { .. }
                | ProviderError::QuotaExhausted { .. }
                | ProviderError::Unavailable { .. }
                | ProviderError::RateLimited { .. }),
            ) => return Err(e),
            Err(e) => {
                tracing::debug!(provider = %self.core.name, "credits check failed ({e}); submitting anyway");
                return Ok(());
            }
        };
        let v = match json_of(resp, &what).await {
            Ok(v) => v,
            Err(_) => return Ok(()),
        };
        if let Credits::Known {
            left: Some(c),
            detail,
        } = parse_me(&v)
        {
            self.core.gate.set_credits(Some(c));
            if c < 1.0 {
                return Err(ProviderError::QuotaExhausted {
                    message: format!("{what}: {detail}; every picture needs 1 credit"),
                });
            }
        }
        Ok(())
    }

    async fn create_job(&self, req: &Request<'_>) -> Result<String, ProviderError> {
        let kind = req.input.kind;
        let name = upload_name(req.file_name, kind);
        // The presigned upload (an older flow, behind an option) comes
        // before create-job; it does not replace the documented `image`
        // file part.
        if self.presigned_upload {
            self.presigned_put(req, &name).await?;
        }
        let form = upload::form(
            req,
            "image",
            vec![("file_name", name.clone()), ("job_type", JOB_TYPE.into())],
        )?;
        let what = self.what("POST /background-removal/create-job");
        let rb = self
            .core
            .http
            .api
            .post(self.url("background-removal/create-job"))
            .header(AUTHORIZATION, self.core.key_header("ApiKey ")?)
            .multipart(form);
        let resp = self.core.send(&what, rb, is_quota, Spend::Submit).await?;
        // From here on a job exists and was charged: an answer we cannot
        // read must not lead to a second job.
        let charged = |m: String| {
            ProviderError::Permanent {
            code: Code::ProviderBadAnswer,
            message: format!(
                "{what}: {m}; the job was probably created and charged, so it is not submitted again automatically (drop the file in again to pay for a new job)"
            ),
        }
        };
        let body = http::read_capped(resp, MAX_JSON)
            .await
            .map_err(|e| charged(e.to_string()))?;
        let v: Value =
            serde_json::from_slice(&body).map_err(|_| charged("the answer is not JSON".into()))?;
        created_job_id(&v).ok_or_else(|| charged("the answer carries no job id".into()))
    }

    /// `POST /upload-video` for a presigned URL, then `PUT` the bytes there
    /// (no key). The public URL it answers is not used: create-job takes the
    /// picture as its documented `image` part all the same.
    async fn presigned_put(&self, req: &Request<'_>, name: &str) -> Result<(), ProviderError> {
        let what = self.what("POST /upload-video");
        let rb = self
            .core
            .http
            .api
            .post(self.url("upload-video"))
            .header(AUTHORIZATION, self.core.key_header("ApiKey ")?)
            .multipart(
                Form::new()
                    .text("video_file_name", name.to_string())
                    .text("job_type", JOB_TYPE),
            );
        let resp = self.core.send(&what, rb, is_quota, Spend::Submit).await?;
        let v = json_of(resp, &what).await?;
        let put_url = presigned(&v).ok_or_else(|| ProviderError::Transient {
            code: Code::ProviderBadAnswer,
            message: format!("{what}: the answer has no url"),
            retry_after: None,
        })?;
        let put_url = self.core.http.followable(&put_url).await?;
        let shown = http::display_url(&put_url);
        let resp = self
            .core
            .http
            .fetch
            .put(put_url)
            .header(reqwest::header::CONTENT_TYPE, req.input.kind.mime())
            .body(req.input.bytes.clone())
            .send()
            .await
            .map_err(|e| http::send_error(&format!("PUT {shown}"), e))?;
        if !resp.status().is_success() {
            return Err(ProviderError::Transient {
                code: Code::ProviderUploadFailed,
                message: format!(
                    "the presigned upload PUT {shown} answered HTTP {}",
                    resp.status().as_u16()
                ),
                retry_after: None,
            });
        }
        Ok(())
    }

    /// Poll until the job ends; returns its `result_url`.
    /// Poll job `id` until it ends or `job_timeout` after its creation
    /// (`spent`: how long ago that was, for a job resumed after a restart).
    async fn wait_for(
        &self,
        id: &str,
        resumed: bool,
        spent: Duration,
    ) -> Result<String, ProviderError> {
        let deadline = Instant::now() + self.job_timeout.saturating_sub(spent);
        let what = self.what("GET /background-removal/jobs");
        let mut first = true;
        let mut last_problem: Option<String> = None;
        loop {
            if !(first && resumed) {
                tokio::time::sleep(self.poll_interval).await;
            }
            first = false;
            let rb = self
                .core
                .http
                .api
                .get(self.url("background-removal/jobs"))
                .query(&[("job_ids", id)])
                .header(AUTHORIZATION, self.core.key_header("ApiKey ")?);
            let polled = match self.core.send(&what, rb, is_quota, Spend::Collect).await {
                Ok(resp) => json_of(resp, &what).await,
                Err(e) => Err(e),
            };
            match polled {
                Ok(v) => match find_job(&v, id) {
                    Some(j)
                        if matches!(j.status.as_str(), "COMPLETED" | "SUCCEEDED" | "SUCCESS") =>
                    {
                        match j.result_url {
                            Some(u) => return Ok(u),
                            None => {
                                last_problem = Some("job COMPLETED without a result_url".into())
                            }
                        }
                    }
                    Some(j)
                        if matches!(
                            j.status.as_str(),
                            "FAILED" | "ERROR" | "CANCELLED" | "CANCELED"
                        ) =>
                    {
                        return Err(ProviderError::Permanent {
                            code: Code::ProviderJobFailed,
                            message: format!(
                                "verging job {id} ended {} (the provider gives no reason); it was charged (1 credit). It is not resubmitted automatically, which would pay again: drop the file in again to try a new job",
                                j.status
                            ),
                        });
                    }
                    Some(_) => {}
                    None => last_problem = Some(format!("job {id} is not in the job list")),
                },
                // A poll answered with a refused key, no connection, or
                // (unheard of) a quota refusal ends the wait; the job stays
                // remembered and polling resumes once the provider works
                // again. A pause for another file's 402 does not get here:
                // polls are `Spend::Collect` and go out while paused.
                Err(
                    e @ (ProviderError::Auth { .. }
                    | ProviderError::QuotaExhausted { .. }
                    | ProviderError::Unavailable { .. }),
                ) => return Err(e),
                Err(e) => {
                    tracing::debug!(provider = %self.core.name, job = %id, "poll failed ({e}); polling on");
                    last_problem = Some(e.to_string());
                }
            }
            if Instant::now() >= deadline {
                return Err(ProviderError::Permanent {
                    code: Code::ProviderJobTimeout,
                    message: format!(
                        "verging job {id} did not finish within job_timeout ({}){}; it was charged (1 credit) and may still finish at the provider. It is not resubmitted automatically, which would pay again: drop the file in again to try a new job",
                        humantime::format_duration(self.job_timeout),
                        last_problem
                            .map(|p| format!(" (last: {p})"))
                            .unwrap_or_default()
                    ),
                });
            }
        }
    }

    /// Download the result (no key; https only; size cap; timeout).
    async fn download(&self, result_url: &str) -> Result<bytes::Bytes, ProviderError> {
        let url = self.core.http.followable(result_url).await?;
        let shown = http::display_url(&url);
        let what = format!("provider `{}`: GET {shown}", self.core.name);
        let resp = self
            .core
            .http
            .fetch
            .get(url)
            .send()
            .await
            .map_err(|e| http::send_error(&what, e))?;
        if !resp.status().is_success() {
            return Err(ProviderError::Transient {
                code: Code::ProviderDownloadFailed,
                message: format!("{what} answered HTTP {}", resp.status().as_u16()),
                retry_after: http::retry_after(resp.headers()),
            });
        }
        http::read_capped(resp, self.core.http.max_body)
            .await
            .map_err(|e| e.into_provider_error(&what))
    }

    /// `GET /auth/me` directly (not through the gate: used by `cutout
    /// check` and the pause re-check, which must work while paused).
    async fn credits(&self) -> Credits {
        let key = match self.core.key_header("ApiKey ") {
            Ok(k) => k,
            Err(e) => return Credits::Refused(e.to_string()),
        };
        let what = self.what("GET /auth/me");
        let resp = match self
            .core
            .http
            .api
            .get(self.url("auth/me"))
            .header(AUTHORIZATION, key)
            .timeout(self.core.timeout().min(Duration::from_secs(20)))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                return Credits::Down(http::send_error(&what, e).to_string())
            }
            Err(e) => return Credits::Unreachable(http::send_error(&what, e).to_string()),
        };
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            let r = Refusal::read(resp, &self.core.key_text()).await;
            let msg = format!("{what} answered HTTP {status}: {}", r.message);
            return match status {
                401 | 403 => Credits::Refused(msg),
                402 => Credits::Known {
                    left: Some(0.0),
                    detail: msg,
                },
                _ => Credits::Unreachable(msg),
            };
        }
        match json_of(resp, &what).await {
            Ok(v) => parse_me(&v),
            Err(e) => Credits::Unreachable(e.to_string()),
        }
    }
}

#[async_trait]
impl HostedApi for VergingApi {
    fn core(&self) -> &Hosted {
        &self.core
    }

    async fn remove(&self, req: &Request<'_>) -> Result<Response, ProviderError> {
        // No `refuse_if_paused` here: a remembered job was paid for and is
        // collected even while paused; only a new submission is refused
        // (the `Spend::Submit` requests below).
        let _slot = self.core.slot().await;
        let (id, resumed) = match req.journal.remote_job() {
            Some(id) => {
                tracing::info!(provider = %self.core.name, job = %id, input = req.file_name, "resuming the remembered verging job instead of submitting again");
                (id, true)
            }
            None => {
                self.core.refuse_if_paused()?;
                upload::check_size(req, MAX_UPLOAD, "verging", "10 MB")?;
                self.ensure_credits().await?;
                let id = self.create_job(req).await?;
                self.core.gate.spend_credit();
                if let Err(e) = req.journal.set_remote_job(&id).await {
                    // Still polled now; only a crash before it finishes
                    // could make this job be paid for again.
                    tracing::error!(provider = %self.core.name, job = %id, "cannot remember the remote job id: {e}");
                }
                (id, false)
            }
        };
        let spent = if resumed {
            req.journal.remote_job_age().unwrap_or_default()
        } else {
            Duration::ZERO
        };
        let result_url = self.wait_for(&id, resumed, spent).await?;
        let bytes = self.download(&result_url).await?;
        let want = req.output_format;
        let cutout = verify::check_off_thread(bytes, Expect::Alpha, want).await?;
        Ok(Response {
            cutout,
            remote_job: Some(id),
            credits_used: Some(1.0),
        })
    }

    /// While paused: re-read the key, then ask for credits.
    async fn recheck(&self) -> Recheck {
        let outage = self.core.paused_for_outage();
        match self.credits().await {
            // The API answers again (if not well): end the outage
            // pause; real requests decide what comes next.
            Credits::Unreachable(_) if outage => Recheck::Ready { credits: None },
            c => c.recheck(),
        }
    }

    async fn health(&self) -> Health {
        let core = &self.core;
        let mut lines = vec![
            format!("API key from {}", key::describe(&core.cfg.key)),
            format!(
                "base_url {} (poll every {}, job_timeout {}, presigned_upload {})",
                core.cfg.base_url,
                humantime::format_duration(self.poll_interval),
                humantime::format_duration(self.job_timeout),
                self.presigned_upload
            ),
        ];
        lines.extend(key::inline_key_warning(&core.cfg.key));
        let ok = match self.credits().await {
            Credits::Known { left, detail } => {
                lines.push(format!("reachable; key accepted; {detail}"));
                core.gate.set_credits(left);
                if left.is_some_and(|c| c < 1.0) {
                    lines.push("no credits left: recharge the account".into());
                    false
                } else {
                    true
                }
            }
            Credits::Refused(m) => {
                lines.push(format!("reachable; key REFUSED: {m}"));
                false
            }
            Credits::Down(m) => {
                lines.push(format!("NOT reachable: {m}"));
                false
            }
            Credits::Unreachable(m) => {
                lines.push(format!("unexpected answer: {m}"));
                false
            }
        };
        Health { lines, ok }
    }
}
