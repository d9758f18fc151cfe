//! The checker's half for `[providers.NAME]`: kinds, URLs, API key
//! sources and the hosted and local provider settings.
//!
//! Must not: read API keys (only where they come from is recorded), reach
//! the network, or import provider code (`crate::net` holds the shared
//! address rule).

use std::path::Path;
use std::time::Duration;

use super::check::Checker;
use super::defaults::*;
use super::paths::absolute;
use super::peer_options::{RembgServerOptions, RemoveBgOptions};
use super::raw::{RawHosted, RawLocal, RawRate, RawRembg, RawVerging};
use super::types::{
    ApiKeySource, ConfigError, HostedConfig, InboxOptions, LocalConfig, LocalEngine,
    ProviderConfig, ProviderKind, RembgConfig, RembgOptions, RetryConfig, Secret, VergingConfig,
};
use crate::provider::rate::RateMode;

impl Checker {
    pub(super) fn provider(
        &self,
        name: &str,
        table: &toml::Table,
        file: Option<&Path>,
        retry: RetryConfig,
    ) -> Result<ProviderConfig, ConfigError> {
        let key = format!("providers.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(self.err(
                &key,
                "provider names may use only letters, digits, `-` and `_`",
            ));
        }
        let kind = match table.get("kind") {
            Some(toml::Value::String(k)) => k.as_str(),
            Some(_) => return Err(self.err(format!("{key}.kind"), "must be a string")),
            None => {
                return Err(self.err(
                    format!("{key}.kind"),
                    format!("is missing; known kinds: {KNOWN_KINDS}"),
                ))
            }
        };
        let value = toml::Value::Table(table.clone());
        let shape = |e: toml::de::Error| self.err(&key, e.message().to_string());
        let kind = match kind {
            "local" => ProviderKind::Local(self.local(&key, value.try_into().map_err(shape)?)?),
            "rembg-com" => ProviderKind::RembgCom(self.rembg(
                &key,
                value.try_into().map_err(shape)?,
                file,
                retry,
            )?),
            "verging" => ProviderKind::Verging(self.verging(
                &key,
                value.try_into().map_err(shape)?,
                file,
                retry,
            )?),
            "remove-bg" => ProviderKind::RemoveBg(self.remove_bg(
                &key,
                value.try_into().map_err(shape)?,
                file,
                retry,
            )?),
            "rembg-server" => ProviderKind::RembgServer(self.rembg_server(
                &key,
                value.try_into().map_err(shape)?,
                file,
                retry,
            )?),
            other => {
                return Err(self.err(
                    format!("{key}.kind"),
                    format!("unknown provider kind {other:?}; known kinds: {KNOWN_KINDS}"),
                ))
            }
        };
        Ok(ProviderConfig { kind })
    }

    /// `kind = "rembg-com"`.
    fn rembg(
        &self,
        key: &str,
        raw: RawRembg,
        file: Option<&Path>,
        retry: RetryConfig,
    ) -> Result<RembgConfig, ConfigError> {
        let hosted = self.hosted(
            key,
            raw.hosted(),
            (raw.base_url.as_deref(), "", DEFAULT_REMBG_URL),
            DEFAULT_REMBG_KEY_ENV,
            file,
            retry,
        )?;
        let usage_url = self.url(
            &format!("{key}.usage_url"),
            raw.usage_url.as_deref().unwrap_or(DEFAULT_REMBG_USAGE_URL),
        )?;
        Ok(RembgConfig { hosted, usage_url })
    }

    /// `kind = "verging"`; `$VERGING_API_URL` stands in for a missing
    /// `base_url`.
    fn verging(
        &self,
        key: &str,
        raw: RawVerging,
        file: Option<&Path>,
        retry: RetryConfig,
    ) -> Result<VergingConfig, ConfigError> {
        let env_url = std::env::var(VERGING_URL_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty());
        let (url, via) = match (&raw.base_url, &env_url) {
            (Some(u), _) => (u.as_str(), ""),
            (None, Some(u)) => (u.as_str(), VERGING_URL_ENV),
            (None, None) => (DEFAULT_VERGING_URL, ""),
        };
        let hosted = self.hosted(
            key,
            raw.hosted(),
            (Some(url), via, DEFAULT_VERGING_URL),
            DEFAULT_VERGING_KEY_ENV,
            file,
            retry,
        )?;
        let poll_interval = self.duration(
            &format!("{key}.poll_interval"),
            raw.poll_interval.as_ref(),
            DEFAULT_VERGING_POLL,
        )?;
        if poll_interval < Duration::from_millis(50) {
            return Err(self.err(format!("{key}.poll_interval"), "must be at least 50ms"));
        }
        let job_timeout = self.duration(
            &format!("{key}.job_timeout"),
            raw.job_timeout.as_ref(),
            DEFAULT_JOB_TIMEOUT,
        )?;
        if job_timeout < poll_interval {
            return Err(self.err(
                format!("{key}.job_timeout"),
                format!(
                    "must not be shorter than poll_interval ({})",
                    humantime::format_duration(poll_interval)
                ),
            ));
        }
        Ok(VergingConfig {
            hosted,
            poll_interval,
            job_timeout,
            presigned_upload: raw.presigned_upload.unwrap_or(false),
        })
    }

    /// A provider URL: http(s), and plain http only on a loopback address
    /// (the API key would otherwise cross the network in the clear).
    fn url(&self, key: &str, text: &str) -> Result<String, ConfigError> {
        let url = reqwest::Url::parse(text.trim())
            .map_err(|e| self.err(key, format!("{text:?} is not a URL ({e})")))?;
        match url.scheme() {
            "https" => {}
            "http" if crate::net::is_loopback(&url) => {}
            "http" => {
                return Err(self.err(
                    key,
                    format!(
                        "{text:?} is plain http: only https is allowed (plain http only on a loopback address such as 127.0.0.1), so the API key never crosses the network in the clear"
                    ),
                ))
            }
            other => {
                return Err(self.err(
                    key,
                    format!("{text:?} has the scheme {other:?}; use an https:// URL"),
                ))
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.err(
                key,
                "must not carry a user name or password; put the key in api_key_env, api_key_file or api_key",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(self.err(key, "must not have a query (`?…`) or fragment (`#…`)"));
        }
        Ok(url.as_str().trim_end_matches('/').to_string())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn hosted(
        &self,
        key: &str,
        raw: RawHosted<'_>,
        (base, base_via, base_default): (Option<&str>, &str, &str),
        default_env: &str,
        file: Option<&Path>,
        retry: RetryConfig,
    ) -> Result<HostedConfig, ConfigError> {
        let k = |name: &str| format!("{key}.{name}");
        let base_key = if base_via.is_empty() {
            k("base_url")
        } else {
            format!("{} (from ${base_via})", k("base_url"))
        };
        let base_url = self.url(&base_key, base.unwrap_or(base_default))?;
        let source = self.key_source(key, &raw, default_env, file)?;
        let rate = self.rate(key, &raw)?;
        let default_concurrency = match rate {
            RateMode::Auto { .. } => DEFAULT_AUTO_CONCURRENCY,
            RateMode::Fixed(_) => DEFAULT_HOSTED_CONCURRENCY,
        };
        let concurrency = self.int(
            &k("concurrency"),
            raw.concurrency,
            default_concurrency as i64,
            1,
            256,
        )? as usize;
        let timeout = self.duration(&k("timeout"), raw.timeout.as_ref(), DEFAULT_HOSTED_TIMEOUT)?;
        if timeout < Duration::from_millis(100) {
            return Err(self.err(k("timeout"), "must be at least 100ms"));
        }
        let max_result_size = self.size(
            &k("max_result_size"),
            raw.max_result_size.as_ref(),
            DEFAULT_MAX_RESULT_SIZE,
        )?;
        let recheck_interval = self.duration(
            &k("recheck_interval"),
            raw.recheck_interval.as_ref(),
            DEFAULT_RECHECK_INTERVAL,
        )?;
        if recheck_interval < Duration::from_millis(100) {
            return Err(self.err(k("recheck_interval"), "must be at least 100ms"));
        }
        Ok(HostedConfig {
            base_url,
            key: source,
            concurrency,
            requests_per_second: rate,
            timeout,
            max_result_size,
            recheck_interval,
            retry,
        })
    }

    /// `requests_per_second` (a number or `"auto"`, the default) and
    /// `max_requests_per_second` (auto mode only).
    fn rate(&self, key: &str, raw: &RawHosted<'_>) -> Result<RateMode, ConfigError> {
        let k = |name: &str| format!("{key}.{name}");
        let check = |name: &str, v: f64| {
            if v.is_finite() && (0.01..=1000.0).contains(&v) {
                Ok(v)
            } else {
                Err(self.err(k(name), format!("must be between 0.01 and 1000, got {v}")))
            }
        };
        let max = raw
            .max_requests_per_second
            .map(|m| check("max_requests_per_second", m))
            .transpose()?;
        match raw.requests_per_second {
            Some(RawRate::Number(rps)) => {
                if max.is_some() {
                    return Err(self.err(
                        k("max_requests_per_second"),
                        "only applies to requests_per_second = \"auto\"; remove it or set requests_per_second = \"auto\"",
                    ));
                }
                Ok(RateMode::Fixed(check("requests_per_second", *rps)?))
            }
            Some(RawRate::Text(t)) if t != "auto" => Err(self.err(
                k("requests_per_second"),
                format!("must be a number or \"auto\", got \"{t}\""),
            )),
            Some(RawRate::Text(_)) | None => {
                let max = max.unwrap_or(DEFAULT_MAX_RPS);
                Ok(RateMode::Auto {
                    start: DEFAULT_AUTO_START_RPS.min(max),
                    max,
                })
            }
        }
    }

    /// Where the API key comes from: at most one of `api_key`,
    /// `api_key_file` and `api_key_env`; else the kind's default variable.
    fn key_source(
        &self,
        key: &str,
        raw: &RawHosted<'_>,
        default_env: &str,
        file: Option<&Path>,
    ) -> Result<ApiKeySource, ConfigError> {
        let k = |name: &str| format!("{key}.{name}");
        let given = [
            raw.api_key.is_some(),
            raw.api_key_file.is_some(),
            raw.api_key_env.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(self.err(key, "set only one of api_key_env, api_key_file and api_key"));
        }
        let source = if let Some(v) = raw.api_key {
            let v = v.trim();
            if v.is_empty() {
                return Err(self.err(k("api_key"), "is empty"));
            }
            ApiKeySource::Inline {
                key: Secret::new(v),
                file: file.map(absolute),
            }
        } else if let Some(p) = raw.api_key_file {
            if p.as_os_str().is_empty() {
                return Err(self.err(k("api_key_file"), "is empty"));
            }
            let text = p.to_string_lossy();
            let bare = !text.contains('/') && !text.starts_with('~');
            ApiKeySource::File {
                path: self.path(p),
                credential: bare.then(|| text.into_owned()),
            }
        } else if let Some(v) = raw.api_key_env {
            if v.is_empty() || v.contains('=') || v.contains('\0') {
                return Err(self.err(
                    k("api_key_env"),
                    format!("{v:?} is not a usable environment variable name"),
                ));
            }
            ApiKeySource::Env {
                var: v.clone(),
                explicit: true,
            }
        } else {
            ApiKeySource::Env {
                var: default_env.to_string(),
                explicit: false,
            }
        };
        Ok(source)
    }

    fn local(&self, key: &str, raw: RawLocal) -> Result<LocalConfig, ConfigError> {
        let engine = self.choice(
            &format!("{key}.engine"),
            raw.engine.as_deref(),
            &[
                ("auto", LocalEngine::Auto),
                ("builtin", LocalEngine::Builtin),
                ("onnx", LocalEngine::Onnx),
            ],
        )?;
        if engine == LocalEngine::Onnx && raw.model.is_none() {
            return Err(self.err(
                format!("{key}.model"),
                "is missing: engine = \"onnx\" needs the path of an .onnx model (get one with `cutout models fetch isnet-general-use`, then `model = \"…/isnet-general-use.onnx\"`; or use engine = \"auto\", which finds it in models_dir)",
            ));
        }
        if let Some(k) = &raw.model_kind {
            if let Err(e) = k.parse::<crate::engine::onnx::ModelKind>() {
                return Err(self.err(format!("{key}.model_kind"), e.to_string()));
            }
        }
        let feather = raw.feather.unwrap_or(0.0);
        if !(0.0..=50.0).contains(&feather) {
            return Err(self.err(
                format!("{key}.feather"),
                "must be between 0 and 50 (pixels)",
            ));
        }
        Ok(LocalConfig {
            engine,
            model: raw.model.as_deref().map(|p| self.path(p)),
            model_kind: raw.model_kind,
            onnxruntime: raw.onnxruntime.as_deref().map(|p| self.path(p)),
            models_dir: self.models_dir.clone(),
            threads: self.int(
                &format!("{key}.threads"),
                raw.threads,
                DEFAULT_ONNX_THREADS as i64,
                1,
                256,
            )? as usize,
            parallel: self.int(
                &format!("{key}.parallel"),
                raw.parallel,
                DEFAULT_ONNX_PARALLEL as i64,
                1,
                64,
            )? as usize,
            memory_arena: raw.memory_arena.unwrap_or(true),
            remove_specks: raw.remove_specks.unwrap_or(false),
            fill_holes: raw.fill_holes.unwrap_or(false),
            feather: feather as f32,
            decontaminate: raw.decontaminate.unwrap_or(false),
        })
    }
}

impl Checker {
    /// `inbox[i].options` for an inbox whose provider is `kind`.
    pub(super) fn options(
        &self,
        key: &str,
        kind: &ProviderKind,
        table: &toml::Table,
    ) -> Result<InboxOptions, ConfigError> {
        let checked = match kind {
            ProviderKind::RembgCom(_) => RembgOptions::parse(table).map(InboxOptions::RembgCom),
            ProviderKind::RemoveBg(_) => RemoveBgOptions::parse(table).map(InboxOptions::RemoveBg),
            ProviderKind::RembgServer(_) => {
                RembgServerOptions::parse(table).map(InboxOptions::RembgServer)
            }
            ProviderKind::Local(_) | ProviderKind::Verging(_) => match table.keys().next() {
                None => Ok(InboxOptions::None),
                Some(k) => Err(format!(
                    "provider kind `{}` takes no options, but `{k}` was given",
                    kind.name()
                )),
            },
        };
        checked.map_err(|m| self.err(key, m))
    }
}
