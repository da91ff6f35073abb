//! `memfabric-validator`: see the crate documentation.
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use memfabric_migration::units::{Bytes, Nanos};
use memfabric_validator::guest::{abi, GuestWorkload};
use memfabric_validator::machine::Machine;
use memfabric_validator::migrate::orchestrate::{self, DestArgs, MigrateArgs, SourceArgs};

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
    /// Migrates a running guest live between a source and a destination VMM
    /// process and writes the result tables.
    Migrate(MigrateArgs),
    /// Captures a memory trace of a running guest (snapshot, then the pages
    /// it dirties epoch by epoch) in the simulator's trace format.
    Capture(memfabric_validator::capture::CaptureArgs),
    /// Packet-level WAN emulator between two network namespaces: bring a
    /// link up for manual use, or measure it.
    Wan(memfabric_validator::wan::cli::WanArgs),
    /// Measures the CPU cost of the migration channel's TLS encryption and
    /// decryption in memory, against memcpy.
    TlsBench(memfabric_validator::migrate::tls_bench::TlsBenchArgs),
    /// Source and destination CPU per GiB per pipeline on loopback, against
    /// memcpy measured in the same run.
    DatapathBench(memfabric_validator::migrate::datapath_bench::DatapathBenchArgs),
    /// Runs a matrix of live migrations (TOML) into a calibration dataset
    /// for `memfabric calibrate`; resumable.
    CalibrateRuns(memfabric_validator::calibrate_runs::CalibrateRunsArgs),
    /// (internal) The source VMM of `migrate`.
    #[command(hide = true)]
    Source(SourceArgs),
    /// (internal) The destination VMM of `migrate`.
    #[command(hide = true)]
    Dest(DestArgs),
    #[command(hide = true)]
    SiteSource(memfabric_validator::site::gang::SiteProcArgs),
    #[command(hide = true)]
    SiteDest(memfabric_validator::site::gang::SiteProcArgs),
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
    /// Dirty as fast as the vCPU runs (CPU-bound), ignoring the write rate.
    #[arg(long = "cpu-bound", conflicts_with = "dirty_rate")]
    cpu_bound: bool,
    /// Throttle the vCPU to sleep this percent of the time (0 to 99), as
    /// auto-converge does.
    #[arg(long, default_value_t = 0)]
    throttle: u32,
    /// How long to run after the guest has filled its memory.
    #[arg(long, default_value = "5s", value_parser = Nanos::parse)]
    duration: Nanos,
    /// Seed of the guest's content and dirtying.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn run(args: &RunArgs) -> anyhow::Result<()> {
    let mut workload = GuestWorkload::from_archetype(&args.workload, args.dirty_rate, args.seed)?;
    if args.cpu_bound {
        workload.pace = memfabric_validator::guest::DirtyPace::CpuBound;
    }
    let t = Instant::now();
    let m = Machine::boot(args.mem.0, &workload)?;
    eprintln!("booted {} MiB guest, TSC {} MHz", args.mem.0 >> 20, m.tsc_hz / 1_000_000);
    m.wait_for_phase(abi::GUEST_PHASE_BOOT as u64, Duration::from_secs(30)).map_err(anyhow::Error::msg)?;
    eprintln!("ring 3 reached after {:?}", t.elapsed());
    let filled = m.wait_for_phase(abi::GUEST_PHASE_FILLED as u64, Duration::from_secs(600)).map_err(anyhow::Error::msg)?;
    eprintln!("filled {} pages after {:?}", filled.filled_pages, t.elapsed());
    m.vcpu.set_throttle(args.throttle)?;
    let start = Instant::now();
    let p0 = m.vcpu.progress();
    while start.elapsed() < Duration::from_nanos(args.duration.0) {
        std::thread::sleep(Duration::from_millis(500));
        if let Some(f) = m.vcpu.failure() {
            anyhow::bail!("guest failed: {f}");
        }
        let p = m.vcpu.progress();
        println!(
            "t={:6.2}s writes={} ({:.0}/s) changed={} verified={} errors={} reports={} exits={} idle={:.0}% throttled={:.0}%",
            start.elapsed().as_secs_f64(),
            p.writes,
            (p.writes - p0.writes) as f64 / start.elapsed().as_secs_f64(),
            p.changed_writes,
            p.verified_pages,
            p.verify_errors,
            p.reports,
            p.exits,
            100.0 * (p.idle_ns - p0.idle_ns) as f64 / start.elapsed().as_nanos() as f64,
            100.0 * (p.throttled_ns - p0.throttled_ns) as f64 / start.elapsed().as_nanos() as f64
        );
    }
    m.vcpu.stop().context("vCPU")?;
    Ok(())
}

fn ms(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into())
}

