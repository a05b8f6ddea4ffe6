//! QianYi (千熠) HTTP push: the `AlarmInfoPlate` JSON family, sent in GBK, with colour
//! codes 0–7 (6 yellow-green, 7 other). The camera keeps retransferring a result
//! until it gets a well-formed answer; `info: "ok"` in that answer opens the barrier,
//! `info: "no"` only stops the retransfer (inferred from the AlarmInfoPlate family's
//! documentation; see `device-profiles/qianyi-alarminfoplate.toml`).

use super::push::{Ack, Reply};

pub const GATE_OPEN_FORMS: &[&str] = &["\"info\":\"ok\"", "\"open\"", "opengate"];

/// The only answer: "received, do not open", ASCII (valid GBK).
pub fn reply(_why: Ack) -> Reply {
    Reply::ok_json(r#"{"Response_AlarmInfoPlate":{"info":"no","content":"received"}}"#)
}
