//! MQTT camera driver against a real mosquitto started by the test: every shipped
//! camera profile's sample payload is published and decoded.

mod driver_common;

use driver_common::*;
use parking_bridge::driver::camera::samples;
use parking_bridge::driver::{load_profiles, metrics, spawn_all};
use parking_bridge::event::{EventKind, RawEvent};
use parking_bridge::plate::PlateColor;
use parking_bridge::sim::devices::SimCamera;
use parking_bridge::time::Timestamp;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

fn cameras(port: u16, client_id: &str) -> parking_bridge::config::SiteConfig {
    site_config(
        "",
        &format!(
            "[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nclient_id = \"{client_id}\"\n\
             [[devices]]\nname = \"cam-vz\"\nprofile = \"vzenith-mqtt\"\nlane = \"entry-1\"\ncamera_id = \"265e1040-85e01fb7\"\n\
             [[devices]]\nname = \"cam-legacy\"\nprofile = \"vzenith-legacy-alarminfoplate\"\nlane = \"exit-1\"\ncamera_id = \"old1\"\ntopic = \"gw/old1/plate\"\n\
             [[devices]]\nname = \"cam-hx\"\nprofile = \"hx-mqtt\"\nlane = \"exit-1\"\ncamera_id = \"hx7\"\n"
        ),
    )
}

fn publisher(port: u16, id: &str) -> AsyncClient {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut ev) = AsyncClient::new(o, 16);
    tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    client
}

fn plate(ev: &RawEvent) -> Option<&parking_bridge::event::PlateRead> {
    match &ev.kind {
        EventKind::Plate(p) => Some(p),
        _ => None,
    }
}

async fn start(port: u16, client_id: &str) -> (mpsc::Receiver<RawEvent>, watch::Sender<bool>) {
    let config = cameras(port, client_id);
    let profiles = load_profiles(&config).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let (stop, shutdown) = watch::channel(false);
    let drivers = spawn_all(&config, &profiles, tx, shutdown).await.unwrap();
    assert_eq!(drivers.names(), vec!["mqtt"]);
    let probe = publisher(port, &format!("{client_id}-probe"));
    until_subscribed(&mut rx, "cam-vz", &probe, "265e1040-85e01fb7").await;
    (rx, stop)
}

