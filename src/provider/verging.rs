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
//!
//! Must not: retry create-job on its own, send the key to a handed-back
//! URL, or follow such a URL over plain http (see `http.rs`).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::AUTHORIZATION;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use super::gate::Recheck;
use super::hosted::{Credits, Hosted, HostedApi, HostedProvider};
use super::http::{self, Refusal};
use super::rembg_com::upload_name;
use super::verify::{self, Expect};
use super::{key, BuildError, Health, Outcome, ProviderError, Request};
use crate::config::VergingConfig;

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

/// A job as the job list shows it.
#[derive(Debug, Clone, PartialEq)]
struct JobState {
    status: String,
    result_url: Option<String>,
}

/// An id as text, whether the JSON has it as a string or a number.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The job id in a create-job answer (`result.job_id`, bare `job_id`, or
/// `id`, string or number).
fn created_job_id(v: &Value) -> Option<String> {
    let inner = v.get("result").filter(|r| r.is_object()).unwrap_or(v);
    ["job_id", "id", "jobId"]
        .iter()
        .find_map(|k| inner.get(*k).and_then(id_text))
        .or_else(|| {
            ["job_id", "id", "jobId"]
                .iter()
                .find_map(|k| v.get(*k).and_then(id_text))
        })
}

/// Find job `id` in a job-list answer (a bare array, or wrapped).
fn find_job(v: &Value, id: &str) -> Option<JobState> {
    let list: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(o) => match ["result", "data", "jobs"].iter().find_map(|k| o.get(*k)) {
            Some(Value::Array(a)) => a.iter().collect(),
            Some(obj @ Value::Object(_)) => vec![obj],
            _ => vec![v],
        },
        _ => vec![],
    };
    list.into_iter()
        .find(|j| {
            ["id", "job_id"]
                .iter()
                .any(|k| j.get(*k).and_then(id_text).as_deref() == Some(id))
        })
        .map(|j| JobState {
            status: j
                .get("status")
                .and_then(|s| s.as_str())
                .unwrap_or("")
                .trim()
                .to_ascii_uppercase(),
            result_url: j
                .get("result_url")
                .and_then(|u| u.as_str())
                .filter(|u| !u.trim().is_empty())
                .map(str::to_string),
        })
}

/// `{"result": {"url", "public_url"}}` (or bare).
fn presigned(v: &Value) -> Option<(String, String)> {
    let inner = v.get("result").filter(|r| r.is_object()).unwrap_or(v);
    let url = inner.get("url")?.as_str()?.to_string();
    let public = inner.get("public_url")?.as_str()?.to_string();
    Some((url, public))
}

/// `{"credits": n, …}` (or wrapped in `result`/`data`).
fn parse_me(v: &Value) -> Credits {
    let inner = ["result", "data", "user"]
        .iter()
        .find_map(|k| v.get(*k).filter(|r| r.is_object()))
        .unwrap_or(v);
    let credits = inner.get("credits").and_then(|c| {
        c.as_f64()
            .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
    });
    match credits {
        Some(c) => Credits::Known {
            left: Some(c),
            detail: format!("{c} credits left"),
        },
        None => Credits::Known {
            left: None,
            detail: "the account answer does not say how many credits are left".into(),
        },
    }
}

