//! Running an ONNX model with tract: load from bytes, fix the input shapes, optimise, run.

use ndarray::ArrayD;
use prost::Message;
use tract_onnx::prelude::*;

use crate::error::Result;
use crate::guard::in_tract;
use crate::runtime_err;

/// One input value.
#[derive(Clone)]
pub enum Value {
    F32(ArrayD<f32>),
    I64(ArrayD<i64>),
}

impl Value {
    /// The value as a tract tensor.
    pub fn tensor(&self) -> Tensor {
        match self {
            Value::F32(a) => a.clone().into_tensor(),
            Value::I64(a) => a.clone().into_tensor(),
        }
    }
    /// Its shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Value::F32(a) => a.shape(),
            Value::I64(a) => a.shape(),
        }
    }
    /// Sample `k` along axis 0, keeping the axis (a batch of one).
    pub fn sample(&self, k: usize) -> Value {
        let one = ndarray::Slice::from(k..k + 1);
        match self {
            Value::F32(a) => Value::F32(a.slice_axis(ndarray::Axis(0), one).to_owned()),
            Value::I64(a) => Value::I64(a.slice_axis(ndarray::Axis(0), one).to_owned()),
        }
    }
    /// Its type and shape, as tract's inference takes them.
    pub fn fact(&self) -> InferenceFact {
        match self {
            Value::F32(a) => InferenceFact::dt_shape(f32::datum_type(), a.shape()),
            Value::I64(a) => InferenceFact::dt_shape(i64::datum_type(), a.shape()),
        }
    }
}

/// Threads tract's convolutions and matrix products may use within one run (process-wide).
pub fn set_intra_op_threads(threads: usize) {
    let executor = if threads > 1 {
        tract_linalg::multithread::Executor::multithread(threads)
    } else {
        tract_linalg::multithread::Executor::SingleThread
    };
    tract_linalg::multithread::set_default_executor(executor);
}

/// Split `threads` between `runs` independent runs and tract: one worker per run up to
/// `threads` (images in parallel first), the threads left over when there are fewer runs go
/// inside tract. Returns the number of workers.
pub fn share_threads(threads: usize, runs: usize) -> usize {
    let threads = threads.max(1);
    let workers = threads.min(runs).max(1);
    set_intra_op_threads(threads / workers);
    workers
}

/// How much of tract's optimiser a plan goes through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Optimise {
    /// Declutter then codegen: tract's `into_optimized`, what a tract user gets (the reference
    /// every forward pass is timed with).
    #[default]
    Full,
    /// Codegen only, for compiled explanation graphs. tract's declutter passes apply thousands
    /// of patches to a 3000-node relevance graph, each rescanning the graph: on
    /// EfficientNet-Lite0 they took 0.75 s of a 1.9 s `explain` of one photo, and the plan
    /// they gave ran no faster (ResNet-50 0.39-0.40 s either way, VGG-16 1.14 s against 1.03-1.06 s
    /// without them, EfficientNet-Lite0 0.28 s against 0.21 s). Codegen still folds constants
    /// and declutters op by op. The element-wise chains of the rules then run as onnx-rap's own
    /// fused kernels ([`crate::fuse`]) unless fusion is switched off (`--no-fuse`,
    /// `ONNX_RAP_FUSE=0`).
    Codegen,
    /// [`Optimise::Codegen`] without the fused kernels, whatever the process-wide switch says
    /// (the reference fused plans are checked against).
    Unfused,
}

/// A model optimised by tract for fixed input shapes, ready to run many times (from any number
/// of threads at once: each run has its own state).
pub struct Plan {
    plan: std::sync::Arc<TypedSimplePlan>,
    outputs: Vec<String>,
    fusion: Option<crate::fuse::Stats>,
}

impl Plan {
    /// Load `bytes` (an encoded model) for inputs shaped like `inputs`, in graph input order,
    /// with tract's full optimiser; constant subgraphs are folded first (see [`crate::fold`]).
    pub fn new(bytes: &[u8], inputs: &[Value], output_names: Vec<String>) -> Result<Plan> {
        Plan::with(bytes, inputs, output_names, Optimise::Full)
    }

