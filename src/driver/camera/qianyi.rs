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

#[cfg(test)]
mod tests {
    use super::super::push::PushVendor;
    use crate::driver::camera::tests::{plate, profile};
    use crate::driver::camera::{Context, Decoded, PayloadError, TopicKind, decode_value, samples};
    use crate::plate::PlateColor;
    use crate::time::Timestamp;
    use bytes::Bytes;

    async fn decode(body: Vec<u8>) -> Result<Decoded, PayloadError> {
        let p = profile("qianyi-alarminfoplate");
        let u = PushVendor::Qianyi
            .unpack(None, Bytes::from(body), p.charset)
            .await?;
        decode_value(&p, TopicKind::Result, &u.json, &Context::default())
    }

    #[tokio::test]
    async fn gbk_alarm_info_plate_decodes_with_its_colour_codes() {
        for (code, color) in [
            (1, PlateColor::Blue),
            (2, PlateColor::Yellow),
            (5, PlateColor::Green),
            (6, PlateColor::YellowGreen),
            (7, PlateColor::Special),
            (9, PlateColor::Unknown),
        ] {
            let body = samples::qianyi_alarm_info_plate(
                "粤B12345",
                code,
                1_714_523_400,
                false,
                Some(b"jpg"),
            );
            let r = plate(decode(body).await.unwrap());
            assert_eq!(r.text.as_deref(), Some("粤B12345"));
            assert_eq!(r.color, color, "colorType {code}");
            assert_eq!(r.device_time, Some(Timestamp(1_714_523_400_000)));
            assert_eq!(r.offline, Some(false));
            assert_eq!(r.image_len, Some(3));
        }
        let body = samples::qianyi_alarm_info_plate("粤B12345", 1, 1_714_523_400, true, None);
        assert_eq!(plate(decode(body).await.unwrap()).offline, Some(true));
    }

    #[tokio::test]
    async fn no_plate_wrong_charset_and_truncation() {
        let body = samples::qianyi_alarm_info_plate("_无_", 0, 1_714_523_400, false, None);
        assert_eq!(plate(decode(body).await.unwrap()).text, None);
        // Bytes that are not GBK at all.
        let mut body = samples::qianyi_alarm_info_plate("粤B12345", 1, 1, false, None);
        body.insert(30, 0xFF);
        assert!(matches!(
            decode(body).await,
            Err(PayloadError::Charset("GBK"))
        ));
        let body = samples::qianyi_alarm_info_plate("粤B12345", 1, 1, false, None);
        assert!(decode(body[..body.len() - 5].to_vec()).await.is_err());
        assert_eq!(
            decode(br#"{"heartbeat":1}"#.to_vec()).await.unwrap(),
            Decoded::Alive
        );
    }
}
