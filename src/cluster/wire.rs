//! What travels between the nodes of a lot over MQTT. JSON, versioned, and defined
//! here only: a passage ([`PassageMsg`], its snapshot appended as raw bytes after the
//! JSON line), the lot node's acknowledgement ([`AckMsg`]), each node's health
//! ([`NodeHealth`], retained) and the lot's state ([`LotState`], retained).
//!
//! Topics (`{prefix}/{lot}/…`): `passage/{node}` and `ack/{node}` (QoS 1), `node/{node}`
//! and `state` (QoS 1, retained).

use crate::config::Direction;
use crate::lane::machine::{Passage, PassageCase, PassagePlate};
use crate::plate::PlateColor;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The wire format's version; a node refuses messages of another.
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("not a cluster message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("wire version {0} is not {VERSION}: upgrade every node of the lot to the same release")]
    Version(u32),
}

/// Topic names of one lot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    base: String,
}

impl Topics {
    pub fn new(prefix: &str, lot: &str) -> Self {
        Topics {
            base: format!("{prefix}/{lot}"),
        }
    }
    pub fn passage(&self, node: &str) -> String {
        format!("{}/passage/{node}", self.base)
    }
    pub fn passages(&self) -> String {
        format!("{}/passage/+", self.base)
    }
    pub fn ack(&self, node: &str) -> String {
        format!("{}/ack/{node}", self.base)
    }
    pub fn node(&self, node: &str) -> String {
        format!("{}/node/{node}", self.base)
    }
    pub fn nodes(&self) -> String {
        format!("{}/node/+", self.base)
    }
    pub fn state(&self) -> String {
        format!("{}/state", self.base)
    }
    /// The node name at the end of a `passage/{node}` or `node/{node}` topic.
    pub fn node_of<'a>(&self, topic: &'a str) -> Option<&'a str> {
        topic.strip_prefix(&self.base)?.rsplit('/').next()
    }
}

/// A passage as it travels: [`Passage`] without its image bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WirePassage {
    pub lane: String,
    pub direction: Direction,
    pub at: Timestamp,
    pub cleared_at: Timestamp,
    #[serde(default)]
    pub plate: Option<WirePlate>,
    /// `normal`, `tailgate`, `late_plate`, `unrecognised`.
    pub case: String,
    #[serde(default)]
    pub tailgate: bool,
    #[serde(default)]
    pub inferred: bool,
    #[serde(default)]
    pub trailer: bool,
    #[serde(default)]
    pub tractor: Option<String>,
    #[serde(default)]
    pub snapshot_len: Option<usize>,
    #[serde(default)]
    pub late: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WirePlate {
    pub text: String,
    pub color: PlateColor,
    #[serde(default)]
    pub confidence: Option<u8>,
    pub read_at: Timestamp,
}

fn case_name(c: PassageCase) -> &'static str {
    match c {
        PassageCase::Normal => "normal",
        PassageCase::Tailgate => "tailgate",
        PassageCase::LatePlateAttached => "late_plate",
        PassageCase::Unrecognised => "unrecognised",
    }
}

fn case_of(s: &str) -> PassageCase {
    match s {
        "tailgate" => PassageCase::Tailgate,
        "late_plate" => PassageCase::LatePlateAttached,
        "unrecognised" => PassageCase::Unrecognised,
        // A case a newer node knows: the planner does not branch on it.
        _ => PassageCase::Normal,
    }
}

impl From<&Passage> for WirePassage {
    fn from(p: &Passage) -> Self {
        WirePassage {
            lane: p.lane.clone(),
            direction: p.direction,
            at: p.at,
            cleared_at: p.cleared_at,
            plate: p.plate.as_ref().map(|x| WirePlate {
                text: x.text.clone(),
                color: x.color,
                confidence: x.confidence,
                read_at: x.read_at,
            }),
            case: case_name(p.case).to_string(),
            tailgate: p.tailgate,
            inferred: p.inferred,
            trailer: p.trailer,
            tractor: p.tractor.clone(),
            snapshot_len: p.snapshot.as_ref().map(|s| s.len()).or(p.snapshot_len),
            late: p.late,
        }
    }
}

impl WirePassage {
    /// The passage, with its image when it still has one.
    pub fn to_passage(&self, image: Option<Vec<u8>>) -> Passage {
        Passage {
            lane: self.lane.clone(),
            direction: self.direction,
            at: self.at,
            cleared_at: self.cleared_at,
            plate: self.plate.as_ref().map(|x| PassagePlate {
                text: x.text.clone(),
                color: x.color,
                confidence: x.confidence,
                read_at: x.read_at,
            }),
            case: case_of(&self.case),
            tailgate: self.tailgate,
            inferred: self.inferred,
            trailer: self.trailer,
            tractor: self.tractor.clone(),
            snapshot_len: image.as_ref().map(Vec::len),
            snapshot: image.map(Arc::new),
            late: self.late,
        }
    }
}

