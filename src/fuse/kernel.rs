//! The fused element-wise op: one node of tract's plan that runs a whole chain of element-wise
//! ops of the relevance rules (a small register program) in one pass over memory, block by
//! block, the blocks spread over the threads tract's executor has.
//!
//! Every value is computed with the same float32 operation, in the same order, as tract's
//! plan computes the op it replaces (tract-core 0.23.9: `a.max(b)`, `a * b.recip()` for a
//! division, `signum` with zeros kept, ...), so the fused plan equals the unfused one up to
//! the rounding of the few places where tract's own kernels order a computation differently.

use tract_core::internal::*;

/// Elements per block: a register is one block of f32, small enough that a chain's registers
/// stay in the core's cache while the block is worked on.
pub const BLOCK: usize = 1024;

/// One-input operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unary {
    Abs,
    Neg,
    Sign,
    Recip,
    Sqrt,
    Exp,
    Not,
}

/// Two-input operations; comparisons and logic give 1.0 / 0.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
    And,
    Or,
}

/// What an instruction computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    Un(Unary),
    Bin(Binary),
    /// `c != 0 ? a : b` (ONNX Where).
    Select,
}

/// An operand: an input of the fused node or the register of an earlier instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Src {
    In(usize),
    Reg(usize),
}

/// One instruction: `dst = code(args)`; every instruction writes its own register.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Instr {
    pub code: Code,
    pub args: Vec<Src>,
    pub dst: usize,
}

/// How an input of the fused node maps onto the output's elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bcast {
    /// The output's shape: element i is element i.
    Full,
    /// One value for every element.
    Scalar,
    /// The output's leading axes, ones after them (a per-channel vector): element i reads
    /// `(i / inner) % len`.
    Outer { inner: usize, len: usize },
    /// The output's leading and trailing axes, ones between them (a per-position map of a
    /// batch, [N, 1, H, W] against [N, C, H, W]): element i reads
    /// `(i / (rep * run)) * run + i % run`.
    Mid { rep: usize, run: usize },
    /// Any other broadcast: expanded to the output's shape when the node runs.
    General,
}

/// An output written stacked and padded: the parts' registers concatenated along axis 1 (a
/// Concat of the parts), the last two axes of a rank-4 shape padded with zeros by
/// `[top, bottom, left, right]` (the Pad a convolution reading it would make). The
/// concatenated and padded tensors exist only as this output.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Stack {
    pub parts: Vec<usize>,
    pub pad: [usize; 4],
}

impl Stack {
    /// Its shape, for parts of shape `s`.
    pub fn shape(&self, s: &[usize]) -> Vec<usize> {
        let mut d = s.to_vec();
        d[1] *= self.parts.len();
        if self.pad != [0; 4] {
            let r = d.len();
            d[r - 2] += self.pad[0] + self.pad[1];
            d[r - 1] += self.pad[2] + self.pad[3];
        }
        d
    }

    /// Where element `g` of part `j` goes, and how many elements after it follow
    /// contiguously in both (to the end of its row, or of its plane when unpadded).
    #[inline(always)]
    fn place(&self, s: &[usize], j: usize, g: usize) -> (usize, usize) {
        let c = s[1];
        let plane: usize = s[2..].iter().product();
        let (q, r) = (g / plane, g % plane);
        let dplane = (q / c) * self.parts.len() * c + j * c + q % c;
        if self.pad == [0; 4] {
            return (dplane * plane + r, plane - r);
        }
        let (h, w) = (s[s.len() - 2], s[s.len() - 1]);
        let (hd, wd) = (h + self.pad[0] + self.pad[1], w + self.pad[2] + self.pad[3]);
        let (y, x) = (r / w, r % w);
        (
            (dplane * hd + y + self.pad[0]) * wd + x + self.pad[2],
            w - x,
        )
    }

