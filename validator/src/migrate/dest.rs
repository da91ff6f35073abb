//! The destination VMM: accepts one migration, writes the pages it decodes
//! into a pre-faulted guest RAM, checks at switchover that every chunk of
//! RAM hashes as at the source, restores the vCPU and resumes the guest, and
//! watches it run on. Nothing is resumed unless every check passed.

use std::io::{BufReader, BufWriter};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memfabric_migration::pipeline::{Decoder, Page, PageTarget};
use memfabric_migration::strategy::Strategy;
use memfabric_migration::PAGE_SIZE_BYTES;
use serde::{Deserialize, Serialize};

use super::tls::Conn;
use super::wire::{FrameReader, FrameWriter, Kind};
use super::{chunk_digests, thread_cpu_s, Abort, Hello, HelloAck, PageHashes, Resumed, RoundEnd, Switchover, CHUNK_PAGES};
use crate::kvm::{GuestRam, VcpuState, Vm};
use crate::machine::Machine;

/// How to run the destination.
#[derive(Debug, Clone)]
pub struct DestConfig {
    /// A receive that makes no progress for this long fails the migration.
    pub io_timeout: Duration,
    /// How long to watch the resumed guest before reporting.
    pub watch_after_resume: Duration,
    /// Largest guest accepted, bytes.
    pub max_memory_bytes: u64,
    /// Fault injection: flip a byte of this page just before the integrity
    /// check (see `--fault dest-ram@PAGE`).
    pub corrupt_page: Option<u64>,
    /// Print [`RESUMED_LINE`] on stdout once the guest runs here, before
    /// confirming it to the source: the orchestrator's evidence when the
    /// confirmation is lost ([`super::source::Verdict`]).
    pub announce_resume: bool,
    /// Mutual TLS 1.3 with the source (None: plain TCP).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The CPU this destination's host offers (a model it emulates, or
    /// what KVM supports).
    pub cpu: crate::kvm::cpuid::GuestCpu,
    /// The destination site (gang and site dedup, [`crate::site`]); the
    /// default is a destination of one guest.
    pub site: crate::site::DestSite,
}

/// What the destination prints on stdout when the guest runs here.
pub const RESUMED_LINE: &str = "resumed";

/// Everything the destination measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DestReport {
    /// `resumed`, `aborted-by-source`, or `failed`.
    pub outcome: String,
    /// Why it did not resume.
    pub error: Option<String>,
    /// Pages written.
    pub pages_received: u64,
    /// Frame bytes received.
    pub bytes_received: u64,
    /// Rounds seen.
    pub rounds_seen: u32,
    /// Integrity: chunks compared and chunks that differed.
    pub chunks_compared: u64,
    /// Chunks whose hash differed from the source's.
    pub chunks_differing: u64,
    /// First differing page chunk, if any.
    pub first_differing_page: Option<u64>,
    /// Hashing and comparing at switchover, ms.
    pub verify_ms: f64,
    /// vCPU start, CLOCK_MONOTONIC ns.
    pub resume_ns: Option<u64>,
    /// Source pause, CLOCK_MONOTONIC ns (from the switchover).
    pub pause_ns: Option<u64>,
    /// Guest writes at the source pause.
    pub guest_writes_at_pause: u64,
    /// Guest hash chain at the source pause.
    pub guest_checksum_at_pause: u64,
    /// Guest writes when the watch after resume ended.
    pub guest_writes_after: u64,
    /// Guest reports seen after resume.
    pub guest_reports_after: u64,
    /// Pages that failed the guest's own check after resume.
    pub guest_verify_errors_after: u64,
    /// Seconds watched after resume.
    pub watch_s: f64,
    /// The resumed guest's failure, if any.
    pub guest_failure: Option<String>,
    /// CPU time of the receiving thread (decode and write), seconds.
    pub cpu_s_destination: f64,
    /// Whether the injected page flip (`--fault dest-ram@PAGE`) happened.
    #[serde(default)]
    pub fault_injected: bool,
    /// What post-copy did here (None for pre-copy).
    #[serde(default)]
    pub postcopy: Option<super::postcopy::DestPostcopy>,
    /// Each stream's pages, bytes and CPU, stream 0 first ([`super::multifd`];
    /// empty with one stream, whose figures are the totals above).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<super::multifd::StreamReport>,
}

