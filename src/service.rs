//! `parking-bridge run`: assembles the pipeline (drivers → lanes → store → uploader,
//! heartbeat, HTTP endpoint) and runs it until a signal.
//!
//! [`Pipeline`] is the seam: it owns what every part shares (the store, the wake-up
//! for the uploader, device health, delivery status, the platform client). Drivers,
//! lanes and the HTTP endpoint are started from [`run`] with a reference to it.

use crate::config::SiteConfig;
use crate::health::Health;
use crate::platform::{ClientError, PlatformClient};
use crate::store::{Store, StoreError};
use crate::uploader::heartbeat::Heartbeat;
use crate::uploader::{StatusHandle, Uploader, UploaderSettings};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("platform secret: {0}")]
    Secret(String),
    #[error("platform client: {0}")]
    Client(#[from] ClientError),
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
    #[error("task failed: {0}")]
    Task(String),
    #[error("devices: {0}")]
    Devices(String),
    #[error(transparent)]
    Ops(#[from] crate::ops::OpsError),
    #[error("cluster: {0}")]
    Cluster(String),
    #[error(
        "another `parking-bridge run` is already using {0}; stop it first (two would send every report twice)"
    )]
    AlreadyRunning(std::path::PathBuf),
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Holds an exclusive lock on the storage directory for as long as it lives; the
/// kernel releases it when the process dies, however it dies.
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    pub fn acquire(dir: &std::path::Path) -> Result<RunLock, ServiceError> {
        use std::os::fd::AsRawFd;
        let path = dir.join("run.lock");
        let lock_err = |source| ServiceError::Lock {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(lock_err)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(lock_err)?;
        // SAFETY: flock only reads the descriptor, which `file` keeps open for the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            return Err(if err.kind() == std::io::ErrorKind::WouldBlock {
                ServiceError::AlreadyRunning(dir.to_path_buf())
            } else {
                lock_err(err)
            });
        }
        Ok(RunLock { _file: file })
    }
}

/// What the running parts share.
pub struct Pipeline {
    pub config: SiteConfig,
    /// The state database. Sync: call it from `spawn_blocking`.
    pub store: Arc<Store>,
    /// Wakes the uploader; [`Store`] already wakes it after each commit that queues a
    /// report, so writers through the store need not touch it.
    pub notify: Arc<Notify>,
    /// Device link state, written by the lanes, read by the heartbeat and status page.
    pub health: Health,
    /// Delivery state for the status page.
    pub delivery: StatusHandle,
    pub client: Arc<PlatformClient>,
    _lock: RunLock,
}

impl Pipeline {
    /// Opens the store (checking it page by page first) and builds the platform client.
    pub fn open(config: SiteConfig) -> Result<Pipeline, ServiceError> {
        let lock = RunLock::acquire(&config.storage.dir)?;
        let store = Store::open_site(&config)?;
        store.check_integrity()?;
        let secret = config
            .platform
            .secret()
            .map_err(|e| ServiceError::Secret(e.to_string()))?;
        let client = PlatformClient::new(&config.platform, secret)?;
        let notify = store.notifier();
        Ok(Pipeline {
            config,
            store: Arc::new(store),
            notify,
            health: Health::new(),
            delivery: StatusHandle::default(),
            client: Arc::new(client),
            _lock: lock,
        })
    }

    pub fn uploader_settings(&self) -> UploaderSettings {
        let mut s = UploaderSettings::new(
            &self.config.lot.parking_lot_no,
            self.config.platform.offset(),
        );
        s.max_in_flight = self.config.storage.max_in_flight;
        s.backoff.refused_tries = self.config.platform.refused_tries.max(1);
        s.backoff.refused_first_ms = i64::try_from(self.config.platform.refused_first_retry_secs)
            .unwrap_or(86_400)
            .saturating_mul(1000);
        s
    }

    pub fn spawn_uploader(&self) -> JoinHandle<()> {
        tokio::spawn(self.uploader().run())
    }

    fn uploader(&self) -> Uploader<PlatformClient> {
        Uploader::new(
            self.store.clone(),
            self.client.clone(),
            self.uploader_settings(),
            self.delivery.clone(),
        )
    }

