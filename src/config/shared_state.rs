//! The checked `[state]` (the shared PostgreSQL state): a plain type, and
//! how its password is read when the store is opened.
//!
//! Must not: parse or check the config (`state.rs` does), or connect.

use std::path::PathBuf;
use std::time::Duration;

use super::defaults::CREDENTIALS_DIR_ENV;

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
