//! `memfabric-validator migrate`: starts a destination and a source VMM as
//! separate processes (this binary's hidden `dest` and `source` commands),
//! optionally with a fault proxy between them, waits for both reports, and
//! writes the result folder in the simulator's schema.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use memfabric_migration::precopy::{NonConvergence, PrecopyConfig};
use memfabric_migration::strategy::Strategy;
use memfabric_migration::units::{Bytes, Nanos};

use super::dest::{run_dest, DestConfig, DestReport};
use super::arbiter::Arbiter;
use super::fault::{FaultAt, FaultKind, FaultProxy, FaultSpec};
use super::source::{run_source, SourceConfig, SourceReport};
use super::tls::{self, TlsArgs, TlsFiles};
use super::write_json;
use crate::guest::GuestWorkload;
use crate::wan::{LinkSpec, LinkStats, Side, WanLink};
use crate::results;

/// What the guest runs and how it migrates: shared by `migrate` and the
/// hidden `source` command.
#[derive(Debug, Clone, clap::Args)]
pub struct GuestArgs {
    /// Guest memory, a multiple of 2 MiB (e.g. 1GiB).
    #[arg(long, default_value = "1GiB", value_parser = Bytes::parse)]
    pub mem: Bytes,
    /// Workload archetype of the simulator (the guest implements the
    /// uniform and hot/cold ones: idle-linux, web, hpc).
    #[arg(long, default_value = "web")]
    pub workload: String,
    /// Page writes per second, re-writes included (overrides the archetype's).
    #[arg(long = "dirty-rate")]
    pub dirty_rate: Option<f64>,
    /// Seed of the guest's content and dirtying.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Data-reduction pipeline, as in scenarios (none, zero, zero+lz4,
    /// zero+xbzrle+zstd, zero+dedup-vm+lz4, ...).
    #[arg(long, default_value = "zero")]
    pub pipeline: Strategy,
    /// Longest acceptable pause for the final stop-and-copy.
    #[arg(long = "downtime-limit", default_value = "300ms", value_parser = parse_downtime_limit)]
    pub downtime_limit: Nanos,
    /// Bound on pre-copy rounds, round 0 included.
    #[arg(long = "max-rounds", default_value_t = 30, value_parser = parse_max_rounds)]
    pub max_rounds: u32,
    /// What to do when the bound is reached: abort, force-stop, or
    /// post-copy (switch to post-copy for what is still dirty).
    #[arg(long = "on-non-convergence", default_value = "force-stop", value_parser = parse_non_convergence)]
    pub on_non_convergence: NonConvergence,
    /// How long the guest runs after filling its memory before migrating.
    #[arg(long, default_value = "1s", value_parser = Nanos::parse)]
    pub warmup: Nanos,
    /// A send or receive that makes no progress for this long fails the
    /// migration (at least 1ms).
    #[arg(long = "io-timeout", default_value = "10s", value_parser = parse_io_timeout)]
    pub io_timeout: Nanos,
    /// How long to watch the guest after resume (destination) or after a
    /// failed migration (source).
    #[arg(long, default_value = "1s", value_parser = Nanos::parse)]
    pub watch: Nanos,
    /// Skip the integrity check at switchover (per-page hashes kept as pages
    /// are sent and written, compared per chunk at the pause: under a
    /// millisecond of downtime); frame checksums and the guest's own page
    /// checks remain.
    #[arg(long = "no-integrity-check")]
    pub no_integrity_check: bool,
    /// RAM above this offset is mapped at 4 GiB (default 3 GiB; lower only
    /// to exercise the second memory slot with a small guest).
    #[arg(long = "ram-split", default_value = "3GiB", value_parser = Bytes::parse, hide = true)]
    pub ram_split: Bytes,
    /// The guest dirties as fast as its vCPU runs (CPU-bound), ignoring
    /// --dirty-rate; scenario.toml gets the rate it reached in round 0.
    #[arg(long = "cpu-bound", conflicts_with = "dirty_rate")]
    pub cpu_bound: bool,
    /// QEMU-style auto-converge: throttle the guest's vCPU (20 %, +10 %,
    /// up to 99 %) when it dirties faster than the rounds send.
    #[arg(long = "auto-converge")]
    pub auto_converge: bool,
    /// The guest's CPU model.
    #[command(flatten)]
    pub cpu: super::cpu::CpuArgs,
    /// How memory moves, as in scenarios: pre-copy, post-copy (resume at
    /// the destination at once, pages on demand and by a background push)
    /// or hybrid (one full pre-copy round, then post-copy).
    #[arg(long, default_value = "pre-copy")]
    pub mechanism: memfabric_migration::record::Mechanism,
    /// Streams and reduction threads (multifd).
    #[command(flatten)]
    pub multifd: super::multifd::MultifdArgs,
}

