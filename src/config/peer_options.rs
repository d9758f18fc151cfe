//! Per-inbox options of the two peer kinds, checked once when the config is
//! read: [`RemoveBgOptions`] (`kind = "remove-bg"`) and
//! [`RembgServerOptions`] (`kind = "rembg-server"`). Errors name the option
//! and say what is allowed; the caller adds `inbox[N].options` and the file.
//!
//! Must not: know how the values travel (form field, query parameter: the
//! provider modules decide) or import provider code.

use super::colour::is_color;

/// remove.bg's option keys (the ones cutout sends).
const REMOVE_BG_KEYS: &[&str] = &[
    "size",
    "type",
    "type_level",
    "format",
    "crop",
    "crop_margin",
    "scale",
    "position",
    "roi",
    "channels",
    "bg_color",
    "semitransparency",
];

/// remove.bg's per-inbox options, checked; values as the API spells them.
/// `None`: not sent (the API's default), except `size` (default `auto`)
/// and `format` (always `png`: the cut-out needs its alpha channel).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoveBgOptions {
    pub size: String,
    pub kind: Option<String>,
    pub type_level: Option<String>,
    pub crop: Option<bool>,
    pub crop_margin: Option<String>,
    pub scale: Option<String>,
    pub position: Option<String>,
    pub roi: Option<String>,
    /// `rgba` (default) or `alpha` (a greyscale mask).
    pub channels: Option<String>,
    /// Hex without `#` (`81d4fa`) or a colour name.
    pub bg_color: Option<String>,
    pub semitransparency: Option<bool>,
}

impl Default for RemoveBgOptions {
    fn default() -> Self {
        RemoveBgOptions {
            size: "auto".into(),
            kind: None,
            type_level: None,
            crop: None,
            crop_margin: None,
            scale: None,
            position: None,
            roi: None,
            channels: None,
            bg_color: None,
            semitransparency: None,
        }
    }
}

impl RemoveBgOptions {
    /// Largest side of the answer's megapixels for this `size` (None: the
    /// picture's own, up to 25 MP), for pacing by megapixel-images.
    pub fn megapixel_cap(&self) -> f64 {
        match self.size.as_str() {
            "preview" | "small" | "regular" => 0.25,
            "medium" => 1.5,
            "hd" => 4.0,
            _ => 25.0,
        }
    }

    /// Check an `options = { … }` table; errors name the option.
    pub fn parse(t: &toml::Table) -> Result<RemoveBgOptions, String> {
        let mut o = RemoveBgOptions::default();
        for (k, v) in t {
            o.set(k, v)?;
        }
        Ok(o)
    }

