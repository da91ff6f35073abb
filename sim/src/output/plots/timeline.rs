//! The `timeline` plot: one bar per migration (first request at the top),
//! coloured by phase, a triangle under every pause, and right of it a
//! downtime panel on its own millisecond scale (a 300 ms pause is a few
//! pixels on a 90 s axis, so it gets an axis of its own).

use super::legend::{Legend, Swatch};
use super::{notice, titled, variant_suffix, DrawResult, Fonts, AXIS_DESC_PX, LEGEND_WIDTH_PX, TICK_PX};
use crate::run::RunOutput;
use memfabric_migration::record::{Outcome, RoundPhase};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const PRECOPY_DARK: RGBColor = RGBColor(25, 90, 200);
const PRECOPY_LIGHT: RGBColor = RGBColor(130, 175, 245);
const PAUSE: RGBColor = RGBColor(215, 40, 40);
const PUSH: RGBColor = RGBColor(240, 150, 0);
const IDLE: RGBColor = RGBColor(190, 190, 190);
/// Bars are named when at most this many migrations are drawn.
const MAX_NAMED: usize = 40;

/// Draws the timeline of one run.
pub(super) fn draw<DB: DrawingBackend>(out: &RunOutput, fonts: Fonts, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let title = format!("Migration timeline: {}{} (seed {})", out.scenario, variant_suffix(out), out.seed);
    let area = titled(root, &title, fonts)?;
    if out.migrations.is_empty() {
        return notice(&area, "no migrations in this run", fonts);
    }
    let (w, _) = area.dim_in_pixel();
    let (data, legend_area) = area.split_horizontally(w - LEGEND_WIDTH_PX);
    let (dw, _) = data.dim_in_pixel();
    let (bars, downs) = data.split_horizontally(dw * 3 / 4);
    let n = out.migrations.len();
    // Row of a migration: the first request at the top.
    let row = |id: u32| (n - 1).saturating_sub(id as usize) as f64;
    let t_max = out.migrations.iter().map(|m| m.end_s).fold(0.0f64, f64::max).max(1e-3) * 1.02;
    let names: Vec<String> = out.migrations.iter().map(|m| m.vm.clone()).collect();
    let label = move |y: &f64| {
        let i = y.round();
        if (y - i).abs() > 1e-6 || i < 0.0 || i as usize >= n {
            return String::new();
        }
        let id = n - 1 - i as usize;
        if n <= MAX_NAMED { names[id].clone() } else { id.to_string() }
    };
    let mut chart = ChartBuilder::on(&bars)
        .margin(12)
        .margin_right(4)
        .x_label_area_size(50)
        .y_label_area_size(100)
        .build_cartesian_2d(0.0..t_max, -0.5..n as f64 - 0.5)?;
    chart
        .configure_mesh()
        .x_desc("simulated time (s)")
        .y_desc(if n <= MAX_NAMED { "VM (first request at top)" } else { "migration id" })
        .y_labels(n.min(MAX_NAMED))
        .y_label_formatter(&label)
        .axis_desc_style(fonts.at(AXIS_DESC_PX))
        .label_style(fonts.at(TICK_PX))
        .disable_y_mesh()
        .draw()?;
    let bar = |id: u32| (row(id) - 0.4, row(id) + 0.4);
    // The whole span (set-up, waits) thin and grey; each stage on top of it.
    chart.draw_series(out.migrations.iter().map(|m| {
        let (y0, y1) = bar(m.migration_id);
        Rectangle::new([(m.start_s, y0 + 0.3), (m.end_s, y1 - 0.3)], IDLE.filled())
    }))?;
    let min_w = t_max * 2e-3;
    chart.draw_series(out.rounds.iter().filter_map(|r| {
        let fill = match r.phase {
            RoundPhase::PreCopy if r.round % 2 == 0 => PRECOPY_DARK,
            RoundPhase::PreCopy => PRECOPY_LIGHT,
            RoundPhase::StopCopy | RoundPhase::PostCopySwitch => PAUSE,
            RoundPhase::PostCopyPush => PUSH,
            RoundPhase::IndexSync => return None,
        };
        let (y0, y1) = bar(r.migration_id);
        Some(Rectangle::new([(r.start_s, y0), (r.end_s.max(r.start_s + min_w), y1)], fill.filled()))
    }))?;
    // A triangle under each pause, so that short ones are found.
    let pauses = out.rounds.iter().filter(|r| r.phase.pauses());
    chart.draw_series(pauses.map(|r| TriangleMarker::new((r.start_s, row(r.migration_id) - 0.42), 6, PAUSE.filled())))?;
    let failed: Vec<_> = out.migrations.iter().filter(|m| m.outcome != Outcome::Completed).collect();
    chart.draw_series(failed.iter().map(|m| Cross::new((m.end_s, row(m.migration_id)), 7, BLACK.stroke_width(2))))?;

    downtime_panel(out, fonts, &downs, n)?;

    let mut legend = Legend::default();
    legend
        .add(Swatch::Pair(PRECOPY_DARK, PRECOPY_LIGHT), "pre-copy rounds (the shade\nalternates round by round)")
        .add(Swatch::Fill(PAUSE), "VM paused: stop-and-copy\nor post-copy switch")
        .add(Swatch::Triangle(PAUSE), "marks each pause; its length\nis in the downtime panel")
        .add(Swatch::Fill(PUSH), "post-copy push (VM runs\nat the destination)")
        .add(Swatch::Fill(IDLE), "set-up and waits\n(no pages sent)");
    if !failed.is_empty() {
        legend.add(Swatch::Cross(BLACK), "did not complete\n(see outcome in the tables)");
    }
    legend.draw(&legend_area, fonts)
}

