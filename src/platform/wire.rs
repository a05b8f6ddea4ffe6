//! Typed requests for the four uplinks (spec §3.2), in the field order of the spec's
//! tables, and every rule the spec states about them. The bridge validates before it
//! sends; the mock platform validates what it receives with the same code.

use crate::report::{Report, SnapshotEvent};
use chrono::FixedOffset;
use serde::{Deserialize, Serialize};

pub use crate::spec::{
    ENTRY_PATH, EXIT_PATH, HEARTBEAT_PATH, MAX_INT8, MAX_SNAPSHOT_LEN, SNAPSHOT_PATH,
};

/// §3.2.1 vehicle entry, `POST /barrier/parking`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryRequest {
    pub out_order_no: String,
    pub plate_no: String,
    pub plate_color: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub car_type: Option<String>,
    pub parking_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    pub parking_lot_no: String,
    pub port_no: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub should_pay: Option<i64>,
    pub total_spaces: i64,
    pub free_spaces: i64,
    /// In the original's example, not in its table: sent only when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_no: Option<String>,
}

/// §3.2.2 vehicle exit, `POST /barrier/away`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitRequest {
    pub out_order_no: String,
    pub plate_no: String,
    pub plate_color: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub car_type: Option<String>,
    pub away_time: String,
    pub price: i64,
    pub should_pay: i64,
    pub paid_fee: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    pub parking_lot_no: String,
    pub port_no: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    pub total_spaces: i64,
    pub free_spaces: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_no: Option<String>,
}

/// §3.2.3 snapshot, `POST /barrier/uploadSnapshot`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    pub out_order_no: String,
    /// `parking` or `away`.
    pub event: String,
    pub snapshot: String,
}

/// §3.2.4 heartbeat, `POST /barrier/heartbeat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    pub parking_lot_no: String,
    /// `alive` or `lost`.
    pub status: String,
}

/// One request to the platform. Serialises as its business JSON (no tag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Uplink {
    Entry(EntryRequest),
    Exit(ExitRequest),
    Snapshot(SnapshotRequest),
    Heartbeat(HeartbeatRequest),
}

/// Which of the four interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UplinkKind {
    Entry,
    Exit,
    Snapshot,
    Heartbeat,
}

impl UplinkKind {
    pub const ALL: [UplinkKind; 4] = [
        UplinkKind::Entry,
        UplinkKind::Exit,
        UplinkKind::Snapshot,
        UplinkKind::Heartbeat,
    ];

    pub fn default_path(self) -> &'static str {
        match self {
            UplinkKind::Entry => ENTRY_PATH,
            UplinkKind::Exit => EXIT_PATH,
            UplinkKind::Snapshot => SNAPSHOT_PATH,
            UplinkKind::Heartbeat => HEARTBEAT_PATH,
        }
    }

    /// The interface of a default path; a doubled leading slash (as printed in the
    /// original) is tolerated.
    pub fn from_path(path: &str) -> Option<UplinkKind> {
        let trimmed = format!("/{}", path.trim_start_matches('/'));
        Self::ALL.into_iter().find(|k| k.default_path() == trimmed)
    }

    /// The field table: name and JSON type, in the spec's order.
    pub fn fields(self) -> &'static [(&'static str, JsonType)] {
        use JsonType::{Int, Str};
        match self {
            UplinkKind::Entry => &[
                ("out_order_no", Str),
                ("plate_no", Str),
                ("plate_color", Str),
                ("car_type", Str),
                ("parking_time", Str),
                ("snapshot", Str),
                ("parking_lot_no", Str),
                ("port_no", Str),
                ("operator", Str),
                ("price", Int),
                ("should_pay", Int),
                ("total_spaces", Int),
                ("free_spaces", Int),
                ("device_no", Str),
            ],
            UplinkKind::Exit => &[
                ("out_order_no", Str),
                ("plate_no", Str),
                ("plate_color", Str),
                ("car_type", Str),
                ("away_time", Str),
                ("price", Int),
                ("should_pay", Int),
                ("paid_fee", Int),
                ("snapshot", Str),
                ("parking_lot_no", Str),
                ("port_no", Str),
                ("operator", Str),
                ("total_spaces", Int),
                ("free_spaces", Int),
                ("device_no", Str),
            ],
            UplinkKind::Snapshot => &[("out_order_no", Str), ("event", Str), ("snapshot", Str)],
            UplinkKind::Heartbeat => &[("parking_lot_no", Str), ("status", Str)],
        }
    }
}

/// The JSON type of a wire field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    Str,
    Int,
}

