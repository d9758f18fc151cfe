//! Validate: decide from the bytes (never the file name) whether a file is a
//! picture cutout accepts, enforce the size and pixel caps from the header
//! before anything big is decoded, and reject truncated or corrupt files.
//!
//! Owns: type sniffing, header probing, the rejection table with its stable
//! codes, and decoding with EXIF orientation applied.
//!
//! Must not: touch the filesystem (it gets bytes) or panic on any input.

use std::io::Cursor;
use std::sync::Arc;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use crate::config::Limits;
use crate::job::Code;

/// The accepted input types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Jpeg,
    Png,
    Webp,
}

impl ImageKind {
    pub fn name(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "jpeg",
            ImageKind::Png => "png",
            ImageKind::Webp => "webp",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "image/jpeg",
            ImageKind::Png => "image/png",
            ImageKind::Webp => "image/webp",
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            ImageKind::Jpeg => ImageFormat::Jpeg,
            ImageKind::Png => ImageFormat::Png,
            ImageKind::Webp => ImageFormat::WebP,
        }
    }
}

/// Why a file is not accepted. Each has a stable kebab-case code.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Rejection {
    #[error("the file is empty (0 bytes)")]
    Empty,
    #[error("the file is {size} bytes, over the limit of {max} bytes (limits.max_file_size)")]
    TooLarge { size: u64, max: u64 },
    #[error("the file is not a regular file ({what}); only plain files are processed")]
    NotRegular { what: String },
    #[error("the file is {what}, not a JPEG, PNG or WebP picture")]
    Unsupported { what: String },
    #[error(
        "the file does not look like a picture at all (its first bytes match no image format)"
    )]
    NotAnImage,
    #[error("the picture is {width}x{height}, wider than limits.max_width = {max}")]
    TooWide { width: u32, height: u32, max: u32 },
    #[error("the picture is {width}x{height}, taller than limits.max_height = {max}")]
    TooTall { width: u32, height: u32, max: u32 },
    #[error("the picture has {pixels} pixels ({width}x{height}), over limits.max_pixels = {max}")]
    TooManyPixels {
        width: u32,
        height: u32,
        pixels: u64,
        max: u64,
    },
    #[error("the {kind} file is truncated: {detail}")]
    Truncated { kind: &'static str, detail: String },
    #[error("the {kind} file is corrupt: {detail}")]
    Corrupt { kind: &'static str, detail: String },
    #[error("animated WebP is not supported; export a single frame")]
    Animated,
}

impl Rejection {
    pub fn code(&self) -> Code {
        match self {
            Rejection::Empty => Code::EmptyFile,
            Rejection::TooLarge { .. } => Code::FileTooLarge,
            Rejection::NotRegular { .. } => Code::NotARegularFile,
            Rejection::Unsupported { .. } => Code::UnsupportedFormat,
            Rejection::NotAnImage => Code::NotAnImage,
            Rejection::TooWide { .. } => Code::ImageTooWide,
            Rejection::TooTall { .. } => Code::ImageTooTall,
            Rejection::TooManyPixels { .. } => Code::TooManyPixels,
            Rejection::Truncated { .. } => Code::TruncatedImage,
            Rejection::Corrupt { .. } => Code::CorruptImage,
            Rejection::Animated => Code::AnimatedImage,
        }
    }

    /// A short hint on what the user can do.
    pub fn hint(&self) -> &'static str {
        match self {
            Rejection::Empty | Rejection::Truncated { .. } => {
                "the upload was probably interrupted; upload the file again"
            }
            Rejection::TooLarge { .. }
            | Rejection::TooWide { .. }
            | Rejection::TooTall { .. }
            | Rejection::TooManyPixels { .. } => {
                "scale the picture down, or raise the limit in the [limits] section of the config"
            }
            Rejection::Unsupported { .. } | Rejection::NotAnImage | Rejection::Animated => {
                "convert it to JPEG, PNG or WebP and drop it again"
            }
            Rejection::Corrupt { .. } => "re-export the picture from its source and drop it again",
            Rejection::NotRegular { .. } => "copy the real file into the inbox instead",
        }
    }
}

/// The decoded picture: 8-bit RGBA with EXIF orientation applied.
#[derive(Debug)]
pub struct Decoded {
    pub rgba: image::RgbaImage,
    pub icc: Option<Vec<u8>>,
}

