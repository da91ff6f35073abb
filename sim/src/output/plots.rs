//! Plots of a run, drawn with plotters as PNG and SVG:
//! - `timeline`: one bar per migration, coloured by phase (pre-copy rounds,
//!   pause, post-copy push), a cross at the end of migrations that failed;
//! - `link_throughput`: throughput of every loaded link direction over time,
//!   with its capacity dashed;
//! - `fabric_power` (with `[power]`): the fabric's power over time, in total
//!   and per site.
//!
//! Text is drawn with an embedded DejaVu Sans (no system fonts needed).

use super::OutputError;
use crate::run::RunOutput;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// File stems of the plots of one run.
pub const PLOT_NAMES: [&str; 2] = ["timeline", "link_throughput"];

/// A strategy name made safe for a file name (`zero+xbzrle+zstd:3` → `zero_xbzrle_zstd-3`).
fn file_safe(name: &str) -> String {
    name.chars().map(|c| if c == '+' { '_' } else if c == ':' { '-' } else { c }).collect()
}

/// File stems of the plots of a run's variants: the two plots of a plain run,
/// or a strategy comparison plus the two plots of each variant.
pub fn plot_files(outs: &[RunOutput]) -> Vec<String> {
    if outs.len() == 1 {
        return run_plots(&outs[0]).iter().map(|s| s.to_string()).collect();
    }
    let mut v = vec!["strategy_comparison".to_string()];
    for o in outs {
        for p in run_plots(o) {
            v.push(format!("{p}-{}", file_safe(&o.variant)));
        }
    }
    v
}

/// The per-run plots of one run: [`PLOT_NAMES`], and `fabric_power` when it has energy rows.
fn run_plots(out: &RunOutput) -> Vec<&'static str> {
    let mut v = PLOT_NAMES.to_vec();
    if !out.energy.is_empty() {
        v.push("fabric_power");
    }
    v
}

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// Registers the embedded font as "sans-serif" (once per process).
pub(crate) fn register_font() {
    REGISTER.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("embedded DejaVuSans.ttf is a valid font"));
    });
}

const SIZE: (u32, u32) = (1280, 720);

/// Something drawable on any plotters backend.
trait Figure {
    fn render<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// One of the per-run plots.
struct RunPlot<'a> {
    name: &'static str,
    out: &'a RunOutput,
}

impl Figure for RunPlot<'_> {
    fn render<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        draw(self.name, self.out, root)
    }
}

/// The strategy comparison of several variants.
struct Comparison<'a>(&'a [RunOutput]);

impl Figure for Comparison<'_> {
    fn render<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        comparison(self.0, root).map_err(|e| e.to_string())
    }
}

/// Draws every plot of a run's variants into `dir`.
pub fn draw_all(outs: &[RunOutput], dir: &Path) -> Result<(), OutputError> {
    register_font();
    if outs.len() > 1 {
        draw_file(dir, "strategy_comparison", &Comparison(outs))?;
    }
    for out in outs {
        for name in run_plots(out) {
            let stem = if outs.len() == 1 { name.to_string() } else { format!("{name}-{}", file_safe(&out.variant)) };
            draw_file(dir, &stem, &RunPlot { name, out })?;
        }
    }
    Ok(())
}

/// Draws one figure as `stem.png` and `stem.svg`.
fn draw_file<F: Figure>(dir: &Path, stem: &str, figure: &F) -> Result<(), OutputError> {
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    let err = |path: &Path| {
        let path = path.display().to_string();
        move |e: String| OutputError::Plot { path, message: e }
    };
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        figure.render(&root).map_err(err(&png))?;
        root.present().map_err(|e| e.to_string()).map_err(err(&png))?;
    }
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        figure.render(&root).map_err(err(&svg))?;
        root.present().map_err(|e| e.to_string()).map_err(err(&svg))?;
    }
    Ok(())
}

