//! # memfabric-sim
//!
//! A deterministic discrete-event simulator of VM memory migration across a
//! multi-site fabric. It answers: *what does it cost to move VM memory between
//! data centers, and which mechanism and settings make it cheapest?*
//!
//! A run goes: [`scenario::load`] (TOML → checked [`scenario::Scenario`]) →
//! [`run::run`] (the simulation) → [`output::write_results`] (Parquet tables,
//! manifest, plots) and [`output::summary`] (the table on stdout).
//!
//! ```
//! let text = r#"
//! [scenario]
//! name = "doc"
//! [[sites]]
//! name = "a"
//! hosts = [{ name = "a-h", cores = 16, ram = "64GiB" }]
//! [[sites]]
//! name = "b"
//! hosts = [{ name = "b-h", cores = 16, ram = "64GiB" }]
//! [[links]]
//! name = "a-b"
//! between = ["a", "b"]
//! bandwidth = "1Gbit/s"
//! latency = "10ms"
//! [[vms]]
//! name = "vm"
//! host = "a-h"
//! archetype = "idle-linux"
//! [[migrations]]
//! vm = "vm"
//! to = "b"
//! "#;
//! let scenario = memfabric_sim::scenario::parse(text, "doc.toml").unwrap();
//! let out = memfabric_sim::run::run(&scenario, None);
//! assert_eq!(out.migrations[0].outcome, memfabric_migration::record::Outcome::Completed);
//! // A 2 GiB VM over 1 Gbit/s needs at least 2 GiB * 8 / 1e9 = 17.2 s.
//! assert!(out.migrations[0].total_time_s > 17.1);
//! ```
//!
//! Module map (each module's docs say what it owns):
//! - [`engine`]: simulated time, event queue, seeded random streams;
//! - [`fabric`]: sites, hosts, links, routes (typed ids);
//! - [`network`]: flows and the max-min fair solver with TCP caps;
//! - [`workload`]: memory content and distinct-page dirtying, archetypes;
//! - [`mechanism`]: per-migration state and result rows;
//! - [`state`]: what changes during a run (VM states, host usage, host, power and link state);
//! - [`policy`]: the policy seam (events, commands, refusals, the view);
//! - [`cpu`]: CPU vendors, models and the live-migration compatibility rule;
//! - [`energy`]: host power models and the energy meter;
//! - [`failure`]: host and site failures and the HA restart policy;
//! - [`placement`]: the one placement rule, at load time and run time;
//! - [`ops`]: fabric operations as policies (scheduled migrations, site evacuation);
//! - [`scenario`]: the scenario file format and its checks;
//! - [`run`]: the simulation: event loop, migration driver, flows, content index, result rows;
//! - [`progress`]: how far the running simulation has got (stderr line, interruption message);
//! - [`output`]: Parquet tables, manifest, summary, plots;
//! - [`atomic_dir`]: writing a result or trace directory all or nothing,
//!   never replacing what memfabric did not write (in `memfabric_formats`,
//!   re-exported here);
//! - [`input`]: the one bounded reader for every file the simulator reads
//!   (in `memfabric_formats`, re-exported here);
//! - [`interrupt`]: SIGINT/SIGTERM remove unfinished output folders;
//! - [`reduction`]: the data-reduction model (per page class, CPU profile);
//! - [`profiling`]: `memfabric profile`, measuring the real codecs;
//! - [`calibrate`]: calibration datasets, fitting the model to measured runs;
//! - [`bench`]: the `memfabric bench` scaling benchmark;
//! - [`cli_args`]: the ranges of the numeric command-line flags;
//! - [`trace`]: the memory-trace format, the synthetic generator, trace statistics;
//! - [`study`]: capacity-planning sweeps, plans, shards and merges;
//! - [`report`]: the one-file HTML report of a results folder.

pub use memfabric_formats::atomic_dir;
pub mod bench;
pub mod calibrate;
pub mod cli_args;
pub use memfabric_formats::cpu;
pub mod energy;
pub mod engine;
pub mod fabric;
pub mod failure;
pub use memfabric_formats::input;
pub mod interrupt;
pub mod mechanism;
pub mod network;
pub mod ops;
pub mod placement;
pub mod policy;
pub mod reduction;
pub mod output;
pub mod profiling;
pub mod progress;
pub mod report;
pub mod run;
pub mod scenario;
pub mod state;
pub mod study;
pub mod trace;
pub mod workload;

/// The exit code for an error that reached `memfabric`'s `main`: 2 for bad
/// input (a scenario, trace, argument or `--out` that is refused), 1 for
/// anything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let bad_input = e.chain().any(|c| {
        c.is::<scenario::ScenarioError>()
            || c.is::<trace::TraceError>()
            || c.is::<trace::gen::GenError>()
            || c.is::<trace::cli::StatsError>()
            || c.is::<study::StudyError>()
            || c.is::<calibrate::CalibrateError>()
            || c.is::<calibrate::profile::CalibrationError>()
    });
    if bad_input || atomic_dir::is_refusal(e) {
        2
    } else {
        1
    }
}

/// The simulator's version, recorded in every result.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
