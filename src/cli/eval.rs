//! `onnx-rap eval MODEL`: every method the compiler knows, scored on a benchmark with object
//! boxes and masks by the metrics of `crate::metrics` (protocol: docs/EVALUATION.md).
//!
//! Per method: compile in memory with `rap_target` (the true class is explained), run the
//! heatmaps in batches with tract, score each map, then perturb patches most-relevant-first
//! and least-relevant-first with fixed-seed noise and run the original model on every step.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array2, Array3, ArrayD, Axis, IxDyn};
use ndarray_npy::{NpzReader, ReadableElement, WriteNpyExt};
use serde_json::{json, Value as Json};

use super::args::{self, MethodArg};
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
    pub method: Method,
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
}

impl Scores {
    pub fn to_json(&self) -> Json {
        json!({
            "method": self.method.name(),
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
        })
    }
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
}

impl Report {
    pub fn to_json(&self) -> Json {
        json!({
            "model": self.model,
            "data": self.data,
            "images": self.images,
            "patch": self.patch,
            "steps": self.steps,
            "patches": self.patches,
            "seed": self.seed,
            "methods": self.scores.iter().map(Scores::to_json).collect::<Vec<_>>(),
            "files": self.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        })
    }

    /// The table as Markdown (what docs/EVALUATION.md shows).
    pub fn table(&self) -> String {
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
                r.method.name(),
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

/// The photos of a folder (sorted by name, the first `limit`) as the model sees them, pixels
/// in [0, 1] `[H, W, C]`, and the model's predicted class for each.
fn photos(
    dir: &Path,
    info: &ModelInfo,
    model_bytes: &[u8],
    limit: Option<usize>,
) -> Result<(Vec<Array3<f32>>, Vec<i64>)> {
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
    Ok((pix, labels))
}

/// Run every method; `progress` shows a bar on stderr.
pub fn run(args: &Args, progress: bool) -> Result<Report> {
    let info = model_info(&args.model)?;
    let origin = args.model.display().to_string();
    let data_path = benchmark_path(&args.model, &info.model, args.data.as_deref())?;
    let (h, w) = (info.pp.size.0 as usize, info.pp.size.1 as usize);
    let c = info.pp.channels;
    let model_bytes = crate::onnx::encode(&ir::export(&info.model)?);
    // A benchmark (.npz: images, labels, boxes, masks), or a folder of photos: no boxes, so
    // only region perturbation is scored, and the explained class is the model's prediction.
    let (pix, labels, loc) = if data_path.is_dir() {
        let (pix, labels) = photos(&data_path, &info, &model_bytes, args.limit)?;
        (pix, labels, None)
    } else {
        let bench = load_benchmark(&data_path)?;
        let n = args.limit.unwrap_or(bench.len()).min(bench.len());
        let (bh, bw) = (bench.images.shape()[1], bench.images.shape()[2]);
        if (bh, bw) != (h, w) {
            return Err(bad_input!(
                "{}: images are {bh}x{bw} but {origin} takes {h}x{w}",
                data_path.display(),
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
        (pix, labels, Some((bench.boxes, bench.masks)))
    };
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

    // The original model runs each perturbation step alone: tract's per-image time at a
    // batch of 2 or more is up to twice batch 1's (digits_resnet: 1.33-1.43 ms against 0.66
    // ms; README, Performance).
    let probe = info.pp.arrange(ArrayD::zeros(IxDyn(&[1, h, w, c])));
    let forward = Plan::new(
        &model_bytes,
        &[Value::F32(probe)],
        vec![info.logits.clone()],
    )?;

    if let Some(d) = &args.dump {
        std::fs::create_dir_all(d)
            .map_err(|e| bad_input!("{}: cannot create the folder: {e}", d.display()))?;
    }
    let bar = if progress {
        let b = ProgressBar::new((n * args.methods.len()) as u64);
        b.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} images, eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b
    } else {
        ProgressBar::hidden()
    };

    let workers = crate::runtime::share_threads(args.threads, n);
    let mut scores = Vec::new();
    for &method in &args.methods {
        bar.set_prefix(method.name());
        let settings = Settings {
            compile: Options {
                method,
                epsilon: args.epsilon,
                ..Options::default()
            },
            ..Settings::default()
        };
        let ex = Explainer::new(info.model.clone(), &args.model, &settings)?;
        let bsz = ex.max_batch().unwrap_or(args.batch.clamp(1, n));
        ex.warm_up(&[Value::F32(
            info.pp.arrange(ArrayD::zeros(IxDyn(&[bsz, h, w, c]))),
        )])?;

        // Heatmaps, in batches (the last one padded by repeating its last image), the
        // batches in parallel on one plan.
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

        // Localisation.
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

        // Region perturbation: both orders, every step in one batch per image.
        let grid = metrics::patches(h, w, p);
        let mut curves = [vec![0.0; steps + 1], vec![0.0; steps + 1]];
        let mut aopc = [0.0; 2];
        let mut raw: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        // One image per worker: its MoRF and LeRF curves.
        let per_image = crate::parallel::map(workers, &maps, |i, m| {
            let noise = metrics::noise(args.seed, i as u64, h * w * c);
            let mut both = Vec::with_capacity(2);
            let t = labels[i] as usize;
            for morf in [true, false] {
                let order = metrics::patch_order(m.view(), p, morf);
                let mut cur = pix[i].clone();
                let mut curve = Vec::with_capacity(steps + 1);
                for k in 0..=steps {
                    if k > 0 {
                        let (y0, x0) = grid[order[k - 1]];
                        for y in y0..y0 + p {
                            for x in x0..x0 + p {
                                for ch in 0..c {
                                    cur[[y, x, ch]] = noise[(y * w + x) * c + ch];
                                }
                            }
                        }
                    }
                    let x = info.pp.arrange(cur.clone().insert_axis(Axis(0)).into_dyn());
                    let out = forward.run(&[Value::F32(x)])?;
                    let logit = out[0].1.get(IxDyn(&[0, t])).copied().ok_or_else(|| {
                        Error::Runtime(format!(
                            "{origin}: the logits have shape {:?}, not [1, classes]",
                            out[0].1.shape()
                        ))
                    })?;
                    curve.push(logit as f64);
                }
                both.push(curve);
            }
            bar.inc(1);
            Ok(both)
        })?;
        for both in per_image {
            for (o, f) in both.iter().enumerate() {
                for k in 0..=steps {
                    curves[o][k] += f[0] - f[k];
                }
                aopc[o] += metrics::aopc(f);
                raw[o].extend_from_slice(f);
            }
        }
        if let Some(d) = &args.dump {
            let stack: Vec<_> = maps.iter().map(|m| m.mapv(|v| v as f32)).collect();
            let views: Vec<_> = stack.iter().map(|m| m.view()).collect();
            let all = ndarray::stack(Axis(0), &views).map_err(|e| Error::Runtime(e.to_string()))?;
            write_npy(&d.join(format!("{}_heatmaps.npy", method.name())), &all)?;
            for (o, tag) in ["morf", "lerf"].iter().enumerate() {
                let a = Array2::from_shape_vec((n, steps + 1), raw[o].clone())
                    .map_err(|e| Error::Runtime(e.to_string()))?;
                write_npy(&d.join(format!("{}_{tag}.npy", method.name())), &a)?;
            }
        }
        let nf = n as f64;
        // Without boxes (photos) the localisation scores are undefined (NaN: "—", null).
        let located = if loc.is_some() { 1.0 } else { f64::NAN };
        scores.push(Scores {
            method,
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
            ms_per_image: 1e3 * explain_s / (n.div_ceil(bsz) * bsz) as f64,
        });
    }
    bar.finish_and_clear();

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
    };
    report.files = write_curves(&report, &args.out)?;
    Ok(report)
}

fn write_npy<A: WriteNpyExt>(path: &Path, a: &A) -> Result<()> {
    let f = std::fs::File::create(path)
        .map_err(|e| bad_input!("{}: cannot write: {e}", path.display()))?;
    a.write_npy(std::io::BufWriter::new(f))
        .map_err(|e| Error::Runtime(format!("{}: {e}", path.display())))
}

/// `curves.csv` and `curves.png` (MoRF and LeRF panels) in `out`.
fn write_curves(r: &Report, out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)
        .map_err(|e| bad_input!("{}: cannot create the folder: {e}", out.display()))?;
    let mut csv = String::from("step,fraction_perturbed");
    for s in &r.scores {
        csv += &format!(",{0}_morf,{0}_lerf", s.method.name());
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
                    s.method.name(),
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
    /// masks), or a folder of photos (preprocessed as `explain` does; only region
    /// perturbation is scored, for the predicted class), or for a text model a .jsonl of
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
    /// Output folder for curves.csv and curves.png (images; a text run prints its table and
    /// writes per-text curves with --dump)
    #[arg(short, long, default_value = "eval_out")]
    out: PathBuf,
    /// Also write every heatmap and perturbation curve (.npy) to this folder
    #[arg(long, value_name = "DIR")]
    dump: Option<PathBuf>,
    /// Print one JSON object instead of the table
    #[arg(long)]
    json: bool,
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
