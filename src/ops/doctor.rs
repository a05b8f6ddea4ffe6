//! `parking-bridge doctor --config F`: the installer's checklist. Each line is ✓ or ✗
//! with a hint saying what to do. Exit status 0 only when every line is ✓.
//!
//! Read-only like the rest of the bridge: Modbus probes use function codes 1–4, the
//! MQTT check only subscribes, the platform check sends a heartbeat (which is what the
//! running bridge does every 30 s anyway).
//!
//! Run it with the service stopped: a running bridge holds the serial ports.

use super::disk::fs_space;
use crate::config::{Attachment, BusConfig, MqttConfig, SiteConfig};
use crate::driver::ProfileLibrary;
use crate::driver::modbus::{Function, ReadRequest, plan};
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Every network check gives up after this.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// A Modbus slave answers within a few hundred ms; this is generous.
pub const MODBUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for each camera to publish something, unless told otherwise.
pub const CAMERA_WAIT: Duration = Duration::from_secs(10);
/// Below this much free space the storage check fails.
pub const MIN_FREE_BYTES: u64 = 200 * 1024 * 1024;

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub ok: bool,
    /// What was checked, e.g. `storage dir writable`.
    pub label: String,
    /// What was found.
    pub detail: String,
    /// What to do about a ✗.
    pub hint: Option<String>,
}

impl Check {
    pub fn pass(label: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            ok: true,
            label: label.into(),
            detail: detail.into(),
            hint: None,
        }
    }
    pub fn fail(
        label: impl Into<String>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Check {
            ok: false,
            label: label.into(),
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }
}

/// The line in English (as [`Check::render`] in English: the text is the table's key).
impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(super::i18n::Lang::En))
    }
}

impl Check {
    /// The line in `lang`: what was checked and the hint are translated; what was
    /// found (paths, errors, figures) stays as the system said it.
    pub fn render(&self, lang: super::i18n::Lang) -> String {
        let mark = if self.ok { "✓" } else { "✗" };
        let mut out = format!("{mark} {}", lang.tr_text(&self.label));
        if !self.detail.is_empty() {
            out.push_str(": ");
            out.push_str(&self.detail);
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!(
                "\n    {}: {}",
                lang.tr("hint"),
                lang.tr_text(hint)
            ));
        }
        out
    }
}

/// Runs the checklist, printing each line as it completes, and returns the process
/// exit status (0: all ✓). Builds its own runtime so `main` stays a plain dispatcher.
pub fn main(config_path: &Path, camera_wait: Duration) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The installer's language (LANG); English by default.
    let lang = super::i18n::Lang::from_env();
    let checks = runtime.block_on(run(config_path, camera_wait, |c| {
        println!("{}", c.render(lang))
    }));
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed == 0 {
        println!(
            "{}",
            lang.tr_text(&format!("all {} checks passed", checks.len()))
        );
        std::process::ExitCode::SUCCESS
    } else {
        println!(
            "{}",
            lang.tr_text(&format!("{failed} of {} checks failed", checks.len()))
        );
        std::process::ExitCode::FAILURE
    }
}

/// All checks in order; `report` sees each as it completes.
pub async fn run(
    config_path: &Path,
    camera_wait: Duration,
    mut report: impl FnMut(&Check),
) -> Vec<Check> {
    let mut out = Vec::new();
    let mut push = |c: Check, out: &mut Vec<Check>| {
        report(&c);
        out.push(c);
    };
    let config = match SiteConfig::load(config_path) {
        Ok(c) => {
            push(
                Check::pass("config valid", config_path.display().to_string()),
                &mut out,
            );
            c
        }
        Err(e) => {
            push(
                Check::fail(
                    "config valid",
                    e.to_string().replace('\n', "\n    "),
                    format!(
                        "fix the lines above; `parking-bridge check --config {}` repeats them",
                        config_path.display()
                    ),
                ),
                &mut out,
            );
            return out;
        }
    };
    push(check_secret(&config, config_path), &mut out);
    push(check_storage(&config.storage.dir), &mut out);
    let profiles = match crate::driver::load_profiles(&config) {
        Ok(p) => p,
        Err(e) => {
            push(
                Check::fail(
                    "device profiles found",
                    e.to_string(),
                    "see `parking-bridge check`; profiles live in /usr/share/parking-bridge/device-profiles",
                ),
                &mut out,
            );
            ProfileLibrary::default()
        }
    };
    for bus in &config.buses {
        push(check_serial_port(bus), &mut out);
    }
    for probe in modbus_probes(&config, &profiles) {
        push(check_modbus(&probe).await, &mut out);
    }
    if let Some(mqtt) = &config.mqtt {
        for c in check_mqtt(mqtt, &camera_topics(&config, &profiles), camera_wait).await {
            push(c, &mut out);
        }
    }
    for c in check_lanes(&config, crate::time::Timestamp::now()) {
        push(c, &mut out);
    }
    if let Some(c) = check_push_listener(&config).await {
        push(c, &mut out);
    }
    for c in check_push_cameras(&config, &profiles, crate::time::Timestamp::now()) {
        push(c, &mut out);
    }
    push(check_platform(&config).await, &mut out);
    push(check_clock_sync(), &mut out);
    push(check_timezone(&config.platform.utc_offset), &mut out);
    if let Some(file) = &config.storage.backup_file {
        push(
            check_backup(
                file,
                Duration::from_secs(config.storage.backup_max_age_hours.saturating_mul(3600)),
                std::time::SystemTime::now(),
            ),
            &mut out,
        );
    }
    out
}

