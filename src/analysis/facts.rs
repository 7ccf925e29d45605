//! Types and shapes of every tensor, inferred by tract on the original model.

use std::collections::HashMap;
use std::fmt;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{Factoid, InferenceModelExt};

use crate::bad_input;
use crate::error::Result;
use crate::guard::{in_tract, Budget};
use crate::onnx::proto::ModelProto;

/// One dimension: a number, or a symbol such as the batch size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Known(i64),
    Sym(String),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(v) => write!(f, "{v}"),
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

/// What is known about a tensor.
#[derive(Clone, Debug, Default)]
pub struct Fact {
    /// ONNX element type code (1 = float, 7 = int64, ...).
    pub dtype: Option<i32>,
    /// Shape, when its rank is known (dimensions may be symbolic).
    pub shape: Option<Vec<Dim>>,
    /// The value, when inference computed it (small shape-like tensors: exporters compute
    /// slice bounds and reshape targets from `Shape`; with static sizes they are constants).
    pub value: Option<ndarray::ArrayD<f32>>,
}

impl Fact {
    /// The dimensions after the batch axis, all known.
    pub fn sample_dims(&self) -> Option<Vec<i64>> {
        let s = self.shape.as_ref()?;
        s.iter()
            .skip(1)
            .map(|d| match d {
                Dim::Known(v) => Some(*v),
                Dim::Sym(_) => None,
            })
            .collect()
    }

    /// Whether the element type is a floating-point type.
    pub fn is_float(&self) -> bool {
        matches!(self.dtype, Some(1 | 10 | 11 | 16))
    }

    /// Whether the element type is an integer type (token ids, masks, shapes).
    pub fn is_integer(&self) -> bool {
        matches!(self.dtype, Some(2..=7 | 12 | 13))
    }
}

/// Facts by tensor name, and how the batch runs through the model.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    by_name: HashMap<String, Fact>,
    /// The model folds the batch axis into other axes somewhere (torch's
    /// MultiheadAttention reshapes `[T, N, E]` to `[T, N*heads, d]`; an `as_strided`
    /// flattens the whole tensor): no axis is "the batch" all the way through, so onnx-rap
    /// explains one sample per run. The shapes are then those of a batch of 1, every axis
    /// known, and a per-sample reduction covers every axis.
    pub single_sample: bool,
    /// The most elements a compile-time tensor built from this model's dimensions may hold.
    pub budget: Budget,
    /// Why tract's shape inference stopped early, if it did (shapes past that point are
    /// unknown).
    pub analysis_error: Option<String>,
}

impl Facts {
    /// `" (tract's shape inference stopped: ...)"` where it stopped early, else empty: the
    /// reason a shape is unknown, for error messages.
    pub fn why_unknown(&self) -> String {
        self.analysis_error
            .as_ref()
            .map(|e| format!(" (tract's shape inference stopped: {e})"))
            .unwrap_or_default()
    }
}

impl std::ops::Deref for Facts {
    type Target = HashMap<String, Fact>;
    fn deref(&self) -> &Self::Target {
        &self.by_name
    }
}

impl std::ops::DerefMut for Facts {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.by_name
    }
}

/// The per-sample dimensions of a model input, all known, or an error naming the model.
pub fn input_sample_dims(facts: &Facts, input: &str, origin: &str) -> Result<Vec<usize>> {
    facts
        .get(input)
        .and_then(|f| f.sample_dims())
        .map(|d| d.iter().map(|&v| v as usize).collect())
        .ok_or_else(|| {
            bad_input!(
                "{origin}: the shape of input '{input}' is not known past the batch axis; \
                 onnx-rap needs static shapes (fix the input size when exporting)"
            )
        })
}

fn onnx_dtype(dt: DatumType) -> Option<i32> {
    Some(match dt {
        DatumType::F32 => 1,
        DatumType::U8 => 2,
        DatumType::I8 => 3,
        DatumType::U16 => 4,
        DatumType::I16 => 5,
        DatumType::I32 => 6,
        DatumType::I64 => 7,
        DatumType::String => 8,
        DatumType::Bool => 9,
        DatumType::F16 => 10,
        DatumType::F64 => 11,
        DatumType::U32 => 12,
        DatumType::U64 => 13,
        DatumType::TDim => 7,
        _ => return None,
    })
}

/// Run tract's type and shape inference on a (self-contained) model. The model is checked
/// first ([`crate::guard::check_model`]) and tract runs under `catch_unwind`: a malformed
/// model is an input error, never a panic.
pub fn infer_facts(model: &ModelProto, origin: &str) -> Result<Facts> {
    let bytes = crate::onnx::encode(model);
    let budget = Budget::for_file(bytes.len());
    crate::guard::check_model(model, origin, budget)?;
    let mut facts = in_tract(origin, "shape inference", || tract_facts(&bytes, origin))??;
    facts.budget = budget;
    Ok(facts)
}

