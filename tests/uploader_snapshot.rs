//! A 12-megapixel camera JPEG reaches the platform under 500 KB and decodes.

mod photo_common;
mod process_common;
mod store_common;

use base64::Engine;
use parking_bridge::config::LotConfig;
use parking_bridge::platform::{Answer, ClientError, Uplink, Verdict};
use parking_bridge::store::Store;
use parking_bridge::time::Timestamp;
use parking_bridge::uploader::{Deliver, StatusHandle, Uploader, UploaderSettings};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store_common::*;

/// The generated 12 MP photo, made once: both tests here use it and it is slow to encode.
fn twelve_megapixel_jpeg() -> Vec<u8> {
    static JPEG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    JPEG.get_or_init(photo_common::photo_like_jpeg).clone()
}

#[test]
fn twelve_megapixel_snapshot_reaches_the_mock_under_500_kb() {
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("car.jpg");
    let jpeg = twelve_megapixel_jpeg();
    assert!(
        jpeg.len() > 1_000_000,
        "a realistic camera file: {} bytes",
        jpeg.len()
    );
    std::fs::write(&photo, &jpeg).unwrap();
    let mock = Mock::start(&dir.path().join("rec.jsonl"), &[]);
    let cfg = write_site(dir.path(), &mock.base_url(), &Site::default());
    let mut args = stay_enter_args(cfg.to_str().unwrap(), "闽A12345", "pnc_02", "entry-1");
    args.extend(["--snapshot", photo.to_str().unwrap()]);
    let out = cli(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let o = stdout(&out).trim().to_string();
    let _bridge = Bridge::start(&cfg, &dir.path().join("run.log"));
    wait_until(60, "snapshot accepted", || {
        mock.records()
            .iter()
            .any(|r| r.kind() == "uploadSnapshot" && r.accepted)
    });
    let recs = mock.records();
    let snap = recs
        .iter()
        .find(|r| r.kind() == "uploadSnapshot" && r.accepted)
        .unwrap();
    assert_eq!(snap.out_order_no(), Some(o.as_str()));
    assert_eq!(snap.body["event"], "parking");
    let bytes = snap.body["snapshot"]["snapshot_bytes"].as_u64().unwrap();
    assert!(bytes > 10_000 && bytes < 500_000, "{bytes} bytes");
    assert_exits_after_entries(&recs);
}

/// Captures the snapshot images the uploader sends.
struct Capture(Mutex<Vec<String>>);

impl Deliver for Capture {
    async fn deliver(&self, uplink: &Uplink) -> Result<Answer, ClientError> {
        if let Uplink::Snapshot(s) = uplink {
            self.0.lock().unwrap().push(s.snapshot.to_string());
        }
        Ok(Answer {
            verdict: Verdict::Done,
            result_code: Some("success".into()),
            result_msg: None,
            inner_oder_no: None,
            sign_level: None,
            sign_time: None,
            unexpected_code: false,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_megapixel_snapshot_as_sent_decodes_and_keeps_detail() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), &LotConfig::new("P1", 10)).unwrap());
    let jpeg = tokio::task::spawn_blocking(twelve_megapixel_jpeg)
        .await
        .unwrap();
    let stay = new_stay("闽A12345", Some(jpeg));
    store.open_stay(stay, Timestamp::now()).unwrap();
    let capture = Arc::new(Capture(Mutex::new(Vec::new())));
    let settings = UploaderSettings::new("P1", parking_bridge::time::china_standard_time());
    let task = tokio::spawn(
        Uploader::new(
            store.clone(),
            capture.clone(),
            settings,
            StatusHandle::default(),
        )
        .run(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while capture.0.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no snapshot sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    let b64 = capture.0.lock().unwrap()[0].clone();
    assert!(b64.len() < 500_000, "base64 is {} characters", b64.len());
    let jpeg = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .unwrap();
    let img = image::load_from_memory(&jpeg).expect("decodes");
    assert!(
        img.width() >= 1280,
        "plates stay legible: {} px wide",
        img.width()
    );
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    assert!((w * 3 - h * 4).abs() <= 4, "aspect ratio kept: {w}x{h}");
}
