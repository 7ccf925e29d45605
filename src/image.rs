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

/// A decoder's error as one line naming the file.
fn not_readable(path: &Path, e: &dyn std::fmt::Display) -> crate::Error {
    // Decoders' messages may span lines: one line, whitespace collapsed.
    let e = e
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    bad_input!("{}: not a readable PNG or JPEG image: {e}", path.display())
}

/// The file opened and its header read (format, size): what can be checked without
/// decoding the pixels.
fn open_decoder(path: &Path) -> Result<impl image::ImageDecoder> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
        return Err(bad_input!(
            "{}: the file is empty, not an image",
            path.display()
        ));
    }
    image::ImageReader::open(path)
        .map_err(|e| bad_input!("{}: cannot open the image: {e}", path.display()))?
        .with_guessed_format()
        .map_err(|e| bad_input!("{}: cannot read the image: {e}", path.display()))?
        .into_decoder()
        .map_err(|e| not_readable(path, &e))
}

/// Check that `path` looks like a readable image (its header), without decoding it.
pub fn probe(path: &Path) -> Result<()> {
    let (w, h) = open_decoder(path)?.dimensions();
    if w == 0 || h == 0 {
        return Err(bad_input!(
            "{}: the image is empty (0 pixels)",
            path.display()
        ));
    }
    Ok(())
}