    fn set(&mut self, k: &str, v: &toml::Value) -> Result<(), String> {
        let word = |allowed: &[&str]| -> Result<String, String> {
            match v.as_str() {
                Some(s) if allowed.contains(&s) => Ok(s.to_string()),
                _ => Err(format!(
                    "`{k}` must be one of {}, got {v}",
                    allowed
                        .iter()
                        .map(|a| format!("\"{a}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        };
        let bool_of = || {
            v.as_bool()
                .ok_or_else(|| format!("`{k}` must be true or false, got {v}"))
        };
        match k {
            "size" => {
                self.size = word(&[
                    "auto", "preview", "small", "regular", "medium", "hd", "full", "4k",
                ])?
            }
            "type" => {
                self.kind = Some(word(&[
                    "auto",
                    "person",
                    "product",
                    "car",
                    "animal",
                    "graphic",
                    "transportation",
                ])?)
            }
            "type_level" => {
                let s = match v {
                    toml::Value::Integer(n) => n.to_string(),
                    _ => v.as_str().unwrap_or("").to_string(),
                };
                if !["none", "1", "2", "latest"].contains(&s.as_str()) {
                    return Err(format!(
                        "`type_level` must be \"none\", 1, 2 or \"latest\", got {v}"
                    ));
                }
                self.type_level = Some(s);
            }
            "format" => {
                if v.as_str() != Some("png") {
                    return Err(format!(
                        "`format` must be \"png\" (a cut-out needs its alpha channel; the inbox's output_format picks the file type written), got {v}"
                    ));
                }
            }
            "crop" => self.crop = Some(bool_of()?),
            "semitransparency" => self.semitransparency = Some(bool_of()?),
            "crop_margin" => self.crop_margin = Some(margin(v)?),
            "scale" => self.scale = Some(scale(v)?),
            "position" => self.position = Some(position(v)?),
            "roi" => self.roi = Some(roi(v)?),
            "channels" => self.channels = Some(word(&["rgba", "alpha"])?),
            "bg_color" => self.bg_color = Some(bg_color(v)?),
            other => {
                return Err(format!(
                    "unknown option `{other}` for remove-bg; known options: {}",
                    REMOVE_BG_KEYS.join(", ")
                ))
            }
        }
        Ok(())
    }
}

/// remove.bg's `bg_color`: hex without `#`, or a colour name.
fn bg_color(v: &toml::Value) -> Result<String, String> {
    let c = v.as_str().unwrap_or("");
    let hex = c.trim_start_matches('#');
    let is_hex = matches!(hex.len(), 3 | 4 | 6 | 8) && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex {
        Ok(hex.to_ascii_lowercase())
    } else if !c.starts_with('#') && is_color(c) && c != "transparent" {
        Ok(c.to_ascii_lowercase())
    } else {
        Err(format!(
            "`bg_color` must be a hex colour (\"81d4fa\", \"#fff\", 3/4/6/8 digits) or a colour name such as \"white\", got {v}"
        ))
    }
}

/// `"N%"` with N in lo..=hi (decimals allowed), as written.
fn percent(s: &str, lo: f64, hi: f64) -> bool {
    s.strip_suffix('%')
        .and_then(|n| n.parse::<f64>().ok())
        .is_some_and(|n| n.is_finite() && (lo..=hi).contains(&n))
}

/// `"Npx"` (or a bare whole number) with N in 0..=max.
fn pixels(s: &str, max: u32) -> bool {
    s.strip_suffix("px")
        .unwrap_or(s)
        .parse::<u32>()
        .is_ok_and(|n| n <= max)
}

fn margin(v: &toml::Value) -> Result<String, String> {
    let s = match v {
        toml::Value::Integer(n) if (0..=500).contains(n) => return Ok(format!("{n}px")),
        _ => v.as_str().unwrap_or(""),
    };
    if pixels(s, 500) || percent(s, 0.0, 50.0) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`crop_margin` must be pixels (0 to 500, e.g. \"30px\") or a percentage (0% to 50%, e.g. \"10%\"), got {v}"
        ))
    }
}

fn scale(v: &toml::Value) -> Result<String, String> {
    let s = v.as_str().unwrap_or("");
    if s == "original" || percent(s, 10.0, 100.0) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`scale` must be \"original\" or a percentage from \"10%\" to \"100%\", got {v}"
        ))
    }
}

fn position(v: &toml::Value) -> Result<String, String> {
    let s = v.as_str().unwrap_or("");
    let parts: Vec<&str> = s.split_whitespace().collect();
    let ok = s == "original"
        || s == "center"
        || (matches!(parts.len(), 1 | 2) && parts.iter().all(|p| percent(p, 0.0, 100.0)));
    if ok {
        Ok(parts.join(" "))
    } else {
        Err(format!(
            "`position` must be \"original\", \"center\", or one or two percentages such as \"50%\" or \"0% 100%\", got {v}"
        ))
    }
}

fn roi(v: &toml::Value) -> Result<String, String> {
    let s = v.as_str().unwrap_or("");
    let parts: Vec<&str> = s.split_whitespace().collect();
    let each = |p: &&str| p.ends_with("px") && pixels(p, 100_000) || percent(p, 0.0, 100.0);
    if parts.len() == 4 && parts.iter().all(each) {
        Ok(parts.join(" "))
    } else {
        Err(format!(
            "`roi` must be four corners \"x1 y1 x2 y2\", each in px or %, e.g. \"0% 0% 100% 100%\", got {v}"
        ))
    }
}

/// rembg-server's option keys.
const REMBG_SERVER_KEYS: &[&str] = &["model", "a", "af", "ab", "ae", "om", "ppm", "bgc", "extras"];

/// rembg's own server's per-inbox options, checked. `None`: not sent (the
/// server's default), except `model` (default `u2net`).
#[derive(Debug, Clone, PartialEq)]
pub struct RembgServerOptions {
    /// A rembg session name such as `u2net`, `u2netp`, `isnet-general-use`.
    pub model: String,
    /// Alpha matting.
    pub a: Option<bool>,
    pub af: Option<u8>,
    pub ab: Option<u8>,
    pub ae: Option<u32>,
    /// Only the mask.
    pub om: Option<bool>,
    /// Post-process the mask.
    pub ppm: Option<bool>,
    /// Background colour `[R, G, B, A]`.
    pub bgc: Option<[u8; 4]>,
    /// Extra session arguments, as the JSON text sent.
    pub extras: Option<String>,
}

impl Default for RembgServerOptions {
    fn default() -> Self {
        RembgServerOptions {
            model: "u2net".into(),
            a: None,
            af: None,
            ab: None,
            ae: None,
            om: None,
            ppm: None,
            bgc: None,
            extras: None,
        }
    }
}

impl RembgServerOptions {
    /// Check an `options = { … }` table; errors name the option.
    pub fn parse(t: &toml::Table) -> Result<RembgServerOptions, String> {
        let mut o = RembgServerOptions::default();
        for (k, v) in t {
            o.set(k, v)?;
        }
        Ok(o)
    }

