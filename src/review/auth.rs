//! Who may act on the review page: the token from `[http] token_file`
//! (sent as `Authorization: Bearer …`, or exchanged on the login form for
//! a session cookie), and the cross-site guard on every POST: a request a
//! browser marks cross-site (`Sec-Fetch-Site`) or whose `Origin` is not
//! this server's is refused, and a cookie or token-less request must carry
//! the `X-Cutout-Csrf` header with its session's CSRF value (a page on
//! another site can neither read that value nor send the header).
//!
//! Owns: reading the token file, sessions (in memory, bounded), the
//! checks. Must not: log, print or put into an error the token, a session
//! id or a CSRF value; change anything on disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};

use crate::config::{HttpConfig, Secret};

/// Sessions kept at once; the oldest goes first beyond this.
const MAX_SESSIONS: usize = 1024;
/// How long a login lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The shortest token accepted.
const MIN_TOKEN: usize = 16;
/// The session cookie's name.
pub const COOKIE: &str = "cutout_session";
/// The header carrying the CSRF value.
pub const CSRF_HEADER: &str = "x-cutout-csrf";
/// The optional header naming the person acting (audited as `by`).
pub const USER_HEADER: &str = "x-cutout-user";

/// The token file cannot be used (the daemon does not start).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("`http.token_file` = {}: cannot read it: {source}; write a long random secret into it (e.g. `head -c 32 /dev/urandom | base64 > {}`)", path.display(), path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`http.token_file` = {}: the token is shorter than {MIN_TOKEN} characters; write a long random secret into it (e.g. `head -c 32 /dev/urandom | base64 > {}`)", path.display(), path.display())]
    TooShort { path: PathBuf },
    #[error("cannot read /dev/urandom for session secrets: {0}")]
    Random(std::io::Error),
}

/// Why a request may not act (each maps to one HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("actions are off: set `[http] actions = true` in the config to enable them")]
    ActionsOff,
    #[error("cross-site request refused: actions are taken from this server's own page only")]
    CrossSite,
    #[error("a token is required: send `Authorization: Bearer <token from http.token_file>` or log in at /login")]
    NeedToken,
    #[error("wrong token")]
    BadToken,
    #[error(
        "missing or wrong X-Cutout-Csrf header: reload the page (GET /api/session gives the value)"
    )]
    Csrf,
}

impl Denied {
    pub fn status(self) -> u16 {
        match self {
            Denied::ActionsOff => 404,
            Denied::CrossSite | Denied::Csrf => 403,
            Denied::NeedToken | Denied::BadToken => 401,
        }
    }
    /// Stable kebab-case code.
    pub fn code(self) -> &'static str {
        match self {
            Denied::ActionsOff => "actions-off",
            Denied::CrossSite => "cross-site",
            Denied::NeedToken => "token-required",
            Denied::BadToken => "bad-token",
            Denied::Csrf => "csrf",
        }
    }
}

struct Session {
    who: String,
    csrf: String,
    since: Instant,
}

/// The actions' gate, built once at start.
pub struct Auth {
    pub enabled: bool,
    token: Option<Secret>,
    /// The CSRF value of token-less use (loopback without `token_file`).
    open_csrf: String,
    sessions: Mutex<HashMap<String, Session>>,
}

/// Who is acting, as audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who(pub String);

impl Auth {
    /// Read the token file (when set).
    pub fn load(cfg: &HttpConfig) -> Result<Auth, AuthError> {
        let token = match (&cfg.token_file, cfg.actions) {
            (Some(p), true) => Some(read_token(p)?),
            _ => None,
        };
        Ok(Auth {
            enabled: cfg.actions,
            token,
            open_csrf: random_hex()?,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    pub fn needs_token(&self) -> bool {
        self.token.is_some()
    }

    /// May this request act? Checks, in order: actions on, not cross-site,
    /// then the bearer token, a session cookie with its CSRF header, or
    /// (no token configured) the open CSRF header.
    pub fn check(&self, h: &HeaderMap) -> Result<Who, Denied> {
        if !self.enabled {
            return Err(Denied::ActionsOff);
        }
        if cross_site(h) {
            return Err(Denied::CrossSite);
        }
        let named = |default: &str| Who(user_name(h).unwrap_or_else(|| default.to_string()));
        if let Some(token) = &self.token {
            if let Some(given) = bearer(h) {
                return if same(given.as_bytes(), token.expose().as_bytes()) {
                    Ok(named("token"))
                } else {
                    Err(Denied::BadToken)
                };
            }
            let sid = cookie(h, COOKIE).ok_or(Denied::NeedToken)?;
            let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            let s = sessions
                .get(sid)
                .filter(|s| s.since.elapsed() < SESSION_TTL)
                .ok_or(Denied::NeedToken)?;
            let csrf = header_str(h, CSRF_HEADER).ok_or(Denied::Csrf)?;
            if !same(csrf.as_bytes(), s.csrf.as_bytes()) {
                return Err(Denied::Csrf);
            }
            return Ok(Who(s.who.clone()));
        }
        let csrf = header_str(h, CSRF_HEADER).ok_or(Denied::Csrf)?;
        if !same(csrf.as_bytes(), self.open_csrf.as_bytes()) {
            return Err(Denied::Csrf);
        }
        Ok(named("local"))
    }

    /// The login form's POST: the token for a new session id (None: wrong
    /// token, or no token configured). Cross-site logins are refused too.
    pub fn login(&self, h: &HeaderMap, token: &str, name: &str) -> Result<String, Denied> {
        if !self.enabled {
            return Err(Denied::ActionsOff);
        }
        if cross_site(h) {
            return Err(Denied::CrossSite);
        }
        let Some(want) = &self.token else {
            return Err(Denied::BadToken);
        };
        if !same(token.trim().as_bytes(), want.expose().as_bytes()) {
            return Err(Denied::BadToken);
        }
        let sid = random_hex().map_err(|_| Denied::BadToken)?;
        let csrf = random_hex().map_err(|_| Denied::BadToken)?;
        let who = clean_name(name).unwrap_or_else(|| "reviewer".to_string());
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| s.since.elapsed() < SESSION_TTL);
        while sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.since)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => sessions.remove(&k),
                None => break,
            };
        }
        sessions.insert(
            sid.clone(),
            Session {
                who,
                csrf,
                since: Instant::now(),
            },
        );
        Ok(sid)
    }

    /// What the page needs to act: the CSRF value for this request's
    /// session (None: not logged in while a token is needed).
    pub fn session_csrf(&self, h: &HeaderMap) -> Option<(String, String)> {
        if !self.enabled {
            return None;
        }
        if self.token.is_none() {
            let who = user_name(h).unwrap_or_else(|| "local".into());
            return Some((who, self.open_csrf.clone()));
        }
        let sid = cookie(h, COOKIE)?;
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let s = sessions
            .get(sid)
            .filter(|s| s.since.elapsed() < SESSION_TTL)?;
        Some((s.who.clone(), s.csrf.clone()))
    }
}

