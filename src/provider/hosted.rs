//! The core every hosted provider is built on (rembg.com, verging,
//! remove.bg, rembg's server): the provider's name, its HTTP clients, its
//! [`Gate`], its API key (re-read from its source while paused for a
//! refused key), and the one place that sends an API request through the
//! gate and turns the answer into a [`ProviderError`].
//!
//! Owns: "send one API request politely" (including the rate hint of an
//! answer's `X-RateLimit-Remaining/Reset`), "pause with one clear line,
//! re-check, resume by itself", and [`HostedProvider`], which makes a
//! [`Provider`] of any [`HostedApi`] the same way for every vendor.
//!
//! Must not: know endpoint paths or response shapes (the vendor modules
//! do), or let the key out of a request header.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue};

use super::gate::{Announce, Announced, Feedback, Gate, Limits, Recheck};
use super::http::{self, ErrorParser, Http, Refusal};
use super::rate::RateHint;
use super::{
    key, BuildError, Health, PauseReason, Provider, ProviderError, ProviderStatus, Request,
    Response,
};
use crate::config::{ApiKeySource, HostedConfig, Secret};

/// One vendor's API on top of [`Hosted`]: its wire format, its re-check
/// while paused, and its health report. [`HostedProvider`] does the rest.
#[async_trait::async_trait]
pub trait HostedApi: Send + Sync + 'static {
    fn core(&self) -> &Hosted;
    /// One picture, start to end (errors are mapped, not retried).
    async fn remove(&self, req: &Request<'_>) -> Result<Response, ProviderError>;
    /// The paused provider's periodic look (the key is re-read just
    /// before): may it resume?
    async fn recheck(&self) -> Recheck;
    /// Reachability, key and credits for `cutout check`.
    async fn health(&self) -> Health;
}

/// A hosted API as a [`Provider`]: a refusal that means quota, key or
/// outage pauses it, and a background re-check resumes it by itself.
pub struct HostedProvider<A: HostedApi> {
    api: Arc<A>,
}

impl<A: HostedApi> HostedProvider<A> {
    pub fn new(api: A) -> Self {
        HostedProvider { api: Arc::new(api) }
    }

    fn pause_on(&self, err: &ProviderError) {
        // Weak: a provider dropped by a config reload ends its re-check.
        let api = Arc::downgrade(&self.api);
        self.api.core().pause_on(err, move || {
            let api = api.upgrade();
            async move {
                match api {
                    Some(api) => {
                        // A refused key may have been fixed in its file.
                        api.core().reload_key();
                        api.recheck().await
                    }
                    None => Recheck::Gone,
                }
            }
        });
    }
}

#[async_trait::async_trait]
impl<A: HostedApi> Provider for HostedProvider<A> {
    fn name(&self) -> &str {
        &self.api.core().name
    }

    fn kind(&self) -> &'static str {
        self.api.core().kind
    }

    fn wants_pixels(&self) -> bool {
        false
    }

    async fn remove_background(&self, req: Request<'_>) -> Result<Response, ProviderError> {
        let r = self.api.remove(&req).await;
        if let Err(e) = &r {
            self.pause_on(e);
        }
        r
    }

    async fn health(&self) -> Health {
        self.api.health().await
    }

    fn is_paused(&self) -> bool {
        self.api.core().gate.is_paused()
    }

    fn status(&self) -> ProviderStatus {
        self.api.core().gate.status()
    }
}

pub struct Hosted {
    pub name: String,
    pub kind: &'static str,
    pub cfg: HostedConfig,
    pub http: Http,
    pub gate: Arc<Gate>,
    key: RwLock<Secret>,
}

/// How a refusal is read: vendor rules for "this is a quota answer".
pub type QuotaRule = fn(&Refusal) -> bool;

/// How one vendor's refusals are read: which mean "out of credits", and
/// its own error-body reader when the shared one does not know the shape
/// (remove.bg's `{"errors": [{title, code, detail}]}`, rembg server's
/// `{"detail": [{loc, msg}]}`).
#[derive(Debug, Clone, Copy)]
pub struct Wire {
    pub quota: QuotaRule,
    pub parse: Option<ErrorParser>,
}

/// A refused or failed request: the mapped error and, when an answer came,
/// its headers (e.g. a vendor's rate-limit budget).
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

/// What a request does with money, for the pause rule of [`Hosted::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// Starts (or leads to) paid work: refused while paused.
    Submit,
    /// Collects work already paid for (poll a job, read its state): sent
    /// even while paused.
    Collect,
}

