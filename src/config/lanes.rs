//! `[[lanes]]`: each entrance or exit lane, what it can sense, and the time windows
//! its lane machine uses (see `docs/lane-logic.md`).

use super::devices::{DeviceConfig, Role};
use super::{Invalid, check_between, check_chars};
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

impl DetectionLayout {
    pub const ALL: [DetectionLayout; 4] = [
        DetectionLayout::LoopsGate,
        DetectionLayout::GateOnly,
        DetectionLayout::LoopsOnly,
        DetectionLayout::CameraOnly,
    ];

    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            DetectionLayout::LoopsGate => "loops_gate",
            DetectionLayout::GateOnly => "gate_only",
            DetectionLayout::LoopsOnly => "loops_only",
            DetectionLayout::CameraOnly => "camera_only",
        }
    }

    /// Whether the lane machine takes loop inputs on this layout.
    pub fn uses_loops(self) -> bool {
        matches!(
            self,
            DetectionLayout::LoopsGate | DetectionLayout::LoopsOnly
        )
    }

    /// Whether the lane machine takes gate positions on this layout.
    pub fn uses_gate(self) -> bool {
        matches!(self, DetectionLayout::LoopsGate | DetectionLayout::GateOnly)
    }
}

/// What the devices bound to one lane can sense: their lane roles and cameras. The
/// layout is derived from it, and an explicit layout is checked against it, so a lane
/// cannot wait for inputs nothing will ever send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Senses {
    /// Devices serving the lane (cameras, I/O modules, pay terminals).
    pub devices: usize,
    pub loop_a: bool,
    pub loop_b: bool,
    pub gate_open: bool,
    pub gate_closed: bool,
    pub gate_status: bool,
    pub camera: bool,
}

impl Senses {
    /// What the devices serving `lane` bind.
    pub fn of(lane: &str, devices: &[DeviceConfig]) -> Senses {
        let mut s = Senses::default();
        for d in devices.iter().filter(|d| d.lane == lane) {
            s.devices += 1;
            s.camera |= d.camera_id.is_some();
            let has = |r: Role| d.roles.contains_key(&r);
            s.loop_a |= has(Role::LoopA);
            s.loop_b |= has(Role::LoopB);
            s.gate_open |= has(Role::GateOpen);
            s.gate_closed |= has(Role::GateClosed);
            s.gate_status |= has(Role::GateStatus);
        }
        s
    }

    /// No device at all: a manual lane (entries and exits recorded with `stay`).
    pub fn is_manual(&self) -> bool {
        self.devices == 0
    }

    fn loops(&self) -> bool {
        self.loop_a && self.loop_b
    }

    /// Any gate position (loop lanes use it to tell tailgaters from a new opening).
    fn gate_position(&self) -> bool {
        self.gate_open || self.gate_closed || self.gate_status
    }

    /// The gate reports reaching Open (gate-only lanes count one vehicle per opening;
    /// a closed switch alone never says "open").
    fn gate_opening(&self) -> bool {
        self.gate_open || self.gate_status
    }

    /// The richest layout these devices can serve; `None` when nothing senses vehicles.
    pub fn derive(&self) -> Option<DetectionLayout> {
        if self.loops() && self.gate_position() {
            Some(DetectionLayout::LoopsGate)
        } else if self.loops() {
            Some(DetectionLayout::LoopsOnly)
        } else if self.gate_opening() {
            Some(DetectionLayout::GateOnly)
        } else if self.camera {
            Some(DetectionLayout::CameraOnly)
        } else {
            None
        }
    }

