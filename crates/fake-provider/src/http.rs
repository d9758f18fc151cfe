//! The request pipeline shared by both fake APIs: [`Ctx`] (rate limit,
//! latency, fault phases, the note each handler leaves for the request log),
//! the vendors' JSON error shapes, `Retry-After` headers and multipart
//! reading.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::{take_fault, Api, Endpoint, Fault, Opaque, Phase, RetryAfter};
use crate::imaging::{self, Kind};
use crate::state::Shared;

/// What happens on the wire after the handler.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Wire {
    #[default]
    Normal,
    /// Close the connection without an answer.
    Drop,
    /// Full `Content-Length`, half the body, then close.
    Truncate,
}

/// What a handler tells the request log (carried in the response extensions).
#[derive(Clone, Debug)]
pub(crate) struct Note {
    pub endpoint: Endpoint,
    pub file_name: Option<String>,
    pub sha256: Option<String>,
    pub charged: bool,
    pub job_id: Option<u64>,
    pub fault: Option<String>,
    pub wire: Wire,
}

impl Note {
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        Note {
            endpoint,
            file_name: None,
            sha256: None,
            charged: false,
            job_id: None,
            fault: None,
            wire: Wire::Normal,
        }
    }
}

pub(crate) fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// rembg error body: `{"error": msg, "status": code}`.
pub(crate) fn rembg_error(status: u16, msg: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(json!({"error": msg, "status": status}))).into_response()
}

/// rembg validation error naming the field.
pub(crate) fn rembg_field_error(field: &str, msg: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "error": msg,
            "status": 400,
            "details": [{"field": field, "message": msg}],
        })),
    )
        .into_response()
}

/// verging error body: `{"error_code": n, "message": msg, "upstream_error": null}`.
pub(crate) fn verging_error(status: u16, msg: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let error_code = if status == 402 {
        40001
    } else {
        status as u64 * 100
    };
    let upstream = match status {
        502..=504 => json!("upstream model server unavailable"),
        _ => serde_json::Value::Null,
    };
    (
        code,
        Json(json!({"error_code": error_code, "message": msg, "upstream_error": upstream})),
    )
        .into_response()
}

pub(crate) fn api_error(api: Api, status: u16, msg: &str) -> Response {
    match api {
        Api::Rembg => rembg_error(status, msg),
        Api::Verging => verging_error(status, msg),
        Api::RemoveBg => crate::remove_bg::error(status, status_code_word(status), msg),
        Api::RembgServer => crate::rembg_server::error(status, msg),
    }
}

/// A remove.bg error `code` for an injected status.
fn status_code_word(status: u16) -> &'static str {
    match status {
        400 => "invalid_request",
        402 => "insufficient_credits",
        403 => "api_key_invalid",
        429 => "rate_limit_exceeded",
        _ => "server_error",
    }
}

fn status_message(status: u16) -> &'static str {
    match status {
        400 => "Bad request",
        401 => "invalid api key",
        402 => "Insufficient credits",
        403 => "Forbidden",
        404 => "Not found",
        429 => "Too many requests",
        500 => "Internal server error",
        502 => "Bad gateway",
        503 => "Service temporarily unavailable",
        504 => "Gateway timeout",
        _ => "Error",
    }
}

pub(crate) const REMBG_TOO_FAST: &str =
    "You're making requests too quickly. Please slow down and try again shortly.";
pub(crate) const REMBG_MONTHLY: &str =
    "You've reached your monthly limit. Consider purchasing more credits.";
pub(crate) const VERGING_TOO_FAST: &str = "Too many requests, please slow down";
pub(crate) const VERGING_NO_CREDITS: &str =
    "Insufficient credits: at least 1 credit is required. Please recharge.";

/// The `Retry-After` value for a 429, if the mode wants one.
pub(crate) fn retry_after_value(mode: RetryAfter, wait: Duration) -> Option<HeaderValue> {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    match mode {
        RetryAfter::None => None,
        RetryAfter::Seconds => Some(HeaderValue::from(secs)),
        RetryAfter::FixedSeconds(n) => Some(HeaderValue::from(n)),
        RetryAfter::HttpDate => {
            // HTTP-dates have whole seconds: round the instant up.
            let at = SystemTime::now() + Duration::from_secs(secs);
            let at = at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| {
                    SystemTime::UNIX_EPOCH
                        + Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
                })
                .unwrap_or(at);
            HeaderValue::from_str(&httpdate::fmt_http_date(at)).ok()
        }
    }
}

