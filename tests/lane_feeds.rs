//! The lot's own systems through the running service (`service::Bridge`): over a real
//! mosquitto, a guidance system's occupancy topic sets the occupied count and the pay
//! system's fee topic prices an exit instead of the tariff; over real TCP to simulated
//! Modbus slaves, a space counter does the first and an exit lane's pay terminal the
//! second.

#[path = "driver_common/mod.rs"]
mod driver_common;

use driver_common::Mosquitto;
use parking_bridge::config::SiteConfig;
use parking_bridge::service::Bridge;
use parking_bridge::sim::devices::{SimCamera, SimModbus};
use parking_bridge::store::Store;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const OCCUPANCY_TOPIC: &str = "pgs/P1/count";
const FEE_TOPIC: &str = "pay/P1/fees";

fn config_text(dir: &Path, broker: u16, feeds: &str) -> String {
    format!(
        r#"
[platform]
base_url = "http://127.0.0.1:9"
app_id = "app"
app_secret = "0123456789abcdef"
connect_timeout_secs = 1
request_timeout_secs = 1
[lot]
parking_lot_no = "P1"
total_spaces = 50
{feeds}
[storage]
dir = "{}"
[http]
listen = ""
[mqtt]
host = "127.0.0.1"
port = {broker}
client_id = "bridge-feeds"
[[lanes]]
id = "entry-1"
direction = "entry"
port_no = "E1"
layout = "camera_only"
[[lanes]]
id = "exit-1"
direction = "exit"
port_no = "X1"
layout = "camera_only"
[[devices]]
name = "cam-in"
profile = "vzenith-mqtt"
lane = "entry-1"
camera_id = "CAM-IN"
[[devices]]
name = "cam-out"
profile = "vzenith-mqtt"
lane = "exit-1"
camera_id = "CAM-OUT"
"#,
        dir.join("state").display()
    )
}

const FEEDS: &str = r#"occupancy_source = "external"
[lot.occupancy_mqtt]
topic = "pgs/P1/count"
field = "data.free"
counts = "free"
[lot.fee_mqtt]
topic = "pay/P1/fees"
[lot.tariff]
hourly_rate = 500
"#;

/// A guidance system / pay system stand-in: publishes only.
fn publisher(port: u16) -> AsyncClient {
    let (client, mut ev) = AsyncClient::new(MqttOptions::new("pgs-sim", "127.0.0.1", port), 16);
    tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    client
}

async fn wait_for<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn occupied(store: &Arc<Store>) -> i64 {
    store.occupancy().unwrap().occupied
}

/// (price, should_pay, paid_fee) of the plate's closed stay, once it is closed.
fn closed_fee(store: &Arc<Store>, plate: &str) -> Option<(i64, i64, i64)> {
    store
        .list_stays(false, 50)
        .unwrap()
        .into_iter()
        .find(|s| s.plate_no == plate && s.exited_at.is_some())
        .map(|s| {
            (
                s.price.unwrap_or(-1),
                s.should_pay.unwrap_or(-1),
                s.paid_fee.unwrap_or(-1),
            )
        })
}

const PAID: &str = "闽A12345";
const UNPAID: &str = "闽B54321";

/// Both test cars enter; their stays move the occupied count set by the source.
async fn both_cars_enter(cam_in: &SimCamera, store: &Arc<Store>) {
    for plate in [PAID, UNPAID] {
        cam_in.publish_plate(plate, 1, None, false).await.unwrap();
    }
    wait_for("two entries", Duration::from_secs(10), || {
        (store.find_open_stay(UNPAID).unwrap().is_some()
            && store.find_open_stay(PAID).unwrap().is_some())
        .then_some(())
    })
    .await;
    assert_eq!(occupied(store), 2, "passages still move the count");
}

/// The car leaves; returns what its exit was priced at.
async fn leaves(cam_out: &SimCamera, store: &Arc<Store>, plate: &str) -> (i64, i64, i64) {
    cam_out.publish_plate(plate, 1, None, false).await.unwrap();
    wait_for("the exit", Duration::from_secs(10), || {
        closed_fee(store, plate)
    })
    .await
}

/// The service on `text`, its store, and the entry and exit cameras.
async fn start(text: &str, broker: u16) -> (Bridge, Arc<Store>, SimCamera, SimCamera) {
    let site = SiteConfig::from_toml(text, Path::new("site.toml")).unwrap();
    let bridge = tokio::time::timeout(Duration::from_secs(20), Bridge::start(site))
        .await
        .expect("bridge started in time")
        .unwrap();
    let store = bridge.store();
    let cam_in = SimCamera::connect("127.0.0.1", broker, "CAM-IN");
    let cam_out = SimCamera::connect("127.0.0.1", broker, "CAM-OUT");
    (bridge, store, cam_in, cam_out)
}

async fn wait_occupied(store: &Arc<Store>, n: i64, what: &str) {
    wait_for(what, Duration::from_secs(10), || {
        (occupied(store) == n).then_some(())
    })
    .await;
}

