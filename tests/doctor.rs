//! `parking-bridge doctor` as a real process: against a working setup (mock platform,
//! a real mosquitto with a simulated camera, simulated Modbus slaves over a socat pty
//! and over TCP, a synchronised clock) every line is ✓; against a broken one each
//! fault is named with a hint.

mod driver_common;
mod process_common;

use driver_common::{Mosquitto, PtyPair};
use parking_bridge::config::platform::Secret;
use parking_bridge::platform::mock::{Faults, Mock, MockConfig};
use parking_bridge::sim::devices::{SimCamera, SimModbus};
use process_common::free_port;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const SECRET: &str = "0123456789abcdef";

/// A pty pair in `dir`: `a` (`ttyA`) is the bus the bridge opens, a real serial-like
/// device node; `b` (`ttyB`) is where the simulated slaves answer.
fn pty(dir: &Path) -> PtyPair {
    PtyPair::start(&dir.join("ttyA"), &dir.join("ttyB"))
}

/// A directory with a fake `timedatectl` answering `NTPSynchronized` as given.
fn fake_timedatectl(dir: &Path, synchronised: &str) -> String {
    let bin = dir.join(format!("bin-{synchronised}"));
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("timedatectl");
    std::fs::write(&script, format!("#!/bin/sh\necho {synchronised}\n")).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

async fn mock_platform() -> (u16, tokio::task::JoinHandle<()>) {
    let cfg = MockConfig {
        app_id: "app-1".into(),
        secret: Secret::new(SECRET).unwrap(),
        lots: vec!["LOT-1".into()],
        offset: parking_bridge::time::china_standard_time(),
        envelope_answers: false,
        behaviour: Default::default(),
    };
    let mock = Arc::new(Mock::new(cfg, Faults::none(), None).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let _ = parking_bridge::platform::mock::serve(listener, mock).await;
    });
    (port, task)
}

struct Setup<'a> {
    platform_port: u16,
    secret_file: &'a Path,
    storage: &'a Path,
    serial_port: &'a Path,
    mqtt_port: u16,
    /// `[[devices]]` tables.
    devices: &'a str,
}

fn write_config(dir: &Path, s: &Setup) -> PathBuf {
    let text = format!(
        r#"
[platform]
base_url = "http://127.0.0.1:{}"
app_id = "app-1"
app_secret_file = "{}"
utc_offset = "+08:00"
connect_timeout_secs = 2
request_timeout_secs = 3
[lot]
parking_lot_no = "LOT-1"
total_spaces = 50
[storage]
dir = "{}"
[[lanes]]
id = "entry-1"
direction = "entry"
port_no = "P1"
[[buses]]
name = "rs485-1"
port = "{}"
[mqtt]
host = "127.0.0.1"
port = {}
{}
"#,
        s.platform_port,
        s.secret_file.display(),
        s.storage.display(),
        s.serial_port.display(),
        s.mqtt_port,
        s.devices
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    path
}

/// The secret file (`secret`, mode 0600) and the storage dir of a properly installed
/// bridge in `dir`.
fn installed(dir: &Path, secret: &str) -> (PathBuf, PathBuf) {
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, secret).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let storage = dir.join("state");
    std::fs::create_dir(&storage).unwrap();
    (secret_file, storage)
}

/// The config of a complete installation: the platform, the RTU device on `rs485-1`
/// (the pty at `serial_port`), the TCP device at `tcp`, the camera on the broker.
fn full_config(
    dir: &Path,
    secret: &str,
    platform_port: u16,
    serial_port: &Path,
    mqtt_port: u16,
    tcp: &str,
) -> PathBuf {
    let (secret_file, storage) = installed(dir, secret);
    let devices = devices("rs485-1", tcp);
    write_config(
        dir,
        &Setup {
            platform_port,
            secret_file: &secret_file,
            storage: &storage,
            serial_port,
            mqtt_port,
            devices: &devices,
        },
    )
}

/// Every `fault` line is in `out`, and the line after it is a hint naming `hint`.
fn assert_faults_with_hints(out: &str, faults: &[(&str, &str)]) {
    for (fault, hint) in faults {
        let at = out
            .find(fault)
            .unwrap_or_else(|| panic!("missing {fault:?} in:\n{out}"));
        let hint_line = out[at..].lines().nth(1).unwrap_or("");
        assert!(
            hint_line.contains("hint:") && hint_line.contains(hint),
            "{fault}: hint {hint:?} expected:\n{out}"
        );
    }
}

/// `doctor` with the clock synchronised and the timezone as configured, so that only
/// the faults a test sets up show.
async fn doctor_synced(dir: &Path, config: &Path) -> (bool, String) {
    doctor(config, &fake_timedatectl(dir, "yes"), "Asia/Shanghai").await
}

