//! Drain of a backlog in which 1 % of the stays are refused by the platform, against
//! the same backlog with no refusals, in the same run. `cargo bench --bench refusals`
//! (env `BENCH_RUNS`, default 3; `BENCH_DRAIN`, default 100000 reports).
//!
//! Three settings, each a fresh store of `BENCH_DRAIN` entry reports drained by the
//! uploader (4 in flight) to `mock-platform` on loopback:
//! - `none`: nothing refused; drained = nothing pending;
//! - `1% held at once`: `--refuse-percent 1`, `refused_tries = 1`; drained = nothing
//!   pending (the refused ones held);
//! - `1% default tries`: `--refuse-percent 1`, the default 5 tries 4 min apart; drained
//!   = every report delivered except the refused ones, which wait for their next try.

#[path = "bench_common/mod.rs"]
mod bench_common;
#[path = "../tests/process_common/mod.rs"]
mod process_common;
#[path = "../tests/store_common/mod.rs"]
mod store_common;

use bench_common::{client, lot, median, settings, start_mock, time_drain};
use parking_bridge::store::Store;
use parking_bridge::time::Timestamp;
use process_common::env_or;
use std::sync::Arc;
use std::time::Duration;
use store_common::new_stay;

#[derive(Clone, Copy, PartialEq)]
enum Setting {
    None,
    HeldAtOnce,
    DefaultTries,
}

/// Fills `n` entry reports, times the drain; returns (seconds, reports/s, held, refused
/// stays).
fn drain(n: usize, setting: Setting) -> (f64, f64, u64, usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), &lot()).unwrap());
    let mut orders = Vec::with_capacity(n);
    for g in 0..n / 1000 {
        let opened = store
            .open_stays_grouped(
                (0..1000)
                    .map(|i| new_stay(format!("闽A{:05}", g * 1000 + i), None))
                    .collect(),
                Timestamp::now(),
            )
            .unwrap();
        orders.extend(opened.into_iter().map(|s| s.out_order_no));
    }
    let percent = if setting == Setting::None { 0 } else { 1 };
    let refused = orders
        .iter()
        .filter(|o| parking_bridge::platform::mock::refused_by_percent(o, percent))
        .count();
    let (_mock, port) = start_mock(&["--refuse-percent", &percent.to_string()]);
    let client = client(port);
    let mut settings = settings();
    if setting == Setting::HeldAtOnce {
        settings.backoff.refused_tries = 1;
    }
    let left = if setting == Setting::DefaultTries {
        refused as u64
    } else {
        0
    };
    let secs = time_drain(
        store.clone(),
        client,
        settings,
        Duration::from_millis(100),
        left,
    );
    let held = store.held_count().unwrap();
    (secs, n as f64 / secs, held, refused)
}

fn main() {
    let runs = env_or::<usize>("BENCH_RUNS", 3);
    let n = env_or::<usize>("BENCH_DRAIN", 100_000);
    println!(
        "drain of {n} entry reports to mock-platform on loopback, 4 in flight, median of {runs} runs (nproc {})",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for (name, setting) in [
        ("none refused", Setting::None),
        ("1% refused, held at once", Setting::HeldAtOnce),
        ("1% refused, default 5 tries", Setting::DefaultTries),
    ] {
        // Interleaved per run would be fairer under load; settings run back to back.
        let results: Vec<(f64, f64, u64, usize)> = (0..runs).map(|_| drain(n, setting)).collect();
        let secs = median(results.iter().map(|r| r.0).collect());
        let rate = median(results.iter().map(|r| r.1).collect());
        let (_, _, held, refused) = results[0];
        println!(
            "{name:<28} {secs:>7.2} s to drain, {rate:>7.0} reports/s (runs: {:?}); refused stays {refused}, held {held}",
            results
                .iter()
                .map(|r| r.1.round() as i64)
                .collect::<Vec<_>>()
        );
    }
}
