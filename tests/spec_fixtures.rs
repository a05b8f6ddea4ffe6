//! The platform spec as an independent oracle. `tests/fixtures/spec/` holds request
//! and answer bodies written by hand from the spec's tables (the English digest and
//! the Chinese original V2.9, §3.2.1–3.2.4, §3.3). This file checks them with its own
//! field lists, written from the same tables — deliberately not
//! `platform::wire`'s table, which the bridge and the mock share, so a field
//! misnamed there (`paid_fee`, `away_time`, `event`…) cannot pass by agreeing with
//! itself. Then:
//! - the mock platform (a real process) must accept every request fixture and refuse
//!   each one with a required field missing or renamed;
//! - the bridge's own requests, built from reports through the real client
//!   (`PlatformClient::prepare`, then decrypted), must equal the fixtures field by
//!   field, go to the spec's paths, and pass the hand-written lists;
//! - every answer shape of the spec (`result_code`, `error`, bare `success:false`)
//!   must be understood the way the spec says.

mod platform_common;
mod process_common;

use parking_bridge::config::PlatformConfig;
use parking_bridge::config::platform::Secret;
use parking_bridge::platform::envelope;
use parking_bridge::platform::response::{self, Verdict};
use parking_bridge::platform::{PlatformClient, Uplink};
use parking_bridge::report::Report;
use parking_bridge::time::Timestamp;
use platform_common::{APP_ID, MockProcess, SECRET};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// A field's JSON type and limit, as the spec's tables give them.
#[derive(Debug, Clone, Copy)]
enum Ty {
    /// `string`, at most this many characters.
    Str(usize),
    /// `int` of 8 digits.
    Int8,
}

/// One row of a spec table: name, required (是/否), type.
type Row = (&'static str, bool, Ty);

/// §3.2.1 车辆入场上报, `POST /barrier/parking`.
const ENTRY: &[Row] = &[
    ("out_order_no", true, Ty::Str(64)),
    ("plate_no", true, Ty::Str(16)),
    ("plate_color", true, Ty::Str(16)),
    ("car_type", false, Ty::Str(16)),
    ("parking_time", true, Ty::Str(32)),
    // "小于 500k": the digest's decision, under 500 000 characters of base64.
    ("snapshot", false, Ty::Str(500_000)),
    ("parking_lot_no", true, Ty::Str(32)),
    ("port_no", true, Ty::Str(32)),
    ("operator", false, Ty::Str(16)),
    ("price", false, Ty::Int8),
    ("should_pay", false, Ty::Int8),
    ("total_spaces", true, Ty::Int8),
    ("free_spaces", true, Ty::Int8),
];

/// §3.2.2 车辆离场上报, `POST /barrier/away`.
const EXIT: &[Row] = &[
    ("out_order_no", true, Ty::Str(64)),
    ("plate_no", true, Ty::Str(16)),
    ("plate_color", true, Ty::Str(16)),
    ("car_type", false, Ty::Str(16)),
    ("away_time", true, Ty::Str(32)),
    ("price", true, Ty::Int8),
    ("should_pay", true, Ty::Int8),
    ("paid_fee", true, Ty::Int8),
    ("snapshot", false, Ty::Str(500_000)),
    ("parking_lot_no", true, Ty::Str(32)),
    ("port_no", true, Ty::Str(32)),
    ("operator", false, Ty::Str(16)),
    ("total_spaces", true, Ty::Int8),
    ("free_spaces", true, Ty::Int8),
];

/// §3.2.3 图片上传, `POST /barrier/uploadSnapshot` (printed `//barrier/…`).
const SNAPSHOT: &[Row] = &[
    ("out_order_no", true, Ty::Str(64)),
    ("event", true, Ty::Str(16)),
    ("snapshot", true, Ty::Str(500_000)),
];

/// §3.2.4 车场心跳, `POST /barrier/heartbeat` (printed `//barrier/…`).
const HEARTBEAT: &[Row] = &[
    ("parking_lot_no", true, Ty::Str(32)),
    ("status", true, Ty::Str(16)),
];

/// Interface of a fixture file (by its name's first part), its table and its path.
fn interface(file: &str) -> (&'static [Row], &'static str) {
    match file.split('.').next().unwrap_or_default() {
        "entry" => (ENTRY, "/barrier/parking"),
        "exit" => (EXIT, "/barrier/away"),
        "snapshot" => (SNAPSHOT, "/barrier/uploadSnapshot"),
        "heartbeat" => (HEARTBEAT, "/barrier/heartbeat"),
        other => panic!("fixture {file}: unknown interface {other}"),
    }
}

/// §3.3.3 车牌颜色.
const PLATE_COLORS: &[&str] = &[
    "pnc_01", "pnc_02", "pnc_03", "pnc_04", "pnc_05", "pnc_06", "pnc_07", "pnc_08",
];
/// §3.3.1 车辆类型.
const CAR_TYPES: &[&str] = &["normal", "special", "white", "parkcard"];

fn spec_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spec")
}

