//! `kind = "rembg-server"`: open-source rembg's own HTTP server (`rembg s`),
//! usually on the same machine or the local network. One call per picture
//! — `POST {base_url}/api/remove` with the picture as the multipart part
//! `file`, the form fields `model`, `a`, `af`, `ab`, `ae`, `om`, `ppm`
//! and `bgc` / `extras` as query parameters — answered with a
//! PNG. No key and no credits; an optional header for a reverse proxy in
//! front of it (`auth_header`, value from the usual key settings).
//!
//! Owns: how the per-inbox options (checked into
//! `config::RembgServerOptions`) go into the request, and the reading of
//! the server's answers: 422 `{"detail": [{loc, msg}]}` fails the file
//! with the message, 500 is retried, no connection pauses the provider as
//! unreachable until `GET /openapi.json` answers again.
//!
//! Must not: retry (the queue does), log or return the proxy secret, or
//! return bytes it has not verified as a picture.

use async_trait::async_trait;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;

use super::gate::Recheck;
use super::hosted::{Hosted, HostedApi, HostedProvider, Spend, Wire};
use super::http;
use super::upload;
use super::verify::{self, Expect};
use super::{key, BuildError, Health, ProviderError, Request, Response};
use crate::config::{RembgServerConfig, RembgServerOptions, ServerAuth};

/// The rembg-server provider.
pub type RembgServer = HostedProvider<RembgServerApi>;

/// rembg's server on the shared hosted core.
pub struct RembgServerApi {
    core: Hosted,
    auth: Option<ServerAuth>,
}

impl RembgServer {
    pub fn build(name: &str, cfg: &RembgServerConfig) -> Result<RembgServer, BuildError> {
        if let Some(a) = &cfg.auth {
            HeaderName::from_bytes(a.header.as_bytes()).map_err(|_| BuildError {
                provider: name.to_string(),
                message: format!("auth_header {:?} is not a header name", a.header),
            })?;
        }
        Ok(HostedProvider::new(RembgServerApi {
            core: Hosted::new(name, "rembg-server", &cfg.hosted)?,
            auth: cfg.auth.clone(),
        }))
    }
}

