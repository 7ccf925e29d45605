//! `onnx-rap serve`: the browser page of `web/` with a model compiled for it, from a small
//! local HTTP server (or written out as a static site with `--write-to`).
//!
//! The page loads `model_rap.onnx` (compiled with `rap_target`, and `heatmap_rgb` for images)
//! and `model.json` from its own folder. For an image classifier `model.json` has `"kind":
//! "image"`, the input name, the preprocessing in plain-resize or resize + centre-crop form,
//! mean/std/layout/grayscale and the labels; for a text classifier (token ids whose model
//! names its tokenizer) `"kind": "text"`, the input and mask names, the tokenizer settings
//! and the labels, and the site serves the tokenizer as `tokenizer.json`. These files are
//! made here in memory, the rest is the page as `npm run build` left it in `web/dist`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use super::args::{self, MethodArg};
use crate::analysis::{find_roles, infer_facts, input_sample_dims, Facts, Roles};
use crate::bad_input;
use crate::error::{Error, Result};
use crate::explainer::{image_preprocess, labels, metadata};
use crate::image::{Layout, PartialPreprocess};
use crate::ir;
use crate::pass::{Options, RELEVANCE, TARGET};
use crate::text::{TextSpec, META_TOKENIZER};

/// A file of the site: its URL path (`/model.json`) and its bytes.
pub type SiteFile = (String, Vec<u8>);

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

/// The page in `dir` plus the files made from `model` ([`model_files`]).
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
    files.extend(model_files(model, opts)?);
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

/// The files made from the model, by URL path: `model_rap.onnx` (with `rap_target`; for an
/// image model also `heatmap_rgb`), the page's `model.json` and, for a text model, its
/// tokenizer.
pub fn model_files(model_path: &Path, opts: &Options) -> Result<Vec<SiteFile>> {
    let origin = model_path.display().to_string();
    let model = super::load_model(model_path)?;
    let facts = infer_facts(&ir::export(&model)?, &origin)?;
    let roles = find_roles(
        &model.graph,
        &facts,
        opts.input.as_deref(),
        opts.output.as_deref(),
        &origin,
    )?;
    let text = roles.embedding.is_some();
    let opts = Options {
        target_input: true,
        // The colour map paints an image heatmap; a text's relevance is one value per token.
        colormap: !text,
        ..opts.clone()
    };
    let (mut config, mut files) = if text {
        text_config(model_path, &model, &facts, &roles, &origin)?
    } else {
        (image_config(&model, &facts, &roles, &origin)?, Vec::new())
    };
    let name = model_path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let output = model
        .graph
        .outputs
        .first()
        .map(|o| o.name().to_string())
        .unwrap_or_default();
    let classes = roles.classes as usize;
    let labels =
        labels(&model, classes).unwrap_or_else(|| (0..classes).map(|k| k.to_string()).collect());
    config["model"] = json!(name);
    config["logits"] = json!(output);
    config["target_input"] = json!(TARGET);
    config["labels"] = json!(labels);
    config["method"] = json!(opts.method.name());

    files.push((
        "/model_rap.onnx".into(),
        crate::explainer::compile_bytes(&model, &opts, &origin)?,
    ));
    let config = serde_json::to_vec_pretty(&config).map_err(|e| Error::Runtime(e.to_string()))?;
    files.push(("/model.json".into(), config));
    Ok(files)
}

/// `model.json` of an image classifier: the input and how the page preprocesses images.
fn image_config(
    model: &ir::Model,
    facts: &Facts,
    roles: &Roles,
    origin: &str,
) -> Result<serde_json::Value> {
    let sample: Vec<usize> = input_sample_dims(facts, &roles.input, origin)?;
    let pp = image_preprocess(model, &sample, PartialPreprocess::default(), origin)?.ok_or_else(
        || {
            bad_input!(
                "{origin}: input '{}' has shape {sample:?} per sample, not an image; \
                 the page explains images, and text whose model names its tokenizer \
                 (metadata '{META_TOKENIZER}')",
                roles.input
            )
        },
    )?;
    Ok(json!({
        "kind": "image",
        "input": roles.input,
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
    }))
}

