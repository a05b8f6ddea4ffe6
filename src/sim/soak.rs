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

/// The site config with a 1 MB image budget: pending pictures beyond it are dropped
/// (oldest first), entries and exits never.
fn squeezed(config: &str) -> String {
    config.replacen("[storage]\n", "[storage]\ndisk_budget_mb = 1\n", 1)
}

/// Where Debian's `faketime` package puts the library that lets the soak move the
/// bridge's wall clock (and only its wall clock) without touching the machine's.
pub const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// The bridge as a child process (`EXE run --config CONFIG`), its output appended to
/// `run.log` in the demo directory.
pub struct ChildBridge {
    exe: PathBuf,
    config: PathBuf,
    /// The config as generated; a squeezed start writes it with a 1 MB image budget.
    config_text: String,
    log: PathBuf,
    /// The demo directory.
    dir: PathBuf,
    child: Option<Child>,
    pub starts: u32,
    /// The next start gets the disk-budget squeeze.
    pub squeezed: bool,
    /// The file libfaketime reads the wall-clock offset from (`None`: no libfaketime
    /// on this machine, so no clock jumps).
    clock_file: Option<PathBuf>,
}

impl ChildBridge {
    pub fn start(exe: &Path, config: &Path, dir: &Path) -> std::io::Result<ChildBridge> {
        let clock_file = Path::new(FAKETIME_LIB)
            .exists()
            .then(|| dir.join("faketime-offset"));
        let mut b = ChildBridge {
            exe: exe.to_path_buf(),
            config: config.to_path_buf(),
            config_text: std::fs::read_to_string(config)?,
            log: dir.join("run.log"),
            dir: dir.to_path_buf(),
            child: None,
            starts: 0,
            squeezed: false,
            clock_file,
        };
        b.set_clock_offset(0);
        b.spawn()?;
        Ok(b)
    }

    /// Whether the clock can be moved (libfaketime is installed).
    pub fn clock_movable(&self) -> bool {
        self.clock_file.is_some()
    }

    /// Sets the bridge's wall clock `secs` off the machine's; it reads the offset
    /// again within a second.
    pub fn set_clock_offset(&self, secs: i64) {
        if let Some(f) = &self.clock_file
            && let Err(e) = std::fs::write(f, format!("{secs:+}\n"))
        {
            tracing::error!(error = %e, "soak: cannot move the clock");
        }
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let text = if self.squeezed {
            squeezed(&self.config_text)
        } else {
            self.config_text.clone()
        };
        std::fs::write(&self.config, text)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(&self.exe);
        // The bridge logs as a service does (info), whatever the demo's own level.
        cmd.env_remove("RUST_LOG")
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(f) = &self.clock_file {
            // Only the wall clock moves: monotonic time (timers, `Instant`) stays true,
            // as when NTP or an operator steps a real PC's clock.
            cmd.env("LD_PRELOAD", FAKETIME_LIB)
                .env("FAKETIME_TIMESTAMP_FILE", f)
                .env("FAKETIME_CACHE_DURATION", "1")
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        self.child = Some(cmd.spawn()?);
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

/// One fault of the soak's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL, restart within 2 s.
    Kill,
    /// SIGTERM (a clean stop), restart within 2 s.
    Term,
    /// A camera floods 200 undecodable messages and a 1 MB one.
    Flood,
    /// The RS-485 adapter is pulled for 3–15 s (its device node disappears).
    SerialUnplug,
    /// The MQTT broker goes away for 3–15 s (connections cut and refused).
    BrokerRestart,
    /// The bridge restarts with a 1 MB image budget until the next restart.
    DiskSqueeze,
    /// The wall clock jumps back 5 minutes and, 1–2 minutes later, forward again.
    ClockJump,
}

impl Fault {
    pub const ALL: [Fault; 7] = [
        Fault::Kill,
        Fault::Term,
        Fault::Flood,
        Fault::SerialUnplug,
        Fault::BrokerRestart,
        Fault::DiskSqueeze,
        Fault::ClockJump,
    ];

    /// Relative frequency in the schedule.
    fn weight(self) -> u32 {
        match self {
            Fault::Kill => 25,
            Fault::Term => 15,
            Fault::Flood | Fault::SerialUnplug => 15,
            Fault::BrokerRestart | Fault::DiskSqueeze | Fault::ClockJump => 10,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "SIGKILL",
            Fault::Term => "SIGTERM",
            Fault::Flood => "camera flood",
            Fault::SerialUnplug => "RS-485 adapter unplugged",
            Fault::BrokerRestart => "broker restart",
            Fault::DiskSqueeze => "disk-budget squeeze",
            Fault::ClockJump => "wall-clock jump",
        }
    }
}

/// The next fault and the wait before it: 30–120 s apart, weighted by kind (closer,
/// the blind spells would set aside most of the traffic the check is for).
pub fn next_fault(rng: &mut impl Rng) -> (Duration, Fault) {
    let wait = Duration::from_millis(rng.random_range(30_000..120_000));
    let total: u32 = Fault::ALL.iter().map(|f| f.weight()).sum();
    let mut roll = rng.random_range(0..total);
    for f in Fault::ALL {
        if roll < f.weight() {
            return (wait, f);
        }
        roll -= f.weight();
    }
    (wait, Fault::Kill)
}

/// Which lanes a fault blinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The bridge is not running: no lane is watched.
    AllLanes,
    /// The lane on the RS-485 bus.
    SerialLane,
    /// The lanes whose cameras publish over MQTT.
    MqttLanes,
}

/// A span of wall-clock time (ms since the epoch) during which the bridge could not
/// see some lanes: passages there may be lost or half-seen, so the record check sets
/// them aside instead of failing on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blind {
    pub from_ms: i64,
    pub to_ms: i64,
    pub scope: Scope,
}

