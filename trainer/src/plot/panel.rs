//! The posterior panel: truth, sensor readings, posterior mean, std and
//! |error| side by side, each with a title, physical x/y axes and a colour
//! bar. [`posterior_panels`] decides what is drawn on which scale (truth
//! and mean share one); [`PanelFigure`] only lays it out and draws it.

use std::borrow::Cow;
use std::ops::Range;
use std::path::Path;

use anyhow::{Result, ensure};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{BLANK, LABEL_PX, Scale, TICK_PX, TITLE_PX, axis_label, colorbar, drawn, font, render, save_png};
use crate::observe::Observations;

/// Side of each panel's square plot, in pixels.
const PLOT_PX: u32 = 240;
const TITLE_H: u32 = 28;
const MARGIN: u32 = 6;
const X_AREA: u32 = 40;
const Y_AREA: u32 = 44;
/// Width of the colour bar with its tick labels.
const BAR_AREA: u32 = 72;

/// What a panel shows.
#[derive(Clone, Debug)]
pub enum Content<'a> {
    /// An `n x n` field, flat row-major (`i*n + j`, row `i` is y).
    Field(Cow<'a, [f32]>),
    /// A field with the sensor positions drawn over it as hollow markers
    /// (the node's own colour stays visible at the marker's centre).
    FieldWithSensors {
        /// The field, as [`Content::Field`].
        field: Cow<'a, [f32]>,
        /// Flat node index of each sensor.
        nodes: &'a [usize],
    },
    /// Sensor markers at flat node indices, coloured by their reading, on a
    /// plain background.
    Readings {
        /// Flat node index of each sensor.
        nodes: &'a [usize],
        /// Reading of each sensor.
        values: &'a [f64],
    },
}

/// One titled panel and the scale it is coloured on.
#[derive(Clone, Debug)]
pub struct Panel<'a> {
    /// Shown above the panel.
    pub title: String,
    /// Colour range and map (shown in the panel's colour bar).
    pub scale: Scale,
    /// The data.
    pub content: Content<'a>,
}

/// The panels of one reconstruction: truth (if known), the sensor readings,
/// posterior mean, posterior std and |mean - truth| (if the truth is known).
///
/// Truth and mean share one scale (sequential, or diverging about 0 for a
/// signed field, see [`Scale::for_values`]). The readings measure the
/// solution u, not the field, so they get a scale of their own. Std and
/// |error| each get a sequential scale from 0.
pub fn posterior_panels<'a>(
    n: usize,
    truth: Option<&'a [f32]>,
    obs: &'a Observations,
    mean: &'a [f32],
    std: &'a [f32],
) -> Result<Vec<Panel<'a>>> {
    let nn = n * n;
    ensure!(n >= 2, "a panel needs at least a 2 x 2 grid, not {n} x {n}");
    ensure!(mean.len() == nn && std.len() == nn, "mean and std must hold {n} x {n} values");
    ensure!(truth.is_none_or(|t| t.len() == nn), "the truth must hold {n} x {n} values");
    ensure!(
        obs.n == n && obs.nodes.iter().all(|&k| k < nn),
        "the readings are on a {0} x {0} grid, not {n} x {n}",
        obs.n
    );
    let widen = |f: &'a [f32]| f.iter().map(|&v| v as f64);
    let field = Scale::for_values(widen(mean).chain(truth.into_iter().flat_map(widen)));
    let mut panels = vec![];
    if let Some(t) = truth {
        panels.push(Panel {
            title: "truth and sensors".into(),
            scale: field,
            content: Content::FieldWithSensors { field: Cow::Borrowed(t), nodes: &obs.nodes },
        });
    }
    panels.push(Panel {
        title: format!("readings of u ({} sensors)", obs.nodes.len()),
        scale: Scale::for_values(obs.values.iter().copied()),
        content: Content::Readings { nodes: &obs.nodes, values: &obs.values },
    });
    panels.push(Panel { title: "posterior mean".into(), scale: field, content: Content::Field(Cow::Borrowed(mean)) });
    panels.push(Panel {
        title: "posterior std".into(),
        scale: Scale::from_zero(widen(std)),
        content: Content::Field(Cow::Borrowed(std)),
    });
    if let Some(t) = truth {
        let err: Vec<f32> = mean.iter().zip(t).map(|(m, t)| (m - t).abs()).collect();
        panels.push(Panel {
            title: "|mean - truth|".into(),
            scale: Scale::from_zero(err.iter().map(|&v| v as f64)),
            content: Content::Field(Cow::Owned(err)),
        });
    }
    Ok(panels)
}

/// A row of panels over an `n x n` grid on `[0,1]^2` (node `[i, j]` at
/// `x = j/(n-1)`, `y = i/(n-1)`, y upwards).
#[derive(Clone, Debug)]
pub struct PanelFigure<'a> {
    n: usize,
    panels: Vec<Panel<'a>>,
}

/// A drawn [`PanelFigure`]: the RGB pixels and where each panel's plot is.
pub struct Rendered {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row-major RGB8 pixels.
    pub rgb: Vec<u8>,
    /// Pixel columns and rows of each panel's plot (the square, no axes).
    pub plots: Vec<(Range<i32>, Range<i32>)>,
    /// Data coordinates shown across each plot, the same on both axes.
    pub extent: (f64, f64),
}

impl Rendered {
    /// The pixel `(column, row)` where node `[i, j]` sits in panel `panel`.
    pub fn node_pixel(&self, panel: usize, n: usize, i: usize, j: usize) -> (u32, u32) {
        let (xs, ys) = &self.plots[panel];
        let (lo, hi) = self.extent;
        let h = 1.0 / (n - 1) as f64;
        let at = |v: f64, a: i32, b: i32| (a as f64 + (v - lo) / (hi - lo) * (b - a) as f64).round() as u32;
        (at(j as f64 * h, xs.start, xs.end), at(i as f64 * h, ys.end, ys.start))
    }
}

