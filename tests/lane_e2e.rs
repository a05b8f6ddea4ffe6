//! End to end with real processes: `parking-bridge run` (a child process) reads
//! simulated lane I/O modules over Modbus TCP (served here) and simulated Vzenith
//! cameras through a real mosquitto, and reports to `parking-bridge mock-platform`
//! (another child process). The platform's record file is the only thing asserted.
//!
//! The `--ignored` test `entry_latency_from_loop_b_release_to_platform` measures the
//! figure in BENCHMARKS.md ("Lane logic"); set `PARKING_BRIDGE_BIN` to measure a
//! release binary.

#[path = "driver_common/mod.rs"]
mod driver_common;
#[path = "platform_common/mod.rs"]
mod platform_common;
mod process_common;
use process_common::env_or;

use driver_common::Mosquitto;
use parking_bridge::event::{GatePosition, LoopId};
use parking_bridge::plate::PlateColor;
use parking_bridge::sim::devices::{SimCamera, SimModbus};
use parking_bridge::sim::traffic::{self, Action, Case, LaneRef, Plan, TrafficConfig};
use platform_common::{APP_ID, MockProcess, SECRET};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LOT: &str = "P3501";
const TOTAL_SPACES: i64 = 100;
const PLACEHOLDER: &str = "无牌车";
const SLAVE: u8 = 1;
const DI_LOOP_A: u16 = 0;
const DI_LOOP_B: u16 = 1;
const DI_GATE_OPEN: u16 = 2;
const DI_GATE_CLOSED: u16 = 3;

