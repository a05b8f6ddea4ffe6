//! State database and uploader throughput. `cargo bench --bench store`
//! (env `BENCH_RUNS`, default 5; `BENCH_DRAIN`, default 100000 reports).
//!
//! Prints: durable enqueue rate (one commit per stay, and grouped), database bytes per
//! stay without images, and the drain rate of a backlog to `mock-platform` on loopback.

#[path = "bench_common/mod.rs"]
mod bench_common;
#[path = "../tests/process_common/mod.rs"]
mod process_common;
#[path = "../tests/store_common/mod.rs"]
mod store_common;

use bench_common::{client, lot, median, settings, start_mock, time_drain};
use parking_bridge::lane::Fee;
use parking_bridge::store::{ExitDetails, NewStay, Store};
use parking_bridge::time::Timestamp;
use process_common::env_or;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store_common::{exit_details, new_stay};

fn stay(i: usize) -> NewStay {
    new_stay(format!("闽A{i:05}"), None)
}

/// A car that paid 500 fen at the exit, so that exit rows carry their fees.
fn paid_exit() -> ExitDetails {
    ExitDetails {
        fee: Fee::settled(500),
        ..exit_details()
    }
}

fn enqueue_single(n: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &lot()).unwrap();
    let t = Instant::now();
    for i in 0..n {
        store.open_stay(stay(i), Timestamp::now()).unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn enqueue_grouped(n: usize, group: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &lot()).unwrap();
    let t = Instant::now();
    for g in 0..n / group {
        store
            .open_stays_grouped(
                (0..group).map(|i| stay(g * group + i)).collect(),
                Timestamp::now(),
            )
            .unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Bytes of live database pages per stay, after a WAL checkpoint.
fn db_bytes(path: &Path) -> u64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let pages: u64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let free: u64 = conn
        .query_row("PRAGMA freelist_count", [], |r| r.get(0))
        .unwrap();
    let size: u64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    (pages - free) * size
}

fn bytes_per_stay(n: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &lot()).unwrap();
    let empty = db_bytes(store.path());
    let mut numbers = Vec::with_capacity(n);
    for g in 0..n / 500 {
        let opened = store
            .open_stays_grouped(
                (0..500).map(|i| stay(g * 500 + i)).collect(),
                Timestamp::now(),
            )
            .unwrap();
        numbers.extend(opened.into_iter().map(|o| o.out_order_no));
    }
    for o in &numbers {
        store.close_stay(o, paid_exit(), Timestamp::now()).unwrap();
    }
    let pending = db_bytes(store.path());
    // As the uploader leaves them: every report acknowledged, with the platform's answer.
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    conn.execute_batch(
        "UPDATE outbox SET state = 'acked', finished_at = 1, result_code = 'success', attempts = 1, last_attempt_at = 1;
         UPDATE stays SET inner_oder_no = 'R20240501083000123456', sign_level = 'L2', sign_time = '2024-05-01 08:30:00';",
    )
    .unwrap();
    drop(conn);
    let acked = db_bytes(store.path());
    (
        (pending - empty) as f64 / n as f64,
        (acked - empty) as f64 / n as f64,
    )
}

/// Fills `n` entry reports, then times the uploader draining them to the mock.
fn drain(n: usize, in_flight: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), &lot()).unwrap());
    for g in 0..n / 1000 {
        store
            .open_stays_grouped(
                (0..1000).map(|i| stay(g * 1000 + i)).collect(),
                Timestamp::now(),
            )
            .unwrap();
    }
    let (_mock, port) = start_mock(&[]);
    let client = client(port);
    let mut settings = settings();
    settings.max_in_flight = in_flight;
    let secs = time_drain(store, client, settings, Duration::from_millis(200), 0);
    n as f64 / secs
}

fn main() {
    let runs = env_or::<usize>("BENCH_RUNS", 5);
    let drain_n = env_or::<usize>("BENCH_DRAIN", 100_000);
    println!(
        "store benchmarks, median of {runs} runs (nproc {})",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let single = median((0..runs).map(|_| enqueue_single(1_000)).collect());
    println!(
        "durable enqueue, one commit per stay:      {single:>9.0} stays/s (entry report + stay + occupancy)"
    );
    for group in [10, 100] {
        let grouped = median((0..runs).map(|_| enqueue_grouped(10_000, group)).collect());
        println!("durable enqueue, grouped {group:>3} per commit:  {grouped:>9.0} stays/s");
    }

    let (pending, acked) = bytes_per_stay(10_000);
    println!(
        "database bytes per stay (entry+exit, no images): {pending:.0} while pending, {acked:.0} once acknowledged"
    );

    for in_flight in [4, 8] {
        let rates: Vec<f64> = (0..runs.min(3))
            .map(|_| drain(drain_n, in_flight))
            .collect();
        println!(
            "drain {drain_n} entry reports to mock-platform on loopback, {in_flight} in flight: {:.0} reports/s (runs: {:?})",
            median(rates.clone()),
            rates.iter().map(|r| r.round() as i64).collect::<Vec<_>>()
        );
    }
}