fn draw<DB: DrawingBackend>(name: &str, out: &RunOutput, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    match name {
        "timeline" => timeline(out, root).map_err(|e| e.to_string()),
        "link_throughput" => links(out, root).map_err(|e| e.to_string()),
        "fabric_power" => fabric_power(out, root).map_err(|e| e.to_string()),
        _ => Err(format!("unknown plot {name}")),
    }
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// ", strategy X" for a variant of a strategy comparison, else nothing.
fn variant_suffix(out: &RunOutput) -> String {
    if out.variant == crate::run::BASE_VARIANT {
        String::new()
    } else {
        format!(", {}", out.variant)
    }
}

fn phase_colour(phase: &str) -> RGBColor {
    match phase {
        "precopy" => RGBColor(66, 133, 244),
        "stopcopy" | "postcopy-switch" => RGBColor(219, 68, 55),
        "postcopy-push" => RGBColor(244, 160, 0),
        _ => RGBColor(128, 128, 128),
    }
}

fn timeline<DB: DrawingBackend>(out: &RunOutput, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let n = out.migrations.len().max(1);
    let t_max = out.migrations.iter().map(|m| m.end_s).fold(0.0f64, f64::max).max(1e-3) * 1.02;
    let mut chart = ChartBuilder::on(root)
        .caption(format!("Migration timeline: {}{} (seed {})", out.scenario, variant_suffix(out), out.seed), ("sans-serif", 26))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, -0.5..n as f64 - 0.5)?;
    // Label bars with VM names when they fit, else with migration ids.
    let names: Vec<String> = out.migrations.iter().map(|m| m.vm.clone()).collect();
    let label = move |y: &f64| {
        let i = y.round();
        if (y - i).abs() > 1e-6 || i < 0.0 {
            return String::new();
        }
        names.get(i as usize).cloned().unwrap_or_default()
    };
    chart
        .configure_mesh()
        .x_desc("simulated time (s)")
        .y_desc(if n <= 40 { "VM (in order of request)" } else { "migration id" })
        .y_labels(n.min(40))
        .y_label_formatter(&move |y| if n <= 40 { label(y) } else { format!("{y:.0}") })
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 14))
        .disable_y_mesh()
        .draw()?;
    let bar = |i: u32| (i as f64 - 0.4, i as f64 + 0.4);
    // Connection set-up and gaps in grey, then each stage in its colour.
    chart.draw_series(out.migrations.iter().map(|m| {
        let (y0, y1) = bar(m.migration_id);
        Rectangle::new([(m.start_s, y0 + 0.3), (m.end_s, y1 - 0.3)], RGBColor(200, 200, 200).filled())
    }))?;
    // Pre-copy rounds alternate two shades so that round boundaries show.
    let light_blue = RGBColor(138, 180, 248);
    for (label, phase) in [("pre-copy round", "precopy"), ("VM paused", "stopcopy"), ("post-copy push", "postcopy-push")] {
        let colour = phase_colour(phase);
        chart
            .draw_series(
                out.rounds
                    .iter()
                    .filter(|r| r.phase == phase || (phase == "stopcopy" && r.phase == "postcopy-switch"))
                    .map(|r| {
                        let (y0, y1) = bar(r.migration_id);
                        let fill = if phase == "precopy" && r.round % 2 == 1 { light_blue } else { colour };
                        Rectangle::new([(r.start_s, y0), (r.end_s.max(r.start_s + t_max * 1e-4), y1)], fill.filled())
                    }),
            )?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled()));
    }
    let failed: Vec<_> = out.migrations.iter().filter(|m| m.outcome != "completed").collect();
    if !failed.is_empty() {
        chart
            .draw_series(failed.iter().map(|m| Cross::new((m.end_s, m.migration_id as f64), 6, BLACK.stroke_width(2))))?
            .label("did not complete")
            .legend(|(x, y)| Cross::new((x + 7, y), 6, BLACK.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}

type TimeChart<'a, DB> = ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// A chart over simulated time from 0 to `t_end` seconds, with its mesh drawn.
fn time_chart<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    caption: &str,
    y_desc: &str,
    t_end: f64,
    y_max: f64,
) -> Result<TimeChart<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 26))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_end * 1.02, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("simulated time (s)")
        .y_desc(y_desc)
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 14))
        .draw()?;
    Ok(chart)
}

fn links<DB: DrawingBackend>(out: &RunOutput, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    // Link directions that carried traffic, in order of first appearance.
    let mut dirs: Vec<(String, String, String)> = Vec::new();
    for r in &out.links {
        let key = (r.link.clone(), r.from_site.clone(), r.to_site.clone());
        if r.throughput_bytes_per_s > 0.0 && !dirs.contains(&key) {
            dirs.push(key);
        }
    }
    let t_end = out.end_time.as_secs_f64().max(1e-3);
    let y_max = out
        .links
        .iter()
        .filter(|r| dirs.contains(&(r.link.clone(), r.from_site.clone(), r.to_site.clone())))
        .map(|r| r.capacity_bytes_per_s.max(r.throughput_bytes_per_s) * 8.0 / 1e9)
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.1;
    let mut chart = time_chart(root, &format!("Link throughput: {}{} (seed {})", out.scenario, variant_suffix(out), out.seed), "throughput (Gbit/s)", t_end, y_max)?;
    for (i, (link, from, to)) in dirs.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let rows: Vec<_> = out.links.iter().filter(|r| &r.link == link && &r.from_site == from && &r.to_site == to).collect();
        let step = |value: &dyn Fn(&crate::run::LinkRow) -> f64| {
            let mut pts = Vec::with_capacity(rows.len() * 2 + 1);
            for (j, r) in rows.iter().enumerate() {
                if j > 0 {
                    pts.push((r.time_s, value(rows[j - 1])));
                }
                pts.push((r.time_s, value(r)));
            }
            if let Some(last) = rows.last() {
                pts.push((t_end, value(last)));
            }
            pts
        };
        let tput = step(&|r| r.throughput_bytes_per_s * 8.0 / 1e9);
        let cap = step(&|r| r.capacity_bytes_per_s * 8.0 / 1e9);
        chart
            .draw_series(LineSeries::new(tput, colour.stroke_width(2)))?
            .label(format!("{link} ({from}→{to})"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        chart.draw_series(DashedLineSeries::new(cap, 6, 4, colour.stroke_width(1)))?;
    }
    if !dirs.is_empty() {
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 16))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    Ok(())
}

