//! `[mqtt]`, `[[buses]]`, `[[devices]]` and `profile_dirs`: the lane hardware and how to
//! reach it. What each device's registers or payloads mean is in its device profile
//! (`device-profiles/`, checked by `crate::driver::profile`).

use super::{Invalid, SiteConfig, check_between, check_unique_name, default};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};

/// The MQTT broker the plate cameras publish to. The bridge only subscribes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub host: String,
    #[serde(default = "default::u16::<1883>")]
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Connect with TLS (rustls). `ca_file` adds a PEM CA; without it the system's
    /// webpki roots are used.
    #[serde(default)]
    pub tls: bool,
    pub ca_file: Option<String>,
    /// Must be stable across restarts: with `clean_session = false` the broker keeps
    /// QoS 1 messages for this id while the bridge is down.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// MQTT keep-alive, seconds.
    #[serde(default = "default::u64::<30>")]
    pub keep_alive_s: u64,
    /// A camera's own time is believed while it agrees with ours within this, ms. A
    /// read made before the bridge's connection began (the broker held it while the
    /// bridge was down) is then late: it never waits for the next vehicle.
    #[serde(default = "default::i64::<10_000>")]
    pub clock_tolerance_ms: i64,
    /// A held read older than this means a camera clock reset, not an outage: it is
    /// timed by its arrival, flagged, ms (default 7 days).
    #[serde(default = "default_max_late_ms")]
    pub max_late_ms: i64,
}

fn default_client_id() -> String {
    "parking-bridge".to_string()
}

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    #[default]
    None,
    Even,
    Odd,
}

/// One RS-485 bus (a serial port shared by several slaves). One task owns it and
/// polls its slaves in turn.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    pub name: String,
    /// Serial device, ideally a stable udev name like `/dev/parking/bus1`.
    pub port: String,
    #[serde(default = "default::u32::<9600>")]
    pub baud: u32,
    #[serde(default)]
    pub parity: Parity,
    #[serde(default = "default::u8::<8>")]
    pub data_bits: u8,
    #[serde(default = "default::u8::<1>")]
    pub stop_bits: u8,
    /// Silence kept between the end of a response and the next request, ms. Unset:
    /// the larger of the Modbus 3.5-character time and every profile's own value.
    pub inter_frame_delay_ms: Option<u64>,
}

/// The lane roles a device's named points can fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Arming loop in front of the barrier (a bit point).
    LoopA,
    /// Safety / closing loop behind the barrier (a bit point).
    LoopB,
    /// Limit switch active when the barrier is fully open (a bit point).
    GateOpen,
    /// Limit switch active when the barrier is fully closed (a bit point).
    GateClosed,
    /// A status word mapped to open/closed/moving/fault (an enum point).
    GateStatus,
    /// A fault flag (a bit point): while active the gate is reported as `fault`.
    GateFault,
    /// Occupied spaces of the whole lot (a number point of a guidance system's
    /// controller). Lot-wide: such a device has no `lane`.
    OccupiedCount,
    /// Free spaces of the whole lot (a number point). Lot-wide, like `occupied_count`.
    FreeCount,
    /// The charge the exit lane's pay terminal shows for the vehicle at the lane (a
    /// number point in fen; use the point's `scale` for yuan).
    FeePrice,
    /// What was paid at that terminal (a number point in fen); without it the charge
    /// counts as paid.
    FeePaid,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::LoopA => "loop_a",
            Role::LoopB => "loop_b",
            Role::GateOpen => "gate_open",
            Role::GateClosed => "gate_closed",
            Role::GateStatus => "gate_status",
            Role::GateFault => "gate_fault",
            Role::OccupiedCount => "occupied_count",
            Role::FreeCount => "free_count",
            Role::FeePrice => "fee_price",
            Role::FeePaid => "fee_paid",
        }
    }

    /// Roles that describe the whole lot rather than one lane.
    pub fn is_lot_wide(self) -> bool {
        matches!(self, Role::OccupiedCount | Role::FreeCount)
    }

    /// Roles bound to a number point (the others take bit or enum points).
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Role::OccupiedCount | Role::FreeCount | Role::FeePrice | Role::FeePaid
        )
    }
}

