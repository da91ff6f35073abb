//! The network: flows over link directions, shared by max-min fairness.
//!
//! Every transfer is a *flow* with a route (the link directions it crosses), a
//! number of bytes left, a *cap* of its own (its TCP streams' bound, or a
//! configured bandwidth limit) and a *weight* (its number of TCP streams).
//! Rates are the weighted max-min fair allocation with caps ("progressive
//! filling", as in SimGrid's network model): raise a common level; each flow's
//! rate is its weight times the level; a flow stops rising when it reaches its
//! cap or when a link it crosses is full; repeat with the rest. Weights model
//! TCP's per-connection fairness: a migration with 4 streams gets 4 shares of
//! a congested link against single-stream migrations.
//!
//! Groups: flows with the same route, cap and weight are interchangeable in
//! progressive filling, so they always get the same rate and limiter. The
//! solver works on such *groups* ([`Group`]), never on single flows: a group
//! keeps one rate for all its members and its *virtual progress* `v`, the
//! bytes each member has sent since the group formed (per-group virtual time,
//! as fair-queueing schedulers keep per link). A member that joined at
//! `v_join` with `b` bytes finishes when `v` reaches `v_join + b`, so the
//! members sit in a set ordered by that virtual finish, and a rate change
//! updates one number instead of every member. On a shared bottleneck all N
//! migrations form one group, and an event costs O(log N) instead of O(N).
//!
//! Incremental work: changes (flow added or removed, capacity changed) only mark
//! the link directions they touch. [`Network::settle`] then re-solves just the
//! groups connected to those links through shared links (a connected component
//! of the group–link graph), so groups on other links keep their rates
//! untouched; the simulator settles once per event, so all changes made while
//! handling one event cost one solve. Each group's earliest finishing member
//! is kept in one ordered set over the network, so the next completion is its
//! first entry.
//!
//! [`reference`] keeps the earlier per-flow solver, which this one must match
//! (see `tests.rs`): the same progressive filling, so rates agree to float
//! rounding of sums (`n · rate` here against `n` additions there).

pub mod reference;
pub use memfabric_migration::tcp;

use crate::engine::SimTime;
use std::collections::{BTreeSet, HashMap};

/// Identifies a flow; slots are reused after removal, so the generation
/// distinguishes old and new occupants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowId {
    slot: u32,
    generation: u32,
}

/// What bounded a flow's rate in the last solve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Limiter {
    /// A full link direction (dense resource index).
    Link(usize),
    /// The flow's own cap (TCP bounds or a bandwidth limit); the owner knows which.
    Cap,
    /// Not solved yet.
    None,
}

/// A point of a link direction's load, recorded when it changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkSample {
    /// When the load took this value.
    pub time: SimTime,
    /// Dense resource index (see [`crate::fabric::LinkDir::resource`]).
    pub resource: usize,
    /// Capacity in bytes per second.
    pub capacity: f64,
    /// Sum of the rates of the flows on it, bytes per second.
    pub throughput: f64,
    /// Number of flows on it.
    pub flows: u32,
}

/// Bytes a finished or removed flow carried.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FlowTotals {
    /// Bytes sent.
    pub sent: f64,
    /// Of those, bytes sent while the flow's own cap bound it.
    pub sent_cap_limited: f64,
    /// Of those, bytes sent while a full link direction bound it, per resource.
    pub sent_by_link: Vec<(usize, f64)>,
}

/// A flow finishes when fewer than this many bytes remain (rounding slack).
const DONE_BYTES: f64 = 1e-3;

/// The slack for finishing, in bytes, when a group's progress is `v`: at
/// least [`DONE_BYTES`], and never below the float rounding of `v` (only
/// matters past a petabyte of progress).
fn done_slack(v: f64) -> f64 {
    DONE_BYTES.max(v * 8.0 * f64::EPSILON)
}

/// A virtual finish as an ordered key: non-negative floats order like their bits.
type VKey = u64;

/// What makes flows interchangeable: route, cap bits, weight bits.
type GroupKey = (Vec<usize>, u64, u64);