/// Waits until the bridge's subscription has landed: keep-alives for `camera_id` are
/// published every 100 ms until the driver reports `device`'s link up (the first
/// message it receives does that). All topics are subscribed in one packet, so one
/// delivered topic means all are. A condition, not a fixed sleep: fast when idle,
/// still right on a loaded machine. Consumes the events seen until then.
async fn until_subscribed(
    rx: &mut mpsc::Receiver<RawEvent>,
    device: &str,
    client: &AsyncClient,
    camera_id: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let topic = format!("device/{camera_id}/message/up/keep_alive");
    loop {
        let body = format!(r#"{{"sn":"{camera_id}","name":"keep_alive","timestamp":1}}"#);
        client
            .publish(&topic, QoS::AtMostOnce, false, body.into_bytes())
            .await
            .unwrap();
        let until = tokio::time::Instant::now() + Duration::from_millis(100);
        while let Ok(Some(ev)) = tokio::time::timeout_at(until, rx.recv()).await {
            if ev.device == device && matches!(ev.kind, EventKind::Link { up: true }) {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bridge's MQTT subscription never delivered a keep-alive for {device}"
        );
    }
}

/// A read the camera sent while the bridge was away is held by the broker for the
/// bridge's kept session and delivered at reconnect: it arrives marked late, at the
/// camera's time, so no lane gives it to the next vehicle. A read made after the
/// reconnect is live.
#[tokio::test]
async fn a_read_the_broker_held_while_the_bridge_was_away_arrives_late() {
    let broker = Mosquitto::start();
    let (rx, stop) = start(broker.port, "bridge-held").await;
    stop.send(true).unwrap();
    drop(rx);
    let cam = SimCamera::connect("127.0.0.1", broker.port, "265e1040-85e01fb7");
    let made = Timestamp::now().plus_millis(-5_000);
    let held =
        samples::vzenith_ivs_result_made("265e1040-85e01fb7", "闽A54321", 1, None, None, made);
    cam.publish_raw("ivs_result", held.into_bytes())
        .await
        .unwrap();
    let (mut rx, _stop) = start(broker.port, "bridge-held").await;
    let within = Duration::from_secs(5);
    let (ev, _) = wait_for(&mut rx, within, |e| plate(e).is_some()).await;
    let p = plate(&ev).unwrap();
    assert_eq!(p.text.as_deref(), Some("闽A54321"));
    assert!(p.late, "a held read must arrive late: {p:?}");
    assert_eq!(
        p.device_time.map(|t| t.millis() / 1000),
        Some(made.millis() / 1000)
    );
    cam.publish_plate("闽A65432", 1, None, false).await.unwrap();
    let (ev, _) = wait_for(&mut rx, within, |e| plate(e).is_some()).await;
    let p = plate(&ev).unwrap();
    assert_eq!((p.text.as_deref(), p.late), (Some("闽A65432"), false));
}

#[tokio::test]
async fn every_camera_profile_sample_is_decoded_from_a_real_broker() {
    let broker = Mosquitto::start();
    let (mut rx, _stop) = start(broker.port, "bridge-decode").await;
    let within = Duration::from_secs(5);
    let reads = |cam: &str| metrics::PLATE_READS.with_label_values(&[cam]).get();
    let reads_before = (reads("cam-vz"), reads("cam-legacy"), reads("cam-hx"));

    let cam = SimCamera::connect("127.0.0.1", broker.port, "265e1040-85e01fb7");
    cam.publish_plate("闽A12345", 1, Some(&[0xFF, 0xD8, 0xFF, 0xD9]), true)
        .await
        .unwrap();
    let (ev, _) = wait_for(&mut rx, within, |e| plate(e).is_some_and(|p| p.quick)).await;
    let p = plate(&ev).unwrap();
    assert_eq!(
        (ev.device.as_str(), ev.lane.as_str()),
        ("cam-vz", "entry-1")
    );
    assert_eq!(p.text.as_deref(), Some("闽A12345"));
    assert_eq!(p.color, PlateColor::Blue);
    assert_eq!(p.image_len, Some(4));
    cam.publish_plate("闽A12345", 1, None, false).await.unwrap();
    let (ev, _) = wait_for(&mut rx, within, |e| plate(e).is_some_and(|p| !p.quick)).await;
    // The simulated camera's clock is right: its time is believed, the read is live.
    let full = plate(&ev).unwrap();
    let made = full.device_time.expect("the camera's time").millis();
    assert!((Timestamp::now().millis() - made).abs() < 5_000, "{made}");
    assert!(!full.late && !full.clock_skew);
    // The same full result again (QoS 1 redelivery, repeated push) is dropped.
    cam.publish_plate("闽A12345", 1, None, false).await.unwrap();
    cam.keep_alive().await.unwrap();

    let client = publisher(broker.port, "test-pub");
    let legacy = samples::vzenith_alarm_info_plate("京A12345", 2, 8, Some(b"jpegbytes"));
    client
        .publish(
            "gw/old1/plate",
            QoS::AtLeastOnce,
            false,
            legacy.into_bytes(),
        )
        .await
        .unwrap();
    let (ev, skipped) = wait_for(&mut rx, within, |e| {
        e.device == "cam-legacy" && plate(e).is_some()
    })
    .await;
    let p = plate(&ev).unwrap();
    assert_eq!(
        (p.text.as_deref(), p.color, p.image_len),
        (Some("京A12345"), PlateColor::Yellow, Some(9))
    );
    assert!(
        skipped.iter().all(|e| plate(e).is_none()),
        "duplicate full result was not dropped: {skipped:?}"
    );

    let hx = samples::hx_plate_result("hx7", "沪C88888", 5);
    client
        .publish(
            "/device/hx7/update",
            QoS::AtLeastOnce,
            false,
            hx.into_bytes(),
        )
        .await
        .unwrap();
    let (ev, _) = wait_for(&mut rx, within, |e| {
        e.device == "cam-hx" && plate(e).is_some()
    })
    .await;
    let p = plate(&ev).unwrap();
    assert_eq!(
        (p.text.as_deref(), p.color, ev.lane.as_str()),
        (Some("沪C88888"), PlateColor::Green, "exit-1")
    );
    // parking_bridge_camera_reads_total, as deltas: quick + full (the repeat dropped
    // after counting or not, at least two), one, one.
    assert!(reads("cam-vz") - reads_before.0 >= 2);
    assert_eq!(reads("cam-legacy") - reads_before.1, 1);
    assert_eq!(reads("cam-hx") - reads_before.2, 1);
}

#[tokio::test]
async fn camera_garbage_is_counted_and_the_driver_keeps_decoding() {
    let broker = Mosquitto::start();
    let (mut rx, _stop) = start(broker.port, "bridge-garbage").await;
    let cam = SimCamera::connect("127.0.0.1", broker.port, "265e1040-85e01fb7");
    let before = metrics::PAYLOAD_ERRORS.with_label_values(&["cam-vz"]).get();
    let junk: Vec<Vec<u8>> = vec![
        b"\xff\xfe\xfd".to_vec(),
        b"{not json".to_vec(),
        b"{}".to_vec(),
        br#"{"payload":{"AlarmInfoPlate":{"result":{"PlateResult":{"license":"***"}}}}}"#.to_vec(),
        vec![0u8; 100_000],
    ];
    for j in &junk {
        cam.publish_raw("ivs_result", j.clone()).await.unwrap();
    }
    cam.publish_plate("粤B99999", 4, None, false).await.unwrap();
    let (ev, skipped) = wait_for(&mut rx, Duration::from_secs(5), |e| plate(e).is_some()).await;
    assert_eq!(plate(&ev).unwrap().text.as_deref(), Some("粤B99999"));
    assert_eq!(plate(&ev).unwrap().color, PlateColor::Black);
    assert!(
        skipped
            .iter()
            .all(|e| matches!(e.kind, EventKind::Link { up: true })),
        "{skipped:?}"
    );
    let after = metrics::PAYLOAD_ERRORS.with_label_values(&["cam-vz"]).get();
    assert_eq!(after - before, junk.len() as u64);
}

#[tokio::test]
async fn broker_loss_reports_cameras_down_and_reconnects() {
    let mut broker = Mosquitto::start();
    let port = broker.port;
    // Returns once cam-vz's link is up (its keep-alives arrive).
    let (mut rx, _stop) = start(port, "bridge-reconnect").await;
    let cam = SimCamera::connect("127.0.0.1", port, "265e1040-85e01fb7");
    drop(broker);
    wait_for(
        &mut rx,
        Duration::from_secs(5),
        is_kind("cam-vz", EventKind::Link { up: false }),
    )
    .await;
    broker = Mosquitto::start_on(port);
    let _keep = &broker;
    // The bridge reconnects and resubscribes; the camera's own client reconnects too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        cam.publish_plate("浙A00001", 1, None, false).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(700), rx.recv()).await {
            Ok(Some(ev)) if plate(&ev).is_some() => break,
            _ => assert!(
                tokio::time::Instant::now() < deadline,
                "no plate after broker restart"
            ),
        }
    }
}

