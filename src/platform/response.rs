//! Platform answers and their classification (spec "Common response fields" and the
//! result-code table). The one place where an answer becomes a [`Verdict`].

use super::envelope;
use serde_json::{Map, Value};

/// What a platform answer means for the report that was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted now.
    Done,
    /// `OUT_ORDER_NO_DUPLICATION`: already delivered earlier (an idempotent retry).
    AlreadyDone,
    /// `ORDER_NOT_EXIST` / `OUT_ORDER_NO_NOT_EXIST`: the stay's entry must be
    /// (re)delivered first.
    NeedsEntryFirst,
    /// `PARKING_LOT_NOT_EXIST`, invalid parameters, wrong credentials: an alarm; keep
    /// the data and retry slowly.
    ConfigFault { code: String, message: String },
    /// Anything else: transient or unknown; retry with backoff.
    Retry { why: String },
}

impl Verdict {
    /// Done or already done: the report needs no further sending.
    pub fn is_delivered(&self) -> bool {
        matches!(self, Verdict::Done | Verdict::AlreadyDone)
    }
}

/// A decoded answer: its verdict plus the fields the lot must keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub verdict: Verdict,
    pub result_code: Option<String>,
    pub result_msg: Option<String>,
    /// The platform's order number (`inner_oder_no`, spelled as on the wire).
    pub inner_oder_no: Option<String>,
    pub sign_level: Option<String>,
    pub sign_time: Option<String>,
}

/// Result codes (spec §3.3.2 and examples) and those this project treats as
/// configuration faults. **Decision:** the original lists no codes for bad
/// parameters or credentials; these are the names the mock platform answers with
/// and that platforms of this family commonly use. Every code not listed → Retry.
pub mod codes {
    pub const SUCCESS: &str = "success";
    pub const OUT_ORDER_NO_DUPLICATION: &str = "OUT_ORDER_NO_DUPLICATION";
    pub const ORDER_NOT_EXIST: &str = "ORDER_NOT_EXIST";
    pub const OUT_ORDER_NO_NOT_EXIST: &str = "OUT_ORDER_NO_NOT_EXIST";
    pub const OUT_TRADE_NO_NOT_EXIST: &str = "OUT_TRADE_NO_NOT_EXIST";
    pub const PARKING_LOT_NOT_EXIST: &str = "PARKING_LOT_NOT_EXIST";
    pub const INVALID_APP_ID: &str = "INVALID_APP_ID";
    pub const DECRYPT_FAILED: &str = "DECRYPT_FAILED";
    pub const INVALID_PARAMETER: &str = "INVALID_PARAMETER";
    pub const INVALID_JSON: &str = "INVALID_JSON";
    pub const INVALID_BASE64: &str = "INVALID_BASE64";
    /// What the mock answers with when injecting `success:true` + error code.
    pub const SYSTEM_BUSY: &str = "SYSTEM_BUSY";

    /// Codes that mean "this configuration (or this request's form) is wrong":
    /// retrying unchanged will not help, an operator must look.
    pub const CONFIG_FAULTS: &[&str] = &[
        PARKING_LOT_NOT_EXIST,
        INVALID_APP_ID,
        "APP_ID_NOT_EXIST",
        DECRYPT_FAILED,
        "DECRYPT_ERROR",
        INVALID_PARAMETER,
        "PARAM_ERROR",
        "ILLEGAL_PARAMETER",
        INVALID_JSON,
        INVALID_BASE64,
        "AUTH_FAILED",
        "SIGN_ERROR",
        "PERMISSION_DENIED",
    ];
}

/// The spec's decision: success only when `success` is true and `result_code` is
/// absent or `success`; everything else is classified by the code (or `error`).
pub fn classify(success: bool, result_code: Option<&str>, message: Option<&str>) -> Verdict {
    match result_code {
        None | Some(codes::SUCCESS) if success => Verdict::Done,
        Some(codes::OUT_ORDER_NO_DUPLICATION) => Verdict::AlreadyDone,
        Some(codes::ORDER_NOT_EXIST | codes::OUT_ORDER_NO_NOT_EXIST) => Verdict::NeedsEntryFirst,
        Some(code) if codes::CONFIG_FAULTS.contains(&code) => Verdict::ConfigFault {
            code: code.to_string(),
            message: message.unwrap_or_default().to_string(),
        },
        Some(code) => Verdict::Retry {
            why: format!("{code}: {}", message.unwrap_or_default()),
        },
        None => Verdict::Retry {
            why: format!(
                "success={success} without result_code: {}",
                message.unwrap_or("no message")
            ),
        },
    }
}

