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
        /// Results folder (default: results/<scenario name>): new, empty, or a
        /// previous run result, which is replaced atomically; anything else is refused.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also replace a memfabric folder of another kind (a trace, a validator
        /// result) or a run result holding extra files; never a user's folder or file.
        #[arg(long)]
        force: bool,
        /// Seed instead of the scenario's.
        #[arg(long)]
        seed: Option<u64>,
        /// Skip the plots.
        #[arg(long)]
        no_plots: bool,
        /// Calibration profile to apply (written by `memfabric calibrate`).
        #[arg(long)]
        calibration: Option<PathBuf>,
        /// Stop after this much wall-clock time (e.g. 10min), as Ctrl-C
        /// does: nothing written, how far it got on stderr, exit code 124.
        #[arg(long, value_parser = memfabric_migration::units::Nanos::parse)]
        time_limit: Option<memfabric_migration::units::Nanos>,
    },
    /// Check a scenario without running it.
    Check {
        /// Scenario file (TOML).
        scenario: PathBuf,
    },
    /// Time site evacuations of many VMs (build with --release).
    Bench {
        /// Which scenario: evacuation (web VMs, 100 Gbit/s), simgrid (SimGrid's comparison), multisite, load (loading only).
        #[arg(long, value_enum, default_value = "evacuation")]
        workload: bench::Workload,
        /// Numbers of VMs, comma-separated (each 1 to 1000000).
        #[arg(long, value_delimiter = ',', default_value = "1000,10000", value_parser = memfabric_sim::cli_args::vm_count())]
        vms: Vec<usize>,
        /// Repeats per size, 1 to 1000 (the best time is kept).
        #[arg(long, default_value_t = 3, value_parser = memfabric_sim::cli_args::repeat())]
        repeat: usize,
        /// Print the workload's scenario for this many VMs (TOML) instead of measuring.
        #[arg(long, value_parser = memfabric_sim::cli_args::vm_count())]
        print_scenario: Option<usize>,
    },
    /// Measure the reduction stages on this machine and write a CPU profile (build with --release).
    Profile {
        /// Write the profile here (TOML): a new file, or an earlier profile (replaced);
        /// any other existing file is refused. Without it, only the table is printed.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Description of this machine for the profile's header.
        #[arg(long, default_value = "unnamed machine")]
        machine: String,
        /// Minimum milliseconds per measurement repeat (1 to 600000).
        #[arg(long, default_value_t = 100, value_parser = memfabric_sim::cli_args::min_ms())]
        min_ms: u64,
    },
    /// Fit the model to measured validator runs and evaluate it on held-out runs.
    Calibrate(memfabric_sim::calibrate::cli::CalibrateArgs),
    /// List the workload archetypes and their defaults.
    Archetypes,
    /// Run a study's points (a sweep over scenario values), in parallel or as one shard.
    Sweep(memfabric_sim::study::cli::SweepArgs),
    /// Solve a study's [plan]: the value of one axis that meets targets.
    Plan(memfabric_sim::study::cli::PlanArgs),
    /// Merge the shard folders of a sweep into one (the same as an unsharded run).
    Merge(memfabric_sim::study::cli::MergeArgs),
    /// Write report.html (one self-contained file) for a results folder.
    Report {
        /// Results folder of a run, sweep or plan.
        dir: PathBuf,
    },
    /// Print the JSON Schema of an input file format, for editors (docs/scenario.md).
    Schema {
        /// Which format.
        #[arg(default_value = "scenario", value_parser = clap::builder::PossibleValuesParser::new(memfabric_sim::scenario::json_schema::SCHEMAS.iter().map(|s| s.0)))]
        kind: String,
    },
    /// Memory traces: generate synthetic ones, summarise them.
    Trace {
        #[command(subcommand)]
        command: memfabric_sim::trace::cli::TraceCommand,
    },
}

/// How a profile written by `memfabric profile --out` starts; an existing
/// file is replaced only if it starts so.
const PROFILE_MARKER: &str = "# CPU-cost profile";
/// What `profile --out` writes, in messages.
const PROFILE_KIND: &str = "a memfabric CPU profile";

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = memfabric_sim::interrupt::install() {
        eprintln!("error: cannot install the SIGINT/SIGTERM handler: {e}");
        return ExitCode::from(1);
    }
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(memfabric_sim::exit_code(&e))
        }
    }
}

fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { scenario: path, out, force, seed, no_plots, calibration, time_limit } => {
            let sc = memfabric_sim::calibrate::cli::load_scenario(&path, calibration.as_deref())?;
            let dir = out.unwrap_or_else(|| PathBuf::from("results").join(&sc.name));
            // Refuse a bad --out before the (possibly long) run.
            memfabric_sim::atomic_dir::check_target(&dir, memfabric_sim::atomic_dir::DirKind::SimResult, force)?;
            if let Some(limit) = time_limit {
                memfabric_sim::interrupt::stop_after(std::time::Duration::from_nanos(limit.0))
                    .context("starting the --time-limit watch")?;
            }
            memfabric_sim::progress::enable();
            let results = {
                let _line = memfabric_sim::progress::show_on_stderr();
                run::run_all(&sc, seed)
            };
            output::write_results(&results, &dir, !no_plots, force)
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
        Command::Bench { workload, vms, repeat, print_scenario } => {
            if cfg!(debug_assertions) && print_scenario.is_none() {
                eprintln!("note: this is a debug build; run `cargo run --release -p memfabric-sim -- bench` for real figures");
            }
            print!("{}", bench::execute(workload, &vms, repeat, print_scenario)?);
            Ok(())
        }
        Command::Profile { out, machine, min_ms } => {
            if let Some(path) = &out {
                // Refuse a bad --out before measuring.
                memfabric_sim::atomic_dir::check_file_target(path, PROFILE_MARKER, PROFILE_KIND)?;
            }
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
                    "{PROFILE_MARKER}: nanoseconds per 4 KiB page on one core, measured by\n# `{command}` (memfabric {}).\n\n{}",
                    memfabric_sim::VERSION,
                    toml::to_string(&profile).context("encoding the profile")?
                );
                memfabric_sim::atomic_dir::replace_file(&path, PROFILE_MARKER, PROFILE_KIND, text.as_bytes())?;
                println!("\nprofile: {}", path.display());
            }
            Ok(())
        }
        Command::Archetypes => {
            print!("{}", output::archetype_table());
            Ok(())
        }
        Command::Schema { kind } => {
            print!("{}", scenario::json_schema::schema_json(&kind).context("listed by clap")?);
            Ok(())
        }
        Command::Trace { command } => memfabric_sim::trace::cli::execute(command),
        Command::Sweep(args) => memfabric_sim::study::cli::sweep(args),
        Command::Plan(args) => memfabric_sim::study::cli::plan(args),
        Command::Merge(args) => memfabric_sim::study::cli::merge(args),
        Command::Report { dir } => memfabric_sim::study::cli::report(&dir),
        Command::Calibrate(args) => memfabric_sim::calibrate::cli::execute(&args),
    }
}