    pub fn spawn_heartbeat(&self) -> JoinHandle<()> {
        let beat = Heartbeat {
            deliver: self.client.clone(),
            parking_lot_no: self.config.lot.parking_lot_no.clone(),
            every: Duration::from_secs(self.config.platform.heartbeat_secs.max(1)),
            health: self.health.clone(),
            lost_after: Duration::from_secs(self.config.storage.lane_lost_after_secs),
            status: self.delivery.clone(),
            retry_after_failure: crate::uploader::heartbeat::RETRY_AFTER_FAILURE,
        };
        tokio::spawn(beat.run())
    }
}

/// How long a stopping bridge waits for the drivers and the lane tasks to finish
/// what they hold (a passage waiting for its late plate read) before it gives up.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The running pipeline: drivers → lanes → state database → uploader, plus the
/// heartbeat and the operations endpoint. `run` and `demo` both start one.
pub struct Bridge {
    pipeline: Pipeline,
    /// Uploader and heartbeat: stopped by abort (their state is all in the store).
    background: Vec<JoinHandle<()>>,
    drivers: crate::driver::DriverSet,
    lanes: JoinHandle<()>,
    stop_drivers: tokio::sync::watch::Sender<bool>,
    ops: Option<(crate::ops::OpsState, crate::ops::OpsTasks)>,
    /// This node's part of a multi-PC lot (`[cluster]`).
    cluster: Option<crate::cluster::ClusterNode>,
}

impl Bridge {
    /// Opens the state database, starts every part, and returns once the drivers are
    /// polling. Errors here are configuration or start-up faults, named plainly.
    pub async fn start(config: SiteConfig) -> Result<Bridge, ServiceError> {
        let profiles = crate::driver::load_profiles(&config)
            .map_err(|e| ServiceError::Devices(e.to_string()))?;
        let pipeline = tokio::task::spawn_blocking(move || Pipeline::open(config))
            .await
            .map_err(|e| ServiceError::Task(e.to_string()))??;
        let occupancy = pipeline.store.occupancy()?;
        let pending = pipeline.store.pending_count()?;
        tracing::info!(
            db = %pipeline.store.path().display(),
            lot = %pipeline.config.lot.parking_lot_no,
            lanes = pipeline.config.lanes.len(),
            devices = pipeline.config.devices.len(),
            occupied = occupancy.occupied,
            total = occupancy.total,
            pending,
            "parking-bridge started"
        );
        // Operations first, so the status page shows the lanes coming up and the
        // watchdog knows every task it must see progress from.
        let ops = crate::ops::attach(
            &pipeline.config,
            pipeline.health.clone(),
            pipeline.store.clone(),
            pipeline.delivery.clone(),
        )
        .await?;
        // The uploader's loop turns at least every poll period (≤ 1 s), however idle.
        let uploader = pipeline
            .uploader()
            .with_liveness(ops.0.liveness("uploader", Duration::from_secs(120)));
        // A lane node of a multi-PC lot reports nothing itself: the lot node does.
        let lane_node = pipeline
            .config
            .cluster
            .as_ref()
            .is_some_and(|c| c.role == crate::config::cluster::NodeRole::Lane);
        let mut background = if lane_node {
            Vec::new()
        } else {
            vec![tokio::spawn(uploader.run()), pipeline.spawn_heartbeat()]
        };

        let (events_tx, events_rx) = tokio::sync::mpsc::channel(EVENT_QUEUE);
        let (stop_drivers, stop_rx) = tokio::sync::watch::channel(false);
        let (events_tx_feeds, stop_feeds) = (events_tx.clone(), stop_rx.clone());
        let drivers = crate::driver::spawn_all(&pipeline.config, &profiles, events_tx, stop_rx)
            .await
            .map_err(|e| ServiceError::Devices(e.to_string()))?;
        // Lot-wide feeds (occupancy topic, pay system's fees): subscribe-only MQTT,
        // reporting raw events into the lane task's channel like the drivers.
        let feeds = crate::driver::feeds::spawn(&pipeline.config, events_tx_feeds, stop_feeds)
            .map_err(|e| ServiceError::Devices(e.to_string()))?;
        background.extend(feeds);
        // A multi-PC lot: this node's link, and where its passages go. The pay system's
        // payments reach the lot node's lane core as events; the ingest gets each of its
        // own lanes' passages with their fees (see `cluster::ingest`).
        let cluster = crate::cluster::start(
            &pipeline.config,
            pipeline.store.clone(),
            pipeline.health.clone(),
            None,
        )
        .map_err(|e| ServiceError::Cluster(e.to_string()))?;
        if let Some(c) = &cluster {
            let view = c.view.clone();
            ops.0.set_cluster(Arc::new(move || view.status()));
        }
        // The lane task ends when every driver and feed has stopped (the channel
        // closes), after settling what it still holds. Its loop turns at least once a
        // minute (its expiry check).
        let mut runtime = crate::lane_task::LaneRuntime::new(
            &pipeline.config,
            pipeline.store.clone(),
            pipeline.health.clone(),
        )
        .with_storage_journal(&pipeline.config.storage)
        .with_liveness(ops.0.liveness("lanes", Duration::from_secs(180)))
        .with_ops(ops.0.clone());
        if let Some(c) = &cluster {
            runtime = runtime.with_passage_sink(c.sink.clone());
        }
        let lanes = tokio::spawn(runtime.run(events_rx));
        ops.0.mark_ready();
        Ok(Bridge {
            pipeline,
            background,
            drivers,
            lanes,
            stop_drivers,
            ops: Some(ops),
            cluster,
        })
    }

