//! The raw-event journal — the lanes' memory across a crash or a restart.
//!
//! Every [`RawEvent`] the lanes receive is appended as one JSON line (the README's
//! "Event format"; image bytes are never written, only their size) to `events.jsonl`
//! in `<storage.dir>/journal/`, **before** the lane logic acts on it. Each line is one
//! unbuffered `write(2)` on an `O_APPEND` file: once `append` returns, the line is in the
//! operating system and survives a SIGKILL, an out-of-memory kill or a watchdog
//! restart. There is no fsync: a power cut can lose what the kernel had not yet
//! written back (Linux writes dirty pages back after about 30 s, so up to the last
//! ~30 s of lines); a line cut in half by a power cut is skipped when read.
//!
//! Beside the events the lane task writes [`Mark`] lines (`{"mark": …}`): a passage
//! applied to the state database, a start, a clean stop, a periodic "alive", and a
//! restart's blind interval per lane. [`read_window`] reads them back for
//! [`super::resume`]. `parking-bridge replay` skips marks.
//!
//! Bounded: when the file passes `max_file_bytes` it is rotated to `events.1.jsonl`
//! (older ones shift up to `events.N.jsonl`, the oldest is deleted), so the journal
//! never takes more than about `max_file_bytes × (keep_files + 1)`. Blind intervals are
//! also appended to `gaps.jsonl`, which is not rotated (one short line per lane per
//! restart), for `parking-bridge gaps`.

use crate::event::RawEvent;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Default size at which the current file is rotated.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Default number of rotated files kept beside the current one.
pub const DEFAULT_KEEP_FILES: usize = 4;
/// The file of blind intervals, beside the event files.
pub const GAPS_FILE: &str = "gaps.jsonl";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode event: {0}")]
    Encode(#[from] serde_json::Error),
}

impl JournalError {
    /// An I/O error on `path`, for `map_err`.
    fn at(path: &Path) -> impl Fn(std::io::Error) -> JournalError + Copy + '_ {
        move |source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A journal line that is not a raw event: what the lane task did or knew. Serialised
/// with its kind first (`{"mark":"applied",…}`), which is how readers tell it apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mark", rename_all = "snake_case")]
pub enum Mark {
    /// A passage was applied to the state database (or given up after every retry:
    /// either way it must not be applied again). A lane clears one vehicle at a time,
    /// so its lane and clearing time name it.
    Applied {
        lane: String,
        cleared_at: Timestamp,
        /// Wall clock when it was applied.
        at: Timestamp,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        recovered: bool,
    },
    /// The lane task started. `resumed`: its lanes were rebuilt from the journal;
    /// otherwise they started empty (nothing before this mark counts for what follows).
    Start {
        at: Timestamp,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        resumed: bool,
    },
    /// The lane task was running (written when nothing else was for a while), so a
    /// crash's blind interval is known to within that period.
    Alive { at: Timestamp },
    /// A clean stop (SIGTERM/SIGINT): the lanes' state is resumed at the next start.
    Stop { at: Timestamp },
    /// A restart's blind interval on one lane.
    Gap(Gap),
    /// The lane task ran the lot's timers due by `at` (its wall clock): `replay` runs
    /// them at the same point between the events, so it decides as the service did
    /// even when an event waited in the queue past a timer's deadline.
    Timers { at: Timestamp },
}

impl Mark {
    /// When the line was written (the wall clock of the lane task).
    pub fn at(&self) -> Timestamp {
        match self {
            Mark::Applied { at, .. }
            | Mark::Start { at, .. }
            | Mark::Alive { at }
            | Mark::Stop { at }
            | Mark::Timers { at } => *at,
            Mark::Gap(g) => g.to,
        }
    }
}

/// One lane's blind interval across a restart, and what was made of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    pub lane: String,
    /// The previous run's last sign of life (its last journal line).
    pub from: Timestamp,
    /// When every device of the lane had reported again (or the wait for them ended).
    pub to: Timestamp,
    /// The previous run stopped cleanly (SIGTERM); otherwise it died.
    pub clean_stop: bool,
    /// What the lane held when the previous run ended (`idle`, `under_barrier`, …).
    pub resumed: String,
    /// Passages reported on resume: applied from the journal (the run died before
    /// applying them) or completed in the blind interval.
    pub recovered: u32,
    /// What could not be made out, in words (empty when nothing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unresolved: Vec<String>,
    /// Devices of the lane that had not reported again when the gap was closed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silent_devices: Vec<String>,
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Event(RawEvent),
    Mark(Mark),
}