/// The age of the last backup, when `[storage] backup_file` is configured.
pub fn check_backup(file: &Path, max_age: Duration, now: std::time::SystemTime) -> Check {
    const LABEL: &str = "recent backup of the state database";
    let take = format!(
        "parking-bridge backup --config /etc/parking-bridge/config.toml --to {} (the shipped parking-bridge-backup.timer runs it daily)",
        file.display()
    );
    match super::backup::backup_age(file, now) {
        None => Check::fail(LABEL, format!("no backup yet at {}", file.display()), take),
        Some(age) => {
            let hours = age.as_secs() / 3600;
            let detail = format!(
                "{}: {} h {} min old",
                file.display(),
                hours,
                (age.as_secs() % 3600) / 60
            );
            if age <= max_age {
                Check::pass(LABEL, detail)
            } else {
                Check::fail(LABEL, detail, take)
            }
        }
    }
}

/// How far back `doctor` looks in the event journal for lanes that read without
/// passing or pass without reading.
pub const LANE_AUDIT_WINDOW_MS: i64 = 3_600_000;

/// One line per lane: its layout and where it comes from (a lane whose devices sense
/// no vehicle fails), then the same checks the running bridge makes (reads without
/// passages, vehicles without reads) over the last hour of the event journal.
pub fn check_lanes(config: &SiteConfig, now: crate::time::Timestamp) -> Vec<Check> {
    use crate::config::lanes::LaneSummary;
    let since = crate::time::Timestamp(now.0.saturating_sub(LANE_AUDIT_WINDOW_MS));
    let events = journal_since(&config.storage.dir.join("journal"), since);
    let journalled = !events.is_empty();
    let audits = crate::lane::watch::audit(config, events);
    let mut out = Vec::new();
    for lane in &config.lanes {
        let summary = LaneSummary::of(lane, &config.devices);
        let label = format!("lane {} ({})", lane.id, lane.direction.as_str());
        // `id (direction): layout, …` without the id and direction the label has.
        let line = summary.line();
        let mut detail = line
            .split_once("): ")
            .map_or(line.as_str(), |(_, rest)| rest)
            .to_string();
        if let Some(a) = audits.get(&lane.id).filter(|_| journalled) {
            detail.push_str(&format!(
                "; last hour: {} reads, {} passages",
                a.reads, a.passages
            ));
        }
        let mut problems: Vec<String> = Vec::new();
        if summary.never_reports() {
            problems.extend(summary.warnings.iter().cloned());
        }
        if let Some(a) = audits.get(&lane.id) {
            problems.extend(a.warnings.iter().map(|(m, n)| m.text(*n)));
        }
        out.push(if problems.is_empty() {
            for w in &summary.warnings {
                detail.push_str(&format!("; note: {w}"));
            }
            Check::pass(label, detail)
        } else {
            detail.push_str(&format!("; {}", problems.join("; ")));
            Check::fail(
                label,
                detail,
                "check the `lane` and `roles` of each device against the wiring, and the camera's aim; `parking-bridge check` lists each lane's layout",
            )
        });
    }
    out
}

/// The `[camera_push]` listener: reachable by cameras on the LAN, and either free (the
/// service is stopped) or held (by the running service). `None` without push cameras.
pub async fn check_push_listener(config: &SiteConfig) -> Option<Check> {
    let push = config.camera_push.as_ref()?;
    let cameras: Vec<_> = config.devices.iter().filter(|d| d.http_push).collect();
    if cameras.is_empty() {
        return None;
    }
    let label = "camera push listener";
    let ip = push
        .listen
        .rsplit_once(':')
        .map(|(host, _)| host.trim_matches(['[', ']']))
        .and_then(|h| h.parse::<std::net::IpAddr>().ok());
    let from_lan = cameras.iter().any(|d| {
        d.source
            .as_deref()
            .and_then(|s| s.parse::<std::net::IpAddr>().ok())
            .is_none_or(|s| !s.is_loopback())
    });
    if ip.is_some_and(|ip| ip.is_loopback()) && from_lan {
        return Some(Check::fail(
            label,
            format!("{} is reachable from this PC only", push.listen),
            "cameras push over the network: set [camera_push] listen to 0.0.0.0:PORT (or this PC's address on the cameras' network)",
        ));
    }
    // Binding tells a free port (service stopped) from one in use (the service, or
    // another program), without sending anything to a camera.
    Some(match tokio::net::TcpListener::bind(&push.listen).await {
        Ok(_) => Check::pass(
            label,
            format!(
                "{} free: the service listens there when it runs",
                push.listen
            ),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Check::pass(
            label,
            format!(
                "{} in use (the running service, or check with `ss -ltnp`)",
                push.listen
            ),
        ),
        Err(e) => Check::fail(
            label,
            format!("{}: {e}", push.listen),
            "use an address of this PC (or 0.0.0.0) and a free port above 1024",
        ),
    })
}

/// One line per push camera: whether it pushed (a read or a keep-alive) within the
/// last hour of the journal, and the address to set on it. Doctor does not listen for
/// pushes itself: answering one would acknowledge a recognition to the camera that
/// the service never saw, and the camera would not send it again.
pub fn check_push_cameras(
    config: &SiteConfig,
    profiles: &ProfileLibrary,
    now: crate::time::Timestamp,
) -> Vec<Check> {
    let since = crate::time::Timestamp(now.0.saturating_sub(LANE_AUDIT_WINDOW_MS));
    let events = journal_since(&config.storage.dir.join("journal"), since);
    let offset = crate::time::parse_offset(&config.platform.utc_offset)
        .unwrap_or_else(crate::time::china_standard_time);
    crate::driver::http_push::push_cameras(config, profiles)
        .into_iter()
        .map(|cam| {
            let source = cam
                .source
                .as_deref()
                .map(|s| format!(", from {s}"))
                .unwrap_or_default();
            let address = format!("push address {}{source}", cam.address);
            let label = format!("camera {} pushes", cam.name);
            let heard: Vec<_> = events.iter().filter(|e| e.device == cam.name).collect();
            let reads = heard
                .iter()
                .filter(|e| matches!(e.kind, crate::event::EventKind::Plate(_)))
                .count();
            match heard.last() {
                Some(last) => Check::pass(
                    label,
                    format!(
                        "{reads} reads in the last hour, last heard {}; {address}",
                        last.at.format_local(offset)
                    ),
                ),
                None => Check::fail(
                    label,
                    format!("nothing from it in the last hour of the journal; {address}"),
                    "set that address on the camera (README: the push URL per vendor; BRIDGE is this PC's address), check its `source`/`token` against the device entry, then drive a car past or use its test trigger with the service running",
                ),
            }
        })
        .collect()
}

/// The journalled events at or after `since`, oldest first. Files are read newest
/// first and the reading stops at the first one that starts before `since` (older
/// rotated files hold older events only), so a full journal is not parsed for an
/// hour. An unreadable file or line is skipped (the journal is a diagnostic aid).
fn journal_since(dir: &Path, since: crate::time::Timestamp) -> Vec<crate::event::RawEvent> {
    let mut files: Vec<(usize, std::path::PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let n = match name.as_str() {
                "events.jsonl" => 0,
                other => other
                    .strip_prefix("events.")?
                    .strip_suffix(".jsonl")?
                    .parse()
                    .ok()?,
            };
            Some((n, e.path()))
        })
        .collect();
    files.sort_by_key(|f| f.0);
    let mut chunks = Vec::new();
    for (_, path) in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let events: Vec<crate::event::RawEvent> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let reaches_back = events.first().is_some_and(|e| e.at < since);
        chunks.push(
            events
                .into_iter()
                .filter(|e| e.at >= since)
                .collect::<Vec<_>>(),
        );
        if reaches_back {
            break;
        }
    }
    chunks.into_iter().rev().flatten().collect()
}

