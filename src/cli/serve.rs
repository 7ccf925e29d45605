//! `onnx-rap serve`: the browser page of `web/` with a model compiled for it, from a small
//! local HTTP server (or written out as a static site with `--write-to`).
//!
//! The page loads `model_rap.onnx` (compiled with `rap_target` and `heatmap_rgb`) and
//! `model.json` (input name, preprocessing in plain-resize or resize + centre-crop form,
//! mean/std/layout/grayscale, labels) from its own folder; both are made here
//! in memory, the rest is the page as `npm run build` left it in `web/dist`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use super::args::{self, MethodArg};
use super::explain::{image_preprocess, labels};
use crate::analysis::{find_roles, infer_facts, input_sample_dims};
use crate::bad_input;
use crate::error::{Error, Result};
use crate::image::{Layout, PartialPreprocess};
use crate::ir;
use crate::pass::{compile_with_facts, Options, TARGET};

/// The files of the site, by URL path (`/index.html`).
pub struct Site {
    files: HashMap<String, Vec<u8>>,
}

impl Site {
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Total bytes of every file.
    pub fn bytes(&self) -> usize {
        self.files.values().map(Vec::len).sum()
    }
}

/// The page in `dir` plus `model_rap.onnx` and `model.json` made from `model`.
pub fn build(dir: &Path, model: &Path, opts: &Options) -> Result<Site> {
    if !dir.join("index.html").is_file() {
        return Err(bad_input!(
            "{}: no built page here (index.html missing); build it with \
             `npm --prefix web ci && npm --prefix web run build`, or pass --dir",
            dir.display()
        ));
    }
    let mut files = HashMap::new();
    read_tree(dir, dir, &mut files)?;
    let (onnx, config) = model_files(model, opts)?;
    files.insert("/model_rap.onnx".into(), onnx);
    files.insert("/model.json".into(), config);
    Ok(Site { files })
}

fn read_tree(root: &Path, dir: &Path, out: &mut HashMap<String, Vec<u8>>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| bad_input!("{}: cannot list the folder: {e}", dir.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|e| bad_input!("{}: cannot list the folder: {e}", dir.display()))?
            .path();
        if path.is_dir() {
            read_tree(root, &path, out)?;
            continue;
        }
        let rel = path.strip_prefix(root).expect("inside root");
        let url = format!(
            "/{}",
            rel.components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/")
        );
        let bytes =
            std::fs::read(&path).map_err(|e| bad_input!("{}: cannot read: {e}", path.display()))?;
        out.insert(url, bytes);
    }
    Ok(())
}

/// `model_rap.onnx` (with `rap_target` and `heatmap_rgb`) and the page's `model.json`.
pub fn model_files(model_path: &Path, opts: &Options) -> Result<(Vec<u8>, Vec<u8>)> {
    let origin = model_path.display().to_string();
    let model = super::load_model(model_path)?;
    let facts = infer_facts(&ir::export(&model)?, &origin)?;
    let opts = Options {
        target_input: true,
        colormap: true,
        ..opts.clone()
    };
    let compiled = compile_with_facts(&model, &facts, &opts, &origin)?;
    let roles = find_roles(
        &model.graph,
        &facts,
        opts.input.as_deref(),
        opts.output.as_deref(),
        &origin,
    )?;
    let sample: Vec<usize> = input_sample_dims(&facts, &roles.input, &origin)?;
    let pp = image_preprocess(&model, &sample, PartialPreprocess::default(), &origin)?.ok_or_else(
        || {
            bad_input!(
                "{origin}: input '{}' has shape {sample:?} per sample, not an image; \
                 the page explains images",
                roles.input
            )
        },
    )?;
    let classes = roles.classes as usize;
    let labels =
        labels(&model, classes).unwrap_or_else(|| (0..classes).map(|k| k.to_string()).collect());
    let output = model
        .graph
        .outputs
        .first()
        .map(|o| o.name().to_string())
        .unwrap_or_default();
    let name = model_path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let config = json!({
        "model": name,
        "input": roles.input,
        "logits": output,
        "target_input": TARGET,
        "layout": match pp.layout { Layout::Nchw => "nchw", Layout::Nhwc => "nhwc" },
        "channels": pp.channels,
        // The model input's [height, width]: a plain resize to it, or (photo form, `resize`
        // not null) the shorter side resized to `resize` and the centre crop `crop` (= size).
        "size": [pp.size.0, pp.size.1],
        "resize": pp.resize,
        "crop": pp.resize.map(|_| [pp.size.0, pp.size.1]),
        "interpolation": pp.interpolation.name(),
        "grayscale": pp.grayscale || pp.channels == 1,
        "mean": pp.mean,
        "std": pp.std,
        "labels": labels,
        "method": opts.method.name(),
    });
    let onnx = crate::onnx::encode(&ir::export(&compiled)?);
    let config = serde_json::to_vec_pretty(&config).map_err(|e| Error::Runtime(e.to_string()))?;
    Ok((onnx, config))
}

