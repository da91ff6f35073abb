//! The results of a study: one [`PointRecord`] per point (kept as JSON lines
//! in `points.jsonl`, the resume journal and what `merge` reads) and the
//! `points.parquet` table built from them: one row per point × variant ×
//! operation. Columns are documented in docs/capacity-planning.md.
//!
//! The table is a pure function of the records sorted by point number, so a
//! sharded run merged, a resumed run and an uninterrupted run write the same
//! bytes.

use crate::output::OutputError;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use crate::output::{op_metrics, OpMetrics};

/// Metrics a plan target may name (the numeric columns of [`OpMetrics`]).
pub const METRICS: &[&str] = &[
    "migrations",
    "completed",
    "failed",
    "not_converged",
    "aborted_link_failure",
    "lost",
    "no_capacity",
    "unfinished",
    "makespan_s",
    "total_s_p50",
    "total_s_p95",
    "total_s_max",
    "downtime_ms_p50",
    "downtime_ms_p95",
    "downtime_ms_max",
    "bytes_on_wire",
    "bytes_unreduced",
];

impl OpMetrics {
    /// A metric by name (one of [`METRICS`]).
    pub fn metric(&self, name: &str) -> Option<f64> {
        Some(match name {
            "migrations" => self.migrations as f64,
            "completed" => self.completed as f64,
            "failed" => self.failed as f64,
            "not_converged" => self.not_converged as f64,
            "aborted_link_failure" => self.aborted_link_failure as f64,
            "lost" => self.lost as f64,
            "no_capacity" => self.no_capacity as f64,
            "unfinished" => self.unfinished as f64,
            "makespan_s" => self.makespan_s,
            "total_s_p50" => self.total_s_p50,
            "total_s_p95" => self.total_s_p95,
            "total_s_max" => self.total_s_max,
            "downtime_ms_p50" => self.downtime_ms_p50,
            "downtime_ms_p95" => self.downtime_ms_p95,
            "downtime_ms_max" => self.downtime_ms_max,
            "bytes_on_wire" => self.bytes_on_wire as f64,
            "bytes_unreduced" => self.bytes_unreduced as f64,
            _ => return None,
        })
    }
}

/// The result of one point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointRecord {
    /// Point number.
    pub index: u64,
    /// Point hash.
    pub hash: String,
    /// Seed.
    pub seed: u64,
    /// Value labels, one per column path.
    pub values: Vec<String>,
    /// Values in base units (`None` when not numeric).
    pub numbers: Vec<Option<f64>>,
    /// Why the point failed (scenario rejected, simulator panicked).
    pub error: Option<String>,
    /// One entry per variant × operation.
    pub ops: Vec<OpMetrics>,
}

/// The `points` table of records (sorted by point number by the caller).
pub fn points_frame(paths: &[String], records: &[PointRecord]) -> DataFrame {
    // One row per record × op; a record without ops (failed, or no migrations) is one row.
    let rows: Vec<(&PointRecord, Option<&OpMetrics>)> = records
        .iter()
        .flat_map(|r| {
            if r.ops.is_empty() {
                vec![(r, None)]
            } else {
                r.ops.iter().map(|o| (r, Some(o))).collect()
            }
        })
        .collect();
    let col = |name: &str, s: Series| -> Column { s.with_name(name.into()).into() };
    let mut columns: Vec<Column> = vec![
        col("point", Series::new("".into(), rows.iter().map(|(r, _)| r.index).collect::<Vec<u64>>())),
        col("point_hash", Series::new("".into(), rows.iter().map(|(r, _)| r.hash.clone()).collect::<Vec<String>>())),
        col("seed", Series::new("".into(), rows.iter().map(|(r, _)| r.seed).collect::<Vec<u64>>())),
    ];
    for (i, p) in paths.iter().enumerate() {
        columns.push(col(p, Series::new("".into(), rows.iter().map(|(r, _)| r.values[i].clone()).collect::<Vec<String>>())));
        if records.iter().any(|r| r.numbers[i].is_some()) {
            let v: Vec<Option<f64>> = rows.iter().map(|(r, _)| r.numbers[i]).collect();
            columns.push(col(&format!("{p}:value"), Series::new("".into(), v)));
        }
    }
    let text = |f: fn(&OpMetrics) -> String| -> Series {
        Series::new("".into(), rows.iter().map(|(_, o)| o.map(f)).collect::<Vec<Option<String>>>())
    };
    columns.push(col("variant", text(|o| o.variant.clone())));
    columns.push(col("operation", text(|o| o.operation.clone())));
    for &m in METRICS {
        let series = if m.ends_with("_s") || m.contains("_s_") || m.contains("_ms") {
            Series::new("".into(), rows.iter().map(|(_, o)| o.and_then(|o| o.metric(m))).collect::<Vec<Option<f64>>>())
        } else if m.starts_with("bytes") {
            let v: Vec<Option<u64>> = rows.iter().map(|(_, o)| o.map(|o| o.metric(m).unwrap_or(0.0) as u64)).collect();
            Series::new("".into(), v)
        } else {
            let v: Vec<Option<u32>> = rows.iter().map(|(_, o)| o.map(|o| o.metric(m).unwrap_or(0.0) as u32)).collect();
            Series::new("".into(), v)
        };
        columns.push(col(m, series));
    }
    columns.push(col("error", Series::new("".into(), rows.iter().map(|(r, _)| r.error.clone()).collect::<Vec<Option<String>>>())));
    DataFrame::new(rows.len(), columns).expect("columns have equal length")
}

/// Writes `points.parquet`.
pub fn write_points(dir: &Path, paths: &[String], records: &[PointRecord], meta: &[(String, String)]) -> Result<(), OutputError> {
    crate::output::write_parquet(&mut points_frame(paths, records), &dir.join("points.parquet"), meta)
}

/// Writes records as JSON lines, one per point, in the given order.
pub fn records_jsonl(records: &[PointRecord]) -> String {
    let mut s = String::new();
    for r in records {
        s.push_str(&serde_json::to_string(r).expect("a record serializes"));
        s.push('\n');
    }
    s
}

/// Reads JSON-line records; a last line cut short by a killed run is skipped.
pub fn read_jsonl(text: &str) -> Result<Vec<PointRecord>, String> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        match serde_json::from_str(l) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
            Err(e) => return Err(format!("line {}: {e}", i + 1)),
        }
    }
    Ok(out)
}
