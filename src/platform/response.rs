//! Platform answers and their classification (spec "Common response fields" and the
//! result-code table, "Decision (revised)"). The one place where an answer becomes a
//! [`Verdict`].
//!
//! The order of the decision:
//! 1. a result code known to the bridge — named by the spec, or mapped in the site
//!    config's `[platform.result_codes]` — decides, whatever `success` says (codes are
//!    compared case-insensitively);
//! 2. otherwise `success: true` is delivered (an unexpected code is only noted);
//! 3. otherwise `success: false` (any other code, an `error` text, or nothing) is a
//!    refusal of *this* report;
//! 4. no usable answer (HTTP 5xx/429, a body that is not JSON): retry.

use super::envelope;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

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
    /// `PARKING_LOT_NOT_EXIST`, wrong credentials, a code mapped to `config_fault`: an
    /// alarm; keep the data and retry slowly.
    ConfigFault { code: String, message: String },
    /// The platform answered and said no to this report (`success:false` with a code
    /// not known to be transient, or none): retried a bounded number of times, then
    /// held for an operator. Never a sign that the platform is down.
    Refused {
        code: Option<String>,
        message: String,
    },
    /// No usable answer, or a code mapped to `retry`: the platform or the network is
    /// in trouble; retry with backoff.
    Retry { why: String },
}

impl Verdict {
    /// Done or already done: the report needs no further sending.
    pub fn is_delivered(&self) -> bool {
        matches!(self, Verdict::Done | Verdict::AlreadyDone)
    }

    /// The platform answered (whatever it said): it is up and reachable.
    pub fn platform_answered(&self) -> bool {
        !matches!(self, Verdict::Retry { .. })
    }

    /// The short name used in the site config, metrics and `platform-test`.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Done => "delivered",
            Verdict::AlreadyDone => "duplicate",
            Verdict::NeedsEntryFirst => "needs_entry",
            Verdict::ConfigFault { .. } => "config_fault",
            Verdict::Refused { .. } => "refused",
            Verdict::Retry { .. } => "retry",
        }
    }
}

/// A decoded answer: its verdict plus the fields the lot must keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub verdict: Verdict,
    pub result_code: Option<String>,
    pub result_msg: Option<String>,
    /// The platform's order number (`inner_oder_no` on the wire; `inner_order_no` is
    /// read too). An empty value counts as none.
    pub inner_oder_no: Option<String>,
    pub sign_level: Option<String>,
    pub sign_time: Option<String>,
    /// `success:true` came with a `result_code` other than `success` that no rule
    /// knows: delivered anyway, but worth counting and logging.
    pub unexpected_code: bool,
}

/// Result codes the spec names (§3.3.2 and its examples). **Decision:** no other code
/// is built in; a real platform's codes for a wrong key, an unknown port or a bad
/// field are taught through `[platform.result_codes]`.
pub mod codes {
    pub const SUCCESS: &str = "success";
    named_codes! {
        OUT_ORDER_NO_DUPLICATION,
        ORDER_NOT_EXIST,
        OUT_ORDER_NO_NOT_EXIST,
        OUT_TRADE_NO_NOT_EXIST,
        PARKING_LOT_NOT_EXIST,
    }
}

pub use crate::spec::CodeVerdict;

/// What a mapped result code means for the report that was sent.
fn code_verdict(v: CodeVerdict, code: &str, message: Option<&str>) -> Verdict {
    let message = message.unwrap_or_default().to_string();
    match v {
        CodeVerdict::Delivered => Verdict::Done,
        CodeVerdict::Duplicate => Verdict::AlreadyDone,
        CodeVerdict::NeedsEntry => Verdict::NeedsEntryFirst,
        CodeVerdict::Refused => Verdict::Refused {
            code: Some(code.to_string()),
            message,
        },
        CodeVerdict::ConfigFault => Verdict::ConfigFault {
            code: code.to_string(),
            message,
        },
        CodeVerdict::Retry => Verdict::Retry {
            why: format!("{code}: {message}"),
        },
    }
}

/// Result codes and their verdicts: the spec's, then the site's (which win). Keys are
/// kept upper-cased; lookups ignore case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultCodes {
    map: BTreeMap<String, CodeVerdict>,
}

