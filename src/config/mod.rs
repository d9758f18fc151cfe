//! Configuration: the one place where TOML and defaults become checked,
//! ready-to-use types. Reading order: `load` finds and reads the file,
//! `raw` is its serde shape, `check` (with `check_provider` and `units`)
//! turns it into the `types` the pipeline uses, `options` types each
//! inbox's provider options (`peers` and `peer_options` do both for the
//! remove-bg and rembg-server kinds; `defaults` holds the built-in values,
//! `env` the environment variables, `colour` the colour-name rule, `paths`
//! the lexical path helpers, `state` the shared PostgreSQL state), and
//! [`prepare_folders`] is the one step that touches the disk.
//!
//! Owns: every error that names a key and a file ([`ConfigError`]).
//!
//! Must not: create folders or touch the disk beyond reading the file
//! (except [`prepare_folders`] and [`SharedState::password`], called
//! explicitly by commands that want them),
//! hold secrets in `Debug` output, or import the provider, pipeline or queue
//! modules (they import this one).

mod check;
mod check_provider;
mod colour;
mod defaults;
mod env;
mod folders;
mod load;
mod options;
mod paths;
mod peer_options;
mod peers;
mod raw;
mod shared_state;
mod state;
mod types;
mod units;

#[cfg(test)]
mod tests;

pub use defaults::*;
pub use env::{
    SystemdDirs, CONFIGURATION_DIRECTORY_ENV, CONFIG_ENV, CONFIG_FILE_NAME, LOGS_DIRECTORY_ENV,
    STATE_DIRECTORY_ENV,
};
pub use folders::prepare_folders;
pub use load::{from_str, from_str_with, load_with_text, locate, provider_digests};
pub use paths::normalize;
pub use peer_options::{RembgServerOptions, RemoveBgOptions};
pub use peers::NO_KEY;
pub use shared_state::{SharedState, DEFAULT_LEASE, STATE_PASSWORD_CREDENTIAL};
pub use types::*;
pub use units::{parse_duration, parse_size};
