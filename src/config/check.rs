//! The checker: turns the raw serde shapes into the checked types, applying
//! defaults, resolving relative paths against the config file's folder and
//! naming the key and the file in every error. Providers are checked in
//! `check_provider`, sizes and durations in `units`, inbox options in
//! `options`.
//!
//! Must not: touch the disk (paths are resolved lexically), read provider
//! keys (they are read when the provider is built), or log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::defaults::*;
use super::env::SystemdDirs;
use super::paths::{absolute, expand_home, normalize};
use super::raw::{RawConfig, RawHttp, RawInbox, RawLimits, RawRetry};
use super::types::{
    AfterSuccess, Config, ConfigError, HttpConfig, Inbox, Limits, LocalConfig, OutputFormat,
    ProviderConfig, ProviderKind, QueueConfig, RetryConfig, WatchMode,
};

/// Checks one config text; `origin` names the file in errors and `base` is
/// the folder relative paths are resolved against.
pub(super) struct Checker {
    pub(super) origin: String,
    pub(super) base: PathBuf,
    pub(super) dirs: SystemdDirs,
    /// The resolved `models_dir` (see [`crate::models::default_dir`]).
    pub(super) models_dir: PathBuf,
}

impl Checker {
    pub(super) fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Key {
            origin: self.origin.clone(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// A path from the file: `~` expanded, relative ones against `base`.
    pub(super) fn path(&self, p: &Path) -> PathBuf {
        let expanded = expand_home(p);
        if expanded.is_absolute() {
            normalize(&expanded)
        } else {
            normalize(&self.base.join(expanded))
        }
    }

    /// One of a few words; `choices[0]` is the default when the key is absent.
    pub(super) fn choice<T: Copy>(
        &self,
        key: &str,
        v: Option<&str>,
        choices: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        let Some(v) = v else {
            return Ok(choices[0].1);
        };
        if let Some((_, t)) = choices.iter().find(|(w, _)| *w == v) {
            return Ok(*t);
        }
        let words: Vec<String> = choices.iter().map(|(w, _)| format!("{w:?}")).collect();
        let (last, rest) = words.split_last().unwrap_or((&words[0], &[]));
        let list = if rest.is_empty() {
            last.clone()
        } else {
            format!("{} or {last}", rest.join(", "))
        };
        Err(self.err(key, format!("must be {list}, got {v:?}")))
    }

    /// The whole file.
    pub(super) fn build(&self, raw: RawConfig, file: Option<&Path>) -> Result<Config, ConfigError> {
        let state_dir = match (&raw.state_dir, &self.dirs.state) {
            (Some(p), _) => self.path(p),
            (None, Some(systemd)) => normalize(systemd),
            (None, None) => self.path(Path::new(DEFAULT_STATE_DIR)),
        };
        let log_dir = match (&raw.log_dir, &self.dirs.logs) {
            (Some(p), _) => Some(self.path(p)),
            (None, Some(systemd)) => Some(normalize(systemd)),
            (None, None) => None,
        };
        let http = self.http(&raw.http)?;
        let shared_state = self.shared_state(raw.state.as_ref())?;
        let limits = self.limits(&raw.limits)?;
        let queue = QueueConfig {
            concurrency: self.int(
                "queue.concurrency",
                raw.queue.concurrency,
                DEFAULT_CONCURRENCY as i64,
                1,
                1024,
            )? as usize,
        };
        let retry = self.retry(&raw.retry)?;
        let rescan_interval = self.duration(
            "rescan_interval",
            raw.rescan_interval.as_ref(),
            DEFAULT_RESCAN,
        )?;
        if rescan_interval < Duration::from_secs(1) {
            return Err(self.err("rescan_interval", "must be at least 1s"));
        }
        let shutdown_grace =
            self.duration("shutdown_grace", raw.shutdown_grace.as_ref(), DEFAULT_GRACE)?;
        let providers = self.providers(&raw.providers, file, retry)?;
        let inboxes = self.inboxes(raw.inbox, &providers)?;
        Ok(Config {
            source: file.map(absolute),
            base_dir: self.base.clone(),
            state_dir,
            shared_state,
            log_dir,
            rescan_interval,
            shutdown_grace,
            limits,
            queue,
            retry,
            inboxes,
            providers,
            http,
            models_dir: self.models_dir.clone(),
        })
    }

    fn limits(&self, raw: &RawLimits) -> Result<Limits, ConfigError> {
        let side = |key: &str, v: Option<i64>| {
            self.int(key, v, DEFAULT_MAX_SIDE as i64, 1, u32::MAX as i64)
                .map(|n| n as u32)
        };
        Ok(Limits {
            max_file_size: self.size(
                "limits.max_file_size",
                raw.max_file_size.as_ref(),
                DEFAULT_MAX_FILE_SIZE,
            )?,
            max_width: side("limits.max_width", raw.max_width)?,
            max_height: side("limits.max_height", raw.max_height)?,
            max_pixels: self.int(
                "limits.max_pixels",
                raw.max_pixels,
                DEFAULT_MAX_PIXELS as i64,
                1,
                i64::MAX,
            )? as u64,
        })
    }

    fn retry(&self, raw: &RawRetry) -> Result<RetryConfig, ConfigError> {
        let retry = RetryConfig {
            max_attempts: self.int(
                "retry.max_attempts",
                raw.max_attempts,
                DEFAULT_MAX_ATTEMPTS as i64,
                1,
                1000,
            )? as u32,
            initial_delay: self.duration(
                "retry.initial_delay",
                raw.initial_delay.as_ref(),
                DEFAULT_INITIAL_DELAY,
            )?,
            max_delay: self.duration(
                "retry.max_delay",
                raw.max_delay.as_ref(),
                DEFAULT_MAX_DELAY,
            )?,
        };
        if retry.max_delay < retry.initial_delay {
            return Err(self.err(
                "retry.max_delay",
                format!(
                    "must not be shorter than retry.initial_delay ({})",
                    humantime::format_duration(retry.initial_delay)
                ),
            ));
        }
        Ok(retry)
    }

    /// Every `[providers.NAME]`; a `local` one always exists unless the
    /// file defines one under that name.
    fn providers(
        &self,
        raw: &BTreeMap<String, toml::Table>,
        file: Option<&Path>,
        retry: RetryConfig,
    ) -> Result<BTreeMap<String, ProviderConfig>, ConfigError> {
        let mut providers = BTreeMap::new();
        for (name, table) in raw {
            providers.insert(name.clone(), self.provider(name, table, file, retry)?);
        }
        providers
            .entry(DEFAULT_PROVIDER.to_string())
            .or_insert_with(|| ProviderConfig {
                kind: ProviderKind::Local(LocalConfig {
                    models_dir: self.models_dir.clone(),
                    threads: DEFAULT_ONNX_THREADS,
                    parallel: DEFAULT_ONNX_PARALLEL,
                    ..LocalConfig::default()
                }),
            });
        Ok(providers)
    }

    fn http(&self, raw: &RawHttp) -> Result<HttpConfig, ConfigError> {
        let listen = match raw.listen.as_deref() {
            None => None,
            Some(s) => Some(s.trim().parse::<std::net::SocketAddr>().map_err(|_| {
                self.err(
                    "http.listen",
                    format!(
                        "cannot read {s:?} as an address; write an IP address and a port, e.g. \"127.0.0.1:9808\" (\"[::1]:9808\" for IPv6)"
                    ),
                )
            })?),
        };
        Ok(HttpConfig { listen })
    }

    /// Every `[[inbox]]` (one `inbox` folder beside the config when the
    /// file has none), then their overlaps.
    fn inboxes(
        &self,
        raw: Vec<RawInbox>,
        providers: &BTreeMap<String, ProviderConfig>,
    ) -> Result<Vec<Inbox>, ConfigError> {
        let raw = if raw.is_empty() {
            vec![RawInbox {
                path: Some(PathBuf::from("inbox")),
                ..RawInbox::default()
            }]
        } else {
            raw
        };
        let mut inboxes = Vec::new();
        for (i, ri) in raw.into_iter().enumerate() {
            inboxes.push(self.inbox(i, ri, providers)?);
        }
        self.check_overlaps(&inboxes)?;
        Ok(inboxes)
    }

    fn inbox(
        &self,
        i: usize,
        ri: RawInbox,
        providers: &BTreeMap<String, ProviderConfig>,
    ) -> Result<Inbox, ConfigError> {
        let k = |name: &str| format!("inbox[{i}].{name}");
        let [path, outbox, archive, rejected, failed] = self.inbox_folders(i, &ri)?;
        let provider = ri.provider.unwrap_or_else(|| DEFAULT_PROVIDER.to_string());
        let Some(provider_config) = providers.get(&provider) else {
            let known: Vec<&str> = providers.keys().map(String::as_str).collect();
            return Err(self.err(
                k("provider"),
                format!(
                    "no provider named {provider:?}; add a [providers.{provider}] table or use one of: {}",
                    known.join(", ")
                ),
            ));
        };
        let options = self.options(&k("options"), &provider_config.kind, &ri.options)?;
        let output_format = self.choice(
            &k("output_format"),
            ri.output_format.as_deref(),
            &[("png", OutputFormat::Png), ("webp", OutputFormat::Webp)],
        )?;
        let webp_quality = self.int(
            &k("webp_quality"),
            ri.webp_quality,
            DEFAULT_WEBP_QUALITY as i64,
            1,
            100,
        )? as u8;
        let settle = self.duration(&k("settle"), ri.settle.as_ref(), DEFAULT_SETTLE)?;
        let empty_grace = self.duration(
            &k("empty_grace"),
            ri.empty_grace.as_ref(),
            DEFAULT_EMPTY_GRACE,
        )?;
        let after_success = self.choice(
            &k("after_success"),
            ri.after_success.as_deref(),
            &[
                ("archive", AfterSuccess::Archive),
                ("delete", AfterSuccess::Delete),
                ("keep", AfterSuccess::Keep),
            ],
        )?;
        let watch = self.choice(
            &k("watch"),
            ri.watch.as_deref(),
            &[("notify", WatchMode::Notify), ("poll", WatchMode::Poll)],
        )?;
        let poll_interval =
            self.duration(&k("poll_interval"), ri.poll_interval.as_ref(), DEFAULT_POLL)?;
        if poll_interval < Duration::from_millis(100) {
            return Err(self.err(k("poll_interval"), "must be at least 100ms"));
        }
        let ignore_set = self.ignore_set(&k("ignore"), &ri.ignore)?;
        let outputs = crate::finish::check_outputs(&ri.output).map_err(|e| {
            let key = format!("inbox[{i}].output[{}].{}", e.index - 1, e.error.key());
            self.err(key, e.error.to_string())
        })?;
        let name = match ri.name {
            Some(n) if !n.trim().is_empty() => n,
            Some(_) => return Err(self.err(k("name"), "must not be empty")),
            None => path.display().to_string(),
        };
        Ok(Inbox {
            name,
            path,
            outbox,
            archive,
            rejected,
            failed,
            provider,
            output_format,
            webp_quality,
            settle,
            empty_grace,
            recursive: ri.recursive.unwrap_or(true),
            after_success,
            watch,
            poll_interval,
            ignore: ri.ignore,
            ignore_set,
            options,
            outputs,
        })
    }

    /// The inbox folder and its four siblings (default: beside the inbox),
    /// in [`Inbox::managed_folders`] order.
    fn inbox_folders(&self, i: usize, ri: &RawInbox) -> Result<[PathBuf; 5], ConfigError> {
        let path = match &ri.path {
            Some(p) => self.path(p),
            None => {
                return Err(self.err(
                    format!("inbox[{i}].path"),
                    "is missing: every [[inbox]] needs a path",
                ))
            }
        };
        let parent = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| path.clone());
        let sibling = |v: &Option<PathBuf>, default: &str| match v {
            Some(p) => self.path(p),
            None => parent.join(default),
        };
        let outbox = sibling(&ri.outbox, "outbox");
        let archive = sibling(&ri.archive, "archive");
        let rejected = sibling(&ri.rejected, "rejected");
        let failed = sibling(&ri.failed, "failed");
        Ok([path, outbox, archive, rejected, failed])
    }

    fn ignore_set(&self, key: &str, patterns: &[String]) -> Result<GlobSet, ConfigError> {
        let mut gs = GlobSetBuilder::new();
        for (j, pat) in patterns.iter().enumerate() {
            let g = Glob::new(pat)
                .map_err(|e| self.err(format!("{key}[{j}]"), e.kind().to_string()))?;
            gs.add(g);
        }
        gs.build().map_err(|e| self.err(key, e.to_string()))
    }

    /// Folders must not nest in ways that loop (an outbox inside a watched
    /// inbox would be re-processed forever) or collide between inboxes.
    fn check_overlaps(&self, inboxes: &[Inbox]) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for (i, a) in inboxes.iter().enumerate() {
            if !names.insert(a.name.clone()) {
                return Err(self.err(
                    format!("inbox[{i}].name"),
                    format!("{:?} is used twice", a.name),
                ));
            }
            for (key, dir) in a.managed_folders().iter().skip(1) {
                if *dir == a.path {
                    return Err(self.err(
                        format!("inbox[{i}].{key}"),
                        "must not be the inbox folder itself",
                    ));
                }
                if dir.starts_with(&a.path) {
                    return Err(self.err(
                        format!("inbox[{i}].{key}"),
                        format!(
                            "{} lies inside the inbox {}; it would be picked up again. Put it beside the inbox instead",
                            dir.display(),
                            a.path.display()
                        ),
                    ));
                }
                if a.path.starts_with(dir) {
                    return Err(self.err(
                        format!("inbox[{i}].{key}"),
                        format!("the inbox {} lies inside it", a.path.display()),
                    ));
                }
            }
            for (j, b) in inboxes.iter().enumerate() {
                if i != j && (a.path.starts_with(&b.path)) {
                    return Err(self.err(
                        format!("inbox[{i}].path"),
                        format!(
                            "{} lies inside inbox[{j}] ({})",
                            a.path.display(),
                            b.path.display()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
