//! `kind = "rembg-com"`: the rembg.com hosted API. One synchronous call per
//! picture — `POST {base_url}/rmbg` with the key in `x-api-key`, the picture
//! as the multipart part `image` plus the per-inbox options — answered with
//! the cut-out's bytes. Credits come from the membership-usage endpoint
//! (`usage_url`, on another host).
//!
//! Owns: how the per-inbox options (checked into `config::RembgOptions`
//! when the config is read) go into the request, the request shape, the
//! reading of rembg's answers (a 429 that speaks of a daily/monthly limit is
//! quota, not a burst) and of its usage report.
//!
//! Must not: retry (the queue does), send the key anywhere but the two
//! configured URLs, or return bytes it has not verified as a picture.
//!
//! Not documented by the vendor, so decided here: the credits a picture
//! used are not reported (the audit line's `credits` stays empty); the
//! output `format` sent is the inbox's `output_format` unless the options
//! name one, so the provider's bytes can be written untouched.

use async_trait::async_trait;

use super::gate::Recheck;
use super::hosted::{Credits, Hosted, HostedApi, HostedProvider, Spend};
use super::http::{self, Refusal};
use super::upload;
use super::verify::{self, Expect};
use super::{key, BuildError, Health, ProviderError, Request, Response};
use crate::config::{OutputFormat, RembgConfig, RembgOptions};

/// Largest upload rembg.com accepts.
const MAX_UPLOAD: usize = 50 * 1024 * 1024;

/// The rembg.com provider.
pub type RembgCom = HostedProvider<RembgApi>;

/// rembg.com's wire format on the shared hosted core.
pub struct RembgApi {
    core: Hosted,
    usage_url: String,
}

impl RembgCom {
    pub fn build(name: &str, cfg: &RembgConfig) -> Result<RembgCom, BuildError> {
        Ok(HostedProvider::new(RembgApi {
            core: Hosted::new(name, "rembg-com", &cfg.hosted)?,
            usage_url: cfg.usage_url.clone(),
        }))
    }
}

/// rembg says "daily limit" / "monthly limit … purchase more credits" on a
/// 429 when the plan is used up: that is quota, not a burst.
fn is_quota(r: &Refusal) -> bool {
    let m = r.message.to_ascii_lowercase();
    r.status.as_u16() == 429
        && (m.contains("daily") || m.contains("monthly") || m.contains("credit"))
}

impl RembgApi {
    /// A key-less `GET {base_url}/rmbg`: any HTTP answer means reachable.
    async fn probe(&self) -> Result<u16, String> {
        self.core
            .http
            .api
            .get(format!("{}/rmbg", self.core.cfg.base_url))
            .timeout(self.core.timeout().min(std::time::Duration::from_secs(20)))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| http::send_error("GET /rmbg", e).to_string())
    }

    /// Ask the usage endpoint (not through the gate: another host, and it
    /// must work while paused).
    async fn credits(&self) -> Credits {
        let key = match self.core.key_header("") {
            Ok(k) => k,
            Err(e) => return Credits::Refused(e.to_string()),
        };
        let rb = self
            .core
            .http
            .api
            .get(&self.usage_url)
            .query(&[("expand", "billing_cycle")])
            .header("x-api-key", key)
            .timeout(self.core.timeout().min(std::time::Duration::from_secs(20)));
        let what = format!("provider `{}`: GET membership-usage", self.core.name);
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                return Credits::Down(http::send_error(&what, e).to_string())
            }
            Err(e) => return Credits::Unreachable(http::send_error(&what, e).to_string()),
        };
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let r = Refusal::read(resp, &self.core.key_text()).await;
            let msg = format!("{what} answered HTTP {status}: {}", r.message);
            return if status == 401 || status == 403 {
                Credits::Refused(msg)
            } else {
                Credits::Unreachable(msg)
            };
        }
        let body = match http::read_capped(resp, 1 << 20).await {
            Ok(b) => b,
            Err(e) => return Credits::Unreachable(format!("{what}: {e}")),
        };
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v) => parse_usage(&v),
            Err(_) => Credits::Unreachable(format!("{what}: the answer is not JSON")),
        }
    }
}

/// `billingCycle.remainingIncludedCredits + prepaidCredits`.
fn parse_usage(v: &serde_json::Value) -> Credits {
    let num = |v: Option<&serde_json::Value>| v.and_then(|x| x.as_f64());
    let plan = v
        .get("membership")
        .and_then(|m| m.as_str())
        .map(|m| format!("plan {m}; "))
        .unwrap_or_default();
    let cycle = v.get("billingCycle");
    let included = num(cycle.and_then(|c| c.get("remainingIncludedCredits")));
    let prepaid = num(cycle.and_then(|c| c.get("prepaidCredits"))).or(num(v.get("prepaidCredits")));
    match (included, prepaid) {
        (Some(i), p) => {
            let p = p.unwrap_or(0.0);
            let left = i + p;
            Credits::Known {
                left: Some(left),
                detail: format!("{plan}{left} credits left ({i} included + {p} prepaid)"),
            }
        }
        (None, _) => Credits::Known {
            left: None,
            detail: format!("{plan}the usage answer does not say how many credits are left"),
        },
    }
}

/// The per-inbox options (checked in `config`) as rembg.com's request
/// wants them.
trait WireOptions {
    /// What the answer must look like.
    fn expect(&self) -> Expect;
    /// The text parts to send.
    fn parts(&self, output: OutputFormat) -> Vec<(&'static str, String)>;
}

impl WireOptions for RembgOptions {
    /// What the answer must look like.
    fn expect(&self) -> Expect {
        if self.mask == Some(true) || self.bg_color.is_some() {
            Expect::AnyPicture
        } else {
            Expect::Alpha
        }
    }

