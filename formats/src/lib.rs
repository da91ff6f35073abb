//! # memfabric-formats
//!
//! The files memfabric's two binaries share: what the simulator
//! (`memfabric`) and the validator (`memfabric-validator`) both read or
//! write, defined once so that calibration joins simulated and measured runs
//! on the same typed values. No simulation, no plotting, no KVM: a crate the
//! validator can link without the simulator's dependencies (plotters,
//! petgraph, rayon).
//!
//! Module map (each module's docs say what it owns):
//! - [`rows`]: the rows of the `migrations` and `rounds` result tables;
//! - [`tables`]: those tables as Parquet, the table helpers, the Parquet writer;
//! - [`trace`]: the memory-trace format (`docs/trace-format.md`), reader and writer;
//! - [`workload`]: workload specs and the named archetypes;
//! - [`record`]: `run.json`, one measured run of a calibration dataset;
//! - [`stages`]: a migration source's per-stage totals (`source.json`'s
//!   `stages`), written by the validator and read by calibration;
//! - [`atomic_dir`]: writing a result or trace folder all or nothing,
//!   never replacing what memfabric did not write;
//! - [`input`]: the one bounded reader for every file memfabric reads;
//! - [`cpu`]: CPU vendors, models and the live-migration compatibility
//!   rule, which the simulator's placement and the validator's CPUID and
//!   handshake check share.
//!
//! The simulator re-exports these modules at their old paths
//! (`memfabric_sim::trace`, `memfabric_sim::atomic_dir`, ...).

pub mod atomic_dir;
pub mod cpu;
pub mod input;
pub mod record;
pub mod rows;
pub mod stages;
pub mod tables;
pub mod trace;
pub mod workload;

/// The workspace version, recorded in the files written with this crate.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