/// One device instance: a profile, where it is, and which lane it serves.
///
/// Exactly one way to reach it: `bus` + `slave` (Modbus RTU), `tcp` (+ `slave`,
/// Modbus TCP), or `camera_id` (MQTT camera, `{id}` in the profile's topics).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub name: String,
    /// Profile name (file stem in a profile directory, or a built-in profile).
    pub profile: String,
    /// The lane the device serves; empty for a lot-wide space counter.
    #[serde(default)]
    pub lane: String,
    pub bus: Option<String>,
    /// `host:port` of a Modbus TCP device or gateway.
    pub tcp: Option<String>,
    /// Modbus unit/slave id; defaults to the profile's `default_slave`.
    pub slave: Option<u8>,
    /// Camera serial number / id, substituted for `{id}` in the profile's topics.
    pub camera_id: Option<String>,
    /// Replaces the profile's recognition topic (cameras configured with a custom topic).
    pub topic: Option<String>,
    /// Replaces any of the profile's topics for this camera:
    /// `topics = { result = "…", quick = "…", heartbeat = ["…", "…"] }`.
    pub topics: Option<TopicOverrides>,
    /// Overrides the camera profile's `link_timeout_ms` (0: no keep-alives).
    pub link_timeout_ms: Option<u64>,
    /// Lane role → the profile's point name, e.g. `roles = { loop_a = "di1" }`.
    #[serde(default)]
    pub roles: BTreeMap<Role, String>,
    /// Overrides the profile's poll period, ms.
    pub poll_ms: Option<u64>,
    /// Overrides the profile's debounce, ms (confirmed by `1 + ceil(debounce_ms /
    /// poll_ms)` equal reads in a row).
    pub debounce_ms: Option<u64>,
    /// Overrides the profile's debounce as equal consecutive reads (1: none).
    pub debounce_reads: Option<u32>,
    /// The camera POSTs its results to the bridge (`[camera_push]`) instead of MQTT.
    #[serde(default)]
    pub http_push: bool,
    /// Push cameras: the camera's fixed IP address. Pushes for this camera from any
    /// other address are refused (403); pushes to a URL without a camera id are
    /// matched to the camera by it.
    pub source: Option<String>,
    /// Push cameras: a per-camera secret in the push URL (`?token=…` or
    /// `/camera/{id}/token/{token}`); a push without it is refused (403).
    pub token: Option<String>,
}

/// One text or a list of texts (`"a"` or `["a", "b"]`): installers write either.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StringList(pub Vec<String>);

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(String),
            Many(Vec<String>),
        }
        Ok(StringList(match Form::deserialize(d)? {
            Form::One(s) => vec![s],
            Form::Many(v) => v,
        }))
    }
}

/// A camera's own topics, each replacing the profile's (`{id}` is filled in too).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicOverrides {
    pub result: Option<String>,
    pub quick: Option<String>,
    /// Keep-alive topics (one or a list); `keep_alive` is accepted as the key too.
    #[serde(default, alias = "keep_alive")]
    pub heartbeat: Option<StringList>,
}

/// `[camera_push]`: the HTTP listener for cameras that push recognitions
/// (`POST /camera/{camera_id}/plate`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraPushConfig {
    /// `host:port`, e.g. `0.0.0.0:8089`.
    pub listen: String,
    /// Larger bodies are refused with 413 (cameras embed base64 JPEGs).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// A picture larger than this is dropped; its recognition is kept.
    #[serde(default = "default_max_picture")]
    pub max_picture_bytes: usize,
    /// Pushes each camera may make per second, sustained; above it 429.
    #[serde(default = "default::u32::<10>")]
    pub rate_per_s: u32,
    /// Pushes a camera may make at once above the rate (a backlog after an outage).
    #[serde(default = "default::u32::<100>")]
    pub burst: u32,
    /// A client must send its request headers within this time (slow-loris clients
    /// are cut off), ms.
    #[serde(default = "default::u64::<5_000>")]
    pub header_timeout_ms: u64,
    /// … and its whole body within this time (408 otherwise), ms.
    #[serde(default = "default::u64::<20_000>")]
    pub body_timeout_ms: u64,
    /// At most this many connections at once; more are closed on accept.
    #[serde(default = "default::usize::<64>")]
    pub max_connections: usize,
    /// A camera's own time is believed while it agrees with ours within this, ms;
    /// an older one marks a recognition the camera stored while it could not push.
    #[serde(default = "default::i64::<10_000>")]
    pub clock_tolerance_ms: i64,
    /// A stored recognition older than this means a camera clock reset, not an
    /// outage: it is timed by its arrival, flagged, ms (default 7 days).
    #[serde(default = "default_max_late_ms")]
    pub max_late_ms: i64,
}