/// One passage from a lane node's queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassageMsg {
    pub v: u32,
    pub node: String,
    /// The queue's identity: a new queue file (a replaced PC) starts a new epoch.
    pub epoch: String,
    pub seq: i64,
    /// The oldest passage still in the queue when this was sent: everything before it
    /// was acknowledged, so the lot node need not wait for it.
    pub oldest: i64,
    pub queued_at: Timestamp,
    pub passage: WirePassage,
}

impl PassageMsg {
    /// JSON line, then the image bytes.
    pub fn encode(&self, image: Option<&[u8]>) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        let mut out = serde_json::to_vec(self).unwrap_or_default();
        out.push(b'\n');
        if let Some(img) = image {
            out.extend_from_slice(img);
        }
        out
    }

    pub fn decode(payload: &[u8]) -> Result<(PassageMsg, Option<Vec<u8>>), WireError> {
        let (head, image) = match payload.iter().position(|b| *b == b'\n') {
            Some(i) => (&payload[..i], &payload[i + 1..]),
            None => (payload, &[][..]),
        };
        let msg: PassageMsg = serde_json::from_slice(head)?;
        if msg.v != VERSION {
            return Err(WireError::Version(msg.v));
        }
        Ok((msg, (!image.is_empty()).then(|| image.to_vec())))
    }
}

/// The lot node's answer: every passage of `epoch` up to `upto` is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckMsg {
    pub v: u32,
    pub epoch: String,
    pub upto: i64,
}

/// One device of a lane node, for the lot node's heartbeat and status page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireDevice {
    pub name: String,
    pub lane: String,
    pub up: bool,
    pub since: Timestamp,
}

/// A node's health (retained; the broker publishes `online: false` as its will).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeHealth {
    pub v: u32,
    pub node: String,
    pub online: bool,
    pub at: Timestamp,
    #[serde(default)]
    pub lanes: Vec<String>,
    #[serde(default)]
    pub queue_depth: u64,
    #[serde(default)]
    pub oldest_queued_at: Option<Timestamp>,
    #[serde(default)]
    pub last_passage_at: Option<Timestamp>,
    #[serde(default)]
    pub devices: Vec<WireDevice>,
}

/// One node as the lot node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeLine {
    pub node: String,
    pub online: bool,
    pub queue_depth: u64,
    pub last_passage_at: Option<Timestamp>,
    pub last_seq: i64,
    pub seen_at: Option<Timestamp>,
}

/// The lot as the lot node knows it (retained).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LotState {
    pub v: u32,
    pub lot: String,
    pub at: Timestamp,
    pub occupied: i64,
    pub total: i64,
    pub free: i64,
    #[serde(default)]
    pub held_exits: u64,
    #[serde(default)]
    pub nodes: Vec<NodeLine>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passage_with_its_image_survives_the_wire() {
        let p = Passage {
            lane: "exit-2".into(),
            direction: Direction::Exit,
            at: Timestamp(1_700_000_000_000),
            cleared_at: Timestamp(1_700_000_000_100),
            plate: Some(PassagePlate {
                text: "闽A12345".into(),
                color: PlateColor::Blue,
                confidence: Some(91),
                read_at: Timestamp(1_699_999_999_000),
            }),
            case: PassageCase::LatePlateAttached,
            tailgate: false,
            inferred: true,
            trailer: false,
            tractor: None,
            snapshot: Some(Arc::new(vec![0xff, 0xd8, b'\n', 0, 1])),
            snapshot_len: Some(5),
            late: false,
        };
        let msg = PassageMsg {
            v: VERSION,
            node: "north".into(),
            epoch: "e1".into(),
            seq: 7,
            oldest: 5,
            queued_at: Timestamp(1),
            passage: WirePassage::from(&p),
        };
        let bytes = msg.encode(p.snapshot.as_deref().map(Vec::as_slice));
        let (back, image) = PassageMsg::decode(&bytes).unwrap();
        assert_eq!(back, msg);
        assert_eq!(back.passage.to_passage(image), p);
        let bad = String::from_utf8_lossy(&bytes).replace("\"v\":1", "\"v\":9");
        assert!(matches!(
            PassageMsg::decode(bad.as_bytes()),
            Err(WireError::Version(9)) | Err(WireError::Json(_))
        ));
    }

    #[test]
    fn topics_name_the_node() {
        let t = Topics::new("parking-bridge", "P1");
        assert_eq!(t.passage("north"), "parking-bridge/P1/passage/north");
        assert_eq!(t.node_of("parking-bridge/P1/passage/north"), Some("north"));
        assert_eq!(t.node_of("other/P1/passage/north"), None);
    }
}