/// (file name, parsed object) of every file in `tests/fixtures/spec/<sub>`.
fn fixtures(sub: &str) -> Vec<(String, Map<String, Value>)> {
    let mut files: Vec<_> = std::fs::read_dir(spec_dir().join(sub))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            match serde_json::from_str(&text) {
                Ok(Value::Object(m)) => (name, m),
                other => panic!("{name}: not a JSON object: {other:?}"),
            }
        })
        .collect()
}

fn fixture(sub: &str, name: &str) -> Map<String, Value> {
    fixtures(sub)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no fixture {sub}/{name}"))
        .1
}

/// `YYYY-MM-DD HH24:MI:SS`, checked character by character.
fn is_spec_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

/// Every problem of `body` against the spec table `rows` (empty: conforms).
fn check_against_table(rows: &[Row], body: &Map<String, Value>) -> Vec<String> {
    let mut problems = Vec::new();
    for key in body.keys() {
        if !rows.iter().any(|(name, _, _)| name == key) {
            problems.push(format!("field {key} is not in the spec's table"));
        }
    }
    for (name, required, ty) in rows {
        let Some(v) = body.get(*name) else {
            if *required {
                problems.push(format!("required field {name} missing"));
            }
            continue;
        };
        match (ty, v) {
            (Ty::Str(max), Value::String(s)) => {
                let chars = s.chars().count();
                if chars > *max {
                    problems.push(format!("{name}: {chars} characters > {max}"));
                }
                if *required && s.is_empty() {
                    problems.push(format!("{name}: empty"));
                }
            }
            (Ty::Int8, Value::Number(n)) => match n.as_i64() {
                Some(i) if (0..=99_999_999).contains(&i) => {}
                _ => problems.push(format!("{name}: {n} is not an int of 8 digits")),
            },
            _ => problems.push(format!("{name}: {v} is not of type {ty:?}")),
        }
        let text = v.as_str().unwrap_or_default();
        let ok = match *name {
            "plate_color" => PLATE_COLORS.contains(&text),
            "car_type" => CAR_TYPES.contains(&text),
            "event" => matches!(text, "parking" | "away"),
            "status" => matches!(text, "alive" | "lost"),
            "parking_time" | "away_time" => is_spec_time(text),
            "plate_no" => !text.contains(' '),
            _ => true,
        };
        if !ok {
            problems.push(format!("{name}: {v} is not a value the spec allows"));
        }
    }
    if let (Some(total), Some(free)) = (
        body.get("total_spaces").and_then(Value::as_i64),
        body.get("free_spaces").and_then(Value::as_i64),
    ) && free > total
    {
        problems.push(format!("free_spaces {free} > total_spaces {total}"));
    }
    problems
}

