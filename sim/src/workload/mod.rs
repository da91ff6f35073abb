//! VM memory workloads: what a VM's memory holds and how it is dirtied.
//!
//! **Dirtying is a set of distinct pages over time**, not a byte rate. A VM
//! writes pages at `page_write_rate` (writes per second, re-writes included);
//! writes fall on its writable working set with a popularity law. The law is
//! represented as *popularity classes*: `n_c` pages, each written as a Poisson
//! process of rate `λ_c`. The number of distinct pages dirtied in a window of
//! length `T` is then
//!
//! ```text
//! D(T) = Σ_c n_c · (1 − exp(−λ_c · T))          (expected value)
//! D(T) ~ Σ_c Binomial(n_c, 1 − exp(−λ_c · T))   (sampled)
//! ```
//!
//! so re-dirtying a hot page adds nothing, and `D(T)` saturates at the working
//! set size. Hot/cold popularity gives two classes; uniform gives one; Zipf is
//! discretised into log-spaced rank buckets (see [`Popularity`]).
//!
//! The spec itself ([`WorkloadSpec`]: the content mix — zero, same-image
//! shared, duplicate within the VM, unique with a compressibility — the change
//! made by a re-write, the popularity law) and the [`archetype`]s are
//! `memfabric_formats::workload`, shared with the validator's guest and
//! re-exported here; this module owns the dirty-set model built from a spec.
//! The archetype defaults and their reasoning are in `docs/model.md`.

pub use memfabric_formats::workload::{archetype, ContentMix, Popularity, WorkloadSpec};

use memfabric_migration::PAGE_SIZE_BYTES;
use rand::Rng;
use rand_distr::{Binomial, Distribution};

/// Which pages are still at the source when post-copy starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pending {
    /// Every page (pure post-copy).
    All,
    /// The `pages` dirtied during the last pre-copy round, which lasted
    /// `run_secs` of guest run time (hybrid, or pre-copy falling back to
    /// post-copy): these are mostly the hot pages.
    DirtiedIn {
        /// Guest run time of the last round.
        run_secs: f64,
        /// Pages dirtied in it (an expectation may be fractional).
        pages: f64,
    },
}

/// Popularity classes of one VM: the dirty-set model.
#[derive(Debug, Clone, PartialEq)]
pub struct DirtyModel {
    /// `(pages, write rate per page per second)` per class.
    classes: Vec<(u64, f64)>,
}

/// Rank buckets per doubling of rank for Zipf (bucket edges grow by 2^(1/4)).
const ZIPF_BUCKETS_PER_OCTAVE: f64 = 4.0;

impl DirtyModel {
    /// The dirty model of a VM with `memory_pages` pages.
    pub fn new(spec: &WorkloadSpec, memory_pages: u64) -> DirtyModel {
        let wws = ((memory_pages as f64) * spec.working_set.0).round() as u64;
        let w = spec.page_write_rate;
        let mut classes = Vec::new();
        if wws == 0 || w <= 0.0 {
            return DirtyModel { classes };
        }
        match &spec.popularity {
            Popularity::Uniform => classes.push((wws, w / wws as f64)),
            Popularity::HotCold { hot_set, hot_write_share } => {
                let hot = (((wws as f64) * hot_set.0).round() as u64).min(wws);
                let cold = wws - hot;
                // A class with no pages cannot take writes: the other takes them all.
                let share = match (hot, cold) {
                    (0, _) => 0.0,
                    (_, 0) => 1.0,
                    _ => hot_write_share.0,
                };
                if hot > 0 {
                    classes.push((hot, w * share / hot as f64));
                }
                if cold > 0 {
                    classes.push((cold, w * (1.0 - share) / cold as f64));
                }
            }
            Popularity::Zipf { exponent } => {
                // Integral approximation of Σ i^-s over ranks [a, b]:
                // ∫_{a-1/2}^{b+1/2} x^-s dx.
                let s = *exponent;
                let integral = |a: f64, b: f64| -> f64 {
                    if (s - 1.0).abs() < 1e-9 {
                        (b / a).ln()
                    } else {
                        (b.powf(1.0 - s) - a.powf(1.0 - s)) / (1.0 - s)
                    }
                };
                let total = integral(0.5, wws as f64 + 0.5);
                let step = 2f64.powf(1.0 / ZIPF_BUCKETS_PER_OCTAVE);
                let mut lo = 1u64;
                while lo <= wws {
                    let hi = (((lo as f64) * step).floor() as u64).max(lo).min(wws);
                    let n = hi - lo + 1;
                    let share = integral(lo as f64 - 0.5, hi as f64 + 0.5) / total;
                    classes.push((n, w * share / n as f64));
                    lo = hi + 1;
                }
            }
        }
        DirtyModel { classes }
    }

    /// Expected distinct pages dirtied in `secs` of guest run time.
    pub fn expected_dirty_pages(&self, secs: f64) -> f64 {
        self.classes.iter().map(|&(n, rate)| n as f64 * -(-rate * secs).exp_m1()).sum()
    }

