//! `onnx-rap explain MODEL --text "..."` (or `--input FILE.txt|.jsonl`) for text models: the
//! texts are tokenised as the model's metadata says (see [`crate::text`]), explained in one
//! compiled plan, and printed token by token; `--out DIR` adds an HTML page per text, a
//! `relevance.jsonl` and a `summary.tsv`.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use ndarray::Axis;
use serde_json::{json, Value as Json};

use super::explain::{layer_sums_json, layer_table};
use crate::bad_input;
use crate::error::{Error, Result};
use crate::explainer::text::feeds;
use crate::explainer::{Explainer, LayerSum, Settings, TokenRelevance, Verdict};
use crate::pass::Options;
use crate::text::{excerpt, Encoded, Token};

/// One text to explain: a name for its files and messages, and the text.
#[derive(Clone, Debug)]
pub struct Text {
    pub name: String,
    pub text: String,
}

/// What to explain and how.
pub struct TextArgs {
    pub model: PathBuf,
    pub texts: Vec<Text>,
    pub tokenizer: Option<PathBuf>,
    pub target: Option<i64>,
    pub out: Option<PathBuf>,
    pub batch: usize,
    pub threads: usize,
    pub compile: Options,
}

/// One explained text.
pub struct TextOutcome {
    pub name: String,
    pub text: String,
    pub verdict: Verdict,
    /// The relevance of every position the model read (it equals the logit for `rap`).
    pub relevance_sum: f64,
    pub tokens: Vec<Token>,
    /// Relevance of each of `tokens`.
    pub relevance: Vec<f32>,
    /// Relevance of the special tokens (the start token, `[CLS]`, `[SEP]`), if any.
    pub special: Option<f64>,
    /// Relevance summed over the padding positions.
    pub padding: f64,
    /// `(tokens read, tokens in the text)` when the text was cut to the context.
    pub truncated: Option<(usize, usize)>,
    pub layer_sums: Vec<LayerSum>,
    pub files: Vec<PathBuf>,
}

fn signed(x: f64) -> String {
    if x == 0.0 || x.abs() >= 0.01 || !x.is_finite() {
        format!("{x:+.2}")
    } else {
        format!("{x:+.1e}")
    }
}

impl TextOutcome {
    /// The summary line: the classes, the explained class, its logit and where the relevance
    /// went (text tokens, start token, padding).
    pub fn line(&self) -> String {
        let tokens: f64 = self.relevance.iter().map(|&v| v as f64).sum();
        let mut parts = vec![format!("{} tokens {}", self.tokens.len(), signed(tokens))];
        if let Some(s) = self.special {
            parts.push(format!("special tokens {}", signed(s)));
        }
        parts.push(format!("padding {}", signed(self.padding)));
        format!(
            "{}: {} | explained: {}, logit {:.2}, relevance sum {:.2} ({})",
            self.name,
            self.verdict.top_line(),
            self.verdict.explained(),
            self.verdict.logit,
            self.relevance_sum,
            parts.join(", ")
        )
    }

    /// The text with every token marked by its relevance: ANSI background colours (scaled by
    /// the text's largest |relevance|) when `colour`, else `token(+0.12)`.
    pub fn tokens_line(&self, colour: bool) -> String {
        let scale = self.relevance.iter().fold(0f32, |m, v| m.max(v.abs()));
        let chars: Vec<char> = self.text.chars().collect();
        let mut s = String::new();
        let mut at = 0;
        for (t, &r) in self.tokens.iter().zip(&self.relevance) {
            // Text between tokens that no token covers (spaces a tokenizer drops).
            if t.start > at {
                s.extend(&chars[at..t.start]);
            }
            at = at.max(t.end);
            if colour {
                let (bg, fg) = crate::text::html::token_colours(r, scale);
                let fg = if fg == "#fff" { 97 } else { 30 };
                s += &format!(
                    "\x1b[48;2;{};{};{}m\x1b[{fg}m{}\x1b[0m",
                    bg[0], bg[1], bg[2], t.text
                );
            } else {
                s += &format!("{}({})", t.text, signed(r as f64));
            }
        }
        s
    }

    /// The `--layer-sums` table (empty without it).
    pub fn layer_table(&self) -> String {
        layer_table(&self.layer_sums, self.verdict.logit as f64)
    }

    pub fn to_json(&self) -> Json {
        let mut v = json!({
            "name": self.name,
            "text": self.text,
            "relevance_sum": self.relevance_sum,
            "tokens": self.tokens.iter().zip(&self.relevance).map(|(t, r)| json!({
                "text": t.text,
                "start": t.start,
                "end": t.end,
                "id": t.id,
                "relevance": r,
            })).collect::<Vec<_>>(),
            "special_tokens_relevance": self.special,
            "padding_relevance": self.padding,
            "truncated": self.truncated.map(|(kept, total)| json!({"kept": kept, "total": total})),
            "files": self.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        });
        self.verdict.add_json(&mut v, "top");
        if !self.layer_sums.is_empty() {
            v["layer_sums"] = layer_sums_json(&self.layer_sums, self.verdict.logit as f64);
        }
        v
    }
}

