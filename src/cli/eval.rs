//! `onnx-rap eval MODEL`: every method the compiler knows, scored on a benchmark with object
//! boxes and masks by the metrics of `crate::metrics` (protocol: docs/EVALUATION.md).
//!
//! Per method: compile in memory with `rap_target` (the true class is explained), run the
//! heatmaps in batches with tract, score each map, then perturb patches most-relevant-first
//! and least-relevant-first with fixed-seed noise and run the original model on every step.
//! A folder of photos gets, besides, its labels (`labels.json`), a random floor, deletion
//! and insertion AUC against a blurred baseline, ABPC and paired bootstrap intervals
//! (docs/EVALUATION.md, "The photo benchmark").

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{Array2, Array3, ArrayD, Axis, IxDyn};
use ndarray_npy::{NpzReader, ReadableElement, WriteNpyExt};
use serde_json::{json, Value as Json};

use super::args::{self, MethodArg};
use super::eval_sanity::{self, Sanity};
use crate::analysis::{find_roles, infer_facts, input_sample_dims};
use crate::bad_input;
use crate::error::{Error, Result};
use crate::explainer::{image_preprocess, metadata, Explainer, Settings};
use crate::image::{PartialPreprocess, Preprocess};
use crate::ir;
use crate::metrics::{self, BoxPx};
use crate::pass::{Options, HEATMAP};
use crate::plot;
use crate::rules::Method;
use crate::runtime::{Plan, Value};

/// Metadata key: the model's benchmark file, relative to the model file.
pub const META_BENCHMARK: &str = "onnx_rap.benchmark";

/// The labels of a photo folder: file name -> class index.
pub const LABELS_FILE: &str = "labels.json";
/// Sigma (pixels) of the Gaussian blur that deletion removes to and insertion starts from.
pub const BLUR_SIGMA: f64 = 5.0;
/// Images shown in `maps.png`.
pub const SHOWN: usize = 3;
/// Bootstrap resamples of the paired intervals.
pub const RESAMPLES: usize = 2000;
/// The per-image metrics of the photo benchmark, in the order of the dump and the table.
pub const PHOTO_METRICS: [&str; 5] = [
    "aopc_morf",
    "aopc_lerf",
    "abpc",
    "deletion_auc",
    "insertion_auc",
];

/// Which class a photo's explanation and scores are for.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExplainClass {
    /// The model's prediction.
    Predicted,
    /// The label of `labels.json`.
    True,
}

/// What to evaluate and how.
pub struct Args {
    pub model: PathBuf,
    /// The benchmark (.npz); default: the model's `onnx_rap.benchmark` metadata.
    pub data: Option<PathBuf>,
    pub methods: Vec<Method>,
    pub epsilon: f32,
    /// Evaluate the first N images only.
    pub limit: Option<usize>,
    pub patch: usize,
    pub steps: usize,
    pub seed: u64,
    pub batch: usize,
    /// Worker threads: images run in parallel on one shared plan (both the explanations and
    /// the perturbation curves); threads beyond the images go inside tract.
    pub threads: usize,
    /// Where the curves go (CSV and PNG).
    pub out: PathBuf,
    /// Write every heatmap and perturbation curve here (.npy) for an independent check.
    pub dump: Option<PathBuf>,
    /// Photos: explain the true class or the prediction [default: true with labels.json].
    pub explain: Option<ExplainClass>,
    /// Photos: heatmaps computed elsewhere, scored beside the methods: (name, folder of
    /// `<photo stem>.npy`).
    pub maps: Vec<(String, PathBuf)>,
    /// The randomisation sanity check at these depths (top layers randomised).
    pub sanity: Vec<usize>,
}

/// The benchmark: 8-bit images with their class, object box and object mask.
pub struct Benchmark {
    pub path: PathBuf,
    /// `[N, H, W]` (gray) or `[N, H, W, 3]`.
    pub images: ArrayD<u8>,
    pub labels: Vec<i64>,
    pub boxes: Vec<BoxPx>,
    pub masks: Array3<bool>,
}

impl Benchmark {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

fn read_entry<T: ReadableElement, R: Read + Seek>(
    npz: &mut NpzReader<R>,
    path: &Path,
    name: &str,
) -> Result<ArrayD<T>> {
    npz.by_name(&format!("{name}.npy"))
        .or_else(|_| npz.by_name(name))
        .map_err(|e| {
            bad_input!(
                "{}: no readable array '{name}' ({e}); a benchmark holds images (uint8), \
                 labels (int64), boxes (int64 [N,4]) and masks (uint8 or bool)",
                path.display()
            )
        })
}

/// Read a benchmark .npz and check that its arrays agree.
pub fn load_benchmark(path: &Path) -> Result<Benchmark> {
    let file = std::fs::File::open(path)
        .map_err(|e| bad_input!("{}: cannot open the benchmark: {e}", path.display()))?;
    let mut npz = NpzReader::new(file)
        .map_err(|e| bad_input!("{}: not a readable .npz file: {e}", path.display()))?;
    let images: ArrayD<u8> = read_entry(&mut npz, path, "images")?;
    let labels: ArrayD<i64> = read_entry(&mut npz, path, "labels")?;
    let boxes: ArrayD<i64> = read_entry(&mut npz, path, "boxes")?;
    let masks: ArrayD<u8> = match read_entry::<u8, _>(&mut npz, path, "masks") {
        Ok(m) => m,
        Err(_) => read_entry::<bool, _>(&mut npz, path, "masks")?.mapv(u8::from),
    };
    let n = labels.len();
    let bad = |what: String| bad_input!("{}: {what}", path.display());
    if images.ndim() < 3 || images.shape()[0] != n {
        return Err(bad(format!(
            "images have shape {:?}; expected [{n}, H, W] or [{n}, H, W, 3]",
            images.shape()
        )));
    }
    let (h, w) = (images.shape()[1], images.shape()[2]);
    if boxes.shape() != [n, 4] {
        return Err(bad(format!(
            "boxes have shape {:?}; expected [{n}, 4]",
            boxes.shape()
        )));
    }
    if masks.shape() != [n, h, w] {
        return Err(bad(format!(
            "masks have shape {:?}; expected [{n}, {h}, {w}]",
            masks.shape()
        )));
    }
    let mut bx = Vec::with_capacity(n);
    for (i, b) in boxes.outer_iter().enumerate() {
        let v: Vec<i64> = b.iter().copied().collect();
        let ok = v[0] >= 0 && v[1] >= 0 && v[0] < v[2] && v[1] < v[3];
        if !ok || v[2] as usize > w || v[3] as usize > h {
            return Err(bad(format!(
                "box {i} is {v:?}; expected [x0, y0, x1, y1) inside the {w}x{h} image"
            )));
        }
        bx.push(BoxPx {
            x0: v[0] as usize,
            y0: v[1] as usize,
            x1: v[2] as usize,
            y1: v[3] as usize,
        });
    }
    let masks = masks
        .mapv(|v| v != 0)
        .into_dimensionality()
        .map_err(|e| bad(e.to_string()))?;
    Ok(Benchmark {
        path: path.to_path_buf(),
        images,
        labels: labels.iter().copied().collect(),
        boxes: bx,
        masks,
    })
}

/// Scores of one method over the benchmark.
#[derive(Clone, Debug)]
pub struct Scores {
    /// A method's name, or `random` (the floor of the photo benchmark).
    pub name: String,
    pub images: usize,
    pub outside_inside: f64,
    /// Images whose box holds no positive relevance (left out of the ratio's mean).
    pub ratio_undefined: usize,
    pub pointing: f64,
    pub iou: f64,
    pub miou: f64,
    pub pixel_accuracy: f64,
    pub aopc_morf: f64,
    pub aopc_lerf: f64,
    /// Mean over images of f(x^0) - f(x^k), k = 0..steps.
    pub morf_curve: Vec<f64>,
    pub lerf_curve: Vec<f64>,
    pub ms_per_image: f64,
    /// The photo benchmark's scores (None on an .npz benchmark).
    pub photo: Option<PhotoScores>,
}

/// Deletion / insertion AUC and ABPC (means over images) and every image's metrics.
#[derive(Clone, Debug)]
pub struct PhotoScores {
    pub abpc: f64,
    pub deletion_auc: f64,
    pub insertion_auc: f64,
    /// Per image, the values of `PHOTO_METRICS`.
    pub per_image: Vec<[f64; 5]>,
}

impl Scores {
    pub fn to_json(&self) -> Json {
        let mut j = json!({
            "method": self.name,
            "images": self.images,
            "outside_inside": self.outside_inside,
            "outside_inside_undefined": self.ratio_undefined,
            "pointing": self.pointing,
            "iou": self.iou,
            "miou": self.miou,
            "pixel_accuracy": self.pixel_accuracy,
            "aopc_morf": self.aopc_morf,
            "aopc_lerf": self.aopc_lerf,
            "morf_curve": self.morf_curve,
            "lerf_curve": self.lerf_curve,
            "ms_per_image": self.ms_per_image,
        });
        if let Some(p) = &self.photo {
            j["abpc"] = json!(p.abpc);
            j["deletion_auc"] = json!(p.deletion_auc);
            j["insertion_auc"] = json!(p.insertion_auc);
        }
        j
    }
}

/// A method against rap on one metric: the mean per-image difference rap - method and its
/// paired percentile bootstrap interval.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub method: String,
    pub metric: &'static str,
    pub diff: metrics::Interval,
}

