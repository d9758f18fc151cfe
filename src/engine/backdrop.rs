//! Built-in segmenter of the `local` provider: turns one decoded product photo into a
//! cut-out (same size, RGBA, alpha = object mask).
//!
//! What this module owns:
//! * estimating the studio backdrop from the picture's borders (a robust per-channel
//!   quadratic surface in CIE Lab, plus its noise level),
//! * separating the object from it (shadow-tolerant distance, noise-derived hysteresis,
//!   border flood fill, hole and speck handling),
//! * a soft, anti-aliased alpha edge refined at full resolution, and
//! * colour decontamination of the edge (no backdrop halo or tint).
//!
//! When the border is not a plain backdrop (a busy real photo) it falls back to a
//! border-seeded colour-model segmentation (GrabCut-like: two small Gaussian mixtures,
//! a centre prior and a contrast-sensitive mean-field smoothing) that keeps the
//! object(s) at the centre.
//!
//! How (plain backdrop), on a copy downscaled to [`BackdropOptions::working_max_side`]:
//! 1. fit backdrop colour = per-channel quadratic in (x, y), in CIE Lab, to the border
//!    strip by Tukey-reweighted least squares; noise = median residual of the inliers;
//! 2. per pixel, a shadow-tolerant distance to it (a darkening with the backdrop's
//!    chroma scaled alike counts little); hysteresis with noise-derived thresholds;
//!    darker-only regions with a sharp outline (grey objects) are kept, soft ones
//!    (shadows) are not;
//! 3. flood the backdrop from the border; enclosed regions that match the backdrop
//!    (mean residual within noise, solid, not tiny) become holes, other ones are filled;
//!    silhouette pixels closer to the local backdrop than to the local object colour
//!    are peeled off (JPEG ringing, contact shadows); specks are dropped;
//! 4. at full resolution, the mask is upsampled bilinearly and, in the edge band, alpha
//!    comes from un-mixing the local backdrop and object colours; the backdrop colour is
//!    then removed from edge pixels: `C_fg = (C − (1−α)·B) / α`.
//!
//! What it must not do: no I/O of any kind (no file, network or environment access, no
//! logging, no global state, no threads) — callers decode and encode; and it must not
//! panic on any input image (any size, any pixel values, any alpha) or any options value:
//! every failure is a [`SegmentError`].

use image::RgbaImage;

/// Smallest width and height that [`cut_out`] accepts.
const MIN_SIDE: u32 = 8;
/// Most border pixels used to fit the backdrop model.
const MAX_BORDER_SAMPLES: usize = 40_000;
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

/// Tunables of [`cut_out`]. Every value is clamped to a sane range before use
/// (non-finite values fall back to the default), so no setting can make it panic.
#[derive(Debug, Clone)]
pub struct BackdropOptions {
    /// Longest side (pixels) of the downscaled copy on which the backdrop model and the
    /// mask are computed; the mask is then upsampled and its edge band refined at full
    /// resolution. Default 1024 (clamped to 64..=4096).
    pub working_max_side: u32,
    /// Longest side (pixels) of the copy used by the busy-background fallback.
    /// Default 512 (clamped to 64..=2048).
    pub busy_working_max_side: u32,
    /// Width of the border strip sampled to model the backdrop, as a fraction of the
    /// shorter side. Default 0.03 (clamped to 0.005..=0.2).
    pub border_fraction: f32,
    /// Largest typical border residual (median CIE ΔE76 against the fitted backdrop
    /// surface) for the border to count as a plain backdrop; above it the busy fallback
    /// is used. Default 4.0.
    pub max_backdrop_noise: f32,
    /// Least share of border samples that must agree with the backdrop model for it to
    /// count as a plain backdrop (the rest may be the object touching the frame).
    /// Default 0.6.
    pub min_backdrop_share: f32,
    /// Low hysteresis threshold, in multiples of the measured backdrop noise: pixels
    /// farther than this from the backdrop join the object if connected to a strong
    /// pixel. Default 3.0.
    pub low_threshold_noise: f32,
    /// High hysteresis threshold (strong object evidence), in multiples of the measured
    /// backdrop noise. Default 6.0.
    pub high_threshold_noise: f32,
    /// Floor of the low threshold, in CIE ΔE76. Default 3.0.
    pub min_low_threshold: f32,
    /// Floor of the high threshold, in CIE ΔE76. Default 8.0.
    pub min_high_threshold: f32,
    /// Darkening (as a fraction of the backdrop's L*+16) that, with unchanged chroma, is
    /// taken for a shadow and counts only `shadow_weight`. Default 0.25 (a shadow that
    /// takes up to ~57% of the light away).
    pub shadow_tolerance: f32,
    /// Weight of a darkening within `shadow_tolerance`. Default 0.15.
    pub shadow_weight: f32,
    /// Object parts smaller than this fraction of the picture are removed as specks.
    /// Default 0.0005.
    pub min_object_fraction: f32,
    /// Object parts smaller than this fraction of the largest part are removed as
    /// specks. Default 0.02.
    pub min_object_relative: f32,
    /// Enclosed holes that clearly show the backdrop (a mug handle's hole) become
    /// transparent when at least this fraction of the picture; smaller ones are filled.
    /// Default 0.0003.
    pub min_hole_fraction: f32,
    /// Un-mix the backdrop colour out of semi-transparent edge pixels and give fully
    /// transparent pixels the nearest object colour instead of the backdrop's.
    /// Default true.
    pub decontaminate: bool,
}

impl Default for BackdropOptions {
    fn default() -> Self {
        Self {
            working_max_side: 1024,
            busy_working_max_side: 512,
            border_fraction: 0.03,
            max_backdrop_noise: 4.0,
            min_backdrop_share: 0.6,
            low_threshold_noise: 3.0,
            high_threshold_noise: 6.0,
            min_low_threshold: 3.0,
            min_high_threshold: 8.0,
            shadow_tolerance: 0.25,
            shadow_weight: 0.15,
            min_object_fraction: 0.0005,
            min_object_relative: 0.02,
            min_hole_fraction: 0.0003,
            decontaminate: true,
        }
    }
}

impl BackdropOptions {
    /// A copy with every value forced into a sane range.
    fn sanitized(&self) -> Self {
        let d = Self::default();
        let f = |v: f32, lo: f32, hi: f32, def: f32| {
            if v.is_finite() {
                v.clamp(lo, hi)
            } else {
                def
            }
        };
        Self {
            working_max_side: self.working_max_side.clamp(64, 4096),
            busy_working_max_side: self.busy_working_max_side.clamp(64, 2048),
            border_fraction: f(self.border_fraction, 0.005, 0.2, d.border_fraction),
            max_backdrop_noise: f(self.max_backdrop_noise, 0.0, 100.0, d.max_backdrop_noise),
            min_backdrop_share: f(self.min_backdrop_share, 0.0, 1.0, d.min_backdrop_share),
            low_threshold_noise: f(self.low_threshold_noise, 0.0, 100.0, d.low_threshold_noise),
            high_threshold_noise: f(
                self.high_threshold_noise,
                0.0,
                100.0,
                d.high_threshold_noise,
            ),
            min_low_threshold: f(self.min_low_threshold, 0.1, 200.0, d.min_low_threshold),
            min_high_threshold: f(self.min_high_threshold, 0.1, 200.0, d.min_high_threshold),
            shadow_tolerance: f(self.shadow_tolerance, 0.0, 0.9, d.shadow_tolerance),
            shadow_weight: f(self.shadow_weight, 0.0, 1.0, d.shadow_weight),
            min_object_fraction: f(self.min_object_fraction, 0.0, 0.5, d.min_object_fraction),
            min_object_relative: f(self.min_object_relative, 0.0, 1.0, d.min_object_relative),
            min_hole_fraction: f(self.min_hole_fraction, 0.0, 1.0, d.min_hole_fraction),
            decontaminate: self.decontaminate,
        }
    }
}

/// Why no cut-out could be made.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("image is too small to segment ({width}x{height}); it needs at least 8x8 pixels")]
    TooSmall { width: u32, height: u32 },
    #[error("no object found: the whole picture looks like backdrop")]
    NoObject,
}

