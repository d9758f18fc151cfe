//! The backdrop model: a per-channel quadratic surface in (u, v), fitted to the
//! border strip by Tukey-reweighted least squares, with its noise level.
//!
//! Must not: label pixels as object or backdrop (the plans do).

use super::colour::{dist3, median};
use super::work::{uv, Work};

/// Per-channel quadratic in (u, v): c0 + c1 u + c2 v + c3 u² + c4 uv + c5 v².
#[derive(Clone, Copy, Debug)]
pub(super) struct Quad([[f64; 6]; 3]);

pub(super) fn basis(u: f32, v: f32) -> [f64; 6] {
    let (u, v) = (f64::from(u), f64::from(v));
    [1.0, u, v, u * u, u * v, v * v]
}

impl Quad {
    pub(super) fn constant(c: [f32; 3]) -> Quad {
        let mut q = [[0f64; 6]; 3];
        for (row, &v) in q.iter_mut().zip(&c) {
            row[0] = f64::from(v);
        }
        Quad(q)
    }

    pub(super) fn eval(&self, u: f32, v: f32) -> [f32; 3] {
        let p = basis(u, v);
        let mut out = [0f32; 3];
        for (o, c) in out.iter_mut().zip(&self.0) {
            *o = c.iter().zip(&p).map(|(a, b)| a * b).sum::<f64>() as f32;
        }
        out
    }

    /// Weighted least squares (with a tiny ridge on the non-constant terms).
    pub(super) fn fit(uvs: &[(f32, f32)], vals: &[[f32; 3]], weights: &[f32]) -> Option<Quad> {
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
pub(super) fn solve6(mut a: [[f64; 6]; 6], mut b: [f64; 6]) -> Option<[f64; 6]> {
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
pub(super) struct BackdropFit {
    /// Backdrop colour in Lab over the picture.
    pub(super) lab: Quad,
    /// The same in sRGB (0..255), fitted on the same inliers.
    pub(super) rgb: Quad,
    /// Typical (median) residual of the backdrop's border pixels, ΔE76.
    pub(super) noise: f32,
    /// Share of border samples that agree with the model.
    pub(super) share: f32,
}

/// Robust fit of the backdrop surface to the border samples: starts from the median
/// colour and iterates Tukey-biweighted least squares with a cut-off derived from the
/// median residual, so the object touching the frame or shadows on the border are
/// rejected as outliers.
pub(super) fn fit_backdrop(
    work: &Work,
    lab: &[[f32; 3]],
    samples: &[usize],
) -> Option<BackdropFit> {
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
