//! `kind = "remove-bg"`: the remove.bg API. One synchronous call per
//! picture — `POST {base_url}/v1.0/removebg` with the key in `X-Api-Key`,
//! the picture as the multipart part `image_file` plus the per-inbox
//! options — answered with the cut-out's PNG bytes and `X-Credits-Charged`.
//! Credits come from `GET {base_url}/v1.0/account`, read by `cutout check`
//! and once before the first picture.
//!
//! Owns: how the per-inbox options (checked into `config::RemoveBgOptions`)
//! go into the request, the reading of remove.bg's answers (`{"errors":
//! [{title, code, detail}]}`; 402 is out of credits, 403 a refused key),
//! and pacing by its rate-limit headers (see `pacer.rs`): the API counts
//! megapixel-images per minute, so each picture reserves its estimated
//! megapixels before it goes out. (The same headers also hold the gate's
//! rate to what is left of the window: `Hosted::send_wire` does that for
//! every hosted kind.)
//!
//! Must not: retry (the queue does), send the key anywhere but the
//! configured base URL, or return bytes it has not verified as a picture.
//!
//! Decided here (documented in docs/providers.md): `format` is always
//! `png` (a cut-out needs its alpha channel); the vendor says failed calls
//! are not charged, so a retried 5xx costs nothing; free API calls count
//! as credits only for the pause re-check's "may it resume".

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::gate::Recheck;
use super::hosted::{Credits, Hosted, HostedApi, HostedProvider, Refused, Spend, Wire};
use super::http::{self, Refusal};
use super::pacer::Pacer;
use super::upload;
use super::verify::{self, Expect};
use super::{key, BuildError, Health, ProviderError, Request, Response};
use crate::config::{RemoveBgConfig, RemoveBgOptions};

/// Largest upload remove.bg accepts.
const MAX_UPLOAD: usize = 12 * 1024 * 1024;
/// Largest JSON answer read.
const MAX_JSON: u64 = 1 << 20;

/// The remove.bg provider.
pub type RemoveBg = HostedProvider<RemoveBgApi>;

/// remove.bg's wire format on the shared hosted core.
pub struct RemoveBgApi {
    core: Hosted,
    pacer: Pacer,
    /// The account was read once (credits known before the first picture).
    account_seen: AtomicBool,
}

impl RemoveBg {
    pub fn build(name: &str, cfg: &RemoveBgConfig) -> Result<RemoveBg, BuildError> {
        Ok(HostedProvider::new(RemoveBgApi {
            core: Hosted::new(name, "remove-bg", &cfg.hosted)?,
            pacer: Pacer::default(),
            account_seen: AtomicBool::new(false),
        }))
    }
}

/// `{"errors": [{"title", "code", "detail"}]}` → "title (code): detail".
pub(crate) fn error_text(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let list = v.get("errors")?.as_array()?;
    let texts: Vec<String> = list
        .iter()
        .filter_map(|e| {
            let title = e.get("title").and_then(|t| t.as_str())?;
            let mut s = title.to_string();
            if let Some(c) = e.get("code").and_then(|c| c.as_str()) {
                s.push_str(&format!(" ({c})"));
            }
            if let Some(d) = e.get("detail").and_then(|d| d.as_str()) {
                if !d.is_empty() && d != title {
                    s.push_str(&format!(": {d}"));
                }
            }
            Some(s)
        })
        .collect();
    (!texts.is_empty()).then(|| texts.join("; "))
}

/// How remove.bg's refusals are read: 402 is out of credits.
const WIRE: Wire = Wire {
    quota: |r: &Refusal| r.status.as_u16() == 402,
    parse: Some(error_text),
};

/// What remove.bg's account answer says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Account {
    pub total: Option<f64>,
    pub free_calls: Option<f64>,
}

impl Account {
    fn parse(v: &Value) -> Account {
        let attrs = v.pointer("/data/attributes");
        let num = |p: &str| attrs.and_then(|a| a.pointer(p)).and_then(|x| x.as_f64());
        Account {
            total: num("/credits/total"),
            free_calls: num("/api/free_calls"),
        }
    }

    fn credits(&self) -> Credits {
        let free = self
            .free_calls
            .map(|f| format!(", {f} free API calls"))
            .unwrap_or_default();
        match self.total {
            Some(t) => Credits::Known {
                left: Some(t),
                detail: format!("{t} credits left{free}"),
            },
            None => Credits::Known {
                left: None,
                detail: format!("the account answer does not say how many credits are left{free}"),
            },
        }
    }
}

/// Megapixel-images one picture counts for the rate limit (at least 1).
fn rate_cost(width: u32, height: u32, opts: &RemoveBgOptions) -> f64 {
    let mp = f64::from(width) * f64::from(height) / 1e6;
    mp.min(opts.megapixel_cap()).ceil().max(1.0)
}

