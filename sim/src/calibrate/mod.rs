//! Calibration: the measured-run dataset `memfabric-validator calibrate-runs`
//! writes, fitting the simulator's free parameters to it, and the held-out
//! evaluation (`memfabric calibrate`; method in docs/calibration.md).
//!
//! | module | owns |
//! |---|---|
//! | [`record`] | `run.json`, one measured run's parameters and headline |
//! | [`dataset`] | reading a dataset folder, with located errors |
//! | [`selector`] | run selectors (`link=100Mbit/s,25ms & pipeline!=none`) |
//! | [`profile`] | the calibration profile file and how the simulator applies it |
//! | [`fit`] | the fit: Nelder–Mead, least squares, the loss; predicting a run |
//! | [`dirty`] | the dirty model's fit: write-rate and working-set factors per workload |
//! | [`evaluate`] | held-out tables, medians, spread, plots, CloudSim's formula |
//! | [`cli`] | the `calibrate` command |

pub mod cli;
pub mod dataset;
pub mod dirty;
pub mod evaluate;
pub mod fit;
pub mod profile;
pub use memfabric_formats::record;
pub mod selector;

use dataset::MeasuredRun;
use selector::Selector;
use memfabric_migration::record::Outcome;

/// Bad calibration input: each names the run (or selector) and the field.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    /// The dataset folder itself.
    #[error("dataset {path}: {message}")]
    Dataset {
        /// The folder.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// One run of the dataset.
    #[error("run {run}: {field}: {message}")]
    Run {
        /// Run id (its folder name).
        run: String,
        /// File or field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A selector that does not parse or selects nothing.
    #[error("selector {selector:?}: {message}")]
    Selector {
        /// As written.
        selector: String,
        /// What is wrong.
        message: String,
    },
    /// Train and test share a (workload, seed) case.
    #[error("train run {train} and test run {test} share the case workload={workload}, seed={seed} (field `seed`): train and test must not share a (workload, seed) case")]
    Overlap {
        /// A training run.
        train: String,
        /// A test run.
        test: String,
        /// Shared workload.
        workload: String,
        /// Shared seed.
        seed: u64,
    },
}

/// Splits `runs` into the completed runs each selector selects; errors when
/// a selector selects no completed run or the two share a (workload, seed).
pub fn split<'a>(runs: &'a [MeasuredRun], train: &Selector, test: &Selector) -> Result<(Vec<&'a MeasuredRun>, Vec<&'a MeasuredRun>), CalibrateError> {
    let completed = |r: &&MeasuredRun| r.record.headline.outcome == Outcome::Completed;
    let pick = |s: &Selector| -> Result<Vec<&MeasuredRun>, CalibrateError> {
        let v: Vec<&MeasuredRun> = runs.iter().filter(|r| s.matches(&r.record.params)).filter(completed).collect();
        if v.is_empty() {
            return Err(CalibrateError::Selector {
                selector: s.text().to_string(),
                message: format!("selects no completed run of the {} in the dataset", runs.len()),
            });
        }
        Ok(v)
    };
    let (tr, te) = (pick(train)?, pick(test)?);
    for a in &tr {
        if let Some(b) = te.iter().find(|b| b.record.params.workload == a.record.params.workload && b.record.params.seed == a.record.params.seed) {
            return Err(CalibrateError::Overlap {
                train: a.id().into(),
                test: b.id().into(),
                workload: a.record.params.workload.clone(),
                seed: a.record.params.seed,
            });
        }
    }
    Ok((tr, te))
}
