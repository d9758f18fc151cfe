//! Picture work of the fake: sniffing an upload's type, a plausible cut-out
//! (alpha 0 near the top-left corner colour, 255 elsewhere), rembg's resize /
//! rotate / mask / background-colour options, opaque re-encodes for the
//! "no alpha" fault, and colour parsing for `bg_color`.
//!
//! Pure functions; callers run them on the blocking pool.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, ImageFormat, Rgba, RgbaImage};

/// Image types the fake recognises by signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Png,
    Jpeg,
    Webp,
    Bmp,
}

impl Kind {
    pub(crate) fn ext(self) -> &'static str {
        match self {
            Kind::Png => "png",
            Kind::Jpeg => "jpg",
            Kind::Webp => "webp",
            Kind::Bmp => "bmp",
        }
    }

    pub(crate) fn mime(self) -> &'static str {
        match self {
            Kind::Png => "image/png",
            Kind::Jpeg => "image/jpeg",
            Kind::Webp => "image/webp",
            Kind::Bmp => "image/bmp",
        }
    }

    fn format(self) -> ImageFormat {
        match self {
            Kind::Png => ImageFormat::Png,
            Kind::Jpeg => ImageFormat::Jpeg,
            Kind::Webp => ImageFormat::WebP,
            Kind::Bmp => ImageFormat::Bmp,
        }
    }
}

/// The type given by the magic bytes, if it is one the fake knows.
pub(crate) fn sniff(b: &[u8]) -> Option<Kind> {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Kind::Png)
    } else if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Kind::Jpeg)
    } else if b.len() >= 12 && &b[0..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        Some(Kind::Webp)
    } else if b.len() >= 26 && b.starts_with(b"BM") {
        Some(Kind::Bmp)
    } else {
        None
    }
}

/// Width and height from the header, without decoding the pixels.
pub(crate) fn dimensions(b: &[u8], kind: Kind) -> Result<(u32, u32), String> {
    image::ImageReader::with_format(Cursor::new(b), kind.format())
        .into_dimensions()
        .map_err(|e| format!("could not read the image header: {e}"))
}

fn decode(b: &[u8], kind: Kind) -> Result<RgbaImage, String> {
    image::load_from_memory_with_format(b, kind.format())
        .map(|i| i.to_rgba8())
        .map_err(|e| format!("could not decode the image: {e}"))
}

/// Output encoding of a cut-out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutFormat {
    Webp,
    Png,
}

impl OutFormat {
    pub(crate) fn mime(self) -> &'static str {
        match self {
            OutFormat::Webp => "image/webp",
            OutFormat::Png => "image/png",
        }
    }
}

/// rembg's processing options.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub format: OutFormat,
    pub w: Option<u32>,
    pub h: Option<u32>,
    pub exact_resize: bool,
    pub mask: bool,
    pub bg_color: Option<[u8; 4]>,
    pub angle: f64,
    pub expand: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            format: OutFormat::Webp,
            w: None,
            h: None,
            exact_resize: false,
            mask: false,
            bg_color: None,
            angle: 0.0,
            expand: true,
        }
    }
}

/// Alpha 0 on pixels close to the top-left corner colour, 255 elsewhere
/// (never more than the input's own alpha).
fn cut(img: &mut RgbaImage) {
    let Some(&corner) = img.get_pixel_checked(0, 0) else {
        return;
    };
    const T2: i32 = 48 * 48;
    for p in img.pixels_mut() {
        let d: i32 = (0..3)
            .map(|i| {
                let d = p.0[i] as i32 - corner.0[i] as i32;
                d * d
            })
            .sum();
        let a = if d < T2 { 0 } else { 255 };
        p.0[3] = p.0[3].min(a);
    }
}

fn target_size(w0: u32, h0: u32, o: &Options) -> (u32, u32) {
    let scale = |v: u32, num: u32, den: u32| -> u32 {
        ((v as f64 * num as f64 / den as f64).round() as u32).max(1)
    };
    match (o.w, o.h, o.exact_resize) {
        (None, None, _) => (w0, h0),
        (Some(w), Some(h), true) => (w, h),
        (Some(w), None, true) => (w, h0),
        (None, Some(h), true) => (w0, h),
        (Some(w), None, false) => (w, scale(h0, w, w0)),
        (None, Some(h), false) => (scale(w0, h, h0), h),
        (Some(w), Some(h), false) => {
            let s = (w as f64 / w0 as f64).min(h as f64 / h0 as f64);
            (
                ((w0 as f64 * s).round() as u32).clamp(1, w),
                ((h0 as f64 * s).round() as u32).clamp(1, h),
            )
        }
    }
}

