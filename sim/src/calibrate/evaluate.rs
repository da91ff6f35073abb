//! Held-out evaluation: every test run predicted by the built-in model
//! (uncalibrated), the calibrated model, CloudSim's formula
//! (`RAM / (bandwidth × 0.5)`, time only) and, on `none` runs, SimGrid
//! 3.32's live-migration model (time only, through the driver built by
//! `calibration/simgrid/build.sh`), with relative errors, medians, the
//! run-to-run spread of repeated runs, and predicted-vs-measured plots.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::dataset::MeasuredRun;
use super::fit::{predict, rel, Prediction};
use super::profile::Calibration;

/// The downtime goal: within max(10 %, 5 ms).
pub const DOWNTIME_GOAL_REL: f64 = 0.10;
/// The downtime goal's absolute floor, ms.
pub const DOWNTIME_GOAL_MS: f64 = 5.0;

/// One test run, measured and predicted.
#[derive(Debug, Clone)]
pub struct EvalRow {
    /// Run id.
    pub run_id: String,
    /// Link as in the matrix.
    pub link: String,
    /// Pipeline.
    pub pipeline: String,
    /// Measured: time s, downtime ms, bytes, rounds.
    pub measured: Prediction,
    /// The built-in model.
    pub uncalibrated: Prediction,
    /// The calibrated model.
    pub calibrated: Prediction,
    /// CloudSim's formula, s.
    pub cloudsim_time_s: f64,
    /// SimGrid's model, s (`none` runs, when the driver was given).
    pub simgrid_time_s: Option<f64>,
}

/// Medians of one model over the test runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Medians {
    /// Median |relative error| of total time.
    pub time: f64,
    /// Median |relative error| of bytes on the wire.
    pub bytes: f64,
    /// Median |relative error| of downtime.
    pub downtime: f64,
    /// Median |error| of downtime, ms.
    pub downtime_ms: f64,
    /// Fraction of runs whose downtime is within max(10 %, 5 ms).
    pub downtime_within_goal: f64,
    /// Fraction of runs with the exact round count.
    pub rounds_exact: f64,
}

/// The median of `v` (NaN when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn measured(r: &MeasuredRun) -> Prediction {
    let h = &r.record.headline;
    Prediction {
        total_time_s: h.total_time_s,
        downtime_ms: h.downtime_ms,
        bytes_on_wire: h.bytes_on_wire as f64,
        rounds: r.precopy_rounds(),
        pages_compressed: r.stages.pages_compressed as f64,
        bytes_compressed: r.stages.bytes_compressed as f64,
        pages_delta: r.stages.pages_delta as f64,
        bytes_delta: r.stages.bytes_delta as f64,
    }
}

/// CloudSim Plus's migration time: RAM / (bandwidth × 0.5), s.
pub fn cloudsim_time_s(r: &MeasuredRun) -> f64 {
    let bw = r.scenario.fabric.links.first().map_or(f64::NAN, |l| l.bandwidth.0);
    r.record.params.memory_bytes as f64 / (bw * 0.5)
}

