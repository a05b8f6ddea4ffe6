//! Plate-camera payload decoding, driven by the camera profile (field paths, text
//! encoding, colour map, message classification). One decoder serves every vendor:
//! the vendor differences live in `device-profiles/*.toml`, and each vendor's captured
//! payload shape is pinned by a test below.
//!
//! Pure: bytes and time in, facts out. Garbage is an error value, never a panic.

pub mod clock;
pub mod dahua;
pub mod hikvision;
pub mod push;
pub mod qianyi;
pub mod vzenith;

use crate::driver::LinkState;
use crate::driver::profile::{CameraProfile, Charset, TextEncoding, TimeUnit};
use crate::event::PlateRead;
use crate::plate::PlateColor;
use crate::time::Timestamp;
use base64::Engine;
use chrono::FixedOffset;
use serde_json::Value;
use std::sync::Arc;

/// Which of the camera's topics a message came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    Result,
    Quick,
    Heartbeat,
}

/// What a message turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Plate(PlateRead),
    /// A heartbeat or another non-recognition message: the camera is alive.
    Alive,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload is not {0} text")]
    Charset(&'static str),
    #[error("payload is not JSON: {0}")]
    Json(String),
    #[error("field {0} is missing")]
    Missing(String),
    #[error("field {0} has the wrong type")]
    WrongType(String),
    #[error("field {0} is not valid base64")]
    Base64(String),
    #[error("multipart body: {0}")]
    Multipart(String),
    #[error("XML: {0}")]
    Xml(String),
    #[error("no {0} part in the multipart body")]
    MissingPart(&'static str),
    #[error("picture {name} is {bytes} bytes, above the {limit}-byte limit")]
    PictureTooLarge {
        name: String,
        bytes: usize,
        limit: usize,
    },
}

/// What a decoder needs besides the message: the lot's UTC offset (for cameras that
/// send local time) and pictures that came as separate multipart parts.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub offset: FixedOffset,
    /// (part name, bytes)
    pub parts: &'a [(String, bytes::Bytes)],
}

impl Default for Context<'_> {
    fn default() -> Self {
        Context {
            offset: crate::time::china_standard_time(),
            parts: &[],
        }
    }
}

