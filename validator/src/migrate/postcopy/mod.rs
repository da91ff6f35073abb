//! Post-copy and hybrid migration in the validator (`migrate --mechanism
//! post-copy|hybrid`, and pre-copy's `--on-non-convergence post-copy`
//! fallback): the guest resumes at the destination before its memory has
//! arrived, and the rest comes on demand and by a background push, as the
//! simulator's post-copy models it (docs/model.md §7).
//!
//! | module | owns |
//! |---|---|
//! | this one | the post-copy messages, the refusals of what post-copy does not support, the fault-latency summary |
//! | [`source`] | the source side: the switch, the push with demand requests first, the end |
//! | [`dest`] | the destination side: stale pages dropped, userfaultfd, the fault handler, placing pages, the end |
//!
//! ```text
//! source                                         destination
//!   | -- Hello {mechanism} ----------------------> |  pure post-copy: drop all RAM (MADV_DONTNEED)
//!   | <----------------------------- HelloAck ---- |
//!   | (hybrid: round 0, every page, as pre-copy;  |
//!   |  the fallback: pre-copy's rounds)            |
//!   |  pause vCPU, take the dirty log              |
//!   | -- PostcopySwitch {pause, pending count} --> |
//!   | -- PendingPages (hybrid: bitmap) ----------> |  drop the pending pages
//!   | -- VcpuState ------------------------------> |  register RAM with userfaultfd (missing),
//!   |                                              |  restore the vCPU, KVM_RUN
//!   | <------------------------------ Resumed ---- |
//!   | -- PostcopyPages (push, 64 pages) ---------> |  decode into a buffer, hash it, UFFDIO_COPY
//!   | <------------------- PageRequest [page] ---- |  (or ZEROPAGE); the fault handler thread
//!   | -- PostcopyPages (requested pages first) --> |  reads faults and sends requests
//!   | -- PostcopyDone {chunk hashes} ------------> |  every pending page placed? digests equal?
//!   | <--------------- PostcopyComplete {...} ---- |
//!   |  source VM discarded (never resumed)         |  guest runs on
//! ```
//!
//! From the moment the destination resumes, neither side has a whole copy
//! of the guest: a cut link, or either VMM dying, loses it (outcome
//! `lost`, as the simulator's). The source never resumes after it saw
//! `Resumed`; between sending the vCPU state and `Resumed` it asks the
//! orchestrator ([`super::arbiter`]) as pre-copy does, and resumes only if
//! the destination never did.
//!
//! Versioning: these frame kinds (32–37) are new in protocol version 1; a
//! destination that does not know them refuses the first as an unknown
//! kind, before any page moves.

pub mod dest;
pub mod source;

use memfabric_migration::record::Mechanism;
use serde::{Deserialize, Serialize};

use super::orchestrate::MigrateArgs;

/// The outcome of a post-copy migration whose link or VMM failed after the
/// destination resumed the guest (the simulator's `lost`).
pub const LOST: &str = "lost";

/// Pages per pushed `PostcopyPages` frame: small, so that a requested page
/// waits behind little push data of its own stream.
pub const PUSH_BATCH_PAGES: usize = 64;

/// The push sends no more while this many bytes are queued in the source's
/// socket (sent, not yet acknowledged): a requested page queues behind at
/// most this much (8 ms at 1 Gbit/s, 84 ms at 100 Mbit/s). It must exceed
/// the link's bandwidth-delay product for the push to fill the link (625 kB
/// at 100 Mbit/s and 50 ms RTT). QEMU's answer to the same problem is a
/// separate "preempt" channel for requested pages.
pub const PUSH_QUEUE_BYTES_MAX: u64 = 1 << 20;

/// The shortest post-copy whose guest write rate is reported: the guest
/// publishes its write count every 20 ms (`GuestWorkload`'s
/// `report_interval_us`), so a rate needs about ten reports.
pub const SPEED_MIN_DURATION_S: f64 = 0.2;

/// Source → destination: the guest is paused for post-copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostcopySwitch {
    /// When the source vCPU stopped (CLOCK_MONOTONIC ns).
    pub pause_ns: u64,
    /// The guest's write count at the pause.
    pub guest_writes: u64,
    /// The guest's hash chain at the pause.
    pub guest_checksum: u64,
    /// Pages still to come.
    pub pending_pages: u64,
    /// Every page is pending (pure post-copy): no `PendingPages` frame follows.
    pub all_pending: bool,
}

