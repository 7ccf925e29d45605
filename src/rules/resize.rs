//! Resize / Upsample of the two spatial axes of `[N, C, H, W]` (nearest and linear, every
//! coordinate transformation of ONNX but tf_crop_and_resize): the op is linear, `Y = A_h X
//! A_w^T` per channel with interpolation matrices computed here from the constant sizes, so
//! the z-rule is `R_X = X * (A_h^T sd(R, Y) A_w)`, two MatMuls with constant matrices.

use std::collections::HashMap;

use super::{first_only, input, rel0, unsupported_use, Cx, Rule};
use crate::analysis::{first_input_sign, Sign};
use crate::error::Result;
use crate::onnx::attr;
use crate::onnx::proto::NodeProto;

pub fn register(reg: &mut HashMap<&'static str, &'static dyn Rule>) {
    reg.insert("Resize", &Resize);
    reg.insert("Upsample", &Resize);
}

struct Resize;

/// How output coordinates map to input coordinates along one axis.
struct Axis {
    input: usize,
    output: usize,
    scale: f64,
}

impl Axis {
    fn source(&self, out: usize, mode: &str) -> Option<f64> {
        let (i, o, s) = (self.input as f64, self.output as f64, self.scale);
        let x = out as f64;
        Some(match mode {
            "half_pixel" => (x + 0.5) / s - 0.5,
            "pytorch_half_pixel" => {
                if self.output > 1 {
                    (x + 0.5) / s - 0.5
                } else {
                    0.0
                }
            }
            "align_corners" => {
                if self.output > 1 {
                    x * (i - 1.0) / (o - 1.0)
                } else {
                    0.0
                }
            }
            "asymmetric" => x / s,
            _ => return None,
        })
    }
}

/// The `[output, input]` interpolation matrix of one axis (row-major).
fn matrix(ax: &Axis, mode: &str, coord: &str, nearest: &str) -> Option<Vec<f32>> {
    let mut m = vec![0f32; ax.output * ax.input];
    let last = ax.input as i64 - 1;
    for o in 0..ax.output {
        let x = ax.source(o, coord)?;
        let row = &mut m[o * ax.input..(o + 1) * ax.input];
        if mode == "nearest" {
            let k = match nearest {
                "floor" => x.floor(),
                "ceil" => x.ceil(),
                "round_prefer_ceil" => (x + 0.5).floor(),
                // round_prefer_floor (the default): halves go down.
                _ => {
                    if x.fract() == 0.5 {
                        x.floor()
                    } else {
                        x.round()
                    }
                }
            } as i64;
            row[k.clamp(0, last) as usize] = 1.0;
        } else {
            let x = x.clamp(0.0, last as f64);
            let x0 = x.floor() as i64;
            let f = (x - x0 as f64) as f32;
            row[x0.clamp(0, last) as usize] += 1.0 - f;
            row[(x0 + 1).clamp(0, last) as usize] += f;
        }
    }
    Some(m)
}

impl Rule for Resize {
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
        let y = node.output[0].clone();
        let xd = cx.sample_dims(node, &x)?;
        let yd = cx.sample_dims(node, &y)?;
        if xd.len() != 3 || yd.len() != 3 || xd[0] != yd[0] {
            return Err(unsupported_use(
                node,
                "only resizing the two spatial axes of [N, C, H, W] is supported",
            ));
        }
        let upsample = node.op_type() == "Upsample";
        let mode = attr::string(node, "mode")?.unwrap_or_else(|| "nearest".into());
        let coord = if upsample {
            "asymmetric".to_string()
        } else {
            attr::string(node, "coordinate_transformation_mode")?
                .unwrap_or_else(|| "half_pixel".into())
        };
        let nearest =
            attr::string(node, "nearest_mode")?.unwrap_or_else(|| "round_prefer_floor".into());
        if mode != "nearest" && mode != "linear" {
            return Err(unsupported_use(node, &format!("mode '{mode}'")));
        }
        // Scales as given (they decide the coordinates), else output / input.
        let scales_slot = if upsample { 1 } else { 2 };
        let given: Option<Vec<f64>> = node
            .input
            .get(scales_slot)
            .filter(|s| !s.is_empty())
            .and_then(|t| cx.constant(t))
            .filter(|a| a.len() == 4)
            .map(|a| a.iter().map(|&v| v as f64).collect());
        let axis = |k: usize| Axis {
            input: xd[k] as usize,
            output: yd[k] as usize,
            scale: given
                .as_ref()
                .map_or(yd[k] as f64 / xd[k] as f64, |g| g[k + 1]),
        };
        let (ah, aw) = (axis(1), axis(2));
        for a in [&ah, &aw] {
            cx.facts
                .budget
                .check(&[a.output as i64, a.input as i64], &|| {
                    format!("node '{}' (Resize): its interpolation matrix", node.name())
                })?;
        }
        let (mh, mw) = match (
            matrix(&ah, &mode, &coord, &nearest),
            matrix(&aw, &mode, &coord, &nearest),
        ) {
            (Some(a), Some(b)) => (a, b),
            _ => {
                return Err(unsupported_use(
                    node,
                    &format!("coordinate_transformation_mode '{coord}'"),
                ))
            }
        };
        // A_h^T: [H_in, H_out]; A_w: [W_out, W_in].
        let mut aht = vec![0f32; mh.len()];
        for o in 0..ah.output {
            for i in 0..ah.input {
                aht[i * ah.output + o] = mh[o * ah.input + i];
            }
        }
        let aht =
            cx.e.const_f32("a_h_t", &[ah.input as i64, ah.output as i64], &aht);
        let aw =
            cx.e.const_f32("a_w", &[aw.output as i64, aw.input as i64], &mw);
        let (x, y) = cx.magnitudes(node, 0)?;
        let s = if cx.method.is_gradient() {
            r
        } else {
            cx.e.sd(&r, &y, "s")?
        };
        let sw = cx.e.op("MatMul", "back.w", &[&s, &aw], vec![])?;
        let back = cx.e.op("MatMul", "back", &[&aht, &sw], vec![])?;
        let out = if cx.method.is_gradient() {
            back
        } else {
            cx.e.mul(&x, &back, "in")?
        };
        Ok(first_only(out, node.input.len()))
    }
}
