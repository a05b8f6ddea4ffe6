//! Builders shared by the lane's unit tests: the events a lane's I/O module (device
//! `io`) sends, so each test spells out only the times and facts it is about.

use crate::event::{EventKind, LoopId, RawEvent};
use crate::time::Timestamp;

/// An event of device `io` on `lane` at `at` (ms).
pub(crate) fn io_event(lane: &str, at: i64, kind: EventKind) -> RawEvent {
    RawEvent {
        lane: lane.into(),
        device: "io".into(),
        at: Timestamp(at),
        kind,
    }
}

/// Loop `which` became occupied or free.
pub(crate) fn lp(which: LoopId, occupied: bool) -> EventKind {
    EventKind::Loop { which, occupied }
}
