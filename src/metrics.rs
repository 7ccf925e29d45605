//! Faithfulness and localisation metrics of a relevance map, as docs/EVALUATION.md states
//! them: outside-inside relevance ratio, pointing game, segmentation by mean threshold, and
//! the patch order and noise of region perturbation (AOPC). Pure functions on `[H, W]` maps
//! in float64; `onnx-rap eval` runs the models around them.

use ndarray::{ArrayView2, Zip};

/// An object box `[x0, y0, x1, y1)` in pixels (x1, y1 exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoxPx {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

impl BoxPx {
    pub fn contains(&self, y: usize, x: usize) -> bool {
        (self.x0..self.x1).contains(&x) && (self.y0..self.y1).contains(&y)
    }
}

/// Mean positive relevance outside the box over mean positive relevance inside (lower is
/// better). None when the box holds no positive relevance (the ratio is undefined) or covers
/// the whole map.
pub fn outside_inside(m: ArrayView2<f64>, b: BoxPx) -> Option<f64> {
    let (mut sin, mut nin, mut sout, mut nout) = (0.0, 0usize, 0.0, 0usize);
    for ((y, x), &v) in m.indexed_iter() {
        let p = v.max(0.0);
        if b.contains(y, x) {
            sin += p;
            nin += 1;
        } else {
            sout += p;
            nout += 1;
        }
    }
    if nin == 0 || nout == 0 || sin <= 0.0 {
        return None;
    }
    Some((sout / nout as f64) / (sin / nin as f64))
}

/// Whether the map's maximum (the first in row-major order on ties) lies in the box.
pub fn pointing_hit(m: ArrayView2<f64>, b: BoxPx) -> bool {
    let mut best = (0, 0, f64::NEG_INFINITY);
    for ((y, x), &v) in m.indexed_iter() {
        if v > best.2 {
            best = (y, x, v);
        }
    }
    b.contains(best.0, best.1)
}

/// Segmentation scores of a map against an object mask.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Segmentation {
    /// Intersection over union of the foreground.
    pub iou: f64,
    /// Mean of the foreground and background IoU (the two-class mIoU).
    pub miou: f64,
    /// Share of pixels classified correctly.
    pub pixel_accuracy: f64,
}

/// Min-max normalise the map to [0, 1] (a constant map becomes 0), call foreground every
/// pixel above the normalised map's mean, and compare with the mask. An empty union counts
/// as IoU 1.
pub fn segmentation(m: ArrayView2<f64>, mask: ArrayView2<bool>) -> Segmentation {
    let lo = m.fold(f64::INFINITY, |a, &v| a.min(v));
    let hi = m.fold(f64::NEG_INFINITY, |a, &v| a.max(v));
    let norm = if hi > lo {
        m.mapv(|v| (v - lo) / (hi - lo))
    } else {
        m.mapv(|_| 0.0)
    };
    let thr = norm.mean().unwrap_or(0.0);
    let (mut tp, mut fp, mut fneg, mut tn) = (0usize, 0usize, 0usize, 0usize);
    Zip::from(&norm)
        .and(&mask)
        .for_each(|&v, &t| match (v > thr, t) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fneg += 1,
            (false, false) => tn += 1,
        });
    let iou = |i: usize, u: usize| if u == 0 { 1.0 } else { i as f64 / u as f64 };
    let fg = iou(tp, tp + fp + fneg);
    let bg = iou(tn, tn + fp + fneg);
    Segmentation {
        iou: fg,
        miou: (fg + bg) / 2.0,
        pixel_accuracy: (tp + tn) as f64 / (tp + fp + fneg + tn).max(1) as f64,
    }
}

/// The non-overlapping `p` x `p` patches of an `h` x `w` map, row-major (edges that do not
/// fill a patch are left out), each as (y0, x0).
pub fn patches(h: usize, w: usize, p: usize) -> Vec<(usize, usize)> {
    (0..h / p)
        .flat_map(|i| (0..w / p).map(move |j| (i * p, j * p)))
        .collect()
}

/// Patch indices by summed relevance: most relevant first (`morf`) or least relevant first;
/// ties keep the row-major order.
pub fn patch_order(m: ArrayView2<f64>, p: usize, morf: bool) -> Vec<usize> {
    let list = patches(m.nrows(), m.ncols(), p);
    // Summed row by row, left to right: a fixed order, so another implementation gets the
    // same sums to the last bit and the same order on near-ties.
    let scores: Vec<f64> = list
        .iter()
        .map(|&(y0, x0)| {
            let mut s = 0.0;
            for y in y0..y0 + p {
                for x in x0..x0 + p {
                    s += m[[y, x]];
                }
            }
            s
        })
        .collect();
    let mut idx: Vec<usize> = (0..list.len()).collect();
    idx.sort_by(|&a, &b| {
        let o = scores[a].total_cmp(&scores[b]);
        if morf {
            o.reverse()
        } else {
            o
        }
    });
    idx
}

