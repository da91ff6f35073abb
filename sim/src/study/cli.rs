//! `memfabric sweep`, `memfabric plan` and `memfabric merge` (the binary's
//! edge, so errors are `anyhow`; bad input is a [`StudyError`], exit code 2).

use super::folder::{self, Contents};
use super::points::{expand, Point, Shard};
use super::runner::{run_points, Journal};
use super::table::PointRecord;
use super::{load, StudyError, StudyKind};
use anyhow::Context;
use clap::Args;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options of `memfabric sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Study file (TOML).
    pub study: PathBuf,
    /// Results folder (default: results/<study name>, or results/<study name>.shard-K-of-N).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Skip points already done (in the journal of a killed run, or in the results folder).
    #[arg(long)]
    pub resume: bool,
    /// Print the number of points and an estimate of the time from a timed sample; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run only shard K of N (K from 0): the points whose number is K modulo N.
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Also write each point's Parquet tables under tables/<point hash>/.
    #[arg(long)]
    pub tables: bool,
    /// Threads and plots.
    #[command(flatten)]
    pub run: RunOptions,
}

/// Options of `memfabric plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Study file (TOML) with a [plan] section.
    pub study: PathBuf,
    /// Results folder (default: results/<study name>-plan).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Threads and plots.
    #[command(flatten)]
    pub run: RunOptions,
}

/// Options shared by `sweep` and `plan`.
#[derive(Debug, Args)]
pub struct RunOptions {
    /// Points simulated at once (default: the machine's cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Skip the plots (and the report's plots).
    #[arg(long)]
    pub no_plots: bool,
}

/// Options of `memfabric merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Shard results folders of one study.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Merged results folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Skip the plots.
    #[arg(long)]
    pub no_plots: bool,
}

fn parse_shard(s: &str) -> Result<Shard, String> {
    Shard::parse(s)
}

fn jobs(j: Option<usize>) -> usize {
    j.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1)
}