    /// Zero the padding of `out` (this stack's tensor).
    fn zero_border(&self, s: &[usize], out: &mut [f32]) {
        if self.pad == [0; 4] {
            return;
        }
        let (h, w) = (s[s.len() - 2], s[s.len() - 1]);
        let (hd, wd) = (h + self.pad[0] + self.pad[1], w + self.pad[2] + self.pad[3]);
        for p in out.chunks_mut(hd * wd) {
            p[..self.pad[0] * wd].fill(0.0);
            p[(hd - self.pad[1]) * wd..].fill(0.0);
            for y in self.pad[0]..hd - self.pad[1] {
                let row = &mut p[y * wd..(y + 1) * wd];
                row[..self.pad[2]].fill(0.0);
                row[wd - self.pad[3]..].fill(0.0);
            }
        }
    }
}

/// A stacked output's data, written from several threads at disjoint elements.
struct RawOut(*mut f32);
// SAFETY: the pointer is only written through at elements no other chunk writes (a stack
// maps every element of every part to an element of its own), while the tensor it points
// into is alive and not otherwise borrowed (until `eval` returns it).
unsafe impl Send for RawOut {}
unsafe impl Sync for RawOut {}

/// The fused chain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FusedElementwise {
    /// The output shape every instruction works at.
    pub shape: Vec<usize>,
    /// Per input: its broadcast and whether it is boolean (else float32).
    pub inputs: Vec<(Bcast, bool)>,
    pub program: Vec<Instr>,
    pub registers: usize,
    /// Per output: the register it reads and whether it is boolean.
    pub outputs: Vec<(usize, bool)>,
    /// Stacked (and padded) float outputs, after those.
    pub stacks: Vec<Stack>,
    /// The names of the ops fused, in program order, for profiles and dumps.
    pub label: String,
}

impl Op for FusedElementwise {
    fn name(&self) -> StaticName {
        format!("RapFused({})", self.label).into()
    }
    op_as_typed_op!();
}

impl TypedOp for FusedElementwise {
    as_op!();

    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(self
            .outputs
            .iter()
            .map(|&(_, is_bool)| {
                if is_bool {
                    bool::fact(&*self.shape)
                } else {
                    f32::fact(&*self.shape)
                }
            })
            .chain(
                self.stacks
                    .iter()
                    .map(|st| f32::fact(st.shape(&self.shape))),
            )
            .collect())
    }
}

/// An input resolved for one block.
enum Opnd<'a> {
    Slice(&'a [f32]),
    Scalar(f32),
}

/// An input as the kernel reads it.
#[derive(Clone, Copy)]
enum Data<'a> {
    F32(&'a [f32]),
    Bool(&'a [bool]),
}

impl Data<'_> {
    #[inline(always)]
    fn at(&self, i: usize) -> f32 {
        match self {
            Data::F32(s) => s[i],
            Data::Bool(s) => bool_f(s[i]),
        }
    }
}

