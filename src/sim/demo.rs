//! `parking-bridge demo`: a simulated lot driving the real bridge pipeline.
//!
//! In one process, with nothing installed: simulated lane hardware speaking the real
//! protocols on loopback (Modbus RTU over a pty pair for the first lane, Modbus TCP
//! for the others, Vzenith-format cameras on an embedded MQTT broker, except a
//! Hikvision-style push camera on the second lane and a Dahua-style one, resending
//! each recognition, on the third), the bridge
//! itself loaded from a generated site config and the shipped device profiles, and
//! the mock platform (or a real/test platform given on the command line). At the end
//! the platform's record is compared with the simulation.

use super::broker;
use super::devices::{PushStyle, SimCamera, SimModbus, SimPushCamera};
use super::picture;
use super::serial_link::SerialLink;
use super::soak;
use super::tcp_gate::TcpGate;
use super::traffic::{self, Action, LaneRef, Plan, TrafficConfig};
use super::verify::{self, PlatformView};
use super::view::{self, LaneLine, Screen};
use crate::config::SiteConfig;
use crate::event::{GatePosition, LoopId};
use crate::plate::PlateColor;
use crate::platform::Secret;
use crate::platform::mock::{Faults, Mock, MockConfig};
use crate::service::Bridge;
use crate::time::Timestamp;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Credentials of the built-in mock platform.
const DEMO_APP_ID: &str = "demo-app";
const DEMO_SECRET: &str = "bb0873ce314c42f7";
const DEMO_LOT: &str = "DEMO0001";
const TOTAL_SPACES: i64 = 100;
const PLACEHOLDER_PLATE: &str = "无牌车";
/// Modbus slave id of every simulated I/O module, and its input bits.
const SLAVE: u8 = 1;
const DI_LOOP_A: u16 = 0;
const DI_LOOP_B: u16 = 1;
const DI_GATE_OPEN: u16 = 2;
const DI_GATE_CLOSED: u16 = 3;
/// How long the lanes may hold a passage after the traffic ends (the longest lane
/// window, the late-plate wait, is a few seconds).
const SETTLE: Duration = Duration::from_secs(5);
/// Camera keep-alive period (the Vzenith default).
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// Share of the RS-485 module's answers corrupted on the line in a soak.
const SOAK_LINE_NOISE: f64 = 0.01;

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Vehicles to simulate; 0 runs until Ctrl-C.
    #[arg(long, default_value_t = 30)]
    pub vehicles: usize,
    /// Speed-up of the traffic (arrivals, parking time, passages). Passages never get
    /// faster than the bridge's poll rate can see; `--speed 100` is "as fast as possible".
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Entry and exit lanes, `E:X`.
    #[arg(long, default_value = "2:2")]
    pub lanes: String,
    /// Where the generated config, the state database and the platform record go
    /// (default: a new temporary directory, kept after the run).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Seed of the traffic: the same seed drives the same vehicles.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A real or test platform instead of the built-in mock (a commissioning rehearsal).
    #[arg(long, requires_all = ["app_id", "app_secret"])]
    pub platform_url: Option<String>,
    #[arg(long)]
    pub app_id: Option<String>,
    #[arg(long, env = "PARKING_BRIDGE_APP_SECRET", hide_env_values = true)]
    pub app_secret: Option<String>,
    /// Lot id sent to the platform.
    #[arg(long, default_value = DEMO_LOT)]
    pub parking_lot_no: String,
    /// Publish recognitions without snapshots (for throughput runs: re-encoding camera
    /// pictures is the most expensive thing the bridge does).
    #[arg(long)]
    pub no_images: bool,
    /// Where the status page (and /metrics, /healthz) of the demo bridge listens; port 0
    /// picks a free one. Empty: none.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub status_listen: String,
    /// Give up waiting for the platform to acknowledge everything after this long.
    #[arg(long, default_value_t = 120)]
    pub drain_timeout_secs: u64,
    /// Run the lot as a multi-PC cluster: a lot node and N−1 lane nodes (separate
    /// bridges with separate databases, lanes spread over them) on the embedded broker.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Soak mode (`scripts/soak.sh`): run the bridge as `EXE run --config …`, a
    /// separate process, instead of in this one.
    #[arg(long, hide = true, value_name = "EXE", conflicts_with = "nodes")]
    pub bridge_exec: Option<PathBuf>,
    /// Soak mode: seed of the fault schedule (the bridge killed or stopped and
    /// restarted, platform 5xx bursts, lost answers and an outage, camera floods).
    #[arg(long, hide = true, requires = "bridge_exec")]
    pub soak_faults: Option<u64>,
}

/// One node of a multi-PC demo lot (`--nodes N`).
#[derive(Debug, Clone)]
struct NodePlan {
    name: String,
    lot: bool,
    /// Per lane (in `start_lanes` order): whether this node runs it.
    owns: Vec<bool>,
    /// Lot node: every lane node and its lanes.
    nodes: Vec<(String, Vec<String>)>,
}

fn node_name(i: usize) -> String {
    if i == 0 {
        "lot".to_string()
    } else {
        format!("lane-{i}")
    }
}

