//! Summary statistics of a set of traces (`memfabric trace stats`) and the
//! working-set growth plot.
//!
//! Per trace, over the snapshot:
//! - `zero`: fraction of pages with `zero = true`;
//! - `dup_vm`: fraction of pages whose hash occurs at a lower page index of
//!   the same snapshot (zero pages excluded);
//! - `dup_set`: fraction of pages whose hash occurs in the snapshot of an
//!   earlier trace of the set, in the order given (zero pages excluded; 0 for
//!   the first trace);
//! - `zstd`, `lz4`: mean compressed size of the non-zero pages, as a fraction
//!   of a page;
//!
//! and over the epochs:
//! - `dirty/s`: dirtied pages per second, the mean over the epochs of the
//!   rows of an epoch divided by its length (`rows / duration`);
//! - `ws@1s`, `ws@10s`, `ws@60s`: distinct pages dirtied in the epochs ending
//!   at or before 1, 10 and 60 s, within 0.5 % (`-` when the trace is shorter).

use super::Trace;
use crate::output::register_font;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::HashSet;
use std::fmt::Write;
use std::path::Path;

/// Times at which the working-set growth is reported, seconds.
pub const GROWTH_TIMES_S: [u64; 3] = [1, 10, 60];

/// An epoch counts for a growth time if it ends by that time plus 0.5 %:
/// captured traces (the validator's `capture`) end each epoch when the dirty
/// log was read, a fraction of a millisecond after the whole second.
pub const GROWTH_TIME_TOLERANCE: f64 = 1.005;

/// Statistics of one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceStats {
    /// Label (normally the trace directory).
    pub name: String,
    /// Pages of the VM.
    pub pages: u64,
    /// Fraction of zero pages.
    pub zero_fraction: f64,
    /// Fraction of pages duplicating a lower-indexed page of the same snapshot.
    pub duplicate_fraction: f64,
    /// Fraction of pages whose content is in an earlier trace of the set.
    pub cross_duplicate_fraction: f64,
    /// Mean zstd size fraction of non-zero pages.
    pub zstd_fraction_mean: f64,
    /// Mean lz4 size fraction of non-zero pages.
    pub lz4_fraction_mean: f64,
    /// Dirtied pages per second, mean over the epochs.
    pub dirty_pages_per_s: f64,
    /// Distinct pages dirtied by 1, 10 and 60 s ([`GROWTH_TIMES_S`]); `None`
    /// when the trace is shorter.
    pub working_set_growth: [Option<u64>; 3],
    /// Distinct pages dirtied by the end of each epoch: `(seconds, pages)`,
    /// starting at `(0, 0)`.
    pub growth_curve: Vec<(f64, u64)>,
}

/// Statistics of each trace of a set, in order (`dup_set` depends on it).
/// The traces are expected to be valid (read by [`Trace::read`] or generated).
pub fn stats(traces: &[(String, Trace)]) -> Vec<TraceStats> {
    let mut earlier: HashSet<u128> = HashSet::new();
    let mut out = Vec::with_capacity(traces.len());
    for (name, t) in traces {
        let pages = t.manifest.pages;
        let frac = |n: usize| if pages == 0 { 0.0 } else { n as f64 / pages as f64 };
        let mut in_vm: HashSet<u128> = HashSet::new();
        let (mut zero, mut dup, mut cross) = (0usize, 0usize, 0usize);
        let (mut zstd, mut lz4, mut nonzero) = (0u64, 0u64, 0u64);
        for p in &t.snapshot {
            if p.zero {
                zero += 1;
                continue;
            }
            nonzero += 1;
            zstd += u64::from(p.zstd_bytes);
            lz4 += u64::from(p.lz4_bytes);
            if !in_vm.insert(p.hash.0) {
                dup += 1;
            }
            if earlier.contains(&p.hash.0) {
                cross += 1;
            }
        }
        earlier.extend(in_vm);
        let mean =
            |total: u64| if nonzero == 0 { 0.0 } else { total as f64 / nonzero as f64 / super::PAGE_SIZE as f64 };

        let duration_s = t.manifest.duration_ns as f64 / 1e9;
        let mut seen = vec![false; pages as usize];
        let mut distinct = 0u64;
        let mut curve = vec![(0.0, 0)];
        for (i, d) in t.epochs.iter().enumerate() {
            // (Rows of a valid trace are always in range.)
            if let Some(slot) = seen.get_mut(d.page_index as usize).filter(|s| !**s) {
                *slot = true;
                distinct += 1;
            }
            if t.epochs.get(i + 1).is_none_or(|n| n.epoch != d.epoch) {
                curve.push((d.time_ns as f64 / 1e9, distinct));
            }
        }
        let growth = GROWTH_TIMES_S.map(|s| {
            (t.manifest.duration_ns >= s * 1_000_000_000)
                .then(|| curve.iter().take_while(|p| p.0 <= s as f64 * GROWTH_TIME_TOLERANCE).last().map_or(0, |p| p.1))
        });
        out.push(TraceStats {
            name: name.clone(),
            pages,
            zero_fraction: frac(zero),
            duplicate_fraction: frac(dup),
            cross_duplicate_fraction: frac(cross),
            zstd_fraction_mean: mean(zstd),
            lz4_fraction_mean: mean(lz4),
            dirty_pages_per_s: if duration_s > 0.0 { t.epochs.len() as f64 / duration_s } else { 0.0 },
            working_set_growth: growth,
            growth_curve: curve,
        });
    }
    out
}

