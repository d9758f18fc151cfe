//! One `[[inbox.output]]` table: the raw TOML form ([`RawOutput`], exactly
//! the documented key names, unknown keys refused), the presets, the checked
//! form ([`OutputSpec`], made by `check.rs`), and the name-collision check
//! across the outputs of one inbox.
//!
//! Owns: preset values, merging a preset under the given keys, and check
//! errors that name the key (value syntax is `syntax.rs`).
//! Must not: read files, know the config file's path (the caller adds it),
//! or touch pixels.

use serde::{Deserialize, Serialize};

pub use super::syntax::{
    parse_colour, parse_length, parse_margins, parse_percent, parse_size, Length, Margins, MAX_SIDE,
};

/// A margin as written: `margin = "40px 5% 40px 5%"` or `margin = 0`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawMargin {
    Px(i64),
    Text(String),
}

/// One `[[inbox.output]]` table as written in TOML. Every key is optional;
/// `preset` fills the ones not given.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub background: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crop: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha_threshold: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canvas: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fill: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub margin: Option<RawMargin>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upscale: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Webp,
    Jpeg,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Jpeg => "jpg",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Jpeg => "jpeg",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Amazon,
    Shopify,
    Ebay,
    Square,
    Thumbnail,
}

impl Preset {
    pub const ALL: [Preset; 5] = [
        Preset::Amazon,
        Preset::Shopify,
        Preset::Ebay,
        Preset::Square,
        Preset::Thumbnail,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Amazon => "amazon",
            Preset::Shopify => "shopify",
            Preset::Ebay => "ebay",
            Preset::Square => "square",
            Preset::Thumbnail => "thumbnail",
        }
    }

    /// Marketplace presets write sRGB pixels (other profiles are converted).
    pub fn is_marketplace(self) -> bool {
        matches!(self, Preset::Amazon | Preset::Shopify | Preset::Ebay)
    }

    /// The preset's values, in the raw form (docs/finishing.md lists them).
    pub fn values(self) -> RawOutput {
        let s = |v: &str| Some(v.to_string());
        let market = |canvas: &str| RawOutput {
            format: s("jpeg"),
            quality: Some(90),
            background: s("#FFFFFF"),
            crop: s("subject"),
            canvas: s(canvas),
            fill: s("85%"),
            position: s("center"),
            ..RawOutput::default()
        };
        match self {
            Preset::Amazon => market("2000x2000"),
            Preset::Shopify => market("2048x2048"),
            Preset::Ebay => market("1600x1600"),
            Preset::Square => RawOutput {
                format: s("png"),
                crop: s("subject"),
                canvas: s("square"),
                margin: Some(RawMargin::Text("5%".into())),
                ..RawOutput::default()
            },
            Preset::Thumbnail => RawOutput {
                format: s("webp"),
                quality: Some(80),
                crop: s("subject"),
                canvas: s("400x400"),
                margin: Some(RawMargin::Text("5%".into())),
                ..RawOutput::default()
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crop {
    None,
    Subject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canvas {
    /// The cropped size plus margins.
    None,
    /// A square around the cropped subject plus margins.
    Square,
    /// A fixed size.
    Fixed { width: u32, height: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Center,
    Bottom,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shadow {
    None,
    Soft,
}

/// A checked output: everything the finishing stage needs, defaults and
/// preset values filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSpec {
    pub preset: Option<Preset>,
    pub format: Format,
    /// 1–100; JPEG and lossy WebP (WebP 100 = lossless).
    pub quality: u8,
    /// `None` = transparent; else RGBA (sRGB).
    pub background: Option<[u8; 4]>,
    pub crop: Crop,
    pub alpha_threshold: u8,
    pub canvas: Canvas,
    /// Share of the canvas the subject's box takes along its limiting side.
    pub fill: Option<f64>,
    pub margin: Margins,
    pub position: Position,
    /// May the subject be enlarged (up to [`MAX_UPSCALE`]×)?
    pub upscale: bool,
    pub max_size: Option<(u32, u32)>,
    pub shadow: Shadow,
    pub mask: bool,
    pub suffix: String,
    /// Sub-folder of the outbox (relative, no `..`).
    pub folder: Option<String>,
    /// Convert pixels with another ICC profile to sRGB (marketplace presets).
    pub to_srgb: bool,
}

/// How far `upscale = true` may enlarge the subject.
pub const MAX_UPSCALE: f64 = 2.0;

/// A check error for one output table; names the key. The caller adds the
/// config file and the inbox.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("`{key}` = {value:?} is not valid: expected {expected}")]
    BadValue {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("`preset` = {0:?} is unknown: use one of amazon, shopify, ebay, square, thumbnail")]
    UnknownPreset(String),
    #[error("`background` is transparent but `format` is jpeg, which has no transparency: set `background = \"#FFFFFF\"` or use png/webp")]
    JpegTransparent,
    #[error("`fill` = {0:?} is over 100 %: the subject cannot take more than the whole canvas")]
    FillOver100(String),
    #[error("`margin` leaves no room for the subject ({detail}): make the margins smaller or the canvas larger")]
    NoRoom { detail: String },
    #[error("`suffix`/`folder`: outputs #{first} and #{second} would both write {name:?}: give one of them another `suffix` or `folder`")]
    Collision {
        first: usize,
        second: usize,
        name: String,
    },
}

impl SpecError {
    /// The key the error is about.
    pub fn key(&self) -> &'static str {
        match self {
            SpecError::BadValue { key, .. } => key,
            SpecError::UnknownPreset(_) => "preset",
            SpecError::JpegTransparent => "background",
            SpecError::FillOver100(_) => "fill",
            SpecError::NoRoom { .. } => "margin",
            SpecError::Collision { .. } => "suffix",
        }
    }

    /// Stable kebab-case code.
    pub fn code(&self) -> &'static str {
        match self {
            SpecError::BadValue { .. } => "output-bad-value",
            SpecError::UnknownPreset(_) => "output-unknown-preset",
            SpecError::JpegTransparent => "output-jpeg-transparent",
            SpecError::FillOver100(_) => "output-fill-over-100",
            SpecError::NoRoom { .. } => "output-no-room",
            SpecError::Collision { .. } => "output-name-collision",
        }
    }
}

/// An error in the `index`-th (1-based) `[[inbox.output]]` table.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("[[inbox.output]] #{index}: {error}")]
pub struct OutputsError {
    pub index: usize,
    #[source]
    pub error: SpecError,
}

pub(super) fn bad(key: &'static str, value: &str, expected: &'static str) -> SpecError {
    SpecError::BadValue {
        key,
        value: value.to_string(),
        expected,
    }
}

pub(super) fn parse_preset(name: &str) -> Result<Preset, SpecError> {
    Preset::ALL
        .into_iter()
        .find(|p| p.name() == name.trim())
        .ok_or_else(|| SpecError::UnknownPreset(name.to_string()))
}

fn pick<T: Clone>(own: &Option<T>, preset: &Option<T>) -> Option<T> {
    own.clone().or_else(|| preset.clone())
}

impl RawOutput {
    /// This table with the preset's values under the keys it does not give.
    pub fn merged(&self) -> Result<RawOutput, SpecError> {
        let p = match &self.preset {
            Some(name) => parse_preset(name)?.values(),
            None => RawOutput::default(),
        };
        Ok(RawOutput {
            preset: self.preset.clone(),
            format: pick(&self.format, &p.format),
            quality: pick(&self.quality, &p.quality),
            background: pick(&self.background, &p.background),
            crop: pick(&self.crop, &p.crop),
            alpha_threshold: pick(&self.alpha_threshold, &p.alpha_threshold),
            canvas: pick(&self.canvas, &p.canvas),
            fill: pick(&self.fill, &p.fill),
            margin: pick(&self.margin, &p.margin),
            position: pick(&self.position, &p.position),
            upscale: pick(&self.upscale, &p.upscale),
            max_size: pick(&self.max_size, &p.max_size),
            shadow: pick(&self.shadow, &p.shadow),
            mask: pick(&self.mask, &p.mask),
            suffix: pick(&self.suffix, &p.suffix),
            folder: pick(&self.folder, &p.folder),
        })
    }
}

/// (pixels, share) of two margin sides together.
pub fn split(a: Length, b: Length) -> (u32, f64) {
    let mut px = 0u32;
    let mut share = 0.0;
    for l in [a, b] {
        match l {
            Length::Px(p) => px = px.saturating_add(p),
            Length::Share(s) => share += s,
        }
    }
    (px, share)
}

/// Check all outputs of one inbox: each table, then that no two write the
/// same name (same folder + stem suffix + extension).
pub fn check_outputs(raw: &[RawOutput]) -> Result<Vec<OutputSpec>, OutputsError> {
    let mut specs: Vec<OutputSpec> = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let index = i + 1;
        let spec = r
            .check(index)
            .map_err(|error| OutputsError { index, error })?;
        let name = spec.name_pattern();
        if let Some(first) = specs.iter().position(|s| s.name_pattern() == name) {
            return Err(OutputsError {
                index,
                error: SpecError::Collision {
                    first: first + 1,
                    second: index,
                    name,
                },
            });
        }
        specs.push(spec);
    }
    Ok(specs)
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
