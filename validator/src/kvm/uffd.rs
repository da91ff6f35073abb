//! userfaultfd on guest RAM: what post-copy needs at a destination. The
//! guest RAM's mapping is registered for missing-page faults; a vCPU (or the
//! VMM) touching a page not yet there blocks in the kernel until a handler
//! places it ([`Userfault::copy_page`]). Linux's `userfaultfd(2)` and
//! `ioctl_userfaultfd(2)`; the structures are declared here as the kernel's
//! `linux/userfaultfd.h` has them (x86_64).
//!
//! Only the mechanism lives here (open, register, read a fault, place a
//! page or a zero page, drop pages so that they fault again); the
//! post-copy protocol that uses it is `migrate::postcopy`, and
//! `tests/userfault.rs` is the probe that it works with KVM guests on a
//! given host.

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
const UFFDIO_ZEROPAGE: u64 = iowr(0x04, 32);

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

#[repr(C)]
struct UffdioZeropage {
    start: u64,
    len: u64,
    mode: u64,
    zeropage: i64,
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

/// What placing a page did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// The page was missing and now holds the content given.
    Copied,
    /// The page was already there (EEXIST): nothing was written.
    AlreadyThere,
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
    /// page (None: an event other than a page fault). Blocks until one
    /// comes: for a handler that places pages itself (nothing else can
    /// resolve the fault it waits for); otherwise use
    /// [`Userfault::next_fault_within`].
    pub fn next_fault(&self) -> Result<Option<u64>, UffdError> {
        let mut msg = UffdMsg::default();
        // SAFETY: read(2) into a buffer of the message's size.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), &mut msg as *mut UffdMsg as *mut libc::c_void, std::mem::size_of::<UffdMsg>()) };
        if n != std::mem::size_of::<UffdMsg>() as isize {
            return Err(os("reading a userfaultfd event"));
        }
        Ok(self.fault_offset(&msg))
    }

    /// Waits up to `timeout` for the next missing-page fault: None when
    /// none came; `Some(None)` for an event other than a page fault. A
    /// fault resolved (its page placed) between the wake-up and the read
    /// leaves nothing to read: also None, never a blocking read.
    pub fn next_fault_within(&self, timeout: std::time::Duration) -> Result<Option<Option<u64>>, UffdError> {
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: poll(2) on one pollfd we own.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(None);
            }
            return Err(UffdError { what: "poll(2) on the userfaultfd", source: e });
        }
        if n == 0 {
            return Ok(None);
        }
        let mut msg = UffdMsg::default();
        // SAFETY: recv-like read(2) into a buffer of the message's size;
        // the fd is switched to non-blocking for it (fcntl on our own fd).
        let n = unsafe {
            let flags = libc::fcntl(self.fd.as_raw_fd(), libc::F_GETFL);
            if flags & libc::O_NONBLOCK == 0 {
                libc::fcntl(self.fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
            libc::read(self.fd.as_raw_fd(), &mut msg as *mut UffdMsg as *mut libc::c_void, std::mem::size_of::<UffdMsg>())
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) {
                return Ok(None);
            }
            return Err(UffdError { what: "reading a userfaultfd event", source: e });
        }
        if n != std::mem::size_of::<UffdMsg>() as isize {
            return Err(UffdError { what: "reading a userfaultfd event", source: std::io::Error::other(format!("{n} bytes")) });
        }
        Ok(Some(self.fault_offset(&msg)))
    }

    fn fault_offset(&self, msg: &UffdMsg) -> Option<u64> {
        if msg.event != UFFD_EVENT_PAGEFAULT || msg.address < self.base || msg.address >= self.base + self.bytes {
            return None;
        }
        Some((msg.address - self.base) & !(memfabric_migration::PAGE_SIZE_BYTES - 1))
    }

    /// Places `page` (4096 bytes) at RAM offset `offset` and wakes whoever
    /// waits on it. A page already there is not an error
    /// ([`Placed::AlreadyThere`]).
    pub fn copy_page(&self, offset: u64, page: &[u8]) -> Result<Placed, UffdError> {
        assert_eq!(page.len() as u64, memfabric_migration::PAGE_SIZE_BYTES, "one page");
        assert!(offset + page.len() as u64 <= self.bytes, "offset inside RAM");
        let mut c = UffdioCopy { dst: self.base + offset, src: page.as_ptr() as u64, len: page.len() as u64, mode: 0, copy: 0 };
        // SAFETY: UFFDIO_COPY copies `len` bytes from our buffer into our
        // registered mapping, both valid for that length.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), UFFDIO_COPY as _, &mut c) };
        placed(r, "UFFDIO_COPY")
    }

    /// Maps the zero page at RAM offset `offset` (a page of zeros without
    /// copying one) and wakes whoever waits on it; a page already there is
    /// not an error.
    pub fn zero_page(&self, offset: u64) -> Result<Placed, UffdError> {
        let len = memfabric_migration::PAGE_SIZE_BYTES;
        assert!(offset + len <= self.bytes, "offset inside RAM");
        let mut z = UffdioZeropage { start: self.base + offset, len, mode: 0, zeropage: 0 };
        // SAFETY: UFFDIO_ZEROPAGE on one page of our registered mapping.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), UFFDIO_ZEROPAGE as _, &mut z) };
        placed(r, "UFFDIO_ZEROPAGE")
    }
}