/// `model.json` of a text classifier whose explained input is token ids, and its tokenizer
/// file (served as `tokenizer.json`). The model's `onnx_rap.tokenizer` metadata (written by
/// models/export_nanoguard.py) says how the page makes ids of a text: the tokenizer file
/// beside the model, the context length, the BOS and padding ids.
fn text_config(
    model_path: &Path,
    model: &ir::Model,
    facts: &Facts,
    roles: &Roles,
    origin: &str,
) -> Result<(serde_json::Value, Vec<SiteFile>)> {
    let input = &roles.input;
    if metadata(model, META_TOKENIZER).is_none() {
        return Err(bad_input!(
            "{origin}: input '{input}' holds token ids, but the model names no tokenizer \
             (metadata '{META_TOKENIZER}'); the page needs one to turn text into ids"
        ));
    }
    // The same reading of the metadata and the tokenizer as `explain --text` (it checks the
    // table and the context); the page gets the file as it is.
    let context = facts
        .get(input)
        .and_then(|f| f.sample_dims())
        .and_then(|d| match d[..] {
            [t] => usize::try_from(t).ok(),
            _ => None,
        });
    let spec = TextSpec::load(metadata(model, META_TOKENIZER), None, model_path, context)?;
    if let Some(t) = context.filter(|&t| t != spec.context) {
        return Err(bad_input!(
            "{origin}: metadata '{META_TOKENIZER}': context {}, but input '{input}' takes {t} \
             tokens",
            spec.context
        ));
    }
    if spec.kind() != "tiktoken-bpe" {
        return Err(bad_input!(
            "{origin}: its tokenizer is a {} file; the page tokenises tiktoken-bpe tables only \
             (`onnx-rap explain --text` reads both)",
            spec.kind()
        ));
    }
    let vocab = roles.embedding.as_ref().map_or(i64::MAX, |e| e.rows);
    let bos = spec.bos.ok_or_else(|| {
        bad_input!("{origin}: metadata '{META_TOKENIZER}' gives no 'bos_id'; the page needs one")
    })?;
    for (key, v) in [("bos_id", bos), ("pad_id", spec.pad)] {
        if !(0..vocab).contains(&v) {
            return Err(bad_input!(
                "{origin}: metadata '{META_TOKENIZER}': '{key}' {v} is not a token id below {vocab}"
            ));
        }
    }
    let (kind, context, pad) = (spec.kind(), spec.context, spec.pad);
    // Besides the ids the page feeds an attention mask, if the model takes one.
    let others: Vec<&str> = model
        .graph
        .runtime_inputs()
        .into_iter()
        .filter(|n| n != input)
        .collect();
    let mask = match others[..] {
        [] => None,
        [m] if facts.get(m).is_some_and(|f| f.is_integer()) => Some(m),
        _ => {
            return Err(bad_input!(
                "{origin}: inputs {others:?} besides the token ids '{input}'; the page feeds \
                 the ids and at most one integer attention mask"
            ))
        }
    };
    let tokenizer = read_tokenizer(&spec.file, model_path, origin)?;
    let config = json!({
        "kind": "text",
        "input": input,
        "mask": mask,
        "relevance": RELEVANCE,
        "tokenizer": {
            "url": TOKENIZER_URL.trim_start_matches('/'),
            "file": spec.file.file_name().map(|f| f.to_string_lossy().to_string()),
            "kind": kind,
            "context": context,
            "bos_id": bos,
            "pad_id": pad,
        },
    });
    Ok((config, vec![(TOKENIZER_URL.into(), tokenizer)]))
}

/// Where the site serves a text model's tokenizer.
const TOKENIZER_URL: &str = "/tokenizer.json";

/// The bytes of the tokenizer file, which must lie beside the model (a model must not make
/// the site publish another folder's files).
fn read_tokenizer(file: &Path, model_path: &Path, origin: &str) -> Result<Vec<u8>> {
    let beside = model_path.parent().unwrap_or(Path::new("."));
    if file.parent() != Some(beside) {
        return Err(bad_input!(
            "{origin}: metadata '{META_TOKENIZER}' must name the tokenizer's 'file' as a file \
             name beside the model, not {}",
            file.display()
        ));
    }
    std::fs::read(file).map_err(|e| {
        bad_input!(
            "{}: cannot read the tokenizer that {origin} names: {e}",
            file.display()
        )
    })
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
    /// The model the page explains (.onnx): an image classifier, or a text classifier whose
    /// metadata names its tokenizer (e.g. models/nanoguard.onnx)
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
    /// Write the site (page, model_rap.onnx, model.json, a text model's tokenizer.json) to DIR
    /// and exit
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