/// Spreads the lanes over `n` nodes: the push cameras' lanes (there is one push
/// receiver) on the lot node, the others round-robin starting with the lane nodes,
/// so vehicles enter on one node and leave on another.
fn plan_nodes(lanes: &[SimLane], n: usize) -> Vec<NodePlan> {
    let mut owner = Vec::with_capacity(lanes.len());
    let mut next = 1usize;
    for l in lanes {
        if l.push.is_some() {
            owner.push(0);
        } else {
            owner.push(next % n);
            next += 1;
        }
    }
    let lanes_of = |i: usize| -> Vec<String> {
        lanes
            .iter()
            .zip(&owner)
            .filter(|(_, o)| **o == i)
            .map(|(l, _)| l.id.clone())
            .collect()
    };
    (0..n)
        .map(|i| NodePlan {
            name: node_name(i),
            lot: i == 0,
            owns: owner.iter().map(|o| *o == i).collect(),
            nodes: if i == 0 {
                (1..n).map(|j| (node_name(j), lanes_of(j))).collect()
            } else {
                Vec::new()
            },
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("--lanes must look like 2:2 (entry lanes : exit lanes, each 1 to 16)")]
    Lanes,
    #[error("--speed must be a number above 0")]
    Speed,
    #[error("demo directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--app-secret: {0}")]
    Secret(String),
    #[error("mock platform: {0}")]
    Mock(String),
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error("simulated device: {0}")]
    Device(std::io::Error),
    #[error("the generated config is invalid (a bug): {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Service(#[from] crate::service::ServiceError),
    #[error("cannot make the synthetic snapshots: {0}")]
    Picture(#[from] picture::PictureError),
    #[error("state database: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// The platform's record matched the simulation (mock platform, complete run).
    pub matched: Option<bool>,
    /// Reports still waiting for the platform (delivered at the next start).
    pub pending: u64,
    pub interrupted: bool,
}

impl Outcome {
    pub fn success(&self) -> bool {
        match self.matched {
            Some(m) => m,
            // Without a record to compare, success is "everything acknowledged" or a
            // clean interruption that kept what was pending.
            None => self.pending == 0 || self.interrupted,
        }
    }
}

fn parse_lanes(text: &str) -> Result<(usize, usize), DemoError> {
    let (e, x) = text.split_once(':').ok_or(DemoError::Lanes)?;
    let e: usize = e.trim().parse().map_err(|_| DemoError::Lanes)?;
    let x: usize = x.trim().parse().map_err(|_| DemoError::Lanes)?;
    if !(1..=16).contains(&e) || !(1..=16).contains(&x) {
        return Err(DemoError::Lanes);
    }
    Ok((e, x))
}

/// One simulated lane: its I/O module, its camera, and what the screen shows.
struct SimLane {
    id: String,
    lane: LaneRef,
    modbus: SimModbus,
    /// Where the bridge finds the I/O module: a pty path (RTU) or an address (TCP).
    attach: Attach,
    camera: Arc<tokio::sync::Mutex<Option<LaneCamera>>>,
    camera_sn: String,
    /// Push cameras: their style and the base of their push URL.
    push: Option<(PushStyle, String)>,
    state: Arc<Mutex<LaneLine>>,
}

/// The demo's cameras: Vzenith over MQTT, or a vendor pushing over HTTP.
enum LaneCamera {
    Mqtt(SimCamera),
    Push(Arc<SimPushCamera>),
}

/// Times each push camera repeats a recognition (its acknowledgement "got lost").
const DAHUA_RESENDS: usize = 2;
/// Token of the simulated Dahua camera (the Hikvision one is bound by address).
const DAHUA_TOKEN: &str = "demo-dahua-token-0001";

impl LaneCamera {
    fn connect(broker: std::net::SocketAddr, sn: &str, push: &Option<(PushStyle, String)>) -> Self {
        match push {
            Some((style, base)) => {
                LaneCamera::Push(Arc::new(SimPushCamera::new(*style, base, DAHUA_RESENDS)))
            }
            None => LaneCamera::Mqtt(SimCamera::connect("127.0.0.1", broker.port(), sn)),
        }
    }

    async fn keep_alive(&self) {
        let _ = match self {
            LaneCamera::Mqtt(c) => c.keep_alive().await.map_err(|e| e.to_string()),
            LaneCamera::Push(c) => c.keep_alive().await,
        };
    }

    async fn plate(
        &self,
        text: Option<&str>,
        color: PlateColor,
        jpeg: Option<&[u8]>,
        quick: bool,
    ) -> Result<(), String> {
        match self {
            LaneCamera::Mqtt(c) => c
                .publish_plate(text.unwrap_or("_无_"), vzenith_color(color), jpeg, quick)
                .await
                .map_err(|e| e.to_string()),
            // Hikvision and Dahua push no preliminary results.
            LaneCamera::Push(_) if quick => Ok(()),
            // A camera pushes beside the lane's hardware, not in its way: the request
            // (a 1920×1080 picture, resends) must not hold up the simulated loops.
            LaneCamera::Push(c) => {
                let (c, text, jpeg) = (
                    c.clone(),
                    text.unwrap_or("").to_string(),
                    jpeg.map(<[u8]>::to_vec),
                );
                tokio::spawn(async move {
                    if let Err(e) = c.push_plate(&text, color, jpeg.as_deref()).await {
                        tracing::warn!(error = %e, "simulated push camera could not push");
                    }
                });
                Ok(())
            }
        }
    }
}

enum Attach {
    /// The bus's adapter, opened by the bridge at its stable path (see `serial_link`).
    Rtu {
        path: String,
        adapter: Arc<Mutex<SerialLink>>,
    },
    Tcp {
        addr: std::net::SocketAddr,
    },
}

/// `entry` or `exit`, as the config and the screen say it.
fn direction(lane: LaneRef) -> &'static str {
    match lane {
        LaneRef::Entry(_) => "entry",
        LaneRef::Exit(_) => "exit",
    }
}

/// The lane's id in the config: `entry-1`, `exit-2`.
fn lane_id(lane: LaneRef) -> String {
    let (LaneRef::Entry(i) | LaneRef::Exit(i)) = lane;
    format!("{}-{}", direction(lane), i + 1)
}

/// The lane's platform port number: `E1`, `X2`.
fn port_no(lane: LaneRef) -> String {
    match lane {
        LaneRef::Entry(i) => format!("E{}", i + 1),
        LaneRef::Exit(i) => format!("X{}", i + 1),
    }
}

/// Vzenith `colorType` of a plate colour.
fn vzenith_color(color: PlateColor) -> u8 {
    match color {
        PlateColor::Blue => 1,
        PlateColor::Yellow => 2,
        PlateColor::White => 3,
        PlateColor::Black => 4,
        PlateColor::Green => 5,
        _ => 0,
    }
}

struct PlatformTarget {
    base_url: String,
    app_id: String,
    secret: String,
    /// The in-process mock's record file (absent for an external platform).
    record: Option<PathBuf>,
}

