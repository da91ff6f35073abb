//! What a run leaves behind: `results/<scenario>/` with Parquet tables
//! (`migrations`, `rounds`, `links`), `manifest.json`, `plots/` (PNG and
//! SVG) and `report.html` (see [`crate::report`]), plus the summary table printed on stdout.
//!
//! Results are written to a hidden sibling folder first and renamed into place
//! only when everything is written, so a failed run never leaves a half-written
//! results folder, and an earlier complete result is replaced only by a
//! complete one. Column meanings are documented in `docs/results.md`.

mod archetypes;
mod metrics;
mod plots;
mod summary;
mod tables;

pub use archetypes::archetype_table;
pub use metrics::{op_metrics, OpMetrics};
pub use summary::{percentile, summary, summary_all, WIDTH as SUMMARY_WIDTH};
pub use tables::{energy_frame, fabric_events_frame, links_frame, migrations_frame, read_parquet, rounds_frame, vm_availability_frame, write_parquet};
pub(crate) use plots::register_font;

use crate::run::RunOutput;
use std::path::Path;

pub use memfabric_formats::tables::OutputError;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io { path: path.display().to_string(), source }
}

/// The manifest: what produced a result folder.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Manifest {
    /// Variants in the tables (`scenario` for a plain run, else the strategies compared).
    pub variants: Vec<String>,
    /// Always `"memfabric-sim"`.
    pub tool: &'static str,
    /// Simulator version.
    pub version: &'static str,
    /// Scenario name.
    pub scenario: String,
    /// xxh3-128 of the scenario file's text.
    pub scenario_hash: String,
    /// Seed used.
    pub seed: u64,
    /// CPU-cost profile used: "built-in" (profiles/default.toml) or its path.
    pub cpu_profile: String,
    /// Calibration profile applied, if any: name, path as written, xxh3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::calibrate::profile::CalibrationSource>,
    /// Traces replayed: path as written and xxh3 of the files (absent when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub traces: Vec<String>,
    /// Simulated time at the end of the run, seconds.
    pub simulated_time_s: f64,
    /// Events processed.
    pub events_processed: u64,
    /// Rows in each table.
    pub rows: ManifestRows,
    /// Files written, relative to the folder.
    pub files: Vec<String>,
}

/// Row counts of the tables.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ManifestRows {
    /// `migrations.parquet`
    pub migrations: usize,
    /// `rounds.parquet`
    pub rounds: usize,
    /// `links.parquet`
    pub links: usize,
    /// `fabric_events.parquet` (only when something failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fabric_events: Option<usize>,
    /// `vm_availability.parquet` (only when something failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_availability: Option<usize>,
    /// `energy.parquet` (only with `[power]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub energy: Option<usize>,
}

/// Whether a run has the energy table (the scenario has `[power]`).
fn has_energy(outs: &[RunOutput]) -> bool {
    outs.iter().any(|o| !o.energy.is_empty())
}

/// Whether a run has the failure tables: a host failed in some variant (so
/// runs without host failures write the files they always wrote).
fn has_failure_tables(outs: &[RunOutput]) -> bool {
    outs.iter().any(RunOutput::had_host_failures)
}

/// Builds the manifest of a run's variants.
pub fn manifest(outs: &[RunOutput], with_plots: bool) -> Manifest {
    let out = &outs[0];
    let mut files: Vec<String> =
        ["migrations.parquet", "rounds.parquet", "links.parquet", "manifest.json", "report.html"].iter().map(|s| s.to_string()).collect();
    let failures = has_failure_tables(outs);
    if failures {
        files.extend(["fabric_events.parquet".to_string(), "vm_availability.parquet".to_string()]);
    }
    let energy = has_energy(outs);
    if energy {
        files.push("energy.parquet".to_string());
    }
    if with_plots {
        for p in plots::plot_files(outs) {
            files.push(format!("plots/{p}.png"));
            files.push(format!("plots/{p}.svg"));
        }
    }
    Manifest {
        variants: outs.iter().map(|o| o.variant.clone()).collect(),
        tool: "memfabric-sim",
        version: crate::VERSION,
        scenario: out.scenario.clone(),
        scenario_hash: out.scenario_hash.clone(),
        seed: out.seed,
        cpu_profile: out.cpu_profile.clone(),
        calibration: out.calibration.clone(),
        traces: out.traces.clone(),
        simulated_time_s: outs.iter().map(|o| o.end_time.as_secs_f64()).fold(0.0, f64::max),
        events_processed: outs.iter().map(|o| o.events_processed).sum(),
        rows: ManifestRows {
            migrations: outs.iter().map(|o| o.migrations.len()).sum(),
            rounds: outs.iter().map(|o| o.rounds.len()).sum(),
            links: outs.iter().map(|o| o.links.len()).sum(),
            fabric_events: failures.then(|| outs.iter().map(|o| o.fabric_events.len()).sum()),
            vm_availability: failures.then(|| outs.iter().map(|o| o.vm_availability.len()).sum()),
            energy: energy.then(|| outs.iter().map(|o| o.energy.len()).sum()),
        },
        files,
    }
}