/// The texts of `--text` values and of .txt (one text a line) or .jsonl (a `text` field a
/// line) files, named `text_K` and `STEM_LINE`. Blank lines are skipped.
pub fn gather(texts: &[String], files: &[PathBuf]) -> Result<Vec<Text>> {
    let mut out: Vec<Text> = texts
        .iter()
        .enumerate()
        .map(|(k, t)| Text {
            name: format!("text_{}", k + 1),
            text: t.clone(),
        })
        .collect();
    for f in files {
        out.extend(read_texts(f)?);
    }
    if out.is_empty() {
        return Err(bad_input!(
            "no text given: pass --text \"...\" or --input FILE.txt|FILE.jsonl"
        ));
    }
    Ok(out)
}

/// Whether `p` names a file of texts.
pub fn is_text_file(p: &Path) -> bool {
    matches!(
        p.extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .as_deref(),
        Some("txt" | "jsonl")
    )
}

/// The texts of one .txt or .jsonl file.
pub fn read_texts(f: &Path) -> Result<Vec<Text>> {
    let shown = f.display();
    let jsonl = f.extension().is_some_and(|e| e == "jsonl");
    let file = std::fs::File::open(f).map_err(|e| bad_input!("{shown}: cannot read: {e}"))?;
    let stem = f
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "text".into());
    let mut out = Vec::new();
    for (k, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(|e| bad_input!("{shown}: cannot read: {e}"))?;
        let line = String::from_utf8(line).map_err(|e| {
            bad_input!(
                "{shown}:{}: the line is not valid UTF-8 (byte {}); texts must be UTF-8",
                k + 1,
                e.utf8_error().valid_up_to()
            )
        })?;
        let line = line.strip_suffix('\r').unwrap_or(&line);
        if line.trim().is_empty() {
            continue;
        }
        let text = if jsonl {
            let v: Json = serde_json::from_str(line)
                .map_err(|e| bad_input!("{shown}:{}: not a JSON object: {e}", k + 1))?;
            v.get("text")
                .and_then(Json::as_str)
                .ok_or_else(|| bad_input!("{shown}:{}: the object has no \"text\" string", k + 1))?
                .to_string()
        } else {
            line.to_string()
        };
        out.push(Text {
            name: format!("{stem}_{}", k + 1),
            text,
        });
    }
    if out.is_empty() {
        return Err(bad_input!("{shown}: the file holds no text"));
    }
    Ok(out)
}

/// Explain every text; files (with --out) appear only when every text has succeeded.
pub fn run(args: &TextArgs, progress: bool) -> Result<Vec<TextOutcome>> {
    let settings = Settings {
        compile: args.compile.clone(),
        tokenizer: args.tokenizer.clone(),
        ..Settings::default()
    };
    let ex = Explainer::load_text(&args.model, &settings)?;
    if let Some(t) = args.target {
        super::explain::check_target(t, ex.classes())?;
    }
    let spec = ex
        .text()
        .ok_or_else(|| Error::Runtime("a text explainer without a tokenizer".into()))?;

    // Every text tokenised before the first run: an empty text stops the command.
    let encoded: Vec<Encoded> = args
        .texts
        .iter()
        .map(|t| spec.encode(&t.text, &t.name))
        .collect::<Result<_>>()?;
    for (t, e) in args.texts.iter().zip(&encoded) {
        if e.truncated() {
            eprintln!(
                "warning: {} (\"{}\") has {} tokens; the model reads {} (special tokens \
                 included), so only the first {} are explained",
                t.name,
                excerpt(&t.text, 40),
                e.total,
                spec.context,
                e.tokens.len()
            );
        }
    }
    // The plan of each run size is made by the first worker that needs it and shared.
    let per_run = ex.max_batch().unwrap_or(args.batch.max(1));
    let index: Vec<usize> = (0..encoded.len()).collect();
    let chunks: Vec<&[usize]> = index.chunks(per_run).collect();
    let workers = crate::runtime::share_threads(args.threads.max(1), chunks.len());
    let bar = super::progress_bar(progress && encoded.len() > 1, encoded.len(), "texts", false)?;
    let staged = match &args.out {
        Some(o) => Some(crate::outdir::Staged::new(o)?),
        None => None,
    };
    let model_name = args
        .model
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let method = args.compile.method.name();
    let explain_chunk = |chunk: &[usize]| -> Result<Vec<TextOutcome>> {
        let sample: Vec<&Encoded> = chunk.iter().map(|&i| &encoded[i]).collect();
        let targets = args.target.map(|t| vec![t; chunk.len()]);
        let e = ex.run(feeds(&ex, &sample)?, targets.as_deref())?;
        let mut outcomes = Vec::with_capacity(chunk.len());
        for (k, &i) in chunk.iter().enumerate() {
            let enc = &encoded[i];
            let rel: Vec<f32> = e.relevance.index_axis(Axis(0), k).iter().copied().collect();
            let split = TokenRelevance::split(enc, &rel);
            let o = TextOutcome {
                name: args.texts[i].name.clone(),
                text: args.texts[i].text.clone(),
                verdict: e.verdict(k, ex.labels()),
                relevance_sum: split.sum,
                tokens: enc.tokens.clone(),
                relevance: split.tokens,
                special: split.special,
                padding: split.padding,
                truncated: enc.truncated().then_some((enc.tokens.len(), enc.total)),
                layer_sums: e.layer_sums[k].clone(),
                files: Vec::new(),
            };
            outcomes.push(match &staged {
                Some(s) => write_page(o, s, &model_name, method)?,
                None => o,
            });
        }
        bar.inc(chunk.len() as u64);
        Ok(outcomes)
    };
    let result = crate::parallel::map(workers, &chunks, |_, chunk| explain_chunk(chunk))
        .map(|o| o.into_iter().flatten().collect::<Vec<_>>())
        .and_then(|mut o| {
            if let Some(s) = &staged {
                write_tables(&mut o, s)?;
            }
            Ok(o)
        });
    bar.finish_and_clear();
    match (result, staged) {
        (Ok(o), Some(s)) => {
            s.commit()?;
            Ok(o)
        }
        (Ok(o), None) => Ok(o),
        (Err(e), s) => {
            if let Some(s) = s {
                s.abandon();
            }
            Err(e)
        }
    }
}