enum OutSlice<'a> {
    F32(&'a mut [f32]),
    Bool(&'a mut [bool]),
}

impl EvalOp for FusedElementwise {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(
            inputs.len() == self.inputs.len(),
            "RapFused: wrong number of inputs"
        );
        let n: usize = self.shape.iter().product();
        // Inputs as float32 slices; General ones expanded, booleans converted.
        let mut expanded: Vec<Option<Tensor>> = Vec::with_capacity(inputs.len());
        for (t, &(b, _)) in inputs.iter().zip(&self.inputs) {
            expanded.push(if b == Bcast::General {
                Some(t.broadcast_to_shape(&self.shape)?)
            } else {
                None
            });
        }
        let mut data: Vec<Data> = Vec::with_capacity(inputs.len());
        for (k, t) in inputs.iter().enumerate() {
            let t: &Tensor = expanded[k].as_ref().unwrap_or(t);
            let view = t.try_as_plain_ram()?;
            data.push(if self.inputs[k].1 {
                Data::Bool(view.as_slice::<bool>()?)
            } else {
                Data::F32(view.as_slice::<f32>()?)
            });
        }
        let kinds: Vec<Bcast> = self
            .inputs
            .iter()
            .map(|&(b, _)| if b == Bcast::General { Bcast::Full } else { b })
            .collect();
        // Float outputs written once, element by element: no initialisation pass. Boolean ones
        // (rare: a mask read outside its chain) start as false, never as invalid bytes.
        let mut out_tensors: Vec<Tensor> = self
            .outputs
            .iter()
            .map(|&(_, is_bool)| {
                if is_bool {
                    Tensor::zero_dt(bool::datum_type(), &self.shape)
                } else {
                    // SAFETY: every element is written by exactly one chunk before it is read.
                    unsafe { Tensor::uninitialized::<f32>(&self.shape) }
                }
            })
            .collect::<TractResult<_>>()?;
        // Chunks: whole blocks, a few per thread as tract's own element-wise kernels split.
        let pool = super::pool_for(n);
        let chunk = match &pool {
            Some(p) => {
                n.div_ceil(4 * p.current_num_threads())
                    .div_ceil(BLOCK)
                    .max(1)
                    * BLOCK
            }
            None => n.max(1),
        };
        let mut work: Vec<((usize, usize), Vec<OutSlice>)> = (0..n.div_ceil(chunk))
            .map(|c| ((c * chunk, chunk.min(n - c * chunk)), vec![]))
            .collect();
        for (t, &(_, is_bool)) in out_tensors.iter_mut().zip(&self.outputs) {
            // SAFETY: each tensor was just allocated with this datum type, plain and dense.
            if is_bool {
                let v = unsafe { t.as_slice_mut_unchecked::<bool>() };
                for (w, s) in work.iter_mut().zip(v.chunks_mut(chunk)) {
                    w.1.push(OutSlice::Bool(s));
                }
            } else {
                let v = unsafe { t.as_slice_mut_unchecked::<f32>() };
                for (w, s) in work.iter_mut().zip(v.chunks_mut(chunk)) {
                    w.1.push(OutSlice::F32(s));
                }
            }
        }
        let mut stack_tensors: Vec<Tensor> = vec![];
        for st in &self.stacks {
            // SAFETY: the padding is zeroed here, every other element by exactly one chunk.
            let mut t = unsafe { Tensor::uninitialized::<f32>(&st.shape(&self.shape))? };
            st.zero_border(&self.shape, unsafe { t.as_slice_mut_unchecked::<f32>() });
            stack_tensors.push(t);
        }
        let stack_out: Vec<RawOut> = stack_tensors
            .iter_mut()
            .map(|t| RawOut(unsafe { t.as_slice_mut_unchecked::<f32>() }.as_mut_ptr()))
            .collect();
        let run = |(range, outs): ((usize, usize), Vec<OutSlice>)| {
            self.run_chunk(&data, &kinds, range, outs, &stack_out);
        };
        super::for_each(pool.as_deref(), work, run);
        drop(stack_out);
        let res = out_tensors
            .into_iter()
            .chain(stack_tensors)
            .map(|t| t.into_tvalue())
            .collect();
        Ok(res)
    }
}

impl FusedElementwise {
    /// Run the program over the elements `start..start + len` of every output (`len` the
    /// outputs' chunk length), one block at a time; with 256-bit vectors where the CPU has
    /// them (the same operations, so the same results: Rust never contracts to FMA).
    fn run_chunk(
        &self,
        data: &[Data],
        kinds: &[Bcast],
        range: (usize, usize),
        outs: Vec<OutSlice>,
        stacks: &[RawOut],
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { self.run_chunk_avx2(data, kinds, range, outs, stacks) };
        }
        self.run_chunk_any(data, kinds, range, outs, stacks)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn run_chunk_avx2(
        &self,
        data: &[Data],
        kinds: &[Bcast],
        (start, len): (usize, usize),
        outs: Vec<OutSlice>,
        stacks: &[RawOut],
    ) {
        self.run_chunk_any(data, kinds, (start, len), outs, stacks)
    }

