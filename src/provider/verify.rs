//! Checking what a hosted provider sent back before it is called a
//! cut-out: it must decode as a picture, and carry an alpha channel unless
//! the options asked for something else (a filled background, a mask).
//!
//! Owns: the decision "usable result or provider error", and the choice
//! between writing the provider's bytes untouched (format matches the
//! inbox's `output_format`) and handing decoded pixels on for conversion
//! (so the output stage does not decode a second time).
//!
//! Must not: touch files, or run on the async executor (callers use the
//! blocking pool: decoding is CPU work).

use std::io::Cursor;

use bytes::Bytes;
use image::{ImageDecoder, ImageReader};

use super::{Cutout, ProviderError};
use crate::config::OutputFormat;
use crate::job::Code;
use crate::validate::{self, ImageKind};

/// Decoding caps for results (a rotated 10000 px picture fits; a
/// decompression bomb does not).
const MAX_SIDE: u32 = 20_000;
const MAX_ALLOC: u64 = 2 * 1024 * 1024 * 1024;

/// What the result should look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A cut-out: transparency (an alpha channel) is required.
    Alpha,
    /// Something else was asked for (`bg_color`, `mask`): any picture.
    AnyPicture,
}

/// [`check`] on a blocking thread (it decodes the whole picture).
pub async fn check_off_thread(
    bytes: Bytes,
    expect: Expect,
    want: OutputFormat,
) -> Result<Cutout, ProviderError> {
    crate::blocking::run("check result", move || check(bytes, expect, want))
        .await
        .map_err(|e| ProviderError::Transient {
            code: Code::InternalError,
            message: format!("checking the result stopped unexpectedly: {}", e.detail),
            retry_after: None,
        })?
}

/// Check `bytes` and turn them into a [`Cutout`] for `want`.
pub fn check(bytes: Bytes, expect: Expect, want: OutputFormat) -> Result<Cutout, ProviderError> {
    let kind = validate::sniff(&bytes).map_err(|_| ProviderError::BadResult {
        message: format!(
            "the provider's answer is not a picture but {}",
            describe_non_image(&bytes)
        ),
    })?;
    let format = match kind {
        ImageKind::Jpeg => image::ImageFormat::Jpeg,
        ImageKind::Png => image::ImageFormat::Png,
        ImageKind::Webp => image::ImageFormat::WebP,
    };
    let bad = |what: String| ProviderError::BadResult { message: what };
    let mut reader = ImageReader::with_format(Cursor::new(&bytes[..]), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| {
        bad(format!(
            "the provider sent a {} picture that cannot be read: {e}",
            kind.name()
        ))
    })?;
    let has_alpha = decoder.color_type().has_alpha();
    if expect == Expect::Alpha && !has_alpha {
        return Err(bad(format!(
            "the provider sent an opaque {} picture (no alpha channel) where a cut-out with a transparent background was expected",
            kind.name()
        )));
    }
    let icc = decoder.icc_profile().ok().flatten();
    let img = image::DynamicImage::from_decoder(decoder).map_err(|e| {
        bad(format!(
            "the provider sent a {} picture that does not decode: {e}",
            kind.name()
        ))
    })?;
    if img.width() == 0 || img.height() == 0 {
        return Err(bad("the provider sent an empty picture".into()));
    }
    let same = matches!(
        (kind, want),
        (ImageKind::Png, OutputFormat::Png) | (ImageKind::Webp, OutputFormat::Webp)
    );
    if same {
        Ok(Cutout::Encoded {
            bytes,
            format: kind,
        })
    } else {
        Ok(Cutout::Pixels {
            image: img.into_rgba8(),
            icc,
        })
    }
}

/// "an HTML page", "a JSON text", "312 bytes of unknown data".
fn describe_non_image(b: &[u8]) -> String {
    let head = String::from_utf8_lossy(&b[..b.len().min(256)]).to_ascii_lowercase();
    let t = head.trim_start();
    if t.starts_with("<!doctype html") || t.starts_with("<html") {
        format!("an HTML page ({} bytes)", b.len())
    } else if t.starts_with('{') || t.starts_with('[') {
        format!("JSON text ({} bytes)", b.len())
    } else if b.is_empty() {
        "an empty body".into()
    } else {
        format!("{} bytes of unknown data", b.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(img: image::DynamicImage) -> Bytes {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .expect("encode");
        out.into()
    }

    #[test]
    fn rgba_png_is_kept_untouched_for_png_output() {
        let b = png(image::DynamicImage::ImageRgba8(image::RgbaImage::new(4, 4)));
        match check(b.clone(), Expect::Alpha, OutputFormat::Png).expect("ok") {
            Cutout::Encoded { bytes, format } => {
                assert_eq!(bytes, b);
                assert_eq!(format, ImageKind::Png);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check(b, Expect::Alpha, OutputFormat::Webp),
            Ok(Cutout::Pixels { .. })
        ));
    }

    #[test]
    fn opaque_and_garbage_are_bad_results() {
        let rgb = png(image::DynamicImage::ImageRgb8(image::RgbImage::new(4, 4)));
        let e = check(rgb.clone(), Expect::Alpha, OutputFormat::Png).unwrap_err();
        assert_eq!(e.code(), Code::ProviderBadResult);
        assert!(e.to_string().contains("no alpha"), "{e}");
        assert!(check(rgb, Expect::AnyPicture, OutputFormat::Png).is_ok());
        let e = check(
            Bytes::from_static(b"<!DOCTYPE html><html>busy</html>"),
            Expect::Alpha,
            OutputFormat::Png,
        )
        .unwrap_err();
        assert!(e.to_string().contains("HTML"), "{e}");
        let mut cut = png(image::DynamicImage::ImageRgba8(image::RgbaImage::new(
            64, 64,
        )))
        .to_vec();
        cut.truncate(cut.len() / 2);
        assert!(check(cut.into(), Expect::Alpha, OutputFormat::Png).is_err());
    }
}