/// Largest answer body read; real answers are a few hundred bytes.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Decodes an HTTP answer: plain JSON or an envelope whose `encrypted_data`
/// decrypts (with `key`) to it. Never panics, whatever the bytes.
pub fn decode(status: u16, body: &[u8], key: &[u8; 16]) -> Answer {
    let fields = parse_fields(body, key);
    let map = fields.as_ref().ok();
    let get = |name: &str| map.and_then(|m| text(m.get(name)));
    let result_code = get("result_code");
    let error = get("error");
    let result_msg = get("result_msg").or_else(|| error.clone());
    let verdict = if status >= 500 {
        Verdict::Retry {
            why: format!("HTTP {status}"),
        }
    } else {
        match &fields {
            Ok(m) => {
                let success = match m.get("success") {
                    Some(Value::Bool(b)) => *b,
                    Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
                    _ => false,
                };
                if !(200..300).contains(&status) && result_code.is_none() {
                    http_verdict(status)
                } else {
                    classify(success, result_code.as_deref(), result_msg.as_deref())
                }
            }
            Err(why) if (200..300).contains(&status) => Verdict::Retry { why: why.clone() },
            Err(_) => http_verdict(status),
        }
    };
    Answer {
        verdict,
        result_code,
        result_msg,
        inner_oder_no: get("inner_oder_no"),
        sign_level: get("sign_level"),
        sign_time: get("sign_time"),
    }
}

/// Non-2xx answers without a result code.
fn http_verdict(status: u16) -> Verdict {
    match status {
        401 | 403 => Verdict::ConfigFault {
            code: format!("HTTP_{status}"),
            message: "the platform refused our credentials (app_id / app_secret)".into(),
        },
        404 | 405 => Verdict::ConfigFault {
            code: format!("HTTP_{status}"),
            message: "no such interface at this URL: check platform.base_url and platform.paths"
                .into(),
        },
        _ => Verdict::Retry {
            why: format!("HTTP {status}"),
        },
    }
}