#[tokio::test]
async fn credentials_are_used_and_a_refused_login_yields_no_reads() {
    let broker = Mosquitto::start_with_password("bridge", "s3cret");
    let run = |password: &'static str, client_id: &'static str| {
        let config = site_config(
            "",
            &format!(
                "[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"{client_id}\"\nusername = \"bridge\"\npassword = \"{password}\"\n\
                 [[devices]]\nname = \"cam-vz\"\nprofile = \"vzenith-mqtt\"\nlane = \"entry-1\"\ncamera_id = \"sn-auth\"\n",
                broker.port
            ),
        );
        async move {
            let profiles = load_profiles(&config).unwrap();
            let (tx, rx) = mpsc::channel(16);
            let (stop, shutdown) = watch::channel(false);
            spawn_all(&config, &profiles, tx, shutdown).await.unwrap();
            (rx, stop)
        }
    };
    let mut o = MqttOptions::new("cam-auth", "127.0.0.1", broker.port);
    o.set_credentials("bridge", "s3cret");
    let (client, mut ev) = AsyncClient::new(o, 16);
    tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    let (mut good, _s1) = run("s3cret", "bridge-good").await;
    until_subscribed(&mut good, "cam-vz", &client, "sn-auth").await;
    // The refused client never subscribes; nothing to wait for.
    let (mut bad, _s2) = run("wrong", "bridge-bad").await;
    let body = samples::vzenith_ivs_result("sn-auth", "鲁B12345", 1, None);
    client
        .publish(
            "device/sn-auth/message/up/ivs_result",
            QoS::AtLeastOnce,
            false,
            body.into_bytes(),
        )
        .await
        .unwrap();
    let (ev, _) = wait_for(&mut good, Duration::from_secs(5), |e| plate(e).is_some()).await;
    assert_eq!(plate(&ev).unwrap().text.as_deref(), Some("鲁B12345"));
    let seen = collect_for(&mut bad, Duration::from_millis(500)).await;
    assert!(seen.iter().all(|e| plate(e).is_none()), "{seen:?}");
}

