//! multifd at the source: the data streams (1..N-1) beside the migration
//! connection, each on its own thread, sending its share of every round.

use std::io::BufWriter;
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memfabric_migration::pipeline::wire::RECORD_HEADER_BYTES;
use memfabric_migration::pipeline::{Batch, DedupIndex, Encoder, PipelineConfig, PAGE_SIZE};

use crate::kvm::{DirtyBitmap, GuestRam};
use crate::migrate::source::{wait_until_acked, BATCH_PAGES};
use crate::migrate::wire::{FrameWriter, Kind, FLAG_GUEST_PAUSED};
use crate::migrate::{thread_cpu_s, PageHashes, RoundEnd};

use super::{MultifdReport, Permits, RoundSent, StreamHello, StreamPlan, StreamReport};

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
        let io = |what: &'static str, id: u32| move |e: std::io::Error| format!("stream {id}: {what}: {}", crate::migrate::source::describe_io(&e));
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
            let io = |e: std::io::Error| format!("stream {id}: {}", crate::migrate::source::describe_io(&e));
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