async fn start_platform(args: &DemoArgs, dir: &Path) -> Result<PlatformTarget, DemoError> {
    if let (Some(url), Some(app_id), Some(secret)) =
        (&args.platform_url, &args.app_id, &args.app_secret)
    {
        return Ok(PlatformTarget {
            base_url: url.clone(),
            app_id: app_id.clone(),
            secret: secret.clone(),
            record: None,
        });
    }
    let record = dir.join("platform-record.jsonl");
    let secret = Secret::new(DEMO_SECRET).map_err(|e| DemoError::Secret(e.to_string()))?;
    let cfg = MockConfig {
        app_id: DEMO_APP_ID.to_string(),
        secret,
        lots: vec![args.parking_lot_no.clone()],
        offset: crate::time::china_standard_time(),
        envelope_answers: false,
        behaviour: Default::default(),
    };
    // Soak: 5 % of requests answered 5xx, 1 % recorded but their answer lost (a
    // re-send follows), and a 60 s outage one minute in and every 15 minutes after.
    let faults = match args.soak_faults {
        Some(seed) => {
            let mut f = Faults::new(
                Duration::from_millis(5),
                0.05,
                0.01,
                0.0,
                Some((Duration::from_secs(60), Duration::from_secs(60))),
                seed,
            );
            f.outage_every = Some(Duration::from_secs(15 * 60));
            f
        }
        None => Faults::none(),
    };
    let mock =
        Mock::new(cfg, faults, Some(record.clone())).map_err(|e| DemoError::Mock(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| DemoError::Mock(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| DemoError::Mock(e.to_string()))?;
    let mock = Arc::new(mock);
    tokio::spawn(async move {
        if let Err(e) = crate::platform::mock::serve(listener, mock).await {
            tracing::error!(error = %e, "demo mock platform stopped");
        }
    });
    Ok(PlatformTarget {
        base_url: format!("http://{addr}"),
        app_id: DEMO_APP_ID.to_string(),
        secret: DEMO_SECRET.to_string(),
        record: Some(record),
    })
}

/// The site config the demo bridge runs on: a complete, commented working example.
// Every argument is one independent fact of the generated site.
#[allow(clippy::too_many_arguments)]
fn render_config(
    dir: &Path,
    args: &DemoArgs,
    platform: &PlatformTarget,
    broker: std::net::SocketAddr,
    lanes: &[SimLane],
    step_ms: i64,
    push_port: u16,
    node: Option<&NodePlan>,
) -> String {
    let owns = |i: usize| node.is_none_or(|n| n.owns.get(i).copied().unwrap_or(false));
    // Poll five times per hardware step of the traffic, so debounce and polling see
    // every change with room to spare.
    let poll_ms = (step_ms / 5).clamp(10, 50);
    let debounce_ms = poll_ms;
    let mut t = format!(
        "# Generated by `parking-bridge demo`: a complete working site config for the\n\
         # simulated lot. Check it with `parking-bridge check --config THIS_FILE`.\n\n\
         [platform]\nbase_url = {base_url:?}\napp_id = {app_id:?}\napp_secret_file = {secret:?}\n\
         heartbeat_secs = 10\n\n\
         [lot]\nparking_lot_no = {lot:?}\ntotal_spaces = {TOTAL_SPACES}\n\n\
         [storage]\ndir = {state:?}\n\n\
         [http]\n# The status page, /metrics and /healthz; port 0 picks a free port (the demo\n\
         # prints the address).\nlisten = {listen:?}\n\
         # The simulated PC's clock is whatever this machine's is.\nrequire_clock_sync = false\n\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt_port}\nclient_id = \"parking-bridge-demo{node_suffix}\"\n\n",
        base_url = platform.base_url,
        app_id = platform.app_id,
        secret = dir.join("app_secret").display().to_string(),
        lot = args.parking_lot_no,
        state = dir.join("state").display().to_string(),
        listen = args.status_listen,
        mqtt_port = broker.port(),
        node_suffix = node.map(|n| format!("-{}", n.name)).unwrap_or_default(),
    );
    if lanes
        .iter()
        .enumerate()
        .any(|(i, l)| owns(i) && l.push.is_some())
    {
        t.push_str(&format!(
            "# Cameras that push over HTTP (Hikvision/Dahua style). The demo's fastest pace (a car\n# every 270 ms per lane, each Dahua-style read sent again) is above the default 10\n# pushes/s a real lane never reaches.\n[camera_push]\nlisten = \"127.0.0.1:{push_port}\"\nrate_per_s = 50\n\n"
        ));
    }
    for l in lanes
        .iter()
        .enumerate()
        .filter(|(i, _)| owns(*i))
        .map(|(_, l)| l)
    {
        if let Attach::Rtu { path, .. } = &l.attach {
            t.push_str(&format!(
                "# The RS-485 bus of lane {}: a pty standing in for a USB-RS485 adapter.\n[[buses]]\nname = \"rs485-{}\"\nport = {:?}\nbaud = 9600\n\n",
                l.id, l.id, path
            ));
        }
    }
    for (i, l) in lanes.iter().enumerate() {
        // The lot node knows every lane of the lot; a lane node only its own.
        if !owns(i) && !node.is_some_and(|n| n.lot) {
            continue;
        }
        t.push_str(&format!(
            "[[lanes]]\nid = {:?}\ndirection = {:?}\nport_no = {:?}\nplaceholder_plate = {PLACEHOLDER_PLATE:?}\n\n",
            l.id,
            direction(l.lane),
            port_no(l.lane)
        ));
        if !owns(i) {
            continue;
        }
        let roles = "roles = { loop_a = \"di1\", loop_b = \"di2\", gate_open = \"di3\", gate_closed = \"di4\" }";
        let (profile, link) = match &l.attach {
            Attach::Rtu { .. } => (
                "waveshare-modbus-rtu-io-8ch",
                format!("bus = \"rs485-{}\"", l.id),
            ),
            Attach::Tcp { addr } => ("generic-modbus-tcp-di-gateway", format!("tcp = \"{addr}\"")),
        };
        t.push_str(&format!(
            "[[devices]]\nname = \"{id}-io\"\nprofile = {profile:?}\nlane = {id:?}\n{link}\nslave = {SLAVE}\npoll_ms = {poll_ms}\ndebounce_ms = {debounce_ms}\n{roles}\n\n",
            id = l.id
        ));
        let camera = match &l.push {
            None => "profile = \"vzenith-mqtt\"".to_string(),
            Some((PushStyle::Hikvision, _)) => {
                "profile = \"hikvision-isapi-anpr\"\nhttp_push = true\nsource = \"127.0.0.1\""
                    .to_string()
            }
            Some((PushStyle::Dahua, _)) => format!(
                "profile = \"dahua-itc-tollgate\"\nhttp_push = true\ntoken = {DAHUA_TOKEN:?}"
            ),
        };
        t.push_str(&format!(
            "[[devices]]\nname = \"{id}-cam\"\n{camera}\nlane = {id:?}\ncamera_id = {sn:?}\n\n",
            id = l.id,
            sn = l.camera_sn
        ));
    }
    if let Some(n) = node {
        t.push_str(&format!(
            "# One node of a multi-PC lot: the cluster runs over the [mqtt] broker. An exit\n# that finds no stay waits 15 s for an entry still on its way (10 min by default).\n[cluster]\nnode = {:?}\nrole = {:?}\nlate_match_secs = 15\n\n",
            n.name,
            if n.lot { "lot" } else { "lane" }
        ));
        for (name, lanes) in &n.nodes {
            t.push_str(&format!(
                "[[cluster.nodes]]\nname = {name:?}\nlanes = {lanes:?}\n\n"
            ));
        }
    }
    t
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    // `mode` applies only to a new file; an old one keeps its bits, so set them.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
}

/// The RS-485 line's noise: in a soak, 1 % of the module's answers are corrupted.
async fn start_lanes(
    prepared: &Prepared,
    broker: std::net::SocketAddr,
    push_port: u16,
    line_noise: f64,
    seed: u64,
) -> Result<Vec<SimLane>, DemoError> {
    let (entries, exits) = (prepared.entries, prepared.exits);
    let mut lanes = Vec::new();
    let refs = (0..entries)
        .map(LaneRef::Entry)
        .chain((0..exits).map(LaneRef::Exit));
    for (n, lane) in refs.enumerate() {
        let id = lane_id(lane);
        let modbus = SimModbus::new();
        modbus.add_slave(SLAVE);
        // Gate starts closed.
        modbus.set_input(SLAVE, DI_GATE_CLOSED, true);
        let attach = if n == 0 {
            let link = prepared.dir.join(format!("ttyRS485-{id}"));
            let adapter = SerialLink::plug_in(modbus.clone(), &link, line_noise, seed)
                .map_err(DemoError::Device)?;
            Attach::Rtu {
                path: link.display().to_string(),
                adapter: Arc::new(Mutex::new(adapter)),
            }
        } else {
            Attach::Tcp {
                addr: modbus
                    .serve_tcp("127.0.0.1:0")
                    .await
                    .map_err(DemoError::Device)?,
            }
        };
        let camera_sn = format!("DEMO-{}", port_no(lane));
        let base = format!("http://127.0.0.1:{push_port}/camera/{camera_sn}");
        let push = match n {
            1 => Some((PushStyle::Hikvision, base)),
            2 => Some((PushStyle::Dahua, format!("{base}/token/{DAHUA_TOKEN}"))),
            _ => None,
        };
        let camera = LaneCamera::connect(broker, &camera_sn, &push);
        let state = LaneLine {
            id: id.clone(),
            direction: direction(lane),
            transport: match n {
                0 => "RTU/pty",
                1 => "TCP+Hik",
                2 => "TCP+Dahua",
                _ => "Modbus TCP",
            },
            gate: "closed",
            ..LaneLine::default()
        };
        lanes.push(SimLane {
            id,
            lane,
            modbus,
            attach,
            camera: Arc::new(tokio::sync::Mutex::new(Some(camera))),
            camera_sn,
            push,
            state: Arc::new(Mutex::new(state)),
        });
    }
    Ok(lanes)
}

/// Cameras send a keep-alive every 5 s, as the real ones do; the bridge counts a
/// camera as lost after a long silence.
fn spawn_keep_alives(lanes: &[SimLane]) {
    for l in lanes {
        let camera = l.camera.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(KEEP_ALIVE);
            loop {
                tick.tick().await;
                if let Some(cam) = camera.lock().await.as_ref() {
                    cam.keep_alive().await;
                }
            }
        });
    }
}

