//! Seam 1: drivers → lanes. A [`RawEvent`] is a *fact* a device reported; drivers
//! never decide what it means. Events are also the journal's line format (JSON), so
//! the shape here is a documented, stable format (see README "Event format").

use crate::plate::PlateColor;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// One fact from one device, attributed to the lane the device is wired to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvent {
    /// Lane id from the site config (`[[lanes]] id`).
    pub lane: String,
    /// Device name from the site config (`[[devices]] name`).
    pub device: String,
    /// When the driver saw the fact (wall clock, after debounce).
    pub at: Timestamp,
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EventKind {
    /// A loop detector changed state (after debounce).
    Loop { which: LoopId, occupied: bool },
    /// The barrier reached (or left) a position.
    Gate { position: GatePosition },
    /// A camera recognised (or failed to recognise) a plate.
    Plate(PlateRead),
    /// A device link changed: the driver lost or regained the device.
    Link { up: bool },
    /// The device answers, but not with data the lane can use (Modbus exceptions for
    /// the reads its roles need, impossible values): `problem` names the read and the
    /// reason. `None`: its answers are usable again. The lane is as blind to a faulty
    /// device as to one that is down.
    Fault { problem: Option<String> },
    /// A lot-wide counter (a guidance system's controller) shows a new count of
    /// occupied or free spaces. Its event has no lane (`lane` is empty).
    Spaces { counted: Counted, value: i64 },
    /// The exit lane's pay terminal shows a new charge (fen): `paid` when the terminal
    /// also shows what was paid.
    PayTerminal { price: i64, paid: Option<i64> },
    /// The lot's pay system took a payment for a plate (fen), e.g. on its MQTT topic
    /// (`[lot.fee_mqtt]`); used at that plate's exit. Its event has no lane.
    Payment {
        plate_no: String,
        price: i64,
        should_pay: i64,
        paid_fee: i64,
    },
}

/// What a space count counts: a counter device's register or an occupancy topic's
/// number (`[lot.occupancy_mqtt] counts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Counted {
    #[default]
    Occupied,
    /// Free spaces (what guidance displays show): occupied = total − free.
    Free,
}

impl Counted {
    /// The occupied count `value` means in a lot of `total` spaces, before the lane
    /// task clamps it to `0..=total`.
    pub fn occupied(self, value: i64, total: i64) -> i64 {
        match self {
            Counted::Occupied => value,
            Counted::Free => total.saturating_sub(value),
        }
    }
}

/// Which loop of the lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopId {
    /// Arming / presence loop in front of the barrier.
    A,
    /// Safety / closing loop behind the barrier.
    B,
}

/// Barrier position as reported by limit switches or a controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatePosition {
    Open,
    Closed,
    Moving,
    Fault,
}

/// A plate recognition as the camera reported it, decoded from the vendor payload.
/// `Default`: no text, colour unknown, nothing else known.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlateRead {
    /// Plate text without spaces; `None` when the camera saw a vehicle but no readable
    /// plate (无牌车).
    pub text: Option<String>,
    #[serde(default)]
    pub color: PlateColor,
    /// 0–100 when the camera gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<u8>,
    /// The camera's own timestamp of the recognition, when it sends one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_time: Option<Timestamp>,
    /// A quick (preliminary) result that the full result will follow.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quick: bool,
    /// The snapshot image (JPEG/PNG bytes). Never written to the journal: the journal
    /// keeps only `image_len`.
    #[serde(skip)]
    pub image: Option<std::sync::Arc<Vec<u8>>>,
    /// Size of the image in bytes, for the journal and logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_len: Option<usize>,
    /// Made while the camera could not reach the bridge and pushed later:
    /// `device_time` (the camera's clock, which agreed with ours) is when it was made.
    /// Lanes never give such a read to the vehicle in the lane now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
    /// The camera's clock disagreed with ours beyond the tolerance: the read is timed
    /// by its arrival, whatever `device_time` says.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clock_skew: bool,
    /// What the camera's own "stored offline" flag said (Vzenith `isoffline`), before
    /// the receiver judged it into `late`. Not journalled.
    #[serde(skip)]
    pub offline: Option<bool>,
    /// The plate crop (base64 JPEG) when the camera sent one beside the scene image:
    /// kept in the journal for an operator disputing a read, never reported (the
    /// platform gets the scene). Left out above [`CROP_KEPT_MAX`] base64 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop: Option<String>,
    /// Size of that crop in bytes (also when too large to keep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop_len: Option<usize>,
}

/// Largest plate crop kept in the journal, in base64 characters (a crop is a few KB;
/// anything larger is not a crop and would bloat every journal line).
pub const CROP_KEPT_MAX: usize = 64 * 1024;

impl PlateRead {
    /// A read with text and colour only (tests, scenarios).
    pub fn text(text: &str, color: PlateColor) -> Self {
        PlateRead {
            text: Some(text.to_string()),
            color,
            ..PlateRead::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_line_round_trips_without_image_bytes() {
        let mut read = PlateRead::text("闽A12345", PlateColor::Blue);
        read.image = Some(std::sync::Arc::new(vec![1, 2, 3]));
        read.image_len = Some(3);
        let ev = RawEvent {
            lane: "entry-1".into(),
            device: "cam-1".into(),
            at: Timestamp(1_000),
            kind: EventKind::Plate(read),
        };
        let line = serde_json::to_string(&ev).unwrap();
        assert!(line.contains("\"type\":\"plate\""), "{line}");
        assert!(
            !line.contains("image\":"),
            "image bytes must not be journalled: {line}"
        );
        let back: RawEvent = serde_json::from_str(&line).unwrap();
        match back.kind {
            EventKind::Plate(p) => {
                assert_eq!(p.text.as_deref(), Some("闽A12345"));
                assert_eq!(p.image, None);
                assert_eq!(p.image_len, Some(3));
            }
            other => panic!("wrong kind {other:?}"),
        }
    }

    #[test]
    fn loop_event_format_is_stable() {
        let line = r#"{"lane":"x","device":"io","at":5,"kind":{"type":"loop","which":"a","occupied":true}}"#;
        let ev: RawEvent = serde_json::from_str(line).unwrap();
        assert_eq!(
            ev.kind,
            EventKind::Loop {
                which: LoopId::A,
                occupied: true
            }
        );
    }
}
