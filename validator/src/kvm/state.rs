//! The vCPU state that moves with a migration: general and special
//! registers, FPU/SSE, XCRs, the MSRs the workload guest can touch, pending
//! events and the MP state, with a binary encoding for the wire.
//!
//! Encoding: `"MFVS"`, version u16, count u16, then per item a tag u16, a
//! length u32 and the bytes of the KVM structure (its `repr(C)` layout, as
//! KVM defines it), all little-endian. Decoding checks every tag and length.

use kvm_bindings::{kvm_fpu, kvm_mp_state, kvm_msr_entry, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, Msrs};
use kvm_ioctls::VcpuFd;
use zerocopy::{FromBytes, IntoBytes};

use super::{ioctl, KvmError};

/// MSRs saved and restored: the TSC (so the guest's clock continues where it
/// paused), SYSENTER/SYSCALL targets, kernel GS base, TSC_AUX, PAT. EFER and
/// the FS/GS bases travel in the special registers.
pub const MIGRATED_MSRS: [u32; 10] =
    [0x10, 0x174, 0x175, 0x176, 0xc000_0081, 0xc000_0082, 0xc000_0083, 0xc000_0084, 0xc000_0102, 0x277];

const MAGIC: &[u8; 4] = b"MFVS";
const VERSION: u16 = 1;
const TAG_REGS: u16 = 1;
const TAG_SREGS: u16 = 2;
const TAG_FPU: u16 = 3;
const TAG_XCRS: u16 = 4;
const TAG_EVENTS: u16 = 5;
const TAG_MP_STATE: u16 = 6;
const TAG_MSRS: u16 = 7;

/// A vCPU's migratable state.
#[derive(Clone)]
pub struct VcpuState {
    /// General-purpose registers, RIP, RFLAGS.
    pub regs: kvm_regs,
    /// Segments, control registers, EFER, descriptor tables.
    pub sregs: kvm_sregs,
    /// x87/SSE state.
    pub fpu: kvm_fpu,
    /// Extended control registers (None where KVM has no XCR support).
    pub xcrs: Option<kvm_xcrs>,
    /// Pending exceptions, interrupts, NMIs.
    pub events: kvm_vcpu_events,
    /// Runnable or halted.
    pub mp_state: kvm_mp_state,
    /// `(index, value)` of each MSR in [`MIGRATED_MSRS`] that KVM would read.
    pub msrs: Vec<(u32, u64)>,
}

impl std::fmt::Debug for VcpuState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VcpuState").field("rip", &self.regs.rip).field("rsp", &self.regs.rsp).field("msrs", &self.msrs).finish()
    }
}

/// A state blob could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateDecodeError {
    /// Wrong magic or version.
    #[error("vCPU state: bad header (expected \"MFVS\" version {VERSION})")]
    Header,
    /// Ended early.
    #[error("vCPU state: truncated at byte {0}")]
    Truncated(usize),
    /// An item has the wrong size for its tag.
    #[error("vCPU state: item tag {tag} is {len} bytes, expected {expected}")]
    Size {
        /// The tag.
        tag: u16,
        /// Its length.
        len: usize,
        /// The size of the structure.
        expected: usize,
    },
    /// Unknown tag.
    #[error("vCPU state: unknown item tag {0}")]
    Tag(u16),
    /// A required item is missing.
    #[error("vCPU state: item {0} missing")]
    Missing(&'static str),
}

fn read_msrs(vcpu: &VcpuFd) -> Result<Vec<(u32, u64)>, KvmError> {
    let mut out = Vec::new();
    for index in MIGRATED_MSRS {
        let mut msrs = Msrs::from_entries(&[kvm_msr_entry { index, ..Default::default() }])
            .map_err(|e| KvmError::Config(format!("MSR list: {e:?}")))?;
        if ioctl("KVM_GET_MSRS", vcpu.get_msrs(&mut msrs))? == 1 {
            out.push((index, msrs.as_slice()[0].data));
        }
    }
    Ok(out)
}

/// Encoded size of [`kvm_fpu`] (it has no byte-level derive in kvm-bindings).
const FPU_BYTES: usize = 8 * 16 + 2 + 2 + 1 + 2 + 8 + 8 + 16 * 16 + 4;

fn fpu_to_bytes(f: &kvm_fpu) -> Vec<u8> {
    let mut out = Vec::with_capacity(FPU_BYTES);
    f.fpr.iter().for_each(|r| out.extend_from_slice(r));
    out.extend_from_slice(&f.fcw.to_le_bytes());
    out.extend_from_slice(&f.fsw.to_le_bytes());
    out.push(f.ftwx);
    out.extend_from_slice(&f.last_opcode.to_le_bytes());
    out.extend_from_slice(&f.last_ip.to_le_bytes());
    out.extend_from_slice(&f.last_dp.to_le_bytes());
    f.xmm.iter().for_each(|r| out.extend_from_slice(r));
    out.extend_from_slice(&f.mxcsr.to_le_bytes());
    out
}

