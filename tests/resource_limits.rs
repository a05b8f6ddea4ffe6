//! Resource limits under abuse: each input path, flooded, stays bounded and says what
//! it refused (a counter and a log line) instead of growing.
//!
//! - MQTT: a camera floods garbage and a message above the 8 MiB packet limit, at QoS 1,
//!   while the lanes are not reading: the driver blocks on its bounded queue (the
//!   broker holds the rest), counts every bad payload, and the next good read still
//!   arrives.
//! - A 100 000-report backlog with images: the image budget holds (oldest pictures
//!   dropped, counted and logged), no report is lost, and picking the next reports to
//!   send stays bounded and quick.
//!
//! - A Modbus RTU slave that answers every request late: within the timeout the bus
//!   stays one request at a time (no pile-up); beyond it every late answer is drained
//!   and counted as garbage, never taken for the next one, timeouts are counted and the
//!   slave is isolated, so it costs the bus a bounded share of its time.
//!
//! HTTP push floods (rate, size, slow clients, connections) are in
//! `tests/driver_http_push.rs`.

mod process_common;
use process_common::env_or;
mod driver_common;

use driver_common::*;
use futures::StreamExt;
use parking_bridge::config::LotConfig;
use parking_bridge::driver::{load_profiles, metrics, spawn_all};
use parking_bridge::event::{EventKind, RawEvent};
use parking_bridge::plate::{CarType, PlateColor};
use parking_bridge::store::{NewStay, Store, StoreOptions};
use parking_bridge::time::Timestamp;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

fn counter(name: &str) -> f64 {
    prometheus::gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter().map(|m| m.get_counter().get_value()))
        .sum()
}

