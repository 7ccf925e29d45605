//! Hostile files: what onnx-rap hands to tract is checked first, and tract itself runs under
//! `catch_unwind`, so no model file makes onnx-rap panic or ask for unbounded memory.
//!
//! - [`in_tract`] runs a closure that calls into tract; a panic inside it (tract asserts
//!   or unwraps on some malformed graphs) becomes an [`Error::Input`] naming the file. The
//!   panic message is kept out of stderr (a process-wide hook stays silent for panics caught
//!   here and prints every other panic as before).
//! - [`check_model`] checks the attributes tract trusts (axes against ranks the file
//!   declares, permutations, kernel geometry) and bounds every tensor that tract's constant
//!   folding or onnx-rap's rules would build from values in the file by [`Budget`].

use std::any::Any;
use std::cell::Cell;
use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use crate::bad_input;
use crate::error::{Error, Result};
use crate::onnx::proto::{GraphProto, ModelProto, NodeProto, TensorProto};

thread_local! {
    static QUIET: Cell<usize> = const { Cell::new(0) };
}

fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let prev = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) == 0 {
                prev(info);
            }
        }));
    });
}

fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Run `f` (a call into tract) and turn a panic inside it into an input error:
/// `{origin}: failed inside tract's {stage} ({panic message}); ...`.
pub fn in_tract<T>(origin: &str, stage: &str, f: impl FnOnce() -> T) -> Result<T> {
    install_hook();
    QUIET.with(|q| q.set(q.get() + 1));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(q.get() - 1));
    r.map_err(|p| {
        // The first line, without the backtrace anyhow may have appended.
        let full = message(p.as_ref());
        let first = full.split("Stack backtrace").next().unwrap_or("");
        let mut msg: String = first.lines().next().unwrap_or("").trim().to_string();
        if msg.chars().count() > 300 {
            msg = msg.chars().take(300).collect::<String>() + "...";
        }
        bad_input!(
            "{origin}: failed inside tract's {stage} ({msg}); the model is malformed or uses \
             an op in a way tract does not support (check it with onnx.checker)"
        )
    })
}

/// The most elements a tensor built from the file's values may hold: tract folding a
/// constant, onnx-rap building a compile-time matrix. `max(2^28, 4 * file bytes)` elements
/// (1 GiB of float32): enough for every weight-sized tensor a model can justify (the onnx
/// light models generate up to 144 M weights with ConstantOfShape from a 9 KB file), far from
/// what a corrupted length or dimension asks for. The tensors a model's constants expand
/// into are counted together ([`Budget::take`]).
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub elements: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            elements: Self::FLOOR,
        }
    }
}

impl Budget {
    pub const FLOOR: u64 = 1 << 28;

    /// The budget of a model file of `bytes` bytes.
    pub fn for_file(bytes: usize) -> Budget {
        Budget {
            elements: Self::FLOOR.max(4 * bytes as u64),
        }
    }

    /// [`Budget::check`], and what `dims` hold is taken from the budget: the next tensor
    /// gets what is left.
    pub fn take(&mut self, dims: &[i64], what: &dyn Fn() -> String) -> Result<()> {
        self.check(dims, what)?;
        let n = dims
            .iter()
            .fold(1u64, |n, &d| n.saturating_mul(d.max(0) as u64));
        self.elements -= n;
        Ok(())
    }

    /// Ok when `dims` (any integers from the file) hold at most the budget's elements.
    pub fn check(&self, dims: &[i64], what: &dyn Fn() -> String) -> Result<()> {
        let mut n: u64 = 1;
        for &d in dims {
            if d < 0 {
                return Err(bad_input!("{}: negative dimension {d}", what()));
            }
            n = n.saturating_mul(d as u64);
        }
        if n > self.elements {
            return Err(bad_input!(
                "{}: {} elements ({dims:?}), more than the {} the model file justifies; \
                 the file is corrupt",
                what(),
                n,
                self.elements
            ));
        }
        Ok(())
    }
}

/// The rank limit onnx-rap accepts anywhere (ONNX sets none; tract and every exporter stay
/// far below it).
pub const MAX_RANK: usize = 16;

/// What the file itself says about a tensor: its rank, and its value when it is a small
/// integer constant (an initializer or a Constant node).
struct Declared<'a> {
    rank: HashMap<&'a str, usize>,
    ints: HashMap<&'a str, Vec<i64>>,
}

