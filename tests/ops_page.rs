//! The operator's view of a real `parking-bridge run` process with traffic: the status
//! page's charts carry the passages made (in English and Chinese, as served and as
//! headless Chromium renders it), Chinese plate characters render with the page's
//! font stack, and a backup taken during traffic restores into a new storage dir
//! whose `run` delivers what was pending at backup time.

#[path = "platform_common/mod.rs"]
mod platform_common;
mod process_common;

use platform_common::{APP_ID, BIN, MockProcess, SECRET};
use process_common::{Guard, dump_dom, free_port};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LOT: &str = "LOT-PAGE";

fn write_config(dir: &Path, storage: &Path, platform_port: u16, http_port: u16) -> PathBuf {
    let text = format!(
        r#"
[platform]
base_url = "http://127.0.0.1:{platform_port}"
app_id = "{APP_ID}"
heartbeat_secs = 1
connect_timeout_secs = 1
request_timeout_secs = 2
[lot]
parking_lot_no = "{LOT}"
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
require_clock_sync = false
disk_full_percent = 100
"#,
        storage.display()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn start_run(config: &Path, log: &Path) -> Guard {
    Guard(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .env("PARKING_BRIDGE_APP_SECRET", SECRET)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// GET with optional `Accept-Language`, HTTP/1.0 over std.
fn http_get(url: &str, accept_language: Option<&str>) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let lang = accept_language
        .map(|l| format!("Accept-Language: {l}\r\n"))
        .unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n{lang}\r\n").ok()?;
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

fn wait_until(what: &str, deadline: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cli(args: &[&str], config: &Path) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("PARKING_BRIDGE_APP_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn enter(config: &Path, plate: &str) {
    cli(
        &[
            "stay", "enter", "--plate", plate, "--color", "pnc_02", "--lane", "entry-1",
        ],
        config,
    );
}

fn leave(config: &Path, plate: &str) {
    cli(
        &["stay", "exit", "--plate", plate, "--lane", "exit-1"],
        config,
    );
}

/// The values of `attr` inside the element that carries `marker`.
fn attrs_in<'a>(html: &'a str, marker: &str, attr: &str) -> Vec<&'a str> {
    let key = format!("{attr}=\"");
    let mut out = Vec::new();
    for (i, _) in html.match_indices(marker) {
        let start = html[..i].rfind('<').unwrap_or(0);
        let end = i + html[i..].find('>').unwrap_or(0);
        let tag = &html[start..end];
        if let Some(p) = tag.find(&key) {
            let rest = &tag[p + key.len()..];
            out.push(&rest[..rest.find('"').unwrap_or(0)]);
        }
    }
    out
}

fn lane_counts(html: &str, lane: &str) -> (u32, u32) {
    let marker = format!("data-lane=\"{lane}\"");
    let bars: u32 = attrs_in(html, &marker, "data-count")
        .iter()
        .map(|c| c.parse::<u32>().unwrap())
        .sum();
    let last_hour: u32 = attrs_in(html, &marker, "data-last-hour")
        .first()
        .map(|c| c.parse().unwrap())
        .unwrap_or(u32::MAX);
    (bars, last_hour)
}

#[test]
fn status_page_charts_carry_the_passages_made_in_both_languages() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockProcess::start(&["--parking-lot-no", LOT]);
    let http_port = free_port();
    let config = write_config(dir.path(), &dir.path().join("state"), mock.port, http_port);
    let _run = start_run(&config, &dir.path().join("run.log"));
    let base = format!("http://127.0.0.1:{http_port}");
    wait_until("the page answers", Duration::from_secs(20), || {
        http_get(&format!("{base}/healthz"), None).is_some()
    });

    // Traffic: five entries, two of those cars leave.
    let plates = ["闽A10001", "京B20002", "粤C30003", "沪D40004", "川E50005"];
    for plate in plates {
        enter(&config, plate);
    }
    for plate in &plates[..2] {
        leave(&config, plate);
    }
    wait_until(
        "the passages reach the page",
        Duration::from_secs(30),
        || {
            http_get(&format!("{base}/metrics"), None).is_some_and(|(_, m)| {
                m.contains(r#"parking_bridge_passages_total{case="entry",lane="entry-1"} 5"#)
                    && m.contains(r#"parking_bridge_passages_total{case="exit",lane="exit-1"} 2"#)
                    && m.contains("parking_bridge_occupied_spaces 3")
            })
        },
    );

    // As served, by Accept-Language.
    let (_, zh) = http_get(&format!("{base}/"), Some("zh-CN,zh;q=0.9,en;q=0.5")).unwrap();
    assert!(zh.contains(r#"<html lang="zh-CN">"#), "{zh}");
    assert!(
        zh.contains("近 24 小时每小时通行量") && zh.contains("车道"),
        "{zh}"
    );
    assert_eq!(lane_counts(&zh, "entry-1"), (5, 5), "{zh}");
    assert_eq!(lane_counts(&zh, "exit-1"), (2, 2), "{zh}");
    assert_eq!(
        attrs_in(&zh, "id=\"chart-occupancy\"", "data-last"),
        vec!["3"]
    );
    let (_, en) = http_get(&format!("{base}/"), Some("en-US,en;q=0.9")).unwrap();
    assert!(en.contains(r#"<html lang="en">"#));
    assert!(en.contains("Passages per hour, last 24 h"), "{en}");
    assert_eq!(lane_counts(&en, "entry-1"), (5, 5));
    assert_eq!(lane_counts(&en, "exit-1"), (2, 2));
    // A strip per device would be here with devices; this lot has none configured.
    assert!(!zh.contains("闽A10001"), "plates masked on the page");

    // As Chromium renders it, both languages chosen in the address.
    for (lang, word) in [
        ("en", "passages in the last hour"),
        ("zh-CN", "近一小时通行"),
    ] {
        let dom = dump_dom(&format!("{base}/?lang={lang}"));
        assert!(dom.contains(word), "{lang}: {dom}");
        assert_eq!(lane_counts(&dom, "entry-1"), (5, 5), "{lang}: {dom}");
        assert_eq!(lane_counts(&dom, "exit-1"), (2, 2), "{lang}");
        assert!(dom.contains("<svg id=\"chart-occupancy\""), "{lang}");
    }
    // The page refreshes itself in place (body swapped, scroll kept), and the swapped
    // body carries the charts: let Chromium run the page's timers for 12 s of
    // virtual time.
    enter(&config, "浙F60006");
    wait_until(
        "the sixth entry is counted",
        Duration::from_secs(30),
        || {
            http_get(&format!("{base}/metrics"), None).is_some_and(|(_, m)| {
                m.contains(r#"parking_bridge_passages_total{case="entry",lane="entry-1"} 6"#)
            })
        },
    );
    let dom = dump_dom_after(&format!("{base}/?lang=zh-CN"), 12_000);
    assert!(
        dom.contains("data-refreshes=\""),
        "refreshed in place: {dom}"
    );
    assert_eq!(lane_counts(&dom, "entry-1"), (6, 6), "{dom}");

    let shot = dir.path().join("page-zh.png");
    screenshot(&format!("{base}/?lang=zh-CN"), &shot, (900, 1400));
    let png = image::open(&shot).unwrap().to_rgb8();
    assert!(png.width() >= 900, "a screenshot was taken");
    // Kept for judging by eye next to the test binary's output.
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page-zh.png");
    let _ = std::fs::copy(&shot, keep);
}

/// `chromium --dump-dom` after the page ran its timers for `virtual_ms`.
fn dump_dom_after(url: &str, virtual_ms: u32) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--virtual-time-budget={virtual_ms}"),
            "--dump-dom",
            url,
        ])
        .stdout(out.reopen().unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium is installed (scripts/test-all.sh installs it)");
    let mut child = Guard(child);
    child.wait_at_most(Duration::from_secs(90), "chromium did not finish in 90 s");
    std::fs::read_to_string(out.path()).unwrap()
}

/// `chromium --screenshot` of `url` at `size`.
fn screenshot(url: &str, to: &Path, size: (u32, u32)) {
    let profile = tempfile::tempdir().unwrap();
    let child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--window-size={},{}", size.0, size.1),
            &format!("--screenshot={}", to.display()),
            url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium is installed (scripts/test-all.sh installs it)");
    let mut child = Guard(child);
    child.wait_at_most(Duration::from_secs(60), "chromium did not finish in 60 s");
    assert!(to.exists(), "no screenshot written");
}

/// Two different province characters drawn with the page's font stack: with a CJK
/// font they are two different glyphs; without one, both are the same empty box.
#[test]
fn chinese_plate_characters_render_with_the_page_font_stack() {
    let dir = tempfile::tempdir().unwrap();
    let draw = |text: &str, name: &str| {
        let html = dir.path().join(format!("{name}.html"));
        std::fs::write(
            &html,
            format!(
                r#"<!doctype html><meta charset="utf-8"><style>body{{margin:0;background:#fff;font-family:{};font-size:120px;color:#000}}</style><span class="plate">{text}</span>"#,
                parking_bridge::ops::http::FONT_STACK
            ),
        )
        .unwrap();
        let png = dir.path().join(format!("{name}.png"));
        screenshot(&format!("file://{}", html.display()), &png, (200, 200));
        image::open(&png).unwrap().to_luma8()
    };
    let min = draw("闽", "min");
    let jing = draw("京", "jing");
    let ink = |img: &image::GrayImage| img.pixels().filter(|p| p.0[0] < 128).count();
    assert!(ink(&min) > 200, "闽 drew something");
    assert!(ink(&jing) > 200, "京 drew something");
    let differing = min
        .pixels()
        .zip(jing.pixels())
        .filter(|(a, b)| a.0[0].abs_diff(b.0[0]) > 64)
        .count();
    assert!(
        differing > 200,
        "闽 and 京 look the same ({differing} pixels differ): no CJK font, plates show empty boxes (install fonts-noto-cjk)"
    );
}

/// Out order numbers of entries the platform record holds, with how often each came.
fn entries_in_record(record: &Path) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    let text = std::fs::read_to_string(record).unwrap_or_default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("/barrier/parking"))
            && let Some(order) = v["body"]["out_order_no"].as_str()
        {
            *out.entry(order.to_string()).or_default() += 1;
        }
    }
    out
}

fn metric(base: &str, line_start: &str) -> Option<f64> {
    let (_, text) = http_get(&format!("{base}/metrics"), None)?;
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn backup_during_traffic_restores_and_run_delivers_what_was_pending() {
    let dir = tempfile::tempdir().unwrap();
    let platform_port = free_port();
    let http_port = free_port();
    let config = write_config(
        dir.path(),
        &dir.path().join("state"),
        platform_port,
        http_port,
    );
    let base = format!("http://127.0.0.1:{http_port}");
    // The platform is away at first: what is made stays pending.
    let run = start_run(&config, &dir.path().join("run.log"));
    wait_until("the bridge answers", Duration::from_secs(20), || {
        http_get(&format!("{base}/healthz"), None).is_some()
    });
    for plate in ["闽A00001", "闽A00002", "闽A00003", "闽A00004"] {
        enter(&config, plate);
    }
    // The backup, while run runs and traffic goes on around it.
    let backup_file = dir.path().join("backups/state.db");
    let traffic = {
        let config = config.clone();
        std::thread::spawn(move || enter(&config, "闽A00005"))
    };
    let said = cli(&["backup", "--to", backup_file.to_str().unwrap()], &config);
    traffic.join().unwrap();
    assert!(said.contains("backup written"), "{said}");
    let pending_at_backup: u64 = said
        .split("; ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        (4..=5).contains(&pending_at_backup),
        "the four (or five) entries made before: {said}"
    );
    enter(&config, "闽A00006");

    // The platform comes: everything is delivered and acknowledged.
    let record = dir.path().join("record.jsonl");
    let mock = MockProcess::start_on(
        platform_port,
        APP_ID,
        SECRET,
        &[
            "--record",
            record.to_str().unwrap(),
            "--parking-lot-no",
            LOT,
        ],
    );
    wait_until("everything is delivered", Duration::from_secs(150), || {
        entries_in_record(&record).len() == 6
            && metric(&base, "parking_bridge_outbox_depth ") == Some(0.0)
    });
    drop(run);
    let first = entries_in_record(&record);
    assert!(first.values().all(|n| *n == 1), "{first:?}");

    // Restore into a new storage dir, as docs/operations.md says, and run there.
    let restored = dir.path().join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    std::fs::copy(&backup_file, restored.join("state.db")).unwrap();
    let http_port2 = free_port();
    let restored_dir = dir.path().join("second");
    std::fs::create_dir_all(&restored_dir).unwrap();
    let config2 = write_config(&restored_dir, &restored, platform_port, http_port2);
    let base2 = format!("http://127.0.0.1:{http_port2}");
    let _run2 = start_run(&config2, &dir.path().join("run2.log"));
    wait_until(
        "what was pending at backup time is delivered again",
        Duration::from_secs(60),
        || {
            metric(&base2, "parking_bridge_outbox_depth ") == Some(0.0)
                && metric(
                    &base2,
                    r#"parking_bridge_uploads_total{kind="entry",result="duplicate"}"#,
                ) == Some(pending_at_backup as f64)
        },
    );
    let second = entries_in_record(&record);
    assert_eq!(second.len(), 6, "no new numbers: {second:?}");
    let resent: usize = second.values().map(|n| n - 1).sum();
    assert_eq!(resent as u64, pending_at_backup, "{second:?}");
    assert!(
        second.values().all(|n| *n <= 2),
        "re-sent at most once each: {second:?}"
    );
    drop(mock);
}

fn cli_in(lang: &str, args: &[&str]) -> (String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("LANG", lang)
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env("PARKING_BRIDGE_APP_SECRET", SECRET)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn doctor_check_and_platform_test_speak_the_installers_language() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on the platform port: refused at once.
    let config = write_config(dir.path(), &dir.path().join("state"), free_port(), 0);
    let backup = dir.path().join("backups/state.db");
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "[[lanes]]",
        &format!(
            "backup_file = {:?}\n[[lanes]]",
            backup.display().to_string()
        ),
        1,
    );
    std::fs::write(&config, &text).unwrap();
    let config = config.to_str().unwrap();

    let (zh, _) = cli_in(
        "zh_CN.UTF-8",
        &["doctor", "--config", config, "--camera-wait", "1"],
    );
    assert!(zh.contains("✓ 配置文件有效"), "{zh}");
    assert!(zh.contains("✗ 状态数据库有近期备份"), "no backup yet: {zh}");
    assert!(zh.contains("提示: 运行 parking-bridge backup"), "{zh}");
    assert!(zh.contains("项未通过"), "{zh}");
    std::fs::create_dir_all(backup.parent().unwrap()).unwrap();
    std::fs::write(&backup, b"a backup").unwrap();
    let (en, _) = cli_in(
        "C.UTF-8",
        &["doctor", "--config", config, "--camera-wait", "1"],
    );
    assert!(en.contains("✓ recent backup of the state database"), "{en}");
    assert!(en.contains("0 h 0 min old"), "{en}");
    assert!(en.contains("checks failed"), "the platform is away: {en}");

    let (zh, _) = cli_in("zh_CN.UTF-8", &["platform-test", "--config", config]);
    assert!(zh.contains("失败: 连接被拒绝"), "{zh}");
    let (en, _) = cli_in("en_US.UTF-8", &["platform-test", "--config", config]);
    assert!(en.contains("FAILED: refused"), "{en}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        text.replace("disk_full_percent = 100", "disk_full_percent = 0"),
    )
    .unwrap();
    let (_, zh) = cli_in("zh_CN.UTF-8", &["check", "--config", bad.to_str().unwrap()]);
    assert!(
        zh.contains("http.disk_full_percent"),
        "the exact line stays: {zh}"
    );
    assert!(zh.contains("请逐条修改"), "{zh}");
    assert!(zh.contains("    → 必须在 1 到 100 之间"), "{zh}");
    let (out, _) = cli_in("zh_CN.UTF-8", &["check", "--config", config]);
    assert!(out.contains("配置有效"), "{out}");
}

/// The demo on a terminal (util-linux `script` gives it a pty): the live view shows the
/// status page's address, and log lines go to DIR/demo.log instead of the screen.
#[test]
fn demo_on_a_terminal_logs_to_its_file_and_shows_the_status_page() {
    let dir = tempfile::tempdir().unwrap();
    let command = format!(
        "{BIN} demo --vehicles 2 --speed 8 --no-images --drain-timeout-secs 30 --dir {}",
        dir.path().display()
    );
    let typescript = dir.path().join("typescript");
    let child = Command::new("script")
        .args(["-q", "-e", "-c", &command])
        .arg(&typescript)
        .env("RUST_LOG", "info")
        .env_remove("PARKING_BRIDGE_APP_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("script (util-linux) is installed");
    let mut guard = Guard(child);
    guard.wait_at_most(Duration::from_secs(150), "the demo did not finish in time");
    let screen = std::fs::read_to_string(&typescript).unwrap_or_default();
    assert!(screen.contains("status page http://127.0.0.1:"), "{screen}");
    assert!(screen.contains("demo.log"), "{screen}");
    assert!(
        !screen.contains(" INFO ") && !screen.contains("parking-bridge started"),
        "log lines stay off the live view: {screen}"
    );
    let log = std::fs::read_to_string(dir.path().join("demo.log")).unwrap_or_default();
    assert!(log.contains("parking-bridge started"), "{log}");
    assert!(
        log.contains("status page, /metrics and /healthz listening"),
        "{log}"
    );
    assert!(!log.contains("\u{1b}["), "no colours in the file: {log}");
}
