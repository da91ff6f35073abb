//! Result rows: turns the run's migrations, rounds and link samples into the
//! rows of the result tables, and owns [`RunOutput`], what a run returns.

use super::*;

impl RunOutput {
    /// Whether a host failed during the run (the failure tables and the
    /// summary's failure line exist only then).
    pub fn had_host_failures(&self) -> bool {
        self.fabric_events.iter().any(|e| e.kind == FabricEventKind::HostDown)
    }
}

/// One row of the `links` table: the load of one link direction from `time_s`
/// until its next row.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRow {
    /// When the load took this value.
    pub time_s: f64,
    /// Link name.
    pub link: String,
    /// Site the traffic leaves.
    pub from_site: String,
    /// Site the traffic enters.
    pub to_site: String,
    /// Capacity of this direction.
    pub capacity_bytes_per_s: f64,
    /// Sum of flow rates.
    pub throughput_bytes_per_s: f64,
    /// Throughput / capacity (0 when the capacity is 0).
    pub utilisation: f64,
    /// Flows crossing it.
    pub flows: u32,
}

/// What a `fabric_events` row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FabricEventKind {
    /// A host failed.
    HostDown,
    /// A host was repaired.
    HostUp,
    /// A VM went down with its host.
    VmDown,
    /// A VM was lost (post-copy split by a link failure).
    VmLost,
    /// A VM began booting after a restart.
    VmRestart,
    /// A restarted VM runs again.
    VmBooted,
}

impl FabricEventKind {
    /// The name used in result tables.
    pub fn as_str(self) -> &'static str {
        match self {
            FabricEventKind::HostDown => "host-down",
            FabricEventKind::HostUp => "host-up",
            FabricEventKind::VmDown => "vm-down",
            FabricEventKind::VmLost => "vm-lost",
            FabricEventKind::VmRestart => "vm-restart",
            FabricEventKind::VmBooted => "vm-booted",
        }
    }
}

/// One row of the `fabric_events` table.
#[derive(Debug, Clone, PartialEq)]
pub struct FabricEventRow {
    /// When.
    pub time_s: f64,
    /// What.
    pub kind: FabricEventKind,
    /// The host ("" if none).
    pub host: String,
    /// The host's site ("" if none).
    pub site: String,
    /// The VM ("" if none).
    pub vm: String,
    /// Why: scheduled, site-failure, random, host-failure, link-failure, restart.
    pub cause: String,
}

/// One row of the `vm_availability` table: what failures cost one VM.
#[derive(Debug, Clone, PartialEq)]
pub struct VmAvailabilityRow {
    /// VM name.
    pub vm: String,
    /// Times it went down (host failure) or was lost.
    pub failures: u32,
    /// Restarts begun.
    pub restarts: u32,
    /// Time down or booting, up to the end of the run, seconds.
    pub downtime_s: f64,
    /// Run time whose memory state was lost in crashes, seconds.
    pub lost_work_s: f64,
    /// State at the end: running, migrating, down, restarting, lost.
    pub final_state: &'static str,
}

/// Everything a run produces.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutput {
    /// Which variant of the scenario this is: [`BASE_VARIANT`] for a plain run,
    /// the strategy's name in a strategy comparison.
    pub variant: String,
    /// Scenario name.
    pub scenario: String,
    /// Seed used.
    pub seed: u64,
    /// Hash of the scenario text.
    pub scenario_hash: String,
    /// Which CPU-cost profile the run used.
    pub cpu_profile: String,
    /// The calibration profile the run used, when read from a file.
    pub calibration: Option<crate::calibrate::profile::CalibrationSource>,
    /// The traces replayed (path as written, xxh3 of the files); empty
    /// without traced VMs.
    pub traces: Vec<String>,
    /// One row per migration.
    pub migrations: Vec<MigrationRow>,
    /// One row per round or stage.
    pub rounds: Vec<RoundRow>,
    /// Link loads over time.
    pub links: Vec<LinkRow>,
    /// Host failures and repairs, VMs down, restarted, lost.
    pub fabric_events: Vec<FabricEventRow>,
    /// Per VM that ever failed: failures, restarts, downtime, lost work
    /// (empty when nothing failed).
    pub vm_availability: Vec<VmAvailabilityRow>,
    /// Host power over time (empty without `[power]`).
    pub energy: Vec<crate::energy::EnergyRow>,
    /// Joules per host, by host id (empty without `[power]`).
    pub host_energy_j: Vec<f64>,
    /// Events processed.
    pub events_processed: u64,
    /// Network solves.
    pub flow_solves: u64,
    /// Simulated time at the end of the run.
    pub end_time: Nanos,
}


