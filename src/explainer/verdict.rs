//! How a model classified an input and which class was explained: the prediction, the
//! explained class and its logit, the most probable classes (what image and text outcomes,
//! the command line and the Python package share).

use serde_json::{json, Value as Json};

/// How the model classified one input, and the class explained: what image and text outcomes
/// share.
pub struct Verdict {
    pub predicted: usize,
    pub label: Option<String>,
    pub target: usize,
    pub target_label: Option<String>,
    /// The explained class's logit.
    pub logit: f32,
    /// The five most probable classes (softmax of the logits), most probable first.
    pub top: Vec<Ranked>,
}

impl Verdict {
    /// The verdict of `logits`: the prediction, and `target` (else the prediction) explained.
    pub fn of(logits: &[f32], target: Option<i64>, labels: Option<&[String]>) -> Verdict {
        let predicted = argmax(logits);
        let target = target.map_or(predicted, |t| t as usize);
        let label_of = |k: usize| labels.and_then(|l| l.get(k).cloned());
        Verdict {
            predicted,
            label: label_of(predicted),
            target,
            target_label: label_of(target),
            logit: logits.get(target).copied().unwrap_or(f32::NAN),
            top: top_k(logits, 5, labels),
        }
    }

    /// The explained class's name, else `class K`.
    pub fn explained(&self) -> String {
        self.target_label
            .clone()
            .unwrap_or_else(|| format!("class {}", self.target))
    }

    /// The top classes with their probabilities, `NAME P%, ...`.
    pub fn top_line(&self) -> String {
        let top: Vec<String> = self
            .top
            .iter()
            .map(|r| format!("{} {:.1}%", r.name(), 100.0 * r.probability))
            .collect();
        top.join(", ")
    }

    /// Its JSON fields, added to `v` (an object); the top classes under `top_key`.
    pub fn add_json(&self, v: &mut Json, top_key: &str) {
        v["predicted"] = json!(self.predicted);
        v["predicted_label"] = json!(self.label);
        v["target"] = json!(self.target);
        v["target_label"] = json!(self.target_label);
        v["target_logit"] = json!(self.logit);
        v[top_key] = self.top.iter().map(Ranked::to_json).collect();
    }
}

/// A class and its softmax probability.
pub struct Ranked {
    pub class: usize,
    pub label: Option<String>,
    pub probability: f64,
}

impl Ranked {
    pub fn to_json(&self) -> Json {
        json!({"class": self.class, "name": self.name(), "probability": self.probability})
    }

    /// The class name, else `class K`.
    pub fn name(&self) -> String {
        self.label
            .clone()
            .unwrap_or_else(|| format!("class {}", self.class))
    }
}

/// What one rule received and handed to its inputs (`compile --layer-sums`), for one sample.
#[derive(Clone)]
pub struct LayerSum {
    /// The node's name (its first output when it has none).
    pub layer: String,
    pub op: String,
    pub received: f64,
    pub handed: f64,
}

/// The `k` most probable classes: softmax of `logits` (in f64), most probable first.
pub fn top_k(logits: &[f32], k: usize, labels: Option<&[String]>) -> Vec<Ranked> {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
    let exp: Vec<f64> = logits.iter().map(|&v| (v as f64 - max).exp()).collect();
    let total: f64 = exp.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    // Stable: equal probabilities keep the lower class first.
    order.sort_by(|&a, &b| exp[b].total_cmp(&exp[a]));
    order
        .into_iter()
        .take(k)
        .map(|c| Ranked {
            class: c,
            label: labels.and_then(|l| l.get(c).cloned()),
            probability: exp[c] / total,
        })
        .collect()
}

/// The index of the largest value (the first of equal ones).
pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(0, |b, (i, x)| if *x > v[b] { i } else { b })
}