/// Writes all results of a run's variants into `dir`, replacing a previous
/// run result there atomically; any other non-empty `dir` is refused, and
/// `force` lets another memfabric folder be replaced (see
/// [`crate::atomic_dir`]).
pub fn write_results(outs: &[RunOutput], dir: &Path, with_plots: bool, force: bool) -> Result<(), OutputError> {
    assert!(!outs.is_empty(), "a run has at least one variant");
    crate::atomic_dir::replace_dir(dir, crate::atomic_dir::DirKind::SimResult, force, |staging| {
        write_into(outs, staging, with_plots)
    })
}

/// Key-value metadata stored in every Parquet file of a run.
pub fn provenance(out: &RunOutput) -> Vec<(String, String)> {
    let mut meta = vec![
        ("memfabric.tool".into(), "memfabric-sim".into()),
        ("memfabric.version".into(), crate::VERSION.into()),
        ("memfabric.scenario".into(), out.scenario.clone()),
        ("memfabric.scenario_hash".into(), out.scenario_hash.clone()),
        ("memfabric.seed".into(), out.seed.to_string()),
        ("memfabric.cpu_profile".into(), out.cpu_profile.clone()),
    ];
    if !out.traces.is_empty() {
        meta.push(("memfabric.traces".into(), out.traces.join("; ")));
    }
    meta
}

fn write_into(outs: &[RunOutput], dir: &Path, with_plots: bool) -> Result<(), OutputError> {
    let meta = provenance(&outs[0]);
    let migrations: Vec<(&str, &[_])> = outs.iter().map(|o| (o.variant.as_str(), o.migrations.as_slice())).collect();
    let rounds: Vec<(&str, &[_])> = outs.iter().map(|o| (o.variant.as_str(), o.rounds.as_slice())).collect();
    let links: Vec<(&str, &[_])> = outs.iter().map(|o| (o.variant.as_str(), o.links.as_slice())).collect();
    tables::write_parquet(&mut migrations_frame(&migrations), &dir.join("migrations.parquet"), &meta)?;
    tables::write_parquet(&mut rounds_frame(&rounds), &dir.join("rounds.parquet"), &meta)?;
    tables::write_parquet(&mut links_frame(&links), &dir.join("links.parquet"), &meta)?;
    if has_failure_tables(outs) {
        let events: Vec<(&str, &[_])> = outs.iter().map(|o| (o.variant.as_str(), o.fabric_events.as_slice())).collect();
        let vms: Vec<(&str, &[_])> = outs.iter().map(|o| (o.variant.as_str(), o.vm_availability.as_slice())).collect();
        tables::write_parquet(&mut fabric_events_frame(&events), &dir.join("fabric_events.parquet"), &meta)?;
        tables::write_parquet(&mut vm_availability_frame(&vms), &dir.join("vm_availability.parquet"), &meta)?;
    }
    if has_energy(outs) {
        let rows: Vec<(&str, &[_])> = outs.iter().map(|o| (o.variant.as_str(), o.energy.as_slice())).collect();
        tables::write_parquet(&mut energy_frame(&rows), &dir.join("energy.parquet"), &meta)?;
    }
    if with_plots {
        let plot_dir = dir.join("plots");
        // Not `create_dir_all`: if the staging folder was removed (on a
        // signal), it must not be created again.
        std::fs::create_dir(&plot_dir).map_err(io_err(&plot_dir))?;
        plots::draw_all(outs, &plot_dir)?;
    }
    let m = manifest(outs, with_plots);
    let path = dir.join("manifest.json");
    let mut text = serde_json::to_string_pretty(&m).expect("manifest serializes");
    text.push('\n');
    std::fs::write(&path, text).map_err(io_err(&path))?;
    crate::report::write_report(dir).map_err(|e| OutputError::Plot { path: dir.join("report.html").display().to_string(), message: e.to_string() })?;
    Ok(())
}
