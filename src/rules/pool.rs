//! MaxPool, AveragePool, GlobalAveragePool: the plain z-rule through the pool's gradient
//! (docs/RULES.md, "The official rules"): `R_in = X * G^T sd(R, Y)`; gradients go through `G^T` alone.
//!
//! tract has no MaxUnpool, so the gradient of MaxPool is built from convolutions: a Conv with
//! one-hot kernels lays every window out on its own channel, `Equal` against the pooled value
//! marks the maxima, a 1x1 Conv with a strictly lower-triangular matrix keeps the first one per
//! window (the reference's tie rule), and a ConvTranspose with the same one-hot kernels adds
//! the windows back onto the input grid (overlapping windows add up).

use std::collections::HashMap;

use super::window::Window;
use super::{first_only, input, rel0, unsupported_use, Cx, Rule};
use crate::analysis::{first_input_sign, Sign};
use crate::error::Result;
use crate::onnx::attr::{self, make_ints};
use crate::onnx::proto::NodeProto;

pub fn register(reg: &mut HashMap<&'static str, &'static dyn Rule>) {
    reg.insert("MaxPool", &MaxPool);
    reg.insert("AveragePool", &AvgPool);
    reg.insert("GlobalAveragePool", &GlobalAvgPool);
}

struct MaxPool;
struct AvgPool;
struct GlobalAvgPool;

/// Shapes of a pool node: (channels, input spatial, output spatial).
fn dims(cx: &Cx, node: &NodeProto) -> Result<(i64, Vec<i64>, Vec<i64>)> {
    let x = input(node, 0)?;
    let y = node.output.first().map(String::as_str).unwrap_or("");
    let xd = cx.sample_dims(node, x)?;
    let yd = cx.sample_dims(node, y)?;
    if xd.len() < 2 || xd.len() != yd.len() {
        return Err(unsupported_use(
            node,
            "expected [batch, channels, spatial...] tensors",
        ));
    }
    Ok((xd[0], xd[1..].to_vec(), yd[1..].to_vec()))
}

fn window(cx: &Cx, node: &NodeProto) -> Result<(i64, Window)> {
    let (c, sp, osp) = dims(cx, node)?;
    let kernel = attr::ints(node, "kernel_shape")?
        .ok_or_else(|| unsupported_use(node, "it has no kernel_shape"))?;
    Ok((c, Window::of(node, kernel, sp, osp)?))
}

fn with_batch(rest: &[i64], second: i64) -> Vec<i64> {
    [vec![-1, second], rest.to_vec()].concat()
}

/// `X * G^T s`: add the per-window values `s` (`[N*C, K, out...]`) back onto the input grid,
/// then weight by the input (not for gradients: `G^T s`). `weight` holds the values of the
/// transpose's weight `[K, 1, kernel...]`.
///
/// Written with plain convolutions, not ConvTranspose: tract 0.23.9's ConvTranspose with one
/// output channel returns wrong, run-dependent values for some shapes (a batch of 32 to 40
/// planes of 4x4 and a 3x3 kernel: GoogLeNet's pools), and the planes of a pooled tensor are
/// exactly that case. Stride 1: one Conv with the flipped kernel. Strided: the polyphase
/// form ([`Window::polyphase`]), then the phases interleaved and the grid cut to the input.
/// With `x`, the result is multiplied by it (the z-rule); without, it is routed as it is.
fn unpool(
    cx: &mut Cx,
    x: Option<&str>,
    s: &str,
    weight: &[f32],
    k: usize,
    win: &Window,
    c: i64,
) -> Result<String> {
    let n = win.kernel.len();
    let back = match win.flipped_conv_attrs() {
        Some(attrs) => {
            // Stride 1: the weight with in/out swapped and every spatial axis flipped, which
            // is reversing the flat kernel index.
            let offsets = weight.len() / k;
            let mut flipped = vec![0f32; weight.len()];
            for ch in 0..k {
                for t in 0..offsets {
                    flipped[ch * offsets + (offsets - 1 - t)] = weight[ch * offsets + t];
                }
            }
            let dims: Vec<i64> = [vec![1, k as i64], win.kernel.clone()].concat();
            let w = cx.e.const_f32("unpool.kernel", &dims, &flipped);
            let mut a = attrs;
            a.push(make_ints("strides", &vec![1; n]));
            cx.e.op("Conv", "unpool", &[s, &w], a)?
        }
        None => {
            let (pw, dims, m) = win.polyphase(weight, k);
            let w = cx.e.const_f32("unpool.phase_kernel", &dims, &pw);
            let attrs = vec![
                make_ints("kernel_shape", &dims[2..]),
                make_ints("pads", &[m.clone(), m.clone()].concat()),
            ];
            let ph = cx.e.op("Conv", "unpool.phases", &[s, &w], attrs)?;
            // [B, s1*s2*.., A1, A2, ..] -> [B, s1, s2, .., A1, A2, ..] -> [B, A1, s1, A2, s2, ..]
            let a: Vec<i64> = (0..n).map(|i| win.output[i] + m[i]).collect();
            let split: Vec<i64> = [vec![-1], win.strides.clone(), a.clone()].concat();
            let sp = cx.e.reshape(&ph, &split, "unpool.split")?;
            let mut perm = vec![0i64];
            for i in 0..n as i64 {
                perm.extend([1 + n as i64 + i, 1 + i]);
            }
            let t = cx.e.op(
                "Transpose",
                "unpool.interleave",
                &[&sp],
                vec![make_ints("perm", &perm)],
            )?;
            let grid: Vec<i64> = (0..n).map(|i| a[i] * win.strides[i]).collect();
            let g =
                cx.e.reshape(&t, &[vec![-1, 1], grid.clone()].concat(), "unpool.grid")?;
            // The padded grid from u = 0: keep [begin, begin + input), zeros past its end.
            let keep: Vec<i64> = (0..n)
                .map(|i| win.input[i].min(grid[i] - win.begin[i]))
                .collect();
            let begin = [vec![0, 0], win.begin.clone()].concat();
            let len = [vec![-1, 1], keep.clone()].concat();
            let cut = super::layout::crop(cx, &g, &begin, &len, "unpool.cut")?;
            let short: Vec<i64> = (0..n).map(|i| win.input[i] - keep[i]).collect();
            if short.iter().any(|&v| v > 0) {
                let end = [vec![0, 0], short].concat();
                super::layout::zero_pad(cx, &cut, &vec![0; 2 + n], &end, "unpool.fill")?
            } else {
                cut
            }
        }
    };
    let back =
        cx.e.reshape(&back, &with_batch(&win.input, c), "unpool.shape")?;
    match x {
        Some(x) => cx.e.mul(x, &back, "in"),
        None => Ok(back),
    }
}

