//! Figures for people: posterior panels, grids of sample fields and loss
//! curves, drawn with `plotters` into an RGB buffer and written as PNG.
//!
//! This module owns colour scales, colour maps, layout and text; it computes
//! no statistics (callers pass fields already reduced) and the numbers stay
//! in the CSV and `.npy` files written beside each figure. Text is set in
//! DejaVu Sans embedded from `trainer/assets/`, so no system font is needed
//! at run time.

mod panel;

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result, ensure};
use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

pub use panel::{Content, Panel, PanelFigure, Rendered, posterior_panels};

/// DejaVu Sans cut to Basic Latin and a few symbols (licence beside it).
const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");
/// The family every text style asks for; [`ensure_font`] registers it.
const SANS: &str = "sans-serif";
const TITLE_PX: f64 = 16.0;
const LABEL_PX: f64 = 14.0;
const TICK_PX: f64 = 12.0;
/// Drawn where a field is NaN or infinite.
const NON_FINITE: RGBColor = RGBColor(255, 0, 255);
/// Behind sensor markers when there is no field under them.
const BLANK: RGBColor = RGBColor(225, 225, 225);
/// Series colours (matplotlib's tab10 first four).
const SERIES: [RGBColor; 4] =
    [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(214, 39, 40)];
/// A range is signed (diverging map) when its smaller side reaches this
/// fraction of its larger side; a positive field whose posterior mean dips a
/// little below 0 stays sequential.
const SIGNED_MINOR_FRACTION: f64 = 0.1;
/// Colour steps drawn in a colour bar.
const COLORBAR_STEPS: usize = 128;
/// A tick this close to 0, relative to the axis span, is labelled "0"
/// (plotters' tick positions carry float noise such as `-5.6e-17`).
const ZERO_SNAP: f64 = 1e-9;
/// A log axis needs at least this many labelled ticks.
const MIN_LOG_TICKS: usize = 3;
/// A log axis shows at most about this many ticks.
const MAX_LOG_TICKS: usize = 10;

/// viridis at ten equal steps (matplotlib), interpolated linearly between.
const VIRIDIS: [[u8; 3]; 10] = [
    [0x44, 0x01, 0x54],
    [0x48, 0x28, 0x78],
    [0x3e, 0x49, 0x89],
    [0x31, 0x68, 0x8e],
    [0x26, 0x82, 0x8e],
    [0x1f, 0x9e, 0x89],
    [0x35, 0xb7, 0x79],
    [0x6e, 0xce, 0x58],
    [0xb5, 0xde, 0x2b],
    [0xfd, 0xe7, 0x25],
];
/// ColorBrewer RdBu (11 classes) reversed: blue below the centre, red above.
const RDBU_R: [[u8; 3]; 11] = [
    [0x05, 0x30, 0x61],
    [0x21, 0x66, 0xac],
    [0x43, 0x93, 0xc3],
    [0x92, 0xc5, 0xde],
    [0xd1, 0xe5, 0xf0],
    [0xf7, 0xf7, 0xf7],
    [0xfd, 0xdb, 0xc7],
    [0xf4, 0xa5, 0x82],
    [0xd6, 0x60, 0x4d],
    [0xb2, 0x18, 0x2b],
    [0x67, 0x00, 0x1f],
];

/// Which colour map a scale uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorMap {
    /// viridis, perceptually uniform: unsigned fields, std, |error|.
    Sequential,
    /// Reversed RdBu centred at 0: signed fields.
    Diverging,
}

impl ColorMap {
    /// The colour at `t` in `[0, 1]` (clamped).
    pub fn rgb(self, t: f64) -> RGBColor {
        let table: &[[u8; 3]] = match self {
            ColorMap::Sequential => &VIRIDIS,
            ColorMap::Diverging => &RDBU_R,
        };
        let x = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) * (table.len() - 1) as f64 };
        let k = (x.floor() as usize).min(table.len() - 2);
        let u = x - k as f64;
        let [r, g, b] =
            [0, 1, 2].map(|c| (table[k][c] as f64 + u * (table[k + 1][c] as f64 - table[k][c] as f64)).round() as u8);
        RGBColor(r, g, b)
    }
}

