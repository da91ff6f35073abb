use super::*;
use crate::scenario::{parse, Scenario};

fn scenario() -> Scenario {
    parse(
        r#"
[scenario]
name = "state"
[[sites]]
name = "a"
hosts = [{ name = "h", count = 2, cores = 8, ram = "8GiB" }]
[[vms]]
name = "vm"
count = 2
host = "h-0"
archetype = "web"
memory = "2GiB"
vcpus = 3
"#,
        "state.toml",
    )
    .unwrap()
}

#[test]
fn sums_follow_migrations_failures_and_restarts() {
    let sc = scenario();
    let (f, vms) = (&sc.fabric, &sc.vms);
    let mut s = FabricState::new(f, vms);
    s.check(f, vms).unwrap();
    assert_eq!((s.host_ram_used(HostId(0)), s.host_vcpus_used(HostId(0))), (4 << 30, 6));
    // A migration reserves at the destination; completing it frees the source.
    s.begin_migration(VmId(0), MigrationId(0), HostId(1));
    s.check(f, vms).unwrap();
    assert_eq!(s.host_ram_used(HostId(1)), 2 << 30);
    s.end_migration(VmId(0), MigrationId(0), Some(HostId(1)));
    s.check(f, vms).unwrap();
    assert_eq!((s.host_ram_used(HostId(0)), s.host_ram_used(HostId(1))), (2 << 30, 2 << 30));
    assert_eq!(s.vm_host(VmId(0)), HostId(1));
    // Post-copy: the host switches, then an abort-free end keeps it there.
    s.begin_migration(VmId(1), MigrationId(1), HostId(1));
    s.switch_host(VmId(1), MigrationId(1));
    s.check(f, vms).unwrap();
    s.end_migration(VmId(1), MigrationId(1), None);
    assert_eq!(s.vm_state(VmId(1)), VmState::Lost);
    assert_eq!((s.host_ram_used(HostId(0)), s.host_ram_used(HostId(1))), (0, 2 << 30));
    s.check(f, vms).unwrap();
    // A failure takes the VM off its host; a restart puts it back.
    s.set_host_up(HostId(1), false);
    s.vm_down(VmId(0), Nanos(5));
    s.check(f, vms).unwrap();
    s.vm_restart(VmId(0), HostId(0), Nanos(10));
    s.check(f, vms).unwrap();
    assert_eq!(s.vm_state(VmId(0)), VmState::Restarting { since: Nanos(5), until: Nanos(10) });
    s.vm_booted(VmId(0));
    assert_eq!(s.vms_on(HostId(0)), vec![VmId(0)]);
}

#[test]
fn the_checker_catches_each_broken_invariant() {
    let sc = scenario();
    let (f, vms) = (&sc.fabric, &sc.vms);
    // RAM sum off.
    let mut s = FabricState::new(f, vms);
    s.host_ram_used[0] += 1;
    assert!(matches!(s.check(f, vms), Err(InvariantError::RamSum { .. })), "{:?}", s.check(f, vms));
    // vCPU sum off.
    let mut s = FabricState::new(f, vms);
    s.host_vcpus_used[1] = 1;
    assert!(matches!(s.check(f, vms), Err(InvariantError::VcpuSum { .. })));
    // A migration to a host that went down.
    let mut s = FabricState::new(f, vms);
    s.begin_migration(VmId(0), MigrationId(0), HostId(1));
    s.set_host_up(HostId(1), false);
    assert!(matches!(s.check(f, vms), Err(InvariantError::MigrationOnDownHost { end: "destination", .. })));
    // A running VM on a failed host.
    let mut s = FabricState::new(f, vms);
    s.set_host_up(HostId(0), false);
    assert!(matches!(s.check(f, vms), Err(InvariantError::VmOnDownHost { .. })));
    // A VM in two places: running and holding a reservation.
    let mut s = FabricState::new(f, vms);
    s.reservations.insert(MigrationId(7), Reservation { migration: MigrationId(7), vm: VmId(1), host: HostId(1) });
    s.host_ram_used[1] += 2 << 30;
    s.host_vcpus_used[1] += 3;
    assert!(matches!(s.check(f, vms), Err(InvariantError::VmPlace { .. })));
    // More RAM than the host has.
    let mut s = FabricState::new(f, vms);
    for _ in 0..3 {
        s.vm_memory[0] += 2 << 30;
    }
    s.host_ram_used[0] += 6 << 30;
    assert!(matches!(s.check(f, vms), Err(InvariantError::RamOverflow { .. })));
}