/// Flows with the same route, cap and weight: they share one rate, one
/// limiter and one virtual progress.
#[derive(Debug, Clone)]
struct Group {
    resources: Vec<usize>,
    cap: f64,
    weight: f64,
    /// Flows in the group, those waiting for the next solve included.
    members: u32,
    /// Rate of each member, bytes per second (set by solves).
    rate: f64,
    limiter: Limiter,
    /// Bytes each member has sent since the group (re)formed, as of `v_time`.
    v: f64,
    v_time: SimTime,
    /// The limiters the group has had since it formed, with the progress at
    /// which each began, in time order (the last is the current one).
    segments: Vec<(Limiter, f64)>,
    /// Solved members by virtual finish (`v_join + bytes`), then slot.
    by_finish: BTreeSet<(VKey, u32)>,
    /// The group's entry in [`Network::next`]: its earliest finish and the
    /// lowest slot finishing then.
    next: Option<(SimTime, u32)>,
    seen_epoch: u64,
    frozen_epoch: u64,
    /// Listed in [`Network::stale_next`].
    stale: bool,
}

impl Group {
    /// Progress of a member at `now` at the current rate (not stored).
    fn v_at(&self, now: SimTime) -> f64 {
        let dt = now.0.saturating_sub(self.v_time.0) as f64 / 1e9;
        if dt > 0.0 && self.rate > 0.0 {
            self.v + self.rate * dt
        } else {
            self.v
        }
    }

    /// When a member with virtual finish `vfin` finishes at the current rate.
    fn finish_of(&self, vfin: f64) -> Option<SimTime> {
        let left = vfin - self.v;
        if left <= done_slack(self.v) {
            Some(self.v_time)
        } else if self.rate > 0.0 {
            let secs = left / self.rate;
            Some(SimTime(self.v_time.0.saturating_add(memfabric_migration::units::Nanos::from_secs_ceil(secs).0)))
        } else {
            None
        }
    }

    /// The earliest finish of a solved member and the lowest slot finishing
    /// then (members with nearby virtual finishes can round to one instant).
    fn earliest(&self) -> Option<(SimTime, u32)> {
        let mut it = self.by_finish.iter();
        let &(k0, s0) = it.next()?;
        let t0 = self.finish_of(f64::from_bits(k0))?;
        let mut slot = s0;
        for &(k, s) in it {
            if self.finish_of(f64::from_bits(k)) != Some(t0) {
                break;
            }
            slot = slot.min(s);
        }
        Some((t0, slot))
    }
}

#[derive(Debug, Clone)]
struct Flow {
    generation: u32,
    group: u32,
    bytes: f64,
    /// The group's progress when the flow joined.
    v_join: f64,
    /// `v_join + bytes`.
    vfin: f64,
    /// Index of the group's limiter segment current when the flow joined.
    segment: u32,
    /// Added since the last solve: no rate yet, not in the group's `by_finish`.
    pending: bool,
}

/// Flows, link capacities and the max-min solver.
#[derive(Debug, Clone)]
pub struct Network {
    capacity: Vec<f64>,
    /// Groups with members that cross each link direction.
    resource_groups: Vec<Vec<u32>>,
    /// Flows crossing each link direction.
    resource_flows: Vec<u32>,
    groups: Vec<Group>,
    group_index: HashMap<GroupKey, u32>,
    flows: Vec<Option<Flow>>,
    free_slots: Vec<u32>,
    next_generation: u32,
    active: usize,
    touched: Vec<usize>,
    touched_mark: Vec<bool>,
    /// Flows added since the last solve, with their generations.
    pending: Vec<(u32, u32)>,
    last_sample: Vec<(f64, f64, u32)>,
    samples: Vec<LinkSample>,
    solves: u64,
    epoch: u64,
    /// Every group's earliest finish: (time, slot, group).
    next: BTreeSet<(SimTime, u32, u32)>,
    /// Groups that lost a member since their entry in `next` was last set:
    /// their entries are refreshed before `next` is read, once per group
    /// however many members left (see [`Network::due_flows`]).
    stale_next: Vec<u32>,
    // Scratch space reused across solves.
    rem: Vec<f64>,
    unfrozen_weight: Vec<f64>,
    in_component: Vec<bool>,
    /// Buffers of [`Network::settle`], kept between solves so that a solve
    /// allocates nothing once they have grown.
    scratch: SolveScratch,
}

/// [`Network::settle`]'s working lists (empty between solves).
#[derive(Debug, Clone, Default)]
struct SolveScratch {
    resources: Vec<usize>,
    groups: Vec<u32>,
    rising: Vec<u32>,
    to_fix: Vec<(u32, f64, Limiter)>,
    /// Swapped with `touched` and `pending` at each solve.
    touched: Vec<usize>,
    pending: Vec<(u32, u32)>,
}

