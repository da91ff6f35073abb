//! The engine side of the policy seam: calling a policy with a context,
//! applying the commands it issued (in order, depth first: the commands a
//! policy issues in answer to a refusal run before the rest of its batch),
//! delivering events to the policy they concern or to every policy, and the
//! commands that are not migrations: restart, power, cancel, timers. The
//! placement rule used by migrations and restarts is here too
//! ([`Sim::place`]), so the fit check has one caller-side entry.

use super::*;
use crate::placement::{Demand, Placer};
use crate::policy::{Command, FabricView, PolicyCtx, Refusal};

impl Refusal {
    /// The outcome recorded for a migration refused at start with a row.
    pub(super) fn refused_outcome(self) -> Outcome {
        match self {
            Refusal::CpuIncompatible => Outcome::CpuIncompatible,
            Refusal::HostDown => Outcome::HostDown,
            Refusal::Admission => Outcome::AdmissionControl,
            Refusal::LinkDown => Outcome::AbortedLinkFailure,
            Refusal::NoCapacity | Refusal::Busy | Refusal::NotRunning | Refusal::NotOwned => Outcome::NoCapacity,
        }
    }
}

impl Sim<'_> {
    /// Calls policy `op` (its start when `event` is `None`) and returns the
    /// commands it issued.
    fn invoke(&mut self, op: OperationId, event: Option<&FabricEvent>) -> Vec<Command> {
        let view = FabricView { scenario: self.sc, state: &self.state, now: self.q.now() };
        let mut ctx = PolicyCtx::new(view, &mut self.next_request);
        let policy = &mut self.policies[op.index()].policy;
        match event {
            None => policy.start(&mut ctx),
            Some(e) => policy.on_event(&mut ctx, e),
        }
        ctx.into_commands()
    }

    /// Calls policy `op` and applies what it asks, answering each command.
    pub(super) fn call_policy(&mut self, op: OperationId, event: Option<FabricEvent>) {
        let first = self.invoke(op, event.as_ref());
        let mut work: Vec<Command> = first.into_iter().rev().collect();
        while let Some(cmd) = work.pop() {
            if let Some(answer) = self.apply(op, cmd) {
                let more = self.invoke(op, Some(&answer));
                work.extend(more.into_iter().rev());
            }
        }
    }

    /// Tells policy `op` about an event that concerns it alone.
    pub(super) fn notify(&mut self, op: OperationId, event: FabricEvent) {
        self.call_policy(op, Some(event));
    }

    /// Tells every policy, in order, about a fabric-wide event.
    pub(super) fn broadcast(&mut self, event: FabricEvent) {
        debug_assert!(event.is_broadcast());
        for i in 0..self.policies.len() {
            self.call_policy(OperationId(i as u32), Some(event.clone()));
        }
    }

    /// Applies one command of policy `op`; returns the answer to deliver, if any.
    fn apply(&mut self, op: OperationId, cmd: Command) -> Option<FabricEvent> {
        match cmd {
            Command::Migrate(request, req) => {
                let vm = req.vm;
                Some(match self.start_migration(op, req) {
                    Ok(migration) => FabricEvent::MigrationStarted { request, migration, vm },
                    Err(refusal) => FabricEvent::Refused { request, vm: Some(vm), refusal },
                })
            }
            Command::Restart { request, vm, to, boot } => Some(match self.restart(vm, to, boot) {
                Ok(host) => FabricEvent::Restarting { request, vm, host },
                Err(refusal) => FabricEvent::Refused { request, vm: Some(vm), refusal },
            }),
            Command::ColdMigrate { request, vm, to, boot } => Some(match self.cold_migrate(vm, to, boot) {
                Ok(host) => FabricEvent::Restarting { request, vm, host },
                Err(refusal) => FabricEvent::Refused { request, vm: Some(vm), refusal },
            }),
            Command::Timer { after, tag } => {
                self.q.schedule_in(after, Event::Timer(op, tag));
                None
            }
            Command::Cancel(m) => self.cancel(op, m).err().map(|refusal| FabricEvent::Refused {
                request: crate::policy::RequestId(0),
                vm: self.migs.get(m.index()).map(|x| x.vm),
                refusal,
            }),
            Command::PowerOn(host) => {
                if self.state.host_power(host) != crate::state::PowerState::Off {
                    return Some(FabricEvent::Refused { request: crate::policy::RequestId(0), vm: None, refusal: Refusal::Busy });
                }
                self.begin_power_change(host, true);
                None
            }
            Command::PowerOff(host) => {
                if self.state.host_power(host) != crate::state::PowerState::On || self.state.host_ram_used(host) > 0 {
                    return Some(FabricEvent::Refused { request: crate::policy::RequestId(0), vm: None, refusal: Refusal::Busy });
                }
                self.begin_power_change(host, false);
                None
            }
        }
    }

    pub(super) fn set_power(&mut self, host: HostId, power: crate::state::PowerState) {
        if self.state.host_power(host) != power {
            self.state.set_host_power(host, power);
            self.broadcast(FabricEvent::PowerChanged { host, power });
        }
    }

    /// Chooses a host for `vm` at `to` with `placer`, never `exclude` (the
    /// VM's current host): the one place capacity, host state and CPU
    /// compatibility are checked at run time. `live`: a live migration (the
    /// CPU rule applies); otherwise a boot, where only the RAM and cores count.
    pub(super) fn place(&self, vm: VmId, to: Destination, placer: Placer, exclude: Option<HostId>, live: bool) -> Result<HostId, Refusal> {
        let v = &self.sc.vms[vm.index()];
        let demand = Demand { memory_bytes: v.memory.0, vcpus: v.vcpus };
        let candidates: &[HostId] = match &to {
            Destination::Host(h) => std::slice::from_ref(h),
            Destination::Site(s) => &self.sc.fabric.sites[s.index()].hosts,
        };
        let src_cpu = &self.sc.fabric.hosts[self.state.vm_host(vm).index()].cpu;
        let usable = |h: HostId| {
            if Some(h) == exclude {
                Err(Refusal::NoCapacity)
            } else if !self.state.host_usable(h) {
                Err(Refusal::HostDown)
            } else if live && !crate::cpu::live_compatible(&v.cpu, src_cpu, &self.sc.fabric.hosts[h.index()].cpu) {
                Err(Refusal::CpuIncompatible)
            } else if live && !self.admits(vm, h) {
                Err(Refusal::Admission)
            } else {
                Ok(())
            }
        };
        match (to, placer) {
            (Destination::Site(s), Placer::MostFreeRam) => {
                Placer::most_free_ram_sorted(&self.sc.fabric, self.state.hosts_by_free_ram(s), self.state.hosts_ram_used(), demand, usable)
            }
            _ => placer.choose(&self.sc.fabric, candidates.iter().copied(), self.state.hosts_ram_used(), demand, usable),
        }
    }

    /// Boots a down VM at `to` (most free RAM); it runs after `boot`.
    fn restart(&mut self, vm: VmId, to: Destination, boot: Nanos) -> Result<HostId, Refusal> {
        match self.state.vm_state(vm) {
            VmState::Down { .. } => {}
            VmState::Migrating(_) | VmState::Restarting { .. } => return Err(Refusal::Busy),
            VmState::Running | VmState::Lost => return Err(Refusal::NotRunning),
        }
        let host = self.place(vm, to, Placer::MostFreeRam, None, false)?;
        let until = Nanos(self.now().0.saturating_add(boot.0));
        let site = self.sc.fabric.hosts[host.index()].site;
        self.state.vm_restart(vm, host, until);
        self.move_image(vm, None, Some(site));
        self.restart_begun(vm, host);
        self.q.schedule_at(until, Event::Booted(vm)).expect("not in the past");
        Ok(host)
    }

    /// Stops a running VM and boots it at `to`, never on its own host.
    fn cold_migrate(&mut self, vm: VmId, to: Destination, boot: Nanos) -> Result<HostId, Refusal> {
        match self.state.vm_state(vm) {
            VmState::Running => {}
            VmState::Migrating(_) | VmState::Restarting { .. } => return Err(Refusal::Busy),
            VmState::Down { .. } | VmState::Lost => return Err(Refusal::NotRunning),
        }
        let src = self.state.vm_host(vm);
        let host = self.place(vm, to, Placer::MostFreeRam, Some(src), false)?;
        let now = self.now();
        self.state.vm_down(vm, now);
        self.move_image(vm, Some(self.sc.fabric.hosts[src.index()].site), None);
        self.ledger[vm.index()].down_since = Some(now);
        self.restart(vm, Destination::Host(host), boot)
    }

    /// A restarted VM finished booting (unless its host failed meanwhile).
    pub(super) fn booted(&mut self, vm: VmId) {
        if let VmState::Restarting { until, .. } = self.state.vm_state(vm) {
            if until == self.now() {
                self.state.vm_booted(vm);
                self.restart_done(vm);
                self.broadcast(FabricEvent::VmBooted { vm });
            }
        }
    }

    /// Cancels a pre-copy migration of policy `op`: the flow is cut and the
    /// VM stays at the source.
    fn cancel(&mut self, op: OperationId, m: MigrationId) -> Result<(), Refusal> {
        let Some(mig) = self.migs.get(m.index()) else { return Err(Refusal::NotOwned) };
        if mig.operation != op || mig.outcome.is_some() {
            return Err(Refusal::NotOwned);
        }
        if mig.phase == MigrationPhase::PostCopy {
            // The VM already runs at the destination: there is no going back.
            return Err(Refusal::Busy);
        }
        let now = self.now();
        self.cut_flow(m, now);
        let mig = &mut self.migs[m.index()];
        if mig.paused_at.is_some() {
            mig.resumed_at = Some(now);
        }
        self.transition(m, MigrationPhase::Failed);
        self.end_migration(m, Outcome::Cancelled);
        Ok(())
    }
}