impl Hosted {
    pub fn new(name: &str, kind: &'static str, cfg: &HostedConfig) -> Result<Hosted, BuildError> {
        let err = |message: String| BuildError {
            provider: name.to_string(),
            message,
        };
        let key = key::load(name, &cfg.key).map_err(err)?;
        let http = Http::new(cfg).map_err(err)?;
        let limits = Limits {
            concurrency: cfg.concurrency,
            rate: cfg.requests_per_second,
            initial_delay: cfg.retry.initial_delay,
            max_delay: cfg.retry.max_delay,
        };
        let gate = super::shared_limit::gate(name, limits, cfg.recheck_interval);
        Ok(Hosted {
            name: name.to_string(),
            kind,
            cfg: cfg.clone(),
            http,
            gate,
            key: RwLock::new(key),
        })
    }

    /// The key, for one request header (marked sensitive).
    pub fn key_header(&self, prefix: &str) -> Result<HeaderValue, ProviderError> {
        let k = self.key.read().unwrap_or_else(|p| p.into_inner());
        let mut v = HeaderValue::from_str(&format!("{prefix}{}", k.expose())).map_err(|_| {
            ProviderError::Auth {
                message: format!(
                    "the API key of provider `{}` cannot be sent as a header",
                    self.name
                ),
            }
        })?;
        v.set_sensitive(true);
        Ok(v)
    }

    /// The key text, only to redact it from provider messages.
    pub(crate) fn key_text(&self) -> String {
        self.key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .expose()
            .to_string()
    }

    /// Read the key again from its file (a fixed key file resumes a pause
    /// for a refused key without a restart). Env and inline keys cannot
    /// change while running.
    pub fn reload_key(&self) {
        if !matches!(self.cfg.key, ApiKeySource::File { .. }) {
            return;
        }
        match key::load(&self.name, &self.cfg.key) {
            Ok(k) => {
                let mut g = self.key.write().unwrap_or_else(|p| p.into_inner());
                *g = k;
            }
            Err(e) => tracing::debug!(provider = %self.name, "cannot re-read the API key: {e}"),
        }
    }

    /// The error to return at once while paused (nothing is sent).
    pub fn refuse_if_paused(&self) -> Result<(), ProviderError> {
        if !self.gate.is_paused() {
            return Ok(());
        }
        match self.gate.pause_info() {
            None => Ok(()),
            Some(p) => Err(match p.reason {
                PauseReason::Auth => ProviderError::Auth { message: p.message },
                PauseReason::Quota => ProviderError::QuotaExhausted { message: p.message },
                PauseReason::Unreachable => ProviderError::Unavailable { message: p.message },
            }),
        }
    }

    /// Send one API request through the gate. 2xx answers come back as the
    /// response; anything else as the mapped error (no connection at all is
    /// `Unavailable`). 429s and 503s slow the gate down here; pausing on
    /// quota/auth/outage errors is the caller's `pause_on`.
    ///
    /// `Spend::Submit` requests (they start paid work, or lead to it) are
    /// refused at once while the provider is paused; `Spend::Collect`
    /// requests (polling, fetching what was already paid for) go out
    /// anyway: a pause stops new submissions, never collection.
    pub async fn send(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
        quota: QuotaRule,
        spend: Spend,
    ) -> Result<reqwest::Response, ProviderError> {
        let wire = Wire { quota, parse: None };
        Ok(self.send_wire(what, req, wire, spend).await?)
    }

