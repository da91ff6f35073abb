//! The source VMM: boots the workload guest, waits until it has filled its
//! memory and run a while, then migrates it: pre-copy rounds through the
//! shared pipeline, the shared stop rule after each round, the
//! stop-and-copy, and the handover. On any failure before the destination
//! confirms that it resumed, the guest keeps running here.

use std::io::BufWriter;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memfabric_migration::pipeline::wire::RECORD_HEADER_BYTES;
use memfabric_migration::pipeline::{Batch, Encoder, PAGE_SIZE};
use memfabric_migration::precopy::{
    precopy_decision, remaining_bytes_estimate, NonConvergence, PrecopyConfig, PrecopyContext, PrecopyDecision, RoundWire,
};
use memfabric_migration::record::Mechanism;
use memfabric_migration::strategy::Strategy;
use memfabric_migration::units::BytesPerSecond;
use memfabric_migration::PAGE_SIZE_BYTES;
use serde::{Deserialize, Serialize};

use super::throttle::{AutoConvergeDriver, GuestDuring};
use super::tls::Conn;
use super::wire::{FrameReader, FrameWriter, Kind, FLAG_GUEST_PAUSED};
use super::{chunk_digests, thread_cpu_s, Abort, Hello, HelloAck, PageHashes, Resumed, RoundEnd, Switchover};
use crate::guest::{abi, GuestWorkload};
use crate::kvm::{monotonic_ns, DirtyBitmap, ProgressSnapshot};
use crate::machine::Machine;

/// Pages per `Pages` frame.
pub const BATCH_PAGES: usize = 256;

/// How to run the source.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Guest RAM, bytes.
    pub memory_bytes: u64,
    /// What the guest runs.
    pub workload: GuestWorkload,
    /// The pipeline's stages.
    pub strategy: Strategy,
    /// The stop rule.
    pub precopy: PrecopyConfig,
    /// How long the guest runs after filling its memory before migration starts.
    pub warmup: Duration,
    /// A send or receive that makes no progress for this long fails the migration.
    pub io_timeout: Duration,
    /// After a failed migration, how long to watch the source guest run on.
    pub watch_after_abort: Duration,
    /// Keep the hash of every page as it is sent, so that at switchover the
    /// destination can prove that every page of its RAM equals the source's
    /// at the pause ([`PageHashes`]; off the pause: the stop-and-copy only
    /// hashes the pages it sends).
    pub integrity_check: bool,
    /// When the handover's end is unknown (the connection failed after the
    /// vCPU state went out), ask the orchestrator on stdin whether the
    /// destination resumed ([`Verdict`]) instead of leaving the guest paused.
    pub arbiter: bool,
    /// Mutual TLS 1.3 to the destination (None: plain TCP).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// QEMU-style auto-converge: throttle the vCPU when the guest dirties
    /// faster than the rounds send ([`super::throttle`]).
    pub auto_converge: bool,
    /// The guest's CPU (model, feature list, or what KVM supports).
    pub cpu: crate::kvm::cpuid::GuestCpu,
    /// The source site this guest belongs to (gang and site dedup,
    /// [`crate::site`]); the default is a guest on its own.
    pub site: crate::site::SourceSite,
    /// Pre-copy, post-copy or hybrid ([`super::postcopy`]).
    pub mechanism: Mechanism,
    /// Streams and reduction threads ([`super::multifd`]).
    pub multifd: super::multifd::StreamPlan,
}

/// The orchestrator's answer when the source cannot tell whether the
/// destination resumed the guest: it watches the destination process, which
/// announces its resume before it confirms it to the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The destination did not resume the guest (it failed or died first):
    /// resume it here.
    Resume,
    /// The destination resumed the guest: discard it here.
    Discard,
}

impl Verdict {
    /// The line the orchestrator writes to the source's stdin.
    pub fn line(self) -> &'static str {
        match self {
            Verdict::Resume => "resume",
            Verdict::Discard => "discard",
        }
    }
}

/// Reads the orchestrator's verdict from stdin (None: stdin closed or
/// unreadable, as when the orchestrator died: then nothing is resumed).
fn ask_arbiter() -> Option<Verdict> {
    eprintln!("source: the handover's end is unknown; waiting for the orchestrator's verdict");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).ok()?;
    match line.trim() {
        "resume" => Some(Verdict::Resume),
        "discard" => Some(Verdict::Discard),
        _ => None,
    }
}

