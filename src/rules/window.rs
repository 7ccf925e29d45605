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

    /// The transpose of this window's Conv as a stride-1 Conv with the flipped kernel, run on
    /// the per-window values spread apart (`stride - 1` zeros after each, so axis `i` has
    /// `output[i] * strides[i]` entries). Returns the length to keep of each spread axis
    /// (it may end in zeros that no input position reads) and the Conv's attributes; `None`
    /// where that needs negative padding at the start.
    pub fn spread_conv(&self) -> Option<(Vec<i64>, Vec<AttributeProto>)> {
        let n = self.kernel.len();
        let (mut keep, mut b, mut e) = (vec![0; n], vec![0; n], vec![0; n]);
        for i in 0..n {
            let len = self.output[i] * self.strides[i];
            b[i] = self.span(i) - 1 - self.begin[i];
            // The last input position reads spread entry `input - 1 + begin`.
            let end = self.input[i] + self.begin[i] - len;
            keep[i] = len + end.min(0);
            e[i] = end.max(0);
            if b[i] < 0 || keep[i] <= 0 {
                return None;
            }
        }
        Some((
            keep,
            vec![
                make_ints("kernel_shape", &self.kernel),
                make_ints("dilations", &self.dilations),
                make_ints("pads", &[b, e].concat()),
            ],
        ))
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
