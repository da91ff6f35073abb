//! The validator's result folder, in the simulator's schema: the same
//! `migrations` and `rounds` Parquet tables (docs/results.md), a manifest
//! with the parameters the simulator needs to replay the case, and the two
//! processes' raw reports.
//!
//! Column semantics that differ from the simulator's: `bytes_on_wire` counts
//! the migration stream's frame bytes (page records with their 13-byte
//! headers, batch and frame headers and checksums, control frames and the
//! vCPU state), not TCP/IP headers; per-stage bytes are record header +
//! payload; `downtime_ms` is the real pause, from the instant the source
//! vCPU stopped to the instant the destination vCPU entered KVM_RUN
//! (CLOCK_MONOTONIC, shared by both processes), which includes combining
//! the running page hashes on both sides for the integrity check
//! (`source_verify_ms`, `dest_verify_ms` in the manifest).

use std::path::Path;

use memfabric_formats::rows::{MigrationRow, RoundRow};
use memfabric_migration::record::{Mechanism, Outcome, RoundPhase};
use memfabric_formats::tables::{migrations_frame, rounds_frame, write_parquet};
use memfabric_formats::trace::WorkloadParams;
use serde::Serialize;

use crate::guest::GuestWorkload;
use crate::migrate::orchestrate::{GuestArgs, MigrateOutcome};
use crate::migrate::write_json;

/// Validator version (the workspace version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `manifest.json` of a validator migration.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// Always `memfabric-validator`.
    pub tool: &'static str,
    /// Version.
    pub version: &'static str,
    /// Seed of the guest's content and dirtying.
    pub seed: u64,
    /// xxh3-128 of the parameters' JSON (this manifest's `parameters`).
    pub scenario_hash: String,
    /// The case, as the simulator needs it to replay it.
    pub parameters: Parameters,
    /// Outcome (as in `migrations.outcome`).
    pub outcome: Outcome,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Whether every chunk of guest RAM hashed equal at switchover and the
    /// guest carried on at the destination.
    pub integrity_held: Option<bool>,
    /// Whether the switchover compared RAM hashes (`--no-integrity-check` turns it off).
    pub integrity_checked: bool,
    /// Integrity chunks compared / differing.
    pub chunks_compared: u64,
    /// Chunks that differed.
    pub chunks_differing: u64,
    /// Hashing source RAM at the pause, ms (inside the downtime).
    pub source_verify_ms: Option<f64>,
    /// Hashing destination RAM and comparing, ms (inside the downtime).
    pub dest_verify_ms: Option<f64>,
    /// Mapping and pre-faulting destination RAM, ms.
    pub dest_prefault_ms: Option<f64>,
    /// Guest writes at the pause and after the watch at the destination.
    pub guest_writes_at_pause: Option<u64>,
    /// Guest writes when the destination's watch ended.
    pub guest_writes_after_resume: Option<u64>,
    /// Source guest after a failed migration: writes before/after the watch.
    pub source_guest_after_abort: Option<(u64, u64)>,
    /// The fault injected.
    pub fault: Option<String>,
    /// Whether it happened.
    pub fault_triggered: bool,
    /// What the emulated WAN link forwarded and dropped (None on loopback).
    pub link_stats: Option<crate::wan::LinkStats>,
    /// Whether the VMMs talked mutual TLS 1.3 (`--tls`); `bytes_on_wire`
    /// counts frame bytes, not TLS records.
    pub tls: bool,
    /// What post-copy did at the destination (post-copy and hybrid only):
    /// pages placed, demand faults and their latency, the guest's writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postcopy: Option<crate::migrate::postcopy::DestPostcopy>,
    /// Files in the folder.
    pub files: Vec<String>,
}