/// `memfabric sweep`.
pub fn sweep(a: SweepArgs) -> anyhow::Result<()> {
    let study = load(&a.study)?;
    if study.plan.is_some() && study.axes.is_empty() {
        return Err(StudyError::Input {
            message: format!("{}: has no [axes] or [[points]] to sweep; run `memfabric plan` for its [plan]", a.study.display()),
        }
        .into());
    }
    let columns: Vec<String> = study.axes.iter().map(|x| x.path.clone()).collect();
    let all = expand(&study);
    let total = all.len() as u64;
    let points: Vec<Point> = all.into_iter().filter(|p| a.shard.is_none_or(|s| s.holds(p.index))).collect();
    let out = a.out.clone().unwrap_or_else(|| {
        let name = match a.shard {
            Some(s) => format!("{}.shard-{}-of-{}", study.name, s.k, s.n),
            None => study.name.clone(),
        };
        PathBuf::from("results").join(name)
    });
    let jdir = Journal::dir_for(&out);
    let mut earlier: Vec<PointRecord> = Vec::new();
    if a.resume {
        let mut found = Journal::read(&jdir).map_err(|message| StudyError::Input { message })?;
        if out.join("manifest.json").is_file() {
            if let Ok((m, rs)) = folder::read(&out) {
                if m.study_hash == study.hash {
                    found.extend(rs);
                }
            }
        }
        for p in &points {
            if let Some(r) = found.iter().find(|r| r.hash == p.hash) {
                if !earlier.iter().any(|e| e.hash == r.hash) {
                    earlier.push(PointRecord { index: p.index, ..r.clone() });
                }
            }
        }
    }
    let todo: Vec<Point> = points.iter().filter(|p| !earlier.iter().any(|e| e.hash == p.hash)).cloned().collect();
    let jobs = jobs(a.run.jobs);
    if a.dry_run {
        let size = format!("{} variants × {} seeds", total / study.seeds.len() as u64, study.seeds.len());
        println!(
            "{}: {} points {}; {} already done, {} to run on {jobs} threads",
            a.study.display(),
            points.len(),
            match a.shard {
                Some(s) => format!("in shard {s} (of {total}: {size})"),
                None => format!("({size})"),
            },
            earlier.len(),
            todo.len()
        );
        let sample: Vec<&Point> = todo.iter().take(3).collect();
        if !sample.is_empty() {
            let start = Instant::now();
            for p in &sample {
                super::runner::evaluate(&study, &columns, p, None);
            }
            let per_point = start.elapsed().as_secs_f64() / sample.len() as f64;
            let estimate = per_point * todo.len() as f64 / jobs.min(todo.len()) as f64;
            println!(
                "timed sample: {} points, {:.3} s each; estimate {:.1} s ({:.1} min) for the run{}",
                sample.len(),
                per_point,
                estimate,
                estimate / 60.0,
                if cfg!(debug_assertions) { " (debug build: a release build is much faster)" } else { "" }
            );
        }
        return Ok(());
    }
    let journal = Journal::open(&jdir, &earlier).with_context(|| format!("opening the journal {}", jdir.display()))?;
    let tables_dir = journal.tables_dir();
    let start = Instant::now();
    let journal_failed = std::sync::atomic::AtomicBool::new(false);
    let new = run_points(&study, &columns, &todo, jobs, a.tables.then_some(tables_dir.as_path()), true, &|r| {
        if journal.append(r).is_err() {
            journal_failed.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    if journal_failed.into_inner() {
        eprintln!("warning: the journal {} could not be written: --resume would redo points", jdir.display());
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut records = earlier;
    records.extend(new);
    records.sort_by_key(|r| r.index);
    let manifest = folder::manifest(&study, StudyKind::Sweep, columns.clone(), total, a.shard, &records);
    let failed = manifest.failed_points;
    folder::write(
        &out,
        Contents {
            manifest,
            records: &records,
            study_text: Some(&study.text),
            scenario_text: Some(&study.scenario_text),
            plan_json: None,
            tables_from: if a.tables { folder::TablesFrom::Journal(&tables_dir) } else { folder::TablesFrom::Nothing },
            plots: !a.run.no_plots,
        },
    )
    .with_context(|| format!("writing results to {}", out.display()))?;
    // The journal is ours and the results are complete: it has served.
    let _ = std::fs::remove_dir_all(journal.dir());
    print!("{}", points_table(&columns, &records));
    println!(
        "\n{} points ({} run now, {} failed) in {:.1} s on {jobs} threads\nresults: {}",
        records.len(),
        todo.len(),
        failed,
        elapsed,
        out.display()
    );
    Ok(())
}

/// A compact table of points (first 40 rows) for stdout.
pub fn points_table(columns: &[String], records: &[PointRecord]) -> String {
    const MAX_ROWS: usize = 40;
    let mut s = String::new();
    let head: Vec<String> = columns.iter().map(|c| format!("{:>14}", short(c))).collect();
    let _ = writeln!(s, "{:>6} {} {:>6} {:<18} {:>6} {:>11} {:>13} {:>9}", "point", head.join(" "), "seed", "operation", "failed", "makespan_s", "down_ms_max", "wire_GiB");
    let mut rows = 0;
    for r in records {
        let vals: Vec<String> = r.values.iter().map(|v| format!("{:>14}", short(v))).collect();
        if let Some(e) = &r.error {
            let _ = writeln!(s, "{:>6} {} {:>6} error: {}", r.index, vals.join(" "), r.seed, e.lines().next().unwrap_or(""));
            rows += 1;
        }
        for o in &r.ops {
            let _ = writeln!(
                s,
                "{:>6} {} {:>6} {:<18} {:>6} {:>11.3} {:>13.1} {:>9.3}",
                r.index,
                vals.join(" "),
                r.seed,
                short(&if o.variant == crate::run::BASE_VARIANT { o.operation.clone() } else { format!("{}/{}", o.variant, o.operation) }),
                o.failed,
                o.makespan_s,
                o.downtime_ms_max,
                o.bytes_on_wire as f64 / (1u64 << 30) as f64
            );
            rows += 1;
        }
        if rows >= MAX_ROWS {
            let _ = writeln!(s, "… (all rows in points.parquet)");
            break;
        }
    }
    s
}

fn short(s: &str) -> String {
    const W: usize = 18;
    if s.chars().count() <= W {
        s.to_string()
    } else {
        let tail: String = s.chars().rev().take(W - 1).collect::<Vec<_>>().into_iter().rev().collect();
        format!("…{tail}")
    }
}

/// `memfabric plan`.
pub fn plan(a: PlanArgs) -> anyhow::Result<()> {
    let study = load(&a.study)?;
    let Some(spec) = study.plan.clone() else {
        return Err(StudyError::Input { message: format!("{}: has no [plan] section", a.study.display()) }.into());
    };
    let out = a.out.unwrap_or_else(|| PathBuf::from("results").join(format!("{}-plan", study.name)));
    let (columns, records, solutions) = super::plan::run_plan(&study, jobs(a.run.jobs));
    let text = super::plan::format_solutions(&spec, &solutions);
    let plan_json = serde_json::json!({
        "axis": spec.axis,
        "find": spec.find,
        "from": spec.from.label,
        "to": spec.to.label,
        "tolerance": spec.tolerance,
        "integer": spec.integer,
        "quantile": spec.quantile,
        "targets": spec.targets,
        "solutions": solutions,
    });
    let mut manifest = folder::manifest(&study, StudyKind::Plan, columns, records.len() as u64, None, &records);
    manifest.points_total = records.len() as u64;
    folder::write(
        &out,
        Contents {
            manifest,
            records: &records,
            study_text: Some(&study.text),
            scenario_text: Some(&study.scenario_text),
            plan_json: Some(format!("{}\n", serde_json::to_string_pretty(&plan_json).expect("plan serializes"))),
            tables_from: folder::TablesFrom::Nothing,
            plots: !a.run.no_plots,
        },
    )
    .with_context(|| format!("writing results to {}", out.display()))?;
    print!("{text}");
    println!("\nresults: {}", out.display());
    Ok(())
}

/// `memfabric merge`.
pub fn merge(a: MergeArgs) -> anyhow::Result<()> {
    let dirs: Vec<&Path> = a.dirs.iter().map(|d| d.as_path()).collect();
    let m = folder::merge(&dirs, &a.out, !a.no_plots).map_err(|message| StudyError::Input { message })?;
    println!("merged {} folders: {} points ({} failed)\nresults: {}", dirs.len(), m.points, m.failed_points, a.out.display());
    Ok(())
}

/// `memfabric report`.
pub fn report(dir: &Path) -> anyhow::Result<()> {
    let path = crate::report::write_report(dir).map_err(|e| match e {
        crate::report::ReportError::Format { path, message } => anyhow::Error::from(StudyError::Input { message: format!("{path}: {message}") }),
        other => anyhow::Error::from(other),
    })?;
    println!("report: {}", path.display());
    Ok(())
}
