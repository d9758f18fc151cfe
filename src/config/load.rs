//! Finding and reading the config: `--config`, `$CUTOUT_CONFIG` or systemd's
//! `$CONFIGURATION_DIRECTORY`, the defaults systemd hands over, and the
//! per-provider digests a reload compares.
//!
//! Owns: the precedence that locates the file (the variables are in `env`). Must not: judge
//! values (that is `check`) or write anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::check::Checker;
use super::env::{env_dir, SystemdDirs, CONFIGURATION_DIRECTORY_ENV, CONFIG_ENV, CONFIG_FILE_NAME};
use super::paths::absolute;
use super::raw::RawConfig;
use super::types::{Config, ConfigError};

/// Where the config comes from, in precedence order: `--config`,
/// `$CUTOUT_CONFIG`, `$CONFIGURATION_DIRECTORY/cutout.toml` (systemd's
/// `ConfigurationDirectory=`); None: built-in defaults.
pub fn locate(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    match std::env::var_os(CONFIG_ENV) {
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => env_dir(CONFIGURATION_DIRECTORY_ENV).map(|d| d.join(CONFIG_FILE_NAME)),
    }
}

/// Load from a file, or the built-in defaults (current directory) when `path`
/// is None; also returns the text it was read from (empty for the built-in
/// defaults), so a reload can tell what changed.
pub fn load_with_text(path: Option<&Path>) -> Result<(Config, String), ConfigError> {
    let dirs = SystemdDirs::from_env();
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?;
            let base = p
                .parent()
                .map(|d| {
                    if d.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        d
                    }
                })
                .unwrap_or(Path::new("."));
            let base = absolute(base);
            let cfg = from_str_with(&text, Some(p), &base, &dirs)?;
            Ok((cfg, text))
        }
        None => {
            let cwd = std::env::current_dir().map_err(|source| ConfigError::Read {
                path: PathBuf::from("."),
                source,
            })?;
            Ok((from_str_with("", None, &cwd, &dirs)?, String::new()))
        }
    }
}

/// A digest of each `[providers.NAME]` table as written in `text`, so a
/// reload rebuilds only the providers whose settings changed (and keeps the
/// state — pauses, rate limits — of the others). Never logged.
pub fn provider_digests(text: &str) -> BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return BTreeMap::new();
    };
    let Some(toml::Value::Table(providers)) = table.get("providers") else {
        return BTreeMap::new();
    };
    providers
        .iter()
        .map(|(name, v)| {
            let canonical = toml::to_string(v).unwrap_or_else(|_| format!("{v:?}"));
            (name.clone(), hex::encode(Sha256::digest(canonical)))
        })
        .collect()
}

/// Parse config text; `file` only names the origin in errors. Ignores the
/// systemd directory variables (see [`from_str_with`]).
pub fn from_str(text: &str, file: Option<&Path>, base_dir: &Path) -> Result<Config, ConfigError> {
    from_str_with(text, file, base_dir, &SystemdDirs::default())
}

/// [`from_str`] with systemd's directories as defaults.
pub fn from_str_with(
    text: &str,
    file: Option<&Path>,
    base_dir: &Path,
    dirs: &SystemdDirs,
) -> Result<Config, ConfigError> {
    let origin = match file {
        Some(f) => f.display().to_string(),
        None => "built-in defaults".to_string(),
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
        origin: origin.clone(),
        message: tidy_toml_error(&e),
    })?;
    let mut c = Checker {
        origin: origin.clone(),
        base: base_dir.to_path_buf(),
        dirs: dirs.clone(),
        models_dir: PathBuf::new(),
    };
    c.models_dir = match &raw.models_dir {
        Some(p) => c.path(p),
        None => crate::models::default_dir(dirs.state.as_deref()),
    };
    c.build(raw, file)
}

fn tidy_toml_error(e: &toml::de::Error) -> String {
    // toml's message is multi-line with a source excerpt; keep it, but make
    // the first line lead with the key when serde names one.
    e.to_string().trim_end().to_string()
}