    /// A random draw of the distinct pages dirtied in `secs` of guest run time.
    pub fn sample_dirty_pages<R: Rng>(&self, secs: f64, rng: &mut R) -> u64 {
        self.classes
            .iter()
            .map(|&(n, rate)| {
                let p = -(-rate * secs).exp_m1();
                Binomial::new(n, p.clamp(0.0, 1.0)).map_or(0, |b| b.sample(rng))
            })
            .sum()
    }

    /// Fraction of each class's pages still at the source when post-copy starts.
    fn pending_fractions(&self, pending: Pending) -> Vec<f64> {
        match pending {
            Pending::All => vec![1.0; self.classes.len()],
            Pending::DirtiedIn { run_secs, pages } => {
                let f: Vec<f64> = self.classes.iter().map(|&(_, rate)| -(-rate * run_secs).exp_m1()).collect();
                // Scale the expected per-class split to the pages actually
                // pending (a class cannot exceed all its pages, so the capped
                // total can fall slightly short of `pages` when nearly every
                // page of a class is dirty).
                let expected: f64 = self.classes.iter().zip(&f).map(|(&(n, _), f)| n as f64 * f).sum();
                let scale = if expected > 0.0 { pages / expected } else { 0.0 };
                f.iter().map(|x| (x * scale).min(1.0)).collect()
            }
        }
    }

    /// Per class: probability that a pending page is touched before the push
    /// delivers it, when the push takes `push_secs`, reaches pages in an order
    /// unrelated to popularity (a pending page arrives at a uniform time in
    /// `[0, T]`), and the guest runs at `speed` (fraction of full speed):
    /// `1 − (1 − e^{−x}) / x` with `x = λ·speed·T`.
    fn fault_probabilities(&self, push_secs: f64, speed: f64) -> impl Iterator<Item = f64> + '_ {
        self.classes.iter().map(move |&(_, rate)| {
            let x = rate * speed * push_secs;
            if x < 1e-9 {
                x / 2.0
            } else {
                1.0 - (-(-x).exp_m1()) / x
            }
        })
    }

    /// Expected remote faults of a post-copy push (accesses are modelled by the
    /// write popularity; reads are not modelled separately).
    pub fn expected_postcopy_faults(&self, pending: Pending, push_secs: f64, speed: f64) -> f64 {
        if push_secs <= 0.0 {
            return 0.0;
        }
        let f = self.pending_fractions(pending);
        self.classes.iter().zip(f).zip(self.fault_probabilities(push_secs, speed)).map(|((&(n, _), f), p)| n as f64 * f * p).sum()
    }

    /// A random draw of [`Self::expected_postcopy_faults`].
    pub fn sample_postcopy_faults<R: Rng>(&self, pending: Pending, push_secs: f64, speed: f64, rng: &mut R) -> u64 {
        if push_secs <= 0.0 {
            return 0;
        }
        let f = self.pending_fractions(pending);
        let probs: Vec<f64> = self.fault_probabilities(push_secs, speed).collect();
        self.classes
            .iter()
            .zip(f)
            .zip(probs)
            .map(|((&(n, _), f), p)| Binomial::new(n, (f * p).clamp(0.0, 1.0)).map_or(0, |b| b.sample(rng)))
            .sum()
    }

    /// The guest's speed during a post-copy push (fraction of full speed):
    /// each remote fault stalls one vCPU for `per_fault_secs`, and a slower
    /// guest touches fewer pages. The speed `s` solves
    /// `F(s) · per_fault_secs = (1 − s) · vcpus · push_secs`, where `F(s)` is
    /// the expected number of faults at speed `s` (found by bisection; the
    /// left side grows with `s`, the right side shrinks). The reported fault
    /// count is then drawn at that speed, so with binomial sampling the stall
    /// can differ slightly from the balance.
    pub fn postcopy_guest_speed(&self, pending: Pending, push_secs: f64, per_fault_secs: f64, vcpus: u32) -> f64 {
        if push_secs <= 0.0 || per_fault_secs <= 0.0 {
            return 1.0;
        }
        let budget = vcpus.max(1) as f64 * push_secs;
        let excess = |s: f64| self.expected_postcopy_faults(pending, push_secs, s) * per_fault_secs - (1.0 - s) * budget;
        if excess(1.0) <= 0.0 {
            return 1.0;
        }
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if excess(mid) > 0.0 {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        0.5 * (lo + hi)
    }

    /// The popularity classes: `(pages, write rate per page per second)`.
    pub fn classes(&self) -> &[(u64, f64)] {
        &self.classes
    }

    /// Pages in the working set.
    pub fn working_set_pages(&self) -> u64 {
        self.classes.iter().map(|c| c.0).sum()
    }

    /// Total page writes per second over all classes.
    pub fn write_rate(&self) -> f64 {
        self.classes.iter().map(|&(n, r)| n as f64 * r).sum()
    }
}

/// Pages in `bytes` of memory (rounded up to whole pages).
pub fn pages_of(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE_SIZE_BYTES)
}

#[cfg(test)]
mod tests;
