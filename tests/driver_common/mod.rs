//! Shared harness for the driver integration tests: socat pty pairs, simulated RTU
//! buses, a real mosquitto, a spying/corrupting byte proxy, site configs, spawned
//! drivers and event waiting.
#![allow(dead_code)]

use parking_bridge::config::SiteConfig;
use parking_bridge::driver::{DriverSet, load_profiles, spawn_all};
use parking_bridge::event::{EventKind, GatePosition, LoopId, RawEvent};
use parking_bridge::sim::devices::SimModbus;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// A socat pty pair `a` <-> `b`, killed on drop.
pub struct PtyPair {
    child: Child,
    pub a: PathBuf,
    pub b: PathBuf,
}

impl PtyPair {
    pub fn start(a: &Path, b: &Path) -> PtyPair {
        let _ = std::fs::remove_file(a);
        let _ = std::fs::remove_file(b);
        let child = Command::new("socat")
            .arg("-d")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat is installed (scripts/test-all.sh installs it)");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !(a.exists() && b.exists()) {
            assert!(
                std::time::Instant::now() < deadline,
                "socat did not create {a:?} / {b:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        PtyPair {
            child,
            a: a.to_path_buf(),
            b: b.to_path_buf(),
        }
    }

    /// Kills socat (the "adapter unplugged") and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.a);
        let _ = std::fs::remove_file(&self.b);
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Opens one pty end as a tokio serial stream.
pub fn open_serial(path: &Path) -> tokio_serial::SerialStream {
    use tokio_serial::SerialPortBuilderExt;
    tokio_serial::new(path.to_string_lossy(), 115_200)
        .open_native_async()
        .expect("open pty end")
}

/// A mosquitto broker on a free loopback port, killed on drop.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        Self::try_start(None, None)
    }

    /// A broker that only admits `user` with `password`.
    pub fn start_with_password(user: &str, password: &str) -> Mosquitto {
        Self::try_start(None, Some((user, password)))
    }

    /// Restarts a broker on a known port (after the previous one was dropped).
    pub fn start_on(port: u16) -> Mosquitto {
        Self::try_start(Some(port), None)
    }

    fn try_start(fixed: Option<u16>, auth: Option<(&str, &str)>) -> Mosquitto {
        for _ in 0..5 {
            let port = fixed.unwrap_or_else(|| {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port()
            });
            let dir = tempfile::tempdir().unwrap();
            let conf = dir.path().join("mosquitto.conf");
            let access = match auth {
                None => "allow_anonymous true\n".to_string(),
                Some((user, password)) => {
                    let file = dir.path().join("passwd");
                    let ok = Command::new("mosquitto_passwd")
                        .arg("-b")
                        .arg("-c")
                        .arg(&file)
                        .arg(user)
                        .arg(password)
                        .status()
                        .expect("mosquitto_passwd (mosquitto package)");
                    assert!(ok.success());
                    format!("allow_anonymous false\npassword_file {}\n", file.display())
                }
            };
            std::fs::write(
                &conf,
                format!("listener {port} 127.0.0.1\n{access}persistence false\n"),
            )
            .unwrap();
            let bin = if Path::new("/usr/sbin/mosquitto").exists() {
                "/usr/sbin/mosquitto"
            } else {
                "mosquitto"
            };
            let mut child = Command::new(bin)
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("mosquitto is installed (scripts/test-all.sh installs it)");
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Mosquitto {
                        child,
                        port,
                        _dir: dir,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start mosquitto");
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A site config with lanes `entry-1` and `exit-1` plus the given device sections.
/// `top` goes before the first table (top-level keys such as `profile_dirs`).
pub fn site_config(top: &str, sections: &str) -> SiteConfig {
    let text = format!(
        "{top}\n[platform]\nbase_url = \"http://127.0.0.1:9\"\napp_id = \"test\"\napp_secret = \"0123456789abcdef\"\n\
         [lot]\nparking_lot_no = \"L1\"\ntotal_spaces = 10\n[storage]\ndir = \"/tmp/parking-bridge-test\"\n\
         [[lanes]]\nid = \"entry-1\"\ndirection = \"entry\"\nport_no = \"P1\"\n\
         [[lanes]]\nid = \"exit-1\"\ndirection = \"exit\"\nport_no = \"P2\"\n{sections}"
    );
    SiteConfig::from_toml(&text, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Waits for the first event matching `pred`, returning it and the events skipped.
pub async fn wait_for(
    rx: &mut mpsc::Receiver<RawEvent>,
    within: Duration,
    pred: impl Fn(&RawEvent) -> bool,
) -> (RawEvent, Vec<RawEvent>) {
    let mut skipped = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) if pred(&ev) => return (ev, skipped),
            Ok(Some(ev)) => skipped.push(ev),
            Ok(None) => panic!("event channel closed; seen {skipped:?}"),
            Err(_) => panic!("no matching event within {within:?}; seen {skipped:?}"),
        }
    }
}

/// Everything that arrives during `d`.
pub async fn collect_for(rx: &mut mpsc::Receiver<RawEvent>, d: Duration) -> Vec<RawEvent> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + d;
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        out.push(ev);
    }
    out
}

pub fn is_kind(device: &'static str, kind: EventKind) -> impl Fn(&RawEvent) -> bool {
    move |ev| ev.device == device && ev.kind == kind
}

/// Waits for `device` to report `kind` and returns that event: the step most driver
/// tests repeat, without the skipped events they never look at.
pub async fn wait_kind(
    rx: &mut mpsc::Receiver<RawEvent>,
    within: Duration,
    device: &'static str,
    kind: EventKind,
) -> RawEvent {
    wait_for(rx, within, is_kind(device, kind)).await.0
}

