//! The local HTTP endpoint over real HTTP: `/metrics` parses strictly and moves with
//! the state, `/healthz` degrades and recovers, the token is enforced, and the status
//! page as rendered by headless Chromium shows what was recorded.

mod process_common;

use parking_bridge::config::SiteConfig;
use parking_bridge::ops::OpsState;
use parking_bridge::time::Timestamp;
use process_common::dump_dom;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn config(storage: &Path, extra_http: &str) -> SiteConfig {
    let text = format!(
        r#"
[platform]
base_url = "http://127.0.0.1:9"
app_id = "app-1"
app_secret = "0123456789abcdef"
[lot]
parking_lot_no = "LOT-7"
total_spaces = 120
[storage]
dir = "{}"
[http]
listen = "127.0.0.1:0"
require_clock_sync = false
disk_full_percent = 100
{extra_http}
[[lanes]]
id = "entry-1"
direction = "entry"
port_no = "P1"
[[lanes]]
id = "exit-1"
direction = "exit"
port_no = "P2"
"#,
        storage.display()
    );
    SiteConfig::from_toml(&text, Path::new("test.toml")).unwrap()
}

async fn serve(ops: &OpsState) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    parking_bridge::ops::http::spawn(ops.clone())
        .await
        .unwrap()
        .expect("endpoint enabled")
}

/// Starts the endpoint over a fresh storage dir with `extra_http` in `[http]`, as
/// every test here does. The dir is handed back so the caller keeps it alive for as
/// long as the endpoint serves from it: bind it to a name (`_dir`), not `_`.
async fn start(
    extra_http: &str,
) -> (
    tempfile::TempDir,
    OpsState,
    SocketAddr,
    tokio::task::JoinHandle<()>,
) {
    let dir = tempfile::tempdir().unwrap();
    let ops = OpsState::new(&config(dir.path(), extra_http));
    let (addr, server) = serve(&ops).await;
    (dir, ops, addr, server)
}

async fn get(url: &str) -> (u16, String) {
    let response = tokio::time::timeout(Duration::from_secs(5), reqwest::get(url))
        .await
        .unwrap()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// A strict parser for the Prometheus text format (0.0.4): every sample belongs to a
/// family declared by `# TYPE`, names and labels are well-formed, values are floats.
/// Returns `name{labels}` (labels sorted) → value.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let valid_name = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    for (i, line) in text.lines().enumerate() {
        let at = format!("line {}: {line:?}", i + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let keyword = parts.next().unwrap();
            let name = parts.next().unwrap_or_else(|| panic!("{at}"));
            assert!(valid_name(name), "{at}");
            match keyword {
                "HELP" => {}
                "TYPE" => {
                    let kind = parts.next().unwrap_or_else(|| panic!("{at}"));
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "{at}"
                    );
                    assert!(
                        types.insert(name.to_string(), kind.to_string()).is_none(),
                        "TYPE declared twice: {at}"
                    );
                }
                _ => panic!("unknown comment keyword: {at}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{at}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {at}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("{at}"));
                let mut labels = Vec::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    assert!(valid_name(&key), "bad label name: {at}");
                    assert_eq!(chars.next(), Some('"'), "{at}");
                    let mut value = String::new();
                    loop {
                        match chars.next() {
                            Some('\\') => {
                                value.push(chars.next().unwrap_or_else(|| panic!("{at}")))
                            }
                            Some('"') => break,
                            Some(c) => value.push(c),
                            None => panic!("unterminated label value: {at}"),
                        }
                    }
                    labels.push(format!("{key}={value}"));
                    match chars.next() {
                        Some(',') | None => {}
                        Some(c) => panic!("unexpected {c:?}: {at}"),
                    }
                }
                labels.sort();
                (name, labels.join(","))
            }
            None => (series, String::new()),
        };
        assert!(valid_name(name), "{at}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s).filter(|f| {
                    types
                        .get(*f)
                        .is_some_and(|t| t == "histogram" || t == "summary")
                })
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample without TYPE: {at}");
        samples.insert(format!("{name}{{{labels}}}"), value);
    }
    samples
}