impl Sim<'_> {
    pub(super) fn finish_run(mut self, seed: u64) -> RunOutput {
        let horizon = self.sc.horizon;
        let cut_by_horizon = self.migs.iter().any(|m| m.outcome.is_none());
        // The run ends at its last event, or at the horizon if that cut a migration short.
        let end_time = if cut_by_horizon { horizon } else { self.now() };
        // Anything still running at the horizon is unfinished.
        let open: Vec<MigrationId> = self.migs.iter().filter(|m| m.outcome.is_none()).map(|m| m.id).collect();
        for m in open {
            self.cut_flow(m, horizon);
            let mig = &mut self.migs[m.index()];
            mig.outcome = Some(Outcome::Unfinished);
            mig.end = Some(horizon);
            mig.reduction = None;
        }
        // The rows below are the run's last and largest allocation: release
        // first what only the simulation needed (320 bytes of random stream
        // per VM, the dirty models, traced VMs' replay state).
        (self.vm_rng, self.dirty_models, self.traced) = (Vec::new(), Vec::new(), Vec::new());
        let fabric = &self.sc.fabric;
        let migrations = self
            .migs
            .iter()
            .map(|mig| {
                let vm = &self.sc.vms[mig.vm.index()];
                let end = mig.end.expect("all ended");
                let downtime = match (mig.paused_at, mig.resumed_at) {
                    (Some(p), Some(r)) => r.0 - p.0,
                    (Some(p), None) => end.0.saturating_sub(p.0),
                    _ => 0,
                };
                let bytes = mig.bytes_precopy + mig.bytes_stopcopy + mig.bytes_postcopy + mig.bytes_index_sync;
                let mut best = (mig.cap.1.as_str().to_string(), mig.bytes_cap_limited);
                for &(kind, b) in &self.own_cap_bytes[mig.id.index()] {
                    if b > best.1 {
                        best = (kind.as_str().to_string(), b);
                    }
                }
                for &(r, b) in &self.link_bytes[mig.id.index()] {
                    if b > best.1 {
                        best = (fabric.links[LinkDir::from_resource(r).link.index()].name.clone(), b);
                    }
                }
                let outcome = mig.outcome.expect("set");
                let moving_secs = (end.0 - mig.start.0) as f64 / 1e9;
                MigrationRow {
                    migration_id: mig.id.0,
                    operation: self.policies[mig.operation.index()].name.clone(),
                    vm: vm.name.clone(),
                    mechanism: mig.settings.mechanism,
                    strategy: mig.settings.strategy.to_string(),
                    cpu_threads: mig.settings.threads(),
                    src_site: fabric.sites[fabric.hosts[mig.src.index()].site.index()].name.clone(),
                    dst_site: fabric.sites[mig.dst_site.index()].name.clone(),
                    src_host: fabric.hosts[mig.src.index()].name.clone(),
                    dst_host: if matches!(outcome, Outcome::NoCapacity | Outcome::CpuIncompatible | Outcome::HostDown | Outcome::AdmissionControl) { String::new() } else { fabric.hosts[mig.dst.index()].name.clone() },
                    memory_bytes: vm.memory.0,
                    streams: mig.settings.streams,
                    rtt_ms: mig.route.rtt().as_millis_f64(),
                    start_s: mig.start.as_secs_f64(),
                    end_s: end.as_secs_f64(),
                    total_time_s: moving_secs,
                    downtime_ms: downtime as f64 / 1e6,
                    rounds: mig.rounds,
                    bytes_on_wire: bytes.round() as u64,
                    bytes_precopy: mig.bytes_precopy.round() as u64,
                    bytes_stopcopy: mig.bytes_stopcopy.round() as u64,
                    bytes_postcopy: mig.bytes_postcopy.round() as u64,
                    bytes_index_sync: mig.bytes_index_sync.round() as u64,
                    outcome,
                    converged: mig.converged,
                    throttle_pct_max: mig.throttle_pct_max,
                    postcopy_faults: mig.postcopy_faults,
                    postcopy_fault_wait_ms: mig.postcopy_fault_wait.as_millis_f64(),
                    postcopy_guest_speed: mig.postcopy_guest_speed,
                    bottleneck: if bytes > 0.0 { best.0 } else { String::new() },
                    mean_rate_bytes_per_s: if moving_secs > 0.0 { bytes / moving_secs } else { 0.0 },
                    bytes_unreduced: (mig.tally.pages * RAW_PAGE_WIRE_BYTES as f64 + mig.extra_bytes).round() as u64,
                    pages_zero: mig.tally.pages_zero.round() as u64,
                    pages_dedup: mig.tally.pages_dedup.round() as u64,
                    pages_delta: mig.tally.pages_delta.round() as u64,
                    pages_compressed: mig.tally.pages_compressed.round() as u64,
                    pages_raw: mig.tally.pages_raw.round() as u64,
                    bytes_zero: mig.tally.wire_zero.round() as u64,
                    bytes_dedup: mig.tally.wire_dedup.round() as u64,
                    bytes_delta: mig.tally.wire_delta.round() as u64,
                    bytes_compressed: mig.tally.wire_compressed.round() as u64,
                    bytes_raw: mig.tally.wire_raw.round() as u64,
                    cpu_s_source: mig.tally.source_ns() / 1e9,
                    cpu_s_zero: mig.tally.cpu_ns_zero / 1e9,
                    cpu_s_dedup: mig.tally.cpu_ns_dedup / 1e9,
                    cpu_s_delta: mig.tally.cpu_ns_delta / 1e9,
                    cpu_s_compress: mig.tally.cpu_ns_compress / 1e9,
                    cpu_s_destination: mig.tally.cpu_ns_destination / 1e9,
                }
            })
            .collect();
        let links = self
            .net
            .samples()
            .iter()
            .map(|s| {
                let (link, from_site, to_site) = fabric.link_dir_label(LinkDir::from_resource(s.resource));
                LinkRow {
                    time_s: s.time.as_secs_f64(),
                    link,
                    from_site,
                    to_site,
                    capacity_bytes_per_s: s.capacity,
                    throughput_bytes_per_s: s.throughput,
                    utilisation: if s.capacity > 0.0 { s.throughput / s.capacity } else { 0.0 },
                    flows: s.flows,
                }
            })
            .collect();
        let vm_availability = self
            .ledger
            .iter()
            .enumerate()
            .filter(|(_, l)| l.failures > 0 || l.restarts > 0)
            .map(|(i, l)| {
                let open = l.down_since.map_or(0, |s| end_time.0.saturating_sub(s.0));
                let final_state = match self.state.vm_state(VmId(i as u32)) {
                    VmState::Running => "running",
                    VmState::Migrating(_) => "migrating",
                    VmState::Down { .. } => "down",
                    VmState::Restarting { .. } => "restarting",
                    VmState::Lost => "lost",
                };
                VmAvailabilityRow {
                    vm: self.sc.vms[i].name.clone(),
                    failures: l.failures,
                    restarts: l.restarts,
                    downtime_s: (l.downtime_ns + open) as f64 / 1e9,
                    lost_work_s: l.lost_work_ns as f64 / 1e9,
                    final_state,
                }
            })
            .collect();
        let (energy, host_energy_j) = self.energy_rows(end_time);
        RunOutput {
            energy,
            host_energy_j,
            fabric_events: std::mem::take(&mut self.fabric_events),
            vm_availability,
            variant: BASE_VARIANT.to_string(),
            scenario: self.sc.name.clone(),
            seed,
            scenario_hash: self.sc.source_hash.clone(),
            cpu_profile: self.sc.cpu_profile_source.clone(),
            calibration: self.sc.calibration_source.clone(),
            traces: self.sc.trace_sources.clone(),
            migrations,
            rounds: self.rounds,
            links,
            events_processed: self.q.events_processed(),
            flow_solves: self.net.solves(),
            end_time,
        }
    }
}
