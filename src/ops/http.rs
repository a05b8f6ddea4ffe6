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

use super::charts;
use super::disk::fs_space;
use super::health_rules::HealthLevel;
use super::i18n::Lang;
use super::state::OpsState;
use super::status::{Passage, StatusView};
use crate::config::PageLanguage;
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
    let lang = page_language(
        request.uri().query(),
        ops.http_config().language,
        request
            .headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    let (view, problems) = problems_now(&ops);
    let now = Timestamp::now();
    let level = view.level(now, ops.http_config(), &problems);
    Html(render_in(
        lang,
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

pub(crate) fn esc(text: &str) -> String {
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

/// The status page in English. Pure: everything comes from `view`.
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
    render_in(Lang::En, view, problems, level, now, mask, token_query)
}

/// The page's language: `?lang=` in the address, else `[http] language`, else the
/// browser's `Accept-Language`, else English.
pub fn page_language(
    query: Option<&str>,
    configured: PageLanguage,
    accept_language: Option<&str>,
) -> Lang {
    let asked = query.and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("lang="))
            .and_then(|v| Lang::parse(&percent_decode(v)))
    });
    asked
        .or(match configured {
            PageLanguage::English => Some(Lang::En),
            PageLanguage::Chinese => Some(Lang::Zh),
            PageLanguage::Auto => None,
        })
        .or_else(|| accept_language.and_then(Lang::from_accept_language))
        .unwrap_or(Lang::En)
}

/// Fonts that carry the province characters of plates where they exist (Noto/Source
/// Han on Linux, YaHei on Windows, PingFang on a phone), before the generic families.
pub const FONT_STACK: &str = r#"system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC","Noto Sans SC","Source Han Sans SC","WenQuanYi Micro Hei","Microsoft YaHei","PingFang SC","Hiragino Sans GB","Droid Sans Fallback",sans-serif"#;

/// Refreshes the page's body in place (so the scroll position stays), every
/// [`REFRESH_SECS`]; without script, `<noscript>` falls back to a plain reload.
/// The body counts its refreshes in `data-refreshes` (for tests and the curious).
const REFRESH_SCRIPT: &str = r#"<script>
var pbRefreshes=0;
setInterval(function(){
  fetch(location.href,{cache:"no-store"}).then(function(r){return r.ok?r.text():null}).then(function(t){
    if(!t)return;var d=new DOMParser().parseFromString(t,"text/html");
    var y=window.scrollY;document.body.replaceWith(d.body);window.scrollTo(0,y);
    document.body.setAttribute("data-refreshes",++pbRefreshes);
  }).catch(function(){});
},REFRESH_MS);
</script>"#;

