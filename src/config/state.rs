//! `state = "postgres://…"` or a `[state]` table: the shared PostgreSQL
//! state several instances use (absent: SQLite in `state_dir`, one
//! instance). Checked here; the password file is read only when the store
//! is opened ([`SharedState::password`]), so the config stays free of side
//! effects.
//!
//! Must not: connect to the database or hold the password.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::check::Checker;
use super::defaults::CREDENTIALS_DIR_ENV;
use super::raw::HumanValue;
use super::types::ConfigError;

/// The credential name looked for in `$CREDENTIALS_DIRECTORY` when no
/// `password_file` is given.
pub const STATE_PASSWORD_CREDENTIAL: &str = "cutout-state-password";
/// How long a silent instance keeps its jobs by default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Database connections per instance by default.
pub const DEFAULT_STATE_CONNECTIONS: usize = 4;

/// The checked `[state]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedState {
    /// `postgres://user@host:port/database` (no password in it).
    pub url: String,
    /// `password_file`, resolved against the config folder; a bare name
    /// (`credential`) is looked up in `$CREDENTIALS_DIRECTORY` first.
    pub password_file: Option<PathBuf>,
    pub credential: Option<String>,
    /// `instance` (default: the host name): stable across restarts.
    pub instance: String,
    /// `lease` (default 30 s): a silent instance's jobs are taken over
    /// after this long.
    pub lease: Duration,
    /// `connections` (default 4).
    pub connections: usize,
}

impl SharedState {
    /// The password, read now: `password_file` (a bare name from
    /// `$CREDENTIALS_DIRECTORY` first), else
    /// `$CREDENTIALS_DIRECTORY/cutout-state-password` when it exists, else
    /// none (trust or peer authentication). The error names the file, never
    /// its content.
    pub fn password(&self) -> Result<Option<String>, String> {
        let creds = std::env::var_os(CREDENTIALS_DIR_ENV).map(PathBuf::from);
        let from_creds = |name: &str| creds.as_ref().map(|d| d.join(name)).filter(|p| p.exists());
        let path = match (&self.credential, &self.password_file) {
            (Some(name), Some(p)) => Some(from_creds(name).unwrap_or_else(|| p.clone())),
            (None, Some(p)) => Some(p.clone()),
            (_, None) => from_creds(STATE_PASSWORD_CREDENTIAL),
        };
        let Some(path) = path else { return Ok(None) };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "cannot read the state password file {} ({e}); set [state] password_file or put it in ${CREDENTIALS_DIR_ENV}/{STATE_PASSWORD_CREDENTIAL}",
                path.display()
            )
        })?;
        let pw = text.trim_end_matches(['\n', '\r']).to_string();
        if pw.is_empty() {
            return Err(format!(
                "the state password file {} is empty",
                path.display()
            ));
        }
        Ok(Some(pw))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    url: String,
    password_file: Option<PathBuf>,
    instance: Option<String>,
    lease: Option<HumanValue>,
    connections: Option<i64>,
}

const SHAPE: &str = "write state = \"postgres://user@host:port/database\" or a [state] table with url, password_file, instance, lease, connections";

impl Checker {
    pub(super) fn shared_state(
        &self,
        v: Option<&toml::Value>,
    ) -> Result<Option<SharedState>, ConfigError> {
        let raw = match v {
            None => return Ok(None),
            Some(toml::Value::String(url)) => RawState {
                url: url.clone(),
                password_file: None,
                instance: None,
                lease: None,
                connections: None,
            },
            Some(t @ toml::Value::Table(_)) => {
                t.clone().try_into().map_err(|e: toml::de::Error| {
                    self.err("state", format!("{}; {SHAPE}", e.message()))
                })?
            }
            Some(other) => {
                return Err(self.err(
                    "state",
                    format!(
                        "expected text or a table, got {}; {SHAPE}",
                        other.type_str()
                    ),
                ))
            }
        };
        let rest = raw
            .url
            .strip_prefix("postgres://")
            .or_else(|| raw.url.strip_prefix("postgresql://"))
            .ok_or_else(|| {
                self.err(
                    "state.url",
                    format!(
                        "must start with postgres:// (got {:?}); {SHAPE}",
                        redact(&raw.url)
                    ),
                )
            })?;
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        if authority
            .rsplit_once('@')
            .is_some_and(|(user, _)| user.contains(':'))
        {
            return Err(self.err(
                "state.url",
                format!("holds a password; remove it and put it in [state] password_file or ${CREDENTIALS_DIR_ENV}/{STATE_PASSWORD_CREDENTIAL}"),
            ));
        }
        let instance = match raw.instance {
            Some(i) if valid_instance(&i) => i,
            Some(i) => {
                return Err(self.err(
                    "state.instance",
                    format!("{i:?}: use 1–64 letters, digits, '.', '-' or '_'"),
                ))
            }
            None => host_instance(),
        };
        let lease = self.duration("state.lease", raw.lease.as_ref(), DEFAULT_LEASE)?;
        if lease < Duration::from_secs(1) {
            return Err(self.err(
                "state.lease",
                "must be at least 1s (heartbeats go every quarter lease)",
            ));
        }
        let connections = match raw.connections {
            None => DEFAULT_STATE_CONNECTIONS,
            Some(n @ 1..=64) => n as usize,
            Some(n) => {
                return Err(self.err("state.connections", format!("must be 1 to 64, got {n}")))
            }
        };
        let bare = |p: &Path| p.components().count() == 1 && !p.is_absolute();
        Ok(Some(SharedState {
            url: raw.url.clone(),
            credential: raw
                .password_file
                .as_deref()
                .filter(|p| bare(p))
                .map(|p| p.display().to_string()),
            password_file: raw.password_file.as_deref().map(|p| self.path(p)),
            instance,
            lease,
            connections,
        }))
    }
}

/// The URL with any password replaced, for messages.
fn redact(url: &str) -> String {
    match url
        .split_once("://")
        .and_then(|(s, rest)| Some((s, rest.split_once('@')?)))
    {
        Some((scheme, (_, host))) => format!("{scheme}://…@{host}"),
        None => url.to_string(),
    }
}

fn valid_instance(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// The default instance id: the host name, cut to the allowed characters.
fn host_instance() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name: String = if rc == 0 {
        String::from_utf8_lossy(&buf[..end])
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .take(64)
            .collect()
    } else {
        String::new()
    };
    if name.is_empty() {
        "cutout".into()
    } else {
        name
    }
}