/// Decode one image file, upright: the EXIF orientation (JPEG, PNG) is applied.
pub fn decode(path: &Path) -> Result<DynamicImage> {
    let mut decoder = open_decoder(path)?;
    // A damaged EXIF block leaves the image as stored.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| not_readable(path, &e))?;
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
            "{origin}: resized to {nw}x{nh} (width x height, shorter side {s}), the image is \
             smaller than the crop {w}x{h}; use a larger --resize or a smaller --crop"
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

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, Rgb};

    /// A `w` x `h` picture of 2x2 blocks; block (bx, by) has colour `[10 bx, 100 + 10 by, 7]`.
    fn blocks(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([(10 * (x / 2)) as u8, (100 + 10 * (y / 2)) as u8, 7])
        })
    }

    fn photo_pp(crop: (u32, u32), resize: u32) -> Preprocess {
        Preprocess {
            size: crop,
            resize: Some(resize),
            interpolation: Interpolation::Nearest,
            channels: 3,
            layout: Layout::Nhwc,
            grayscale: false,
            mean: vec![],
            std: vec![],
        }
    }

    /// The prepared tensor ([H, W, 3], NHWC, no normalisation) back as bytes.
    fn bytes(p: &Prepared) -> Vec<u8> {
        p.tensor.iter().map(|v| (v * 255.0).round() as u8).collect()
    }

    #[test]
    fn shorter_side_and_centre_offsets_as_python_computes_them() {
        assert_eq!(shorter_side(6, 4, 2), (3, 2));
        assert_eq!(shorter_side(4, 6, 2), (2, 3));
        assert_eq!(shorter_side(5, 5, 3), (3, 3));
        // chelsea.png is 451x300: int(256 * 451 / 300) = int(384.85) = 384
        assert_eq!(shorter_side(451, 300, 256), (384, 256));
        // rocket.png is 640x427: int(256 * 640 / 427) = int(383.7) = 383
        assert_eq!(shorter_side(640, 427, 256), (383, 256));
        // round((full - crop) / 2), halves to even
        assert_eq!(centre_offset(3, 2), 0); // 0.5 -> 0
        assert_eq!(centre_offset(5, 2), 2); // 1.5 -> 2
        assert_eq!(centre_offset(7, 2), 2); // 2.5 -> 2
        assert_eq!(centre_offset(9, 2), 4); // 3.5 -> 4
        assert_eq!(centre_offset(384, 224), 80);
        assert_eq!(centre_offset(383, 224), 80); // 79.5 -> 80
        assert_eq!(centre_offset(2, 2), 0);
    }

    #[test]
    fn a_6x4_image_resized_to_shorter_side_2_and_cropped() {
        // 6x4 of 2x2 blocks -> 3x2 (one pixel per block) -> centre crop 2x2 at left 0, top 0
        let p = prepare(
            DynamicImage::ImageRgb8(blocks(6, 4)),
            &photo_pp((2, 2), 2),
            "t",
        )
        .unwrap();
        assert_eq!(p.tensor.shape(), &[2, 2, 3]);
        #[rustfmt::skip]
        assert_eq!(bytes(&p), vec![
            0, 100, 7,   10, 100, 7,
            0, 110, 7,   10, 110, 7,
        ]);
        assert_eq!(p.shown.dimensions(), (2, 2));
        assert_eq!(
            p.shown.into_raw(),
            bytes_of(&[[0, 100], [10, 100], [0, 110], [10, 110]])
        );
    }

    fn bytes_of(rg: &[[u8; 2]]) -> Vec<u8> {
        rg.iter().flat_map(|[r, g]| [*r, *g, 7]).collect()
    }

    #[test]
    fn the_crop_is_centred_with_python_rounding() {
        // 10x4 -> 5x2 -> crop 2x2 at left round(1.5) = 2: block columns 2 and 3
        let p = prepare(
            DynamicImage::ImageRgb8(blocks(10, 4)),
            &photo_pp((2, 2), 2),
            "t",
        )
        .unwrap();
        assert_eq!(
            bytes(&p),
            bytes_of(&[[20, 100], [30, 100], [20, 110], [30, 110]])
        );
        // portrait 4x14 -> 2x7 -> crop H,W = 3,2 at top round(4 / 2) = 2: block rows 2, 3, 4
        let p = prepare(
            DynamicImage::ImageRgb8(blocks(4, 14)),
            &photo_pp((3, 2), 2),
            "t",
        )
        .unwrap();
        assert_eq!(p.tensor.shape(), &[3, 2, 3]);
        assert_eq!(
            bytes(&p),
            bytes_of(&[
                [0, 120],
                [10, 120],
                [0, 130],
                [10, 130],
                [0, 140],
                [10, 140]
            ])
        );
        // no resize needed (the shorter side is already 2): only the crop, at left
        // round(2.5) = 2
        let ramp = RgbImage::from_fn(7, 2, |x, y| Rgb([(10 * x) as u8, (100 + y) as u8, 7]));
        let p = prepare(
            DynamicImage::ImageRgb8(ramp),
            &Preprocess {
                interpolation: Interpolation::Bicubic,
                ..photo_pp((2, 2), 2)
            },
            "t",
        )
        .unwrap();
        assert_eq!(
            bytes(&p),
            bytes_of(&[[20, 100], [30, 100], [20, 101], [30, 101]])
        );
    }

    #[test]
    fn a_crop_larger_than_the_resized_image_is_refused() {
        let e = prepare(
            DynamicImage::ImageRgb8(blocks(6, 4)),
            &photo_pp((3, 3), 2),
            "small.png",
        )
        .err()
        .unwrap();
        let msg = e.to_string();
        assert_eq!(e.exit_code(), 2, "{msg}");
        assert!(msg.contains("small.png"), "{msg}");
        assert!(msg.contains("smaller than the crop"), "{msg}");
        assert_eq!(msg.lines().count(), 1, "{msg}");
    }

    #[test]
    fn metadata_photo_form_and_plain_form() {
        let photo = Preprocess::from_metadata(
            r#"{"resize": 256, "crop": [224, 224], "interpolation": "bicubic", "layout": "nchw",
                "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}"#,
            "m",
        )
        .unwrap();
        assert_eq!(photo.resize, Some(256));
        assert_eq!(photo.crop, Some((224, 224)));
        assert_eq!(photo.interpolation, Some(Interpolation::Bicubic));
        let digits =
            Preprocess::from_metadata(r#"{"size": [64, 64], "grayscale": true}"#, "m").unwrap();
        assert_eq!((digits.size, digits.resize), (Some((64, 64)), None));
        // --size on the command line drops the metadata's shorter-side resize and crop
        let flags = PartialPreprocess {
            size: Some((200, 200)),
            ..Default::default()
        };
        let merged = flags.or(photo.clone());
        assert_eq!(
            (merged.size, merged.resize, merged.crop),
            (Some((200, 200)), None, None)
        );
        // --resize keeps the metadata's crop
        let flags = PartialPreprocess {
            resize: Some(300),
            ..Default::default()
        };
        let merged = flags.or(photo);
        assert_eq!((merged.resize, merged.crop), (Some(300), Some((224, 224))));
        for bad in [
            r#"{"interpolation": "sinc"}"#,
            r#"{"resize": 0}"#,
            r#"{"resize": "big"}"#,
            r#"{"crop": [224]}"#,
        ] {
            let e = Preprocess::from_metadata(bad, "m.onnx").err().unwrap();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(e.to_string().starts_with("m.onnx: metadata"), "{e}");
        }
    }

    /// A little-endian EXIF (TIFF) block with one entry: Orientation = `o`.
    fn exif_orientation(o: u16) -> Vec<u8> {
        let mut v = b"II".to_vec();
        v.extend(42u16.to_le_bytes());
        v.extend(8u32.to_le_bytes()); // first IFD
        v.extend(1u16.to_le_bytes()); // one entry
        v.extend(0x0112u16.to_le_bytes()); // Orientation
        v.extend(3u16.to_le_bytes()); // SHORT
        v.extend(1u32.to_le_bytes()); // one value
        v.extend(o.to_le_bytes());
        v.extend([0, 0]);
        v.extend(0u32.to_le_bytes()); // no next IFD
        v
    }

    #[test]
    fn exif_orientation_of_a_jpeg_is_applied() {
        // 16x8: left half red, right half blue; EXIF 6 = rotate 90 degrees clockwise, so the
        // upright image is 8x16 with red on top.
        let img = RgbImage::from_fn(16, 8, |x, _| {
            if x < 8 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rotated.jpg");
        let mut buf = Vec::new();
        let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 95);
        enc.set_exif_metadata(exif_orientation(6)).unwrap();
        enc.write_image(img.as_raw(), 16, 8, image::ExtendedColorType::Rgb8)
            .unwrap();
        std::fs::write(&path, &buf).unwrap();
        let up = decode(&path).unwrap().to_rgb8();
        assert_eq!(up.dimensions(), (8, 16));
        let near = |p: &Rgb<u8>, want: [u8; 3]| {
            p.0.iter()
                .zip(want)
                .all(|(a, b)| (*a as i32 - b as i32).abs() <= 40)
        };
        assert!(
            near(up.get_pixel(4, 2), [255, 0, 0]),
            "{:?}",
            up.get_pixel(4, 2)
        );
        assert!(
            near(up.get_pixel(4, 13), [0, 0, 255]),
            "{:?}",
            up.get_pixel(4, 13)
        );
        // Without the EXIF block the same JPEG stays as stored.
        let mut plain = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 95)
            .write_image(img.as_raw(), 16, 8, image::ExtendedColorType::Rgb8)
            .unwrap();
        std::fs::write(&path, &plain).unwrap();
        let d = decode(&path).unwrap();
        assert_eq!((d.width(), d.height()), (16, 8));
    }

    /// CRC-32 (PNG's) of `bytes`.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    /// A palette PNG (8-bit indices), written by hand: zlib with stored blocks.
    fn palette_png(w: u32, h: u32, palette: &[[u8; 3]], index: &[u8]) -> Vec<u8> {
        let chunk = |out: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
            out.extend((data.len() as u32).to_be_bytes());
            let mut body = kind.to_vec();
            body.extend(data);
            out.extend(&body);
            out.extend(crc32(&body).to_be_bytes());
        };
        let mut raw = Vec::new();
        for row in index.chunks(w as usize) {
            raw.push(0); // filter: none
            raw.extend(row);
        }
        let mut z = vec![0x78, 0x01, 1]; // zlib header, one final stored block
        z.extend((raw.len() as u16).to_le_bytes());
        z.extend((!(raw.len() as u16)).to_le_bytes());
        z.extend(&raw);
        let (mut a, mut b) = (1u32, 0u32);
        for &x in &raw {
            a = (a + x as u32) % 65521;
            b = (b + a) % 65521;
        }
        z.extend(((b << 16) | a).to_be_bytes());
        let mut ihdr = Vec::new();
        ihdr.extend(w.to_be_bytes());
        ihdr.extend(h.to_be_bytes());
        ihdr.extend([8, 3, 0, 0, 0]); // 8 bits, palette, deflate, adaptive, no interlace
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut png, b"IHDR", &ihdr);
        chunk(&mut png, b"PLTE", &palette.concat());
        chunk(&mut png, b"IDAT", &z);
        chunk(&mut png, b"IEND", &[]);
        png
    }

    #[test]
    fn sixteen_bit_palette_gray_and_alpha_pngs_decode_like_their_8_bit_rgb() {
        let (w, h) = (5u32, 3u32);
        let rgb = RgbImage::from_fn(w, h, |x, y| {
            Rgb([(40 * x) as u8, (90 * y) as u8, (13 * x * y + 5) as u8])
        });
        let dir = tempfile::tempdir().unwrap();
        let pp = Preprocess {
            size: (h, w),
            resize: None,
            interpolation: Interpolation::Bilinear,
            channels: 3,
            layout: Layout::Nhwc,
            grayscale: false,
            mean: vec![],
            std: vec![],
        };
        let load = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            load_image(&p, &pp).unwrap()
        };
        let encode = |img: DynamicImage| {
            let mut b = std::io::Cursor::new(Vec::new());
            img.write_to(&mut b, image::ImageFormat::Png).unwrap();
            b.into_inner()
        };
        let want = load("rgb8.png", &encode(DynamicImage::ImageRgb8(rgb.clone())));
        assert_eq!(want.shown, rgb);
        assert_eq!(bytes(&want), rgb.as_raw().clone());
        // 16 bits per channel: v * 257 is v again in 8 bits
        let rgb16 = image::ImageBuffer::<Rgb<u16>, Vec<u16>>::from_fn(w, h, |x, y| {
            Rgb(rgb.get_pixel(x, y).0.map(|v| v as u16 * 257))
        });
        let got = load("rgb16.png", &encode(DynamicImage::ImageRgb16(rgb16)));
        assert_eq!(got.tensor, want.tensor);
        // RGBA: the alpha channel is dropped
        let rgba = image::RgbaImage::from_fn(w, h, |x, y| {
            let [r, g, b] = rgb.get_pixel(x, y).0;
            image::Rgba([r, g, b, (x * 50) as u8])
        });
        let got = load("rgba.png", &encode(DynamicImage::ImageRgba8(rgba)));
        assert_eq!(got.tensor, want.tensor);
        // a palette of the image's colours
        let mut palette: Vec<[u8; 3]> = Vec::new();
        let index: Vec<u8> = rgb
            .pixels()
            .map(|p| {
                let k = palette.iter().position(|c| *c == p.0).unwrap_or_else(|| {
                    palette.push(p.0);
                    palette.len() - 1
                });
                k as u8
            })
            .collect();
        let got = load("palette.png", &palette_png(w, h, &palette, &index));
        assert_eq!(got.tensor, want.tensor);
        // gray (8 and 16 bits) into an RGB model: the gray value in all three channels
        let gray = image::GrayImage::from_fn(w, h, |x, y| image::Luma([(x * 50 + y) as u8]));
        let as_rgb: Vec<u8> = gray.as_raw().iter().flat_map(|&v| [v, v, v]).collect();
        let got = load("gray8.png", &encode(DynamicImage::ImageLuma8(gray.clone())));
        assert_eq!(bytes(&got), as_rgb);
        let gray16 = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(w, h, |x, y| {
            image::Luma([gray.get_pixel(x, y).0[0] as u16 * 257])
        });
        let got = load("gray16.png", &encode(DynamicImage::ImageLuma16(gray16)));
        assert_eq!(bytes(&got), as_rgb);
    }

    #[test]
    fn colour_to_gray_is_pils_luma_and_needs_grayscale() {
        let img = RgbImage::from_fn(3, 1, |x, _| match x {
            0 => Rgb([255, 0, 0]),
            1 => Rgb([0, 255, 0]),
            _ => Rgb([10, 20, 200]),
        });
        let mut pp = Preprocess {
            size: (1, 3),
            resize: None,
            interpolation: Interpolation::Bilinear,
            channels: 1,
            layout: Layout::Nchw,
            grayscale: false,
            mean: vec![],
            std: vec![],
        };
        let e = prepare(DynamicImage::ImageRgb8(img.clone()), &pp, "c.png")
            .err()
            .unwrap();
        assert!(e.to_string().contains("--grayscale"), "{e}");
        pp.grayscale = true;
        let p = prepare(DynamicImage::ImageRgb8(img), &pp, "c.png").unwrap();
        // PIL: L = R * 299/1000 + G * 587/1000 + B * 114/1000, rounded
        // (255, 0, 0) -> 76.2 -> 76, (0, 255, 0) -> 149.7 -> 150, (10, 20, 200) -> 37.5 -> 38
        assert_eq!(bytes(&p), vec![76, 150, 38]);
        assert_eq!(p.shown.get_pixel(1, 0).0, [150, 150, 150]);
    }

    #[test]
    fn display_factor_reaches_224_pixels() {
        assert_eq!(display_factor(64, 64), 4);
        assert_eq!(display_factor(224, 224), 1);
        assert_eq!(display_factor(300, 100), 3);
        assert_eq!(display_factor(1000, 500), 1);
        let img = RgbImage::from_fn(2, 1, |x, _| Rgb([x as u8, 0, 0]));
        let big = enlarge(&img, 3);
        assert_eq!(big.dimensions(), (6, 3));
        assert_eq!(big.get_pixel(2, 2).0, [0, 0, 0]);
        assert_eq!(big.get_pixel(3, 0).0, [1, 0, 0]);
    }
}