/// Downtime per migration as horizontal bars on a log scale (downtimes span
/// milliseconds to the whole transfer of a cold migration), rows aligned with
/// the timeline.
fn downtime_panel<DB: DrawingBackend>(out: &RunOutput, fonts: Fonts, area: &DrawingArea<DB, Shift>, n: usize) -> DrawResult<DB> {
    let (lo, hi) = log_range(out.migrations.iter().map(|m| m.downtime_ms));
    let row = |id: u32| (n - 1).saturating_sub(id as usize) as f64;
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .margin_left(4)
        .x_label_area_size(50)
        .y_label_area_size(4)
        .build_cartesian_2d((lo..hi).log_scale(), -0.5..n as f64 - 0.5)?;
    chart
        .configure_mesh()
        .x_desc("downtime (ms, log scale)")
        .x_labels(4)
        .x_label_formatter(&|v| format!("{v}"))
        .y_labels(0)
        .axis_desc_style(fonts.at(AXIS_DESC_PX))
        .label_style(fonts.at(TICK_PX))
        .disable_y_mesh()
        .draw()?;
    let shown: Vec<_> = out.migrations.iter().filter(|m| m.downtime_ms > 0.0).collect();
    chart.draw_series(shown.iter().map(|m| {
        let y = row(m.migration_id);
        Rectangle::new([(lo, y - 0.3), (m.downtime_ms.max(lo), y + 0.3)], PAUSE.filled())
    }))?;
    if n <= MAX_NAMED {
        let style = fonts.text(TICK_PX).pos(Pos::new(HPos::Left, VPos::Center));
        chart.draw_series(out.migrations.iter().map(|m| {
            let text = if m.downtime_ms > 0.0 { duration_label(m.downtime_ms) } else { "no pause".into() };
            EmptyElement::at((m.downtime_ms.max(lo), row(m.migration_id))) + Text::new(text, (4, 0), style.clone())
        }))?;
    }
    Ok(())
}

/// A log axis from a power of ten below the smallest positive value to past
/// the largest (with room for a label right of the longest bar).
fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let positive: Vec<f64> = values.filter(|v| *v > 0.0).collect();
    let min = positive.iter().copied().fold(f64::INFINITY, f64::min);
    let max = positive.iter().copied().fold(0.0f64, f64::max);
    if positive.is_empty() {
        return (1.0, 1000.0);
    }
    let lo = 10f64.powf(min.log10().floor()).min(max / 10.0);
    (lo, max * 8.0)
}

/// "24 ms", "320 ms", "38.4 s".
fn duration_label(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::{duration_label, log_range};

    #[test]
    fn downtime_axis_covers_every_pause() {
        let (lo, hi) = log_range([24.0, 320.0, 0.0, 38_391.0].into_iter());
        assert!(lo <= 24.0 && lo > 0.0 && hi > 38_391.0, "{lo}..{hi}");
        assert_eq!(log_range([0.0].into_iter()), (1.0, 1000.0));
        assert_eq!(duration_label(320.4), "320 ms");
        assert_eq!(duration_label(38_391.0), "38.4 s");
    }
}
