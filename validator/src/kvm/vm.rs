//! A VM with one memory slot of guest RAM at guest-physical 0, and the dirty
//! log of that slot.

use std::sync::Arc;

use kvm_bindings::{kvm_userspace_memory_region, CpuId, KVM_MAX_CPUID_ENTRIES, KVM_MEM_LOG_DIRTY_PAGES};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use memfabric_migration::PAGE_SIZE_BYTES;
use memfabric_formats::cpu::VmCpu;
use vm_memory::mmap::MmapRegion;

use super::{ioctl, KvmError};
use crate::guest::abi::{Layout, DEFAULT_RAM_SPLIT, GUEST_HIGH_RAM_GPA};

const PAGE: usize = PAGE_SIZE_BYTES as usize;

/// Guest RAM as the VMM sees it: a host mapping shared with the guest.
///
/// The guest writes this memory concurrently while it runs; the VMM copies
/// pages out ([`GuestRam::read_page`]) and never hands out references into
/// it, so a torn read only ever yields a page the dirty log reports again.
#[derive(Clone)]
pub struct GuestRam {
    region: Arc<MmapRegion>,
}

impl std::fmt::Debug for GuestRam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestRam").field("bytes", &self.bytes()).finish()
    }
}

impl GuestRam {
    /// Maps `bytes` of anonymous memory; `populate` pre-faults it (a
    /// migration destination does, to write at memory speed).
    pub fn new(bytes: u64, populate: bool) -> Result<GuestRam, KvmError> {
        let mut flags = libc::MAP_ANONYMOUS | libc::MAP_PRIVATE | libc::MAP_NORESERVE;
        if populate {
            flags |= libc::MAP_POPULATE;
        }
        let region = MmapRegion::build(None, bytes as usize, libc::PROT_READ | libc::PROT_WRITE, flags)
            .map_err(|e| KvmError::Mmap { bytes, message: e.to_string() })?;
        Ok(GuestRam { region: Arc::new(region) })
    }

    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.region.size() as u64
    }

    /// Number of pages.
    pub fn pages(&self) -> u64 {
        self.bytes() / PAGE_SIZE_BYTES
    }

    fn check(&self, gpa: u64, len: usize) {
        assert!(gpa.checked_add(len as u64).is_some_and(|end| end <= self.bytes()), "guest access {gpa:#x}+{len} out of RAM");
    }

    /// Copies `out.len()` bytes at guest-physical `gpa` into `out`.
    pub fn read(&self, gpa: u64, out: &mut [u8]) {
        self.check(gpa, out.len());
        // SAFETY: the range is inside the mapping (checked), which lives as
        // long as `self.region`; the guest may write it concurrently, which
        // at worst yields bytes from before and after its write.
        unsafe { std::ptr::copy_nonoverlapping(self.region.as_ptr().add(gpa as usize), out.as_mut_ptr(), out.len()) }
    }

    /// Copies `data` to guest-physical `gpa`.
    pub fn write(&self, gpa: u64, data: &[u8]) {
        self.check(gpa, data.len());
        // SAFETY: as in `read`; the VMM writes only while the vCPU is not
        // running (boot, migration destination before resume).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.region.as_ptr().add(gpa as usize), data.len()) }
    }

    /// Copies page `index` into `out`.
    pub fn read_page(&self, index: u64, out: &mut [u8; PAGE]) {
        self.read(index * PAGE_SIZE_BYTES, out)
    }

    /// Overwrites page `index`.
    pub fn write_page(&self, index: u64, page: &[u8]) {
        assert_eq!(page.len(), PAGE, "write_page takes one page");
        self.write(index * PAGE_SIZE_BYTES, page)
    }

    /// Page `index` in place, for a writer that rebuilds it there (the
    /// migration destination decodes straight into guest RAM).
    ///
    /// # Safety
    /// No vCPU of this RAM may run, and no other reference to the page may
    /// be alive, while the returned one is.
    pub unsafe fn page_mut(&self, index: u64) -> &mut [u8; PAGE] {
        self.check(index * PAGE_SIZE_BYTES, PAGE);
        // SAFETY: inside the mapping (checked), page-aligned; exclusivity is
        // the caller's contract.
        unsafe { &mut *(self.region.as_ptr().add((index * PAGE_SIZE_BYTES) as usize) as *mut [u8; PAGE]) }
    }

    /// A little-endian u64 at `gpa`.
    pub fn read_u64(&self, gpa: u64) -> u64 {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b);
        u64::from_le_bytes(b)
    }

    /// xxh3-64 of every page, in page order (the integrity check at switchover).
    pub fn page_hashes(&self) -> Vec<u64> {
        let mut page = [0u8; PAGE];
        (0..self.pages())
            .map(|i| {
                self.read_page(i, &mut page);
                xxhash_rust::xxh3::xxh3_64(&page)
            })
            .collect()
    }

    /// Where the mapping starts in this process.
    pub(crate) fn host_addr(&self) -> u64 {
        self.region.as_ptr() as u64
    }
}

