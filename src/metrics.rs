//! Faithfulness and localisation metrics of a relevance map, as docs/EVALUATION.md states
//! them: outside-inside relevance ratio, pointing game, segmentation by mean threshold, and
//! the patch order and noise of region perturbation (AOPC), and for the photo benchmark the
//! random floor, the blurred baseline and the deletion / insertion AUC of Petsiuk, Das and
//! Saenko (RISE, BMVC 2018), ABPC, and the paired bootstrap. Pure functions on `[H, W]` maps
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

/// ABPC, the area between the perturbation curves: AOPC MoRF - AOPC LeRF of one image
/// (docs/EVALUATION.md, "The photo benchmark"); higher is better.
pub fn abpc(morf: &[f64], lerf: &[f64]) -> f64 {
    aopc(morf) - aopc(lerf)
}

/// Stream tag of the random floor's maps ("RANDOM" in ASCII): SplitMix64 starts at
/// `(seed + index) ^ RANDOM_STREAM`, so the map is not the noise of the same image.
pub const RANDOM_STREAM: u64 = 0x5241_4E44_4F4D;
/// Stream tag of the bootstrap's resampling ("BOOT" in ASCII): SplitMix64 starts at
/// `seed ^ BOOTSTRAP_STREAM`.
pub const BOOTSTRAP_STREAM: u64 = 0x424F_4F54;

/// The random floor's relevance map of image `index`: `h` x `w` uniform values in [0, 1),
/// row-major.
pub fn random_map(seed: u64, index: u64, h: usize, w: usize) -> ndarray::Array2<f64> {
    let mut g = SplitMix64(seed.wrapping_add(index) ^ RANDOM_STREAM);
    ndarray::Array2::from_shape_simple_fn((h, w), || g.next_f64())
}

