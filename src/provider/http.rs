//! The HTTP pieces the hosted providers share: building the reqwest clients
//! (rustls, timeouts, no automatic retries), the rule for URLs a provider
//! hands back, `Retry-After` parsing, size-capped body reading, error-body
//! parsing, and the mapping of HTTP answers and transport errors onto
//! [`ProviderError`].
//!
//! Owns: everything about "what did the wire say", nothing about any one
//! vendor's endpoints (those live in `rembg_com.rs` and `verging.rs`).
//!
//! Must not: retry (the queue does), follow a redirect with an API key on
//! it, follow a provider-given URL over plain http (except loopback when the
//! provider itself is configured on plain-http loopback), read an unbounded
//! body, or put a key or a signed URL's query into an error message.

use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};

pub use super::url_guard::display_url;
use super::url_guard::{self, GuardedResolver};
use super::ProviderError;
use crate::config::HostedConfig;
use crate::job::Code;
use crate::net::is_loopback;

/// Longest `Retry-After` honoured as given; longer answers are cut to this
/// (a provider asking for a day should not park a file for a day).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Largest error body read (error JSON is small; HTML error pages are cut).
const MAX_ERROR_BODY: u64 = 64 * 1024;
/// Longest provider message kept in an error (and so in reason.json).
const MAX_MESSAGE: usize = 400;

/// The two clients of one provider and the rules they follow.
pub struct Http {
    /// For API calls that carry the key: never follows redirects (a
    /// redirect would carry a custom key header to wherever it points).
    pub api: reqwest::Client,
    /// For URLs the provider hands back (results, presigned uploads): no
    /// key on them; follows up to 5 redirects, each checked by the URL rule.
    pub fetch: reqwest::Client,
    /// Whole-request time limit.
    pub timeout: Duration,
    /// Largest body read.
    pub max_body: u64,
    /// Plain http allowed for handed-back URLs (loopback only), because the
    /// provider itself is configured on plain-http loopback.
    pub allow_plain_http: bool,
    /// Handed-back URLs may point at private/loopback hosts, because the
    /// provider itself is configured on loopback (see `url_guard.rs`).
    pub allow_local: bool,
}

impl Http {
    pub fn new(cfg: &HostedConfig) -> Result<Http, String> {
        let base = Url::parse(&cfg.base_url).ok();
        let allow_local = base.as_ref().is_some_and(is_loopback);
        let allow_plain_http = base
            .as_ref()
            .is_some_and(|u| u.scheme() == "http" && is_loopback(u));
        let connect = cfg.timeout.min(Duration::from_secs(10));
        let agent = concat!("cutout/", env!("CARGO_PKG_VERSION"));
        crate::net::install_tls_provider();
        let api = reqwest::Client::builder()
            .user_agent(agent)
            .connect_timeout(connect)
            .timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        let fetch = reqwest::Client::builder()
            .user_agent(agent)
            .connect_timeout(connect)
            .timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    attempt.error("more than 5 redirects")
                } else if let Err(e) = url_rule(allow_plain_http, allow_local, attempt.url()) {
                    attempt.error(e)
                } else {
                    attempt.follow()
                }
            }))
            // Host names are checked where they are resolved, for the
            // first request and every redirect alike.
            .dns_resolver(GuardedResolver { allow_local })
            .retry(reqwest::retry::never())
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Http {
            api,
            fetch,
            timeout: cfg.timeout,
            max_body: cfg.max_result_size,
            allow_plain_http,
            allow_local,
        })
    }

    /// Check a URL the provider handed back (`url`, `result_url`, …):
    /// https only, and its host must resolve to public addresses only
    /// (both relaxed when `base_url` is on loopback).
    pub async fn followable(&self, text: &str) -> Result<Url, ProviderError> {
        let url = Url::parse(text.trim()).map_err(|_| ProviderError::Transient {
            code: Code::ProviderBadAnswer,
            message: "the provider handed back a URL that cannot be read".into(),
            retry_after: None,
        })?;
        let insecure = |m: String| ProviderError::Transient {
            code: Code::ProviderInsecureUrl,
            message: m,
            retry_after: None,
        };
        url_rule(self.allow_plain_http, self.allow_local, &url).map_err(insecure)?;
        url_guard::check_url(self.allow_local, &url)
            .await
            .map_err(insecure)?;
        Ok(url)
    }
}

