//! MQTT camera driver: one connection to the site broker, subscribing (QoS 1, clean
//! session off) to every camera's topics, decoding payloads per camera profile.
//!
//! Subscribe only: the client handle never leaves this module and nothing here
//! publishes, so no command can reach a camera.

use crate::config::{DeviceConfig, MqttConfig, SiteConfig};
use crate::driver::camera::clock::ClockJudge;
use crate::driver::camera::{CameraState, Decoded, TopicKind, decode, route_value, time_read};
use crate::driver::profile::{CameraProfile, ProfileLibrary};
use crate::driver::{DriverError, emit, metrics};
use crate::event::{EventKind, RawEvent};
use crate::time::Timestamp;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// One camera as the MQTT task sees it.
struct Camera {
    name: String,
    /// The device's `camera_id`: what a shared topic's payload names it by.
    id: String,
    lane: String,
    profile: CameraProfile,
    state: CameraState,
    clock: ClockJudge,
}

/// Largest message accepted from the broker (cameras embed JPEGs as base64).
pub const MAX_PACKET_BYTES: usize = 8 * 1024 * 1024;

/// The concrete topics of one camera device: the profile's, each replaced by the
/// device's own when it has one (`topic`, `topics`), `{id}` filled in. No duplicates.
pub fn camera_topics(
    profile: &CameraProfile,
    id: &str,
    device: &DeviceConfig,
) -> Vec<(String, TopicKind)> {
    let fill = |t: &str| t.replace("{id}", id);
    let own = device.topics.clone().unwrap_or_default();
    let result = device
        .topic
        .clone()
        .or(own.result)
        .unwrap_or_else(|| profile.topics.result.clone());
    let mut out = vec![(fill(&result), TopicKind::Result)];
    if let Some(q) = own.quick.or_else(|| profile.topics.quick.clone()) {
        out.push((fill(&q), TopicKind::Quick));
    }
    let heartbeats = own
        .heartbeat
        .map(|l| l.0)
        .unwrap_or_else(|| profile.topics.heartbeat.0.clone());
    for h in heartbeats {
        out.push((fill(&h), TopicKind::Heartbeat));
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|(t, _)| seen.insert(t.clone()));
    out
}

/// Topic → the cameras listening on it. Several cameras may share a topic when each
/// one's profile says where a payload names its sender (`route_by`).
type Routes = HashMap<String, Vec<(usize, TopicKind)>>;

/// Which camera a message on a shared topic is from: the one whose `camera_id` the
/// payload names. `None` when it names none of them (or nothing).
fn route(
    cameras: &[Camera],
    candidates: &[(usize, TopicKind)],
    payload: &[u8],
) -> Result<(usize, TopicKind), Option<String>> {
    if let [only] = candidates {
        return Ok(*only);
    }
    let mut named = None;
    for (index, kind) in candidates {
        let Some(cam) = cameras.get(*index) else {
            continue;
        };
        let value = route_value(&cam.profile, payload);
        if value.as_deref() == Some(cam.id.as_str()) {
            return Ok((*index, *kind));
        }
        named = named.or(value);
    }
    Err(named)
}

pub fn options(m: &MqttConfig) -> Result<MqttOptions, DriverError> {
    let mut o = MqttOptions::new(&m.client_id, &m.host, m.port);
    o.set_keep_alive(Duration::from_secs(m.keep_alive_s));
    // Keep the session: the broker queues QoS 1 recognitions while we reconnect.
    o.set_clean_session(false);
    o.set_max_packet_size(MAX_PACKET_BYTES, 64 * 1024);
    if let Some(u) = &m.username {
        o.set_credentials(u, m.password.clone().unwrap_or_default());
    }
    if m.tls {
        let transport = match &m.ca_file {
            Some(path) => {
                let ca = std::fs::read(path)
                    .map_err(|e| DriverError::Setup(format!("mqtt.ca_file {path}: {e}")))?;
                rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Simple {
                    ca,
                    alpn: None,
                    client_auth: None,
                })
            }
            None => rumqttc::Transport::tls_with_default_config(),
        };
        o.set_transport(transport);
    }
    Ok(o)
}

