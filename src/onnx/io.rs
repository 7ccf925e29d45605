//! Reading and writing `.onnx` files.
//!
//! [`decode_file`] turns the bytes of a file into a [`ModelProto`] and nothing else: encoding it
//! again gives the same bytes. [`load`] also reads every tensor stored in an external data file
//! (`location`, `offset`, `length`) into the model, so the rest of onnx-rap sees one
//! self-contained model. [`save`] writes a model inline, or moves large tensors to
//! `<file>.data` above a size threshold.

use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use prost::Message;

use super::proto::{tensor_proto::DataLocation, ModelProto, StringStringEntryProto, TensorProto};
use crate::bad_input;
use crate::error::{Error, Result};

/// Decode the bytes of an ONNX file; `origin` names it in errors.
pub fn decode(bytes: &[u8], origin: &str) -> Result<ModelProto> {
    if bytes.is_empty() {
        return Err(bad_input!(
            "{origin}: the file is empty; expected an ONNX model (a ModelProto)"
        ));
    }
    let model = ModelProto::decode(bytes).map_err(|e| {
        bad_input!(
            "{origin}: not a valid ONNX model, the protobuf data does not decode ({e}); \
             the file may be truncated or not an ONNX file at all"
        )
    })?;
    if model.ir_version.unwrap_or(0) <= 0 || model.graph.is_none() {
        return Err(bad_input!(
            "{origin}: not an ONNX model: it has no IR version or no graph; \
             the file may be truncated or not an ONNX file at all"
        ));
    }
    Ok(model)
}

/// Encode a model to bytes.
pub fn encode(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Read a file and decode it, leaving external data references as they are.
pub fn decode_file(path: &Path) -> Result<ModelProto> {
    let bytes = fs::read(path)
        .map_err(|e| bad_input!("{}: cannot read the model file: {e}", path.display()))?;
    decode(&bytes, &path.display().to_string())
}

/// Read a model and every external data file it names, so that all tensors hold their data.
pub fn load(path: &Path) -> Result<ModelProto> {
    let bytes = fs::read(path)
        .map_err(|e| bad_input!("{}: cannot read the model file: {e}", path.display()))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load_bytes(&bytes, &dir, &path.display().to_string())
}

/// [`load`] for the bytes of a model file that lives in `dir` (its external data files are
/// read from there); `origin` names it in errors.
pub fn load_bytes(bytes: &[u8], dir: &Path, origin: &str) -> Result<ModelProto> {
    let mut model = decode(bytes, origin)?;
    let dir = dir.to_path_buf();
    let origin = origin.to_string();
    if let Some(graph) = model.graph.as_mut() {
        for t in graph.initializer.iter_mut() {
            resolve_external(t, &dir, &origin)?;
        }
        for node in graph.node.iter_mut() {
            for a in node.attribute.iter_mut() {
                if let Some(t) = a.t.as_mut() {
                    resolve_external(t, &dir, &origin)?;
                }
            }
        }
    }
    Ok(model)
}

fn entry<'a>(t: &'a TensorProto, key: &str) -> Option<&'a str> {
    t.external_data
        .iter()
        .find(|e| e.key() == key)
        .map(|e| e.value())
}

/// Read the external bytes of one tensor into `raw_data`.
fn resolve_external(t: &mut TensorProto, dir: &Path, origin: &str) -> Result<()> {
    if t.data_location != Some(DataLocation::External as i32) {
        return Ok(());
    }
    let name = t.name().to_string();
    let location = entry(t, "location").ok_or_else(|| {
        bad_input!("{origin}: tensor '{name}' is marked external but names no 'location'")
    })?;
    let rel = Path::new(location);
    if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(bad_input!(
            "{origin}: tensor '{name}' points outside the model's folder ('{location}'); \
             external data must sit next to the model file"
        ));
    }
    let file: PathBuf = dir.join(rel);
    let parse = |key: &str| -> Result<Option<u64>> {
        match entry(t, key) {
            None => Ok(None),
            Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
                bad_input!("{origin}: tensor '{name}' has a bad external '{key}' value '{v}'")
            }),
        }
    };
    let offset = parse("offset")?.unwrap_or(0);
    let length = parse("length")?;
    let data = fs::read(&file).map_err(|e| {
        bad_input!(
            "{origin}: tensor '{name}' keeps its data in '{}', which cannot be read ({e}); \
             copy the data file next to the model",
            file.display()
        )
    })?;
    let size = data.len() as u64;
    let end = match length {
        Some(l) => offset.checked_add(l),
        None => Some(size),
    };
    let end = match end {
        Some(end) if offset <= size && end <= size => end,
        _ => {
            return Err(bad_input!(
                "{origin}: tensor '{name}' reads bytes {offset}..{} of '{}', which has only {size} \
                 bytes; the data file is truncated or belongs to another model",
                end.map(|e| e.to_string()).unwrap_or_else(|| "overflow".into()),
                file.display()
            ))
        }
    };
    t.raw_data = Some(data[offset as usize..end as usize].to_vec());
    t.external_data.clear();
    t.data_location = None;
    Ok(())
}

/// How [`save`] stores tensor data.
#[derive(Clone, Debug, Default)]
pub struct SaveOptions {
    /// Move every initializer whose raw data has at least this many bytes to `<file>.data`.
    /// `None` keeps everything inline (a single file, limited to 2 GiB by protobuf).
    pub external_above: Option<usize>,
}

/// Write a model to `path`, inline or with large tensors in `<file name>.data` beside it.
pub fn save(model: &ModelProto, path: &Path, opts: &SaveOptions) -> Result<()> {
    let write_err =
        |e: std::io::Error, p: &Path| Error::Runtime(format!("{}: cannot write: {e}", p.display()));
    let Some(threshold) = opts.external_above else {
        return fs::write(path, encode(model)).map_err(|e| write_err(e, path));
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| bad_input!("{}: not a file path", path.display()))?
        .to_string_lossy()
        .to_string();
    let data_name = format!("{file_name}.data");
    let data_path = path.with_file_name(&data_name);
    let mut out = model.clone();
    let mut blob: Vec<u8> = Vec::new();
    if let Some(graph) = out.graph.as_mut() {
        for t in graph.initializer.iter_mut() {
            let big = t.raw_data.as_ref().is_some_and(|r| r.len() >= threshold);
            if !big {
                continue;
            }
            // Keep every tensor aligned to 64 bytes so the data file can be memory-mapped.
            while !blob.len().is_multiple_of(64) {
                blob.push(0);
            }
            let raw = t.raw_data.take().unwrap_or_default();
            let kv = |k: &str, v: String| StringStringEntryProto {
                key: Some(k.to_string()),
                value: Some(v),
            };
            t.external_data = vec![
                kv("location", data_name.clone()),
                kv("offset", blob.len().to_string()),
                kv("length", raw.len().to_string()),
            ];
            t.data_location = Some(DataLocation::External as i32);
            blob.extend_from_slice(&raw);
        }
    }
    if !blob.is_empty() {
        let mut f = fs::File::create(&data_path).map_err(|e| write_err(e, &data_path))?;
        f.write_all(&blob).map_err(|e| write_err(e, &data_path))?;
    }
    fs::write(path, encode(&out)).map_err(|e| write_err(e, path))
}
