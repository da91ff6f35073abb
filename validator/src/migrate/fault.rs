//! Fault injection for `migrate --fault`: a TCP proxy between source and
//! destination that, at a point of the migration, cuts the link (stops
//! moving bytes either way, as a dead WAN path does: no reset, the senders
//! only stall), corrupts one byte, or has the destination or the source
//! process killed.
//!
//! The point is a byte count from the source (`cut-link@64MiB`) or a named
//! phase, which the proxy recognises by reading the frame headers going by
//! (`wire`): `round0`, `round1`, ... (a `Pages` frame of that pre-copy round),
//! `stop-and-copy` (a `Pages` frame sent with the guest paused, flag
//! [`super::wire::FLAG_GUEST_PAUSED`]), `switchover` (the `Switchover`
//! frame, or post-copy's `PostcopySwitch`), `resumed` (the destination's `Resumed` frame, on its way back),
//! `postcopy` (a `PostcopyPages` frame: post-copy's push or a requested
//! page, sent after the destination resumed the guest).
//! The fault acts in the middle of the first such frame's payload.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use memfabric_migration::units::Bytes;

use super::wire::{Kind, FLAG_GUEST_PAUSED, HEADER_BYTES, TRAILER_BYTES};

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The path goes dead: nothing moves either way, nothing is reset.
    CutLink,
    /// The destination process is killed (SIGKILL), as its host failing.
    KillDest,
    /// The source process is killed (SIGKILL), as its host failing.
    KillSource,
    /// One byte of the stream is flipped.
    Corrupt,
    /// The destination flips a byte of guest page `@N` in its RAM just before
    /// the integrity check (no proxy): tests that the check catches a page
    /// that differs however it came to differ.
    DestRam,
}

impl FaultKind {
    /// Every kind with its name in `--fault`.
    pub const NAMES: [(FaultKind, &'static str); 5] = [
        (FaultKind::CutLink, "cut-link"),
        (FaultKind::KillDest, "kill-dest"),
        (FaultKind::KillSource, "kill-source"),
        (FaultKind::Corrupt, "corrupt"),
        (FaultKind::DestRam, "dest-ram"),
    ];

    /// The name in `--fault`.
    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(k, _)| *k == self).map(|(_, n)| *n).expect("every kind is named")
    }
}

/// A named point of the migration, recognised in the frame stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A `Pages` frame of pre-copy round N (0: the full copy).
    Round(u32),
    /// A `Pages` frame of the stop-and-copy (sent with the guest paused).
    StopAndCopy,
    /// The `Switchover` frame (post-copy's: `PostcopySwitch`).
    Switchover,
    /// The destination's `Resumed` frame (destination to source).
    Resumed,
    /// A `PostcopyPages` frame (post-copy, after the destination resumed).
    PostCopy,
}

impl Phase {
    /// The phases of the fault matrix, in migration order.
    pub const MATRIX: [Phase; 5] = [Phase::Round(0), Phase::Round(2), Phase::StopAndCopy, Phase::Switchover, Phase::Resumed];

    /// Whether the frame is this phase's (`round_ends`: `RoundEnd` frames
    /// seen before it on its direction; `to_dest`: its direction).
    fn matches(self, f: &FrameInfo, to_dest: bool) -> bool {
        let paused = f.flags & FLAG_GUEST_PAUSED != 0;
        match self {
            Phase::Round(r) => to_dest && f.kind == Kind::Pages as u8 && !paused && f.round_ends == r,
            Phase::StopAndCopy => to_dest && f.kind == Kind::Pages as u8 && paused,
            Phase::Switchover => to_dest && (f.kind == Kind::Switchover as u8 || f.kind == Kind::PostcopySwitch as u8),
            Phase::Resumed => !to_dest && f.kind == Kind::Resumed as u8,
            Phase::PostCopy => to_dest && f.kind == Kind::PostcopyPages as u8,
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Phase::Round(r) => write!(f, "round{r}"),
            Phase::StopAndCopy => f.write_str("stop-and-copy"),
            Phase::Switchover => f.write_str("switchover"),
            Phase::Resumed => f.write_str("resumed"),
            Phase::PostCopy => f.write_str("postcopy"),
        }
    }
}

impl FromStr for Phase {
    type Err = ();

    fn from_str(s: &str) -> Result<Phase, ()> {
        match s {
            "stop-and-copy" => Ok(Phase::StopAndCopy),
            "switchover" => Ok(Phase::Switchover),
            "resumed" => Ok(Phase::Resumed),
            "postcopy" => Ok(Phase::PostCopy),
            _ => s.strip_prefix("round").and_then(|n| n.parse().ok()).map(Phase::Round).ok_or(()),
        }
    }
}

