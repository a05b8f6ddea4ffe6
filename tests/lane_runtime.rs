//! The lane task against the real state database (SQLite in a temp dir): raw events in
//! through the channel, stays, reports and occupancy out; the journal is written and
//! replays to the same reports; link events reach the device health.

use parking_bridge::config::SiteConfig;
use parking_bridge::event::{EventKind, LoopId, PlateRead, RawEvent};
use parking_bridge::health::Health;
use parking_bridge::lane::journal::Journal;
use parking_bridge::lane_task::LaneRuntime;
use parking_bridge::plate::PlateColor;
use parking_bridge::report::{Report, ReportKind};
use parking_bridge::store::{StayState, Store};
use parking_bridge::time::Timestamp;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

fn site(dir: &Path) -> SiteConfig {
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/site.toml"),
    )
    .unwrap();
    let text = base
        .replace(
            "dir = \"/nonexistent\"",
            &format!("dir = {:?}", dir.display().to_string()),
        )
        // Short late-plate window so the timer test runs in well under a second.
        .replace(
            "layout = \"loops_gate\"\n\n[[lanes]]\nid = \"out-lg\"",
            "layout = \"loops_gate\"\nlate_plate_window_ms = 200\n\n[[lanes]]\nid = \"out-lg\"",
        );
    SiteConfig::from_toml(&text, Path::new("test.toml")).unwrap()
}

/// The test site with its state database in `dir`.
fn site_and_store(dir: &Path) -> (SiteConfig, Arc<Store>) {
    let config = site(dir);
    let store = Arc::new(Store::open_site(&config).unwrap());
    (config, store)
}

/// Closes the event channel and waits (at most `limit`) for the lane task to end on
/// its own, as it does at shutdown.
async fn finish(tx: mpsc::Sender<RawEvent>, task: JoinHandle<()>, limit: Duration) {
    drop(tx);
    tokio::time::timeout(limit, task).await.unwrap().unwrap();
}

/// Polls `done` every `every` while the task runs on the wall clock; fails with `what`
/// after 5 s.
async fn wait_until(what: &str, every: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(every).await;
    }
}

