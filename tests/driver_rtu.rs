//! Modbus RTU driver against a tokio-modbus RTU server playing the DI modules, over
//! real socat pty pairs.

mod driver_common;

use driver_common::*;
use parking_bridge::driver::{load_profiles, metrics, spawn_all};
use parking_bridge::event::{EventKind, GatePosition, LoopId};
use parking_bridge::sim::devices::SimModbus;
use std::path::Path;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

fn bus_config(port: &Path, devices: &str) -> parking_bridge::config::SiteConfig {
    named_bus_config("bus1", port, devices)
}

fn named_bus_config(name: &str, port: &Path, devices: &str) -> parking_bridge::config::SiteConfig {
    site_config(
        "",
        &format!(
            "[[buses]]\nname = \"{name}\"\nport = \"{}\"\nbaud = 115200\n{devices}",
            port.display()
        )
        .replace("bus = \"bus1\"", &format!("bus = \"{name}\"")),
    )
}

const WAVESHARE_LANE: &str = "[[devices]]\nname = \"io-1\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"entry-1\"\n\
    bus = \"bus1\"\nslave = 1\npoll_ms = 50\nroles = { loop_a = \"di1\", loop_b = \"di2\", gate_open = \"di3\", gate_closed = \"di4\" }\n";

#[tokio::test]
async fn rtu_over_pty_reports_loop_and_gate_facts_from_the_waveshare_module() {
    let dir = tempfile::tempdir().unwrap();
    let pty = PtyPair::start(&dir.path().join("bridge"), &dir.path().join("device"));
    let sim = SimModbus::new();
    sim.add_slave(1);
    sim.set_input(1, 3, true); // barrier closed
    let _server = sim.serve_rtu(open_serial(&pty.b));

    let config = bus_config(&pty.a, WAVESHARE_LANE);
    let profiles = load_profiles(&config).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let (_stop, shutdown) = watch::channel(false);
    let _drivers = spawn_all(&config, &profiles, tx, shutdown).await.unwrap();

    let within = Duration::from_secs(3);
    wait_for(
        &mut rx,
        within,
        is_kind("io-1", EventKind::Link { up: true }),
    )
    .await;
    let (closed, _) = wait_for(&mut rx, within, |e| {
        matches!(e.kind, EventKind::Gate { .. })
    })
    .await;
    assert_eq!(
        closed.kind,
        EventKind::Gate {
            position: GatePosition::Closed
        }
    );
    assert_eq!(closed.lane, "entry-1");

    sim.set_input(1, 0, true);
    wait_for(
        &mut rx,
        within,
        is_kind(
            "io-1",
            EventKind::Loop {
                which: LoopId::A,
                occupied: true,
            },
        ),
    )
    .await;
    sim.set_input(1, 3, false);
    sim.set_input(1, 2, true);
    let (ev, _) = wait_for(
        &mut rx,
        within,
        is_kind(
            "io-1",
            EventKind::Gate {
                position: GatePosition::Open,
            },
        ),
    )
    .await;
    assert_eq!(ev.device, "io-1");
    sim.set_input(1, 0, false);
    wait_for(
        &mut rx,
        within,
        is_kind(
            "io-1",
            EventKind::Loop {
                which: LoopId::A,
                occupied: false,
            },
        ),
    )
    .await;
}

