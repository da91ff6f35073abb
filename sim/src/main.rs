//! `memfabric`: run, check and benchmark memory-migration scenarios.

use anyhow::Context;
use clap::{Parser, Subcommand};
use memfabric_sim::{bench, output, run, scenario};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "memfabric", version, about = "Simulate the cost of moving VM memory between data centers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario and write results (Parquet tables, manifest, plots).
    Run {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// Results folder (default: results/<scenario name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Seed instead of the scenario's.
        #[arg(long)]
        seed: Option<u64>,
        /// Skip the plots.
        #[arg(long)]
        no_plots: bool,
    },
    /// Check a scenario without running it.
    Check {
        /// Scenario file (TOML).
        scenario: PathBuf,
    },
    /// Time site evacuations of many VMs (build with --release).
    Bench {
        /// Numbers of VMs, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        vms: Vec<usize>,
        /// Repeats per size (the best time is kept).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// Measure the reduction stages on this machine and write a CPU profile (build with --release).
    Profile {
        /// Write the profile here (TOML); without it, only the table is printed.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Description of this machine for the profile's header.
        #[arg(long, default_value = "unnamed machine")]
        machine: String,
        /// Minimum milliseconds per measurement repeat.
        #[arg(long, default_value_t = 100)]
        min_ms: u64,
    },
    /// List the workload archetypes and their defaults.
    Archetypes,
    /// Memory traces: generate synthetic ones, summarise them.
    Trace {
        #[command(subcommand)]
        command: memfabric_sim::trace::cli::TraceCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            // Bad input exits 2, anything else 1.
            if e.downcast_ref::<scenario::ScenarioError>().is_some()
                || e.chain().any(|c| c.downcast_ref::<memfabric_sim::trace::TraceError>().is_some())
            {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { scenario: path, out, seed, no_plots } => {
            let sc = scenario::load(&path)?;
            let results = run::run_all(&sc, seed);
            let dir = out.unwrap_or_else(|| PathBuf::from("results").join(&sc.name));
            output::write_results(&results, &dir, !no_plots)
                .with_context(|| format!("writing results to {}", dir.display()))?;
            print!("{}", output::summary_all(&results));
            println!("\nresults: {}", dir.display());
            Ok(())
        }
        Command::Check { scenario: path } => {
            let sc = scenario::load(&path)?;
            println!(
                "{}: ok ({} sites, {} hosts, {} links, {} VMs, {} operations)",
                path.display(),
                sc.fabric.sites.len(),
                sc.fabric.hosts.len(),
                sc.fabric.links.len(),
                sc.vms.len(),
                sc.operations.len()
            );
            sc.warnings().iter().for_each(|w| println!("warning: {w}"));
            Ok(())
        }
        Command::Bench { vms, repeat } => {
            if cfg!(debug_assertions) {
                eprintln!("note: this is a debug build; run `cargo run --release -p memfabric-sim -- bench` for real figures");
            }
            let rows = bench::run_bench(&vms, repeat);
            print!("{}", bench::format_table(&rows));
            Ok(())
        }
        Command::Profile { out, machine, min_ms } => {
            if cfg!(debug_assertions) {
                eprintln!("note: this is a debug build; run `cargo run --release -p memfabric-sim -- profile` for real figures");
            }
            let settings = memfabric_sim::profiling::ProfileSettings {
                min_time: std::time::Duration::from_millis(min_ms),
                ..Default::default()
            };
            let ms = memfabric_sim::profiling::measure(&settings);
            print!("{}", memfabric_sim::profiling::format_table(&ms));
            if let Some(path) = out {
                let command =
                    format!("memfabric profile --machine {machine:?} --min-ms {min_ms} --out {}", path.display());
                let profile = memfabric_sim::profiling::profile_from(&ms, &machine, &command);
                let text = format!(
                    "# CPU-cost profile: nanoseconds per 4 KiB page on one core, measured by\n# `{command}` (memfabric {}).\n\n{}",
                    memfabric_sim::VERSION,
                    toml::to_string(&profile).context("encoding the profile")?
                );
                std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
                println!("\nprofile: {}", path.display());
            }
            Ok(())
        }
        Command::Archetypes => {
            for name in memfabric_sim::workload::archetype::NAMES {
                let a = memfabric_sim::workload::archetype::lookup(name).expect("listed");
                let mem = memfabric_sim::workload::archetype::default_memory_gib(name).expect("listed");
                println!(
                    "{name:<11} memory {mem:>3}GiB  writes {:>7.0} pages/s  working set {:>3.0}%  zero {:>3.0}%  shared-image {:>3.0}%  dup {:>3.0}%  popularity {:?}",
                    a.page_write_rate,
                    a.working_set.0 * 100.0,
                    a.content.zero.0 * 100.0,
                    a.content.shared_image.0 * 100.0,
                    a.content.duplicate.0 * 100.0,
                    a.popularity
                );
            }
            Ok(())
        }
        Command::Trace { command } => memfabric_sim::trace::cli::execute(command),
    }
}
