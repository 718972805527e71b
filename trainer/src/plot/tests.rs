use std::path::Path;

use super::*;
use crate::observe::Observations;

/// Colours are compared per channel up to this many levels (the PNG is
/// lossless and cells are flat, so 0 would do; 1 allows for a rounding
/// change in the map interpolation).
const CHANNEL_TOL: i32 = 1;
/// A pixel this dark (sum of channels) is text or an axis, never a colour
/// of the maps' light ends or the white background.
const DARK_SUM: u32 = 3 * 90;
/// At least this many dark pixels in a title strip means the title was set.
const MIN_TEXT_PIXELS: usize = 30;
/// The five-panel figure must stay a modest PNG.
const MAX_PANEL_WIDTH: u32 = 2000;
const MAX_PANEL_HEIGHT: u32 = 400;

/// Decoded RGB8 image.
struct Image {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl Image {
    fn read(path: &Path) -> Image {
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = dec.read_info().unwrap();
        let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut rgb).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb, "{} is not RGB", path.display());
        Image { width: info.width, height: info.height, rgb }
    }

    fn at(&self, (x, y): (u32, u32)) -> [u8; 3] {
        let k = 3 * (y as usize * self.width as usize + x as usize);
        [self.rgb[k], self.rgb[k + 1], self.rgb[k + 2]]
    }

    fn count(&self, xs: std::ops::Range<u32>, ys: std::ops::Range<u32>, pred: impl Fn([u8; 3]) -> bool) -> usize {
        ys.flat_map(|y| xs.clone().map(move |x| (x, y))).filter(|&p| pred(self.at(p))).count()
    }
}

fn rgb(c: RGBColor) -> [u8; 3] {
    [c.0, c.1, c.2]
}

fn close(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(&b).all(|(&x, &y)| (x as i32 - y as i32).abs() <= CHANNEL_TOL)
}

fn is_dark(c: [u8; 3]) -> bool {
    c.iter().map(|&v| v as u32).sum::<u32>() < DARK_SUM
}

/// A two-phase (3 / 12) field with a horizontal interface at row `n/2`.
fn darcy_like(n: usize) -> Vec<f32> {
    (0..n * n).map(|k| if (k / n) < n / 2 { 3.0 } else { 12.0 }).collect()
}

#[test]
fn scales_pick_the_map_from_the_data() {
    let darcy = Scale::for_values([3.0, 12.0, 7.0]);
    assert_eq!(darcy, Scale { lo: 3.0, hi: 12.0, map: ColorMap::Sequential }, "positive field");
    let signed = Scale::for_values([-0.8, 0.2, 1.3]);
    assert_eq!(signed, Scale { lo: -1.3, hi: 1.3, map: ColorMap::Diverging }, "signed field, symmetric about 0");
    let dip = Scale::for_values([-0.05, 4.0, 11.0]);
    assert_eq!(dip.map, ColorMap::Sequential, "a small dip below 0 is not a signed field: {dip:?}");
    let std = Scale::from_zero([0.2, 0.5, f64::NAN]);
    assert_eq!(std, Scale { lo: 0.0, hi: 0.5, map: ColorMap::Sequential }, "magnitudes start at 0, NaN ignored");
    let flat = Scale::for_values([2.0, 2.0]);
    assert!(flat.lo < 2.0 && flat.hi > 2.0, "a constant field still gets a range: {flat:?}");
    assert_eq!(Scale::from_zero([0.0]).hi, 1.0, "an all-zero std gets [0, 1]");
}

#[test]
fn colour_maps_run_dark_to_light_and_blue_white_red() {
    let lum = |c: RGBColor| 0.299 * c.0 as f64 + 0.587 * c.1 as f64 + 0.114 * c.2 as f64;
    let steps: Vec<f64> = (0..=20).map(|k| lum(ColorMap::Sequential.rgb(k as f64 / 20.0))).collect();
    assert!(steps.windows(2).all(|w| w[1] > w[0]), "viridis lightness must grow: {steps:?}");
    let (lo, mid, hi) = (ColorMap::Diverging.rgb(0.0), ColorMap::Diverging.rgb(0.5), ColorMap::Diverging.rgb(1.0));
    assert!(lo.2 > lo.0 && hi.0 > hi.2, "diverging ends: blue {lo:?}, red {hi:?}");
    assert!(mid.0 > 240 && mid.1 > 240 && mid.2 > 240, "diverging centre is near white: {mid:?}");
}