    #[inline(always)]
    fn run_chunk_any(
        &self,
        data: &[Data],
        kinds: &[Bcast],
        (start, len): (usize, usize),
        mut outs: Vec<OutSlice>,
        stacks: &[RawOut],
    ) {
        let mut regs: Vec<Vec<f32>> = vec![vec![0.0; BLOCK]; self.registers];
        // Inputs read through a block-sized buffer: per-channel vectors and booleans.
        let buffered: Vec<bool> = kinds
            .iter()
            .zip(data)
            .map(|(k, d)| match k {
                Bcast::Outer { .. } | Bcast::Mid { .. } => true,
                Bcast::Full => matches!(d, Data::Bool(_)),
                _ => false,
            })
            .collect();
        let mut temps: Vec<Vec<f32>> = buffered
            .iter()
            .map(|&b| if b { vec![0.0; BLOCK] } else { vec![] })
            .collect();
        let mut off = 0;
        while off < len {
            let b = BLOCK.min(len - off);
            let at = start + off;
            for (k, kind) in kinds.iter().enumerate() {
                if !buffered[k] {
                    continue;
                }
                let t = &mut temps[k][..b];
                match (*kind, data[k]) {
                    (Bcast::Outer { inner: 1, len: n }, Data::F32(src)) => {
                        // Contiguous in the input, wrapping at its end.
                        let mut i = 0;
                        while i < b {
                            let k = (at + i) % n;
                            let run = (n - k).min(b - i);
                            t[i..i + run].copy_from_slice(&src[k..k + run]);
                            i += run;
                        }
                    }
                    (Bcast::Outer { inner, len: n }, d) => {
                        let mut i = 0;
                        while i < b {
                            let g = at + i;
                            let run = (inner - g % inner).min(b - i);
                            t[i..i + run].fill(d.at((g / inner) % n));
                            i += run;
                        }
                    }
                    (Bcast::Mid { rep, run: r }, d) => {
                        let mut i = 0;
                        while i < b {
                            let g = at + i;
                            let k = (g / (rep * r)) * r + g % r;
                            let run = (r - g % r).min(b - i);
                            match d {
                                Data::F32(src) => t[i..i + run].copy_from_slice(&src[k..k + run]),
                                Data::Bool(src) => t[i..i + run]
                                    .iter_mut()
                                    .zip(&src[k..k + run])
                                    .for_each(|(y, &x)| *y = bool_f(x)),
                            }
                            i += run;
                        }
                    }
                    (_, Data::Bool(src)) => t
                        .iter_mut()
                        .zip(&src[at..at + b])
                        .for_each(|(y, &x)| *y = bool_f(x)),
                    (_, Data::F32(_)) => {}
                }
            }
            for ins in &self.program {
                let mut dst = std::mem::take(&mut regs[ins.dst]);
                {
                    let opnd = |s: Src| -> Opnd {
                        match s {
                            Src::Reg(r) => Opnd::Slice(&regs[r][..b]),
                            Src::In(k) => match (kinds[k], data[k]) {
                                (Bcast::Scalar, d) => Opnd::Scalar(d.at(0)),
                                (Bcast::Full, Data::F32(s)) => Opnd::Slice(&s[at..at + b]),
                                _ => Opnd::Slice(&temps[k][..b]),
                            },
                        }
                    };
                    let d = &mut dst[..b];
                    match ins.code {
                        Code::Un(u) => unary(u, d, opnd(ins.args[0])),
                        Code::Bin(op) => binary(op, d, opnd(ins.args[0]), opnd(ins.args[1])),
                        Code::Select => {
                            select(d, opnd(ins.args[0]), opnd(ins.args[1]), opnd(ins.args[2]))
                        }
                    }
                }
                regs[ins.dst] = dst;
            }
            for (o, &(r, _)) in outs.iter_mut().zip(&self.outputs) {
                match o {
                    OutSlice::F32(s) => s[off..off + b].copy_from_slice(&regs[r][..b]),
                    OutSlice::Bool(s) => s[off..off + b]
                        .iter_mut()
                        .zip(&regs[r][..b])
                        .for_each(|(y, &x)| *y = x != 0.0),
                }
            }
            for (st, out) in self.stacks.iter().zip(stacks) {
                for (j, &r) in st.parts.iter().enumerate() {
                    let src = &regs[r][..b];
                    let mut i = 0;
                    while i < b {
                        let (d, run) = st.place(&self.shape, j, at + i);
                        let run = run.min(b - i);
                        // SAFETY: `place` sends each element of each part to an element of
                        // its own inside the tensor (see RawOut); `run` stays in the row.
                        unsafe {
                            std::ptr::copy_nonoverlapping(src[i..].as_ptr(), out.0.add(d), run)
                        };
                        i += run;
                    }
                }
            }
            off += b;
        }
    }
}

