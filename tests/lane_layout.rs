//! No silent lanes (real processes): `check` names a layout the devices cannot serve;
//! a camera-only lane configured without a layout reports its entries through HTTP
//! push and through MQTT (mosquitto) to `mock-platform`; loops bound to the wrong lane
//! raise both lanes' warnings on the status page, `/healthz` and `/metrics`; a push with
//! a scene and a plate crop reports the scene.

mod driver_common;
mod process_common;
mod store_common;

use driver_common::Mosquitto;
use parking_bridge::driver::camera::samples;
use parking_bridge::plate::PlateColor;
use parking_bridge::sim::devices::{SimCamera, SimModbus};
use process_common::Guard;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use store_common::{APP_ID, BIN, LOT, Mock, Rec, SECRET};

/// The top of a site config reporting to `platform`, status page on `http_port` (0: any
/// free port, read back from the log with [`logged_port`]).
fn site_top(dir: &Path, platform: &str, http_port: u16) -> String {
    format!(
        "[platform]\nbase_url = \"{platform}\"\napp_id = \"{APP_ID}\"\napp_secret = \"{SECRET}\"\n\
         connect_timeout_secs = 1\nrequest_timeout_secs = 2\n\n\
         [lot]\nparking_lot_no = \"{LOT}\"\ntotal_spaces = 100\n\n\
         [storage]\ndir = \"{}\"\n\n\
         [http]\nlisten = \"127.0.0.1:{http_port}\"\nrequire_clock_sync = false\ndisk_full_percent = 100\n\n",
        dir.join("state").display()
    )
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("site.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `parking-bridge run --config PATH`, killed when the test ends.
fn start_bridge(config: &Path, dir: &Path) -> Guard {
    let log = std::fs::File::create(dir.join("run.log")).unwrap();
    Guard(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .env_remove("PARKING_BRIDGE_APP_SECRET")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn parking-bridge run"),
    )
}

/// Polls `f` every 100 ms for up to `secs`; fails with `what` and the bridge log.
async fn wait_until(dir: &Path, secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("run.log")).unwrap_or_default();
            panic!("timed out waiting for {what}\n--- bridge log ---\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The port the bridge logged for `what` (`status page, /metrics` or `camera push
/// receiver`): listeners bind port 0 and say where they listen.
async fn logged_port(dir: &Path, what: &str) -> u16 {
    let mut port = 0;
    wait_until(dir, 30, what, || {
        let log = std::fs::read_to_string(dir.join("run.log")).unwrap_or_default();
        port = log
            .lines()
            .filter(|l| l.contains(what))
            .flat_map(str::split_whitespace)
            .find_map(|w| w.strip_prefix("addr="))
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(0);
        port != 0
    })
    .await;
    port
}

/// GET `http://127.0.0.1:port/path` → (status, body); `None` while nothing listens.
async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let resp = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.ok()?))
}

