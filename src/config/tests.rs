//! Unit tests of the whole checker: config text in, checked types or an
//! error naming the key and the file out.

use std::path::{Path, PathBuf};

use super::*;
use crate::provider::rate::RateMode;

fn parse(text: &str) -> Result<Config, ConfigError> {
    from_str(
        text,
        Some(Path::new("/etc/cutout/cutout.toml")),
        Path::new("/srv/cutout"),
    )
}

#[test]
fn defaults_without_a_file() {
    let c = from_str("", None, Path::new("/work")).expect("defaults load");
    assert_eq!(c.inboxes.len(), 1);
    let ib = &c.inboxes[0];
    assert_eq!(ib.path, Path::new("/work/inbox"));
    assert_eq!(ib.outbox, Path::new("/work/outbox"));
    assert_eq!(ib.archive, Path::new("/work/archive"));
    assert_eq!(ib.rejected, Path::new("/work/rejected"));
    assert_eq!(ib.failed, Path::new("/work/failed"));
    assert_eq!(c.state_dir, Path::new("/work/.cutout"));
    assert_eq!(c.limits.max_file_size, 10 * 1024 * 1024);
    assert_eq!(ib.after_success, AfterSuccess::Archive);
    assert_eq!(ib.provider, "local");
}

#[test]
fn relative_paths_resolve_against_the_config_folder() {
    let c = parse("[[inbox]]\npath = \"drop/in\"\noutbox = \"../out\"\n").expect("loads");
    assert_eq!(c.inboxes[0].path, Path::new("/srv/cutout/drop/in"));
    assert_eq!(c.inboxes[0].outbox, Path::new("/srv/out"));
    assert_eq!(
        c.inboxes[0].rejected,
        Path::new("/srv/cutout/drop/rejected")
    );
}

#[test]
fn unknown_key_names_key_and_file() {
    let e = parse("[limits]\nmax_fil_size = \"1 MiB\"\n").expect_err("must fail");
    let s = e.to_string();
    assert!(s.contains("/etc/cutout/cutout.toml"), "{s}");
    assert!(s.contains("max_fil_size"), "{s}");
}

#[test]
fn bad_values_name_the_key() {
    for (text, key) in [
        (
            "[limits]\nmax_file_size = \"10 MiBs\"\n",
            "limits.max_file_size",
        ),
        ("[retry]\ninitial_delay = \"soon\"\n", "retry.initial_delay"),
        ("[queue]\nconcurrency = 0\n", "queue.concurrency"),
        (
            "[[inbox]]\npath = \"in\"\nwebp_quality = 101\n",
            "inbox[0].webp_quality",
        ),
        (
            "[[inbox]]\npath = \"in\"\noutput_format = \"gif\"\n",
            "inbox[0].output_format",
        ),
        (
            "[[inbox]]\npath = \"in\"\nprovider = \"nope\"\n",
            "inbox[0].provider",
        ),
        (
            "[[inbox]]\npath = \"in\"\noutbox = \"in/out\"\n",
            "inbox[0].outbox",
        ),
        ("[providers.x]\nkind = \"magic\"\n", "providers.x.kind"),
    ] {
        let s = parse(text).expect_err(text).to_string();
        assert!(s.contains(key), "{text:?} → {s}");
        assert!(s.contains("cutout.toml"), "{s}");
    }
}

#[test]
fn http_listen_is_checked() {
    let c = parse("[http]\nlisten = \"127.0.0.1:9808\"\n").expect("loads");
    assert_eq!(c.http.listen, Some("127.0.0.1:9808".parse().expect("addr")));
    assert_eq!(parse("").expect("loads").http.listen, None);
    for bad in [
        "[http]\nlisten = \"localhost\"\n",
        "[http]\nlisten = \"127.0.0.1:99999\"\n",
    ] {
        let s = parse(bad).expect_err(bad).to_string();
        assert!(s.contains("`http.listen`"), "{s}");
        assert!(s.contains("cutout.toml"), "{s}");
    }
    let s = parse("[http]\nlistn = \"127.0.0.1:1\"\n")
        .expect_err("unknown key")
        .to_string();
    assert!(s.contains("listn"), "{s}");
}

#[test]
fn systemd_directories_are_defaults_only() {
    let dirs = SystemdDirs {
        state: Some(PathBuf::from("/var/lib/cutout")),
        logs: Some(PathBuf::from("/var/log/cutout")),
    };
    let f = Some(Path::new("/etc/cutout/cutout.toml"));
    let c = from_str_with("", f, Path::new("/etc/cutout"), &dirs).expect("loads");
    assert_eq!(c.state_dir, Path::new("/var/lib/cutout"));
    assert_eq!(c.log_dir.as_deref(), Some(Path::new("/var/log/cutout")));
    let c = from_str_with(
        "state_dir = \"/srv/state\"\nlog_dir = \"logs\"\n",
        f,
        Path::new("/etc/cutout"),
        &dirs,
    )
    .expect("loads");
    assert_eq!(c.state_dir, Path::new("/srv/state"));
    assert_eq!(c.log_dir.as_deref(), Some(Path::new("/etc/cutout/logs")));
    let c = from_str("", f, Path::new("/etc/cutout")).expect("loads");
    assert_eq!(c.state_dir, Path::new("/etc/cutout/.cutout"));
    assert_eq!(c.log_dir, None);
}

