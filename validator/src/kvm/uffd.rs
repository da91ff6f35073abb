//! userfaultfd on guest RAM: what post-copy needs at a destination. The
//! guest RAM's mapping is registered for missing-page faults; a vCPU (or the
//! VMM) touching a page not yet there blocks in the kernel until a handler
//! places it ([`Userfault::copy_page`]). Linux's `userfaultfd(2)` and
//! `ioctl_userfaultfd(2)`; the structures are declared here as the kernel's
//! `linux/userfaultfd.h` has them (x86_64).
//!
//! Only the mechanism lives here (open, register, read a fault, place a
//! page); `tests/userfault.rs` is the probe that it works with KVM guests on
//! a given host.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::GuestRam;

const UFFD_API: u64 = 0xAA;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
const UFFD_EVENT_PAGEFAULT: u8 = 0x12;

const fn iowr(nr: u64, size: u64) -> u64 {
    (3 << 30) | (size << 16) | (0xAA << 8) | nr
}
const UFFDIO_API: u64 = iowr(0x3F, 24);
const UFFDIO_REGISTER: u64 = iowr(0x00, 32);
const UFFDIO_COPY: u64 = iowr(0x03, 40);

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRegister {
    start: u64,
    len: u64,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

/// `struct uffd_msg` (32 bytes): for a page fault, `arg` holds flags then
/// the faulting address.
#[repr(C)]
#[derive(Default)]
struct UffdMsg {
    event: u8,
    reserved: [u8; 7],
    flags: u64,
    address: u64,
    rest: u64,
}

/// A userfaultfd call failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct UffdError {
    /// The call.
    pub what: &'static str,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

fn os(what: &'static str) -> UffdError {
    UffdError { what, source: std::io::Error::last_os_error() }
}

/// A userfaultfd with guest RAM registered for missing-page faults.
#[derive(Debug)]
pub struct Userfault {
    fd: OwnedFd,
    base: u64,
    bytes: u64,
}

impl Userfault {
    /// Opens a userfaultfd and registers all of `ram` (which must have no
    /// page faulted in yet for every access to be seen).
    pub fn register(ram: &GuestRam) -> Result<Userfault, UffdError> {
        // SAFETY: userfaultfd(2) takes flags and returns a new fd or -1.
        let raw = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(os("userfaultfd(2)"));
        }
        // SAFETY: `raw` is a new fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        let mut api = UffdioApi { api: UFFD_API, features: 0, ioctls: 0 };
        // SAFETY: UFFDIO_API reads and writes the struct we pass.
        if unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_API as _, &mut api) } != 0 {
            return Err(os("UFFDIO_API"));
        }
        let (base, bytes) = (ram.host_addr(), ram.bytes());
        let mut reg = UffdioRegister { start: base, len: bytes, mode: UFFDIO_REGISTER_MODE_MISSING, ioctls: 0 };
        // SAFETY: UFFDIO_REGISTER on our own mapping, which outlives the fd
        // as long as the caller keeps `ram` (a clone holds the mapping).
        if unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_REGISTER as _, &mut reg) } != 0 {
            return Err(os("UFFDIO_REGISTER"));
        }
        Ok(Userfault { fd, base, bytes })
    }

    /// Waits for the next missing-page fault; returns the RAM offset of its
    /// page (None: an event other than a page fault).
    pub fn next_fault(&self) -> Result<Option<u64>, UffdError> {
        let mut msg = UffdMsg::default();
        // SAFETY: read(2) into a buffer of the message's size.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), &mut msg as *mut UffdMsg as *mut libc::c_void, std::mem::size_of::<UffdMsg>()) };
        if n != std::mem::size_of::<UffdMsg>() as isize {
            return Err(os("reading a userfaultfd event"));
        }
        if msg.event != UFFD_EVENT_PAGEFAULT || msg.address < self.base || msg.address >= self.base + self.bytes {
            return Ok(None);
        }
        Ok(Some((msg.address - self.base) & !(memfabric_migration::PAGE_SIZE_BYTES - 1)))
    }

    /// Places `page` (4096 bytes) at RAM offset `offset` and wakes whoever
    /// waits on it. A page already there (EEXIST) is not an error.
    pub fn copy_page(&self, offset: u64, page: &[u8]) -> Result<(), UffdError> {
        assert_eq!(page.len() as u64, memfabric_migration::PAGE_SIZE_BYTES, "one page");
        assert!(offset + page.len() as u64 <= self.bytes, "offset inside RAM");
        let mut c = UffdioCopy { dst: self.base + offset, src: page.as_ptr() as u64, len: page.len() as u64, mode: 0, copy: 0 };
        // SAFETY: UFFDIO_COPY copies `len` bytes from our buffer into our
        // registered mapping, both valid for that length.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), UFFDIO_COPY as _, &mut c) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EEXIST) {
                return Ok(());
            }
            return Err(UffdError { what: "UFFDIO_COPY", source: e });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_are_the_kernels() {
        // From linux/userfaultfd.h on x86_64.
        assert_eq!(UFFDIO_API, 0xC018_AA3F);
        assert_eq!(UFFDIO_REGISTER, 0xC020_AA00);
        assert_eq!(UFFDIO_COPY, 0xC028_AA03);
        assert_eq!(std::mem::size_of::<UffdMsg>(), 32);
    }

    #[test]
    fn a_missing_page_is_served_by_the_handler() {
        let ram = GuestRam::new(4 << 20, false).unwrap();
        let uffd = match Userfault::register(&ram) {
            Ok(u) => u,
            Err(e) => {
                eprintln!("skipping a_missing_page_is_served_by_the_handler: {e}");
                return;
            }
        };
        let r = ram.clone();
        let reader = std::thread::spawn(move || {
            let mut b = [0u8; 8];
            r.read(5 * 4096 + 8, &mut b);
            b
        });
        assert_eq!(uffd.next_fault().unwrap(), Some(5 * 4096));
        let page = [0x5au8; 4096];
        uffd.copy_page(5 * 4096, &page).unwrap();
        assert_eq!(reader.join().unwrap(), [0x5a; 8]);
    }
}