/// The secret: present, 16 characters (an SM4 key), and not readable by everyone.
/// Found the way the running bridge finds it ([`crate::config::PlatformConfig::secret`]).
pub fn check_secret(config: &SiteConfig, config_path: &Path) -> Check {
    use crate::config::platform::SecretError;
    const LABEL: &str = "app secret present and private";
    let p = &config.platform;
    match p.secret() {
        Err(e) => {
            let hint = match &e {
                SecretError::Missing => {
                    "set [platform] app_secret_file = \"/etc/parking-bridge/secret\" and put the secret there".to_string()
                }
                SecretError::Length { .. } => "the SM4 key is exactly 16 characters, as issued by the platform".to_string(),
                SecretError::Read { path, .. } => format!(
                    "put the 16-character secret in {}: {}",
                    path.display(),
                    make_private(path)
                ),
                SecretError::WorldReadable { path, .. } => make_private(path),
            };
            Check::fail(LABEL, e.to_string(), hint)
        }
        Ok(_)
            if std::env::var(crate::config::platform::SECRET_ENV).is_ok_and(|s| !s.is_empty()) =>
        {
            Check::pass(
                LABEL,
                format!("from {}", crate::config::platform::SECRET_ENV),
            )
        }
        Ok(_) => match &p.app_secret_file {
            Some(file) => Check::pass(LABEL, format!("in {}", file.display())),
            // Inline in the config: then the config file itself must be private.
            None => match world_readable(config_path) {
                Ok(false) => Check::pass(LABEL, format!("inline in {}", config_path.display())),
                Ok(true) => Check::fail(
                    LABEL,
                    format!(
                        "inline in {}, which every user can read",
                        config_path.display()
                    ),
                    format!(
                        "move it to app_secret_file, or: {}",
                        make_private(config_path)
                    ),
                ),
                Err(e) => Check::fail(
                    LABEL,
                    format!("cannot stat {}: {e}", config_path.display()),
                    "check the path",
                ),
            },
        },
    }
}

/// The commands that leave `path` readable by root and the bridge's group only.
fn make_private(path: &Path) -> String {
    format!(
        "chown root:parking-bridge {0} && chmod 0640 {0}",
        path.display()
    )
}

fn world_readable(path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o004 != 0)
}

/// The storage dir exists, a file can be written there, and there is room.
pub fn check_storage(dir: &Path) -> Check {
    const LABEL: &str = "storage dir writable with free space";
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    if let Err(e) = std::fs::write(&probe, b"probe") {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "create it: install -d -o parking-bridge -g parking-bridge {}",
                dir.display()
            ),
            std::io::ErrorKind::PermissionDenied => {
                format!("chown -R parking-bridge:parking-bridge {}", dir.display())
            }
            _ => "check the path and the file system".to_string(),
        };
        return Check::fail(
            LABEL,
            format!("cannot write in {}: {e}", dir.display()),
            hint,
        );
    }
    let _ = std::fs::remove_file(&probe);
    match fs_space(dir) {
        Ok(space) if space.available < MIN_FREE_BYTES => Check::fail(
            LABEL,
            format!(
                "{}: only {} MB free",
                dir.display(),
                space.available / 1_048_576
            ),
            format!(
                "free space on that disk (at least {} MB)",
                MIN_FREE_BYTES / 1_048_576
            ),
        ),
        Ok(space) => Check::pass(
            LABEL,
            format!(
                "{}: {} MB free ({}% used)",
                dir.display(),
                space.available / 1_048_576,
                space.used_percent()
            ),
        ),
        Err(e) => Check::fail(
            LABEL,
            format!("statvfs {}: {e}", dir.display()),
            "check the path",
        ),
    }
}

