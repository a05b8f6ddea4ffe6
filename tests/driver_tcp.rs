//! Modbus TCP driver against a tokio-modbus TCP server on loopback.

mod driver_common;

use driver_common::*;
use parking_bridge::event::{EventKind, GatePosition, LoopId};
use std::time::Duration;

#[tokio::test]
async fn tcp_gateway_and_barrier_controller_report_facts_with_reads_only() {
    let sim = sim_with(&[1, 2]);
    sim.set_holding(2, 0, 0); // closed
    let addr = sim.serve_tcp("127.0.0.1:0").await.unwrap();
    let config = site_config(
        "",
        &format!(
            "[[devices]]\nname = \"gw\"\nprofile = \"generic-modbus-tcp-di-gateway\"\nlane = \"entry-1\"\ntcp = \"{addr}\"\nslave = 1\npoll_ms = 50\n\
             roles = {{ loop_a = \"di1\", loop_b = \"di2\" }}\n\
             [[devices]]\nname = \"barrier\"\nprofile = \"generic-barrier-holding-status\"\nlane = \"entry-1\"\ntcp = \"{addr}\"\nslave = 2\npoll_ms = 50\n\
             roles = {{ gate_status = \"status\", gate_fault = \"motor_fault\" }}\n"
        ),
    );
    // Deltas: the registry is the process's.
    let polls = || {
        parking_bridge::driver::metrics::POLLS
            .with_label_values(&["gw"])
            .get()
    };
    let polls_before = polls();
    let mut drivers = spawn_drivers(&config).await;
    assert_eq!(
        drivers.set.names(),
        vec![format!("tcp:{addr}").as_str()],
        "one connection per endpoint"
    );

    let rx = &mut drivers.rx;
    let within = Duration::from_secs(3);
    wait_kind(rx, within, "barrier", gate(GatePosition::Closed)).await;
    sim.set_input(1, 1, true);
    let ev = wait_kind(rx, within, "gw", loop_state(LoopId::B, true)).await;
    assert_eq!(ev.lane, "entry-1");
    sim.set_holding(2, 0, 1);
    wait_kind(rx, within, "barrier", gate(GatePosition::Open)).await;
    sim.set_holding(2, 1, 1); // motor fault flag
    wait_kind(rx, within, "barrier", gate(GatePosition::Fault)).await;

    let codes = sim.function_codes();
    assert!(codes.keys().all(|fc| (1..=4).contains(fc)), "{codes:?}");
    assert!(
        codes.contains_key(&2) && codes.contains_key(&3),
        "{codes:?}"
    );
    assert!(sim.forbidden_requests().is_empty());
    assert!(
        polls() > polls_before,
        "parking_bridge_modbus_polls_total moved"
    );
}

#[tokio::test]
async fn tcp_device_that_goes_away_is_reported_down_then_up() {
    let sim = sim_with(&[1]);
    let addr = sim.serve_tcp("127.0.0.1:0").await.unwrap();
    let config = site_config(
        "",
        &format!(
            "[[devices]]\nname = \"gw\"\nprofile = \"generic-modbus-tcp-di-gateway\"\nlane = \"entry-1\"\ntcp = \"{addr}\"\npoll_ms = 50\nroles = {{ loop_a = \"di1\" }}\n"
        ),
    );
    let mut drivers = spawn_drivers(&config).await;
    let rx = &mut drivers.rx;
    wait_kind(rx, Duration::from_secs(3), "gw", link(true)).await;
    sim.set_answering(1, false);
    wait_kind(rx, Duration::from_secs(3), "gw", link(false)).await;
    sim.set_answering(1, true);
    wait_kind(rx, Duration::from_secs(8), "gw", link(true)).await;
}