/// The fabric's power over time: the sum over hosts, and one line per site.
fn fabric_power<DB: DrawingBackend>(out: &RunOutput, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let t_end = out.end_time.as_secs_f64().max(1e-3);
    // Times at which some host's power changed, and the sites in order.
    let mut times: Vec<f64> = out.energy.iter().map(|r| r.time_s).collect();
    times.dedup();
    let mut sites: Vec<&str> = Vec::new();
    for r in &out.energy {
        if !sites.contains(&r.site.as_str()) {
            sites.push(&r.site);
        }
    }
    // Step series: at each change time, the power of each host is its last row's.
    let mut current: Vec<(&str, &str, f64)> = Vec::new();
    let mut series: Vec<Vec<(f64, f64)>> = vec![Vec::new(); sites.len() + 1];
    let mut rows = out.energy.iter().peekable();
    for &t in &times {
        let before: Vec<f64> = (0..=sites.len()).map(|i| level(&current, &sites, i) / 1e3).collect();
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
            s.push((t, level(&current, &sites, i) / 1e3));
        }
    }
    for (i, s) in series.iter_mut().enumerate() {
        s.push((t_end, level(&current, &sites, i) / 1e3));
    }
    let y_max = series[0].iter().map(|p| p.1).fold(0.0f64, f64::max).max(1e-3) * 1.1;
    let mut chart = time_chart(root, &format!("Fabric power: {}{} (seed {})", out.scenario, variant_suffix(out), out.seed), "power (kW)", t_end, y_max)?;
    for (i, s) in series.into_iter().enumerate() {
        let (label, colour) = if i == 0 { ("fabric".to_string(), BLACK.to_rgba()) } else { (sites[i - 1].to_string(), Palette99::pick(i - 1).to_rgba()) };
        chart
            .draw_series(LineSeries::new(s, colour.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    Ok(())
}

/// Watts of series `i`: 0 is every host, `i` is site `i - 1`.
fn level(current: &[(&str, &str, f64)], sites: &[&str], i: usize) -> f64 {
    current.iter().filter(|(_, s, _)| i == 0 || *s == sites[i - 1]).map(|c| c.2).sum()
}

/// Per strategy: bytes on the wire, makespan and worst downtime, as three bar panels.
fn comparison<DB: DrawingBackend>(outs: &[RunOutput], root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let title = format!("Strategy comparison: {} (seed {})", outs[0].scenario, outs[0].seed);
    let root = root.titled(&title, ("sans-serif", 26))?;
    let panels = root.split_evenly((1, 3));
    let stats: Vec<(String, [f64; 3])> = outs
        .iter()
        .map(|o| {
            let wire = o.migrations.iter().map(|m| m.bytes_on_wire as f64).sum::<f64>() / (1u64 << 30) as f64;
            let start = o.migrations.iter().map(|m| m.start_s).fold(f64::INFINITY, f64::min);
            let end = o.migrations.iter().map(|m| m.end_s).fold(0.0, f64::max);
            let down = o.migrations.iter().filter(|m| m.outcome == "completed").map(|m| m.downtime_ms).fold(0.0, f64::max);
            (o.variant.clone(), [wire, (end - start).max(0.0), down])
        })
        .collect();
    let labels = ["bytes on wire (GiB)", "makespan (s)", "worst downtime (ms)"];
    let n = stats.len();
    let names: Vec<String> = stats.iter().map(|s| s.0.clone()).collect();
    for (k, panel) in panels.iter().enumerate() {
        let x_max = stats.iter().map(|s| s.1[k]).fold(0.0f64, f64::max).max(1e-9) * 1.1;
        // Strategies top to bottom in the order compared.
        let name_at = |y: &f64| {
            let i = y.round();
            if (y - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n { names[n - 1 - i as usize].clone() } else { String::new() }
        };
        let mut chart = ChartBuilder::on(panel)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(if k == 0 { 170 } else { 10 })
            .caption(labels[k], ("sans-serif", 18))
            .build_cartesian_2d(0.0..x_max, -0.5..n as f64 - 0.5)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_labels(5)
            .y_labels(n)
            .y_label_formatter(&|y| if k == 0 { name_at(y) } else { String::new() })
            .label_style(("sans-serif", 13))
            .draw()?;
        chart.draw_series(stats.iter().enumerate().map(|(i, s)| {
            let y = (n - 1 - i) as f64;
            let colour = Palette99::pick(i).to_rgba();
            Rectangle::new([(0.0, y - 0.35), (s.1[k], y + 0.35)], colour.filled())
        }))?;
    }
    Ok(())
}
