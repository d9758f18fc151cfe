//! Pixels of a finished picture: cut the source rectangle out, resize it
//! (premultiplied alpha, so no dark fringes), convert it to sRGB when asked,
//! and put it on the canvas — over a colour, over a soft contact shadow, or
//! as a grey mask.
//!
//! The cut-out's RGB at partially transparent pixels is taken as already
//! un-mixed (decontaminated) by the engine, so flattening is the plain
//! `out = fg·a + bg·(1−a)`: where `a = 0` the output is exactly the
//! background colour, and no original edge colour can leak in as a halo.
//!
//! Must not: decide geometry (that is `frame`) or encode files.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{GrayImage, RgbaImage};

use super::frame::{Layout, Rect};

/// How dark the soft shadow is at its darkest (share of black).
const SHADOW_OPACITY: f64 = 0.45;

#[derive(Debug, thiserror::Error)]
#[error("cannot resize the cut-out: {0}")]
pub struct ResizeError(String);

/// The cut-out's `source` rectangle at the `placed` size (a copy when the
/// size does not change). Lanczos3 on premultiplied alpha.
pub fn scaled_content(cutout: &RgbaImage, layout: &Layout) -> Result<RgbaImage, ResizeError> {
    let Rect { x, y, w, h } = layout.source;
    let (pw, ph) = (layout.placed.w, layout.placed.h);
    if (pw, ph) == (w, h) {
        return Ok(image::imageops::crop_imm(cutout, x, y, w, h).to_image());
    }
    let src = ImageRef::new(
        cutout.width(),
        cutout.height(),
        cutout.as_raw(),
        PixelType::U8x4,
    )
    .map_err(|e| ResizeError(e.to_string()))?;
    let mut dst = Image::new(pw, ph, PixelType::U8x4);
    let options = ResizeOptions::new()
        .crop(x as f64, y as f64, w as f64, h as f64)
        .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
        .use_alpha(true);
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| ResizeError(e.to_string()))?;
    RgbaImage::from_raw(pw, ph, dst.into_vec())
        .ok_or_else(|| ResizeError("the resizer returned a short buffer".into()))
}

/// `src` over `dst`, straight (not premultiplied) 8-bit RGBA, rounded.
/// `a = 0` leaves `dst` exactly; an opaque `dst` gives `fg·a + bg·(1−a)`.
#[inline]
pub fn over(src: [u8; 4], dst: [u8; 4]) -> [u8; 4] {
    let a = src[3] as u32;
    if a == 255 {
        return src;
    }
    if a == 0 {
        return dst;
    }
    let da = dst[3] as u32;
    if da == 255 {
        let mix = |f: u8, b: u8| ((f as u32 * a + b as u32 * (255 - a) + 127) / 255) as u8;
        return [
            mix(src[0], dst[0]),
            mix(src[1], dst[1]),
            mix(src[2], dst[2]),
            255,
        ];
    }
    // General case, in units of 1/65025: out_a = a + da·(1−a).
    let db = da * (255 - a); // dst weight ×255
    let fa = a * 255; // src weight ×255
    let oa = fa + db;
    let mix = |f: u8, b: u8| ((f as u32 * fa + b as u32 * db + oa / 2) / oa) as u8;
    [
        mix(src[0], dst[0]),
        mix(src[1], dst[1]),
        mix(src[2], dst[2]),
        ((oa + 127) / 255) as u8,
    ]
}

