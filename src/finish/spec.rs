//! One `[[inbox.output]]` table: the raw TOML form ([`RawOutput`], exactly
//! the documented key names, unknown keys refused), the presets, and the
//! checker that turns it into a ready [`OutputSpec`] (plus the name-collision
//! check across the outputs of one inbox).
//!
//! Owns: value syntax (`40px`, `5%`, four-value margins, `WxH`,
//! `#RRGGBB[AA]`, `85%`), preset values, and check errors that name the key.
//! Must not: read files, know the config file's path (the caller adds it),
//! or touch pixels.

use std::fmt;

use serde::{Deserialize, Serialize};

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

/// One margin side: pixels, or a share of the canvas side (0.05 = 5 %).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Length {
    Px(u32),
    Share(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Margins {
    pub top: Length,
    pub right: Length,
    pub bottom: Length,
    pub left: Length,
}

impl Margins {
    pub const ZERO: Margins = Margins {
        top: Length::Px(0),
        right: Length::Px(0),
        bottom: Length::Px(0),
        left: Length::Px(0),
    };
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
/// The largest canvas side the finishing stage will make.
pub const MAX_SIDE: u32 = 30_000;

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

fn bad(key: &'static str, value: &str, expected: &'static str) -> SpecError {
    SpecError::BadValue {
        key,
        value: value.to_string(),
        expected,
    }
}

/// `85%` → 0.85 (any share 0–100 %, not checked here beyond syntax).
pub fn parse_percent(s: &str) -> Option<f64> {
    let v: f64 = s.trim().strip_suffix('%')?.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v / 100.0)
}

/// `2000x2000` → (2000, 2000); both sides 1..=[`MAX_SIDE`].
pub fn parse_size(s: &str) -> Option<(u32, u32)> {
    let (w, h) = s.trim().split_once(['x', 'X'])?;
    let w: u32 = w.trim().parse().ok()?;
    let h: u32 = h.trim().parse().ok()?;
    ((1..=MAX_SIDE).contains(&w) && (1..=MAX_SIDE).contains(&h)).then_some((w, h))
}

/// `#RRGGBB` / `#RRGGBBAA` → RGBA.
pub fn parse_colour(s: &str) -> Option<[u8; 4]> {
    let hex = s.trim().strip_prefix('#')?;
    if !(hex.len() == 6 || hex.len() == 8) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    let a = if hex.len() == 8 { byte(6)? } else { 255 };
    Some([byte(0)?, byte(2)?, byte(4)?, a])
}

/// `40px`, `5%` or `0`.
pub fn parse_length(s: &str) -> Option<Length> {
    let s = s.trim();
    if s == "0" {
        return Some(Length::Px(0));
    }
    if let Some(px) = s.strip_suffix("px") {
        return px.trim().parse().ok().map(Length::Px);
    }
    let share = parse_percent(s)?;
    (share < 1.0).then_some(Length::Share(share))
}

/// One value (all sides) or four (`top right bottom left`).
pub fn parse_margins(s: &str) -> Option<Margins> {
    let parts: Vec<Length> = s
        .split_whitespace()
        .map(parse_length)
        .collect::<Option<_>>()?;
    match parts[..] {
        [all] => Some(Margins {
            top: all,
            right: all,
            bottom: all,
            left: all,
        }),
        [top, right, bottom, left] => Some(Margins {
            top,
            right,
            bottom,
            left,
        }),
        _ => None,
    }
}

fn parse_preset(name: &str) -> Result<Preset, SpecError> {
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

    /// Check this table; `index` is its 1-based place among the inbox's
    /// outputs (later outputs get a default suffix).
    pub fn check(&self, index: usize) -> Result<OutputSpec, SpecError> {
        let m = self.merged()?;
        let preset = m.preset.as_deref().map(parse_preset).transpose()?;
        let format = match m.format.as_deref().map(str::trim) {
            None | Some("png") => Format::Png,
            Some("webp") => Format::Webp,
            Some("jpeg") | Some("jpg") => Format::Jpeg,
            Some(v) => return Err(bad("format", v, "png, webp or jpeg")),
        };
        let quality = match m.quality {
            None => 90,
            Some(q @ 1..=100) => q as u8,
            Some(q) => return Err(bad("quality", &q.to_string(), "a whole number 1–100")),
        };
        let background =
            match m.background.as_deref().map(str::trim) {
                None | Some("transparent") => None,
                Some(v) => Some(parse_colour(v).ok_or_else(|| {
                    bad("background", v, "`transparent`, `#RRGGBB` or `#RRGGBBAA`")
                })?),
            };
        let mask = m.mask.unwrap_or(false);
        let opaque = background.is_some_and(|c| c[3] == 255);
        if format == Format::Jpeg && !opaque && !mask {
            return Err(SpecError::JpegTransparent);
        }
        let crop = match m.crop.as_deref().map(str::trim) {
            None | Some("none") => Crop::None,
            Some("subject") => Crop::Subject,
            Some(v) => return Err(bad("crop", v, "`none` or `subject`")),
        };
        let alpha_threshold = match m.alpha_threshold {
            None => 16,
            Some(t @ 0..=255) => t as u8,
            Some(t) => return Err(bad("alpha_threshold", &t.to_string(), "0–255")),
        };
        let canvas = match m.canvas.as_deref().map(str::trim) {
            None | Some("none") => Canvas::None,
            Some("square") => Canvas::Square,
            Some(v) => {
                let (width, height) = parse_size(v).ok_or_else(|| {
                    bad("canvas", v, "`none`, `square` or `WxH` such as `2000x2000`")
                })?;
                Canvas::Fixed { width, height }
            }
        };
        let fill = m.fill.as_deref().map(check_fill).transpose()?;
        let margin = match &m.margin {
            None => Margins::ZERO,
            Some(RawMargin::Px(px)) => {
                let px = u32::try_from(*px)
                    .map_err(|_| bad("margin", &px.to_string(), MARGIN_SYNTAX))?;
                parse_margins(&format!("{px}px")).unwrap_or(Margins::ZERO)
            }
            Some(RawMargin::Text(t)) => {
                parse_margins(t).ok_or_else(|| bad("margin", t, MARGIN_SYNTAX))?
            }
        };
        check_room(&margin, canvas)?;
        let position = match m.position.as_deref().map(str::trim) {
            None | Some("center") => Position::Center,
            Some("bottom") => Position::Bottom,
            Some(v) => return Err(bad("position", v, "`center` or `bottom`")),
        };
        let max_size = match m.max_size.as_deref() {
            None => None,
            Some(v) => {
                Some(parse_size(v).ok_or_else(|| bad("max_size", v, "`WxH` such as `1000x1000`"))?)
            }
        };
        let shadow = match m.shadow.as_deref().map(str::trim) {
            None | Some("none") => Shadow::None,
            Some("soft") => Shadow::Soft,
            Some(v) => return Err(bad("shadow", v, "`none` or `soft`")),
        };
        let suffix = match &m.suffix {
            Some(s) => check_suffix(s)?,
            None if index <= 1 => String::new(),
            None => match preset {
                Some(p) => format!("-{}", p.name()),
                None => format!("-output{index}"),
            },
        };
        let folder = m.folder.as_deref().map(check_folder).transpose()?;
        Ok(OutputSpec {
            preset,
            format,
            quality,
            background,
            crop,
            alpha_threshold,
            canvas,
            fill,
            margin,
            position,
            upscale: m.upscale.unwrap_or(true),
            max_size,
            shadow,
            mask,
            suffix,
            folder,
            to_srgb: preset.is_some_and(Preset::is_marketplace),
        })
    }
}

const MARGIN_SYNTAX: &str =
    "one value or four (`top right bottom left`), each `40px`, `5%` (under 100 %) or `0`";

fn check_fill(v: &str) -> Result<f64, SpecError> {
    let share = parse_percent(v).ok_or_else(|| bad("fill", v, "a share such as `85%`"))?;
    if share > 1.0 {
        return Err(SpecError::FillOver100(v.to_string()));
    }
    if share < 0.01 {
        return Err(bad("fill", v, "a share of at least 1%"));
    }
    Ok(share)
}

/// Margins must leave at least one pixel (shares: under 100 % in all).
fn check_room(m: &Margins, canvas: Canvas) -> Result<(), SpecError> {
    let axes = [
        ("left + right", m.left, m.right, canvas_side(canvas, true)),
        ("top + bottom", m.top, m.bottom, canvas_side(canvas, false)),
    ];
    for (name, a, b, side) in axes {
        let (px, share) = split(a, b);
        if share >= 1.0 {
            return Err(SpecError::NoRoom {
                detail: format!("{name} take {:.0}% of the canvas", share * 100.0),
            });
        }
        if let Some(side) = side {
            let used = px as f64 + share * side as f64;
            if used >= side as f64 - 1.0 {
                return Err(SpecError::NoRoom {
                    detail: format!("{name} take {used:.0} of {side} px"),
                });
            }
        }
    }
    Ok(())
}

fn canvas_side(canvas: Canvas, horizontal: bool) -> Option<u32> {
    match canvas {
        Canvas::Fixed { width, height } => Some(if horizontal { width } else { height }),
        _ => None,
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

fn check_suffix(s: &str) -> Result<String, SpecError> {
    if s.contains(['/', '\\', '\0']) || s.len() > 64 {
        return Err(bad(
            "suffix",
            s,
            "up to 64 characters without `/`, `\\` or NUL, such as `-amazon`",
        ));
    }
    Ok(s.to_string())
}

fn check_folder(s: &str) -> Result<String, SpecError> {
    let p = std::path::Path::new(s);
    let ok = !s.trim().is_empty()
        && !s.contains('\0')
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !ok {
        return Err(bad(
            "folder",
            s,
            "a relative sub-folder of the outbox without `..`, such as `amazon`",
        ));
    }
    Ok(s.trim_end_matches('/').to_string())
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

impl OutputSpec {
    /// `[folder/]<stem><suffix>.<ext>` as text, for collision checks and
    /// messages.
    pub fn name_pattern(&self) -> String {
        let folder = self
            .folder
            .as_deref()
            .map(|f| format!("{f}/"))
            .unwrap_or_default();
        format!("{folder}<stem>{}.{}", self.suffix, self.format.extension())
    }

    /// The checked values in the raw form (`cutout check` prints this with
    /// the preset's values filled in).
    pub fn to_raw(&self) -> RawOutput {
        let len = |l: Length| match l {
            Length::Px(p) => format!("{p}px"),
            Length::Share(s) => format!("{}%", round6(s * 100.0)),
        };
        let m = self.margin;
        RawOutput {
            preset: self.preset.map(|p| p.name().to_string()),
            format: Some(self.format.name().into()),
            quality: Some(self.quality.into()),
            background: Some(match self.background {
                None => "transparent".into(),
                Some([r, g, b, 255]) => format!("#{r:02X}{g:02X}{b:02X}"),
                Some([r, g, b, a]) => format!("#{r:02X}{g:02X}{b:02X}{a:02X}"),
            }),
            crop: Some(match self.crop {
                Crop::None => "none".into(),
                Crop::Subject => "subject".into(),
            }),
            alpha_threshold: Some(self.alpha_threshold.into()),
            canvas: Some(match self.canvas {
                Canvas::None => "none".into(),
                Canvas::Square => "square".into(),
                Canvas::Fixed { width, height } => format!("{width}x{height}"),
            }),
            fill: self.fill.map(|f| format!("{}%", round6(f * 100.0))),
            margin: Some(RawMargin::Text(format!(
                "{} {} {} {}",
                len(m.top),
                len(m.right),
                len(m.bottom),
                len(m.left)
            ))),
            position: Some(match self.position {
                Position::Center => "center".into(),
                Position::Bottom => "bottom".into(),
            }),
            upscale: Some(self.upscale),
            max_size: self.max_size.map(|(w, h)| format!("{w}x{h}")),
            shadow: Some(match self.shadow {
                Shadow::None => "none".into(),
                Shadow::Soft => "soft".into(),
            }),
            mask: Some(self.mask),
            suffix: Some(self.suffix.clone()),
            folder: self.folder.clone(),
        }
    }
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

impl fmt::Display for OutputSpec {
    /// One line of TOML (an inline table) with every value filled in.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = toml::Value::try_from(self.to_raw()).map_err(|_| fmt::Error)?;
        write!(f, "{value}")
    }
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