/// The z-rule's `sd(R, Y)`, or the gradient itself.
fn per_output(cx: &mut Cx, r: &str, y: &str) -> Result<String> {
    if cx.method.is_gradient() {
        Ok(r.to_string())
    } else {
        cx.e.sd(r, y, "s")
    }
}

impl Rule for MaxPool {
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
        if attr::int(node, "storage_order")?.unwrap_or(0) != 0 {
            return Err(unsupported_use(node, "storage_order = 1"));
        }
        let (c, win) = window(cx, node)?;
        let k: i64 = win.kernel.iter().product();
        cx.facts.budget.check(&[k, k], &|| {
            format!(
                "node '{}' (MaxPool): the window's one-hot kernel",
                node.name()
            )
        })?;
        let ks = k as usize;
        let kdims: Vec<i64> = [vec![k, 1], win.kernel.clone()].concat();
        let mut onehot_w = vec![0f32; ks * ks];
        for i in 0..ks {
            onehot_w[i * ks + i] = 1.0;
        }
        let onehot = cx.e.const_f32("onehot", &kdims, &onehot_w);
        let tdims: Vec<i64> = [vec![k, k], vec![1; win.kernel.len()]].concat();
        let mut tri = vec![0f32; ks * ks];
        for i in 0..ks {
            for j in 0..i {
                tri[i * ks + j] = 1.0;
            }
        }
        let tri = cx.e.const_f32("earlier", &tdims, &tri);