/// SplitMix64: the fixed-seed generator of the perturbation noise (its few lines are easy to
/// reproduce in any language, which the tests do in numpy).
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The noise picture of image `index`: `n` uniform values in [0, 1) (pixel scale), from
/// SplitMix64 started at `seed + index`.
pub fn noise(seed: u64, index: u64, n: usize) -> Vec<f32> {
    let mut g = SplitMix64(seed.wrapping_add(index));
    (0..n).map(|_| g.next_f64() as f32).collect()
}

/// AOPC of one curve `f(x^0), f(x^1), ..., f(x^L)`: the mean of `f(x^0) - f(x^k)` over
/// k = 0..L.
pub fn aopc(curve: &[f64]) -> f64 {
    let f0 = curve[0];
    curve.iter().map(|f| f0 - f).sum::<f64>() / curve.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    const B: BoxPx = BoxPx {
        x0: 2,
        y0: 1,
        x1: 5,
        y1: 4,
    };

    fn inside_only() -> Array2<f64> {
        Array2::from_shape_fn((8, 8), |(y, x)| {
            if B.contains(y, x) {
                1.0 + x as f64
            } else {
                -0.5
            }
        })
    }

    #[test]
    fn a_map_all_in_the_box_has_ratio_zero_and_points_inside() {
        let m = inside_only();
        assert_eq!(outside_inside(m.view(), B), Some(0.0));
        assert!(pointing_hit(m.view(), B));
    }

    #[test]
    fn a_uniform_map_has_ratio_one_and_a_map_outside_misses() {
        let m = Array2::from_elem((8, 8), 2.0);
        assert!((outside_inside(m.view(), B).unwrap() - 1.0).abs() < 1e-15);
        // Ties: the first maximum (0, 0) is outside the box.
        assert!(!pointing_hit(m.view(), B));
        let mut out = Array2::zeros((8, 8));
        out[[7, 7]] = 1.0;
        assert_eq!(
            outside_inside(out.view(), B),
            None,
            "nothing positive inside"
        );
        assert!(!pointing_hit(out.view(), B));
    }

    #[test]
    fn a_perfect_mask_gives_iou_one() {
        let mask = Array2::from_shape_fn((8, 8), |(y, x)| B.contains(y, x));
        let m = mask.mapv(|t| if t { 3.0 } else { -1.0 });
        let s = segmentation(m.view(), mask.view());
        assert_eq!(s.iou, 1.0);
        assert_eq!(s.miou, 1.0);
        assert_eq!(s.pixel_accuracy, 1.0);
        // The inverted map gets everything wrong.
        let s = segmentation(m.mapv(|v| -v).view(), mask.view());
        assert_eq!((s.iou, s.miou, s.pixel_accuracy), (0.0, 0.0, 0.0));
    }

    #[test]
    fn half_overlap_by_hand() {
        // Foreground predicted on columns 0..4 of a 4x8 map, mask on columns 2..6:
        // tp = 8, fp = 8, fn = 8, tn = 8.
        let m = Array2::from_shape_fn((4, 8), |(_, x)| if x < 4 { 1.0 } else { 0.0 });
        let mask = Array2::from_shape_fn((4, 8), |(_, x)| (2..6).contains(&x));
        let s = segmentation(m.view(), mask.view());
        assert!((s.iou - 1.0 / 3.0).abs() < 1e-15);
        assert!((s.miou - 1.0 / 3.0).abs() < 1e-15);
        assert!((s.pixel_accuracy - 0.5).abs() < 1e-15);
    }

    #[test]
    fn patch_orders_by_sum_with_stable_ties() {
        let mut m = Array2::zeros((4, 6)); // 2 x 3 patches of 2x2
        m[[0, 2]] = 5.0; // patch 1
        m[[3, 5]] = -2.0; // patch 5
        m[[2, 0]] = 1.0; // patch 3
        assert_eq!(patch_order(m.view(), 2, true), vec![1, 3, 0, 2, 4, 5]);
        assert_eq!(patch_order(m.view(), 2, false), vec![5, 0, 2, 4, 3, 1]);
        assert_eq!(
            patches(5, 5, 2).len(),
            4,
            "edges that do not fill a patch are left out"
        );
    }

    #[test]
    fn aopc_of_a_flat_curve_is_zero() {
        assert_eq!(aopc(&[2.0, 2.0, 2.0]), 0.0);
        assert!((aopc(&[3.0, 2.0, 0.0]) - 4.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn splitmix64_reference_values() {
        // The first outputs for seed 1234567 as published with the algorithm (Vigna).
        let mut g = SplitMix64(1234567);
        assert_eq!(g.next_u64(), 6457827717110365317);
        assert_eq!(g.next_u64(), 3203168211198807973);
        let u = noise(0, 3, 1000);
        assert!(u.iter().all(|&v| (0.0..1.0).contains(&v)));
        assert_ne!(noise(0, 3, 4), noise(0, 4, 4));
    }
}