/// The 429 "too fast" answer of an API.
pub(crate) fn too_fast(api: Api, mode: RetryAfter, wait: Duration) -> Response {
    let mut resp = match api {
        Api::Rembg => rembg_error(429, REMBG_TOO_FAST),
        Api::Verging => verging_error(429, VERGING_TOO_FAST),
        Api::RemoveBg => crate::remove_bg::error(429, "rate_limit_exceeded", "Rate limit exceeded"),
        Api::RembgServer => crate::rembg_server::error(429, "Too Many Requests"),
    };
    if let Some(v) = retry_after_value(mode, wait) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// The "out of credits" answer of an API.
pub(crate) fn out_of_credits(api: Api) -> Response {
    match api {
        Api::Rembg => rembg_error(429, REMBG_MONTHLY),
        Api::Verging => verging_error(402, VERGING_NO_CREDITS),
        Api::RemoveBg => crate::remove_bg::no_credits(),
        // No credits at a rembg server (the fault does not apply there).
        Api::RembgServer => crate::rembg_server::error(500, "Internal Server Error"),
    }
}

/// Per-request context: the pipeline steps and the log note.
pub(crate) struct Ctx {
    pub shared: Arc<Shared>,
    pub api: Api,
    pub note: Note,
}

impl Ctx {
    pub(crate) fn new(shared: Arc<Shared>, endpoint: Endpoint) -> Self {
        Ctx {
            shared,
            api: endpoint.api().expect("endpoint of an API"),
            note: Note::new(endpoint),
        }
    }

    pub(crate) fn endpoint(&self) -> Endpoint {
        self.note.endpoint
    }

    /// Rate limit (for counted endpoints), then the configured latency.
    pub(crate) async fn admit(&mut self) -> Result<(), Response> {
        let counted = matches!(
            self.endpoint(),
            Endpoint::RembgRemove
                | Endpoint::VergingMe
                | Endpoint::VergingCreateJob
                | Endpoint::VergingJobs
                | Endpoint::VergingUploadUrl
                | Endpoint::RemoveBgRemove
                | Endpoint::RembgServerRemove
        );
        if counted {
            if let Err((limit, wait)) = self.shared.take_token(self.api) {
                self.note.fault = Some("rate-limit".into());
                return Err(too_fast(self.api, limit.retry_after, wait));
            }
        }
        let (latency, jitter) = self.shared.cfg(|c| {
            let a = c.api(self.api);
            (a.latency, a.latency_jitter)
        });
        let extra = if jitter > Duration::ZERO {
            jitter.mul_f64(fastrand::f64())
        } else {
            Duration::ZERO
        };
        let total = latency + extra;
        if total > Duration::ZERO {
            tokio::time::sleep(total).await;
        }
        Ok(())
    }

    fn take(&mut self, phase: Phase, allow: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let ep = self.endpoint();
        let file = self.note.file_name.clone();
        let f = self
            .shared
            .cfg(|c| take_fault(&mut c.faults, phase, ep, file.as_deref(), &allow))?;
        self.note.fault = Some(f.label());
        Some(f)
    }

    /// A `Delay` fault, then faults that answer instead of the endpoint
    /// (nothing charged).
    pub(crate) async fn pre_fault(&mut self) -> Result<(), Response> {
        if let Some(Fault::Delay(d)) = self.take(Phase::Pre, |f| matches!(f, Fault::Delay(_))) {
            tokio::time::sleep(d).await;
        }
        let Some(f) = self.take(Phase::Pre, |f| !matches!(f, Fault::Delay(_))) else {
            return Ok(());
        };
        let api = self.api;
        Err(match f {
            Fault::Status(s) => api_error(api, s, status_message(s)),
            Fault::RateLimited(mode) => too_fast(api, mode, Duration::from_secs(1)),
            Fault::Unauthorized => match api {
                Api::Rembg => rembg_error(401, "invalid api key"),
                Api::Verging => verging_error(401, "Invalid API key"),
                Api::RemoveBg => crate::remove_bg::error(403, "api_key_invalid", "API Key invalid"),
                Api::RembgServer => crate::rembg_server::error(401, "Not authenticated"),
            },
            Fault::QuotaExhausted => out_of_credits(api),
            Fault::Invalid(msg) => match api {
                Api::RembgServer => crate::rembg_server::invalid("file", &msg),
                _ => api_error(api, 400, &msg),
            },
            Fault::DropConnection => {
                self.note.wire = Wire::Drop;
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
            other => unreachable!("not a pre fault: {other:?}"),
        })
    }

    /// Faults that decide how a new verging job ends.
    pub(crate) fn job_fault(&mut self) -> Option<Fault> {
        self.take(Phase::Job, |_| true)
    }

    /// Faults on a 2xx answer. `image` is the input picture, when the answer
    /// is a picture made from it (needed for the image faults).
    pub(crate) async fn post_fault(
        &mut self,
        resp: Response,
        image: Option<(Bytes, Kind)>,
    ) -> Response {
        if !resp.status().is_success() {
            return resp;
        }
        let has_image = image.is_some();
        let Some(f) = self.take(Phase::Post, |f| {
            has_image
                || !matches!(
                    f,
                    Fault::GarbageHtml | Fault::GarbageBytes | Fault::NoAlpha(_)
                )
        }) else {
            return resp;
        };
        match f {
            Fault::DropAfterCharge => {
                self.note.wire = Wire::Drop;
                resp
            }
            Fault::Truncate => {
                self.note.wire = Wire::Truncate;
                resp
            }
            Fault::GarbageHtml => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                GARBAGE_HTML,
            )
                .into_response(),
            Fault::GarbageBytes => {
                let ct = resp
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .cloned()
                    .unwrap_or(HeaderValue::from_static("application/octet-stream"));
                let n = 512 + fastrand::usize(..4096);
                let junk: Vec<u8> = std::iter::repeat_with(|| fastrand::u8(..))
                    .take(n)
                    .collect();
                let mut r = Response::new(Body::from(junk));
                r.headers_mut().insert(header::CONTENT_TYPE, ct);
                r
            }
            Fault::NoAlpha(kind) => {
                let (input, in_kind) = image.expect("checked");
                let jpeg = kind == Opaque::Jpeg;
                let out =
                    tokio::task::spawn_blocking(move || imaging::opaque(&input, in_kind, jpeg))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r);
                match out {
                    Ok(bytes) => {
                        let ct = if jpeg { "image/jpeg" } else { "image/png" };
                        (StatusCode::OK, [(header::CONTENT_TYPE, ct)], bytes).into_response()
                    }
                    Err(e) => api_error(self.api, 500, &e),
                }
            }
            other => unreachable!("not a post fault: {other:?}"),
        }
    }

    /// The response with the log note attached.
    pub(crate) fn finish(self, mut resp: Response) -> Response {
        resp.extensions_mut().insert(self.note);
        resp
    }
}

