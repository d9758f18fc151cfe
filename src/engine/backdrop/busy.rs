//! The busy-background fallback for real photos: border-seeded colour models (two
//! small Gaussian mixtures in Lab), a centre prior and contrast-sensitive mean-field
//! smoothing, keeping what is connected to the centre.
//!
//! Must not: be used when the border is a plain backdrop (the plain plan is).

use image::RgbaImage;

use super::colour::{dist3, srgb_to_linear_lut, to_lab};
use super::options::{BackdropOptions, SegmentError};
use super::render::{push_pull, Plan};
use super::work::{strip_width, uv, Work};
use crate::engine::mask::clean::box_blur;
use crate::engine::mask::{border_pixels, dilate, erode, flood, label_sizes};

/// Most samples used to fit one Gaussian mixture.
const GMM_MAX_SAMPLES: usize = 6_000;
/// Components per Gaussian mixture in the busy-background fallback.
const GMM_COMPONENTS: usize = 5;
/// Busy fallback: the outer strip (fraction of the shorter side) that is always background.
const BUSY_HARD_BORDER: f32 = 0.03;
/// Busy fallback: log-odds bonus of the centre over the borders.
const BUSY_PRIOR: f32 = 1.5;
/// Busy fallback: weight of the smoothness term of the mean-field update.
const BUSY_SMOOTHNESS: f32 = 0.9;
/// Busy fallback: how much the colour models count (scale of their clamped log-likelihood ratio).
const BUSY_COLOUR_WEIGHT: f32 = 0.6;
/// Busy fallback: radius (working pixels) of the opening applied to the mask.
const BUSY_OPENING: usize = 2;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Copy)]
struct Comp {
    /// log(weight) - log(sqrt((2π)³ det Σ)).
    c: f32,
    mean: [f32; 3],
    /// Inverse covariance: xx, xy, xz, yy, yz, zz.
    icov: [f32; 6],
}

/// A small full-covariance Gaussian mixture in Lab.
struct Gmm {
    comps: Vec<Comp>,
}

