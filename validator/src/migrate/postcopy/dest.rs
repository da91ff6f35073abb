//! The destination side of post-copy: drops the pages it will receive
//! (all of RAM for pure post-copy, at `Hello`; the pending ones of a
//! hybrid, at the switch), registers guest RAM with userfaultfd, resumes
//! the guest, and then places every pending page as it arrives, pushed or
//! requested. A fault-handler thread reads the guest's (and this VMM's)
//! missing-page faults and asks the source for their pages.
//!
//! No thread that places pages ever touches guest RAM: pages are decoded
//! into a buffer, hashed there, and placed with UFFDIO_COPY (or
//! UFFDIO_ZEROPAGE), so nothing here can block on a missing page. Each
//! page is placed once; a second arrival of a page is an error, and a
//! placement that finds its page there (EEXIST) is counted.

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use memfabric_formats::cpu::VmCpu;
use memfabric_migration::pipeline::{Decoder, Page, PageTarget, PAGE_SIZE};
use memfabric_migration::record::Mechanism;
use memfabric_migration::PAGE_SIZE_BYTES;

use super::super::dest::{announce_resumed, compare_digests, watch_resumed, DestConfig, DestReport, Receiver};
use super::super::tls::Conn;
use super::super::wire::{FrameWriter, Kind};
use super::super::{Abort, Hello, PageHashes, Resumed};
use super::{encode_request, is_postcopy, DestPostcopy, LatencySummary, PostcopyComplete, PostcopyDone, PostcopySwitch, LOST};
use crate::kvm::uffd::{discard_pages, Placed, Userfault};
use crate::kvm::{monotonic_ns, DirtyBitmap, Vm};
use crate::machine::Machine;

/// At `Hello`: refuses what post-copy does not support, and for pure
/// post-copy drops all of guest RAM (before the source pauses its guest,
/// so outside the downtime).
pub(in crate::migrate) fn on_hello(hello: &Hello, tls: bool, vm: &Vm) -> Result<(), String> {
    let Some(m) = hello.mechanism else { return Ok(()) };
    if !is_postcopy(m) {
        return Err(format!("mechanism {m}: this destination receives pre-copy, post-copy or hybrid"));
    }
    if tls || hello.site.is_some() {
        return Err(format!("{m} runs over plain TCP for one guest (no TLS, no site)"));
    }
    if m == Mechanism::PostCopy {
        discard_pages(vm.ram(), 0..vm.ram().pages()).map_err(|e| format!("dropping guest RAM for post-copy: {e}"))?;
    }
    Ok(())
}

/// What the placer and the fault handler share.
#[derive(Debug)]
struct Placement {
    /// Page is in place (pages not pending start placed).
    placed: Vec<bool>,
    /// Faults waiting for their page: page → when the fault was read (ns).
    waiting: BTreeMap<u64, u64>,
    /// Fault read to page placed, ns.
    latencies_ns: Vec<u64>,
    faults: u64,
    faults_placed_before_read: u64,
    /// Why the handler stopped, if it failed.
    error: Option<String>,
}

type Writer = Arc<Mutex<FrameWriter<BufWriter<TcpStream>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The fault handler: reads missing-page faults until `stop`, asks the
/// source for each page not yet there.
fn handle_faults(uffd: &Userfault, state: &Mutex<Placement>, writer: &Writer, stop: &AtomicBool) {
    let fail = |e: String| lock(state).error = Some(e);
    while !stop.load(Ordering::SeqCst) {
        let offset = match uffd.next_fault_within(Duration::from_millis(20)) {
            Ok(Some(Some(offset))) => offset,
            Ok(_) => continue,
            Err(e) => return fail(format!("fault handler: {e}")),
        };
        let page = offset / PAGE_SIZE_BYTES;
        let now = monotonic_ns();
        {
            let mut s = lock(state);
            if s.placed.get(page as usize).copied().unwrap_or(true) {
                // Placed (and its waiter woken) before this read.
                s.faults += 1;
                s.faults_placed_before_read += 1;
                continue;
            }
            if s.waiting.contains_key(&page) {
                continue; // another access to a page already asked for
            }
            s.faults += 1;
            s.waiting.insert(page, now);
        }
        let mut w = lock(writer);
        if let Err(e) = w.send(Kind::PageRequest, &encode_request(&[page])).and_then(|_| w.flush()) {
            return fail(format!("asking the source for page {page}: {}", super::super::source::describe_io(&e)));
        }
    }
}

