//! The KVM side of the VMM: one VM with its guest RAM in a single memory slot
//! ([`vm`]), long-mode boot of the workload guest ([`boot`]), the vCPU thread
//! with pause/resume ([`vcpu`]) and throttling ([`throttle`]), the vCPU
//! state that migrates ([`state`]), the guest's CPU model ([`cpuid`]), and
//! userfaultfd on guest RAM for post-copy ([`uffd`]).
//!
//! Written against /dev/kvm as found on hardware hosts; the notes on
//! `kvm-pvm` (nested, shadow paging) in shared/MACHINE.md explain the few
//! places where that matters (ring-3 workload, RAM below the APIC hole).

pub mod boot;
pub mod cpuid;
pub mod state;
pub mod throttle;
pub mod uffd;
pub mod vcpu;
pub mod vm;

pub use state::VcpuState;
pub use vcpu::{monotonic_ns, GuestFailure, Paused, Progress, ProgressSnapshot, VcpuHandle};
pub use vm::{DirtyBitmap, GuestRam, Vm};

/// A KVM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// /dev/kvm is missing or cannot be opened.
    #[error("cannot open /dev/kvm: {0} (the validator needs KVM; on a VM host, enable nested virtualization or run on bare metal)")]
    Open(#[source] kvm_ioctls::Error),
    /// An ioctl failed.
    #[error("{what}: {source}")]
    Ioctl {
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Mapping guest memory failed.
    #[error("cannot map {bytes} bytes of guest memory: {message}")]
    Mmap {
        /// Requested size.
        bytes: u64,
        /// Why.
        message: String,
    },
    /// The VM was configured wrongly.
    #[error("{0}")]
    Config(String),
    /// The guest CPU asked for cannot be had on this host.
    #[error(transparent)]
    Cpu(#[from] cpuid::CpuError),
}

/// Shorthand for ioctl errors.
pub(crate) fn ioctl<T>(what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, KvmError> {
    r.map_err(|source| KvmError::Ioctl { what, source })
}

/// Whether /dev/kvm can be opened (for tests that skip without it).
pub fn kvm_available() -> Result<(), String> {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("/dev/kvm is not usable ({e})")),
    }
}

/// For tests: true if /dev/kvm is usable; otherwise prints why `test` is
/// skipped and returns false.
pub fn kvm_or_skip(test: &str) -> bool {
    match kvm_available() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skipping {test}: {e} (this test needs /dev/kvm)");
            false
        }
    }
}
