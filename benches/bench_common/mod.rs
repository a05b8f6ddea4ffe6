//! Set-up shared by the benches that drive the uploader against `mock-platform`
//! (`store`, `refusals`): environment knobs, medians, the lot and the mock process.
//! Include with `#[path = "bench_common/mod.rs"] mod bench_common;` beside `store_common`.

use parking_bridge::config::LotConfig;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// The median of a non-empty sample.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A lot big enough that no backlog fills it.
pub fn lot() -> LotConfig {
    LotConfig::new("P350100000001", 1_000_000)
}

/// Kills and reaps the mock platform when dropped.
pub struct MockGuard(std::process::Child);

impl Drop for MockGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `mock-platform` on a free loopback port with `extra` options; returns it
/// with the port it printed.
pub fn start_mock(extra: &[&str]) -> (MockGuard, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_parking-bridge"))
        .args([
            "mock-platform",
            "--listen",
            "127.0.0.1:0",
            "--app-id",
            "bench",
            "--app-secret",
            crate::store_common::SECRET,
        ])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mock-platform");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout was piped"))
        .read_line(&mut line)
        .expect("the mock prints its address");
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the mock's first line ends with its port");
    (MockGuard(child), port)
}

/// A platform client for the mock on `port`.
pub fn client(port: u16) -> std::sync::Arc<parking_bridge::platform::PlatformClient> {
    let cfg: parking_bridge::config::PlatformConfig = toml::from_str(&format!(
        "base_url = \"http://127.0.0.1:{port}\"\napp_id = \"bench\"\nrequest_timeout_secs = 5\nconnect_timeout_secs = 2\n"
    ))
    .expect("a valid platform section");
    let secret = parking_bridge::config::platform::Secret::new(crate::store_common::SECRET)
        .expect("a valid secret");
    std::sync::Arc::new(
        parking_bridge::platform::PlatformClient::new(&cfg, secret).expect("a client"),
    )
}

/// The uploader's settings for [`lot`].
pub fn settings() -> parking_bridge::uploader::UploaderSettings {
    parking_bridge::uploader::UploaderSettings::new(
        &lot().parking_lot_no,
        parking_bridge::time::china_standard_time(),
    )
}

/// Runs the uploader until at most `left` reports are pending (looked at every
/// `poll`); returns the seconds it took.
pub fn time_drain(
    store: std::sync::Arc<parking_bridge::store::Store>,
    client: std::sync::Arc<parking_bridge::platform::PlatformClient>,
    settings: parking_bridge::uploader::UploaderSettings,
    poll: std::time::Duration,
    left: u64,
) -> f64 {
    use parking_bridge::uploader::{StatusHandle, Uploader};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let t = std::time::Instant::now();
        let task = tokio::spawn(
            Uploader::new(store.clone(), client, settings, StatusHandle::default()).run(),
        );
        loop {
            tokio::time::sleep(poll).await;
            let s = store.clone();
            let pending = tokio::task::spawn_blocking(move || s.pending_count().expect("count"))
                .await
                .expect("count task");
            if pending <= left {
                break;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        task.abort();
        secs
    })
}