/// The case's parameters.
#[derive(Debug, Clone, Serialize)]
pub struct Parameters {
    /// Guest RAM, bytes.
    pub memory_bytes: u64,
    /// Archetype the workload came from.
    pub workload_archetype: String,
    /// The workload, as the simulator's parameters.
    pub workload: WorkloadParams,
    /// Pipeline strategy.
    pub strategy: String,
    /// Stop rule: downtime limit, ms.
    pub downtime_limit_ms: f64,
    /// Stop rule: max rounds.
    pub max_rounds: u32,
    /// Stop rule: action on non-convergence.
    pub on_non_convergence: String,
    /// Guest run time between fill and migration, s.
    pub warmup_s: f64,
    /// The link between the VMMs: `loopback` or the WAN spec.
    pub link: String,
    /// Link rate the simulator replays, bytes/s: the WAN link's, or on
    /// loopback the rate measured over round 0.
    pub link_rate_bytes_per_s: f64,
    /// One-way delay, ns (0 on loopback).
    pub link_delay_ns: u64,
    /// Packet loss probability (0 on loopback).
    pub link_loss: f64,
    /// TSC rate of the guest.
    pub tsc_hz: u64,
    /// Whether the guest was CPU-bound (`--cpu-bound`): then `workload`'s
    /// page write rate is the rate it reached in round 0, unthrottled.
    #[serde(default)]
    pub cpu_bound: bool,
    /// QEMU-style auto-converge (`--auto-converge`).
    #[serde(default)]
    pub auto_converge: bool,
    /// Pre-copy, post-copy or hybrid (left out for pre-copy, so that the
    /// parameters hash of pre-copy runs is as before).
    #[serde(skip_serializing_if = "is_pre_copy")]
    pub mechanism: Mechanism,
    /// TCP streams of the migration (`--streams`; absent when 1, so that
    /// the scenario hash of a one-stream run is as before).
    #[serde(skip_serializing_if = "is_one")]
    pub streams: u32,
    /// Reduction threads at each end (`--cpu-threads`; absent when 1).
    #[serde(skip_serializing_if = "is_one")]
    pub cpu_threads: u32,
}

