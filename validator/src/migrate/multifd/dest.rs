//! multifd at the destination: accepting the data streams, receiving and
//! decoding each on its own thread into the pages it owns, and joining them
//! before the integrity check.

use std::io::BufReader;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use memfabric_migration::pipeline::{Decoder, PipelineConfig};

use crate::kvm::GuestRam;
use crate::migrate::dest::{DestReport, RamTarget};
use crate::migrate::wire::{FrameReader, Kind, FLAG_GUEST_PAUSED, HEADER_BYTES};
use crate::migrate::{thread_cpu_s, Abort, PageHashes, RoundEnd};

use super::{Permit, Permits, Route, StreamHello, StreamPlan, StreamReport, STREAMS_MAX};

/// What a data stream's thread at the destination ends with.
struct DestStreamDone {
    hashes: PageHashes,
    report: StreamReport,
}

/// The destination's data streams, each received on its own thread.
/// Dropped before [`DestStreams::finish`] (a failure), it shuts them down
/// and waits for their threads.
#[derive(Default)]
pub struct DestStreams {
    plan: StreamPlan,
    handles: Vec<JoinHandle<Result<DestStreamDone, String>>>,
    tcp: Vec<TcpStream>,
    /// The reduction permits, when fewer threads than streams.
    pub permits: Option<Arc<Permits>>,
    live: Arc<Liveness>,
    io_timeout: Duration,
}

/// When any stream of the migration last received a frame. A stream that
/// has sent its share of a round waits for the others with nothing to read:
/// it fails only when the whole migration has received nothing for the I/O
/// timeout, not when it alone has.
#[derive(Debug)]
struct Liveness {
    t0: Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl Default for Liveness {
    fn default() -> Liveness {
        Liveness { t0: Instant::now(), last_ms: Default::default() }
    }
}

impl Liveness {
    fn touch(&self) {
        self.last_ms.store(self.t0.elapsed().as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        self.t0.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Relaxed)))
    }

    /// Waits until `fd` has something to read (`buffered`: it already has),
    /// or fails once no stream has received anything for `io_timeout`.
    fn wait_for_frame(&self, fd: std::os::fd::RawFd, buffered: bool, io_timeout: Duration) -> Result<(), String> {
        while !buffered && !readable(fd, 50) {
            if self.idle() > io_timeout {
                return Err(format!("no stream received anything for {:.1} s (the link is down or the source stalled)", io_timeout.as_secs_f64()));
            }
        }
        Ok(())
    }
}

/// Whether `fd` has something to read within `ms` milliseconds.
fn readable(fd: std::os::fd::RawFd, ms: i32) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: poll(2) on one pollfd we own.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

