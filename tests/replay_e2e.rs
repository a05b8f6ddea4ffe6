//! Replay reproduces the service. `parking-bridge run` (a child process) counts a lot
//! whose occupancy comes from a Modbus space counter or from a guidance system's MQTT
//! topic, whose exit is priced by a Modbus pay terminal or by the pay system's MQTT fee
//! topic, with Vzenith cameras over a real mosquitto, reporting to
//! `parking-bridge mock-platform` (another child process). After a clean stop,
//! `parking-bridge replay` runs over the service's journal, and every entry and exit it
//! prints, as the platform would receive it, equals the one the platform accepted,
//! field by field (stay numbers compared by identity: the service stamps them with the
//! wall clock of the write, replay with the entry time).

#[path = "driver_common/mod.rs"]
mod driver_common;
#[path = "platform_common/mod.rs"]
mod platform_common;
mod process_common;

use driver_common::Mosquitto;
use parking_bridge::platform::Uplink;
use parking_bridge::report::Report;
use parking_bridge::sim::devices::{SimCamera, SimModbus};
use parking_bridge::time::china_standard_time;
use platform_common::{APP_ID, BIN, MockProcess, SECRET};
use process_common::RunBridge;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const LOT: &str = "P3501";
const TOTAL: i64 = 50;
const COUNTER: u8 = 1;
const TERMINAL: u8 = 5;
const OCCUPANCY_TOPIC: &str = "pgs/P3501/count";
const FEE_TOPIC: &str = "pay/P3501/fees";

/// Where the lot's occupied count comes from.
#[derive(Clone, Copy, Debug)]
enum CountFrom {
    ModbusCounter,
    MqttTopic,
}

fn config(dir: &Path, platform: &str, broker: u16, modbus: &str, from: CountFrom) -> PathBuf {
    let (occupancy, counter) = match from {
        CountFrom::MqttTopic => (
            format!(
                "[lot.occupancy_mqtt]\ntopic = \"{OCCUPANCY_TOPIC}\"\nfield = \"free\"\ncounts = \"free\"\n"
            ),
            String::new(),
        ),
        CountFrom::ModbusCounter => (
            String::new(),
            format!(
                "[[devices]]\nname = \"pgs\"\nprofile = \"generic-guidance-counter\"\ntcp = \"{modbus}\"\n\
                 slave = {COUNTER}\npoll_ms = 50\ndebounce_ms = 100\nroles = {{ free_count = \"free\" }}\n"
            ),
        ),
    };
    let text = format!(
        "[platform]\nbase_url = \"{platform}\"\napp_id = \"{APP_ID}\"\napp_secret = \"{SECRET}\"\n\
         connect_timeout_secs = 1\nrequest_timeout_secs = 2\n\
         [lot]\nparking_lot_no = \"{LOT}\"\ntotal_spaces = {TOTAL}\noccupancy_source = \"external\"\n\
         [lot.tariff]\nhourly_rate = 500\n\
         [lot.fee_mqtt]\ntopic = \"{FEE_TOPIC}\"\n{occupancy}\
         [storage]\ndir = {state:?}\n[http]\nlisten = \"\"\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {broker}\nclient_id = \"bridge-replay\"\n\
         [[lanes]]\nid = \"entry-1\"\ndirection = \"entry\"\nport_no = \"E1\"\nlayout = \"camera_only\"\n\
         [[lanes]]\nid = \"exit-1\"\ndirection = \"exit\"\nport_no = \"X1\"\nlayout = \"camera_only\"\n\
         [[devices]]\nname = \"cam-in\"\nprofile = \"vzenith-mqtt\"\nlane = \"entry-1\"\ncamera_id = \"CAM-IN\"\n\
         [[devices]]\nname = \"cam-out\"\nprofile = \"vzenith-mqtt\"\nlane = \"exit-1\"\ncamera_id = \"CAM-OUT\"\n\
         [[devices]]\nname = \"pay-out\"\nprofile = \"generic-pay-terminal\"\nlane = \"exit-1\"\ntcp = \"{modbus}\"\n\
         slave = {TERMINAL}\npoll_ms = 50\ndebounce_ms = 50\nroles = {{ fee_price = \"charge\", fee_paid = \"paid\" }}\n\
         {counter}",
        state = dir.join("state").display().to_string(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Entries and exits the platform accepted, in order: (path tail, body).
fn delivered(record: &Path) -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(record).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["accepted"] == Value::Bool(true))
        .filter_map(|v| {
            let path = v["path"].as_str()?.to_string();
            (path.ends_with("/barrier/parking") || path.ends_with("/barrier/away"))
                .then(|| (path, v["body"].clone()))
        })
        .collect()
}

fn journal(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("state/journal/events.jsonl")).unwrap_or_default()
}

