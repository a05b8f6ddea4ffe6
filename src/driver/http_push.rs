//! HTTP push receiver for cameras that POST their recognitions: Hikvision ISAPI
//! (multipart/XML), Dahua ITC `TollgateInfo`, QianYi and Vzenith `AlarmInfoPlate`.
//! The camera's profile (`[camera] push`) says whose format it is; the field paths
//! decode it like an MQTT message.
//!
//! URLs: `/camera/{camera_id}/…` (anything after the id, e.g. `/plate` or Dahua's
//! `/NotificationInfo/TollgateInfo`), or any other path, matched to the camera by its
//! `source` address (when no other push camera shares it). A token goes in `?token=…` or `/camera/{id}/token/{token}/…`.
//!
//! Safety: every answer comes from [`PushVendor::ack`] or [`Reply::refused`], which
//! can only acknowledge (never an "open the barrier" body). Who may push: a camera's
//! `source` address and/or token must match, else 403 (counted, logged at most once
//! per 10 s). Bodies above `max_body_bytes` get 413; more than `rate_per_s` (burst
//! `burst`) pushes per camera get 429; headers must arrive within
//! `header_timeout_ms` and the body within `body_timeout_ms` (slow-loris clients are
//! cut off); at most `max_connections` connections at once.
//!
//! Late recognitions: a read whose camera time is older than `clock_tolerance_ms`
//! (and whose clock agrees with ours, [`ClockJudge`]) is flagged `late`; a camera with
//! a wrong clock has its reads timed by arrival, flagged `clock_skew`. Resends of a
//! recognition (same text, colour and camera time) are dropped.

use crate::config::{CameraPushConfig, SiteConfig};
use crate::driver::camera::clock::ClockJudge;
use crate::driver::camera::push::{Ack, PushVendor, Reply};
use crate::driver::camera::{CameraState, Context, Decoded, TopicKind, decode_value, time_read};
use crate::driver::profile::{CameraProfile, ProfileLibrary};
use crate::driver::{DriverError, emit, metrics};
use crate::event::{EventKind, RawEvent};
use crate::time::Timestamp;
use bytes::Bytes;
use chrono::FixedOffset;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use prometheus::IntCounterVec;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};

crate::metrics::statics! {
    REJECTED: IntCounterVec = ("parking_bridge_camera_push_rejected_total", "Camera HTTP pushes refused, by reason", ["reason"]);
    LATE: IntCounterVec = ("parking_bridge_camera_push_late_total", "Pushed recognitions the camera stored while it could not reach the bridge, by device", ["device"]);
    RESENDS: IntCounterVec = ("parking_bridge_camera_push_duplicates_total", "Pushed recognitions dropped as repeats or resends, by device", ["device"]);
    PICTURES_DROPPED: IntCounterVec = ("parking_bridge_camera_push_pictures_dropped_total", "Pictures above max_picture_bytes dropped (the recognition is kept), by device", ["device"]);
}

/// Refusals are logged at most this often (a flood must not flood the log).
const REFUSAL_LOG_EVERY_MS: i64 = 10_000;
/// How often silent cameras are checked for their link timeout.
const LINK_TICK: Duration = Duration::from_secs(1);

/// Per-camera token bucket. Pure: time is passed in.
#[derive(Debug, Clone)]
pub struct RateLimit {
    per_s: f64,
    burst: f64,
    tokens: f64,
    at: Option<Timestamp>,
}

impl RateLimit {
    pub fn new(per_s: u32, burst: u32) -> Self {
        RateLimit {
            per_s: f64::from(per_s),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            at: None,
        }
    }

