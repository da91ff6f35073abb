//! The calibration profile `memfabric calibrate` writes and the simulator
//! reads (`memfabric run --calibration FILE`): fitted replacements for the
//! CPU profile's size factors and per-page costs, and the downtime
//! components the pre-copy model adds at switchover.
//!
//! ```toml
//! [about]
//! command = "memfabric calibrate ..."   # how it was made
//! dataset = "calibration/datasets/..."
//! train = "seed=1"                       # the selector of the training runs
//! train_runs = 20
//! version = "0.1.0"
//! loss = 0.0123                          # training loss (docs/calibration.md)
//!
//! [size_factor]          # replace the CPU profile's, when present
//! lz4 = 0.92
//! xbzrle_per_changed_byte = 1.1
//!
//! [ns_per_page]          # replace the CPU profile's, when present
//! lz4_compress = 5200.0
//!
//! [link]
//! wan_goodput_fraction = 0.9   # migration-stream bytes per byte of WAN link rate
//! wan_rate_cap_bytes_per_s = 2.4e7   # the most one stream got (optional)
//!
//! [round]
//! fixed_ms = 40.0        # every pre-copy round: acknowledgement wait, dirty log
//!
//! [downtime]             # added to every pre-copy stop-and-copy
//! fixed_ms = 8.0         # pause, vCPU state, resume
//! integrity_ms_per_gib = 95.0   # hashing guest RAM at the pause
//! ```

use serde::{Deserialize, Serialize};

use crate::reduction::profile::CpuProfile;

/// Provenance and quality of a calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationAbout {
    /// Command that produced it.
    pub command: String,
    /// Dataset folder.
    pub dataset: String,
    /// Selector of the training runs.
    pub train: String,
    /// Number of training runs.
    pub train_runs: usize,
    /// memfabric version.
    pub version: String,
    /// Training loss at the fitted parameters.
    pub loss: f64,
}

/// Fitted size factors (None: keep the CPU profile's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeFactorOverrides {
    /// lz4 size / zstd-1 size of the workload's unique pages.
    pub lz4: Option<f64>,
    /// XBZRLE bytes per changed byte.
    pub xbzrle_per_changed_byte: Option<f64>,
}

/// Fitted per-page CPU costs, ns (None: keep the CPU profile's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostOverrides {
    /// lz4 compress of a page.
    pub lz4_compress: Option<f64>,
}

/// Links with a one-way latency below this are not WAN links for
/// [`LinkCalibration::wan_goodput_fraction`] (the validator's loopback
/// scenarios carry the measured rate and a 1 ns latency), ns.
pub const WAN_LATENCY_MIN_NS: u64 = 100_000;

/// What a WAN link delivers of its rate to one migration stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkCalibration {
    /// Stream bytes per byte of link rate (TCP/IP headers, acknowledgement
    /// clocking, the emulator's own limits); scales the bandwidth of every
    /// link whose one-way latency is at least [`WAN_LATENCY_MIN_NS`].
    pub wan_goodput_fraction: f64,
    /// The most one stream got over any WAN link, bytes/s (the end hosts'
    /// or the emulator's packet rate), None when no link reached it.
    pub wan_rate_cap_bytes_per_s: Option<f64>,
}

impl LinkCalibration {
    /// The rate a stream gets from a WAN link of `rate` bytes/s.
    pub fn goodput(&self, rate: f64) -> f64 {
        let r = rate * self.wan_goodput_fraction;
        self.wan_rate_cap_bytes_per_s.map_or(r, |cap| r.min(cap))
    }
}

impl Default for LinkCalibration {
    fn default() -> Self {
        LinkCalibration { wan_goodput_fraction: 1.0, wan_rate_cap_bytes_per_s: None }
    }
}

/// Fixed costs of every pre-copy round.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundCosts {
    /// Time from a round's last byte on the link to the next round's start
    /// (acknowledgement wait, dirty-log sync, TCP's restart after idle), ms;
    /// on WAN paths only (it is fitted on WAN rounds).
    pub fixed_ms: f64,
}

/// Downtime components the model adds to a pre-copy switchover.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DowntimeComponents {
    /// Pausing the vCPU, sending its state, resuming it, ms.
    pub fixed_ms: f64,
    /// Hashing guest RAM at the pause for the integrity check, ms per GiB
    /// of guest RAM (0 when the runs did not check).
    pub integrity_ms_per_gib: f64,
}

/// A calibration profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Provenance.
    pub about: CalibrationAbout,
    /// Size factors.
    #[serde(default)]
    pub size_factor: SizeFactorOverrides,
    /// Per-page costs.
    #[serde(default)]
    pub ns_per_page: CostOverrides,
    /// Link goodput.
    #[serde(default)]
    pub link: LinkCalibration,
    /// Per-round fixed cost.
    #[serde(default)]
    pub round: RoundCosts,
    /// Downtime components.
    #[serde(default)]
    pub downtime: DowntimeComponents,
}

/// A calibration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    /// Not a readable regular file, or larger than a profile may be.
    #[error(transparent)]
    Input(#[from] crate::input::InputError),
    /// Not a calibration profile.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong (with line and field).
        message: String,
    },
}

