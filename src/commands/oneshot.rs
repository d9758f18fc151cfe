//! One-shot `cutout process`, the way rembg users expect:
//! `process SRC… --out DIR` (files or folders anywhere, results mirrored
//! under DIR) and `process photo.jpg -o out.png` (`-o -`: the PNG to
//! stdout). Each source becomes a synthetic inbox whose inputs stay where
//! they are (`after_success = KeepSources`), so the usual pipeline gives
//! the same validation, dedup, audit and skip-when-done.
//!
//! Must not: write anything inside a source folder (no folder checks, no
//! probes, no reason files there), or print anything but the picture on
//! stdout with `-o -`.

use std::path::{Path, PathBuf};

use super::error::{CommandError, CommandResult};
use super::process::{exit_status, init_logging, run_roots, Folders, SummaryTo};
use crate::cli::{ConfigArg, OneShotArgs};
use crate::config::{self, AfterSuccess, Config, Inbox, InboxOptions, OutputFormat};
use crate::finish::{OutputSpec, RawOutput};
use crate::queue::Tally;

/// Where one-shot state lives under `--out DIR` when `--state` is not given.
const STATE_NAME: &str = ".cutout";

pub(super) fn run(
    cfg: Config,
    arg: &ConfigArg,
    dry_run: bool,
    paths: &[PathBuf],
    o: &OneShotArgs,
) -> CommandResult {
    let _log = init_logging(&cfg, arg);
    if paths.is_empty() {
        return Err(CommandError::usage(
            "--out and -o need at least one picture or folder to read",
        ));
    }
    let sources = paths
        .iter()
        .map(|p| resolve(p))
        .collect::<Result<Vec<_>, _>>()?;
    match (&o.out, &o.output) {
        (Some(dir), _) => to_dir(cfg, &sources, dir, o, dry_run),
        (None, Some(file)) => to_file(cfg, &sources, file, o, dry_run),
        (None, None) => Err(CommandError::usage("give --out DIR or -o FILE")),
    }
}

/// A source as given, and its absolute, resolved form.
struct Source {
    given: PathBuf,
    abs: PathBuf,
    is_dir: bool,
}

fn resolve(p: &Path) -> Result<Source, CommandError> {
    let abs = std::fs::canonicalize(p)
        .map_err(|e| CommandError::usage(format!("{}: cannot read it: {e}", p.display())))?;
    Ok(Source {
        given: p.to_path_buf(),
        is_dir: abs.is_dir(),
        abs,
    })
}

/// An absolute path for a folder that may not exist yet (symlinks in its
/// existing part resolved, so overlap checks compare like with like).
fn absolute_target(p: &Path) -> PathBuf {
    let abs = config::normalize(&std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()));
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return abs,
        }
    }
    let mut out = std::fs::canonicalize(existing).unwrap_or_else(|_| existing.to_path_buf());
    out.extend(rest.iter().rev());
    out
}

/// `--out` inside a source folder (or a source inside `--out`) would read
/// results back as inputs and mix them with the originals: refused.
fn refuse_overlap(sources: &[Source], out: &Path, out_given: &Path) -> Result<(), CommandError> {
    for s in sources {
        let folder = if s.is_dir {
            s.abs.as_path()
        } else {
            s.abs.parent().unwrap_or(Path::new("/"))
        };
        let out_in_source = if s.is_dir {
            out.starts_with(folder)
        } else {
            out == folder
        };
        if out_in_source {
            return Err(CommandError::usage(format!(
                "--out {} is inside the source {} ({}); results would be written among the originals. Choose an --out folder outside it",
                out_given.display(),
                s.given.display(),
                out.display()
            )));
        }
        if s.abs.starts_with(out) {
            return Err(CommandError::usage(format!(
                "the source {} is inside --out {} ({}); results would be read back as inputs. Choose an --out folder outside it",
                s.given.display(),
                out_given.display(),
                out.display()
            )));
        }
    }
    Ok(())
}

