//! The strict stand-in for City Brain (`parking-bridge mock-platform`).
//!
//! Request handling is the pure [`handle`]: bytes in, status and bytes out, given the
//! state and `now`. It decrypts and validates every request with the same wire code the
//! bridge uses, answers like the platform, and describes the request as one record
//! line. The HTTP layer around it ([`serve`]) only adds latency, drops connections,
//! appends records to the file and locks the state.

use super::envelope::{self, EnvelopeError};
use super::response::codes;
use super::wire::{self, Uplink, UplinkKind};
use crate::config::platform::Secret;
use crate::time::Timestamp;
use chrono::FixedOffset;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Codes the mock answers with that the spec does not name. **Decision:** the real
/// platform's codes for these cases are unknown; the bridge does not know these names
/// either (they read as refusals unless a site maps them), which is the point: the mock
/// behaves like a platform with undocumented codes.
pub mod mock_codes {
    named_codes! {
        INVALID_APP_ID,
        DECRYPT_FAILED,
        INVALID_PARAMETER,
        INVALID_JSON,
        INVALID_BASE64,
        INVALID_TIMESTAMP,
        DUPLICATE_MESSAGE_ID,
        /// What the mock answers with when injecting `success:true` + error code.
        SYSTEM_BUSY,
        REFUSED_BY_RULE,
    }
}

/// Who the mock is.
#[derive(Debug, Clone)]
pub struct MockConfig {
    pub app_id: String,
    pub secret: Secret,
    /// Registered lots; empty accepts any `parking_lot_no`.
    pub lots: Vec<String>,
    /// Offset for `sign_time` and the generated `inner_oder_no`.
    pub offset: FixedOffset,
    /// Answer with an envelope instead of plain JSON (the spec allows both).
    pub envelope_answers: bool,
    /// How the mock answers where the real platform may differ.
    pub behaviour: MockBehaviour,
}

/// The shape of a refusal: the spec's examples show all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefusalShape {
    /// `{"success":false,"result_code":CODE,"result_msg":TEXT}`
    #[default]
    ResultCode,
    /// `{"success":false,"error":TEXT}`
    Error,
    /// `{"success":false}`
    Bare,
}

impl RefusalShape {
    pub fn parse(text: &str) -> Option<RefusalShape> {
        match text {
            "result_code" | "result-code" => Some(RefusalShape::ResultCode),
            "error" => Some(RefusalShape::Error),
            "bare" => Some(RefusalShape::Bare),
            _ => None,
        }
    }
}

/// Refuses single reports: those at `path` (any when `None`) whose stay's plate is
/// `plate` (any when `None`), with `code` (the shape decides when `None`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RefuseRule {
    pub path: Option<String>,
    pub plate: Option<String>,
    pub code: Option<String>,
}

/// Where the mock can behave like real platforms do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockBehaviour {
    pub refusal_shape: RefusalShape,
    /// The code for an exit or snapshot of an unknown stay (`ORDER_NOT_EXIST` or
    /// `OUT_ORDER_NO_NOT_EXIST`, both in the spec).
    pub not_exist_code: String,
    /// Answer every code in lower case (`out_order_no_duplication`).
    pub lowercase_codes: bool,
    pub rules: Vec<RefuseRule>,
    /// Requests whose envelope `timestamp` is further than this from the mock's clock
    /// are refused; `None` accepts any time.
    pub timestamp_window: Option<Duration>,
    /// A `message_id` seen before is refused (replay protection).
    pub refuse_replayed_message_ids: bool,
    /// Refuse this many stays in a hundred, always the same ones (chosen by a stable
    /// hash of the `out_order_no`): every report of them, every time.
    pub refuse_percent: u8,
}

/// Whether the stay `out_order_no` is among the `percent` refused ones: FNV-1a of the
/// text, modulo 100. Stable across runs and processes.
pub fn refused_by_percent(out_order_no: &str, percent: u8) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in out_order_no.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h % 100 < u64::from(percent)
}

impl Default for MockBehaviour {
    fn default() -> Self {
        MockBehaviour {
            refusal_shape: RefusalShape::ResultCode,
            not_exist_code: codes::ORDER_NOT_EXIST.to_string(),
            lowercase_codes: false,
            rules: Vec::new(),
            timestamp_window: Some(Duration::from_secs(600)),
            refuse_replayed_message_ids: true,
            refuse_percent: 0,
        }
    }
}

/// One stay the mock knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub inner_oder_no: String,
    pub exited: bool,
    pub plate_no: String,
}

/// What the mock remembers: every accepted stay and counters.
#[derive(Debug, Clone, Default)]
pub struct MockState {
    pub orders: HashMap<String, Order>,
    pub entries: u64,
    pub exits: u64,
    pub snapshots: u64,
    pub heartbeats: u64,
    next_seq: u64,
    /// Every `message_id` processed (replay protection).
    message_ids: std::collections::HashSet<String>,
}

/// A fault the HTTP layer decided to inject into this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Inside the configured outage window: 503.
    Outage,
    /// HTTP 500.
    Fail,
    /// Close the connection without an answer.
    Drop,
    /// Handled normally, but a success is answered `success: true` with an
    /// undocumented code (the original's habit), which the bridge must count as delivered.
    ErrorCode,
}

/// How to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Http {
        status: u16,
        body: Vec<u8>,
    },
    /// Close the connection without answering.
    Drop,
}

/// One line of the record file (JSON Lines).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When the mock handled it, ms since the Unix epoch.
    pub at: Timestamp,
    pub path: String,
    #[serde(default)]
    pub app_id: Option<String>,
    #[serde(default)]
    pub message_id: Option<String>,
    /// What the mock answered (`success`, an error code, or `HTTP_500` / `DROPPED`).
    pub result_code: String,
    /// The request was accepted as new (answered `success`).
    pub accepted: bool,
    /// Why it was refused, naming the problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_oder_no: Option<String>,
    /// The decrypted business JSON, `snapshot` replaced by `{"snapshot_bytes": N}` (plus
    /// `width` and `height` when it is a decodable image);
    /// null when it could not be decrypted.
    #[serde(default)]
    pub body: Value,
}