        let xr = cx.e.reshape(&x, &with_batch(&win.input, 1), "x.planes")?;
        let patches =
            cx.e.op("Conv", "windows", &[&xr, &onehot], win.conv_attrs())?;
        let yr = cx.e.reshape(&y, &with_batch(&win.output, 1), "y.planes")?;
        let eq = if cx.e.opset() >= 11 {
            let eq = cx.e.op("Equal", "is_max.eq", &[&patches, &yr], vec![])?;
            cx.e.op("Cast", "is_max", &[&eq], vec![attr::make_int("to", 1)])?
        } else {
            // Equal takes no floats before opset 11: [patch - y == 0] instead.
            let d = cx.e.sub(&patches, &yr, "is_max.diff")?;
            cx.e.is_zero(&d, "is_max")?
        };
        let padded = win
            .begin
            .iter()
            .chain(&win.end)
            .chain(&win.extra_end())
            .any(|&p| p != 0);
        let eq = if padded && cx.method.is_robust() {
            // The windows' zero padding can equal a maximum of 0: only real positions count
            // (the relevance a padded position took would be cut off with the padding).
            let grid =
                cx.e.ones(&[vec![1, 1], win.input.clone()].concat(), "grid")?;
            let real =
                cx.e.op("Conv", "real", &[&grid, &onehot], win.conv_attrs())?;
            cx.e.mul(&eq, &real, "is_max.real")?
        } else {
            eq
        };
        let ones: Vec<i64> = vec![1; win.kernel.len()];
        let before = cx.e.op(
            "Conv",
            "max_before",
            &[&eq, &tri],
            vec![make_ints("kernel_shape", &ones)],
        )?;
        let none_before = cx.e.is_zero(&before, "first")?;
        let first = cx.e.mul(&eq, &none_before, "argmax")?;
        // The z-rule gives the maximum `x / y = 1` of its window's relevance; the generalised
        // RAP routes it there as it is, so a window whose maximum is 0 keeps its relevance too.
        let route = cx.method.is_gradient() || cx.method.is_robust();
        let s = if route {
            r.clone()
        } else {
            per_output(cx, &r, &y)?
        };
        let sr = cx.e.reshape(&s, &with_batch(&win.output, 1), "s.planes")?;
        // Copied to the k window positions (Expand) before the product: tract multiplies a
        // tensor broadcast over that axis slowly (VGG-16, `profile_explain`: 25 ms of a 1.06 s
        // explanation; 3 ms for the product and 1 ms for the copy). The comparison with `y`
        // above gained nothing from the same copy (its Eq takes 6-7 ms either way).
        let to_windows = cx.e.const_i64(
            "s.spread.shape",
            &[2 + win.kernel.len() as i64],
            &[vec![1, k], vec![1; win.kernel.len()]].concat(),
        );
        let sr = cx.e.op("Expand", "s.spread", &[&sr, &to_windows], vec![])?;
        let g = cx.e.mul(&first, &sr, "s.at_argmax")?;
        let out = unpool(
            cx,
            (!route).then_some(x.as_str()),
            &g,
            &onehot_w,
            ks,
            &win,
            c,
        )?;
        Ok(first_only(out, node.input.len()))
    }
}

impl Rule for AvgPool {
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
        let (x, y) = cx.magnitudes(node, 0)?;
        let (c, win) = window(cx, node)?;
        let n = win.kernel.len();
        let include_pad = attr::int(node, "count_include_pad")?.unwrap_or(0) != 0;
        let extra = win.extra_end();
        let padded = win
            .begin
            .iter()
            .chain(&win.end)
            .chain(&extra)
            .any(|&p| p != 0);
        let kdims: Vec<i64> = [vec![1, 1], win.kernel.clone()].concat();
        let k: i64 = win.kernel.iter().product();
        let ones_w = vec![1.0; k as usize];
        // The divisor of every window: the kernel size, or the number of elements it covers.
        let count = if !padded {
            cx.e.scalar(k as f32)
        } else {
            let (grid, pads): (Vec<i64>, Vec<i64>) = if include_pad {
                let g = (0..n)
                    .map(|i| win.input[i] + win.begin[i] + win.end[i])
                    .collect();
                (g, [vec![0; n], extra.clone()].concat())
            } else {
                let e: Vec<i64> = (0..n).map(|i| win.end[i] + extra[i]).collect();
                (win.input.clone(), [win.begin.clone(), e].concat())
            };
            let ones = cx.e.ones(&[vec![1, 1], grid].concat(), "grid")?;
            let ones_k = cx.e.const_f32("kernel", &kdims, &ones_w);
            let a = vec![
                make_ints("kernel_shape", &win.kernel),
                make_ints("strides", &win.strides),
                make_ints("pads", &pads),
            ];
            cx.e.op("Conv", "count", &[&ones, &ones_k], a)?
        };
        let s = per_output(cx, &r, &y)?;
        let sr = cx.e.reshape(&s, &with_batch(&win.output, 1), "s.planes")?;
        let q = cx.e.div(&sr, &count, "s.mean")?;
        let times_x = (!cx.method.is_gradient()).then_some(x.as_str());
        let out = unpool(cx, times_x, &q, &ones_w, 1, &win, c)?;
        Ok(first_only(out, node.input.len()))
    }
}

impl Rule for GlobalAvgPool {
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
        let (x, y) = cx.magnitudes(node, 0)?;
        let (_, sp, _) = dims(cx, node)?;
        let area: i64 = sp.iter().product();
        let s = per_output(cx, &r, &y)?;
        let a = cx.e.scalar(area as f32);
        let q = cx.e.div(&s, &a, "s.mean")?;
        let out = if cx.method.is_gradient() {
            // Every input of the window gets the mean's gradient (a constant-shape
            // broadcast, so no shape is computed at run time).
            let xd = cx.sample_dims(node, &x)?;
            let ones = cx.e.ones(&[vec![1], xd].concat(), "grad.ones")?;
            cx.e.mul(&q, &ones, "grad")?
        } else {
            cx.e.mul(&x, &q, "in")?
        };
        Ok(first_only(out, node.input.len()))
    }
}
