//! The `fabric_power` plot (scenarios with `[power]`): the fabric's power
//! over time, in total and per site, as step lines on one time axis.

use super::legend::{Legend, Swatch};
use super::{notice, series_colour, titled, variant_suffix, DrawResult, Fonts, AXIS_DESC_PX, LEGEND_WIDTH_PX, TICK_PX};
use crate::run::RunOutput;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Draws the fabric's power of one run.
pub(super) fn draw<DB: DrawingBackend>(out: &RunOutput, fonts: Fonts, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let title = format!("Fabric power: {}{} (seed {})", out.scenario, variant_suffix(out), out.seed);
    let area = titled(root, &title, fonts)?;
    if out.energy.is_empty() {
        return notice(&area, "no energy rows in this run", fonts);
    }
    let t_end = out.end_time.as_secs_f64().max(1e-3);
    let (sites, series) = power_series(out, t_end);
    let y_max = series[0].iter().map(|p| p.1).fold(0.0f64, f64::max).max(1e-3) * 1.1;
    let (w, _) = area.dim_in_pixel();
    let (data, legend_area) = area.split_horizontally(w - LEGEND_WIDTH_PX);
    let mut chart = ChartBuilder::on(&data)
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..t_end * 1.02, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("simulated time (s)")
        .y_desc("power (kW)")
        .axis_desc_style(fonts.at(AXIS_DESC_PX))
        .label_style(fonts.at(TICK_PX))
        .draw()?;
    let mut legend = Legend::default();
    for (i, s) in series.into_iter().enumerate() {
        let (label, colour) =
            if i == 0 { ("whole fabric".to_string(), BLACK) } else { (format!("site {}", sites[i - 1]), series_colour(i - 1)) };
        chart.draw_series(LineSeries::new(s, colour.stroke_width(2)))?;
        legend.add(Swatch::Line(colour), label);
    }
    legend.draw(&legend_area, fonts)
}

/// Step series of power in kW: index 0 the whole fabric, `i` site `i - 1`;
/// at each change time a host's power is that of its last energy row.
fn power_series(out: &RunOutput, t_end: f64) -> (Vec<&str>, Vec<Vec<(f64, f64)>>) {
    let mut times: Vec<f64> = out.energy.iter().map(|r| r.time_s).collect();
    times.dedup();
    let mut sites: Vec<&str> = Vec::new();
    for r in &out.energy {
        if !sites.contains(&r.site.as_str()) {
            sites.push(&r.site);
        }
    }
    let mut current: Vec<(&str, &str, f64)> = Vec::new();
    let mut series: Vec<Vec<(f64, f64)>> = vec![Vec::new(); sites.len() + 1];
    let mut rows = out.energy.iter().peekable();
    for &t in &times {
        let before: Vec<f64> = (0..=sites.len()).map(|i| level_kw(&current, &sites, i)).collect();
        while let Some(r) = rows.next_if(|r| r.time_s == t) {
            match current.iter_mut().find(|(h, _, _)| *h == r.host) {
                Some(c) => c.2 = r.watts,
                None => current.push((&r.host, &r.site, r.watts)),
            }
        }
        for (i, s) in series.iter_mut().enumerate() {
            if !s.is_empty() {
                s.push((t, before[i]));
            }
            s.push((t, level_kw(&current, &sites, i)));
        }
    }
    for (i, s) in series.iter_mut().enumerate() {
        s.push((t_end, level_kw(&current, &sites, i)));
    }
    (sites, series)
}

/// Kilowatts of series `i`: 0 is every host, `i` is site `i - 1`.
fn level_kw(current: &[(&str, &str, f64)], sites: &[&str], i: usize) -> f64 {
    current.iter().filter(|(_, s, _)| i == 0 || *s == sites[i - 1]).map(|c| c.2).sum::<f64>() / 1e3
}
