//! cutout: a drop-folder daemon that turns product photos into transparent
//! cut-outs.
//!
//! The pipeline, one module per stage, with small plain types between them:
//!
//! ```text
//!  watch ──Found──▶ settle ──Ready──▶ queue ──path──▶ pipeline::process_file
//!  (notify,          (quiet +          (bounded        │ intake   (state lookup, read + sha256)
//!   walkdir scans)    stable stat)      workers)       │ check    (validate: sniff, caps, decode)
//!                                                      │ claim    (store: new / resume / dedup)
//!                                                      │ attempt  (provider::Provider, retries)
//!                                                      │ decide   (output: encode, atomic write)
//!                                                      └ finish   (reason file, audit line, move)
//! ```
//!
//! `job` holds the plain types every stage shares (the file's verdict, the
//! typed reason `Code`, the audit `Event`, the backoff schedule) and imports
//! nothing else from the crate. `config` turns TOML into checked types
//! before anything runs; `net` holds the pure address rules config and
//! providers share; `commands` holds the CLI verbs (`cli` parses them);
//! `fsutil` the durable file operations everything shares; `blocking` the
//! one way blocking work leaves the async executor; `store` the state
//! database; `audit` the audit log; `output` encoding, output names and
//! reason files; `finish` the `[[inbox.output]]` finishing (pixels in,
//! bytes out); `engine` the pixel-level background removers behind the
//! `local` provider; `models` the `cutout models` catalogue, fetch and
//! verify.
//!
//! Running as a service: `service` speaks `sd_notify` (ready, status,
//! watchdog on the dispatcher's heartbeat, reloading, stopping), `metrics`
//! keeps the counters, `http` serves `/healthz` and `/metrics` (and `review` the review page:
//! every outcome, indexed from the audit log into the state database), and
//! `logging` sets up the log files. A SIGHUP reload is built and checked in
//! `reload` (providers through `provider::build`), then switched in by the
//! queue.

pub mod audit;
pub mod blocking;
pub mod cli;
pub mod commands;
pub mod config;
pub mod engine;
pub mod finish;
pub mod fsutil;
pub mod http;
pub mod job;
pub mod logging;
pub mod metrics;
pub mod models;
pub mod net;
pub mod output;
pub mod pipeline;
pub mod provider;
pub mod queue;
pub mod reload;
pub mod review;
pub mod service;
pub mod settle;
pub mod store;
pub mod validate;
pub mod watch;
