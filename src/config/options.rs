//! Per-inbox provider options (`options = { … }` in an `[[inbox]]`): the value
//! rules, applied once when the config is read (by `check_provider`) into the
//! typed [`InboxOptions`](super::InboxOptions) (declared in `types`) that live on
//! the [`Inbox`](super::Inbox); providers read the typed values and never
//! parse the table again.
//!
//! Owns: which option keys each provider kind accepts and their value rules;
//! errors name `inbox[N].options`, the option and the file.
//!
//! Must not: know the wire format of a provider's API (how the values are
//! sent is the provider's business) or import provider code.

use super::colour::is_color;
use super::types::{OutputFormat, RembgOptions};

/// The option keys rembg.com documents.
const REMBG_KEYS: &[&str] = &[
    "format",
    "w",
    "h",
    "exact_resize",
    "mask",
    "bg_color",
    "angle",
    "expand",
];
/// Largest `w` / `h` accepted.
pub const REMBG_MAX_SIDE: i64 = 10_000;

impl RembgOptions {
    /// Check an `options = { … }` table; errors name the option.
    pub fn parse(t: &toml::Table) -> Result<RembgOptions, String> {
        let mut o = RembgOptions::default();
        for (k, v) in t {
            o.set(k, v)?;
        }
        if o.mask == Some(true) && o.bg_color.is_some() {
            return Err("`mask = true` cannot be combined with `bg_color`; choose one".into());
        }
        if o.exact_resize == Some(true) && o.w.is_none() && o.h.is_none() {
            return Err("`exact_resize = true` needs `w` and/or `h`".into());
        }
        Ok(o)
    }

    /// One `key = value` of the table.
    fn set(&mut self, k: &str, v: &toml::Value) -> Result<(), String> {
        let bool_of = |v: &toml::Value| {
            v.as_bool()
                .ok_or_else(|| format!("`{k}` must be true or false, got {v}"))
        };
        let side = |v: &toml::Value| match v.as_integer() {
            Some(n) if (1..=REMBG_MAX_SIDE).contains(&n) => Ok(n),
            _ => Err(format!(
                "`{k}` must be a whole number of pixels from 1 to {REMBG_MAX_SIDE}, got {v}"
            )),
        };
        match k {
            "format" => {
                self.format = Some(match v.as_str() {
                    Some("png") => OutputFormat::Png,
                    Some("webp") => OutputFormat::Webp,
                    _ => return Err(format!("`format` must be \"png\" or \"webp\", got {v}")),
                })
            }
            "w" => self.w = Some(side(v)?),
            "h" => self.h = Some(side(v)?),
            "exact_resize" => self.exact_resize = Some(bool_of(v)?),
            "mask" => self.mask = Some(bool_of(v)?),
            "expand" => self.expand = Some(bool_of(v)?),
            "angle" => {
                let a = v
                    .as_float()
                    .or_else(|| v.as_integer().map(|i| i as f64))
                    .filter(|a| a.is_finite() && (-360.0..=360.0).contains(a))
                    .ok_or_else(|| format!("`angle` must be a number from -360 to 360, got {v}"))?;
                self.angle = Some(a);
            }
            "bg_color" => {
                let c = v.as_str().filter(|c| is_color(c)).ok_or_else(|| {
                    format!(
                        "`bg_color` must be \"#RGB\", \"#RGBA\", \"#RRGGBB\", \"#RRGGBBAA\" or a CSS colour name, got {v}"
                    )
                })?;
                self.bg_color = Some(c.to_string());
            }
            other => {
                return Err(format!(
                    "unknown option `{other}` for rembg-com; known options: {}",
                    REMBG_KEYS.join(", ")
                ))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        toml::from_str(s).expect("toml")
    }

    #[test]
    fn rembg_options_are_checked_by_name() {
        let o = RembgOptions::parse(&table("w = 2000\nbg_color = \"#ffffff\"")).expect("ok");
        assert_eq!(o.w, Some(2000));
        assert_eq!(o.bg_color.as_deref(), Some("#ffffff"));
        for (bad, key) in [
            ("w = \"big\"", "`w`"),
            ("w = 0", "`w`"),
            ("h = 10001", "`h`"),
            ("mask = \"yes\"", "`mask`"),
            ("bg_color = \"#12345\"", "`bg_color`"),
            ("bg_color = \"notacolour\"", "`bg_color`"),
            ("angle = 400", "`angle`"),
            ("format = \"gif\"", "`format`"),
            ("colour = \"red\"", "`colour`"),
            ("mask = true\nbg_color = \"red\"", "bg_color"),
            ("exact_resize = true", "exact_resize"),
        ] {
            let e = RembgOptions::parse(&table(bad)).expect_err(bad);
            assert!(e.contains(key), "{bad}: {e}");
        }
        let o = RembgOptions::parse(&table("bg_color = \"White\"\nangle = 90")).expect("ok");
        assert_eq!(o.angle, Some(90.0));
    }
}