impl Line {
    /// Parses one line: a mark if it starts as one, otherwise a raw event.
    pub fn parse(line: &str) -> Result<Line, serde_json::Error> {
        if is_mark(line) {
            serde_json::from_str(line).map(Line::Mark)
        } else {
            serde_json::from_str(line).map(Line::Event)
        }
    }
}

/// A mark line (which `replay` skips): marks are written with their kind first.
pub fn is_mark(line: &str) -> bool {
    line.trim_start().starts_with("{\"mark\"")
}

pub struct Journal {
    dir: PathBuf,
    max_file_bytes: u64,
    keep_files: usize,
    /// Unbuffered on purpose: each line is one `write(2)`, in the OS when `append` returns.
    file: File,
    size: u64,
    /// When the last line was written (wall clock), for [`Journal::alive_due`].
    last_write: Option<Timestamp>,
}

impl Journal {
    /// The journal of a site: `<storage.dir>/journal/`.
    pub fn open_in_storage(
        storage: &crate::config::StorageConfig,
    ) -> Result<Journal, JournalError> {
        Self::open(&journal_dir(&storage.dir))
    }

    pub fn open(dir: &Path) -> Result<Journal, JournalError> {
        Self::open_with(dir, DEFAULT_MAX_FILE_BYTES, DEFAULT_KEEP_FILES)
    }

    pub fn open_with(
        dir: &Path,
        max_file_bytes: u64,
        keep_files: usize,
    ) -> Result<Journal, JournalError> {
        let io = JournalError::at(dir);
        std::fs::create_dir_all(dir).map_err(io)?;
        let (file, size) = open_current(dir)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            max_file_bytes: max_file_bytes.max(1),
            keep_files,
            file,
            size,
            last_write: None,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current file.
    pub fn current_path(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }

    /// Appends one event; it is in the OS when this returns.
    pub fn append(&mut self, event: &RawEvent) -> Result<(), JournalError> {
        let line = serde_json::to_string(event)?;
        self.write_line(line)
    }

    /// Appends one mark; it is in the OS when this returns. A gap is also appended to
    /// `gaps.jsonl`.
    pub fn mark(&mut self, mark: &Mark) -> Result<(), JournalError> {
        let line = serde_json::to_string(mark)?;
        if let Mark::Gap(_) = mark {
            let path = self.dir.join(GAPS_FILE);
            let io = JournalError::at(&path);
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io)?;
            f.write_all(format!("{line}\n").as_bytes()).map_err(io)?;
        }
        self.write_line(line)
    }

    /// True when nothing was written since `now - every_ms`: time for an `alive` mark.
    pub fn alive_due(&self, now: Timestamp, every_ms: i64) -> bool {
        self.last_write.is_none_or(|t| now.0 - t.0 >= every_ms)
    }

    fn write_line(&mut self, mut line: String) -> Result<(), JournalError> {
        line.push('\n');
        let len = line.len() as u64;
        if self.size > 0 && self.size + len > self.max_file_bytes {
            self.rotate()?;
        }
        // One write of the whole line: with O_APPEND it lands whole, or (power cut) as a
        // torn tail that readers skip and `open_current` terminates.
        self.file
            .write_all(line.as_bytes())
            .map_err(JournalError::at(&self.dir.join("events.jsonl")))?;
        self.size += len;
        self.last_write = Some(Timestamp::now());
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), JournalError> {
        let io = JournalError::at;
        let rotated = |n: usize| self.dir.join(format!("events.{n}.jsonl"));
        if self.keep_files == 0 {
            let current = self.current_path();
            std::fs::remove_file(&current).map_err(io(&current))?;
        } else {
            let oldest = rotated(self.keep_files);
            if oldest.exists() {
                std::fs::remove_file(&oldest).map_err(io(&oldest))?;
            }
            for n in (1..self.keep_files).rev() {
                let from = rotated(n);
                if from.exists() {
                    std::fs::rename(&from, rotated(n + 1)).map_err(io(&from))?;
                }
            }
            let current = self.current_path();
            std::fs::rename(&current, rotated(1)).map_err(io(&current))?;
        }
        let (file, size) = open_current(&self.dir)?;
        self.file = file;
        self.size = size;
        Ok(())
    }
}

/// The journal directory of a storage directory.
pub fn journal_dir(storage_dir: &Path) -> PathBuf {
    storage_dir.join("journal")
}

/// Opens the current file for appending; a torn last line (power cut) is terminated
/// first so that the next line is not glued to it.
fn open_current(dir: &Path) -> Result<(File, u64), JournalError> {
    let path = dir.join("events.jsonl");
    let io = JournalError::at(&path);
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    let mut size = file.metadata().map_err(io)?.len();
    if size > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::End(-1)).map_err(io)?;
        file.read_exact(&mut last).map_err(io)?;
        if last[0] != b'\n' {
            file.write_all(b"\n").map_err(io)?;
            size += 1;
        }
    }
    Ok((file, size))
}

