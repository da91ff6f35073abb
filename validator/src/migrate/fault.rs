//! Fault injection for `migrate --fault`: a TCP proxy between source and
//! destination that, once a given number of bytes has gone from the source
//! to the destination, cuts the link (stops moving bytes either way, as a
//! dead WAN path does: no reset, the senders only stall), corrupts one byte,
//! or has the destination process killed.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use memfabric_migration::units::Bytes;

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The path goes dead: nothing moves either way, nothing is reset.
    CutLink,
    /// The destination process is killed (SIGKILL).
    KillDest,
    /// One byte of the stream is flipped.
    Corrupt,
    /// The destination flips a byte of guest page `@N` in its RAM just before
    /// the integrity check (no proxy): tests that the check catches a page
    /// that differs however it came to differ.
    DestRam,
}

impl FaultKind {
    /// Every kind with its name in `--fault`.
    const NAMES: [(FaultKind, &'static str); 4] = [
        (FaultKind::CutLink, "cut-link"),
        (FaultKind::KillDest, "kill-dest"),
        (FaultKind::Corrupt, "corrupt"),
        (FaultKind::DestRam, "dest-ram"),
    ];

    /// The name in `--fault`.
    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(k, _)| *k == self).map(|(_, n)| *n).expect("every kind is named")
    }
}

/// `KIND@BYTES`: a fault after `BYTES` from source to destination (for
/// [`FaultKind::DestRam`], `@PAGE`: a guest page index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultSpec {
    /// What.
    pub kind: FaultKind,
    /// When: bytes forwarded from the source first (the page, for `DestRam`).
    pub after_bytes: u64,
}

impl FromStr for FaultSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<FaultSpec, String> {
        let expected =
            "expected KIND@BYTES with KIND one of cut-link, kill-dest, corrupt (e.g. cut-link@64MiB), or dest-ram@PAGE";
        let (kind, at) = s.split_once('@').ok_or_else(|| format!("{s:?}: {expected}"))?;
        let kind = FaultKind::NAMES
            .iter()
            .find(|(_, n)| *n == kind)
            .map(|(k, _)| *k)
            .ok_or_else(|| format!("fault kind {kind:?}: {expected}"))?;
        let after = Bytes::parse(at).map_err(|e| format!("fault position {at:?}: {e}"))?;
        Ok(FaultSpec { kind, after_bytes: after.0 })
    }
}

impl std::fmt::Display for FaultSpec {
    /// The `--fault` text, with the position in bytes (or the page).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.kind.name(), self.after_bytes)
    }
}

/// A running proxy.
#[derive(Debug)]
pub struct FaultProxy {
    /// Where the source connects.
    pub addr: SocketAddr,
    triggered: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on loopback; forwards the first connection to `upstream`;
    /// calls `kill_dest` for [`FaultKind::KillDest`].
    pub fn start(upstream: SocketAddr, spec: FaultSpec, kill_dest: Box<dyn FnOnce() + Send>) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let triggered = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, st) = (triggered.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let Ok((src, _)) = listener.accept() else { return };
            let Ok(dst) = TcpStream::connect(upstream) else { return };
            let (src2, dst2) = (src.try_clone().expect("clone"), dst.try_clone().expect("clone"));
            let cut = Arc::new(AtomicBool::new(false));
            let (cut2, st2) = (cut.clone(), st.clone());
            let back = std::thread::spawn(move || pump(dst2, src2, None, &cut2, &st2));
            let mut kill = Some(kill_dest);
            let fault = move |chunk: &mut [u8], offset_in_chunk: usize| -> bool {
                t.store(true, Ordering::SeqCst);
                match spec.kind {
                    FaultKind::Corrupt => {
                        chunk[offset_in_chunk] ^= 0x5a;
                        false
                    }
                    FaultKind::KillDest => {
                        if let Some(k) = kill.take() {
                            k();
                        }
                        false
                    }
                    FaultKind::CutLink => true,
                    // Not a proxy fault: the destination does it.
                    FaultKind::DestRam => false,
                }
            };
            pump(src, dst, Some((spec.after_bytes, Box::new(fault))), &cut, &st);
            let _ = back.join();
        });
        Ok(FaultProxy { addr, triggered, stop, thread: Some(thread) })
    }

    /// Whether the fault happened.
    pub fn triggered(&self) -> bool {
        self.triggered.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept if nobody connected.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(100));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type FaultFn = Box<dyn FnMut(&mut [u8], usize) -> bool + Send>;

/// Moves bytes from `from` to `to` until either closes; with a fault, calls
/// it on the chunk that crosses the threshold; a fault returning true cuts
/// the link (both directions stop moving bytes until `stop`).
fn pump(mut from: TcpStream, mut to: TcpStream, mut fault: Option<(u64, FaultFn)>, cut: &AtomicBool, stop: &AtomicBool) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = vec![0u8; 64 << 10];
    let mut forwarded = 0u64;
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if cut.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        let mut send = n;
        if let Some((after, f)) = &mut fault {
            if forwarded + n as u64 > *after {
                let offset = (*after - forwarded) as usize;
                if f(&mut buf[..n], offset) {
                    send = offset;
                    cut.store(true, Ordering::SeqCst);
                }
                fault = None;
            }
        }
        if to.write_all(&buf[..send]).is_err() {
            break;
        }
        forwarded += send as u64;
    }
    if !cut.load(Ordering::SeqCst) {
        let _ = to.shutdown(Shutdown::Write);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fault_specs() {
        assert_eq!("cut-link@64MiB".parse::<FaultSpec>().unwrap(), FaultSpec { kind: FaultKind::CutLink, after_bytes: 64 << 20 });
        assert_eq!("corrupt@1000".parse::<FaultSpec>().unwrap().kind, FaultKind::Corrupt);
        let e = "melt@1MiB".parse::<FaultSpec>().unwrap_err();
        assert!(e.contains("cut-link, kill-dest, corrupt"), "{e}");
        assert!("cut-link".parse::<FaultSpec>().is_err());
        for spec in ["cut-link@64", "kill-dest@1", "corrupt@1000", "dest-ram@5000"] {
            assert_eq!(spec.parse::<FaultSpec>().unwrap().to_string(), spec, "Display is FromStr's inverse");
        }
    }

    #[test]
    fn corrupts_exactly_one_byte_at_the_offset() {
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = FaultProxy::start(
            upstream.local_addr().unwrap(),
            FaultSpec { kind: FaultKind::Corrupt, after_bytes: 100_000 },
            Box::new(|| {}),
        )
        .unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let d2 = data.clone();
        let addr = proxy.addr;
        let sender = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&d2).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
        });
        let (mut got_stream, _) = upstream.accept().unwrap();
        let mut got = Vec::new();
        got_stream.read_to_end(&mut got).unwrap();
        sender.join().unwrap();
        assert_eq!(got.len(), data.len());
        let diffs: Vec<usize> = (0..data.len()).filter(|&i| got[i] != data[i]).collect();
        assert_eq!(diffs, vec![100_000]);
        assert!(proxy.triggered());
    }
}