fn small_ints(t: &TensorProto) -> Option<Vec<i64>> {
    if crate::onnx::tensor::numel(t) > 64 {
        return None;
    }
    match t.data_type() {
        6 | 7 => crate::onnx::tensor::to_i64(t)
            .ok()
            .map(|a| a.iter().copied().collect()),
        1 | 11 => crate::onnx::tensor::to_f32(t)
            .ok()
            .map(|a| a.iter().map(|&v| v as i64).collect()),
        _ => None,
    }
}

impl<'a> Declared<'a> {
    /// Ranks of graph inputs, initializers and Constant nodes (annotations of intermediate
    /// tensors are hints that tract may override: not used).
    fn of(g: &'a GraphProto) -> Declared<'a> {
        let mut rank = HashMap::new();
        let mut ints = HashMap::new();
        for vi in &g.input {
            if let Some(s) = crate::onnx::declared_shape(vi) {
                rank.insert(vi.name(), s.dim.len());
            }
        }
        for t in &g.initializer {
            rank.insert(t.name(), t.dims.len());
            if let Some(v) = small_ints(t) {
                ints.insert(t.name(), v);
            }
        }
        for n in &g.node {
            if n.op_type() == "Constant" {
                if let (Some(o), Ok(Some(t))) =
                    (n.output.first(), crate::onnx::attr::tensor(n, "value"))
                {
                    rank.insert(o.as_str(), t.dims.len());
                    if let Some(v) = small_ints(t) {
                        ints.insert(o.as_str(), v);
                    }
                }
            }
        }
        Declared { rank, ints }
    }
}

fn node_err(n: &NodeProto, why: String) -> Error {
    bad_input!(
        "node '{}' ({}): {why}; the model is malformed",
        n.name(),
        n.op_type()
    )
}

/// Check every node of the model (subgraphs included) before tract sees it. `origin` names
/// the file in errors; `budget` bounds the tensors constant folding would build.
pub fn check_model(model: &ModelProto, origin: &str, budget: Budget) -> Result<()> {
    let Some(g) = model.graph.as_ref() else {
        return Ok(());
    };
    let mut left = budget;
    check_graph(g, &mut left, 0).map_err(|e| e.context(origin))
}

fn check_graph(g: &GraphProto, budget: &mut Budget, depth: usize) -> Result<()> {
    if depth > 8 {
        return Err(bad_input!("subgraphs nested more than 8 deep"));
    }
    for vi in g.input.iter().chain(&g.output).chain(&g.value_info) {
        let dims = crate::onnx::declared_shape(vi)
            .map(|s| s.dim.as_slice())
            .unwrap_or_default();
        if dims.len() > MAX_RANK {
            return Err(bad_input!(
                "tensor '{}' is declared with rank {}, more than {MAX_RANK}",
                vi.name(),
                dims.len()
            ));
        }
        if let Some(d) = dims.iter().filter_map(|d| d.dim_value).find(|&d| d < 0) {
            return Err(bad_input!(
                "tensor '{}' is declared with a negative dimension {d}",
                vi.name()
            ));
        }
        // What a runtime allocates for it (symbolic dimensions left out), and the rank of
        // whatever its values shape (a 1-D input fed to ConstantOfShape, say).
        let known: Vec<i64> = dims.iter().filter_map(|d| d.dim_value).collect();
        budget.check(&known, &|| format!("tensor '{}' as declared", vi.name()))?;
    }
    for t in &g.initializer {
        check_tensor(t)?;
    }
    let declared = Declared::of(g);
    let ranks = ranks(g, &declared);
    for n in &g.node {
        check_data_format(n, &ranks)?;
        check_node(n, &declared, budget)?;
        for a in &n.attribute {
            if let Some(t) = &a.t {
                check_tensor(t)?;
            }
            for sub in a.g.iter().chain(&a.graphs) {
                check_graph(sub, budget, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// Ops whose shape rules in tract index the channel and spatial axes of their data input
/// without checking its rank (`DataFormat::shape(..).c_dim()` and `hw_dims()` read unchecked:
/// a rank-1 input is undefined behaviour, not an error), with the least rank that keeps them
/// in bounds and the number of leading inputs they need (tract drops empty input names, so a
/// missing one would shift a parameter into the data slot).
fn data_format_op(op: &str) -> Option<(usize, usize)> {
    Some(match op {
        "BatchNormalization" => (2, 5),
        "Conv" | "ConvTranspose" | "ConvInteger" | "MaxRoiPool" | "MaxUnpool" => (3, 2),
        "QLinearConv" => (3, 8),
        "MaxPool" | "AveragePool" | "LpPool" | "GlobalAveragePool" | "GlobalMaxPool"
        | "GlobalLpPool" => (3, 1),
        _ => return None,
    })
}

fn check_data_format(n: &NodeProto, ranks: &HashMap<&str, usize>) -> Result<()> {
    let Some((min_rank, required)) = data_format_op(n.op_type()) else {
        return Ok(());
    };
    if let Some(k) = (0..required).find(|&k| n.input.get(k).is_none_or(|i| i.is_empty())) {
        return Err(node_err(n, format!("required input {k} is missing")));
    }
    if let Some(&r) = ranks.get(n.input[0].as_str()) {
        if r < min_rank {
            return Err(node_err(
                n,
                format!(
                    "its input '{}' has rank {r}; it needs rank {min_rank} or more",
                    n.input[0]
                ),
            ));
        }
    }
    Ok(())
}

/// The rank of every tensor that follows from the declared ones through ops whose output
/// rank is plain (element-wise ops, windows, normalisations, flattening, reshapes to a
/// constant shape, dense layers); other tensors are left out.
fn ranks<'a>(g: &'a GraphProto, d: &Declared<'a>) -> HashMap<&'a str, usize> {
    let mut rank = d.rank.clone();
    for n in &g.node {
        let known = |t: &str| rank.get(t).copied();
        let r0 = n.input.first().and_then(|t| known(t));
        let all: Option<Vec<usize>> = n
            .input
            .iter()
            .filter(|t| !t.is_empty())
            .map(|t| known(t))
            .collect();
        let out = match n.op_type() {
            "Relu"
            | "LeakyRelu"
            | "PRelu"
            | "Sigmoid"
            | "Tanh"
            | "Elu"
            | "Selu"
            | "Celu"
            | "HardSigmoid"
            | "HardSwish"
            | "Softplus"
            | "Softsign"
            | "Gelu"
            | "Mish"
            | "Erf"
            | "Abs"
            | "Neg"
            | "Exp"
            | "Log"
            | "Sqrt"
            | "Reciprocal"
            | "Floor"
            | "Ceil"
            | "Round"
            | "Sign"
            | "Clip"
            | "Cast"
            | "Identity"
            | "Dropout"
            | "Softmax"
            | "LogSoftmax"
            | "Transpose"
            | "Pad"
            | "Slice"
            | "Resize"
            | "Upsample"
            | "BatchNormalization"
            | "InstanceNormalization"
            | "LayerNormalization"
            | "GroupNormalization"
            | "LRN"
            | "Conv"
            | "ConvTranspose"
            | "MaxPool"
            | "AveragePool"
            | "LpPool"
            | "GlobalAveragePool"
            | "GlobalMaxPool"
            | "Concat" => r0,
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Sum" | "Mean" | "Where"
            | "Equal" | "Less" | "Greater" | "And" | "Or" => all.and_then(|v| v.into_iter().max()),
            "Flatten" | "Gemm" => Some(2),
            "MatMul" => match all.as_deref() {
                Some(&[a, b]) if a >= 2 && b >= 2 => Some(a.max(b)),
                _ => None,
            },
            "Reshape" => n
                .input
                .get(1)
                .and_then(|t| d.ints.get(t.as_str()))
                .map(Vec::len),
            _ => None,
        };
        if let (Some(r), Some(o)) = (out, n.output.first()) {
            rank.insert(o.as_str(), r);
        }
    }
    rank
}

/// A stored tensor: sane rank, non-negative dimensions, and a data length that matches them.
fn check_tensor(t: &TensorProto) -> Result<()> {
    if t.dims.len() > MAX_RANK {
        return Err(bad_input!(
            "tensor '{}' has rank {}, more than {MAX_RANK}",
            t.name(),
            t.dims.len()
        ));
    }
    if let Some(d) = t.dims.iter().find(|&&d| d < 0) {
        return Err(bad_input!(
            "tensor '{}' has a negative dimension {d}",
            t.name()
        ));
    }
    let n = crate::onnx::tensor::numel(t);
    let width: Option<u64> = match t.data_type() {
        1 | 6 | 12 => Some(4),
        2 | 3 | 9 => Some(1),
        4 | 5 | 10 | 16 => Some(2),
        7 | 11 | 13 => Some(8),
        _ => None,
    };
    if let (Some(raw), Some(w)) = (t.raw_data.as_ref(), width) {
        if n.checked_mul(w) != Some(raw.len() as u64) {
            return Err(bad_input!(
                "tensor '{}' declares {:?} ({n} values) but stores {} bytes of data",
                t.name(),
                t.dims,
                raw.len()
            ));
        }
    }
    // Typed fields hold one entry per value for these types (complex ones hold two).
    let typed = match t.data_type() {
        1 => t.float_data.len(),
        2..=6 | 9 | 10 | 16 => t.int32_data.len(),
        7 => t.int64_data.len(),
        11 => t.double_data.len(),
        12 | 13 => t.uint64_data.len(),
        _ => 0,
    };
    let external = t.data_location == Some(1);
    if width.is_some() && n > 0 && t.raw_data.is_none() && typed == 0 && !external {
        return Err(bad_input!(
            "tensor '{}' declares {:?} ({n} values) but stores none",
            t.name(),
            t.dims
        ));
    }
    if t.raw_data.is_none() && typed > 0 && typed as u64 != n {
        return Err(bad_input!(
            "tensor '{}' declares {:?} ({n} values) but stores {typed} values",
            t.name(),
            t.dims
        ));
    }
    Ok(())
}

/// An axis attribute that must lie in `[-rank, rank)` (`rank + 1` for Unsqueeze-like ops).
fn axis_ok(a: i64, rank: usize) -> bool {
    let r = rank as i64;
    -r <= a && a < r
}

fn check_node(n: &NodeProto, d: &Declared, budget: &mut Budget) -> Result<()> {
    use crate::onnx::attr;
    let what = || format!("node '{}' ({})", n.name(), n.op_type());
    let in_rank = n
        .input
        .first()
        .and_then(|t| d.rank.get(t.as_str()))
        .copied();
    // Rank bounds on every axis-like attribute: within the declared rank of the data input
    // where the file declares it, within MAX_RANK anyway.
    let limit = in_rank.unwrap_or(MAX_RANK);
    let extra = usize::from(matches!(
        n.op_type(),
        "Unsqueeze" | "OneHot" | "ConcatFromSequence"
    ));
    for name in ["axis", "axes", "perm", "batch_axis", "time_axis"] {
        let vals: Vec<i64> = match attr::ints(n, name) {
            Ok(Some(v)) => v,
            _ => match attr::int(n, name) {
                Ok(Some(v)) => vec![v],
                _ => continue,
            },
        };
        if vals.len() > MAX_RANK {
            return Err(node_err(
                n,
                format!("attribute '{name}' lists {} axes", vals.len()),
            ));
        }
        let rank = match (n.op_type(), name) {
            // Concat / Flatten / Unsqueeze: axis may equal the rank (or the output rank).
            ("Flatten", _) => limit + 1,
            (_, "axes") if extra == 1 => limit + vals.len(),
            (_, "axis") if extra == 1 => limit + 1,
            _ => limit,
        };
        // Without a declared rank only the crude bound applies.
        let bound = if in_rank.is_some() { rank } else { MAX_RANK };
        if let Some(&bad) = vals.iter().find(|&&a| !axis_ok(a, bound)) {
            return Err(node_err(
                n,
                format!("attribute '{name}' = {bad} is out of range for rank {bound}"),
            ));
        }
        if name == "perm" {
            let mut seen = vec![false; vals.len()];
            for &p in &vals {
                let ok = p >= 0 && (p as usize) < vals.len() && !seen[p as usize];
                if !ok {
                    return Err(node_err(n, format!("'perm' {vals:?} is not a permutation")));
                }
                seen[p as usize] = true;
            }
            if let Some(r) = in_rank.filter(|&r| r != vals.len()) {
                return Err(node_err(
                    n,
                    format!("'perm' has {} entries for an input of rank {r}", vals.len()),
                ));
            }
        }
    }
    // Axes given as a constant input (opset 13+ reductions, Squeeze, Unsqueeze, Slice...).
    let axes_slot = match n.op_type() {
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
        | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" | "Squeeze"
        | "Unsqueeze" => Some(1),
        "Slice" | "Pad" => Some(3),
        _ => None,
    };
    if let Some(v) = axes_slot
        .and_then(|s| n.input.get(s))
        .and_then(|t| d.ints.get(t.as_str()))
    {
        let grows = if n.op_type() == "Unsqueeze" {
            v.len()
        } else {
            0
        };
        let bound = in_rank.unwrap_or(MAX_RANK) + grows;
        if let Some(&bad) = v.iter().find(|&&a| !axis_ok(a, bound)) {
            return Err(node_err(
                n,
                format!("axis {bad} is out of range for rank {bound}"),
            ));
        }
    }
    // Geometry of windows: positive kernels, strides and dilations, sane pads.
    for name in ["kernel_shape", "strides", "dilations"] {
        if let Ok(Some(v)) = attr::ints(n, name) {
            if v.len() > MAX_RANK || v.iter().any(|&k| !(1..=1 << 20).contains(&k)) {
                return Err(node_err(n, format!("attribute '{name}' = {v:?}")));
            }
        }
    }
    for name in ["pads", "output_padding"] {
        if let Ok(Some(v)) = attr::ints(n, name) {
            if v.len() > 2 * MAX_RANK || v.iter().any(|&k| !(-(1 << 20)..=1 << 20).contains(&k)) {
                return Err(node_err(n, format!("attribute '{name}' = {v:?}")));
            }
        }
    }
    if let Ok(Some(g)) = attr::int(n, "group") {
        if !(1..=1 << 20).contains(&g) {
            return Err(node_err(n, format!("attribute 'group' = {g}")));
        }
    }
    if let Ok(Some(v)) = attr::ints(n, "output_shape") {
        budget.check(&v, &what)?;
    }
    // Tensors built from values in the file: their size must fit the budget.
    let konst = |slot: usize| {
        n.input
            .get(slot)
            .filter(|s| !s.is_empty())
            .and_then(|t| d.ints.get(t.as_str()))
    };
    match n.op_type() {
        "ConstantOfShape" | "RandomNormal" | "RandomUniform" | "EyeLike" => {
            if let Some(shape) = konst(0) {
                budget.take(shape, &what)?;
            }
            if let Ok(Some(shape)) = attr::ints(n, "shape") {
                budget.take(&shape, &what)?;
            }
        }
        // Expand, Tile and Resize usually make activations (run time, not folded): each is
        // bounded alone; the constant generators above and below share the budget.
        "Expand" => {
            if let Some(shape) = konst(1) {
                budget.check(shape, &what)?;
            }
        }
        "Tile" => {
            if let Some(reps) = konst(1) {
                budget.check(reps, &what)?;
            }
        }
        "OneHot" => {
            if let Some(depth) = konst(1) {
                budget.take(depth, &what)?;
            }
        }
        "Range" => {
            if let (Some(s), Some(l), Some(dl)) = (konst(0), konst(1), konst(2)) {
                if let (Some(&s), Some(&l), Some(&dl)) = (s.first(), l.first(), dl.first()) {
                    let n_el = if dl == 0 {
                        i64::MAX
                    } else {
                        (l.saturating_sub(s) / dl).max(0)
                    };
                    budget.take(&[n_el], &what)?;
                }
            }
        }
        "Pad" => {
            if let Some(p) = konst(1) {
                if p.iter().any(|&k| !(-(1 << 20)..=1 << 20).contains(&k)) {
                    return Err(node_err(n, format!("pads {p:?}")));
                }
            }
        }
        "Resize" | "Upsample" => {
            for slot in 1..n.input.len() {
                if let Some(v) = konst(slot) {
                    // Scales (as integers) or sizes: both bound the output.
                    budget.check(v, &what)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_tract_is_an_input_error() {
        let e = in_tract("m.onnx", "shape inference", || -> i32 { panic!("boom") }).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let s = e.to_string();
        assert!(
            s.starts_with("m.onnx: failed inside tract's shape inference (boom)"),
            "{s}"
        );
        assert_eq!(in_tract("m", "x", || 3).unwrap(), 3);
    }

    #[test]
    fn budget_refuses_corrupt_sizes() {
        let b = Budget::for_file(1000);
        assert!(b.check(&[1 << 20, 16], &|| "t".into()).is_ok());
        assert!(b.check(&[1 << 40, 1 << 40], &|| "t".into()).is_err());
        assert!(b.check(&[-1], &|| "t".into()).is_err());
    }
}
