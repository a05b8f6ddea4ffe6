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

/// The rejected-push counter for `reason`, read from the default registry.
fn rejected(reason: &str) -> u64 {
    prometheus::gather()
        .iter()
        .filter(|f| f.name() == "parking_bridge_camera_push_rejected_total")
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| m.get_label().iter().any(|l| l.value() == reason))
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .no_proxy()
        .build()
        .unwrap()
}

async fn start(
    sections: &str,
) -> (
    std::net::SocketAddr,
    mpsc::Receiver<parking_bridge::event::RawEvent>,
    watch::Sender<bool>,
) {
    let config = site_config("", sections);
    let profiles = load_profiles(&config).unwrap();
    let (tx, rx) = mpsc::channel(64);
    let (stop, shutdown) = watch::channel(false);
    let drivers = spawn_all(&config, &profiles, tx, shutdown).await.unwrap();
    (drivers.push_addr.expect("push receiver bound"), rx, stop)
}

fn plates(events: &[parking_bridge::event::RawEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Plate(p) => Some(p.text.clone().unwrap_or_default()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn pushes_from_an_unlisted_address_or_with_a_wrong_token_create_nothing_and_are_counted() {
    let (addr, mut rx, _stop) = start(
        "[camera_push]\nlisten = \"127.0.0.1:0\"\n\
         [[devices]]\nname = \"hik\"\nprofile = \"hikvision-isapi-anpr\"\nlane = \"entry-1\"\ncamera_id = \"hik1\"\nhttp_push = true\nsource = \"127.0.0.2\"\n\
         [[devices]]\nname = \"dh\"\nprofile = \"dahua-itc-tollgate\"\nlane = \"exit-1\"\ncamera_id = \"dh1\"\nhttp_push = true\ntoken = \"k3y-0123456789abcdef\"\n",
    )
    .await;
    let xml = samples::hikvision_anpr_xml("京A11111", "blue", "2024-05-01T08:30:00+08:00");
    let (ct, body) = samples::hikvision_multipart(&xml, Some(b"scene"), None);
    let post = |client: &reqwest::Client, url: String| {
        client
            .post(url)
            .header("content-type", ct.clone())
            .body(body.clone())
            .send()
    };
    let allowed = client_from("127.0.0.2");
    let stranger = client_from("127.0.0.3");
    let (wrong_source, unknown_source, wrong_token) = (
        rejected("wrong_source"),
        rejected("unknown_source"),
        rejected("wrong_token"),
    );

    // The stranger, naming the camera or not: 403, nothing created.
    let r = post(&stranger, format!("http://{addr}/camera/hik1/plate"))
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap(), "", "a refusal says nothing");
    let r = post(&stranger, format!("http://{addr}/ISAPI/Event/notification"))
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The Dahua camera with a wrong token, or none.
    let dahua = samples::dahua_tollgate("京B22222", "Blue", "2024-05-01 08:30:00", None);
    for url in [
        format!(
            "http://{addr}/camera/dh1/token/k3y-0123456789abcdeX/NotificationInfo/TollgateInfo"
        ),
        format!("http://{addr}/camera/dh1/NotificationInfo/TollgateInfo"),
        format!("http://{addr}/camera/dh1/plate?token=nope"),
    ] {
        let r = allowed.post(url).body(dahua.clone()).send().await.unwrap();
        assert_eq!(r.status(), 403);
    }
    assert!(plates(&collect_for(&mut rx, Duration::from_millis(300)).await).is_empty());
    assert_eq!(rejected("wrong_source"), wrong_source + 1);
    assert_eq!(rejected("unknown_source"), unknown_source + 1);
    assert_eq!(rejected("wrong_token"), wrong_token + 3);

    // The camera's own address, with or without its id in the URL.
    let r = post(&allowed, format!("http://{addr}/camera/hik1/plate"))
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, String::new())
    );
    let r = post(&allowed, format!("http://{addr}/ISAPI/Event/notification"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The right token, in the path or the query, from any address.
    for url in [
        format!(
            "http://{addr}/camera/dh1/token/k3y-0123456789abcdef/NotificationInfo/TollgateInfo"
        ),
        format!("http://{addr}/camera/dh1/plate?token=k3y-0123456789abcdef"),
    ] {
        let r = stranger.post(url).body(dahua.clone()).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("\"Result\":true"));
    }
    let got = plates(&collect_for(&mut rx, Duration::from_millis(500)).await);
    // The second Hikvision push and the second Dahua push repeat the first: dropped.
    assert_eq!(got, vec!["京A11111".to_string(), "京B22222".to_string()]);
}

#[tokio::test]
async fn a_dahua_camera_resending_one_recognition_five_times_yields_one_read() {
    let (addr, mut rx, _stop) = start(
        "[camera_push]\nlisten = \"127.0.0.1:0\"\n\
         [[devices]]\nname = \"dh\"\nprofile = \"dahua-itc-tollgate\"\nlane = \"exit-1\"\ncamera_id = \"dh1\"\nhttp_push = true\nsource = \"127.0.0.1\"\n",
    )
    .await;
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/camera/dh1/NotificationInfo/TollgateInfo");
    let now = chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap());
    let body = samples::dahua_tollgate(
        "浙A55555",
        "Blue",
        &now.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        Some(b"\xff\xd8scene\xff\xd9"),
    );
    for _ in 0..5 {
        let r = http.post(&url).body(body.clone()).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.text().await.unwrap(),
            r#"{"Result":true,"Message":"received"}"#
        );
    }
    let keep_alive = http
        .post(format!(
            "http://{addr}/camera/dh1/NotificationInfo/KeepAlive"
        ))
        .body(samples::dahua_keep_alive("dh1"))
        .send()
        .await
        .unwrap();
    assert_eq!(keep_alive.status(), 200);
    let events = collect_for(&mut rx, Duration::from_millis(500)).await;
    assert_eq!(plates(&events), vec!["浙A55555".to_string()]);
    assert!(
        events
            .iter()
            .any(|e| e.kind == EventKind::Link { up: true })
    );
    let read = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Plate(p) => Some(p.clone()),
            _ => None,
        })
        .unwrap();
    assert!(!read.late && !read.clock_skew, "a live read: {read:?}");
    assert_eq!(read.image_len, Some(9));
}

