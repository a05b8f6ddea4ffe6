//! An embedded MQTT broker (rumqttd) on loopback for the demo, so `parking-bridge demo`
//! needs no installed services. Integration tests use a real mosquitto instead.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::devices::{VZENITH_QUICK_RESULT, VZENITH_RESULT, vzenith_topic};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot find a free loopback port: {0}")]
    Port(std::io::Error),
    #[error("cannot start the embedded MQTT broker thread: {0}")]
    Thread(std::io::Error),
    #[error("the embedded MQTT broker did not start listening on {0} within 5 s")]
    NotListening(SocketAddr),
}

/// The largest MQTT message the demo broker accepts: cameras send full-size JPEG
/// snapshots inline.
const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// How much each topic's commit log keeps. rumqttd bounds a log by the payload bytes
/// it holds, but a message it keeps pins the whole read buffer it arrived in: a
/// keep-alive read just after a 1.3 MB snapshot holds that snapshot's buffer. With
/// 8 MB logs for every topic, a camera's keep-alive log kept thousands of keep-alives
/// (hours of them) and with them every snapshot: the demo grew by about 1.3 MB per
/// vehicle (18 GB in a 2-hour soak). So every topic keeps at most about 2 KB (a few
/// small messages, each pinning at most one buffer), and only the picture topics
/// keep 8–16 MB — the recognitions the broker holds for the bridge while it is away.
fn router_config() -> rumqttd::RouterConfig {
    let pictures = rumqttd::SegmentConfig {
        max_segment_size: 8 * 1024 * 1024,
        max_segment_count: 2,
    };
    rumqttd::RouterConfig {
        max_connections: 1_000,
        max_outgoing_packet_count: 200,
        // rumqttd's smallest segment: a log starts a new one past 1 KB.
        max_segment_size: 1024,
        max_segment_count: 2,
        // The topics whose messages carry pictures: the simulated cameras'
        // recognitions, quick or not.
        custom_segment: Some(
            [VZENITH_RESULT, VZENITH_QUICK_RESULT]
                .iter()
                .map(|suffix| (vzenith_topic("+", suffix), pictures.clone()))
                .collect(),
        ),
        ..Default::default()
    }
}

/// Starts rumqttd on a free port of 127.0.0.1 in a background thread and returns its
/// address once it accepts connections. The broker lives until the process exits.
pub fn start() -> Result<SocketAddr, BrokerError> {
    // Ask the OS for a free port, then hand it to the broker. Another process could
    // take it in between; on loopback in a demo that is unlikely enough, and the
    // readiness check below turns it into a clear error.
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(BrokerError::Port)?;
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: MAX_PAYLOAD,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "demo-v4".to_string(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = rumqttd::Config {
        id: 0,
        router: router_config(),
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Default::default()
    };
    std::thread::Builder::new()
        .name("demo-mqtt-broker".to_string())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(BrokerError::Thread)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(addr);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotListening(addr))
}
