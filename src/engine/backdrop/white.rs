//! White and light parts on a white or light backdrop: a white sole, a white box,
//! a label at the product's edge. They differ from the backdrop by about as much as
//! a shadow does, so the distance to the backdrop cannot keep them; what a studio
//! photo still shows is their outline, a *step* in lightness (the change happens
//! within a pixel or two), where a shadow's edge is a ramp. So: mark the step
//! edges, flood the backdrop from the border with them as walls, and keep what the
//! walls shut off from the border but the plain flood reached — regions the size
//! of an object that differ from the backdrop — with the edge band around them.
//!
//! Must not: decide holes inside the object or specks (the plain plan does), or
//! keep anything the walls do not enclose.

use super::work::Work;
use crate::engine::mask::{border_pixels, dilate, flood, for_each_neighbour, label};

/// A step edge is at least this much steeper than the slope on its flatter side.
const STEP_RATIO: f32 = 1.8;
/// Rounds by which a kept region grows into the edge band around it.
const EDGE_GROWTH: usize = 5;
/// Rounds by which the step edges grow to close small gaps in the walls.
const WALL_GROWTH: usize = 3;

/// Pixels of white or light parts (see the module doc). `plain` is the plain ΔE76 to
/// the backdrop model, `fg` the object found so far, `noise` the backdrop noise (ΔE).
pub(super) fn white_parts(
    work: &Work,
    lab: &[[f32; 3]],
    plain: &[f32],
    fg: &[bool],
    opaque: &[bool],
    noise: f32,
    min_px: usize,
) -> Vec<bool> {
    let (w, h) = (work.w, work.h);
    let n = w * h;
    let mut edge = step_edges((w, h), lab, (2.5 * noise).max(0.8));
    for _ in 0..WALL_GROWTH {
        edge = dilate(w, h, &edge);
    }
    let reach = |walls: bool| {
        let passable: Vec<bool> = (0..n).map(|i| !(fg[i] || walls && edge[i])).collect();
        let seeds = border_pixels(w, h)
            .filter(|&i| passable[i])
            .chain((0..n).filter(|&i| !opaque[i]));
        flood(w, h, &passable, seeds, false)
    };
    let (open, walled) = (reach(false), reach(true));
    let cand: Vec<bool> = (0..n)
        .map(|i| open[i] && !walled[i] && !edge[i] && opaque[i])
        .collect();
    let (labels, regions) = label(w, h, &cand, false);
    let mut sum = vec![0f32; regions.len()];
    for (i, &l) in labels.iter().enumerate() {
        if l > 0 {
            sum[l as usize - 1] += plain[i];
        }
    }
    let differs = (2.0 * noise).max(2.0);
    let keep: Vec<bool> = regions
        .iter()
        .zip(&sum)
        .map(|(r, &s)| r.size >= min_px && !r.touches_border && s / r.size as f32 >= differs)
        .collect();
    let mut white: Vec<bool> = labels
        .iter()
        .map(|&l| l > 0 && keep[l as usize - 1])
        .collect();
    for _ in 0..EDGE_GROWTH {
        let before = white.clone();
        for i in 0..n {
            if edge[i] && !before[i] && !fg[i] {
                for_each_neighbour(i, w, h, true, |j| white[i] |= before[j]);
            }
        }
    }
    white
}

/// Step edges of L*: the Sobel slope is at least `min_slope` and at least
/// [`STEP_RATIO`] times the slope 3 pixels across the edge on its flatter side.
fn step_edges((w, h): (usize, usize), lab: &[[f32; 3]], min_slope: f32) -> Vec<bool> {
    let l_at = |x: isize, y: isize| {
        let (x, y) = (x.clamp(0, w as isize - 1), y.clamp(0, h as isize - 1));
        lab[y as usize * w + x as usize][0]
    };
    let mut edge = vec![false; w * h];
    for y in 0..h as isize {
        for x in 0..w as isize {
            let gx = (l_at(x + 1, y - 1) + 2.0 * l_at(x + 1, y) + l_at(x + 1, y + 1)
                - l_at(x - 1, y - 1)
                - 2.0 * l_at(x - 1, y)
                - l_at(x - 1, y + 1))
                / 8.0;
            let gy = (l_at(x - 1, y + 1) + 2.0 * l_at(x, y + 1) + l_at(x + 1, y + 1)
                - l_at(x - 1, y - 1)
                - 2.0 * l_at(x, y - 1)
                - l_at(x + 1, y - 1))
                / 8.0;
            let m = (gx * gx + gy * gy).sqrt();
            if m < min_slope {
                continue;
            }
            let (ux, uy) = (gx / m, gy / m);
            let at = |t: f32| l_at(x + (ux * t).round() as isize, y + (uy * t).round() as isize);
            // The slope 3 pixels before and after: a ramp (shadow) is about as steep
            // on one side at least, a step (with or without a ramp beside it) is not.
            let before = (at(-2.0) - at(-4.0)).abs() / 2.0;
            let after = (at(4.0) - at(2.0)).abs() / 2.0;
            edge[y as usize * w + x as usize] = m >= STEP_RATIO * before.min(after);
        }
    }
    edge
}
