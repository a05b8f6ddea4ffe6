//! Dahua ITC HTTP push: `TollgateInfo` JSON (`Picture.Plate`, `Picture.SnapInfo`,
//! base64 `Picture.NormalPic` / `CutoutPic`) and keep-alives (no `Picture`). The
//! camera resends a recognition until it is acknowledged with `{"Result": true}`;
//! the receiver acknowledges every push and drops the resends by the camera's own
//! time of the recognition. A platform answer can also carry a barrier command
//! (`OpenGate`); the bridge never sends one.

use super::push::{Ack, Reply};

pub const GATE_OPEN_FORMS: &[&str] = &["opengate", "\"open\"", "\"command\""];

/// The only answer: `Result: true`.
pub fn reply(why: Ack) -> Reply {
    match why {
        Ack::Recognition => Reply::ok_json(r#"{"Result":true,"Message":"received"}"#),
        Ack::KeepAlive => Reply::ok_json(r#"{"Result":true,"Message":"alive"}"#),
    }
}
