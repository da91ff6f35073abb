//! The result folder of a gang migration: the same `migrations` and
//! `rounds` tables as one migration (one row per guest, operation
//! `validator-gang`), a manifest with each guest's outcome and integrity and
//! the gang's summary, every process report, and the scenario the simulator
//! replays (the guests as same-image VMs of their tenants at the source
//! site, the warm guests at the destination site, and one evacuation moving
//! the guests together: one operation, so the simulator treats them as a
//! gang).

use std::path::Path;

use memfabric_formats::tables::{migrations_frame, rounds_frame, write_parquet};
use memfabric_migration::strategy::DedupScope;
use serde::Serialize;

use super::gang::GangOutcome;
use super::{DestSiteStats, SourceSiteStats};
use crate::migrate::orchestrate::GuestArgs;
use crate::migrate::write_json;
use crate::results::{self, Fleet, FleetVm, Parameters, VERSION};

/// The operation name of a gang's rows.
pub const OPERATION: &str = "validator-gang";

/// One guest in the gang manifest.
#[derive(Debug, Clone, Serialize)]
pub struct GuestSummary {
    /// Name.
    pub guest: String,
    /// Tenant.
    pub tenant: String,
    /// Seed of its own pages.
    pub seed: u64,
    /// Outcome (as in `migrations.outcome`).
    pub outcome: String,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Every chunk equal at switchover and the guest carried on.
    pub integrity_held: Option<bool>,
    /// Chunks compared / differing.
    pub chunks_compared: u64,
    /// Chunks that differed.
    pub chunks_differing: u64,
    /// Frame bytes source → destination, plus the site summary (as the
    /// simulator's `bytes_on_wire` includes `bytes_index_sync`).
    pub bytes_on_wire: u64,
    /// Frame bytes destination → source (summary, replies, missing lists).
    pub bytes_from_destination: u64,
    /// Start to end, s.
    pub total_time_s: f64,
    /// Source pause to destination resume, ms.
    pub downtime_ms: Option<f64>,
    /// Pages sent as references.
    pub pages_dedup: u64,
    /// Source-side site counters.
    pub source_site: SourceSiteStats,
    /// Destination-side site counters.
    pub dest_site: DestSiteStats,
    /// The source guest after a failed migration: writes before/after the watch.
    pub source_guest_after_abort: Option<(u64, u64)>,
}

/// The gang as a whole.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GangTotals {
    /// Guests that completed.
    pub completed: u32,
    /// Guests in the gang.
    pub guests: u32,
    /// Sum of the guests' frame bytes source → destination.
    pub bytes_on_wire: u64,
    /// Sum destination → source.
    pub bytes_from_destination: u64,
    /// First start to last end, s.
    pub makespan_s: f64,
    /// Longest downtime, ms.
    pub downtime_ms_max: f64,
}

/// `manifest.json` of a gang.
#[derive(Debug, Clone, Serialize)]
pub struct GangManifest {
    /// Always `memfabric-validator`.
    pub tool: &'static str,
    /// Version.
    pub version: &'static str,
    /// Base seed (guest i: seed + i).
    pub seed: u64,
    /// Hash of `parameters` and the plan.
    pub scenario_hash: String,
    /// The case (of one guest; every guest has the same).
    pub parameters: Parameters,
    /// The gang's plan: guests, warm guests, site index, image seed.
    pub plan: super::gang::Plan,
    /// `completed` if every guest completed, else `failed`.
    pub outcome: String,
    /// Per guest.
    pub guests: Vec<GuestSummary>,
    /// The gang.
    pub gang: GangTotals,
    /// The fault injected.
    pub fault: Option<String>,
    /// Whether it happened.
    pub fault_triggered: bool,
    /// What the emulated WAN link forwarded and dropped (None on loopback).
    pub link_stats: Option<crate::wan::LinkStats>,
    /// Files in the folder.
    pub files: Vec<String>,
}

/// The image name of a gang in the simulator's scenario.
fn image_name(seed: u64) -> String {
    format!("validator-image-{seed:016x}")
}

