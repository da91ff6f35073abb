//! Puts the workload guest in memory and its vCPU in 64-bit long mode:
//! GDT, TSS, identity page tables (2 MiB pages, user-accessible), the
//! parameter block, the image, and the initial registers. The guest's own
//! ring-0 entry then fills its IDT and drops to ring 3.

use kvm_bindings::{kvm_regs, kvm_segment};
use kvm_ioctls::VcpuFd;

use super::{ioctl, GuestRam, KvmError};
use crate::guest::abi::*;

const CR0_PE: u64 = 1;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const PTE_PRESENT_RW_USER: u64 = 0x7;
const PDE_LARGE: u64 = 1 << 7;

/// GDT entries: null, kernel code 64, kernel data, user data, user code 64,
/// then the 16-byte TSS descriptor.
const GDT: [u64; 5] = [0, 0x00AF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF, 0x00CF_F200_0000_FFFF, 0x00AF_FA00_0000_FFFF];
/// The TSS: 104 bytes, then an I/O permission bitmap (8192 bytes, one bit
/// per port, 0 = allowed) and its terminating 0xff byte.
const TSS_IOMAP_OFFSET: u64 = 104;
const TSS_LIMIT: u64 = TSS_IOMAP_OFFSET + 8192;

fn tss_descriptor(base: u64) -> [u64; 2] {
    let low = (TSS_LIMIT & 0xffff) | ((base & 0xff_ffff) << 16) | (0x9 << 40) | (1 << 47) | (((TSS_LIMIT >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
    [low, base >> 32]
}

/// Writes the boot structures, the parameter block and the image into `ram`.
pub fn load_guest(ram: &GuestRam, image: &[u8], params: &GuestParams) -> Result<(), KvmError> {
    if image.is_empty() {
        return Err(KvmError::Config("this build has no workload guest (the validator runs on x86_64 Linux only)".into()));
    }
    if image.len() as u64 > GUEST_IMAGE_MAX {
        return Err(KvmError::Config(format!("guest image is {} bytes, at most {GUEST_IMAGE_MAX}", image.len())));
    }
    let mut gdt: Vec<u8> = GDT.iter().flat_map(|e| e.to_le_bytes()).collect();
    gdt.extend(tss_descriptor(GUEST_TSS_GPA).iter().flat_map(|e| e.to_le_bytes()));
    ram.write(GUEST_GDT_GPA, &gdt);

    let mut tss = vec![0u8; TSS_LIMIT as usize + 1];
    tss[4..12].copy_from_slice(&GUEST_KSTACK_TOP.to_le_bytes()); // RSP0
    tss[102..104].copy_from_slice(&(TSS_IOMAP_OFFSET as u16).to_le_bytes());
    // Deny every port but the guest's own, so ring 3 reaches only those
    // (with IOPL 0 the bitmap decides; with IOPL 3 everything is allowed).
    tss[TSS_IOMAP_OFFSET as usize..].fill(0xff);
    for port in [PORT_PROGRESS, PORT_PHASE, PORT_EXCEPTION, PORT_IDLE, PORT_VERIFY_FAIL] {
        for p in port..port + 4 {
            tss[TSS_IOMAP_OFFSET as usize + p as usize / 8] &= !(1 << (p % 8));
        }
    }
    ram.write(GUEST_TSS_GPA, &tss);

    // Identity-map every GiB up to the top of RAM (the hole included: the
    // guest never touches it), 2 MiB pages, user-accessible.
    let layout = Layout::with_split(ram.bytes(), params.ram_split).map_err(KvmError::Config)?;
    let gibs = layout.top_gpa().div_ceil(1 << 30);
    if gibs > GUEST_PD_MAX {
        return Err(KvmError::Config(format!("guest-physical space of {gibs} GiB exceeds the {GUEST_PD_MAX} GiB mapped")));
    }
    ram.write(GUEST_PML4_GPA, &(GUEST_PDPT_GPA | PTE_PRESENT_RW_USER).to_le_bytes());
    for i in 0..gibs {
        let pd = GUEST_PD_GPA + i * 0x1000;
        ram.write(GUEST_PDPT_GPA + i * 8, &(pd | PTE_PRESENT_RW_USER).to_le_bytes());
        let entries: Vec<u8> =
            (0..512u64).flat_map(|j| ((((i * 512) + j) << 21) | PTE_PRESENT_RW_USER | PDE_LARGE).to_le_bytes()).collect();
        ram.write(pd, &entries);
    }
    ram.write(GUEST_PARAMS_GPA, &params.to_bytes());
    ram.write(GUEST_IMAGE_GPA, image);
    Ok(())
}

fn segment(selector: u16, code: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 0xb } else { 0x3 },
        present: 1,
        dpl: (selector & 3) as u8,
        db: if code { 0 } else { 1 },
        s: 1,
        l: if code { 1 } else { 0 },
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Sets `vcpu`'s registers to enter the guest image in 64-bit ring 0.
pub fn setup_vcpu(vcpu: &VcpuFd) -> Result<(), KvmError> {
    let mut sregs = ioctl("KVM_GET_SREGS", vcpu.get_sregs())?;
    let code = segment(GUEST_SEL_KCODE, true);
    let data = segment(GUEST_SEL_KDATA, false);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = kvm_segment {
        base: GUEST_TSS_GPA,
        limit: TSS_LIMIT as u32,
        selector: GUEST_SEL_TSS,
        type_: 0xb,
        present: 1,
        dpl: 0,
        db: 0,
        s: 0,
        l: 0,
        g: 0,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    sregs.gdt.base = GUEST_GDT_GPA;
    sregs.gdt.limit = (GDT.len() * 8 + 16 - 1) as u16;
    sregs.idt.base = GUEST_IDT_GPA;
    sregs.idt.limit = 32 * 16 - 1;
    sregs.cr3 = GUEST_PML4_GPA;
    sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sregs.efer = EFER_LME | EFER_LMA;
    ioctl("KVM_SET_SREGS", vcpu.set_sregs(&sregs))?;
    let regs = kvm_regs { rip: GUEST_IMAGE_GPA, rsp: GUEST_KSTACK_TOP, rflags: 0x2, ..Default::default() };
    ioctl("KVM_SET_REGS", vcpu.set_regs(&regs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tss_descriptor_encodes_base_and_limit() {
        let [low, high] = tss_descriptor(0x1234_5678_9abc);
        assert_eq!(low & 0xffff, TSS_LIMIT);
        assert_eq!((low >> 16) & 0xff_ffff, 0x56_789abc & 0xff_ffff);
        assert_eq!((low >> 56) & 0xff, 0x56);
        assert_eq!((low >> 40) & 0xf, 0x9, "available 64-bit TSS");
        assert_eq!((low >> 47) & 1, 1, "present");
        assert_eq!(high, 0x1234);
    }
}