    /// True when one more push may pass at `now`.
    pub fn allow(&mut self, now: Timestamp) -> bool {
        if let Some(at) = self.at {
            let elapsed_s = (now.millis() - at.millis()).max(0) as f64 / 1000.0;
            self.tokens = (self.tokens + elapsed_s * self.per_s).min(self.burst);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a camera's state lock guards.
struct CameraInner {
    state: CameraState,
    clock: ClockJudge,
    rate: RateLimit,
}

struct PushCamera {
    name: String,
    lane: String,
    profile: CameraProfile,
    vendor: PushVendor,
    source: Option<IpAddr>,
    token: Option<String>,
    inner: Mutex<CameraInner>,
}

/// "Logged at most once per period, with how many were not".
struct Quiet {
    last: Option<Timestamp>,
    suppressed: u64,
}

struct Shared {
    cameras: HashMap<String, Arc<PushCamera>>,
    by_source: HashMap<IpAddr, Arc<PushCamera>>,
    tx: mpsc::Sender<RawEvent>,
    limits: CameraPushConfig,
    offset: FixedOffset,
    refusals: Mutex<Quiet>,
}

/// Locks a mutex; poisoning needs a panic while locked, which nothing here does.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a request claims to come from, read from its URL.
#[derive(Debug, PartialEq, Eq)]
struct Target<'a> {
    camera_id: Option<&'a str>,
    token: Option<&'a str>,
}

fn target<'a>(path: &'a str, query: Option<&'a str>) -> Target<'a> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (camera_id, mut token) = match segs.as_slice() {
        ["camera", id, "token", t, ..] => (Some(*id), Some(*t)),
        ["camera", id, ..] => (Some(*id), None),
        _ => (None, None),
    };
    if token.is_none() {
        token = query
            .unwrap_or("")
            .split('&')
            .find_map(|kv| kv.strip_prefix("token="));
    }
    Target { camera_id, token }
}

/// The address to set on a camera so its pushes reach `listen` and name it: `BRIDGE`
/// stands for this PC's address on the cameras' network (not known here), and a token
/// is written as `<token>` (it is a secret: not printed).
pub fn push_url(vendor: PushVendor, listen: &str, camera_id: &str, has_token: bool) -> String {
    let port = listen.rsplit_once(':').map_or(listen, |(_, p)| p);
    let token = if has_token { "/token/<token>" } else { "" };
    let base = format!("http://BRIDGE:{port}/camera/{camera_id}{token}");
    match vendor {
        // The camera appends its own paths to the address it is given.
        PushVendor::Dahua => {
            format!("{base} (the camera appends /NotificationInfo/TollgateInfo and /KeepAlive)")
        }
        PushVendor::Hikvision | PushVendor::Vzenith | PushVendor::Qianyi => format!("{base}/plate"),
    }
}

/// A configured push camera as the installer and the status page see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushCameraInfo {
    pub name: String,
    pub lane: String,
    pub vendor: &'static str,
    /// The address to set on the camera ([`push_url`]).
    pub address: String,
    /// `source 192.168.1.64`, `token`, or both.
    pub bound_to: String,
    /// The address its pushes must come from, when the config binds one.
    pub source: Option<String>,
}

/// The push cameras of `config` (a profile that cannot be found shows as Vzenith-style
/// `…/plate`, the generic JSON push).
pub fn push_cameras(config: &SiteConfig, profiles: &ProfileLibrary) -> Vec<PushCameraInfo> {
    let Some(push) = &config.camera_push else {
        return Vec::new();
    };
    config
        .devices
        .iter()
        .filter(|d| d.http_push)
        .map(|d| {
            let vendor = profiles
                .get(&d.profile)
                .and_then(|p| p.camera.as_ref())
                .and_then(|c| c.push)
                .unwrap_or(PushVendor::Vzenith);
            let id = d.camera_id.as_deref().unwrap_or(&d.name);
            let mut bound = Vec::new();
            if let Some(s) = &d.source {
                bound.push(format!("source {s}"));
            }
            if d.token.is_some() {
                bound.push("token".to_string());
            }
            PushCameraInfo {
                name: d.name.clone(),
                lane: d.lane.clone(),
                vendor: vendor.name(),
                address: push_url(vendor, &push.listen, id, d.token.is_some()),
                bound_to: bound.join(" + "),
                source: d.source.clone(),
            }
        })
        .collect()
}

/// What one push camera delivered since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushCounts {
    pub reads: u64,
    pub late: u64,
    pub duplicates: u64,
    pub pictures_dropped: u64,
}

pub fn counts(device: &str) -> PushCounts {
    PushCounts {
        reads: metrics::PLATE_READS.with_label_values(&[device]).get(),
        late: LATE.with_label_values(&[device]).get(),
        duplicates: RESENDS.with_label_values(&[device]).get(),
        pictures_dropped: PICTURES_DROPPED.with_label_values(&[device]).get(),
    }
}

