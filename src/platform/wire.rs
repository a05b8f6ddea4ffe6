//! Typed requests for the four uplinks (spec §3.2), in the field order of the spec's
//! tables. Every field holds a valid value (`field`'s types, checked where they are
//! built), so a request that exists is one the spec allows: the bridge builds them
//! from reports ([`Uplink::from_report`]), the mock platform parses them from what it
//! receives ([`Uplink::parse`]), and neither checks twice.

use super::field::{
    Count, DeviceNo, Fen, FieldError, HeartbeatStatus, LotNo, Operator, OrderNo, PlateNo, PortNo,
    Snapshot, WireTime, WireValue,
};
use crate::plate::{CarType, PlateColor};
use crate::report::{Report, SnapshotEvent};
use chrono::FixedOffset;
use serde::{Deserialize, Serialize};

pub use super::field::{JsonType, is_standard_base64, snapshot_base64};
pub use crate::spec::{
    ENTRY_PATH, EXIT_PATH, HEARTBEAT_PATH, MAX_INT8, MAX_SNAPSHOT_LEN, SNAPSHOT_PATH,
};

/// A request struct and its field table (name and JSON type, in the spec's order)
/// from one list, so the table the mock checks against cannot drift from the struct.
macro_rules! wire_request {
    ($(#[$meta:meta])* pub struct $name:ident {
        $($(#[$field_meta:meta])* pub $field:ident: $ty:ty,)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $ty,)*
        }

        impl $name {
            /// The field table: name and JSON type, in the spec's order.
            pub const FIELDS: &'static [(&'static str, JsonType)] =
                &[$((stringify!($field), <$ty as WireValue>::JSON)),*];
        }
    };
}

wire_request! {
    /// §3.2.1 vehicle entry, `POST /barrier/parking`.
    pub struct EntryRequest {
        pub out_order_no: OrderNo,
        pub plate_no: PlateNo,
        pub plate_color: PlateColor,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub car_type: Option<CarType>,
        pub parking_time: WireTime,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub snapshot: Option<Snapshot>,
        pub parking_lot_no: LotNo,
        pub port_no: PortNo,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub operator: Option<Operator>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub price: Option<Fen>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub should_pay: Option<Fen>,
        pub total_spaces: Count,
        pub free_spaces: Count,
        /// In the original's example, not in its table: sent only when configured.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub device_no: Option<DeviceNo>,
    }
}

wire_request! {
    /// §3.2.2 vehicle exit, `POST /barrier/away`.
    pub struct ExitRequest {
        pub out_order_no: OrderNo,
        pub plate_no: PlateNo,
        pub plate_color: PlateColor,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub car_type: Option<CarType>,
        pub away_time: WireTime,
        pub price: Fen,
        pub should_pay: Fen,
        pub paid_fee: Fen,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub snapshot: Option<Snapshot>,
        pub parking_lot_no: LotNo,
        pub port_no: PortNo,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub operator: Option<Operator>,
        pub total_spaces: Count,
        pub free_spaces: Count,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub device_no: Option<DeviceNo>,
    }
}

wire_request! {
    /// §3.2.3 snapshot, `POST /barrier/uploadSnapshot`.
    pub struct SnapshotRequest {
        pub out_order_no: OrderNo,
        pub event: SnapshotEvent,
        pub snapshot: Snapshot,
    }
}

wire_request! {
    /// §3.2.4 heartbeat, `POST /barrier/heartbeat`.
    pub struct HeartbeatRequest {
        pub parking_lot_no: LotNo,
        pub status: HeartbeatStatus,
    }
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
        match self {
            UplinkKind::Entry => EntryRequest::FIELDS,
            UplinkKind::Exit => ExitRequest::FIELDS,
            UplinkKind::Snapshot => SnapshotRequest::FIELDS,
            UplinkKind::Heartbeat => HeartbeatRequest::FIELDS,
        }
    }
}

