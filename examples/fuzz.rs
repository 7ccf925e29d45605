//! Mutation fuzzing of load, inspect and compile, for a time budget (`scripts/fuzz.sh`).
//!
//! cargo run --release --example fuzz -- SECONDS [--seed S] [--out DIR] [--slow SECS] [--stats]
//!     MODEL...
//!
//! (`--stats`: print how often each kind of refusal came up.)
//!
//! Mutates the MODELs in turn (`tests/support/mutator.rs`: bit flips, truncation, huge
//! varints, duplicated and zeroed spans, structural field changes) and runs each mutant in
//! process. A panic or a run slower than --slow seconds (default 10) is a finding: the
//! mutant is kept as DIR/panic-SEED-N.onnx or DIR/slow-SEED-N.onnx with a .txt beside it.
//! The mutant being run is always in DIR/current.bin, so a mutant that kills the process
//! (an abort, the memory limit of fuzz.sh) can be kept by the script
//! (`fuzz --unpack DIR/current.bin FILE.onnx`). Prints one summary line; exits 1 when there
//! were findings.

#[path = "../tests/support/mutator.rs"]
mod mutator;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mutator::{mutate, peak_rss, run, Outcome, Rng};

fn main() {
    let all: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, from, to] = all.as_slice() {
        if flag == "--unpack" {
            // current.bin -> the .onnx file of the mutant it holds.
            let rec = std::fs::read(from).expect("read the record");
            let n = u64::from_le_bytes(rec[..8].try_into().expect("a length")) as usize;
            std::fs::write(to, &rec[8..8 + n]).expect("write the mutant");
            return;
        }
    }
    let mut args = all.into_iter();
    let mut seconds: Option<f64> = None;
    let mut seed = 1u64;
    let mut out = PathBuf::from("target/fuzz-findings");
    let mut slow = 10.0f64;
    let mut models = Vec::new();
    let mut stats = false;
    let mut kinds: std::collections::BTreeMap<String, u64> = Default::default();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seed" => seed = args.next().and_then(|v| v.parse().ok()).expect("--seed N"),
            "--out" => out = args.next().map(PathBuf::from).expect("--out DIR"),
            "--slow" => slow = args.next().and_then(|v| v.parse().ok()).expect("--slow S"),
            "--stats" => stats = true,
            _ if seconds.is_none() => seconds = Some(a.parse().expect("SECONDS first")),
            _ => models.push(PathBuf::from(a)),
        }
    }
    let seconds = seconds.expect("usage: fuzz SECONDS [--seed S] [--out DIR] MODEL...");
    assert!(!models.is_empty(), "no models to mutate");
    std::fs::create_dir_all(&out).expect("create the findings folder");
    let seeds: Vec<(PathBuf, Vec<u8>)> = models
        .iter()
        .map(|m| (m.clone(), std::fs::read(m).expect("read a model")))
        .collect();
    let budget = Duration::from_secs_f64(seconds);
    let slow = Duration::from_secs_f64(slow);
    let start = Instant::now();
    let mut rng = Rng(seed);
    let (mut runs, mut compiled, mut refused, mut findings) = (0u64, 0u64, 0u64, 0u64);
    let mut longest = Duration::ZERO;
    let mut slowest = Vec::new();
    // The mutant being run, as `[length: u64 LE][bytes]` written over the start of one open
    // file (no truncation: rewriting a file per mutant costs more than running most of them).
    let current = out.join("current.bin");
    let record = std::fs::File::create(&current).expect("create current.bin");
    while start.elapsed() < budget {
        let (path, bytes) = &seeds[(runs % seeds.len() as u64) as usize];
        let mutant = mutate(bytes, &mut rng);
        let mut rec = (mutant.len() as u64).to_le_bytes().to_vec();
        rec.extend_from_slice(&mutant);
        std::os::unix::fs::FileExt::write_all_at(&record, &rec, 0).expect("write current.bin");
        let dir = path.parent().map(PathBuf::from).unwrap_or_default();
        let origin = format!("{}#{seed}-{runs}", path.display());
        let (outcome, took) = run(&mutant, &dir, &origin, runs);
        if took > longest {
            longest = took;
            slowest = mutant.clone();
        }
        let finding = match &outcome {
            Outcome::Compiled => {
                compiled += 1;
                None
            }
            Outcome::Refused(_) if took > slow => Some(("slow", format!("{took:?}"))),
            Outcome::Refused(msg) => {
                refused += 1;
                if stats {
                    // The message without the file name, numbers and quoted names.
                    let rest = msg.split_once(": ").map_or(msg.as_str(), |(_, r)| r);
                    let key: String = rest
                        .split('\'')
                        .step_by(2)
                        .collect::<String>()
                        .chars()
                        .filter(|c| !c.is_ascii_digit())
                        .take(70)
                        .collect();
                    *kinds.entry(key).or_insert(0u64) += 1;
                }
                None
            }
            Outcome::Panic(msg) => Some(("panic", msg.clone())),
        };
        if let Some((kind, msg)) = finding {
            findings += 1;
            let stem = out.join(format!("{kind}-{seed}-{runs}"));
            std::fs::write(stem.with_extension("onnx"), &mutant).expect("keep the finding");
            std::fs::write(
                stem.with_extension("txt"),
                format!("{}\n{kind}: {msg}\n", path.display()),
            )
            .expect("keep the finding");
            eprintln!("finding: {} ({kind}: {msg})", stem.display());
        }
        runs += 1;
    }
    let _ = std::fs::remove_file(&current);
    let mut kinds: Vec<(u64, String)> = kinds.into_iter().map(|(k, n)| (n, k)).collect();
    kinds.sort_by(|a, b| b.cmp(a));
    for (n, k) in kinds.iter().take(40) {
        eprintln!("{n:>8}  {k}");
    }
    if longest > Duration::from_secs(1) {
        // Not a finding, but worth a look.
        let _ = std::fs::write(out.join(format!("slowest-{seed}.onnx")), &slowest);
    }
    println!(
        "fuzz seed {seed}: {runs} mutants in {:.1} s ({compiled} compiled, {refused} refused), \
         {findings} findings, longest run {:.3} s, peak memory {} MiB",
        start.elapsed().as_secs_f64(),
        longest.as_secs_f64(),
        peak_rss() >> 20
    );
    std::process::exit(i32::from(findings > 0));
}