/// Starts the MQTT task when the site has cameras. `None` when there are none.
pub fn spawn(
    config: &SiteConfig,
    profiles: &ProfileLibrary,
    tx: mpsc::Sender<RawEvent>,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>, DriverError> {
    let found = super::cameras_of(config, profiles, false)?;
    if found.is_empty() {
        return Ok(None);
    }
    let Some(m) = &config.mqtt else {
        return Err(DriverError::Setup("cameras need an [mqtt] section".into()));
    };
    let mut cameras: Vec<Camera> = Vec::new();
    let mut routes: Routes = HashMap::new();
    for (d, id, profile) in found {
        for (topic, kind) in camera_topics(&profile, id, d) {
            let sharing = routes.entry(topic.clone()).or_default();
            let routable = |i: usize| {
                cameras
                    .get(i)
                    .is_some_and(|c: &Camera| !c.profile.route_by.0.is_empty())
            };
            if !sharing.is_empty()
                && (profile.route_by.0.is_empty() || !sharing.iter().all(|(i, _)| routable(*i)))
            {
                return Err(DriverError::Setup(format!(
                    "device {}: topic {topic} is used by another camera, and a payload on it does not say which camera sent it (only profiles with `route_by`, e.g. vzenith-legacy-alarminfoplate, share a topic)",
                    d.name
                )));
            }
            sharing.push((cameras.len(), kind));
        }
        cameras.push(Camera {
            name: d.name.clone(),
            id: id.to_string(),
            lane: d.lane.clone(),
            state: CameraState::new(&profile),
            clock: ClockJudge::new(m.clock_tolerance_ms, m.max_late_ms),
            profile,
        });
    }
    let opts = options(m)?;
    Ok(Some(tokio::spawn(run(opts, cameras, routes, tx, shutdown))))
}

async fn run(
    opts: MqttOptions,
    mut cameras: Vec<Camera>,
    routes: Routes,
    tx: mpsc::Sender<RawEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let broker = format!("{}:{}", opts.broker_address().0, opts.broker_address().1);
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut connected = false;
    // When the current connection began: a read the camera made before it was held by
    // the broker (see `ClockJudge::judge_brokered`).
    let mut listening_since = Timestamp::now();
    let mut backoff = Duration::from_millis(200);
    // Unroutable messages on shared topics: logged once per burst per topic.
    let mut unrouted: HashMap<String, (Timestamp, u64)> = HashMap::new();
    // Some brokers (rumqttd, the demo's) close the connection when a filter begins
    // with `$` (Vzenith's `$/device/…` keep-alives). A connection closed before the
    // subscription was acknowledged drops those filters from then on, said once, so
    // the other topics keep working.
    let mut dollar_filters = routes.keys().any(|t| t.starts_with('$'));
    let mut awaiting_suback = false;
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                let _ = client.disconnect().await;
                return;
            }
            _ = tick.tick() => {
                let now = Timestamp::now();
                for cam in &mut cameras {
                    if let Some(up) = cam.state.tick(now)
                        && !emit_link(cam, up, now, &tx).await
                    {
                        return;
                    }
                }
            }
            polled = eventloop.poll() => match polled {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    connected = true;
                    listening_since = Timestamp::now();
                    // Back to a kept session after a clean one (oversize message above).
                    eventloop.mqtt_options.set_clean_session(false);
                    backoff = Duration::from_millis(200);
                    tracing::info!(broker = %broker, session_present = ack.session_present, "mqtt connected");
                    // Subscribe again even with a kept session: cheap, and correct after
                    // a broker restart that lost the session.
                    let filters = routes
                        .keys()
                        .filter(|t| dollar_filters || !t.starts_with('$'))
                        .map(|t| rumqttc::SubscribeFilter::new(t.clone(), QoS::AtLeastOnce));
                    match client.try_subscribe_many(filters) {
                        Ok(()) => awaiting_suback = true,
                        Err(e) => tracing::warn!(error = %e, "mqtt subscribe failed"),
                    }
                    let now = Timestamp::now();
                    for cam in &mut cameras {
                        if let Some(up) = cam.state.broker_up()
                            && !emit_link(cam, up, now, &tx).await
                        {
                            return;
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let topic = p.topic.as_str();
                    let Some(candidates) = routes.get(topic) else { continue };
                    let (index, kind) = match route(&cameras, candidates, &p.payload) {
                        Ok(found) => found,
                        Err(named) => {
                            let now = Timestamp::now();
                            let (last, suppressed) = unrouted.entry(topic.to_string()).or_insert((Timestamp(0), 0));
                            if now.millis() - last.millis() >= crate::driver::camera::ERROR_BURST_MS {
                                let ids: Vec<&str> = candidates.iter().filter_map(|(i, _)| cameras.get(*i)).map(|c| c.id.as_str()).collect();
                                tracing::warn!(topic, serialno = named.as_deref().unwrap_or("(none)"), configured = %ids.join(", "), suppressed = *suppressed, "message on a shared camera topic names no configured camera_id; dropped");
                                *last = now;
                                *suppressed = 0;
                            } else {
                                *suppressed += 1;
                            }
                            metrics::UNROUTED.with_label_values(&[topic]).inc();
                            continue;
                        }
                    };
                    let Some(cam) = cameras.get_mut(index) else { continue };
                    if !handle_message(cam, kind, &p.payload, listening_since, &tx).await {
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    awaiting_suback = false;
                    let refused = ack
                        .return_codes
                        .iter()
                        .filter(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                        .count();
                    if refused > 0 {
                        tracing::warn!(broker = %broker, refused, "the broker refused some camera topic subscriptions; check its ACL");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if awaiting_suback && dollar_filters {
                        dollar_filters = false;
                        let dropped: Vec<&str> = routes.keys().filter(|t| t.starts_with('$')).map(String::as_str).collect();
                        tracing::warn!(broker = %broker, topics = ?dropped, "the broker closed the connection on subscribing; topics beginning with '$' are no longer subscribed (keep-alives on them are not received; set the camera's topics to a form the broker accepts)");
                    }
                    awaiting_suback = false;
                    // A message above MAX_PACKET_BYTES in our kept session: the broker
                    // redelivers it at every reconnect and the client refuses it again,
                    // so the cameras would stay blind forever. Reconnect once with a
                    // clean session (the broker drops what it queued for the bridge),
                    // then keep sessions again (found by tests/resource_limits.rs).
                    if let rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
                        rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(bytes),
                    )) = &e
                    {
                        metrics::MQTT_OVERSIZE.inc();
                        tracing::error!(broker = %broker, bytes, limit = MAX_PACKET_BYTES, "a camera message above the MQTT packet limit was refused; reconnecting with a clean session, which drops the messages the broker had queued for the bridge");
                        eventloop.mqtt_options.set_clean_session(true);
                        eventloop.clean();
                    }
                    if connected {
                        tracing::warn!(broker = %broker, error = %e, "mqtt connection lost; reconnecting");
                    }
                    connected = false;
                    let now = Timestamp::now();
                    for cam in &mut cameras {
                        if let Some(up) = cam.state.broker_lost()
                            && !emit_link(cam, up, now, &tx).await
                        {
                            return;
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

/// Decodes and forwards one message; false when the event receiver is gone.
async fn handle_message(
    cam: &mut Camera,
    kind: TopicKind,
    payload: &[u8],
    listening_since: Timestamp,
    tx: &mpsc::Sender<RawEvent>,
) -> bool {
    let now = Timestamp::now();
    if let Some(up) = cam.state.seen(now)
        && !emit_link(cam, up, now, tx).await
    {
        return false;
    }
    match decode(&cam.profile, kind, payload) {
        Ok(Decoded::Alive) => true,
        Ok(Decoded::Plate(mut read)) => {
            time_read(
                &mut cam.clock,
                &mut read,
                &cam.name,
                now,
                Some(listening_since),
            );
            if cam.state.is_duplicate(&read, now) {
                tracing::debug!(device = %cam.name, "duplicate plate read dropped");
                return true;
            }
            metrics::PLATE_READS.with_label_values(&[&cam.name]).inc();
            tracing::info!(
                device = %cam.name,
                plate = %read.text.as_deref().map(crate::plate::for_log).unwrap_or_else(|| "(none)".into()),
                color = %read.color,
                quick = read.quick,
                late = read.late,
                "plate read"
            );
            emit(tx, &cam.lane, &cam.name, now, EventKind::Plate(read)).await
        }
        Err(e) => {
            metrics::PAYLOAD_ERRORS
                .with_label_values(&[&cam.name])
                .inc();
            if let Some(suppressed) = cam.state.payload_error(now) {
                tracing::warn!(device = %cam.name, error = %e, bytes = payload.len(), suppressed, "bad camera payload");
            }
            true
        }
    }
}

async fn emit_link(cam: &Camera, up: bool, now: Timestamp, tx: &mpsc::Sender<RawEvent>) -> bool {
    tracing::info!(device = %cam.name, up, "camera link changed");
    emit(tx, &cam.lane, &cam.name, now, EventKind::Link { up }).await
}