/// The value of one sample of the process's default registry (0 when absent).
fn metric(sample: &str) -> f64 {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&prometheus::gather())
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The tariff's default for the unpaid car: one started hour, paid at the booth.
const TARIFF_FEE: (i64, i64, i64) = (500, 0, 500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occupancy_topic_sets_the_count_and_fee_topic_prices_the_exit() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), broker.port, FEEDS);
    let (bridge, store, cam_in, cam_out) = start(&text, broker.port).await;
    let pgs = publisher(broker.port);

    // The guidance system says 12 free of 50 (as a string, as some do), retained: the
    // broker hands it to the bridge whenever its subscription lands.
    pgs.publish(
        OCCUPANCY_TOPIC,
        QoS::AtLeastOnce,
        true,
        r#"{"data":{"free":"12"}}"#,
    )
    .await
    .unwrap();
    wait_occupied(&store, 38, "occupancy from the topic").await;
    // Garbage is ignored; the next good number counts. Free 60 > total: clamped to 0.
    pgs.publish(OCCUPANCY_TOPIC, QoS::AtLeastOnce, false, "not json")
        .await
        .unwrap();
    pgs.publish(
        OCCUPANCY_TOPIC,
        QoS::AtLeastOnce,
        false,
        r#"{"data":{"free":60}}"#,
    )
    .await
    .unwrap();
    wait_occupied(&store, 0, "clamped occupancy").await;

    // A paid stay: entry, payment published by the pay system, exit.
    both_cars_enter(&cam_in, &store).await;
    pgs.publish(
        FEE_TOPIC,
        QoS::AtLeastOnce,
        false,
        r#"{"plate_no":"闽A12345","price":1200,"paid_fee":1000}"#,
    )
    .await
    .unwrap();
    // The car drives out once the payment reached the lane task (as in a real lot,
    // where paying comes first): it journals the payment event when it has it.
    let journal = dir.path().join("state/journal/events.jsonl");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&journal)
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains(r#""type":"payment""#) && l.contains("闽A12345"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the payment never reached the lane task"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let paid = leaves(&cam_out, &store, PAID).await;
    assert_eq!(paid, (1200, 200, 1000), "the pay system's figures");
    // No payment published: the tariff decides.
    assert_eq!(leaves(&cam_out, &store, UNPAID).await, TARIFF_FEE);

    tokio::time::timeout(Duration::from_secs(15), bridge.stop())
        .await
        .expect("bridge stopped in time");
}

