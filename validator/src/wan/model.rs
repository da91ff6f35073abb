//! The per-direction timing model of a link, as a pure function of packet
//! arrivals: no clock, no I/O. The forwarding loop feeds it real arrival times;
//! the unit tests feed it made-up ones and check the analytical answers.
//!
//! One direction is, in order:
//!
//! ```text
//! arrival ──► loss draw ──► drop-tail queue ──► serializer ──► delay line ──► delivery
//!             (p = loss)    (≤ limit bytes)     (size/rate)    (delay ± jitter,
//!                                                               FIFO, no reordering)
//! ```
//!
//! - **Loss** is drawn for every arriving packet, first, from the direction's
//!   own seeded ChaCha8 stream, so the k-th packet of a direction always gets the
//!   k-th draw whatever the queue does. A lost packet uses no capacity (as in
//!   Linux netem).
//! - **Queue.** The backlog at arrival time `t` is the bytes the serializer still
//!   has to send: `ceil((busy_until - t) · rate)`, including the unsent part of the
//!   packet on the wire. A packet is accepted if `backlog + size ≤ limit`, or if
//!   the link is idle (so a limit below one packet still passes one at a time).
//!   Otherwise it is dropped (drop-tail).
//! - **Serializer.** An accepted packet starts at `max(t, busy_until)` and takes
//!   `ceil(size / rate)` nanoseconds.
//! - **Delay line.** It is delivered `delay + u` after serialization ends, where
//!   `u` is uniform in `[-jitter, +jitter]` (drawn per arriving packet after the
//!   loss draw, only if jitter > 0), the total clamped at 0; but never before the
//!   packet ahead of it, so jitter delays packets and never reorders them.

use super::spec::LinkSpec;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Which way a packet travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// From site A to site B.
    AToB,
    /// From site B to site A.
    BToA,
}

impl Direction {
    /// The ChaCha8 stream number of this direction (the seed is shared).
    fn stream(self) -> u64 {
        match self {
            Direction::AToB => 0,
            Direction::BToA => 1,
        }
    }
}

/// What the link does with one offered packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered to the far side at `at_ns`.
    Deliver {
        /// Delivery time, on the same clock as the arrival times.
        at_ns: u64,
        /// Queue occupancy just after this packet was accepted, in bytes.
        queue_bytes: u64,
    },
    /// Dropped because the queue was full.
    DropQueue,
    /// Dropped by the random loss draw.
    DropLoss,
}

/// The state of one direction of a link.
#[derive(Debug, Clone)]
pub struct DirectionModel {
    rate_bytes_per_s: f64,
    delay_ns: u64,
    jitter_ns: u64,
    loss: f64,
    queue_limit_bytes: u64,
    busy_until_ns: u64,
    last_delivery_ns: u64,
    rng: ChaCha8Rng,
}

impl DirectionModel {
    /// A fresh, idle direction of `spec`, with its random stream derived from
    /// `seed` and `direction`.
    pub fn new(spec: &LinkSpec, seed: u64, direction: Direction) -> DirectionModel {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(direction.stream());
        DirectionModel {
            rate_bytes_per_s: spec.rate.0,
            delay_ns: spec.delay.0,
            jitter_ns: spec.jitter.0,
            loss: spec.loss.0,
            queue_limit_bytes: spec.queue_limit_bytes(),
            busy_until_ns: 0,
            last_delivery_ns: 0,
            rng,
        }
    }

    /// Nanoseconds to serialize `size_bytes` at the link rate, rounded up.
    pub fn serialization_ns(&self, size_bytes: u32) -> u64 {
        (f64::from(size_bytes) * 1e9 / self.rate_bytes_per_s).ceil() as u64
    }

    /// Bytes the serializer still has to send at `now_ns`.
    pub fn backlog_bytes(&self, now_ns: u64) -> u64 {
        let left_ns = self.busy_until_ns.saturating_sub(now_ns);
        (left_ns as f64 * self.rate_bytes_per_s / 1e9).ceil() as u64
    }

