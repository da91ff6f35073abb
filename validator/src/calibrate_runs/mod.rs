//! `memfabric-validator calibrate-runs --matrix FILE --out DIR`: runs a
//! matrix of live migrations ([`matrix`]) and keeps them as a calibration
//! dataset for `memfabric calibrate`.
//!
//! Layout of `DIR`:
//!
//! ```text
//! DIR/matrix.toml            the matrix file, copied
//! DIR/index.csv              one row per run of the matrix ([`index`])
//! DIR/runs/<run id>/         migrate's result folder (scenario.toml, the
//!                            migrations and rounds tables, manifest.json,
//!                            source.json, destination.json) plus run.json
//!                            (memfabric_formats::record::RunRecord)
//! ```
//!
//! A run folder is complete when its `run.json` reads back: `migrate`
//! replaces the folder atomically and `run.json` is written after it, so a
//! re-invocation skips complete runs and redoes the rest (resumable). A run
//! that fails to produce a folder (e.g. a VMM crashed) is reported in the
//! index as `error` and retried next time; a migration that ran and failed
//! is a measured outcome and is kept. Ctrl-C stops after cleaning up the
//! run in progress (nothing of it is written).

pub mod index;
pub mod matrix;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use memfabric_migration::units::Bytes;
use memfabric_formats::record::{RunHeadline, RunParams, RunRecord, RUN_RECORD_FILE};

use crate::migrate::orchestrate::{self, GuestArgs, MigrateArgs, MigrateOutcome};
use crate::migrate::write_json;
use matrix::{Matrix, RunSpec};

/// `calibrate-runs`' options.
#[derive(Debug, Clone, clap::Args)]
pub struct CalibrateRunsArgs {
    /// The run matrix (TOML; see calibration/matrices/ and docs/calibration.md).
    #[arg(long)]
    pub matrix: PathBuf,
    /// Dataset folder (created; complete runs already in it are kept and skipped).
    #[arg(long)]
    pub out: PathBuf,
    /// Only list the runs and which are already complete.
    #[arg(long)]
    pub dry_run: bool,
}

/// Folder of the runs inside a dataset.
pub const RUNS_DIR: &str = "runs";

/// The 1-minute load average (/proc/loadavg), NaN where unreadable.
pub fn load_avg_1m() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// The record of a complete run folder, None when incomplete or unreadable.
pub fn complete_record(dir: &Path) -> Option<RunRecord> {
    let text = std::fs::read_to_string(dir.join(RUN_RECORD_FILE)).ok()?;
    let rec: RunRecord = serde_json::from_str(&text).ok()?;
    ["manifest.json", "migrations.parquet", "rounds.parquet", "scenario.toml"]
        .iter()
        .all(|f| dir.join(f).is_file())
        .then_some(rec)
}

fn migrate_args(m: &Matrix, run: &RunSpec, out: PathBuf) -> MigrateArgs {
    let s = &m.settings;
    MigrateArgs {
        guest: GuestArgs {
            mem: run.memory,
            workload: run.workload.clone(),
            dirty_rate: Some(run.dirty_rate_pages_per_s),
            seed: run.seed,
            pipeline: run.pipeline,
            downtime_limit: s.downtime_limit,
            max_rounds: s.max_rounds,
            on_non_convergence: s.on_non_convergence,
            warmup: s.warmup,
            io_timeout: memfabric_migration::units::Nanos::from_millis(10_000),
            watch: memfabric_migration::units::Nanos::from_millis(1_000),
            no_integrity_check: !s.integrity_check,
            ram_split: Bytes(3 << 30),
            cpu_bound: false,
            auto_converge: false,
            cpu: Default::default(),
            mechanism: memfabric_migration::record::Mechanism::PreCopy,
            multifd: Default::default(),
        },
        gang: Default::default(),
        fault: None,
        link: run.link.clone(),
        tls: None,
        dest_cpu_model: None,
        dest_cpu_features: None,
        force: false,
        out,
    }
}

fn params(m: &Matrix, run: &RunSpec) -> RunParams {
    RunParams {
        workload: run.workload.clone(),
        dirty_rate_pages_per_s: run.dirty_rate_pages_per_s,
        memory_bytes: run.memory.0,
        link: run.link.as_ref().map_or_else(|| "loopback".to_string(), |l| l.to_string()),
        pipeline: run.pipeline.to_string(),
        seed: run.seed,
        repeat: run.repeat,
        integrity_check: m.settings.integrity_check,
    }
}

fn headline(o: &MigrateOutcome) -> RunHeadline {
    let src = &o.source;
    RunHeadline {
        outcome: crate::results::outcome(o),
        total_time_s: (src.end_ns.saturating_sub(src.start_ns)) as f64 / 1e9,
        downtime_ms: o.downtime_ms.unwrap_or(0.0),
        bytes_on_wire: src.bytes_on_wire,
        rounds: src.precopy_rounds(),
        cpu_s_source: src.cpu_s_source,
        cpu_s_destination: o.destination.as_ref().map_or(0.0, |d| d.cpu_s_destination),
        source_verify_ms: src.source_verify_ms,
    }
}

