//! The network: flows over link directions, shared by max-min fairness.
//!
//! Every transfer is a *flow* with a route (the link directions it crosses), a
//! number of bytes left, and a *cap* of its own (its TCP streams' bound, or a
//! configured bandwidth limit). Rates are the max-min fair allocation with caps
//! ("progressive filling", as in SimGrid's network model): raise all rates
//! together; a flow stops rising when it reaches its cap or when a link it
//! crosses is full; repeat with the rest.
//!
//! Incremental work: changes (flow added or removed, capacity changed) only mark
//! the link directions they touch. [`Network::settle`] then re-solves just the
//! flows connected to those links through shared links (a connected component of
//! the flow–link graph), so flows on other links keep their rates untouched,
//! and several changes at one instant cost one solve. The next completion is
//! found by a scan of active flows (cheaper than a heap when most rates change
//! together, as they do on a shared bottleneck).

pub mod tcp;

use crate::engine::SimTime;

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

#[derive(Debug, Clone)]
struct Flow {
    generation: u32,
    resources: Vec<usize>,
    cap: f64,
    remaining: f64,
    rate: f64,
    last_update: SimTime,
    limiter: Limiter,
    sent: f64,
    sent_cap_limited: f64,
    sent_by_link: Vec<(usize, f64)>,
    frozen: bool,
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
    // Scratch space reused across solves.
    rem: Vec<f64>,
    unfrozen_count: Vec<u32>,
    in_component: Vec<bool>,
}

/// A flow finishes when fewer than this many bytes remain (rounding slack).
const DONE_BYTES: f64 = 1e-3;