#[tokio::test]
async fn an_mqtt_flood_of_garbage_and_oversize_messages_is_counted_and_the_next_read_arrives() {
    let broker = Mosquitto::start();
    let config = site_config(
        "",
        &format!(
            "[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"bridge-flood\"\n\
             [[devices]]\nname = \"cam-flood\"\nprofile = \"vzenith-mqtt\"\nlane = \"entry-1\"\ncamera_id = \"flood-1\"\n",
            broker.port
        ),
    );
    let profiles = load_profiles(&config).unwrap();
    // Small on purpose: the flood must meet backpressure, not an endless queue.
    let (tx, mut rx) = mpsc::channel::<RawEvent>(8);
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let _drivers = spawn_all(&config, &profiles, tx, shutdown).await.unwrap();

    let mut o = MqttOptions::new("flooder", "127.0.0.1", broker.port);
    o.set_max_packet_size(32 << 20, 32 << 20);
    let (cam, mut ev) = AsyncClient::new(o, 64);
    tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    let up = "device/flood-1/message/up";
    // Subscribed once a keep-alive makes the link come up.
    let deadline = Instant::now() + Duration::from_secs(15);
    'sub: loop {
        cam.publish(
            format!("{up}/keep_alive"),
            QoS::AtMostOnce,
            false,
            br#"{"sn":"flood-1"}"#.to_vec(),
        )
        .await
        .unwrap();
        let until = tokio::time::Instant::now() + Duration::from_millis(100);
        while let Ok(Some(e)) = tokio::time::timeout_at(until, rx.recv()).await {
            if matches!(e.kind, EventKind::Link { up: true }) {
                break 'sub;
            }
        }
        assert!(Instant::now() < deadline, "never subscribed");
    }

    let errors_before = metrics::PAYLOAD_ERRORS
        .with_label_values(&["cam-flood"])
        .get();
    let oversize_before = metrics::MQTT_OVERSIZE.get();
    // Under mosquitto's default queue of 1000 messages per client, so none is dropped
    // by the broker and every one must be counted.
    const GARBAGE: u64 = 500;
    for i in 0..GARBAGE {
        let junk = format!("{{\"not\": \"a plate\", \"n\": {i}");
        cam.publish(
            format!("{up}/ivs_result"),
            QoS::AtLeastOnce,
            false,
            junk.into_bytes(),
        )
        .await
        .unwrap();
    }
    // Above the bridge's 8 MiB packet limit, at QoS 1 in the bridge's kept session:
    // refused, counted, and it must not block the session (the broker would redeliver
    // it at every reconnect).
    cam.publish(
        format!("{up}/ivs_result"),
        QoS::AtLeastOnce,
        false,
        vec![b'x'; 9 << 20],
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while metrics::MQTT_OVERSIZE.get() == oversize_before {
        assert!(
            Instant::now() < deadline,
            "the oversize message was never refused"
        );
        let _ = collect_for(&mut rx, Duration::from_millis(100)).await;
    }
    // The next recognition arrives (sent again until the bridge has subscribed again:
    // what the broker queued behind the oversize message was dropped with the session).
    let plate =
        parking_bridge::driver::camera::samples::vzenith_ivs_result("flood-1", "粤B12345", 1, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    let read = 'read: loop {
        cam.publish(
            format!("{up}/ivs_result"),
            QoS::AtLeastOnce,
            false,
            plate.clone().into_bytes(),
        )
        .await
        .unwrap();
        for e in collect_for(&mut rx, Duration::from_millis(500)).await {
            if matches!(&e.kind, EventKind::Plate(p) if p.text.as_deref() == Some("粤B12345")) {
                break 'read e;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no read after the oversize message"
        );
    };
    assert_eq!(read.device, "cam-flood");
    let errors = metrics::PAYLOAD_ERRORS
        .with_label_values(&["cam-flood"])
        .get()
        - errors_before;
    assert_eq!(errors, GARBAGE, "every bad payload is counted once");
    // One refusal, one clean reconnect: no loop.
    let _ = collect_for(&mut rx, Duration::from_secs(1)).await;
    assert_eq!(metrics::MQTT_OVERSIZE.get(), oversize_before + 1);
}

fn stay(n: usize, at: Timestamp, image: Vec<u8>) -> NewStay {
    NewStay {
        plate_no: format!("闽A{:05}", n % 100_000),
        plate_color: PlateColor::Blue,
        car_type: CarType::Normal,
        lane: "entry-1".into(),
        port_no: "E1".into(),
        entered_at: at,
        operator: None,
        snapshot: Some(image),
        price: None,
        should_pay: None,
    }
}

#[test]
fn a_100k_report_backlog_with_images_keeps_the_image_budget_and_every_report() {
    // PB_BACKLOG lowers the count for a quick local run; the default is the issue's.
    let n: usize = env_or("PB_BACKLOG", 100_000);
    const IMAGE: usize = 2_000;
    const BUDGET: u64 = 4 << 20;
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        image_budget_bytes: BUDGET,
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), &LotConfig::new("P3501", 1_000_000), options).unwrap();
    let dropped_before = counter("parking_bridge_images_dropped_total");
    let t0 = Timestamp(1_767_225_600_000);
    let mut k = 0;
    while k < n {
        let group: Vec<NewStay> = (k..(k + 1_000).min(n))
            .map(|i| {
                stay(
                    i,
                    t0.plus_millis(i as i64 * 1_000),
                    vec![(i % 251) as u8; IMAGE],
                )
            })
            .collect();
        k += group.len();
        store
            .open_stays_grouped(group, t0.plus_millis(k as i64 * 1_000))
            .unwrap();
    }
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let image_bytes: i64 = conn
        .query_row("SELECT COALESCE(SUM(bytes), 0) FROM images", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(
        image_bytes as u64 <= BUDGET,
        "{image_bytes} bytes of images kept"
    );
    let dropped = counter("parking_bridge_images_dropped_total") - dropped_before;
    let expected = n as u64 - BUDGET / IMAGE as u64;
    assert!(
        dropped as u64 >= expected,
        "{dropped} images dropped, {expected} at least"
    );
    // Every entry report is still there, pending; only snapshots lost their pictures.
    let entries: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE state = 'pending' AND kind = 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(entries as usize, n);
    // The uploader takes a bounded slice of the backlog, quickly.
    let started = Instant::now();
    let due = store
        .due_reports(t0.plus_millis(n as i64 * 2_000), 64, false, &HashSet::new())
        .unwrap();
    assert_eq!(due.len(), 64);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "picking 64 of {n} took {:?}",
        started.elapsed()
    );
    // The database holds the reports and the budgeted images, not every picture:
    // about 1 KB per stay (benches/store.rs measures it) plus the budget. The WAL is
    // bounded by the largest transaction (here 1 000 stays), not by the backlog.
    let db = std::fs::metadata(store.path()).unwrap().len();
    let wal = std::fs::metadata(store.path().with_extension("db-wal")).map_or(0, |m| m.len());
    let bound = BUDGET + n as u64 * 1_500;
    assert!(db < bound, "database {db} bytes, bound {bound}");
    assert!(wal < 16 << 20, "WAL {wal} bytes");
    println!(
        "{n} stays with {IMAGE}-byte images: database {db} bytes, WAL {wal} bytes, {dropped} images dropped"
    );
}