/// SimGrid's prediction of a `none` run through `driver`
/// (`calibration/simgrid/driver.cpp`): RAM, link rate and latency as
/// replayed, dirty bytes/s = page writes/s × 4096, working set as in the
/// scenario.
pub fn simgrid_time_s(driver: &Path, r: &MeasuredRun) -> Result<f64, String> {
    let link = r.scenario.fabric.links.first().ok_or("no link")?;
    let w = &r.scenario.vms[0].workload;
    let ram = r.record.params.memory_bytes as f64;
    let out = std::process::Command::new(driver)
        .arg(format!("{ram}"))
        .arg(format!("{}", link.bandwidth.0))
        .arg(format!("{}", link.latency.as_secs_f64()))
        .arg(format!("{}", w.page_write_rate * memfabric_migration::PAGE_SIZE_BYTES as f64))
        .arg(format!("{}", w.working_set.0 * ram))
        .output()
        .map_err(|e| format!("{}: {e}", driver.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("total_time_s=").and_then(|v| v.trim().parse().ok()))
        .ok_or_else(|| format!("{}: no total_time_s in its output ({}): {}", driver.display(), out.status, String::from_utf8_lossy(&out.stderr).trim()))
}

/// Predicts every test run (SimGrid on `none` runs when `simgrid` names its driver).
pub fn evaluate(test: &[&MeasuredRun], c: &Calibration, simgrid: Option<&Path>) -> Result<Vec<EvalRow>, String> {
    test.iter()
        .map(|r| {
            let simgrid_time_s = match simgrid {
                Some(d) if r.record.params.pipeline == "none" => Some(simgrid_time_s(d, r)?),
                _ => None,
            };
            Ok(EvalRow {
            run_id: r.id().to_string(),
            link: r.record.params.link.clone(),
            pipeline: r.record.params.pipeline.clone(),
            measured: measured(r),
            uncalibrated: predict(r, None),
            calibrated: predict(r, Some(c)),
            cloudsim_time_s: cloudsim_time_s(r),
            simgrid_time_s,
        })
        })
        .collect()
}

/// Medians of a model's predictions (`pick` chooses it) against the measurements.
pub fn medians(rows: &[EvalRow], pick: impl Fn(&EvalRow) -> Prediction) -> Medians {
    let n = rows.len().max(1) as f64;
    let within = |r: &EvalRow| {
        let p = pick(r);
        (p.downtime_ms - r.measured.downtime_ms).abs() <= (DOWNTIME_GOAL_REL * r.measured.downtime_ms).max(DOWNTIME_GOAL_MS)
    };
    Medians {
        time: median(rows.iter().map(|r| rel(pick(r).total_time_s, r.measured.total_time_s).abs()).collect()),
        bytes: median(rows.iter().map(|r| rel(pick(r).bytes_on_wire, r.measured.bytes_on_wire).abs()).collect()),
        downtime: median(rows.iter().map(|r| rel(pick(r).downtime_ms, r.measured.downtime_ms).abs()).collect()),
        downtime_ms: median(rows.iter().map(|r| (pick(r).downtime_ms - r.measured.downtime_ms).abs()).collect()),
        downtime_within_goal: rows.iter().filter(|r| within(r)).count() as f64 / n,
        rounds_exact: rows.iter().filter(|r| pick(r).rounds == r.measured.rounds).count() as f64 / n,
    }
}

/// Run-to-run spread of repeated runs (same parameters, different repeat):
/// per group, (max − min) / mean of time, bytes and downtime; the medians
/// over groups and the number of groups.
pub fn spread(all: &[MeasuredRun]) -> Option<(f64, f64, f64, usize)> {
    let mut groups: std::collections::BTreeMap<String, Vec<&MeasuredRun>> = Default::default();
    for r in all {
        let p = &r.record.params;
        let key = format!("{}|{}|{}|{}|{}|{}", p.workload, p.dirty_rate_pages_per_s, p.memory_bytes, p.link, p.pipeline, p.seed);
        groups.entry(key).or_default().push(r);
    }
    let groups: Vec<_> = groups.into_values().filter(|g| g.len() >= 2).collect();
    if groups.is_empty() {
        return None;
    }
    let range = |g: &[&MeasuredRun], f: &dyn Fn(&MeasuredRun) -> f64| {
        let v: Vec<f64> = g.iter().map(|r| f(r)).collect();
        let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(*x), b.max(*x)));
        (hi - lo) / (v.iter().sum::<f64>() / v.len() as f64)
    };
    let t = median(groups.iter().map(|g| range(g, &|r| r.record.headline.total_time_s)).collect());
    let b = median(groups.iter().map(|g| range(g, &|r| r.record.headline.bytes_on_wire as f64)).collect());
    let d = median(groups.iter().map(|g| range(g, &|r| r.record.headline.downtime_ms)).collect());
    Some((t, b, d, groups.len()))
}

fn pct(v: f64) -> String {
    format!("{:+.1}%", v * 100.0)
}

