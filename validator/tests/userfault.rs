//! The probe post-copy depends on: does userfaultfd work on the RAM of a KVM
//! guest on this host? A guest runs and fills its memory; it is paused and
//! its vCPU state moved to a second VM whose RAM is empty and registered
//! with userfaultfd; the second VM resumes, and every page it touches is
//! served on demand from the first VM's RAM by a handler thread
//! (UFFDIO_COPY). The guest must carry on (writes go on, its own content
//! checks pass) with every page it touched served by a fault. Needs
//! /dev/kvm; skips with a message without it or without userfaultfd.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memfabric_validator::guest::{abi, GuestWorkload};
use memfabric_validator::kvm::uffd::Userfault;
use memfabric_validator::kvm::{kvm_or_skip, Vm};
use memfabric_validator::machine::Machine;

#[test]
fn a_kvm_guest_runs_on_pages_served_by_userfaultfd() {
    if !kvm_or_skip("a_kvm_guest_runs_on_pages_served_by_userfaultfd") {
        return;
    }
    let _serial = common::serial();
    const MEM: u64 = 32 << 20;
    let w = GuestWorkload::from_archetype("web", Some(2000.0), 9).unwrap();
    let src = Machine::boot(MEM, &w).unwrap();
    src.wait_for_phase(abi::GUEST_PHASE_FILLED as u64, Duration::from_secs(120)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let paused = src.vcpu.pause().unwrap();

    let dst = Vm::with_split(MEM, w.ram_split, false).unwrap();
    let uffd = match Userfault::register(dst.ram()) {
        Ok(u) => Arc::new(u),
        Err(e) => {
            eprintln!("skipping a_kvm_guest_runs_on_pages_served_by_userfaultfd: {e}");
            return;
        }
    };
    // The handler: every fault gets the source's page.
    let (faults, wait_ns) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let handler = {
        let (uffd, faults, wait_ns, src_ram) = (uffd.clone(), faults.clone(), wait_ns.clone(), src.ram().clone());
        std::thread::spawn(move || -> Result<(), String> {
            let mut page = [0u8; 4096];
            loop {
                let Some(offset) = uffd.next_fault().map_err(|e| e.to_string())? else { continue };
                let t = Instant::now();
                src_ram.read_page(offset / 4096, &mut page);
                uffd.copy_page(offset, &page).map_err(|e| e.to_string())?;
                wait_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                faults.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let m = Machine::resume_from(dst, &paused.state, src.tsc_hz, &memfabric_sim::cpu::VmCpu::Any).unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) && m.vcpu.failure().is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let p = m.vcpu.progress();
    let failure = m.vcpu.failure();
    let n = faults.load(Ordering::Relaxed);
    eprintln!(
        "userfaultfd probe: {n} pages served on demand in {:.1} s, {:.1} µs mean handler time; guest writes {} -> {}, {} verify errors, failure {failure:?}",
        t.elapsed().as_secs_f64(),
        wait_ns.load(Ordering::Relaxed) as f64 / n.max(1) as f64 / 1e3,
        paused.progress.writes,
        p.writes,
        p.verify_errors
    );
    assert_eq!(failure, None, "the guest failed on userfaultfd-backed RAM");
    assert!(n > 0, "no fault was served: the probe tested nothing");
    assert!(p.writes > paused.progress.writes, "the guest did not carry on: {} -> {}", paused.progress.writes, p.writes);
    assert_eq!(p.verify_errors, 0);
    let _ = m.vcpu.stop();
    drop(handler); // blocked in read(2) on the fd; it ends with the process
    let _ = src.vcpu.stop();
}
