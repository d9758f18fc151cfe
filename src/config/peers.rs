//! `[providers.NAME]` for the two peer services a team may already have:
//! `kind = "remove-bg"` (the remove.bg API) and `kind = "rembg-server"`
//! (open-source rembg's own HTTP server, `rembg s`): their raw shapes,
//! their checked types, and the checker's half for them.
//!
//! Must not: read API keys (only where they come from is recorded), reach
//! the network, or import provider code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::check::Checker;
use super::raw::{HumanValue, RawHosted, RawRate};
use super::types::{
    ApiKeySource, ConfigError, RembgServerConfig, RemoveBgConfig, RetryConfig, Secret, ServerAuth,
};

/// The secret that stands in for "no key" (never sent: without `auth`
/// nothing reads it; shorter than anything a redaction would act on).
pub const NO_KEY: &str = "-";

/// `[providers.NAME]` with `kind = "remove-bg"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRemoveBg {
    #[allow(dead_code)]
    kind: String,
    base_url: Option<String>,
    api_key_env: Option<String>,
    api_key_file: Option<PathBuf>,
    api_key: Option<String>,
    concurrency: Option<i64>,
    requests_per_second: Option<RawRate>,
    max_requests_per_second: Option<f64>,
    timeout: Option<HumanValue>,
    max_result_size: Option<HumanValue>,
    recheck_interval: Option<HumanValue>,
}

/// `[providers.NAME]` with `kind = "rembg-server"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRembgServer {
    #[allow(dead_code)]
    kind: String,
    base_url: Option<String>,
    auth_header: Option<String>,
    auth_scheme: Option<String>,
    api_key_env: Option<String>,
    api_key_file: Option<PathBuf>,
    api_key: Option<String>,
    concurrency: Option<i64>,
    requests_per_second: Option<RawRate>,
    max_requests_per_second: Option<f64>,
    timeout: Option<HumanValue>,
    max_result_size: Option<HumanValue>,
    recheck_interval: Option<HumanValue>,
}

impl Checker {
    /// `kind = "remove-bg"`.
    pub(super) fn remove_bg(
        &self,
        key: &str,
        raw: RawRemoveBg,
        file: Option<&Path>,
        retry: RetryConfig,
    ) -> Result<RemoveBgConfig, ConfigError> {
        let view = RawHosted {
            api_key_env: &raw.api_key_env,
            api_key_file: &raw.api_key_file,
            api_key: &raw.api_key,
            concurrency: raw.concurrency,
            requests_per_second: &raw.requests_per_second,
            max_requests_per_second: raw.max_requests_per_second,
            timeout: &raw.timeout,
            max_result_size: &raw.max_result_size,
            recheck_interval: &raw.recheck_interval,
        };
        let hosted = self.hosted(
            key,
            view,
            (raw.base_url.as_deref(), "", DEFAULT_REMOVE_BG_URL),
            DEFAULT_REMOVE_BG_KEY_ENV,
            file,
            retry,
        )?;
        Ok(RemoveBgConfig { hosted })
    }

    /// `kind = "rembg-server"`: concurrency 1 and a long timeout unless
    /// set (the server holds one model and works on one picture at a
    /// time); plain http to any host when no secret is sent.
    pub(super) fn rembg_server(
        &self,
        key: &str,
        raw: RawRembgServer,
        file: Option<&Path>,
        retry: RetryConfig,
    ) -> Result<RembgServerConfig, ConfigError> {
        let auth = self.server_auth(key, &raw)?;
        let secret_given =
            raw.api_key.is_some() || raw.api_key_file.is_some() || raw.api_key_env.is_some();
        if auth.is_none() && secret_given {
            return Err(self.err(
                key,
                "api_key / api_key_file / api_key_env are only used with auth_header (rembg's server has no key of its own; set auth_header for a proxy in front of it)",
            ));
        }
        let base = raw.base_url.as_deref().unwrap_or(DEFAULT_REMBG_SERVER_URL);
        // With no secret to protect, a server elsewhere on the network may
        // be spoken to over plain http (the usual set-up of `rembg s`).
        let plain_ok = auth.is_none() && base.trim().starts_with("http://");
        let checked_base = if plain_ok {
            format!("https://{}", &base.trim()["http://".len()..])
        } else {
            base.to_string()
        };
        let timeout = raw.timeout.clone().or(Some(HumanValue::Int(
            DEFAULT_REMBG_SERVER_TIMEOUT.as_secs() as i64,
        )));
        // A self-hosted server has no rate to find: a fixed rate by default.
        let rps = raw
            .requests_per_second
            .clone()
            .or(Some(RawRate::Number(DEFAULT_REMBG_SERVER_RPS)));
        let view = RawHosted {
            api_key_env: &raw.api_key_env,
            api_key_file: &raw.api_key_file,
            api_key: &raw.api_key,
            concurrency: raw.concurrency.or(Some(DEFAULT_REMBG_SERVER_CONCURRENCY)),
            requests_per_second: &rps,
            max_requests_per_second: raw.max_requests_per_second,
            timeout: &timeout,
            max_result_size: &raw.max_result_size,
            recheck_interval: &raw.recheck_interval,
        };
        let mut hosted = self.hosted(
            key,
            view,
            (Some(&checked_base), "", DEFAULT_REMBG_SERVER_URL),
            DEFAULT_REMBG_SERVER_KEY_ENV,
            file,
            retry,
        )?;
        if plain_ok {
            hosted.base_url = format!("http://{}", &hosted.base_url["https://".len()..]);
        }
        if auth.is_none() {
            hosted.key = ApiKeySource::Inline {
                key: Secret::new(NO_KEY),
                file: None,
            };
        }
        Ok(RembgServerConfig { hosted, auth })
    }

