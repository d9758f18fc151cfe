//! Decontamination: the colour of a semi-transparent edge pixel without the
//! backdrop that bled into it. One rule for both engines: solve
//! `C = α·F + (1 − α)·B` for the object colour `F`, then lean on the nearby
//! object colour where α is too small for the solution to be trusted.
//!
//! Must not: change alpha, or decide what is object (callers pass the mask).

use image::RgbaImage;

/// The colour of edge pixel `c` (alpha `alpha` in 0..=1) with backdrop `bg`
/// removed, blended with the nearby object colour `fg`: `trust` (0..=1) of
/// the un-mixed colour, the rest `fg`. Without `bg` the pixel's own colour
/// counts as un-mixed; without `fg` the un-mixed colour is returned whole.
pub(crate) fn unmix_colour(
    c: [f64; 3],
    alpha: f64,
    bg: Option<[f64; 3]>,
    fg: Option<[f64; 3]>,
    trust: f64,
) -> [f64; 3] {
    let solved = match bg {
        Some(b) if alpha > 0.0 => {
            [0, 1, 2].map(|k| ((c[k] - (1.0 - alpha) * b[k]) / alpha).clamp(0.0, 255.0))
        }
        _ => c,
    };
    match fg {
        Some(f) => [0, 1, 2].map(|k| trust * solved[k] + (1.0 - trust) * f[k]),
        None => solved,
    }
}

/// Alpha at or below this counts as backdrop for [`decontaminate`].
const CLEAR: u8 = 12;
/// Alpha at or above this counts as object for [`decontaminate`].
const OPAQUE: u8 = 243;

/// For the semi-transparent edge pixels of a cut-out, removes the backdrop
/// colour that bled in: F̄ and B̄ are the mean colours of nearby opaque and
/// transparent pixels (a sparse window scaled with the picture), and the
/// un-mixed colour is trusted in proportion to α ([`unmix_colour`]).
pub(crate) fn decontaminate(img: &mut RgbaImage) {
    let (w, h) = (img.width() as isize, img.height() as isize);
    let radius = (w.max(h) / 256).max(4);
    let step = (radius / 4).max(1);
    let src = img.clone();
    let data = src.as_raw();
    let at = |x: isize, y: isize| &data[((y * w + x) * 4) as usize..((y * w + x) * 4 + 4) as usize];
    for y in 0..h {
        for x in 0..w {
            let px = at(x, y);
            let alpha = px[3];
            if alpha <= CLEAR || alpha >= OPAQUE {
                continue;
            }
            let (mut fg, mut fg_n, mut bg, mut bg_n) = ([0f64; 3], 0f64, [0f64; 3], 0f64);
            let mut sy = (y - radius).max(0);
            while sy <= (y + radius).min(h - 1) {
                let mut sx = (x - radius).max(0);
                while sx <= (x + radius).min(w - 1) {
                    let s = at(sx, sy);
                    if s[3] >= OPAQUE {
                        (0..3).for_each(|c| fg[c] += f64::from(s[c]));
                        fg_n += 1.0;
                    } else if s[3] <= CLEAR {
                        (0..3).for_each(|c| bg[c] += f64::from(s[c]));
                        bg_n += 1.0;
                    }
                    sx += step;
                }
                sy += step;
            }
            let mean = |sum: [f64; 3], n: f64| (n > 0.0).then(|| sum.map(|v| v / n));
            let a = f64::from(alpha) / 255.0;
            let c = [0, 1, 2].map(|k| f64::from(px[k]));
            let colour = unmix_colour(c, a, mean(bg, bg_n), mean(fg, fg_n), a);
            let out = img.get_pixel_mut(x as u32, y as u32);
            for (dst, v) in out.0.iter_mut().zip(colour) {
                *dst = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgba;

    #[test]
    fn decontamination_removes_background_bleed() {
        // Red subject, blue background, a column of half-transparent purple at the edge.
        let mut img = RgbaImage::from_fn(20, 10, |x, _| match x {
            0..=9 => Rgba([255, 0, 0, 255]),
            10 => Rgba([128, 0, 127, 128]),
            _ => Rgba([0, 0, 255, 0]),
        });
        decontaminate(&mut img);
        let edge = img.get_pixel(10, 5).0;
        assert!(edge[0] > 240 && edge[2] < 15, "{edge:?}");
        assert_eq!(edge[3], 128);
        assert_eq!(img.get_pixel(3, 3).0, [255, 0, 0, 255]);
    }

    #[test]
    fn unmixing_recovers_the_object_colour_of_a_mixed_pixel() {
        let (f, b) = ([200.0, 40.0, 10.0], [250.0, 250.0, 250.0]);
        let a = 0.3;
        let c = [0, 1, 2].map(|k| a * f[k] + (1.0 - a) * b[k]);
        let got = unmix_colour(c, a, Some(b), None, 1.0);
        for k in 0..3 {
            assert!((got[k] - f[k]).abs() < 1e-9, "{got:?}");
        }
        // No trust: the nearby object colour.
        assert_eq!(
            unmix_colour(c, a, Some(b), Some([1.0, 2.0, 3.0]), 0.0),
            [1.0, 2.0, 3.0]
        );
    }
}