#[tokio::test]
async fn full_poll_cycle_sends_only_read_function_codes() {
    // Every shipped RTU profile on one bus, behind a spy that checks each request.
    let dir = tempfile::tempdir().unwrap();
    let driver_pair = PtyPair::start(&dir.path().join("bridge"), &dir.path().join("spy-in"));
    let device_pair = PtyPair::start(&dir.path().join("spy-out"), &dir.path().join("device"));
    let sim = SimModbus::new();
    for slave in [1, 2, 3] {
        sim.add_slave(slave);
    }
    let _server = sim.serve_rtu(open_serial(&device_pair.b));
    let log = spawn_proxy(open_serial(&driver_pair.b), open_serial(&device_pair.a), 0);

    let config = bus_config(
        &driver_pair.a,
        "[[devices]]\nname = \"io\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"entry-1\"\nbus = \"bus1\"\nslave = 1\npoll_ms = 20\nroles = { loop_a = \"di1\" }\n\
         [[devices]]\nname = \"adam\"\nprofile = \"advantech-adam-4051\"\nlane = \"entry-1\"\nbus = \"bus1\"\nslave = 2\npoll_ms = 20\nroles = { loop_b = \"di0\" }\n\
         [[devices]]\nname = \"gate\"\nprofile = \"generic-barrier-holding-status\"\nlane = \"entry-1\"\nbus = \"bus1\"\nslave = 3\npoll_ms = 20\nroles = { gate_status = \"status\", gate_fault = \"motor_fault\" }\n",
    );
    let profiles = load_profiles(&config).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let (_stop, shutdown) = watch::channel(false);
    let _drivers = spawn_all(&config, &profiles, tx, shutdown).await.unwrap();
    for dev in ["io", "adam", "gate"] {
        wait_for(&mut rx, Duration::from_secs(3), move |e| {
            e.device == dev && e.kind == EventKind::Link { up: true }
        })
        .await;
    }
    collect_for(&mut rx, Duration::from_millis(300)).await;

    let log = log.lock().unwrap();
    assert!(
        log.request_functions.len() >= 9,
        "a few full cycles: {:?}",
        log.request_functions.len()
    );
    assert_eq!(
        log.malformed_request_bytes, 0,
        "only well-formed read requests on the bus"
    );
    for fc in [1u8, 2, 3] {
        assert!(
            log.request_functions.contains(&fc),
            "function {fc} used by the profiles"
        );
    }
    assert!(
        log.request_functions.iter().all(|fc| (1..=4).contains(fc)),
        "{:?}",
        log.request_functions
    );
    assert!(sim.forbidden_requests().is_empty());
}