/// A rule broken by a request. Every variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A value breaks its field's rule ([`FieldError`], or serde's word for a value
    /// outside a dictionary).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
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
            WireError::Invalid { field, .. }
            | WireError::Unknown { field }
            | WireError::Type { field, .. } => field,
            WireError::FreeOverTotal { .. } => "free_spaces",
            WireError::Json { .. } => "body",
        }
    }
}

/// Builds the value of `field` from `value`, naming the field when it is refused.
fn checked<T: TryFrom<V, Error = FieldError>, V>(field: &str, value: V) -> Result<T, WireError> {
    T::try_from(value).map_err(|e| e.at(field))
}

/// [`checked`] for an optional field.
fn checked_opt<T: TryFrom<V, Error = FieldError>, V>(
    field: &str,
    value: Option<V>,
) -> Result<Option<T>, WireError> {
    value.map(|v| checked(field, v)).transpose()
}

/// The one rule between two fields: a lot has no more free spaces than spaces.
fn check_spaces(total: Count, free: Count) -> Result<(), WireError> {
    if free > total {
        return Err(WireError::FreeOverTotal {
            free: free.get(),
            total: total.get(),
        });
    }
    Ok(())
}

/// What a request names: its stay (all but a heartbeat), plate (an entry or exit) and
/// lot (all but a snapshot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Names<'a> {
    pub out_order_no: Option<&'a str>,
    pub plate_no: Option<&'a str>,
    pub parking_lot_no: Option<&'a str>,
}

/// The fields entry and exit reports share, checked once for either.
struct Passage {
    out_order_no: OrderNo,
    plate_no: PlateNo,
    snapshot: Option<Snapshot>,
    parking_lot_no: LotNo,
    port_no: PortNo,
    operator: Option<Operator>,
    total_spaces: Count,
    free_spaces: Count,
}

