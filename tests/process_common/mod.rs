//! Helpers shared by the tests (and the ops benchmark) that run real processes: a
//! child killed however the test ends, a free loopback port, a page as headless
//! Chromium renders it.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A setting from the environment (a test or bench knob), or its default when unset or
/// unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `parking-bridge demo ARGS --dir DIR`, its stdout piped (the demo's report), stdin and
/// stderr closed, no app secret inherited from the environment.
pub fn demo_command(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_parking-bridge"));
    cmd.arg("demo")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env_remove("PARKING_BRIDGE_APP_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cmd
}

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

/// `parking-bridge run --config CONFIG` (the binary `bin`), its log (stderr) appended
/// to `log` at `RUST_LOG=rust_log`, killed when dropped.
pub struct RunBridge(pub Guard);

impl RunBridge {
    pub fn start(
        bin: &str,
        config: &std::path::Path,
        log: &std::path::Path,
        rust_log: &str,
    ) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(config)
            .env_remove("PARKING_BRIDGE_APP_SECRET")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn parking-bridge run");
        RunBridge(Guard(child))
    }

    /// The process's exit status, if it has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.0.0.try_wait().ok().flatten()
    }

    /// SIGTERM, then up to 10 s for a clean stop: whether it exited with status 0.
    pub fn stop(&mut self) -> bool {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cmd.output()` with a deadline: stdout and stderr are drained on their own threads
/// (so a chatty child cannot block on a full pipe), the child is killed and the test
/// fails with what it printed so far if it has not exited within `limit`. Use this,
/// never a bare `output()`, so one hung process cannot stall the suite.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = Arc::clone(&seen);
        let reader = std::thread::spawn(move || {
            let Some(mut pipe) = pipe else { return };
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                into.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(&chunk[..n]);
            }
        });
        (reader, seen)
    };
    let (out_reader, out) = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let (err_reader, err) = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let taken = |seen: &Arc<Mutex<Vec<u8>>>| {
        std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()))
    };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            // Not joined: a grandchild may still hold the pipes open.
            panic!(
                "{cmd:?} did not finish within {limit:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&taken(&out)),
                String::from_utf8_lossy(&taken(&err))
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // The child has exited, so its ends of the pipes are closed; wait (boundedly) for
    // the readers to see end-of-file.
    let drained = Instant::now();
    while !(out_reader.is_finished() && err_reader.is_finished()) {
        assert!(
            drained.elapsed() < Duration::from_secs(10),
            "{cmd:?} exited but something it started still holds its output open"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    Output {
        status,
        stdout: taken(&out),
        stderr: taken(&err),
    }
}

/// Polls `ok` every 20 ms until it is true; fails the test naming `what` after
/// `deadline`. Waiting on the condition itself, not on a fixed sleep, keeps a test
/// both fast on an idle machine and green on a loaded one.
pub fn wait_until(what: &str, deadline: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !ok() {
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback port nobody listens on right now: bound, noted, released. Racy (another
/// process may take it before the caller binds it): only for a port that must stay
/// closed, or for a child that cannot be given port 0; prefer binding port 0 in the
/// process that uses the port and reading it back.
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
