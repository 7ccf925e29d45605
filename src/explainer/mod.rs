//! The library API: a model compiled once for one method, planned by tract once per input
//! shape, then explained as often as needed, from any number of threads at once. The command
//! line (`explain`, `eval`, `bench`) and the Python package (`python/`) go through it.
//!
//! ```no_run
//! use onnx_rap::explainer::{Explainer, Settings};
//! let e = Explainer::load("models/efficientnet_lite0.onnx".as_ref(), &Settings::default())?;
//! let out = e.explain_images(&["models/photos/chelsea.png".as_ref()], None)?;
//! println!("class {} explained, relevance {:?}", out.explanation.targets[0], out.explanation.relevance.shape());
//! # Ok::<(), onnx_rap::Error>(())
//! ```

pub mod compiled;
pub mod meta;
pub mod text;
pub mod verdict;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ndarray::{Array2, ArrayD, Axis, Ix2};

pub use compiled::Compiled;
pub use meta::{image_preprocess, labels, metadata, META_LABELS, META_PREPROCESS};
pub use text::{TextExplanation, TokenRelevance};
pub use verdict::{argmax, top_k, LayerSum, Ranked, Verdict};

use crate::bad_input;
use crate::error::{Error, Result};
use crate::image::{Layout, PartialPreprocess, Preprocess};
use crate::ir;
use crate::pass::{Options, RELEVANCE};
use crate::runtime::{Optimise, Plan, Value};
use crate::text::TextSpec;

/// What an explainer is built from.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The method and its options (`target_input` is always set: every run names its classes).
    pub compile: Options,
    /// Image preprocessing given by the caller; it wins over the model's metadata.
    pub preprocess: PartialPreprocess,
    /// A text model's tokenizer file [default: the file its metadata names, beside the model].
    pub tokenizer: Option<PathBuf>,
}

/// How inputs reach the model.
pub enum Front {
    /// Image files, resized, cropped and normalised as the metadata (or the settings) say.
    Image(Preprocess),
    /// Texts, tokenised as the metadata says; the sequence axis fixed to the context.
    Text(TextSpec),
    /// Tensors only (the input is no image and no token ids).
    Tensor,
}

/// A model ready to explain: compiled once, planned once per input shape (plans are shared
/// by every thread that calls it).
pub struct Explainer {
    compiled: Compiled,
    front: Front,
    origin: String,
    plans: Mutex<HashMap<Vec<Vec<usize>>, Arc<Plan>>>,
}

/// What one call explained, sample by sample along axis 0.
pub struct Explanation {
    /// The explained logits `[N, classes]` (before a trailing Softmax, if the model has one).
    pub logits: Array2<f32>,
    /// The relevance of the explained input, `[N, ...]` shaped like it (a text model: one value
    /// per token position).
    pub relevance: ArrayD<f32>,
    /// The class explained for each sample.
    pub targets: Vec<usize>,
    /// With `layer_sums` compiled in: per sample, what every rule received and handed on.
    pub layer_sums: Vec<Vec<LayerSum>>,
    /// The compiled graph's other outputs by name (`heatmap`, `heatmap_rgb`, the model's own).
    pub outputs: Vec<(String, ArrayD<f32>)>,
}

impl Explanation {
    /// Another output of the compiled graph, by name.
    pub fn output(&self, name: &str) -> Option<&ArrayD<f32>> {
        self.outputs.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// How the model classified sample `k`, with its explained class.
    pub fn verdict(&self, k: usize, labels: Option<&[String]>) -> Verdict {
        let logits: Vec<f32> = self.logits.row(k).to_vec();
        Verdict::of(&logits, Some(self.targets[k] as i64), labels)
    }
}

/// Images explained: the explanation and the picture each model input was made from (after
/// resize and crop), for overlays.
pub struct ImageExplanation {
    pub explanation: Explanation,
    pub shown: Vec<image::RgbImage>,
}

/// Load a model file (external data included) and import it.
pub fn load_model(path: &Path) -> Result<ir::Model> {
    let proto = crate::onnx::load(path)?;
    ir::import(&proto, &path.display().to_string())
}

/// Compile `model` with `opts` into the bytes of model_rap.onnx (`onnx-rap compile` writes the
/// same bytes unless the file needs external data).
pub fn compile_bytes(model: &ir::Model, opts: &Options, origin: &str) -> Result<Vec<u8>> {
    let compiled = crate::pass::compile(model, opts, origin)?;
    Ok(crate::onnx::encode(&ir::export(&compiled)?))
}

impl Explainer {
    /// Load and compile the model at `path`: a model whose inputs are token ids becomes a text
    /// explainer ([`Explainer::load_text`]), any other an image or tensor explainer
    /// ([`Explainer::load_image`]).
    pub fn load(path: &Path, settings: &Settings) -> Result<Explainer> {
        let model = load_model(path)?;
        Explainer::new(model, path, settings)
    }