/// The provider to use: `--provider NAME`, else `local` (the built-in
/// engine), else the first inbox's.
fn provider_name(cfg: &Config, o: &OneShotArgs) -> Result<String, CommandError> {
    let names: Vec<&str> = cfg.providers.keys().map(String::as_str).collect();
    let name = match &o.provider {
        Some(n) => n.clone(),
        None if cfg.providers.contains_key(config::DEFAULT_PROVIDER) => {
            config::DEFAULT_PROVIDER.to_string()
        }
        None => match cfg.inboxes.first() {
            Some(ib) => ib.provider.clone(),
            None => config::DEFAULT_PROVIDER.to_string(),
        },
    };
    if !cfg.providers.contains_key(&name) {
        return Err(CommandError::config(format!(
            "--provider {name}: no such provider in {} (known: {}); add a [providers.{name}] section or pick one of those",
            super::shared::origin(cfg),
            names.join(", ")
        )));
    }
    Ok(name)
}

/// The one output `--preset` / `--format` ask for (None: neither given; the
/// first inbox's outputs, or a plain cut-out). JPEG without a preset is
/// flattened onto white (it has no transparency).
fn finishing(o: &OneShotArgs) -> Result<Option<OutputSpec>, CommandError> {
    if o.preset.is_none() && o.format.is_none() {
        return Ok(None);
    }
    let jpeg = o
        .format
        .as_deref()
        .is_some_and(|f| matches!(f.trim(), "jpeg" | "jpg"));
    let raw = RawOutput {
        preset: o.preset.clone(),
        format: o.format.clone(),
        background: (jpeg && o.preset.is_none()).then(|| "#FFFFFF".to_string()),
        ..RawOutput::default()
    };
    raw.check(1).map(Some).map_err(|e| {
        let flag = match e.key() {
            "preset" => "--preset",
            "format" => "--format",
            _ => "--preset/--format",
        };
        CommandError::usage(format!("{flag}: {e}"))
    })
}

/// `-o FILE`'s format when no `--format`/`--preset` is given: `.jpg` and
/// `.jpeg` ask for a JPEG (on white), `.webp` for WebP, anything else PNG.
fn with_format_of(target: &Path, o: &OneShotArgs) -> OneShotArgs {
    let mut o = o.clone();
    let ext = target
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if o.preset.is_none() && o.format.is_none() && matches!(ext.as_deref(), Some("jpg" | "jpeg")) {
        o.format = Some("jpeg".into());
    }
    o
}

/// What every synthetic inbox shares.
struct Plan {
    template: Inbox,
    state: PathBuf,
}

impl Plan {
    fn new(cfg: &Config, o: &OneShotArgs, state: PathBuf) -> Result<Plan, CommandError> {
        let provider = provider_name(cfg, o)?;
        let Some(first) = cfg.inboxes.first() else {
            return Err(CommandError::config(format!(
                "{}: no [[inbox]] to take output settings from",
                super::shared::origin(cfg)
            )));
        };
        let mut template = first.clone();
        if template.provider != provider {
            // Options are checked for the inbox's own provider kind.
            template.options = InboxOptions::default();
            template.provider = provider;
        }
        if let Some(spec) = finishing(o)? {
            template.outputs = vec![spec];
        }
        template.settle = std::time::Duration::ZERO;
        template.after_success = AfterSuccess::KeepSources;
        template.watch = config::WatchMode::Poll;
        template.recursive = true;
        template.archive = state.join("archive");
        template.rejected = state.join("rejected");
        template.failed = state.join("failed");
        Ok(Plan { template, state })
    }

    /// The inbox for files under `folder`, results in `outbox`.
    fn inbox(&self, folder: &Path, outbox: PathBuf) -> Inbox {
        let mut ib = self.template.clone();
        ib.name = format!("oneshot:{}", folder.display());
        ib.path = folder.to_path_buf();
        ib.outbox = outbox;
        ib
    }

    /// The config to run: the user's, with these inboxes and state folder.
    fn config(&self, mut cfg: Config, inboxes: Vec<Inbox>) -> Config {
        cfg.state_dir = self.state.clone();
        cfg.inboxes = inboxes;
        cfg.http.listen = None;
        cfg
    }
}