#[test]
fn request_fixtures_follow_the_spec_tables() {
    let all = fixtures("requests");
    assert!(all.len() >= 8, "fixtures missing: {}", all.len());
    for (name, body) in &all {
        let (rows, _) = interface(name);
        let problems = check_against_table(rows, body);
        assert!(problems.is_empty(), "{name}: {problems:?}");
        // A `full` fixture shows every field of its table, a `minimal` one exactly the
        // required ones: together they are the table.
        let keys: Vec<&str> = body.keys().map(String::as_str).collect();
        if name.contains(".full.") {
            let names: Vec<&str> = rows.iter().map(|r| r.0).collect();
            assert_eq!(sorted(keys), sorted(names), "{name}");
        } else if name.contains(".minimal.") {
            let required: Vec<&str> = rows.iter().filter(|r| r.1).map(|r| r.0).collect();
            assert_eq!(sorted(keys), sorted(required), "{name}");
        }
    }
    // Every interface has a fixture.
    for kind in ["entry.", "exit.", "snapshot.", "heartbeat."] {
        assert!(all.iter().any(|(n, _)| n.starts_with(kind)), "{kind}");
    }
}

#[test]
fn the_hand_written_lists_catch_what_they_must() {
    // The checker itself can fail: a renamed, a missing and a mistyped field.
    let mut exit = fixture("requests", "exit.full.json");
    assert!(check_against_table(EXIT, &exit).is_empty());
    let paid = exit.remove("paid_fee").unwrap();
    exit.insert("paidfee".into(), paid);
    let problems = check_against_table(EXIT, &exit);
    assert!(
        problems.iter().any(|p| p.contains("paid_fee missing"))
            && problems.iter().any(|p| p.contains("paidfee")),
        "{problems:?}"
    );
    let mut entry = fixture("requests", "entry.minimal.json");
    entry.insert("free_spaces".into(), json!("79"));
    entry.insert("parking_time".into(), json!("2019-10-04T13:40:00"));
    assert_eq!(check_against_table(ENTRY, &entry).len(), 2);
    let mut snapshot = fixture("requests", "snapshot.parking.json");
    snapshot.insert("event".into(), json!("entry"));
    assert_eq!(check_against_table(SNAPSHOT, &snapshot).len(), 1);
}

fn sorted(mut v: Vec<&str>) -> Vec<&str> {
    v.sort_unstable();
    v
}