/// Every reason a push is refused for (the `reason` label of the refusal counter).
pub const REFUSAL_REASONS: [&str; 10] = [
    "unknown_camera",
    "unknown_source",
    "wrong_source",
    "wrong_token",
    "rate_limited",
    "too_large",
    "body_timeout",
    "unreadable",
    "method",
    "too_many_connections",
];

/// Pushes refused since start, by reason (only reasons that happened).
pub fn refusals() -> Vec<(&'static str, u64)> {
    REFUSAL_REASONS
        .iter()
        .map(|r| (*r, REJECTED.with_label_values(&[r]).get()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Compares without an early exit, so response time says nothing about the token.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Shared {
    /// The camera a request may speak for, or the refusal reason.
    fn admit(&self, peer: IpAddr, t: &Target<'_>) -> Result<Arc<PushCamera>, &'static str> {
        let peer = peer.to_canonical();
        let cam = match t.camera_id {
            Some(id) => self.cameras.get(id).ok_or("unknown_camera")?,
            None => self.by_source.get(&peer).ok_or("unknown_source")?,
        };
        if cam.source.is_some_and(|s| s != peer) {
            return Err("wrong_source");
        }
        if let Some(expected) = &cam.token
            && !t.token.is_some_and(|given| same_secret(given, expected))
        {
            return Err("wrong_token");
        }
        Ok(cam.clone())
    }

    fn refuse(&self, status: u16, reason: &'static str, peer: IpAddr, path: &str) -> Reply {
        REJECTED.with_label_values(&[reason]).inc();
        let now = Timestamp::now();
        let mut q = lock(&self.refusals);
        if q.last
            .is_some_and(|t| now.millis() - t.millis() < REFUSAL_LOG_EVERY_MS)
        {
            q.suppressed += 1;
        } else {
            let suppressed = std::mem::take(&mut q.suppressed);
            q.last = Some(now);
            // The path may hold a token: log only its first two segments.
            let shown: String = path.split('/').take(3).collect::<Vec<_>>().join("/");
            tracing::warn!(%peer, path = %shown, status, reason, suppressed, "camera push refused");
        }
        Reply::refused(status)
    }
}

async fn handle(s: Arc<Shared>, peer: SocketAddr, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    if req.method() != hyper::Method::POST && req.method() != hyper::Method::PUT {
        return s.refuse(405, "method", peer.ip(), &path);
    }
    let t = target(&path, req.uri().query());
    let cam = match s.admit(peer.ip(), &t) {
        Ok(c) => c,
        Err(reason) => return s.refuse(403, reason, peer.ip(), &path),
    };
    if !lock(&cam.inner).rate.allow(Timestamp::now()) {
        return s.refuse(429, "rate_limited", peer.ip(), &path);
    }
    let max = s.limits.max_body_bytes;
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return s.refuse(413, "too_large", peer.ip(), &path);
    }
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let read = Limited::new(req.into_body(), max).collect();
    let body =
        match tokio::time::timeout(Duration::from_millis(s.limits.body_timeout_ms), read).await {
            Err(_) => return s.refuse(408, "body_timeout", peer.ip(), &path),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return s.refuse(413, "too_large", peer.ip(), &path);
            }
            Ok(Err(_)) => return s.refuse(400, "unreadable", peer.ip(), &path),
            Ok(Ok(collected)) => collected.to_bytes(),
        };
    let ack = receive(&s, &cam, content_type.as_deref(), body, Timestamp::now()).await;
    match ack {
        Some(ack) => cam.vendor.ack(ack),
        None => Reply::refused(503),
    }
}

/// Decodes one admitted push into events and sends them. `None` when the lanes are
/// gone (shutting down).
async fn receive(
    s: &Shared,
    cam: &PushCamera,
    content_type: Option<&str>,
    body: Bytes,
    now: Timestamp,
) -> Option<Ack> {
    let len = body.len();
    let unpacked = cam
        .vendor
        .unpack(content_type, body, cam.profile.charset)
        .await;
    let decoded = unpacked.and_then(|u| {
        let ctx = Context {
            offset: s.offset,
            parts: &u.parts,
        };
        decode_value(&cam.profile, TopicKind::Result, &u.json, &ctx)
    });
    let mut events = Vec::new();
    let ack = {
        let mut inner = lock(&cam.inner);
        if let Some(up) = inner.state.seen(now) {
            events.push(EventKind::Link { up });
        }
        match decoded {
            Ok(Decoded::Plate(mut read)) => {
                time_read(&mut inner.clock, &mut read, &cam.name, now, None);
                if read
                    .image_len
                    .is_some_and(|n| n > s.limits.max_picture_bytes)
                {
                    PICTURES_DROPPED.with_label_values(&[&cam.name]).inc();
                    tracing::warn!(device = %cam.name, bytes = read.image_len, "camera picture above max_picture_bytes dropped");
                    read.image = None;
                }
                if inner.state.is_duplicate(&read, now) {
                    RESENDS.with_label_values(&[&cam.name]).inc();
                } else {
                    metrics::PLATE_READS.with_label_values(&[&cam.name]).inc();
                    if read.late {
                        LATE.with_label_values(&[&cam.name]).inc();
                    }
                    events.push(EventKind::Plate(read));
                }
                Ack::Recognition
            }
            Ok(Decoded::Alive) => Ack::KeepAlive,
            Err(e) => {
                metrics::PAYLOAD_ERRORS
                    .with_label_values(&[&cam.name])
                    .inc();
                if let Some(suppressed) = inner.state.payload_error(now) {
                    tracing::warn!(device = %cam.name, vendor = cam.vendor.name(), error = %e, bytes = len, content_type, suppressed, "bad camera payload");
                }
                // Acknowledged all the same: a camera that resends until it is
                // acknowledged would otherwise resend it forever.
                Ack::Recognition
            }
        }
    };
    for kind in events {
        if !emit(&s.tx, &cam.lane, &cam.name, now, kind).await {
            return None;
        }
    }
    Some(ack)
}

fn to_response(r: Reply) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(r.body.as_bytes())));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(r.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(r.content_type),
    );
    resp
}