/// `parking_bridge_lane_passages_total{lane, case}` from the process's registry.
fn lane_passages(lane: &str, case: &str) -> f64 {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&prometheus::gather())
        .unwrap();
    let a = format!(r#"parking_bridge_lane_passages_total{{case="{case}",lane="{lane}"}} "#);
    let b = format!(r#"parking_bridge_lane_passages_total{{lane="{lane}",case="{case}"}} "#);
    text.lines()
        .find_map(|l| l.strip_prefix(&a).or_else(|| l.strip_prefix(&b)))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A per-lane metric `family{lane}` from the process's registry, as `/metrics` shows it.
fn lane_metric(family: &str, lane: &str) -> f64 {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&prometheus::gather())
        .unwrap();
    let prefix = format!(r#"{family}{{lane="{lane}"}} "#);
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn ev(lane: &str, device: &str, at: i64, kind: EventKind) -> RawEvent {
    RawEvent {
        lane: lane.into(),
        device: device.into(),
        at: Timestamp(at),
        kind,
    }
}

/// One vehicle through a loops lane starting at `t`, with an optional read.
fn vehicle(lane: &str, plate: Option<&str>, t: i64) -> Vec<RawEvent> {
    let lp = |which, occupied| EventKind::Loop { which, occupied };
    let mut out = Vec::new();
    if let Some(p) = plate {
        out.push(ev(
            lane,
            "cam",
            t,
            EventKind::Plate(PlateRead::text(p, PlateColor::Blue)),
        ));
    }
    out.push(ev(lane, "io", t + 300, lp(LoopId::A, true)));
    out.push(ev(lane, "io", t + 1300, lp(LoopId::B, true)));
    out.push(ev(lane, "io", t + 2300, lp(LoopId::A, false)));
    out.push(ev(lane, "io", t + 3300, lp(LoopId::B, false)));
    out
}

#[tokio::test]
async fn entry_and_exit_become_stays_reports_and_a_replayable_journal() {
    let dir = tempfile::tempdir().unwrap();
    let (config, store) = site_and_store(dir.path());
    let health = Health::new();
    let journal = Journal::open(&dir.path().join("journal")).unwrap();
    let runtime = LaneRuntime::new(&config, store.clone(), health.clone()).with_journal(journal);
    let (tx, rx) = mpsc::channel(64);
    let passages = |lane: &str| lane_passages(lane, "normal");
    let before = (passages("in-lg"), passages("out-lg"));
    let task = tokio::spawn(runtime.run(rx));

    // Recent times: the task expires stays by the wall clock.
    let t0 = Timestamp::now().0 - 6_000_000;
    let mut events = vehicle("in-lg", Some("闽A12345"), t0);
    events.push(ev(
        "out-lg",
        "out-lg-io",
        t0 + 60_000,
        EventKind::Link { up: false },
    ));
    events.push(ev(
        "out-lg",
        "out-lg-io",
        t0 + 61_000,
        EventKind::Link { up: true },
    ));
    events.extend(vehicle("out-lg", Some("闽A12345"), t0 + 5_400_000));
    let sent = events.len();
    for e in events {
        tx.send(e).await.unwrap();
    }
    finish(tx, task, Duration::from_secs(10)).await;

    let stays = store.list_stays(false, 10).unwrap();
    assert_eq!(stays.len(), 1, "{stays:?}");
    let stay = &stays[0];
    assert_eq!(stay.plate_no, "闽A12345");
    assert_eq!(stay.state, StayState::Closed);
    assert_eq!(stay.entered_at, Timestamp(t0 + 3300));
    assert_eq!(stay.exited_at, Some(Timestamp(t0 + 5_403_300)));
    assert_eq!(
        (stay.price, stay.should_pay, stay.paid_fee),
        (Some(1000), Some(0), Some(1000))
    );
    let heads = store
        .due_reports(Timestamp(i64::MAX / 2), 10, false, &HashSet::new())
        .unwrap();
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].kind, ReportKind::Entry);
    assert!(
        matches!(&heads[0].report, Report::Entry(e) if e.out_order_no == stay.out_order_no && e.free_spaces == 4)
    );
    assert_eq!(store.occupancy().unwrap().occupied, 0);
    // parking_bridge_lane_passages_total, as deltas (the registry is the process's).
    assert_eq!(
        (passages("in-lg") - before.0, passages("out-lg") - before.1),
        (1.0, 1.0)
    );

    let link = health.snapshot();
    assert!(
        link.get("out-lg-io")
            .is_some_and(|d| d.up && d.since == Timestamp(t0 + 61_000)),
        "{link:?}"
    );

    let journal_path = dir.path().join("journal/events.jsonl");
    let text = std::fs::read_to_string(&journal_path).unwrap();
    // Every event, plus the lane task's marks (start, applied passages, stop).
    let is_mark = parking_bridge::lane::journal::is_mark;
    assert_eq!(text.lines().filter(|l| !is_mark(l)).count(), sent);
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("\"mark\":\"applied\""))
            .count(),
        2,
        "{text}"
    );
    let mut replayed = Vec::new();
    parking_bridge::lane::replay::run(&config, text.as_bytes(), &mut replayed, false).unwrap();
    let replayed = String::from_utf8(replayed).unwrap();
    let kinds: Vec<&str> = replayed
        .lines()
        .map(|l| {
            if l.contains("\"kind\":\"entry\"") {
                "entry"
            } else {
                "other"
            }
        })
        .collect();
    assert_eq!(kinds, ["entry", "other"], "{replayed}");
    assert!(replayed.contains("\"price\":1000"), "{replayed}");
}

