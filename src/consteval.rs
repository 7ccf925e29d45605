//! Evaluating constant-only nodes in Rust, for the few data-movement and sign ops the rules use
//! to derive weight forms (W+, |W-|, stacked, transposed and flipped kernels).
//!
//! [`crate::fold`] hands every constant-only node here first; a node this module declines (an
//! op it does not know, an attribute it does not read, shapes that do not fit) is left to
//! tract, so declining is always safe. What it computes is exact (copies, sign flips and
//! `max(x, 0)`): the values are bit-identical to tract's. tract's ONNX front end spends about
//! 0.5 s typing a 360-node constant subgraph of EfficientNet-Lite0 before it runs it; this
//! takes milliseconds.

use ndarray::{ArrayD, IxDyn};

use crate::onnx::attr;
use crate::onnx::proto::NodeProto;
use crate::onnx::tensor::{to_f32, to_i64};

/// A constant value.
#[derive(Clone, Debug)]
pub enum Const {
    F32(ArrayD<f32>),
    I64(ArrayD<i64>),
}

impl Const {
    fn shape(&self) -> &[usize] {
        match self {
            Const::F32(a) => a.shape(),
            Const::I64(a) => a.shape(),
        }
    }

    fn as_f32(&self) -> Option<&ArrayD<f32>> {
        match self {
            Const::F32(a) => Some(a),
            Const::I64(_) => None,
        }
    }

    fn as_i64(&self) -> Option<&ArrayD<i64>> {
        match self {
            Const::I64(a) => Some(a),
            Const::F32(_) => None,
        }
    }

    /// Apply the same shape-only operation to either element type.
    fn map_layout(
        &self,
        f32s: impl Fn(&ArrayD<f32>) -> Option<ArrayD<f32>>,
        i64s: impl Fn(&ArrayD<i64>) -> Option<ArrayD<i64>>,
    ) -> Option<Const> {
        match self {
            Const::F32(a) => f32s(a).map(Const::F32),
            Const::I64(a) => i64s(a).map(Const::I64),
        }
    }
}

fn ints_of(c: &Const) -> Option<Vec<i64>> {
    c.as_i64().map(|a| a.iter().copied().collect())
}

/// `axis` (possibly negative) as an index into `rank` axes.
fn axis_index(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (0..rank as i64).contains(&a).then_some(a as usize)
}

/// `a`'s elements in row-major order (every array built here is in standard layout already).
fn flat<T: Copy>(a: &ArrayD<T>) -> std::borrow::Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().copied().collect()),
    }
}

/// Transpose by index arithmetic over the input's row-major data. Axes of length 1 are dropped
/// and axes that stay neighbours are merged first, so a kernel transpose `[1, 0, 2, 3]`
/// becomes a 2-D transpose of `[Cout, Cin * kh * kw]` blocks (ndarray's iterators over
/// dynamic-rank arrays cost ~100 ns an element, which made folding take 0.5 s).
fn transpose<T: Copy>(a: &ArrayD<T>, perm: &[usize]) -> Option<ArrayD<T>> {
    let mut sorted = perm.to_vec();
    sorted.sort_unstable();
    if sorted != (0..a.ndim()).collect::<Vec<_>>() {
        return None;
    }
    let shape = a.shape();
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    // Output axes (as input axes) without the length-1 ones, runs of consecutive input axes
    // merged into one (input axis start, length).
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for &p in perm.iter().filter(|&&p| shape[p] != 1) {
        match groups.last_mut() {
            Some((start, len)) if *start + *len == p => *len += 1,
            _ => groups.push((p, 1)),
        }
    }
    // Merged sizes and row-major input strides of each group.
    let strides_in = {
        let mut st = vec![1usize; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            st[i] = st[i + 1] * shape[i + 1];
        }
        st
    };
    let dims: Vec<(usize, usize)> = groups
        .iter()
        .map(|&(start, len)| {
            let size: usize = shape[start..start + len].iter().product();
            (size, strides_in[start + len - 1])
        })
        .collect();
    let data = flat(a);
    let total: usize = shape.iter().product();
    let mut out = Vec::with_capacity(total);
    if total > 0 {
        // The last group is copied as a run when it is contiguous in the input.
        let (inner, inner_stride) = dims.last().copied().unwrap_or((1, 1));
        let outer = &dims[..dims.len().saturating_sub(1)];
        let mut idx = vec![0usize; outer.len()];
        loop {
            let base: usize = idx.iter().zip(outer).map(|(&i, &(_, st))| i * st).sum();
            if inner_stride == 1 {
                out.extend_from_slice(&data[base..base + inner]);
            } else {
                out.extend((0..inner).map(|k| data[base + k * inner_stride]));
            }
            // Odometer over the outer groups.
            let mut k = outer.len();
            loop {
                if k == 0 {
                    return ArrayD::from_shape_vec(IxDyn(&out_shape), out).ok();
                }
                k -= 1;
                idx[k] += 1;
                if idx[k] < outer[k].0 {
                    break;
                }
                idx[k] = 0;
            }
        }
    }
    ArrayD::from_shape_vec(IxDyn(&out_shape), out).ok()
}

