//! Plan-time fusion: chains of element-wise ops in tract's typed model (the relevance rules'
//! safe divisions, masks, sign splits, shifts) replaced by one [`FusedElementwise`] node each,
//! which reads its inputs once and writes its outputs once, spread over tract's threads. A
//! chain also writes the Concat of its outputs that stacks the rules' two slots for one
//! back-projection, with the zero padding of that convolution (neither tensor is made apart),
//! and the shift's per-position channel sums (1x1 convolutions of ones) become
//! [`channel_sum::ChannelSum`] nodes. Products with a per-channel constant or a bound right
//! after a convolution stay tract's: its codegen folds those into the product's store loop.
//!
//! This runs on tract's model only, after the relevance pass and before tract's codegen: the
//! exported model_rap.onnx stays plain ONNX. Switched off by `ONNX_RAP_FUSE=0` or
//! [`set_enabled`] (`bench --no-fuse`), for tests and comparisons; `ONNX_RAP_FUSE_DEBUG=1`
//! prints every fused kernel as it is made.
//!
//! Grouping keeps the plan acyclic by construction: with `pos` a topological order of the
//! model, a group's key is the position of its first node and a node outside any group keys by
//! its own position (inputs-free nodes by -1). A node joins a group only when every input it
//! takes from outside the group keys below the group's key; then every edge of the contracted
//! graph goes from a smaller key to a larger one.

pub mod channel_sum;
pub mod kernel;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};

use tract_core::internal::*;
use tract_core::ops::binary::TypedBinOp;
use tract_core::ops::element_wise::ElementWiseOp;
use tract_core::ops::logic::Iff;

pub use kernel::FusedElementwise;
use kernel::{Bcast, Binary, Code, Instr, Src, Stack, Unary};

/// Most nodes in one fused chain (each is one register of [`kernel::BLOCK`] floats).
const MAX_GROUP: usize = 48;

/// 0: not yet read from the environment, 1: on, 2: off.
static ENABLED: AtomicU8 = AtomicU8::new(0);

/// Turn fusion on or off for every plan made afterwards in this process.
pub fn set_enabled(on: bool) {
    ENABLED.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// Whether plans fuse: [`set_enabled`]'s choice, else on unless `ONNX_RAP_FUSE=0`.
pub fn enabled() -> bool {
    match ENABLED.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let on = std::env::var("ONNX_RAP_FUSE").map_or(true, |v| v.trim() != "0");
            set_enabled(on);
            on
        }
    }
}

/// What the pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Element-wise nodes seen, and those now inside a fused node.
    pub candidates: usize,
    pub fused_nodes: usize,
    /// Fused nodes made.
    pub groups: usize,
    /// Convolutions with a kernel of ones now [`channel_sum::ChannelSum`] nodes.
    pub channel_sums: usize,
    /// Concats written by a fused node straight into their stacked tensor, and of those, the
    /// ones whose convolution's zero padding the fused node writes too.
    pub stacks: usize,
    pub pads: usize,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.candidates += o.candidates;
        self.fused_nodes += o.fused_nodes;
        self.groups += o.groups;
        self.channel_sums += o.channel_sums;
        self.stacks += o.stacks;
        self.pads += o.pads;
    }
}

/// The fused code of a node tract would run element by element, if the kernel has it.
fn classify(node: &TypedNode) -> Option<Code> {
    if let Some(op) = node.op_as::<TypedBinOp>() {
        if op.1.is_some() {
            return None;
        }
        let b = match op.0.name() {
            "Add" => Binary::Add,
            "Sub" => Binary::Sub,
            "Mul" => Binary::Mul,
            "Div" => Binary::Div,
            "Max" => Binary::Max,
            "Min" => Binary::Min,
            "Eq" => Binary::Eq,
            "LT" => Binary::Lt,
            "GT" => Binary::Gt,
            "LTE" => Binary::Le,
            "GTE" => Binary::Ge,
            "And" => Binary::And,
            "Or" => Binary::Or,
            _ => return None,
        };
        return Some(Code::Bin(b));
    }
    if let Some(op) = node.op_as::<ElementWiseOp>() {
        if op.1.is_some() {
            return None;
        }
        // Exp is left out: tract runs it with a vectorised approximation of its own.
        let u = match op.0.name().as_str() {
            "Abs" => Unary::Abs,
            "Neg" => Unary::Neg,
            "Sign" => Unary::Sign,
            "Recip" => Unary::Recip,
            "Sqrt" => Unary::Sqrt,
            "Not" => Unary::Not,
            _ => return None,
        };
        return Some(Code::Un(u));
    }
    if node.op_is::<Iff>() {
        return Some(Code::Select);
    }
    None
}

