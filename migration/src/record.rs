//! Names shared by the result tables of the simulator and the validator.
//!
//! Calibration joins simulated and measured runs on these values, so they are
//! defined once. The column documentation lives in `docs/results.md`.

use serde::{Deserialize, Serialize};
use std::fmt;

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
}

impl Mechanism {
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
        }
    }
    /// Whether the VM ended at the destination.
    pub fn moved(self) -> bool {
        self == Outcome::Completed
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
