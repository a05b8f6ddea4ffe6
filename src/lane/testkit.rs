//! Builders shared by the lane's (and the cluster's) unit tests: the events a lane's I/O
//! module (device `io`) sends, an exit passage and an open stay, so each test spells out
//! only the times and facts it is about.

use super::machine::Passage;
use super::stays::OpenStay;
use crate::config::Direction;
use crate::event::{EventKind, LoopId, RawEvent};
use crate::plate::{CarType, PlateColor};
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

/// A vehicle read as `plate` leaving through exit lane `lane` at `at`.
pub(crate) fn exit_on(lane: &str, plate: &str, at: i64) -> Passage {
    Passage {
        lane: lane.into(),
        ..Passage::sample(Direction::Exit, Some(plate), Timestamp(at))
    }
}

/// Stay `no` of a blue, normal car `plate` that entered at `at`.
pub(crate) fn open_stay(no: &str, plate: &str, at: i64, placeholder: bool) -> OpenStay {
    OpenStay {
        out_order_no: no.into(),
        plate_no: plate.into(),
        plate_color: PlateColor::Blue,
        car_type: CarType::Normal,
        entered_at: Timestamp(at),
        placeholder,
    }
}
