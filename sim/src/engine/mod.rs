//! The discrete-event engine: simulated time, the event queue and seeded random
//! streams. It knows nothing about VMs, links or migrations.
//!
//! - Time is integer nanoseconds ([`SimTime`]); the model never reads the wall clock.
//! - Events are ordered by `(time, insertion sequence)`, so events scheduled for
//!   the same instant run in the order they were scheduled (FIFO) and every run
//!   is reproducible.
//! - Randomness comes from [`RngStreams`]: one independent stream per purpose,
//!   derived from the scenario seed and the purpose's name, so adding a draw in
//!   one model does not shift the draws of another.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

pub use memfabric_migration::units::Nanos as SimTime;

/// A queue of future events of type `E`.
#[derive(Debug)]
pub struct EventQueue<E> {
    heap: BinaryHeap<Reverse<Entry<E>>>,
    now: SimTime,
    next_seq: u64,
    popped: u64,
}

#[derive(Debug)]
struct Entry<E> {
    time: SimTime,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.time, self.seq).cmp(&(other.time, other.seq))
    }
}

/// An event was scheduled before the current time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event scheduled in the past: at {at} while the clock is at {now}")]
pub struct SchedulePastError {
    /// Requested time.
    pub at: SimTime,
    /// The clock when it was requested.
    pub now: SimTime,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> EventQueue<E> {
    /// An empty queue at time zero.
    pub fn new() -> Self {
        EventQueue { heap: BinaryHeap::new(), now: SimTime::default(), next_seq: 0, popped: 0 }
    }

    /// The current simulated time (the time of the last event popped).
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// Number of events popped so far.
    pub fn events_processed(&self) -> u64 {
        self.popped
    }

    /// Number of events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no events are waiting.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Schedules `event` at absolute time `at` (not before now).
    pub fn schedule_at(&mut self, at: SimTime, event: E) -> Result<(), SchedulePastError> {
        if at < self.now {
            return Err(SchedulePastError { at, now: self.now });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(Entry { time: at, seq, event }));
        Ok(())
    }

    /// Schedules `event` after `delay` from now (saturating at the end of time).
    pub fn schedule_in(&mut self, delay: SimTime, event: E) {
        let at = SimTime(self.now.0.saturating_add(delay.0));
        // Cannot be in the past.
        let _ = self.schedule_at(at, event);
    }

    /// The time of the next event, if any.
    pub fn peek_time(&self) -> Option<SimTime> {
        self.heap.peek().map(|Reverse(e)| e.time)
    }

    /// Removes the next event and advances the clock to its time.
    pub fn pop(&mut self) -> Option<(SimTime, E)> {
        let Reverse(entry) = self.heap.pop()?;
        self.now = entry.time;
        self.popped += 1;
        Some((entry.time, entry.event))
    }
}

/// Independent, reproducible random streams derived from one seed.
#[derive(Debug, Clone, Copy)]
pub struct RngStreams {
    seed: u64,
}

impl RngStreams {
    /// Streams for a scenario seed.
    pub fn new(seed: u64) -> Self {
        RngStreams { seed }
    }

    /// The scenario seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The stream for `purpose` (the simulator uses `"vm/<vm name>"` for each VM's draws). The same seed and
    /// purpose always give the same stream; different purposes give
    /// statistically independent streams (ChaCha8 keyed by a 256-bit seed made
    /// from xxh3-128 of the scenario seed and the purpose).
    pub fn stream(&self, purpose: &str) -> ChaCha8Rng {
        let mut key = [0u8; 32];
        let mut input = Vec::with_capacity(purpose.len() + 9);
        input.extend_from_slice(&self.seed.to_le_bytes());
        input.push(0);
        input.extend_from_slice(purpose.as_bytes());
        let a = xxhash_rust::xxh3::xxh3_128_with_seed(&input, 0x6d66_6162_7269_6331);
        let b = xxhash_rust::xxh3::xxh3_128_with_seed(&input, 0x6d66_6162_7269_6332);
        key[..16].copy_from_slice(&a.to_le_bytes());
        key[16..].copy_from_slice(&b.to_le_bytes());
        ChaCha8Rng::from_seed(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn same_time_events_are_fifo() {
        let mut q = EventQueue::new();
        q.schedule_at(SimTime(10), "b1").unwrap();
        q.schedule_at(SimTime(5), "a").unwrap();
        q.schedule_at(SimTime(10), "b2").unwrap();
        q.schedule_at(SimTime(10), "b3").unwrap();
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ["a", "b1", "b2", "b3"]);
        assert_eq!(q.now(), SimTime(10));
        assert_eq!(q.events_processed(), 4);
    }

    #[test]
    fn refuses_the_past() {
        let mut q = EventQueue::new();
        q.schedule_at(SimTime(10), ()).unwrap();
        q.pop();
        assert_eq!(q.schedule_at(SimTime(9), ()), Err(SchedulePastError { at: SimTime(9), now: SimTime(10) }));
    }

    #[test]
    fn streams_are_reproducible_and_independent() {
        let s = RngStreams::new(7);
        let a: Vec<u64> = (0..4).map(|_| 0).scan(s.stream("x"), |r, _: u64| Some(r.random())).collect();
        let b: Vec<u64> = (0..4).map(|_| 0).scan(s.stream("x"), |r, _: u64| Some(r.random())).collect();
        let c: Vec<u64> = (0..4).map(|_| 0).scan(s.stream("y"), |r, _: u64| Some(r.random())).collect();
        let d: Vec<u64> = (0..4).map(|_| 0).scan(RngStreams::new(8).stream("x"), |r, _: u64| Some(r.random())).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }
}