/// Refuses an `--out` this command must not write into: anything but a
/// missing or empty folder, or a dataset it made from the same matrix (its
/// `matrix.toml` equal to the one given), so resuming never overwrites a
/// user's file.
fn check_out(out: &Path, matrix_path: &Path) -> Result<(), memfabric_formats::atomic_dir::OutDirError> {
    use memfabric_formats::atomic_dir::OutDirError;
    let meta = match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => return Err(OutDirError::Foreign { path: out.into() }),
        Ok(m) => m,
    };
    if !meta.is_dir() {
        return Err(OutDirError::NotAFolder { path: out.into(), what: "not a folder" });
    }
    let empty = std::fs::read_dir(out).map(|mut d| d.next().is_none()).unwrap_or(false);
    if empty {
        return Ok(());
    }
    let copy = out.join("matrix.toml");
    if !copy.is_file() {
        return Err(OutDirError::Foreign { path: out.into() });
    }
    let same = std::fs::read(&copy).ok().zip(std::fs::read(matrix_path).ok()).is_some_and(|(a, b)| a == b);
    if same {
        Ok(())
    } else {
        Err(OutDirError::NotOurFile { path: copy, expected: "the matrix given (a dataset resumes only with its own matrix)" })
    }
}

/// Runs `calibrate-runs`.
pub fn run(args: &CalibrateRunsArgs) -> anyhow::Result<()> {
    let m = matrix::load(&args.matrix)?;
    check_out(&args.out, &args.matrix)?;
    let runs_dir = args.out.join(RUNS_DIR);
    let done: Vec<bool> = m.runs.iter().map(|r| complete_record(&runs_dir.join(&r.id)).is_some()).collect();
    let todo = done.iter().filter(|d| !**d).count();
    if args.dry_run {
        for (r, d) in m.runs.iter().zip(&done) {
            println!("{} {}", if *d { "complete" } else { "to run  " }, r.id);
        }
        println!("{} runs, {} complete, {} to run", m.runs.len(), m.runs.len() - todo, todo);
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if m.needs_link() && unsafe { libc::geteuid() } != 0 {
        bail!("{}: the matrix has emulated links, which need root (network namespaces and TUN)", args.matrix.display());
    }
    crate::kvm::kvm_available().map_err(|e| anyhow::anyhow!("{e}: the validator needs /dev/kvm"))?;
    std::fs::create_dir_all(&runs_dir).with_context(|| format!("creating {}", runs_dir.display()))?;
    let matrix_copy = args.out.join("matrix.toml");
    let text = std::fs::read(&args.matrix).with_context(|| format!("reading {}", args.matrix.display()))?;
    std::fs::write(&matrix_copy, text).with_context(|| format!("writing {}", matrix_copy.display()))?;

    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(m.runs.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} runs (eta {eta}) {msg}")
                .expect("template")
                .progress_chars("=> "),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_position((m.runs.len() - todo) as u64);
    let mut errors: Vec<(String, String)> = Vec::new();
    for (run, d) in m.runs.iter().zip(&done) {
        if *d {
            continue;
        }
        bar.set_message(run.id.clone());
        if bar.is_hidden() {
            eprintln!("calibrate-runs: {} ({} of {})", run.id, bar.position() + 1, m.runs.len());
        }
        let dir = runs_dir.join(&run.id);
        let load = load_avg_1m();
        match orchestrate::migrate(&migrate_args(&m, run, dir.clone())) {
            Ok(o) => {
                let rec = RunRecord {
                    run_id: run.id.clone(),
                    params: params(&m, run),
                    load_avg_1m_at_start: load,
                    headline: headline(&o),
                };
                write_json(&dir.join(RUN_RECORD_FILE), &rec)
                    .with_context(|| format!("writing {}", dir.join(RUN_RECORD_FILE).display()))?;
            }
            Err(e) => {
                if crate::interrupt::interrupted() {
                    bar.abandon();
                    index::write(&args.out, &m, &errors)?;
                    return Err(e.context(format!("run {}", run.id)));
                }
                bar.println(format!("run {} failed to run: {e:#}", run.id));
                errors.push((run.id.clone(), format!("{e:#}")));
            }
        }
        bar.inc(1);
        index::write(&args.out, &m, &errors)?;
    }
    bar.finish_and_clear();
    index::write(&args.out, &m, &errors)?;
    println!(
        "{} runs ({} run now, {} failed to run); index: {}",
        m.runs.len(),
        todo,
        errors.len(),
        args.out.join(index::INDEX_FILE).display()
    );
    if !errors.is_empty() {
        bail!("{} runs did not run (see the index); run the same command again to retry them", errors.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_out;

    #[test]
    fn out_is_a_new_or_empty_folder_or_a_dataset_of_the_same_matrix() {
        let base = std::env::temp_dir().join(format!("memfabric-calibrate-runs-out-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let matrix = base.join("m.toml");
        std::fs::write(&matrix, "a").unwrap();
        let out = base.join("out");
        assert!(check_out(&out, &matrix).is_ok(), "a missing folder");
        std::fs::create_dir(&out).unwrap();
        assert!(check_out(&out, &matrix).is_ok(), "an empty folder");
        std::fs::write(out.join("thesis.txt"), "x").unwrap();
        assert!(check_out(&out, &matrix).unwrap_err().is_refusal(), "a user's folder is refused");
        std::fs::write(out.join("matrix.toml"), "b").unwrap();
        assert!(check_out(&out, &matrix).unwrap_err().is_refusal(), "a dataset of another matrix is refused");
        std::fs::write(out.join("matrix.toml"), "a").unwrap();
        assert!(check_out(&out, &matrix).is_ok(), "its own dataset resumes");
        assert!(check_out(&matrix, &matrix).unwrap_err().is_refusal(), "a file is refused");
        assert_eq!(std::fs::read_to_string(out.join("thesis.txt")).unwrap(), "x", "nothing touched");
        let _ = std::fs::remove_dir_all(&base);
    }
}