    /// What `layout` needs that no device of the lane binds (empty: it can be served).
    pub fn missing_for(&self, layout: DetectionLayout) -> Vec<&'static str> {
        let mut out = Vec::new();
        if layout.uses_loops() {
            if !self.loop_a {
                out.push("loop_a");
            }
            if !self.loop_b {
                out.push("loop_b");
            }
        }
        match layout {
            DetectionLayout::LoopsGate if !self.gate_position() => {
                out.push("a gate position (gate_open, gate_closed or gate_status)")
            }
            DetectionLayout::GateOnly if !self.gate_opening() => {
                out.push("gate_open or gate_status")
            }
            DetectionLayout::CameraOnly if !self.camera => out.push("a camera (camera_id)"),
            _ => {}
        }
        out
    }

    /// What the devices bind that `layout` ignores (worth a warning: a wire that
    /// cannot count a car).
    pub fn unused_by(&self, layout: DetectionLayout) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !layout.uses_loops() {
            if self.loop_a {
                out.push("loop_a");
            }
            if self.loop_b {
                out.push("loop_b");
            }
        }
        if !layout.uses_gate() {
            for (bound, name) in [
                (self.gate_open, "gate_open"),
                (self.gate_closed, "gate_closed"),
                (self.gate_status, "gate_status"),
            ] {
                if bound {
                    out.push(name);
                }
            }
        }
        out
    }

    /// The bound roles, for messages: `camera, loop_a, gate_open`, or `no lane role`.
    pub fn describe(&self) -> String {
        let names: Vec<&str> = [
            (self.camera, "camera"),
            (self.loop_a, "loop_a"),
            (self.loop_b, "loop_b"),
            (self.gate_open, "gate_open"),
            (self.gate_closed, "gate_closed"),
            (self.gate_status, "gate_status"),
        ]
        .into_iter()
        .filter_map(|(b, n)| b.then_some(n))
        .collect();
        if names.is_empty() {
            "no lane role".to_string()
        } else {
            names.join(", ")
        }
    }
}

/// Sets each lane's `layout`: the explicit one, else the one its devices can serve,
/// else the default (a manual lane: its machine only sees what is replayed into it).
pub fn resolve_layouts(lanes: &mut [LaneConfig], devices: &[DeviceConfig]) {
    for lane in lanes {
        lane.layout = lane
            .layout_set
            .or_else(|| Senses::of(&lane.id, devices).derive())
            .unwrap_or_default();
    }
}

/// An explicit layout the lane's devices cannot serve is an error: such a lane would
/// accept reads and never report. (Devices that sense no vehicle at all, with no
/// layout set, are a warning of [`LaneSummary`]: a lane being commissioned may have
/// only some of its inputs wired yet.)
pub fn validate_layouts(lanes: &[LaneConfig], devices: &[DeviceConfig], out: &mut Vec<Invalid>) {
    for (i, lane) in lanes.iter().enumerate() {
        let senses = Senses::of(&lane.id, devices);
        if senses.is_manual() {
            continue;
        }
        let serve = match senses.derive() {
            Some(d) => format!(
                "its devices ({}) can serve layout = \"{}\"",
                senses.describe(),
                d.as_str()
            ),
            None => format!(
                "its devices ({}) sense no vehicle: bind a camera, loop_a + loop_b, or gate_open/gate_status to it",
                senses.describe()
            ),
        };
        let Some(layout) = lane.layout_set else {
            continue;
        };
        let missing = senses.missing_for(layout);
        if !missing.is_empty() {
            out.push(Invalid::new(
                format!("lanes[{i}].layout"),
                format!(
                    "lane {:?}: layout {:?} needs {}, which no device of the lane binds; {serve}",
                    lane.id,
                    layout.as_str(),
                    missing.join(", "),
                ),
            ));
        }
    }
}

/// One lane as `check` and `doctor` list it: id, layout and where it comes from, plus
/// warnings about inputs that cannot count a car.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneSummary {
    pub id: String,
    pub direction: Direction,
    pub layout: DetectionLayout,
    pub senses: Senses,
    /// The layout was written in the config (else derived, or manual).
    pub explicit: bool,
    pub warnings: Vec<String>,
}