/// The shortest `--io-timeout`: a socket timeout of zero means "never" to
/// the kernel, and below a millisecond no send can make progress.
pub const MIN_IO_TIMEOUT: Nanos = Nanos::from_millis(1);

fn parse_downtime_limit(s: &str) -> Result<Nanos, String> {
    PrecopyConfig::check_downtime_limit(Nanos::parse(s).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

fn parse_max_rounds(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{s:?}: {e} (expected a whole number)"))?;
    PrecopyConfig::check_max_rounds(n).map_err(|e| e.to_string())
}

fn parse_io_timeout(s: &str) -> Result<Nanos, String> {
    let t = Nanos::parse(s).map_err(|e| e.to_string())?;
    if t < MIN_IO_TIMEOUT {
        return Err(format!("must be at least 1ms (a send or receive needs time to make progress), got {s}"));
    }
    Ok(t)
}

fn parse_non_convergence(s: &str) -> Result<NonConvergence, String> {
    match s {
        "abort" => Ok(NonConvergence::Abort),
        "force-stop" => Ok(NonConvergence::ForceStop),
        "post-copy" => Ok(NonConvergence::PostCopy),
        other => Err(format!("{other:?}: expected abort, force-stop or post-copy")),
    }
}

fn non_convergence_name(n: NonConvergence) -> &'static str {
    match n {
        NonConvergence::Abort => "abort",
        NonConvergence::ForceStop => "force-stop",
        NonConvergence::PostCopy => "post-copy",
    }
}

impl GuestArgs {
    /// The source configuration.
    pub fn source_config(&self) -> anyhow::Result<SourceConfig> {
        let mut workload = GuestWorkload::from_archetype(&self.workload, self.dirty_rate, self.seed)?;
        workload.ram_split = self.ram_split.0;
        if self.cpu_bound {
            workload.pace = crate::guest::DirtyPace::CpuBound;
        }
        workload.layout(self.mem.0)?;
        Ok(SourceConfig {
            memory_bytes: self.mem.0,
            workload,
            strategy: self.pipeline,
            precopy: PrecopyConfig {
                downtime_limit: self.downtime_limit,
                max_rounds: self.max_rounds,
                on_non_convergence: self.on_non_convergence,
            },
            warmup: Duration::from_nanos(self.warmup.0),
            io_timeout: Duration::from_nanos(self.io_timeout.0),
            watch_after_abort: Duration::from_nanos(self.watch.0),
            integrity_check: !self.no_integrity_check,
            arbiter: false,
            tls: None,
            auto_converge: self.auto_converge,
            cpu: self.cpu.guest_cpu(),
            site: Default::default(),
            mechanism: self.mechanism,
            multifd: self.multifd.plan(),
        })
    }

    pub(crate) fn to_cli(&self) -> Vec<String> {
        let mut v = vec![
            "--mem".into(),
            format!("{}", self.mem.0),
            "--workload".into(),
            self.workload.clone(),
            "--seed".into(),
            self.seed.to_string(),
            "--pipeline".into(),
            self.pipeline.to_string(),
            "--downtime-limit".into(),
            format!("{}ns", self.downtime_limit.0),
            "--max-rounds".into(),
            self.max_rounds.to_string(),
            "--on-non-convergence".into(),
            non_convergence_name(self.on_non_convergence).into(),
            "--warmup".into(),
            format!("{}ns", self.warmup.0),
            "--io-timeout".into(),
            format!("{}ns", self.io_timeout.0),
            "--watch".into(),
            format!("{}ns", self.watch.0),
            "--ram-split".into(),
            self.ram_split.0.to_string(),
        ];
        if let Some(r) = self.dirty_rate {
            v.extend(["--dirty-rate".into(), r.to_string()]);
        }
        if self.no_integrity_check {
            v.push("--no-integrity-check".into());
        }
        if self.cpu_bound {
            v.push("--cpu-bound".into());
        }
        if self.auto_converge {
            v.push("--auto-converge".into());
        }
        v.extend(self.cpu.to_cli());
        v.extend(["--mechanism".into(), self.mechanism.to_string()]);
        v.extend(self.multifd.to_cli());
        v
    }
}

/// `migrate`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    /// The guest and the migration.
    #[command(flatten)]
    pub guest: GuestArgs,
    /// Several guests migrating together, tenants, a warm destination site.
    #[command(flatten)]
    pub gang: crate::site::gang::GangArgs,
    /// Inject a fault: KIND@BYTES, KIND one of cut-link, kill-dest, corrupt
    /// (after BYTES have gone from source to destination), or dest-ram@PAGE
    /// (the destination flips a bit of that page before the integrity check).
    #[arg(long)]
    pub fault: Option<FaultSpec>,
    /// Run the two VMMs in two network namespaces joined by an emulated WAN
    /// link: RATE,DELAY, then optionally LOSS, jitter=T, queue=SIZE-or-T and
    /// mtu=N, e.g. 100Mbit/s,25ms,0.1% (needs root, TUN and netns; docs/wan.md).
    #[arg(long)]
    pub link: Option<LinkSpec>,
    /// Mutual TLS 1.3 between the VMMs with the certificates in DIR:
    /// ca.pem, source.pem, source.key, destination.pem, destination.key
    /// (`scripts/tls-keygen.sh DIR` makes them).
    #[arg(long, value_name = "DIR")]
    pub tls: Option<PathBuf>,
    /// The destination host's CPU model (emulated: its VMM offers exactly
    /// the model's features); a guest started with a feature it lacks is
    /// refused before any page moves. Default: what KVM supports here.
    #[arg(long = "dest-cpu-model", value_parser = super::cpu::parse_model, conflicts_with = "dest_cpu_features")]
    pub dest_cpu_model: Option<String>,
    /// The destination host's CPU as a feature list.
    #[arg(long = "dest-cpu-features", value_parser = super::cpu::parse_features)]
    pub dest_cpu_features: Option<std::collections::BTreeSet<String>>,
    /// Result folder: new, empty, or a previous validator result (replaced
    /// atomically); anything else is refused before the migration starts.
    #[arg(long, default_value = "results/validator-migrate")]
    pub out: PathBuf,
    /// Also replace a memfabric folder of another kind, or a validator result
    /// holding extra files; never a user's folder or file.
    #[arg(long)]
    pub force: bool,
}

