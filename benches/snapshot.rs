//! Snapshot re-encode time for a 12-megapixel JPEG, side by side with ImageMagick
//! doing the same job. `taskset -c 0 cargo bench --bench snapshot` (one core).
//! Env: `BENCH_RUNS` (default 5), `BENCH_IMAGE` (a camera JPEG to use instead of the
//! generated 4000×3000 photo-like image), `CONVERT` (default /usr/bin/convert).

#[path = "../tests/process_common/mod.rs"]
mod process_common;
use process_common::env_or;
#[path = "../tests/photo_common/mod.rs"]
mod photo_common;

use parking_bridge::snapshot::{MAX_JPEG_BYTES, reencode};
use std::process::Command;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time_convert(convert: &str, args: &[String], runs: usize) -> Option<(f64, u64)> {
    let mut times = Vec::new();
    let out = args.last()?.clone();
    for _ in 0..runs {
        let t = Instant::now();
        let status = Command::new(convert).args(args).status().ok()?;
        if !status.success() {
            return None;
        }
        times.push(t.elapsed().as_secs_f64());
    }
    Some((median(times), std::fs::metadata(out).ok()?.len()))
}

fn main() {
    let runs: usize = env_or("BENCH_RUNS", 5);
    let convert = std::env::var("CONVERT").unwrap_or_else(|_| "/usr/bin/convert".into());
    let input = match std::env::var("BENCH_IMAGE") {
        Ok(path) => std::fs::read(path).expect("BENCH_IMAGE readable"),
        Err(_) => photo_common::photo_like_jpeg(),
    };
    let dir = tempfile::tempdir().unwrap();
    let in_path = dir.path().join("in.jpg");
    std::fs::write(&in_path, &input).unwrap();
    let (w, h) = image::load_from_memory(&input)
        .map(|i| (i.width(), i.height()))
        .unwrap();
    println!(
        "input: {w}x{h} JPEG, {} bytes; limit {MAX_JPEG_BYTES} bytes (base64 < 500 000); median of {runs} runs",
        input.len()
    );

    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let out = reencode(&input, MAX_JPEG_BYTES).unwrap();
        times.push(t.elapsed().as_secs_f64());
        last = Some(out);
    }
    let out = last.unwrap();
    let q = out.quality.unwrap_or(0);
    println!(
        "parking-bridge snapshot::reencode: {:.3} s -> {}x{} q{} {} bytes",
        median(times),
        out.width,
        out.height,
        q,
        out.jpeg.len()
    );

    let p = |s: &str| s.to_string();
    let input_s = in_path.display().to_string();
    let extent_out = dir.path().join("extent.jpg").display().to_string();
    let args = vec![
        p("-limit"),
        p("thread"),
        p("1"),
        input_s.clone(),
        p("-define"),
        p("jpeg:extent=366KB"),
        extent_out,
    ];
    match time_convert(&convert, &args, runs) {
        Some((t, bytes)) => println!(
            "convert -define jpeg:extent=366KB (quality search, full size): {t:.3} s -> {bytes} bytes"
        ),
        None => println!("convert ({convert}) not available: install imagemagick"),
    }
    let same_out = dir.path().join("same.jpg").display().to_string();
    let args = vec![
        p("-limit"),
        p("thread"),
        p("1"),
        input_s,
        p("-resize"),
        format!("{}x", out.width),
        p("-quality"),
        format!("{q}"),
        same_out,
    ];
    if let Some((t, bytes)) = time_convert(&convert, &args, runs) {
        println!(
            "convert -resize {}x -quality {q} (our result's parameters, one pass): {t:.3} s -> {bytes} bytes",
            out.width
        );
    }
}
