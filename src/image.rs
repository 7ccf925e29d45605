//! Turning image files and .npy tensors into model inputs: decode, grayscale, resize,
//! scale to [0, 1], normalise per channel, lay out as NCHW or NHWC.

use std::path::Path;

use image::{imageops, DynamicImage, RgbImage};
use ndarray::{Array3, ArrayD, Axis, IxDyn};
use serde_json::Value;

use crate::bad_input;
use crate::error::Result;

/// Memory layout of an image input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Nchw,
    Nhwc,
}

/// How image files become input tensors.
#[derive(Clone, Debug)]
pub struct Preprocess {
    /// (height, width)
    pub size: (u32, u32),
    pub channels: usize,
    pub layout: Layout,
    pub grayscale: bool,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Preprocess {
    /// Read the `onnx_rap.preprocess` metadata entry (JSON), if the model has one.
    pub fn from_metadata(json: &str, origin: &str) -> Result<PartialPreprocess> {
        let v: Value = serde_json::from_str(json).map_err(|e| {
            bad_input!("{origin}: metadata 'onnx_rap.preprocess' is not valid JSON: {e}")
        })?;
        let floats = |k: &str| -> Option<Vec<f32>> {
            v.get(k)?
                .as_array()?
                .iter()
                .map(|x| x.as_f64().map(|f| f as f32))
                .collect()
        };
        let size = v.get("size").and_then(|s| {
            let a = s.as_array()?;
            Some((a.first()?.as_u64()? as u32, a.get(1)?.as_u64()? as u32))
        });
        let layout = match v.get("layout").and_then(|l| l.as_str()) {
            Some("nhwc") => Some(Layout::Nhwc),
            Some("nchw") => Some(Layout::Nchw),
            _ => None,
        };
        Ok(PartialPreprocess {
            size,
            layout,
            grayscale: v.get("grayscale").and_then(|g| g.as_bool()),
            mean: floats("mean"),
            std: floats("std"),
        })
    }
}

/// Preprocessing settings that may each be missing (from metadata or flags).
#[derive(Clone, Debug, Default)]
pub struct PartialPreprocess {
    pub size: Option<(u32, u32)>,
    pub layout: Option<Layout>,
    pub grayscale: Option<bool>,
    pub mean: Option<Vec<f32>>,
    pub std: Option<Vec<f32>>,
}

impl PartialPreprocess {
    /// Settings of `self` where given, else of `other`.
    pub fn or(self, other: PartialPreprocess) -> PartialPreprocess {
        PartialPreprocess {
            size: self.size.or(other.size),
            layout: self.layout.or(other.layout),
            grayscale: self.grayscale.or(other.grayscale),
            mean: self.mean.or(other.mean),
            std: self.std.or(other.std),
        }
    }
}

/// An image prepared for the model, with the picture shown beside its heatmap.
pub struct Prepared {
    /// The sample tensor (no batch axis).
    pub tensor: ArrayD<f32>,
    /// The image as decoded (RGB), for the overlay.
    pub shown: RgbImage,
}

/// Decode and preprocess one image file.
pub fn load_image(path: &Path, pp: &Preprocess) -> Result<Prepared> {
    let img = image::ImageReader::open(path)
        .map_err(|e| bad_input!("{}: cannot open the image: {e}", path.display()))?
        .with_guessed_format()
        .map_err(|e| bad_input!("{}: cannot read the image: {e}", path.display()))?
        .decode()
        .map_err(|e| bad_input!("{}: not a readable PNG or JPEG image: {e}", path.display()))?;
    let file_channels = img.color().channel_count() as usize;
    let colour_channels = if file_channels >= 3 { 3 } else { 1 };
    let (h, w) = pp.size;
    let resized: DynamicImage = if img.height() == h && img.width() == w {
        img.clone()
    } else {
        img.resize_exact(w, h, imageops::FilterType::Triangle)
    };
    let data: Vec<f32> = if pp.grayscale || pp.channels == 1 {
        if pp.channels != 1 {
            return Err(bad_input!(
                "{}: --grayscale gives 1 channel but the model expects {}",
                path.display(),
                pp.channels
            ));
        }
        if colour_channels != 1 && !pp.grayscale {
            return Err(bad_input!(
                "{}: the image has {colour_channels} colour channels but the model expects 1; \
                 pass --grayscale to convert it",
                path.display()
            ));
        }
        resized
            .to_luma8()
            .into_raw()
            .iter()
            .map(|&v| v as f32 / 255.0)
            .collect()
    } else {
        if colour_channels != pp.channels {
            return Err(bad_input!(
                "{}: the image has {colour_channels} colour channel(s) but the model expects {}",
                path.display(),
                pp.channels
            ));
        }
        resized
            .to_rgb8()
            .into_raw()
            .iter()
            .map(|&v| v as f32 / 255.0)
            .collect()
    };
    let c = pp.channels;
    let hwc = Array3::from_shape_vec((h as usize, w as usize, c), data)
        .map_err(|e| bad_input!("{}: {e}", path.display()))?;
    Ok(Prepared {
        tensor: pp.arrange(hwc.into_dyn()),
        shown: img.to_rgb8(),
    })
}

impl Preprocess {
    /// Pixel values in [0, 1] with the channel as the last axis (`[H, W, C]`, or with leading
    /// batch axes) to model input: `(v - mean) / std` per channel, then the model's layout.
    pub fn arrange(&self, mut x: ArrayD<f32>) -> ArrayD<f32> {
        let rank = x.ndim();
        for (k, mut plane) in x.axis_iter_mut(Axis(rank - 1)).enumerate() {
            let m = pick(&self.mean, k, 0.0);
            let s = pick(&self.std, k, 1.0);
            plane.mapv_inplace(|v| (v - m) / s);
        }
        match self.layout {
            Layout::Nhwc => x,
            Layout::Nchw => {
                let perm: Vec<usize> = (0..rank - 3)
                    .chain([rank - 1, rank - 3, rank - 2])
                    .collect();
                x.permuted_axes(IxDyn(&perm))
                    .as_standard_layout()
                    .to_owned()
            }
        }
    }
}

fn pick(v: &[f32], k: usize, default: f32) -> f32 {
    match v.len() {
        0 => default,
        1 => v[0],
        _ => v.get(k).copied().unwrap_or(default),
    }
}

/// Read a .npy of float32 holding one sample (`sample` shape) or a batch of them.
pub fn load_npy(path: &Path, sample: &[usize]) -> Result<Vec<ArrayD<f32>>> {
    let a: ArrayD<f32> = ndarray_npy::read_npy(path).map_err(|e| {
        bad_input!(
            "{}: not a float32 .npy array ({e}); save the preprocessed input as float32",
            path.display()
        )
    })?;
    let shape = a.shape().to_vec();
    if shape == sample {
        return Ok(vec![a]);
    }
    if shape.len() == sample.len() + 1 && shape[1..] == *sample {
        return Ok(a.axis_iter(Axis(0)).map(|s| s.to_owned()).collect());
    }
    Err(bad_input!(
        "{}: the array has shape {shape:?}; the model takes {sample:?} per sample \
         (or [batch, ...] of it)",
        path.display()
    ))
}

/// Stack samples into one batch tensor.
pub fn stack(samples: &[&ArrayD<f32>]) -> ArrayD<f32> {
    let mut shape = vec![samples.len()];
    shape.extend_from_slice(samples[0].shape());
    let mut data = Vec::with_capacity(shape.iter().product());
    for s in samples {
        data.extend(s.iter().copied());
    }
    ArrayD::from_shape_vec(IxDyn(&shape), data).expect("samples share one shape")
}

/// The picture shown for a tensor input (.npy): its channels averaged, min-max scaled to gray.
pub fn tensor_picture(t: &ArrayD<f32>, layout: Layout) -> RgbImage {
    let (h, w, plane) = match (layout, t.shape()) {
        (Layout::Nchw, [c, h, w]) => (*h, *w, t.sum_axis(Axis(0)).mapv(|v| v / *c as f32)),
        (Layout::Nhwc, [h, w, c]) => (*h, *w, t.sum_axis(Axis(2)).mapv(|v| v / *c as f32)),
        _ => return RgbImage::new(1, 1),
    };
    let (lo, hi) = plane
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let v = ((plane[[y as usize, x as usize]] - lo) / span * 255.0).round() as u8;
        image::Rgb([v, v, v])
    })
}
