//! Plots of a run, drawn with plotters as PNG and SVG (1280×720 each).
//!
//! Per run (per variant in a strategy comparison):
//! - `timeline` ([`timeline`]): one bar per migration, coloured by phase,
//!   with a separate downtime panel on its own scale;
//! - `link_throughput` ([`links`]): one panel per loaded link direction with
//!   its capacity, outages and capacity changes;
//! - `downtime_distribution` ([`distribution`]): the CDF of downtime, only for
//!   runs with at least [`MANY_MIGRATIONS`] completed migrations;
//! - `fabric_power` ([`power`]): the fabric's power over time, in total and
//!   per site, only for scenarios with `[power]`.
//!
//! For a strategy comparison, also `strategy_comparison` ([`comparison`]: bars
//! per strategy) and `strategy_cdf` ([`distribution`]: CDFs of total time and
//! downtime per strategy).
//!
//! Every figure keeps its legend in a column of its own right of the data
//! ([`legend`]), and a run without migrations draws a "no migrations" notice
//! instead of empty axes. Text is drawn with embedded fonts (no system fonts
//! needed): DejaVu Sans, or a subset of WenQuanYi Micro Hei for figures whose
//! names contain CJK characters ([`Fonts`]).

mod comparison;
mod distribution;
mod legend;
mod links;
mod power;
mod timeline;

use super::OutputError;
use crate::run::RunOutput;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;
use std::sync::Once;

/// File stems of the plots every run draws.
pub const PLOT_NAMES: [&str; 2] = ["timeline", "link_throughput"];

/// A run with at least this many completed migrations also gets a
/// `downtime_distribution` plot (below it, the timeline's downtime panel
/// shows every value).
pub const MANY_MIGRATIONS: usize = 10;

/// A strategy name made safe for a file name (`zero+xbzrle+zstd:3` → `zero_xbzrle_zstd-3`).
fn file_safe(name: &str) -> String {
    name.chars().map(|c| if c == '+' { '_' } else if c == ':' { '-' } else { c }).collect()
}

/// The plots of one run (variant), in drawing order.
fn run_plots(out: &RunOutput) -> Vec<&'static str> {
    let mut v = PLOT_NAMES.to_vec();
    if distribution::completed(out) >= MANY_MIGRATIONS {
        v.push("downtime_distribution");
    }
    if !out.energy.is_empty() {
        v.push("fabric_power");
    }
    v
}

/// File stems of the plots of a run's variants: the plots of a plain run, or
/// the strategy comparisons plus the plots of each variant.
pub fn plot_files(outs: &[RunOutput]) -> Vec<String> {
    if outs.len() == 1 {
        return run_plots(&outs[0]).iter().map(|s| s.to_string()).collect();
    }
    let mut v = vec!["strategy_comparison".to_string(), "strategy_cdf".to_string()];
    for o in outs {
        for p in run_plots(o) {
            v.push(format!("{p}-{}", file_safe(&o.variant)));
        }
    }
    v
}

static FONT: &[u8] = include_bytes!("../../../assets/DejaVuSans.ttf");
/// Built by `sim/assets/make-cjk-subset.sh`.
static CJK_FONT: &[u8] = include_bytes!("../../../assets/WenQuanYiMicroHei-subset.ttf");
static REGISTER: Once = Once::new();
/// Registered under the names an SVG viewer can look up too (the SVG files
/// carry the family name, not the font).
const CJK_FAMILY: &str = "WenQuanYi Micro Hei, Noto Sans CJK SC, Droid Sans Fallback, sans-serif";

/// Registers the embedded fonts as "sans-serif" and [`CJK_FAMILY`] (once per process).
pub(crate) fn register_font() {
    REGISTER.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("embedded DejaVuSans.ttf is a valid font"));
        plotters::style::register_font(CJK_FAMILY, FontStyle::Normal, CJK_FONT)
            .unwrap_or_else(|_| panic!("embedded WenQuanYiMicroHei-subset.ttf is a valid font"));
    });
}

/// The font family of one figure: DejaVu Sans, or the CJK subset when any
/// text of the figure needs it (one family per figure keeps its look even).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fonts {
    family: &'static str,
}

impl Fonts {
    /// The family that draws every one of `texts`.
    pub(crate) fn for_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Fonts {
        // CJK radicals to half-width forms; DejaVu covers Latin, Greek,
        // Cyrillic and the arrows used in labels.
        let cjk = texts.into_iter().any(|t| t.chars().any(|c| ('\u{2E80}'..='\u{FFEF}').contains(&c)));
        Fonts { family: if cjk { CJK_FAMILY } else { "sans-serif" } }
    }