/// How far a clock jump sets the bridge's wall clock back (it is moved forward again
/// 1–2 minutes later).
const CLOCK_JUMP_BACK_MS: i64 = 300_000;

/// How long after a restart, replug or reconnect the bridge may still be blind
/// (start-up, reopening the port, resubscribing).
const RECOVERY_MS: i64 = 10_000;

/// What the fault schedule did.
#[derive(Debug, Default, Clone)]
pub struct FaultLog {
    pub counts: std::collections::BTreeMap<Fault, u32>,
    pub blind: Vec<Blind>,
    /// The bridge ended by itself (never expected).
    pub crashes: Vec<String>,
    /// When the bridge's wall clock was moved (a clock jump, until a few seconds after
    /// it was put right): the times it reported then say nothing.
    pub unclocked: Vec<(i64, i64)>,
}

impl FaultLog {
    pub fn count(&self, f: Fault) -> u32 {
        self.counts.get(&f).copied().unwrap_or(0)
    }

    fn blind(&mut self, from_ms: i64, scope: Scope) {
        self.blind.push(Blind {
            from_ms,
            to_ms: crate::time::Timestamp::now().0 + RECOVERY_MS,
            scope,
        });
    }
}

/// What the soak can do to the world around the bridge (the demo's devices).
pub trait SoakWorld: Send + 'static {
    /// A camera floods garbage.
    fn flood(&self);
    fn unplug_serial(&self);
    fn replug_serial(&self);
    fn close_broker(&self);
    fn reopen_broker(&self);
}

