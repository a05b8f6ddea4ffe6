//! The commissioning check (`parking-bridge platform-test`): one heartbeat, shown in
//! full (secret masked), with the decoded answer and a plain-language hint when it
//! fails.

use super::client::{ClientError, PlatformClient, Prepared, RawAnswer};
use super::envelope;
use super::response::{Answer, ResultCodes, Verdict, codes};
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

/// The hint for an answer that is not an acceptance. The codes named here are only
/// guesses at what a code means, for the installer; verdicts come from the spec and
/// `[platform.result_codes]`.
pub fn answer_hint(a: &Answer, site: &SiteConfig) -> String {
    let hint = guess_hint(a, site);
    if matches!(a.verdict, Verdict::Refused { .. }) && !hint.contains("[platform.result_codes]") {
        // The code decided nothing (success:false did): say how to teach it.
        return format!(
            "{hint}; if the code means a configuration problem, teach it in the site config: \
[platform.result_codes] \"CODE\" = \"config_fault\""
        );
    }
    hint
}

fn guess_hint(a: &Answer, site: &SiteConfig) -> String {
    let code = match &a.verdict {
        Verdict::ConfigFault { code, .. } => code.clone(),
        _ => a.result_code.clone().unwrap_or_default(),
    }
    .to_ascii_uppercase();
    let lot = || {
        format!(
            "lot not registered: the platform does not know lot.parking_lot_no {:?}; check the value or ask the platform operator to register the lot",
            site.lot.parking_lot_no
        )
    };
    if code == codes::PARKING_LOT_NOT_EXIST {
        return lot();
    }
    if code == "HTTP_401" || code == "HTTP_403" || (code.contains("APP") && code.contains("ID")) {
        return format!(
            "wrong app_id? the platform does not accept platform.app_id {:?}; copy it again from the platform's registration",
            site.platform.app_id
        );
    }
    if ["DECRYPT", "SIGN", "AUTH", "KEY", "SECRET", "BASE64"]
        .iter()
        .any(|w| code.contains(w))
    {
        return "wrong key? the platform could not decrypt the request; check the 16-character app secret \
(platform.app_secret_file, platform.app_secret or PARKING_BRIDGE_APP_SECRET)"
            .to_string();
    }
    if code == "HTTP_404" || code == "HTTP_405" {
        return "wrong URL: nothing answers at this path; check platform.base_url (and platform.paths)"
            .to_string();
    }
    let teach = "if this code means something else, teach it in the site config: \
[platform.result_codes] \"CODE\" = \"config_fault\" (or retry, refused, delivered)";
    match &a.verdict {
        Verdict::Retry { why } => format!(
            "no usable answer ({why}): the platform or the network may be busy or down; try again in a minute"
        ),
        Verdict::ConfigFault { .. } => format!(
            "the platform rejects this bridge's settings (code {code}); check app_id, the secret and lot.parking_lot_no with the platform operator"
        ),
        Verdict::Refused { .. } => format!(
            "the platform answered and refused the heartbeat (code {}): read its message above; {teach}",
            if code.is_empty() {
                "none"
            } else {
                code.as_str()
            }
        ),
        _ => format!("the platform answered unexpectedly; see its message above; {teach}"),
    }
}

/// Sends one heartbeat, printing what was sent and what came back to `out`.
pub async fn platform_test(
    site: &SiteConfig,
    client: &PlatformClient,
    out: &mut dyn Write,
) -> Outcome {
    let _ = writeln!(out, "platform-test: sending one heartbeat");
    let uplink = match Uplink::heartbeat(&site.lot.parking_lot_no, true) {
        Ok(u) => u,
        Err(e) => return report(site, client.result_codes(), out, Outcome::Failed(e.into())),
    };
    let prepared = client.prepare(&uplink, Timestamp::now());
    print_sent(out, client, &uplink, &prepared);
    let started = std::time::Instant::now();
    let outcome = match client.post_raw(&prepared).await {
        Ok((answer, raw)) => {
            print_raw(out, &raw);
            if answer.verdict.is_delivered() {
                Outcome::Accepted(answer)
            } else {
                Outcome::Refused(answer)
            }
        }
        Err(e) => Outcome::Failed(e),
    };
    let _ = writeln!(out, "  took:          {} ms", started.elapsed().as_millis());
    report(site, client.result_codes(), out, outcome)
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

/// The answer as it arrived: HTTP status, and the JSON (decrypted when enveloped) or
/// the first bytes of whatever came instead.
fn print_raw(out: &mut dyn Write, raw: &RawAnswer) {
    let _ = writeln!(out, "raw answer:");
    let _ = writeln!(out, "  HTTP status:   {}", raw.status);
    match &raw.json {
        Some(json) => {
            let _ = writeln!(out, "  answer JSON:   {json}");
        }
        None => {
            let shown = String::from_utf8_lossy(&raw.body[..raw.body.len().min(400)]).into_owned();
            let _ = writeln!(out, "  answer body:   {shown:?} (not JSON)");
        }
    }
}

fn report(
    site: &SiteConfig,
    table: &ResultCodes,
    out: &mut dyn Write,
    outcome: Outcome,
) -> Outcome {
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
            let rule = match a.result_code.as_deref() {
                Some(code) => match table.lookup(code) {
                    Some(v) => format!("result_code {code:?} maps to {}", v.name()),
                    None => format!("result_code {code:?} is not in the table: decided by success"),
                },
                None => "no result_code: decided by success".to_string(),
            };
            let _ = writeln!(out, "  verdict:       {} ({rule})", a.verdict.name());
            if a.unexpected_code {
                let _ = writeln!(
                    out,
                    "  note:          success:true with an unknown result_code: counted as delivered"
                );
            }
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
