//! The plain (studio) backdrop plan: distance to the backdrop model, hysteresis,
//! grey objects, flood fill from the border, holes, peeling and specks, then the
//! colour fields the renderer un-mixes with.
//!
//! Must not: work at full resolution (the renderer does) or use the busy fallback.

use image::RgbaImage;

use super::colour::{dist3, median, norm3, shadow_residual};
use super::fit::{BackdropFit, Quad};
use super::grey::sharp_dark_regions;
use super::options::{BackdropOptions, SegmentError};
use super::render::{push_pull, Plan};
use super::white::white_parts;
use super::work::{strip_width, uv, Work};
use crate::engine::mask::clean::box_blur;
use crate::engine::mask::{
    border_pixels, erode, flood, for_each_neighbour, keep_large_components, label_sizes,
};

/// Plain (studio) backdrop: distance to the backdrop model, hysteresis, flood fill,
/// holes and specks.
pub(super) fn plain_plan(
    img: &RgbaImage,
    work: &Work,
    lab: &[[f32; 3]],
    fit: &BackdropFit,
    o: &BackdropOptions,
) -> Result<Plan, SegmentError> {
    let (w, h) = (work.w, work.h);
    let n = w * h;
    let res = residuals(work, lab, fit, o);
    let th = Thresholds::new(fit.noise, o);
    let opaque: Vec<bool> = work.alpha.iter().map(|&a| a >= 128).collect();
    let min_px = ((o.min_object_fraction * n as f32) as usize).max(4);
    let (mut fg, mut grey) = seed_object((w, h), lab, &res, &opaque, &th, min_px);
    let white = white_parts(work, lab, &res.plain, &fg, &opaque, fit.noise, min_px);
    for ((f, g), &wh) in fg.iter_mut().zip(grey.iter_mut()).zip(&white) {
        *f |= wh;
        *g |= wh;
    }
    let mut backdrop = reach_backdrop((w, h), &fg, &opaque);
    let min_hole = ((o.min_hole_fraction * n as f32) as usize).max(6);
    open_backdrop_holes((w, h), &fg, &mut backdrop, &res, &th, min_hole);

    let mut object: Vec<bool> = backdrop.iter().map(|b| !b).collect();
    peel(
        (w, h),
        lab,
        &res.dist,
        &grey,
        (&mut object, &mut backdrop),
        &fit.lab,
        o,
        th.peel,
    );
    let object = keep_large_components(w, h, &object, min_px, o.min_object_relative)
        .ok_or(SegmentError::NoObject)?;
    let mut plan = colour_fields(work, &object, &opaque, res.model_rgb);
    plan.noise_rgb = full_res_noise(img, &fit.rgb, o.border_fraction);
    Ok(plan)
}

/// Every working pixel compared with the backdrop model at its place.
struct Residuals {
    /// Shadow-tolerant residual (Lab): a darkening counts little.
    eff: Vec<[f32; 3]>,
    /// Length of `eff`.
    dist: Vec<f32>,
    /// Plain ΔE76 to the model (no shadow tolerance).
    plain: Vec<f32>,
    /// The model's backdrop colour (sRGB 0..255).
    model_rgb: Vec<[f32; 3]>,
}

fn residuals(work: &Work, lab: &[[f32; 3]], fit: &BackdropFit, o: &BackdropOptions) -> Residuals {
    let (w, h) = (work.w, work.h);
    let n = w * h;
    let mut r = Residuals {
        eff: vec![[0f32; 3]; n],
        dist: vec![0f32; n],
        plain: vec![0f32; n],
        model_rgb: vec![[0f32; 3]; n],
    };
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let (u, v) = uv(x, y, w, h);
            let b = fit.lab.eval(u, v);
            let e = shadow_residual(lab[i], b, o.shadow_tolerance, o.shadow_weight);
            r.eff[i] = e;
            r.dist[i] = norm3(e);
            r.plain[i] = dist3(lab[i], b);
            r.model_rgb[i] = fit.rgb.eval(u, v).map(|c| c.clamp(0.0, 255.0));
        }
    }
    r
}

/// Distances (ΔE) that decide object and backdrop, derived from the backdrop noise.
struct Thresholds {
    /// Hysteresis: weak object pixels.
    lo: f32,
    /// Hysteresis: strong object pixels.
    hi: f32,
    /// Backdrop noise (median border residual).
    noise: f32,
    /// Pixels this far from the backdrop are never peeled off.
    peel: f32,
}

impl Thresholds {
    fn new(noise: f32, o: &BackdropOptions) -> Thresholds {
        let lo = (o.low_threshold_noise * noise).max(o.min_low_threshold);
        let hi = (o.high_threshold_noise * noise)
            .max(o.min_high_threshold)
            .max(lo);
        Thresholds {
            lo,
            hi,
            noise,
            peel: (3.0 * hi).max(24.0),
        }
    }
}