/// The bus's port exists and opens with its settings.
pub fn check_serial_port(bus: &BusConfig) -> Check {
    let port = &bus.port;
    let label = format!("serial port {port} (bus {}) opens", bus.name);
    if !Path::new(port).exists() {
        return Check::fail(
            label,
            "no such device",
            "check the USB/RS-485 adapter and the udev rule (/etc/udev/rules.d/99-parking-bridge.rules); `parking-bridge ports` lists adapters",
        );
    }
    match crate::driver::rtu::open_serial(bus) {
        Ok(_) => Check::pass(label, format!("{} baud", bus.baud)),
        Err(e) => {
            let text = e.to_string();
            let hint = if text.contains("ermission") {
                "the service user needs group dialout: adduser parking-bridge dialout".to_string()
            } else if text.to_lowercase().contains("busy") {
                "another program holds the port (the running service?): systemctl stop parking-bridge, then retry".to_string()
            } else {
                "check the adapter".to_string()
            };
            Check::fail(label, text, hint)
        }
    }
}

#[derive(Debug, Clone)]
pub enum ModbusTarget {
    Rtu {
        bus: BusConfig,
    },
    /// `host:port`.
    Tcp {
        address: String,
    },
}

/// A profile point as the probe sees it.
#[derive(Debug, Clone)]
pub struct ProbePoint {
    pub name: String,
    pub request: ReadRequest,
    /// Bound to a lane role on this device.
    pub bound: bool,
}

/// What proves a slave gives the lane what it needs: the reads the running bridge
/// makes (the profile's read plan, function codes 1–4 only by construction), and every
/// point, to name the ones a failed read is about.
#[derive(Debug, Clone)]
pub struct ModbusProbe {
    pub device: String,
    pub target: ModbusTarget,
    pub slave: u8,
    pub reads: Vec<ReadRequest>,
    pub points: Vec<ProbePoint>,
}

/// One probe per Modbus device.
pub fn modbus_probes(config: &SiteConfig, profiles: &ProfileLibrary) -> Vec<ModbusProbe> {
    let mut out = Vec::new();
    for d in &config.devices {
        let Some(modbus) = profiles.get(&d.profile).and_then(|p| p.modbus.as_ref()) else {
            continue;
        };
        let target = match d.attachment() {
            Some(Attachment::Rtu { bus }) => match config.buses.iter().find(|b| b.name == bus) {
                Some(b) => ModbusTarget::Rtu { bus: b.clone() },
                None => continue,
            },
            Some(Attachment::Tcp { address }) => ModbusTarget::Tcp {
                address: address.to_string(),
            },
            _ => continue,
        };
        let points = modbus
            .points
            .iter()
            .filter_map(|p| {
                Some(ProbePoint {
                    name: p.name.clone(),
                    request: ReadRequest {
                        function: Function::from_code(p.function)?,
                        address: p.address,
                        count: p.kind.width(),
                    },
                    bound: d.roles.values().any(|n| n == &p.name),
                })
            })
            .collect();
        out.push(ModbusProbe {
            device: d.name.clone(),
            target,
            slave: d.slave.unwrap_or(modbus.default_slave),
            reads: plan(&modbus.points),
            points,
        });
    }
    out
}
/// What doctor waits for from one camera.
#[derive(Debug, Clone)]
pub struct CameraWatch {
    pub device: String,
    /// Result, quick and keep-alive topics.
    pub topics: Vec<String>,
    /// The device's `camera_id` and its profile, to tell cameras sharing a topic apart.
    pub id: String,
    pub profile: Option<crate::driver::profile::CameraProfile>,
}

/// The topics each camera publishes on (result, quick, heartbeat), by device name.
pub fn camera_topics(config: &SiteConfig, profiles: &ProfileLibrary) -> Vec<CameraWatch> {
    let mut out = Vec::new();
    for d in &config.devices {
        if d.http_push {
            continue;
        }
        let Some(Attachment::Camera { id }) = d.attachment() else {
            continue;
        };
        let Some(camera) = profiles.get(&d.profile).and_then(|p| p.camera.as_ref()) else {
            continue;
        };
        let topics = crate::driver::mqtt::camera_topics(camera, id, d)
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        out.push(CameraWatch {
            device: d.name.clone(),
            topics,
            id: id.to_string(),
            profile: Some(camera.clone()),
        });
    }
    out
}