impl DestStreams {
    /// Accepts streams 1..N-1 on `listener` (announced by the Hello's
    /// `plan`; nothing with one stream) and starts a thread receiving each
    /// into `ram`. If the source aborts on stream 0 meanwhile (it gave up
    /// before opening them), the migration ends as `aborted-by-source`.
    #[allow(clippy::too_many_arguments)]
    pub fn start<R: std::io::Read>(
        plan: Option<StreamPlan>,
        listener: &TcpListener,
        main: &TcpStream,
        main_reader: &mut FrameReader<R>,
        ram: &GuestRam,
        config: PipelineConfig,
        io_timeout: Duration,
        report: &mut DestReport,
    ) -> Result<DestStreams, String> {
        let plan = match plan {
            Some(p) if p.is_multi() => p,
            _ => return Ok(DestStreams::default()),
        };
        if plan.streams > STREAMS_MAX || plan.cpu_threads == 0 || plan.cpu_threads > plan.streams {
            return Err(format!("the source asks for {} streams and {} threads (this destination takes 1 to {STREAMS_MAX} streams, 1 to streams threads)", plan.streams, plan.cpu_threads));
        }
        let live = Arc::new(Liveness::default());
        live.touch();
        let mut s = DestStreams { plan, permits: plan.permits(), handles: Vec::new(), tcp: Vec::new(), live, io_timeout };
        let mut conns: Vec<Option<FrameReader<BufReader<TcpStream>>>> = (0..plan.streams).map(|_| None).collect();
        let deadline = Instant::now() + io_timeout;
        listener.set_nonblocking(true).map_err(|e| format!("accepting streams: {e}"))?;
        let mut open = plan.streams - 1;
        while open > 0 {
            if Instant::now() > deadline {
                return Err(format!("{open} of the source's {} streams did not connect within the I/O timeout", plan.streams - 1));
            }
            let tcp = match listener.accept() {
                Ok((t, _)) => t,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // Stream 0 may already carry pages (the streams are
                    // connected, not yet accepted): keep accepting. Only
                    // an Abort or a close ends the wait early.
                    if readable(main.as_raw_fd(), 0) {
                        let mut head = [0u8; HEADER_BYTES];
                        let n = main.peek(&mut head).unwrap_or(0);
                        if n == 0 || (n > 5 && head[5] == Kind::Abort as u8) {
                            let f = main_reader.recv().map_err(|e| format!("waiting for the source's streams: {e}"))?;
                            let a: Abort = serde_json::from_slice(&f.payload).unwrap_or(Abort { reason: "(unreadable)".into() });
                            report.outcome = "aborted-by-source".into();
                            return Err(format!("the source aborted: {}", a.reason));
                        }
                    }
                    readable(listener.as_raw_fd(), 20);
                    continue;
                }
                Err(e) => return Err(format!("accepting a stream: {e}")),
            };
            let io = |e: std::io::Error| format!("a stream's setup: {}", crate::migrate::source::describe_io(&e));
            tcp.set_nonblocking(false).map_err(io)?;
            tcp.set_read_timeout(Some(io_timeout)).map_err(io)?;
            tcp.set_write_timeout(Some(io_timeout)).map_err(io)?;
            let mut reader = FrameReader::new(BufReader::with_capacity(64 << 10, tcp.try_clone().map_err(io)?));
            let f = reader.recv().map_err(|e| format!("a stream's StreamHello: {e}"))?;
            if f.kind != Kind::StreamHello {
                return Err(format!("expected StreamHello on a new stream, got {:?}", f.kind));
            }
            let h: StreamHello = serde_json::from_slice(&f.payload).map_err(|e| format!("StreamHello: {e}"))?;
            if h.streams != plan.streams || h.stream == 0 || h.stream >= plan.streams || conns[h.stream as usize].is_some() {
                return Err(format!("StreamHello for stream {} of {}: expected each of streams 1 to {} once", h.stream, h.streams, plan.streams - 1));
            }
            s.tcp.push(tcp);
            conns[h.stream as usize] = Some(reader);
            open -= 1;
        }
        let _ = listener.set_nonblocking(false);
        for (id, reader) in conns.into_iter().enumerate().skip(1) {
            let reader = reader.expect("every stream accepted");
            let (ram, permits, config) = (ram.clone(), s.permits.clone(), plan.stream_pipeline(config));
            let route = Route { plan, stream: id as u32 };
            let (live, timeout) = (s.live.clone(), io_timeout);
            s.handles.push(std::thread::spawn(move || receive_stream(reader, route, ram, config, permits, &live, timeout)));
        }
        Ok(s)
    }

    /// Stream 0 (on `tcp`; `buffered`: its reader holds bytes already): with
    /// several streams, waits for its next frame while any stream makes
    /// progress ([`Liveness`]); with one, returns at once (the socket's own
    /// timeout applies, as always).
    pub fn wait_for_frame(&self, tcp: &TcpStream, buffered: bool) -> Result<(), String> {
        if !self.plan.is_multi() {
            return Ok(());
        }
        self.live.wait_for_frame(tcp.as_raw_fd(), buffered, self.io_timeout).map_err(|e| format!("stream 0: {e}"))
    }

    /// Stream 0 received a frame.
    pub fn progress(&self) {
        self.live.touch();
    }

    /// A permit for stream 0's decoding of one batch (None: no limit).
    pub fn permit(&self) -> Option<Permit<'_>> {
        self.permits.as_deref().map(Permits::acquire)
    }

    /// After the switchover: waits for every data stream's end of the
    /// stop-and-copy, merges their page hashes into `hashes` by owner, and
    /// adds their pages, bytes and CPU to `report`.
    pub fn finish(mut self, hashes: &mut PageHashes, report: &mut DestReport) -> Result<(), String> {
        if !self.plan.is_multi() {
            return Ok(());
        }
        let mut first_error = None;
        let mut done = Vec::new();
        for h in std::mem::take(&mut self.handles) {
            match h.join() {
                Ok(Ok(d)) => done.push(d),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert_with(|| "a stream's thread panicked".to_string());
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let main = StreamReport { stream: 0, pages: report.pages_received, bytes_on_wire: report.bytes_received, ..StreamReport::default() };
        report.streams.push(main);
        for d in done {
            let id = d.report.stream;
            for (p, v) in hashes.0.iter_mut().enumerate() {
                if self.plan.owner(p as u64) == id {
                    *v = d.hashes.0[p];
                }
            }
            report.pages_received += d.report.pages;
            report.bytes_received += d.report.bytes_on_wire;
            report.cpu_s_destination += d.report.cpu_s;
            report.streams.push(d.report);
        }
        Ok(())
    }
}

impl Drop for DestStreams {
    fn drop(&mut self) {
        if self.handles.is_empty() {
            return;
        }
        for t in &self.tcp {
            let _ = t.shutdown(Shutdown::Both);
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Receives one data stream into `ram` until its paused `RoundEnd` (the
/// end of its stop-and-copy).
fn receive_stream(
    mut reader: FrameReader<BufReader<TcpStream>>,
    route: Route,
    ram: GuestRam,
    config: PipelineConfig,
    permits: Option<Arc<Permits>>,
    live: &Liveness,
    io_timeout: Duration,
) -> Result<DestStreamDone, String> {
    let cpu0 = thread_cpu_s();
    let id = route.stream;
    let fd = reader.get_ref().get_ref().as_raw_fd();
    let mut decoder = Decoder::new(config);
    let mut store = memfabric_migration::pipeline::ContentStore::new();
    let pages = ram.pages();
    let mut hashes = PageHashes::zeroed(pages);
    let mut report = StreamReport { stream: id, ..StreamReport::default() };
    let mut buf = Vec::new();
    loop {
        live.wait_for_frame(fd, !reader.get_ref().buffer().is_empty(), io_timeout).map_err(|e| format!("stream {id}: {e}"))?;
        let head = reader.recv_into(&mut buf).map_err(|e| format!("stream {id}: receiving pages: {e}"))?;
        live.touch();
        let payload = &buf[..head.len];
        match head.kind {
            Kind::Pages => {
                let _permit = permits.as_deref().map(Permits::acquire);
                let mut target = RamTarget { ram: &ram, pages, hashes: &mut hashes, written: 0, route, misrouted: None };
                let missing = decoder.decode_wire_into(&mut store, payload, &mut target);
                if let Some(p) = target.misrouted {
                    return Err(format!("stream {id}: page {p} belongs to stream {}, not this one", route.plan.owner(p)));
                }
                let missing = missing.map_err(|e| format!("stream {id}: page batch: {e}"))?;
                if let Some(m) = missing.first() {
                    return Err(format!("stream {id}: page {} refers to content this stream never carried", m.page_index));
                }
                report.pages += target.written;
            }
            Kind::RoundEnd if head.flags & FLAG_GUEST_PAUSED != 0 => break,
            Kind::RoundEnd => {
                let _: RoundEnd = serde_json::from_slice(payload).map_err(|e| format!("stream {id}: RoundEnd: {e}"))?;
            }
            Kind::Abort => return Err(format!("stream {id}: the source aborted")),
            k => return Err(format!("stream {id}: unexpected {k:?} frame")),
        }
    }
    report.bytes_on_wire = reader.bytes;
    report.cpu_s = thread_cpu_s() - cpu0;
    Ok(DestStreamDone { hashes, report })
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_stream_waits_while_any_other_makes_progress() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (quiet, _) = listener.accept().unwrap(); // nothing ever arrives on it
        let live = Arc::new(Liveness::default());
        live.touch();
        // Nobody makes progress: it fails after the timeout.
        let t = Instant::now();
        assert!(live.wait_for_frame(quiet.as_raw_fd(), false, Duration::from_millis(200)).is_err());
        assert!(t.elapsed() >= Duration::from_millis(200));
        // Another stream receives for 600 ms: it waits that long, then fails.
        live.touch();
        let other = live.clone();
        let busy = std::thread::spawn(move || {
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(600) {
                other.touch();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let t = Instant::now();
        assert!(live.wait_for_frame(quiet.as_raw_fd(), false, Duration::from_millis(200)).is_err());
        assert!(t.elapsed() >= Duration::from_millis(700), "waited {:?}", t.elapsed());
        busy.join().unwrap();
        // Bytes already buffered: no wait.
        assert!(live.wait_for_frame(quiet.as_raw_fd(), true, Duration::ZERO).is_ok());
    }
}
