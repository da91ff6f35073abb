//! The legend column drawn right of a figure's data, so that it never covers
//! a bar or a line: one entry per colour, line style and marker used.

use super::{DrawResult, Fonts};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// What an entry's sample looks like.
#[derive(Debug, Clone, Copy)]
pub(super) enum Swatch {
    /// A filled box.
    Fill(RGBColor),
    /// Two boxes side by side (alternating shades).
    Pair(RGBColor, RGBColor),
    /// A translucent band with an outline (an interval of time).
    Band(RGBColor),
    /// A solid line.
    Line(RGBColor),
    /// A dotted vertical line (an instant).
    Dotted(RGBColor),
    /// A triangle marker.
    Triangle(RGBColor),
    /// A cross marker.
    Cross(RGBColor),
}

/// The entries of one legend, top to bottom.
#[derive(Debug, Default)]
pub(super) struct Legend {
    entries: Vec<(Swatch, String)>,
}

const SWATCH_W: i32 = 30;
const LINE_PX: i32 = 18;
const TEXT_PX: u32 = 15;

impl Legend {
    /// Adds an entry; `label` may hold `\n` for further lines.
    pub(super) fn add(&mut self, swatch: Swatch, label: impl Into<String>) -> &mut Self {
        self.entries.push((swatch, label.into()));
        self
    }

    /// Draws the legend into `area` (the column right of the data), from its top.
    pub(super) fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, fonts: Fonts) -> DrawResult<DB> {
        let style = fonts.text(TEXT_PX).pos(Pos::new(HPos::Left, VPos::Center));
        let (w, _) = area.dim_in_pixel();
        let mut y = 40;
        let x = 10;
        let lines: i32 = self.entries.iter().map(|(_, l)| l.lines().count().max(1) as i32).sum();
        let height = lines * LINE_PX + self.entries.len() as i32 * 8 + 16;
        area.draw(&Rectangle::new([(2, y - 10), (w as i32 - 8, y - 10 + height)], RGBColor(160, 160, 160).stroke_width(1)))?;
        for (swatch, label) in &self.entries {
            let cy = y + LINE_PX / 2;
            draw_swatch(area, *swatch, x, cy)?;
            for (k, line) in label.lines().enumerate() {
                area.draw_text(line, &style, (x + SWATCH_W + 10, cy + k as i32 * LINE_PX))?;
            }
            y += label.lines().count().max(1) as i32 * LINE_PX + 8;
        }
        Ok(())
    }
}

fn draw_swatch<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, swatch: Swatch, x: i32, cy: i32) -> DrawResult<DB> {
    let (x1, y0, y1) = (x + SWATCH_W, cy - 7, cy + 7);
    match swatch {
        Swatch::Fill(c) => area.draw(&Rectangle::new([(x, y0), (x1, y1)], c.filled())),
        Swatch::Pair(a, b) => {
            area.draw(&Rectangle::new([(x, y0), (x + SWATCH_W / 2, y1)], a.filled()))?;
            area.draw(&Rectangle::new([(x + SWATCH_W / 2, y0), (x1, y1)], b.filled()))
        }
        Swatch::Band(c) => {
            area.draw(&Rectangle::new([(x, y0), (x1, y1)], c.mix(0.25).filled()))?;
            area.draw(&Rectangle::new([(x, y0), (x1, y1)], c.stroke_width(1)))
        }
        Swatch::Line(c) => area.draw(&PathElement::new(vec![(x, cy), (x1, cy)], c.stroke_width(3))),
        Swatch::Dotted(c) => {
            for k in (y0 - 2..y1 + 2).step_by(4) {
                area.draw(&PathElement::new(vec![(x + SWATCH_W / 2, k), (x + SWATCH_W / 2, k + 2)], c.stroke_width(2)))?;
            }
            Ok(())
        }
        Swatch::Triangle(c) => area.draw(&TriangleMarker::new((x + SWATCH_W / 2, cy), 7, c.filled())),
        Swatch::Cross(c) => area.draw(&Cross::new((x + SWATCH_W / 2, cy), 6, c.stroke_width(2))),
    }
}
