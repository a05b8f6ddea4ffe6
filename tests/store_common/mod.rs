//! Helpers for the store/uploader integration tests: `mock-platform` and `run` as real
//! processes (killed on drop), site configs, operator commands, the mock's record, and
//! stays for filling a store directly. `benches/store.rs` includes it too.
#![allow(dead_code)]

use parking_bridge::lane::Fee;
use parking_bridge::plate::{CarType, PlateColor};
use parking_bridge::store::{ExitDetails, NewStay};
use parking_bridge::time::Timestamp;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_parking-bridge");
pub const APP_ID: &str = "ae145d83e56cb332";
pub const SECRET: &str = "bb0873ce314c42f7";
pub const LOT: &str = "P3501";

/// A running `parking-bridge mock-platform` writing `record`; killed on drop.
pub struct Mock {
    child: Child,
    pub port: u16,
    pub record: PathBuf,
}

impl Mock {
    pub fn start(record: &Path, extra: &[&str]) -> Mock {
        let mut child = Command::new(BIN)
            .args([
                "mock-platform",
                "--listen",
                "127.0.0.1:0",
                "--app-id",
                APP_ID,
                "--app-secret",
                SECRET,
            ])
            .arg("--record")
            .arg(record)
            .args(extra)
            .env_remove("PARKING_BRIDGE_APP_SECRET")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mock-platform");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the mock never blocks on a full pipe.
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        let mut mock = Mock {
            child,
            port: 0,
            record: record.to_path_buf(),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("mock printed its address");
        mock.port = line
            .trim()
            .strip_prefix("listening on 127.0.0.1:")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        mock
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn records(&self) -> Vec<Rec> {
        read_records(&self.record)
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One line of the mock's record, the fields the tests look at.
#[derive(Debug, Clone)]
pub struct Rec {
    pub at: i64,
    pub path: String,
    pub accepted: bool,
    pub result_code: String,
    pub body: Value,
}

impl Rec {
    pub fn kind(&self) -> &str {
        let p = self.path.trim_end_matches('/');
        p.rsplit('/').next().unwrap_or("")
    }
    pub fn out_order_no(&self) -> Option<&str> {
        self.body.get("out_order_no").and_then(Value::as_str)
    }
}

pub fn read_records(path: &Path) -> Vec<Rec> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| Rec {
            at: v.get("at").and_then(Value::as_i64).unwrap_or(0),
            path: v
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            accepted: v.get("accepted").and_then(Value::as_bool).unwrap_or(false),
            result_code: v
                .get("result_code")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            body: v.get("body").cloned().unwrap_or(Value::Null),
        })
        .collect()
}

/// Accepted records per (kind, out_order_no).
pub fn accepted_counts(recs: &[Rec]) -> HashMap<(String, String), usize> {
    let mut m = HashMap::new();
    for r in recs.iter().filter(|r| r.accepted) {
        if let Some(o) = r.out_order_no() {
            *m.entry((r.kind().to_string(), o.to_string())).or_insert(0) += 1;
        }
    }
    m
}

pub struct Site {
    pub heartbeat_secs: u64,
    pub total_spaces: i64,
    pub extra_storage: String,
}

impl Default for Site {
    fn default() -> Self {
        Site {
            heartbeat_secs: 30,
            total_spaces: 1000,
            extra_storage: String::new(),
        }
    }
}

/// Writes `dir/site.toml` pointing at `base_url`, with storage in `dir/data`.
pub fn write_site(dir: &Path, base_url: &str, site: &Site) -> PathBuf {
    let text = format!(
        r#"[platform]
base_url = "{base_url}"
app_id = "{APP_ID}"
app_secret = "{SECRET}"
heartbeat_secs = {hb}
connect_timeout_secs = 1
request_timeout_secs = 3

[lot]
parking_lot_no = "{LOT}"
total_spaces = {total}

[storage]
dir = "{data}"
{extra}

[[lanes]]
id = "entry-1"
direction = "entry"
port_no = "E1"

[[lanes]]
id = "exit-1"
direction = "exit"
port_no = "X1"
"#,
        hb = site.heartbeat_secs,
        total = site.total_spaces,
        data = dir.join("data").display(),
        extra = site.extra_storage,
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `parking-bridge run`; SIGKILLed on drop.
pub struct Bridge {
    child: Child,
}

impl Bridge {
    pub fn start(config: &Path, log: &Path) -> Bridge {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .env_remove("PARKING_BRIDGE_APP_SECRET")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn run");
        Bridge { child }
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn try_exit_code(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the CLI with a 30 s deadline (output drained while it runs; killed and
/// failed when late).
pub fn cli(args: &[&str]) -> Output {
    crate::process_common::output_within(
        Command::new(BIN)
            .args(args)
            .env_remove("PARKING_BRIDGE_APP_SECRET"),
        Duration::from_secs(30),
    )
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The arguments of `stay enter`, for tests that add to them or get one wrong.
pub fn stay_enter_args<'a>(
    config: &'a str,
    plate: &'a str,
    color: &'a str,
    lane: &'a str,
) -> Vec<&'a str> {
    vec![
        "stay", "enter", "--config", config, "--plate", plate, "--color", color, "--lane", lane,
    ]
}

/// The arguments of `stay exit`, for tests that get one wrong.
pub fn stay_exit_args<'a>(config: &'a str, plate: &'a str, lane: &'a str) -> Vec<&'a str> {
    vec![
        "stay", "exit", "--config", config, "--plate", plate, "--lane", lane,
    ]
}

/// `stay enter`; returns the out_order_no.
pub fn enter(config: &Path, plate: &str) -> String {
    let out = cli(&stay_enter_args(
        config.to_str().unwrap(),
        plate,
        "pnc_02",
        "entry-1",
    ));
    assert!(out.status.success(), "enter {plate}: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

/// `stay exit`; returns the out_order_no.
pub fn exit(config: &Path, plate: &str) -> String {
    let out = cli(&stay_exit_args(config.to_str().unwrap(), plate, "exit-1"));
    assert!(out.status.success(), "exit {plate}: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

/// A blue-plated car entering by `entry-1` (port E1) now, for tests and benches that
/// fill a store directly rather than through the CLI.
pub fn new_stay(plate: impl Into<String>, snapshot: Option<Vec<u8>>) -> NewStay {
    NewStay {
        plate_no: plate.into(),
        plate_color: PlateColor::Blue,
        car_type: CarType::Normal,
        lane: "entry-1".into(),
        port_no: "E1".into(),
        entered_at: Timestamp::now(),
        operator: None,
        snapshot,
        price: None,
        should_pay: None,
    }
}

/// Leaving by `exit-1` (port X1) now, free of charge and without a photo; callers that
/// charge set the fees with `..exit_details()`.
pub fn exit_details() -> ExitDetails {
    ExitDetails {
        lane: "exit-1".into(),
        port_no: "X1".into(),
        away_time: Timestamp::now(),
        fee: Fee::default(),
        operator: None,
        snapshot: None,
    }
}

/// Polls `check` until it is true or `secs` pass; panics with `what` on timeout.
pub fn wait_until(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks that every stay's first accepted entry comes before its first accepted exit
/// in the record, and returns the number of stays with an accepted entry.
pub fn assert_exits_after_entries(recs: &[Rec]) -> usize {
    let mut entry_at: HashMap<String, usize> = HashMap::new();
    for (i, r) in recs.iter().enumerate().filter(|(_, r)| r.accepted) {
        let Some(o) = r.out_order_no() else { continue };
        match r.kind() {
            "parking" => {
                entry_at.entry(o.to_string()).or_insert(i);
            }
            "away" | "uploadSnapshot" => {
                assert!(
                    entry_at.contains_key(o),
                    "{} of {o} accepted before its entry",
                    r.kind()
                );
            }
            _ => {}
        }
    }
    entry_at.len()
}
