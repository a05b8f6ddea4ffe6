//! Issue 14 end to end with real processes: a lot node and two lane nodes
//! (`parking-bridge run`, three child processes with their own databases) over a real
//! mosquitto (the site's broker), simulated lane I/O modules (Modbus TCP) and Vzenith
//! cameras (on a second mosquitto, the lanes' own), and `mock-platform` recording what
//! it accepted. Vehicles enter on one node and leave on the other.
//!
//! `cars_crossing_nodes_through_kills_a_broker_restart_and_a_cut_link_are_reported_exactly`
//! SIGKILLs each node twice during the traffic, restarts the site broker once and cuts
//! one lane node's broker link for 30 s (a TCP proxy stopped and started); the
//! platform's record must match the traffic exactly.

#[path = "driver_common/mod.rs"]
mod driver_common;
#[path = "platform_common/mod.rs"]
mod platform_common;
mod process_common;
use process_common::env_or;

use driver_common::Mosquitto;
use parking_bridge::sim::devices::{SimCamera, SimModbus};
use platform_common::{APP_ID, MockProcess, SECRET};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const LOT: &str = "P3502";
const TOTAL_SPACES: i64 = 100;
const SLAVE: u8 = 1;
const DI_LOOP_A: u16 = 0;
const DI_LOOP_B: u16 = 1;
const DI_GATE_OPEN: u16 = 2;
const DI_GATE_CLOSED: u16 = 3;

/// `parking-bridge run` as a child, killed on drop.
struct Node {
    child: Child,
    config: PathBuf,
    log: PathBuf,
}