#[test]
fn tick_labels_are_short() {
    for (v, want) in [
        (0.0, "0"),
        (12.0, "12"),
        (7.5, "7.5"),
        (0.25, "0.25"),
        (0.031_25, "0.0312"),
        (2.5e-4, "2.5e-4"),
        (-1.5, "-1.5"),
        (1.0e6, "1e6"),
    ] {
        assert_eq!(tick_label(v), want, "tick_label({v})");
    }
}

#[test]
fn posterior_panels_share_the_field_scale() {
    let n = 8;
    let truth = darcy_like(n);
    let mean: Vec<f32> = truth.iter().map(|v| v + 0.5).collect();
    let std = vec![0.3f32; n * n];
    let obs = Observations::new(n, vec![9, 20, 45], vec![0.01, 0.02, 0.015], 0.0).unwrap();
    let panels = posterior_panels(n, Some(&truth), &obs, &mean, &std).unwrap();
    let titles: Vec<&str> = panels.iter().map(|p| p.title.as_str()).collect();
    assert_eq!(
        titles,
        ["truth and sensors", "readings of u (3 sensors)", "posterior mean", "posterior std", "|mean - truth|"]
    );
    let [truth_p, readings, mean_p, std_p, err] = &panels[..] else { unreachable!() };
    assert_eq!(truth_p.scale, mean_p.scale, "truth and mean share one scale");
    assert_eq!(mean_p.scale, Scale { lo: 3.0, hi: 12.5, map: ColorMap::Sequential }, "covers truth and mean");
    assert_eq!(readings.scale, Scale { lo: 0.01, hi: 0.02, map: ColorMap::Sequential }, "readings of u on their own");
    assert_eq!((std_p.scale.lo, std_p.scale.map), (0.0, ColorMap::Sequential), "std from 0");
    assert_eq!((err.scale.lo, err.scale.map), (0.0, ColorMap::Sequential), "|error| from 0");

    // A Poisson-like signed source picks the diverging map; without the
    // truth there are only readings, mean and std.
    let source: Vec<f32> = (0..n * n).map(|k| ((k % n) as f32 - 3.5) / 3.5).collect();
    let panels = posterior_panels(n, None, &obs, &source, &std).unwrap();
    assert_eq!(panels.len(), 3);
    assert_eq!(panels[1].scale.map, ColorMap::Diverging, "signed mean: {:?}", panels[1].scale);
    assert_eq!(panels[1].scale.lo, -panels[1].scale.hi, "diverging scale centred at 0");

    assert!(posterior_panels(n, None, &obs, &source[1..], &std).is_err(), "short mean is an error, not a panic");
}

