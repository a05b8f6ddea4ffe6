//! systemd notification: `READY=1` once the pipeline is up, then `WATCHDOG=1` every
//! half watchdog interval — but only while every registered task is making progress
//! (see [`OpsState::liveness`]). A stuck uploader or lane therefore stops the pings
//! and systemd restarts the service (`WatchdogSec=` in the unit).
//!
//! Messages go to `$NOTIFY_SOCKET` (a path or an `@abstract` name); without it (not
//! under systemd) nothing is sent.

use super::state::OpsState;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// Where notifications go.
pub trait Notifier: Send + 'static {
    fn send(&mut self, message: &str);
}

/// The real thing: a datagram to the service manager's socket.
pub struct SocketNotifier {
    target: Option<std::os::unix::net::SocketAddr>,
    socket: Option<UnixDatagram>,
}

impl SocketNotifier {
    /// From `$NOTIFY_SOCKET`; a notifier that sends nothing when it is unset.
    pub fn from_env() -> Self {
        Self::new(std::env::var("NOTIFY_SOCKET").ok().as_deref())
    }

    pub fn new(path: Option<&str>) -> Self {
        use std::os::linux::net::SocketAddrExt;
        let target = path
            .filter(|p| !p.is_empty())
            .and_then(|p| match p.strip_prefix('@') {
                Some(name) => {
                    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()
                }
                None => std::os::unix::net::SocketAddr::from_pathname(p).ok(),
            });
        let socket = target.as_ref().and_then(|_| UnixDatagram::unbound().ok());
        SocketNotifier { target, socket }
    }
}

impl Notifier for SocketNotifier {
    fn send(&mut self, message: &str) {
        if let (Some(socket), Some(target)) = (&self.socket, &self.target)
            && let Err(e) = socket.send_to_addr(message.as_bytes(), target)
        {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
    }
}

/// Half of `$WATCHDOG_USEC` when the service manager expects pings from this process.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        Some(Duration::from_micros(usec / 2))
    } else {
        None
    }
}

/// Waits for [`OpsState::mark_ready`], sends `READY=1`, then pings every `interval`
/// while no task is stale. Runs until the process ends.
pub async fn run(ops: OpsState, mut notifier: impl Notifier, interval: Option<Duration>) {
    ops.wait_ready().await;
    notifier.send("READY=1\nSTATUS=running");
    tracing::info!(watchdog = interval.is_some(), "ready");
    let Some(every) = interval else { return };
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_stale = false;
    loop {
        ticker.tick().await;
        let stale = ops.stale_tasks(Instant::now());
        if stale.is_empty() {
            notifier.send("WATCHDOG=1");
            if was_stale {
                tracing::info!("all tasks making progress again; watchdog pings resumed");
                notifier.send("STATUS=running");
            }
            was_stale = false;
        } else if !was_stale {
            let names = stale.join(", ");
            tracing::error!(tasks = %names, "tasks stuck: withholding watchdog pings");
            notifier.send(&format!("STATUS=stuck: {names}"));
            was_stale = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl Notifier for Recorder {
        fn send(&mut self, message: &str) {
            self.0.lock().unwrap().push(message.to_string());
        }
    }

    impl Recorder {
        fn count(&self, what: &str) -> usize {
            self.0
                .lock()
                .unwrap()
                .iter()
                .filter(|m| m.contains(what))
                .count()
        }
    }

    #[tokio::test]
    async fn ready_waits_for_pipeline_and_stuck_task_stops_pings() {
        let ops = OpsState::new(&crate::ops::state::tests::config());
        let lane = ops.liveness("lane entry-1", Duration::from_millis(150));
        let rec = Recorder::default();
        let task = tokio::spawn(run(
            ops.clone(),
            rec.clone(),
            Some(Duration::from_millis(20)),
        ));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(rec.count("READY=1"), 0, "not ready before mark_ready");
        ops.mark_ready();
        // The lane ticks for a while: pings flow.
        for _ in 0..10 {
            lane.tick();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(rec.count("READY=1"), 1);
        let pings_while_alive = rec.count("WATCHDOG=1");
        assert!(pings_while_alive >= 3, "{:?}", rec.0.lock().unwrap());
        // The lane stops ticking: after its max silence, pings stop.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let after_stuck = rec.count("WATCHDOG=1");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(rec.count("WATCHDOG=1"), after_stuck, "no pings while stuck");
        assert_eq!(rec.count("STATUS=stuck: lane entry-1"), 1);
        // It recovers: pings resume.
        lane.tick();
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(rec.count("WATCHDOG=1") > after_stuck);
        task.abort();
    }

    #[test]
    fn socket_notifier_sends_datagrams_to_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut n = SocketNotifier::new(path.to_str());
        n.send("READY=1");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        // Not under systemd: sending is a no-op.
        SocketNotifier::new(None).send("READY=1");
    }
}
