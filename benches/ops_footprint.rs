//! Operations benchmark: start-up time of `parking-bridge run` (to `READY=1` on the
//! notify socket), its idle footprint (RSS, CPU over a minute) with 8 lanes
//! configured, and the release binary size.
//!
//! `cargo bench --bench ops_footprint` (env `BENCH_IDLE_SECS`, default 60;
//! `BENCH_STARTS`, default 5). Needs nothing but the binary: the platform is the
//! binary's own `mock-platform`, so heartbeats really flow during the idle minute.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_parking-bridge");
const SECRET: &str = "0123456789abcdef";

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn mock_platform() -> (Guard, u16) {
    let port = free_port();
    let mut child = Command::new(BIN)
        .args([
            "mock-platform",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--app-id",
            "bench",
        ])
        .args(["--app-secret", SECRET])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on"), "{line}");
    (Guard(child), port)
}

/// 8 lanes (4 entrances, 4 exits), heartbeat every 30 s, status endpoint on.
fn config(dir: &Path, platform_port: u16) -> std::path::PathBuf {
    let mut text = format!(
        "[platform]\nbase_url = \"http://127.0.0.1:{platform_port}\"\napp_id = \"bench\"\nheartbeat_secs = 30\n\
         [lot]\nparking_lot_no = \"BENCH\"\ntotal_spaces = 500\n[storage]\ndir = \"{}\"\n\
         [http]\nlisten = \"127.0.0.1:{}\"\nrequire_clock_sync = false\n",
        dir.join("state").display(),
        free_port()
    );
    for i in 1..=4 {
        text.push_str(&format!(
            "[[lanes]]\nid = \"entry-{i}\"\ndirection = \"entry\"\nport_no = \"IN{i}\"\n"
        ));
        text.push_str(&format!(
            "[[lanes]]\nid = \"exit-{i}\"\ndirection = \"exit\"\nport_no = \"OUT{i}\"\n"
        ));
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `run` and waits for READY=1; returns the process and the time it took.
fn start(config: &Path, notify: &Path) -> (Guard, Duration) {
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
    let mut buf = [0u8; 128];
    loop {
        let n = socket.recv(&mut buf).expect("READY=1 within 30 s");
        if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
            return (guard, t0.elapsed());
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
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
    let idle_secs: u64 = std::env::var("BENCH_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let starts: usize = std::env::var("BENCH_STARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let (_platform, platform_port) = mock_platform();
    let config = config(dir.path(), platform_port);
    let notify = dir.path().join("notify.sock");

    let mut startup_ms = Vec::new();
    for _ in 0..starts {
        let (run, took) = start(&config, &notify);
        startup_ms.push(took.as_secs_f64() * 1000.0);
        drop(run);
    }

    let (run, _) = start(&config, &notify);
    let pid = run.0.id();
    std::thread::sleep(Duration::from_secs(2)); // settle after start-up
    // SAFETY: sysconf has no preconditions.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu0 = cpu_ticks(pid);
    let t0 = Instant::now();
    let mut rss = Vec::new();
    while t0.elapsed() < Duration::from_secs(idle_secs) {
        rss.push(rss_kib(pid) as f64);
        std::thread::sleep(Duration::from_secs(1));
    }
    let cpu_percent =
        (cpu_ticks(pid) - cpu0) as f64 / ticks_per_sec / t0.elapsed().as_secs_f64() * 100.0;
    let rss_max = rss.iter().cloned().fold(0.0, f64::max);
    drop(run);

    let size = std::fs::metadata(BIN).unwrap().len();
    println!("ops_footprint: run with 8 lanes, mock platform, heartbeat 30 s, HTTP endpoint on");
    println!(
        "  start-up to READY=1: median {:.0} ms over {starts} starts ({startup_ms:.0?})",
        median(startup_ms.clone())
    );
    println!(
        "  idle over {idle_secs} s: RSS median {:.1} MB, max {:.1} MB; CPU {:.2} % of one core",
        median(rss) / 1024.0,
        rss_max / 1024.0,
        cpu_percent
    );
    println!(
        "  binary {BIN}: {:.1} MB ({size} bytes)",
        size as f64 / 1_048_576.0
    );
}
