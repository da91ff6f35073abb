//! The simulator: runs a [`Scenario`] to completion and returns its tables.
//!
//! This module owns the event loop: the [`Event`]s, the [`Sim`] that holds
//! every part of a run, and the dispatch of each event to the part that
//! handles it. The parts, each in its own file:
//!
//! - `policies.rs`: the engine side of the policy seam (calling policies,
//!   applying their commands, restarts, power, cancellation);
//! - `driver.rs`: the migration driver (start, pre-copy rounds, stop-and-copy,
//!   post-copy, arrival, end, link failure);
//! - `flows.rs`: a migration's flows in the network and their byte accounting;
//! - `content.rs`: the destination content index and traced VMs' exact tallies;
//! - `rows.rs`: the result rows and [`RunOutput`].
//!
//! The fabric's mutable state is a [`FabricState`]; placement is a
//! [`crate::placement::Placer`]. The network is one actor whose next flow
//! completion is kept as a single queued wake-up (stale wake-ups carry an old
//! version and are ignored). After every event, the network re-solves only
//! what changed ([`Network::settle`]), and in debug builds the state's
//! invariants are checked ([`FabricState::check`]).

mod content;
mod driver;
mod energy;
mod failures;
mod flows;
mod policies;
mod rows;

pub use rows::{FabricEventKind, FabricEventRow, LinkRow, RunOutput, VmAvailabilityRow};

use crate::engine::{EventQueue, RngStreams, SimTime};
use crate::fabric::{HostId, LinkDir, LinkId, VmId};
use crate::mechanism::{CapKind, Migration, MigrationId, MigrationRow, RoundRow, Stage};
use crate::network::{tcp, FlowId, FlowTotals, Network};
use crate::ops;
use crate::policy::{FabricEvent, MigrationRequest, OperationId, Policy, Refusal};
use crate::reduction::exact::{DeltaCache, ExactReduction, Sent};
use crate::reduction::cache::XbzrleCacheModel;
use crate::reduction::{Tally, VmInputs, VmReduction};
use crate::scenario::{DedupDomains, SiteIndex};
use crate::scenario::{Destination, DirtySampling, Scenario};
use crate::state::{FabricState, VmState};
use crate::trace::replay::{PageContent, TraceRun, VmTrace};
use crate::workload::{pages_of, DirtyModel, Pending};
use content::{ContentIndex, Traced};
use driver::{Arrival, Fate};
use flows::{FlowSpec, PageKind};
use memfabric_migration::precopy::{
    precopy_decision, remaining_bytes_estimate, NonConvergence, PrecopyContext, PrecopyDecision, RoundWire,
};
use memfabric_migration::record::{Mechanism, Outcome, RoundPhase};
use memfabric_migration::state::MigrationPhase;
use memfabric_migration::units::{BytesPerSecond, Nanos};
use memfabric_migration::{PAGE_SIZE_BYTES, RAW_PAGE_WIRE_BYTES};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// What the event queue holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Event {
    /// A policy's start time.
    PolicyStart(OperationId),
    /// A timer a policy set.
    Timer(OperationId, u64),
    /// A migration's connection is set up.
    Begin(MigrationId),
    /// The network's next flow completion (with its version).
    NetworkWake(u64),
    /// A migration's last bytes (or its post-copy switch) arrived.
    Arrived(MigrationId, Arrival),
    /// A scheduled link capacity change.
    LinkCapacity(LinkId, f64),
    /// A link fails.
    LinkDown(LinkId),
    /// A link is repaired.
    LinkUp(LinkId),
    /// A restarted VM finished booting.
    Booted(VmId),
    /// A host fails.
    HostFail(HostId, crate::failure::FailureCause),
    /// A host is repaired.
    HostRepair(HostId, crate::failure::FailureCause),
    /// A host's power transition ends in this state.
    PowerDone(HostId, crate::state::PowerState),
}

/// A policy of the run and its name in results.
struct PolicySlot {
    name: String,
    policy: Box<dyn Policy>,
}

