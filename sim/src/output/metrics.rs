//! Headline metrics per operation of a run's variants ([`OpMetrics`]): the
//! one computation behind the summary's operation table and a study's
//! `points.parquet` rows.

use crate::run::RunOutput;
use memfabric_migration::record::Outcome;
use serde::{Deserialize, Serialize};

/// Headline metrics of one operation of one variant of a run (a study point's row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpMetrics {
    /// `scenario`, or the strategy in a strategy comparison.
    pub variant: String,
    /// Operation name.
    pub operation: String,
    /// Migrations of the operation.
    pub migrations: u32,
    /// Completed migrations.
    pub completed: u32,
    /// Migrations that did not complete (every outcome but `completed`).
    pub failed: u32,
    /// Outcome `not-converged`.
    pub not_converged: u32,
    /// Outcome `aborted-link-failure`.
    pub aborted_link_failure: u32,
    /// Outcome `lost`.
    pub lost: u32,
    /// Outcome `no-capacity`.
    pub no_capacity: u32,
    /// Outcome `unfinished`.
    pub unfinished: u32,
    /// First start to last end of the operation's migrations.
    pub makespan_s: f64,
    /// Median total time of completed migrations (nearest rank).
    pub total_s_p50: f64,
    /// 95th percentile of total time of completed migrations.
    pub total_s_p95: f64,
    /// Longest total time of a completed migration.
    pub total_s_max: f64,
    /// Median downtime of completed migrations.
    pub downtime_ms_p50: f64,
    /// 95th percentile of downtime.
    pub downtime_ms_p95: f64,
    /// Longest downtime.
    pub downtime_ms_max: f64,
    /// Bytes sent, every migration.
    pub bytes_on_wire: u64,
    /// Bytes without any reduction.
    pub bytes_unreduced: u64,
}

/// Per-operation metrics of a run's variants, operations in order of first appearance.
pub fn op_metrics(outs: &[RunOutput]) -> Vec<OpMetrics> {
    let mut rows = Vec::new();
    for out in outs {
        let mut ops: Vec<&str> = Vec::new();
        for m in &out.migrations {
            if !ops.contains(&m.operation.as_str()) {
                ops.push(&m.operation);
            }
        }
        for op in ops {
            let ms: Vec<_> = out.migrations.iter().filter(|m| m.operation == op).collect();
            let done: Vec<_> = ms.iter().filter(|m| m.outcome == Outcome::Completed).collect();
            let count = |o: Outcome| ms.iter().filter(|m| m.outcome == o).count() as u32;
            let mut totals: Vec<f64> = done.iter().map(|m| m.total_time_s).collect();
            totals.sort_by(f64::total_cmp);
            let mut downs: Vec<f64> = done.iter().map(|m| m.downtime_ms).collect();
            downs.sort_by(f64::total_cmp);
            let start = ms.iter().map(|m| m.start_s).fold(f64::INFINITY, f64::min);
            let end = ms.iter().map(|m| m.end_s).fold(0.0, f64::max);
            let pct = super::percentile;
            rows.push(OpMetrics {
                variant: out.variant.clone(),
                operation: op.to_string(),
                migrations: ms.len() as u32,
                completed: done.len() as u32,
                failed: (ms.len() - done.len()) as u32,
                not_converged: count(Outcome::NotConverged),
                aborted_link_failure: count(Outcome::AbortedLinkFailure),
                lost: count(Outcome::Lost),
                no_capacity: count(Outcome::NoCapacity),
                unfinished: count(Outcome::Unfinished),
                makespan_s: (end - start).max(0.0),
                total_s_p50: pct(&totals, 50.0),
                total_s_p95: pct(&totals, 95.0),
                total_s_max: totals.last().copied().unwrap_or(0.0),
                downtime_ms_p50: pct(&downs, 50.0),
                downtime_ms_p95: pct(&downs, 95.0),
                downtime_ms_max: downs.last().copied().unwrap_or(0.0),
                bytes_on_wire: ms.iter().map(|m| m.bytes_on_wire).sum(),
                bytes_unreduced: ms.iter().map(|m| m.bytes_unreduced).sum(),
            });
        }
    }
    rows
}
