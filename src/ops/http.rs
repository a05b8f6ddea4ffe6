//! The local HTTP endpoint (`[http] listen`, default `127.0.0.1:9108`):
//!
//! - `/` the status page for the technician (server-rendered, refreshes itself);
//! - `/metrics` Prometheus text format: the default registry (every module's own
//!   metrics) plus the [`OpsState`] registry;
//! - `/healthz` `200 ok` or `503` with one reason per line;
//! - `/snapshot/{id}` the snapshot of a recent passage.
//!
//! With `[http] token` set, every request needs `Authorization: Bearer TOKEN` or
//! `?token=TOKEN` (a phone's browser cannot send headers; the page keeps the query in
//! its links and refresh).

use super::disk::fs_space;
use super::state::{HealthLevel, OpsState, Passage, StatusView};
use crate::time::Timestamp;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::fmt::Write as _;
use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// Seconds between automatic refreshes of the status page.
pub const REFRESH_SECS: u32 = 5;

/// Binds `[http] listen` and serves until the process ends. `Ok(None)` when the
/// endpoint is disabled (`listen = ""`).
pub async fn spawn(
    ops: OpsState,
) -> Result<Option<(SocketAddr, tokio::task::JoinHandle<()>)>, HttpError> {
    let listen = ops.http_config().listen.clone();
    if listen.is_empty() {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|source| HttpError::Bind {
            addr: listen.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| HttpError::Bind {
        addr: listen,
        source,
    })?;
    tracing::info!(%addr, "status page, /metrics and /healthz listening");
    let app = router(ops);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP endpoint stopped");
        }
    });
    Ok(Some((addr, task)))
}

pub fn router(ops: OpsState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/snapshot/{id}", get(snapshot))
        .layer(middleware::from_fn_with_state(ops.clone(), require_token))
        .with_state(ops)
}

async fn require_token(State(ops): State<OpsState>, request: Request, next: Next) -> Response {
    let Some(token) = ops.http_config().token() else {
        return next.run(request).await;
    };
    let from_header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let from_query = request.uri().query().and_then(query_token);
    let given = from_header.map(str::to_string).or(from_query);
    if given
        .as_deref()
        .is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes()))
    {
        next.run(request).await
    } else {
        let mut response = (StatusCode::UNAUTHORIZED, "token required\n").into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    }
}

fn query_token(query: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(percent_decode)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Compares without an early exit, so response time does not leak the prefix.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn problems_now(ops: &OpsState) -> (StatusView, Vec<String>) {
    let view = ops.view();
    let fs = fs_space(ops.storage_dir()).ok();
    let problems = view.problems(Timestamp::now(), ops.http_config(), fs);
    (view, problems)
}

/// `ok` and `degraded` answer 200 (a working bridge stays in service), `failing` 503;
/// the reasons follow the level, one per line.
async fn healthz(State(ops): State<OpsState>) -> Response {
    let (view, problems) = problems_now(&ops);
    let level = view.level(Timestamp::now(), ops.http_config(), &problems);
    let mut body = format!("{}\n", level.as_str());
    for p in &problems {
        let _ = writeln!(body, "{p}");
    }
    let status = match level {
        HealthLevel::Failing => StatusCode::SERVICE_UNAVAILABLE,
        HealthLevel::Ok | HealthLevel::Degraded => StatusCode::OK,
    };
    (status, body).into_response()
}

async fn metrics(State(ops): State<OpsState>) -> Response {
    let (_, problems) = problems_now(&ops);
    ops.refresh_gauges(&problems);
    let mut families = prometheus::gather();
    families.extend(ops.registry().gather());
    match prometheus::TextEncoder::new().encode_to_string(&families) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}\n"),
        )
            .into_response(),
    }
}