/// What the photo benchmark adds to the report.
#[derive(Clone, Debug)]
pub struct PhotoReport {
    /// Top-1 accuracy of the model on the photos (None without labels.json).
    pub accuracy: Option<f64>,
    pub explained: ExplainClass,
    pub baseline: String,
    pub deletion_steps: usize,
    pub resamples: usize,
    pub comparisons: Vec<Comparison>,
}

/// The whole evaluation.
pub struct Report {
    pub model: String,
    pub data: String,
    pub images: usize,
    pub patch: usize,
    pub steps: usize,
    pub patches: usize,
    pub seed: u64,
    pub scores: Vec<Scores>,
    pub files: Vec<PathBuf>,
    pub photo: Option<PhotoReport>,
    /// The randomisation sanity check, one entry per depth (empty without --sanity).
    pub sanity: Vec<Sanity>,
}

impl Report {
    pub fn to_json(&self) -> Json {
        let mut j = json!({
            "model": self.model,
            "data": self.data,
            "images": self.images,
            "patch": self.patch,
            "steps": self.steps,
            "patches": self.patches,
            "seed": self.seed,
            "methods": self.scores.iter().map(Scores::to_json).collect::<Vec<_>>(),
            "files": self.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        });
        if !self.sanity.is_empty() {
            j["sanity"] = self.sanity.iter().map(Sanity::to_json).collect();
        }
        if let Some(p) = &self.photo {
            j["accuracy"] = json!(p.accuracy);
            j["explained"] = json!(match p.explained {
                ExplainClass::True => "true",
                ExplainClass::Predicted => "predicted",
            });
            j["baseline"] = json!(p.baseline);
            j["deletion_steps"] = json!(p.deletion_steps);
            j["resamples"] = json!(p.resamples);
            j["bootstrap"] = p
                .comparisons
                .iter()
                .map(|c| {
                    json!({"method": c.method, "metric": c.metric, "rap_minus_method": c.diff.mean,
                           "lo": c.diff.lo, "hi": c.diff.hi})
                })
                .collect();
        }
        j
    }

    /// The table as Markdown (what docs/EVALUATION.md shows).
    pub fn table(&self) -> String {
        let mut s = match &self.photo {
            Some(p) => self.photo_table(p),
            None => self.box_table(),
        };
        s += &eval_sanity::table(&self.sanity, RESAMPLES);
        s
    }

    /// The table of a benchmark with boxes: localisation and region perturbation.
    fn box_table(&self) -> String {
        let mut s = String::from(
            "| method | outside/inside ↓ | pointing ↑ | IoU ↑ | mIoU ↑ | pixel acc. ↑ | AOPC MoRF ↑ | AOPC LeRF ↓ | ms/image |\n\
             |---|---|---|---|---|---|---|---|---|\n",
        );
        for r in &self.scores {
            let undefined = if r.ratio_undefined > 0 {
                format!(" ({} undef.)", r.ratio_undefined)
            } else {
                String::new()
            };
            let f3 = |v: f64| {
                if v.is_nan() {
                    "—".to_string()
                } else {
                    format!("{v:.3}")
                }
            };
            let pointing = if r.pointing.is_nan() {
                "—".to_string()
            } else {
                format!("{:.1}%", 100.0 * r.pointing)
            };
            s += &format!(
                "| {} | {}{undefined} | {pointing} | {} | {} | {} | {:.3} | {:.3} | {:.1} |\n",
                r.name,
                f3(r.outside_inside),
                f3(r.iou),
                f3(r.miou),
                f3(r.pixel_accuracy),
                r.aopc_morf,
                r.aopc_lerf,
                r.ms_per_image
            );
        }
        s
    }
}

