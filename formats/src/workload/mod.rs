//! What a VM's memory workload is: its content mix, working set, write rate
//! and popularity law ([`WorkloadSpec`]), and the named archetypes that give
//! their defaults ([`archetype`]).
//!
//! The simulator turns a spec into a dirty-set model (`memfabric_sim::workload`);
//! the validator's guest runs the same spec; a trace records it
//! ([`crate::trace::WorkloadParams`]). The archetype defaults and their
//! reasoning are in `docs/model.md`.

pub mod archetype;

use memfabric_migration::units::Fraction;

/// How writes are spread over the writable working set.
#[derive(Debug, Clone, PartialEq)]
pub enum Popularity {
    /// Every working-set page equally likely.
    Uniform,
    /// `hot_set` of the working set receives `hot_write_share` of the writes.
    HotCold {
        /// Fraction of the working set that is hot.
        hot_set: Fraction,
        /// Fraction of writes that go to hot pages.
        hot_write_share: Fraction,
    },
    /// Page of popularity rank `i` receives writes ∝ `i^-exponent`.
    Zipf {
        /// The Zipf exponent `s` (YCSB's default request distribution uses 0.99).
        exponent: f64,
    },
}

/// What a VM's memory holds, as fractions of its pages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContentMix {
    /// Pages that are all zero.
    pub zero: Fraction,
    /// Pages identical to pages of other VMs booted from the same image.
    pub shared_image: Fraction,
    /// Pages duplicated within this VM.
    pub duplicate: Fraction,
    /// Mean compressed size of a unique page, as a fraction of the page.
    pub unique_compressed_mean: Fraction,
    /// Standard deviation of that compressed size fraction.
    pub unique_compressed_sd: f64,
}

impl ContentMix {
    /// Fraction of pages that are unique (the rest of the mix).
    pub fn unique(&self) -> f64 {
        (1.0 - self.zero.0 - self.shared_image.0 - self.duplicate.0).max(0.0)
    }
}

/// The parameters of a VM's workload, resolved from an archetype and overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSpec {
    /// Name of the archetype it came from.
    pub archetype: String,
    /// Content of memory.
    pub content: ContentMix,
    /// Fraction of memory that the VM ever writes.
    pub working_set: Fraction,
    /// Page writes per second (re-writes included), unthrottled.
    pub page_write_rate: f64,
    /// Popularity law over the working set.
    pub popularity: Popularity,
    /// Mean fraction of a page's bytes that a re-write changes (drives delta encoding).
    pub redirty_change: Fraction,
    /// Fraction of page writes that leave the content as it was ("write-not-dirty").
    pub redirty_unchanged: Fraction,
}
