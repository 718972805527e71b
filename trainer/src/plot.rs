//! Small PNG figures without a plotting stack: loss curves and field
//! heat maps. No text is drawn (no font dependency); the numbers live in the
//! CSV files written beside each figure.

use std::path::Path;

use anyhow::{Context, Result};

/// An RGB raster.
pub struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<[u8; 3]>,
}

const WHITE: [u8; 3] = [255, 255, 255];
const GRID: [u8; 3] = [225, 225, 225];
const AXES: [u8; 3] = [60, 60, 60];
/// Series colours (matplotlib's tab10 first four).
const COLOURS: [[u8; 3]; 4] = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40]];

impl Canvas {
    /// A white canvas.
    pub fn new(width: usize, height: usize) -> Self {
        Self { width, height, pixels: vec![WHITE; width * height] }
    }

    fn put(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            self.pixels[y as usize * self.width + x as usize] = c;
        }
    }

    fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [u8; 3]) {
        let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
        for s in 0..=steps {
            let t = s as f64 / steps as f64;
            let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
            self.put(x.round() as i64, y.round() as i64, c);
            self.put(x.round() as i64, y.round() as i64 + 1, c);
        }
    }

    /// Fills the rectangle `[x, x+w) x [y, y+h)`.
    pub fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, c: [u8; 3]) {
        for yy in y..(y + h).min(self.height) {
            for xx in x..(x + w).min(self.width) {
                self.pixels[yy * self.width + xx] = c;
            }
        }
    }

    /// Writes the canvas as an 8-bit RGB PNG.
    pub fn save(&self, path: &Path) -> Result<()> {
        let file = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), self.width as u32, self.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header()?;
        w.write_image_data(self.pixels.as_flattened())?;
        Ok(())
    }
}

/// A colour from a blue-white-red ramp for `t` in [0, 1].
fn ramp(t: f64) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    let (lo, mid, hi) = ([59.0, 76.0, 192.0], [221.0, 221.0, 221.0], [180.0, 4.0, 38.0]);
    let (a, b, u) = if t < 0.5 { (lo, mid, t * 2.0) } else { (mid, hi, t * 2.0 - 1.0) };
    [0, 1, 2].map(|k| (a[k] + u * (b[k] - a[k])) as u8)
}

/// A grid of `n x n` fields drawn as heat maps, `cols` per row, one shared
/// colour scale (min to max over all fields); row `i` of a field is drawn
/// with `y` growing upwards, as `imshow(origin='lower')` shows it.
pub fn heatmaps(path: &Path, fields: &[&[f32]], n: usize, cols: usize) -> Result<()> {
    draw_fields(path, fields, n, cols, true)
}

/// Like [`heatmaps`], but every field gets its own colour scale (min to max
/// of its finite values); non-finite values are drawn black. For panels
/// that mix fields of different units (truth, sensors, std, error).
pub fn panels(path: &Path, fields: &[&[f32]], n: usize, cols: usize) -> Result<()> {
    draw_fields(path, fields, n, cols, false)
}

fn finite_range<'a>(values: impl Iterator<Item = &'a f32>) -> (f32, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    (lo, if hi > lo { (hi - lo) as f64 } else { 1.0 })
}

fn draw_fields(path: &Path, fields: &[&[f32]], n: usize, cols: usize, shared: bool) -> Result<()> {
    let (scale, gap) = ((192 / n.max(1)).max(1), 6);
    let cell = n * scale;
    let cols = cols.max(1);
    let rows = fields.len().div_ceil(cols).max(1);
    let mut c = Canvas::new(cols * (cell + gap) + gap, rows * (cell + gap) + gap);
    let all = finite_range(fields.iter().flat_map(|f| f.iter()));
    for (k, f) in fields.iter().enumerate() {
        let (lo, span) = if shared { all } else { finite_range(f.iter()) };
        let (x0, y0) = (gap + (k % cols) * (cell + gap), gap + (k / cols) * (cell + gap));
        for i in 0..n {
            for j in 0..n {
                let v = f.get(i * n + j).copied().unwrap_or(f32::NAN);
                let col = if v.is_finite() { ramp((v - lo) as f64 / span) } else { [0, 0, 0] };
                c.fill(x0 + j * scale, y0 + (n - 1 - i) * scale, scale, scale, col);
            }
        }
    }
    c.save(path)
}

/// Line chart of several `(x, y)` series, y on a log scale if `log_y`
/// (non-positive values are skipped), with light grid lines at decades.
pub fn line_chart(path: &Path, series: &[&[(f64, f64)]], log_y: bool) -> Result<()> {
    let (w, h, m) = (640usize, 400usize, 30.0f64);
    let mut c = Canvas::new(w, h);
    let ty = |y: f64| if log_y { y.log10() } else { y };
    let pts: Vec<(f64, f64)> =
        series.iter().flat_map(|s| s.iter()).filter(|p| !log_y || p.1 > 0.0).map(|&(x, y)| (x, ty(y))).collect();
    if pts.is_empty() {
        return c.save(path);
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in &pts {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        (y0, y1) = (y0 - 0.5, y1 + 0.5);
    }
    let px = |x: f64| m + (x - x0) / (x1 - x0) * (w as f64 - 2.0 * m);
    let py = |y: f64| h as f64 - m - (y - y0) / (y1 - y0) * (h as f64 - 2.0 * m);
    if log_y {
        for d in y0.floor() as i64..=y1.ceil() as i64 {
            let y = d as f64;
            if y >= y0 && y <= y1 {
                c.line((m, py(y)), (w as f64 - m, py(y)), GRID);
            }
        }
    }
    c.line((m, m), (m, h as f64 - m), AXES);
    c.line((m, h as f64 - m), (w as f64 - m, h as f64 - m), AXES);
    for (k, s) in series.iter().enumerate() {
        let s: Vec<(f64, f64)> = s.iter().filter(|p| !log_y || p.1 > 0.0).map(|&(x, y)| (px(x), py(ty(y)))).collect();
        for pair in s.windows(2) {
            c.line(pair[0], pair[1], COLOURS[k % COLOURS.len()]);
        }
        if s.len() == 1 {
            c.fill(s[0].0 as usize, s[0].1 as usize, 3, 3, COLOURS[k % COLOURS.len()]);
        }
    }
    c.save(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_readable_png_of_the_right_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.png");
        let a: Vec<(f64, f64)> = (1..50).map(|i| (i as f64, 1.0 / i as f64)).collect();
        line_chart(&path, &[&a, &a[..10]], true).unwrap();
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let reader = dec.read_info().unwrap();
        assert_eq!((reader.info().width, reader.info().height), (640, 400));
    }
}