/// Finds `a.b[0].c` in a JSON value.
pub fn json_path<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut v = root;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let (name, rest) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        if !name.is_empty() {
            v = v.get(name)?;
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            v = v.get(idx.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(v)
}

pub fn decode_charset(bytes: &[u8], charset: Charset) -> Result<String, PayloadError> {
    match charset {
        Charset::Utf8 => {
            String::from_utf8(bytes.to_vec()).map_err(|_| PayloadError::Charset("UTF-8"))
        }
        Charset::Gbk => {
            let (text, _, had_errors) = encoding_rs::GBK.decode(bytes);
            if had_errors {
                Err(PayloadError::Charset("GBK"))
            } else {
                Ok(text.into_owned())
            }
        }
    }
}

fn join(root: &str, path: &str) -> String {
    if root.is_empty() {
        path.to_string()
    } else {
        format!("{root}.{path}")
    }
}

/// Text of a scalar (number or string) for code lookups.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Decodes one message per the profile (MQTT and JSON pushes).
pub fn decode(
    profile: &CameraProfile,
    kind: TopicKind,
    payload: &[u8],
) -> Result<Decoded, PayloadError> {
    if kind == TopicKind::Heartbeat {
        return Ok(Decoded::Alive);
    }
    let text = decode_charset(payload, profile.charset)?;
    let json: Value = serde_json::from_str(&text).map_err(|e| PayloadError::Json(e.to_string()))?;
    decode_value(profile, kind, &json, &Context::default())
}

/// A device time per the profile's unit: epoch seconds/ms, ISO 8601, or local text.
fn device_time(v: &Value, unit: TimeUnit, offset: FixedOffset) -> Option<Timestamp> {
    let t = match unit {
        TimeUnit::S | TimeUnit::Ms => {
            let n = v.as_i64().or_else(|| v.as_str()?.trim().parse().ok())?;
            if unit == TimeUnit::S {
                Timestamp(n.saturating_mul(1000))
            } else {
                Timestamp(n)
            }
        }
        TimeUnit::Iso8601 => {
            let text = v.as_str()?.trim();
            match chrono::DateTime::parse_from_rfc3339(text) {
                Ok(t) => Timestamp(t.timestamp_millis()),
                Err(_) => parse_local(&text.replace('T', " "), offset)?,
            }
        }
        TimeUnit::Local => parse_local(v.as_str()?.trim(), offset)?,
    };
    (t.0 > 0).then_some(t)
}

/// `YYYY-MM-DD HH:MM:SS[.fff]` in `offset`.
fn parse_local(text: &str, offset: FixedOffset) -> Option<Timestamp> {
    use chrono::TimeZone;
    let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok()?;
    let local = offset.from_local_datetime(&naive).single()?;
    Some(Timestamp(local.timestamp_millis()))
}

/// Decodes one message, already parsed into a JSON value (Hikvision's XML is turned
/// into one by [`hikvision`]), per the profile.
pub fn decode_value(
    profile: &CameraProfile,
    kind: TopicKind,
    json: &Value,
    ctx: &Context<'_>,
) -> Result<Decoded, PayloadError> {
    if kind == TopicKind::Heartbeat {
        return Ok(Decoded::Alive);
    }
    let c = &profile.classify;
    if let Some(p) = &c.present
        && json_path(json, p).is_none()
    {
        return Ok(Decoded::Alive);
    }
    if let (Some(p), Some(eq)) = (&c.path, &c.equals)
        && json_path(json, p).and_then(scalar_text).as_deref() != Some(eq.as_str())
    {
        return Ok(Decoded::Alive);
    }
    let f = &profile.fields;
    let text_path = join(&f.root, &f.text);
    let raw_text = match json_path(json, &text_path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None if json_path(json, &f.root).is_some() && !f.root.is_empty() => {
            String::new()
        }
        Some(_) => return Err(PayloadError::WrongType(text_path)),
        None => return Err(PayloadError::Missing(text_path)),
    };
    let plate_text = match f.text_encoding {
        TextEncoding::Plain => raw_text,
        TextEncoding::Base64 => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(raw_text.trim())
                .map_err(|_| PayloadError::Base64(text_path.clone()))?;
            decode_charset(&bytes, f.text_charset)?
        }
    };
    let mut cleaned: String = plate_text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '\0')
        .collect();
    // "蓝京A12345": a colour word before a plate (at least 6 more characters). 黑 is
    // also Heilongjiang's province: "黑A84825" and the new-energy "黑ND92848" are
    // plates, not black + the rest; a province character counts as a colour only
    // before a whole plate, which begins with its own province (found by the soak).
    let mut prefix_color = None;
    if let Some((prefix, pnc)) = f.color_prefix.iter().find(|(p, _)| {
        let Some(rest) = cleaned.strip_prefix(p.as_str()) else {
            return false;
        };
        let is_province = p.chars().all(|c| crate::plate::PROVINCES.contains(c));
        if is_province {
            rest.chars().count() >= 7
                && rest
                    .chars()
                    .next()
                    .is_some_and(|c| crate::plate::PROVINCES.contains(c))
        } else {
            rest.chars().count() >= 6
        }
    }) {
        cleaned = cleaned[prefix.len()..].to_string();
        prefix_color = PlateColor::from_code(pnc);
    }
    let readable = !cleaned.is_empty() && !f.unreadable.contains(&cleaned);
    let color = f
        .color
        .iter()
        .find_map(|p| json_path(json, &join(&f.root, p)).and_then(scalar_text))
        .and_then(|code| f.color_map.get(&code))
        .and_then(|pnc| PlateColor::from_code(pnc))
        .filter(|c| *c != PlateColor::Unknown)
        .or(prefix_color)
        .unwrap_or_default();
    let confidence = f
        .confidence
        .as_ref()
        .and_then(|p| json_path(json, &join(&f.root, p)))
        .and_then(|v| v.as_f64().or_else(|| v.as_str()?.trim().parse().ok()))
        .map(|c| c.clamp(0.0, 100.0).round() as u8);
    let device_time = f
        .device_time
        .as_ref()
        .and_then(|p| json_path(json, &join(&f.root, p)))
        .and_then(|v| device_time(v, f.device_time_unit, ctx.offset));
    let offline = f
        .offline
        .as_ref()
        .and_then(|p| json_path(json, &join(&f.root, p)))
        .and_then(scalar_text)
        .and_then(|t| match t.trim() {
            "1" | "true" => Some(true),
            "0" | "false" => Some(false),
            _ => None,
        });
    // The first image present is reported (the profile lists the scene first); a plate
    // crop that came beside a scene is only kept for the journal.
    let mut image = None;
    let mut crop = None;
    for p in &f.image {
        let path = join(&f.root, p);
        let Some(Value::String(s)) = json_path(json, &path) else {
            continue;
        };
        let s = s.trim();
        if s.is_empty() {
            continue;
        }
        let is_crop = f.crop.contains(p);
        let decoded = base64::engine::general_purpose::STANDARD.decode(s);
        if image.is_none() {
            image = Some(Arc::new(decoded.map_err(|_| PayloadError::Base64(path))?));
            if is_crop {
                break;
            }
        } else if is_crop {
            // A broken crop beside a good scene costs nothing worth refusing the read.
            if let Ok(bytes) = decoded {
                crop = Some((bytes.len(), s));
                break;
            }
        }
    }
    if image.is_none() {
        image = f.image_parts.iter().find_map(|name| {
            ctx.parts
                .iter()
                .find(|(n, b)| n == name && !b.is_empty())
                .map(|(_, b)| Arc::new(b.to_vec()))
        });
    }
    let (crop, crop_len) = match crop {
        Some((len, b64)) => (
            (b64.len() <= crate::event::CROP_KEPT_MAX).then(|| b64.to_string()),
            Some(len),
        ),
        None => (None, None),
    };
    let image_len = image.as_ref().map(|i| i.len());
    Ok(Decoded::Plate(PlateRead {
        text: readable.then_some(cleaned),
        color,
        confidence,
        device_time,
        quick: kind == TopicKind::Quick,
        image,
        image_len,
        late: false,
        clock_skew: false,
        offline,
        crop,
        crop_len,
    }))
}