#[tokio::test]
async fn unplugged_port_is_reported_down_and_events_resume_within_two_seconds_of_replug() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("bridge"), dir.path().join("device"));
    let mut pty = PtyPair::start(&a, &b);
    let sim = SimModbus::new();
    sim.add_slave(1);
    let server = sim.serve_rtu(open_serial(&pty.b));

    let config = bus_config(&a, WAVESHARE_LANE);
    let profiles = load_profiles(&config).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let (_stop, shutdown) = watch::channel(false);
    let _drivers = spawn_all(&config, &profiles, tx, shutdown).await.unwrap();
    wait_for(
        &mut rx,
        Duration::from_secs(3),
        is_kind(
            "io-1",
            EventKind::Loop {
                which: LoopId::A,
                occupied: false,
            },
        ),
    )
    .await;

    // Unplug: socat goes away with both pty ends.
    pty.kill();
    server.abort();
    wait_for(
        &mut rx,
        Duration::from_secs(3),
        is_kind("io-1", EventKind::Link { up: false }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Replug under the same names; the loop changed while the adapter was away.
    sim.set_input(1, 0, true);
    let _pty2 = PtyPair::start(&a, &b);
    let _server2 = sim.serve_rtu(open_serial(&b));
    let replugged = tokio::time::Instant::now();
    wait_for(
        &mut rx,
        Duration::from_secs(2),
        is_kind("io-1", EventKind::Link { up: true }),
    )
    .await;
    wait_for(
        &mut rx,
        Duration::from_secs(2),
        is_kind(
            "io-1",
            EventKind::Loop {
                which: LoopId::A,
                occupied: true,
            },
        ),
    )
    .await;
    assert!(
        replugged.elapsed() < Duration::from_secs(2),
        "events resumed after {:?}",
        replugged.elapsed()
    );
}

#[tokio::test]
async fn silent_slave_is_isolated_without_slowing_the_other_slave() {
    let dir = tempfile::tempdir().unwrap();
    let pty = PtyPair::start(&dir.path().join("bridge"), &dir.path().join("device"));
    let sim = SimModbus::new();
    sim.add_slave(1);
    sim.add_slave(2);
    let _server = sim.serve_rtu(open_serial(&pty.b));
    let config = bus_config(
        &pty.a,
        "[[devices]]\nname = \"io-1\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"entry-1\"\nbus = \"bus1\"\nslave = 1\npoll_ms = 50\nroles = { loop_a = \"di1\" }\n\
         [[devices]]\nname = \"io-2\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"exit-1\"\nbus = \"bus1\"\nslave = 2\npoll_ms = 50\nroles = { loop_a = \"di1\" }\n",
    );
    let profiles = load_profiles(&config).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let (_stop, shutdown) = watch::channel(false);
    let _drivers = spawn_all(&config, &profiles, tx, shutdown).await.unwrap();
    wait_for(
        &mut rx,
        Duration::from_secs(3),
        is_kind("io-2", EventKind::Link { up: true }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let rate = |from: u64, to: u64, d: Duration| (to - from) as f64 / d.as_secs_f64();
    let window = Duration::from_millis(1500);
    let before = sim.request_count(2);
    tokio::time::sleep(window).await;
    let healthy_rate = rate(before, sim.request_count(2), window);

    sim.set_answering(1, false);
    wait_for(
        &mut rx,
        Duration::from_secs(3),
        is_kind("io-1", EventKind::Link { up: false }),
    )
    .await;
    let before = sim.request_count(2);
    tokio::time::sleep(window).await;
    let degraded_rate = rate(before, sim.request_count(2), window);
    assert!(
        degraded_rate >= 0.9 * healthy_rate,
        "slave 2 polled {degraded_rate:.1}/s with slave 1 silent vs {healthy_rate:.1}/s before"
    );
    assert!(
        healthy_rate >= 15.0,
        "50 ms period ≈ 20 polls/s, got {healthy_rate:.1}"
    );
    assert!(metrics::TIMEOUTS.with_label_values(&["io-1"]).get() >= 3);

    sim.set_answering(1, true);
    // Isolation is 5 s in the profile; the slave is probed again after it.
    wait_for(
        &mut rx,
        Duration::from_secs(7),
        is_kind("io-1", EventKind::Link { up: true }),
    )
    .await;
}

#[tokio::test]
async fn one_percent_corrupted_frames_are_counted_and_never_become_events() {
    let dir = tempfile::tempdir().unwrap();
    let driver_pair = PtyPair::start(&dir.path().join("bridge"), &dir.path().join("spy-in"));
    let device_pair = PtyPair::start(&dir.path().join("spy-out"), &dir.path().join("device"));
    let sim = SimModbus::new();
    sim.add_slave(1);
    // A mixed pattern so a flipped data bit would show up as an edge.
    sim.set_input(1, 0, true);
    sim.set_input(1, 2, true);
    let _server = sim.serve_rtu(open_serial(&device_pair.b));
    let log = spawn_proxy(
        open_serial(&driver_pair.b),
        open_serial(&device_pair.a),
        100,
    );

    let config = named_bus_config(
        "noisy-bus",
        &driver_pair.a,
        // No debounce: any wrong value would become an event at once.
        "[[devices]]\nname = \"noisy\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"entry-1\"\nbus = \"bus1\"\nslave = 1\npoll_ms = 10\ndebounce_ms = 0\n\
         roles = { loop_a = \"di1\", loop_b = \"di2\", gate_open = \"di3\", gate_closed = \"di4\" }\n",
    );
    let profiles = load_profiles(&config).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let (_stop, shutdown) = watch::channel(false);
    let _drivers = spawn_all(&config, &profiles, tx, shutdown).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut events = Vec::new();
    while log.lock().unwrap().responses < 400 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "too slow: {:?}",
            log.lock().unwrap()
        );
        events.extend(collect_for(&mut rx, Duration::from_millis(200)).await);
    }
    events.extend(collect_for(&mut rx, Duration::from_millis(100)).await);
    let kinds: Vec<_> = events.iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::Link { up: true },
            EventKind::Loop {
                which: LoopId::A,
                occupied: true
            },
            EventKind::Loop {
                which: LoopId::B,
                occupied: false
            },
            EventKind::Gate {
                position: GatePosition::Open
            },
        ],
        "only the initial facts, nothing from corrupted frames"
    );
    let corrupted = log.lock().unwrap().corrupted;
    assert!(corrupted >= 4, "corrupted {corrupted}");
    assert!(metrics::CRC_ERRORS.with_label_values(&["noisy-bus"]).get() >= 1);
}