/// Counter-clockwise rotation by `deg` degrees (like PIL's `rotate`),
/// nearest-neighbour, transparent where nothing maps.
fn rotate(img: &RgbaImage, deg: f64, expand: bool) -> RgbaImage {
    let r = deg.rem_euclid(360.0);
    if r == 0.0 {
        return img.clone();
    }
    if expand {
        // exact fast paths
        if r == 90.0 {
            return image::imageops::rotate270(img);
        } else if r == 180.0 {
            return image::imageops::rotate180(img);
        } else if r == 270.0 {
            return image::imageops::rotate90(img);
        }
    }
    let (w, h) = (img.width() as f64, img.height() as f64);
    let t = deg.to_radians();
    let (s, c) = t.sin_cos();
    let (nw, nh) = if expand {
        let nw = (w * c.abs() + h * s.abs() - 1e-6).ceil().max(1.0);
        let nh = (w * s.abs() + h * c.abs() - 1e-6).ceil().max(1.0);
        (nw, nh)
    } else {
        (w, h)
    };
    let mut out = RgbaImage::from_pixel(nw as u32, nh as u32, Rgba([0, 0, 0, 0]));
    let (cx, cy) = (w / 2.0, h / 2.0);
    let (ncx, ncy) = (nw / 2.0, nh / 2.0);
    for (x, y, p) in out.enumerate_pixels_mut() {
        // y grows downwards: a counter-clockwise turn on screen.
        let dx = x as f64 + 0.5 - ncx;
        let dy = y as f64 + 0.5 - ncy;
        let sx = c * dx - s * dy + cx;
        let sy = s * dx + c * dy + cy;
        if sx >= 0.0 && sy >= 0.0 && sx < w && sy < h {
            *p = *img.get_pixel(sx as u32, sy as u32);
        }
    }
    out
}

fn encode(img: DynamicImage, fmt: ImageFormat) -> Result<Vec<u8>, String> {
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, fmt)
        .map_err(|e| format!("could not encode the result: {e}"))?;
    Ok(buf.into_inner())
}

/// A cut-out of `input` as rembg would return it for these options.
pub(crate) fn rembg_cutout(input: &[u8], kind: Kind, o: &Options) -> Result<Vec<u8>, String> {
    let mut img = decode(input, kind)?;
    cut(&mut img);
    let (tw, th) = target_size(img.width(), img.height(), o);
    if (tw, th) != img.dimensions() {
        img = image::imageops::resize(&img, tw, th, FilterType::Triangle);
    }
    if o.angle != 0.0 {
        img = rotate(&img, o.angle, o.expand);
    }
    let fmt = match o.format {
        OutFormat::Webp => ImageFormat::WebP,
        OutFormat::Png => ImageFormat::Png,
    };
    if o.mask {
        let mask = GrayImage::from_fn(img.width(), img.height(), |x, y| {
            image::Luma([img.get_pixel(x, y).0[3]])
        });
        return encode(DynamicImage::ImageLuma8(mask), fmt);
    }
    if let Some(bg) = o.bg_color {
        for p in img.pixels_mut() {
            *p = over(*p, bg);
        }
    }
    encode(DynamicImage::ImageRgba8(img), fmt)
}

/// `fg` composited over the colour `bg`.
fn over(fg: Rgba<u8>, bg: [u8; 4]) -> Rgba<u8> {
    let fa = fg.0[3] as f64 / 255.0;
    let ba = bg[3] as f64 / 255.0;
    let oa = fa + ba * (1.0 - fa);
    if oa <= 0.0 {
        return Rgba([0, 0, 0, 0]);
    }
    let mut out = [0u8; 4];
    for i in 0..3 {
        let v = (fg.0[i] as f64 * fa + bg[i] as f64 * ba * (1.0 - fa)) / oa;
        out[i] = v.round().clamp(0.0, 255.0) as u8;
    }
    out[3] = (oa * 255.0).round() as u8;
    Rgba(out)
}

/// verging's result: the cut-out as an RGBA PNG.
pub(crate) fn verging_cutout(input: &[u8], kind: Kind) -> Result<Vec<u8>, String> {
    let mut img = decode(input, kind)?;
    cut(&mut img);
    encode(DynamicImage::ImageRgba8(img), ImageFormat::Png)
}

/// The input re-encoded as an opaque RGB image (no alpha channel).
pub(crate) fn opaque(input: &[u8], kind: Kind, jpeg: bool) -> Result<Vec<u8>, String> {
    let img = image::load_from_memory_with_format(input, kind.format())
        .map_err(|e| format!("could not decode the image: {e}"))?
        .to_rgb8();
    let fmt = if jpeg {
        ImageFormat::Jpeg
    } else {
        ImageFormat::Png
    };
    encode(DynamicImage::ImageRgb8(img), fmt)
}