#[tokio::test]
async fn a_vehicle_without_a_read_is_reported_when_the_late_plate_timer_fires() {
    let dir = tempfile::tempdir().unwrap();
    let (config, store) = site_and_store(dir.path());
    let runtime = LaneRuntime::new(&config, store.clone(), Health::new());
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(runtime.run(rx));

    // Event times are "now", so the 200 ms late-plate timer runs on the wall clock.
    let t0 = Timestamp::now().0 - 3_300;
    for e in vehicle("in-lg", None, t0) {
        tx.send(e).await.unwrap();
    }
    wait_until(
        "no placeholder stay opened by the timer",
        Duration::from_millis(20),
        || !store.open_stays().unwrap().is_empty(),
    )
    .await;
    let stays = store.open_stays().unwrap();
    assert_eq!(stays[0].plate_no, "无牌车");
    assert_eq!(stays[0].plate_color, PlateColor::Unknown);
    finish(tx, task, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn occupancy_source_sets_the_occupied_count_within_total() {
    let dir = tempfile::tempdir().unwrap();
    let (config, store) = site_and_store(dir.path());
    let runtime = LaneRuntime::new(&config, store.clone(), Health::new());
    let (tx, rx) = mpsc::channel::<RawEvent>(4);
    let task = tokio::spawn(runtime.run(rx));
    // What the occupancy topic's feed sends: a lot-wide space count.
    let count = |value| RawEvent {
        lane: String::new(),
        device: "lot-occupancy".into(),
        at: Timestamp::now(),
        kind: EventKind::Spaces {
            counted: parking_bridge::event::Counted::Occupied,
            value,
        },
    };
    tx.send(count(3)).await.unwrap();
    let occupied = || store.occupancy().unwrap().occupied;
    wait_until("occupancy not set", Duration::from_millis(10), || {
        occupied() == 3
    })
    .await;
    tx.send(count(99)).await.unwrap();
    wait_until(
        "occupancy not clamped to total",
        Duration::from_millis(10),
        || occupied() == 5,
    )
    .await;
    assert_eq!(store.occupancy().unwrap().free, 0);
    finish(tx, task, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn passages_reach_the_status_page_with_their_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let (config, store) = site_and_store(dir.path());
    let health = Health::new();
    let ops = parking_bridge::ops::OpsState::with_health(&config, health.clone());
    let runtime = LaneRuntime::new(&config, store.clone(), health).with_ops(ops.clone());
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(runtime.run(rx));

    let t0 = Timestamp::now().0 - 60_000;
    let jpeg = Arc::new(vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3]);
    let mut events = vehicle("in-lg", None, t0);
    let mut read = PlateRead::text("闽A12345", PlateColor::Blue);
    read.image = Some(jpeg.clone());
    read.image_len = Some(jpeg.len());
    events.insert(0, ev("in-lg", "cam", t0, EventKind::Plate(read)));
    // Second vehicle without an image: listed, no snapshot.
    events.extend(vehicle("in-lg", Some("闽B54321"), t0 + 10_000));
    for e in events {
        tx.send(e).await.unwrap();
    }
    finish(tx, task, Duration::from_secs(10)).await;

    let view = ops.view();
    let shown = view.passages.get("in-lg").cloned().unwrap_or_default();
    assert_eq!(shown.len(), 2, "{shown:?}");
    let with_image = shown
        .iter()
        .find(|p| p.plate.as_deref() == Some("闽A12345"))
        .expect("first vehicle on the page");
    assert_eq!(with_image.case, "entry");
    assert_eq!(with_image.snapshot.as_deref(), Some(&*jpeg));
    assert_eq!(ops.snapshot(with_image.id).as_deref(), Some(&*jpeg));
    let without = shown
        .iter()
        .find(|p| p.plate.as_deref() == Some("闽B54321"))
        .expect("second vehicle on the page");
    assert!(without.snapshot.is_none());
}

/// Waits until the journal in `dir` holds `n` event lines (they are written before the
/// lane logic acts, so this is "the task has seen them").
async fn journalled(dir: &Path, n: usize) {
    let path = dir.join("journal/events.jsonl");
    wait_until("events not journalled", Duration::from_millis(10), || {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|l| !parking_bridge::lane::journal::is_mark(l))
            .count()
            >= n
    })
    .await;
}

fn start(
    config: &SiteConfig,
    store: &Arc<Store>,
    dir: &Path,
) -> (mpsc::Sender<RawEvent>, JoinHandle<()>) {
    let journal = Journal::open(&dir.join("journal")).unwrap();
    let runtime = LaneRuntime::new(config, store.clone(), Health::new()).with_journal(journal);
    let (tx, rx) = mpsc::channel(64);
    (tx, tokio::spawn(runtime.run(rx)))
}

/// One vehicle's events split at `cut` (the first `cut` before a crash or a stop).
fn split(events: Vec<RawEvent>, cut: usize) -> (Vec<RawEvent>, Vec<RawEvent>) {
    let mut first = events;
    let rest = first.split_off(cut);
    (first, rest)
}

#[tokio::test]
async fn a_vehicle_under_the_barrier_when_the_task_dies_is_reported_with_its_plate_after_the_restart()
 {
    let dir = tempfile::tempdir().unwrap();
    let (config, store) = site_and_store(dir.path());
    let gaps_before = lane_metric("parking_bridge_lane_restart_gaps_total", "in-lg");
    let t0 = Timestamp::now().0 - 3_300;
    // Read, on A, under the barrier (A and B): then the process dies.
    let (before, after) = split(vehicle("in-lg", Some("闽A12345"), t0), 3);
    let (tx, task) = start(&config, &store, dir.path());
    for e in before {
        tx.send(e).await.unwrap();
    }
    journalled(dir.path(), 3).await;
    // SIGKILL: the task vanishes without settling or marking anything.
    task.abort();
    let _ = task.await;
    drop(tx);
    assert!(store.open_stays().unwrap().is_empty());

    let (tx, task) = start(&config, &store, dir.path());
    for e in after {
        tx.send(e).await.unwrap();
    }
    wait_until(
        "no entry after the restart",
        Duration::from_millis(10),
        || !store.open_stays().unwrap().is_empty(),
    )
    .await;
    finish(tx, task, Duration::from_secs(5)).await;
    let stays = store.list_stays(false, 10).unwrap();
    assert_eq!(stays.len(), 1, "{stays:?}");
    assert_eq!(stays[0].plate_no, "闽A12345");
    assert_eq!(stays[0].entered_at, Timestamp(t0 + 3300));

    let gaps = parking_bridge::lane::journal::read_gaps(&dir.path().join("journal")).unwrap();
    let gap = gaps
        .iter()
        .find(|g| g.lane == "in-lg")
        .expect("a gap for in-lg");
    assert!(!gap.clean_stop, "{gap:?}");
    assert_eq!(gap.resumed, "under_barrier");
    assert!(gap.from.0 >= t0 + 1300, "{gap:?}");
    // /metrics counts the gap and shows its length.
    assert!(lane_metric("parking_bridge_lane_restart_gaps_total", "in-lg") > gaps_before);
    let seconds = lane_metric("parking_bridge_lane_last_gap_seconds", "in-lg");
    assert!(
        seconds > 0.0 && seconds < 60.0,
        "last gap {seconds} s: {gap:?}"
    );

    // A third start applies nothing again.
    let (tx, task) = start(&config, &store, dir.path());
    finish(tx, task, Duration::from_secs(5)).await;
    assert_eq!(store.list_stays(false, 10).unwrap().len(), 1);
}

#[tokio::test]
async fn a_stop_and_a_restart_mid_passage_give_the_reports_of_no_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (config, store) = site_and_store(dir.path());
    let t0 = Timestamp::now().0 - 3_300;
    // A vehicle on loop A, not yet read: the bridge is stopped (SIGTERM: the channel
    // closes), restarted, the read arrives and the vehicle drives through.
    let events = vehicle("in-lg", None, t0)[..1].to_vec();
    let (tx, task) = start(&config, &store, dir.path());
    for e in events {
        tx.send(e).await.unwrap();
    }
    finish(tx, task, Duration::from_secs(5)).await;
    let journal = std::fs::read_to_string(dir.path().join("journal/events.jsonl")).unwrap();
    assert!(journal.contains("\"mark\":\"stop\""), "{journal}");

    let (tx, task) = start(&config, &store, dir.path());
    let rest = vehicle("in-lg", Some("闽B54321"), t0)[1..].to_vec();
    let mut late = vec![ev(
        "in-lg",
        "cam",
        Timestamp::now().0,
        EventKind::Plate(PlateRead::text("闽B54321", PlateColor::Blue)),
    )];
    late.extend(rest.into_iter().map(|mut e| {
        e.at = Timestamp(e.at.0 + 3_400);
        e
    }));
    for e in late {
        tx.send(e).await.unwrap();
    }
    journalled(dir.path(), 1 + 1 + 3).await;
    finish(tx, task, Duration::from_secs(5)).await;
    let stays = store.list_stays(false, 10).unwrap();
    assert_eq!(stays.len(), 1, "{stays:?}");
    assert_eq!(
        stays[0].plate_no, "闽B54321",
        "the vehicle kept its place across the stop"
    );
    let gaps = parking_bridge::lane::journal::read_gaps(&dir.path().join("journal")).unwrap();
    assert!(
        gaps.iter()
            .any(|g| g.lane == "in-lg" && g.clean_stop && g.resumed == "approaching"),
        "{gaps:?}"
    );
}