/// The object's first outline: hysteresis on the shadow-tolerant distance (weak
/// pixels join when connected to strong ones), plus darker-only regions with a sharp
/// outline (grey objects, which the shadow tolerance hid; a soft shadow fades out).
/// Returns the object pixels and those grey ones.
fn seed_object(
    (w, h): (usize, usize),
    lab: &[[f32; 3]],
    res: &Residuals,
    opaque: &[bool],
    th: &Thresholds,
    min_px: usize,
) -> (Vec<bool>, Vec<bool>) {
    let n = w * h;
    let weak: Vec<bool> = (0..n).map(|i| opaque[i] && res.dist[i] >= th.lo).collect();
    let strong = (0..n).filter(|&i| opaque[i] && res.dist[i] >= th.hi);
    let mut fg = flood(w, h, &weak, strong, true);
    let grey = sharp_dark_regions(
        (w, h),
        lab,
        &res.plain,
        &fg,
        opaque,
        (th.lo, th.hi),
        (th.lo.max(3.0 * th.noise), min_px),
    );
    for (f, &g) in fg.iter_mut().zip(&grey) {
        *f |= g;
    }
    (fg, grey)
}

/// Backdrop = everything not object that the border (or input transparency) reaches.
fn reach_backdrop((w, h): (usize, usize), fg: &[bool], opaque: &[bool]) -> Vec<bool> {
    let not_fg: Vec<bool> = fg.iter().map(|f| !f).collect();
    let seeds = border_pixels(w, h)
        .filter(|&i| !fg[i])
        .chain((0..w * h).filter(|&i| !opaque[i]));
    flood(w, h, &not_fg, seeds, false)
}

/// Enclosed regions (not object, not reached from the border): the 64 largest that
/// are at least `min_hole` pixels and clearly show the backdrop become backdrop; the
/// rest (a white label on a white shoe, small gaps) stays part of the object.
fn open_backdrop_holes(
    (w, h): (usize, usize),
    fg: &[bool],
    backdrop: &mut [bool],
    res: &Residuals,
    th: &Thresholds,
    min_hole: usize,
) {
    let n = w * h;
    let enclosed: Vec<bool> = (0..n).map(|i| !fg[i] && !backdrop[i]).collect();
    let (labels, sizes) = label_sizes(w, h, &enclosed, false);
    let mut cands: Vec<usize> = (1..sizes.len())
        .filter(|&id| sizes[id] >= min_hole)
        .collect();
    cands.sort_by_key(|&id| std::cmp::Reverse(sizes[id]));
    cands.truncate(64);
    if cands.is_empty() {
        return;
    }
    let mut slot = vec![usize::MAX; sizes.len()];
    for (k, &id) in cands.iter().enumerate() {
        slot[id] = k;
    }
    let mut pixels: Vec<Vec<usize>> = vec![Vec::new(); cands.len()];
    for (i, &l) in labels.iter().enumerate() {
        let k = slot[l as usize];
        if k != usize::MAX {
            pixels[k].push(i);
        }
    }
    let tol = (1.5 * th.noise).max(2.0);
    for (k, px) in pixels.iter().enumerate() {
        let id = cands[k] as u32;
        if is_backdrop_hole(w, h, px, &labels, id, &res.eff, &res.dist, tol, th.lo) {
            for &i in px {
                backdrop[i] = true;
            }
        }
    }
}

/// The plan for an object mask: soft alpha (3×3 box), the object colour field pushed
/// out from its interior, and the local backdrop colour (it includes shadows, unlike
/// the smooth model) from backdrop pixels at least two pixels away from the object,
/// `model_rgb` where there are none. `noise_rgb` is left 0 for the caller.
fn colour_fields(work: &Work, object: &[bool], opaque: &[bool], model_rgb: Vec<[f32; 3]>) -> Plan {
    let (w, h) = (work.w, work.h);
    let mut interior = erode(w, h, object);
    if !interior.iter().any(|&b| b) {
        interior.copy_from_slice(object);
    }
    let rgb = work.rgb_f32();
    let fg = push_pull(w, h, &rgb, &interior);
    let not_obj: Vec<bool> = (0..w * h).map(|i| !object[i] && opaque[i]).collect();
    let clear = erode(w, h, &not_obj);
    let bg = if clear.iter().any(|&c| c) {
        push_pull(w, h, &rgb, &clear)
    } else {
        model_rgb
    };
    let mut alpha: Vec<f32> = object.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
    box_blur(w, h, &mut alpha, 1, 1);
    Plan {
        w,
        h,
        alpha,
        fg,
        bg,
        unmix: true,
        noise_rgb: 0.0,
    }
}

/// Radius of the window that [`peel`] compares a silhouette pixel with.
pub(super) const PEEL_RADIUS: usize = 5;
/// Most pixels [`peel`] takes off the silhouette (working resolution).
pub(super) const PEEL_ROUNDS: usize = 6;

