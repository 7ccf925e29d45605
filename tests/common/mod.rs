//! Helpers shared by the integration tests: paths, the onnxruntime runner (through the test
//! venv's Python), .npy I/O and relative comparisons.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::ArrayD;
use ndarray_npy::{read_npy, write_npy};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python that has onnxruntime: $ONNX_RAP_PYTHON, else the repo's `.venv` made by
/// `scripts/test.sh`. Missing Python is a test failure, not a skip.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("ONNX_RAP_PYTHON") {
        return PathBuf::from(p);
    }
    let p = root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "no Python with onnxruntime: run scripts/test.sh (it creates .venv) or set ONNX_RAP_PYTHON"
    );
    p
}

/// Run a Python script of the repository (a path under the root) with `args` in the test
/// venv; fails the test with the script's stderr unless it exits 0. Returns its stdout.
pub fn run_python<I, S>(script: &str, args: I) -> Vec<u8>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().into()).collect();
    let out = Command::new(python())
        .arg(root().join(script))
        .args(&args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{script} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub enum Feed {
    F32(ArrayD<f32>),
    I64(ArrayD<i64>),
}

/// Run a model file in onnxruntime; returns every output by name.
pub fn run_ort(model: &Path, feeds: &[(&str, Feed)]) -> HashMap<String, ArrayD<f32>> {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        model.display().to_string(),
        dir.path().display().to_string(),
    ];
    for (k, (name, f)) in feeds.iter().enumerate() {
        let p = dir.path().join(format!("in_{k}.npy"));
        match f {
            Feed::F32(a) => write_npy(&p, a).unwrap(),
            Feed::I64(a) => write_npy(&p, a).unwrap(),
        }
        args.push(format!("{name}={}", p.display()));
    }
    run_python("scripts/ort_run.py", &args);
    let mut res = HashMap::new();
    let listing = std::fs::read_to_string(dir.path().join("outputs.txt")).unwrap();
    for (k, name) in listing.lines().enumerate() {
        let p = dir.path().join(format!("out_{k}.npy"));
        let name = name.to_string();
        let a: ArrayD<f32> = read_npy(&p).unwrap_or_else(|_| {
            let i: ArrayD<i64> = read_npy(&p).unwrap();
            i.mapv(|v| v as f32)
        });
        res.insert(name, a);
    }
    res
}

pub fn npy_f32(p: &Path) -> ArrayD<f32> {
    read_npy(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn npy_i64(p: &Path) -> ArrayD<i64> {
    read_npy(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Per sample: max |got - want| / max |want|.
pub fn rel_err_per_sample(got: &ArrayD<f32>, want: &ArrayD<f32>) -> Vec<f64> {
    assert_eq!(got.shape(), want.shape(), "shape mismatch");
    (0..want.shape()[0])
        .map(|i| {
            let g = got.index_axis(ndarray::Axis(0), i);
            let w = want.index_axis(ndarray::Axis(0), i);
            let scale = w.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
            let diff = g
                .iter()
                .zip(w.iter())
                .fold(0f64, |m, (a, b)| m.max((*a as f64 - *b as f64).abs()));
            diff / scale
        })
        .collect()
}

/// Per-sample sums over the non-batch axes.
/// Per sample: the largest logit (the logit of the explained, argmax class).
pub fn max_logits(l: &ArrayD<f32>) -> Vec<f64> {
    (0..l.shape()[0])
        .map(|i| {
            l.index_axis(ndarray::Axis(0), i)
                .iter()
                .fold(f32::MIN, |m, v| m.max(*v)) as f64
        })
        .collect()
}

pub fn sums(a: &ArrayD<f32>) -> Vec<f64> {
    (0..a.shape()[0])
        .map(|i| {
            a.index_axis(ndarray::Axis(0), i)
                .iter()
                .map(|&v| v as f64)
                .sum()
        })
        .collect()
}

/// Compile a model file with the library, returning the encoded model_rap bytes.
pub fn compile_file(model: &Path, opts: &onnx_rap::pass::Options) -> Vec<u8> {
    let proto = onnx_rap::onnx::load(model).unwrap();
    let origin = model.display().to_string();
    let m = onnx_rap::ir::import(&proto, &origin).unwrap();
    let c = onnx_rap::pass::compile(&m, opts, &origin).unwrap();
    onnx_rap::onnx::encode(&onnx_rap::ir::export(&c).unwrap())
}

/// Names of a model's graph outputs, in order.
pub fn output_names(bytes: &[u8]) -> Vec<String> {
    let m = onnx_rap::onnx::decode(bytes, "model").unwrap();
    m.graph
        .unwrap()
        .output
        .iter()
        .map(|o| o.name().to_string())
        .collect()
}

/// Run encoded model bytes in tract; outputs by name.
pub fn run_tract(
    bytes: &[u8],
    inputs: Vec<onnx_rap::runtime::Value>,
) -> HashMap<String, ArrayD<f32>> {
    let names = output_names(bytes);
    onnx_rap::runtime::run_once(bytes, &inputs, names)
        .unwrap()
        .into_iter()
        .collect()
}

/// Run the `onnx-rap` binary; returns (exit code, stdout, stderr).
pub fn run_cli(bin: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The sample PNGs of models/samples, sorted.
pub fn samples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("models/samples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    v.sort();
    assert!(v.len() >= 4, "models/samples holds the sample PNGs");
    v
}

/// Colour-map level of every RGB pixel, through explain's table (its colours are distinct,
/// so a pixel names its level); panics on a colour that is not in the table.
pub fn levels(rgb: impl Iterator<Item = [u8; 3]>) -> Vec<i64> {
    let table: HashMap<[u8; 3], i64> = onnx_rap::heatmap::table()
        .into_iter()
        .enumerate()
        .map(|(k, c)| (c, k as i64))
        .collect();
    rgb.map(|c| {
        *table
            .get(&c)
            .unwrap_or_else(|| panic!("{c:?} is not a map colour"))
    })
    .collect()
}

/// The levels of a PNG's pixels.
pub fn png_levels(p: &Path) -> Vec<i64> {
    let img = image::open(p).unwrap().to_rgb8();
    levels(img.pixels().map(|p| p.0))
}

/// The levels of flat RGB bytes (`[..., 3]` row-major).
pub fn rgb_levels(flat: &[u8]) -> Vec<i64> {
    levels(flat.chunks_exact(3).map(|c| [c[0], c[1], c[2]]))
}

/// A fixed-seed tensor of `dims` uniform in [-1, 1) (a 64-bit LCG, top 24 bits).
pub fn uniform(dims: &[usize], seed: u64) -> ArrayD<f32> {
    let mut g = seed;
    ArrayD::from_shape_fn(ndarray::IxDyn(dims), |_| {
        g = g
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((g >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    })
}
