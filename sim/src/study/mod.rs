//! Capacity-planning studies: `memfabric sweep`, `memfabric plan` and
//! `memfabric merge`.
//!
//! A study file (TOML, strict) names a base scenario and axes over any of its
//! values by path (`links.wan.bandwidth`, `vms.web.count`,
//! `evacuations.drain.max_concurrent`, `defaults.strategy`, …). This module
//! owns:
//! - [`file`]: the study file format, its checks and located errors;
//! - [`axes`]: axis values, ranges, applying a value to the scenario document
//!   by path (before typed parsing, so every key of a scenario can vary);
//! - [`points`]: expanding axes into points, point hashes and shards;
//! - [`runner`]: running points in parallel, the resume journal;
//! - [`table`]: the rows of `points.parquet` and its writer and merge;
//! - [`folder`]: the output folder, its manifest, `merge`;
//! - [`plan`]: the bracketing + bisection solver of `memfabric plan`;
//! - [`plots`]: SVG heatmaps and line plots of a sweep;
//! - [`cli`]: the subcommands (the binary's edge).
//!
//! Energy metrics come with the fabric engine; the points table leaves them
//! out until the simulator produces them (see docs/capacity-planning.md).

pub mod axes;
pub mod cli;
pub mod file;
pub mod folder;
pub mod plan;
pub mod plots;
pub mod points;
pub mod runner;
pub mod table;

pub use file::{load, parse, Study, StudyError};

/// What a study's output folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StudyKind {
    /// `memfabric sweep`: every point of the axes.
    Sweep,
    /// `memfabric plan`: the points a search evaluated.
    Plan,
}
