//! Typed quantities and the parsing of unit strings.
//!
//! Scenario files and command-line options write quantities with their units:
//!
//! | kind       | type               | examples                                     |
//! |------------|--------------------|----------------------------------------------|
//! | size       | [`Bytes`]          | `"4KiB"`, `"64GiB"`, `"1.5GB"`, `"512B"`     |
//! | rate       | [`BytesPerSecond`] | `"10Gbit/s"`, `"100Mbit/s"`, `"125MB/s"`, `"1GiB/s"` |
//! | duration   | [`Nanos`]          | `"50ms"`, `"2s"`, `"300us"`, `"1.5min"`, `"2h"` |
//! | fraction   | [`Fraction`]       | `"2%"`, `"0.01%"`, `"0.25"`                  |
//!
//! Decimal prefixes (k, M, G, T) are powers of 1000 and binary prefixes (Ki, Mi,
//! Gi, Ti) powers of 1024, as in SI/IEC. Rates in bits (`bit/s`, `bps`) are
//! divided by 8. Negative values, NaN and infinities are rejected.
//! Each type deserializes from such a string (serde), so a scenario error points
//! at the offending value.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// Why a unit string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {input:?}: {reason}; expected e.g. {example}")]
pub struct UnitError {
    /// What kind of quantity was expected ("size", "rate", ...).
    pub kind: &'static str,
    /// The text that failed to parse.
    pub input: String,
    /// What was wrong with it.
    pub reason: String,
    /// An example of a valid value.
    pub example: &'static str,
}

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Bytes(pub u64);

/// A rate in bytes per second (always finite and non-negative).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize)]
pub struct BytesPerSecond(pub f64);

/// A duration or instant in integer nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Nanos(pub u64);

/// A fraction in `[0, 1]` (written as `"2%"` or `0.02`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize)]
pub struct Fraction(pub f64);

/// Nanoseconds per second.
pub const NANOS_PER_SECOND: u64 = 1_000_000_000;

impl Nanos {
    /// The duration in seconds as a float.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_SECOND as f64
    }
    /// The duration in milliseconds as a float.
    pub fn as_millis_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
    /// Converts seconds to nanoseconds, rounding up so that a transfer is never
    /// reported as finished before its last byte (saturates at `u64::MAX`).
    pub fn from_secs_ceil(secs: f64) -> Nanos {
        if secs.is_nan() || secs <= 0.0 {
            return Nanos(0);
        }
        let ns = (secs * NANOS_PER_SECOND as f64).ceil();
        if ns >= u64::MAX as f64 {
            Nanos(u64::MAX)
        } else {
            Nanos(ns as u64)
        }
    }
    /// Builds from milliseconds.
    pub const fn from_millis(ms: u64) -> Nanos {
        Nanos(ms * 1_000_000)
    }
    /// Builds from whole seconds.
    pub const fn from_secs(s: u64) -> Nanos {
        Nanos(s * NANOS_PER_SECOND)
    }
}

impl BytesPerSecond {
    /// The rate in bits per second.
    pub fn bits_per_s(self) -> f64 {
        self.0 * 8.0
    }
    /// Builds from bits per second.
    pub fn from_bits_per_s(bits: f64) -> Self {
        BytesPerSecond(bits / 8.0)
    }
}

fn split_number(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let end = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.' || *c == '-' || *c == '+'))
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let value: f64 = num.parse().ok()?;
    Some((value, unit.trim()))
}

fn check_value(kind: &'static str, input: &str, value: f64, example: &'static str) -> Result<(), UnitError> {
    let err = |reason: &str| UnitError { kind, input: input.to_string(), reason: reason.to_string(), example };
    if !value.is_finite() {
        return Err(err("not a finite number"));
    }
    if value < 0.0 {
        return Err(err("must not be negative"));
    }
    Ok(())
}

fn prefix_multiplier(prefix: &str) -> Option<f64> {
    Some(match prefix {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    })
}