/// The blur of the deletion / insertion baseline: a Gaussian of `sigma` pixels, truncated at
/// `ceil(3 sigma)`, applied to every channel of `[H, W, C]` pixels along x then along y, the
/// edges repeated (replicate padding).
pub fn gaussian_blur(img: &ndarray::Array3<f32>, sigma: f64) -> ndarray::Array3<f32> {
    let r = (3.0 * sigma).ceil() as isize;
    let k: Vec<f64> = (-r..=r)
        .map(|j| (-((j * j) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = k.iter().sum();
    let k: Vec<f64> = k.iter().map(|v| v / total).collect();
    let (h, w, c) = img.dim();
    let pass = |src: &ndarray::Array3<f64>, along_x: bool| {
        ndarray::Array3::from_shape_fn((h, w, c), |(y, x, ch)| {
            let mut s = 0.0;
            for (t, wt) in k.iter().enumerate() {
                let d = t as isize - r;
                let (yy, xx) = if along_x {
                    (y, (x as isize + d).clamp(0, w as isize - 1) as usize)
                } else {
                    ((y as isize + d).clamp(0, h as isize - 1) as usize, x)
                };
                s += wt * src[[yy, xx, ch]];
            }
            s
        })
    };
    let once = pass(&img.mapv(f64::from), true);
    pass(&once, false).mapv(|v| v as f32)
}

/// How many patches of `total` are replaced after step `k` of `steps` in deletion and
/// insertion: `floor(k * total / steps)`, so step `steps` covers every patch.
pub fn patches_at_step(k: usize, steps: usize, total: usize) -> usize {
    k * total / steps
}

/// The area under a curve `ys` over `xs` by the trapezoid rule.
pub fn trapezoid(xs: &[f64], ys: &[f64]) -> f64 {
    xs.windows(2)
        .zip(ys.windows(2))
        .map(|(x, y)| (x[1] - x[0]) * (y[0] + y[1]) / 2.0)
        .sum()
}

/// The softmax probability of class `t` from logits (float64, shifted by the maximum).
pub fn softmax_prob(logits: &[f64], t: usize) -> f64 {
    let mx = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = logits.iter().map(|l| (l - mx).exp()).sum();
    (logits[t] - mx).exp() / z
}

/// The image indices of `resamples` bootstrap resamples of `n` images (each `n` draws with
/// replacement, `next_u64() % n`, from SplitMix64 at `seed ^ BOOTSTRAP_STREAM`). The same
/// resamples serve every method and metric, so the differences stay paired.
pub fn bootstrap_resamples(n: usize, resamples: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut g = SplitMix64(seed ^ BOOTSTRAP_STREAM);
    (0..resamples)
        .map(|_| (0..n).map(|_| (g.next_u64() % n as u64) as usize).collect())
        .collect()
}

/// A mean with its percentile bootstrap interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
}

/// The mean of per-image values `d` and its percentile bootstrap interval at `level` (0.95:
/// the 2.5th and 97.5th percentiles of the resample means, linearly interpolated between
/// order statistics as numpy's default `percentile` does).
pub fn bootstrap_interval(d: &[f64], resamples: &[Vec<usize>], level: f64) -> Interval {
    let mean_of = |idx: &mut dyn Iterator<Item = f64>, n: usize| idx.sum::<f64>() / n as f64;
    let mut means: Vec<f64> = resamples
        .iter()
        .map(|r| mean_of(&mut r.iter().map(|&i| d[i]), r.len()))
        .collect();
    means.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        let pos = q * (means.len() - 1) as f64;
        let (i, f) = (pos.floor() as usize, pos - pos.floor());
        let j = (i + 1).min(means.len() - 1);
        means[i] + (means[j] - means[i]) * f
    };
    let a = (1.0 - level) / 2.0;
    Interval {
        mean: mean_of(&mut d.iter().copied(), d.len()),
        lo: pct(a),
        hi: pct(1.0 - a),
    }
}

/// Ranks of `v` from 1, ties given their average rank (the ranks Spearman's coefficient
/// correlates).
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        // Positions i..=j (0-based) share the ranks i+1..=j+1: their mean.
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation of two equally long samples: Pearson's correlation of their
/// average ranks. NaN when either sample is constant.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
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
    fn trapezoid_softmax_and_steps_by_hand() {
        assert!((trapezoid(&[0.0, 0.5, 1.0], &[1.0, 0.0, 0.0]) - 0.25).abs() < 1e-15);
        assert!((softmax_prob(&[0.0, 0.0], 1) - 0.5).abs() < 1e-15);
        assert!((softmax_prob(&[1000.0, 0.0], 0) - 1.0).abs() < 1e-15);
        let m: Vec<usize> = (0..=3).map(|k| patches_at_step(k, 3, 16)).collect();
        assert_eq!(m, vec![0, 5, 10, 16]);
        assert_eq!(abpc(&[2.0, 1.0], &[2.0, 2.0]), 0.5);
    }

    #[test]
    fn blur_keeps_constants_and_spreads_a_point() {
        let flat = ndarray::Array3::from_elem((9, 7, 2), 0.25f32);
        let b = gaussian_blur(&flat, 2.0);
        assert!(b.iter().all(|&v| (v - 0.25).abs() < 1e-6));
        let mut dot = ndarray::Array3::zeros((21, 21, 1));
        dot[[10, 10, 0]] = 1.0f32;
        let b = gaussian_blur(&dot, 1.0);
        // Far from the edges the blur conserves the sum and is symmetric.
        assert!((b.sum() - 1.0).abs() < 1e-5);
        assert_eq!(b[[10, 9, 0]], b[[9, 10, 0]]);
        assert!(b[[10, 10, 0]] > b[[10, 11, 0]]);
    }

    #[test]
    fn bootstrap_of_a_constant_is_that_constant_and_intervals_order() {
        let r = bootstrap_resamples(10, 200, 0);
        assert_eq!(r.len(), 200);
        assert!(r.iter().all(|s| s.len() == 10 && s.iter().all(|&i| i < 10)));
        let c = bootstrap_interval(&[0.5; 10], &r, 0.95);
        assert_eq!((c.mean, c.lo, c.hi), (0.5, 0.5, 0.5));
        let d: Vec<f64> = (0..10).map(|i| i as f64).collect();
        let c = bootstrap_interval(&d, &r, 0.95);
        assert_eq!(c.mean, 4.5);
        assert!(
            c.lo < 4.5 && 4.5 < c.hi && c.lo >= 0.0 && c.hi <= 9.0,
            "{c:?}"
        );
        assert_ne!(random_map(0, 1, 2, 2), random_map(0, 2, 2, 2));
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

    #[test]
    fn spearman_of_monotone_and_tied_samples() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        // Any increasing transform keeps every rank: 1; reversed: -1.
        let b: Vec<f64> = a.iter().map(|v: &f64| v.powi(3) + 7.0).collect();
        assert!((spearman(&a, &b) - 1.0).abs() < 1e-12);
        let c: Vec<f64> = a.iter().map(|v| -v).collect();
        assert!((spearman(&a, &c) + 1.0).abs() < 1e-12);
        // Ties: average ranks (scipy.stats.rankdata's default).
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        // No ties: 1 - 6 sum d^2 / (n (n^2 - 1)); d = (0, 1, -1, 0, 0) gives 1 - 12/120.
        let d = [1.0, 3.0, 2.0, 4.0, 5.0];
        assert!((spearman(&a, &d) - 0.9).abs() < 1e-12);
        assert!(spearman(&a, &[2.0; 5]).is_nan());
    }
}