/// Makes every read the bridge will make for the device, through the bridge's own
/// Modbus code; when one is answered with an exception, reads each point it carries
/// alone to name the ones that fail.
pub async fn check_modbus(probe: &ModbusProbe) -> Check {
    use crate::driver::LinkError;
    let label = format!(
        "modbus device {} (slave {}) answers",
        probe.device, probe.slave
    );
    let (target, hint) = match &probe.target {
        ModbusTarget::Tcp { address } => (
            address.clone(),
            "check the device's IP address, port and unit id, and the network",
        ),
        ModbusTarget::Rtu { bus } => (
            bus.port.clone(),
            "check wiring (A/B swapped?), termination, baud rate/parity and the slave address set on the device",
        ),
    };
    let mut link: Box<dyn ProbeLink> = match &probe.target {
        ModbusTarget::Tcp { address } => {
            match crate::driver::tcp::TcpLink::connect(address, MODBUS_TIMEOUT).await {
                Ok(l) => Box::new(l),
                Err(e) => {
                    return Check::fail(label, format!("{target}: cannot connect: {e}"), hint);
                }
            }
        }
        ModbusTarget::Rtu { bus } => match crate::driver::rtu::open_serial(bus) {
            Ok(s) => Box::new(crate::driver::rtu::RtuLink::new(s)),
            Err(e) => return Check::fail(label, format!("{target}: cannot open: {e}"), hint),
        },
    };
    // RS-485 devices need the bus silent between frames, as the poller keeps it.
    let gap = match &probe.target {
        ModbusTarget::Rtu { bus } => crate::driver::rtu::silent_interval(bus.baud),
        ModbusTarget::Tcp { .. } => Duration::ZERO,
    };
    let mut failures: Vec<String> = Vec::new();
    for req in &probe.reads {
        let answer = link.read_boxed(probe.slave, req).await;
        tokio::time::sleep(gap).await;
        match answer {
            Ok(()) => {}
            Err(LinkError::Exception(code)) => {
                // Narrow it down: which of the points this read carries fail alone?
                let mut failing = Vec::new();
                for p in probe.points.iter().filter(|p| within(&p.request, req)) {
                    let alone = link.read_boxed(probe.slave, &p.request).await;
                    tokio::time::sleep(gap).await;
                    if let Err(LinkError::Exception(_)) = alone {
                        failing.push(if p.bound {
                            format!("{} (bound)", p.name)
                        } else {
                            p.name.clone()
                        });
                    }
                }
                let which = if failing.is_empty() {
                    "each point answers alone: the device cannot read them in one request (the model has fewer points than the profile?)".to_string()
                } else {
                    format!("failing point(s): {}", failing.join(", "))
                };
                failures.push(format!(
                    "exception {code:02} ({}) reading function {} address {} count {}; {which}",
                    crate::driver::modbus::exception_meaning(code),
                    req.function.code(),
                    req.address,
                    req.count
                ));
            }
            Err(LinkError::Timeout) => {
                return Check::fail(
                    label,
                    format!(
                        "{target}: no answer within {} ms",
                        MODBUS_TIMEOUT.as_millis()
                    ),
                    hint,
                );
            }
            Err(e) => return Check::fail(label, format!("{target}: no valid answer: {e}"), hint),
        }
    }
    if failures.is_empty() {
        let bound: Vec<&str> = probe
            .points
            .iter()
            .filter(|p| p.bound)
            .map(|p| p.name.as_str())
            .collect();
        Check::pass(
            label,
            format!(
                "{target}: {} read(s) as the bridge makes them, bound points {} answered",
                probe.reads.len(),
                bound.join(", ")
            ),
        )
    } else {
        Check::fail(
            label,
            format!("{target}: {}", failures.join("\n    ")),
            "the device answers but not to these reads: pick the profile for this model (its point count), or a copy with only the points it has",
        )
    }
}

fn within(point: &ReadRequest, req: &ReadRequest) -> bool {
    point.function == req.function
        && req.address <= point.address
        && u32::from(point.address) + u32::from(point.count)
            <= u32::from(req.address) + u32::from(req.count)
}

/// One read of a [`ProbeLink`]: whether the device answered.
type ProbeRead<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), crate::driver::LinkError>> + Send + 'a>,
>;

/// The bridge's read-only Modbus links behind one object, for the checklist.
trait ProbeLink: Send {
    fn read_boxed<'a>(&'a mut self, slave: u8, req: &'a ReadRequest) -> ProbeRead<'a>;
}

impl<L: crate::driver::ModbusLink> ProbeLink for L {
    fn read_boxed<'a>(&'a mut self, slave: u8, req: &'a ReadRequest) -> ProbeRead<'a> {
        Box::pin(async move { self.read(slave, req, MODBUS_TIMEOUT).await.map(|_| ()) })
    }
}

