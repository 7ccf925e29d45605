//! `onnx-rap eval MODEL --data TEXTS.jsonl` for text models: token deletion (protocol:
//! docs/EVALUATION.md, "Text models").
//!
//! Each labelled text's true class is explained by every method; then its tokens are deleted
//! most relevant first (MoRF) and least relevant first (LeRF), 5% of them more at each step,
//! and the original model is run on every step. Deleted tokens are removed from the sequence,
//! not replaced: the text without them, re-padded. A `random` row deletes in a fixed-seed
//! random order, the floor every method must beat on MoRF.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::Axis;
use serde_json::{json, Value as Json};

use crate::bad_input;
use crate::error::{Error, Result};
use crate::explainer::text::{feeds, feeds_for, text_model};
use crate::explainer::{argmax, Explainer, Settings};
use crate::metrics::{self, SplitMix64};
use crate::pass::Options;
use crate::rules::Method;
use crate::runtime::Plan;
use crate::text::Encoded;

/// Each deletion step adds one `STEP_PARTS`-th of a text's tokens (5%).
pub const STEP_PARTS: usize = 20;

/// What to evaluate and how.
pub struct TextEvalArgs {
    pub model: PathBuf,
    pub data: PathBuf,
    pub tokenizer: Option<PathBuf>,
    pub methods: Vec<Method>,
    pub epsilon: f32,
    /// Evaluate N texts spread evenly over the file (it may be grouped by class or source).
    pub limit: Option<usize>,
    pub steps: usize,
    pub seed: u64,
    pub threads: usize,
    pub dump: Option<PathBuf>,
}

/// One row of the table.
pub struct TextScores {
    /// A method's name, or `random`.
    pub name: String,
    pub aopc_morf: f64,
    pub aopc_lerf: f64,
    /// Mean of f(x) - f(x_k) over the texts, k = 0..steps.
    pub morf_curve: Vec<f64>,
    pub lerf_curve: Vec<f64>,
    pub ms_per_text: f64,
    /// Why the method could not run on this model, if it could not.
    pub failed: Option<String>,
}

pub struct TextReport {
    pub model: String,
    pub data: String,
    pub texts: usize,
    pub steps: usize,
    pub seed: u64,
    /// Correct predictions per class: (correct, count).
    pub per_class: Vec<(String, usize, usize)>,
    pub scores: Vec<TextScores>,
}

impl TextReport {
    pub fn accuracy(&self) -> f64 {
        let (c, n) = self
            .per_class
            .iter()
            .fold((0, 0), |(c, n), (_, a, b)| (c + a, n + b));
        c as f64 / n.max(1) as f64
    }