/// Applies one hardware step of the plan to the simulated devices.
async fn apply(
    lane: &SimLane,
    action: &Action,
    pictures: &[Vec<u8>],
    broker: std::net::SocketAddr,
) {
    let mut st = lane.state.lock().map(|g| g.clone()).unwrap_or_default();
    match action {
        Action::Loop { which, occupied } => {
            let bit = if *which == LoopId::A {
                DI_LOOP_A
            } else {
                DI_LOOP_B
            };
            lane.modbus.set_input(SLAVE, bit, *occupied);
            match which {
                LoopId::A => st.loop_a = *occupied,
                LoopId::B => {
                    st.loop_b = *occupied;
                    if !*occupied {
                        st.passages += 1;
                    }
                }
            }
        }
        Action::Gate(position) => {
            let (open, closed, label) = match position {
                GatePosition::Open => (true, false, "open"),
                GatePosition::Closed => (false, true, "closed"),
                _ => (false, false, "moving"),
            };
            lane.modbus.set_input(SLAVE, DI_GATE_OPEN, open);
            lane.modbus.set_input(SLAVE, DI_GATE_CLOSED, closed);
            st.gate = label;
        }
        Action::Plate {
            text,
            color,
            quick,
            vehicle,
        } => {
            let jpeg = pictures
                .get(vehicle % pictures.len().max(1))
                .map(Vec::as_slice);
            if let Some(cam) = lane.camera.lock().await.as_ref() {
                if let Err(e) = cam.plate(text.as_deref(), *color, jpeg, *quick).await {
                    tracing::warn!(lane = %lane.id, error = %e, "simulated camera could not publish");
                }
            }
        }
        Action::CameraLink { up } => {
            let mut slot = lane.camera.lock().await;
            if *up {
                *slot = Some(LaneCamera::connect(broker, &lane.camera_sn, &lane.push));
            } else {
                // Dropping the camera closes its MQTT connection.
                *slot = None;
            }
        }
    }
    if let Ok(mut g) = lane.state.lock() {
        *g = st;
    }
}

/// What the drive saw of each passage, wall clock, keyed by (vehicle, at the exit).
#[derive(Debug, Default)]
struct Seen {
    /// When the vehicle cleared the barrier (loop B released): the start of its
    /// passage-to-acknowledgement latency.
    cleared: HashMap<(usize, bool), i64>,
    /// The passage's first and last hardware step (a soak sets aside passages that
    /// overlap a fault).
    spans: HashMap<(usize, bool), (i64, i64)>,
}

/// Drives the plan's steps in real time (already accelerated). Returns when done.
async fn drive(
    plan: &Plan,
    lanes: &[SimLane],
    pictures: &[Vec<u8>],
    broker: std::net::SocketAddr,
    progress: &Mutex<usize>,
    seen: &Mutex<Seen>,
) {
    let start = tokio::time::Instant::now();
    // When the machine is busy and a step runs late, the rest of the plan slides by
    // the same amount instead of bunching up: the devices never change faster than
    // the plan says, so a slow machine slows the demo down rather than breaking it.
    let mut lag = Duration::ZERO;
    for step in &plan.steps {
        let due = start + Duration::from_millis(u64::try_from(step.at).unwrap_or(0)) + lag;
        tokio::time::sleep_until(due).await;
        lag += tokio::time::Instant::now().saturating_duration_since(due);
        if let Some(lane) = lanes.iter().find(|l| l.lane == step.lane) {
            apply(lane, &step.action, pictures, broker).await;
        }
        if let Some(v) = step.vehicle
            && let Ok(mut seen) = seen.lock()
        {
            let key = (v, matches!(step.lane, LaneRef::Exit(_)));
            let now = Timestamp::now().0;
            let span = seen.spans.entry(key).or_insert((now, now));
            span.1 = now;
            if matches!(
                step.action,
                Action::Loop {
                    which: LoopId::B,
                    occupied: false
                }
            ) {
                seen.cleared.insert(key, now);
            }
        }
        if let (
            Action::Loop {
                which: LoopId::B,
                occupied: false,
            },
            LaneRef::Exit(_),
        ) = (&step.action, step.lane)
            && let Ok(mut n) = progress.lock()
        {
            *n += 1;
        }
    }
}

/// The traffic the demo drives for these arguments (public so tests can rebuild the
/// exact plan of a run from its seed).
pub fn traffic_for(
    speed: f64,
    entries: usize,
    exits: usize,
    seed: u64,
    vehicles: usize,
) -> TrafficConfig {
    // 200 ms between hardware changes at normal speed, down to 30 ms at full speed,
    // where the bridge polls every 10 ms (see `render_config`).
    let step_ms = ((200.0 / speed) as i64).max(30);
    TrafficConfig {
        vehicles,
        seed,
        entry_lanes: entries,
        exit_lanes: exits,
        mean_gap_ms: ((1400.0 / speed / entries as f64) as i64).max(1),
        mean_stay_ms: ((6_000.0 / speed) as i64).max(10 * step_ms),
        step_ms,
        hard_share: 0.3,
        total_spaces: TOTAL_SPACES as usize,
    }
}

fn clock_text(t: Timestamp) -> String {
    t.to_local(crate::time::china_standard_time())
        .format("%H:%M:%S")
        .to_string()
}

async fn screen(
    bridge: Option<&Bridge>,
    store: Arc<crate::store::Store>,
    lanes: &[SimLane],
    started: Instant,
    done: usize,
    total: Option<usize>,
    record: Option<&Path>,
) -> Screen {
    let snapshot = tokio::task::spawn_blocking(move || {
        let occ = store.occupancy().ok();
        let pending = store.pending_count().unwrap_or(0);
        let stays = store.list_stays(false, 8).unwrap_or_default();
        (occ, pending, stays)
    })
    .await
    .ok();
    let (occ, pending, stays) = snapshot.unwrap_or((None, 0, Vec::new()));
    let mut last = Vec::new();
    for s in stays {
        match (s.exited_at, &s.exit_lane) {
            (Some(at), Some(lane)) => last.push((at, lane.clone(), s.plate_no.clone(), "exit")),
            _ => last.push((
                s.entered_at,
                s.entry_lane.clone(),
                s.plate_no.clone(),
                "entry",
            )),
        }
    }
    last.sort_by_key(|p| std::cmp::Reverse(p.0));
    let view = record
        .and_then(|p| std::fs::File::open(p).ok())
        .map(|f| PlatformView::from_record(std::io::BufReader::new(f)))
        .unwrap_or_default();
    let platform_note = match bridge.map(|b| b.delivery()) {
        Some(status) => match (&status.alarm, status.consecutive_failures) {
            (Some((_, alarm)), _) => format!("ALARM: {alarm}"),
            (None, n) if n > 0 => format!("platform failing ({n} in a row)"),
            _ => "platform ok".to_string(),
        },
        None => "bridge in its own process".to_string(),
    };
    Screen {
        elapsed_s: started.elapsed().as_secs_f64(),
        vehicles_done: done,
        vehicles_total: total,
        lanes: lanes
            .iter()
            .map(|l| l.state.lock().map(|g| g.clone()).unwrap_or_default())
            .collect(),
        last_passages: last
            .into_iter()
            .map(|(t, l, p, w)| (clock_text(t), l, p, w))
            .collect(),
        occupied: occ.map_or(0, |o| o.occupied),
        total: occ.map_or(TOTAL_SPACES, |o| o.total),
        outbox_pending: pending,
        accepted_entries: view.entries.len(),
        accepted_exits: view.exits.len(),
        platform_note,
        status_url: bridge
            .and_then(Bridge::http_addr)
            .map(|a| format!("http://{a}/")),
        log_file: None,
    }
}

