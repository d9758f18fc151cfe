//! Grey objects on a light backdrop: regions that are only darker than the backdrop
//! (so the shadow tolerance hides them) but end in a sharp outline, unlike a soft
//! shadow; cut to the convex hull of their sharp outline when they stand in a shadow.
//!
//! Must not: decide holes or specks (the plain plan does).

use crate::engine::mask::{flood, for_each_neighbour, label_sizes};

/// Regions that differ from the backdrop only by being darker (so the shadow
/// tolerance hid them) but whose outline against the backdrop is sharp: a grey object
/// on white rather than a soft shadow. `plain` is the plain ΔE76 to the backdrop model;
/// regions grow by hysteresis over (`t_lo`, `t_hi`); an outline pixel is sharp when L*
/// changes by at least `sharp` per pixel there (Sobel) and it is part of a sharp run of
/// a few pixels. A region with a mostly sharp outline is kept whole; one with a partly
/// sharp outline (a grey object standing in its own shadow) is cut to the convex hull
/// of its sharp outline; the rest is shadow.
pub(super) fn sharp_dark_regions(
    (w, h): (usize, usize),
    lab: &[[f32; 3]],
    plain: &[f32],
    fg: &[bool],
    opaque: &[bool],
    (t_lo, t_hi): (f32, f32),
    (sharp, min_px): (f32, usize),
) -> Vec<bool> {
    let n = w * h;
    let extent: Vec<bool> = (0..n)
        .map(|i| opaque[i] && !fg[i] && plain[i] >= t_lo)
        .collect();
    let seeds = (0..n).filter(|&i| extent[i] && plain[i] >= t_hi);
    let cand = flood(w, h, &extent, seeds, true);
    let (labels, sizes) = label_sizes(w, h, &cand, true);
    let regions = Regions {
        w,
        h,
        labels,
        sizes,
    };
    let (outline, mut sharp_px) = regions.sharp_outline(lab, fg, sharp, min_px);
    let sharp_count = regions.sharp_runs(&mut sharp_px);
    let verdict = verdicts(&regions.sizes, &outline, &sharp_count, min_px);
    let mut keep: Vec<bool> = regions
        .labels
        .iter()
        .map(|&l| verdict[l as usize] == Verdict::Whole)
        .collect();
    regions.cut_to_hulls(&verdict, &sharp_px, &mut keep);
    keep
}

/// Only runs of at least this many sharp outline pixels count (noise makes
/// isolated ones).
const MIN_RUN: usize = 6;
/// At most this many regions are cut to a hull (each costs a pass).
const MAX_HULLS: usize = 32;

/// What becomes of one candidate region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Shadow (or too small): dropped.
    Drop,
    /// Mostly sharp outline: kept whole.
    Whole,
    /// Partly sharp (an object in its own shadow): kept inside the convex
    /// hull of its sharp outline.
    Hull,
}

/// The candidate regions: a label per pixel (0 = none) and each label's size.
struct Regions {
    w: usize,
    h: usize,
    labels: Vec<u32>,
    sizes: Vec<usize>,
}

impl Regions {
    /// Per region, its number of outline pixels (next to unlabelled
    /// backdrop); per pixel, whether it is an outline pixel where L*
    /// changes by at least `sharp` per pixel (Sobel).
    fn sharp_outline(
        &self,
        lab: &[[f32; 3]],
        fg: &[bool],
        sharp: f32,
        min_px: usize,
    ) -> (Vec<usize>, Vec<bool>) {
        let (w, h, labels) = (self.w, self.h, &self.labels);
        let mut outline = vec![0usize; self.sizes.len()];
        let mut sharp_px = vec![false; w * h];
        for i in 0..w * h {
            let l = labels[i] as usize;
            if l == 0 || self.sizes[l] < min_px {
                continue;
            }
            let mut on_outline = false;
            for_each_neighbour(i, w, h, false, |j| on_outline |= labels[j] == 0 && !fg[j]);
            if !on_outline {
                continue;
            }
            outline[l] += 1;
            sharp_px[i] = sobel_l(lab, (w, h), i) >= sharp;
        }
        (outline, sharp_px)
    }

    /// Keep only sharp pixels in runs of at least [`MIN_RUN`]; per region,
    /// how many are left.
    fn sharp_runs(&self, sharp_px: &mut [bool]) -> Vec<usize> {
        let (runs, run_sizes) = label_sizes(self.w, self.h, sharp_px, true);
        let mut sharp_count = vec![0usize; self.sizes.len()];
        for i in 0..self.w * self.h {
            if sharp_px[i] && run_sizes[runs[i] as usize] >= MIN_RUN {
                sharp_count[self.labels[i] as usize] += 1;
            } else {
                sharp_px[i] = false;
            }
        }
        sharp_count
    }

    /// Regions judged [`Verdict::Hull`]: keep only what lies inside the
    /// convex hull of their sharp outline (row by row).
    fn cut_to_hulls(&self, verdict: &[Verdict], sharp_px: &[bool], keep: &mut [bool]) {
        let (w, labels) = (self.w, &self.labels);
        for (l, _) in verdict
            .iter()
            .enumerate()
            .filter(|(_, v)| **v == Verdict::Hull)
        {
            let pts: Vec<(i64, i64)> = (0..w * self.h)
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
    }
}

/// The Sobel gradient magnitude of L* at pixel `i` (edges clamped).
fn sobel_l(lab: &[[f32; 3]], (w, h): (usize, usize), i: usize) -> f32 {
    let l_at = |x: usize, y: usize| lab[y * w + x][0];
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
    (gx * gx + gy * gy).sqrt()
}

/// A region with at least 60 % of its outline sharp is kept whole; one with
/// 20 % (and at least 3 sharp pixels) is cut to its hull, at most
/// [`MAX_HULLS`] of them; the rest is shadow.
fn verdicts(
    sizes: &[usize],
    outline: &[usize],
    sharp_count: &[usize],
    min_px: usize,
) -> Vec<Verdict> {
    let mut verdict = vec![Verdict::Drop; sizes.len()];
    let mut hulls = 0;
    for l in 1..sizes.len() {
        if sizes[l] < min_px || outline[l] == 0 {
            continue;
        }
        let frac = sharp_count[l] as f32 / outline[l] as f32;
        if frac >= 0.6 {
            verdict[l] = Verdict::Whole;
        } else if frac >= 0.2 && sharp_count[l] >= 3 && hulls < MAX_HULLS {
            verdict[l] = Verdict::Hull;
            hulls += 1;
        }
    }
    verdict
}

/// Convex hull (Andrew's monotone chain), counter-clockwise, no repeated point.
pub(super) fn convex_hull(mut pts: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
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
pub(super) fn hull_span(hull: &[(i64, i64)], y: i64) -> Option<(f64, f64)> {
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