/// Drops the `applied` marks from the journal in `dir` (if the task wrote them before
/// it was aborted): a SIGKILL between the passage's commit and its mark.
fn forget_applied_marks(dir: &Path) {
    let path = dir.join("journal/events.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("\"mark\":\"applied\""))
        .collect();
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
}

#[tokio::test]
async fn a_passage_committed_but_not_marked_before_a_kill_is_not_applied_again() {
    let dir = tempfile::tempdir().unwrap();
    let (config, store) = site_and_store(dir.path());
    let t0 = Timestamp::now().0 - 20_000;
    let (tx, task) = start(&config, &store, dir.path());
    for e in vehicle("in-lg", Some("闽A12345"), t0) {
        tx.send(e).await.unwrap();
    }
    wait_until("no entry", Duration::from_millis(10), || {
        !store.open_stays().unwrap().is_empty()
    })
    .await;
    task.abort();
    let _ = task.await;
    drop(tx);
    forget_applied_marks(dir.path());

    let (tx, task) = start(&config, &store, dir.path());
    tokio::time::sleep(Duration::from_millis(300)).await;
    finish(tx, task, Duration::from_secs(5)).await;
    let stays = store.list_stays(false, 10).unwrap();
    assert_eq!(stays.len(), 1, "{stays:?}");
}

