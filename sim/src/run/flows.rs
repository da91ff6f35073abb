//! A migration's flows in the network: starting the flow of a stage (its
//! reduced bytes and its caps: network, CPU pipeline, index queries),
//! settling the network and waking on the next completion, cutting a flow
//! short, and accounting what each flow carried (per stage, per link, per cap).

use super::*;

/// The network side of a flow: where it goes, its own cap and what that cap
/// is (when not the migration's network cap), and its fairness weight.
pub(super) struct FlowSpec {
    pub(super) resources: Vec<usize>,
    pub(super) cap: f64,
    pub(super) weight: f64,
    pub(super) own_kind: Option<CapKind>,
}

/// Which per-page expectation a stage's pages follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PageKind {
    /// First transfer of the VM's memory.
    FullCopy,
    /// Pages dirtied since they were sent.
    Resend,
}


impl Sim<'_> {
    pub(super) fn set_link_capacity(&mut self, l: LinkId, bw: f64) {
        self.net.set_capacity(2 * l.index(), bw);
        self.net.set_capacity(2 * l.index() + 1, bw);
    }

    pub(super) fn settle_network(&mut self) {
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

    pub(super) fn complete_due_flows(&mut self) {
        let now = self.now();
        for id in self.net.due_flows(now) {
            // A flow due now may have been cut by what an earlier one started
            // (a policy's cancel).
            let Some(totals) = self.net.remove_flow(now, id) else { continue };
            let m = self.flow_owner.remove(&id).expect("every flow has an owner");
            self.migs[m.index()].flow = None;
            self.account(m, id, &totals);
            self.flow_done(m, totals.sent);
        }
    }

    pub(super) fn account(&mut self, m: MigrationId, flow: FlowId, totals: &FlowTotals) {
        let own_kind = self.flow_cap_kind.remove(&flow);
        let mig = &mut self.migs[m.index()];
        // The share of the stage's pages that crossed (all of them unless cut short).
        let done = if mig.stage_bytes > 0.0 { (totals.sent / mig.stage_bytes).min(1.0) } else { 1.0 };
        let part = mig.stage_tally.scaled(done);
        mig.tally.add(&part);
        mig.last_stage_tally = part;
        mig.extra_bytes += mig.stage_extra_bytes * done;
        mig.stage_tally = Tally::default();
        mig.stage_extra_bytes = 0.0;
        if let Some(kind) = own_kind {
            let v = &mut self.own_cap_bytes[m.index()];
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
        let lb = &mut self.link_bytes[m.index()];
        for &(r, b) in &totals.sent_by_link {
            match lb.iter_mut().find(|(x, _)| *x == r) {
                Some((_, acc)) => *acc += b,
                None => lb.push((r, b)),
            }
        }
    }


    /// `extra_bytes` of device state, reduced by the migration's strategy and
    /// capped by its CPU pipeline as well as its network cap.
    pub(super) fn start_flow(&mut self, m: MigrationId, stage: Stage, pages: f64, kind: PageKind, extra_bytes: u64) {
        if self.traced[m.index()].is_some() && stage != Stage::PostCopySwitch {
            return self.start_traced_flow(m, stage, kind, extra_bytes);
        }
        let image_hit = kind == PageKind::FullCopy && self.image_hit(m);
        let mig = &mut self.migs[m.index()];
        let r = mig.reduction.as_deref().expect("a migration keeps its reduction until it ends");
        // The delta cache fills as pages are sent (reduction::cache).
        let per_page = match (kind, &mut mig.xbzrle_cache) {
            (PageKind::FullCopy, cache) => {
                let t = if image_hit { r.full_copy_image_hit } else { r.full_copy };
                if let (Some(c), true) = (cache, pages > 0.0) {
                    c.full_copy(pages, t.bytes_share());
                }
                t
            }
            (PageKind::Resend, Some(c)) if pages > 0.0 => r.resend_with_hit(c.resend(pages, r.resend_uncached.bytes_share())),
            (PageKind::Resend, _) => r.resend,
        };
        let tally = per_page.scaled(pages);
        self.launch_flow(m, stage, pages, tally, per_page, extra_bytes);
    }

    /// [`Sim::start_flow`] for a traced VM: the exact tally of its snapshot
    /// (full copy) or of the pages dirtied in the last round (re-send).
    pub(super) fn start_traced_flow(&mut self, m: MigrationId, stage: Stage, kind: PageKind, extra_bytes: u64) {
        let tally = match kind {
            PageKind::FullCopy => {
                // Marks the image as sent for non-traced VMs of the gang.
                self.image_hit(m);
                self.traced_tally(m, true)
            }
            PageKind::Resend => {
                let tr = self.traced[m.index()].as_mut().expect("traced");
                match tr.prepared.take() {
                    Some(t) => t,
                    None => self.traced_tally(m, false),
                }
            }
        };
        let per_page = if tally.pages > 0.0 { tally.scaled(1.0 / tally.pages) } else { Tally::default() };
        self.launch_flow(m, stage, tally.pages.round(), tally, per_page, extra_bytes);
    }

    /// Starts the flow of a stage of `pages` pages whose tally (and its
    /// per-page mix, for the CPU and index-query caps) is known.
    pub(super) fn launch_flow(&mut self, m: MigrationId, stage: Stage, pages: f64, tally: Tally, per_page: Tally, extra_bytes: u64) {
        let mig = &self.migs[m.index()];
        let bytes = tally.wire_bytes + extra_bytes as f64;
        let threads = mig.settings.threads();
        let mut cap = (mig.cap.0, None);
        if pages > 0.0 {
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
    pub(super) fn attach_flow(&mut self, m: MigrationId, stage: Stage, pages: f64, tally: Tally, extra_bytes: u64, bytes: f64, spec: FlowSpec) {
        let now = self.now();
        let id = self.net.add_flow(now, spec.resources, spec.cap, spec.weight, bytes);
        let mig = &mut self.migs[m.index()];
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


    /// Removes a migration's flow before it finished, recording the partial stage.
    pub(super) fn cut_flow(&mut self, m: MigrationId, at: SimTime) {
        let Some(flow) = self.migs[m.index()].flow.take() else { return };
        let totals = self.net.remove_flow(at, flow).expect("active flow");
        self.flow_owner.remove(&flow);
        self.account(m, flow, &totals);
        let mig = &self.migs[m.index()];
        if let Some(phase) = mig.stage.round_phase() {
            let round = if mig.stage == Stage::PostCopyPush { mig.rounds + 1 } else { mig.rounds };
            let throttle = mig.throttle.throttle_pct();
            self.push_round_row(m, at, round, phase, totals.sent, 0.0, throttle, false);
        }
    }

}