#[tokio::test]
async fn limits_oversize_pictures_rate_and_slow_clients() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (addr, mut rx, _stop) = start(
        "[camera_push]\nlisten = \"127.0.0.1:0\"\nmax_picture_bytes = 1024\nrate_per_s = 1\nburst = 2\n\
         header_timeout_ms = 300\nbody_timeout_ms = 300\n\
         [[devices]]\nname = \"hik\"\nprofile = \"hikvision-isapi-anpr\"\nlane = \"entry-1\"\ncamera_id = \"hik1\"\nhttp_push = true\nsource = \"127.0.0.1\"\n",
    )
    .await;
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/camera/hik1/plate");
    // An oversize picture is dropped; the recognition is kept.
    let xml = samples::hikvision_anpr_xml("京A77777", "blue", "2024-05-01T08:30:00+08:00");
    let (ct, body) = samples::hikvision_multipart(&xml, Some(&[0xAB; 4096]), None);
    let r = http
        .post(&url)
        .header("content-type", &ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (ev, _) = wait_for(&mut rx, Duration::from_secs(3), |e| {
        matches!(e.kind, EventKind::Plate(_))
    })
    .await;
    let EventKind::Plate(p) = ev.kind else {
        unreachable!()
    };
    assert_eq!(
        (p.text.as_deref(), p.image.is_none()),
        (Some("京A77777"), true)
    );
    // Burst of 2: the second passes, the third is refused (429).
    let r = http.post(&url).body(xml.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let before = rejected("rate_limited");
    let r = http.post(&url).body(xml.clone()).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(rejected("rate_limited"), before + 1);

    // Slow loris: half a request line, then silence: the bridge hangs up.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /camera/hik1/plate HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("the bridge closes a slow client's connection")
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");
    // A body that never completes: 408.
    tokio::time::sleep(Duration::from_millis(1100)).await; // the rate bucket refills
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /camera/hik1/plate HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n<Event",
    )
    .await
    .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("an answer within the body timeout")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn stored_recognitions_are_flagged_late_and_a_clock_in_the_future_is_flagged_skewed() {
    let (addr, mut rx, _stop) = start(
        "[camera_push]\nlisten = \"127.0.0.1:0\"\n\
         [[devices]]\nname = \"hik\"\nprofile = \"hikvision-isapi-anpr\"\nlane = \"entry-1\"\ncamera_id = \"hik1\"\nhttp_push = true\nsource = \"127.0.0.1\"\n",
    )
    .await;
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/camera/hik1/plate");
    let now = chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap());
    for (plate, at) in [
        ("京A00001", now - chrono::Duration::hours(2)),
        ("京A00002", now),
        ("京A00003", now + chrono::Duration::hours(1)),
    ] {
        let xml = samples::hikvision_anpr_xml(plate, "blue", &at.to_rfc3339());
        let r = http.post(&url).body(xml).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let reads: Vec<_> = collect_for(&mut rx, Duration::from_millis(500))
        .await
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Plate(p) => Some((p.text.unwrap_or_default(), p.late, p.clock_skew)),
            _ => None,
        })
        .collect();
    assert_eq!(
        reads,
        vec![
            ("京A00001".to_string(), true, false),
            ("京A00002".to_string(), false, false),
            ("京A00003".to_string(), false, true),
        ]
    );
}
