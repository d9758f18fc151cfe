//! Finishing: turn one transparent cut-out into one marketplace-ready file
//! per `[[inbox.output]]` (crop, canvas, fill, margins, background, shadow,
//! mask, sRGB, encoding). Runs the same way on every engine's result.
//!
//! ```text
//!  spec (TOML table → OutputSpec) ─┐
//!  cut-out ─ frame::subject_box ─ frame::layout ─ compose (resize, sRGB,
//!            shadow, flatten / mask) ─ encode ─▶ Finished { bytes, name }
//! ```
//!
//! Owns: the pure path from pixels + checked spec to encoded bytes and the
//! output's file name. Must not: do I/O, block on anything but the CPU, or
//! be async — the pipeline calls [`finish`] through its blocking helper and
//! writes the bytes durably itself.

mod check;
pub mod compose;
mod describe;
pub mod encode;
pub mod frame;
pub mod spec;
mod syntax;

use std::path::{Path, PathBuf};

use image::RgbaImage;

pub use encode::IccOutcome;
pub use spec::{check_outputs, OutputSpec, OutputsError, RawOutput, SpecError};

/// One finished output.
#[derive(Debug, Clone)]
pub struct Finished {
    pub bytes: Vec<u8>,
    /// `png`, `webp` or `jpg`.
    pub extension: &'static str,
    pub width: u32,
    pub height: u32,
    pub icc: IccOutcome,
}

#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    #[error(transparent)]
    Frame(#[from] frame::FrameError),
    #[error(transparent)]
    Resize(#[from] compose::ResizeError),
    #[error(transparent)]
    Encode(#[from] encode::EncodeError),
}

impl FinishError {
    /// Stable kebab-case code for reason files, audit and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            FinishError::Frame(frame::FrameError::EmptySubject { .. }) => "finish-empty-subject",
            FinishError::Frame(frame::FrameError::TooLarge { .. }) => "finish-too-large",
            FinishError::Frame(frame::FrameError::NoRoom { .. }) => "finish-no-room",
            FinishError::Resize(_) => "finish-resize-failed",
            FinishError::Encode(_) => "encode-failed",
        }
    }
}

/// Finish one cut-out for one output. `icc` is the input's embedded profile
/// (the cut-out's pixels are in that space).
pub fn finish(
    cutout: &RgbaImage,
    icc: Option<&[u8]>,
    spec: &OutputSpec,
) -> Result<Finished, FinishError> {
    let subject = match spec.crop {
        spec::Crop::Subject => frame::subject_box(cutout, spec.alpha_threshold),
        spec::Crop::None => None,
    };
    let layout = frame::layout(cutout.width(), cutout.height(), subject, spec)?;
    let mut content = compose::scaled_content(cutout, &layout)?;
    let mut icc_out = icc;
    let mut converted = None;
    if let (true, Some(profile)) = (spec.to_srgb && !spec.mask, icc) {
        converted = Some(match encode::convert_to_srgb(&mut content, profile) {
            Ok(()) => IccOutcome::ConvertedToSrgb,
            Err(_) => IccOutcome::Unusable,
        });
        icc_out = None;
    }
    let pixels = if spec.mask {
        icc_out = None;
        encode::Pixels::Gray(compose::mask(&content, &layout))
    } else {
        let shadow = spec.shadow == spec::Shadow::Soft;
        let image = compose::compose(&content, &layout, spec.background, shadow);
        let opaque = spec.background.is_some_and(|c| c[3] == 255);
        encode::Pixels::Rgba { image, opaque }
    };
    let (width, height) = pixels.dimensions();
    let (bytes, outcome) = encode::encode(&pixels, spec.format, spec.quality, icc_out)?;
    Ok(Finished {
        bytes,
        extension: spec.format.extension(),
        width,
        height,
        icc: converted.unwrap_or(if spec.mask { IccOutcome::None } else { outcome }),
    })
}

impl OutputSpec {
    /// `<stem><suffix>.<ext>`.
    pub fn file_name(&self, stem: &str) -> String {
        format!("{stem}{}.{}", self.suffix, self.format.extension())
    }

    /// Where the output of the input at `rel` (relative to its inbox) goes,
    /// relative to the outbox: `[folder/]<rel dir>/<stem><suffix>.<ext>`.
    pub fn relative_path(&self, rel: &Path) -> PathBuf {
        let stem = rel
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "cutout".into());
        let mut out = PathBuf::new();
        if let Some(folder) = &self.folder {
            out.push(folder);
        }
        if let Some(dir) = rel.parent() {
            out.push(dir);
        }
        out.push(self.file_name(&stem));
        out
    }
}

#[cfg(test)]
mod tests;