/// Where a fault acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAt {
    /// Once this many bytes have gone from the source to the destination.
    Bytes(u64),
    /// In the first frame of this phase.
    Phase(Phase),
    /// [`FaultKind::DestRam`]: this guest page.
    Page(u64),
}

/// `KIND@WHERE`: a fault and where it acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultSpec {
    /// What.
    pub kind: FaultKind,
    /// Where.
    pub at: FaultAt,
}

impl FromStr for FaultSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<FaultSpec, String> {
        let expected = "expected KIND@BYTES or KIND@PHASE with KIND one of cut-link, kill-dest, kill-source, corrupt \
                        and PHASE one of round0, round1, ..., stop-and-copy, switchover, resumed, postcopy (e.g. cut-link@64MiB, \
                        corrupt@switchover), or dest-ram@PAGE";
        let (kind, at) = s.split_once('@').ok_or_else(|| format!("{s:?}: {expected}"))?;
        let kind = FaultKind::NAMES
            .iter()
            .find(|(_, n)| *n == kind)
            .map(|(k, _)| *k)
            .ok_or_else(|| format!("fault kind {kind:?}: {expected}"))?;
        let at = if kind == FaultKind::DestRam {
            FaultAt::Page(at.parse().map_err(|_| format!("fault page {at:?}: expected a guest page number, e.g. dest-ram@5000"))?)
        } else if let Ok(phase) = at.parse::<Phase>() {
            FaultAt::Phase(phase)
        } else {
            FaultAt::Bytes(Bytes::parse(at).map_err(|e| format!("fault position {at:?}: {e}; {expected}"))?.0)
        };
        Ok(FaultSpec { kind, at })
    }
}

impl std::fmt::Display for FaultSpec {
    /// The `--fault` text, with the position in bytes, the phase or the page.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.at {
            FaultAt::Bytes(n) | FaultAt::Page(n) => write!(f, "{}@{n}", self.kind.name()),
            FaultAt::Phase(p) => write!(f, "{}@{p}", self.kind.name()),
        }
    }
}

/// A frame header as the proxy saw it go by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameInfo {
    kind: u8,
    flags: u16,
    len: u32,
    /// `RoundEnd` frames before this one on its direction.
    round_ends: u32,
}

/// Follows frame boundaries in a byte stream (headers only; checksums are
/// the receiver's business). Stops following at anything that is not a
/// frame header: the fault then never fires, and the run says so.
#[derive(Debug, Default)]
struct FrameTracker {
    header: Vec<u8>,
    /// Payload and trailer bytes of the current frame still to come.
    remaining: u64,
    /// Stream offset of the next byte fed.
    pos: u64,
    round_ends: u32,
    lost: bool,
}