/// FastAPI's `{"detail": [{"loc": [...], "msg": "..."}]}` (or `{"detail":
/// "text"}`) → "body.af: Input should be …".
pub(crate) fn detail_text(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    match v.get("detail")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => {
            let texts: Vec<String> = list
                .iter()
                .filter_map(|d| {
                    let msg = d.get("msg").and_then(|m| m.as_str())?;
                    let loc: Vec<String> = d
                        .get("loc")
                        .and_then(|l| l.as_array())
                        .map(|l| {
                            l.iter()
                                .map(|x| match x {
                                    Value::String(s) => s.clone(),
                                    other => other.to_string(),
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    Some(if loc.is_empty() {
                        msg.to_string()
                    } else {
                        format!("{}: {msg}", loc.join("."))
                    })
                })
                .collect();
            (!texts.is_empty()).then(|| texts.join("; "))
        }
        _ => None,
    }
}

/// How the server's refusals are read: no credits, `{"detail": …}` bodies.
const WIRE: Wire = Wire {
    quota: |_| false,
    parse: Some(detail_text),
};

/// The form fields for the options (`model` always).
fn fields(o: &RembgServerOptions) -> Vec<(&'static str, String)> {
    let b = |v: bool| if v { "true" } else { "false" }.to_string();
    let mut p = vec![("model", o.model.clone())];
    for (k, v) in [("a", o.a), ("om", o.om), ("ppm", o.ppm)] {
        if let Some(v) = v {
            p.push((k, b(v)));
        }
    }
    for (k, v) in [("af", o.af), ("ab", o.ab)] {
        if let Some(v) = v {
            p.push((k, v.to_string()));
        }
    }
    if let Some(v) = o.ae {
        p.push(("ae", v.to_string()));
    }
    p
}

/// The query parameters (`bgc`, `extras`: query even on POST).
fn query(o: &RembgServerOptions) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some([r, g, b, a]) = o.bgc {
        q.push(("bgc", format!("{r},{g},{b},{a}")));
    }
    if let Some(e) = &o.extras {
        q.push(("extras", e.clone()));
    }
    q
}

fn expect(o: &RembgServerOptions) -> Expect {
    let opaque_fill = o.bgc.is_some_and(|c| c[3] == 255);
    if o.om == Some(true) || opaque_fill {
        Expect::AnyPicture
    } else {
        Expect::Alpha
    }
}

impl RembgServerApi {
    /// The proxy header, when configured (marked sensitive).
    fn auth_header(&self) -> Result<Option<(HeaderName, HeaderValue)>, ProviderError> {
        let Some(a) = &self.auth else {
            return Ok(None);
        };
        let name =
            HeaderName::from_bytes(a.header.as_bytes()).map_err(|_| ProviderError::Auth {
                message: format!("auth_header {:?} is not a header name", a.header),
            })?;
        let prefix = a
            .scheme
            .as_deref()
            .map(|s| format!("{s} "))
            .unwrap_or_default();
        Ok(Some((name, self.core.key_header(&prefix)?)))
    }

    fn with_auth(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        Ok(match self.auth_header()? {
            Some((n, v)) => rb.header(n, v),
            None => rb,
        })
    }

    /// A refusal without `auth_header` set: say what would fix it.
    fn explain(&self, e: ProviderError) -> ProviderError {
        match e {
            ProviderError::Auth { message } if self.auth.is_none() => ProviderError::Auth {
                message: format!(
                    "{message}; rembg's server has no key of its own, so a proxy in front of it wants one: set auth_header (and api_key_file) in [providers.{}]",
                    self.core.name
                ),
            },
            other => other,
        }
    }

    /// `GET /openapi.json` (not through the gate): the server has no health
    /// endpoint; its API description answers whenever it runs.
    async fn probe(&self) -> Result<u16, (bool, String)> {
        let what = format!("provider `{}`: GET /openapi.json", self.core.name);
        let rb = self
            .core
            .http
            .api
            .get(format!("{}/openapi.json", self.core.cfg.base_url))
            .timeout(self.core.timeout().min(std::time::Duration::from_secs(20)));
        let rb = self.with_auth(rb).map_err(|e| (false, e.to_string()))?;
        match rb.send().await {
            Ok(r) => Ok(r.status().as_u16()),
            Err(e) => {
                let connect = e.is_connect();
                Err((connect, http::send_error(&what, e).to_string()))
            }
        }
    }
}

#[async_trait]
impl HostedApi for RembgServerApi {
    fn core(&self) -> &Hosted {
        &self.core
    }

    async fn remove(&self, req: &Request<'_>) -> Result<Response, ProviderError> {
        self.core.refuse_if_paused()?;
        let defaults = RembgServerOptions::default();
        let opts = req.options.rembg_server().unwrap_or(&defaults);
        let _slot = self.core.slot().await;
        let form = upload::form(req, "file", fields(opts))?;
        let what = format!("provider `{}`: POST /api/remove", self.core.name);
        let rb = self
            .core
            .http
            .api
            .post(format!("{}/api/remove", self.core.cfg.base_url))
            .query(&query(opts))
            .multipart(form);
        let rb = self.with_auth(rb)?;
        let resp = self
            .core
            .send_wire(&what, rb, WIRE, Spend::Submit)
            .await
            .map_err(|r| self.explain(r.error))?;
        let bytes = http::read_capped(resp, self.core.http.max_body)
            .await
            .map_err(|e| e.into_provider_error(&what))?;
        let cutout = verify::check_off_thread(bytes, expect(opts), req.output_format).await?;
        Ok(Response {
            cutout,
            remote_job: None,
            credits_used: None,
        })
    }

    /// While paused: any answer from the server ends an outage; the proxy
    /// must accept the secret again to end a key pause.
    async fn recheck(&self) -> Recheck {
        match self.probe().await {
            Ok(401 | 403) => Recheck::KeyRefused {
                message: "the proxy in front of the rembg server still refuses the auth header"
                    .into(),
            },
            Ok(_) => Recheck::Ready { credits: None },
            Err((true, message)) => Recheck::Down { message },
            Err((false, message)) => Recheck::Unknown { message },
        }
    }

    async fn health(&self) -> Health {
        let core = &self.core;
        let mut lines = vec![format!(
            "base_url {} (no credits; concurrency {})",
            core.cfg.base_url, core.cfg.concurrency
        )];
        if let Some(a) = &self.auth {
            lines.push(format!(
                "proxy header {} from {}",
                a.header,
                key::describe(&core.cfg.key)
            ));
            lines.extend(key::inline_key_warning(&core.cfg.key));
        }
        let ok = match self.probe().await {
            Ok(s @ (401 | 403)) => {
                lines.push(format!("reachable; auth header REFUSED (HTTP {s})"));
                false
            }
            Ok(s) if (200..300).contains(&s) => {
                lines.push(format!("reachable (HTTP {s} to GET /openapi.json)"));
                true
            }
            Ok(s) => {
                lines.push(format!(
                    "reachable, but GET /openapi.json answered HTTP {s}: is this rembg's server (`rembg s`)?"
                ));
                false
            }
            Err((_, m)) => {
                lines.push(format!("NOT reachable: {m}"));
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
    fn fastapi_details_become_one_message() {
        let b = br#"{"detail":[{"type":"int_parsing","loc":["body","af"],"msg":"Input should be a valid integer","input":"x"}]}"#;
        assert_eq!(
            detail_text(b).as_deref(),
            Some("body.af: Input should be a valid integer")
        );
        assert_eq!(
            detail_text(br#"{"detail":"Too many redirects."}"#).as_deref(),
            Some("Too many redirects.")
        );
        assert_eq!(detail_text(b"Internal Server Error"), None);
    }

    #[test]
    fn options_split_into_form_and_query() {
        let o = RembgServerOptions {
            model: "u2netp".into(),
            a: Some(true),
            af: Some(200),
            bgc: Some([255, 255, 255, 255]),
            extras: Some("{}".into()),
            ..RembgServerOptions::default()
        };
        let f = fields(&o);
        assert!(f.contains(&("model", "u2netp".into())));
        assert!(f.contains(&("a", "true".into())));
        assert!(f.contains(&("af", "200".into())));
        assert!(!f.iter().any(|(k, _)| *k == "bgc"));
        assert_eq!(
            query(&o),
            vec![("bgc", "255,255,255,255".into()), ("extras", "{}".into())]
        );
        assert_eq!(expect(&o), Expect::AnyPicture);
        assert_eq!(expect(&RembgServerOptions::default()), Expect::Alpha);
    }
}