/// POSTs a camera push until the receiver answers 200 (it may still be starting).
async fn push(dir: &Path, port: u16, camera: &str, body: &str) {
    let url = format!("http://127.0.0.1:{port}/camera/{camera}/plate");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.post(&url).body(body.to_string()).send().await {
            Ok(r) if r.status() == 200 => return,
            other => {
                if Instant::now() > deadline {
                    let log = std::fs::read_to_string(dir.join("run.log")).unwrap_or_default();
                    panic!("push to {url} failed: {other:?}\n{log}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn accepted_entry<'a>(recs: &'a [Rec], plate: &str) -> Option<&'a Rec> {
    recs.iter()
        .find(|r| r.kind() == "parking" && r.accepted && r.body["plate_no"] == plate)
}

fn check(config: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["check", "--config"])
        .arg(config)
        .env_remove("PARKING_BRIDGE_APP_SECRET")
        .output()
        .unwrap()
}

const PUSH_CAMERA: &str = "[[devices]]\nname = \"entry-cam\"\nprofile = \"vzenith-legacy-alarminfoplate\"\n\
                           lane = \"entry-1\"\ncamera_id = \"cam1\"\nhttp_push = true\nsource = \"127.0.0.1\"\n";

#[test]
fn check_lists_a_camera_only_lane_and_refuses_a_layout_its_camera_cannot_serve() {
    let dir = tempfile::tempdir().unwrap();
    let top = site_top(dir.path(), "https://x", 9108);
    let lanes = "[camera_push]\nlisten = \"127.0.0.1:8089\"\n\
                 [[lanes]]\nid = \"entry-1\"\ndirection = \"entry\"\nport_no = \"E1\"\n\
                 [[lanes]]\nid = \"exit-1\"\ndirection = \"exit\"\nport_no = \"X1\"\n";
    let config = write(dir.path(), &format!("{top}{lanes}{PUSH_CAMERA}"));
    let out = check(&config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("lane entry-1 (entry): camera_only, derived from its devices (camera)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("lane exit-1 (exit): manual lane, no device"),
        "{stdout}"
    );

    let text = format!("{top}{lanes}{PUSH_CAMERA}").replace(
        "port_no = \"E1\"\n",
        "port_no = \"E1\"\nlayout = \"loops_gate\"\n",
    );
    let config = write(dir.path(), &text);
    let out = check(&config);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .position(|l| l.starts_with("layout = "))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!(
            "site.toml:{line}: lanes[0].layout: lane \"entry-1\": layout \"loops_gate\" needs loop_a, loop_b, \
             a gate position (gate_open, gate_closed or gate_status), which no device of the lane binds; \
             its devices (camera) can serve layout = \"camera_only\""
        )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_only_lane_without_a_layout_reports_pushed_entries_with_the_scene() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(&dir.path().join("record.jsonl"), &[]);
    let text = format!(
        "{}[camera_push]\nlisten = \"127.0.0.1:0\"\n\
         [[lanes]]\nid = \"entry-1\"\ndirection = \"entry\"\nport_no = \"E1\"\n{PUSH_CAMERA}",
        site_top(dir.path(), &mock.base_url(), 0)
    );
    let config = write(dir.path(), &text);
    let _bridge = start_bridge(&config, dir.path());
    let push_port = logged_port(dir.path(), "camera push receiver listening").await;

    // A crop-only push (as the issue's installer's camera sent) still reports.
    let body = samples::vzenith_alarm_info_plate("浙A12345", 1, 1, None);
    push(dir.path(), push_port, "cam1", &body).await;
    wait_until(dir.path(), 30, "the pushed entry at the platform", || {
        accepted_entry(&mock.records(), "浙A12345").is_some()
    })
    .await;

    // Scene and crop: the scene is what the platform gets.
    let scene =
        parking_bridge::sim::picture::snapshot_jpeg(1920, 1080, PlateColor::Blue, 7).unwrap();
    let crop = parking_bridge::sim::picture::snapshot_jpeg(240, 80, PlateColor::Blue, 8).unwrap();
    let body = samples::vzenith_alarm_info_plate_full(
        samples::VZENITH_SERIAL,
        "浙B67890",
        1,
        1,
        Some(&scene),
        Some(&crop),
    );
    push(dir.path(), push_port, "cam1", &body).await;
    let mut out_order_no = String::new();
    wait_until(
        dir.path(),
        30,
        "the entry with the scene",
        || match accepted_entry(&mock.records(), "浙B67890") {
            Some(r) => {
                out_order_no = r.out_order_no().unwrap_or_default().to_string();
                true
            }
            None => false,
        },
    )
    .await;
    let mut snapshot = serde_json::Value::Null;
    wait_until(dir.path(), 30, "the scene's snapshot", || {
        let recs = mock.records();
        match recs.iter().find(|r| {
            r.kind() == "uploadSnapshot" && r.accepted && r.out_order_no() == Some(&out_order_no)
        }) {
            Some(r) => {
                snapshot = r.body["snapshot"].clone();
                true
            }
            None => false,
        }
    })
    .await;
    let (w, h) = (
        snapshot["width"].as_u64().unwrap_or(0),
        snapshot["height"].as_u64().unwrap_or(0),
    );
    // The scene's 16:9 frame (re-encoded under the size limit), not the 3:1 crop.
    assert!(w >= 1280 && w * 9 == h * 16, "reported {w}×{h}: {snapshot}");
    assert_eq!(
        (w, h),
        (1920, 1080),
        "a 1080p scene fits the limit as it is"
    );

    // The crop stays in the journal only.
    let journal_dir = dir.path().join("state").join("journal");
    let journal: String = std::fs::read_dir(&journal_dir)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .collect();
    let line = journal
        .lines()
        .find(|l| l.contains("浙B67890"))
        .expect("the read is journalled");
    assert!(
        line.contains("\"crop\":\"") && line.contains(&format!("\"crop_len\":{}", crop.len())),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_only_lane_without_a_layout_reports_mqtt_entries() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start();
    let mock = Mock::start(&dir.path().join("record.jsonl"), &[]);
    let text = format!(
        "{}[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"bridge-layout\"\n\
         [[lanes]]\nid = \"entry-1\"\ndirection = \"entry\"\nport_no = \"E1\"\n\
         [[devices]]\nname = \"entry-cam\"\nprofile = \"vzenith-mqtt\"\nlane = \"entry-1\"\ncamera_id = \"SN-1\"\n",
        site_top(dir.path(), &mock.base_url(), 0),
        broker.port
    );
    let config = write(dir.path(), &text);
    let _bridge = start_bridge(&config, dir.path());
    let camera = SimCamera::connect("127.0.0.1", broker.port, "SN-1");
    // The bridge subscribes some time after it starts: repeat the read until it
    // arrives (the lane drops repeats of one plate, so one entry is reported).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        camera
            .publish_plate("浙A12345", 1, None, false)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        if accepted_entry(&mock.records(), "浙A12345").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.path().join("run.log")).unwrap_or_default();
            panic!("no entry reported\n{log}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loops_bound_to_the_wrong_lane_raise_the_warning_after_five_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(&dir.path().join("record.jsonl"), &[]);
    // Two I/O modules on one gateway; their `lane`s are swapped: the entry lane's
    // loops report as exit-1.
    let modbus = SimModbus::new();
    for slave in [1, 2] {
        modbus.add_slave(slave);
        modbus.set_input(slave, 3, true); // gate closed
    }
    let addr = modbus.serve_tcp("127.0.0.1:0").await.unwrap();
    let io = |name: &str, lane: &str, slave: u8| {
        format!(
            "[[devices]]\nname = \"{name}\"\nprofile = \"generic-modbus-tcp-di-gateway\"\nlane = \"{lane}\"\n\
             tcp = \"{addr}\"\nslave = {slave}\npoll_ms = 50\n\
             roles = {{ loop_a = \"di1\", loop_b = \"di2\", gate_open = \"di3\", gate_closed = \"di4\" }}\n"
        )
    };
    let text = format!(
        "{}[camera_push]\nlisten = \"127.0.0.1:0\"\n\
         [[lanes]]\nid = \"entry-1\"\ndirection = \"entry\"\nport_no = \"E1\"\n\
         [[lanes]]\nid = \"exit-1\"\ndirection = \"exit\"\nport_no = \"X1\"\n{PUSH_CAMERA}{}{}\
         [[devices]]\nname = \"exit-cam\"\nprofile = \"vzenith-legacy-alarminfoplate\"\n\
         lane = \"exit-1\"\ncamera_id = \"cam2\"\nhttp_push = true\nsource = \"127.0.0.1\"\n",
        site_top(dir.path(), &mock.base_url(), 0),
        io("entry-io", "exit-1", 1),
        io("exit-io", "entry-1", 2),
    );
    let config = write(dir.path(), &text);
    let out = check(&config);
    assert!(
        out.status.success(),
        "the swap is invisible to check: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _bridge = start_bridge(&config, dir.path());
    let http = logged_port(dir.path(), "status page, /metrics and /healthz listening").await;
    let push_port = logged_port(dir.path(), "camera push receiver listening").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(http, "/healthz").await != Some((200, "ok\n".to_string())) {
        assert!(Instant::now() < deadline, "never healthy at start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Five cars enter: each is read by the entry camera and drives over the entry
    // loops, which the config gives to exit-1.
    let plates = ["浙A10001", "浙A10002", "浙A10003", "浙A10004", "浙A10005"];
    for (i, plate) in plates.iter().enumerate() {
        let body = samples::vzenith_alarm_info_plate(plate, 1, 1, None);
        push(dir.path(), push_port, "cam1", &body).await;
        for (di, on) in [(0, true), (1, true), (0, false), (1, false)] {
            modbus.set_input(1, di, on);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if i == 3 {
            let (status, body) = get(http, "/healthz").await.unwrap();
            assert_eq!(
                (status, body.as_str()),
                (200, "ok\n"),
                "four reads are not yet a pattern"
            );
        }
    }

    // exit-1's loops (really the entry's) passed five vehicles its camera never read;
    // each is decided once the late-plate window (3 s) has passed.
    let deadline = Instant::now() + Duration::from_secs(15);
    let healthz = loop {
        match get(http, "/healthz").await {
            // Degraded, not failing: the bridge still serves its other lanes.
            Some((200, body)) if body.starts_with("degraded\n") && body.contains("lane exit-1") => {
                break body;
            }
            other => assert!(Instant::now() < deadline, "not degraded: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        healthz.contains(
            "lane exit-1: 5 vehicles without a plate read: camera aimed at the wrong lane"
        ),
        "{healthz}"
    );
    assert!(
        healthz.contains("lane entry-1: 5 plate reads without a passage: loops not wired or bound"),
        "{healthz}"
    );
    let (_, page) = get(http, "/").await.unwrap();
    let card = page
        .split("id=\"lane-entry-1\"")
        .nth(1)
        .and_then(|c| c.split("id=\"lane-exit-1\"").next())
        .expect("the entry lane's card");
    assert!(
        card.contains("5 plate reads without a passage: loops not wired or bound to this lane"),
        "{card}"
    );
    assert!(card.contains("loops_gate"), "{card}");
    let (_, metrics) = get(http, "/metrics").await.unwrap();
    for (lane, reason) in [
        ("entry-1", "reads_without_passages"),
        ("exit-1", "vehicles_without_reads"),
    ] {
        assert!(
            metrics.contains(&format!(
                "parking_bridge_lane_mismatch{{lane=\"{lane}\",reason=\"{reason}\"}} 1"
            )),
            "{metrics}"
        );
    }
    let log = std::fs::read_to_string(dir.path().join("run.log")).unwrap();
    assert!(
        log.contains("lane warning") && log.contains("reads_without_passages"),
        "{log}"
    );
    // No entry reached the platform: the lane was silent, and now says so.
    assert!(
        plates
            .iter()
            .all(|p| accepted_entry(&mock.records(), p).is_none())
    );
}

/// The README's complete examples load as they are, with the layout they promise.
#[test]
fn readme_camera_only_and_gate_only_examples_are_complete_site_configs() {
    use parking_bridge::config::lanes::DetectionLayout;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for (marker, lane, layout) in [
        (
            "# Example: a camera-only lane\n",
            "entry-1",
            DetectionLayout::CameraOnly,
        ),
        (
            "# Example: a gate-only lane\n",
            "exit-1",
            DetectionLayout::GateOnly,
        ),
    ] {
        let block = readme
            .split(marker)
            .nth(1)
            .and_then(|b| b.split("```").next())
            .unwrap_or_else(|| panic!("README has {marker:?}"));
        let config = parking_bridge::config::SiteConfig::from_toml(block, Path::new("README.md"))
            .unwrap_or_else(|e| panic!("{marker}: {e}"));
        parking_bridge::driver::load_profiles(&config).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.lane(lane).unwrap().layout, layout, "{marker}");
        let summary = parking_bridge::config::lanes::LaneSummary::of(
            config.lane(lane).unwrap(),
            &config.devices,
        );
        assert!(
            summary.warnings.is_empty(),
            "{marker}: {:?}",
            summary.warnings
        );
    }
}