fn parse_fields(body: &[u8], key: &[u8; 16]) -> Result<Map<String, Value>, String> {
    let map: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| format!("answer is not a JSON object: {e}"))?;
    // An enveloped answer: the business fields are inside `encrypted_data`.
    if !map.contains_key("success")
        && let Some(Value::String(data)) = map.get("encrypted_data")
    {
        let plain =
            envelope::decrypt_b64(key, data).map_err(|e| format!("enveloped answer: {e}"))?;
        return serde_json::from_slice(&plain)
            .map_err(|e| format!("decrypted answer is not a JSON object: {e}"));
    }
    Ok(map)
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8; 16] = b"bb0873ce314c42f7";

    fn verdict(body: &str) -> Verdict {
        decode(200, body.as_bytes(), KEY).verdict
    }

    #[test]
    fn success_needs_flag_and_success_or_absent_code() {
        assert_eq!(
            verdict(r#"{"success":true,"result_code":"success"}"#),
            Verdict::Done
        );
        assert_eq!(verdict(r#"{"success":true}"#), Verdict::Done);
        assert!(matches!(
            verdict(r#"{"success":false,"result_code":"success"}"#),
            Verdict::Retry { .. }
        ));
        assert!(matches!(
            verdict(r#"{"success":false}"#),
            Verdict::Retry { .. }
        ));
        assert!(matches!(
            verdict(r#"{"result_code":"success"}"#),
            Verdict::Retry { .. }
        ));
    }

    #[test]
    fn every_result_code_has_its_verdict() {
        let cases: &[(&str, Verdict)] = &[
            ("OUT_ORDER_NO_DUPLICATION", Verdict::AlreadyDone),
            ("ORDER_NOT_EXIST", Verdict::NeedsEntryFirst),
            ("OUT_ORDER_NO_NOT_EXIST", Verdict::NeedsEntryFirst),
        ];
        for (code, want) in cases {
            for success in [true, false] {
                let body =
                    format!(r#"{{"success":{success},"result_code":"{code}","result_msg":"m"}}"#);
                assert_eq!(&verdict(&body), want, "{code} success={success}");
            }
        }
        for code in codes::CONFIG_FAULTS {
            let body = format!(r#"{{"success":true,"result_code":"{code}","result_msg":"m"}}"#);
            assert_eq!(
                verdict(&body),
                Verdict::ConfigFault {
                    code: code.to_string(),
                    message: "m".into()
                },
                "{code}"
            );
        }
        for code in [
            codes::OUT_TRADE_NO_NOT_EXIST,
            codes::SYSTEM_BUSY,
            "SOMETHING_NEW",
        ] {
            let body = format!(r#"{{"success":true,"result_code":"{code}"}}"#);
            assert!(matches!(verdict(&body), Verdict::Retry { .. }), "{code}");
        }
    }

    #[test]
    fn error_field_without_code_is_retry_with_its_text() {
        let a = decode(
            200,
            r#"{"success":false,"error":"event 缺失"}"#.as_bytes(),
            KEY,
        );
        assert_eq!(a.result_msg.as_deref(), Some("event 缺失"));
        match a.verdict {
            Verdict::Retry { why } => assert!(why.contains("event 缺失"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn entry_answer_keeps_inner_order_and_signing() {
        let a = decode(
            200,
            br#"{"success":true,"result_code":"success","result_msg":"success","inner_oder_no":"R2019120417100510710013","sign_level":"L2","sign_time":"2019-10-04 13:36:04"}"#,
            KEY,
        );
        assert_eq!(a.verdict, Verdict::Done);
        assert_eq!(a.inner_oder_no.as_deref(), Some("R2019120417100510710013"));
        assert_eq!(a.sign_level.as_deref(), Some("L2"));
        assert_eq!(a.sign_time.as_deref(), Some("2019-10-04 13:36:04"));
    }

    #[test]
    fn enveloped_answer_is_decrypted() {
        let inner = r#"{"success":true,"result_code":"OUT_ORDER_NO_DUPLICATION"}"#;
        let body = envelope::seal(
            "a",
            KEY,
            "m",
            "2019-10-04 13:36:04",
            inner.as_bytes().to_vec(),
        );
        assert_eq!(decode(200, &body, KEY).verdict, Verdict::AlreadyDone);
        assert!(matches!(
            decode(200, &body, b"0000000000000000").verdict,
            Verdict::Retry { .. }
        ));
    }

    #[test]
    fn http_errors_are_classified() {
        assert!(matches!(
            decode(503, b"", KEY).verdict,
            Verdict::Retry { .. }
        ));
        assert!(
            matches!(
                decode(500, br#"{"success":true}"#, KEY).verdict,
                Verdict::Retry { .. }
            ),
            "5xx never done"
        );
        assert!(matches!(
            decode(404, b"not found", KEY).verdict,
            Verdict::ConfigFault { .. }
        ));
        assert!(matches!(
            decode(401, b"", KEY).verdict,
            Verdict::ConfigFault { .. }
        ));
        assert!(matches!(
            decode(429, b"", KEY).verdict,
            Verdict::Retry { .. }
        ));
        assert!(matches!(
            decode(200, b"<html>", KEY).verdict,
            Verdict::Retry { .. }
        ));
        let a = decode(
            400,
            br#"{"success":false,"result_code":"PARKING_LOT_NOT_EXIST"}"#,
            KEY,
        );
        assert!(matches!(a.verdict, Verdict::ConfigFault { .. }));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics_on_arbitrary_bytes(status in 0u16..1000, body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode(status, &body, KEY);
        }

        #[test]
        fn decode_never_panics_on_json_like_input(status in 0u16..600, body in r#"\{("[a-z_]{1,12}":("[^"]{0,20}"|true|false|[0-9]{1,5}|null|\[\]|\{\}),?){0,5}\}"#) {
            let _ = decode(status, body.as_bytes(), KEY);
        }

        #[test]
        fn decode_never_panics_on_garbage_envelopes(data in "[A-Za-z0-9+/=]{0,120}") {
            let body = format!(r#"{{"app_id":"a","message_id":"m","encrypted_data":"{data}","timestamp":"t"}}"#);
            let _ = decode(200, body.as_bytes(), KEY);
        }
    }
}