/// Gives back to the backdrop the silhouette pixels that look more like the backdrop
/// next to them than like the object next to them (JPEG chroma ringing, contact
/// shadows, halos), at most [`PEEL_ROUNDS`] pixels deep and never a pixel that differs
/// from the backdrop by `t_peel` or more, nor one of the `no_shadow` pixels (grey parts
/// whose outline was already judged sharp). The object colour nearby is a mean weighted by
/// the squared distance to the backdrop, so it stands for the object, not its fringe.
#[allow(clippy::too_many_arguments)]
pub(super) fn peel(
    (w, h): (usize, usize),
    lab: &[[f32; 3]],
    dist: &[f32],
    no_shadow: &[bool],
    (object, backdrop): (&mut [bool], &mut [bool]),
    model: &Quad,
    o: &BackdropOptions,
    t_peel: f32,
) {
    let r = PEEL_RADIUS;
    for _ in 0..PEEL_ROUNDS {
        let mut flip = Vec::new();
        for i in 0..w * h {
            if !object[i] || no_shadow[i] || dist[i] >= t_peel {
                continue;
            }
            let mut on_edge = false;
            for_each_neighbour(i, w, h, false, |j| on_edge |= backdrop[j]);
            if !on_edge {
                continue;
            }
            let (x, y) = (i % w, i / w);
            let (mut fs, mut fw) = ([0f32; 3], 0f32);
            let (mut bs, mut bn) = ([0f32; 3], 0f32);
            for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
                for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
                    let j = yy * w + xx;
                    let c = lab[j];
                    if object[j] {
                        let k = dist[j] * dist[j];
                        fs = [fs[0] + k * c[0], fs[1] + k * c[1], fs[2] + k * c[2]];
                        fw += k;
                    } else if backdrop[j] {
                        bs = [bs[0] + c[0], bs[1] + c[1], bs[2] + c[2]];
                        bn += 1.0;
                    }
                }
            }
            if fw <= 0.0 {
                continue;
            }
            let f = fs.map(|v| v / fw);
            let b = if bn > 0.0 {
                bs.map(|v| v / bn)
            } else {
                let (u, v) = uv(x, y, w, h);
                model.eval(u, v)
            };
            let to_back = norm3(shadow_residual(
                lab[i],
                b,
                o.shadow_tolerance,
                o.shadow_weight,
            ));
            if to_back < dist3(lab[i], f) {
                flip.push(i);
            }
        }
        if flip.is_empty() {
            break;
        }
        for i in flip {
            object[i] = false;
            backdrop[i] = true;
        }
    }
}

/// Does the enclosed region (pixels `px`, label `id`) clearly show the backdrop? Its mean
/// shadow-tolerant residual must be within noise, nearly all of it must be
/// backdrop-like, and it must be solid (a printed label has text inside it).
#[allow(clippy::too_many_arguments)]
pub(super) fn is_backdrop_hole(
    w: usize,
    h: usize,
    px: &[usize],
    labels: &[u32],
    id: u32,
    eff: &[[f32; 3]],
    dist: &[f32],
    tol: f32,
    t_lo: f32,
) -> bool {
    let area = px.len();
    if area == 0 {
        return false;
    }
    let mut mean = [0f64; 3];
    for &i in px {
        for ch in 0..3 {
            mean[ch] += f64::from(eff[i][ch]);
        }
    }
    let mean = mean.map(|m| (m / area as f64) as f32);
    if norm3(mean) > tol {
        return false;
    }
    let clean = px.iter().filter(|&&i| dist[i] < t_lo).count();
    if (clean as f32) < 0.9 * area as f32 {
        return false;
    }
    // Solidity: pixels of the bounding box that the outside cannot reach are inside.
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for &i in px {
        let (x, y) = (i % w, i / w);
        x0 = x0.min(x);
        y0 = y0.min(y);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    let (x0, y0) = (x0.saturating_sub(1), y0.saturating_sub(1));
    let (x1, y1) = ((x1 + 1).min(w - 1), (y1 + 1).min(h - 1));
    let (bw, bh) = (x1 - x0 + 1, y1 - y0 + 1);
    let passable: Vec<bool> = (0..bw * bh)
        .map(|k| labels[(y0 + k / bw) * w + x0 + k % bw] != id)
        .collect();
    let outside = flood(bw, bh, &passable, border_pixels(bw, bh), true);
    let inside_other = (0..bw * bh).filter(|&k| passable[k] && !outside[k]).count();
    (area as f32) >= 0.97 * (area + inside_other) as f32
}

/// Typical backdrop noise at full resolution: median distance (sRGB) of border pixels
/// to the fitted backdrop colour.
pub(super) fn full_res_noise(img: &RgbaImage, rgb: &Quad, frac: f32) -> f32 {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let s = strip_width(w, h, frac);
    let area = 2 * s * (w + h);
    let step = ((area as f64 / 20_000.0).sqrt().ceil() as usize).max(1);
    let raw: &[u8] = img.as_raw();
    let mut res = Vec::new();
    for y in (0..h).step_by(step) {
        for x in (0..w).step_by(step) {
            if !(x < s || y < s || x + s >= w || y + s >= h) {
                continue;
            }
            let k = (y * w + x) * 4;
            let Some(p) = raw.get(k..k + 4) else { continue };
            if p[3] < 128 {
                continue;
            }
            let (u, v) = uv(x, y, w, h);
            let b = rgb.eval(u, v);
            res.push(dist3(
                [f32::from(p[0]), f32::from(p[1]), f32::from(p[2])],
                b,
            ));
        }
    }
    median(&mut res).max(0.5)
}
