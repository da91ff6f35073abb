//! Fitting the dirty model to the guest's measured dirtying: per workload
//! archetype, factors on the scenario's write rate and working set
//! ([`DirtyFactors`]) such that the model's expected distinct pages dirtied
//! in each measured pre-copy round's window match the pages the guest
//! dirtied in it.
//!
//! A round's window is from its start to the next round's start (the
//! validator syncs the dirty log as each round starts, and the simulator
//! dirties over the round's whole time, its fixed cost included). The model
//! is `D(T) = Σ_c n_c·(1 − exp(−λ_c·T))` (`crate::workload::DirtyModel`),
//! nonlinear in both factors, so a bounded Nelder–Mead search
//! ([`super::fit::nelder_mead`], start (1, 1), restarted once from its end)
//! minimises `Σ (ln(1 + measured) − ln(1 + D(T)))²` over the training runs
//! of the archetype. The log makes short late rounds (a few hundred pages)
//! count as much as round 0 (thousands).

use std::collections::BTreeMap;

use super::dataset::MeasuredRun;
use super::fit::nelder_mead;
use super::profile::DirtyFactors;
use crate::workload::{pages_of, DirtyModel, WorkloadSpec};

/// Bounds of the search: (write-rate factor, working-set factor).
pub const DIRTY_FACTOR_BOUNDS: [(f64, f64); 2] = [(0.05, 4.0), (0.05, 4.0)];

/// One observation: a run's VM and a window with the pages dirtied in it.
struct Window<'a> {
    spec: &'a WorkloadSpec,
    pages: u64,
    secs: f64,
    dirtied: f64,
}

/// The measured windows of `run` (its VM's workload, memory pages, each
/// complete pre-copy round followed by another round).
fn windows(run: &MeasuredRun) -> Vec<Window<'_>> {
    let Some(vm) = run.scenario.vms.first() else { return Vec::new() };
    if vm.trace.is_some() {
        return Vec::new();
    }
    run.rounds
        .windows(2)
        .filter(|w| w[0].phase == "precopy" && w[0].complete && w[1].start_ns > w[0].start_ns)
        .map(|w| Window {
            spec: &vm.workload,
            pages: pages_of(vm.memory.0),
            secs: (w[1].start_ns - w[0].start_ns) as f64 * 1e-9,
            dirtied: w[0].dirty_pages as f64,
        })
        .collect()
}

/// The model's expected pages dirtied in `w` with factors `x`.
fn predicted(w: &Window<'_>, x: &[f64]) -> f64 {
    let mut spec = w.spec.clone();
    DirtyFactors { write_rate_factor: x[0], working_set_factor: x[1] }.apply(&mut spec);
    DirtyModel::new(&spec, w.pages).expected_dirty_pages(w.secs)
}

/// Fits [`DirtyFactors`] per workload archetype of `train` (archetypes with
/// no measured window are left out).
pub fn fit_dirty(train: &[&MeasuredRun]) -> BTreeMap<String, DirtyFactors> {
    let mut by_archetype: BTreeMap<String, Vec<Window<'_>>> = BTreeMap::new();
    for r in train {
        for w in windows(r) {
            by_archetype.entry(w.spec.archetype.clone()).or_default().push(w);
        }
    }
    by_archetype
        .into_iter()
        .filter(|(_, ws)| !ws.is_empty())
        .map(|(archetype, ws)| {
            let mut f = |x: &[f64]| ws.iter().map(|w| ((1.0 + w.dirtied).ln() - (1.0 + predicted(w, x)).ln()).powi(2)).sum::<f64>();
            let (x, _) = nelder_mead(&mut f, &[1.0, 1.0], &DIRTY_FACTOR_BOUNDS, 400, 1e-12);
            let (x, _) = nelder_mead(&mut f, &x, &DIRTY_FACTOR_BOUNDS, 400, 1e-12);
            (archetype, DirtyFactors { write_rate_factor: x[0], working_set_factor: x[1] })
        })
        .collect()
}
