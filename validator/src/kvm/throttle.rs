//! QEMU-style vCPU throttling, the mechanism behind auto-converge: a
//! throttled vCPU sleeps `pct` of its time.
//!
//! QEMU (`softmmu/cpu-throttle.c`) lets a throttled vCPU run for a time
//! slice of 10 ms and then sleeps it for `slice × pct / (100 − pct)`, so that
//! it runs `100 − pct` percent of wall time. Here the vCPU thread does the
//! same before each KVM_RUN ([`SliceClock::due`]): once it has run for at
//! least one slice since its last sleep, it sleeps the share it owes for the
//! time it actually ran. A vCPU that never leaves KVM_RUN on its own (a
//! CPU-bound guest between its progress reports) is kicked out every slice by
//! a ticker thread ([`super::VcpuHandle::set_throttle`]) while the throttle
//! is engaged. What to throttle and when (the trigger) is the migration's
//! business (`migrate::throttle`); this module owns only the mechanism.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// QEMU's `CPU_THROTTLE_TIMESLICE_NS`: a throttled vCPU runs this long
/// between two sleeps.
pub const THROTTLE_TIMESLICE: Duration = Duration::from_millis(10);

/// The longest stretch of running charged at once: a vCPU that stayed in
/// KVM_RUN longer (its kick came late on a loaded host) owes the sleep of
/// this much running only, so one late kick never freezes the guest for
/// seconds; the throttle then runs the guest a little more than asked.
pub const THROTTLE_CHARGE_MAX: Duration = Duration::from_millis(100);

/// The largest throttle, percent (QEMU's `max-cpu-throttle` bound and
/// `migration/`'s `AUTO_CONVERGE_MAX_PCT`): the vCPU always runs a little.
pub const THROTTLE_PCT_MAX: u32 = memfabric_migration::precopy::AUTO_CONVERGE_MAX_PCT;

/// A throttle outside 0..=99 percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("throttle {0} %: expected 0 to {THROTTLE_PCT_MAX} % (a vCPU throttled 100 % would never run)")]
pub struct ThrottleRangeError(pub u32);

/// The throttle in force, shared by the VMM (which sets it) and the vCPU
/// thread (which obeys it; the time it slept is in its progress,
/// `ProgressSnapshot::throttled_ns`).
#[derive(Debug, Default)]
pub struct Throttle {
    pct: AtomicU32,
}

impl Throttle {
    /// Sets the throttle, percent of wall time the vCPU sleeps (0: off).
    pub fn set_pct(&self, pct: u32) -> Result<(), ThrottleRangeError> {
        if pct > THROTTLE_PCT_MAX {
            return Err(ThrottleRangeError(pct));
        }
        self.pct.store(pct, Ordering::Release);
        Ok(())
    }

    /// The throttle in force, percent.
    pub fn pct(&self) -> u32 {
        self.pct.load(Ordering::Acquire)
    }
}

/// The sleep a vCPU owes for having run `ran` under a `pct` throttle:
/// `ran × pct / (100 − pct)`, so that it runs `100 − pct` % of the time.
pub fn sleep_owed(pct: u32, ran: Duration) -> Duration {
    let pct = pct.min(THROTTLE_PCT_MAX) as u128;
    Duration::from_nanos((ran.as_nanos() * pct / (100 - pct)) as u64)
}

/// The vCPU thread's bookkeeping: when it last slept (or started running).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SliceClock {
    since: Instant,
}

impl SliceClock {
    pub(crate) fn new(now: Instant) -> SliceClock {
        SliceClock { since: now }
    }

    /// The sleep due at `now` under a `pct` throttle: none before the vCPU
    /// has run a whole slice since [`SliceClock::restart`], then the share
    /// owed for the time run (at most [`THROTTLE_CHARGE_MAX`]); with no
    /// throttle, none, and the slice starts over (time run unthrottled is
    /// never charged to a later throttle).
    pub(crate) fn due(&mut self, pct: u32, now: Instant) -> Option<Duration> {
        if pct == 0 {
            self.since = now;
            return None;
        }
        let ran = now.saturating_duration_since(self.since);
        (ran >= THROTTLE_TIMESLICE).then(|| sleep_owed(pct, ran.min(THROTTLE_CHARGE_MAX)))
    }

    /// The vCPU starts running again at `now` (after a sleep or a pause).
    pub(crate) fn restart(&mut self, now: Instant) {
        self.since = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_is_the_throttled_share_of_the_time_run() {
        let slice = THROTTLE_TIMESLICE;
        assert_eq!(sleep_owed(0, slice), Duration::ZERO);
        assert_eq!(sleep_owed(20, slice), Duration::from_micros(2500), "20 %: 10 ms run, 2.5 ms asleep");
        assert_eq!(sleep_owed(50, slice), slice);
        assert_eq!(sleep_owed(99, slice), Duration::from_millis(990), "99 %: 1 % of the time running");
        // Run fraction = ran / (ran + sleep) = 1 - pct/100 for every step.
        for pct in [20, 30, 50, 70, 90, 99] {
            let ran = Duration::from_millis(13);
            let run_fraction = ran.as_secs_f64() / (ran + sleep_owed(pct, ran)).as_secs_f64();
            assert!((run_fraction - (1.0 - pct as f64 / 100.0)).abs() < 1e-6, "{pct} %: {run_fraction}");
        }
    }

    #[test]
    fn a_sleep_falls_due_after_a_whole_slice_of_running() {
        let t0 = Instant::now();
        let mut c = SliceClock::new(t0);
        assert_eq!(c.due(50, t0 + Duration::from_millis(9)), None);
        assert_eq!(c.due(50, t0 + Duration::from_millis(12)), Some(Duration::from_millis(12)));
        c.restart(t0 + Duration::from_millis(24));
        assert_eq!(c.due(50, t0 + Duration::from_millis(30)), None, "the slice starts over after the sleep");
        // Unthrottled running is not charged to a throttle set later.
        assert_eq!(c.due(0, t0 + Duration::from_millis(100)), None);
        assert_eq!(c.due(90, t0 + Duration::from_millis(105)), None);
        assert_eq!(c.due(90, t0 + Duration::from_millis(110)), Some(Duration::from_millis(90)));
        // A late kick: 2 s in KVM_RUN is charged as 100 ms.
        assert_eq!(c.due(50, t0 + Duration::from_millis(2105)), Some(THROTTLE_CHARGE_MAX));
    }

    #[test]
    fn the_throttle_refuses_100_percent() {
        let t = Throttle::default();
        assert_eq!(t.set_pct(100), Err(ThrottleRangeError(100)));
        assert_eq!(t.pct(), 0);
        t.set_pct(99).unwrap();
        assert_eq!(t.pct(), 99);
        assert!(ThrottleRangeError(100).to_string().contains("0 to 99"));
    }
}
