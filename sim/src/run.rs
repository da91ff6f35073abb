//! The simulator: runs a [`Scenario`] to completion and returns its tables.
//!
//! One [`Sim`] owns the event queue, the network, the VMs' placement and every
//! migration. Events are few and plain ([`Event`]); the network is one actor
//! whose next flow completion is kept as a single queued wake-up (stale
//! wake-ups carry an old version and are ignored). After every event, the
//! network re-solves only what changed ([`Network::settle`]).

use crate::engine::{EventQueue, RngStreams, SimTime};
use crate::fabric::{HostId, LinkDir, LinkId, VmId};
use crate::mechanism::{CapKind, Migration, MigrationId, MigrationRow, RoundRow, Stage};
use crate::network::{tcp, FlowId, FlowTotals, Network};
use crate::ops::{self, FabricView, MigrationRequest, Operation};
use crate::scenario::{Destination, DirtySampling, Scenario};
use crate::workload::{pages_of, DirtyModel, Pending};
use crate::reduction::{Tally, VmInputs, VmReduction};
use crate::scenario::{DedupDomains, SiteIndex};
use std::collections::BTreeSet;
use memfabric_migration::precopy::{
    precopy_decision, remaining_bytes_estimate, NonConvergence, PrecopyContext, PrecopyDecision, RoundWire,
};
use memfabric_migration::record::{Mechanism, Outcome};
use memfabric_migration::state::MigrationPhase;
use memfabric_migration::units::{BytesPerSecond, Nanos};
use memfabric_migration::{PAGE_SIZE_BYTES, RAW_PAGE_WIRE_BYTES};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::collections::{HashMap, HashSet};
use crate::reduction::exact::{DeltaCache, ExactReduction, Sent};
use crate::trace::replay::{PageContent, TraceRun, VmTrace};

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
    /// The traces replayed (path as written, xxh3 of the files); empty
    /// without traced VMs.
    pub traces: Vec<String>,
    /// One row per migration.
    pub migrations: Vec<MigrationRow>,
    /// One row per round or stage.
    pub rounds: Vec<RoundRow>,
    /// Link loads over time.
    pub links: Vec<LinkRow>,
    /// Events processed.
    pub events_processed: u64,
    /// Network solves.
    pub flow_solves: u64,
    /// Simulated time at the end of the run.
    pub end_time: Nanos,
}

/// The network side of a flow: where it goes, its own cap and what that cap
/// is (when not the migration's network cap), and its fairness weight.
struct FlowSpec {
    resources: Vec<usize>,
    cap: f64,
    weight: f64,
    own_kind: Option<CapKind>,
}

/// Which per-page expectation a stage's pages follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PageKind {
    /// First transfer of the VM's memory.
    FullCopy,
    /// Pages dirtied since they were sent.
    Resend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    /// Device state arrived: the VM resumes at the destination in post-copy.
    Resume,
    /// The last bytes arrived: the migration is complete.
    Finish,
    /// A pre-copy round's calibrated fixed cost (acknowledgement wait,
    /// dirty-log sync) has passed: the stop rule decides.
    RoundSettled,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Event {
    OpStart(usize),
    Begin(MigrationId),
    NetworkWake(u64),
    Arrived(MigrationId, Arrival),
    LinkCapacity(LinkId, f64),
    LinkDown(LinkId),
    LinkUp(LinkId),
}

struct Sim<'a> {
    sc: &'a Scenario,
    q: EventQueue<Event>,
    net: Network,
    dirty_models: Vec<DirtyModel>,
    vm_pages: Vec<u64>,
    vm_rng: Vec<ChaCha8Rng>,
    vm_host: Vec<HostId>,
    vm_unavailable: Vec<bool>,
    host_ram_used: Vec<u64>,
    ops: Vec<Box<dyn Operation>>,
    migs: Vec<Migration>,
    link_bytes: Vec<Vec<(usize, f64)>>,
    flow_owner: BTreeMap<FlowId, MigrationId>,
    /// What a flow's own cap is when it is not the migration's network cap
    /// (the CPU pipeline or the site-index query loop).
    flow_cap_kind: BTreeMap<FlowId, CapKind>,
    /// Bytes each migration sent while such a cap bound it, per kind.
    own_cap_bytes: Vec<Vec<(CapKind, f64)>>,
    link_down: Vec<bool>,
    link_nominal: Vec<f64>,
    wake_version: u64,
    wake_at: Option<SimTime>,
    rounds: Vec<RoundRow>,
    /// VMs running at each (site, dedup domain, image): content resident there.
    site_images: BTreeMap<(usize, String, String), u32>,
    /// Non-zero pages resident at each (site, dedup domain): what a site
    /// index (summary) must describe.
    site_pages: BTreeMap<(usize, String), u64>,
    /// (operation, destination site, domain, image) whose shared content a
    /// VM of the gang has started sending.
    gang_sent: BTreeSet<(usize, usize, String, String)>,
    /// Per migration of a traced VM: its replay state.
    traced: Vec<Option<Traced>>,
    /// Content hashes (of traced VMs) sent by the gang, per (operation,
    /// destination site, domain). Only looked up, never iterated.
    gang_hashes: BTreeMap<(usize, usize, String), HashSet<u128>>,
    /// Content hashes of traced VMs' snapshots resident at each (site,
    /// domain), with multiplicity. Only looked up, never iterated.
    site_hashes: BTreeMap<(usize, String), HashMap<u128, u32>>,
}

