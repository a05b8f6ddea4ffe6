//! Typed requests for the four uplinks, in the field order of the spec's tables.
//! TODO(issue 2): request structs, validation, conversion from `report::Report`.

/// One request to the platform.
#[derive(Debug, Clone, PartialEq)]
pub enum Uplink {
    // Entry(EntryRequest), Exit(ExitRequest), Snapshot(SnapshotRequest), Heartbeat(HeartbeatRequest)
}