/// Everything one run holds.
struct Sim<'a> {
    sc: &'a Scenario,
    q: EventQueue<Event>,
    net: Network,
    dirty_models: Vec<DirtyModel>,
    vm_pages: Vec<u64>,
    vm_rng: Vec<ChaCha8Rng>,
    /// VM states, hosts, host usage, host and link state.
    state: FabricState,
    /// The policies: the scenario's operations, then built-in ones.
    policies: Vec<PolicySlot>,
    /// Request handles issued so far.
    next_request: u64,
    migs: Vec<Migration>,
    /// Migrations ended so far (any outcome), for [`crate::progress`].
    migrations_ended: u64,
    link_bytes: Vec<Vec<(usize, f64)>>,
    flow_owner: BTreeMap<FlowId, MigrationId>,
    /// What a flow's own cap is when it is not the migration's network cap
    /// (the CPU pipeline or the site-index query loop).
    flow_cap_kind: BTreeMap<FlowId, CapKind>,
    /// Bytes each migration sent while such a cap bound it, per kind.
    own_cap_bytes: Vec<Vec<(CapKind, f64)>>,
    /// Capacity each link has when up (changes with scheduled capacity changes).
    link_nominal: Vec<f64>,
    wake_version: u64,
    wake_at: Option<SimTime>,
    rounds: Vec<RoundRow>,
    /// What content is resident where.
    content: ContentIndex,
    /// Per migration of a traced VM: its replay state (boxed: 8 bytes for
    /// each migration of a VM without a trace, not the state's 408).
    traced: Vec<Option<Box<Traced>>>,
    /// Per host: failures holding it down now (up at 0).
    host_down_depth: Vec<u32>,
    /// Per VM: failures, restarts, downtime, lost work.
    ledger: Vec<failures::VmLedger>,
    /// Rows of the `fabric_events` table.
    fabric_events: Vec<rows::FabricEventRow>,
    /// Energy of each host (with `[power]`).
    meter: Option<crate::energy::EnergyMeter>,
}

/// The variant name of a plain run (no strategy comparison).
pub const BASE_VARIANT: &str = "scenario";

/// Runs every variant of `scenario`: the scenario as written, or, when it
/// lists `compare_strategies`, once per strategy with every migration using
/// that strategy (same seed and random streams; dirty-page draws still differ
/// between variants because they depend on round durations).
pub fn run_all(scenario: &Scenario, seed: Option<u64>) -> Vec<RunOutput> {
    if scenario.compare_strategies.is_empty() {
        return vec![run(scenario, seed)];
    }
    scenario
        .compare_strategies
        .iter()
        .map(|strategy| {
            let mut sc = scenario.clone();
            for op in &mut sc.operations {
                match op {
                    crate::scenario::OperationSpec::Migrate { settings, .. }
                    | crate::scenario::OperationSpec::Evacuate { settings, .. } => settings.strategy = *strategy,
                }
            }
            let mut out = run(&sc, seed);
            out.variant = strategy.to_string();
            out
        })
        .collect()
}

/// Runs `scenario` (with `seed` instead of the scenario's seed, if given).
pub fn run(scenario: &Scenario, seed: Option<u64>) -> RunOutput {
    run_with(scenario, seed, Vec::new())
}

/// A policy added to a run besides the scenario's operations, started at
/// `start`; `name` names it in the results' `operation` column.
pub struct ExtraPolicy {
    /// Name in results.
    pub name: String,
    /// When it starts.
    pub start: Nanos,
    /// The policy.
    pub policy: Box<dyn Policy>,
}