/// One round as the source saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundReport {
    /// Round number (0 = first full copy).
    pub round: u32,
    /// `precopy` or `stopcopy`.
    pub phase: String,
    /// Start, CLOCK_MONOTONIC ns.
    pub start_ns: u64,
    /// End, CLOCK_MONOTONIC ns.
    pub end_ns: u64,
    /// Pages sent.
    pub pages: u64,
    /// Frame bytes sent (headers, records, checksums).
    pub bytes_on_wire: u64,
    /// Distinct pages the dirty log reported at the end of the round.
    pub dirty_pages: u64,
    /// False if the round was cut short by a failure.
    pub complete: bool,
    /// Auto-converge throttle in force during the round, percent.
    #[serde(default)]
    pub throttle_pct: u32,
    /// Time the vCPU slept under the throttle during the round, ms.
    #[serde(default)]
    pub throttled_ms: f64,
    /// Page writes the guest reported during the round.
    #[serde(default)]
    pub guest_writes: u64,
}

/// Pages and real bytes resolved at each stage (`source.json`'s `stages`).
pub use memfabric_formats::stages::StageTotals;

/// How the guest ran on at the source after a failed migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestWatch {
    /// Seconds watched.
    pub seconds: f64,
    /// Guest writes at the start of the watch.
    pub writes_before: u64,
    /// And at its end.
    pub writes_after: u64,
    /// Pages that failed the guest's own check by the end.
    pub verify_errors: u64,
    /// Guest failure, if it stopped.
    pub failure: Option<String>,
}

/// Everything the source measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceReport {
    /// `completed`, `aborted`, `not-converged`, or `unknown` (the
    /// connection failed after the state was sent: the source cannot tell
    /// whether the destination resumed, and leaves its guest paused).
    pub outcome: String,
    /// Why it did not complete.
    pub error: Option<String>,
    /// Guest RAM.
    pub memory_bytes: u64,
    /// Canonical strategy.
    pub strategy: String,
    /// Guest TSC rate.
    pub tsc_hz: u64,
    /// Boot to memory filled, seconds.
    pub fill_s: f64,
    /// Migration start (before connecting), CLOCK_MONOTONIC ns.
    pub start_ns: u64,
    /// Migration end, CLOCK_MONOTONIC ns.
    pub end_ns: u64,
    /// vCPU pause, CLOCK_MONOTONIC ns.
    pub pause_ns: Option<u64>,
    /// Destination vCPU start, CLOCK_MONOTONIC ns (from `Resumed`).
    pub resume_ns: Option<u64>,
    /// Time to map and pre-fault the destination's RAM, ms.
    pub dest_prefault_ms: Option<f64>,
    /// Combining the source's page hashes into chunk digests at the pause, ms.
    pub source_verify_ms: Option<f64>,
    /// Hashing and comparing at the destination, ms (part of the downtime).
    pub dest_verify_ms: Option<f64>,
    /// Rounds.
    pub rounds: Vec<RoundReport>,
    /// Whether the stop rule was met (None if it never decided).
    pub converged: Option<bool>,
    /// Frame bytes sent to the destination.
    pub bytes_on_wire: u64,
    /// Frame bytes of control and vCPU state (not pages).
    pub bytes_control: u64,
    /// Frame bytes received from the destination.
    pub bytes_from_destination: u64,
    /// Per-stage pages, bytes and time.
    pub stages: StageTotals,
    /// CPU time of the migration thread, seconds.
    pub cpu_s_source: f64,
    /// The guest's progress at the pause.
    pub guest_at_pause: Option<ProgressSnapshot>,
    /// The source guest after a failed migration.
    pub guest_after_abort: Option<GuestWatch>,
    /// The orchestrator's verdict when the handover's end was unknown
    /// (`resume` or `discard`; None when it was not asked or did not answer).
    #[serde(default)]
    pub arbiter_verdict: Option<String>,
    /// Whether auto-converge was on.
    #[serde(default)]
    pub auto_converge: bool,
    /// Largest auto-converge throttle applied, percent.
    #[serde(default)]
    pub throttle_pct_max: u32,
    /// The guest's CPU as started (model and features).
    #[serde(default)]
    pub cpu: Option<super::cpu::CpuWire>,
    /// The features the guest saw when it ran CPUID (of those that tell
    /// models apart).
    #[serde(default)]
    pub guest_cpu_features: Option<std::collections::BTreeSet<String>>,
    /// With a CPU model or feature list: whether the guest saw exactly
    /// those features (of the ones that tell models apart); false where the
    /// CPUID table does not reach the guest (kvm-pvm: it sees the physical
    /// CPU's). None without a model, or if the guest wrote no dump.
    #[serde(default)]
    pub cpuid_enforced: Option<bool>,
    /// The destination host's CPU, from its HelloAck.
    #[serde(default)]
    pub dest_cpu: Option<super::cpu::CpuWire>,
    /// The refusal when the destination lacked features the guest has
    /// (outcome `cpu-incompatible`; no page was sent).
    #[serde(default)]
    pub cpu_incompatible: Option<super::cpu::CpuIncompatible>,
    /// Pre-copy, post-copy or hybrid.
    #[serde(default = "pre_copy")]
    pub mechanism: Mechanism,
    /// The guest's page writes per second over the warm-up, before the
    /// migration started (the baseline of post-copy's degradation).
    #[serde(default)]
    pub guest_write_rate_before: Option<f64>,
    /// What post-copy did (None for pre-copy).
    #[serde(default)]
    pub postcopy: Option<super::postcopy::SourcePostcopy>,
    /// Each stream's pages, bytes and time ([`super::multifd`]; absent
    /// with one stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multifd: Option<super::multifd::MultifdReport>,
}