/// Write the site as files under `out` (for any static server).
pub fn write(site: &Site, out: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut urls: Vec<&String> = site.files.keys().collect();
    urls.sort();
    for url in urls {
        let path = out.join(url.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| bad_input!("{}: cannot create the folder: {e}", parent.display()))?;
        }
        std::fs::write(&path, &site.files[url])
            .map_err(|e| bad_input!("{}: cannot write: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn content_type(url: &str) -> &'static str {
    match url.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "wasm" => "application/wasm",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// Bind `host:port` (port 0: any free port) and return the listener and its URL.
pub fn bind(host: &str, port: u16) -> Result<(TcpListener, String)> {
    let listener = TcpListener::bind((host, port))
        .map_err(|e| bad_input!("cannot listen on {host}:{port}: {e} (try another --port)"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Runtime(e.to_string()))?;
    Ok((listener, format!("http://{addr}/")))
}

/// Answer GET and HEAD requests for the site's files until the process ends.
pub fn serve(site: Site, listener: TcpListener) -> Result<()> {
    let site = Arc::new(site);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let site = Arc::clone(&site);
        std::thread::spawn(move || {
            // A client that goes away mid-answer is not our failure.
            let _ = answer(&site, stream);
        });
    }
    Ok(())
}

fn answer(site: &Site, mut stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // Skip the headers: nothing in them changes the answer.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let path = if path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_string()
    };
    let (status, body, ctype): (&str, &[u8], &str) = match (method, site.files.get(&path)) {
        ("GET" | "HEAD", Some(b)) => ("200 OK", b, content_type(&path)),
        ("GET" | "HEAD", None) => ("404 Not Found", b"not found\n", "text/plain"),
        _ => (
            "405 Method Not Allowed",
            b"only GET and HEAD\n",
            "text/plain",
        ),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n\
         Cross-Origin-Opener-Policy: same-origin\r\nCross-Origin-Embedder-Policy: require-corp\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        stream.write_all(body)?;
    }
    stream.flush()
}

// The command line of `serve`: its flags (the doc comments are the --help text) and what
// `onnx-rap serve` does with them.

#[derive(clap::Args)]
pub struct ServeCli {
    /// The model the page explains (.onnx)
    #[arg(default_value = "models/efficientnet_lite0.onnx")]
    model: PathBuf,
    /// The built page
    #[arg(long, default_value = "web/dist")]
    dir: PathBuf,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free port; the URL is printed)
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Write the site (page, model_rap.onnx, model.json) to DIR and exit
    #[arg(long, value_name = "DIR")]
    write_to: Option<PathBuf>,
    /// Propagation rules
    #[arg(long, value_enum, default_value = "rap")]
    method: MethodArg,
}

/// `onnx-rap serve`: build the site, then write it to --write-to or serve it until stopped.
pub fn main(cli: ServeCli) -> Result<()> {
    let ServeCli {
        model,
        dir,
        host,
        port,
        write_to,
        method: m,
    } = cli;
    let opts = Options {
        method: args::method(m),
        ..Options::default()
    };
    let site = build(&dir, &model, &opts)?;
    if let Some(out) = write_to {
        let files = write(&site, &out)?;
        eprintln!(
            "wrote {} files ({} bytes) to {}; serve that folder with any static server",
            files.len(),
            site.bytes(),
            out.display()
        );
        return Ok(());
    }
    let (listener, url) = bind(&host, port)?;
    println!("serving {} at {url} (Ctrl-C to stop)", model.display());
    std::io::Write::flush(&mut std::io::stdout()).ok();
    serve(site, listener)?;
    Ok(())
}