fn show(screen: &Screen, tty: bool) {
    let mut out = std::io::stdout().lock();
    if tty {
        // Home and clear, then the whole screen: redrawn in place.
        let _ = write!(out, "\x1b[H\x1b[2J{}", screen.render());
    } else {
        let _ = writeln!(out, "{}", screen.line());
    }
    let _ = out.flush();
}

/// The soak's background work: the fault schedule and the sampler.
struct Soak {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    faults: Arc<Mutex<soak::FaultLog>>,
    samples: Arc<Mutex<Vec<soak::Sample>>>,
}

fn start_soak(
    child: Arc<Mutex<soak::ChildBridge>>,
    args: &DemoArgs,
    dir: &Path,
    world: &World,
) -> Soak {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let faults = Arc::new(Mutex::new(soak::FaultLog::default()));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let mut threads = vec![soak::sampler(
        child.clone(),
        dir.to_path_buf(),
        Duration::from_secs(5),
        stop.clone(),
        samples.clone(),
    )];
    if let Some(seed) = args.soak_faults {
        let devices = SoakDevices {
            handle: tokio::runtime::Handle::current(),
            cameras: world.lanes.iter().map(|l| l.camera.clone()).collect(),
            adapters: world
                .lanes
                .iter()
                .filter_map(|l| match &l.attach {
                    Attach::Rtu { adapter, .. } => Some(adapter.clone()),
                    Attach::Tcp { .. } => None,
                })
                .collect(),
            broker: world.broker_gate.clone(),
        };
        threads.push(soak::fault_schedule(
            child,
            seed,
            stop.clone(),
            faults.clone(),
            devices,
        ));
    }
    Soak {
        stop,
        threads,
        faults,
        samples,
    }
}

/// The demo's devices as the soak's fault schedule acts on them.
struct SoakDevices {
    handle: tokio::runtime::Handle,
    cameras: Vec<Arc<tokio::sync::Mutex<Option<LaneCamera>>>>,
    adapters: Vec<Arc<Mutex<SerialLink>>>,
    broker: Option<TcpGate>,
}

impl SoakDevices {
    fn each_adapter(&self, act: impl Fn(&mut SerialLink)) {
        // Plugging in spawns the adapter's tasks on the demo's runtime.
        let _runtime = self.handle.enter();
        for a in &self.adapters {
            act(&mut a.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        }
    }
}

impl soak::SoakWorld for SoakDevices {
    /// Every MQTT camera floods 200 undecodable messages and a 1 MB one.
    fn flood(&self) {
        for cam in &self.cameras {
            self.handle.block_on(async {
                if let Some(LaneCamera::Mqtt(c)) = cam.lock().await.as_ref() {
                    for i in 0..200 {
                        let _ = c
                            .publish_raw("ivs_result", format!("{{\"junk\":{i}").into_bytes())
                            .await;
                    }
                    let _ = c.publish_raw("ivs_result", vec![b'x'; 1 << 20]).await;
                }
            });
        }
    }

    fn unplug_serial(&self) {
        self.each_adapter(SerialLink::unplug);
    }

    fn replug_serial(&self) {
        self.each_adapter(|a| {
            if let Err(e) = a.replug() {
                tracing::error!(error = %e, "soak: cannot plug the RS-485 adapter back in");
            }
        });
    }

    fn close_broker(&self) {
        if let Some(g) = &self.broker {
            g.close();
        }
    }

    fn reopen_broker(&self) {
        if let Some(g) = &self.broker {
            g.reopen();
        }
    }
}

/// Stops the soak's threads and the bridge (SIGTERM), prints what happened, and
/// returns the fault log (its blind spells set vehicles aside in the record check).
fn finish_soak(soak: Soak, child: &Arc<Mutex<soak::ChildBridge>>) -> soak::FaultLog {
    soak.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in soak.threads {
        let _ = t.join();
    }
    let mut c = child.lock().unwrap_or_else(|e| e.into_inner());
    c.stop_with(libc::SIGTERM);
    let faults = soak.faults.lock().map(|f| f.clone()).unwrap_or_default();
    let counts: Vec<String> = soak::Fault::ALL
        .iter()
        .map(|f| format!("{} {}", faults.count(*f), f.name()))
        .collect();
    println!(
        "soak: bridge started {} times; faults: {}; {} unexpected exits; clock jumps {}",
        c.starts,
        counts.join(", "),
        faults.crashes.len(),
        if c.clock_movable() {
            "on"
        } else {
            "off (no libfaketime: apt-get install faketime)"
        }
    );
    let samples = soak.samples.lock().map(|s| s.clone()).unwrap_or_default();
    println!("{}", soak::summary(&samples, 6));
    faults
}

/// Where the demo's files go: `--dir`, or a new temporary directory per process.
pub fn demo_dir(args: &DemoArgs) -> PathBuf {
    match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("parking-bridge-demo-{}", std::process::id())),
    }
}

/// Where the demo's log lines go while its live view owns the terminal.
pub fn log_file(args: &DemoArgs) -> PathBuf {
    demo_dir(args).join("demo.log")
}

/// Runs the demo to the end (or Ctrl-C) and reports how it went.
pub async fn run(args: DemoArgs) -> Result<Outcome, DemoError> {
    let prepared = prepare(&args)?;
    let world = start_world(&args, &prepared).await?;
    let configs = write_configs(&args, &prepared, &world)?;
    // Camera-sized synthetic pictures, made once (encoding 1920×1080 is not free),
    // while the bridge starts.
    let pictures = make_pictures(if args.no_images { 0 } else { 2 });
    let bridges = start_bridges(&args, &prepared, &world, &configs).await?;
    let pictures = pictures
        .await
        .map_err(|e| DemoError::Device(std::io::Error::other(e.to_string())))??;
    let live = Live {
        bridges: &bridges,
        world: &world,
        prepared: &prepared,
        started: Instant::now(),
        total: (args.vehicles > 0).then_some(args.vehicles),
        progress: Mutex::new(0),
    };
    let driven = drive_traffic(&args, &prepared, &world, &live, &pictures).await;
    let pending = if driven.interrupted {
        0
    } else {
        drain(&args, &bridges).await?
    };
    live.refresh().await;
    let started = live.started;
    let faults = stop(bridges).await;
    if driven.interrupted {
        return interrupted(&prepared, &configs).await;
    }
    report(&args, &world, &configs, driven, started, pending, faults)
}

/// Phase 1: the arguments checked and the demo directory made.
struct Prepared {
    entries: usize,
    exits: usize,
    /// The demo directory, canonical.
    dir: PathBuf,
    /// stdout is a terminal: the live view redraws in place.
    tty: bool,
}

fn prepare(args: &DemoArgs) -> Result<Prepared, DemoError> {
    let (entries, exits) = parse_lanes(&args.lanes)?;
    if !(args.speed > 0.0 && args.speed.is_finite()) {
        return Err(DemoError::Speed);
    }
    let dir = demo_dir(args);
    std::fs::create_dir_all(&dir).map_err(|source| DemoError::Dir {
        path: dir.clone(),
        source,
    })?;
    let dir = dir.canonicalize().map_err(|source| DemoError::Dir {
        path: dir.clone(),
        source,
    })?;
    Ok(Prepared {
        entries,
        exits,
        dir,
        tty: std::io::stdout().is_terminal(),
    })
}

