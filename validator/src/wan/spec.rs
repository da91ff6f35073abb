//! [`LinkSpec`]: what one emulated WAN link does, and its text form.
//!
//! Grammar (whitespace around items is ignored):
//!
//! ```text
//! spec   := RATE "," DELAY [ "," LOSS ] { "," KEY "=" VALUE }
//! RATE   := a rate,     e.g. 100Mbit/s, 1Gbit/s, 125MB/s  (units::BytesPerSecond)
//! DELAY  := a duration, e.g. 25ms, 0ms, 300us             (units::Nanos), one way
//! LOSS   := a fraction, e.g. 0.1%, 0.001                  (units::Fraction), per packet
//! KEY    := loss   (same as the positional LOSS)
//!         | jitter (a duration: each packet's delay is drawn uniformly from
//!                   [DELAY - jitter, DELAY + jitter], without reordering)
//!         | queue  (a size such as 256KiB, or a duration such as 20ms meaning
//!                   that many milliseconds of RATE)
//!         | mtu    (bytes, 576..=65535; default 1500)
//! ```
//!
//! Examples: `100Mbit/s,25ms,0.1%`, `1Gbit/s,0ms`, `1Gbit/s,10ms,jitter=1ms,queue=5ms`.
//!
//! The rate applies to IP packet bytes (the TUN devices carry bare IP packets; no
//! link-layer framing is added). The default queue is one bandwidth-delay product
//! of the round trip, `rate × 2 × delay`, but at least [`DEFAULT_QUEUE_MIN_BYTES`].

use memfabric_migration::units::{Bytes, BytesPerSecond, Fraction, Nanos, UnitError};
use std::fmt;
use std::str::FromStr;

/// The smallest default queue: 100 full-size (1500-byte) packets, a common
/// switch-port buffer. Without it a link with zero delay would have no buffer at
/// all and drop every burst.
pub const DEFAULT_QUEUE_MIN_BYTES: u64 = 100 * 1500;

/// The default IP MTU of the TUN devices: Ethernet's, as on a real WAN path. With
/// TCP timestamps this gives an MSS of 1448 bytes, the simulator's `DEFAULT_MSS`.
pub const DEFAULT_MTU_BYTES: u32 = 1500;

/// The smallest MTU accepted (IPv4's minimum reassembly size).
pub const MTU_MIN_BYTES: u32 = 576;

/// The largest MTU accepted (the largest IPv4 packet).
pub const MTU_MAX_BYTES: u32 = 65535;

/// How large the drop-tail queue in front of the link's serializer is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QueueLimit {
    /// One bandwidth-delay product of the round trip, at least [`DEFAULT_QUEUE_MIN_BYTES`].
    Auto,
    /// A fixed number of bytes.
    Size(Bytes),
    /// That much time at the link rate.
    Time(Nanos),
}

/// One emulated link; both directions get the same parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkSpec {
    /// Serialization rate of each direction, applied to IP packet bytes.
    pub rate: BytesPerSecond,
    /// One-way propagation delay added after serialization.
    pub delay: Nanos,
    /// Probability that a packet is lost (drawn independently per packet).
    pub loss: Fraction,
    /// Half-width of the uniform delay jitter (0 = none).
    pub jitter: Nanos,
    /// The queue in front of the serializer.
    pub queue: QueueLimit,
    /// IP MTU of both TUN devices.
    pub mtu_bytes: u32,
}

impl LinkSpec {
    /// A link with the given rate and one-way delay, no loss or jitter, the
    /// default queue and MTU.
    pub fn new(rate: BytesPerSecond, delay: Nanos) -> LinkSpec {
        LinkSpec {
            rate,
            delay,
            loss: Fraction(0.0),
            jitter: Nanos(0),
            queue: QueueLimit::Auto,
            mtu_bytes: DEFAULT_MTU_BYTES,
        }
    }

    /// The queue limit in bytes that [`LinkSpec::queue`] resolves to.
    pub fn queue_limit_bytes(&self) -> u64 {
        let of_time = |t: Nanos| (self.rate.0 * t.as_secs_f64()).round() as u64;
        match self.queue {
            QueueLimit::Auto => of_time(Nanos(self.delay.0.saturating_mul(2))).max(DEFAULT_QUEUE_MIN_BYTES),
            QueueLimit::Size(b) => b.0,
            QueueLimit::Time(t) => of_time(t),
        }
    }

    /// The round trip the link adds without queueing: twice the one-way delay.
    pub fn base_rtt(&self) -> Nanos {
        Nanos(self.delay.0.saturating_mul(2))
    }
}