fn tract_facts(bytes: &[u8], origin: &str) -> Result<Facts> {
    let onnx = tract_onnx::onnx();
    let proto = onnx
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| bad_input!("{origin}: tract cannot read the model: {e:#}"))?;
    let parsed = onnx
        .parse(&proto, None)
        .map_err(|e| bad_input!("{origin}: tract cannot load the model: {e:#}"))?;
    let mut m = parsed.model;
    // Analysis may stop early on ops tract does not know; what it found is still useful,
    // and why it stopped explains the shapes it could not find.
    let stopped = m.analyse(false).err().map(|e| {
        let msg = format!("{e:#}");
        let line = msg.lines().next().unwrap_or("").to_string();
        line.chars().take(300).collect::<String>()
    });
    let mut facts = collect(&m, &parsed.outlets_by_name);
    facts.analysis_error = stopped.clone();
    let leading = leading_dims(&m);
    let batch_syms: Vec<String> = leading
        .iter()
        .flatten()
        .filter(|d| d.to_i64().is_err())
        .map(|d| d.to_string())
        .collect();
    // A model made for a batch of 1 is one sample per run whatever its reshapes do.
    facts.single_sample = !leading.is_empty()
        && leading
            .iter()
            .all(|d| d.as_ref().and_then(|d| d.to_i64().ok()) == Some(1));
    if facts.values().all(|f| clean_batch(f, &batch_syms)) {
        return Ok(facts);
    }
    // Some shapes are missing (tract does not infer ConvTranspose with a symbolic batch) or
    // the batch symbol turns up elsewhere than axis 0. Analyse with batches of 1 and 2: if
    // every tensor just doubles its axis 0, the batch is a clean leading axis and the batch-1
    // shapes fill the gaps (axis 0 symbolic); otherwise the model folds the batch into other
    // axes and is explained one sample at a time.
    // Without the exporter's intermediate annotations: dynamo writes a symbolic batch there.
    let mut bare = proto.clone();
    if let Some(g) = bare.graph.as_mut() {
        g.value_info.clear();
    }
    let with_batch = |n: i64| {
        let p = onnx.parse(&bare, None).ok()?;
        let mut mb = p.model;
        if !fix_batch(&mut mb, n) {
            return None;
        }
        let _ = mb.analyse(false);
        Some(collect(&mb, &p.outlets_by_name))
    };
    let (Some(one), Some(two)) = (with_batch(1), with_batch(2)) else {
        return Ok(facts);
    };
    let batch_leads = one.iter().all(|(name, f1)| {
        let f2 = two.get(name).and_then(|f| f.shape.as_ref());
        match (f1.shape.as_ref(), f2) {
            (Some(s1), Some(s2)) => s1 == s2 || batch_doubles(s1, s2),
            _ => true,
        }
    });
    if !batch_leads {
        let mut one = one;
        one.single_sample = true;
        one.analysis_error = stopped;
        return Ok(one);
    }
    for (name, f1) in one.by_name {
        let entry = facts.entry(name).or_default();
        if entry.shape.is_none() {
            entry.shape = f1.shape.map(|mut s| {
                if let Some(d0) = s.first_mut() {
                    *d0 = Dim::Sym("batch".into());
                }
                s
            });
            entry.dtype = entry.dtype.or(f1.dtype);
        }
    }
    Ok(facts)
}

/// The leading dimension of each model input, where its shape is known.
fn leading_dims(m: &InferenceModel) -> Vec<Option<TDim>> {
    let n = m.input_outlets().map(|o| o.len()).unwrap_or(0);
    (0..n)
        .map(|i| {
            let f = m.input_fact(i).ok()?;
            f.shape.concretize()?.first().cloned()
        })
        .collect()
}

/// A shape known, with every symbol (if any) a batch symbol at axis 0.
fn clean_batch(f: &Fact, batch_syms: &[String]) -> bool {
    let Some(s) = &f.shape else {
        return false;
    };
    s.iter().enumerate().all(|(i, d)| match d {
        Dim::Known(_) => true,
        Dim::Sym(name) => i == 0 && batch_syms.iter().any(|b| b == name),
    })
}

/// `s2` is `s1` with a batch of 2 instead of 1 on axis 0.
fn batch_doubles(s1: &[Dim], s2: &[Dim]) -> bool {
    s1.len() == s2.len()
        && s1.first() == Some(&Dim::Known(1))
        && s2.first() == Some(&Dim::Known(2))
        && s1[1..] == s2[1..]
}

/// Set every symbolic leading dimension of the model inputs to `n`.
fn fix_batch(m: &mut InferenceModel, n: i64) -> bool {
    let inputs = m.input_outlets().map(|o| o.len()).unwrap_or(0);
    for i in 0..inputs {
        let Ok(f) = m.input_fact(i) else {
            return false;
        };
        let mut f = f.clone();
        if let Some(dims) = f.shape.concretize() {
            let mut dims: Vec<TDim> = dims.to_vec();
            if let Some(d0) = dims.first_mut() {
                if d0.to_i64().is_err() {
                    *d0 = n.into();
                }
            }
            f = f.with_shape(dims);
        }
        if m.set_input_fact(i, f).is_err() {
            return false;
        }
    }
    true
}

fn collect(m: &InferenceModel, outlets: &HashMap<String, OutletId>) -> Facts {
    let mut facts = Facts::default();
    for (name, &outlet) in outlets {
        let Ok(f) = m.outlet_fact(outlet) else {
            continue;
        };
        let dtype = f.datum_type.concretize().and_then(onnx_dtype);
        let shape = f.shape.concretize().map(|dims| {
            dims.iter()
                .map(|d| match d.to_i64() {
                    Ok(v) => Dim::Known(v),
                    Err(_) => Dim::Sym(d.to_string()),
                })
                .collect()
        });
        let value = f
            .value
            .concretize()
            .filter(|t| t.len() <= 1024)
            .and_then(|t| t.cast_to::<f32>().ok().map(|c| c.into_owned()))
            .and_then(|t| t.into_plain_array::<f32>().ok());
        facts.insert(
            name.clone(),
            Fact {
                dtype,
                shape,
                value,
            },
        );
    }
    facts
}
