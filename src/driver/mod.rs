//! Device drivers: Modbus RTU/TCP pollers and MQTT camera subscribers. They emit
//! [`crate::event::RawEvent`] facts only and have no write path: the Modbus side can
//! only build the four read functions ([`modbus::Function`]), the MQTT side only
//! subscribes.
//!
//! Entry points for the service: [`load_profiles`] then [`spawn_all`].

pub mod camera;
pub mod feeds;
pub mod http_push;
pub mod metrics;
pub mod modbus;
pub mod mqtt;
pub mod poller;
pub mod ports;
pub mod profile;
pub mod rtu;
pub mod tcp;

pub use profile::{ProfileError, ProfileLibrary, load_profiles};

use crate::config::{Attachment, SiteConfig};
use crate::event::{EventKind, RawEvent};
use crate::time::Timestamp;
use modbus::{ReadData, ReadRequest};
use poller::{BusSpec, PolledDevice, run_bus};
use profile::CameraProfile;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Why one read got no data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Nothing came back in time.
    #[error("no answer in time")]
    Timeout,
    /// Bytes came back but no valid answer (CRC error, garbage, protocol mismatch).
    #[error("corrupt answer")]
    Corrupt,
    /// The device answered with a Modbus exception code: alive, but the profile or
    /// wiring is wrong.
    #[error("modbus exception {0}")]
    Exception(u8),
    /// The port or connection itself failed: reopen with backoff.
    #[error("transport: {0}")]
    Transport(String),
}

impl LinkError {
    /// Whether the transport must be reopened.
    pub fn is_transport(&self) -> bool {
        matches!(self, LinkError::Transport(_))
    }
}

/// Facts waiting for the lane task beyond which a plate read goes on without its
/// picture. The queue holds thousands of facts; were each a camera picture (1–12 MB),
/// a lane task held up by a slow disk would make the bridge grow by gigabytes. The read
/// is what makes the passage; the picture is shed (counted, logged, `image_len` kept).
pub const PICTURES_QUEUED_MAX: usize = 64;

/// Sends one fact of `device` (on `lane`) to the lane task. False when the receiver is
/// gone: the service is stopping.
pub(crate) async fn emit(
    tx: &mpsc::Sender<RawEvent>,
    lane: &str,
    device: &str,
    at: Timestamp,
    mut kind: EventKind,
) -> bool {
    let queued = tx.max_capacity() - tx.capacity();
    if let EventKind::Plate(read) = &mut kind
        && queued >= PICTURES_QUEUED_MAX
        && let Some(picture) = read.image.take()
    {
        metrics::PICTURES_SHED.with_label_values(&[device]).inc();
        tracing::warn!(
            device,
            queued,
            bytes = picture.len(),
            "picture dropped: the lane task is behind; the plate read goes on without it"
        );
    }
    let ev = RawEvent {
        lane: lane.to_string(),
        device: device.to_string(),
        at,
        kind,
    };
    tx.send(ev).await.is_ok()
}

/// A device's link state as last reported: up, down, or not known yet. Each change is
/// reported once, so a device that stays down does not repeat its "link down" fact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkState(Option<bool>);

impl LinkState {
    /// Records `up`; `Some(up)` when that is a change to report.
    pub fn set(&mut self, up: bool) -> Option<bool> {
        if self.0 == Some(up) {
            return None;
        }
        self.0 = Some(up);
        Some(up)
    }

    pub fn get(&self) -> Option<bool> {
        self.0
    }
}

/// A read-only Modbus master: the only operation is a read (function 1–4).
pub trait ModbusLink: Send {
    fn read(
        &mut self,
        slave: u8,
        req: &ReadRequest,
        timeout: Duration,
    ) -> impl Future<Output = Result<ReadData, LinkError>> + Send;

    /// (CRC errors, garbage bytes) seen since the last call.
    fn take_counts(&mut self) -> (u64, u64);
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("driver setup: {0}")]
    Setup(String),
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