/// The broker accepts a connection; each camera publishes within `camera_wait`.
pub async fn check_mqtt(
    mqtt: &MqttConfig,
    cameras: &[CameraWatch],
    camera_wait: Duration,
) -> Vec<Check> {
    use rumqttc::{AsyncClient, Event, Packet, QoS};
    let label = format!("MQTT broker {}:{} reachable", mqtt.host, mqtt.port);
    let mut options = match crate::driver::mqtt::options(mqtt) {
        Ok(o) => o,
        Err(e) => return vec![Check::fail(label, e.to_string(), "check [mqtt]")],
    };
    // A throw-away session of its own: never take over the running bridge's session.
    options.set_client_id(format!("parking-bridge-doctor-{}", std::process::id()));
    options.set_clean_session(true);
    let (client, mut events) = AsyncClient::new(options, 16);
    let connected = tokio::time::timeout(CHECK_TIMEOUT, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await;
    let hint = "start the broker (or the camera's), check host/port in [mqtt] and the firewall";
    match connected {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return vec![Check::fail(label, e, hint)],
        Err(_) => {
            return vec![Check::fail(
                label,
                format!("no CONNACK within {} s", CHECK_TIMEOUT.as_secs()),
                hint,
            )];
        }
    }
    let mut out = vec![Check::pass(label, "connected")];
    let mut pending: Vec<CameraWatch> = cameras.to_vec();
    let mut subscribed = std::collections::HashSet::new();
    for topic in pending.iter().flat_map(|c| &c.topics) {
        if !subscribed.insert(topic.clone()) {
            continue;
        }
        if let Err(e) = client.subscribe(topic.as_str(), QoS::AtMostOnce).await {
            out.push(Check::fail(
                format!("subscribe {topic}"),
                e.to_string(),
                "check the topic in the profile",
            ));
        }
    }
    let _ = tokio::time::timeout(camera_wait, async {
        while !pending.is_empty() {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    // On a topic several cameras share, the payload names the sender.
                    let sharing = cameras
                        .iter()
                        .filter(|c| c.topics.iter().any(|f| topic_matches(f, &p.topic)))
                        .count();
                    let seen = pending.iter().position(|c| {
                        c.topics.iter().any(|f| topic_matches(f, &p.topic))
                            && (sharing < 2
                                || c.profile.as_ref().and_then(|pr| {
                                    crate::driver::camera::route_value(pr, &p.payload)
                                }) == Some(c.id.clone()))
                    });
                    if let Some(i) = seen {
                        let device = pending.remove(i).device;
                        out.push(Check::pass(
                            format!("camera {device} seen"),
                            format!("published on {}", p.topic),
                        ));
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
    .await;
    for CameraWatch { device, topics, .. } in pending {
        out.push(Check::fail(
            format!("camera {device} seen"),
            format!("nothing on {} within {} s", topics.join(", "), camera_wait.as_secs()),
            "check the camera's MQTT settings (broker address, topic) and that it is powered; drive a car past or use its test trigger",
        ));
    }
    let _ = client.disconnect().await;
    out
}

/// MQTT topic filter matching (`+` one level, `#` the rest).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return !topic.starts_with('$'),
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The platform accepts one heartbeat (`alive`), sent exactly as the running bridge
/// sends it: same client, same envelope, same secret.
pub async fn check_platform(config: &SiteConfig) -> Check {
    use crate::platform::{PlatformClient, Uplink, Verdict};
    let label = "platform reachable and heartbeat accepted";
    let url = config.platform.base_url.trim_end_matches('/').to_string();
    let secret = match config.platform.secret() {
        Ok(s) => s,
        Err(e) => {
            return Check::fail(
                label,
                format!("not tried: {e}"),
                "fix the app secret first (line above)",
            );
        }
    };
    let client = match PlatformClient::new(&config.platform, secret) {
        Ok(c) => c,
        Err(e) => return Check::fail(label, e.to_string(), e.hint()),
    };
    let heartbeat = match Uplink::heartbeat(&config.lot.parking_lot_no, true) {
        Ok(h) => h,
        Err(e) => {
            let e = crate::platform::ClientError::from(e);
            return Check::fail(label, e.to_string(), e.hint());
        }
    };
    let sent = tokio::time::timeout(CHECK_TIMEOUT * 6, client.send(&heartbeat)).await;
    match sent {
        Err(_) => Check::fail(
            label,
            format!("{url}: no answer"),
            "check the network route to the platform",
        ),
        Ok(Err(e)) => Check::fail(label, e.to_string(), e.hint()),
        Ok(Ok(answer)) => {
            let code = answer
                .result_code
                .clone()
                .unwrap_or_else(|| "no result_code".to_string());
            let message = answer.result_msg.clone().unwrap_or_default();
            match answer.verdict {
                Verdict::Done | Verdict::AlreadyDone => {
                    Check::pass(label, format!("{url}: {code}"))
                }
                Verdict::ConfigFault { code, message } => Check::fail(
                    label,
                    format!("{url}: refused: {code} {message}"),
                    "the platform rejects this bridge's settings: check app_id, the secret and parking_lot_no with the platform operator (`parking-bridge platform-test` shows more)",
                ),
                _ => Check::fail(
                    label,
                    format!("{url}: {code} {message}"),
                    "the platform answered but did not accept the heartbeat; retry, or ask the platform operator",
                ),
            }
        }
    }
}

/// NTP synchronisation, from `timedatectl` when systemd runs, else the kernel.
pub fn check_clock_sync() -> Check {
    const LABEL: &str = "system clock synchronised";
    let hint = "enable time sync: timedatectl set-ntp true (systemd-timesyncd or chrony), and check the platform's NTP server is reachable";
    let from_timedatectl = std::process::Command::new("timedatectl")
        .args(["show", "-p", "NTPSynchronized", "--value"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match from_timedatectl.as_deref() {
        Some("yes") => Check::pass(LABEL, "timedatectl: NTPSynchronized=yes"),
        Some(other) => Check::fail(LABEL, format!("timedatectl: NTPSynchronized={other}"), hint),
        None => match super::clock::ntp_synchronised() {
            Some(true) => Check::pass(LABEL, "kernel (adjtimex): synchronised"),
            Some(false) => Check::fail(LABEL, "kernel (adjtimex): not synchronised", hint),
            None => Check::fail(LABEL, "cannot read the clock state", hint),
        },
    }
}

/// The system's local offset equals `[platform] utc_offset`, so that the journal and
/// the reports agree on the time of day.
pub fn check_timezone(configured: &str) -> Check {
    use chrono::Offset;
    const LABEL: &str = "timezone as configured";
    let Some(want) = crate::time::parse_offset(configured) else {
        return Check::fail(
            LABEL,
            format!("invalid utc_offset {configured:?}"),
            "write it like \"+08:00\"",
        );
    };
    let have = chrono::Local::now().offset().fix();
    if have == want {
        Check::pass(LABEL, format!("local offset {have}"))
    } else {
        let hint = if want.local_minus_utc() == 8 * 3600 {
            "timedatectl set-timezone Asia/Shanghai".to_string()
        } else {
            format!("set the system timezone to one at {want} (timedatectl set-timezone …)")
        };
        Check::fail(
            LABEL,
            format!("system local offset {have}, config says {want}"),
            hint,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use tokio_modbus::server::tcp::{Server, accept_tcp_connection};

    #[test]
    fn topic_filters_match_like_the_broker() {
        assert!(topic_matches("cams/+/plate", "cams/c1/plate"));
        assert!(topic_matches("cams/#", "cams/c1/plate"));
        assert!(!topic_matches("cams/+", "cams/c1/plate"));
        assert!(!topic_matches("#", "$SYS/keepalive"));
        assert!(topic_matches("a/b", "a/b"));
    }

    #[test]
    fn secret_file_must_be_private_and_sixteen_chars() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        let chmod = |mode| {
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        std::fs::write(&secret, "0123456789abcdef\n").unwrap();
        chmod(0o640);
        let text = format!(
            "[platform]\nbase_url = \"http://127.0.0.1:1\"\napp_id = \"a\"\napp_secret_file = \"{}\"\n\
             [lot]\nparking_lot_no = \"L\"\ntotal_spaces = 1\n[storage]\ndir = \"{}\"\n",
            secret.display(),
            dir.path().display()
        );
        let config_path = dir.path().join("config.toml");
        let config = SiteConfig::from_toml(&text, &config_path).unwrap();
        if std::env::var(crate::config::platform::SECRET_ENV).is_ok() {
            return; // The environment overrides the file; nothing to test here.
        }
        let c = check_secret(&config, &config_path);
        assert!(c.ok, "{c}");
        assert!(
            !c.to_string().contains("0123456789abcdef"),
            "never print the secret: {c}"
        );
        chmod(0o644);
        let c = check_secret(&config, &config_path);
        assert!(!c.ok && c.detail.contains("readable by everyone"), "{c}");
        chmod(0o600);
        std::fs::write(&secret, "short").unwrap();
        let c = check_secret(&config, &config_path);
        assert!(!c.ok && c.detail.contains("5 bytes"), "{c}");
    }

    #[test]
    fn storage_check_names_missing_dir() {
        let c = check_storage(Path::new("/nonexistent/parking-bridge"));
        assert!(
            !c.ok && c.hint.as_deref().unwrap_or("").contains("install -d"),
            "{c}"
        );
        let dir = tempfile::tempdir().unwrap();
        let c = check_storage(dir.path());
        // This machine's disk may be small; either way the line names the dir.
        assert!(c.detail.contains(&dir.path().display().to_string()), "{c}");
    }

    #[test]
    fn missing_serial_port_is_named() {
        let bus: BusConfig =
            toml::from_str("name = \"rs485-1\"\nport = \"/dev/ttyNOPE9\"").unwrap();
        let c = check_serial_port(&bus);
        assert!(
            !c.ok && c.to_string().contains("/dev/ttyNOPE9") && c.detail.contains("no such device"),
            "{c}"
        );
    }

    /// A slave that answers reads of holding register 0 only.
    #[derive(Clone)]
    struct OneRegister;

    impl tokio_modbus::server::Service for OneRegister {
        type Request = tokio_modbus::Request<'static>;
        type Response = tokio_modbus::Response;
        type Exception = tokio_modbus::ExceptionCode;
        type Future = std::future::Ready<Result<Self::Response, Self::Exception>>;
        fn call(&self, req: Self::Request) -> Self::Future {
            std::future::ready(match req {
                tokio_modbus::Request::ReadHoldingRegisters(0, 1) => {
                    Ok(tokio_modbus::Response::ReadHoldingRegisters(vec![7]))
                }
                _ => Err(tokio_modbus::ExceptionCode::IllegalDataAddress),
            })
        }
    }

    #[tokio::test]
    async fn modbus_probe_passes_on_answer_and_names_exception_and_dead_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::new(listener);
        let serve = tokio::spawn(async move {
            let on_connected = |stream, socket_addr| async move {
                accept_tcp_connection(stream, socket_addr, |_| Ok(Some(OneRegister)))
            };
            let _ = server.serve(&on_connected, |_| {}).await;
        });
        let probe = |function, address| ModbusProbe {
            device: "io-1".into(),
            target: ModbusTarget::Tcp {
                address: addr.to_string(),
            },
            slave: 1,
            reads: vec![ReadRequest {
                function,
                address,
                count: 1,
            }],
            points: vec![ProbePoint {
                name: "status".into(),
                request: ReadRequest {
                    function,
                    address,
                    count: 1,
                },
                bound: true,
            }],
        };
        let ok = check_modbus(&probe(Function::ReadHoldingRegisters, 0)).await;
        assert!(ok.ok, "{ok}");
        let bad = check_modbus(&probe(Function::ReadInputRegisters, 9)).await;
        assert!(
            !bad.ok
                && bad.detail.contains("exception 02 (illegal data address")
                && bad.detail.contains("failing point(s): status (bound)"),
            "{bad}"
        );
        serve.abort();
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let c = check_modbus(&ModbusProbe {
            target: ModbusTarget::Tcp {
                address: dead.to_string(),
            },
            ..probe(Function::ReadCoils, 0)
        })
        .await;
        assert!(!c.ok && c.detail.contains("cannot connect"), "{c}");
    }

    /// A camera-only lane with a Hikvision camera bound by source and a Dahua one by
    /// token; on the `lan`, or both on this PC (loopback sources).
    fn push_site(dir: &Path, listen: &str, lan: bool) -> SiteConfig {
        let (hik, dahua) = if lan {
            ("192.168.1.64", "")
        } else {
            ("127.0.0.2", "source = \"127.0.0.3\"\n")
        };
        let text = format!(
            "[platform]\nbase_url = \"https://x\"\napp_id = \"a\"\n[lot]\nparking_lot_no = \"L\"\ntotal_spaces = 9\n\
             [storage]\ndir = \"{}\"\n[camera_push]\nlisten = \"{listen}\"\n\
             [[lanes]]\nid = \"in\"\ndirection = \"entry\"\nport_no = \"P1\"\nlayout = \"camera_only\"\n\
             [[devices]]\nname = \"hik\"\nprofile = \"hikvision-isapi-anpr\"\nlane = \"in\"\ncamera_id = \"h1\"\nhttp_push = true\nsource = \"{hik}\"\n\
             [[devices]]\nname = \"dahua\"\nprofile = \"dahua-itc-tollgate\"\nlane = \"in\"\ncamera_id = \"d1\"\nhttp_push = true\ntoken = \"AbCdEf0123456789-_\"\n{dahua}",
            dir.display()
        );
        SiteConfig::from_toml(&text, Path::new("s.toml")).unwrap()
    }

    #[test]
    fn push_cameras_are_named_with_their_address_and_whether_they_pushed_this_hour() {
        let dir = tempfile::tempdir().unwrap();
        let config = push_site(dir.path(), "0.0.0.0:8089", true);
        let profiles = crate::driver::load_profiles(&config).unwrap();
        let now = crate::time::Timestamp(1_800_000_000_000);
        let journal = dir.path().join("journal");
        std::fs::create_dir_all(&journal).unwrap();
        let e = crate::event::RawEvent {
            lane: "in".into(),
            device: "hik".into(),
            at: crate::time::Timestamp(now.0 - 60_000),
            kind: crate::event::EventKind::Plate(crate::event::PlateRead::text(
                "浙A12345",
                crate::plate::PlateColor::Blue,
            )),
        };
        std::fs::write(
            journal.join("events.jsonl"),
            serde_json::to_string(&e).unwrap() + "\n",
        )
        .unwrap();
        let checks = check_push_cameras(&config, &profiles, now);
        assert_eq!(checks.len(), 2, "{checks:?}");
        let (hik, dahua) = (&checks[0], &checks[1]);
        assert!(hik.ok, "{hik}");
        assert!(hik.detail.contains("1 reads in the last hour"), "{hik}");
        assert!(
            hik.detail
                .contains("http://BRIDGE:8089/camera/h1/plate, from 192.168.1.64"),
            "{hik}"
        );
        assert!(!dahua.ok, "{dahua}");
        assert!(dahua.detail.contains("/camera/d1/token/<token>"), "{dahua}");
        let shown = format!("{checks:?}");
        assert!(
            !shown.contains("AbCdEf0123456789"),
            "the token is a secret: {shown}"
        );
    }

    #[tokio::test]
    async fn push_listener_on_loopback_is_named_and_one_in_use_is_the_service() {
        let dir = tempfile::tempdir().unwrap();
        let c = check_push_listener(&push_site(dir.path(), "127.0.0.1:0", true))
            .await
            .unwrap();
        assert!(
            !c.ok && c.detail.contains("reachable from this PC only"),
            "{c}"
        );
        // Cameras on this PC (the tests' loopback addresses) may use a loopback listener.
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let listen = format!("127.0.0.1:{port}");
        let c = check_push_listener(&push_site(dir.path(), &listen, false))
            .await
            .unwrap();
        assert!(c.ok && c.detail.contains("in use"), "{c}");
        drop(held);
        let c = check_push_listener(&push_site(dir.path(), "127.0.0.1:0", false))
            .await
            .unwrap();
        assert!(c.ok && c.detail.contains("free"), "{c}");
    }

    #[test]
    fn lanes_check_finds_reads_without_passages_in_the_last_hour_of_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[platform]\nbase_url = \"https://x\"\napp_id = \"a\"\n[lot]\nparking_lot_no = \"L\"\ntotal_spaces = 9\n\
             [storage]\ndir = \"{}\"\n[mqtt]\nhost = \"h\"\n\
             [[lanes]]\nid = \"in\"\ndirection = \"entry\"\nport_no = \"P1\"\n\
             [[lanes]]\nid = \"out\"\ndirection = \"exit\"\nport_no = \"P2\"\n\
             [[devices]]\nname = \"c\"\nprofile = \"vzenith-mqtt\"\nlane = \"in\"\ncamera_id = \"1\"\n\
             [[devices]]\nname = \"io\"\nprofile = \"generic-modbus-tcp-di-gateway\"\nlane = \"in\"\ntcp = \"h:502\"\n\
             roles = {{ loop_a = \"di1\", loop_b = \"di2\" }}\n",
            dir.path().display()
        );
        let config = SiteConfig::from_toml(&text, Path::new("s.toml")).unwrap();
        let now = crate::time::Timestamp(1_800_000_000_000);
        let journal = dir.path().join("journal");
        std::fs::create_dir_all(&journal).unwrap();
        let line = |at: i64, plate: &str| {
            let e = crate::event::RawEvent {
                lane: "in".into(),
                device: "c".into(),
                at: crate::time::Timestamp(at),
                kind: crate::event::EventKind::Plate(crate::event::PlateRead::text(
                    plate,
                    crate::plate::PlateColor::Blue,
                )),
            };
            serde_json::to_string(&e).unwrap()
        };
        // Two reads older than the hour (rotated file), four within it: not yet five.
        let old: Vec<String> = (0..2)
            .map(|i| line(now.0 - 7_200_000 + i, &format!("浙A0000{i}")))
            .collect();
        std::fs::write(journal.join("events.1.jsonl"), old.join("\n")).unwrap();
        // Files older than one reaching back past the hour are not read at all (this
        // one is made up to prove it: real older files hold older events only).
        std::fs::write(
            journal.join("events.2.jsonl"),
            line(now.0 - 1000, "浙A99999"),
        )
        .unwrap();
        let recent: Vec<String> = (0..4)
            .map(|i| line(now.0 - 600_000 + i * 1000, &format!("浙A1000{i}")))
            .collect();
        std::fs::write(journal.join("events.jsonl"), recent.join("\n") + "\n").unwrap();
        let checks = check_lanes(&config, now);
        assert!(checks.iter().all(|c| c.ok), "{checks:?}");
        assert!(
            checks[0].detail.contains("last hour: 4 reads, 0 passages"),
            "{checks:?}"
        );
        assert!(checks[1].detail.contains("manual lane"), "{checks:?}");
        // A fifth read within the hour.
        let mut all = recent.clone();
        all.push(line(now.0 - 1000, "浙A10009"));
        std::fs::write(journal.join("events.jsonl"), all.join("\n") + "\n").unwrap();
        let checks = check_lanes(&config, now);
        assert!(!checks[0].ok);
        assert!(
            checks[0]
                .to_string()
                .contains("5 plate reads without a passage: loops not wired or bound"),
            "{}",
            checks[0]
        );
    }

    #[test]
    fn timezone_mismatch_names_both_offsets() {
        let c = check_timezone("+14:00");
        // No machine here runs at +14:00.
        assert!(!c.ok && c.detail.contains("+14:00"), "{c}");
        assert!(!check_timezone("8").ok);
    }
}
