//! The lane task inside the real pipeline, minus the device drivers: raw events in
//! through the channel → lane machines → state database → uploader → `mock-platform`
//! (a real process over loopback). A mixed sequence of 50 vehicles, with a tailgating
//! pair and a turn-away, is reported exactly right; then the latency from loop B's
//! release to the entry accepted by the platform is measured (printed; `--nocapture`).

mod process_common;
mod store_common;

use parking_bridge::config::SiteConfig;
use parking_bridge::event::{EventKind, GatePosition, LoopId, PlateRead, RawEvent};
use parking_bridge::lane_task::LaneRuntime;
use parking_bridge::plate::PlateColor;
use parking_bridge::service::Pipeline;
use parking_bridge::time::Timestamp;
use std::collections::HashMap;
use std::time::Duration;
use store_common::*;
use tokio::sync::mpsc;

fn ev(lane: &str, at: i64, kind: EventKind) -> RawEvent {
    RawEvent {
        lane: lane.into(),
        device: format!("{lane}-dev"),
        at: Timestamp(at),
        kind,
    }
}

fn read(plate: &str) -> EventKind {
    EventKind::Plate(PlateRead::text(plate, PlateColor::Blue))
}

fn lp(which: LoopId, occupied: bool) -> EventKind {
    EventKind::Loop { which, occupied }
}

fn gate(position: GatePosition) -> EventKind {
    EventKind::Gate { position }
}

/// One vehicle through a loops+gate lane from `t`: read, A, gate, B, A off, B off, gate.
fn passing(lane: &str, plate: &str, t: i64) -> Vec<RawEvent> {
    vec![
        ev(lane, t, read(plate)),
        ev(lane, t + 300, lp(LoopId::A, true)),
        ev(lane, t + 500, gate(GatePosition::Open)),
        ev(lane, t + 1300, lp(LoopId::B, true)),
        ev(lane, t + 2300, lp(LoopId::A, false)),
        ev(lane, t + 3300, lp(LoopId::B, false)),
        ev(lane, t + 3800, gate(GatePosition::Closed)),
    ]
}

fn plate(i: usize) -> String {
    format!("闽A{:05}", 10_000 + i)
}

