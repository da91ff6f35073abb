//! Auto-converge at the source VMM: after every pre-copy round the shared
//! trigger ([`AutoConverge`], the one the simulator calls) decides the
//! throttle from the bytes the guest dirtied and the bytes the round sent,
//! and the vCPU throttle ([`crate::kvm::throttle`]) applies it to the guest.
//! When the migration ends without a handover the throttle is lifted, so the
//! guest runs on at full speed at the source (as QEMU cancels its throttle).

use memfabric_migration::precopy::AutoConverge;
use memfabric_migration::PAGE_SIZE_BYTES;

use crate::kvm::throttle::ThrottleRangeError;
use crate::kvm::{ProgressSnapshot, VcpuHandle};

/// The source's auto-converge: off, or QEMU's rule driving the vCPU throttle.
#[derive(Debug, Clone, Default)]
pub struct AutoConvergeDriver {
    rule: Option<AutoConverge>,
    pct_max: u32,
}

impl AutoConvergeDriver {
    /// Auto-converge on (`enabled`) or off (the throttle stays at 0).
    pub fn new(enabled: bool) -> AutoConvergeDriver {
        AutoConvergeDriver { rule: enabled.then(AutoConverge::new), pct_max: 0 }
    }

    /// The throttle in force now, percent.
    pub fn pct(&self) -> u32 {
        self.rule.map_or(0, |r| r.throttle_pct())
    }

    /// The largest throttle applied so far, percent.
    pub fn pct_max(&self) -> u32 {
        self.pct_max
    }

    /// Accounts a round that sent `bytes_sent` while the guest dirtied
    /// `dirty_pages` (the simulator counts dirtied bytes as whole pages, so
    /// does this), and throttles `vcpu` to the result. Returns the throttle
    /// in force for the next round.
    pub fn on_round(&mut self, vcpu: &VcpuHandle, dirty_pages: u64, bytes_sent: u64) -> Result<u32, ThrottleRangeError> {
        let Some(rule) = self.rule.as_mut() else { return Ok(0) };
        let pct = rule.on_round(dirty_pages * PAGE_SIZE_BYTES, bytes_sent);
        self.pct_max = self.pct_max.max(pct);
        vcpu.set_throttle(pct)?;
        Ok(pct)
    }

    /// Lifts the throttle (the migration ended without a handover).
    pub fn release(&self, vcpu: &VcpuHandle) {
        if self.rule.is_some() {
            vcpu.set_throttle(0).expect("0 % is a valid throttle");
        }
    }
}

/// What the guest did over one round: writes and the time its vCPU slept
/// under the throttle, from two progress snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuestDuring {
    /// Page writes the guest reported.
    pub writes: u64,
    /// Time the vCPU slept under the throttle, ns.
    pub throttled_ns: u64,
}

impl GuestDuring {
    /// Between `before` and `after`.
    pub fn between(before: &ProgressSnapshot, after: &ProgressSnapshot) -> GuestDuring {
        GuestDuring {
            writes: after.writes.saturating_sub(before.writes),
            throttled_ns: after.throttled_ns.saturating_sub(before.throttled_ns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_never_throttles_and_guest_deltas_subtract() {
        let d = AutoConvergeDriver::new(false);
        assert_eq!((d.pct(), d.pct_max()), (0, 0));
        let a = ProgressSnapshot { writes: 10, throttled_ns: 5, ..Default::default() };
        let b = ProgressSnapshot { writes: 25, throttled_ns: 105, ..Default::default() };
        assert_eq!(GuestDuring::between(&a, &b), GuestDuring { writes: 15, throttled_ns: 100 });
        assert_eq!(GuestDuring::between(&b, &a), GuestDuring::default(), "never negative");
    }
}
