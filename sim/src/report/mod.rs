//! `report.html`: one self-contained HTML file for a results folder — a run,
//! a strategy comparison, a sweep or a plan — with the manifest, summary
//! tables, every plot of `plots/*.svg` inlined, and the study and scenario
//! texts when the folder holds them. No script, no external resource: the
//! file can be mailed or archived as is.
//!
//! It is written by `run`, `sweep`, `plan` and `merge` into their folder, and
//! by `memfabric report DIR` for any existing folder.

use crate::study::folder::StudyManifest;
use crate::study::table::{read_jsonl, PointRecord};
use memfabric_migration::record::Outcome;
use polars::prelude::*;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// A report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read or written.
    #[error("{path}: cannot read or write")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The folder is not a results folder, or a file in it is malformed.
    #[error("{path}: {message}")]
    Format {
        /// The file or folder.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A value of a table is not one its column allows (located by row).
    #[error(transparent)]
    Table(#[from] memfabric_formats::tables::TableReadError),
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn read(path: &Path) -> Result<String, ReportError> {
    std::fs::read_to_string(path).map_err(|source| ReportError::Io { path: path.display().to_string(), source })
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1200px;color:#222}\
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th{background:#eee}td.l,th.l{text-align:left}pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}\
figure.plot{display:inline-block;margin:0.5em}h2{border-bottom:1px solid #ccc;padding-bottom:4px}";

/// Writes `DIR/report.html` and returns its path.
pub fn write_report(dir: &Path) -> Result<PathBuf, ReportError> {
    let html = render(dir)?;
    let path = dir.join("report.html");
    std::fs::write(&path, html).map_err(|source| ReportError::Io { path: path.display().to_string(), source })?;
    Ok(path)
}

/// The report of a results folder, as HTML text.
pub fn render(dir: &Path) -> Result<String, ReportError> {
    let mpath = dir.join("manifest.json");
    if !mpath.is_file() {
        return Err(ReportError::Format {
            path: dir.display().to_string(),
            message: "not a results folder (no manifest.json): expected the folder of a run, sweep or plan".into(),
        });
    }
    let manifest: serde_json::Value = serde_json::from_str(&read(&mpath)?)
        .map_err(|e| ReportError::Format { path: mpath.display().to_string(), message: format!("not JSON: {e}") })?;
    let study = manifest.get("kind").is_some();
    let title = if study {
        format!(
            "memfabric {} {}",
            manifest["kind"].as_str().unwrap_or("study"),
            manifest["study"].as_str().unwrap_or("")
        )
    } else {
        let variants = manifest["variants"].as_array().map_or(0, |v| v.len());
        format!("memfabric {} {}", if variants > 1 { "comparison" } else { "run" }, manifest["scenario"].as_str().unwrap_or(""))
    };
    let mut b = String::new();
    let _ = writeln!(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>", esc(&title));
    let _ = writeln!(b, "<h1>{}</h1>", esc(&title));
    if study {
        study_sections(dir, &mut b)?;
    } else {
        run_sections(dir, &mut b)?;
        plots(dir, &mut b)?;
    }
    let _ = writeln!(b, "<h2>Manifest</h2>\n<table>");
    if let Some(obj) = manifest.as_object() {
        for (k, v) in obj {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(a) if a.len() > 12 => format!("{} entries", a.len()),
                other => other.to_string(),
            };
            let _ = writeln!(b, "<tr><th class=\"l\">{}</th><td class=\"l\">{}</td></tr>", esc(k), esc(&v));
        }
    }
    b.push_str("</table>\n");
    for (name, heading) in [("study.toml", "Study"), ("scenario.toml", "Scenario")] {
        let p = dir.join(name);
        if p.is_file() {
            let _ = writeln!(b, "<h2>{heading} ({name})</h2>\n<pre>{}</pre>", esc(&read(&p)?));
        }
    }
    b.push_str("</body></html>\n");
    Ok(b)
}

fn plots(dir: &Path, b: &mut String) -> Result<(), ReportError> {
    let pdir = dir.join("plots");
    let Ok(entries) = std::fs::read_dir(&pdir) else { return Ok(()) };
    let mut files: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "svg")).collect();
    files.sort();
    if files.is_empty() {
        return Ok(());
    }
    b.push_str("<h2>Plots</h2>\n");
    for f in files {
        let svg = read(&f)?;
        // Drop an XML prolog: inline SVG starts at <svg.
        let svg = svg.find("<svg").map_or(svg.as_str(), |i| &svg[i..]);
        let name = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let _ = writeln!(b, "<figure class=\"plot\" id=\"plot-{}\">{svg}<figcaption>{}</figcaption></figure>", esc(&name), esc(&name));
    }
    Ok(())
}

fn study_sections(dir: &Path, b: &mut String) -> Result<(), ReportError> {
    let m: StudyManifest = serde_json::from_str(&read(&dir.join("manifest.json"))?).map_err(|e| ReportError::Format {
        path: dir.join("manifest.json").display().to_string(),
        message: format!("not a study manifest: {e}"),
    })?;
    let rpath = dir.join("points.jsonl");
    let records: Vec<PointRecord> =
        read_jsonl(&read(&rpath)?).map_err(|message| ReportError::Format { path: rpath.display().to_string(), message })?;
    let ppath = dir.join("plan.json");
    if ppath.is_file() {
        let plan: serde_json::Value = serde_json::from_str(&read(&ppath)?)
            .map_err(|e| ReportError::Format { path: ppath.display().to_string(), message: format!("not JSON: {e}") })?;
        let _ = writeln!(b, "<h2>Plan: {} {}</h2>", plan["find"].as_str().unwrap_or(""), esc(plan["axis"].as_str().unwrap_or("")));
        let _ = writeln!(b, "<table><tr><th class=\"l\">combination</th><th class=\"l\">status</th><th>answer</th><th>infeasible neighbour</th><th>margins</th><th>evaluated</th></tr>");
        for s in plan["solutions"].as_array().into_iter().flatten() {
            let combo: Vec<String> = s["combination"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| format!("{} = {}", c[0].as_str().unwrap_or(""), c[1].as_str().unwrap_or("")))
                .collect();
            let label = |v: &serde_json::Value| v["label"].as_str().unwrap_or("—").to_string();
            let margins: Vec<String> = s["margins"].as_array().into_iter().flatten().map(|m| m.to_string()).collect();
            let _ = writeln!(
                b,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&combo.join(", ")),
                esc(s["status"].as_str().unwrap_or("")),
                esc(&label(&s["answer"])),
                esc(&label(&s["neighbour"])),
                esc(&margins.join(", ")),
                s["evaluated"].as_array().map_or(0, |a| a.len())
            );
        }
        b.push_str("</table>\n");
    }
    plots(dir, b)?;
    let _ = writeln!(
        b,
        "<h2>Points</h2>\n<p>{} points{} ({} failed); every row is in points.parquet.</p>",
        m.points,
        m.shard.map_or(String::new(), |s| format!(" of shard {s}")),
        m.failed_points
    );
    b.push_str("<table><tr><th>point</th>");
    for c in &m.columns {
        let _ = write!(b, "<th>{}</th>", esc(c));
    }
    b.push_str("<th>seed</th><th class=\"l\">variant</th><th class=\"l\">operation</th><th>failed</th><th>makespan_s</th><th>total_s_p50</th><th>downtime_ms_max</th><th>wire GiB</th><th class=\"l\">error</th></tr>\n");
    const MAX_ROWS: usize = 500;
    let mut rows = 0;
    for r in &records {
        let cells: String = r.values.iter().map(|v| format!("<td>{}</td>", esc(v))).collect();
        let err = r.error.as_deref().map(esc).unwrap_or_default();
        if r.ops.is_empty() {
            let _ = writeln!(b, "<tr><td>{}</td>{cells}<td>{}</td><td></td><td></td><td></td><td></td><td></td><td></td><td></td><td class=\"l\">{err}</td></tr>", r.index, r.seed);
            rows += 1;
        }
        for o in &r.ops {
            let _ = writeln!(
                b,
                "<tr><td>{}</td>{cells}<td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.1}</td><td>{:.3}</td><td></td></tr>",
                r.index,
                r.seed,
                esc(&o.variant),
                esc(&o.operation),
                o.failed,
                o.makespan_s,
                o.total_s_p50,
                o.downtime_ms_max,
                o.bytes_on_wire as f64 / (1u64 << 30) as f64
            );
            rows += 1;
        }
        if rows >= MAX_ROWS {
            let _ = writeln!(b, "</table><p>First {MAX_ROWS} rows shown.</p><table>");
            break;
        }
    }
    b.push_str("</table>\n");
    Ok(())
}

/// Summary per variant and operation, from `migrations.parquet`.
fn run_sections(dir: &Path, b: &mut String) -> Result<(), ReportError> {
    let path = dir.join("migrations.parquet");
    let fmt_err = |e: PolarsError| ReportError::Format { path: path.display().to_string(), message: e.to_string() };
    let df = crate::output::read_parquet(&path).map_err(fmt_err)?;
    let text = |name: &str| -> Result<Vec<String>, ReportError> {
        let c = df.column(name).map_err(fmt_err)?;
        let ca = c.str().map_err(fmt_err)?;
        Ok((0..ca.len()).map(|i| ca.get(i).unwrap_or("").to_string()).collect())
    };
    let num = |name: &str| -> Result<Vec<f64>, ReportError> {
        let c = df.column(name).map_err(fmt_err)?.cast(&DataType::Float64).map_err(fmt_err)?;
        let ca = c.f64().map_err(fmt_err)?;
        Ok((0..ca.len()).map(|i| ca.get(i).unwrap_or(f64::NAN)).collect())
    };
    let (variant, operation) = (text("variant")?, text("operation")?);
    let outcome: Vec<Outcome> = memfabric_formats::tables::enum_column(&df, "outcome", &path)?;
    let (start, end, total, down, wire) = (num("start_s")?, num("end_s")?, num("total_time_s")?, num("downtime_ms")?, num("bytes_on_wire")?);
    let mut groups: Vec<(String, String)> = Vec::new();
    for i in 0..df.height() {
        let k = (variant[i].clone(), operation[i].clone());
        if !groups.contains(&k) {
            groups.push(k);
        }
    }
    b.push_str("<h2>Summary</h2>\n<table><tr><th class=\"l\">variant</th><th class=\"l\">operation</th><th>migrations</th><th>completed</th><th>makespan_s</th><th>total_s_p50</th><th>total_s_max</th><th>downtime_ms_max</th><th>wire GiB</th></tr>\n");
    for (v, op) in &groups {
        let idx: Vec<usize> = (0..df.height()).filter(|&i| &variant[i] == v && &operation[i] == op).collect();
        let done: Vec<usize> = idx.iter().copied().filter(|&i| outcome[i] == Outcome::Completed).collect();
        let mut totals: Vec<f64> = done.iter().map(|&i| total[i]).collect();
        totals.sort_by(f64::total_cmp);
        let first = idx.iter().map(|&i| start[i]).fold(f64::INFINITY, f64::min);
        let last = idx.iter().map(|&i| end[i]).fold(0.0, f64::max);
        let _ = writeln!(
            b,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.1}</td><td>{:.3}</td></tr>",
            esc(v),
            esc(op),
            idx.len(),
            done.len(),
            (last - first).max(0.0),
            crate::output::percentile(&totals, 50.0),
            totals.last().copied().unwrap_or(0.0),
            done.iter().map(|&i| down[i]).fold(0.0, f64::max),
            idx.iter().map(|&i| wire[i]).sum::<f64>() / (1u64 << 30) as f64
        );
    }
    b.push_str("</table>\n");
    Ok(())
}