    /// The text parts to send.
    fn parts(&self, output: OutputFormat) -> Vec<(&'static str, String)> {
        let format = self.format.unwrap_or(output);
        let mut p = vec![("format", format.extension().to_string())];
        let b = |v: bool| if v { "true" } else { "false" }.to_string();
        if let Some(w) = self.w {
            p.push(("w", w.to_string()));
        }
        if let Some(h) = self.h {
            p.push(("h", h.to_string()));
        }
        if let Some(v) = self.exact_resize {
            p.push(("exact_resize", b(v)));
        }
        if let Some(v) = self.mask {
            p.push(("mask", b(v)));
        }
        if let Some(c) = &self.bg_color {
            p.push(("bg_color", c.clone()));
        }
        if let Some(a) = self.angle {
            p.push(("angle", format!("{a}")));
        }
        if let Some(v) = self.expand {
            p.push(("expand", b(v)));
        }
        p
    }
}

#[async_trait]
impl HostedApi for RembgApi {
    fn core(&self) -> &Hosted {
        &self.core
    }

    async fn remove(&self, req: &Request<'_>) -> Result<Response, ProviderError> {
        self.core.refuse_if_paused()?;
        // Checked with the config; an inbox of this kind always has them.
        let defaults = RembgOptions::default();
        let opts = req.options.rembg().unwrap_or(&defaults);
        upload::check_size(req, MAX_UPLOAD, "rembg.com", "50 MB")?;
        let _slot = self.core.slot().await;
        let form = upload::form(req, "image", opts.parts(req.output_format))?;
        let what = format!("provider `{}`: POST /rmbg", self.core.name);
        let rb = self
            .core
            .http
            .api
            .post(format!("{}/rmbg", self.core.cfg.base_url))
            .header("x-api-key", self.core.key_header("")?)
            .multipart(form);
        let resp = self.core.send(&what, rb, is_quota, Spend::Submit).await?;
        let bytes = http::read_capped(resp, self.core.http.max_body)
            .await
            .map_err(|e| e.into_provider_error(&what))?;
        let expect = opts.expect();
        let want = req.output_format;
        let cutout = verify::check_off_thread(bytes, expect, want).await?;
        Ok(Response {
            cutout,
            remote_job: None,
            credits_used: None,
        })
    }

    /// The pause re-check: the processing host must answer at all, then
    /// the usage endpoint tells about key and credits.
    async fn recheck(&self) -> Recheck {
        if let Err(message) = self.probe().await {
            return Recheck::Down { message };
        }
        let outage = self.core.paused_for_outage();
        match self.credits().await {
            // Paused for an outage and the processing host answers again:
            // go; a real request will tell about key and credits.
            Credits::Unreachable(_) | Credits::Down(_) if outage => {
                Recheck::Ready { credits: None }
            }
            c => c.recheck(),
        }
    }

    async fn health(&self) -> Health {
        let core = &self.core;
        let mut lines = vec![format!("API key from {}", key::describe(&core.cfg.key))];
        lines.extend(key::inline_key_warning(&core.cfg.key));
        // Reachability of the processing host, without the key.
        let mut ok = match self.probe().await {
            Ok(status) => {
                lines.push(format!(
                    "{}: reachable (HTTP {status} to a key-less GET /rmbg)",
                    core.cfg.base_url
                ));
                true
            }
            Err(m) => {
                lines.push(format!("{}: NOT reachable: {m}", core.cfg.base_url));
                false
            }
        };
        match self.credits().await {
            Credits::Known { left, detail } => {
                lines.push(format!("{}: key accepted; {detail}", self.usage_url));
                if left.is_some_and(|c| c < 1.0) {
                    lines.push("no credits left: recharge the account".into());
                    ok = false;
                }
                core.gate.set_credits(left);
            }
            Credits::Refused(m) => {
                lines.push(format!("key REFUSED: {m}"));
                ok = false;
            }
            Credits::Unreachable(m) | Credits::Down(m) => {
                lines.push(format!("credits unknown: {m}"));
                ok = false;
            }
        }
        Health { lines, ok }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_request_parts() {
        let o = RembgOptions {
            w: Some(2000),
            bg_color: Some("#ffffff".into()),
            ..RembgOptions::default()
        };
        assert_eq!(o.expect(), Expect::AnyPicture);
        let parts = o.parts(OutputFormat::Png);
        assert!(parts.contains(&("format", "png".into())));
        assert!(parts.contains(&("w", "2000".into())));
        assert!(parts.contains(&("bg_color", "#ffffff".into())));
        let plain = RembgOptions::default();
        assert_eq!(plain.expect(), Expect::Alpha);
        assert_eq!(
            plain.parts(OutputFormat::Webp),
            vec![("format", "webp".into())]
        );
    }

    #[test]
    fn quota_429s_are_told_from_bursts() {
        let r = |m: &str| Refusal {
            status: reqwest::StatusCode::TOO_MANY_REQUESTS,
            retry_after: None,
            message: m.into(),
            error_code: None,
        };
        assert!(is_quota(&r(
            "You've reached your monthly limit. Consider purchasing more credits."
        )));
        assert!(is_quota(&r("You've reached your daily limit")));
        assert!(!is_quota(&r(
            "You're making requests too quickly. Please slow down"
        )));
    }

    #[test]
    fn usage_answer_gives_credits_left() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"membership":"Pro","credits":1000,"prepaidCredits":5,
                "billingCycle":{"remainingIncludedCredits":7,"prepaidCredits":5}}"#,
        )
        .expect("json");
        match parse_usage(&v) {
            Credits::Known { left, .. } => assert_eq!(left, Some(12.0)),
            other => panic!("{other:?}"),
        }
    }
}