/// Waits until `done` holds for the mock's records, or panics after `secs`.
async fn wait_for(mock: &Mock, secs: u64, what: &str, done: impl Fn(&[Rec]) -> bool) -> Vec<Rec> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let recs = mock.records();
        if done(&recs) {
            return recs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn accepted<'a>(recs: &'a [Rec], kind: &str) -> Vec<&'a Rec> {
    recs.iter()
        .filter(|r| r.accepted && r.kind() == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_mixed_vehicles_reach_the_platform_exactly_right_and_fast() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(&dir.path().join("rec.jsonl"), &[]);
    let config_path = write_site(
        dir.path(),
        &mock.base_url(),
        &Site {
            total_spaces: 100,
            ..Site::default()
        },
    );
    let config = SiteConfig::load(&config_path).unwrap();
    let pipeline = Pipeline::open(config.clone()).unwrap();
    let uploader = pipeline.spawn_uploader();
    let (tx, rx) = mpsc::channel(1024);
    let lanes = tokio::spawn(
        LaneRuntime::new(&config, pipeline.store.clone(), pipeline.health.clone()).run(rx),
    );

    // 30 vehicles at the entry (no. 11 tailgates no. 10 through one opening; no. 20
    // turns away), then 20 at the exit (nos. 0–19 leave). Times are in the recent past.
    let t0 = Timestamp::now().0 - 400_000;
    let mut events = Vec::new();
    for i in 0..30 {
        let t = t0 + i as i64 * 5_000;
        match i {
            11 => {} // part of the tailgate below
            10 => {
                let lane = "entry-1";
                events.extend([
                    ev(lane, t, read(&plate(10))),
                    ev(lane, t + 300, lp(LoopId::A, true)),
                    ev(lane, t + 500, gate(GatePosition::Open)),
                    ev(lane, t + 1300, lp(LoopId::B, true)),
                    ev(lane, t + 2300, lp(LoopId::A, false)),
                    ev(lane, t + 2800, lp(LoopId::A, true)),
                    ev(lane, t + 3000, read(&plate(11))),
                    ev(lane, t + 3300, lp(LoopId::B, false)),
                    ev(lane, t + 3800, lp(LoopId::B, true)),
                    ev(lane, t + 4300, lp(LoopId::A, false)),
                    ev(lane, t + 4800, lp(LoopId::B, false)),
                    ev(lane, t + 5500, gate(GatePosition::Closed)),
                ]);
            }
            20 => events.extend([
                ev("entry-1", t + 5_000, read(&plate(20))),
                ev("entry-1", t + 5_300, lp(LoopId::A, true)),
                ev("entry-1", t + 8_000, lp(LoopId::A, false)),
            ]),
            _ => events.extend(passing(
                "entry-1",
                &plate(i),
                t + if i > 11 { 5_000 } else { 0 },
            )),
        }
    }
    for i in 0..20 {
        events.extend(passing(
            "exit-1",
            &plate(i),
            t0 + 200_000 + i as i64 * 5_000,
        ));
    }
    for e in events {
        tx.send(e).await.unwrap();
    }

    let recs = wait_for(&mock, 60, "29 entries and 20 exits", |r| {
        accepted(r, "parking").len() >= 29 && accepted(r, "away").len() >= 20
    })
    .await;
    let entries = accepted(&recs, "parking");
    let exits = accepted(&recs, "away");
    assert_eq!(
        entries.len(),
        29,
        "turn-away not reported, tailgater reported"
    );
    let plates: HashMap<String, String> = entries
        .iter()
        .map(|r| {
            (
                r.body["plate_no"].as_str().unwrap().to_string(),
                r.out_order_no().unwrap().to_string(),
            )
        })
        .collect();
    for i in (0..30).filter(|i| *i != 20) {
        assert!(plates.contains_key(&plate(i)), "entry of vehicle {i}");
    }
    assert!(
        !plates.contains_key(&plate(20)),
        "the turn-away was reported"
    );
    assert_eq!(exits.len(), 20);
    for x in &exits {
        let p = x.body["plate_no"].as_str().unwrap();
        assert_eq!(
            plates.get(p).map(String::as_str),
            x.out_order_no(),
            "exit of {p} closes its own stay"
        );
        assert!(x.body["free_spaces"].as_i64().unwrap() <= 100);
    }
    // Which exit carries the fewest free spaces depends on when each was sent: never
    // fewer than after all 29 entries and the first exit.
    let fewest_free = exits
        .iter()
        .map(|x| x.body["free_spaces"].as_i64().unwrap())
        .min()
        .unwrap();
    assert!(
        fewest_free > 100 - 29,
        "free spaces of an exit: {fewest_free}"
    );
    // Reports carry the lot's count at send time (docs/operations.md): the last one the
    // platform accepted says how the lot stands now.
    assert_eq!(pipeline.store.occupancy().unwrap().occupied, 9);
    let last = recs
        .iter()
        .rfind(|r| r.accepted && (r.kind() == "parking" || r.kind() == "away"))
        .unwrap();
    assert_eq!(last.body["free_spaces"].as_i64(), Some(100 - 9), "{last:?}");

    // Latency: loop B released (event handed to the lane task) → entry accepted by the
    // platform (the mock's own clock), vehicle by vehicle in real time.
    let mut latencies = Vec::new();
    for i in 0..20 {
        let p = format!("闽B{:05}", i);
        let t = Timestamp::now().0 - 3_300;
        let mut vehicle = passing("entry-1", &p, t);
        vehicle.truncate(6); // up to loop B released
        let release = vehicle.pop().unwrap();
        for e in vehicle {
            tx.send(e).await.unwrap();
        }
        let sent_at = Timestamp::now().0;
        tx.send(release).await.unwrap();
        let recs = wait_for(&mock, 10, "the entry", |r| {
            accepted(r, "parking")
                .iter()
                .any(|x| x.body["plate_no"].as_str() == Some(p.as_str()))
        })
        .await;
        let rec = recs
            .iter()
            .find(|x| x.accepted && x.body["plate_no"].as_str() == Some(p.as_str()))
            .unwrap();
        latencies.push(rec.at - sent_at);
    }
    latencies.sort_unstable();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() - 1];
    println!(
        "lane → platform entry latency over {} vehicles: p50 {p50} ms, p99(max) {p99} ms",
        latencies.len()
    );
    assert!(p99 < 2_000, "entry took {p99} ms to reach the platform");

    drop(tx);
    tokio::time::timeout(Duration::from_secs(10), lanes)
        .await
        .unwrap()
        .unwrap();
    uploader.abort();
}