impl GangOutcome {
    /// Per-guest summaries, in plan order.
    pub fn summaries(&self) -> Vec<GuestSummary> {
        self.guests
            .iter()
            .zip(&self.plan.guests)
            .zip(self.source_site.iter().zip(&self.dest_site))
            .map(|((o, g), (s, d))| GuestSummary {
                guest: g.name.clone(),
                tenant: g.tenant.clone(),
                seed: g.seed,
                outcome: o.outcome_name().into(),
                error: o.failure(),
                integrity_held: o.integrity_held,
                chunks_compared: o.destination.as_ref().map_or(0, |d| d.chunks_compared),
                chunks_differing: o.destination.as_ref().map_or(0, |d| d.chunks_differing),
                bytes_on_wire: o.source.bytes_on_wire + s.summary_bytes,
                bytes_from_destination: o.source.bytes_from_destination,
                total_time_s: o.source.end_ns.saturating_sub(o.source.start_ns) as f64 * 1e-9,
                downtime_ms: o.downtime_ms,
                pages_dedup: o.source.stages.pages_dedup,
                source_site: *s,
                dest_site: d.clone(),
                source_guest_after_abort: o.source.guest_after_abort.as_ref().map(|w| (w.writes_before, w.writes_after)),
            })
            .collect()
    }

    /// The gang's totals.
    pub fn totals(&self) -> GangTotals {
        GangTotals {
            completed: self.guests.iter().filter(|o| o.outcome_name() == "completed").count() as u32,
            guests: self.guests.len() as u32,
            bytes_on_wire: self.guests.iter().zip(&self.source_site).map(|(o, s)| o.source.bytes_on_wire + s.summary_bytes).sum(),
            bytes_from_destination: self.guests.iter().map(|o| o.source.bytes_from_destination).sum(),
            makespan_s: self.makespan_s,
            downtime_ms_max: self.guests.iter().filter_map(|o| o.downtime_ms).fold(0.0, f64::max),
        }
    }

    /// Whether every guest completed with integrity.
    pub fn all_completed(&self) -> bool {
        self.guests.iter().all(|o| o.outcome_name() == "completed")
    }
}

/// The simulator's scenario of the gang.
pub fn gang_scenario(p: &Parameters, guest: &GuestArgs, hash: &str, o: &GangOutcome) -> String {
    let image = image_name(o.plan.image_seed);
    let vm = |g: &super::gang::PlannedGuest, host, device_state_bytes| FleetVm {
        name: g.name.clone(),
        host,
        image: Some(image.clone()),
        tenant: Some(g.tenant.clone()),
        device_state_bytes,
    };
    // Each guest's device state is what its migration sent besides pages
    // (as for one guest); the warm guests never move.
    let mut vms: Vec<FleetVm> = o.plan.guests.iter().zip(&o.guests).map(|(g, m)| vm(g, "source-h", m.source.bytes_control)).collect();
    vms.extend(o.plan.warm.iter().map(|g| vm(g, "destination-h", 0)));
    let defaults_extra = if guest.pipeline.dedup == Some(DedupScope::Site) {
        format!("site_index = \"{}\"\n", o.plan.site_index.name())
    } else {
        String::new()
    };
    let fleet = Fleet {
        description: format!(
            "Validator gang: {} x {} MiB {} guests of one image ({} warm at the destination), {}, link {}",
            o.plan.guests.len(),
            p.memory_bytes >> 20,
            p.workload_archetype,
            o.plan.warm.len(),
            p.strategy,
            p.link
        ),
        defaults_extra,
        vms,
        operations: "[[evacuations]]\nname = \"gang\"\nfrom = \"source\"\nto = \"destination\"\nat = \"0s\"\n".into(),
    };
    results::scenario_toml_fleet(p, guest, hash, &fleet)
}