/// Locks the bridge, the fault log or the samples; each holder writes whole values,
/// so a lock poisoned by a panicking holder is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the fault schedule ([`next_fault`], seeded) until `stop` is set, restarting
/// the bridge whenever it ends by itself (counted as a crash).
pub fn fault_schedule(
    bridge: Arc<Mutex<ChildBridge>>,
    seed: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
    log: Arc<Mutex<FaultLog>>,
    world: impl SoakWorld,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut rng = StdRng::seed_from_u64(seed);
        let running = || !stop.load(std::sync::atomic::Ordering::Relaxed);
        // Every fault as it ends: began_ms,ended_ms,kind,blind scope.
        let mut timeline = std::fs::File::create(lock(&bridge).dir.join("soak-faults.csv")).ok();
        if let Some(f) = timeline.as_mut() {
            let _ = writeln!(f, "began_ms,ended_ms,fault,blind");
        }
        // Waits up to `d`, watching for a crash; `false` once the soak is stopping.
        let wait = |d: Duration| {
            let until = Instant::now() + d;
            while running() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(200));
                let mut b = lock(&bridge);
                if let Some(status) = b.exited() {
                    let now = crate::time::Timestamp::now().0;
                    let mut l = lock(&log);
                    l.crashes.push(format!("{status}"));
                    tracing::error!(%status, "soak: the bridge ended by itself; restarting it");
                    let _ = b.restart();
                    l.blind(now, Scope::AllLanes);
                }
            }
            running()
        };
        while running() {
            let (pause, fault) = next_fault(&mut rng);
            if !wait(pause) {
                break;
            }
            if fault == Fault::ClockJump && !lock(&bridge).clock_movable() {
                continue; // no libfaketime here (said at the end of the run)
            }
            let began = crate::time::Timestamp::now().0;
            tracing::info!(fault = fault.name(), "soak: fault");
            let scope = match fault {
                Fault::Kill | Fault::Term | Fault::DiskSqueeze => {
                    let mut b = lock(&bridge);
                    // A squeeze lasts until the next restart of another kind.
                    b.squeezed = fault == Fault::DiskSqueeze;
                    b.stop_with(if fault == Fault::Kill {
                        libc::SIGKILL
                    } else {
                        libc::SIGTERM
                    });
                    std::thread::sleep(Duration::from_millis(rng.random_range(0..2_000)));
                    if let Err(e) = b.spawn() {
                        tracing::error!(error = %e, "soak: cannot restart the bridge");
                    }
                    Some(Scope::AllLanes)
                }
                Fault::Flood => {
                    world.flood();
                    None
                }
                // A device gone for a while, then back; `false` once the soak stops.
                Fault::SerialUnplug | Fault::BrokerRestart | Fault::ClockJump => {
                    let (ms, scope) = match fault {
                        Fault::SerialUnplug => (3_000..15_000, Some(Scope::SerialLane)),
                        Fault::BrokerRestart => (3_000..15_000, Some(Scope::MqttLanes)),
                        // The bridge is not blinded: it must carry on through both jumps.
                        _ => (60_000..120_000, None),
                    };
                    match fault {
                        Fault::SerialUnplug => world.unplug_serial(),
                        Fault::BrokerRestart => world.close_broker(),
                        _ => lock(&bridge).set_clock_offset(-CLOCK_JUMP_BACK_MS / 1000),
                    }
                    let out = wait(Duration::from_millis(rng.random_range(ms)));
                    match fault {
                        Fault::SerialUnplug => world.replug_serial(),
                        Fault::BrokerRestart => world.reopen_broker(),
                        _ => lock(&bridge).set_clock_offset(0),
                    }
                    if !out {
                        break;
                    }
                    scope
                }
            };
            let mut l = lock(&log);
            *l.counts.entry(fault).or_insert(0) += 1;
            if let Some(scope) = scope {
                l.blind(began, scope);
            }
            let ended = crate::time::Timestamp::now().0;
            if fault == Fault::ClockJump {
                // libfaketime re-reads the offset within a second.
                l.unclocked.push((began, ended + 2_000));
            }
            tracing::info!(fault = fault.name(), began, ended, "soak: fault over");
            if let Some(f) = timeline.as_mut() {
                let _ = writeln!(f, "{began},{ended},{},{scope:?}", fault.name());
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
            let pid = lock(&bridge).pid();
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
            lock(&samples).push(s);
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

/// How far around a passage's own hardware steps the lane still works on it (the
/// read before the loop, the late-plate wait after the barrier).
const PASSAGE_BEFORE_MS: i64 = 2_000;
const PASSAGE_AFTER_MS: i64 = 8_000;

/// The vehicles whose entry or exit passage — wall-clock `(first, last)` step per
/// `(vehicle, at the exit)` in `spans` — overlaps a blind spell covering its lane.
/// `covers(scope, at_exit, lane_index)` tells whether a spell's scope includes a lane.
pub fn blinded(
    spans: &std::collections::HashMap<(usize, bool), (i64, i64)>,
    blind: &[Blind],
    lanes_of: impl Fn(usize) -> (usize, usize),
    covers: impl Fn(Scope, bool, usize) -> bool,
) -> std::collections::HashSet<usize> {
    spans
        .iter()
        .filter(|((vehicle, at_exit), (first, last))| {
            let (entry_lane, exit_lane) = lanes_of(*vehicle);
            let lane = if *at_exit { exit_lane } else { entry_lane };
            blind.iter().any(|b| {
                covers(b.scope, *at_exit, lane)
                    && b.from_ms <= last + PASSAGE_AFTER_MS
                    && b.to_ms >= first - PASSAGE_BEFORE_MS
            })
        })
        .map(|((vehicle, _), _)| *vehicle)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_squeezed_config_has_a_one_megabyte_image_budget() {
        let text = "[lot]\nparking_lot_no = \"L\"\n\n[storage]\ndir = \"/x\"\n\n[http]\n";
        let s = squeezed(text);
        let v: toml::Value = toml::from_str(&s).unwrap();
        assert_eq!(v["storage"]["disk_budget_mb"].as_integer(), Some(1));
        assert_eq!(v["storage"]["dir"].as_str(), Some("/x"));
    }

    #[test]
    fn the_schedule_draws_every_fault_and_keeps_its_pauses() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let (wait, f) = next_fault(&mut rng);
            assert!((30..120).contains(&wait.as_secs()), "{wait:?}");
            seen.insert(f);
        }
        assert_eq!(seen.len(), Fault::ALL.len(), "{seen:?}");
    }

    #[test]
    fn only_passages_overlapping_a_spell_on_their_lane_are_set_aside() {
        // Vehicle 1 entered on lane 0 during a serial spell; vehicle 2 entered on
        // lane 1 then (not covered); vehicle 3 left long after the spell ended.
        let spans = HashMap::from([
            ((1, false), (10_000, 12_000)),
            ((2, false), (10_000, 12_000)),
            ((3, true), (60_000, 61_000)),
        ]);
        let blind = [Blind {
            from_ms: 11_000,
            to_ms: 30_000,
            scope: Scope::SerialLane,
        }];
        let lanes_of = |v: usize| if v == 2 { (1, 0) } else { (0, 0) };
        let covers = |s: Scope, at_exit: bool, lane: usize| match s {
            Scope::AllLanes => true,
            Scope::SerialLane => !at_exit && lane == 0,
            Scope::MqttLanes => false,
        };
        let aside = blinded(&spans, &blind, lanes_of, covers);
        assert_eq!(aside, std::collections::HashSet::from([1]));
        let all = [Blind {
            scope: Scope::AllLanes,
            ..blind[0]
        }];
        let aside = blinded(&spans, &all, lanes_of, covers);
        assert_eq!(aside, std::collections::HashSet::from([1, 2]));
    }
}
