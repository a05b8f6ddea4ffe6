//! The values of the wire's fields, valid by construction (smoltcp's Repr): a text
//! within its length, a plate without spaces, an 8-digit integer, a time in the spec's
//! form, a base64 image under the size limit. Each is checked once, where it is built
//! (`new`/`TryFrom`, and serde's `try_from`, so the mock's parse refuses a bad value
//! with the rule it breaks); whatever holds one needs no second check. Dictionary
//! fields use the enums of `plate`/`report` directly. The limits are `spec`'s.

use crate::plate::{CarType, PlateColor};
use crate::report::SnapshotEvent;
use crate::spec;
use crate::time::Timestamp;
use chrono::FixedOffset;
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// The JSON type of a wire field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    Str,
    Int,
}

/// A type a wire field holds, and the JSON type it is written as (for the field
/// tables the mock checks a request against before reading it).
pub trait WireValue {
    const JSON: JsonType;
}

impl<T: WireValue> WireValue for Option<T> {
    const JSON: JsonType = T::JSON;
}

macro_rules! wire_values {
    ($json:ident: $($ty:ty),*) => {$(
        impl WireValue for $ty {
            const JSON: JsonType = JsonType::$json;
        }
    )*};
}

wire_values!(Str: PlateNo, WireTime, Snapshot, HeartbeatStatus, PlateColor, CarType, SnapshotEvent);
wire_values!(Int: Int8);

impl<const MAX: usize, const REQUIRED: bool> WireValue for Text<MAX, REQUIRED> {
    const JSON: JsonType = JsonType::Str;
}

/// A rule a single value breaks. The field's name is added where the value is placed
/// ([`FieldError::at`]), because one type serves several fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("required but missing or empty")]
    Missing,
    #[error("{len} characters, at most {max} allowed")]
    TooLong { len: usize, max: usize },
    #[error(
        "{value} is not an integer of at most 8 digits (0..={})",
        spec::MAX_INT8
    )]
    IntRange { value: i64 },
    #[error("{value:?} is not a time YYYY-MM-DD HH:MM:SS")]
    Time { value: String },
    #[error("{0}")]
    Format(String),
}

impl FieldError {
    /// This error as the wire error of `field`.
    pub fn at(&self, field: &str) -> super::wire::WireError {
        super::wire::WireError::Invalid {
            field: field.to_string(),
            message: self.to_string(),
        }
    }
}