/// Hidden `source` command: boot, migrate to `--connect`, write `--report`.
#[derive(Debug, Clone, clap::Args)]
pub struct SourceArgs {
    /// The guest and the migration.
    #[command(flatten)]
    pub guest: GuestArgs,
    /// Destination address.
    #[arg(long)]
    pub connect: SocketAddr,
    /// Report file (JSON).
    #[arg(long)]
    pub report: PathBuf,
    /// When the handover's end is unknown, read the orchestrator's verdict
    /// (`resume` or `discard`) from stdin.
    #[arg(long)]
    pub arbiter: bool,
    /// Mutual TLS to the destination.
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Hidden `dest` command: listen, receive one migration, write `--report`.
#[derive(Debug, Clone, clap::Args)]
pub struct DestArgs {
    /// Address to listen on (port 0: any); printed as `listening on ADDR`.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Report file (JSON).
    #[arg(long)]
    pub report: PathBuf,
    /// A receive that makes no progress for this long fails the migration.
    #[arg(long = "io-timeout", default_value = "10s", value_parser = parse_io_timeout)]
    pub io_timeout: Nanos,
    /// How long to watch the guest after resume.
    #[arg(long, default_value = "1s", value_parser = Nanos::parse)]
    pub watch: Nanos,
    /// Fault injection (tests): flip a byte of this guest page before the
    /// integrity check.
    #[arg(long, hide = true)]
    pub corrupt_page: Option<u64>,
    /// Guest memory to map and pre-fault before listening (as QEMU's
    /// `-incoming` destination is started with `-m`); the source must match.
    #[arg(long, value_parser = Bytes::parse)]
    pub mem: Option<Bytes>,
    /// With `--mem`: where RAM continues at 4 GiB.
    #[arg(long = "ram-split", default_value = "3GiB", value_parser = Bytes::parse, hide = true)]
    pub ram_split: Bytes,
    /// Mutual TLS with the source.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// The CPU this destination's host offers.
    #[command(flatten)]
    pub cpu: super::cpu::CpuArgs,
}

/// Runs the hidden `source` command.
pub fn source_main(args: &SourceArgs) -> anyhow::Result<()> {
    let tls = args.tls.files().map(|f| tls::client_config(&f)).transpose()?;
    let cfg = SourceConfig { arbiter: args.arbiter, tls, ..args.guest.source_config()? };
    let timeout = cfg.io_timeout;
    let report = run_source(&cfg, || TcpStream::connect_timeout(&args.connect, timeout))?;
    write_json(&args.report, &report).with_context(|| format!("writing {}", args.report.display()))?;
    Ok(())
}

/// Runs the hidden `dest` command.
pub fn dest_main(args: &DestArgs) -> anyhow::Result<()> {
    let tls = args.tls.files().map(|f| tls::server_config(&f)).transpose()?;
    let prepared = match args.mem {
        Some(mem) => Some((
            crate::kvm::Vm::with_split(mem.0, args.ram_split.0, true).context("preparing guest RAM")?,
            args.ram_split.0,
        )),
        None => None,
    };
    let listener = TcpListener::bind(args.listen).with_context(|| format!("listening on {}", args.listen))?;
    println!("listening on {}", listener.local_addr()?);
    let cfg = DestConfig {
        io_timeout: Duration::from_nanos(args.io_timeout.0),
        watch_after_resume: Duration::from_nanos(args.watch.0),
        max_memory_bytes: crate::guest::abi::GUEST_RAM_LIMIT,
        corrupt_page: args.corrupt_page,
        announce_resume: true,
        tls,
        cpu: args.cpu.guest_cpu(),
        site: Default::default(),
    };
    let report = run_dest(&cfg, &listener, prepared);
    write_json(&args.report, &report).with_context(|| format!("writing {}", args.report.display()))?;
    Ok(())
}

/// Kills a child process when dropped (so no VMM outlives `migrate`).
pub(crate) struct Reaped(pub(crate) Option<Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Everything `migrate` learned.
#[derive(Debug, Clone)]
pub struct MigrateOutcome {
    /// Source report.
    pub source: SourceReport,
    /// Destination report (None if it died without one).
    pub destination: Option<DestReport>,
    /// Whether integrity held: every chunk equal and the guest continued
    /// (None when not resumed or not checked).
    pub integrity_held: Option<bool>,
    /// Whether the switchover compared RAM hashes.
    pub integrity_checked: bool,
    /// Downtime: source pause to destination resume, ms.
    pub downtime_ms: Option<f64>,
    /// The fault injected.
    pub fault: Option<FaultSpec>,
    /// Whether it was triggered.
    pub fault_triggered: bool,
    /// The WAN link between the VMMs (None: loopback).
    pub link: Option<LinkSpec>,
    /// What the emulated link forwarded and dropped.
    pub link_stats: Option<LinkStats>,
    /// Whether the VMMs talked mutual TLS 1.3.
    pub tls: bool,
}

impl MigrateOutcome {
    /// The outcome of a migration from its two reports, before any fault,
    /// link or TLS is noted: whether integrity held and the downtime.
    pub fn of_reports(source: SourceReport, destination: Option<DestReport>, integrity_checked: bool) -> MigrateOutcome {
        let integrity_held = destination
            .as_ref()
            .filter(|d| d.outcome == "resumed" && integrity_checked)
            .map(|d| d.chunks_differing == 0 && d.guest_carried_on());
        let downtime_ms = match (source.pause_ns, destination.as_ref().and_then(|d| d.resume_ns)) {
            (Some(p), Some(r)) if r >= p => Some((r - p) as f64 / 1e6),
            _ => None,
        };
        MigrateOutcome {
            source,
            destination,
            integrity_held,
            integrity_checked,
            downtime_ms,
            fault: None,
            fault_triggered: false,
            link: None,
            link_stats: None,
            tls: false,
        }
    }

    /// The outcome as result tables, the manifest and stdout name it:
    /// `lost` (post-copy failed after the destination resumed the guest),
    /// `completed`, `failed` (the source finished but something after it did
    /// not hold, or a requested fault never fired), `not-converged`,
    /// `unknown`, `source-lost` (the source VMM was killed), `aborted`.
    pub fn outcome_name(&self) -> &'static str {
        match (self.source.outcome.as_str(), self.failure()) {
            // Post-copy failed after the destination resumed the guest
            // (either side saw it; a killed source reports nothing).
            (super::postcopy::LOST, _) => "lost",
            (_, _) if self.destination.as_ref().is_some_and(|d| d.outcome == super::postcopy::LOST) => "lost",
            ("completed", None) => "completed",
            ("completed", Some(_)) => "failed",
            ("not-converged", _) => "not-converged",
            ("unknown", _) => "unknown",
            ("source-lost", _) => "source-lost",
            ("cpu-incompatible", _) => "cpu-incompatible",
            _ => "aborted",
        }
    }

    /// Why the migration failed, if it did.
    pub fn failure(&self) -> Option<String> {
        if let (Some(f), false) = (self.fault, self.fault_triggered) {
            // A fault test whose fault never fired has tested nothing.
            let run = self.run_failure().map_or_else(|| "the migration completed".to_string(), |e| format!("the run: {e}"));
            return Some(format!("the fault {f} was never injected, so the test did not happen ({run})"));
        }
        self.run_failure()
    }

    /// Why the migration itself failed, if it did (faults aside).
    fn run_failure(&self) -> Option<String> {
        if self.source.outcome != "completed" {
            return Some(format!("{}: {}", self.source.outcome, self.source.error.clone().unwrap_or_default()));
        }
        match &self.destination {
            None => Some("the destination wrote no report".into()),
            Some(d) if d.outcome != "resumed" => Some(format!("destination {}: {}", d.outcome, d.error.clone().unwrap_or_default())),
            Some(d) if d.guest_failure.is_some() => Some(format!("the resumed guest failed: {}", d.guest_failure.clone().unwrap_or_default())),
            Some(_) if self.integrity_checked && self.integrity_held != Some(true) => Some("integrity did not hold".into()),
            Some(d) if !d.guest_carried_on() => Some("the resumed guest did not carry on correctly".into()),
            _ => None,
        }
    }
}

/// What a proxy fault kills: the source VMM (its pid, known once it runs)
/// for `kill-source`, else the destination VMM.
pub(crate) fn killer(source_pid: Arc<AtomicU32>, dest_pid: u32) -> super::fault::KillFn {
    Box::new(move |kind| {
        let pid = if kind == FaultKind::KillSource { source_pid.load(Ordering::SeqCst) } else { dest_pid };
        if pid != 0 {
            // SAFETY: kill(2) on the pid of a child of ours that we have not reaped.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    })
}

pub(crate) fn exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("locating this executable")
}

/// `migrate`'s arguments do not fit together or do not fit this machine:
/// refused before anything starts (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum MigrateInputError {
    /// The workload or the memory size is invalid for the guest.
    #[error(transparent)]
    Workload(#[from] crate::guest::WorkloadError),
    /// Source and destination together need more RAM than is available.
    #[error(
        "--mem {mem_mib} MiB: the source and the destination VMM each map the guest's RAM, {need_mib} MiB in all, \
         but this machine has {available_mib} MiB available (MemAvailable in /proc/meminfo)"
    )]
    MemoryExceedsMachine {
        /// The guest's RAM, MiB.
        mem_mib: u64,
        /// Both VMMs' RAM, MiB.
        need_mib: u64,
        /// What the machine has available, MiB.
        available_mib: u64,
    },
    /// `--fault dest-ram@PAGE` names a page the guest does not have.
    #[error("--fault dest-ram@{page}: the guest has pages 0 to {last} ({mem_mib} MiB); the fault would never fire")]
    FaultPageBeyondGuest {
        /// The page asked for.
        page: u64,
        /// The guest's last page.
        last: u64,
        /// The guest's RAM, MiB.
        mem_mib: u64,
    },
    /// The TLS files are missing or unusable.
    #[error("--tls: {0}")]
    Tls(#[from] tls::TlsError),
    /// The `encrypt` stage is the TLS channel in the validator.
    #[error("--pipeline {0}: the validator encrypts with its TLS channel; add --tls DIR (scripts/tls-keygen.sh DIR makes the certificates)")]
    EncryptWithoutTls(Strategy),
    /// A proxy fault cannot run across the emulated WAN.
    #[error("--fault and --link cannot be combined: the fault proxy runs on loopback (cut the emulated link with `wan` instead)")]
    FaultWithLink,
    /// Post-copy with an option it does not support.
    #[error(transparent)]
    PostCopy(#[from] super::postcopy::PostcopyInputError),
    /// `--streams` / `--cpu-threads` do not fit.
    #[error(transparent)]
    Multifd(#[from] super::multifd::MultifdInputError),
    /// A CPU asked for (the guest's or the destination's) cannot be had on
    /// this host.
    #[error("{flag}: {source}")]
    Cpu {
        /// `--cpu-model`/`--cpu-features` or `--dest-cpu-model`/`--dest-cpu-features`.
        flag: &'static str,
        /// Why.
        #[source]
        source: crate::kvm::cpuid::CpuError,
    },
}

/// `--streams` and `--cpu-threads` against each other, `--tls` and a gang
/// (called for a gang too, before it starts).
pub fn check_multifd_args(args: &MigrateArgs) -> Result<(), MigrateInputError> {
    Ok(super::multifd::check_args(&args.guest.multifd, args.gang.is_gang(), args.tls.is_some())?)
}

/// RAM this machine has available, bytes (`MemAvailable` of /proc/meminfo;
/// None where it cannot be read).
pub(crate) fn available_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Checks `migrate`'s arguments against each other and the machine.
pub fn check_migrate_args(args: &MigrateArgs) -> Result<(), MigrateInputError> {
    let mut workload = GuestWorkload::from_archetype(&args.guest.workload, args.guest.dirty_rate, args.guest.seed)?;
    workload.ram_split = args.guest.ram_split.0;
    workload.layout(args.guest.mem.0)?;
    let mem = args.guest.mem.0;
    if args.link.is_some() && args.fault.is_some() {
        return Err(MigrateInputError::FaultWithLink);
    }
    super::postcopy::check_args(args)?;
    check_multifd_args(args)?;
    if args.guest.pipeline.encrypt && args.tls.is_none() {
        return Err(MigrateInputError::EncryptWithoutTls(args.guest.pipeline));
    }
    if let Some(dir) = &args.tls {
        tls::client_config(&TlsFiles::in_dir(dir, "source"))?;
        tls::server_config(&TlsFiles::in_dir(dir, "destination"))?;
    }
    if let Some(FaultSpec { kind: FaultKind::DestRam, at: FaultAt::Page(page) }) = args.fault {
        let pages = mem / memfabric_migration::PAGE_SIZE_BYTES;
        if page >= pages {
            return Err(MigrateInputError::FaultPageBeyondGuest { page, last: pages - 1, mem_mib: mem >> 20 });
        }
    }
    // CPU models KVM cannot offer here (only checkable where KVM opens;
    // without it the source fails to boot and says so).
    if let Ok(supported) = kvm_ioctls::Kvm::new().and_then(|k| k.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)) {
        let dest = super::cpu::CpuArgs { cpu_model: args.dest_cpu_model.clone(), cpu_features: args.dest_cpu_features.clone() };
        for (flag, cpu) in [("--cpu-model/--cpu-features", args.guest.cpu.guest_cpu()), ("--dest-cpu-model/--dest-cpu-features", dest.guest_cpu())] {
            crate::kvm::cpuid::vm_cpu(&cpu, &supported).map_err(|source| MigrateInputError::Cpu { flag, source })?;
        }
    }
    if let Some(available) = available_memory_bytes() {
        if 2 * mem > available {
            return Err(MigrateInputError::MemoryExceedsMachine {
                mem_mib: mem >> 20,
                need_mib: (2 * mem) >> 20,
                available_mib: available >> 20,
            });
        }
    }
    Ok(())
}

/// The migration was interrupted (SIGINT/SIGTERM): nothing was written.
pub(crate) fn interrupted(link: bool) -> anyhow::Error {
    anyhow!("interrupted: both VMMs stopped{}; nothing written", if link { ", WAN link torn down" } else { "" })
}

/// Runs `migrate`: returns the outcome after writing the result folder.
pub fn migrate(args: &MigrateArgs) -> anyhow::Result<MigrateOutcome> {
    check_migrate_args(args)?; // before starting anything
    memfabric_formats::atomic_dir::check_target(&args.out, memfabric_formats::atomic_dir::DirKind::ValidatorResult, args.force)?;
    // With --tls the stream is encrypted: the strategy (in the reports, the
    // result tables and the scenario the simulator replays) says so.
    let mut guest = args.guest.clone();
    guest.pipeline.encrypt |= args.tls.is_some();
    let guest = &guest;
    crate::interrupt::install()?;
    crate::kvm::kvm_available().map_err(|e| anyhow!("{e}: the validator needs /dev/kvm"))?;
    let work = tempdir()?;
    let dest_report = work.0.join("destination.json");
    let source_report = work.0.join("source.json");
    // The link (if any) outlives both VMM processes: `Reaped` children are
    // declared after it and so are killed before it is torn down.
    let link = match &args.link {
        Some(spec) => Some(WanLink::up(spec, args.guest.seed).context("bringing up the emulated WAN link")?),
        None => None,
    };
    let command_on = |side: Side| -> anyhow::Result<Command> {
        Ok(match &link {
            Some(l) => l.command(side, exe()?),
            None => Command::new(exe()?),
        })
    };
    let listen = match &link {
        Some(l) => SocketAddr::new(l.address(Side::B).into(), 0),
        None => "127.0.0.1:0".parse().expect("loopback address"),
    };
    let mut dest = command_on(Side::B)?;
    dest.args(["dest", "--listen", &listen.to_string(), "--mem", &args.guest.mem.0.to_string()])
        .args(["--ram-split", &args.guest.ram_split.0.to_string(), "--report"])
        .arg(&dest_report)
        .args(["--io-timeout", &format!("{}ns", args.guest.io_timeout.0), "--watch", &format!("{}ns", args.guest.watch.0)])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(dir) = &args.tls {
        dest.args(TlsFiles::in_dir(dir, "destination").to_cli());
    }
    dest.args(super::cpu::CpuArgs { cpu_model: args.dest_cpu_model.clone(), cpu_features: args.dest_cpu_features.clone() }.to_cli());
    if let Some(FaultSpec { kind: FaultKind::DestRam, at: FaultAt::Page(page) }) = args.fault {
        dest.args(["--corrupt-page", &page.to_string()]);
    }
    let mut dest = Reaped(Some(dest.spawn().context("starting the destination VMM")?));
    let dest_stdout = dest.0.as_mut().and_then(|c| c.stdout.take()).ok_or_else(|| anyhow!("no destination stdout"))?;
    let mut line = String::new();
    let mut dest_stdout = BufReader::new(dest_stdout);
    dest_stdout.read_line(&mut line).context("reading the destination's address")?;
    let dest_addr: SocketAddr = match line.trim().strip_prefix("listening on ").and_then(|a| a.parse().ok()) {
        Some(a) => a,
        None => {
            let status = dest.0.as_mut().and_then(|c| c.wait().ok()).map(|s| s.to_string()).unwrap_or_default();
            if crate::interrupt::interrupted() {
                return Err(interrupted(link.is_some()));
            }
            bail!("the destination VMM did not start ({status}); see its messages above");
        }
    };

    let dest_pid = dest.0.as_ref().map(|c| c.id()).unwrap_or(0);
    // Known once the source runs (before it connects to the proxy).
    let source_pid = Arc::new(AtomicU32::new(0));
    let proxy = match args.fault {
        Some(spec) if spec.kind != FaultKind::DestRam => {
            let source_pid = source_pid.clone();
            Some(FaultProxy::start(dest_addr, spec, killer(source_pid, dest_pid))?)
        }
        _ => None,
    };
    let connect = proxy.as_ref().map(|p| p.addr).unwrap_or(dest_addr);

    let mut source = command_on(Side::A)?;
    source
        .arg("source")
        .args(guest.to_cli())
        .args(["--arbiter", "--connect", &connect.to_string(), "--report"])
        .arg(&source_report)
        .stdin(Stdio::piped());
    if let Some(dir) = &args.tls {
        source.args(TlsFiles::in_dir(dir, "source").to_cli());
    }
    let mut source = Reaped(Some(source.spawn().context("starting the source VMM")?));
    source_pid.store(source.0.as_ref().map(|c| c.id()).unwrap_or(0), Ordering::SeqCst);
    let source_stdin = source.0.as_mut().and_then(|c| c.stdin.take()).ok_or_else(|| anyhow!("no source stdin"))?;
    let mut arbiter = Arbiter::new(dest_stdout, source_stdin);
    // Ctrl-C reaches the VMMs too (same process group) and they stop; on
    // SIGTERM to this process alone, stop them. Either way `Reaped` and the
    // link's Drop clean up on the way out.
    let status = loop {
        if crate::interrupt::interrupted() {
            return Err(interrupted(link.is_some()));
        }
        arbiter.poll(dest.0.as_mut().expect("child")).context("waiting for the destination VMM")?;
        if let Some(status) = source.0.as_mut().expect("child").try_wait().context("waiting for the source VMM")? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    source.0 = None;
    if crate::interrupt::interrupted() {
        return Err(interrupted(link.is_some()));
    }
    let source_killed = args.fault.is_some_and(|f| f.kind == FaultKind::KillSource) && proxy.as_ref().is_some_and(|p| p.triggered());
    let source: SourceReport = if status.success() {
        read_json(&source_report)?
    } else if source_killed {
        SourceReport::lost(
            args.guest.mem.0,
            guest.pipeline.to_string(),
            format!("the source VMM was killed by the injected fault ({status}): its guest is gone unless the destination resumed it"),
        )
    } else {
        bail!("the source VMM failed ({status}); see its messages above");
    };
    // The destination watches the resumed guest, then reports and exits.
    // Ctrl-C meanwhile (it reaches the destination too) means the run is
    // incomplete: nothing is written, as for an earlier interrupt.
    let dest_child = dest.0.as_mut().expect("child");
    loop {
        if crate::interrupt::interrupted() {
            return Err(interrupted(link.is_some()));
        }
        if dest_child.try_wait().context("waiting for the destination VMM")?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if crate::interrupt::interrupted() {
        return Err(interrupted(link.is_some()));
    }
    let destination: Option<DestReport> = read_json(&dest_report).ok();
    let fault_triggered = proxy.as_ref().is_some_and(|p| p.triggered())
        || (matches!(args.fault, Some(FaultSpec { kind: FaultKind::DestRam, .. }))
            && destination.as_ref().is_some_and(|d| d.fault_injected));
    drop(proxy);
    drop(dest);
    let link_stats = match link {
        Some(l) => Some(l.down().context("tearing down the WAN link")?),
        None => None,
    };

    let outcome = MigrateOutcome {
        fault: args.fault,
        fault_triggered,
        link: args.link.clone(),
        link_stats,
        tls: args.tls.is_some(),
        ..MigrateOutcome::of_reports(source, destination, !args.guest.no_integrity_check)
    };
    results::write_migration(&args.out, args.force, guest, &outcome)?;
    Ok(outcome)
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// A temporary directory removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn tempdir() -> anyhow::Result<TempDir> {
    let dir = std::env::temp_dir().join(format!("memfabric-validator-{}-{}", std::process::id(), crate::kvm::monotonic_ns()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(TempDir(dir))
}
