//! `parking-bridge demo` as a real process against a separate `mock-platform`
//! process: the platform's record is checked here, with this file's own reading of
//! it, not the demo's summary.

#[path = "platform_common/mod.rs"]
mod platform_common;
mod process_common;

use platform_common::{APP_ID, BIN, MockProcess, SECRET};
use process_common::Guard;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The demos of this file run one at a time: each drives real devices and a real
/// bridge in real time, and two at once on a small CI machine only test its load.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn demo(dir: &Path, mock: &MockProcess, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["demo", "--dir"])
        .arg(dir)
        .args([
            "--platform-url",
            &mock.base_url(),
            "--app-id",
            APP_ID,
            "--app-secret",
            SECRET,
        ])
        .args(["--parking-lot-no", "P3501"])
        .args(extra)
        .env_remove("PARKING_BRIDGE_APP_SECRET")
        .stdin(Stdio::null());
    cmd
}

/// The accepted entries and exits in a record file, read directly.
struct Accepted {
    /// out_order_no → (plate, at)
    entries: HashMap<String, (String, i64)>,
    /// out_order_no → at
    exits: HashMap<String, i64>,
    last_free_spaces: Option<i64>,
}

fn read_record(path: &Path) -> Accepted {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut acc = Accepted {
        entries: HashMap::new(),
        exits: HashMap::new(),
        last_free_spaces: None,
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).expect("record lines are JSON");
        if v["accepted"] != Value::Bool(true) {
            continue;
        }
        let at = v["at"].as_i64().unwrap();
        let body = &v["body"];
        let order = body["out_order_no"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match v["path"].as_str().unwrap_or_default() {
            p if p.ends_with("/barrier/parking") => {
                let plate = body["plate_no"].as_str().unwrap().to_string();
                assert!(
                    acc.entries.insert(order, (plate, at)).is_none(),
                    "an entry accepted twice: {line}"
                );
                acc.last_free_spaces = body["free_spaces"].as_i64();
            }
            p if p.ends_with("/barrier/away") => {
                assert!(
                    acc.exits.insert(order, at).is_none(),
                    "an exit accepted twice: {line}"
                );
                acc.last_free_spaces = body["free_spaces"].as_i64();
            }
            _ => {}
        }
    }
    acc
}

#[test]
fn demo_with_a_fixed_seed_leaves_an_exact_record_on_an_external_platform() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    let mock = MockProcess::recording(&record, &["--parking-lot-no", "P3501"]);
    let vehicles = 16;
    let out = demo(
        dir.path(),
        &mock,
        &[
            "--vehicles",
            &vehicles.to_string(),
            // Normal speed (200 ms between hardware changes): at double speed a
            // loaded 2-core CI machine can miss a change and the record is no
            // longer exact.
            "--speed",
            "1",
            "--seed",
            "7",
            "--lanes",
            "2:1",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut guard = Guard(out);
    let status = guard.wait_at_most(Duration::from_secs(240), "demo did not finish in time");
    let mut stdout = String::new();
    if let Some(mut o) = guard.0.stdout.take() {
        use std::io::Read;
        let _ = o.read_to_string(&mut stdout);
    }
    assert!(status.success(), "demo failed:\n{stdout}");

    // What the simulation drove: the same seed gives the same vehicles.
    let plan = parking_bridge::sim::traffic::plan(&parking_bridge::sim::demo::traffic_for(
        1.0, 2, 1, 7, vehicles,
    ));
    let expected: Vec<_> = plan.vehicles.iter().filter(|v| v.case.enters()).collect();
    let acc = read_record(&record);
    assert_eq!(
        acc.entries.len(),
        expected.len(),
        "accepted entries vs vehicles that entered"
    );
    assert_eq!(
        acc.exits.len(),
        expected.len(),
        "every vehicle that entered also left"
    );
    let plates: HashSet<&str> = acc.entries.values().map(|(p, _)| p.as_str()).collect();
    for v in &expected {
        let plate = if v.case == parking_bridge::sim::traffic::Case::Unreadable {
            "无牌车"
        } else {
            v.plate.as_str()
        };
        assert!(
            plates.contains(plate),
            "vehicle {} has no accepted entry",
            v.id
        );
    }
    for (order, exited_at) in &acc.exits {
        let (_, entered_at) = acc
            .entries
            .get(order)
            .unwrap_or_else(|| panic!("exit {order} without an accepted entry"));
        assert!(
            exited_at >= entered_at,
            "exit of {order} accepted before its entry"
        );
    }
    assert_eq!(
        acc.last_free_spaces,
        Some(100),
        "the lot is empty at the end"
    );
}

/// `demo --vehicles 0` without snapshots, output discarded, killed on drop.
fn endless_demo(dir: &Path, mock: &MockProcess, seed: &str) -> Guard {
    let args = [
        "--vehicles",
        "0",
        "--speed",
        "4",
        "--seed",
        seed,
        "--no-images",
    ];
    let child = demo(dir, mock, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Guard(child)
}

/// `pending total N` from `parking-bridge outbox`; 0 before the database exists.
fn pending_total(config: &Path) -> u64 {
    open_stays_and_pending(config)
        .lines()
        .find_map(|l| l.strip_prefix("pending total "))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn open_stays_and_pending(config: &Path) -> String {
    cli_stdout("outbox", config)
}

/// What `parking-bridge COMMAND --config CONFIG` (an operator command) prints.
fn cli_stdout(command: &str, config: &Path) -> String {
    let out = process_common::output_within(
        Command::new(BIN)
            .args(command.split(' '))
            .arg("--config")
            .arg(config),
        Duration::from_secs(30),
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// SIGINT to the demo, as Ctrl-C would send it.
fn interrupt(demo: &Guard) {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(demo.0.id() as i32, libc::SIGINT) };
}

#[test]
fn interrupted_endless_demo_keeps_what_was_pending_and_a_restart_delivers_it() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    // The platform is down for the whole first run: everything stays pending.
    let mock = MockProcess::recording(&record, &["--outage-secs", "3600"]);
    let mut guard = endless_demo(dir.path(), &mock, "3");
    // Let traffic flow until a few reports wait for the platform.
    let config = dir.path().join("config.toml");
    let deadline = Instant::now() + Duration::from_secs(60);
    while pending_total(&config) < 6 {
        assert!(Instant::now() < deadline, "the demo made no reports");
        assert!(
            guard.0.try_wait().unwrap().is_none(),
            "the demo stopped by itself"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    interrupt(&guard);
    let status = guard.wait_at_most(Duration::from_secs(20), "demo did not stop on SIGINT");
    assert!(status.success(), "an interrupted demo exits cleanly");
    let listing = cli_stdout("stay list", &config);
    let orders: Vec<String> = listing
        .split_whitespace()
        .filter(|w| w.starts_with("P3501") && w.len() == 25)
        .map(str::to_string)
        .collect();
    assert!(!orders.is_empty(), "the first run made stays:\n{listing}");
    assert!(
        read_record(&record).entries.is_empty(),
        "nothing could be delivered during the outage"
    );
    let before = open_stays_and_pending(&config);
    assert!(
        !before.contains("pending total 0,"),
        "reports were pending:\n{before}"
    );

    // The platform is back; the demo starts again on the same directory.
    mock.stop();
    let mock = MockProcess::recording(&record, &[]);
    let mut guard = endless_demo(dir.path(), &mock, "4");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let acc = read_record(&record);
        if orders.iter().all(|o| acc.entries.contains_key(o)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pending entries of the first run were not delivered after the restart"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    interrupt(&guard);
    guard.wait_at_most(Duration::from_secs(20), "demo did not stop on SIGINT");
}