/// A value range and the map that colours it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    /// The value drawn with the map's first colour.
    pub lo: f64,
    /// The value drawn with the map's last colour.
    pub hi: f64,
    /// The colour map.
    pub map: ColorMap,
}

impl Scale {
    /// A scale over the finite `values`: diverging and symmetric about 0
    /// when they are signed (both sides of 0 substantial), else sequential
    /// from their minimum to their maximum.
    pub fn for_values(values: impl IntoIterator<Item = f64>) -> Self {
        let (lo, hi) = finite_range(values);
        let (minor, major) = ((-lo).min(hi), (-lo).max(hi));
        if lo < 0.0 && hi > 0.0 && minor >= SIGNED_MINOR_FRACTION * major {
            Scale { lo: -major, hi: major, map: ColorMap::Diverging }
        } else {
            Scale::widened(lo, hi, ColorMap::Sequential)
        }
    }

    /// A sequential scale from 0 to the largest finite value: for
    /// magnitudes (std, |error|).
    pub fn from_zero(values: impl IntoIterator<Item = f64>) -> Self {
        let (_, hi) = finite_range(values);
        Scale::widened(0.0, hi.max(0.0), ColorMap::Sequential)
    }

    /// `[lo, hi]`, opened up when empty so that every value has a colour.
    fn widened(lo: f64, hi: f64, map: ColorMap) -> Self {
        if hi > lo {
            Scale { lo, hi, map }
        } else if lo == 0.0 {
            Scale { lo: 0.0, hi: 1.0, map }
        } else {
            let pad = 0.5 * lo.abs();
            Scale { lo: lo - pad, hi: hi + pad, map }
        }
    }

    /// The colour of `v`; non-finite values are drawn magenta.
    pub fn colour(&self, v: f64) -> RGBColor {
        if v.is_finite() { self.map.rgb((v - self.lo) / (self.hi - self.lo)) } else { NON_FINITE }
    }
}

/// Minimum and maximum of the finite values, `(0, 0)` if there are none.
fn finite_range(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if lo <= hi { (lo, hi) } else { (0.0, 0.0) }
}

/// A tick label with about three significant digits, scientific outside
/// `[1e-3, 1e5)`: `12`, `7.5`, `0.031`, `2.5e-4`.
pub fn tick_label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || !a.is_finite() {
        return if a == 0.0 { "0".into() } else { format!("{v}") };
    }
    if (1e-3..1e5).contains(&a) {
        let decimals = (2 - a.log10().floor() as i32).clamp(0, 5) as usize;
        let s = format!("{v:.decimals$}");
        let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { &s };
        return s.to_string();
    }
    let s = format!("{v:.1e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    format!("{}e{exp}", mantissa.trim_end_matches('0').trim_end_matches('.'))
}

/// [`tick_label`] for an axis spanning `span`, with float noise about 0
/// printed as "0".
fn axis_label(span: f64) -> impl Fn(&f64) -> String {
    move |v| tick_label(if v.abs() <= ZERO_SNAP * span { 0.0 } else { *v })
}

/// Tick positions for a log axis over `[lo, hi]` (`0 < lo < hi`): whole
/// decades when the range spans enough of them, else 1-2-5 or 1..9 steps
/// per decade, else (a range inside one decade) evenly spaced round values.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (e0, e1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let in_range = |v: &f64| *v >= lo * (1.0 - 1e-12) && *v <= hi * (1.0 + 1e-12);
    for mantissas in [&[1.0][..], &[1.0, 2.0, 5.0], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]] {
        let ticks: Vec<f64> =
            (e0..=e1).flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e))).filter(in_range).collect();
        if ticks.len() >= MIN_LOG_TICKS {
            let every = ticks.len().div_ceil(MAX_LOG_TICKS);
            return ticks.into_iter().step_by(every).collect();
        }
    }
    // Round steps of 1, 2 or 5 times a power of ten, about five of them.
    let raw = (hi - lo) / 5.0;
    let p = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * p).find(|&s| s >= raw).unwrap_or(10.0 * p);
    let first = (lo / step).ceil() as i64;
    (first..).map(|k| k as f64 * step).take_while(|v| *v <= hi * (1.0 + 1e-12)).collect()
}

