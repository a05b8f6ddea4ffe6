//! Camera HTTP push end to end with real processes: `parking-bridge run` (a child
//! process) receives pushes over real HTTP from clients here, in each vendor's
//! format, and reports to `parking-bridge mock-platform` (another child process),
//! whose record file is what is asserted.

#[path = "platform_common/mod.rs"]
mod platform_common;
#[path = "process_common/mod.rs"]
mod process_common;

use chrono::{FixedOffset, Utc};
use parking_bridge::driver::camera::samples;
use parking_bridge::sim::devices::SimModbus;
use platform_common::{APP_ID, MockProcess, SECRET};
use process_common::RunBridge;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LOT: &str = "P3501";
const TOKEN: &str = "dahua-lane-token-0001";

fn cst() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until the push receiver accepts connections.
async fn wait_listening(port: u16, bridge: &mut RunBridge, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if let Ok(Some(status)) = Ok::<_, ()>(bridge.exited()) {
            panic!(
                "the bridge exited ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "push receiver not listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn config(dir: &Path, platform: &str, push_port: u16, lanes_and_devices: &str) -> PathBuf {
    let t = format!(
        "[platform]\nbase_url = \"{platform}\"\napp_id = \"{APP_ID}\"\napp_secret = \"{SECRET}\"\n\
         connect_timeout_secs = 1\nrequest_timeout_secs = 2\n\n\
         [lot]\nparking_lot_no = \"{LOT}\"\ntotal_spaces = 500\n\n\
         [storage]\ndir = {:?}\n\n[http]\nlisten = \"\"\n\n\
         [camera_push]\nlisten = \"127.0.0.1:{push_port}\"\n\n{lanes_and_devices}",
        dir.join("state").display().to_string()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, t).unwrap();
    path
}

/// Accepted entries in the order the platform accepted them: (plate, parking_time).
/// An entry accepted twice fails the test.
fn entries(record: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(record).unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["accepted"] != Value::Bool(true)
            || !v["path"]
                .as_str()
                .unwrap_or_default()
                .ends_with("/barrier/parking")
        {
            continue;
        }
        let body = &v["body"];
        let order = body["out_order_no"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(seen.insert(order), "an entry accepted twice: {line}");
        out.push((
            body["plate_no"].as_str().unwrap_or_default().to_string(),
            body["parking_time"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ));
    }
    out
}

async fn wait_entries(record: &Path, n: usize, log: &Path) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = entries(record);
        if got.len() >= n {
            // A little longer: nothing more (no duplicate) must come.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return entries(record);
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} entries reached the platform: {got:?}\n{}",
            got.len(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn camera_only_lane(id: &str, port: &str) -> String {
    format!(
        "[[lanes]]\nid = \"{id}\"\ndirection = \"entry\"\nport_no = \"{port}\"\nlayout = \"camera_only\"\n\n"
    )
}

fn push_camera(name: &str, profile: &str, lane: &str, id: &str, binding: &str) -> String {
    format!(
        "[[devices]]\nname = \"{name}\"\nprofile = \"{profile}\"\nlane = \"{lane}\"\ncamera_id = \"{id}\"\nhttp_push = true\n{binding}\n\n"
    )
}

#[tokio::test]
async fn every_vendors_push_to_the_running_service_reaches_the_platform_as_an_entry() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    let mock = MockProcess::recording(&record, &["--parking-lot-no", LOT]);
    let port = free_port();
    let mut devices = String::new();
    for (i, (vendor, profile)) in [
        ("hik", "hikvision-isapi-anpr"),
        ("dahua", "dahua-itc-tollgate"),
        ("qianyi", "qianyi-alarminfoplate"),
        ("vz", "vzenith-legacy-alarminfoplate"),
    ]
    .iter()
    .enumerate()
    {
        let lane = format!("entry-{}", i + 1);
        devices.push_str(&camera_only_lane(&lane, &format!("E{}", i + 1)));
        let binding = match *vendor {
            "dahua" => format!("token = \"{TOKEN}\""),
            "qianyi" => "source = \"127.0.0.4\"".to_string(),
            "vz" => "token = \"vz-token-0123456789\"".to_string(),
            _ => "source = \"127.0.0.1\"".to_string(),
        };
        devices.push_str(&push_camera(vendor, profile, &lane, vendor, &binding));
    }
    let config = config(dir.path(), &mock.base_url(), port, &devices);
    let log = dir.path().join("bridge.log");
    let mut bridge = RunBridge::start(platform_common::BIN, &config, &log, "warn");
    wait_listening(port, &mut bridge, &log).await;

    let now = Utc::now().with_timezone(&cst());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let xml = samples::hikvision_anpr_xml("京A10001", "blue", &now.to_rfc3339());
    let (ct, body) = samples::hikvision_multipart(&xml, Some(b"\xff\xd8scene\xff\xd9"), None);
    let r = http
        .post(format!("{base}/ISAPI/Event/notification"))
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, String::new())
    );
    let dahua = samples::dahua_tollgate(
        "浙A10002",
        "Yellow",
        &now.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        None,
    );
    let r = http
        .post(format!(
            "{base}/camera/dahua/token/{TOKEN}/NotificationInfo/TollgateInfo"
        ))
        .body(dahua)
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("\"Result\":true"));
    let qianyi = samples::qianyi_alarm_info_plate("粤B10003", 6, now.timestamp(), false, None);
    let from_4 = reqwest::Client::builder()
        .no_proxy()
        .local_address("127.0.0.4".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let r = from_4
        .post(format!("{base}/camera/qianyi/plate"))
        .body(qianyi)
        .send()
        .await
        .unwrap();
    let answer = r.text().await.unwrap();
    assert!(answer.contains("\"info\":\"no\""), "{answer}");
    let vz = samples::vzenith_alarm_info_plate("苏E10004", 5, 1, None);
    let r = http
        .post(format!("{base}/camera/vz/plate?token=vz-token-0123456789"))
        .body(vz)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "{}");

    let mut got: Vec<String> = wait_entries(&record, 4, &log)
        .await
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    got.sort();
    assert_eq!(got, ["京A10001", "浙A10002", "粤B10003", "苏E10004"]);
    assert!(bridge.stop(), "the bridge stops cleanly");
    drop(mock);
}

#[tokio::test]
async fn fifty_late_pushes_after_a_restart_reach_the_platform_once_in_time_order_and_none_joins_a_live_vehicle()
 {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    let mock = MockProcess::recording(&record, &["--parking-lot-no", LOT]);
    let port = free_port();
    // entry-2: a loop lane (simulated I/O module) with a Dahua push camera.
    let modbus = SimModbus::new();
    modbus.add_slave(1);
    modbus.set_input(1, 3, true); // gate closed
    let io = modbus.serve_tcp("127.0.0.1:0").await.unwrap();
    let mut devices = camera_only_lane("entry-1", "E1");
    devices.push_str(&push_camera(
        "hik",
        "hikvision-isapi-anpr",
        "entry-1",
        "hik",
        "source = \"127.0.0.1\"",
    ));
    devices.push_str(&format!(
        "[[lanes]]\nid = \"entry-2\"\ndirection = \"entry\"\nport_no = \"E2\"\n\n\
         [[devices]]\nname = \"io\"\nprofile = \"generic-modbus-tcp-di-gateway\"\nlane = \"entry-2\"\ntcp = \"{io}\"\n\
         slave = 1\npoll_ms = 20\ndebounce_ms = 40\n\
         roles = {{ loop_a = \"di1\", loop_b = \"di2\", gate_open = \"di3\", gate_closed = \"di4\" }}\n\n"
    ));
    devices.push_str(&push_camera(
        "dahua",
        "dahua-itc-tollgate",
        "entry-2",
        "dahua",
        &format!("token = \"{TOKEN}\""),
    ));
    let config = config(dir.path(), &mock.base_url(), port, &devices);
    let log = dir.path().join("bridge.log");
    // The bridge ran, and stopped (the outage the cameras bridge with their stores).
    let mut bridge = RunBridge::start(platform_common::BIN, &config, &log, "warn");
    wait_listening(port, &mut bridge, &log).await;
    assert!(bridge.stop());
    let mut bridge = RunBridge::start(platform_common::BIN, &config, &log, "warn");
    wait_listening(port, &mut bridge, &log).await;
    let polled = modbus.request_count(1);
    while modbus.request_count(1) < polled + 5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    // A car stands on loop A of the loop lane while the backlogs arrive.
    modbus.set_input(1, 0, true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let now = Utc::now().with_timezone(&cst());
    let late_dahua = samples::dahua_tollgate(
        "浙Z99999",
        "Blue",
        &(now - chrono::Duration::hours(1))
            .format("%Y-%m-%d %H:%M:%S%.3f")
            .to_string(),
        None,
    );
    let r = http
        .post(format!(
            "{base}/camera/dahua/token/{TOKEN}/NotificationInfo/TollgateInfo"
        ))
        .body(late_dahua)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The camera-only lane's camera pushes the 50 recognitions it stored, oldest
    // first, one a minute three hours ago.
    let start = now - chrono::Duration::hours(3);
    let mut expected = Vec::new();
    for i in 0..50 {
        let made = start + chrono::Duration::minutes(i);
        let plate = format!("京H{:05}", 10_000 + i);
        let xml = samples::hikvision_anpr_xml(&plate, "blue", &made.to_rfc3339());
        let (ct, body) = samples::hikvision_multipart(&xml, Some(b"\xff\xd8scene\xff\xd9"), None);
        let r = http
            .post(format!("{base}/ISAPI/Event/notification"))
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "push {i}");
        expected.push((plate, made.format("%Y-%m-%d %H:%M:%S").to_string()));
    }
    // The car on the loop lane passes without a live read.
    for (bit, on) in [(1, true), (0, false), (1, false)] {
        modbus.set_input(1, bit, on);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let got = wait_entries(&record, 51, &log).await;
    assert_eq!(got.len(), 51, "{got:?}");
    let late: Vec<_> = got
        .iter()
        .filter(|(p, _)| p.starts_with("京H"))
        .cloned()
        .collect();
    assert_eq!(
        late, expected,
        "each once, accepted by the platform in time order, at the camera's time"
    );
    let loop_lane: Vec<_> = got.iter().filter(|(p, _)| !p.starts_with("京H")).collect();
    assert_eq!(loop_lane.len(), 1);
    assert_eq!(
        loop_lane[0].0, "无牌车",
        "the old read did not join the car in the lane"
    );
    // The journal flags what came late.
    let journal =
        std::fs::read_to_string(dir.path().join("state/journal/events.jsonl")).unwrap_or_default();
    let flagged = journal
        .lines()
        .filter(|l| l.contains("\"late\":true"))
        .count();
    assert_eq!(flagged, 51, "50 late pushes and the loop lane's late read");
    assert!(bridge.stop());
    drop(mock);
}