impl DestReport {
    /// Whether the resumed guest carried on from where it paused: no
    /// failure, no page failing its own check, its write count going on from
    /// the count at the pause, and reports arriving.
    pub fn guest_carried_on(&self) -> bool {
        self.guest_failure.is_none()
            && self.guest_verify_errors_after == 0
            && self.guest_writes_after >= self.guest_writes_at_pause
            && self.guest_reports_after > 0
    }
}

/// The decoder's target: guest RAM, rebuilt in place page by page, each
/// page hashed where it lies right after it was written.
pub(crate) struct RamTarget<'a> {
    pub(crate) ram: &'a GuestRam,
    pub(crate) pages: u64,
    pub(crate) hashes: &'a mut PageHashes,
    pub(crate) written: u64,
    /// The pages this stream may write (multifd: those it owns).
    pub(crate) route: super::multifd::Route,
    /// A page that arrived on a stream that does not own it.
    pub(crate) misrouted: Option<u64>,
}

impl PageTarget for RamTarget<'_> {
    fn page_mut(&mut self, page_index: u64) -> Option<&mut Page> {
        if !self.route.carries(page_index) {
            self.misrouted = Some(page_index);
            return None;
        }
        // SAFETY: the destination's vCPU does not exist before the resume,
        // each page is written by the one stream that owns it, and the
        // decoder holds one page reference at a time.
        (page_index < self.pages).then(|| unsafe { self.ram.page_mut(page_index) })
    }

    fn written(&mut self, page_index: u64) {
        // Hash what RAM now holds, read where it lies.
        // SAFETY: as in `page_mut`; the reference lives for this call only.
        let page = unsafe { self.ram.page_mut(page_index) };
        self.hashes.set(page_index, page);
        self.written += 1;
    }
}

pub(super) struct Receiver {
    pub(super) reader: FrameReader<BufReader<Conn>>,
    pub(super) writer: FrameWriter<BufWriter<Conn>>,
}

impl Receiver {
    fn abort(&mut self, reason: &str) {
        let _ = self.writer.send_json(Kind::Abort, &Abort { reason: reason.to_string() });
        let _ = self.writer.flush();
    }
}