/// The canvas: `background` (or transparent), the shadow if asked, then the
/// content at `layout.placed`.
pub fn compose(
    content: &RgbaImage,
    layout: &Layout,
    background: Option<[u8; 4]>,
    shadow: bool,
) -> RgbaImage {
    let (cw, ch) = layout.canvas;
    let bg = background.unwrap_or([0, 0, 0, 0]);
    let mut canvas = RgbaImage::from_pixel(cw, ch, image::Rgba(bg));
    if shadow {
        draw_shadow(&mut canvas, content, layout.placed);
    }
    let p = layout.placed;
    let stride = cw as usize * 4;
    let out = &mut *canvas;
    for (row, src_row) in content.as_raw().chunks_exact(p.w as usize * 4).enumerate() {
        let start = (p.y as usize + row) * stride + p.x as usize * 4;
        let dst_row = &mut out[start..start + p.w as usize * 4];
        for (d, s) in dst_row.chunks_exact_mut(4).zip(src_row.chunks_exact(4)) {
            let px = over([s[0], s[1], s[2], s[3]], [d[0], d[1], d[2], d[3]]);
            d.copy_from_slice(&px);
        }
    }
    canvas
}

/// The alpha of the content at its place on a black canvas (white = subject).
pub fn mask(content: &RgbaImage, layout: &Layout) -> GrayImage {
    let (cw, ch) = layout.canvas;
    let mut out = GrayImage::new(cw, ch);
    let buf: &mut [u8] = &mut out;
    let p = layout.placed;
    for (row, src_row) in content.as_raw().chunks_exact(p.w as usize * 4).enumerate() {
        let start = (p.y as usize + row) * cw as usize + p.x as usize;
        let dst_row = &mut buf[start..start + p.w as usize];
        for (d, s) in dst_row.iter_mut().zip(src_row.chunks_exact(4)) {
            *d = s[3];
        }
    }
    out
}

/// A soft contact shadow made from the mask: the subject's footprint (the
/// alpha in the bottom tenth of its box, per column), blurred sideways and
/// spread in a thin band around the bottom edge, drawn in black under the
/// subject.
fn draw_shadow(canvas: &mut RgbaImage, content: &RgbaImage, p: Rect) {
    let (cw, ch) = canvas.dimensions();
    let band = (p.h / 10).max(1);
    let mut foot = vec![0f64; p.w as usize];
    for y in p.h - band..p.h {
        let row = &content.as_raw()[(y * p.w * 4) as usize..((y + 1) * p.w * 4) as usize];
        for (f, px) in foot.iter_mut().zip(row.chunks_exact(4)) {
            *f = f.max(px[3] as f64 / 255.0);
        }
    }
    let radius = ((p.w as f64 * 0.02).round() as usize).max(1);
    let pad = 3 * radius;
    let mut line = vec![0f64; p.w as usize + 2 * pad];
    line[pad..pad + p.w as usize].copy_from_slice(&foot);
    for _ in 0..3 {
        line = box_blur(&line, radius);
    }
    let half = ((p.h as f64 * 0.03).round() as i64).max(2);
    let base = (p.y + p.h) as i64;
    for dy in -half..=half {
        let y = base + dy;
        if y < 0 || y >= ch as i64 {
            continue;
        }
        let t = dy as f64 / (half as f64 + 1.0);
        let fall = (1.0 - t * t).powi(2) * SHADOW_OPACITY;
        for (i, v) in line.iter().enumerate() {
            let x = p.x as i64 - pad as i64 + i as i64;
            let a = (v * fall * 255.0).round() as u8;
            if a == 0 || x < 0 || x >= cw as i64 {
                continue;
            }
            let d = canvas.get_pixel_mut(x as u32, y as u32);
            d.0 = over([0, 0, 0, a], d.0);
        }
    }
}

/// One box-blur pass of radius `r` (same length, zero outside).
fn box_blur(v: &[f64], r: usize) -> Vec<f64> {
    let n = v.len();
    let mut prefix = vec![0f64; n + 1];
    for (i, x) in v.iter().enumerate() {
        prefix[i + 1] = prefix[i] + x;
    }
    let width = (2 * r + 1) as f64;
    (0..n)
        .map(|i| (prefix[(i + r + 1).min(n)] - prefix[i.saturating_sub(r)]) / width)
        .collect()
}

#[cfg(test)]
#[path = "compose_tests.rs"]
mod tests;