/// A picture that passed validation.
#[derive(Debug)]
pub struct Validated {
    pub bytes: bytes::Bytes,
    pub kind: ImageKind,
    /// Stored (header) dimensions.
    pub width: u32,
    pub height: u32,
    /// Present when decoding was asked for.
    pub decoded: Option<Arc<Decoded>>,
}

/// Sniff the type from magic bytes.
pub fn sniff(bytes: &[u8]) -> Result<ImageKind, Rejection> {
    if bytes.is_empty() {
        return Err(Rejection::Empty);
    }
    let starts = |m: &[u8]| bytes.starts_with(m);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Ok(ImageKind::Jpeg);
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Ok(ImageKind::Png);
    }
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok(ImageKind::Webp);
    }
    let what = if starts(b"GIF87a") || starts(b"GIF89a") {
        "a GIF"
    } else if starts(b"BM") && bytes.len() > 14 {
        "a BMP"
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        "a TIFF"
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        match &bytes[8..12] {
            b"heic" | b"heix" | b"hevc" | b"mif1" | b"msf1" => "a HEIC/HEIF",
            b"avif" | b"avis" => "an AVIF",
            _ => "an ISO media (MP4/MOV) file",
        }
    } else if starts(b"%PDF") {
        "a PDF"
    } else if starts(b"\0\0\x01\0") {
        "an ICO"
    } else if starts(b"8BPS") {
        "a Photoshop PSD"
    } else if starts(b"PK\x03\x04") {
        "a ZIP archive"
    } else if starts(b"\xff\x0a") || starts(b"\0\0\0\x0cJXL ") {
        "a JPEG XL"
    } else {
        return Err(Rejection::NotAnImage);
    };
    Err(Rejection::Unsupported { what: what.into() })
}

fn image_limits(l: &Limits) -> image::Limits {
    let mut lim = image::Limits::default();
    lim.max_image_width = Some(l.max_width);
    lim.max_image_height = Some(l.max_height);
    // Room for the decoded picture (16-bit RGBA at most) plus working space.
    lim.max_alloc = Some(l.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    lim
}

/// Check the header against the caps. Cheap: decodes nothing but the header.
pub fn probe(bytes: &[u8], limits: &Limits) -> Result<(ImageKind, u32, u32), Rejection> {
    let kind = sniff(bytes)?;
    if kind == ImageKind::Webp && webp_is_animated(bytes) {
        return Err(Rejection::Animated);
    }
    let reader = ImageReader::with_format(Cursor::new(bytes), kind.image_format());
    let (width, height) = reader.into_dimensions().map_err(|e| classify(kind, &e))?;
    check_caps(width, height, limits)?;
    Ok((kind, width, height))
}

fn check_caps(width: u32, height: u32, limits: &Limits) -> Result<(), Rejection> {
    if width > limits.max_width {
        return Err(Rejection::TooWide {
            width,
            height,
            max: limits.max_width,
        });
    }
    if height > limits.max_height {
        return Err(Rejection::TooTall {
            width,
            height,
            max: limits.max_height,
        });
    }
    let pixels = width as u64 * height as u64;
    if pixels > limits.max_pixels {
        return Err(Rejection::TooManyPixels {
            width,
            height,
            pixels,
            max: limits.max_pixels,
        });
    }
    if width == 0 || height == 0 {
        return Err(Rejection::Corrupt {
            kind: "image",
            detail: format!("the header says {width}x{height}"),
        });
    }
    Ok(())
}

/// Full validation: probe, then decode the whole picture (which is what
/// catches truncation and corruption). The decoded pixels are kept only when
/// `keep_pixels` is set.
pub fn validate(
    bytes: bytes::Bytes,
    limits: &Limits,
    keep_pixels: bool,
) -> Result<Validated, Rejection> {
    let (kind, width, height) = probe(&bytes, limits)?;
    if kind == ImageKind::Jpeg {
        check_jpeg_complete(&bytes)?;
    }
    let decoded = decode(&bytes, kind, limits)?;
    Ok(Validated {
        bytes,
        kind,
        width,
        height,
        decoded: keep_pixels.then(|| Arc::new(decoded)),
    })
}

/// Decode with limits, apply EXIF orientation, convert to 8-bit RGBA.
pub fn decode(bytes: &[u8], kind: ImageKind, limits: &Limits) -> Result<Decoded, Rejection> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), kind.image_format());
    reader.limits(image_limits(limits));
    let mut decoder = reader.into_decoder().map_err(|e| classify(kind, &e))?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let icc = decoder.icc_profile().ok().flatten();
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| classify(kind, &e))?;
    img.apply_orientation(orientation);
    Ok(Decoded {
        rgba: img.into_rgba8(),
        icc,
    })
}

