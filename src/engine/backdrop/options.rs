//! The built-in segmenter's tunables ([`BackdropOptions`], sanitised before use so no
//! value can make it panic) and its error ([`SegmentError`]).
//!
//! Must not: hold any segmentation logic.

/// Tunables of [`cut_out`]. Every value is clamped to a sane range before use
/// (non-finite values fall back to the default), so no setting can make it panic.
#[derive(Debug, Clone)]
pub struct BackdropOptions {
    /// Longest side (pixels) of the downscaled copy on which the backdrop model and the
    /// mask are computed; the mask is then upsampled and its edge band refined at full
    /// resolution. Default 1024 (clamped to 64..=4096).
    pub working_max_side: u32,
    /// Longest side (pixels) of the copy used by the busy-background fallback.
    /// Default 512 (clamped to 64..=2048).
    pub busy_working_max_side: u32,
    /// Width of the border strip sampled to model the backdrop, as a fraction of the
    /// shorter side. Default 0.03 (clamped to 0.005..=0.2).
    pub border_fraction: f32,
    /// Largest typical border residual (median CIE ΔE76 against the fitted backdrop
    /// surface) for the border to count as a plain backdrop; above it the busy fallback
    /// is used. Default 4.0.
    pub max_backdrop_noise: f32,
    /// Least share of border samples that must agree with the backdrop model for it to
    /// count as a plain backdrop (the rest may be the object touching the frame).
    /// Default 0.6.
    pub min_backdrop_share: f32,
    /// Low hysteresis threshold, in multiples of the measured backdrop noise: pixels
    /// farther than this from the backdrop join the object if connected to a strong
    /// pixel. Default 3.0.
    pub low_threshold_noise: f32,
    /// High hysteresis threshold (strong object evidence), in multiples of the measured
    /// backdrop noise. Default 6.0.
    pub high_threshold_noise: f32,
    /// Floor of the low threshold, in CIE ΔE76. Default 3.0.
    pub min_low_threshold: f32,
    /// Floor of the high threshold, in CIE ΔE76. Default 8.0.
    pub min_high_threshold: f32,
    /// Darkening (as a fraction of the backdrop's L*+16) that, with unchanged chroma, is
    /// taken for a shadow and counts only `shadow_weight`. Default 0.25 (a shadow that
    /// takes up to ~57% of the light away).
    pub shadow_tolerance: f32,
    /// Weight of a darkening within `shadow_tolerance`. Default 0.15.
    pub shadow_weight: f32,
    /// Object parts smaller than this fraction of the picture are removed as specks.
    /// Default 0.0005.
    pub min_object_fraction: f32,
    /// Object parts smaller than this fraction of the largest part are removed as
    /// specks. Default 0.02.
    pub min_object_relative: f32,
    /// Enclosed holes that clearly show the backdrop (a mug handle's hole) become
    /// transparent when at least this fraction of the picture; smaller ones are filled.
    /// Default 0.0003.
    pub min_hole_fraction: f32,
    /// Un-mix the backdrop colour out of semi-transparent edge pixels and give fully
    /// transparent pixels the nearest object colour instead of the backdrop's.
    /// Default true.
    pub decontaminate: bool,
}

impl Default for BackdropOptions {
    fn default() -> Self {
        Self {
            working_max_side: 1024,
            busy_working_max_side: 512,
            border_fraction: 0.03,
            max_backdrop_noise: 4.0,
            min_backdrop_share: 0.6,
            low_threshold_noise: 3.0,
            high_threshold_noise: 6.0,
            min_low_threshold: 3.0,
            min_high_threshold: 8.0,
            shadow_tolerance: 0.25,
            shadow_weight: 0.15,
            min_object_fraction: 0.0005,
            min_object_relative: 0.02,
            min_hole_fraction: 0.0003,
            decontaminate: true,
        }
    }
}

impl BackdropOptions {
    /// A copy with every value forced into a sane range.
    pub(super) fn sanitized(&self) -> Self {
        let d = Self::default();
        let f = |v: f32, lo: f32, hi: f32, def: f32| {
            if v.is_finite() {
                v.clamp(lo, hi)
            } else {
                def
            }
        };
        Self {
            working_max_side: self.working_max_side.clamp(64, 4096),
            busy_working_max_side: self.busy_working_max_side.clamp(64, 2048),
            border_fraction: f(self.border_fraction, 0.005, 0.2, d.border_fraction),
            max_backdrop_noise: f(self.max_backdrop_noise, 0.0, 100.0, d.max_backdrop_noise),
            min_backdrop_share: f(self.min_backdrop_share, 0.0, 1.0, d.min_backdrop_share),
            low_threshold_noise: f(self.low_threshold_noise, 0.0, 100.0, d.low_threshold_noise),
            high_threshold_noise: f(
                self.high_threshold_noise,
                0.0,
                100.0,
                d.high_threshold_noise,
            ),
            min_low_threshold: f(self.min_low_threshold, 0.1, 200.0, d.min_low_threshold),
            min_high_threshold: f(self.min_high_threshold, 0.1, 200.0, d.min_high_threshold),
            shadow_tolerance: f(self.shadow_tolerance, 0.0, 0.9, d.shadow_tolerance),
            shadow_weight: f(self.shadow_weight, 0.0, 1.0, d.shadow_weight),
            min_object_fraction: f(self.min_object_fraction, 0.0, 0.5, d.min_object_fraction),
            min_object_relative: f(self.min_object_relative, 0.0, 1.0, d.min_object_relative),
            min_hole_fraction: f(self.min_hole_fraction, 0.0, 1.0, d.min_hole_fraction),
            decontaminate: self.decontaminate,
        }
    }
}

/// Why no cut-out could be made.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("image is too small to segment ({width}x{height}); it needs at least 8x8 pixels")]
    TooSmall { width: u32, height: u32 },
    #[error("no object found: the whole picture looks like backdrop")]
    NoObject,
}
