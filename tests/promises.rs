//! Promises of the README and docs/operations.md that no other test held the bridge
//! to, each through the real binary: `[platform] proxy` and `[platform.paths]` on a
//! real request, `stay exit --price/--should-pay/--paid` reaching the platform,
//! `--log-format json` through `run`, `[storage] retention_days` pruning inside
//! `run`, and an unknown lot raising the platform alarm metric.

mod platform_common;
mod process_common;
mod store_common;

use process_common::{Guard, wait_until};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A plain HTTP server on a port it bound itself (port 0): records each request's
/// first line and answers every request with the platform's success.
struct Recorder {
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&lines);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let seen = Arc::clone(&seen);
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut first = String::new();
                    if reader.read_line(&mut first).is_err() {
                        return;
                    }
                    let mut length = 0usize;
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 {
                            break;
                        }
                        let header = header.trim();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; length];
                    let _ = reader.read_exact(&mut body);
                    seen.lock().unwrap().push(first.trim().to_string());
                    let answer =
                        r#"{"success":true,"result_code":"success","result_msg":"success"}"#;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                });
            }
        });
        Recorder { port, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

/// A site config whose `[platform]` section is `platform` (TOML lines).
fn config_with(dir: &Path, platform: &str) -> std::path::PathBuf {
    let text = format!(
        r#"[platform]
app_id = "{app}"
app_secret = "{secret}"
connect_timeout_secs = 2
request_timeout_secs = 5
{platform}

[lot]
parking_lot_no = "LOT-P"
total_spaces = 100

[storage]
dir = "{}"

[[lanes]]
id = "entry-1"
direction = "entry"
port_no = "E1"
"#,
        dir.join("state").display(),
        app = platform_common::APP_ID,
        secret = platform_common::SECRET,
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn platform_test(config: &Path) -> std::process::Output {
    platform_common::run_cli(
        &["platform-test", "--config", config.to_str().unwrap()],
        Duration::from_secs(30),
    )
}

#[test]
fn platform_proxy_carries_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Recorder::start();
    // A host that does not resolve: only through the proxy can the request succeed.
    let config = config_with(
        dir.path(),
        &format!(
            "base_url = \"http://citybrain.invalid\"\nproxy = \"http://127.0.0.1:{}\"",
            proxy.port
        ),
    );
    let out = platform_test(&config);
    assert!(
        out.status.success(),
        "{}{}",
        platform_common::stdout(&out),
        platform_common::stderr(&out)
    );
    // An HTTP proxy gets the absolute URL in the request line.
    assert_eq!(
        proxy.lines(),
        ["POST http://citybrain.invalid/barrier/heartbeat HTTP/1.1"]
    );
}

#[test]
fn platform_paths_are_used_on_a_real_request() {
    let dir = tempfile::tempdir().unwrap();
    let platform = Recorder::start();
    let config = config_with(
        dir.path(),
        &format!(
            "base_url = \"http://127.0.0.1:{}/gateway\"\n\n[platform.paths]\nheartbeat = \"/v2/heartbeat\"",
            platform.port
        ),
    );
    let out = platform_test(&config);
    assert!(
        out.status.success(),
        "{}{}",
        platform_common::stdout(&out),
        platform_common::stderr(&out)
    );
    assert_eq!(
        platform.lines(),
        ["POST /gateway/v2/heartbeat HTTP/1.1"],
        "base_url's path, then the configured heartbeat path"
    );
}

#[test]
fn stay_exit_price_should_pay_and_paid_reach_the_platform() {
    use store_common::*;
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(&dir.path().join("rec.jsonl"), &[]);
    let cfg = write_site(dir.path(), &mock.base_url(), &Site::default());
    let _bridge = Bridge::start(&cfg, &dir.path().join("run.log"));
    let order = enter(&cfg, "闽A54321");
    let mut args = stay_exit_args(cfg.to_str().unwrap(), "闽A54321", "exit-1");
    args.extend(["--price", "1200", "--should-pay", "200", "--paid", "1000"]);
    let out = cli(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), order);
    process_common::wait_until("the exit is accepted", Duration::from_secs(30), || {
        mock.records()
            .iter()
            .any(|r| r.kind() == "away" && r.accepted)
    });
    let recs = mock.records();
    let exit = recs
        .iter()
        .find(|r| r.kind() == "away" && r.accepted)
        .unwrap();
    assert_eq!(exit.body["out_order_no"], order.as_str());
    assert_eq!(
        (
            exit.body["price"].as_i64(),
            exit.body["should_pay"].as_i64(),
            exit.body["paid_fee"].as_i64()
        ),
        (Some(1200), Some(200), Some(1000)),
        "{:?}",
        exit.body
    );
}

#[test]
fn run_with_log_format_json_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mock = platform_common::MockProcess::start(&["--parking-lot-no", "LOT-P"]);
    let config = config_with(
        dir.path(),
        &format!("base_url = \"{}\"\nheartbeat_secs = 1", mock.base_url()),
    );
    let log = dir.path().join("run.log");
    let mut run = Guard(
        Command::new(platform_common::BIN)
            .args(["--log-format", "json", "run", "--config"])
            .arg(&config)
            .env_remove("PARKING_BRIDGE_APP_SECRET")
            .env_remove("JOURNAL_STREAM")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    // Until the first heartbeat was answered (a line about it, or a few lines).
    wait_until("run logs", Duration::from_secs(30), || {
        if let Ok(Some(status)) = run.0.try_wait() {
            panic!(
                "run exited {status}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
            >= 3
    });
    drop(run);
    let text = std::fs::read_to_string(&log).unwrap();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["fields"]["message"].is_string(), "{line}");
        assert!(v["timestamp"].is_string(), "{line}");
    }
    assert!(
        !text.contains(platform_common::SECRET),
        "the secret is never logged"
    );
}

#[test]
fn run_prunes_delivered_stays_past_retention_days_and_keeps_recent_ones() {
    use parking_bridge::store::{Outcome, Store};
    use parking_bridge::time::Timestamp;
    use store_common::*;
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(&dir.path().join("rec.jsonl"), &[]);
    let cfg = write_site(
        dir.path(),
        &mock.base_url(),
        &Site {
            extra_storage: "retention_days = 1".into(),
            ..Site::default()
        },
    );
    let site = parking_bridge::config::SiteConfig::load(&cfg).unwrap();
    let now = Timestamp::now();
    let three_days_ago = now.plus_millis(-3 * 24 * 3_600_000);
    {
        let store = Store::open_site(&site).unwrap();
        // One stay delivered three days ago, one delivered now.
        for (plate, at) in [("闽A00001", three_days_ago), ("闽A00002", now)] {
            let mut stay = new_stay(plate, None);
            stay.entered_at = at;
            let opened = store.open_stay(stay, at).unwrap();
            let mut exit = exit_details();
            exit.away_time = at.plus_millis(60_000);
            store
                .close_stay(&opened.out_order_no, exit, at.plus_millis(60_000))
                .unwrap();
            // Entry first, then the exit (one head per stay at a time).
            loop {
                let due = store
                    .due_reports(Timestamp(i64::MAX / 2), 10, false, &Default::default())
                    .unwrap();
                if due.is_empty() {
                    break;
                }
                let delivered: Vec<Outcome> = due
                    .iter()
                    .map(|item| Outcome::Delivered {
                        id: item.id,
                        result_code: Some("success".into()),
                        inner_oder_no: None,
                        sign_level: None,
                        sign_time: None,
                    })
                    .collect();
                store
                    .record_outcomes(&delivered, at.plus_millis(120_000))
                    .unwrap();
            }
        }
        assert_eq!(store.list_stays(false, 10).unwrap().len(), 2);
    }
    let log = dir.path().join("run.log");
    let bridge = Bridge::start(&cfg, &log);
    wait_until(30, "run prunes past retention", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("pruned acknowledged reports past retention")
    });
    bridge.kill();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("rows=2"), "the old entry and exit: {text}");
    let store = Store::open_site(&site).unwrap();
    let plates: Vec<String> = store
        .list_stays(false, 10)
        .unwrap()
        .into_iter()
        .map(|s| s.plate_no)
        .collect();
    assert_eq!(plates, ["闽A00002"], "the recent stay is kept");
}

