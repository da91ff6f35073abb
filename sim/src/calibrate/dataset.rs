//! Reading a calibration dataset (`memfabric-validator calibrate-runs`):
//! every folder under `DATASET/runs/` is one measured run. A run that is
//! missing a file, has a file that does not parse, or whose parameters the
//! simulator cannot express is an error naming the run and the field.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::record::{RunRecord, RUN_RECORD_FILE};
use super::CalibrateError;
use crate::scenario::Scenario;

/// Folder of the runs inside a dataset.
pub const RUNS_DIR: &str = "runs";

/// Per-stage totals of the source (source.json's `stages`), as the
/// validator writes them.
pub use memfabric_formats::stages::StageTotals;

/// One round of the source report (source.json's `rounds`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MeasuredRound {
    /// `precopy` or `stopcopy`.
    pub phase: String,
    /// Pages sent.
    pub pages: u64,
    /// Stream bytes.
    pub bytes_on_wire: u64,
    /// Start, CLOCK_MONOTONIC ns.
    pub start_ns: u64,
    /// End (bytes acknowledged), ns.
    pub end_ns: u64,
    /// Whether it finished.
    pub complete: bool,
    /// Pages the guest dirtied while it ran (synced at the next round's start).
    #[serde(default)]
    pub dirty_pages: u64,
}

impl MeasuredRound {
    /// Duration, s.
    pub fn secs(&self) -> f64 {
        self.end_ns.saturating_sub(self.start_ns) as f64 * 1e-9
    }
}

#[derive(Debug, Deserialize)]
struct SourceJson {
    stages: StageTotals,
    cpu_s_source: f64,
    rounds: Vec<MeasuredRound>,
    /// What the run sent besides pages (vCPU state, control messages).
    #[serde(default)]
    bytes_control: Option<u64>,
}

/// One measured run, ready to replay.
#[derive(Debug, Clone)]
pub struct MeasuredRun {
    /// Its folder.
    pub dir: PathBuf,
    /// run.json.
    pub record: RunRecord,
    /// The simulator's scenario of the same case (scenario.toml).
    pub scenario: Scenario,
    /// Per-stage totals measured at the source.
    pub stages: StageTotals,
    /// Source migration thread CPU, s.
    pub cpu_s_source: f64,
    /// The rounds, stop-and-copy included.
    pub rounds: Vec<MeasuredRound>,
}

impl MeasuredRun {
    /// Pre-copy rounds completed, round 0 included (the `rounds` column's
    /// meaning in docs/results.md: the stop-and-copy is not counted).
    pub fn precopy_rounds(&self) -> u32 {
        self.rounds.iter().filter(|r| r.phase == "precopy" && r.complete).count() as u32
    }

    /// The run's id.
    pub fn id(&self) -> &str {
        &self.record.run_id
    }
}

fn bad(run: &str, field: &str, message: impl Into<String>) -> CalibrateError {
    CalibrateError::Run { run: run.to_string(), field: field.to_string(), message: message.into() }
}

/// Reads one run folder.
pub fn load_run(dir: &Path) -> Result<MeasuredRun, CalibrateError> {
    let run = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| dir.display().to_string());
    let read = |file: &str| {
        crate::input::read_text(&dir.join(file), crate::input::SCENARIO_BYTES_MAX, "a run file of a calibration dataset")
            .map_err(|e| bad(&run, file, format!("cannot read it: {e}")))
    };
    let record: RunRecord =
        serde_json::from_str(&read(RUN_RECORD_FILE)?).map_err(|e| bad(&run, RUN_RECORD_FILE, format!("not a run record: {e}")))?;
    if record.run_id != run {
        return Err(bad(&run, "run.json: run_id", format!("{:?} does not match its folder", record.run_id)));
    }
    for file in ["manifest.json", "migrations.parquet", "rounds.parquet"] {
        if !dir.join(file).is_file() {
            return Err(bad(&run, file, "missing: the run folder is incomplete (run calibrate-runs again to redo it)"));
        }
    }
    let h = &record.headline;
    let finite = [("total_time_s", h.total_time_s), ("downtime_ms", h.downtime_ms), ("cpu_s_source", h.cpu_s_source)];
    if let Some((name, v)) = finite.iter().find(|(_, v)| !(v.is_finite() && *v >= 0.0)) {
        return Err(bad(&run, &format!("run.json: headline.{name}"), format!("{v}: expected a number >= 0")));
    }
    let source: SourceJson =
        serde_json::from_str(&read("source.json")?).map_err(|e| bad(&run, "source.json", format!("not a source report: {e}")))?;
    let st = &source.stages;
    let stage_s = [("cpu_s_zero", st.cpu_s_zero), ("cpu_s_dedup", st.cpu_s_dedup), ("cpu_s_delta", st.cpu_s_delta), ("cpu_s_compress", st.cpu_s_compress), ("cpu_s_raw", st.cpu_s_raw), ("cpu_s_source", source.cpu_s_source)];
    if let Some((name, v)) = stage_s.iter().find(|(_, v)| !(v.is_finite() && *v >= 0.0)) {
        let at = if *name == "cpu_s_source" { "source.json: cpu_s_source".to_string() } else { format!("source.json: stages.{name}") };
        return Err(bad(&run, &at, format!("{v}: expected a number >= 0")));
    }
    let text = read("scenario.toml")?;
    let scenario = crate::scenario::parse(&text, &dir.join("scenario.toml").display().to_string())
        .map_err(|e| bad(&run, "scenario.toml", format!("the simulator cannot express this run: {e}")))?;
    if scenario.calibration.is_some() {
        return Err(bad(&run, "scenario.toml: scenario.calibration", "a measured run's scenario must not name a calibration profile"));
    }
    if scenario.vms.len() != 1 || scenario.operations.len() != 1 {
        return Err(bad(&run, "scenario.toml", "expected one VM and one migration (a validator run)"));
    }
    if scenario.fabric.links.iter().any(|l| !(l.bandwidth.0.is_finite() && l.bandwidth.0 > 1.0)) {
        return Err(bad(&run, "scenario.toml: links.bandwidth", "the simulator cannot express a link without a rate"));
    }
    if scenario.vms[0].memory.0 != record.params.memory_bytes {
        return Err(bad(&run, "scenario.toml: vms.memory", format!("{} B, run.json says {}", scenario.vms[0].memory.0, record.params.memory_bytes)));
    }
    let mut scenario = scenario;
    // The switchover carries what the validator measured besides pages (a
    // few KiB of vCPU state and messages). Validators before 2026-12-07
    // 08:00 wrote no `device_state`, so their scenarios carry the default
    // 1 MiB; the measurement is the run's, so it decides.
    if let Some(b) = source.bytes_control {
        scenario.vms[0].device_state = memfabric_migration::units::Bytes(b);
    }
    Ok(MeasuredRun {
        dir: dir.to_path_buf(),
        record,
        scenario,
        stages: source.stages,
        cpu_s_source: source.cpu_s_source,
        rounds: source.rounds,
    })
}

/// Reads every run of a dataset, in name order. Runs whose measured
/// migration did not complete are kept (the caller decides).
pub fn load(dataset: &Path) -> Result<Vec<MeasuredRun>, CalibrateError> {
    let runs_dir = dataset.join(RUNS_DIR);
    let entries = std::fs::read_dir(&runs_dir)
        .map_err(|e| CalibrateError::Dataset { path: runs_dir.display().to_string(), message: e.to_string() })?;
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(CalibrateError::Dataset { path: runs_dir.display().to_string(), message: "no runs".into() });
    }
    dirs.iter().map(|d| load_run(d)).collect()
}