impl Report {
    /// The photo benchmark's table: perturbation scores, then the accuracy, the baseline and
    /// the paired bootstrap intervals against rap.
    fn photo_table(&self, p: &PhotoReport) -> String {
        let mut s = String::from(
            "| method | AOPC MoRF ↑ | AOPC LeRF ↓ | ABPC ↑ | deletion AUC ↓ | insertion AUC ↑ | ms/image |\n\
             |---|---|---|---|---|---|---|\n",
        );
        for r in &self.scores {
            let Some(q) = &r.photo else { continue };
            // Maps made elsewhere have no time here.
            let ms = if r.ms_per_image.is_nan() {
                "—".to_string()
            } else {
                format!("{:.1}", r.ms_per_image)
            };
            s += &format!(
                "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {ms} |\n",
                r.name, r.aopc_morf, r.aopc_lerf, q.abpc, q.deletion_auc, q.insertion_auc,
            );
        }
        let explained = match p.explained {
            ExplainClass::True => "the true class (labels.json)",
            ExplainClass::Predicted => "the predicted class",
        };
        s += &format!("\nexplained: {explained}; ");
        s += &match p.accuracy {
            Some(a) => format!("top-1 accuracy of the model: {:.1}%\n", 100.0 * a),
            None => "no labels.json: accuracy unknown\n".to_string(),
        };
        s += &format!(
            "deletion / insertion: {} steps over all {} patches, baseline {}\n",
            p.deletion_steps, self.patches, p.baseline
        );
        if p.comparisons.is_empty() {
            return s;
        }
        s += &format!(
            "\npaired bootstrap, rap - method: mean over images [95% percentile interval], {} \
             resamples of the images (seed {}); rap is better where the difference is > 0 on \
             AOPC MoRF, ABPC and insertion AUC, and < 0 on AOPC LeRF and deletion AUC\n\n",
            p.resamples, self.seed
        );
        s += "| comparison | AOPC MoRF | AOPC LeRF | ABPC | deletion AUC | insertion AUC |\n|---|---|---|---|---|---|\n";
        let mut methods: Vec<&str> = p.comparisons.iter().map(|c| c.method.as_str()).collect();
        methods.dedup();
        for m in methods {
            s += &format!("| rap - {m} |");
            for metric in PHOTO_METRICS {
                if let Some(c) = p
                    .comparisons
                    .iter()
                    .find(|c| c.method == m && c.metric == metric)
                {
                    s += &format!(
                        " {:+.3} [{:+.3}, {:+.3}] |",
                        c.diff.mean, c.diff.lo, c.diff.hi
                    );
                }
            }
            s += "\n";
        }
        s
    }
}

/// What the model needs: its input name and preprocessing, its logits output.
struct ModelInfo {
    model: ir::Model,
    logits: String,
    classes: usize,
    pp: Preprocess,
}

fn model_info(path: &Path) -> Result<ModelInfo> {
    let origin = path.display().to_string();
    let model = super::load_model(path)?;
    let facts = infer_facts(&ir::export(&model)?, &origin)?;
    let roles = find_roles(&model.graph, &facts, None, None, &origin)?;
    let sample: Vec<usize> = input_sample_dims(&facts, &roles.input, &origin)?;
    let pp = image_preprocess(&model, &sample, PartialPreprocess::default(), &origin)?.ok_or_else(
        || {
            if roles.embedding.is_some() {
                bad_input!(
                    "{origin}: the model reads token ids; evaluate it on labelled texts with \
                     --data TEXTS.jsonl ({{\"text\": ..., \"label\": K}} a line, e.g. \
                     models/data/nanoguard_texts.jsonl)"
                )
            } else {
                bad_input!("{origin}: the input is neither an image nor token ids; eval needs one")
            }
        },
    )?;
    let logits = model
        .graph
        .outputs
        .first()
        .map(|o| o.name().to_string())
        .unwrap_or_default();
    Ok(ModelInfo {
        classes: roles.classes as usize,
        logits,
        model,
        pp,
    })
}

/// The benchmark named by `--data`, else by the model's metadata (relative to the model).
pub fn benchmark_path(model: &Path, m: &ir::Model, data: Option<&Path>) -> Result<PathBuf> {
    if let Some(d) = data {
        return Ok(d.to_path_buf());
    }
    let rel = metadata(m, META_BENCHMARK).ok_or_else(|| {
        bad_input!(
            "{}: the model names no benchmark (metadata '{META_BENCHMARK}'); pass --data FILE.npz",
            model.display()
        )
    })?;
    Ok(model.parent().unwrap_or(Path::new(".")).join(rel))
}

/// Pixels of image `i` in [0, 1] as `[H, W, C]` (gray images: C = 1).
fn pixels(b: &Benchmark, i: usize, channels: usize) -> Result<Array3<f32>> {
    let img = b.images.index_axis(Axis(0), i);
    let (h, w) = (img.shape()[0], img.shape()[1]);
    let c_file = if img.ndim() == 3 { img.shape()[2] } else { 1 };
    if c_file != channels {
        return Err(bad_input!(
            "{}: images have {c_file} channel(s) but the model expects {channels}",
            b.path.display()
        ));
    }
    let v: Vec<f32> = img.iter().map(|&p| p as f32 / 255.0).collect();
    Array3::from_shape_vec((h, w, channels), v).map_err(|e| Error::Runtime(e.to_string()))
}

/// Pixels, predicted classes and files of a folder's photos.
type Photos = (Vec<Array3<f32>>, Vec<i64>, Vec<PathBuf>);

/// The photos of a folder (sorted by name, the first `limit`) as the model sees them, pixels
/// in [0, 1] `[H, W, C]`, the model's predicted class for each, and their files.
fn photos(
    dir: &Path,
    info: &ModelInfo,
    model_bytes: &[u8],
    limit: Option<usize>,
) -> Result<Photos> {
    let mut files = super::explain::expand(&[dir.to_path_buf()])?;
    files.retain(|f| f.extension().is_none_or(|e| e != "npy"));
    files.truncate(limit.unwrap_or(files.len()));
    let (h, w, c) = (
        info.pp.size.0 as usize,
        info.pp.size.1 as usize,
        info.pp.channels,
    );
    let probe = info.pp.arrange(ArrayD::zeros(IxDyn(&[1, h, w, c])));
    let plan = Plan::new(model_bytes, &[Value::F32(probe)], vec![info.logits.clone()])?;
    let mut pix = Vec::new();
    let mut labels = Vec::new();
    for f in &files {
        let img = crate::image::load_image(f, &info.pp)?;
        let x = img.tensor.insert_axis(Axis(0));
        let out = plan.run(&[Value::F32(x)])?;
        let logits = &out[0].1;
        let t = (0..info.classes).fold(0, |b, k| {
            if logits[[0, k]] > logits[[0, b]] {
                k
            } else {
                b
            }
        });
        labels.push(t as i64);
        let shown = img.shown;
        let v: Vec<f32> = if c == 1 {
            shown.pixels().map(|p| p[0] as f32 / 255.0).collect()
        } else {
            shown.as_raw().iter().map(|&p| p as f32 / 255.0).collect()
        };
        pix.push(Array3::from_shape_vec((h, w, c), v).map_err(|e| Error::Runtime(e.to_string()))?);
    }
    Ok((pix, labels, files))
}

/// The true class of every photo from the folder's `labels.json` (an object: file name ->
/// class index), or None when the folder has none. A photo missing from it, or a label that
/// is not an integer in 0..classes, is an error naming the file.
pub fn read_labels(dir: &Path, files: &[PathBuf], classes: usize) -> Result<Option<Vec<i64>>> {
    let path = dir.join(LABELS_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| bad_input!("{}: cannot read: {e}", path.display()))?;
    let map: serde_json::Map<String, Json> = serde_json::from_str(&text).map_err(|e| {
        bad_input!(
            "{}: not a JSON object of file name -> class index: {e}",
            path.display()
        )
    })?;
    files
        .iter()
        .map(|f| {
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let v = map.get(&name).ok_or_else(|| {
                bad_input!(
                    "{}: no label for the photo {name} ({})",
                    path.display(),
                    f.display()
                )
            })?;
            match v.as_i64() {
                Some(k) if k >= 0 && (k as usize) < classes => Ok(k),
                _ => Err(bad_input!(
                    "{}: the label of {name} is {v}; expected a class index in 0..{classes}",
                    path.display()
                )),
            }
        })
        .collect::<Result<Vec<i64>>>()
        .map(Some)
}