#[test]
fn feed_config_mistakes_are_named_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let err = |feeds: &str| {
        SiteConfig::from_toml(
            &config_text(dir.path(), 1883, feeds),
            Path::new("site.toml"),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    };
    let e = err("[lot.occupancy_mqtt]\ntopic = \"pgs/#\"\n");
    assert!(e.contains("lot.occupancy_source"), "{e}");
    assert!(e.contains("lot.occupancy_mqtt.topic"), "{e}");
    let e = err(
        "occupancy_source = \"external\"\n[lot.occupancy_mqtt]\ntopic = \"t\"\nfield = \"a..b\"\n",
    );
    assert!(e.contains("lot.occupancy_mqtt.field"), "{e}");
    let e = err("[lot.fee_mqtt]\ntopic = \"\"\n");
    assert!(e.contains("lot.fee_mqtt.topic"), "{e}");
    assert_eq!(err(FEEDS), "");
    // Without a broker section there is nothing to subscribe on.
    let no_broker = config_text(dir.path(), 1883, FEEDS).replace(
        "[mqtt]\nhost = \"127.0.0.1\"\nport = 1883\nclient_id = \"bridge-feeds\"\n",
        "",
    );
    let no_broker = no_broker[..no_broker.find("[[devices]]").unwrap()].to_string();
    let e = SiteConfig::from_toml(&no_broker, Path::new("site.toml"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("lot.occupancy_mqtt") && e.contains("[mqtt]"),
        "{e}"
    );
    assert!(e.contains("lot.fee_mqtt"), "{e}");
}

// Modbus sources: a guidance controller (space counter) and an exit pay terminal.

const COUNTER: u8 = 1;
const TERMINAL: u8 = 5;

/// The camera-only lanes of `config_text` with the count from a guidance controller
/// (devices[2]) and the exit priced by a pay terminal (devices[3]), both on `modbus`.
fn modbus_config_text(dir: &Path, broker: u16, modbus: &str) -> String {
    let lot = "occupancy_source = \"external\"\n[lot.tariff]\nhourly_rate = 500\n";
    format!(
        r#"{}[[devices]]
name = "pgs"
profile = "generic-guidance-counter"
tcp = "{modbus}"
slave = {COUNTER}
poll_ms = 50
debounce_ms = 100
roles = {{ free_count = "free" }}
[[devices]]
name = "pay-out"
profile = "generic-pay-terminal"
lane = "exit-1"
tcp = "{modbus}"
slave = {TERMINAL}
poll_ms = 50
debounce_ms = 50
roles = {{ fee_price = "charge", fee_paid = "paid" }}
"#,
        config_text(dir, broker, lot)
    )
}

/// A u32 in two holding registers, high word first (the terminal template's layout).
fn set_u32(sim: &SimModbus, slave: u8, address: u16, value: u32) {
    sim.set_holding(slave, address, (value >> 16) as u16);
    sim.set_holding(slave, address + 1, value as u16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn space_counter_sets_the_count_and_pay_terminal_prices_one_exit() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let sim = SimModbus::new();
    sim.add_slave(COUNTER);
    sim.add_slave(TERMINAL);
    // The guidance controller shows 12 free of 50 before the bridge starts.
    sim.set_input_register(COUNTER, 1, 12);
    let modbus = sim.serve_tcp("127.0.0.1:0").await.unwrap();
    let text = modbus_config_text(dir.path(), broker.port, &modbus.to_string());
    // Deltas: the registry is the process's, and other tests here move it too.
    let charges = r#"parking_bridge_pay_terminal_charges_total{lane="exit-1"}"#;
    let charges_before = metric(charges);
    let updates_before = metric("parking_bridge_occupancy_source_updates_total");
    let (bridge, store, cam_in, cam_out) = start(&text, broker.port).await;

    wait_occupied(&store, 38, "occupancy from the counter").await;
    // More free than the lot has: clamped to 0 occupied.
    sim.set_input_register(COUNTER, 1, 60);
    wait_occupied(&store, 0, "clamped occupancy").await;

    both_cars_enter(&cam_in, &store).await;

    // The first car pays 10.00 of a 12.00 charge at the exit terminal, then leaves.
    // Paid first: a poll between the two writes then sees no charge yet, never a
    // charge with nothing paid.
    set_u32(&sim, TERMINAL, 2, 1000);
    set_u32(&sim, TERMINAL, 0, 1200);
    // The car drives out once the bridge has read the charge (poll and debounce), as
    // in a real lot where the barrier opens after payment.
    wait_for("the terminal's charge", Duration::from_secs(10), || {
        (metric(charges) - charges_before == 1.0).then_some(())
    })
    .await;
    let paid = leaves(&cam_out, &store, PAID).await;
    assert_eq!(paid, (1200, 200, 1000), "the terminal's figures");
    assert!(
        metric("parking_bridge_occupancy_source_updates_total") - updates_before >= 2.0,
        "two counts were set"
    );

    // The terminal still shows that charge, but it was the first car's: the next car
    // is priced by the tariff.
    assert_eq!(leaves(&cam_out, &store, UNPAID).await, TARIFF_FEE);
    assert!(
        sim.forbidden_requests().is_empty(),
        "the bridge only reads: {:?}",
        sim.forbidden_requests()
    );

    tokio::time::timeout(Duration::from_secs(15), bridge.stop())
        .await
        .expect("bridge stopped in time");
}

#[test]
fn counter_and_terminal_config_mistakes_are_named_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = || modbus_config_text(dir.path(), 1883, "127.0.0.1:502");
    let err = |text: String| {
        SiteConfig::from_toml(&text, Path::new("site.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert_eq!(err(text()), "");
    // (what is replaced, by what, what the error must name)
    let cases: &[(&str, &str, &[&str])] = &[
        // A counter given a lane.
        (
            "name = \"pgs\"\n",
            "name = \"pgs\"\nlane = \"entry-1\"\n",
            &["devices[2].lane", "serves no lane"],
        ),
        // A counter while the count comes from passages.
        (
            "occupancy_source = \"external\"\n",
            "",
            &["lot.occupancy_source"],
        ),
        // Two occupancy sources at once.
        (
            "[lot.tariff]",
            "[lot.occupancy_mqtt]\ntopic = \"pgs/count\"\n[lot.tariff]",
            &["devices[2].roles", "one occupancy source"],
        ),
        // Lane roles mixed into the counter.
        (
            "roles = { free_count = \"free\" }",
            "roles = { free_count = \"free\", loop_a = \"occupied\" }",
            &["devices[2].roles"],
        ),
        // A pay terminal at an entrance.
        (
            "profile = \"generic-pay-terminal\"\nlane = \"exit-1\"",
            "profile = \"generic-pay-terminal\"\nlane = \"entry-1\"",
            &["devices[3].roles", "exit lane"],
        ),
        // Paid without the charge.
        (
            "roles = { fee_price = \"charge\", fee_paid = \"paid\" }",
            "roles = { fee_paid = \"paid\" }",
            &["fee_paid needs fee_price"],
        ),
        // A lane device must still name its lane.
        ("lane = \"exit-1\"\ntcp", "tcp", &["devices[3].lane"]),
    ];
    for (from, to, expected) in cases {
        let e = err(text().replace(from, to));
        for x in *expected {
            assert!(e.contains(x), "{from:?} -> {to:?}: no {x:?} in {e:?}");
        }
    }
}
