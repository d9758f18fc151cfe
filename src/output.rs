//! Output: turn a provider's cut-out into the file the inbox asked for, and
//! put every input in its one final place.
//!
//! Owns: encoding (RGBA PNG with the ICC profile, WebP lossy with alpha or
//! lossless at quality 100), the naming rules for outputs and moved inputs,
//! and `<file name>.reason.json` files. All writes go through `fsutil`
//! (temp file in the target folder → fsync → rename). Moving or deleting
//! the input (archive / delete / keep) is the pipeline's finish stage.
//!
//! Naming rule (never overwrite another input's result): the cut-out of
//! `inbox/a/b/shoe.jpg` is `outbox/a/b/shoe.png`; when that name is already
//! taken on disk or reserved by another unfinished job (e.g. `shoe.jpg` and
//! `shoe.webp` side by side, or a new `shoe.jpg` dropped after the first was
//! archived), the next free name `shoe-2.png`, `shoe-3.png`, … is used. The
//! same rule applies to archive/, rejected/ and failed/.
//!
//! Must not: talk to providers, decide outcomes, move inputs, or write the
//! audit log.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use serde::Serialize;

use crate::config::{Inbox, OutputFormat};
use crate::fsutil::{self, FsError};
use crate::job::Code;
use crate::provider::Cutout;
use crate::validate::ImageKind;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot encode the cut-out as {format}: {detail}")]
    Encode {
        format: &'static str,
        detail: String,
    },
    #[error("the provider's result is not a usable picture: {detail}")]
    BadResult { detail: String },
    #[error(transparent)]
    Fs(#[from] FsError),
}

impl OutputError {
    pub fn code(&self) -> Code {
        match self {
            OutputError::Encode { .. } => Code::EncodeFailed,
            OutputError::BadResult { .. } => Code::ProviderBadResult,
            OutputError::Fs(e) => e.code(),
        }
    }
}

/// `outbox/<rel dir>/<stem>.<ext>` for an input at `rel` in its inbox.
/// With `[[inbox.output]]` tables: the first output's name, which is the
/// one reserved in the state database (see `pipeline::outputs`).
pub fn output_base(inbox: &Inbox, rel: &Path) -> PathBuf {
    if let Some(first) = inbox.outputs.first() {
        return inbox.outbox.join(first.relative_path(rel));
    }
    let stem = rel
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cutout".into());
    let dir = rel.parent().unwrap_or(Path::new(""));
    inbox
        .outbox
        .join(dir)
        .join(format!("{stem}.{}", inbox.output_format.extension()))
}

/// Encode a cut-out into the inbox's format. Encoded results already in that
/// format are returned untouched.
pub fn encode(
    cutout: Cutout,
    format: OutputFormat,
    webp_quality: u8,
) -> Result<Bytes, OutputError> {
    match cutout {
        Cutout::Encoded {
            bytes,
            format: kind,
        } => {
            let same = matches!(
                (kind, format),
                (ImageKind::Png, OutputFormat::Png) | (ImageKind::Webp, OutputFormat::Webp)
            );
            if same {
                return Ok(bytes);
            }
            let img = image::load_from_memory(&bytes).map_err(|e| OutputError::BadResult {
                detail: e.to_string(),
            })?;
            encode_rgba(&img.into_rgba8(), None, format, webp_quality)
        }
        Cutout::Pixels { image, icc } => encode_rgba(&image, icc, format, webp_quality),
    }
}

/// Encode RGBA pixels.
pub fn encode_rgba(
    img: &image::RgbaImage,
    icc: Option<Vec<u8>>,
    format: OutputFormat,
    webp_quality: u8,
) -> Result<Bytes, OutputError> {
    let (w, h) = img.dimensions();
    match format {
        OutputFormat::Png => {
            let mut out = Vec::new();
            let mut enc = PngEncoder::new_with_quality(
                Cursor::new(&mut out),
                CompressionType::Fast,
                FilterType::Adaptive,
            );
            if let Some(icc) = icc {
                // An ICC profile the encoder refuses is dropped, not fatal.
                let _ = enc.set_icc_profile(icc);
            }
            enc.write_image(img.as_raw(), w, h, ExtendedColorType::Rgba8)
                .map_err(|e| OutputError::Encode {
                    format: "png",
                    detail: e.to_string(),
                })?;
            Ok(out.into())
        }
        OutputFormat::Webp if webp_quality >= 100 => {
            let mut out = Vec::new();
            image::codecs::webp::WebPEncoder::new_lossless(Cursor::new(&mut out))
                .write_image(img.as_raw(), w, h, ExtendedColorType::Rgba8)
                .map_err(|e| OutputError::Encode {
                    format: "webp",
                    detail: e.to_string(),
                })?;
            Ok(out.into())
        }
        OutputFormat::Webp => {
            if w > 16383 || h > 16383 {
                return Err(OutputError::Encode {
                    format: "webp",
                    detail: format!("{w}x{h} is larger than WebP allows (16383x16383); use output_format = \"png\""),
                });
            }
            let enc = webp::Encoder::from_rgba(img.as_raw(), w, h);
            let mem =
                enc.encode_simple(false, webp_quality as f32)
                    .map_err(|e| OutputError::Encode {
                        format: "webp",
                        detail: format!("{e:?}"),
                    })?;
            Ok(Bytes::copy_from_slice(&mem))
        }
    }
}

/// Write the output durably at its reserved name (never replacing a file).
/// Returns false when the file is already there (a crash after the rename).
pub fn write_output(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    fsutil::write_atomic(path, bytes, false)?;
    Ok(())
}

/// Contents of `<file name>.reason.json`.
#[derive(Debug, Serialize)]
pub struct ReasonFile<'a> {
    pub file: &'a str,
    pub outcome: &'a str,
    pub code: Code,
    pub reason: &'a str,
    pub hint: &'a str,
    pub ts: &'a str,
    pub sha256: Option<&'a str>,
    pub attempts: u32,
    pub provider: Option<&'a str>,
}

/// The reason file's path for an input moved to `moved`.
pub fn reason_path(moved: &Path) -> PathBuf {
    let mut name = moved
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".reason.json");
    moved.with_file_name(name)
}

pub fn write_reason(moved: &Path, reason: &ReasonFile<'_>) -> Result<(), OutputError> {
    let mut text = serde_json::to_string_pretty(reason).map_err(|e| OutputError::Encode {
        format: "json",
        detail: e.to_string(),
    })?;
    text.push('\n');
    fsutil::write_atomic(&reason_path(moved), text.as_bytes(), true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webp_lossy_keeps_alpha() {
        let img = image::RgbaImage::from_fn(64, 64, |x, _| {
            image::Rgba([200, 30, 30, if x < 32 { 0 } else { 255 }])
        });
        let b = encode_rgba(&img, None, OutputFormat::Webp, 80).expect("encode");
        let back = image::load_from_memory(&b).expect("decode").into_rgba8();
        assert_eq!(back.get_pixel(2, 2)[3], 0);
        assert_eq!(back.get_pixel(60, 2)[3], 255);
        let b = encode_rgba(&img, None, OutputFormat::Webp, 100).expect("lossless");
        let back = image::load_from_memory(&b).expect("decode").into_rgba8();
        assert_eq!(back, img);
    }

    #[test]
    fn reason_file_sits_beside_the_input() {
        assert_eq!(
            reason_path(Path::new("/r/a b/shoe.jpg")),
            Path::new("/r/a b/shoe.jpg.reason.json")
        );
    }
}