/// https only (plain http only on loopback and only when allowed), and no
/// non-public IP-literal host unless allowed (host names: `url_guard`).
fn url_rule(allow_plain_http: bool, allow_local: bool, url: &Url) -> Result<(), String> {
    match url.scheme() {
        "https" => {}
        "http" if allow_plain_http && is_loopback(url) => {}
        other => {
            return Err(format!(
                "refusing to follow the {other} URL {} the provider handed back: only https is followed",
                display_url(url)
            ))
        }
    }
    match url_guard::literal_refused(allow_local, url) {
        Some(a) => Err(format!(
            "refusing to follow the URL {} the provider handed back: {a} is a private, loopback \
             or link-local address (only public addresses are followed unless base_url itself \
             is on loopback)",
            display_url(url)
        )),
        None => Ok(()),
    }
}

/// `Retry-After`: delta-seconds (decimals tolerated) or an HTTP date,
/// relative to `now`. A date in the past means "now". Capped at
/// [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    let d = if v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = v.parse().ok()?;
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64()))
    } else {
        let at = httpdate::parse_http_date(v).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// The `Retry-After` of a response, if present and readable.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(v, SystemTime::now())
}

/// Why a body could not be read in full.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than {max} bytes (max_result_size)")]
    TooLarge { max: u64 },
    #[error("the answer was cut short after {got} bytes: {detail}")]
    Cut { got: usize, detail: String },
}

impl BodyError {
    pub fn into_provider_error(self, what: &str) -> ProviderError {
        match self {
            BodyError::TooLarge { .. } => ProviderError::Permanent {
                code: Code::ProviderResultTooLarge,
                message: format!("{what}: {self}"),
            },
            BodyError::Cut { .. } => ProviderError::Transient {
                code: Code::ProviderTruncated,
                message: format!("{what}: {self}"),
                retry_after: None,
            },
        }
    }
}

/// Read a whole body, refusing more than `max` bytes, and reporting a body
/// that ends before its `Content-Length` (or breaks off) as cut short.
pub async fn read_capped(mut resp: reqwest::Response, max: u64) -> Result<Bytes, BodyError> {
    let declared = resp.content_length();
    if declared.is_some_and(|n| n > max) {
        return Err(BodyError::TooLarge { max });
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(max).min(16 << 20) as usize);
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if buf.len() as u64 + c.len() as u64 > max {
                    return Err(BodyError::TooLarge { max });
                }
                buf.extend_from_slice(&c);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(BodyError::Cut {
                    got: buf.len(),
                    detail: transport_detail(&e),
                })
            }
        }
    }
    if let Some(n) = declared {
        if (buf.len() as u64) < n {
            return Err(BodyError::Cut {
                got: buf.len(),
                detail: format!("{n} bytes were announced"),
            });
        }
    }
    Ok(buf.freeze())
}

/// A short, key-free description of a transport error.
fn transport_detail(e: &reqwest::Error) -> String {
    use std::error::Error;
    // The innermost cause is the useful part ("connection reset by peer").
    let mut msg = String::new();
    let mut cur: Option<&dyn Error> = Some(e);
    while let Some(c) = cur {
        let s = c.to_string();
        if !s.is_empty() {
            msg = s;
        }
        cur = c.source();
    }
    if e.is_timeout() {
        "timed out".to_string()
    } else {
        tidy(&msg)
    }
}

/// A failed send (nothing or only part of an answer came back).
pub fn send_error(what: &str, e: reqwest::Error) -> ProviderError {
    let e = e.without_url();
    let detail = transport_detail(&e);
    let code = if e.is_timeout() {
        Code::ProviderTimeout
    } else if e.is_connect() {
        Code::ProviderUnreachable
    } else if e.is_redirect() {
        Code::ProviderInsecureUrl
    } else {
        Code::ProviderConnectionLost
    };
    ProviderError::Transient {
        code,
        message: format!("{what}: {detail}"),
        retry_after: None,
    }
}

/// Reads a vendor's error body into one message (None: not its shape).
pub type ErrorParser = fn(&[u8]) -> Option<String>;

/// A non-2xx answer, with what the body said.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    /// The provider's message (from its JSON error body), tidied.
    pub message: String,
    /// verging's `error_code`, when given.
    pub error_code: Option<i64>,
}

impl Refusal {
    /// Read the error body of a non-2xx response (bounded).
    pub async fn read(resp: reqwest::Response, secret: &str) -> Refusal {
        Refusal::read_with(resp, secret, None).await
    }

