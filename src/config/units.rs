//! Units: human sizes ("10 MiB") and durations ("2s", "5m"), and the
//! checker's readers of sizes, durations and bounded integers.
//!
//! Must not: know which key means what (callers pass the key and default).

use std::time::Duration;

use super::check::Checker;
use super::raw::HumanValue;
use super::types::ConfigError;

pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| {
        format!(
            "cannot read {s:?} as a size; write e.g. \"10 MiB\", \"500 KB\" or a number of bytes"
        )
    })?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?}; use B, KB, KiB, MB, MiB, GB or GiB"
            ))
        }
    };
    let v = n * mult;
    if !(v >= 1.0 && v.is_finite() && v < 1e18) {
        return Err(format!(
            "{s:?} is not a usable size (must be at least 1 byte)"
        ));
    }
    Ok(v.round() as u64)
}

/// Parse "2s", "500ms", "5m", "1h 30m".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("cannot read {s:?} as a duration ({e}); write e.g. \"500ms\", \"2s\" or \"5m\"")
    })
}

impl Checker {
    pub(super) fn size(
        &self,
        key: &str,
        v: Option<&HumanValue>,
        default: u64,
    ) -> Result<u64, ConfigError> {
        match v {
            None => Ok(default),
            Some(HumanValue::Int(n)) if *n > 0 => Ok(*n as u64),
            Some(HumanValue::Text(s)) => parse_size(s).map_err(|m| self.err(key, m)),
            Some(other) => Err(self.err(
                key,
                format!("expected a size such as \"10 MiB\" or a positive number of bytes, got {other:?}"),
            )),
        }
    }

    pub(super) fn duration(
        &self,
        key: &str,
        v: Option<&HumanValue>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match v {
            None => Ok(default),
            Some(HumanValue::Int(n)) if *n >= 0 => Ok(Duration::from_secs(*n as u64)),
            Some(HumanValue::Float(f)) if *f >= 0.0 && f.is_finite() => {
                Ok(Duration::from_secs_f64(*f))
            }
            Some(HumanValue::Text(s)) => parse_duration(s).map_err(|m| self.err(key, m)),
            Some(other) => Err(self.err(
                key,
                format!("expected a duration such as \"2s\" or \"5m\", got {other:?}"),
            )),
        }
    }

    pub(super) fn int(
        &self,
        key: &str,
        v: Option<i64>,
        default: i64,
        min: i64,
        max: i64,
    ) -> Result<i64, ConfigError> {
        let n = v.unwrap_or(default);
        if n < min || n > max {
            return Err(self.err(key, format!("must be between {min} and {max}, got {n}")));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("10 MiB"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("500KB"), Ok(500_000));
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("0").is_err());
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("soon").is_err());
    }
}
