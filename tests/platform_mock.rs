//! The mock platform as a real process, driven by the library's own client: state,
//! restarts with a record file, fault injection, robustness over HTTP.

mod platform_common;
mod process_common;

use parking_bridge::config::PlatformConfig;
use parking_bridge::platform::{ClientError, PlatformClient, Secret, Uplink, UplinkKind, Verdict};
use platform_common::*;
use std::time::Duration;

fn client(base_url: &str) -> PlatformClient {
    let cfg: PlatformConfig = toml::from_str(&format!(
        "base_url = {base_url:?}\napp_id = {APP_ID:?}\nconnect_timeout_secs = 1\nrequest_timeout_secs = 3\n"
    ))
    .unwrap();
    PlatformClient::new(&cfg, Secret::new(SECRET).unwrap()).unwrap()
}

/// A request as the mock reads it (the parse is the boundary where it is checked).
fn uplink(kind: UplinkKind, json: serde_json::Value) -> Uplink {
    Uplink::parse(kind, json.to_string().as_bytes()).unwrap()
}

fn entry(o: &str) -> Uplink {
    uplink(
        UplinkKind::Entry,
        serde_json::json!({"out_order_no": o, "plate_no": "闽A12345", "plate_color": "pnc_02",
            "car_type": "normal", "parking_time": "2019-10-04 13:36:04",
            "snapshot": "/9j/4AAQSkZJRgABAQ==", "parking_lot_no": "P001", "port_no": "E1",
            "total_spaces": 100, "free_spaces": 99}),
    )
}

fn exit(o: &str) -> Uplink {
    uplink(
        UplinkKind::Exit,
        serde_json::json!({"out_order_no": o, "plate_no": "闽A12345", "plate_color": "pnc_02",
            "away_time": "2019-10-04 15:00:00", "price": 1000, "should_pay": 0,
            "paid_fee": 1000, "parking_lot_no": "P001", "port_no": "X1",
            "total_spaces": 100, "free_spaces": 100}),
    )
}

async fn verdict(c: &PlatformClient, u: &Uplink) -> Verdict {
    tokio::time::timeout(Duration::from_secs(10), c.send(u))
        .await
        .expect("bounded")
        .expect("answered")
        .verdict
}

#[tokio::test]
async fn stays_flow_and_restarted_mock_keeps_state_from_record_file() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("rec.jsonl");
    let rec = record.to_str().unwrap();
    let mock = MockProcess::start(&["--record", rec]);
    let c = client(&mock.base_url());
    assert_eq!(verdict(&c, &exit("o-1")).await, Verdict::NeedsEntryFirst);
    let answer = c.send(&entry("o-1")).await.unwrap();
    assert_eq!(answer.verdict, Verdict::Done);
    let inner = answer.inner_oder_no.expect("inner_oder_no on entry");
    assert_eq!(answer.sign_level.as_deref(), Some("L2"));
    let snap = uplink(
        UplinkKind::Snapshot,
        serde_json::json!({"out_order_no": "o-1", "event": "parking", "snapshot": "AAAA"}),
    );
    assert_eq!(verdict(&c, &snap).await, Verdict::Done);
    mock.stop();

    let mock = MockProcess::start(&["--record", rec]);
    let c = client(&mock.base_url());
    assert_eq!(
        verdict(&c, &entry("o-1")).await,
        Verdict::AlreadyDone,
        "state survived the restart"
    );
    let answer = c.send(&exit("o-1")).await.unwrap();
    assert_eq!(answer.verdict, Verdict::Done);
    assert_eq!(answer.inner_oder_no.as_deref(), Some(inner.as_str()));

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each record line is JSON"))
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[1]["path"], "/barrier/parking");
    assert_eq!(lines[1]["accepted"], true);
    assert_eq!(lines[1]["app_id"], APP_ID);
    assert_eq!(lines[1]["body"]["plate_no"], "闽A12345", "decrypted");
    assert_eq!(
        lines[1]["body"]["snapshot"]["snapshot_bytes"], 13,
        "image replaced by its size"
    );
    assert_eq!(lines[3]["result_code"], "OUT_ORDER_NO_DUPLICATION");
}

#[tokio::test]
async fn injected_http_failures_are_retry_verdicts_and_odd_success_codes_delivered() {
    let mock = MockProcess::start(&["--fail-rate", "1"]);
    let c = client(&mock.base_url());
    assert!(matches!(
        verdict(&c, &Uplink::heartbeat("P001", true).unwrap()).await,
        Verdict::Retry { .. }
    ));

    let mock = MockProcess::start(&["--error-code-rate", "1"]);
    let c = client(&mock.base_url());
    assert_eq!(
        verdict(&c, &entry("o-2")).await,
        Verdict::Done,
        "success:true with an undocumented code is delivered (spec, revised order)"
    );

    let mock = MockProcess::start(&["--outage-secs", "30"]);
    let c = client(&mock.base_url());
    assert!(matches!(
        verdict(&c, &Uplink::heartbeat("P001", true).unwrap()).await,
        Verdict::Retry { .. }
    ));
}

#[tokio::test]
async fn dropped_connection_is_a_retriable_client_error() {
    let mock = MockProcess::start(&["--drop-rate", "1"]);
    let c = client(&mock.base_url());
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        c.send(&Uplink::heartbeat("P001", true).unwrap()),
    )
    .await
    .expect("bounded")
    .unwrap_err();
    assert!(matches!(err, ClientError::Transport { .. }), "{err:?}");
    assert!(err.is_retriable());
}

#[tokio::test]
async fn latency_is_added_and_envelope_answers_decode() {
    let mock = MockProcess::start(&["--latency-ms", "300", "--envelope-answers"]);
    let c = client(&mock.base_url());
    let started = std::time::Instant::now();
    assert_eq!(
        verdict(&c, &Uplink::heartbeat("P001", true).unwrap()).await,
        Verdict::Done
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn mock_survives_garbage_over_http() {
    let mock = MockProcess::start(&[]);
    let http = reqwest::Client::new();
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        b"{".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x80],
        br#"{"app_id":"ae145d83e56cb332","message_id":"m","encrypted_data":"AAAAAAAAAAAAAAAAAAAAAA==","timestamp":"2019-10-04 13:36:04"}"#.to_vec(),
        vec![b'a'; 100_000],
    ];
    for (i, body) in garbage.into_iter().enumerate() {
        for path in ["/barrier/parking", "/barrier/heartbeat", "/nope"] {
            let resp = http
                .post(format!("{}{path}", mock.base_url()))
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert!(
                resp.status().as_u16() < 500,
                "case {i} {path}: {}",
                resp.status()
            );
        }
    }
    let c = client(&mock.base_url());
    assert_eq!(
        verdict(&c, &Uplink::heartbeat("P001", true).unwrap()).await,
        Verdict::Done,
        "still serving"
    );
}
