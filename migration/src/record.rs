//! Names shared by the result tables of the simulator and the validator.
//!
//! Calibration joins simulated and measured runs on these values, so they are
//! defined once. The column documentation lives in `docs/results.md`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How memory is moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// Iterative pre-copy rounds, then a short stop-and-copy.
    PreCopy,
    /// Stop-and-copy of the vCPU/device state, resume at the destination, pull
    /// pages on demand while pushing the rest in the background.
    PostCopy,
    /// One pre-copy round (the full copy), then post-copy for what was dirtied.
    Hybrid,
    /// Cold migration: pause the VM, copy everything, resume.
    StopAndCopy,
}

/// How a migration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The VM runs at the destination.
    Completed,
    /// Pre-copy hit its round bound and was cancelled; the VM runs at the source.
    NotConverged,
    /// A link on the route failed before the VM ran at the destination
    /// (during set-up, pre-copy, stop-and-copy, the post-copy state transfer,
    /// or while those last bytes were in flight); the VM runs at the source.
    AbortedLinkFailure,
    /// A link on the route failed during post-copy: the VM's memory is split
    /// between two sites and the VM is lost.
    Lost,
    /// No destination host had room when the migration was to start; nothing was sent.
    NoCapacity,
    /// The simulation horizon ended before the migration finished.
    Unfinished,
    /// Refused at start: every destination host with room lacks a CPU
    /// feature of the VM's model or is of another vendor; nothing was sent.
    CpuIncompatible,
    /// Refused at start: the destination host (or every host of the
    /// destination site) is down or off; nothing was sent.
    HostDown,
    /// Refused at start: the placement would break HA admission control.
    AdmissionControl,
    /// The source or destination host failed during the migration.
    AbortedHostFailure,
    /// The policy that started it cancelled it; the VM runs at the source.
    Cancelled,
    /// Validator: the migration failed before the switchover and the source
    /// kept the guest (a link or destination failure, a corrupt stream).
    Aborted,
    /// Validator: the source finished but the destination did not hold up
    /// (no report, integrity or the guest's carrying on failed), or a
    /// requested fault never fired.
    Failed,
    /// Validator: the handover's end is unknown and nobody answered the
    /// source's question; its guest stays paused.
    Unknown,
    /// Validator: the source VMM was killed (its host failed).
    SourceLost,
}

/// What one row of the `rounds` table is: a stage of a migration that moved data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RoundPhase {
    /// The destination's site-index summary sent to the source (`dedup-site`).
    #[serde(rename = "index-sync")]
    IndexSync,
    /// A pre-copy round.
    #[serde(rename = "precopy")]
    PreCopy,
    /// The stop-and-copy: the last dirty pages and the device state.
    #[serde(rename = "stopcopy")]
    StopCopy,
    /// The device state sent before switching to post-copy.
    #[serde(rename = "postcopy-switch")]
    PostCopySwitch,
    /// The background push of post-copy.
    #[serde(rename = "postcopy-push")]
    PostCopyPush,
}

/// A name that is not one of an enum's names in result tables and files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}; expected one of: {}", expected.join(", "))]
pub struct UnknownName {
    /// What was being read (`outcome`, `mechanism`, `round phase`).
    pub what: &'static str,
    /// The value found.
    pub value: String,
    /// Every name accepted.
    pub expected: Vec<&'static str>,
}

/// Parses `value` as one of `all` by its name.
fn parse_name<T: Copy>(what: &'static str, value: &str, all: &[T], name: fn(T) -> &'static str) -> Result<T, UnknownName> {
    all.iter().copied().find(|&v| name(v) == value).ok_or_else(|| UnknownName {
        what,
        value: value.to_string(),
        expected: all.iter().map(|&v| name(v)).collect(),
    })
}

impl Mechanism {
    /// Every mechanism.
    pub const ALL: [Mechanism; 4] = [Mechanism::PreCopy, Mechanism::PostCopy, Mechanism::Hybrid, Mechanism::StopAndCopy];

    /// The name used in scenario files and result tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::PreCopy => "pre-copy",
            Mechanism::PostCopy => "post-copy",
            Mechanism::Hybrid => "hybrid",
            Mechanism::StopAndCopy => "stop-and-copy",
        }
    }
}

