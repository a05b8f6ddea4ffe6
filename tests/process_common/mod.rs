//! Helpers shared by the tests (and the ops benchmark) that run real processes: a
//! child killed however the test ends, a free loopback port, a page as headless
//! Chromium renders it.
#![allow(dead_code)]

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A helper process killed when the test ends, however it ends, so a failing test
/// leaves nothing running.
pub struct Guard(pub Child);

impl Guard {
    /// Waits for the process to end; fails the test with `why` after `limit`.
    pub fn wait_at_most(&mut self, limit: Duration, why: &str) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < limit, "{why}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nobody listens on right now: bound, noted, released.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `chromium --dump-dom URL`: the DOM after the page loaded, as a browser sees it.
/// Fails the test if Chromium takes more than 60 s; the browser is killed if the test
/// fails half-way.
pub fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            url,
        ])
        .stdout(out.reopen().unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium is installed (scripts/test-all.sh installs it)");
    let mut child = Guard(child);
    child.wait_at_most(Duration::from_secs(60), "chromium did not finish in 60 s");
    std::fs::read_to_string(out.path()).unwrap()
}