/// Batch roots: (inbox index, file or folder).
type Roots = Vec<(usize, PathBuf)>;

/// Synthetic inboxes and batch roots for `sources`, results under `out`.
/// One folder source maps onto `out` itself; with several sources each
/// folder gets `out/<its name>`; files go straight into `out`.
fn inboxes_for(
    plan: &Plan,
    sources: &[Source],
    out: &Path,
) -> Result<(Vec<Inbox>, Roots), CommandError> {
    let mut inboxes: Vec<Inbox> = Vec::new();
    let mut roots = Vec::new();
    let single = sources.len() == 1;
    for s in sources {
        let (folder, outbox) = if s.is_dir {
            let name = s.abs.file_name().map(PathBuf::from).unwrap_or_default();
            let outbox = if single {
                out.to_path_buf()
            } else {
                out.join(name)
            };
            (s.abs.clone(), outbox)
        } else {
            let parent = s.abs.parent().unwrap_or(Path::new("/")).to_path_buf();
            (parent, out.to_path_buf())
        };
        let existing = inboxes
            .iter()
            .position(|ib| ib.path == folder && ib.outbox == outbox);
        let i = match existing {
            Some(i) => i,
            None => {
                if let Some(clash) = inboxes.iter().find(|ib| ib.outbox == outbox && s.is_dir) {
                    return Err(CommandError::usage(format!(
                        "two sources would write to {}: {} and {}; process them one at a time",
                        outbox.display(),
                        clash.path.display(),
                        s.given.display()
                    )));
                }
                inboxes.push(plan.inbox(&folder, outbox));
                inboxes.len() - 1
            }
        };
        roots.push((i, s.abs.clone()));
    }
    Ok((inboxes, roots))
}

/// Create the folders one-shot writes to (never the sources).
fn make_folders(cfg: &Config) -> Result<(), CommandError> {
    let mut dirs = vec![cfg.state_dir.clone()];
    for ib in &cfg.inboxes {
        dirs.extend([ib.outbox.clone(), ib.rejected.clone(), ib.failed.clone()]);
    }
    for d in dirs {
        std::fs::create_dir_all(&d)
            .map_err(|e| CommandError::config(format!("{}: cannot create it: {e}", d.display())))?;
    }
    Ok(())
}

fn to_dir(
    cfg: Config,
    sources: &[Source],
    out_given: &Path,
    o: &OneShotArgs,
    dry_run: bool,
) -> CommandResult {
    let out = absolute_target(out_given);
    refuse_overlap(sources, &out, out_given)?;
    let mut state = match &o.state {
        Some(s) => absolute_target(s),
        None => out.join(STATE_NAME),
    };
    // A dry run writes nothing under --out: without state there yet, it
    // reads a temporary one (removed afterwards).
    let temp = if dry_run && !state.exists() {
        Some(TempState::new()?)
    } else {
        None
    };
    if let Some(t) = &temp {
        state = t.0.clone();
    }
    let plan = Plan::new(&cfg, o, state)?;
    let (inboxes, roots) = inboxes_for(&plan, sources, &out)?;
    let cfg = plan.config(cfg, inboxes);
    if !dry_run {
        make_folders(&cfg)?;
    }
    let tally = run_roots(cfg, roots, dry_run, SummaryTo::Stdout, Folders::Ready)?;
    Ok(exit_status(&tally))
}

/// A state folder for `-o` without `--state`, removed when dropped.
struct TempState(PathBuf);

impl TempState {
    fn new() -> Result<TempState, CommandError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "cutout-oneshot-{}-{nanos:x}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| {
            CommandError::runtime(format!("{}: cannot create it: {e}", dir.display()))
        })?;
        Ok(TempState(dir))
    }
}