impl Network {
    /// A network of `capacities.len()` link directions.
    pub fn new(capacities: Vec<f64>) -> Network {
        let n = capacities.len();
        Network {
            resource_groups: vec![Vec::new(); n],
            resource_flows: vec![0; n],
            last_sample: vec![(f64::NAN, f64::NAN, u32::MAX); n],
            touched_mark: vec![false; n],
            rem: vec![0.0; n],
            unfrozen_weight: vec![0.0; n],
            in_component: vec![false; n],
            capacity: capacities,
            groups: Vec::new(),
            group_index: HashMap::new(),
            flows: Vec::new(),
            free_slots: Vec::new(),
            next_generation: 0,
            active: 0,
            touched: Vec::new(),
            pending: Vec::new(),
            samples: Vec::new(),
            solves: 0,
            epoch: 0,
            next: BTreeSet::new(),
            stale_next: Vec::new(),
            scratch: SolveScratch::default(),
        }
    }

    fn touch(&mut self, r: usize) {
        if !self.touched_mark[r] {
            self.touched_mark[r] = true;
            self.touched.push(r);
        }
    }

    fn flow(&self, id: FlowId) -> Option<&Flow> {
        self.flows.get(id.slot as usize)?.as_ref().filter(|f| f.generation == id.generation)
    }

    /// The group of flows with this route, cap and weight (created empty if new).
    fn group_for(&mut self, resources: Vec<usize>, cap: f64, weight: f64) -> u32 {
        let key = (resources, cap.to_bits(), weight.to_bits());
        if let Some(&g) = self.group_index.get(&key) {
            return g;
        }
        let g = self.groups.len() as u32;
        self.groups.push(Group {
            resources: key.0.clone(),
            cap,
            weight,
            members: 0,
            rate: 0.0,
            limiter: Limiter::None,
            v: 0.0,
            v_time: SimTime(0),
            segments: Vec::new(),
            by_finish: BTreeSet::new(),
            next: None,
            seen_epoch: 0,
            frozen_epoch: 0,
            stale: false,
        });
        self.group_index.insert(key, g);
        g
    }

    /// Makes `entry` group `g`'s entry in the set of earliest finishes.
    fn set_group_next(&mut self, g: u32, entry: Option<(SimTime, u32)>) {
        let group = &mut self.groups[g as usize];
        if group.next == entry {
            return;
        }
        if let Some((t, s)) = group.next {
            self.next.remove(&(t, s, g));
        }
        group.next = entry;
        if let Some((t, s)) = entry {
            self.next.insert((t, s, g));
        }
    }