#[tokio::test]
async fn metrics_parse_strictly_and_move_when_state_changes() {
    let (_dir, ops, addr, server) = start("").await;
    let url = format!("http://{addr}/metrics");

    let (status, before) = get(&url).await;
    assert_eq!(status, 200);
    let before = parse_prometheus(&before);
    assert_eq!(before["parking_bridge_total_spaces{}"], 120.0);
    assert_eq!(before["parking_bridge_outbox_depth{}"], 0.0);

    ops.set_outbox(4, Some(Duration::from_secs(90)));
    ops.set_occupancy(33, 120);
    ops.record_passage("entry-1", Some("闽A12345"), "entry", Timestamp::now(), None);
    ops.record_passage("entry-1", Some("闽A12346"), "entry", Timestamp::now(), None);
    ops.record_platform_answer(true, Some("SUCCESS"), Timestamp::now());
    ops.record_platform_answer(false, None, Timestamp::now());
    ops.health()
        .set("cam-1", "entry-1", false, Timestamp::now());
    ops.alarm("platform refuses the lot", Timestamp::now());
    ops.set_disk(4096, 1 << 30);
    let jump = parking_bridge::ops::clock::Jump {
        at: Timestamp::now(),
        delta_ms: 90_000,
    };
    ops.set_clock(
        Some(false),
        Some(parking_bridge::ops::clock::Suspicion::Jumped(jump)),
        Some(jump),
    );
    // A passage while the clock is suspect is counted as such.
    ops.record_passage("entry-1", Some("闽A12347"), "entry", Timestamp::now(), None);

    let (_, after) = get(&url).await;
    let after = parse_prometheus(&after);
    let moved = |name: &str| after[name] - before.get(name).copied().unwrap_or(0.0);
    assert_eq!(moved("parking_bridge_passages_clock_suspect_total{}"), 1.0);
    assert_eq!(after["parking_bridge_outbox_depth{}"], 4.0);
    assert_eq!(after["parking_bridge_outbox_oldest_age_seconds{}"], 90.0);
    assert_eq!(after["parking_bridge_occupied_spaces{}"], 33.0);
    assert_eq!(
        after["parking_bridge_passages_total{case=entry,lane=entry-1}"],
        3.0
    );
    assert_eq!(
        after["parking_bridge_platform_answers_total{result=SUCCESS}"],
        1.0
    );
    assert_eq!(
        after["parking_bridge_platform_answers_total{result=unreachable}"],
        1.0
    );
    assert_eq!(after["parking_bridge_platform_up{}"], 0.0);
    assert_eq!(
        after["parking_bridge_device_up{device=cam-1,lane=entry-1}"],
        0.0
    );
    assert!(after["parking_bridge_platform_last_success_timestamp_seconds{}"] > 1.7e9);
    assert_eq!(
        after["parking_bridge_alarms_total{}"]
            - before
                .get("parking_bridge_alarms_total{}")
                .copied()
                .unwrap_or(0.0),
        1.0
    );
    assert_eq!(after["parking_bridge_storage_used_bytes{}"], 4096.0);
    assert_eq!(
        after["parking_bridge_storage_budget_bytes{}"],
        f64::from(1u32 << 30)
    );
    assert_eq!(after["parking_bridge_clock_synchronized{}"], 0.0);
    assert_eq!(after["parking_bridge_clock_suspect{}"], 1.0);
    assert_eq!(
        after["parking_bridge_clock_jumps_total{}"]
            - before
                .get("parking_bridge_clock_jumps_total{}")
                .copied()
                .unwrap_or(0.0),
        1.0
    );
    server.abort();
}