/// What [`read_window`] found.
#[derive(Debug, Default)]
pub struct Window {
    /// The lines from the first one at or after `since`, in the order written.
    pub lines: Vec<Line>,
    /// Lines that could not be read (torn by a power cut, or foreign).
    pub bad_lines: usize,
    /// The previous run's last sign of life: the latest time of any line read.
    pub last_life: Option<Timestamp>,
    /// The previous run ended with a clean stop (its last mark is `stop`, with no
    /// event after it).
    pub clean_stop: bool,
    /// Lines (or whole files) before `since` were left out: the window starts in the
    /// middle of the journal.
    pub cut: bool,
}

impl Window {
    /// Applied passages, counted by (lane, clearing time).
    pub fn applied(&self) -> HashMap<(String, Timestamp), u32> {
        let mut applied = HashMap::new();
        for line in &self.lines {
            if let Line::Mark(Mark::Applied {
                lane, cleared_at, ..
            }) = line
            {
                *applied.entry((lane.clone(), *cleared_at)).or_insert(0) += 1;
            }
        }
        applied
    }
}

fn line_at(line: &Line) -> Timestamp {
    match line {
        Line::Event(e) => e.at,
        Line::Mark(m) => m.at(),
    }
}

/// Reads the journal in `dir` from `since` on (rotated files first, the current one
/// last). Files last written before `since` are not opened. A missing journal is an
/// empty window.
pub fn read_window(dir: &Path, since: Timestamp) -> Result<Window, JournalError> {
    let mut rotated: Vec<(usize, PathBuf)> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let n = name.strip_prefix("events.")?.strip_suffix(".jsonl")?;
                Some((n.parse::<usize>().ok()?, e.path()))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Window::default()),
        Err(source) => return Err(JournalError::at(dir)(source)),
    };
    rotated.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    files.push(dir.join("events.jsonl"));
    let mut window = Window::default();
    let mut started = false;
    for path in files {
        let io = JournalError::at(&path);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(e)),
        };
        let modified = file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| Timestamp(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
        if !started && modified.is_some_and(|m| m < since) {
            window.last_life = window.last_life.max(modified);
            window.cut = true;
            continue;
        }
        for line in std::io::BufReader::new(file).lines() {
            let line = match line {
                Ok(l) => l,
                // Not UTF-8 (a torn multi-byte character): a bad line, not a bad journal.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    window.bad_lines += 1;
                    continue;
                }
                Err(e) => return Err(io(e)),
            };
            let trimmed = line.trim();
            if trimmed.is_empty() {
                continue;
            }
            let Ok(parsed) = Line::parse(trimmed) else {
                window.bad_lines += 1;
                continue;
            };
            let at = line_at(&parsed);
            window.last_life = window.last_life.max(Some(at));
            started |= at >= since;
            window.cut |= !started;
            if started {
                window.clean_stop = match &parsed {
                    Line::Mark(Mark::Stop { .. }) => true,
                    // An event after the stop (a driver's last word) does not undo it.
                    Line::Event(_) => window.clean_stop,
                    Line::Mark(_) => false,
                };
                window.lines.push(parsed);
            }
        }
    }
    Ok(window)
}