/// Squared Euclidean distance in Lab.
fn d2(a: [f32; 3], b: [f32; 3]) -> f32 {
    let d = [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
}

impl Gmm {
    /// Fit `k` components to `samples` (at most [`GMM_MAX_SAMPLES`] of them,
    /// evenly picked): k-means++ seeds, eight k-means rounds, then one full
    /// covariance per cluster. None with fewer than 8 samples or no usable
    /// component.
    fn fit(samples: &[[f32; 3]], k: usize, rng: &mut XorShift) -> Option<Gmm> {
        let step = samples.len().div_ceil(GMM_MAX_SAMPLES).max(1);
        let pts: Vec<[f32; 3]> = samples.iter().step_by(step).copied().collect();
        let n = pts.len();
        if n < 8 {
            return None;
        }
        let mut centres = seed_centres(&pts, k.min(n / 8).max(1), rng);
        let assign = kmeans(&pts, &mut centres);
        let (acc, cnt) = scatter(&pts, &centres, &assign);
        let comps: Vec<Comp> = (0..centres.len())
            .filter_map(|j| component(acc[j], cnt[j], n, centres[j]))
            .collect();
        (!comps.is_empty()).then_some(Gmm { comps })
    }

    fn log_lik(&self, x: [f32; 3]) -> f32 {
        let mut terms = [f32::MIN; GMM_COMPONENTS];
        let mut best = f32::MIN;
        for (t, g) in terms.iter_mut().zip(&self.comps) {
            let d = [x[0] - g.mean[0], x[1] - g.mean[1], x[2] - g.mean[2]];
            let q = &g.icov;
            let m = q[0] * d[0] * d[0]
                + q[3] * d[1] * d[1]
                + q[5] * d[2] * d[2]
                + 2.0 * (q[1] * d[0] * d[1] + q[2] * d[0] * d[2] + q[4] * d[1] * d[2]);
            *t = g.c - 0.5 * m;
            best = best.max(*t);
        }
        let s: f32 = terms
            .iter()
            .take(self.comps.len())
            .map(|&t| (t - best).exp())
            .sum();
        best + s.max(1e-30).ln()
    }
}

/// k-means++ seeding: up to `k` centres, each drawn with probability
/// proportional to its squared distance from the nearest centre so far.
fn seed_centres(pts: &[[f32; 3]], k: usize, rng: &mut XorShift) -> Vec<[f32; 3]> {
    let n = pts.len();
    let mut centres = vec![pts[(rng.next() % n as u64) as usize]];
    let mut near = vec![f32::MAX; n];
    while centres.len() < k {
        let last = centres[centres.len() - 1];
        for (d, p) in near.iter_mut().zip(pts) {
            *d = d.min(d2(*p, last));
        }
        let total: f64 = near.iter().map(|&d| f64::from(d)).sum();
        if total <= 1e-6 {
            break;
        }
        let mut target = rng.unit() * total;
        let mut pick = n - 1;
        for (i, &d) in near.iter().enumerate() {
            target -= f64::from(d);
            if target <= 0.0 {
                pick = i;
                break;
            }
        }
        centres.push(pts[pick]);
    }
    centres
}

/// Eight rounds of k-means from `centres` (moved in place); the last
/// assignment of every point to its nearest centre.
fn kmeans(pts: &[[f32; 3]], centres: &mut [[f32; 3]]) -> Vec<usize> {
    let mut assign = vec![0usize; pts.len()];
    for _ in 0..8 {
        for (a, p) in assign.iter_mut().zip(pts) {
            let mut best = (f32::MAX, 0);
            for (j, c) in centres.iter().enumerate() {
                let d = d2(*p, *c);
                if d < best.0 {
                    best = (d, j);
                }
            }
            *a = best.1;
        }
        let mut sum = vec![[0f64; 4]; centres.len()];
        for (&a, p) in assign.iter().zip(pts) {
            for ch in 0..3 {
                sum[a][ch] += f64::from(p[ch]);
            }
            sum[a][3] += 1.0;
        }
        for (c, s) in centres.iter_mut().zip(&sum) {
            if s[3] > 0.0 {
                *c = [
                    (s[0] / s[3]) as f32,
                    (s[1] / s[3]) as f32,
                    (s[2] / s[3]) as f32,
                ];
            }
        }
    }
    assign
}

/// Per cluster: the scatter sums (xx, xy, xz, yy, yz, zz) around its centre
/// and its number of points.
fn scatter(
    pts: &[[f32; 3]],
    centres: &[[f32; 3]],
    assign: &[usize],
) -> (Vec<[f64; 6]>, Vec<usize>) {
    let k = centres.len();
    let mut acc = vec![[0f64; 6]; k];
    let mut cnt = vec![0usize; k];
    for (&a, p) in assign.iter().zip(pts) {
        let m = centres[a];
        let d = [
            f64::from(p[0] - m[0]),
            f64::from(p[1] - m[1]),
            f64::from(p[2] - m[2]),
        ];
        let s = &mut acc[a];
        s[0] += d[0] * d[0];
        s[1] += d[0] * d[1];
        s[2] += d[0] * d[2];
        s[3] += d[1] * d[1];
        s[4] += d[1] * d[2];
        s[5] += d[2] * d[2];
        cnt[a] += 1;
    }
    (acc, cnt)
}

/// One mixture component from a cluster's scatter sums `s` over `count` of
/// `n` points (covariance regularised by 2 on the diagonal, inverted by
/// cofactors); None for fewer than 2 points or a singular covariance.
fn component(s: [f64; 6], count: usize, n: usize, mean: [f32; 3]) -> Option<Comp> {
    if count < 2 {
        return None;
    }
    let c = count as f64;
    let reg = 2.0;
    let (a, b, cc, d, e, f) = (
        s[0] / c + reg,
        s[1] / c,
        s[2] / c,
        s[3] / c + reg,
        s[4] / c,
        s[5] / c + reg,
    );
    let ca = d * f - e * e;
    let cb = cc * e - b * f;
    let ccf = b * e - cc * d;
    let det = a * ca + b * cb + cc * ccf;
    if det.is_nan() || det <= 1e-9 || !det.is_finite() {
        return None;
    }
    let cd = a * f - cc * cc;
    let ce = b * cc - a * e;
    let cf = a * d - b * b;
    let icov = [ca, cb, ccf, cd, ce, cf].map(|v| (v / det) as f32);
    let lw = (c / n as f64).ln() - 0.5 * det.ln() - 1.5 * (2.0 * std::f64::consts::PI).ln();
    Some(Comp {
        c: lw as f32,
        mean,
        icov,
    })
}

/// Contrast-sensitive neighbour weights (GrabCut's β), towards the right, down,
/// down-right and down-left neighbour of each pixel.
struct Edges {
    e: Vec<f32>,
    s: Vec<f32>,
    se: Vec<f32>,
    sw: Vec<f32>,
}

fn edges(w: usize, h: usize, lab: &[[f32; 3]]) -> Edges {
    let n = w * h;
    let d2 = |a: [f32; 3], b: [f32; 3]| {
        let d = dist3(a, b);
        d * d
    };
    let mut raw = Edges {
        e: vec![0.0; n],
        s: vec![0.0; n],
        se: vec![0.0; n],
        sw: vec![0.0; n],
    };
    let (mut sum, mut cnt) = (0f64, 0f64);
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if x + 1 < w {
                raw.e[i] = d2(lab[i], lab[i + 1]);
                sum += f64::from(raw.e[i]);
                cnt += 1.0;
            }
            if y + 1 < h {
                raw.s[i] = d2(lab[i], lab[i + w]);
                sum += f64::from(raw.s[i]);
                cnt += 1.0;
                if x + 1 < w {
                    raw.se[i] = d2(lab[i], lab[i + w + 1]);
                }
                if x > 0 {
                    raw.sw[i] = d2(lab[i], lab[i + w - 1]);
                }
            }
        }
    }
    let beta = (0.5 / (sum / cnt.max(1.0)).max(1e-3)) as f32;
    let diag = std::f32::consts::FRAC_1_SQRT_2;
    let conv = |v: &mut Vec<f32>, k: f32| v.iter_mut().for_each(|d| *d = k * (-beta * *d).exp());
    conv(&mut raw.e, 1.0);
    conv(&mut raw.s, 1.0);
    conv(&mut raw.se, diag);
    conv(&mut raw.sw, diag);
    raw
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// In-place (Gauss–Seidel) mean-field sweeps of a binary MRF with unary log-odds `u`.
fn mean_field(w: usize, h: usize, q: &mut [f32], u: &[f32], ed: &Edges, sweeps: usize) {
    for sweep in 0..sweeps {
        for k in 0..w * h {
            let i = if sweep % 2 == 0 { k } else { w * h - 1 - k };
            let (x, y) = (i % w, i / w);
            let s = |j: usize| 2.0 * q[j] - 1.0;
            let mut field = 0f32;
            if x + 1 < w {
                field += ed.e[i] * s(i + 1);
            }
            if x > 0 {
                field += ed.e[i - 1] * s(i - 1);
            }
            if y + 1 < h {
                field += ed.s[i] * s(i + w);
                if x + 1 < w {
                    field += ed.se[i] * s(i + w + 1);
                }
                if x > 0 {
                    field += ed.sw[i] * s(i + w - 1);
                }
            }
            if y > 0 {
                field += ed.s[i - w] * s(i - w);
                if x > 0 {
                    field += ed.se[i - w - 1] * s(i - w - 1);
                }
                if x + 1 < w {
                    field += ed.sw[i - w + 1] * s(i - w + 1);
                }
            }
            q[i] = sigmoid(u[i] + BUSY_SMOOTHNESS * field);
        }
    }
}

