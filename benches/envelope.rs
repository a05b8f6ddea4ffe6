//! Envelope encode + encrypt throughput against raw SM4-ECB on the same bytes.
//!
//! `cargo bench --bench envelope`. For a 1 KB entry report and a 400 KB snapshot
//! report it measures, in one run:
//! - envelope: what the client does per request (business JSON, SM4-ECB
//!   with PKCS#7, base64, envelope JSON, fresh message_id and timestamp);
//! - raw: SM4-ECB/PKCS#7 alone over the same business JSON bytes.
//!
//! Prints the median of several samples and the envelope/raw ratio (target ≤ 1.5).

use ecb::cipher::block_padding::Pkcs7;
use ecb::cipher::{BlockModeEncrypt, KeyInit};
use parking_bridge::config::PlatformConfig;
use parking_bridge::platform::{PlatformClient, Secret, Uplink, UplinkKind};
use parking_bridge::time::Timestamp;
use std::hint::black_box;
use std::time::{Duration, Instant};

const KEY: &[u8; 16] = b"bb0873ce314c42f7";
const SAMPLES: usize = 9;

fn base64_of_len(len: usize) -> String {
    // Any valid standard-base64 text of the wanted size will do.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..len / 4 * 4)
        .map(|i| alphabet[(i * 7 + i / 64) % 64] as char)
        .collect()
}

fn uplink(kind: UplinkKind, json: serde_json::Value) -> Uplink {
    Uplink::parse(kind, json.to_string().as_bytes()).unwrap()
}

fn entry_of_about_1kb() -> Uplink {
    let mut json = serde_json::json!({"out_order_no": "P0012019100413360400001",
        "plate_no": "闽A12345", "plate_color": "pnc_02", "car_type": "normal",
        "parking_time": "2019-10-04 13:36:04", "parking_lot_no": "P001", "port_no": "E1",
        "operator": "auto", "price": 0, "should_pay": 0, "total_spaces": 100, "free_spaces": 80});
    // Pad with a small thumbnail to reach 1 KB of business JSON.
    let room =
        1024 - uplink(UplinkKind::Entry, json.clone()).to_json().len() - r#","snapshot":"""#.len();
    json["snapshot"] = base64_of_len(room).into();
    uplink(UplinkKind::Entry, json)
}

fn snapshot_of_400kb() -> Uplink {
    uplink(
        UplinkKind::Snapshot,
        serde_json::json!({"out_order_no": "P0012019100413360400001", "event": "parking",
            "snapshot": base64_of_len(400 * 1024)}),
    )
}

/// Median seconds per iteration over `SAMPLES` samples of about `target` each.
fn median_secs(target: Duration, mut f: impl FnMut()) -> f64 {
    // Calibrate the iteration count to the target sample length.
    let mut iters = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        if t.elapsed() >= target / 4 || iters > 1 << 24 {
            let per = t.elapsed().as_secs_f64() / iters as f64;
            iters = ((target.as_secs_f64() / per) as u64).max(1);
            break;
        }
        iters *= 2;
    }
    let mut samples: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_secs_f64() / iters as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[SAMPLES / 2]
}

fn main() {
    let cfg: PlatformConfig =
        toml::from_str("base_url = \"https://host\"\napp_id = \"ae145d83e56cb332\"\n").unwrap();
    let client = PlatformClient::new(&cfg, Secret::new("bb0873ce314c42f7").unwrap()).unwrap();
    let now = Timestamp(1_570_167_364_000);
    println!(
        "{:<22} {:>10} {:>14} {:>10} {:>14} {:>10} {:>7}",
        "report", "JSON bytes", "envelope rep/s", "MB/s", "raw SM4 rep/s", "MB/s", "ratio"
    );
    for (name, uplink, target) in [
        (
            "entry (1 KB)",
            entry_of_about_1kb(),
            Duration::from_millis(300),
        ),
        (
            "snapshot (400 KB)",
            snapshot_of_400kb(),
            Duration::from_millis(600),
        ),
    ] {
        let json = uplink.to_json();
        let bytes = json.len() as f64;
        let envelope = median_secs(target, || {
            black_box(client.prepare(black_box(&uplink), now));
        });
        let raw = median_secs(target, || {
            let enc = ecb::Encryptor::<sm4::Sm4>::new(&(*KEY).into());
            black_box(enc.encrypt_padded_vec::<Pkcs7>(black_box(&json)));
        });
        println!(
            "{:<22} {:>10} {:>14.0} {:>10.1} {:>14.0} {:>10.1} {:>7.2}",
            name,
            json.len(),
            1.0 / envelope,
            bytes / envelope / 1e6,
            1.0 / raw,
            bytes / raw / 1e6,
            envelope / raw
        );
    }
}
