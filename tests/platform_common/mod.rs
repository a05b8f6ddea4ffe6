//! Helpers shared by the platform integration tests: the mock platform as a real
//! process, site configs, running the CLI.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_parking-bridge");
pub const APP_ID: &str = "ae145d83e56cb332";
pub const SECRET: &str = "bb0873ce314c42f7";

/// A running `parking-bridge mock-platform`; killed on drop.
pub struct MockProcess {
    child: Child,
    pub port: u16,
}

impl MockProcess {
    /// On a free port, for `APP_ID` with `SECRET`.
    pub fn start(extra: &[&str]) -> MockProcess {
        Self::start_on(0, APP_ID, SECRET, extra)
    }

    /// On `port` (0: a free one), for `app_id` with `secret`; returns once it says
    /// where it listens. A known port lets a test stop the platform and bring it back
    /// at the same address.
    pub fn start_on(port: u16, app_id: &str, secret: &str, extra: &[&str]) -> MockProcess {
        let mut child = Command::new(BIN)
            .args([
                "mock-platform",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--app-id",
                app_id,
                "--app-secret",
                secret,
            ])
            .args(extra)
            .env_remove("PARKING_BRIDGE_APP_SECRET")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mock-platform");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut guard = MockProcess { child, port: 0 };
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("mock printed its address in time");
        let port = line
            .trim()
            .strip_prefix("listening on 127.0.0.1:")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        guard.port = port;
        guard
    }

    /// For `APP_ID` with `SECRET`, writing every request and its answer to `record`
    /// (JSON lines): what the platform accepted, for the test to read itself.
    pub fn recording(record: &Path, extra: &[&str]) -> MockProcess {
        let mut args = vec!["--record", record.to_str().unwrap()];
        args.extend_from_slice(extra);
        Self::start(&args)
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a site config for `base_url` into `dir` and returns its path.
pub fn site_config(dir: &Path, base_url: &str, secret: &str, lot: &str) -> PathBuf {
    let text = format!(
        r#"[platform]
base_url = "{base_url}/"
app_id = "{APP_ID}"
app_secret = "{secret}"
connect_timeout_secs = 1
request_timeout_secs = 2

[lot]
parking_lot_no = "{lot}"
total_spaces = 100

[storage]
dir = "{}"

[[lanes]]
id = "entry-1"
direction = "entry"
port_no = "E1"
"#,
        dir.display()
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the CLI with a deadline (output drained while it runs, so a chatty command
/// cannot block on a full pipe; killed and failed after `deadline`).
pub fn run_cli(args: &[&str], deadline: Duration) -> Output {
    crate::process_common::output_within(
        Command::new(BIN)
            .args(args)
            .env_remove("PARKING_BRIDGE_APP_SECRET")
            // Loopback tests must not go through a proxy from the environment.
            .env("NO_PROXY", "127.0.0.1,localhost"),
        deadline,
    )
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