impl Record {
    /// The records of a record file, in order: `None` for a line that cannot be read
    /// or is not a record (blank lines are skipped).
    pub fn read_all(reader: impl BufRead) -> impl Iterator<Item = Option<Record>> {
        reader.lines().filter_map(|line| match line {
            Ok(line) if line.trim().is_empty() => None,
            Ok(line) => Some(serde_json::from_str::<Record>(&line).ok()),
            Err(_) => Some(None),
        })
    }
}

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    pub reply: Reply,
    pub record: Record,
}

impl MockState {
    /// Rebuilds the state from a record file's lines (a restarted mock keeps its
    /// stays). Lines that do not parse are skipped and counted.
    pub fn replay(reader: impl BufRead) -> (MockState, usize) {
        let mut state = MockState::default();
        let mut skipped = 0;
        for record in Record::read_all(reader) {
            match record {
                Some(r) => state.apply_record(&r),
                None => skipped += 1,
            }
        }
        (state, skipped)
    }

    fn apply_record(&mut self, r: &Record) {
        if let Some(m) = &r.message_id
            && !matches!(r.result_code.as_str(), "DROPPED" | "HTTP_500" | "HTTP_503")
        {
            self.message_ids.insert(m.clone());
        }
        if !r.accepted {
            return;
        }
        let out_order_no = r
            .body
            .get("out_order_no")
            .and_then(Value::as_str)
            .map(str::to_string);
        match (UplinkKind::from_path(&r.path), out_order_no) {
            (Some(UplinkKind::Entry), Some(o)) => {
                self.entries += 1;
                self.next_seq += 1;
                let inner = r
                    .inner_oder_no
                    .clone()
                    .unwrap_or_else(|| format!("R{:06}", self.next_seq));
                let plate_no = r
                    .body
                    .get("plate_no")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                self.orders.insert(
                    o,
                    Order {
                        inner_oder_no: inner,
                        exited: false,
                        plate_no,
                    },
                );
            }
            (Some(UplinkKind::Exit), Some(o)) => {
                self.exits += 1;
                if let Some(order) = self.orders.get_mut(&o) {
                    order.exited = true;
                }
            }
            (Some(UplinkKind::Snapshot), _) => self.snapshots += 1,
            (Some(UplinkKind::Heartbeat), _) => self.heartbeats += 1,
            _ => {}
        }
    }

    fn new_inner_order(&mut self, now: Timestamp, offset: FixedOffset) -> String {
        self.next_seq += 1;
        format!(
            "R{}{:06}",
            now.to_local(offset).format("%Y%m%d%H%M%S"),
            self.next_seq % 1_000_000
        )
    }
}

/// Handles one request. Pure: no I/O, no clock, never panics.
pub fn handle(
    state: &mut MockState,
    cfg: &MockConfig,
    path: &str,
    body: &[u8],
    now: Timestamp,
    fault: Fault,
) -> Handled {
    handle_typed(state, cfg, path, Some("application/json"), body, now, fault)
}

