//! `index.csv` of a calibration dataset: one row per run of the matrix, in
//! matrix order, from each run's `run.json` (or `missing` / `error`).
//!
//! Columns: `run_id, workload, dirty_rate_pages_per_s, memory_bytes, link,
//! pipeline, seed, repeat, integrity_check, status, outcome, total_time_s,
//! downtime_ms, bytes_on_wire, rounds, cpu_s_source, cpu_s_destination,
//! source_verify_ms, load_avg_1m_at_start, error`. `status` is `complete`,
//! `missing` (not run yet) or `error` (this invocation could not run it).

use std::path::Path;

use anyhow::Context;

use super::matrix::Matrix;
use super::{complete_record, RUNS_DIR};

/// File name of the index in a dataset folder.
pub const INDEX_FILE: &str = "index.csv";

const HEADER: &str = "run_id,workload,dirty_rate_pages_per_s,memory_bytes,link,pipeline,seed,repeat,integrity_check,status,outcome,total_time_s,downtime_ms,bytes_on_wire,rounds,cpu_s_source,cpu_s_destination,source_verify_ms,load_avg_1m_at_start,error";

/// Quotes a CSV field when it needs it.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes `out/index.csv` (atomically) for `m`; `errors` are (run id, message) of this invocation.
pub fn write(out: &Path, m: &Matrix, errors: &[(String, String)]) -> anyhow::Result<()> {
    let mut text = String::from(HEADER);
    text.push('\n');
    for run in &m.runs {
        let rec = complete_record(&out.join(RUNS_DIR).join(&run.id));
        let link = run.link.as_ref().map_or_else(|| "loopback".to_string(), |l| l.to_string());
        let mut cols = vec![
            field(&run.id),
            field(&run.workload),
            run.dirty_rate_pages_per_s.to_string(),
            run.memory.0.to_string(),
            field(&link),
            field(&run.pipeline.to_string()),
            run.seed.to_string(),
            run.repeat.to_string(),
            m.settings.integrity_check.to_string(),
        ];
        match rec {
            Some(r) => {
                let h = &r.headline;
                cols.extend([
                    "complete".into(),
                    field(h.outcome.as_str()),
                    format!("{:.6}", h.total_time_s),
                    format!("{:.3}", h.downtime_ms),
                    h.bytes_on_wire.to_string(),
                    h.rounds.to_string(),
                    format!("{:.4}", h.cpu_s_source),
                    format!("{:.4}", h.cpu_s_destination),
                    h.source_verify_ms.map(|v| format!("{v:.3}")).unwrap_or_default(),
                    format!("{:.2}", r.load_avg_1m_at_start),
                    String::new(),
                ]);
            }
            None => {
                let err = errors.iter().find(|(id, _)| *id == run.id).map(|(_, e)| e.as_str());
                cols.push(if err.is_some() { "error" } else { "missing" }.into());
                cols.extend(std::iter::repeat_n(String::new(), 9));
                cols.push(field(err.unwrap_or("")));
            }
        }
        text.push_str(&cols.join(","));
        text.push('\n');
    }
    let path = out.join(INDEX_FILE);
    let tmp = out.join(format!("{INDEX_FILE}.tmp"));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