/// Write the HTML page of one text.
fn write_page(
    mut o: TextOutcome,
    staged: &crate::outdir::Staged,
    model: &str,
    method: &str,
) -> Result<TextOutcome> {
    let file = format!("{}.html", o.name);
    let top: Vec<(String, f64)> = o
        .verdict
        .top
        .iter()
        .map(|r| (r.name(), r.probability))
        .collect();
    let mut rest = Vec::new();
    if let Some(s) = o.special {
        rest.push(("special tokens".to_string(), s));
    }
    rest.push(("padding".to_string(), o.padding));
    let explained = o.verdict.explained();
    let page = crate::text::html::page(
        &crate::text::html::Summary {
            title: &o.name,
            model,
            method,
            top: &top,
            explained: &explained,
            logit: o.verdict.logit,
            relevance_sum: o.relevance_sum,
            rest: &rest,
            truncated: o.truncated,
        },
        &o.text,
        &o.tokens,
        &o.relevance,
    );
    let path = staged.path(&file);
    std::fs::write(&path, page)
        .map_err(|e| Error::Runtime(format!("{}: cannot write: {e}", path.display())))?;
    o.files.push(staged.final_path(&file));
    Ok(o)
}

/// `relevance.jsonl` (every text's tokens, spans and values) and `summary.tsv` (a line per
/// text).
fn write_tables(outcomes: &mut [TextOutcome], staged: &crate::outdir::Staged) -> Result<()> {
    let write = |name: &str, body: String| -> Result<()> {
        let path = staged.path(name);
        std::fs::write(&path, body)
            .map_err(|e| Error::Runtime(format!("{}: cannot write: {e}", path.display())))
    };
    for o in outcomes.iter_mut() {
        o.files.push(staged.final_path("relevance.jsonl"));
        o.files.push(staged.final_path("summary.tsv"));
    }
    let mut jsonl = String::new();
    for o in outcomes.iter() {
        jsonl += &serde_json::to_string(&o.to_json()).map_err(|e| Error::Runtime(e.to_string()))?;
        jsonl.push('\n');
    }
    write("relevance.jsonl", jsonl)?;
    let mut tsv = String::from(
        "name\tpredicted\ttarget\tlogit\trelevance_sum\ttokens\ttop_token\ttop_relevance\ttext\n",
    );
    for o in outcomes.iter() {
        let top = o
            .tokens
            .iter()
            .zip(&o.relevance)
            .max_by(|a, b| a.1.total_cmp(b.1));
        let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
        tsv += &format!(
            "{}\t{}\t{}\t{:.6}\t{:.6}\t{}\t{}\t{:.6}\t{}\n",
            o.name,
            o.verdict
                .label
                .clone()
                .unwrap_or_else(|| o.verdict.predicted.to_string()),
            o.verdict.explained(),
            o.verdict.logit,
            o.relevance_sum,
            o.tokens.len(),
            top.map(|t| clean(&t.0.text)).unwrap_or_default(),
            top.map_or(0.0, |t| *t.1),
            clean(&o.text)
        );
    }
    write("summary.tsv", tsv)
}