/// Replay and exact-reduction state of one migration of a traced VM.
struct Traced {
    /// The VM's trace.
    vm: VmTrace,
    /// Trace clock and pending dirty pages.
    run: TraceRun,
    /// Hashes this migration sent (dedup-vm). Only looked up, never iterated.
    sent: HashSet<u128>,
    /// Delta cache (with `xbzrle`).
    cache: DeltaCache,
    /// The tally of the pending pages, computed when the round that dirtied
    /// them ended (the next stage sends exactly them).
    prepared: Option<Tally>,
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
    let seed = seed.unwrap_or(scenario.seed);
    let streams = RngStreams::new(seed);
    let fabric = &scenario.fabric;
    let mut capacities = vec![0.0; fabric.resource_count()];
    for (i, l) in fabric.links.iter().enumerate() {
        capacities[2 * i] = l.bandwidth.0;
        capacities[2 * i + 1] = l.bandwidth.0;
    }
    let mut host_ram_used = vec![0u64; fabric.hosts.len()];
    for vm in &scenario.vms {
        host_ram_used[vm.host.index()] += vm.memory.0;
    }
    let mut sim = Sim {
        sc: scenario,
        q: EventQueue::new(),
        net: Network::new(capacities),
        dirty_models: scenario.vms.iter().map(|v| DirtyModel::new(&v.workload, pages_of(v.memory.0))).collect(),
        vm_pages: scenario.vms.iter().map(|v| pages_of(v.memory.0)).collect(),
        vm_rng: scenario.vms.iter().map(|v| streams.stream(&format!("vm/{}", v.name))).collect(),
        vm_host: scenario.vms.iter().map(|v| v.host).collect(),
        vm_unavailable: vec![false; scenario.vms.len()],
        host_ram_used,
        ops: scenario.operations.iter().map(ops::build).collect(),
        migs: Vec::new(),
        link_bytes: Vec::new(),
        flow_owner: BTreeMap::new(),

        link_down: vec![false; fabric.links.len()],
        link_nominal: fabric.links.iter().map(|l| l.bandwidth.0).collect(),
        wake_version: 0,
        wake_at: None,
        rounds: Vec::new(),
        site_images: BTreeMap::new(),
        site_pages: BTreeMap::new(),
        gang_sent: BTreeSet::new(),
        traced: Vec::new(),
        gang_hashes: BTreeMap::new(),
        site_hashes: BTreeMap::new(),
        flow_cap_kind: BTreeMap::new(),
        own_cap_bytes: Vec::new(),
    };
    for (i, vm) in scenario.vms.iter().enumerate() {
        sim.move_image(VmId(i as u32), None, Some(fabric.hosts[vm.host.index()].site.index()));
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
    for (i, op) in scenario.operations.iter().enumerate() {
        let at = match op {
            crate::scenario::OperationSpec::Migrate { at, .. } | crate::scenario::OperationSpec::Evacuate { at, .. } => *at,
        };
        sim.q.schedule_at(at, Event::OpStart(i)).expect("time 0");
    }
    sim.main_loop();
    sim.finish_run(seed)
}

impl Sim<'_> {
    fn now(&self) -> SimTime {
        self.q.now()
    }

    fn domain(&self, vm: &crate::scenario::Vm) -> String {
        match self.sc.dedup_domains {
            DedupDomains::Tenant => vm.tenant.clone(),
            DedupDomains::Global => String::new(),
        }
    }

    fn image_key(&self, vm: &crate::scenario::Vm, site: usize) -> Option<(usize, String, String)> {
        vm.image.as_ref().map(|img| (site, self.domain(vm), img.clone()))
    }

    /// Non-zero pages of a VM (what it adds to its site's resident content).
    fn content_pages(&self, vm: VmId) -> u64 {
        let v = &self.sc.vms[vm.index()];
        if let Some(t) = &v.trace {
            let d = &t.data;
            return d.snapshot.iter().filter(|p| !p.zero).map(|p| d.weight(p)).sum::<f64>().round() as u64;
        }
        (self.vm_pages[vm.index()] as f64 * (1.0 - v.workload.content.zero.0)).round() as u64
    }

