//! rembg's post-processing (sigmoid, min–max, × 255 truncated, Lanczos back to
//! the picture's size) and the optional clean-up ([`PostOptions`]) before the
//! mask becomes the picture's alpha.
//!
//! Must not: hold mask algorithms of its own (they live in `engine::mask`).

use image::{GrayImage, RgbaImage};

use super::preprocess::pil_lanczos;
use super::types::{inference, OnnxError, PostOptions};
use crate::engine::mask::clean::{feather, fill_holes, remove_specks};

/// rembg's output step: optional sigmoid, min–max to 0..1, × 255 truncated
/// to u8 (numpy's `astype("uint8")`). A constant output gives an all-zero
/// mask, as in rembg; NaN becomes 0.
pub(super) fn to_mask_u8(raw: &[f32], sigmoid: bool) -> Vec<u8> {
    let values: Vec<f32> = if sigmoid {
        raw.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect()
    } else {
        raw.to_vec()
    };
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let range = hi - lo;
    if !(range > 0.0 && range.is_finite()) {
        tracing::warn!("the model's output is constant: the mask is empty");
        return vec![0; values.len()];
    }
    values
        .iter()
        .map(|&v| (((v - lo) / range) * 255.0) as u8)
        .collect()
}

pub(super) fn resize_gray(
    small: &[u8],
    w: u32,
    h: u32,
    width: u32,
    height: u32,
) -> Result<GrayImage, OnnxError> {
    let (w, h, width_us, height_us) = (w as usize, h as usize, width as usize, height as usize);
    let pixels = pil_lanczos(small, w, h, 1, width_us, height_us)?;
    GrayImage::from_raw(width, height, pixels)
        .ok_or_else(|| inference("mask buffer has the wrong size"))
}

/// RGBA with the picture's own colours; alpha = mask × the picture's alpha.
pub(super) fn apply_alpha(rgba: &RgbaImage, mask: &GrayImage) -> RgbaImage {
    let mut out = rgba.clone();
    for (px, m) in out.pixels_mut().zip(mask.pixels()) {
        px.0[3] = ((u16::from(px.0[3]) * u16::from(m.0[0]) + 127) / 255) as u8;
    }
    out
}

pub(super) fn refine_mask(mask: &mut GrayImage, post: &PostOptions) {
    if post.remove_specks {
        remove_specks(mask);
    }
    if post.fill_holes {
        fill_holes(mask);
    }
    if post.feather_px > 0.0 && post.feather_px.is_finite() {
        feather(mask, post.feather_px);
    }
}
