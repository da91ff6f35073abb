//! multifd: one migration over several TCP connections (`migrate --streams
//! N`), with `--cpu-threads T` reduction threads at each end, as the
//! simulator models `streams` and `cpu_threads` (docs/model.md §4, §10).
//!
//! This module owns the stream fan-out at the source, the reassembly at the
//! destination, and which stream carries which page ([`StreamPlan`]).
//!
//! ```text
//! source                                          destination
//!   | == stream 0 (the migration connection) ====== |
//!   | -- Hello {.., multifd: {streams, cpu_threads}}>|  RAM ready
//!   | <---------------------------------- HelloAck --|
//!   | == streams 1..N-1 (one TCP connection each) == |  accepted on the same
//!   | -- StreamHello {stream, streams} ------------> |  listener, one thread each
//!   |  per round, on every stream at once:          |
//!   | -- Pages (pages this stream owns) -----------> |  decode into RAM
//!   | -- RoundEnd ---------------------------------> |
//!   |  (the round ends when every stream's bytes    |
//!   |   are acknowledged: a barrier per round)      |
//!   |  pause; stop-and-copy on every stream, then   |
//!   | -- RoundEnd (FLAG_GUEST_PAUSED) on 1..N-1 ---> |  that stream is done
//!   | -- Switchover, VcpuState on stream 0 --------> |  join every stream, merge
//!   |                                               |  page hashes, check, resume
//! ```
//!
//! **Reassembly is safe by construction.** A page is pinned to one stream
//! for the whole migration: stream `(page / 256) mod N` ([`StreamPlan::owner`],
//! 256 = the pages of a batch, so a batch never spans streams). Every version
//! of a page therefore travels on the same TCP connection, in order, and an
//! older version can never arrive after a newer one; the destination refuses
//! a page that arrives on a stream that does not own it. Each stream has its
//! own encoder and decoder: its own XBZRLE delta cache (the migration's cache
//! split evenly, `DEFAULT_DELTA_CACHE_PAGES / N` pages each, so the total is
//! the one cache the simulator models) and its own dedup index and content
//! store, so a reference only ever names content sent earlier on the same
//! stream and is always resolvable on arrival (a duplicate of content that
//! another stream sent is sent again: that is the price, see
//! docs/validator.md "multifd"). A round ends when every stream has sent its
//! share and the destination's kernel has acknowledged all of it (the
//! per-round barrier, before the dirty log is read). The stop-and-copy's
//! pages go out on every stream; the destination joins every stream before
//! it compares the chunk hashes at switchover, which still cover every page
//! (each stream keeps the running hashes of the pages it owns; both ends
//! merge them by owner).
//!
//! `--cpu-threads T` below `N` makes the streams take turns for `T` permits
//! around each batch's encoding (source) and decoding (destination); `T`
//! above `N` is refused (a stream's pipeline state is sequential). With
//! `--streams 1` nothing here runs: the wire format and the behaviour are
//! those of a one-connection migration. TLS and gangs are refused with
//! `--streams` above 1 ([`check_args`]).

use std::io::{BufReader, BufWriter};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use memfabric_migration::pipeline::wire::RECORD_HEADER_BYTES;
use memfabric_migration::pipeline::{Batch, DedupIndex, Decoder, Encoder, PipelineConfig, DEFAULT_DELTA_CACHE_PAGES, PAGE_SIZE};
use serde::{Deserialize, Serialize};

use super::dest::{DestReport, RamTarget};
use super::source::{wait_until_acked, StageTotals, BATCH_PAGES};
use super::wire::{FrameReader, FrameWriter, Kind, FLAG_GUEST_PAUSED, HEADER_BYTES};
use super::{thread_cpu_s, Abort, PageHashes, RoundEnd};
use crate::kvm::{DirtyBitmap, GuestRam};

/// Most streams per migration.
pub const STREAMS_MAX: u32 = 64;

/// `--streams` and `--cpu-threads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct MultifdArgs {
    /// TCP connections per migration, 1 to 64 (multifd); page batches are
    /// spread across them, each page always on the same one.
    #[arg(long, default_value_t = 1, value_parser = parse_count)]
    pub streams: u32,
    /// Reduction threads at each end (encode at the source, decode at the
    /// destination), 1 to --streams; default: --streams (the simulator's
    /// default for `cpu_threads`).
    #[arg(long = "cpu-threads", value_parser = parse_count)]
    pub cpu_threads: Option<u32>,
}

impl Default for MultifdArgs {
    fn default() -> MultifdArgs {
        MultifdArgs { streams: 1, cpu_threads: None }
    }
}

