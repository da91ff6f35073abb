//! Data-reduction strategies: the named chains of stages a page goes through
//! on its way to the wire.
//!
//! A strategy is written as stage names joined by `+`, in pipeline order:
//!
//! | name | stage |
//! |---|---|
//! | `none` | no reduction: every page sent raw (alone) |
//! | `zero` | zero-page elimination: an all-zero page becomes a header |
//! | `dedup-vm`, `dedup-gang`, `dedup-site` | deduplication by content hash, within one VM, across VMs migrating together, or against the pages already at the destination site |
//! | `xbzrle` | delta encoding of re-sent pages against a cache of what was sent (QEMU's XBZRLE idea) |
//! | `lz4`, `zstd`, `zstd:N` | compression (zstd level N, default 1) |
//! | `encrypt` | authenticated encryption of the stream (TLS 1.3, AES-GCM), last |
//!
//! The order is always zero → dedup → delta → compression → encryption,
//! whatever order the name lists them in; at most one dedup scope and one
//! codec. Examples: `zero+lz4`, `zero+xbzrle+zstd`, `zero+dedup-gang+lz4`,
//! `zero+dedup-site+zstd:3`, `zero+lz4+encrypt`.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::str::FromStr;

/// Default zstd level: level 1 is the fast setting used for live migration
/// (QEMU's multifd-zstd default level is 1).
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

/// A compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// LZ4 block format (lz4_flex).
    Lz4,
    /// Zstandard at a level (1..=22).
    Zstd {
        /// Compression level.
        level: i32,
    },
}

/// How far deduplication looks for an identical page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DedupScope {
    /// Pages of the same VM sent earlier in this migration.
    Vm,
    /// Pages of any VM migrating in the same operation to the same site.
    Gang,
    /// Pages already resident at the destination site (plus the gang's).
    Site,
}

/// A chain of reduction stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Strategy {
    /// Zero-page elimination.
    pub zero: bool,
    /// Deduplication scope, if any.
    pub dedup: Option<DedupScope>,
    /// XBZRLE-like delta encoding of re-sent pages.
    pub delta: bool,
    /// Compression codec, if any.
    pub codec: Option<Codec>,
    /// Encryption of what goes on the wire (after every other stage).
    pub encrypt: bool,
}

/// A strategy name could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid strategy {input:?}: {reason}; expected stages joined by '+' from none, zero, dedup-vm, dedup-gang, dedup-site, xbzrle, lz4, zstd, zstd:N, encrypt (e.g. \"zero+xbzrle+zstd\")")]
pub struct StrategyError {
    /// The text.
    pub input: String,
    /// What is wrong.
    pub reason: String,
}

impl Strategy {
    /// No reduction at all.
    pub const NONE: Strategy = Strategy { zero: false, dedup: None, delta: false, codec: None, encrypt: false };
}

impl FromStr for Strategy {
    type Err = StrategyError;
    fn from_str(input: &str) -> Result<Strategy, StrategyError> {
        let err = |reason: String| StrategyError { input: input.to_string(), reason };
        let s = input.trim();
        if s == "none" {
            return Ok(Strategy::NONE);
        }
        let mut out = Strategy::NONE;
        let mut seen: Vec<&str> = Vec::new();
        for part in s.split('+').map(str::trim) {
            let key = part.split(':').next().unwrap_or(part);
            let kind = if key.starts_with("dedup-") { "dedup" } else if key == "lz4" || key == "zstd" { "codec" } else { key };
            if seen.contains(&kind) {
                return Err(err(format!("more than one {kind} stage")));
            }
            seen.push(kind);
            match part {
                "zero" => out.zero = true,
                "xbzrle" => out.delta = true,
                "encrypt" => out.encrypt = true,
                "dedup-vm" => out.dedup = Some(DedupScope::Vm),
                "dedup-gang" => out.dedup = Some(DedupScope::Gang),
                "dedup-site" => out.dedup = Some(DedupScope::Site),
                "lz4" => out.codec = Some(Codec::Lz4),
                "zstd" => out.codec = Some(Codec::Zstd { level: DEFAULT_ZSTD_LEVEL }),
                "none" => return Err(err("`none` cannot be combined with other stages".into())),
                "" => return Err(err("empty stage name".into())),
                other => {
                    if let Some(level) = other.strip_prefix("zstd:") {
                        let level: i32 = level.parse().map_err(|_| err(format!("zstd level {level:?} is not a number")))?;
                        if !(1..=22).contains(&level) {
                            return Err(err(format!("zstd level {level} is outside 1..=22")));
                        }
                        out.codec = Some(Codec::Zstd { level });
                    } else {
                        return Err(err(format!("unknown stage {other:?}")));
                    }
                }
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Codec::Lz4 => f.write_str("lz4"),
            Codec::Zstd { level } if *level == DEFAULT_ZSTD_LEVEL => f.write_str("zstd"),
            Codec::Zstd { level } => write!(f, "zstd:{level}"),
        }
    }
}

impl fmt::Display for DedupScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DedupScope::Vm => "dedup-vm",
            DedupScope::Gang => "dedup-gang",
            DedupScope::Site => "dedup-site",
        })
    }
}

impl fmt::Display for Strategy {
    /// The canonical name, stages in pipeline order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if self.zero {
            parts.push("zero".into());
        }
        if let Some(d) = self.dedup {
            parts.push(d.to_string());
        }
        if self.delta {
            parts.push("xbzrle".into());
        }
        if let Some(c) = self.codec {
            parts.push(c.to_string());
        }
        if self.encrypt {
            parts.push("encrypt".into());
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join("+"))
        }
    }
}

impl<'de> Deserialize<'de> for Strategy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_canonical_order() {
        for (name, canonical) in [
            ("none", "none"),
            ("zero", "zero"),
            ("zero+lz4", "zero+lz4"),
            ("zstd+xbzrle+zero", "zero+xbzrle+zstd"),
            ("zero+dedup-gang+lz4", "zero+dedup-gang+lz4"),
            ("zero+dedup-site+zstd:3", "zero+dedup-site+zstd:3"),
            ("zstd:1", "zstd"),
            ("encrypt+lz4+zero", "zero+lz4+encrypt"),
            ("encrypt", "encrypt"),
        ] {
            let s: Strategy = name.parse().unwrap();
            assert_eq!(s.to_string(), canonical);
            assert_eq!(s.to_string().parse::<Strategy>().unwrap(), s);
        }
    }

    #[test]
    fn bad_names_say_why() {
        for (name, why) in [
            ("zero+lz4+zstd", "more than one codec"),
            ("dedup-vm+dedup-site", "more than one dedup"),
            ("zero+gzip", "unknown stage \"gzip\""),
            ("zstd:30", "outside 1..=22"),
            ("none+zero", "cannot be combined"),
            ("zero+encrypt+encrypt", "more than one encrypt"),
            ("zero++lz4", "empty stage"),
        ] {
            let e = name.parse::<Strategy>().unwrap_err().to_string();
            assert!(e.contains(why), "{name}: {e}");
        }
    }
}