fn pre_copy() -> Mechanism {
    Mechanism::PreCopy
}

impl SourceReport {
    /// The report of a source process that died without writing one (its
    /// host failed, `--fault kill-source@...`): outcome `source-lost`.
    pub fn lost(memory_bytes: u64, strategy: String, error: String) -> SourceReport {
        SourceReport { error: Some(error), ..SourceReport::empty("source-lost", memory_bytes, strategy) }
    }

    /// A report with nothing measured yet.
    fn empty(outcome: &str, memory_bytes: u64, strategy: String) -> SourceReport {
        SourceReport {
            outcome: outcome.into(),
            error: None,
            memory_bytes,
            strategy,
            tsc_hz: 0,
            fill_s: 0.0,
            start_ns: 0,
            end_ns: 0,
            pause_ns: None,
            resume_ns: None,
            dest_prefault_ms: None,
            source_verify_ms: None,
            dest_verify_ms: None,
            rounds: Vec::new(),
            converged: None,
            bytes_on_wire: 0,
            bytes_control: 0,
            bytes_from_destination: 0,
            stages: StageTotals::default(),
            cpu_s_source: 0.0,
            guest_at_pause: None,
            guest_after_abort: None,
            arbiter_verdict: None,
            auto_converge: false,
            throttle_pct_max: 0,
            cpu: None,
            guest_cpu_features: None,
            cpuid_enforced: None,
            dest_cpu: None,
            cpu_incompatible: None,
            mechanism: Mechanism::PreCopy,
            guest_write_rate_before: None,
            postcopy: None,
            multifd: None,
        }
    }
}

impl SourceReport {
    /// Pre-copy rounds completed, round 0 included; the stop-and-copy is
    /// not a round (the `rounds` column of docs/results.md).
    pub fn precopy_rounds(&self) -> u32 {
        self.rounds.iter().filter(|r| r.phase == "precopy" && r.complete).count() as u32
    }
}

// Fields visible to `super::postcopy::source`, which runs the same
// migration after the switch.
pub(super) struct Migration<'a> {
    pub(super) cfg: &'a SourceConfig,
    pub(super) m: &'a mut Machine,
    encoder: Encoder,
    /// The hash of each page as last sent (with the integrity check).
    pub(super) sent: Option<PageHashes>,
    pub(super) writer: FrameWriter<BufWriter<Conn>>,
    pub(super) reader: FrameReader<Conn>,
    /// The TCP connection under the frames (timeouts, send queue, shutdown).
    pub(super) tcp: TcpStream,
    pub(super) report: SourceReport,
    pub(super) paused: bool,
    /// Auto-converge (off unless configured).
    throttle: AutoConvergeDriver,
    /// Streams 1..N-1 (multifd; none with one stream).
    multifd: super::multifd::SourceStreams,
    /// Opens a connection to the destination (multifd's data streams).
    connect: &'a dyn Fn() -> std::io::Result<TcpStream>,
}

/// A failure, and whether the destination may have resumed the guest.
pub(super) struct Failed {
    pub(super) reason: String,
    pub(super) handed_over: bool,
    /// The destination said it aborted: it has not resumed the guest.
    pub(super) destination_aborted: bool,
}

impl From<std::io::Error> for Failed {
    fn from(e: std::io::Error) -> Failed {
        Failed { reason: format!("connection to the destination: {}", describe_io(&e)), handed_over: false, destination_aborted: false }
    }
}

/// An I/O error, saying plainly when it is a timeout (SO_SNDTIMEO and
/// SO_RCVTIMEO report EAGAIN).
pub fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            "timed out: no progress within the I/O timeout (the link is down or the peer stalled)".into()
        }
        _ => e.to_string(),
    }
}

pub(super) fn fail(reason: impl Into<String>) -> Failed {
    Failed { reason: reason.into(), handed_over: false, destination_aborted: false }
}