/// Source → destination: every pending page has been sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostcopyDone {
    /// [`super::chunk_digests`] of guest RAM at the pause (None with
    /// `--no-integrity-check`).
    pub chunk_hashes: Option<Vec<u64>>,
    /// Pages sent by the push.
    pub pages_pushed: u64,
    /// Pages sent because the destination asked.
    pub pages_requested: u64,
}

/// Destination → source: every pending page is in place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostcopyComplete {
    /// Pages placed.
    pub pages_placed: u64,
    /// Demand faults.
    pub faults: u64,
    /// Whether every chunk digest matched (None: not compared).
    pub integrity_held: Option<bool>,
}

/// What the source measured in post-copy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourcePostcopy {
    /// Pages pending at the switch.
    pub pending_pages: u64,
    /// Pages sent by the push.
    pub pages_pushed: u64,
    /// Pages sent because the destination asked, ahead of the push.
    pub pages_requested: u64,
    /// Requests received (one page each).
    pub requests: u64,
    /// Requests for pages already sent (in flight when the guest faulted).
    pub requests_already_sent: u64,
    /// `Resumed` received: the push starts (CLOCK_MONOTONIC ns).
    pub push_start_ns: u64,
    /// `PostcopyComplete` received (CLOCK_MONOTONIC ns).
    pub push_end_ns: u64,
}

/// What the destination measured in post-copy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DestPostcopy {
    /// Pages pending at the switch.
    pub pending_pages: u64,
    /// Pages placed with UFFDIO_COPY or UFFDIO_ZEROPAGE.
    pub pages_placed: u64,
    /// Of them, zero pages (UFFDIO_ZEROPAGE).
    pub pages_zero: u64,
    /// Placements that found the page already there (EEXIST; 0 when every
    /// page arrives once).
    pub pages_already_there: u64,
    /// Missing-page faults read from the userfaultfd (one per page: a
    /// second fault on a page already requested is not counted).
    pub faults: u64,
    /// Faults whose page had been placed by the time the handler read them.
    pub faults_placed_before_read: u64,
    /// Fault latency, from the fault read to its page placed, µs.
    pub fault_latency_us: LatencySummary,
    /// Sum of the fault latencies, ms (the guest's stall on faults).
    pub fault_wait_ms: f64,
    /// Destination resume to the last pending page placed, s.
    pub duration_s: f64,
    /// The guest's writes when the last pending page was placed.
    pub guest_writes_at_end: u64,
    /// The guest's page writes per second from the resume to the last page
    /// placed.
    pub guest_write_rate: f64,
}

/// Median, 99th percentile and maximum of a set of latencies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Median.
    pub median: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

impl LatencySummary {
    /// The summary of `ns` (nanoseconds), in µs; zeros when empty.
    pub fn of_ns(ns: &[u64]) -> LatencySummary {
        if ns.is_empty() {
            return LatencySummary::default();
        }
        let mut v = ns.to_vec();
        v.sort_unstable();
        let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1] as f64 / 1e3;
        LatencySummary { median: rank(0.5), p99: rank(0.99), max: *v.last().expect("not empty") as f64 / 1e3 }
    }
}

/// `PageRequest` payload: little-endian u64 page indices.
pub fn encode_request(pages: &[u64]) -> Vec<u8> {
    pages.iter().flat_map(|p| p.to_le_bytes()).collect()
}