impl LaneSummary {
    pub fn of(lane: &LaneConfig, devices: &[DeviceConfig]) -> LaneSummary {
        let senses = Senses::of(&lane.id, devices);
        let mut warnings = Vec::new();
        if !senses.is_manual() && !senses.missing_for(lane.layout).is_empty() {
            warnings.push(format!(
                "will never report a vehicle: its devices ({}) sense none; bind a camera, loop_a + loop_b, or gate_open/gate_status to it, or remove its devices to make it a manual lane",
                senses.describe()
            ));
        } else if !senses.is_manual() {
            let mut unused = senses.unused_by(lane.layout);
            if senses.loop_a != senses.loop_b {
                // One loop alone cannot tell a vehicle cleared: say that, not "ignored".
                unused.retain(|r| !r.starts_with("loop_"));
                let (has, lacks) = if senses.loop_a {
                    ("loop_a", "loop_b")
                } else {
                    ("loop_b", "loop_a")
                };
                warnings.push(format!(
                    "{has} is bound without {lacks}: the loops are not used"
                ));
            }
            if !unused.is_empty() {
                warnings.push(format!(
                    "{} bound but ignored by layout {:?} (a stray input must not count cars)",
                    unused.join(", "),
                    lane.layout.as_str()
                ));
            }
            if !senses.camera && lane.layout != DetectionLayout::CameraOnly {
                warnings.push(
                    "no camera: every vehicle is reported as unreadable (placeholder plate)"
                        .to_string(),
                );
            }
        }
        LaneSummary {
            id: lane.id.clone(),
            direction: lane.direction,
            layout: lane.layout,
            senses,
            explicit: lane.layout_set.is_some(),
            warnings,
        }
    }

    /// Devices are bound but none can sense a vehicle for the lane's layout.
    pub fn never_reports(&self) -> bool {
        !self.senses.is_manual() && !self.senses.missing_for(self.layout).is_empty()
    }

    /// `entry-1 (entry): camera_only, derived from its devices (camera)`.
    pub fn line(&self) -> String {
        let how = if self.senses.is_manual() {
            return format!(
                "{} ({}): manual lane, no device",
                self.id,
                self.direction.as_str()
            );
        } else if self.explicit {
            format!("set in the config; devices: {}", self.senses.describe())
        } else {
            format!("derived from its devices ({})", self.senses.describe())
        };
        format!(
            "{} ({}): {}, {how}",
            self.id,
            self.direction.as_str(),
            self.layout.as_str()
        )
    }
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
    /// `layout` as written in the file; `None`: derived from the roles the lane's
    /// devices bind (see [`Senses::derive`]).
    #[serde(default, rename = "layout")]
    pub layout_set: Option<DetectionLayout>,
    /// The layout the lane machine uses: `layout_set`, else derived when the config is
    /// loaded ([`resolve_layouts`]); `loops_gate` for a lane without devices (manual).
    #[serde(skip)]
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
    /// This many plate reads in a row without a passage (or, on a lane with a camera,
    /// vehicles without a read) flag the lane as miswired; 0 = never.
    #[serde(default = "default_mismatch_alarm_after")]
    pub mismatch_alarm_after: u32,
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
fn default_mismatch_alarm_after() -> u32 {
    5
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
            layout_set: Some(layout),
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
            mismatch_alarm_after: default_mismatch_alarm_after(),
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
        check_chars(format!("lanes[{i}].port_no"), &lane.port_no, 32, out);
        check_chars(
            format!("lanes[{i}].placeholder_plate"),
            &lane.placeholder_plate,
            16,
            out,
        );
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
            check_between(format!("lanes[{i}].{key}"), ms, 0..=3_600_000, " ms", out);
        }
        if let Some(gap) = lane.loop_gap_m {
            check_between(
                format!("lanes[{i}].loop_gap_m"),
                gap,
                0.0..=20.0,
                " metres",
                out,
            );
        }
        check_between(
            format!("lanes[{i}].min_speed_kmh"),
            lane.min_speed_kmh,
            0.5..=30.0,
            " km/h",
            out,
        );
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

