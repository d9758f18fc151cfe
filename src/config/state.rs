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
use super::shared_state::{
    SharedState, DEFAULT_LEASE, DEFAULT_STATE_CONNECTIONS, STATE_PASSWORD_CREDENTIAL,
};
use super::types::ConfigError;

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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{from_str, Config, ConfigError};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        from_str(
            text,
            Some(Path::new("/etc/cutout/cutout.toml")),
            Path::new("/etc/cutout"),
        )
    }

    #[test]
    fn state_as_a_url_or_a_table() {
        let c = parse("state = \"postgres://cutout@db.local:5432/line?sslmode=disable\"\n")
            .expect("url");
        let s = c.shared_state.expect("shared");
        assert_eq!(
            s.url,
            "postgres://cutout@db.local:5432/line?sslmode=disable"
        );
        assert_eq!(
            (s.lease, s.connections, s.password_file),
            (Duration::from_secs(30), 4, None)
        );
        assert!(!s.instance.is_empty());
        let c = parse(
            "[state]\nurl = \"postgres://cutout@127.0.0.1/line\"\npassword_file = \"pg-pass\"\n\
             instance = \"box-2\"\nlease = \"10s\"\nconnections = 8\n",
        )
        .expect("table");
        let s = c.shared_state.expect("shared");
        assert_eq!(s.instance, "box-2");
        assert_eq!((s.lease, s.connections), (Duration::from_secs(10), 8));
        assert_eq!(
            s.password_file.as_deref(),
            Some(Path::new("/etc/cutout/pg-pass"))
        );
        assert_eq!(s.credential.as_deref(), Some("pg-pass"));
        assert!(parse("").expect("default").shared_state.is_none());
    }

    #[test]
    fn state_mistakes_name_the_key_and_keep_the_password_out() {
        for (text, key, want) in [
            (
                "state = \"postgres://u:hunter2-secret@h/db\"\n",
                "`state.url`",
                "holds a password",
            ),
            (
                "state = \"mysql://h/db\"\n",
                "`state.url`",
                "must start with postgres://",
            ),
            ("state = 5\n", "`state`", "expected text or a table"),
            (
                "[state]\nurl = \"postgres://h/db\"\nlease = \"100ms\"\n",
                "`state.lease`",
                "at least 1s",
            ),
            (
                "[state]\nurl = \"postgres://h/db\"\ninstance = \"a b\"\n",
                "`state.instance`",
                "letters, digits",
            ),
            (
                "[state]\nurl = \"postgres://h/db\"\nconnections = 0\n",
                "`state.connections`",
                "1 to 64",
            ),
            (
                "[state]\nurl = \"postgres://h/db\"\npasword_file = \"x\"\n",
                "`state`",
                "unknown field",
            ),
        ] {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(key) && e.contains(want), "{text}: {e}");
            assert!(e.contains("/etc/cutout/cutout.toml"), "{e}");
            assert!(!e.contains("hunter2-secret"), "{e}");
        }
    }

    #[test]
    fn the_password_file_is_read_when_asked_and_named_when_missing() {
        let d = tempfile::tempdir().expect("tempdir");
        let pw = d.path().join("pw");
        std::fs::write(&pw, "s3cret-value\n").expect("write");
        let text = format!(
            "[state]\nurl = \"postgres://h/db\"\npassword_file = \"{}\"\n",
            pw.display()
        );
        let s = parse(&text).expect("loads").shared_state.expect("shared");
        assert_eq!(s.password().expect("read").as_deref(), Some("s3cret-value"));
        std::fs::remove_file(&pw).expect("rm");
        let e = s.password().expect_err("missing");
        assert!(
            e.contains(&pw.display().to_string()) && e.contains("password_file"),
            "{e}"
        );
    }
}