/// Reads every blind interval recorded in `dir` (`gaps.jsonl`), oldest first.
pub fn read_gaps(dir: &Path) -> Result<Vec<Gap>, JournalError> {
    let path = dir.join(GAPS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(JournalError::Io { path, source }),
    };
    Ok(text
        .lines()
        .filter_map(|l| match Line::parse(l.trim()) {
            Ok(Line::Mark(Mark::Gap(g))) => Some(g),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::LoopId;
    use crate::time::Timestamp;

    fn event(i: i64) -> RawEvent {
        crate::lane::testkit::io_event("in", i, crate::lane::testkit::lp(LoopId::A, true))
    }

    fn read_all(path: &Path) -> Vec<RawEvent> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// A journal opened in `dir` with `event(1)` appended.
    fn with_first_event(dir: &Path) -> Journal {
        let mut j = Journal::open(dir).unwrap();
        j.append(&event(1)).unwrap();
        j
    }

    #[test]
    fn appends_replayable_lines_and_reopens_in_append_mode() {
        let dir = tempfile::tempdir().unwrap();
        drop(with_first_event(dir.path()));
        let mut j = Journal::open(dir.path()).unwrap();
        j.append(&event(2)).unwrap();
        assert_eq!(
            read_all(&dir.path().join("events.jsonl")),
            vec![event(1), event(2)]
        );
    }

    /// A journal in a new directory whose files hold `lines` events each, `keep`
    /// rotated files kept.
    fn small_journal(lines: u64, keep: usize) -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let line_len = serde_json::to_string(&event(10)).unwrap().len() as u64 + 1;
        let j = Journal::open_with(dir.path(), line_len * lines, keep).unwrap();
        (dir, j)
    }

    #[test]
    fn rotation_bounds_the_journal_and_keeps_the_newest_events() {
        let (dir, mut j) = small_journal(3, 2);
        for i in 10..40 {
            j.append(&event(i)).unwrap();
        }
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files.len(), 3, "current + 2 rotated: {files:?}");
        let mut kept = read_all(&dir.path().join("events.2.jsonl"));
        kept.extend(read_all(&dir.path().join("events.1.jsonl")));
        kept.extend(read_all(&dir.path().join("events.jsonl")));
        let ats: Vec<i64> = kept.iter().map(|e| e.at.0).collect();
        assert_eq!(ats, (31..40).collect::<Vec<_>>());
    }

    fn applied(lane: &str, cleared: i64, at: i64) -> Mark {
        Mark::Applied {
            lane: lane.into(),
            cleared_at: Timestamp(cleared),
            at: Timestamp(at),
            recovered: false,
        }
    }

    #[test]
    fn an_appended_line_is_in_the_file_before_append_returns() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = with_first_event(dir.path());
        // No flush, no drop: what a SIGKILL right now would leave behind.
        assert_eq!(read_all(&dir.path().join("events.jsonl")), vec![event(1)]);
        j.mark(&applied("in", 1, 2)).unwrap();
        let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 2);
        std::mem::forget(j);
    }

    #[test]
    fn the_window_holds_events_and_marks_from_since_on_across_rotation() {
        let (dir, mut j) = small_journal(6, 3);
        for i in 10..20 {
            j.append(&event(i)).unwrap();
            if i % 3 == 0 {
                j.mark(&applied("in", i, i)).unwrap();
            }
        }
        j.mark(&Mark::Stop { at: Timestamp(20) }).unwrap();
        let w = read_window(dir.path(), Timestamp(14)).unwrap();
        let ats: Vec<i64> = w.lines.iter().map(|l| line_at(l).0).collect();
        assert_eq!(ats, vec![14, 15, 15, 16, 17, 18, 18, 19, 20]);
        assert_eq!(w.last_life, Some(Timestamp(20)));
        assert!(w.clean_stop);
        assert_eq!(w.bad_lines, 0);
        assert!(w.cut);
        let applied = w.applied();
        assert_eq!(applied.get(&("in".to_string(), Timestamp(15))), Some(&1));
        assert_eq!(applied.get(&("in".to_string(), Timestamp(12))), None);
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_the_next_line_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        drop(with_first_event(dir.path()));
        let path = dir.path().join("events.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"lane\":\"in\",\"dev").unwrap();
        drop(f);
        let mut j = Journal::open(dir.path()).unwrap();
        j.append(&event(2)).unwrap();
        let w = read_window(dir.path(), Timestamp(0)).unwrap();
        assert_eq!(w.bad_lines, 1);
        assert_eq!(w.lines, vec![Line::Event(event(1)), Line::Event(event(2))]);
        assert!(!w.clean_stop, "no stop mark: the run died");
    }

    #[test]
    fn gaps_are_kept_in_their_own_file_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let gap = Gap {
            lane: "in".into(),
            from: Timestamp(1000),
            to: Timestamp(1800),
            clean_stop: false,
            resumed: "under_barrier".into(),
            recovered: 1,
            unresolved: vec![],
            silent_devices: vec![],
        };
        j.mark(&Mark::Gap(gap.clone())).unwrap();
        assert_eq!(read_gaps(dir.path()).unwrap(), vec![gap.clone()]);
        let w = read_window(dir.path(), Timestamp(0)).unwrap();
        assert_eq!(w.lines, vec![Line::Mark(Mark::Gap(gap))]);
        assert!(is_mark(
            &serde_json::to_string(&Mark::Start {
                at: Timestamp(1),
                resumed: false
            })
            .unwrap()
        ));
        assert!(!is_mark(&serde_json::to_string(&event(1)).unwrap()));
    }

    #[test]
    fn a_missing_journal_is_an_empty_window() {
        let dir = tempfile::tempdir().unwrap();
        let w = read_window(&dir.path().join("nope"), Timestamp(0)).unwrap();
        assert!(w.lines.is_empty() && w.last_life.is_none());
        assert!(read_gaps(&dir.path().join("nope")).unwrap().is_empty());
    }
}