impl Bytes {
    /// Parses a size such as `"64GiB"`, `"1.5GB"`, `"4096B"` or `"4096"`.
    pub fn parse(input: &str) -> Result<Bytes, UnitError> {
        const EX: &str = "\"64GiB\", \"512MB\" or \"4096B\"";
        let err = |reason: String| UnitError { kind: "size", input: input.to_string(), reason, example: EX };
        let (value, unit) = split_number(input).ok_or_else(|| err("does not start with a number".into()))?;
        check_value("size", input, value, EX)?;
        let prefix = unit.strip_suffix('B').unwrap_or(if unit.is_empty() { "" } else { "?" });
        let mult = prefix_multiplier(prefix).ok_or_else(|| err(format!("unknown unit {unit:?}")))?;
        let bytes = (value * mult).round();
        if bytes > u64::MAX as f64 {
            return Err(err("too large".into()));
        }
        Ok(Bytes(bytes as u64))
    }
}

impl BytesPerSecond {
    /// Parses a rate such as `"10Gbit/s"`, `"100Mbps"`, `"125MB/s"` or `"1GiB/s"`.
    pub fn parse(input: &str) -> Result<BytesPerSecond, UnitError> {
        const EX: &str = "\"10Gbit/s\", \"100Mbps\" or \"125MB/s\"";
        let err = |reason: String| UnitError { kind: "rate", input: input.to_string(), reason, example: EX };
        let (value, unit) = split_number(input).ok_or_else(|| err("does not start with a number".into()))?;
        check_value("rate", input, value, EX)?;
        let (prefix, bits) = if let Some(p) = unit.strip_suffix("bit/s") {
            (p, true)
        } else if let Some(p) = unit.strip_suffix("bps") {
            (p, true)
        } else if let Some(p) = unit.strip_suffix("B/s") {
            (p, false)
        } else {
            return Err(err(format!("unknown unit {unit:?}: a rate ends in bit/s, bps or B/s")));
        };
        let mult = prefix_multiplier(prefix).ok_or_else(|| err(format!("unknown prefix {prefix:?}")))?;
        let v = value * mult;
        Ok(BytesPerSecond(if bits { v / 8.0 } else { v }))
    }
}

impl Nanos {
    /// Parses a duration such as `"50ms"`, `"2s"`, `"300us"`, `"10ns"`, `"1.5min"` or `"2h"`.
    pub fn parse(input: &str) -> Result<Nanos, UnitError> {
        const EX: &str = "\"50ms\", \"2s\", \"300us\" or \"1.5h\"";
        let err = |reason: String| UnitError { kind: "duration", input: input.to_string(), reason, example: EX };
        let (value, unit) = split_number(input).ok_or_else(|| err("does not start with a number".into()))?;
        check_value("duration", input, value, EX)?;
        let mult = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "min" => 60e9,
            "h" => 3600e9,
            "" => return Err(err("missing unit".into())),
            _ => return Err(err(format!("unknown unit {unit:?}"))),
        };
        let ns = (value * mult).round();
        if ns > u64::MAX as f64 {
            return Err(err("too large".into()));
        }
        Ok(Nanos(ns as u64))
    }
}

impl Fraction {
    /// Parses `"2%"` or a plain number in `[0, 1]`.
    pub fn parse(input: &str) -> Result<Fraction, UnitError> {
        const EX: &str = "\"2%\", \"0.01%\" or \"0.25\"";
        let err = |reason: String| UnitError { kind: "fraction", input: input.to_string(), reason, example: EX };
        let (value, unit) = split_number(input).ok_or_else(|| err("does not start with a number".into()))?;
        check_value("fraction", input, value, EX)?;
        let v = match unit {
            "%" => value / 100.0,
            "" => value,
            _ => return Err(err(format!("unknown unit {unit:?}"))),
        };
        Fraction::new(v).ok_or_else(|| err("must lie between 0% and 100%".into()))
    }
    /// A fraction if `v` lies in `[0, 1]`.
    pub fn new(v: f64) -> Option<Fraction> {
        (0.0..=1.0).contains(&v).then_some(Fraction(v))
    }
}

