//! The soak mode of `demo` (`scripts/soak.sh`): the bridge runs as a separate `run`
//! process, restarted on a seeded random schedule (SIGKILL or SIGTERM), while the
//! demo's devices keep driving traffic and its mock platform fails now and then; the
//! process's resident set, open files and threads, the database and the journal are
//! sampled throughout. The demo compares the platform's record with the traffic at the
//! end, as always.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The bridge as a child process (`EXE run --config CONFIG`), its output appended to
/// `run.log` in the demo directory.
pub struct ChildBridge {
    exe: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    pub starts: u32,
}

impl ChildBridge {
    pub fn start(exe: &Path, config: &Path, dir: &Path) -> std::io::Result<ChildBridge> {
        let mut b = ChildBridge {
            exe: exe.to_path_buf(),
            config: config.to_path_buf(),
            log: dir.join("run.log"),
            child: None,
            starts: 0,
        };
        b.spawn()?;
        Ok(b)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.exe)
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` and waits for the process to end (SIGKILL after 30 s).
    pub fn stop_with(&mut self, signal: i32) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe {
                libc::kill(pid, signal);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop_with(libc::SIGKILL);
        self.spawn()
    }

    /// Whether the process ended by itself (a crash: the soak fails).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for ChildBridge {
    fn drop(&mut self) {
        self.stop_with(libc::SIGTERM);
    }
}

/// What the fault schedule did.
#[derive(Debug, Default, Clone)]
pub struct FaultLog {
    pub sigkills: u32,
    pub sigterms: u32,
    pub floods: u32,
    /// The bridge ended by itself (never expected).
    pub crashes: Vec<String>,
}

/// Restarts the bridge on a random schedule: every 15–45 s a SIGKILL (half the time)
/// or a SIGTERM, then a restart after up to 2 s; in between, a camera flood (the
/// caller's `flood`) now and then. Runs until `stop` is set.
pub fn fault_schedule(
    bridge: Arc<Mutex<ChildBridge>>,
    seed: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
    log: Arc<Mutex<FaultLog>>,
    flood: impl Fn() + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut rng = StdRng::seed_from_u64(seed);
        let running = || !stop.load(std::sync::atomic::Ordering::Relaxed);
        while running() {
            let wait = Duration::from_millis(rng.random_range(15_000..45_000));
            let until = Instant::now() + wait;
            while running() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(200));
                let mut b = bridge.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(status) = b.exited() {
                    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                    l.crashes.push(format!("{status}"));
                    tracing::error!(%status, "soak: the bridge ended by itself; restarting it");
                    let _ = b.restart();
                }
            }
            if !running() {
                break;
            }
            let what = rng.random_range(0..10);
            let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
            if what >= 8 {
                l.floods += 1;
                drop(l);
                tracing::info!("soak: camera garbage flood");
                flood();
                continue;
            }
            let signal = if what < 5 {
                l.sigkills += 1;
                libc::SIGKILL
            } else {
                l.sigterms += 1;
                libc::SIGTERM
            };
            drop(l);
            tracing::info!(signal, "soak: stopping the bridge");
            let mut b = bridge.lock().unwrap_or_else(|e| e.into_inner());
            b.stop_with(signal);
            std::thread::sleep(Duration::from_millis(rng.random_range(0..2_000)));
            if let Err(e) = b.spawn() {
                tracing::error!(error = %e, "soak: cannot restart the bridge");
            }
        }
    })
}

/// One sample of the bridge process and its files.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub secs: u64,
    pub rss_kb: u64,
    pub fds: u64,
    pub threads: u64,
    pub db_bytes: u64,
    pub journal_bytes: u64,
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

pub fn sample(pid: u32, state_dir: &Path, secs: u64) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    let db_bytes = ["state.db", "state.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(state_dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    Sample {
        secs,
        rss_kb: field("VmRSS:"),
        fds,
        threads: field("Threads:"),
        db_bytes,
        journal_bytes: dir_bytes(&state_dir.join("journal")),
    }
}

/// Samples every `every` into `dir/soak-samples.csv` until `stop`.
pub fn sampler(
    bridge: Arc<Mutex<ChildBridge>>,
    dir: PathBuf,
    every: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut csv = std::fs::File::create(dir.join("soak-samples.csv")).ok();
        if let Some(f) = csv.as_mut() {
            let _ = writeln!(f, "secs,rss_kb,fds,threads,db_bytes,journal_bytes");
        }
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(every);
            let pid = bridge.lock().unwrap_or_else(|e| e.into_inner()).pid();
            let Some(pid) = pid else { continue };
            let s = sample(pid, &dir.join("state"), started.elapsed().as_secs());
            if s.rss_kb == 0 {
                continue; // between a stop and the restart
            }
            if let Some(f) = csv.as_mut() {
                let _ = writeln!(
                    f,
                    "{},{},{},{},{},{}",
                    s.secs, s.rss_kb, s.fds, s.threads, s.db_bytes, s.journal_bytes
                );
            }
            samples.lock().unwrap_or_else(|e| e.into_inner()).push(s);
        }
    })
}

/// Growth after warm-up: the maximum of the last half against the maximum of the
/// first half after `warmup` samples (a leak grows; a bounded process plateaus).
pub fn summary(samples: &[Sample], warmup: usize) -> String {
    let rest = samples.get(warmup..).unwrap_or(&[]);
    if rest.len() < 4 {
        return format!("soak: {} samples, too few to judge growth", samples.len());
    }
    let (a, b) = rest.split_at(rest.len() / 2);
    let max = |s: &[Sample], f: fn(&Sample) -> u64| s.iter().map(f).max().unwrap_or(0);
    let line = |name: &str, f: fn(&Sample) -> u64| format!("{name} {} → {}", max(a, f), max(b, f));
    format!(
        "soak: {} samples; first half → second half maxima: {}, {}, {}, {}, {}",
        samples.len(),
        line("RSS kB", |s| s.rss_kb),
        line("fds", |s| s.fds),
        line("threads", |s| s.threads),
        line("db bytes", |s| s.db_bytes),
        line("journal bytes", |s| s.journal_bytes),
    )
}
