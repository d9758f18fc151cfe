//! The working copy: the input downscaled (box filter) to the working resolution, its
//! normalised coordinates and border strips.
//!
//! Must not: decide anything about object or backdrop.

use image::RgbaImage;

/// A (possibly) downscaled copy of the input, row-major.
#[derive(Clone)]
pub(super) struct Work {
    pub(super) w: usize,
    pub(super) h: usize,
    pub(super) rgb: Vec<[u8; 3]>,
    pub(super) alpha: Vec<u8>,
}

impl Work {
    /// Area-averaging downscale so that the longest side is at most `max_side` (never
    /// below 8 pixels a side, never upscaled).
    pub(super) fn downsample(img: &RgbaImage, max_side: usize) -> Work {
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

    pub(super) fn rgb_f32(&self) -> Vec<[f32; 3]> {
        self.rgb
            .iter()
            .map(|p| [f32::from(p[0]), f32::from(p[1]), f32::from(p[2])])
            .collect()
    }
}

/// Normalised coordinates of a pixel centre, in [-1, 1] on both axes, identical for
/// every resolution of the same picture.
pub(super) fn uv(x: usize, y: usize, w: usize, h: usize) -> (f32, f32) {
    (
        (x as f32 + 0.5) / w as f32 * 2.0 - 1.0,
        (y as f32 + 0.5) / h as f32 * 2.0 - 1.0,
    )
}

/// Width of a border strip for a `w`x`h` picture.
pub(super) fn strip_width(w: usize, h: usize, frac: f32) -> usize {
    let short = w.min(h);
    ((frac * short as f32).round() as usize).clamp(1, (short / 4).max(1))
}

/// Indices of the pixels in the border strip, evenly thinned to at most `max` of them.
pub(super) fn border_indices(w: usize, h: usize, frac: f32, max: usize) -> Vec<usize> {
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