#[tokio::test]
async fn a_passage_seen_but_not_applied_before_a_kill_is_applied_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (config, store) = site_and_store(dir.path());
    let t0 = Timestamp::now().0 - 20_000;
    // The journal of a run that saw the whole vehicle and died before storing it.
    let mut journal = Journal::open(&dir.path().join("journal")).unwrap();
    journal
        .mark(&parking_bridge::lane::journal::Mark::Start {
            at: Timestamp(t0 - 1),
            resumed: false,
        })
        .unwrap();
    for e in vehicle("in-lg", Some("闽A12345"), t0) {
        journal.append(&e).unwrap();
    }
    drop(journal);

    let recovered_before = lane_metric("parking_bridge_lane_recovered_passages_total", "in-lg");
    let (tx, task) = start(&config, &store, dir.path());
    wait_until(
        "the unapplied passage is not applied",
        Duration::from_millis(10),
        || !store.open_stays().unwrap().is_empty(),
    )
    .await;
    finish(tx, task, Duration::from_secs(5)).await;
    let stays = store.list_stays(false, 10).unwrap();
    assert_eq!(stays.len(), 1, "{stays:?}");
    assert_eq!(stays[0].plate_no, "闽A12345");
    assert_eq!(stays[0].entered_at, Timestamp(t0 + 3300));
    let text = std::fs::read_to_string(dir.path().join("journal/events.jsonl")).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("\"mark\":\"applied\"") && l.contains("\"recovered\":true")),
        "{text}"
    );
    assert_eq!(
        lane_metric("parking_bridge_lane_recovered_passages_total", "in-lg") - recovered_before,
        1.0
    );
}

/// A vehicle followed at a restart that leaves without a passage (it backed off loop A
/// in the blind interval) cannot be accounted for: the gap says so and /metrics counts it.
#[tokio::test]
async fn a_vehicle_followed_at_a_restart_that_leaves_without_a_passage_is_counted_unresolved() {
    let dir = tempfile::tempdir().unwrap();
    let (config, store) = site_and_store(dir.path());
    let before = lane_metric("parking_bridge_lane_unresolved_total", "out-lg");
    let t0 = Timestamp::now().0 - 1_000;
    // An unread car on loop A of the exit lane, the barrier closed; the process dies.
    let (tx, task) = start(&config, &store, dir.path());
    tx.send(ev(
        "out-lg",
        "io",
        t0 - 1,
        EventKind::Gate {
            position: parking_bridge::event::GatePosition::Closed,
        },
    ))
    .await
    .unwrap();
    tx.send(ev(
        "out-lg",
        "io",
        t0,
        EventKind::Loop {
            which: LoopId::A,
            occupied: true,
        },
    ))
    .await
    .unwrap();
    journalled(dir.path(), 2).await;
    task.abort();
    let _ = task.await;
    drop(tx);
    // After the restart, loop A is free and B never was occupied: no passage.
    let (tx, task) = start(&config, &store, dir.path());
    tx.send(ev(
        "out-lg",
        "io",
        Timestamp::now().0,
        EventKind::Loop {
            which: LoopId::A,
            occupied: false,
        },
    ))
    .await
    .unwrap();
    finish(tx, task, Duration::from_secs(5)).await;
    let gaps = parking_bridge::lane::journal::read_gaps(&dir.path().join("journal")).unwrap();
    let gap = gaps
        .iter()
        .find(|g| g.lane == "out-lg")
        .expect("a gap for out-lg");
    assert_eq!(gap.unresolved.len(), 1, "{gap:?}");
    assert!(
        gap.unresolved[0].contains("left without a passage"),
        "{gap:?}"
    );
    assert_eq!(
        lane_metric("parking_bridge_lane_unresolved_total", "out-lg") - before,
        1.0
    );
    assert!(store.list_stays(false, 10).unwrap().is_empty());
}