impl Drop for TempState {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn to_file(
    cfg: Config,
    sources: &[Source],
    target: &Path,
    o: &OneShotArgs,
    dry_run: bool,
) -> CommandResult {
    let [source] = sources else {
        return Err(CommandError::usage(
            "-o takes one picture; for several pictures or a folder use --out DIR",
        ));
    };
    if source.is_dir {
        return Err(CommandError::usage(format!(
            "-o takes one picture, and {} is a folder; use --out DIR for folders",
            source.given.display()
        )));
    }
    let to_stdout = target == Path::new("-");
    if !to_stdout && absolute_target(target) == source.abs {
        return Err(CommandError::usage(format!(
            "-o {} would overwrite the source {}; choose another file name",
            target.display(),
            source.given.display()
        )));
    }
    let temp = match &o.state {
        Some(_) => None,
        None => Some(TempState::new()?),
    };
    let state = match (&o.state, &temp) {
        (Some(s), _) => absolute_target(s),
        (None, Some(t)) => t.0.clone(),
        (None, None) => return Err(CommandError::runtime("no state folder")),
    };
    let o = &with_format_of(target, o);
    let mut plan = Plan::new(&cfg, o, state.clone())?;
    plan.template.output_format = format_for(target);
    refuse_other_extension(&plan.template, target, to_stdout)?;
    let results = state.join("output");
    let (inboxes, roots) = inboxes_for(&plan, sources, &results)?;
    let result = crate::output::output_base(&inboxes[0], Path::new(file_name(&source.abs)));
    let cfg = plan.config(cfg, inboxes);
    if !dry_run {
        make_folders(&cfg)?;
    }
    let summary_to = if to_stdout {
        SummaryTo::Stderr
    } else {
        SummaryTo::Stdout
    };
    let tally = run_roots(cfg, roots, dry_run, summary_to, Folders::Ready)?;
    if dry_run || !produced(&tally) {
        return Ok(exit_status(&tally));
    }
    deliver(&result, target, to_stdout)?;
    Ok(exit_status(&tally))
}

/// `-o out.png --format jpeg` would put JPEG bytes in a `.png` file.
fn refuse_other_extension(ib: &Inbox, target: &Path, to_stdout: bool) -> Result<(), CommandError> {
    let Some(spec) = ib.outputs.first() else {
        return Ok(());
    };
    let ext = target
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let want = spec.format.extension();
    let fits = match ext.as_deref() {
        Some("jpeg") => want == "jpg",
        Some(e) => e == want,
        None => false,
    };
    if to_stdout || fits {
        return Ok(());
    }
    Err(CommandError::usage(format!(
        "-o {} but the picture is {} ({}); name the file *.{want}, or choose another --format",
        target.display(),
        spec.format.name(),
        match spec.preset {
            Some(p) => format!("--preset {}", p.name()),
            None => "--format".to_string(),
        }
    )))
}

fn file_name(p: &Path) -> &std::ffi::OsStr {
    p.file_name().unwrap_or(p.as_os_str())
}

/// PNG unless FILE ends in `.webp`; stdout always gets PNG.
fn format_for(target: &Path) -> OutputFormat {
    match target.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("webp") => OutputFormat::Webp,
        _ => OutputFormat::Png,
    }
}

/// Whether the one picture has a cut-out (made now, earlier, or shared).
fn produced(t: &Tally) -> bool {
    t.succeeded + t.duplicates + t.skipped > 0 && t.rejected + t.failed + t.troubled == 0
}

/// Copy the finished cut-out to FILE (durably) or stdout.
fn deliver(result: &Path, target: &Path, to_stdout: bool) -> Result<(), CommandError> {
    let bytes = std::fs::read(result).map_err(|e| {
        CommandError::runtime(format!("cannot read the cut-out {}: {e}", result.display()))
    })?;
    if to_stdout {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        return out
            .write_all(&bytes)
            .and_then(|()| out.flush())
            .map_err(|e| CommandError::runtime(format!("cannot write to stdout: {e}")));
    }
    crate::fsutil::write_atomic(&absolute_target(target), &bytes, true)
        .map_err(|e| CommandError::runtime(format!("{}: {e}", target.display())))
}