/// The statistics as a text table.
pub fn format_table(stats: &[TraceStats]) -> String {
    let width = stats.iter().map(|s| s.name.len()).max().unwrap_or(0).max(5);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<width$} {:>9} {:>6} {:>7} {:>8} {:>6} {:>6} {:>9} {:>8} {:>8} {:>8}",
        "trace", "pages", "zero", "dup_vm", "dup_set", "zstd", "lz4", "dirty/s", "ws@1s", "ws@10s", "ws@60s"
    );
    let pct = |f: f64| format!("{:.1}%", f * 100.0);
    for s in stats {
        let ws = s.working_set_growth.map(|g| g.map_or("-".to_string(), |v| v.to_string()));
        let _ = writeln!(
            t,
            "{:<width$} {:>9} {:>6} {:>7} {:>8} {:>6} {:>6} {:>9.1} {:>8} {:>8} {:>8}",
            s.name,
            s.pages,
            pct(s.zero_fraction),
            pct(s.duplicate_fraction),
            pct(s.cross_duplicate_fraction),
            pct(s.zstd_fraction_mean),
            pct(s.lz4_fraction_mean),
            s.dirty_pages_per_s,
            ws[0],
            ws[1],
            ws[2]
        );
    }
    t
}

/// File stem of the growth plot.
pub const PLOT_STEM: &str = "working_set_growth";

/// A plot could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot draw plot: {message}")]
pub struct PlotError {
    /// The plot file.
    pub path: String,
    /// Why.
    pub message: String,
}

/// Draws distinct pages dirtied vs time for each trace into
/// `dir/working_set_growth.{png,svg}` (creating `dir`).
pub fn plot_growth(stats: &[TraceStats], dir: &Path) -> Result<(), PlotError> {
    register_font();
    std::fs::create_dir_all(dir).map_err(|e| PlotError { path: dir.display().to_string(), message: e.to_string() })?;
    let png = dir.join(format!("{PLOT_STEM}.png"));
    let svg = dir.join(format!("{PLOT_STEM}.svg"));
    let err = |p: &Path| {
        let path = p.display().to_string();
        move |message: String| PlotError { path, message }
    };
    {
        let root = BitMapBackend::new(&png, (1280, 720)).into_drawing_area();
        draw(stats, &root).map_err(err(&png))?;
        root.present().map_err(|e| e.to_string()).map_err(err(&png))?;
    }
    let root = SVGBackend::new(&svg, (1280, 720)).into_drawing_area();
    draw(stats, &root).map_err(err(&svg))?;
    root.present().map_err(|e| e.to_string()).map_err(err(&svg))?;
    Ok(())
}

fn draw<DB: DrawingBackend>(stats: &[TraceStats], root: &DrawingArea<DB, Shift>) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let t_max = stats.iter().flat_map(|s| s.growth_curve.last()).map(|p| p.0).fold(0.0, f64::max).max(1e-3);
    let y_max = stats.iter().flat_map(|s| s.growth_curve.last()).map(|p| p.1).max().unwrap_or(0).max(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(root)
        .caption("Working-set growth: distinct pages dirtied", ("sans-serif", 26))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..t_max * 1.02, 0.0..y_max)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("time since snapshot (s)")
        .y_desc("distinct pages dirtied")
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(e)?;
    for (i, s) in stats.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(s.growth_curve.iter().map(|&(t, n)| (t, n as f64)), colour.stroke_width(2)))
            .map_err(e)?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
    }
    if !stats.is_empty() {
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 16))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(e)?;
    }
    Ok(())
}
