//! Value syntax of `[[inbox.output]]` keys: lengths (`40px`, `5%`, `0`),
//! one- or four-value margins, sizes (`WxH`), shares (`85%`) and colours
//! (`#RRGGBB[AA]`).
//!
//! Must not: know keys, presets or check errors (`spec` does, and names the
//! key); import `spec` (it imports this).

/// The largest canvas side the finishing stage will make.
pub const MAX_SIDE: u32 = 30_000;

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
