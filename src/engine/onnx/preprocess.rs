//! rembg's pre-processing: RGB, Lanczos to the model's square input exactly
//! as Pillow does it, divided by the picture's maximum, `(x − mean) / std`, NCHW.
//!
//! Must not: know about sessions or tensors' element types.

use image::RgbaImage;

use super::kind::ModelKind;
use super::types::{inference, OnnxError};

/// rembg's `normalize`: RGB (alpha dropped, not composited), Lanczos to
/// `size`² exactly as Pillow does it, divided by the resized picture's
/// maximum, `(x − mean) / std`, NCHW.
pub(super) fn preprocess(
    rgba: &RgbaImage,
    kind: ModelKind,
    size: u32,
) -> Result<Vec<f32>, OnnxError> {
    let (width, height) = (rgba.width() as usize, rgba.height() as usize);
    let rgb: Vec<u8> = rgba
        .pixels()
        .flat_map(|p| [p.0[0], p.0[1], p.0[2]])
        .collect();
    let side = size as usize;
    let pixels = pil_lanczos(&rgb, width, height, 3, side, side)?;
    let max = f64::from(pixels.iter().copied().max().unwrap_or(0)).max(1e-6);
    let (mean, std) = (kind.mean(), kind.std());
    let plane = side * side;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in pixels.chunks_exact(3).enumerate() {
        for c in 0..3 {
            // Same arithmetic as numpy's float64, then one rounding to f32.
            out[c * plane + i] = ((f64::from(px[c]) / max - mean[c]) / std[c]) as f32;
        }
    }
    Ok(out)
}

/// Pillow's `Image.resize(size, Image.LANCZOS)` on 8-bit pixels with
/// `channels` interleaved bands, bit for bit (libImaging/Resample.c: the
/// same coefficients, 22-bit fixed point, horizontal pass then vertical,
/// clipped to 0..=255 after each). fast_image_resize's Lanczos3 differs from
/// it by up to 22 levels when upscaling, which IS-Net turns into mask
/// differences of 7/255 against rembg; this keeps them within 2/255.
pub(super) fn pil_lanczos(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
) -> Result<Vec<u8>, OnnxError> {
    if width == 0
        || height == 0
        || out_w == 0
        || out_h == 0
        || src.len() != width * height * channels
    {
        return Err(inference(format!(
            "cannot resize {width}×{height} (×{channels}) to {out_w}×{out_h}"
        )));
    }
    if (width, height) == (out_w, out_h) {
        return Ok(src.to_vec());
    }
    let mut vert = Coefficients::new(height, out_h);
    let (mut data, mut data_w) = (std::borrow::Cow::Borrowed(src), width);
    if out_w != width {
        let first = vert.bounds[0].0;
        let last = vert.bounds[out_h - 1].0 + vert.bounds[out_h - 1].1;
        for b in &mut vert.bounds {
            b.0 -= first;
        }
        let horiz = Coefficients::new(width, out_w);
        let rows = last - first;
        let mut tmp = vec![0u8; out_w * rows * channels];
        for (y, row) in tmp.chunks_exact_mut(out_w * channels).enumerate() {
            let line = &src[(y + first) * width * channels..(y + first + 1) * width * channels];
            for (x, px) in row.chunks_exact_mut(channels).enumerate() {
                let (start, len, k) = horiz.at(x);
                for (c, out) in px.iter_mut().enumerate() {
                    let mut acc = ROUNDING;
                    for (i, &w) in k[..len].iter().enumerate() {
                        acc += i64::from(line[(start + i) * channels + c]) * w;
                    }
                    *out = clip8(acc);
                }
            }
        }
        data = std::borrow::Cow::Owned(tmp);
        data_w = out_w;
    }
    if out_h == height && out_w != width {
        return Ok(data.into_owned());
    }
    let stride = data_w * channels;
    let mut out = vec![0u8; stride * out_h];
    for (y, row) in out.chunks_exact_mut(stride).enumerate() {
        let (start, len, k) = vert.at(y);
        for (i, value) in row.iter_mut().enumerate() {
            let mut acc = ROUNDING;
            for (j, &w) in k[..len].iter().enumerate() {
                acc += i64::from(data[(start + j) * stride + i]) * w;
            }
            *value = clip8(acc);
        }
    }
    Ok(out)
}

/// Pillow's `PRECISION_BITS`: coefficients are fixed point with 22 fraction bits.
const PRECISION_BITS: u32 = 22;
const ROUNDING: i64 = 1 << (PRECISION_BITS - 1);

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the Lanczos filter.
struct Coefficients {
    ksize: usize,
    /// (first input index, count) for each output index.
    bounds: Vec<(usize, usize)>,
    weights: Vec<i64>,
}

impl Coefficients {
    fn new(in_size: usize, out_size: usize) -> Self {
        const SUPPORT: f64 = 3.0;
        let scale = in_size as f32 as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = SUPPORT * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(out_size);
        let mut weights = vec![0i64; out_size * ksize];
        let mut k = vec![0f64; ksize];
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C's (int) cast truncates toward zero, as `as` does.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = (((center + support + 0.5) as i64).min(in_size as i64) as usize)
                .saturating_sub(xmin);
            let xmax = xmax.min(ksize);
            let mut ww = 0.0;
            for (x, slot) in k.iter_mut().enumerate().take(xmax) {
                let w = lanczos_filter(((x + xmin) as f64 - center + 0.5) * ss);
                *slot = w;
                ww += w;
            }
            for (x, &w) in k.iter().enumerate().take(xmax) {
                let w = if ww != 0.0 { w / ww } else { w };
                let fixed = w * f64::from(1u32 << PRECISION_BITS);
                weights[xx * ksize + x] = if w < 0.0 {
                    (fixed - 0.5) as i64
                } else {
                    (fixed + 0.5) as i64
                };
            }
            bounds.push((xmin, xmax));
        }
        Coefficients {
            ksize,
            bounds,
            weights,
        }
    }

    fn at(&self, i: usize) -> (usize, usize, &[i64]) {
        let (start, len) = self.bounds[i];
        (
            start,
            len,
            &self.weights[i * self.ksize..(i + 1) * self.ksize],
        )
    }
}

fn lanczos_filter(x: f64) -> f64 {
    fn sinc(x: f64) -> f64 {
        if x == 0.0 {
            1.0
        } else {
            let x = x * std::f64::consts::PI;
            x.sin() / x
        }
    }
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}