/// The status-page address `run` logged (it binds port 0 itself).
fn logged_http_addr(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains("status page, /metrics"))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .map(str::to_string)
}

/// The sum over the samples of metric family `name` in a Prometheus text page.
fn family_sum(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| series.split('{').next() == Some(name))
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

fn get(addr: &str, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

#[test]
fn a_platform_that_does_not_know_the_lot_raises_the_platform_alarm_for_a_report() {
    let dir = tempfile::tempdir().unwrap();
    // The platform knows only LOT-A; the site reports as LOT-P.
    let mock = platform_common::MockProcess::start(&["--parking-lot-no", "LOT-A"]);
    let config = config_with(
        dir.path(),
        &format!("base_url = \"{}\"\nheartbeat_secs = 1", mock.base_url()),
    );
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[http]\nlisten = \"127.0.0.1:0\"\nrequire_clock_sync = false\ndisk_full_percent = 100\n",
    );
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("run.log");
    let _run = Guard(
        Command::new(platform_common::BIN)
            .args(["run", "--config"])
            .arg(&config)
            .env_remove("PARKING_BRIDGE_APP_SECRET")
            .env_remove("JOURNAL_STREAM")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let mut addr = String::new();
    wait_until("the status page listens", Duration::from_secs(30), || {
        logged_http_addr(&log).map(|a| addr = a).is_some()
    });
    // A report (heartbeats do not raise it): a car entering, by the operator command.
    let out = platform_common::run_cli(
        &[
            "stay",
            "enter",
            "--config",
            config.to_str().unwrap(),
            "--plate",
            "闽A12345",
            "--color",
            "pnc_02",
            "--lane",
            "entry-1",
        ],
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", platform_common::stderr(&out));
    wait_until(
        "parking_bridge_platform_alarms_total moves",
        Duration::from_secs(30),
        || {
            get(&addr, "/metrics")
                .is_some_and(|m| family_sum(&m, "parking_bridge_platform_alarms_total") >= 1.0)
        },
    );
}
