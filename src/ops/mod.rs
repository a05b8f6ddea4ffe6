//! Operations: what makes the bridge installable and keepable.
//!
//! - [`state`]: [`OpsState`], fed by the pipeline (API documented there), which keeps
//!   [`metrics`] (its Prometheus registry) up and makes a [`status`] view, judged by the
//!   pure [`health_rules`];
//! - [`http`]: status page, `/metrics`, `/healthz`;
//! - [`logging`]: tracing set-up, SIGHUP level reload, plate masking for log fields;
//! - [`clock`]: wall-clock jump and NTP-sync detection;
//! - [`notify`]: systemd `READY=1` and liveness-gated watchdog pings;
//! - [`doctor`]: the installer's checklist (`parking-bridge doctor`);
//! - [`backup`]: a consistent copy of the state database while `run` runs;
//! - [`history`], [`charts`]: the day of figures the status page draws, and its SVG;
//! - [`i18n`]: Simplified Chinese and English for what operators read (logs stay English).
//!
//! `run` calls [`start`] once, inside the runtime, after building its [`OpsState`].

pub mod backup;
pub mod charts;
pub mod clock;
pub mod disk;
pub mod doctor;
pub mod feed;
pub mod health_rules;
pub mod history;
pub mod http;
pub mod i18n;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod state;
pub mod status;

pub use crate::health::Liveness;
pub use feed::{attach, remember_config_path};
pub use state::OpsState;

use crate::config::SiteConfig;
use crate::time::Timestamp;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// The instant the ops modules' tests start from (2023-11-14 22:13:20 UTC).
#[cfg(test)]
const T0: Timestamp = Timestamp(1_700_000_000_000);

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Http(#[from] http::HttpError),
    #[error(transparent)]
    Logging(#[from] logging::LoggingError),
}

/// The background tasks of [`start`]; dropping this stops them.
pub struct OpsTasks {
    /// Where the HTTP endpoint listens (`None`: disabled).
    pub http_addr: Option<SocketAddr>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl OpsTasks {
    /// Adds a task to stop with the others.
    pub fn push(&mut self, task: tokio::task::JoinHandle<()>) {
        self.handles.push(task);
    }
}

impl Drop for OpsTasks {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

/// How often the clock watch samples.
pub const CLOCK_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Starts everything operations runs beside the pipeline: the HTTP endpoint, the
/// clock watch, SIGHUP log reload (re-reading `config_path`) and systemd notification
/// (`READY=1` follows [`OpsState::mark_ready`]). Applies `[logging]` first.
pub async fn start(
    config_path: Option<&Path>,
    config: &SiteConfig,
    ops: &OpsState,
) -> Result<OpsTasks, OpsError> {
    logging::apply_config(&config.logging);
    log_startup(config);
    let mut handles = Vec::new();
    // Reports matter more than the status page: a taken port is an alarm, not a
    // reason to stop the bridge.
    let http_addr = match http::spawn(ops.clone()).await {
        Ok(Some((addr, handle))) => {
            handles.push(handle);
            Some(addr)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "status page, /metrics and /healthz not started; the bridge runs without them");
            ops.alarm(
                &format!("status endpoint not started: {e}"),
                crate::time::Timestamp::now(),
            );
            None
        }
    };
    handles.push(tokio::spawn(watch_clock(ops.clone(), CLOCK_SAMPLE_EVERY)));
    if let Some(path) = config_path {
        handles.push(logging::spawn_sighup_reload(path.to_path_buf())?);
    }
    handles.push(tokio::spawn(notify::run(
        ops.clone(),
        notify::SocketNotifier::from_env(),
        notify::watchdog_interval(),
    )));
    Ok(OpsTasks { http_addr, handles })
}

/// One line at start-up saying what runs. Never the secret.
pub fn log_startup(config: &SiteConfig) {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        lot = %config.lot.parking_lot_no,
        lanes = config.lanes.len(),
        devices = config.devices.len(),
        platform = %config.platform.base_url,
        app_id = %config.platform.app_id,
        storage = %config.storage.dir.display(),
        http = %config.http.listen,
        mask_plates = config.logging.mask_plates,
        "starting"
    );
}

/// Samples the clocks every `every`, feeding [`OpsState::set_clock`]; a jump or a loss
/// of synchronisation raises an alarm.
pub async fn watch_clock(ops: OpsState, every: Duration) {
    let mut watch = clock::ClockWatch::default();
    let mut was_synchronised: Option<bool> = None;
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let wall = Timestamp::now();
        let jump = watch.observe(now, wall);
        let synchronised = clock::ntp_synchronised();
        if let Some(j) = jump {
            ops.alarm(
                &format!(
                    "wall clock jumped by {:+} ms; reports for a while are flagged",
                    j.delta_ms
                ),
                wall,
            );
        }
        // Where sync is required, losing it makes the clock suspect and `set_clock`
        // logs that once; elsewhere the change is only worth a note.
        if synchronised != was_synchronised {
            if !ops.http_config().require_clock_sync {
                match synchronised {
                    Some(false) => tracing::info!(
                        "system clock not synchronised (NTP); not required on this site"
                    ),
                    Some(true) if was_synchronised.is_some() => {
                        tracing::info!("system clock synchronised again")
                    }
                    _ => {}
                }
            }
            was_synchronised = synchronised;
        }
        // A site without a time source (require_clock_sync = false) is not flagged for
        // being unsynchronised; jumps still are.
        let judged = if ops.http_config().require_clock_sync {
            synchronised
        } else {
            None
        };
        ops.set_clock(synchronised, watch.suspicion(now, judged), jump);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn taken_status_port_is_an_alarm_not_a_failure() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = state::tests::config();
        config.http.listen = taken.local_addr().unwrap().to_string();
        let ops = OpsState::new(&config);
        let tasks = start(None, &config, &ops)
            .await
            .expect("the bridge keeps running");
        assert_eq!(tasks.http_addr, None);
        let alarms = ops.view().alarms;
        assert!(
            alarms
                .iter()
                .any(|a| a.text.contains("status endpoint not started")),
            "{alarms:?}"
        );
    }
}