/// The decoder's target in post-copy: one buffer; each page is hashed
/// there and placed into guest RAM through the userfaultfd.
struct PlaceTarget<'a> {
    page: Box<Page>,
    uffd: &'a Userfault,
    state: &'a Mutex<Placement>,
    hashes: &'a mut PageHashes,
    stats: &'a mut DestPostcopy,
    error: Option<String>,
    /// Fault injection (`--fault dest-ram@PAGE`): flip a byte of this page
    /// before it is hashed and placed, as a page misdecoded here would be.
    corrupt_page: Option<u64>,
    /// Whether it was flipped.
    corrupted: bool,
}

impl PageTarget for PlaceTarget<'_> {
    fn page_mut(&mut self, page_index: u64) -> Option<&mut Page> {
        (page_index < self.hashes.0.len() as u64).then_some(&mut *self.page)
    }

    fn written(&mut self, page_index: u64) {
        if self.error.is_some() {
            return;
        }
        if lock(self.state).placed[page_index as usize] {
            self.error = Some(format!("page {page_index} arrived although it is in place (not pending, or sent twice)"));
            return;
        }
        if self.corrupt_page == Some(page_index) {
            self.page[0] ^= 0x01;
            self.corrupted = true;
        }
        // Hashed from the buffer, before the guest can touch it.
        self.hashes.set(page_index, &self.page[..]);
        let offset = page_index * PAGE_SIZE_BYTES;
        let zero = self.page.iter().all(|&b| b == 0);
        let placed = if zero { self.uffd.zero_page(offset) } else { self.uffd.copy_page(offset, &self.page[..]) };
        match placed {
            Ok(Placed::Copied) => {}
            Ok(Placed::AlreadyThere) => self.stats.pages_already_there += 1,
            Err(e) => {
                self.error = Some(format!("placing page {page_index}: {e}"));
                return;
            }
        }
        self.stats.pages_placed += 1;
        self.stats.pages_zero += zero as u64;
        let now = monotonic_ns();
        let mut s = lock(self.state);
        s.placed[page_index as usize] = true;
        if let Some(t) = s.waiting.remove(&page_index) {
            s.latencies_ns.push(now.saturating_sub(t));
        }
    }
}

/// The TCP connection under `rx` (post-copy runs over plain TCP only).
fn plain_tcp(rx: &Receiver) -> Result<TcpStream, String> {
    match rx.writer.get_ref().get_ref() {
        Conn::Plain(s) => s.try_clone().map_err(|e| format!("connection: {e}")),
        Conn::Tls(_) => Err("post-copy over TLS is not supported".into()),
    }
}

/// What the destination holds when the post-copy switch arrives.
pub(in crate::migrate) struct Handover {
    /// The VM, its RAM as pre-copy left it (hybrid) or dropped (post-copy).
    pub vm: Vm,
    /// The hash of every page as last written.
    pub hashes: PageHashes,
    /// The guest's CPU for the vCPU.
    pub guest_cpu: VmCpu,
    /// The decoder of the stream so far (its delta cache holds what
    /// round 0 sent a hybrid).
    pub decoder: Decoder,
    /// The stream's content store (dedup references resolve from it).
    pub session: crate::site::hooks::DestSession,
}