/// Returns an RGBA image of the same size: original colours (decontaminated at the edge), alpha = mask.
///
/// Pixels that are already transparent in `img` (alpha < 128 on the downscaled copy)
/// count as backdrop and the input alpha caps the output alpha. A picture whose border
/// is mostly transparent is taken to be cut out already and is returned unchanged.
///
/// With [`BackdropOptions::decontaminate`] (the default) the RGB of fully transparent
/// pixels is the nearest object colour (smoothly extended outwards), never the backdrop,
/// so that resampling the cut-out without premultiplying shows no halo.
pub fn cut_out(img: &RgbaImage, opts: &BackdropOptions) -> Result<RgbaImage, SegmentError> {
    let (width, height) = img.dimensions();
    if width < MIN_SIDE || height < MIN_SIDE {
        return Err(SegmentError::TooSmall { width, height });
    }
    let o = opts.sanitized();
    let work = Work::downsample(img, o.working_max_side as usize);
    let border = border_indices(work.w, work.h, o.border_fraction, MAX_BORDER_SAMPLES);
    let samples: Vec<usize> = border
        .iter()
        .copied()
        .filter(|&i| work.alpha[i] >= 128)
        .collect();
    if samples.len() * 4 < border.len() {
        // Mostly transparent border: the caller handed us a cut-out already.
        return if img.pixels().any(|p| p.0[3] > 0) {
            Ok(img.clone())
        } else {
            Err(SegmentError::NoObject)
        };
    }
    let lut = srgb_to_linear_lut();
    let lab: Vec<[f32; 3]> = work.rgb.iter().map(|&p| to_lab(&lut, p)).collect();
    let plan = match fit_backdrop(&work, &lab, &samples) {
        Some(fit) if fit.noise <= o.max_backdrop_noise && fit.share >= o.min_backdrop_share => {
            plain_plan(img, &work, &lab, &fit, &o)?
        }
        _ => busy_plan(img, &work, &o)?,
    };
    Ok(render(img, &plan, o.decontaminate))
}

// ---------------------------------------------------------------------------------------
// Working copy
// ---------------------------------------------------------------------------------------

/// A (possibly) downscaled copy of the input, row-major.
#[derive(Clone)]
struct Work {
    w: usize,
    h: usize,
    rgb: Vec<[u8; 3]>,
    alpha: Vec<u8>,
}

impl Work {
    /// Area-averaging downscale so that the longest side is at most `max_side` (never
    /// below 8 pixels a side, never upscaled).
    fn downsample(img: &RgbaImage, max_side: usize) -> Work {
        let (sw, sh) = (img.width() as usize, img.height() as usize);
        let raw: &[u8] = img.as_raw();
        let longest = sw.max(sh).max(1);
        let scale = if longest > max_side {
            max_side as f64 / longest as f64
        } else {
            1.0
        };
        let w = ((sw as f64 * scale).round() as usize).clamp(sw.min(8), sw);
        let h = ((sh as f64 * scale).round() as usize).clamp(sh.min(8), sh);
        let mut rgb = Vec::with_capacity(w * h);
        let mut alpha = Vec::with_capacity(w * h);
        if w == sw && h == sh {
            for px in raw.chunks_exact(4).take(w * h) {
                rgb.push([px[0], px[1], px[2]]);
                alpha.push(px[3]);
            }
            return Work { w, h, rgb, alpha };
        }
        let col_of: Vec<usize> = (0..sw).map(|x| x * w / sw).collect();
        let mut col_count = vec![0u64; w];
        for &c in &col_of {
            col_count[c] += 1;
        }
        let mut acc = vec![[0u64; 4]; w];
        for oy in 0..h {
            let y0 = oy * sh / h;
            let y1 = ((oy + 1) * sh / h).clamp(y0 + 1, sh);
            acc.iter_mut().for_each(|a| *a = [0; 4]);
            for y in y0..y1 {
                let row = raw.get(y * sw * 4..(y + 1) * sw * 4).unwrap_or(&[]);
                for (px, &c) in row.chunks_exact(4).zip(&col_of) {
                    let a = &mut acc[c];
                    a[0] += u64::from(px[0]);
                    a[1] += u64::from(px[1]);
                    a[2] += u64::from(px[2]);
                    a[3] += u64::from(px[3]);
                }
            }
            let rows = (y1 - y0) as u64;
            for (a, &cnt) in acc.iter().zip(&col_count) {
                let d = (cnt * rows).max(1);
                let avg = |s: u64| ((s + d / 2) / d).min(255) as u8;
                rgb.push([avg(a[0]), avg(a[1]), avg(a[2])]);
                alpha.push(avg(a[3]));
            }
        }
        Work { w, h, rgb, alpha }
    }

    fn rgb_f32(&self) -> Vec<[f32; 3]> {
        self.rgb
            .iter()
            .map(|p| [f32::from(p[0]), f32::from(p[1]), f32::from(p[2])])
            .collect()
    }
}

/// Normalised coordinates of a pixel centre, in [-1, 1] on both axes, identical for
/// every resolution of the same picture.
fn uv(x: usize, y: usize, w: usize, h: usize) -> (f32, f32) {
    (
        (x as f32 + 0.5) / w as f32 * 2.0 - 1.0,
        (y as f32 + 0.5) / h as f32 * 2.0 - 1.0,
    )
}

/// Width of a border strip for a `w`x`h` picture.
fn strip_width(w: usize, h: usize, frac: f32) -> usize {
    let short = w.min(h);
    ((frac * short as f32).round() as usize).clamp(1, (short / 4).max(1))
}

/// Indices of the pixels in the border strip, evenly thinned to at most `max` of them.
fn border_indices(w: usize, h: usize, frac: f32, max: usize) -> Vec<usize> {
    let s = strip_width(w, h, frac);
    let mut all = Vec::new();
    for y in 0..h {
        for x in 0..w {
            if x < s || y < s || x + s >= w || y + s >= h {
                all.push(y * w + x);
            }
        }
    }
    let step = all.len().div_ceil(max.max(1)).max(1);
    all.into_iter().step_by(step).collect()
}

// ---------------------------------------------------------------------------------------
// Colour
// ---------------------------------------------------------------------------------------

fn srgb_to_linear_lut() -> [f32; 256] {
    let mut lut = [0f32; 256];
    for (i, v) in lut.iter_mut().enumerate() {
        let c = i as f32 / 255.0;
        *v = if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        };
    }
    lut
}