/// Registers [`FONT`] with plotters once per process.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(SANS, FontStyle::Normal, FONT).is_ok());
    ensure!(ok, "the embedded plot font cannot be read");
    Ok(())
}

fn font(px: f64) -> TextStyle<'static> {
    TextStyle::from((SANS, px).into_font())
}

/// Renders `draw` on a white `width x height` RGB canvas.
fn render(
    width: u32,
    height: u32,
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
) -> Result<Vec<u8>> {
    ensure_font()?;
    let mut rgb = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(|e| anyhow::anyhow!("cannot draw the figure: {e}"))?;
    }
    Ok(rgb)
}

/// Writes an 8-bit RGB buffer as PNG.
fn save_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().with_context(|| format!("cannot write {}", path.display()))?;
    w.write_image_data(rgb).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Turns a plotters error into anyhow (its errors borrow the backend).
fn drawn<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T> {
    r.map_err(|e| anyhow::anyhow!("cannot draw the figure: {e}"))
}

/// Draws a vertical colour bar for `scale` filling `area`, with tick labels
/// on its right; `top` and `bottom` pixels are left free so that the bar
/// lines up with a plot beside it.
fn colorbar<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, scale: &Scale, top: u32, bottom: u32) -> Result<()> {
    let mut chart = drawn(
        ChartBuilder::on(area)
            .margin_top(top)
            .margin_bottom(bottom)
            .margin_right(4)
            .set_label_area_size(LabelAreaPosition::Right, 56)
            .build_cartesian_2d(0.0..1.0, scale.lo..scale.hi),
    )?;
    let dv = (scale.hi - scale.lo) / COLORBAR_STEPS as f64;
    drawn(chart.draw_series((0..COLORBAR_STEPS).map(|k| {
        let v0 = scale.lo + k as f64 * dv;
        Rectangle::new([(0.0, v0), (1.0, v0 + dv)], scale.colour(v0 + 0.5 * dv).filled())
    })))?;
    drawn(
        chart
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .set_all_tick_mark_size(4)
            .y_labels(6)
            .y_label_style(font(TICK_PX))
            .y_label_formatter(&axis_label(scale.hi - scale.lo))
            .draw(),
    )?;
    Ok(())
}

/// A grid of `n x n` fields drawn as heat maps, `cols` per row, on one
/// shared colour scale (see [`Scale::for_values`]) with one colour bar.
/// Row `r` is titled `row_titles[r]` (if given); row `i` of a field is drawn
/// with `y` growing upwards, as `imshow(origin='lower')` shows it.
pub fn heatmaps(path: &Path, fields: &[&[f32]], n: usize, cols: usize, row_titles: &[&str]) -> Result<()> {
    ensure!(n > 0 && fields.iter().all(|f| f.len() == n * n), "every field must hold {n} x {n} values");
    let (cell, gap, title_h, bar_w) = (150u32, 8u32, 24u32, 78u32);
    let cols = cols.max(1);
    let rows = fields.len().div_ceil(cols).max(1);
    let scale = Scale::for_values(fields.iter().flat_map(|f| f.iter().map(|&v| v as f64)));
    let (width, height) = (gap + cols as u32 * (cell + gap) + bar_w, gap + rows as u32 * (title_h + cell + gap));
    let rgb = render(width, height, |root| {
        drawn(root.fill(&WHITE))?;
        let (grid, bar) = root.split_horizontally(width - bar_w);
        for r in 0..rows {
            let y0 = (gap + r as u32 * (title_h + cell + gap)) as i32;
            if let Some(t) = row_titles.get(r) {
                drawn(grid.draw_text(t, &font(TITLE_PX), (gap as i32, y0 + 3)))?;
            }
            for c in 0..cols {
                let Some(f) = fields.get(r * cols + c) else { break };
                let x0 = (gap + c as u32 * (cell + gap)) as i32;
                let sub = grid.clone().shrink((x0, y0 + title_h as i32), (cell, cell));
                let mut chart = drawn(ChartBuilder::on(&sub).build_cartesian_2d(0..n as i32, 0..n as i32))?;
                drawn(chart.draw_series((0..n * n).map(|k| {
                    let (i, j) = ((k / n) as i32, (k % n) as i32);
                    Rectangle::new([(j, i), (j + 1, i + 1)], scale.colour(f[k] as f64).filled())
                })))?;
            }
        }
        colorbar(&bar, &scale, gap + title_h, gap)
    })?;
    save_png(path, width, height, &rgb)
}

