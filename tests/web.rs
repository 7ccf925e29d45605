//! The browser page (web/) end to end: `onnx-rap serve` serves the built page on 127.0.0.1,
//! headless Chromium (driven by tests/web/e2e.mjs with playwright-core) loads it, explains an
//! image and then another class picked from the searchable class list.
//!
//! - The default model (EfficientNet-Lite0, ImageNet) on a photo: the page resizes and crops
//!   with the browser's canvas, which is close to but not bit-equal with the Rust bicubic of
//!   `explain`. So the page's crop is compared with explain's crop (mean absolute difference in
//!   gray levels), and the page's heatmap with model_rap.onnx run in tract on the very tensor
//!   the page fed onnxruntime-web (exposed as `window.rapResult.input`); the top-1 class the
//!   page lists must be "tiger cat".
//! - A digit model (`serve models/digits_vgg.onnx`, 64x64 gray, no resampling): the page's
//!   heatmap must equal `explain`'s.
//! - A text model (`serve models/nanoguard.onnx`, driven by tests/web/text.mjs): the ids the
//!   page's own BPE makes of the prompts of models/data/nanoguard_prompts.json must equal the
//!   Python tokenizer's, and on a few of them its logits and per-token relevance must match
//!   the stored onnxruntime logits and model_rap.onnx run in tract.
//!
//! Needs the page built and Chromium installed: scripts/test.sh does both (npm ci, npm run
//! build, apt-get install chromium). The screenshots and the page's results are kept under
//! target/web-artifacts/.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use serde_json::Value as Json;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_onnx-rap")
}

fn chromium() -> PathBuf {
    let p = PathBuf::from(std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into()));
    assert!(
        p.exists(),
        "{} is missing: run scripts/test.sh (it installs Debian's chromium) or set CHROMIUM",
        p.display()
    );
    p
}

fn dist() -> PathBuf {
    let d = root().join("web/dist");
    assert!(
        d.join("index.html").exists() && root().join("web/node_modules").exists(),
        "the page is not built: run scripts/test.sh (npm --prefix web ci && npm --prefix web run build)"
    );
    d
}