async fn json_of(resp: reqwest::Response, what: &str) -> Result<Value, ProviderError> {
    let body = http::read_capped(resp, MAX_JSON)
        .await
        .map_err(|e| e.into_provider_error(what))?;
    serde_json::from_slice(&body).map_err(|_| ProviderError::Transient {
        code: "provider-bad-answer",
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
        let resp = match self.core.send(&what, rb, is_quota).await {
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
        let internal = |e: reqwest::Error| ProviderError::Permanent {
            code: "internal-error",
            message: format!("cannot build the upload: {e}"),
        };
        let form = if self.presigned_upload {
            let public_url = self.presigned_put(req, &name).await?;
            Form::new()
                .text("image_url", public_url)
                .text("file_name", name.clone())
                .text("job_type", JOB_TYPE)
        } else {
            let image =
                Part::stream_with_length(req.input.bytes.clone(), req.input.bytes.len() as u64)
                    .file_name(name.clone())
                    .mime_str(kind.mime())
                    .map_err(internal)?;
            Form::new()
                .part("image", image)
                .text("file_name", name.clone())
                .text("job_type", JOB_TYPE)
        };
        let what = self.what("POST /background-removal/create-job");
        let rb = self
            .core
            .http
            .api
            .post(self.url("background-removal/create-job"))
            .header(AUTHORIZATION, self.core.key_header("ApiKey ")?)
            .multipart(form);
        let resp = self.core.send(&what, rb, is_quota).await?;
        // From here on a job exists and was charged: an answer we cannot
        // read must not lead to a second job.
        let charged = |m: String| {
            ProviderError::Permanent {
            code: "provider-bad-answer",
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
    /// (no key). Returns the public URL for create-job.
    async fn presigned_put(&self, req: &Request<'_>, name: &str) -> Result<String, ProviderError> {
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
        let resp = self.core.send(&what, rb, is_quota).await?;
        let v = json_of(resp, &what).await?;
        let (put_url, public_url) = presigned(&v).ok_or_else(|| ProviderError::Transient {
            code: "provider-bad-answer",
            message: format!("{what}: the answer has no url/public_url"),
            retry_after: None,
        })?;
        // Only the PUT URL is followed by us; the public URL goes back to
        // verging as it came.
        let put_url = self.core.http.followable(&put_url)?;
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
                code: "provider-upload-failed",
                message: format!(
                    "the presigned upload PUT {shown} answered HTTP {}",
                    resp.status().as_u16()
                ),
                retry_after: None,
            });
        }
        Ok(public_url)
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
            let polled = match self.core.send(&what, rb, is_quota).await {
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
                            code: "provider-job-failed",
                            message: format!(
                                "verging job {id} ended {} (the provider gives no reason); it was charged (1 credit). It is not resubmitted automatically, which would pay again: drop the file in again to try a new job",
                                j.status
                            ),
                        });
                    }
                    Some(_) => {}
                    None => last_problem = Some(format!("job {id} is not in the job list")),
                },
                // Pauses end the wait; the job stays remembered and polling
                // resumes once the provider works again.
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
                    code: "provider-job-timeout",
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
        let url = self.core.http.followable(result_url)?;
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
                code: "provider-download-failed",
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

    async fn remove(&self, req: &Request<'_>) -> Result<Outcome, ProviderError> {
        self.core.refuse_if_paused()?;
        let _slot = self.core.slot().await;
        let (id, resumed) = match req.journal.remote_job() {
            Some(id) => {
                tracing::info!(provider = %self.core.name, job = %id, input = req.file_name, "resuming the remembered verging job instead of submitting again");
                (id, true)
            }
            None => {
                if req.input.bytes.len() > MAX_UPLOAD {
                    return Err(ProviderError::Permanent {
                        code: "provider-input-too-large",
                        message: format!(
                            "the picture is {} bytes; verging accepts at most 10 MB",
                            req.input.bytes.len()
                        ),
                    });
                }
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
        Ok(Outcome {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> Value {
        serde_json::from_str(s).expect("json")
    }

    #[test]
    fn job_ids_as_strings_or_numbers() {
        let v = json(r#"{"code":10000,"result":{"job_id":"456"},"message":{"en":"ok"}}"#);
        assert_eq!(created_job_id(&v).as_deref(), Some("456"));
        assert_eq!(
            created_job_id(&json(r#"{"job_id":457}"#)).as_deref(),
            Some("457")
        );
        assert_eq!(created_job_id(&json(r#"{"code":100000}"#)), None);
    }

    #[test]
    fn job_list_is_matched_by_id_text() {
        let v = json(
            r#"[{"id":455,"status":"PROCESSING"},{"id":456,"status":"completed","result_url":"https://x/y.png"}]"#,
        );
        assert_eq!(
            find_job(&v, "456"),
            Some(JobState {
                status: "COMPLETED".into(),
                result_url: Some("https://x/y.png".into())
            })
        );
        assert_eq!(find_job(&v, "9"), None);
        let wrapped = json(r#"{"result":[{"id":"7","status":"FAILED","result_url":null}]}"#);
        assert_eq!(
            find_job(&wrapped, "7").map(|j| j.status),
            Some("FAILED".into())
        );
        assert_eq!(find_job(&json("[]"), "7"), None);
    }

    #[test]
    fn me_and_presigned_shapes() {
        match parse_me(&json(r#"{"email":"a","credits":42}"#)) {
            Credits::Known { left, .. } => assert_eq!(left, Some(42.0)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            presigned(&json(
                r#"{"result":{"url":"https://u","public_url":"https://p"}}"#
            )),
            Some(("https://u".into(), "https://p".into()))
        );
    }
}
