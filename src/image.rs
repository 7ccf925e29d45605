//! Turning image files and .npy tensors into model inputs: decode (EXIF orientation applied),
//! convert to RGB or gray, resize (plain, or shorter side then centre crop), scale to [0, 1],
//! normalise per channel, lay out as NCHW or NHWC.
//!
//! The metadata entry `onnx_rap.preprocess` (JSON) comes in two forms:
//!
//! - `{"size": [H, W], "grayscale": true, "mean": .., "std": .., "layout": "nchw"}`: plain
//!   resize to H x W (when the image has another size);
//! - `{"resize": S, "crop": [H, W], "interpolation": "bicubic", ...}` (photos): resize so that
//!   the shorter side is S (the long side `floor(S * long / short)`), then crop H x W from the
//!   centre (offsets `(resized - crop) / 2` rounded half to even, as Python's `round`).
//!
//! The same steps as `examples/python/rap_image.py` (PIL), so both give the same tensors up to
//! the resampling filters' rounding.

use std::path::Path;

use image::{imageops, DynamicImage, ImageDecoder, RgbImage};
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

/// The resampling filter of resizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Interpolation {
    Nearest,
    /// Triangle filter (PIL's and torchvision's bilinear, antialiased when shrinking).
    #[default]
    Bilinear,
    /// Catmull-Rom (PIL's bicubic, a = -0.5).
    Bicubic,
    /// Lanczos with 3 lobes (PIL's LANCZOS).
    Lanczos,
}

impl Interpolation {
    /// The names the metadata and `--interpolation` accept.
    pub const NAMES: &'static str = "nearest, bilinear, bicubic, lanczos";

    pub fn parse(s: &str) -> Option<Interpolation> {
        match s.trim().to_ascii_lowercase().as_str() {
            "nearest" => Some(Interpolation::Nearest),
            "bilinear" | "linear" | "triangle" => Some(Interpolation::Bilinear),
            "bicubic" | "cubic" | "catmullrom" | "catmull-rom" => Some(Interpolation::Bicubic),
            "lanczos" | "lanczos3" => Some(Interpolation::Lanczos),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Interpolation::Nearest => "nearest",
            Interpolation::Bilinear => "bilinear",
            Interpolation::Bicubic => "bicubic",
            Interpolation::Lanczos => "lanczos",
        }
    }

    fn filter(self) -> imageops::FilterType {
        match self {
            Interpolation::Nearest => imageops::FilterType::Nearest,
            Interpolation::Bilinear => imageops::FilterType::Triangle,
            Interpolation::Bicubic => imageops::FilterType::CatmullRom,
            Interpolation::Lanczos => imageops::FilterType::Lanczos3,
        }
    }
}