    fn set(&mut self, k: &str, v: &toml::Value) -> Result<(), String> {
        let bool_of = || {
            v.as_bool()
                .ok_or_else(|| format!("`{k}` must be true or false, got {v}"))
        };
        let byte = || match v.as_integer() {
            Some(n) if (0..=255).contains(&n) => Ok(n as u8),
            _ => Err(format!(
                "`{k}` must be a whole number from 0 to 255, got {v}"
            )),
        };
        match k {
            "model" => {
                let m = v.as_str().unwrap_or("");
                let ok = !m.is_empty()
                    && m.len() <= 64
                    && m.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b)
                    });
                if !ok {
                    return Err(format!(
                        "`model` must be a rembg model name such as \"u2net\", \"u2netp\" or \"isnet-general-use\", got {v}"
                    ));
                }
                self.model = m.to_string();
            }
            "a" => self.a = Some(bool_of()?),
            "om" => self.om = Some(bool_of()?),
            "ppm" => self.ppm = Some(bool_of()?),
            "af" => self.af = Some(byte()?),
            "ab" => self.ab = Some(byte()?),
            "ae" => {
                self.ae = Some(match v.as_integer() {
                    Some(n) if (0..=1000).contains(&n) => n as u32,
                    _ => {
                        return Err(format!(
                            "`ae` must be a whole number from 0 to 1000, got {v}"
                        ))
                    }
                })
            }
            "bgc" => self.bgc = Some(bgc(v)?),
            "extras" => self.extras = Some(extras(v)?),
            other => {
                return Err(format!(
                    "unknown option `{other}` for rembg-server; known options: {}",
                    REMBG_SERVER_KEYS.join(", ")
                ))
            }
        }
        Ok(())
    }
}

/// `[R, G, B, A]`, each 0–255.
fn bgc(v: &toml::Value) -> Result<[u8; 4], String> {
    let vals: Option<Vec<u8>> = v.as_array().filter(|a| a.len() == 4).and_then(|a| {
        a.iter()
            .map(|x| {
                x.as_integer()
                    .filter(|n| (0..=255).contains(n))
                    .map(|n| n as u8)
            })
            .collect()
    });
    match vals {
        Some(c) => Ok([c[0], c[1], c[2], c[3]]),
        None => Err(format!(
            "`bgc` must be four whole numbers [R, G, B, A] from 0 to 255, got {v}"
        )),
    }
}

/// A table or a JSON object text, as the JSON text sent.
fn extras(v: &toml::Value) -> Result<String, String> {
    let bad = || format!("`extras` must be a table or a JSON object text, got {v}");
    match v {
        toml::Value::Table(t) => serde_json::to_string(t).map_err(|_| bad()),
        toml::Value::String(s) => match serde_json::from_str::<serde_json::Value>(s) {
            Ok(serde_json::Value::Object(_)) => Ok(s.clone()),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        toml::from_str(s).expect("toml")
    }

    #[test]
    fn remove_bg_options_are_checked_by_name() {
        let o = RemoveBgOptions::parse(&table(
            "size = \"preview\"\ntype = \"product\"\ntype_level = 2\ncrop = true\ncrop_margin = \"10%\"\nscale = \"80%\"\nposition = \"center\"\nroi = \"0% 0% 100% 100%\"\nbg_color = \"#FFF\"",
        ))
        .expect("ok");
        assert_eq!(o.size, "preview");
        assert_eq!(o.type_level.as_deref(), Some("2"));
        assert_eq!(o.bg_color.as_deref(), Some("fff"));
        assert_eq!(o.megapixel_cap(), 0.25);
        assert_eq!(RemoveBgOptions::default().size, "auto");
        for (bad, key) in [
            ("size = \"huge\"", "`size`"),
            ("type = \"cat\"", "`type`"),
            ("type_level = 3", "`type_level`"),
            ("format = \"zip\"", "`format`"),
            ("crop = \"yes\"", "`crop`"),
            ("crop_margin = \"60%\"", "`crop_margin`"),
            ("crop_margin = 501", "`crop_margin`"),
            ("scale = \"5%\"", "`scale`"),
            ("position = \"left\"", "`position`"),
            ("roi = \"0 0 10\"", "`roi`"),
            ("channels = \"rgb\"", "`channels`"),
            ("bg_color = \"#12345\"", "`bg_color`"),
            ("bg_color = \"notacolour\"", "`bg_color`"),
            ("shadow = true", "`shadow`"),
        ] {
            let e = RemoveBgOptions::parse(&table(bad)).expect_err(bad);
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn rembg_server_options_are_checked_by_name() {
        let o = RembgServerOptions::parse(&table(
            "model = \"u2netp\"\na = true\naf = 240\nbgc = [255, 255, 255, 255]\nextras = { sam_prompt = [] }",
        ))
        .expect("ok");
        assert_eq!(o.model, "u2netp");
        assert_eq!(o.bgc, Some([255, 255, 255, 255]));
        assert_eq!(o.extras.as_deref(), Some("{\"sam_prompt\":[]}"));
        assert_eq!(RembgServerOptions::default().model, "u2net");
        for (bad, key) in [
            ("model = \"U2 Net\"", "`model`"),
            ("a = 1", "`a`"),
            ("af = 256", "`af`"),
            ("bgc = [1, 2, 3]", "`bgc`"),
            ("extras = \"[1]\"", "`extras`"),
            ("alpha = true", "`alpha`"),
        ] {
            let e = RembgServerOptions::parse(&table(bad)).expect_err(bad);
            assert!(e.contains(key), "{bad}: {e}");
        }
    }
}