/// Binds the push listener when the site has push cameras; returns the bound address
/// and the task.
pub async fn spawn(
    config: &SiteConfig,
    profiles: &ProfileLibrary,
    tx: mpsc::Sender<RawEvent>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Option<(SocketAddr, tokio::task::JoinHandle<()>)>, DriverError> {
    let cams = super::cameras_of(config, profiles, true)?;
    if cams.is_empty() {
        return Ok(None);
    }
    let Some(push) = &config.camera_push else {
        return Err(DriverError::Setup(
            "http_push cameras need a [camera_push] section".into(),
        ));
    };
    let mut cameras = HashMap::new();
    let mut by_source = HashMap::new();
    for (d, id, profile) in cams {
        let source = match &d.source {
            Some(s) => Some(
                s.parse::<IpAddr>()
                    .map_err(|_| DriverError::Setup(format!("device {}: source {s:?}", d.name)))?
                    .to_canonical(),
            ),
            None => None,
        };
        let cam = Arc::new(PushCamera {
            name: d.name.clone(),
            lane: d.lane.clone(),
            vendor: profile.push.unwrap_or(PushVendor::Vzenith),
            inner: Mutex::new(CameraInner {
                state: CameraState::new(&profile),
                clock: ClockJudge::new(push.clock_tolerance_ms, push.max_late_ms),
                rate: RateLimit::new(push.rate_per_s, push.burst),
            }),
            profile,
            source,
            token: d.token.clone(),
        });
        if let Some(ip) = source {
            // A source shared by several cameras (an NVR pushing for its channels)
            // cannot say which camera spoke: such pushes must name the camera.
            by_source
                .entry(ip)
                .and_modify(|c: &mut Option<Arc<PushCamera>>| *c = None)
                .or_insert_with(|| Some(cam.clone()));
        }
        cameras.insert(id.to_string(), cam);
    }
    let listener = tokio::net::TcpListener::bind(&push.listen)
        .await
        .map_err(|e| DriverError::Setup(format!("camera_push.listen {}: {e}", push.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| DriverError::Setup(e.to_string()))?;
    let offset = crate::time::parse_offset(&config.platform.utc_offset)
        .unwrap_or_else(crate::time::china_standard_time);
    let by_source = by_source
        .into_iter()
        .filter_map(|(ip, c)| Some((ip, c?)))
        .collect();
    let shared = Arc::new(Shared {
        cameras,
        by_source,
        tx,
        limits: push.clone(),
        offset,
        refusals: Mutex::new(Quiet {
            last: None,
            suppressed: 0,
        }),
    });
    tracing::info!(%addr, cameras = shared.cameras.len(), "camera push receiver listening");
    let slots = Arc::new(Semaphore::new(push.max_connections));
    let header_timeout = Duration::from_millis(push.header_timeout_ms);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(LINK_TICK);
        loop {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                _ = tick.tick() => link_tick(&shared).await,
                accepted = listener.accept() => {
                    let Ok((stream, peer)) = accepted else { continue };
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        REJECTED.with_label_values(&["too_many_connections"]).inc();
                        drop(stream);
                        continue;
                    };
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        let service = hyper::service::service_fn(move |req| {
                            let shared = shared.clone();
                            async move {
                                Ok::<_, std::convert::Infallible>(to_response(
                                    handle(shared, peer, req).await,
                                ))
                            }
                        });
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = hyper::server::conn::http1::Builder::new()
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(header_timeout)
                            .serve_connection(io, service)
                            .await;
                    });
                }
            }
        }
    });
    Ok(Some((addr, task)))
}