/// A Modbus TCP "gateway" in front of `sim`: forwards every connection it accepts on
/// `listen` to `backend`. Aborting the returned task set takes it away completely
/// (listener and live connections closed), as a gateway that reboots does.
async fn gateway(
    listen: std::net::SocketAddr,
    backend: std::net::SocketAddr,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> (std::net::SocketAddr, tokio::task::JoinSet<()>) {
    let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut set = tokio::task::JoinSet::new();
    let conns = std::sync::Arc::new(tokio::sync::Mutex::new(tokio::task::JoinSet::new()));
    let held = conns.clone();
    set.spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.lock().await.spawn(async move {
                if let Ok(mut device) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut device).await;
                }
            });
        }
    });
    // The connections die with the set: this task owns them and is aborted with it.
    set.spawn(async move {
        let _keep = conns;
        std::future::pending::<()>().await;
    });
    (addr, set)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_gateway_that_goes_away_and_comes_back_is_reconnected() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let sim = sim_with(&[1]);
    let backend = sim.serve_tcp("127.0.0.1:0").await.unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let (addr, mut gw) = gateway("127.0.0.1:0".parse().unwrap(), backend, accepted.clone()).await;
    let config = site_config(
        "",
        &format!(
            "[[devices]]\nname = \"gw\"\nprofile = \"generic-modbus-tcp-di-gateway\"\nlane = \"entry-1\"\ntcp = \"{addr}\"\npoll_ms = 50\nroles = {{ loop_a = \"di1\" }}\n"
        ),
    );
    let mut drivers = spawn_drivers(&config).await;
    let rx = &mut drivers.rx;
    wait_kind(rx, Duration::from_secs(3), "gw", link(true)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // The gateway goes away: its listener and the open connection are closed.
    gw.abort_all();
    while gw.join_next().await.is_some() {}
    wait_kind(rx, Duration::from_secs(5), "gw", link(false)).await;
    // The loop changes while it is away.
    sim.set_input(1, 0, true);

    // Back on the same address: the driver connects again by itself and reports.
    let (again, _gw) = gateway(addr, backend, accepted.clone()).await;
    assert_eq!(again, addr);
    wait_kind(rx, Duration::from_secs(10), "gw", link(true)).await;
    wait_kind(
        rx,
        Duration::from_secs(3),
        "gw",
        loop_state(LoopId::A, true),
    )
    .await;
    assert!(
        accepted.load(Ordering::SeqCst) >= 2,
        "a new connection was made"
    );
}

#[tokio::test]
async fn slave_answering_every_read_with_exception_02_is_faulty_within_three_polls() {
    // An 8-input module behind a gateway, polled with the 16-input gateway profile:
    // every read is answered with exception 02 (illegal data address).
    let sim = sim_with(&[1]);
    sim.limit_inputs(1, 8);
    let addr = sim.serve_tcp("127.0.0.1:0").await.unwrap();
    let config = site_config(
        "",
        &format!(
            "[[devices]]\nname = \"gw\"\nprofile = \"generic-modbus-tcp-di-gateway\"\nlane = \"entry-1\"\ntcp = \"{addr}\"\npoll_ms = 300\nroles = {{ loop_a = \"di1\" }}\n"
        ),
    );
    let mut drivers = spawn_drivers(&config).await;
    let (ev, before) = wait_for(&mut drivers.rx, Duration::from_secs(3), |e| {
        faulty_problem(e).is_some()
    })
    .await;
    // Read at once: the next poll is 300 ms away.
    let polls = sim.request_count(1);
    assert!(polls <= 3, "faulty only after {polls} polls");
    let problem = faulty_problem(&ev).unwrap();
    assert!(
        problem.contains("exception 02 (illegal data address")
            && problem.contains("function 2 address 0 count 16")
            && problem.contains("di1"),
        "{problem}"
    );
    assert!(
        before
            .iter()
            .all(|e| !matches!(e.kind, EventKind::Loop { .. })),
        "no data from a faulty slave: {before:?}"
    );
    // Once per change: no repeat while it stays faulty.
    let later = collect_for(&mut drivers.rx, Duration::from_millis(700)).await;
    assert!(
        later.iter().all(|e| faulty_problem(e).is_none()),
        "{later:?}"
    );
    // The module swapped for a 16-input one: usable again, and its data flows.
    sim.limit_inputs(1, 64);
    sim.set_input(1, 0, true);
    wait_kind(
        &mut drivers.rx,
        Duration::from_secs(3),
        "gw",
        EventKind::Fault { problem: None },
    )
    .await;
    wait_kind(
        &mut drivers.rx,
        Duration::from_secs(3),
        "gw",
        loop_state(LoopId::A, true),
    )
    .await;
}