    /// `auth_header` and `auth_scheme`.
    fn server_auth(
        &self,
        key: &str,
        raw: &RawRembgServer,
    ) -> Result<Option<ServerAuth>, ConfigError> {
        let k = |name: &str| format!("{key}.{name}");
        Ok(match (&raw.auth_header, &raw.auth_scheme) {
            (None, Some(_)) => return Err(self.err(k("auth_scheme"), "needs auth_header")),
            (None, None) => None,
            (Some(h), scheme) => {
                let ok = !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
                if !ok {
                    return Err(self.err(
                        k("auth_header"),
                        format!("{h:?} is not a header name (letters, digits, `-`, `_`), e.g. \"Authorization\""),
                    ));
                }
                if let Some(s) = scheme {
                    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
                        return Err(self.err(
                            k("auth_scheme"),
                            format!("{s:?} must be one word such as \"Bearer\""),
                        ));
                    }
                }
                Some(ServerAuth {
                    header: h.clone(),
                    scheme: scheme.clone(),
                })
            }
        })
    }
}

/// Defaults of the peer kinds (documented in config.example.toml).
pub const DEFAULT_REMOVE_BG_URL: &str = "https://api.remove.bg";
pub const DEFAULT_REMOVE_BG_KEY_ENV: &str = "REMOVE_BG_API_KEY";
pub const DEFAULT_REMBG_SERVER_URL: &str = "http://127.0.0.1:7000";
/// The proxy secret's default variable (only with `auth_header`).
pub const DEFAULT_REMBG_SERVER_KEY_ENV: &str = "REMBG_SERVER_AUTH";
pub const DEFAULT_REMBG_SERVER_CONCURRENCY: i64 = 1;
pub const DEFAULT_REMBG_SERVER_RPS: f64 = 100.0;
pub const DEFAULT_REMBG_SERVER_TIMEOUT: Duration = Duration::from_secs(300);

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{from_str, Config, ProviderKind, DEFAULT_HOSTED_CONCURRENCY};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        from_str(
            text,
            Some(Path::new("/etc/cutout/cutout.toml")),
            Path::new("/srv/cutout"),
        )
    }

    #[test]
    fn example_config_documents_the_peer_defaults() {
        let text = include_str!("../../config.example.toml");
        let mut out = String::new();
        let mut in_block = false;
        for line in text.lines() {
            if line == "# [providers.removebg]" || line == "# [providers.studio]" {
                in_block = true;
            } else if line.is_empty() {
                in_block = false;
            }
            match line.strip_prefix("# ") {
                Some(rest) if in_block && !rest.starts_with('#') => out.push_str(rest),
                _ => out.push_str(line),
            }
            out.push('\n');
        }
        let c = parse(&out).unwrap_or_else(|e| panic!("{e}"));
        let ProviderKind::RemoveBg(r) = &c.providers["removebg"].kind else {
            panic!("remove-bg example missing");
        };
        let ProviderKind::RembgServer(s) = &c.providers["studio"].kind else {
            panic!("rembg-server example missing");
        };
        assert_eq!(r.hosted.base_url, DEFAULT_REMOVE_BG_URL);
        assert_eq!(r.hosted.concurrency, DEFAULT_HOSTED_CONCURRENCY);
        assert_eq!(s.hosted.base_url, DEFAULT_REMBG_SERVER_URL);
        assert_eq!(
            s.hosted.concurrency,
            DEFAULT_REMBG_SERVER_CONCURRENCY as usize
        );
        assert_eq!(
            s.hosted.requests_per_second,
            crate::provider::rate::RateMode::Fixed(DEFAULT_REMBG_SERVER_RPS)
        );
        assert_eq!(s.hosted.timeout, DEFAULT_REMBG_SERVER_TIMEOUT);
        assert_eq!(s.auth, None);
    }

    #[test]
    fn a_rembg_server_may_be_plain_http_on_the_network_only_without_a_secret() {
        let c =
            parse("[providers.s]\nkind = \"rembg-server\"\nbase_url = \"http://10.0.0.5:7000/\"\n")
                .expect("plain http without a secret");
        let ProviderKind::RembgServer(s) = &c.providers["s"].kind else {
            panic!("kind");
        };
        assert_eq!(s.hosted.base_url, "http://10.0.0.5:7000");
        assert_eq!(s.hosted.concurrency, 1);
        let e = parse(
            "[providers.s]\nkind = \"rembg-server\"\nbase_url = \"http://10.0.0.5:7000\"\nauth_header = \"X-Proxy-Key\"\napi_key = \"sekret\"\n",
        )
        .expect_err("a secret over plain http");
        assert!(e.to_string().contains("plain http"), "{e}");
        let e = parse("[providers.s]\nkind = \"rembg-server\"\napi_key_env = \"X\"\n")
            .expect_err("a key without auth_header");
        assert!(e.to_string().contains("auth_header"), "{e}");
        let e = parse("[providers.s]\nkind = \"rembg-server\"\nauth_header = \"Bad Header\"\n")
            .expect_err("header name");
        assert!(e.to_string().contains("auth_header"), "{e}");
        let e =
            parse("[providers.r]\nkind = \"remove-bg\"\ncredits = 3\n").expect_err("unknown key");
        assert!(e.to_string().contains("credits"), "{e}");
    }
}