    /// Like [`Refusal::read`], with the vendor's own error-body reader
    /// tried first (the shared one reads `{"error"|"message"|…}` shapes).
    pub async fn read_with(
        resp: reqwest::Response,
        secret: &str,
        parse: Option<ErrorParser>,
    ) -> Refusal {
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let body = read_capped(resp, MAX_ERROR_BODY).await.unwrap_or_default();
        let (message, error_code) = error_message(&body);
        let message = parse.and_then(|p| p(&body)).or(message);
        let message = message.unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("no message")
                .to_string()
        });
        Refusal {
            status,
            retry_after,
            message: tidy(&redact(&message, secret)),
            error_code,
        }
    }

    /// Map onto a provider error. `quota` says whether this answer means
    /// "out of credits / at the plan's limit" (vendor-specific).
    pub fn into_error(self, what: &str, quota: bool) -> ProviderError {
        let s = self.status.as_u16();
        let message = format!("{what} answered HTTP {s}: {}", self.message);
        if quota || s == 402 {
            return ProviderError::QuotaExhausted { message };
        }
        match s {
            429 => ProviderError::RateLimited {
                message,
                retry_after: self.retry_after,
            },
            401 | 403 => ProviderError::Auth { message },
            400 | 413 | 415 | 422 => ProviderError::Permanent {
                code: Code::ProviderRejectedFile,
                message,
            },
            408 | 425 => ProviderError::Transient {
                code: Code::ProviderTimeout,
                message,
                retry_after: self.retry_after,
            },
            500..=599 => ProviderError::Transient {
                code: Code::ProviderServerError,
                message,
                retry_after: self.retry_after,
            },
            _ => ProviderError::Transient {
                code: Code::ProviderUnexpectedAnswer,
                message,
                retry_after: self.retry_after,
            },
        }
    }
}

/// The message in a vendor error body: rembg `{"error": …, "details":
/// [{"field", "message"}]}`, verging `{"error_code": …, "message": …}`
/// (`message` may be `{"en": …}`); a short plain-text body as it is; HTML
/// or binary → None.
pub fn error_message(body: &[u8]) -> (Option<String>, Option<i64>) {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let text = |v: &serde_json::Value| -> Option<String> {
            match v {
                serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
                serde_json::Value::Object(o) => o
                    .get("en")
                    .and_then(|e| e.as_str())
                    .map(str::to_string)
                    .or_else(|| o.values().find_map(|x| x.as_str().map(str::to_string))),
                _ => None,
            }
        };
        let code = v.get("error_code").and_then(|c| {
            c.as_i64()
                .or_else(|| c.as_str().and_then(|s| s.trim().parse().ok()))
        });
        let mut msg = ["error", "message", "detail", "msg"]
            .iter()
            .find_map(|k| v.get(*k).and_then(text));
        if let Some(details) = v.get("details").and_then(|d| d.as_array()) {
            let extra: Vec<String> = details
                .iter()
                .filter_map(|d| {
                    let m = d.get("message").and_then(|m| m.as_str())?;
                    if msg.as_deref().is_some_and(|x| x.contains(m)) {
                        return None;
                    }
                    Some(match d.get("field").and_then(|f| f.as_str()) {
                        Some(f) => format!("{f}: {m}"),
                        None => m.to_string(),
                    })
                })
                .collect();
            if !extra.is_empty() {
                let joined = extra.join("; ");
                msg = Some(match msg {
                    Some(m) => format!("{m} ({joined})"),
                    None => joined,
                });
            }
        }
        return (msg.map(|m| tidy(&m)), code);
    }
    let text = String::from_utf8_lossy(body);
    let t = text.trim();
    let html = t.starts_with('<');
    if t.is_empty() || html || text.contains('\u{FFFD}') {
        return (None, None);
    }
    (Some(tidy(t)), None)
}

/// One line, no control characters, at most [`MAX_MESSAGE`] characters.
pub fn tidy(s: &str) -> String {
    let one: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let one = one.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > MAX_MESSAGE {
        let cut: String = one.chars().take(MAX_MESSAGE).collect();
        format!("{cut}…")
    } else {
        one
    }
}

