//! `onnx-rap bench --json`: timings, throughput and the peak memory of each side, the latter
//! measured in child processes of their own.

mod common;

use common::*;

#[test]
fn bench_json_reports_throughput_and_each_sides_peak_memory() {
    let model = root().join("models/digits_vgg.onnx");
    let (code, out, err) = run_cli(
        env!("CARGO_BIN_EXE_onnx-rap"),
        &[
            "bench",
            model.to_str().unwrap(),
            "--runs",
            "3",
            "--threads",
            "2",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect(&out);
    let f = |k: &str| {
        v[k].as_f64()
            .unwrap_or_else(|| panic!("{k} missing: {out}"))
    };
    assert_eq!(v["threads"], 2);
    assert!(
        (f("ratio") - f("explain_s") / f("forward_s")).abs() < 1e-9,
        "{out}"
    );
    // 2 workers of batch 1: images/s is positive and no more than 2 workers each at the
    // fastest single run could give (with a margin for that run's own noise).
    for side in ["forward", "explain"] {
        let ips = f(&format!("images_per_s_{side}"));
        let best = v[format!("{side}_min_max_s")][0].as_f64().unwrap();
        assert!(ips > 0.0 && ips <= 2.0 / best * 1.5, "{side}: {out}");
    }
    // The children ran: both peaks are there, and the explanation (compile + a plan holding
    // W, W+ and the stacked kernels) takes more memory than plain tract's forward pass.
    let (pf, pe) = (f("peak_rss_kb_forward"), f("peak_rss_kb_explain"));
    assert!(pf > 1000.0 && pe > pf, "{out}");
    assert!((f("peak_rss_ratio") - pe / pf).abs() < 1e-9, "{out}");
}
