//! Fabric operations: the policies that decide which VM moves where and when.
//!
//! An operation is a small state machine behind the [`Operation`] trait: the
//! simulator calls [`Operation::start`] at its start time and
//! [`Operation::on_migration_end`] whenever one of its migrations ends, and the
//! operation answers with migration requests. It sees the fabric only through
//! a read-only [`FabricView`]. New policies (load balancing, consolidation,
//! failure recovery) plug in by implementing the trait.

use crate::fabric::{HostId, SiteId, VmId};
use crate::scenario::{Destination, EvacuationOrder, MigrationSettings, OperationSpec, Scenario};
use memfabric_migration::record::Outcome;
use std::collections::VecDeque;

/// What an operation may look at.
#[derive(Debug, Clone, Copy)]
pub struct FabricView<'a> {
    /// The scenario.
    pub scenario: &'a Scenario,
    /// Current host of every VM.
    pub vm_host: &'a [HostId],
    /// Whether each VM is migrating now or has been lost.
    pub vm_unavailable: &'a [bool],
}

impl FabricView<'_> {
    /// VMs that currently run at `site` and are free to move, in VM order.
    pub fn movable_vms_at(&self, site: SiteId) -> Vec<VmId> {
        (0..self.vm_host.len())
            .filter(|&i| !self.vm_unavailable[i] && self.scenario.fabric.hosts[self.vm_host[i].index()].site == site)
            .map(|i| VmId(i as u32))
            .collect()
    }
}

/// A request to migrate one VM.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationRequest {
    /// The VM.
    pub vm: VmId,
    /// Where to.
    pub to: Destination,
    /// How.
    pub settings: MigrationSettings,
}

/// A fabric policy.
pub trait Operation {
    /// Called once at the operation's start time.
    fn start(&mut self, view: FabricView<'_>) -> Vec<MigrationRequest>;
    /// Called when a migration this operation requested has ended (in any outcome).
    fn on_migration_end(&mut self, view: FabricView<'_>, vm: VmId, outcome: Outcome) -> Vec<MigrationRequest>;
}

/// Builds the operation for a scenario entry.
pub fn build(spec: &OperationSpec) -> Box<dyn Operation> {
    match spec {
        OperationSpec::Migrate { vm, to, settings, .. } => {
            Box::new(Scheduled { request: Some(MigrationRequest { vm: *vm, to: *to, settings: settings.clone() }) })
        }
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

/// One explicitly scheduled migration.
#[derive(Debug)]
pub struct Scheduled {
    request: Option<MigrationRequest>,
}

impl Operation for Scheduled {
    fn start(&mut self, _view: FabricView<'_>) -> Vec<MigrationRequest> {
        self.request.take().into_iter().collect()
    }
    fn on_migration_end(&mut self, _: FabricView<'_>, _: VmId, _: Outcome) -> Vec<MigrationRequest> {
        Vec::new()
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
    fn refill(&mut self, view: FabricView<'_>) -> Vec<MigrationRequest> {
        let mut out = Vec::new();
        while self.in_flight < self.max_concurrent {
            let Some(vm) = self.queue.pop_front() else { break };
            // Another operation may have moved the VM (or lost it) since the
            // queue was made: only VMs still at the site and free are moved; a
            // skipped VM leaves this evacuation's queue for good.
            let host = view.vm_host[vm.index()];
            if view.vm_unavailable[vm.index()] || view.scenario.fabric.hosts[host.index()].site != self.from {
                continue;
            }
            self.in_flight += 1;
            out.push(MigrationRequest { vm, to: Destination::Site(self.to), settings: self.settings.clone() });
        }
        out
    }
}

impl Operation for Evacuation {
    fn start(&mut self, view: FabricView<'_>) -> Vec<MigrationRequest> {
        let mut vms = view.movable_vms_at(self.from);
        let mem = |v: &VmId| view.scenario.vms[v.index()].memory;
        match self.order {
            EvacuationOrder::Declared => {}
            EvacuationOrder::LargestFirst => vms.sort_by(|a, b| mem(b).cmp(&mem(a)).then(a.cmp(b))),
            EvacuationOrder::SmallestFirst => vms.sort_by(|a, b| mem(a).cmp(&mem(b)).then(a.cmp(b))),
        }
        self.queue = vms.into();
        self.refill(view)
    }

    fn on_migration_end(&mut self, view: FabricView<'_>, _vm: VmId, _outcome: Outcome) -> Vec<MigrationRequest> {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.refill(view)
    }
}
