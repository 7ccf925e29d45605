//! The model-randomisation sanity check of `eval --sanity K` (Adebayo et al., "Sanity Checks
//! for Saliency Maps", NeurIPS 2018): the weights of the model's top K parameterised layers
//! (Conv, ConvTranspose, Gemm and MatMul with a constant weight, counted from the output)
//! are replaced by fixed-seed Gaussian noise, every method explains the same class on that
//! model, and the Spearman rank correlation between each image's original and randomised
//! map is reported, of the signed maps and of their absolute values. A map that stays the
//! same is a map that does not depend on what the model learned (docs/EVALUATION.md).

use ndarray::Array2;
use serde_json::{json, Value as Json};

use crate::error::{Error, Result};
use crate::ir::{self, Node};
use crate::metrics::{self, Interval, SplitMix64};
use crate::onnx::tensor::{f32_tensor, to_f32};

/// Stream of the noise generator of the randomised weights (xor-ed into the seed).
const SANITY_STREAM: u64 = 0x5A17_C0DE_0000_0001;

/// The operators whose constant weights the check randomises.
const LAYERS: [&str; 4] = ["Conv", "ConvTranspose", "Gemm", "MatMul"];

/// One depth of the check: which layers were randomised, and every method's correlations.
#[derive(Clone, Debug)]
pub struct Sanity {
    /// K: top layers randomised.
    pub layers: usize,
    /// Their node names (or output tensors), top first.
    pub randomized: Vec<String>,
    pub rows: Vec<SanityRow>,
}

/// One method's rank correlations between original and randomised maps.
#[derive(Clone, Debug)]
pub struct SanityRow {
    pub method: String,
    /// Mean over images of Spearman's rho of the signed maps, with its bootstrap interval.
    pub spearman: Interval,
    /// The same, of the absolute maps.
    pub spearman_abs: Interval,
    /// Per image: [rho, rho of |map|].
    pub per_image: Vec<[f64; 2]>,
}

impl Sanity {
    pub fn to_json(&self) -> Json {
        json!({
            "layers": self.layers,
            "randomized": self.randomized,
            "methods": self.rows.iter().map(|r| json!({
                "method": r.method,
                "spearman": r.spearman.mean, "spearman_lo": r.spearman.lo,
                "spearman_hi": r.spearman.hi,
                "spearman_abs": r.spearman_abs.mean, "spearman_abs_lo": r.spearman_abs.lo,
                "spearman_abs_hi": r.spearman_abs.hi,
                "per_image": r.per_image,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The sanity tables as Markdown, one row per depth and method.
pub fn table(checks: &[Sanity], resamples: usize) -> String {
    if checks.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "\nsanity check (Adebayo et al. 2018): the top K weight layers re-drawn from N(0, \
         their std), fixed seed; Spearman rank correlation of each image's map before and \
         after, mean [95% bootstrap interval, {resamples} resamples]; 1 = unchanged\n\n\
         | method | K | randomised (top first) | Spearman | Spearman of abs |\n|---|---|---|---|---|\n"
    );
    for c in checks {
        let layers = if c.randomized.len() <= 3 {
            c.randomized.join(", ")
        } else {
            format!(
                "{}, ... {} ({} layers)",
                c.randomized[..2].join(", "),
                c.randomized[c.randomized.len() - 1],
                c.randomized.len()
            )
        };
        for r in &c.rows {
            s += &format!(
                "| {} | {} | {layers} | {:.3} [{:.3}, {:.3}] | {:.3} [{:.3}, {:.3}] |\n",
                r.method,
                c.layers,
                r.spearman.mean,
                r.spearman.lo,
                r.spearman.hi,
                r.spearman_abs.mean,
                r.spearman_abs.lo,
                r.spearman_abs.hi
            );
        }
    }
    s
}

/// The model with the constant weights (and biases) of its top `k` parameterised layers
/// re-drawn: every element from N(0, sd^2), sd the population standard deviation of the
/// tensor it replaces (1 where that is 0), by Box-Muller from SplitMix64 at `seed ^
/// SANITY_STREAM`, layers top first. Returns the model and the layers' names, top first.
pub fn randomize_top(model: &ir::Model, k: usize, seed: u64) -> Result<(ir::Model, Vec<String>)> {
    let mut m = model.clone();
    let order = m.graph.topo_order()?;
    let layers: Vec<_> = order
        .into_iter()
        .rev()
        .filter(|&ix| {
            m.graph.g[ix].op().is_some_and(|p| {
                LAYERS.contains(&p.op_type())
                    && p.input
                        .get(1)
                        .is_some_and(|w| m.graph.initializer(w).is_some())
            })
        })
        .take(k)
        .collect();
    if layers.len() < k {
        return Err(crate::bad_input!(
            "--sanity {k}: the model has only {} layers with constant weights ({})",
            layers.len(),
            LAYERS.join(", ")
        ));
    }
    let mut g = SplitMix64(seed ^ SANITY_STREAM);
    let mut names = Vec::new();
    let mut done = std::collections::HashSet::new();
    for ix in layers {
        let p = m.graph.g[ix]
            .op()
            .ok_or_else(|| Error::Runtime("not an operator".into()))?
            .clone();
        names.push(
            p.name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| p.output.first().cloned().unwrap_or_default()),
        );
        for slot in [1, 2] {
            let Some(t) = p.input.get(slot).filter(|t| !t.is_empty()) else {
                continue;
            };
            let Some(init) = m.graph.initializer(t) else {
                continue;
            };
            if !done.insert(t.clone()) {
                continue;
            }
            let w = to_f32(init)?;
            let n = w.len().max(1) as f64;
            let mean = w.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = w.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            let sd = if var > 0.0 { var.sqrt() } else { 1.0 };
            let values: Vec<f32> = (0..w.len())
                .map(|_| (sd * gaussian(&mut g)) as f32)
                .collect();
            let fresh = f32_tensor(t, &init.dims, &values);
            let pix = m
                .graph
                .producer(t)
                .ok_or_else(|| Error::Runtime(format!("no producer of {t}")))?;
            m.graph.g[pix] = Node::Init(fresh);
        }
    }
    Ok((m, names))
}

/// A standard normal draw (Box-Muller, the cosine branch).
fn gaussian(g: &mut SplitMix64) -> f64 {
    let u1 = 1.0 - g.next_f64(); // in (0, 1]
    let u2 = g.next_f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// One method's row: the per-image rank correlations of `before` and `after` and their
/// means with paired bootstrap intervals (the resamples of the photo comparisons).
pub fn row(
    method: &str,
    before: &[Array2<f64>],
    after: &[Array2<f64>],
    resamples: &[Vec<usize>],
) -> SanityRow {
    let per_image: Vec<[f64; 2]> = before
        .iter()
        .zip(after)
        .map(|(a, b)| {
            let (a, b): (Vec<f64>, Vec<f64>) =
                (a.iter().copied().collect(), b.iter().copied().collect());
            let abs = |v: &[f64]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
            [
                metrics::spearman(&a, &b),
                metrics::spearman(&abs(&a), &abs(&b)),
            ]
        })
        .collect();
    let col = |j: usize| per_image.iter().map(|r| r[j]).collect::<Vec<_>>();
    SanityRow {
        method: method.to_string(),
        spearman: metrics::bootstrap_interval(&col(0), resamples, 0.95),
        spearman_abs: metrics::bootstrap_interval(&col(1), resamples, 0.95),
        per_image,
    }
}