/// [`handle`] with the request's `Content-Type`, which must be JSON.
pub fn handle_typed(
    state: &mut MockState,
    cfg: &MockConfig,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    now: Timestamp,
    fault: Fault,
) -> Handled {
    let mut record = Record {
        at: now,
        path: path.to_string(),
        app_id: None,
        message_id: None,
        result_code: String::new(),
        accepted: false,
        message: None,
        inner_oder_no: None,
        body: Value::Null,
    };
    let json_body = content_type.is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    let answer = if json_body {
        process(state, cfg, body, fault, &mut record)
    } else {
        Outcome::Http {
            status: 415,
            code: "HTTP_415",
            message: format!(
                "Content-Type {:?} is not application/json",
                content_type.unwrap_or("(none)")
            ),
        }
    };
    let reply = match answer {
        Outcome::Answer(mut fields) => {
            let success = fields.get("success").and_then(Value::as_bool) == Some(true);
            record.result_code = fields
                .get("result_code")
                .and_then(Value::as_str)
                .unwrap_or(if success { "" } else { "-" })
                .to_string();
            record.accepted = success && record.result_code.eq_ignore_ascii_case(codes::SUCCESS);
            if fault == Fault::ErrorCode
                && record.accepted
                && let Some(obj) = fields.as_object_mut()
            {
                // `success: true` with an undocumented code (the original's habit): the
                // request was taken all the same.
                obj.insert("result_code".into(), json!(mock_codes::SYSTEM_BUSY));
                obj.insert("result_msg".into(), json!("system busy (injected)"));
                record.result_code = mock_codes::SYSTEM_BUSY.to_string();
            }
            if !record.accepted {
                record.message = fields
                    .get("result_msg")
                    .or_else(|| fields.get("error"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            if cfg.behaviour.lowercase_codes
                && let Some(Value::String(code)) = fields.get_mut("result_code")
            {
                *code = code.to_lowercase();
            }
            record.inner_oder_no = fields
                .get("inner_oder_no")
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some(obj) = fields.as_object_mut() {
                obj.retain(|_, v| !v.is_null());
            }
            let plain = fields.to_string().into_bytes();
            let body = if cfg.envelope_answers {
                let message_id = record.message_id.clone().unwrap_or_default();
                envelope::seal(
                    &cfg.app_id,
                    cfg.secret.as_bytes(),
                    &message_id,
                    &now.format_local(cfg.offset),
                    plain,
                )
            } else {
                plain
            };
            Reply::Http { status: 200, body }
        }
        Outcome::Http {
            status,
            code,
            message,
        } => {
            record.result_code = code.to_string();
            record.message = Some(message.clone());
            Reply::Http {
                status,
                body: message.into_bytes(),
            }
        }
        Outcome::Drop => {
            record.result_code = "DROPPED".to_string();
            Reply::Drop
        }
    };
    Handled { reply, record }
}

enum Outcome {
    /// A platform answer (HTTP 200, JSON).
    Answer(Value),
    /// An HTTP-level answer.
    Http {
        status: u16,
        code: &'static str,
        message: String,
    },
    Drop,
}

/// A refusal in the configured shape.
fn refuse_as(shape: RefusalShape, code: &str, message: impl Into<String>) -> Outcome {
    Outcome::Answer(match shape {
        RefusalShape::ResultCode => {
            json!({"success": false, "result_code": code, "result_msg": message.into()})
        }
        RefusalShape::Error => json!({"success": false, "error": message.into()}),
        RefusalShape::Bare => json!({"success": false}),
    })
}

/// Handles a JSON request for the interface at `record.path`, received at
/// `record.at`, filling in what the record learns on the way.
fn process(
    state: &mut MockState,
    cfg: &MockConfig,
    body: &[u8],
    fault: Fault,
    record: &mut Record,
) -> Outcome {
    let (path, now) = (record.path.clone(), record.at);
    let path = path.as_str();
    let b = &cfg.behaviour;
    let refuse = |code: &str, message: String| refuse_as(b.refusal_shape, code, message);
    let Some(kind) = UplinkKind::from_path(path) else {
        return Outcome::Http {
            status: 404,
            code: "HTTP_404",
            message: format!("no interface at {path}"),
        };
    };
    // Decode as far as possible first, so that even a faulted request is recorded.
    let env = match envelope::parse(body) {
        Ok(env) => env,
        Err(e) => {
            return refuse(
                mock_codes::INVALID_JSON,
                format!("body is not an envelope: {e}"),
            );
        }
    };
    record.app_id = Some(env.app_id.clone());
    record.message_id = Some(env.message_id.clone());
    let decrypted = envelope::decrypt_b64(cfg.secret.as_bytes(), &env.encrypted_data);
    let uplink = decrypted.as_ref().map_err(Clone::clone).map(|plain| {
        record.body = recordable_body(plain);
        Uplink::parse(kind, plain)
    });

    match fault {
        Fault::None => {}
        Fault::Outage => {
            return Outcome::Http {
                status: 503,
                code: "HTTP_503",
                message: "outage (injected)".into(),
            };
        }
        Fault::Fail => {
            return Outcome::Http {
                status: 500,
                code: "HTTP_500",
                message: "failure (injected)".into(),
            };
        }
        Fault::Drop => return Outcome::Drop,
        // Handled normally; the answer's code is replaced afterwards (see `handle`).
        Fault::ErrorCode => {}
    }

    if let Err(e) = check_envelope_fields(&env) {
        return refuse(mock_codes::INVALID_PARAMETER, e);
    }
    if let Some(window) = b.timestamp_window {
        let sent = Timestamp::parse_local(&env.timestamp, cfg.offset);
        let skew_ms = sent.map(|t| (t.0 - now.0).abs()).unwrap_or(i64::MAX);
        if skew_ms > i64::try_from(window.as_millis()).unwrap_or(i64::MAX) {
            return refuse(
                mock_codes::INVALID_TIMESTAMP,
                format!(
                    "timestamp {:?} is {} s away from the platform's clock (allowed {} s)",
                    env.timestamp,
                    skew_ms / 1000,
                    window.as_secs()
                ),
            );
        }
    }
    if b.refuse_replayed_message_ids && !state.message_ids.insert(env.message_id.clone()) {
        return refuse(
            mock_codes::DUPLICATE_MESSAGE_ID,
            format!("message_id {:?} was used before (replay)", env.message_id),
        );
    }
    if env.app_id != cfg.app_id {
        return refuse(
            mock_codes::INVALID_APP_ID,
            format!("app_id {:?} is not registered", env.app_id),
        );
    }
    let uplink = match uplink {
        Err(EnvelopeError::Base64) => {
            return refuse(
                mock_codes::INVALID_BASE64,
                "encrypted_data is not standard base64".into(),
            );
        }
        Err(e) => {
            return refuse(
                mock_codes::DECRYPT_FAILED,
                format!("cannot decrypt encrypted_data ({e}): wrong app_secret?"),
            );
        }
        Ok(Err(wire::WireError::Json { message })) => {
            return refuse(
                mock_codes::INVALID_JSON,
                format!("decrypted data is not a JSON object: {message}"),
            );
        }
        Ok(Err(e)) => return refuse(mock_codes::INVALID_PARAMETER, e.to_string()),
        Ok(Ok(u)) => u,
    };
    let names = uplink.names();
    if let Some(lot) = names.parking_lot_no
        && !cfg.lots.is_empty()
        && !cfg.lots.iter().any(|l| l == lot)
    {
        return refuse(
            codes::PARKING_LOT_NOT_EXIST,
            format!("车场不存在: lot {lot:?} is not registered"),
        );
    }
    let ok = |extra: Value| {
        let mut v =
            json!({"success": true, "result_code": codes::SUCCESS, "result_msg": "success"});
        if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), extra) {
            obj.extend(extra);
        }
        Outcome::Answer(v)
    };
    let not_exist = || {
        Outcome::Answer(
            json!({"success": true, "result_code": b.not_exist_code, "result_msg": "订单不存在"}),
        )
    };
    // Refusals of single reports by rule (the stay's plate from its entry).
    let out_order_no = names.out_order_no;
    let plate = names.plate_no.map(str::to_string).or_else(|| {
        let o = out_order_no?;
        state.orders.get(o).map(|order| order.plate_no.clone())
    });
    if b.refuse_percent > 0
        && let Some(o) = out_order_no
        && refused_by_percent(o, b.refuse_percent)
    {
        return refuse(
            mock_codes::REFUSED_BY_RULE,
            format!("refused by --refuse-percent for {o}"),
        );
    }
    for rule in &b.rules {
        let path_ok = rule.path.as_deref().is_none_or(|p| p == path);
        let plate_ok = rule
            .plate
            .as_deref()
            .is_none_or(|p| plate.as_deref() == Some(p));
        if path_ok && plate_ok {
            let code = rule.code.as_deref().unwrap_or(mock_codes::REFUSED_BY_RULE);
            return refuse(
                code,
                format!(
                    "refused by rule ({code}) for {}",
                    out_order_no.unwrap_or(path)
                ),
            );
        }
    }
    match uplink {
        Uplink::Entry(e) => {
            if state.orders.contains_key(e.out_order_no.as_str()) {
                return Outcome::Answer(
                    json!({"success": true, "result_code": codes::OUT_ORDER_NO_DUPLICATION, "result_msg": "外部订单号重复"}),
                );
            }
            let inner = state.new_inner_order(now, cfg.offset);
            state.orders.insert(
                e.out_order_no.into(),
                Order {
                    inner_oder_no: inner.clone(),
                    exited: false,
                    plate_no: e.plate_no.into(),
                },
            );
            state.entries += 1;
            ok(
                json!({"inner_oder_no": inner, "sign_level": "L2", "sign_time": now.format_local(cfg.offset)}),
            )
        }
        Uplink::Exit(x) => match state.orders.get_mut(x.out_order_no.as_str()) {
            None => not_exist(),
            // A repeated exit (a re-send after a lost answer) is a duplicate, like a
            // repeated entry: accepted once only.
            Some(order) if order.exited => Outcome::Answer(
                json!({"success": true, "result_code": codes::OUT_ORDER_NO_DUPLICATION, "result_msg": "外部订单号重复"}),
            ),
            Some(order) => {
                order.exited = true;
                state.exits += 1;
                ok(json!({"inner_oder_no": order.inner_oder_no}))
            }
        },
        Uplink::Snapshot(s) => {
            if !state.orders.contains_key(s.out_order_no.as_str()) {
                return not_exist();
            }
            state.snapshots += 1;
            ok(Value::Null)
        }
        Uplink::Heartbeat(_) => {
            state.heartbeats += 1;
            ok(Value::Null)
        }
    }
}

fn check_envelope_fields(env: &envelope::Envelope) -> Result<(), String> {
    for (field, value, max) in [
        ("app_id", &env.app_id, crate::spec::MAX_APP_ID_LEN),
        (
            "message_id",
            &env.message_id,
            crate::spec::MAX_MESSAGE_ID_LEN,
        ),
    ] {
        if value.is_empty() {
            return Err(format!("{field}: required but missing or empty"));
        }
        if value.chars().count() > max {
            return Err(format!("{field}: longer than {max} characters"));
        }
    }
    if Timestamp::parse_local(
        &env.timestamp,
        FixedOffset::east_opt(0).unwrap_or(crate::time::china_standard_time()),
    )
    .is_none()
        || env.timestamp.len() != 19
    {
        return Err(format!(
            "timestamp: {:?} is not a time YYYY-MM-DD HH:MM:SS",
            env.timestamp
        ));
    }
    Ok(())
}

/// The decrypted business JSON for the record, images replaced by their size.
fn recordable_body(plain: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(plain) {
        Ok(mut v) => {
            if let Some(Value::String(s)) = v.get("snapshot") {
                let pad = s.bytes().rev().take_while(|b| *b == b'=').count();
                let bytes = (s.len() / 4 * 3).saturating_sub(pad);
                let mut shown = json!({ "snapshot_bytes": bytes });
                // What the picture shows at a glance: a scene is camera-sized, a plate
                // crop a few hundred pixels wide.
                if let Some((w, h)) = image_dimensions(s) {
                    shown["width"] = json!(w);
                    shown["height"] = json!(h);
                }
                v["snapshot"] = shown;
            }
            v
        }
        Err(_) => json!({ "unparsable_bytes": plain.len() }),
    }
}

/// Width and height of a base64 image, from its header; `None` when it is not one.
fn image_dimensions(b64: &str) -> Option<(u32, u32)> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()
}

