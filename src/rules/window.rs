//! Sliding-window geometry shared by Conv, MaxPool and AveragePool: strides, dilations and
//! padding (explicit or `auto_pad`), and the attributes of the transposed operator that maps a
//! window output back onto the input grid.

use crate::error::Result;
use crate::onnx::attr::{self, make_ints};
use crate::onnx::proto::{AttributeProto, NodeProto};
use crate::rules::unsupported_use;

/// The geometry of one windowed op over its spatial axes.
#[derive(Clone, Debug)]
pub struct Window {
    pub kernel: Vec<i64>,
    pub strides: Vec<i64>,
    pub dilations: Vec<i64>,
    pub begin: Vec<i64>,
    pub end: Vec<i64>,
    /// Spatial sizes of the input and output.
    pub input: Vec<i64>,
    pub output: Vec<i64>,
}

impl Window {
    /// Read the geometry of `node`, whose spatial input and output sizes are known.
    pub fn of(
        node: &NodeProto,
        kernel: Vec<i64>,
        input: Vec<i64>,
        output: Vec<i64>,
    ) -> Result<Window> {
        let n = kernel.len();
        if input.len() != n || output.len() != n {
            return Err(unsupported_use(node, "kernel rank and input rank disagree"));
        }
        let strides = attr::ints(node, "strides")?.unwrap_or_else(|| vec![1; n]);
        let dilations = attr::ints(node, "dilations")?.unwrap_or_else(|| vec![1; n]);
        if strides.len() != n || dilations.len() != n {
            return Err(unsupported_use(
                node,
                "strides or dilations do not match the kernel rank",
            ));
        }
        let auto = attr::string(node, "auto_pad")?.unwrap_or_else(|| "NOTSET".into());
        let (begin, end) = match auto.as_str() {
            "NOTSET" => {
                let pads = attr::ints(node, "pads")?.unwrap_or_else(|| vec![0; 2 * n]);
                if pads.len() != 2 * n {
                    return Err(unsupported_use(node, "pads do not match the kernel rank"));
                }
                (pads[..n].to_vec(), pads[n..].to_vec())
            }
            "VALID" => (vec![0; n], vec![0; n]),
            "SAME_UPPER" | "SAME_LOWER" => {
                let mut b = vec![0; n];
                let mut e = vec![0; n];
                for i in 0..n {
                    let span = (kernel[i] - 1) * dilations[i] + 1;
                    let total = ((output[i] - 1) * strides[i] + span - input[i]).max(0);
                    let small = total / 2;
                    if auto == "SAME_UPPER" {
                        (b[i], e[i]) = (small, total - small);
                    } else {
                        (b[i], e[i]) = (total - small, small);
                    }
                }
                (b, e)
            }
            other => {
                return Err(unsupported_use(
                    node,
                    &format!("auto_pad '{other}' is unknown"),
                ))
            }
        };
        // A malformed file may hold any integers here: every size positive, every pad
        // non-negative, every dilated window inside its padded input.
        for i in 0..n {
            let sane = kernel[i] >= 1
                && strides[i] >= 1
                && dilations[i] >= 1
                && begin[i] >= 0
                && end[i] >= 0
                && input[i] >= 1
                && output[i] >= 1
                && (kernel[i] - 1).saturating_mul(dilations[i])
                    < input[i].saturating_add(begin[i]).saturating_add(end[i]);
            if !sane {
                return Err(unsupported_use(
                    node,
                    &format!(
                        "window geometry out of range on spatial axis {i} (kernel {kernel:?}, \
                         strides {strides:?}, dilations {dilations:?}, pads {begin:?} {end:?}, \
                         input {input:?})"
                    ),
                ));
            }
        }
        Ok(Window {
            kernel,
            strides,
            dilations,
            begin,
            end,
            input,
            output,
        })
    }

    fn span(&self, i: usize) -> i64 {
        (self.kernel[i] - 1) * self.dilations[i] + 1
    }

    /// Padding needed past `end` so that a plain (floor) window pass yields `output`
    /// (non-zero only for ceil_mode pools).
    pub fn extra_end(&self) -> Vec<i64> {
        (0..self.kernel.len())
            .map(|i| {
                let need = (self.output[i] - 1) * self.strides[i] + self.span(i);
                (need - self.input[i] - self.begin[i] - self.end[i]).max(0)
            })
            .collect()
    }