    /// Moves a VM's content (its image and its pages) between sites' resident sets.
    fn move_image(&mut self, vm: VmId, from: Option<usize>, to: Option<usize>) {
        let pages = self.content_pages(vm);
        let v = &self.sc.vms[vm.index()];
        let domain = self.domain(v);
        if let Some(site) = from {
            if let Some(n) = self.site_pages.get_mut(&(site, domain.clone())) {
                *n = n.saturating_sub(pages);
            }
        }
        if let Some(site) = to {
            *self.site_pages.entry((site, domain)).or_insert(0) += pages;
        }
        if let Some(key) = from.and_then(|s| self.image_key(v, s)) {
            if let Some(n) = self.site_images.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.site_images.remove(&key);
                }
            }
        }
        if let Some(key) = to.and_then(|s| self.image_key(v, s)) {
            *self.site_images.entry(key).or_insert(0) += 1;
        }
        if let Some(t) = &v.trace {
            let domain = self.domain(v);
            if let Some(set) = from.and_then(|s| self.site_hashes.get_mut(&(s, domain.clone()))) {
                for p in t.data.snapshot.iter().filter(|p| !p.zero) {
                    if let Some(n) = set.get_mut(&p.hash) {
                        *n -= 1;
                        if *n == 0 {
                            set.remove(&p.hash);
                        }
                    }
                }
            }
            if let Some(site) = to {
                let set = self.site_hashes.entry((site, domain)).or_default();
                for p in t.data.snapshot.iter().filter(|p| !p.zero) {
                    *set.entry(p.hash).or_insert(0) += 1;
                }
            }
        }
    }

    /// The exact tally of a traced VM's pages: its snapshot (`full`) or its
    /// pending dirty pages (which are then no longer pending).
    fn traced_tally(&mut self, m: MigrationId, full: bool) -> Tally {
        use memfabric_migration::strategy::DedupScope;
        let mig = &self.migs[m.0 as usize];
        let v = &self.sc.vms[mig.vm.index()];
        let domain = self.domain(v);
        let strategy = mig.settings.strategy;
        let scope = strategy.dedup;
        let rules = ExactReduction::new(&strategy, mig.settings.hash, &self.sc.cpu_profile);
        let intra = self.sc.fabric.hosts[mig.src.index()].site == mig.dst_site;
        let (dst_site, op) = (mig.dst_site.index(), mig.operation);
        let (fp, query) = (mig.settings.site_index.false_positive_rate(), matches!(mig.settings.site_index, SiteIndex::Query { .. }));
        let tr = self.traced[m.0 as usize].as_mut().expect("a traced VM's migration");
        let data = tr.vm.data.clone();
        // A VM moving within its site must not find its own content there.
        let own: HashMap<u128, u32> = if intra && scope == Some(DedupScope::Site) {
            let mut own = HashMap::new();
            for p in data.snapshot.iter().filter(|p| !p.zero) {
                *own.entry(p.hash).or_insert(0) += 1;
            }
            own
        } else {
            HashMap::new()
        };
        let empty = HashMap::new();
        let site = if scope == Some(DedupScope::Site) {
            self.site_hashes.get(&(dst_site, domain.clone())).unwrap_or(&empty)
        } else {
            &empty
        };
        let mut gang = (scope >= Some(DedupScope::Gang)).then(|| self.gang_hashes.entry((op, dst_site, domain)).or_default());
        let pending = if full { BTreeMap::new() } else { std::mem::take(&mut tr.run.pending) };
        let pages: Box<dyn Iterator<Item = (&PageContent, Option<u32>)>> = if full {
            Box::new(data.snapshot.iter().map(|p| (p, None)))
        } else {
            Box::new(pending.values().map(|p| (&data.rows[p.row], Some(p.max_delta))))
        };
        let mut t = Tally::default();
        for (c, delta) in pages {
            let w = data.weight(c);
            let known = scope.is_some()
                && (tr.sent.contains(&c.hash)
                    || gang.as_ref().is_some_and(|g| g.contains(&c.hash))
                    || site.get(&c.hash).copied().unwrap_or(0) > own.get(&c.hash).copied().unwrap_or(0));
            let base = delta.filter(|_| strategy.delta && tr.cache.contains(c.page));
            let sent = rules.page(&mut t, w, c, known, base);
            if scope.is_some() && sent != Sent::Zero {
                tr.sent.insert(c.hash);
                if let Some(g) = gang.as_mut() {
                    g.insert(c.hash);
                }
            }
            if strategy.delta && sent == Sent::Bytes {
                tr.cache.insert(c.page, w);
            }
        }
        crate::reduction::site_index_overhead(&mut t, scope == Some(DedupScope::Site), fp, query);
        t
    }

    /// Whether the destination already has (or is being sent by the gang) the
    /// VM's image content, and marks the gang as sending it.
    fn image_hit(&mut self, m: MigrationId) -> bool {
        let mig = &self.migs[m.0 as usize];
        let v = &self.sc.vms[mig.vm.index()];
        let Some(key) = self.image_key(v, mig.dst_site.index()) else { return false };
        let gang = (mig.operation, key.0, key.1.clone(), key.2.clone());
        // A VM moving within its own site must not count its own image content.
        let own = u32::from(self.sc.fabric.hosts[mig.src.index()].site == mig.dst_site);
        let hit = match mig.settings.strategy.dedup {
            Some(memfabric_migration::strategy::DedupScope::Site) => {
                self.site_images.get(&key).copied().unwrap_or(0) > own || self.gang_sent.contains(&gang)
            }
            Some(memfabric_migration::strategy::DedupScope::Gang) => self.gang_sent.contains(&gang),
            _ => false,
        };
        self.gang_sent.insert(gang);
        hit
    }

    fn main_loop(&mut self) {
        while let Some(t) = self.q.peek_time() {
            if t > self.sc.horizon {
                break;
            }
            let (_, ev) = self.q.pop().expect("peeked");
            match ev {
                Event::OpStart(i) => {
                    let view = FabricView { scenario: self.sc, vm_host: &self.vm_host, vm_unavailable: &self.vm_unavailable };
                    let reqs = self.ops[i].start(view);
                    self.submit(i, reqs);
                }
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
                    if !self.link_down[l.index()] {
                        self.set_link_capacity(l, bw);
                    }
                }
                Event::LinkDown(l) => self.link_down(l),
                Event::LinkUp(l) => {
                    self.link_down[l.index()] = false;
                    self.set_link_capacity(l, self.link_nominal[l.index()]);
                }
            }
            self.settle_network();
        }
    }

    fn set_link_capacity(&mut self, l: LinkId, bw: f64) {
        self.net.set_capacity(2 * l.index(), bw);
        self.net.set_capacity(2 * l.index() + 1, bw);
    }

    fn settle_network(&mut self) {
        let now = self.now();
        self.net.settle(now);
        let next = self.net.next_completion().map(|(t, _)| t.max(now));
        if next != self.wake_at {
            self.wake_version += 1;
            self.wake_at = next;
            if let Some(t) = next {
                self.q.schedule_at(t, Event::NetworkWake(self.wake_version)).expect("not in the past");
            }
        }
    }

    fn complete_due_flows(&mut self) {
        let now = self.now();
        while let Some((t, id)) = self.net.next_completion() {
            if t > now {
                break;
            }
            let totals = self.net.remove_flow(now, id).expect("active flow");
            let m = self.flow_owner.remove(&id).expect("every flow has an owner");
            self.migs[m.0 as usize].flow = None;
            self.account(m, id, &totals);
            self.flow_done(m, totals.sent);
        }
    }

    fn account(&mut self, m: MigrationId, flow: FlowId, totals: &FlowTotals) {
        let own_kind = self.flow_cap_kind.remove(&flow);
        let mig = &mut self.migs[m.0 as usize];
        // The share of the stage's pages that crossed (all of them unless cut short).
        let done = if mig.stage_bytes > 0.0 { (totals.sent / mig.stage_bytes).min(1.0) } else { 1.0 };
        let part = mig.stage_tally.scaled(done);
        mig.tally.add(&part);
        mig.last_stage_tally = part;
        mig.extra_bytes += mig.stage_extra_bytes * done;
        mig.stage_tally = Tally::default();
        mig.stage_extra_bytes = 0.0;
        if let Some(kind) = own_kind {
            let v = &mut self.own_cap_bytes[m.0 as usize];
            match v.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, b)) => *b += totals.sent_cap_limited,
                None => v.push((kind, totals.sent_cap_limited)),
            }
        } else {
            mig.bytes_cap_limited += totals.sent_cap_limited;
        }
        match mig.stage {
            Stage::PreCopyRound => mig.bytes_precopy += totals.sent,
            Stage::StopCopy | Stage::PostCopySwitch => mig.bytes_stopcopy += totals.sent,
            Stage::PostCopyPush => mig.bytes_postcopy += totals.sent,
            Stage::IndexSync => mig.bytes_index_sync += totals.sent,
            Stage::Connecting | Stage::Arriving | Stage::Done => {}
        }
        let lb = &mut self.link_bytes[m.0 as usize];
        for &(r, b) in &totals.sent_by_link {
            match lb.iter_mut().find(|(x, _)| *x == r) {
                Some((_, acc)) => *acc += b,
                None => lb.push((r, b)),
            }
        }
    }

    fn submit(&mut self, op: usize, requests: Vec<MigrationRequest>) {
        // A worklist, because a request that fails at once lets the
        // operation ask for another.
        let mut work: Vec<(usize, MigrationRequest)> = requests.into_iter().rev().map(|r| (op, r)).collect();
        while let Some((op, req)) = work.pop() {
            if let Some((vm, outcome)) = self.start_migration(op, req) {
                let view = FabricView { scenario: self.sc, vm_host: &self.vm_host, vm_unavailable: &self.vm_unavailable };
                let more = self.ops[op].on_migration_end(view, vm, outcome);
                work.extend(more.into_iter().rev().map(|r| (op, r)));
            }
        }
    }

    fn pick_destination(&self, vm: VmId, to: Destination) -> Option<HostId> {
        let v = &self.sc.vms[vm.index()];
        let fits = |h: HostId| {
            let host = &self.sc.fabric.hosts[h.index()];
            h != self.vm_host[vm.index()] && self.host_ram_used[h.index()] + v.memory.0 <= host.ram.0 && v.vcpus <= host.cores
        };
        match to {
            Destination::Host(h) => fits(h).then_some(h),
            Destination::Site(s) => self.sc.fabric.sites[s.index()]
                .hosts
                .iter()
                .copied()
                .filter(|h| fits(*h))
                // Most free RAM first; lowest id on ties.
                .min_by_key(|h| (std::cmp::Reverse(self.sc.fabric.hosts[h.index()].ram.0 - self.host_ram_used[h.index()]), *h)),
        }
    }

    /// Starts a migration; returns `Some` if it ended at once (no capacity,
    /// VM unavailable, link down).
    fn start_migration(&mut self, op: usize, req: MigrationRequest) -> Option<(VmId, Outcome)> {
        let now = self.now();
        let vm = req.vm;
        if self.vm_unavailable[vm.index()] {
            // Already moving or lost: refused without a record, so that the
            // operation can move on.
            return Some((vm, Outcome::NoCapacity));
        }
        let src = self.vm_host[vm.index()];
        let dst = self.pick_destination(vm, req.to);
        let src_site = self.sc.fabric.hosts[src.index()].site;
        let dst_site = match (dst, req.to) {
            (Some(h), _) | (None, Destination::Host(h)) => self.sc.fabric.hosts[h.index()].site,
            (None, Destination::Site(s)) => s,
        };
        let route = self.sc.fabric.route(src_site, dst_site).cloned().expect("routes checked when loading");
        let settings = req.settings;
        let (total, kind) = if route.hops.is_empty() {
            (self.sc.lan_bandwidth.0, CapKind::Lan)
        } else {
            let (per_stream, limit) = tcp::stream_cap(route.rtt(), route.loss, settings.tcp_window, settings.mss);
            let kind = match limit {
                tcp::TcpLimit::Window => CapKind::TcpWindow,
                tcp::TcpLimit::Loss => CapKind::TcpLoss,
                tcp::TcpLimit::None => CapKind::None,
            };
            (per_stream.0 * settings.streams as f64, kind)
        };
        let cap = match settings.max_bandwidth {
            Some(BytesPerSecond(mb)) if mb < total => (mb, CapKind::MaxBandwidth),
            _ => (total, kind),
        };
        let id = MigrationId(self.migs.len() as u32);
        let vm_spec = &self.sc.vms[vm.index()];
        let reduction = VmReduction::new(
            &settings.strategy,
            VmInputs {
                workload: &vm_spec.workload,
                has_image: vm_spec.image.is_some(),
                working_set_pages: self.dirty_models[vm.index()].working_set_pages(),
                xbzrle_cache_pages: settings.xbzrle_cache.0 / PAGE_SIZE_BYTES,
                hash: settings.hash,
                site_false_positive_rate: settings.site_index.false_positive_rate(),
                site_query: matches!(settings.site_index, SiteIndex::Query { .. }),
            },
            &self.sc.cpu_profile,
        );
        let mut mig = Migration {
            id,
            operation: op,
            vm,
            src,
            dst: dst.unwrap_or(src),
            dst_site,
            route,
            settings,
            cap,
            reduction,
            stage_tally: Tally::default(),
            last_stage_tally: Tally::default(),
            stage_bytes: 0.0,
            stage_extra_bytes: 0.0,
            extra_bytes: 0.0,
            tally: Tally::default(),
            phase: MigrationPhase::Setup,
            stage: Stage::Connecting,
            flow: None,
            start: now,
            stage_start: now,
            stage_pages: 0,
            rounds: 0,
            postcopy_pending: 0,
            postcopy_window_secs: None,
            postcopy_guest_speed: 1.0,
            throttle: Default::default(),
            throttle_pct_max: 0,
            paused_at: None,
            resumed_at: None,
            converged: None,
            bytes_precopy: 0.0,
            bytes_stopcopy: 0.0,
            bytes_postcopy: 0.0,
            bytes_index_sync: 0.0,
            bytes_cap_limited: 0.0,
            postcopy_faults: 0,
            postcopy_fault_wait: Nanos(0),
            outcome: None,
            end: None,
        };
        let failure = if dst.is_none() {
            Some(Outcome::NoCapacity)
        } else if mig.route.hops.iter().any(|h| self.link_down[h.link.index()]) {
            Some(Outcome::AbortedLinkFailure)
        } else {
            None
        };
        if let Some(outcome) = failure {
            mig.phase = MigrationPhase::Failed;
            mig.stage = Stage::Done;
            mig.outcome = Some(outcome);
            mig.end = Some(now);
            self.migs.push(mig);
            self.link_bytes.push(Vec::new());
            self.own_cap_bytes.push(Vec::new());
            self.traced.push(None);
            return Some((vm, outcome));
        }
        self.vm_unavailable[vm.index()] = true;
        self.host_ram_used[mig.dst.index()] += self.sc.vms[vm.index()].memory.0;
        // Connection setup: one round trip (TCP handshake).
        self.q.schedule_in(mig.route.rtt(), Event::Begin(id));
        let traced = self.sc.vms[vm.index()].trace.as_ref().map(|t| Traced {
            vm: t.clone(),
            run: TraceRun::default(),
            sent: HashSet::new(),
            cache: DeltaCache::new(mig.settings.xbzrle_cache.0 as f64 / PAGE_SIZE_BYTES as f64),
            prepared: None,
        });
        self.migs.push(mig);
        self.link_bytes.push(Vec::new());
        self.own_cap_bytes.push(Vec::new());
        self.traced.push(traced);
        None
    }

    /// Starts the flow of a stage: `pages` pages of the given kind plus
    /// `extra_bytes` of device state, reduced by the migration's strategy and
    /// capped by its CPU pipeline as well as its network cap.
    fn start_flow(&mut self, m: MigrationId, stage: Stage, pages: u64, kind: PageKind, extra_bytes: u64) {
        if self.traced[m.0 as usize].is_some() && stage != Stage::PostCopySwitch {
            return self.start_traced_flow(m, stage, kind, extra_bytes);
        }
        let per_page = match kind {
            PageKind::FullCopy => {
                if self.image_hit(m) {
                    self.migs[m.0 as usize].reduction.full_copy_image_hit
                } else {
                    self.migs[m.0 as usize].reduction.full_copy
                }
            }
            PageKind::Resend => self.migs[m.0 as usize].reduction.resend,
        };
        let tally = per_page.scaled(pages as f64);
        self.launch_flow(m, stage, pages, tally, per_page, extra_bytes);
    }

    /// [`Sim::start_flow`] for a traced VM: the exact tally of its snapshot
    /// (full copy) or of the pages dirtied in the last round (re-send).
    fn start_traced_flow(&mut self, m: MigrationId, stage: Stage, kind: PageKind, extra_bytes: u64) {
        let tally = match kind {
            PageKind::FullCopy => {
                // Marks the image as sent for non-traced VMs of the gang.
                self.image_hit(m);
                self.traced_tally(m, true)
            }
            PageKind::Resend => {
                let tr = self.traced[m.0 as usize].as_mut().expect("traced");
                match tr.prepared.take() {
                    Some(t) => t,
                    None => self.traced_tally(m, false),
                }
            }
        };
        let per_page = if tally.pages > 0.0 { tally.scaled(1.0 / tally.pages) } else { Tally::default() };
        self.launch_flow(m, stage, tally.pages.round() as u64, tally, per_page, extra_bytes);
    }

    /// Starts the flow of a stage of `pages` pages whose tally (and its
    /// per-page mix, for the CPU and index-query caps) is known.
    fn launch_flow(&mut self, m: MigrationId, stage: Stage, pages: u64, tally: Tally, per_page: Tally, extra_bytes: u64) {
        let mig = &self.migs[m.0 as usize];
        let bytes = tally.wire_bytes + extra_bytes as f64;
        let threads = mig.settings.threads();
        let mut cap = (mig.cap.0, None);
        if pages > 0 {
            let cpu_cap = per_page.cpu_cap_bytes_per_s(threads, threads);
            if cpu_cap < cap.0 {
                cap = (cpu_cap, Some(CapKind::Cpu));
            }
            // One index query in flight: a batch of pages per round trip.
            let rtt = mig.route.rtt().as_secs_f64();
            if let (Some(memfabric_migration::strategy::DedupScope::Site), SiteIndex::Query { batch_pages }, true) =
                (mig.settings.strategy.dedup, mig.settings.site_index, rtt > 0.0)
            {
                let query_cap = batch_pages as f64 * per_page.wire_bytes / rtt;
                if query_cap < cap.0 {
                    cap = (query_cap, Some(CapKind::IndexQuery));
                }
            }
        }
        let (cap, own_kind) = cap;
        let resources: Vec<usize> = mig.route.hops.iter().map(|h: &LinkDir| h.resource()).collect();
        let spec = FlowSpec { resources, cap, weight: mig.settings.streams as f64, own_kind };
        self.attach_flow(m, stage, pages, tally, extra_bytes, bytes, spec);
    }

    /// Makes `spec` the migration's current flow for `stage` and records what
    /// it carries: the one place a migration's flow is registered.
    #[allow(clippy::too_many_arguments)]
    fn attach_flow(&mut self, m: MigrationId, stage: Stage, pages: u64, tally: Tally, extra_bytes: u64, bytes: f64, spec: FlowSpec) {
        let now = self.now();
        let id = self.net.add_flow(now, spec.resources, spec.cap, spec.weight, bytes);
        let mig = &mut self.migs[m.0 as usize];
        mig.stage = stage;
        mig.stage_start = now;
        mig.stage_pages = pages;
        mig.stage_tally = tally;
        mig.stage_bytes = bytes;
        mig.stage_extra_bytes = extra_bytes as f64;
        mig.flow = Some(id);
        if let Some(kind) = spec.own_kind {
            self.flow_cap_kind.insert(id, kind);
        }
        self.flow_owner.insert(id, m);
    }

    fn transition(&mut self, m: MigrationId, to: MigrationPhase) {
        let mig = &mut self.migs[m.0 as usize];
        mig.phase = mig.phase.transition(to).unwrap_or_else(|e| panic!("migration {}: {e}", m.0));
    }

    fn begin(&mut self, m: MigrationId) {
        if self.migs[m.0 as usize].outcome.is_some() {
            return; // failed while connecting
        }
        // dedup-site with a summary: the destination first sends a Bloom
        // filter of its resident pages (in the reverse direction).
        let mig = &self.migs[m.0 as usize];
        if let (Some(memfabric_migration::strategy::DedupScope::Site), SiteIndex::Summary { bits_per_item }) =
            (mig.settings.strategy.dedup, mig.settings.site_index)
        {
            let v = &self.sc.vms[mig.vm.index()];
            let src_site = self.sc.fabric.hosts[mig.src.index()].site;
            let mut pages = self.site_pages.get(&(mig.dst_site.index(), self.domain(v))).copied().unwrap_or(0);
            if src_site == mig.dst_site {
                pages = pages.saturating_sub(self.content_pages(mig.vm));
            }
            let bytes = (pages as f64 * bits_per_item / 8.0).ceil();
            if bytes > 0.0 {
                let reverse = self.sc.fabric.route(mig.dst_site, src_site).expect("routes are symmetric");
                let resources: Vec<usize> = reverse.hops.iter().map(|h| h.resource()).collect();
                let cap = mig.cap.0;
                let sync = FlowSpec { resources, cap, weight: 1.0, own_kind: None };
                self.attach_flow(m, Stage::IndexSync, 0, Tally::default(), 0, bytes, sync);
                return;
            }
        }
        self.begin_transfer(m);
    }

    /// Starts moving memory, after the connection (and any index sync).
    fn begin_transfer(&mut self, m: MigrationId) {
        let mig = &self.migs[m.0 as usize];
        let pages = self.vm_pages[mig.vm.index()];
        let state = self.sc.vms[mig.vm.index()].device_state.0;
        match mig.settings.mechanism {
            Mechanism::PreCopy | Mechanism::Hybrid => {
                self.transition(m, MigrationPhase::PreCopy);
                self.start_flow(m, Stage::PreCopyRound, pages, PageKind::FullCopy, 0);
            }
            Mechanism::StopAndCopy => {
                self.transition(m, MigrationPhase::StopAndCopy);
                self.migs[m.0 as usize].paused_at = Some(self.now());
                self.start_flow(m, Stage::StopCopy, pages, PageKind::FullCopy, state);
            }
            Mechanism::PostCopy => {
                self.transition(m, MigrationPhase::StopAndCopy);
                let mig = &mut self.migs[m.0 as usize];
                mig.paused_at = Some(self.q.now());
                mig.postcopy_pending = pages;
                self.start_flow(m, Stage::PostCopySwitch, 0, PageKind::Resend, state);
            }
        }
    }

    fn draw_dirty(&mut self, vm: VmId, run_secs: f64, sampling: DirtySampling) -> u64 {
        let model = &self.dirty_models[vm.index()];
        match sampling {
            DirtySampling::Expected => model.expected_dirty_pages(run_secs).round() as u64,
            DirtySampling::Binomial => model.sample_dirty_pages(run_secs, &mut self.vm_rng[vm.index()]),
        }
    }

    fn push_round(&mut self, m: MigrationId, round: u32, phase: &'static str, sent: f64, dirty: u64, throttle: u32) {
        let now = self.now();
        self.push_round_row(m, now, round, phase, sent, dirty, throttle, true);
    }

    #[allow(clippy::too_many_arguments)]
    fn push_round_row(
        &mut self,
        m: MigrationId,
        now: SimTime,
        round: u32,
        phase: &'static str,
        sent: f64,
        dirty: u64,
        throttle: u32,
        complete: bool,
    ) {
        let mig = &self.migs[m.0 as usize];
        let secs = (now.0 - mig.stage_start.0) as f64 / 1e9;
        self.rounds.push(RoundRow {
            migration_id: m.0,
            vm: self.sc.vms[mig.vm.index()].name.clone(),
            round,
            phase,
            start_s: mig.stage_start.as_secs_f64(),
            end_s: now.as_secs_f64(),
            pages: mig.stage_pages,
            bytes_on_wire: sent.round() as u64,
            rate_bytes_per_s: if secs > 0.0 { sent / secs } else { 0.0 },
            dirty_pages: dirty,
            throttle_pct: throttle,
            complete,
        });
    }

    fn flow_done(&mut self, m: MigrationId, sent: f64) {
        let now = self.now();
        let stage = self.migs[m.0 as usize].stage;
        match stage {
            Stage::IndexSync => {
                let r = self.migs[m.0 as usize].rounds;
                self.push_round(m, r, "index-sync", sent, 0, 0);
                self.begin_transfer(m);
            }
            Stage::PreCopyRound => match self.sc.calibration.as_ref().map_or(0, |c| c.round_fixed_ns(self.migs[m.0 as usize].route.one_way_latency)) {
                0 => self.precopy_round_done(m, sent),
                fixed => {
                    self.migs[m.0 as usize].stage = Stage::Arriving;
                    self.q.schedule_in(Nanos(fixed), Event::Arrived(m, Arrival::RoundSettled));
                }
            },
            Stage::StopCopy => {
                let r = self.migs[m.0 as usize].rounds;
                self.push_round(m, r, "stopcopy", sent, 0, self.migs[m.0 as usize].throttle.throttle_pct());
                let mig = &mut self.migs[m.0 as usize];
                mig.stage = Stage::Arriving;
                // Calibrated switchover costs (pause, state, resume, integrity hashing).
                let memory = self.sc.vms[mig.vm.index()].memory.0;
                let extra = self.sc.calibration.as_ref().map_or(0, |c| c.downtime_extra_ns(memory));
                self.q.schedule_in(Nanos(mig.route.one_way_latency.0 + extra), Event::Arrived(m, Arrival::Finish));
            }
            Stage::PostCopySwitch => {
                let r = self.migs[m.0 as usize].rounds;
                self.push_round(m, r, "postcopy-switch", sent, 0, 0);
                let mig = &mut self.migs[m.0 as usize];
                mig.stage = Stage::Arriving;
                self.q.schedule_in(mig.route.one_way_latency, Event::Arrived(m, Arrival::Resume));
            }
            Stage::PostCopyPush => {
                let mig = &self.migs[m.0 as usize];
                let (vm, pending, rtt) = (mig.vm, mig.postcopy_pending, mig.route.rtt());
                let push_secs = (now.0 - mig.stage_start.0) as f64 / 1e9;
                let which = match mig.postcopy_window_secs {
                    None => Pending::All,
                    Some(run_secs) => Pending::DirtiedIn { run_secs, pages: pending },
                };
                let rate = if push_secs > 0.0 { sent / push_secs } else { f64::INFINITY };
                // A faulted page travels reduced like the rest of the push.
                let page_wire = if pending > 0 { sent / pending as f64 } else { RAW_PAGE_WIRE_BYTES as f64 };
                let per_fault = rtt.as_secs_f64() + page_wire / rate;
                let vcpus = self.sc.vms[vm.index()].vcpus;
                let model = &self.dirty_models[vm.index()];
                let speed = model.postcopy_guest_speed(which, push_secs, per_fault, vcpus);
                let faults = match mig.settings.dirty_sampling {
                    DirtySampling::Expected => model.expected_postcopy_faults(which, push_secs, speed).round() as u64,
                    DirtySampling::Binomial => {
                        model.sample_postcopy_faults(which, push_secs, speed, &mut self.vm_rng[vm.index()])
                    }
                };
                let r = mig.rounds + 1;
                let mig = &mut self.migs[m.0 as usize];
                mig.postcopy_faults = faults;
                mig.postcopy_fault_wait = Nanos::from_secs_ceil(faults as f64 * per_fault);
                mig.postcopy_guest_speed = speed;
                self.push_round(m, r, "postcopy-push", sent, 0, 0);
                let mig = &mut self.migs[m.0 as usize];
                mig.stage = Stage::Arriving;
                self.q.schedule_in(mig.route.one_way_latency, Event::Arrived(m, Arrival::Finish));
            }
            Stage::Connecting | Stage::Arriving | Stage::Done => unreachable!("no flow in stage {stage:?}"),
        }
    }

    fn precopy_round_done(&mut self, m: MigrationId, sent: f64) {
        let now = self.now();
        let mig = &self.migs[m.0 as usize];
        let vm = mig.vm;
        let secs = (now.0 - mig.stage_start.0) as f64 / 1e9;
        let auto = mig.settings.auto_converge;
        let run_fraction = if auto { mig.throttle.run_fraction() } else { 1.0 };
        let throttle_during = mig.throttle.throttle_pct();
        let sampling = mig.settings.dirty_sampling;
        let round = mig.rounds;
        let dirty = match self.traced[m.0 as usize].as_mut() {
            Some(tr) => {
                // Exact: the pages dirtied in this round's window of guest
                // time, reduced now (the next stage sends exactly them).
                let weight = tr.run.advance(&tr.vm, secs * run_fraction * 1e9);
                let tally = self.traced_tally(m, false);
                self.traced[m.0 as usize].as_mut().expect("traced").prepared = Some(tally);
                weight.round() as u64
            }
            None => self.draw_dirty(vm, secs * run_fraction, sampling),
        };
        self.push_round(m, round, "precopy", sent, dirty, throttle_during);
        let mig = &mut self.migs[m.0 as usize];
        mig.rounds += 1;
        if auto {
            let pct = mig.throttle.on_round(dirty * PAGE_SIZE_BYTES, sent.round() as u64);
            mig.throttle_pct_max = mig.throttle_pct_max.max(pct);
        }
        let rate = if secs > 0.0 { sent / secs } else { f64::INFINITY };
        let state = self.sc.vms[vm.index()].device_state.0;
        let window = Some(secs * run_fraction);
        if mig.settings.mechanism == Mechanism::Hybrid {
            self.switch_to_postcopy(m, dirty, state, window);
            return;
        }
        // What the dirty pages will cost on the wire after reduction.
        // The shared estimator, on what this round sent (as the validator does).
        let t = &mig.last_stage_tally;
        let wire = RoundWire { pages: t.pages, wire_bytes: t.wire_bytes, zero_pages: t.pages_zero, zero_wire_bytes: t.wire_zero };
        let remaining = remaining_bytes_estimate(dirty, &wire, RAW_PAGE_WIRE_BYTES as f64);
        let ctx = PrecopyContext {
            rounds_completed: mig.rounds,
            remaining_bytes: remaining,
            measured_rate: BytesPerSecond(rate),
        };
        match precopy_decision(&ctx, &mig.settings.precopy) {
            PrecopyDecision::Continue => self.start_flow(m, Stage::PreCopyRound, dirty, PageKind::Resend, 0),
            PrecopyDecision::StopAndCopy => {
                mig.converged = Some(true);
                self.stop_and_copy(m, dirty, state);
            }
            PrecopyDecision::NotConverged(action) => {
                mig.converged = Some(false);
                match action {
                    NonConvergence::ForceStop => self.stop_and_copy(m, dirty, state),
                    NonConvergence::PostCopy => self.switch_to_postcopy(m, dirty, state, window),
                    NonConvergence::Abort => {
                        self.transition(m, MigrationPhase::Failed);
                        self.end_migration(m, Outcome::NotConverged);
                    }
                }
            }
        }
    }

    fn stop_and_copy(&mut self, m: MigrationId, pages: u64, state: u64) {
        self.transition(m, MigrationPhase::StopAndCopy);
        self.migs[m.0 as usize].paused_at = Some(self.now());
        self.start_flow(m, Stage::StopCopy, pages, PageKind::Resend, state);
    }

    fn switch_to_postcopy(&mut self, m: MigrationId, pending: u64, state: u64, window_secs: Option<f64>) {
        self.transition(m, MigrationPhase::StopAndCopy);
        let now = self.now();
        let mig = &mut self.migs[m.0 as usize];
        mig.paused_at = Some(now);
        mig.postcopy_pending = pending;
        mig.postcopy_window_secs = window_secs;
        self.start_flow(m, Stage::PostCopySwitch, 0, PageKind::Resend, state);
    }

    fn arrived(&mut self, m: MigrationId, kind: Arrival) {
        if self.migs[m.0 as usize].outcome.is_some() {
            return;
        }
        let now = self.now();
        match kind {
            Arrival::RoundSettled => {
                let sent = self.migs[m.0 as usize].stage_bytes;
                self.precopy_round_done(m, sent);
            }
            Arrival::Resume => {
                self.transition(m, MigrationPhase::PostCopy);
                let mig = &mut self.migs[m.0 as usize];
                mig.resumed_at = Some(now);
                // The VM now runs at the destination.
                self.vm_host[mig.vm.index()] = mig.dst;
                let pending = mig.postcopy_pending;
                let kind = if mig.postcopy_window_secs.is_some() { PageKind::Resend } else { PageKind::FullCopy };
                self.start_flow(m, Stage::PostCopyPush, pending, kind, 0);
            }
            Arrival::Finish => {
                let mig = &mut self.migs[m.0 as usize];
                if mig.phase == MigrationPhase::StopAndCopy {
                    mig.resumed_at = Some(now);
                }
                self.transition(m, MigrationPhase::Completed);
                self.end_migration(m, Outcome::Completed);
            }
        }
    }

    /// Records the end, updates placement and capacity, and tells the operation.
    fn end_migration(&mut self, m: MigrationId, outcome: Outcome) {
        let now = self.now();
        let mig = &mut self.migs[m.0 as usize];
        mig.outcome = Some(outcome);
        mig.end = Some(now);
        mig.stage = Stage::Done;
        let (vm, src, dst, op) = (mig.vm, mig.src, mig.dst, mig.operation);
        let mem = self.sc.vms[vm.index()].memory.0;
        let (src_site, dst_site) =
            (self.sc.fabric.hosts[src.index()].site.index(), self.sc.fabric.hosts[dst.index()].site.index());
        match outcome {
            Outcome::Completed => self.move_image(vm, Some(src_site), Some(dst_site)),
            Outcome::Lost => self.move_image(vm, Some(src_site), None),
            _ => {}
        }
        match outcome {
            Outcome::Completed => {
                self.host_ram_used[src.index()] -= mem;
                self.vm_host[vm.index()] = dst;
                self.vm_unavailable[vm.index()] = false;
            }
            Outcome::Lost => {
                self.host_ram_used[src.index()] -= mem;
                self.host_ram_used[dst.index()] -= mem;
                // A lost VM stays unavailable.
            }
            _ => {
                self.host_ram_used[dst.index()] -= mem;
                self.vm_host[vm.index()] = src;
                self.vm_unavailable[vm.index()] = false;
            }
        }
        let view = FabricView { scenario: self.sc, vm_host: &self.vm_host, vm_unavailable: &self.vm_unavailable };
        let reqs = self.ops[op].on_migration_end(view, vm, outcome);
        self.submit(op, reqs);
    }

    /// Removes a migration's flow before it finished, recording the partial stage.
    fn cut_flow(&mut self, m: MigrationId, at: SimTime) {
        let Some(flow) = self.migs[m.0 as usize].flow.take() else { return };
        let totals = self.net.remove_flow(at, flow).expect("active flow");
        self.flow_owner.remove(&flow);
        self.account(m, flow, &totals);
        let mig = &self.migs[m.0 as usize];
        if let Some(phase) = mig.stage.round_phase() {
            let round = if mig.stage == Stage::PostCopyPush { mig.rounds + 1 } else { mig.rounds };
            let throttle = mig.throttle.throttle_pct();
            self.push_round_row(m, at, round, phase, totals.sent, 0, throttle, false);
        }
    }

    fn link_down(&mut self, l: LinkId) {
        self.link_down[l.index()] = true;
        self.set_link_capacity(l, 0.0);
        let now = self.now();
        let hit: Vec<MigrationId> = self
            .migs
            .iter()
            .filter(|m| m.outcome.is_none() && m.route.hops.iter().any(|h| h.link == l))
            .map(|m| m.id)
            .collect();
        for m in hit {
            self.cut_flow(m, now);
            let mig = &mut self.migs[m.0 as usize];
            let outcome = if mig.phase == MigrationPhase::PostCopy {
                Outcome::Lost
            } else {
                if mig.paused_at.is_some() {
                    mig.resumed_at = Some(now); // resumes at the source
                }
                Outcome::AbortedLinkFailure
            };
            self.transition(m, MigrationPhase::Failed);
            self.end_migration(m, outcome);
        }
    }

    fn finish_run(mut self, seed: u64) -> RunOutput {
        let horizon = self.sc.horizon;
        let cut_by_horizon = self.migs.iter().any(|m| m.outcome.is_none());
        // The run ends at its last event, or at the horizon if that cut a migration short.
        let end_time = if cut_by_horizon { horizon } else { self.now() };
        // Anything still running at the horizon is unfinished.
        let open: Vec<MigrationId> = self.migs.iter().filter(|m| m.outcome.is_none()).map(|m| m.id).collect();
        for m in open {
            self.cut_flow(m, horizon);
            let mig = &mut self.migs[m.0 as usize];
            mig.outcome = Some(Outcome::Unfinished);
            mig.end = Some(horizon);
        }
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
                for &(kind, b) in &self.own_cap_bytes[mig.id.0 as usize] {
                    if b > best.1 {
                        best = (kind.as_str().to_string(), b);
                    }
                }
                for &(r, b) in &self.link_bytes[mig.id.0 as usize] {
                    if b > best.1 {
                        best = (fabric.links[LinkDir::from_resource(r).link.index()].name.clone(), b);
                    }
                }
                let outcome = mig.outcome.expect("set");
                let moving_secs = (end.0 - mig.start.0) as f64 / 1e9;
                MigrationRow {
                    migration_id: mig.id.0,
                    operation: self.sc.operations[mig.operation].name().to_string(),
                    vm: vm.name.clone(),
                    mechanism: mig.settings.mechanism.as_str(),
                    strategy: mig.settings.strategy.to_string(),
                    cpu_threads: mig.settings.threads(),
                    src_site: fabric.sites[fabric.hosts[mig.src.index()].site.index()].name.clone(),
                    dst_site: fabric.sites[mig.dst_site.index()].name.clone(),
                    src_host: fabric.hosts[mig.src.index()].name.clone(),
                    dst_host: if outcome == Outcome::NoCapacity { String::new() } else { fabric.hosts[mig.dst.index()].name.clone() },
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
                    outcome: outcome.as_str(),
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
        RunOutput {
            variant: BASE_VARIANT.to_string(),
            scenario: self.sc.name.clone(),
            seed,
            scenario_hash: self.sc.source_hash.clone(),
            cpu_profile: self.sc.cpu_profile_source.clone(),
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