fn parse_count(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{s:?}: {e} (expected a whole number from 1 to {STREAMS_MAX})"))?;
    if !(1..=STREAMS_MAX).contains(&n) {
        return Err(format!("{n}: must be from 1 to {STREAMS_MAX}"));
    }
    Ok(n)
}

impl MultifdArgs {
    /// The plan these arguments ask for.
    pub fn plan(&self) -> StreamPlan {
        StreamPlan { streams: self.streams, cpu_threads: self.cpu_threads.unwrap_or(self.streams) }
    }

    /// The arguments again, for the source VMM's command line (nothing
    /// when they are the defaults).
    pub fn to_cli(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.streams != 1 {
            v.extend(["--streams".to_string(), self.streams.to_string()]);
        }
        if let Some(t) = self.cpu_threads {
            v.extend(["--cpu-threads".to_string(), t.to_string()]);
        }
        v
    }
}

/// `--streams` / `--cpu-threads` do not fit the other arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultifdInputError {
    /// More reduction threads than streams.
    #[error("--cpu-threads {threads} exceeds --streams {streams}: each stream's pipeline (delta cache, dedup index) is sequential, so at most one thread per stream can work on it")]
    ThreadsAboveStreams {
        /// `--cpu-threads`.
        threads: u32,
        /// `--streams`.
        streams: u32,
    },
    /// Several streams of a gang.
    #[error("--streams {0} with --guests: a gang migrates each guest over one connection (use --streams 1)")]
    Gang(u32),
    /// Several streams over TLS.
    #[error("--streams {0} with --tls: the validator's TLS channel is one connection (use --streams 1)")]
    Tls(u32),
}

/// Checks `--streams` and `--cpu-threads` against each other, `--tls` and
/// a gang (before anything starts: exit code 2, nothing written).
pub fn check_args(m: &MultifdArgs, gang: bool, tls: bool) -> Result<(), MultifdInputError> {
    let plan = m.plan();
    if plan.cpu_threads > plan.streams {
        return Err(MultifdInputError::ThreadsAboveStreams { threads: plan.cpu_threads, streams: plan.streams });
    }
    if plan.streams > 1 && gang {
        return Err(MultifdInputError::Gang(plan.streams));
    }
    if plan.streams > 1 && tls {
        return Err(MultifdInputError::Tls(plan.streams));
    }
    Ok(())
}

/// How many streams a migration uses, how many reduction threads work at
/// each end, and which stream carries which page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPlan {
    /// TCP connections.
    pub streams: u32,
    /// Reduction threads at each end (at most `streams`).
    pub cpu_threads: u32,
}

impl Default for StreamPlan {
    fn default() -> StreamPlan {
        StreamPlan { streams: 1, cpu_threads: 1 }
    }
}

impl StreamPlan {
    /// The stream that carries page `page` for the whole migration: its
    /// batch-aligned block of [`BATCH_PAGES`] pages, round robin.
    pub fn owner(&self, page: u64) -> u32 {
        ((page / BATCH_PAGES as u64) % self.streams as u64) as u32
    }

    /// More than one stream.
    pub fn is_multi(&self) -> bool {
        self.streams > 1
    }

    /// The pipeline of one stream: `config` with the migration's delta
    /// cache split evenly between the streams.
    pub fn stream_pipeline(&self, config: PipelineConfig) -> PipelineConfig {
        if !self.is_multi() {
            return config;
        }
        PipelineConfig { delta_cache_pages: (DEFAULT_DELTA_CACHE_PAGES / self.streams as usize).max(1), ..config }
    }

    /// Permits for the reduction threads when there are fewer than streams.
    pub fn permits(&self) -> Option<Arc<Permits>> {
        (self.cpu_threads < self.streams).then(|| Arc::new(Permits::new(self.cpu_threads)))
    }

    /// The pages of `to` that this stream owns.
    fn owned<'a>(&self, stream: u32, pages: &'a DirtyBitmap) -> impl Iterator<Item = u64> + 'a {
        let plan = *self;
        pages.iter().filter(move |&p| plan.owner(p) == stream)
    }
}

/// Which pages a receiving stream may write: those its stream owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The migration's plan.
    pub plan: StreamPlan,
    /// This stream.
    pub stream: u32,
}

impl Route {
    /// The one stream of a single-stream migration: every page.
    pub fn single() -> Route {
        Route { plan: StreamPlan::default(), stream: 0 }
    }

    /// Whether this stream may carry `page`.
    pub fn carries(&self, page: u64) -> bool {
        self.plan.owner(page) == self.stream
    }
}