impl FrameTracker {
    /// Feeds the next bytes of the stream; returns the stream offset of the
    /// middle of the payload of the first frame `want` accepts whose header
    /// completes in them.
    fn feed(&mut self, mut bytes: &[u8], want: &dyn Fn(&FrameInfo) -> bool) -> Option<u64> {
        while !bytes.is_empty() && !self.lost {
            if self.remaining > 0 {
                let n = (self.remaining.min(bytes.len() as u64)) as usize;
                self.remaining -= n as u64;
                self.pos += n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER_BYTES - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            self.pos += n as u64;
            bytes = &bytes[n..];
            if self.header.len() < HEADER_BYTES {
                break;
            }
            if &self.header[..4] != super::wire::MAGIC {
                self.lost = true;
                break;
            }
            let info = FrameInfo {
                kind: self.header[5],
                flags: u16::from_le_bytes([self.header[6], self.header[7]]),
                len: u32::from_le_bytes(self.header[8..12].try_into().expect("4 bytes")),
                round_ends: self.round_ends,
            };
            self.header.clear();
            self.remaining = info.len as u64 + TRAILER_BYTES as u64;
            if info.kind == Kind::RoundEnd as u8 {
                self.round_ends += 1;
            }
            if want(&info) {
                return Some(self.pos + info.len as u64 / 2);
            }
        }
        None
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

/// Kills a VMM process for [`FaultKind::KillDest`] and [`FaultKind::KillSource`].
pub type KillFn = Box<dyn FnMut(FaultKind) + Send>;

/// What becomes of the stream at the fault point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// It goes on (a flipped byte, or nothing happened).
    Continue,
    /// This direction ends at the point: a killed process sends nothing
    /// more, and the receiver sees the connection close.
    End,
    /// Nothing moves either way from the point on, and nothing closes.
    Cut,
}

/// What the proxy does at the fault point of one direction: acts on the
/// chunk holding it at the offset given.
type FaultFn = Arc<Mutex<dyn FnMut(&mut [u8], usize) -> Effect + Send>>;

/// The fault point of one direction and what happens there.
struct Trigger {
    at: FaultAt,
    to_dest: bool,
    fire: FaultFn,
}

impl FaultProxy {
    /// Listens on loopback; forwards each connection to `upstream` (the
    /// migration's, and with multifd every data stream's); calls `kill` for
    /// [`FaultKind::KillDest`] and [`FaultKind::KillSource`]. The fault acts
    /// once, on the first connection whose stream reaches the point (a byte
    /// count counts per connection); a cut stops every connection.
    pub fn start(upstream: SocketAddr, spec: FaultSpec, kill: KillFn) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let triggered = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, st) = (triggered.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let cut = Arc::new(AtomicBool::new(false));
            let mut kill = Some(kill);
            let fire: FaultFn = Arc::new(Mutex::new(move |chunk: &mut [u8], offset_in_chunk: usize| -> Effect {
                // Fires once, whichever direction reaches its point first.
                if t.swap(true, Ordering::SeqCst) {
                    return Effect::Continue;
                }
                match spec.kind {
                    FaultKind::Corrupt => {
                        chunk[offset_in_chunk] ^= 0x5a;
                        Effect::Continue
                    }
                    FaultKind::KillDest | FaultKind::KillSource => {
                        if let Some(k) = kill.as_mut() {
                            k(spec.kind);
                        }
                        Effect::End
                    }
                    FaultKind::CutLink => Effect::Cut,
                    // Not a proxy fault: the destination does it.
                    FaultKind::DestRam => Effect::Continue,
                }
            }));
            // The `resumed` point is on the way back; every other one on the way in.
            let back_trigger = matches!(spec.at, FaultAt::Phase(Phase::Resumed));
            let trigger = |to_dest: bool| (to_dest != back_trigger).then(|| Trigger { at: spec.at, to_dest, fire: fire.clone() });
            let mut connections = Vec::new();
            for src in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(src) = src else { continue };
                let Ok(dst) = TcpStream::connect(upstream) else { continue };
                let (Ok(src2), Ok(dst2)) = (src.try_clone(), dst.try_clone()) else { continue };
                let (back, forth) = (trigger(false), trigger(true));
                let (cut2, st2, cut3, st3) = (cut.clone(), st.clone(), cut.clone(), st.clone());
                connections.push(std::thread::spawn(move || pump(dst2, src2, back, &cut2, &st2)));
                connections.push(std::thread::spawn(move || pump(src, dst, forth, &cut3, &st3)));
            }
            for c in connections {
                let _ = c.join();
            }
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

/// Moves bytes from `from` to `to` until either closes; with a trigger,
/// calls its fault on the chunk that holds the fault point, and forwards
/// only what comes before the point when the fault ends the direction or
/// cuts the link (then both directions stop moving bytes until `stop`).
fn pump(mut from: TcpStream, mut to: TcpStream, mut trigger: Option<Trigger>, cut: &AtomicBool, stop: &AtomicBool) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = vec![0u8; 64 << 10];
    let mut forwarded = 0u64;
    let mut tracker = FrameTracker::default();
    // Stream offset of the fault point, once known.
    let mut fire_at = match trigger.as_ref().map(|t| t.at) {
        Some(FaultAt::Bytes(n)) => Some(n),
        _ => None,
    };
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
        let mut end = false;
        if let Some(t) = &trigger {
            if let (None, FaultAt::Phase(phase)) = (fire_at, t.at) {
                let to_dest = t.to_dest;
                fire_at = tracker.feed(&buf[..n], &|f| phase.matches(f, to_dest));
            }
            if let Some(at) = fire_at.filter(|&at| forwarded + n as u64 > at) {
                let offset = (at - forwarded) as usize;
                let effect = (t.fire.lock().unwrap_or_else(|e| e.into_inner()))(&mut buf[..n], offset);
                if effect != Effect::Continue {
                    send = offset;
                }
                end = effect == Effect::End;
                if effect == Effect::Cut {
                    cut.store(true, Ordering::SeqCst);
                }
                trigger = None;
            }
        }
        if to.write_all(&buf[..send]).is_err() {
            break;
        }
        forwarded += send as u64;
        if end {
            break;
        }
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
        assert_eq!("cut-link@64MiB".parse::<FaultSpec>().unwrap(), FaultSpec { kind: FaultKind::CutLink, at: FaultAt::Bytes(64 << 20) });
        assert_eq!(
            "kill-source@round2".parse::<FaultSpec>().unwrap(),
            FaultSpec { kind: FaultKind::KillSource, at: FaultAt::Phase(Phase::Round(2)) }
        );
        assert_eq!("corrupt@stop-and-copy".parse::<FaultSpec>().unwrap().at, FaultAt::Phase(Phase::StopAndCopy));
        assert!("dest-ram@1MiB".parse::<FaultSpec>().unwrap_err().contains("guest page number"));
        assert!("cut-link@lunch".parse::<FaultSpec>().unwrap_err().contains("stop-and-copy"));
        assert_eq!("corrupt@1000".parse::<FaultSpec>().unwrap().kind, FaultKind::Corrupt);
        let e = "melt@1MiB".parse::<FaultSpec>().unwrap_err();
        assert!(e.contains("cut-link, kill-dest, kill-source, corrupt"), "{e}");
        assert!("cut-link".parse::<FaultSpec>().is_err());
        assert_eq!("kill-dest@postcopy".parse::<FaultSpec>().unwrap().at, FaultAt::Phase(Phase::PostCopy));
        for spec in ["cut-link@64", "kill-dest@1", "corrupt@1000", "dest-ram@5000", "kill-source@round0", "cut-link@resumed", "cut-link@postcopy"] {
            assert_eq!(spec.parse::<FaultSpec>().unwrap().to_string(), spec, "Display is FromStr's inverse");
        }
    }

