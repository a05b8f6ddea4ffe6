//! Camera HTTP push receiver: pushes/s with 1920×1080 pictures, push → RawEvent
//! latency and resident memory, per push format, against the JSON path that came
//! before the vendor receivers (Vzenith `AlarmInfoPlate` with a base64 picture) in
//! the same run.
//!
//! `cargo bench --bench camera_push`. One process: the receiver (the real one, from
//! `spawn_all`) and `CLIENTS` concurrent HTTP clients on loopback, each push a new
//! plate with the same 1920×1080 JPEG. Per format it prints the median over
//! `SAMPLES` rounds of `PUSHES` pushes: pushes/s, p50/p99 latency from the start of
//! the request to the event arriving on the lane channel, and the process's VmRSS
//! after the round and its peak (VmHWM; clients included).

use parking_bridge::config::SiteConfig;
use parking_bridge::driver::camera::samples;
use parking_bridge::driver::{load_profiles, spawn_all};
use parking_bridge::event::EventKind;
use parking_bridge::plate::PlateColor;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

const SAMPLES: usize = 5;
const PUSHES: usize = 200;
const CLIENTS: usize = 4;

#[derive(Clone, Copy, Debug)]
enum Format {
    /// The path before this work: Vzenith AlarmInfoPlate JSON, base64 picture.
    VzenithJson,
    /// Hikvision multipart: XML part + raw JPEG part.
    HikvisionMultipart,
    /// Dahua TollgateInfo JSON, base64 picture.
    DahuaJson,
}

impl Format {
    fn camera(self) -> &'static str {
        match self {
            Format::VzenithJson => "vz",
            Format::HikvisionMultipart => "hik",
            Format::DahuaJson => "dh",
        }
    }

    /// (url suffix, content type, body) for plate number `n`.
    fn request(self, n: usize, jpeg: &[u8]) -> (String, String, Vec<u8>) {
        let plate = format!("京A{:05}", n % 100_000);
        let now = chrono::Utc::now().with_timezone(&parking_bridge::time::china_standard_time());
        match self {
            Format::VzenithJson => (
                "plate".into(),
                "application/json".into(),
                samples::vzenith_alarm_info_plate(&plate, 1, 1, Some(jpeg)).into_bytes(),
            ),
            Format::HikvisionMultipart => {
                let xml = samples::hikvision_anpr_xml(&plate, "blue", &now.to_rfc3339());
                let (ct, body) = samples::hikvision_multipart(&xml, Some(jpeg), None);
                ("ISAPI/Event/notification".into(), ct, body)
            }
            Format::DahuaJson => (
                "NotificationInfo/TollgateInfo".into(),
                "application/json".into(),
                samples::dahua_tollgate(
                    &plate,
                    "Blue",
                    &now.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                    Some(jpeg),
                )
                .into_bytes(),
            ),
        }
    }
}

fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// One round: returns (pushes/s, p50 ms, p99 ms, VmRSS MB).
async fn round(
    format: Format,
    base: &str,
    jpeg: Arc<Vec<u8>>,
    arrived: Arc<Mutex<HashMap<String, Instant>>>,
    first: usize,
) -> (f64, f64, f64, f64) {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (http, jpeg, sent, base) = (http.clone(), jpeg.clone(), sent.clone(), base.to_string());
        tasks.push(tokio::spawn(async move {
            for i in (c..PUSHES).step_by(CLIENTS) {
                let n = first + i;
                let (suffix, ct, body) = format.request(n, &jpeg);
                let plate = format!("京A{:05}", n % 100_000);
                sent.lock().unwrap().insert(plate, Instant::now());
                let r = http
                    .post(format!("{base}/camera/{}/{suffix}", format.camera()))
                    .header("content-type", ct)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{:?}", r.status());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Every push has become an event by the time its answer came (the receiver sends
    // the event before it answers); wait for the consumer to note the last ones.
    let deadline = Instant::now() + Duration::from_secs(10);
    while arrived.lock().unwrap().len() < PUSHES && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let arrived = std::mem::take(&mut *arrived.lock().unwrap());
    let sent = sent.lock().unwrap();
    let mut lat: Vec<f64> = sent
        .iter()
        .filter_map(|(p, t)| Some(arrived.get(p)?.duration_since(*t).as_secs_f64() * 1000.0))
        .collect();
    assert_eq!(lat.len(), PUSHES, "every push became an event");
    lat.sort_by(|a, b| a.total_cmp(b));
    (
        PUSHES as f64 / elapsed,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        status_kb("VmRSS:") as f64 / 1024.0,
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[platform]\nbase_url = \"http://127.0.0.1:9\"\napp_id = \"bench\"\napp_secret = \"0123456789abcdef\"\n\
             [lot]\nparking_lot_no = \"L1\"\ntotal_spaces = 10\n[storage]\ndir = {:?}\n\
             [[lanes]]\nid = \"in\"\ndirection = \"entry\"\nport_no = \"P1\"\nlayout = \"camera_only\"\n\
             [camera_push]\nlisten = \"127.0.0.1:0\"\nrate_per_s = 1000\nburst = 100000\n\
             [[devices]]\nname = \"vz\"\nprofile = \"vzenith-legacy-alarminfoplate\"\nlane = \"in\"\ncamera_id = \"vz\"\nhttp_push = true\nsource = \"127.0.0.1\"\n\
             [[devices]]\nname = \"hik\"\nprofile = \"hikvision-isapi-anpr\"\nlane = \"in\"\ncamera_id = \"hik\"\nhttp_push = true\nsource = \"127.0.0.1\"\n\
             [[devices]]\nname = \"dh\"\nprofile = \"dahua-itc-tollgate\"\nlane = \"in\"\ncamera_id = \"dh\"\nhttp_push = true\nsource = \"127.0.0.1\"\n",
            dir.path().display().to_string()
        );
        let config = SiteConfig::from_toml(&text, Path::new("bench.toml")).unwrap();
        let profiles = load_profiles(&config).unwrap();
        let (tx, mut rx) = mpsc::channel(1024);
        let (_stop, shutdown) = watch::channel(false);
        let drivers = spawn_all(&config, &profiles, tx, shutdown).await.unwrap();
        let base = format!("http://{}", drivers.push_addr.unwrap());
        let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let consumer = arrived.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if let EventKind::Plate(p) = ev.kind {
                    assert!(p.image_len.unwrap_or(0) > 100_000, "the picture came through");
                    consumer
                        .lock()
                        .unwrap()
                        .insert(p.text.unwrap_or_default(), Instant::now());
                }
            }
        });
        let jpeg = Arc::new(
            parking_bridge::sim::picture::snapshot_jpeg(1920, 1080, PlateColor::Blue, 1).unwrap(),
        );
        println!(
            "camera push receiver, 1920x1080 JPEG of {} bytes, {CLIENTS} clients, {PUSHES} pushes x {SAMPLES} rounds (median)",
            jpeg.len()
        );
        println!(
            "{:<22} {:>9} {:>8} {:>8} {:>9} {:>9}",
            "format", "pushes/s", "p50 ms", "p99 ms", "RSS MB", "ratio"
        );
        let mut baseline = None;
        let mut n = 0;
        for format in [
            Format::VzenithJson,
            Format::HikvisionMultipart,
            Format::DahuaJson,
        ] {
            let mut rates = Vec::new();
            let mut p50s = Vec::new();
            let mut p99s = Vec::new();
            let mut rss = Vec::new();
            for _ in 0..SAMPLES {
                let (r, p50, p99, m) = round(format, &base, jpeg.clone(), arrived.clone(), n).await;
                n += PUSHES;
                rates.push(r);
                p50s.push(p50);
                p99s.push(p99);
                rss.push(m);
            }
            let rate = median(rates);
            let base_rate = *baseline.get_or_insert(rate);
            println!(
                "{:<22} {:>9.1} {:>8.1} {:>8.1} {:>9.1} {:>9.2}",
                format!("{format:?}"),
                rate,
                median(p50s),
                median(p99s),
                median(rss),
                rate / base_rate
            );
        }
        println!("peak RSS (VmHWM): {:.1} MB", status_kb("VmHWM:") as f64 / 1024.0);
    });
}