/// Why a link specification was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LinkSpecError {
    /// Fewer than the two required items.
    #[error(
        "link spec {input:?} is incomplete; expected RATE,DELAY[,LOSS][,key=value...] e.g. \"100Mbit/s,25ms,0.1%\""
    )]
    Incomplete {
        /// The whole specification.
        input: String,
    },
    /// One item's value did not parse. The unit parser's message is part of
    /// this error's text (not a `source`), so that clap, which prints only the
    /// top-level message of a value parser's error, shows it.
    #[error("link spec item {item}: {error}")]
    Value {
        /// Which item (`rate`, `delay`, `loss`, `jitter`, `queue`, `mtu`).
        item: &'static str,
        /// The unit parser's complaint.
        error: UnitError,
    },
    /// A value parsed but is outside what the emulator accepts.
    #[error("link spec item {item} = {value:?}: {reason}")]
    OutOfRange {
        /// Which item.
        item: &'static str,
        /// The text given.
        value: String,
        /// What is accepted.
        reason: String,
    },
    /// An unknown `key=value`, or a positional item after the third position.
    #[error("link spec item {item:?} is not understood; expected LOSS as the third item or one of loss=, jitter=, queue=, mtu=")]
    Unknown {
        /// The offending item.
        item: String,
    },
    /// The same key given twice.
    #[error("link spec gives {key} twice")]
    Duplicate {
        /// The repeated key.
        key: &'static str,
    },
}

impl FromStr for LinkSpec {
    type Err = LinkSpecError;

    fn from_str(input: &str) -> Result<LinkSpec, LinkSpecError> {
        let items: Vec<&str> = input.split(',').map(str::trim).collect();
        if items.len() < 2 || items[0].is_empty() || items[1].is_empty() {
            return Err(LinkSpecError::Incomplete { input: input.to_string() });
        }
        let value = |item: &'static str| move |error: UnitError| LinkSpecError::Value { item, error };
        let rate = BytesPerSecond::parse(items[0]).map_err(value("rate"))?;
        if rate.0 <= 0.0 {
            return Err(LinkSpecError::OutOfRange {
                item: "rate",
                value: items[0].to_string(),
                reason: "must be positive, e.g. \"1Gbit/s\"".into(),
            });
        }
        let delay = Nanos::parse(items[1]).map_err(value("delay"))?;
        let mut spec = LinkSpec::new(rate, delay);
        let mut seen: Vec<&'static str> = Vec::new();
        let mut mark = |key: &'static str| {
            if seen.contains(&key) {
                Err(LinkSpecError::Duplicate { key })
            } else {
                seen.push(key);
                Ok(())
            }
        };
        for (index, item) in items.iter().enumerate().skip(2) {
            let (key, text) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None if index == 2 => ("loss", *item),
                None => return Err(LinkSpecError::Unknown { item: item.to_string() }),
            };
            match key {
                "loss" => {
                    mark("loss")?;
                    spec.loss = Fraction::parse(text).map_err(value("loss"))?;
                    if spec.loss.0 >= 1.0 {
                        return Err(LinkSpecError::OutOfRange {
                            item: "loss",
                            value: text.to_string(),
                            reason: "must be below 100% (a link that loses everything is an outage)".into(),
                        });
                    }
                }
                "jitter" => {
                    mark("jitter")?;
                    spec.jitter = Nanos::parse(text).map_err(value("jitter"))?;
                }
                "queue" => {
                    mark("queue")?;
                    spec.queue = parse_queue(text)?;
                }
                "mtu" => {
                    mark("mtu")?;
                    let mtu = Bytes::parse(text).map_err(value("mtu"))?;
                    if !(u64::from(MTU_MIN_BYTES)..=u64::from(MTU_MAX_BYTES)).contains(&mtu.0) {
                        return Err(LinkSpecError::OutOfRange {
                            item: "mtu",
                            value: text.to_string(),
                            reason: format!("must lie between {MTU_MIN_BYTES} and {MTU_MAX_BYTES} bytes"),
                        });
                    }
                    spec.mtu_bytes = mtu.0 as u32;
                }
                _ => return Err(LinkSpecError::Unknown { item: item.to_string() }),
            }
        }
        Ok(spec)
    }
}