/// The per-run table and the medians, as Markdown.
pub fn report_markdown(rows: &[EvalRow], spread: Option<(f64, f64, f64, usize)>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "| run | measured s / ms / MB / rounds | built-in model | error t / B / dt | calibrated | error t / B / dt | CloudSim s (error) | SimGrid s (error) |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    let cell = |p: &Prediction| format!("{:.2} / {:.0} / {:.1} / {}", p.total_time_s, p.downtime_ms, p.bytes_on_wire / 1e6, p.rounds);
    let errs = |p: &Prediction, m: &Prediction| {
        format!(
            "{} / {} / {}",
            pct(rel(p.total_time_s, m.total_time_s)),
            pct(rel(p.bytes_on_wire, m.bytes_on_wire)),
            pct(rel(p.downtime_ms, m.downtime_ms))
        )
    };
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.1} ({}) | {} |",
            r.run_id,
            cell(&r.measured),
            cell(&r.uncalibrated),
            errs(&r.uncalibrated, &r.measured),
            cell(&r.calibrated),
            errs(&r.calibrated, &r.measured),
            r.cloudsim_time_s,
            pct(rel(r.cloudsim_time_s, r.measured.total_time_s)),
            r.simgrid_time_s.map_or("".to_string(), |t| format!("{t:.1} ({})", pct(rel(t, r.measured.total_time_s))))
        );
    }
    let u = medians(rows, |r| r.uncalibrated);
    let c = medians(rows, |r| r.calibrated);
    let cs = median(rows.iter().map(|r| rel(r.cloudsim_time_s, r.measured.total_time_s).abs()).collect());
    let _ = writeln!(s, "\nMedians over {} held-out runs:\n", rows.len());
    let _ = writeln!(s, "| model | \\|time error\\| | \\|bytes error\\| | \\|downtime error\\| | downtime within max(10 %, 5 ms) | rounds exact |");
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for (name, m) in [("goal", None), ("built-in", Some(u)), ("calibrated", Some(c))] {
        match m {
            None => {
                let _ = writeln!(s, "| goal | ≤ 5 % | ≤ 2 % | | ≥ 50 % of runs (median) | ≥ 90 % |");
            }
            Some(m) => {
                let _ = writeln!(
                    s,
                    "| {name} | {:.1} % | {:.1} % | {:.1} % ({:.0} ms) | {:.0} % | {:.0} % |",
                    m.time * 100.0,
                    m.bytes * 100.0,
                    m.downtime * 100.0,
                    m.downtime_ms,
                    m.downtime_within_goal * 100.0,
                    m.rounds_exact * 100.0
                );
            }
        }
    }
    let _ = writeln!(s, "| CloudSim formula | {:.1} % | | | | |", cs * 100.0);
    // The peers on the runs SimGrid can model (no reduction).
    let none: Vec<&EvalRow> = rows.iter().filter(|r| r.pipeline == "none").collect();
    if !none.is_empty() {
        let med = |f: &dyn Fn(&EvalRow) -> Option<f64>| {
            median(none.iter().filter_map(|r| f(r).map(|p| rel(p, r.measured.total_time_s).abs())).collect())
        };
        let sg = med(&|r| r.simgrid_time_s);
        let _ = writeln!(
            s,
            "\nOn the {} `none` runs, median |time error|: built-in {:.1} %, calibrated {:.1} %, CloudSim {:.1} %, SimGrid 3.32 {}.",
            none.len(),
            med(&|r| Some(r.uncalibrated.total_time_s)) * 100.0,
            med(&|r| Some(r.calibrated.total_time_s)) * 100.0,
            med(&|r| Some(r.cloudsim_time_s)) * 100.0,
            if sg.is_nan() { "not run (no --simgrid driver)".to_string() } else { format!("{:.1} %", sg * 100.0) }
        );
    }
    match spread {
        Some((t, b, d, n)) => {
            let _ = writeln!(
                s,
                "\nRun-to-run spread ((max − min) / mean over {n} groups of repeated runs, median): time {:.1} %, bytes {:.1} %, downtime {:.1} %.",
                t * 100.0,
                b * 100.0,
                d * 100.0
            );
        }
        None => {
            let _ = writeln!(s, "\nNo repeated runs in the dataset: run-to-run spread unknown.");
        }
    }
    s
}

