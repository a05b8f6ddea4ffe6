//! The status page's cost with a full day drawn: rendering `/` (view copy + charts +
//! HTML) for 8 lanes × 3 000 passages, 1 440 occupancy samples and 24 devices whose
//! links changed 20 times in the last hour, against the same page of a bridge that
//! has just started (no history) in the same run. Also the view copy alone.
//!
//! `cargo bench --bench status_page` (prints a table for BENCHMARKS.md).

use parking_bridge::config::SiteConfig;
use parking_bridge::ops::OpsState;
use parking_bridge::ops::health_rules::HealthLevel;
use parking_bridge::ops::http::render_in;
use parking_bridge::ops::i18n::Lang;
use parking_bridge::time::Timestamp;
use std::time::{Duration, Instant};

const LANES: usize = 8;
const PASSAGES_PER_LANE: i64 = 3_000;
const DEVICES_PER_LANE: usize = 3;

fn config() -> SiteConfig {
    let mut text = String::from(
        "[platform]\nbase_url = \"https://citybrain.example\"\napp_id = \"a\"\napp_secret = \"0123456789abcdef\"\n\
         [lot]\nparking_lot_no = \"LOT-BENCH\"\ntotal_spaces = 800\n[storage]\ndir = \"/tmp\"\n",
    );
    for i in 0..LANES {
        let dir = if i % 2 == 0 { "entry" } else { "exit" };
        text.push_str(&format!(
            "[[lanes]]\nid = \"lane-{i}\"\ndirection = \"{dir}\"\nport_no = \"P{i}\"\n"
        ));
    }
    SiteConfig::from_toml(&text, std::path::Path::new("bench.toml")).expect("bench config")
}

fn full_day(ops: &OpsState, now: Timestamp) {
    let day = 24 * 3_600_000i64;
    for lane in 0..LANES {
        let id = format!("lane-{lane}");
        let case = if lane % 2 == 0 { "entry" } else { "exit" };
        for i in 0..PASSAGES_PER_LANE {
            let at = now.plus_millis(-day + i * day / PASSAGES_PER_LANE + lane as i64);
            ops.record_passage(&id, Some(&format!("闽A{:05}", i % 100_000)), case, at, None);
        }
        for d in 0..DEVICES_PER_LANE {
            let name = format!("dev-{lane}-{d}");
            for flap in 0..20i64 {
                ops.health().set(
                    &name,
                    &id,
                    flap % 2 == 0,
                    now.plus_millis(-3_600_000 + flap * 170_000),
                );
                // The feeder's once-a-second look follows each change.
                ops.set_occupancy_at(400, 800, now.plus_millis(-3_600_000 + flap * 170_000));
            }
        }
    }
    for m in 0..1_440i64 {
        ops.set_occupancy_at(300 + (m % 200), 800, now.plus_millis(-day + m * 60_000));
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn measure(ops: &OpsState, now: Timestamp, runs: usize) -> (Duration, Duration, usize) {
    let mut view_times = Vec::new();
    let mut page_times = Vec::new();
    let mut size = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let view = ops.view();
        view_times.push(t.elapsed());
        let t = Instant::now();
        let html = render_in(Lang::Zh, &ops.view(), &[], HealthLevel::Ok, now, true, "");
        page_times.push(t.elapsed());
        size = html.len();
        std::hint::black_box(html);
        std::hint::black_box(view);
    }
    (median(view_times), median(page_times), size)
}

fn main() {
    let config = config();
    let now = Timestamp::now();
    let fresh = OpsState::new(&config);
    let busy = OpsState::new(&config);
    let t = Instant::now();
    full_day(&busy, now);
    let fill = t.elapsed();
    let runs = 50;
    let (v0, p0, s0) = measure(&fresh, now, runs);
    let (v1, p1, s1) = measure(&busy, now, runs);
    println!("status page, median of {runs} renders (Lang::Zh)");
    println!("| state | view copy | whole page (view + charts + HTML) | page size |");
    println!("|---|---|---|---|");
    println!(
        "| just started (baseline) | {v0:.2?} | {p0:.2?} | {} KB |",
        s0 / 1024
    );
    println!(
        "| full day: {LANES} lanes × {PASSAGES_PER_LANE} passages, 1 440 occupancy samples, {} devices × 20 link changes | {v1:.2?} | {p1:.2?} | {} KB |",
        LANES * DEVICES_PER_LANE,
        s1 / 1024
    );
    println!(
        "ratio full day / baseline: {:.1}× ; recording the day: {fill:.2?} ({:.2} µs per passage)",
        p1.as_secs_f64() / p0.as_secs_f64(),
        fill.as_secs_f64() * 1e6 / (LANES as f64 * PASSAGES_PER_LANE as f64)
    );
}