impl Passage {
    #[allow(clippy::too_many_arguments)]
    fn check(
        out_order_no: &str,
        plate_no: &str,
        snapshot_b64: Option<String>,
        parking_lot_no: &str,
        port_no: &str,
        operator: Option<&str>,
        total_spaces: i64,
        free_spaces: i64,
    ) -> Result<Passage, WireError> {
        let p = Passage {
            out_order_no: checked("out_order_no", out_order_no)?,
            plate_no: checked("plate_no", plate_no)?,
            snapshot: checked_opt("snapshot", snapshot_b64)?,
            parking_lot_no: checked("parking_lot_no", parking_lot_no)?,
            port_no: checked("port_no", port_no)?,
            operator: checked_opt("operator", operator)?,
            total_spaces: checked("total_spaces", total_spaces)?,
            free_spaces: checked("free_spaces", free_spaces)?,
        };
        check_spaces(p.total_spaces, p.free_spaces)?;
        Ok(p)
    }
}

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

    /// A heartbeat for the lot: `alive` or `lost`. Refused when the lot number breaks
    /// the spec's rule (the config checks it, so only a hand-made one can).
    pub fn heartbeat(parking_lot_no: &str, alive: bool) -> Result<Uplink, WireError> {
        Ok(Uplink::Heartbeat(HeartbeatRequest {
            parking_lot_no: checked("parking_lot_no", parking_lot_no)?,
            status: if alive {
                HeartbeatStatus::Alive
            } else {
                HeartbeatStatus::Lost
            },
        }))
    }

    /// The stay, plate and lot the request names, where it names them.
    pub fn names(&self) -> Names<'_> {
        match self {
            Uplink::Entry(EntryRequest {
                out_order_no,
                plate_no,
                parking_lot_no,
                ..
            })
            | Uplink::Exit(ExitRequest {
                out_order_no,
                plate_no,
                parking_lot_no,
                ..
            }) => Names {
                out_order_no: Some(out_order_no.as_str()),
                plate_no: Some(plate_no.as_str()),
                parking_lot_no: Some(parking_lot_no.as_str()),
            },
            Uplink::Snapshot(s) => Names {
                out_order_no: Some(s.out_order_no.as_str()),
                ..Names::default()
            },
            Uplink::Heartbeat(h) => Names {
                parking_lot_no: Some(h.parking_lot_no.as_str()),
                ..Names::default()
            },
        }
    }

    /// The stay's `out_order_no` (none for a heartbeat).
    pub fn out_order_no(&self) -> Option<&str> {
        self.names().out_order_no
    }

    /// Business report → wire request, formatting times in the lot's offset: the
    /// bridge's boundary, where every value is checked once. `snapshot_b64`: the inline
    /// image for an entry/exit, or the image of a snapshot report (a snapshot without
    /// one is refused). A value the spec does not allow is refused naming its field.
    pub fn from_report(
        report: &Report,
        parking_lot_no: &str,
        snapshot_b64: Option<String>,
        offset: FixedOffset,
    ) -> Result<Uplink, WireError> {
        Ok(match report {
            Report::Entry(e) => {
                let p = Passage::check(
                    &e.out_order_no,
                    &e.plate_no,
                    snapshot_b64,
                    parking_lot_no,
                    &e.port_no,
                    e.operator.as_deref(),
                    e.total_spaces,
                    e.free_spaces,
                )?;
                Uplink::Entry(EntryRequest {
                    out_order_no: p.out_order_no,
                    plate_no: p.plate_no,
                    plate_color: e.plate_color,
                    car_type: Some(e.car_type),
                    parking_time: WireTime::local(e.parking_time, offset)
                        .map_err(|err| err.at("parking_time"))?,
                    snapshot: p.snapshot,
                    parking_lot_no: p.parking_lot_no,
                    port_no: p.port_no,
                    operator: p.operator,
                    price: checked_opt("price", e.price)?,
                    should_pay: checked_opt("should_pay", e.should_pay)?,
                    total_spaces: p.total_spaces,
                    free_spaces: p.free_spaces,
                    device_no: None,
                })
            }
            Report::Exit(x) => {
                let p = Passage::check(
                    &x.out_order_no,
                    &x.plate_no,
                    snapshot_b64,
                    parking_lot_no,
                    &x.port_no,
                    x.operator.as_deref(),
                    x.total_spaces,
                    x.free_spaces,
                )?;
                Uplink::Exit(ExitRequest {
                    out_order_no: p.out_order_no,
                    plate_no: p.plate_no,
                    plate_color: x.plate_color,
                    car_type: Some(x.car_type),
                    away_time: WireTime::local(x.away_time, offset)
                        .map_err(|err| err.at("away_time"))?,
                    price: checked("price", x.price)?,
                    should_pay: checked("should_pay", x.should_pay)?,
                    paid_fee: checked("paid_fee", x.paid_fee)?,
                    snapshot: p.snapshot,
                    parking_lot_no: p.parking_lot_no,
                    port_no: p.port_no,
                    operator: p.operator,
                    total_spaces: p.total_spaces,
                    free_spaces: p.free_spaces,
                    device_no: None,
                })
            }
            Report::Snapshot {
                out_order_no,
                event,
            } => Uplink::Snapshot(SnapshotRequest {
                out_order_no: checked("out_order_no", out_order_no.as_str())?,
                event: *event,
                snapshot: checked("snapshot", snapshot_b64.unwrap_or_default())?,
            }),
        })
    }

    /// Sets `device_no` on an entry or exit (no effect on the others).
    pub fn set_device_no(&mut self, device_no: Option<DeviceNo>) {
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
    pub fn to_json_with_device(&self, device_no: Option<&DeviceNo>) -> Vec<u8> {
        #[derive(Serialize)]
        struct WithDevice<'a, T> {
            #[serde(flatten)]
            request: &'a T,
            device_no: &'a DeviceNo,
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
            Uplink::Entry(e) => e.snapshot.as_ref().map_or(0, Snapshot::len),
            Uplink::Exit(x) => x.snapshot.as_ref().map_or(0, Snapshot::len),
            Uplink::Snapshot(s) => s.snapshot.len(),
            Uplink::Heartbeat(_) => 0,
        };
        snapshot + 512
    }

    /// Parses a decrypted business JSON for interface `kind`: the mock platform's
    /// boundary. Unknown fields, wrong JSON types, missing fields and values the spec
    /// does not allow are refused naming the field.
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
            let (ok, expected) = match ty {
                JsonType::Str => (value.is_string(), "a string"),
                JsonType::Int => (value.is_i64(), "an integer"),
            };
            if !ok {
                return Err(WireError::Type {
                    field: name.clone(),
                    expected,
                });
            }
        }
        let value = serde_json::Value::Object(map);
        let refused = |e: serde_path_to_error::Error<serde_json::Error>| {
            // After the checks above: a missing required field, or a value its type
            // refuses (the message is the type's rule).
            let message = e.inner().to_string();
            match message.split('`').nth(1) {
                Some(field) if message.starts_with("missing field") => {
                    FieldError::Missing.at(field)
                }
                _ => WireError::Invalid {
                    field: e.path().to_string(),
                    message,
                },
            }
        };
        let uplink = match kind {
            UplinkKind::Entry => {
                let e: EntryRequest = serde_path_to_error::deserialize(value).map_err(refused)?;
                check_spaces(e.total_spaces, e.free_spaces)?;
                Uplink::Entry(e)
            }
            UplinkKind::Exit => {
                let x: ExitRequest = serde_path_to_error::deserialize(value).map_err(refused)?;
                check_spaces(x.total_spaces, x.free_spaces)?;
                Uplink::Exit(x)
            }
            UplinkKind::Snapshot => {
                Uplink::Snapshot(serde_path_to_error::deserialize(value).map_err(refused)?)
            }
            UplinkKind::Heartbeat => {
                Uplink::Heartbeat(serde_path_to_error::deserialize(value).map_err(refused)?)
            }
        };
        Ok(uplink)
    }
}

