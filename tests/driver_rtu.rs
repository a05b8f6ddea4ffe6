//! Modbus RTU driver against a tokio-modbus RTU server playing the DI modules, over
//! real socat pty pairs.

mod driver_common;

use driver_common::*;
use parking_bridge::driver::metrics;
use parking_bridge::event::{EventKind, GatePosition, LoopId};
use std::path::Path;
use std::time::Duration;

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
    let bus = rtu_bus(dir.path(), &[1]);
    bus.sim.set_input(1, 3, true); // barrier closed

    let mut drivers = spawn_drivers(&bus_config(&bus.pty.a, WAVESHARE_LANE)).await;
    let rx = &mut drivers.rx;
    let within = Duration::from_secs(3);
    wait_kind(rx, within, "io-1", link(true)).await;
    let (closed, _) = wait_for(rx, within, |e| matches!(e.kind, EventKind::Gate { .. })).await;
    assert_eq!(closed.kind, gate(GatePosition::Closed));
    assert_eq!(closed.lane, "entry-1");

    bus.sim.set_input(1, 0, true);
    wait_kind(rx, within, "io-1", loop_state(LoopId::A, true)).await;
    bus.sim.set_input(1, 3, false);
    bus.sim.set_input(1, 2, true);
    let ev = wait_kind(rx, within, "io-1", gate(GatePosition::Open)).await;
    assert_eq!(ev.device, "io-1");
    bus.sim.set_input(1, 0, false);
    wait_kind(rx, within, "io-1", loop_state(LoopId::A, false)).await;
}

#[tokio::test]
async fn full_poll_cycle_sends_only_read_function_codes() {
    // Every shipped RTU profile on one bus, behind a spy that checks each request.
    let dir = tempfile::tempdir().unwrap();
    let bus = spied_rtu_bus(dir.path(), &[1, 2, 3], 0);

    let config = bus_config(
        &bus.driver_pair.a,
        "[[devices]]\nname = \"io\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"entry-1\"\nbus = \"bus1\"\nslave = 1\npoll_ms = 20\nroles = { loop_a = \"di1\" }\n\
         [[devices]]\nname = \"adam\"\nprofile = \"advantech-adam-4051\"\nlane = \"entry-1\"\nbus = \"bus1\"\nslave = 2\npoll_ms = 20\nroles = { loop_b = \"di0\" }\n\
         [[devices]]\nname = \"gate\"\nprofile = \"generic-barrier-holding-status\"\nlane = \"entry-1\"\nbus = \"bus1\"\nslave = 3\npoll_ms = 20\nroles = { gate_status = \"status\", gate_fault = \"motor_fault\" }\n",
    );
    let mut drivers = spawn_drivers(&config).await;
    for dev in ["io", "adam", "gate"] {
        wait_kind(&mut drivers.rx, Duration::from_secs(3), dev, link(true)).await;
    }
    // At least three full cycles (3 devices each), however loaded the machine is.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while bus.log.lock().unwrap().request_functions.len() < 9
        && tokio::time::Instant::now() < deadline
    {
        collect_for(&mut drivers.rx, Duration::from_millis(100)).await;
    }

    let log = bus.log.lock().unwrap();
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
    assert!(bus.sim.forbidden_requests().is_empty());
}