    /// The family for every name in a run (scenario, variant, VMs, sites, links).
    fn for_runs(outs: &[RunOutput]) -> Fonts {
        Fonts::for_texts(outs.iter().flat_map(|o| {
            [o.scenario.as_str(), o.variant.as_str()]
                .into_iter()
                .chain(o.migrations.iter().flat_map(|m| [m.vm.as_str(), m.src_site.as_str(), m.dst_site.as_str()]))
                .chain(o.links.iter().flat_map(|l| [l.link.as_str(), l.from_site.as_str(), l.to_site.as_str()]))
        }))
    }

    /// A font of this family.
    fn at(self, size: u32) -> FontDesc<'static> {
        (self.family, size).into_font()
    }

    /// Black text of this family.
    fn text(self, size: u32) -> TextStyle<'static> {
        self.at(size).color(&BLACK)
    }
}

const SIZE: (u32, u32) = (1280, 720);
/// Width of the legend column right of the data.
const LEGEND_WIDTH_PX: u32 = 300;
const TITLE_PX: u32 = 24;
const AXIS_DESC_PX: u32 = 17;
const TICK_PX: u32 = 14;

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
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let fonts = Fonts::for_runs(std::slice::from_ref(self.out));
        let drawn = match self.name {
            "timeline" => timeline::draw(self.out, fonts, root),
            "link_throughput" => links::draw(self.out, fonts, root),
            "downtime_distribution" => distribution::downtime(self.out, fonts, root),
            "fabric_power" => power::draw(self.out, fonts, root),
            other => return Err(format!("unknown plot {other}")),
        };
        drawn.map_err(|e| e.to_string())
    }
}

/// The comparisons of several variants.
struct Comparison<'a> {
    name: &'static str,
    outs: &'a [RunOutput],
}

impl Figure for Comparison<'_> {
    fn render<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let fonts = Fonts::for_runs(self.outs);
        let drawn = match self.name {
            "strategy_comparison" => comparison::draw(self.outs, fonts, root),
            "strategy_cdf" => distribution::strategies(self.outs, fonts, root),
            other => return Err(format!("unknown plot {other}")),
        };
        drawn.map_err(|e| e.to_string())
    }
}

/// Draws every plot of a run's variants into `dir`.
pub fn draw_all(outs: &[RunOutput], dir: &Path) -> Result<(), OutputError> {
    register_font();
    if outs.len() > 1 {
        for name in ["strategy_comparison", "strategy_cdf"] {
            draw_file(dir, name, &Comparison { name, outs })?;
        }
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

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// ", strategy X" for a variant of a strategy comparison, else nothing.
fn variant_suffix(out: &RunOutput) -> String {
    if out.variant == crate::run::BASE_VARIANT {
        String::new()
    } else {
        format!(", {}", out.variant)
    }
}

/// The figure's title above everything; returns the area below it.
fn titled<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    fonts: Fonts,
) -> Result<DrawingArea<DB, Shift>, DrawingAreaErrorKind<DB::ErrorType>> {
    root.margin(10, 0, 0, 0).titled(title, fonts.at(TITLE_PX))
}

/// Writes `message` in the middle of `area` in place of empty axes.
fn notice<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, message: &str, fonts: Fonts) -> DrawResult<DB> {
    let (w, h) = area.dim_in_pixel();
    let style = fonts.at(28).color(&RGBColor(90, 90, 90)).pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Rectangle::new([(40, 40), (w as i32 - 40, h as i32 - 40)], RGBColor(200, 200, 200).stroke_width(1)))?;
    area.draw_text(message, &style, (w as i32 / 2, h as i32 / 2))
}

/// The i-th of a set of well-separated colours (series of one figure).
fn series_colour(i: usize) -> RGBColor {
    const COLOURS: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
        RGBColor(188, 189, 34),
    ];
    COLOURS[i % COLOURS.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cjk_names_pick_the_cjk_font() {
        assert_eq!(Fonts::for_texts(["web-0", "paris→frankfurt", "Zürich"]).family, "sans-serif");
        assert_eq!(Fonts::for_texts(["web-0", "東京-db"]).family, CJK_FAMILY);
        assert_eq!(Fonts::for_texts(["キャッシュ"]).family, CJK_FAMILY);
    }

    #[test]
    fn strategy_names_become_file_names() {
        assert_eq!(file_safe("zero+xbzrle+zstd:3"), "zero_xbzrle_zstd-3");
    }
}