    /// [`Plan::new`] with a choice of optimiser passes.
    pub fn with(
        bytes: &[u8],
        inputs: &[Value],
        output_names: Vec<String>,
        optimise: Optimise,
    ) -> Result<Plan> {
        let proto = crate::onnx::decode(bytes, "model")?;
        let mut folded = crate::fold::fold_constants(proto)?;
        // Shape annotations of intermediate tensors are hints that may name the batch axis
        // symbolically; tract would refuse to unify them with the fixed input shapes.
        if let Some(g) = folded.graph.as_mut() {
            g.value_info.clear();
        }
        let budget = crate::guard::Budget::for_file(folded.encoded_len().max(bytes.len()));
        crate::guard::check_model(&folded, "the model", budget)?;
        let folded_bytes = crate::onnx::encode(&folded);
        drop(folded); // each copy of the weights goes as soon as the next one exists
        let (plan, fusion) = in_tract("the model", "planning", move || -> Result<_> {
            // tract's own protobuf types decoded from our buffer without a copy (its
            // model_for_read copies the bytes first), then its model; each dropped when done.
            let pb = tract_onnx::pb::ModelProto::decode(prost::bytes::Bytes::from(folded_bytes))
                .map_err(|e| runtime_err!("tract cannot read the model: {e:#}"))?;
            let mut model = tract_onnx::onnx()
                .model_for_proto_model(&pb)
                .map_err(|e| runtime_err!("tract cannot load the model: {e:#}"))?;
            drop(pb);
            for (i, v) in inputs.iter().enumerate() {
                model = model
                    .with_input_fact(i, v.fact())
                    .map_err(|e| runtime_err!("tract rejects input {i}: {e:#}"))?;
            }
            let mut fusion = None;
            let typed = match optimise {
                Optimise::Full => model.into_optimized(),
                Optimise::Codegen | Optimise::Unfused => model.into_typed().and_then(|mut m| {
                    if optimise == Optimise::Codegen && crate::fuse::enabled() {
                        fusion = Some(crate::fuse::fuse(&mut m)?);
                    }
                    m.optimize()?;
                    Ok(m)
                }),
            };
            typed
                .and_then(|m| m.into_runnable())
                .map(|p| (p, fusion))
                .map_err(|e| runtime_err!("tract cannot optimise the model: {e:#}"))
        })??;
        Ok(Plan {
            plan,
            outputs: output_names,
            fusion,
        })
    }

    /// What plan-time fusion did ([`crate::fuse`]); None when the plan was made without it.
    pub fn fusion(&self) -> Option<crate::fuse::Stats> {
        self.fusion
    }

    /// Run; returns every output converted to f32, with its name.
    pub fn run(&self, inputs: &[Value]) -> Result<Vec<(String, ArrayD<f32>)>> {
        let tv: TVec<TValue> = inputs.iter().map(|v| v.tensor().into()).collect();
        let outs = in_tract("the model", "run", || self.plan.run(tv))?
            .map_err(|e| runtime_err!("tract failed to run the model: {e:#}"))?;
        let mut res = Vec::new();
        for (i, o) in outs.into_iter().enumerate() {
            let t = o
                .into_tensor()
                .cast_to::<f32>()
                .map_err(|e| runtime_err!("output {i}: {e:#}"))?
                .into_owned();
            let a = t
                .into_plain_array::<f32>()
                .map_err(|e| runtime_err!("output {i}: {e:#}"))?;
            let name = self
                .outputs
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("output{i}"));
            res.push((name, a));
        }
        Ok(res)
    }
}

/// Load and run a model once.
pub fn run_once(
    bytes: &[u8],
    inputs: &[Value],
    output_names: Vec<String>,
) -> Result<Vec<(String, ArrayD<f32>)>> {
    Plan::new(bytes, inputs, output_names)?.run(inputs)
}