/// Marks a read by how its camera's clock is judged ([`clock`]): `late` (made while
/// the bridge could not hear it) or `clock_skew` (timed by arrival). `brokered_since`:
/// when the broker connection the read came through began (MQTT); `None` for a read
/// the camera pushed itself. Says when the judgement of the camera's clock changes.
pub fn time_read(
    clock: &mut clock::ClockJudge,
    read: &mut PlateRead,
    device: &str,
    arrival: Timestamp,
    brokered_since: Option<Timestamp>,
) {
    let was_skewed = clock.skewed();
    let timing = match brokered_since {
        Some(since) => clock.judge_brokered(read.device_time, read.offline, arrival, since),
        None => clock.judge(read.device_time, read.offline, arrival),
    };
    match timing {
        clock::Timing::Live => {}
        clock::Timing::Late => read.late = true,
        clock::Timing::Skewed => read.clock_skew = true,
    }
    if clock.skewed() != was_skewed {
        let offset_ms = read.device_time.map(|t| arrival.millis() - t.millis());
        tracing::warn!(
            device,
            skewed = clock.skewed(),
            ?offset_ms,
            "camera clock judged"
        );
    }
}

/// The camera id a payload names (the first of the profile's `route_by` paths that is
/// present), as text. `None` for undecodable payloads.
pub fn route_value(profile: &CameraProfile, payload: &[u8]) -> Option<String> {
    if profile.route_by.0.is_empty() {
        return None;
    }
    let text = decode_charset(payload, profile.charset).ok()?;
    let json: Value = serde_json::from_str(&text).ok()?;
    profile
        .route_by
        .0
        .iter()
        .find_map(|p| json_path(&json, p).and_then(scalar_text))
}

/// Per-camera state around the decoder: duplicate suppression, link liveness and
/// "log once per burst" for bad payloads.
#[derive(Debug, Clone)]
pub struct CameraState {
    dedup_ms: i64,
    link_timeout_ms: i64,
    recent: Vec<Seen>,
    last_seen: Option<Timestamp>,
    link: LinkState,
    last_error_log: Option<Timestamp>,
    suppressed_errors: u64,
}

/// A read passed on, remembered for duplicate suppression.
#[derive(Debug, Clone)]
struct Seen {
    text: Option<String>,
    color: PlateColor,
    quick: bool,
    arrived: Timestamp,
    device_time: Option<Timestamp>,
}

/// How long (and how many) reads carrying the camera's time are remembered to
/// recognise resends.
pub const RESEND_MEMORY_MS: i64 = 6 * 3600 * 1000;
pub const RESEND_MEMORY_READS: usize = 512;

/// How long a burst of bad payloads stays quiet after its first log line.
pub const ERROR_BURST_MS: i64 = 10_000;

impl CameraState {
    pub fn new(profile: &CameraProfile) -> Self {
        CameraState {
            dedup_ms: profile.dedup_ms as i64,
            link_timeout_ms: profile.link_timeout_ms as i64,
            recent: Vec::new(),
            last_seen: None,
            link: LinkState::default(),
            last_error_log: None,
            suppressed_errors: 0,
        }
    }

    /// Any message arrived: returns `Some(true)` when the link comes up.
    pub fn seen(&mut self, now: Timestamp) -> Option<bool> {
        self.last_seen = Some(now);
        self.link.set(true)
    }

    /// Periodic check: returns `Some(false)` when the camera has been silent too long.
    /// Cameras without keep-alives (`link_timeout_ms = 0`) are never timed out: a quiet
    /// lane at night is not a dead camera.
    pub fn tick(&mut self, now: Timestamp) -> Option<bool> {
        match self.last_seen {
            Some(t)
                if self.link_timeout_ms > 0 && now.millis() - t.millis() > self.link_timeout_ms =>
            {
                self.link.set(false)
            }
            _ => None,
        }
    }

    /// The broker connection is (back) up. For cameras without keep-alives the broker
    /// connection is the only link state there is.
    pub fn broker_up(&mut self) -> Option<bool> {
        if self.link_timeout_ms == 0 {
            self.link.set(true)
        } else {
            None
        }
    }

    /// The broker connection is gone: every camera behind it is unreachable.
    pub fn broker_lost(&mut self) -> Option<bool> {
        self.last_seen = None;
        self.link.set(false)
    }

    /// True when this read repeats one already passed on: the same text, colour and
    /// quick flag within `dedup_ms`, measured on the camera's clock when the read
    /// carries its time (so a camera resending a recognition minutes later, until it
    /// gets its acknowledgement, is still recognised), else on arrival.
    pub fn is_duplicate(&mut self, read: &PlateRead, now: Timestamp) -> bool {
        let window = self.dedup_ms;
        // Keyed entries live longer: resends come until the camera is acknowledged.
        self.recent.retain(|r| {
            let age = now.millis() - r.arrived.millis();
            age < window || (r.device_time.is_some() && age < RESEND_MEMORY_MS)
        });
        if self.recent.len() >= RESEND_MEMORY_READS {
            self.recent.remove(0);
        }
        let dup = self.recent.iter().any(|r| {
            r.text == read.text
                && r.color == read.color
                && r.quick == read.quick
                && match (r.device_time, read.device_time) {
                    (Some(a), Some(b)) => (a.millis() - b.millis()).abs() < window,
                    _ => now.millis() - r.arrived.millis() < window,
                }
        });
        if !dup {
            self.recent.push(Seen {
                text: read.text.clone(),
                color: read.color,
                quick: read.quick,
                arrived: now,
                device_time: read.device_time,
            });
        }
        dup
    }

