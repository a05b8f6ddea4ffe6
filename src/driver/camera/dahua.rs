//! Dahua ITC HTTP push: `TollgateInfo` JSON (`Picture.Plate`, `Picture.SnapInfo`,
//! base64 `Picture.NormalPic` / `CutoutPic`) and keep-alives (no `Picture`). The
//! camera resends a recognition until it is acknowledged with `{"Result": true}`;
//! the receiver acknowledges every push and drops the resends by the camera's own
//! time of the recognition. A platform answer can also carry a barrier command
//! (`OpenGate`); the bridge never sends one.

use super::push::{Ack, Reply};

pub const GATE_OPEN_FORMS: &[&str] = &["opengate", "\"open\"", "\"command\""];

/// The only answer: `Result: true`.
pub fn reply(why: Ack) -> Reply {
    match why {
        Ack::Recognition => Reply::ok_json(r#"{"Result":true,"Message":"received"}"#),
        Ack::KeepAlive => Reply::ok_json(r#"{"Result":true,"Message":"alive"}"#),
    }
}

#[cfg(test)]
mod tests {
    use super::super::push::PushVendor;
    use crate::driver::camera::tests::{plate, profile};
    use crate::driver::camera::{CameraState, Context, Decoded, PayloadError, TopicKind};
    use crate::driver::camera::{decode_value, samples};
    use crate::driver::profile::Charset;
    use crate::plate::PlateColor;
    use crate::time::Timestamp;
    use bytes::Bytes;

    async fn decode(body: &str) -> Result<Decoded, PayloadError> {
        let p = profile("dahua-itc-tollgate");
        let u = PushVendor::Dahua
            .unpack(
                Some("application/json"),
                Bytes::from(body.to_string()),
                Charset::Utf8,
            )
            .await?;
        decode_value(&p, TopicKind::Result, &u.json, &Context::default())
    }

    #[tokio::test]
    async fn tollgate_info_gives_plate_colour_local_time_and_the_scene() {
        let body = samples::dahua_tollgate(
            "浙A12345",
            "Yellow",
            "2024-05-01 08:30:00.123",
            Some(b"scene"),
        );
        let r = plate(decode(&body).await.unwrap());
        assert_eq!(
            (r.text.as_deref(), r.color),
            (Some("浙A12345"), PlateColor::Yellow)
        );
        // Local time in the lot's offset (UTC+8 by default).
        assert_eq!(r.device_time, Some(Timestamp(1_714_523_400_123)));
        assert_eq!(r.image.as_deref().map(Vec::as_slice), Some(&b"scene"[..]));
        assert_eq!(r.confidence, Some(97));
        for (name, color) in [
            ("Blue", PlateColor::Blue),
            ("White", PlateColor::White),
            ("Black", PlateColor::Black),
            ("Green", PlateColor::Green),
            ("YellowGreen", PlateColor::YellowGreen),
            ("Purple", PlateColor::Unknown),
        ] {
            let body = samples::dahua_tollgate("浙A12345", name, "2024-05-01 08:30:00", None);
            assert_eq!(plate(decode(&body).await.unwrap()).color, color, "{name}");
        }
    }

    #[tokio::test]
    async fn keep_alives_only_keep_the_camera_alive() {
        let body = samples::dahua_keep_alive("dahua-itc-01");
        assert_eq!(decode(&body).await.unwrap(), Decoded::Alive);
    }

    #[tokio::test]
    async fn no_plate_and_broken_pushes() {
        for text in ["无车牌", ""] {
            let body = samples::dahua_tollgate(text, "Unknown", "2024-05-01 08:30:00", None);
            assert_eq!(plate(decode(&body).await.unwrap()).text, None);
        }
        // Missing PlateNumber inside Picture.Plate: the camera saw a vehicle, no plate.
        let mut v: serde_json::Value = serde_json::from_str(&samples::dahua_tollgate(
            "浙A12345",
            "Blue",
            "2024-05-01 08:30:00",
            None,
        ))
        .unwrap();
        v["Picture"]["Plate"]
            .as_object_mut()
            .unwrap()
            .remove("PlateNumber");
        assert_eq!(plate(decode(&v.to_string()).await.unwrap()).text, None);
        let body = samples::dahua_tollgate("浙A12345", "Blue", "2024-05-01 08:30:00", Some(b"x"));
        assert!(decode(&body[..body.len() / 2]).await.is_err(), "truncated");
        let bad_b64 = body.replace("\"eA==\"", "\"%%%\"");
        assert!(matches!(
            decode(&bad_b64).await,
            Err(PayloadError::Base64(_))
        ));
        // A time the camera garbled is no time, not an error.
        let body = samples::dahua_tollgate("浙A12345", "Blue", "yesterday", None);
        assert_eq!(plate(decode(&body).await.unwrap()).device_time, None);
    }

    #[tokio::test]
    async fn five_resends_of_one_recognition_are_one_read() {
        let p = profile("dahua-itc-tollgate");
        let mut state = CameraState::new(&p);
        let body = samples::dahua_tollgate("浙A12345", "Blue", "2024-05-01 08:30:00.500", None);
        let mut passed = 0;
        // Resent every 20 s, beyond the arrival window: still the same recognition.
        for i in 0..5 {
            let r = plate(decode(&body).await.unwrap());
            if !state.is_duplicate(&r, Timestamp(1_000_000 + i * 20_000)) {
                passed += 1;
            }
        }
        assert_eq!(passed, 1);
        // The same car recognised again later is a new read.
        let later = samples::dahua_tollgate("浙A12345", "Blue", "2024-05-01 09:30:00.000", None);
        let r = plate(decode(&later).await.unwrap());
        assert!(!state.is_duplicate(&r, Timestamp(1_200_000)));
    }
}
