//! Host failures and repairs in the engine: what a failure does to the
//! migrations and VMs on the host (see `docs/model.md`, failures), the
//! per-VM ledger of failures, restarts, downtime and lost work, the
//! `fabric_events` rows, and HA admission control.

use super::*;
use crate::failure::{Admission, FailureCause};
use rows::{FabricEventKind, FabricEventRow};

/// What happened to one VM over the run.
#[derive(Debug, Clone, Default)]
pub(super) struct VmLedger {
    /// Times it went down (host failure, or lost).
    pub(super) failures: u32,
    /// Restarts begun (after failures, and cold migrations).
    pub(super) restarts: u32,
    /// Down (or booting) since, if it is now.
    pub(super) down_since: Option<Nanos>,
    /// Time down or booting so far, ns.
    pub(super) downtime_ns: u64,
    /// When its current memory state began (start of run or last boot).
    pub(super) running_since: Nanos,
    /// Run time whose memory state was lost in crashes, ns.
    pub(super) lost_work_ns: u64,
}

impl Sim<'_> {
    fn event_row(&mut self, kind: FabricEventKind, host: Option<HostId>, vm: Option<VmId>, cause: &str) {
        let f = &self.sc.fabric;
        self.fabric_events.push(FabricEventRow {
            time_s: self.now().as_secs_f64(),
            kind,
            host: host.map_or_else(String::new, |h| f.hosts[h.index()].name.clone()),
            site: host.map_or_else(String::new, |h| f.sites[f.hosts[h.index()].site.index()].name.clone()),
            vm: vm.map_or_else(String::new, |v| self.sc.vms[v.index()].name.clone()),
            cause: cause.to_string(),
        });
    }

    /// A VM's memory state is gone: it crashed now.
    fn crashed(&mut self, vm: VmId) {
        let now = self.now();
        let l = &mut self.ledger[vm.index()];
        l.failures += 1;
        l.lost_work_ns += now.0 - l.running_since.0;
        l.down_since.get_or_insert(now);
    }

    /// A post-copy migration split the VM by a link failure: it is lost for good.
    pub(super) fn vm_lost(&mut self, vm: VmId) {
        self.crashed(vm);
        let host = self.state.vm_host(vm);
        self.event_row(FabricEventKind::VmLost, Some(host), Some(vm), "link-failure");
    }

    /// A host fails: its VMs go down, its migrations break (see
    /// `docs/model.md`), every policy hears of it.
    pub(super) fn host_fail(&mut self, h: HostId, cause: FailureCause) {
        self.host_down_depth[h.index()] += 1;
        if self.host_down_depth[h.index()] > 1 {
            return; // already down
        }
        let now = self.now();
        self.state.set_host_up(h, false);
        self.event_row(FabricEventKind::HostDown, Some(h), None, cause.as_str());
        // The VMs it runs go down first, so that a policy told of a broken
        // migration below cannot start a new one from this host.
        let mut vms_down = Vec::new();
        for vm in self.state.vms_on(h) {
            match self.state.vm_state(vm) {
                VmState::Running => self.state.vm_down(vm, now),
                VmState::Restarting { .. } => self.state.vm_boot_failed(vm),
                _ => continue,
            }
            let site = self.sc.fabric.hosts[h.index()].site;
            self.move_image(vm, Some(site), None);
            self.crashed(vm);
            vms_down.push(vm);
        }
        let hit: Vec<MigrationId> = self.migs.iter().filter(|m| m.outcome.is_none() && (m.src == h || m.dst == h)).map(|m| m.id).collect();
        for m in hit {
            if self.migs[m.index()].outcome.is_some() {
                continue; // ended meanwhile (a policy told of another one cancelled it)
            }
            self.cut_flow(m, now);
            let mig = &mut self.migs[m.index()];
            let (vm, src_failed) = (mig.vm, mig.src == h);
            // After the post-copy switch the VM runs at the destination with
            // part of its memory at the source: losing either end loses it.
            let fate = if mig.phase == MigrationPhase::PostCopy || src_failed {
                Fate::Down
            } else {
                if mig.paused_at.is_some() {
                    mig.resumed_at = Some(now); // resumes at the source
                }
                Fate::AtSource
            };
            let outcome = if mig.phase == MigrationPhase::PostCopy { Outcome::Lost } else { Outcome::AbortedHostFailure };
            if fate == Fate::Down {
                let mig = &mut self.migs[m.index()];
                if mig.paused_at.is_some() && mig.resumed_at.is_none() && mig.phase != MigrationPhase::PostCopy {
                    mig.resumed_at = Some(now); // the pause ends with the crash
                }
                self.crashed(vm);
                vms_down.push(vm);
            }
            self.transition(m, MigrationPhase::Failed);
            self.end_migration_as(m, outcome, fate);
        }
        vms_down.sort();
        for &vm in &vms_down {
            self.event_row(FabricEventKind::VmDown, Some(h), Some(vm), "host-failure");
        }
        self.broadcast(FabricEvent::HostDown { host: h, vms_down });
    }

    /// A failed host is repaired (once every failure holding it down ended).
    pub(super) fn host_repair(&mut self, h: HostId, cause: FailureCause) {
        if self.host_down_depth[h.index()] == 0 {
            return;
        }
        self.host_down_depth[h.index()] -= 1;
        if self.host_down_depth[h.index()] > 0 {
            return;
        }
        self.state.set_host_up(h, true);
        self.event_row(FabricEventKind::HostUp, Some(h), None, cause.as_str());
        self.broadcast(FabricEvent::HostUp { host: h });
    }

    /// Records a restart that began (booting on `host`).
    pub(super) fn restart_begun(&mut self, vm: VmId, host: HostId) {
        self.ledger[vm.index()].restarts += 1;
        self.event_row(FabricEventKind::VmRestart, Some(host), Some(vm), "restart");
    }

    /// Records a restarted VM running again.
    pub(super) fn restart_done(&mut self, vm: VmId) {
        let now = self.now();
        let l = &mut self.ledger[vm.index()];
        if let Some(since) = l.down_since.take() {
            l.downtime_ns += now.0 - since.0;
        }
        l.running_since = now;
        let host = self.state.vm_host(vm);
        self.event_row(FabricEventKind::VmBooted, Some(host), Some(vm), "restart");
    }

    /// HA admission control: whether placing `vm` on `host` leaves the host's
    /// site with the reserve it must keep (free RAM of at least the N largest
    /// usable hosts, or the fraction of its usable RAM).
    pub(super) fn admits(&self, vm: VmId, host: HostId) -> bool {
        let Some(ha) = &self.sc.ha else { return true };
        let f = &self.sc.fabric;
        let site = &f.sites[f.hosts[host.index()].site.index()];
        let usable: Vec<HostId> = site.hosts.iter().copied().filter(|h| self.state.host_usable(*h)).collect();
        let free: u64 = usable.iter().map(|h| f.hosts[h.index()].ram.0.saturating_sub(self.state.host_ram_used(*h))).sum();
        let free_after = free.saturating_sub(self.sc.vms[vm.index()].memory.0);
        match ha.admission {
            Admission::None => true,
            Admission::HostFailures(n) => {
                let mut rams: Vec<u64> = usable.iter().map(|h| f.hosts[h.index()].ram.0).collect();
                rams.sort_unstable_by(|a, b| b.cmp(a));
                free_after >= rams.iter().take(n as usize).sum::<u64>()
            }
            Admission::Fraction(p) => {
                let total: u64 = usable.iter().map(|h| f.hosts[h.index()].ram.0).sum();
                free_after as f64 >= p * total as f64
            }
        }
    }
}