/// Counting permits: at most `n` holders at once (the reduction threads).
#[derive(Debug)]
pub struct Permits {
    free: Mutex<u32>,
    released: Condvar,
}

/// A held permit, returned on drop.
#[derive(Debug)]
pub struct Permit<'a>(&'a Permits);

impl Permits {
    /// `n` permits.
    pub fn new(n: u32) -> Permits {
        Permits { free: Mutex::new(n), released: Condvar::new() }
    }

    /// Waits for a permit.
    pub fn acquire(&self) -> Permit<'_> {
        let mut free = crate::site::lock(&self.free);
        while *free == 0 {
            free = self.released.wait(free).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *crate::site::lock(&self.0.free) += 1;
        self.0.released.notify_one();
    }
}

/// First frame of a data stream (streams 1..N-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHello {
    /// This stream.
    pub stream: u32,
    /// The migration's streams.
    pub streams: u32,
}

/// What one stream carried (in `source.json` and `destination.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamReport {
    /// The stream (0 is the migration connection, which also carries the
    /// control frames and the vCPU state).
    pub stream: u32,
    /// Pages sent (source) or written (destination).
    pub pages: u64,
    /// Frame bytes sent (source) or received (destination).
    pub bytes_on_wire: u64,
    /// Source: frame bytes of each round, stop-and-copy last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub round_bytes: Vec<u64>,
    /// Source: wall time spent on this stream's share of the rounds
    /// (reading, encoding, sending, waiting for the acknowledgements), s.
    #[serde(default)]
    pub busy_s: f64,
    /// CPU time of the stream's thread, s.
    pub cpu_s: f64,
}

/// The multifd part of a report (None with one stream).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MultifdReport {
    /// TCP connections.
    pub streams: u32,
    /// Reduction threads at each end.
    pub cpu_threads: u32,
    /// Each stream, stream 0 first.
    pub per_stream: Vec<StreamReport>,
}

/// Pages, bytes, stage counters and CPU of one round on the data streams.
#[derive(Debug, Clone, Default)]
pub struct RoundSent {
    /// Pages sent.
    pub pages: u64,
    /// Frame bytes sent.
    pub bytes: u64,
    /// Per-stage counters.
    pub stages: StageTotals,
}

/// One data stream at the source.
struct SourceStream {
    id: u32,
    writer: FrameWriter<BufWriter<TcpStream>>,
    tcp: TcpStream,
    encoder: Encoder,
    /// References stay within the stream: its own index.
    index: DedupIndex,
    /// The hash of each page this stream owns as last sent.
    sent: Option<PageHashes>,
    report: StreamReport,
}

/// What one round asks of every data stream.
#[derive(Clone, Copy)]
pub struct RoundJob<'a> {
    /// The guest's RAM.
    pub ram: &'a GuestRam,
    /// Pages to send this round (each stream sends those it owns).
    pub pages: &'a DirtyBitmap,
    /// Round number.
    pub round: u32,
    /// The stop-and-copy (the guest is paused): end with a paused RoundEnd
    /// and do not wait for acknowledgements.
    pub paused: bool,
    /// The I/O timeout.
    pub io_timeout: Duration,
}

impl SourceStream {
    fn send_round(&mut self, job: RoundJob<'_>, plan: StreamPlan, permits: Option<&Permits>) -> Result<RoundSent, String> {
        let (cpu0, t0, bytes0) = (thread_cpu_s(), Instant::now(), self.writer.bytes);
        let io = |what: &'static str, id: u32| move |e: std::io::Error| format!("stream {id}: {what}: {}", super::source::describe_io(&e));
        if job.paused {
            self.writer.set_flags(FLAG_GUEST_PAUSED);
        }
        let mut out = RoundSent::default();
        let mut page = [0u8; PAGE_SIZE];
        let mut records = Vec::with_capacity(BATCH_PAGES);
        let mut mine = plan.owned(self.id, job.pages).peekable();
        while mine.peek().is_some() {
            let permit = permits.map(Permits::acquire);
            records.clear();
            for index in mine.by_ref().take(BATCH_PAGES) {
                job.ram.read_page(index, &mut page);
                if let Some(sent) = &mut self.sent {
                    sent.set(index, &page);
                }
                let t = Instant::now();
                let rec = self.encoder.encode_page(&mut self.index, index, &page).map_err(|e| format!("stream {}: encoding page {index}: {e}", self.id))?;
                out.stages.add(rec.record.stage(), (RECORD_HEADER_BYTES + rec.record.payload_len()) as u64, t.elapsed().as_secs_f64());
                records.push(rec);
            }
            out.pages += records.len() as u64;
            let batch = Batch { fallback: false, records: std::mem::take(&mut records) };
            let wire = batch.to_wire().map_err(|e| format!("stream {}: batch encoding: {e}", self.id))?;
            records = batch.records;
            drop(permit);
            self.writer.send(Kind::Pages, &wire).map_err(io("sending pages", self.id))?;
        }
        self.writer.send_json(Kind::RoundEnd, &RoundEnd { round: job.round, pages: out.pages }).map_err(io("ending the round", self.id))?;
        self.writer.flush().map_err(io("sending pages", self.id))?;
        if !job.paused {
            wait_until_acked(&self.tcp, job.io_timeout).map_err(io("waiting for the round's acknowledgement", self.id))?;
        }
        out.bytes = self.writer.bytes - bytes0;
        self.report.pages += out.pages;
        self.report.bytes_on_wire = self.writer.bytes;
        self.report.round_bytes.push(out.bytes);
        self.report.busy_s += t0.elapsed().as_secs_f64();
        self.report.cpu_s += thread_cpu_s() - cpu0;
        Ok(out)
    }
}