/// Accepts one connection on `listener` and receives a migration. The
/// report says whether the guest was resumed; errors are in the report, so
/// the caller always gets one.
///
/// `prepared` is guest RAM (and its split) made before the migration (as a destination VMM
/// started with the guest's memory size would have it); without it the RAM
/// is mapped and pre-faulted when the source's Hello gives the size, and that
/// time counts in the migration.
pub fn run_dest(cfg: &DestConfig, listener: &TcpListener, prepared: Option<(Vm, u64)>) -> DestReport {
    let mut report = DestReport { outcome: "failed".into(), ..Default::default() };
    let stream = match listener.accept() {
        Ok((s, _)) => s,
        Err(e) => {
            report.error = Some(format!("accepting the source's connection: {e}"));
            return report;
        }
    };
    let cpu0 = thread_cpu_s();
    let setup = || -> Result<Receiver, String> {
        let io = |e: std::io::Error| format!("connection setup: {e}");
        stream.set_read_timeout(Some(cfg.io_timeout)).map_err(io)?;
        stream.set_write_timeout(Some(cfg.io_timeout)).map_err(io)?;
        // The TLS handshake verifies the source's certificate before the
        // first frame is read: nothing is written to guest RAM before it.
        let conn = match &cfg.tls {
            Some(tls) => Conn::server(tls, stream.try_clone().map_err(io)?).map_err(|e| format!("TLS handshake with the source: {e}"))?,
            None => Conn::Plain(stream.try_clone().map_err(io)?),
        };
        Ok(Receiver {
            // Small: a payload larger than the buffer is read past it, straight
            // into the frame buffer, instead of being copied through it.
            reader: FrameReader::new(BufReader::with_capacity(64 << 10, conn.handle().map_err(io)?)),
            writer: FrameWriter::new(BufWriter::new(conn)),
        })
    };
    let mut rx = match setup() {
        Ok(r) => r,
        Err(e) => {
            report.error = Some(e);
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return report;
        }
    };
    let result = receive(cfg, &mut rx, &mut report, prepared, listener, &stream);
    report.bytes_received = rx.reader.bytes + report.streams.iter().skip(1).map(|s| s.bytes_on_wire).sum::<u64>();
    let main_cpu_s = thread_cpu_s() - cpu0;
    report.cpu_s_destination += main_cpu_s; // multifd: the other streams' threads are in already
    if let Some(s0) = report.streams.first_mut() {
        s0.cpu_s = main_cpu_s;
        s0.bytes_on_wire = rx.reader.bytes;
    }
    if let Err(reason) = result {
        // A lost post-copy guest: the connection is what failed.
        if report.outcome != "aborted-by-source" && report.outcome != super::postcopy::LOST {
            rx.abort(&reason);
        }
        report.error = Some(reason);
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    report
}

fn receive(
    cfg: &DestConfig,
    rx: &mut Receiver,
    report: &mut DestReport,
    prepared: Option<(Vm, u64)>,
    listener: &TcpListener,
    tcp: &std::net::TcpStream,
) -> Result<(), String> {
    let recv = |rx: &mut Receiver, what: &str| rx.reader.recv().map_err(|e| format!("receiving {what}: {e}"));
    let f = recv(rx, "Hello")?;
    if f.kind != Kind::Hello {
        return Err(format!("expected Hello, got {:?}", f.kind));
    }
    let hello: Hello = serde_json::from_slice(&f.payload).map_err(|e| format!("Hello: {e}"))?;
    if hello.protocol != super::wire::VERSION || hello.page_size != PAGE_SIZE_BYTES {
        return Err(format!(
            "incompatible source: protocol {} page size {} (this destination speaks protocol {} with {}-byte pages)",
            hello.protocol,
            hello.page_size,
            super::wire::VERSION,
            PAGE_SIZE_BYTES
        ));
    }
    if hello.memory_bytes > cfg.max_memory_bytes {
        return Err(format!("guest of {} bytes exceeds this destination's limit of {}", hello.memory_bytes, cfg.max_memory_bytes));
    }
    let strategy: Strategy = hello.strategy.parse().map_err(|e| format!("strategy {:?}: {e}", hello.strategy))?;
    // The host CPU offered, and the guest's CPU for the vCPU at resume.
    let supported = kvm_ioctls::Kvm::new()
        .and_then(|k| k.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES))
        .map_err(|e| format!("reading KVM's CPUID: {e}"))?;
    let offer = super::cpu::CpuWire::of(&cfg.cpu, &supported).map_err(|e| format!("this destination's CPU: {e}"))?;
    let guest_cpu = match &hello.cpu {
        Some(c) if c.model != "host" => c.as_vm().ok_or_else(|| format!("the guest's CPU vendor {:?} is unknown", c.vendor))?,
        _ => memfabric_formats::cpu::VmCpu::Any,
    };
    let t = Instant::now();
    let mut vm = match prepared {
        Some((vm, split)) if vm.ram().bytes() == hello.memory_bytes && split == hello.ram_split => vm,
        Some((vm, split)) => {
            return Err(format!(
                "the source's guest has {} bytes of RAM split at {:#x}, this destination prepared {} split at {split:#x}",
                hello.memory_bytes,
                hello.ram_split,
                vm.ram().bytes()
            ))
        }
        None => Vm::with_split(hello.memory_bytes, hello.ram_split, true).map_err(|e| e.to_string())?,
    };
    super::postcopy::dest::on_hello(&hello, cfg.tls.is_some(), &vm)?;
    rx.writer
        .send_json(Kind::HelloAck, &HelloAck { prefault_ms: t.elapsed().as_secs_f64() * 1e3, cpu: Some(offer) })
        .and_then(|_| rx.writer.flush())
        .map_err(|e| format!("sending HelloAck: {e}"))?;

    // Site hooks: the guest's dedup domain, the site's shared store, the summary.
    let mut site = crate::site::hooks::DestSession::new(&cfg.site, strategy, hello.site.clone());
    site.after_ack(&mut rx.writer)?;
    let plan = hello.multifd.unwrap_or_default();
    let config = crate::site::hooks::pipeline(strategy, hello.site.as_ref());
    let mut decoder = Decoder::new(plan.stream_pipeline(config));
    let pages = vm.ram().pages();
    // Prepared RAM is all zero; from here every write updates the hashes.
    let mut hashes = PageHashes::zeroed(pages);
    // multifd: streams 1..N-1, each received into RAM on its own thread.
    let streams = super::multifd::DestStreams::start(hello.multifd, listener, tcp, &mut rx.reader, vm.ram(), config, cfg.io_timeout, report)?;
    let route = super::multifd::Route { plan, stream: 0 };
    // One buffer for every frame of the stream: pages are decoded from it in place.
    let mut buf = Vec::new();
    let switchover: Switchover = loop {
        streams.wait_for_frame(tcp, !rx.reader.get_ref().buffer().is_empty())?; // multifd: idle while other streams finish a round
        let head = rx.reader.recv_into(&mut buf).map_err(|e| format!("receiving pages: {e}"))?;
        streams.progress();
        let payload = &buf[..head.len];
        match head.kind {
            Kind::Pages => {
                let _permit = streams.permit();
                let mut target = RamTarget { ram: vm.ram(), pages, hashes: &mut hashes, written: 0, route, misrouted: None };
                site.decode_into(&mut decoder, payload, &mut target)?;
                report.pages_received += target.written;
            }
            Kind::RoundEnd => {
                let _: RoundEnd = serde_json::from_slice(payload).map_err(|e| format!("RoundEnd: {e}"))?;
                report.rounds_seen += 1;
            }
            Kind::IndexQuery => site.answer_query(payload, &mut rx.writer)?,
            Kind::ResolveRefs => site.resolve(vm.ram(), &mut hashes, &mut rx.writer)?,
            Kind::Switchover => break serde_json::from_slice(payload).map_err(|e| format!("Switchover: {e}"))?,
            // Post-copy, hybrid, or pre-copy falling back to post-copy.
            Kind::PostcopySwitch => {
                let switch = serde_json::from_slice(payload).map_err(|e| format!("PostcopySwitch: {e}"))?;
                let handover = super::postcopy::dest::Handover { vm, hashes, guest_cpu, decoder, session: site };
                return super::postcopy::dest::run(cfg, rx, report, handover, switch);
            }
            Kind::Abort => {
                let a: Abort = serde_json::from_slice(payload).unwrap_or(Abort { reason: "(unreadable)".into() });
                report.outcome = "aborted-by-source".into();
                return Err(format!("the source aborted: {}", a.reason));
            }
            k => return Err(format!("unexpected {k:?} frame during pre-copy")),
        }
    };
    // multifd: every stream's stop-and-copy is in before the check.
    report.bytes_received = rx.reader.bytes;
    streams.finish(&mut hashes, report)?;
    report.pause_ns = Some(switchover.pause_ns);
    report.guest_writes_at_pause = switchover.guest_writes;
    report.guest_checksum_at_pause = switchover.guest_checksum;
    let f = recv(rx, "vCPU state")?;
    if f.kind != Kind::VcpuState {
        return Err(format!("expected VcpuState, got {:?}", f.kind));
    }
    let state = VcpuState::from_bytes(&f.payload).map_err(|e| e.to_string())?;

    if let Some(page) = cfg.corrupt_page {
        if page >= pages {
            return Err(format!("fault injection: page {page} is outside guest RAM ({pages} pages)"));
        }
        let mut readback = [0u8; memfabric_migration::pipeline::PAGE_SIZE];
        vm.ram().read_page(page, &mut readback);
        readback[0] ^= 0x01;
        vm.ram().write_page(page, &readback);
        hashes.set(page, &readback);
        report.fault_injected = true;
    }
    // Integrity: every chunk of RAM must hash as at the source's pause.
    if let Some(theirs) = &switchover.chunk_hashes {
        let differing = compare_digests(report, &hashes, theirs)?;
        if let Some(&first) = differing.first() {
            return Err(format!(
                "integrity check failed: {} of {} chunks of {CHUNK_PAGES} pages differ from the source (first at page {}); not resuming",
                differing.len(),
                report.chunks_compared,
                first as u64 * CHUNK_PAGES
            ));
        }
    }

    vm.set_dirty_logging(false).map_err(|e| e.to_string())?;
    let m = Machine::resume_from(vm, &state, 0, &guest_cpu).map_err(|e| format!("restoring the vCPU: {e}"))?;
    let resume_ns = m.vcpu.started_at_ns();
    report.resume_ns = Some(resume_ns);
    report.outcome = "resumed".into();
    announce_resumed(cfg);
    rx.writer
        .send_json(Kind::Resumed, &Resumed { resume_ns, verify_ms: report.verify_ms })
        .and_then(|_| rx.writer.flush())
        .map_err(|e| format!("sending Resumed (the guest runs here): {e}"))?;

    watch_resumed(cfg, m, report);
    Ok(())
}

