//! One API request through a hosted provider's gate, for the peer kinds
//! whose error bodies the shared reader does not know (remove.bg's
//! `{"errors": [{title, code, detail}]}`, rembg server's `{"detail":
//! [{loc, msg}]}`): like `Hosted::send`, but the vendor's parser reads the
//! error body, and a refusal's headers (the rate-limit ones) come back
//! with the error.
//!
//! Owns: "send, give the gate its feedback, map the answer". Must not:
//! retry, pause (the caller's `HostedProvider` does), or let the key into
//! a message (provider messages are redacted).

use reqwest::header::HeaderMap;

use super::gate::Feedback;
use super::hosted::Hosted;
use super::http::{self, Refusal};
use super::ProviderError;

/// Largest error body read.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// A refused or failed request: the mapped error and, when an answer came,
/// its headers.
#[derive(Debug)]
pub struct Refused {
    pub error: ProviderError,
    pub headers: Option<HeaderMap>,
}

impl From<ProviderError> for Refused {
    fn from(error: ProviderError) -> Self {
        Refused {
            error,
            headers: None,
        }
    }
}

impl From<Refused> for ProviderError {
    fn from(r: Refused) -> Self {
        r.error
    }
}

/// Reads a vendor's error body into one message (None: not its shape).
pub type ErrorParser = fn(&[u8]) -> Option<String>;

/// Send `rb` through `core`'s gate. 2xx answers come back as the response;
/// anything else as the mapped error (`quota(status)` says whether the
/// status means "out of credits"; no connection at all is `Unavailable`).
pub async fn send(
    core: &Hosted,
    what: &str,
    rb: reqwest::RequestBuilder,
    parse: ErrorParser,
    quota: fn(u16) -> bool,
) -> Result<reqwest::Response, Refused> {
    core.refuse_if_paused()?;
    let ticket = core.gate.ticket().await;
    core.refuse_if_paused()?;
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => {
            core.gate.feedback(ticket, Feedback::Other);
            let connect = e.is_connect();
            let err = http::send_error(what, e);
            return Err(Refused::from(if connect {
                ProviderError::Unavailable {
                    message: err.to_string(),
                }
            } else {
                err
            }));
        }
    };
    if resp.status().is_success() {
        core.gate.feedback(ticket, Feedback::Ok);
        return Ok(resp);
    }
    let status = resp.status();
    let headers = resp.headers().clone();
    let retry_after = http::retry_after(&headers);
    let body = http::read_capped(resp, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let message = parse(&body)
        .or_else(|| http::error_message(&body).0)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("no message").into());
    let refusal = Refusal {
        status,
        retry_after,
        message: http::tidy(&http::redact(&message, &core.key_text())),
        error_code: None,
    };
    let error = refusal.into_error(what, quota(status.as_u16()));
    let fb = match &error {
        ProviderError::RateLimited { retry_after, .. } => Feedback::RateLimited {
            retry_after: *retry_after,
        },
        ProviderError::Transient { retry_after, .. } if status.as_u16() == 503 => Feedback::Busy {
            retry_after: *retry_after,
        },
        _ => Feedback::Other,
    };
    core.gate.feedback(ticket, fb);
    Err(Refused {
        error,
        headers: Some(headers),
    })
}