    /// A site with lane `in` (entry, `layout` line given) and lane `out` (exit, no
    /// devices), plus `devices`.
    fn site(layout: &str, devices: &str) -> Result<crate::config::SiteConfig, String> {
        let text = format!(
            "[platform]\nbase_url = \"https://x\"\napp_id = \"a\"\n[lot]\nparking_lot_no = \"L\"\ntotal_spaces = 1\n\
             [storage]\ndir = \"/tmp\"\n[mqtt]\nhost = \"127.0.0.1\"\n[[buses]]\nname = \"b\"\nport = \"/dev/x\"\n\
             [[lanes]]\nid = \"in\"\ndirection = \"entry\"\nport_no = \"P1\"\n{layout}\n\
             [[lanes]]\nid = \"out\"\ndirection = \"exit\"\nport_no = \"P2\"\n{devices}"
        );
        crate::config::SiteConfig::from_toml(&text, std::path::Path::new("site.toml"))
            .map_err(|e| e.to_string())
    }

    const CAMERA: &str = "[[devices]]\nname = \"cam\"\nprofile = \"vzenith-mqtt\"\nlane = \"in\"\ncamera_id = \"sn1\"\n";

    fn io(roles: &str) -> String {
        format!(
            "[[devices]]\nname = \"io\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"in\"\nbus = \"b\"\nroles = {{ {roles} }}\n"
        )
    }

    fn layout_of(devices: &str) -> DetectionLayout {
        let site = site("", devices).unwrap_or_else(|e| panic!("{e}"));
        site.lane("in").unwrap().layout
    }

    #[test]
    fn layout_is_derived_from_the_roles_the_devices_bind() {
        use DetectionLayout::*;
        assert_eq!(layout_of(CAMERA), CameraOnly);
        let gate = io("gate_open = \"di3\", gate_closed = \"di4\"");
        assert_eq!(layout_of(&format!("{CAMERA}{gate}")), GateOnly);
        let loops = io("loop_a = \"di1\", loop_b = \"di2\"");
        assert_eq!(layout_of(&format!("{CAMERA}{loops}")), LoopsOnly);
        let full = io("loop_a = \"di1\", loop_b = \"di2\", gate_closed = \"di4\"");
        assert_eq!(layout_of(&format!("{CAMERA}{full}")), LoopsGate);
        // One loop cannot clear a vehicle: the camera counts.
        let one_loop = io("loop_a = \"di1\"");
        assert_eq!(layout_of(&format!("{CAMERA}{one_loop}")), CameraOnly);
        let site1 = site("", &format!("{CAMERA}{one_loop}")).unwrap();
        let summary = LaneSummary::of(site1.lane("in").unwrap(), &site1.devices);
        assert_eq!(
            summary.warnings,
            ["loop_a is bound without loop_b: the loops are not used"]
        );
        // A lane without devices keeps the default and is listed as manual.
        let site = site("", CAMERA).unwrap();
        let out = site.lane("out").unwrap();
        assert_eq!(out.layout, LoopsGate);
        let summary = LaneSummary::of(out, &site.devices);
        assert_eq!(summary.line(), "out (exit): manual lane, no device");
        assert!(summary.warnings.is_empty());
        let summary = LaneSummary::of(site.lane("in").unwrap(), &site.devices);
        assert_eq!(
            summary.line(),
            "in (entry): camera_only, derived from its devices (camera)"
        );
    }

