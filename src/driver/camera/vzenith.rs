//! Vzenith (臻识) HTTP push: `AlarmInfoPlate` JSON, decoded with the field paths of
//! the `vzenith-legacy-alarminfoplate` profile. Its camera opens the barrier when the
//! answer is `{"Response_AlarmInfoPlate":{"info":"ok",…}}` (vzicloud docs); the
//! bridge answers `{}`, which the camera takes as received and nothing more.

use super::push::{Ack, Reply};

pub const GATE_OPEN_FORMS: &[&str] = &["\"info\":\"ok\"", "response_alarminfoplate"];

/// The only answer: an empty JSON object.
pub fn reply(_why: Ack) -> Reply {
    Reply::ok_json("{}")
}