impl Network {
    /// A network of `capacities.len()` link directions.
    pub fn new(capacities: Vec<f64>) -> Network {
        let n = capacities.len();
        Network {
            resource_flows: vec![Vec::new(); n],
            last_sample: vec![(f64::NAN, f64::NAN, u32::MAX); n],
            touched_mark: vec![false; n],
            rem: vec![0.0; n],
            unfrozen_count: vec![0; n],
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
    /// `f64::INFINITY` for none). Its rate is set by the next [`Network::settle`].
    pub fn add_flow(&mut self, now: SimTime, resources: Vec<usize>, cap: f64, bytes: f64) -> FlowId {
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
            remaining: bytes.max(0.0),
            rate: 0.0,
            last_update: now,
            limiter: Limiter::None,
            sent: 0.0,
            sent_cap_limited: 0.0,
            sent_by_link: Vec::new(),
            frozen: false,
        });
        self.active.push(slot);
        // Flows without links (same-site transfers) are found through this list.
        self.new_flows.push(slot);
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
    pub fn settle(&mut self, now: SimTime) {
        if self.touched.is_empty() && self.new_flows.is_empty() {
            return;
        }
        // Gather the component: resources reachable from touched ones through flows.
        let mut comp_resources: Vec<usize> = Vec::new();
        let mut comp_flows: Vec<u32> = Vec::new();
        let mut stack: Vec<usize> = std::mem::take(&mut self.touched);
        for &r in &stack {
            self.touched_mark[r] = false;
        }
        for &r in &stack {
            if !self.in_component[r] {
                self.in_component[r] = true;
                comp_resources.push(r);
            }
        }
        for slot in std::mem::take(&mut self.new_flows) {
            // Removed since it was added: nothing to solve.
            let Some(f) = self.flows[slot as usize].as_mut() else { continue };
            if f.resources.is_empty() && !f.frozen {
                f.frozen = true;
                comp_flows.push(slot);
            }
        }
        while let Some(r) = stack.pop() {
            for &slot in &self.resource_flows[r] {
                let f = self.flows[slot as usize].as_mut().expect("listed flows exist");
                if f.frozen {
                    continue; // already collected (frozen doubles as "seen" here)
                }
                f.frozen = true;
                comp_flows.push(slot);
                for &r2 in &f.resources {
                    if !self.in_component[r2] {
                        self.in_component[r2] = true;
                        comp_resources.push(r2);
                        stack.push(r2);
                    }
                }
            }
        }
        // Deterministic order regardless of discovery order.
        comp_flows.sort_unstable();
        comp_resources.sort_unstable();
        self.solves += 1;

        // Bring every affected flow's progress up to now at its old rate.
        for &slot in &comp_flows {
            let f = self.flows[slot as usize].as_mut().expect("exists");
            Self::advance(f, now);
            f.frozen = false;
        }
        for &r in &comp_resources {
            self.rem[r] = self.capacity[r];
            self.unfrozen_count[r] = 0;
        }
        for &slot in &comp_flows {
            let f = self.flows[slot as usize].as_ref().expect("exists");
            for &r in &f.resources {
                self.unfrozen_count[r] += 1;
            }
        }
        // Flows with no resources (same-site transfers) only have their cap.
        let mut by_cap: Vec<u32> = comp_flows.clone();
        by_cap.sort_by(|a, b| {
            let fa = self.flows[*a as usize].as_ref().expect("exists").cap;
            let fb = self.flows[*b as usize].as_ref().expect("exists").cap;
            fa.total_cmp(&fb).then(a.cmp(b))
        });
        let mut cap_cursor = 0usize;
        let mut unfrozen = comp_flows.len();
        while unfrozen > 0 {
            // Fair share of the tightest resource.
            let mut best_share = f64::INFINITY;
            let mut best_res = usize::MAX;
            for &r in &comp_resources {
                let n = self.unfrozen_count[r];
                if n > 0 {
                    let share = self.rem[r].max(0.0) / n as f64;
                    if share < best_share {
                        best_share = share;
                        best_res = r;
                    }
                }
            }
            // Smallest cap among unfrozen flows.
            while cap_cursor < by_cap.len()
                && self.flows[by_cap[cap_cursor] as usize].as_ref().expect("exists").frozen
            {
                cap_cursor += 1;
            }
            let min_cap = by_cap
                .get(cap_cursor)
                .map_or(f64::INFINITY, |s| self.flows[*s as usize].as_ref().expect("exists").cap);
            if min_cap <= best_share {
                // Freeze every unfrozen flow whose cap is at this level.
                while cap_cursor < by_cap.len() {
                    let slot = by_cap[cap_cursor];
                    let f = self.flows[slot as usize].as_ref().expect("exists");
                    if f.frozen {
                        cap_cursor += 1;
                        continue;
                    }
                    if f.cap > min_cap {
                        break;
                    }
                    let rate = if f.cap.is_finite() { f.cap } else { 0.0 };
                    self.freeze(slot, rate, Limiter::Cap);
                    unfrozen -= 1;
                    cap_cursor += 1;
                }
            } else if best_res != usize::MAX {
                let level = best_share;
                let slots: Vec<u32> = self.resource_flows[best_res].clone();
                for slot in slots {
                    if !self.flows[slot as usize].as_ref().expect("exists").frozen {
                        self.freeze(slot, level, Limiter::Link(best_res));
                        unfrozen -= 1;
                    }
                }
                self.unfrozen_count[best_res] = 0;
            } else {
                unreachable!("an unfrozen flow has either a finite cap or a resource");
            }
        }
        for &slot in &comp_flows {
            self.flows[slot as usize].as_mut().expect("exists").frozen = false;
        }
        // Record loads that changed.
        for &r in &comp_resources {
            self.in_component[r] = false;
            let mut tput = 0.0;
            for &slot in &self.resource_flows[r] {
                tput += self.flows[slot as usize].as_ref().expect("exists").rate;
            }
            let n = self.resource_flows[r].len() as u32;
            let cap = self.capacity[r];
            if self.last_sample[r] != (cap, tput, n) {
                self.last_sample[r] = (cap, tput, n);
                self.samples.push(LinkSample { time: now, resource: r, capacity: cap, throughput: tput, flows: n });
            }
        }
    }

    fn freeze(&mut self, slot: u32, rate: f64, limiter: Limiter) {
        let f = self.flows[slot as usize].as_mut().expect("exists");
        f.frozen = true;
        f.rate = rate;
        f.limiter = limiter;
        for &r in &f.resources {
            self.rem[r] -= rate;
            self.unfrozen_count[r] -= 1;
        }
    }

    /// The earliest instant at which a flow finishes, and which (ties: lowest slot).
    pub fn next_completion(&self) -> Option<(SimTime, FlowId)> {
        let mut best: Option<(SimTime, FlowId)> = None;
        for &slot in &self.active {
            let f = self.flows[slot as usize].as_ref().expect("active flows exist");
            let t = if f.remaining <= DONE_BYTES {
                f.last_update
            } else if f.rate > 0.0 {
                let secs = f.remaining / f.rate;
                SimTime(f.last_update.0.saturating_add(memfabric_migration::units::Nanos::from_secs_ceil(secs).0))
            } else {
                continue;
            };
            let id = FlowId { slot, generation: f.generation };
            if best.is_none_or(|(bt, bid)| (t, id.slot) < (bt, bid.slot)) {
                best = Some((t, id));
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

#[cfg(test)]
mod tests;
