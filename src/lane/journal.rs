//! The raw-event journal: every [`RawEvent`] the lanes receive, appended as one JSON
//! line (the README's "Event format"; image bytes are never written, only their size)
//! to `events.jsonl` in `<storage.dir>/journal/`. Bounded: when the file passes `max_file_bytes`
//! it is rotated to `events.1.jsonl` (older ones shift up to `events.N.jsonl`, the
//! oldest is deleted), so the journal never takes more than about
//! `max_file_bytes × (keep_files + 1)`. A journal file is valid input for
//! `parking-bridge replay`.

use crate::event::RawEvent;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Default size at which the current file is rotated.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Default number of rotated files kept beside the current one.
pub const DEFAULT_KEEP_FILES: usize = 4;

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

pub struct Journal {
    dir: PathBuf,
    max_file_bytes: u64,
    keep_files: usize,
    file: BufWriter<File>,
    size: u64,
}

impl Journal {
    /// The journal of a site: `<storage.dir>/journal/`.
    pub fn open_in_storage(
        storage: &crate::config::StorageConfig,
    ) -> Result<Journal, JournalError> {
        Self::open(&storage.dir.join("journal"))
    }

    pub fn open(dir: &Path) -> Result<Journal, JournalError> {
        Self::open_with(dir, DEFAULT_MAX_FILE_BYTES, DEFAULT_KEEP_FILES)
    }

    pub fn open_with(
        dir: &Path,
        max_file_bytes: u64,
        keep_files: usize,
    ) -> Result<Journal, JournalError> {
        let io = |source| JournalError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let (file, size) = open_current(dir)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            max_file_bytes: max_file_bytes.max(1),
            keep_files,
            file,
            size,
        })
    }

    /// The current file.
    pub fn current_path(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }

    /// Appends one event (buffered; call [`Journal::flush`] when the burst is over).
    pub fn append(&mut self, event: &RawEvent) -> Result<(), JournalError> {
        let line = serde_json::to_string(event)?;
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.max_file_bytes {
            self.rotate()?;
        }
        let path = self.current_path();
        writeln!(self.file, "{line}").map_err(|source| JournalError::Io { path, source })?;
        self.size += len;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), JournalError> {
        let path = self.current_path();
        self.file
            .flush()
            .map_err(|source| JournalError::Io { path, source })
    }

    fn rotate(&mut self) -> Result<(), JournalError> {
        self.flush()?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| JournalError::Io { path, source }
        };
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

fn open_current(dir: &Path) -> Result<(BufWriter<File>, u64), JournalError> {
    let path = dir.join("events.jsonl");
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|source| JournalError::Io {
            path: path.clone(),
            source,
        })?;
    let size = file
        .metadata()
        .map_err(|source| JournalError::Io { path, source })?
        .len();
    Ok((BufWriter::new(file), size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, LoopId};
    use crate::time::Timestamp;

    fn event(i: i64) -> RawEvent {
        RawEvent {
            lane: "in".into(),
            device: "io".into(),
            at: Timestamp(i),
            kind: EventKind::Loop {
                which: LoopId::A,
                occupied: true,
            },
        }
    }

    fn read_all(path: &Path) -> Vec<RawEvent> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn appends_replayable_lines_and_reopens_in_append_mode() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.append(&event(1)).unwrap();
        j.flush().unwrap();
        drop(j);
        let mut j = Journal::open(dir.path()).unwrap();
        j.append(&event(2)).unwrap();
        j.flush().unwrap();
        assert_eq!(
            read_all(&dir.path().join("events.jsonl")),
            vec![event(1), event(2)]
        );
    }

    #[test]
    fn rotation_bounds_the_journal_and_keeps_the_newest_events() {
        let dir = tempfile::tempdir().unwrap();
        let line_len = serde_json::to_string(&event(10)).unwrap().len() as u64 + 1;
        let mut j = Journal::open_with(dir.path(), line_len * 3, 2).unwrap();
        for i in 10..40 {
            j.append(&event(i)).unwrap();
        }
        j.flush().unwrap();
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
}
