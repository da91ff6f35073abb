//! The VMM on its own: the workload guest boots and keeps its pace, pause
//! stops it and resume lets it go on, the dirty log reports what it writes,
//! and a guest that rejects its parameters is reported as such.
//! Needs /dev/kvm; skips with a message where it is missing.

use std::time::{Duration, Instant};

use memfabric_validator::guest::abi::{self, Layout};
use memfabric_validator::guest::{GuestWorkload, IMAGE};
use memfabric_validator::kvm::{boot, GuestFailure, VcpuHandle, Vm};
use memfabric_validator::machine::Machine;

const MEM: u64 = 32 << 20;

use memfabric_validator::kvm::kvm_or_skip;

fn booted(rate: f64) -> (Machine, GuestWorkload) {
    let w = GuestWorkload::from_archetype("web", Some(rate), 7).unwrap();
    let m = Machine::boot(MEM, &w).unwrap();
    m.wait_for_phase(abi::GUEST_PHASE_FILLED as u64, Duration::from_secs(60)).unwrap();
    (m, w)
}

#[test]
fn guest_keeps_its_pace_and_its_pages() {
    if !kvm_or_skip("guest_keeps_its_pace_and_its_pages") {
        return;
    }
    let (m, _) = booted(4000.0);
    let p0 = m.vcpu.progress();
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    let p1 = m.vcpu.progress();
    let rate = (p1.writes - p0.writes) as f64 / t.elapsed().as_secs_f64();
    assert!((3000.0..5000.0).contains(&rate), "guest wrote {rate:.0} pages/s, configured 4000");
    assert!(p1.verified_pages > p0.verified_pages, "the guest re-checks pages");
    assert_eq!(p1.verify_errors, 0);
    assert!(p1.idle_ns > p0.idle_ns, "a paced guest idles between bursts");
    assert!(p1.changed_writes < p1.writes, "web re-writes some pages unchanged");
}

#[test]
fn pause_stops_the_guest_and_resume_lets_it_go_on() {
    if !kvm_or_skip("pause_stops_the_guest_and_resume_lets_it_go_on") {
        return;
    }
    let (m, _) = booted(4000.0);
    std::thread::sleep(Duration::from_millis(100));
    let paused = m.vcpu.pause().unwrap();
    let frozen = m.vcpu.progress();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(m.vcpu.progress(), frozen, "nothing runs while paused");
    // The guest was stopped in its ring-3 code, in long mode.
    assert!(paused.state.regs.rip >= abi::GUEST_IMAGE_GPA && paused.state.regs.rip < abi::GUEST_IMAGE_GPA + abi::GUEST_IMAGE_MAX);
    assert_eq!(paused.state.sregs.cs.dpl, 3, "the workload runs in ring 3");
    assert_eq!(paused.state.sregs.efer & (1 << 10), 1 << 10, "long mode active");
    assert!(paused.state.msr(0x10).is_some(), "the TSC is saved");
    m.vcpu.resume().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let after = m.vcpu.progress();
    assert!(after.writes > frozen.writes + 400, "resumed guest writes again: {} -> {}", frozen.writes, after.writes);
}

#[test]
fn dirty_log_reports_the_guests_writes() {
    if !kvm_or_skip("dirty_log_reports_the_guests_writes") {
        return;
    }
    let (mut m, w) = booted(3000.0);
    m.vm.set_dirty_logging(true).unwrap();
    let _ = m.vm.take_dirty_log().unwrap();
    let p0 = m.vcpu.progress();
    std::thread::sleep(Duration::from_millis(400));
    let dirty = m.vm.take_dirty_log().unwrap();
    let p1 = m.vcpu.progress();
    let writes = p1.writes - p0.writes;
    let layout = Layout::new(MEM).unwrap();
    let work0 = layout.work_gpa / 4096;
    let ws_pages = (layout.work_pages as f64 * w.spec.working_set.0).ceil() as u64;
    let mut workload_pages = 0;
    for page in dirty.iter() {
        let gpa = page * 4096;
        let in_working_set = page >= work0 && page < work0 + ws_pages;
        let in_meta = gpa >= layout.meta_gpa && gpa < layout.work_gpa;
        let in_guest_state = gpa < abi::GUEST_USTACK_TOP; // status block, stacks, image data
        assert!(in_working_set || in_meta || in_guest_state, "page {page} ({gpa:#x}) dirtied outside the guest's working set");
        workload_pages += in_working_set as u64;
    }
    assert!(workload_pages > 0 && workload_pages <= writes + 200, "{workload_pages} distinct pages for {writes} writes");
    // With 3000 writes/s over a 1900-page working set, most of it is hit in 0.4 s.
    assert!(workload_pages as f64 > 0.3 * ws_pages.min(writes) as f64, "{workload_pages} of {ws_pages} working-set pages");
}

#[test]
fn guest_rejecting_its_parameters_is_reported() {
    if !kvm_or_skip("guest_rejecting_its_parameters_is_reported") {
        return;
    }
    let vm = Vm::new(MEM, false).unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    let w = GuestWorkload::from_archetype("web", None, 1).unwrap();
    let mut params = w.params(MEM, 2_000_000_000).unwrap();
    params.abi_version = 99;
    boot::load_guest(vm.ram(), IMAGE, &params).unwrap();
    boot::setup_vcpu(&vcpu).unwrap();
    let handle = VcpuHandle::spawn(vcpu, vm.ram().clone()).unwrap();
    let t = Instant::now();
    while handle.failure().is_none() && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(handle.failure(), Some(GuestFailure::BadParams));
}

#[test]
fn ram_above_the_split_is_a_second_slot_with_its_own_dirty_log() {
    if !kvm_or_skip("ram_above_the_split_is_a_second_slot_with_its_own_dirty_log") {
        return;
    }
    // 64 MiB with the split at 16 MiB: the working set (the first quarter of
    // the workload pages, from 6 MiB) crosses into the RAM mapped at 4 GiB.
    let split = 16u64 << 20;
    let mut w = GuestWorkload::from_archetype("web", Some(5000.0), 3).unwrap();
    w.ram_split = split;
    let mut m = Machine::boot(64 << 20, &w).unwrap();
    m.wait_for_phase(abi::GUEST_PHASE_FILLED as u64, Duration::from_secs(60)).unwrap();
    m.vm.set_dirty_logging(true).unwrap();
    let _ = m.vm.take_dirty_log().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let dirty = m.vm.take_dirty_log().unwrap();
    let (low, high): (Vec<u64>, Vec<u64>) = dirty.iter().partition(|&p| p * 4096 < split);
    assert!(!low.is_empty() && !high.is_empty(), "writes land on both sides: {} low, {} high", low.len(), high.len());
    let layout = w.layout(64 << 20).unwrap();
    let ws_end = layout.work_gpa + (layout.work_pages as f64 * w.spec.working_set.0).ceil() as u64 * 4096;
    assert!(high.iter().all(|&p| p * 4096 < ws_end), "high-slot pages dirtied only in the working set");
    // The guest reads back what it wrote above 4 GiB: no check failures.
    let p = m.vcpu.progress();
    assert!(p.verified_pages > 0 && p.verify_errors == 0);
    // Content of a filled page above the split, read by RAM offset, is not zero
    // (web: 25% zero pages, so one of a few consecutive pages is not).
    let mut page = [0u8; 4096];
    let nonzero = (0..8).any(|i| {
        m.ram().read_page(split / 4096 + 1024 + i, &mut page);
        page.iter().any(|&b| b != 0)
    });
    assert!(nonzero, "the guest filled RAM above the split");
}