#[test]
fn rendered_panel_shows_truth_and_mean_alike_with_y_upwards() {
    let n = 16;
    let truth = darcy_like(n);
    let std: Vec<f32> = (0..n * n).map(|k| 0.1 * (k % n) as f32).collect();
    let sensor = 5 * n + 3;
    let obs = Observations::new(n, vec![sensor, 12 * n + 10], vec![0.2, 0.4], 0.0).unwrap();
    let figure = PanelFigure::new(n, posterior_panels(n, Some(&truth), &obs, &truth, &std).unwrap()).unwrap();
    let drawn = figure.render().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("panel.png");
    figure.save(&path).unwrap();
    let img = Image::read(&path);
    assert_eq!((img.width, img.height), (drawn.width, drawn.height));
    assert!(img.width <= MAX_PANEL_WIDTH && img.height <= MAX_PANEL_HEIGHT, "{} x {}", img.width, img.height);

    let panels = figure.panels();
    let (truth_k, readings_k, mean_k, std_k) = (0, 1, 2, 3);
    for (i, j) in [(0, 0), (3, 7), (n / 2, 1), (n - 1, n - 1), (11, 4)] {
        let want = rgb(panels[truth_k].scale.colour(truth[i * n + j] as f64));
        let (t, m) = (img.at(drawn.node_pixel(truth_k, n, i, j)), img.at(drawn.node_pixel(mean_k, n, i, j)));
        assert!(close(t, want) && close(m, want), "node [{i}, {j}]: truth {t:?}, mean {m:?}, scale colour {want:?}");
        let want = rgb(panels[std_k].scale.colour(std[i * n + j] as f64));
        let s = img.at(drawn.node_pixel(std_k, n, i, j));
        assert!(close(s, want), "std at node [{i}, {j}]: {s:?}, want {want:?}");
    }

    // y grows upwards: the bottom pixel row of the truth plot is row i = 0
    // (value 3, the scale's first colour), the top one row n-1 (12, last).
    let (xs, ys) = &drawn.plots[truth_k];
    let x = ((xs.start + xs.end) / 2) as u32;
    let (bottom, top) = (img.at((x, ys.end as u32 - 2)), img.at((x, ys.start as u32 + 1)));
    assert!(close(bottom, rgb(ColorMap::Sequential.rgb(0.0))), "bottom of the truth plot: {bottom:?}");
    assert!(close(top, rgb(ColorMap::Sequential.rgb(1.0))), "top of the truth plot: {top:?}");

    // The sensor marker carries its reading's colour; elsewhere is blank.
    let marker = img.at(drawn.node_pixel(readings_k, n, sensor / n, sensor % n));
    let want = rgb(panels[readings_k].scale.colour(0.2));
    assert!(close(marker, want), "marker {marker:?}, reading colour {want:?}");
    let empty = img.at(drawn.node_pixel(readings_k, n, 1, 14));
    assert!(close(empty, rgb(BLANK)), "no sensor at [1, 14]: {empty:?}");

    // Every panel has its title set in the embedded font above its plot.
    for (k, (xs, ys)) in drawn.plots.iter().enumerate() {
        let text = img.count(xs.start as u32..xs.end as u32, 0..ys.start as u32 - 2, is_dark);
        assert!(text >= MIN_TEXT_PIXELS, "panel {k} ('{}'): {text} dark pixels in its title strip", panels[k].title);
    }
}

#[test]
fn line_chart_draws_both_series_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loss.png");
    let train: Vec<(f64, f64)> = (1..50).map(|i| (i as f64, 1.0 / i as f64)).collect();
    let val: Vec<(f64, f64)> = (1..10).map(|i| (5.0 * i as f64, 2.0 / i as f64)).collect();
    line_chart(&path, &[("train", &train), ("validation", &val)], "step", "loss", true).unwrap();
    let img = Image::read(&path);
    for (k, c) in SERIES[..2].iter().enumerate() {
        let hits = img.count(0..img.width, 0..img.height, |p| close(p, rgb(*c)));
        assert!(hits > 100, "series {k} colour {c:?} drawn on only {hits} pixels");
    }
    // Axis labels and ticks: dark pixels left of and below the plot.
    let left = img.count(0..60, 0..img.height, is_dark);
    let below = img.count(0..img.width, img.height - 40..img.height, is_dark);
    assert!(left >= MIN_TEXT_PIXELS && below >= MIN_TEXT_PIXELS, "axis text: {left} left, {below} below");
    line_chart(&path, &[("train", &[]), ("validation", &[(1.0, -1.0)])], "step", "loss", true).unwrap();
}

#[test]
fn heatmaps_share_one_scale() {
    let n = 4;
    let (low, high) = (vec![0.0f32; n * n], vec![1.0f32; n * n]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("samples.png");
    heatmaps(&path, &[&low, &high, &high, &low], n, 2, &["data", "samples"]).unwrap();
    let img = Image::read(&path);
    // Both ends of the map show: on per-field scales both would be one colour.
    for end in [0.0, 1.0] {
        let c = rgb(ColorMap::Sequential.rgb(end));
        let hits = img.count(0..img.width, 0..img.height, |p| close(p, c));
        assert!(hits >= 2 * 100 * 100, "map end {end} ({c:?}) on only {hits} pixels");
    }
    assert!(heatmaps(&path, &[&low[1..]], n, 1, &[]).is_err(), "a short field is an error");
}