    /// Each explicit layout against devices that cannot serve it: the error names the
    /// lane, the layout, what is missing and the layout that would work.
    #[test]
    fn an_explicit_layout_the_devices_cannot_serve_is_an_error_naming_what_would_work() {
        let gate = io("gate_open = \"di3\", gate_closed = \"di4\"");
        let loops = io("loop_a = \"di1\", loop_b = \"di2\"");
        let loop_a_gate = io("loop_a = \"di1\", gate_status = \"di3\"");
        let closed_only = io("gate_closed = \"di4\"");
        let full = io("loop_a = \"di1\", loop_b = \"di2\", gate_open = \"di3\"");
        let cases: [(&str, String, &str, &str); 8] = [
            (
                "loops_gate",
                CAMERA.to_string(),
                "needs loop_a, loop_b, a gate position (gate_open, gate_closed or gate_status)",
                "its devices (camera) can serve layout = \"camera_only\"",
            ),
            (
                "loops_gate",
                format!("{CAMERA}{gate}"),
                "needs loop_a, loop_b,",
                "its devices (camera, gate_open, gate_closed) can serve layout = \"gate_only\"",
            ),
            (
                "loops_gate",
                format!("{CAMERA}{loop_a_gate}"),
                "needs loop_b,",
                "can serve layout = \"gate_only\"",
            ),
            (
                "loops_only",
                format!("{CAMERA}{gate}"),
                "needs loop_a, loop_b,",
                "can serve layout = \"gate_only\"",
            ),
            (
                "gate_only",
                format!("{CAMERA}{loops}"),
                "needs gate_open or gate_status,",
                "can serve layout = \"loops_only\"",
            ),
            (
                "gate_only",
                format!("{CAMERA}{closed_only}"),
                "needs gate_open or gate_status,",
                "its devices (camera, gate_closed) can serve layout = \"camera_only\"",
            ),
            (
                "camera_only",
                full.clone(),
                "needs a camera (camera_id),",
                "its devices (loop_a, loop_b, gate_open) can serve layout = \"loops_gate\"",
            ),
            (
                "gate_only",
                io("loop_a = \"di1\""),
                "needs gate_open or gate_status,",
                "its devices (loop_a) sense no vehicle",
            ),
        ];
        for (layout, devices, needs, serve) in cases {
            let err = site(&format!("layout = \"{layout}\""), &devices).unwrap_err();
            let head = format!("lanes[0].layout: lane \"in\": layout \"{layout}\" {needs}");
            assert!(err.contains(&head), "{layout}: {err}");
            assert!(err.contains(serve), "{layout}: {err}");
            assert!(err.starts_with("site.toml:"), "{err}");
        }
    }

    #[test]
    fn explicit_layouts_the_devices_serve_are_accepted_with_warnings_for_ignored_inputs() {
        let full = io("loop_a = \"di1\", loop_b = \"di2\", gate_open = \"di3\"");
        for layout in DetectionLayout::ALL {
            let site = site(
                &format!("layout = \"{}\"", layout.as_str()),
                &format!("{CAMERA}{full}"),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let lane = site.lane("in").unwrap();
            assert_eq!(lane.layout, layout);
            let summary = LaneSummary::of(lane, &site.devices);
            assert_eq!(
                summary.warnings.is_empty(),
                layout == DetectionLayout::LoopsGate,
                "{summary:?}"
            );
            assert!(
                summary.line().contains("set in the config"),
                "{}",
                summary.line()
            );
        }
        let site = site("layout = \"camera_only\"", &format!("{CAMERA}{full}")).unwrap();
        let summary = LaneSummary::of(site.lane("in").unwrap(), &site.devices);
        assert_eq!(
            summary.warnings,
            [
                "loop_a, loop_b, gate_open bound but ignored by layout \"camera_only\" (a stray input must not count cars)"
            ]
        );
        // A manual lane may name any layout.
        assert!(site_with_manual_layout().is_ok());
    }

    fn site_with_manual_layout() -> Result<crate::config::SiteConfig, String> {
        site("layout = \"gate_only\"", "")
    }

    #[test]
    fn devices_that_sense_no_vehicle_make_a_lane_that_says_it_will_never_report() {
        let site = site("", &io("gate_fault = \"di5\", loop_a = \"di1\"")).unwrap();
        let summary = LaneSummary::of(site.lane("in").unwrap(), &site.devices);
        assert!(summary.never_reports());
        assert!(
            summary.warnings[0]
                .starts_with("will never report a vehicle: its devices (loop_a) sense none"),
            "{summary:?}"
        );
    }

    #[test]
    fn a_lane_without_a_camera_is_warned_about_unreadable_plates() {
        let site = site(
            "",
            &io("loop_a = \"di1\", loop_b = \"di2\", gate_open = \"di3\""),
        )
        .unwrap();
        let summary = LaneSummary::of(site.lane("in").unwrap(), &site.devices);
        assert_eq!(summary.layout, DetectionLayout::LoopsGate);
        assert!(summary.warnings[0].starts_with("no camera"), "{summary:?}");
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