impl Default for ResultCodes {
    fn default() -> Self {
        let mut map = BTreeMap::new();
        for (code, v) in [
            (codes::SUCCESS, CodeVerdict::Delivered),
            (codes::OUT_ORDER_NO_DUPLICATION, CodeVerdict::Duplicate),
            (codes::ORDER_NOT_EXIST, CodeVerdict::NeedsEntry),
            (codes::OUT_ORDER_NO_NOT_EXIST, CodeVerdict::NeedsEntry),
            (codes::OUT_TRADE_NO_NOT_EXIST, CodeVerdict::Refused),
            (codes::PARKING_LOT_NOT_EXIST, CodeVerdict::ConfigFault),
        ] {
            map.insert(code.to_ascii_uppercase(), v);
        }
        ResultCodes { map }
    }
}

impl ResultCodes {
    /// The built-in table with the site's mappings on top.
    pub fn with_site(site: &BTreeMap<String, CodeVerdict>) -> Self {
        let mut t = ResultCodes::default();
        for (code, v) in site {
            t.map.insert(code.trim().to_ascii_uppercase(), *v);
        }
        t
    }

    /// The verdict for `code` (exact, case-insensitive), if the table knows it.
    pub fn lookup(&self, code: &str) -> Option<CodeVerdict> {
        self.map.get(&code.trim().to_ascii_uppercase()).copied()
    }

    /// The answer's verdict, in the order of the module documentation.
    pub fn classify(
        &self,
        success: bool,
        result_code: Option<&str>,
        message: Option<&str>,
    ) -> Verdict {
        let code = result_code.filter(|c| !c.trim().is_empty());
        if let Some(code) = code
            && let Some(v) = self.lookup(code)
        {
            // `success:false` with the code `success` is no acceptance.
            if v == CodeVerdict::Delivered && !success {
                return Verdict::Refused {
                    code: Some(code.to_string()),
                    message: message.unwrap_or("success:false").to_string(),
                };
            }
            return code_verdict(v, code, message);
        }
        if success {
            return Verdict::Done;
        }
        Verdict::Refused {
            code: code.map(str::to_string),
            message: message
                .unwrap_or("success:false without a message")
                .to_string(),
        }
    }
}

/// Largest answer body read; real answers are a few hundred bytes.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Decodes an HTTP answer: plain JSON or an envelope whose `encrypted_data`
/// decrypts (with `key`) to it. Never panics, whatever the bytes.
pub fn decode(status: u16, body: &[u8], key: &[u8; 16], table: &ResultCodes) -> Answer {
    decode_fields(status, body, key, table).0
}

/// [`decode`], also returning the answer's business JSON as text (decrypted when it
/// came enveloped) for `platform-test` to print.
pub fn decode_fields(
    status: u16,
    body: &[u8],
    key: &[u8; 16],
    table: &ResultCodes,
) -> (Answer, Option<String>) {
    let fields = parse_fields(body, key);
    let map = fields.as_ref().ok();
    let get = |name: &str| {
        map.and_then(|m| text(m.get(name)))
            .filter(|s| !s.trim().is_empty())
    };
    let result_code = get("result_code");
    let error = get("error");
    let result_msg = get("result_msg").or_else(|| error.clone());
    let mut unexpected_code = false;
    let verdict = if status >= 500 || status == 429 || status == 408 {
        Verdict::Retry {
            why: format!("HTTP {status}"),
        }
    } else {
        match &fields {
            Ok(m) => {
                let success = match m.get("success") {
                    Some(Value::Bool(b)) => *b,
                    Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
                    _ => false,
                };
                if !(200..300).contains(&status) && result_code.is_none() {
                    http_verdict(status, result_msg.as_deref())
                } else {
                    let v = table.classify(success, result_code.as_deref(), result_msg.as_deref());
                    unexpected_code = v == Verdict::Done
                        && result_code
                            .as_deref()
                            .is_some_and(|c| table.lookup(c).is_none());
                    v
                }
            }
            Err(why) if (200..300).contains(&status) => Verdict::Retry { why: why.clone() },
            Err(_) => http_verdict(status, None),
        }
    };
    let inner_oder_no = get("inner_oder_no").or_else(|| get("inner_order_no"));
    let answer = Answer {
        verdict,
        result_code,
        result_msg,
        inner_oder_no,
        sign_level: get("sign_level"),
        sign_time: get("sign_time"),
        unexpected_code,
    };
    let plain = fields.ok().map(|m| Value::Object(m).to_string());
    (answer, plain)
}