/// Runs `scenario` with extra policies (after the scenario's operations, in
/// order; each starts at its `start`).
pub fn run_with(scenario: &Scenario, seed: Option<u64>, extra: Vec<ExtraPolicy>) -> RunOutput {
    let seed = seed.unwrap_or(scenario.seed);
    let streams = RngStreams::new(seed);
    let fabric = &scenario.fabric;
    let mut capacities = vec![0.0; fabric.resource_count()];
    for (i, l) in fabric.links.iter().enumerate() {
        capacities[2 * i] = l.bandwidth.0;
        capacities[2 * i + 1] = l.bandwidth.0;
    }
    let mut sim = Sim {
        sc: scenario,
        q: EventQueue::new(),
        net: Network::new(capacities),
        dirty_models: scenario.vms.iter().map(|v| DirtyModel::new(&v.workload, pages_of(v.memory.0))).collect(),
        vm_pages: scenario.vms.iter().map(|v| pages_of(v.memory.0)).collect(),
        vm_rng: scenario.vms.iter().map(|v| streams.stream(&format!("vm/{}", v.name))).collect(),
        state: FabricState::new(fabric, &scenario.vms),
        policies: scenario
            .operations
            .iter()
            .map(|op| PolicySlot { name: op.name().to_string(), policy: ops::build(op) })
            .collect(),
        next_request: 0,
        migs: Vec::new(),
        migrations_ended: 0,
        link_bytes: Vec::new(),
        flow_owner: BTreeMap::new(),
        link_nominal: fabric.links.iter().map(|l| l.bandwidth.0).collect(),
        wake_version: 0,
        wake_at: None,
        rounds: Vec::new(),
        content: ContentIndex::new(scenario),
        traced: Vec::new(),
        host_down_depth: vec![0; fabric.hosts.len()],
        ledger: vec![failures::VmLedger::default(); scenario.vms.len()],
        fabric_events: Vec::new(),
        meter: None,
        flow_cap_kind: BTreeMap::new(),
        own_cap_bytes: Vec::new(),
    };
    for (i, vm) in scenario.vms.iter().enumerate() {
        sim.move_image(VmId(i as u32), None, Some(fabric.hosts[vm.host.index()].site));
    }
    // Schedule link events first, so a link change and a migration at the same
    // instant see the link already changed.
    for (i, l) in fabric.links.iter().enumerate() {
        for c in &l.capacity_changes {
            sim.q.schedule_at(c.at, Event::LinkCapacity(LinkId(i as u32), c.bandwidth.0)).expect("time 0");
        }
        for o in &l.outages {
            sim.q.schedule_at(o.at, Event::LinkDown(LinkId(i as u32))).expect("time 0");
            sim.q.schedule_at(Nanos(o.at.0.saturating_add(o.duration.0)), Event::LinkUp(LinkId(i as u32))).expect("time 0");
        }
    }
    // Then failures and repairs, so an operation at the instant of a failure
    // sees the host already down.
    let schedule = crate::failure::failure_schedule(&scenario.failures, &scenario.random_failures, fabric, &streams, scenario.horizon);
    for t in schedule {
        let ev = if t.down { Event::HostFail(t.host, t.cause) } else { Event::HostRepair(t.host, t.cause) };
        sim.q.schedule_at(t.at, ev).expect("time 0");
    }
    for (i, op) in scenario.operations.iter().enumerate() {
        let at = match op {
            crate::scenario::OperationSpec::Migrate { at, .. } | crate::scenario::OperationSpec::Evacuate { at, .. } => *at,
        };
        sim.q.schedule_at(at, Event::PolicyStart(OperationId(i as u32))).expect("time 0");
    }
    if let Some(ha) = &scenario.ha {
        let id = OperationId(sim.policies.len() as u32);
        sim.policies.push(PolicySlot { name: "ha".into(), policy: Box::new(crate::failure::HaRestart::new(ha.clone())) });
        sim.q.schedule_at(Nanos(0), Event::PolicyStart(id)).expect("time 0");
    }
    for e in extra {
        let id = OperationId(sim.policies.len() as u32);
        sim.policies.push(PolicySlot { name: e.name, policy: e.policy });
        sim.q.schedule_at(e.start, Event::PolicyStart(id)).expect("time 0");
    }
    sim.update_power();
    sim.main_loop();
    sim.finish_run(seed)
}

impl Sim<'_> {
    fn now(&self) -> SimTime {
        self.q.now()
    }

    /// Panics with the broken invariant: a bug in the engine, never bad input.
    fn check_invariants(&self) {
        if let Err(e) = self.state.check(&self.sc.fabric, &self.sc.vms) {
            panic!("invariant broken at {} ns in scenario {:?}: {e}", self.now().0, self.sc.name);
        }
    }

    fn publish_progress(&self, events: u64) {
        crate::progress::publish(crate::progress::Snapshot {
            simulated_ns: self.now().0,
            events,
            migrations_started: self.migs.len() as u64,
            migrations_ended: self.migrations_ended,
        });
    }

    fn main_loop(&mut self) {
        let publishing = crate::progress::enabled();
        let mut events = 0u64;
        while let Some(t) = self.q.peek_time() {
            if t > self.sc.horizon {
                break;
            }
            if publishing && events % crate::progress::PUBLISH_EVERY_EVENTS == 0 {
                self.publish_progress(events);
            }
            events += 1;
            let (_, ev) = self.q.pop().expect("peeked");
            match ev {
                Event::PolicyStart(op) => self.call_policy(op, None),
                Event::Timer(op, tag) => self.call_policy(op, Some(FabricEvent::Timer { tag })),
                Event::Booted(vm) => self.booted(vm),
                Event::HostFail(h, cause) => self.host_fail(h, cause),
                Event::HostRepair(h, cause) => self.host_repair(h, cause),
                Event::PowerDone(h, to) => self.power_done(h, to),
                Event::Begin(m) => self.begin(m),
                Event::NetworkWake(v) => {
                    if v == self.wake_version {
                        self.wake_at = None;
                        self.complete_due_flows();
                    }
                }
                Event::Arrived(m, kind) => self.arrived(m, kind),
                Event::LinkCapacity(l, bw) => {
                    self.link_nominal[l.index()] = bw;
                    if self.state.link_up(l) {
                        self.set_link_capacity(l, bw);
                    }
                }
                Event::LinkDown(l) => self.link_down(l),
                Event::LinkUp(l) => {
                    self.state.set_link_up(l, true);
                    self.set_link_capacity(l, self.link_nominal[l.index()]);
                    self.broadcast(FabricEvent::LinkUp { link: l });
                }
            }
            self.settle_network();
            self.update_power();
            if cfg!(debug_assertions) {
                self.check_invariants();
            }
        }
        if publishing {
            self.publish_progress(events);
        }
    }

}
