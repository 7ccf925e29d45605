//! Types and shapes of every tensor, inferred by tract on the original model.

use std::collections::HashMap;
use std::fmt;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{Factoid, InferenceModelExt};

use crate::bad_input;
use crate::error::Result;
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
}

/// Facts by tensor name.
pub type Facts = HashMap<String, Fact>;

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

/// Run tract's type and shape inference on a (self-contained) model.
pub fn infer_facts(model: &ModelProto, origin: &str) -> Result<Facts> {
    let bytes = crate::onnx::encode(model);
    let onnx = tract_onnx::onnx();
    let proto = onnx
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| bad_input!("{origin}: tract cannot read the model: {e:#}"))?;
    let parsed = onnx
        .parse(&proto, None)
        .map_err(|e| bad_input!("{origin}: tract cannot load the model: {e:#}"))?;
    let mut m = parsed.model;
    // Analysis may stop early on ops tract does not know; what it found is still useful.
    let _ = m.analyse(false);
    let mut facts = collect(&m, &parsed.outlets_by_name);
    // Some ops (ConvTranspose) are not inferred with a symbolic batch: where shapes are
    // missing, analyse again with a batch of 1 and take those shapes, batch axis symbolic.
    if facts.values().any(|f| f.shape.is_none()) {
        if let Ok(parsed1) = onnx.parse(&proto, None) {
            let mut m1 = parsed1.model;
            if fix_batch(&mut m1) {
                let _ = m1.analyse(false);
                for (name, f1) in collect(&m1, &parsed1.outlets_by_name) {
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
            }
        }
    }
    Ok(facts)
}

/// Set every symbolic leading dimension of the model inputs to 1.
fn fix_batch(m: &mut InferenceModel) -> bool {
    let n = m.input_outlets().map(|o| o.len()).unwrap_or(0);
    for i in 0..n {
        let Ok(f) = m.input_fact(i) else {
            return false;
        };
        let mut f = f.clone();
        if let Some(dims) = f.shape.concretize() {
            let mut dims: Vec<TDim> = dims.to_vec();
            if let Some(d0) = dims.first_mut() {
                if d0.to_i64().is_err() {
                    *d0 = 1.into();
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
    let mut facts = Facts::new();
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