    /// [`Explainer::load`] of a model in memory; `path` names it in messages and is where a
    /// text model's tokenizer file is looked for (beside it).
    pub fn new(model: ir::Model, path: &Path, settings: &Settings) -> Result<Explainer> {
        if crate::text::sequence_inputs(&model).next().is_some() {
            Explainer::text_of(model, path, settings)
        } else {
            Explainer::image_of(model, path, settings)
        }
    }

    /// An image (or tensor) explainer; a model that reads token ids is refused.
    pub fn load_image(path: &Path, settings: &Settings) -> Result<Explainer> {
        Explainer::image_of(load_model(path)?, path, settings)
    }

    /// A text explainer: the tokenizer of the metadata (or `settings.tokenizer`), the model's
    /// sequence axis fixed to its context, then compiled.
    pub fn load_text(path: &Path, settings: &Settings) -> Result<Explainer> {
        Explainer::text_of(load_model(path)?, path, settings)
    }

    /// An explainer fed tensors only: the model compiled as it is (no tokenizer read, no
    /// image preprocessing), for benchmarks and inputs of any kind ([`Explainer::run`]).
    pub fn tensors(model: ir::Model, path: &Path, settings: &Settings) -> Result<Explainer> {
        let origin = path.display().to_string();
        let compiled = Compiled::new(&model, &origin, &settings.compile, true)?;
        Ok(Explainer::with(compiled, Front::Tensor, origin))
    }

    fn image_of(model: ir::Model, path: &Path, settings: &Settings) -> Result<Explainer> {
        let origin = path.display().to_string();
        let compiled = Compiled::new(&model, &origin, &settings.compile, true)?;
        if compiled.roles.embedding.is_some() {
            return Err(bad_input!(
                "{origin}: the model reads token ids (input '{}'); give it texts with --text \
                 \"...\" or --input FILE.txt|FILE.jsonl",
                compiled.input
            ));
        }
        let front = match image_preprocess(
            &model,
            &compiled.sample,
            settings.preprocess.clone(),
            &origin,
        )? {
            Some(pp) => Front::Image(pp),
            None => Front::Tensor,
        };
        Ok(Explainer::with(compiled, front, origin))
    }

    fn text_of(mut model: ir::Model, path: &Path, settings: &Settings) -> Result<Explainer> {
        let origin = path.display().to_string();
        let spec = text::text_model(&mut model, path, settings.tokenizer.as_deref())?;
        let compiled = Compiled::new(&model, &origin, &settings.compile, true)?;
        if compiled.roles.embedding.is_none() {
            return Err(bad_input!(
                "{origin}: the explained input '{}' is not token ids read by an embedding \
                 lookup; texts need a text model (images and .npy tensors go to --input)",
                compiled.input
            ));
        }
        Ok(Explainer::with(compiled, Front::Text(spec), origin))
    }

    fn with(compiled: Compiled, front: Front, origin: String) -> Explainer {
        Explainer {
            compiled,
            front,
            origin,
            plans: Mutex::new(HashMap::new()),
        }
    }

    /// The compiled model: its bytes, outputs, roles, class names.
    pub fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    /// How inputs reach the model.
    pub fn front(&self) -> &Front {
        &self.front
    }

    /// The model's name in messages (its path).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Class names from the model's metadata.
    pub fn labels(&self) -> Option<&[String]> {
        self.compiled.labels.as_deref()
    }

