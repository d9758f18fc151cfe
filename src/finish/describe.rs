//! How a checked output is shown: its name pattern (collision checks,
//! messages) and its values in the raw form with presets filled in (what
//! `cutout check` prints).
//!
//! Must not: check values (`spec` does).

use std::fmt;

use super::spec::{Canvas, Crop, Length, OutputSpec, Position, RawMargin, RawOutput, Shadow};

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