/// The form fields for the options (`format` always `png`).
fn parts(o: &RemoveBgOptions) -> Vec<(&'static str, String)> {
    let b = |v: bool| if v { "true" } else { "false" }.to_string();
    let mut p = vec![("size", o.size.clone()), ("format", "png".to_string())];
    let text = [
        ("type", &o.kind),
        ("type_level", &o.type_level),
        ("crop_margin", &o.crop_margin),
        ("scale", &o.scale),
        ("position", &o.position),
        ("roi", &o.roi),
        ("channels", &o.channels),
        ("bg_color", &o.bg_color),
    ];
    for (k, v) in text {
        if let Some(v) = v {
            p.push((k, v.clone()));
        }
    }
    if let Some(v) = o.crop {
        p.push(("crop", b(v)));
    }
    if let Some(v) = o.semitransparency {
        p.push(("semitransparency", b(v)));
    }
    p
}

fn expect(o: &RemoveBgOptions) -> Expect {
    if o.bg_color.is_some() || o.channels.as_deref() == Some("alpha") {
        Expect::AnyPicture
    } else {
        Expect::Alpha
    }
}

impl RemoveBgApi {
    fn url(&self, path: &str) -> String {
        format!("{}/v1.0/{path}", self.core.cfg.base_url)
    }

    /// `GET /v1.0/account` directly (not through the gate: used by `cutout
    /// check` and the pause re-check, which must work while paused).
    async fn account(&self) -> Result<Account, Credits> {
        let key = self
            .core
            .key_header("")
            .map_err(|e| Credits::Refused(e.to_string()))?;
        let what = format!("provider `{}`: GET /v1.0/account", self.core.name);
        let resp = self
            .core
            .http
            .api
            .get(self.url("account"))
            .header("X-Api-Key", key)
            .timeout(self.core.timeout().min(Duration::from_secs(20)))
            .send()
            .await
            .map_err(|e| {
                let connect = e.is_connect();
                let m = http::send_error(&what, e).to_string();
                if connect {
                    Credits::Down(m)
                } else {
                    Credits::Unreachable(m)
                }
            })?;
        let status = resp.status().as_u16();
        let body = http::read_capped(resp, MAX_JSON)
            .await
            .map_err(|e| Credits::Unreachable(format!("{what}: {e}")))?;
        if !(200..300).contains(&status) {
            let m = error_text(&body).unwrap_or_else(|| format!("HTTP {status}"));
            let msg = http::tidy(&http::redact(
                &format!("{what} answered HTTP {status}: {m}"),
                &self.core.key_text(),
            ));
            return Err(match status {
                401 | 403 => Credits::Refused(msg),
                _ => Credits::Unreachable(msg),
            });
        }
        serde_json::from_slice::<Value>(&body)
            .map(|v| Account::parse(&v))
            .map_err(|_| Credits::Unreachable(format!("{what}: the answer is not JSON")))
    }

    /// Before the first picture: read the account once, log the credits,
    /// and send nothing when neither credits nor free calls are left.
    async fn first_look(&self) -> Result<(), ProviderError> {
        if self.account_seen.load(Ordering::Acquire) {
            return Ok(());
        }
        match self.account().await {
            Ok(a) => {
                self.account_seen.store(true, Ordering::Release);
                self.core.gate.set_credits(a.total);
                if let Credits::Known { detail, .. } = a.credits() {
                    tracing::info!(provider = %self.core.name, "provider `{}` (remove-bg): {detail}", self.core.name);
                    let none = |x: Option<f64>| x.is_some_and(|c| c < 0.25);
                    if none(a.total) && a.free_calls.is_none_or(|f| f < 1.0) {
                        return Err(ProviderError::QuotaExhausted { message: detail });
                    }
                }
                Ok(())
            }
            Err(Credits::Refused(m)) => Err(ProviderError::Auth { message: m }),
            Err(Credits::Down(m)) => Err(ProviderError::Unavailable { message: m }),
            // Could not ask: the picture's own answer will tell.
            Err(_) => Ok(()),
        }
    }

    /// Keep the cached credits honest between account reads.
    fn spend(&self, charged: f64) {
        if let Some(c) = self.core.gate.credits_within(Duration::MAX) {
            self.core.gate.set_credits(Some(c - charged));
        }
    }
}

#[async_trait]
impl HostedApi for RemoveBgApi {
    fn core(&self) -> &Hosted {
        &self.core
    }

