//! Outputs: write every `[[inbox.output]]` file of one input as one unit.
//!
//! Naming: the state database reserves the FIRST output's name (the claim's
//! `output` column, numbered `shoe.jpg`, `shoe-2.jpg`, … by the usual rule);
//! every other output uses the same number on its own name
//! (`shoe-thumb-2.jpg`), so one input's outputs always belong together. A
//! number is taken only when EVERY output name it gives is free on disk and
//! not among the names of another unfinished job ([`all_names`]): cutout
//! never overwrites a file it did not write.
//!
//! Crash safety: the other outputs are written first (temp → fsync →
//! rename, replacing a leftover of this same job), the first output last
//! and never replacing. The first output on disk therefore means all
//! outputs are durable — the engine stage's "already written" check and
//! recovery rely on that; the decision is committed only after this
//! returns.
//!
//! Must not: call a provider, commit decisions, or run on the executor
//! (everything here is blocking; callers go through `ctx::blocking`;
//! `print_plan` is one small write to stdout).

use std::path::{Path, PathBuf};

use image::RgbaImage;

use crate::config::Inbox;
use crate::finish::{self, OutputSpec};
use crate::fsutil;
use crate::job::{Code, Reason};
use crate::output::OutputError;
use crate::provider::Cutout;

/// Why the outputs could not be made.
#[derive(Debug, thiserror::Error)]
pub enum OutputsError {
    /// The cut-out cannot be decoded, or finishing refused it: the file fails.
    #[error("output #{index}: {message}")]
    Picture { index: usize, message: String },
    /// The folder cannot take it now: the input stays and is tried later.
    #[error(transparent)]
    Write(#[from] OutputError),
}

impl OutputsError {
    pub fn code(&self) -> Code {
        match self {
            OutputsError::Picture { .. } => Code::EncodeFailed,
            OutputsError::Write(e) => e.code(),
        }
    }
}

/// Every output path of an input at `rel`, in config order, given the name
/// reserved for the first one.
pub fn paths(inbox: &Inbox, rel: &Path, first: &Path) -> Vec<PathBuf> {
    let Some(spec0) = inbox.outputs.first() else {
        return vec![first.to_path_buf()];
    };
    let base0 = inbox.outbox.join(spec0.relative_path(rel));
    let Some(n) = number_of(&base0, first) else {
        return vec![first.to_path_buf()];
    };
    let mut out = vec![first.to_path_buf()];
    for spec in &inbox.outputs[1..] {
        out.push(fsutil::numbered(
            &inbox.outbox.join(spec.relative_path(rel)),
            n,
        ));
    }
    out
}

/// The `n` with `fsutil::numbered(base, n) == name`, if there is one.
fn number_of(base: &Path, name: &Path) -> Option<u32> {
    if name == base {
        return Some(1);
    }
    let stem = base.file_stem()?.to_str()?;
    let file = name.file_name()?.to_str()?;
    let rest = file.strip_prefix(stem)?.strip_prefix('-')?;
    let digits = match base.extension() {
        Some(ext) => rest.strip_suffix(ext.to_str()?)?.strip_suffix('.')?,
        None => rest,
    };
    let n: u32 = digits.parse().ok()?;
    (n >= 2 && fsutil::numbered(base, n) == name).then_some(n)
}

/// How the state database reserves the outputs of an input of `cfg`'s
/// inboxes: every output name of a candidate must be free (see
/// `store::AllNames`).
pub fn all_names(cfg: std::sync::Arc<crate::config::Config>) -> crate::store::AllNames {
    std::sync::Arc::new(move |inbox: &str, rel: &Path, first: &Path| {
        match cfg.inboxes.iter().find(|i| i.name == inbox) {
            Some(i) => paths(i, rel, first),
            None => vec![first.to_path_buf()],
        }
    })
}

/// `--dry-run`: the plan the user asked for, one line per input on stdout
/// (`<input> -> <output>, <output>…`); diagnostics stay on stderr.
pub fn print_plan(input: &Path, planned: &[PathBuf]) {
    use std::io::Write;
    let list: Vec<String> = planned.iter().map(|p| p.display().to_string()).collect();
    let line = format!("{} -> {}\n", input.display(), list.join(", "));
    // one write per line: workers print side by side without mixing lines
    if let Err(e) = std::io::stdout().lock().write_all(line.as_bytes()) {
        tracing::warn!("cannot print the dry-run plan: {e}");
    }
}

/// The cut-out as 8-bit RGBA (EXIF orientation applied) and its ICC
/// profile (`fallback`: the input's, for results that carry none).
pub fn cutout_pixels(
    cutout: Cutout,
    fallback: Option<Vec<u8>>,
) -> Result<(RgbaImage, Option<Vec<u8>>), String> {
    match cutout {
        Cutout::Pixels { image, icc } => Ok((image, icc.or(fallback))),
        Cutout::Encoded { bytes, .. } => decode(&bytes, fallback),
    }
}

/// The ICC profile embedded in an encoded input (headers only, no decode).
pub fn input_icc(bytes: &[u8]) -> Option<Vec<u8>> {
    use image::ImageDecoder;
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()?;
    let mut decoder = reader.into_decoder().ok()?;
    decoder.icc_profile().ok().flatten()
}

/// Decode an encoded picture with its orientation applied.
pub fn decode(
    bytes: &[u8],
    fallback: Option<Vec<u8>>,
) -> Result<(RgbaImage, Option<Vec<u8>>), String> {
    use image::ImageDecoder;
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    let icc = decoder.icc_profile().ok().flatten().or(fallback);
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = image::DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
    img.apply_orientation(orientation);
    Ok((img.into_rgba8(), icc))
}

/// Finish and write every output. Returns the paths written, in config
/// order. The first output is written last (see the module doc).
pub fn write_all(
    specs: &[OutputSpec],
    paths: &[PathBuf],
    cutout: &RgbaImage,
    icc: Option<&[u8]>,
) -> Result<(), OutputsError> {
    let order = (1..specs.len()).chain(std::iter::once(0));
    for i in order {
        let (spec, path) = (&specs[i], &paths[i]);
        let done = finish::finish(cutout, icc, spec).map_err(|e| OutputsError::Picture {
            index: i + 1,
            message: format!("{} ({})", e, e.code()),
        })?;
        match fsutil::write_atomic(path, &done.bytes, i != 0) {
            Ok(()) => {}
            Err(e) if i == 0 && e.source.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(OutputsError::Write(e.into())),
        }
        crate::metrics::global().record_output(spec.format.name());
    }
    Ok(())
}

/// Copy the earlier job's outputs byte for byte (same specs, so the same
/// pictures), first output last.
pub fn copy_all(from: &[PathBuf], to: &[PathBuf]) -> Result<(), Reason> {
    let order = (1..to.len()).chain(std::iter::once(0));
    for i in order {
        let (src, dst) = (&from[i], &to[i]);
        if src == dst {
            continue;
        }
        let bytes = std::fs::read(src).map_err(|e| {
            let why = format!("cannot read earlier output {}: {e}", src.display());
            Reason::new(fsutil::io_code(&e), why)
        })?;
        match fsutil::write_atomic(dst, &bytes, i != 0) {
            Ok(()) => {}
            Err(e) if i == 0 && e.source.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Reason::new(e.code(), e)),
        }
    }
    Ok(())
}