    /// [`Hosted::send`] with the vendor's [`Wire`]; a refusal keeps the
    /// answer's headers.
    pub async fn send_wire(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
        wire: Wire,
        spend: Spend,
    ) -> Result<reqwest::Response, Refused> {
        let submit = spend == Spend::Submit;
        if submit {
            self.refuse_if_paused()?;
        }
        let ticket = self.gate.ticket().await;
        if submit {
            self.refuse_if_paused()?;
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.gate.feedback(ticket, Feedback::Other);
                let connect = e.is_connect();
                let err = http::send_error(what, e);
                // Not even a connection: the provider is down (or the
                // network, DNS, TLS): pause instead of failing every file.
                return Err(Refused::from(if connect {
                    ProviderError::Unavailable {
                        message: err.to_string(),
                    }
                } else {
                    err
                }));
            }
        };
        self.hint_from(resp.headers());
        if resp.status().is_success() {
            self.gate.feedback(ticket, Feedback::Ok);
            return Ok(resp);
        }
        let headers = resp.headers().clone();
        let refusal = Refusal::read_with(resp, &self.key_text(), wire.parse).await;
        let is_quota = (wire.quota)(&refusal);
        let status = refusal.status.as_u16();
        let error = refusal.into_error(what, is_quota);
        let fb = match &error {
            ProviderError::RateLimited { retry_after, .. } => Feedback::RateLimited {
                retry_after: *retry_after,
            },
            ProviderError::Transient { retry_after, .. } if status == 503 => Feedback::Busy {
                retry_after: *retry_after,
            },
            _ => Feedback::Other,
        };
        self.gate.feedback(ticket, fb);
        Err(Refused {
            error,
            headers: Some(headers),
        })
    }

    /// An answer's `X-RateLimit-Remaining` + `X-RateLimit-Reset` (unix
    /// time), when the vendor sends them: the gate spreads what is left of
    /// the window over it (see `rate::RateHint::Remaining`).
    fn hint_from(&self, headers: &HeaderMap) {
        let Some((_, remaining, reset)) = super::pacer::read_headers(headers) else {
            return;
        };
        let left = reset
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        self.gate.hint(RateHint::Remaining {
            remaining,
            reset: Instant::now() + left,
        });
    }

    /// On a quota or auth error: pause (one log line when the state is
    /// new) and start the periodic re-check that resumes by itself.
    pub fn pause_on<C, F>(&self, err: &ProviderError, check: C)
    where
        C: Fn() -> F + Send + Sync + 'static,
        F: Future<Output = Recheck> + Send + 'static,
    {
        let (reason, message) = match err {
            ProviderError::QuotaExhausted { message } => (PauseReason::Quota, message),
            ProviderError::Auth { message } => (PauseReason::Auth, message),
            ProviderError::Unavailable { message } => (PauseReason::Unreachable, message),
            _ => return,
        };
        if self.gate.pause(reason, message) {
            (self.announcer())(Announced::Paused {
                reason,
                message: message.clone(),
            });
        }
        self.gate.spawn_recheck(
            self.cfg.recheck_interval,
            self.cfg.retry.initial_delay,
            check,
            self.announcer(),
        );
    }

    /// The operator-facing lines for pause and resume.
    pub fn announcer(&self) -> Announce {
        let name = self.name.clone();
        let kind = self.kind;
        let every = humantime::format_duration(self.cfg.recheck_interval).to_string();
        let source = key::describe(&self.cfg.key);
        Arc::new(move |a: Announced| match a {
            Announced::Paused { reason, message } => {
                let message = message.trim_end_matches(['.', '!']);
                announce_paused(&name, kind, reason, message, &every, &source)
            }
            Announced::Resumed { was, credits } => {
                let what = match was {
                    PauseReason::Quota => "credits are available again",
                    PauseReason::Auth => "the API key is accepted again",
                    PauseReason::Unreachable => "reachable again",
                };
                match credits {
                    Some(c) => tracing::info!(
                        provider = %name,
                        "provider `{name}`: {what} ({c} credits left); resuming"
                    ),
                    None => tracing::info!(provider = %name, "provider `{name}`: {what}; resuming"),
                }
            }
        })
    }

    /// Whether the current pause is for an outage (not quota or key).
    pub fn paused_for_outage(&self) -> bool {
        self.gate
            .pause_info()
            .is_some_and(|p| p.reason == PauseReason::Unreachable)
    }

    /// A picture slot, waiting politely.
    pub async fn slot(&self) -> super::gate::Slot<'_> {
        self.gate.slot().await
    }

    /// Time limit of one request.
    pub fn timeout(&self) -> Duration {
        self.http.timeout
    }
}

/// The one line an operator needs when a provider pauses.
fn announce_paused(
    name: &str,
    kind: &str,
    reason: PauseReason,
    message: &str,
    every: &str,
    source: &str,
) {
    match reason {
        PauseReason::Quota => tracing::error!(
            provider = %name,
            "provider `{name}` ({kind}) is out of credits ({message}). RECHARGE the account; \
             its files stay queued (none fail) and cutout checks the credits every {every} \
             and resumes by itself"
        ),
        PauseReason::Auth => tracing::error!(
            provider = %name,
            "provider `{name}` ({kind}) refused the API key ({message}). FIX THE KEY (read from \
             {source}); its files stay queued (none fail) and cutout tries again every \
             {every} and resumes by itself"
        ),
        PauseReason::Unreachable => tracing::error!(
            provider = %name,
            "provider `{name}` ({kind}) cannot be reached ({message}). Check the network and \
             the provider's status; its files stay queued (none fail) and cutout tries again \
             (backing off up to every {every}) and resumes by itself"
        ),
    }
}

/// How a credits check ends, for `health` and the pause re-check.
#[derive(Debug, Clone)]
pub enum Credits {
    /// Not even a connection (the provider is down).
    Down(String),
    /// Key accepted; `left` when the answer said so, `detail` for humans.
    Known { left: Option<f64>, detail: String },
    /// The key was refused.
    Refused(String),
    /// Could not ask (network, 5xx, unexpected answer).
    Unreachable(String),
}

impl Credits {
    /// The pause re-check's reading of a credits check.
    pub fn recheck(self) -> Recheck {
        match self {
            Credits::Known {
                left: Some(c),
                detail,
            } if c < 1.0 => Recheck::NoCredits {
                credits: c,
                message: detail,
            },
            Credits::Known { left, .. } => Recheck::Ready { credits: left },
            Credits::Refused(message) => Recheck::KeyRefused { message },
            Credits::Down(message) => Recheck::Down { message },
            Credits::Unreachable(message) => Recheck::Unknown { message },
        }
    }
}