    async fn remove(&self, req: &Request<'_>) -> Result<Response, ProviderError> {
        self.core.refuse_if_paused()?;
        let defaults = RemoveBgOptions::default();
        let opts = req.options.remove_bg().unwrap_or(&defaults);
        upload::check_size(req, MAX_UPLOAD, "remove.bg", "12 MB")?;
        let _slot = self.core.slot().await;
        self.first_look().await?;
        let permit = self
            .pacer
            .acquire(rate_cost(req.input.width, req.input.height, opts))
            .await;
        let what = format!("provider `{}`: POST /v1.0/removebg", self.core.name);
        let rb = self
            .core
            .http
            .api
            .post(self.url("removebg"))
            .header("X-Api-Key", self.core.key_header("")?)
            .multipart(upload::form(req, "image_file", parts(opts))?);
        let resp = match self.core.send_wire(&what, rb, WIRE, Spend::Submit).await {
            Ok(r) => r,
            Err(Refused { error, headers }) => {
                if let Some(h) = &headers {
                    self.pacer.observe(&permit, h);
                }
                if let ProviderError::RateLimited { retry_after, .. } = &error {
                    self.pacer.refused(*retry_after);
                }
                return Err(error);
            }
        };
        self.pacer.observe(&permit, resp.headers());
        drop(permit);
        let charged = resp
            .headers()
            .get("x-credits-charged")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|c| c.is_finite() && *c >= 0.0);
        let bytes = http::read_capped(resp, self.core.http.max_body)
            .await
            .map_err(|e| e.into_provider_error(&what))?;
        if let Some(c) = charged {
            self.spend(c);
        }
        let cutout = verify::check_off_thread(bytes, expect(opts), req.output_format).await?;
        Ok(Response {
            cutout,
            remote_job: None,
            credits_used: charged,
        })
    }

    /// While paused: the account tells about key and credits.
    async fn recheck(&self) -> Recheck {
        let outage = self.core.paused_for_outage();
        match self.account().await {
            Ok(a) => {
                let free = a.free_calls.unwrap_or(0.0);
                match a.credits() {
                    // Free calls still let preview-sized pictures through.
                    Credits::Known {
                        left: Some(c),
                        detail,
                    } if c < 1.0 && free < 1.0 => Recheck::NoCredits {
                        credits: c,
                        message: detail,
                    },
                    Credits::Known { left, .. } => Recheck::Ready { credits: left },
                    other => other.recheck(),
                }
            }
            Err(Credits::Unreachable(_)) if outage => Recheck::Ready { credits: None },
            Err(c) => c.recheck(),
        }
    }

    async fn health(&self) -> Health {
        let core = &self.core;
        let mut lines = vec![
            format!("API key from {}", key::describe(&core.cfg.key)),
            format!("base_url {}", core.cfg.base_url),
        ];
        lines.extend(key::inline_key_warning(&core.cfg.key));
        let ok = match self.account().await {
            Ok(a) => {
                let (left, detail) = match a.credits() {
                    Credits::Known { left, detail } => (left, detail),
                    _ => (a.total, String::new()),
                };
                lines.push(format!("reachable; key accepted; {detail}"));
                core.gate.set_credits(left);
                if left.is_some_and(|c| c < 1.0) && a.free_calls.is_none_or(|f| f < 1.0) {
                    lines.push("no credits left: recharge the account".into());
                    false
                } else {
                    true
                }
            }
            Err(Credits::Refused(m)) => {
                lines.push(format!("reachable; key REFUSED: {m}"));
                false
            }
            Err(Credits::Down(m)) => {
                lines.push(format!("NOT reachable: {m}"));
                false
            }
            Err(Credits::Unreachable(m) | Credits::Known { detail: m, .. }) => {
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

    #[test]
    fn error_bodies_give_title_code_and_detail() {
        let b = br#"{"errors":[{"title":"Could not identify foreground in image","code":"unknown_foreground","detail":"For details see the docs"}]}"#;
        assert_eq!(
            error_text(b).as_deref(),
            Some("Could not identify foreground in image (unknown_foreground): For details see the docs")
        );
        assert_eq!(error_text(br#"{"error":"x"}"#), None);
    }

    #[test]
    fn account_answer_gives_credits_and_free_calls() {
        let v: Value = serde_json::from_str(
            r#"{"data":{"attributes":{"credits":{"total":200.5,"subscription":150,"payg":50.5,"enterprise":0},"api":{"free_calls":50,"sizes":"all"}}}}"#,
        )
        .expect("json");
        let a = Account::parse(&v);
        assert_eq!(a.total, Some(200.5));
        assert_eq!(a.free_calls, Some(50.0));
    }

    #[test]
    fn options_become_form_fields_and_costs() {
        let mut o = RemoveBgOptions::default();
        assert_eq!(
            parts(&o),
            vec![("size", "auto".into()), ("format", "png".into())]
        );
        assert_eq!(expect(&o), Expect::Alpha);
        assert_eq!(rate_cost(4000, 3000, &o), 12.0);
        assert_eq!(rate_cost(100, 100, &o), 1.0);
        o.size = "preview".into();
        o.bg_color = Some("fff".into());
        o.crop = Some(true);
        assert_eq!(rate_cost(4000, 3000, &o), 1.0);
        assert_eq!(expect(&o), Expect::AnyPicture);
        let p = parts(&o);
        assert!(p.contains(&("bg_color", "fff".into())));
        assert!(p.contains(&("crop", "true".into())));
    }
}
