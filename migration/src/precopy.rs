//! The pre-copy stop rule and QEMU's auto-converge throttle.
//!
//! Both the simulator and the validator call [`precopy_decision`] at the end of
//! every pre-copy round (after the dirty bitmap has been synchronised), and feed
//! [`AutoConverge::on_round`] with the bytes dirtied and sent in that round.
//! Keeping these rules here is what makes simulated and real migrations
//! comparable round by round.

use crate::units::{BytesPerSecond, Nanos};
use serde::{Deserialize, Serialize};

/// QEMU's default downtime limit (`downtime-limit` migration parameter, 300 ms).
pub const DEFAULT_DOWNTIME_LIMIT: Nanos = Nanos::from_millis(300);

/// Default bound on the number of pre-copy rounds (round 0 is the full copy).
/// QEMU has no such bound; Xen's classic pre-copy loop stopped after about 30
/// iterations (recalled, not re-read). memfabric reports non-convergence instead
/// of iterating forever.
pub const DEFAULT_MAX_ROUNDS: u32 = 30;

/// QEMU's `cpu-throttle-initial` default: the first throttle step, in percent.
pub const AUTO_CONVERGE_INITIAL_PCT: u32 = 20;
/// QEMU's `cpu-throttle-increment` default, in percent.
pub const AUTO_CONVERGE_INCREMENT_PCT: u32 = 10;
/// QEMU's `max-cpu-throttle` default, in percent.
pub const AUTO_CONVERGE_MAX_PCT: u32 = 99;
/// QEMU's `throttle-trigger-threshold` default: a period counts as "dirtying too
/// fast" when bytes dirtied exceed this percentage of bytes sent.
pub const AUTO_CONVERGE_TRIGGER_PCT: u32 = 50;
/// QEMU throttles after this many periods that dirtied too fast (`dirty_rate_high_cnt >= 2`).
pub const AUTO_CONVERGE_HIGH_PERIODS: u32 = 2;

/// What to do when pre-copy reaches its round bound without converging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NonConvergence {
    /// Cancel the migration; the VM keeps running at the source (outcome `not-converged`).
    Abort,
    /// Stop the VM anyway and copy what is left, exceeding the downtime limit.
    ForceStop,
    /// Switch to post-copy: resume at the destination and pull the rest.
    PostCopy,
}

/// Parameters of the pre-copy stop rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrecopyConfig {
    /// Longest acceptable pause of the VM for the final stop-and-copy.
    pub downtime_limit: Nanos,
    /// Bound on rounds, counting round 0 (the first full copy). At least 1.
    pub max_rounds: u32,
    /// What happens when the bound is reached.
    pub on_non_convergence: NonConvergence,
}

impl Default for PrecopyConfig {
    fn default() -> Self {
        PrecopyConfig {
            downtime_limit: DEFAULT_DOWNTIME_LIMIT,
            max_rounds: DEFAULT_MAX_ROUNDS,
            on_non_convergence: NonConvergence::Abort,
        }
    }
}

/// A stop-rule parameter out of range (the rule every front end applies:
/// scenario files, `memfabric` flags and `memfabric-validator migrate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PrecopyRangeError {
    /// `downtime_limit` of zero: nothing could ever be sent in it.
    #[error("must be positive, e.g. \"300ms\"")]
    DowntimeLimitZero,
    /// `max_rounds` of zero: round 0 (the full copy) is always sent.
    #[error("must be at least 1 (round 0 is the full copy)")]
    MaxRoundsZero,
}

impl PrecopyConfig {
    /// Checks a downtime limit: it must be positive.
    pub fn check_downtime_limit(limit: Nanos) -> Result<Nanos, PrecopyRangeError> {
        if limit.0 == 0 {
            Err(PrecopyRangeError::DowntimeLimitZero)
        } else {
            Ok(limit)
        }
    }

    /// Checks a round bound: at least 1 (round 0 counts).
    pub fn check_max_rounds(rounds: u32) -> Result<u32, PrecopyRangeError> {
        if rounds == 0 {
            Err(PrecopyRangeError::MaxRoundsZero)
        } else {
            Ok(rounds)
        }
    }
}

/// What is known at the end of a pre-copy round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrecopyContext {
    /// Rounds completed so far (1 after the first full copy).
    pub rounds_completed: u32,
    /// Bytes that would have to cross the wire to send every page now dirty
    /// (after any data reduction the sender applies).
    pub remaining_bytes: u64,
    /// Transfer rate measured over the last round (bytes sent / round duration).
    pub measured_rate: BytesPerSecond,
}

