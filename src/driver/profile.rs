//! Device profiles: one TOML file per vendor model saying how to read the device and
//! what each value means. Schema documented field by field in
//! `device-profiles/README.md`; parsed like the site config (serde
//! `deny_unknown_fields` → pure `validate()` → errors with file, line and key).
//!
//! The shipped profiles are compiled into the binary too, so a bridge started from
//! any directory finds them; a file of the same name in a profile directory wins.

use crate::config::{Attachment, Invalid, Located, Role, SiteConfig, StringList, join_lines};
use crate::plate::PlateColor;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

/// The profiles shipped in `device-profiles/`, built into the binary.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "waveshare-modbus-rtu-io-8ch",
        include_str!("../../device-profiles/waveshare-modbus-rtu-io-8ch.toml"),
    ),
    (
        "advantech-adam-4051",
        include_str!("../../device-profiles/advantech-adam-4051.toml"),
    ),
    (
        "generic-barrier-holding-status",
        include_str!("../../device-profiles/generic-barrier-holding-status.toml"),
    ),
    (
        "generic-modbus-tcp-di-gateway",
        include_str!("../../device-profiles/generic-modbus-tcp-di-gateway.toml"),
    ),
    (
        "generic-guidance-counter",
        include_str!("../../device-profiles/generic-guidance-counter.toml"),
    ),
    (
        "generic-pay-terminal",
        include_str!("../../device-profiles/generic-pay-terminal.toml"),
    ),
    (
        "vzenith-mqtt",
        include_str!("../../device-profiles/vzenith-mqtt.toml"),
    ),
    (
        "vzenith-legacy-alarminfoplate",
        include_str!("../../device-profiles/vzenith-legacy-alarminfoplate.toml"),
    ),
    (
        "hx-mqtt",
        include_str!("../../device-profiles/hx-mqtt.toml"),
    ),
    (
        "hikvision-isapi-anpr",
        include_str!("../../device-profiles/hikvision-isapi-anpr.toml"),
    ),
    (
        "dahua-itc-tollgate",
        include_str!("../../device-profiles/dahua-itc-tollgate.toml"),
    ),
    (
        "qianyi-alarminfoplate",
        include_str!("../../device-profiles/qianyi-alarminfoplate.toml"),
    ),
];

/// Where profiles are looked up when the site config names no directory.
pub const DEFAULT_DIRS: &[&str] = &[
    "device-profiles",
    "/usr/share/parking-bridge/device-profiles",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Must equal the file stem; devices refer to the profile by it.
    pub name: String,
    pub vendor: String,
    pub model: String,
    /// Where the facts in this profile come from (manual, public doc, assumption).
    pub source: String,
    #[serde(default)]
    pub modbus: Option<ModbusProfile>,
    #[serde(default)]
    pub camera: Option<CameraProfile>,
}

/// Which transports a Modbus profile can be used over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Rtu,
    Tcp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusProfile {
    pub transports: Vec<Transport>,
    #[serde(default = "one")]
    pub default_slave: u8,
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Extra attempts after a timeout before the slave is isolated.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// How long an unanswering slave is left out of the poll cycle.
    #[serde(default = "default_isolate_ms")]
    pub isolate_ms: u64,
    /// A change must hold this long: confirmed by `1 + ceil(debounce_ms / poll_ms)`
    /// equal reads in a row, so it comes out at most one poll period later than that.
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
    /// Instead of `debounce_ms`: equal consecutive reads that confirm a change
    /// (1 = the first read that sees it).
    #[serde(default)]
    pub debounce_reads: Option<u32>,
    /// Silence the device needs between frames, ms (on top of the 3.5-character time).
    #[serde(default)]
    pub inter_frame_delay_ms: u64,
    /// How many of each the model has, from its documentation: `check` warns when the
    /// read plan goes past them (the device would answer exception 02).
    #[serde(default)]
    pub size: Option<ModelSize>,
    pub points: Vec<Point>,
}

/// A model's documented number of coils, inputs and registers (addresses 0 … n−1).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSize {
    #[serde(default)]
    pub coils: Option<u32>,
    #[serde(default)]
    pub discrete_inputs: Option<u32>,
    #[serde(default)]
    pub holding_registers: Option<u32>,
    #[serde(default)]
    pub input_registers: Option<u32>,
}

