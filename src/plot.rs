//! Line charts as PNG pictures (the perturbation curves of `onnx-rap eval`): axes with tick
//! labels, one coloured line per series and a legend, text from the 8x8 bitmap font of
//! `font8x8`. Small on purpose: no font files, no system libraries.

use image::{Rgb, RgbImage};

/// One line of a chart.
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
    pub colour: [u8; 3],
}

/// A chart: `xs` along the horizontal axis, every series against them.
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub xs: &'a [f64],
    pub series: &'a [Series],
}

/// Distinct colours for up to eight series (then they repeat).
pub const PALETTE: [[u8; 3]; 8] = [
    [200, 30, 30],
    [30, 90, 200],
    [30, 150, 60],
    [230, 140, 0],
    [140, 60, 170],
    [0, 160, 170],
    [120, 120, 120],
    [180, 120, 60],
];

const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);

/// Draw `text` with its top-left corner at (x, y), each font pixel `scale` pixels wide.
pub fn text(img: &mut RgbImage, x: i64, y: i64, s: &str, scale: i64, colour: Rgb<u8>) {
    for (k, ch) in s.chars().enumerate() {
        let glyph = font8x8::legacy::BASIC_LEGACY
            .get(ch as usize)
            .copied()
            .unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits >> col & 1 == 1 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let px = x + (k as i64 * 8 + col) * scale + dx;
                            let py = y + row as i64 * scale + dy;
                            put(img, px, py, colour);
                        }
                    }
                }
            }
        }
    }
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

/// A line `width` pixels thick from (x0, y0) to (x1, y1).
fn line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: Rgb<u8>, width: i64) {
    let steps = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as i64;
    for i in 0..=steps {
        let t = i as f64 / steps as f64;
        let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
        for d in 0..width {
            for e in 0..width {
                put(
                    img,
                    x.round() as i64 + d - width / 2,
                    y.round() as i64 + e - width / 2,
                    c,
                );
            }
        }
    }
}

/// A short label for a tick value.
fn tick_label(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e4 || v.abs() < 1e-2) {
        format!("{v:.1e}")
    } else if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Render the chart at `width` x `height` pixels.
pub fn render(chart: &Chart, width: u32, height: u32) -> RgbImage {
    let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let (left, right, top, bottom) = (70.0, 16.0, 52.0, 44.0 + 12.0 * chart.series.len() as f64);
    let (pw, ph) = (width as f64 - left - right, height as f64 - top - bottom);
    let (xmin, xmax) = chart
        .xs
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let (mut ymin, mut ymax) = chart
        .series
        .iter()
        .flat_map(|s| s.values.iter())
        .filter(|v| v.is_finite())
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if ymin > ymax {
        (ymin, ymax) = (0.0, 1.0);
    }
    if ymax - ymin < 1e-12 {
        ymin -= 0.5;
        ymax += 0.5;
    }
    let pad = 0.05 * (ymax - ymin);
    let (ymin, ymax) = (ymin - pad, ymax + pad);
    let xspan = if xmax > xmin { xmax - xmin } else { 1.0 };
    let px = |x: f64| left + (x - xmin) / xspan * pw;
    let py = |y: f64| top + (ymax - y) / (ymax - ymin) * ph;

    for k in 0..=4 {
        let y = ymin + (ymax - ymin) * k as f64 / 4.0;
        line(&mut img, (left, py(y)), (left + pw, py(y)), GRID, 1);
        let label = tick_label(y);
        text(
            &mut img,
            left as i64 - 6 - 8 * label.len() as i64,
            py(y) as i64 - 4,
            &label,
            1,
            BLACK,
        );
        let x = xmin + xspan * k as f64 / 4.0;
        line(&mut img, (px(x), top), (px(x), top + ph), GRID, 1);
        let label = tick_label(x);
        text(
            &mut img,
            px(x) as i64 - 4 * label.len() as i64,
            (top + ph) as i64 + 6,
            &label,
            1,
            BLACK,
        );
    }
    line(&mut img, (left, top), (left, top + ph), BLACK, 1);
    line(&mut img, (left, top + ph), (left + pw, top + ph), BLACK, 1);
    for s in chart.series {
        let pts: Vec<(f64, f64)> = chart
            .xs
            .iter()
            .zip(&s.values)
            .filter(|(_, v)| v.is_finite())
            .map(|(&x, &v)| (px(x), py(v)))
            .collect();
        for w in pts.windows(2) {
            line(&mut img, w[0], w[1], Rgb(s.colour), 2);
        }
    }
    text(&mut img, left as i64, 8, chart.title, 2, BLACK);
    let xl = chart.x_label;
    text(
        &mut img,
        (left + pw / 2.0) as i64 - 4 * xl.len() as i64,
        (top + ph) as i64 + 18,
        xl,
        1,
        BLACK,
    );
    text(&mut img, 4, top as i64 - 16, chart.y_label, 1, BLACK);
    for (k, s) in chart.series.iter().enumerate() {
        let y = top + ph + 34.0 + 12.0 * k as f64;
        line(&mut img, (left, y), (left + 20.0, y), Rgb(s.colour), 3);
        text(&mut img, left as i64 + 28, y as i64 - 4, &s.name, 1, BLACK);
    }
    img
}

