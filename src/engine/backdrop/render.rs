//! Full-resolution rendering of a [`Plan`]: bilinear upsampling of the working
//! alpha, un-mixing of the edge band against the local backdrop and object colours,
//! and decontaminated edge colours; plus the pull–push fill of colour fields.
//!
//! Must not: segment (it only refines the edge the plan gives).

use image::RgbaImage;

use super::colour::{norm3, smoothstep};
use crate::engine::mask::colour::unmix_colour;

/// The result of segmentation at working resolution.
pub(super) struct Plan {
    pub(super) w: usize,
    pub(super) h: usize,
    /// Soft alpha (0..1) at plan resolution.
    pub(super) alpha: Vec<f32>,
    /// Object colour field (sRGB 0..255): interior object colours pushed outwards.
    pub(super) fg: Vec<[f32; 3]>,
    /// Backdrop colour field (sRGB 0..255).
    pub(super) bg: Vec<[f32; 3]>,
    /// Refine the edge band at full resolution by un-mixing `bg` and `fg`.
    pub(super) unmix: bool,
    /// Typical backdrop noise at full resolution (sRGB units), for the un-mixing.
    pub(super) noise_rgb: f32,
}

/// Bilinear tap: for destination-resolution index `i` of `n_src` (full) pixels, the
/// two neighbouring indices at `n_dst` (plan) resolution and the weight of the second.
pub(super) fn tap(i: usize, n_src: usize, n_dst: usize) -> (usize, usize, f32) {
    let max = n_dst.saturating_sub(1);
    let f = ((i as f32 + 0.5) * n_dst as f32 / n_src.max(1) as f32 - 0.5).clamp(0.0, max as f32);
    let i0 = (f.floor() as usize).min(max);
    let i1 = (i0 + 1).min(max);
    (i0, i1, f - i0 as f32)
}

pub(super) fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

pub(super) fn lerp3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        lerp(a[0], b[0], t),
        lerp(a[1], b[1], t),
        lerp(a[2], b[2], t),
    ]
}

/// Fills the invalid pixels of a colour map with a smooth extension of the valid ones
/// (pull–push pyramid: average valid pixels down, interpolate back up).
pub(super) fn push_pull(w: usize, h: usize, colour: &[[f32; 3]], valid: &[bool]) -> Vec<[f32; 3]> {
    let nvalid = valid.iter().filter(|&&v| v).count();
    if nvalid == 0 {
        return vec![[0.0; 3]; w * h];
    }
    if nvalid == w * h {
        return colour.to_vec();
    }
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let mut sum = vec![[0f32; 4]; cw * ch];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if valid[i] {
                let s = &mut sum[(y / 2) * cw + x / 2];
                s[0] += colour[i][0];
                s[1] += colour[i][1];
                s[2] += colour[i][2];
                s[3] += 1.0;
            }
        }
    }
    let ccol: Vec<[f32; 3]> = sum
        .iter()
        .map(|s| {
            if s[3] > 0.0 {
                [s[0] / s[3], s[1] / s[3], s[2] / s[3]]
            } else {
                [0.0; 3]
            }
        })
        .collect();
    let cvalid: Vec<bool> = sum.iter().map(|s| s[3] > 0.0).collect();
    let coarse = push_pull(cw, ch, &ccol, &cvalid);
    let mut out = colour.to_vec();
    for y in 0..h {
        let (y0, y1, ty) = tap(y, h, ch);
        for x in 0..w {
            let i = y * w + x;
            if !valid[i] {
                let (x0, x1, tx) = tap(x, w, cw);
                let top = lerp3(coarse[y0 * cw + x0], coarse[y0 * cw + x1], tx);
                let bot = lerp3(coarse[y1 * cw + x0], coarse[y1 * cw + x1], tx);
                out[i] = lerp3(top, bot, ty);
            }
        }
    }
    out
}

