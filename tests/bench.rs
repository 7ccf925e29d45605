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
    // 2 workers of batch 1: a throughput for each side. Only its presence and sign are
    // checked: any bound from the single-run timings is a timed assertion (a CI run on a
    // loaded machine once saw 2 warm workers beat 2x the single runs' best by 58%).
    for side in ["forward", "explain"] {
        let ips = f(&format!("images_per_s_{side}"));
        assert!(ips.is_finite() && ips > 0.0, "{side}: {out}");
        let [lo, hi] = [0, 1].map(|i| v[format!("{side}_min_max_s")][i].as_f64().unwrap());
        let median = f(&format!("{side}_s"));
        assert!(0.0 < lo && lo <= median && median <= hi, "{side}: {out}");
    }
    // The children ran: both peaks are there, and the explanation (compile + a plan holding
    // W, W+ and the stacked kernels) takes more memory than plain tract's forward pass.
    let (pf, pe) = (f("peak_rss_kb_forward"), f("peak_rss_kb_explain"));
    assert!(pf > 1000.0 && pe > pf, "{out}");
    assert!((f("peak_rss_ratio") - pe / pf).abs() < 1e-9, "{out}");
}