/// A rule broken by a request. Every variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{field}: required but missing or empty")]
    Missing { field: String },
    #[error("{field}: {len} characters, at most {max} allowed")]
    TooLong {
        field: String,
        len: usize,
        max: usize,
    },
    #[error("{field}: {value} is not an integer of at most 8 digits (0..=99999999)")]
    IntRange { field: String, value: i64 },
    #[error("{field}: {value:?} is not one of {allowed}")]
    NotInDictionary {
        field: String,
        value: String,
        allowed: &'static str,
    },
    #[error("{field}: {value:?} is not a time YYYY-MM-DD HH:MM:SS")]
    Time { field: String, value: String },
    #[error("{field}: {message}")]
    Format { field: String, message: String },
    #[error("free_spaces: {free} is more than total_spaces {total}")]
    FreeOverTotal { free: i64, total: i64 },
    #[error("{field}: unknown field")]
    Unknown { field: String },
    #[error("{field}: expected {expected}")]
    Type {
        field: String,
        expected: &'static str,
    },
    #[error("body: not a JSON object: {message}")]
    Json { message: String },
}

impl WireError {
    /// The field the error is about (`body` for a body that is not JSON).
    pub fn field(&self) -> &str {
        match self {
            WireError::Missing { field }
            | WireError::TooLong { field, .. }
            | WireError::IntRange { field, .. }
            | WireError::NotInDictionary { field, .. }
            | WireError::Time { field, .. }
            | WireError::Format { field, .. }
            | WireError::Unknown { field }
            | WireError::Type { field, .. } => field,
            WireError::FreeOverTotal { .. } => "free_spaces",
            WireError::Json { .. } => "body",
        }
    }
}

const PLATE_COLORS: &str = "pnc_01..pnc_08";
const CAR_TYPES: &str = "normal, special, white, parkcard";

impl Uplink {
    pub fn kind(&self) -> UplinkKind {
        match self {
            Uplink::Entry(_) => UplinkKind::Entry,
            Uplink::Exit(_) => UplinkKind::Exit,
            Uplink::Snapshot(_) => UplinkKind::Snapshot,
            Uplink::Heartbeat(_) => UplinkKind::Heartbeat,
        }
    }

