//! Lossless load/save and the IR round trip, on every model the project ships and tests with.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use onnx_rap::onnx::{decode, decode_file, encode, load, save, SaveOptions};
use onnx_rap::runtime::Value;

/// Every .onnx file under models/, tests/data (except the deliberately broken ones) and
/// tests/golden.
fn all_models() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().unwrap() != "bad" {
                    walk(&p, out);
                }
            } else if p.extension().is_some_and(|x| x == "onnx") {
                out.push(p);
            }
        }
    }
    let mut v = vec![];
    for d in ["models", "tests/data", "tests/golden"] {
        walk(&root().join(d), &mut v);
    }
    v.sort();
    v
}

#[test]
fn decode_then_encode_is_byte_identical() {
    let models = all_models();
    assert!(
        models.len() >= 20,
        "expected the shipped models, found {}",
        models.len()
    );
    for p in &models {
        let bytes = std::fs::read(p).unwrap();
        let m = decode(&bytes, &p.display().to_string()).unwrap();
        assert!(
            encode(&m) == bytes,
            "{}: re-encoded bytes differ",
            p.display()
        );
    }
}

#[test]
fn ir_export_of_import_is_byte_identical() {
    for p in all_models() {
        let bytes = std::fs::read(&p).unwrap();
        let m = decode_file(&p).unwrap();
        let ir = onnx_rap::ir::import(&m, "test").unwrap();
        let back = encode(&onnx_rap::ir::export(&ir).unwrap());
        assert!(
            back == bytes,
            "{}: export(import(m)) differs from m",
            p.display()
        );
    }
}

/// The models whose outputs are compared before and after the IR round trip, with an input.
fn runnable() -> Vec<(PathBuf, &'static str, Vec<usize>)> {
    let mut v = vec![
        (
            root().join("tests/data/tiny_cnn.onnx"),
            "x",
            vec![2, 3, 13, 11],
        ),
        (
            root().join("tests/golden/resnet18_w4_64_b1/model.onnx"),
            "input",
            vec![2, 3, 64, 64],
        ),
        (
            root().join("tests/golden/vgg11bn_w16_224_b1/model.onnx"),
            "input",
            vec![1, 3, 224, 224],
        ),
    ];
    for f in [
        "light_bvlc_alexnet",
        "light_squeezenet",
        "light_resnet50",
        "light_densenet121",
        "light_inception_v1",
        "light_shufflenet",
        "light_vgg19",
    ] {
        v.push((
            root().join(format!("tests/data/light/{f}.onnx")),
            "",
            vec![1, 3, 224, 224],
        ));
    }
    v
}

#[test]
fn ir_round_trip_runs_identically_in_tract_and_onnxruntime() {
    let tmp = tempfile::tempdir().unwrap();
    for (k, (p, input, shape)) in runnable().into_iter().enumerate() {
        let n: usize = shape.iter().product();
        let x = ndarray::ArrayD::from_shape_vec(
            shape.clone(),
            (0..n)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect(),
        )
        .unwrap();
        let orig = std::fs::read(&p).unwrap();
        let m = load(&p).unwrap();
        let ir = onnx_rap::ir::import(&m, "test").unwrap();
        let first = ir.graph.runtime_inputs()[0].to_string();
        let input = if input.is_empty() {
            first.as_str()
        } else {
            input
        };
        let back = encode(&onnx_rap::ir::export(&ir).unwrap());
        let a = run_tract(&orig, vec![Value::F32(x.clone())]);
        let b = run_tract(&back, vec![Value::F32(x.clone())]);
        let out_name = output_names(&orig)[0].clone();
        assert_eq!(
            a[&out_name],
            b[&out_name],
            "{}: tract outputs differ",
            p.display()
        );
        let pa = tmp.path().join(format!("{k}_a.onnx"));
        let pb = tmp.path().join(format!("{k}_b.onnx"));
        std::fs::write(&pa, &orig).unwrap();
        std::fs::write(&pb, &back).unwrap();
        let oa = run_ort(&pa, &[(input, Feed::F32(x.clone()))]);
        let ob = run_ort(&pb, &[(input, Feed::F32(x.clone()))]);
        assert_eq!(
            oa[&out_name],
            ob[&out_name],
            "{}: onnxruntime outputs differ",
            p.display()
        );
        // and the two runtimes agree on the model itself
        let e = rel_err_per_sample(&a[&out_name], &oa[&out_name]);
        assert!(
            e.iter().all(|e| *e < 1e-3),
            "{}: tract vs onnxruntime {e:?}",
            p.display()
        );
    }
}

#[test]
fn external_data_loads_like_the_inline_model() {
    let ext = load(&root().join("tests/data/external/model.onnx")).unwrap();
    let inline = load(&root().join("tests/data/tiny_cnn.onnx")).unwrap();
    let (ge, gi) = (ext.graph.unwrap(), inline.graph.unwrap());
    assert_eq!(ge.initializer.len(), gi.initializer.len());
    for (a, b) in ge.initializer.iter().zip(&gi.initializer) {
        assert_eq!(a.name(), b.name());
        let (x, y) = (
            onnx_rap::onnx::tensor::to_f32(a).unwrap(),
            onnx_rap::onnx::tensor::to_f32(b).unwrap(),
        );
        assert_eq!(x, y, "tensor {} differs", a.name());
    }
}

#[test]
fn save_external_then_load_gives_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    let m = load(&root().join("tests/golden/resnet18_w4_64_b1/model.onnx")).unwrap();
    let out = tmp.path().join("m.onnx");
    save(
        &m,
        &out,
        &SaveOptions {
            external_above: Some(1024),
        },
    )
    .unwrap();
    let data = tmp.path().join("m.onnx.data");
    assert!(data.exists(), "large tensors moved to m.onnx.data");
    assert!(
        std::fs::metadata(&out).unwrap().len() < 100_000,
        "the .onnx file keeps only small tensors"
    );
    let back = load(&out).unwrap();
    let inline = tmp.path().join("inline.onnx");
    save(&back, &inline, &SaveOptions::default()).unwrap();
    let orig = std::fs::read(root().join("tests/golden/resnet18_w4_64_b1/model.onnx")).unwrap();
    assert!(
        std::fs::read(&inline).unwrap() == orig,
        "external save + load + inline save restores the original bytes"
    );
    // and it runs the same
    let x = npy_f32(&root().join("tests/golden/resnet18_w4_64_b1/input.npy"));
    let a = run_ort(&out, &[("input", Feed::F32(x.clone()))]);
    let b = run_ort(
        &root().join("tests/golden/resnet18_w4_64_b1/model.onnx"),
        &[("input", Feed::F32(x))],
    );
    assert_eq!(a["logits"], b["logits"]);
}