/// `EventKind::Link`, short enough to keep a `wait_kind` call on one line.
pub fn link(up: bool) -> EventKind {
    EventKind::Link { up }
}

/// `EventKind::Loop`, short enough to keep a `wait_kind` call on one line.
pub fn loop_state(which: LoopId, occupied: bool) -> EventKind {
    EventKind::Loop { which, occupied }
}

/// `EventKind::Gate`, short enough to keep a `wait_kind` call on one line.
pub fn gate(position: GatePosition) -> EventKind {
    EventKind::Gate { position }
}

/// The drivers of a site config, running until this is dropped. Holds the shutdown
/// sender (and the driver set) so that they live as long as the test needs them.
pub struct Drivers {
    pub rx: mpsc::Receiver<RawEvent>,
    pub set: DriverSet,
    _stop: watch::Sender<bool>,
}

/// Loads the config's profiles and spawns all its drivers, as `run` does, with a
/// 64-event channel.
pub async fn spawn_drivers(config: &SiteConfig) -> Drivers {
    let profiles = load_profiles(config).unwrap();
    let (tx, rx) = mpsc::channel(64);
    let (stop, shutdown) = watch::channel(false);
    let set = spawn_all(config, &profiles, tx, shutdown).await.unwrap();
    Drivers {
        rx,
        set,
        _stop: stop,
    }
}

/// A simulated RTU bus: a socat pty pair in `dir` (the driver opens `pty.a`) with
/// `slaves` answering on the device end (`pty.b`).
pub struct RtuBus {
    pub pty: PtyPair,
    pub sim: SimModbus,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub fn rtu_bus(dir: &Path, slaves: &[u8]) -> RtuBus {
    let pty = PtyPair::start(&dir.join("bridge"), &dir.join("device"));
    let sim = sim_with(slaves);
    let server = sim.serve_rtu(open_serial(&pty.b));
    RtuBus { pty, sim, server }
}

/// An RTU bus with `spawn_proxy` between the driver and the simulated `slaves`: two
/// pty pairs in `dir`; the driver opens `driver_pair.a`.
pub struct SpiedRtuBus {
    pub driver_pair: PtyPair,
    pub device_pair: PtyPair,
    pub sim: SimModbus,
    pub log: Arc<Mutex<ProxyLog>>,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub fn spied_rtu_bus(dir: &Path, slaves: &[u8], corrupt_every: usize) -> SpiedRtuBus {
    let driver_pair = PtyPair::start(&dir.join("bridge"), &dir.join("spy-in"));
    let device_pair = PtyPair::start(&dir.join("spy-out"), &dir.join("device"));
    let sim = sim_with(slaves);
    let server = sim.serve_rtu(open_serial(&device_pair.b));
    let log = spawn_proxy(
        open_serial(&driver_pair.b),
        open_serial(&device_pair.a),
        corrupt_every,
    );
    SpiedRtuBus {
        driver_pair,
        device_pair,
        sim,
        log,
        server,
    }
}

/// A simulated Modbus device with these slave ids present.
pub fn sim_with(slaves: &[u8]) -> SimModbus {
    let sim = SimModbus::new();
    for &slave in slaves {
        sim.add_slave(slave);
    }
    sim
}

/// What the proxy saw.
#[derive(Debug, Default)]
pub struct ProxyLog {
    /// Function codes of well-formed request frames, in order.
    pub request_functions: Vec<u8>,
    /// Request bytes that were not a well-formed read request.
    pub malformed_request_bytes: usize,
    pub responses: usize,
    pub corrupted: usize,
}

/// Forwards bytes between the driver side and the device side of a bus, checking
/// every request frame (a bus spy: only 8-byte read requests, FC 1–4, may appear) and
/// flipping one bit in every `corrupt_every`-th response chunk (0 = never).
pub fn spawn_proxy<D, S>(
    driver_side: D,
    device_side: S,
    corrupt_every: usize,
) -> Arc<Mutex<ProxyLog>>
where
    D: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let log = Arc::new(Mutex::new(ProxyLog::default()));
    let (mut dr, mut dw) = tokio::io::split(driver_side);
    let (mut sr, mut sw) = tokio::io::split(device_side);
    let l = log.clone();
    tokio::spawn(async move {
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            let n = match dr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            while pending.len() >= 8 {
                let frame: Vec<u8> = pending.drain(..8).collect();
                let crc_ok = parking_bridge::driver::rtu::crc16(&frame[..6]).to_le_bytes()
                    == [frame[6], frame[7]];
                let mut log = l.lock().unwrap();
                if crc_ok && (1..=4).contains(&frame[1]) {
                    log.request_functions.push(frame[1]);
                } else {
                    log.malformed_request_bytes += 8;
                    log.request_functions.push(frame[1]);
                }
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    let l = log.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let corrupt = {
                let mut log = l.lock().unwrap();
                log.responses += 1;
                let c = corrupt_every > 0 && log.responses % corrupt_every == 0;
                if c {
                    log.corrupted += 1;
                }
                c
            };
            if corrupt {
                // Flip one bit in the data part (after slave, function, count).
                let i = if n > 3 { 3 } else { n - 1 };
                buf[i] ^= 0x01;
            }
            if dw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    log
}

/// The problem text of a `Fault` event that says the device became faulty.
pub fn faulty_problem(ev: &RawEvent) -> Option<&str> {
    match &ev.kind {
        EventKind::Fault { problem: Some(p) } => Some(p),
        _ => None,
    }
}