/// Spawns the drivers of a camera-only site config; waits for the subscriptions.
async fn start_with(
    config: parking_bridge::config::SiteConfig,
) -> (mpsc::Receiver<RawEvent>, watch::Sender<bool>) {
    let profiles = load_profiles(&config).unwrap();
    let (tx, rx) = mpsc::channel(256);
    let (stop, shutdown) = watch::channel(false);
    spawn_all(&config, &profiles, tx, shutdown).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    (rx, stop)
}

#[tokio::test]
async fn dollar_keep_alives_keep_a_quiet_vzenith_camera_up_past_many_link_timeouts() {
    // The Vzenith v1.1.x keep-alive form only, after one recognition. The link timeout
    // is shortened to 1 s so 5 s of keep-alives span as many timeouts as 75 s would at
    // the profile's 15 s. `cam-old-form` listens only on the form without `$/` (what the
    // profile used to subscribe): it must go down, proving the timeout runs.
    let broker = Mosquitto::start();
    let config = site_config(
        "",
        &format!(
            "[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"bridge-keepalive\"\n\
             [[devices]]\nname = \"cam-vz\"\nprofile = \"vzenith-mqtt\"\nlane = \"entry-1\"\ncamera_id = \"sn-ka\"\nlink_timeout_ms = 1000\n\
             [[devices]]\nname = \"cam-old-form\"\nprofile = \"vzenith-mqtt\"\nlane = \"exit-1\"\ncamera_id = \"sn-old\"\nlink_timeout_ms = 1000\n\
             topics = {{ heartbeat = \"device/{{id}}/message/up/keep_alive\" }}\n",
            broker.port
        ),
    );
    let (mut rx, _stop) = start_with(config).await;
    let cam = SimCamera::connect("127.0.0.1", broker.port, "sn-ka");
    let old = SimCamera::connect("127.0.0.1", broker.port, "sn-old");
    tokio::time::sleep(Duration::from_millis(300)).await;
    cam.publish_plate("闽D12345", 1, None, false).await.unwrap();
    old.publish_plate("闽D54321", 1, None, false).await.unwrap();
    for device in ["cam-vz", "cam-old-form"] {
        wait_for(&mut rx, Duration::from_secs(5), |e| {
            e.device == device && plate(e).is_some()
        })
        .await;
    }
    let client = publisher(broker.port, "keepalive-pub");
    let beats = async {
        for _ in 0..20 {
            for sn in ["sn-ka", "sn-old"] {
                let body = format!(r#"{{"sn":"{sn}","name":"keep_alive"}}"#);
                client
                    .publish(
                        format!("$/device/{sn}/message/up/keep_alive"),
                        QoS::AtLeastOnce,
                        false,
                        body.into_bytes(),
                    )
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let (_, seen) = tokio::join!(beats, collect_for(&mut rx, Duration::from_millis(5_000)));
    assert!(
        !seen
            .iter()
            .any(is_kind("cam-vz", EventKind::Link { up: false })),
        "link went down despite keep-alives: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(is_kind("cam-old-form", EventKind::Link { up: false })),
        "the old topic form misses the keep-alives: {seen:?}"
    );
    // Keep-alives stop: now the timeout takes the link down.
    wait_for(
        &mut rx,
        Duration::from_secs(3),
        is_kind("cam-vz", EventKind::Link { up: false }),
    )
    .await;
}

#[tokio::test]
async fn three_legacy_cameras_share_the_push_topic_and_each_read_lands_on_its_lane() {
    let broker = Mosquitto::start();
    let mut devices = format!(
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"bridge-shared\"\n\
         [[lanes]]\nid = \"entry-2\"\ndirection = \"entry\"\nport_no = \"P3\"\n",
        broker.port
    );
    for (name, lane, sn) in [
        ("cam-a", "entry-1", "sn-aaaa-0001"),
        ("cam-b", "exit-1", "sn-bbbb-0002"),
        ("cam-c", "entry-2", "sn-cccc-0003"),
    ] {
        devices.push_str(&format!(
            "[[devices]]\nname = \"{name}\"\nprofile = \"vzenith-legacy-alarminfoplate\"\nlane = \"{lane}\"\ncamera_id = \"{sn}\"\n"
        ));
    }
    let (mut rx, _stop) = start_with(site_config("", &devices)).await;
    let client = publisher(broker.port, "legacy-pub");
    let push = |sn: &str, plate: &str| {
        samples::vzenith_alarm_info_plate_full(sn, plate, 1, 1, None, None).into_bytes()
    };
    let before = metrics::UNROUTED
        .with_label_values(&["/device/push/result"])
        .get();
    for (sn, text) in [
        ("sn-cccc-0003", "闽C00003"),
        ("sn-unknown-9", "闽X99999"),
        ("sn-aaaa-0001", "闽A00001"),
        ("sn-bbbb-0002", "闽B00002"),
    ] {
        client
            .publish(
                "/device/push/result",
                QoS::AtLeastOnce,
                false,
                push(sn, text),
            )
            .await
            .unwrap();
    }
    let mut landed = std::collections::BTreeMap::new();
    while landed.len() < 3 {
        let (ev, _) = wait_for(&mut rx, Duration::from_secs(5), |e| plate(e).is_some()).await;
        let text = plate(&ev).unwrap().text.clone().unwrap();
        landed.insert(text, (ev.device.clone(), ev.lane.clone()));
    }
    let pairs = |d: &str, l: &str| (d.to_string(), l.to_string());
    assert_eq!(landed["闽A00001"], pairs("cam-a", "entry-1"));
    assert_eq!(landed["闽B00002"], pairs("cam-b", "exit-1"));
    assert_eq!(landed["闽C00003"], pairs("cam-c", "entry-2"));
    let late = collect_for(&mut rx, Duration::from_millis(300)).await;
    assert!(late.iter().all(|e| plate(e).is_none()), "{late:?}");
    assert_eq!(
        metrics::UNROUTED
            .with_label_values(&["/device/push/result"])
            .get()
            - before,
        1,
        "the unknown serial is counted, not given to a lane"
    );
}

/// Log output captured in memory.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn mask_plates_false_unmasks_the_drivers_plate_read_lines() {
    // The current-thread runtime runs the driver task on this thread, so the
    // thread's default subscriber sees its log lines.
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let broker = Mosquitto::start();
    let (mut rx, _stop) = start(broker.port, "bridge-mask").await;
    let cam = SimCamera::connect("127.0.0.1", broker.port, "265e1040-85e01fb7");
    parking_bridge::plate::set_log_masking(false);
    cam.publish_plate("闽A12345", 1, None, false).await.unwrap();
    wait_for(&mut rx, Duration::from_secs(5), |e| plate(e).is_some()).await;
    parking_bridge::plate::set_log_masking(true);
    cam.publish_plate("闽B67890", 1, None, false).await.unwrap();
    wait_for(&mut rx, Duration::from_secs(5), |e| plate(e).is_some()).await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("plate=闽A12345"),
        "unmasked when told:\n{text}"
    );
    assert!(
        text.contains("plate=闽B6***0") && !text.contains("闽B67890"),
        "masked by default:\n{text}"
    );
}
