//! Running points: each point's scenario text is built from the base
//! document, checked and simulated; a failure (the scenario rejects the
//! combination, the simulator panics) becomes the point's recorded error and
//! the others go on. Points run in parallel on a rayon pool of `jobs`
//! threads; every finished point is appended to a journal (JSON lines) so
//! that `--resume` after a killed run skips it.
//!
//! Results do not depend on `jobs` or on the order points finish in: each
//! point is simulated alone from its own seed, and the table is written from
//! the records sorted by point number.

use super::points::{scenario_text, Point};
use super::table::{op_metrics, PointRecord};
use super::Study;
use rayon::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Simulates one point. `tables`: write its per-point tables under this folder.
pub fn evaluate(study: &Study, paths: &[String], point: &Point, tables: Option<&Path>) -> PointRecord {
    let mut record = PointRecord {
        index: point.index,
        hash: point.hash.clone(),
        seed: point.seed,
        values: point.values.iter().map(|v| v.label.clone()).collect(),
        numbers: point.values.iter().map(|v| v.number).collect(),
        error: None,
        ops: Vec::new(),
    };
    let label = format!("{} (point {})", study.scenario_path.display(), point.index);
    // Lines of the generated text mean nothing to the user: the field and the message say it.
    let scenario = scenario_text(study, paths, &point.values).and_then(|text| {
        crate::scenario::parse_at(&text, &label, study.scenario_dir()).map_err(|e| match e {
            crate::scenario::ScenarioError::Invalid { field, message, .. } => format!("{field}: {message}"),
            other => other.to_string(),
        })
    });
    let scenario = match scenario {
        Ok(s) => s,
        Err(e) => {
            record.error = Some(e);
            return record;
        }
    };
    let seed = point.seed;
    let outs = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| crate::run::run_all(&scenario, Some(seed)))) {
        Ok(outs) => outs,
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            record.error = Some(format!("the simulator failed: {why}"));
            return record;
        }
    };
    if let Some(dir) = tables {
        let out = dir.join(&point.hash);
        if let Err(e) = crate::output::write_results(&outs, &out, false, false) {
            record.error = Some(format!("cannot write the point's tables: {e}"));
        }
    }
    record.ops = op_metrics(&outs);
    record
}

/// Appends finished points to `points.jsonl` in a journal folder.
pub struct Journal {
    dir: PathBuf,
    file: Mutex<std::fs::File>,
}

impl Journal {
    /// The journal folder of an output folder: `.<name>.journal` beside it.
    pub fn dir_for(out: &Path) -> PathBuf {
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let leaf = out.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
        parent.join(format!(".{leaf}.journal"))
    }

    /// Records a journal holds (none when absent).
    pub fn read(dir: &Path) -> Result<Vec<PointRecord>, String> {
        let path = dir.join("points.jsonl");
        match std::fs::read_to_string(&path) {
            Ok(text) => super::table::read_jsonl(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Opens the journal, keeping `keep` (earlier records) as its start.
    pub fn open(dir: &Path, keep: &[PointRecord]) -> std::io::Result<Journal> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("points.jsonl");
        std::fs::write(&path, super::table::records_jsonl(keep))?;
        let file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Ok(Journal { dir: dir.to_path_buf(), file: Mutex::new(file) })
    }

    /// Where per-point tables go while the run lasts.
    pub fn tables_dir(&self) -> PathBuf {
        self.dir.join("tables")
    }

    /// Appends one record (one whole line, flushed).
    pub fn append(&self, r: &PointRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_string(r).expect("a record serializes");
        line.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(line.as_bytes())?;
        f.flush()
    }

    /// The journal's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Runs `points` on `jobs` threads; `done` sees each record as it finishes.
pub fn run_points(
    study: &Study,
    paths: &[String],
    points: &[Point],
    jobs: usize,
    tables: Option<&Path>,
    progress: bool,
    done: &(dyn Fn(&PointRecord) + Sync),
) -> Vec<PointRecord> {
    let bar = if progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = indicatif::ProgressBar::new(points.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} points, {elapsed} elapsed, eta {eta}")
                .expect("a valid template"),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(jobs.max(1)).build().expect("a thread pool");
    let records = pool.install(|| {
        points
            .par_iter()
            .map(|p| {
                let r = evaluate(study, paths, p, tables);
                done(&r);
                bar.inc(1);
                r
            })
            .collect()
    });
    bar.finish_and_clear();
    records
}