#[inline(always)]
fn bool_f(b: bool) -> f32 {
    if b {
        1.0
    } else {
        0.0
    }
}

#[inline(always)]
fn map1(d: &mut [f32], a: Opnd, f: impl Fn(f32) -> f32) {
    match a {
        Opnd::Slice(a) => d.iter_mut().zip(a).for_each(|(y, &x)| *y = f(x)),
        Opnd::Scalar(x) => d.fill(f(x)),
    }
}

#[inline(always)]
fn unary(u: Unary, d: &mut [f32], a: Opnd) {
    match u {
        Unary::Abs => map1(d, a, f32::abs),
        Unary::Neg => map1(d, a, |x| -x),
        // tract's sign: 0 stays 0 (either zero), NaN stays NaN; written branch-free.
        Unary::Sign => map1(d, a, |x| {
            let s = bool_f(x > 0.0) - bool_f(x < 0.0);
            if x.is_nan() {
                x
            } else {
                s
            }
        }),
        Unary::Recip => map1(d, a, f32::recip),
        Unary::Sqrt => map1(d, a, f32::sqrt),
        Unary::Exp => map1(d, a, f32::exp),
        Unary::Not => map1(d, a, |x| bool_f(x == 0.0)),
    }
}

#[inline(always)]
fn map2(d: &mut [f32], a: Opnd, b: Opnd, f: impl Fn(f32, f32) -> f32) {
    match (a, b) {
        (Opnd::Slice(a), Opnd::Slice(b)) => d
            .iter_mut()
            .zip(a.iter().zip(b))
            .for_each(|(y, (&x, &z))| *y = f(x, z)),
        (Opnd::Slice(a), Opnd::Scalar(z)) => d.iter_mut().zip(a).for_each(|(y, &x)| *y = f(x, z)),
        (Opnd::Scalar(x), Opnd::Slice(b)) => d.iter_mut().zip(b).for_each(|(y, &z)| *y = f(x, z)),
        (Opnd::Scalar(x), Opnd::Scalar(z)) => d.fill(f(x, z)),
    }
}

#[inline(always)]
fn binary(op: Binary, d: &mut [f32], a: Opnd, b: Opnd) {
    match op {
        Binary::Add => map2(d, a, b, |x, z| x + z),
        Binary::Sub => map2(d, a, b, |x, z| x - z),
        Binary::Mul => map2(d, a, b, |x, z| x * z),
        // As tract's plan divides floats (`a * recip(b)`, its `declutter_div`), so that
        // fused and unfused plans agree to the bit wherever the order of operations does.
        Binary::Div => map2(d, a, b, |x, z| x * z.recip()),
        Binary::Max => map2(d, a, b, f32::max),
        Binary::Min => map2(d, a, b, f32::min),
        Binary::Eq => map2(d, a, b, |x, z| bool_f(x == z)),
        Binary::Lt => map2(d, a, b, |x, z| bool_f(x < z)),
        Binary::Gt => map2(d, a, b, |x, z| bool_f(x > z)),
        Binary::Le => map2(d, a, b, |x, z| bool_f(x <= z)),
        Binary::Ge => map2(d, a, b, |x, z| bool_f(x >= z)),
        Binary::And => map2(d, a, b, |x, z| bool_f(x != 0.0 && z != 0.0)),
        Binary::Or => map2(d, a, b, |x, z| bool_f(x != 0.0 || z != 0.0)),
    }
}

#[inline(always)]
fn select(d: &mut [f32], c: Opnd, a: Opnd, b: Opnd) {
    let at = |o: &Opnd, i: usize| match o {
        Opnd::Slice(s) => s[i],
        Opnd::Scalar(v) => *v,
    };
    match (&c, &a, &b) {
        (Opnd::Slice(c), Opnd::Slice(a), Opnd::Slice(b)) => {
            for i in 0..d.len() {
                d[i] = if c[i] != 0.0 { a[i] } else { b[i] };
            }
        }
        _ => {
            for (i, y) in d.iter_mut().enumerate() {
                *y = if at(&c, i) != 0.0 {
                    at(&a, i)
                } else {
                    at(&b, i)
                };
            }
        }
    }
}
