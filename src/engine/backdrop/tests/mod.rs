//! TESTS

use super::*;
use image::Rgba;

// ---- picture generation ------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Roughly standard normal (sum of four uniforms).
    fn gauss(&mut self) -> f32 {
        ((0..4).map(|_| self.uniform()).sum::<f32>() - 2.0) * 1.732
    }
}

/// Renders `scene` (sRGB colour at a continuous position) with `ss`x`ss`
/// supersampling, so edges are anti-aliased, then adds Gaussian noise of `sigma`
/// and optionally round-trips through JPEG at quality `jpeg`.
fn draw(
    w: u32,
    h: u32,
    ss: u32,
    sigma: f32,
    jpeg: Option<u8>,
    scene: impl Fn(f32, f32) -> [f32; 3],
) -> RgbaImage {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut img = RgbaImage::new(w, h);
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0f32; 3];
            for j in 0..ss {
                for i in 0..ss {
                    let c = scene(
                        x as f32 + (i as f32 + 0.5) / ss as f32,
                        y as f32 + (j as f32 + 0.5) / ss as f32,
                    );
                    for k in 0..3 {
                        acc[k] += c[k];
                    }
                }
            }
            let p = acc.map(|a| {
                (a / (ss * ss) as f32 + sigma * rng.gauss())
                    .round()
                    .clamp(0.0, 255.0) as u8
            });
            img.put_pixel(x, y, Rgba([p[0], p[1], p[2], 255]));
        }
    }
    match jpeg {
        Some(q) => jpeg_roundtrip(&img, q),
        None => img,
    }
}

fn jpeg_roundtrip(img: &RgbaImage, quality: u8) -> RgbaImage {
    let rgb = image::DynamicImage::ImageRgba8(img.clone()).to_rgb8();
    let mut buf = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality)
        .encode_image(&rgb)
        .expect("encode jpeg");
    image::load_from_memory(&buf)
        .expect("decode jpeg")
        .to_rgba8()
}

/// Signed-distance-free inside test of a rounded rectangle (centre, half sizes, radius).
fn in_rounded_rect(x: f32, y: f32, c: (f32, f32), half: (f32, f32), r: f32) -> bool {
    let dx = ((x - c.0).abs() - (half.0 - r)).max(0.0);
    let dy = ((y - c.1).abs() - (half.1 - r)).max(0.0);
    dx * dx + dy * dy < r * r
}

/// Squared normalised radius of an ellipse (1 on its outline).
fn ellipse_r2(x: f32, y: f32, c: (f32, f32), r: (f32, f32)) -> f32 {
    let (u, v) = ((x - c.0) / r.0, (y - c.1) / r.1);
    u * u + v * v
}

fn scale(c: [f32; 3], k: f32) -> [f32; 3] {
    c.map(|v| v * k)
}

/// Soft studio light: a slight vertical fall-off and a horizontal vignette.
fn light(w: f32, h: f32, x: f32, y: f32) -> f32 {
    let (u, v) = (x / w - 0.5, y / h);
    1.0 - 0.08 * v - 0.12 * u * u
}

const SHOE: [f32; 3] = [130.0, 22.0, 28.0];

/// A dark red rounded "shoe" on white, a soft shadow ellipse under it, lighting
/// gradient, noise and JPEG.
fn shoe_scene(w: u32, h: u32) -> RgbaImage {
    let (wf, hf) = (w as f32, h as f32);
    draw(w, h, 4, 2.0, Some(88), move |x, y| {
        let l = light(wf, hf, x, y);
        let sh = 1.0
            - 0.28 * (-1.5 * ellipse_r2(x, y, (0.5 * wf, 0.75 * hf), (0.36 * wf, 0.07 * hf))).exp();
        let mut c = scale([250.0, 250.0, 248.0], l * sh);
        if in_rounded_rect(
            x,
            y,
            (0.5 * wf, 0.55 * hf),
            (0.27 * wf, 0.16 * hf),
            0.09 * hf,
        ) {
            let shade = 1.0 - 0.2 * (y / hf - 0.39) / 0.32;
            c = scale(SHOE, shade);
        }
        c
    })
}

// ---- measuring -----------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Rect {
    x0: u32,
    y0: u32,
    x1: u32,
    y1: u32,
}

/// Rectangle from fractions of the picture.
fn frac(img: &RgbaImage, x0: f32, y0: f32, x1: f32, y1: f32) -> Rect {
    let (w, h) = (img.width() as f32, img.height() as f32);
    Rect {
        x0: (x0 * w) as u32,
        y0: (y0 * h) as u32,
        x1: ((x1 * w) as u32).max((x0 * w) as u32 + 1),
        y1: ((y1 * h) as u32).max((y0 * h) as u32 + 1),
    }
}

fn alphas(img: &RgbaImage, r: Rect) -> Vec<u8> {
    let mut v = Vec::new();
    for y in r.y0..r.y1.min(img.height()) {
        for x in r.x0..r.x1.min(img.width()) {
            v.push(img.get_pixel(x, y).0[3]);
        }
    }
    v
}

fn mean_alpha(img: &RgbaImage, r: Rect) -> f32 {
    let a = alphas(img, r);
    a.iter().map(|&v| f32::from(v)).sum::<f32>() / a.len().max(1) as f32
}

/// The four 5% corner patches.
fn corners(img: &RgbaImage) -> [Rect; 4] {
    [
        frac(img, 0.0, 0.0, 0.05, 0.05),
        frac(img, 0.95, 0.0, 1.0, 0.05),
        frac(img, 0.0, 0.95, 0.05, 1.0),
        frac(img, 0.95, 0.95, 1.0, 1.0),
    ]
}

fn assert_corners_clear(out: &RgbaImage) {
    for r in corners(out) {
        let max = alphas(out, r).into_iter().max().unwrap_or(0);
        assert!(max < 32, "corner {r:?} has alpha up to {max}");
    }
}

fn assert_all_at_least(out: &RgbaImage, r: Rect, min: u8, what: &str) {
    let lo = alphas(out, r).into_iter().min().unwrap_or(0);
    assert!(lo >= min, "{what} {r:?}: alpha down to {lo}, want >= {min}");
}

fn assert_all_below(out: &RgbaImage, r: Rect, max: u8, what: &str) {
    let hi = alphas(out, r).into_iter().max().unwrap_or(0);
    assert!(hi < max, "{what} {r:?}: alpha up to {hi}, want < {max}");
}

/// Edge pixels: alpha strictly between `lo` and `hi`.
fn edge_pixels(out: &RgbaImage, lo: u8, hi: u8) -> Vec<[u8; 4]> {
    out.pixels()
        .filter(|p| p.0[3] > lo && p.0[3] < hi)
        .map(|p| p.0)
        .collect()
}

fn mean_rgb(px: &[[u8; 4]]) -> [f32; 3] {
    let n = px.len().max(1) as f32;
    [0, 1, 2].map(|k| px.iter().map(|p| f32::from(p[k])).sum::<f32>() / n)
}

fn run(img: &RgbaImage) -> RgbaImage {
    let out = cut_out(img, &BackdropOptions::default()).expect("cut-out");
    assert_eq!(out.dimensions(), img.dimensions(), "output size differs");
    out
}

mod generated;
mod hostile;
mod packshots;
mod photos;