const GARBAGE_HTML: &str = "<!DOCTYPE html>\n<html><head><title>Just a moment...</title></head>\
<body><h1>Checking your browser before accessing the site.</h1>\
<p>This process is automatic.</p></body></html>\n";

/// One multipart part, fully read.
pub(crate) struct Part {
    pub name: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub data: Bytes,
}

/// A multipart form, in the order sent.
pub(crate) struct Form {
    pub parts: Vec<Part>,
}

impl Form {
    pub(crate) fn get(&self, name: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.name == name)
    }

    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
    }

    /// The first part name sent twice, if any.
    pub(crate) fn duplicate(&self) -> Option<&str> {
        self.parts.iter().enumerate().find_map(|(i, p)| {
            self.parts[..i]
                .iter()
                .any(|q| q.name == p.name)
                .then_some(p.name.as_str())
        })
    }
}

pub(crate) enum FormError {
    NotMultipart,
    TooLarge,
    Malformed(String),
}

/// Reads a whole multipart body (errors are reported by the caller, after
/// the key check).
pub(crate) async fn read_form(req: Request) -> Result<Form, FormError> {
    let mut mp = Multipart::from_request(req, &())
        .await
        .map_err(|_| FormError::NotMultipart)?;
    let mut parts = Vec::new();
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(FormError::TooLarge)
            }
            Err(e) => return Err(FormError::Malformed(e.body_text())),
        };
        let Some(name) = field.name().map(str::to_string) else {
            return Err(FormError::Malformed("a multipart part has no name".into()));
        };
        let file_name = field.file_name().map(str::to_string);
        let content_type = field.content_type().map(str::to_string);
        let data = match field.bytes().await {
            Ok(b) => b,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(FormError::TooLarge)
            }
            Err(e) => return Err(FormError::Malformed(e.body_text())),
        };
        parts.push(Part {
            name,
            file_name,
            content_type,
            data,
        });
    }
    Ok(Form { parts })
}

/// `2025-01-31T12:34:56.789Z`
pub(crate) fn iso8601(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil-from-days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(iso8601(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso8601(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn retry_after_forms() {
        let w = Duration::from_millis(300);
        assert!(retry_after_value(RetryAfter::None, w).is_none());
        assert_eq!(retry_after_value(RetryAfter::Seconds, w).unwrap(), "1");
        assert_eq!(
            retry_after_value(RetryAfter::Seconds, Duration::from_millis(2100)).unwrap(),
            "3"
        );
        assert_eq!(
            retry_after_value(RetryAfter::FixedSeconds(7), w).unwrap(),
            "7"
        );
        let d = retry_after_value(RetryAfter::HttpDate, w).unwrap();
        let at = httpdate::parse_http_date(d.to_str().unwrap()).unwrap();
        assert!(at > SystemTime::now());
    }
}