    #[test]
    fn corrupts_exactly_one_byte_at_the_offset() {
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = FaultProxy::start(
            upstream.local_addr().unwrap(),
            FaultSpec { kind: FaultKind::Corrupt, at: FaultAt::Bytes(100_000) },
            Box::new(|_| {}),
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

    /// Whatever arrives on `s` within `ms` of silence.
    fn drain(s: &mut TcpStream, ms: u64) -> Vec<u8> {
        s.set_read_timeout(Some(Duration::from_millis(ms))).unwrap();
        let (mut got, mut buf) = (Vec::new(), [0u8; 4096]);
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    #[test]
    fn every_connection_goes_through_and_a_cut_stops_them_all() {
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let spec = FaultSpec { kind: FaultKind::CutLink, at: FaultAt::Bytes(1000) };
        let proxy = FaultProxy::start(upstream.local_addr().unwrap(), spec, Box::new(|_| {})).unwrap();
        let mut a = TcpStream::connect(proxy.addr).unwrap();
        let (mut a_up, _) = upstream.accept().unwrap();
        let mut b = TcpStream::connect(proxy.addr).unwrap();
        let (mut b_up, _) = upstream.accept().unwrap();
        b.write_all(&[1u8; 100]).unwrap();
        assert_eq!(drain(&mut b_up, 300), vec![1u8; 100], "the second connection is forwarded too");
        a.write_all(&[2u8; 5000]).unwrap();
        assert_eq!(drain(&mut a_up, 300), vec![2u8; 1000], "the first stops at the cut");
        assert!(proxy.triggered());
        b.write_all(&[3u8; 100]).unwrap();
        assert!(drain(&mut b_up, 300).is_empty(), "the cut stops the other connection as well");
    }

    /// A stream of every phase, as the source sends it.
    fn phases_stream() -> (Vec<u8>, Vec<(Phase, u64)>) {
        use super::super::wire::FrameWriter;
        let mut w = FrameWriter::new(Vec::new());
        let mut starts = Vec::new();
        let mut frame = |w: &mut FrameWriter<Vec<u8>>, kind: Kind, len: usize, phase: Option<Phase>| {
            let payload_start = w.bytes + HEADER_BYTES as u64;
            w.send(kind, &vec![1u8; len]).unwrap();
            if let Some(p) = phase {
                starts.push((p, payload_start + len as u64 / 2));
            }
        };
        frame(&mut w, Kind::Hello, 50, None);
        frame(&mut w, Kind::Pages, 5000, Some(Phase::Round(0)));
        frame(&mut w, Kind::Pages, 3000, None);
        frame(&mut w, Kind::RoundEnd, 20, None);
        frame(&mut w, Kind::Pages, 700, Some(Phase::Round(1)));
        frame(&mut w, Kind::RoundEnd, 20, None);
        w.set_flags(FLAG_GUEST_PAUSED);
        frame(&mut w, Kind::Pages, 900, Some(Phase::StopAndCopy));
        frame(&mut w, Kind::Switchover, 90, Some(Phase::Switchover));
        frame(&mut w, Kind::PostcopyPages, 800, Some(Phase::PostCopy));
        (w.into_inner(), starts)
    }

    #[test]
    fn the_tracker_finds_each_phase_however_the_stream_is_cut() {
        let (stream, points) = phases_stream();
        for (phase, at) in points {
            for chunk in [1, 7, 16, 100, 4096, stream.len()] {
                let mut t = FrameTracker::default();
                let found = stream.chunks(chunk).find_map(|c| t.feed(c, &|f| phase.matches(f, true)));
                assert_eq!(found, Some(at), "{phase} in chunks of {chunk}");
            }
        }
        // Round 2 never comes; nor does anything in a stream that is not frames.
        let mut t = FrameTracker::default();
        assert_eq!(t.feed(&stream, &|f| Phase::Round(2).matches(f, true)), None);
        let mut t = FrameTracker::default();
        assert_eq!(t.feed(&[0u8; 4096], &|_| true), None);
        assert!(t.lost);
    }
}
