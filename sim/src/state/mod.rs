//! What changes during a run: [`FabricState`] owns each VM's state and host,
//! each host's RAM and vCPUs in use, whether it is up and its power state, and
//! each link's state. The static fabric (sites, hosts, links, routes) stays in
//! [`crate::fabric`]; the destination content index is in `run/content.rs`.
//!
//! Only the engine mutates it (through the methods here, which keep the
//! per-host sums consistent); policies see it read-only through
//! [`crate::policy::FabricView`]. [`FabricState::check`] verifies the
//! invariants the engine relies on; the engine runs it after every event in
//! debug builds and tests.

mod free_ram;

use crate::fabric::{Fabric, HostId, LinkId, SiteId, VmId};
use crate::mechanism::MigrationId;
use crate::scenario::Vm;
use memfabric_migration::units::Nanos;

/// The state of one VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmState {
    /// Running on its host.
    Running,
    /// Being migrated by this migration: it runs on its source host (pre-copy)
    /// or already at the destination (post-copy), and RAM is reserved at both.
    Migrating(MigrationId),
    /// Not running: its host failed (since the given time) and it waits for a restart.
    Down {
        /// When it went down.
        since: Nanos,
    },
    /// Booting on its (new) host after a restart; runs from `until`.
    Restarting {
        /// When it went down.
        since: Nanos,
        /// When the boot ends.
        until: Nanos,
    },
    /// Gone for good (post-copy split by a failure).
    Lost,
}

impl VmState {
    /// Whether the VM occupies RAM and vCPUs on its host.
    pub fn holds_host(self) -> bool {
        matches!(self, VmState::Running | VmState::Migrating(_) | VmState::Restarting { .. })
    }
}

/// The power state of a host (see `docs/model.md`, energy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PowerState {
    /// On and usable.
    On,
    /// Off: draws its off power, holds no VMs.
    Off,
    /// Switching on; usable when the boot ends.
    Booting,
    /// Switching off; unusable.
    ShuttingDown,
}

impl PowerState {
    /// The name used in result tables.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::On => "on",
            PowerState::Off => "off",
            PowerState::Booting => "booting",
            PowerState::ShuttingDown => "shutting-down",
        }
    }
}

/// A reservation of RAM and vCPUs on a host that is not the VM's host: the
/// destination side of a migration in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// The migration holding it.
    pub migration: MigrationId,
    /// The VM moving.
    pub vm: VmId,
    /// The host it is held on.
    pub host: HostId,
}

/// The mutable state of the fabric during a run.
#[derive(Debug, Clone)]
pub struct FabricState {
    vm_state: Vec<VmState>,
    vm_host: Vec<HostId>,
    vm_memory: Vec<u64>,
    vm_vcpus: Vec<u32>,
    host_ram_used: Vec<u64>,
    /// The hosts of each site by free RAM (follows `host_ram_used`).
    free_ram: free_ram::FreeRamIndex,
    host_vcpus_used: Vec<u32>,
    host_up: Vec<bool>,
    host_power: Vec<PowerState>,
    link_up: Vec<bool>,
    /// Reservations of migrations in flight, by migration (start order).
    reservations: std::collections::BTreeMap<MigrationId, Reservation>,
}

/// An invariant of [`FabricState`] does not hold: a bug in the engine.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvariantError {
    /// A host's RAM in use is not the sum over its VMs and reservations.
    #[error("host {host}: RAM in use {recorded} B, but its VMs and reservations sum to {expected} B")]
    RamSum {
        /// Host name.
        host: String,
        /// What the state says.
        recorded: u64,
        /// What the VMs add up to.
        expected: u64,
    },
    /// A host's vCPUs in use are not the sum over its VMs and reservations.
    #[error("host {host}: vCPUs in use {recorded}, but its VMs and reservations sum to {expected}")]
    VcpuSum {
        /// Host name.
        host: String,
        /// What the state says.
        recorded: u32,
        /// What the VMs add up to.
        expected: u32,
    },
    /// A host holds more RAM than it has.
    #[error("host {host}: {used} B of RAM in use, more than its {ram} B")]
    RamOverflow {
        /// Host name.
        host: String,
        /// In use.
        used: u64,
        /// Its RAM.
        ram: u64,
    },
    /// A VM's state and the reservations disagree.
    #[error("VM {vm}: {message}")]
    VmPlace {
        /// VM name.
        vm: String,
        /// What is wrong.
        message: String,
    },
    /// A migration runs from or to a host that is down.
    #[error("migration {migration} of VM {vm}: {end} host {host} is down")]
    MigrationOnDownHost {
        /// Migration id.
        migration: u32,
        /// VM name.
        vm: String,
        /// "source" or "destination".
        end: &'static str,
        /// Host name.
        host: String,
    },
    /// A VM runs on a host that is down or not powered on.
    #[error("VM {vm} holds host {host}, which is down or not on")]
    VmOnDownHost {
        /// VM name.
        vm: String,
        /// Host name.
        host: String,
    },
    /// The hosts-by-free-RAM index of a site disagrees with the RAM in use.
    #[error("site {site}: the index of hosts by free RAM disagrees with the RAM in use")]
    FreeRamIndex {
        /// Site name.
        site: String,
    },
    /// Energy went wrong.
    #[error("energy: {0}")]
    Energy(String),
}

