//! HTTP push receiver for cameras that POST their recognitions (Vzenith legacy
//! `AlarmInfoPlate`): `POST /camera/{camera_id}/plate`, body decoded with the device's
//! camera profile exactly like an MQTT message.
//!
//! Read-only: the answer is an empty JSON object. Vzenith cameras treat some answer
//! bodies (`Response_AlarmInfoPlate` with `info: "ok"`) as "open the barrier", so the
//! bridge never sends one. Bodies above `max_body_bytes` get 413 and are counted.

use crate::config::SiteConfig;
use crate::driver::camera::{CameraState, Decoded, TopicKind, decode};
use crate::driver::profile::{CameraProfile, ProfileLibrary};
use crate::driver::{DriverError, metrics};
use crate::event::{EventKind, RawEvent};
use crate::time::Timestamp;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use prometheus::IntCounterVec;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use tokio::sync::{mpsc, watch};

static REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    crate::metrics::counter_vec(
        "parking_bridge_camera_push_rejected_total",
        "Camera HTTP pushes refused, by reason",
        &["reason"],
    )
});

struct PushCamera {
    name: String,
    lane: String,
    profile: CameraProfile,
    state: Mutex<CameraState>,
}

#[derive(Clone)]
struct Shared {
    cameras: Arc<HashMap<String, PushCamera>>,
    tx: mpsc::Sender<RawEvent>,
}

/// The router alone (tests can serve it on any listener).
fn router(shared: Shared, max_body: usize) -> Router {
    Router::new()
        .route("/camera/{id}/plate", post(receive))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(shared)
}

async fn receive(
    State(s): State<Shared>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> (StatusCode, &'static str) {
    let Some(cam) = s.cameras.get(&id) else {
        REJECTED.with_label_values(&["unknown_camera"]).inc();
        return (StatusCode::NOT_FOUND, "{}");
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let status = e.status();
            let reason = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "unreadable"
            };
            REJECTED.with_label_values(&[reason]).inc();
            tracing::warn!(device = %cam.name, %status, "camera push refused");
            return (status, "{}");
        }
    };
    let now = Timestamp::now();
    let mut events = Vec::new();
    {
        // Poisoning needs a panic while locked; decode never panics, so recover.
        let mut state = cam.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(up) = state.seen(now) {
            events.push(EventKind::Link { up });
        }
        match decode(&cam.profile, TopicKind::Result, &body) {
            Ok(Decoded::Plate(read)) if !state.is_duplicate(&read, now) => {
                metrics::PLATE_READS.with_label_values(&[&cam.name]).inc();
                events.push(EventKind::Plate(read));
            }
            Ok(_) => {}
            Err(e) => {
                metrics::PAYLOAD_ERRORS
                    .with_label_values(&[&cam.name])
                    .inc();
                if let Some(suppressed) = state.payload_error(now) {
                    tracing::warn!(device = %cam.name, error = %e, bytes = body.len(), suppressed, "bad camera payload");
                }
            }
        }
    }
    for kind in events {
        let ev = RawEvent {
            lane: cam.lane.clone(),
            device: cam.name.clone(),
            at: now,
            kind,
        };
        if s.tx.send(ev).await.is_err() {
            return (StatusCode::SERVICE_UNAVAILABLE, "{}");
        }
    }
    (StatusCode::OK, "{}")
}

/// Binds the push listener when the site has push cameras; returns the bound address
/// and the task.
pub async fn spawn(
    config: &SiteConfig,
    profiles: &ProfileLibrary,
    tx: mpsc::Sender<RawEvent>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Option<(std::net::SocketAddr, tokio::task::JoinHandle<()>)>, DriverError> {
    let mut cameras = HashMap::new();
    for (d, id, profile) in super::cameras_of(config, profiles, true)? {
        let state = Mutex::new(CameraState::new(&profile));
        cameras.insert(
            id.to_string(),
            PushCamera {
                name: d.name.clone(),
                lane: d.lane.clone(),
                profile,
                state,
            },
        );
    }
    if cameras.is_empty() {
        return Ok(None);
    }
    let Some(push) = &config.camera_push else {
        return Err(DriverError::Setup(
            "http_push cameras need a [camera_push] section".into(),
        ));
    };
    let listener = tokio::net::TcpListener::bind(&push.listen)
        .await
        .map_err(|e| DriverError::Setup(format!("camera_push.listen {}: {e}", push.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| DriverError::Setup(e.to_string()))?;
    let app = router(
        Shared {
            cameras: Arc::new(cameras),
            tx,
        },
        push.max_body_bytes,
    );
    tracing::info!(%addr, "camera push receiver listening");
    let task = tokio::spawn(async move {
        let stop = async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    return;
                }
            }
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "camera push receiver failed");
        }
    });
    Ok(Some((addr, task)))
}