/// Forwards a bus between the driver's pty and the device's, delaying every answer by
/// `delay_ms` (keeping the spacing of its pieces) and counting requests.
struct SlowLine {
    delay_ms: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

fn slow_line<D, S>(driver_side: D, device_side: S) -> SlowLine
where
    D: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let line = SlowLine {
        delay_ms: Arc::new(AtomicU64::new(0)),
        requests: Arc::new(AtomicU64::new(0)),
    };
    let (mut dr, mut dw) = tokio::io::split(driver_side);
    let (mut sr, mut sw) = tokio::io::split(device_side);
    let requests = line.requests.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok(n @ 1..) = dr.read(&mut buf).await {
            // Requests are 8-byte frames.
            requests.fetch_add((n as u64).div_ceil(8), Ordering::Relaxed);
            if sw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    let (tx, mut rx) = mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok(n @ 1..) = sr.read(&mut buf).await {
            if tx
                .send((tokio::time::Instant::now(), buf[..n].to_vec()))
                .is_err()
            {
                return;
            }
        }
    });
    let delay = line.delay_ms.clone();
    tokio::spawn(async move {
        while let Some((at, bytes)) = rx.recv().await {
            let d = Duration::from_millis(delay.load(Ordering::Relaxed));
            tokio::time::sleep_until(at + d).await;
            if dw.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    line
}

#[tokio::test]
async fn a_modbus_slave_slow_on_every_request_costs_a_bounded_share_of_the_bus() {
    let dir = tempfile::tempdir().unwrap();
    let driver_pair = PtyPair::start(&dir.path().join("bridge"), &dir.path().join("line-in"));
    let device_pair = PtyPair::start(&dir.path().join("line-out"), &dir.path().join("device"));
    let sim = sim_with(&[1]);
    // A pattern whose every bit matters: a stale answer taken for another would show.
    sim.set_input(1, 0, true);
    sim.set_input(1, 2, true);
    let _server = sim.serve_rtu(open_serial(&device_pair.b));
    let line = slow_line(open_serial(&driver_pair.b), open_serial(&device_pair.a));
    let config = site_config(
        "",
        &format!(
            "[[buses]]\nname = \"slow-bus\"\nport = \"{}\"\nbaud = 115200\n\
             [[devices]]\nname = \"slow-io\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"entry-1\"\nbus = \"slow-bus\"\nslave = 1\npoll_ms = 20\ndebounce_ms = 0\n\
             roles = {{ loop_a = \"di1\", loop_b = \"di2\", gate_open = \"di3\", gate_closed = \"di4\" }}\n",
            driver_pair.a.display()
        ),
    );
    let mut drivers = spawn_drivers(&config).await;
    wait_kind(
        &mut drivers.rx,
        Duration::from_secs(5),
        "slow-io",
        link(true),
    )
    .await;
    let facts: Vec<EventKind> = collect_for(&mut drivers.rx, Duration::from_millis(300))
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();

    // Slow but well within the profile's 150 ms timeout: one request at a time, so at
    // most one per 60 ms however short the poll period, and no timeout (one allowed
    // for a loaded machine's scheduling).
    let timeouts = |d: &str| metrics::TIMEOUTS.with_label_values(&[d]).get();
    let garbage = || {
        metrics::GARBAGE_BYTES
            .with_label_values(&["slow-bus"])
            .get()
    };
    line.delay_ms.store(60, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (t0, r0) = (timeouts("slow-io"), line.requests.load(Ordering::Relaxed));
    let window = Duration::from_secs(2);
    let seen = collect_for(&mut drivers.rx, window).await;
    let requests = line.requests.load(Ordering::Relaxed) - r0;
    assert!(
        (5..=34).contains(&requests),
        "{requests} requests in {window:?} with 60 ms answers"
    );
    assert!(
        timeouts("slow-io") - t0 <= 1,
        "answers within the timeout are no timeouts"
    );
    assert!(
        seen.is_empty(),
        "nothing changed, nothing reported: {seen:?}"
    );

    // Slower than the timeout: each late answer is drained before the next request,
    // counted as garbage, never decoded; the slave times out and is isolated.
    let g0 = garbage();
    line.delay_ms.store(250, Ordering::Relaxed);
    let r0 = line.requests.load(Ordering::Relaxed);
    let window = Duration::from_secs(4);
    let seen = collect_for(&mut drivers.rx, window).await;
    let requests = line.requests.load(Ordering::Relaxed) - r0;
    assert!(timeouts("slow-io") - t0 >= 3, "timeouts counted");
    assert!(garbage() > g0, "late answers counted as garbage");
    // Isolated after its retries: the bus is not spent on it at the poll rate.
    assert!(
        requests <= 20,
        "{requests} requests in {window:?} to a slave that never answers in time"
    );
    let kinds: Vec<EventKind> = seen.into_iter().map(|e| e.kind).collect();
    assert!(
        kinds
            .iter()
            .all(|k| matches!(k, EventKind::Link { up: false })),
        "only the link going down, no fact from a stale answer: {kinds:?}"
    );
    assert!(kinds.contains(&link(false)), "{kinds:?}");

    // Fast again: back, with the same facts as before.
    line.delay_ms.store(0, Ordering::Relaxed);
    wait_kind(
        &mut drivers.rx,
        Duration::from_secs(8),
        "slow-io",
        link(true),
    )
    .await;
    assert!(facts.len() >= 2, "initial facts: {facts:?}");
}

fn push_rejected(reason: &str) -> u64 {
    prometheus::gather()
        .iter()
        .filter(|f| f.name() == "parking_bridge_camera_push_rejected_total")
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| m.get_label().iter().any(|l| l.value() == reason))
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

#[tokio::test]
async fn an_http_push_flood_is_refused_by_connection_and_rate_limits_and_counted() {
    let config = site_config(
        "",
        "[camera_push]\nlisten = \"127.0.0.1:0\"\nmax_connections = 4\nrate_per_s = 10\nburst = 10\n\
         header_timeout_ms = 2000\n\
         [[devices]]\nname = \"cam-pushflood\"\nprofile = \"vzenith-legacy-alarminfoplate\"\nlane = \"exit-1\"\ncamera_id = \"flood\"\nhttp_push = true\nsource = \"127.0.0.1\"\n",
    );
    let profiles = load_profiles(&config).unwrap();
    // Nobody reads the events during the flood: the receiver must not queue for them.
    let (tx, mut rx) = mpsc::channel(64);
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let drivers = spawn_all(&config, &profiles, tx, shutdown).await.unwrap();
    let addr = drivers.push_addr.expect("push receiver bound");

    // 100 idle connections at once: 4 are served, the others closed and counted.
    let refused_before = push_rejected("too_many_connections");
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while push_rejected("too_many_connections") - refused_before < 96 {
        assert!(
            Instant::now() < deadline,
            "{} of 96 surplus connections refused",
            push_rejected("too_many_connections") - refused_before
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(idle);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 300 pushes as fast as 4 connections carry them: the burst and the rate pass,
    // the rest get 429, each counted.
    let limited_before = push_rejected("rate_limited");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(4)
        .build()
        .unwrap();
    let url = format!("http://{addr}/camera/flood/plate");
    let started = Instant::now();
    let mut ok = 0u64;
    let mut limited = 0u64;
    let mut refused = 0u64;
    let mut sends = futures::stream::iter(0..300)
        .map(|i| {
            let body = parking_bridge::driver::camera::samples::vzenith_alarm_info_plate(
                &format!("粤B{:05}", i),
                1,
                8,
                None,
            );
            http.post(&url).body(body).send()
        })
        .buffer_unordered(4);
    while let Some(r) = futures::StreamExt::next(&mut sends).await {
        match r.map(|r| r.status().as_u16()) {
            Ok(200) => ok += 1,
            Ok(429) => limited += 1,
            // A connection beyond the limit (the client's pool races the server's).
            _ => refused += 1,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = 10.0 + 10.0 * elapsed + 2.0;
    assert!(
        (ok as f64) <= allowed,
        "{ok} pushes accepted in {elapsed:.1} s"
    );
    assert!(ok >= 10, "the burst passes: {ok}");
    assert_eq!(ok + limited + refused, 300);
    assert_eq!(push_rejected("rate_limited") - limited_before, limited);
    // What was accepted became events, no more (the receiver waited for the queue).
    let events = collect_for(&mut rx, Duration::from_millis(500)).await;
    let reads = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Plate(_)))
        .count() as u64;
    assert_eq!(reads, ok);
}