fn placed(ioctl_result: libc::c_int, what: &'static str) -> Result<Placed, UffdError> {
    if ioctl_result == 0 {
        return Ok(Placed::Copied);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EEXIST) {
        return Ok(Placed::AlreadyThere);
    }
    Err(UffdError { what, source: e })
}

/// Drops `pages` (page indices) of `ram` from memory (MADV_DONTNEED, runs
/// of consecutive pages at once): they read as missing again, so that
/// with userfaultfd registered the next access to each faults. What a
/// post-copy destination does with pages it holds a stale copy of.
pub fn discard_pages(ram: &GuestRam, pages: impl Iterator<Item = u64>) -> Result<(), UffdError> {
    let page = memfabric_migration::PAGE_SIZE_BYTES;
    let mut run: Option<(u64, u64)> = None;
    let flush = |(first, n): (u64, u64)| -> Result<(), UffdError> {
        assert!((first + n) * page <= ram.bytes(), "pages inside RAM");
        // SAFETY: MADV_DONTNEED on a range of our own anonymous mapping
        // (checked inside it); the content becomes zero-fill-on-demand.
        let r = unsafe { libc::madvise((ram.host_addr() + first * page) as *mut libc::c_void, (n * page) as usize, libc::MADV_DONTNEED) };
        if r != 0 {
            return Err(os("madvise(MADV_DONTNEED)"));
        }
        Ok(())
    };
    for p in pages {
        run = match run {
            Some((first, n)) if first + n == p => Some((first, n + 1)),
            Some(r) => {
                flush(r)?;
                Some((p, 1))
            }
            None => Some((p, 1)),
        };
    }
    if let Some(r) = run {
        flush(r)?;
    }
    Ok(())
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
        assert_eq!(UFFDIO_ZEROPAGE, 0xC020_AA04);
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
        assert_eq!(uffd.copy_page(5 * 4096, &page).unwrap(), Placed::Copied);
        assert_eq!(reader.join().unwrap(), [0x5a; 8]);
        // Placing it again changes nothing; nor does a zero page over it.
        assert_eq!(uffd.copy_page(5 * 4096, &[1u8; 4096]).unwrap(), Placed::AlreadyThere);
        assert_eq!(uffd.zero_page(5 * 4096).unwrap(), Placed::AlreadyThere);
        let mut b = [0u8; 8];
        ram.read(5 * 4096, &mut b);
        assert_eq!(b, [0x5a; 8]);
    }

    #[test]
    fn a_discarded_page_faults_again_and_a_zero_page_reads_zero() {
        let ram = GuestRam::new(4 << 20, true).unwrap();
        ram.write_page(3, &[7u8; 4096]);
        ram.write_page(4, &[8u8; 4096]);
        let uffd = match Userfault::register(&ram) {
            Ok(u) => u,
            Err(e) => {
                eprintln!("skipping a_discarded_page_faults_again_and_a_zero_page_reads_zero: {e}");
                return;
            }
        };
        // Populated pages do not fault; nothing waits.
        assert_eq!(uffd.next_fault_within(std::time::Duration::from_millis(10)).unwrap(), None);
        discard_pages(&ram, [3u64, 4].into_iter()).unwrap();
        let r = ram.clone();
        let reader = std::thread::spawn(move || {
            let mut b = [1u8; 8];
            r.read(4 * 4096, &mut b);
            b
        });
        assert_eq!(uffd.next_fault_within(std::time::Duration::from_secs(5)).unwrap(), Some(Some(4 * 4096)));
        assert_eq!(uffd.zero_page(4 * 4096).unwrap(), Placed::Copied);
        assert_eq!(reader.join().unwrap(), [0; 8]);
        // Page 3 is missing too: placing it works, page 5 was never dropped.
        assert_eq!(uffd.copy_page(3 * 4096, &[9u8; 4096]).unwrap(), Placed::Copied);
        assert_eq!(uffd.copy_page(5 * 4096, &[9u8; 4096]).unwrap(), Placed::AlreadyThere);
    }
}
