//! cutout: a drop-folder daemon that turns product photos into transparent
//! cut-outs.
//!
//! The pipeline, one module per stage, with small plain types between them:
//!
//! ```text
//!  watch ──Found──▶ settle ──Ready──▶ queue ──path──▶ pipeline::process_file
//!  (notify,          (quiet +          (bounded        │ validate (sniff, caps, decode)
//!   walkdir scans)    stable stat)      workers)       │ store::claim (sha256: resume / dedup)
//!                                                      │ provider::Provider (local, hosted…)
//!                                                      │ output (encode, atomic write, moves)
//!                                                      └ audit (audit.jsonl, exactly once)
//! ```
//!
//! `config` turns TOML into checked types before anything runs; `net` holds
//! the pure address rules config and providers share; `commands`
//! holds the CLI verbs; `fsutil` the durable file operations everything
//! shares; `engine` the pixel-level background removers.
//!
//! Running as a service: `service` speaks `sd_notify` (ready, status,
//! watchdog on the dispatcher's heartbeat, reloading, stopping), `metrics`
//! keeps the counters, and `http` serves `/healthz` and `/metrics`. A SIGHUP
//! reload is built and checked in `commands`, then switched in by `queue`.

pub mod audit;
pub mod cli;
pub mod commands;
pub mod config;
pub mod engine;
pub mod fsutil;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod models;
pub mod net;
pub mod output;
pub mod pipeline;
pub mod provider;
pub mod queue;
pub mod reload;
pub mod service;
pub mod settle;
pub mod store;
pub mod validate;
pub mod watch;