fn concrete(fact: &TypedFact) -> Option<Vec<usize>> {
    fact.shape.as_concrete().map(|s| s.to_vec())
}

fn float_or_bool(dt: DatumType) -> Option<bool> {
    if dt == f32::datum_type() {
        Some(false)
    } else if dt == bool::datum_type() {
        Some(true)
    } else {
        None
    }
}

/// How an input of `shape` broadcasts to `out`, or None when it does not.
fn bcast(shape: &[usize], out: &[usize]) -> Option<Bcast> {
    if shape.len() != out.len() || shape.iter().zip(out).any(|(&s, &o)| s != o && s != 1) {
        return None;
    }
    if shape == out {
        return Some(Bcast::Full);
    }
    if shape.iter().all(|&s| s == 1) {
        return Some(Bcast::Scalar);
    }
    let k = shape.iter().take_while(|&&s| s == 1).count();
    let j = shape.len() - shape.iter().rev().take_while(|&&s| s == 1).count();
    if shape[k..j] == out[k..j] {
        return Some(Bcast::Outer {
            inner: out[j..].iter().product(),
            len: out[k..j].iter().product(),
        });
    }
    // Equal axes, then broadcast ones, then equal axes again.
    let p = shape.iter().zip(out).take_while(|(s, o)| s == o).count();
    let q = p + shape[p..]
        .iter()
        .zip(&out[p..])
        .take_while(|(&s, _)| s == 1)
        .count();
    if shape[q..] == out[q..] {
        Some(Bcast::Mid {
            rep: out[p..q].iter().product(),
            run: out[q..].iter().product(),
        })
    } else {
        Some(Bcast::General)
    }
}

/// A node the kernel can take, with its output shape.
fn candidate(model: &TypedModel, node: &TypedNode) -> TractResult<Option<(Code, Vec<usize>)>> {
    let Some(code) = classify(node) else {
        return Ok(None);
    };
    if node.outputs.len() != 1 {
        return Ok(None);
    }
    let out = &node.outputs[0].fact;
    if out.konst.is_some() || float_or_bool(out.datum_type).is_none() {
        return Ok(None);
    }
    let Some(shape) = concrete(out) else {
        return Ok(None);
    };
    for i in &node.inputs {
        let f = model.outlet_fact(*i)?;
        if float_or_bool(f.datum_type).is_none() {
            return Ok(None);
        }
        match concrete(f) {
            Some(s) if bcast(&s, &shape).is_some() => {}
            _ => return Ok(None),
        }
    }
    Ok(Some((code, shape)))
}