/// ONNX Reshape's target shape: 0 copies the input's axis (allowzero = 0), -1 is inferred.
fn reshape_dims(input: &[usize], spec: &[i64]) -> Option<Vec<usize>> {
    let total: usize = input.iter().product();
    let mut dims = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            0 => dims.push(*input.get(i)?),
            -1 if infer.is_none() => {
                infer = Some(i);
                dims.push(1);
            }
            d if d > 0 => dims.push(d as usize),
            _ => return None,
        }
    }
    let known: usize = dims.iter().product();
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return None;
        }
        dims[i] = total / known;
    }
    (dims.iter().product::<usize>() == total).then_some(dims)
}

fn reshape<T: Copy>(a: &ArrayD<T>, dims: &[usize]) -> Option<ArrayD<T>> {
    ArrayD::from_shape_vec(IxDyn(dims), flat(a).into_owned()).ok()
}

/// ONNX Gather: `a`'s slices along `axis` at `idx` (negative counts from the end).
fn gather<T: Copy>(a: &ArrayD<T>, axis: usize, idx: &ArrayD<i64>) -> Option<ArrayD<T>> {
    let shape = a.shape();
    let n = shape[axis];
    let picks: Vec<usize> = idx
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + n as i64 } else { i };
            (0..n as i64).contains(&j).then_some(j as usize)
        })
        .collect::<Option<_>>()?;
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let data = flat(a);
    let mut out = Vec::with_capacity(outer * picks.len() * inner);
    for o in 0..outer {
        for &p in &picks {
            let at = (o * n + p) * inner;
            out.extend_from_slice(&data[at..at + inner]);
        }
    }
    let mut dims: Vec<usize> = shape[..axis].to_vec();
    dims.extend_from_slice(idx.shape());
    dims.extend_from_slice(&shape[axis + 1..]);
    ArrayD::from_shape_vec(IxDyn(&dims), out).ok()
}

/// ONNX Concat of same-rank arrays along `axis`.
fn concat<T: Copy>(parts: &[&ArrayD<T>], axis: usize) -> Option<ArrayD<T>> {
    let first = parts.first()?.shape();
    let same_rest = parts.iter().all(|p| {
        p.ndim() == first.len() && (0..first.len()).all(|i| i == axis || p.shape()[i] == first[i])
    });
    if !same_rest {
        return None;
    }
    let outer: usize = first[..axis].iter().product();
    let datas: Vec<_> = parts.iter().map(|p| flat(p)).collect();
    let blocks: Vec<usize> = parts
        .iter()
        .map(|p| p.shape()[axis..].iter().product())
        .collect();
    let mut out = Vec::with_capacity(blocks.iter().sum::<usize>() * outer);
    for o in 0..outer {
        for (d, &b) in datas.iter().zip(&blocks) {
            out.extend_from_slice(&d[o * b..(o + 1) * b]);
        }
    }
    let mut dims = first.to_vec();
    dims[axis] = parts.iter().map(|p| p.shape()[axis]).sum();
    ArrayD::from_shape_vec(IxDyn(&dims), out).ok()
}