/// Receives a post-copy migration from its `PostcopySwitch` on; resumes the
/// guest and places its pending pages. An error after the resume loses the
/// guest (outcome `lost`): the vCPU is stopped here.
pub(in crate::migrate) fn run(
    cfg: &DestConfig,
    rx: &mut Receiver,
    report: &mut DestReport,
    handover: Handover,
    switch: PostcopySwitch,
) -> Result<(), String> {
    let Handover { mut vm, mut hashes, guest_cpu, mut decoder, mut session } = handover;
    report.pause_ns = Some(switch.pause_ns);
    report.guest_writes_at_pause = switch.guest_writes;
    report.guest_checksum_at_pause = switch.guest_checksum;
    let pages = vm.ram().pages();
    let recv = |rx: &mut Receiver, what: &str| rx.reader.recv().map_err(|e| format!("receiving {what}: {e}"));
    let pending = if switch.all_pending {
        DirtyBitmap::full(pages)
    } else {
        let f = recv(rx, "the pending pages")?;
        if f.kind != Kind::PendingPages || f.payload.len() as u64 != pages.div_ceil(64) * 8 {
            return Err(format!("expected PendingPages of {} bytes, got {:?} of {}", pages.div_ceil(64) * 8, f.kind, f.payload.len()));
        }
        DirtyBitmap { words: f.payload.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect() }
    };
    if pending.count() != switch.pending_pages || pending.iter().any(|p| p >= pages) {
        return Err(format!("the pending pages do not match the switch ({} pages announced)", switch.pending_pages));
    }
    let f = recv(rx, "vCPU state")?;
    if f.kind != Kind::VcpuState {
        return Err(format!("expected VcpuState, got {:?}", f.kind));
    }
    let vcpu_state = crate::kvm::VcpuState::from_bytes(&f.payload).map_err(|e| e.to_string())?;
    if !switch.all_pending {
        discard_pages(vm.ram(), pending.iter()).map_err(|e| format!("dropping the pending pages: {e}"))?;
    }
    let uffd = Arc::new(Userfault::register(vm.ram()).map_err(|e| format!("userfaultfd on guest RAM: {e}"))?);
    rx.writer.flush().map_err(|e| format!("connection: {e}"))?;
    let tcp = plain_tcp(rx)?;
    let _ = tcp.set_nodelay(true); // a request is one small frame
    let writer: Writer = Arc::new(Mutex::new(rx.writer.continue_on(BufWriter::new(tcp))));
    let mut placed = vec![true; pages as usize];
    for p in pending.iter() {
        placed[p as usize] = false;
    }
    let state = Arc::new(Mutex::new(Placement {
        placed,
        waiting: BTreeMap::new(),
        latencies_ns: Vec::new(),
        faults: 0,
        faults_placed_before_read: 0,
        error: None,
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let handler = {
        let (uffd, state, writer, stop) = (uffd.clone(), state.clone(), writer.clone(), stop.clone());
        std::thread::spawn(move || handle_faults(&uffd, &state, &writer, &stop))
    };
    let end_handler = |uffd: Arc<Userfault>| {
        stop.store(true, Ordering::SeqCst);
        let _ = handler.join();
        // Closing the userfaultfd wakes any access still waiting (it then
        // reads zeros: only on a lost guest, which is stopped).
        drop(uffd);
    };

    vm.set_dirty_logging(false).map_err(|e| e.to_string())?;
    // `Resumed` goes out before any request: the handler waits for the
    // writer, held from before the resume until `Resumed` is sent.
    let mut w = lock(&writer);
    let m = match Machine::resume_from(vm, &vcpu_state, 0, &guest_cpu) {
        Ok(m) => m,
        Err(e) => {
            drop(w);
            end_handler(uffd);
            return Err(format!("restoring the vCPU: {e}"));
        }
    };
    let resume_ns = m.vcpu.started_at_ns();
    report.resume_ns = Some(resume_ns);
    report.outcome = "resumed".into();
    announce_resumed(cfg);
    let mut stats = DestPostcopy { pending_pages: switch.pending_pages, ..Default::default() };
    let sent = w.send_json(Kind::Resumed, &Resumed { resume_ns, verify_ms: 0.0 }).and_then(|_| w.flush());
    drop(w);
    let result = sent
        .map_err(|e| format!("sending Resumed (the guest runs here): {e}"))
        .and_then(|_| {
            let placing = Placing { uffd: &uffd, state: &state, writer: &writer, m: &m, resume_ns, corrupt_page: cfg.corrupt_page };
            place_all(rx, report, &placing, (&mut decoder, &mut session), &mut hashes, &mut stats)
        });
    end_handler(uffd);
    let s = lock(&state);
    stats.faults = s.faults;
    stats.faults_placed_before_read = s.faults_placed_before_read;
    stats.fault_latency_us = LatencySummary::of_ns(&s.latencies_ns);
    stats.fault_wait_ms = s.latencies_ns.iter().sum::<u64>() as f64 / 1e6;
    drop(s);
    report.postcopy = Some(stats);
    report.pages_received += report.postcopy.as_ref().map_or(0, |p| p.pages_placed);
    if let Err(e) = result {
        report.outcome = LOST.into();
        report.guest_failure = m.vcpu.failure().map(|f| f.to_string());
        let _ = m.vcpu.stop();
        return Err(format!("post-copy failed after the guest resumed here, and the guest is lost: {e}"));
    }
    watch_resumed(cfg, m, report);
    Ok(())
}

/// What placing pages works with.
struct Placing<'a> {
    uffd: &'a Userfault,
    state: &'a Mutex<Placement>,
    writer: &'a Writer,
    /// The resumed guest.
    m: &'a Machine,
    resume_ns: u64,
    corrupt_page: Option<u64>,
}

/// Places pages until the source's `PostcopyDone`, checks that every
/// pending page is in place and that the digests match, and confirms.
fn place_all(
    rx: &mut Receiver,
    report: &mut DestReport,
    p: &Placing<'_>,
    (decoder, session): (&mut Decoder, &mut crate::site::hooks::DestSession),
    hashes: &mut PageHashes,
    stats: &mut DestPostcopy,
) -> Result<(), String> {
    let Placing { uffd, state, writer, m, resume_ns, corrupt_page } = *p;
    let mut buf = Vec::new();
    let done: PostcopyDone = loop {
        if let Some(e) = lock(state).error.clone() {
            return Err(e);
        }
        let head = rx.reader.recv_into(&mut buf).map_err(|e| format!("receiving pages: {e}"))?;
        let payload = &buf[..head.len];
        match head.kind {
            Kind::PostcopyPages => {
                let mut target = PlaceTarget {
                    page: Box::new([0u8; PAGE_SIZE]),
                    uffd,
                    state,
                    hashes: &mut *hashes,
                    stats: &mut *stats,
                    error: None,
                    corrupt_page,
                    corrupted: false,
                };
                // Zero, dedup (from the stream's store), delta (from the
                // decoder's cache of what was sent) and compression all
                // rebuild the page in the buffer.
                let missing = session.decode_into(decoder, payload, &mut target)?;
                report.fault_injected |= target.corrupted;
                if let Some(e) = target.error {
                    return Err(e);
                }
                if let Some(m) = missing.first() {
                    return Err(format!("page {} refers to content this destination does not hold", m.page_index));
                }
                if stats.pages_placed == stats.pending_pages && stats.duration_s == 0.0 {
                    let now = monotonic_ns();
                    stats.duration_s = now.saturating_sub(resume_ns) as f64 * 1e-9;
                    // (Before the guest's first report here the count is 0: the
                    // count at the pause stands.)
                    stats.guest_writes_at_end = m.vcpu.progress().writes.max(report.guest_writes_at_pause);
                    let during = stats.guest_writes_at_end.saturating_sub(report.guest_writes_at_pause) as f64;
                    stats.guest_write_rate = if stats.duration_s > 0.0 { during / stats.duration_s } else { 0.0 };
                }
            }
            Kind::PostcopyDone => break serde_json::from_slice(payload).map_err(|e| format!("PostcopyDone: {e}"))?,
            Kind::Abort => {
                let a: Abort = serde_json::from_slice(payload).unwrap_or(Abort { reason: "(unreadable)".into() });
                return Err(format!("the source aborted: {}", a.reason));
            }
            k => return Err(format!("unexpected {k:?} frame during post-copy")),
        }
    };
    if stats.pages_placed != stats.pending_pages {
        return Err(format!("the source finished with {} of {} pending pages placed", stats.pages_placed, stats.pending_pages));
    }
    // Integrity: every page placed (and every page of round 0) hashes as
    // at the source's pause.
    let mut integrity_held = None;
    if let Some(theirs) = &done.chunk_hashes {
        integrity_held = Some(compare_digests(report, hashes, theirs)?.is_empty());
    }
    let complete = PostcopyComplete { pages_placed: stats.pages_placed, faults: lock(state).faults, integrity_held };
    let mut w = lock(writer);
    w.send_json(Kind::PostcopyComplete, &complete).and_then(|_| w.flush()).map_err(|e| format!("sending PostcopyComplete: {e}"))?;
    Ok(())
}