impl Migration<'_> {
    /// Sends `pages` as one round; returns (pages, bytes).
    pub(super) fn send_pages(&mut self, pages: impl Iterator<Item = u64>) -> Result<(u64, u64), Failed> {
        self.send_pages_as(Kind::Pages, pages)
    }

    /// Sends `pages` in frames of `kind` (`Pages`, or `PostcopyPages`);
    /// returns (pages, bytes).
    pub(super) fn send_pages_as(&mut self, kind: Kind, pages: impl Iterator<Item = u64>) -> Result<(u64, u64), Failed> {
        let bytes0 = self.writer.bytes;
        let mut page = [0u8; PAGE_SIZE];
        let mut records = Vec::with_capacity(BATCH_PAGES);
        let mut sent = 0;
        let mut pages = pages.peekable();
        let mut batch_pages = Vec::with_capacity(BATCH_PAGES);
        while pages.peek().is_some() {
            records.clear();
            // Site hook: with site_index = query, ask about the batch first.
            batch_pages.clear();
            batch_pages.extend(pages.by_ref().take(BATCH_PAGES));
            let site = &self.cfg.site;
            crate::site::hooks::source_query(site, &self.encoder, self.m.ram(), &batch_pages, &mut self.writer, &mut self.reader).map_err(fail)?;
            // multifd with fewer reduction threads than streams: a permit.
            let permits = self.multifd.permits.clone();
            let reducing = permits.as_deref().map(super::multifd::Permits::acquire);
            let mut dedup_index = crate::site::lock(&site.index);
            for &index in &batch_pages {
                self.m.ram().read_page(index, &mut page);
                if let Some(sent) = &mut self.sent {
                    sent.set(index, &page);
                }
                let t = Instant::now();
                let rec = self.encoder.encode_page(&mut dedup_index, index, &page).map_err(|e| fail(format!("encoding page {index}: {e}")))?;
                let secs = t.elapsed().as_secs_f64();
                self.report.stages.add(rec.record.stage(), (RECORD_HEADER_BYTES + rec.record.payload_len()) as u64, secs);
                records.push(rec);
            }
            drop(dedup_index);
            sent += records.len() as u64;
            let batch = Batch { fallback: false, records: std::mem::take(&mut records) };
            let wire = batch.to_wire().map_err(|e| fail(format!("batch encoding: {e}")))?;
            records = batch.records;
            drop(reducing);
            self.writer.send(kind, &wire)?;
        }
        // Site hook: pages whose references the destination could not resolve.
        crate::site::hooks::source_resolve(&self.cfg.site, &mut self.encoder, self.m.ram(), &mut self.writer, &mut self.reader)
            .map_err(fail)?;
        Ok((sent, self.writer.bytes - bytes0))
    }

    /// One pre-copy round: sends `to_send` (on every stream), waits until
    /// the destination has it all, takes the dirty log and records the
    /// round. Returns (pages, bytes, start and end ns, the pages dirtied
    /// meanwhile).
    pub(super) fn precopy_round(&mut self, round: u32, to_send: &DirtyBitmap) -> Result<(u64, u64, u64, u64, DirtyBitmap), Failed> {
        let start_ns = monotonic_ns();
        let guest_before = self.m.vcpu.progress();
        let (pages, bytes) = self.round_on_streams(to_send, round, false)?;
        let end_ns = monotonic_ns();
        let dirty = self.m.vm.take_dirty_log().map_err(|e| fail(e.to_string()))?;
        let guest = GuestDuring::between(&guest_before, &self.m.vcpu.progress());
        self.report.rounds.push(RoundReport {
            round,
            phase: "precopy".into(),
            start_ns,
            end_ns,
            pages,
            bytes_on_wire: bytes,
            dirty_pages: dirty.count(),
            complete: true,
            throttle_pct: self.throttle.pct(),
            throttled_ms: guest.throttled_ns as f64 * 1e-6,
            guest_writes: guest.writes,
        });
        Ok((pages, bytes, start_ns, end_ns, dirty))
    }

    /// One round's pages on every stream (multifd: stream 0's share here,
    /// the others' on their threads, [`super::multifd::SourceStreams::round`]);
    /// returns (pages, bytes) of all streams. A pre-copy round ends with
    /// `RoundEnd` and waits for every stream's bytes to be acknowledged; the
    /// stop-and-copy (`paused`) only sends.
    fn round_on_streams(&mut self, to_send: &DirtyBitmap, round: u32, paused: bool) -> Result<(u64, u64), Failed> {
        let mut streams = std::mem::take(&mut self.multifd);
        // Stream 0 takes the same reduction permits as the others.
        self.multifd.permits = streams.permits.clone();
        let plan = streams.plan;
        let ram = self.m.ram().clone();
        let job = super::multifd::RoundJob { ram: &ram, pages: to_send, round, paused, io_timeout: self.cfg.io_timeout };
        let t0 = Instant::now();
        let mut main_s = 0.0;
        let (mine, theirs) = streams.round(job, || -> Result<(u64, u64), Failed> {
            let (pages, bytes) = self.send_pages(to_send.iter().filter(|&p| plan.owner(p) == 0))?;
            if !paused {
                self.control(Kind::RoundEnd, &RoundEnd { round, pages })?;
                self.writer.flush()?;
                // A round ends when its bytes have reached the destination, not
                // when they entered the socket buffer: otherwise the measured rate
                // overstates the link and the pause would wait for megabytes still
                // queued (up to tcp_wmem) on a slow link.
                wait_until_acked(self.reader_stream(), self.cfg.io_timeout)?;
            }
            main_s = t0.elapsed().as_secs_f64();
            Ok((pages, bytes))
        });
        streams.main.busy_s += main_s;
        self.multifd = streams;
        let (pages, bytes) = mine?;
        self.multifd.main.pages += pages;
        self.multifd.main.round_bytes.push(bytes);
        let theirs = theirs.map_err(fail)?;
        self.report.stages.merge(&theirs.stages);
        Ok((pages + theirs.pages, bytes + theirs.bytes))
    }

    pub(super) fn control<T: Serialize>(&mut self, kind: Kind, value: &T) -> Result<(), Failed> {
        let n = self.writer.send_json(kind, value)?;
        self.report.bytes_control += n;
        Ok(())
    }

    fn run(&mut self) -> Result<(), Failed> {
        let hello = Hello {
            protocol: super::wire::VERSION,
            memory_bytes: self.cfg.memory_bytes,
            page_size: PAGE_SIZE_BYTES,
            strategy: self.cfg.strategy.to_string(),
            tsc_hz: self.m.tsc_hz,
            ram_split: self.cfg.workload.ram_split,
            cpu: self.report.cpu.clone(),
            site: self.cfg.site.hello.clone(),
            mechanism: Some(self.cfg.mechanism).filter(|&m| m != Mechanism::PreCopy),
            multifd: self.cfg.multifd.is_multi().then_some(self.cfg.multifd),
        };
        self.control(Kind::Hello, &hello)?;
        self.writer.flush()?;
        let ack: HelloAck = self.expect(Kind::HelloAck)?;
        self.report.dest_prefault_ms = Some(ack.prefault_ms);
        // CPU baseline: refuse a destination lacking a feature the guest
        // was started with, before any page moves (the guest runs on here).
        if let (Some(guest), Some(dest)) = (&self.report.cpu, &ack.cpu) {
            self.report.dest_cpu = Some(dest.clone());
            if let Err(e) = super::cpu::check_destination(guest, dest) {
                self.report.outcome = "cpu-incompatible".into();
                let reason = e.to_string();
                self.report.cpu_incompatible = Some(e);
                return Err(fail(reason));
            }
        }
        crate::site::hooks::source_after_ack(&self.cfg.site, self.cfg.strategy, &mut self.reader).map_err(fail)?;
        // multifd: the data streams, once the destination is ready.
        if self.cfg.multifd.is_multi() {
            let c = self.cfg;
            self.multifd =
                super::multifd::SourceStreams::connect(c.multifd, *self.encoder.config(), self.m.ram().pages(), c.integrity_check, c.io_timeout, self.connect)
                    .map_err(fail)?;
        }
        if super::postcopy::is_postcopy(self.cfg.mechanism) {
            return super::postcopy::source::run(self);
        }

        self.m.vm.set_dirty_logging(true).map_err(|e| fail(e.to_string()))?;
        let total_pages = self.m.ram().pages();
        let mut to_send = DirtyBitmap::full(total_pages);
        let mut round = 0u32;
        let converged = loop {
            let before = self.report.stages;
            let (pages, bytes, start_ns, end_ns, dirty) = self.precopy_round(round, &to_send)?;
            // Auto-converge: the shared trigger on what this round dirtied
            // and sent sets the throttle for the next one.
            self.throttle.on_round(&self.m.vcpu, dirty.count(), bytes).map_err(|e| fail(e.to_string()))?;
            self.report.throttle_pct_max = self.throttle.pct_max();
            // Remaining bytes after reduction: the shared estimator (the
            // simulator calls it too) on what this round sent.
            let wire = RoundWire {
                pages: pages as f64,
                wire_bytes: bytes as f64,
                zero_pages: (self.report.stages.pages_zero - before.pages_zero) as f64,
                zero_wire_bytes: (self.report.stages.bytes_zero - before.bytes_zero) as f64,
            };
            let secs = (end_ns - start_ns) as f64 * 1e-9;
            let ctx = PrecopyContext {
                rounds_completed: round + 1,
                remaining_bytes: remaining_bytes_estimate(dirty.count() as f64, &wire, (PAGE_SIZE_BYTES + RECORD_HEADER_BYTES as u64) as f64),
                measured_rate: BytesPerSecond(bytes as f64 / secs.max(1e-9)),
            };
            to_send = dirty;
            round += 1;
            match precopy_decision(&ctx, &self.cfg.precopy) {
                PrecopyDecision::Continue => continue,
                PrecopyDecision::StopAndCopy => break true,
                PrecopyDecision::NotConverged(NonConvergence::ForceStop) => break false,
                PrecopyDecision::NotConverged(NonConvergence::Abort) => {
                    self.report.converged = Some(false);
                    self.report.outcome = "not-converged".into();
                    return Err(fail(format!(
                        "pre-copy did not converge in {} rounds ({} pages still dirty)",
                        round,
                        to_send.count()
                    )));
                }
                PrecopyDecision::NotConverged(NonConvergence::PostCopy) => {
                    // QEMU's and the simulator's fallback: what is still
                    // dirty goes by post-copy.
                    self.report.converged = Some(false);
                    return super::postcopy::source::switch_and_push(self, round, Some(to_send));
                }
            }
        };
        self.report.converged = Some(converged);

        // Stop-and-copy.
        let paused = self.m.vcpu.pause().map_err(|e| fail(format!("pausing the guest: {e}")))?;
        self.paused = true;
        self.writer.set_flags(FLAG_GUEST_PAUSED);
        self.report.pause_ns = Some(paused.at_monotonic_ns);
        self.report.guest_at_pause = Some(paused.progress);
        let start_ns = paused.at_monotonic_ns;
        let last = self.m.vm.take_dirty_log().map_err(|e| fail(e.to_string()))?;
        to_send.merge(&last);
        // RAM is frozen now. Every page not in `to_send` holds what it held
        // when it was last sent (the dirty log says so), and the
        // stop-and-copy hashes the pages it sends: after it, `sent` is the
        // hash of every page of RAM at the pause.
        let sent = self.round_on_streams(&to_send, round, true);
        if let Some(h) = &mut self.sent {
            self.multifd.merge_hashes(h);
        }
        let hashes = self.sent.as_ref().map(|h| {
            let t = Instant::now();
            let digests = chunk_digests(&h.0);
            self.report.source_verify_ms = Some(t.elapsed().as_secs_f64() * 1e3);
            digests
        });
        let (pages, bytes) = sent?;
        let state = paused.state.to_bytes();
        let sw = Switchover {
            pause_ns: paused.at_monotonic_ns,
            chunk_hashes: hashes,
            guest_writes: paused.progress.writes,
            guest_checksum: paused.progress.checksum,
        };
        self.control(Kind::Switchover, &sw)?;
        let n = self.writer.send(Kind::VcpuState, &state)?;
        self.report.bytes_control += n;
        self.writer.flush()?;
        self.report.rounds.push(RoundReport {
            round,
            phase: "stopcopy".into(),
            start_ns,
            end_ns: monotonic_ns(),
            pages,
            bytes_on_wire: bytes + n,
            dirty_pages: 0,
            complete: true,
            throttle_pct: self.throttle.pct(),
            throttled_ms: 0.0,
            guest_writes: 0,
        });
        // From here the destination may resume the guest.
        // An explicit Abort means the destination did not resume: the guest
        // is still ours. Anything else leaves it unknown.
        let resumed: Resumed =
            self.expect(Kind::Resumed).map_err(|f| Failed { handed_over: !f.destination_aborted, ..f })?;
        self.report.resume_ns = Some(resumed.resume_ns);
        self.report.dest_verify_ms = Some(resumed.verify_ms);
        Ok(())
    }

    /// Reads the next frame, which must be `kind` (an `Abort` carries the
    /// destination's reason).
    pub(super) fn expect<T: serde::de::DeserializeOwned>(&mut self, kind: Kind) -> Result<T, Failed> {
        let f = self.reader.recv().map_err(|e| fail(format!("waiting for {kind:?} from the destination: {e}")))?;
        if f.kind == Kind::Abort {
            let a: Abort = serde_json::from_slice(&f.payload).unwrap_or(Abort { reason: "(unreadable reason)".into() });
            return Err(Failed { destination_aborted: true, ..fail(format!("the destination aborted: {}", a.reason)) });
        }
        if f.kind != kind {
            return Err(fail(format!("expected {kind:?} from the destination, got {:?}", f.kind)));
        }
        serde_json::from_slice(&f.payload).map_err(|e| fail(format!("{kind:?} from the destination: {e}")))
    }

    /// After a write failed: the destination may have said why before closing.
    fn destination_reason(&mut self) -> Option<String> {
        let _ = self.reader_stream().set_read_timeout(Some(Duration::from_millis(500)));
        match self.reader.recv() {
            Ok(f) if f.kind == Kind::Abort => serde_json::from_slice::<Abort>(&f.payload).ok().map(|a| a.reason),
            _ => None,
        }
    }

    fn reader_stream(&self) -> &TcpStream {
        &self.tcp
    }
}

