//! Modbus driver benchmarks (`cargo bench --bench modbus`), figures in BENCHMARKS.md:
//!
//! 1. detection latency, register change on the simulated slave → `RawEvent`, p50/p99
//!    at 9600 and 115200 baud, against the bus's limit (poll period + frame time);
//! 2. polls/s on one bus at 9600 baud against the theoretical maximum;
//! 3. RSS and CPU of a separate process polling 8 lanes (24 devices) at 10 Hz for a
//!    minute (`PB_BENCH_SECONDS` shortens it).
//!
//! Real socat pty pairs; a pacing proxy between the driver and the simulated slaves
//! holds every chunk for its transmission time at the configured baud (a pty itself
//! has no baud rate).

#[path = "../tests/process_common/mod.rs"]
mod process_common;
use parking_bridge::config::SiteConfig;
use parking_bridge::driver::rtu::{frame_time, silent_interval};
use parking_bridge::driver::{load_profiles, spawn_all};
use parking_bridge::event::{EventKind, LoopId, RawEvent};
use parking_bridge::sim::devices::SimModbus;
use process_common::env_or;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

struct Socat(Child);
impl Drop for Socat {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn socat(a: &Path, b: &Path) -> Socat {
    let child = Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", a.display()))
        .arg(format!("pty,raw,echo=0,link={}", b.display()))
        .stderr(Stdio::null())
        .spawn()
        .expect("socat");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(a.exists() && b.exists()) {
        assert!(Instant::now() < deadline, "socat links");
        std::thread::sleep(Duration::from_millis(10));
    }
    Socat(child)
}

fn serial(p: &Path) -> tokio_serial::SerialStream {
    use tokio_serial::SerialPortBuilderExt;
    tokio_serial::new(p.to_string_lossy(), 115_200)
        .open_native_async()
        .expect("open pty")
}

/// Forwards both ways, delaying each chunk by its transmission time at `baud`.
fn pacing_proxy(x: tokio_serial::SerialStream, y: tokio_serial::SerialStream, baud: u32) {
    let (mut xr, mut xw) = tokio::io::split(x);
    let (mut yr, mut yw) = tokio::io::split(y);
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok(n @ 1..) = xr.read(&mut buf).await {
            tokio::time::sleep(frame_time(n, baud)).await;
            if yw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok(n @ 1..) = yr.read(&mut buf).await {
            tokio::time::sleep(frame_time(n, baud)).await;
            if xw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
}

fn site(sections: &str) -> SiteConfig {
    let mut lanes = String::new();
    for i in 1..=8 {
        lanes.push_str(&format!(
            "[[lanes]]\nid = \"lane-{i}\"\ndirection = \"entry\"\nport_no = \"P{i}\"\n"
        ));
    }
    let text = format!(
        "[platform]\nbase_url = \"http://127.0.0.1:9\"\napp_id = \"bench\"\n[lot]\nparking_lot_no = \"L\"\ntotal_spaces = 1\n\
         [storage]\ndir = \"/tmp\"\n{lanes}{sections}"
    );
    SiteConfig::from_toml(&text, Path::new("bench.toml")).unwrap_or_else(|e| panic!("{e}"))
}

/// A paced bus: driver ↔ pty ↔ pacing proxy ↔ pty ↔ simulated slaves.
struct PacedBus {
    _pairs: (Socat, Socat),
    port: PathBuf,
    sim: SimModbus,
}

fn paced_bus(dir: &Path, baud: u32, slaves: &[u8]) -> PacedBus {
    let (a, b, c, d) = (dir.join("a"), dir.join("b"), dir.join("c"), dir.join("d"));
    let pairs = (socat(&a, &b), socat(&c, &d));
    let sim = SimModbus::new();
    for s in slaves {
        sim.add_slave(*s);
    }
    sim.serve_rtu(serial(&d));
    pacing_proxy(serial(&b), serial(&c), baud);
    PacedBus {
        _pairs: pairs,
        port: a,
        sim,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn latency(baud: u32, poll_ms: u64, samples: usize) {
    let dir = tempfile::tempdir().unwrap();
    let bus = paced_bus(dir.path(), baud, &[1]);
    let config = site(&format!(
        "[[buses]]\nname = \"b\"\nport = \"{}\"\nbaud = {baud}\n\
         [[devices]]\nname = \"io\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"lane-1\"\nbus = \"b\"\nslave = 1\n\
         poll_ms = {poll_ms}\ndebounce_ms = 0\nroles = {{ loop_a = \"di1\" }}\n",
        bus.port.display()
    ));
    let profiles = load_profiles(&config).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let (_stop, shutdown) = watch::channel(false);
    let _d = spawn_all(&config, &profiles, tx, shutdown).await.unwrap();
    wait_loop(&mut rx, false).await;
    let mut lat = Vec::new();
    let mut state = false;
    for i in 0..samples {
        // Spread the change over the poll phase.
        tokio::time::sleep(Duration::from_millis(20 + (i as u64 * 37) % poll_ms)).await;
        state = !state;
        let t0 = Instant::now();
        bus.sim.set_input(1, 0, state);
        wait_loop(&mut rx, state).await;
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    // A change is seen by the next poll: wait for it (0 … period), then the 8-byte
    // request, the slave's 3.5-character turnaround and the 6-byte answer.
    let exchange = frame_time(14, baud) + silent_interval(baud);
    let ex_ms = exchange.as_secs_f64() * 1000.0;
    println!(
        "latency {baud:>6} baud, poll {poll_ms} ms: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n={samples}); \
         bus limit: mean {:.1} ms (period/2 + exchange), worst {:.1} ms (period + exchange)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1],
        poll_ms as f64 / 2.0 + ex_ms,
        poll_ms as f64 + ex_ms
    );
}

async fn wait_loop(rx: &mut mpsc::Receiver<RawEvent>, occupied: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("event in time")
            .expect("channel open");
        if ev.kind
            == (EventKind::Loop {
                which: LoopId::A,
                occupied,
            })
        {
            return;
        }
    }
}

async fn polls_per_second(baud: u32, run: Duration) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let bus = paced_bus(dir.path(), baud, &[1, 2, 3]);
    let mut devices = String::new();
    for s in 1..=3 {
        devices.push_str(&format!(
            "[[devices]]\nname = \"io{s}\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"lane-{s}\"\nbus = \"b\"\nslave = {s}\npoll_ms = 10\nroles = {{ loop_a = \"di1\" }}\n"
        ));
    }
    let config = site(&format!(
        "[[buses]]\nname = \"b\"\nport = \"{}\"\nbaud = {baud}\n{devices}",
        bus.port.display()
    ));
    let profiles = load_profiles(&config).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let (_stop, shutdown) = watch::channel(false);
    let _d = spawn_all(&config, &profiles, tx, shutdown).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let count = || (1..=3).map(|s| bus.sim.request_count(s)).sum::<u64>();
    let before = count();
    tokio::time::sleep(run).await;
    let achieved = (count() - before) as f64 / run.as_secs_f64();
    // Theoretical: request + answer on the wire, the slave's and the master's
    // 3.5-character silences.
    let per_exchange = frame_time(14, baud) + silent_interval(baud) * 2;
    (achieved, 1.0 / per_exchange.as_secs_f64())
}

/// The child process: polls 8 lanes × 3 devices over the given ptys until killed.
fn drivers_child(config_path: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = SiteConfig::load(Path::new(config_path)).unwrap();
        let profiles = load_profiles(&config).unwrap();
        let (tx, mut rx) = mpsc::channel(256);
        let (_stop, shutdown) = watch::channel(false);
        let _d = spawn_all(&config, &profiles, tx, shutdown).await.unwrap();
        while rx.recv().await.is_some() {}
    });
}

fn proc_stat(pid: u32) -> (f64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) as f64;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (ticks / hz, kb("VmRSS:"), kb("VmHWM:"))
}

async fn footprint(seconds: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = Vec::new();
    let mut sims = Vec::new();
    let mut sections = String::new();
    for lane in 1..=8 {
        let (a, b) = (
            dir.path().join(format!("bus{lane}")),
            dir.path().join(format!("dev{lane}")),
        );
        pairs.push(socat(&a, &b));
        let sim = SimModbus::new();
        for s in 1..=3 {
            sim.add_slave(s);
        }
        sim.serve_rtu(serial(&b));
        sims.push(sim);
        sections.push_str(&format!(
            "[[buses]]\nname = \"bus{lane}\"\nport = \"{}\"\nbaud = 115200\n\
             [[devices]]\nname = \"io{lane}\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"lane-{lane}\"\nbus = \"bus{lane}\"\nslave = 1\npoll_ms = 100\nroles = {{ loop_a = \"di1\", loop_b = \"di2\" }}\n\
             [[devices]]\nname = \"adam{lane}\"\nprofile = \"advantech-adam-4051\"\nlane = \"lane-{lane}\"\nbus = \"bus{lane}\"\nslave = 2\npoll_ms = 100\nroles = {{ gate_open = \"di0\", gate_closed = \"di1\" }}\n\
             [[devices]]\nname = \"gate{lane}\"\nprofile = \"generic-barrier-holding-status\"\nlane = \"lane-{lane}\"\nbus = \"bus{lane}\"\nslave = 3\npoll_ms = 100\nroles = {{ gate_fault = \"motor_fault\" }}\n",
            a.display()
        ));
    }
    let config_text = format!(
        "[platform]\nbase_url = \"http://127.0.0.1:9\"\napp_id = \"bench\"\n[lot]\nparking_lot_no = \"L\"\ntotal_spaces = 1\n[storage]\ndir = \"/tmp\"\n{}{sections}",
        (1..=8)
            .map(|i| format!(
                "[[lanes]]\nid = \"lane-{i}\"\ndirection = \"entry\"\nport_no = \"P{i}\"\n"
            ))
            .collect::<String>()
    );
    let config_path = dir.path().join("site.toml");
    std::fs::write(&config_path, config_text).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .env("PB_BENCH_CHILD", &config_path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let count = || {
        sims.iter()
            .map(|s| (1..=3).map(|i| s.request_count(i)).sum::<u64>())
            .sum::<u64>()
    };
    let (cpu0, _, _) = proc_stat(child.id());
    let polls0 = count();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu1, rss, hwm) = proc_stat(child.id());
    let wall = t0.elapsed().as_secs_f64();
    let polls = count() - polls0;
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "footprint: 8 lanes, 24 devices, 10 Hz each, {seconds} s: {:.1} polls/s total, CPU {:.2} % of one core, RSS {:.1} MB (peak {:.1} MB)",
        polls as f64 / wall,
        (cpu1 - cpu0) / wall * 100.0,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
}

fn main() {
    if let Ok(config) = std::env::var("PB_BENCH_CHILD") {
        drivers_child(&config);
        return;
    }
    // `cargo bench` passes --bench; nothing else to parse.
    let seconds: u64 = env_or("PB_BENCH_SECONDS", 60);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        latency(9600, 50, 100).await;
        latency(115_200, 50, 100).await;
        let mut runs = Vec::new();
        let mut max = 0.0;
        for _ in 0..3 {
            let (achieved, theoretical) = polls_per_second(9600, Duration::from_secs(4)).await;
            runs.push(achieved);
            max = theoretical;
        }
        runs.sort_by(f64::total_cmp);
        let median = runs[1];
        println!(
            "polls/s at 9600 baud, 3 slaves on one bus: median {median:.1}/s of runs {runs:.1?}; theoretical max {max:.1}/s → {:.0} %",
            median / max * 100.0
        );
        footprint(seconds).await;
    });
}
