//! `[[lanes]]`: each entrance or exit lane, what it can sense, and the time windows
//! its lane machine uses (see `docs/lane-logic.md`).

use super::Invalid;
use serde::Deserialize;
use std::collections::HashSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Entry,
    Exit,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Entry => "entry",
            Direction::Exit => "exit",
        }
    }
}

/// What the lane's hardware can sense. Poorer layouts tell fewer cases apart; the
/// table in `docs/lane-logic.md` says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DetectionLayout {
    /// Arming loop A, safety loop B, gate position and a camera (the full lane).
    #[default]
    LoopsGate,
    /// Camera and gate position only: one gate cycle is one vehicle.
    GateOnly,
    /// Camera and loops A/B, no gate position.
    LoopsOnly,
    /// Camera only (video trigger): one recognition is one vehicle.
    CameraOnly,
}

/// Which moment becomes `parking_time` / `away_time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimeSource {
    /// The vehicle cleared the barrier (released loop B; gate started closing on
    /// gate-only lanes; the read itself on camera-only lanes).
    #[default]
    ClearedBarrier,
    /// The plate read that identified the vehicle (falls back to the clearing time when
    /// the vehicle had no read).
    PlateRead,
}

/// What to do with a vehicle whose plate could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnreadablePlate {
    /// Report it with `placeholder_plate` and colour `pnc_01` (default).
    #[default]
    Placeholder,
    /// Count it for occupancy only; nothing is sent to the platform.
    CountOnly,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaneConfig {
    pub id: String,
    pub direction: Direction,
    /// City Brain id of this entrance/exit.
    pub port_no: String,
    #[serde(default)]
    pub layout: DetectionLayout,
    #[serde(default)]
    pub time_source: TimeSource,
    #[serde(default)]
    pub unreadable_plate: UnreadablePlate,
    #[serde(default = "default_placeholder_plate")]
    pub placeholder_plate: String,
    /// Operator name sent with this lane's reports (`operator`, at most 16 characters).
    #[serde(default)]
    pub operator: Option<String>,
    /// A plate read that arrives before its vehicle reaches loop A (or before the gate
    /// opens) is kept this long.
    #[serde(default = "default_plate_window_ms")]
    pub plate_window_ms: i64,
    /// A vehicle that reaches loop A within this time after the previous vehicle cleared,
    /// with the gate not closed in between, is a tailgater (same gate opening).
    #[serde(default = "default_tailgate_window_ms")]
    pub tailgate_window_ms: i64,
    /// A second read of the same plate within this time is the same vehicle; a quick
    /// result waits this long for its full result on camera-only lanes.
    #[serde(default = "default_double_read_window_ms")]
    pub double_read_window_ms: i64,
    /// A vehicle that cleared without a read waits this long for a late read before it
    /// is reported as unrecognised.
    #[serde(default = "default_late_plate_window_ms")]
    pub late_plate_window_ms: i64,
    /// A device link down for this long resets the lane, dropping half-seen vehicles.
    #[serde(default = "default_link_down_reset_ms")]
    pub link_down_reset_ms: i64,
}

fn default_placeholder_plate() -> String {
    "无牌车".to_string()
}
fn default_plate_window_ms() -> i64 {
    10_000
}
fn default_tailgate_window_ms() -> i64 {
    3_000
}
fn default_double_read_window_ms() -> i64 {
    5_000
}
fn default_late_plate_window_ms() -> i64 {
    3_000
}
fn default_link_down_reset_ms() -> i64 {
    10_000
}

impl LaneConfig {
    /// A lane with every optional field at its default (tests, benches).
    pub fn new(id: &str, direction: Direction, port_no: &str, layout: DetectionLayout) -> Self {
        LaneConfig {
            id: id.to_string(),
            direction,
            port_no: port_no.to_string(),
            layout,
            time_source: TimeSource::default(),
            unreadable_plate: UnreadablePlate::default(),
            placeholder_plate: default_placeholder_plate(),
            operator: None,
            plate_window_ms: default_plate_window_ms(),
            tailgate_window_ms: default_tailgate_window_ms(),
            double_read_window_ms: default_double_read_window_ms(),
            late_plate_window_ms: default_late_plate_window_ms(),
            link_down_reset_ms: default_link_down_reset_ms(),
        }
    }
}

pub fn validate_all(lanes: &[LaneConfig], out: &mut Vec<Invalid>) {
    let mut seen = HashSet::new();
    let mut ports: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for (i, lane) in lanes.iter().enumerate() {
        // The platform tells lanes apart by port_no alone: two lanes with one port_no
        // would have their entries and exits mixed up there.
        if let Some(first) = ports.insert(lane.port_no.as_str(), lane.id.as_str()) {
            out.push(Invalid::new(
                format!("lanes[{i}].port_no"),
                format!(
                    "port_no {:?} is already lane {first:?}'s: each lane needs its own",
                    lane.port_no
                ),
            ));
            ports.insert(lane.port_no.as_str(), first);
        }
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
        let n = lane.placeholder_plate.chars().count();
        if n == 0 || n > 16 {
            out.push(Invalid::new(
                format!("lanes[{i}].placeholder_plate"),
                "must be 1 to 16 characters",
            ));
        }
        if lane
            .operator
            .as_ref()
            .is_some_and(|o| o.chars().count() > 16)
        {
            out.push(Invalid::new(
                format!("lanes[{i}].operator"),
                "must be at most 16 characters",
            ));
        }
        let windows = [
            ("plate_window_ms", lane.plate_window_ms),
            ("tailgate_window_ms", lane.tailgate_window_ms),
            ("double_read_window_ms", lane.double_read_window_ms),
            ("late_plate_window_ms", lane.late_plate_window_ms),
            ("link_down_reset_ms", lane.link_down_reset_ms),
        ];
        for (key, ms) in windows {
            if !(0..=3_600_000).contains(&ms) {
                out.push(Invalid::new(
                    format!("lanes[{i}].{key}"),
                    "must be between 0 and 3600000 ms",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_keys_have_documented_defaults() {
        let lane: LaneConfig =
            toml::from_str("id = \"a\"\ndirection = \"entry\"\nport_no = \"P\"").unwrap();
        assert_eq!(lane.layout, DetectionLayout::LoopsGate);
        assert_eq!(lane.time_source, TimeSource::ClearedBarrier);
        assert_eq!(lane.unreadable_plate, UnreadablePlate::Placeholder);
        assert_eq!(lane.placeholder_plate, "无牌车");
        assert_eq!(
            (
                lane.plate_window_ms,
                lane.tailgate_window_ms,
                lane.double_read_window_ms
            ),
            (10_000, 3_000, 5_000)
        );
        assert_eq!(
            (lane.late_plate_window_ms, lane.link_down_reset_ms),
            (3_000, 10_000)
        );
    }

    #[test]
    fn bad_windows_and_placeholders_are_named_by_key() {
        let mut lane = LaneConfig::new("a", Direction::Entry, "P", DetectionLayout::CameraOnly);
        lane.late_plate_window_ms = -1;
        lane.placeholder_plate = String::new();
        let mut out = Vec::new();
        validate_all(&[lane], &mut out);
        let keys: Vec<&str> = out.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "lanes[0].placeholder_plate",
                "lanes[0].late_plate_window_ms"
            ]
        );
    }

    #[test]
    fn unknown_layout_is_refused() {
        let err = toml::from_str::<LaneConfig>(
            "id = \"a\"\ndirection = \"entry\"\nport_no = \"P\"\nlayout = \"radar\"",
        );
        assert!(err.is_err());
    }
}