/// Fault injection settings and their seeded dice.
#[derive(Debug)]
pub struct Faults {
    pub latency: Duration,
    pub fail_rate: f64,
    pub drop_rate: f64,
    pub error_code_rate: f64,
    /// Outage window `[start, start + len)` since the mock started.
    pub outage: Option<(Duration, Duration)>,
    /// The outage comes back every this long (a soak's repeated outages).
    pub outage_every: Option<Duration>,
    rng: rand::rngs::StdRng,
}

impl Faults {
    pub fn none() -> Faults {
        Faults::new(Duration::ZERO, 0.0, 0.0, 0.0, None, 0)
    }

    pub fn new(
        latency: Duration,
        fail_rate: f64,
        drop_rate: f64,
        error_code_rate: f64,
        outage: Option<(Duration, Duration)>,
        seed: u64,
    ) -> Faults {
        Faults {
            latency,
            fail_rate,
            drop_rate,
            error_code_rate,
            outage,
            outage_every: None,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
        }
    }

    /// The fault for a request arriving `since_start` after the mock started.
    pub fn decide(&mut self, since_start: Duration) -> Fault {
        let since_start = match self.outage_every {
            Some(every) if !every.is_zero() => {
                let nanos = since_start.as_nanos() % every.as_nanos();
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
            _ => since_start,
        };
        if let Some((start, len)) = self.outage
            && since_start >= start
            && since_start < start + len
        {
            return Fault::Outage;
        }
        let roll: f64 = self.rng.random();
        if roll < self.drop_rate {
            return Fault::Drop;
        }
        if roll < self.drop_rate + self.fail_rate {
            return Fault::Fail;
        }
        if roll < self.drop_rate + self.fail_rate + self.error_code_rate {
            return Fault::ErrorCode;
        }
        Fault::None
    }
}

/// The running mock: config, state, faults and the record file.
pub struct Mock {
    cfg: MockConfig,
    state: Mutex<MockState>,
    faults: Mutex<Faults>,
    record: Option<Mutex<std::fs::File>>,
    started: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error("record file {path}: {source}")]
    Record {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("listen: {0}")]
    Listen(std::io::Error),
}

