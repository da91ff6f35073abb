//! The forwarding loop: one thread per direction reads IP packets from the
//! source site's TUN device, runs each through the direction's
//! [`DirectionModel`], keeps accepted packets in a FIFO delay line, and writes
//! each to the far site's TUN device at its delivery time.
//!
//! Timing: the thread sleeps in `ppoll` on the source fd (so a new packet
//! wakes it) with a nanosecond timeout and a 1 ns timer slack. Timed wake-ups
//! come late by a machine-dependent amount (50–150 µs in this nested KVM guest),
//! so the thread learns it: it keeps a moving average of how late its timed
//! wake-ups were ([`WakeEstimate`]) and aims that much plus [`SPIN_NS`] before
//! the deadline, then polls without sleeping for what is left. Spinning a fixed
//! 100 µs window instead kept lateness as low but cost 64 % of a core per
//! direction at 100 Mbit/s (a deadline every 120 µs).
//!
//! Arrival times are taken when a packet is read, so time a packet spends in
//! the kernel's TUN ring while this thread is busy counts as if it had arrived
//! later; see `docs/wan.md` on CPU contention.

use super::model::{DirectionModel, Verdict};
use super::sys;
use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Nice value of the forwarding threads. On a busy machine the emulator should
/// get the CPU before the programs using the link: then a CPU shortage slows
/// the senders instead of letting packets pile up unseen in the kernel's TUN
/// ring (measured on 2 cores at 1 Gbit/s, 10 ms: with nice 0 the ring overflowed
/// during slow start, with -10 it did not).
pub const FORWARDER_NICE: i32 = -10;

/// How long before a deadline, beyond the learned wake-up lateness, a timed
/// wait should end; the thread spins for the rest.
pub const SPIN_NS: u64 = 10_000;

/// The first guess of how late a timed wake-up comes, before any is measured.
const WAKE_LATE_INITIAL_NS: u64 = 50_000;

/// The learned lateness is never taken above this (a descheduled thread is not
/// a timer property).
const WAKE_LATE_MAX_NS: u64 = 300_000;

/// A moving average (weight 1/8) of how late timed wake-ups come.
#[derive(Debug, Clone, Copy)]
pub struct WakeEstimate {
    late_ns: u64,
}

impl WakeEstimate {
    /// The starting estimate.
    pub fn new() -> WakeEstimate {
        WakeEstimate { late_ns: WAKE_LATE_INITIAL_NS }
    }

    /// How late a timed wake-up is expected to be.
    pub fn late_ns(self) -> u64 {
        self.late_ns
    }

    /// Records a timed wake-up that was `late_ns` after its target.
    pub fn record(&mut self, late_ns: u64) {
        let sample = late_ns.min(WAKE_LATE_MAX_NS);
        self.late_ns = (self.late_ns * 7 + sample) / 8;
    }
}

impl Default for WakeEstimate {
    fn default() -> Self {
        WakeEstimate::new()
    }
}

/// The longest single sleep, so that a stop request is seen within this time.
pub const IDLE_WAIT_NS: u64 = 20_000_000;

/// How many packets are read in a row before due packets are written.
const READ_BATCH: usize = 64;

/// The counters of one direction, updated by its thread.
#[derive(Debug, Default)]
pub struct Counters {
    /// Packets written to the far side.
    pub packets_forwarded: AtomicU64,
    /// Bytes (IP packets) written to the far side.
    pub bytes_forwarded: AtomicU64,
    /// Packets dropped by the drop-tail queue.
    pub packets_dropped_queue: AtomicU64,
    /// Packets dropped by the random loss draw.
    pub packets_dropped_loss: AtomicU64,
    /// Largest queue occupancy seen, in bytes.
    pub queue_bytes_max: AtomicU64,
    /// Packets the far side's TUN device refused.
    pub write_errors: AtomicU64,
    /// The current estimate of timed wake-up lateness, in ns.
    pub wake_late_ns: AtomicU64,
    /// Largest delay between a packet's delivery time and its actual write.
    pub late_ns_max: AtomicU64,
    /// Sum of those delays over all forwarded packets.
    pub late_ns_sum: AtomicU64,
}

