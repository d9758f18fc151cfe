//! Clean-up of 8-bit masks (255 = subject): speck removal, hole filling and
//! feathering, plus the separable box blur that feathering and the built-in
//! engine's edge softening share.
//!
//! Must not: change the mask's size, or touch colours.

use image::GrayImage;

use super::label;

/// Mask values at or above this count as foreground for specks and holes.
pub(crate) const SOLID: u8 = 128;

/// Zeroes foreground blobs under 0.25 % of the picture and under 5 % of the
/// largest blob, with the faint fringe around them.
pub(crate) fn remove_specks(mask: &mut GrayImage) {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let solid: Vec<bool> = mask.iter().map(|&v| v >= SOLID).collect();
    let (labels, blobs) = label(w, h, &solid, true);
    let largest = blobs.iter().map(|b| b.size).max().unwrap_or(0);
    let limit = ((w * h) as f64 * 0.0025).min(largest as f64 * 0.05);
    let data: &mut [u8] = mask;
    for (index, blob) in blobs.iter().enumerate() {
        if blob.size as f64 >= limit {
            continue;
        }
        let id = index as u32 + 1;
        // The blob and the soft fringe close around it.
        let (x0, y0, x1, y1) = blob.bbox;
        for y in y0.saturating_sub(2)..=(y1 + 2).min(h - 1) {
            for x in x0.saturating_sub(2)..=(x1 + 2).min(w - 1) {
                let i = y * w + x;
                if labels[i] == id || data[i] < SOLID {
                    data[i] = 0;
                }
            }
        }
    }
}

/// Makes enclosed background regions under 0.1 % of the picture opaque.
pub(crate) fn fill_holes(mask: &mut GrayImage) {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let limit = (w * h) as f64 * 0.001;
    let clear: Vec<bool> = mask.iter().map(|&v| v < SOLID).collect();
    let (labels, holes) = label(w, h, &clear, false);
    let fill: Vec<bool> = holes
        .iter()
        .map(|r| !r.touches_border && (r.size as f64) < limit)
        .collect();
    for (value, &id) in mask.iter_mut().zip(&labels) {
        if id != 0 && fill[id as usize - 1] {
            *value = 255;
        }
    }
}

/// Softens the mask: three box blurs in each direction, which approximate
/// a Gaussian of σ = feather_px / 2 at a cost independent of the radius.
pub(crate) fn feather(mask: &mut GrayImage, feather_px: f32) {
    let sigma = f64::from(feather_px) / 2.0;
    // Three boxes of width 2r + 1 have variance 3((2r + 1)² − 1) / 12 = σ².
    let radius = (((4.0 * sigma * sigma + 1.0).sqrt() - 1.0) / 2.0)
        .round()
        .max(1.0) as usize;
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let mut values: Vec<f32> = mask.as_raw().iter().map(|&v| f32::from(v)).collect();
    box_blur(w, h, &mut values, radius, 3);
    for (dst, v) in mask.iter_mut().zip(values) {
        *dst = v.round().clamp(0.0, 255.0) as u8;
    }
}

/// In-place separable box blur of a `w`×`h` map: `passes` blurs of width
/// 2·radius + 1 along the rows, then as many down the columns, edges repeated.
pub(crate) fn box_blur(w: usize, h: usize, values: &mut [f32], radius: usize, passes: usize) {
    if w == 0 || h == 0 || values.len() != w * h {
        return;
    }
    let mut line = Vec::new();
    for row in values.chunks_exact_mut(w) {
        for _ in 0..passes {
            box_blur_line(row, radius, &mut line);
        }
    }
    let mut column = vec![0f32; h];
    for x in 0..w {
        for (y, v) in column.iter_mut().enumerate() {
            *v = values[y * w + x];
        }
        for _ in 0..passes {
            box_blur_line(&mut column, radius, &mut line);
        }
        for (y, v) in column.iter().enumerate() {
            values[y * w + x] = *v;
        }
    }
}

/// In-place box blur of width 2·radius + 1, edges repeated.
fn box_blur_line(values: &mut [f32], radius: usize, scratch: &mut Vec<f32>) {
    let n = values.len();
    if n == 0 {
        return;
    }
    scratch.clear();
    scratch.extend_from_slice(values);
    let at = |i: isize| scratch[i.clamp(0, n as isize - 1) as usize];
    let r = radius as isize;
    let mut sum: f64 = (-r..=r).map(|i| f64::from(at(i))).sum();
    let width = (2 * radius + 1) as f64;
    for (i, v) in values.iter_mut().enumerate() {
        let i = i as isize;
        *v = (sum / width) as f32;
        sum += f64::from(at(i + r + 1)) - f64::from(at(i - r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    #[test]
    fn specks_go_and_holes_fill() {
        let mut mask = GrayImage::from_fn(100, 100, |x, y| {
            let subject = (20..80).contains(&x) && (20..80).contains(&y);
            let hole = (45..48).contains(&x) && (45..48).contains(&y);
            let speck = (3..5).contains(&x) && (3..5).contains(&y);
            Luma([if (subject && !hole) || speck { 255 } else { 0 }])
        });
        mask.put_pixel(2, 3, Luma([60])); // the speck's fringe
        remove_specks(&mut mask);
        fill_holes(&mut mask);
        assert_eq!(mask.get_pixel(3, 3).0[0], 0);
        assert_eq!(mask.get_pixel(2, 3).0[0], 0);
        assert_eq!(mask.get_pixel(47, 47).0[0], 255);
        assert_eq!(mask.get_pixel(30, 30).0[0], 255);
        assert_eq!(mask.get_pixel(90, 90).0[0], 0);
    }

    #[test]
    fn feather_softens_only_the_edge() {
        let mut mask = GrayImage::from_fn(40, 40, |x, _| Luma([if x < 20 { 255 } else { 0 }]));
        feather(&mut mask, 4.0);
        assert_eq!(mask.get_pixel(5, 5).0[0], 255);
        assert_eq!(mask.get_pixel(35, 5).0[0], 0);
        let edge = mask.get_pixel(20, 5).0[0];
        assert!(edge > 40 && edge < 215, "{edge}");
    }

    #[test]
    fn box_blur_of_one_pixel_spreads_evenly_and_keeps_the_sum() {
        let mut v = vec![0f32; 25];
        v[12] = 9.0;
        box_blur(5, 5, &mut v, 1, 1);
        for (i, &x) in v.iter().enumerate() {
            let (dx, dy) = ((i % 5).abs_diff(2), (i / 5).abs_diff(2));
            let want = if dx <= 1 && dy <= 1 { 1.0 } else { 0.0 };
            assert!((x - want).abs() < 1e-6, "pixel {i}: {x}");
        }
    }
}
