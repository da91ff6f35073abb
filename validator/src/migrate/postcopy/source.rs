//! The source side of post-copy: (hybrid: round 0 as pre-copy,) the pause,
//! the switch, then every pending page, pages the destination asks for
//! ahead of the push. The guest is never resumed here once the
//! destination confirmed its resume.

use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use memfabric_migration::record::Mechanism;

use super::super::source::{fail, unacked_bytes, Failed, Migration, RoundReport};
use super::super::wire::{FrameReader, Kind, FLAG_GUEST_PAUSED};
use super::super::{chunk_digests, Resumed};
use super::{decode_request, PostcopyComplete, PostcopyDone, PostcopySwitch, SourcePostcopy, LOST, PUSH_BATCH_PAGES, PUSH_QUEUE_BYTES_MAX};
use crate::kvm::{monotonic_ns, DirtyBitmap};

/// What the thread reading the destination's frames hands on.
enum FromDest {
    /// Pages the guest faulted on.
    Request(Vec<u64>),
    /// Every pending page is placed.
    Complete(PostcopyComplete),
    /// The connection failed or the destination gave up.
    Failed(String),
}

/// Reads frames from the destination until `PostcopyComplete` or a
/// failure; returns the bytes read in all (the reader's count).
fn read_destination(mut reader: FrameReader<TcpStream>, tx: mpsc::Sender<FromDest>) -> u64 {
    loop {
        let msg = match reader.recv() {
            Ok(f) => match f.kind {
                Kind::PageRequest => match decode_request(&f.payload) {
                    Ok(pages) => FromDest::Request(pages),
                    Err(e) => FromDest::Failed(e),
                },
                Kind::PostcopyComplete => match serde_json::from_slice(&f.payload) {
                    Ok(c) => FromDest::Complete(c),
                    Err(e) => FromDest::Failed(format!("PostcopyComplete: {e}")),
                },
                Kind::Abort => {
                    let a: super::super::Abort = serde_json::from_slice(&f.payload).unwrap_or(super::super::Abort { reason: "(unreadable)".into() });
                    FromDest::Failed(format!("the destination aborted: {}", a.reason))
                }
                k => FromDest::Failed(format!("unexpected {k:?} frame from the destination during post-copy")),
            },
            Err(e) => FromDest::Failed(format!("receiving from the destination during post-copy: {e}")),
        };
        let last = !matches!(msg, FromDest::Request(_));
        if tx.send(msg).is_err() || last {
            return reader.bytes;
        }
    }
}

/// The pending pages not sent yet, in push order.
struct Pending {
    order: Vec<u64>,
    unsent: Vec<bool>,
    next: usize,
}

impl Pending {
    fn new(bitmap: &DirtyBitmap, pages: u64) -> Pending {
        let order: Vec<u64> = bitmap.iter().collect();
        let mut unsent = vec![false; pages as usize];
        for &p in &order {
            unsent[p as usize] = true;
        }
        Pending { order, unsent, next: 0 }
    }

    /// Takes page `p` out if it is still unsent.
    fn take(&mut self, p: u64) -> bool {
        self.unsent.get_mut(p as usize).map(|u| std::mem::replace(u, false)).unwrap_or(false)
    }

    /// The next up to `n` unsent pages in push order.
    fn next_batch(&mut self, n: usize) -> Vec<u64> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n && self.next < self.order.len() {
            let p = self.order[self.next];
            self.next += 1;
            if self.take(p) {
                out.push(p);
            }
        }
        out
    }

    fn done(&self) -> bool {
        self.next >= self.order.len()
    }
}

/// Runs the migration from after the `HelloAck` for post-copy or hybrid.
pub(in crate::migrate) fn run(mig: &mut Migration<'_>) -> Result<(), Failed> {
    if mig.cfg.mechanism == Mechanism::Hybrid {
        // Round 0, the full copy, exactly as pre-copy's; then the switch,
        // whatever the stop rule would say (the simulator's hybrid).
        mig.m.vm.set_dirty_logging(true).map_err(|e| fail(e.to_string()))?;
        let (_, _, _, _, dirty) = mig.precopy_round(0, &DirtyBitmap::full(mig.m.ram().pages()))?;
        return switch_and_push(mig, 1, Some(dirty));
    }
    switch_and_push(mig, 0, None)
}

