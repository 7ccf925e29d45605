//! ReduceMean / ReduceSum over non-batch axes: the z-rule, as for average pooling (each input
//! gets `x * sd(R, y) / n` of the mean it contributed to, `x * sd(R, y)` of a sum); gradients
//! spread `g / n` (or `g`).

use std::collections::HashMap;

use super::{first_only, input, norm_axis, rel0, unsupported_use, Cx, Rule};
use crate::analysis::{first_input_sign, Sign};
use crate::error::Result;
use crate::onnx::attr;
use crate::onnx::proto::NodeProto;

pub fn register(reg: &mut HashMap<&'static str, &'static dyn Rule>) {
    reg.insert("ReduceMean", &Reduce);
    reg.insert("ReduceSum", &Reduce);
}

struct Reduce;

impl Rule for Reduce {
    fn sign(&self, _: &NodeProto, ins: &[Sign]) -> Sign {
        first_input_sign(ins)
    }

    fn backward(
        &self,
        cx: &mut Cx,
        node: &NodeProto,
        rel: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let r = rel0(node, rel)?.to_string();
        let x = input(node, 0)?.to_string();
        let xd = cx.dims(node, &x)?;
        let rank = xd.len() as i64;
        let axes_input = node.input.get(1).filter(|s| !s.is_empty());
        let axes: Vec<i64> = match axes_input {
            Some(t) => cx
                .constant(t)
                .ok_or_else(|| unsupported_use(node, "its axes are computed at run time"))?
                .iter()
                .map(|&v| v as i64)
                .collect(),
            None => attr::ints(node, "axes")?.unwrap_or_default(),
        };
        let axes = if axes.is_empty() {
            let noop = attr::int(node, "noop_with_empty_axes")?.unwrap_or(0) != 0;
            if noop {
                return Ok(first_only(r, node.input.len()));
            }
            if !cx.e.single_sample() {
                return Err(unsupported_use(
                    node,
                    "it reduces every axis, the batch axis too",
                ));
            }
            (0..rank).collect()
        } else {
            axes
        };
        let axes: Vec<i64> = axes
            .iter()
            .map(|&a| norm_axis(node, a, xd.len()).map(|a| a as i64))
            .collect::<Result<_>>()?;
        if axes.iter().any(|&a| cx.is_batch_axis(a)) {
            return Err(unsupported_use(node, "it reduces the batch axis"));
        }
        let keep = attr::int(node, "keepdims")?.unwrap_or(1) != 0;
        // The output with its reduced axes kept (as 1), so it broadcasts against x.
        let kept: Vec<i64> = (0..rank)
            .map(|a| if axes.contains(&a) { 1 } else { xd[a as usize] })
            .collect();
        let n: i64 = axes.iter().map(|&a| xd[a as usize]).product();
        let mean = node.op_type() == "ReduceMean";
        let (x, y) = cx.magnitudes(node, 0)?;
        let out = if cx.method.is_gradient() {
            let g = if keep {
                r
            } else {
                cx.e.reshape(&r, &kept, "g.kept")?
            };
            let g = if mean {
                let k = cx.e.scalar(n as f32);
                cx.e.div(&g, &k, "g.mean")?
            } else {
                g
            };
            let ones_shape: Vec<i64> = xd.iter().map(|&d| d.max(1)).collect();
            let ones = cx.e.ones(&ones_shape, "ones")?;
            cx.e.mul(&g, &ones, "grad")?
        } else {
            let s = cx.z_div(&r, &y, "s")?;
            let s = if keep {
                s
            } else {
                cx.e.reshape(&s, &kept, "s.kept")?
            };
            let s = if mean {
                let k = cx.e.scalar(n as f32);
                cx.e.div(&s, &k, "s.mean")?
            } else {
                s
            };
            cx.e.mul(&x, &s, "in")?
        };
        Ok(first_only(out, node.input.len()))
    }
}