/// The outputs of `node` from its constant inputs, or None where this module leaves the node
/// to tract. `inputs` has one entry per input of the node (None for an omitted optional one).
pub fn eval(node: &NodeProto, inputs: &[Option<&Const>]) -> Option<Vec<Const>> {
    let first = || inputs.first().copied().flatten();
    let out = match node.op_type() {
        "Identity" => first()?.clone(),
        "Relu" => match first()? {
            Const::F32(a) => Const::F32(a.mapv(|v| v.max(0.0))),
            Const::I64(_) => return None,
        },
        "Neg" => match first()? {
            Const::F32(a) => Const::F32(a.mapv(|v| -v)),
            Const::I64(a) => Const::I64(a.mapv(|v| v.wrapping_neg())),
        },
        "Abs" => match first()? {
            Const::F32(a) => Const::F32(a.mapv(f32::abs)),
            Const::I64(a) => Const::I64(a.mapv(i64::wrapping_abs)),
        },
        "Transpose" => {
            let x = first()?;
            let perm: Vec<usize> = match attr::ints(node, "perm").ok()? {
                Some(p) => p
                    .iter()
                    .map(|&v| usize::try_from(v).ok())
                    .collect::<Option<_>>()?,
                None => (0..x.shape().len()).rev().collect(),
            };
            x.map_layout(|a| transpose(a, &perm), |a| transpose(a, &perm))?
        }
        "Reshape" => {
            if attr::int(node, "allowzero").ok()?.unwrap_or(0) != 0 {
                return None;
            }
            let x = first()?;
            let spec = ints_of(inputs.get(1).copied().flatten()?)?;
            let dims = reshape_dims(x.shape(), &spec)?;
            x.map_layout(|a| reshape(a, &dims), |a| reshape(a, &dims))?
        }
        "Gather" => {
            let x = first()?;
            let idx = inputs.get(1).copied().flatten()?.as_i64()?;
            let axis = axis_index(attr::int(node, "axis").ok()?.unwrap_or(0), x.shape().len())?;
            x.map_layout(|a| gather(a, axis, idx), |a| gather(a, axis, idx))?
        }
        "Concat" => {
            let parts: Vec<&Const> = inputs.iter().copied().collect::<Option<_>>()?;
            let rank = parts.first()?.shape().len();
            let axis = axis_index(attr::int(node, "axis").ok()??, rank)?;
            // One element type for every part, or tract decides.
            let f32s: Option<Vec<&ArrayD<f32>>> = parts.iter().map(|p| p.as_f32()).collect();
            let i64s: Option<Vec<&ArrayD<i64>>> = parts.iter().map(|p| p.as_i64()).collect();
            match (f32s, i64s) {
                (Some(a), _) => Const::F32(concat(&a, axis)?),
                (_, Some(a)) => Const::I64(concat(&a, axis)?),
                _ => return None,
            }
        }
        "ConstantOfShape" => {
            let dims: Vec<usize> = ints_of(first()?)?
                .iter()
                .map(|&d| usize::try_from(d).ok())
                .collect::<Option<_>>()?;
            match attr::tensor(node, "value").ok()? {
                None => Const::F32(ArrayD::zeros(IxDyn(&dims))),
                Some(t) => match t.data_type() {
                    1 => Const::F32(ArrayD::from_elem(
                        IxDyn(&dims),
                        *to_f32(t).ok()?.iter().next()?,
                    )),
                    7 => Const::I64(ArrayD::from_elem(
                        IxDyn(&dims),
                        *to_i64(t).ok()?.iter().next()?,
                    )),
                    _ => return None,
                },
            }
        }
        _ => return None,
    };
    (node.output.len() == 1).then(|| vec![out])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::attr::make_int;
    use ndarray::array;

    fn node(op: &str) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            output: vec!["y".into()],
            ..Default::default()
        }
    }

    #[test]
    fn gather_flips_an_axis() {
        let mut n = node("Gather");
        n.attribute.push(make_int("axis", -1));
        let x = Const::F32(array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn());
        let idx = Const::I64(array![2i64, 1, 0].into_dyn());
        let Some(out) = eval(&n, &[Some(&x), Some(&idx)]) else {
            panic!("Gather declined")
        };
        let Const::F32(y) = &out[0] else { panic!() };
        assert_eq!(y, &array![[3.0f32, 2.0, 1.0], [6.0, 5.0, 4.0]].into_dyn());
    }

    #[test]
    fn gather_with_scalar_index_drops_the_axis() {
        let n = node("Gather");
        let x = Const::F32(array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn());
        let idx = Const::I64(ArrayD::from_elem(IxDyn(&[]), -1i64));
        let out = eval(&n, &[Some(&x), Some(&idx)]).expect("Gather");
        let Const::F32(y) = &out[0] else { panic!() };
        assert_eq!(y, &array![3.0f32, 4.0].into_dyn());
    }

    #[test]
    fn reshape_copies_zero_and_infers_minus_one() {
        assert_eq!(reshape_dims(&[2, 3, 4], &[0, -1]), Some(vec![2, 12]));
        assert_eq!(reshape_dims(&[2, 3, 4], &[5, -1]), None);
        assert_eq!(reshape_dims(&[2, 3, 4], &[-1, -1]), None);
    }

    #[test]
    fn transpose_follows_perm_and_rejects_a_bad_one() {
        let mut n = node("Transpose");
        n.attribute.push(attr::make_ints("perm", &[1, 0]));
        let x = Const::F32(array![[1.0f32, 2.0, 3.0]].into_dyn());
        let out = eval(&n, &[Some(&x)]).expect("Transpose");
        let Const::F32(y) = &out[0] else { panic!() };
        assert_eq!(y, &array![[1.0f32], [2.0], [3.0]].into_dyn());
        let mut bad = node("Transpose");
        bad.attribute.push(attr::make_ints("perm", &[0, 0]));
        assert!(eval(&bad, &[Some(&x)]).is_none());
    }

    #[test]
    fn transpose_matches_ndarray_on_every_perm_of_a_rank_4_array() {
        let shape = [2usize, 1, 3, 4];
        let x = ArrayD::from_shape_vec(IxDyn(&shape), (0..24).map(|v| v as f32).collect())
            .expect("shape");
        let perms = [
            [0, 1, 2, 3],
            [1, 0, 2, 3],
            [3, 2, 1, 0],
            [0, 2, 3, 1],
            [2, 0, 3, 1],
        ];
        for p in perms {
            let want = x
                .view()
                .permuted_axes(IxDyn(&p))
                .as_standard_layout()
                .to_owned();
            let got = transpose(&x, &p).expect("perm");
            assert_eq!(got, want, "perm {p:?}");
        }
    }

    #[test]
    fn concat_interleaves_blocks_along_an_inner_axis() {
        let a = array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn();
        let b = array![[5.0f32], [6.0]].into_dyn();
        let got = concat(&[&a, &b], 1).expect("concat");
        assert_eq!(got, array![[1.0f32, 2.0, 5.0], [3.0, 4.0, 6.0]].into_dyn());
        assert!(concat(&[&a, &array![[1.0f32, 2.0, 3.0]].into_dyn()], 0).is_none());
    }

    #[test]
    fn unknown_ops_and_mixed_concat_are_left_to_tract() {
        let x = Const::F32(array![1.0f32].into_dyn());
        let i = Const::I64(array![1i64].into_dyn());
        assert!(eval(&node("Conv"), &[Some(&x)]).is_none());
        let mut c = node("Concat");
        c.attribute.push(make_int("axis", 0));
        assert!(eval(&c, &[Some(&x), Some(&i)]).is_none());
    }
}