/// Busy border (a real photo): border-seeded colour-model segmentation keeping what
/// is connected to the centre.
pub(super) fn busy_plan(
    img: &RgbaImage,
    main: &Work,
    o: &BackdropOptions,
) -> Result<Plan, SegmentError> {
    let max_side = o.busy_working_max_side as usize;
    let work = if main.w.max(main.h) <= max_side {
        main.clone()
    } else {
        Work::downsample(img, max_side)
    };
    let (w, h) = (work.w, work.h);
    let lut = srgb_to_linear_lut();
    let lab: Vec<[f32; 3]> = work.rgb.iter().map(|&p| to_lab(&lut, p)).collect();
    let seeds = Seeds::of(&work);
    let q = segment(w, h, &lab, &seeds);
    let mut binary: Vec<bool> = (0..w * h).map(|i| !seeds.hard[i] && q[i] > 0.5).collect();
    // Opening (radius 2) cuts thin bridges and strands to the background.
    for _ in 0..BUSY_OPENING {
        binary = erode(w, h, &binary);
    }
    for _ in 0..BUSY_OPENING {
        binary = dilate(w, h, &binary);
    }
    let min_px = ((o.min_object_fraction * (w * h) as f32) as usize).max(4);
    let mut object = centre_object(w, h, &binary, &seeds.centre_patch, min_px)?;
    fill_holes(w, h, &mut object, &seeds.hard);
    Ok(plan_of(&work, &object))
}

