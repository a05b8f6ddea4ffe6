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
                    Value::String(text.trim().to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::camera::samples;
    use crate::driver::camera::tests::{plate, profile};
    use crate::driver::camera::{Context, Decoded, TopicKind, decode_value};
    use crate::event::PlateRead;
    use crate::plate::PlateColor;
    use crate::time::Timestamp;

    const T: &str = "2024-05-01T08:30:00+08:00";
    const T_MS: i64 = 1_714_523_400_000;

    async fn read(ct: Option<&str>, body: Vec<u8>) -> Result<PlateRead, PayloadError> {
        let p = profile("hikvision-isapi-anpr");
        let u = unpack(ct, Bytes::from(body)).await?;
        let ctx = Context {
            parts: &u.parts,
            ..Context::default()
        };
        decode_value(&p, TopicKind::Result, &u.json, &ctx).map(plate)
    }

    #[tokio::test]
    async fn multipart_alert_gives_plate_colour_time_and_the_scene_picture() {
        let xml = samples::hikvision_anpr_xml("京A12345", "blue", T);
        let (ct, body) = samples::hikvision_multipart(&xml, Some(b"scene-jpeg"), Some(b"crop"));
        let r = read(Some(&ct), body).await.unwrap();
        assert_eq!(r.text.as_deref(), Some("京A12345"));
        assert_eq!(r.color, PlateColor::Blue);
        assert_eq!(r.confidence, Some(96));
        assert_eq!(r.device_time, Some(Timestamp(T_MS)));
        assert_eq!(
            r.image.as_deref().map(Vec::as_slice),
            Some(&b"scene-jpeg"[..])
        );
        // Without the scene, the crop.
        let (ct, body) = samples::hikvision_multipart(&xml, None, Some(b"crop"));
        let r = read(Some(&ct), body).await.unwrap();
        assert_eq!(r.image_len, Some(4));
    }

    #[tokio::test]
    async fn plain_xml_without_pictures_is_a_read() {
        let xml = samples::hikvision_anpr_xml("粤B8888D", "newEnergyGreen", T);
        let r = read(Some("application/xml"), xml.into_bytes())
            .await
            .unwrap();
        assert_eq!(
            (r.text.as_deref(), r.color, r.image),
            (Some("粤B8888D"), PlateColor::Green, None)
        );
        let xml = samples::hikvision_anpr_xml("粤BD12345", "newEnergyYellowGreen", T);
        let r = read(None, xml.into_bytes()).await.unwrap();
        assert_eq!(r.color, PlateColor::YellowGreen);
    }

    #[tokio::test]
    async fn no_plate_texts_and_colour_prefixed_plates() {
        for text in ["noPlate", "unknown", ""] {
            let xml = samples::hikvision_anpr_xml(text, "unknown", T);
            let r = read(None, xml.into_bytes()).await.unwrap();
            assert_eq!(r.text, None, "{text:?}");
        }
        // 黑 also opens Heilongjiang's plates: a colour prefix only before a whole plate.
        for (text, plate, color) in [
            ("黄沪C12345", "沪C12345", PlateColor::Yellow),
            ("黑A84825", "黑A84825", PlateColor::Unknown),
            ("黑黑A84825", "黑A84825", PlateColor::Black),
            ("黑ND92848", "黑ND92848", PlateColor::Unknown),
            ("黑黑ND92848", "黑ND92848", PlateColor::Black),
            ("白A84825", "A84825", PlateColor::White),
        ] {
            let xml = samples::hikvision_anpr_xml(text, "unknown", T);
            let r = read(None, xml.into_bytes()).await.unwrap();
            assert_eq!((r.text.as_deref(), r.color), (Some(plate), color), "{text}");
        }
        // The colour field wins over the prefix when it names one.
        let xml = samples::hikvision_anpr_xml("蓝沪C12345", "yellow", T);
        let r = read(None, xml.into_bytes()).await.unwrap();
        assert_eq!(r.color, PlateColor::Yellow);
    }

    #[tokio::test]
    async fn other_events_only_keep_the_camera_alive() {
        let p = profile("hikvision-isapi-anpr");
        let xml = r#"<EventNotificationAlert version="2.0"><ipAddress>192.168.1.64</ipAddress>
            <dateTime>2024-05-01T08:30:00+08:00</dateTime><activePostCount>0</activePostCount>
            <eventType>videoloss</eventType><eventState>inactive</eventState></EventNotificationAlert>"#;
        let u = unpack(None, Bytes::from(xml)).await.unwrap();
        assert_eq!(
            decode_value(&p, TopicKind::Result, &u.json, &Context::default()).unwrap(),
            Decoded::Alive
        );
    }

    #[tokio::test]
    async fn unknown_elements_attributes_and_repeats_are_tolerated() {
        let xml = samples::hikvision_anpr_xml("京A12345", "blue", T).replace(
            "<ANPR>",
            "<ANPR><futureThing a=\"1\"><x>1</x><x>2</x></futureThing><empty/><note>a &amp; b</note>",
        );
        let r = read(None, xml.into_bytes()).await.unwrap();
        assert_eq!(r.text.as_deref(), Some("京A12345"));
        let v = alert(b"<a><b>1</b><b>2</b><c>x &lt; y</c></a>").unwrap();
        assert_eq!(v, serde_json::json!({"a": {"b": ["1", "2"], "c": "x < y"}}));
    }

    #[tokio::test]
    async fn isapi_json_alerts_read_like_xml() {
        let json = serde_json::json!({"ipAddress": "192.168.1.64", "dateTime": T, "eventType": "ANPR",
            "ANPR": {"licensePlate": "京A12345", "plateColor": "blue", "confidenceLevel": 90}});
        let r = read(Some("application/json"), json.to_string().into_bytes())
            .await
            .unwrap();
        assert_eq!(r.text.as_deref(), Some("京A12345"));
    }

    #[tokio::test]
    async fn broken_pushes_are_errors_not_panics() {
        let xml = samples::hikvision_anpr_xml("京A12345", "blue", T);
        let (ct, body) = samples::hikvision_multipart(&xml, Some(&[0xFF; 4000]), None);
        // Truncated multipart (connection cut mid-picture).
        let cut = body[..body.len() - 1000].to_vec();
        assert!(matches!(
            read(Some(&ct), cut).await,
            Err(PayloadError::Multipart(_))
        ));
        // Multipart without an alert part.
        let (ct2, only_pictures) = samples::hikvision_multipart("", Some(b"x"), None);
        assert!(read(Some(&ct2), only_pictures).await.is_err());
        // A boundary-less multipart header.
        assert!(
            read(Some("multipart/form-data"), body.clone())
                .await
                .is_err()
        );
        // Truncated XML.
        assert!(matches!(
            read(None, xml.as_bytes()[..xml.len() / 2].to_vec()).await,
            Err(PayloadError::Xml(_))
        ));
        // Mismatched tags.
        assert!(read(None, b"<a><b></a></b>".to_vec()).await.is_err());
        // Wrong charset: GBK bytes in a document that says UTF-8.
        let gbk = encoding_rs::GBK.encode(&xml).0.into_owned();
        assert!(matches!(
            read(None, gbk).await,
            Err(PayloadError::Charset("UTF-8"))
        ));
        // … but a GB2312 declaration is honoured.
        let declared = xml.replace("encoding=\"UTF-8\"", "encoding=\"GB2312\"");
        let gbk = encoding_rs::GBK.encode(&declared).0.into_owned();
        assert_eq!(
            read(None, gbk).await.unwrap().text.as_deref(),
            Some("京A12345")
        );
        // An ANPR alert without a plate element: a bad payload, not a plateless car.
        let no_plate = xml.replace("<licensePlate>京A12345</licensePlate>", "");
        assert!(matches!(
            read(None, no_plate.into_bytes()).await,
            Err(PayloadError::Missing(_))
        ));
        // Deep nesting.
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(read(None, deep.into_bytes()).await.is_err());
        assert!(read(None, b"garbage".to_vec()).await.is_err());
    }
}
