//! Reading a hosted provider's API key from where the config says it is:
//! an environment variable, a file (or a systemd credential), or inline.
//!
//! Owns: the lookup order, trimming, the "where did we look" wording of
//! errors, and the check that a config file holding an inline key is not
//! readable by other users.
//!
//! Must not: put the key (or any part of it) into an error, a log line or a
//! `Debug` output.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::{ApiKeySource, Secret, CREDENTIALS_DIR_ENV};

/// Read the key. The error says where it was looked for and how to fix it.
pub fn load(provider: &str, source: &ApiKeySource) -> Result<Secret, String> {
    let text = match source {
        ApiKeySource::Inline { key, .. } => return check(provider, key.expose(), "api_key"),
        ApiKeySource::Env { var, explicit } => match std::env::var(var) {
            Ok(v) => return check(provider, &v, &format!("${var}")),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(format!("the environment variable {var} is not valid UTF-8"))
            }
            Err(std::env::VarError::NotPresent) => {
                let how = if *explicit {
                    format!("api_key_env = {var:?} names an environment variable that is not set")
                } else {
                    format!("no API key: the environment variable {var} is not set")
                };
                return Err(format!(
                    "{how}; set it, or set api_key_file (a file holding the key, or a systemd credential name) or api_key in [providers.{provider}]"
                ));
            }
        },
        ApiKeySource::File { .. } => {
            let path = file_path(source).unwrap_or_default();
            std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "cannot read the API key file {} ({e}); {}",
                    path.display(),
                    where_files_are_looked_for(source)
                )
            })?
        }
    };
    let path = file_path(source).unwrap_or_default();
    check(provider, &text, &path.display().to_string())
}

/// The file a `File` source reads now: `$CREDENTIALS_DIRECTORY/<name>` for a
/// bare name when that exists, else the path resolved against the config
/// folder.
pub fn file_path(source: &ApiKeySource) -> Option<PathBuf> {
    let ApiKeySource::File { path, credential } = source else {
        return None;
    };
    if let (Some(name), Some(dir)) = (credential, std::env::var_os(CREDENTIALS_DIR_ENV)) {
        let p = Path::new(&dir).join(name);
        if p.exists() {
            return Some(p);
        }
    }
    Some(path.clone())
}

fn where_files_are_looked_for(source: &ApiKeySource) -> String {
    match source {
        ApiKeySource::File {
            path,
            credential: Some(name),
        } => format!(
            "a bare api_key_file name is looked up as ${CREDENTIALS_DIR_ENV}/{name} (systemd LoadCredential=) first, then as {}",
            path.display()
        ),
        _ => "relative paths are resolved against the config file's folder".into(),
    }
}

fn check(provider: &str, raw: &str, from: &str) -> Result<Secret, String> {
    let key = raw.trim();
    if key.is_empty() {
        return Err(format!(
            "the API key from {from} is empty; put the key for provider `{provider}` there"
        ));
    }
    if key
        .chars()
        .any(|c| c.is_control() || c == ' ' || !c.is_ascii())
    {
        return Err(format!(
            "the API key from {from} contains spaces, line breaks or non-ASCII characters; it must be the key alone"
        ));
    }
    Ok(Secret::new(key))
}

/// Where the key comes from, for `cutout check` (never the key).
pub fn describe(source: &ApiKeySource) -> String {
    match source {
        ApiKeySource::Inline { .. } => "api_key in the config file".into(),
        ApiKeySource::Env { var, .. } => format!("${var}"),
        ApiKeySource::File { .. } => match file_path(source) {
            Some(p) => format!("file {}", p.display()),
            None => "a file".into(),
        },
    }
}

/// For an inline key: a warning when the config file can be read by other
/// users (group or others have read permission).
pub fn inline_key_warning(source: &ApiKeySource) -> Option<String> {
    let ApiKeySource::Inline {
        file: Some(file), ..
    } = source
    else {
        return None;
    };
    let mode = std::fs::metadata(file).ok()?.permissions().mode();
    (mode & 0o044 != 0).then(|| {
        format!(
            "warning: the API key is written in {} and that file is readable by other users (mode {:o}); run `chmod 600 {}` or move the key to api_key_file / api_key_env",
            file.display(),
            mode & 0o777,
            file.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_never_contain_the_key() {
        let s = ApiKeySource::Inline {
            key: Secret::new("has space-secret-123"),
            file: None,
        };
        let e = load("p", &s).unwrap_err();
        assert!(!e.contains("secret-123"), "{e}");
        assert!(!format!("{s:?}").contains("secret-123"));
    }

    #[test]
    fn missing_env_names_the_variable_and_the_alternatives() {
        let s = ApiKeySource::Env {
            var: "CUTOUT_TEST_SURELY_UNSET_VAR".into(),
            explicit: false,
        };
        let e = load("shop", &s).unwrap_err();
        assert!(e.contains("CUTOUT_TEST_SURELY_UNSET_VAR"), "{e}");
        assert!(e.contains("api_key_file"), "{e}");
        assert!(e.contains("[providers.shop]"), "{e}");
    }

    #[test]
    fn key_files_are_trimmed() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("k");
        std::fs::write(&p, "abc123\n").expect("write");
        let s = ApiKeySource::File {
            path: p,
            credential: None,
        };
        assert_eq!(load("p", &s).expect("key").expose(), "abc123");
    }
}