impl Mock {
    /// A mock; with a record file, its existing lines are replayed first.
    pub fn new(
        cfg: MockConfig,
        faults: Faults,
        record: Option<PathBuf>,
    ) -> Result<Mock, MockError> {
        let mut state = MockState::default();
        let file = match record {
            None => None,
            Some(path) => {
                let err = |source| MockError::Record {
                    path: path.clone(),
                    source,
                };
                if path.exists() {
                    let f = std::fs::File::open(&path).map_err(err)?;
                    let (replayed, skipped) = MockState::replay(std::io::BufReader::new(f));
                    tracing::info!(
                        path = %path.display(), orders = replayed.orders.len(), skipped,
                        "mock state replayed from record file"
                    );
                    state = replayed;
                }
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(err)?;
                Some(Mutex::new(f))
            }
        };
        Ok(Mock {
            cfg,
            state: Mutex::new(state),
            faults: Mutex::new(faults),
            record: file,
            started: Instant::now(),
        })
    }

    /// Handles one request (state locked), writes its record line; returns the reply and
    /// the latency to add.
    pub fn call(&self, path: &str, body: &[u8]) -> (Reply, Duration) {
        self.call_typed(path, Some("application/json"), body)
    }

    /// [`call`](Self::call) with the request's `Content-Type`.
    pub fn call_typed(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (Reply, Duration) {
        let (fault, latency) = {
            let mut f = self.faults.lock().unwrap_or_else(|e| e.into_inner());
            (f.decide(self.started.elapsed()), f.latency)
        };
        // The state lock is held until the record line is written, so the file's order
        // is the order in which the state changed (replay depends on it).
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let handled = handle_typed(
            &mut state,
            &self.cfg,
            path,
            content_type,
            body,
            Timestamp::now(),
            fault,
        );
        let r = &handled.record;
        tracing::info!(
            path = %r.path, message_id = r.message_id.as_deref().unwrap_or(""), result_code = %r.result_code,
            accepted = r.accepted, message = r.message.as_deref().unwrap_or(""), "mock request"
        );
        if let Some(file) = &self.record {
            use std::io::Write;
            let mut line = serde_json::to_vec(r).unwrap_or_default();
            line.push(b'\n');
            let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = f.write_all(&line) {
                tracing::warn!(error = %e, "cannot append to record file");
            }
        }
        drop(state);
        (handled.reply, latency)
    }

    pub fn state(&self) -> MockState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Marks a response whose connection must be dropped instead.
#[derive(Clone, Copy)]
struct DropConnection;

#[derive(Debug, thiserror::Error)]
#[error("connection dropped (injected)")]
struct Dropped;

async fn route(
    axum::extract::State(mock): axum::extract::State<Arc<Mock>>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let (reply, latency) = mock.call_typed(uri.path(), content_type, &body);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match reply {
        Reply::Http { status, body } => {
            let status =
                axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK);
            let content_type = if status.is_success() {
                "application/json; charset=utf-8"
            } else {
                "text/plain"
            };
            (
                status,
                [(axum::http::header::CONTENT_TYPE, content_type)],
                body,
            )
                .into_response()
        }
        Reply::Drop => {
            let mut resp = axum::http::StatusCode::OK.into_response();
            resp.extensions_mut().insert(DropConnection);
            resp
        }
    }
}

/// Serves the mock on `listener` until the task is dropped. Uses hyper directly
/// under the axum router so that a connection can be dropped on purpose.
pub async fn serve(listener: tokio::net::TcpListener, mock: Arc<Mock>) -> Result<(), MockError> {
    use tower::ServiceExt;
    let router = axum::Router::new()
        .fallback(axum::routing::post(route))
        .layer(axum::extract::DefaultBodyLimit::max(4 << 20))
        .with_state(mock);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let router = router.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let router = router.clone();
                    async move {
                        let resp = router
                            .oneshot(req.map(axum::body::Body::new))
                            .await
                            .map_err(|e| match e {})?;
                        if resp.extensions().get::<DropConnection>().is_some() {
                            Err(Dropped)
                        } else {
                            Ok(resp)
                        }
                    }
                });
            let io = hyper_util::rt::TokioIo::new(stream);
            // Errors here are a client going away or an injected drop: nothing to do.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::response::{self, Verdict};
    use crate::platform::wire::fixtures::{self, exit, snapshot};

    const KEY: &str = "bb0873ce314c42f7";
    const NOW: Timestamp = Timestamp(1_570_167_364_000);

    fn cfg() -> MockConfig {
        MockConfig {
            app_id: "ae145d83e56cb332".into(),
            secret: Secret::new(KEY).unwrap(),
            lots: vec!["P001".into()],
            offset: crate::time::china_standard_time(),
            envelope_answers: false,
            behaviour: MockBehaviour::default(),
        }
    }

    /// The fixtures' entry with an image inline.
    fn entry(o: &str) -> Uplink {
        let mut json = fixtures::entry_json(o);
        json["snapshot"] = json!("/9j/4AAQSkZJRg==");
        fixtures::uplink(UplinkKind::Entry, &json)
    }

    fn sealed_with(app_id: &str, key: &str, json: Vec<u8>) -> Vec<u8> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = format!("m-{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        envelope::seal(
            app_id,
            Secret::new(key).unwrap().as_bytes(),
            &id,
            "2019-10-04 13:36:04",
            json,
        )
    }

    fn send(state: &mut MockState, u: &Uplink) -> Handled {
        send_json(state, u.path(), u.to_json())
    }

    /// Seals any business JSON (also one the bridge could not build) for `path`.
    fn send_json(state: &mut MockState, path: &str, json: Vec<u8>) -> Handled {
        let body = sealed_with("ae145d83e56cb332", KEY, json);
        handle(state, &cfg(), path, &body, NOW, Fault::None)
    }

    /// Hands a raw body to the heartbeat interface, fault-free at `NOW`: the refusal
    /// tests vary only the body, so the rest of the call need not be spelled out each time.
    fn heartbeat(state: &mut MockState, body: &[u8]) -> Handled {
        handle(state, &cfg(), "/barrier/heartbeat", body, NOW, Fault::None)
    }

    fn verdict(h: &Handled) -> Verdict {
        match &h.reply {
            Reply::Http { status, body } => {
                response::decode(
                    *status,
                    body,
                    Secret::new(KEY).unwrap().as_bytes(),
                    &response::ResultCodes::default(),
                )
                .verdict
            }
            Reply::Drop => panic!("dropped"),
        }
    }

    #[test]
    fn entry_gets_inner_order_and_repeat_is_duplicate() {
        let mut s = MockState::default();
        let h = send(&mut s, &entry("o1"));
        assert_eq!(verdict(&h), Verdict::Done);
        assert!(h.record.accepted);
        let inner = h.record.inner_oder_no.clone().unwrap();
        assert!(inner.starts_with("R20191004133604"), "{inner}");
        assert_eq!(
            h.record.body["snapshot"],
            json!({"snapshot_bytes": 10}),
            "image replaced by its size"
        );
        assert_eq!(h.record.body["plate_no"], "闽A12345");
        let h = send(&mut s, &entry("o1"));
        assert_eq!(verdict(&h), Verdict::AlreadyDone);
        assert!(!h.record.accepted);
        assert_eq!(h.record.result_code, "OUT_ORDER_NO_DUPLICATION");
        assert_eq!(s.entries, 1);
    }

    #[test]
    fn exit_and_snapshot_of_unknown_stay_need_entry_first() {
        let mut s = MockState::default();
        assert_eq!(
            verdict(&send(&mut s, &exit("o2"))),
            Verdict::NeedsEntryFirst
        );
        let snap = snapshot("o2", "AAAA");
        assert_eq!(verdict(&send(&mut s, &snap)), Verdict::NeedsEntryFirst);
        assert_eq!(verdict(&send(&mut s, &entry("o2"))), Verdict::Done);
        assert_eq!(verdict(&send(&mut s, &snap)), Verdict::Done);
        let h = send(&mut s, &exit("o2"));
        assert_eq!(verdict(&h), Verdict::Done);
        assert!(h.record.inner_oder_no.is_some());
        assert!(s.orders["o2"].exited);
    }

    #[test]
    fn wrong_app_id_key_base64_json_are_refused_by_name() {
        let mut s = MockState::default();
        let hb = Uplink::heartbeat("P001", true).unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (sealed_with("other", KEY, hb.to_json()), mock_codes::INVALID_APP_ID),
            (sealed_with("ae145d83e56cb332", "0000000000000000", hb.to_json()), mock_codes::DECRYPT_FAILED),
            (
                br#"{"app_id":"ae145d83e56cb332","message_id":"m","encrypted_data":"!!","timestamp":"2019-10-04 13:36:04"}"#
                    .to_vec(),
                mock_codes::INVALID_BASE64,
            ),
            (b"not json".to_vec(), mock_codes::INVALID_JSON),
            (sealed_with("ae145d83e56cb332", KEY, b"[not an object]".to_vec()), mock_codes::INVALID_JSON),
        ];
        for (body, code) in cases {
            let h = heartbeat(&mut s, &body);
            assert_eq!(h.record.result_code, code);
            // Codes the spec does not name read as refusals unless the site maps them.
            assert!(matches!(verdict(&h), Verdict::Refused { .. }), "{code}");
        }
    }

    #[test]
    fn invalid_fields_are_refused_naming_the_field() {
        let mut s = MockState::default();
        let mut e = fixtures::entry_json("o3");
        e["free_spaces"] = json!(200);
        let h = send_json(&mut s, wire::ENTRY_PATH, e.to_string().into_bytes());
        assert_eq!(h.record.result_code, mock_codes::INVALID_PARAMETER);
        assert!(
            h.record.message.as_deref().unwrap().contains("free_spaces"),
            "{:?}",
            h.record.message
        );
        let body = sealed_with(
            "ae145d83e56cb332",
            KEY,
            br#"{"parking_lot_no":"P001","status":"alive","extra":1}"#.to_vec(),
        );
        let h = heartbeat(&mut s, &body);
        assert!(h.record.message.as_deref().unwrap().contains("extra"));
        let body = envelope::seal(
            "ae145d83e56cb332",
            Secret::new(KEY).unwrap().as_bytes(),
            "m",
            "yesterday",
            b"{}".to_vec(),
        );
        let h = heartbeat(&mut s, &body);
        assert!(h.record.message.as_deref().unwrap().contains("timestamp"));
        assert!(s.orders.is_empty());
    }

    #[test]
    fn unregistered_lot_and_unknown_path() {
        let mut s = MockState::default();
        let h = send(&mut s, &Uplink::heartbeat("P999", true).unwrap());
        assert_eq!(h.record.result_code, codes::PARKING_LOT_NOT_EXIST);
        let h = handle(&mut s, &cfg(), "/barrier/nothing", b"{}", NOW, Fault::None);
        assert_eq!(
            h.reply,
            Reply::Http {
                status: 404,
                body: b"no interface at /barrier/nothing".to_vec()
            }
        );
        let h = handle(
            &mut s,
            &cfg(),
            "//barrier/heartbeat",
            &sealed_with(
                "ae145d83e56cb332",
                KEY,
                Uplink::heartbeat("P001", true).unwrap().to_json(),
            ),
            NOW,
            Fault::None,
        );
        assert!(h.record.accepted, "double slash of the original tolerated");
    }

    #[test]
    fn injected_faults_change_no_state_but_are_recorded() {
        let mut s = MockState::default();
        let body = sealed_with("ae145d83e56cb332", KEY, entry("o4").to_json());
        for (fault, code) in [
            (Fault::Fail, "HTTP_500"),
            (Fault::Outage, "HTTP_503"),
            (Fault::Drop, "DROPPED"),
        ] {
            let h = handle(&mut s, &cfg(), "/barrier/parking", &body, NOW, fault);
            assert_eq!(h.record.result_code, code);
            assert!(!h.record.accepted);
            assert_eq!(h.record.body["out_order_no"], "o4", "recorded decrypted");
        }
        assert!(s.orders.is_empty());
        // success:true with an undocumented code: taken, and delivered for the bridge.
        let h = handle(
            &mut s,
            &cfg(),
            "/barrier/parking",
            &body,
            NOW,
            Fault::ErrorCode,
        );
        assert_eq!(h.record.result_code, mock_codes::SYSTEM_BUSY);
        assert!(h.record.accepted);
        assert_eq!(verdict(&h), Verdict::Done);
        assert_eq!(s.orders.len(), 1);
    }

    #[test]
    fn enveloped_answers_decode_in_the_client() {
        let mut c = cfg();
        c.envelope_answers = true;
        let mut s = MockState::default();
        let body = sealed_with("ae145d83e56cb332", KEY, entry("o5").to_json());
        let h = handle(&mut s, &c, "/barrier/parking", &body, NOW, Fault::None);
        let Reply::Http { body, .. } = &h.reply else {
            panic!()
        };
        assert!(String::from_utf8_lossy(body).contains("encrypted_data"));
        assert_eq!(verdict(&h), Verdict::Done);
    }

    #[test]
    fn replayed_records_restore_stays() {
        let mut s = MockState::default();
        let mut lines = String::new();
        for u in [entry("a"), entry("b"), exit("a"), entry("a")] {
            lines.push_str(&serde_json::to_string(&send(&mut s, &u).record).unwrap());
            lines.push('\n');
        }
        lines.push_str("garbage line\n");
        let (restored, skipped) = MockState::replay(lines.as_bytes());
        assert_eq!(skipped, 1);
        assert_eq!(restored.orders, s.orders);
        let mut restored = restored;
        assert_eq!(
            verdict(&send(&mut restored, &entry("b"))),
            Verdict::AlreadyDone
        );
        let h = send(&mut restored, &entry("c"));
        assert_ne!(
            h.record.inner_oder_no.as_deref(),
            Some(s.orders["a"].inner_oder_no.as_str())
        );
    }

    /// Faults at these fail, drop and error-code rates, with an outage from 5 s to 7 s.
    fn with_outage(fail_rate: f64, drop_rate: f64, error_code_rate: f64) -> Faults {
        let outage = (Duration::from_secs(5), Duration::from_secs(2));
        Faults::new(
            Duration::ZERO,
            fail_rate,
            drop_rate,
            error_code_rate,
            Some(outage),
            7,
        )
    }

    #[test]
    fn faults_follow_rates_and_outage_window() {
        let mut f = with_outage(0.3, 0.1, 0.1);
        assert_eq!(f.decide(Duration::from_secs(6)), Fault::Outage);
        let mut counts = HashMap::new();
        for _ in 0..10_000 {
            *counts
                .entry(format!("{:?}", f.decide(Duration::from_secs(1))))
                .or_insert(0) += 1;
        }
        let fails = counts["Fail"];
        assert!((2_700..3_300).contains(&fails), "{counts:?}");
        assert!((800..1_200).contains(&counts["Drop"]), "{counts:?}");
        assert_eq!(Faults::none().decide(Duration::ZERO), Fault::None);
    }

    #[test]
    fn a_repeating_outage_comes_back_every_period() {
        let mut f = with_outage(0.0, 0.0, 0.0);
        f.outage_every = Some(Duration::from_secs(100));
        let at = |s| Duration::from_secs(s);
        assert_eq!(f.decide(at(6)), Fault::Outage);
        assert_eq!(f.decide(at(8)), Fault::None);
        assert_eq!(f.decide(at(106)), Fault::Outage);
        assert_eq!(f.decide(at(1_205)), Fault::Outage);
        assert_eq!(f.decide(at(1_207)), Fault::None);
    }

    fn with(b: MockBehaviour) -> MockConfig {
        MockConfig {
            behaviour: b,
            ..cfg()
        }
    }

    fn send_cfg(state: &mut MockState, c: &MockConfig, u: &Uplink) -> Handled {
        let body = sealed_with("ae145d83e56cb332", KEY, u.to_json());
        handle(state, c, u.path(), &body, NOW, Fault::None)
    }

    fn answer_json(h: &Handled) -> Value {
        match &h.reply {
            Reply::Http { body, .. } => serde_json::from_slice(body).unwrap(),
            Reply::Drop => panic!("dropped"),
        }
    }

    #[test]
    fn refusals_come_in_the_specs_three_shapes() {
        for (shape, want) in [
            (
                RefusalShape::ResultCode,
                json!({"success": false, "result_code": "REFUSED_BY_RULE"}),
            ),
            (RefusalShape::Error, json!({"success": false})),
            (RefusalShape::Bare, json!({"success": false})),
        ] {
            let c = with(MockBehaviour {
                refusal_shape: shape,
                rules: vec![RefuseRule::default()],
                ..MockBehaviour::default()
            });
            let h = send_cfg(&mut MockState::default(), &c, &entry("s1"));
            let a = answer_json(&h);
            assert_eq!(a["success"], want["success"], "{shape:?}");
            assert_eq!(a.get("result_code"), want.get("result_code"), "{shape:?}");
            assert_eq!(
                a.get("error").is_some(),
                shape == RefusalShape::Error,
                "{shape:?}"
            );
            assert!(!h.record.accepted);
            assert!(matches!(verdict(&h), Verdict::Refused { .. }), "{shape:?}");
        }
    }

    #[test]
    fn rules_refuse_single_reports_by_plate_and_path() {
        let c = with(MockBehaviour {
            rules: vec![
                RefuseRule {
                    path: Some(wire::SNAPSHOT_PATH.into()),
                    plate: Some("闽A12345".into()),
                    code: None,
                },
                RefuseRule {
                    path: Some(wire::EXIT_PATH.into()),
                    plate: None,
                    code: Some("BAD_PORT".into()),
                },
            ],
            ..MockBehaviour::default()
        });
        let mut s = MockState::default();
        assert_eq!(verdict(&send_cfg(&mut s, &c, &entry("r1"))), Verdict::Done);
        let snap = snapshot("r1", "/9j/4AAQSkZJRg==");
        let h = send_cfg(&mut s, &c, &snap);
        assert_eq!(h.record.result_code, mock_codes::REFUSED_BY_RULE);
        let h = send_cfg(&mut s, &c, &exit("r1"));
        assert_eq!(
            verdict(&h),
            Verdict::Refused {
                code: Some("BAD_PORT".into()),
                message: "refused by rule (BAD_PORT) for r1".into()
            }
        );
        assert!(!s.orders["r1"].exited);
    }

    #[test]
    fn refuse_percent_picks_the_same_stays_every_time() {
        let picked: Vec<bool> = (0..10_000)
            .map(|i| refused_by_percent(&format!("P{i:08}"), 1))
            .collect();
        let n = picked.iter().filter(|p| **p).count();
        assert!((60..=140).contains(&n), "{n} of 10 000 at 1 %");
        assert!(!refused_by_percent("P00000001", 0));
        let c = with(MockBehaviour {
            refuse_percent: 100,
            ..MockBehaviour::default()
        });
        assert!(matches!(
            verdict(&send_cfg(&mut MockState::default(), &c, &entry("x"))),
            Verdict::Refused { .. }
        ));
    }

    #[test]
    fn not_exist_code_and_lower_case_variants() {
        let c = with(MockBehaviour {
            not_exist_code: codes::OUT_ORDER_NO_NOT_EXIST.into(),
            lowercase_codes: true,
            ..MockBehaviour::default()
        });
        let mut s = MockState::default();
        let h = send_cfg(&mut s, &c, &exit("u1"));
        assert_eq!(answer_json(&h)["result_code"], "out_order_no_not_exist");
        assert_eq!(verdict(&h), Verdict::NeedsEntryFirst);
        send_cfg(&mut s, &c, &entry("u1"));
        let h = send_cfg(&mut s, &c, &entry("u1"));
        assert_eq!(answer_json(&h)["result_code"], "out_order_no_duplication");
        assert_eq!(verdict(&h), Verdict::AlreadyDone);
    }

    #[test]
    fn stale_timestamps_replayed_message_ids_and_wrong_content_type_are_refused() {
        let mut s = MockState::default();
        let hb = Uplink::heartbeat("P001", true).unwrap().to_json();
        let body = sealed_with("ae145d83e56cb332", KEY, hb.clone());
        let late = NOW.plus_millis(601_000);
        let h = handle(
            &mut s,
            &cfg(),
            "/barrier/heartbeat",
            &body,
            late,
            Fault::None,
        );
        assert_eq!(h.record.result_code, mock_codes::INVALID_TIMESTAMP);
        let h = handle(
            &mut s,
            &cfg(),
            "/barrier/heartbeat",
            &body,
            NOW.plus_millis(599_000),
            Fault::None,
        );
        assert!(h.record.accepted);
        let h = handle(
            &mut s,
            &cfg(),
            "/barrier/heartbeat",
            &body,
            NOW,
            Fault::None,
        );
        assert_eq!(h.record.result_code, mock_codes::DUPLICATE_MESSAGE_ID);
        let fresh = sealed_with("ae145d83e56cb332", KEY, hb);
        let h = handle_typed(
            &mut s,
            &cfg(),
            "/barrier/heartbeat",
            Some("text/plain"),
            &fresh,
            NOW,
            Fault::None,
        );
        assert!(matches!(h.reply, Reply::Http { status: 415, .. }));
        let h = handle_typed(
            &mut s,
            &cfg(),
            "/barrier/heartbeat",
            Some("Application/JSON; charset=utf-8"),
            &fresh,
            NOW,
            Fault::None,
        );
        assert!(h.record.accepted);
    }

    #[test]
    fn a_snapshot_of_500_000_base64_characters_is_refused() {
        let mut s = MockState::default();
        send(&mut s, &entry("b1"));
        let too_large = fixtures::snapshot_json("b1", &"A".repeat(500_000));
        let h = send_json(
            &mut s,
            wire::SNAPSHOT_PATH,
            too_large.to_string().into_bytes(),
        );
        assert_eq!(h.record.result_code, mock_codes::INVALID_PARAMETER);
        assert!(
            h.record
                .message
                .as_deref()
                .unwrap()
                .starts_with("snapshot: "),
            "{:?}",
            h.record.message
        );
        let largest = snapshot("b1", &"A".repeat(499_996));
        assert!(send(&mut s, &largest).record.accepted);
    }

    proptest::proptest! {
        #[test]
        fn handle_never_panics_on_arbitrary_bytes(body in proptest::collection::vec(proptest::num::u8::ANY, 0..600), path_i in 0usize..5) {
            let paths = ["/barrier/parking", "/barrier/away", "/barrier/uploadSnapshot", "/barrier/heartbeat", "/x"];
            let mut s = MockState::default();
            let _ = handle(&mut s, &cfg(), paths[path_i], &body, NOW, Fault::None);
        }

        #[test]
        fn handle_never_panics_on_encrypted_arbitrary_json(json in r#"\{("[a-z_]{1,14}":("[^"\\]{0,20}"|-?[0-9]{1,12}|true|null|\[\]|\{"snapshot":1\}),?){0,8}\}"#, path_i in 0usize..4) {
            let paths = ["/barrier/parking", "/barrier/away", "/barrier/uploadSnapshot", "/barrier/heartbeat"];
            let mut s = MockState::default();
            let body = sealed_with("ae145d83e56cb332", KEY, json.into_bytes());
            let _ = handle(&mut s, &cfg(), paths[path_i], &body, NOW, Fault::None);
        }

        #[test]
        fn handle_never_panics_on_arbitrary_decrypted_bytes(plain in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut s = MockState::default();
            let body = sealed_with("ae145d83e56cb332", KEY, plain);
            let _ = handle(&mut s, &cfg(), "/barrier/parking", &body, NOW, Fault::None);
        }
    }
}
