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
//!    (shadows) are not; white or light parts whose outline is a lightness *step*
//!    (a white sole, a white box, a label at the edge) are kept when those steps
//!    wall them off from the border (`white`), a shadow's ramp does not;
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

mod busy;
mod colour;
mod fit;
mod grey;
mod options;
mod plain;
mod render;
mod white;
mod work;

pub use options::{BackdropOptions, SegmentError};

use busy::busy_plan;
use colour::{srgb_to_linear_lut, to_lab};
use fit::fit_backdrop;
use plain::plain_plan;
use render::render;
use work::{border_indices, Work};

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

#[cfg(test)]
mod tests;