/// Requests for tests across `platform` (wire, mock, client): one entry, exit and
/// snapshot of the spec's example stay, parsed like the mock parses what it receives.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use serde_json::{Value, json};

    /// The spec's example entry, stay `o`.
    pub(crate) fn entry_json(o: &str) -> Value {
        json!({"out_order_no": o, "plate_no": "闽A12345", "plate_color": "pnc_02",
               "car_type": "normal", "parking_time": "2019-10-04 13:36:04",
               "parking_lot_no": "P001", "port_no": "E1", "total_spaces": 100, "free_spaces": 80})
    }

    /// Its exit three hours later, 5 yuan paid.
    pub(crate) fn exit_json(o: &str) -> Value {
        json!({"out_order_no": o, "plate_no": "闽A12345", "plate_color": "pnc_02",
               "away_time": "2019-10-04 16:36:04", "price": 500, "should_pay": 0,
               "paid_fee": 500, "parking_lot_no": "P001", "port_no": "X1", "operator": "op",
               "total_spaces": 100, "free_spaces": 81})
    }

    pub(crate) fn snapshot_json(o: &str, b64: &str) -> Value {
        json!({"out_order_no": o, "event": "parking", "snapshot": b64})
    }

    /// `json` as the mock reads it for `kind` (panics when it is refused).
    pub(crate) fn uplink(kind: UplinkKind, json: &Value) -> Uplink {
        Uplink::parse(kind, json.to_string().as_bytes()).expect("a valid fixture")
    }

    pub(crate) fn entry(o: &str) -> Uplink {
        uplink(UplinkKind::Entry, &entry_json(o))
    }

    pub(crate) fn exit(o: &str) -> Uplink {
        uplink(UplinkKind::Exit, &exit_json(o))
    }

    pub(crate) fn snapshot(o: &str, b64: &str) -> Uplink {
        uplink(UplinkKind::Snapshot, &snapshot_json(o, b64))
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{entry, entry_json, exit, exit_json, snapshot, snapshot_json};
    use super::*;
    use crate::plate::{CarType, PlateColor};
    use crate::report::{EntryReport, ExitReport};
    use crate::time::{Timestamp, china_standard_time};
    use serde_json::{Value, json};

    const O: &str = "P0012019100413360400001";

    #[test]
    fn valid_requests_round_trip_through_parse() {
        for u in [
            entry(O),
            exit(O),
            snapshot(O, "/9j/4AAQ"),
            Uplink::heartbeat("P001", true).unwrap(),
            Uplink::heartbeat("P001", false).unwrap(),
        ] {
            assert_eq!(Uplink::parse(u.kind(), &u.to_json()), Ok(u));
        }
    }

    #[test]
    fn entry_json_keeps_table_order_and_omits_absent_options() {
        let json = String::from_utf8(entry(O).to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"out_order_no":"P0012019100413360400001","plate_no":"闽A12345","plate_color":"pnc_02","car_type":"normal","parking_time":"2019-10-04 13:36:04","parking_lot_no":"P001","port_no":"E1","total_spaces":100,"free_spaces":80}"#
        );
    }

    #[test]
    fn field_tables_match_serialised_order() {
        let full = |kind, mut json: Value, extra: Value| {
            if let (Value::Object(m), Value::Object(extra)) = (&mut json, extra) {
                m.extend(extra);
            }
            fixtures::uplink(kind, &json)
        };
        let optional = json!({"snapshot": "AAAA", "operator": "o", "device_no": "d",
                              "car_type": "normal"});
        let mut entry_extra = optional.clone();
        entry_extra["price"] = json!(1);
        entry_extra["should_pay"] = json!(1);
        for u in [
            full(UplinkKind::Entry, entry_json(O), entry_extra),
            full(UplinkKind::Exit, exit_json(O), optional),
            snapshot(O, "AAAA"),
            Uplink::heartbeat("P", true).unwrap(),
        ] {
            let json = String::from_utf8(u.to_json()).unwrap();
            let v: serde_json::Map<String, Value> = serde_json::from_str(&json).unwrap();
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

    /// Every rule of the spec, broken once: the mock's parse refuses the request and
    /// names the field.
    #[test]
    fn parse_refuses_each_broken_rule_naming_the_field() {
        let max = MAX_SNAPSHOT_LEN;
        let cases: Vec<(UplinkKind, &str, Value)> = vec![
            // Required fields, empty.
            (UplinkKind::Entry, "out_order_no", json!("")),
            (UplinkKind::Entry, "plate_no", json!("")),
            (UplinkKind::Entry, "parking_lot_no", json!("")),
            (UplinkKind::Entry, "port_no", json!("")),
            (UplinkKind::Entry, "parking_time", json!("")),
            (UplinkKind::Snapshot, "snapshot", json!("")),
            (UplinkKind::Heartbeat, "parking_lot_no", json!("")),
            (UplinkKind::Heartbeat, "status", json!("")),
            // Lengths.
            (UplinkKind::Entry, "out_order_no", json!("x".repeat(65))),
            (UplinkKind::Entry, "plate_no", json!("闽".repeat(17))),
            (UplinkKind::Entry, "parking_lot_no", json!("p".repeat(33))),
            (UplinkKind::Entry, "port_no", json!("p".repeat(33))),
            (UplinkKind::Exit, "operator", json!("o".repeat(17))),
            (UplinkKind::Entry, "device_no", json!("d".repeat(65))),
            (UplinkKind::Entry, "plate_no", json!("闽 4444A")),
            // 8-digit integers.
            (UplinkKind::Exit, "price", json!(100_000_000)),
            (UplinkKind::Exit, "paid_fee", json!(-1)),
            (UplinkKind::Exit, "should_pay", json!(-5)),
            (UplinkKind::Entry, "price", json!(123_456_789)),
            (UplinkKind::Entry, "should_pay", json!(-1)),
            (UplinkKind::Entry, "free_spaces", json!(-1)),
            (UplinkKind::Entry, "free_spaces", json!(101)),
            // Dictionaries.
            (UplinkKind::Entry, "plate_color", json!("pnc_09")),
            (UplinkKind::Entry, "car_type", json!("truck")),
            (UplinkKind::Exit, "plate_color", json!("blue")),
            (UplinkKind::Snapshot, "event", json!("entry")),
            (UplinkKind::Heartbeat, "status", json!("online")),
            // Times.
            (
                UplinkKind::Entry,
                "parking_time",
                json!("2019-10-04T13:36:04"),
            ),
            (
                UplinkKind::Entry,
                "parking_time",
                json!("2019-10-4 13:36:04"),
            ),
            (
                UplinkKind::Entry,
                "parking_time",
                json!("2019-02-30 10:00:00"),
            ),
            (
                UplinkKind::Entry,
                "parking_time",
                json!("2019-10-04 24:00:00"),
            ),
            (UplinkKind::Exit, "away_time", json!("2019/10/04 16:36:04")),
            // Images.
            (UplinkKind::Snapshot, "snapshot", json!("A".repeat(max))),
            (UplinkKind::Snapshot, "snapshot", json!("not base64!")),
            (UplinkKind::Entry, "snapshot", json!("AB=C")),
            (UplinkKind::Exit, "snapshot", json!("A".repeat(max + 4))),
        ];
        for (kind, field, bad) in cases {
            let mut json = match kind {
                UplinkKind::Entry => entry_json(O),
                UplinkKind::Exit => exit_json(O),
                UplinkKind::Snapshot => snapshot_json(O, "AAAA"),
                UplinkKind::Heartbeat => json!({"parking_lot_no": "P001", "status": "alive"}),
            };
            json[field] = bad.clone();
            let err = Uplink::parse(kind, json.to_string().as_bytes())
                .expect_err(&format!("{kind:?} {field} = {bad} must be refused"));
            assert_eq!(err.field(), field, "{kind:?} {bad}: {err}");
        }
        let mut json = entry_json(O);
        json["free_spaces"] = json!(101);
        assert_eq!(
            Uplink::parse(UplinkKind::Entry, json.to_string().as_bytes()),
            Err(WireError::FreeOverTotal {
                free: 101,
                total: 100
            })
        );
    }

    #[test]
    fn values_at_their_limits_are_allowed() {
        let mut json = entry_json(O);
        json["out_order_no"] = json!("x".repeat(64));
        json["free_spaces"] = json!(100);
        json["price"] = json!(MAX_INT8);
        fixtures::uplink(UplinkKind::Entry, &json);
        assert_eq!(MAX_SNAPSHOT_LEN, 500_000);
        fixtures::snapshot(O, &"A".repeat(MAX_SNAPSHOT_LEN - 4));
        // The largest JPEG the re-encoder may produce fits, one byte more would not.
        let largest = vec![7u8; crate::snapshot::MAX_JPEG_BYTES];
        assert!(Snapshot::encode(&largest).is_ok());
        let over = vec![7u8; crate::snapshot::MAX_JPEG_BYTES + 1];
        assert_eq!(snapshot_base64(&over).len(), MAX_SNAPSHOT_LEN);
        assert!(matches!(
            Snapshot::encode(&over),
            Err(FieldError::Format(_))
        ));
        assert_eq!(
            Snapshot::encode(&[0xff, 0xd8, 0xff, 0xe0, 1]).unwrap(),
            "/9j/4AE="
        );
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
        let Ok(Uplink::Entry(e)) =
            Uplink::from_report(&report, "P001", None, china_standard_time())
        else {
            panic!("entry expected")
        };
        assert_eq!(e.parking_time, "2019-10-04 13:36:04");
        assert_eq!(e.plate_color, PlateColor::Yellow);
        assert_eq!(e.car_type, Some(CarType::Parkcard));
        assert_eq!(e.parking_lot_no, "P001");

        let u = Uplink::from_report(
            &exit_report(1, 10),
            "P001",
            Some("AAAA".into()),
            FixedOffset::east_opt(0).unwrap(),
        )
        .unwrap();
        let Uplink::Exit(x) = &u else {
            panic!("exit expected")
        };
        assert_eq!(x.away_time, "2019-10-04 05:36:04");
        assert_eq!(x.snapshot.as_ref().map(Snapshot::as_str), Some("AAAA"));
        assert_eq!(Uplink::parse(UplinkKind::Exit, &u.to_json()), Ok(u));
    }

    fn exit_report(price: i64, free_spaces: i64) -> Report {
        Report::Exit(ExitReport {
            out_order_no: O.into(),
            plate_no: "闽A12345".into(),
            plate_color: PlateColor::Blue,
            car_type: CarType::Normal,
            away_time: Timestamp(1_570_167_364_000),
            price,
            should_pay: 0,
            paid_fee: price,
            port_no: "X1".into(),
            operator: None,
            total_spaces: 10,
            free_spaces,
        })
    }

    /// What the client once re-checked is refused where the request is built: the
    /// uploader then holds the report with this reason, as it always did.
    #[test]
    fn from_report_refuses_what_the_spec_does_not_allow() {
        let cst = china_standard_time();
        let field = |r: &Report, b64: Option<&str>| {
            Uplink::from_report(r, "P001", b64.map(str::to_string), cst)
                .expect_err("must be refused")
                .field()
                .to_string()
        };
        assert_eq!(field(&exit_report(-1, 3), None), "price");
        assert_eq!(field(&exit_report(MAX_INT8 + 1, 3), None), "price");
        assert_eq!(field(&exit_report(1, 11), None), "free_spaces");
        assert_eq!(field(&exit_report(1, 3), Some("not base64")), "snapshot");
        let snapshot = Report::Snapshot {
            out_order_no: "o1".into(),
            event: SnapshotEvent::Away,
        };
        assert_eq!(
            field(&snapshot, None),
            "snapshot",
            "a snapshot needs its image"
        );
        let u = Uplink::from_report(&snapshot, "P001", Some("AAAA".into()), cst).unwrap();
        assert_eq!(u.path(), SNAPSHOT_PATH);
        assert!(Uplink::heartbeat("", true).is_err());
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
            err.unwrap_err().to_string(),
            "status: required but missing or empty"
        );
        let err = Uplink::parse(UplinkKind::Entry, b"[1,2]");
        assert_eq!(err.unwrap_err().field(), "body");
        let err = Uplink::parse(UplinkKind::Exit, br#"{"price":1.5}"#);
        assert_eq!(err.unwrap_err().field(), "price");
        let mut json = entry_json(O);
        json["plate_no"] = json!("闽A 12345");
        assert_eq!(
            Uplink::parse(UplinkKind::Entry, json.to_string().as_bytes())
                .unwrap_err()
                .to_string(),
            "plate_no: must not contain spaces"
        );
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
        let report = exit_report(500, 3);
        let gate = DeviceNo::new("gate-7").unwrap();
        for b64 in [Some("aGk=".to_string()), None] {
            let u = Uplink::from_report(&report, "P001", b64, china_standard_time()).unwrap();
            let mut set = u.clone();
            set.set_device_no(Some(gate.clone()));
            assert_eq!(u.to_json_with_device(Some(&gate)), set.to_json());
            assert_eq!(u.to_json_with_device(None), u.to_json());
        }
    }
}