impl ModelSize {
    /// The documented count for a read function, when the documentation gives one.
    pub fn of(&self, function: crate::driver::modbus::Function) -> Option<u32> {
        use crate::driver::modbus::Function::*;
        match function {
            ReadCoils => self.coils,
            ReadDiscreteInputs => self.discrete_inputs,
            ReadHoldingRegisters => self.holding_registers,
            ReadInputRegisters => self.input_registers,
        }
    }
}

/// Reads in a profile's plan that go past the model's documented size, as warnings for
/// every device using it (`devices[i].profile`). Pure.
pub fn plan_warnings(config: &SiteConfig, lib: &ProfileLibrary) -> Vec<Invalid> {
    let mut out = Vec::new();
    for (i, d) in config.devices.iter().enumerate() {
        let Some(p) = lib.get(&d.profile) else {
            continue;
        };
        let Some((m, size)) = p.modbus.as_ref().and_then(|m| Some((m, m.size?))) else {
            continue;
        };
        for req in crate::driver::modbus::plan(&m.points) {
            let Some(n) = size.of(req.function) else {
                continue;
            };
            let end = u32::from(req.address) + u32::from(req.count);
            if end > n {
                out.push(Invalid::new(
                    format!("devices[{i}].profile"),
                    format!(
                        "profile {:?} reads function {} addresses {}–{}, but the {} has {n} (documented): the device will answer exception 02 and show faulty",
                        p.name,
                        req.function.code(),
                        req.address,
                        end - 1,
                        p.model
                    ),
                ));
            }
        }
    }
    out
}

fn one() -> u8 {
    1
}
fn default_poll_ms() -> u64 {
    100
}
fn default_timeout_ms() -> u64 {
    200
}
fn default_retries() -> u32 {
    2
}
fn default_isolate_ms() -> u64 {
    5_000
}
fn default_debounce_ms() -> u64 {
    100
}

/// A named value on the device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    pub name: String,
    /// Modbus function code: 1 coils, 2 discrete inputs, 3 holding registers, 4 input
    /// registers. Nothing else exists: the bridge only reads.
    pub function: u8,
    /// 0-based protocol address (register `40001` is address 0 with function 3).
    pub address: u16,
    #[serde(rename = "type")]
    pub kind: PointKind,
    /// For `word_bit`: bit 0 (LSB) to 15.
    #[serde(default)]
    pub bit: Option<u8>,
    /// Active-low input: report the opposite of the raw bit.
    #[serde(default)]
    pub invert: bool,
    /// For `enum`: raw value (as a string key) → `open`, `closed`, `moving` or `fault`.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    /// Byte order inside each 16-bit word as the device sends it.
    #[serde(default)]
    pub byte_order: ByteOrder,
    /// For 32-bit values: which register holds the high word.
    #[serde(default)]
    pub word_order: WordOrder,
    #[serde(default = "unit_scale")]
    pub scale: f64,
    /// A counter that only counts up (barrier cycles): a lower value than the last one
    /// read is impossible and makes the device `faulty`.
    #[serde(default)]
    pub monotonic: bool,
    #[serde(default)]
    pub description: String,
}

