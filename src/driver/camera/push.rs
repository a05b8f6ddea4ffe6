//! HTTP push: who pushed (the profile's `push` vendor), how the request is unpacked
//! into one JSON value plus picture parts, and the only answers the bridge gives.
//!
//! Never an open-gate reply: several vendors read certain reply bodies as a barrier
//! command (Vzenith/QianYi `Response_AlarmInfoPlate` with `info: "ok"`, …). Every
//! answer is built here, by one function per vendor that can only produce an
//! acknowledgement, or by [`Reply::refused`] (an empty body); a test checks every
//! answer of every vendor against the vendor's gate-open forms.

use super::{PayloadError, decode_charset};
use crate::driver::profile::Charset;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

/// Whose push format a profile describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushVendor {
    /// Vzenith (臻识) `AlarmInfoPlate` JSON.
    Vzenith,
    /// QianYi (千熠) `AlarmInfoPlate` JSON, usually GBK.
    Qianyi,
    /// Dahua ITC `TollgateInfo` JSON (and its keep-alives); resends until acknowledged.
    Dahua,
    /// Hikvision ISAPI `EventNotificationAlert`: multipart/form-data with an XML part
    /// and JPEG parts, or plain XML.
    Hikvision,
}

/// Why the bridge answers a push it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// A recognition (or a message the bridge could not use: acknowledged anyway, so
    /// the camera does not resend it forever; it is counted and logged).
    Recognition,
    /// A keep-alive or another non-recognition message.
    KeepAlive,
}

/// An HTTP answer to a camera. Only this module builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: &'static str,
}

impl Reply {
    /// Refusals (403, 413, 429, 503…): an empty body, which no vendor reads as a
    /// command.
    pub fn refused(status: u16) -> Reply {
        Reply {
            status,
            content_type: "text/plain",
            body: "",
        }
    }

    pub(super) const fn ok_json(body: &'static str) -> Reply {
        Reply {
            status: 200,
            content_type: "application/json",
            body,
        }
    }
}

/// A push unpacked: the message as JSON, and pictures that came as separate parts.
#[derive(Debug, Clone)]
pub struct Unpacked {
    pub json: Value,
    pub parts: Vec<(String, Bytes)>,
}

impl PushVendor {
    /// The acknowledgement this vendor's camera expects. Cannot open a barrier.
    pub fn ack(self, why: Ack) -> Reply {
        match self {
            PushVendor::Vzenith => super::vzenith::reply(why),
            PushVendor::Qianyi => super::qianyi::reply(why),
            PushVendor::Dahua => super::dahua::reply(why),
            PushVendor::Hikvision => super::hikvision::reply(why),
        }
    }

    /// Reply forms this vendor's cameras are documented (or believed) to take as
    /// "open the barrier", lower case without spaces. Tests assert no answer of the
    /// bridge contains one.
    pub fn gate_open_forms(self) -> &'static [&'static str] {
        match self {
            PushVendor::Vzenith => super::vzenith::GATE_OPEN_FORMS,
            PushVendor::Qianyi => super::qianyi::GATE_OPEN_FORMS,
            PushVendor::Dahua => super::dahua::GATE_OPEN_FORMS,
            PushVendor::Hikvision => super::hikvision::GATE_OPEN_FORMS,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PushVendor::Vzenith => "vzenith",
            PushVendor::Qianyi => "qianyi",
            PushVendor::Dahua => "dahua",
            PushVendor::Hikvision => "hikvision",
        }
    }

    /// Unpacks a request body. `charset` is the profile's (JSON vendors).
    pub async fn unpack(
        self,
        content_type: Option<&str>,
        body: Bytes,
        charset: Charset,
    ) -> Result<Unpacked, PayloadError> {
        match self {
            PushVendor::Hikvision => super::hikvision::unpack(content_type, body).await,
            _ => {
                let text = decode_charset(&body, charset)?;
                let json =
                    serde_json::from_str(&text).map_err(|e| PayloadError::Json(e.to_string()))?;
                Ok(Unpacked {
                    json,
                    parts: Vec::new(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [PushVendor; 4] = [
        PushVendor::Vzenith,
        PushVendor::Qianyi,
        PushVendor::Dahua,
        PushVendor::Hikvision,
    ];

    fn squash(s: &str) -> String {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_lowercase()
    }

    #[test]
    fn no_answer_of_any_vendor_contains_its_gate_open_form() {
        for v in ALL {
            assert!(!v.gate_open_forms().is_empty(), "{v:?} lists its forms");
            let mut answers: Vec<Reply> = [Ack::Recognition, Ack::KeepAlive]
                .into_iter()
                .map(|a| v.ack(a))
                .collect();
            answers.extend([403, 404, 408, 413, 429, 503].map(Reply::refused));
            for r in answers {
                let body = squash(r.body);
                for form in v.gate_open_forms() {
                    assert!(
                        !body.contains(form),
                        "{v:?} answer {body:?} contains {form:?}"
                    );
                }
                assert!(
                    !body.contains("open"),
                    "{v:?} answer {body:?} mentions open"
                );
                assert!(r.status == 200 || r.body.is_empty());
            }
        }
    }

    #[test]
    fn gate_open_forms_would_be_caught() {
        // The check above is only as good as the forms: the documented Vzenith open
        // reply must match its own list.
        let open = squash(r#"{"Response_AlarmInfoPlate": {"info": "ok", "content": "..."}}"#);
        assert!(
            PushVendor::Vzenith
                .gate_open_forms()
                .iter()
                .any(|f| open.contains(f))
        );
        assert!(
            PushVendor::Qianyi
                .gate_open_forms()
                .iter()
                .any(|f| open.contains(f))
        );
    }
}
