//! Modbus TCP driver against a tokio-modbus TCP server on loopback.

mod driver_common;

use driver_common::*;
use parking_bridge::event::{GatePosition, LoopId};
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