#[test]
fn provider_digests_change_only_with_the_table() {
    let a =
        provider_digests("[providers.local]\nkind = \"local\"\n[providers.x]\nkind = \"local\"\n");
    let b = provider_digests(
        "# comment\n[providers.x]\nkind = \"local\"\n\n[providers.local]\nkind=\"local\"\n",
    );
    assert_eq!(a, b, "formatting and order do not matter");
    assert_eq!(a.len(), 2);
    let c = provider_digests("[providers.x]\nkind = \"other\"\n");
    assert_ne!(a.get("x"), c.get("x"));
    assert!(provider_digests("not toml [").is_empty());
}

#[test]
fn a_fixed_rate_keeps_the_small_default_concurrency() {
    let c = parse("[providers.r]\nkind = \"rembg-com\"\nrequests_per_second = 3\n").expect("loads");
    let ProviderKind::RembgCom(r) = &c.providers["r"].kind else {
        panic!("not rembg-com");
    };
    assert_eq!(r.hosted.requests_per_second, RateMode::Fixed(3.0));
    assert_eq!(r.hosted.concurrency, DEFAULT_HOSTED_CONCURRENCY);
    let c = parse("[providers.r]\nkind = \"rembg-com\"\nrequests_per_second = \"auto\"\nmax_requests_per_second = 1\n")
        .expect("loads");
    let ProviderKind::RembgCom(r) = &c.providers["r"].kind else {
        panic!("not rembg-com");
    };
    assert_eq!(
        r.hosted.requests_per_second,
        RateMode::Auto {
            start: 1.0,
            max: 1.0
        }
    );
}