/// The status page in `lang`. Pure: everything comes from `view`.
pub fn render_in(
    lang: Lang,
    view: &StatusView,
    problems: &[String],
    level: HealthLevel,
    now: Timestamp,
    mask: bool,
    token_query: &str,
) -> String {
    let t = |s: &'static str| lang.tr(s);
    let time = |t: Timestamp| t.format_local(view.offset);
    let mut h = String::with_capacity(32 * 1024);
    let _ = write!(
        h,
        r#"<!doctype html><html lang="{tag}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<noscript><meta http-equiv="refresh" content="{REFRESH_SECS}"></noscript>
<title>parking-bridge {lot}</title>
<style>
body{{font-family:{FONT_STACK};margin:0.5em;max-width:60em;line-height:1.35}}
h1{{font-size:1.3em;margin:0.2em 0}} h2{{font-size:1.1em;margin:0.8em 0 0.3em}}
.ok{{color:#176c2c}} .bad{{color:#b00020;font-weight:bold}} .warn{{color:#a15c00}}
.card{{border:1px solid #ccc;border-radius:6px;padding:0.5em;margin:0.4em 0}}
table{{border-collapse:collapse;width:100%}} td,th{{text-align:left;padding:0.2em 0.4em;border-bottom:1px solid #eee;vertical-align:top}}
img.snap{{max-width:100%;width:16em;display:block}}
td.plate,td.when{{white-space:nowrap}} small.bad{{display:block}}
.kv span{{display:inline-block;min-width:9em}}
svg.chart{{width:100%;height:auto;display:block}} svg .axis{{font-size:11px;fill:#555;font-family:{FONT_STACK}}}
svg.strip{{width:100%;height:0.9em;display:block;margin:0.1em 0 0.3em}}
.gallery{{display:flex;flex-wrap:wrap;gap:0.5em}} .gallery figure{{margin:0}} .gallery figcaption{{font-size:0.9em}}
.plate{{font-family:{FONT_STACK};font-weight:600}}
</style>
{script}
</head><body>
<h1>parking-bridge · {lot_word} {lot}</h1>
<div>{now_local} · {version_word} {version} · {up_since} {started}</div>
"#,
        tag = lang.tag(),
        lot = esc(&view.lot_no),
        lot_word = t("lot"),
        now_local = time(now),
        version_word = t("version"),
        version = env!("CARGO_PKG_VERSION"),
        up_since = t("up since"),
        started = time(view.started),
        script = REFRESH_SCRIPT.replace("REFRESH_MS", &(REFRESH_SECS * 1000).to_string()),
    );

    // Overall health first: what a technician needs at a glance.
    if problems.is_empty() {
        let _ = write!(
            h,
            r#"<div class="card ok" id="health">{}</div>"#,
            t("Healthy")
        );
    } else {
        let _ = write!(
            h,
            r#"<div class="card bad" id="health" data-level="{}">{}<ul>"#,
            level.as_str(),
            if level == HealthLevel::Failing {
                t("Failing")
            } else {
                t("Degraded")
            }
        );
        for p in problems {
            let _ = write!(h, "<li>{}</li>", esc(&lang.tr_text(p)));
        }
        h.push_str("</ul></div>");
    }

    h.push_str(r#"<div class="card kv">"#);
    match view.occupancy {
        Some((occupied, total)) => {
            let _ = write!(
                h,
                r#"<div><span>{}</span><b id="occupancy">{occupied} / {total}</b> ({} {})</div>"#,
                t("Occupancy"),
                total - occupied,
                t("free"),
            );
        }
        None => {
            let _ = write!(
                h,
                r#"<div><span>{}</span><b id="occupancy">{}</b></div>"#,
                t("Occupancy"),
                t("unknown")
            );
        }
    }
    match view.outbox_depth {
        Some(depth) => {
            let oldest = view
                .outbox_oldest_age
                .map(|a| format!(", {} {} s", t("oldest"), a.as_secs()))
                .unwrap_or_default();
            let held: u64 = view.outbox_kinds.iter().map(|k| k.held).sum();
            let held_text = if held > 0 {
                format!(
                    r#", <b id="held" class="warn">{held} {}</b>"#,
                    t("held after refusals")
                )
            } else {
                String::new()
            };
            let _ = write!(
                h,
                r#"<div><span>{}</span><b id="outbox">{depth} {}</b>{oldest}{held_text}</div>"#,
                t("Outbox"),
                t("waiting"),
            );
        }
        None => {
            let _ = write!(
                h,
                r#"<div><span>{}</span><b id="outbox">{}</b></div>"#,
                t("Outbox"),
                t("unknown")
            );
        }
    }
    let p = &view.platform;
    let (class, text) = match p.last_answer_ok {
        Some(true) => ("ok", t("reachable").to_string()),
        Some(false) => (
            "bad",
            format!(
                "{} ({} {})",
                t("failing"),
                p.consecutive_failures,
                t("in a row")
            ),
        ),
        None => ("warn", t("no contact yet").to_string()),
    };
    let _ = write!(
        h,
        r#"<div><span>{}</span><b id="platform" class="{class}">{text}</b>"#,
        t("Platform")
    );
    if let Some(code) = &p.last_code {
        let _ = write!(h, " · {} {}", t("last result"), esc(code));
    }
    if let Some(ok) = p.last_ok {
        let _ = write!(h, " · {} {}", t("last success"), ago(lang, now, ok));
    }
    if let Some(hb) = p.last_heartbeat_ok {
        let _ = write!(h, " · {} {}", t("heartbeat"), ago(lang, now, hb));
    }
    h.push_str("</div>");
    let clock = match (&view.clock.suspicion, view.clock.synchronised) {
        (Some(s), _) => format!(
            r#"<b id="clock" class="bad">{}: {}</b>"#,
            t("suspect"),
            esc(&s.to_string())
        ),
        (None, Some(true)) => format!(r#"<b id="clock" class="ok">{}</b>"#, t("synchronised")),
        (None, Some(false)) => {
            format!(r#"<b id="clock" class="bad">{}</b>"#, t("not synchronised"))
        }
        (None, None) => format!(r#"<b id="clock" class="warn">{}</b>"#, t("unknown")),
    };
    let _ = write!(h, "<div><span>{}</span>{clock}</div></div>", t("Clock"));
    if let Some(c) = &view.cluster {
        render_cluster(&mut h, c, now, lang);
    }

    // The pictures of the day.
    let total = view.occupancy.map(|o| o.1).unwrap_or(0);
    let _ = write!(
        h,
        r#"<h2>{}</h2><div class="card">{}</div>"#,
        t("Occupancy, last 24 h"),
        charts::occupancy(&view.occupancy_history, total, now, view.offset, lang)
    );
    let lanes = charts::lanes_with_times(
        view.lanes.iter().map(|l| l.id.clone()),
        view.passage_times.clone(),
    );
    let _ = write!(
        h,
        r#"<h2>{}</h2><div class="card">{}</div>"#,
        t("Passages per hour, last 24 h"),
        charts::passages_per_hour(&lanes, now, view.offset, lang)
    );

    let _ = write!(h, "<h2>{}</h2>", t("Lanes"));
    for lane in &view.lanes {
        let dir = match lane.direction {
            crate::config::Direction::Entry => t("entry"),
            crate::config::Direction::Exit => t("exit"),
        };
        let _ = write!(
            h,
            r#"<div class="card lane" id="lane-{id}"><b>{id}</b> · {dir} · {port_word} {port} · <span class="layout">{layout}</span>"#,
            id = esc(&lane.id),
            port_word = t("port"),
            port = esc(&lane.port_no),
            layout = esc(&lane.layout),
        );
        // A lane that cannot report, or whose devices and passages disagree, says so.
        for w in view.lane_warnings.get(&lane.id).into_iter().flatten() {
            let _ = write!(h, r#"<div class="bad lane-warning">⚠ {}</div>"#, esc(w));
        }
        h.push_str("<div>");
        render_devices(&mut h, view, &lane.id, now, lang);
        h.push_str("</div>");
        let passages = view
            .passages
            .get(&lane.id)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if passages.is_empty() {
            let _ = write!(h, "<div>{}</div>", t("no passage yet"));
        } else {
            let _ = write!(
                h,
                "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
                t("time"),
                t("plate"),
                t("case"),
                t("snapshot")
            );
            for passage in passages {
                render_passage(&mut h, passage, mask, token_query, &time, lang);
            }
            h.push_str("</table>");
        }
        h.push_str("</div>");
    }

    if view.devices.values().any(|s| s.lane.is_empty()) {
        let _ = write!(
            h,
            r#"<div class="card lane" id="lot-devices"><b>{}</b> · {}<div>"#,
            t("Lot"),
            t("space counter")
        );
        render_devices(&mut h, view, "", now, lang);
        h.push_str("</div></div>");
    }

    render_push(&mut h, view, lang);
    render_outbox_kinds(&mut h, view, lang);
    render_gallery(&mut h, view, mask, token_query, &time, lang);

    let _ = write!(h, "<h2>{}</h2>", t("Recent alarms"));
    if view.alarms.is_empty() {
        let _ = write!(h, r#"<div id="alarms">{}</div>"#, t("none"));
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
    let sep = if token_query.is_empty() { "?" } else { "&" };
    let _ = write!(
        h,
        r#"<p><small>{} {REFRESH_SECS} s · {}: <a href="{token_query}{sep}lang=en" hreflang="en">English</a> · <a href="{token_query}{sep}lang=zh-CN" hreflang="zh-CN">中文</a></small></p></body></html>"#,
        t("Refreshes every"),
        t("Language"),
    );
    h
}

/// A multi-PC lot: this node, its broker link, the lot as the lot node published it,
/// the lane node's queue, and on the lot node every lane node.
fn render_cluster(h: &mut String, c: &super::status::ClusterStatus, now: Timestamp, lang: Lang) {
    let t = |s: &'static str| lang.tr(s);
    let (class, link) = if c.link_up {
        ("ok", t("connected"))
    } else {
        ("bad", t("disconnected"))
    };
    let since = c
        .link_since
        .map(|s| format!(" ({})", ago(lang, now, s)))
        .unwrap_or_default();
    let _ = write!(
        h,
        r#"<h2>{}</h2><div class="card kv" id="cluster" data-role="{role}"><div><span>{}</span><b>{node}</b> ({role})</div><div><span>{}</span><b id="cluster-link" class="{class}">{link}</b>{since}</div>"#,
        t("Multi-PC lot"),
        t("This node"),
        t("Broker link"),
        node = esc(&c.node),
        role = esc(&c.role),
    );
    if let Some(lot) = &c.lot {
        let _ = write!(
            h,
            r#"<div><span>{}</span><b id="cluster-lot">{} / {}</b> ({} {}) · {}</div>"#,
            t("Lot"),
            lot.occupied,
            lot.total,
            lot.free,
            t("free"),
            ago(lang, now, lot.at)
        );
    }
    if c.is_lane_node() {
        let oldest = c
            .oldest_queued_at
            .map(|o| format!(", {} {}", t("oldest"), ago(lang, now, o)))
            .unwrap_or_default();
        let _ = write!(
            h,
            r#"<div><span>{}</span><b id="cluster-queue">{} {}</b>{oldest}</div>"#,
            t("Queue to the lot node"),
            c.queue_depth,
            t("waiting"),
        );
    } else {
        let _ = write!(
            h,
            r#"<div><span>{}</span><b id="cluster-held">{}</b></div>"#,
            t("Exits waiting for their entry"),
            c.held_exits
        );
        let _ = write!(
            h,
            "<table id=\"cluster-nodes\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            t("Node"),
            t("Broker link"),
            t("Queue"),
            t("Last passage"),
            t("Last applied")
        );
        for n in &c.nodes {
            let (class, link) = if n.online {
                ("ok", t("connected"))
            } else {
                ("bad", t("disconnected"))
            };
            let last = n
                .last_passage_at
                .map(|a| ago(lang, now, a))
                .unwrap_or_else(|| "—".to_string());
            let heard = n
                .heard_at
                .map(|a| format!(" ({})", ago(lang, now, a)))
                .unwrap_or_default();
            let _ = write!(
                h,
                r#"<tr><td>{}</td><td class="{class}">{link}{heard}</td><td>{}</td><td>{last}</td><td>#{}</td></tr>"#,
                esc(&n.node),
                n.queue_depth,
                n.last_seq
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</div>");
}

fn ago(lang: Lang, now: Timestamp, then: Timestamp) -> String {
    lang.ago((now.0 - then.0).max(0) / 1000)
}

/// The link state of the devices serving `lane` (`""`: the lot-wide ones), each with
/// its last hour as a strip.
/// The push receiver: where each camera must send, how it is bound, what it delivered,
/// and what was refused (a refused push names no camera it could be trusted for).
fn render_push(h: &mut String, view: &StatusView, lang: Lang) {
    let Some(push) = &view.push else {
        return;
    };
    let t = |s| lang.tr(s);
    let _ = write!(
        h,
        r#"<h2>{}</h2><div class="card" id="camera-push"><div>{} <code>{}</code></div><table><tr>"#,
        t("Camera push"),
        t("listening on"),
        esc(&push.listen)
    );
    for head in [
        "camera",
        "Lanes",
        "vendor",
        "address to set on the camera",
        "bound to",
        "reads",
        "late",
        "resends dropped",
        "pictures dropped",
    ] {
        let _ = write!(h, "<th>{}</th>", t(head));
    }
    h.push_str("</tr>");
    for (cam, n) in &push.cameras {
        let _ = write!(
            h,
            r#"<tr class="push-camera"><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&cam.name),
            esc(&cam.lane),
            esc(cam.vendor),
            esc(&cam.address),
            esc(&cam.bound_to),
            n.reads,
            n.late,
            n.duplicates,
            n.pictures_dropped
        );
    }
    h.push_str("</table>");
    let refused: Vec<String> = push
        .refusals
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    let (class, refused) = if refused.is_empty() {
        ("ok", t("none").to_string())
    } else {
        ("warn", refused.join(", "))
    };
    let _ = write!(
        h,
        r#"<div id="push-refusals">{}: <span class="{class}">{}</span></div></div>"#,
        t("refused since start"),
        esc(&refused)
    );
}

fn render_devices(h: &mut String, view: &StatusView, lane: &str, now: Timestamp, lang: Lang) {
    let mut none = true;
    for (name, state) in view.devices.iter().filter(|(_, s)| s.lane == lane) {
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
        let word = lang.tr(state_now.as_str());
        let _ = write!(
            h,
            r#"<div class="device-row"><span class="device {class}">{} {word}{why} ({})</span>"#,
            esc(name),
            ago(lang, now, state.since)
        );
        let changes = view
            .link_history
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        h.push_str(&charts::link_strip(name, changes, now, view.offset, lang));
        h.push_str("</div>");
    }
    if none {
        h.push_str(lang.tr("no device reported yet"));
    }
}

fn render_passage(
    h: &mut String,
    p: &Passage,
    mask: bool,
    token_query: &str,
    time: &dyn Fn(Timestamp) -> String,
    lang: Lang,
) {
    let plate = match &p.plate {
        Some(plate) => esc(&super::logging::plate_text(plate, mask)),
        None => lang.tr("(no plate)").to_string(),
    };
    let flag = if p.clock_suspect {
        format!(r#"<small class="bad">{}</small>"#, lang.tr("clock suspect"))
    } else {
        String::new()
    };
    let snap = match (&p.snapshot, p.snapshot_len) {
        (Some(_), _) => format!(
            r#"<img class="snap" alt="{}" src="/snapshot/{}{token_query}">"#,
            lang.tr("snapshot"),
            p.id
        ),
        (None, Some(len)) => format!("{} KB, {}", len / 1024, lang.tr("not kept")),
        (None, None) => "—".to_string(),
    };
    let case = match p.case.as_str() {
        "entry" => lang.tr("entry").to_string(),
        "exit" => lang.tr("exit").to_string(),
        "no_plate" => lang.tr("no_plate").to_string(),
        other => esc(other),
    };
    let _ = write!(
        h,
        r#"<tr class="passage"><td class="when">{}{flag}</td><td class="plate">{plate}</td><td>{case}</td><td>{snap}</td></tr>"#,
        time(p.at).get(5..).unwrap_or_default(),
    );
}

/// Reports waiting per kind, with how many are held after refusals and why.
fn render_outbox_kinds(h: &mut String, view: &StatusView, lang: Lang) {
    if view
        .outbox_kinds
        .iter()
        .all(|k| k.pending == 0 && k.held == 0)
    {
        return;
    }
    let t = |s: &'static str| lang.tr(s);
    let _ = write!(
        h,
        r#"<h2>{}</h2><table id="outbox-kinds"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>"#,
        t("Reports waiting, by kind"),
        t("kind"),
        t("pending"),
        t("held after refusals"),
        t("oldest"),
        t("last error"),
    );
    for k in view
        .outbox_kinds
        .iter()
        .filter(|k| k.pending > 0 || k.held > 0)
    {
        let _ = write!(
            h,
            r#"<tr data-kind="{}" data-pending="{}" data-held="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(k.kind),
            k.pending,
            k.held,
            t(k.kind),
            k.pending,
            k.held,
            k.oldest_age
                .map(|a| format!("{} s", a.as_secs()))
                .unwrap_or_default(),
            esc(k.last_error.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</table>");
}

/// The snapshots still kept, newest first across lanes.
fn render_gallery(
    h: &mut String,
    view: &StatusView,
    mask: bool,
    token_query: &str,
    time: &dyn Fn(Timestamp) -> String,
    lang: Lang,
) {
    let mut kept: Vec<&Passage> = view
        .passages
        .values()
        .flatten()
        .filter(|p| p.snapshot.is_some())
        .collect();
    kept.sort_by_key(|p| std::cmp::Reverse(p.at));
    let _ = write!(
        h,
        r#"<h2>{}</h2><div class="gallery" id="snapshots">"#,
        lang.tr("Last snapshots")
    );
    if kept.is_empty() {
        h.push_str(lang.tr("no snapshot yet"));
    }
    for p in kept {
        let plate = match &p.plate {
            Some(plate) => esc(&super::logging::plate_text(plate, mask)),
            None => lang.tr("(no plate)").to_string(),
        };
        let _ = write!(
            h,
            r#"<figure><img class="snap" alt="{plate}" src="/snapshot/{}{token_query}"><figcaption><span class="plate">{plate}</span> · {} · {}</figcaption></figure>"#,
            p.id,
            esc(&p.lane),
            time(p.at).get(11..).unwrap_or_default(),
        );
    }
    h.push_str("</div>");
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
    fn a_lane_node_shows_the_lot_its_queue_and_the_lot_node_as_its_way_to_the_platform() {
        use crate::ops::status::{ClusterLot, ClusterNodeStatus, ClusterStatus};
        let ops = OpsState::new(&crate::ops::state::tests::config());
        let now = Timestamp::now();
        let lot = ClusterLot {
            occupied: 37,
            total: 100,
            free: 63,
            at: now,
        };
        let status = ClusterStatus {
            node: "north".into(),
            role: "lane".into(),
            link_up: true,
            link_since: Some(now),
            lot: Some(lot.clone()),
            queue_depth: 4,
            ..ClusterStatus::default()
        };
        let s = status.clone();
        ops.set_cluster(std::sync::Arc::new(move || s.clone()));
        let view = ops.view();
        assert_eq!(view.occupancy, Some((37, 100)), "the lot's occupancy");
        let html = render(&view, &[], now, false, "");
        assert!(html.contains(r#"id="cluster-lot">37 / 100"#), "{html}");
        assert!(html.contains(r#"id="cluster-queue">4 "#), "{html}");
        let http = crate::config::HttpConfig::default();
        assert!(
            view.problems(now, &http, None).is_empty(),
            "the lot node answers"
        );
        // The lot node silent for long: the lane node says so, not "platform".
        let later = Timestamp(now.0 + 3_600_000);
        let problems = view.problems(later, &http, None);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("lot node unreachable")),
            "{problems:?}"
        );
        // The lot node lists every node.
        let lot_status = ClusterStatus {
            node: "lot".into(),
            role: "lot".into(),
            link_up: true,
            lot: Some(lot),
            held_exits: 2,
            nodes: vec![ClusterNodeStatus {
                node: "south".into(),
                online: false,
                queue_depth: 12,
                last_passage_at: Some(now),
                last_seq: 345,
                heard_at: Some(now),
            }],
            ..ClusterStatus::default()
        };
        ops.set_cluster(std::sync::Arc::new(move || lot_status.clone()));
        let html = render(&ops.view(), &[], now, false, "");
        assert!(html.contains(r#"id="cluster-held">2<"#), "{html}");
        assert!(
            html.contains("<td>south</td>") && html.contains("#345"),
            "{html}"
        );
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
    fn language_comes_from_the_address_then_the_config_then_the_browser() {
        let zh = Some("zh-CN,zh;q=0.9");
        assert_eq!(page_language(None, PageLanguage::Auto, zh), Lang::Zh);
        assert_eq!(
            page_language(None, PageLanguage::Auto, Some("en")),
            Lang::En
        );
        assert_eq!(page_language(None, PageLanguage::Auto, None), Lang::En);
        assert_eq!(page_language(None, PageLanguage::English, zh), Lang::En);
        assert_eq!(page_language(None, PageLanguage::Chinese, None), Lang::Zh);
        assert_eq!(
            page_language(Some("token=x&lang=en"), PageLanguage::Chinese, zh),
            Lang::En
        );
        assert_eq!(
            page_language(Some("lang=zh-CN"), PageLanguage::Auto, None),
            Lang::Zh
        );
    }

    #[test]
    fn chinese_page_translates_words_and_reasons_but_keeps_plates_and_names() {
        let config = crate::ops::state::tests::config();
        let ops = OpsState::new(&config);
        let now = ops.view().started;
        ops.record_passage("entry-1", Some("闽A12345"), "entry", now, None);
        ops.health()
            .set("cam-1", "entry-1", false, now.plus_millis(-120_000));
        let view = ops.view();
        let problems = view.problems(now, &config.http, None);
        let html = render_in(
            Lang::Zh,
            &view,
            &problems,
            HealthLevel::Degraded,
            now,
            true,
            "?token=t",
        );
        assert!(html.contains(r#"<html lang="zh-CN">"#), "{html}");
        assert!(
            html.contains("车道 entry-1:设备 cam-1 已离线 120 秒"),
            "{html}"
        );
        assert!(html.contains("闽A1***5") && html.contains("入口"), "{html}");
        assert!(
            html.contains(r#"data-device="cam-1""#),
            "a link strip: {html}"
        );
        assert!(html.contains("Noto Sans CJK SC"), "CJK font stack: {html}");
        assert!(
            html.contains(r#"href="?token=t&lang=en""#),
            "token kept: {html}"
        );
        // Refreshed in place by the script; a plain reload only without script.
        assert!(html.contains("document.body.replaceWith"), "{html}");
        assert!(
            html.contains(r#"<noscript><meta http-equiv="refresh" content="5"></noscript>"#),
            "{html}"
        );
        let en = render_in(
            Lang::En,
            &view,
            &problems,
            HealthLevel::Degraded,
            now,
            true,
            "",
        );
        assert!(
            en.contains("lane entry-1: device cam-1 down for 120 s"),
            "{en}"
        );
        assert!(en.contains(r#"href="?lang=zh-CN""#), "{en}");
    }

    #[test]
    fn push_cameras_have_a_card_with_their_address_binding_and_counts() {
        let mut config = crate::ops::state::tests::config();
        let extra = crate::config::SiteConfig::from_toml(
            "[platform]\nbase_url = \"https://x\"\napp_id = \"a\"\n[lot]\nparking_lot_no = \"L\"\ntotal_spaces = 9\n\
             [storage]\ndir = \"/tmp\"\n[camera_push]\nlisten = \"0.0.0.0:8089\"\n\
             [[lanes]]\nid = \"entry-1\"\ndirection = \"entry\"\nport_no = \"P1\"\nlayout = \"camera_only\"\n\
             [[devices]]\nname = \"card-hik\"\nprofile = \"hikvision-isapi-anpr\"\nlane = \"entry-1\"\ncamera_id = \"h1\"\nhttp_push = true\nsource = \"192.168.1.64\"\n\
             [[devices]]\nname = \"card-dahua\"\nprofile = \"dahua-itc-tollgate\"\nlane = \"entry-1\"\ncamera_id = \"d1\"\nhttp_push = true\ntoken = \"AbCdEf0123456789-_\"\n",
            std::path::Path::new("push.toml"),
        )
        .unwrap();
        let html = render(&OpsState::new(&config).view(), &[], Timestamp(0), true, "");
        assert!(!html.contains("camera-push"), "no push camera, no card");
        config.camera_push = extra.camera_push;
        config.devices = extra.devices;
        let ops = OpsState::new(&config);
        crate::driver::metrics::PLATE_READS
            .with_label_values(&["card-hik"])
            .inc_by(3);
        let html = render(&ops.view(), &[], Timestamp(0), true, "");
        let card = &html[html.find(r#"id="camera-push""#).expect("push card")..];
        let card = &card[..card.find("</div></div>").expect("card end")];
        assert!(card.contains("<code>0.0.0.0:8089</code>"), "{card}");
        assert!(
            card.contains(
                "<td>card-hik</td><td>entry-1</td><td>hikvision</td><td><code>http://BRIDGE:8089/camera/h1/plate</code></td><td>source 192.168.1.64</td><td>3</td>"
            ),
            "{card}"
        );
        assert!(card.contains("/camera/d1/token/&lt;token&gt;"), "{card}");
        assert!(!html.contains("AbCdEf0123456789"), "the token is a secret");
        assert!(card.contains(r#"id="push-refusals""#), "{card}");
        let zh = render_in(
            Lang::Zh,
            &ops.view(),
            &[],
            HealthLevel::Ok,
            Timestamp(0),
            true,
            "",
        );
        assert!(zh.contains("相机推送") && zh.contains("相机上应填写的推送地址"));
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