/// A JPEG's entropy-coded data ends with an EOI marker after its last
/// start-of-scan; zune-jpeg pads a truncated file with grey instead of
/// failing, so check the markers ourselves. (0xFF 0xD9 / 0xFF 0xDA cannot
/// appear inside entropy-coded data, which stuffs every 0xFF.)
fn check_jpeg_complete(bytes: &[u8]) -> Result<(), Rejection> {
    let last_sos = rfind2(bytes, 0xFF, 0xDA);
    let last_eoi = rfind2(bytes, 0xFF, 0xD9);
    match (last_sos, last_eoi) {
        (None, _) => Err(Rejection::Truncated {
            kind: "jpeg",
            detail: "it has no image data (no start-of-scan marker)".into(),
        }),
        (Some(_), None) => Err(Rejection::Truncated {
            kind: "jpeg",
            detail: "the end-of-image marker is missing".into(),
        }),
        (Some(s), Some(e)) if e < s => Err(Rejection::Truncated {
            kind: "jpeg",
            detail: "the last scan has no end-of-image marker".into(),
        }),
        _ => Ok(()),
    }
}

fn rfind2(b: &[u8], x: u8, y: u8) -> Option<usize> {
    b.windows(2).rposition(|w| w[0] == x && w[1] == y)
}

/// VP8X header with the animation flag set.
fn webp_is_animated(bytes: &[u8]) -> bool {
    bytes.len() >= 21 && &bytes[12..16] == b"VP8X" && bytes[20] & 0x02 != 0
}

fn classify(kind: ImageKind, e: &image::ImageError) -> Rejection {
    use image::ImageError as E;
    let k = kind.name();
    match e {
        E::Limits(l) => Rejection::Corrupt {
            kind: k,
            detail: format!("decoding would exceed the memory limit ({l})"),
        },
        E::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => Rejection::Truncated {
            kind: k,
            detail: "the data ends early".into(),
        },
        other => {
            let msg = other.to_string();
            let lower = msg.to_ascii_lowercase();
            if lower.contains("eof")
                || lower.contains("end of")
                || lower.contains("truncat")
                || lower.contains("unexpected end")
                || lower.contains("not enough")
                || lower.contains("incomplete")
            {
                Rejection::Truncated {
                    kind: k,
                    detail: msg,
                }
            } else {
                Rejection::Corrupt {
                    kind: k,
                    detail: msg,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_file_size: 10 << 20,
            max_width: 10_000,
            max_height: 10_000,
            max_pixels: 50_000_000,
        }
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([200, 10, 10]));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .expect("encode");
        out
    }

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
        });
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Jpeg)
            .expect("encode");
        out
    }

    #[test]
    fn the_rejection_table() {
        let l = limits();
        let good_png = png(40, 30);
        let good_jpeg = jpeg(64, 48);
        // PNG header claiming 100000x100000: patch IHDR width/height.
        let mut bomb = good_png.clone();
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32fast::hash(&bomb[12..29]); // keep the IHDR checksum valid
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("zero bytes", vec![], "empty-file"),
            (
                "text named .jpg",
                b"hello, this is not a picture\n".to_vec(),
                "not-an-image",
            ),
            (
                "gif",
                b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
                "unsupported-format",
            ),
            (
                "truncated jpeg",
                good_jpeg[..good_jpeg.len() / 2].to_vec(),
                "truncated-image",
            ),
            (
                "truncated png",
                good_png[..good_png.len() - 20].to_vec(),
                "truncated-image",
            ),
            ("png bomb header", bomb, "image-too-wide"),
        ];
        for (what, bytes, code) in cases {
            let r = validate(bytes.into(), &l, false).expect_err(what);
            assert_eq!(r.code().as_str(), code, "{what}: {r}");
        }
        let v = validate(good_jpeg.into(), &l, true).expect("good jpeg");
        assert_eq!((v.kind, v.width, v.height), (ImageKind::Jpeg, 64, 48));
        assert!(v.decoded.is_some());
    }

    #[test]
    fn pixel_cap_applies_before_decoding() {
        let mut l = limits();
        l.max_pixels = 1000;
        let r = validate(png(40, 30).into(), &l, false).expect_err("over cap");
        assert_eq!(r.code(), Code::TooManyPixels);
    }
}