    /// Attributes of a Conv that slides this window (pads include the ceil-mode extra).
    pub fn conv_attrs(&self) -> Vec<AttributeProto> {
        let extra = self.extra_end();
        let end: Vec<i64> = self.end.iter().zip(&extra).map(|(e, x)| e + x).collect();
        vec![
            make_ints("kernel_shape", &self.kernel),
            make_ints("strides", &self.strides),
            make_ints("dilations", &self.dilations),
            make_ints("pads", &[self.begin.clone(), end].concat()),
        ]
    }

    /// Attributes of the ConvTranspose that is the exact transpose of [`Window::conv_attrs`]:
    /// its output has the input's spatial size on every axis.
    pub fn transpose_attrs(&self) -> Vec<AttributeProto> {
        let n = self.kernel.len();
        let mut end = vec![0; n];
        let mut out_pad = vec![0; n];
        for i in 0..n {
            let full = (self.output[i] - 1) * self.strides[i] + self.span(i);
            let crop_end = full - self.begin[i] - self.input[i];
            if crop_end >= 0 {
                end[i] = crop_end;
            } else {
                out_pad[i] = -crop_end;
            }
        }
        let mut a = vec![
            make_ints("kernel_shape", &self.kernel),
            make_ints("strides", &self.strides),
            make_ints("dilations", &self.dilations),
            make_ints("pads", &[self.begin.clone(), end].concat()),
        ];
        if out_pad.iter().any(|&p| p != 0) {
            a.push(make_ints("output_padding", &out_pad));
        }
        a
    }

    /// The transpose of this window's Conv in polyphase form. Offset `t` of window `j` lands
    /// on padded position `u = j s + t d`; write `t d = p + s m` (phase `p < s`). Then phase
    /// `p` of the output at `u = s a + p` sums `g[a - m_t, t]` over the offsets of that phase:
    /// one stride-1 Conv over the per-window values with `s` output channels per axis (the
    /// phases, row-major), a kernel of `M + 1` taps (`M = max m_t`) and `M` zeros of padding
    /// on both sides, whose outputs, interleaved, are the padded input grid from `u = 0` on.
    ///
    /// `weight` is the transpose's weight `[K, 1, kernel...]` (row-major); returns the Conv
    /// weight `[phases, K, M + 1...]`, its dimensions, and `M` per axis.
    pub fn polyphase(&self, weight: &[f32], k: usize) -> (Vec<f32>, Vec<i64>, Vec<i64>) {
        let n = self.kernel.len();
        let m: Vec<i64> = (0..n)
            .map(|i| (self.kernel[i] - 1) * self.dilations[i] / self.strides[i])
            .collect();
        let phases: i64 = self.strides.iter().product();
        let taps: Vec<i64> = m.iter().map(|v| v + 1).collect();
        let tap_count: i64 = taps.iter().product();
        let offsets: i64 = self.kernel.iter().product();
        let mut out = vec![0f32; (phases * k as i64 * tap_count) as usize];
        for t in 0..offsets {
            // Offset t (row-major over the kernel) -> phase and tap per axis.
            let (mut rest, mut phase, mut tap) = (t, 0i64, 0i64);
            let mut per_axis = vec![(0i64, 0i64); n];
            for i in (0..n).rev() {
                let ti = rest % self.kernel[i];
                rest /= self.kernel[i];
                let pos = ti * self.dilations[i];
                per_axis[i] = (pos % self.strides[i], m[i] - pos / self.strides[i]);
            }
            for i in 0..n {
                phase = phase * self.strides[i] + per_axis[i].0;
                tap = tap * taps[i] + per_axis[i].1;
            }
            for c in 0..k as i64 {
                let w = weight[(c * offsets + t) as usize];
                out[((phase * k as i64 + c) * tap_count + tap) as usize] += w;
            }
        }
        let dims = [vec![phases, k as i64], taps].concat();
        (out, dims, m)
    }

    /// For stride 1, the attributes of a Conv that equals the transpose of this window's Conv
    /// when given the spatially flipped, in/out-swapped weight; `None` where that needs
    /// negative padding or the stride is not 1.
    pub fn flipped_conv_attrs(&self) -> Option<Vec<AttributeProto>> {
        if self.strides.iter().any(|&s| s != 1) {
            return None;
        }
        let n = self.kernel.len();
        let (mut b, mut e) = (vec![0; n], vec![0; n]);
        for i in 0..n {
            let full = self.span(i) - 1;
            let crop_end = full + self.output[i] - self.begin[i] - self.input[i];
            b[i] = full - self.begin[i];
            e[i] = full - crop_end;
            if b[i] < 0 || e[i] < 0 {
                return None;
            }
        }
        Some(vec![
            make_ints("kernel_shape", &self.kernel),
            make_ints("dilations", &self.dilations),
            make_ints("pads", &[b, e].concat()),
        ])
    }
}
