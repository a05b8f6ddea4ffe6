//! Set-up shared by the benches that drive the uploader against `mock-platform`
//! (`store`, `refusals`): environment knobs, medians, the lot and the mock process.
//! Include with `#[path = "bench_common/mod.rs"] mod bench_common;` beside `store_common`.

use parking_bridge::config::LotConfig;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// A whole-number setting from the environment, or its default.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

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