/// Parses `#RGB`, `#RGBA`, `#RRGGBB`, `#RRGGBBAA` or a CSS colour name.
pub(crate) fn parse_color(s: &str) -> Option<[u8; 4]> {
    if let Some(hex) = s.strip_prefix('#') {
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let nib = |i: usize| u8::from_str_radix(&hex[i..i + 1], 16).ok().map(|v| v * 17);
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
        return match hex.len() {
            3 => Some([nib(0)?, nib(1)?, nib(2)?, 255]),
            4 => Some([nib(0)?, nib(1)?, nib(2)?, nib(3)?]),
            6 => Some([byte(0)?, byte(2)?, byte(4)?, 255]),
            8 => Some([byte(0)?, byte(2)?, byte(4)?, byte(6)?]),
            _ => None,
        };
    }
    let lower = s.to_ascii_lowercase();
    if lower == "transparent" {
        return Some([0, 0, 0, 0]);
    }
    CSS_COLORS
        .iter()
        .find(|(n, _)| *n == lower)
        .map(|(_, v)| [(v >> 16) as u8, (v >> 8) as u8, *v as u8, 255])
}

/// The CSS named colours.
const CSS_COLORS: &[(&str, u32)] = &[
    ("aliceblue", 0xF0F8FF),
    ("antiquewhite", 0xFAEBD7),
    ("aqua", 0x00FFFF),
    ("aquamarine", 0x7FFFD4),
    ("azure", 0xF0FFFF),
    ("beige", 0xF5F5DC),
    ("bisque", 0xFFE4C4),
    ("black", 0x000000),
    ("blanchedalmond", 0xFFEBCD),
    ("blue", 0x0000FF),
    ("blueviolet", 0x8A2BE2),
    ("brown", 0xA52A2A),
    ("burlywood", 0xDEB887),
    ("cadetblue", 0x5F9EA0),
    ("chartreuse", 0x7FFF00),
    ("chocolate", 0xD2691E),
    ("coral", 0xFF7F50),
    ("cornflowerblue", 0x6495ED),
    ("cornsilk", 0xFFF8DC),
    ("crimson", 0xDC143C),
    ("cyan", 0x00FFFF),
    ("darkblue", 0x00008B),
    ("darkcyan", 0x008B8B),
    ("darkgoldenrod", 0xB8860B),
    ("darkgray", 0xA9A9A9),
    ("darkgreen", 0x006400),
    ("darkgrey", 0xA9A9A9),
    ("darkkhaki", 0xBDB76B),
    ("darkmagenta", 0x8B008B),
    ("darkolivegreen", 0x556B2F),
    ("darkorange", 0xFF8C00),
    ("darkorchid", 0x9932CC),
    ("darkred", 0x8B0000),
    ("darksalmon", 0xE9967A),
    ("darkseagreen", 0x8FBC8F),
    ("darkslateblue", 0x483D8B),
    ("darkslategray", 0x2F4F4F),
    ("darkslategrey", 0x2F4F4F),
    ("darkturquoise", 0x00CED1),
    ("darkviolet", 0x9400D3),
    ("deeppink", 0xFF1493),
    ("deepskyblue", 0x00BFFF),
    ("dimgray", 0x696969),
    ("dimgrey", 0x696969),
    ("dodgerblue", 0x1E90FF),
    ("firebrick", 0xB22222),
    ("floralwhite", 0xFFFAF0),
    ("forestgreen", 0x228B22),
    ("fuchsia", 0xFF00FF),
    ("gainsboro", 0xDCDCDC),
    ("ghostwhite", 0xF8F8FF),
    ("gold", 0xFFD700),
    ("goldenrod", 0xDAA520),
    ("gray", 0x808080),
    ("green", 0x008000),
    ("greenyellow", 0xADFF2F),
    ("grey", 0x808080),
    ("honeydew", 0xF0FFF0),
    ("hotpink", 0xFF69B4),
    ("indianred", 0xCD5C5C),
    ("indigo", 0x4B0082),
    ("ivory", 0xFFFFF0),
    ("khaki", 0xF0E68C),
    ("lavender", 0xE6E6FA),
    ("lavenderblush", 0xFFF0F5),
    ("lawngreen", 0x7CFC00),
    ("lemonchiffon", 0xFFFACD),
    ("lightblue", 0xADD8E6),
    ("lightcoral", 0xF08080),
    ("lightcyan", 0xE0FFFF),
    ("lightgoldenrodyellow", 0xFAFAD2),
    ("lightgray", 0xD3D3D3),
    ("lightgreen", 0x90EE90),
    ("lightgrey", 0xD3D3D3),
    ("lightpink", 0xFFB6C1),
    ("lightsalmon", 0xFFA07A),
    ("lightseagreen", 0x20B2AA),
    ("lightskyblue", 0x87CEFA),
    ("lightslategray", 0x778899),
    ("lightslategrey", 0x778899),
    ("lightsteelblue", 0xB0C4DE),
    ("lightyellow", 0xFFFFE0),
    ("lime", 0x00FF00),
    ("limegreen", 0x32CD32),
    ("linen", 0xFAF0E6),
    ("magenta", 0xFF00FF),
    ("maroon", 0x800000),
    ("mediumaquamarine", 0x66CDAA),
    ("mediumblue", 0x0000CD),
    ("mediumorchid", 0xBA55D3),
    ("mediumpurple", 0x9370DB),
    ("mediumseagreen", 0x3CB371),
    ("mediumslateblue", 0x7B68EE),
    ("mediumspringgreen", 0x00FA9A),
    ("mediumturquoise", 0x48D1CC),
    ("mediumvioletred", 0xC71585),
    ("midnightblue", 0x191970),
    ("mintcream", 0xF5FFFA),
    ("mistyrose", 0xFFE4E1),
    ("moccasin", 0xFFE4B5),
    ("navajowhite", 0xFFDEAD),
    ("navy", 0x000080),
    ("oldlace", 0xFDF5E6),
    ("olive", 0x808000),
    ("olivedrab", 0x6B8E23),
    ("orange", 0xFFA500),
    ("orangered", 0xFF4500),
    ("orchid", 0xDA70D6),
    ("palegoldenrod", 0xEEE8AA),
    ("palegreen", 0x98FB98),
    ("paleturquoise", 0xAFEEEE),
    ("palevioletred", 0xDB7093),
    ("papayawhip", 0xFFEFD5),
    ("peachpuff", 0xFFDAB9),
    ("peru", 0xCD853F),
    ("pink", 0xFFC0CB),
    ("plum", 0xDDA0DD),
    ("powderblue", 0xB0E0E6),
    ("purple", 0x800080),
    ("rebeccapurple", 0x663399),
    ("red", 0xFF0000),
    ("rosybrown", 0xBC8F8F),
    ("royalblue", 0x4169E1),
    ("saddlebrown", 0x8B4513),
    ("salmon", 0xFA8072),
    ("sandybrown", 0xF4A460),
    ("seagreen", 0x2E8B57),
    ("seashell", 0xFFF5EE),
    ("sienna", 0xA0522D),
    ("silver", 0xC0C0C0),
    ("skyblue", 0x87CEEB),
    ("slateblue", 0x6A5ACD),
    ("slategray", 0x708090),
    ("slategrey", 0x708090),
    ("snow", 0xFFFAFA),
    ("springgreen", 0x00FF7F),
    ("steelblue", 0x4682B4),
    ("tan", 0xD2B48C),
    ("teal", 0x008080),
    ("thistle", 0xD8BFD8),
    ("tomato", 0xFF6347),
    ("turquoise", 0x40E0D0),
    ("violet", 0xEE82EE),
    ("wheat", 0xF5DEB3),
    ("white", 0xFFFFFF),
    ("whitesmoke", 0xF5F5F5),
    ("yellow", 0xFFFF00),
    ("yellowgreen", 0x9ACD32),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_parse() {
        assert_eq!(parse_color("#fff"), Some([255, 255, 255, 255]));
        assert_eq!(parse_color("#0008"), Some([0, 0, 0, 136]));
        assert_eq!(parse_color("#102030"), Some([16, 32, 48, 255]));
        assert_eq!(parse_color("#10203040"), Some([16, 32, 48, 64]));
        assert_eq!(parse_color("Red"), Some([255, 0, 0, 255]));
        assert_eq!(parse_color("#12"), None);
        assert_eq!(parse_color("#ggg"), None);
        assert_eq!(parse_color("notacolour"), None);
    }

    #[test]
    fn sizes_keep_aspect_unless_exact() {
        let o = |w, h, exact| Options {
            w,
            h,
            exact_resize: exact,
            ..Options::default()
        };
        assert_eq!(target_size(200, 100, &o(Some(100), None, false)), (100, 50));
        assert_eq!(target_size(200, 100, &o(None, Some(10), false)), (20, 10));
        assert_eq!(
            target_size(200, 100, &o(Some(50), Some(50), false)),
            (50, 25)
        );
        assert_eq!(
            target_size(200, 100, &o(Some(50), Some(50), true)),
            (50, 50)
        );
    }

    #[test]
    fn rotation_expands_or_crops() {
        let img = RgbaImage::from_pixel(40, 20, Rgba([1, 2, 3, 255]));
        assert_eq!(rotate(&img, 90.0, true).dimensions(), (20, 40));
        assert_eq!(rotate(&img, 90.0, false).dimensions(), (40, 20));
        assert_eq!(rotate(&img, -45.0, true).dimensions(), (43, 43));
        assert_eq!(rotate(&img, 360.0, true).dimensions(), (40, 20));
    }
}
