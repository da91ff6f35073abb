//! The policy seam: how fabric policies (scheduled migrations, evacuations,
//! HA restart, and later load balancing, consolidation, follow-the-sun) talk
//! to the engine.
//!
//! A policy implements [`Policy`]. The engine calls [`Policy::start`] at the
//! policy's start time and [`Policy::on_event`] for every [`FabricEvent`] that
//! concerns it: the end of a migration it started (with its outcome), the
//! answer to each of its commands, host and link failures and repairs,
//! power-state changes, and the timers it set for itself. Policies react;
//! they do not poll (as SimGrid's VM signals); a periodic check is a timer the
//! policy sets again each time it fires (as NeXosim's self-scheduled events).
//!
//! In a callback a policy reads the clock and a read-only [`FabricView`]
//! through its [`PolicyCtx`], and issues [`Command`]s. The engine applies the
//! commands after the callback returns, in order; each migrate or restart
//! command is answered with an event carrying the [`RequestId`] the command
//! returned: [`FabricEvent::MigrationStarted`] with the migration's id, or
//! [`FabricEvent::Refused`] with a typed [`Refusal`]. A refusal is delivered
//! at once, and the commands the policy issues in answer are applied before
//! the rest of the batch (a depth-first worklist, as the engine always did).
//!
//! Events that concern the whole fabric (hosts, links, power) go to every
//! policy, in policy order; the others go to the policy that caused them.

use crate::fabric::{HostId, LinkId, SiteId, VmId};
use crate::mechanism::MigrationId;
use crate::scenario::{Destination, MigrationSettings, Scenario};
use crate::state::{FabricState, PowerState, VmState};
use memfabric_migration::record::Outcome;
use memfabric_migration::units::Nanos;

crate::fabric::typed_id!(
    /// A policy of a run: the scenario's operations in file order, then the
    /// built-in policies (HA restart).
    OperationId
);

/// A policy's handle on one of its migrate or restart commands, answered by
/// [`FabricEvent::MigrationStarted`], [`FabricEvent::Restarting`] or
/// [`FabricEvent::Refused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Why the engine refused a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// The VM is migrating or booting.
    Busy,
    /// The VM is not running (down after a failure, or lost).
    NotRunning,
    /// No candidate host has the RAM (or cores) free.
    NoCapacity,
    /// Every candidate host with room lacks a CPU feature of the VM's model
    /// or is of another vendor.
    CpuIncompatible,
    /// The VM's host or every candidate host is down or not powered on.
    HostDown,
    /// A link on the route is down.
    LinkDown,
    /// The placement would break the HA admission-control reserve.
    Admission,
    /// The migration is not one of the policy's, or already ended.
    NotOwned,
}

impl Refusal {
    /// The name used in result tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Busy => "busy",
            Refusal::NotRunning => "not-running",
            Refusal::NoCapacity => "no-capacity",
            Refusal::CpuIncompatible => "cpu-incompatible",
            Refusal::HostDown => "host-down",
            Refusal::LinkDown => "link-down",
            Refusal::Admission => "admission-control",
            Refusal::NotOwned => "not-owned",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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

/// What a policy asks the engine to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Migrate a VM.
    Migrate(RequestId, MigrationRequest),
    /// Boot a VM that is down on a host (cold restart, or a cold migration
    /// across CPU vendors); it runs after `boot`.
    Restart {
        /// Handle of the answer.
        request: RequestId,
        /// The VM.
        vm: VmId,
        /// Where.
        to: Destination,
        /// Boot time.
        boot: Nanos,
    },
    /// Stop a running VM and boot it at `to` (a cold migration: its memory
    /// state is not moved, so any CPU may take it); it runs after `boot`.
    ColdMigrate {
        /// Handle of the answer.
        request: RequestId,
        /// The VM.
        vm: VmId,
        /// Where.
        to: Destination,
        /// Boot time.
        boot: Nanos,
    },
    /// Switch a host on.
    PowerOn(HostId),
    /// Switch a host off (refused while it holds VMs).
    PowerOff(HostId),
    /// Cancel a migration the policy started (pre-copy only; the VM stays at the source).
    Cancel(MigrationId),
    /// Call [`Policy::on_event`] with [`FabricEvent::Timer`] after a delay.
    Timer {
        /// Delay from now.
        after: Nanos,
        /// The policy's own tag, returned in the event.
        tag: u64,
    },
}

/// Something that happened in the fabric, as a policy sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum FabricEvent {
    /// A migrate command was accepted.
    MigrationStarted {
        /// The command's handle.
        request: RequestId,
        /// The migration.
        migration: MigrationId,
        /// The VM.
        vm: VmId,
    },
    /// A restart command was accepted: the VM boots on `host`.
    Restarting {
        /// The command's handle.
        request: RequestId,
        /// The VM.
        vm: VmId,
        /// Its new host.
        host: HostId,
    },
    /// A command was refused.
    Refused {
        /// The command's handle (0 for commands without one).
        request: RequestId,
        /// The VM concerned, if any.
        vm: Option<VmId>,
        /// Why.
        refusal: Refusal,
    },
    /// One of the policy's migrations ended.
    MigrationEnded {
        /// The migration.
        migration: MigrationId,
        /// The VM.
        vm: VmId,
        /// How it ended.
        outcome: Outcome,
    },
    /// A host failed; the VMs it ran are down (listed in VM order).
    HostDown {
        /// The host.
        host: HostId,
        /// VMs that were running or booting there and are now down.
        vms_down: Vec<VmId>,
    },
    /// A failed host was repaired.
    HostUp {
        /// The host.
        host: HostId,
    },
    /// A link failed.
    LinkDown {
        /// The link.
        link: LinkId,
    },
    /// A link was repaired.
    LinkUp {
        /// The link.
        link: LinkId,
    },
    /// A VM finished booting after a restart.
    VmBooted {
        /// The VM.
        vm: VmId,
    },
    /// A host's power state changed.
    PowerChanged {
        /// The host.
        host: HostId,
        /// Its new state.
        power: PowerState,
    },
    /// A timer the policy set fired.
    Timer {
        /// The tag it was set with.
        tag: u64,
    },
}