fn is_pre_copy(m: &Mechanism) -> bool {
    *m == Mechanism::PreCopy
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// The guest's speed during post-copy: its page write rate from the resume
/// to the last pending page placed, over its rate in the warm-up before the
/// migration (None without post-copy, when post-copy was too short to
/// measure a rate, [`crate::migrate::postcopy::SPEED_MIN_DURATION_S`], or if
/// either rate is unknown).
pub fn postcopy_guest_speed(o: &MigrateOutcome) -> Option<f64> {
    let p = o.destination.as_ref()?.postcopy.as_ref()?;
    if p.duration_s < crate::migrate::postcopy::SPEED_MIN_DURATION_S {
        return None;
    }
    let during = p.guest_write_rate;
    let before = o.source.guest_write_rate_before.filter(|&r| r > 0.0)?;
    Some(during / before)
}

/// The page write rate a CPU-bound guest reached in the first pre-copy
/// round (dirty logging on, no throttle yet): what the simulator replays.
fn cpu_bound_write_rate(src: &crate::migrate::source::SourceReport) -> Option<f64> {
    let r = src.rounds.iter().find(|r| r.phase == "precopy" && r.complete && r.throttle_pct == 0)?;
    let secs = r.end_ns.saturating_sub(r.start_ns) as f64 * 1e-9;
    (secs > 0.0).then(|| r.guest_writes as f64 / secs)
}

/// How the migration ended, as written in `migrations.outcome`, the
/// manifest and `run.json`.
pub fn outcome(o: &MigrateOutcome) -> Outcome {
    let name = o.outcome_name();
    name.parse().unwrap_or_else(|e| panic!("the orchestrator's outcome is not a result-table outcome: {e}"))
}

fn s(ns: u64, start: u64) -> f64 {
    ns.saturating_sub(start) as f64 * 1e-9
}

/// The parameters of a validator migration (what the simulator needs to
/// replay it).
pub fn parameters(guest: &GuestArgs, o: &MigrateOutcome) -> anyhow::Result<Parameters> {
    let src = &o.source;
    let mut workload = GuestWorkload::from_archetype(&guest.workload, guest.dirty_rate, guest.seed)?;
    if guest.cpu_bound {
        workload.spec.page_write_rate = cpu_bound_write_rate(src).unwrap_or(0.0).round();
    }
    Ok(Parameters {
        memory_bytes: src.memory_bytes,
        workload_archetype: guest.workload.clone(),
        workload: WorkloadParams::from_spec(&workload.spec),
        strategy: src.strategy.clone(),
        downtime_limit_ms: guest.downtime_limit.0 as f64 / 1e6,
        max_rounds: guest.max_rounds,
        on_non_convergence: format!("{:?}", guest.on_non_convergence),
        warmup_s: guest.warmup.0 as f64 / 1e9,
        link: o.link.as_ref().map_or_else(|| "loopback".into(), |l| l.to_string()),
        link_rate_bytes_per_s: o.link.as_ref().map(|l| l.rate.0).unwrap_or_else(|| {
            // Round 0, or post-copy's push (its switch is a few KiB).
            let first = src.rounds.iter().find(|r| r.phase == "precopy" || r.phase == "postcopy-push");
            first.map(|r| r.bytes_on_wire as f64 / ((r.end_ns - r.start_ns).max(1) as f64 * 1e-9)).unwrap_or(0.0)
        }),
        link_delay_ns: o.link.as_ref().map_or(0, |l| l.delay.0),
        link_loss: o.link.as_ref().map_or(0.0, |l| l.loss.0),
        tsc_hz: src.tsc_hz,
        cpu_bound: guest.cpu_bound,
        auto_converge: src.auto_converge,
        mechanism: src.mechanism,
        streams: guest.multifd.plan().streams,
        cpu_threads: guest.multifd.plan().cpu_threads,
    })
}

/// The scenario hash of `parameters`: xxh3-128 of their JSON.
pub fn scenario_hash<T: Serialize>(parameters: &T) -> anyhow::Result<String> {
    Ok(format!("{:032x}", xxhash_rust::xxh3::xxh3_128(serde_json::to_string(parameters)?.as_bytes())))
}

/// The `migrations` row of one validator migration; times are relative to
/// `start_ns` (the operation's start).
pub fn migration_row(o: &MigrateOutcome, migration_id: u32, operation: &str, vm: &str, start_ns: u64) -> MigrationRow {
    let src = &o.source;
    let stages = &src.stages;
    let bytes_precopy: u64 = src.rounds.iter().filter(|r| r.phase == "precopy").map(|r| r.bytes_on_wire).sum();
    let bytes_stopcopy: u64 =
        src.rounds.iter().filter(|r| r.phase == "stopcopy" || r.phase == "postcopy-switch").map(|r| r.bytes_on_wire).sum();
    let bytes_postcopy: u64 = src.rounds.iter().filter(|r| r.phase == "postcopy-push").map(|r| r.bytes_on_wire).sum();
    let postcopy = o.destination.as_ref().and_then(|d| d.postcopy.as_ref());
    let total_s = s(src.end_ns, src.start_ns);
    let dest = o.destination.as_ref();
    MigrationRow {
        migration_id,
        operation: operation.into(),
        vm: vm.into(),
        mechanism: src.mechanism,
        strategy: src.strategy.clone(),
        cpu_threads: src.multifd.as_ref().map_or(1, |m| m.cpu_threads),
        src_site: "source".into(),
        dst_site: "destination".into(),
        src_host: "source-vmm".into(),
        dst_host: "destination-vmm".into(),
        memory_bytes: src.memory_bytes,
        streams: src.multifd.as_ref().map_or(1, |m| m.streams),
        rtt_ms: o.link.as_ref().map_or(0.0, |l| l.base_rtt().0 as f64 / 1e6),
        start_s: s(src.start_ns, start_ns),
        end_s: s(src.end_ns, start_ns),
        total_time_s: total_s,
        downtime_ms: o.downtime_ms.unwrap_or(0.0),
        rounds: src.precopy_rounds(),
        bytes_on_wire: src.bytes_on_wire,
        bytes_precopy,
        bytes_stopcopy,
        bytes_postcopy,
        bytes_index_sync: 0,
        outcome: outcome(o),
        converged: src.converged,
        throttle_pct_max: src.throttle_pct_max,
        postcopy_faults: postcopy.map_or(0, |p| p.faults),
        postcopy_fault_wait_ms: postcopy.map_or(0.0, |p| p.fault_wait_ms),
        postcopy_guest_speed: postcopy_guest_speed(o).unwrap_or(1.0),
        bottleneck: String::new(),
        mean_rate_bytes_per_s: if total_s > 0.0 { src.bytes_on_wire as f64 / total_s } else { 0.0 },
        bytes_unreduced: stages.pages() * (memfabric_migration::PAGE_SIZE_BYTES + 8),
        pages_zero: stages.pages_zero,
        pages_dedup: stages.pages_dedup,
        pages_delta: stages.pages_delta,
        pages_compressed: stages.pages_compressed,
        pages_raw: stages.pages_raw,
        bytes_zero: stages.bytes_zero,
        bytes_dedup: stages.bytes_dedup,
        bytes_delta: stages.bytes_delta,
        bytes_compressed: stages.bytes_compressed,
        bytes_raw: stages.bytes_raw,
        cpu_s_source: src.cpu_s_source,
        cpu_s_zero: stages.cpu_s_zero,
        cpu_s_dedup: stages.cpu_s_dedup,
        cpu_s_delta: stages.cpu_s_delta,
        cpu_s_compress: stages.cpu_s_compress,
        cpu_s_destination: dest.map(|d| d.cpu_s_destination).unwrap_or(0.0),
    }
}

/// The `rounds` rows of one validator migration, times relative to `start_ns`.
pub fn round_rows(o: &MigrateOutcome, migration_id: u32, vm: &str, start_ns: u64) -> Vec<RoundRow> {
    o.source
        .rounds
        .iter()
        .map(|r| {
            let secs = s(r.end_ns, r.start_ns);
            RoundRow {
                migration_id,
                vm: vm.into(),
                round: r.round,
                phase: r.phase.parse().unwrap_or(RoundPhase::PreCopy),
                start_s: s(r.start_ns, start_ns),
                end_s: s(r.end_ns, start_ns),
                pages: r.pages,
                bytes_on_wire: r.bytes_on_wire,
                rate_bytes_per_s: if secs > 0.0 { r.bytes_on_wire as f64 / secs } else { 0.0 },
                dirty_pages: r.dirty_pages,
                throttle_pct: r.throttle_pct,
                complete: r.complete,
            }
        })
        .collect()
}

/// Writes `out` for one migration, replacing a previous validator result
/// atomically; `force` as in [`memfabric_formats::atomic_dir::replace_dir`].
pub fn write_migration(out: &Path, force: bool, guest: &GuestArgs, o: &MigrateOutcome) -> anyhow::Result<()> {
    let src = &o.source;
    let parameters = parameters(guest, o)?;
    let scenario_hash = scenario_hash(&parameters)?;
    let outcome = outcome(o);
    let dest = o.destination.as_ref();
    let row = migration_row(o, 0, "validator", "guest", src.start_ns);
    let rounds = round_rows(o, 0, "guest", src.start_ns);
    let files = ["migrations.parquet", "rounds.parquet", "manifest.json", "source.json", "destination.json", "scenario.toml"];
    let scenario = scenario_toml(&parameters, guest, &scenario_hash, src.bytes_control);
    let manifest = Manifest {
        tool: "memfabric-validator",
        version: VERSION,
        seed: guest.seed,
        scenario_hash: scenario_hash.clone(),
        parameters,
        outcome,
        error: o.failure(),
        integrity_held: o.integrity_held,
        integrity_checked: o.integrity_checked,
        chunks_compared: dest.map(|d| d.chunks_compared).unwrap_or(0),
        chunks_differing: dest.map(|d| d.chunks_differing).unwrap_or(0),
        source_verify_ms: src.source_verify_ms,
        dest_verify_ms: dest.map(|d| d.verify_ms),
        dest_prefault_ms: src.dest_prefault_ms,
        guest_writes_at_pause: src.guest_at_pause.map(|p| p.writes),
        guest_writes_after_resume: dest.map(|d| d.guest_writes_after),
        source_guest_after_abort: src.guest_after_abort.as_ref().map(|w| (w.writes_before, w.writes_after)),
        fault: o.fault.map(|f| f.to_string()),
        fault_triggered: o.fault_triggered,
        link_stats: o.link_stats,
        tls: o.tls,
        postcopy: dest.and_then(|d| d.postcopy.clone()),
        files: files.iter().map(|f| f.to_string()).collect(),
    };
    let provenance = vec![
        ("memfabric.tool".to_string(), "memfabric-validator".to_string()),
        ("memfabric.version".to_string(), VERSION.to_string()),
        ("memfabric.seed".to_string(), guest.seed.to_string()),
        ("memfabric.scenario_hash".to_string(), scenario_hash),
    ];
    memfabric_formats::atomic_dir::replace_dir(
        out,
        memfabric_formats::atomic_dir::DirKind::ValidatorResult,
        force,
        |dir| -> anyhow::Result<()> {
            write_parquet(&mut migrations_frame(&[("validator", std::slice::from_ref(&row))]), &dir.join("migrations.parquet"), &provenance)?;
            write_parquet(&mut rounds_frame(&[("validator", &rounds)]), &dir.join("rounds.parquet"), &provenance)?;
            write_json(&dir.join("manifest.json"), &manifest)?;
            write_json(&dir.join("source.json"), &o.source)?;
            write_json(&dir.join("destination.json"), &o.destination)?;
            std::fs::write(dir.join("scenario.toml"), &scenario)?;
            Ok(())
        },
    )
}

/// The simulator's scenario for the same case: two sites joined by the
/// link, one VM with the guest's workload, one migration at time 0 with the
/// same stop rule, pipeline, streams and reduction threads.
/// `control_bytes`: what the run sent besides pages (vCPU state, switchover
/// and round messages: a few KiB), the VM's `device_state` — without it the
/// simulator would send its default 1 MiB at the switchover, which is 84 ms
/// of downtime at 100 Mbit/s.
pub fn scenario_toml(p: &Parameters, guest: &GuestArgs, scenario_hash: &str, control_bytes: u64) -> String {
    let fleet = Fleet {
        description: format!("Validator migration: {} MiB {} guest, {}, link {}", p.memory_bytes >> 20, p.workload_archetype, p.strategy, p.link),
        defaults_extra: if p.mechanism == Mechanism::PreCopy { String::new() } else { format!("mechanism = \"{}\"\n", p.mechanism) },
        vms: vec![FleetVm { name: "guest".into(), host: "source-h", image: None, tenant: None, device_state_bytes: control_bytes }],
        operations: "[[migrations]]\nvm = \"guest\"\nto = \"destination\"\nat = \"0s\"\n".into(),
    };
    scenario_toml_fleet(p, guest, scenario_hash, &fleet)
}

/// The VMs and operations of a scenario the validator writes.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// `[scenario] description`.
    pub description: String,
    /// Lines added to `[defaults]` (e.g. `site_index = "query"`).
    pub defaults_extra: String,
    /// The VMs, each with the guest's workload.
    pub vms: Vec<FleetVm>,
    /// The operations (`[[migrations]]` or `[[evacuations]]` tables).
    pub operations: String,
}