/// Line chart of named `(x, y)` series with axis labels and a legend, y on
/// a log scale if `log_y` (non-positive and non-finite points are skipped).
pub fn line_chart(
    path: &Path,
    series: &[(&str, &[(f64, f64)])],
    x_label: &str,
    y_label: &str,
    log_y: bool,
) -> Result<()> {
    let (width, height) = (720u32, 440u32);
    let keep = |&&(x, y): &&(f64, f64)| x.is_finite() && y.is_finite() && (!log_y || y > 0.0);
    let kept: Vec<(&str, Vec<(f64, f64)>)> =
        series.iter().map(|(name, s)| (*name, s.iter().filter(keep).copied().collect())).collect();
    let (x0, x1) = finite_range(kept.iter().flat_map(|s| s.1.iter().map(|p| p.0)));
    let (y0, y1) = finite_range(kept.iter().flat_map(|s| s.1.iter().map(|p| p.1)));
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let rgb = render(width, height, |root| {
        drawn(root.fill(&WHITE))?;
        if kept.iter().all(|s| s.1.is_empty()) {
            let style = font(LABEL_PX).pos(Pos::new(HPos::Center, VPos::Center));
            drawn(root.draw_text("no data to plot yet", &style, (width as i32 / 2, height as i32 / 2)))?;
            return Ok(());
        }
        let mut builder = ChartBuilder::on(root);
        builder.margin(12).x_label_area_size(44).y_label_area_size(70);
        let axes = (x_label, y_label);
        if log_y {
            // A little air above and below the curves, in log terms.
            let (y0, y1) = if y1 > y0 { (y0, y1) } else { (y0 / 2.0, y1 * 2.0) };
            let pad = (y1 / y0).powf(0.03);
            let (y0, y1) = (y0 / pad, y1 * pad);
            let y = (y0..y1).log_scale().with_key_points(log_ticks(y0, y1));
            draw_lines(drawn(builder.build_cartesian_2d(x0..x1, y))?, &kept, axes, y1 - y0)
        } else {
            let (y0, y1) = if y1 > y0 { (y0, y1) } else { (y0 - 0.5, y1 + 0.5) };
            draw_lines(drawn(builder.build_cartesian_2d(x0..x1, y0..y1))?, &kept, axes, y1 - y0)
        }
    })?;
    save_png(path, width, height, &rgb)
}

/// The axes, series and legend of [`line_chart`], on a linear or log y axis.
fn draw_lines<'a, DB: DrawingBackend + 'a, Y>(
    mut chart: ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
    series: &[(&str, Vec<(f64, f64)>)],
    (x_label, y_label): (&str, &str),
    y_span: f64,
) -> Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let x_span = {
        let r = chart.x_range();
        r.end - r.start
    };
    drawn(
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .axis_desc_style(font(LABEL_PX))
            .label_style(font(TICK_PX))
            .x_label_formatter(&axis_label(x_span))
            .y_label_formatter(&axis_label(y_span))
            .bold_line_style(RGBColor(225, 225, 225))
            .light_line_style(TRANSPARENT)
            .draw(),
    )?;
    for (k, (name, pts)) in series.iter().enumerate() {
        let c = SERIES[k % SERIES.len()];
        let line =
            LineSeries::new(pts.iter().copied(), c.stroke_width(2)).point_size(if pts.len() == 1 { 3 } else { 0 });
        drawn(chart.draw_series(line))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], c.stroke_width(2)));
    }
    drawn(
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(font(LABEL_PX))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .draw(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
