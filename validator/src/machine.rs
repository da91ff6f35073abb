//! A booted workload guest: the VM, its running vCPU and what it runs.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use memfabric_formats::cpu::VmCpu;

use crate::guest::abi::{GuestCpuid, GUEST_CPUID_GPA, GUEST_CPUID_MAGIC};
use crate::guest::{self, GuestWorkload};
use crate::kvm::cpuid::{self, GuestCpu};
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
    /// The CPU its vCPU was given ([`VmCpu::Any`]: what KVM supports).
    pub cpu: VmCpu,
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
        Machine::boot_with_cpu(memory_bytes, workload, &GuestCpu::Host)
    }

    /// As [`Machine::boot`], with the vCPU's CPUID from `cpu` (a named
    /// model or a feature list, [`cpuid`]); refused if KVM here cannot
    /// offer it. [`GuestCpu::Host`] gives KVM's supported CPUID unchanged.
    pub fn boot_with_cpu(memory_bytes: u64, workload: &GuestWorkload, cpu: &GuestCpu) -> Result<Machine, KvmError> {
        let vm = Vm::with_split(memory_bytes, workload.ram_split, false)?;
        let supported = vm.supported_cpuid()?;
        // Checked against the host even without a model, so that the
        // guest's features are known (what a destination must offer).
        let model = cpuid::vm_cpu(cpu, &supported)?;
        let cpu = if *cpu == GuestCpu::Host { VmCpu::Any } else { model };
        let vcpu = vm.create_vcpu_with(0, &cpu)?;
        let tsc_hz = tsc_hz(&vcpu);
        let params = workload.params(memory_bytes, tsc_hz).map_err(|e| KvmError::Config(e.to_string()))?;
        boot::load_guest(vm.ram(), guest::IMAGE, &params)?;
        boot::setup_vcpu(&vcpu)?;
        let vcpu = VcpuHandle::spawn(vcpu, vm.ram().clone())?;
        Ok(Machine { vm, vcpu, tsc_hz, cpu })
    }

    /// A VM whose memory is already in `vm` and whose vCPU resumes from
    /// `state` with CPU `cpu` (a migration destination).
    pub fn resume_from(vm: Vm, state: &VcpuState, tsc_hz: u64, cpu: &VmCpu) -> Result<Machine, KvmError> {
        let vcpu = vm.create_vcpu_with(0, cpu)?;
        state.restore(&vcpu)?;
        let vcpu = VcpuHandle::spawn(vcpu, vm.ram().clone())?;
        Ok(Machine { vm, vcpu, tsc_hz, cpu: cpu.clone() })
    }

    /// The CPU features (of those that tell models apart) the guest saw
    /// when it ran CPUID at boot; None before it has.
    pub fn guest_cpu_features(&self) -> Option<BTreeSet<String>> {
        let mut b = [0u8; GuestCpuid::SIZE];
        self.ram().read(GUEST_CPUID_GPA, &mut b);
        let dump = GuestCpuid::from_bytes(&b);
        (dump.magic == GUEST_CPUID_MAGIC).then(|| cpuid::features_in(|l, s| dump.leaf(l, s)))
    }

    /// The features the guest was started with: its model's, or for a guest
    /// without a model those KVM offers here.
    pub fn cpu_features(&self) -> Result<BTreeSet<String>, KvmError> {
        match &self.cpu {
            VmCpu::Model { features, .. } => Ok(features.clone()),
            _ => Ok(cpuid::host_cpu(&self.vm.supported_cpuid()?).declared.map(|d| d.1).unwrap_or_default()),
        }
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
