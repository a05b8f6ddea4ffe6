//! Test fixtures shared by the store's and the uploader's unit tests: a stay as the
//! entry lane `entry-1` (port `E1`) records it and an exit as `exit-1` (port `X1`)
//! records it, so each test names only what it is about.

use super::{ExitDetails, NewStay};
use crate::lane::Fee;
use crate::plate::{CarType, PlateColor};
use crate::time::Timestamp;

/// A blue, normal car entering at `entered_at`, no fee.
pub(crate) fn new_stay(plate: &str, image: Option<Vec<u8>>, entered_at: Timestamp) -> NewStay {
    NewStay {
        plate_no: plate.into(),
        plate_color: PlateColor::Blue,
        car_type: CarType::Normal,
        lane: "entry-1".into(),
        port_no: "E1".into(),
        entered_at,
        operator: None,
        snapshot: image,
        price: None,
        should_pay: None,
    }
}

/// Leaving at `away_time` having paid `fee` (fen) in full.
pub(crate) fn exit_details(away_time: Timestamp, fee: i64, image: Option<Vec<u8>>) -> ExitDetails {
    ExitDetails {
        lane: "exit-1".into(),
        port_no: "X1".into(),
        away_time,
        fee: Fee {
            price: fee,
            should_pay: fee,
            paid_fee: fee,
        },
        operator: None,
        snapshot: image,
    }
}
