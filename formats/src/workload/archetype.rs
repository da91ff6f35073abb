//! Named workload archetypes with documented defaults.
//!
//! The reasoning and sources for every number are in `docs/model.md`
//! ("Workload archetypes"). Scenario files start from an archetype and override
//! any parameter.

use super::{ContentMix, Popularity, WorkloadSpec};
use memfabric_migration::units::Fraction;

/// Names of the built-in archetypes.
pub const NAMES: [&str; 5] = ["idle-linux", "web", "oltp-db", "memcached", "hpc"];

/// YCSB's default Zipfian constant (Cooper et al., SoCC 2010).
pub const YCSB_ZIPF_EXPONENT: f64 = 0.99;

/// Hot fraction of the working set when a scenario switches a VM to
/// `popularity = "hot-cold"` without naming one: the Pareto 80/20 rule (reasoned).
pub const DEFAULT_HOT_SET: Fraction = Fraction(0.2);
/// Share of writes to the hot set in that case (Pareto 80/20, reasoned).
pub const DEFAULT_HOT_WRITE_SHARE: Fraction = Fraction(0.8);

fn mix(zero: f64, shared_image: f64, duplicate: f64, compressed_mean: f64, compressed_sd: f64) -> ContentMix {
    ContentMix {
        zero: Fraction(zero),
        shared_image: Fraction(shared_image),
        duplicate: Fraction(duplicate),
        unique_compressed_mean: Fraction(compressed_mean),
        unique_compressed_sd: compressed_sd,
    }
}

/// The archetype called `name`, if there is one.
pub fn lookup(name: &str) -> Option<WorkloadSpec> {
    let s = |content, working_set: f64, page_write_rate: f64, popularity, change: f64, unchanged: f64| WorkloadSpec {
        archetype: name.to_string(),
        content,
        working_set: Fraction(working_set),
        page_write_rate,
        popularity,
        redirty_change: Fraction(change),
        redirty_unchanged: Fraction(unchanged),
    };
    let hot_cold = |hot: f64, share: f64| Popularity::HotCold { hot_set: Fraction(hot), hot_write_share: Fraction(share) };
    Some(match name {
        // Freshly booted, idle: mostly never-touched (zero) memory, kernel and
        // libraries shared with VMs of the same image, a tiny working set of
        // timers, logs and page cache.
        "idle-linux" => s(mix(0.60, 0.15, 0.03, 0.45, 0.15), 0.05, 250.0, hot_cold(0.10, 0.90), 0.05, 0.30),
        // Web/application server: page cache and heap, sessions; a Pareto-like
        // 80/20 split of writes (Clark et al. 2005 measured a small writable
        // working set for SPECweb).
        "web" => s(mix(0.25, 0.10, 0.05, 0.45, 0.15), 0.25, 5_000.0, hot_cold(0.20, 0.80), 0.10, 0.30),
        // OLTP database: the buffer pool fills memory (few zero pages); row
        // updates change small parts of pages; Zipfian key popularity.
        "oltp-db" => s(
            mix(0.05, 0.03, 0.02, 0.50, 0.15),
            0.40,
            25_000.0,
            Popularity::Zipf { exponent: YCSB_ZIPF_EXPONENT },
            0.05,
            0.20,
        ),
        // memcached: slabs across most of memory, Zipfian keys; 44–48% of
        // dirtied pages were unchanged in the first pre-copy rounds (C. Li,
        // qemu-devel, "write-not-dirty").
        "memcached" => s(
            mix(0.10, 0.02, 0.05, 0.55, 0.20),
            0.80,
            20_000.0,
            Popularity::Zipf { exponent: YCSB_ZIPF_EXPONENT },
            0.40,
            0.45,
        ),
        // HPC stencil/solver: large arrays swept uniformly, floating-point data
        // that changes almost completely and compresses poorly; 3–9% of
        // dirtied pages unchanged for lbm (same source).
        "hpc" => s(mix(0.05, 0.01, 0.01, 0.85, 0.10), 0.60, 100_000.0, Popularity::Uniform, 0.90, 0.06),
        _ => return None,
    })
}

/// Default memory size of each archetype, in GiB.
pub fn default_memory_gib(name: &str) -> Option<u64> {
    Some(match name {
        "idle-linux" => 2,
        "web" => 4,
        "oltp-db" => 16,
        "memcached" => 8,
        "hpc" => 32,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_archetype_is_consistent() {
        for name in NAMES {
            let a = lookup(name).unwrap();
            assert!(a.content.unique() > 0.0 && a.content.unique() < 1.0, "{name}");
            assert!(a.working_set.0 > 0.0 && a.working_set.0 <= 1.0);
            assert!(default_memory_gib(name).is_some());
        }
        assert!(lookup("mainframe").is_none());
    }
}
