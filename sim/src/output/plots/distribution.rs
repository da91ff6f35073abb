//! Distributions as empirical CDFs: `downtime_distribution` of one run with
//! many migrations, and `strategy_cdf` (total time and downtime, one line per
//! strategy) of a strategy comparison. Only completed migrations count.

use super::legend::{Legend, Swatch};
use super::{notice, series_colour, titled, variant_suffix, DrawResult, Fonts, AXIS_DESC_PX, LEGEND_WIDTH_PX, TICK_PX};
use crate::output::summary::percentile;
use crate::run::RunOutput;
use memfabric_migration::record::Outcome;
use plotters::coord::Shift;
use plotters::prelude::*;

const P50: RGBColor = RGBColor(90, 90, 90);
const P99: RGBColor = RGBColor(215, 40, 40);

/// Completed migrations of a run.
pub(super) fn completed(out: &RunOutput) -> usize {
    out.migrations.iter().filter(|m| m.outcome == Outcome::Completed).count()
}

/// Sorted values of completed migrations.
fn sorted(out: &RunOutput, value: impl Fn(&crate::mechanism::MigrationRow) -> f64) -> Vec<f64> {
    let mut v: Vec<f64> = out.migrations.iter().filter(|m| m.outcome == Outcome::Completed).map(value).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The empirical CDF of sorted values as a step line from 0.
fn cdf_points(sorted: &[f64]) -> Vec<(f64, f64)> {
    let n = sorted.len() as f64;
    let mut pts = vec![(0.0, 0.0)];
    for (i, &v) in sorted.iter().enumerate() {
        pts.push((v, i as f64 / n));
        pts.push((v, (i + 1) as f64 / n));
    }
    pts
}

/// Draws the downtime CDF of one run.
pub(super) fn downtime<DB: DrawingBackend>(out: &RunOutput, fonts: Fonts, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let down = sorted(out, |m| m.downtime_ms);
    let title = format!(
        "Downtime distribution: {}{} (seed {}, {} completed migrations)",
        out.scenario,
        variant_suffix(out),
        out.seed,
        down.len()
    );
    let area = titled(root, &title, fonts)?;
    if down.is_empty() {
        return notice(&area, "no completed migrations in this run", fonts);
    }
    let (w, _) = area.dim_in_pixel();
    let (data, legend_area) = area.split_horizontally(w - LEGEND_WIDTH_PX);
    let x_max = down.last().copied().unwrap_or(0.0).max(1e-3) * 1.08;
    let mut chart = ChartBuilder::on(&data)
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max, 0.0..1.02)?;
    chart
        .configure_mesh()
        .x_desc("downtime (ms)")
        .y_desc("share of completed migrations ≤ x")
        .axis_desc_style(fonts.at(AXIS_DESC_PX))
        .label_style(fonts.at(TICK_PX))
        .draw()?;
    chart.draw_series(LineSeries::new(cdf_points(&down), series_colour(0).stroke_width(3)))?;
    let (p50, p99) = (percentile(&down, 50.0), percentile(&down, 99.0));
    for (v, c) in [(p50, P50), (p99, P99)] {
        chart.draw_series(DashedLineSeries::new(vec![(v, 0.0), (v, 1.02)], 3, 4, c.stroke_width(2)))?;
    }
    let mut legend = Legend::default();
    legend
        .add(Swatch::Line(series_colour(0)), "share of completed migrations\nwith at most this downtime")
        .add(Swatch::Dotted(P50), format!("median: {p50:.1} ms"))
        .add(Swatch::Dotted(P99), format!("99th percentile: {p99:.1} ms"));
    legend.draw(&legend_area, fonts)
}

/// Draws the CDFs of total time and downtime per strategy.
pub(super) fn strategies<DB: DrawingBackend>(outs: &[RunOutput], fonts: Fonts, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let title = format!("Strategies compared: {} (seed {}), completed migrations", outs[0].scenario, outs[0].seed);
    let area = titled(root, &title, fonts)?;
    if outs.iter().all(|o| completed(o) == 0) {
        return notice(&area, "no completed migrations in any variant", fonts);
    }
    let (w, _) = area.dim_in_pixel();
    let (data, legend_area) = area.split_horizontally(w - LEGEND_WIDTH_PX);
    let panels = data.split_evenly((1, 2));
    let metrics: [(&str, fn(&crate::mechanism::MigrationRow) -> f64); 2] =
        [("total migration time (s)", |m| m.total_time_s), ("downtime (ms)", |m| m.downtime_ms)];
    for ((desc, value), panel) in metrics.iter().zip(panels.iter()) {
        let all: Vec<Vec<f64>> = outs.iter().map(|o| sorted(o, value)).collect();
        let x_max = all.iter().filter_map(|v| v.last().copied()).fold(0.0f64, f64::max).max(1e-3) * 1.08;
        let mut chart = ChartBuilder::on(panel)
            .margin(14)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max, 0.0..1.02)?;
        chart
            .configure_mesh()
            .x_desc(*desc)
            .y_desc("share of completed migrations ≤ x")
            .x_labels(6)
            .axis_desc_style(fonts.at(AXIS_DESC_PX))
            .label_style(fonts.at(TICK_PX))
            .draw()?;
        for (i, v) in all.iter().enumerate() {
            if !v.is_empty() {
                chart.draw_series(LineSeries::new(cdf_points(v), series_colour(i).stroke_width(2)))?;
            }
        }
    }
    let mut legend = Legend::default();
    for (i, o) in outs.iter().enumerate() {
        let n = completed(o);
        let label = if n == 0 { format!("{}\n(no completed migrations)", o.variant) } else { o.variant.clone() };
        legend.add(Swatch::Line(series_colour(i)), label);
    }
    legend.draw(&legend_area, fonts)
}

#[cfg(test)]
mod tests {
    use super::cdf_points;

    #[test]
    fn cdf_steps_reach_one_at_the_largest_value() {
        let pts = cdf_points(&[1.0, 2.0, 4.0]);
        assert_eq!(pts.first(), Some(&(0.0, 0.0)));
        assert_eq!(pts.last(), Some(&(4.0, 1.0)));
        // Each value lifts the curve by 1/n at that value.
        assert!(pts.contains(&(2.0, 1.0 / 3.0)) && pts.contains(&(2.0, 2.0 / 3.0)));
    }
}
