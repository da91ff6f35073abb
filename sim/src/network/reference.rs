//! The reference flow solver: the one memfabric used before the grouped solver
//! of [`super::Network`], kept unchanged so that tests can check the new one
//! against it (same rates, same finish times, same accounting).
//!
//! Every change marks the link directions it touches; [`Network::settle`]
//! re-solves the whole connected component of the flow–link graph reachable
//! from them, flow by flow, by progressive filling. Its cost per event grows
//! with the flows of the component, which on one shared link is every flow.

use super::{FlowId, FlowTotals, Limiter, LinkSample, DONE_BYTES};
use crate::engine::SimTime;

#[derive(Debug, Clone)]
struct Flow {
    generation: u32,
    resources: Vec<usize>,
    cap: f64,
    weight: f64,
    remaining: f64,
    rate: f64,
    last_update: SimTime,
    limiter: Limiter,
    sent: f64,
    sent_cap_limited: f64,
    sent_by_link: Vec<(usize, f64)>,
    seen_epoch: u64,
    frozen_epoch: u64,
    /// When the flow finishes at its current rate (`u64::MAX` if never); set by solves.
    finish: SimTime,
}

/// Flows, link capacities and the max-min solver.
#[derive(Debug)]
pub struct Network {
    capacity: Vec<f64>,
    resource_flows: Vec<Vec<u32>>,
    flows: Vec<Option<Flow>>,
    free_slots: Vec<u32>,
    next_generation: u32,
    active: Vec<u32>,
    touched: Vec<usize>,
    touched_mark: Vec<bool>,
    new_flows: Vec<u32>,
    last_sample: Vec<(f64, f64, u32)>,
    samples: Vec<LinkSample>,
    solves: u64,
    epoch: u64,
    next_cache: Option<Option<(SimTime, u32)>>,
    // Scratch space reused across solves.
    rem: Vec<f64>,
    unfrozen_weight: Vec<f64>,
    in_component: Vec<bool>,
}

impl Network {
    /// A network of `capacities.len()` link directions.
    pub fn new(capacities: Vec<f64>) -> Network {
        let n = capacities.len();
        Network {
            resource_flows: vec![Vec::new(); n],
            last_sample: vec![(f64::NAN, f64::NAN, u32::MAX); n],
            touched_mark: vec![false; n],
            rem: vec![0.0; n],
            unfrozen_weight: vec![0.0; n],
            in_component: vec![false; n],
            capacity: capacities,
            flows: Vec::new(),
            free_slots: Vec::new(),
            next_generation: 0,
            active: Vec::new(),
            touched: Vec::new(),
            new_flows: Vec::new(),
            samples: Vec::new(),
            solves: 0,
            epoch: 0,
            next_cache: None,
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

    /// Starts a flow of `bytes` over `resources` with its own rate cap (bytes/s;
    /// `f64::INFINITY` for none) and a fairness `weight` (its number of TCP
    /// streams: TCP shares a bottleneck per connection, so a flow of n streams
    /// gets n shares). Its rate is set by the next [`Network::settle`].
    pub fn add_flow(&mut self, now: SimTime, resources: Vec<usize>, cap: f64, weight: f64, bytes: f64) -> FlowId {
        assert!(weight > 0.0 && weight.is_finite(), "flow weight must be positive");
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.flows.push(None);
            (self.flows.len() - 1) as u32
        });
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        for &r in &resources {
            self.resource_flows[r].push(slot);
            self.touch(r);
        }
        self.flows[slot as usize] = Some(Flow {
            generation,
            resources,
            cap,
            weight,
            remaining: bytes.max(0.0),
            rate: 0.0,
            last_update: now,
            limiter: Limiter::None,
            sent: 0.0,
            sent_cap_limited: 0.0,
            sent_by_link: Vec::new(),
            seen_epoch: 0,
            frozen_epoch: 0,
            finish: SimTime(u64::MAX),
        });
        self.active.push(slot);
        // Flows without links (same-site transfers) are found through this list.
        self.new_flows.push(slot);
        self.next_cache = None;
        FlowId { slot, generation }
    }

    fn advance(flow: &mut Flow, now: SimTime) {
        let dt = now.0.saturating_sub(flow.last_update.0) as f64 / 1e9;
        if dt > 0.0 && flow.rate > 0.0 {
            let moved = (flow.rate * dt).min(flow.remaining);
            flow.remaining -= moved;
            flow.sent += moved;
            match flow.limiter {
                Limiter::Cap => flow.sent_cap_limited += moved,
                Limiter::Link(r) => match flow.sent_by_link.iter_mut().find(|(x, _)| *x == r) {
                    Some((_, b)) => *b += moved,
                    None => flow.sent_by_link.push((r, moved)),
                },
                Limiter::None => {}
            }
        }
        flow.last_update = now;
    }

