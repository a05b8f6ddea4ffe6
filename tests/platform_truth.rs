//! What the platform ends up believing, through real processes (`run`, `mock-platform`,
//! the operator commands): the last accepted report carries the lot's count after an
//! outage and SIGKILLs, a heartbeat follows the platform's return at once, and refused
//! reports are held, listed, retried and dropped without blocking what does not depend
//! on them.

mod process_common;
mod store_common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use store_common::*;

/// A site config for the bridge: `total` spaces, heartbeat every `heartbeat_secs`,
/// `platform_extra` lines appended to `[platform]`, the status page on `http_port`.
fn site(dir: &Path, base_url: &str, total: i64, platform_extra: &str, http_port: u16) -> PathBuf {
    let text = format!(
        r#"[platform]
base_url = "{base_url}"
app_id = "{APP_ID}"
app_secret = "{SECRET}"
heartbeat_secs = 30
connect_timeout_secs = 1
request_timeout_secs = 3
{platform_extra}

[lot]
parking_lot_no = "{LOT}"
total_spaces = {total}

[storage]
dir = "{data}"

[http]
listen = "127.0.0.1:{http_port}"

[[lanes]]
id = "entry-1"
direction = "entry"
port_no = "E1"

[[lanes]]
id = "exit-1"
direction = "exit"
port_no = "X1"
"#,
        data = dir.join("data").display(),
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn free_of(r: &Rec) -> Option<i64> {
    r.body
        .get("free_spaces")
        .and_then(serde_json::Value::as_i64)
}

fn pending_total(cfg: &Path) -> Option<u64> {
    let out = cli(&["outbox", "--config", cfg.to_str().unwrap()]);
    let text = stdout(&out);
    let line = text.lines().find(|l| l.starts_with("pending total "))?;
    line.trim_start_matches("pending total ")
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

#[test]
fn after_an_outage_and_sigkills_the_last_accepted_report_says_the_lots_free_count() {
    let dir = tempfile::tempdir().unwrap();
    // The platform is down (503) from 3 s to 13 s after it starts.
    let mock = Mock::start(
        &dir.path().join("rec.jsonl"),
        &[
            "--outage-start-secs",
            "3",
            "--outage-secs",
            "10",
            "--latency-ms",
            "2",
        ],
    );
    let cfg = site(
        dir.path(),
        &mock.base_url(),
        100,
        "",
        process_common::free_port(),
    );
    let log = dir.path().join("run.log");
    let mut bridge = Bridge::start(&cfg, &log);
    let started = Instant::now();

    // 30 entries and 20 exits over about 11 s, a SIGKILL and restart every 10 of them.
    let plates: Vec<String> = (0..30).map(|i| format!("闽B{i:05}")).collect();
    let mut stays = Vec::new();
    let mut kills = 0;
    let mut step = 0;
    let mut operations: Vec<(bool, usize)> = Vec::new();
    for i in 0..30 {
        operations.push((true, i));
        if i >= 2 && i - 2 < 20 {
            operations.push((false, i - 2));
        }
    }
    for (is_entry, i) in operations {
        step += 1;
        if is_entry {
            stays.push(enter(&cfg, &plates[i]));
        } else {
            exit(&cfg, &plates[i]);
        }
        if step % 10 == 0 {
            bridge.kill();
            kills += 1;
            std::thread::sleep(Duration::from_millis(200));
            bridge = Bridge::start(&cfg, &log);
        }
        let due = Duration::from_millis(220 * step);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    assert!(kills >= 5, "{kills} kills");
    assert!(
        started.elapsed() > Duration::from_secs(10),
        "the operations went on through the outage"
    );

    wait_until(90, "the outbox drained and every report accepted", || {
        let counts = accepted_counts(&mock.records());
        let e = counts.keys().filter(|(k, _)| k == "parking").count();
        let x = counts.keys().filter(|(k, _)| k == "away").count();
        e == 30 && x == 20 && pending_total(&cfg) == Some(0)
    });
    let recs = mock.records();

    // Every report arrived once per stay, in order per stay.
    for ((kind, o), n) in accepted_counts(&recs) {
        assert_eq!(n, 1, "{kind} of {o} accepted {n} times");
    }
    assert_eq!(assert_exits_after_entries(&recs), 30);

    // The platform's last view is the lot's truth: 100 spaces, 10 cars parked.
    let last = recs
        .iter()
        .rfind(|r| r.accepted && matches!(r.kind(), "parking" | "away"))
        .expect("accepted reports");
    assert_eq!(free_of(last), Some(90), "last accepted: {last:?}");
    assert_eq!(
        last.body
            .get("total_spaces")
            .and_then(serde_json::Value::as_i64),
        Some(100)
    );
    let out = cli(&["occupancy", "--config", cfg.to_str().unwrap()]);
    assert_eq!(stdout(&out).trim(), "occupied 10 of 100, free 90");

    // A heartbeat arrives within 2 s of the platform's return (the period is 30 s).
    let last_503 = recs
        .iter()
        .filter(|r| r.result_code == "HTTP_503")
        .map(|r| r.at)
        .max()
        .expect("the outage was seen");
    let beat = recs
        .iter()
        .filter(|r| r.kind() == "heartbeat" && r.accepted && r.at > last_503)
        .map(|r| r.at)
        .min()
        .expect("a heartbeat after the outage");
    assert!(
        beat - last_503 <= 2_000,
        "heartbeat {} ms after the last refused request",
        beat - last_503
    );
    bridge.kill();
}

/// A small JPEG for `--snapshot`.
fn jpeg(path: &Path) -> PathBuf {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8, y as u8, 90]));
    let file = path.join("car.jpg");
    img.save(&file).unwrap();
    file
}

fn enter_with_snapshot(cfg: &Path, plate: &str, snapshot: &Path) -> String {
    let mut args = stay_enter_args(cfg.to_str().unwrap(), plate, "pnc_02", "entry-1");
    args.extend(["--snapshot", snapshot.to_str().unwrap()]);
    let out = cli(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

fn exit_with_snapshot(cfg: &Path, plate: &str, snapshot: &Path) {
    let mut args = stay_exit_args(cfg.to_str().unwrap(), plate, "exit-1");
    args.extend(["--snapshot", snapshot.to_str().unwrap()]);
    let out = cli(&args);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn outbox(cfg: &Path, args: &[&str]) -> (bool, String) {
    let mut all = vec!["outbox", "--config", cfg.to_str().unwrap()];
    all.extend(args);
    let out = cli(&all);
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

/// `GET path` on the status port over plain HTTP/1.0: status and body.
fn http_get(http_port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", http_port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

fn metric(http_port: u16, name: &str) -> Option<f64> {
    let (_, text) = http_get(http_port, "/metrics")?;
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn refused_reports_are_held_without_blocking_and_retry_and_drop_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("rec.jsonl");
    let picture = jpeg(dir.path());
    // The platform refuses every snapshot of 闽A11111 (bare `success:false`) and every
    // report of 闽A22222.
    let mock = Mock::start(
        &record,
        &[
            "--refuse-snapshots-of",
            "闽A11111",
            "--refuse-plate",
            "闽A22222",
            "--refusal-shape",
            "bare",
        ],
    );
    let http_port = process_common::free_port();
    let extra = "refused_tries = 2\nrefused_first_retry_secs = 1";
    let cfg = site(dir.path(), &mock.base_url(), 100, extra, http_port);
    let log = dir.path().join("run.log");
    let bridge = Bridge::start(&cfg, &log);

    let snap_stay = enter_with_snapshot(&cfg, "闽A11111", &picture);
    exit_with_snapshot(&cfg, "闽A11111", &picture);
    let held_stay = enter(&cfg, "闽A22222");
    exit(&cfg, "闽A22222");
    let fine = enter(&cfg, "闽A33333");

    wait_until(60, "three reports held", || {
        outbox(&cfg, &["held"]).1.contains("3 held;")
    });
    let recs = mock.records();
    let counts = accepted_counts(&recs);
    // The refused snapshots did not delay the exit; the held entry held only its exit.
    assert_eq!(counts.get(&("away".into(), snap_stay.clone())), Some(&1));
    assert_eq!(counts.get(&("parking".into(), fine.clone())), Some(&1));
    assert!(
        !recs
            .iter()
            .any(|r| r.kind() == "away" && r.out_order_no() == Some(held_stay.as_str()))
    );
    let (_, held) = outbox(&cfg, &["held"]);
    assert!(
        held.contains("entry_snapshot") && held.contains("exit_snapshot"),
        "{held}"
    );
    assert!(held.contains(&held_stay), "{held}");
    assert!(held.contains("1 later report(s)"), "{held}");
    assert!(held.contains("(no code)"), "the platform's words: {held}");
    assert!(!held.contains("闽A11111"), "plates masked: {held}");
    wait_until(20, "/metrics shows the held reports", || {
        metric(http_port, "parking_bridge_reports_held") == Some(3.0)
    });
    let (status, body) = http_get(http_port, "/healthz").unwrap();
    assert_eq!(status, 200, "held reports only degrade: {body}");
    assert!(body.starts_with("degraded\n"), "{body}");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("report HELD")
    );

    // The operator drops the held entry (its exit goes with it) and, once the platform
    // takes snapshots again, retries the snapshots; both survive a restart.
    let (ok, text) = outbox(&cfg, &["drop", &held_stay]);
    assert!(!ok, "--reason is required: {text}");
    let (ok, text) = outbox(
        &cfg,
        &["drop", &held_stay, "--reason", "plate never registered"],
    );
    assert!(ok, "{text}");
    assert!(text.contains("dropped 2 report(s)"), "{text}");
    bridge.kill();
    drop(mock);
    let mock = Mock::start(&record, &[]);
    let cfg = site(dir.path(), &mock.base_url(), 100, extra, http_port);
    let (ok, text) = outbox(&cfg, &["retry", "--all-held"]);
    assert!(
        ok && text.starts_with("2 held report(s) queued again"),
        "{text}"
    );
    let bridge = Bridge::start(&cfg, &log);
    wait_until(60, "the snapshots accepted after the retry", || {
        mock.records()
            .iter()
            .filter(|r| r.kind() == "uploadSnapshot" && r.accepted)
            .count()
            == 2
    });
    wait_until(20, "nothing pending", || pending_total(&cfg) == Some(0));
    assert_eq!(outbox(&cfg, &["held"]).1.trim(), "no held reports");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !mock
            .records()
            .iter()
            .any(|r| r.out_order_no() == Some(held_stay.as_str()) && r.accepted),
        "a dropped stay is never sent again"
    );
    let summary = outbox(&cfg, &[]).1;
    assert!(summary.contains("pending total 0"), "{summary}");
    bridge.kill();
}
