//! A booted workload guest: the VM, its running vCPU and what it runs.

use std::time::{Duration, Instant};

use crate::guest::{self, GuestWorkload};
use crate::kvm::{boot, GuestRam, KvmError, ProgressSnapshot, VcpuHandle, VcpuState, Vm};

/// A VM running the workload guest.
#[derive(Debug)]
pub struct Machine {
    /// The VM (memory, dirty log).
    pub vm: Vm,
    /// Its vCPU thread.
    pub vcpu: VcpuHandle,
    /// TSC frequency the guest paces itself by.
    pub tsc_hz: u64,
}

/// The guest TSC frequency: KVM's value for the vCPU, else measured from the
/// host TSC (the guest's TSC runs at the host rate under KVM without scaling).
fn tsc_hz(vcpu: &kvm_ioctls::VcpuFd) -> u64 {
    if let Ok(khz) = vcpu.get_tsc_khz() {
        if khz > 0 {
            return khz as u64 * 1000;
        }
    }
    measure_host_tsc_hz()
}

/// Host TSC ticks per second, measured over 50 ms.
pub fn measure_host_tsc_hz() -> u64 {
    // SAFETY: RDTSC has no memory effects; every x86_64 CPU has it.
    let rdtsc = || unsafe { core::arch::x86_64::_rdtsc() };
    let (t0, c0) = (Instant::now(), rdtsc());
    std::thread::sleep(Duration::from_millis(50));
    let (t1, c1) = (Instant::now(), rdtsc());
    ((c1 - c0) as f64 / (t1 - t0).as_secs_f64()) as u64
}

impl Machine {
    /// Creates a VM with `memory_bytes`, loads the guest with `workload` and
    /// starts its vCPU.
    pub fn boot(memory_bytes: u64, workload: &GuestWorkload) -> Result<Machine, KvmError> {
        let vm = Vm::with_split(memory_bytes, workload.ram_split, false)?;
        let vcpu = vm.create_vcpu(0)?;
        let tsc_hz = tsc_hz(&vcpu);
        let params = workload.params(memory_bytes, tsc_hz).map_err(|e| KvmError::Config(e.to_string()))?;
        boot::load_guest(vm.ram(), guest::IMAGE, &params)?;
        boot::setup_vcpu(&vcpu)?;
        let vcpu = VcpuHandle::spawn(vcpu, vm.ram().clone())?;
        Ok(Machine { vm, vcpu, tsc_hz })
    }

    /// A VM whose memory is already in `vm` and whose vCPU resumes from
    /// `state` (a migration destination).
    pub fn resume_from(vm: Vm, state: &VcpuState, tsc_hz: u64) -> Result<Machine, KvmError> {
        let vcpu = vm.create_vcpu(0)?;
        state.restore(&vcpu)?;
        let vcpu = VcpuHandle::spawn(vcpu, vm.ram().clone())?;
        Ok(Machine { vm, vcpu, tsc_hz })
    }

    /// Guest RAM.
    pub fn ram(&self) -> &GuestRam {
        self.vm.ram()
    }

    /// Waits until the guest reaches `phase`, failing on a guest failure or
    /// after `timeout`.
    pub fn wait_for_phase(&self, phase: u64, timeout: Duration) -> Result<ProgressSnapshot, String> {
        let t = Instant::now();
        loop {
            if let Some(f) = self.vcpu.failure() {
                return Err(f.to_string());
            }
            let p = self.vcpu.progress();
            if p.phase == phase {
                return Ok(p);
            }
            if t.elapsed() > timeout {
                return Err(format!(
                    "the guest did not reach phase {phase} within {timeout:?} (phase {}, {} pages filled, {} exits)",
                    p.phase, p.filled_pages, p.exits
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
