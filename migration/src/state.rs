//! The migration state machine.
//!
//! ```text
//!   Setup ──► PreCopy ──► StopAndCopy ──► Completed
//!     │        │   ▲          ▲   │
//!     │        └───┘ rounds   │   └──► PostCopy ──► Completed
//!     └───────────────────────┘
//!       (cold stop-and-copy, or the state transfer that starts post-copy)
//!   any non-final state ──► Failed
//! ```
//!
//! `PostCopy` is only entered from `StopAndCopy`: the VM pauses while its vCPU
//! and device state cross, whether post-copy is the mechanism, the second half
//! of hybrid, or the fallback of a pre-copy that did not converge.
//! [`MigrationPhase::transition`] refuses any other move with a typed error, so
//! a driver bug shows up as an error rather than as a wrong result.

use serde::{Deserialize, Serialize};

/// Where a migration is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationPhase {
    /// Connection set up, nothing sent yet.
    Setup,
    /// Iterative pre-copy rounds; the VM runs at the source.
    PreCopy,
    /// The VM is paused; the last pages and the device state are being sent.
    StopAndCopy,
    /// The VM runs at the destination and pulls missing pages.
    PostCopy,
    /// The VM runs at the destination with all its memory.
    Completed,
    /// The migration ended without moving the VM (see the outcome for where it is).
    Failed,
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("migration cannot go from {from:?} to {to:?}")]
pub struct BadTransition {
    /// The phase the migration was in.
    pub from: MigrationPhase,
    /// The phase that was asked for.
    pub to: MigrationPhase,
}

impl MigrationPhase {
    /// Whether the phase is final.
    pub fn is_final(self) -> bool {
        matches!(self, MigrationPhase::Completed | MigrationPhase::Failed)
    }

    /// Moves to `to` if the state machine allows it.
    pub fn transition(self, to: MigrationPhase) -> Result<MigrationPhase, BadTransition> {
        use MigrationPhase::*;
        let ok = match (self, to) {
            (from, Failed) => !from.is_final(),
            (Setup, PreCopy | StopAndCopy) => true,
            (PreCopy, PreCopy | StopAndCopy) => true,
            (StopAndCopy, Completed | PostCopy) => true,
            (PostCopy, Completed) => true,
            _ => false,
        };
        if ok {
            Ok(to)
        } else {
            Err(BadTransition { from: self, to })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MigrationPhase::*;

    #[test]
    fn allowed_paths() {
        let p = Setup.transition(PreCopy).unwrap().transition(PreCopy).unwrap();
        let p = p.transition(StopAndCopy).unwrap().transition(PostCopy).unwrap();
        assert_eq!(p.transition(Completed).unwrap(), Completed);
    }

    #[test]
    fn refused_paths() {
        assert!(Completed.transition(Failed).is_err());
        assert!(Setup.transition(Completed).is_err());
        assert!(PostCopy.transition(PreCopy).is_err());
        let e = Failed.transition(PreCopy).unwrap_err();
        assert_eq!(e.to_string(), "migration cannot go from Failed to PreCopy");
    }
}
