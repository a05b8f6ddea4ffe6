//! `[[lanes]]`: each entrance or exit lane.

use super::Invalid;
use serde::Deserialize;
use std::collections::HashSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Entry,
    Exit,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaneConfig {
    pub id: String,
    pub direction: Direction,
    /// City Brain id of this entrance/exit.
    pub port_no: String,
}

pub fn validate_all(lanes: &[LaneConfig], out: &mut Vec<Invalid>) {
    let mut seen = HashSet::new();
    for (i, lane) in lanes.iter().enumerate() {
        if lane.id.is_empty() {
            out.push(Invalid::new(format!("lanes[{i}].id"), "must not be empty"));
        } else if !seen.insert(lane.id.as_str()) {
            out.push(Invalid::new(
                format!("lanes[{i}].id"),
                format!("duplicate lane id {:?}", lane.id),
            ));
        }
        if lane.port_no.is_empty() || lane.port_no.chars().count() > 32 {
            out.push(Invalid::new(
                format!("lanes[{i}].port_no"),
                "must be 1 to 32 characters",
            ));
        }
    }
}