/// One image's perturbation curves: MoRF and LeRF logits, and on photos the deletion and
/// insertion probabilities.
type Curves = (Vec<f64>, Vec<f64>, Option<(Vec<f64>, Vec<f64>)>);

/// The images an eval scores: a benchmark's (.npz: images, labels, boxes, masks) or a photo
/// folder's, with the class each explains.
struct Data {
    /// Pixels in [0, 1], `[H, W, C]` each.
    pix: Vec<Array3<f32>>,
    /// The explained class of each image.
    labels: Vec<i64>,
    /// A benchmark's boxes and masks (localisation is scored only with them).
    loc: Option<(Vec<BoxPx>, Array3<bool>)>,
    /// A photo folder: which class is explained, the top-1 accuracy (with labels.json), the
    /// files.
    photo: Option<(ExplainClass, Option<f64>, Vec<PathBuf>)>,
}

/// Read `data_path`: a folder of photos (no boxes, so only perturbation is scored, for the
/// true class of labels.json or the prediction) or a benchmark .npz.
fn load_data(args: &Args, info: &ModelInfo, data_path: &Path, model_bytes: &[u8]) -> Result<Data> {
    let (h, w) = (info.pp.size.0 as usize, info.pp.size.1 as usize);
    let c = info.pp.channels;
    if data_path.is_dir() {
        let (pix, predicted, files) = photos(data_path, info, model_bytes, args.limit)?;
        let truth = read_labels(data_path, &files, info.classes)?;
        let explained = args.explain.unwrap_or(if truth.is_some() {
            ExplainClass::True
        } else {
            ExplainClass::Predicted
        });
        let accuracy = truth.as_ref().map(|t| {
            t.iter().zip(&predicted).filter(|(a, b)| a == b).count() as f64 / t.len().max(1) as f64
        });
        let labels = match (explained, truth) {
            (ExplainClass::Predicted, _) => predicted,
            (ExplainClass::True, Some(t)) => t,
            (ExplainClass::True, None) => {
                return Err(bad_input!(
                    "{}: --explain true needs the true classes in {}; none there",
                    data_path.display(),
                    data_path.join(LABELS_FILE).display()
                ))
            }
        };
        Ok(Data {
            pix,
            labels,
            loc: None,
            photo: Some((explained, accuracy, files)),
        })
    } else {
        if args.explain.is_some() {
            return Err(bad_input!(
                "{}: --explain applies to a folder of photos; a benchmark .npz always \
                 explains its labels",
                data_path.display()
            ));
        }
        let bench = load_benchmark(data_path)?;
        let n = args.limit.unwrap_or(bench.len()).min(bench.len());
        let (bh, bw) = (bench.images.shape()[1], bench.images.shape()[2]);
        if (bh, bw) != (h, w) {
            return Err(bad_input!(
                "{}: images are {bh}x{bw} but {} takes {h}x{w}",
                data_path.display(),
                args.model.display(),
            ));
        }
        if let Some(&bad) = bench
            .labels
            .iter()
            .find(|&&l| l < 0 || l as usize >= info.classes)
        {
            return Err(bad_input!(
                "{}: label {bad} is out of range for a model with {} classes",
                data_path.display(),
                info.classes
            ));
        }
        let pix: Vec<Array3<f32>> = (0..n)
            .map(|i| pixels(&bench, i, c))
            .collect::<Result<_>>()?;
        let labels = bench.labels[..n].to_vec();
        Ok(Data {
            pix,
            labels,
            loc: Some((bench.boxes, bench.masks)),
            photo: None,
        })
    }
}

/// The heatmaps of `method` for every image (explaining `labels`), in batches (the last one
/// padded by repeating its last image) run in parallel on one plan; with the explanation time
/// per image in ms.
fn heatmaps(
    args: &Args,
    info: &ModelInfo,
    model: &ir::Model,
    method: Method,
    pix: &[Array3<f32>],
    labels: &[i64],
    workers: usize,
) -> Result<(Vec<Array2<f64>>, f64)> {
    let (h, w) = (info.pp.size.0 as usize, info.pp.size.1 as usize);
    let c = info.pp.channels;
    let n = pix.len();
    let settings = Settings {
        compile: Options {
            method,
            epsilon: args.epsilon,
            ..Options::default()
        },
        ..Settings::default()
    };
    let ex = Explainer::new(model.clone(), &args.model, &settings)?;
    let bsz = ex.max_batch().unwrap_or(args.batch.clamp(1, n));
    ex.warm_up(&[Value::F32(
        info.pp.arrange(ArrayD::zeros(IxDyn(&[bsz, h, w, c]))),
    )])?;

    let starts: Vec<usize> = (0..n).step_by(bsz).collect();
    let runs = crate::parallel::map(workers, &starts, |_, &start| {
        let idx: Vec<usize> = (0..bsz).map(|k| (start + k).min(n - 1)).collect();
        let views: Vec<_> = idx.iter().map(|&i| pix[i].view()).collect();
        let x = info.pp.arrange(
            ndarray::stack(Axis(0), &views)
                .map_err(|e| Error::Runtime(e.to_string()))?
                .into_dyn(),
        );
        let t: Vec<i64> = idx.iter().map(|&i| labels[i]).collect();
        let clock = Instant::now();
        let out = ex.explain(x, Some(&t))?;
        let took = clock.elapsed().as_secs_f64();
        let heat = out
            .output(HEATMAP)
            .ok_or_else(|| Error::Runtime("no heatmap output".into()))?;
        let mut maps = Vec::new();
        for (k, &i) in idx.iter().enumerate() {
            if start + k == i {
                maps.push(
                    heat.index_axis(Axis(0), k)
                        .mapv(|v| v as f64)
                        .into_dimensionality::<ndarray::Ix2>()
                        .map_err(|e| Error::Runtime(e.to_string()))?,
                );
            }
        }
        Ok((maps, took))
    })?;
    let explain_s: f64 = runs.iter().map(|(_, t)| t).sum();
    let maps: Vec<Array2<f64>> = runs.into_iter().flat_map(|(m, _)| m).collect();
    let ms = 1e3 * explain_s / (n.div_ceil(bsz) * bsz) as f64;
    Ok((maps, ms))
}