/// Where the busy fallback starts from, per working pixel.
struct Seeds {
    /// Surely background: transparent, or in the outer strip.
    hard: Vec<bool>,
    /// Log-odds bonus of the centre over the borders.
    prior: Vec<f32>,
    /// First foreground sample: the central disc.
    centre_fg: Vec<bool>,
    /// First background sample: the outer frame.
    outer_bg: Vec<bool>,
    /// The small central patch a kept object must touch.
    centre_patch: Vec<bool>,
}

impl Seeds {
    fn of(work: &Work) -> Seeds {
        let (w, h) = (work.w, work.h);
        let n = w * h;
        let strip = strip_width(w, h, BUSY_HARD_BORDER);
        let mut s = Seeds {
            hard: vec![false; n],
            prior: vec![0f32; n],
            centre_fg: vec![false; n],
            outer_bg: vec![false; n],
            centre_patch: vec![false; n],
        };
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let (u, v) = uv(x, y, w, h);
                let hard = work.alpha[i] < 128
                    || x < strip
                    || y < strip
                    || x + strip >= w
                    || y + strip >= h;
                let r2 = u * u + v * v;
                s.hard[i] = hard;
                s.prior[i] = (BUSY_PRIOR * (1.0 - r2 / 0.5)).clamp(-2.0 * BUSY_PRIOR, BUSY_PRIOR);
                s.centre_fg[i] = !hard && r2 < 0.25;
                s.outer_bg[i] = hard || u.abs().max(v.abs()) > 0.9;
                s.centre_patch[i] = u.abs() < 0.1 && v.abs() < 0.1;
            }
        }
        s
    }
}