impl FabricEvent {
    /// Whether every policy hears it (fabric-wide) rather than only the one
    /// that caused it.
    pub fn is_broadcast(&self) -> bool {
        matches!(
            self,
            FabricEvent::HostDown { .. }
                | FabricEvent::HostUp { .. }
                | FabricEvent::LinkDown { .. }
                | FabricEvent::LinkUp { .. }
                | FabricEvent::PowerChanged { .. }
                | FabricEvent::VmBooted { .. }
        )
    }
}

/// What a policy may look at: the scenario, the clock and the fabric state.
#[derive(Debug, Clone, Copy)]
pub struct FabricView<'a> {
    /// The scenario.
    pub scenario: &'a Scenario,
    /// The fabric state.
    pub state: &'a FabricState,
    /// Simulated time now.
    pub now: Nanos,
}

impl FabricView<'_> {
    /// The site a host stands in.
    pub fn site_of(&self, host: HostId) -> SiteId {
        self.scenario.fabric.hosts[host.index()].site
    }

    /// VMs that currently run at `site` and are free to move, in VM order.
    pub fn movable_vms_at(&self, site: SiteId) -> Vec<VmId> {
        (0..self.state.vm_count() as u32)
            .map(VmId)
            .filter(|&v| self.movable_vms_at_contains(site, v))
            .collect()
    }

    /// Whether `vm` runs at `site` and is free to move.
    pub fn movable_vms_at_contains(&self, site: SiteId, vm: VmId) -> bool {
        self.state.vm_state(vm) == VmState::Running && self.site_of(self.state.vm_host(vm)) == site
    }

    /// Free RAM of a host, bytes.
    pub fn host_ram_free(&self, host: HostId) -> u64 {
        self.scenario.fabric.hosts[host.index()].ram.0.saturating_sub(self.state.host_ram_used(host))
    }
}

/// A policy's access to the engine during one callback.
#[derive(Debug)]
pub struct PolicyCtx<'a> {
    view: FabricView<'a>,
    commands: Vec<Command>,
    next_request: &'a mut u64,
}

impl<'a> PolicyCtx<'a> {
    /// A context over `view`; request handles are drawn from `next_request`.
    pub fn new(view: FabricView<'a>, next_request: &'a mut u64) -> PolicyCtx<'a> {
        PolicyCtx { view, commands: Vec::new(), next_request }
    }

    /// Simulated time now.
    pub fn now(&self) -> Nanos {
        self.view.now
    }

    /// The read-only view of the fabric.
    pub fn view(&self) -> FabricView<'a> {
        self.view
    }

    fn request(&mut self) -> RequestId {
        *self.next_request += 1;
        RequestId(*self.next_request)
    }

    /// Asks to migrate a VM; answered by `MigrationStarted` or `Refused`.
    pub fn migrate(&mut self, request: MigrationRequest) -> RequestId {
        let id = self.request();
        self.commands.push(Command::Migrate(id, request));
        id
    }

    /// Asks to boot a down VM at `to`; answered by `Restarting` or `Refused`.
    pub fn restart(&mut self, vm: VmId, to: Destination, boot: Nanos) -> RequestId {
        let request = self.request();
        self.commands.push(Command::Restart { request, vm, to, boot });
        request
    }

    /// Asks to stop a running VM and boot it at `to`; answered by
    /// `Restarting` or `Refused`.
    pub fn cold_migrate(&mut self, vm: VmId, to: Destination, boot: Nanos) -> RequestId {
        let request = self.request();
        self.commands.push(Command::ColdMigrate { request, vm, to, boot });
        request
    }

    /// Asks to switch a host on.
    pub fn power_on(&mut self, host: HostId) {
        self.commands.push(Command::PowerOn(host));
    }

    /// Asks to switch a host off.
    pub fn power_off(&mut self, host: HostId) {
        self.commands.push(Command::PowerOff(host));
    }

    /// Asks to cancel one of the policy's migrations.
    pub fn cancel(&mut self, migration: MigrationId) {
        self.commands.push(Command::Cancel(migration));
    }

    /// Sets a timer: [`FabricEvent::Timer`] with `tag` after `after`.
    pub fn set_timer(&mut self, after: Nanos, tag: u64) {
        self.commands.push(Command::Timer { after, tag });
    }

    /// The commands issued, in order.
    pub fn into_commands(self) -> Vec<Command> {
        self.commands
    }
}

/// A fabric policy.
pub trait Policy {
    /// Called once at the policy's start time.
    fn start(&mut self, ctx: &mut PolicyCtx<'_>);
    /// Called for each event that concerns the policy. Does nothing by default.
    fn on_event(&mut self, ctx: &mut PolicyCtx<'_>, event: &FabricEvent) {
        let _ = (ctx, event);
    }
}