/// One direction's thread state.
pub struct Forwarder {
    /// The model deciding each packet's fate.
    pub model: DirectionModel,
    /// TUN fd packets are read from.
    pub from: RawFd,
    /// TUN fd packets are written to.
    pub to: RawFd,
    /// The buffer size for one packet (the MTU).
    pub mtu_bytes: usize,
    /// Where the counters go.
    pub counters: Arc<Counters>,
    /// Set to make the thread return.
    pub stop: Arc<AtomicBool>,
    /// Time zero of the model's clock.
    pub epoch: Instant,
}

impl Forwarder {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Forwards until `stop` is set. Returns an error only if reading the
    /// source fd fails for a reason other than "nothing to read".
    pub fn run(mut self) -> std::io::Result<()> {
        sys::set_fine_timer_slack();
        // Best effort: without it the emulator still runs, only less precisely.
        let _ = sys::set_thread_nice(FORWARDER_NICE);
        let mut line: VecDeque<(u64, Vec<u8>, usize)> = VecDeque::new();
        let mut pool: Vec<Vec<u8>> = Vec::new();
        let c = Arc::clone(&self.counters);
        let mut wake = WakeEstimate::new();
        while !self.stop.load(Ordering::Relaxed) {
            let mut read_any = false;
            for _ in 0..READ_BATCH {
                let mut buf = pool.pop().unwrap_or_else(|| vec![0u8; self.mtu_bytes]);
                match sys::read_packet(self.from, &mut buf)? {
                    Some(n) if n > 0 => {
                        read_any = true;
                        let now = self.now_ns();
                        match self.model.offer(now, n as u32) {
                            Verdict::Deliver { at_ns, queue_bytes } => {
                                c.queue_bytes_max.fetch_max(queue_bytes, Ordering::Relaxed);
                                line.push_back((at_ns, buf, n));
                            }
                            Verdict::DropQueue => {
                                c.packets_dropped_queue.fetch_add(1, Ordering::Relaxed);
                                pool.push(buf);
                            }
                            Verdict::DropLoss => {
                                c.packets_dropped_loss.fetch_add(1, Ordering::Relaxed);
                                pool.push(buf);
                            }
                        }
                    }
                    _ => {
                        pool.push(buf);
                        break;
                    }
                }
            }
            let now = self.now_ns();
            while line.front().is_some_and(|(at, _, _)| *at <= now) {
                let (at, buf, n) = line.pop_front().expect("front exists");
                match sys::write_packet(self.to, &buf[..n]) {
                    Ok(()) => {
                        c.packets_forwarded.fetch_add(1, Ordering::Relaxed);
                        c.bytes_forwarded.fetch_add(n as u64, Ordering::Relaxed);
                        let late = self.now_ns().saturating_sub(at);
                        c.late_ns_max.fetch_max(late, Ordering::Relaxed);
                        c.late_ns_sum.fetch_add(late, Ordering::Relaxed);
                    }
                    Err(_) => {
                        c.write_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                pool.push(buf);
            }
            if read_any {
                continue;
            }
            let now = self.now_ns();
            let (wait_ns, timed) = match line.front() {
                Some((at, _, _)) => {
                    let left = at.saturating_sub(now);
                    let lead = wake.late_ns() + SPIN_NS;
                    if left <= lead {
                        std::hint::spin_loop();
                        continue;
                    }
                    let wait = left - lead;
                    if wait <= IDLE_WAIT_NS {
                        (wait, true)
                    } else {
                        (IDLE_WAIT_NS, false)
                    }
                }
                None => (IDLE_WAIT_NS, false),
            };
            let readable = sys::wait_readable(self.from, Duration::from_nanos(wait_ns))?;
            if timed && !readable {
                wake.record(self.now_ns().saturating_sub(now + wait_ns));
                c.wake_late_ns.store(wake.late_ns(), Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_estimate_converges_and_ignores_descheduling() {
        let mut w = WakeEstimate::new();
        for _ in 0..100 {
            w.record(80_000);
        }
        assert!((79_000..=80_000).contains(&w.late_ns()), "{}", w.late_ns());
        // One 20 ms stall counts as WAKE_LATE_MAX_NS, not 20 ms.
        w.record(20_000_000);
        assert!(w.late_ns() <= (80_000 * 7 + WAKE_LATE_MAX_NS) / 8);
    }
}