fn fpu_from_bytes(b: &[u8]) -> Option<kvm_fpu> {
    if b.len() != FPU_BYTES {
        return None;
    }
    let mut f = kvm_fpu::default();
    let mut at = 0;
    let mut take = |n: usize| {
        let s = &b[at..at + n];
        at += n;
        s
    };
    for r in f.fpr.iter_mut() {
        r.copy_from_slice(take(16));
    }
    f.fcw = u16::from_le_bytes(take(2).try_into().ok()?);
    f.fsw = u16::from_le_bytes(take(2).try_into().ok()?);
    f.ftwx = take(1)[0];
    f.last_opcode = u16::from_le_bytes(take(2).try_into().ok()?);
    f.last_ip = u64::from_le_bytes(take(8).try_into().ok()?);
    f.last_dp = u64::from_le_bytes(take(8).try_into().ok()?);
    for r in f.xmm.iter_mut() {
        r.copy_from_slice(take(16));
    }
    f.mxcsr = u32::from_le_bytes(take(4).try_into().ok()?);
    Some(f)
}

impl VcpuState {
    /// Reads the state of a vCPU that is not running.
    pub fn capture(vcpu: &VcpuFd) -> Result<VcpuState, KvmError> {
        Ok(VcpuState {
            regs: ioctl("KVM_GET_REGS", vcpu.get_regs())?,
            sregs: ioctl("KVM_GET_SREGS", vcpu.get_sregs())?,
            fpu: ioctl("KVM_GET_FPU", vcpu.get_fpu())?,
            xcrs: vcpu.get_xcrs().ok(),
            events: ioctl("KVM_GET_VCPU_EVENTS", vcpu.get_vcpu_events())?,
            mp_state: ioctl("KVM_GET_MP_STATE", vcpu.get_mp_state())?,
            msrs: read_msrs(vcpu)?,
        })
    }

    /// Loads the state into a vCPU that has not run yet. Order follows what
    /// KVM needs: special registers (mode) before general ones, MSRs (the
    /// TSC) last before events.
    pub fn restore(&self, vcpu: &VcpuFd) -> Result<(), KvmError> {
        ioctl("KVM_SET_SREGS", vcpu.set_sregs(&self.sregs))?;
        ioctl("KVM_SET_REGS", vcpu.set_regs(&self.regs))?;
        ioctl("KVM_SET_FPU", vcpu.set_fpu(&self.fpu))?;
        if let Some(xcrs) = &self.xcrs {
            ioctl("KVM_SET_XCRS", vcpu.set_xcrs(xcrs))?;
        }
        let entries: Vec<kvm_msr_entry> =
            self.msrs.iter().map(|&(index, data)| kvm_msr_entry { index, data, ..Default::default() }).collect();
        let msrs = Msrs::from_entries(&entries).map_err(|e| KvmError::Config(format!("MSR list: {e:?}")))?;
        let set = ioctl("KVM_SET_MSRS", vcpu.set_msrs(&msrs))?;
        if set != entries.len() {
            return Err(KvmError::Config(format!(
                "KVM_SET_MSRS set {set} of {} MSRs (MSR {:#x} refused)",
                entries.len(),
                entries[set].index
            )));
        }
        ioctl("KVM_SET_MP_STATE", vcpu.set_mp_state(self.mp_state))?;
        ioctl("KVM_SET_VCPU_EVENTS", vcpu.set_vcpu_events(&self.events))
    }

    /// The value of MSR `index`, if saved.
    pub fn msr(&self, index: u32) -> Option<u64> {
        self.msrs.iter().find(|m| m.0 == index).map(|m| m.1)
    }