    /// Starts a flow of `bytes` over `resources` with its own rate cap (bytes/s;
    /// `f64::INFINITY` for none) and a fairness `weight` (its number of TCP
    /// streams: TCP shares a bottleneck per connection, so a flow of n streams
    /// gets n shares). Its rate is set by the next [`Network::settle`].
    pub fn add_flow(&mut self, now: SimTime, resources: Vec<usize>, cap: f64, weight: f64, bytes: f64) -> FlowId {
        assert!(weight > 0.0 && weight.is_finite(), "flow weight must be positive");
        let gi = self.group_for(resources, cap, weight);
        let group = &mut self.groups[gi as usize];
        if group.members == 0 {
            // A group (re)forms: progress counts from here.
            group.v = 0.0;
            group.v_time = now;
            group.rate = 0.0;
            group.limiter = Limiter::None;
            group.segments.clear();
            group.segments.push((Limiter::None, 0.0));
            for &r in &group.resources {
                self.resource_groups[r].push(gi);
            }
        }
        group.members += 1;
        // The group's state is left as the last solve set it (members'
        // finishes stay as solved until the next solve); the new flow starts
        // from the progress the group has at `now`.
        let v_join = group.v_at(now);
        let bytes = bytes.max(0.0);
        let flow_segment = (group.segments.len() - 1) as u32;
        for i in 0..self.groups[gi as usize].resources.len() {
            let r = self.groups[gi as usize].resources[i];
            self.resource_flows[r] += 1;
            self.touch(r);
        }
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.flows.push(None);
            (self.flows.len() - 1) as u32
        });
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        self.flows[slot as usize] = Some(Flow {
            generation,
            group: gi,
            bytes,
            v_join,
            vfin: v_join + bytes,
            segment: flow_segment,
            pending: true,
        });
        self.active += 1;
        // Flows without links (same-site transfers) are found through this list.
        self.pending.push((slot, generation));
        FlowId { slot, generation }
    }

    /// Removes a flow (finished or cancelled) and returns what it carried.
    pub fn remove_flow(&mut self, now: SimTime, id: FlowId) -> Option<FlowTotals> {
        self.flow(id)?;
        let flow = self.flows[id.slot as usize].take().expect("checked above");
        self.free_slots.push(id.slot);
        self.active -= 1;
        let gi = flow.group;
        let group = &mut self.groups[gi as usize];
        let mut totals = FlowTotals::default();
        if !flow.pending {
            // Progress per limiter segment since the flow joined, clipped at its size.
            let v_now = group.v_at(now);
            let segs = &group.segments[flow.segment as usize..];
            for (i, &(limiter, start)) in segs.iter().enumerate() {
                let from = if i == 0 { flow.v_join } else { start.max(flow.v_join) };
                let to = segs.get(i + 1).map_or(v_now, |s| s.1);
                let moved = (to - from).min(flow.bytes - totals.sent);
                if moved > 0.0 {
                    totals.sent += moved;
                    match limiter {
                        Limiter::Cap => totals.sent_cap_limited += moved,
                        Limiter::Link(r) => match totals.sent_by_link.iter_mut().find(|(x, _)| *x == r) {
                            Some((_, b)) => *b += moved,
                            None => totals.sent_by_link.push((r, moved)),
                        },
                        Limiter::None => {}
                    }
                }
            }
            group.by_finish.remove(&(flow.vfin.to_bits(), id.slot));
        }
        if flow.bytes - totals.sent <= done_slack(flow.vfin) {
            totals.sent = flow.bytes;
        }
        group.members -= 1;
        for i in 0..self.groups[gi as usize].resources.len() {
            let r = self.groups[gi as usize].resources[i];
            self.resource_flows[r] -= 1;
            self.touch(r);
            if self.groups[gi as usize].members == 0 {
                let list = &mut self.resource_groups[r];
                if let Some(pos) = list.iter().position(|&g| g == gi) {
                    list.swap_remove(pos);
                }
            }
        }
        // The rest keep their solved finishes until the next solve; the
        // group's entry in `next` is refreshed before `next` is read.
        let group = &mut self.groups[gi as usize];
        if !group.stale {
            group.stale = true;
            self.stale_next.push(gi);
        }
        Some(totals)
    }

    /// Changes the capacity of link direction `r` (0 for an outage).
    pub fn set_capacity(&mut self, r: usize, capacity: f64) {
        self.capacity[r] = capacity.max(0.0);
        self.touch(r);
    }

    /// Capacity of link direction `r`.
    pub fn capacity(&self, r: usize) -> f64 {
        self.capacity[r]
    }

    /// Current rate of a flow, bytes per second (0 until its first solve).
    pub fn rate(&self, id: FlowId) -> f64 {
        self.flow(id).map_or(0.0, |f| if f.pending { 0.0 } else { self.groups[f.group as usize].rate })
    }

    /// What bounded the flow in the last solve.
    pub fn limiter(&self, id: FlowId) -> Limiter {
        self.flow(id).map_or(Limiter::None, |f| if f.pending { Limiter::None } else { self.groups[f.group as usize].limiter })
    }

    /// Flows currently in the network.
    pub fn active_flows(&self) -> usize {
        self.active
    }

    /// Groups of interchangeable flows that currently have members.
    pub fn active_groups(&self) -> usize {
        self.groups.iter().filter(|g| g.members > 0).count()
    }

    /// Number of component solves so far.
    pub fn solves(&self) -> u64 {
        self.solves
    }

    /// Recorded link-load samples.
    pub fn samples(&self) -> &[LinkSample] {
        &self.samples
    }

    /// Re-solves the rates of groups affected by changes since the last call.
    ///
    /// One pass discovers the component (groups reachable from the touched
    /// link directions through shared links), brings each group's progress up
    /// to `now` and sums the weights per link; progressive filling then sets
    /// the rates; a last pass updates earliest finishes and link loads.
    pub fn settle(&mut self, now: SimTime) {
        if self.touched.is_empty() && self.pending.is_empty() {
            return;
        }
        self.epoch += 1;
        let epoch = self.epoch;
        self.solves += 1;
        let mut comp_resources = std::mem::take(&mut self.scratch.resources);
        let mut comp_groups = std::mem::take(&mut self.scratch.groups);
        let mut stack = std::mem::replace(&mut self.touched, std::mem::take(&mut self.scratch.touched));
        // Smallest cap per unit of weight among the groups found: the fill
        // level at which the first cap binds.
        let mut min_cap = f64::INFINITY;
        for &r in &stack {
            self.touched_mark[r] = false;
            if !self.in_component[r] {
                self.in_component[r] = true;
                comp_resources.push(r);
                self.rem[r] = self.capacity[r];
                self.unfrozen_weight[r] = 0.0;
            }
        }
        // Visits one group: marks it, advances it, counts it on its links and
        // queues links not yet in the component.
        macro_rules! visit {
            ($gi:expr) => {{
                let gi = $gi;
                let g = &mut self.groups[gi as usize];
                if g.seen_epoch != epoch {
                    g.seen_epoch = epoch;
                    g.v = g.v_at(now);
                    g.v_time = now;
                    min_cap = min_cap.min(g.cap / g.weight);
                    comp_groups.push(gi);
                    let w = g.weight * g.members as f64;
                    for &r in &g.resources {
                        if !self.in_component[r] {
                            self.in_component[r] = true;
                            comp_resources.push(r);
                            self.rem[r] = self.capacity[r];
                            self.unfrozen_weight[r] = 0.0;
                            stack.push(r);
                        }
                        self.unfrozen_weight[r] += w;
                    }
                }
            }};
        }
        let mut pending = std::mem::replace(&mut self.pending, std::mem::take(&mut self.scratch.pending));
        for &(slot, generation) in &pending {
            // Groups without links are found only here; removed flows are skipped.
            if let Some(f) = self.flows[slot as usize].as_ref().filter(|f| f.generation == generation) {
                visit!(f.group);
            }
        }
        while let Some(r) = stack.pop() {
            for i in 0..self.resource_groups[r].len() {
                visit!(self.resource_groups[r][i]);
            }
        }
        // Discovery order is deterministic; resources are sorted so that ties
        // between equally tight links break the same way every time.
        comp_resources.sort_unstable();

        // Progressive filling: `rising` holds the groups whose rate is not fixed yet.
        let mut rising = std::mem::take(&mut self.scratch.rising);
        let mut to_fix = std::mem::take(&mut self.scratch.to_fix);
        let mut first = true;
        let mut left = comp_groups.len();
        while left > 0 {
            let list: &[u32] = if first { &comp_groups } else { &rising };
            if !first {
                min_cap = list
                    .iter()
                    .map(|&g| {
                        let g = &self.groups[g as usize];
                        g.cap / g.weight
                    })
                    .fold(f64::INFINITY, f64::min);
            }
            // Fair share per unit of weight on the tightest link direction.
            let mut best_share = f64::INFINITY;
            let mut best_res = usize::MAX;
            for &r in &comp_resources {
                let w = self.unfrozen_weight[r];
                if w > 1e-12 {
                    let share = self.rem[r].max(0.0) / w;
                    if share < best_share {
                        best_share = share;
                        best_res = r;
                    }
                }
            }
            to_fix.clear();
            if min_cap <= best_share {
                // Every rising group whose cap is at this level stops at its cap.
                for &gi in list {
                    let g = &self.groups[gi as usize];
                    if g.frozen_epoch != epoch && g.cap / g.weight <= min_cap {
                        to_fix.push((gi, if g.cap.is_finite() { g.cap } else { 0.0 }, Limiter::Cap));
                    }
                }
            } else if best_res != usize::MAX {
                // Every rising group on the tightest link stops at its share.
                for &gi in &self.resource_groups[best_res] {
                    let g = &self.groups[gi as usize];
                    if g.frozen_epoch != epoch {
                        to_fix.push((gi, best_share * g.weight, Limiter::Link(best_res)));
                    }
                }
            } else {
                unreachable!("a rising group has either a finite cap or a link");
            }
            left -= to_fix.len();
            for (gi, rate, limiter) in to_fix.drain(..) {
                self.freeze(gi, rate, limiter, epoch);
            }
            if left > 0 {
                let keep = |g: &u32, groups: &Vec<Group>| groups[*g as usize].frozen_epoch != epoch;
                if first {
                    rising.extend(comp_groups.iter().copied().filter(|g| keep(g, &self.groups)));
                } else {
                    rising.retain(|g| keep(g, &self.groups));
                }
            }
            first = false;
        }

        // New members enter their groups' finish order.
        for &(slot, generation) in &pending {
            if let Some(f) = self.flows[slot as usize].as_mut().filter(|f| f.generation == generation) {
                f.pending = false;
                let key = (f.vfin.to_bits(), slot);
                self.groups[f.group as usize].by_finish.insert(key);
            }
        }
        // Limiter segments, earliest finishes and link loads.
        for &r in &comp_resources {
            self.rem[r] = 0.0; // reused as the throughput accumulator
        }
        for &gi in &comp_groups {
            let g = &mut self.groups[gi as usize];
            if g.segments.last().map(|s| s.0) != Some(g.limiter) {
                g.segments.push((g.limiter, g.v));
            }
            let tput = g.rate * g.members as f64;
            for &r in &g.resources {
                self.rem[r] += tput;
            }
            let entry = g.earliest();
            self.set_group_next(gi, entry);
        }
        for &r in &comp_resources {
            self.in_component[r] = false;
            let tput = self.rem[r];
            let n = self.resource_flows[r];
            let cap = self.capacity[r];
            if self.last_sample[r] != (cap, tput, n) {
                self.last_sample[r] = (cap, tput, n);
                self.samples.push(LinkSample { time: now, resource: r, capacity: cap, throughput: tput, flows: n });
            }
        }
        // The buffers go back empty, keeping their capacity.
        (comp_resources.clear(), comp_groups.clear(), stack.clear(), pending.clear(), rising.clear());
        self.scratch = SolveScratch { resources: comp_resources, groups: comp_groups, rising, to_fix, touched: stack, pending };
    }

    fn freeze(&mut self, gi: u32, rate: f64, limiter: Limiter, epoch: u64) {
        let g = &mut self.groups[gi as usize];
        g.frozen_epoch = epoch;
        g.rate = rate;
        g.limiter = limiter;
        let n = g.members as f64;
        for &r in &g.resources {
            self.rem[r] -= rate * n;
            self.unfrozen_weight[r] -= g.weight * n;
        }
    }

    /// Sets the entries in `next` of the groups that lost members.
    fn refresh_stale(&mut self) {
        for gi in std::mem::take(&mut self.stale_next) {
            self.groups[gi as usize].stale = false;
            let entry = self.groups[gi as usize].earliest();
            self.set_group_next(gi, entry);
        }
    }

    /// Every flow that finishes at or before `now`, in the order
    /// [`Network::next_completion`] would give them one by one if each were
    /// removed before the next call: by finish, then slot. Removing them
    /// (and adding flows, which wait for the next [`Network::settle`]) does
    /// not change when the others finish, so the list stays valid while the
    /// caller removes them; a flow the caller removed another way meanwhile
    /// is simply gone ([`Network::remove_flow`] returns `None`). This costs
    /// O(k log k) for k flows due at once, where removing them one at a time
    /// through `next_completion` cost O(k²) when they finish together.
    pub fn due_flows(&mut self, now: SimTime) -> Vec<FlowId> {
        self.refresh_stale();
        let mut due: Vec<(SimTime, u32)> = Vec::new();
        for &(t, _, gi) in &self.next {
            if t > now {
                break;
            }
            let g = &self.groups[gi as usize];
            for &(k, slot) in &g.by_finish {
                match g.finish_of(f64::from_bits(k)) {
                    Some(t) if t <= now => due.push((t, slot)),
                    _ => break,
                }
            }
        }
        due.sort_unstable();
        due.into_iter()
            .map(|(_, slot)| FlowId { slot, generation: self.flows[slot as usize].as_ref().expect("listed flows exist").generation })
            .collect()
    }

    /// The earliest instant at which a flow finishes, and which (ties: lowest slot).
    /// Flows added since the last [`Network::settle`] are not considered.
    pub fn next_completion(&mut self) -> Option<(SimTime, FlowId)> {
        self.refresh_stale();
        let &(t, slot, _) = self.next.first()?;
        let generation = self.flows[slot as usize].as_ref().expect("listed flows exist").generation;
        Some((t, FlowId { slot, generation }))
    }

    /// Bytes still to send on a flow, as of `now`.
    pub fn remaining(&self, id: FlowId, now: SimTime) -> f64 {
        self.flow(id).map_or(0.0, |f| {
            if f.pending {
                f.bytes
            } else {
                (f.vfin - self.groups[f.group as usize].v_at(now)).max(0.0)
            }
        })
    }
}

#[cfg(test)]
mod tests;
