//! The monitoring shipped in packaging/monitoring/: the alert rules pass `promtool
//! check rules` and their own `promtool test rules`, the dashboard is valid JSON, and
//! every metric the rules and the dashboard name exists in the `/metrics` of a running
//! bridge with traffic (the demo: simulated devices, real bridge, mock platform).

mod process_common;

use process_common::{Guard, demo_command};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn monitoring(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging/monitoring")
        .join(file)
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(monitoring(""))
        .output()
        .expect(
            "promtool is installed (Debian package prometheus; scripts/test-all.sh installs it)",
        );
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn shipped_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let (ok, out) = promtool(&["check", "rules", "parking-bridge-rules.yml"]);
    assert!(ok, "{out}");
    let (ok, out) = promtool(&["test", "rules", "parking-bridge-rules.test.yml"]);
    assert!(ok, "{out}");
    let rules = std::fs::read_to_string(monitoring("parking-bridge-rules.yml")).unwrap();
    for alert in [
        "PlatformUnreachable",
        "OutboxGrowing",
        "ReportsHeld",
        "DeviceDown",
        "ClockSuspect",
        "DiskBudgetLow",
        "HeartbeatFailing",
    ] {
        assert!(
            rules.contains(&format!("alert: ParkingBridge{alert}")),
            "{alert}"
        );
    }
}

/// Every `parking_bridge_…` name in the text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("parking_bridge_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.insert(name);
    }
    out
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

#[test]
fn every_metric_the_dashboard_and_rules_name_exists_on_a_running_bridge() {
    let dashboard = std::fs::read_to_string(monitoring("grafana-dashboard.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("valid JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() >= 10));
    let rules = std::fs::read_to_string(monitoring("parking-bridge-rules.yml")).unwrap();
    let mut wanted = metric_names(&dashboard);
    wanted.extend(metric_names(&rules));
    assert!(wanted.len() >= 15, "{wanted:?}");

    // The demo: devices on loopback, traffic, the built-in mock platform.
    let dir = tempfile::tempdir().unwrap();
    let mut child = demo_command(
        dir.path(),
        &["--vehicles", "0", "--speed", "4", "--no-images"],
    )
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let demo = Guard(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("status page: http://") {
                let _ = tx.send(url.trim_end_matches('/').to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the demo prints its status page address");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut missing;
    loop {
        let text = http_get(&addr, "/metrics").unwrap_or_default();
        let present = metric_names(&text);
        missing = wanted
            .iter()
            .filter(|name| !present.contains(*name))
            .cloned()
            .collect::<Vec<_>>();
        if missing.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(missing.is_empty(), "named but never exported: {missing:?}");
    // The demo's page is the operator's page, with the devices' link strips.
    let page = http_get(&addr, "/").unwrap_or_default();
    assert!(page.contains(r#"<svg class="strip""#), "{page}");
    assert!(page.contains("chart-passages"), "{page}");
    drop(demo);
}