/// Four rounds of: fit the foreground and background colour models to the
/// current samples, mean-field smoothing of their log-likelihood ratio plus
/// the centre prior, re-sample. The foreground probability per pixel.
fn segment(w: usize, h: usize, lab: &[[f32; 3]], seeds: &Seeds) -> Vec<f32> {
    let n = w * h;
    let ed = edges(w, h, lab);
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut q = vec![0.5f32; n];
    let mut unary = vec![0f32; n];
    let mut fg_sel = seeds.centre_fg.clone();
    let mut bg_sel = seeds.outer_bg.clone();
    let hard = &seeds.hard;
    for round in 0..4 {
        let pick = |sel: &[bool]| -> Vec<[f32; 3]> {
            sel.iter()
                .zip(lab)
                .filter(|(s, _)| **s)
                .map(|(_, p)| *p)
                .collect()
        };
        let (Some(fgm), Some(bgm)) = (
            Gmm::fit(&pick(&fg_sel), GMM_COMPONENTS, &mut rng),
            Gmm::fit(&pick(&bg_sel), GMM_COMPONENTS, &mut rng),
        ) else {
            break;
        };
        for i in 0..n {
            unary[i] = if hard[i] {
                -20.0
            } else {
                let llr = (fgm.log_lik(lab[i]) - bgm.log_lik(lab[i])).clamp(-8.0, 8.0);
                BUSY_COLOUR_WEIGHT * llr + seeds.prior[i]
            };
            if round == 0 {
                q[i] = sigmoid(unary[i]);
            }
        }
        mean_field(w, h, &mut q, &unary, &ed, 6);
        for i in 0..n {
            fg_sel[i] = !hard[i] && q[i] > 0.5;
            bg_sel[i] = hard[i] || q[i] <= 0.5;
        }
    }
    q
}

/// The parts of `binary` that touch the centre patch (else the largest
/// part), each at least `min_px`; [`SegmentError::NoObject`] when none is.
fn centre_object(
    w: usize,
    h: usize,
    binary: &[bool],
    centre_patch: &[bool],
    min_px: usize,
) -> Result<Vec<bool>, SegmentError> {
    let (labels, sizes) = label_sizes(w, h, binary, true);
    let mut keep = vec![false; sizes.len()];
    for (i, &l) in labels.iter().enumerate() {
        if l > 0 && centre_patch[i] {
            keep[l as usize] = true;
        }
    }
    if !keep.iter().any(|&k| k) {
        let largest = sizes.iter().enumerate().max_by_key(|(_, s)| **s);
        if let Some((id, _)) = largest.filter(|(_, s)| **s >= min_px) {
            keep[id] = true;
        }
    }
    let object: Vec<bool> = labels
        .iter()
        .map(|&l| l > 0 && keep[l as usize] && sizes[l as usize] >= min_px)
        .collect();
    if !object.iter().any(|&b| b) {
        return Err(SegmentError::NoObject);
    }
    Ok(object)
}

/// Fill every hole: without a plain backdrop nothing proves that a hole is
/// see-through (what is surely background stays out).
fn fill_holes(w: usize, h: usize, object: &mut [bool], hard: &[bool]) {
    let not_obj: Vec<bool> = object.iter().map(|b| !b).collect();
    let outside = flood(
        w,
        h,
        &not_obj,
        border_pixels(w, h).filter(|&i| !object[i]),
        false,
    );
    for i in 0..w * h {
        object[i] = !outside[i] && (object[i] || !hard[i]);
    }
}

/// The plan for `object`: its edge softened by a small blur, the colours
/// pushed in from the object's and the background's interiors.
fn plan_of(work: &Work, object: &[bool]) -> Plan {
    let (w, h) = (work.w, work.h);
    let rgb = work.rgb_f32();
    let mut interior = erode(w, h, object);
    if !interior.iter().any(|&b| b) {
        interior = object.to_vec();
    }
    let not_obj: Vec<bool> = object.iter().map(|b| !b).collect();
    let mut bg_interior = erode(w, h, &not_obj);
    if !bg_interior.iter().any(|&b| b) {
        bg_interior = not_obj;
    }
    let mut alpha: Vec<f32> = object.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
    box_blur(w, h, &mut alpha, 1, 2);
    Plan {
        w,
        h,
        alpha,
        fg: push_pull(w, h, &rgb, &interior),
        bg: push_pull(w, h, &rgb, &bg_interior),
        unmix: false,
        noise_rgb: 0.0,
    }
}