/// Phase 2: everything around the bridge: the platform, the broker, the lanes' devices.
struct World {
    platform: PlatformTarget,
    broker: std::net::SocketAddr,
    /// Where the bridge reaches the broker: through `broker_gate` in a soak (its
    /// "broker restarts"), else the broker itself.
    bridge_broker: std::net::SocketAddr,
    broker_gate: Option<TcpGate>,
    /// The push receiver's port, chosen before the bridge starts so the cameras know
    /// their URL.
    push_port: u16,
    lanes: Vec<SimLane>,
}

async fn start_world(args: &DemoArgs, prepared: &Prepared) -> Result<World, DemoError> {
    let platform = start_platform(args, &prepared.dir).await?;
    let broker = broker::start()?;
    let push_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(DemoError::Device)?
        .port();
    let soak = args.soak_faults.is_some();
    let broker_gate = if soak {
        Some(TcpGate::start(broker).await.map_err(DemoError::Device)?)
    } else {
        None
    };
    let line_noise = if soak { SOAK_LINE_NOISE } else { 0.0 };
    let lanes = start_lanes(prepared, broker, push_port, line_noise, args.seed).await?;
    spawn_keep_alives(&lanes);
    Ok(World {
        platform,
        broker,
        bridge_broker: broker_gate.as_ref().map_or(broker, TcpGate::addr),
        broker_gate,
        push_port,
        lanes,
    })
}

/// Phase 3: the site configs, written and loaded: the bridge's (the lot node's in a
/// multi-PC lot) and each lane node's.
struct Configs {
    path: PathBuf,
    site: SiteConfig,
    /// Lane nodes of a multi-PC lot: each its config and state directory.
    lane_nodes: Vec<(SiteConfig, PathBuf)>,
}

fn write_configs(
    args: &DemoArgs,
    prepared: &Prepared,
    world: &World,
) -> Result<Configs, DemoError> {
    let dir = &prepared.dir;
    let lanes = &world.lanes;
    let step_ms = traffic_for(args.speed, prepared.entries, prepared.exits, args.seed, 1).step_ms;
    let dir_err = |source| DemoError::Dir {
        path: dir.clone(),
        source,
    };
    let render = |dir: &Path, node: Option<&NodePlan>| {
        render_config(
            dir,
            args,
            &world.platform,
            world.bridge_broker,
            lanes,
            step_ms,
            world.push_port,
            node,
        )
    };
    write_private(&dir.join("app_secret"), &world.platform.secret).map_err(dir_err)?;
    let node_plans = if args.nodes > 1 {
        plan_nodes(lanes, args.nodes.min(lanes.len()).max(2))
    } else {
        Vec::new()
    };
    // Lane nodes of a multi-PC lot: each its own directory, config and database.
    let mut lane_nodes = Vec::new();
    for n in node_plans.iter().filter(|n| !n.lot) {
        let node_dir = dir.join("nodes").join(&n.name);
        std::fs::create_dir_all(&node_dir).map_err(dir_err)?;
        write_private(&node_dir.join("app_secret"), &world.platform.secret).map_err(dir_err)?;
        let path = node_dir.join("config.toml");
        std::fs::write(&path, render(&node_dir, Some(n))).map_err(dir_err)?;
        lane_nodes.push((SiteConfig::load(&path)?, node_dir.join("state")));
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, render(dir, node_plans.iter().find(|n| n.lot))).map_err(dir_err)?;
    let site = SiteConfig::load(&path)?;
    for n in &node_plans {
        let owned: Vec<&str> = lanes
            .iter()
            .zip(&n.owns)
            .filter(|(_, o)| **o)
            .map(|(l, _)| l.id.as_str())
            .collect();
        println!(
            "node {} ({}): lanes {}",
            n.name,
            if n.lot { "lot node" } else { "lane node" },
            owned.join(", ")
        );
    }
    println!(
        "demo directory: {} (config.toml is a complete working example)",
        dir.display()
    );
    println!("platform: {}", world.platform.base_url);
    Ok(Configs {
        path,
        site,
        lane_nodes,
    })
}

/// `count` camera-sized synthetic pictures, made on a blocking thread.
fn make_pictures(
    count: u64,
) -> tokio::task::JoinHandle<Result<Vec<Vec<u8>>, picture::PictureError>> {
    tokio::task::spawn_blocking(move || {
        (0..count)
            .map(|i| picture::snapshot_jpeg(1920, 1080, PlateColor::Blue, i))
            .collect()
    })
}

/// Phase 4: the bridges running — in this process, or (soak) one in its own — with
/// the lot's state database and, in a soak, its fault schedule.
struct Bridges {
    bridge: Option<Bridge>,
    child: Option<Arc<Mutex<soak::ChildBridge>>>,
    /// The lot's state database (the bridge's, or opened beside the child's).
    store: Arc<crate::store::Store>,
    /// Lane nodes of a multi-PC lot, each with its state directory.
    lane_nodes: Vec<(Bridge, PathBuf)>,
    soak: Option<Soak>,
}

async fn start_bridges(
    args: &DemoArgs,
    prepared: &Prepared,
    world: &World,
    configs: &Configs,
) -> Result<Bridges, DemoError> {
    let dir = &prepared.dir;
    let (bridge, child) = match &args.bridge_exec {
        None => (Some(Bridge::start(configs.site.clone()).await?), None),
        Some(exe) => {
            let child =
                soak::ChildBridge::start(exe, &configs.path, dir).map_err(DemoError::Device)?;
            (None, Some(Arc::new(Mutex::new(child))))
        }
    };
    let store = match &bridge {
        Some(b) => b.store(),
        None => Arc::new(crate::store::Store::open_site(&configs.site)?),
    };
    if let Some(addr) = bridge.as_ref().and_then(Bridge::http_addr) {
        println!("status page: http://{addr}/");
    }
    let mut lane_nodes = Vec::new();
    for (site, state_dir) in &configs.lane_nodes {
        let name = site
            .cluster
            .as_ref()
            .map(|c| c.node.clone())
            .unwrap_or_default();
        let b = Bridge::start(site.clone()).await?;
        if let Some(addr) = b.http_addr() {
            println!("status page of {name}: http://{addr}/");
        }
        lane_nodes.push((b, state_dir.clone()));
    }
    let lanes = &world.lanes;
    if child.is_some() {
        // The bridge in its own process starts while the devices already run: drive
        // traffic only once it polls every lane's I/O module (at most 60 s), and give
        // its MQTT subscription a moment more.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && lanes.iter().any(|l| l.modbus.request_count(SLAVE) == 0)
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let soak = child
        .as_ref()
        .map(|c| start_soak(c.clone(), args, dir, world));
    if prepared.tty {
        println!("log: {}", dir.join("demo.log").display());
    }
    Ok(Bridges {
        bridge,
        child,
        store,
        lane_nodes,
        soak,
    })
}

/// The live view: what it reads to draw the screen.
struct Live<'a> {
    bridges: &'a Bridges,
    world: &'a World,
    prepared: &'a Prepared,
    started: Instant,
    total: Option<usize>,
    /// Vehicles that have left so far (the traffic counts them).
    progress: Mutex<usize>,
}

impl Live<'_> {
    /// Draws the screen as it is now.
    async fn refresh(&self) {
        let done = self.progress.lock().map(|n| *n).unwrap_or(0);
        let mut now = screen(
            self.bridges.bridge.as_ref(),
            self.bridges.store.clone(),
            &self.world.lanes,
            self.started,
            done,
            self.total,
            self.world.platform.record.as_deref(),
        )
        .await;
        if self.prepared.tty {
            now.log_file = Some(self.prepared.dir.join("demo.log").display().to_string());
        }
        show(&now, self.prepared.tty);
    }
}