impl Node {
    fn start(config: &Path, log: &Path) -> Node {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(platform_common::BIN)
            .args(["run", "--config"])
            .arg(config)
            .env_remove("PARKING_BRIDGE_APP_SECRET")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env(
                "RUST_LOG",
                "warn,parking_bridge::driver::mqtt=info,parking_bridge::cluster=info",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn parking-bridge run");
        Node {
            child,
            config: config.to_path_buf(),
            log: log.to_path_buf(),
        }
    }

    /// SIGKILL (a crash, a power cut of the process), then start again after `dead`.
    async fn crash_and_restart(&mut self, dead: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        tokio::time::sleep(dead).await;
        *self = Node::start(&self.config, &self.log);
    }

    fn stop(&mut self) -> bool {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy on a fixed loopback port in front of the broker: `cut` closes the
/// listener and every connection through it (the lane node's network cable pulled),
/// `restore` listens again on the same port.
struct Link {
    port: u16,
    target: u16,
    tasks: Option<JoinSet<()>>,
}

impl Link {
    async fn start(target: u16) -> Link {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut link = Link {
            port,
            target,
            tasks: None,
        };
        link.restore().await;
        link
    }

    async fn restore(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let target = self.target;
        let mut set = JoinSet::new();
        set.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                conns.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        self.tasks = Some(set);
    }

    /// Dropping the task set aborts the listener and, with it, every connection.
    fn cut(&mut self) {
        self.tasks = None;
    }
}

/// One simulated lane: its I/O module and camera.
struct Lane {
    id: String,
    modbus: SimModbus,
    addr: SocketAddr,
    camera: SimCamera,
    camera_sn: String,
}

async fn start_lane(id: &str, cams: u16) -> Lane {
    let modbus = SimModbus::new();
    modbus.add_slave(SLAVE);
    // The barriers stay open (a busy hour): vehicles pass on the loops alone.
    modbus.set_input(SLAVE, DI_GATE_OPEN, true);
    modbus.set_input(SLAVE, DI_GATE_CLOSED, false);
    let addr = modbus.serve_tcp("127.0.0.1:0").await.unwrap();
    let camera_sn = format!("CL-{id}");
    let camera = SimCamera::connect("127.0.0.1", cams, &camera_sn);
    Lane {
        id: id.to_string(),
        modbus,
        addr,
        camera,
        camera_sn,
    }
}

fn head(dir: &Path, platform: &str) -> String {
    format!(
        "[platform]\nbase_url = \"{platform}\"\napp_id = \"{APP_ID}\"\napp_secret = \"{SECRET}\"\n\
         connect_timeout_secs = 1\nrequest_timeout_secs = 2\n\n\
         [lot]\nparking_lot_no = \"{LOT}\"\ntotal_spaces = {TOTAL_SPACES}\n\n\
         [storage]\ndir = {:?}\n\n[http]\nlisten = \"\"\n\n",
        dir.join("state").display().to_string()
    )
}

fn lane_section(id: &str) -> String {
    let (direction, port) = if id.starts_with("entry") {
        ("entry", format!("E{}", &id[6..]))
    } else {
        ("exit", format!("X{}", &id[5..]))
    };
    format!("[[lanes]]\nid = \"{id}\"\ndirection = \"{direction}\"\nport_no = \"{port}\"\n\n")
}

fn lot_config(dir: &Path, platform: &str, broker: u16) -> PathBuf {
    lot_config_with(
        dir,
        platform,
        broker,
        0,
        &[],
        &["entry-1", "exit-1", "entry-2", "exit-2"],
        &[
            ("north", &["entry-1", "exit-1"]),
            ("south", &["entry-2", "exit-2"]),
        ],
    )
}

/// The lot node: every lane of the lot, devices for `own` lanes (cameras on `cams`).
fn lot_config_with(
    dir: &Path,
    platform: &str,
    broker: u16,
    cams: u16,
    own: &[&Lane],
    all: &[&str],
    nodes: &[(&str, &[&str])],
) -> PathBuf {
    let mut t = head(dir, platform);
    if !own.is_empty() {
        t.push_str(&format!(
            "[mqtt]\nhost = \"127.0.0.1\"\nport = {cams}\nclient_id = \"cams-lot\"\n\n"
        ));
    }
    for id in all {
        t.push_str(&lane_section(id));
        if let Some(l) = own.iter().find(|l| l.id == *id) {
            t.push_str(&devices_section(l));
        }
    }
    t.push_str(&format!(
        "[cluster]\nnode = \"lot\"\nrole = \"lot\"\nbroker = {{ host = \"127.0.0.1\", port = {broker} }}\n\n"
    ));
    for (name, lanes) in nodes {
        t.push_str(&format!(
            "[[cluster.nodes]]\nname = \"{name}\"\nlanes = {lanes:?}\n\n"
        ));
    }
    let path = dir.join("lot.toml");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&path, t).unwrap();
    path
}

fn devices_section(l: &Lane) -> String {
    format!(
        "[[devices]]\nname = \"{id}-io\"\nprofile = \"generic-modbus-tcp-di-gateway\"\nlane = \"{id}\"\ntcp = \"{addr}\"\n\
         slave = {SLAVE}\npoll_ms = 20\ndebounce_ms = 20\n\
         roles = {{ loop_a = \"di1\", loop_b = \"di2\", gate_open = \"di3\", gate_closed = \"di4\" }}\n\n\
         [[devices]]\nname = \"{id}-cam\"\nprofile = \"vzenith-mqtt\"\nlane = \"{id}\"\ncamera_id = \"{sn}\"\n\n",
        id = l.id,
        addr = l.addr,
        sn = l.camera_sn,
    )
}

fn lane_node_config(
    dir: &Path,
    platform: &str,
    node: &str,
    broker: u16,
    cams: u16,
    lanes: &[&Lane],
) -> PathBuf {
    let mut t = head(dir, platform);
    t.push_str(&format!(
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {cams}\nclient_id = \"cams-{node}\"\n\n"
    ));
    for l in lanes {
        t.push_str(&lane_section(&l.id));
        t.push_str(&devices_section(l));
    }
    t.push_str(&format!(
        "[cluster]\nnode = \"{node}\"\nrole = \"lane\"\nbroker = {{ host = \"127.0.0.1\", port = {broker} }}\n"
    ));
    let path = dir.join(format!("{node}.toml"));
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&path, t).unwrap();
    path
}

/// Waits until a lane node polls its I/O modules, its cameras' subscription delivers
/// and its cluster link is up.
async fn wait_until_ready(node: &mut Node, lanes: &[&Lane]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = node.child.try_wait() {
            panic!("the node exited ({status}):\n{}", node.log_text());
        }
        let text = node.log_text();
        let cam_up = |l: &Lane| {
            let device = format!("device={}-cam", l.id);
            text.lines().any(|line| {
                line.contains("camera link changed")
                    && line.contains("up=true")
                    && line.split_whitespace().any(|w| w == device)
            })
        };
        let polled = lanes.iter().all(|l| l.modbus.request_count(SLAVE) >= 3);
        if polled && lanes.iter().all(|l| cam_up(l)) && text.contains("cluster link up") {
            return;
        }
        assert!(Instant::now() < deadline, "node not ready in time:\n{text}");
        for l in lanes.iter().filter(|l| !cam_up(l)) {
            let _ = l.camera.keep_alive().await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_log(node: &Node, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !node.log_text().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "{needle:?} not logged in time:\n{}",
            node.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One car through one lane: plate read, A, B, A free, B free, 600 ms apart.
async fn pass(lane: &Lane, plate: &str) {
    let _ = lane.camera.publish_plate(plate, 1, None, false).await;
    for (bit, on) in [
        (DI_LOOP_A, true),
        (DI_LOOP_B, true),
        (DI_LOOP_A, false),
        (DI_LOOP_B, false),
    ] {
        tokio::time::sleep(Duration::from_millis(600)).await;
        lane.modbus.set_input(SLAVE, bit, on);
    }
}

#[derive(Debug, Default)]
struct Accepted {
    /// out_order_no → (plate, parking_time, accepted at)
    entries: HashMap<String, (String, String, i64)>,
    /// out_order_no → (away_time, accepted at)
    exits: HashMap<String, (String, i64)>,
    last_free_spaces: Option<i64>,
    twice: Vec<String>,
}

fn read_record(path: &Path) -> Accepted {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut acc = Accepted::default();
    let mut last_at = i64::MIN;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["accepted"] != Value::Bool(true) {
            continue;
        }
        let at = v["at"].as_i64().unwrap_or_default();
        let body = &v["body"];
        let field = |k: &str| body[k].as_str().unwrap_or_default().to_string();
        let path = v["path"].as_str().unwrap_or_default();
        if path.ends_with("/barrier/parking") {
            if acc
                .entries
                .insert(
                    field("out_order_no"),
                    (field("plate_no"), field("parking_time"), at),
                )
                .is_some()
            {
                acc.twice.push(line.to_string());
            }
        } else if path.ends_with("/barrier/away") {
            if acc
                .exits
                .insert(field("out_order_no"), (field("away_time"), at))
                .is_some()
            {
                acc.twice.push(line.to_string());
            }
        } else {
            continue;
        }
        if at >= last_at {
            last_at = at;
            acc.last_free_spaces = body["free_spaces"].as_i64();
        }
    }
    acc
}

struct Rig {
    dir: tempfile::TempDir,
    record: PathBuf,
    _mock: MockProcess,
    _cams: Mosquitto,
    site: Option<Mosquitto>,
    site_port: u16,
    lanes: Vec<Arc<Lane>>,
    lot: Node,
    north: Node,
    south: Node,
    north_link: Link,
}

impl Rig {
    async fn start() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("record.jsonl");
        let mock = MockProcess::recording(&record, &["--parking-lot-no", LOT]);
        let cams = Mosquitto::start();
        let site = Mosquitto::start();
        let site_port = site.port;
        let mut lanes = Vec::new();
        for id in ["entry-1", "exit-1", "entry-2", "exit-2"] {
            lanes.push(Arc::new(start_lane(id, cams.port).await));
        }
        let north_link = Link::start(site_port).await;
        let base = mock.base_url();
        let lot_cfg = lot_config(&dir.path().join("lot"), &base, site_port);
        let north_cfg = lane_node_config(
            &dir.path().join("north"),
            &base,
            "north",
            north_link.port,
            cams.port,
            &[&lanes[0], &lanes[1]],
        );
        let south_cfg = lane_node_config(
            &dir.path().join("south"),
            &base,
            "south",
            site_port,
            cams.port,
            &[&lanes[2], &lanes[3]],
        );
        // The whole lot passes `check --node`.
        let out = Command::new(platform_common::BIN)
            .args(["check", "--config"])
            .arg(&lot_cfg)
            .arg("--node")
            .arg(&north_cfg)
            .arg("--node")
            .arg(&south_cfg)
            .env_remove("PARKING_BRIDGE_APP_SECRET")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "check of the lot: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut lot = Node::start(&lot_cfg, &dir.path().join("lot.log"));
        wait_for_log(&lot, "cluster link up").await;
        let mut north = Node::start(&north_cfg, &dir.path().join("north.log"));
        let mut south = Node::start(&south_cfg, &dir.path().join("south.log"));
        wait_until_ready(&mut north, &[&lanes[0], &lanes[1]]).await;
        wait_until_ready(&mut south, &[&lanes[2], &lanes[3]]).await;
        let _ = &mut lot;
        Rig {
            dir,
            record,
            _mock: mock,
            _cams: cams,
            site: Some(site),
            site_port,
            lanes,
            lot,
            north,
            south,
            north_link,
        }
    }

    fn logs(&self) -> String {
        format!(
            "--- lot\n{}\n--- north\n{}\n--- south\n{}",
            self.lot.log_text(),
            self.north.log_text(),
            self.south.log_text()
        )
    }
}

/// Waits until the platform accepted `entries` entries and `exits` exits (or `limit`),
/// then looks again after a pause (nothing extra may arrive).
async fn wait_for_record(record: &Path, entries: usize, exits: usize, limit: Duration) -> Accepted {
    let deadline = Instant::now() + limit;
    loop {
        let acc = read_record(record);
        if (acc.entries.len() >= entries && acc.exits.len() >= exits) || Instant::now() > deadline {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            return read_record(record);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Asserts the platform's record is the traffic exactly: every car's entry and exit
/// once, each exit after its entry, the lot empty again.
fn assert_exact(acc: &Accepted, plates: &[String], logs: &str) {
    assert!(
        acc.twice.is_empty(),
        "accepted twice: {:?}\n{logs}",
        acc.twice
    );
    let mut got: Vec<String> = acc.entries.values().map(|e| e.0.clone()).collect();
    got.sort();
    let mut want = plates.to_vec();
    want.sort();
    assert_eq!(got, want, "accepted entries\n{logs}");
    assert_eq!(acc.exits.len(), plates.len(), "accepted exits\n{logs}");
    for (order, (away, at)) in &acc.exits {
        let (plate, parked, entry_at) = acc
            .entries
            .get(order)
            .unwrap_or_else(|| panic!("exit {order} without its entry\n{logs}"));
        assert!(
            at >= entry_at,
            "exit of {plate} accepted before its entry\n{logs}"
        );
        assert!(
            away.as_str() >= parked.as_str(),
            "{plate}: away {away} before parking {parked}"
        );
    }
    assert_eq!(
        acc.last_free_spaces,
        Some(TOTAL_SPACES),
        "the lot is empty again\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_car_entering_on_one_lane_node_and_leaving_on_the_other_is_reported_once() {
    let mut rig = Rig::start().await;
    pass(&rig.lanes[0], "闽A10001").await; // enters at north
    pass(&rig.lanes[2], "闽A10002").await; // enters at south
    tokio::time::sleep(Duration::from_millis(500)).await;
    pass(&rig.lanes[3], "闽A10001").await; // leaves at south
    pass(&rig.lanes[1], "闽A10002").await; // leaves at north
    let plates = ["闽A10001".to_string(), "闽A10002".to_string()];
    let acc = wait_for_record(&rig.record, 2, 2, Duration::from_secs(30)).await;
    assert_exact(&acc, &plates, &rig.logs());
    assert!(
        rig.north.stop() && rig.south.stop() && rig.lot.stop(),
        "{}",
        rig.logs()
    );
    drop(rig.dir);
}

/// Each car enters on one node and leaves on the other 20 s later; cars every 2.5 s,
/// alternating nodes. During the traffic: each node SIGKILLed twice (restarted 0.3 s
/// later), the site broker restarted once (down 1 s), north's broker link cut for 30 s
/// (north SIGKILLed once during the cut; exits at south of cars whose entries north
/// still holds reach the lot node first and wait for them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cars_crossing_nodes_through_kills_a_broker_restart_and_a_cut_link_are_reported_exactly() {
    const CARS: usize = 20;
    const SPACING_MS: u64 = 2_500;
    const STAY_MS: u64 = 20_000;
    let mut rig = Rig::start().await;
    let started = tokio::time::Instant::now();
    let mut traffic = JoinSet::new();
    let mut plates = Vec::new();
    for car in 0..CARS {
        let plate = format!("闽B{:05}", 20_000 + car);
        plates.push(plate.clone());
        // Even cars: in at north (entry-1), out at south (exit-2); odd: the reverse.
        let (entry, exit) = if car % 2 == 0 {
            (rig.lanes[0].clone(), rig.lanes[3].clone())
        } else {
            (rig.lanes[2].clone(), rig.lanes[1].clone())
        };
        let t = started + Duration::from_millis(car as u64 * SPACING_MS);
        traffic.spawn(async move {
            tokio::time::sleep_until(t).await;
            pass(&entry, &plate).await;
            tokio::time::sleep_until(t + Duration::from_millis(STAY_MS)).await;
            pass(&exit, &plate).await;
        });
    }
    let at = |s: f64| started + Duration::from_millis((s * 1000.0) as u64);
    let dead = Duration::from_millis(300);
    tokio::time::sleep_until(at(6.2)).await;
    rig.north.crash_and_restart(dead).await;
    tokio::time::sleep_until(at(11.2)).await;
    rig.south.crash_and_restart(dead).await;
    tokio::time::sleep_until(at(16.0)).await;
    rig.lot.crash_and_restart(Duration::from_secs(1)).await;
    tokio::time::sleep_until(at(21.0)).await;
    rig.site = None; // the site broker goes down...
    tokio::time::sleep(Duration::from_secs(1)).await;
    rig.site = Some(Mosquitto::start_on(rig.site_port)); // ...and comes back empty
    tokio::time::sleep_until(at(25.0)).await;
    rig.north_link.cut();
    let cut_at = tokio::time::Instant::now();
    tokio::time::sleep_until(at(31.2)).await;
    rig.north.crash_and_restart(dead).await;
    tokio::time::sleep_until(at(36.2)).await;
    rig.south.crash_and_restart(dead).await;
    tokio::time::sleep_until(at(41.0)).await;
    rig.lot.crash_and_restart(Duration::from_secs(1)).await;
    tokio::time::sleep_until(cut_at + Duration::from_secs(30)).await;
    rig.north_link.restore().await;
    while traffic.join_next().await.is_some() {}
    let acc = wait_for_record(&rig.record, CARS, CARS, Duration::from_secs(60)).await;
    let logs = rig.logs();
    assert_exact(&acc, &plates, &logs);
    assert!(
        rig.lot
            .log_text()
            .contains("held exit matched its late entry"),
        "the cut link made exits wait for their entries\n{logs}"
    );
    assert!(
        rig.north.stop() && rig.south.stop() && rig.lot.stop(),
        "{logs}"
    );
    drop(rig.dir);
}

fn percentile(sorted: &[i64], q: f64) -> i64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// BENCHMARKS.md "Multi-PC lot": loop B released → entry accepted by `mock-platform`,
/// for a passage on a lane node's lane and for one on the lot node's own lane, one car
/// at a time, alternating, in the same run (`CLUSTER_BENCH_SAMPLES` each, default 30).
/// Set `PARKING_BRIDGE_BIN`-free: run it with `cargo test --release` to measure a
/// release build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: cargo test --release --test cluster_e2e -- --ignored --nocapture loop_b"]
async fn loop_b_to_platform_on_a_lane_node_vs_on_the_lot_node() {
    let samples: usize = env_or("CLUSTER_BENCH_SAMPLES", 30);
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    let mock = MockProcess::recording(&record, &["--parking-lot-no", LOT]);
    let cams = Mosquitto::start();
    let site = Mosquitto::start();
    let remote = start_lane("entry-1", cams.port).await;
    let local = start_lane("entry-3", cams.port).await;
    for l in [&remote, &local] {
        // Gate closed at rest, opened per car: the usual sequence.
        l.modbus.set_input(SLAVE, DI_GATE_OPEN, false);
        l.modbus.set_input(SLAVE, DI_GATE_CLOSED, true);
    }
    let base = mock.base_url();
    let lot_cfg = lot_config_with(
        &dir.path().join("lot"),
        &base,
        site.port,
        cams.port,
        &[&local],
        &["entry-1", "entry-3"],
        &[("north", &["entry-1"])],
    );
    let north_cfg = lane_node_config(
        &dir.path().join("north"),
        &base,
        "north",
        site.port,
        cams.port,
        &[&remote],
    );
    let mut lot = Node::start(&lot_cfg, &dir.path().join("lot.log"));
    let mut north = Node::start(&north_cfg, &dir.path().join("north.log"));
    wait_until_ready(&mut lot, &[&local]).await;
    wait_until_ready(&mut north, &[&remote]).await;
    let hold = Duration::from_millis(150);
    let mut on_lane_node = Vec::new();
    let mut on_lot_node = Vec::new();
    for i in 0..2 * samples {
        let (lane, out) = if i % 2 == 0 {
            (&remote, &mut on_lane_node)
        } else {
            (&local, &mut on_lot_node)
        };
        let plate = format!("闽C{:05}", 30_000 + i);
        let _ = lane.camera.publish_plate(&plate, 1, None, false).await;
        tokio::time::sleep(hold).await;
        for (bit, on) in [
            (DI_LOOP_A, true),
            (DI_GATE_OPEN, true),
            (DI_LOOP_B, true),
            (DI_LOOP_A, false),
        ] {
            lane.modbus.set_input(SLAVE, bit, on);
            if bit == DI_GATE_OPEN {
                lane.modbus.set_input(SLAVE, DI_GATE_CLOSED, false);
            }
            tokio::time::sleep(hold).await;
        }
        lane.modbus.set_input(SLAVE, DI_LOOP_B, false);
        let released = parking_bridge::time::Timestamp::now().millis();
        let deadline = Instant::now() + Duration::from_secs(10);
        let accepted = loop {
            let acc = read_record(&record);
            if let Some((_, _, at)) = acc.entries.values().find(|e| e.0 == plate) {
                break *at;
            }
            assert!(
                Instant::now() < deadline,
                "car {i} not accepted in time\n{}\n{}",
                lot.log_text(),
                north.log_text()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        out.push(accepted - released);
        lane.modbus.set_input(SLAVE, DI_GATE_OPEN, false);
        lane.modbus.set_input(SLAVE, DI_GATE_CLOSED, true);
        tokio::time::sleep(hold).await;
    }
    assert!(lot.stop() && north.stop());
    for (name, v) in [
        ("lane node", &mut on_lane_node),
        ("lot node", &mut on_lot_node),
    ] {
        v.sort_unstable();
        println!(
            "loop B released on the {name} → entry accepted by mock-platform: {} cars, p50 {} ms, p99 {} ms, min {} ms, max {} ms",
            v.len(),
            percentile(v, 0.5),
            percentile(v, 0.99),
            v[0],
            v[v.len() - 1]
        );
    }
    println!(
        "lane node / lot node p50 ratio: {:.2}",
        percentile(&on_lane_node, 0.5) as f64 / percentile(&on_lot_node, 0.5).max(1) as f64
    );
}

/// BENCHMARKS.md "Multi-PC lot": a lane node's queue after a broker outage of
/// `CLUSTER_BENCH_OUTAGE_S` (default 600) at 4 passages/s with snapshots — queued
/// while the broker was away (in-process: the queue filled directly, as the lane
/// task would), then drained through a real mosquitto into a lot node's ingest (each
/// passage committed and acknowledged). Prints the drain rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: cargo test --release --test cluster_e2e -- --ignored --nocapture drain"]
async fn lane_node_queue_drain_after_a_broker_outage() {
    use parking_bridge::cluster::ingest::LotIngest;
    use parking_bridge::cluster::link::{LaneLink, LotLink, NodeLink};
    use parking_bridge::cluster::queue::LaneQueue;
    use parking_bridge::cluster::view::ClusterView;
    use parking_bridge::cluster::wire::Topics;
    use parking_bridge::config::Direction;
    use parking_bridge::config::cluster::NodeRole;
    use parking_bridge::lane::machine::{Passage, PassageCase, PassagePlate};
    use parking_bridge::time::Timestamp;
    let outage_s: u64 = env_or("CLUSTER_BENCH_OUTAGE_S", 600);
    let n = outage_s * 4;
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start();
    let lot_cfg = lot_config_with(
        &dir.path().join("lot"),
        "https://127.0.0.1:9",
        broker.port,
        0,
        &[],
        &["entry-1", "exit-1"],
        &[("north", &["entry-1", "exit-1"])],
    );
    let lot_site = parking_bridge::config::SiteConfig::load(&lot_cfg).unwrap();
    let store = Arc::new(parking_bridge::store::Store::open_site(&lot_site).unwrap());
    let ingest = Arc::new(LotIngest::new(&lot_site, store.clone()));
    let queue = Arc::new(LaneQueue::open(&dir.path().join("north"), 4 << 30).unwrap());
    let snapshot = Arc::new(
        parking_bridge::sim::picture::snapshot_jpeg(
            1280,
            720,
            parking_bridge::plate::PlateColor::Blue,
            1,
        )
        .unwrap(),
    );
    // The outage: 4 passages/s (half entries, half the same cars' exits) queued.
    let t0 = 1_700_000_000_000i64;
    let fill = Instant::now();
    for i in 0..n as i64 {
        let car = i / 2;
        let exit = i % 2 == 1;
        let at = Timestamp(t0 + i * 250);
        let p = Passage {
            lane: if exit { "exit-1" } else { "entry-1" }.to_string(),
            direction: if exit {
                Direction::Exit
            } else {
                Direction::Entry
            },
            at,
            cleared_at: at,
            plate: Some(PassagePlate {
                text: format!("闽D{:05}", car % 100_000),
                color: parking_bridge::plate::PlateColor::Blue,
                confidence: Some(90),
                read_at: at,
            }),
            case: PassageCase::Normal,
            tailgate: false,
            inferred: false,
            trailer: false,
            tractor: None,
            snapshot: Some(snapshot.clone()),
            snapshot_len: Some(snapshot.len()),
            late: false,
        };
        queue.enqueue(&p, at).unwrap();
    }
    let fill_s = fill.elapsed().as_secs_f64();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let topics = Topics::new("parking-bridge", LOT);
    let opts = |id: &str| rumqttc::MqttOptions::new(id, "127.0.0.1", broker.port);
    let lot_task = tokio::spawn(
        LotLink {
            link: NodeLink {
                options: opts("bench-lot"),
                topics: topics.clone(),
                node: "lot".into(),
                view: ClusterView::new("lot", NodeRole::Lot),
                health: Default::default(),
            },
            lot_no: LOT.into(),
            ingest,
        }
        .run(stop_rx.clone()),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The broker is back: the lane node connects and drains.
    let started = Instant::now();
    let lane_task = tokio::spawn(
        LaneLink {
            link: NodeLink {
                options: opts("bench-north"),
                topics,
                node: "north".into(),
                view: ClusterView::new("north", NodeRole::Lane),
                health: Default::default(),
            },
            lanes: vec!["entry-1".into(), "exit-1".into()],
            queue: queue.clone(),
            wake: Arc::new(tokio::sync::Notify::new()),
        }
        .run(stop_rx),
    );
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let q = queue.clone();
        let depth = tokio::task::spawn_blocking(move || q.depth().unwrap())
            .await
            .unwrap();
        if depth.passages == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "queue not drained: {depth:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        let _ = lane_task.await;
        let _ = lot_task.await;
    })
    .await;
    let occ = store.occupancy().unwrap();
    assert_eq!(occ.occupied, 0, "every car in and out once");
    assert_eq!(
        store.list_stays(false, 1_000_000).unwrap().len() as u64,
        n / 2
    );
    println!(
        "outage {outage_s} s at 4 passages/s: {n} passages with {} KB snapshots queued in {fill_s:.1} s ({:.0}/s); \
         drained in {secs:.1} s = {:.1} passages/s ({:.1} MB/s), {:.1}× the arrival rate",
        snapshot.len() / 1024,
        n as f64 / fill_s.max(0.001),
        n as f64 / secs,
        n as f64 * snapshot.len() as f64 / secs / 1e6,
        n as f64 / secs / 4.0
    );
}
