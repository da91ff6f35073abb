//! Fabric operations written in the scenario: the policies that decide which
//! VM moves where and when. Each is a small state machine behind
//! [`crate::policy::Policy`]: [`Scheduled`] moves one VM at a given time,
//! [`Evacuation`] empties a site with a bound on migrations in flight.

use crate::fabric::{SiteId, VmId};
use crate::policy::{FabricEvent, MigrationRequest, Policy, PolicyCtx};
use crate::scenario::{Destination, EvacuationOrder, MigrationSettings, OperationSpec};
use std::collections::VecDeque;

/// Builds the policy for a scenario operation.
pub fn build(spec: &OperationSpec) -> Box<dyn Policy> {
    match spec {
        OperationSpec::Migrate { vm, to, settings, cold_fallback, .. } => Box::new(Scheduled {
            request: Some(MigrationRequest { vm: *vm, to: *to, settings: settings.clone() }),
            target: (*vm, *to),
            cold_fallback: *cold_fallback,
        }),
        OperationSpec::Evacuate { from, to, max_concurrent, order, settings, .. } => Box::new(Evacuation {
            from: *from,
            to: *to,
            max_concurrent: max_concurrent.map_or(usize::MAX, |c| c as usize),
            order: *order,
            settings: settings.clone(),
            queue: VecDeque::new(),
            in_flight: 0,
        }),
    }
}

/// One explicitly scheduled migration, falling back to a cold restart at
/// the destination if asked to and the CPUs are incompatible.
#[derive(Debug)]
pub struct Scheduled {
    request: Option<MigrationRequest>,
    target: (VmId, Destination),
    cold_fallback: Option<memfabric_migration::units::Nanos>,
}

impl Policy for Scheduled {
    fn start(&mut self, ctx: &mut PolicyCtx<'_>) {
        if let Some(r) = self.request.take() {
            ctx.migrate(r);
        }
    }

    fn on_event(&mut self, ctx: &mut PolicyCtx<'_>, event: &FabricEvent) {
        if let (FabricEvent::Refused { refusal: crate::policy::Refusal::CpuIncompatible, .. }, Some(boot)) = (event, self.cold_fallback.take()) {
            let (vm, to) = self.target;
            ctx.cold_migrate(vm, to, boot);
        }
    }
}

/// Move every VM of a site to another site, at most `max_concurrent` at once.
#[derive(Debug)]
pub struct Evacuation {
    from: SiteId,
    to: SiteId,
    max_concurrent: usize,
    order: EvacuationOrder,
    settings: MigrationSettings,
    queue: VecDeque<VmId>,
    in_flight: usize,
}

impl Evacuation {
    fn refill(&mut self, ctx: &mut PolicyCtx<'_>) {
        let view = ctx.view();
        while self.in_flight < self.max_concurrent {
            let Some(vm) = self.queue.pop_front() else { break };
            // Another operation may have moved the VM (or it went down) since
            // the queue was made: only VMs still running at the site are
            // moved; a skipped VM leaves this evacuation's queue for good.
            if !view.movable_vms_at_contains(self.from, vm) {
                continue;
            }
            self.in_flight += 1;
            ctx.migrate(MigrationRequest { vm, to: Destination::Site(self.to), settings: self.settings.clone() });
        }
    }
}

impl Policy for Evacuation {
    fn start(&mut self, ctx: &mut PolicyCtx<'_>) {
        let view = ctx.view();
        let mut vms = view.movable_vms_at(self.from);
        let mem = |v: &VmId| view.scenario.vms[v.index()].memory;
        match self.order {
            EvacuationOrder::Declared => {}
            EvacuationOrder::LargestFirst => vms.sort_by(|a, b| mem(b).cmp(&mem(a)).then(a.cmp(b))),
            EvacuationOrder::SmallestFirst => vms.sort_by(|a, b| mem(a).cmp(&mem(b)).then(a.cmp(b))),
        }
        self.queue = vms.into();
        self.refill(ctx);
    }

    fn on_event(&mut self, ctx: &mut PolicyCtx<'_>, event: &FabricEvent) {
        match event {
            // A migration of ours ended, or a request was refused: a slot is free.
            FabricEvent::MigrationEnded { .. } | FabricEvent::Refused { .. } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                self.refill(ctx);
            }
            _ => {}
        }
    }
}