    /// The number of classes.
    pub fn classes(&self) -> usize {
        self.compiled.classes
    }

    /// The image preprocessing, for an image model.
    pub fn preprocess(&self) -> Option<&Preprocess> {
        match &self.front {
            Front::Image(pp) => Some(pp),
            _ => None,
        }
    }

    /// The tokenizer, for a text model.
    pub fn text(&self) -> Option<&TextSpec> {
        match &self.front {
            Front::Text(spec) => Some(spec),
            _ => None,
        }
    }

    /// The layout of an image input (NCHW unless the model says otherwise).
    pub fn layout(&self) -> Layout {
        self.preprocess().map_or(Layout::Nchw, |p| p.layout)
    }

    /// Samples one tract run takes: 1 for a model that folds its batch axis or fixes it to
    /// 1, else any.
    pub fn max_batch(&self) -> Option<usize> {
        (self.compiled.facts.single_sample || self.compiled.fixed_batch == Some(1)).then_some(1)
    }

    /// Check a class to explain against the model's classes (a negative one means the
    /// prediction).
    pub fn check_target(&self, t: i64) -> Result<()> {
        let classes = self.compiled.classes;
        if t >= 0 && t as usize >= classes {
            return Err(bad_input!(
                "target {t} is out of range: the model has {classes} classes (0..{})",
                classes - 1
            ));
        }
        Ok(())
    }

    /// The plan for inputs shaped like `inputs` (the model's runtime inputs, in order, then
    /// `rap_target`), made on first use and shared afterwards.
    pub fn plan(&self, inputs: &[Value]) -> Result<Arc<Plan>> {
        let key: Vec<Vec<usize>> = inputs.iter().map(|v| v.shape().to_vec()).collect();
        let mut plans = self
            .plans
            .lock()
            .map_err(|_| Error::Runtime("a thread failed while planning".into()))?;
        if let Some(p) = plans.get(&key) {
            return Ok(p.clone());
        }
        let plan = Arc::new(Plan::with(
            &self.compiled.bytes,
            inputs,
            self.compiled.names.clone(),
            Optimise::Codegen,
        )?);
        plans.insert(key, plan.clone());
        Ok(plan)
    }

    /// Make the plan for runs shaped like `inputs` (the model's runtime inputs) now, so that
    /// the runs that follow are timed without it.
    pub fn warm_up(&self, inputs: &[Value]) -> Result<()> {
        let n = inputs
            .first()
            .map_or(0, |v| v.shape().first().copied().unwrap_or(0));
        // A model explained one sample per run is planned for one.
        let mut shaped: Vec<Value> = match self.max_batch() {
            Some(m) if n > m => inputs.iter().map(|v| v.sample(0)).collect(),
            _ => inputs.to_vec(),
        };
        let n = shaped
            .first()
            .map_or(1, |v| v.shape().first().copied().unwrap_or(1));
        shaped.push(Value::I64(ArrayD::zeros(vec![n])));
        self.plan(&shaped).map(|_| ())
    }