/// Phase 5's result: the plan driven (a run of `--vehicles N`), whether Ctrl-C ended
/// it, and when each vehicle cleared each barrier.
struct Driven {
    plan: Option<Plan>,
    interrupted: bool,
    seen: Seen,
}

/// Phase 5: the traffic, as one plan or (for --vehicles 0) batch after batch until
/// Ctrl-C, with the screen redrawn meanwhile.
async fn drive_traffic(
    args: &DemoArgs,
    prepared: &Prepared,
    world: &World,
    live: &Live<'_>,
    pictures: &[Vec<u8>],
) -> Driven {
    let (entries, exits) = (prepared.entries, prepared.exits);
    let (lanes, broker) = (&world.lanes, world.broker);
    let seen = Mutex::new(Seen::default());
    let mut plan = None;
    let interrupted = {
        let traffic = async {
            if args.vehicles > 0 {
                let p = traffic::plan(&traffic_for(
                    args.speed,
                    entries,
                    exits,
                    args.seed,
                    args.vehicles,
                ));
                drive(&p, lanes, pictures, broker, &live.progress, &seen).await;
                plan = Some(p);
            } else {
                for batch in 0u64.. {
                    let p = traffic::plan(&traffic_for(
                        args.speed,
                        entries,
                        exits,
                        args.seed.wrapping_add(batch),
                        50,
                    ));
                    drive(&p, lanes, pictures, broker, &live.progress, &seen).await;
                }
            }
        };
        let ticker = async {
            loop {
                let period = if prepared.tty { 500 } else { 2000 };
                tokio::time::sleep(Duration::from_millis(period)).await;
                live.refresh().await;
            }
        };
        tokio::select! {
            _ = traffic => false,
            _ = ticker => false,
            _ = tokio::signal::ctrl_c() => true,
        }
    };
    Driven {
        plan,
        interrupted,
        seen: seen.into_inner().unwrap_or_else(|e| e.into_inner()),
    }
}

/// Phase 6: lets the bridge finish — passages still held by a lane, then the outbox
/// (and in a multi-PC lot the lane nodes' queues and the exits held for their
/// entries) — until empty or `--drain-timeout-secs`. Returns what is still pending.
async fn drain(args: &DemoArgs, bridges: &Bridges) -> Result<u64, DemoError> {
    let joined =
        |e: tokio::task::JoinError| DemoError::Device(std::io::Error::other(e.to_string()));
    let drain_deadline = Instant::now() + Duration::from_secs(args.drain_timeout_secs);
    // A lane holds a passage for a few seconds after the vehicle cleared the
    // barrier, waiting for a late plate read: let those settle first.
    tokio::time::sleep(SETTLE).await;
    let mut empty_checks = 0;
    loop {
        let lot_store = bridges.store.clone();
        let mut pending = tokio::task::spawn_blocking(move || lot_store.pending_count())
            .await
            .map_err(joined)??;
        // A multi-PC lot: passages still in a lane node's queue, exits waiting
        // at the lot node for their entries.
        if !bridges.lane_nodes.is_empty() {
            let store = bridges.store.clone();
            let dirs: Vec<PathBuf> = bridges.lane_nodes.iter().map(|(_, d)| d.clone()).collect();
            pending += tokio::task::spawn_blocking(move || {
                let held = store.cluster_held().map_or(0, |h| h.len() as u64);
                let queued: u64 = dirs
                    .iter()
                    .filter_map(|d| crate::cluster::queue::LaneQueue::open(d, u64::MAX).ok())
                    .filter_map(|q| q.depth().ok())
                    .map(|d| d.passages)
                    .sum();
                held + queued
            })
            .await
            .map_err(joined)?;
        }
        // Empty three times in a row, a moment apart: nothing in flight between
        // lane and outbox either.
        empty_checks = if pending == 0 { empty_checks + 1 } else { 0 };
        if empty_checks >= 3 || Instant::now() >= drain_deadline {
            return Ok(pending);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(400)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(pending),
        }
    }
}

/// Phase 7: stops the lane nodes, the bridge and the soak; a soak's fault log.
async fn stop(bridges: Bridges) -> Option<soak::FaultLog> {
    for (b, _) in bridges.lane_nodes {
        b.stop().await;
    }
    if let Some(b) = bridges.bridge {
        b.stop().await;
    }
    match (bridges.soak, bridges.child) {
        (Some(soak), Some(child)) => Some(finish_soak(soak, &child)),
        _ => None,
    }
}

/// The end of an interrupted run: what is kept for the next start.
async fn interrupted(prepared: &Prepared, configs: &Configs) -> Result<Outcome, DemoError> {
    let dir = &prepared.dir;
    let store = crate::store::Store::open_site(&SiteConfig::load(&configs.path)?)?;
    let pending = store.pending_count()?;
    println!(
        "\ninterrupted: {pending} report(s) kept in {} for the next start (`parking-bridge demo --dir {}` or `parking-bridge run --config {}`)",
        dir.join("state").display(),
        dir.display(),
        configs.path.display()
    );
    Ok(Outcome {
        matched: None,
        pending,
        interrupted: true,
    })
}

/// Phase 8: the platform's record against the plan (the built-in mock), latency and
/// throughput, and the outcome.
fn report(
    args: &DemoArgs,
    world: &World,
    configs: &Configs,
    driven: Driven,
    started: Instant,
    pending: u64,
    faults: Option<soak::FaultLog>,
) -> Result<Outcome, DemoError> {
    let soak_ok = faults.as_ref().is_none_or(|f| f.crashes.is_empty());
    let matched = match (&world.platform.record, &driven.plan) {
        (Some(record), Some(plan)) => {
            let file = std::fs::File::open(record).map_err(|source| DemoError::Dir {
                path: record.clone(),
                source,
            })?;
            let view = PlatformView::from_record(std::io::BufReader::new(file));
            let set_aside = faults
                .as_ref()
                .map(|f| blinded_vehicles(plan, &world.lanes, &driven.seen.spans, &f.blind))
                .unwrap_or_default();
            if faults.is_some() {
                // What the check saw, kept so a soak's verdict can be re-derived.
                write_passages(&demo_dir(args), &driven.seen, &set_aside);
            }
            let mut verdict =
                verify::compare(plan, &view, PLACEHOLDER_PLATE, TOTAL_SPACES, &set_aside);
            let entry_spans: HashMap<usize, (i64, i64)> = driven
                .seen
                .spans
                .iter()
                .filter(|((_, at_exit), _)| !at_exit)
                .map(|((v, _), span)| (*v, *span))
                .collect();
            // While a soak's clock jump moved the bridge's clock, its times say nothing.
            let unclocked = faults.as_ref().map_or(&[][..], |f| f.unclocked.as_slice());
            verdict.problems.extend(verify::misattributed(
                plan,
                &view,
                &entry_spans,
                &set_aside,
                unclocked,
            ));
            println!("\n{}", view::summary(&verdict));
            println!(
                "platform: {} snapshots, {} heartbeats, {} duplicate re-sends answered OUT_ORDER_NO_DUPLICATION",
                view.snapshots, view.heartbeats, view.duplicate_entries
            );
            let lat = latencies(plan, &view, &driven.seen.cleared);
            if let Some((p50, p99, n)) = percentiles(&lat) {
                println!(
                    "passage (loop B released) → platform acknowledgement: p50 {p50} ms, p99 {p99} ms over {n} passages"
                );
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "throughput: {} vehicles in {secs:.1} s = {:.2} vehicles/s end to end; peak RSS of the process {}",
                plan.vehicles.len(),
                plan.vehicles.len() as f64 / secs.max(0.001),
                peak_rss().map_or("unknown".to_string(), |kb| format!(
                    "{:.1} MB",
                    kb as f64 / 1024.0
                ))
            );
            Some(verdict.ok())
        }
        _ => {
            println!(
                "\nexternal platform: {pending} report(s) not yet acknowledged; compare the platform's own record with {}",
                configs.path.display()
            );
            None
        }
    };
    if pending > 0 {
        println!(
            "{pending} report(s) still pending after {} s",
            args.drain_timeout_secs
        );
    }
    Ok(Outcome {
        matched: matched.map(|m| m && pending == 0 && soak_ok),
        pending,
        interrupted: false,
    })
}

