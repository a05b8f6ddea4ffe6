//! The demo's embedded MQTT broker must not keep the cameras' snapshots: a small
//! message it keeps pins the read buffer it arrived in, which can hold a 1.3 MB
//! snapshot (src/sim/broker.rs, `router_config`). Before the fix, a camera's
//! keep-alives kept every snapshot sent between them, and the demo grew by about
//! 1.3 MB per vehicle (18 GB in a 2-hour soak).
//!
//! Its own test binary: it measures this process's resident memory, which tests
//! running beside it in the same process would disturb.

use parking_bridge::sim::{broker, devices::SimCamera};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const SNAPSHOT_BYTES: usize = 1_300_000;
const ROUNDS: usize = 250;

fn rss_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .expect("VmRSS in /proc/self/status")
        / 1024
}

/// Subscribes like the bridge (kept session, the camera's result and keep-alive
/// topics) and counts the snapshots it receives. Returns once subscribed.
async fn subscriber(port: u16, got: Arc<AtomicUsize>) {
    let mut opts = MqttOptions::new("bridge-under-test", "127.0.0.1", port);
    opts.set_clean_session(false);
    opts.set_max_packet_size(16 * 1024 * 1024, 64 * 1024);
    let (client, mut events) = AsyncClient::new(opts, 10);
    let (subscribed, is_subscribed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut subscribed = Some(subscribed);
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    for topic in ["ivs_result", "keep_alive"] {
                        let filter = format!("device/C1/message/up/{topic}");
                        client.subscribe(filter, QoS::AtLeastOnce).await.ok();
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(s) = subscribed.take() {
                        s.send(()).ok();
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.payload.len() >= SNAPSHOT_BYTES => {
                    got.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), is_subscribed)
        .await
        .expect("subscribed within 10 s")
        .expect("subscriber running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alives_between_snapshots_do_not_keep_the_snapshots() {
    let addr = broker::start().expect("embedded broker");
    let got = Arc::new(AtomicUsize::new(0));
    subscriber(addr.port(), got.clone()).await;
    let camera = SimCamera::connect("127.0.0.1", addr.port(), "C1");
    let snapshot: Vec<u8> = (0..SNAPSHOT_BYTES).map(|i| b'A' + (i % 26) as u8).collect();

    let publishing = async {
        let mut baseline = 0;
        for round in 0..ROUNDS {
            if round == 20 {
                // After the warm-up: buffers and logs at their working size.
                baseline = rss_mb();
            }
            camera.keep_alive().await.expect("keep-alive published");
            camera
                .publish_raw("ivs_result", snapshot.clone())
                .await
                .expect("snapshot published");
            // A camera's pace, roughly: the broker reads each message on its own.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        baseline
    };
    let baseline = tokio::time::timeout(Duration::from_secs(60), publishing)
        .await
        .expect("published within 60 s");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.load(Ordering::Relaxed) < ROUNDS && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        got.load(Ordering::Relaxed),
        ROUNDS,
        "every snapshot delivered"
    );

    // Kept as before the fix: about 1.3 MB per round, ~300 MB over the measured
    // rounds. Now: the picture log (≤ 16 MB) and a few pinned buffers.
    let grown = rss_mb().saturating_sub(baseline);
    assert!(
        grown < 120,
        "the broker's process grew by {grown} MB over {} snapshots of {SNAPSHOT_BYTES} bytes",
        ROUNDS - 20
    );
}