/// Pictures side by side.
pub fn beside(parts: &[RgbImage]) -> RgbImage {
    let w = parts.iter().map(|p| p.width()).sum();
    let h = parts.iter().map(|p| p.height()).max().unwrap_or(0);
    let mut out = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let mut x = 0;
    for p in parts {
        image::imageops::replace(&mut out, p, x, 0);
        x += p.width() as i64;
    }
    out
}

/// Pictures in a grid, a caption above each column: `rows[r][c]` at row r, column c (cells
/// the size of the largest picture, 4 pixels apart, on white).
pub fn grid(rows: &[Vec<RgbImage>], captions: &[String]) -> RgbImage {
    const GAP: u32 = 4;
    const HEAD: u32 = 16;
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let cw = rows.iter().flatten().map(|p| p.width()).max().unwrap_or(0);
    let ch = rows.iter().flatten().map(|p| p.height()).max().unwrap_or(0);
    let w = cols * (cw + GAP) + GAP;
    let h = HEAD + rows.len() as u32 * (ch + GAP) + GAP;
    let mut out = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    for (c, cap) in captions.iter().enumerate().take(cols as usize) {
        // At most as many characters as fit the cell.
        let fit: String = cap.chars().take((cw / 8) as usize).collect();
        let x = GAP + c as u32 * (cw + GAP) + (cw - 8 * fit.chars().count() as u32) / 2;
        text(&mut out, x as i64, 4, &fit, 1, BLACK);
    }
    for (r, row) in rows.iter().enumerate() {
        for (c, p) in row.iter().enumerate() {
            let x = GAP + c as u32 * (cw + GAP);
            let y = HEAD + GAP + r as u32 * (ch + GAP);
            image::imageops::replace(&mut out, p, x as i64, y as i64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_legend_land_in_their_colours() {
        let s = [
            Series {
                name: "up".into(),
                values: vec![0.0, 1.0, 2.0],
                colour: PALETTE[0],
            },
            Series {
                name: "flat".into(),
                values: vec![1.0, 1.0, 1.0],
                colour: PALETTE[1],
            },
        ];
        let c = Chart {
            title: "t",
            x_label: "x",
            y_label: "y",
            xs: &[0.0, 1.0, 2.0],
            series: &s,
        };
        let img = render(&c, 300, 220);
        let count = |c: [u8; 3]| img.pixels().filter(|p| p.0 == c).count();
        assert!(count(PALETTE[0]) > 100 && count(PALETTE[1]) > 100);
        // The rising line starts at the bottom left of the plot area and ends at the top right.
        let top_right = (230..284).any(|x| (40..60).any(|y| img.get_pixel(x, y).0 == PALETTE[0]));
        assert!(top_right);
        assert!(
            img.pixels().any(|p| p.0 == [0, 0, 0]),
            "text and axes are black"
        );
    }

    #[test]
    fn grid_places_cells_and_captions() {
        let red = RgbImage::from_pixel(10, 6, Rgb([255, 0, 0]));
        let blue = RgbImage::from_pixel(10, 6, Rgb([0, 0, 255]));
        let g = grid(
            &[vec![red.clone(), blue.clone()], vec![blue, red]],
            &["a".into(), "b".into()],
        );
        // 2 columns of 10 px and 3 gaps; a 16 px caption band, 2 rows of 6 px and 3 gaps.
        assert_eq!(g.dimensions(), (2 * 10 + 3 * 4, 16 + 2 * 6 + 3 * 4));
        assert_eq!(g.get_pixel(4, 20).0, [255, 0, 0]);
        assert_eq!(g.get_pixel(18, 20).0, [0, 0, 255]);
        assert_eq!(g.get_pixel(4, 30).0, [0, 0, 255]);
        assert_eq!(g.get_pixel(0, 0).0, [255, 255, 255]);
        // The caption "a" is drawn in black in the band.
        let black = (0..16).any(|y| (4..14).any(|x| g.get_pixel(x, y).0 == [0, 0, 0]));
        assert!(black);
    }
}