/// The shared face of the string newtypes: checked `new`, borrowing accessors, and
/// serialisation that writes the text without copying it (serde's `into` would clone
/// it first: megabytes for an image).
macro_rules! string_value {
    ($name:ty) => {
        string_value!(impl[] $name);
    };
    (impl[$($generics:tt)*] $name:ty) => {
        impl<$($generics)*> $name {
            pub fn new(value: impl Into<String>) -> Result<Self, FieldError> {
                Self::try_from(value.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<$($generics)*> Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<$($generics)*> fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<$($generics)*> PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl<$($generics)*> TryFrom<&str> for $name {
            type Error = FieldError;
            fn try_from(value: &str) -> Result<Self, FieldError> {
                Self::try_from(value.to_string())
            }
        }

        impl<$($generics)*> From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
    };
}

/// Text of at most `MAX` characters; empty only when not `REQUIRED` (an optional field
/// that is present may be empty, as the spec's tables allow).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Text<const MAX: usize, const REQUIRED: bool>(String);

/// `out_order_no`: the stay's own number.
pub type OrderNo = Text<{ spec::MAX_OUT_ORDER_NO_LEN }, true>;
/// `parking_lot_no`.
pub type LotNo = Text<{ spec::MAX_LOT_NO_LEN }, true>;
/// `port_no`: the lane's gate.
pub type PortNo = Text<{ spec::MAX_PORT_NO_LEN }, true>;
/// `operator` (optional).
pub type Operator = Text<{ spec::MAX_OPERATOR_LEN }, false>;
/// `device_no` (optional, sent only when configured).
pub type DeviceNo = Text<{ spec::MAX_DEVICE_NO_LEN }, false>;

impl<const MAX: usize, const REQUIRED: bool> TryFrom<String> for Text<MAX, REQUIRED> {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, FieldError> {
        if REQUIRED && value.is_empty() {
            return Err(FieldError::Missing);
        }
        let len = value.chars().count();
        if len > MAX {
            return Err(FieldError::TooLong { len, max: MAX });
        }
        Ok(Text(value))
    }
}

/// `plate_no`: required, at most 16 characters, no spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct PlateNo(String);

impl TryFrom<String> for PlateNo {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, FieldError> {
        let Text(value) = Text::<{ spec::MAX_PLATE_NO_LEN }, true>::try_from(value)?;
        if value.chars().any(char::is_whitespace) {
            return Err(FieldError::Format("must not contain spaces".into()));
        }
        Ok(PlateNo(value))
    }
}

/// `YYYY-MM-DD HH:MM:SS`, zero-padded, a real date and time (in the lot's offset).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct WireTime(String);

impl WireTime {
    /// `at` in the lot's local time. Fails only for a time no clock gives (a year
    /// beyond 9999 or before 0).
    pub fn local(at: Timestamp, offset: FixedOffset) -> Result<Self, FieldError> {
        Self::try_from(at.format_local(offset))
    }
}

impl TryFrom<String> for WireTime {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, FieldError> {
        if value.is_empty() {
            return Err(FieldError::Missing);
        }
        let shape_ok = value.len() == 19
            && value.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                10 => b == b' ',
                13 | 16 => b == b':',
                _ => b.is_ascii_digit(),
            });
        if !shape_ok
            || chrono::NaiveDateTime::parse_from_str(&value, crate::time::WIRE_FORMAT).is_err()
        {
            return Err(FieldError::Time { value });
        }
        Ok(WireTime(value))
    }
}

/// `snapshot`: non-empty standard base64 (with `=` padding), fewer than
/// [`spec::MAX_SNAPSHOT_LEN`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Snapshot(String);

impl Snapshot {
    /// An image as the platform wants it. The caller keeps it under the limit (about
    /// 375 KB of JPEG) by compressing first; a larger one is refused here.
    pub fn encode(image: &[u8]) -> Result<Self, FieldError> {
        Self::try_from(snapshot_base64(image))
    }

    /// Characters of base64.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<String> for Snapshot {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, FieldError> {
        if value.is_empty() {
            return Err(FieldError::Missing);
        }
        if value.len() >= spec::MAX_SNAPSHOT_LEN {
            return Err(FieldError::Format(format!(
                "{} characters of base64; must be fewer than {} (the spec's <500K)",
                value.len(),
                spec::MAX_SNAPSHOT_LEN
            )));
        }
        if !is_standard_base64(value.as_bytes()) {
            return Err(FieldError::Format("not standard base64".into()));
        }
        Ok(Snapshot(value))
    }
}

string_value!(impl[const MAX: usize, const REQUIRED: bool] Text<MAX, REQUIRED>);
string_value!(PlateNo);
string_value!(WireTime);
string_value!(Snapshot);

/// An `int` field of width 8: `0..=99999999` (fen for amounts, spaces for counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Int8(i64);

/// An amount in fen (`price`, `should_pay`, `paid_fee`).
pub type Fen = Int8;
/// A count of spaces (`total_spaces`, `free_spaces`).
pub type Count = Int8;

impl Int8 {
    pub fn new(value: i64) -> Result<Self, FieldError> {
        Self::try_from(value)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for Int8 {
    type Error = FieldError;
    fn try_from(value: i64) -> Result<Self, FieldError> {
        if !(0..=spec::MAX_INT8).contains(&value) {
            return Err(FieldError::IntRange { value });
        }
        Ok(Int8(value))
    }
}

impl From<Int8> for i64 {
    fn from(v: Int8) -> i64 {
        v.0
    }
}

impl fmt::Display for Int8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The heartbeat's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeartbeatStatus {
    /// The lot's devices answer.
    Alive,
    /// Every device of some lane is unreachable.
    Lost,
}

impl HeartbeatStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HeartbeatStatus::Alive => "alive",
            HeartbeatStatus::Lost => "lost",
        }
    }
}

impl fmt::Display for HeartbeatStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An image as the platform wants it: standard base64 with padding, unchecked (see
/// [`Snapshot::encode`] for the checked form).
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