impl Outcome {
    /// Every outcome, the simulator's first, then the validator's.
    pub const ALL: [Outcome; 15] = [
        Outcome::Completed,
        Outcome::NotConverged,
        Outcome::AbortedLinkFailure,
        Outcome::Lost,
        Outcome::NoCapacity,
        Outcome::Unfinished,
        Outcome::CpuIncompatible,
        Outcome::HostDown,
        Outcome::AdmissionControl,
        Outcome::AbortedHostFailure,
        Outcome::Cancelled,
        Outcome::Aborted,
        Outcome::Failed,
        Outcome::Unknown,
        Outcome::SourceLost,
    ];

    /// The name used in result tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::NotConverged => "not-converged",
            Outcome::AbortedLinkFailure => "aborted-link-failure",
            Outcome::Lost => "lost",
            Outcome::NoCapacity => "no-capacity",
            Outcome::Unfinished => "unfinished",
            Outcome::CpuIncompatible => "cpu-incompatible",
            Outcome::HostDown => "host-down",
            Outcome::AdmissionControl => "admission-control",
            Outcome::AbortedHostFailure => "aborted-host-failure",
            Outcome::Cancelled => "cancelled",
            Outcome::Aborted => "aborted",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
            Outcome::SourceLost => "source-lost",
        }
    }
    /// Whether the VM ended at the destination.
    pub fn moved(self) -> bool {
        self == Outcome::Completed
    }
}

impl RoundPhase {
    /// Every phase, in the order a migration goes through them.
    pub const ALL: [RoundPhase; 5] =
        [RoundPhase::IndexSync, RoundPhase::PreCopy, RoundPhase::StopCopy, RoundPhase::PostCopySwitch, RoundPhase::PostCopyPush];

    /// The name used in the `phase` column.
    pub fn as_str(self) -> &'static str {
        match self {
            RoundPhase::IndexSync => "index-sync",
            RoundPhase::PreCopy => "precopy",
            RoundPhase::StopCopy => "stopcopy",
            RoundPhase::PostCopySwitch => "postcopy-switch",
            RoundPhase::PostCopyPush => "postcopy-push",
        }
    }

    /// Whether the VM is paused during the stage (the stop-and-copy and the
    /// post-copy switch).
    pub fn pauses(self) -> bool {
        matches!(self, RoundPhase::StopCopy | RoundPhase::PostCopySwitch)
    }
}

impl FromStr for Mechanism {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        parse_name("mechanism", s, &Mechanism::ALL, Mechanism::as_str)
    }
}

impl FromStr for Outcome {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        parse_name("outcome", s, &Outcome::ALL, Outcome::as_str)
    }
}

impl FromStr for RoundPhase {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        parse_name("round phase", s, &RoundPhase::ALL, RoundPhase::as_str)
    }
}

impl fmt::Display for RoundPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name parses back to its value, and names are distinct. (That
    /// serde writes the same names is checked in memfabric-formats, which has
    /// a JSON serializer.)
    fn round_trips<T>(all: &[T], name: fn(T) -> &'static str)
    where
        T: Copy + PartialEq + fmt::Debug + FromStr<Err = UnknownName>,
    {
        for &v in all {
            assert_eq!(name(v).parse::<T>(), Ok(v));
        }
        let mut names: Vec<_> = all.iter().map(|&v| name(v)).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len(), "names are distinct");
    }

    #[test]
    fn names_round_trip() {
        round_trips(&Outcome::ALL, Outcome::as_str);
        round_trips(&Mechanism::ALL, Mechanism::as_str);
        round_trips(&RoundPhase::ALL, RoundPhase::as_str);
    }

    #[test]
    fn unknown_names_say_what_and_list_the_choices() {
        let e = "interrupted".parse::<Outcome>().unwrap_err();
        assert_eq!(e.value, "interrupted");
        let msg = e.to_string();
        assert!(msg.starts_with("unknown outcome \"interrupted\"; expected one of: completed, not-converged,"), "{msg}");
        assert!(msg.ends_with("unknown, source-lost"), "{msg}");
        assert!("pre_copy".parse::<Mechanism>().unwrap_err().to_string().contains("unknown mechanism \"pre_copy\""));
        assert!("pre-copy".parse::<RoundPhase>().unwrap_err().to_string().contains("expected one of: index-sync, precopy,"));
    }
}
