//! `memfabric-validator`: see the crate documentation.
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use memfabric_migration::units::{Bytes, Nanos};
use memfabric_validator::guest::{abi, GuestWorkload};
use memfabric_validator::machine::Machine;

/// memfabric's validator: a KVM VMM that runs workload guests, migrates them
/// live between two processes, and captures memory traces.
#[derive(Debug, Parser)]
#[command(name = "memfabric-validator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boots a workload guest and runs it, printing its progress.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Guest memory (e.g. 1GiB).
    #[arg(long, default_value = "1GiB", value_parser = Bytes::parse)]
    mem: Bytes,
    /// Workload archetype of the simulator (uniform or hot/cold ones).
    #[arg(long, default_value = "web")]
    workload: String,
    /// Page writes per second (overrides the archetype's).
    #[arg(long)]
    dirty_rate: Option<f64>,
    /// How long to run after the guest has filled its memory.
    #[arg(long, default_value = "5s", value_parser = Nanos::parse)]
    duration: Nanos,
    /// Seed of the guest's content and dirtying.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn run(args: &RunArgs) -> anyhow::Result<()> {
    let workload = GuestWorkload::from_archetype(&args.workload, args.dirty_rate, args.seed)?;
    let t = Instant::now();
    let m = Machine::boot(args.mem.0, &workload)?;
    eprintln!("booted {} MiB guest, TSC {} MHz", args.mem.0 >> 20, m.tsc_hz / 1_000_000);
    m.wait_for_phase(abi::GUEST_PHASE_BOOT as u64, Duration::from_secs(30)).map_err(anyhow::Error::msg)?;
    eprintln!("ring 3 reached after {:?}", t.elapsed());
    let filled = m.wait_for_phase(abi::GUEST_PHASE_FILLED as u64, Duration::from_secs(600)).map_err(anyhow::Error::msg)?;
    eprintln!("filled {} pages after {:?}", filled.filled_pages, t.elapsed());
    let start = Instant::now();
    let p0 = m.vcpu.progress();
    while start.elapsed() < Duration::from_nanos(args.duration.0) {
        std::thread::sleep(Duration::from_millis(500));
        if let Some(f) = m.vcpu.failure() {
            anyhow::bail!("guest failed: {f}");
        }
        let p = m.vcpu.progress();
        println!(
            "t={:6.2}s writes={} ({:.0}/s) changed={} verified={} errors={} reports={} exits={} idle={:.0}%",
            start.elapsed().as_secs_f64(),
            p.writes,
            (p.writes - p0.writes) as f64 / start.elapsed().as_secs_f64(),
            p.changed_writes,
            p.verified_pages,
            p.verify_errors,
            p.reports,
            p.exits,
            100.0 * (p.idle_ns - p0.idle_ns) as f64 / start.elapsed().as_nanos() as f64
        );
    }
    m.vcpu.stop().context("vCPU")?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match &cli.command {
        Command::Run(a) => run(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