#[test]
fn hosted_providers_with_their_defaults() {
    let c = parse(
        "[providers.r]\nkind = \"rembg-com\"\n[providers.v]\nkind = \"verging\"\napi_key_file = \"vkey\"\npresigned_upload = true\n",
    )
    .expect("loads");
    match &c.providers["r"].kind {
        ProviderKind::RembgCom(r) => {
            assert_eq!(r.hosted.base_url, DEFAULT_REMBG_URL);
            assert_eq!(r.usage_url, DEFAULT_REMBG_USAGE_URL);
            assert_eq!(r.hosted.concurrency, DEFAULT_AUTO_CONCURRENCY);
            assert_eq!(
                r.hosted.requests_per_second,
                RateMode::Auto {
                    start: DEFAULT_AUTO_START_RPS,
                    max: DEFAULT_MAX_RPS
                }
            );
            assert!(matches!(
                &r.hosted.key,
                ApiKeySource::Env { var, explicit: false } if var == DEFAULT_REMBG_KEY_ENV
            ));
        }
        other => panic!("{other:?}"),
    }
    match &c.providers["v"].kind {
        ProviderKind::Verging(v) => {
            assert_eq!(v.poll_interval, DEFAULT_VERGING_POLL);
            assert!(v.presigned_upload);
            assert!(matches!(
                &v.hosted.key,
                ApiKeySource::File { path, credential: Some(n) }
                    if path == Path::new("/srv/cutout/vkey") && n == "vkey"
            ));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn hosted_provider_mistakes_name_the_key() {
    for (text, key) in [
        (
            "[providers.r]\nkind = \"rembg-com\"\napi_kye = \"x\"\n",
            "api_kye",
        ),
        (
            "[providers.r]\nkind = \"rembg-com\"\nbase_url = \"http://api.example.com\"\n",
            "providers.r.base_url",
        ),
        (
            "[providers.r]\nkind = \"rembg-com\"\nusage_url = \"ftp://x\"\n",
            "providers.r.usage_url",
        ),
        (
            "[providers.r]\nkind = \"rembg-com\"\nconcurrency = 0\n",
            "providers.r.concurrency",
        ),
        (
            "[providers.r]\nkind = \"rembg-com\"\nrequests_per_second = 0\n",
            "providers.r.requests_per_second",
        ),
        (
            "[providers.r]\nkind = \"rembg-com\"\nrequests_per_second = \"fast\"\n",
            "providers.r.requests_per_second",
        ),
        (
            "[providers.r]\nkind = \"rembg-com\"\nmax_requests_per_second = 0\n",
            "providers.r.max_requests_per_second",
        ),
        (
            "[providers.r]\nkind = \"rembg-com\"\nrequests_per_second = 3\nmax_requests_per_second = 9\n",
            "providers.r.max_requests_per_second",
        ),
        (
            "[providers.r]\nkind = \"rembg-com\"\npoll_interval = \"1s\"\n",
            "poll_interval",
        ),
        (
            "[providers.v]\nkind = \"verging\"\njob_timeout = \"1ms\"\n",
            "providers.v.job_timeout",
        ),
        (
            "[providers.v]\nkind = \"verging\"\napi_key = \"a\"\napi_key_env = \"B\"\n",
            "providers.v",
        ),
    ] {
        let s = parse(text).expect_err(text).to_string();
        assert!(s.contains(key), "{text:?} → {s}");
        assert!(s.contains("cutout.toml"), "{s}");
    }
    // Plain http is fine on loopback (tests, local proxies).
    assert!(
        parse("[providers.r]\nkind = \"rembg-com\"\nbase_url = \"http://127.0.0.1:8080/\"\n")
            .is_ok()
    );
}

#[test]
fn example_config_documents_the_hosted_defaults() {
    // Uncomment the two provider examples and load them: the documented
    // values must be the defaults.
    let text = include_str!("../../config.example.toml");
    let mut out = String::new();
    let mut in_block = false;
    for line in text.lines() {
        if line == "# [providers.rembg]" || line == "# [providers.verging]" {
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
    let ProviderKind::RembgCom(r) = &c.providers["rembg"].kind else {
        panic!("rembg example missing");
    };
    let ProviderKind::Verging(v) = &c.providers["verging"].kind else {
        panic!("verging example missing");
    };
    assert_eq!(r.hosted.base_url, DEFAULT_REMBG_URL);
    assert_eq!(r.usage_url, DEFAULT_REMBG_USAGE_URL);
    assert_eq!(v.hosted.base_url, DEFAULT_VERGING_URL);
    for h in [&r.hosted, &v.hosted] {
        assert_eq!(h.concurrency, DEFAULT_AUTO_CONCURRENCY);
        assert_eq!(
            h.requests_per_second,
            RateMode::Auto {
                start: DEFAULT_AUTO_START_RPS,
                max: DEFAULT_MAX_RPS
            }
        );
        assert_eq!(h.timeout, DEFAULT_HOSTED_TIMEOUT);
        assert_eq!(h.max_result_size, DEFAULT_MAX_RESULT_SIZE);
        assert_eq!(h.recheck_interval, DEFAULT_RECHECK_INTERVAL);
    }
    assert_eq!(v.poll_interval, DEFAULT_VERGING_POLL);
    assert_eq!(v.job_timeout, DEFAULT_JOB_TIMEOUT);
    assert!(!v.presigned_upload);
}

#[test]
fn inline_keys_never_show_in_debug() {
    let c = parse("[providers.r]\nkind = \"rembg-com\"\napi_key = \"sk-very-secret\"\n")
        .expect("loads");
    let dbg = format!("{:?} {:?}", c, c.providers["r"].kind);
    assert!(!dbg.contains("sk-very-secret"), "{dbg}");
}

#[test]
fn inbox_options_are_typed_for_the_provider_kind() {
    let c = parse(
        "[[inbox]]\npath = \"a\"\nprovider = \"r\"\noptions = { w = 640, format = \"webp\" }\n\
         [[inbox]]\npath = \"b\"\nprovider = \"r\"\n\
         [[inbox]]\npath = \"c\"\n\
         [providers.r]\nkind = \"rembg-com\"\n",
    )
    .expect("loads");
    let a = c.inboxes[0].options.rembg().expect("rembg options");
    assert_eq!(a.w, Some(640));
    assert_eq!(a.format, Some(OutputFormat::Webp));
    assert_eq!(
        c.inboxes[1].options,
        InboxOptions::RembgCom(RembgOptions::default()),
        "a rembg inbox without options gets the defaults"
    );
    assert_eq!(c.inboxes[2].options, InboxOptions::None);
    for (text, want) in [
        (
            "[[inbox]]\npath = \"in\"\noptions = { w = 1 }\n",
            "`local` takes no options, but `w` was given",
        ),
        (
            "[[inbox]]\npath = \"in\"\nprovider = \"r\"\noptions = { angle = 400 }\n\
             [providers.r]\nkind = \"rembg-com\"\n",
            "`angle` must be a number from -360 to 360",
        ),
    ] {
        let s = parse(text).expect_err(text).to_string();
        assert!(s.contains("`inbox[0].options`"), "{s}");
        assert!(s.contains(want), "{s}");
        assert!(s.contains("/etc/cutout/cutout.toml"), "{s}");
    }
}