/// A VM of a [`Fleet`].
#[derive(Debug, Clone)]
pub struct FleetVm {
    /// Name.
    pub name: String,
    /// `source-h` or `destination-h`.
    pub host: &'static str,
    /// Its image (same-image VMs share the image's pages).
    pub image: Option<String>,
    /// Its tenant (dedup domain).
    pub tenant: Option<String>,
    /// Its `device_state`: what its migration sent besides pages.
    pub device_state_bytes: u64,
}

/// The scenario of `fleet` on the validator's two sites and link.
pub fn scenario_toml_fleet(p: &Parameters, guest: &GuestArgs, scenario_hash: &str, fleet: &Fleet) -> String {
    let w = &p.workload;
    let (hot_set, hot_share) = match w.popularity {
        memfabric_formats::trace::PopularityParams::HotCold { hot_set, hot_write_share } => (hot_set, hot_write_share),
        _ => (1.0, 1.0),
    };
    let popularity = if matches!(w.popularity, memfabric_formats::trace::PopularityParams::Uniform) {
        "popularity = \"uniform\"".to_string()
    } else {
        format!("popularity = \"hot-cold\"\nhot_set = \"{}%\"\nhot_write_share = \"{}%\"", hot_set * 100.0, hot_share * 100.0)
    };
    let vms: Vec<String> = fleet.vms.iter().map(|vm| vm_table(p, guest, vm, &popularity)).collect();
    let vms = vms.join("\n");
    format!(
        r#"# The simulator's description of a memfabric-validator run (validator {version},
# parameters hash {scenario_hash}): replay it with
#   memfabric run scenario.toml
# and compare results/<name>/migrations.parquet with this folder's.
[scenario]
name = "validator-{short}"
description = "{description}"
seed = {seed}

[defaults]
downtime_limit = "{downtime_ns}ns"
max_rounds = {max_rounds}
on_non_convergence = "{nc}"
auto_converge = {auto_converge}
strategy = "{strategy}"
cpu_threads = {cpu_threads}
streams = {streams}
{defaults_extra}
[[sites]]
name = "source"
hosts = [{{ name = "source-h", cores = 2, ram = "24GiB" }}]

[[sites]]
name = "destination"
hosts = [{{ name = "destination-h", cores = 2, ram = "24GiB" }}]

[[links]]
name = "validator-link"
between = ["source", "destination"]
bandwidth = "{rate}B/s"
latency = "{delay_ns}ns"
loss = "{loss_pct}%"

{vms}
{operations}"#,
        version = VERSION,
        short = &scenario_hash[..8],
        description = fleet.description,
        defaults_extra = fleet.defaults_extra,
        operations = fleet.operations,
        strategy = p.strategy,
        seed = guest.seed,
        downtime_ns = guest.downtime_limit.0,
        max_rounds = p.max_rounds,
        nc = match guest.on_non_convergence {
            memfabric_migration::precopy::NonConvergence::Abort => "abort",
            memfabric_migration::precopy::NonConvergence::PostCopy => "post-copy",
            memfabric_migration::precopy::NonConvergence::ForceStop => "force-stop",
        },
        auto_converge = p.auto_converge,
        cpu_threads = p.cpu_threads,
        streams = p.streams,
        rate = p.link_rate_bytes_per_s.round().max(1.0),
        delay_ns = p.link_delay_ns.max(1),
        loss_pct = p.link_loss * 100.0,
    )
}