/// Run every method; `progress` shows a bar on stderr.
pub fn run(args: &Args, progress: bool) -> Result<Report> {
    let info = model_info(&args.model)?;
    let origin = args.model.display().to_string();
    let data_path = benchmark_path(&args.model, &info.model, args.data.as_deref())?;
    let (h, w) = (info.pp.size.0 as usize, info.pp.size.1 as usize);
    let c = info.pp.channels;
    let model_bytes = crate::onnx::encode(&ir::export(&info.model)?);
    let Data {
        pix,
        labels,
        loc,
        photo,
    } = load_data(args, &info, &data_path, &model_bytes)?;
    let n = pix.len();
    if n == 0 {
        return Err(bad_input!("{}: no images to evaluate", data_path.display()));
    }
    let p = args.patch;
    let npatch = metrics::patches(h, w, p).len();
    if p == 0 || npatch == 0 {
        return Err(bad_input!("--patch {p} does not fit a {h}x{w} image"));
    }
    let steps = args.steps.min(npatch);
    // Maps made elsewhere are read (and checked) before any method runs.
    let peer_maps = read_peer_maps(
        &args.maps,
        photo.as_ref().map(|p| &p.2[..]),
        h,
        w,
        &data_path,
    )?;

    // The original model runs each perturbation step alone: tract's per-image time at a
    // batch of 2 or more is up to twice batch 1's (digits_resnet: 1.33-1.43 ms against 0.66
    // ms; README, Performance).
    let probe = info.pp.arrange(ArrayD::zeros(IxDyn(&[1, h, w, c])));
    let forward = Plan::new(
        &model_bytes,
        &[Value::F32(probe)],
        vec![info.logits.clone()],
    )?;
    // The logits of one image `[H, W, C]` in [0, 1].
    let logits_of = |cur: &Array3<f32>| -> Result<Vec<f64>> {
        let x = info.pp.arrange(cur.clone().insert_axis(Axis(0)).into_dyn());
        let out = forward.run(&[Value::F32(x)])?;
        let l = &out[0].1;
        if l.len() != info.classes {
            return Err(Error::Runtime(format!(
                "{origin}: the logits have shape {:?}, not [1, classes]",
                l.shape()
            )));
        }
        Ok(l.iter().map(|&v| v as f64).collect())
    };
    // Photos: the blurred baseline of deletion and insertion.
    let blurred: Vec<Array3<f32>> = if photo.is_some() {
        pix.iter()
            .map(|x| metrics::gaussian_blur(x, BLUR_SIGMA))
            .collect()
    } else {
        Vec::new()
    };

    if let Some(d) = &args.dump {
        std::fs::create_dir_all(d)
            .map_err(|e| bad_input!("{}: cannot create the folder: {e}", d.display()))?;
    }
    let rows = args.methods.len() * (1 + args.sanity.len())
        + args.maps.len()
        + usize::from(photo.is_some());
    let bar = super::progress_bar(progress, n * rows, "images", true)?;

    let workers = crate::runtime::share_threads(args.threads, n);
    let grid = metrics::patches(h, w, p);
    // Copy the patches listed in `order` from `src` into `cur`.
    let paste = |cur: &mut Array3<f32>, src: &Array3<f32>, order: &[usize]| {
        for &o in order {
            let (y0, x0) = grid[o];
            for y in y0..y0 + p {
                for x in x0..x0 + p {
                    for ch in 0..c {
                        cur[[y, x, ch]] = src[[y, x, ch]];
                    }
                }
            }
        }
    };
    // Score one method's maps: localisation (benchmarks with boxes), region perturbation,
    // and on photos deletion / insertion.
    let score = |name: &str, maps: Vec<Array2<f64>>, ms_per_image: f64| -> Result<Scores> {
        let (mut ratio_sum, mut ratio_n, mut hits) = (0.0, 0usize, 0usize);
        let (mut iou, mut miou, mut acc) = (0.0, 0.0, 0.0);
        if let Some((boxes, masks)) = &loc {
            for (i, m) in maps.iter().enumerate() {
                if let Some(r) = metrics::outside_inside(m.view(), boxes[i]) {
                    ratio_sum += r;
                    ratio_n += 1;
                }
                hits += metrics::pointing_hit(m.view(), boxes[i]) as usize;
                let s = metrics::segmentation(m.view(), masks.index_axis(Axis(0), i));
                iou += s.iou;
                miou += s.miou;
                acc += s.pixel_accuracy;
            }
        }

        // Region perturbation: both orders; one image per worker.
        let per_image = crate::parallel::map(workers, &maps, |i, m| -> Result<Curves> {
            let noise = metrics::noise(args.seed, i as u64, h * w * c);
            let noise = Array3::from_shape_vec((h, w, c), noise)
                .map_err(|e| Error::Runtime(e.to_string()))?;
            let t = labels[i] as usize;
            let mut both = Vec::with_capacity(2);
            for morf in [true, false] {
                let order = metrics::patch_order(m.view(), p, morf);
                let mut cur = pix[i].clone();
                let mut curve = Vec::with_capacity(steps + 1);
                for k in 0..=steps {
                    if k > 0 {
                        paste(&mut cur, &noise, &order[k - 1..k]);
                    }
                    curve.push(logits_of(&cur)?[t]);
                }
                both.push(curve);
            }
            let lerf = both.pop().unwrap_or_default();
            let morf = both.pop().unwrap_or_default();
            // Deletion and insertion (Petsiuk et al. 2018): most relevant patches first,
            // `steps` steps over all patches, the explained class's probability.
            let di = if photo.is_some() {
                let order = metrics::patch_order(m.view(), p, true);
                let (mut del, mut ins) = (pix[i].clone(), blurred[i].clone());
                let (mut dc, mut ic) = (Vec::new(), Vec::new());
                for k in 0..=steps {
                    if k > 0 {
                        let from = metrics::patches_at_step(k - 1, steps, npatch);
                        let to = metrics::patches_at_step(k, steps, npatch);
                        paste(&mut del, &blurred[i], &order[from..to]);
                        paste(&mut ins, &pix[i], &order[from..to]);
                    }
                    dc.push(metrics::softmax_prob(&logits_of(&del)?, t));
                    ic.push(metrics::softmax_prob(&logits_of(&ins)?, t));
                }
                Some((dc, ic))
            } else {
                None
            };
            bar.inc(1);
            Ok((morf, lerf, di))
        })?;
        let mut curves = [vec![0.0; steps + 1], vec![0.0; steps + 1]];
        let mut aopc = [0.0; 2];
        let mut raw: [Vec<f64>; 4] = Default::default();
        let xs: Vec<f64> = (0..=steps)
            .map(|k| metrics::patches_at_step(k, steps, npatch) as f64 / npatch as f64)
            .collect();
        let mut rows = Vec::with_capacity(n);
        for (morf, lerf, di) in &per_image {
            for (o, f) in [morf, lerf].into_iter().enumerate() {
                for k in 0..=steps {
                    curves[o][k] += f[0] - f[k];
                }
                aopc[o] += metrics::aopc(f);
                raw[o].extend_from_slice(f);
            }
            if let Some((dc, ic)) = di {
                raw[2].extend_from_slice(dc);
                raw[3].extend_from_slice(ic);
                rows.push([
                    metrics::aopc(morf),
                    metrics::aopc(lerf),
                    metrics::abpc(morf, lerf),
                    metrics::trapezoid(&xs, dc),
                    metrics::trapezoid(&xs, ic),
                ]);
            }
        }
        if let Some(d) = &args.dump {
            write_maps(&d.join(format!("{name}_heatmaps.npy")), &maps)?;
            let tags = ["morf", "lerf", "deletion", "insertion"];
            for (o, tag) in tags.iter().enumerate() {
                if o >= 2 && photo.is_none() {
                    break;
                }
                let a = Array2::from_shape_vec((n, steps + 1), raw[o].clone())
                    .map_err(|e| Error::Runtime(e.to_string()))?;
                write_npy(&d.join(format!("{name}_{tag}.npy")), &a)?;
            }
        }
        let nf = n as f64;
        // Without boxes (photos) the localisation scores are undefined (NaN: "—", null).
        let located = if loc.is_some() { 1.0 } else { f64::NAN };
        let mean_col = |j: usize| rows.iter().map(|r| r[j]).sum::<f64>() / nf;
        Ok(Scores {
            name: name.to_string(),
            images: n,
            outside_inside: if ratio_n > 0 {
                ratio_sum / ratio_n as f64
            } else {
                f64::NAN
            },
            ratio_undefined: if loc.is_some() { n - ratio_n } else { 0 },
            pointing: located * hits as f64 / nf,
            iou: located * iou / nf,
            miou: located * miou / nf,
            pixel_accuracy: located * acc / nf,
            aopc_morf: aopc[0] / nf,
            aopc_lerf: aopc[1] / nf,
            morf_curve: curves[0].iter().map(|v| v / nf).collect(),
            lerf_curve: curves[1].iter().map(|v| v / nf).collect(),
            ms_per_image,
            photo: photo.as_ref().map(|_| PhotoScores {
                abpc: mean_col(2),
                deletion_auc: mean_col(3),
                insertion_auc: mean_col(4),
                per_image: rows.clone(),
            }),
        })
    };

    let mut scores = Vec::new();
    let mut originals = Vec::new();
    // The first images' maps of every row, for maps.png.
    let mut shown: Vec<(String, Vec<Array2<f64>>)> = Vec::new();
    for &method in &args.methods {
        bar.set_prefix(method.name());
        let (maps, ms) = heatmaps(args, &info, &info.model, method, &pix, &labels, workers)?;
        if !args.sanity.is_empty() {
            originals.push((method, maps.clone()));
        }
        shown.push((method.name().to_string(), maps[..n.min(SHOWN)].to_vec()));
        scores.push(score(method.name(), maps, ms)?);
    }
    for ((name, _), maps) in args.maps.iter().zip(peer_maps) {
        bar.set_prefix(name.clone());
        shown.push((name.clone(), maps[..n.min(SHOWN)].to_vec()));
        scores.push(score(name, maps, f64::NAN)?);
    }
    // Photos: the random floor, a fixed-seed uniform map per image.
    if photo.is_some() {
        bar.set_prefix("random");
        let maps: Vec<Array2<f64>> = (0..n)
            .map(|i| metrics::random_map(args.seed, i as u64, h, w))
            .collect();
        shown.push(("random".to_string(), maps[..n.min(SHOWN)].to_vec()));
        scores.push(score("random", maps, 0.0)?);
    }
    // The sanity check: the same class explained on models with their top layers re-drawn.
    let resamples = metrics::bootstrap_resamples(n, RESAMPLES, args.seed);
    let mut sanity = Vec::new();
    for &k in &args.sanity {
        let (randomized, names) = eval_sanity::randomize_top(&info.model, k, args.seed)?;
        if let Some(d) = &args.dump {
            // The randomised model, for an independent look at what was re-drawn.
            let path = d.join(format!("random_top{k}.onnx"));
            std::fs::write(&path, crate::onnx::encode(&ir::export(&randomized)?))
                .map_err(|e| bad_input!("{}: cannot write: {e}", path.display()))?;
        }
        let mut rows = Vec::new();
        for (method, before) in &originals {
            bar.set_prefix(format!("{}/top{k}", method.name()));
            let (after, _) = heatmaps(args, &info, &randomized, *method, &pix, &labels, workers)?;
            bar.inc(n as u64);
            if let Some(d) = &args.dump {
                write_maps(
                    &d.join(format!("{}_random_top{k}_heatmaps.npy", method.name())),
                    &after,
                )?;
            }
            rows.push(eval_sanity::row(method.name(), before, &after, &resamples));
        }
        sanity.push(Sanity {
            layers: k,
            randomized: names,
            rows,
        });
    }
    bar.finish_and_clear();

    let photo_report = match &photo {
        Some((explained, accuracy, files)) => {
            let comparisons = compare_with_rap(&scores, args.seed);
            if let Some(d) = &args.dump {
                write_per_image(d, &scores, files, &labels)?;
                // The pixels the model saw, for an independent rebuild of every input.
                let views: Vec<_> = pix.iter().map(|x| x.view()).collect();
                let all =
                    ndarray::stack(Axis(0), &views).map_err(|e| Error::Runtime(e.to_string()))?;
                write_npy(&d.join("images.npy"), &all)?;
            }
            Some(PhotoReport {
                accuracy: *accuracy,
                explained: *explained,
                baseline: format!("Gaussian blur, sigma = {BLUR_SIGMA} pixels"),
                deletion_steps: steps,
                resamples: RESAMPLES,
                comparisons,
            })
        }
        None => None,
    };
    let mut report = Report {
        model: origin,
        data: data_path.display().to_string(),
        images: n,
        patch: p,
        steps,
        patches: npatch,
        seed: args.seed,
        scores,
        files: Vec::new(),
        photo: photo_report,
        sanity,
    };
    report.files = write_curves(&report, &args.out)?;
    report
        .files
        .push(write_grid(&args.out, &pix[..n.min(SHOWN)], &shown)?);
    Ok(report)
}