/// The camera-clock settings of `[mqtt]` and `[camera_push]`.
fn check_camera_clock(section: &str, tolerance_ms: i64, max_late_ms: i64, out: &mut Vec<Invalid>) {
    check_between(
        format!("{section}.clock_tolerance_ms"),
        tolerance_ms,
        1_000..=3_600_000,
        " ms",
        out,
    );
    if max_late_ms <= tolerance_ms {
        out.push(Invalid::new(
            format!("{section}.max_late_ms"),
            "must be above clock_tolerance_ms",
        ));
    }
}

fn default_max_body() -> usize {
    4 * 1024 * 1024
}
fn default_max_picture() -> usize {
    3 * 1024 * 1024
}
fn default_max_late_ms() -> i64 {
    7 * 24 * 3600 * 1000
}

/// How the device is reached, as decided by validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attachment<'a> {
    Rtu { bus: &'a str },
    Tcp { address: &'a str },
    Camera { id: &'a str },
}

impl DeviceConfig {
    /// `None` only for configs that failed validation.
    pub fn attachment(&self) -> Option<Attachment<'_>> {
        match (&self.bus, &self.tcp, &self.camera_id) {
            (Some(bus), None, None) => Some(Attachment::Rtu { bus }),
            (None, Some(address), None) => Some(Attachment::Tcp { address }),
            (None, None, Some(id)) => Some(Attachment::Camera { id }),
            _ => None,
        }
    }
}

/// A device serves one lane, except a lot-wide space counter, which serves none; lane
/// and role bindings must agree with that.
fn validate_lane_and_roles(
    config: &SiteConfig,
    d: &DeviceConfig,
    key: &dyn Fn(&str) -> String,
    counters: &mut usize,
    out: &mut Vec<Invalid>,
) {
    let lot_wide = d.roles.keys().filter(|r| r.is_lot_wide()).count();
    if lot_wide > 0 {
        *counters += 1;
        if lot_wide < d.roles.len() {
            out.push(Invalid::new(
                key("roles"),
                "occupied_count and free_count describe the whole lot: bind them on a device of their own, without lane roles",
            ));
        } else if lot_wide > 1 {
            out.push(Invalid::new(
                key("roles"),
                "bind occupied_count or free_count, not both",
            ));
        }
        if !d.lane.is_empty() {
            out.push(Invalid::new(
                key("lane"),
                "a lot-wide space counter serves no lane: remove `lane`",
            ));
        }
        if *counters == 2 {
            out.push(Invalid::new(
                key("roles"),
                "a second space counter: the lot's count comes from one device",
            ));
        }
        if config.lot.occupancy_source != super::lot::OccupancySource::External {
            out.push(Invalid::new(
                "lot.occupancy_source",
                "must be \"external\" when a device has an occupied_count or free_count role (the counter drives the count)",
            ));
        }
        if config.lot.occupancy_mqtt.is_some() {
            out.push(Invalid::new(
                key("roles"),
                "the count comes from [lot.occupancy_mqtt] already: use one occupancy source",
            ));
        }
        return;
    }
    if d.lane.is_empty() {
        out.push(Invalid::new(
            key("lane"),
            "must name the lane the device serves",
        ));
        return;
    }
    let Some(lane) = config.lane(&d.lane) else {
        out.push(Invalid::new(
            key("lane"),
            format!("no lane with id {:?}", d.lane),
        ));
        return;
    };
    let fee_roles = d.roles.contains_key(&Role::FeePrice) || d.roles.contains_key(&Role::FeePaid);
    if fee_roles && lane.direction != super::lanes::Direction::Exit {
        out.push(Invalid::new(
            key("roles"),
            format!(
                "fee_price/fee_paid belong to a pay terminal at an exit lane; {:?} is an entry",
                d.lane
            ),
        ));
    }
    if d.roles.contains_key(&Role::FeePaid) && !d.roles.contains_key(&Role::FeePrice) {
        out.push(Invalid::new(
            key("roles"),
            "fee_paid needs fee_price (the charge) on the same device",
        ));
    }
}

/// A push camera is bound to its fixed address and/or a token, so that nothing else on
/// the LAN can create entries; the binding keys belong to push cameras only.
fn validate_push_binding(d: &DeviceConfig, key: &dyn Fn(&str) -> String, out: &mut Vec<Invalid>) {
    if !d.http_push {
        for (field, set) in [("source", d.source.is_some()), ("token", d.token.is_some())] {
            if set {
                out.push(Invalid::new(
                    key(field),
                    "only push cameras (http_push = true) have one",
                ));
            }
        }
        return;
    }
    if d.source.is_none() && d.token.is_none() {
        out.push(Invalid::new(
            key("http_push"),
            "bind the push camera: set `source` (its fixed IP address) and/or `token`",
        ));
    }
    if let Some(s) = &d.source {
        match s.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.is_unspecified() => out.push(Invalid::new(
                key("source"),
                "must be the camera's own address, not 0.0.0.0",
            )),
            Ok(_) => {}
            Err(_) => out.push(Invalid::new(
                key("source"),
                "must be an IP address, e.g. \"192.168.1.64\"",
            )),
        }
    }
    if let Some(t) = &d.token
        && (t.len() < 16
            || t.len() > 128
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        out.push(Invalid::new(
            key("token"),
            "must be 16 to 128 characters of A-Z, a-z, 0-9, '-' and '_'",
        ));
    }
}

