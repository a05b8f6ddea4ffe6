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
    /// Short vehicles: how long a vehicle that left loop A without reaching loop B (with
    /// the gate open or opening, or a read waiting) is still expected on B before it
    /// counts as a turn-away. Absent: derived from `loop_gap_m` and `min_speed_kmh`,
    /// else 2000 ms.
    #[serde(default)]
    pub short_vehicle_window_ms: Option<i64>,
    /// Free distance between loop A's far edge and loop B's near edge, in metres.
    #[serde(default)]
    pub loop_gap_m: Option<f64>,
    /// The slowest a vehicle crosses the loop gap (km/h), for the derived window.
    #[serde(default = "default_min_speed_kmh")]
    pub min_speed_kmh: f64,
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
fn default_min_speed_kmh() -> f64 {
    // Creeping up to a barrier that is still rising.
    2.0
}
/// The short-vehicle window when neither it nor the loop gap is configured: a small
/// car crossing about a metre between the loops at walking pace.
pub const DEFAULT_SHORT_VEHICLE_WINDOW_MS: i64 = 2_000;

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
            short_vehicle_window_ms: None,
            loop_gap_m: None,
            min_speed_kmh: default_min_speed_kmh(),
        }
    }

    /// The short-vehicle window in effect: the configured one, else the loop gap
    /// crossed at the minimum speed (rounded up to 100 ms), else 2000 ms.
    pub fn short_vehicle_window(&self) -> i64 {
        if let Some(ms) = self.short_vehicle_window_ms {
            return ms;
        }
        match self.loop_gap_m {
            Some(gap) if self.min_speed_kmh > 0.0 && gap.is_finite() && gap >= 0.0 => {
                // metres / (km/h) = 3.6 s; the small margin keeps 2700.0000001 at 2700.
                let ms = gap * 3_600.0 / self.min_speed_kmh;
                // Validation bounds the gap and speed, so this fits easily.
                (((ms - 1e-6) / 100.0).ceil() * 100.0).clamp(0.0, 600_000.0) as i64
            }
            _ => DEFAULT_SHORT_VEHICLE_WINDOW_MS,
        }
    }
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
            (
                "short_vehicle_window_ms",
                lane.short_vehicle_window_ms.unwrap_or(0),
            ),
        ];
        for (key, ms) in windows {
            if !(0..=3_600_000).contains(&ms) {
                out.push(Invalid::new(
                    format!("lanes[{i}].{key}"),
                    "must be between 0 and 3600000 ms",
                ));
            }
        }
        if lane.loop_gap_m.is_some_and(|g| !(0.0..=20.0).contains(&g)) {
            out.push(Invalid::new(
                format!("lanes[{i}].loop_gap_m"),
                "must be between 0 and 20 metres",
            ));
        }
        if !(0.5..=30.0).contains(&lane.min_speed_kmh) {
            out.push(Invalid::new(
                format!("lanes[{i}].min_speed_kmh"),
                "must be between 0.5 and 30 km/h",
            ));
        }
        if lane.short_vehicle_window() > 60_000 {
            out.push(Invalid::new(
                format!("lanes[{i}].short_vehicle_window_ms"),
                "must be at most 60000 ms (a vehicle between the loops for longer has turned away)",
            ));
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
    fn short_vehicle_window_is_configured_or_derived_from_the_loop_gap() {
        let mut lane = LaneConfig::new("a", Direction::Entry, "P", DetectionLayout::LoopsGate);
        assert_eq!(lane.short_vehicle_window(), 2_000);
        // 1.5 m at 2 km/h (0.556 m/s) = 2.7 s.
        lane.loop_gap_m = Some(1.5);
        assert_eq!(lane.short_vehicle_window(), 2_700);
        lane.min_speed_kmh = 5.0;
        assert_eq!(lane.short_vehicle_window(), 1_100);
        lane.short_vehicle_window_ms = Some(800);
        assert_eq!(lane.short_vehicle_window(), 800);
        let parsed: LaneConfig =
            toml::from_str("id = \"a\"\ndirection = \"entry\"\nport_no = \"P\"\nloop_gap_m = 0.9")
                .unwrap();
        assert_eq!(parsed.short_vehicle_window(), 1_700);
        let mut out = Vec::new();
        lane.loop_gap_m = Some(40.0);
        lane.min_speed_kmh = 0.0;
        lane.short_vehicle_window_ms = Some(90_000);
        validate_all(&[lane], &mut out);
        let keys: Vec<&str> = out.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "lanes[0].loop_gap_m",
                "lanes[0].min_speed_kmh",
                "lanes[0].short_vehicle_window_ms"
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
