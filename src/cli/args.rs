//! Command-line pieces several commands share: the `--method` and `--layout` value enums,
//! the parsers of `--input-bounds`, `--size` and `--interpolation`, and their conversions into
//! the library's types.

use clap::ValueEnum;

use crate::image::{Interpolation, Layout};
use crate::rules::{Bounds, Method};

#[derive(Copy, Clone, ValueEnum)]
pub enum MethodArg {
    /// Relative Attributing Propagation (Nam et al., AAAI 2020), generalised: conserving on
    /// every architecture (residual joins, signed layer inputs); equal to rap-official on
    /// plain ReLU networks
    Rap,
    /// RAP exactly as the official code computes it (doubles the relevance at layers with
    /// signed inputs; its residual rule amplifies rounding)
    RapOfficial,
    /// LRP alpha1-beta0, the baseline of the official code (each sign path normalised alone)
    Lrp,
    /// LRP-epsilon (bias included, --epsilon), z^B at the input layer
    LrpEps,
    /// LRP alpha2-beta1, z^B at the input layer
    #[value(name = "lrp-a2b1")]
    LrpA2B1,
    /// LRP z+ (positive contributions normalised jointly), z^B at the input layer
    LrpZplus,
    /// Gradient x input (plain gradient of the target logit, times the input)
    Gradxinput,
    /// AttnLRP (Achtibat et al. 2024) for transformers: epsilon rule, Softmax by its Taylor
    /// rule, attention products split equally, LayerNorm's deviation held fixed (not
    /// conserving by design)
    Attnlrp,
}

#[derive(Copy, Clone, ValueEnum)]
pub enum LayoutArg {
    Nchw,
    Nhwc,
}

/// Two comma-separated values `A,B`; `usage` is the message for another count, `what` names
/// a value that does not parse.
fn pair<T: std::str::FromStr>(
    s: &str,
    usage: &str,
    what: &str,
) -> std::result::Result<(T, T), String> {
    let parts: Vec<&str> = s.split(',').collect();
    let [a, b] = parts.as_slice() else {
        return Err(usage.into());
    };
    let parse = |v: &str| {
        v.trim()
            .parse::<T>()
            .map_err(|_| format!("'{v}' is not {what}"))
    };
    Ok((parse(a)?, parse(b)?))
}

pub fn parse_bounds(s: &str) -> std::result::Result<(f32, f32), String> {
    let (lo, hi): (f32, f32) = pair(
        s,
        "expected two numbers LO,HI, e.g. --input-bounds=-2.2,2.7",
        "a number",
    )?;
    if lo.is_nan() || hi.is_nan() || lo > hi {
        return Err(format!("LO ({lo}) must not exceed HI ({hi})"));
    }
    Ok((lo, hi))
}

pub fn parse_size(s: &str) -> std::result::Result<(u32, u32), String> {
    pair(s, "expected H,W, e.g. --size 224,224", "a size")
}

pub fn parse_interpolation(s: &str) -> std::result::Result<Interpolation, String> {
    Interpolation::parse(s).ok_or_else(|| {
        format!(
            "unknown interpolation '{s}' (known: {})",
            Interpolation::NAMES
        )
    })
}

pub fn method(m: MethodArg) -> Method {
    match m {
        MethodArg::Rap => Method::Rap,
        MethodArg::RapOfficial => Method::RapOfficial,
        MethodArg::Lrp => Method::Lrp,
        MethodArg::LrpEps => Method::LrpEps,
        MethodArg::LrpA2B1 => Method::LrpA2B1,
        MethodArg::LrpZplus => Method::LrpZPlus,
        MethodArg::Gradxinput => Method::GradInput,
        MethodArg::Attnlrp => Method::AttnLrp,
    }
}

pub fn layout(l: LayoutArg) -> Layout {
    match l {
        LayoutArg::Nchw => Layout::Nchw,
        LayoutArg::Nhwc => Layout::Nhwc,
    }
}

/// `--reduce-output`: how a dense output becomes the explained score.
#[derive(Copy, Clone, clap::ValueEnum)]
pub enum ReduceArg {
    /// The mean over every non-batch axis
    Mean,
    /// The sum over every non-batch axis
    Sum,
}

pub fn reduction(r: ReduceArg) -> crate::pass::Reduction {
    match r {
        ReduceArg::Mean => crate::pass::Reduction::Mean,
        ReduceArg::Sum => crate::pass::Reduction::Sum,
    }
}

/// `--input-bounds LO,HI` as the input layer's bounds; per-sample when not given.
pub fn bounds(b: Option<(f32, f32)>) -> Bounds {
    b.map_or(Bounds::PerSample, |(l, h)| Bounds::Fixed(l, h))
}

/// `--threads N`, else every core.
pub fn threads(t: Option<u32>) -> usize {
    t.map_or_else(crate::parallel::cores, |t| t as usize)
}