    /// Explain `inputs`: the model's runtime inputs in their graph order (see
    /// [`Compiled::inputs`]), each with the batch on axis 0; `targets` (one per sample,
    /// negative: the prediction) choose the classes, None explains the predictions.
    pub fn run(&self, inputs: Vec<Value>, targets: Option<&[i64]>) -> Result<Explanation> {
        let c = &self.compiled;
        if inputs.len() != c.inputs.len() {
            let names: Vec<&str> = c.inputs.iter().map(|(n, _)| n.as_str()).collect();
            return Err(bad_input!(
                "{}: the model takes {} input(s) ({}), {} given",
                self.origin,
                names.len(),
                names.join(", "),
                inputs.len()
            ));
        }
        let mut n = None;
        for (v, (name, integer)) in inputs.iter().zip(&c.inputs) {
            let shape = v.shape();
            if shape.is_empty() {
                return Err(bad_input!(
                    "{}: input '{name}' needs a batch axis first",
                    self.origin
                ));
            }
            if matches!(v, Value::F32(_)) == *integer {
                let want = if *integer { "int64" } else { "float32" };
                return Err(bad_input!(
                    "{}: input '{name}' takes {want} values",
                    self.origin
                ));
            }
            if *name == c.input && shape[1..] != c.sample[..] {
                return Err(bad_input!(
                    "{}: input '{name}' has shape {:?} per sample; the model takes {:?}",
                    self.origin,
                    &shape[1..],
                    c.sample
                ));
            }
            match n {
                None => n = Some(shape[0]),
                Some(m) if m != shape[0] => {
                    return Err(bad_input!(
                        "{}: the inputs' batch sizes differ ({m} and {} for '{name}')",
                        self.origin,
                        shape[0]
                    ))
                }
                _ => {}
            }
        }
        let n = n.unwrap_or(0);
        if n == 0 {
            return Err(bad_input!(
                "{}: nothing to explain (batch of 0)",
                self.origin
            ));
        }
        let targets: Vec<i64> = match targets {
            Some(t) if t.len() != n => {
                return Err(bad_input!("{} target(s) given for {n} sample(s)", t.len()))
            }
            Some(t) => t.to_vec(),
            None => vec![-1; n],
        };
        for &t in &targets {
            self.check_target(t)?;
        }
        match self.max_batch() {
            Some(m) if n > m => {
                // One sample per run, then the runs stacked.
                let mut parts = Vec::with_capacity(n);
                for k in 0..n {
                    let one = inputs.iter().map(|v| v.sample(k)).collect();
                    parts.push(self.run_one(one, &targets[k..k + 1])?);
                }
                Explanation::concat(parts)
            }
            _ => self.run_one(inputs, &targets),
        }
    }

    fn run_one(&self, mut inputs: Vec<Value>, targets: &[i64]) -> Result<Explanation> {
        let c = &self.compiled;
        let n = targets.len();
        inputs.push(Value::I64(
            ArrayD::from_shape_vec(vec![n], targets.to_vec())
                .map_err(|e| Error::Runtime(e.to_string()))?,
        ));
        let plan = self.plan(&inputs)?;
        let out = plan.run(&inputs)?;
        drop(inputs);
        let layer_sums = (0..n)
            .map(|k| c.layer_sums(&out, k))
            .collect::<Result<Vec<_>>>()?;
        let mut logits = None;
        let mut relevance = None;
        let mut outputs = Vec::new();
        for (name, v) in out {
            if name == c.logits && logits.is_none() {
                logits = Some(v);
            } else if name == RELEVANCE && relevance.is_none() {
                relevance = Some(v);
            } else if !name.starts_with(crate::pass::LAYER_SUM) {
                outputs.push((name, v));
            }
        }
        let logits = logits
            .ok_or_else(|| Error::Runtime("no logits output".into()))?
            .into_shape_with_order((n, c.classes))
            .map_err(|e| Error::Runtime(format!("the logits: {e}")))?
            .into_dimensionality::<Ix2>()
            .map_err(|e| Error::Runtime(format!("the logits: {e}")))?;
        let relevance = relevance.ok_or_else(|| Error::Runtime("no relevance output".into()))?;
        let targets = targets
            .iter()
            .enumerate()
            .map(|(k, &t)| {
                if t < 0 {
                    argmax(logits.row(k).as_slice().unwrap_or(&[]))
                } else {
                    t as usize
                }
            })
            .collect();
        Ok(Explanation {
            logits,
            relevance,
            targets,
            layer_sums,
            outputs,
        })
    }

    /// Explain a batch `x` `[N, ...]` of a model whose only input is the explained one (else
    /// use [`Explainer::run`] with every input).
    pub fn explain(&self, x: ArrayD<f32>, targets: Option<&[i64]>) -> Result<Explanation> {
        if self.compiled.inputs.len() != 1 {
            let names: Vec<&str> = self
                .compiled
                .inputs
                .iter()
                .map(|(n, _)| n.as_str())
                .collect();
            return Err(bad_input!(
                "{}: the model takes {} inputs ({}); pass them all",
                self.origin,
                names.len(),
                names.join(", ")
            ));
        }
        if self.text().is_some() {
            return Err(bad_input!(
                "{}: the model reads token ids; explain texts",
                self.origin
            ));
        }
        self.run(vec![Value::F32(x)], targets)
    }