/// Non-2xx answers without a result code.
fn http_verdict(status: u16, message: Option<&str>) -> Verdict {
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
        // The request itself was judged and found wrong: this report's problem.
        400 | 413 | 414 | 415 | 422 => Verdict::Refused {
            code: Some(format!("HTTP_{status}")),
            message: message
                .unwrap_or("the platform refused the request")
                .to_string(),
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
        decode(200, body.as_bytes(), KEY, &ResultCodes::default()).verdict
    }

    fn refused(v: &Verdict) -> bool {
        matches!(v, Verdict::Refused { .. })
    }

    #[test]
    fn success_true_is_delivered_whatever_the_code_says() {
        for body in [
            r#"{"success":true,"result_code":"success"}"#,
            r#"{"success":true,"result_code":"SUCCESS"}"#,
            r#"{"success":true,"result_code":""}"#,
            r#"{"success":true}"#,
            r#"{"success":"true","result_code":"SOMETHING_NEW"}"#,
        ] {
            assert_eq!(verdict(body), Verdict::Done, "{body}");
        }
        let a = decode(
            200,
            br#"{"success":true,"result_code":"SYSTEM_BUSY"}"#,
            KEY,
            &ResultCodes::default(),
        );
        assert_eq!(a.verdict, Verdict::Done);
        assert!(
            a.unexpected_code,
            "an unknown code with success:true is noted"
        );
        let a = decode(
            200,
            br#"{"success":true,"result_code":"Success"}"#,
            KEY,
            &ResultCodes::default(),
        );
        assert!(!a.unexpected_code);
    }

    #[test]
    fn success_false_in_the_specs_three_shapes_is_refused() {
        for body in [
            r#"{"success":false,"error":"event 缺失"}"#,
            r#"{"success":false}"#,
            r#"{"success":false,"result_code":"SOMETHING_NEW","result_msg":"bad"}"#,
            r#"{"success":false,"result_code":"success"}"#,
            r#"{"result_code":"success"}"#,
        ] {
            assert!(refused(&verdict(body)), "{body}");
        }
        let a = decode(
            200,
            r#"{"success":false,"error":"event 缺失"}"#.as_bytes(),
            KEY,
            &ResultCodes::default(),
        );
        assert_eq!(
            a.verdict,
            Verdict::Refused {
                code: None,
                message: "event 缺失".into()
            }
        );
        assert_eq!(a.result_msg.as_deref(), Some("event 缺失"));
    }

    #[test]
    fn spec_codes_decide_whatever_success_says_in_any_case() {
        let cases: &[(&str, Verdict)] = &[
            ("OUT_ORDER_NO_DUPLICATION", Verdict::AlreadyDone),
            ("out_order_no_duplication", Verdict::AlreadyDone),
            ("ORDER_NOT_EXIST", Verdict::NeedsEntryFirst),
            ("OUT_ORDER_NO_NOT_EXIST", Verdict::NeedsEntryFirst),
            ("Out_Order_No_Not_Exist", Verdict::NeedsEntryFirst),
        ];
        for (code, want) in cases {
            for success in [true, false] {
                let body =
                    format!(r#"{{"success":{success},"result_code":"{code}","result_msg":"m"}}"#);
                assert_eq!(&verdict(&body), want, "{code} success={success}");
            }
        }
        for success in [true, false] {
            let body = format!(r#"{{"success":{success},"result_code":"parking_lot_not_exist"}}"#);
            assert!(
                matches!(verdict(&body), Verdict::ConfigFault { .. }),
                "{body}"
            );
            let body = format!(r#"{{"success":{success},"result_code":"OUT_TRADE_NO_NOT_EXIST"}}"#);
            assert!(refused(&verdict(&body)), "{body}");
        }
    }

    #[test]
    fn no_invented_code_is_built_in() {
        for code in [
            "INVALID_APP_ID",
            "DECRYPT_FAILED",
            "INVALID_PARAMETER",
            "SIGN_ERROR",
        ] {
            assert_eq!(ResultCodes::default().lookup(code), None, "{code}");
            let body = format!(r#"{{"success":false,"result_code":"{code}"}}"#);
            assert!(refused(&verdict(&body)), "{code}");
        }
    }

    #[test]
    fn the_site_table_teaches_codes_and_wins_over_the_spec() {
        let mut site = BTreeMap::new();
        site.insert("invalid_sign".to_string(), CodeVerdict::ConfigFault);
        site.insert("SYSTEM_BUSY".to_string(), CodeVerdict::Retry);
        site.insert("PARKING_LOT_NOT_EXIST".to_string(), CodeVerdict::Refused);
        let t = ResultCodes::with_site(&site);
        let v = |body: &str| decode(200, body.as_bytes(), KEY, &t).verdict;
        assert_eq!(
            v(r#"{"success":false,"result_code":"INVALID_SIGN","result_msg":"sign"}"#),
            Verdict::ConfigFault {
                code: "INVALID_SIGN".into(),
                message: "sign".into()
            }
        );
        assert!(matches!(
            v(r#"{"success":true,"result_code":"system_busy"}"#),
            Verdict::Retry { .. }
        ));
        assert!(refused(&v(
            r#"{"success":false,"result_code":"PARKING_LOT_NOT_EXIST"}"#
        )));
        for name in [
            "delivered",
            "duplicate",
            "needs_entry",
            "refused",
            "config_fault",
            "retry",
        ] {
            assert_eq!(CodeVerdict::parse(name).map(CodeVerdict::name), Some(name));
        }
        assert_eq!(CodeVerdict::parse("maybe"), None);
    }

    #[test]
    fn entry_answer_keeps_inner_order_in_either_spelling_and_ignores_empty() {
        let a = decode(
            200,
            br#"{"success":true,"result_code":"success","result_msg":"success","inner_oder_no":"R2019120417100510710013","sign_level":"L2","sign_time":"2019-10-04 13:36:04"}"#,
            KEY,
            &ResultCodes::default(),
        );
        assert_eq!(a.verdict, Verdict::Done);
        assert_eq!(a.inner_oder_no.as_deref(), Some("R2019120417100510710013"));
        assert_eq!(a.sign_level.as_deref(), Some("L2"));
        assert_eq!(a.sign_time.as_deref(), Some("2019-10-04 13:36:04"));
        let a = decode(
            200,
            br#"{"success":true,"inner_order_no":"R9"}"#,
            KEY,
            &ResultCodes::default(),
        );
        assert_eq!(a.inner_oder_no.as_deref(), Some("R9"));
        let a = decode(
            200,
            br#"{"success":true,"result_code":"OUT_ORDER_NO_DUPLICATION","inner_oder_no":""}"#,
            KEY,
            &ResultCodes::default(),
        );
        assert_eq!(a.inner_oder_no, None);
    }

    #[test]
    fn enveloped_answer_is_decrypted_and_printable() {
        let inner = r#"{"success":true,"result_code":"OUT_ORDER_NO_DUPLICATION"}"#;
        let body = envelope::seal(
            "a",
            KEY,
            "m",
            "2019-10-04 13:36:04",
            inner.as_bytes().to_vec(),
        );
        let (a, plain) = decode_fields(200, &body, KEY, &ResultCodes::default());
        assert_eq!(a.verdict, Verdict::AlreadyDone);
        let plain: Value = serde_json::from_str(&plain.unwrap()).unwrap();
        assert_eq!(plain, serde_json::from_str::<Value>(inner).unwrap());
        assert!(matches!(
            decode(200, &body, b"0000000000000000", &ResultCodes::default()).verdict,
            Verdict::Retry { .. }
        ));
    }

    #[test]
    fn http_errors_are_classified() {
        let d = |status, body: &[u8]| decode(status, body, KEY, &ResultCodes::default()).verdict;
        assert!(matches!(d(503, b""), Verdict::Retry { .. }));
        assert!(
            matches!(d(500, br#"{"success":true}"#), Verdict::Retry { .. }),
            "5xx never done"
        );
        assert!(matches!(d(404, b"not found"), Verdict::ConfigFault { .. }));
        assert!(matches!(d(401, b""), Verdict::ConfigFault { .. }));
        assert!(matches!(d(429, b""), Verdict::Retry { .. }));
        assert!(matches!(
            d(429, br#"{"success":false}"#),
            Verdict::Retry { .. }
        ));
        assert!(matches!(d(200, b"<html>"), Verdict::Retry { .. }));
        assert!(refused(&d(400, b"bad request")));
        assert!(refused(&d(415, b"")));
        assert!(matches!(
            d(
                400,
                br#"{"success":false,"result_code":"PARKING_LOT_NOT_EXIST"}"#
            ),
            Verdict::ConfigFault { .. }
        ));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics_on_arbitrary_bytes(status in 0u16..1000, body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode(status, &body, KEY, &ResultCodes::default());
        }

        #[test]
        fn decode_never_panics_on_json_like_input(status in 0u16..600, body in r#"\{("[a-z_]{1,12}":("[^"]{0,20}"|true|false|[0-9]{1,5}|null|\[\]|\{\}),?){0,5}\}"#) {
            let _ = decode(status, body.as_bytes(), KEY, &ResultCodes::default());
        }

        #[test]
        fn decode_never_panics_on_garbage_envelopes(data in "[A-Za-z0-9+/=]{0,120}") {
            let body = format!(r#"{{"app_id":"a","message_id":"m","encrypted_data":"{data}","timestamp":"t"}}"#);
            let _ = decode(200, body.as_bytes(), KEY, &ResultCodes::default());
        }
    }
}