    /// Removes a flow (finished or cancelled) and returns what it carried.
    pub fn remove_flow(&mut self, now: SimTime, id: FlowId) -> Option<FlowTotals> {
        self.flow(id)?;
        let mut flow = self.flows[id.slot as usize].take().expect("checked above");
        Self::advance(&mut flow, now);
        if flow.remaining <= DONE_BYTES {
            flow.sent += flow.remaining;
        }
        for &r in &flow.resources {
            let list = &mut self.resource_flows[r];
            if let Some(pos) = list.iter().position(|&s| s == id.slot) {
                list.swap_remove(pos);
            }
            self.touch(r);
        }
        if let Some(pos) = self.active.iter().position(|&s| s == id.slot) {
            self.active.swap_remove(pos);
        }
        self.free_slots.push(id.slot);
        self.next_cache = None;
        Some(FlowTotals { sent: flow.sent, sent_cap_limited: flow.sent_cap_limited, sent_by_link: flow.sent_by_link })
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

    /// Current rate of a flow, bytes per second.
    pub fn rate(&self, id: FlowId) -> f64 {
        self.flow(id).map_or(0.0, |f| f.rate)
    }

    /// What bounded the flow in the last solve.
    pub fn limiter(&self, id: FlowId) -> Limiter {
        self.flow(id).map_or(Limiter::None, |f| f.limiter)
    }

    /// Flows currently in the network.
    pub fn active_flows(&self) -> usize {
        self.active.len()
    }

    /// Number of component solves so far.
    pub fn solves(&self) -> u64 {
        self.solves
    }

    /// Recorded link-load samples.
    pub fn samples(&self) -> &[LinkSample] {
        &self.samples
    }

    /// Re-solves the rates of flows affected by changes since the last call.
    ///
    /// One pass discovers the component (flows reachable from the touched
    /// link directions through shared links), brings each flow's progress up
    /// to `now` and counts flows per link; progressive filling then sets the
    /// rates; a last pass computes finish times and link loads.
    pub fn settle(&mut self, now: SimTime) {
        if self.touched.is_empty() && self.new_flows.is_empty() {
            return;
        }
        self.epoch += 1;
        let epoch = self.epoch;
        self.solves += 1;
        let mut comp_resources: Vec<usize> = Vec::new();
        let mut comp_flows: Vec<u32> = Vec::new();
        let mut stack: Vec<usize> = std::mem::take(&mut self.touched);
        // Smallest cap per unit of weight among the flows found: the fill
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
        // Visits one flow: marks it, advances it, counts it on its links and
        // queues links not yet in the component.
        macro_rules! visit {
            ($slot:expr) => {{
                let slot = $slot;
                let f = self.flows[slot as usize].as_mut().expect("listed flows exist");
                if f.seen_epoch != epoch {
                    f.seen_epoch = epoch;
                    Self::advance(f, now);
                    min_cap = min_cap.min(f.cap / f.weight);
                    comp_flows.push(slot);
                    for &r in &f.resources {
                        if !self.in_component[r] {
                            self.in_component[r] = true;
                            comp_resources.push(r);
                            self.rem[r] = self.capacity[r];
                            self.unfrozen_weight[r] = 0.0;
                            stack.push(r);
                        }
                        self.unfrozen_weight[r] += f.weight;
                    }
                }
            }};
        }
        for slot in std::mem::take(&mut self.new_flows) {
            // Flows without links are found only here; removed ones are skipped.
            if self.flows[slot as usize].is_some() {
                visit!(slot);
            }
        }
        while let Some(r) = stack.pop() {
            for i in 0..self.resource_flows[r].len() {
                visit!(self.resource_flows[r][i]);
            }
        }
        // Discovery order is deterministic; resources are sorted so that ties
        // between equally tight links break the same way every time.
        comp_resources.sort_unstable();

        // Progressive filling: `rising` holds the flows whose rate is not fixed yet.
        let mut rising: Vec<u32> = Vec::new();
        let mut first = true;
        let mut left = comp_flows.len();
        while left > 0 {
            let list: &[u32] = if first { &comp_flows } else { &rising };
            if !first {
                min_cap = list
                    .iter()
                    .map(|s| {
                        let f = self.flows[*s as usize].as_ref().expect("exists");
                        f.cap / f.weight
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
            let mut to_fix: Vec<(u32, f64, Limiter)> = Vec::new();
            if min_cap <= best_share {
                // Every rising flow whose cap is at this level stops at its cap.
                for &slot in list {
                    let f = self.flows[slot as usize].as_ref().expect("exists");
                    if f.frozen_epoch != epoch && f.cap / f.weight <= min_cap {
                        to_fix.push((slot, if f.cap.is_finite() { f.cap } else { 0.0 }, Limiter::Cap));
                    }
                }
            } else if best_res != usize::MAX {
                // Every rising flow on the tightest link stops at its share.
                for &slot in &self.resource_flows[best_res] {
                    let f = self.flows[slot as usize].as_ref().expect("exists");
                    if f.frozen_epoch != epoch {
                        to_fix.push((slot, best_share * f.weight, Limiter::Link(best_res)));
                    }
                }
            } else {
                unreachable!("a rising flow has either a finite cap or a link");
            }
            left -= to_fix.len();
            for (slot, rate, limiter) in to_fix {
                self.freeze(slot, rate, limiter, epoch);
            }
            if left > 0 {
                let keep = |s: &u32, flows: &Vec<Option<Flow>>| flows[*s as usize].as_ref().expect("exists").frozen_epoch != epoch;
                if first {
                    rising = comp_flows.iter().copied().filter(|s| keep(s, &self.flows)).collect();
                } else {
                    rising.retain(|s| keep(s, &self.flows));
                }
            }
            first = false;
        }

        // Finish times and link loads.
        for &r in &comp_resources {
            self.rem[r] = 0.0; // reused as the throughput accumulator
        }
        let mut next: Option<(SimTime, u32)> = None;
        for &slot in &comp_flows {
            let f = self.flows[slot as usize].as_mut().expect("exists");
            f.finish = Self::finish_time(f);
            if f.finish.0 != u64::MAX && next.is_none_or(|b| (f.finish, slot) < b) {
                next = Some((f.finish, slot));
            }
            for &r in &f.resources {
                self.rem[r] += f.rate;
            }
        }
        // A solve that covered every active flow knows the next completion.
        self.next_cache = (comp_flows.len() == self.active.len()).then_some(next);
        for &r in &comp_resources {
            self.in_component[r] = false;
            let tput = self.rem[r];
            let n = self.resource_flows[r].len() as u32;
            let cap = self.capacity[r];
            if self.last_sample[r] != (cap, tput, n) {
                self.last_sample[r] = (cap, tput, n);
                self.samples.push(LinkSample { time: now, resource: r, capacity: cap, throughput: tput, flows: n });
            }
        }
    }

    fn freeze(&mut self, slot: u32, rate: f64, limiter: Limiter, epoch: u64) {
        let f = self.flows[slot as usize].as_mut().expect("exists");
        f.frozen_epoch = epoch;
        f.rate = rate;
        f.limiter = limiter;
        for &r in &f.resources {
            self.rem[r] -= rate;
            self.unfrozen_weight[r] -= f.weight;
        }
    }

    fn finish_time(f: &Flow) -> SimTime {
        if f.remaining <= DONE_BYTES {
            f.last_update
        } else if f.rate > 0.0 {
            let secs = f.remaining / f.rate;
            SimTime(f.last_update.0.saturating_add(memfabric_migration::units::Nanos::from_secs_ceil(secs).0))
        } else {
            SimTime(u64::MAX)
        }
    }

    /// The earliest instant at which a flow finishes, and which (ties: lowest slot).
    /// Flows added since the last [`Network::settle`] are not considered.
    pub fn next_completion(&mut self) -> Option<(SimTime, FlowId)> {
        let best = match self.next_cache {
            Some(cached) => cached,
            None => {
                let b = self.scan_next();
                self.next_cache = Some(b);
                b
            }
        };
        best.map(|(t, slot)| {
            let generation = self.flows[slot as usize].as_ref().expect("exists").generation;
            (t, FlowId { slot, generation })
        })
    }

    fn scan_next(&self) -> Option<(SimTime, u32)> {
        let mut best: Option<(SimTime, u32)> = None;
        for &slot in &self.active {
            let f = self.flows[slot as usize].as_ref().expect("active flows exist");
            if f.finish.0 == u64::MAX {
                continue;
            }
            if best.is_none_or(|b| (f.finish, slot) < b) {
                best = Some((f.finish, slot));
            }
        }
        best
    }

    /// Bytes still to send on a flow, as of `now`.
    pub fn remaining(&self, id: FlowId, now: SimTime) -> f64 {
        self.flow(id).map_or(0.0, |f| {
            let dt = now.0.saturating_sub(f.last_update.0) as f64 / 1e9;
            (f.remaining - f.rate * dt).max(0.0)
        })
    }
}
