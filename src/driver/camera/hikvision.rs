//! Hikvision ISAPI event push ("HTTP listening"): `multipart/form-data` with an
//! `EventNotificationAlert` part (XML, on newer firmware sometimes JSON) and JPEG
//! parts (`detectionPicture`, `licensePlatePicture`), or the XML alone. The XML is
//! turned into a JSON value (element → object, text → string, repeated element →
//! array, namespaces and attributes dropped), so the profile's field paths read it
//! like any other camera's message.
//!
//! Hikvision does not read the answer and does not resend: 200 with an empty body,
//! promptly. Barrier control is a separate ISAPI call (`/ISAPI/Parking/…/barrierGate`,
//! `ctrlMode open`) that the bridge never makes.

use super::PayloadError;
use super::push::{Ack, Reply, Unpacked};
use bytes::Bytes;
use quick_xml::events::Event;
use serde_json::{Map, Value};

pub const GATE_OPEN_FORMS: &[&str] = &["barriergate", "ctrlmode", "<open"];

/// Deeper XML than this is refused (no camera nests that far).
const MAX_DEPTH: usize = 32;
/// The name the alert has in the JSON value, whatever shape it came in.
pub const ROOT: &str = "EventNotificationAlert";

/// The only answer: 200, empty.
pub fn reply(_why: Ack) -> Reply {
    Reply {
        status: 200,
        content_type: "text/plain",
        body: "",
    }
}

/// Unpacks a push: multipart (alert part + pictures) or a bare XML/JSON alert.
pub async fn unpack(content_type: Option<&str>, body: Bytes) -> Result<Unpacked, PayloadError> {
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    if !ct.starts_with("multipart/") {
        return Ok(Unpacked {
            json: alert(&body)?,
            parts: Vec::new(),
        });
    }
    let boundary = multer::parse_boundary(content_type.unwrap_or(""))
        .map_err(|e| PayloadError::Multipart(e.to_string()))?;
    let stream = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut json = None;
    let mut parts = Vec::new();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| PayloadError::Multipart(e.to_string()))?
    {
        let name = field
            .name()
            .or(field.file_name())
            .unwrap_or_default()
            .to_string();
        let is_picture = field
            .content_type()
            .is_some_and(|m| m.type_().as_str() == "image");
        let data = field
            .bytes()
            .await
            .map_err(|e| PayloadError::Multipart(e.to_string()))?;
        if !is_picture && json.is_none() && looks_like_alert(&data) {
            json = Some(alert(&data)?);
        } else {
            parts.push((name, data));
        }
    }
    match json {
        Some(json) => Ok(Unpacked { json, parts }),
        None => Err(PayloadError::MissingPart(ROOT)),
    }
}

fn looks_like_alert(data: &[u8]) -> bool {
    let head = &data[..data.len().min(512)];
    let start = head.iter().position(|b| !b.is_ascii_whitespace());
    matches!(start.map(|i| head[i]), Some(b'<' | b'{'))
}

/// One alert body (XML, or ISAPI JSON) as `{"EventNotificationAlert": {...}}`.
pub fn alert(data: &[u8]) -> Result<Value, PayloadError> {
    let text = text_of(data)?;
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') {
        let v: Value =
            serde_json::from_str(trimmed).map_err(|e| PayloadError::Json(e.to_string()))?;
        return Ok(if v.get(ROOT).is_some() {
            v
        } else {
            let mut m = Map::new();
            m.insert(ROOT.to_string(), v);
            Value::Object(m)
        });
    }
    xml_to_value(trimmed)
}

/// UTF-8, or GBK when the XML declaration says GB2312/GBK (some older firmware).
fn text_of(data: &[u8]) -> Result<String, PayloadError> {
    let head = String::from_utf8_lossy(&data[..data.len().min(100)]).to_ascii_lowercase();
    let declared_gbk = head.starts_with("<?xml")
        && head
            .split("?>")
            .next()
            .is_some_and(|d| d.contains("gb2312") || d.contains("gbk") || d.contains("gb18030"));
    let charset = if declared_gbk {
        crate::driver::profile::Charset::Gbk
    } else {
        crate::driver::profile::Charset::Utf8
    };
    super::decode_charset(data, charset)
}

/// Element tree → JSON value. Attributes and namespace prefixes are dropped; an
/// element with only text becomes a string, one with children an object; a name
/// that repeats becomes an array.
pub fn xml_to_value(text: &str) -> Result<Value, PayloadError> {
    let mut reader = quick_xml::Reader::from_str(text);
    let config = reader.config_mut();
    config.trim_text(true);
    config.check_end_names = true;
    let mut stack: Vec<(String, Map<String, Value>, String)> = Vec::new();
    let mut root: Option<Value> = None;
    loop {
        match reader.read_event() {
            Err(e) => return Err(PayloadError::Xml(e.to_string())),
            Ok(Event::Start(e)) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(PayloadError::Xml("nested too deep".into()));
                }
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                stack.push((name, Map::new(), String::new()));
            }
            Ok(Event::Empty(e)) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                match stack.last_mut() {
                    Some((_, children, _)) => insert(children, name, Value::String(String::new())),
                    None => root = Some(single(name, Value::String(String::new()))),
                }
            }
            Ok(Event::Text(t)) => {
                let s = t.decode().map_err(|e| PayloadError::Xml(e.to_string()))?;
                let s = quick_xml::escape::unescape(&s)
                    .map_err(|e| PayloadError::Xml(e.to_string()))?;
                if let Some((_, _, text)) = stack.last_mut() {
                    text.push_str(&s);
                }
            }
            Ok(Event::GeneralRef(r)) => {
                // Entity and character references between text pieces.
                let name = r.decode().map_err(|e| PayloadError::Xml(e.to_string()))?;
                let reference = format!("&{name};");
                let s = quick_xml::escape::unescape(&reference)
                    .map_err(|e| PayloadError::Xml(e.to_string()))?;
                if let Some((_, _, text)) = stack.last_mut() {
                    text.push_str(&s);
                }
            }
            Ok(Event::CData(t)) => {
                if let Some((_, _, text)) = stack.last_mut() {
                    text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Ok(Event::End(_)) => {
                let Some((name, children, text)) = stack.pop() else {
                    return Err(PayloadError::Xml("unbalanced end tag".into()));
                };
                let value = if children.is_empty() {
                    Value::String(text)
                } else {
                    Value::Object(children)
                };
                match stack.last_mut() {
                    Some((_, parent, _)) => insert(parent, name, value),
                    None => root = Some(single(name, value)),
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(PayloadError::Xml("truncated: elements left open".into()));
    }
    root.ok_or_else(|| PayloadError::Xml("no element".into()))
}

fn single(name: String, value: Value) -> Value {
    let mut m = Map::new();
    m.insert(name, value);
    Value::Object(m)
}

fn insert(map: &mut Map<String, Value>, name: String, value: Value) {
    match map.get_mut(&name) {
        None => {
            map.insert(name, value);
        }
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
    }
}