pub fn validate_all(config: &SiteConfig, out: &mut Vec<Invalid>) {
    if let Some(m) = &config.mqtt {
        if m.host.trim().is_empty() {
            out.push(Invalid::new("mqtt.host", "must not be empty"));
        }
        if m.port == 0 {
            out.push(Invalid::new("mqtt.port", "must be 1 to 65535"));
        }
        if m.client_id.is_empty() || m.client_id.len() > 64 {
            out.push(Invalid::new("mqtt.client_id", "must be 1 to 64 characters"));
        }
        if m.password.is_some() && m.username.is_none() {
            out.push(Invalid::new("mqtt.password", "a password needs a username"));
        }
        if m.ca_file.is_some() && !m.tls {
            out.push(Invalid::new(
                "mqtt.ca_file",
                "set tls = true to use a CA file",
            ));
        }
        check_between(
            "mqtt.keep_alive_s",
            m.keep_alive_s,
            5..=600,
            " seconds",
            out,
        );
        check_camera_clock("mqtt", m.clock_tolerance_ms, m.max_late_ms, out);
    }
    let mut bus_names = HashSet::new();
    for (i, b) in config.buses.iter().enumerate() {
        check_unique_name(
            format!("buses[{i}].name"),
            &b.name,
            "bus name",
            &mut bus_names,
            out,
        );
        if b.port.is_empty() {
            out.push(Invalid::new(
                format!("buses[{i}].port"),
                "must not be empty",
            ));
        }
        check_between(format!("buses[{i}].baud"), b.baud, 1200..=921_600, "", out);
        check_between(format!("buses[{i}].data_bits"), b.data_bits, 5..=8, "", out);
        if !(1..=2).contains(&b.stop_bits) {
            out.push(Invalid::new(
                format!("buses[{i}].stop_bits"),
                "must be 1 or 2",
            ));
        }
        if b.inter_frame_delay_ms.is_some_and(|d| d > 1000) {
            out.push(Invalid::new(
                format!("buses[{i}].inter_frame_delay_ms"),
                "must be at most 1000 ms",
            ));
        }
    }
    let mut names = HashSet::new();
    let mut rtu_slaves = HashSet::new();
    let mut counters = 0;
    for (i, d) in config.devices.iter().enumerate() {
        let key = |field: &str| format!("devices[{i}].{field}");
        check_unique_name(key("name"), &d.name, "device name", &mut names, out);
        if d.profile.is_empty() {
            out.push(Invalid::new(key("profile"), "must not be empty"));
        }
        validate_lane_and_roles(config, d, &key, &mut counters, out);
        match d.attachment() {
            None => out.push(Invalid::new(
                key("name"),
                "set exactly one of `bus` (Modbus RTU), `tcp` (Modbus TCP) or `camera_id` (MQTT camera)",
            )),
            Some(Attachment::Rtu { bus }) => {
                if !config.buses.iter().any(|b| b.name == bus) {
                    out.push(Invalid::new(key("bus"), format!("no [[buses]] with name {bus:?}")));
                }
                if let Some(s) = d.slave {
                    if !(1..=247).contains(&s) {
                        out.push(Invalid::new(key("slave"), "RTU slave id must be 1 to 247"));
                    } else if !rtu_slaves.insert((bus, s)) {
                        out.push(Invalid::new(key("slave"), format!("slave {s} is already used on bus {bus:?}")));
                    }
                }
            }
            Some(Attachment::Tcp { address }) => {
                if address.rsplit_once(':').and_then(|(h, p)| (!h.is_empty()).then_some(p)).and_then(|p| p.parse::<u16>().ok()).is_none() {
                    out.push(Invalid::new(key("tcp"), "must be host:port"));
                }
            }
            Some(Attachment::Camera { id }) => {
                if id.is_empty() || id.contains(['+', '#', '/']) {
                    out.push(Invalid::new(key("camera_id"), "must be non-empty without MQTT wildcards or '/'"));
                }
                if d.http_push && config.camera_push.is_none() {
                    out.push(Invalid::new(key("http_push"), "push cameras need a [camera_push] section"));
                } else if !d.http_push && config.mqtt.is_none() {
                    out.push(Invalid::new(key("camera_id"), "cameras need an [mqtt] section"));
                }
            }
        }
        if d.camera_id.is_none() && d.http_push {
            out.push(Invalid::new(
                key("http_push"),
                "only cameras push over HTTP",
            ));
        }
        validate_push_binding(d, &key, out);
        if d.camera_id.is_none() && d.topic.is_some() {
            out.push(Invalid::new(key("topic"), "only cameras have a topic"));
        }
        if d.camera_id.is_none() && d.topics.is_some() {
            out.push(Invalid::new(key("topics"), "only cameras have topics"));
        }
        if d.topic.is_some() && d.topics.as_ref().is_some_and(|t| t.result.is_some()) {
            out.push(Invalid::new(
                key("topic"),
                "set the result topic once: `topic` or `topics.result`",
            ));
        }
        let overrides = d.topics.clone().unwrap_or_default();
        let mut given: Vec<(String, &String)> = Vec::new();
        given.extend(d.topic.iter().map(|t| (key("topic"), t)));
        given.extend(overrides.result.iter().map(|t| (key("topics.result"), t)));
        given.extend(overrides.quick.iter().map(|t| (key("topics.quick"), t)));
        given.extend(
            overrides
                .heartbeat
                .iter()
                .flat_map(|l| l.0.iter())
                .map(|t| (key("topics.heartbeat"), t)),
        );
        for (k, t) in given {
            if t.is_empty() || t.contains(['+', '#']) {
                out.push(Invalid::new(
                    k,
                    "must be a concrete topic without wildcards",
                ));
            }
        }
        if d.camera_id.is_none() && d.link_timeout_ms.is_some() {
            out.push(Invalid::new(
                key("link_timeout_ms"),
                "only cameras have a link timeout (Modbus devices: the profile's retries)",
            ));
        }
        if d.link_timeout_ms
            .is_some_and(|t| t != 0 && !(1_000..=600_000).contains(&t))
        {
            out.push(Invalid::new(
                key("link_timeout_ms"),
                "must be 0 (no keep-alives) or 1000 to 600000",
            ));
        }
        if let Some(ms) = d.poll_ms {
            check_between(key("poll_ms"), ms, 10..=60_000, "", out);
        }
        if d.debounce_ms.is_some_and(|p| p > 10_000) {
            out.push(Invalid::new(key("debounce_ms"), "must be at most 10000"));
        }
        if let Some(n) = d.debounce_reads {
            check_between(key("debounce_reads"), n, 1..=100, "", out);
        }
        if d.debounce_ms.is_some() && d.debounce_reads.is_some() {
            out.push(Invalid::new(
                key("debounce_reads"),
                "give the debounce once: debounce_ms (time) or debounce_reads (reads)",
            ));
        }
    }
    if let Some(p) = &config.camera_push {
        if p.listen.parse::<std::net::SocketAddr>().is_err() {
            out.push(Invalid::new(
                "camera_push.listen",
                "must be ip:port, e.g. 0.0.0.0:8089",
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&p.max_body_bytes) {
            out.push(Invalid::new(
                "camera_push.max_body_bytes",
                "must be 1 KiB to 64 MiB",
            ));
        }
        if p.max_picture_bytes < 1024 {
            out.push(Invalid::new(
                "camera_push.max_picture_bytes",
                "must be at least 1 KiB",
            ));
        }
        check_between("camera_push.rate_per_s", p.rate_per_s, 1..=1000, "", out);
        check_between("camera_push.burst", p.burst, 1..=100_000, "", out);
        for (key, ms) in [
            ("camera_push.header_timeout_ms", p.header_timeout_ms),
            ("camera_push.body_timeout_ms", p.body_timeout_ms),
        ] {
            check_between(key, ms, 100..=300_000, " ms", out);
        }
        check_between(
            "camera_push.max_connections",
            p.max_connections,
            1..=10_000,
            "",
            out,
        );
        check_camera_clock("camera_push", p.clock_tolerance_ms, p.max_late_ms, out);
    }
    for (i, dir) in config.profile_dirs.iter().enumerate() {
        if dir.is_empty() {
            out.push(Invalid::new(
                format!("profile_dirs[{i}]"),
                "must not be empty",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, SiteConfig};
    use std::path::Path;

    fn load(sections: &str) -> Result<SiteConfig, ConfigError> {
        let text = format!(
            "{}[[lanes]]\nid = \"in\"\ndirection = \"entry\"\nport_no = \"P1\"\n{sections}",
            crate::config::test_site_head("")
        );
        SiteConfig::from_toml(&text, Path::new("site.toml"))
    }

    /// The error message of `sections`, asserted to contain every one of `parts`.
    fn error_with(sections: &str, parts: &[&str]) -> String {
        let err = load(sections).unwrap_err().to_string();
        for part in parts {
            assert!(err.contains(part), "{part:?} missing from:\n{err}");
        }
        err
    }

    #[test]
    fn complete_device_sections_are_accepted() {
        let c = load(
            "[mqtt]\nhost = \"127.0.0.1\"\nusername = \"u\"\npassword = \"p\"\ntls = true\nca_file = \"/etc/ca.pem\"\nclient_id = \"pb-1\"\n\
             [[buses]]\nname = \"b1\"\nport = \"/dev/parking/bus1\"\nbaud = 9600\nparity = \"even\"\nstop_bits = 1\ninter_frame_delay_ms = 5\n\
             [[devices]]\nname = \"io\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"in\"\nbus = \"b1\"\nslave = 1\nroles = { loop_a = \"di1\" }\n\
             [[devices]]\nname = \"cam\"\nprofile = \"vzenith-mqtt\"\nlane = \"in\"\ncamera_id = \"sn1\"\n",
        )
        .unwrap();
        assert_eq!(c.buses[0].parity, super::Parity::Even);
        assert_eq!(
            c.devices[0]
                .roles
                .get(&super::Role::LoopA)
                .map(String::as_str),
            Some("di1")
        );
    }

    #[test]
    fn absent_keys_take_their_defaults() {
        let c = load(
            "[mqtt]\nhost = \"127.0.0.1\"\n[camera_push]\nlisten = \"127.0.0.1:0\"\n\
             [[buses]]\nname = \"b1\"\nport = \"/dev/x\"\n",
        )
        .unwrap();
        let m = c.mqtt.unwrap();
        assert_eq!((m.port, m.keep_alive_s), (1883, 30));
        let b = &c.buses[0];
        assert_eq!((b.baud, b.data_bits, b.stop_bits), (9600, 8, 1));
        let p = c.camera_push.unwrap();
        assert_eq!((p.rate_per_s, p.burst, p.max_connections), (10, 100, 64));
        assert_eq!((p.header_timeout_ms, p.body_timeout_ms), (5_000, 20_000));
        assert_eq!(p.clock_tolerance_ms, 10_000);
        assert_eq!(c.platform.connect_timeout_secs, 5);
        assert_eq!(c.platform.request_timeout_secs, 20);
    }

    #[test]
    fn device_errors_name_line_and_key() {
        error_with(
            "[[buses]]\nname = \"b1\"\nport = \"/dev/x\"\n\
             [[devices]]\nname = \"io\"\nprofile = \"p\"\nlane = \"in\"\nbus = \"b2\"\n\
             [[devices]]\nname = \"io\"\nprofile = \"p\"\nlane = \"in\"\ntcp = \"1.2.3.4:502\"\ncamera_id = \"x\"\n",
            &[
                "site.toml:20: devices[0].bus: no [[buses]] with name \"b2\"",
                "devices[1].name: duplicate device name",
                "devices[1].name: set exactly one of",
            ],
        );
    }

    #[test]
    fn push_cameras_must_be_bound_by_address_or_token() {
        let err = error_with(
            "[camera_push]\nlisten = \"0.0.0.0:8089\"\n\
             [[devices]]\nname = \"a\"\nprofile = \"p\"\nlane = \"in\"\ncamera_id = \"a\"\nhttp_push = true\n\
             [[devices]]\nname = \"b\"\nprofile = \"p\"\nlane = \"in\"\ncamera_id = \"b\"\nhttp_push = true\nsource = \"cam-1\"\ntoken = \"short\"\n\
             [[devices]]\nname = \"c\"\nprofile = \"p\"\nlane = \"in\"\ncamera_id = \"c\"\nsource = \"192.168.1.64\"\n\
             [[devices]]\nname = \"d\"\nprofile = \"p\"\nlane = \"in\"\ncamera_id = \"d\"\nhttp_push = true\nsource = \"192.168.1.64\"\ntoken = \"AbCdEf0123456789-_\"\n",
            &[
                "devices[0].http_push: bind the push camera",
                "devices[1].source: must be an IP address",
                "devices[1].token: must be 16 to 128",
                "devices[2].source: only push cameras",
            ],
        );
        assert!(!err.contains("devices[3]"), "{err}");
    }

    #[test]
    fn cameras_need_mqtt_and_slaves_are_unique_per_bus() {
        error_with(
            "[[buses]]\nname = \"b1\"\nport = \"/dev/x\"\nbaud = 300\n\
             [[devices]]\nname = \"a\"\nprofile = \"p\"\nlane = \"in\"\nbus = \"b1\"\nslave = 3\n\
             [[devices]]\nname = \"b\"\nprofile = \"p\"\nlane = \"in\"\nbus = \"b1\"\nslave = 3\n\
             [[devices]]\nname = \"c\"\nprofile = \"p\"\nlane = \"in\"\ncamera_id = \"a/b\"\n",
            &[
                "buses[0].baud",
                "devices[1].slave: slave 3 is already used",
                "devices[2].camera_id: must be non-empty",
                "devices[2].camera_id: cameras need an [mqtt] section",
            ],
        );
    }
}