fn read_token(p: &Path) -> Result<Secret, AuthError> {
    let text = std::fs::read_to_string(p).map_err(|source| AuthError::Read {
        path: p.to_path_buf(),
        source,
    })?;
    let t = text.trim();
    if t.chars().count() < MIN_TOKEN {
        return Err(AuthError::TooShort {
            path: p.to_path_buf(),
        });
    }
    Ok(Secret::new(t))
}

/// 32 random bytes as hex.
fn random_hex() -> Result<String, AuthError> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(AuthError::Random)?;
    Ok(hex::encode(b))
}

/// Compare without an early exit (timing does not tell how much matched).
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn header_str<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn bearer(h: &HeaderMap) -> Option<&str> {
    let v = header_str(h, header::AUTHORIZATION.as_str())?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

fn cookie<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The acting person's name from `X-Cutout-User` (printable, ≤ 64 chars).
fn user_name(h: &HeaderMap) -> Option<String> {
    clean_name(header_str(h, USER_HEADER)?)
}

fn clean_name(s: &str) -> Option<String> {
    let s: String = s
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    (!s.is_empty()).then_some(s)
}

/// A request a browser marks as coming from another site, or whose
/// `Origin` is not this server (`Host`).
fn cross_site(h: &HeaderMap) -> bool {
    if let Some(site) = header_str(h, "sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return true;
        }
    }
    let Some(origin) = header_str(h, header::ORIGIN.as_str()) else {
        return false;
    };
    let host = header_str(h, header::HOST.as_str()).unwrap_or("");
    let ours = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    ours != Some(host) || host.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn auth(token: Option<&str>) -> Auth {
        Auth {
            enabled: true,
            token: token.map(Secret::new),
            open_csrf: "open".into(),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9"));
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn cross_site_is_refused_before_anything_else() {
        let a = auth(Some("0123456789abcdefXYZ"));
        let h = headers(&[
            ("origin", "http://evil.example"),
            ("authorization", "Bearer 0123456789abcdefXYZ"),
        ]);
        assert_eq!(a.check(&h), Err(Denied::CrossSite));
        let h = headers(&[("sec-fetch-site", "cross-site")]);
        assert_eq!(a.check(&h), Err(Denied::CrossSite));
        let h = headers(&[
            ("origin", "http://127.0.0.1:9"),
            ("authorization", "Bearer 0123456789abcdefXYZ"),
        ]);
        assert_eq!(a.check(&h), Ok(Who("token".into())));
    }

    #[test]
    fn a_session_needs_its_csrf_header() {
        let a = auth(Some("0123456789abcdefXYZ"));
        assert_eq!(a.login(&headers(&[]), "nope", "ann"), Err(Denied::BadToken));
        let sid = a
            .login(&headers(&[]), "0123456789abcdefXYZ", "ann")
            .expect("login");
        let c = format!("{COOKIE}={sid}");
        assert_eq!(a.check(&headers(&[("cookie", &c)])), Err(Denied::Csrf));
        let (who, csrf) = a
            .session_csrf(&headers(&[("cookie", &c)]))
            .expect("session");
        assert_eq!(who, "ann");
        let h = headers(&[("cookie", &c), ("x-cutout-csrf", &csrf)]);
        assert_eq!(a.check(&h), Ok(Who("ann".into())));
        assert_eq!(a.check(&headers(&[])), Err(Denied::NeedToken));
    }

    #[test]
    fn without_a_token_the_open_csrf_value_is_needed() {
        let a = auth(None);
        assert_eq!(a.check(&headers(&[])), Err(Denied::Csrf));
        let h = headers(&[("x-cutout-csrf", "open"), ("x-cutout-user", "bob")]);
        assert_eq!(a.check(&h), Ok(Who("bob".into())));
    }
}