/// Pauses the guest and switches to post-copy after `round` pre-copy
/// rounds: `dirty` is what they left to send (dirty logging on), None for
/// pure post-copy (every page pending). Then the push.
pub(in crate::migrate) fn switch_and_push(mig: &mut Migration<'_>, round: u32, mut pending: Option<DirtyBitmap>) -> Result<(), Failed> {
    let total_pages = mig.m.ram().pages();

    // The switch: pause, the pending set, the vCPU state.
    let paused = mig.m.vcpu.pause().map_err(|e| fail(format!("pausing the guest: {e}")))?;
    mig.paused = true;
    mig.writer.set_flags(FLAG_GUEST_PAUSED);
    mig.report.pause_ns = Some(paused.at_monotonic_ns);
    mig.report.guest_at_pause = Some(paused.progress);
    let bytes0 = mig.writer.bytes;
    if let Some(p) = &mut pending {
        p.merge(&mig.m.vm.take_dirty_log().map_err(|e| fail(e.to_string()))?);
    }
    let all_pending = pending.is_none();
    let pending = pending.unwrap_or_else(|| DirtyBitmap::full(total_pages));
    let switch = PostcopySwitch {
        pause_ns: paused.at_monotonic_ns,
        guest_writes: paused.progress.writes,
        guest_checksum: paused.progress.checksum,
        pending_pages: pending.count(),
        all_pending,
    };
    mig.control(Kind::PostcopySwitch, &switch)?;
    if !all_pending {
        let words: Vec<u8> = pending.words.iter().flat_map(|w| w.to_le_bytes()).collect();
        mig.report.bytes_control += mig.writer.send(Kind::PendingPages, &words)?;
    }
    mig.report.bytes_control += mig.writer.send(Kind::VcpuState, &paused.state.to_bytes())?;
    mig.writer.flush()?;
    mig.report.rounds.push(RoundReport {
        round,
        phase: "postcopy-switch".into(),
        start_ns: paused.at_monotonic_ns,
        end_ns: monotonic_ns(),
        pages: 0,
        bytes_on_wire: mig.writer.bytes - bytes0,
        dirty_pages: 0,
        complete: true,
        throttle_pct: 0,
        throttled_ms: 0.0,
        guest_writes: 0,
    });
    let mut stats = SourcePostcopy { pending_pages: switch.pending_pages, ..Default::default() };
    // From here the destination may run the guest: an Abort says it did
    // not; anything else leaves it unknown (the orchestrator decides).
    let resumed: Resumed = mig.expect(Kind::Resumed).map_err(|f| Failed { handed_over: !f.destination_aborted, ..f })?;
    mig.report.resume_ns = Some(resumed.resume_ns);
    stats.push_start_ns = monotonic_ns();

    // The guest runs at the destination: from now on a failure loses it.
    // A requested page is a small frame behind push data in flight: no
    // Nagle delay for it (each frame is flushed whole anyway).
    let _ = mig.tcp.set_nodelay(true);
    let (tx, rx) = mpsc::channel();
    let reader = mig.tcp.try_clone().and_then(|t| t.set_read_timeout(None).map(|_| t));
    let reader = match reader {
        Ok(t) => mig.reader.continue_on(t),
        Err(e) => return Err(lost(mig, &mut stats, format!("a reader for the destination's requests: {e}"))),
    };
    let reader = std::thread::spawn(move || read_destination(reader, tx));
    let result = push(mig, &pending, total_pages, &rx, &mut stats);
    // The connection's use is over either way; this also ends the reader.
    let _ = mig.tcp.shutdown(Shutdown::Both);
    if let Ok(bytes) = reader.join() {
        mig.reader.bytes = bytes;
    }
    match result {
        Ok(bytes) => {
            stats.push_end_ns = monotonic_ns();
            push_row(mig, &stats, round, bytes, true);
            mig.report.postcopy = Some(stats);
            Ok(())
        }
        Err((reason, bytes)) => {
            push_row(mig, &stats, round, bytes, false);
            Err(lost(mig, &mut stats, reason))
        }
    }
}

/// The `postcopy-push` row.
fn push_row(mig: &mut Migration<'_>, stats: &SourcePostcopy, round: u32, bytes: u64, complete: bool) {
    mig.report.rounds.push(RoundReport {
        round: round + 1,
        phase: "postcopy-push".into(),
        start_ns: stats.push_start_ns,
        end_ns: monotonic_ns(),
        pages: stats.pages_pushed + stats.pages_requested,
        bytes_on_wire: bytes,
        dirty_pages: 0,
        complete,
        throttle_pct: 0,
        throttled_ms: 0.0,
        guest_writes: 0,
    });
}

/// The guest ran at the destination and the migration failed: it is lost.
fn lost(mig: &mut Migration<'_>, stats: &mut SourcePostcopy, reason: String) -> Failed {
    stats.push_end_ns = monotonic_ns();
    mig.report.postcopy = Some(stats.clone());
    mig.report.outcome = LOST.into();
    Failed { reason: format!("post-copy failed after the destination resumed the guest, which is lost: {reason}"), handed_over: true, destination_aborted: false }
}