/// Issue 18 in the real store: a re-entering plate's orphaned stay gets an exit report
/// (price 0, one second before the new entry) and a lane-journal note; a trailer behind
/// its tractor is noted, not a stay; a vehicle hidden by a device gap is entered once,
/// noted as inferred.
#[tokio::test]
async fn orphaned_stays_trailers_and_inferred_passages_reach_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (config, store) = site_and_store(dir.path());
    let runtime = LaneRuntime::new(&config, store.clone(), Health::new());
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(runtime.run(rx));
    let lp = |which, occupied| EventKind::Loop { which, occupied };
    let gate = |position| EventKind::Gate { position };
    let read = |p: &str| EventKind::Plate(PlateRead::text(p, PlateColor::Blue));
    use parking_bridge::event::GatePosition::{Closed, Open};

    let t0 = Timestamp::now().0 - 6_000_000;
    let mut events = vehicle("in-lg", Some("闽A12345"), t0);
    events.extend(vehicle("in-lg", Some("闽A12345"), t0 + 3_600_000));
    let t = t0 + 3_700_000;
    for (dt, device, kind) in [
        // Tractor and trailer.
        (0, "cam", read("闽A55555")),
        (300, "io", lp(LoopId::A, true)),
        (600, "io", gate(Open)),
        (1_300, "io", lp(LoopId::B, true)),
        (2_300, "io", lp(LoopId::A, false)),
        (2_600, "io", lp(LoopId::A, true)),
        (2_700, "cam", read("闽A6789挂")),
        (3_300, "io", lp(LoopId::B, false)),
        (3_500, "io", lp(LoopId::B, true)),
        (4_300, "io", lp(LoopId::A, false)),
        (5_300, "io", lp(LoopId::B, false)),
        (6_000, "io", gate(Closed)),
        // A read car on A when the I/O module goes silent for a second.
        (20_000, "cam", read("闽A77777")),
        (20_300, "io", lp(LoopId::A, true)),
        (20_600, "io", gate(Open)),
        (21_000, "io", EventKind::Link { up: false }),
        (22_000, "io", EventKind::Link { up: true }),
        (22_000, "io", lp(LoopId::A, false)),
        (22_000, "io", gate(Closed)),
    ] {
        events.push(ev("in-lg", device, t + dt, kind));
    }
    for e in events {
        tx.send(e).await.unwrap();
    }
    finish(tx, task, Duration::from_secs(10)).await;

    let stays = store.list_stays(false, 10).unwrap();
    let plates: Vec<(&str, StayState)> = stays
        .iter()
        .map(|s| (s.plate_no.as_str(), s.state))
        .collect();
    assert_eq!(stays.len(), 4, "{plates:?}");
    let orphan = stays
        .iter()
        .find(|s| s.plate_no == "闽A12345" && s.state == StayState::Closed)
        .unwrap_or_else(|| panic!("{plates:?}"));
    assert_eq!(orphan.exited_at, Some(Timestamp(t0 + 3_603_300 - 1_000)));
    assert_eq!(orphan.price, Some(0));
    for p in ["闽A12345", "闽A55555", "闽A77777"] {
        assert!(
            stays
                .iter()
                .any(|s| s.plate_no == p && s.state == StayState::Open),
            "{p}: {plates:?}"
        );
    }
    assert!(!stays.iter().any(|s| s.plate_no.ends_with('挂')));
    assert_eq!(store.occupancy().unwrap().occupied, 3);

    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let exits: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE out_order_no = ?1 AND kind = 2",
            [&orphan.out_order_no],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        exits, 1,
        "the orphaned stay's exit is queued for the platform"
    );
    let mut notes: Vec<String> = conn
        .prepare("SELECT what FROM lane_journal ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    notes.sort();
    assert_eq!(
        notes,
        ["inferred_passage", "orphaned_exit", "trailer_with_tractor"]
    );
}