fn migrate(args: &MigrateArgs) -> anyhow::Result<()> {
    memfabric_validator::migrate::postcopy::check_args(args).map_err(orchestrate::MigrateInputError::from)?;
    orchestrate::check_multifd_args(args)?;
    if args.gang.is_gang() {
        return memfabric_validator::site::gang::migrate_main(args);
    }
    let o = orchestrate::migrate(args)?;
    let src = &o.source;
    let total_s = (src.end_ns - src.start_ns) as f64 / 1e9;
    println!("| round | phase | pages | bytes on wire | seconds | dirty pages after |");
    println!("|---|---|---|---|---|---|");
    for r in &src.rounds {
        println!(
            "| {} | {} | {} | {} | {:.3} | {} |",
            r.round,
            r.phase,
            r.pages,
            r.bytes_on_wire,
            (r.end_ns - r.start_ns) as f64 / 1e9,
            r.dirty_pages
        );
    }
    println!();
    println!("outcome: {}   pipeline: {}   memory: {} MiB", o.outcome_name(), src.strategy, src.memory_bytes >> 20);
    println!(
        "total time: {total_s:.3} s   downtime: {} ms (of which integrity hashing: source {} ms, destination {} ms)",
        ms(o.downtime_ms),
        ms(src.source_verify_ms),
        ms(src.dest_verify_ms)
    );
    println!(
        "bytes on wire: {} ({:.1}% of {} unreduced)   rounds: {}   converged: {}",
        src.bytes_on_wire,
        100.0 * src.bytes_on_wire as f64 / (src.stages.pages() * 4104).max(1) as f64,
        src.stages.pages() * 4104,
        src.precopy_rounds(),
        src.converged.map(|c| c.to_string()).unwrap_or_else(|| "-".into())
    );
    println!(
        "pages: zero {} dedup {} delta {} compressed {} raw {}   CPU: source {:.2} s, destination {:.2} s",
        src.stages.pages_zero,
        src.stages.pages_dedup,
        src.stages.pages_delta,
        src.stages.pages_compressed,
        src.stages.pages_raw,
        src.cpu_s_source,
        o.destination.as_ref().map(|d| d.cpu_s_destination).unwrap_or(0.0)
    );
    if let Some(d) = &o.destination {
        println!(
            "integrity: {}; guest writes {} at pause -> {} after {:.1} s at the destination, {} verify errors",
            if o.integrity_checked {
                format!("{} of {} chunks equal", d.chunks_compared - d.chunks_differing, d.chunks_compared)
            } else {
                "RAM not compared".to_string()
            },
            d.guest_writes_at_pause,
            d.guest_writes_after,
            d.watch_s,
            d.guest_verify_errors_after
        );
    }
    if let Some(w) = &src.guest_after_abort {
        println!(
            "source guest after the failure: writes {} -> {} over {:.1} s{}",
            w.writes_before,
            w.writes_after,
            w.seconds,
            w.failure.as_ref().map(|f| format!(" (failed: {f})")).unwrap_or_default()
        );
    }
    println!(
        "integrity held: {}",
        match (o.integrity_checked, o.integrity_held) {
            (_, Some(true)) => "yes",
            (_, Some(false)) => "NO",
            (false, None) => "not checked (--no-integrity-check)",
            (true, None) => "n/a (not resumed)",
        }
    );
    for line in memfabric_validator::migrate::postcopy::summary_lines(&o) {
        println!("{line}");
    }
    println!("results: {}", args.out.display());
    if let Some(e) = &o.source.cpu_incompatible {
        return Err(anyhow::Error::new(e.clone()).context("migration refused, the guest runs on at the source"));
    }
    if let Some(f) = o.failure() {
        anyhow::bail!("migration failed: {f}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match &cli.command {
        Command::Run(a) => run(a),
        Command::Migrate(a) => migrate(a),
        Command::Capture(a) => memfabric_validator::capture::capture_main(a),
        Command::Source(a) => orchestrate::source_main(a),
        Command::Wan(a) => memfabric_validator::wan::cli::run(a),
        Command::Dest(a) => orchestrate::dest_main(a),
        Command::TlsBench(a) => memfabric_validator::migrate::tls_bench::run(a),
        Command::DatapathBench(a) => memfabric_validator::migrate::datapath_bench::run(a),
        Command::CalibrateRuns(a) => memfabric_validator::calibrate_runs::run(a),
        Command::SiteSource(a) => memfabric_validator::site::gang::site_source_main(a),
        Command::SiteDest(a) => memfabric_validator::site::gang::site_dest_main(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // Bad input (arguments, a refused --out) exits 2 (as clap's own refusals do), anything else 1.
            if e.downcast_ref::<orchestrate::MigrateInputError>().is_some()
                || e.downcast_ref::<memfabric_validator::site::gang::GangInputError>().is_some()
                || e.chain().any(|c| c.is::<memfabric_validator::calibrate_runs::matrix::MatrixError>())
                || memfabric_formats::atomic_dir::is_refusal(&e)
            {
                ExitCode::from(2)
            } else if e.chain().any(|c| c.is::<memfabric_validator::migrate::cpu::CpuIncompatible>()) {
                // A refusal, not bad input: the result folder says what happened.
                ExitCode::from(3)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