/// Sends every pending page, requested ones first, then `PostcopyDone`,
/// and waits for `PostcopyComplete`. Returns the bytes of page frames, or
/// why it failed with the bytes sent until then.
fn push(
    mig: &mut Migration<'_>,
    pending: &DirtyBitmap,
    total_pages: u64,
    rx: &Receiver<FromDest>,
    stats: &mut SourcePostcopy,
) -> Result<u64, (String, u64)> {
    let mut todo = Pending::new(pending, total_pages);
    let mut bytes = 0u64;
    let timeout = mig.cfg.io_timeout;
    // When the send queue last shrank or was short (a link that moves
    // nothing for the I/O timeout is dead).
    let mut progress_at = (Instant::now(), u64::MAX);
    let mut first: Option<FromDest> = None;
    loop {
        // Requests first.
        let mut requested = Vec::new();
        loop {
            let msg = match first.take() {
                Some(m) => m,
                None => match rx.try_recv() {
                    Ok(m) => m,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return Err(("the destination's reader ended".into(), bytes)),
                },
            };
            match msg {
                FromDest::Request(pages) => {
                    for p in pages {
                        stats.requests += 1;
                        if todo.take(p) {
                            requested.push(p);
                        } else {
                            stats.requests_already_sent += 1;
                        }
                    }
                }
                FromDest::Complete(_) => return Err(("PostcopyComplete before every pending page was sent".into(), bytes)),
                FromDest::Failed(e) => return Err((e, bytes)),
            }
        }
        if !requested.is_empty() {
            let (n, b) = send(mig, &requested).map_err(|e| (e, bytes))?;
            stats.pages_requested += n;
            bytes += b;
            continue;
        }
        if todo.done() {
            break;
        }
        let queued = unacked_bytes(&mig.tcp).map_err(|e| (format!("reading the send queue: {e}"), bytes))?;
        if queued >= PUSH_QUEUE_BYTES_MAX {
            if queued < progress_at.1 {
                progress_at = (Instant::now(), queued);
            } else if progress_at.0.elapsed() > timeout {
                return Err((format!("the link moved nothing for {timeout:?} ({queued} bytes queued)"), bytes));
            }
            match rx.recv_timeout(Duration::from_millis(1)) {
                Ok(m) => first = Some(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(("the destination's reader ended".into(), bytes)),
            }
            continue;
        }
        progress_at = (Instant::now(), u64::MAX);
        let batch = todo.next_batch(PUSH_BATCH_PAGES);
        if !batch.is_empty() {
            let (n, b) = send(mig, &batch).map_err(|e| (e, bytes))?;
            stats.pages_pushed += n;
            bytes += b;
        }
    }
    let done = PostcopyDone {
        chunk_hashes: mig.sent.as_ref().map(|h| chunk_digests(&h.0)),
        pages_pushed: stats.pages_pushed,
        pages_requested: stats.pages_requested,
    };
    mig.control(Kind::PostcopyDone, &done).and_then(|_| mig.writer.flush().map_err(Failed::from)).map_err(|f| (f.reason, bytes))?;
    loop {
        match rx.recv_timeout(timeout) {
            Ok(FromDest::Request(pages)) => {
                // Faults raised while their pages were in flight.
                stats.requests += pages.len() as u64;
                stats.requests_already_sent += pages.len() as u64;
            }
            Ok(FromDest::Complete(c)) => {
                if c.pages_placed != stats.pending_pages {
                    return Err((format!("the destination placed {} of {} pending pages", c.pages_placed, stats.pending_pages), bytes));
                }
                if c.integrity_held == Some(false) {
                    mig.report.error = Some("the destination's pages differ from the source's at the pause".into());
                }
                return Ok(bytes);
            }
            Ok(FromDest::Failed(e)) => return Err((e, bytes)),
            Err(RecvTimeoutError::Timeout) => return Err((format!("no PostcopyComplete within {timeout:?}"), bytes)),
            Err(RecvTimeoutError::Disconnected) => return Err(("the destination's reader ended".into(), bytes)),
        }
    }
}

/// Sends `pages` as one `PostcopyPages` frame and flushes it.
fn send(mig: &mut Migration<'_>, pages: &[u64]) -> Result<(u64, u64), String> {
    let r = mig.send_pages_as(Kind::PostcopyPages, pages.iter().copied()).map_err(|f| f.reason)?;
    mig.writer.flush().map_err(|e| format!("connection to the destination: {}", super::super::source::describe_io(&e)))?;
    Ok(r)
}