/// The result of the stop rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrecopyDecision {
    /// Send another round.
    Continue,
    /// Converged: the remaining bytes fit the downtime limit; stop and copy.
    StopAndCopy,
    /// The round bound was reached without converging; apply the configured
    /// [`NonConvergence`] action.
    NotConverged(NonConvergence),
}

/// The largest number of bytes that can be sent within `limit` at `rate`
/// (QEMU's `threshold_size = bandwidth * downtime_limit`).
pub fn downtime_budget_bytes(rate: BytesPerSecond, limit: Nanos) -> f64 {
    rate.0 * limit.as_secs_f64()
}

/// Decides, at the end of a round, whether pre-copy goes on.
///
/// The rules, in order:
/// 1. **Converged** if the remaining dirty bytes can be sent within the downtime
///    limit at the rate measured over the last round:
///    `remaining_bytes <= measured_rate * downtime_limit` (QEMU's rule in
///    `migration_iteration_run`, with `threshold_size` from the measured
///    bandwidth). Nothing left to send always converges.
/// 2. **Not converged** if `rounds_completed >= max_rounds`: the configured
///    action decides (abort, force a stop-and-copy, or switch to post-copy).
/// 3. Otherwise **continue** with another round.
///
/// Device and vCPU state are not part of `remaining_bytes` (as in QEMU 7.2),
/// so the real pause can exceed the limit by the state transfer time.
pub fn precopy_decision(ctx: &PrecopyContext, cfg: &PrecopyConfig) -> PrecopyDecision {
    if ctx.remaining_bytes == 0
        || ctx.remaining_bytes as f64 <= downtime_budget_bytes(ctx.measured_rate, cfg.downtime_limit)
    {
        PrecopyDecision::StopAndCopy
    } else if ctx.rounds_completed >= cfg.max_rounds.max(1) {
        PrecopyDecision::NotConverged(cfg.on_non_convergence)
    } else {
        PrecopyDecision::Continue
    }
}

/// What the round just sent put on the wire: the evidence the stop rule's
/// remaining-bytes estimate ([`remaining_bytes_estimate`]) works from.
/// Counts may be expected values (the simulator) or real ones (the validator).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RoundWire {
    /// Pages the round sent.
    pub pages: f64,
    /// Bytes it put on the wire.
    pub wire_bytes: f64,
    /// Of those pages, the ones sent as zero pages.
    pub zero_pages: f64,
    /// Wire bytes of those zero-page records.
    pub zero_wire_bytes: f64,
}

/// The stop rule's estimate of the bytes needed to send `dirty_pages` pages:
/// each at the wire cost of a non-zero page of the round just sent
/// (`(wire_bytes − zero_wire_bytes) / (pages − zero_pages)`), or at
/// `raw_page_wire_bytes` when that round sent no non-zero page.
///
/// Dirtied pages were written, so they are rarely zero: counting round 0's
/// many zero pages would make the estimate low. This is the one estimator the
/// simulator and the validator share, so that both stop after the same round
/// given the same evidence; it uses only what a real VMM can know (what it
/// just sent), not the expected cost of pages not yet encoded.
///
/// `dirty_pages` may be fractional: the simulator's expected sampling passes
/// the expected number of dirty pages, not a rounded count.
pub fn remaining_bytes_estimate(dirty_pages: f64, round: &RoundWire, raw_page_wire_bytes: f64) -> u64 {
    let nonzero_pages = round.pages - round.zero_pages;
    let per_page = if nonzero_pages >= 0.5 {
        (round.wire_bytes - round.zero_wire_bytes).max(0.0) / nonzero_pages
    } else {
        raw_page_wire_bytes
    };
    (dirty_pages * per_page).round() as u64
}

/// QEMU's auto-converge: throttle the guest's vCPUs when it dirties memory faster
/// than the migration can send it.
///
/// QEMU (`migration_trigger_throttle` in `migration/ram.c`) counts periods in which
/// the bytes dirtied exceed `throttle-trigger-threshold` (50%) of the bytes
/// transferred; at the second such period (the counter is not reset by a calm
/// period) it throttles: first to `cpu-throttle-initial` (20%), then
/// `+cpu-throttle-increment` (10%) each time, up to `max-cpu-throttle` (99%).
/// A period here is one pre-copy round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AutoConverge {
    throttle_pct: u32,
    high_periods: u32,
}

impl AutoConverge {
    /// A throttle that has not engaged.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current throttle in percent (0 when not engaged).
    pub fn throttle_pct(&self) -> u32 {
        self.throttle_pct
    }