/// Every method other than rap against rap, on every photo metric: the per-image
/// differences rap - method with their paired bootstrap interval (one set of resamples for
/// all, so the images stay paired). Empty without a rap row.
fn compare_with_rap(scores: &[Scores], seed: u64) -> Vec<Comparison> {
    let Some(rap) = scores.iter().find(|s| s.name == Method::Rap.name()) else {
        return Vec::new();
    };
    let Some(base) = &rap.photo else {
        return Vec::new();
    };
    let resamples = metrics::bootstrap_resamples(base.per_image.len(), RESAMPLES, seed);
    let mut out = Vec::new();
    for s in scores.iter().filter(|s| s.name != rap.name) {
        let Some(q) = &s.photo else { continue };
        for (j, metric) in PHOTO_METRICS.iter().enumerate() {
            let d: Vec<f64> = base
                .per_image
                .iter()
                .zip(&q.per_image)
                .map(|(a, b)| a[j] - b[j])
                .collect();
            out.push(Comparison {
                method: s.name.clone(),
                metric,
                diff: metrics::bootstrap_interval(&d, &resamples, 0.95),
            });
        }
    }
    out
}

/// `per_image.json` in the dump folder: the photos, their explained class, and every
/// method's per-image metrics.
fn write_per_image(dir: &Path, scores: &[Scores], files: &[PathBuf], labels: &[i64]) -> Result<()> {
    let mut methods = serde_json::Map::new();
    for s in scores {
        let Some(q) = &s.photo else { continue };
        let mut m = serde_json::Map::new();
        for (j, metric) in PHOTO_METRICS.iter().enumerate() {
            m.insert(
                metric.to_string(),
                json!(q.per_image.iter().map(|r| r[j]).collect::<Vec<_>>()),
            );
        }
        methods.insert(s.name.clone(), Json::Object(m));
    }
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default()
        })
        .collect();
    let j = json!({"files": names, "explained_class": labels, "methods": methods});
    let path = dir.join("per_image.json");
    std::fs::write(&path, j.to_string())
        .map_err(|e| bad_input!("{}: cannot write: {e}", path.display()))
}

