//! Colour arithmetic: sRGB → CIE L*a*b*, distances, the shadow-tolerant residual
//! against the backdrop, and small numeric helpers.
//!
//! Must not: look at more than one pixel at a time.

pub(super) fn srgb_to_linear_lut() -> [f32; 256] {
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
pub(super) fn to_lab(lut: &[f32; 256], p: [u8; 3]) -> [f32; 3] {
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

pub(super) fn dist3(a: [f32; 3], b: [f32; 3]) -> f32 {
    norm3([a[0] - b[0], a[1] - b[1], a[2] - b[2]])
}

pub(super) fn norm3(a: [f32; 3]) -> f32 {
    (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt()
}

pub(super) fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

pub(super) fn median(v: &mut [f32]) -> f32 {
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
pub(super) fn shadow_residual(p: [f32; 3], b: [f32; 3], tolerance: f32, weight: f32) -> [f32; 3] {
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