#[tokio::test]
async fn healthz_turns_503_when_platform_down_and_back_to_200() {
    let (_dir, ops, addr, server) = start("platform_down_secs = 60").await;
    let url = format!("http://{addr}/healthz");

    ops.record_platform_answer(true, Some("SUCCESS"), Timestamp::now());
    assert_eq!(get(&url).await, (200, "ok\n".to_string()));

    // The last success was ten minutes ago and every call since failed.
    let ten_min_ago = Timestamp::now().plus_millis(-600_000);
    ops.record_platform_answer(true, Some("SUCCESS"), ten_min_ago);
    ops.record_platform_answer(false, None, Timestamp::now());
    let (status, body) = get(&url).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("failing\n") && body.contains("platform unreachable"),
        "{body}"
    );
    let (_, metrics) = get(&format!("http://{addr}/metrics")).await;
    assert_eq!(parse_prometheus(&metrics)["parking_bridge_healthy{}"], 0.0);

    ops.record_platform_answer(true, Some("SUCCESS"), Timestamp::now());
    assert_eq!(get(&url).await, (200, "ok\n".to_string()));
    server.abort();
}

#[tokio::test]
async fn token_is_required_when_configured() {
    let (_dir, _ops, addr, server) = start(r#"token = "t0k/en""#).await;
    assert_eq!(get(&format!("http://{addr}/metrics")).await.0, 401);
    assert_eq!(get(&format!("http://{addr}/?token=wrong")).await.0, 401);
    assert_eq!(get(&format!("http://{addr}/?token=t0k%2Fen")).await.0, 200);
    let client = reqwest::Client::new();
    let with_header = client
        .get(format!("http://{addr}/healthz"))
        .bearer_auth("t0k/en")
        .send()
        .await
        .unwrap();
    assert_ne!(with_header.status().as_u16(), 401);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_chromium_shows_passage_masked_occupancy_and_outbox() {
    let (_dir, ops, addr, server) = start("").await;
    // A real JPEG, so the browser can decode the snapshot.
    let mut jpeg = Vec::new();
    image::DynamicImage::new_rgb8(32, 16)
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    ops.record_passage(
        "entry-1",
        Some("闽A12345"),
        "entry",
        Timestamp::now(),
        Some(Arc::new(jpeg.clone())),
    );
    ops.set_occupancy(41, 120);
    ops.set_outbox(6, Some(Duration::from_secs(12)));
    ops.record_platform_answer(true, Some("SUCCESS"), Timestamp::now());
    ops.health().set("cam-1", "entry-1", true, Timestamp::now());
    ops.alarm("camera cam-9 sends unreadable payloads", Timestamp::now());

    let url = format!("http://{addr}/");
    let dom = tokio::task::spawn_blocking(move || dump_dom(&url))
        .await
        .unwrap();
    assert!(dom.contains("lot LOT-7"), "{dom}");
    assert!(
        dom.contains(r#"<td class="plate">闽A1***5</td>"#),
        "masked plate: {dom}"
    );
    assert!(
        !dom.contains("闽A12345"),
        "whole plate must not show: {dom}"
    );
    assert!(dom.contains(r#"<b id="occupancy">41 / 120</b>"#), "{dom}");
    assert!(dom.contains(r#"<b id="outbox">6 waiting</b>"#), "{dom}");
    assert!(
        dom.contains(r#"id="platform" class="ok">reachable"#),
        "{dom}"
    );
    assert!(dom.contains("cam-1 up"), "{dom}");
    assert!(
        dom.contains("camera cam-9 sends unreadable payloads"),
        "{dom}"
    );
    assert!(dom.contains(r#"http-equiv="refresh""#), "{dom}");
    // The snapshot the page links to is served.
    let src = dom
        .split(r#"src="/snapshot/"#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("snapshot img");
    let bytes = reqwest::get(format!("http://{addr}/snapshot/{src}"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), jpeg.as_slice());
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_plates_puts_whole_plates_on_the_status_page_and_masks_by_default() {
    for (extra, shown, hidden) in [
        ("show_plates = true", "闽A12345", "闽A1***5"),
        ("", "闽A1***5", "闽A12345"),
    ] {
        let (_dir, ops, addr, server) = start(extra).await;
        ops.record_passage("entry-1", Some("闽A12345"), "entry", Timestamp::now(), None);
        let (status, page) = get(&format!("http://{addr}/")).await;
        assert_eq!(status, 200);
        assert!(
            page.contains(&format!(r#"<td class="plate">{shown}</td>"#)),
            "[http] {extra:?}: {page}"
        );
        assert!(!page.contains(hidden), "[http] {extra:?}: {page}");
        server.abort();
    }
}