/// Cameras with keep-alives (`link_timeout_ms > 0`, e.g. Dahua) that fell silent go
/// down.
async fn link_tick(s: &Shared) {
    let now = Timestamp::now();
    for cam in s.cameras.values() {
        let down = lock(&cam.inner).state.tick(now);
        if let Some(up) = down {
            emit(&s.tx, &cam.lane, &cam.name, now, EventKind::Link { up }).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_camera_and_carry_the_token_in_path_or_query() {
        assert_eq!(
            target("/camera/gate3/plate", None),
            Target {
                camera_id: Some("gate3"),
                token: None
            }
        );
        assert_eq!(
            target(
                "/camera/gate3/token/s3cr3t/NotificationInfo/TollgateInfo",
                None
            ),
            Target {
                camera_id: Some("gate3"),
                token: Some("s3cr3t")
            }
        );
        assert_eq!(
            target("/NotificationInfo/KeepAlive", Some("a=1&token=xyz")),
            Target {
                camera_id: None,
                token: Some("xyz")
            }
        );
    }

    #[test]
    fn the_rate_limit_passes_a_burst_then_the_sustained_rate() {
        let mut r = RateLimit::new(2, 3);
        let t = Timestamp(1_000);
        assert!((0..3).all(|_| r.allow(t)));
        assert!(!r.allow(t));
        assert!(r.allow(t.plus_millis(500)));
        assert!(!r.allow(t.plus_millis(600)));
        assert!(r.allow(t.plus_millis(10_000)));
    }

    #[test]
    fn push_urls_route_back_to_the_camera_and_never_show_the_token() {
        for vendor in [
            PushVendor::Hikvision,
            PushVendor::Dahua,
            PushVendor::Qianyi,
            PushVendor::Vzenith,
        ] {
            let url = push_url(vendor, "0.0.0.0:8089", "cam-1", true);
            assert!(
                url.starts_with("http://BRIDGE:8089/camera/cam-1/token/<token>"),
                "{url}"
            );
            let path = url.trim_start_matches("http://BRIDGE:8089");
            let path = path.split(' ').next().unwrap_or_default();
            let path = path.replace("<token>", "s3cret");
            let t = target(&path, None);
            assert_eq!(t.camera_id, Some("cam-1"), "{url}");
            assert_eq!(t.token, Some("s3cret"), "{url}");
        }
        assert_eq!(
            push_url(PushVendor::Vzenith, "[::]:80", "c", false),
            "http://BRIDGE:80/camera/c/plate"
        );
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abcdef", "abcdef"));
        assert!(!same_secret("abcdef", "abcdeg"));
        assert!(!same_secret("abc", "abcdef"));
    }
}