#[test]
fn the_gaps_command_lists_each_restart_gap_with_its_cause_and_outcome() {
    use parking_bridge::lane::journal::{Gap, Mark};
    let dir = tempfile::tempdir().unwrap();
    let config = site(dir.path());
    let config_path = dir.path().join("site.toml");
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/site.toml"),
    )
    .unwrap()
    .replace(
        "dir = \"/nonexistent\"",
        &format!("dir = {:?}", dir.path().display().to_string()),
    );
    std::fs::write(&config_path, base).unwrap();
    let gaps = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_parking-bridge"))
            .args(["gaps", "--config"])
            .arg(&config_path)
            .env_remove("PARKING_BRIDGE_APP_SECRET")
            .output()
            .unwrap()
    };
    let none = gaps();
    assert!(none.status.success(), "{none:?}");
    assert!(String::from_utf8_lossy(&none.stdout).contains("no restart gaps"));

    let mut journal = Journal::open_in_storage(&config.storage).unwrap();
    journal
        .mark(&Mark::Gap(Gap {
            lane: "in-lg".into(),
            from: Timestamp(1_764_000_000_000),
            to: Timestamp(1_764_000_001_400),
            clean_stop: false,
            resumed: "under_barrier".into(),
            recovered: 1,
            unresolved: vec!["2 journal lines unreadable".into()],
            silent_devices: vec!["in-lg-cam".into()],
        }))
        .unwrap();
    let out = gaps();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.starts_with("in-lg"))
        .unwrap_or_else(|| panic!("{text}"));
    for want in [
        "1.4",
        "crash",
        "under_barrier",
        "2 journal lines unreadable",
        "silent: in-lg-cam",
    ] {
        assert!(row.contains(want), "{want:?} missing: {row}");
    }
}

/// A recognition a camera stored while it could not push, arriving an hour late on a
/// lane with loops: set aside (no stay), journalled, and counted in /metrics.
#[tokio::test]
async fn a_late_read_older_than_the_plate_window_on_a_loop_lane_is_set_aside_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (config, store) = site_and_store(dir.path());
    let family = "parking_bridge_lane_late_reads_set_aside_total";
    let before = lane_metric(family, "in-lg");
    let (tx, task) = start(&config, &store, dir.path());
    let now = Timestamp::now();
    let mut read = PlateRead::text("闽A77777", PlateColor::Blue);
    read.late = true;
    read.device_time = Some(Timestamp(now.0 - 3_600_000));
    tx.send(ev("in-lg", "cam", now.0, EventKind::Plate(read)))
        .await
        .unwrap();
    journalled(dir.path(), 1).await;
    wait_until(
        "the late read is counted",
        Duration::from_millis(10),
        || lane_metric(family, "in-lg") > before,
    )
    .await;
    finish(tx, task, Duration::from_secs(5)).await;
    assert_eq!(lane_metric(family, "in-lg") - before, 1.0);
    assert!(store.list_stays(false, 10).unwrap().is_empty());
}

/// Records every action written, then writes it to the store.
struct Recording {
    store: Arc<Store>,
    seen: std::sync::Mutex<Vec<String>>,
}

impl parking_bridge::lane_task::ActionSink for Recording {
    fn apply(
        &self,
        action: &parking_bridge::lane::StayAction,
        note: Option<&parking_bridge::store::LaneNote>,
        now: Timestamp,
    ) -> Result<parking_bridge::store::Applied, parking_bridge::store::StoreError> {
        let kind = serde_json::to_value(action).unwrap()["action"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.seen.lock().unwrap().push(kind);
        self.store.apply(action, note, now)
    }
}

#[tokio::test]
async fn every_applied_passage_goes_through_the_action_sink_once() {
    let dir = tempfile::tempdir().unwrap();
    let (config, store) = site_and_store(dir.path());
    let sink = Arc::new(Recording {
        store: store.clone(),
        seen: Default::default(),
    });
    let runtime =
        LaneRuntime::new(&config, store.clone(), Health::new()).with_action_sink(sink.clone());
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(runtime.run(rx));
    let t0 = Timestamp::now().0 - 10_000;
    for e in vehicle("in-lg", Some("闽A12345"), t0) {
        tx.send(e).await.unwrap();
    }
    wait_until("the entry", Duration::from_millis(20), || {
        store.find_open_stay("闽A12345").unwrap().is_some()
    })
    .await;
    finish(tx, task, Duration::from_secs(5)).await;
    assert_eq!(*sink.seen.lock().unwrap(), ["open"]);
}