/// A queue limit is a size (`256KiB`, `150000`) or a time at the link rate (`20ms`).
fn parse_queue(text: &str) -> Result<QueueLimit, LinkSpecError> {
    let limit = match Nanos::parse(text) {
        Ok(t) => QueueLimit::Time(t),
        Err(_) => match Bytes::parse(text) {
            Ok(b) => QueueLimit::Size(b),
            Err(_) => {
                return Err(LinkSpecError::OutOfRange {
                    item: "queue",
                    value: text.to_string(),
                    reason: "expected a size such as \"256KiB\" or a duration such as \"20ms\"".into(),
                })
            }
        },
    };
    let zero = matches!(limit, QueueLimit::Time(Nanos(0)) | QueueLimit::Size(Bytes(0)));
    if zero {
        return Err(LinkSpecError::OutOfRange {
            item: "queue",
            value: text.to_string(),
            reason: "must hold at least one packet".into(),
        });
    }
    Ok(limit)
}

impl fmt::Display for LinkSpec {
    /// Writes the spec back in the grammar [`FromStr`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", RateText(self.rate), DurationText(self.delay))?;
        if self.loss.0 > 0.0 {
            write!(f, ",{}", self.loss)?;
        }
        if self.jitter.0 > 0 {
            write!(f, ",jitter={}", DurationText(self.jitter))?;
        }
        match self.queue {
            QueueLimit::Auto => {}
            QueueLimit::Size(b) => write!(f, ",queue={}B", b.0)?,
            QueueLimit::Time(t) => write!(f, ",queue={}", DurationText(t))?,
        }
        if self.mtu_bytes != DEFAULT_MTU_BYTES {
            write!(f, ",mtu={}", self.mtu_bytes)?;
        }
        Ok(())
    }
}

/// A rate written with the largest decimal prefix that keeps it at least 1.
struct RateText(BytesPerSecond);

impl fmt::Display for RateText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = self.0.bits_per_s();
        let (div, prefix) =
            [(1e9, "G"), (1e6, "M"), (1e3, "k")].into_iter().find(|(d, _)| bits >= *d).unwrap_or((1.0, ""));
        write!(f, "{}{prefix}bit/s", bits / div)
    }
}

/// A duration written in the largest unit (ms, us, ns) that divides it exactly.
struct DurationText(Nanos);

impl fmt::Display for DurationText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0 .0;
        if ns % 1_000_000 == 0 {
            write!(f, "{}ms", ns / 1_000_000)
        } else if ns % 1_000 == 0 {
            write!(f, "{}us", ns / 1_000)
        } else {
            write!(f, "{ns}ns")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_forms() {
        let s: LinkSpec = "100Mbit/s,25ms,0.1%".parse().unwrap();
        assert_eq!(s.rate.0, 12.5e6);
        assert_eq!(s.delay, Nanos::from_millis(25));
        assert!((s.loss.0 - 0.001).abs() < 1e-15);
        assert_eq!(s.queue, QueueLimit::Auto);
        assert_eq!(s.mtu_bytes, 1500);
        let s: LinkSpec = "1Gbit/s, 0ms".parse().unwrap();
        assert_eq!(s.rate.0, 125e6);
        assert_eq!(s.delay, Nanos(0));
        assert_eq!(s.loss.0, 0.0);
    }

    #[test]
    fn extras() {
        let s: LinkSpec = "1Gbit/s,10ms,jitter=1ms,queue=5ms,mtu=9000".parse().unwrap();
        assert_eq!(s.jitter, Nanos::from_millis(1));
        assert_eq!(s.queue, QueueLimit::Time(Nanos::from_millis(5)));
        assert_eq!(s.queue_limit_bytes(), 625_000);
        assert_eq!(s.mtu_bytes, 9000);
        let s: LinkSpec = "1Gbit/s,10ms,loss=1%,queue=64KiB".parse().unwrap();
        assert_eq!(s.loss.0, 0.01);
        assert_eq!(s.queue_limit_bytes(), 65536);
    }

    #[test]
    fn default_queue_is_bdp_with_floor() {
        let s: LinkSpec = "1Gbit/s,25ms".parse().unwrap();
        assert_eq!(s.queue_limit_bytes(), 6_250_000);
        let s: LinkSpec = "1Gbit/s,0ms".parse().unwrap();
        assert_eq!(s.queue_limit_bytes(), DEFAULT_QUEUE_MIN_BYTES);
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "100Mbit/s,25ms,0.1%",
            "1Gbit/s,0ms",
            "1Gbit/s,10ms,jitter=1ms,queue=5ms,mtu=9000",
            "8Mbit/s,1ms,queue=3000B",
        ] {
            let s: LinkSpec = text.parse().unwrap();
            let back: LinkSpec = s.to_string().parse().unwrap();
            assert_eq!(s, back, "{text} -> {s}");
            assert_eq!(s.to_string(), text);
        }
    }
}
