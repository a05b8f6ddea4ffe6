//! Camera HTTP push receiver (Vzenith legacy AlarmInfoPlate) over real HTTP.

mod driver_common;

use driver_common::*;
use parking_bridge::driver::camera::samples;
use parking_bridge::driver::{load_profiles, metrics, spawn_all};
use parking_bridge::event::EventKind;
use parking_bridge::plate::PlateColor;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

#[tokio::test]
async fn pushed_alarm_info_plate_becomes_a_plate_read_and_oversize_is_refused() {
    let config = site_config(
        "",
        "[camera_push]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 65536\n\
         [[devices]]\nname = \"cam-push\"\nprofile = \"vzenith-legacy-alarminfoplate\"\nlane = \"exit-1\"\ncamera_id = \"gate3\"\nhttp_push = true\nsource = \"127.0.0.1\"\n",
    );
    let profiles = load_profiles(&config).unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let (_stop, shutdown) = watch::channel(false);
    let drivers = spawn_all(&config, &profiles, tx, shutdown).await.unwrap();
    let addr = drivers.push_addr.expect("push receiver bound");
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/camera/gate3/plate");

    let body = samples::vzenith_alarm_info_plate("苏E12345", 5, 1, Some(b"\xff\xd8jpeg\xff\xd9"));
    let resp = http.post(&url).body(body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // Never an "open the barrier" answer.
    assert_eq!(resp.text().await.unwrap(), "{}");
    let (ev, _) = wait_for(&mut rx, Duration::from_secs(3), |e| {
        matches!(e.kind, EventKind::Plate(_))
    })
    .await;
    let EventKind::Plate(p) = ev.kind else {
        unreachable!()
    };
    assert_eq!(
        (p.text.as_deref(), p.color, p.image_len),
        (Some("苏E12345"), PlateColor::Green, Some(8))
    );
    assert_eq!(ev.lane, "exit-1");

    let errors_before = metrics::PAYLOAD_ERRORS
        .with_label_values(&["cam-push"])
        .get();
    let resp = http.post(&url).body("garbage").send().await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "garbage is counted, not an HTTP error the camera would retry forever"
    );
    assert_eq!(
        metrics::PAYLOAD_ERRORS
            .with_label_values(&["cam-push"])
            .get(),
        errors_before + 1
    );

    let resp = http
        .post(&url)
        .body(vec![b' '; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let resp = http
        .post(format!("http://{addr}/camera/unknown/plate"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        403,
        "an unknown camera is refused like a stranger"
    );
    assert!(
        collect_for(&mut rx, Duration::from_millis(200))
            .await
            .iter()
            .all(|e| !matches!(e.kind, EventKind::Plate(_)))
    );
}
