//! The browser page (web/) end to end: `onnx-rap serve` serves the built page with the
//! default model on 127.0.0.1, headless Chromium (driven by tests/web/e2e.mjs with
//! playwright-core) loads it, explains a sample image and then another class, and what the page
//! computed with onnxruntime-web must equal `onnx-rap explain` on the same input.
//!
//! Needs the page built and Chromium installed: scripts/test.sh does both (npm ci, npm run
//! build, apt-get install chromium). The screenshot and the page's result are kept under
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
    fn start() -> Server {
        let mut child = Command::new(bin())
            .args(["serve", "models/digits_vgg.onnx", "--port", "0", "--dir"])
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

fn explain_ref(
    image: &Path,
    target: Option<usize>,
) -> (ndarray::ArrayD<f32>, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_path_buf();
    let mut args = vec![
        "explain".to_string(),
        root().join("models/digits_vgg.onnx").display().to_string(),
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
    (rel, out.join(format!("{stem}_heatmap.png")), dir)
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

#[test]
fn the_page_explains_like_explain_in_headless_chromium() {
    let chromium = chromium();
    let server = Server::start();
    let image = root().join("models/samples/digit_1_4.png");
    let out = artifacts();
    let result_path = out.join("result.json");
    let shot = out.join("screenshot.png");
    let second = 3;
    let status = Command::new("node")
        .arg(root().join("tests/web/e2e.mjs"))
        .args(["--url", &server.url, "--image"])
        .arg(&image)
        .arg("--out")
        .arg(&result_path)
        .arg("--screenshot")
        .arg(&shot)
        .arg("--chromium")
        .arg(&chromium)
        .args(["--second-target", &second.to_string()])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "e2e failed:\n{}\n{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&status.stdout));
    let report: Json = serde_json::from_slice(&std::fs::read(&result_path).unwrap()).unwrap();

    // Offline and private: every request went to the page's own server, none after the
    // image was chosen.
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

    let first = &report["first"];
    let (rel, png, _d1) = explain_ref(&image, None);
    assert_eq!(first["predicted"], 4, "the sample shows a 4");
    check_run(first, &rel, &png, "predicted class");
    let (rel2, png2, _d2) = explain_ref(&image, Some(second));
    assert_eq!(report["second"]["target"], second);
    check_run(&report["second"], &rel2, &png2, "second class");
    let shot_bytes = std::fs::metadata(&shot).unwrap().len();
    assert!(shot_bytes > 1000, "the screenshot is empty");
}

#[test]
fn serve_answers_with_the_right_types_and_write_to_makes_a_static_site() {
    let server = Server::start();
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