impl Calibration {
    /// Reads and checks a calibration profile.
    pub fn load(path: &std::path::Path) -> Result<Calibration, CalibrationError> {
        let text = crate::input::read_text(path, crate::input::PROFILE_BYTES_MAX, "a calibration profile")?;
        let c: Calibration = toml::from_str(&text)
            .map_err(|e| CalibrationError::Invalid { path: path.display().to_string(), message: e.to_string().trim_end().into() })?;
        c.check().map_err(|message| CalibrationError::Invalid { path: path.display().to_string(), message })?;
        Ok(c)
    }

    /// Checks every value; the error names the first bad field.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("size_factor.lz4", self.size_factor.lz4),
            ("size_factor.xbzrle_per_changed_byte", self.size_factor.xbzrle_per_changed_byte),
            ("ns_per_page.lz4_compress", self.ns_per_page.lz4_compress),
        ];
        for (name, v) in positive {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0) {
                    return Err(format!("{name} = {v}: expected a positive number"));
                }
            }
        }
        let g = self.link.wan_goodput_fraction;
        if !(g.is_finite() && g > 0.0 && g <= 1.5) {
            return Err(format!("link.wan_goodput_fraction = {g}: expected a number in (0, 1.5]"));
        }
        if let Some(cap) = self.link.wan_rate_cap_bytes_per_s {
            if !(cap.is_finite() && cap > 0.0) {
                return Err(format!("link.wan_rate_cap_bytes_per_s = {cap}: expected a positive number"));
            }
        }
        for (name, v) in [("round.fixed_ms", self.round.fixed_ms), ("downtime.fixed_ms", self.downtime.fixed_ms), ("downtime.integrity_ms_per_gib", self.downtime.integrity_ms_per_gib)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name} = {v}: expected a number >= 0"));
            }
        }
        Ok(())
    }

    /// The CPU profile with the fitted values in place.
    pub fn apply_to_profile(&self, p: &CpuProfile) -> CpuProfile {
        let mut p = p.clone();
        if let Some(v) = self.size_factor.lz4 {
            p.size_factor.lz4 = v;
        }
        if let Some(v) = self.size_factor.xbzrle_per_changed_byte {
            p.size_factor.xbzrle_per_changed_byte = v;
        }
        if let Some(v) = self.ns_per_page.lz4_compress {
            p.ns_per_page.lz4_compress = v;
        }
        p
    }

    /// The fixed cost of a pre-copy round on a path of this one-way
    /// latency, ns: `round.fixed_ms` on WAN paths (latency at least
    /// [`WAN_LATENCY_MIN_NS`], where it was fitted), 0 on loopback.
    pub fn round_fixed_ns(&self, one_way_latency: memfabric_migration::units::Nanos) -> u64 {
        if one_way_latency.0 < WAN_LATENCY_MIN_NS {
            return 0;
        }
        (self.round.fixed_ms * 1e6).round().max(0.0) as u64
    }

    /// The integrity hash of a VM of `memory_bytes` at the pause, ns.
    pub fn integrity_hash_ns(&self, memory_bytes: u64) -> u64 {
        let ms = self.downtime.integrity_ms_per_gib * memory_bytes as f64 / (1u64 << 30) as f64;
        (ms * 1e6).round().max(0.0) as u64
    }

    /// Downtime the switchover adds, ns, for a VM of `memory_bytes` whose
    /// stop-and-copy took `stop_copy_ns` to send: the fixed part, plus what
    /// of the integrity hash outlasts the sending. The source hashes its
    /// frozen RAM on another thread while the last pages go out
    /// (validator/src/migrate/source.rs), so only the longer of the two
    /// delays the switchover.
    pub fn downtime_extra_ns(&self, memory_bytes: u64, stop_copy_ns: u64) -> u64 {
        let fixed = (self.downtime.fixed_ms * 1e6).round().max(0.0) as u64;
        fixed + self.integrity_hash_ns(memory_bytes).saturating_sub(stop_copy_ns)
    }
}

/// Applies `c` to a loaded scenario: its CPU profile and switchover.
pub fn apply(sc: &mut crate::scenario::Scenario, c: &Calibration, source: &str) {
    sc.cpu_profile = c.apply_to_profile(&sc.cpu_profile);
    for l in &mut sc.fabric.links {
        if l.latency.0 >= WAN_LATENCY_MIN_NS {
            l.bandwidth.0 = c.link.goodput(l.bandwidth.0);
            for change in &mut l.capacity_changes {
                change.bandwidth.0 = c.link.goodput(change.bandwidth.0);
            }
        }
    }
    sc.cpu_profile_source = format!("{} + calibration {source}", sc.cpu_profile_source);
    sc.calibration = Some(c.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_is_read_bounded_and_only_from_a_regular_file() {
        // A device or an endless file is refused, never read until memory runs out.
        for path in ["/dev/zero", "/dev/urandom"] {
            let e = Calibration::load(std::path::Path::new(path)).unwrap_err();
            assert!(matches!(e, CalibrationError::Input(_)), "{path}: {e}");
        }
        let big = std::env::temp_dir().join(format!("memfabric-big-profile-{}", std::process::id()));
        std::fs::write(&big, vec![b'#'; crate::input::PROFILE_BYTES_MAX as usize + 1]).unwrap();
        let e = Calibration::load(&big).unwrap_err();
        let _ = std::fs::remove_file(&big);
        assert!(matches!(e, CalibrationError::Input(_)), "{e}");
    }
}