macro_rules! string_unit_serde {
    ($ty:ty, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$ty, E> {
                        <$ty>::parse(s).map_err(E::custom)
                    }
                    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<$ty, E> {
                        <$ty>::parse(&v.to_string()).map_err(E::custom)
                    }
                    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<$ty, E> {
                        <$ty>::parse(&v.to_string()).map_err(E::custom)
                    }
                    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<$ty, E> {
                        <$ty>::parse(&v.to_string()).map_err(E::custom)
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

string_unit_serde!(Bytes, "a size string such as \"64GiB\"");
string_unit_serde!(BytesPerSecond, "a rate string such as \"10Gbit/s\"");
string_unit_serde!(Nanos, "a duration string such as \"50ms\"");
string_unit_serde!(Fraction, "a fraction such as \"2%\" or 0.02");

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0 as f64;
        const UNITS: [(&str, f64); 4] =
            [("TiB", 1099511627776.0), ("GiB", 1073741824.0), ("MiB", 1048576.0), ("KiB", 1024.0)];
        for (name, size) in UNITS {
            if b >= size {
                return write!(f, "{:.2}{name}", b / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl fmt::Display for BytesPerSecond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = self.bits_per_s();
        if bits >= 1e9 {
            write!(f, "{:.2}Gbit/s", bits / 1e9)
        } else if bits >= 1e6 {
            write!(f, "{:.2}Mbit/s", bits / 1e6)
        } else if bits >= 1e3 {
            write!(f, "{:.2}kbit/s", bits / 1e3)
        } else {
            write!(f, "{bits:.0}bit/s")
        }
    }
}

impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.as_secs_f64();
        if s >= 1.0 {
            write!(f, "{s:.3}s")
        } else if self.0 >= 1_000_000 {
            write!(f, "{:.3}ms", self.as_millis_f64())
        } else {
            write!(f, "{}us", self.0 / 1000)
        }
    }
}

impl fmt::Display for Fraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0 * 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(Bytes::parse("4KiB").unwrap(), Bytes(4096));
        assert_eq!(Bytes::parse("64GiB").unwrap(), Bytes(64 << 30));
        assert_eq!(Bytes::parse("1.5GB").unwrap(), Bytes(1_500_000_000));
        assert_eq!(Bytes::parse("512B").unwrap(), Bytes(512));
        assert_eq!(Bytes::parse("4096").unwrap(), Bytes(4096));
        assert!(Bytes::parse("-4GiB").unwrap_err().reason.contains("negative"));
        assert!(Bytes::parse("4 parsecs").is_err());
        assert!(Bytes::parse("GiB").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(BytesPerSecond::parse("10Gbit/s").unwrap().0, 1.25e9);
        assert_eq!(BytesPerSecond::parse("100Mbps").unwrap().0, 12.5e6);
        assert_eq!(BytesPerSecond::parse("125MB/s").unwrap().0, 125e6);
        assert_eq!(BytesPerSecond::parse("1GiB/s").unwrap().0, 1073741824.0);
        let e = BytesPerSecond::parse("10Gbit").unwrap_err();
        assert!(e.to_string().contains("bit/s"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(Nanos::parse("50ms").unwrap(), Nanos(50_000_000));
        assert_eq!(Nanos::parse("2s").unwrap(), Nanos(2_000_000_000));
        assert_eq!(Nanos::parse("300us").unwrap(), Nanos(300_000));
        assert_eq!(Nanos::parse("1.5min").unwrap(), Nanos(90_000_000_000));
        assert_eq!(Nanos::parse("2h").unwrap(), Nanos(7_200_000_000_000));
        assert!(Nanos::parse("50").unwrap_err().reason.contains("missing unit"));
        assert!(Nanos::parse("-1s").is_err());
    }

    #[test]
    fn fractions() {
        assert_eq!(Fraction::parse("2%").unwrap().0, 0.02);
        assert!((Fraction::parse("0.01%").unwrap().0 - 1e-4).abs() < 1e-18);
        assert_eq!(Fraction::parse("0.25").unwrap().0, 0.25);
        assert!(Fraction::parse("150%").is_err());
    }

    #[test]
    fn nanos_round_up() {
        assert_eq!(Nanos::from_secs_ceil(1e-9 * 1.5), Nanos(2));
        assert_eq!(Nanos::from_secs_ceil(0.0), Nanos(0));
        assert_eq!(Nanos::from_secs_ceil(f64::INFINITY), Nanos(u64::MAX));
    }
}