#[tokio::test]
async fn unplugged_port_is_reported_down_and_events_resume_within_two_seconds_of_replug() {
    let dir = tempfile::tempdir().unwrap();
    let mut bus = rtu_bus(dir.path(), &[1]);
    let (a, b) = (bus.pty.a.clone(), bus.pty.b.clone());

    let mut drivers = spawn_drivers(&bus_config(&a, WAVESHARE_LANE)).await;
    let rx = &mut drivers.rx;
    let within = Duration::from_secs(3);
    wait_kind(rx, within, "io-1", loop_state(LoopId::A, false)).await;

    let reopens = || metrics::REOPENS.with_label_values(&["bus1"]).get();
    let reopens_before = reopens();
    // Unplug: socat goes away with both pty ends.
    bus.pty.kill();
    bus.server.abort();
    wait_kind(rx, within, "io-1", link(false)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Replug under the same names; the loop changed while the adapter was away.
    bus.sim.set_input(1, 0, true);
    let _pty2 = PtyPair::start(&a, &b);
    let _server2 = bus.sim.serve_rtu(open_serial(&b));
    let replugged = tokio::time::Instant::now();
    let within = Duration::from_secs(2);
    wait_kind(rx, within, "io-1", link(true)).await;
    wait_kind(rx, within, "io-1", loop_state(LoopId::A, true)).await;
    assert!(
        replugged.elapsed() < Duration::from_secs(2),
        "events resumed after {:?}",
        replugged.elapsed()
    );
    assert!(
        reopens() > reopens_before,
        "parking_bridge_bus_reopens_total counts the reopen"
    );
}

#[tokio::test]
async fn silent_slave_is_isolated_without_slowing_the_other_slave() {
    let dir = tempfile::tempdir().unwrap();
    let bus = rtu_bus(dir.path(), &[1, 2]);
    let sim = &bus.sim;
    let config = bus_config(
        &bus.pty.a,
        "[[devices]]\nname = \"io-1\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"entry-1\"\nbus = \"bus1\"\nslave = 1\npoll_ms = 50\nroles = { loop_a = \"di1\" }\n\
         [[devices]]\nname = \"io-2\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"exit-1\"\nbus = \"bus1\"\nslave = 2\npoll_ms = 50\nroles = { loop_a = \"di1\" }\n",
    );
    let mut drivers = spawn_drivers(&config).await;
    let rx = &mut drivers.rx;
    wait_kind(rx, Duration::from_secs(3), "io-2", link(true)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let rate = |from: u64, to: u64, d: Duration| (to - from) as f64 / d.as_secs_f64();
    let window = Duration::from_millis(1500);
    let before = sim.request_count(2);
    tokio::time::sleep(window).await;
    let healthy_rate = rate(before, sim.request_count(2), window);

    // A delta: other tests in this process also poll a device named io-1.
    let timeouts_before = metrics::TIMEOUTS.with_label_values(&["io-1"]).get();
    sim.set_answering(1, false);
    wait_kind(rx, Duration::from_secs(3), "io-1", link(false)).await;
    // A slave that just went silent gets one early probe after 1 s (the next after 2 s
    // more): measure between them.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let before = sim.request_count(2);
    tokio::time::sleep(window).await;
    let degraded_rate = rate(before, sim.request_count(2), window);
    // Not isolated, every cycle would wait out slave 1's timeout and slave 2 would
    // drop to a few polls a second; half the healthy rate leaves room for a loaded
    // CI machine's scheduling (measured rates there swing by a third).
    assert!(
        degraded_rate >= 0.5 * healthy_rate,
        "slave 2 polled {degraded_rate:.1}/s with slave 1 silent vs {healthy_rate:.1}/s before"
    );
    assert!(
        healthy_rate >= 8.0,
        "50 ms period ≈ 20 polls/s, got {healthy_rate:.1}"
    );
    let timeouts = metrics::TIMEOUTS.with_label_values(&["io-1"]).get() - timeouts_before;
    assert!(
        timeouts >= 3,
        "{timeouts} timeouts counted for the silent slave"
    );

    sim.set_answering(1, true);
    // Isolation is 5 s in the profile; the slave is probed again within it.
    wait_kind(rx, Duration::from_secs(7), "io-1", link(true)).await;
}

#[tokio::test]
async fn a_slave_silent_for_a_second_is_probed_early_and_back_long_before_its_isolation_ends() {
    let dir = tempfile::tempdir().unwrap();
    let bus = rtu_bus(dir.path(), &[1]);
    let sim = &bus.sim;
    let config = bus_config(
        &bus.pty.a,
        "[[devices]]\nname = \"io-1\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"entry-1\"\nbus = \"bus1\"\nslave = 1\npoll_ms = 50\nroles = { loop_a = \"di1\" }\n",
    );
    let mut drivers = spawn_drivers(&config).await;
    let rx = &mut drivers.rx;
    wait_kind(rx, Duration::from_secs(3), "io-1", link(true)).await;
    sim.set_answering(1, false);
    wait_kind(rx, Duration::from_secs(3), "io-1", link(false)).await;
    let down = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    sim.set_answering(1, true);
    // The profile isolates for 5 s; the early probe comes after 1 s.
    wait_kind(rx, Duration::from_secs(3), "io-1", link(true)).await;
    assert!(
        down.elapsed() < Duration::from_millis(2_000),
        "link back after {:?}",
        down.elapsed()
    );
}

#[tokio::test]
async fn one_percent_corrupted_frames_are_counted_and_never_become_events() {
    let dir = tempfile::tempdir().unwrap();
    let bus = spied_rtu_bus(dir.path(), &[1], 100);
    // A mixed pattern so a flipped data bit would show up as an edge.
    bus.sim.set_input(1, 0, true);
    bus.sim.set_input(1, 2, true);
    let log = &bus.log;

    let config = named_bus_config(
        "noisy-bus",
        &bus.driver_pair.a,
        // No debounce: any wrong value would become an event at once.
        "[[devices]]\nname = \"noisy\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"entry-1\"\nbus = \"bus1\"\nslave = 1\npoll_ms = 10\ndebounce_ms = 0\n\
         roles = { loop_a = \"di1\", loop_b = \"di2\", gate_open = \"di3\", gate_closed = \"di4\" }\n",
    );
    let crc_before = metrics::CRC_ERRORS.with_label_values(&["noisy-bus"]).get();
    let mut drivers = spawn_drivers(&config).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut events = Vec::new();
    while log.lock().unwrap().responses < 400 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "too slow: {:?}",
            log.lock().unwrap()
        );
        events.extend(collect_for(&mut drivers.rx, Duration::from_millis(200)).await);
    }
    events.extend(collect_for(&mut drivers.rx, Duration::from_millis(100)).await);
    let kinds: Vec<_> = events.iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        kinds,
        vec![
            link(true),
            loop_state(LoopId::A, true),
            loop_state(LoopId::B, false),
            gate(GatePosition::Open),
        ],
        "only the initial facts, nothing from corrupted frames"
    );
    let corrupted = log.lock().unwrap().corrupted;
    assert!(corrupted >= 4, "corrupted {corrupted}");
    let crc = metrics::CRC_ERRORS.with_label_values(&["noisy-bus"]).get() - crc_before;
    assert!(
        crc >= 1,
        "{crc} CRC errors counted for {corrupted} corrupted frames"
    );
}