/// Reads a `PageRequest` payload.
pub fn decode_request(payload: &[u8]) -> Result<Vec<u64>, String> {
    if payload.len() % 8 != 0 {
        return Err(format!("PageRequest of {} bytes: expected a multiple of 8 (u64 page indices)", payload.len()));
    }
    Ok(payload.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
}

/// Whether `m` resumes the guest at the destination before its memory
/// has arrived.
pub fn is_postcopy(m: Mechanism) -> bool {
    matches!(m, Mechanism::PostCopy | Mechanism::Hybrid)
}

/// `--mechanism` with options post-copy does not support: refused before
/// anything starts (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum PostcopyInputError {
    /// Cold migration is the simulator's, not the validator's.
    #[error("--mechanism stop-and-copy: the validator migrates with pre-copy, post-copy or hybrid")]
    StopAndCopy,
    /// The TLS channel is bound to one thread.
    #[error("--tls with --mechanism {0}: post-copy's fault handler and push run on their own threads over plain TCP; drop --tls")]
    Tls(Mechanism),
    /// Auto-converge throttles pre-copy rounds, which post-copy has none of.
    #[error("--auto-converge with --mechanism {0}: there are no pre-copy rounds after round 0 for a throttle to act on")]
    AutoConverge(Mechanism),
    /// A gang migrates with pre-copy.
    #[error("--guests {0} with --mechanism {1}: a gang migrates with pre-copy only")]
    Gang(u32, Mechanism),
    /// Post-copy runs on one connection.
    #[error("--streams {0} with --mechanism {1}: post-copy's requests and push run on one connection; use --streams 1")]
    Streams(u32, Mechanism),
}

/// Checks the options of a `--mechanism post-copy|hybrid` migration.
pub fn check_args(args: &MigrateArgs) -> Result<(), PostcopyInputError> {
    let m = args.guest.mechanism;
    if m == Mechanism::StopAndCopy {
        return Err(PostcopyInputError::StopAndCopy);
    }
    let fallback = args.guest.on_non_convergence == memfabric_migration::precopy::NonConvergence::PostCopy;
    if !is_postcopy(m) && !fallback {
        return Ok(());
    }
    // What a post-copy phase needs, however it is reached.
    let m = if fallback && !is_postcopy(m) { Mechanism::PostCopy } else { m };
    if args.tls.is_some() {
        return Err(PostcopyInputError::Tls(m));
    }
    if args.gang.is_gang() {
        return Err(PostcopyInputError::Gang(args.gang.guests, m));
    }
    if args.guest.multifd.streams > 1 {
        return Err(PostcopyInputError::Streams(args.guest.multifd.streams, m));
    }
    if fallback && !is_postcopy(args.guest.mechanism) {
        return Ok(()); // auto-converge may run in pre-copy's rounds
    }
    if args.guest.auto_converge {
        return Err(PostcopyInputError::AutoConverge(m));
    }
    Ok(())
}

/// The post-copy lines of `migrate`'s summary on stdout (nothing for pre-copy).
pub fn summary_lines(o: &super::orchestrate::MigrateOutcome) -> Vec<String> {
    let Some(d) = o.destination.as_ref().and_then(|d| d.postcopy.as_ref()) else { return Vec::new() };
    let l = &d.fault_latency_us;
    let mut lines = vec![format!(
        "post-copy: {} pages pending, {} placed ({} zero, {} already there) in {:.3} s after the resume; {} demand faults, latency median {:.0} µs, p99 {:.0} µs, max {:.0} µs, {:.1} ms stalled",
        d.pending_pages, d.pages_placed, d.pages_zero, d.pages_already_there, d.duration_s, d.faults, l.median, l.p99, l.max, d.fault_wait_ms
    )];
    if let Some(speed) = crate::results::postcopy_guest_speed(o) {
        lines.push(format!(
            "guest during post-copy: {:.0} page writes/s against {:.0} before the pause (speed {:.2})",
            d.guest_write_rate,
            o.source.guest_write_rate_before.unwrap_or(0.0),
            speed
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_summary_by_nearest_rank() {
        assert_eq!(LatencySummary::of_ns(&[]), LatencySummary::default());
        let ns: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        let s = LatencySummary::of_ns(&ns);
        assert_eq!((s.median, s.p99, s.max), (50.0, 99.0, 100.0));
        let s = LatencySummary::of_ns(&[7000, 1000, 3000]);
        assert_eq!((s.median, s.p99, s.max), (3.0, 7.0, 7.0));
    }

    #[test]
    fn requests_round_trip_and_bad_lengths_are_refused() {
        let pages = [0u64, 5, u64::MAX, 262_143];
        assert_eq!(decode_request(&encode_request(&pages)).unwrap(), pages);
        assert!(decode_request(&[0u8; 9]).unwrap_err().contains("multiple of 8"));
    }
}