/// Whether tract's codegen can fold `node` into the matrix product before it: a per-channel
/// or scalar constant added, subtracted, multiplied, or a bound (ReLU), right after a
/// convolution or matrix product (or after another such node) whose only reader it is.
/// Those run inside the product's store loop, cheaper than any pass of ours.
fn epilogue(model: &TypedModel, node: &TypedNode, folded: &[bool]) -> TractResult<bool> {
    let Some(Code::Bin(b)) = classify(node) else {
        return Ok(false);
    };
    if !matches!(
        b,
        Binary::Add | Binary::Sub | Binary::Mul | Binary::Max | Binary::Min
    ) || node.inputs.len() != 2
    {
        return Ok(false);
    }
    let out = concrete(&node.outputs[0].fact).unwrap_or_default();
    for (k, i) in node.inputs.iter().enumerate() {
        let other = node.inputs[1 - k];
        let of = model.outlet_fact(other)?;
        let small = of.konst.is_some()
            && concrete(of)
                .and_then(|s| bcast(&s, &out))
                .is_some_and(|b| matches!(b, Bcast::Scalar | Bcast::Outer { .. }));
        let p = model.node(i.node);
        let product = folded[p.id]
            || ["Conv", "EinSum", "MatMul", "Deconv"]
                .iter()
                .any(|n| p.op().name().contains(n));
        if small && product && p.outputs[i.slot].successors.len() == 1 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A Concat along axis 1 of outputs of one fused chain, and the convolution reading it
/// alone, if its padding can be written with it: (conv node, its padding, the conv with none).
struct Absorbed {
    concat: usize,
    parts: Vec<usize>,
    conv: Option<(usize, [usize; 4], tract_core::ops::cnn::Conv)>,
}

/// The padded form of `conv` reading `outlet` (its only reader), if it is a float NCHW 2-d
/// convolution with explicit zero padding: its padding, and the same conv with none, which
/// must give the same output shape on the padded input.
fn padded_conv(
    model: &TypedModel,
    outlet: OutletId,
) -> TractResult<Option<(usize, [usize; 4], tract_core::ops::cnn::Conv)>> {
    use tract_core::ops::cnn::{Conv, PaddingSpec};
    use tract_core::ops::nn::DataFormat;
    let succ = &model.node(outlet.node).outputs[outlet.slot].successors;
    if succ.len() != 1 || succ[0].slot != 0 || model.output_outlets()?.contains(&outlet) {
        return Ok(None);
    }
    let node = model.node(succ[0].node);
    let Some(conv) = node.op_as::<Conv>() else {
        return Ok(None);
    };
    let (b, e) = match &conv.pool_spec.padding {
        PaddingSpec::Explicit(b, e) | PaddingSpec::ExplicitOnnxPool(b, e, false) => (b, e),
        _ => return Ok(None),
    };
    if conv.q_params.is_some()
        || conv.pool_spec.data_format != DataFormat::NCHW
        || b.len() != 2
        || e.len() != 2
        || b.iter().chain(e.iter()).all(|&p| p == 0)
    {
        return Ok(None);
    }
    let pad = [b[0], e[0], b[1], e[1]];
    let mut valid = conv.clone();
    valid.pool_spec.padding = PaddingSpec::Valid;
    let x = model.outlet_fact(outlet)?;
    let Some(xs) = concrete(x) else {
        return Ok(None);
    };
    if xs.len() != 4 {
        return Ok(None);
    }
    let mut padded = xs.clone();
    padded[2] += pad[0] + pad[1];
    padded[3] += pad[2] + pad[3];
    let pf = f32::fact(&*padded);
    let mut facts: Vec<TypedFact> = vec![pf];
    for i in &node.inputs[1..] {
        facts.push(model.outlet_fact(*i)?.clone());
    }
    let refs: Vec<&TypedFact> = facts.iter().collect();
    let same = match valid.output_facts(&refs) {
        Ok(f) => f.len() == 1 && f[0].shape == node.outputs[0].fact.shape,
        Err(_) => false,
    };
    Ok(same.then_some((node.id, pad, valid)))
}

/// A topological order of `model` that puts every element-wise node as late as it can
/// (Kahn's algorithm, other ready nodes first): a chain then starts after the convolutions
/// that feed its later nodes, so more of a rule's work can join one chain.
fn late_elementwise_order(model: &TypedModel) -> TractResult<Vec<usize>> {
    let n = model.nodes().len();
    let mut elementwise = vec![false; n];
    let mut waiting = vec![0usize; n];
    for node in model.nodes() {
        elementwise[node.id] = classify(node).is_some();
        waiting[node.id] = node.inputs.len();
    }
    let mut others: Vec<usize> = vec![];
    let mut chains: Vec<usize> = vec![];
    for node in model.nodes().iter().filter(|n| n.inputs.is_empty()) {
        others.push(node.id);
    }
    let mut order = Vec::with_capacity(n);
    while let Some(v) = others.pop().or_else(|| chains.pop()) {
        order.push(v);
        for out in &model.node(v).outputs {
            for s in &out.successors {
                waiting[s.node] -= 1;
                if waiting[s.node] == 0 {
                    if elementwise[s.node] {
                        chains.push(s.node);
                    } else {
                        others.push(s.node);
                    }
                }
            }
        }
    }
    ensure!(order.len() == n, "the model has a cycle");
    Ok(order)
}

/// The patch's wire for the model's `outlet`: the fused output that replaced it, else a tap
/// of it, made once.
fn wire(
    patch: &mut TypedModelPatch,
    mapped: &mut HashMap<OutletId, OutletId>,
    model: &TypedModel,
    outlet: OutletId,
) -> TractResult<OutletId> {
    if let Some(w) = mapped.get(&outlet) {
        return Ok(*w);
    }
    let w = patch.tap_model(model, outlet)?;
    mapped.insert(outlet, w);
    Ok(w)
}

/// tract's thread pool for `elements` of element-wise work: the executor's pool when it has
/// more than one thread and the work reaches tract's own threshold for splitting its
/// element-wise kernels; None: run on this thread.
fn pool_for(elements: usize) -> Option<std::sync::Arc<rayon::ThreadPool>> {
    use tract_linalg::multithread::{current_threading_element_threshold, Executor};
    match tract_linalg::multithread::current_tract_executor() {
        Executor::MultiThread(pool)
            if pool.current_num_threads() > 1
                && elements >= current_threading_element_threshold() =>
        {
            Some(pool)
        }
        _ => None,
    }
}

/// Run `f` on every item of `work`: on `pool`'s threads, or in order on this one.
fn for_each<T: Send>(pool: Option<&rayon::ThreadPool>, work: Vec<T>, f: impl Fn(T) + Sync + Send) {
    match pool {
        Some(pool) => {
            use rayon::prelude::*;
            pool.install(|| work.into_par_iter().for_each(f));
        }
        None => work.into_iter().for_each(f),
    }
}

struct Group {
    shape: Vec<usize>,
    start: i64,
    nodes: Vec<(usize, Code)>,
}

/// Replace the element-wise chains of `model` by fused nodes. The model must have concrete
/// shapes (tract's typed model of fixed input facts); nodes it cannot take are left alone.
pub fn fuse(model: &mut TypedModel) -> TractResult<Stats> {
    let mut stats = Stats::default();
    // The bodies of loops first: a model_rap.onnx explaining one sample per run runs as a
    // Scan over the batch (src/pass/scan.rs), the whole explanation inside its body.
    for id in 0..model.nodes().len() {
        if let Some(scan) = model
            .node_mut(id)
            .op_as_mut::<tract_core::ops::scan::Scan>()
        {
            stats += fuse(&mut scan.body)?;
        }
    }
    let mut patch = TypedModelPatch::default();
    let mut sums = 0;
    for node in model.nodes() {
        if let Some(op) = channel_sum::matches(model, node)? {
            let x = patch.tap_model(model, node.inputs[0])?;
            let y = patch.wire_node(format!("{}#sum", node.name), op, &[x])?;
            patch.shunt_outside(model, OutletId::new(node.id, 0), y[0])?;
            sums += 1;
        }
    }
    if sums > 0 {
        patch.apply(model)?;
        model.compact()?;
    }
    stats.channel_sums += sums;
    // Two topological orders, two groupings: tract's depth-first order makes longer chains,
    // one with every element-wise node as late as it can be lets more chains meet at the
    // Concats of the stacked slots (VGG-16: 14 of them against none). The grouping with
    // more stacks is taken, of equal ones the one with fewer kernels.
    let a = grouping(model, &model.eval_order()?)?;
    let b = grouping(model, &late_elementwise_order(model)?)?;
    let score = |g: &Grouping| {
        let stacks: usize = g.absorbed.values().map(|v| v.len()).sum();
        let kernels = g.groups.iter().filter(|x| x.nodes.len() >= 2).count();
        (stacks, std::cmp::Reverse(kernels))
    };
    let Grouping {
        groups,
        absorbed,
        candidates,
        ..
    } = if score(&b) > score(&a) { b } else { a };
    stats.candidates += candidates;
    let mut fused = Stats::default();
    let outputs: Vec<OutletId> = model.output_outlets()?.to_vec();
    let mut patch = TypedModelPatch::default();
    let mut mapped: HashMap<OutletId, OutletId> = HashMap::new();
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&g| groups[g].start);
    for gid in order {
        let g = &groups[gid];
        if g.nodes.len() < 2 {
            continue;
        }
        let cats: &[Absorbed] = absorbed.get(&gid).map_or(&[], |v| v.as_slice());
        let reg: HashMap<usize, usize> = g
            .nodes
            .iter()
            .enumerate()
            .map(|(r, &(n, _))| (n, r))
            .collect();
        let mut inputs: Vec<OutletId> = vec![];
        let mut kinds = vec![];
        let mut program = vec![];
        let mut names = vec![];
        for &(n, code) in &g.nodes {
            let node = model.node(n);
            let mut args = vec![];
            for i in &node.inputs {
                if let Some(&r) = reg.get(&i.node) {
                    args.push(Src::Reg(r));
                    continue;
                }
                let k = match inputs.iter().position(|o| o == i) {
                    Some(k) => k,
                    None => {
                        let f = model.outlet_fact(*i)?;
                        let s = concrete(f).context("input shape")?;
                        kinds.push((
                            bcast(&s, &g.shape).context("broadcast")?,
                            float_or_bool(f.datum_type) == Some(true),
                        ));
                        inputs.push(*i);
                        inputs.len() - 1
                    }
                };
                args.push(Src::In(k));
            }
            // Where(c, a, b) and the binary ops take their inputs in the node's order.
            program.push(Instr {
                code,
                args,
                dst: reg[&n],
            });
            names.push(node.op().name().to_string());
        }
        let mut outs = vec![];
        for &(n, _) in &g.nodes {
            let node = model.node(n);
            let outlet = OutletId::new(n, 0);
            let used_outside =
                node.outputs[0].successors.iter().any(|s| {
                    !reg.contains_key(&s.node) && !cats.iter().any(|a| a.concat == s.node)
                }) || outputs.contains(&outlet);
            if used_outside {
                let is_bool = node.outputs[0].fact.datum_type == bool::datum_type();
                outs.push((outlet, reg[&n], is_bool));
            }
        }
        let stacks: Vec<Stack> = cats
            .iter()
            .map(|a| Stack {
                parts: a.parts.iter().map(|n| reg[n]).collect(),
                pad: a.conv.as_ref().map_or([0; 4], |c| c.1),
            })
            .collect();
        if outs.is_empty() && stacks.is_empty() {
            continue;
        }
        let mut wires = tvec![];
        for i in &inputs {
            wires.push(wire(&mut patch, &mut mapped, model, *i)?);
        }
        let op = FusedElementwise {
            shape: g.shape.clone(),
            inputs: kinds,
            registers: g.nodes.len(),
            program,
            outputs: outs.iter().map(|&(_, r, b)| (r, b)).collect(),
            stacks,
            label: names.join("+"),
        };
        let name = format!("{}#fused{}", model.node(g.nodes[0].0).name, fused.groups);
        if std::env::var("ONNX_RAP_FUSE_DEBUG").is_ok() {
            eprintln!(
                "{name} {:?} {} in {:?} out {} stacks {:?}",
                op.shape,
                op.label,
                op.inputs,
                op.outputs.len(),
                op.stacks
            );
        }
        let new = patch.wire_node(name, op, &wires)?;
        for (&(old, _, _), &w) in outs.iter().zip(new.iter()) {
            mapped.insert(old, w);
            patch.shunt_outside(model, old, w)?;
        }
        for (a, &w) in cats.iter().zip(new[outs.len()..].iter()) {
            fused.stacks += 1;
            let Some((c, _, valid)) = &a.conv else {
                let old = OutletId::new(a.concat, 0);
                mapped.insert(old, w);
                patch.shunt_outside(model, old, w)?;
                continue;
            };
            // The convolution on the padded stack, with no padding of its own.
            let conv = model.node(*c);
            let mut ins = tvec![w];
            for i in &conv.inputs[1..] {
                ins.push(wire(&mut patch, &mut mapped, model, *i)?);
            }
            let y = patch.wire_node(format!("{}#prepadded", conv.name), valid.clone(), &ins)?[0];
            let old = OutletId::new(*c, 0);
            mapped.insert(old, y);
            patch.shunt_outside(model, old, y)?;
            fused.pads += 1;
        }
        fused.groups += 1;
        fused.fused_nodes += g.nodes.len();
    }
    if fused.groups > 0 {
        patch.apply(model)?;
        model.compact()?;
    }
    stats += fused;
    Ok(stats)
}

/// Chains of element-wise nodes, grown greedily along `order` (a topological order of
/// `model`), and the Concats each chain writes (see [`fuse`]).
struct Grouping {
    groups: Vec<Group>,
    absorbed: HashMap<usize, Vec<Absorbed>>,
    candidates: usize,
}

fn grouping(model: &TypedModel, order: &[usize]) -> TractResult<Grouping> {
    let mut candidates = 0;
    let mut pos = vec![i64::MAX; model.nodes().len()];
    for (i, &n) in order.iter().enumerate() {
        pos[n] = i as i64;
    }
    let mut group_of: Vec<Option<usize>> = vec![None; model.nodes().len()];
    let mut groups: Vec<Group> = vec![];
    // A node's key: its group's start, or its own position (-1 without inputs).
    let key = |p: usize, group_of: &[Option<usize>], groups: &[Group]| -> i64 {
        if model.node(p).inputs.is_empty() {
            -1
        } else if let Some(g) = group_of[p] {
            groups[g].start
        } else {
            pos[p]
        }
    };
    let mut folded = vec![false; model.nodes().len()];
    for &n in order {
        let node = model.node(n);
        if epilogue(model, node, &folded)? {
            folded[n] = true;
            continue;
        }
        let Some((code, shape)) = candidate(model, node)? else {
            continue;
        };
        candidates += 1;
        let mut chosen = None;
        for i in &node.inputs {
            let Some(g) = group_of[i.node] else { continue };
            if groups[g].shape != shape || groups[g].nodes.len() >= MAX_GROUP {
                continue;
            }
            let start = groups[g].start;
            let fits = node
                .inputs
                .iter()
                .all(|j| group_of[j.node] == Some(g) || key(j.node, &group_of, &groups) < start);
            if fits {
                chosen = Some(g);
                break;
            }
        }
        let g = chosen.unwrap_or_else(|| {
            groups.push(Group {
                shape: shape.clone(),
                start: pos[n],
                nodes: vec![],
            });
            groups.len() - 1
        });
        groups[g].nodes.push((n, code));
        group_of[n] = Some(g);
    }
    // The slots a Concat stacks often end two chains that never meet before it (RAP's s1 and
    // s2): one chain then, started at the earlier one's key, when every input the later
    // chain takes from outside keys below that start (the order argument above holds).
    for node in model.nodes() {
        let Some(cat) = node.op_as::<tract_core::ops::array::TypedConcat>() else {
            continue;
        };
        let mut ids: Vec<usize> = node
            .inputs
            .iter()
            .filter_map(|i| group_of[i.node])
            .collect();
        ids.sort_by_key(|&g| groups[g].start);
        ids.dedup();
        if cat.axis != 1 || ids.len() < 2 || node.inputs.iter().any(|i| group_of[i.node].is_none())
        {
            continue;
        }
        let a = ids[0];
        for &b in &ids[1..] {
            if groups[b].shape != groups[a].shape
                || groups[a].nodes.len() + groups[b].nodes.len() > 2 * MAX_GROUP
            {
                continue;
            }
            let start = groups[a].start;
            let fits = groups[b].nodes.iter().all(|&(m, _)| {
                model.node(m).inputs.iter().all(|j| {
                    let g = group_of[j.node];
                    g == Some(a) || g == Some(b) || key(j.node, &group_of, &groups) < start
                })
            });
            if fits {
                let moved = std::mem::take(&mut groups[b].nodes);
                for &(m, _) in &moved {
                    group_of[m] = Some(a);
                }
                groups[a].nodes.extend(moved);
                groups[a].nodes.sort_by_key(|&(m, _)| pos[m]);
            }
        }
    }
    // Concats of a chain's outputs along the channel axis (the rules' stacked slots):
    // written by the chain straight into the stacked tensor, with the zero padding of the
    // convolution reading it where that is its only reader.
    let mut absorbed: HashMap<usize, Vec<Absorbed>> = HashMap::new();
    for node in model.nodes() {
        let Some(cat) = node.op_as::<tract_core::ops::array::TypedConcat>() else {
            continue;
        };
        let Some(g) = node.inputs.first().and_then(|i| group_of[i.node]) else {
            continue;
        };
        let shape = &groups[g].shape;
        let mut fits = cat.axis == 1 && shape.len() >= 2 && groups[g].nodes.len() >= 2;
        for i in &node.inputs {
            let f = model.outlet_fact(*i)?;
            fits &= group_of[i.node] == Some(g)
                && f.datum_type == f32::datum_type()
                && concrete(f).as_ref() == Some(shape);
        }
        if !fits || model.output_outlets()?.contains(&OutletId::new(node.id, 0)) {
            continue;
        }
        let conv = if shape.len() == 4 {
            padded_conv(model, OutletId::new(node.id, 0))?
        } else {
            None
        };
        absorbed.entry(g).or_default().push(Absorbed {
            concat: node.id,
            parts: node.inputs.iter().map(|i| i.node).collect(),
            conv,
        });
    }
    Ok(Grouping {
        groups,
        absorbed,
        candidates,
    })
}
