//! `cutout models list | fetch | verify`: what each does and prints (the
//! arguments are clap types in `cli`). Exit statuses: 0 done; 1 something could not be fetched or failed
//! its check; 2 bad command line; 3 bad config; 4 the models folder cannot be
//! written.
//!
//! Must not: hold fetch or hashing logic (`fetch`, `verify`), or start the daemon.

use std::path::{Path, PathBuf};

use super::catalogue::{self, ModelEntry, MODELS, RUNTIME_NAME};
use super::fetch::{self, FetchError, Fp32, Target};
use super::verify::{self, Verdict};
use crate::cli::{ModelsAction, ModelsArgs};
use crate::config;

const OK: i32 = 0;
const FAILED: i32 = 1;
const USAGE: i32 = 2;
const CONFIG: i32 = 3;
const IO: i32 = 4;

/// Run `cutout models …`; returns the exit status.
pub fn main(args: ModelsArgs) -> i32 {
    let dir = match models_dir(&args) {
        Ok(d) => d,
        Err(m) => {
            eprintln!("error: {m}");
            return CONFIG;
        }
    };
    match args.action {
        ModelsAction::List => list(&dir),
        ModelsAction::Verify => verify_all(&dir),
        ModelsAction::Fetch {
            names,
            from,
            no_runtime,
            fp32,
            fp16,
        } => fetch_all(&dir, &names, from.as_deref(), no_runtime, (fp32, fp16)),
    }
}