/// `onnx-rap serve` on a free port; killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    /// `serve MODEL`, or `serve` with its default model when `model` is None.
    fn start(model: Option<&str>) -> Server {
        let mut child = Command::new(bin())
            .arg("serve")
            .args(model)
            .args(["--port", "0", "--dir"])
            .arg(dist())
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("serve printed no URL: {line:?}"))
            .to_string();
        Server { child, url }
    }

    /// A raw HTTP GET: (status line, headers, body).
    fn get(&self, path: &str) -> (String, String, Vec<u8>) {
        let host = self.url.trim_start_matches("http://").trim_end_matches('/');
        let mut s = TcpStream::connect(host).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let status = head.lines().next().unwrap().to_string();
        (status, head, raw[split + 4..].to_vec())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn artifacts() -> PathBuf {
    let d = root().join("target/web-artifacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}

const DIGITS: &str = "models/digits_vgg.onnx";
const PHOTO_MODEL: &str = "models/efficientnet_lite0.onnx";

/// `explain MODEL --input IMAGE`: (relevance, heatmap PNG, overlay PNG, the folder).
fn explain_ref(
    model: &str,
    image: &Path,
    target: Option<usize>,
) -> (ndarray::ArrayD<f32>, PathBuf, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_path_buf();
    let mut args = vec![
        "explain".to_string(),
        root().join(model).display().to_string(),
        "--input".into(),
        image.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    if let Some(t) = target {
        args.extend(["--target".into(), t.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, err) = run_cli(bin(), &args);
    assert_eq!(code, 0, "{err}");
    let stem = image.file_stem().unwrap().to_string_lossy().to_string();
    let rel = npy_f32(&out.join(format!("{stem}_relevance.npy")));
    (
        rel,
        out.join(format!("{stem}_heatmap.png")),
        out.join(format!("{stem}_overlay.png")),
        dir,
    )
}

fn floats(v: &Json) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// The page's result for one run against `explain`: heatmap within 1e-3 x max|R|, and its
/// `heatmap_rgb` against explain's PNG within one colour-map level per pixel.
fn check_run(result: &Json, rel: &ndarray::ArrayD<f32>, png: &Path, what: &str) {
    let heat = floats(&result["heatmap"]);
    let want: Vec<f32> = rel.iter().copied().collect(); // one channel: the heatmap itself
    assert_eq!(heat.len(), want.len(), "{what}: heatmap size");
    let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
    let diff = heat
        .iter()
        .zip(&want)
        .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
    assert!(
        diff <= 1e-3 * scale,
        "{what}: page heatmap differs from explain by {diff:.3e} (max|R| {scale:.3e})"
    );
    let rgb: Vec<u8> = floats(&result["heatmapRgb"])
        .iter()
        .map(|&v| v as u8)
        .collect();
    let worst = rgb_levels(&rgb)
        .iter()
        .zip(png_levels(png))
        .map(|(a, b)| (a - b).abs())
        .max()
        .unwrap();
    assert!(
        worst <= 1,
        "{what}: a heatmap_rgb pixel is {worst} levels off explain's PNG"
    );
}

/// Drive the page with tests/web/e2e.mjs: the image, then `second` picked from the class list
/// (after typing `search` into its search box). Keeps result_TAG.json and screenshot_TAG.png
/// in target/web-artifacts/; returns the report, after checking that every request went to
/// the page's own server and none after the image was chosen (offline and private).
fn drive(server: &Server, image: &Path, second: usize, search: &str, tag: &str) -> Json {
    let chromium = chromium();
    let out = artifacts();
    let result_path = out.join(format!("result_{tag}.json"));
    let shot = out.join(format!("screenshot_{tag}.png"));
    let status = Command::new("node")
        .arg(root().join("tests/web/e2e.mjs"))
        .args(["--url", &server.url, "--image"])
        .arg(image)
        .arg("--out")
        .arg(&result_path)
        .arg("--screenshot")
        .arg(&shot)
        .arg("--chromium")
        .arg(&chromium)
        .args(["--second-target", &second.to_string(), "--search", search])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "e2e failed:\n{}\n{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    eprintln!("{tag}: {}", String::from_utf8_lossy(&status.stdout).trim());
    let report: Json = serde_json::from_slice(&std::fs::read(&result_path).unwrap()).unwrap();
    for r in report["requests"].as_array().unwrap() {
        let url = r["url"].as_str().unwrap();
        assert!(
            url.starts_with(&server.url),
            "a request left the page's server: {url}"
        );
    }
    assert!(report["requests_after_image"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(report["second"]["target"], second);
    let shot_bytes = std::fs::metadata(&shot).unwrap().len();
    assert!(shot_bytes > 1000, "the screenshot is empty");
    report
}

/// The page's run against model_rap.onnx run in tract on the page's own input tensor (two
/// runtimes, onnxruntime-web's WASM and tract): logits within 2e-3 x max|logit|, heatmap
/// within 2e-3 x max|R| (measured: 3.4e-4), heatmap_rgb within two colour-map levels per pixel
/// (measured: 1). Returns (heatmap diff / max|R|, worst level difference).
fn check_against_tract(result: &Json, model_rap: &[u8], what: &str) -> (f32, i64) {
    let dims: Vec<usize> = result["inputDims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let input = ndarray::ArrayD::from_shape_vec(dims, floats(&result["input"])).unwrap();
    let target = result["target"].as_i64().unwrap();
    let outs = run_tract(
        model_rap,
        vec![
            onnx_rap::runtime::Value::F32(input),
            onnx_rap::runtime::Value::I64(ndarray::arr1(&[target]).into_dyn()),
        ],
    );
    let max_diff = |got: &[f32], want: &ndarray::ArrayD<f32>, name: &str| {
        assert_eq!(got.len(), want.len(), "{what}: {name} size");
        let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
        let diff = got
            .iter()
            .zip(want.iter())
            .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
        diff / scale
    };
    let logits = max_diff(&floats(&result["logits"]), &outs["logits"], "logits");
    assert!(
        logits <= 2e-3,
        "{what}: the page's logits differ from tract's by {logits:.2e} x max|logit|"
    );
    let heat = max_diff(&floats(&result["heatmap"]), &outs["heatmap"], "heatmap");
    assert!(
        heat <= 2e-3,
        "{what}: the page's heatmap differs from tract's by {heat:.2e} x max|R|"
    );
    let page: Vec<u8> = floats(&result["heatmapRgb"])
        .iter()
        .map(|&v| v as u8)
        .collect();
    let tract: Vec<u8> = outs["heatmap_rgb"].iter().map(|&v| v as u8).collect();
    let worst = rgb_levels(&page)
        .iter()
        .zip(rgb_levels(&tract))
        .map(|(a, b)| (a - b).abs())
        .max()
        .unwrap();
    assert!(
        worst <= 2,
        "{what}: a heatmap_rgb pixel is {worst} levels off tract's on the same input"
    );
    (heat, worst)
}

#[test]
fn the_page_explains_a_photo_with_the_default_model_in_headless_chromium() {
    let server = Server::start(None);
    let image = root().join("models/photos/chelsea.png");
    // Class 285, "Egyptian cat", found by typing "egyptian" into the class search.
    let second = 285;
    let report = drive(&server, &image, second, "egyptian", "photo");
    let first = &report["first"];

    // What a reader sees: the top 5 with softmax percentages, "tiger cat" first.
    let shown = first["shownTop5"].as_array().unwrap();
    assert_eq!(shown.len(), 5, "{shown:?}");
    assert_eq!(shown[0]["label"], "tiger cat", "{shown:?}");
    assert_eq!(first["predicted"], 282, "tiger cat is ImageNet class 282");
    let probs: Vec<f64> = first["top5"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["probability"].as_f64().unwrap())
        .collect();
    assert!(
        probs.windows(2).all(|p| p[0] >= p[1]) && probs.iter().sum::<f64>() <= 1.0 + 1e-6,
        "{probs:?}"
    );
    assert!(
        shown[0]["percent"].as_str().unwrap().ends_with('%'),
        "{shown:?}"
    );
    assert!(
        report["search_listed"].as_u64().unwrap() < 10,
        "searching 'egyptian' lists {} classes",
        report["search_listed"]
    );

    // The crop the page made (canvas resampling) against the one `explain` made (Rust
    // bicubic): a few gray levels apart on average.
    let (_, _, overlay, _dir) = explain_ref(PHOTO_MODEL, &image, None);
    let overlay = image::open(&overlay).unwrap().to_rgb8();
    let (h, w) = (
        first["inputDims"][2].as_u64().unwrap() as u32,
        first["inputDims"][3].as_u64().unwrap() as u32,
    );
    assert_eq!((h, w), (224, 224));
    let crop = floats(&first["crop"]);
    assert_eq!(crop.len(), (3 * h * w) as usize);
    let mut sum = 0f64;
    let mut worst = 0f32;
    for y in 0..h {
        for x in 0..w {
            let want = overlay.get_pixel(x, y).0; // the left half is the crop
            for c in 0..3 {
                let d = (crop[((y * w + x) * 3 + c) as usize] - want[c as usize] as f32).abs();
                sum += d as f64;
                worst = worst.max(d);
            }
        }
    }
    let mean = sum / (3 * h * w) as f64;
    eprintln!(
        "photo: the page's crop vs explain's: mean |diff| {mean:.3} gray levels, max {worst}"
    );
    assert!(
        mean <= 3.0,
        "the page's crop is {mean:.2} gray levels from explain's on average"
    );

    // The heatmaps: model_rap.onnx in tract on the tensor the page fed onnxruntime-web.
    let (_, _, model_rap) = server.get("/model_rap.onnx");
    let (heat, levels) = check_against_tract(first, &model_rap, "predicted class");
    eprintln!(
        "photo, tiger cat: page vs tract on the page's input: heatmap {heat:.2e} x max|R|, \
         heatmap_rgb {levels} level(s)"
    );
    let (heat, levels) = check_against_tract(&report["second"], &model_rap, "Egyptian cat");
    eprintln!(
        "photo, Egyptian cat: page vs tract on the page's input: heatmap {heat:.2e} x max|R|, \
         heatmap_rgb {levels} level(s)"
    );
}

#[test]
fn the_page_explains_a_digit_like_explain_in_headless_chromium() {
    let server = Server::start(Some(DIGITS));
    let image = root().join("models/samples/digit_1_4.png");
    let second = 3;
    let report = drive(&server, &image, second, "3", "digits");

    let first = &report["first"];
    let (rel, png, _, _d1) = explain_ref(DIGITS, &image, None);
    assert_eq!(first["predicted"], 4, "the sample shows a 4");
    assert_eq!(first["shownTop5"][0]["label"], "4");
    check_run(first, &rel, &png, "predicted class");
    let (rel2, png2, _, _d2) = explain_ref(DIGITS, &image, Some(second));
    check_run(&report["second"], &rel2, &png2, "second class");
}

#[test]
fn serve_answers_with_the_right_types_and_write_to_makes_a_static_site() {
    let server = Server::start(Some(DIGITS));
    let (status, head, body) = server.get("/");
    assert!(status.contains("200"), "{status}");
    assert!(head.contains("text/html"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("<title>onnx-rap"));
    let (status, head, _) = server.get("/ort-wasm-simd-threaded.wasm");
    assert!(
        status.contains("200") && head.contains("application/wasm"),
        "{head}"
    );
    let (status, _, body) = server.get("/model.json");
    assert!(status.contains("200"), "{status}");
    let cfg: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(cfg["input"], "input");
    assert_eq!(cfg["size"], serde_json::json!([64, 64]));
    assert_eq!(
        cfg["resize"],
        Json::Null,
        "the digits are resized, not cropped"
    );
    assert_eq!(cfg["grayscale"], true);
    assert_eq!(cfg["labels"].as_array().unwrap().len(), 10);
    let (status, _, model) = server.get("/model_rap.onnx");
    assert!(status.contains("200"), "{status}");
    let outs = output_names(&model);
    assert!(outs.contains(&"heatmap_rgb".to_string()), "{outs:?}");
    assert!(server.get("/nope.txt").0.contains("404"));
    assert!(server.get("/../Cargo.toml").0.contains("404"));

    let site = tempfile::tempdir().unwrap();
    let (code, _, err) = run_cli(
        bin(),
        &[
            "serve",
            root().join("models/digits_vgg.onnx").to_str().unwrap(),
            "--dir",
            dist().to_str().unwrap(),
            "--write-to",
            site.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    for f in ["index.html", "main.js", "model_rap.onnx", "model.json"] {
        assert!(site.path().join(f).is_file(), "{f} missing");
    }
    assert_eq!(
        std::fs::read(site.path().join("model_rap.onnx")).unwrap(),
        model
    );
}

#[test]
fn serve_defaults_to_efficientnet_with_the_photo_preprocessing() {
    let site = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["serve", "--dir"])
        .arg(dist())
        .arg("--write-to")
        .arg(site.path())
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg: Json =
        serde_json::from_slice(&std::fs::read(site.path().join("model.json")).unwrap()).unwrap();
    assert_eq!(cfg["model"], "efficientnet_lite0.onnx");
    assert_eq!(cfg["size"], serde_json::json!([224, 224]));
    assert_eq!(cfg["resize"], 256);
    assert_eq!(cfg["crop"], serde_json::json!([224, 224]));
    assert_eq!(cfg["interpolation"], "bicubic");
    assert_eq!(cfg["layout"], "nchw");
    assert_eq!(cfg["channels"], 3);
    assert_eq!(cfg["grayscale"], false);
    for (key, want) in [("mean", 127.0 / 255.0), ("std", 128.0 / 255.0)] {
        let v = floats(&cfg[key]);
        assert!(
            v.len() == 3 && v.iter().all(|x| (x - want).abs() < 1e-6),
            "{key}: {v:?}"
        );
    }
    let labels = cfg["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 1000);
    assert_eq!(labels[282], "tiger cat");
    let outs = output_names(&std::fs::read(site.path().join("model_rap.onnx")).unwrap());
    assert!(outs.contains(&"heatmap_rgb".to_string()), "{outs:?}");
}

#[test]
fn serve_without_a_built_page_says_how_to_build_it() {
    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = run_cli(
        bin(),
        &[
            "serve",
            "--dir",
            empty.path().to_str().unwrap(),
            "--port",
            "0",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("npm --prefix web run build"), "{err}");
}

const TEXT_MODEL: &str = "models/nanoguard.onnx";
const PROMPTS: &str = "models/data/nanoguard_prompts.json";

/// Drive the text view with tests/web/text.mjs: every prompt typed in, `explain` of them
/// explained (the first also for its other class). Keeps result_text.json and
/// screenshot_text.png in target/web-artifacts/.
fn drive_text(server: &Server, explain: &[usize]) -> Json {
    let out = artifacts();
    let result_path = out.join("result_text.json");
    let explain: Vec<String> = explain.iter().map(usize::to_string).collect();
    let status = Command::new("node")
        .arg(root().join("tests/web/text.mjs"))
        .args(["--url", &server.url, "--prompts"])
        .arg(root().join(PROMPTS))
        .args(["--explain", &explain.join(","), "--out"])
        .arg(&result_path)
        .arg("--screenshot")
        .arg(out.join("screenshot_text.png"))
        .arg("--chromium")
        .arg(chromium())
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "text.mjs failed:\n{}\n{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    eprintln!("text: {}", String::from_utf8_lossy(&status.stdout).trim());
    serde_json::from_slice(&std::fs::read(&result_path).unwrap()).unwrap()
}

fn ints(v: &Json) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

/// One explained prompt: the page's logits against the stored onnxruntime ones (1e-3), its
/// relevance against model_rap.onnx in tract on the same ids (1e-3 x max|R|), the relevance
/// summing to the explained logit, and what the page shows. Returns (logit diff, relevance
/// diff / max|R|, |relevance sum - logit|).
fn check_text_run(run: &Json, prompt: &Json, model_rap: &[u8], context: usize) -> (f32, f32, f32) {
    let what = format!("prompt {}", run["prompt"]);
    let ids = ints(&run["ids"]);
    assert_eq!(ids, ints(&prompt["ids"]), "{what}: ids");
    let logits = floats(&run["logits"]);
    let stored = floats(&prompt["logits_onnx"]);
    let logit_diff = logits
        .iter()
        .zip(&stored)
        .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
    assert!(
        logit_diff <= 1e-3,
        "{what}: the page's logits {logits:?}, onnxruntime's {stored:?}"
    );

    let mut padded = ids.clone();
    let pad = 8189; // pad_id of the tokenizer metadata (checked in model.json below)
    let mask: Vec<i64> = (0..context).map(|k| (k < ids.len()) as i64).collect();
    padded.resize(context, pad);
    let target = run["target"].as_i64().unwrap();
    let outs = run_tract(
        model_rap,
        vec![
            onnx_rap::runtime::Value::I64(
                ndarray::Array::from_shape_vec((1, context), padded)
                    .unwrap()
                    .into_dyn(),
            ),
            onnx_rap::runtime::Value::I64(
                ndarray::Array::from_shape_vec((1, context), mask)
                    .unwrap()
                    .into_dyn(),
            ),
            onnx_rap::runtime::Value::I64(ndarray::arr1(&[target]).into_dyn()),
        ],
    );
    let page = floats(&run["relevance"]);
    let want = &outs["relevance"];
    assert_eq!(page.len(), want.len(), "{what}: relevance size");
    let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
    let diff = page
        .iter()
        .zip(want.iter())
        .fold(0f32, |a, (x, y)| a.max((x - y).abs()))
        / scale;
    assert!(
        diff <= 1e-3,
        "{what}: the page's relevance differs from tract's by {diff:.2e} x max|R|"
    );
    let logit = logits[target as usize];
    let sum = run["relevanceSum"].as_f64().unwrap() as f32;
    assert!(
        (sum - logit).abs() <= 1e-3 * logit.abs().max(1.0),
        "{what}: relevance sums to {sum}, the explained logit is {logit}"
    );

    // What a reader sees: both classes with percentages, the explained one marked; every
    // token of the text shaded, with its relevance in the tooltip.
    let shown = &run["shown"];
    let classes = shown["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 2, "{classes:?}");
    for (k, c) in classes.iter().enumerate() {
        assert!(c["percent"].as_str().unwrap().ends_with('%'), "{c:?}");
        assert_eq!(c["explained"], k as i64 == target, "{classes:?}");
    }
    assert_eq!(classes[0]["label"], "safe");
    let tokens = shown["tokens"].as_array().unwrap();
    assert!(tokens.len() > 1, "{what}: no shaded tokens");
    assert!(
        tokens
            .iter()
            .all(|t| t["title"].as_str().unwrap().contains("relevance")),
        "{what}: a token without its relevance in the tooltip"
    );
    let text = prompt["text"].as_str().unwrap();
    if prompt["truncated"] == false {
        assert_eq!(
            shown["text"],
            format!("BOS{text}"),
            "{what}: the text as shown"
        );
        assert_eq!(shown["warning"], Json::Null);
    } else {
        assert!(
            shown["warning"].is_string(),
            "{what}: no truncation warning"
        );
    }
    (logit_diff, diff, (sum - logit).abs())
}

#[test]
fn the_page_explains_text_with_nanoguard_in_headless_chromium() {
    let server = Server::start(Some(TEXT_MODEL));
    let (_, _, cfg) = server.get("/model.json");
    let cfg: Json = serde_json::from_slice(&cfg).unwrap();
    assert_eq!(cfg["kind"], "text");
    assert_eq!(cfg["input"], "input_ids");
    assert_eq!(cfg["mask"], "attention_mask");
    assert_eq!(cfg["labels"], serde_json::json!(["safe", "injection"]));
    assert_eq!(cfg["tokenizer"]["bos_id"], 8188);
    assert_eq!(cfg["tokenizer"]["pad_id"], 8189);
    let context = cfg["tokenizer"]["context"].as_u64().unwrap() as usize;
    assert_eq!(context, 512);

    let data: Json = serde_json::from_slice(&std::fs::read(root().join(PROMPTS)).unwrap()).unwrap();
    let prompts = data["prompts"].as_array().unwrap();
    // An injection (also explained as "safe"), a safe question and the text longer than the
    // context.
    let report = drive_text(&server, &[0, 10, 19]);

    // The page's BPE against the Python tokenizer, on every prompt.
    let typed = report["tokens"].as_array().unwrap();
    assert_eq!(typed.len(), prompts.len());
    let mut equal = 0;
    for (k, (t, p)) in typed.iter().zip(prompts).enumerate() {
        if ints(&t["ids"]) == ints(&p["ids"]) {
            equal += 1;
        } else {
            eprintln!("prompt {k}: the page's ids differ from the Python tokenizer's");
        }
        assert_eq!(t["truncated"], p["truncated"], "prompt {k}: truncated");
        assert_eq!(t["text"], p["text"], "prompt {k}: the text typed");
    }
    eprintln!(
        "text: the page's ids equal the Python tokenizer's on {equal}/{}",
        prompts.len()
    );
    assert_eq!(equal, prompts.len());

    let (_, _, model_rap) = server.get("/model_rap.onnx");
    let runs = report["explained"].as_array().unwrap();
    for run in runs.iter().chain([&report["other"]]) {
        let k = run["prompt"].as_u64().unwrap() as usize;
        let (logits, rel, sum) = check_text_run(run, &prompts[k], &model_rap, context);
        eprintln!(
            "text, prompt {k}, class {}: logits within {logits:.2e} of onnxruntime's, \
             relevance within {rel:.2e} x max|R| of tract's, its sum {sum:.2e} from the logit",
            run["target"]
        );
    }
    assert_eq!(runs[0]["predicted"], 1, "prompt 0 is an injection");
    assert_eq!(report["other"]["target"], 0, "clicking 'safe' explains it");
    assert_eq!(runs[1]["predicted"], 0, "prompt 10 is safe");
    let long = &runs[2];
    assert_eq!(long["ids"].as_array().unwrap().len(), context);
    assert!(
        long["shown"]["warning"]
            .as_str()
            .is_some_and(|w| w.contains("first 511")),
        "{}",
        long["shown"]["warning"]
    );
}

#[test]
fn serve_a_text_model_writes_its_tokenizer_and_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("nanoguard.onnx");
    std::os::unix::fs::symlink(root().join(TEXT_MODEL), &model).unwrap();
    let site = dir.path().join("site");
    let page = dist();
    let args = [
        "serve",
        model.to_str().unwrap(),
        "--dir",
        page.to_str().unwrap(),
        "--write-to",
        site.to_str().unwrap(),
    ];
    // No tokenizer beside the model: exit 2, naming the missing file.
    let (code, _, err) = run_cli(bin(), &args);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("nanoguard_tokenizer.json") && err.contains("cannot read the tokenizer"),
        "{err}"
    );
    assert!(!site.exists(), "nothing is written on an error");

    std::os::unix::fs::symlink(
        root().join("models/nanoguard_tokenizer.json"),
        dir.path().join("nanoguard_tokenizer.json"),
    )
    .unwrap();
    let (code, _, err) = run_cli(bin(), &args);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(site.join("tokenizer.json")).unwrap(),
        std::fs::read(root().join("models/nanoguard_tokenizer.json")).unwrap()
    );
    let cfg: Json =
        serde_json::from_slice(&std::fs::read(site.join("model.json")).unwrap()).unwrap();
    assert_eq!(cfg["kind"], "text");
    assert_eq!(cfg["tokenizer"]["url"], "tokenizer.json");
    assert_eq!(cfg["tokenizer"]["file"], "nanoguard_tokenizer.json");
    let outs = output_names(&std::fs::read(site.join("model_rap.onnx")).unwrap());
    assert!(outs.contains(&"relevance".to_string()), "{outs:?}");
    assert!(!outs.contains(&"heatmap_rgb".to_string()), "{outs:?}");
}