async fn snapshot(State(ops): State<OpsState>, Path(id): Path<u64>) -> Response {
    match ops.snapshot(id) {
        Some(bytes) => {
            let kind = if bytes.starts_with(b"\x89PNG") {
                "image/png"
            } else {
                "image/jpeg"
            };
            (
                [
                    (header::CONTENT_TYPE, kind),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                bytes.as_ref().clone(),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "snapshot no longer kept\n").into_response(),
    }
}

async fn status_page(State(ops): State<OpsState>, request: Request) -> Html<String> {
    let token_query = request
        .uri()
        .query()
        .and_then(query_token)
        .map(|t| format!("?token={}", percent_encode(&t)));
    let (view, problems) = problems_now(&ops);
    let now = Timestamp::now();
    let level = view.level(now, ops.http_config(), &problems);
    Html(render_with_level(
        &view,
        &problems,
        level,
        now,
        !ops.http_config().show_plates,
        token_query.as_deref().unwrap_or(""),
    ))
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ago(now: Timestamp, then: Timestamp) -> String {
    let s = (now.0 - then.0).max(0) / 1000;
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        _ => format!("{} h {} min ago", s / 3600, (s % 3600) / 60),
    }
}

/// The status page. Pure: everything comes from `view`.
pub fn render(
    view: &StatusView,
    problems: &[String],
    now: Timestamp,
    mask: bool,
    token_query: &str,
) -> String {
    let level = if problems.is_empty() {
        HealthLevel::Ok
    } else {
        HealthLevel::Degraded
    };
    render_with_level(view, problems, level, now, mask, token_query)
}

/// [`render`] with the health level `/healthz` would answer.
pub fn render_with_level(
    view: &StatusView,
    problems: &[String],
    level: HealthLevel,
    now: Timestamp,
    mask: bool,
    token_query: &str,
) -> String {
    let time = |t: Timestamp| t.format_local(view.offset);
    let mut h = String::with_capacity(8 * 1024);
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECS}">
<title>parking-bridge {lot}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:0.5em;max-width:60em;line-height:1.35}}
h1{{font-size:1.3em;margin:0.2em 0}} h2{{font-size:1.1em;margin:0.8em 0 0.3em}}
.ok{{color:#176c2c}} .bad{{color:#b00020;font-weight:bold}} .warn{{color:#a15c00}}
.card{{border:1px solid #ccc;border-radius:6px;padding:0.5em;margin:0.4em 0}}
table{{border-collapse:collapse;width:100%}} td,th{{text-align:left;padding:0.2em 0.4em;border-bottom:1px solid #eee;vertical-align:top}}
img.snap{{max-width:100%;width:16em;display:block}}
td.plate,td.when{{white-space:nowrap}} small.bad{{display:block}}
.kv span{{display:inline-block;min-width:9em}}
</style></head><body>
<h1>parking-bridge · lot {lot}</h1>
<div>{now_local} · version {version} · up since {started}</div>
"#,
        lot = esc(&view.lot_no),
        now_local = time(now),
        version = env!("CARGO_PKG_VERSION"),
        started = time(view.started),
    );

    // Overall health first: what a technician needs at a glance.
    if problems.is_empty() {
        h.push_str(r#"<div class="card ok" id="health">Healthy</div>"#);
    } else {
        let _ = write!(
            h,
            r#"<div class="card bad" id="health" data-level="{}">{}<ul>"#,
            level.as_str(),
            if level == HealthLevel::Failing {
                "Failing"
            } else {
                "Degraded"
            }
        );
        for p in problems {
            let _ = write!(h, "<li>{}</li>", esc(p));
        }
        h.push_str("</ul></div>");
    }

    h.push_str(r#"<div class="card kv">"#);
    match view.occupancy {
        Some((occupied, total)) => {
            let _ = write!(
                h,
                r#"<div><span>Occupancy</span><b id="occupancy">{occupied} / {total}</b> ({} free)</div>"#,
                total - occupied
            );
        }
        None => h.push_str(r#"<div><span>Occupancy</span><b id="occupancy">unknown</b></div>"#),
    }
    match view.outbox_depth {
        Some(depth) => {
            let oldest = view
                .outbox_oldest_age
                .map(|a| format!(", oldest {} s", a.as_secs()))
                .unwrap_or_default();
            let _ = write!(
                h,
                r#"<div><span>Outbox</span><b id="outbox">{depth} waiting</b>{oldest}</div>"#
            );
        }
        None => h.push_str(r#"<div><span>Outbox</span><b id="outbox">unknown</b></div>"#),
    }
    let p = &view.platform;
    let (class, text) = match p.last_answer_ok {
        Some(true) => ("ok", "reachable".to_string()),
        Some(false) => (
            "bad",
            format!("failing ({} in a row)", p.consecutive_failures),
        ),
        None => ("warn", "no contact yet".to_string()),
    };
    let _ = write!(
        h,
        r#"<div><span>Platform</span><b id="platform" class="{class}">{text}</b>"#
    );
    if let Some(code) = &p.last_code {
        let _ = write!(h, " · last result {}", esc(code));
    }
    if let Some(ok) = p.last_ok {
        let _ = write!(h, " · last success {}", ago(now, ok));
    }
    if let Some(hb) = p.last_heartbeat_ok {
        let _ = write!(h, " · heartbeat {}", ago(now, hb));
    }
    h.push_str("</div>");
    let clock = match (&view.clock.suspicion, view.clock.synchronised) {
        (Some(s), _) => format!(
            r#"<b id="clock" class="bad">suspect: {}</b>"#,
            esc(&s.to_string())
        ),
        (None, Some(true)) => r#"<b id="clock" class="ok">synchronised</b>"#.to_string(),
        (None, Some(false)) => r#"<b id="clock" class="bad">not synchronised</b>"#.to_string(),
        (None, None) => r#"<b id="clock" class="warn">unknown</b>"#.to_string(),
    };
    let _ = write!(h, "<div><span>Clock</span>{clock}</div></div>");

    h.push_str("<h2>Lanes</h2>");
    for lane in &view.lanes {
        let dir = match lane.direction {
            crate::config::Direction::Entry => "entry",
            crate::config::Direction::Exit => "exit",
        };
        let _ = write!(
            h,
            r#"<div class="card lane" id="lane-{id}"><b>{id}</b> · {dir} · port {port} · <span class="layout">{layout}</span>"#,
            id = esc(&lane.id),
            port = esc(&lane.port_no),
            layout = esc(&lane.layout),
        );
        // A lane that cannot report, or whose devices and passages disagree, says so.
        for w in view.lane_warnings.get(&lane.id).into_iter().flatten() {
            let _ = write!(h, r#"<div class="bad lane-warning">⚠ {}</div>"#, esc(w));
        }
        h.push_str("<div>");
        render_devices(&mut h, &view.devices, &lane.id, now);
        h.push_str("</div>");
        let passages = view
            .passages
            .get(&lane.id)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if passages.is_empty() {
            h.push_str("<div>no passage yet</div>");
        } else {
            h.push_str("<table><tr><th>time</th><th>plate</th><th>case</th><th>snapshot</th></tr>");
            for passage in passages {
                render_passage(&mut h, passage, mask, token_query, &time);
            }
            h.push_str("</table>");
        }
        h.push_str("</div>");
    }

    if view.devices.values().any(|s| s.lane.is_empty()) {
        h.push_str(r#"<div class="card lane" id="lot-devices"><b>Lot</b> · space counter<div>"#);
        render_devices(&mut h, &view.devices, "", now);
        h.push_str("</div></div>");
    }

    h.push_str("<h2>Recent alarms</h2>");
    if view.alarms.is_empty() {
        h.push_str(r#"<div id="alarms">none</div>"#);
    } else {
        h.push_str(r#"<table id="alarms">"#);
        for a in &view.alarms {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td></tr>",
                time(a.at),
                esc(&a.text)
            );
        }
        h.push_str("</table>");
    }
    let _ = write!(
        h,
        "<p><small>Refreshes every {REFRESH_SECS} s.</small></p></body></html>"
    );
    h
}

/// The link state of the devices serving `lane` (`""`: the lot-wide ones).
fn render_devices(
    h: &mut String,
    devices: &std::collections::BTreeMap<String, crate::health::DeviceState>,
    lane: &str,
    now: Timestamp,
) {
    let mut none = true;
    for (name, state) in devices.iter().filter(|(_, s)| s.lane == lane) {
        none = false;
        let state_now = state.state();
        let class = match state_now {
            crate::health::LinkState::Up => "ok",
            crate::health::LinkState::Faulty | crate::health::LinkState::Down => "bad",
        };
        // A faulty device says why (the read and the exception) where the installer looks.
        let why = match (&state.fault, state_now) {
            (Some(why), crate::health::LinkState::Faulty) => format!(": {}", esc(why)),
            _ => String::new(),
        };
        let _ = write!(
            h,
            r#"<span class="device {class}">{} {state_now}{why} ({})</span> "#,
            esc(name),
            ago(now, state.since)
        );
    }
    if none {
        h.push_str("no device reported yet");
    }
}

fn render_passage(
    h: &mut String,
    p: &Passage,
    mask: bool,
    token_query: &str,
    time: &dyn Fn(Timestamp) -> String,
) {
    let plate = match &p.plate {
        Some(plate) => esc(&super::logging::plate_text(plate, mask)),
        None => "(no plate)".to_string(),
    };
    let flag = if p.clock_suspect {
        r#"<small class="bad">clock suspect</small>"#
    } else {
        ""
    };
    let snap = match (&p.snapshot, p.snapshot_len) {
        (Some(_), _) => format!(
            r#"<img class="snap" alt="snapshot" src="/snapshot/{}{token_query}">"#,
            p.id
        ),
        (None, Some(len)) => format!("{} KB, not kept", len / 1024),
        (None, None) => "—".to_string(),
    };
    let _ = write!(
        h,
        r#"<tr class="passage"><td class="when">{}{flag}</td><td class="plate">{plate}</td><td>{}</td><td>{snap}</td></tr>"#,
        time(p.at).get(5..).unwrap_or_default(),
        esc(&p.case)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole_and_decode_from_query() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert_eq!(query_token("x=1&token=a%2Fb+c").as_deref(), Some("a/b c"));
        assert_eq!(query_token("x=1"), None);
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_encode("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn page_escapes_and_masks() {
        let ops = OpsState::new(&crate::ops::state::tests::config());
        ops.record_passage(
            "entry-1",
            Some("<b>闽A12345"),
            "entry",
            Timestamp(1_700_000_000_000),
            None,
        );
        let view = ops.view();
        let html = render(
            &view,
            &["x<y".to_string()],
            Timestamp(1_700_000_001_000),
            true,
            "",
        );
        assert!(html.contains("x&lt;y"), "{html}");
        assert!(!html.contains("闽A12345"), "{html}");
        assert!(!html.contains("<b>闽"), "{html}");
        let html = render(&view, &[], Timestamp(1_700_000_001_000), false, "");
        assert!(html.contains("&lt;b&gt;闽A12345"), "{html}");
    }

    #[test]
    fn lot_wide_devices_have_their_own_card_and_reason() {
        let config = crate::ops::state::tests::config();
        let ops = OpsState::new(&config);
        let now = ops.view().started;
        ops.record_platform_answer(true, Some("SUCCESS"), now);
        let html = render(&ops.view(), &[], now, true, "");
        assert!(!html.contains("lot-devices"), "no counter, no card: {html}");
        ops.health()
            .set("pgs", "", false, now.plus_millis(-600_000));
        let view = ops.view();
        let html = render(&view, &[], now, true, "");
        let card = &html[html.find(r#"id="lot-devices""#).expect("lot card")..];
        assert!(card.contains("pgs down"), "{card}");
        let problems = view.problems(now, &config.http, None);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("lot: device pgs down")),
            "{problems:?}"
        );
    }
}