/// `DIR/soak-passages.csv`: each passage's wall-clock span and whether it was set aside.
fn write_passages(dir: &Path, seen: &Seen, set_aside: &std::collections::HashSet<usize>) {
    let mut rows: Vec<_> = seen.spans.iter().collect();
    rows.sort_unstable();
    let mut text = String::from("vehicle,at_exit,first_ms,last_ms,set_aside\n");
    for ((v, at_exit), (first, last)) in rows {
        text.push_str(&format!(
            "{v},{at_exit},{first},{last},{}\n",
            set_aside.contains(v)
        ));
    }
    if let Err(e) = std::fs::write(dir.join("soak-passages.csv"), text) {
        tracing::warn!(error = %e, "cannot write soak-passages.csv");
    }
}

/// The vehicles a soak's blind spells set aside: the spell's scope mapped onto the
/// demo's lanes (the RS-485 lane, the MQTT camera lanes, or all).
fn blinded_vehicles(
    plan: &Plan,
    lanes: &[SimLane],
    spans: &HashMap<(usize, bool), (i64, i64)>,
    blind: &[soak::Blind],
) -> std::collections::HashSet<usize> {
    let lane = |at_exit: bool, i: usize| {
        let want = if at_exit {
            LaneRef::Exit(i)
        } else {
            LaneRef::Entry(i)
        };
        lanes.iter().find(|l| l.lane == want)
    };
    let covers = |scope: soak::Scope, at_exit: bool, i: usize| match (scope, lane(at_exit, i)) {
        (soak::Scope::AllLanes, _) => true,
        (soak::Scope::SerialLane, Some(l)) => matches!(l.attach, Attach::Rtu { .. }),
        (soak::Scope::MqttLanes, Some(l)) => l.push.is_none(),
        (_, None) => false,
    };
    let by_id: HashMap<usize, (usize, usize)> = plan
        .vehicles
        .iter()
        .map(|v| (v.id, (v.entry_lane, v.exit_lane)))
        .collect();
    let lanes_of = |v: usize| by_id.get(&v).copied().unwrap_or((usize::MAX, usize::MAX));
    soak::blinded(spans, blind, lanes_of, covers)
}

/// Milliseconds from each readable vehicle clearing a barrier to the platform
/// accepting that entry or exit.
fn latencies(plan: &Plan, view: &PlatformView, cleared: &HashMap<(usize, bool), i64>) -> Vec<i64> {
    let by_plate: HashMap<&str, (&str, i64)> = view
        .entries
        .iter()
        .map(|(order, (plate, at))| (plate.as_str(), (order.as_str(), *at)))
        .collect();
    let mut out = Vec::new();
    for v in plan
        .vehicles
        .iter()
        .filter(|v| v.case.enters() && v.case != traffic::Case::Unreadable)
    {
        let Some((order, entry_at)) = by_plate.get(v.plate.as_str()) else {
            continue;
        };
        if let Some(t) = cleared.get(&(v.id, false)) {
            out.push(entry_at - t);
        }
        if let (Some(t), Some(exit_at)) = (cleared.get(&(v.id, true)), view.exits.get(*order)) {
            out.push(exit_at - t);
        }
    }
    out
}

/// The process's peak resident set (VmHWM), in KiB, where /proc tells it.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// (p50, p99, count) of a sample, nearest-rank.
fn percentiles(sample: &[i64]) -> Option<(i64, i64, usize)> {
    if sample.is_empty() {
        return None;
    }
    let mut v = sample.to_vec();
    v.sort_unstable();
    let rank = |p: f64| v[(((p * v.len() as f64).ceil() as usize).max(1) - 1).min(v.len() - 1)];
    Some((rank(0.50), rank(0.99), v.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentiles(&[]), None);
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentiles(&v), Some((50, 99, 100)));
        assert_eq!(percentiles(&[7]), Some((7, 7, 1)));
    }

    #[test]
    fn the_generated_config_starts_with_platform_lot_storage_http_and_mqtt() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: DemoArgs,
        }
        let args = <Cli as clap::Parser>::parse_from(["demo"]).args;
        let platform = PlatformTarget {
            base_url: "http://p".into(),
            app_id: "app".into(),
            secret: DEMO_SECRET.into(),
            record: None,
        };
        let broker: std::net::SocketAddr = "127.0.0.1:1883".parse().unwrap();
        let dir = Path::new("/d");
        let text = render_config(dir, &args, &platform, broker, &[], 200, 0, None);
        assert_eq!(
            text,
            "# Generated by `parking-bridge demo`: a complete working site config for the\n\
             # simulated lot. Check it with `parking-bridge check --config THIS_FILE`.\n\n\
             [platform]\nbase_url = \"http://p\"\napp_id = \"app\"\napp_secret_file = \"/d/app_secret\"\n\
             heartbeat_secs = 10\n\n[lot]\nparking_lot_no = \"DEMO0001\"\ntotal_spaces = 100\n\n\
             [storage]\ndir = \"/d/state\"\n\n[http]\n\
             # The status page, /metrics and /healthz; port 0 picks a free port (the demo\n\
             # prints the address).\nlisten = \"127.0.0.1:0\"\n\
             # The simulated PC's clock is whatever this machine's is.\nrequire_clock_sync = false\n\n\
             [mqtt]\nhost = \"127.0.0.1\"\nport = 1883\nclient_id = \"parking-bridge-demo\"\n\n"
        );
        let node = NodePlan {
            name: "lane-1".into(),
            lot: false,
            owns: Vec::new(),
            nodes: Vec::new(),
        };
        let text = render_config(dir, &args, &platform, broker, &[], 200, 0, Some(&node));
        assert!(
            text.contains("client_id = \"parking-bridge-demo-lane-1\"\n\n"),
            "{text}"
        );
        assert!(
            text.contains("[cluster]\nnode = \"lane-1\"\nrole = \"lane\"\n"),
            "{text}"
        );
    }

    #[test]
    fn lanes_are_named_as_the_config_and_the_platform_say() {
        assert_eq!(lane_id(LaneRef::Entry(0)), "entry-1");
        assert_eq!(lane_id(LaneRef::Exit(1)), "exit-2");
        assert_eq!(port_no(LaneRef::Entry(0)), "E1");
        assert_eq!(port_no(LaneRef::Exit(1)), "X2");
        assert_eq!(direction(LaneRef::Exit(0)), "exit");
    }

    #[test]
    fn lanes_argument_is_checked() {
        assert_eq!(parse_lanes("2:3").unwrap(), (2, 3));
        assert!(parse_lanes("0:1").is_err());
        assert!(parse_lanes("2").is_err());
        assert!(parse_lanes("a:b").is_err());
        assert!(parse_lanes("17:1").is_err());
    }
}