/// `--dir`, else the config's `models_dir` (which has the documented defaults).
fn models_dir(args: &ModelsArgs) -> Result<PathBuf, String> {
    if let Some(d) = &args.dir {
        return Ok(std::path::absolute(d).unwrap_or_else(|_| d.clone()));
    }
    match config::locate(args.config.config.as_deref()) {
        Some(file) => config::load_with_text(Some(&file))
            .map(|(c, _)| c.models_dir)
            .map_err(|e| e.to_string()),
        None => Ok(super::default_dir(
            config::SystemdDirs::from_env().state.as_deref(),
        )),
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// `-`, `verified (SHA-256)`, `verified (rembg MD5)`, `MISMATCH`, `unreadable`.
fn state(path: &Path, judge: impl Fn(&verify::Digests) -> Verdict) -> (String, Option<Verdict>) {
    if !path.is_file() {
        return ("-".into(), None);
    }
    match verify::digests(path) {
        Ok(d) => {
            let v = judge(&d);
            let s = match &v {
                Verdict::Sha256(_) => "verified (SHA-256)",
                Verdict::RembgMd5(_) => "verified (rembg MD5)",
                Verdict::Mismatch { .. } => "MISMATCH",
                Verdict::NoDigest { .. } => "installed, no digest",
            };
            (s.into(), Some(v))
        }
        Err(e) => (format!("unreadable ({e})"), None),
    }
}

fn sources(m: &ModelEntry) -> String {
    if m.sources.is_empty() {
        return "none known (bring the file)".into();
    }
    m.sources
        .iter()
        .map(|s| s.describe())
        .collect::<Vec<_>>()
        .join(", then ")
}

fn list(dir: &Path) -> i32 {
    println!("models folder: {}", dir.display());
    println!(
        "{:<22} {:>10}  {:<30} {:<22} SOURCES",
        "NAME", "SIZE", "LICENCE", "INSTALLED"
    );
    for m in MODELS {
        let (st, _) = state(&dir.join(m.file_name()), |d| verify::judge_model(m, d));
        let size = if m.sha256.is_empty() {
            format!("~{}", mb(m.size))
        } else {
            mb(m.size)
        };
        println!(
            "{:<22} {:>10}  {:<30} {:<22} {}",
            m.name(),
            size,
            m.licence,
            st,
            sources(m)
        );
    }
    let r = catalogue::runtime();
    let (st, _) = state(&dir.join(r.file), |d| verify::judge_runtime(&r, d));
    println!(
        "{:<22} {:>10}  {:<30} {:<22} {}",
        format!("{RUNTIME_NAME} {}", r.version),
        mb(r.size),
        r.licence,
        st,
        r.source.describe()
    );
    println!(
        "engine = \"auto\" uses the first installed of: {} (with the runtime); get one with `{}`",
        catalogue::AUTO_ORDER.map(|k| k.name()).join(", "),
        super::FETCH_HINT
    );
    OK
}

fn verify_all(dir: &Path) -> i32 {
    println!("models folder: {}", dir.display());
    let mut seen = 0;
    let mut bad = 0;
    let mut report = |name: &str, path: PathBuf, judge: &dyn Fn(&verify::Digests) -> Verdict| {
        if !path.is_file() {
            return;
        }
        seen += 1;
        match verify::digests(&path) {
            Ok(d) => {
                let v = judge(&d);
                if !v.ok() {
                    bad += 1;
                }
                println!("{name}: {} ({})", v.describe(), path.display());
            }
            Err(e) => {
                bad += 1;
                println!("{name}: cannot read {}: {e}", path.display());
            }
        }
    };
    for m in MODELS {
        report(m.name(), dir.join(m.file_name()), &|d| {
            verify::judge_model(m, d)
        });
    }
    let r = catalogue::runtime();
    report(RUNTIME_NAME, dir.join(r.file), &|d| {
        verify::judge_runtime(&r, d)
    });
    if seen == 0 {
        println!("nothing installed; `{}` gets a model", super::FETCH_HINT);
    }
    if bad > 0 {
        println!("{bad} file(s) failed: fetch them again (`cutout models fetch NAME`)");
        FAILED
    } else {
        OK
    }
}

/// A name the user typed: a model or the runtime.
enum Wanted {
    Model(&'static ModelEntry),
    Runtime,
}

fn parse_names(names: &[String]) -> Result<Vec<Wanted>, String> {
    names
        .iter()
        .map(|n| {
            if n.eq_ignore_ascii_case(RUNTIME_NAME) {
                Ok(Wanted::Runtime)
            } else {
                catalogue::find(n).map(Wanted::Model).ok_or_else(|| {
                    format!(
                        "unknown model `{n}` (known: {}, {RUNTIME_NAME})",
                        MODELS
                            .iter()
                            .map(|m| m.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            }
        })
        .collect()
}

fn fetch_all(
    dir: &Path,
    names: &[String],
    from: Option<&Path>,
    no_runtime: bool,
    (fp32, fp16): (bool, bool),
) -> i32 {
    let wanted = match parse_names(names) {
        Ok(w) => w,
        Err(m) => {
            eprintln!("error: {m}");
            return USAGE;
        }
    };
    if from.is_some() && wanted.len() != 1 {
        eprintln!("error: --from installs one file: name exactly one model (or onnxruntime)");
        return USAGE;
    }
    let runtime = catalogue::runtime();
    let mut targets: Vec<Target<'_>> = wanted
        .iter()
        .map(|w| match w {
            Wanted::Model(m) => Target::model(m),
            Wanted::Runtime => Target::runtime(&runtime),
        })
        .collect();
    let has_runtime = wanted.iter().any(|w| matches!(w, Wanted::Runtime));
    if !no_runtime && !has_runtime && from.is_none() {
        targets.push(Target::runtime(&runtime));
    }
    if fp32 && !wanted.iter().any(|w| matches!(w, Wanted::Model(_))) {
        eprintln!("error: --fp32 converts a model: name one (e.g. isnet-general-use)");
        return USAGE;
    }
    let mut code = OK;
    for t in &targets {
        let got = fetch_one(dir, t, from);
        code = code.max(got);
        let convert_it = fp32 || (t.fp32_copy && !fp16);
        if convert_it && got == OK && t.name != RUNTIME_NAME {
            code = code.max(convert(dir, t));
        }
    }
    code
}

/// Fetch (or install `from`) one target unless a good copy is installed.
fn fetch_one(dir: &Path, t: &Target<'_>, from: Option<&Path>) -> i32 {
    let dest = dir.join(&t.file_name);
    let result = match from {
        Some(file) => fetch::install_from(dir, t, file),
        None => match state(&dest, |d| (t.judge)(d)) {
            (_, Some(v)) if v.ok() => {
                println!(
                    "{}: already installed, {} ({})",
                    t.name,
                    v.describe(),
                    dest.display()
                );
                return OK;
            }
            _ => fetch::fetch(dir, t),
        },
    };
    match result {
        Ok(v) => {
            println!(
                "{}: installed {} — {}",
                t.name,
                dest.display(),
                v.describe()
            );
            OK
        }
        Err(e) => failed(&e),
    }
}

fn failed(e: &FetchError) -> i32 {
    eprintln!("error: {e}");
    match e {
        FetchError::Io(_) => IO,
        _ => FAILED,
    }
}

/// `--fp32`: the installed model's float16 graph becomes float32.
fn convert(dir: &Path, t: &Target<'_>) -> i32 {
    let dest = dir.join(&t.file_name);
    match fetch::install_fp32(dir, t) {
        Ok(Fp32::Converted(v, c)) => {
            println!(
                "{}: float32 copy installed {} ({} tensors, {} values, {} casts, {} types converted) — {}",
                t.name,
                dest.display(),
                c.tensors,
                c.values,
                c.casts,
                c.types,
                v.describe()
            );
            OK
        }
        Ok(Fp32::AlreadyFloat32) => {
            println!("{}: already float32 ({})", t.name, dest.display());
            OK
        }
        Err(e) => failed(&e),
    }
}