/// The source's streams: the plan, and the data streams 1..N-1 (stream 0
/// is the migration's own connection, driven by [`super::source`]).
#[derive(Default)]
pub struct SourceStreams {
    /// The plan.
    pub plan: StreamPlan,
    data: Vec<SourceStream>,
    /// Clones of the data streams' sockets, to shut them down from the
    /// main thread when stream 0 fails.
    tcp: Vec<TcpStream>,
    /// The reduction permits, when fewer threads than streams.
    pub permits: Option<Arc<Permits>>,
    /// Stream 0's share (filled in by the source).
    pub main: StreamReport,
}

impl SourceStreams {
    /// Opens streams 1..N-1 with `connect` (after the destination's
    /// HelloAck) and greets the destination on each.
    pub fn connect(
        plan: StreamPlan,
        config: PipelineConfig,
        pages: u64,
        integrity_check: bool,
        io_timeout: Duration,
        connect: &dyn Fn() -> std::io::Result<TcpStream>,
    ) -> Result<SourceStreams, String> {
        let mut s = SourceStreams { plan, permits: plan.permits(), ..SourceStreams::default() };
        for id in 1..plan.streams {
            let tcp = connect().map_err(|e| format!("stream {id}: cannot connect to the destination: {e}"))?;
            let io = |e: std::io::Error| format!("stream {id}: {}", super::source::describe_io(&e));
            tcp.set_write_timeout(Some(io_timeout)).map_err(io)?;
            tcp.set_read_timeout(Some(io_timeout)).map_err(io)?;
            let _ = tcp.set_nodelay(true);
            s.tcp.push(tcp.try_clone().map_err(io)?);
            let mut writer = FrameWriter::new(BufWriter::with_capacity(1 << 20, tcp.try_clone().map_err(io)?));
            writer.send_json(Kind::StreamHello, &StreamHello { stream: id, streams: plan.streams }).map_err(io)?;
            writer.flush().map_err(io)?;
            let encoder = Encoder::new(plan.stream_pipeline(config)).map_err(|e| format!("stream {id}: {e}"))?;
            s.data.push(SourceStream {
                id,
                writer,
                tcp,
                encoder,
                index: DedupIndex::new(),
                sent: integrity_check.then(|| PageHashes::zeroed(pages)),
                report: StreamReport { stream: id, ..StreamReport::default() },
            });
        }
        Ok(s)
    }

    /// Runs one round: every data stream sends its share on its own
    /// thread while `main` sends stream 0's on this one; returns `main`'s
    /// result and the data streams' totals. If `main` fails the data
    /// streams are shut down so that their threads end at once.
    pub fn round<T, E>(&mut self, job: RoundJob<'_>, main: impl FnOnce() -> Result<T, E>) -> (Result<T, E>, Result<RoundSent, String>) {
        let plan = self.plan;
        let permits = self.permits.as_deref();
        let (data, tcp) = (&mut self.data, &self.tcp);
        std::thread::scope(|s| {
            let handles: Vec<_> = data.iter_mut().map(|st| s.spawn(move || st.send_round(job, plan, permits))).collect();
            let mine = main();
            if mine.is_err() {
                for t in tcp {
                    let _ = t.shutdown(Shutdown::Both);
                }
            }
            let mut total = RoundSent::default();
            let mut error = None;
            for h in handles {
                match h.join() {
                    Ok(Ok(r)) => {
                        total.pages += r.pages;
                        total.bytes += r.bytes;
                        total.stages.merge(&r.stages);
                    }
                    Ok(Err(e)) => {
                        error.get_or_insert(e);
                    }
                    Err(_) => {
                        error.get_or_insert_with(|| "a stream's thread panicked".to_string());
                    }
                }
            }
            (mine, error.map_or(Ok(total), Err))
        })
    }