#[tokio::test]
async fn rtu_slave_answering_every_read_with_exception_02_is_faulty_within_three_polls() {
    // The 16-input ADAM-4051 profile on an 8-input module: exception 02 on every poll.
    let dir = tempfile::tempdir().unwrap();
    let bus = rtu_bus(dir.path(), &[1]);
    bus.sim.limit_inputs(1, 8);
    let config = bus_config(
        &bus.pty.a,
        "[[devices]]\nname = \"adam\"\nprofile = \"advantech-adam-4051\"\nlane = \"entry-1\"\nbus = \"bus1\"\nslave = 1\npoll_ms = 300\nroles = { loop_a = \"di0\", loop_b = \"di9\" }\n",
    );
    let exceptions_before = metrics::EXCEPTIONS.with_label_values(&["adam"]).get();
    let mut drivers = spawn_drivers(&config).await;
    let (ev, before) = wait_for(&mut drivers.rx, Duration::from_secs(3), |e| {
        faulty_problem(e).is_some()
    })
    .await;
    let polls = bus.sim.request_count(1);
    assert!(polls <= 3, "faulty only after {polls} polls");
    let exceptions = metrics::EXCEPTIONS.with_label_values(&["adam"]).get() - exceptions_before;
    // Confirmed over two polls, so two were counted; never more than were answered.
    let answered = bus.sim.request_count(1);
    assert!(
        (2..=answered).contains(&exceptions),
        "{exceptions} exceptions counted for {answered} polls"
    );
    let problem = faulty_problem(&ev).unwrap();
    assert!(
        problem.contains("exception 02") && problem.contains("function 1 address 0 count 16"),
        "{problem}"
    );
    assert!(
        problem.contains("di0, di9"),
        "names the bound points: {problem}"
    );
    // It answers, so the link is up (not down): the state is faulty, not down.
    assert!(
        before.iter().any(|e| e.kind == link(true)),
        "link up: {before:?}"
    );
    assert!(before.iter().all(|e| e.kind != link(false)), "{before:?}");
}