impl FabricState {
    /// The state at time zero: every VM running on its scenario host, every
    /// host up and on, every link up.
    pub fn new(fabric: &Fabric, vms: &[Vm]) -> FabricState {
        let mut host_ram_used = vec![0u64; fabric.hosts.len()];
        for v in vms {
            host_ram_used[v.host.index()] += v.memory.0;
        }
        let mut s = FabricState {
            vm_state: vec![VmState::Running; vms.len()],
            vm_host: vms.iter().map(|v| v.host).collect(),
            vm_memory: vms.iter().map(|v| v.memory.0).collect(),
            vm_vcpus: vms.iter().map(|v| v.vcpus).collect(),
            free_ram: free_ram::FreeRamIndex::new(fabric, &host_ram_used),
            host_ram_used,
            host_vcpus_used: vec![0; fabric.hosts.len()],
            host_up: vec![true; fabric.hosts.len()],
            host_power: vec![PowerState::On; fabric.hosts.len()],
            link_up: vec![true; fabric.links.len()],
            reservations: std::collections::BTreeMap::new(),
        };
        for v in vms {
            s.host_vcpus_used[v.host.index()] += v.vcpus;
        }
        s
    }

    fn add_load(&mut self, host: HostId, vm: VmId) {
        let before = self.host_ram_used[host.index()];
        self.host_ram_used[host.index()] += self.vm_memory[vm.index()];
        self.free_ram.update(host, before, self.host_ram_used[host.index()]);
        self.host_vcpus_used[host.index()] += self.vm_vcpus[vm.index()];
    }

    fn remove_load(&mut self, host: HostId, vm: VmId) {
        let before = self.host_ram_used[host.index()];
        self.host_ram_used[host.index()] -= self.vm_memory[vm.index()];
        self.free_ram.update(host, before, self.host_ram_used[host.index()]);
        self.host_vcpus_used[host.index()] -= self.vm_vcpus[vm.index()];
    }

    /// Number of VMs.
    pub fn vm_count(&self) -> usize {
        self.vm_state.len()
    }

    /// A VM's state.
    pub fn vm_state(&self, vm: VmId) -> VmState {
        self.vm_state[vm.index()]
    }

    /// A VM's host: where it runs (or, for a VM in pre-copy, its source; for
    /// a down or lost VM, the host it was last on).
    pub fn vm_host(&self, vm: VmId) -> HostId {
        self.vm_host[vm.index()]
    }

    /// Every VM's host, by VM id.
    pub fn vm_hosts(&self) -> &[HostId] {
        &self.vm_host
    }

    /// RAM in use on a host (its VMs and the reservations held on it), bytes.
    pub fn host_ram_used(&self, host: HostId) -> u64 {
        self.host_ram_used[host.index()]
    }

    /// RAM in use on every host, bytes, by host id.
    pub fn hosts_ram_used(&self) -> &[u64] {
        &self.host_ram_used
    }

