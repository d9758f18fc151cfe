//! Encoding a finished picture, and the one colour conversion it may need.
//!
//! Owns: PNG (fast deflate, ICC kept), WebP (lossless at quality 100 with the
//! ICC kept; lossy through libwebp otherwise, which keeps no profile), JPEG
//! (4:4:4 so that flat colours stay exact, the ICC profile and nothing else:
//! no EXIF, no XMP, no comments), and the conversion to sRGB for
//! marketplace outputs whose input carries another ICC profile.
//!
//! Must not: change geometry, or write files.

use std::io::Cursor;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, GrayImage, ImageEncoder, RgbaImage};

use super::spec::Format;

/// Pixels ready to encode.
#[derive(Debug, Clone)]
pub enum Pixels {
    /// RGBA; `opaque` = every alpha is 255 (written without alpha).
    Rgba { image: RgbaImage, opaque: bool },
    /// A grey picture (masks).
    Gray(GrayImage),
}

impl Pixels {
    pub fn dimensions(&self) -> (u32, u32) {
        match self {
            Pixels::Rgba { image, .. } => image.dimensions(),
            Pixels::Gray(g) => g.dimensions(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot encode the finished picture as {format}: {detail}")]
pub struct EncodeError {
    pub format: &'static str,
    pub detail: String,
}

fn err(format: Format, detail: impl ToString) -> EncodeError {
    EncodeError {
        format: format.name(),
        detail: detail.to_string(),
    }
}

/// What happened to the input's ICC profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IccOutcome {
    /// The input had none; the output has none (sRGB by convention).
    None,
    /// Embedded in the output unchanged.
    Kept,
    /// Pixels converted to sRGB; the output carries no profile.
    ConvertedToSrgb,
    /// The profile could not be used (unreadable, or not an RGB profile):
    /// pixels taken as sRGB, profile dropped.
    Unusable,
    /// The format keeps no profile (lossy WebP): dropped.
    Dropped,
}

/// Convert RGBA pixels described by `icc` to sRGB (alpha untouched).
pub fn convert_to_srgb(img: &mut RgbaImage, icc: &[u8]) -> Result<(), String> {
    use moxcms::{ColorProfile, DataColorSpace, Layout, TransformOptions};
    let src = ColorProfile::new_from_slice(icc).map_err(|e| e.to_string())?;
    if src.color_space != DataColorSpace::Rgb {
        return Err(format!("a {:?} profile on RGB pixels", src.color_space));
    }
    let transform = src
        .create_transform_8bit(
            Layout::Rgba,
            &ColorProfile::new_srgb(),
            Layout::Rgba,
            TransformOptions::default(),
        )
        .map_err(|e| e.to_string())?;
    let mut out = vec![0u8; img.as_raw().len()];
    transform
        .transform(img.as_raw(), &mut out)
        .map_err(|e| e.to_string())?;
    img.copy_from_slice(&out);
    Ok(())
}

/// Encode `px` as `format`; `icc` is embedded where the format can carry it.
/// Returns the bytes and what became of the profile.
pub fn encode(
    px: &Pixels,
    format: Format,
    quality: u8,
    icc: Option<&[u8]>,
) -> Result<(Vec<u8>, IccOutcome), EncodeError> {
    let (w, h) = px.dimensions();
    let kept = if icc.is_some() {
        IccOutcome::Kept
    } else {
        IccOutcome::None
    };
    match format {
        Format::Png => {
            let mut out = Vec::new();
            let mut enc = PngEncoder::new_with_quality(
                Cursor::new(&mut out),
                CompressionType::Fast,
                FilterType::Adaptive,
            );
            if let Some(icc) = icc {
                enc.set_icc_profile(icc.to_vec())
                    .map_err(|e| err(format, e))?;
            }
            let (bytes, colour) = raw(px);
            enc.write_image(&bytes, w, h, colour)
                .map_err(|e| err(format, e))?;
            Ok((out, kept))
        }
        Format::Webp if quality >= 100 => {
            let mut out = Vec::new();
            let mut enc = image::codecs::webp::WebPEncoder::new_lossless(Cursor::new(&mut out));
            if let Some(icc) = icc {
                enc.set_icc_profile(icc.to_vec())
                    .map_err(|e| err(format, e))?;
            }
            let (bytes, colour) = raw(px);
            enc.write_image(&bytes, w, h, colour)
                .map_err(|e| err(format, e))?;
            Ok((out, kept))
        }
        Format::Webp => {
            if w > 16383 || h > 16383 {
                return Err(err(
                    format,
                    format!("{w}x{h} is larger than WebP allows (16383x16383); set `max_size`"),
                ));
            }
            let rgb;
            let enc = match px {
                Pixels::Rgba {
                    image,
                    opaque: false,
                } => webp::Encoder::from_rgba(image, w, h),
                _ => {
                    rgb = to_rgb(px);
                    webp::Encoder::from_rgb(&rgb, w, h)
                }
            };
            let mem = enc
                .encode_simple(false, quality as f32)
                .map_err(|e| err(format, format!("{e:?}")))?;
            let outcome = if icc.is_some() {
                IccOutcome::Dropped
            } else {
                IccOutcome::None
            };
            Ok((mem.to_vec(), outcome))
        }
        Format::Jpeg => encode_jpeg(px, quality, icc).map(|b| (b, kept)),
    }
}

fn encode_jpeg(px: &Pixels, quality: u8, icc: Option<&[u8]>) -> Result<Vec<u8>, EncodeError> {
    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
    let (w, h) = px.dimensions();
    let (w16, h16) = match (u16::try_from(w), u16::try_from(h)) {
        (Ok(a), Ok(b)) => (a, b),
        _ => {
            return Err(err(
                Format::Jpeg,
                format!("{w}x{h} is larger than JPEG allows"),
            ))
        }
    };
    let mut out = Vec::new();
    let mut enc = Encoder::new(&mut out, quality);
    enc.set_sampling_factor(SamplingFactor::R_4_4_4);
    if let Some(icc) = icc {
        enc.add_icc_profile(icc).map_err(|e| err(Format::Jpeg, e))?;
    }
    let result = match px {
        // Alpha is ignored by the encoder; callers flatten first.
        Pixels::Rgba { image, .. } => enc.encode(image, w16, h16, ColorType::Rgba),
        Pixels::Gray(g) => enc.encode(g, w16, h16, ColorType::Luma),
    };
    result.map_err(|e| err(Format::Jpeg, e))?;
    Ok(out)
}

/// The bytes and colour type to hand to an `image` encoder.
fn raw(px: &Pixels) -> (std::borrow::Cow<'_, [u8]>, ExtendedColorType) {
    match px {
        Pixels::Rgba {
            image,
            opaque: false,
        } => (image.as_raw().into(), ExtendedColorType::Rgba8),
        Pixels::Rgba { .. } => (to_rgb(px).into(), ExtendedColorType::Rgb8),
        Pixels::Gray(g) => (g.as_raw().into(), ExtendedColorType::L8),
    }
}

fn to_rgb(px: &Pixels) -> Vec<u8> {
    match px {
        Pixels::Rgba { image, .. } => image
            .as_raw()
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        Pixels::Gray(g) => g.as_raw().iter().flat_map(|&v| [v, v, v]).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, ImageDecoder};

    fn sample() -> RgbaImage {
        RgbaImage::from_fn(64, 48, |x, y| {
            image::Rgba([
                (x * 4) as u8,
                (y * 5) as u8,
                128,
                if x < 32 { 255 } else { 100 },
            ])
        })
    }

    fn icc_of(bytes: &[u8]) -> Option<Vec<u8>> {
        let mut d = image::ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .expect("sniff")
            .into_decoder()
            .expect("decoder");
        d.icc_profile().expect("icc read")
    }

    fn decode(bytes: &[u8]) -> DynamicImage {
        image::load_from_memory(bytes).expect("decodes")
    }

    fn display_p3() -> Vec<u8> {
        moxcms::ColorProfile::new_display_p3()
            .encode()
            .expect("encode profile")
    }

    #[test]
    fn png_keeps_pixels_and_profile() {
        let img = sample();
        let icc = display_p3();
        let px = Pixels::Rgba {
            image: img.clone(),
            opaque: false,
        };
        let (bytes, outcome) = encode(&px, Format::Png, 90, Some(&icc)).expect("png");
        assert_eq!(outcome, IccOutcome::Kept);
        assert_eq!(decode(&bytes).to_rgba8(), img);
        assert_eq!(icc_of(&bytes), Some(icc));
    }

    #[test]
    fn webp_lossless_at_100_lossy_below() {
        let img = sample();
        let px = Pixels::Rgba {
            image: img.clone(),
            opaque: false,
        };
        let (lossless, _) = encode(&px, Format::Webp, 100, None).expect("webp");
        assert_eq!(decode(&lossless).to_rgba8(), img);
        let (lossy, _) = encode(&px, Format::Webp, 60, None).expect("webp");
        let back = decode(&lossy).to_rgba8();
        assert_eq!(back.dimensions(), (64, 48));
        assert_eq!(back.get_pixel(50, 10)[3], 100, "alpha kept");
    }

    #[test]
    fn jpeg_is_444_with_only_the_icc_profile() {
        let white = RgbaImage::from_pixel(64, 64, image::Rgba([255, 255, 255, 255]));
        let icc = display_p3();
        let px = Pixels::Rgba {
            image: white,
            opaque: true,
        };
        let (bytes, _) = encode(&px, Format::Jpeg, 90, Some(&icc)).expect("jpeg");
        assert_eq!(icc_of(&bytes), Some(icc));
        // Markers: SOI, APP0 (JFIF) and APP2 (ICC) only; no APP1 (EXIF/XMP), no COM.
        let mut i = 2;
        let mut markers = vec![];
        while bytes[i] == 0xFF && bytes[i + 1] != 0xDA {
            markers.push(bytes[i + 1]);
            i += 2 + u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        }
        assert!(
            !markers.contains(&0xE1) && !markers.contains(&0xFE),
            "{markers:x?}"
        );
        // SOF0: three components, each sampled 1×1 (4:4:4).
        let sof = bytes
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("sof0");
        let comps = &bytes[sof + 10..sof + 19];
        assert_eq!([comps[1], comps[4], comps[7]], [0x11, 0x11, 0x11]);
        let back = decode(&bytes).to_rgb8();
        assert!(back.pixels().all(|p| p.0 == [255, 255, 255]));
    }

    #[test]
    fn srgb_conversion_changes_wide_gamut_colours_only_where_expected() {
        let mut img = RgbaImage::from_fn(4, 1, |x, _| match x {
            0 => image::Rgba([255, 255, 255, 255]),
            1 => image::Rgba([0, 0, 0, 0]),
            2 => image::Rgba([0, 255, 0, 200]),
            _ => image::Rgba([128, 128, 128, 255]),
        });
        convert_to_srgb(&mut img, &display_p3()).expect("convert");
        assert_eq!(
            img.get_pixel(0, 0).0,
            [255, 255, 255, 255],
            "white stays white"
        );
        assert_eq!(img.get_pixel(1, 0).0[3], 0, "alpha untouched");
        let g = img.get_pixel(2, 0).0;
        assert_eq!(g[3], 200);
        assert!(
            g[0] == 0 && g[1] == 255 && g[2] == 0,
            "P3 green clips in sRGB: {g:?}"
        );
        let grey = img.get_pixel(3, 0).0;
        assert!(
            grey.iter().take(3).all(|&c| c.abs_diff(128) <= 1),
            "{grey:?}"
        );
        let err = convert_to_srgb(&mut img, b"not a profile").expect_err("garbage");
        assert!(!err.is_empty());
    }
}