    /// Offers a packet of `size_bytes` arriving at `arrival_ns`. Arrival times
    /// must not decrease from one call to the next.
    pub fn offer(&mut self, arrival_ns: u64, size_bytes: u32) -> Verdict {
        let lost = self.loss > 0.0 && self.rng.random::<f64>() < self.loss;
        let jitter_offset_ns: i64 = if self.jitter_ns > 0 {
            let j = self.jitter_ns as i64;
            self.rng.random_range(-j..=j)
        } else {
            0
        };
        if lost {
            return Verdict::DropLoss;
        }
        let backlog = self.backlog_bytes(arrival_ns);
        let size = u64::from(size_bytes);
        if backlog > 0 && backlog + size > self.queue_limit_bytes {
            return Verdict::DropQueue;
        }
        let start_ns = arrival_ns.max(self.busy_until_ns);
        self.busy_until_ns = start_ns + self.serialization_ns(size_bytes);
        let delay_ns = (self.delay_ns as i64 + jitter_offset_ns).max(0) as u64;
        let at_ns = (self.busy_until_ns + delay_ns).max(self.last_delivery_ns);
        self.last_delivery_ns = at_ns;
        Verdict::Deliver { at_ns, queue_bytes: backlog + size }
    }
}

/// Runs `arrivals` (time in ns, size in bytes; times non-decreasing) through a
/// fresh direction of `spec` and returns one verdict per packet.
pub fn schedule(spec: &LinkSpec, seed: u64, direction: Direction, arrivals: &[(u64, u32)]) -> Vec<Verdict> {
    let mut model = DirectionModel::new(spec, seed, direction);
    arrivals.iter().map(|&(t, size)| model.offer(t, size)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wan::spec::QueueLimit;
    use memfabric_migration::units::{Bytes, BytesPerSecond, Fraction, Nanos};

    /// 1 Gbit/s: a 1500-byte packet takes exactly 12 µs.
    fn gbit(delay_ms: u64) -> LinkSpec {
        LinkSpec::new(BytesPerSecond(125e6), Nanos::from_millis(delay_ms))
    }

    fn delivered(v: &Verdict) -> u64 {
        match v {
            Verdict::Deliver { at_ns, .. } => *at_ns,
            other => panic!("expected delivery, got {other:?}"),
        }
    }

    #[test]
    fn idle_link_adds_serialization_and_delay() {
        let v = schedule(&gbit(10), 1, Direction::AToB, &[(1_000, 1500), (100_000, 1500)]);
        assert_eq!(delivered(&v[0]), 1_000 + 12_000 + 10_000_000);
        assert_eq!(delivered(&v[1]), 100_000 + 12_000 + 10_000_000);
    }

    #[test]
    fn back_to_back_packets_leave_one_serialization_apart() {
        let arrivals: Vec<(u64, u32)> = (0..10).map(|_| (0, 1500)).collect();
        let v = schedule(&gbit(1), 1, Direction::AToB, &arrivals);
        for (k, verdict) in v.iter().enumerate() {
            let k = k as u64;
            assert_eq!(*verdict, Verdict::Deliver { at_ns: (k + 1) * 12_000 + 1_000_000, queue_bytes: (k + 1) * 1500 });
        }
    }

    #[test]
    fn drop_tail_at_the_limit() {
        // Queue of 4500 bytes: three back-to-back packets fit, the fourth is dropped.
        let mut spec = gbit(0);
        spec.queue = QueueLimit::Size(Bytes(4500));
        let v = schedule(&spec, 1, Direction::AToB, &[(0, 1500), (0, 1500), (0, 1500), (0, 1500)]);
        assert_eq!(v[3], Verdict::DropQueue);
        assert_eq!(delivered(&v[2]), 36_000);
        // Half a packet later 750 bytes have left, still not room for 1500 more.
        let v = schedule(&spec, 1, Direction::AToB, &[(0, 1500), (0, 1500), (0, 1500), (6_000, 1500)]);
        assert_eq!(v[3], Verdict::DropQueue);
        // One whole packet later there is room again; it queues behind the other two.
        let v = schedule(&spec, 1, Direction::AToB, &[(0, 1500), (0, 1500), (0, 1500), (12_000, 1500)]);
        assert_eq!(v[3], Verdict::Deliver { at_ns: 48_000, queue_bytes: 4500 });
    }

    #[test]
    fn an_idle_link_accepts_a_packet_larger_than_the_queue() {
        let mut spec = gbit(0);
        spec.queue = QueueLimit::Size(Bytes(1000));
        let v = schedule(&spec, 1, Direction::AToB, &[(0, 1500), (0, 1500), (12_000, 1500)]);
        assert_eq!(delivered(&v[0]), 12_000);
        assert_eq!(v[1], Verdict::DropQueue);
        assert_eq!(delivered(&v[2]), 24_000);
    }

    #[test]
    fn sustained_overload_delivers_exactly_the_rate() {
        // 2 Gbit/s offered into 1 Gbit/s for 1 ms: a packet every 6 µs. With a
        // 15000-byte queue the link stays busy; deliveries are 12 µs apart.
        let mut spec = gbit(0);
        spec.queue = QueueLimit::Size(Bytes(15_000));
        let arrivals: Vec<(u64, u32)> = (0..167).map(|k| (k * 6_000, 1500)).collect();
        let v = schedule(&spec, 1, Direction::AToB, &arrivals);
        let times: Vec<u64> = v
            .iter()
            .filter_map(|x| match x {
                Verdict::Deliver { at_ns, .. } => Some(*at_ns),
                _ => None,
            })
            .collect();
        for pair in times.windows(2) {
            assert_eq!(pair[1] - pair[0], 12_000);
        }
        // Before packet k (arriving at 6k µs) with a packets accepted so far the
        // backlog is 1500·a − 750·k bytes, so it is accepted iff a ≤ 9 + k/2:
        // packets 0..=18 all fit, then every even k from 20 on (74 of 19..=166).
        let drops = v.iter().filter(|x| **x == Verdict::DropQueue).count();
        assert_eq!(drops, 74);
        assert_eq!(times.len(), 93);
        assert_eq!(*times.last().unwrap(), 93 * 12_000);
        for (k, verdict) in v.iter().enumerate().skip(19) {
            assert_eq!(*verdict == Verdict::DropQueue, k % 2 == 1, "packet {k}");
        }
    }

    #[test]
    fn loss_is_seeded_and_has_the_right_rate() {
        let mut spec = gbit(0);
        spec.loss = Fraction(0.1);
        let arrivals: Vec<(u64, u32)> = (0..100_000).map(|k| (k * 100_000, 100)).collect();
        let a = schedule(&spec, 7, Direction::AToB, &arrivals);
        let b = schedule(&spec, 7, Direction::AToB, &arrivals);
        let c = schedule(&spec, 7, Direction::BToA, &arrivals);
        assert_eq!(a, b, "same seed and direction, same draws");
        assert_ne!(a, c, "the two directions draw from different streams");
        let lost = a.iter().filter(|x| **x == Verdict::DropLoss).count() as f64;
        // Binomial(1e5, 0.1): sd = 94.9; 5 sd.
        assert!((lost - 10_000.0).abs() < 475.0, "{lost} lost");
    }

    #[test]
    fn jitter_never_reorders_and_stays_in_its_band() {
        let mut spec = gbit(10);
        spec.jitter = Nanos::from_millis(2);
        let arrivals: Vec<(u64, u32)> = (0..10_000).map(|k| (k * 50_000, 1500)).collect();
        let v = schedule(&spec, 3, Direction::AToB, &arrivals);
        let mut last = 0;
        let mut above_base = 0;
        for (&(t, _), verdict) in arrivals.iter().zip(&v) {
            let at = delivered(verdict);
            assert!(at >= last, "reordered");
            last = at;
            // Arrivals are 50 µs apart, so nothing queues and the clamp can only
            // lift a packet to its predecessor's time, which is inside the band too.
            let d = at - t - 12_000;
            assert!((8_000_000..=12_000_000).contains(&d), "delay {d}");
            if d > 10_000_000 {
                above_base += 1;
            }
        }
        // Roughly half above the mean delay (more, because of the no-reorder clamp).
        assert!(above_base > 4_000, "{above_base}");
    }
}
