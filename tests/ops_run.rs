//! Operations of the real `parking-bridge run` process against `mock-platform` (also a
//! real process): READY=1 on the notify socket, `/healthz` 200 → 503 when the platform
//! goes away → 200 when it is back, a passage made with the operator command shows on
//! `/metrics` and on the status page in headless Chromium (plate masked), SIGHUP
//! re-reads the log level.

mod platform_common;
mod process_common;

use platform_common::MockProcess;
use process_common::{Guard, dump_dom, output_within, wait_until};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_parking-bridge");
const APP_ID: &str = "app-ops";
const SECRET: &str = "0123456789abcdef";

/// `mock-platform` on `port`, once it says it listens.
fn mock_platform(port: u16) -> MockProcess {
    MockProcess::start_on(port, APP_ID, SECRET, &["--parking-lot-no", "LOT-OPS"])
}

/// The config; `http_port` 0 lets the bridge pick its port (read back from its log).
fn write_config(dir: &Path, platform_port: u16, http_port: u16, level: &str) -> PathBuf {
    let text = format!(
        r#"
[platform]
base_url = "http://127.0.0.1:{platform_port}"
app_id = "{APP_ID}"
heartbeat_secs = 1
connect_timeout_secs = 1
request_timeout_secs = 2
[lot]
parking_lot_no = "LOT-OPS"
total_spaces = 80
[storage]
dir = "{}"
[[lanes]]
id = "entry-1"
direction = "entry"
port_no = "P-IN"
[[lanes]]
id = "exit-1"
direction = "exit"
port_no = "P-OUT"
[http]
listen = "127.0.0.1:{http_port}"
platform_down_secs = 3
require_clock_sync = false
disk_full_percent = 100
[logging]
level = "{level}"
"#,
        dir.join("state").display()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A minimal HTTP/1.0 GET over std: enough for our own endpoint.
fn http_get(url: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// The sum of every sample of each metric family (labels summed over).
fn metric_families(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series).to_string();
        let value: f64 = value.parse().unwrap_or(f64::NAN);
        *out.entry(name).or_insert(0.0) += value;
    }
    out
}

/// The families `/metrics` declares (`# TYPE name kind`).
fn exposed_families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Every `parking_bridge_*` name docs/operations.md mentions; `…_timeouts_total`
/// style abbreviations stand for the modbus family they follow.
fn documented_metrics() -> Vec<String> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"))
            .unwrap();
    let mut names: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '…'))
        .filter_map(|w| {
            if let Some(rest) = w.strip_prefix("…_") {
                Some(format!("parking_bridge_modbus_{rest}"))
            } else {
                w.starts_with("parking_bridge_").then(|| w.to_string())
            }
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn run_reports_ready_health_passages_and_reloads_log_level() {
    let dir = tempfile::tempdir().unwrap();
    // Ports bound by the processes that use them (port 0), then read back: nothing
    // else can take them in between. The platform comes back on its port later.
    let mut platform = Some(mock_platform(0));
    let platform_port = platform.as_ref().unwrap().port;
    let config = write_config(dir.path(), platform_port, 0, "info");

    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let log_path = dir.path().join("run.log");
    let started = Instant::now();
    let run = Guard(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .env("PARKING_BRIDGE_APP_SECRET", SECRET)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("JOURNAL_STREAM", "8:1234")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );

    // READY=1 once the pipeline runs.
    let mut buf = [0u8; 256];
    let len = notify.recv(&mut buf).expect("READY=1 within 20 s");
    assert!(String::from_utf8_lossy(&buf[..len]).contains("READY=1"));
    eprintln!("ready after {:?}", started.elapsed());

    let mut http_addr = String::new();
    wait_until("the status page listens", Duration::from_secs(20), || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let Some(line) = log.lines().find(|l| l.contains("status page, /metrics")) else {
            return false;
        };
        http_addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .unwrap_or_default()
            .to_string();
        true
    });
    let http_port: u16 = http_addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {http_addr:?}"));
    let base = format!("http://127.0.0.1:{http_port}");
    wait_until("healthz is 200", Duration::from_secs(20), || {
        http_get(&format!("{base}/healthz")).is_some_and(|(s, _)| s == 200)
    });

    // Counters before the passage: what moves is compared as deltas.
    let before = metric_families(&http_get(&format!("{base}/metrics")).unwrap().1);

    // A passage through the operator command, while run is running.
    let out = output_within(
        Command::new(BIN)
            .args(["stay", "enter", "--config"])
            .arg(&config)
            .args([
                "--plate",
                "闽A12345",
                "--color",
                "pnc_02",
                "--lane",
                "entry-1",
            ])
            .env("PARKING_BRIDGE_APP_SECRET", SECRET),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("the passage is counted", Duration::from_secs(20), || {
        http_get(&format!("{base}/metrics")).is_some_and(|(_, m)| {
            m.contains(r#"parking_bridge_passages_total{case="entry",lane="entry-1"} 1"#)
        })
    });
    wait_until("occupancy follows", Duration::from_secs(20), || {
        http_get(&format!("{base}/metrics"))
            .is_some_and(|(_, m)| m.contains("parking_bridge_occupied_spaces 1"))
    });
    wait_until("the entry is delivered", Duration::from_secs(20), || {
        let m = metric_families(&http_get(&format!("{base}/metrics")).unwrap().1);
        m.get("parking_bridge_outbox_finished_total")
            > before.get("parking_bridge_outbox_finished_total")
    });
    let after = metric_families(&http_get(&format!("{base}/metrics")).unwrap().1);
    // Every documented metric that this run exercises has moved.
    for family in [
        "parking_bridge_passages_total",
        "parking_bridge_uploads_total",
        "parking_bridge_outbox_finished_total",
        "parking_bridge_heartbeats_total",
        "parking_bridge_platform_answers_total",
        "parking_bridge_platform_last_success_timestamp_seconds",
        "parking_bridge_heartbeat_last_success_timestamp_seconds",
        "parking_bridge_occupied_spaces",
    ] {
        assert!(
            after.get(family).copied().unwrap_or(0.0) > before.get(family).copied().unwrap_or(0.0),
            "{family} did not move: {:?} -> {:?}",
            before.get(family),
            after.get(family)
        );
    }
    for (family, want) in [
        ("parking_bridge_total_spaces", 80.0),
        ("parking_bridge_platform_up", 1.0),
        ("parking_bridge_healthy", 1.0),
        ("parking_bridge_build_info", 1.0),
        ("parking_bridge_outbox_depth", 0.0),
    ] {
        assert_eq!(after.get(family), Some(&want), "{family}");
    }
    assert!(
        after
            .get("parking_bridge_storage_budget_bytes")
            .is_some_and(|b| *b > 0.0)
    );
    // Everything exposed is documented.
    let documented = documented_metrics();
    let exposed = exposed_families(&http_get(&format!("{base}/metrics")).unwrap().1);
    let undocumented: Vec<_> = exposed
        .iter()
        .filter(|f| {
            !documented
                .iter()
                .any(|d| d == *f || f.starts_with(&format!("{d}_")))
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "exposed but not in docs/operations.md: {undocumented:?}"
    );
    // (Not the converse: per-device and per-lane counters appear with their first
    // sample, and this site has no devices; driver_* and lane_feeds assert those.)

    let dom = dump_dom(&format!("{base}/"));
    assert!(dom.contains(r#"<td class="plate">闽A1***5</td>"#), "{dom}");
    assert!(!dom.contains("闽A12345"), "{dom}");
    assert!(dom.contains(r#"<b id="occupancy">1 / 80</b>"#), "{dom}");

    // The platform goes away: degraded within platform_down_secs (+ a heartbeat).
    drop(platform.take());
    wait_until("healthz is 503", Duration::from_secs(20), || {
        http_get(&format!("{base}/healthz"))
            .is_some_and(|(s, b)| s == 503 && b.contains("platform unreachable"))
    });
    // And comes back.
    platform = Some(mock_platform(platform_port));
    wait_until("healthz is 200 again", Duration::from_secs(30), || {
        http_get(&format!("{base}/healthz")).is_some_and(|(s, _)| s == 200)
    });

    // SIGHUP re-reads [logging] level. At info, the per-request debug line is absent;
    // after the reload it must appear (heartbeats go out every second): the level
    // really changed, not just the message about it.
    let debug_line = "platform answered";
    assert!(
        !std::fs::read_to_string(&log_path)
            .unwrap()
            .contains(debug_line),
        "debug lines before the reload"
    );
    write_config(dir.path(), platform_port, http_port, "debug");
    // SAFETY: sending a signal to our own child process by its pid.
    let rc = unsafe { libc::kill(run.0.id() as i32, libc::SIGHUP) };
    assert_eq!(rc, 0);
    wait_until("the reload is logged", Duration::from_secs(10), || {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("SIGHUP: log settings reloaded")
    });
    wait_until("debug lines appear", Duration::from_secs(15), || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let reloaded = log
            .find("SIGHUP: log settings reloaded")
            .unwrap_or(usize::MAX);
        log.get(reloaded..)
            .is_some_and(|after| after.contains(debug_line))
    });
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("level=debug"), "{log}");
    // Under journald (JOURNAL_STREAM set) lines carry no timestamp of their own.
    let first = log.lines().next().unwrap_or_default();
    assert!(
        first.trim_start().starts_with("INFO") || first.trim_start().starts_with("WARN"),
        "{first}"
    );
    assert!(!log.contains(SECRET), "the secret must never be logged");
    assert!(!log.contains("闽A12345"), "plates are masked in logs");
    drop(run);
    drop(platform);
    if std::env::var_os("SHOW_RUN_LOG").is_some() {
        eprintln!("{log}");
    }
}

/// A stop requested while the bridge is still starting (systemd stopping it at boot,
/// an operator's Ctrl-C) waits for the start and stops cleanly: exit status 0 and the
/// "stopped" line, never the default action of SIGTERM killing it half-started.
#[test]
fn sigterm_during_start_up_stops_the_bridge_cleanly() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let platform = mock_platform(0);
    let config = write_config(dir.path(), platform.port, 0, "info");
    let mut run = Guard(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .env("PARKING_BRIDGE_APP_SECRET", SECRET)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = run.0.id() as i32;
    let stderr = run.0.stderr.take().unwrap();
    // "started" is logged once the database is open, before the status page, the
    // drivers and the lanes are up: SIGTERM goes the moment the line is read.
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("parking-bridge started") {
                // SAFETY: plain kill(2) on our own child's pid.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let status = run.wait_at_most(Duration::from_secs(20), "still running 20 s after SIGTERM");
    let log = reader.join().unwrap();
    assert!(log.contains("parking-bridge started"), "{log}");
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("parking-bridge stopped"), "{log}");
}
