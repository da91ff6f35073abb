//! The workload guest: its image (built from validator/guest/ by build.rs),
//! the ABI it shares with the VMM ([`abi`]), and the workload parameters
//! ([`GuestWorkload`]) it runs, taken from the simulator's workload model.

pub mod abi;

use memfabric_migration::units::Fraction;
use memfabric_formats::workload::{archetype, Popularity, WorkloadSpec};

/// The guest's flat binary, loaded at [`abi::GUEST_IMAGE_GPA`].
pub const IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/guest.bin"));

/// How the guest paces its page writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirtyPace {
    /// At the workload's `page_write_rate`, paced by the guest's TSC; the
    /// guest idles (asks the VMM to sleep it) when ahead.
    #[default]
    Paced,
    /// As fast as its vCPU runs (`page_write_rate` is ignored): the guest
    /// never idles, so only the VMM's throttle (auto-converge) slows it.
    CpuBound,
}

/// A workload the guest can run: the simulator's [`WorkloadSpec`] restricted
/// to what the guest implements (uniform or hot/cold popularity).
#[derive(Debug, Clone, PartialEq)]
pub struct GuestWorkload {
    /// The simulator's description of the workload (what results record, so
    /// the simulator can replay the same case).
    pub spec: WorkloadSpec,
    /// Seed of the VM's content and dirtying.
    pub seed: u64,
    /// Seed of the shared-image content.
    pub image_seed: u64,
    /// Distinct contents among duplicate pages.
    pub duplicate_templates: u64,
    /// Interval between the guest's progress reports, microseconds.
    pub report_interval_us: u64,
    /// Pages the guest re-checks against their expected content per report.
    pub verify_pages_per_report: u64,
    /// RAM offsets from here on live above 4 GiB ([`abi::Layout`]).
    pub ram_split: u64,
    /// Paced by the write rate, or CPU-bound.
    pub pace: DirtyPace,
}

/// The workload cannot run in the guest.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// No archetype of that name.
    #[error("unknown workload archetype {0:?}: expected one of {names}", names = archetype::NAMES.join(", "))]
    UnknownArchetype(String),
    /// The guest implements uniform and hot/cold popularity only.
    #[error("workload {0:?} uses Zipf popularity, which the guest does not implement: use a hot/cold or uniform archetype (idle-linux, web, hpc)")]
    Zipf(String),
    /// A parameter is out of range.
    #[error("workload parameter {field}: {message}")]
    Invalid {
        /// The parameter.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl GuestWorkload {
    /// The archetype `name`, with its page write rate replaced by
    /// `write_rate_pages_per_s` if given.
    pub fn from_archetype(name: &str, write_rate_pages_per_s: Option<f64>, seed: u64) -> Result<GuestWorkload, WorkloadError> {
        let mut spec = archetype::lookup(name).ok_or_else(|| WorkloadError::UnknownArchetype(name.to_string()))?;
        if let Some(rate) = write_rate_pages_per_s {
            spec.page_write_rate = rate;
        }
        GuestWorkload::new(spec, seed)
    }

    /// A guest workload for `spec`.
    pub fn new(spec: WorkloadSpec, seed: u64) -> Result<GuestWorkload, WorkloadError> {
        if matches!(spec.popularity, Popularity::Zipf { .. }) {
            return Err(WorkloadError::Zipf(spec.archetype.clone()));
        }
        if !(spec.page_write_rate.is_finite() && spec.page_write_rate >= 0.0 && spec.page_write_rate <= 1e8) {
            return Err(WorkloadError::Invalid {
                field: "page_write_rate",
                message: format!("{} is not a rate in 0..=1e8 pages/s", spec.page_write_rate),
            });
        }
        Ok(GuestWorkload {
            spec,
            seed,
            image_seed: 0x1e4a_6e5e_ed00_0001,
            duplicate_templates: 64,
            report_interval_us: 20_000,
            verify_pages_per_report: 8,
            ram_split: abi::DEFAULT_RAM_SPLIT,
            pace: DirtyPace::Paced,
        })
    }

    /// The parameter block for a guest with `memory_bytes` of RAM, whose TSC
    /// runs at `tsc_hz`.
    pub fn params(&self, memory_bytes: u64, tsc_hz: u64) -> Result<abi::GuestParams, WorkloadError> {
        let layout = self.layout(memory_bytes)?;
        let ppm = |f: Fraction| (f.0.clamp(0.0, 1.0) * abi::GUEST_PPM as f64).round() as u64;
        let c = &self.spec.content;
        let (hot_set, hot_share) = match self.spec.popularity {
            Popularity::HotCold { hot_set, hot_write_share } => (ppm(hot_set), ppm(hot_write_share)),
            _ => (abi::GUEST_PPM, abi::GUEST_PPM),
        };
        Ok(abi::GuestParams {
            magic: abi::GUEST_PARAMS_MAGIC,
            abi_version: abi::GUEST_ABI_VERSION,
            seed: self.seed,
            image_seed: self.image_seed,
            meta_gpa: layout.meta_gpa,
            work_gpa: layout.work_gpa,
            work_pages: layout.work_pages,
            tsc_hz,
            write_rate_pages_per_s: match self.pace {
                DirtyPace::Paced => self.spec.page_write_rate.round() as u64,
                DirtyPace::CpuBound => abi::GUEST_WRITE_RATE_UNPACED,
            },
            zero_ppm: ppm(c.zero),
            shared_image_ppm: ppm(c.shared_image),
            duplicate_ppm: ppm(c.duplicate),
            compressed_mean_ppm: ppm(c.unique_compressed_mean),
            compressed_sd_ppm: (c.unique_compressed_sd.clamp(0.0, 1.0) * abi::GUEST_PPM as f64).round() as u64,
            working_set_ppm: ppm(self.spec.working_set),
            hot_set_ppm: hot_set,
            hot_write_share_ppm: hot_share,
            redirty_change_ppm: ppm(self.spec.redirty_change),
            redirty_unchanged_ppm: ppm(self.spec.redirty_unchanged),
            duplicate_templates: self.duplicate_templates,
            report_interval_us: self.report_interval_us,
            verify_pages_per_report: self.verify_pages_per_report,
            idle_min_us: 1_000,
            ram_split: layout.ram_split,
        })
    }

    /// Where RAM and the workload go for a guest of `memory_bytes`.
    pub fn layout(&self, memory_bytes: u64) -> Result<abi::Layout, WorkloadError> {
        abi::Layout::with_split(memory_bytes, self.ram_split).map_err(|message| WorkloadError::Invalid { field: "memory", message })
    }
}