    /// The default path (the client maps it through the config's overrides).
    pub fn path(&self) -> &'static str {
        self.kind().default_path()
    }

    /// A heartbeat for the lot: `alive` or `lost`.
    pub fn heartbeat(parking_lot_no: &str, alive: bool) -> Uplink {
        Uplink::Heartbeat(HeartbeatRequest {
            parking_lot_no: parking_lot_no.to_string(),
            status: if alive { "alive" } else { "lost" }.to_string(),
        })
    }

    /// The stay's `out_order_no` (none for a heartbeat).
    pub fn out_order_no(&self) -> Option<&str> {
        match self {
            Uplink::Entry(e) => Some(&e.out_order_no),
            Uplink::Exit(x) => Some(&x.out_order_no),
            Uplink::Snapshot(s) => Some(&s.out_order_no),
            Uplink::Heartbeat(_) => None,
        }
    }

    /// Checks every rule the spec states. The error names the first broken field.
    pub fn validate(&self) -> Result<(), WireError> {
        match self {
            Uplink::Entry(e) => {
                req_str("out_order_no", &e.out_order_no, 64)?;
                plate("plate_no", &e.plate_no)?;
                dict("plate_color", &e.plate_color, is_plate_color, PLATE_COLORS)?;
                if let Some(c) = &e.car_type {
                    dict("car_type", c, is_car_type, CAR_TYPES)?;
                }
                time("parking_time", &e.parking_time)?;
                if let Some(s) = &e.snapshot {
                    snapshot("snapshot", s)?;
                }
                req_str("parking_lot_no", &e.parking_lot_no, 32)?;
                req_str("port_no", &e.port_no, 32)?;
                opt_str("operator", e.operator.as_deref(), 16)?;
                if let Some(p) = e.price {
                    int8("price", p)?;
                }
                if let Some(p) = e.should_pay {
                    int8("should_pay", p)?;
                }
                spaces(e.total_spaces, e.free_spaces)?;
                opt_str("device_no", e.device_no.as_deref(), 64)
            }
            Uplink::Exit(x) => {
                req_str("out_order_no", &x.out_order_no, 64)?;
                plate("plate_no", &x.plate_no)?;
                dict("plate_color", &x.plate_color, is_plate_color, PLATE_COLORS)?;
                if let Some(c) = &x.car_type {
                    dict("car_type", c, is_car_type, CAR_TYPES)?;
                }
                time("away_time", &x.away_time)?;
                int8("price", x.price)?;
                int8("should_pay", x.should_pay)?;
                int8("paid_fee", x.paid_fee)?;
                if let Some(s) = &x.snapshot {
                    snapshot("snapshot", s)?;
                }
                req_str("parking_lot_no", &x.parking_lot_no, 32)?;
                req_str("port_no", &x.port_no, 32)?;
                opt_str("operator", x.operator.as_deref(), 16)?;
                spaces(x.total_spaces, x.free_spaces)?;
                opt_str("device_no", x.device_no.as_deref(), 64)
            }
            Uplink::Snapshot(s) => {
                req_str("out_order_no", &s.out_order_no, 64)?;
                dict(
                    "event",
                    &s.event,
                    |v| matches!(v, "parking" | "away"),
                    "parking, away",
                )?;
                snapshot("snapshot", &s.snapshot)
            }
            Uplink::Heartbeat(h) => {
                req_str("parking_lot_no", &h.parking_lot_no, 32)?;
                dict(
                    "status",
                    &h.status,
                    |v| matches!(v, "alive" | "lost"),
                    "alive, lost",
                )
            }
        }
    }

    /// Business report → wire request, formatting times in the lot's offset.
    /// `snapshot_b64`: the inline image for an entry/exit, or the image of a snapshot
    /// report (a snapshot without one fails validation).
    pub fn from_report(
        report: &Report,
        parking_lot_no: &str,
        snapshot_b64: Option<String>,
        offset: FixedOffset,
    ) -> Uplink {
        match report {
            Report::Entry(e) => Uplink::Entry(EntryRequest {
                out_order_no: e.out_order_no.clone(),
                plate_no: e.plate_no.clone(),
                plate_color: e.plate_color.code().to_string(),
                car_type: Some(e.car_type.code().to_string()),
                parking_time: e.parking_time.format_local(offset),
                snapshot: snapshot_b64,
                parking_lot_no: parking_lot_no.to_string(),
                port_no: e.port_no.clone(),
                operator: e.operator.clone(),
                price: e.price,
                should_pay: e.should_pay,
                total_spaces: e.total_spaces,
                free_spaces: e.free_spaces,
                device_no: None,
            }),
            Report::Exit(x) => Uplink::Exit(ExitRequest {
                out_order_no: x.out_order_no.clone(),
                plate_no: x.plate_no.clone(),
                plate_color: x.plate_color.code().to_string(),
                car_type: Some(x.car_type.code().to_string()),
                away_time: x.away_time.format_local(offset),
                price: x.price,
                should_pay: x.should_pay,
                paid_fee: x.paid_fee,
                snapshot: snapshot_b64,
                parking_lot_no: parking_lot_no.to_string(),
                port_no: x.port_no.clone(),
                operator: x.operator.clone(),
                total_spaces: x.total_spaces,
                free_spaces: x.free_spaces,
                device_no: None,
            }),
            Report::Snapshot {
                out_order_no,
                event,
            } => Uplink::Snapshot(SnapshotRequest {
                out_order_no: out_order_no.clone(),
                event: match event {
                    SnapshotEvent::Parking => "parking",
                    SnapshotEvent::Away => "away",
                }
                .to_string(),
                snapshot: snapshot_b64.unwrap_or_default(),
            }),
        }
    }

    /// Sets `device_no` on an entry or exit (no effect on the others).
    pub fn set_device_no(&mut self, device_no: Option<String>) {
        match self {
            Uplink::Entry(e) => e.device_no = device_no,
            Uplink::Exit(x) => x.device_no = device_no,
            Uplink::Snapshot(_) | Uplink::Heartbeat(_) => {}
        }
    }

    /// The business JSON: compact, UTF-8, non-ASCII not escaped.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.approx_json_len());
        self.write_json(&mut out);
        out
    }

    /// The business JSON with `device_no` set on an entry or exit that has none (the
    /// others unchanged), written straight from `self`: the uplink, whose image may be
    /// megabytes of base64, is not copied to add one field.
    pub fn to_json_with_device(&self, device_no: Option<&str>) -> Vec<u8> {
        #[derive(Serialize)]
        struct WithDevice<'a, T> {
            #[serde(flatten)]
            request: &'a T,
            device_no: &'a str,
        }
        let mut out = Vec::with_capacity(self.approx_json_len());
        // Serialising plain strings and integers into a Vec cannot fail.
        let _ = match (self, device_no) {
            (Uplink::Entry(e), Some(d)) if e.device_no.is_none() => serde_json::to_writer(
                &mut out,
                &WithDevice {
                    request: e,
                    device_no: d,
                },
            ),
            (Uplink::Exit(x), Some(d)) if x.device_no.is_none() => serde_json::to_writer(
                &mut out,
                &WithDevice {
                    request: x,
                    device_no: d,
                },
            ),
            _ => serde_json::to_writer(&mut out, self),
        };
        out
    }

    /// Appends the business JSON to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Serialising plain strings and integers into a Vec cannot fail.
        let _ = serde_json::to_writer(out, self);
    }

    /// Length of the business JSON, close enough to size buffers.
    pub fn approx_json_len(&self) -> usize {
        let snapshot = match self {
            Uplink::Entry(e) => e.snapshot.as_ref().map_or(0, String::len),
            Uplink::Exit(x) => x.snapshot.as_ref().map_or(0, String::len),
            Uplink::Snapshot(s) => s.snapshot.len(),
            Uplink::Heartbeat(_) => 0,
        };
        snapshot + 512
    }

    /// Parses and validates a decrypted business JSON for interface `kind`: the mock
    /// platform's strict view. Unknown fields and wrong JSON types are named too.
    pub fn parse(kind: UplinkKind, json: &[u8]) -> Result<Uplink, WireError> {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(json)
            .map_err(|e| WireError::Json {
                message: e.to_string(),
            })?;
        let table = kind.fields();
        for (name, value) in &map {
            let Some((_, ty)) = table.iter().find(|(n, _)| n == name) else {
                return Err(WireError::Unknown {
                    field: name.clone(),
                });
            };
            let ok = match ty {
                JsonType::Str => value.is_string(),
                JsonType::Int => value.is_i64(),
            };
            if !ok {
                let expected = match ty {
                    JsonType::Str => "a string",
                    JsonType::Int => "an integer",
                };
                return Err(WireError::Type {
                    field: name.clone(),
                    expected,
                });
            }
        }
        let value = serde_json::Value::Object(map);
        let missing = |e: serde_json::Error| {
            // After the checks above only a missing required field can fail here.
            let message = e.to_string();
            match message.split('`').nth(1) {
                Some(field) if message.starts_with("missing field") => WireError::Missing {
                    field: field.to_string(),
                },
                _ => WireError::Json { message },
            }
        };
        let uplink = match kind {
            UplinkKind::Entry => Uplink::Entry(serde_json::from_value(value).map_err(missing)?),
            UplinkKind::Exit => Uplink::Exit(serde_json::from_value(value).map_err(missing)?),
            UplinkKind::Snapshot => {
                Uplink::Snapshot(serde_json::from_value(value).map_err(missing)?)
            }
            UplinkKind::Heartbeat => {
                Uplink::Heartbeat(serde_json::from_value(value).map_err(missing)?)
            }
        };
        uplink.validate()?;
        Ok(uplink)
    }
}

