//! Plots of a study, as self-contained SVG text (embedded as is in the HTML
//! report): lines of a metric over the first numeric axis, one line per
//! strategy (the first text axis, or the variant), and a heatmap of a metric
//! over the first two numeric axes (axes with more values first). Values are means over seeds and the
//! remaining axes, for the first operation; ticks carry the axis values as
//! written in the study ("1Gbit/s"), so labels read as the user wrote them.

use super::table::PointRecord;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Metrics drawn, with their axis titles.
const LINE_METRICS: &[(&str, &str)] = &[("makespan_s", "makespan (s)"), ("downtime_ms_max", "longest downtime (ms)")];
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 440.0;
const MARGIN_LEFT: f64 = 120.0;
const MARGIN_RIGHT: f64 = 170.0;
const MARGIN_TOP: f64 = 40.0;
const MARGIN_BOTTOM: f64 = 90.0;
const COLORS: &[&str] = &["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

/// One observation: (series, x label, x number, y label, y number, metric value).
struct Obs {
    series: String,
    x: (String, f64),
    y: Option<(String, f64)>,
    value: f64,
}

/// Named SVG plots of the records.
pub fn draw(columns: &[String], records: &[PointRecord]) -> Vec<(String, String)> {
    let distinct = |i: usize| {
        let mut xs: Vec<f64> = records.iter().filter_map(|r| r.numbers.get(i).copied().flatten()).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        xs.len()
    };
    // Numeric axes with the most values first (ties: column order).
    let mut numeric: Vec<usize> = (0..columns.len()).filter(|&i| distinct(i) >= 2).collect();
    numeric.sort_by_key(|&i| std::cmp::Reverse(distinct(i)));
    let text_axis = (0..columns.len()).find(|&i| records.iter().all(|r| r.numbers.get(i).copied().flatten().is_none()));
    let Some(&xi) = numeric.first() else { return Vec::new() };
    let first_op = records.iter().flat_map(|r| r.ops.first()).map(|o| o.operation.clone()).next();
    let Some(op) = first_op else { return Vec::new() };
    let obs = |metric: &str, yi: Option<usize>| -> Vec<Obs> {
        let mut out = Vec::new();
        for r in records.iter().filter(|r| r.error.is_none()) {
            let Some(x) = r.numbers[xi] else { continue };
            let y = match yi {
                Some(yi) => match r.numbers[yi] {
                    Some(n) => Some((r.values[yi].clone(), n)),
                    None => continue,
                },
                None => None,
            };
            for o in r.ops.iter().filter(|o| o.operation == op) {
                let series = match text_axis {
                    Some(t) => r.values[t].clone(),
                    None => o.variant.clone(),
                };
                out.push(Obs {
                    series,
                    x: (r.values[xi].clone(), x),
                    y: y.clone(),
                    value: o.metric(metric).unwrap_or(0.0),
                });
            }
        }
        out
    };
    let mut plots = Vec::new();
    for (metric, title) in LINE_METRICS {
        let name = format!("lines-{metric}");
        plots.push((name, lines(&obs(metric, None), &columns[xi], title, &format!("{op}: {title} over {}", columns[xi]))));
    }
    if let Some(&yi) = numeric.get(1) {
        plots.push((
            "heatmap-makespan_s".to_string(),
            heatmap(&obs("makespan_s", Some(yi)), &columns[xi], &columns[yi], &format!("{op}: mean makespan (s)")),
        ));
    }
    plots
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Mean of values per key.
fn means<K: Ord + Clone>(items: impl Iterator<Item = (K, f64)>) -> BTreeMap<K, f64> {
    let mut acc: BTreeMap<K, (f64, u32)> = BTreeMap::new();
    for (k, v) in items {
        let e = acc.entry(k).or_insert((0.0, 0));
        e.0 += v;
        e.1 += 1;
    }
    acc.into_iter().map(|(k, (s, n))| (k, s / n as f64)).collect()
}

/// Distinct x values in numeric order with their labels.
fn x_ticks(obs: &[Obs]) -> Vec<(f64, String)> {
    let mut xs: Vec<(f64, String)> = obs.iter().map(|o| (o.x.1, o.x.0.clone())).collect();
    xs.sort_by(|a, b| a.0.total_cmp(&b.0));
    xs.dedup_by(|a, b| a.0 == b.0);
    xs
}

fn header(s: &mut String, title: &str) {
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#, WIDTH / 2.0, esc(title));
}

/// A nice step for about `n` ticks over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    mag * if f <= 1.0 { 1.0 } else if f <= 2.0 { 2.0 } else if f <= 5.0 { 5.0 } else { 10.0 }
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 1e4 || (v != 0.0 && v.abs() < 1e-2) {
        format!("{v:.2e}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn lines(obs: &[Obs], x_title: &str, y_title: &str, title: &str) -> String {
    let xs = x_ticks(obs);
    let log = xs.first().is_some_and(|f| f.0 > 0.0) && xs.last().is_some_and(|l| l.0 / xs[0].0 >= 20.0);
    let tx = |x: f64| if log { x.ln() } else { x };
    let (x0, x1) = (tx(xs.first().map_or(0.0, |x| x.0)), tx(xs.last().map_or(1.0, |x| x.0)));
    let series = means(obs.iter().map(|o| ((o.series.clone(), o.x.1.to_bits()), o.value)));
    let ymax = series.values().copied().fold(0.0, f64::max);
    let step = nice_step(if ymax > 0.0 { ymax } else { 1.0 }, 5.0);
    let ytop = (ymax / step).ceil().max(1.0) * step;
    let (pw, ph) = (WIDTH - MARGIN_LEFT - MARGIN_RIGHT, HEIGHT - MARGIN_TOP - MARGIN_BOTTOM);
    let px = |x: f64| MARGIN_LEFT + if x1 > x0 { (tx(x) - x0) / (x1 - x0) * pw } else { pw / 2.0 };
    let py = |y: f64| MARGIN_TOP + ph - y / ytop * ph;
    let mut s = String::new();
    header(&mut s, title);
    let _ = writeln!(s, r##"<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##);
    let mut y = 0.0;
    while y <= ytop + step / 2.0 {
        let (x2, yy, tx, label) = (MARGIN_LEFT + pw, py(y), MARGIN_LEFT - 6.0, fmt_num(y));
        let _ = writeln!(
            s,
            r##"<line x1="{MARGIN_LEFT}" x2="{x2}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{tx}" y="{:.1}" text-anchor="end">{label}</text>"##,
            yy + 4.0
        );
        y += step;
    }
    for (x, label) in &xs {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1}" y2="{2}" stroke="#444"/><text transform="translate({0:.1},{3}) rotate(-35)" text-anchor="end">{4}</text>"##,
            px(*x),
            MARGIN_TOP + ph,
            MARGIN_TOP + ph + 5.0,
            MARGIN_TOP + ph + 16.0,
            esc(label)
        );
    }
    let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">{}{}</text>"#, MARGIN_LEFT + pw / 2.0, HEIGHT - 10.0, esc(x_title), if log { " (log scale)" } else { "" });
    let _ = writeln!(s, r#"<text transform="translate(16,{}) rotate(-90)" text-anchor="middle">{}</text>"#, MARGIN_TOP + ph / 2.0, esc(y_title));
    let mut names: Vec<&String> = series.keys().map(|(n, _)| n).collect();
    names.dedup();
    for (i, name) in names.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut sorted: Vec<(f64, f64)> =
            series.iter().filter(|((n, _), _)| n == *name).map(|((_, xb), v)| (f64::from_bits(*xb), *v)).collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = sorted.iter().map(|(x, v)| format!("{:.1},{:.1}", px(*x), py(*v))).collect();
        let _ = writeln!(s, r#"<polyline class="series" points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#, path.join(" "));
        for (x, v) in &sorted {
            let _ = writeln!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#, px(*x), py(*v));
        }
        let ly = MARGIN_TOP + 14.0 + 18.0 * i as f64;
        let lx = MARGIN_LEFT + pw + 12.0;
        let _ = writeln!(s, r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#, lx + 18.0, lx + 24.0, ly + 4.0, esc(name));
    }
    s.push_str("</svg>\n");
    s
}

fn heatmap(obs: &[Obs], x_title: &str, y_title: &str, title: &str) -> String {
    let xs = x_ticks(obs);
    let mut ys: Vec<(f64, String)> = obs.iter().filter_map(|o| o.y.clone()).map(|(l, n)| (n, l)).collect();
    ys.sort_by(|a, b| a.0.total_cmp(&b.0));
    ys.dedup_by(|a, b| a.0 == b.0);
    let cells = means(obs.iter().filter_map(|o| o.y.as_ref().map(|y| ((o.x.1.to_bits(), y.1.to_bits()), o.value))));
    let (lo, hi) = cells.values().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
    let (pw, ph) = (WIDTH - MARGIN_LEFT - MARGIN_RIGHT, HEIGHT - MARGIN_TOP - MARGIN_BOTTOM);
    let (cw, ch) = (pw / xs.len().max(1) as f64, ph / ys.len().max(1) as f64);
    let mut s = String::new();
    header(&mut s, title);
    for (i, (x, xl)) in xs.iter().enumerate() {
        for (j, (y, _)) in ys.iter().enumerate() {
            let Some(v) = cells.get(&(x.to_bits(), y.to_bits())) else { continue };
            let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
            // Light yellow (low) to dark red (high).
            let (r, g, b) = (255.0 - 90.0 * t, 240.0 - 200.0 * t, 170.0 - 140.0 * t);
            let (cx, cy) = (MARGIN_LEFT + i as f64 * cw, MARGIN_TOP + ph - (j + 1) as f64 * ch);
            let _ = writeln!(
                s,
                r#"<rect class="cell" x="{cx:.1}" y="{cy:.1}" width="{cw:.1}" height="{ch:.1}" fill="rgb({r:.0},{g:.0},{b:.0})" stroke="white"><title>{} / {}: {}</title></rect>"#,
                esc(xl),
                esc(&ys[j].1),
                fmt_num(*v)
            );
            let fill = if t > 0.6 { "white" } else { "black" };
            let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{fill}">{}</text>"#, cx + cw / 2.0, cy + ch / 2.0 + 4.0, fmt_num(*v));
        }
        let _ = writeln!(
            s,
            r#"<text transform="translate({:.1},{}) rotate(-35)" text-anchor="end">{}</text>"#,
            MARGIN_LEFT + (i as f64 + 0.5) * cw,
            MARGIN_TOP + ph + 16.0,
            esc(xl)
        );
    }
    for (j, (_, yl)) in ys.iter().enumerate() {
        let _ = writeln!(s, r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#, MARGIN_LEFT - 6.0, MARGIN_TOP + ph - (j as f64 + 0.5) * ch + 4.0, esc(yl));
    }
    let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#, MARGIN_LEFT + pw / 2.0, HEIGHT - 10.0, esc(x_title));
    let _ = writeln!(s, r#"<text transform="translate(14,{}) rotate(-90)" text-anchor="middle">{}</text>"#, MARGIN_TOP + ph / 2.0, esc(y_title));
    s.push_str("</svg>\n");
    s
}