    /// The fraction of time the guest's vCPUs still run (`1 - throttle`).
    pub fn run_fraction(&self) -> f64 {
        1.0 - self.throttle_pct as f64 / 100.0
    }

    /// Accounts one period; returns the throttle (percent) in force afterwards.
    pub fn on_round(&mut self, bytes_dirtied: u64, bytes_sent: u64) -> u32 {
        let too_fast =
            bytes_dirtied as f64 > bytes_sent as f64 * AUTO_CONVERGE_TRIGGER_PCT as f64 / 100.0;
        if too_fast {
            self.high_periods += 1;
            if self.high_periods >= AUTO_CONVERGE_HIGH_PERIODS {
                self.high_periods = 0;
                self.throttle_pct = if self.throttle_pct == 0 {
                    AUTO_CONVERGE_INITIAL_PCT
                } else {
                    (self.throttle_pct + AUTO_CONVERGE_INCREMENT_PCT).min(AUTO_CONVERGE_MAX_PCT)
                };
            }
        }
        self.throttle_pct
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(rounds: u32, remaining: u64, rate: f64) -> PrecopyContext {
        PrecopyContext { rounds_completed: rounds, remaining_bytes: remaining, measured_rate: BytesPerSecond(rate) }
    }

    #[test]
    fn range_checks_refuse_zero_and_keep_the_rest() {
        assert_eq!(PrecopyConfig::check_downtime_limit(Nanos(0)), Err(PrecopyRangeError::DowntimeLimitZero));
        assert_eq!(PrecopyConfig::check_downtime_limit(Nanos(1)), Ok(Nanos(1)));
        assert_eq!(PrecopyConfig::check_max_rounds(0), Err(PrecopyRangeError::MaxRoundsZero));
        assert_eq!(PrecopyConfig::check_max_rounds(1), Ok(1));
        assert!(PrecopyRangeError::MaxRoundsZero.to_string().contains("at least 1"));
    }

    #[test]
    fn converges_exactly_at_the_budget() {
        let cfg = PrecopyConfig::default();
        // 100 MB/s * 300 ms = 30 MB.
        assert_eq!(precopy_decision(&ctx(1, 30_000_000, 1e8), &cfg), PrecopyDecision::StopAndCopy);
        assert_eq!(precopy_decision(&ctx(1, 30_000_001, 1e8), &cfg), PrecopyDecision::Continue);
        assert_eq!(precopy_decision(&ctx(1, 0, 0.0), &cfg), PrecopyDecision::StopAndCopy);
    }

    #[test]
    fn round_bound_applies_configured_action() {
        let cfg = PrecopyConfig { max_rounds: 3, on_non_convergence: NonConvergence::PostCopy, ..Default::default() };
        assert_eq!(precopy_decision(&ctx(2, 1 << 40, 1e8), &cfg), PrecopyDecision::Continue);
        assert_eq!(
            precopy_decision(&ctx(3, 1 << 40, 1e8), &cfg),
            PrecopyDecision::NotConverged(NonConvergence::PostCopy)
        );
    }

    #[test]
    fn remaining_bytes_count_non_zero_pages_of_the_last_round() {
        // 100 pages: 40 zero (10 B each), 60 at 1000 B each.
        let r = RoundWire { pages: 100.0, wire_bytes: 400.0 + 60_000.0, zero_pages: 40.0, zero_wire_bytes: 400.0 };
        assert_eq!(remaining_bytes_estimate(7.0, &r, 4104.0), 7_000);
        // Only zero pages (or nothing) sent: the raw cost per page.
        let z = RoundWire { pages: 5.0, wire_bytes: 50.0, zero_pages: 5.0, zero_wire_bytes: 50.0 };
        assert_eq!(remaining_bytes_estimate(3.0, &z, 4104.0), 12_312);
        assert_eq!(remaining_bytes_estimate(3.0, &RoundWire::default(), 4104.0), 12_312);
        assert_eq!(remaining_bytes_estimate(0.0, &r, 4104.0), 0);
    }

    #[test]
    fn auto_converge_follows_qemu_steps() {
        let mut ac = AutoConverge::new();
        assert_eq!(ac.on_round(60, 100), 0, "first high period only counts");
        assert_eq!(ac.on_round(10, 100), 0, "a calm period does not reset the count");
        assert_eq!(ac.on_round(60, 100), 20);
        assert_eq!(ac.on_round(60, 100), 20);
        assert_eq!(ac.on_round(60, 100), 30);
        for _ in 0..40 {
            ac.on_round(100, 100);
        }
        assert_eq!(ac.throttle_pct(), 99);
        assert!((ac.run_fraction() - 0.01).abs() < 1e-12);
    }
}