/// POSTs `business` to the mock, sealed as the spec's envelope; the plain answer.
async fn post(mock: &MockProcess, path: &str, business: &Map<String, Value>) -> Value {
    let body = envelope::seal(
        APP_ID,
        SECRET.as_bytes().try_into().unwrap(),
        &uuid::Uuid::new_v4().to_string(),
        // Now, lot-local: the mock refuses envelopes stamped outside its ±10 min window.
        &parking_bridge::time::Timestamp::now()
            .format_local(parking_bridge::time::china_standard_time()),
        serde_json::to_vec(business).unwrap(),
    );
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", mock.base_url()))
        .header("content-type", "application/json")
        .body(body)
        .timeout(std::time::Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "{path}: HTTP {status}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

fn accepted(answer: &Value) -> bool {
    answer["success"] == json!(true) && answer["result_code"] == json!("success")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_platform_accepts_every_fixture_and_refuses_each_broken_one() {
    let mock = MockProcess::start(&[]);
    // In delivery order: entries, their snapshots, exits, then heartbeats.
    let order = [
        "entry.full.json",
        "entry.minimal.json",
        "snapshot.parking.json",
        "exit.full.json",
        "exit.minimal.json",
        "snapshot.away.json",
        "heartbeat.alive.json",
        "heartbeat.lost.json",
    ];
    assert_eq!(
        order.len(),
        fixtures("requests").len(),
        "a fixture not sent"
    );
    for name in order {
        let (rows, path) = interface(name);
        let body = fixture("requests", name);
        // Broken first (a refused request changes nothing): each required field
        // missing, and each renamed.
        for (field, required, _) in rows.iter().filter(|r| r.1) {
            assert!(required);
            let mut missing = body.clone();
            let value = missing.remove(*field).unwrap();
            let answer = post(&mock, path, &missing).await;
            assert!(!accepted(&answer), "{name} without {field}: {answer}");
            let mut renamed = missing;
            renamed.insert(format!("{field}_x"), value);
            let answer = post(&mock, path, &renamed).await;
            assert!(!accepted(&answer), "{name} with {field} renamed: {answer}");
        }
        let answer = post(&mock, path, &body).await;
        assert!(accepted(&answer), "{name}: {answer}");
        // The answer has the spec's shape for this interface.
        let shape = match name.split('.').next().unwrap() {
            "entry" => &[
                "success",
                "result_code",
                "inner_oder_no",
                "sign_level",
                "sign_time",
            ][..],
            "exit" => &["success", "result_code", "inner_oder_no"][..],
            _ => &["success", "result_code", "result_msg"][..],
        };
        for field in shape {
            assert!(answer.get(field).is_some(), "{name}: {field} in {answer}");
        }
        if let Some(t) = answer.get("sign_time").and_then(Value::as_str) {
            assert!(is_spec_time(t), "{t}");
        }
    }
    // Sent again, an entry is a duplicate (§3.2.1's error example).
    let again = post(
        &mock,
        "/barrier/parking",
        &fixture("requests", "entry.full.json"),
    )
    .await;
    assert_eq!(again["result_code"], "OUT_ORDER_NO_DUPLICATION", "{again}");
}

/// The real client for a lot `LOT001` at +08:00, through TOML as an installer writes it.
fn client() -> PlatformClient {
    let cfg: PlatformConfig = toml::from_str(&format!(
        "base_url = \"http://127.0.0.1:9\"\napp_id = \"{APP_ID}\"\nutc_offset = \"+08:00\"\n"
    ))
    .unwrap();
    PlatformClient::new(&cfg, Secret::new(SECRET).unwrap()).unwrap()
}

/// What the bridge would POST for `uplink`: the URL and the decrypted business JSON.
fn bridge_request(uplink: &Uplink) -> (String, Map<String, Value>) {
    let prepared = client().prepare(uplink, Timestamp(1_570_167_364_000));
    let env: Value = serde_json::from_slice(&prepared.body).unwrap();
    let plain = envelope::decrypt_b64(
        SECRET.as_bytes().try_into().unwrap(),
        env["encrypted_data"].as_str().unwrap(),
    )
    .unwrap();
    match serde_json::from_slice(&plain).unwrap() {
        Value::Object(m) => (prepared.url, m),
        other => panic!("{other}"),
    }
}

/// A report (as the outbox stores it) → the bridge's wire request.
fn uplink_of(report: Value, snapshot: Option<&Value>) -> Uplink {
    let report: Report = serde_json::from_value(report).unwrap();
    let b64 = snapshot.and_then(Value::as_str).map(str::to_string);
    Uplink::from_report(
        &report,
        "LOT001",
        b64,
        chrono::FixedOffset::east_opt(8 * 3600).unwrap(),
    )
    .unwrap()
}

/// Seconds since the epoch of a `+08:00` wall-clock time of 2019-10-04.
fn cst_2019_10_04(h: i64, m: i64, s: i64) -> i64 {
    // 2019-10-04 00:00:00 +08:00 = 1570118400 UTC seconds.
    (1_570_118_400 + h * 3600 + m * 60 + s) * 1000
}

fn assert_same_fields(what: &str, got: &Map<String, Value>, want: &Map<String, Value>) {
    let mut diffs = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            None => diffs.push(format!("{k}: missing (spec fixture has {v})")),
            Some(g) if g != v => diffs.push(format!("{k}: bridge sends {g}, spec fixture {v}")),
            _ => {}
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(*k)) {
        diffs.push(format!("{k}: sent by the bridge, not in the spec fixture"));
    }
    assert!(
        diffs.is_empty(),
        "{what} differs from the spec:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn the_bridges_requests_equal_the_spec_fixtures_field_by_field() {
    let oon = "LOT0012019100413360400000001";
    let full_entry = fixture("requests", "entry.full.json");
    let entry = uplink_of(
        json!({"kind": "entry", "out_order_no": oon, "plate_no": "闽A12345",
               "plate_color": "pnc_02", "car_type": "normal",
               "parking_time": cst_2019_10_04(13, 36, 4), "port_no": "IN01",
               "operator": "booth1", "price": 0, "should_pay": 0,
               "total_spaces": 100, "free_spaces": 80}),
        full_entry.get("snapshot"),
    );
    let full_exit = fixture("requests", "exit.full.json");
    let exit = uplink_of(
        json!({"kind": "exit", "out_order_no": oon, "plate_no": "闽A12345",
               "plate_color": "pnc_02", "car_type": "normal",
               "away_time": cst_2019_10_04(16, 36, 4), "price": 500, "should_pay": 200,
               "paid_fee": 300, "port_no": "OUT01", "operator": "booth2",
               "total_spaces": 100, "free_spaces": 80}),
        full_exit.get("snapshot"),
    );
    let minimal_exit = fixture("requests", "exit.minimal.json");
    let minimal = uplink_of(
        json!({"kind": "exit", "out_order_no": "LOT0012019100413400000000002",
               "plate_no": "浙B23456", "plate_color": "pnc_03", "car_type": "normal",
               "away_time": cst_2019_10_04(14, 0, 0), "price": 0, "should_pay": 0,
               "paid_fee": 0, "port_no": "OUT01", "total_spaces": 100, "free_spaces": 80}),
        None,
    );
    let snap = fixture("requests", "snapshot.away.json");
    let snapshot = uplink_of(
        json!({"kind": "snapshot", "out_order_no": oon, "event": "away"}),
        snap.get("snapshot"),
    );
    let cases: Vec<(&str, Uplink, Map<String, Value>)> = vec![
        ("entry.full.json", entry, full_entry),
        ("exit.full.json", exit, full_exit),
        ("exit.minimal.json", minimal, {
            // The bridge always names the car type (optional; default `normal`).
            let mut m = minimal_exit;
            m.insert("car_type".into(), json!("normal"));
            m
        }),
        ("snapshot.away.json", snapshot, snap),
        (
            "heartbeat.alive.json",
            Uplink::heartbeat("LOT001", true).unwrap(),
            fixture("requests", "heartbeat.alive.json"),
        ),
        (
            "heartbeat.lost.json",
            Uplink::heartbeat("LOT001", false).unwrap(),
            fixture("requests", "heartbeat.lost.json"),
        ),
    ];
    for (name, uplink, want) in cases {
        let (url, got) = bridge_request(&uplink);
        let (rows, path) = interface(name);
        assert_eq!(url, format!("http://127.0.0.1:9{path}"), "{name}");
        let problems = check_against_table(rows, &got);
        assert!(problems.is_empty(), "bridge's {name}: {problems:?}");
        assert_same_fields(name, &got, &want);
    }
}

#[test]
fn the_envelope_matches_the_spec_example() {
    let golden = fixture("", "envelope.golden.json");
    let key: &[u8; 16] = golden["appsecret"]
        .as_str()
        .unwrap()
        .as_bytes()
        .try_into()
        .unwrap();
    let plaintext = golden["plaintext"].as_str().unwrap();
    let encrypted = golden["encrypted_data"].as_str().unwrap();
    assert_eq!(envelope::encrypt_b64(key, plaintext.as_bytes()), encrypted);
    // The whole request body: the four envelope fields of §1.5, nothing else.
    let body = envelope::seal(
        golden["app_id"].as_str().unwrap(),
        key,
        golden["message_id"].as_str().unwrap(),
        golden["timestamp"].as_str().unwrap(),
        plaintext.as_bytes().to_vec(),
    );
    let body: Value = serde_json::from_slice(&body).unwrap();
    let want: Value = json!({
        "app_id": golden["app_id"], "message_id": golden["message_id"],
        "encrypted_data": encrypted, "timestamp": golden["timestamp"],
    });
    assert_eq!(body, want);
}

#[test]
fn every_answer_shape_of_the_spec_is_understood() {
    let key: &[u8; 16] = SECRET.as_bytes().try_into().unwrap();
    let answers = fixtures("answers");
    assert!(answers.len() >= 10, "{}", answers.len());
    for (name, body) in answers {
        // The common fields (§3.2.x 返回参数): success bool, result_code ≤ 64,
        // result_msg ≤ 200.
        assert!(body["success"].is_boolean(), "{name}");
        for (field, max) in [
            ("result_code", 64),
            ("result_msg", 200),
            ("inner_oder_no", 64),
        ] {
            if let Some(v) = body.get(field) {
                assert!(
                    v.as_str().is_some_and(|s| s.chars().count() <= max),
                    "{name}"
                );
            }
        }
        let bytes = serde_json::to_vec(&body).unwrap();
        // Plain, and (the spec: the envelope applies to both directions) enveloped.
        let sealed = envelope::seal(APP_ID, key, "m-1", "2019-10-04 13:36:04", bytes.clone());
        for (how, raw) in [("plain", &bytes), ("enveloped", &sealed)] {
            let answer = response::decode(200, raw, key, &response::ResultCodes::default());
            let v = &answer.verdict;
            let what = format!("{name} ({how}): {answer:?}");
            match name.as_str() {
                "entry.success.json" => {
                    assert_eq!(*v, Verdict::Done, "{what}");
                    assert_eq!(
                        answer.inner_oder_no.as_deref(),
                        Some("R2019120417100510710013"),
                        "{what}"
                    );
                    assert_eq!(answer.sign_level.as_deref(), Some("L2"), "{what}");
                    assert_eq!(
                        answer.sign_time.as_deref(),
                        Some("2019-10-04 13:36:04"),
                        "{what}"
                    );
                }
                "exit.success.json" => {
                    assert_eq!(*v, Verdict::Done, "{what}");
                    assert!(answer.inner_oder_no.is_some(), "{what}");
                }
                "snapshot.success.json" | "heartbeat.success.json" => {
                    assert_eq!(*v, Verdict::Done, "{what}")
                }
                "entry.duplicate.json" => assert_eq!(*v, Verdict::AlreadyDone, "{what}"),
                "exit.order_not_exist.json" | "exit.out_order_no_not_exist.json" => {
                    assert_eq!(*v, Verdict::NeedsEntryFirst, "{what}")
                }
                "any.lot_not_exist.json" => {
                    assert!(
                        matches!(v, Verdict::ConfigFault { code, .. } if code == "PARKING_LOT_NOT_EXIST"),
                        "{what}"
                    )
                }
                "snapshot.error.json" => {
                    // `success:false` with an `error`: this report is refused (not a
                    // platform outage), and the platform's words reach the operator.
                    assert!(matches!(v, Verdict::Refused { .. }), "{what}");
                    assert!(format!("{answer:?}").contains("event 缺失"), "{what}");
                }
                "heartbeat.bare_false.json" => {
                    assert!(matches!(v, Verdict::Refused { .. }), "{what}")
                }
                "any.success_true_unknown_code.json" => {
                    // The digest's order: `success:true` with a code nobody named is
                    // delivered (logged, never retried).
                    assert!(v.is_delivered(), "{what}")
                }
                other => panic!("answer fixture {other} has no expectation here"),
            }
        }
    }
}