/// Handles to the running driver tasks.
#[derive(Debug, Default)]
pub struct DriverSet {
    tasks: Vec<(String, JoinHandle<()>)>,
    /// Where the camera push receiver listens, when there is one.
    pub push_addr: Option<std::net::SocketAddr>,
}

impl DriverSet {
    /// Names of the running tasks (`bus:NAME`, `tcp:ADDRESS`, `mqtt`).
    pub fn names(&self) -> Vec<&str> {
        self.tasks.iter().map(|(n, _)| n.as_str()).collect()
    }
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
    /// Waits for every task to end (after shutdown was signalled).
    pub async fn join(self) {
        for (name, task) in self.tasks {
            if let Err(e) = task.await
                && e.is_panic()
            {
                tracing::error!(task = %name, "driver task panicked");
            }
        }
    }
    /// Stops every task at once (tests, emergencies); prefer signalling shutdown.
    pub fn abort(&self) {
        for (_, t) in &self.tasks {
            t.abort();
        }
    }
}

/// The section of device `d`'s profile that its driver needs (`what`: "Modbus",
/// "camera"), or a setup error naming the device and the profile.
fn profile_part<T: Clone>(
    profiles: &ProfileLibrary,
    d: &crate::config::DeviceConfig,
    what: &str,
    part: impl Fn(&profile::Profile) -> &Option<T>,
) -> Result<T, DriverError> {
    profiles
        .get(&d.profile)
        .and_then(|p| part(p).clone())
        .ok_or_else(|| {
            DriverError::Setup(format!(
                "device {}: no {what} profile {:?}",
                d.name, d.profile
            ))
        })
}

/// The configured cameras that arrive by HTTP push (`http_push = true`) or by MQTT
/// (`false`), each with its camera id and its profile's camera section.
fn cameras_of<'a>(
    config: &'a SiteConfig,
    profiles: &ProfileLibrary,
    http_push: bool,
) -> Result<Vec<(&'a crate::config::DeviceConfig, &'a str, CameraProfile)>, DriverError> {
    let mut out = Vec::new();
    for d in config.devices.iter().filter(|d| d.http_push == http_push) {
        let Some(Attachment::Camera { id }) = d.attachment() else {
            continue;
        };
        let mut profile = profile_part(profiles, d, "camera", |p| &p.camera)?;
        if let Some(t) = d.link_timeout_ms {
            profile.link_timeout_ms = t;
        }
        out.push((d, id, profile));
    }
    Ok(out)
}