/// The bridge binary: the test build's, or `PARKING_BRIDGE_BIN` (a release build).
fn bridge_bin() -> PathBuf {
    std::env::var_os("PARKING_BRIDGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(platform_common::BIN))
}

/// `parking-bridge run`, stopped with SIGTERM (killed if it does not stop) on drop.
struct Bridge(Child);

impl Bridge {
    fn start(config: &Path, log: &Path) -> Bridge {
        // Appended to: a restarted bridge logs after the one before it.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(bridge_bin())
            .args(["run", "--config"])
            .arg(config)
            .env_remove("PARKING_BRIDGE_APP_SECRET")
            .env("NO_PROXY", "127.0.0.1,localhost")
            // Camera link changes (info) show when the MQTT subscription delivers.
            .env("RUST_LOG", "warn,parking_bridge::driver::mqtt=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn parking-bridge run");
        Bridge(child)
    }

    /// SIGKILL, as a crash, an out-of-memory kill or a watchdog would: nothing is settled.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGTERM, then up to 10 s for a clean stop. Returns whether it exited cleanly.
    fn stop(&mut self) -> bool {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One simulated lane: its I/O module (Modbus TCP) and its camera.
struct Lane {
    lane: LaneRef,
    modbus: SimModbus,
    addr: SocketAddr,
    /// `None` while the plan has the camera's network link down.
    camera: tokio::sync::Mutex<Option<SimCamera>>,
    camera_sn: String,
    broker: u16,
}

fn lane_id(lane: LaneRef) -> String {
    match lane {
        LaneRef::Entry(i) => format!("entry-{}", i + 1),
        LaneRef::Exit(i) => format!("exit-{}", i + 1),
    }
}

async fn start_lanes(entries: usize, exits: usize, broker: u16) -> Vec<Lane> {
    let mut out = Vec::new();
    for lane in (0..entries)
        .map(LaneRef::Entry)
        .chain((0..exits).map(LaneRef::Exit))
    {
        let modbus = SimModbus::new();
        modbus.add_slave(SLAVE);
        modbus.set_input(SLAVE, DI_GATE_CLOSED, true);
        let addr = modbus.serve_tcp("127.0.0.1:0").await.unwrap();
        let camera_sn = format!("E2E-{}", lane_id(lane));
        let camera = SimCamera::connect("127.0.0.1", broker, &camera_sn);
        out.push(Lane {
            lane,
            modbus,
            addr,
            camera: tokio::sync::Mutex::new(Some(camera)),
            camera_sn,
            broker,
        });
    }
    out
}

/// The site config: the shipped `generic-modbus-tcp-di-gateway` and `vzenith-mqtt`
/// profiles, exactly as an installer would write it.
fn write_config(
    dir: &Path,
    platform: &str,
    broker: u16,
    lanes: &[Lane],
    poll_ms: u64,
    debounce_ms: u64,
) -> PathBuf {
    let mut t = format!(
        "[platform]\nbase_url = \"{platform}\"\napp_id = \"{APP_ID}\"\napp_secret = \"{SECRET}\"\n\
         connect_timeout_secs = 1\nrequest_timeout_secs = 2\n\n\
         [lot]\nparking_lot_no = \"{LOT}\"\ntotal_spaces = {TOTAL_SPACES}\n\n\
         [storage]\ndir = {:?}\n\n[http]\nlisten = \"\"\n\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {broker}\nclient_id = \"bridge-e2e\"\n\n",
        dir.join("state").display().to_string()
    );
    for l in lanes {
        let id = lane_id(l.lane);
        let (direction, port) = match l.lane {
            LaneRef::Entry(i) => ("entry", format!("E{}", i + 1)),
            LaneRef::Exit(i) => ("exit", format!("X{}", i + 1)),
        };
        t.push_str(&format!(
            "[[lanes]]\nid = \"{id}\"\ndirection = \"{direction}\"\nport_no = \"{port}\"\nplaceholder_plate = \"{PLACEHOLDER}\"\n\n\
             [[devices]]\nname = \"{id}-io\"\nprofile = \"generic-modbus-tcp-di-gateway\"\nlane = \"{id}\"\ntcp = \"{addr}\"\n\
             slave = {SLAVE}\npoll_ms = {poll_ms}\ndebounce_ms = {debounce_ms}\n\
             roles = {{ loop_a = \"di1\", loop_b = \"di2\", gate_open = \"di3\", gate_closed = \"di4\" }}\n\n\
             [[devices]]\nname = \"{id}-cam\"\nprofile = \"vzenith-mqtt\"\nlane = \"{id}\"\ncamera_id = \"{sn}\"\n\n",
            addr = l.addr,
            sn = l.camera_sn,
        ));
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, t).unwrap();
    path
}

/// Waits until the bridge polls every I/O module and its MQTT subscription delivers
/// (the broker does not keep messages for a subscriber that is not there yet): each
/// camera sends keep-alives until the bridge logs its link up. Conditions, not sleeps.
async fn wait_until_polling(lanes: &[Lane], bridge: &mut Bridge, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while lanes.iter().any(|l| l.modbus.request_count(SLAVE) < 3) {
        if let Ok(Some(status)) = bridge.0.try_wait() {
            panic!(
                "the bridge exited ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the bridge did not poll every I/O module in time:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let up = |l: &Lane| {
            let device = format!("device={}-cam", lane_id(l.lane));
            text.lines().any(|line| {
                line.contains("camera link changed")
                    && line.contains("up=true")
                    && line.split_whitespace().any(|w| w == device)
            })
        };
        if lanes.iter().all(up) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the bridge's MQTT subscription did not deliver in time:\n{text}"
        );
        for l in lanes.iter().filter(|l| !up(l)) {
            if let Some(cam) = l.camera.lock().await.as_ref() {
                let _ = cam.keep_alive().await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One end-to-end setup: the recording mock platform, the broker, the simulated lanes
/// and the bridge, already polling every lane. Fields drop in order: the bridge first,
/// the temp dir last.
struct Rig {
    bridge: Bridge,
    /// The bridge's log, shown when an assertion fails.
    log: PathBuf,
    lanes: Vec<Lane>,
    _broker: Mosquitto,
    _mock: MockProcess,
    /// The platform's record file.
    record: PathBuf,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// `entries` + `exits` lanes whose I/O modules are polled every `poll_ms` with
    /// `debounce_ms`.
    async fn start(entries: usize, exits: usize, poll_ms: u64, debounce_ms: u64) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("record.jsonl");
        let mock = MockProcess::recording(&record, &["--parking-lot-no", LOT]);
        let broker = Mosquitto::start();
        let lanes = start_lanes(entries, exits, broker.port).await;
        let config = write_config(
            dir.path(),
            &mock.base_url(),
            broker.port,
            &lanes,
            poll_ms,
            debounce_ms,
        );
        let log = dir.path().join("bridge.log");
        let mut bridge = Bridge::start(&config, &log);
        wait_until_polling(&lanes, &mut bridge, &log).await;
        Rig {
            bridge,
            log,
            lanes,
            _broker: broker,
            _mock: mock,
            record,
            config,
            _dir: dir,
        }
    }
}

fn vzenith_color(color: PlateColor) -> u8 {
    match color {
        PlateColor::Blue => 1,
        PlateColor::Yellow => 2,
        PlateColor::White => 3,
        PlateColor::Black => 4,
        PlateColor::Green => 5,
        _ => 0,
    }
}

async fn apply(lane: &Lane, action: &Action) {
    match action {
        Action::Loop { which, occupied } => {
            let bit = if *which == LoopId::A {
                DI_LOOP_A
            } else {
                DI_LOOP_B
            };
            lane.modbus.set_input(SLAVE, bit, *occupied);
        }
        Action::Gate(position) => {
            let (open, closed) = match position {
                GatePosition::Open => (true, false),
                GatePosition::Closed => (false, true),
                _ => (false, false),
            };
            lane.modbus.set_input(SLAVE, DI_GATE_OPEN, open);
            lane.modbus.set_input(SLAVE, DI_GATE_CLOSED, closed);
        }
        Action::Plate {
            text, color, quick, ..
        } => {
            let plate = text.as_deref().unwrap_or("_无_");
            if let Some(cam) = lane.camera.lock().await.as_ref() {
                cam.publish_plate(plate, vzenith_color(*color), None, *quick)
                    .await
                    .unwrap();
            }
        }
        Action::CameraLink { up } => {
            let mut slot = lane.camera.lock().await;
            // Dropping the camera closes its MQTT connection.
            *slot = up.then(|| SimCamera::connect("127.0.0.1", lane.broker, &lane.camera_sn));
        }
    }
}

async fn drive(plan: &Plan, lanes: &[Lane]) {
    let start = tokio::time::Instant::now();
    for step in &plan.steps {
        let due = start + Duration::from_millis(u64::try_from(step.at).unwrap());
        tokio::time::sleep_until(due).await;
        let lane = lanes.iter().find(|l| l.lane == step.lane).unwrap();
        apply(lane, &step.action).await;
    }
}

/// An accepted entry as the platform recorded it.
#[derive(Debug, Clone)]
struct Entry {
    plate: String,
    parking_time: String,
    at: i64,
}

/// What the mock accepted, read directly from its record; a report accepted twice
/// fails the test here.
#[derive(Debug, Default)]
struct Accepted {
    entries: HashMap<String, Entry>,
    /// out_order_no → (away_time, accepted at)
    exits: HashMap<String, (String, i64)>,
    /// free_spaces of the latest accepted entry or exit.
    last_free_spaces: Option<i64>,
}

fn read_record(path: &Path) -> Accepted {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut acc = Accepted::default();
    let mut last_at = i64::MIN;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue; // a line being written right now
        };
        if v["accepted"] != Value::Bool(true) {
            continue;
        }
        let at = v["at"].as_i64().unwrap();
        let body = &v["body"];
        let field = |k: &str| body[k].as_str().unwrap_or_default().to_string();
        let path = v["path"].as_str().unwrap_or_default();
        if path.ends_with("/barrier/parking") {
            let entry = Entry {
                plate: field("plate_no"),
                parking_time: field("parking_time"),
                at,
            };
            assert!(
                acc.entries.insert(field("out_order_no"), entry).is_none(),
                "an entry accepted twice: {line}"
            );
        } else if path.ends_with("/barrier/away") {
            assert!(
                acc.exits
                    .insert(field("out_order_no"), (field("away_time"), at))
                    .is_none(),
                "an exit accepted twice: {line}"
            );
        } else {
            continue;
        }
        if at >= last_at {
            last_at = at;
            acc.last_free_spaces = body["free_spaces"].as_i64();
        }
    }
    acc
}

/// The traffic of the 50-vehicle run: 3 entry and 3 exit lanes, 200 ms between
/// hardware changes (10 poll periods of 20 ms: a poll or two delayed by a loaded CI
/// machine still sees every change), a third of the vehicles hard cases.
fn mixed_traffic(seed: u64) -> TrafficConfig {
    TrafficConfig {
        vehicles: 50,
        seed,
        entry_lanes: 3,
        exit_lanes: 3,
        mean_gap_ms: 250,
        mean_stay_ms: 2_500,
        step_ms: 200,
        hard_share: 0.35,
        total_spaces: TOTAL_SPACES as usize,
    }
}

const SEED: u64 = 11;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_mixed_vehicles_through_real_processes_are_reported_exactly() {
    let test_started = Instant::now();
    let plan = traffic::plan(&mixed_traffic(SEED));
    let cases = plan.cases();
    for case in [Case::Tailgate, Case::TurnAway, Case::Normal] {
        assert!(
            cases.get(&case).copied().unwrap_or(0) > 0,
            "seed {SEED} has no {case:?}: {cases:?}"
        );
    }
    assert!(
        plan.duration_ms() < 45_000,
        "plan too long: {} ms",
        plan.duration_ms()
    );

    let mut rig = Rig::start(3, 3, 20, 20).await;
    let record = &rig.record;

    drive(&plan, &rig.lanes).await;

    let expected_entries = plan.expected_entries();
    let expected_exits = plan.expected_exits();
    // Late-plate windows (3 s) and the uploader: everything lands within seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    let acc = loop {
        let acc = read_record(record);
        if (acc.entries.len() >= expected_entries && acc.exits.len() >= expected_exits)
            || Instant::now() > deadline
        {
            break acc;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // A second look after a pause: nothing extra arrives late.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acc_again = read_record(record);
    let clean_stop = rig.bridge.stop();
    let bridge_log = std::fs::read_to_string(&rig.log).unwrap_or_default();
    let ctx = format!("cases {cases:?}\nbridge log:\n{bridge_log}");
    assert_eq!(
        acc.entries.len(),
        acc_again.entries.len(),
        "late extra entries\n{ctx}"
    );
    assert_eq!(
        acc.exits.len(),
        acc_again.exits.len(),
        "late extra exits\n{ctx}"
    );

    // Exactly the plates that drove in: the unreadable one under the placeholder,
    // the turned-away ones not at all.
    let mut want: Vec<String> = plan
        .vehicles
        .iter()
        .filter(|v| v.case.enters())
        .map(|v| {
            if v.case == Case::Unreadable {
                PLACEHOLDER.to_string()
            } else {
                v.plate.clone()
            }
        })
        .collect();
    let mut got: Vec<String> = acc.entries.values().map(|e| e.plate.clone()).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "accepted entry plates\n{ctx}");
    for v in plan.vehicles.iter().filter(|v| v.case == Case::TurnAway) {
        assert!(
            !got.contains(&v.plate),
            "turned-away vehicle {} was reported\n{ctx}",
            v.id
        );
    }
    assert_eq!(acc.exits.len(), expected_exits, "accepted exits\n{ctx}");
    for (order, (away_time, exit_at)) in &acc.exits {
        let entry = acc
            .entries
            .get(order)
            .unwrap_or_else(|| panic!("exit {order} without an accepted entry\n{ctx}"));
        assert!(
            *exit_at >= entry.at,
            "exit of {order} accepted before its entry"
        );
        // Both lot-local "YYYY-MM-DD HH:MM:SS": text order is time order.
        assert!(
            away_time.as_str() >= entry.parking_time.as_str(),
            "{order}: away_time {away_time} before parking_time {}",
            entry.parking_time
        );
    }
    assert_eq!(
        acc.last_free_spaces,
        Some(TOTAL_SPACES),
        "everyone has left: the lot is reported empty\n{ctx}"
    );
    assert!(clean_stop, "the bridge stops cleanly on SIGTERM\n{ctx}");
    drop(rig);
    eprintln!(
        "50 vehicles {cases:?}: {} entries, {} exits accepted; test took {:.1} s",
        acc.entries.len(),
        acc.exits.len(),
        test_started.elapsed().as_secs_f64()
    );
}

/// Issue 18 through real processes on one entry lane: a car shorter than the loop gap
/// (it leaves A 0.8 s before it reaches B), a read car whose I/O module stops answering
/// for 1 s while it drives through (the bridge sees it on A with the gate open before
/// the gap, A free and the gate down after it), and a tractor with a drawbar trailer
/// that re-triggers loop A and whose `…挂` plate is read. Each car is entered exactly
/// once; the trailer is folded into its tractor's stay (the default lot rule).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_vehicle_one_second_outage_and_trailer_are_entered_once() {
    let mut rig = Rig::start(1, 0, 20, 20).await;
    let lane = &rig.lanes[0];
    let hold = |ms: u64| tokio::time::sleep(Duration::from_millis(ms));
    let loops = |which, occupied| Action::Loop { which, occupied };
    let plate = |text: &str| Action::Plate {
        text: Some(text.to_string()),
        color: PlateColor::Blue,
        quick: false,
        vehicle: 0,
    };
    let script = |steps: Vec<(Action, u64)>| async move {
        for (action, then_wait) in steps {
            apply(lane, &action).await;
            hold(then_wait).await;
        }
    };

    // 1. The short car: A released, 0.8 s between the loops, then B.
    script(vec![
        (plate("闽A1234D"), 300),
        (loops(LoopId::A, true), 200),
        (Action::Gate(GatePosition::Open), 300),
        (loops(LoopId::A, false), 800),
        (loops(LoopId::B, true), 300),
        (loops(LoopId::B, false), 300),
        (Action::Gate(GatePosition::Closed), 3_500),
    ])
    .await;

    // 2. The read car on A, gate open; the I/O module goes silent for 1 s, in which
    // the car drives through and the gate comes down.
    script(vec![
        (plate("闽A22222"), 300),
        (loops(LoopId::A, true), 200),
        (Action::Gate(GatePosition::Open), 400),
    ])
    .await;
    lane.modbus.set_answering(SLAVE, false);
    script(vec![
        (loops(LoopId::B, true), 200),
        (loops(LoopId::A, false), 200),
        (loops(LoopId::B, false), 200),
        (Action::Gate(GatePosition::Closed), 400),
    ])
    .await;
    lane.modbus.set_answering(SLAVE, true);
    hold(4_000).await;

    // 3. Tractor and drawbar trailer: the gap between them re-triggers A; the camera
    // reads the trailer's own plate.
    script(vec![
        (plate("闽A55555"), 300),
        (loops(LoopId::A, true), 200),
        (Action::Gate(GatePosition::Open), 300),
        (loops(LoopId::B, true), 300),
        (loops(LoopId::A, false), 300),
        (loops(LoopId::A, true), 100),
        (plate("闽A6789挂"), 300),
        (loops(LoopId::B, false), 300),
        (loops(LoopId::B, true), 300),
        (loops(LoopId::A, false), 300),
        (loops(LoopId::B, false), 300),
        (Action::Gate(GatePosition::Closed), 300),
    ])
    .await;

    let want = ["闽A1234D", "闽A22222", "闽A55555"];
    let deadline = Instant::now() + Duration::from_secs(15);
    while read_record(&rig.record).entries.len() < want.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Late-plate and short-vehicle windows are over: nothing else may come.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let acc = read_record(&rig.record);
    let clean_stop = rig.bridge.stop();
    let log = std::fs::read_to_string(&rig.log).unwrap_or_default();
    let mut got: Vec<String> = acc.entries.values().map(|e| e.plate.clone()).collect();
    got.sort();
    assert_eq!(
        got, want,
        "each car entered exactly once
bridge log:
{log}"
    );
    assert!(
        log.contains("device link changed") && log.contains("up=false"),
        "the 1 s outage took the I/O module's link down (else this test shows nothing)
{log}"
    );
    assert!(
        clean_stop,
        "the bridge stops cleanly on SIGTERM
{log}"
    );
}

/// The accepted entry of `plate` in the record, if there is one yet: its `at`.
fn accepted_entry_at(record: &Path, plate: &str) -> Option<i64> {
    read_record(record)
        .entries
        .values()
        .find(|e| e.plate == plate)
        .map(|e| e.at)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// BENCHMARKS.md "Lane logic", end-to-end latency: loop B released on the simulated
/// I/O module → entry accepted by `mock-platform` (its record's `at`), one vehicle at
/// a time on one entry lane, plate read before the vehicle reaches the loops.
/// `LANE_E2E_POLL_MS` (default 50) is the I/O module's poll period; debounce is 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture (PARKING_BRIDGE_BIN=target/release/parking-bridge)"]
async fn entry_latency_from_loop_b_release_to_platform() {
    let poll_ms: u64 = env_or("LANE_E2E_POLL_MS", 50);
    let samples: usize = env_or("LANE_E2E_SAMPLES", 60);
    let mut rig = Rig::start(1, 0, poll_ms, 0).await;
    let (record, log) = (&rig.record, &rig.log);
    let lane = &rig.lanes[0];
    // Each hardware change held for 3 poll periods (at least 60 ms) so polling sees it.
    let hold = Duration::from_millis((3 * poll_ms).max(60));
    let mut latencies = Vec::new();
    for i in 0..samples {
        let plate = format!("闽A{:05}", 10_000 + i);
        let loops = |which, occupied| Action::Loop { which, occupied };
        apply(
            lane,
            &Action::Plate {
                text: Some(plate.clone()),
                color: PlateColor::Blue,
                quick: false,
                vehicle: i,
            },
        )
        .await;
        tokio::time::sleep(hold).await;
        for action in [
            loops(LoopId::A, true),
            Action::Gate(GatePosition::Open),
            loops(LoopId::B, true),
            loops(LoopId::A, false),
        ] {
            apply(lane, &action).await;
            tokio::time::sleep(hold).await;
        }
        apply(lane, &loops(LoopId::B, false)).await;
        let released = parking_bridge::time::Timestamp::now().millis();
        let deadline = Instant::now() + Duration::from_secs(5);
        let accepted = loop {
            if let Some(at) = accepted_entry_at(record, &plate) {
                break at;
            }
            assert!(
                Instant::now() < deadline,
                "entry {i} not accepted within 5 s:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        latencies.push(accepted - released);
        apply(lane, &Action::Gate(GatePosition::Closed)).await;
        tokio::time::sleep(hold).await;
    }
    assert!(rig.bridge.stop(), "the bridge stops cleanly");
    latencies.sort_unstable();
    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);
    println!(
        "entry latency, loop B released → accepted by mock-platform: poll {poll_ms} ms, debounce 0, \
         {samples} vehicles: p50 {p50} ms, p99 {p99} ms, min {} ms, max {} ms (target p99 ≤ {} ms)",
        latencies[0],
        latencies[latencies.len() - 1],
        poll_ms + 20
    );
    drop(rig);
}

/// Kills the bridge (SIGKILL), leaves it dead for `dead`, starts it again with the same
/// config. The traffic does not wait for it.
async fn crash_and_restart(rig: &mut Rig, dead: Duration) {
    rig.bridge.kill();
    tokio::time::sleep(dead).await;
    rig.bridge = Bridge::start(&rig.config, &rig.log);
}

/// Waits until the platform accepted `entries` entries and `exits` exits (or 20 s).
async fn wait_for_record(record: &Path, entries: usize, exits: usize) -> Accepted {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let acc = read_record(record);
        if (acc.entries.len() >= entries && acc.exits.len() >= exits) || Instant::now() > deadline {
            // A second look after a pause: nothing extra arrives late.
            tokio::time::sleep(Duration::from_millis(1000)).await;
            return read_record(record);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `parking-bridge gaps --json` of the rig's site.
fn gaps(rig: &Rig) -> Vec<Value> {
    let out = Command::new(bridge_bin())
        .args(["gaps", "--json", "--config"])
        .arg(&rig.config)
        .env_remove("PARKING_BRIDGE_APP_SECRET")
        .output()
        .expect("parking-bridge gaps");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Issue 19: 20 read cars through one entry lane with the barrier held open, and the
/// bridge SIGKILLed three times during the traffic — each time with a car under the
/// barrier, its plate read — and restarted 0.3 s later. The cars come 4 s apart
/// (the 6 s, scaled down: each car is on the loops for 1.8 s, and the lane's
/// windows are the defaults).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_read_cars_through_three_crashes_are_each_entered_once_with_their_plate() {
    const CARS: usize = 20;
    const SPACING_MS: u64 = 4_000;
    const KILL_AT: [usize; 3] = [4, 10, 16];
    let mut rig = Rig::start(1, 0, 20, 20).await;
    apply(&rig.lanes[0], &Action::Gate(GatePosition::Open)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let loops = |which, occupied| Action::Loop { which, occupied };
    let start = tokio::time::Instant::now();
    let mut plates = Vec::new();
    for car in 0..CARS {
        let plate = format!("闽A{:05}", 20_000 + car);
        plates.push(plate.clone());
        let t = start + Duration::from_millis(car as u64 * SPACING_MS);
        tokio::time::sleep_until(t).await;
        let read = Action::Plate {
            text: Some(plate),
            color: PlateColor::Blue,
            quick: false,
            vehicle: car,
        };
        let steps = [
            (300, loops(LoopId::A, true)),
            (900, loops(LoopId::B, true)),
            (1500, loops(LoopId::A, false)),
            (2100, loops(LoopId::B, false)),
        ];
        apply(&rig.lanes[0], &read).await;
        for (i, (at, action)) in steps.iter().enumerate() {
            tokio::time::sleep_until(t + Duration::from_millis(*at)).await;
            apply(&rig.lanes[0], action).await;
            if i == 1 && KILL_AT.contains(&car) {
                // Under the barrier, plate read: long enough for the bridge to see it.
                tokio::time::sleep(Duration::from_millis(200)).await;
                crash_and_restart(&mut rig, Duration::from_millis(300)).await;
            }
        }
    }
    let acc = wait_for_record(&rig.record, CARS, 0).await;
    let clean_stop = rig.bridge.stop();
    let log = std::fs::read_to_string(&rig.log).unwrap_or_default();
    let mut got: Vec<String> = acc.entries.values().map(|e| e.plate.clone()).collect();
    got.sort();
    assert_eq!(
        got, plates,
        "every car entered once with its own plate\n{log}"
    );
    assert!(clean_stop, "{log}");
    let gaps = gaps(&rig);
    assert_eq!(
        gaps.len(),
        KILL_AT.len(),
        "one gap per restart on the one lane: {gaps:?}"
    );
    for g in &gaps {
        assert_eq!(g["clean_stop"], Value::Bool(false), "{g}");
        assert_eq!(g["resumed"], "under_barrier", "{g}");
        let blind = g["to"].as_i64().unwrap() - g["from"].as_i64().unwrap();
        assert!((300..20_000).contains(&blind), "blind {blind} ms: {g}");
    }
}

/// Issue 19: an exit and an entry on two lanes, the bridge SIGKILLed while both cars
/// are on the loops (read, under the barrier), restarted 0.3 s later: both reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_and_an_entry_under_way_when_the_bridge_is_killed_are_both_reported() {
    let mut rig = Rig::start(1, 1, 20, 20).await;
    let loops = |which, occupied| Action::Loop { which, occupied };
    let read = |plate: &str, vehicle| Action::Plate {
        text: Some(plate.to_string()),
        color: PlateColor::Blue,
        quick: false,
        vehicle,
    };
    let hold = Duration::from_millis(150);
    let (entry, exit) = (&rig.lanes[0], &rig.lanes[1]);
    // The first car drives in and is reported.
    for action in [
        read("闽A30001", 0),
        loops(LoopId::A, true),
        Action::Gate(GatePosition::Open),
        loops(LoopId::B, true),
        loops(LoopId::A, false),
        loops(LoopId::B, false),
        Action::Gate(GatePosition::Closed),
    ] {
        apply(entry, &action).await;
        tokio::time::sleep(hold).await;
    }
    let first = wait_for_record(&rig.record, 1, 0).await;
    assert_eq!(first.entries.len(), 1);
    // It leaves while the second arrives: both read, both under their barriers.
    for action in [
        read("闽A30001", 0),
        loops(LoopId::A, true),
        Action::Gate(GatePosition::Open),
        loops(LoopId::B, true),
    ] {
        apply(exit, &action).await;
        apply(
            entry,
            &match &action {
                Action::Plate { .. } => read("闽A30002", 1),
                a => a.clone(),
            },
        )
        .await;
        tokio::time::sleep(hold).await;
    }
    crash_and_restart(&mut rig, Duration::from_millis(300)).await;
    let (entry, exit) = (&rig.lanes[0], &rig.lanes[1]);
    for action in [
        loops(LoopId::A, false),
        loops(LoopId::B, false),
        Action::Gate(GatePosition::Closed),
    ] {
        apply(exit, &action).await;
        apply(entry, &action).await;
        tokio::time::sleep(hold).await;
    }
    let acc = wait_for_record(&rig.record, 2, 1).await;
    let clean_stop = rig.bridge.stop();
    let log = std::fs::read_to_string(&rig.log).unwrap_or_default();
    let mut plates: Vec<&str> = acc.entries.values().map(|e| e.plate.as_str()).collect();
    plates.sort();
    assert_eq!(plates, ["闽A30001", "闽A30002"], "{log}");
    assert_eq!(acc.exits.len(), 1, "{log}");
    let (order, _) = acc.exits.iter().next().unwrap();
    assert_eq!(acc.entries[order].plate, "闽A30001", "{log}");
    assert!(clean_stop, "{log}");
    let gaps = gaps(&rig);
    assert_eq!(gaps.len(), 2, "one gap per lane: {gaps:?}");
}
