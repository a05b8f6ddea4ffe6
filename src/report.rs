//! Seam 2: lanes (and operator commands) → outbox. Reports in plain business terms:
//! nothing about SM4, URLs or the wire. The uploader turns them into
//! `platform::wire` requests at send time, so a key or spec change never rewrites
//! stored data. Stored in the outbox as JSON.

use crate::plate::{CarType, PlateColor};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// Which report of a stay. The order of the variants is the delivery order within
/// one stay: entry → entry snapshot → exit → exit snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    Entry,
    EntrySnapshot,
    Exit,
    ExitSnapshot,
}

impl ReportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Entry => "entry",
            ReportKind::EntrySnapshot => "entry_snapshot",
            ReportKind::Exit => "exit",
            ReportKind::ExitSnapshot => "exit_snapshot",
        }
    }
}

/// A vehicle entered (spec §3.2.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryReport {
    pub out_order_no: String,
    pub plate_no: String,
    pub plate_color: PlateColor,
    pub car_type: CarType,
    pub parking_time: Timestamp,
    pub port_no: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Pre-paid / booked cars only, fen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub should_pay: Option<i64>,
    pub total_spaces: i64,
    pub free_spaces: i64,
}

/// A vehicle left (spec §3.2.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitReport {
    pub out_order_no: String,
    pub plate_no: String,
    pub plate_color: PlateColor,
    pub car_type: CarType,
    pub away_time: Timestamp,
    /// Total charge of the stay, fen.
    pub price: i64,
    /// Still due, fen.
    pub should_pay: i64,
    /// Actually paid, fen.
    pub paid_fee: i64,
    pub port_no: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    pub total_spaces: i64,
    pub free_spaces: i64,
}

/// Which event a snapshot belongs to (spec §3.2.3 `event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotEvent {
    Parking,
    Away,
}

impl SnapshotEvent {
    /// The spec's name (`parking`, `away`), as the JSON writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotEvent::Parking => "parking",
            SnapshotEvent::Away => "away",
        }
    }
}

impl std::fmt::Display for SnapshotEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A report as queued in the outbox. Snapshot images are stored beside the report
/// (not in this JSON) and referenced by the outbox row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    Entry(EntryReport),
    Exit(ExitReport),
    Snapshot {
        out_order_no: String,
        event: SnapshotEvent,
    },
}

impl Report {
    pub fn out_order_no(&self) -> &str {
        match self {
            Report::Entry(e) => &e.out_order_no,
            Report::Exit(x) => &x.out_order_no,
            Report::Snapshot { out_order_no, .. } => out_order_no,
        }
    }

    pub fn kind(&self) -> ReportKind {
        match self {
            Report::Entry(_) => ReportKind::Entry,
            Report::Exit(_) => ReportKind::Exit,
            Report::Snapshot {
                event: SnapshotEvent::Parking,
                ..
            } => ReportKind::EntrySnapshot,
            Report::Snapshot {
                event: SnapshotEvent::Away,
                ..
            } => ReportKind::ExitSnapshot,
        }
    }
}
