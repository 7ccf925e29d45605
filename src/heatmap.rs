//! Rendering relevance as pictures, as the RAP paper and its code do: the channel sum M divided
//! by max|M|, mapped to a diverging blue-white-red colour map (white = 0, red = relevant,
//! blue = irrelevant), enlarged by pixel replication.
//!
//! The map is a table of [`LEVELS`] colours: `v` in [-1, 1] takes level `floor(127 v + 127.5)`,
//! so 0 is exactly white and the ends are exactly the end colours. `compile --colormap` emits
//! the same table and the same arithmetic into the graph (`heatmap_rgb`), so every runtime
//! paints what `explain` paints.

use image::{imageops, Rgb, RgbImage};
use ndarray::ArrayView2;

/// Control points of the diverging map on [-1, 1]: dark blue, blue, white, red, dark red
/// (the same points as matplotlib's `seismic`).
const STOPS: [(f32, [f32; 3]); 5] = [
    (-1.0, [0.0, 0.0, 0.3]),
    (-0.5, [0.0, 0.0, 1.0]),
    (0.0, [1.0, 1.0, 1.0]),
    (0.5, [1.0, 0.0, 0.0]),
    (1.0, [0.5, 0.0, 0.0]),
];

/// Number of colours in the table; level `CENTRE` is 0 (white).
pub const LEVELS: usize = 255;
/// The level of the value 0.
pub const CENTRE: f32 = 127.0;

/// The table level of a value in [-1, 1]: `floor(127 v + 127.5)`, clamped (NaN is white).
pub fn level(v: f32) -> usize {
    if v.is_nan() {
        return CENTRE as usize;
    }
    (v * CENTRE + (CENTRE + 0.5))
        .floor()
        .clamp(0.0, (LEVELS - 1) as f32) as usize
}

/// The colour table: level `k` is the colour of `(k - 127) / 127`.
pub fn table() -> Vec<[u8; 3]> {
    (0..LEVELS)
        .map(|k| ramp((k as f32 - CENTRE) / CENTRE))
        .collect()
}

/// The colour of a value in [-1, 1] (clamped; NaN is white), through the table.
pub fn colour(v: f32) -> [u8; 3] {
    let v = if v.is_nan() { 0.0 } else { v.clamp(-1.0, 1.0) };
    ramp((level(v) as f32 - CENTRE) / CENTRE)
}

/// The continuous colour map the table samples.
fn ramp(v: f32) -> [u8; 3] {
    let v = v.clamp(-1.0, 1.0);
    let k = STOPS
        .windows(2)
        .position(|w| v <= w[1].0)
        .unwrap_or(STOPS.len() - 2);
    let ((a, ca), (b, cb)) = (STOPS[k], STOPS[k + 1]);
    let t = (v - a) / (b - a);
    let mut out = [0u8; 3];
    for i in 0..3 {
        out[i] = ((ca[i] + t * (cb[i] - ca[i])) * 255.0).round() as u8;
    }
    out
}

/// `M / max|M|` (all zeros stay zero).
pub fn normalise(m: ArrayView2<f32>) -> ndarray::Array2<f32> {
    let scale = m.iter().fold(0f32, |a, v| a.max(v.abs()));
    if scale > 0.0 {
        m.mapv(|v| v / scale)
    } else {
        m.to_owned()
    }
}

/// The heatmap of `m` ([H, W]) at `width` x `height` pixels (nearest-neighbour enlargement).
pub fn render(m: ArrayView2<f32>, width: u32, height: u32) -> RgbImage {
    let n = normalise(m);
    let (h, w) = (n.shape()[0] as u32, n.shape()[1] as u32);
    let small = RgbImage::from_fn(w, h, |x, y| Rgb(colour(n[[y as usize, x as usize]])));
    if (w, h) == (width, height) {
        small
    } else {
        imageops::resize(&small, width, height, imageops::FilterType::Nearest)
    }
}

/// The input and its heatmap side by side, or blended half and half.
pub fn overlay(input: &RgbImage, heat: &RgbImage, blend: bool) -> RgbImage {
    let heat = if heat.dimensions() == input.dimensions() {
        heat.clone()
    } else {
        let (w, h) = input.dimensions();
        imageops::resize(heat, w, h, imageops::FilterType::Nearest)
    };
    let (w, h) = input.dimensions();
    if blend {
        RgbImage::from_fn(w, h, |x, y| {
            let (a, b) = (input.get_pixel(x, y).0, heat.get_pixel(x, y).0);
            Rgb([0, 1, 2].map(|i| ((a[i] as u16 + b[i] as u16) / 2) as u8))
        })
    } else {
        let mut out = RgbImage::from_pixel(2 * w, h, Rgb([255, 255, 255]));
        imageops::replace(&mut out, input, 0, 0);
        imageops::replace(&mut out, &heat, w as i64, 0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_map_ends_and_centre() {
        assert_eq!(colour(0.0), [255, 255, 255]);
        assert_eq!(colour(1.0), [128, 0, 0]);
        assert_eq!(colour(-1.0), [0, 0, 77]);
        // 0.5 is not a level: it takes level 191 = 64/127, just past the red stop.
        assert_eq!(level(0.5), 191);
        assert_eq!(colour(0.5), ramp(64.0 / 127.0));
        assert_eq!(colour(2.0), colour(1.0));
        assert_eq!(colour(f32::NAN), [255, 255, 255]);
    }

    #[test]
    fn levels_are_symmetric_and_colours_distinct() {
        assert_eq!(level(-1.0), 0);
        assert_eq!(level(0.0), 127);
        assert_eq!(level(1.0), 254);
        assert_eq!(level(-0.3), 254 - level(0.3));
        let t = table();
        assert_eq!(t.len(), LEVELS);
        // Distinct colours: a PNG pixel identifies its level.
        let mut sorted = t.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), LEVELS);
    }

    #[test]
    fn render_places_zero_white_and_max_dark_red() {
        let m = ndarray::arr2(&[[0.0f32, 2.0], [-1.0, 1.0]]);
        let img = render(m.view(), 4, 4);
        assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255]); // M = 0
        assert_eq!(img.get_pixel(3, 0).0, [128, 0, 0]); // M = max
        assert_eq!(img.get_pixel(2, 1).0, [128, 0, 0]); // replicated block
        assert_eq!(img.get_pixel(0, 3).0, colour(-0.5)); // -max/2
        assert_eq!(img.get_pixel(3, 3).0, colour(0.5)); // +max/2
    }
}