    /// A bad payload: returns `Some(n)` (errors suppressed since the last line) when
    /// a log line is due, `None` while inside a burst.
    pub fn payload_error(&mut self, now: Timestamp) -> Option<u64> {
        match self.last_error_log {
            Some(t) if now.millis() - t.millis() < ERROR_BURST_MS => {
                self.suppressed_errors += 1;
                None
            }
            _ => {
                self.last_error_log = Some(now);
                Some(std::mem::take(&mut self.suppressed_errors))
            }
        }
    }
}

/// Sample payloads in the captured shapes, used by the tests and the simulator.
pub mod samples {
    use crate::time::Timestamp;
    use base64::Engine;

    /// A picture as cameras embed it in JSON: base64, or empty when there is none.
    fn base64_or_empty(bytes: Option<&[u8]>) -> String {
        bytes
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
            .unwrap_or_default()
    }

    /// Vzenith MQTT `ivs_result` (shape of the public vzicloud example, trimmed).
    pub fn vzenith_ivs_result(
        sn: &str,
        plate: &str,
        color_type: u8,
        jpeg: Option<&[u8]>,
    ) -> String {
        vzenith_ivs_result_images(sn, plate, color_type, None, jpeg)
    }

    /// [`vzenith_ivs_result`] with the scene (`imageFile`) and the plate crop
    /// (`imageFragmentFile`) each present or empty, as the camera's settings decide.
    pub fn vzenith_ivs_result_images(
        sn: &str,
        plate: &str,
        color_type: u8,
        scene: Option<&[u8]>,
        crop: Option<&[u8]>,
    ) -> String {
        vzenith_ivs_result_made(
            sn,
            plate,
            color_type,
            scene,
            crop,
            Timestamp(1_628_670_619_539),
        )
    }

    /// [`vzenith_ivs_result_images`] made at `made` by the camera's clock (the
    /// simulated cameras' clocks are right).
    pub fn vzenith_ivs_result_made(
        sn: &str,
        plate: &str,
        color_type: u8,
        scene: Option<&[u8]>,
        crop: Option<&[u8]>,
        made: Timestamp,
    ) -> String {
        use chrono::{Datelike, Timelike};
        let local = made.to_local(crate::time::china_standard_time());
        let timeval = serde_json::json!({
            "decday": local.day(), "dechour": local.hour(), "decmin": local.minute(),
            "decmon": local.month(), "decsec": local.second(), "decyear": local.year(),
            "sec": made.millis().div_euclid(1000), "usec": made.millis().rem_euclid(1000) * 1000
        });
        let license = base64::engine::general_purpose::STANDARD.encode(plate.as_bytes());
        let (image, scene) = (base64_or_empty(crop), base64_or_empty(scene));
        serde_json::json!({
            "id": "iUA4fO7yCGrHZO2C", "bv": 12378, "sn": sn, "name": "ivs_result",
            "version": "1.0", "timestamp": 1_621_926_595,
            "payload": {"AlarmInfoPlate": {
                "channel": 0, "deviceName": "0001", "ipaddr": "192.168.6.94",
                "result": {"PlateResult": {
                    "bright": 0, "carBright": 0, "carColor": 0,
                    "plates": [{"color": color_type, "license": "", "plate_width": 304, "type": 14,
                                "pos": {"bottom": 422, "left": 432, "right": 634, "top": 322}}],
                    "colorType": color_type, "colorValue": 0, "confidence": 100, "direction": 0,
                    "imageFragmentFile": image, "imageFile": scene,
                    "is_fake_plate": 0, "isoffline": 0,
                    "license": license, "license_ext_type": 0,
                    "location": {"RECT": {"bottom": 555, "left": 954, "right": 1109, "top": 502}},
                    "plateid": 594_785,
                    "timeStamp": {"Timeval": timeval},
                    "timeUsed": 3_879_571, "triggerType": 4, "type": 1
                }},
                "serialno": sn, "user_data": ""
            }}
        })
        .to_string()
    }

    /// The serial number of the camera whose legacy body a test does not name.
    pub const VZENITH_SERIAL: &str = "a1b2c3d4-e5f60718";

    /// Legacy `AlarmInfoPlate` push body from camera [`VZENITH_SERIAL`], with the plate
    /// crop (`imageFragmentFile`) only.
    pub fn vzenith_alarm_info_plate(
        plate: &str,
        color_type: u8,
        trigger_type: u8,
        jpeg: Option<&[u8]>,
    ) -> String {
        vzenith_alarm_info_plate_full(VZENITH_SERIAL, plate, color_type, trigger_type, None, jpeg)
    }