fn unit_scale() -> f64 {
    1.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointKind {
    /// One coil / discrete input (function 1 or 2).
    Bit,
    /// One bit of a register (function 3 or 4).
    WordBit,
    /// A register whose value maps to a gate position (function 3 or 4).
    Enum,
    /// A plain number: exported as a metric; an event only when bound to a number
    /// role (`occupied_count`, `free_count`, `fee_price`, `fee_paid`).
    U16,
    I16,
    /// Two registers.
    U32,
}

impl PointKind {
    pub fn is_boolean(self) -> bool {
        matches!(self, PointKind::Bit | PointKind::WordBit)
    }
    pub fn is_number(self) -> bool {
        matches!(self, PointKind::U16 | PointKind::I16 | PointKind::U32)
    }
    /// Registers (or bits) the point occupies.
    pub fn width(self) -> u16 {
        if self == PointKind::U32 { 2 } else { 1 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ByteOrder {
    /// Modbus standard: high byte first.
    #[default]
    Big,
    Swapped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WordOrder {
    #[default]
    HighFirst,
    LowFirst,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraProfile {
    /// Charset of the whole payload: `utf8` or `gbk` (GB2312 is a subset of GBK).
    #[serde(default)]
    pub charset: Charset,
    /// A recognition identical to one already sent (same text, colour, quick flag)
    /// within this window is dropped (QoS 1 redelivery, repeated pushes).
    #[serde(default = "default_dedup_ms")]
    pub dedup_ms: u64,
    /// No message (heartbeat or result) for this long → the link is reported down.
    /// 0 for cameras without keep-alives: their link follows the broker connection.
    #[serde(default = "default_link_timeout_ms")]
    pub link_timeout_ms: u64,
    /// HTTP push cameras: whose push this is, which decides how a request is unpacked
    /// (JSON, or Hikvision's multipart/XML) and the only acknowledgement it gets.
    /// Absent: a Vzenith-style JSON push.
    #[serde(default)]
    pub push: Option<crate::driver::camera::push::PushVendor>,
    /// MQTT topics; push-only profiles leave them out.
    #[serde(default)]
    pub topics: CameraTopics,
    #[serde(default)]
    pub classify: Classify,
    /// Where a payload names the camera that sent it (`serialno`): paths tried in
    /// order. Cameras sharing one result topic are told apart by it (its value is the
    /// device's `camera_id`).
    #[serde(default)]
    pub route_by: StringList,
    pub fields: CameraFields,
}

fn default_dedup_ms() -> u64 {
    3_000
}
fn default_link_timeout_ms() -> u64 {
    15_000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Charset {
    #[default]
    Utf8,
    Gbk,
}

/// MQTT topic templates; `{id}` is the device's `camera_id`. Every one can be replaced
/// per device (`[[devices]] topics`). Push-only profiles leave them out.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CameraTopics {
    pub result: String,
    #[serde(default)]
    pub quick: Option<String>,
    /// Keep-alive topics: one or a list (vendors publish keep-alives under more than
    /// one topic form); `keep_alive` is accepted as the key too.
    #[serde(default, alias = "keep_alive")]
    pub heartbeat: StringList,
}

/// How to tell a recognition from other messages on the result topic.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Classify {
    /// A message is a recognition only if this path exists.
    #[serde(default)]
    pub present: Option<String>,
    /// … and/or only if this path holds `equals` (compared as text).
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub equals: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraFields {
    /// Prefix of every other path (e.g. `payload.AlarmInfoPlate.result.PlateResult`).
    #[serde(default)]
    pub root: String,
    pub text: String,
    #[serde(default)]
    pub text_encoding: TextEncoding,
    /// Charset of the text after base64 decoding.
    #[serde(default)]
    pub text_charset: Charset,
    /// Texts that mean "vehicle seen, plate unreadable" (besides the empty text).
    #[serde(default)]
    pub unreadable: Vec<String>,
    /// Paths tried in order; the first present one gives the colour code.
    #[serde(default)]
    pub color: Vec<String>,
    /// Vendor colour code (as text) → `pnc_01` … `pnc_08`; unlisted codes → `pnc_01`.
    #[serde(default)]
    pub color_map: BTreeMap<String, String>,
    #[serde(default)]
    pub confidence: Option<String>,
    #[serde(default)]
    pub device_time: Option<String>,
    #[serde(default)]
    pub device_time_unit: TimeUnit,
    /// Base64 image (JPEG) paths tried in order: the scene first, the plate crop as a
    /// fallback (the platform and an operator need the vehicle, not its plate).
    #[serde(default)]
    pub image: Vec<String>,
    /// Multipart pushes: names of the picture parts tried in order, after `image`
    /// (the scene before the plate crop).
    #[serde(default)]
    pub image_parts: Vec<String>,
    /// Colour words some cameras put in front of the plate text ("蓝京A12345"):
    /// prefix → `pnc_0N`. The prefix is removed; its colour is used when the colour
    /// field gives none.
    #[serde(default)]
    pub color_prefix: BTreeMap<String, String>,
    /// The camera's own "stored while the server was unreachable" flag (Vzenith
    /// `isoffline`): 1/true means offline, 0/false means live.
    #[serde(default)]
    pub offline: Option<String>,
    /// Which of those paths hold the plate crop. A crop sent beside the scene is kept
    /// in the journal only (`crop`); it is reported only when no scene came.
    #[serde(default)]
    pub crop: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TextEncoding {
    #[default]
    Plain,
    Base64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    #[default]
    S,
    Ms,
    /// ISO 8601 / RFC 3339 text (`2024-05-01T08:30:00+08:00`); without an offset, the
    /// lot's local time.
    Iso8601,
    /// `YYYY-MM-DD HH:MM:SS[.fff]` in the lot's local time (Dahua `AccurateTime`).
    Local,
}

/// Gate positions an `enum` point may map to.
pub fn parse_position(text: &str) -> Option<crate::event::GatePosition> {
    use crate::event::GatePosition::*;
    match text {
        "open" => Some(Open),
        "closed" => Some(Closed),
        "moving" => Some(Moving),
        "fault" => Some(Fault),
        _ => None,
    }
}

impl Profile {
    pub fn point(&self, name: &str) -> Option<&Point> {
        self.modbus.as_ref()?.points.iter().find(|p| p.name == name)
    }

    /// Every rule that the types alone cannot express. Pure.
    pub fn validate(&self, stem: &str) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.name != stem {
            out.push(Invalid::new(
                "name",
                format!("must equal the file name {stem:?}"),
            ));
        }
        match (&self.modbus, &self.camera) {
            (Some(m), None) => validate_modbus(m, &mut out),
            (None, Some(c)) => validate_camera(c, &mut out),
            _ => out.push(Invalid::new(
                "name",
                "a profile has exactly one of [modbus] or [camera]",
            )),
        }
        out
    }
}

fn validate_modbus(m: &ModbusProfile, out: &mut Vec<Invalid>) {
    if m.transports.is_empty() {
        out.push(Invalid::new(
            "modbus.transports",
            "list at least one of \"rtu\", \"tcp\"",
        ));
    }
    if !(1..=247).contains(&m.default_slave) {
        out.push(Invalid::new("modbus.default_slave", "must be 1 to 247"));
    }
    if !(10..=60_000).contains(&m.poll_ms) {
        out.push(Invalid::new("modbus.poll_ms", "must be 10 to 60000"));
    }
    if !(10..=10_000).contains(&m.timeout_ms) {
        out.push(Invalid::new("modbus.timeout_ms", "must be 10 to 10000"));
    }
    if m.retries > 10 {
        out.push(Invalid::new("modbus.retries", "must be at most 10"));
    }
    if m.debounce_ms > 10_000 {
        out.push(Invalid::new("modbus.debounce_ms", "must be at most 10000"));
    }
    if m.debounce_reads.is_some_and(|n| !(1..=100).contains(&n)) {
        out.push(Invalid::new("modbus.debounce_reads", "must be 1 to 100"));
    }
    if m.inter_frame_delay_ms > 1000 {
        out.push(Invalid::new(
            "modbus.inter_frame_delay_ms",
            "must be at most 1000",
        ));
    }
    if m.points.is_empty() {
        out.push(Invalid::new("modbus.points", "list at least one point"));
    }
    let mut names = std::collections::HashSet::new();
    for (i, p) in m.points.iter().enumerate() {
        let key = |f: &str| format!("modbus.points[{i}].{f}");
        if p.name.is_empty() || !names.insert(p.name.as_str()) {
            out.push(Invalid::new(key("name"), "must be non-empty and unique"));
        }
        if !(1..=4).contains(&p.function) {
            out.push(Invalid::new(
                key("function"),
                "only read functions 1 to 4 exist",
            ));
            continue;
        }
        let bit_fc = p.function <= 2;
        match p.kind {
            PointKind::Bit if !bit_fc => out.push(Invalid::new(
                key("type"),
                "`bit` needs function 1 or 2; use `word_bit` for registers",
            )),
            PointKind::Bit => {}
            _ if bit_fc => out.push(Invalid::new(
                key("type"),
                "functions 1 and 2 read bits: use type = \"bit\"",
            )),
            PointKind::WordBit => {
                if p.bit.is_none_or(|b| b >= 16) {
                    out.push(Invalid::new(key("bit"), "`word_bit` needs bit = 0 to 15"));
                }
            }
            PointKind::Enum => {
                if p.values.is_empty() {
                    out.push(Invalid::new(key("values"), "`enum` needs a values table"));
                }
                for (raw, meaning) in &p.values {
                    if raw.parse::<u16>().is_err() {
                        out.push(Invalid::new(
                            key("values"),
                            format!("key {raw:?} is not a number 0 to 65535"),
                        ));
                    }
                    if parse_position(meaning).is_none() {
                        out.push(Invalid::new(
                            key("values"),
                            format!("{meaning:?} is not one of open, closed, moving, fault"),
                        ));
                    }
                }
            }
            PointKind::U16 | PointKind::I16 | PointKind::U32 => {}
        }
        if p.bit.is_some() && p.kind != PointKind::WordBit {
            out.push(Invalid::new(
                key("bit"),
                "only `word_bit` points have a bit",
            ));
        }
        if p.monotonic && !p.kind.is_number() {
            out.push(Invalid::new(
                key("monotonic"),
                "only number points (u16, i16, u32) can be monotonic counters",
            ));
        }
        if p.invert && !p.kind.is_boolean() {
            out.push(Invalid::new(
                key("invert"),
                "only bit points can be inverted",
            ));
        }
        if u32::from(p.address) + u32::from(p.kind.width()) > 0x1_0000 {
            out.push(Invalid::new(
                key("address"),
                "point runs past address 65535",
            ));
        }
        if !p.scale.is_finite() || p.scale == 0.0 {
            out.push(Invalid::new(
                key("scale"),
                "must be a finite non-zero number",
            ));
        }
    }
}

fn validate_camera(c: &CameraProfile, out: &mut Vec<Invalid>) {
    if c.push.is_none() && c.topics.result.is_empty() {
        out.push(Invalid::new(
            "camera.topics.result",
            "an MQTT camera profile needs a result topic (push-only profiles set `push`)",
        ));
    }
    let result = Some(&c.topics.result).filter(|t| !t.is_empty() || c.push.is_none());
    let topics = result
        .map(|t| ("camera.topics.result", t))
        .into_iter()
        .chain(c.topics.quick.iter().map(|t| ("camera.topics.quick", t)))
        .chain(
            c.topics
                .heartbeat
                .0
                .iter()
                .map(|t| ("camera.topics.heartbeat", t)),
        );
    for (key, t) in topics {
        if t.is_empty() || t.contains(['+', '#']) {
            out.push(Invalid::new(
                key,
                "must be a topic template without wildcards (use {id})",
            ));
        }
    }
    if c.fields.text.is_empty() {
        out.push(Invalid::new("camera.fields.text", "must not be empty"));
    }
    if let Some(path) = c.fields.crop.iter().find(|p| !c.fields.image.contains(p)) {
        out.push(Invalid::new(
            "camera.fields.crop",
            format!("{path:?} is not one of the `image` paths (list the crop there too, after the scene)"),
        ));
    }
    for (code, pnc) in c.fields.color_map.iter().chain(&c.fields.color_prefix) {
        if PlateColor::from_code(pnc).is_none() {
            out.push(Invalid::new(
                "camera.fields.color_map",
                format!("{code:?} maps to {pnc:?}, expected pnc_01 … pnc_08"),
            ));
        }
    }
    if c.classify.path.is_some() != c.classify.equals.is_some() {
        out.push(Invalid::new(
            "camera.classify",
            "`path` and `equals` go together",
        ));
    }
    if c.link_timeout_ms != 0 && !(1_000..=600_000).contains(&c.link_timeout_ms) {
        out.push(Invalid::new(
            "camera.link_timeout_ms",
            "must be 0 (no keep-alives) or 1000 to 600000",
        ));
    }
}

/// Profiles referenced by a site config, validated against it.
#[derive(Debug, Clone, Default)]
pub struct ProfileLibrary {
    profiles: HashMap<String, Profile>,
    origins: HashMap<String, String>,
}

impl ProfileLibrary {
    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }
    /// Where a profile was read from (a path, or `builtin:NAME`).
    pub fn origin(&self, name: &str) -> Option<&str> {
        self.origins.get(name).map(String::as_str)
    }
    pub fn insert(&mut self, profile: Profile, origin: String) {
        self.origins.insert(profile.name.clone(), origin);
        self.profiles.insert(profile.name.clone(), profile);
    }
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read profile {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Problems inside a profile file.
    #[error("{}", join_lines(.0))]
    Invalid(Vec<Located>),
    /// A `[[devices]]` entry that does not fit its profile; keys are site-config keys.
    #[error("{}", .0.iter().map(|i| format!("site config: {}: {}", i.key, i.message)).collect::<Vec<_>>().join("\n"))]
    Devices(Vec<Invalid>),
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Rtu => "rtu",
            Transport::Tcp => "tcp",
        })
    }
}

/// The keys of [`Profile`] itself, written above the first `[table]`.
const PROFILE_TOP_LEVEL_KEYS: &[&str] = &["name", "vendor", "model", "source", "modbus", "camera"];

/// Parses and validates one profile's text. `origin` names it in errors.
pub fn parse_profile(text: &str, stem: &str, origin: &Path) -> Result<Profile, ProfileError> {
    let profile: Profile = toml::from_str(text).map_err(|e| {
        ProfileError::Invalid(vec![Located::parse_error(
            origin,
            text,
            &e,
            PROFILE_TOP_LEVEL_KEYS,
        )])
    })?;
    let problems = profile.validate(stem);
    if problems.is_empty() {
        Ok(profile)
    } else {
        Err(ProfileError::Invalid(Located::all_in_text(
            origin, text, problems,
        )))
    }
}

/// Directories searched, in order: the site config's `profile_dirs`, then
/// [`DEFAULT_DIRS`]; the built-in profiles come last.
pub fn search_dirs(config: &SiteConfig) -> Vec<PathBuf> {
    config
        .profile_dirs
        .iter()
        .map(PathBuf::from)
        .chain(DEFAULT_DIRS.iter().map(PathBuf::from))
        .collect()
}

/// Finds one profile by name: the first file `NAME.toml` in `dirs`, else the built-in.
pub fn find_profile(name: &str, dirs: &[PathBuf]) -> Result<Option<Profile>, ProfileError> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Ok(None);
    }
    for dir in dirs {
        let path = dir.join(format!("{name}.toml"));
        match std::fs::read_to_string(&path) {
            Ok(text) => return parse_profile(&text, name, &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ProfileError::Read { path, source }),
        }
    }
    match BUILTIN.iter().find(|(n, _)| *n == name) {
        Some((_, text)) => {
            parse_profile(text, name, Path::new(&format!("builtin:{name}"))).map(Some)
        }
        None => Ok(None),
    }
}

/// Loads every profile the site config's devices use and checks each device against
/// its profile (transport, role bindings).
pub fn load_profiles(config: &SiteConfig) -> Result<ProfileLibrary, ProfileError> {
    let dirs = search_dirs(config);
    let mut lib = ProfileLibrary::default();
    let mut problems = Vec::new();
    for (i, d) in config.devices.iter().enumerate() {
        if lib.get(&d.profile).is_none() {
            match find_profile(&d.profile, &dirs)? {
                Some(p) => {
                    let origin = dirs
                        .iter()
                        .map(|dir| dir.join(format!("{}.toml", d.profile)))
                        .find(|p| p.exists())
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| format!("builtin:{}", d.profile));
                    lib.insert(p, origin);
                }
                None => {
                    problems.push(Invalid::new(
                        format!("devices[{i}].profile"),
                        format!(
                            "no profile {:?} in {} or built in",
                            d.profile,
                            dirs.iter()
                                .map(|p| p.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                    continue;
                }
            }
        }
        if let Some(p) = lib.get(&d.profile) {
            check_device(i, d, p, &mut problems);
        }
    }
    if problems.is_empty() {
        Ok(lib)
    } else {
        Err(ProfileError::Devices(problems))
    }
}

/// A device entry against its profile. Pure.
pub fn check_device(
    i: usize,
    d: &crate::config::DeviceConfig,
    p: &Profile,
    out: &mut Vec<Invalid>,
) {
    let key = |f: &str| format!("devices[{i}].{f}");
    match (d.attachment(), &p.modbus, &p.camera) {
        (Some(Attachment::Rtu { .. }), Some(m), _) if !m.transports.contains(&Transport::Rtu) => {
            out.push(Invalid::new(
                key("bus"),
                format!("profile {:?} is not usable over Modbus RTU", p.name),
            ))
        }
        (Some(Attachment::Tcp { .. }), Some(m), _) if !m.transports.contains(&Transport::Tcp) => {
            out.push(Invalid::new(
                key("tcp"),
                format!("profile {:?} is not usable over Modbus TCP", p.name),
            ))
        }
        (Some(Attachment::Camera { .. }), _, None) => out.push(Invalid::new(
            key("camera_id"),
            format!("profile {:?} is not a camera profile", p.name),
        )),
        (Some(Attachment::Rtu { .. } | Attachment::Tcp { .. }), None, _) => out.push(Invalid::new(
            key("profile"),
            format!("profile {:?} is a camera profile", p.name),
        )),
        _ => {}
    }
    if let Some(c) = &p.camera {
        if !d.roles.is_empty() {
            out.push(Invalid::new(
                key("roles"),
                "cameras have no roles: their plate reads go to the lane",
            ));
        }
        if !d.http_push && c.topics.result.is_empty() && d.topic.is_none() {
            out.push(Invalid::new(
                key("http_push"),
                format!(
                    "profile {:?} is a push-only profile: set http_push = true",
                    p.name
                ),
            ));
        }
        return;
    }
    if d.roles.is_empty() {
        out.push(Invalid::new(
            key("roles"),
            "bind at least one role, e.g. roles = { loop_a = \"di1\" }",
        ));
    }
    for (role, point_name) in &d.roles {
        let rkey = format!("devices[{i}].roles.{}", role.name());
        let Some(point) = p.point(point_name) else {
            out.push(Invalid::new(
                rkey,
                format!("profile {:?} has no point {point_name:?}", p.name),
            ));
            continue;
        };
        let (ok, want) = match role {
            Role::GateStatus => (point.kind == PointKind::Enum, "an enum"),
            r if r.is_numeric() => (point.kind.is_number(), "a u16, i16 or u32"),
            _ => (point.kind.is_boolean(), "a bit or word_bit"),
        };
        if !ok {
            out.push(Invalid::new(
                rkey,
                format!("point {point_name:?} must be {want} point for this role"),
            ));
        }
    }
    if d.roles.contains_key(&Role::GateStatus)
        && (d.roles.contains_key(&Role::GateOpen) || d.roles.contains_key(&Role::GateClosed))
    {
        out.push(Invalid::new(
            key("roles"),
            "use gate_status or gate_open/gate_closed limit switches, not both",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_profile_is_valid() {
        for (name, text) in BUILTIN {
            let p = parse_profile(text, name, Path::new(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&p.name, name);
        }
    }

    #[test]
    fn builtin_profiles_match_the_files_on_disk() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("device-profiles");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .into_string()
                    .ok()?
                    .strip_suffix(".toml")
                    .map(str::to_string)
            })
            .collect();
        on_disk.sort();
        let mut built: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
        built.sort();
        assert_eq!(on_disk, built, "every shipped profile must be in BUILTIN");
    }

    #[test]
    fn profile_error_names_file_line_and_key() {
        let text = "name = \"x\"\nvendor = \"v\"\nmodel = \"m\"\nsource = \"s\"\n[modbus]\ntransports = [\"rtu\"]\n\
                    [[modbus.points]]\nname = \"di1\"\nfunction = 5\naddress = 0\ntype = \"bit\"\n";
        let err = parse_profile(text, "x", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "x.toml:9: modbus.points[0].function: only read functions 1 to 4 exist"
        );
    }

    #[test]
    fn unknown_profile_field_is_rejected_with_line() {
        let text = "name = \"x\"\nvendor = \"v\"\nmodel = \"m\"\nsource = \"s\"\nwrite_coil = 1\n";
        let err = parse_profile(text, "x", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("x.toml:5:"), "{err}");
    }

    #[test]
    fn profile_parse_errors_name_the_key_and_a_misplaced_top_level_key() {
        let text = "name = \"x\"\nvendor = \"v\"\nmodel = \"m\"\n[modbus]\ntransports = [\"rtu\"]\nsource = \"s\"\n";
        let err = parse_profile(text, "x", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("x.toml:6: modbus.source: `source` is a top-level key"),
            "{err}"
        );
        let text = "name = \"x\"\nvendor = \"v\"\nmodel = \"m\"\nsource = \"s\"\n[modbus]\ntransports = \"rtu\"\n";
        let err = parse_profile(text, "x", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("x.toml:6: modbus.transports: "), "{err}");
    }

    #[test]
    fn enum_values_must_be_gate_positions() {
        let text = "name = \"x\"\nvendor = \"v\"\nmodel = \"m\"\nsource = \"s\"\n[modbus]\ntransports = [\"tcp\"]\n\
                    [[modbus.points]]\nname = \"st\"\nfunction = 3\naddress = 0\ntype = \"enum\"\nvalues = { \"0\" = \"ajar\" }\n";
        let err = parse_profile(text, "x", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("modbus.points[0].values: \"ajar\" is not one of"),
            "{err}"
        );
    }

    fn site(devices: &str) -> SiteConfig {
        let text = format!(
            "[platform]\nbase_url = \"https://x\"\napp_id = \"a\"\n[lot]\nparking_lot_no = \"L\"\ntotal_spaces = 1\noccupancy_source = \"external\"\n\
             [storage]\ndir = \"/tmp\"\n[mqtt]\nhost = \"h\"\n[[buses]]\nname = \"b\"\nport = \"/dev/x\"\n\
             [[lanes]]\nid = \"in\"\ndirection = \"entry\"\nport_no = \"P1\"\n{devices}"
        );
        SiteConfig::from_toml(&text, Path::new("site.toml")).unwrap()
    }

    #[test]
    fn devices_are_checked_against_their_profiles() {
        let c = site(
            "[[devices]]\nname = \"io\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"in\"\ntcp = \"h:502\"\n\
             roles = { loop_a = \"di9\", gate_status = \"di1\" }\n\
             [[devices]]\nname = \"cam\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"in\"\ncamera_id = \"x\"\n\
             [[devices]]\nname = \"gate\"\nprofile = \"vzenith-mqtt\"\nlane = \"in\"\nbus = \"b\"\n\
             [[devices]]\nname = \"nope\"\nprofile = \"no-such-profile\"\nlane = \"in\"\nbus = \"b\"\n\
             [[devices]]\nname = \"pay\"\nprofile = \"generic-pay-terminal\"\nlane = \"in\"\ntcp = \"h:502\"\nroles = { loop_a = \"charge\" }\n\
             [[devices]]\nname = \"pgs\"\nprofile = \"generic-modbus-tcp-di-gateway\"\ntcp = \"h:502\"\nslave = 9\nroles = { free_count = \"di1\" }\n",
        );
        let err = load_profiles(&c).unwrap_err().to_string();
        for expected in [
            "devices[0].roles.loop_a: profile \"waveshare-modbus-rtu-io-8ch\" has no point \"di9\"",
            "devices[0].roles.gate_status: point \"di1\" must be an enum point",
            "devices[1].camera_id: profile \"waveshare-modbus-rtu-io-8ch\" is not a camera profile",
            "devices[2].profile: profile \"vzenith-mqtt\" is a camera profile",
            "devices[3].profile: no profile \"no-such-profile\"",
            "devices[4].roles.loop_a: point \"charge\" must be a bit or word_bit point",
            "devices[5].roles.free_count: point \"di1\" must be a u16, i16 or u32 point",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in\n{err}");
        }
    }

    #[test]
    fn a_profile_is_used_only_over_its_transports() {
        let c = site(
            "[[devices]]\nname = \"io\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"in\"\ntcp = \"gw:502\"\nslave = 3\nroles = { loop_a = \"di1\" }\n",
        );
        // The Waveshare module behind a TCP gateway: fine.
        let lib = load_profiles(&c).unwrap();
        let mut p = lib.get("waveshare-modbus-rtu-io-8ch").unwrap().clone();
        p.modbus.as_mut().unwrap().transports = vec![Transport::Rtu];
        let mut out = Vec::new();
        check_device(0, &c.devices[0], &p, &mut out);
        assert_eq!(
            out,
            vec![Invalid::new(
                "devices[0].tcp",
                "profile \"waveshare-modbus-rtu-io-8ch\" is not usable over Modbus TCP"
            )]
        );
    }

    #[test]
    fn a_read_plan_past_the_documented_size_is_a_warning() {
        let c = site(
            "[[devices]]\nname = \"io\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"in\"\nbus = \"b\"\nroles = { loop_a = \"di1\" }\n",
        );
        let mut lib = load_profiles(&c).unwrap();
        assert!(
            plan_warnings(&c, &lib).is_empty(),
            "the shipped profile fits"
        );
        let mut p = lib.get("waveshare-modbus-rtu-io-8ch").unwrap().clone();
        let m = p.modbus.as_mut().unwrap();
        let mut extra = m.points[7].clone();
        extra.name = "di9".into();
        extra.address = 8;
        m.points.push(extra);
        lib.insert(p, "test".into());
        let w = plan_warnings(&c, &lib);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].key, "devices[0].profile");
        assert!(
            w[0].message
                .contains("addresses 0–8, but the Modbus RTU IO 8CH has 8"),
            "{}",
            w[0].message
        );
    }

    #[test]
    fn profile_dirs_override_builtin_profiles() {
        let dir = tempfile::tempdir().unwrap();
        let text = BUILTIN[0].1.replace("poll_ms = 100", "poll_ms = 250");
        std::fs::write(dir.path().join(format!("{}.toml", BUILTIN[0].0)), text).unwrap();
        let mut c = site(&format!(
            "[[devices]]\nname = \"io\"\nprofile = \"{}\"\nlane = \"in\"\nbus = \"b\"\nroles = {{ loop_a = \"di1\" }}\n",
            BUILTIN[0].0
        ));
        c.profile_dirs = vec![dir.path().display().to_string()];
        let lib = load_profiles(&c).unwrap();
        assert_eq!(
            lib.get(BUILTIN[0].0)
                .unwrap()
                .modbus
                .as_ref()
                .unwrap()
                .poll_ms,
            250
        );
        assert!(
            lib.origin(BUILTIN[0].0)
                .unwrap()
                .starts_with(&dir.path().display().to_string())
        );
    }
}
