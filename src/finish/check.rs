//! Checking one `[[inbox.output]]` table into an [`OutputSpec`]: each key's
//! value, a JPEG's background, margins that leave room, suffix and folder.
//!
//! Must not: know presets' values or the collision rule across outputs
//! (`spec` does); read files or touch pixels.

use super::spec::{
    bad, parse_preset, split, Canvas, Crop, Format, OutputSpec, Position, Preset, RawMargin,
    RawOutput, Shadow, SpecError,
};
use super::syntax::{parse_colour, parse_margins, parse_percent, parse_size, Margins};

impl RawOutput {
    /// Check this table; `index` is its 1-based place among the inbox's
    /// outputs (later outputs get a default suffix).
    pub fn check(&self, index: usize) -> Result<OutputSpec, SpecError> {
        let m = self.merged()?;
        let preset = m.preset.as_deref().map(parse_preset).transpose()?;
        let Look {
            format,
            quality,
            background,
            mask,
        } = m.check_look()?;
        let FrameKeys {
            crop,
            alpha_threshold,
            canvas,
            fill,
            margin,
        } = m.check_frame()?;
        let Placement {
            position,
            max_size,
            shadow,
        } = m.check_placement()?;
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

    /// `format`, `quality`, `background`, `mask` (a JPEG needs an opaque
    /// background unless it is a mask).
    fn check_look(&self) -> Result<Look, SpecError> {
        let format = match self.format.as_deref().map(str::trim) {
            None | Some("png") => Format::Png,
            Some("webp") => Format::Webp,
            Some("jpeg") | Some("jpg") => Format::Jpeg,
            Some(v) => return Err(bad("format", v, "png, webp or jpeg")),
        };
        let quality = match self.quality {
            None => 90,
            Some(q @ 1..=100) => q as u8,
            Some(q) => return Err(bad("quality", &q.to_string(), "a whole number 1–100")),
        };
        let background =
            match self.background.as_deref().map(str::trim) {
                None | Some("transparent") => None,
                Some(v) => Some(parse_colour(v).ok_or_else(|| {
                    bad("background", v, "`transparent`, `#RRGGBB` or `#RRGGBBAA`")
                })?),
            };
        let mask = self.mask.unwrap_or(false);
        let opaque = background.is_some_and(|c| c[3] == 255);
        if format == Format::Jpeg && !opaque && !mask {
            return Err(SpecError::JpegTransparent);
        }
        Ok(Look {
            format,
            quality,
            background,
            mask,
        })
    }

    /// `crop`, `alpha_threshold`, `canvas`, `fill`, `margin` (margins must
    /// leave room on the canvas).
    fn check_frame(&self) -> Result<FrameKeys, SpecError> {
        let crop = match self.crop.as_deref().map(str::trim) {
            None | Some("none") => Crop::None,
            Some("subject") => Crop::Subject,
            Some(v) => return Err(bad("crop", v, "`none` or `subject`")),
        };
        let alpha_threshold = match self.alpha_threshold {
            None => 16,
            Some(t @ 0..=255) => t as u8,
            Some(t) => return Err(bad("alpha_threshold", &t.to_string(), "0–255")),
        };
        let canvas = match self.canvas.as_deref().map(str::trim) {
            None | Some("none") => Canvas::None,
            Some("square") => Canvas::Square,
            Some(v) => {
                let (width, height) = parse_size(v).ok_or_else(|| {
                    bad("canvas", v, "`none`, `square` or `WxH` such as `2000x2000`")
                })?;
                Canvas::Fixed { width, height }
            }
        };
        let fill = self.fill.as_deref().map(check_fill).transpose()?;
        let margin = match &self.margin {
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
        Ok(FrameKeys {
            crop,
            alpha_threshold,
            canvas,
            fill,
            margin,
        })
    }

    /// `position`, `max_size`, `shadow`.
    fn check_placement(&self) -> Result<Placement, SpecError> {
        let position = match self.position.as_deref().map(str::trim) {
            None | Some("center") => Position::Center,
            Some("bottom") => Position::Bottom,
            Some(v) => return Err(bad("position", v, "`center` or `bottom`")),
        };
        let max_size = match self.max_size.as_deref() {
            None => None,
            Some(v) => {
                Some(parse_size(v).ok_or_else(|| bad("max_size", v, "`WxH` such as `1000x1000`"))?)
            }
        };
        let shadow = match self.shadow.as_deref().map(str::trim) {
            None | Some("none") => Shadow::None,
            Some("soft") => Shadow::Soft,
            Some(v) => return Err(bad("shadow", v, "`none` or `soft`")),
        };
        Ok(Placement {
            position,
            max_size,
            shadow,
        })
    }
}

/// Checked `format`, `quality`, `background`, `mask`.
struct Look {
    format: Format,
    quality: u8,
    background: Option<[u8; 4]>,
    mask: bool,
}

/// Checked `crop`, `alpha_threshold`, `canvas`, `fill`, `margin`.
struct FrameKeys {
    crop: Crop,
    alpha_threshold: u8,
    canvas: Canvas,
    fill: Option<f64>,
    margin: Margins,
}

/// Checked `position`, `max_size`, `shadow`.
struct Placement {
    position: Position,
    max_size: Option<(u32, u32)>,
    shadow: Shadow,
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