/// The maps of `--maps NAME=DIR`: per photo, `DIR/<file stem>.npy`, float32 or float64,
/// `[H, W]` at the model's input size, or with a channel axis (first or last, leading unit
/// axes allowed) that is summed; a folder of photos only.
fn read_peer_maps(
    maps: &[(String, PathBuf)],
    files: Option<&[PathBuf]>,
    h: usize,
    w: usize,
    data: &Path,
) -> Result<Vec<Vec<Array2<f64>>>> {
    if maps.is_empty() {
        return Ok(Vec::new());
    }
    let Some(files) = files else {
        return Err(bad_input!(
            "{}: --maps scores maps of a folder of photos (one <photo>.npy per photo); \
             this is a benchmark .npz",
            data.display()
        ));
    };
    let mut seen: Vec<&str> = Vec::new();
    for (name, _) in maps {
        let clash = Method::ALL.iter().any(|m| m.name() == name) || name == "random";
        if clash || seen.contains(&name.as_str()) {
            return Err(bad_input!(
                "--maps {name}=...: the name is taken (a method, random, or another --maps); \
                 name the maps after their tool, e.g. --maps captum-ig=DIR"
            ));
        }
        seen.push(name);
    }
    maps.iter()
        .map(|(_, dir)| {
            files
                .iter()
                .map(|f| {
                    let stem = f
                        .file_stem()
                        .map(|s| s.to_string_lossy())
                        .unwrap_or_default();
                    read_map(&dir.join(format!("{stem}.npy")), h, w)
                })
                .collect()
        })
        .collect()
}

/// One map of `--maps` (see `read_peer_maps`) as `[H, W]`.
fn read_map(path: &Path, h: usize, w: usize) -> Result<Array2<f64>> {
    if !path.is_file() {
        return Err(bad_input!(
            "{}: missing; --maps needs one <photo file stem>.npy per photo",
            path.display()
        ));
    }
    let a: ArrayD<f64> = match ndarray_npy::read_npy::<_, ArrayD<f32>>(path) {
        Ok(a) => a.mapv(f64::from),
        Err(_) => ndarray_npy::read_npy::<_, ArrayD<f64>>(path).map_err(|e| {
            bad_input!(
                "{}: not a float32 or float64 .npy array: {e}",
                path.display()
            )
        })?,
    };
    let mut shape: Vec<usize> = a.shape().to_vec();
    while shape.len() > 2 && shape[0] == 1 && shape[1..] != [h, w] {
        shape.remove(0);
    }
    let a = a
        .into_shape_with_order(IxDyn(&shape))
        .map_err(|e| Error::Runtime(e.to_string()))?;
    let m = match shape.as_slice() {
        [y, x] if (*y, *x) == (h, w) => a,
        [_, y, x] if (*y, *x) == (h, w) => a.sum_axis(Axis(0)),
        [y, x, _] if (*y, *x) == (h, w) => a.sum_axis(Axis(2)),
        _ => {
            return Err(bad_input!(
                "{}: shape {:?}; the model's input is {h}x{w}: a map is [{h}, {w}], or \
                 [C, {h}, {w}] / [{h}, {w}, C] (channels summed)",
                path.display(),
                shape
            ))
        }
    };
    if m.iter().any(|v| !v.is_finite()) {
        return Err(bad_input!(
            "{}: the map has NaN or infinite values",
            path.display()
        ));
    }
    m.into_dimensionality::<ndarray::Ix2>()
        .map_err(|e| Error::Runtime(e.to_string()))
}

/// Maps `[H, W]` stacked as one float32 `[N, H, W]` .npy.
fn write_maps(path: &Path, maps: &[Array2<f64>]) -> Result<()> {
    let stack: Vec<_> = maps.iter().map(|m| m.mapv(|v| v as f32)).collect();
    let views: Vec<_> = stack.iter().map(|m| m.view()).collect();
    let all = ndarray::stack(Axis(0), &views).map_err(|e| Error::Runtime(e.to_string()))?;
    write_npy(path, &all)
}

fn write_npy<A: WriteNpyExt>(path: &Path, a: &A) -> Result<()> {
    let f = std::fs::File::create(path)
        .map_err(|e| bad_input!("{}: cannot write: {e}", path.display()))?;
    a.write_npy(std::io::BufWriter::new(f))
        .map_err(|e| Error::Runtime(format!("{}: {e}", path.display())))
}

/// `maps.png` in `out`: a row per image (the first `SHOWN`), the image then every row's map
/// (each scaled by its own max |value|, the colours of `explain`), captioned by name.
fn write_grid(
    out: &Path,
    pix: &[Array3<f32>],
    shown: &[(String, Vec<Array2<f64>>)],
) -> Result<PathBuf> {
    use image::{Rgb, RgbImage};
    let rows: Vec<Vec<RgbImage>> = pix
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let (h, w, c) = x.dim();
            // Small images (digits) are enlarged to at least 128 pixels.
            let k = 128u32.div_ceil(h.min(w) as u32).max(1);
            let (ph, pw) = (h as u32 * k, w as u32 * k);
            let img = RgbImage::from_fn(w as u32, h as u32, |px, py| {
                let v = |ch: usize| {
                    (x[[py as usize, px as usize, ch.min(c - 1)]].clamp(0.0, 1.0) * 255.0).round()
                        as u8
                };
                Rgb([v(0), v(1), v(2)])
            });
            let mut row = vec![crate::image::enlarge(&img, k)];
            for (_, maps) in shown {
                let m = maps[i].mapv(|v| v as f32);
                row.push(crate::heatmap::render(m.view(), pw, ph));
            }
            row
        })
        .collect();
    let captions: Vec<String> = std::iter::once("input".to_string())
        .chain(shown.iter().map(|(name, _)| name.clone()))
        .collect();
    let path = out.join("maps.png");
    plot::grid(&rows, &captions)
        .save(&path)
        .map_err(|e| bad_input!("{}: cannot write: {e}", path.display()))?;
    Ok(path)
}

/// `curves.csv` and `curves.png` (MoRF and LeRF panels) in `out`.
fn write_curves(r: &Report, out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)
        .map_err(|e| bad_input!("{}: cannot create the folder: {e}", out.display()))?;
    let mut csv = String::from("step,fraction_perturbed");
    for s in &r.scores {
        csv += &format!(",{0}_morf,{0}_lerf", s.name);
    }
    csv += "\n";
    for k in 0..=r.steps {
        csv += &format!("{k},{:.6}", k as f64 / r.patches as f64);
        for s in &r.scores {
            csv += &format!(",{:.6},{:.6}", s.morf_curve[k], s.lerf_curve[k]);
        }
        csv += "\n";
    }
    let csv_path = out.join("curves.csv");
    std::fs::write(&csv_path, csv)
        .map_err(|e| bad_input!("{}: cannot write: {e}", csv_path.display()))?;

    let xs: Vec<f64> = (0..=r.steps).map(|k| k as f64).collect();
    let panel = |morf: bool| {
        let series: Vec<plot::Series> = r
            .scores
            .iter()
            .enumerate()
            .map(|(i, s)| plot::Series {
                name: format!(
                    "{} (AOPC {:.2})",
                    s.name,
                    if morf { s.aopc_morf } else { s.aopc_lerf }
                ),
                values: if morf {
                    s.morf_curve.clone()
                } else {
                    s.lerf_curve.clone()
                },
                colour: plot::PALETTE[i % plot::PALETTE.len()],
            })
            .collect();
        let chart = plot::Chart {
            title: if morf {
                "MoRF: most relevant first"
            } else {
                "LeRF: least relevant first"
            },
            x_label: &format!("patches replaced by noise ({0}x{0} px)", r.patch),
            y_label: "logit drop f(x0) - f(xk)",
            xs: &xs,
            series: &series,
        };
        plot::render(&chart, 520, 420)
    };
    let img = plot::beside(&[panel(true), panel(false)]);
    let png = out.join("curves.png");
    img.save(&png)
        .map_err(|e| bad_input!("{}: cannot write: {e}", png.display()))?;
    Ok(vec![csv_path, png])
}

