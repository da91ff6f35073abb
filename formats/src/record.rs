//! `run.json`: what `memfabric-validator calibrate-runs` records beside each
//! measured run's result folder, and what `memfabric calibrate` selects on.
//!
//! The validator writes it (it depends on this crate), the simulator reads
//! it, so there is one definition of a dataset run.

use memfabric_migration::record::Outcome;
use serde::{Deserialize, Serialize};

/// File name of the record inside a run folder.
pub const RUN_RECORD_FILE: &str = "run.json";

/// The matrix parameters of one run: what a selector can name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunParams {
    /// Workload archetype of the guest (`web`, `hpc`, `idle-linux`).
    pub workload: String,
    /// Page writes per second of the guest.
    pub dirty_rate_pages_per_s: f64,
    /// Guest RAM, bytes.
    pub memory_bytes: u64,
    /// `loopback` or the emulated WAN link's spec (`100Mbit/s,25ms`).
    pub link: String,
    /// Canonical pipeline (strategy) name.
    pub pipeline: String,
    /// Seed of the guest's content and dirtying.
    pub seed: u64,
    /// Repetition index of the same parameters (0, 1, ...).
    pub repeat: u32,
    /// Whether the switchover hashed RAM for the integrity check.
    pub integrity_check: bool,
}

/// Headline measurements of a run (the full ones are in its tables).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunHeadline {
    /// Outcome as in `migrations.outcome` (written by its name; an unknown
    /// name is an error naming the file, line and column).
    pub outcome: Outcome,
    /// Source start to the end of the migration, s.
    pub total_time_s: f64,
    /// Source pause to destination resume, ms.
    pub downtime_ms: f64,
    /// Bytes of the migration stream.
    pub bytes_on_wire: u64,
    /// Pre-copy rounds completed, round 0 included (as `migrations.rounds`;
    /// datasets made before 2026-12-07 05:00 counted the stop-and-copy too:
    /// `memfabric calibrate` counts from source.json).
    pub rounds: u32,
    /// Source migration thread CPU, s.
    pub cpu_s_source: f64,
    /// Destination receiving thread CPU, s.
    pub cpu_s_destination: f64,
    /// Source integrity hashing at the pause, ms (None when off).
    pub source_verify_ms: Option<f64>,
}

/// `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// Folder name of the run under the dataset's `runs/`.
    pub run_id: String,
    /// The parameters.
    pub params: RunParams,
    /// The 1-minute load average of the machine when the run started.
    pub load_avg_1m_at_start: f64,
    /// What was measured.
    pub headline: RunHeadline,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_json(outcome: &str) -> String {
        format!(
            r#"{{
  "run_id": "r1",
  "params": {{ "workload": "web", "dirty_rate_pages_per_s": 1000.0, "memory_bytes": 268435456,
    "link": "loopback", "pipeline": "none", "seed": 1, "repeat": 0, "integrity_check": true }},
  "load_avg_1m_at_start": 0.5,
  "headline": {{ "outcome": "{outcome}", "total_time_s": 1.0, "downtime_ms": 2.0, "bytes_on_wire": 3,
    "rounds": 2, "cpu_s_source": 0.1, "cpu_s_destination": 0.2, "source_verify_ms": null }}
}}"#
        )
    }

    #[test]
    fn outcomes_read_and_write_by_name() {
        for o in Outcome::ALL {
            let r: RunRecord = serde_json::from_str(&record_json(o.as_str())).unwrap();
            assert_eq!(r.headline.outcome, o);
            let back = serde_json::to_string(&r).unwrap();
            assert!(back.contains(&format!("\"outcome\":\"{o}\"")), "{back}");
        }
    }

    #[test]
    fn an_unknown_outcome_names_the_value_and_where() {
        let e = serde_json::from_str::<RunRecord>(&record_json("interrupted")).unwrap_err().to_string();
        assert!(e.contains("unknown variant `interrupted`, expected one of `completed`"), "{e}");
        assert!(e.contains("at line 6 column"), "{e}");
    }
}