fn req_str(field: &str, value: &str, max: usize) -> Result<(), WireError> {
    if value.is_empty() {
        return Err(WireError::Missing {
            field: field.to_string(),
        });
    }
    max_len(field, value, max)
}

fn opt_str(field: &str, value: Option<&str>, max: usize) -> Result<(), WireError> {
    match value {
        Some(v) => max_len(field, v, max),
        None => Ok(()),
    }
}

fn max_len(field: &str, value: &str, max: usize) -> Result<(), WireError> {
    let len = value.chars().count();
    if len > max {
        return Err(WireError::TooLong {
            field: field.to_string(),
            len,
            max,
        });
    }
    Ok(())
}

fn plate(field: &str, value: &str) -> Result<(), WireError> {
    req_str(field, value, 16)?;
    if value.chars().any(char::is_whitespace) {
        return Err(WireError::Format {
            field: field.to_string(),
            message: "must not contain spaces".into(),
        });
    }
    Ok(())
}

fn int8(field: &str, value: i64) -> Result<(), WireError> {
    if !(0..=MAX_INT8).contains(&value) {
        return Err(WireError::IntRange {
            field: field.to_string(),
            value,
        });
    }
    Ok(())
}

fn spaces(total: i64, free: i64) -> Result<(), WireError> {
    int8("total_spaces", total)?;
    int8("free_spaces", free)?;
    if free > total {
        return Err(WireError::FreeOverTotal { free, total });
    }
    Ok(())
}

