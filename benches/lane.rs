//! Lane-logic throughput in replay: events per second through the lane machines, the
//! stay planner and the in-memory lot model, on one core. Prints the median of several
//! runs. `cargo bench --bench lane`.
//!
//! The stream: vehicles entering through a loops+gate lane and a camera-only lane and
//! leaving through a loops+gate lane and a gate-only lane (reads, loops, gate moves),
//! about 500 cars parked at any time, a few turn-aways and unplated vehicles.

use parking_bridge::config::SiteConfig;
use parking_bridge::event::{EventKind, GatePosition, LoopId, PlateRead, RawEvent};
use parking_bridge::lane::replay::{self, Replay};
use parking_bridge::plate::PlateColor;
use parking_bridge::time::Timestamp;
use std::path::Path;
use std::time::Instant;

const VEHICLES: usize = 200_000;
const RUNS: usize = 5;

fn events() -> Vec<RawEvent> {
    let mut out = Vec::with_capacity(VEHICLES * 7);
    let mut t = 1_764_000_000_000i64;
    let push = |out: &mut Vec<RawEvent>, lane: &str, at: i64, kind: EventKind| {
        out.push(RawEvent {
            lane: lane.to_string(),
            device: format!("{lane}-dev"),
            at: Timestamp(at),
            kind,
        });
    };
    let read = |plate: Option<String>| {
        let mut r = PlateRead::text("", PlateColor::Blue);
        r.text = plate;
        EventKind::Plate(r)
    };
    let lp = |which, occupied| EventKind::Loop { which, occupied };
    for i in 0..VEHICLES {
        // Vehicle i enters; vehicle i-500 leaves: ~500 parked.
        let plate = |n: usize| (n % 7 != 3).then(|| format!("闽A{:05}", n % 100_000));
        t += 4_000;
        if i % 2 == 0 {
            push(&mut out, "in-lg", t, read(plate(i)));
            push(&mut out, "in-lg", t + 300, lp(LoopId::A, true));
            push(
                &mut out,
                "in-lg",
                t + 500,
                EventKind::Gate {
                    position: GatePosition::Open,
                },
            );
            if i % 50 == 0 {
                // Turn-away.
                push(&mut out, "in-lg", t + 2_000, lp(LoopId::A, false));
            } else {
                push(&mut out, "in-lg", t + 1_300, lp(LoopId::B, true));
                push(&mut out, "in-lg", t + 2_300, lp(LoopId::A, false));
                push(&mut out, "in-lg", t + 3_300, lp(LoopId::B, false));
            }
            push(
                &mut out,
                "in-lg",
                t + 3_800,
                EventKind::Gate {
                    position: GatePosition::Closed,
                },
            );
        } else {
            push(&mut out, "in-c", t, read(plate(i)));
        }
        if i >= 500 {
            let j = i - 500;
            let at = t + 1_000;
            if j % 2 == 0 {
                push(&mut out, "out-lg", at, read(plate(j)));
                push(&mut out, "out-lg", at + 300, lp(LoopId::A, true));
                push(&mut out, "out-lg", at + 1_300, lp(LoopId::B, true));
                push(&mut out, "out-lg", at + 2_300, lp(LoopId::A, false));
                push(&mut out, "out-lg", at + 2_600, lp(LoopId::B, false));
            } else {
                push(&mut out, "out-g", at, read(plate(j)));
                push(
                    &mut out,
                    "out-g",
                    at + 500,
                    EventKind::Gate {
                        position: GatePosition::Open,
                    },
                );
                push(
                    &mut out,
                    "out-g",
                    at + 2_500,
                    EventKind::Gate {
                        position: GatePosition::Closed,
                    },
                );
            }
        }
    }
    out.sort_by_key(|e| e.at);
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/site.toml");
    let config = SiteConfig::load(&path).expect("scenario config");
    let events = events();
    let n = events.len();

    // Lane logic alone: machines + planner + in-memory stays, outcomes discarded.
    let mut logic = Vec::new();
    let mut outcomes = 0usize;
    for _ in 0..RUNS {
        let start = Instant::now();
        let mut replay = Replay::new(&config, false);
        let mut out = Vec::new();
        outcomes = 0;
        for e in &events {
            replay.feed(e, &mut out);
            outcomes += out.len();
            out.clear();
        }
        replay.finish(&mut out);
        outcomes += out.len();
        logic.push(n as f64 / start.elapsed().as_secs_f64());
    }

    // The whole `replay` command minus disk: parse JSON lines, run, print JSON lines.
    let text: String = events
        .iter()
        .map(|e| serde_json::to_string(e).expect("event") + "\n")
        .collect();
    let mut full = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        replay::run(&config, text.as_bytes(), std::io::sink(), false).expect("replay");
        full.push(n as f64 / start.elapsed().as_secs_f64());
    }

    println!(
        "lane bench: {n} events, {VEHICLES} vehicles, {outcomes} outcomes per run, median of {RUNS} runs"
    );
    println!(
        "  lane logic (machines + planner + stays): {:>12.0} events/s",
        median(logic)
    );
    println!(
        "  replay command (parse + logic + print):  {:>12.0} events/s",
        median(full)
    );
}