    /// The wire encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut items: Vec<(u16, Vec<u8>)> = vec![
            (TAG_REGS, self.regs.as_bytes().to_vec()),
            (TAG_SREGS, self.sregs.as_bytes().to_vec()),
            (TAG_FPU, fpu_to_bytes(&self.fpu)),
            (TAG_EVENTS, self.events.as_bytes().to_vec()),
            (TAG_MP_STATE, self.mp_state.as_bytes().to_vec()),
            (TAG_MSRS, self.msrs.iter().flat_map(|(i, v)| i.to_le_bytes().into_iter().chain(v.to_le_bytes())).collect()),
        ];
        if let Some(x) = &self.xcrs {
            items.push((TAG_XCRS, x.as_bytes().to_vec()));
        }
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(items.len() as u16).to_le_bytes());
        for (tag, bytes) in items {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
        out
    }

    /// Decodes [`VcpuState::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<VcpuState, StateDecodeError> {
        if b.len() < 8 || &b[..4] != MAGIC || u16::from_le_bytes([b[4], b[5]]) != VERSION {
            return Err(StateDecodeError::Header);
        }
        let count = u16::from_le_bytes([b[6], b[7]]);
        let mut at = 8;
        let (mut regs, mut sregs, mut fpu, mut xcrs, mut events, mut mp, mut msrs) = (None, None, None, None, None, None, None);
        fn item<T: FromBytes>(tag: u16, bytes: &[u8]) -> Result<T, StateDecodeError> {
            T::read_from_bytes(bytes).map_err(|_| StateDecodeError::Size { tag, len: bytes.len(), expected: std::mem::size_of::<T>() })
        }
        for _ in 0..count {
            let header = b.get(at..at + 6).ok_or(StateDecodeError::Truncated(at))?;
            let tag = u16::from_le_bytes([header[0], header[1]]);
            let len = u32::from_le_bytes(header[2..6].try_into().expect("4 bytes")) as usize;
            at += 6;
            let bytes = b.get(at..at + len).ok_or(StateDecodeError::Truncated(at))?;
            at += len;
            match tag {
                TAG_REGS => regs = Some(item::<kvm_regs>(tag, bytes)?),
                TAG_SREGS => sregs = Some(item::<kvm_sregs>(tag, bytes)?),
                TAG_FPU => fpu = Some(fpu_from_bytes(bytes).ok_or(StateDecodeError::Size { tag, len, expected: FPU_BYTES })?),
                TAG_XCRS => xcrs = Some(item::<kvm_xcrs>(tag, bytes)?),
                TAG_EVENTS => events = Some(item::<kvm_vcpu_events>(tag, bytes)?),
                TAG_MP_STATE => mp = Some(item::<kvm_mp_state>(tag, bytes)?),
                TAG_MSRS => {
                    if len % 12 != 0 {
                        return Err(StateDecodeError::Size { tag, len, expected: len / 12 * 12 });
                    }
                    msrs = Some(
                        bytes
                            .chunks_exact(12)
                            .map(|c| (u32::from_le_bytes(c[..4].try_into().unwrap()), u64::from_le_bytes(c[4..].try_into().unwrap())))
                            .collect(),
                    );
                }
                t => return Err(StateDecodeError::Tag(t)),
            }
        }
        if at != b.len() {
            return Err(StateDecodeError::Truncated(at));
        }
        Ok(VcpuState {
            regs: regs.ok_or(StateDecodeError::Missing("regs"))?,
            sregs: sregs.ok_or(StateDecodeError::Missing("sregs"))?,
            fpu: fpu.ok_or(StateDecodeError::Missing("fpu"))?,
            xcrs,
            events: events.ok_or(StateDecodeError::Missing("events"))?,
            mp_state: mp.ok_or(StateDecodeError::Missing("mp_state"))?,
            msrs: msrs.ok_or(StateDecodeError::Missing("msrs"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VcpuState {
        let mut s = VcpuState {
            regs: kvm_regs { rip: 0x10_0000, rsp: 0x40_0000, rax: 7, ..Default::default() },
            sregs: kvm_sregs { cr3: 0x8000, efer: 0x500, ..Default::default() },
            fpu: kvm_fpu { fcw: 0x37f, ..Default::default() },
            xcrs: Some(kvm_xcrs { nr_xcrs: 1, ..Default::default() }),
            events: kvm_vcpu_events::default(),
            mp_state: kvm_mp_state { mp_state: 0 },
            msrs: vec![(0x10, 123_456_789), (0x277, 0x0007_0406_0007_0406)],
        };
        s.fpu.mxcsr = 0x1f80;
        s
    }

    #[test]
    fn round_trip() {
        let s = sample();
        let back = VcpuState::from_bytes(&s.to_bytes()).unwrap();
        assert_eq!(back.to_bytes(), s.to_bytes());
        assert_eq!(back.regs.rip, 0x10_0000);
        assert_eq!(back.msr(0x10), Some(123_456_789));
    }

    #[test]
    fn rejects_damage() {
        let b = sample().to_bytes();
        assert_eq!(VcpuState::from_bytes(&b[..3]).unwrap_err(), StateDecodeError::Header);
        assert!(matches!(VcpuState::from_bytes(&b[..b.len() - 1]).unwrap_err(), StateDecodeError::Truncated(_)));
        let mut bad = b.clone();
        bad[8] = 99; // first tag
        assert_eq!(VcpuState::from_bytes(&bad).unwrap_err(), StateDecodeError::Tag(99));
        let mut extra = b.clone();
        extra.push(0);
        assert!(matches!(VcpuState::from_bytes(&extra).unwrap_err(), StateDecodeError::Truncated(_)));
    }
}