async fn wait_for(what: &str, log: &Path, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; bridge log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A u32 in two holding registers, high word first (the terminal template's layout).
fn set_u32(sim: &SimModbus, address: u16, value: u32) {
    sim.set_holding(TERMINAL, address, (value >> 16) as u16);
    sim.set_holding(TERMINAL, address + 1, value as u16);
}

/// Stay numbers replaced by the order of their first appearance; the image left out
/// (replay knows only its size).
fn comparable(bodies: Vec<Value>) -> Vec<Value> {
    let mut ids: HashMap<String, usize> = HashMap::new();
    bodies
        .into_iter()
        .map(|mut b| {
            let no = b["out_order_no"].as_str().unwrap_or_default().to_string();
            let n = ids.len();
            b["out_order_no"] = Value::from(*ids.entry(no).or_insert(n));
            if let Some(map) = b.as_object_mut() {
                map.remove("snapshot");
            }
            b
        })
        .collect()
}

async fn run_lot(from: CountFrom) {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    let mock = MockProcess::recording(&record, &["--parking-lot-no", LOT]);
    let broker = Mosquitto::start();
    let sim = SimModbus::new();
    sim.add_slave(COUNTER);
    sim.add_slave(TERMINAL);
    sim.set_input_register(COUNTER, 1, 12);
    let modbus = sim.serve_tcp("127.0.0.1:0").await.unwrap().to_string();
    let config = config(dir.path(), &mock.base_url(), broker.port, &modbus, from);
    let log = dir.path().join("bridge.log");
    let mut bridge = RunBridge::start(platform_common::BIN, &config, &log, "info");
    let cam_in = SimCamera::connect("127.0.0.1", broker.port, "CAM-IN");
    let cam_out = SimCamera::connect("127.0.0.1", broker.port, "CAM-OUT");
    let (pgs, mut ev) = AsyncClient::new(MqttOptions::new("pgs-sim", "127.0.0.1", broker.port), 16);
    tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    let j = dir.path().to_path_buf();
    let journal_has = |needle: &str, n: usize| {
        let text = journal(&j);
        text.matches(needle).count() >= n
    };

    // Both cameras' subscriptions deliver (keep-alives until their link is up), and
    // the feeds' subscription too (its count is retained, so it arrives whenever).
    let free = |n: u16| {
        let (pgs, sim) = (pgs.clone(), &sim);
        async move {
            match from {
                CountFrom::ModbusCounter => sim.set_input_register(COUNTER, 1, n),
                CountFrom::MqttTopic => pgs
                    .publish(
                        OCCUPANCY_TOPIC,
                        QoS::AtLeastOnce,
                        true,
                        format!("{{\"free\":{n}}}"),
                    )
                    .await
                    .unwrap(),
            }
        }
    };
    free(12).await;
    // A camera's link comes up on its first message after the subscription landed.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let up = |c: &str| {
            text.lines().any(|l| {
                l.contains("camera link changed") && l.contains("up=true") && l.contains(c)
            })
        };
        if up("cam-in") && up("cam-out") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "camera links never came up:\n{text}"
        );
        let _ = cam_in.keep_alive().await;
        let _ = cam_out.keep_alive().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for("the first count", &log, || journal_has("\"value\":12", 1)).await;

    let reports = |n: usize| {
        let record = record.clone();
        move || delivered(&record).len() >= n
    };
    // Two cars in.
    cam_in
        .publish_plate("闽A12345", 1, None, false)
        .await
        .unwrap();
    wait_for("entry 1", &log, reports(1)).await;
    cam_in
        .publish_plate("闽B54321", 1, None, false)
        .await
        .unwrap();
    wait_for("entry 2", &log, reports(2)).await;
    // The pay system took 10.00 of 12.00 for the second car.
    pgs.publish(
        FEE_TOPIC,
        QoS::AtLeastOnce,
        false,
        r#"{"plate_no":"闽B54321","price":1200,"paid_fee":1000}"#,
    )
    .await
    .unwrap();
    wait_for("the payment", &log, || journal_has("\"payment\"", 1)).await;
    // The exit terminal shows 8.00 for the first car, paid in full; it leaves.
    set_u32(&sim, 2, 800);
    set_u32(&sim, 0, 800);
    wait_for("the terminal's charge", &log, || {
        journal_has("\"price\":800", 1)
    })
    .await;
    cam_out
        .publish_plate("闽A12345", 1, None, false)
        .await
        .unwrap();
    wait_for("exit 1", &log, reports(3)).await;
    // The second car: the terminal's charge was the first car's; the payment prices it.
    cam_out
        .publish_plate("闽B54321", 1, None, false)
        .await
        .unwrap();
    wait_for("exit 2", &log, reports(4)).await;
    // The guidance system recounts: 20 free; a third car enters, then leaves unpaid.
    free(20).await;
    wait_for("the recount", &log, || journal_has("\"value\":20", 1)).await;
    cam_in
        .publish_plate("粤C00001", 2, None, false)
        .await
        .unwrap();
    wait_for("entry 3", &log, reports(5)).await;
    cam_out
        .publish_plate("粤C00001", 2, None, false)
        .await
        .unwrap();
    wait_for("exit 3", &log, reports(6)).await;
    assert!(bridge.stop(), "the bridge stops cleanly");
    assert!(sim.forbidden_requests().is_empty(), "the bridge only reads");

    let sent = delivered(&record);
    // What the lot's systems said reached the reports.
    let exits: Vec<&Value> = sent
        .iter()
        .filter(|(p, _)| p.ends_with("/barrier/away"))
        .map(|(_, b)| b)
        .collect();
    let fee = |b: &Value| (b["price"].as_i64(), b["paid_fee"].as_i64());
    assert_eq!(
        fee(exits[0]),
        (Some(800), Some(800)),
        "the terminal's charge"
    );
    assert_eq!(
        fee(exits[1]),
        (Some(1200), Some(1000)),
        "the pay system's payment"
    );
    assert_eq!(
        sent[0].1["free_spaces"].as_i64(),
        Some(11),
        "the count, less one"
    );
    assert_eq!(
        sent[4].1["free_spaces"].as_i64(),
        Some(19),
        "the recount, less one"
    );

    let out = Command::new(BIN)
        .args(["replay", "--config"])
        .arg(&config)
        .arg("--events")
        .arg(dir.path().join("state/journal/events.jsonl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Report>(l).ok())
        .filter(|r| matches!(r, Report::Entry(_) | Report::Exit(_)))
        .map(|r| {
            let u = Uplink::from_report(&r, LOT, None, china_standard_time()).unwrap();
            serde_json::from_slice(&u.to_json()).unwrap()
        })
        .collect();
    let sent: Vec<Value> = sent.into_iter().map(|(_, b)| b).collect();
    assert_eq!(
        comparable(replayed),
        comparable(sent),
        "{from:?}: replayed reports differ from the delivered ones"
    );
    drop(mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_the_journal_reports_what_the_service_delivered_with_a_modbus_counter() {
    run_lot(CountFrom::ModbusCounter).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_the_journal_reports_what_the_service_delivered_with_an_occupancy_topic() {
    run_lot(CountFrom::MqttTopic).await;
}