/// Compares the chunk digests of `hashes` with the source's `theirs`,
/// recording the comparison in `report`; returns the differing chunks.
pub(super) fn compare_digests(report: &mut DestReport, hashes: &PageHashes, theirs: &[u64]) -> Result<Vec<usize>, String> {
    let t = Instant::now();
    let ours = chunk_digests(&hashes.0);
    report.verify_ms = t.elapsed().as_secs_f64() * 1e3;
    report.chunks_compared = ours.len() as u64;
    if ours.len() != theirs.len() {
        return Err(format!("integrity: {} chunk hashes from the source, {} here", theirs.len(), ours.len()));
    }
    let differing: Vec<usize> = ours.iter().zip(theirs).enumerate().filter(|(_, (a, b))| a != b).map(|(i, _)| i).collect();
    report.chunks_differing = differing.len() as u64;
    report.first_differing_page = differing.first().map(|&i| i as u64 * CHUNK_PAGES);
    Ok(differing)
}

/// Tells the orchestrator that the guest runs here (with `announce_resume`).
pub(super) fn announce_resumed(cfg: &DestConfig) {
    if cfg.announce_resume {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{RESUMED_LINE}").and_then(|_| out.flush());
    }
}

/// Watches the resumed guest for `watch_after_resume`: it must carry on
/// from where it stopped. Stops it at the end.
pub(super) fn watch_resumed(cfg: &DestConfig, m: Machine, report: &mut DestReport) {
    let t = Instant::now();
    let before = m.vcpu.progress();
    while t.elapsed() < cfg.watch_after_resume && m.vcpu.failure().is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = m.vcpu.progress();
    report.watch_s = t.elapsed().as_secs_f64();
    report.guest_writes_after = after.writes;
    report.guest_reports_after = after.reports - before.reports;
    report.guest_verify_errors_after = after.verify_errors;
    report.guest_failure = m.vcpu.failure().map(|f| f.to_string());
    let _ = m.vcpu.stop();
}