    /// The image preprocessing, or an error naming `what` when the model takes no images.
    fn image_pp(&self, what: &str) -> Result<&Preprocess> {
        self.preprocess().ok_or_else(|| {
            bad_input!(
                "{what}: the model input has shape {:?} per sample, not an image; pass a tensor",
                self.compiled.sample
            )
        })
    }

    /// Decode and preprocess image files, then explain them in one run.
    pub fn explain_images(
        &self,
        paths: &[&Path],
        targets: Option<&[i64]>,
    ) -> Result<ImageExplanation> {
        let mut pics = Vec::with_capacity(paths.len());
        for p in paths {
            let pp = self.image_pp(&p.display().to_string())?;
            pics.push(crate::image::load_image(p, pp)?);
        }
        self.explain_prepared(pics, targets)
    }

    /// Preprocess decoded pictures (named `origin` in messages), then explain them in one run.
    pub fn explain_pictures(
        &self,
        pictures: Vec<::image::DynamicImage>,
        origin: &str,
        targets: Option<&[i64]>,
    ) -> Result<ImageExplanation> {
        let pp = self.image_pp(origin)?;
        let pics = pictures
            .into_iter()
            .map(|img| crate::image::prepare(img, pp, origin))
            .collect::<Result<Vec<_>>>()?;
        self.explain_prepared(pics, targets)
    }

    fn explain_prepared(
        &self,
        pics: Vec<crate::image::Prepared>,
        targets: Option<&[i64]>,
    ) -> Result<ImageExplanation> {
        let refs: Vec<&ArrayD<f32>> = pics.iter().map(|p| &p.tensor).collect();
        let x = crate::image::stack(&refs);
        let shown = pics.into_iter().map(|p| p.shown).collect();
        Ok(ImageExplanation {
            explanation: self.explain(x, targets)?,
            shown,
        })
    }

    /// Tokenise `texts` (named by `names` in messages) and explain them in one run.
    pub fn explain_texts(
        &self,
        texts: &[&str],
        names: &[&str],
        targets: Option<&[i64]>,
    ) -> Result<Vec<TextExplanation>> {
        let spec = self.text().ok_or_else(|| {
            bad_input!(
                "{}: the model's inputs are not token ids; texts need a text model",
                self.origin
            )
        })?;
        let encoded = texts
            .iter()
            .zip(names)
            .map(|(t, n)| spec.encode(t, n))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&crate::text::Encoded> = encoded.iter().collect();
        let e = self.run(text::feeds(self, &refs)?, targets)?;
        Ok(encoded
            .into_iter()
            .enumerate()
            .map(|(k, enc)| TextExplanation::of(&e, k, enc, self.labels()))
            .collect())
    }
}

impl Explanation {
    /// Samples of several runs, stacked.
    fn concat(parts: Vec<Explanation>) -> Result<Explanation> {
        let stack = |xs: Vec<ArrayD<f32>>| -> Result<ArrayD<f32>> {
            let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
            ndarray::concatenate(Axis(0), &views).map_err(|e| Error::Runtime(e.to_string()))
        };
        let mut logits = Vec::new();
        let mut relevance = Vec::new();
        let mut targets = Vec::new();
        let mut layer_sums = Vec::new();
        let mut outputs: Vec<(String, Vec<ArrayD<f32>>)> = Vec::new();
        for p in parts {
            logits.push(p.logits.into_dyn());
            relevance.push(p.relevance);
            targets.extend(p.targets);
            layer_sums.extend(p.layer_sums);
            for (i, (name, v)) in p.outputs.into_iter().enumerate() {
                match outputs.get_mut(i) {
                    Some((_, vs)) => vs.push(v),
                    None => outputs.push((name, vec![v])),
                }
            }
        }
        Ok(Explanation {
            logits: stack(logits)?
                .into_dimensionality::<Ix2>()
                .map_err(|e| Error::Runtime(e.to_string()))?,
            relevance: stack(relevance)?,
            targets,
            layer_sums,
            outputs: outputs
                .into_iter()
                .map(|(n, vs)| Ok((n, stack(vs)?)))
                .collect::<Result<_>>()?,
        })
    }
}