// The command line of `eval`: its flags (the doc comments are the --help text) and what
// `onnx-rap eval` does with them.

#[derive(clap::Args)]
pub struct EvalCli {
    /// The model (.onnx)
    model: PathBuf,
    /// Benchmark .npz (images uint8 [N,H,W(,3)], labels, boxes [N,4] as x0,y0,x1,y1,
    /// masks), or a folder of photos (preprocessed as `explain` does; with labels.json,
    /// file name -> class, the true class is explained and the accuracy reported; region
    /// perturbation, deletion / insertion AUC, a random floor and bootstrap intervals
    /// against rap are scored), or for a text model a .jsonl of
    /// labelled texts ({"text": ..., "label": K} a line: token deletion is scored)
    /// [default: the model's onnx_rap.benchmark metadata]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Methods to compare, comma-separated [default: all]
    #[arg(long, value_enum, value_delimiter = ',')]
    methods: Vec<MethodArg>,
    /// Stabiliser of lrp-eps
    #[arg(long, default_value_t = crate::rules::DEFAULT_EPSILON)]
    epsilon: f32,
    /// Evaluate only the first N images (texts: N texts spread evenly over the file)
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Patch size of region perturbation (pixels)
    #[arg(long, default_value_t = 4)]
    patch: usize,
    /// Perturbation steps: one patch each for images [default: 48]; for texts, 5% of the
    /// tokens each [default: 10, up to half of every text]
    #[arg(long)]
    steps: Option<usize>,
    /// The tokenizer of a text model (a tiktoken-bpe JSON or a HuggingFace tokenizer.json)
    /// [default: the file its metadata names]
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    /// Seed of the noise generator (SplitMix64, started at seed + image index)
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images per tract run of the explanation (tract's per-image time grows with the
    /// batch, so the default runs each image alone, several at once on --threads)
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Threads: images run in parallel on one shared plan [default: every core]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
    /// Output folder for curves.csv, curves.png and maps.png (images; a text run prints its
    /// table and writes per-text curves with --dump)
    #[arg(short, long, default_value = "eval_out")]
    out: PathBuf,
    /// Also write every heatmap and perturbation curve (.npy) to this folder (photos: also
    /// the deletion / insertion curves and per_image.json, every image's metrics; --sanity:
    /// the randomised models and their maps)
    #[arg(long, value_name = "DIR")]
    dump: Option<PathBuf>,
    /// A folder of photos: explain the true class (labels.json) or the model's prediction
    /// [default: true when the folder has labels.json, else predicted]
    #[arg(long, value_enum)]
    explain: Option<ExplainClass>,
    /// A folder of photos: score heatmaps made by another tool beside the methods, with the
    /// same perturbations and bootstrap intervals: NAME=DIR, DIR holding `<photo file
    /// stem>.npy` per photo ([H, W] at the model's input size, or with a channel axis that
    /// is summed; higher = more relevant). Repeatable. Example:
    /// --maps captum-ig=peer/ig (scripts/peer_maps.py makes Captum's and Zennit's)
    #[arg(long, value_name = "NAME=DIR", value_parser = parse_maps)]
    maps: Vec<(String, PathBuf)>,
    /// The model-randomisation sanity check (Adebayo et al. 2018): re-draw the weights of
    /// the top K Conv / Gemm / MatMul layers, explain again, and report the rank
    /// correlation of every method's maps before and after (1 = the map ignores the
    /// weights). Comma-separated depths, e.g. --sanity 1,4
    #[arg(long, value_name = "K", value_delimiter = ',',
          value_parser = clap::value_parser!(u32).range(1..))]
    sanity: Vec<u32>,
    /// Print one JSON object instead of the table
    #[arg(long)]
    json: bool,
}

/// `--maps NAME=DIR`, or `--maps DIR` named after the folder.
fn parse_maps(s: &str) -> std::result::Result<(String, PathBuf), String> {
    let (name, dir) = match s.split_once('=') {
        Some((n, d)) => (n.to_string(), PathBuf::from(d)),
        None => {
            let d = PathBuf::from(s);
            let n = d
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            (n, d)
        }
    };
    if name.is_empty() || !dir.is_dir() {
        return Err(format!(
            "'{s}': expected NAME=DIR with DIR a folder of <photo>.npy maps"
        ));
    }
    Ok((name, dir))
}

/// `onnx-rap eval`: score the methods, print the table (or JSON), write the curves.
pub fn main(cli: EvalCli) -> Result<()> {
    let EvalCli {
        model,
        data,
        methods,
        epsilon,
        limit,
        patch,
        steps,
        tokenizer,
        seed,
        batch,
        threads,
        out,
        dump,
        explain,
        maps,
        sanity,
        json,
    } = cli;
    let methods: Vec<Method> = if methods.is_empty() {
        Method::ALL.to_vec()
    } else {
        methods.into_iter().map(args::method).collect()
    };
    if let Some(data) = data
        .as_ref()
        .filter(|d| d.extension().is_some_and(|e| e == "jsonl"))
    {
        if explain.is_some() || !maps.is_empty() || !sanity.is_empty() {
            return Err(bad_input!(
                "{}: --explain and --maps apply to a folder of photos, --sanity to images; \
                 labelled texts always explain their labels",
                data.display()
            ));
        }
        let args = super::eval_text::TextEvalArgs {
            model,
            data: data.clone(),
            tokenizer,
            methods,
            epsilon,
            limit,
            steps: steps.unwrap_or(10),
            seed,
            threads: args::threads(threads),
            dump,
        };
        let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let r = super::eval_text::run(&args, progress)?;
        if json {
            println!("{}", r.to_json());
        } else {
            println!("{}: {}\n", r.model, r.data);
            print!("{}", r.table());
        }
        return Ok(());
    }
    let steps = steps.unwrap_or(48);
    let args = Args {
        model,
        data,
        methods,
        epsilon,
        limit,
        patch,
        steps,
        seed,
        batch,
        threads: args::threads(threads),
        out,
        dump,
        explain,
        maps,
        sanity: sanity.into_iter().map(|k| k as usize).collect(),
    };
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let r = run(&args, progress)?;
    if json {
        println!("{}", r.to_json());
    } else {
        println!(
            "{}: {} images of {}, patches {}x{} ({} steps of {} patches), seed {}\n",
            r.model, r.images, r.data, r.patch, r.patch, r.steps, r.patches, r.seed
        );
        print!("{}", r.table());
        eprintln!(
            "wrote {}",
            r.files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
