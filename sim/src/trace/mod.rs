//! Memory traces. The format itself (types, reader, writer, validation) is
//! `memfabric_formats::trace`, shared with the validator, and re-exported
//! here so that `crate::trace::Trace` and friends keep their paths; this
//! module adds what only the simulator does with traces:
//!
//! - [`gen`] makes synthetic traces from a workload archetype, deterministic
//!   for a seed (`memfabric trace gen`);
//! - [`stats`] summarises traces (`memfabric trace stats`) and plots the
//!   working-set growth;
//! - [`replay`] drives a VM's dirtying from a trace in a run;
//! - [`cli`] is the `memfabric trace` command.

pub use memfabric_formats::trace::*;

pub mod cli;
pub mod gen;
pub mod replay;
pub mod stats;

#[cfg(test)]
mod tests;