/// Waits until the kernel holds no unacknowledged bytes for `stream`
/// (SIOCOUTQ = 0), polling every 0.5 ms; fails after `timeout`.
pub(crate) fn wait_until_acked(stream: &TcpStream, timeout: Duration) -> std::io::Result<()> {
    let t = Instant::now();
    loop {
        let queued = unacked_bytes(stream)?;
        if queued == 0 {
            return Ok(());
        }
        if t.elapsed() > timeout {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{queued} bytes still unacknowledged")));
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Bytes the kernel holds for `stream` that the peer has not acknowledged
/// (SIOCOUTQ).
pub(super) fn unacked_bytes(stream: &TcpStream) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int for a socket fd we own.
    let r = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(queued.max(0) as u64)
}

/// Boots the guest, migrates it over a connection made by `connect`, and
/// reports. Never panics on a migration failure: the report says what
/// happened and the guest is left running at the source.
pub fn run_source(cfg: &SourceConfig, connect: impl Fn() -> std::io::Result<TcpStream>) -> anyhow::Result<SourceReport> {
    let boot = Instant::now();
    let mut m = Machine::boot_with_cpu(cfg.memory_bytes, &cfg.workload, &cfg.cpu)?;
    let supported = m.vm.supported_cpuid()?;
    let cpu = super::cpu::CpuWire::of(&cfg.cpu, &supported)?;
    m.wait_for_phase(abi::GUEST_PHASE_FILLED as u64, Duration::from_secs(600)).map_err(anyhow::Error::msg)?;
    let guest_cpu_features = m.guest_cpu_features();
    // Only a model or a feature list is a claim about what the guest sees.
    let asked = cfg.cpu != crate::kvm::cpuid::GuestCpu::Host;
    let cpuid_enforced = guest_cpu_features.as_ref().filter(|_| asked).map(|seen| *seen == cpu.features);
    if cpuid_enforced == Some(false) {
        eprintln!(
            "source: warning: the guest sees CPU features {:?}, not the {:?} it was given: KVM here does not intercept CPUID",
            guest_cpu_features.as_ref().map(|f| f.iter().cloned().collect::<Vec<_>>().join(",")).unwrap_or_default(),
            cpu.features.iter().cloned().collect::<Vec<_>>().join(",")
        );
    }
    let fill_s = boot.elapsed().as_secs_f64();
    let (warm0, t_warm) = (m.vcpu.progress(), Instant::now());
    std::thread::sleep(cfg.warmup);
    let warm_s = t_warm.elapsed().as_secs_f64();
    let guest_write_rate_before = (warm_s > 0.0).then(|| (m.vcpu.progress().writes - warm0.writes) as f64 / warm_s);
    if let Some(f) = m.vcpu.failure() {
        anyhow::bail!("the guest failed before migration: {f}");
    }

    if let Some(gate) = &cfg.site.gate {
        gate.arrive(); // a gang starts migrating together
    }
    let start_ns = monotonic_ns();
    let cpu0 = thread_cpu_s();
    let mut report = SourceReport {
        tsc_hz: m.tsc_hz,
        fill_s,
        start_ns,
        cpu: Some(cpu),
        guest_cpu_features,
        cpuid_enforced,
        mechanism: cfg.mechanism,
        guest_write_rate_before,
        ..SourceReport::empty("completed", cfg.memory_bytes, cfg.strategy.to_string())
    };
    let stream = match connect() {
        Ok(s) => s,
        Err(e) => {
            report.outcome = "aborted".into();
            report.error = Some(format!("cannot connect to the destination: {e}"));
            report.end_ns = monotonic_ns();
            report.guest_after_abort = Some(watch(&m, cfg.watch_after_abort));
            return Ok(report);
        }
    };
    stream.set_write_timeout(Some(cfg.io_timeout))?;
    stream.set_read_timeout(Some(cfg.io_timeout))?;
    // The TLS handshake (if any) completes before the first frame, and no
    // guest page is read before the destination's HelloAck.
    let conn = match &cfg.tls {
        Some(tls) => Conn::client(tls, stream.try_clone()?),
        None => stream.try_clone().map(Conn::Plain),
    };
    let conn = match conn {
        Ok(c) => c,
        Err(e) => {
            report.outcome = "aborted".into();
            report.error = Some(format!("TLS handshake with the destination: {e}"));
            report.end_ns = monotonic_ns();
            let _ = stream.shutdown(std::net::Shutdown::Both);
            report.guest_after_abort = Some(watch(&m, cfg.watch_after_abort));
            return Ok(report);
        }
    };
    let reader = FrameReader::new(conn.handle()?);
    let writer = FrameWriter::new(BufWriter::with_capacity(1 << 20, conn));
    let encoder = Encoder::new(cfg.multifd.stream_pipeline(crate::site::hooks::pipeline(cfg.strategy, cfg.site.hello.as_ref())))?;
    // Round 0 sends every page, so every entry is set before it is read.
    let sent = cfg.integrity_check.then(|| PageHashes::zeroed(m.ram().pages()));
    report.auto_converge = cfg.auto_converge;
    let throttle = AutoConvergeDriver::new(cfg.auto_converge);
    let mut mig = Migration {
        cfg,
        m: &mut m,
        encoder,
        sent,
        writer,
        reader,
        tcp: stream,
        report,
        paused: false,
        throttle,
        multifd: Default::default(),
        connect: &connect,
    };
    let result = mig.run();
    mig.report.end_ns = monotonic_ns();
    mig.report.bytes_on_wire = mig.writer.bytes;
    mig.report.bytes_from_destination = mig.reader.bytes;
    mig.report.cpu_s_source = thread_cpu_s() - cpu0;
    // multifd: stream 0's share, then every stream's bytes and CPU.
    mig.multifd.main.bytes_on_wire = mig.writer.bytes;
    mig.multifd.main.cpu_s = mig.report.cpu_s_source;
    mig.report.bytes_on_wire += mig.multifd.bytes();
    mig.report.cpu_s_source += mig.multifd.cpu_s();
    mig.report.multifd = mig.multifd.report();
    if result.is_err() {
        mig.multifd.shutdown();
    }
    if let Err(f) = result {
        if mig.report.outcome == super::postcopy::LOST {
            // Post-copy after the destination resumed: neither side has the
            // whole guest; it is never resumed here.
            mig.report.error = Some(f.reason);
            let report = mig.report;
            let _ = m.vcpu.stop();
            return Ok(report);
        }
        // The guest stays here (or may): it runs on unthrottled.
        mig.throttle.release(&mig.m.vcpu);
        // A guest paused for a handover that did not happen runs again at
        // once, before the destination's reason is read and it is told.
        let mut resume_error = None;
        if !f.handed_over && mig.paused {
            let _ = mig.m.vm.set_dirty_logging(false);
            resume_error = mig.m.vcpu.resume().err();
            mig.paused = false;
        }
        let mut reason = f.reason;
        if let Some(r) = mig.destination_reason() {
            reason = format!("{reason}; the destination said: {r}");
        }
        if let Some(last) = mig.report.rounds.last_mut() {
            if !f.handed_over && last.end_ns >= mig.report.end_ns {
                last.complete = false;
            }
        }
        mig.report.error = Some(reason);
        let mut handed_over = f.handed_over;
        let verdict = if handed_over && cfg.arbiter { ask_arbiter() } else { None };
        mig.report.arbiter_verdict = verdict.map(|v| v.line().to_string());
        match verdict {
            Some(Verdict::Resume) => {
                handed_over = false;
                let e = mig.report.error.take().unwrap_or_default();
                mig.report.error = Some(format!("{e}; the orchestrator saw that the destination did not resume the guest"));
            }
            Some(Verdict::Discard) if super::postcopy::is_postcopy(cfg.mechanism) => {
                // The destination resumed the guest without its memory, and
                // the link to the rest of it failed: the guest is lost.
                mig.report.outcome = super::postcopy::LOST.into();
            }
            Some(Verdict::Discard) => {
                // The destination runs the guest: only its confirmation was lost.
                mig.report.error = None;
            }
            None => {}
        }
        let discarded = verdict == Some(Verdict::Discard);
        if handed_over && !discarded {
            // The state went out: the destination may be running the guest.
            // Resuming here could run it twice; leave it paused.
            mig.report.outcome = "unknown".into();
        } else if !discarded {
            if mig.report.outcome == "completed" {
                mig.report.outcome = "aborted".into();
            }
            let paused = mig.paused;
            // Tell the destination (if it still listens) so that it stops
            // waiting; a dead link must not hold the guest up for long.
            let _ = mig.reader_stream().set_write_timeout(Some(Duration::from_millis(200)));
            let _ = mig.writer.send_json(Kind::Abort, &Abort { reason: mig.report.error.clone().unwrap_or_default() });
            let _ = mig.writer.flush();
            let _ = mig.reader_stream().shutdown(std::net::Shutdown::Both);
            let mut report = mig.report;
            let _ = m.vm.set_dirty_logging(false);
            if paused {
                resume_error = m.vcpu.resume().err();
            }
            if let Some(e) = resume_error {
                report.error = Some(format!("{}; resuming the source guest failed: {e}", report.error.unwrap_or_default()));
            }
            report.guest_after_abort = Some(watch(&m, cfg.watch_after_abort));
            return Ok(report);
        }
    }
    let report = mig.report;
    let _ = m.vcpu.stop();
    Ok(report)
}

/// Watches the source guest run for `d`.
fn watch(m: &Machine, d: Duration) -> GuestWatch {
    let before = m.vcpu.progress();
    let t = Instant::now();
    std::thread::sleep(d);
    let after = m.vcpu.progress();
    GuestWatch {
        seconds: t.elapsed().as_secs_f64(),
        writes_before: before.writes,
        writes_after: after.writes,
        verify_errors: after.verify_errors,
        failure: m.vcpu.failure().map(|f| f.to_string()),
    }
}