fn dict(
    field: &str,
    value: &str,
    ok: impl Fn(&str) -> bool,
    allowed: &'static str,
) -> Result<(), WireError> {
    if value.is_empty() {
        return Err(WireError::Missing {
            field: field.to_string(),
        });
    }
    if !ok(value) {
        return Err(WireError::NotInDictionary {
            field: field.to_string(),
            value: value.to_string(),
            allowed,
        });
    }
    Ok(())
}

fn is_plate_color(v: &str) -> bool {
    crate::plate::PlateColor::from_code(v).is_some()
}

fn is_car_type(v: &str) -> bool {
    crate::plate::CarType::from_code(v).is_some()
}

/// Exactly `YYYY-MM-DD HH:MM:SS`, zero-padded, and a real date and time.
fn time(field: &str, value: &str) -> Result<(), WireError> {
    if value.is_empty() {
        return Err(WireError::Missing {
            field: field.to_string(),
        });
    }
    let shape_ok = value.len() == 19
        && value.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok || chrono::NaiveDateTime::parse_from_str(value, crate::time::WIRE_FORMAT).is_err()
    {
        return Err(WireError::Time {
            field: field.to_string(),
            value: value.to_string(),
        });
    }
    Ok(())
}

/// Non-empty standard base64 (with `=` padding), under 500 KB.
fn snapshot(field: &str, value: &str) -> Result<(), WireError> {
    if value.is_empty() {
        return Err(WireError::Missing {
            field: field.to_string(),
        });
    }
    if value.len() >= MAX_SNAPSHOT_LEN {
        return Err(WireError::Format {
            field: field.to_string(),
            message: format!(
                "{} characters of base64; must be fewer than {} (the spec's <500K)",
                value.len(),
                MAX_SNAPSHOT_LEN
            ),
        });
    }
    if !is_standard_base64(value.as_bytes()) {
        return Err(WireError::Format {
            field: field.to_string(),
            message: "not standard base64".into(),
        });
    }
    Ok(())
}

/// An image as the platform wants it: standard base64 with padding. The caller keeps
/// it under [`MAX_SNAPSHOT_LEN`] (about 375 KB of JPEG) by compressing first.
pub fn snapshot_base64(image: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(image)
}

