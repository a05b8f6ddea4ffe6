//! The commissioning check (`parking-bridge platform-test`): one heartbeat, shown in
//! full (secret masked), with the decoded answer and a plain-language hint when it
//! fails.

use super::client::{ClientError, PlatformClient, Prepared};
use super::envelope;
use super::response::{Answer, Verdict, codes};
use super::wire::Uplink;
use crate::config::SiteConfig;
use crate::time::Timestamp;
use std::io::Write;

/// The result of the check.
#[derive(Debug)]
pub enum Outcome {
    Accepted(Answer),
    /// The platform answered but did not accept.
    Refused(Answer),
    /// No answer (or the request could not be built).
    Failed(ClientError),
}

impl Outcome {
    pub fn accepted(&self) -> bool {
        matches!(self, Outcome::Accepted(_))
    }

    /// What to check, in plain language; `None` when accepted.
    pub fn hint(&self, site: &SiteConfig) -> Option<String> {
        match self {
            Outcome::Accepted(_) => None,
            Outcome::Failed(e) => Some(e.hint().to_string()),
            Outcome::Refused(a) => Some(answer_hint(a, site)),
        }
    }
}

/// The hint for an answer that is not an acceptance.
pub fn answer_hint(a: &Answer, site: &SiteConfig) -> String {
    let code = match &a.verdict {
        Verdict::ConfigFault { code, .. } => code.as_str(),
        _ => a.result_code.as_deref().unwrap_or(""),
    };
    match code {
        codes::PARKING_LOT_NOT_EXIST => format!(
            "lot not registered: the platform does not know lot.parking_lot_no {:?}; check the value or ask the platform operator to register the lot",
            site.lot.parking_lot_no
        ),
        codes::INVALID_APP_ID | "APP_ID_NOT_EXIST" | "HTTP_401" | "HTTP_403" => format!(
            "wrong app_id: the platform does not accept platform.app_id {:?}; copy it again from the platform's registration",
            site.platform.app_id
        ),
        codes::DECRYPT_FAILED | "DECRYPT_ERROR" | codes::INVALID_BASE64 | codes::INVALID_JSON | "SIGN_ERROR"
        | "AUTH_FAILED" => "wrong key: the platform could not decrypt the request; check the 16-character app secret \
(platform.app_secret_file, platform.app_secret or PARKING_BRIDGE_APP_SECRET)"
            .to_string(),
        "HTTP_404" | "HTTP_405" => {
            "wrong URL: nothing answers at this path; check platform.base_url (and platform.paths)".to_string()
        }
        codes::INVALID_PARAMETER | "PARAM_ERROR" | "ILLEGAL_PARAMETER" => {
            "the platform refused a field of the heartbeat (see its message above); check lot.parking_lot_no".to_string()
        }
        _ => match &a.verdict {
            Verdict::Retry { why } => format!(
                "the platform answered but did not accept ({why}); it may be busy or down, try again in a minute"
            ),
            _ => "the platform answered unexpectedly; see its message above".to_string(),
        },
    }
}

/// Sends one heartbeat, printing what was sent and what came back to `out`.
pub async fn platform_test(
    site: &SiteConfig,
    client: &PlatformClient,
    out: &mut dyn Write,
) -> Outcome {
    let uplink = Uplink::heartbeat(&site.lot.parking_lot_no, true);
    let _ = writeln!(out, "platform-test: sending one heartbeat");
    let prepared = match client.prepare(&uplink, Timestamp::now()) {
        Ok(p) => p,
        Err(e) => return report(site, out, Outcome::Failed(e)),
    };
    print_sent(out, client, &uplink, &prepared);
    let started = std::time::Instant::now();
    let outcome = match client.post(&prepared).await {
        Ok(answer) if answer.verdict == Verdict::Done => Outcome::Accepted(answer),
        Ok(answer) => Outcome::Refused(answer),
        Err(e) => Outcome::Failed(e),
    };
    let _ = writeln!(out, "  took:          {} ms", started.elapsed().as_millis());
    report(site, out, outcome)
}

fn print_sent(out: &mut dyn Write, client: &PlatformClient, uplink: &Uplink, p: &Prepared) {
    let business = String::from_utf8_lossy(&uplink.to_json()).into_owned();
    let _ = writeln!(out, "sent:");
    let _ = writeln!(out, "  POST           {}", p.url);
    let _ = writeln!(out, "  app_id:        {}", client.app_id());
    let _ = writeln!(out, "  app_secret:    **** (masked)");
    let _ = writeln!(out, "  message_id:    {}", p.message_id);
    let _ = writeln!(
        out,
        "  timestamp:     {} (UTC{})",
        p.timestamp,
        client.offset()
    );
    let _ = writeln!(out, "  business JSON: {business}");
    match envelope::parse(&p.body) {
        Ok(env) => {
            let _ = writeln!(out, "  encrypted_data: {}", env.encrypted_data);
        }
        Err(e) => {
            let _ = writeln!(out, "  (envelope not printable: {e})");
        }
    }
}

fn report(site: &SiteConfig, out: &mut dyn Write, outcome: Outcome) -> Outcome {
    let _ = writeln!(out, "answer:");
    match &outcome {
        Outcome::Accepted(a) | Outcome::Refused(a) => {
            let _ = writeln!(
                out,
                "  result_code:   {}",
                a.result_code.as_deref().unwrap_or("(no result_code)")
            );
            let _ = writeln!(
                out,
                "  result_msg:    {}",
                a.result_msg.as_deref().unwrap_or("(none)")
            );
            let _ = writeln!(out, "  verdict:       {:?}", a.verdict);
        }
        Outcome::Failed(e) => {
            let _ = writeln!(out, "  no answer:     {e}");
        }
    }
    match outcome.hint(site) {
        None => {
            let _ = writeln!(out, "OK: the platform accepted the heartbeat");
        }
        Some(hint) => {
            let _ = writeln!(out, "FAILED: {hint}");
        }
    }
    outcome
}
