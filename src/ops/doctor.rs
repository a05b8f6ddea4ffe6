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

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.ok { "✓" } else { "✗" };
        write!(f, "{mark} {}", self.label)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n    hint: {hint}")?;
        }
        Ok(())
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
                    "put the 16-character secret in {0}: chown root:parking-bridge {0} && chmod 0640 {0}",
                    path.display()
                ),
                SecretError::WorldReadable { path, .. } => {
                    format!("chown root:parking-bridge {0} && chmod 0640 {0}", path.display())
                }
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
                        "move it to app_secret_file, or: chown root:parking-bridge {0} && chmod 0640 {0}",
                        config_path.display()
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

/// Which Modbus read a probe makes: function codes 1–4 only, by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeRead {
    Coils,
    DiscreteInputs,
    HoldingRegisters,
    InputRegisters,
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

/// One read that proves a slave answers.
#[derive(Debug, Clone)]
pub struct ModbusProbe {
    pub device: String,
    pub target: ModbusTarget,
    pub slave: u8,
    pub read: ProbeRead,
    pub address: u16,
}

/// One probe per Modbus device: its profile's first point (a read the bridge makes
/// anyway).
pub fn modbus_probes(config: &SiteConfig, profiles: &ProfileLibrary) -> Vec<ModbusProbe> {
    let mut out = Vec::new();
    for d in &config.devices {
        let Some(modbus) = profiles.get(&d.profile).and_then(|p| p.modbus.as_ref()) else {
            continue;
        };
        let Some(point) = modbus.points.first() else {
            continue;
        };
        let read = match point.function {
            1 => ProbeRead::Coils,
            2 => ProbeRead::DiscreteInputs,
            3 => ProbeRead::HoldingRegisters,
            4 => ProbeRead::InputRegisters,
            // Profiles cannot hold other codes (validated when loaded).
            _ => continue,
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
        out.push(ModbusProbe {
            device: d.name.clone(),
            target,
            slave: d.slave.unwrap_or(modbus.default_slave),
            read,
            address: point.address,
        });
    }
    out
}

/// The topics each camera publishes on (result, quick, heartbeat), by device name.
pub fn camera_topics(config: &SiteConfig, profiles: &ProfileLibrary) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for d in &config.devices {
        let Some(Attachment::Camera { id }) = d.attachment() else {
            continue;
        };
        let Some(camera) = profiles.get(&d.profile).and_then(|p| p.camera.as_ref()) else {
            continue;
        };
        let topics = crate::driver::mqtt::camera_topics(camera, id, d.topic.as_deref())
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        out.push((d.name.clone(), topics));
    }
    out
}

/// Reads one item from the slave.
pub async fn check_modbus(probe: &ModbusProbe) -> Check {
    use tokio_modbus::client::Reader;
    let label = format!(
        "modbus device {} (slave {}) answers",
        probe.device, probe.slave
    );
    let slave = tokio_modbus::Slave(probe.slave);
    let connect = async {
        match &probe.target {
            ModbusTarget::Tcp { address } => {
                let addr = tokio::net::lookup_host(address.as_str())
                    .await?
                    .next()
                    .ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "address resolves to nothing",
                        )
                    })?;
                tokio_modbus::client::tcp::connect_slave(addr, slave).await
            }
            ModbusTarget::Rtu { bus } => {
                let stream = crate::driver::rtu::open_serial(bus)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                Ok(tokio_modbus::client::rtu::attach_slave(stream, slave))
            }
        }
    };
    let read = async {
        let mut ctx = connect.await.map_err(|e| format!("cannot connect: {e}"))?;
        let a = probe.address;
        let answer = match probe.read {
            ProbeRead::Coils => ctx.read_coils(a, 1).await.map(|r| r.map(|_| ())),
            ProbeRead::DiscreteInputs => {
                ctx.read_discrete_inputs(a, 1).await.map(|r| r.map(|_| ()))
            }
            ProbeRead::HoldingRegisters => ctx
                .read_holding_registers(a, 1)
                .await
                .map(|r| r.map(|_| ())),
            ProbeRead::InputRegisters => {
                ctx.read_input_registers(a, 1).await.map(|r| r.map(|_| ()))
            }
        };
        match answer {
            Ok(Ok(())) => Ok(()),
            Ok(Err(exception)) => Err(format!(
                "device exception {exception:?} reading {:?} {a}",
                probe.read
            )),
            Err(e) => Err(format!("no valid answer: {e}")),
        }
    };
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
    match tokio::time::timeout(MODBUS_TIMEOUT, read).await {
        Ok(Ok(())) => Check::pass(
            label,
            format!("{target}: {:?} {} read", probe.read, probe.address),
        ),
        Ok(Err(e)) if e.starts_with("device exception") => Check::fail(
            label,
            format!("{target}: {e}"),
            "the device answers but not at that address: check its profile",
        ),
        Ok(Err(e)) => Check::fail(label, format!("{target}: {e}"), hint),
        Err(_) => Check::fail(
            label,
            format!("{target}: no answer within {} s", MODBUS_TIMEOUT.as_secs()),
            hint,
        ),
    }
}

/// The broker accepts a connection; each camera publishes within `camera_wait`.
pub async fn check_mqtt(
    mqtt: &MqttConfig,
    cameras: &[(String, Vec<String>)],
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
    let mut pending: Vec<(String, Vec<String>)> = cameras.to_vec();
    for topic in pending.iter().flat_map(|(_, topics)| topics) {
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
                    let seen = pending.iter().position(|(_, filters)| {
                        filters.iter().any(|f| topic_matches(f, &p.topic))
                    });
                    if let Some(i) = seen {
                        let (device, _) = pending.remove(i);
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
    for (device, topics) in pending {
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
    let heartbeat = Uplink::heartbeat(&config.lot.parking_lot_no, true);
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
        std::fs::write(&secret, "0123456789abcdef\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
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
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = check_secret(&config, &config_path);
        assert!(!c.ok && c.detail.contains("readable by everyone"), "{c}");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
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
        let probe = |read, address| ModbusProbe {
            device: "io-1".into(),
            target: ModbusTarget::Tcp {
                address: addr.to_string(),
            },
            slave: 1,
            read,
            address,
        };
        let ok = check_modbus(&probe(ProbeRead::HoldingRegisters, 0)).await;
        assert!(ok.ok, "{ok}");
        let bad = check_modbus(&probe(ProbeRead::InputRegisters, 9)).await;
        assert!(!bad.ok && bad.detail.contains("exception"), "{bad}");
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
            ..probe(ProbeRead::Coils, 0)
        })
        .await;
        assert!(!c.ok && c.detail.contains("cannot connect"), "{c}");
    }

    #[test]
    fn timezone_mismatch_names_both_offsets() {
        let c = check_timezone("+14:00");
        // No machine here runs at +14:00.
        assert!(!c.ok && c.detail.contains("+14:00"), "{c}");
        assert!(!check_timezone("8").ok);
    }
}