/// `text` with every occurrence of `secret` replaced (a provider that echoes
/// the key back must not get it into reason files or logs).
pub fn redact(text: &str, secret: &str) -> String {
    if secret.len() < 4 {
        return text.to_string();
    }
    text.replace(secret, "[redacted]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 1.5 ", now),
            Some(Duration::from_millis(1500))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(7)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("999999999", now), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn handed_back_urls_are_https_only() {
        let u = |s: &str| Url::parse(s).expect("url");
        assert!(url_rule(false, false, &u("https://cdn.example.com/x.png")).is_ok());
        assert!(url_rule(false, false, &u("http://127.0.0.1:9/x.png")).is_err());
        assert!(url_rule(true, true, &u("http://127.0.0.1:9/x.png")).is_ok());
        assert!(url_rule(true, true, &u("http://[::1]:9/x.png")).is_ok());
        assert!(url_rule(true, true, &u("http://localhost:9/x.png")).is_ok());
        assert!(url_rule(true, true, &u("http://cdn.example.com/x.png")).is_err());
        assert!(url_rule(true, true, &u("ftp://127.0.0.1/x.png")).is_err());
        // Non-public IP literals: refused unless base_url is on loopback.
        for bad in [
            "https://10.0.0.7/x.png",
            "https://169.254.169.254/latest/meta-data/",
            "https://[::ffff:192.168.0.1]/x.png",
            "https://[fd00::5]/x.png",
            "https://127.0.0.1:8443/x.png",
            "https://100.64.1.1/x.png",
        ] {
            let e = url_rule(false, false, &u(bad)).unwrap_err();
            assert!(e.contains("private, loopback or link-local"), "{bad}: {e}");
            assert!(
                url_rule(false, true, &u(bad)).is_ok(),
                "{bad} with a loopback base"
            );
        }
        assert!(url_rule(false, false, &u("https://93.184.215.14/x.png")).is_ok());
        let e = url_rule(false, false, &u("http://h.example/x?X-Amz-Signature=abc")).unwrap_err();
        assert!(!e.contains("abc"), "{e}");
    }

    #[test]
    fn error_bodies_of_both_vendors() {
        let (m, c) = error_message(br#"{"error":"invalid api key","status":401}"#);
        assert_eq!(m.as_deref(), Some("invalid api key"));
        assert_eq!(c, None);
        let (m, _) = error_message(
            br#"{"error":"bad w","status":400,"details":[{"field":"w","message":"'w' must be an integer"}]}"#,
        );
        assert_eq!(m.as_deref(), Some("bad w (w: 'w' must be an integer)"));
        let (m, c) = error_message(
            br#"{"error_code":40001,"message":"Insufficient credits","upstream_error":null}"#,
        );
        assert_eq!(m.as_deref(), Some("Insufficient credits"));
        assert_eq!(c, Some(40001));
        let (m, _) = error_message(br#"{"code":1,"message":{"en":"nope","zh":"x"}}"#);
        assert_eq!(m.as_deref(), Some("nope"));
        assert_eq!(error_message(b"<html><body>busy</body></html>").0, None);
        assert_eq!(
            error_message(b"upstream\nconnect error").0.as_deref(),
            Some("upstream connect error")
        );
    }

    #[test]
    fn statuses_map_to_dispositions() {
        use super::super::Disposition;
        let r = |s: u16| Refusal {
            status: StatusCode::from_u16(s).expect("status"),
            retry_after: None,
            message: "m".into(),
            error_code: None,
        };
        let d = |s: u16, q: bool| r(s).into_error("x", q).disposition();
        assert_eq!(d(400, false), Disposition::Fail);
        assert_eq!(d(401, false), Disposition::PauseProvider);
        assert_eq!(d(403, false), Disposition::PauseProvider);
        assert_eq!(d(402, false), Disposition::PauseProvider);
        assert_eq!(d(429, true), Disposition::PauseProvider);
        assert_eq!(d(429, false), Disposition::Retry);
        assert_eq!(d(500, false), Disposition::Retry);
        assert_eq!(d(503, false), Disposition::Retry);
        assert!(matches!(
            r(429).into_error("x", false),
            ProviderError::RateLimited { .. }
        ));
    }

    #[test]
    fn secrets_are_redacted_and_messages_tidy() {
        assert_eq!(redact("key sk-12345 bad", "sk-12345"), "key [redacted] bad");
        let long = "x".repeat(1000);
        assert!(tidy(&long).chars().count() <= MAX_MESSAGE + 1);
        assert_eq!(tidy("a\n\tb"), "a b");
    }
}
