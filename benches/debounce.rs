//! Detection latency with the loop debounce at a 100 ms poll (`cargo bench --bench
//! debounce`, figures in BENCHMARKS.md): an input set on a simulated 16-input Modbus
//! TCP module (loopback, `sim::devices::SimModbus`) → the `Loop` event out of the
//! driver. Three settings: debounce 0 (the floor: waiting for the next poll),
//! debounce_ms = poll_ms = 100 (the shipped profiles' default) and debounce_reads = 2.
//! Written against the driver API only, so the same file also builds against an
//! older tree to measure the previous debounce in the same run.

#[path = "../tests/process_common/mod.rs"]
mod process_common;
use parking_bridge::config::SiteConfig;
use parking_bridge::driver::{load_profiles, spawn_all};
use parking_bridge::event::{EventKind, LoopId, RawEvent};
use parking_bridge::sim::devices::SimModbus;
use process_common::env_or;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn wait_loop(rx: &mut mpsc::Receiver<RawEvent>, occupied: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("event in time")
            .expect("channel open");
        if ev.kind
            == (EventKind::Loop {
                which: LoopId::A,
                occupied,
            })
        {
            return;
        }
    }
}

/// p50, p99, max of `samples` changes, in ms.
async fn latency(debounce: &str, samples: usize) -> (f64, f64, f64) {
    let sim = SimModbus::new();
    sim.add_slave(1);
    let addr = sim.serve_tcp("127.0.0.1:0").await.unwrap();
    let text = format!(
        "[platform]\nbase_url = \"http://127.0.0.1:9\"\napp_id = \"bench\"\n[lot]\nparking_lot_no = \"L\"\ntotal_spaces = 1\n\
         [storage]\ndir = \"/tmp\"\n[[lanes]]\nid = \"lane-1\"\ndirection = \"entry\"\nport_no = \"P1\"\n\
         [[devices]]\nname = \"io\"\nprofile = \"generic-modbus-tcp-di-gateway\"\nlane = \"lane-1\"\ntcp = \"{addr}\"\n\
         poll_ms = 100\n{debounce}\nroles = {{ loop_a = \"di1\" }}\n"
    );
    let config = SiteConfig::from_toml(&text, Path::new("bench.toml")).unwrap();
    let profiles = load_profiles(&config).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let (_stop, shutdown) = watch::channel(false);
    let _d = spawn_all(&config, &profiles, tx, shutdown).await.unwrap();
    wait_loop(&mut rx, false).await;
    let mut lat = Vec::new();
    let mut state = false;
    for i in 0..samples {
        // Spread the change over the poll phase (37 is prime to the period).
        tokio::time::sleep(Duration::from_millis(150 + (i as u64 * 37) % 100)).await;
        state = !state;
        let t0 = Instant::now();
        sim.set_input(1, 0, state);
        wait_loop(&mut rx, state).await;
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    (
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1],
    )
}

fn main() {
    let samples: usize = env_or("PB_BENCH_SAMPLES", 200);
    // Only the settings this tree understands (an older tree has no debounce_reads).
    let settings: Vec<String> = std::env::var("PB_BENCH_SETTINGS")
        .unwrap_or_else(|_| "debounce_ms = 0;debounce_ms = 100;debounce_reads = 2".into())
        .split(';')
        .map(str::to_string)
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for s in &settings {
            let (p50, p99, max) = latency(s, samples).await;
            println!(
                "poll 100 ms, {s:<18}: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms (n={samples})"
            );
        }
    });
}
