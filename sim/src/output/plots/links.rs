//! The `link_throughput` plot: one panel per link direction that carried
//! traffic (the busiest [`MAX_PANELS`]), each with its capacity as a grey
//! area, the throughput as a line on top, outages (capacity 0) as red bands
//! and capacity changes as dotted lines, on a shared time axis.

use super::legend::{Legend, Swatch};
use super::{notice, series_colour, titled, variant_suffix, DrawResult, Fonts, AXIS_DESC_PX, LEGEND_WIDTH_PX, TICK_PX};
use crate::run::{LinkRow, RunOutput};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Most link directions drawn (the ones that carried the most bytes).
const MAX_PANELS: usize = 6;
const CAPACITY_FILL: RGBColor = RGBColor(225, 225, 225);
const CAPACITY_EDGE: RGBColor = RGBColor(110, 110, 110);
const OUTAGE: RGBColor = RGBColor(220, 30, 30);

/// `(start_s, end_s, capacity, throughput)`, rates in bytes per second.
type Step = (f64, f64, f64, f64);

/// The load of one link direction as steps `[start, end)`.
struct Direction<'a> {
    link: &'a str,
    from: &'a str,
    to: &'a str,
    steps: Vec<Step>,
    bytes: f64,
}

/// Link directions that carried traffic, in order of first appearance.
fn directions(out: &RunOutput, t_end: f64) -> Vec<Direction<'_>> {
    let mut keys: Vec<(&str, &str, &str)> = Vec::new();
    for r in &out.links {
        let key = (r.link.as_str(), r.from_site.as_str(), r.to_site.as_str());
        if r.throughput_bytes_per_s > 0.0 && !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(link, from, to)| {
            let rows: Vec<&LinkRow> = out.links.iter().filter(|r| r.link == link && r.from_site == from && r.to_site == to).collect();
            let steps: Vec<_> = rows
                .iter()
                .enumerate()
                .map(|(j, r)| {
                    let end = rows.get(j + 1).map_or(t_end, |n| n.time_s);
                    (r.time_s, end.max(r.time_s), r.capacity_bytes_per_s, r.throughput_bytes_per_s)
                })
                .collect();
            let bytes = steps.iter().map(|s| (s.1 - s.0) * s.3).sum();
            Direction { link, from, to, steps, bytes }
        })
        .collect()
}