    /// Stream 0's running hashes completed with those of the pages the
    /// data streams own (at the pause: every page as last sent).
    pub fn merge_hashes(&self, main: &mut PageHashes) {
        for st in &self.data {
            if let Some(h) = &st.sent {
                for (p, v) in main.0.iter_mut().enumerate() {
                    if self.plan.owner(p as u64) == st.id {
                        *v = h.0[p];
                    }
                }
            }
        }
    }

    /// Shuts every data stream down (after a failure).
    pub fn shutdown(&self) {
        for t in &self.tcp {
            let _ = t.shutdown(Shutdown::Both);
        }
    }

    /// Frame bytes sent on the data streams.
    pub fn bytes(&self) -> u64 {
        self.data.iter().map(|s| s.writer.bytes).sum()
    }

    /// CPU time of the data streams' threads, s.
    pub fn cpu_s(&self) -> f64 {
        self.data.iter().map(|s| s.report.cpu_s).sum()
    }

    /// The report (None with one stream); `main` is stream 0's share.
    pub fn report(&self) -> Option<MultifdReport> {
        self.plan.is_multi().then(|| MultifdReport {
            streams: self.plan.streams,
            cpu_threads: self.plan.cpu_threads,
            per_stream: std::iter::once(self.main.clone()).chain(self.data.iter().map(|s| s.report.clone())).collect(),
        })
    }
}

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
            let io = |e: std::io::Error| format!("a stream's setup: {}", super::source::describe_io(&e));
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
    fn every_page_has_one_owner_and_batches_never_span_streams() {
        let plan = StreamPlan { streams: 3, cpu_threads: 3 };
        assert_eq!((plan.owner(0), plan.owner(255), plan.owner(256), plan.owner(512), plan.owner(768)), (0, 0, 1, 2, 0));
        let single = StreamPlan::default();
        assert!((0..10_000).all(|p| single.owner(p) == 0));
        // Each stream owns a third of a large RAM, within one block.
        let mut counts = [0u64; 3];
        for p in 0..100_000 {
            counts[plan.owner(p) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c.abs_diff(100_000 / 3) <= 256), "{counts:?}");
    }

    #[test]
    fn the_delta_cache_is_split_between_streams() {
        let config = PipelineConfig::new("zero+xbzrle+lz4".parse().unwrap());
        assert_eq!(StreamPlan::default().stream_pipeline(config), config);
        let four = StreamPlan { streams: 4, cpu_threads: 4 }.stream_pipeline(config);
        assert_eq!(four.delta_cache_pages * 4, DEFAULT_DELTA_CACHE_PAGES);
    }

    #[test]
    fn arguments_are_checked() {
        let m = |streams, cpu_threads| MultifdArgs { streams, cpu_threads };
        assert_eq!(check_args(&m(2, Some(3)), false, false), Err(MultifdInputError::ThreadsAboveStreams { threads: 3, streams: 2 }));
        assert_eq!(check_args(&m(2, None), true, false), Err(MultifdInputError::Gang(2)));
        assert_eq!(check_args(&m(2, None), false, true), Err(MultifdInputError::Tls(2)));
        assert_eq!(check_args(&m(1, None), true, true), Ok(()));
        assert_eq!(check_args(&m(4, Some(2)), false, false), Ok(()));
        assert!(parse_count("0").is_err() && parse_count("65").is_err() && parse_count("x").is_err());
        assert_eq!(m(4, Some(2)).to_cli(), ["--streams", "4", "--cpu-threads", "2"]);
        assert!(MultifdArgs::default().to_cli().is_empty());
    }

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

    #[test]
    fn permits_bound_the_holders() {
        let p = Arc::new(Permits::new(2));
        let peak = Arc::new(Mutex::new((0u32, 0u32)));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (p, peak) = (p.clone(), peak.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let _g = p.acquire();
                        {
                            let mut k = peak.lock().unwrap();
                            k.0 += 1;
                            k.1 = k.1.max(k.0);
                        }
                        std::thread::sleep(Duration::from_micros(200));
                        peak.lock().unwrap().0 -= 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(peak.lock().unwrap().1, 2, "at most two holders at once, and two did hold at once");
    }
}
