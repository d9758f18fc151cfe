//! The environment variables that locate the config and the defaults systemd
//! hands over (`$CONFIGURATION_DIRECTORY`, `$STATE_DIRECTORY`,
//! `$LOGS_DIRECTORY`). A leaf of `config`: `load` and `check` read it.
//!
//! Must not: read files or judge values.

use std::path::PathBuf;

/// The environment variable naming a config file when `--config` is absent.
pub const CONFIG_ENV: &str = "CUTOUT_CONFIG";
/// systemd's `ConfigurationDirectory=`: `cutout.toml` there is the config
/// when neither `--config` nor `$CUTOUT_CONFIG` names one.
pub const CONFIGURATION_DIRECTORY_ENV: &str = "CONFIGURATION_DIRECTORY";
/// systemd's `StateDirectory=`: the default `state_dir`.
pub const STATE_DIRECTORY_ENV: &str = "STATE_DIRECTORY";
/// systemd's `LogsDirectory=`: the default `log_dir`.
pub const LOGS_DIRECTORY_ENV: &str = "LOGS_DIRECTORY";
/// The config file name looked for in `$CONFIGURATION_DIRECTORY`.
pub const CONFIG_FILE_NAME: &str = "cutout.toml";

/// The first folder of a systemd directory variable (they may list several,
/// separated by `:`); relative or empty values are ignored.
pub(super) fn env_dir(var: &str) -> Option<PathBuf> {
    let v = std::env::var_os(var)?;
    let first = std::env::split_paths(&v).next()?;
    first.is_absolute().then_some(first)
}

/// Defaults that systemd hands over in the environment: `$STATE_DIRECTORY`
/// (`StateDirectory=`) and `$LOGS_DIRECTORY` (`LogsDirectory=`) are the
/// defaults for `state_dir` and `log_dir` when the file does not set them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemdDirs {
    pub state: Option<PathBuf>,
    pub logs: Option<PathBuf>,
}

impl SystemdDirs {
    pub fn from_env() -> SystemdDirs {
        SystemdDirs {
            state: env_dir(STATE_DIRECTORY_ENV),
            logs: env_dir(LOGS_DIRECTORY_ENV),
        }
    }
}
