//! Device health end to end, in one process: a Modbus TCP slave that answers every read
//! with exception 02, the real bridge (drivers, lane task, operations endpoint), and
//! `/healthz`, `/metrics` and the status page saying which device is faulty and why.

mod driver_common;
mod process_common;

use driver_common::{rtu_bus, sim_with};
use parking_bridge::config::SiteConfig;
use parking_bridge::service::Bridge;
use std::path::Path;
use std::time::Duration;

/// The site with one lane and the device section `device`.
fn config(storage: &Path, http_port: u16, modbus: &str) -> SiteConfig {
    site(
        storage,
        http_port,
        &format!(
            "[[devices]]\nname = \"io-gw\"\nprofile = \"generic-modbus-tcp-di-gateway\"\nlane = \"entry-1\"\ntcp = \"{modbus}\"\npoll_ms = 100\nroles = {{ loop_a = \"di1\", loop_b = \"di2\" }}\n"
        ),
    )
}

fn site(storage: &Path, http_port: u16, device: &str) -> SiteConfig {
    let text = format!(
        r#"
[platform]
base_url = "http://127.0.0.1:9"
app_id = "app-1"
app_secret = "0123456789abcdef"
[lot]
parking_lot_no = "LOT-H"
total_spaces = 10
[storage]
dir = "{}"
[http]
listen = "127.0.0.1:{http_port}"
platform_down_secs = 3600
require_clock_sync = false
disk_full_percent = 100
[[lanes]]
id = "entry-1"
direction = "entry"
port_no = "P1"
{device}
"#,
        storage.display()
    );
    SiteConfig::from_toml(&text, Path::new("test.toml")).unwrap()
}

/// Polls `/healthz` until its level (first line: ok, degraded, failing) is `want`
/// with a body containing `needle`. Degraded answers 200, as ok does.
async fn healthz_until(base: &str, want: &str, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = get(&format!("{base}/healthz")).await;
        if status == 200 && body.lines().next() == Some(want) && body.contains(needle) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "healthz never {want} with {needle:?}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(url: &str) -> (u16, String) {
    let r = tokio::time::timeout(Duration::from_secs(5), reqwest::get(url))
        .await
        .unwrap()
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn healthz_metrics_and_status_page_name_a_slave_that_answers_only_exceptions() {
    let sim = sim_with(&[1]);
    sim.limit_inputs(1, 8); // 8-input module, 16-input profile: exception 02
    let modbus = sim.serve_tcp("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = process_common::free_port();
    let bridge = Bridge::start(config(dir.path(), port, &modbus.to_string()))
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let body = healthz_until(&base, "degraded", "faulty").await;
    assert!(
        body.contains("lane entry-1: device io-gw faulty: exception 02 (illegal data address")
            && body.contains("di1"),
        "{body}"
    );
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    assert!(
        metrics.contains(r#"parking_bridge_device_faulty{device="io-gw",lane="entry-1"} 1"#),
        "{metrics}"
    );
    let (_, page) = get(&format!("{base}/")).await;
    assert!(page.contains("io-gw faulty: exception 02"), "{page}");

    // The right module fitted: healthy again.
    sim.limit_inputs(1, 64);
    healthz_until(&base, "ok", "").await;
    bridge.stop().await;
}

#[tokio::test]
async fn healthz_names_an_rtu_slave_that_answers_only_exceptions() {
    // The 16-input ADAM-4051 profile on an 8-input module, over a real pty pair.
    let dir = tempfile::tempdir().unwrap();
    let bus = rtu_bus(dir.path(), &[1]);
    bus.sim.limit_inputs(1, 8);
    let port = process_common::free_port();
    let device = format!(
        "[[buses]]\nname = \"bus1\"\nport = \"{}\"\nbaud = 115200\n\
         [[devices]]\nname = \"adam\"\nprofile = \"advantech-adam-4051\"\nlane = \"entry-1\"\nbus = \"bus1\"\nslave = 1\npoll_ms = 100\nroles = {{ loop_a = \"di0\", loop_b = \"di1\" }}\n",
        bus.pty.a.display()
    );
    let bridge = Bridge::start(site(&dir.path().join("state"), port, &device))
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let body = healthz_until(&base, "degraded", "faulty").await;
    assert!(
        body.contains("lane entry-1: device adam faulty: exception 02 (illegal data address")
            && body.contains("function 1 address 0 count 16"),
        "{body}"
    );
    bus.sim.limit_inputs(1, 64);
    healthz_until(&base, "ok", "").await;
    bridge.stop().await;
}