/// sRGB (8-bit) to CIE L*a*b* (D65).
fn to_lab(lut: &[f32; 256], p: [u8; 3]) -> [f32; 3] {
    let (r, g, b) = (
        lut[usize::from(p[0])],
        lut[usize::from(p[1])],
        lut[usize::from(p[2])],
    );
    let x = (0.412_456_4 * r + 0.357_576_1 * g + 0.180_437_5 * b) / 0.950_47;
    let y = 0.212_672_9 * r + 0.715_152_2 * g + 0.072_175 * b;
    let z = (0.019_333_9 * r + 0.119_192 * g + 0.950_304_1 * b) / 1.088_83;
    let f = |t: f32| {
        if t > 0.008_856 {
            t.cbrt()
        } else {
            7.787 * t + 16.0 / 116.0
        }
    };
    let (fx, fy, fz) = (f(x), f(y), f(z));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

fn dist3(a: [f32; 3], b: [f32; 3]) -> f32 {
    norm3([a[0] - b[0], a[1] - b[1], a[2] - b[2]])
}

fn norm3(a: [f32; 3]) -> f32 {
    (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt()
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

fn median(v: &mut [f32]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f32::total_cmp);
    *m
}

/// Residual of a pixel against the local backdrop colour (both Lab), tolerant of
/// shadows: a darkening within the tolerance counts only `weight`, and the backdrop's
/// chroma is scaled down with the lightness (a multiplicative shadow scales L*+16, a*
/// and b* alike), so only a real change of hue or saturation counts in full.
fn shadow_residual(p: [f32; 3], b: [f32; 3], tolerance: f32, weight: f32) -> [f32; 3] {
    let dl = p[0] - b[0];
    if dl >= 0.0 {
        return [dl, p[1] - b[1], p[2] - b[2]];
    }
    let dark = -dl;
    let base = (b[0] + 16.0).max(1.0);
    let allowance = tolerance * base;
    let eff = if dark <= allowance {
        dark * weight
    } else {
        allowance * weight + (dark - allowance)
    };
    let s = ((p[0] + 16.0) / base).clamp(0.2, 1.0);
    [-eff, p[1] - s * b[1], p[2] - s * b[2]]
}

// ---------------------------------------------------------------------------------------
// Backdrop model: per-channel quadratic surface, robust least squares
// ---------------------------------------------------------------------------------------

/// Per-channel quadratic in (u, v): c0 + c1 u + c2 v + c3 u² + c4 uv + c5 v².
#[derive(Clone, Copy, Debug)]
struct Quad([[f64; 6]; 3]);

fn basis(u: f32, v: f32) -> [f64; 6] {
    let (u, v) = (f64::from(u), f64::from(v));
    [1.0, u, v, u * u, u * v, v * v]
}

impl Quad {
    fn constant(c: [f32; 3]) -> Quad {
        let mut q = [[0f64; 6]; 3];
        for (row, &v) in q.iter_mut().zip(&c) {
            row[0] = f64::from(v);
        }
        Quad(q)
    }

    fn eval(&self, u: f32, v: f32) -> [f32; 3] {
        let p = basis(u, v);
        let mut out = [0f32; 3];
        for (o, c) in out.iter_mut().zip(&self.0) {
            *o = c.iter().zip(&p).map(|(a, b)| a * b).sum::<f64>() as f32;
        }
        out
    }

    /// Weighted least squares (with a tiny ridge on the non-constant terms).
    fn fit(uvs: &[(f32, f32)], vals: &[[f32; 3]], weights: &[f32]) -> Option<Quad> {
        let mut a = [[0f64; 6]; 6];
        let mut b = [[0f64; 6]; 3];
        let mut sw = 0f64;
        for ((&(u, v), val), &w) in uvs.iter().zip(vals).zip(weights) {
            if w <= 0.0 {
                continue;
            }
            let w = f64::from(w);
            let p = basis(u, v);
            for r in 0..6 {
                for c in 0..6 {
                    a[r][c] += w * p[r] * p[c];
                }
                for ch in 0..3 {
                    b[ch][r] += w * p[r] * f64::from(val[ch]);
                }
            }
            sw += w;
        }
        if sw < 6.0 {
            return None;
        }
        for (d, row) in a.iter_mut().enumerate().skip(1) {
            row[d] += 1e-3 * sw;
        }
        let mut q = [[0f64; 6]; 3];
        for ch in 0..3 {
            q[ch] = solve6(a, b[ch])?;
        }
        Some(Quad(q))
    }
}

/// Gaussian elimination with partial pivoting.
fn solve6(mut a: [[f64; 6]; 6], mut b: [f64; 6]) -> Option<[f64; 6]> {
    for col in 0..6 {
        let piv = (col..6).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs() < 1e-12 || !a[piv][col].is_finite() {
            return None;
        }
        a.swap(col, piv);
        b.swap(col, piv);
        let pivot_row = a[col];
        let pivot_b = b[col];
        for (row, rb) in a.iter_mut().zip(b.iter_mut()).skip(col + 1) {
            let f = row[col] / pivot_row[col];
            for (v, p) in row.iter_mut().zip(&pivot_row).skip(col) {
                *v -= f * p;
            }
            *rb -= f * pivot_b;
        }
    }
    let mut x = [0f64; 6];
    for r in (0..6).rev() {
        let s: f64 = (r + 1..6).map(|c| a[r][c] * x[c]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// The fitted backdrop.
struct BackdropFit {
    /// Backdrop colour in Lab over the picture.
    lab: Quad,
    /// The same in sRGB (0..255), fitted on the same inliers.
    rgb: Quad,
    /// Typical (median) residual of the backdrop's border pixels, ΔE76.
    noise: f32,
    /// Share of border samples that agree with the model.
    share: f32,
}

/// Robust fit of the backdrop surface to the border samples: starts from the median
/// colour and iterates Tukey-biweighted least squares with a cut-off derived from the
/// median residual, so the object touching the frame or shadows on the border are
/// rejected as outliers.
fn fit_backdrop(work: &Work, lab: &[[f32; 3]], samples: &[usize]) -> Option<BackdropFit> {
    let n = samples.len();
    if n < 16 {
        return None;
    }
    let uvs: Vec<(f32, f32)> = samples
        .iter()
        .map(|&i| uv(i % work.w, i / work.w, work.w, work.h))
        .collect();
    let labs: Vec<[f32; 3]> = samples.iter().map(|&i| lab[i]).collect();
    let mut start = [0f32; 3];
    for (ch, s) in start.iter_mut().enumerate() {
        let mut c: Vec<f32> = labs.iter().map(|p| p[ch]).collect();
        *s = median(&mut c);
    }
    let mut model = Quad::constant(start);
    let mut cut = f32::INFINITY;
    let mut weights = vec![1f32; n];
    let mut res = vec![0f32; n];
    let tukey = |r: f32, c: f32| {
        if r < c {
            let t = r / c;
            (1.0 - t * t) * (1.0 - t * t)
        } else {
            0.0
        }
    };
    for _ in 0..10 {
        for ((r, p), &(u, v)) in res.iter_mut().zip(&labs).zip(&uvs) {
            *r = dist3(*p, model.eval(u, v));
        }
        let mut kept: Vec<f32> = res.iter().copied().filter(|&r| r < cut).collect();
        if kept.len() < 16 {
            kept.clone_from(&res);
        }
        let scale = median(&mut kept).max(0.25);
        cut = 4.5 * scale;
        for (w, &r) in weights.iter_mut().zip(&res) {
            *w = tukey(r, cut);
        }
        match Quad::fit(&uvs, &labs, &weights) {
            Some(m) => model = m,
            None => break,
        }
    }
    for ((r, p), &(u, v)) in res.iter_mut().zip(&labs).zip(&uvs) {
        *r = dist3(*p, model.eval(u, v));
    }
    let mut kept: Vec<f32> = res.iter().copied().filter(|&r| r < cut).collect();
    if kept.len() < 16 {
        kept.clone_from(&res);
    }
    let noise = median(&mut kept).max(0.25);
    let agree = (3.0 * noise).max(2.5);
    let share = res.iter().filter(|&&r| r <= agree).count() as f32 / n as f32;
    for (w, &r) in weights.iter_mut().zip(&res) {
        *w = tukey(r, cut.max(agree));
    }
    let rgbs: Vec<[f32; 3]> = samples
        .iter()
        .map(|&i| {
            let p = work.rgb[i];
            [f32::from(p[0]), f32::from(p[1]), f32::from(p[2])]
        })
        .collect();
    let rgb = Quad::fit(&uvs, &rgbs, &weights)?;
    Some(BackdropFit {
        lab: model,
        rgb,
        noise,
        share,
    })
}

// ---------------------------------------------------------------------------------------
// Masks: flood fills and connected components
// ---------------------------------------------------------------------------------------

fn for_each_neighbour(i: usize, w: usize, h: usize, eight: bool, mut f: impl FnMut(usize)) {
    let (x, y) = (i % w, i / w);
    let (l, r, t, b) = (x > 0, x + 1 < w, y > 0, y + 1 < h);
    if l {
        f(i - 1);
    }
    if r {
        f(i + 1);
    }
    if t {
        f(i - w);
    }
    if b {
        f(i + w);
    }
    if eight {
        if l && t {
            f(i - w - 1);
        }
        if r && t {
            f(i - w + 1);
        }
        if l && b {
            f(i + w - 1);
        }
        if r && b {
            f(i + w + 1);
        }
    }
}

/// Pixels reachable from `seeds` through `passable` pixels (seeds need not be passable).
fn flood(
    w: usize,
    h: usize,
    passable: &[bool],
    seeds: impl IntoIterator<Item = usize>,
    eight: bool,
) -> Vec<bool> {
    let mut seen = vec![false; w * h];
    let mut stack = Vec::new();
    for s in seeds {
        if s < seen.len() && !seen[s] {
            seen[s] = true;
            stack.push(s);
        }
    }
    while let Some(i) = stack.pop() {
        for_each_neighbour(i, w, h, eight, |j| {
            if passable[j] && !seen[j] {
                seen[j] = true;
                stack.push(j);
            }
        });
    }
    seen
}

/// Connected components of `mask`: a label per pixel (0 = not in mask) and the size of
/// each label (index 0 unused).
fn label(w: usize, h: usize, mask: &[bool], eight: bool) -> (Vec<u32>, Vec<usize>) {
    let mut labels = vec![0u32; w * h];
    let mut sizes = vec![0usize];
    let mut stack = Vec::new();
    for s in 0..w * h {
        if !mask[s] || labels[s] != 0 {
            continue;
        }
        let id = sizes.len() as u32;
        let mut size = 0usize;
        labels[s] = id;
        stack.push(s);
        while let Some(i) = stack.pop() {
            size += 1;
            for_each_neighbour(i, w, h, eight, |j| {
                if mask[j] && labels[j] == 0 {
                    labels[j] = id;
                    stack.push(j);
                }
            });
        }
        sizes.push(size);
    }
    (labels, sizes)
}

fn border_pixels(w: usize, h: usize) -> impl Iterator<Item = usize> {
    (0..w)
        .flat_map(move |x| [x, (h - 1) * w + x])
        .chain((0..h).flat_map(move |y| [y * w, y * w + w - 1]))
}

/// Keeps the components of `mask` (8-connected) at least `min_px` large and at least
/// `rel` of the largest one; `None` when nothing is left.
fn keep_large_components(
    w: usize,
    h: usize,
    mask: &[bool],
    min_px: usize,
    rel: f32,
) -> Option<Vec<bool>> {
    let (labels, sizes) = label(w, h, mask, true);
    let largest = sizes.iter().copied().max().unwrap_or(0);
    if largest == 0 || largest < min_px {
        return None;
    }
    let thr = min_px.max((rel * largest as f32) as usize).max(1);
    let keep: Vec<bool> = sizes.iter().map(|&s| s >= thr).collect();
    Some(labels.iter().map(|&l| l > 0 && keep[l as usize]).collect())
}

/// Pixels of `mask` whose 8 neighbours are all in `mask` (outside the picture counts as
/// inside, so objects cut by the frame keep an interior).
fn erode(w: usize, h: usize, mask: &[bool]) -> Vec<bool> {
    let mut out = vec![false; w * h];
    for (i, o) in out.iter_mut().enumerate() {
        if mask[i] {
            let mut all = true;
            for_each_neighbour(i, w, h, true, |j| all &= mask[j]);
            *o = all;
        }
    }
    out
}

/// Pixels of `mask` or with an 8-neighbour in `mask`.
fn dilate(w: usize, h: usize, mask: &[bool]) -> Vec<bool> {
    let mut out = mask.to_vec();
    for (i, o) in out.iter_mut().enumerate() {
        if !mask[i] {
            let mut any = false;
            for_each_neighbour(i, w, h, true, |j| any |= mask[j]);
            *o = any;
        }
    }
    out
}

/// 3x3 box filter of a float map (edges clamped).
fn box3(w: usize, h: usize, src: &[f32]) -> Vec<f32> {
    let mut tmp = vec![0f32; w * h];
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        for x in 0..w {
            let l = row[x.saturating_sub(1)];
            let r = row[(x + 1).min(w - 1)];
            tmp[y * w + x] = (l + row[x] + r) / 3.0;
        }
    }
    let mut out = vec![0f32; w * h];
    for y in 0..h {
        let (yu, yd) = (y.saturating_sub(1), (y + 1).min(h - 1));
        for x in 0..w {
            out[y * w + x] = (tmp[yu * w + x] + tmp[y * w + x] + tmp[yd * w + x]) / 3.0;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Plans: what the full-resolution renderer needs
// ---------------------------------------------------------------------------------------

/// The result of segmentation at working resolution.
struct Plan {
    w: usize,
    h: usize,
    /// Soft alpha (0..1) at plan resolution.
    alpha: Vec<f32>,
    /// Object colour field (sRGB 0..255): interior object colours pushed outwards.
    fg: Vec<[f32; 3]>,
    /// Backdrop colour field (sRGB 0..255).
    bg: Vec<[f32; 3]>,
    /// Refine the edge band at full resolution by un-mixing `bg` and `fg`.
    unmix: bool,
    /// Typical backdrop noise at full resolution (sRGB units), for the un-mixing.
    noise_rgb: f32,
}

/// Plain (studio) backdrop: distance to the backdrop model, hysteresis, flood fill,
/// holes and specks.
fn plain_plan(
    img: &RgbaImage,
    work: &Work,
    lab: &[[f32; 3]],
    fit: &BackdropFit,
    o: &BackdropOptions,
) -> Result<Plan, SegmentError> {
    let (w, h) = (work.w, work.h);
    let n = w * h;
    let mut eff = vec![[0f32; 3]; n];
    let mut dist = vec![0f32; n];
    let mut bg = vec![[0f32; 3]; n];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let (u, v) = uv(x, y, w, h);
            let e = shadow_residual(
                lab[i],
                fit.lab.eval(u, v),
                o.shadow_tolerance,
                o.shadow_weight,
            );
            eff[i] = e;
            dist[i] = norm3(e);
            bg[i] = fit.rgb.eval(u, v).map(|c| c.clamp(0.0, 255.0));
        }
    }
    let t_lo = (o.low_threshold_noise * fit.noise).max(o.min_low_threshold);
    let t_hi = (o.high_threshold_noise * fit.noise)
        .max(o.min_high_threshold)
        .max(t_lo);
    let opaque: Vec<bool> = work.alpha.iter().map(|&a| a >= 128).collect();

    // Hysteresis: weak pixels join the object when connected to strong ones.
    let weak: Vec<bool> = (0..n).map(|i| opaque[i] && dist[i] >= t_lo).collect();
    let strong = (0..n).filter(|&i| opaque[i] && dist[i] >= t_hi);
    let mut fg = flood(w, h, &weak, strong, true);

    // Darkening-only regions hidden by the shadow tolerance: a soft shadow fades out,
    // a grey object ends in a sharp edge. Keep those whose outline is mostly sharp.
    let plain: Vec<f32> = (0..n)
        .map(|i| {
            let (u, v) = uv(i % w, i / w, w, h);
            dist3(lab[i], fit.lab.eval(u, v))
        })
        .collect();
    let grey = sharp_dark_regions(
        (w, h),
        lab,
        &plain,
        &fg,
        &opaque,
        (t_lo, t_hi),
        (
            t_lo.max(3.0 * fit.noise),
            ((o.min_object_fraction * n as f32) as usize).max(4),
        ),
    );
    for (f, &g) in fg.iter_mut().zip(&grey) {
        *f |= g;
    }

    // Backdrop = everything not object that the border (or input transparency) reaches.
    let not_fg: Vec<bool> = fg.iter().map(|f| !f).collect();
    let seeds = border_pixels(w, h)
        .filter(|&i| !fg[i])
        .chain((0..n).filter(|&i| !opaque[i]));
    let mut backdrop = flood(w, h, &not_fg, seeds, false);

    // Enclosed regions: holes that clearly show the backdrop become transparent, the
    // rest (a white label on a white shoe, small gaps) stays part of the object.
    let enclosed: Vec<bool> = (0..n).map(|i| !fg[i] && !backdrop[i]).collect();
    let (labels, sizes) = label(w, h, &enclosed, false);
    let min_hole = ((o.min_hole_fraction * n as f32) as usize).max(6);
    let mut cands: Vec<usize> = (1..sizes.len())
        .filter(|&id| sizes[id] >= min_hole)
        .collect();
    cands.sort_by_key(|&id| std::cmp::Reverse(sizes[id]));
    cands.truncate(64);
    if !cands.is_empty() {
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
        let tol = (1.5 * fit.noise).max(2.0);
        for (k, px) in pixels.iter().enumerate() {
            let id = cands[k] as u32;
            if is_backdrop_hole(w, h, px, &labels, id, &eff, &dist, tol, t_lo) {
                for &i in px {
                    backdrop[i] = true;
                }
            }
        }
    }

    let mut object: Vec<bool> = backdrop.iter().map(|b| !b).collect();
    let t_peel = (3.0 * t_hi).max(24.0);
    peel(
        (w, h),
        lab,
        &dist,
        &grey,
        (&mut object, &mut backdrop),
        &fit.lab,
        o,
        t_peel,
    );
    let min_px = ((o.min_object_fraction * n as f32) as usize).max(4);
    let object = keep_large_components(w, h, &object, min_px, o.min_object_relative)
        .ok_or(SegmentError::NoObject)?;

    let mut interior = erode(w, h, &object);
    if !interior.iter().any(|&b| b) {
        interior.clone_from(&object);
    }
    let rgb = work.rgb_f32();
    let fg_field = push_pull(w, h, &rgb, &interior);
    // Local backdrop colour (it includes shadows, unlike the smooth model) from backdrop
    // pixels at least two pixels away from the object; the model is the fallback.
    let not_obj: Vec<bool> = (0..n).map(|i| !object[i] && opaque[i]).collect();
    let clear = erode(w, h, &not_obj);
    let bg = if clear.iter().any(|&c| c) {
        push_pull(w, h, &rgb, &clear)
    } else {
        bg
    };
    let hard: Vec<f32> = object.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
    let alpha = box3(w, h, &hard);
    Ok(Plan {
        w,
        h,
        alpha,
        fg: fg_field,
        bg,
        unmix: true,
        noise_rgb: full_res_noise(img, &fit.rgb, o.border_fraction),
    })
}

/// Regions that differ from the backdrop only by being darker (so the shadow
/// tolerance hid them) but whose outline against the backdrop is sharp: a grey object
/// on white rather than a soft shadow. `plain` is the plain ΔE76 to the backdrop model;
/// regions grow by hysteresis over (`t_lo`, `t_hi`); an outline pixel is sharp when L*
/// changes by at least `sharp` per pixel there (Sobel) and it is part of a sharp run of
/// a few pixels. A region with a mostly sharp outline is kept whole; one with a partly
/// sharp outline (a grey object standing in its own shadow) is cut to the convex hull
/// of its sharp outline; the rest is shadow.
fn sharp_dark_regions(
    (w, h): (usize, usize),
    lab: &[[f32; 3]],
    plain: &[f32],
    fg: &[bool],
    opaque: &[bool],
    (t_lo, t_hi): (f32, f32),
    (sharp, min_px): (f32, usize),
) -> Vec<bool> {
    const MIN_RUN: usize = 6;
    const MAX_HULLS: usize = 32;
    let n = w * h;
    let extent: Vec<bool> = (0..n)
        .map(|i| opaque[i] && !fg[i] && plain[i] >= t_lo)
        .collect();
    let seeds = (0..n).filter(|&i| extent[i] && plain[i] >= t_hi);
    let cand = flood(w, h, &extent, seeds, true);
    let (labels, sizes) = label(w, h, &cand, true);
    let l_at = |x: usize, y: usize| lab[y * w + x][0];
    let mut outline = vec![0usize; sizes.len()];
    let mut sharp_px = vec![false; n];
    for i in 0..n {
        let l = labels[i] as usize;
        if l == 0 || sizes[l] < min_px {
            continue;
        }
        let mut on_outline = false;
        for_each_neighbour(i, w, h, false, |j| on_outline |= labels[j] == 0 && !fg[j]);
        if !on_outline {
            continue;
        }
        outline[l] += 1;
        let (x, y) = (i % w, i / w);
        let (xl, xr) = (x.saturating_sub(1), (x + 1).min(w - 1));
        let (yu, yd) = (y.saturating_sub(1), (y + 1).min(h - 1));
        let gx = (l_at(xr, yu) + 2.0 * l_at(xr, y) + l_at(xr, yd)
            - l_at(xl, yu)
            - 2.0 * l_at(xl, y)
            - l_at(xl, yd))
            / 8.0;
        let gy = (l_at(xl, yd) + 2.0 * l_at(x, yd) + l_at(xr, yd)
            - l_at(xl, yu)
            - 2.0 * l_at(x, yu)
            - l_at(xr, yu))
            / 8.0;
        sharp_px[i] = (gx * gx + gy * gy).sqrt() >= sharp;
    }
    // Only runs of sharp outline pixels count (noise makes isolated ones).
    let (runs, run_sizes) = label(w, h, &sharp_px, true);
    let mut sharp_count = vec![0usize; sizes.len()];
    for i in 0..n {
        if sharp_px[i] && run_sizes[runs[i] as usize] >= MIN_RUN {
            sharp_count[labels[i] as usize] += 1;
        } else {
            sharp_px[i] = false;
        }
    }
    // 0 = drop, 1 = keep whole, 2 = keep inside the hull of the sharp outline.
    let mut verdict = vec![0u8; sizes.len()];
    let mut hulls = 0;
    for l in 1..sizes.len() {
        if sizes[l] < min_px || outline[l] == 0 {
            continue;
        }
        let frac = sharp_count[l] as f32 / outline[l] as f32;
        if frac >= 0.6 {
            verdict[l] = 1;
        } else if frac >= 0.2 && sharp_count[l] >= 3 && hulls < MAX_HULLS {
            verdict[l] = 2;
            hulls += 1;
        }
    }
    let mut keep: Vec<bool> = labels.iter().map(|&l| verdict[l as usize] == 1).collect();
    for (l, _) in verdict.iter().enumerate().filter(|(_, v)| **v == 2) {
        let pts: Vec<(i64, i64)> = (0..n)
            .filter(|&i| sharp_px[i] && labels[i] as usize == l)
            .map(|i| ((i % w) as i64, (i / w) as i64))
            .collect();
        let hull = convex_hull(pts);
        if hull.len() < 3 {
            continue;
        }
        for (i, k) in keep.iter_mut().enumerate() {
            if labels[i] as usize == l {
                let (x, y) = ((i % w) as f64, (i / w) as i64);
                if let Some((lo, hi)) = hull_span(&hull, y) {
                    *k = x >= lo - 0.5 && x <= hi + 0.5;
                }
            }
        }
    }
    keep
}

/// Convex hull (Andrew's monotone chain), counter-clockwise, no repeated point.
fn convex_hull(mut pts: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    pts.sort_unstable();
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let cross = |o: (i64, i64), a: (i64, i64), b: (i64, i64)| {
        (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
    };
    let mut hull: Vec<(i64, i64)> = Vec::with_capacity(2 * pts.len());
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &(i64, i64)>> = if pass == 0 {
            Box::new(pts.iter())
        } else {
            Box::new(pts.iter().rev())
        };
        for &p in iter {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0
            {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// Horizontal extent of a convex polygon on row `y`, if it reaches that row.
fn hull_span(hull: &[(i64, i64)], y: i64) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for k in 0..hull.len() {
        let (a, b) = (hull[k], hull[(k + 1) % hull.len()]);
        if y < a.1.min(b.1) || y > a.1.max(b.1) {
            continue;
        }
        if a.1 == b.1 {
            lo = lo.min(a.0.min(b.0) as f64);
            hi = hi.max(a.0.max(b.0) as f64);
        } else {
            let t = (y - a.1) as f64 / (b.1 - a.1) as f64;
            let x = a.0 as f64 + t * (b.0 - a.0) as f64;
            lo = lo.min(x);
            hi = hi.max(x);
        }
    }
    (lo <= hi).then_some((lo, hi))
}

/// Radius of the window that [`peel`] compares a silhouette pixel with.
const PEEL_RADIUS: usize = 5;
/// Most pixels [`peel`] takes off the silhouette (working resolution).
const PEEL_ROUNDS: usize = 6;

/// Gives back to the backdrop the silhouette pixels that look more like the backdrop
/// next to them than like the object next to them (JPEG chroma ringing, contact
/// shadows, halos), at most [`PEEL_ROUNDS`] pixels deep and never a pixel that differs
/// from the backdrop by `t_peel` or more, nor one of the `no_shadow` pixels (grey parts
/// whose outline was already judged sharp). The object colour nearby is a mean weighted by
/// the squared distance to the backdrop, so it stands for the object, not its fringe.
#[allow(clippy::too_many_arguments)]
fn peel(
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
fn is_backdrop_hole(
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
fn full_res_noise(img: &RgbaImage, rgb: &Quad, frac: f32) -> f32 {
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

// ---------------------------------------------------------------------------------------
// Busy-background fallback: GrabCut-like colour models + mean field
// ---------------------------------------------------------------------------------------

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

impl Gmm {
    fn fit(samples: &[[f32; 3]], k: usize, rng: &mut XorShift) -> Option<Gmm> {
        let step = samples.len().div_ceil(GMM_MAX_SAMPLES).max(1);
        let pts: Vec<[f32; 3]> = samples.iter().step_by(step).copied().collect();
        let n = pts.len();
        if n < 8 {
            return None;
        }
        let k = k.min(n / 8).max(1);
        let d2 = |a: [f32; 3], b: [f32; 3]| {
            let d = [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
            d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
        };
        // k-means++ seeding.
        let mut centres = vec![pts[(rng.next() % n as u64) as usize]];
        let mut near = vec![f32::MAX; n];
        while centres.len() < k {
            let last = centres[centres.len() - 1];
            for (d, p) in near.iter_mut().zip(&pts) {
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
        let k = centres.len();
        let mut assign = vec![0usize; n];
        for _ in 0..8 {
            for (a, p) in assign.iter_mut().zip(&pts) {
                let mut best = (f32::MAX, 0);
                for (j, c) in centres.iter().enumerate() {
                    let d = d2(*p, *c);
                    if d < best.0 {
                        best = (d, j);
                    }
                }
                *a = best.1;
            }
            let mut sum = vec![[0f64; 4]; k];
            for (&a, p) in assign.iter().zip(&pts) {
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
        // Full covariances.
        let mut acc = vec![[0f64; 6]; k];
        let mut cnt = vec![0usize; k];
        for (&a, p) in assign.iter().zip(&pts) {
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
        let mut comps = Vec::new();
        for j in 0..k {
            if cnt[j] < 2 {
                continue;
            }
            let c = cnt[j] as f64;
            let reg = 2.0;
            let s = acc[j];
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
                continue;
            }
            let cd = a * f - cc * cc;
            let ce = b * cc - a * e;
            let cf = a * d - b * b;
            let icov = [ca, cb, ccf, cd, ce, cf].map(|v| (v / det) as f32);
            let lw = (c / n as f64).ln() - 0.5 * det.ln() - 1.5 * (2.0 * std::f64::consts::PI).ln();
            comps.push(Comp {
                c: lw as f32,
                mean: centres[j],
                icov,
            });
        }
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
fn busy_plan(img: &RgbaImage, main: &Work, o: &BackdropOptions) -> Result<Plan, SegmentError> {
    let max_side = o.busy_working_max_side as usize;
    let work = if main.w.max(main.h) <= max_side {
        main.clone()
    } else {
        Work::downsample(img, max_side)
    };
    let (w, h) = (work.w, work.h);
    let n = w * h;
    let lut = srgb_to_linear_lut();
    let lab: Vec<[f32; 3]> = work.rgb.iter().map(|&p| to_lab(&lut, p)).collect();
    let strip = strip_width(w, h, BUSY_HARD_BORDER);
    let mut hard = vec![false; n];
    let mut prior = vec![0f32; n];
    let mut centre_fg = vec![false; n];
    let mut outer_bg = vec![false; n];
    let mut centre_patch = vec![false; n];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let (u, v) = uv(x, y, w, h);
            hard[i] =
                work.alpha[i] < 128 || x < strip || y < strip || x + strip >= w || y + strip >= h;
            let r2 = u * u + v * v;
            prior[i] = (BUSY_PRIOR * (1.0 - r2 / 0.5)).clamp(-2.0 * BUSY_PRIOR, BUSY_PRIOR);
            centre_fg[i] = !hard[i] && r2 < 0.25;
            outer_bg[i] = hard[i] || u.abs().max(v.abs()) > 0.9;
            centre_patch[i] = u.abs() < 0.1 && v.abs() < 0.1;
        }
    }
    let ed = edges(w, h, &lab);
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut q = vec![0.5f32; n];
    let mut unary = vec![0f32; n];
    let mut fg_sel = centre_fg;
    let mut bg_sel = outer_bg;
    for round in 0..4 {
        let pick = |sel: &[bool]| -> Vec<[f32; 3]> {
            sel.iter()
                .zip(&lab)
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
                BUSY_COLOUR_WEIGHT * llr + prior[i]
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
    let mut binary: Vec<bool> = (0..n).map(|i| !hard[i] && q[i] > 0.5).collect();
    // Opening (radius 2) cuts thin bridges and strands to the background.
    for _ in 0..BUSY_OPENING {
        binary = erode(w, h, &binary);
    }
    for _ in 0..BUSY_OPENING {
        binary = dilate(w, h, &binary);
    }
    let (labels, sizes) = label(w, h, &binary, true);
    let mut keep = vec![false; sizes.len()];
    for (i, &l) in labels.iter().enumerate() {
        if l > 0 && centre_patch[i] {
            keep[l as usize] = true;
        }
    }
    let min_px = ((o.min_object_fraction * n as f32) as usize).max(4);
    if !keep.iter().any(|&k| k) {
        let largest = sizes.iter().enumerate().max_by_key(|(_, s)| **s);
        if let Some((id, _)) = largest.filter(|(_, s)| **s >= min_px) {
            keep[id] = true;
        }
    }
    let mut object: Vec<bool> = labels
        .iter()
        .map(|&l| l > 0 && keep[l as usize] && sizes[l as usize] >= min_px)
        .collect();
    if !object.iter().any(|&b| b) {
        return Err(SegmentError::NoObject);
    }
    // Fill every hole: without a plain backdrop nothing proves that a hole is see-through.
    let not_obj: Vec<bool> = object.iter().map(|b| !b).collect();
    let outside = flood(
        w,
        h,
        &not_obj,
        border_pixels(w, h).filter(|&i| !object[i]),
        false,
    );
    for i in 0..n {
        object[i] = !outside[i] && (object[i] || !hard[i]);
    }
    let rgb = work.rgb_f32();
    let mut interior = erode(w, h, &object);
    if !interior.iter().any(|&b| b) {
        interior.clone_from(&object);
    }
    let not_obj: Vec<bool> = object.iter().map(|b| !b).collect();
    let mut bg_interior = erode(w, h, &not_obj);
    if !bg_interior.iter().any(|&b| b) {
        bg_interior = not_obj;
    }
    let hardf: Vec<f32> = object.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
    let alpha = box3(w, h, &box3(w, h, &hardf));
    Ok(Plan {
        w,
        h,
        alpha,
        fg: push_pull(w, h, &rgb, &interior),
        bg: push_pull(w, h, &rgb, &bg_interior),
        unmix: false,
        noise_rgb: 0.0,
    })
}

// ---------------------------------------------------------------------------------------
// Fields and full-resolution rendering
// ---------------------------------------------------------------------------------------

/// Bilinear tap: for destination-resolution index `i` of `n_src` (full) pixels, the
/// two neighbouring indices at `n_dst` (plan) resolution and the weight of the second.
fn tap(i: usize, n_src: usize, n_dst: usize) -> (usize, usize, f32) {
    let max = n_dst.saturating_sub(1);
    let f = ((i as f32 + 0.5) * n_dst as f32 / n_src.max(1) as f32 - 0.5).clamp(0.0, max as f32);
    let i0 = (f.floor() as usize).min(max);
    let i1 = (i0 + 1).min(max);
    (i0, i1, f - i0 as f32)
}

fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

fn lerp3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        lerp(a[0], b[0], t),
        lerp(a[1], b[1], t),
        lerp(a[2], b[2], t),
    ]
}

/// Fills the invalid pixels of a colour map with a smooth extension of the valid ones
/// (pull–push pyramid: average valid pixels down, interpolate back up).
fn push_pull(w: usize, h: usize, colour: &[[f32; 3]], valid: &[bool]) -> Vec<[f32; 3]> {
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
fn render(img: &RgbaImage, plan: &Plan, decontaminate: bool) -> RgbaImage {
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
                let un =
                    [0, 1, 2].map(|k| ((c[k] - (1.0 - alpha) * bg[k]) / alpha).clamp(0.0, 255.0));
                let t = smoothstep(0.04, 0.3, alpha);
                lerp3(fg, un, t)
            };
            d[..3].copy_from_slice(&rgb.map(to_u8));
            d[3] = to_u8(alpha * a_in * 255.0);
        }
    }
    out
}

fn to_u8(v: f32) -> u8 {
    (v + 0.5).clamp(0.0, 255.0) as u8
}

/// Alpha of an edge pixel `c` seen as a mix of object colour `f` and backdrop `b`,
/// trusted in proportion to their contrast and to how well `c` lies on the line between
/// them; `coarse` (the upsampled mask) covers the rest.
fn unmix_alpha(c: [f32; 3], f: [f32; 3], b: [f32; 3], coarse: f32, noise: f32) -> f32 {
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

#[cfg(test)]
mod tests {
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
                - 0.28
                    * (-1.5 * ellipse_r2(x, y, (0.5 * wf, 0.75 * hf), (0.36 * wf, 0.07 * hf)))
                        .exp();
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

    // ---- packshots -------------------------------------------------------------------------

    #[test]
    fn dark_shoe_on_white_with_shadow_gradient_and_jpeg() {
        let img = shoe_scene(480, 360);
        let out = run(&img);
        assert_corners_clear(&out);
        assert_all_at_least(&out, frac(&out, 0.3, 0.45, 0.7, 0.65), 250, "shoe interior");
        // The soft shadow below the shoe (the shoe ends at 0.71 of the height).
        let shadow = frac(&out, 0.3, 0.735, 0.7, 0.8);
        let a = alphas(&out, shadow);
        let clear = a.iter().filter(|&&v| v < 64).count() as f32 / a.len() as f32;
        assert!(clear > 0.97, "shadow only {clear} transparent");
        assert!(mean_alpha(&out, shadow) < 16.0);
        // Anti-aliased edge.
        let edge = edge_pixels(&out, 10, 245);
        assert!(
            edge.len() > 150,
            "only {} fractional edge pixels",
            edge.len()
        );
        // No white fringe: half-transparent edge pixels carry the shoe colour.
        let mid = edge_pixels(&out, 40, 230);
        let m = mean_rgb(&mid);
        assert!(
            m[1] < 60.0 && m[2] < 65.0,
            "edge colour {m:?} pulled toward white"
        );
        let worst = mid.iter().map(|p| p[1]).max().unwrap_or(0);
        assert!(worst < 150, "an edge pixel has green {worst}");
        // Fully transparent pixels carry no backdrop tint (nearest object colour).
        let clear_px: Vec<[u8; 4]> = out.pixels().filter(|p| p.0[3] == 0).map(|p| p.0).collect();
        let t = mean_rgb(&clear_px);
        assert!(t[1] < 80.0, "transparent pixels are tinted {t:?}");
    }

    #[test]
    fn white_mug_with_handle_hole_on_light_grey() {
        let (w, h) = (480u32, 360u32);
        let (wf, hf) = (w as f32, h as f32);
        let (hx, hy) = (0.58 * wf, 0.5 * hf);
        let (ri, ro) = (0.09 * hf, 0.16 * hf);
        let img = draw(w, h, 4, 2.0, Some(90), move |x, y| {
            let l = light(wf, hf, x, y);
            let sh = 1.0
                - 0.22
                    * (-1.5 * ellipse_r2(x, y, (0.47 * wf, 0.8 * hf), (0.2 * wf, 0.05 * hf))).exp();
            let mut c = scale([200.0, 200.0, 202.0], l * sh);
            let body = in_rounded_rect(
                x,
                y,
                (0.44 * wf, 0.51 * hf),
                (0.14 * wf, 0.27 * hf),
                0.05 * hf,
            );
            let d = ((x - hx).powi(2) + (y - hy).powi(2)).sqrt();
            let handle = x > hx - 1.0 && d > ri && d < ro;
            if body || handle {
                let t = ((x - 0.44 * wf) / (0.14 * wf)).clamp(-1.0, 1.6);
                c = scale([251.0, 250.0, 247.0], 1.0 - 0.05 * t * t);
            }
            c
        });
        let out = run(&img);
        assert_corners_clear(&out);
        assert_all_at_least(&out, frac(&out, 0.36, 0.35, 0.52, 0.7), 250, "mug body");
        let hole = Rect {
            x0: (hx + 8.0) as u32,
            y0: (hy - 10.0) as u32,
            x1: (hx + ri - 6.0) as u32,
            y1: (hy + 10.0) as u32,
        };
        assert_all_below(&out, hole, 32, "handle hole");
        let ring = (hx + 0.5 * (ri + ro)) as u32;
        let a = out.get_pixel(ring, hy as u32).0[3];
        assert!(a > 240, "handle itself has alpha {a}");
        assert!(!edge_pixels(&out, 10, 245).is_empty());
    }

    #[test]
    fn black_object_on_mid_grey_without_fringe() {
        let (w, h) = (400u32, 300u32);
        let (wf, hf) = (w as f32, h as f32);
        let obj = [18.0, 18.0, 20.0];
        let img = draw(w, h, 4, 2.5, Some(85), move |x, y| {
            if ellipse_r2(x, y, (0.5 * wf, 0.5 * hf), (0.25 * wf, 0.32 * hf)) < 1.0 {
                obj
            } else {
                scale([128.0, 128.0, 131.0], light(wf, hf, x, y))
            }
        });
        let out = run(&img);
        assert_corners_clear(&out);
        assert_all_at_least(&out, frac(&out, 0.4, 0.4, 0.6, 0.6), 250, "object interior");
        let edge = edge_pixels(&out, 10, 245);
        assert!(
            edge.len() > 100,
            "only {} fractional edge pixels",
            edge.len()
        );
        let m = mean_rgb(&edge_pixels(&out, 40, 230));
        assert!(
            m.iter().all(|&c| c < 45.0),
            "edge colour {m:?} pulled toward grey"
        );
    }

    #[test]
    fn white_printed_label_on_object_on_white_stays_opaque() {
        let (w, h) = (480u32, 360u32);
        let (wf, hf) = (w as f32, h as f32);
        let img = draw(w, h, 4, 2.0, Some(90), move |x, y| {
            let back = scale([245.0, 245.0, 245.0], light(wf, hf, x, y));
            let (u, v) = (x / wf, y / hf);
            if !in_rounded_rect(x, y, (0.5 * wf, 0.5 * hf), (0.3 * wf, 0.3 * hf), 0.04 * hf) {
                return back;
            }
            if (u - 0.5).abs() < 0.16 && (v - 0.5).abs() < 0.12 {
                // The label is the very colour of the backdrop, with three printed lines.
                let line = ((v - 0.41) / 0.06).floor();
                let in_line = (0.0..3.0).contains(&line) && ((v - 0.41) / 0.06).fract() < 0.45;
                let word = ((u - 0.36) / 0.05).fract() < 0.8 && u > 0.36 && u < 0.64;
                return if in_line && word {
                    [60.0, 60.0, 70.0]
                } else {
                    back
                };
            }
            [28.0, 38.0, 92.0]
        });
        let out = run(&img);
        assert_corners_clear(&out);
        assert_all_at_least(&out, frac(&out, 0.35, 0.39, 0.65, 0.61), 250, "label");
        assert_all_at_least(&out, frac(&out, 0.23, 0.25, 0.3, 0.75), 250, "object");
    }

    #[test]
    fn orange_ball_on_blue_backdrop_with_shadow() {
        let (w, h) = (400u32, 300u32);
        let (wf, hf) = (w as f32, h as f32);
        let img = draw(w, h, 4, 2.0, Some(88), move |x, y| {
            let sh = 1.0
                - 0.3
                    * (-1.2 * ellipse_r2(x, y, (0.55 * wf, 0.8 * hf), (0.3 * wf, 0.06 * hf))).exp();
            if ellipse_r2(x, y, (0.5 * wf, 0.5 * hf), (0.25 * hf, 0.25 * hf)) < 1.0 {
                [235.0, 150.0, 40.0]
            } else {
                scale([35.0, 85.0, 190.0], light(wf, hf, x, y) * sh)
            }
        });
        let out = run(&img);
        assert_corners_clear(&out);
        assert_all_at_least(&out, frac(&out, 0.45, 0.43, 0.55, 0.57), 250, "ball");
        assert_all_below(&out, frac(&out, 0.6, 0.78, 0.8, 0.84), 64, "shadow on blue");
        let m = mean_rgb(&edge_pixels(&out, 40, 230));
        assert!(
            m[2] < 90.0 && m[0] > 180.0,
            "edge colour {m:?} pulled toward blue"
        );
    }

    #[test]
    fn light_grey_object_on_white_is_not_taken_for_a_shadow() {
        // Only darker than the backdrop, like its own shadow, but with sharp edges.
        let (w, h) = (480u32, 360u32);
        let (wf, hf) = (w as f32, h as f32);
        let img = draw(w, h, 4, 2.0, Some(88), move |x, y| {
            let l = light(wf, hf, x, y);
            let sh = 1.0
                - 0.25
                    * (-1.5 * ellipse_r2(x, y, (0.5 * wf, 0.76 * hf), (0.34 * wf, 0.07 * hf)))
                        .exp();
            if in_rounded_rect(
                x,
                y,
                (0.5 * wf, 0.5 * hf),
                (0.25 * wf, 0.22 * hf),
                0.05 * hf,
            ) {
                [196.0, 196.0, 198.0]
            } else {
                scale([250.0, 250.0, 249.0], l * sh)
            }
        });
        let out = run(&img);
        assert_corners_clear(&out);
        assert_all_at_least(&out, frac(&out, 0.28, 0.31, 0.72, 0.69), 250, "grey object");
        let below = frac(&out, 0.3, 0.74, 0.7, 0.82);
        assert!(
            mean_alpha(&out, below) < 64.0,
            "shadow mean alpha {}",
            mean_alpha(&out, below)
        );
        assert!(edge_pixels(&out, 10, 245).len() > 100);
    }

    #[test]
    fn product_cropped_by_the_frame_under_a_spotlight() {
        // A green bottle running off the bottom edge; a strong radial spotlight on grey.
        let (w, h) = (360u32, 480u32);
        let (wf, hf) = (w as f32, h as f32);
        let img = draw(w, h, 4, 2.5, Some(85), move |x, y| {
            let (u, v) = (x / wf - 0.5, y / hf - 0.45);
            let spot = 1.0 - 0.55 * (u * u + v * v);
            let bottle = (x - 0.5 * wf).abs() < 0.16 * wf && y > 0.35 * hf
                || ellipse_r2(x, y, (0.5 * wf, 0.35 * hf), (0.16 * wf, 0.1 * hf)) < 1.0
                || (x - 0.5 * wf).abs() < 0.05 * wf && y > 0.12 * hf;
            if bottle {
                scale(
                    [30.0, 110.0, 60.0],
                    0.8 + 0.3 * (1.0 - ((x / wf - 0.45) / 0.16).powi(2)).max(0.0),
                )
            } else {
                scale([190.0, 190.0, 192.0], spot)
            }
        });
        let out = run(&img);
        assert_corners_clear(&out);
        assert_all_at_least(
            &out,
            frac(&out, 0.4, 0.5, 0.6, 1.0),
            250,
            "bottle down to the frame",
        );
        assert_all_at_least(&out, frac(&out, 0.47, 0.14, 0.53, 0.3), 250, "bottle neck");
        assert_all_below(
            &out,
            frac(&out, 0.0, 0.3, 0.25, 1.0),
            32,
            "left of the bottle",
        );
        assert_all_below(
            &out,
            frac(&out, 0.75, 0.3, 1.0, 1.0),
            32,
            "right of the bottle",
        );
    }

    #[test]
    fn two_objects_are_kept_and_dust_specks_removed() {
        let (w, h) = (480u32, 320u32);
        let (wf, hf) = (w as f32, h as f32);
        let dust = [(40.0, 250.0), (420.0, 60.0), (300.0, 290.0), (90.0, 80.0)];
        let img = draw(w, h, 4, 2.0, Some(90), move |x, y| {
            let pair = ellipse_r2(x, y, (0.3 * wf, 0.5 * hf), (0.1 * wf, 0.2 * hf)) < 1.0
                || ellipse_r2(x, y, (0.7 * wf, 0.5 * hf), (0.1 * wf, 0.2 * hf)) < 1.0;
            let speck = dust
                .iter()
                .any(|&(dx, dy)| (x - dx).powi(2) + (y - dy).powi(2) < 2.0);
            if pair {
                [200.0, 160.0, 40.0]
            } else if speck {
                [90.0, 90.0, 90.0]
            } else {
                scale([246.0, 246.0, 246.0], light(wf, hf, x, y))
            }
        });
        let out = run(&img);
        assert_corners_clear(&out);
        assert_all_at_least(&out, frac(&out, 0.27, 0.4, 0.33, 0.6), 250, "left earring");
        assert_all_at_least(&out, frac(&out, 0.67, 0.4, 0.73, 0.6), 250, "right earring");
        for (x, y) in dust {
            let r = Rect {
                x0: x as u32 - 3,
                y0: y as u32 - 3,
                x1: x as u32 + 4,
                y1: y as u32 + 4,
            };
            assert_all_below(&out, r, 32, "dust speck");
        }
    }

    #[test]
    fn downscaled_path_keeps_size_and_quality() {
        // 1600x1200 is worked on at 1024x768 and refined at full resolution.
        let img = shoe_scene(1600, 1200);
        let out = run(&img);
        assert_corners_clear(&out);
        assert_all_at_least(&out, frac(&out, 0.3, 0.45, 0.7, 0.65), 250, "shoe interior");
        assert!(mean_alpha(&out, frac(&out, 0.3, 0.735, 0.7, 0.8)) < 16.0);
        assert!(edge_pixels(&out, 10, 245).len() > 400);
        let m = mean_rgb(&edge_pixels(&out, 40, 230));
        assert!(m[1] < 60.0, "edge colour {m:?} pulled toward white");
    }

    // ---- errors and hostile input -------------------------------------------------------------

    #[test]
    fn tiny_pictures_are_too_small() {
        for (w, h) in [(0, 0), (7, 7), (7, 100), (100, 7), (1, 1)] {
            let img = RgbaImage::from_pixel(w, h, Rgba([10, 20, 30, 255]));
            match cut_out(&img, &BackdropOptions::default()) {
                Err(SegmentError::TooSmall { width, height }) => {
                    assert_eq!((width, height), (w, h));
                }
                other => panic!("{w}x{h}: expected TooSmall, got {other:?}"),
            }
        }
        // 8x8 is accepted (whatever it finds).
        let mut img = RgbaImage::from_pixel(8, 8, Rgba([255, 255, 255, 255]));
        img.put_pixel(4, 4, Rgba([0, 0, 0, 255]));
        if let Ok(out) = cut_out(&img, &BackdropOptions::default()) {
            assert_eq!(out.dimensions(), (8, 8));
        }
    }

    #[test]
    fn uniform_pictures_have_no_object() {
        let (wf, hf) = (320.0, 240.0);
        let grey = draw(320, 240, 1, 2.5, Some(80), move |x, y| {
            scale([180.0, 182.0, 185.0], light(wf, hf, x, y))
        });
        let white = RgbaImage::from_pixel(64, 48, Rgba([255, 255, 255, 255]));
        let black = RgbaImage::from_pixel(64, 48, Rgba([0, 0, 0, 255]));
        for img in [grey, white, black] {
            assert!(
                matches!(
                    cut_out(&img, &BackdropOptions::default()),
                    Err(SegmentError::NoObject)
                ),
                "a uniform picture must give NoObject"
            );
        }
    }

    #[test]
    fn input_transparency_is_respected() {
        let mut img = shoe_scene(480, 360);
        for y in 0..360 {
            for x in 0..200 {
                img.get_pixel_mut(x, y).0[3] = 0;
            }
        }
        let out = run(&img);
        assert_all_below(
            &out,
            Rect {
                x0: 0,
                y0: 0,
                x1: 200,
                y1: 360,
            },
            1,
            "transparent input",
        );
        assert_all_at_least(&out, frac(&out, 0.5, 0.45, 0.7, 0.65), 250, "shoe interior");
        assert_corners_clear(&out);

        // Already cut out: returned as it is.
        let mut cut = RgbaImage::from_pixel(64, 64, Rgba([255, 255, 255, 0]));
        for y in 20..40 {
            for x in 20..40 {
                cut.put_pixel(x, y, Rgba([200, 10, 10, 255]));
            }
        }
        let out = run(&cut);
        assert_eq!(out.get_pixel(30, 30).0[3], 255);
        assert_eq!(out.get_pixel(5, 5).0[3], 0);

        // Fully transparent: nothing there.
        let empty = RgbaImage::from_pixel(64, 64, Rgba([0, 0, 0, 0]));
        assert!(matches!(
            cut_out(&empty, &BackdropOptions::default()),
            Err(SegmentError::NoObject)
        ));
    }

    #[test]
    fn hostile_inputs_and_options_do_not_panic() {
        let mut rng = Rng(7);
        let noise = RgbaImage::from_fn(200, 150, |_, _| {
            let v = [0; 3].map(|_: u8| (rng.uniform() * 255.0) as u8);
            Rgba([v[0], v[1], v[2], (rng.uniform() * 255.0) as u8])
        });
        let checker = RgbaImage::from_fn(97, 61, |x, y| {
            if (x + y) % 2 == 0 {
                Rgba([0, 0, 0, 255])
            } else {
                Rgba([255, 255, 255, 255])
            }
        });
        let strip = RgbaImage::from_fn(8, 3000, |_, y| {
            if (1400..1600).contains(&y) {
                Rgba([20, 20, 200, 255])
            } else {
                Rgba([250, 250, 250, 255])
            }
        });
        let wide = RgbaImage::from_fn(3000, 9, |x, _| {
            if (1400..1600).contains(&x) {
                Rgba([20, 20, 200, 255])
            } else {
                Rgba([250, 250, 250, 255])
            }
        });
        let odd = shoe_scene(1031, 13);
        let weird = BackdropOptions {
            working_max_side: 0,
            busy_working_max_side: u32::MAX,
            border_fraction: f32::NAN,
            max_backdrop_noise: f32::INFINITY,
            min_backdrop_share: -3.0,
            low_threshold_noise: f32::NAN,
            high_threshold_noise: -1.0,
            min_low_threshold: 0.0,
            min_high_threshold: f32::NEG_INFINITY,
            shadow_tolerance: 5.0,
            shadow_weight: f32::NAN,
            min_object_fraction: 2.0,
            min_object_relative: f32::NAN,
            min_hole_fraction: -1.0,
            decontaminate: false,
        };
        for img in [&noise, &checker, &strip, &wide, &odd] {
            for opts in [BackdropOptions::default(), weird.clone()] {
                if let Ok(out) = cut_out(img, &opts) {
                    assert_eq!(out.dimensions(), img.dimensions());
                }
            }
        }
        // The thin strip's blue band is found.
        let out = run(&strip);
        assert_eq!(out.get_pixel(4, 1500).0[3], 255);
        assert_eq!(out.get_pixel(4, 100).0[3], 0);
    }

    #[test]
    fn random_small_pictures_never_panic() {
        let mut rng = Rng(0xDEAD_BEEF_1234_5678);
        for round in 0..300 {
            let w = 8 + (rng.uniform() * 90.0) as u32;
            let h = 8 + (rng.uniform() * 90.0) as u32;
            let back = [0; 3].map(|_: u8| rng.uniform() * 255.0);
            let mut img = RgbaImage::from_pixel(
                w,
                h,
                Rgba([back[0] as u8, back[1] as u8, back[2] as u8, 255]),
            );
            for _ in 0..(rng.uniform() * 6.0) as usize {
                let c = [0; 4].map(|_: u8| (rng.uniform() * 255.0) as u8);
                let (x0, y0) = (
                    (rng.uniform() * w as f32) as u32,
                    (rng.uniform() * h as f32) as u32,
                );
                let (x1, y1) = (
                    (rng.uniform() * w as f32) as u32,
                    (rng.uniform() * h as f32) as u32,
                );
                for y in y0.min(y1)..y0.max(y1) {
                    for x in x0.min(x1)..x0.max(x1) {
                        let a = if round % 3 == 0 { c[3] } else { 255 };
                        img.put_pixel(x, y, Rgba([c[0], c[1], c[2], a]));
                    }
                }
            }
            let noise = rng.uniform() * 20.0;
            for p in img.pixels_mut() {
                for k in 0..3 {
                    p.0[k] = (f32::from(p.0[k]) + noise * rng.gauss()).clamp(0.0, 255.0) as u8;
                }
            }
            if let Ok(out) = cut_out(&img, &BackdropOptions::default()) {
                assert_eq!(out.dimensions(), (w, h));
            }
        }
    }

    // ---- real photos ------------------------------------------------------------------------

    #[test]
    fn real_sample_photos_corners_clear_centre_opaque() {
        let dir = std::path::Path::new("/work/shared/samples");
        if !dir.is_dir() {
            println!("skipping: {} is missing", dir.display());
            return;
        }
        for name in ["coffee.png", "chelsea.png", "astronaut.png"] {
            let path = dir.join(name);
            let img = match image::open(&path) {
                Ok(i) => i.to_rgba8(),
                Err(e) => {
                    println!("skipping {}: {e}", path.display());
                    continue;
                }
            };
            let out = run(&img);
            for r in corners(&out) {
                let m = mean_alpha(&out, r);
                assert!(m < 32.0, "{name}: corner {r:?} mean alpha {m}");
            }
            let c = mean_alpha(&out, frac(&out, 0.45, 0.45, 0.55, 0.55));
            assert!(c > 200.0, "{name}: centre mean alpha {c}");
        }
    }

    /// `cargo test --release -- --ignored twelve_megapixels --nocapture`
    #[test]
    #[ignore = "timing run on a 12 MP picture; slow in unoptimised builds"]
    fn twelve_megapixels() {
        let img = shoe_scene(4000, 3000);
        let t = std::time::Instant::now();
        let out = run(&img);
        println!("12 MP cut-out took {:?}", t.elapsed());
        assert_corners_clear(&out);
    }
}
