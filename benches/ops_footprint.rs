//! Operations benchmark: start-up time of `parking-bridge run` (to `READY=1` on the
//! notify socket, and to the first Modbus poll its drivers send), its idle footprint
//! (RSS, CPU over a minute) with 8 lanes of 24 devices, and the release binary size.
//!
//! Each lane has a Modbus TCP I/O module (loops), a barrier controller (holding
//! registers, same endpoint, slave 2) and a Vzenith camera on MQTT; the Modbus slaves
//! are simulated in this process (`sim::devices::SimModbus`), the broker is the
//! embedded one the demo uses. Polls every 100 ms (10 Hz).
//!
//! `cargo bench --bench ops_footprint` (env `BENCH_IDLE_SECS`, default 60;
//! `BENCH_STARTS`, default 5). Needs nothing but the binary: the platform is the
//! binary's own `mock-platform`, so heartbeats really flow during the idle minute.

#[path = "../tests/platform_common/mod.rs"]
mod platform_common;
#[path = "../tests/process_common/mod.rs"]
mod process_common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use parking_bridge::sim::devices::SimModbus;
use platform_common::MockProcess;
use process_common::{Guard, env_or, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_parking-bridge");
const SECRET: &str = "0123456789abcdef";

/// The binary's own `mock-platform` on a free port.
fn mock_platform() -> MockProcess {
    MockProcess::start_on(0, "bench", SECRET, &[])
}

/// 8 lanes (4 entrances, 4 exits) of 3 devices each, heartbeat every 30 s, status
/// endpoint on.
fn config(
    dir: &Path,
    platform_port: u16,
    modbus: &[std::net::SocketAddr],
    mqtt_port: u16,
) -> std::path::PathBuf {
    let mut text = format!(
        "[platform]\nbase_url = \"http://127.0.0.1:{platform_port}\"\napp_id = \"bench\"\nheartbeat_secs = 30\n\
         [lot]\nparking_lot_no = \"BENCH\"\ntotal_spaces = 500\n[storage]\ndir = \"{}\"\n\
         [http]\nlisten = \"127.0.0.1:{}\"\nrequire_clock_sync = false\n",
        dir.join("state").display(),
        free_port()
    );
    text.push_str(&format!(
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt_port}\nclient_id = \"bench\"\n"
    ));
    for i in 1..=4 {
        text.push_str(&format!(
            "[[lanes]]\nid = \"entry-{i}\"\ndirection = \"entry\"\nport_no = \"IN{i}\"\n"
        ));
        text.push_str(&format!(
            "[[lanes]]\nid = \"exit-{i}\"\ndirection = \"exit\"\nport_no = \"OUT{i}\"\n"
        ));
    }
    let lanes: Vec<String> = (1..=4)
        .flat_map(|i| [format!("entry-{i}"), format!("exit-{i}")])
        .collect();
    for (lane, addr) in lanes.iter().zip(modbus) {
        text.push_str(&format!(
            "[[devices]]\nname = \"{lane}-io\"\nprofile = \"generic-modbus-tcp-di-gateway\"\nlane = \"{lane}\"\n\
             tcp = \"{addr}\"\nslave = 1\npoll_ms = 100\nroles = {{ loop_a = \"di1\", loop_b = \"di2\" }}\n\
             [[devices]]\nname = \"{lane}-gate\"\nprofile = \"generic-barrier-holding-status\"\nlane = \"{lane}\"\n\
             tcp = \"{addr}\"\nslave = 2\npoll_ms = 100\nroles = {{ gate_status = \"status\", gate_fault = \"motor_fault\" }}\n\
             [[devices]]\nname = \"{lane}-cam\"\nprofile = \"vzenith-mqtt\"\nlane = \"{lane}\"\ncamera_id = \"CAM-{lane}\"\n"
        ));
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `run` and waits for READY=1 and for its first Modbus request; returns the
/// process and both times.
fn start(config: &Path, notify: &Path, sim: &SimModbus) -> (Guard, Duration, Duration) {
    let polls_before = sim.request_count(1) + sim.request_count(2);
    let _ = std::fs::remove_file(notify);
    let socket = UnixDatagram::bind(notify).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let t0 = Instant::now();
    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .env("PARKING_BRIDGE_APP_SECRET", SECRET)
        .env("NOTIFY_SOCKET", notify)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = Guard(child);
    let first_poll = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            loop {
                if sim.request_count(1) + sim.request_count(2) > polls_before {
                    return t0.elapsed();
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(30),
                    "no poll within 30 s"
                );
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        let mut buf = [0u8; 128];
        loop {
            let n = socket.recv(&mut buf).expect("READY=1 within 30 s");
            if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
                break;
            }
        }
        let ready = t0.elapsed();
        (ready, waiter.join().unwrap())
    });
    (guard, first_poll.0, first_poll.1)
}