impl<'a> PanelFigure<'a> {
    /// A figure of `panels` over an `n x n` grid.
    pub fn new(n: usize, panels: Vec<Panel<'a>>) -> Result<Self> {
        ensure!(n >= 2, "a panel needs at least a 2 x 2 grid, not {n} x {n}");
        for p in &panels {
            match &p.content {
                Content::Field(f) => ensure!(f.len() == n * n, "panel '{}' must hold {n} x {n} values", p.title),
                Content::FieldWithSensors { field, nodes } => ensure!(
                    field.len() == n * n && nodes.iter().all(|&k| k < n * n),
                    "panel '{}' must hold {n} x {n} values and sensors on the grid",
                    p.title
                ),
                Content::Readings { nodes, values } => ensure!(
                    nodes.len() == values.len() && nodes.iter().all(|&k| k < n * n),
                    "panel '{}' has readings off the {n} x {n} grid",
                    p.title
                ),
            }
        }
        Ok(PanelFigure { n, panels })
    }

    /// The panels, in drawing order.
    pub fn panels(&self) -> &[Panel<'a>] {
        &self.panels
    }

    /// Draws the figure.
    pub fn render(&self) -> Result<Rendered> {
        let n = self.n;
        let h = 1.0 / (n - 1) as f64;
        // Each node is the centre of its cell, so the cells of the boundary
        // nodes stick out by half a cell.
        let extent = (-0.5 * h, 1.0 + 0.5 * h);
        let panel_w = MARGIN + Y_AREA + PLOT_PX + MARGIN + BAR_AREA;
        let (width, height) = (panel_w * self.panels.len().max(1) as u32, TITLE_H + PLOT_PX + X_AREA + MARGIN);
        let mut plots = vec![];
        let rgb = render(width, height, |root| {
            drawn(root.fill(&WHITE))?;
            for (k, p) in self.panels.iter().enumerate() {
                let area = root.clone().shrink(((k as u32 * panel_w) as i32, 0), (panel_w, height));
                let (left, bar) = area.split_horizontally(panel_w - BAR_AREA);
                let title = font(TITLE_PX).pos(Pos::new(HPos::Center, VPos::Top));
                let centre = (k as u32 * panel_w + MARGIN + Y_AREA + PLOT_PX / 2) as i32;
                drawn(root.draw_text(&p.title, &title, (centre, 6)))?;
                let mut chart = drawn(
                    ChartBuilder::on(&left)
                        .margin_top(TITLE_H)
                        .margin_left(MARGIN)
                        .margin_right(MARGIN)
                        .margin_bottom(MARGIN)
                        .x_label_area_size(X_AREA)
                        .y_label_area_size(Y_AREA)
                        .build_cartesian_2d(extent.0..extent.1, extent.0..extent.1),
                )?;
                drawn(
                    chart
                        .configure_mesh()
                        .disable_mesh()
                        .x_labels(5)
                        .y_labels(5)
                        .x_desc("x")
                        .y_desc("y")
                        .axis_desc_style(font(LABEL_PX))
                        .label_style(font(TICK_PX))
                        .x_label_formatter(&axis_label(1.0))
                        .y_label_formatter(&axis_label(1.0))
                        .draw(),
                )?;
                let cell = |i: usize, j: usize| {
                    let (x, y) = (j as f64 * h, i as f64 * h);
                    [(x - 0.5 * h, y - 0.5 * h), (x + 0.5 * h, y + 0.5 * h)]
                };
                let r = (0.6 * PLOT_PX as f64 / n as f64).clamp(3.0, 6.0) as i32;
                let at = |k: usize| ((k % n) as f64 * h, (k / n) as f64 * h);
                match &p.content {
                    Content::Field(f) => {
                        drawn(
                            chart.draw_series(
                                (0..n * n)
                                    .map(|k| Rectangle::new(cell(k / n, k % n), p.scale.colour(f[k] as f64).filled())),
                            ),
                        )?;
                    }
                    Content::FieldWithSensors { field: f, nodes } => {
                        drawn(
                            chart.draw_series(
                                (0..n * n)
                                    .map(|k| Rectangle::new(cell(k / n, k % n), p.scale.colour(f[k] as f64).filled())),
                            ),
                        )?;
                        drawn(chart.draw_series(nodes.iter().map(|&k| Circle::new(at(k), r, WHITE.stroke_width(2)))))?;
                        drawn(
                            chart.draw_series(nodes.iter().map(|&k| Circle::new(at(k), r + 1, BLACK.stroke_width(1)))),
                        )?;
                    }
                    Content::Readings { nodes, values } => {
                        drawn(chart.draw_series(std::iter::once(Rectangle::new(
                            [(extent.0, extent.0), (extent.1, extent.1)],
                            BLANK.filled(),
                        ))))?;
                        drawn(chart.draw_series(
                            nodes.iter().zip(*values).map(|(&k, &v)| Circle::new(at(k), r, p.scale.colour(v).filled())),
                        ))?;
                        drawn(chart.draw_series(nodes.iter().map(|&k| Circle::new(at(k), r, BLACK.stroke_width(1)))))?;
                    }
                }
                plots.push(chart.plotting_area().get_pixel_range());
                colorbar(&bar, &p.scale, TITLE_H, MARGIN + X_AREA)?;
            }
            Ok(())
        })?;
        Ok(Rendered { width, height, rgb, plots, extent })
    }

    /// Draws the figure and writes it as PNG.
    pub fn save(&self, path: &Path) -> Result<()> {
        let r = self.render()?;
        save_png(path, r.width, r.height, &r.rgb)
    }
}
