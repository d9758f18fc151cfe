//! `cutout check`: the config, every folder and provider it names, and the
//! effective settings, printed.
//!
//! Must not: process files or write anything but missing folders.

use super::error::{exit, CommandError, CommandResult};
use super::shared::runtime;
use crate::cli::ConfigArg;
use crate::config::{self, Config};
use crate::provider;

pub(super) fn check(cfg: Config, arg: &ConfigArg) -> CommandResult {
    let _log = crate::logging::init(Some(arg.log.as_deref().unwrap_or("warn")), None);
    println!(
        "config: {}",
        cfg.source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "built-in defaults (no file)".into())
    );
    let created = config::prepare_folders(&cfg).map_err(|e| CommandError::config(e.to_string()))?;
    for l in created {
        println!("  {l}");
    }
    print_settings(&cfg);
    print_inboxes(&cfg);
    if check_providers(&cfg)? {
        println!("config ok");
        Ok(exit::OK)
    } else {
        Ok(exit::CONFIG)
    }
}

fn print_settings(cfg: &Config) {
    println!("state_dir: {}", cfg.state_dir.display());
    println!(
        "log_dir: {}",
        cfg.log_dir
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(stderr only)".into())
    );
    println!(
        "limits: max_file_size {} bytes, max {}x{}, max_pixels {}",
        cfg.limits.max_file_size,
        cfg.limits.max_width,
        cfg.limits.max_height,
        cfg.limits.max_pixels
    );
    println!(
        "queue: concurrency {}; retry: max_attempts {}, initial_delay {}, max_delay {}",
        cfg.queue.concurrency,
        cfg.retry.max_attempts,
        humantime::format_duration(cfg.retry.initial_delay),
        humantime::format_duration(cfg.retry.max_delay)
    );
    println!(
        "rescan_interval {}, shutdown_grace {}",
        humantime::format_duration(cfg.rescan_interval),
        humantime::format_duration(cfg.shutdown_grace)
    );
    match cfg.http.listen {
        Some(a) if cfg.http.review => {
            println!("http: /healthz, /metrics and the review page on http://{a}")
        }
        Some(a) => println!("http: /healthz and /metrics on http://{a}"),
        None => println!("http: off (set [http] listen to serve /healthz and /metrics)"),
    }
    if cfg.http.listen.is_some() {
        match (cfg.http.actions, &cfg.http.token_file) {
            (false, _) => println!("http actions: off (review page read-only)"),
            (true, Some(f)) => println!("http actions: on, token from {}", f.display()),
            (true, None) => println!("http actions: on, loopback only, no token"),
        }
    }
}

fn print_inboxes(cfg: &Config) {
    for (i, ib) in cfg.inboxes.iter().enumerate() {
        println!("inbox[{i}] {:?}:", ib.name);
        for (key, dir) in ib.managed_folders() {
            println!("  {key:<9} {} (ok, writable)", dir.display());
        }
        println!(
            "  provider {}, output {} (webp_quality {}), settle {}, recursive {}, after_success {:?}, watch {:?}",
            ib.provider,
            ib.output_format.extension(),
            ib.webp_quality,
            humantime::format_duration(ib.settle),
            ib.recursive,
            ib.after_success,
            ib.watch
        );
        if !ib.ignore.is_empty() {
            println!("  ignore {:?}", ib.ignore);
        }
        for (j, spec) in ib.outputs.iter().enumerate() {
            println!("  output[{j}] {} = {spec}", spec.name_pattern());
        }
    }
}

/// Build and ask every provider; true when all are healthy.
fn check_providers(cfg: &Config) -> Result<bool, CommandError> {
    let rt = runtime().map_err(|e| CommandError::runtime(e.to_string()))?;
    let mut ok = true;
    for (name, pc) in &cfg.providers {
        match provider::build::build(name, pc) {
            Ok(p) => {
                let h = rt.block_on(p.health());
                println!(
                    "provider {name} ({}): {}",
                    p.kind(),
                    if h.ok { "ok" } else { "NOT OK" }
                );
                for l in h.lines {
                    println!("  {l}");
                }
                let users: Vec<String> = (cfg.inboxes.iter().enumerate())
                    .filter(|(_, ib)| &ib.provider == name)
                    .map(|(i, ib)| format!("inbox[{i}] {:?}", ib.name))
                    .collect();
                if !users.is_empty() {
                    println!("  engine of {}", users.join(", "));
                }
                ok &= h.ok;
            }
            Err(e) => {
                println!("provider {name}: NOT OK: {e}");
                ok = false;
            }
        }
    }
    Ok(ok)
}