/// Starts one task per RS-485 bus, one per Modbus TCP endpoint and one MQTT task.
/// Tasks run until `shutdown` becomes true (or its sender is dropped).
pub async fn spawn_all(
    config: &SiteConfig,
    profiles: &ProfileLibrary,
    tx: mpsc::Sender<RawEvent>,
    shutdown: watch::Receiver<bool>,
) -> Result<DriverSet, DriverError> {
    let mut set = DriverSet::default();
    let modbus_profile =
        |d: &crate::config::DeviceConfig| profile_part(profiles, d, "Modbus", |p| &p.modbus);
    for bus in &config.buses {
        let mut devices = Vec::new();
        let mut frame_gap = rtu::silent_interval(bus.baud);
        for d in &config.devices {
            if d.attachment() != Some(Attachment::Rtu { bus: &bus.name }) {
                continue;
            }
            let p = modbus_profile(d)?;
            frame_gap = frame_gap.max(Duration::from_millis(p.inter_frame_delay_ms));
            devices.push(PolledDevice::new(d, &p));
        }
        if devices.is_empty() {
            continue;
        }
        if let Some(ms) = bus.inter_frame_delay_ms {
            frame_gap = frame_gap.max(Duration::from_millis(ms));
        }
        let spec = BusSpec {
            name: bus.name.clone(),
            devices,
            inter_frame: frame_gap,
            port_path: Some(PathBuf::from(&bus.port)),
        };
        let bus_cfg = bus.clone();
        let open = move || {
            let bus_cfg = bus_cfg.clone();
            async move { rtu::open_serial(&bus_cfg).map(rtu::RtuLink::new) }
        };
        let handle = tokio::spawn(run_bus(spec, open, tx.clone(), shutdown.clone()));
        set.tasks.push((format!("bus:{}", bus.name), handle));
    }
    // One task per TCP endpoint: devices behind one gateway share its connection.
    let mut endpoints: Vec<(String, Vec<PolledDevice>)> = Vec::new();
    for d in &config.devices {
        let Some(Attachment::Tcp { address }) = d.attachment() else {
            continue;
        };
        let p = modbus_profile(d)?;
        let polled = PolledDevice::new(d, &p);
        match endpoints.iter_mut().find(|(a, _)| a == address) {
            Some((_, list)) => list.push(polled),
            None => endpoints.push((address.to_string(), vec![polled])),
        }
    }
    for (address, devices) in endpoints {
        let spec = BusSpec {
            name: format!("tcp:{address}"),
            devices,
            inter_frame: Duration::ZERO,
            port_path: None,
        };
        let addr = address.clone();
        let open = move || {
            let addr = addr.clone();
            async move { tcp::TcpLink::connect(&addr, Duration::from_secs(2)).await }
        };
        let handle = tokio::spawn(run_bus(spec, open, tx.clone(), shutdown.clone()));
        set.tasks.push((format!("tcp:{address}"), handle));
    }
    if let Some(handle) = mqtt::spawn(config, profiles, tx.clone(), shutdown.clone())? {
        set.tasks.push(("mqtt".to_string(), handle));
    }
    if let Some((addr, handle)) =
        http_push::spawn(config, profiles, tx.clone(), shutdown.clone()).await?
    {
        set.push_addr = Some(addr);
        set.tasks.push(("camera_push".to_string(), handle));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::PlateRead;
    use crate::plate::PlateColor;
    use std::sync::Arc;

    fn read_with_picture() -> EventKind {
        let mut read = PlateRead::text("闽A12345", PlateColor::Blue);
        read.image = Some(Arc::new(vec![0xFF; 1000]));
        read.image_len = Some(1000);
        EventKind::Plate(read)
    }

    fn picture_of(ev: RawEvent) -> Option<Arc<Vec<u8>>> {
        match ev.kind {
            EventKind::Plate(read) => read.image,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_read_keeps_its_picture_until_the_lane_task_falls_behind_then_only_the_picture_goes()
    {
        let (tx, mut rx) = mpsc::channel(1024);
        let shed = || {
            metrics::PICTURES_SHED
                .with_label_values(&["cam-shed"])
                .get()
        };
        let before = shed();
        // Below the limit: the picture travels.
        for _ in 0..PICTURES_QUEUED_MAX - 1 {
            assert!(
                emit(
                    &tx,
                    "entry-1",
                    "io",
                    Timestamp(1),
                    EventKind::Link { up: true }
                )
                .await
            );
        }
        assert!(
            emit(
                &tx,
                "entry-1",
                "cam-shed",
                Timestamp(2),
                read_with_picture()
            )
            .await
        );
        assert_eq!(shed(), before);
        // Now PICTURES_QUEUED_MAX facts wait: the next read goes on, its picture does not.
        assert!(
            emit(
                &tx,
                "entry-1",
                "cam-shed",
                Timestamp(3),
                read_with_picture()
            )
            .await
        );
        assert_eq!(shed(), before + 1);
        let mut got = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            got.push(ev);
        }
        assert_eq!(got.len(), PICTURES_QUEUED_MAX + 1, "every fact arrives");
        let last = got.pop().unwrap();
        let kept = got.pop().unwrap();
        assert_eq!(picture_of(kept).map(|p| p.len()), Some(1000));
        match last.kind {
            EventKind::Plate(read) => {
                assert_eq!(read.image, None);
                assert_eq!(
                    read.image_len,
                    Some(1000),
                    "the journal still says it had one"
                );
                assert_eq!(read.text.as_deref(), Some("闽A12345"));
            }
            other => panic!("{other:?}"),
        }
    }
}