async fn doctor(config: &Path, path_env: &str, tz: &str) -> (bool, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_parking-bridge"));
    cmd.arg("doctor")
        .arg("--config")
        .arg(config)
        .args(["--camera-wait", "2"])
        .env("PATH", path_env)
        .env("TZ", tz)
        .env_remove("PARKING_BRIDGE_APP_SECRET")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("doctor finished")
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn devices(rtu_bus: &str, tcp: &str) -> String {
    format!(
        r#"
[[devices]]
name = "io-rtu"
profile = "waveshare-modbus-rtu-io-8ch"
lane = "entry-1"
bus = "{rtu_bus}"
slave = 3
roles = {{ loop_a = "di1" }}
[[devices]]
name = "io-tcp"
profile = "generic-modbus-tcp-di-gateway"
lane = "entry-1"
tcp = "{tcp}"
slave = 1
roles = {{ loop_b = "di1" }}
[[devices]]
name = "cam-1"
profile = "vzenith-mqtt"
lane = "entry-1"
camera_id = "sn-0001"
"#
    )
}

/// Opens the device end of the pty pair for the simulated RTU slaves.
fn open_device_end(path: &Path) -> tokio_serial::SerialStream {
    use tokio_serial::SerialPortBuilderExt;
    tokio_serial::new(path.to_string_lossy(), 9600)
        .open_native_async()
        .expect("open pty end")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_is_all_green_on_a_working_setup() {
    let dir = tempfile::tempdir().unwrap();
    let (platform_port, platform) = mock_platform().await;
    let broker = Mosquitto::start();
    let pty = pty(dir.path());
    // Simulated slaves: id 3 on the RS-485 bus (the pty's other end), id 1 over TCP.
    let rtu = SimModbus::new();
    rtu.add_slave(3);
    let _rtu_server = rtu.serve_rtu(open_device_end(&pty.b));
    let tcp = SimModbus::new();
    tcp.add_slave(1);
    let tcp_addr = tcp.serve_tcp("127.0.0.1:0").await.unwrap();
    // A camera sending keep-alives while doctor listens.
    let camera = SimCamera::connect("127.0.0.1", broker.port, "sn-0001");
    let beat = tokio::spawn(async move {
        loop {
            let _ = camera.keep_alive().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let config = full_config(
        dir.path(),
        &format!("{SECRET}\n"),
        platform_port,
        &pty.a,
        broker.port,
        &tcp_addr.to_string(),
    );

    let (ok, out) = doctor_synced(dir.path(), &config).await;
    beat.abort();
    assert!(ok, "doctor failed:\n{out}");
    assert!(!out.contains('✗'), "{out}");
    for line in [
        "✓ config valid",
        "✓ app secret present and private",
        "✓ storage dir writable with free space",
        "✓ serial port",
        "✓ modbus device io-rtu (slave 3) answers",
        "✓ modbus device io-tcp (slave 1) answers",
        "✓ MQTT broker 127.0.0.1",
        "✓ camera cam-1 seen",
        "✓ platform reachable and heartbeat accepted",
        "✓ system clock synchronised",
        "✓ timezone as configured",
        "✓ lane entry-1 (entry): loops_only, derived from its devices (camera, loop_a, loop_b)",
        "all 12 checks passed",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(
        !out.contains(SECRET),
        "the secret must never be printed:\n{out}"
    );
    // Read-only by construction: the slaves saw reads only.
    assert!(rtu.forbidden_requests().is_empty() && tcp.forbidden_requests().is_empty());
    platform.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_silent_slave_and_camera() {
    let dir = tempfile::tempdir().unwrap();
    let (platform_port, platform) = mock_platform().await;
    let broker = Mosquitto::start();
    let pty = pty(dir.path());
    let tcp = SimModbus::new();
    tcp.add_slave(1);
    tcp.set_answering(1, false);
    let tcp_addr = tcp.serve_tcp("127.0.0.1:0").await.unwrap();
    // Nothing serves the RTU bus: slave 3 never answers either.
    let config = full_config(
        dir.path(),
        SECRET,
        platform_port,
        &pty.a,
        broker.port,
        &tcp_addr.to_string(),
    );
    let (ok, out) = doctor_synced(dir.path(), &config).await;
    assert!(!ok, "{out}");
    assert_faults_with_hints(
        &out,
        &[
            ("✗ modbus device io-rtu (slave 3) answers", "wiring"),
            ("✗ modbus device io-tcp (slave 1) answers", "IP address"),
            ("✗ camera cam-1 seen", "camera's MQTT settings"),
        ],
    );
    assert!(out.contains("3 of 12 checks failed"), "{out}");
    platform.abort();
}

/// These tests run the bridge with `TZ=Asia/Shanghai`. Without the zone database glibc
/// silently falls back to UTC, and the timezone checks would test the wrong thing:
/// fail loudly instead (scripts/test-all.sh installs tzdata).
#[test]
fn the_timezone_database_the_tests_rely_on_is_installed() {
    let zone = Path::new("/usr/share/zoneinfo/Asia/Shanghai");
    assert!(zone.exists(), "{} missing: install tzdata", zone.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_every_fault_of_a_broken_setup() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = write_config(
        dir.path(),
        &Setup {
            platform_port: free_port(),
            secret_file: &secret_file,
            storage: &dir.path().join("missing-state-dir"),
            serial_port: Path::new("/dev/ttyPB-NOT-THERE"),
            mqtt_port: free_port(),
            devices: "",
        },
    );

    let (ok, out) = doctor(&config, &fake_timedatectl(dir.path(), "no"), "UTC").await;
    assert!(!ok, "doctor must fail:\n{out}");
    assert_faults_with_hints(
        &out,
        &[
            ("✗ app secret present and private", "chmod 0640"),
            ("✗ storage dir writable with free space", "install -d"),
            ("✗ serial port /dev/ttyPB-NOT-THERE", "udev"),
            ("✗ MQTT broker 127.0.0.1", "start the broker"),
            (
                "✗ platform reachable and heartbeat accepted",
                "fix the app secret first",
            ),
            ("✗ system clock synchronised", "set-ntp"),
            ("✗ timezone as configured", "Asia/Shanghai"),
        ],
    );
    assert!(out.contains("7 of 9 checks failed"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_a_platform_that_refuses_the_lot_or_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let (platform_port, platform) = mock_platform().await;
    let (secret_file, storage) = installed(dir.path(), SECRET);
    let setup = Setup {
        platform_port,
        secret_file: &secret_file,
        storage: &storage,
        serial_port: Path::new("/dev/null"),
        mqtt_port: 1,
        devices: "",
    };
    // The mock knows only LOT-1.
    let config = write_config(dir.path(), &setup);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"LOT-1\"", "\"LOT-UNKNOWN\"");
    let text = text.split("[[buses]]").next().unwrap().to_string();
    std::fs::write(&config, text).unwrap();
    let path = fake_timedatectl(dir.path(), "yes");
    let (ok, out) = doctor(&config, &path, "Asia/Shanghai").await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("✗ platform reachable and heartbeat accepted"),
        "{out}"
    );
    // The platform answered, and its answer is what the installer sees: not a
    // connection failure.
    let at = out
        .find("✗ platform reachable and heartbeat accepted")
        .unwrap_or_else(|| panic!("{out}"));
    let line = out[at..].lines().take(3).collect::<Vec<_>>().join("\n");
    assert!(line.contains("PARKING_LOT_NOT_EXIST"), "{out}");
    assert!(!line.contains("connection refused"), "{out}");
    assert!(out.contains("1 of 7 checks failed"), "{out}");

    platform.abort();
    let (ok, out) = doctor(&config, &path, "Asia/Shanghai").await;
    assert!(!ok, "{out}");
    let at = out
        .find("✗ platform reachable and heartbeat accepted")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(out[at..].contains("refused"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_the_points_a_slave_answers_with_exception_02() {
    let dir = tempfile::tempdir().unwrap();
    let (platform_port, platform) = mock_platform().await;
    let broker = Mosquitto::start();
    let pty = pty(dir.path());
    // RTU: a 4-input module where the 8-input Waveshare profile is configured.
    let rtu = SimModbus::new();
    rtu.add_slave(3);
    rtu.limit_inputs(3, 4);
    let _rtu_server = rtu.serve_rtu(open_device_end(&pty.b));
    // TCP: an 8-input module behind a gateway, with the 16-input gateway profile.
    let tcp = SimModbus::new();
    tcp.add_slave(1);
    tcp.limit_inputs(1, 8);
    let tcp_addr = tcp.serve_tcp("127.0.0.1:0").await.unwrap();
    let config = full_config(
        dir.path(),
        SECRET,
        platform_port,
        &pty.a,
        broker.port,
        &tcp_addr.to_string(),
    );
    let (ok, out) = doctor_synced(dir.path(), &config).await;
    assert!(!ok, "doctor must fail:\n{out}");
    for (device, read, points) in [
        (
            "✗ modbus device io-rtu (slave 3) answers",
            "exception 02 (illegal data address",
            "failing point(s): di5, di6, di7, di8",
        ),
        (
            "✗ modbus device io-tcp (slave 1) answers",
            "reading function 2 address 0 count 16",
            "failing point(s): di9, di10, di11, di12, di13, di14, di15, di16",
        ),
    ] {
        let at = out
            .find(device)
            .unwrap_or_else(|| panic!("missing {device:?}:\n{out}"));
        let line = out[at..].lines().next().unwrap();
        assert!(
            line.contains(read) && line.contains(points),
            "{device}: expected {read:?} and {points:?}:\n{out}"
        );
    }
    platform.abort();
}
