//! The demo's USB-RS485 adapter. The simulated I/O module serves one pty pair; the
//! bridge opens the slave side of a second pair through a stable symlink (as udev's
//! `/dev/serial/by-id/…` names an adapter), and a relay copies the bytes between the
//! two. That indirection lets the soak unplug the adapter (the relay stops, the
//! bridge's descriptor hangs up, the link disappears), plug it back (new pairs behind
//! the same link), and make the line noisy (a byte flipped in a share of the module's
//! answers), none of which a single pty pair can do.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_serial::SerialStream;

use super::devices::SimModbus;

/// Opens a pty pair with both ends usable by this process: the slave's exclusive
/// open and lock (set by `SerialStream::pair`) are cleared so the bridge can open it
/// again by its path, exactly once and exclusively, as it opens an adapter.
fn pty_pair() -> std::io::Result<(SerialStream, SerialStream, String)> {
    use tokio_serial::SerialPort;
    let (master, mut slave) = SerialStream::pair().map_err(std::io::Error::other)?;
    let path = slave
        .name()
        .ok_or_else(|| std::io::Error::other("the pty has no name"))?;
    slave.set_exclusive(false).map_err(std::io::Error::other)?;
    // SAFETY: flock on a descriptor `slave` owns and keeps open for the call.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&slave), libc::LOCK_UN) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((master, slave, path))
}

/// One plugged-in adapter: the module's server, the relay, and the slave end held
/// open so the bridge closing its own descriptor (a restart) is no hang-up.
struct Plugged {
    server: JoinHandle<std::io::Result<()>>,
    relay: JoinHandle<()>,
    _held: SerialStream,
}

impl Drop for Plugged {
    fn drop(&mut self) {
        self.server.abort();
        self.relay.abort();
    }
}

/// The simulated adapter of one lane's RS-485 bus.
pub struct SerialLink {
    modbus: SimModbus,
    link: PathBuf,
    /// Share of the module's answers that get one byte flipped (0.0: a clean line).
    noise: f64,
    rng: StdRng,
    plugged: Option<Plugged>,
    /// Answers with a byte flipped so far, over every plug-in.
    pub corrupted: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl SerialLink {
    /// Plugs the adapter in: `link` (a path in the demo directory) names it.
    pub fn plug_in(
        modbus: SimModbus,
        link: &Path,
        noise: f64,
        seed: u64,
    ) -> std::io::Result<SerialLink> {
        let mut s = SerialLink {
            modbus,
            link: link.to_path_buf(),
            noise,
            rng: StdRng::seed_from_u64(seed),
            plugged: None,
            corrupted: Default::default(),
        };
        s.replug()?;
        Ok(s)
    }

    /// The path the bridge opens.
    pub fn path(&self) -> &Path {
        &self.link
    }

    /// Pulls the adapter: the bridge's descriptor hangs up and the path disappears.
    pub fn unplug(&mut self) {
        self.plugged = None;
        let _ = std::fs::remove_file(&self.link);
    }

    /// Plugs a (new) adapter in behind the same path.
    pub fn replug(&mut self) -> std::io::Result<()> {
        self.unplug();
        let (module_master, module_slave, _) = pty_pair()?;
        let (bridge_master, bridge_slave, bridge_path) = pty_pair()?;
        let server = self.modbus.serve_rtu(module_master);
        let relay = tokio::spawn(relay(
            module_slave,
            bridge_master,
            self.noise,
            self.rng.random(),
            self.corrupted.clone(),
        ));
        self.plugged = Some(Plugged {
            server,
            relay,
            _held: bridge_slave,
        });
        // A new link in place of the old, atomically, as udev renames it.
        let tmp = self.link.with_extension("new");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&bridge_path, &tmp)?;
        std::fs::rename(&tmp, &self.link)
    }
}

impl Drop for SerialLink {
    fn drop(&mut self) {
        self.unplug();
    }
}

/// Copies requests to the module and answers back, flipping one byte of an answer
/// chunk with probability `noise`, until either side fails.
async fn relay(
    module: SerialStream,
    bridge: SerialStream,
    noise: f64,
    seed: u64,
    corrupted: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    let (mut module_rx, mut module_tx) = tokio::io::split(module);
    let (mut bridge_rx, mut bridge_tx) = tokio::io::split(bridge);
    let requests = async {
        let _ = tokio::io::copy(&mut bridge_rx, &mut module_tx).await;
    };
    let answers = async {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut buf = [0u8; 512];
        loop {
            let n = match module_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if noise > 0.0 && rng.random_bool(noise.min(1.0)) {
                let at = rng.random_range(0..n);
                buf[at] ^= 1 << rng.random_range(0..8);
                corrupted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if bridge_tx.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = requests => {}
        () = answers => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_modbus::prelude::*;

    async fn read_inputs(path: &Path) -> Result<Vec<bool>, String> {
        let builder = tokio_serial::new(path.to_string_lossy(), 9600);
        let port = SerialStream::open(&builder).map_err(|e| e.to_string())?;
        let mut ctx = tokio_modbus::client::rtu::attach_slave(port, Slave(1));
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            ctx.read_discrete_inputs(0, 4),
        )
        .await
        .map_err(|_| "timeout".to_string())?;
        match r {
            Ok(Ok(v)) => Ok(v),
            other => Err(format!("{other:?}")),
        }
    }

    #[tokio::test]
    async fn the_module_answers_through_the_link_and_again_after_a_replug() {
        let dir = tempfile::tempdir().unwrap();
        let modbus = SimModbus::new();
        modbus.add_slave(1);
        modbus.set_input(1, 2, true);
        let link = dir.path().join("ttyRS485");
        let mut adapter = SerialLink::plug_in(modbus, &link, 0.0, 1).unwrap();
        assert_eq!(
            read_inputs(&link).await.unwrap(),
            vec![false, false, true, false]
        );
        adapter.unplug();
        assert!(!link.exists(), "an unplugged adapter has no device node");
        adapter.replug().unwrap();
        assert_eq!(
            read_inputs(&link).await.unwrap(),
            vec![false, false, true, false]
        );
    }

    #[tokio::test]
    async fn a_noisy_line_corrupts_answers_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let modbus = SimModbus::new();
        modbus.add_slave(1);
        let link = dir.path().join("ttyRS485");
        let adapter = SerialLink::plug_in(modbus, &link, 1.0, 7).unwrap();
        assert!(
            read_inputs(&link).await.is_err(),
            "every answer is corrupted"
        );
        assert!(adapter.corrupted.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    }
}