/// A dirty bitmap: bit `i` of word `i / 64` is page `i`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirtyBitmap {
    /// The words.
    pub words: Vec<u64>,
}

impl DirtyBitmap {
    /// An empty bitmap for `pages` pages.
    pub fn new(pages: u64) -> DirtyBitmap {
        DirtyBitmap { words: vec![0; pages.div_ceil(64) as usize] }
    }

    /// Every page of `pages` marked.
    pub fn full(pages: u64) -> DirtyBitmap {
        let mut b = DirtyBitmap::new(pages);
        for i in 0..pages {
            b.set(i);
        }
        b
    }

    /// Marks page `i`.
    pub fn set(&mut self, i: u64) {
        self.words[(i / 64) as usize] |= 1 << (i % 64);
    }

    /// ORs `other` into `self`.
    pub fn merge(&mut self, other: &DirtyBitmap) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// Number of pages marked.
    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| w.count_ones() as u64).sum()
    }

    /// The marked pages in order, walking 64-page words and skipping empty ones.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut bits = w;
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let b = bits.trailing_zeros() as u64;
                bits &= bits - 1;
                Some(wi as u64 * 64 + b)
            })
        })
    }
}

/// A KVM VM with its guest RAM.
///
/// RAM is one host mapping. Offsets below the split are memory slot 0 at
/// guest-physical 0; the rest, if any, is slot 1 at 4 GiB
/// ([`Layout`]). Pages are named by RAM offset
/// everywhere (dirty log, migration, traces).
pub struct Vm {
    kvm: Kvm,
    fd: VmFd,
    ram: GuestRam,
    /// `(slot, guest-physical address, RAM offset, bytes)`.
    slots: Vec<(u32, u64, u64, u64)>,
    dirty_logging: bool,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm").field("ram", &self.ram).field("slots", &self.slots).field("dirty_logging", &self.dirty_logging).finish()
    }
}

impl Vm {
    /// A VM with `memory_bytes` of RAM and the default 3 GiB split.
    pub fn new(memory_bytes: u64, populate: bool) -> Result<Vm, KvmError> {
        Vm::with_split(memory_bytes, DEFAULT_RAM_SPLIT, populate)
    }