/// Writes the gang's result folder (replacing a previous validator result
/// atomically, as [`results::write_migration`]).
pub fn write_gang(out: &Path, force: bool, guest: &GuestArgs, o: &GangOutcome) -> anyhow::Result<()> {
    let first = o.guests.first().ok_or_else(|| anyhow::anyhow!("a gang without guests"))?;
    let mut parameters = results::parameters(guest, first)?;
    if first.link.is_none() {
        // On loopback the link the simulator replays is what the gang moved
        // together in round 0 (one guest's rate is only its share).
        let round0: Vec<_> = o.guests.iter().filter_map(|g| g.source.rounds.first()).collect();
        let (t0, t1) = (round0.iter().map(|r| r.start_ns).min(), round0.iter().map(|r| r.end_ns).max());
        if let (Some(t0), Some(t1)) = (t0, t1) {
            let bytes: u64 = round0.iter().map(|r| r.bytes_on_wire).sum();
            parameters.link_rate_bytes_per_s = bytes as f64 / ((t1.saturating_sub(t0)).max(1) as f64 * 1e-9);
        }
    }
    let scenario_hash = results::scenario_hash(&(&parameters, &o.plan))?;
    let start = o.guests.iter().map(|g| g.source.start_ns).filter(|&s| s > 0).min().unwrap_or(0);
    let names: Vec<&str> = o.plan.guests.iter().map(|g| g.name.as_str()).collect();
    let rows: Vec<_> = o
        .guests
        .iter()
        .zip(&names)
        .zip(&o.source_site)
        .enumerate()
        .map(|(i, ((g, n), site))| {
            let mut row = results::migration_row(g, i as u32, OPERATION, n, start);
            // As the simulator counts them: the summary is the index sync
            // (destination → source, part of bytes_on_wire); queries and
            // the pages sent for missing references are the dedup stage's.
            row.bytes_index_sync = site.summary_bytes;
            row.bytes_on_wire += site.summary_bytes;
            row.bytes_dedup += site.query_bytes + site.fallback_bytes;
            row
        })
        .collect();
    let rounds: Vec<_> = o.guests.iter().zip(&names).enumerate().flat_map(|(i, (g, n))| results::round_rows(g, i as u32, n, start)).collect();
    let mut files = vec!["migrations.parquet".to_string(), "rounds.parquet".into(), "scenario.toml".into()];
    for n in &names {
        files.push(format!("source-{n}.json"));
        files.push(format!("destination-{n}.json"));
    }
    let scenario = gang_scenario(&parameters, guest, &scenario_hash, o);
    let manifest = GangManifest {
        tool: "memfabric-validator",
        version: VERSION,
        seed: guest.seed,
        scenario_hash: scenario_hash.clone(),
        parameters,
        plan: o.plan.clone(),
        outcome: if o.all_completed() { "completed" } else { "failed" }.into(),
        guests: o.summaries(),
        gang: o.totals(),
        fault: first.fault.map(|f| f.to_string()),
        fault_triggered: first.fault_triggered,
        link_stats: first.link_stats,
        files: files.clone(),
    };
    let provenance = vec![
        ("memfabric.tool".to_string(), "memfabric-validator".to_string()),
        ("memfabric.version".to_string(), VERSION.to_string()),
        ("memfabric.seed".to_string(), guest.seed.to_string()),
        ("memfabric.scenario_hash".to_string(), scenario_hash),
    ];
    memfabric_formats::atomic_dir::replace_dir(out, memfabric_formats::atomic_dir::DirKind::ValidatorResult, force, |dir| -> anyhow::Result<()> {
        write_parquet(&mut migrations_frame(&[(OPERATION, &rows)]), &dir.join("migrations.parquet"), &provenance)?;
        write_parquet(&mut rounds_frame(&[(OPERATION, &rounds)]), &dir.join("rounds.parquet"), &provenance)?;
        write_json(&dir.join("manifest.json"), &manifest)?;
        for (g, n) in o.guests.iter().zip(&names) {
            write_json(&dir.join(format!("source-{n}.json")), &g.source)?;
            write_json(&dir.join(format!("destination-{n}.json")), &g.destination)?;
        }
        std::fs::write(dir.join("scenario.toml"), &scenario)?;
        Ok(())
    })
}

/// The gang's table on stdout: one row per guest and the totals.
pub fn print_gang(o: &GangOutcome) {
    println!("| guest | tenant | outcome | integrity | bytes on wire | from destination | ref pages | missing refs | total s | downtime ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for s in o.summaries() {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.3} | {} |",
            s.guest,
            s.tenant,
            s.outcome,
            s.integrity_held.map_or("-".to_string(), |h| h.to_string()),
            s.bytes_on_wire,
            s.bytes_from_destination,
            s.pages_dedup,
            s.source_site.refs_missing,
            s.total_time_s,
            s.downtime_ms.map_or("-".into(), |d| format!("{d:.1}"))
        );
    }
    let t = o.totals();
    println!();
    println!(
        "gang: {} of {} completed   bytes on wire {} (+{} from the destination)   makespan {:.3} s   longest downtime {:.1} ms",
        t.completed, t.guests, t.bytes_on_wire, t.bytes_from_destination, t.makespan_s, t.downtime_ms_max
    );
}