/// One `/proc/PID/status` field in KiB (`VmRSS`, `RssAnon`, `RssFile`).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// utime + stime in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let idle_secs: u64 = env_or("BENCH_IDLE_SECS", 60);
    let starts: usize = env_or("BENCH_STARTS", 5);
    let dir = tempfile::tempdir().unwrap();
    let platform = mock_platform();
    let platform_port = platform.port;
    // The simulated devices live in this process, on a runtime of their own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sim = SimModbus::new();
    sim.add_slave(1);
    sim.add_slave(2);
    let modbus: Vec<std::net::SocketAddr> = (0..8)
        .map(|_| runtime.block_on(sim.serve_tcp("127.0.0.1:0")).unwrap())
        .collect();
    let mqtt = parking_bridge::sim::broker::start().unwrap();
    let config = config(dir.path(), platform_port, &modbus, mqtt.port());
    let notify = dir.path().join("notify.sock");

    let mut startup_ms = Vec::new();
    let mut first_poll_ms = Vec::new();
    for _ in 0..starts {
        let (run, ready, first_poll) = start(&config, &notify, &sim);
        startup_ms.push(ready.as_secs_f64() * 1000.0);
        first_poll_ms.push(first_poll.as_secs_f64() * 1000.0);
        drop(run);
    }

    let (run, _, _) = start(&config, &notify, &sim);
    let pid = run.0.id();
    std::thread::sleep(Duration::from_secs(2)); // settle after start-up
    // SAFETY: sysconf has no preconditions.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu0 = cpu_ticks(pid);
    let t0 = Instant::now();
    let (mut rss, mut anon, mut file) = (Vec::new(), Vec::new(), Vec::new());
    while t0.elapsed() < Duration::from_secs(idle_secs) {
        rss.push(status_kib(pid, "VmRSS") as f64);
        anon.push(status_kib(pid, "RssAnon") as f64);
        file.push(status_kib(pid, "RssFile") as f64);
        std::thread::sleep(Duration::from_secs(1));
    }
    let cpu_percent =
        (cpu_ticks(pid) - cpu0) as f64 / ticks_per_sec / t0.elapsed().as_secs_f64() * 100.0;
    let rss_max = rss.iter().cloned().fold(0.0, f64::max);
    drop(run);

    let size = std::fs::metadata(BIN).unwrap().len();
    println!(
        "ops_footprint: run with 8 lanes / 24 devices (16 Modbus TCP at 10 Hz, 8 MQTT cameras), mock platform, heartbeat 30 s, HTTP endpoint on"
    );
    println!(
        "  start-up to READY=1: median {:.0} ms over {starts} starts ({startup_ms:.0?})",
        median(startup_ms.clone())
    );
    println!(
        "  start-up to the first Modbus poll: median {:.0} ms ({first_poll_ms:.0?})",
        median(first_poll_ms.clone())
    );
    println!(
        "  polls answered by the simulated slaves during the run: {}",
        sim.request_count(1) + sim.request_count(2)
    );
    println!(
        "  idle over {idle_secs} s: RSS median {:.1} MB (heap and stacks {:.1} MB, mapped binary and libraries {:.1} MB), max {:.1} MB; CPU {:.2} % of one core",
        median(rss) / 1024.0,
        median(anon) / 1024.0,
        median(file) / 1024.0,
        rss_max / 1024.0,
        cpu_percent
    );
    println!(
        "  binary {BIN}: {:.1} MB ({size} bytes)",
        size as f64 / 1_048_576.0
    );
}