    /// Where the status page, `/metrics` and `/healthz` listen (`None`: disabled or
    /// not started).
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.ops.as_ref().and_then(|(_, tasks)| tasks.http_addr)
    }

    /// The state database (sync: use it from `spawn_blocking`).
    pub fn store(&self) -> Arc<Store> {
        self.pipeline.store.clone()
    }

    /// Delivery status: last heartbeat, failures, the latest alarm.
    pub fn delivery(&self) -> crate::uploader::DeliveryStatus {
        self.pipeline.delivery.get()
    }

    /// What this node knows of its multi-PC lot (`None`: not a cluster node).
    pub fn cluster_view(&self) -> Option<crate::cluster::view::ClusterView> {
        self.cluster.as_ref().map(|c| c.view.clone())
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Stops in order: drivers, then the lanes (which settle held passages into the
    /// store), then delivery. Whatever is still unsent stays in the outbox for the
    /// next start.
    pub async fn stop(mut self) {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        let _ = self.stop_drivers.send(true);
        let drivers = std::mem::take(&mut self.drivers);
        if tokio::time::timeout(STOP_GRACE, drivers.join())
            .await
            .is_err()
        {
            tracing::warn!("drivers did not stop in time");
        }
        if tokio::time::timeout(STOP_GRACE, &mut self.lanes)
            .await
            .is_err()
        {
            tracing::warn!(
                "lane task did not settle in time; held passages are replayed from the journal only"
            );
            self.lanes.abort();
        }
        if let Some(c) = self.cluster.take() {
            c.stop().await;
        }
        for t in &self.background {
            t.abort();
        }
        self.ops.take();
        tracing::info!("parking-bridge stopped");
    }
}

/// Raw events queued between the drivers and the lane task: a burst from every lane
/// at once fits many times over.
const EVENT_QUEUE: usize = 4096;

/// Runs the service until SIGINT or SIGTERM. Stopping at any moment is safe: all
/// state is in the store, and an unanswered report is sent again at the next start.
pub async fn run(config: SiteConfig) -> Result<(), ServiceError> {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers first: a stop requested while the bridge starts (systemd, an operator)
    // then waits for the start and stops cleanly, instead of killing it half-started.
    let mut term = signal(SignalKind::terminate()).map_err(ServiceError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServiceError::Signal)?;
    let bridge = Bridge::start(config).await?;
    tokio::select! {
        _ = int.recv() => tracing::info!("interrupted; stopping"),
        _ = term.recv() => tracing::info!("terminated; stopping"),
    }
    bridge.stop().await;
    Ok(())
}