/// The `[[vms]]` table of one VM of a validator scenario.
fn vm_table(p: &Parameters, guest: &GuestArgs, vm: &FleetVm, popularity: &str) -> String {
    let w = &p.workload;
    let mut extra = String::new();
    if let Some(image) = &vm.image {
        extra.push_str(&format!("image = \"{image}\"\n"));
    }
    if let Some(tenant) = &vm.tenant {
        extra.push_str(&format!("tenant = \"{tenant}\"\n"));
    }
    format!(
        r#"[[vms]]
name = "{name}"
host = "{host}"
archetype = "{arch}"
memory = "{memory}B"
vcpus = 1
device_state = "{device_state}B"
{extra}
[vms.workload]
page_write_rate = "{write_rate}pages/s"
working_set = "{ws}%"
{popularity}
redirty_change = "{change}%"
redirty_unchanged = "{unchanged}%"
"#,
        name = vm.name,
        host = vm.host,
        device_state = vm.device_state_bytes,
        arch = p.workload_archetype,
        memory = p.memory_bytes,
        write_rate = w.page_write_rate,
        // The guest's working set is a fraction of its workload pages; the
        // simulator's is a fraction of all pages: convert.
        ws = w.working_set
            * crate::guest::abi::Layout::with_split(p.memory_bytes, guest.ram_split.0)
                .map_or(1.0, |l| l.work_pages as f64 / (p.memory_bytes / memfabric_migration::PAGE_SIZE_BYTES) as f64)
            * 100.0,
        change = w.redirty_change * 100.0,
        unchanged = w.redirty_unchanged * 100.0,
    )
}

