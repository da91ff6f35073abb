//! The `strategy_comparison` plot: per strategy, bytes on the wire, makespan
//! and worst downtime as three bar panels, each on its own scale. Strategies
//! keep the colours they have in `strategy_cdf`.

use super::legend::{Legend, Swatch};
use super::{notice, series_colour, titled, DrawResult, Fonts, LEGEND_WIDTH_PX, TICK_PX};
use crate::run::RunOutput;
use memfabric_migration::record::Outcome;
use plotters::coord::Shift;
use plotters::prelude::*;

const GIB: f64 = (1u64 << 30) as f64;

/// Draws the bars of a strategy comparison.
pub(super) fn draw<DB: DrawingBackend>(outs: &[RunOutput], fonts: Fonts, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let title = format!("Strategy comparison: {} (seed {})", outs[0].scenario, outs[0].seed);
    let area = titled(root, &title, fonts)?;
    if outs.iter().all(|o| o.migrations.is_empty()) {
        return notice(&area, "no migrations in this run", fonts);
    }
    let (w, _) = area.dim_in_pixel();
    let (data, legend_area) = area.split_horizontally(w - LEGEND_WIDTH_PX);
    let panels = data.split_evenly((1, 3));
    let stats: Vec<[f64; 3]> = outs
        .iter()
        .map(|o| {
            let wire = o.migrations.iter().map(|m| m.bytes_on_wire as f64).sum::<f64>() / GIB;
            let start = o.migrations.iter().map(|m| m.start_s).fold(f64::INFINITY, f64::min);
            let end = o.migrations.iter().map(|m| m.end_s).fold(0.0, f64::max);
            let down = o.migrations.iter().filter(|m| m.outcome == Outcome::Completed).map(|m| m.downtime_ms).fold(0.0, f64::max);
            [wire, (end - start).max(0.0), down]
        })
        .collect();
    let captions = ["bytes on wire (GiB)", "makespan (s)", "worst downtime (ms)"];
    let n = stats.len();
    for (k, panel) in panels.iter().enumerate() {
        let x_max = stats.iter().map(|s| s[k]).fold(0.0f64, f64::max).max(1e-9) * 1.1;
        let mut chart = ChartBuilder::on(panel)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(10)
            .caption(captions[k], fonts.at(18))
            .build_cartesian_2d(0.0..x_max, -0.5..n as f64 - 0.5)?;
        chart.configure_mesh().disable_y_mesh().x_labels(5).y_labels(0).label_style(fonts.at(TICK_PX)).draw()?;
        // Strategies top to bottom in the order compared.
        chart.draw_series(stats.iter().enumerate().map(|(i, s)| {
            let y = (n - 1 - i) as f64;
            Rectangle::new([(0.0, y - 0.35), (s[k], y + 0.35)], series_colour(i).filled())
        }))?;
    }
    let mut legend = Legend::default();
    for (i, o) in outs.iter().enumerate() {
        legend.add(Swatch::Fill(series_colour(i)), o.variant.clone());
    }
    legend.draw(&legend_area, fonts)
}