/// The per-run table as CSV.
pub fn report_csv(rows: &[EvalRow]) -> String {
    let mut s = String::from("run_id,model,total_time_s,downtime_ms,bytes_on_wire,rounds,err_time,err_bytes,err_downtime\n");
    for r in rows {
        for (name, p) in [("measured", r.measured), ("built-in", r.uncalibrated), ("calibrated", r.calibrated)] {
            let _ = writeln!(
                s,
                "{},{name},{:.6},{:.3},{:.0},{},{:.6},{:.6},{:.6}",
                r.run_id,
                p.total_time_s,
                p.downtime_ms,
                p.bytes_on_wire,
                p.rounds,
                rel(p.total_time_s, r.measured.total_time_s),
                rel(p.bytes_on_wire, r.measured.bytes_on_wire),
                rel(p.downtime_ms, r.measured.downtime_ms)
            );
        }
        let _ = writeln!(
            s,
            "{},cloudsim,{:.6},,,,{:.6},,",
            r.run_id,
            r.cloudsim_time_s,
            rel(r.cloudsim_time_s, r.measured.total_time_s)
        );
        if let Some(t) = r.simgrid_time_s {
            let _ = writeln!(s, "{},simgrid,{t:.6},,,,{:.6},,", r.run_id, rel(t, r.measured.total_time_s));
        }
    }
    s
}

/// Metrics plotted, with the value picked from a prediction and the axis label.
type Metric = (&'static str, &'static str, fn(&Prediction) -> f64);

/// The plotted metrics.
pub const METRICS: [Metric; 3] = [
    ("time", "total time, s", |p| p.total_time_s),
    ("bytes", "bytes on the wire, MB", |p| p.bytes_on_wire / 1e6),
    ("downtime", "downtime, ms", |p| p.downtime_ms),
];

fn draw_metric<DB: DrawingBackend>(rows: &[EvalRow], metric: &Metric, root: &DrawingArea<DB, plotters::coord::Shift>) -> Result<(), String> {
    let (_, label, f) = metric;
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let hi = rows
        .iter()
        .flat_map(|r| [f(&r.measured), f(&r.uncalibrated), f(&r.calibrated)])
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.05;
    let mut chart = ChartBuilder::on(root)
        .caption(format!("predicted vs measured: {label}"), ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..hi, 0.0..hi)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(format!("measured {label}"))
        .y_desc(format!("predicted {label}"))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (hi, hi)], BLACK.stroke_width(1)))
        .map_err(|e| e.to_string())?
        .label("y = x");
    chart
        .draw_series(rows.iter().map(|r| Circle::new((f(&r.measured), f(&r.uncalibrated)), 5, RED.stroke_width(2))))
        .map_err(|e| e.to_string())?
        .label("built-in model")
        .legend(|(x, y)| Circle::new((x, y), 5, RED.stroke_width(2)));
    chart
        .draw_series(rows.iter().map(|r| Cross::new((f(&r.measured), f(&r.calibrated)), 6, BLUE.stroke_width(2))))
        .map_err(|e| e.to_string())?
        .label("calibrated")
        .legend(|(x, y)| Cross::new((x, y), 6, BLUE.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// Draws `predicted_vs_measured-<metric>.svg` per metric into `dir`.
pub fn draw_plots(rows: &[EvalRow], dir: &Path) -> Result<Vec<String>, String> {
    crate::output::register_font();
    let mut files = Vec::new();
    for m in &METRICS {
        let name = format!("predicted_vs_measured-{}.svg", m.0);
        let path = dir.join(&name);
        let root = SVGBackend::new(&path, (800, 800)).into_drawing_area();
        draw_metric(rows, m, &root)?;
        files.push(name);
    }
    Ok(files)
}