/// Alphabet, length and padding of standard base64, without decoding.
pub fn is_standard_base64(b: &[u8]) -> bool {
    if b.len() % 4 != 0 {
        return false;
    }
    let pad = b.iter().rev().take_while(|c| **c == b'=').count();
    pad <= 2
        && b[..b.len() - pad]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plate::{CarType, PlateColor};
    use crate::report::{EntryReport, ExitReport};
    use crate::time::{Timestamp, china_standard_time};

    pub(crate) fn entry() -> EntryRequest {
        EntryRequest {
            out_order_no: "P0012019100413360400001".into(),
            plate_no: "闽A12345".into(),
            plate_color: "pnc_02".into(),
            car_type: Some("normal".into()),
            parking_time: "2019-10-04 13:36:04".into(),
            snapshot: None,
            parking_lot_no: "P001".into(),
            port_no: "E1".into(),
            operator: None,
            price: None,
            should_pay: None,
            total_spaces: 100,
            free_spaces: 80,
            device_no: None,
        }
    }

    fn exit() -> ExitRequest {
        ExitRequest {
            out_order_no: "P0012019100413360400001".into(),
            plate_no: "闽A12345".into(),
            plate_color: "pnc_02".into(),
            car_type: None,
            away_time: "2019-10-04 16:36:04".into(),
            price: 500,
            should_pay: 0,
            paid_fee: 500,
            snapshot: None,
            parking_lot_no: "P001".into(),
            port_no: "X1".into(),
            operator: Some("op".into()),
            total_spaces: 100,
            free_spaces: 81,
            device_no: None,
        }
    }

    fn snap() -> SnapshotRequest {
        SnapshotRequest {
            out_order_no: "o1".into(),
            event: "parking".into(),
            snapshot: "/9j/4AAQ".into(),
        }
    }

    fn field_of(u: Uplink) -> String {
        u.validate()
            .expect_err("must be refused")
            .field()
            .to_string()
    }

    #[test]
    fn valid_requests_pass() {
        Uplink::Entry(entry()).validate().unwrap();
        Uplink::Exit(exit()).validate().unwrap();
        Uplink::Snapshot(snap()).validate().unwrap();
        Uplink::heartbeat("P001", true).validate().unwrap();
        Uplink::heartbeat("P001", false).validate().unwrap();
    }

    #[test]
    fn entry_json_keeps_table_order_and_omits_absent_options() {
        let json = String::from_utf8(Uplink::Entry(entry()).to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"out_order_no":"P0012019100413360400001","plate_no":"闽A12345","plate_color":"pnc_02","car_type":"normal","parking_time":"2019-10-04 13:36:04","parking_lot_no":"P001","port_no":"E1","total_spaces":100,"free_spaces":80}"#
        );
    }

    #[test]
    fn field_tables_match_serialised_order() {
        let mut e = entry();
        e.snapshot = Some("AAAA".into());
        e.operator = Some("o".into());
        e.price = Some(1);
        e.should_pay = Some(1);
        e.device_no = Some("d".into());
        let mut x = exit();
        x.car_type = Some("normal".into());
        x.snapshot = Some("AAAA".into());
        x.device_no = Some("d".into());
        for u in [
            Uplink::Entry(e),
            Uplink::Exit(x),
            Uplink::Snapshot(snap()),
            Uplink::heartbeat("P", true),
        ] {
            let json = String::from_utf8(u.to_json()).unwrap();
            let v: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&json).unwrap();
            assert_eq!(
                v.len(),
                u.kind().fields().len(),
                "{:?}: every field present",
                u.kind()
            );
            let positions: Vec<usize> = u
                .kind()
                .fields()
                .iter()
                .map(|(n, _)| json.find(&format!("\"{n}\":")).unwrap())
                .collect();
            assert!(
                positions.windows(2).all(|w| w[0] < w[1]),
                "{:?}: {json}",
                u.kind()
            );
        }
    }

    #[test]
    fn required_fields_are_enforced() {
        let mut e = entry();
        e.out_order_no.clear();
        assert_eq!(field_of(Uplink::Entry(e)), "out_order_no");
        let mut e = entry();
        e.plate_no.clear();
        assert_eq!(field_of(Uplink::Entry(e)), "plate_no");
        let mut e = entry();
        e.parking_lot_no.clear();
        assert_eq!(field_of(Uplink::Entry(e)), "parking_lot_no");
        let mut e = entry();
        e.port_no.clear();
        assert_eq!(field_of(Uplink::Entry(e)), "port_no");
        let mut e = entry();
        e.parking_time.clear();
        assert_eq!(field_of(Uplink::Entry(e)), "parking_time");
        let mut s = snap();
        s.snapshot.clear();
        assert_eq!(field_of(Uplink::Snapshot(s)), "snapshot");
        let mut h = HeartbeatRequest {
            parking_lot_no: String::new(),
            status: "alive".into(),
        };
        assert_eq!(field_of(Uplink::Heartbeat(h.clone())), "parking_lot_no");
        h.parking_lot_no = "P".into();
        h.status.clear();
        assert_eq!(field_of(Uplink::Heartbeat(h)), "status");
    }

    #[test]
    fn max_lengths_are_enforced() {
        let mut e = entry();
        e.out_order_no = "x".repeat(65);
        assert_eq!(field_of(Uplink::Entry(e.clone())), "out_order_no");
        e.out_order_no = "x".repeat(64);
        Uplink::Entry(e).validate().unwrap();
        let mut e = entry();
        e.plate_no = "闽".repeat(17);
        assert_eq!(field_of(Uplink::Entry(e)), "plate_no");
        let mut e = entry();
        e.parking_lot_no = "p".repeat(33);
        assert_eq!(field_of(Uplink::Entry(e)), "parking_lot_no");
        let mut e = entry();
        e.port_no = "p".repeat(33);
        assert_eq!(field_of(Uplink::Entry(e)), "port_no");
        let mut x = exit();
        x.operator = Some("o".repeat(17));
        assert_eq!(field_of(Uplink::Exit(x)), "operator");
        let mut e = entry();
        e.device_no = Some("d".repeat(65));
        assert_eq!(field_of(Uplink::Entry(e)), "device_no");
    }

    #[test]
    fn plate_with_space_is_refused() {
        let mut e = entry();
        e.plate_no = "闽 4444A".into();
        assert_eq!(field_of(Uplink::Entry(e)), "plate_no");
    }

    #[test]
    fn int_width_is_enforced() {
        let mut x = exit();
        x.price = 100_000_000;
        assert_eq!(field_of(Uplink::Exit(x)), "price");
        let mut x = exit();
        x.paid_fee = -1;
        assert_eq!(field_of(Uplink::Exit(x)), "paid_fee");
        let mut x = exit();
        x.should_pay = -5;
        assert_eq!(field_of(Uplink::Exit(x)), "should_pay");
        let mut e = entry();
        e.price = Some(123_456_789);
        assert_eq!(field_of(Uplink::Entry(e)), "price");
        let mut e = entry();
        e.should_pay = Some(-1);
        assert_eq!(field_of(Uplink::Entry(e)), "should_pay");
        let mut e = entry();
        e.total_spaces = 100_000_000;
        e.free_spaces = 0;
        assert_eq!(field_of(Uplink::Entry(e)), "total_spaces");
        let mut e = entry();
        e.free_spaces = -1;
        assert_eq!(field_of(Uplink::Entry(e)), "free_spaces");
    }

    #[test]
    fn free_spaces_may_not_exceed_total() {
        let mut e = entry();
        e.free_spaces = 101;
        let err = Uplink::Entry(e).validate().unwrap_err();
        assert_eq!(
            err,
            WireError::FreeOverTotal {
                free: 101,
                total: 100
            }
        );
        assert_eq!(err.field(), "free_spaces");
        let mut x = exit();
        x.free_spaces = 100;
        Uplink::Exit(x).validate().unwrap();
    }

    #[test]
    fn dictionaries_are_enforced() {
        let mut e = entry();
        e.plate_color = "pnc_09".into();
        assert_eq!(field_of(Uplink::Entry(e)), "plate_color");
        let mut e = entry();
        e.car_type = Some("truck".into());
        assert_eq!(field_of(Uplink::Entry(e)), "car_type");
        let mut x = exit();
        x.plate_color = "blue".into();
        assert_eq!(field_of(Uplink::Exit(x)), "plate_color");
        let mut s = snap();
        s.event = "entry".into();
        assert_eq!(field_of(Uplink::Snapshot(s)), "event");
        let h = HeartbeatRequest {
            parking_lot_no: "P".into(),
            status: "online".into(),
        };
        assert_eq!(field_of(Uplink::Heartbeat(h)), "status");
    }

    #[test]
    fn times_must_be_wire_format() {
        for bad in [
            "2019-10-04T13:36:04",
            "2019-10-4 13:36:04",
            "2019-02-30 10:00:00",
            "2019-10-04 24:00:00",
            "x",
        ] {
            let mut e = entry();
            e.parking_time = bad.into();
            assert_eq!(field_of(Uplink::Entry(e)), "parking_time", "{bad}");
        }
        let mut x = exit();
        x.away_time = "2019/10/04 16:36:04".into();
        assert_eq!(field_of(Uplink::Exit(x)), "away_time");
    }

    #[test]
    fn snapshot_must_be_base64_under_500_kb() {
        let mut s = snap();
        s.snapshot = "A".repeat(MAX_SNAPSHOT_LEN);
        assert_eq!(field_of(Uplink::Snapshot(s.clone())), "snapshot");
        assert_eq!(MAX_SNAPSHOT_LEN, 500_000);
        s.snapshot = "A".repeat(MAX_SNAPSHOT_LEN - 4);
        Uplink::Snapshot(s.clone()).validate().unwrap();
        // The largest JPEG the re-encoder may produce fits, one byte more would not.
        s.snapshot = snapshot_base64(&vec![7u8; crate::snapshot::MAX_JPEG_BYTES]);
        Uplink::Snapshot(s.clone()).validate().unwrap();
        s.snapshot = snapshot_base64(&vec![7u8; crate::snapshot::MAX_JPEG_BYTES + 1]);
        assert_eq!(s.snapshot.len(), MAX_SNAPSHOT_LEN);
        assert_eq!(field_of(Uplink::Snapshot(s.clone())), "snapshot");
        s.snapshot = "not base64!".into();
        assert_eq!(field_of(Uplink::Snapshot(s)), "snapshot");
        let mut e = entry();
        e.snapshot = Some("AB=C".into());
        assert_eq!(field_of(Uplink::Entry(e)), "snapshot");
        let mut x = exit();
        x.snapshot = Some("A".repeat(MAX_SNAPSHOT_LEN + 4));
        assert_eq!(field_of(Uplink::Exit(x)), "snapshot");
    }

    #[test]
    fn from_report_formats_lot_local_time() {
        let report = Report::Entry(EntryReport {
            out_order_no: "o1".into(),
            plate_no: "闽A12345".into(),
            plate_color: PlateColor::Yellow,
            car_type: CarType::Parkcard,
            parking_time: Timestamp(1_570_167_364_000),
            port_no: "E1".into(),
            operator: None,
            price: None,
            should_pay: None,
            total_spaces: 10,
            free_spaces: 9,
        });
        let Uplink::Entry(e) = Uplink::from_report(&report, "P001", None, china_standard_time())
        else {
            panic!("entry expected")
        };
        assert_eq!(e.parking_time, "2019-10-04 13:36:04");
        assert_eq!(e.plate_color, "pnc_03");
        assert_eq!(e.car_type.as_deref(), Some("parkcard"));
        assert_eq!(e.parking_lot_no, "P001");

        let report = Report::Exit(ExitReport {
            out_order_no: "o1".into(),
            plate_no: "闽A12345".into(),
            plate_color: PlateColor::Blue,
            car_type: CarType::Normal,
            away_time: Timestamp(1_570_167_364_000),
            price: 1,
            should_pay: 0,
            paid_fee: 1,
            port_no: "X1".into(),
            operator: None,
            total_spaces: 10,
            free_spaces: 10,
        });
        let u = Uplink::from_report(
            &report,
            "P001",
            Some("AAAA".into()),
            FixedOffset::east_opt(0).unwrap(),
        );
        let Uplink::Exit(x) = &u else {
            panic!("exit expected")
        };
        assert_eq!(x.away_time, "2019-10-04 05:36:04");
        assert_eq!(x.snapshot.as_deref(), Some("AAAA"));
        u.validate().unwrap();

        let report = Report::Snapshot {
            out_order_no: "o1".into(),
            event: SnapshotEvent::Away,
        };
        let u = Uplink::from_report(&report, "P001", None, china_standard_time());
        assert_eq!(u.path(), SNAPSHOT_PATH);
        assert_eq!(
            u.validate().unwrap_err().field(),
            "snapshot",
            "a snapshot report needs its image"
        );
    }

    #[test]
    fn parse_names_unknown_fields_wrong_types_and_missing_fields() {
        let err = Uplink::parse(
            UplinkKind::Heartbeat,
            br#"{"parking_lot_no":"P","status":"alive","x":1}"#,
        );
        assert_eq!(err.unwrap_err(), WireError::Unknown { field: "x".into() });
        let err = Uplink::parse(
            UplinkKind::Heartbeat,
            br#"{"parking_lot_no":5,"status":"alive"}"#,
        );
        assert_eq!(err.unwrap_err().field(), "parking_lot_no");
        let err = Uplink::parse(UplinkKind::Heartbeat, br#"{"parking_lot_no":"P"}"#);
        assert_eq!(
            err.unwrap_err(),
            WireError::Missing {
                field: "status".into()
            }
        );
        let err = Uplink::parse(UplinkKind::Entry, b"[1,2]");
        assert_eq!(err.unwrap_err().field(), "body");
        let e = Uplink::Entry(entry());
        assert_eq!(Uplink::parse(UplinkKind::Entry, &e.to_json()).unwrap(), e);
        let err = Uplink::parse(UplinkKind::Exit, br#"{"price":1.5}"#);
        assert_eq!(err.unwrap_err().field(), "price");
    }

    #[test]
    fn snapshot_base64_passes_validation() {
        let mut s = snap();
        s.snapshot = snapshot_base64(&[0xff, 0xd8, 0xff, 0xe0, 1]);
        assert_eq!(s.snapshot, "/9j/4AE=");
        Uplink::Snapshot(s).validate().unwrap();
    }

    #[test]
    fn paths_resolve_with_double_slash_tolerated() {
        assert_eq!(
            UplinkKind::from_path("//barrier/heartbeat"),
            Some(UplinkKind::Heartbeat)
        );
        assert_eq!(
            UplinkKind::from_path("/barrier/parking"),
            Some(UplinkKind::Entry)
        );
        assert_eq!(UplinkKind::from_path("/barrier/nope"), None);
    }

    #[test]
    fn device_no_is_added_without_copying_the_uplink_and_reads_as_if_it_were_set() {
        let report = Report::Exit(crate::report::ExitReport {
            out_order_no: "P0012019100413360400001".into(),
            plate_no: "闽A12345".into(),
            plate_color: crate::plate::PlateColor::Blue,
            car_type: crate::plate::CarType::Normal,
            away_time: crate::time::Timestamp(1_570_167_364_000),
            price: 500,
            should_pay: 0,
            paid_fee: 500,
            port_no: "X1".into(),
            operator: None,
            total_spaces: 10,
            free_spaces: 3,
        });
        for u in [
            Uplink::from_report(&report, "P001", Some("aGk=".into()), china_standard_time()),
            Uplink::from_report(&report, "P001", None, china_standard_time()),
        ] {
            let mut set = u.clone();
            set.set_device_no(Some("gate-7".into()));
            assert_eq!(u.to_json_with_device(Some("gate-7")), set.to_json());
            assert_eq!(u.to_json_with_device(None), u.to_json());
        }
    }
}