/// Full-resolution output: upsample the plan's alpha bilinearly; in the edge band
/// optionally refine alpha by un-mixing backdrop and object colour, then decontaminate.
pub(super) fn render(img: &RgbaImage, plan: &Plan, decontaminate: bool) -> RgbaImage {
    let (sw, sh) = (img.width() as usize, img.height() as usize);
    let (pw, ph) = (plan.w, plan.h);
    let mut out = RgbaImage::new(img.width(), img.height());
    let src: &[u8] = img.as_raw();
    let dst: &mut [u8] = &mut out;
    let xs: Vec<(usize, usize, f32)> = (0..sw).map(|x| tap(x, sw, pw)).collect();
    let noise = plan.noise_rgb;
    for y in 0..sh {
        let (y0, y1, ty) = tap(y, sh, ph);
        let (r0, r1) = (y0 * pw, y1 * pw);
        let srow = src.get(y * sw * 4..(y + 1) * sw * 4).unwrap_or(&[]);
        let drow = dst.get_mut(y * sw * 4..(y + 1) * sw * 4).unwrap_or(&mut []);
        for ((s, d), &(x0, x1, tx)) in srow.chunks_exact(4).zip(drow.chunks_exact_mut(4)).zip(&xs) {
            let a = &plan.alpha;
            let ac = lerp(
                lerp(a[r0 + x0], a[r0 + x1], tx),
                lerp(a[r1 + x0], a[r1 + x1], tx),
                ty,
            );
            let a_in = f32::from(s[3]) / 255.0;
            if ac >= 1.0 {
                d.copy_from_slice(s);
                continue;
            }
            let field = |f: &[[f32; 3]]| {
                lerp3(
                    lerp3(f[r0 + x0], f[r0 + x1], tx),
                    lerp3(f[r1 + x0], f[r1 + x1], tx),
                    ty,
                )
            };
            let fg = field(&plan.fg);
            if ac <= 0.0 {
                if decontaminate {
                    d[..3].copy_from_slice(&fg.map(to_u8));
                } else {
                    d[..3].copy_from_slice(&s[..3]);
                }
                d[3] = 0;
                continue;
            }
            let c = [f32::from(s[0]), f32::from(s[1]), f32::from(s[2])];
            let bg = field(&plan.bg);
            let mut alpha = ac;
            if plan.unmix {
                alpha = unmix_alpha(c, fg, bg, ac, noise);
            }
            let rgb = if !decontaminate || alpha >= 1.0 {
                c
            } else if alpha <= 0.0 {
                fg
            } else {
                let wide = |v: [f32; 3]| v.map(f64::from);
                let trust = f64::from(smoothstep(0.04, 0.3, alpha));
                let un = unmix_colour(
                    wide(c),
                    f64::from(alpha),
                    Some(wide(bg)),
                    Some(wide(fg)),
                    trust,
                );
                un.map(|v| v as f32)
            };
            d[..3].copy_from_slice(&rgb.map(to_u8));
            d[3] = to_u8(alpha * a_in * 255.0);
        }
    }
    out
}

pub(super) fn to_u8(v: f32) -> u8 {
    (v + 0.5).clamp(0.0, 255.0) as u8
}

/// Alpha of an edge pixel `c` seen as a mix of object colour `f` and backdrop `b`,
/// trusted in proportion to their contrast and to how well `c` lies on the line between
/// them; `coarse` (the upsampled mask) covers the rest.
pub(super) fn unmix_alpha(c: [f32; 3], f: [f32; 3], b: [f32; 3], coarse: f32, noise: f32) -> f32 {
    let d = [f[0] - b[0], f[1] - b[1], f[2] - b[2]];
    let dd = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
    if dd < 1.0 {
        return coarse;
    }
    let contrast = dd.sqrt();
    let cb = [c[0] - b[0], c[1] - b[1], c[2] - b[2]];
    let t = (cb[0] * d[0] + cb[1] * d[1] + cb[2] * d[2]) / dd;
    let perp = norm3([cb[0] - t * d[0], cb[1] - t * d[1], cb[2] - t * d[2]]);
    let on_line = 1.0 - (perp / (0.35 * contrast + 2.0 * noise)).min(1.0);
    let trust = smoothstep(12.0, 40.0, contrast) * on_line;
    let e = (2.5 * noise / contrast).clamp(0.02, 0.3);
    let au = ((t - e) / (1.0 - 2.0 * e)).clamp(0.0, 1.0);
    (trust * au + (1.0 - trust) * coarse).clamp(0.0, 1.0)
}
