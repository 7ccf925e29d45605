//! The channel sum: `y[n, 0, s] = sum over c of x[n, c, s]` for an NCHW tensor, the 1x1
//! convolution with a kernel of ones that the generalised shift emits for its per-position
//! sums (docs/RULES.md, "shift"). tract runs that convolution as an im2col copy plus a matrix
//! product with one row, on one thread; this adds channel planes into one, vectorised, with
//! position chunks spread over tract's threads. The channels are added in order, one
//! accumulator per position, as the matrix product's kernel does, so the two agree up to the
//! float32 rounding of its accumulation order.

use tract_core::internal::*;

/// Positions per chunk (one chunk's accumulators stay in the core's cache).
const CHUNK: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChannelSum {
    /// The input's shape, [N, C, spatial...].
    pub shape: Vec<usize>,
}

impl Op for ChannelSum {
    fn name(&self) -> StaticName {
        "RapChannelSum".into()
    }
    op_as_typed_op!();
}

impl TypedOp for ChannelSum {
    as_op!();

    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut out = self.shape.clone();
        out[1] = 1;
        Ok(tvec!(f32::fact(&*out)))
    }
}

impl EvalOp for ChannelSum {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(inputs.len() == 1 && inputs[0].shape() == &*self.shape);
        let x = inputs[0].try_as_plain_ram()?;
        let x = x.as_slice::<f32>()?;
        let (n, c) = (self.shape[0], self.shape[1]);
        let plane: usize = self.shape[2..].iter().product();
        let mut out_shape = self.shape.clone();
        out_shape[1] = 1;
        // SAFETY: every element is written below (each chunk starts from channel 0).
        let mut y = unsafe { Tensor::uninitialized::<f32>(&out_shape)? };
        {
            let ys = unsafe { y.as_slice_mut_unchecked::<f32>() };
            // Work items: (sample, first position) over chunks of the plane.
            let mut work: Vec<(usize, usize, &mut [f32])> = vec![];
            for (s, yp) in ys.chunks_mut(plane.max(1)).enumerate() {
                for (k, ch) in yp.chunks_mut(CHUNK).enumerate() {
                    work.push((s, k * CHUNK, ch));
                }
            }
            let run = |(s, at, ys): (usize, usize, &mut [f32])| {
                let base = s * c * plane + at;
                let len = ys.len();
                if c == 0 {
                    ys.fill(0.0);
                    return;
                }
                ys.copy_from_slice(&x[base..base + len]);
                for ch in 1..c {
                    let xs = &x[base + ch * plane..base + ch * plane + len];
                    add_into(ys, xs);
                }
            };
            let pool = super::pool_for(n * c * plane);
            super::for_each(pool.as_deref(), work, run);
        }
        Ok(tvec!(y.into_tvalue()))
    }
}

fn add_into(ys: &mut [f32], xs: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { add_into_avx2(ys, xs) };
    }
    add_into_any(ys, xs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_into_avx2(ys: &mut [f32], xs: &[f32]) {
    add_into_any(ys, xs)
}

#[inline(always)]
fn add_into_any(ys: &mut [f32], xs: &[f32]) {
    ys.iter_mut().zip(xs).for_each(|(y, &x)| *y += x);
}

/// The channel sum a node computes, if it is one: a float32 NCHW Conv, 1x1 kernel of ones,
/// stride and dilation 1, no padding, one group, one output channel, no bias.
pub fn matches(model: &TypedModel, node: &TypedNode) -> TractResult<Option<ChannelSum>> {
    use tract_core::ops::cnn::{Conv, PaddingSpec};
    use tract_core::ops::nn::DataFormat;
    let Some(conv) = node.op_as::<Conv>() else {
        return Ok(None);
    };
    let ps = &conv.pool_spec;
    let ones = |v: &Option<TVec<usize>>| v.as_ref().is_none_or(|v| v.iter().all(|&d| d == 1));
    let no_pad = match &ps.padding {
        PaddingSpec::Valid => true,
        PaddingSpec::Explicit(a, b) | PaddingSpec::ExplicitOnnxPool(a, b, _) => {
            a.iter().chain(b.iter()).all(|&p| p == 0)
        }
        _ => false,
    };
    if conv.q_params.is_some()
        || conv.group != 1
        || ps.data_format != DataFormat::NCHW
        || ps.output_channels != 1
        || !ps.kernel_shape.iter().all(|&k| k == 1)
        || !ones(&ps.strides)
        || !ones(&ps.dilations)
        || !no_pad
        || node.inputs.len() != 3
    {
        return Ok(None);
    }
    let x = model.outlet_fact(node.inputs[0])?;
    let Some(shape) = x.shape.as_concrete().map(|s| s.to_vec()) else {
        return Ok(None);
    };
    if x.datum_type != f32::datum_type() || shape.len() < 3 || shape[1] != ps.input_channels {
        return Ok(None);
    }
    let all = |outlet: OutletId, v: f32| -> TractResult<bool> {
        let f = model.outlet_fact(outlet)?;
        Ok(match &f.konst {
            Some(k) if k.datum_type() == f32::datum_type() => k
                .try_as_plain_ram()?
                .as_slice::<f32>()?
                .iter()
                .all(|&w| w == v),
            _ => false,
        })
    };
    let kernel = model.outlet_fact(node.inputs[1])?;
    if kernel.shape.volume() != ps.input_channels.to_dim() || !all(node.inputs[1], 1.0)? {
        return Ok(None);
    }
    if !all(node.inputs[2], 0.0)? {
        return Ok(None);
    }
    Ok(Some(ChannelSum { shape }))
}