/// Draws the link loads of one run.
pub(super) fn draw<DB: DrawingBackend>(out: &RunOutput, fonts: Fonts, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let t_end = out.end_time.as_secs_f64().max(1e-3);
    let mut dirs = directions(out, t_end);
    let total = dirs.len();
    if total > MAX_PANELS {
        let mut by_bytes: Vec<usize> = (0..total).collect();
        by_bytes.sort_by(|&a, &b| dirs[b].bytes.total_cmp(&dirs[a].bytes).then(a.cmp(&b)));
        let keep: Vec<usize> = by_bytes[..MAX_PANELS].to_vec();
        dirs = dirs.into_iter().enumerate().filter(|(i, _)| keep.contains(i)).map(|(_, d)| d).collect();
    }
    let shown = if total > MAX_PANELS { format!(" — the {MAX_PANELS} busiest of {total} link directions") } else { String::new() };
    let title = format!("Link throughput: {}{} (seed {}){shown}", out.scenario, variant_suffix(out), out.seed);
    let area = titled(root, &title, fonts)?;
    if dirs.is_empty() {
        let what = if out.migrations.is_empty() { "no migrations in this run" } else { "no link carried traffic (all moves within a site)" };
        return notice(&area, what, fonts);
    }
    let (w, _) = area.dim_in_pixel();
    let (data, legend_area) = area.split_horizontally(w - LEGEND_WIDTH_PX);
    let panels = data.split_evenly((dirs.len(), 1));
    // About a pixel of the time axis.
    let min_s = t_end / 1000.0;
    let mut legend = Legend::default();
    let (mut any_outage, mut any_change) = (false, false);
    for (i, (d, panel)) in dirs.iter().zip(panels.iter()).enumerate() {
        let colour = series_colour(i);
        let last = i + 1 == dirs.len();
        let peak_bytes_per_s = d.steps.iter().map(|s| s.2.max(s.3)).fold(0.0f64, f64::max);
        let (scale, unit) = if peak_bytes_per_s * 8.0 >= 1e9 { (8.0 / 1e9, "Gbit/s") } else { (8.0 / 1e6, "Mbit/s") };
        let y_max = (peak_bytes_per_s * scale).max(1e-3) * 1.15;
        let mut chart = ChartBuilder::on(panel)
            .margin(8)
            .caption(format!("{} ({} → {})", d.link, d.from, d.to), fonts.at(15))
            .x_label_area_size(if last { 45 } else { 22 })
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..t_end * 1.02, 0.0..y_max)?;
        let mut mesh = chart.configure_mesh();
        mesh.y_desc(unit).y_labels(4).axis_desc_style(fonts.at(AXIS_DESC_PX)).label_style(fonts.at(TICK_PX));
        if last {
            mesh.x_desc("simulated time (s)");
        }
        mesh.draw()?;
        // Capacity: grey area with a dark edge; outages as red bands.
        chart.draw_series(d.steps.iter().map(|s| Rectangle::new([(s.0, 0.0), (s.1, s.2 * scale)], CAPACITY_FILL.filled())))?;
        let outages: Vec<_> = d.steps.iter().filter(|s| s.2 <= 0.0 && s.1 > s.0).collect();
        any_outage |= !outages.is_empty();
        chart.draw_series(outages.iter().map(|s| Rectangle::new([(s.0, 0.0), (s.1, y_max)], OUTAGE.mix(0.25).filled())))?;
        chart.draw_series(LineSeries::new(step_points(&d.steps, min_s, |s| s.2 * scale), CAPACITY_EDGE.stroke_width(1)))?;
        // Capacity changes between two non-zero values (outages show as bands).
        let changes: Vec<f64> =
            d.steps.windows(2).filter(|p| p[0].2 > 0.0 && p[1].2 > 0.0 && p[0].2 != p[1].2).map(|p| p[1].0).collect();
        any_change |= !changes.is_empty();
        for t in changes {
            chart.draw_series(DashedLineSeries::new(vec![(t, 0.0), (t, y_max)], 3, 4, BLACK.stroke_width(2)))?;
        }
        chart.draw_series(LineSeries::new(step_points(&d.steps, min_s, |s| s.3 * scale), colour.stroke_width(2)))?;
        legend.add(Swatch::Line(colour), format!("throughput, {}\n{} → {}", d.link, d.from, d.to));
    }
    legend.add(Swatch::Fill(CAPACITY_FILL), "capacity of the direction\n(grey area, dark edge)");
    if any_outage {
        legend.add(Swatch::Band(OUTAGE), "outage (capacity 0)");
    }
    if any_change {
        legend.add(Swatch::Dotted(BLACK), "capacity change");
    }
    legend.draw(&legend_area, fonts)
}

/// A step line through the steps' values, leaving out steps shorter than
/// `min_s` except the last (under a pixel wide: drawn, they show as stray
/// specks and spikes);
/// the next step starts where the last one drawn ended.
fn step_points(steps: &[Step], min_s: f64, value: impl Fn(&Step) -> f64) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = Vec::with_capacity(steps.len() * 2);
    for (i, s) in steps.iter().enumerate() {
        // The last step is kept: it shows where the line ends.
        if s.1 - s.0 < min_s && i + 1 < steps.len() {
            continue;
        }
        let start = pts.last().map_or(s.0, |p| p.0);
        pts.push((start, value(s)));
        pts.push((s.1, value(s)));
    }
    pts
}

#[cfg(test)]
mod tests {
    use super::step_points;

    #[test]
    fn sub_pixel_steps_are_left_out_of_lines() {
        // 10 s at 5, a 1 ms dip to 1, then 10 s at 5.
        let steps = [(0.0, 10.0, 5.0, 5.0), (10.0, 10.001, 5.0, 1.0), (10.001, 20.0, 5.0, 5.0)];
        let pts = step_points(&steps, 0.02, |s| s.3);
        assert_eq!(pts, vec![(0.0, 5.0), (10.0, 5.0), (10.0, 5.0), (20.0, 5.0)]);
        assert_eq!(step_points(&steps, 0.0, |s| s.3).len(), 6);
        // A short last step still ends the line.
        let pts = step_points(&steps[..2], 0.02, |s| s.3);
        assert_eq!(pts, vec![(0.0, 5.0), (10.0, 5.0), (10.0, 1.0), (10.001, 1.0)]);
    }
}