    /// A VM with `memory_bytes` of RAM, offsets from `ram_split` on mapped at 4 GiB.
    pub fn with_split(memory_bytes: u64, ram_split: u64, populate: bool) -> Result<Vm, KvmError> {
        if memory_bytes == 0 || memory_bytes % PAGE_SIZE_BYTES != 0 {
            return Err(KvmError::Config(format!("guest memory {memory_bytes} bytes: expected whole pages")));
        }
        let layout = Layout::with_split(memory_bytes, ram_split).map_err(KvmError::Config)?;
        let kvm = Kvm::new().map_err(KvmError::Open)?;
        let fd = ioctl("KVM_CREATE_VM", kvm.create_vm())?;
        let ram = GuestRam::new(memory_bytes, populate)?;
        let low = memory_bytes.min(layout.ram_split);
        let mut slots = vec![(0, 0, 0, low)];
        if memory_bytes > low {
            slots.push((1, GUEST_HIGH_RAM_GPA, low, memory_bytes - low));
        }
        let vm = Vm { kvm, fd, ram, slots, dirty_logging: false };
        vm.register_slots(false)?;
        Ok(vm)
    }

    fn register_slots(&self, log_dirty: bool) -> Result<(), KvmError> {
        for &(slot, gpa, offset, bytes) in &self.slots {
            let region = kvm_userspace_memory_region {
                slot,
                flags: if log_dirty { KVM_MEM_LOG_DIRTY_PAGES } else { 0 },
                guest_phys_addr: gpa,
                memory_size: bytes,
                userspace_addr: self.ram.host_addr() + offset,
            };
            // SAFETY: the region is part of our own mapping (offset + bytes
            // never exceeds its size), which outlives the VM: both are owned
            // by `self`, and the VM fd is dropped first by field order; vCPU
            // threads hold a clone of the mapping.
            ioctl("KVM_SET_USER_MEMORY_REGION", unsafe { self.fd.set_user_memory_region(region) })?;
        }
        Ok(())
    }

    /// Guest RAM.
    pub fn ram(&self) -> &GuestRam {
        &self.ram
    }

    /// Turns dirty logging on or off. Turning it on write-protects every
    /// page; the first [`Vm::take_dirty_log`] reports the pages written since.
    pub fn set_dirty_logging(&mut self, on: bool) -> Result<(), KvmError> {
        if on != self.dirty_logging {
            self.register_slots(on)?;
            self.dirty_logging = on;
        }
        Ok(())
    }

    /// The pages written since dirty logging was turned on or since the last
    /// call, and clears the log (KVM_GET_DIRTY_LOG re-protects them).
    pub fn take_dirty_log(&self) -> Result<DirtyBitmap, KvmError> {
        if !self.dirty_logging {
            return Err(KvmError::Config("dirty logging is off".into()));
        }
        // Slot 0 ends on a 2 MiB boundary (a whole number of 64-page words),
        // so the slots' bitmaps concatenate into one indexed by RAM offset.
        let mut words = Vec::with_capacity(self.ram.pages().div_ceil(64) as usize);
        for &(slot, _, _, bytes) in &self.slots {
            words.extend(ioctl("KVM_GET_DIRTY_LOG", self.fd.get_dirty_log(slot, bytes as usize))?);
        }
        Ok(DirtyBitmap { words })
    }

    /// Creates vCPU `id` with the CPUID KVM supports.
    pub fn create_vcpu(&self, id: u64) -> Result<VcpuFd, KvmError> {
        self.create_vcpu_with(id, &VmCpu::Any)
    }

    /// The CPUID values KVM supports on this host.
    pub fn supported_cpuid(&self) -> Result<CpuId, KvmError> {
        ioctl("KVM_GET_SUPPORTED_CPUID", self.kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES))
    }

    /// Creates vCPU `id` with the CPUID of `cpu` ([`super::cpuid::cpuid_for`];
    /// KVM's supported values when `cpu` is [`VmCpu::Any`]).
    pub fn create_vcpu_with(&self, id: u64, cpu: &VmCpu) -> Result<VcpuFd, KvmError> {
        let vcpu = ioctl("KVM_CREATE_VCPU", self.fd.create_vcpu(id))?;
        let cpuid = super::cpuid::cpuid_for(cpu, &self.supported_cpuid()?);
        ioctl("KVM_SET_CPUID2", vcpu.set_cpuid2(&cpuid))?;
        Ok(vcpu)
    }
}
