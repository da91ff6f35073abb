//! `memfabric calibrate DATASET --train SELECTOR --test SELECTOR --out PROFILE [--report DIR]`,
//! and loading a scenario with a calibration (`memfabric run --calibration`).
//!
//! Everything is read and checked, the fit and the evaluation done, before
//! anything is written; the profile is written atomically and the report
//! folder replaced all or nothing.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::atomic_dir::DirKind;

use super::evaluate;
use super::fit;
use super::profile::{Calibration, CalibrationAbout};
use super::selector::Selector;

/// `calibrate`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct CalibrateArgs {
    /// Dataset folder made by `memfabric-validator calibrate-runs`.
    pub dataset: PathBuf,
    /// Training runs (e.g. `seed=1`, `link=100Mbit/s,25ms & pipeline!=none`, `all`).
    #[arg(long)]
    pub train: String,
    /// Held-out test runs; must not share a (workload, seed) with training.
    #[arg(long)]
    pub test: String,
    /// Calibration profile to write (TOML).
    #[arg(long)]
    pub out: PathBuf,
    /// Folder for the evaluation (evaluation.md, evaluation.csv, plots); replaced.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// SimGrid peer driver (built by calibration/simgrid/build.sh): predicts the `none` test runs.
    #[arg(long)]
    pub simgrid: Option<PathBuf>,
}

/// Loads a scenario with its calibration: the profile `calibration` names
/// (the scenario's `[scenario] calibration` key is then not read), else the
/// one the scenario names, if any.
pub fn load_scenario(path: &Path, calibration: Option<&Path>) -> anyhow::Result<crate::scenario::Scenario> {
    let Some(c) = calibration else { return Ok(crate::scenario::load(path)?) };
    let mut sc = crate::scenario::load_uncalibrated(path)?;
    let (cal, source) = Calibration::load_with_source(c, &c.display().to_string())?;
    super::profile::apply_from_file(&mut sc, &cal, source);
    Ok(sc)
}

/// How a calibration profile file begins: `--out` replaces only such a file.
const PROFILE_MARKER: &str = "# memfabric calibration profile";
/// A calibration profile, in messages.
const PROFILE_KIND: &str = "a memfabric calibration profile";

/// The profile file's text.
pub fn profile_text(c: &Calibration) -> anyhow::Result<String> {
    Ok(format!(
        "{PROFILE_MARKER}, written by `memfabric calibrate` (docs/calibration.md).\n# Use with `memfabric run --calibration FILE`.\n\n{}",
        toml::to_string(c).context("encoding the calibration")?
    ))
}

/// Runs `calibrate`.
pub fn execute(args: &CalibrateArgs) -> anyhow::Result<()> {
    let train_sel = Selector::parse(&args.train)?;
    let test_sel = Selector::parse(&args.test)?;
    // Refuse a bad --out or --report before the (possibly long) fit.
    crate::atomic_dir::check_file_target(&args.out, PROFILE_MARKER, PROFILE_KIND)?;
    if let Some(dir) = &args.report {
        crate::atomic_dir::check_target(dir, DirKind::CalibrationReport, false)?;
    }
    let runs = super::dataset::load(&args.dataset)?;
    let (train, test) = super::split(&runs, &train_sel, &test_sel)?;
    let command = format!(
        "memfabric calibrate {} --train {:?} --test {:?} --out {}",
        args.dataset.display(),
        args.train,
        args.test,
        args.out.display()
    );
    let about = CalibrationAbout {
        command,
        dataset: args.dataset.display().to_string(),
        train: args.train.clone(),
        train_runs: train.len(),
        version: crate::VERSION.to_string(),
        loss: 0.0,
    };
    let c = fit::fit(&train, about);
    let rows = evaluate::evaluate(&test, &c, args.simgrid.as_deref()).map_err(anyhow::Error::msg).context("SimGrid peer")?;
    let spread = evaluate::spread(&runs);
    let md = evaluate::report_markdown(&rows, spread);
    let text = profile_text(&c)?;
    println!("fitted on {} runs (loss {:.4}):\n{}", train.len(), c.about.loss, text.lines().skip(3).collect::<Vec<_>>().join("\n"));
    println!("\nheld-out runs ({}):\n\n{md}", test.len());
    // Writing: the report folder (all or nothing), then the profile; both
    // follow the --out rule (never replace what this command did not write).
    if let Some(dir) = &args.report {
        let csv = evaluate::report_csv(&rows);
        crate::atomic_dir::replace_dir(dir, DirKind::CalibrationReport, false, |d| -> anyhow::Result<()> {
            std::fs::write(d.join("evaluation.md"), &md)?;
            std::fs::write(d.join("evaluation.csv"), &csv)?;
            std::fs::write(d.join("calibration.toml"), &text)?;
            evaluate::draw_plots(&rows, d).map_err(anyhow::Error::msg)?;
            let mut files: Vec<String> =
                std::fs::read_dir(d)?.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned())).collect::<Result<_, _>>()?;
            files.sort();
            let manifest = serde_json::json!({
                "tool": crate::atomic_dir::CALIBRATION_REPORT_TOOL,
                "version": crate::VERSION,
                "command": c.about.command,
                "files": files,
            });
            std::fs::write(d.join(crate::atomic_dir::MANIFEST), serde_json::to_string_pretty(&manifest)?)?;
            Ok(())
        })?;
        println!("report: {}", dir.display());
    }
    crate::atomic_dir::replace_file(&args.out, PROFILE_MARKER, PROFILE_KIND, text.as_bytes())?;
    println!("profile: {}", args.out.display());
    Ok(())
}