    /// The hosts of `site` with their free RAM (RAM minus RAM in use),
    /// most free first, in the site's declaration order on ties.
    pub fn hosts_by_free_ram(&self, site: SiteId) -> impl Iterator<Item = (u64, HostId)> + '_ {
        self.free_ram.hosts(site)
    }

    /// vCPUs in use on a host (its VMs and reservations).
    pub fn host_vcpus_used(&self, host: HostId) -> u32 {
        self.host_vcpus_used[host.index()]
    }

    /// Whether a host is up (not failed).
    pub fn host_up(&self, host: HostId) -> bool {
        self.host_up[host.index()]
    }

    /// A host's power state.
    pub fn host_power(&self, host: HostId) -> PowerState {
        self.host_power[host.index()]
    }

    /// Whether a host can take VMs: up and on.
    pub fn host_usable(&self, host: HostId) -> bool {
        self.host_up[host.index()] && self.host_power[host.index()] == PowerState::On
    }

    /// Whether a link is up.
    pub fn link_up(&self, link: LinkId) -> bool {
        self.link_up[link.index()]
    }

    /// Reservations of migrations in flight, in start order.
    pub fn reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations.values()
    }

    /// Starts a migration: the VM becomes `Migrating` and its RAM and vCPUs
    /// are reserved on `dst`.
    pub fn begin_migration(&mut self, vm: VmId, migration: MigrationId, dst: HostId) {
        debug_assert_eq!(self.vm_state[vm.index()], VmState::Running);
        self.vm_state[vm.index()] = VmState::Migrating(migration);
        self.add_load(dst, vm);
        self.reservations.insert(migration, Reservation { migration, vm, host: dst });
    }

    fn take_reservation(&mut self, migration: MigrationId) -> Reservation {
        self.reservations.remove(&migration).expect("a reservation per migration in flight")
    }

    /// Post-copy resumed the VM at the destination: it now runs there, and
    /// the source keeps its RAM until the push ends (the reservation swaps ends).
    pub fn switch_host(&mut self, vm: VmId, migration: MigrationId) {
        let r = self.take_reservation(migration);
        let src = self.vm_host[vm.index()];
        self.vm_host[vm.index()] = r.host;
        self.reservations.insert(migration, Reservation { migration, vm, host: src });
    }

    /// A migration ended with the VM at `at` (`Some`: its source or its
    /// destination) or lost (`None`): the other end's RAM is freed.
    pub fn end_migration(&mut self, vm: VmId, migration: MigrationId, at: Option<HostId>) {
        let r = self.take_reservation(migration);
        let here = self.vm_host[vm.index()];
        match at {
            Some(h) if h == here => self.remove_load(r.host, vm),
            Some(h) => {
                debug_assert_eq!(h, r.host);
                self.remove_load(here, vm);
                self.vm_host[vm.index()] = h;
            }
            None => {
                self.remove_load(here, vm);
                self.remove_load(r.host, vm);
            }
        }
        self.vm_state[vm.index()] = if at.is_some() { VmState::Running } else { VmState::Lost };
    }

    /// A migration ended because a host failed and the VM went down with it:
    /// both ends' RAM is freed.
    pub fn end_migration_down(&mut self, vm: VmId, migration: MigrationId, now: Nanos) {
        let r = self.take_reservation(migration);
        let here = self.vm_host[vm.index()];
        self.remove_load(here, vm);
        self.remove_load(r.host, vm);
        self.vm_state[vm.index()] = VmState::Down { since: now };
    }

    /// A running VM goes down (its host failed): it leaves its host.
    pub fn vm_down(&mut self, vm: VmId, now: Nanos) {
        debug_assert_eq!(self.vm_state[vm.index()], VmState::Running);
        let host = self.vm_host[vm.index()];
        self.remove_load(host, vm);
        self.vm_state[vm.index()] = VmState::Down { since: now };
    }

    /// A VM that is down starts booting on `host` until `until`.
    pub fn vm_restart(&mut self, vm: VmId, host: HostId, until: Nanos) {
        let VmState::Down { since } = self.vm_state[vm.index()] else { panic!("restart of a VM that is not down") };
        self.vm_host[vm.index()] = host;
        self.add_load(host, vm);
        self.vm_state[vm.index()] = VmState::Restarting { since, until };
    }

    /// A restarting VM finished booting.
    pub fn vm_booted(&mut self, vm: VmId) {
        debug_assert!(matches!(self.vm_state[vm.index()], VmState::Restarting { .. }));
        self.vm_state[vm.index()] = VmState::Running;
    }

    /// A booting VM's host failed: it is down again (still since its first failure).
    pub fn vm_boot_failed(&mut self, vm: VmId) {
        let VmState::Restarting { since, .. } = self.vm_state[vm.index()] else { panic!("not restarting") };
        let host = self.vm_host[vm.index()];
        self.remove_load(host, vm);
        self.vm_state[vm.index()] = VmState::Down { since };
    }

    /// Marks a host up or down.
    pub fn set_host_up(&mut self, host: HostId, up: bool) {
        self.host_up[host.index()] = up;
    }

    /// Sets a host's power state.
    pub fn set_host_power(&mut self, host: HostId, power: PowerState) {
        self.host_power[host.index()] = power;
    }

    /// Marks a link up or down.
    pub fn set_link_up(&mut self, link: LinkId, up: bool) {
        self.link_up[link.index()] = up;
    }

    /// VMs whose state holds `host` (running, booting, or migrating from or
    /// to it), in VM order, with the migrations holding a reservation there.
    pub fn vms_on(&self, host: HostId) -> Vec<VmId> {
        (0..self.vm_state.len())
            .map(|i| VmId(i as u32))
            .filter(|v| self.vm_state[v.index()].holds_host() && self.vm_host[v.index()] == host)
            .collect()
    }

    /// Checks every invariant: RAM and vCPUs in use per host equal the sum
    /// over its VMs and reservations and fit the host; every VM is in exactly
    /// one state and, when it holds a host, that host is usable; a migrating
    /// VM has exactly one reservation and no reservation is orphaned; no
    /// migration runs from or to a host that is down.
    pub fn check(&self, fabric: &Fabric, vms: &[Vm]) -> Result<(), InvariantError> {
        let n = fabric.hosts.len();
        let mut ram = vec![0u64; n];
        let mut vcpus = vec![0u32; n];
        let mut held_by: Vec<Vec<&Reservation>> = vec![Vec::new(); self.vm_state.len()];
        for r in self.reservations.values() {
            held_by[r.vm.index()].push(r);
        }
        for (i, st) in self.vm_state.iter().enumerate() {
            let host = self.vm_host[i];
            let place = |message: String| InvariantError::VmPlace { vm: vms[i].name.clone(), message };
            let held = &held_by[i];
            match st {
                VmState::Migrating(m) => {
                    if held.len() != 1 || held[0].migration != *m {
                        return Err(place(format!("migrating by {} but holds {} reservations", m.0, held.len())));
                    }
                    if held[0].host == host {
                        return Err(place("migrating to the host it is on".into()));
                    }
                    for (end, h) in [("source", host), ("destination", held[0].host)] {
                        if !self.host_up[h.index()] {
                            return Err(InvariantError::MigrationOnDownHost {
                                migration: m.0,
                                vm: vms[i].name.clone(),
                                end,
                                host: fabric.hosts[h.index()].name.clone(),
                            });
                        }
                    }
                }
                _ if !held.is_empty() => return Err(place(format!("{st:?} but holds a reservation"))),
                _ => {}
            }
            if st.holds_host() {
                if !self.host_usable(host) {
                    return Err(InvariantError::VmOnDownHost { vm: vms[i].name.clone(), host: fabric.hosts[host.index()].name.clone() });
                }
                ram[host.index()] += self.vm_memory[i];
                vcpus[host.index()] += self.vm_vcpus[i];
            }
        }
        for r in self.reservations.values() {
            ram[r.host.index()] += self.vm_memory[r.vm.index()];
            vcpus[r.host.index()] += self.vm_vcpus[r.vm.index()];
        }
        for (h, host) in fabric.hosts.iter().enumerate() {
            if ram[h] != self.host_ram_used[h] {
                return Err(InvariantError::RamSum { host: host.name.clone(), recorded: self.host_ram_used[h], expected: ram[h] });
            }
            if vcpus[h] != self.host_vcpus_used[h] {
                return Err(InvariantError::VcpuSum { host: host.name.clone(), recorded: self.host_vcpus_used[h], expected: vcpus[h] });
            }
            if ram[h] > host.ram.0 {
                return Err(InvariantError::RamOverflow { host: host.name.clone(), used: ram[h], ram: host.ram.0 });
            }
        }
        if let Err(site) = self.free_ram.agrees_with(&self.host_ram_used) {
            return Err(InvariantError::FreeRamIndex { site: fabric.sites[site.index()].name.clone() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