    pub fn table(&self) -> String {
        let mut t = format!(
            "{} texts; accuracy {:.1}% ({})\n\
             deletion: {} steps of {:.0}% of each text's tokens, tokens removed from the \
             sequence; AOPC of the explained (true) class's logit\n\n",
            self.texts,
            100.0 * self.accuracy(),
            self.per_class
                .iter()
                .map(|(c, a, b)| format!("{c} {a}/{b}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.steps,
            100.0 / STEP_PARTS as f64
        );
        t += &format!(
            "{:<14} {:>11} {:>11} {:>11} {:>10}\n",
            "method", "AOPC MoRF ↑", "AOPC LeRF ↓", "MoRF-LeRF ↑", "ms/text"
        );
        for s in &self.scores {
            match &s.failed {
                Some(why) => t += &format!("{:<14} does not run: {why}\n", s.name),
                None => {
                    t += &format!(
                        "{:<14} {:>11.3} {:>11.3} {:>11.3} {:>10}\n",
                        s.name,
                        s.aopc_morf,
                        s.aopc_lerf,
                        s.aopc_morf - s.aopc_lerf,
                        if s.ms_per_text.is_nan() {
                            "-".to_string()
                        } else {
                            format!("{:.0}", s.ms_per_text)
                        }
                    )
                }
            }
        }
        t
    }

    pub fn to_json(&self) -> Json {
        let finite = |x: f64| if x.is_finite() { json!(x) } else { Json::Null };
        json!({
            "model": self.model,
            "data": self.data,
            "texts": self.texts,
            "steps": self.steps,
            "step_share": 1.0 / STEP_PARTS as f64,
            "seed": self.seed,
            "accuracy": self.accuracy(),
            "per_class": self.per_class.iter().map(|(c, a, b)| json!({"class": c, "correct": a, "count": b})).collect::<Vec<_>>(),
            "scores": self.scores.iter().map(|s| json!({
                "method": s.name,
                "aopc_morf": finite(s.aopc_morf),
                "aopc_lerf": finite(s.aopc_lerf),
                "morf_curve": s.morf_curve,
                "lerf_curve": s.lerf_curve,
                "ms_per_text": finite(s.ms_per_text),
                "failed": s.failed,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Labelled texts of a .jsonl file: `{"text": ..., "label": K}` a line.
pub fn read_labelled(path: &Path, classes: usize) -> Result<Vec<(String, usize)>> {
    let shown = path.display();
    let raw = std::fs::read(path).map_err(|e| bad_input!("{shown}: cannot read: {e}"))?;
    let raw = String::from_utf8(raw).map_err(|e| {
        bad_input!(
            "{shown}: not valid UTF-8 (byte {}); texts must be UTF-8",
            e.utf8_error().valid_up_to()
        )
    })?;
    let mut out = Vec::new();
    for (k, line) in raw.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Json = serde_json::from_str(line)
            .map_err(|e| bad_input!("{shown}:{}: not a JSON object: {e}", k + 1))?;
        let text = v
            .get("text")
            .and_then(Json::as_str)
            .ok_or_else(|| bad_input!("{shown}:{}: the object has no \"text\" string", k + 1))?;
        let label = v
            .get("label")
            .and_then(Json::as_u64)
            .filter(|&l| (l as usize) < classes)
            .ok_or_else(|| {
                bad_input!(
                    "{shown}:{}: \"label\" must be a class index 0..{} (the model has {classes} \
                     classes)",
                    k + 1,
                    classes - 1
                )
            })?;
        out.push((text.to_string(), label as usize));
    }
    if out.is_empty() {
        return Err(bad_input!("{shown}: no labelled text in the file"));
    }
    Ok(out)
}

/// The text without the tokens at `deleted` (indices into its tokens); special tokens stay.
pub fn without(e: &Encoded, deleted: &[usize]) -> Encoded {
    let mut gone = vec![false; e.tokens.len()];
    for &d in deleted {
        gone[d] = true;
    }
    e.keeping(|k| !gone[k])
}

/// Tokens deleted after step `j` of a text of `n` tokens: ceil(j n / 20), at most n.
pub fn deleted_at(j: usize, n: usize) -> usize {
    (j * n).div_ceil(STEP_PARTS).min(n)
}

/// Token indices, most relevant first (`morf`) or least relevant first; ties by position.
pub fn token_order(relevance: &[f32], morf: bool) -> Vec<usize> {
    let mut o: Vec<usize> = (0..relevance.len()).collect();
    o.sort_by(|&a, &b| {
        let c = relevance[b].total_cmp(&relevance[a]);
        if morf { c } else { c.reverse() }.then(a.cmp(&b))
    });
    o
}

/// A fixed-seed random order of `n` tokens (Fisher-Yates with SplitMix64 at `seed + index`).
pub fn random_order(n: usize, seed: u64, index: u64) -> Vec<usize> {
    let mut g = SplitMix64(seed.wrapping_add(index));
    let mut o: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (g.next_u64() % (i as u64 + 1)) as usize;
        o.swap(i, j);
    }
    o
}

pub fn run(args: &TextEvalArgs, progress: bool) -> Result<TextReport> {
    let origin = args.model.display().to_string();
    // The forward pass: the model as it is (its sequence axis fixed to the context), inputs
    // from the text front end.
    let mut model = crate::explainer::load_model(&args.model)?;
    let spec = text_model(&mut model, &args.model, args.tokenizer.as_deref())?;
    let settings = |method, epsilon| Settings {
        compile: Options {
            method,
            epsilon,
            ..Options::default()
        },
        tokenizer: args.tokenizer.clone(),
        ..Settings::default()
    };
    let base = Explainer::new(
        model.clone(),
        &args.model,
        &settings(Method::Rap, crate::rules::DEFAULT_EPSILON),
    )?;
    let base = base.compiled();
    let forward_bytes = crate::onnx::encode(&crate::ir::export(&model)?);
    let rows = read_labelled(&args.data, base.classes)?;
    let picked: Vec<usize> = match args.limit {
        Some(l) if l < rows.len() => (0..l.max(1)).map(|i| i * rows.len() / l.max(1)).collect(),
        _ => (0..rows.len()).collect(),
    };
    let texts: Vec<Encoded> = picked
        .iter()
        .map(|&i| spec.encode(&rows[i].0, &format!("{}:{}", args.data.display(), i + 1)))
        .collect::<Result<_>>()?;
    let labels: Vec<usize> = picked.iter().map(|&i| rows[i].1).collect();
    let cut = texts.iter().filter(|e| e.truncated()).count();
    if cut > 0 {
        eprintln!(
            "warning: {cut} text(s) are longer than the context ({} tokens) and were cut",
            spec.context
        );
    }
    let n = texts.len();
    let steps = args.steps.max(1);
    let workers = crate::runtime::share_threads(args.threads, n);
    let one = |e: &Encoded| feeds_for(base, &spec, &[e], &origin);
    let forward = Plan::new(&forward_bytes, &one(&texts[0])?, vec![base.logits.clone()])?;
    let logits_of = |e: &Encoded| -> Result<Vec<f32>> {
        let out = forward.run(&one(e)?)?;
        Ok(out[0].1.index_axis(Axis(0), 0).iter().copied().collect())
    };
    // The deletion curve of one text along `order`: f(x_k) of the true class, k = 0..steps,
    // each distinct deletion count run once.
    let curve = |i: usize, order: &[usize], f0: f64| -> Result<Vec<f64>> {
        let e = &texts[i];
        let mut cache: HashMap<usize, f64> = HashMap::from([(0, f0)]);
        (0..=steps)
            .map(|j| {
                let k = deleted_at(j, e.tokens.len());
                if let Some(v) = cache.get(&k) {
                    return Ok(*v);
                }
                let v = logits_of(&without(e, &order[..k]))?[labels[i]] as f64;
                cache.insert(k, v);
                Ok(v)
            })
            .collect()
    };

    let bar = super::progress_bar(progress, n * (args.methods.len() + 1), "texts", true)?;
    // The original logits, the accuracy and the random floor.
    bar.set_prefix("random");
    let base_runs = crate::parallel::map(workers, &texts, |i, e| {
        let l = logits_of(e)?;
        let f0 = l[labels[i]] as f64;
        let order = random_order(e.tokens.len(), args.seed, i as u64);
        let c = curve(i, &order, f0)?;
        bar.inc(1);
        Ok((argmax(&l), f0, c))
    })?;
    let class_name = |k: usize| {
        base.labels
            .as_ref()
            .and_then(|l| l.get(k).cloned())
            .unwrap_or_else(|| format!("class {k}"))
    };
    let per_class: Vec<(String, usize, usize)> = (0..base.classes)
        .map(|k| {
            let idx: Vec<usize> = (0..n).filter(|&i| labels[i] == k).collect();
            let right = idx.iter().filter(|&&i| base_runs[i].0 == k).count();
            (class_name(k), right, idx.len())
        })
        .filter(|(_, _, count)| *count > 0)
        .collect();
    let mean_curve = |curves: &[&Vec<f64>]| -> Vec<f64> {
        (0..=steps)
            .map(|k| curves.iter().map(|c| c[0] - c[k]).sum::<f64>() / n as f64)
            .collect()
    };
    let random_curves: Vec<&Vec<f64>> = base_runs.iter().map(|r| &r.2).collect();
    let random_aopc = random_curves.iter().map(|c| metrics::aopc(c)).sum::<f64>() / n as f64;
    let mut scores = vec![TextScores {
        name: "random".into(),
        aopc_morf: random_aopc,
        aopc_lerf: random_aopc,
        morf_curve: mean_curve(&random_curves),
        lerf_curve: mean_curve(&random_curves),
        ms_per_text: f64::NAN,
        failed: None,
    }];
    let mut dump: Vec<Json> = (0..n)
        .map(|i| {
            json!({
                "index": picked[i],
                "label": labels[i],
                "predicted": base_runs[i].0,
                "ids": texts[i].ids,
                "random": {"curve": base_runs[i].2},
            })
        })
        .collect();

    for &method in &args.methods {
        bar.set_prefix(method.name());
        let ex = match Explainer::new(model.clone(), &args.model, &settings(method, args.epsilon)) {
            Ok(c) => c,
            Err(e @ Error::Input(_)) => {
                scores.push(TextScores {
                    name: method.name().into(),
                    aopc_morf: f64::NAN,
                    aopc_lerf: f64::NAN,
                    morf_curve: Vec::new(),
                    lerf_curve: Vec::new(),
                    ms_per_text: f64::NAN,
                    failed: Some(e.to_string()),
                });
                bar.inc(n as u64);
                continue;
            }
            Err(e) => return Err(e),
        };
        ex.warm_up(&feeds(&ex, &[&texts[0]])?)?;
        let runs = crate::parallel::map(workers, &texts, |i, e| {
            let x = feeds(&ex, &[e])?;
            let clock = Instant::now();
            let out = ex.run(x, Some(&[labels[i] as i64]))?;
            let took = clock.elapsed().as_secs_f64();
            let rel = &out.relevance;
            let r: Vec<f32> = rel
                .index_axis(Axis(0), 0)
                .iter()
                .skip(e.offset)
                .take(e.tokens.len())
                .copied()
                .collect();
            let f0 = base_runs[i].1;
            let morf = curve(i, &token_order(&r, true), f0)?;
            let lerf = curve(i, &token_order(&r, false), f0)?;
            bar.inc(1);
            Ok((r, morf, lerf, took))
        })?;
        let morf: Vec<&Vec<f64>> = runs.iter().map(|r| &r.1).collect();
        let lerf: Vec<&Vec<f64>> = runs.iter().map(|r| &r.2).collect();
        let aopc = |cs: &[&Vec<f64>]| cs.iter().map(|c| metrics::aopc(c)).sum::<f64>() / n as f64;
        scores.push(TextScores {
            name: method.name().into(),
            aopc_morf: aopc(&morf),
            aopc_lerf: aopc(&lerf),
            morf_curve: mean_curve(&morf),
            lerf_curve: mean_curve(&lerf),
            ms_per_text: 1e3 * runs.iter().map(|r| r.3).sum::<f64>() / n as f64,
            failed: None,
        });
        for (d, r) in dump.iter_mut().zip(&runs) {
            d[method.name()] = json!({"relevance": r.0, "morf": r.1, "lerf": r.2});
        }
    }
    bar.finish_and_clear();
    if let Some(d) = &args.dump {
        std::fs::create_dir_all(d)
            .map_err(|e| bad_input!("{}: cannot create the folder: {e}", d.display()))?;
        let path = d.join("text_eval.jsonl");
        let body: String = dump.iter().map(|v| format!("{v}\n")).collect();
        std::fs::write(&path, body)
            .map_err(|e| Error::Runtime(format!("{}: cannot write: {e}", path.display())))?;
    }
    Ok(TextReport {
        model: origin,
        data: args.data.display().to_string(),
        texts: n,
        steps,
        seed: args.seed,
        per_class,
        scores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::Token;

    #[test]
    fn deletion_keeps_the_start_token_and_the_order() {
        let tok = |id| Token {
            id,
            start: 0,
            end: 0,
            text: String::new(),
        };
        let e = Encoded {
            ids: vec![9, 1, 2, 3, 4],
            tokens: (1..=4).map(tok).collect(),
            total: 4,
            offset: 1,
        };
        assert_eq!(without(&e, &[2, 0]).ids, vec![9, 2, 4]);
        assert_eq!(token_order(&[0.1, 0.5, -0.2, 0.5], true), vec![1, 3, 0, 2]);
        assert_eq!(token_order(&[0.1, 0.5, -0.2, 0.5], false), vec![2, 0, 1, 3]);
        assert_eq!(
            (1..=10).map(|j| deleted_at(j, 10)).collect::<Vec<_>>(),
            vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
        );
        assert_eq!(deleted_at(0, 10), 0);
        let mut r = random_order(50, 3, 7);
        assert_ne!(r, (0..50).collect::<Vec<_>>());
        r.sort();
        assert_eq!(r, (0..50).collect::<Vec<_>>());
    }
}