    /// The legacy push body with every variable part given: the camera's serial number,
    /// the scene (`imageFile`) and the plate crop (`imageFragmentFile`) each present or
    /// empty.
    pub fn vzenith_alarm_info_plate_full(
        serialno: &str,
        plate: &str,
        color_type: u8,
        trigger_type: u8,
        scene: Option<&[u8]>,
        crop: Option<&[u8]>,
    ) -> String {
        let (image, scene) = (base64_or_empty(crop), base64_or_empty(scene));
        serde_json::json!({"AlarmInfoPlate": {
            "channel": 0, "deviceName": "IVS", "ipaddr": "192.168.1.100", "serialno": serialno,
            "result": {"PlateResult": {
                "license": plate, "colorType": color_type, "colorValue": 0, "confidence": 92,
                "bright": 0, "carBright": 0, "carColor": 0, "direction": 0,
                "location": {"RECT": {"left": 954, "top": 502, "right": 1109, "bottom": 555}},
                "plateid": 1201, "timeUsed": 120, "triggerType": trigger_type, "type": 1,
                "timeStamp": {"Timeval": {"sec": 1_628_670_619u64, "usec": 0}},
                "imageFragmentFile": image, "imageFile": scene
            }}
        }})
        .to_string()
    }

    /// Hikvision `EventNotificationAlert` for an ANPR event (shape of ISAPI pushes:
    /// namespace, channel, dateTime with offset, ANPR block, picture names).
    pub fn hikvision_anpr_xml(plate: &str, color: &str, date_time: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<EventNotificationAlert version="2.0" xmlns="http://www.isapi.org/ver20/XMLSchema">
<ipAddress>192.168.1.64</ipAddress>
<portNo>80</portNo>
<protocol>HTTP</protocol>
<macAddress>44:19:b6:00:00:01</macAddress>
<channelID>1</channelID>
<dateTime>{date_time}</dateTime>
<activePostCount>1</activePostCount>
<eventType>ANPR</eventType>
<eventState>active</eventState>
<eventDescription>ANPR</eventDescription>
<channelName>Camera 01</channelName>
<ANPR>
<country>CN</country>
<licensePlate>{plate}</licensePlate>
<line>1</line>
<direction>forward</direction>
<confidenceLevel>96</confidenceLevel>
<plateType>92TypeCivil</plateType>
<plateColor>{color}</plateColor>
<licenseBright>0</licenseBright>
<dangmark>no</dangmark>
<twoWheelVehicle>no</twoWheelVehicle>
<threeWheelVehicle>no</threeWheelVehicle>
<plateCharBelieve>96,95,97,98,96,99,97</plateCharBelieve>
<speedLimit>0</speedLimit>
<illegalInfo><illegalCode>0</illegalCode><illegalName>none</illegalName></illegalInfo>
<vehicleType>vehicle</vehicleType>
<detectDir>8</detectDir>
<pilotsafebelt>unknown</pilotsafebelt>
<vehicleInfo><index>1</index><colorDepth>2</colorDepth><color>white</color><length>0</length><vehicleLogoRecog>1036</vehicleLogoRecog></vehicleInfo>
<pictureInfoList>
<pictureInfo><fileName>detectionPicture.jpg</fileName><type>detectionPicture</type><dataType>0</dataType></pictureInfo>
<pictureInfo><fileName>licensePlatePicture.jpg</fileName><type>licensePlatePicture</type><dataType>0</dataType></pictureInfo>
</pictureInfoList>
</ANPR>
<UUID>9f3c0a10-0000-1000-8000-4419b6000001</UUID>
</EventNotificationAlert>
"#
        )
    }

    /// A Hikvision multipart push: the alert part, then the scene and the plate crop.
    /// Returns (Content-Type header, body).
    pub fn hikvision_multipart(
        xml: &str,
        scene: Option<&[u8]>,
        crop: Option<&[u8]>,
    ) -> (String, Vec<u8>) {
        let boundary = "MIME_boundary_7d3a";
        let mut body = Vec::new();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"anpr.xml\"; filename=\"anpr.xml\"\r\n\
                 Content-Type: application/xml\r\nContent-Length: {}\r\n\r\n",
                xml.len()
            )
            .as_bytes(),
        );
        body.extend_from_slice(xml.as_bytes());
        for (name, data) in [("detectionPicture", scene), ("licensePlatePicture", crop)] {
            if let Some(data) = data {
                body.extend_from_slice(
                    format!(
                        "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}.jpg\"\r\n\
                         Content-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                        data.len()
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(data);
            }
        }
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        (format!("multipart/form-data; boundary={boundary}"), body)
    }

    /// Dahua ITC `TollgateInfo` push (shape of public integrations, trimmed).
    pub fn dahua_tollgate(
        plate: &str,
        color: &str,
        accurate_time: &str,
        scene: Option<&[u8]>,
    ) -> String {
        let scene = base64_or_empty(scene);
        serde_json::json!({"Picture": {
            "CutoutPic": {"Content": "", "PicName": ""},
            "NormalPic": {"Content": scene, "PicName": "normal.jpg"},
            "Plate": {"BoundingBox": [1008, 592, 1208, 648], "Channel": 0, "Confidence": 97,
                      "IsExist": true, "PlateColor": color, "PlateNumber": plate, "PlateType": "Normal",
                      "Region": "", "UploadNum": 1},
            "SnapInfo": {"AccurateTime": accurate_time, "AllowUser": false, "DefenceCode": "",
                         "DeviceID": "dahua-itc-01", "Direction": "Obverse", "InCarPeopleNum": 0,
                         "LanNo": 1, "OpenStrobe": false, "SnapTime": accurate_time.get(..19).unwrap_or(accurate_time),
                         "TriggerSource": "Video"},
            "Vehicle": {"VehicleBoundingBox": [600, 100, 1600, 1000], "VehicleColor": "White",
                        "VehicleSeries": "", "VehicleSign": "Unknown", "VehicleType": "Car"}
        }})
        .to_string()
    }

    /// Dahua keep-alive.
    pub fn dahua_keep_alive(device_id: &str) -> String {
        serde_json::json!({"Active": "keepAlive", "DeviceID": device_id, "IP": "192.168.1.108"})
            .to_string()
    }

    /// QianYi `AlarmInfoPlate`, GBK-encoded as the camera sends it.
    pub fn qianyi_alarm_info_plate(
        plate: &str,
        color_type: u8,
        sec: i64,
        offline: bool,
        jpeg: Option<&[u8]>,
    ) -> Vec<u8> {
        let image = base64_or_empty(jpeg);
        let text = serde_json::json!({"AlarmInfoPlate": {
            "channel": 0, "deviceName": "QY-LPR", "ipaddr": "192.168.1.100", "serialno": "QY20230001",
            "result": {"PlateResult": {
                "license": plate, "colorType": color_type, "confidence": 95, "direction": 0,
                "isoffline": u8::from(offline), "plateid": 77, "triggerType": 8, "type": 1,
                "timeStamp": {"Timeval": {"sec": sec, "usec": 0}},
                "imageFile": image, "imageFragmentFile": ""
            }}
        }})
        .to_string();
        encoding_rs::GBK.encode(&text).0.into_owned()
    }

    /// HX `plateResult` message (assumed field names, see hx-mqtt.toml).
    pub fn hx_plate_result(cam_id: &str, plate: &str, color_type: u8) -> String {
        serde_json::json!({"camId": cam_id, "plateResult": {
            "license": plate, "colorType": color_type, "confidence": 95,
            "timeStamp": 1_628_670_619u64, "imageFile": ""
        }})
        .to_string()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::driver::profile::{BUILTIN, parse_profile};
    use std::path::Path;

    pub(crate) fn profile(name: &str) -> CameraProfile {
        let text = BUILTIN.iter().find(|(n, _)| *n == name).unwrap().1;
        parse_profile(text, name, Path::new(name))
            .unwrap()
            .camera
            .unwrap()
    }

    pub(crate) fn plate(d: Decoded) -> PlateRead {
        match d {
            Decoded::Plate(p) => p,
            other => panic!("not a plate: {other:?}"),
        }
    }

    #[test]
    fn vzenith_public_sample_license_decodes_from_base64_utf8() {
        // The public doc's own sample: "license": "6LWjR1o3UzEz", colorType 1.
        let p = profile("vzenith-mqtt");
        let body = r#"{"id":"x","sn":"265e1040-85e01fb7","name":"ivs_result","payload":{"AlarmInfoPlate":
            {"result":{"PlateResult":{"plates":[{"color":4}],"colorType":1,"confidence":100,
            "license":"6LWjR1o3UzEz","timeStamp":{"Timeval":{"sec":1628670619}},"triggerType":4}}}}}"#;
        let r = plate(decode(&p, TopicKind::Result, body.as_bytes()).unwrap());
        assert_eq!(r.text.as_deref(), Some("赣GZ7S13"));
        assert_eq!(r.color, PlateColor::Blue);
        assert_eq!(r.confidence, Some(100));
        assert_eq!(r.device_time, Some(Timestamp(1_628_670_619_000)));
        assert!(!r.quick);
    }

    #[test]
    fn vzenith_quick_result_is_flagged_and_image_decoded() {
        let p = profile("vzenith-mqtt");
        let body =
            samples::vzenith_ivs_result("sn1", "闽A12345", 2, Some(&[0xFF, 0xD8, 0xFF, 0xD9]));
        let r = plate(decode(&p, TopicKind::Quick, body.as_bytes()).unwrap());
        assert!(r.quick);
        assert_eq!(r.color, PlateColor::Yellow);
        assert_eq!(
            r.image.as_deref().map(|v| v.as_slice()),
            Some(&[0xFF, 0xD8, 0xFF, 0xD9][..])
        );
        assert_eq!(r.image_len, Some(4));
    }

    #[test]
    fn vzenith_keep_alive_is_only_a_sign_of_life() {
        let p = profile("vzenith-mqtt");
        assert_eq!(
            decode(&p, TopicKind::Heartbeat, b"{\"name\":\"keep_alive\"}").unwrap(),
            Decoded::Alive
        );
    }

    #[test]
    fn unreadable_plate_is_a_read_without_text() {
        let p = profile("vzenith-mqtt");
        let body = samples::vzenith_ivs_result("sn1", "_无_", 0, None);
        let r = plate(decode(&p, TopicKind::Result, body.as_bytes()).unwrap());
        assert_eq!(r.text, None);
        assert_eq!(r.color, PlateColor::Unknown);
    }

    #[test]
    fn legacy_alarm_info_plate_decodes_plain_text_and_colour_codes() {
        let p = profile("vzenith-legacy-alarminfoplate");
        for (code, color) in [
            (0, PlateColor::Unknown),
            (1, PlateColor::Blue),
            (2, PlateColor::Yellow),
            (3, PlateColor::White),
            (4, PlateColor::Black),
            (5, PlateColor::Green),
        ] {
            let body = samples::vzenith_alarm_info_plate("京A12345", code, 8, Some(b"jpeg"));
            let r = plate(decode(&p, TopicKind::Result, body.as_bytes()).unwrap());
            assert_eq!(r.text.as_deref(), Some("京A12345"));
            assert_eq!(r.color, color, "colorType {code}");
            assert_eq!(r.image_len, Some(4));
        }
    }

    #[test]
    fn vzenith_scene_is_reported_and_the_crop_beside_it_only_kept_for_the_journal() {
        let scene = [0xFF, 0xD8, 1, 2, 3, 0xFF, 0xD9];
        let crop = [0xFF, 0xD8, 9, 0xFF, 0xD9];
        for (name, body) in [
            (
                "vzenith-mqtt",
                samples::vzenith_ivs_result_images("sn1", "闽A12345", 1, Some(&scene), Some(&crop)),
            ),
            (
                "vzenith-legacy-alarminfoplate",
                samples::vzenith_alarm_info_plate_full(
                    samples::VZENITH_SERIAL,
                    "闽A12345",
                    1,
                    1,
                    Some(&scene),
                    Some(&crop),
                ),
            ),
        ] {
            let r = plate(decode(&profile(name), TopicKind::Result, body.as_bytes()).unwrap());
            assert_eq!(
                r.image.as_deref().map(|v| v.as_slice()),
                Some(&scene[..]),
                "{name}"
            );
            assert_eq!(r.image_len, Some(scene.len()));
            assert_eq!(r.crop_len, Some(crop.len()));
            assert_eq!(
                r.crop.as_deref(),
                Some(
                    base64::engine::general_purpose::STANDARD
                        .encode(crop)
                        .as_str()
                )
            );
            // The journal line keeps the crop and the sizes, never the scene's bytes.
            let line = serde_json::to_string(&r).unwrap();
            assert!(
                line.contains("\"crop\":") && line.contains("\"image_len\":7"),
                "{line}"
            );
        }
    }

    #[test]
    fn vzenith_crop_alone_is_reported_as_the_fallback_and_newer_field_names_work() {
        let crop = [0xFF, 0xD8, 9, 0xFF, 0xD9];
        let body = samples::vzenith_ivs_result_images("sn1", "闽A12345", 1, None, Some(&crop));
        let r =
            plate(decode(&profile("vzenith-mqtt"), TopicKind::Result, body.as_bytes()).unwrap());
        assert_eq!(r.image.as_deref().map(|v| v.as_slice()), Some(&crop[..]));
        assert_eq!((r.crop, r.crop_len), (None, None));
        // Firmware naming the images full_image_content / small_image_content.
        let body = body
            .replace("\"imageFile\"", "\"full_image_content\"")
            .replace("\"imageFragmentFile\"", "\"small_image_content\"");
        let r =
            plate(decode(&profile("vzenith-mqtt"), TopicKind::Result, body.as_bytes()).unwrap());
        assert_eq!(r.image_len, Some(crop.len()));
        let scene = [0xFF, 0xD8, 7, 7, 0xFF, 0xD9];
        let both =
            samples::vzenith_ivs_result_images("sn1", "闽A12345", 1, Some(&scene), Some(&crop))
                .replace("\"imageFile\"", "\"full_image_content\"")
                .replace("\"imageFragmentFile\"", "\"small_image_content\"");
        let r =
            plate(decode(&profile("vzenith-mqtt"), TopicKind::Result, both.as_bytes()).unwrap());
        assert_eq!(r.image_len, Some(scene.len()));
        assert_eq!(r.crop_len, Some(crop.len()));
    }

    #[test]
    fn gbk_payload_decodes_when_the_profile_says_gbk() {
        let mut p = profile("vzenith-legacy-alarminfoplate");
        p.charset = Charset::Gbk;
        let body = samples::vzenith_alarm_info_plate("粤B12345", 1, 1, None);
        let (gbk, _, _) = encoding_rs::GBK.encode(&body);
        let r = plate(decode(&p, TopicKind::Result, &gbk).unwrap());
        assert_eq!(r.text.as_deref(), Some("粤B12345"));
        p.charset = Charset::Utf8;
        assert_eq!(
            decode(&p, TopicKind::Result, &gbk),
            Err(PayloadError::Charset("UTF-8"))
        );
    }

    #[test]
    fn hx_plate_result_decodes_and_other_messages_keep_alive() {
        let p = profile("hx-mqtt");
        let body = samples::hx_plate_result("cam9", "沪C88888", 5);
        let r = plate(decode(&p, TopicKind::Result, body.as_bytes()).unwrap());
        assert_eq!(r.text.as_deref(), Some("沪C88888"));
        assert_eq!(r.color, PlateColor::Green);
        assert_eq!(
            decode(
                &p,
                TopicKind::Result,
                br#"{"camId":"cam9","status":"online"}"#
            )
            .unwrap(),
            Decoded::Alive
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let p = profile("vzenith-mqtt");
        for junk in [
            &b"\xff\xfe\x00"[..],
            b"not json",
            b"{}",
            b"[1,2]",
            br#"{"payload":{"AlarmInfoPlate":{"result":{"PlateResult":{"license":5}}}}}"#,
            br#"{"payload":{"AlarmInfoPlate":{"result":{"PlateResult":{"license":"%%%"}}}}}"#,
        ] {
            assert!(decode(&p, TopicKind::Result, junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn json_paths_index_arrays() {
        let v: Value = serde_json::json!({"a": {"b": [{"c": 1}, {"c": 2}]}});
        assert_eq!(json_path(&v, "a.b[1].c"), Some(&Value::from(2)));
        assert_eq!(json_path(&v, "a.b[5].c"), None);
        assert_eq!(json_path(&v, "a.x"), None);
    }

    #[test]
    fn repeated_reads_are_dropped_within_the_window() {
        let p = profile("vzenith-mqtt");
        let mut s = CameraState::new(&p);
        let mut read = PlateRead::text("闽A12345", PlateColor::Blue);
        assert!(!s.is_duplicate(&read, Timestamp(0)));
        assert!(s.is_duplicate(&read, Timestamp(1000)));
        read.quick = true;
        assert!(
            !s.is_duplicate(&read, Timestamp(1000)),
            "quick and full are different facts"
        );
        read.quick = false;
        assert!(!s.is_duplicate(&read, Timestamp(3001)));
    }

    #[test]
    fn silent_camera_goes_down_and_comes_back() {
        let p = profile("vzenith-mqtt");
        let mut s = CameraState::new(&p);
        assert_eq!(s.tick(Timestamp(0)), None, "never seen: nothing to say");
        assert_eq!(s.seen(Timestamp(0)), Some(true));
        assert_eq!(s.tick(Timestamp(15_000)), None);
        assert_eq!(s.tick(Timestamp(15_001)), Some(false));
        assert_eq!(s.seen(Timestamp(16_000)), Some(true));
    }

    #[test]
    fn camera_without_keep_alives_follows_the_broker_only() {
        let mut p = profile("hx-mqtt");
        p.link_timeout_ms = 0;
        let mut s = CameraState::new(&p);
        assert_eq!(s.broker_up(), Some(true));
        assert_eq!(s.seen(Timestamp(0)), None);
        assert_eq!(
            s.tick(Timestamp(10_000_000)),
            None,
            "silence is not a fault"
        );
        assert_eq!(s.broker_lost(), Some(false));
        assert_eq!(s.broker_up(), Some(true));
        let v = CameraState::new(&profile("vzenith-mqtt")).broker_up();
        assert_eq!(v, None, "keep-alive cameras must show themselves");
    }

    #[test]
    fn payload_errors_log_once_per_burst() {
        let p = profile("vzenith-mqtt");
        let mut s = CameraState::new(&p);
        assert_eq!(s.payload_error(Timestamp(0)), Some(0));
        assert_eq!(s.payload_error(Timestamp(10)), None);
        assert_eq!(s.payload_error(Timestamp(20)), None);
        assert_eq!(s.payload_error(Timestamp(10_000)), Some(2));
    }

    #[test]
    fn five_second_keep_alives_hold_the_link_for_a_minute_and_silence_drops_it() {
        let p = profile("vzenith-mqtt");
        assert_eq!(p.link_timeout_ms, 15_000);
        assert!(
            p.topics
                .heartbeat
                .0
                .contains(&"$/device/{id}/message/up/keep_alive".to_string()),
            "{:?}",
            p.topics.heartbeat
        );
        let mut st = CameraState::new(&p);
        assert_eq!(st.seen(Timestamp(0)), Some(true), "the recognition");
        // Keep-alives every 5 s for 60 s, ticks every 500 ms.
        for ms in (500..=60_000).step_by(500) {
            if ms % 5_000 == 0 {
                assert_eq!(st.seen(Timestamp(ms)), None);
            }
            assert_eq!(st.tick(Timestamp(ms)), None, "down at {ms} ms");
        }
        assert_eq!(st.tick(Timestamp(75_000)), None, "15 s after the last");
        assert_eq!(st.tick(Timestamp(75_001)), Some(false));
    }

    #[test]
    fn a_shared_topic_payload_names_its_camera_by_serialno() {
        let p = profile("vzenith-legacy-alarminfoplate");
        let body = samples::vzenith_alarm_info_plate_full("sn-9", "闽A1", 1, 1, None, None);
        assert_eq!(route_value(&p, body.as_bytes()).as_deref(), Some("sn-9"));
        assert_eq!(
            route_value(&p, br#"{"serialno":"top-level"}"#).as_deref(),
            Some("top-level")
        );
        assert_eq!(route_value(&p, b"not json"), None);
        assert_eq!(route_value(&profile("hx-mqtt"), body.as_bytes()), None);
    }
}