/// How image files become input tensors.
#[derive(Clone, Debug)]
pub struct Preprocess {
    /// (height, width) of the model input: the centre crop after `resize`, else the size of
    /// a plain resize.
    pub size: (u32, u32),
    /// Photo form: resize so that the shorter side is this long, then crop `size` from the
    /// centre. None: resize to `size` directly.
    pub resize: Option<u32>,
    pub interpolation: Interpolation,
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
        let pair = |k: &str| -> Result<Option<(u32, u32)>> {
            let Some(s) = v.get(k) else {
                return Ok(None);
            };
            let hw = s.as_array().and_then(|a| {
                let h = u32::try_from(a.first()?.as_u64()?).ok()?;
                let w = u32::try_from(a.get(1)?.as_u64()?).ok()?;
                (a.len() == 2 && h > 0 && w > 0).then_some((h, w))
            });
            hw.map(Some).ok_or_else(|| {
                bad_input!(
                    "{origin}: metadata 'onnx_rap.preprocess': '{k}' must be [H, W], not {s}"
                )
            })
        };
        let size = pair("size")?;
        let crop = pair("crop")?;
        let resize = match v.get("resize") {
            None | Some(Value::Null) => None,
            Some(r) => Some(
                r.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        bad_input!(
                            "{origin}: metadata 'onnx_rap.preprocess': 'resize' must be a \
                             positive whole number (the shorter side), not {r}"
                        )
                    })?,
            ),
        };
        let interpolation = match v.get("interpolation") {
            None | Some(Value::Null) => None,
            Some(i) => Some(i.as_str().and_then(Interpolation::parse).ok_or_else(|| {
                bad_input!(
                    "{origin}: metadata 'onnx_rap.preprocess': unknown interpolation {i} \
                     (known: {})",
                    Interpolation::NAMES
                )
            })?),
        };
        let layout = match v.get("layout").and_then(|l| l.as_str()) {
            Some("nhwc") => Some(Layout::Nhwc),
            Some("nchw") => Some(Layout::Nchw),
            _ => None,
        };
        Ok(PartialPreprocess {
            size,
            resize,
            crop,
            interpolation,
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
    /// Plain resize to (H, W) (`--size`; on the command line it drops `resize`).
    pub size: Option<(u32, u32)>,
    /// The shorter side before the centre crop.
    pub resize: Option<u32>,
    /// The centre crop (H, W) after `resize` (without `resize`: a plain resize to it).
    pub crop: Option<(u32, u32)>,
    pub interpolation: Option<Interpolation>,
    pub layout: Option<Layout>,
    pub grayscale: Option<bool>,
    pub mean: Option<Vec<f32>>,
    pub std: Option<Vec<f32>>,
}

impl PartialPreprocess {
    /// Settings of `self` where given, else of `other`. A plain `size` in `self` (and no
    /// `resize` or `crop`) overrides the whole geometry of `other`: no shorter-side resize.
    pub fn or(self, other: PartialPreprocess) -> PartialPreprocess {
        let plain = self.size.is_some() && self.resize.is_none() && self.crop.is_none();
        let (resize, crop) = if plain {
            (None, None)
        } else {
            (self.resize.or(other.resize), self.crop.or(other.crop))
        };
        PartialPreprocess {
            size: self.size.or(other.size),
            resize,
            crop,
            interpolation: self.interpolation.or(other.interpolation),
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
    /// What the model saw: the resized and cropped image before normalisation (gray images
    /// as RGB), at model resolution.
    pub shown: RgbImage,
}

/// Decode one image file, upright: the EXIF orientation (JPEG, PNG) is applied.
pub fn decode(path: &Path) -> Result<DynamicImage> {
    let bad = |e: &dyn std::fmt::Display| {
        bad_input!("{}: not a readable PNG or JPEG image: {e}", path.display())
    };
    let mut decoder = image::ImageReader::open(path)
        .map_err(|e| bad_input!("{}: cannot open the image: {e}", path.display()))?
        .with_guessed_format()
        .map_err(|e| bad_input!("{}: cannot read the image: {e}", path.display()))?
        .into_decoder()
        .map_err(|e| bad(&e))?;
    // A damaged EXIF block leaves the image as stored.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| bad(&e))?;
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err(bad_input!(
            "{}: the image is empty (0 pixels)",
            path.display()
        ));
    }
    Ok(img)
}

/// Decode and preprocess one image file.
pub fn load_image(path: &Path, pp: &Preprocess) -> Result<Prepared> {
    prepare(decode(path)?, pp, &path.display().to_string())
}

/// Preprocess a decoded image; `origin` names it in errors.
pub fn prepare(img: DynamicImage, pp: &Preprocess, origin: &str) -> Result<Prepared> {
    let colour = to_model_colour(img, pp, origin)?;
    let fitted = fit(colour, pp, origin)?;
    let (h, w) = pp.size;
    let c = pp.channels;
    let (raw, shown) = match fitted {
        DynamicImage::ImageLuma8(g) => {
            let shown = DynamicImage::ImageLuma8(g.clone()).to_rgb8();
            (g.into_raw(), shown)
        }
        other => {
            let rgb = other.into_rgb8();
            (rgb.clone().into_raw(), rgb)
        }
    };
    let data: Vec<f32> = raw.iter().map(|&v| v as f32 / 255.0).collect();
    let hwc = Array3::from_shape_vec((h as usize, w as usize, c), data)
        .map_err(|e| bad_input!("{origin}: {e}"))?;
    Ok(Prepared {
        tensor: pp.arrange(hwc.into_dyn()),
        shown,
    })
}

/// The image as 8-bit gray (`Luma8`, for 1-channel inputs) or 8-bit RGB (`Rgb8`), converted
/// as image libraries convert: 16-bit to 8-bit, palettes expanded, alpha dropped, gray
/// replicated into RGB. A colour image for a gray model needs `grayscale`.
fn to_model_colour(img: DynamicImage, pp: &Preprocess, origin: &str) -> Result<DynamicImage> {
    let is_gray = !img.color().has_color();
    match pp.channels {
        1 => {
            if !is_gray && !pp.grayscale {
                return Err(bad_input!(
                    "{origin}: a colour image but the model expects 1 colour channel; \
                     pass --grayscale to convert it"
                ));
            }
            if is_gray {
                return Ok(DynamicImage::ImageLuma8(img.into_luma8()));
            }
            // PIL's "L": ITU-R 601-2 luma, L = (19595 R + 38470 G + 7471 B + 2^15) >> 16.
            let rgb = img.into_rgb8();
            let (w, h) = rgb.dimensions();
            let luma: Vec<u8> = rgb
                .pixels()
                .map(|p| {
                    let [r, g, b] = p.0.map(u32::from);
                    ((19595 * r + 38470 * g + 7471 * b + 0x8000) >> 16) as u8
                })
                .collect();
            Ok(DynamicImage::ImageLuma8(
                image::GrayImage::from_raw(w, h, luma).expect("one byte per pixel"),
            ))
        }
        3 if pp.grayscale => Err(bad_input!(
            "{origin}: --grayscale gives 1 colour channel but the model expects 3"
        )),
        3 => Ok(DynamicImage::ImageRgb8(img.into_rgb8())),
        c => Err(bad_input!(
            "{origin}: the model expects {c} colour channels; images give 1 (gray) or 3 (RGB)"
        )),
    }
}

/// Resize (and crop) to the model's size `pp.size`.
fn fit(img: DynamicImage, pp: &Preprocess, origin: &str) -> Result<DynamicImage> {
    let (h, w) = pp.size;
    let filter = pp.interpolation.filter();
    let (iw, ih) = (img.width(), img.height());
    let Some(s) = pp.resize else {
        return Ok(if (iw, ih) == (w, h) {
            img
        } else {
            img.resize_exact(w, h, filter)
        });
    };
    let (nw, nh) = shorter_side(iw, ih, s);
    if nh < h || nw < w {
        return Err(bad_input!(
            "{origin}: the image resized to {nw}x{nh} (shorter side {s}) is smaller than the \
             crop {w}x{h} (width x height); use a larger --resize or a smaller --crop"
        ));
    }
    let resized = if (nw, nh) == (iw, ih) {
        img
    } else {
        img.resize_exact(nw, nh, filter)
    };
    let (top, left) = (centre_offset(nh, h), centre_offset(nw, w));
    Ok(resized.crop_imm(left, top, w, h))
}

/// (width, height) after resizing (`w`, `h`) so that the shorter side is `s`: the long side
/// is `floor(s * long / short)`.
pub fn shorter_side(w: u32, h: u32, s: u32) -> (u32, u32) {
    let scale = |long: u32, short: u32| ((s as u64 * long as u64) / short as u64) as u32;
    if w <= h {
        (s, scale(h, w))
    } else {
        (scale(w, h), s)
    }
}

/// Offset of a centre crop of `crop` out of `full`: `(full - crop) / 2` rounded half to even.
pub fn centre_offset(full: u32, crop: u32) -> u32 {
    let d = full.saturating_sub(crop);
    let half = d / 2;
    if d % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// Shortest side of the pictures `explain` writes beside the heatmap.
pub const DISPLAY_MIN_SIDE: u32 = 224;

/// The integer factor that makes a `w` x `h` picture at least [`DISPLAY_MIN_SIDE`] pixels on
/// its short side (1 when it is already).
pub fn display_factor(w: u32, h: u32) -> u32 {
    let short = w.min(h).max(1);
    DISPLAY_MIN_SIDE.div_ceil(short).max(1)
}

/// `img` enlarged `k` times by pixel replication (nearest neighbour).
pub fn enlarge(img: &RgbImage, k: u32) -> RgbImage {
    if k <= 1 {
        return img.clone();
    }
    let (w, h) = img.dimensions();
    RgbImage::from_fn(w * k, h * k, |x, y| *img.get_pixel(x / k, y / k))
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
